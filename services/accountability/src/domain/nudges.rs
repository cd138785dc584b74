//! The nudge policy: given what is known of one group member at a moment, which
//! nudges are due. Missed daily or weekly check-ins climb a ladder — the participant
//! at the first miss, their accountability partner at the second, the group's
//! facilitator at the third; a recent setback prompts the partner (only where the
//! partner may see it) and the facilitator; two missed sessions in a row reach the
//! facilitator. A rung its recipient acknowledged holds back the ladder's next rung
//! (that one only: a member who acknowledges their own nudge and keeps missing
//! check-ins still reaches their facilitator at the third). The partner hears of missed check-ins only while the member lets peers see
//! their check-ins (else the ladder skips that rung, as for no partner).
//! Nothing is due inside the clinic's quiet hours. Pure: the nudger loads
//! a [`Situation`], asks [`due_nudges`] and sends each answer as a journal command.
//!
//! A nudge's id derives from its cause, so asking again (after a restart, on another
//! replica) yields the same ids, and the journal refuses an id twice.

use std::collections::BTreeSet;

use chrono_tz::Tz;

use super::settings::QuietHours;
use super::visibility::{Consent, Viewer, can_see_check_in};
use super::{Cadence, NudgeLevel, Time, Visibility};

/// How long after a setback its support prompts may still go out (a setback reported
/// during quiet hours is prompted when they end).
pub const SETBACK_PROMPT_WINDOW: chrono::Duration = chrono::Duration::days(7);
/// Missed sessions in a row that reach the facilitator.
pub const MISSED_SESSIONS_ALERT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveGoal {
    pub goal_id: String,
    pub cadence: Cadence,
    pub set_at: Time,
}

/// An outcome measure the member is asked to complete every `every_days` days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureCadence {
    pub instrument: String,
    pub every_days: u32,
    pub set_at: Time,
    /// When they last completed it.
    pub last_at: Option<Time>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentSetback {
    pub setback_id: String,
    pub visibility: Visibility,
    pub at: Time,
}

/// One active group member, as the nudger sees them at `now`.
#[derive(Debug, Clone)]
pub struct Situation {
    pub now: Time,
    /// The time zone and quiet hours of the clinic of the member's group.
    pub time_zone: Tz,
    pub quiet_hours: QuietHours,
    pub last_check_in_at: Option<Time>,
    pub goals: Vec<ActiveGoal>,
    pub partner_id: Option<String>,
    /// The group's facilitators, lead first.
    pub facilitator_ids: Vec<String>,
    /// What the member currently lets peers see.
    pub consent: Consent,
    pub setbacks: Vec<RecentSetback>,
    pub missed_sessions_in_a_row: u32,
    pub last_missed_session: String,
    /// The member's nudges their recipients acknowledged, by nudge id.
    pub acknowledged: BTreeSet<String>,
    /// The outcome measures they are asked to complete.
    pub measures: Vec<MeasureCadence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeReason {
    MissedCheckIn,
    SetbackSupport,
    MissedSessions,
    MeasurementDue,
    /// A measure met a safety rule (sent with the measure, not by the policy).
    SafetyAlert,
}

impl NudgeReason {
    pub const ALL: [NudgeReason; 5] = [
        Self::MissedCheckIn,
        Self::SetbackSupport,
        Self::MissedSessions,
        Self::MeasurementDue,
        Self::SafetyAlert,
    ];

    /// The code events and the read model keep.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissedCheckIn => "missed-check-in",
            Self::SetbackSupport => "setback-support",
            Self::MissedSessions => "missed-sessions",
            Self::MeasurementDue => "measurement-due",
            Self::SafetyAlert => "safety-alert",
        }
    }

    /// [`NudgeReason::as_str`]'s code back (`None` for one no release wrote).
    pub fn from_text(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// A nudge the policy says is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueNudge {
    pub nudge_id: String,
    pub level: NudgeLevel,
    pub reason: NudgeReason,
    pub goal_id: Option<String>,
    /// `None` for the participant themselves.
    pub recipient_id: Option<String>,
    pub due_at: Time,
    /// The rung below it on its ladder (the journal sends nothing once that one is
    /// acknowledged, whatever the read model showed when this was asked).
    pub after: Vec<String>,
}

/// Every nudge due for the member now, in a stable order (goals by id, then setbacks,
/// then missed sessions). Those already sent are the caller's to skip (by id).
pub fn due_nudges(situation: &Situation) -> Vec<DueNudge> {
    if situation
        .quiet_hours
        .contains_time(situation.now, situation.time_zone)
    {
        return Vec::new();
    }
    let facilitator = situation.facilitator_ids.first();
    let mut due = Vec::new();
    let mut goals: Vec<&ActiveGoal> = situation.goals.iter().collect();
    goals.sort_by(|a, b| a.goal_id.cmp(&b.goal_id));
    for goal in goals {
        let Some(period) = goal.cadence.period() else {
            continue;
        };
        let reference = situation
            .last_check_in_at
            .map_or(goal.set_at, |last| last.max(goal.set_at));
        let misses = ((situation.now - reference).num_seconds() / period.num_seconds()).clamp(0, 3);
        let mut previous: Option<String> = None;
        for miss in 1..=misses as i32 {
            let nudge_id = format!("{}-{}-{miss}", goal.goal_id, reference.timestamp());
            // The rung below, acknowledged, holds this one back (only this one: a
            // member who acknowledges their own nudge and still misses check-ins is
            // not hidden from their facilitator).
            let rung: Vec<String> = previous.replace(nudge_id.clone()).into_iter().collect();
            if rung
                .iter()
                .any(|below| situation.acknowledged.contains(below))
            {
                continue;
            }
            let (level, recipient_id) = match miss {
                1 => (NudgeLevel::Participant, None),
                2 => match &situation.partner_id {
                    Some(partner) if situation.consent.share_check_ins => {
                        (NudgeLevel::Partner, Some(partner.clone()))
                    }
                    _ => continue,
                },
                _ => match facilitator {
                    Some(facilitator) => (NudgeLevel::Facilitator, Some(facilitator.clone())),
                    None => continue,
                },
            };
            due.push(DueNudge {
                nudge_id,
                level,
                reason: NudgeReason::MissedCheckIn,
                goal_id: Some(goal.goal_id.clone()),
                recipient_id,
                due_at: reference + period * miss,
                after: rung,
            });
        }
    }
    for setback in &situation.setbacks {
        if setback.at <= situation.now - SETBACK_PROMPT_WINDOW {
            continue;
        }
        let partner_may_see = can_see_check_in(
            Viewer::Peer { partner: true },
            setback.visibility,
            situation.consent,
        );
        if let Some(partner) = &situation.partner_id
            && partner_may_see
        {
            due.push(DueNudge {
                nudge_id: format!("support-{}-partner", setback.setback_id),
                level: NudgeLevel::Partner,
                reason: NudgeReason::SetbackSupport,
                goal_id: None,
                recipient_id: Some(partner.clone()),
                due_at: setback.at,
                after: Vec::new(),
            });
        }
        if let Some(facilitator) = facilitator {
            due.push(DueNudge {
                nudge_id: format!("support-{}-facilitator", setback.setback_id),
                level: NudgeLevel::Facilitator,
                reason: NudgeReason::SetbackSupport,
                goal_id: None,
                recipient_id: Some(facilitator.clone()),
                due_at: setback.at,
                after: Vec::new(),
            });
        }
    }
    if situation.missed_sessions_in_a_row >= MISSED_SESSIONS_ALERT
        && let Some(facilitator) = facilitator
    {
        due.push(DueNudge {
            nudge_id: format!("missed-sessions-{}", situation.last_missed_session),
            level: NudgeLevel::Facilitator,
            reason: NudgeReason::MissedSessions,
            goal_id: None,
            recipient_id: Some(facilitator.clone()),
            due_at: situation.now,
            after: Vec::new(),
        });
    }
    // A measure is due once its cadence has passed since the last one (or since the
    // cadence was set), and again every period it stays undone: the member is asked
    // once per period.
    for measure in &situation.measures {
        let reference = measure
            .last_at
            .map_or(measure.set_at, |last| last.max(measure.set_at));
        let every = chrono::Duration::days(i64::from(measure.every_days));
        if measure.every_days == 0 || situation.now < reference + every {
            continue;
        }
        let periods = (situation.now - reference).num_seconds() / every.num_seconds();
        let due_at = reference + every * i32::try_from(periods).unwrap_or(i32::MAX);
        due.push(DueNudge {
            nudge_id: format!(
                "measure-{}-{}-{periods}",
                measure.instrument,
                reference.timestamp()
            ),
            level: NudgeLevel::Participant,
            reason: NudgeReason::MeasurementDue,
            goal_id: None,
            recipient_id: None,
            due_at,
            after: Vec::new(),
        });
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SHARING: Consent = Consent {
        share_check_ins: true,
        share_milestones: true,
    };

    fn at(day: u32, hour: u32) -> Time {
        chrono::Utc
            .with_ymd_and_hms(2026, 6, day, hour, 0, 0)
            .single()
            .expect("valid")
    }

    /// A member with a daily goal set on 1 June at noon UTC, a partner and a
    /// facilitator, in a UTC clinic whose quiet hours are 22:00–07:00.
    fn given() -> Situation {
        Situation {
            now: at(1, 12),
            time_zone: chrono_tz::UTC,
            quiet_hours: QuietHours::new(22 * 60, 7 * 60).expect("valid"),
            last_check_in_at: None,
            goals: vec![ActiveGoal {
                goal_id: "walk".into(),
                cadence: Cadence::Daily,
                set_at: at(1, 12),
            }],
            partner_id: Some("pat".into()),
            facilitator_ids: vec!["fran".into(), "frank".into()],
            consent: SHARING,
            setbacks: Vec::new(),
            missed_sessions_in_a_row: 0,
            last_missed_session: String::new(),
            acknowledged: BTreeSet::new(),
            measures: Vec::new(),
        }
    }

    fn levels(due: &[DueNudge]) -> Vec<(NudgeLevel, Option<&str>)> {
        due.iter()
            .map(|nudge| (nudge.level, nudge.recipient_id.as_deref()))
            .collect()
    }

    #[test]
    fn given_a_fresh_goal_when_no_day_has_passed_then_nothing_is_due() {
        let situation = Situation {
            now: at(2, 11),
            ..given()
        };
        assert!(due_nudges(&situation).is_empty());
    }

    #[test]
    fn given_missed_days_when_asked_then_the_ladder_climbs_one_rung_a_day() {
        let one = due_nudges(&Situation {
            now: at(2, 12),
            ..given()
        });
        assert_eq!(levels(&one), vec![(NudgeLevel::Participant, None)]);
        assert_eq!(one[0].nudge_id, format!("walk-{}-1", at(1, 12).timestamp()));
        assert_eq!(one[0].due_at, at(2, 12));
        assert_eq!(one[0].reason, NudgeReason::MissedCheckIn);

        let three = due_nudges(&Situation {
            now: at(5, 12),
            ..given()
        });
        assert_eq!(
            levels(&three),
            vec![
                (NudgeLevel::Participant, None),
                (NudgeLevel::Partner, Some("pat")),
                (NudgeLevel::Facilitator, Some("fran")),
            ],
            "three rungs at most, the lead facilitator last"
        );
        assert_eq!(three[2].due_at, at(4, 12));
    }

    #[test]
    fn given_a_check_in_when_asked_then_the_ladder_starts_again_from_it() {
        let due = due_nudges(&Situation {
            now: at(4, 13),
            last_check_in_at: Some(at(3, 12)),
            ..given()
        });
        assert_eq!(levels(&due), vec![(NudgeLevel::Participant, None)]);
        assert_eq!(due[0].nudge_id, format!("walk-{}-1", at(3, 12).timestamp()));
    }

    #[test]
    fn given_an_acknowledged_rung_then_the_next_rung_is_held_back() {
        let reference = at(1, 12).timestamp();
        let partner_rung = format!("walk-{reference}-2");
        let due = due_nudges(&Situation {
            now: at(5, 12),
            acknowledged: BTreeSet::from([partner_rung.clone()]),
            ..given()
        });
        assert_eq!(
            levels(&due),
            vec![
                (NudgeLevel::Participant, None),
                (NudgeLevel::Partner, Some("pat")),
            ],
            "the facilitator is not told once the partner has seen it"
        );
        assert_eq!(due[1].after, vec![format!("walk-{reference}-1")]);
        let first = due_nudges(&Situation {
            now: at(5, 12),
            acknowledged: BTreeSet::from([format!("walk-{reference}-1")]),
            ..given()
        });
        // The member's own acknowledgement holds back the partner's rung, not the
        // facilitator's.
        assert_eq!(
            levels(&first),
            vec![
                (NudgeLevel::Participant, None),
                (NudgeLevel::Facilitator, Some("fran")),
            ]
        );
        // Each rung names the one below it.
        let all = due_nudges(&Situation {
            now: at(5, 12),
            ..given()
        });
        assert_eq!(all[0].after, Vec::<String>::new());
        assert_eq!(all[2].after, vec![partner_rung]);
    }

    #[test]
    fn given_a_measure_cadence_then_the_member_is_asked_once_per_period() {
        let phq9 = |last_at| MeasureCadence {
            instrument: "phq-9".into(),
            every_days: 14,
            set_at: at(1, 12),
            last_at,
        };
        let asked = |now, last_at| {
            due_nudges(&Situation {
                now,
                goals: Vec::new(),
                measures: vec![phq9(last_at)],
                ..given()
            })
        };
        assert!(asked(at(15, 11), None).is_empty(), "not due before 14 days");
        let due = asked(at(15, 12), None);
        assert_eq!(levels(&due), vec![(NudgeLevel::Participant, None)]);
        assert_eq!(due[0].reason, NudgeReason::MeasurementDue);
        assert_eq!(
            due[0].nudge_id,
            format!("measure-phq-9-{}-1", at(1, 12).timestamp())
        );
        // Still undone two weeks later: asked again, under the next period's id.
        let later = asked(at(29, 12), None);
        assert_eq!(
            later[0].nudge_id,
            format!("measure-phq-9-{}-2", at(1, 12).timestamp())
        );
        assert_eq!(later[0].due_at, at(29, 12));
        // Completed on the 10th: due again on the 24th, under a new id.
        assert!(asked(at(20, 12), Some(at(10, 12))).is_empty());
        let again = asked(at(24, 12), Some(at(10, 12)));
        assert_eq!(
            again[0].nudge_id,
            format!("measure-phq-9-{}-1", at(10, 12).timestamp())
        );
        // Quiet hours hold it back like any nudge.
        assert!(asked(at(24, 23), Some(at(10, 12))).is_empty());
    }

    #[test]
    fn given_consent_withdrawn_then_the_partner_does_not_hear_of_missed_check_ins() {
        let due = due_nudges(&Situation {
            now: at(5, 12),
            consent: Consent::default(),
            ..given()
        });
        assert_eq!(
            levels(&due),
            vec![
                (NudgeLevel::Participant, None),
                (NudgeLevel::Facilitator, Some("fran")),
            ]
        );
    }

    #[test]
    fn given_no_partner_when_the_second_rung_is_due_then_it_is_skipped_not_the_third() {
        let due = due_nudges(&Situation {
            now: at(5, 12),
            partner_id: None,
            ..given()
        });
        assert_eq!(
            levels(&due),
            vec![
                (NudgeLevel::Participant, None),
                (NudgeLevel::Facilitator, Some("fran")),
            ]
        );
    }

    #[test]
    fn given_quiet_hours_in_the_clinic_zone_when_asked_then_nothing_is_due() {
        // 23:00 UTC is quiet in a UTC clinic, but 19:00 in New York (EDT) is not.
        let late = Situation {
            now: at(5, 23),
            ..given()
        };
        assert!(due_nudges(&late).is_empty());
        let new_york = Situation {
            time_zone: chrono_tz::America::New_York,
            ..late
        };
        assert_eq!(due_nudges(&new_york).len(), 3);
    }

    #[test]
    fn given_weekly_and_per_session_goals_then_only_the_weekly_cadence_counts_days() {
        let due = due_nudges(&Situation {
            now: at(9, 12),
            goals: vec![
                ActiveGoal {
                    goal_id: "meetings".into(),
                    cadence: Cadence::Weekly,
                    set_at: at(1, 12),
                },
                ActiveGoal {
                    goal_id: "share".into(),
                    cadence: Cadence::PerSession,
                    set_at: at(1, 12),
                },
            ],
            ..given()
        });
        assert_eq!(levels(&due), vec![(NudgeLevel::Participant, None)]);
        assert_eq!(due[0].goal_id.as_deref(), Some("meetings"));
    }

    #[test]
    fn given_a_setback_shared_with_the_partner_then_partner_and_facilitator_are_prompted() {
        let due = due_nudges(&Situation {
            setbacks: vec![RecentSetback {
                setback_id: "s1".into(),
                visibility: Visibility::Partner,
                at: at(1, 10),
            }],
            ..given()
        });
        assert_eq!(
            levels(&due),
            vec![
                (NudgeLevel::Partner, Some("pat")),
                (NudgeLevel::Facilitator, Some("fran")),
            ]
        );
        assert_eq!(due[0].nudge_id, "support-s1-partner");
        assert_eq!(due[1].nudge_id, "support-s1-facilitator");
        assert!(
            due.iter()
                .all(|nudge| nudge.reason == NudgeReason::SetbackSupport)
        );
        assert_eq!(due[0].due_at, at(1, 10));
    }

    #[test]
    fn given_a_setback_the_partner_may_not_see_then_only_the_facilitator_is_prompted() {
        let setback = |visibility| RecentSetback {
            setback_id: "s1".into(),
            visibility,
            at: at(1, 10),
        };
        for visibility in [Visibility::Facilitators, Visibility::Private] {
            let due = due_nudges(&Situation {
                setbacks: vec![setback(visibility)],
                ..given()
            });
            assert_eq!(levels(&due), vec![(NudgeLevel::Facilitator, Some("fran"))]);
        }
        // Shared with the group, but the member withdrew their consent to share since:
        // the partner must not learn of it from a prompt.
        let withdrawn = due_nudges(&Situation {
            setbacks: vec![setback(Visibility::Group)],
            consent: Consent::default(),
            ..given()
        });
        assert_eq!(
            levels(&withdrawn),
            vec![(NudgeLevel::Facilitator, Some("fran"))]
        );
    }

    #[test]
    fn given_an_old_setback_then_no_prompt_is_due() {
        let due = due_nudges(&Situation {
            setbacks: vec![RecentSetback {
                setback_id: "s1".into(),
                visibility: Visibility::Group,
                at: at(1, 12) - SETBACK_PROMPT_WINDOW,
            }],
            ..given()
        });
        assert!(due.is_empty());
    }

    #[test]
    fn given_two_missed_sessions_in_a_row_then_the_facilitator_hears_once_per_run() {
        let one = due_nudges(&Situation {
            missed_sessions_in_a_row: 1,
            last_missed_session: "2026-05-28".into(),
            ..given()
        });
        assert!(one.is_empty());
        let two = due_nudges(&Situation {
            missed_sessions_in_a_row: 2,
            last_missed_session: "2026-05-30".into(),
            ..given()
        });
        assert_eq!(levels(&two), vec![(NudgeLevel::Facilitator, Some("fran"))]);
        assert_eq!(two[0].nudge_id, "missed-sessions-2026-05-30");
        assert_eq!(two[0].reason, NudgeReason::MissedSessions);
        let nobody = due_nudges(&Situation {
            missed_sessions_in_a_row: 3,
            facilitator_ids: Vec::new(),
            ..given()
        });
        assert!(nobody.is_empty(), "no facilitator, nobody to tell");
    }
}
