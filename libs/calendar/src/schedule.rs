//! A group's weekly recurrence (the RFC 5545 RRULE subset FREQ=WEEKLY;BYDAY=…) in the
//! clinic's time zone. Session starts are computed in local time, so a session at
//! 18:30 stays at 18:30 across daylight-saving changes.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

use crate::Time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub iso_weekdays: BTreeSet<u32>,
    /// Minutes after local midnight.
    pub start_minute: u32,
    pub duration_minutes: u32,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub exception_dates: BTreeSet<NaiveDate>,
}

pub const MIN_DURATION_MINUTES: u32 = 15;
pub const MAX_DURATION_MINUTES: u32 = 480;
const WEEKDAY_CODES: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

impl Schedule {
    /// The rules a schedule must satisfy; `Err` names the broken one.
    pub fn check(&self) -> Result<(), String> {
        if self.iso_weekdays.is_empty()
            || self.iso_weekdays.iter().any(|day| !(1..=7).contains(day))
        {
            return Err("days must name at least one weekday".into());
        }
        if self.start_minute >= 24 * 60 {
            return Err("start_time must be a local time HH:MM".into());
        }
        if !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&self.duration_minutes) {
            return Err(format!(
                "duration_minutes must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES}"
            ));
        }
        if self.end_date.is_some_and(|end| end < self.start_date) {
            return Err("end_date must not be before start_date".into());
        }
        Ok(())
    }

    pub fn rrule(&self) -> String {
        let days: Vec<&str> = self
            .iso_weekdays
            .iter()
            .filter_map(|day| WEEKDAY_CODES.get((*day as usize).wrapping_sub(1)).copied())
            .collect();
        let mut rule = format!("FREQ=WEEKLY;BYDAY={}", days.join(","));
        if let Some(end) = self.end_date {
            rule.push_str(&format!(";UNTIL={}", end.format("%Y%m%d")));
        }
        rule
    }

    fn occurs_on(&self, date: NaiveDate) -> bool {
        date >= self.start_date
            && self.end_date.is_none_or(|end| date <= end)
            && self
                .iso_weekdays
                .contains(&date.weekday().number_from_monday())
            && !self.exception_dates.contains(&date)
    }

    /// When the session of a local date starts. A start inside a spring-forward gap
    /// moves to the first valid instant after it; in a fall-back overlap the first of
    /// the two instants is used.
    pub fn start_on(&self, time_zone: Tz, date: NaiveDate) -> Option<Time> {
        let local = date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(
            self.start_minute * 60,
            0,
        )?);
        let start = match time_zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(start) => start,
            chrono::LocalResult::Ambiguous(first, _) => first,
            chrono::LocalResult::None => time_zone
                .from_local_datetime(&(local + Duration::hours(1)))
                .earliest()?,
        };
        Some(start.with_timezone(&chrono::Utc))
    }

    /// Every session between two local dates (inclusive): each date with its start.
    pub fn occurrences(
        &self,
        time_zone: Tz,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<(NaiveDate, Time)> {
        from.iter_days()
            .take_while(|date| *date <= to)
            .filter(|date| self.occurs_on(*date))
            .filter_map(|date| Some((date, self.start_on(time_zone, date)?)))
            .collect()
    }

    /// The first session starting at or after `after`, looking a little over a year ahead.
    pub fn next_session(&self, time_zone: Tz, after: Time) -> Option<Time> {
        let today = after.with_timezone(&time_zone).date_naive();
        let from = today.pred_opt().unwrap_or(today).max(self.start_date);
        (0..400)
            .filter_map(|offset| from.checked_add_signed(Duration::days(offset)))
            .take_while(|date| self.end_date.is_none_or(|end| *date <= end))
            .filter(|date| self.occurs_on(*date))
            .filter_map(|date| self.start_on(time_zone, date))
            .find(|start| *start >= after)
    }

    /// The very first session of the schedule.
    pub fn first_session(&self, time_zone: Tz) -> Option<Time> {
        (0..14)
            .filter_map(|offset| self.start_date.checked_add_signed(Duration::days(offset)))
            .filter(|date| self.occurs_on(*date))
            .find_map(|date| self.start_on(time_zone, date))
            .or_else(|| {
                let from = self.start_on(time_zone, self.start_date)?;
                self.next_session(time_zone, from)
            })
    }
}

/// Parses an IANA time zone name; unknown names fall back to UTC (names are checked at
/// the edge, so this only matters for events written before that check existed).
pub fn time_zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(days: &[u32], hour: u32, minute: u32) -> Schedule {
        Schedule {
            iso_weekdays: days.iter().copied().collect(),
            start_minute: hour * 60 + minute,
            duration_minutes: 90,
            start_date: NaiveDate::from_ymd_opt(2026, 10, 1).expect("date"),
            end_date: None,
            exception_dates: BTreeSet::new(),
        }
    }

    fn utc(text: &str) -> Time {
        text.parse().expect("RFC 3339")
    }

    #[test]
    fn the_local_start_time_holds_across_a_daylight_saving_change() {
        // Tuesdays 18:30 in Chicago: CDT (UTC-5) before 1 Nov 2026, CST (UTC-6) after.
        let schedule = weekly(&[2], 18, 30);
        let chicago = time_zone("America/Chicago");
        let before = schedule
            .next_session(chicago, utc("2026-10-26T00:00:00Z"))
            .expect("session");
        let after = schedule
            .next_session(chicago, utc("2026-11-02T00:00:00Z"))
            .expect("session");
        assert_eq!(before, utc("2026-10-27T23:30:00Z"));
        assert_eq!(after, utc("2026-11-04T00:30:00Z"));
    }

    #[test]
    fn exceptions_and_the_end_date_are_skipped() {
        let mut schedule = weekly(&[1, 4], 9, 0);
        schedule
            .exception_dates
            .insert(NaiveDate::from_ymd_opt(2026, 12, 3).expect("date"));
        let utc_zone = time_zone("UTC");
        let next = schedule
            .next_session(utc_zone, utc("2026-12-01T10:00:00Z"))
            .expect("session");
        assert_eq!(
            next,
            utc("2026-12-07T09:00:00Z"),
            "Thursday the 3rd is an exception"
        );
        schedule.end_date = Some(NaiveDate::from_ymd_opt(2026, 12, 5).expect("date"));
        assert_eq!(
            schedule.next_session(utc_zone, utc("2026-12-01T10:00:00Z")),
            None
        );
    }

    #[test]
    fn the_first_session_is_the_first_matching_day_from_the_start_date() {
        // 1 Oct 2026 is a Thursday; the first Monday session is 5 Oct.
        let schedule = weekly(&[1], 17, 0);
        assert_eq!(
            schedule.first_session(time_zone("UTC")),
            Some(utc("2026-10-05T17:00:00Z"))
        );
    }

    #[test]
    fn occurrences_across_the_autumn_change_keep_their_local_time() {
        let schedule = weekly(&[2], 18, 30);
        let chicago = time_zone("America/Chicago");
        let from = NaiveDate::from_ymd_opt(2026, 10, 20).expect("date");
        let to = NaiveDate::from_ymd_opt(2026, 11, 10).expect("date");
        let starts: Vec<Time> = schedule
            .occurrences(chicago, from, to)
            .into_iter()
            .map(|(_, start)| start)
            .collect();
        assert_eq!(
            starts,
            [
                utc("2026-10-20T23:30:00Z"),
                utc("2026-10-27T23:30:00Z"),
                utc("2026-11-04T00:30:00Z"),
                utc("2026-11-11T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_moves_to_the_first_valid_instant() {
        // 8 Mar 2026, 02:30 does not exist in Chicago.
        let schedule = weekly(&[7], 2, 30);
        let date = NaiveDate::from_ymd_opt(2026, 3, 8).expect("date");
        assert_eq!(
            schedule.start_on(time_zone("America/Chicago"), date),
            Some(utc("2026-03-08T08:30:00Z"))
        );
    }

    #[test]
    fn renders_as_an_rrule() {
        assert_eq!(weekly(&[2, 4], 18, 0).rrule(), "FREQ=WEEKLY;BYDAY=TU,TH");
    }

    #[test]
    fn broken_schedules_are_refused() {
        let mut schedule = weekly(&[], 18, 0);
        assert!(schedule.check().is_err());
        schedule = weekly(&[1], 18, 0);
        schedule.duration_minutes = 5;
        assert!(schedule.check().is_err());
        schedule = weekly(&[8], 18, 0);
        assert!(schedule.check().is_err());
    }
}
