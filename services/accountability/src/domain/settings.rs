//! A clinic's accountability settings: its quiet hours, in which no nudge is sent.
//! Pure: the settings aggregate decides and evolves here; the nudger asks
//! [`QuietHours::contains`] through the nudge policy.

use chrono::Timelike;
use chrono_tz::Tz;

use super::{Event, Time};

pub const MINUTES_PER_DAY: u32 = 24 * 60;

/// A daily window in local time, from `start_minute` (inclusive) to `end_minute`
/// (exclusive) after midnight; it may wrap past midnight (21:00–08:00). Equal ends
/// mean no quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start_minute: u32,
    end_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quiet hours are minutes after local midnight, below {MINUTES_PER_DAY}")]
pub struct InvalidQuietHours;

impl QuietHours {
    pub fn new(start_minute: u32, end_minute: u32) -> Result<Self, InvalidQuietHours> {
        if start_minute < MINUTES_PER_DAY && end_minute < MINUTES_PER_DAY {
            Ok(Self {
                start_minute,
                end_minute,
            })
        } else {
            Err(InvalidQuietHours)
        }
    }

    pub fn start_minute(self) -> u32 {
        self.start_minute
    }

    pub fn end_minute(self) -> u32 {
        self.end_minute
    }

    /// Whether a local minute after midnight falls inside the window.
    pub fn contains(self, local_minute: u32) -> bool {
        let (start, end) = (self.start_minute, self.end_minute);
        if start == end {
            false
        } else if start < end {
            (start..end).contains(&local_minute)
        } else {
            local_minute >= start || local_minute < end
        }
    }

    /// Whether `now` is quiet in the clinic's time zone.
    pub fn contains_time(self, now: Time, zone: Tz) -> bool {
        let local = now.with_timezone(&zone);
        self.contains(local.hour() * 60 + local.minute())
    }
}

/// The settings aggregate of one clinic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClinicSettings {
    /// Set by the clinic; `None` means the service's default applies.
    pub quiet_hours: Option<QuietHours>,
}

impl ClinicSettings {
    /// The clinic's quiet hours, or `default` where it set none.
    pub fn quiet_hours_or(&self, default: QuietHours) -> QuietHours {
        self.quiet_hours.unwrap_or(default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsCommand {
    SetQuietHours(QuietHours),
}

/// Asking for what already holds changes nothing (no event).
pub fn decide(state: &ClinicSettings, command: SettingsCommand) -> Vec<Event> {
    match command {
        SettingsCommand::SetQuietHours(quiet_hours) if state.quiet_hours == Some(quiet_hours) => {
            Vec::new()
        }
        SettingsCommand::SetQuietHours(quiet_hours) => vec![Event::QuietHoursSet {
            start_minute: quiet_hours.start_minute,
            end_minute: quiet_hours.end_minute,
        }],
    }
}

pub fn evolve(state: &mut ClinicSettings, event: &Event) {
    if let Event::QuietHoursSet {
        start_minute,
        end_minute,
    } = *event
    {
        // Recorded events were checked when decided; an out-of-range one from an
        // older writer reads as "not set" (the service's default applies) rather
        // than failing the load.
        state.quiet_hours = QuietHours::new(start_minute, end_minute).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hours(start: u32, end: u32) -> QuietHours {
        QuietHours::new(start, end).expect("valid")
    }

    #[test]
    fn a_window_that_wraps_midnight_holds_late_evening_and_early_morning() {
        let night = hours(21 * 60, 8 * 60);
        assert!(night.contains(21 * 60));
        assert!(night.contains(23 * 60 + 59));
        assert!(night.contains(0));
        assert!(night.contains(7 * 60 + 59));
        assert!(!night.contains(8 * 60));
        assert!(!night.contains(12 * 60));
        assert!(!night.contains(20 * 60 + 59));
    }

    #[test]
    fn a_daytime_window_and_an_empty_one() {
        let lunch = hours(12 * 60, 13 * 60);
        assert!(lunch.contains(12 * 60 + 30));
        assert!(!lunch.contains(13 * 60));
        let none = hours(600, 600);
        assert!((0..MINUTES_PER_DAY).all(|minute| !none.contains(minute)));
    }

    #[test]
    fn minutes_past_the_day_are_refused() {
        assert_eq!(QuietHours::new(MINUTES_PER_DAY, 0), Err(InvalidQuietHours));
        assert_eq!(QuietHours::new(0, MINUTES_PER_DAY), Err(InvalidQuietHours));
    }

    #[test]
    fn quiet_is_judged_in_the_clinic_time_zone() {
        let night = hours(21 * 60, 8 * 60);
        // 03:00 UTC is 22:00 the evening before in Chicago (CDT, UTC-5).
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 6, 2, 3, 0, 0)
            .single()
            .expect("valid");
        assert!(night.contains_time(now, chrono_tz::America::Chicago));
        // 12:00 UTC is 07:00 in Chicago — still quiet; 14:00 UTC is 09:00 — not.
        let morning = now + chrono::Duration::hours(9);
        assert!(night.contains_time(morning, chrono_tz::America::Chicago));
        assert!(!night.contains_time(
            morning + chrono::Duration::hours(2),
            chrono_tz::America::Chicago
        ));
    }

    #[test]
    fn given_no_settings_when_quiet_hours_are_set_then_they_are_recorded_once() {
        let mut state = ClinicSettings::default();
        assert_eq!(state.quiet_hours_or(hours(1, 2)), hours(1, 2));
        let events = decide(
            &state,
            SettingsCommand::SetQuietHours(hours(22 * 60, 7 * 60)),
        );
        assert_eq!(
            events,
            vec![Event::QuietHoursSet {
                start_minute: 22 * 60,
                end_minute: 7 * 60
            }]
        );
        for event in &events {
            evolve(&mut state, event);
        }
        assert_eq!(state.quiet_hours_or(hours(1, 2)), hours(22 * 60, 7 * 60));
        // The same again changes nothing.
        assert!(
            decide(
                &state,
                SettingsCommand::SetQuietHours(hours(22 * 60, 7 * 60))
            )
            .is_empty()
        );
    }
}
