//! A participant's journal: goals, check-ins, encouragement received, setbacks,
//! milestones, nudges and sessions attended. A setback resets only the days since the
//! last setback; days in recovery, the check-in streak, goals completed and sessions
//! attended all survive it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::visibility::{Consent, widest_allowed};
use super::{Cadence, DeliveryChannel, DomainError, Event, NudgeLevel, Progress, Time, Visibility};

pub const DAY_MILESTONES: [u32; 7] = [1, 7, 30, 60, 90, 180, 365];
/// The reason of a nudge that alerts facilitators to a measure's safety concern.
pub const SAFETY_ALERT: &str = super::nudges::NudgeReason::SafetyAlert.as_str();

/// A measure's answers as the event keeps them (and seals): `item=option;…`.
pub fn measurement_answers(answers: &[(String, u32)]) -> String {
    answers
        .iter()
        .map(|(item, option)| format!("{item}={option}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// [`measurement_answers`]' text back to answers (a part it never writes is left out).
pub fn parse_measurement_answers(text: &str) -> Vec<(String, u32)> {
    text.split(';')
        .filter_map(|part| {
            let (item, option) = part.split_once('=')?;
            Some((item.to_owned(), option.parse().ok()?))
        })
        .collect()
}
pub const GOAL_MILESTONES: [u32; 4] = [1, 5, 10, 25];
pub const ATTENDANCE_RUN_MILESTONES: [u32; 4] = [4, 8, 12, 26];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalStatus {
    Active,
    Completed,
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    /// Sealed in a stored journal (`crate::personal`); the application opens it for an
    /// answer, or for a revision's decision.
    pub text: String,
    pub cadence: Cadence,
    pub status: GoalStatus,
    pub set_at: Time,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInFacts {
    pub visibility: Visibility,
    pub at: Time,
}

/// A messaging service's last receipt for a nudge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: bool,
    pub channel: DeliveryChannel,
    pub at: Time,
}

/// A nudge the journal sent, as its recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNudge {
    pub level: NudgeLevel,
    pub reason: String,
    /// The partner (a participant id) or facilitator (a staff id); `None` for the
    /// participant themselves.
    pub recipient_id: Option<String>,
    pub sent_at: Time,
    pub acknowledged_at: Option<Time>,
    pub delivery: Option<Delivery>,
}

/// Who acts on a nudge, as the application knows the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The participant whose journal it is.
    Owner,
    /// Another participant (a partner), by id.
    Participant(String),
    /// A staff member (a facilitator), by id.
    Staff(String),
}

impl SentNudge {
    /// Whether `who` is the nudge's recipient.
    pub fn is_for(&self, who: &Recipient) -> bool {
        match (self.level, who) {
            (NudgeLevel::Participant, Recipient::Owner) => true,
            (NudgeLevel::Partner, Recipient::Participant(id))
            | (NudgeLevel::Facilitator, Recipient::Staff(id)) => {
                self.recipient_id.as_deref() == Some(id.as_str())
            }
            _ => false,
        }
    }
}

/// The id a nudge shows in its resource name: its own where that is a valid id
/// segment (every nudge id the policy makes is), else one derived from it.
pub fn nudge_public_id(nudge_id: &str) -> String {
    match circle_names::Id::parse(nudge_id) {
        Ok(id) => id.into_string(),
        Err(_) => circle_names::Id::derived(&format!("nudge/{nudge_id}")).into_string(),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    pub started_at: Option<Time>,
    pub goals: BTreeMap<String, Goal>,
    pub check_ins: BTreeMap<String, CheckInFacts>,
    pub last_check_in_at: Option<Time>,
    pub last_progress: Option<Progress>,
    pub last_craving: Option<u32>,
    pub check_in_days: BTreeSet<NaiveDate>,
    pub last_setback_at: Option<Time>,
    pub goals_completed: u32,
    pub encouragements: BTreeSet<(String, String)>,
    pub milestones: BTreeSet<(String, u32)>,
    /// By nudge id.
    pub nudges: BTreeMap<String, SentNudge>,
    /// Outcome measures recorded, by id.
    pub measurements: BTreeSet<String>,
    /// Days between measures, by instrument (none: not asked).
    pub measurement_cadences: BTreeMap<String, u32>,
    /// Per session: attended (`Some(true)`), missed (`Some(false)`) or excused (`None`).
    pub sessions: BTreeMap<String, Option<bool>>,
    pub sessions_attended: u32,
    pub attended_in_a_row: u32,
    pub missed_in_a_row: u32,
}

/// The counters a board and a timeline show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub days_since_setback: u32,
    pub days_in_recovery: u32,
    pub check_in_streak_days: u32,
    pub sessions_attended: u32,
    pub goals_completed: u32,
}

fn whole_days(from: Time, to: Time) -> u32 {
    (to - from).num_days().max(0) as u32
}

/// The facts counters are computed from; the read model keeps the same ones.
#[derive(Debug, Clone, Copy)]
pub struct CounterFacts<'a> {
    pub started_at: Option<Time>,
    pub last_setback_at: Option<Time>,
    pub check_in_days: &'a BTreeSet<NaiveDate>,
    pub sessions_attended: u32,
    pub goals_completed: u32,
}

impl CounterFacts<'_> {
    pub fn counters(&self, now: Time) -> Counters {
        let started = self.started_at.unwrap_or(now);
        let since_setback = self.last_setback_at.unwrap_or(started);
        Counters {
            days_since_setback: whole_days(since_setback, now),
            days_in_recovery: whole_days(started, now),
            check_in_streak_days: streak(self.check_in_days, now.date_naive()),
            sessions_attended: self.sessions_attended,
            goals_completed: self.goals_completed,
        }
    }
}

/// Consecutive days with a check-in, ending today or yesterday.
fn streak(days: &BTreeSet<NaiveDate>, today: NaiveDate) -> u32 {
    let mut day = if days.contains(&today) {
        today
    } else {
        today.pred_opt().unwrap_or(today)
    };
    let mut streak = 0;
    while days.contains(&day) {
        streak += 1;
        match day.pred_opt() {
            Some(previous) => day = previous,
            None => break,
        }
    }
    streak
}

impl Journal {
    pub fn counters(&self, now: Time) -> Counters {
        CounterFacts {
            started_at: self.started_at,
            last_setback_at: self.last_setback_at,
            check_in_days: &self.check_in_days,
            sessions_attended: self.sessions_attended,
            goals_completed: self.goals_completed,
        }
        .counters(now)
    }

    /// The nudge whose resource name shows `public_id`, with its nudge id.
    pub fn nudge(&self, public_id: &str) -> Option<(&String, &SentNudge)> {
        self.nudges.get_key_value(public_id).or_else(|| {
            self.nudges
                .iter()
                .find(|(nudge_id, _)| nudge_public_id(nudge_id) == public_id)
        })
    }

    fn milestone(&self, kind: &str, value: u32) -> Option<Event> {
        (!self.milestones.contains(&(kind.to_owned(), value))).then(|| Event::MilestoneReached {
            kind: kind.to_owned(),
            value,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalCommand {
    SetGoal {
        goal_id: String,
        text: String,
        cadence: Cadence,
    },
    ReviseGoal {
        goal_id: String,
        text: String,
        cadence: Cadence,
    },
    CompleteGoal {
        goal_id: String,
    },
    AbandonGoal {
        goal_id: String,
    },
    /// `consent` is the author's current peer-visibility consent.
    SubmitCheckIn {
        check_in_id: String,
        goal_id: Option<String>,
        progress: Progress,
        mood: u32,
        craving: u32,
        text: String,
        visibility: Visibility,
        session_id: Option<String>,
        consent: Consent,
    },
    /// `can_see`: the encourager is an active member of a group the author is in,
    /// and may see this check-in.
    Encourage {
        check_in_id: String,
        from_participant_id: String,
        reaction: String,
        message: String,
        can_see: bool,
    },
    ReportSetback {
        setback_id: String,
        text: String,
        visibility: Visibility,
        consent: Consent,
    },
    /// Time-based milestones (days since the last setback) are recorded by the nudge
    /// process; a no-op when already reached.
    RecordDayMilestones {
        now: Time,
    },
    /// Nothing is sent when one of `after` (the rung below on the same ladder) was
    /// acknowledged.
    SendNudge {
        nudge_id: String,
        level: NudgeLevel,
        reason: String,
        goal_id: Option<String>,
        recipient_id: Option<String>,
        due_at: Time,
        after: Vec<String>,
    },
    /// `by` must be the nudge's recipient; to anyone else there is no such nudge.
    AcknowledgeNudge {
        public_id: String,
        by: Recipient,
    },
    RecordNudgeDelivery {
        public_id: String,
        delivered: bool,
        channel: DeliveryChannel,
    },
    /// `every_days` 0 stops asking.
    SetMeasurementCadence {
        instrument: String,
        every_days: u32,
    },
    /// A measure the application scored (`domain::instruments`); when it meets a
    /// safety rule, each of `alert` (the facilitators of the member's groups) is
    /// nudged in the same commit, at `now`, whatever the hour.
    RecordMeasurement {
        measurement_id: String,
        scored: super::instruments::Scored,
        answers: String,
        alert: Vec<String>,
        now: Time,
    },
    /// `outcome`: attended, missed, or `None` for excused.
    RecordSessionAttendance {
        session_id: String,
        outcome: Option<bool>,
    },
}

fn active_goal<'a>(state: &'a Journal, goal_id: &str) -> Result<&'a Goal, DomainError> {
    let goal = state.goals.get(goal_id).ok_or(DomainError::GoalNotFound)?;
    if goal.status != GoalStatus::Active {
        return Err(DomainError::GoalNotActive);
    }
    Ok(goal)
}

pub fn decide(state: &Journal, command: JournalCommand) -> Result<Vec<Event>, DomainError> {
    let events = match command {
        JournalCommand::SetGoal {
            goal_id,
            text,
            cadence,
        } => {
            if state.goals.contains_key(&goal_id) {
                return Err(DomainError::GoalExists);
            }
            vec![Event::GoalSet {
                goal_id,
                text,
                cadence,
            }]
        }
        JournalCommand::ReviseGoal {
            goal_id,
            text,
            cadence,
        } => {
            let goal = active_goal(state, &goal_id)?;
            // The text compared in clear: the application opens it for this decision.
            if goal.text == text && goal.cadence == cadence {
                return Ok(Vec::new());
            }
            vec![Event::GoalRevised {
                goal_id,
                text,
                cadence,
            }]
        }
        JournalCommand::CompleteGoal { goal_id } => {
            active_goal(state, &goal_id)?;
            let mut events = vec![Event::GoalCompleted { goal_id }];
            let completed = state.goals_completed + 1;
            if GOAL_MILESTONES.contains(&completed) {
                events.extend(state.milestone("goals-completed", completed));
            }
            events
        }
        JournalCommand::AbandonGoal { goal_id } => {
            active_goal(state, &goal_id)?;
            vec![Event::GoalAbandoned { goal_id }]
        }
        JournalCommand::SubmitCheckIn {
            check_in_id,
            goal_id,
            progress,
            mood,
            craving,
            text,
            visibility,
            session_id,
            consent,
        } => {
            if state.check_ins.contains_key(&check_in_id) {
                return Ok(Vec::new());
            }
            if let Some(goal_id) = &goal_id {
                active_goal(state, goal_id)?;
            }
            if visibility < widest_allowed(consent) {
                return Err(DomainError::ConsentRequired);
            }
            vec![Event::CheckInSubmitted {
                check_in_id,
                goal_id,
                progress,
                mood,
                craving,
                text,
                visibility,
                session_id,
            }]
        }
        JournalCommand::Encourage {
            check_in_id,
            from_participant_id,
            reaction,
            message,
            can_see,
        } => {
            if !state.check_ins.contains_key(&check_in_id) {
                return Err(DomainError::CheckInNotFound);
            }
            if !can_see {
                return Err(DomainError::CannotSeeCheckIn);
            }
            if state
                .encouragements
                .contains(&(check_in_id.clone(), from_participant_id.clone()))
            {
                return Err(DomainError::AlreadyEncouraged);
            }
            vec![Event::EncouragementReceived {
                check_in_id,
                from_participant_id,
                reaction,
                message,
            }]
        }
        JournalCommand::ReportSetback {
            setback_id,
            text,
            visibility,
            consent,
        } => {
            if visibility < widest_allowed(consent) {
                return Err(DomainError::ConsentRequired);
            }
            vec![Event::SetbackReported {
                setback_id,
                text,
                visibility,
            }]
        }
        JournalCommand::RecordDayMilestones { now } => {
            let days = state.counters(now).days_since_setback;
            if state.started_at.is_none() {
                return Ok(Vec::new());
            }
            DAY_MILESTONES
                .iter()
                .filter(|value| **value <= days)
                .filter_map(|value| state.milestone("days-since-setback", *value))
                .collect()
        }
        JournalCommand::SendNudge {
            nudge_id,
            level,
            reason,
            goal_id,
            recipient_id,
            due_at,
            after,
        } => {
            if state.nudges.contains_key(&nudge_id) {
                return Ok(Vec::new());
            }
            let stopped = after.iter().any(|earlier| {
                state
                    .nudges
                    .get(earlier)
                    .is_some_and(|nudge| nudge.acknowledged_at.is_some())
            });
            if stopped {
                return Ok(Vec::new());
            }
            vec![Event::NudgeSent {
                nudge_id,
                level,
                reason,
                goal_id,
                recipient_id,
                due_at,
            }]
        }
        JournalCommand::AcknowledgeNudge { public_id, by } => {
            let (nudge_id, nudge) = state
                .nudge(&public_id)
                .filter(|(_, nudge)| nudge.is_for(&by))
                .ok_or(DomainError::NudgeNotFound)?;
            if nudge.acknowledged_at.is_some() {
                return Ok(Vec::new());
            }
            vec![Event::NudgeAcknowledged {
                nudge_id: nudge_id.clone(),
            }]
        }
        JournalCommand::RecordNudgeDelivery {
            public_id,
            delivered,
            channel,
        } => {
            let (nudge_id, nudge) = state.nudge(&public_id).ok_or(DomainError::NudgeNotFound)?;
            match nudge.delivery {
                Some(last) if last.delivered == delivered && last.channel == channel => {
                    return Ok(Vec::new());
                }
                Some(last) if last.delivered && !delivered => {
                    return Err(DomainError::NudgeAlreadyDelivered);
                }
                _ => {}
            }
            vec![Event::NudgeDeliveryRecorded {
                nudge_id: nudge_id.clone(),
                delivered,
                channel,
            }]
        }
        JournalCommand::SetMeasurementCadence {
            instrument,
            every_days,
        } => {
            let current = state.measurement_cadences.get(&instrument).copied();
            if current.unwrap_or(0) == every_days {
                return Ok(Vec::new());
            }
            vec![Event::MeasurementCadenceSet {
                instrument,
                every_days,
            }]
        }
        JournalCommand::RecordMeasurement {
            measurement_id,
            scored,
            answers,
            alert,
            now,
        } => {
            if state.measurements.contains(&measurement_id) {
                return Ok(Vec::new());
            }
            let concern = !scored.safety.is_empty();
            let mut events = vec![Event::MeasurementRecorded {
                measurement_id: measurement_id.clone(),
                instrument: scored.instrument,
                version: scored.version,
                answers,
                scores: scored.scales,
                safety: scored.safety,
            }];
            if concern {
                for facilitator in alert {
                    events.push(Event::NudgeSent {
                        nudge_id: format!("safety-{measurement_id}-{facilitator}"),
                        level: NudgeLevel::Facilitator,
                        reason: SAFETY_ALERT.to_owned(),
                        goal_id: None,
                        recipient_id: Some(facilitator),
                        due_at: now,
                    });
                }
            }
            events
        }
        JournalCommand::RecordSessionAttendance {
            session_id,
            outcome,
        } => {
            if state.sessions.get(&session_id) == Some(&outcome) {
                return Ok(Vec::new());
            }
            let attended = outcome == Some(true);
            let mut events = vec![Event::SessionAttended {
                session_id,
                attended,
                excused: outcome.is_none(),
            }];
            let run = if attended {
                state.attended_in_a_row + 1
            } else {
                0
            };
            if attended && ATTENDANCE_RUN_MILESTONES.contains(&run) {
                events.extend(state.milestone("sessions-attended-in-a-row", run));
            }
            events
        }
    };
    Ok(events)
}

/// Folds an event in; `at` is the time of the commit it is in.
pub fn evolve(mut state: Journal, event: &Event, at: Time) -> Journal {
    if state.started_at.is_none() {
        state.started_at = Some(at);
    }
    match event {
        Event::GoalSet {
            goal_id,
            text,
            cadence,
        } => {
            state.goals.insert(
                goal_id.clone(),
                Goal {
                    text: text.clone(),
                    cadence: *cadence,
                    status: GoalStatus::Active,
                    set_at: at,
                },
            );
        }
        Event::GoalRevised {
            goal_id,
            text,
            cadence,
        } => {
            if let Some(goal) = state.goals.get_mut(goal_id) {
                goal.text = text.clone();
                goal.cadence = *cadence;
            }
        }
        Event::GoalCompleted { goal_id } => {
            if let Some(goal) = state.goals.get_mut(goal_id) {
                goal.status = GoalStatus::Completed;
                state.goals_completed += 1;
            }
        }
        Event::GoalAbandoned { goal_id } => {
            if let Some(goal) = state.goals.get_mut(goal_id) {
                goal.status = GoalStatus::Abandoned;
            }
        }
        Event::CheckInSubmitted {
            check_in_id,
            visibility,
            progress,
            craving,
            ..
        } => {
            state.check_ins.insert(
                check_in_id.clone(),
                CheckInFacts {
                    visibility: *visibility,
                    at,
                },
            );
            state.last_check_in_at = Some(at);
            state.last_progress = Some(*progress);
            state.last_craving = Some(*craving);
            state.check_in_days.insert(at.date_naive());
        }
        Event::EncouragementReceived {
            check_in_id,
            from_participant_id,
            ..
        } => {
            state
                .encouragements
                .insert((check_in_id.clone(), from_participant_id.clone()));
        }
        Event::SetbackReported { .. } => {
            state.last_setback_at = Some(at);
            // Day milestones count from the last setback: they can be reached again.
            state
                .milestones
                .retain(|(kind, _)| kind != "days-since-setback");
        }
        Event::MilestoneReached { kind, value } => {
            state.milestones.insert((kind.clone(), *value));
        }
        Event::NudgeSent {
            nudge_id,
            level,
            reason,
            recipient_id,
            ..
        } => {
            state.nudges.insert(
                nudge_id.clone(),
                SentNudge {
                    level: *level,
                    reason: reason.clone(),
                    recipient_id: recipient_id.clone(),
                    sent_at: at,
                    acknowledged_at: None,
                    delivery: None,
                },
            );
        }
        Event::MeasurementCadenceSet {
            instrument,
            every_days,
        } => {
            if *every_days == 0 {
                state.measurement_cadences.remove(instrument);
            } else {
                state
                    .measurement_cadences
                    .insert(instrument.clone(), *every_days);
            }
        }
        Event::MeasurementRecorded { measurement_id, .. } => {
            state.measurements.insert(measurement_id.clone());
        }
        Event::NudgeAcknowledged { nudge_id } => {
            if let Some(nudge) = state.nudges.get_mut(nudge_id) {
                nudge.acknowledged_at.get_or_insert(at);
            }
        }
        Event::NudgeDeliveryRecorded {
            nudge_id,
            delivered,
            channel,
        } => {
            if let Some(nudge) = state.nudges.get_mut(nudge_id) {
                nudge.delivery = Some(Delivery {
                    delivered: *delivered,
                    channel: *channel,
                    at,
                });
            }
        }
        Event::SessionAttended {
            session_id,
            attended,
            excused,
        } => {
            let outcome = if *excused { None } else { Some(*attended) };
            let before = state.sessions.insert(session_id.clone(), outcome);
            if outcome == Some(true) && before != Some(Some(true)) {
                state.sessions_attended += 1;
            }
            if before == Some(Some(true)) && outcome != Some(true) {
                state.sessions_attended = state.sessions_attended.saturating_sub(1);
            }
            match outcome {
                Some(true) => {
                    state.attended_in_a_row += 1;
                    state.missed_in_a_row = 0;
                }
                Some(false) => {
                    state.attended_in_a_row = 0;
                    state.missed_in_a_row += 1;
                }
                // Excused counts neither way; an absence corrected to excused is taken back.
                None => {
                    if before == Some(Some(false)) {
                        state.missed_in_a_row = state.missed_in_a_row.saturating_sub(1);
                    }
                }
            }
        }
        Event::PartnershipProposed { .. }
        | Event::PartnershipAccepted
        | Event::PartnershipEnded { .. }
        | Event::QuietHoursSet { .. } => {}
    }
    state
}

#[cfg(test)]
mod tests {
    //! Given events (with times), when a command, then events or an error.

    use super::*;

    fn at(text: &str) -> Time {
        text.parse().expect("RFC 3339")
    }

    fn given(events: &[(&str, Event)]) -> Journal {
        events
            .iter()
            .fold(Journal::default(), |state, (time, event)| {
                evolve(state, event, at(time))
            })
    }

    const SHARING: Consent = Consent {
        share_check_ins: true,
        share_milestones: true,
    };

    fn goal_set() -> (&'static str, Event) {
        (
            "2026-11-01T12:00:00Z",
            Event::GoalSet {
                goal_id: "g1".into(),
                text: "Call my sponsor".into(),
                cadence: Cadence::Daily,
            },
        )
    }

    fn check_in(visibility: Visibility, consent: Consent, goal: Option<&str>) -> JournalCommand {
        JournalCommand::SubmitCheckIn {
            check_in_id: "c1".into(),
            goal_id: goal.map(str::to_owned),
            progress: Progress::OnTrack,
            mood: 7,
            craving: 2,
            text: "Called him twice.".into(),
            visibility,
            session_id: None,
            consent,
        }
    }

    #[test]
    fn a_goal_is_set_revised_and_completed_with_a_first_milestone() {
        assert!(matches!(
            decide(
                &Journal::default(),
                JournalCommand::SetGoal {
                    goal_id: "g1".into(),
                    text: "t".into(),
                    cadence: Cadence::Weekly
                }
            )
            .as_deref(),
            Ok([Event::GoalSet { .. }])
        ));
        let state = given(&[goal_set()]);
        assert_eq!(
            decide(
                &state,
                JournalCommand::SetGoal {
                    goal_id: "g1".into(),
                    text: "t".into(),
                    cadence: Cadence::Weekly
                }
            ),
            Err(DomainError::GoalExists)
        );
        assert_eq!(
            decide(
                &state,
                JournalCommand::ReviseGoal {
                    goal_id: "g1".into(),
                    text: "Call my sponsor daily".into(),
                    cadence: Cadence::Daily
                }
            ),
            Ok(vec![Event::GoalRevised {
                goal_id: "g1".into(),
                text: "Call my sponsor daily".into(),
                cadence: Cadence::Daily
            }])
        );
        assert_eq!(
            decide(
                &state,
                JournalCommand::CompleteGoal {
                    goal_id: "g1".into()
                }
            ),
            Ok(vec![
                Event::GoalCompleted {
                    goal_id: "g1".into()
                },
                Event::MilestoneReached {
                    kind: "goals-completed".into(),
                    value: 1
                }
            ])
        );
    }

    #[test]
    fn a_check_in_on_an_abandoned_goal_is_refused() {
        let state = given(&[
            goal_set(),
            (
                "2026-11-02T12:00:00Z",
                Event::GoalAbandoned {
                    goal_id: "g1".into(),
                },
            ),
        ]);
        assert_eq!(
            decide(&state, check_in(Visibility::Group, SHARING, Some("g1"))),
            Err(DomainError::GoalNotActive)
        );
        assert_eq!(
            decide(&state, check_in(Visibility::Group, SHARING, Some("nope"))),
            Err(DomainError::GoalNotFound)
        );
    }

    #[test]
    fn a_check_in_is_never_shared_wider_than_consent() {
        let no_consent = Consent::default();
        assert_eq!(
            decide(
                &Journal::default(),
                check_in(Visibility::Group, no_consent, None)
            ),
            Err(DomainError::ConsentRequired)
        );
        assert_eq!(
            decide(
                &Journal::default(),
                check_in(Visibility::Partner, no_consent, None)
            ),
            Err(DomainError::ConsentRequired)
        );
        assert!(matches!(
            decide(
                &Journal::default(),
                check_in(Visibility::Facilitators, no_consent, None)
            )
            .as_deref(),
            Ok([Event::CheckInSubmitted { .. }, ..])
        ));
        assert!(matches!(
            decide(
                &Journal::default(),
                check_in(Visibility::Group, SHARING, None)
            )
            .as_deref(),
            Ok([Event::CheckInSubmitted { .. }, ..])
        ));
    }

    #[test]
    fn encouragement_needs_a_visible_check_in_and_comes_once_per_member() {
        let state = given(&[(
            "2026-11-02T12:00:00Z",
            Event::CheckInSubmitted {
                check_in_id: "c1".into(),
                goal_id: None,
                progress: Progress::Struggling,
                mood: 3,
                craving: 6,
                text: String::new(),
                visibility: Visibility::Group,
                session_id: None,
            },
        )]);
        let encourage = |can_see| JournalCommand::Encourage {
            check_in_id: "c1".into(),
            from_participant_id: "p2".into(),
            reaction: "strong".into(),
            message: "You've got this".into(),
            can_see,
        };
        let events = decide(&state, encourage(true)).expect("a member who can see it");
        assert_eq!(
            events,
            vec![Event::EncouragementReceived {
                check_in_id: "c1".into(),
                from_participant_id: "p2".into(),
                reaction: "strong".into(),
                message: "You've got this".into(),
            }]
        );
        assert_eq!(
            decide(&state, encourage(false)),
            Err(DomainError::CannotSeeCheckIn)
        );
        let after = evolve(state, &events[0], at("2026-11-02T13:00:00Z"));
        assert_eq!(
            decide(&after, encourage(true)),
            Err(DomainError::AlreadyEncouraged)
        );
    }

    #[test]
    fn a_setback_resets_only_the_days_since_the_last_setback() {
        let mut state = given(&[goal_set()]);
        for day in 1..=5 {
            let time = format!("2026-11-0{day}T18:00:00Z");
            state = evolve(
                state,
                &Event::CheckInSubmitted {
                    check_in_id: format!("c{day}"),
                    goal_id: Some("g1".into()),
                    progress: Progress::OnTrack,
                    mood: 6,
                    craving: 2,
                    text: String::new(),
                    visibility: Visibility::Group,
                    session_id: None,
                },
                at(&time),
            );
        }
        state = evolve(
            state,
            &Event::SessionAttended {
                session_id: "s1".into(),
                attended: true,
                excused: false,
            },
            at("2026-11-03T00:00:00Z"),
        );
        state = evolve(
            state,
            &Event::GoalCompleted {
                goal_id: "g1".into(),
            },
            at("2026-11-04T00:00:00Z"),
        );
        let before = state.counters(at("2026-11-05T20:00:00Z"));
        state = evolve(
            state,
            &Event::SetbackReported {
                setback_id: "s".into(),
                text: String::new(),
                visibility: Visibility::Facilitators,
            },
            at("2026-11-05T20:00:00Z"),
        );
        let after = state.counters(at("2026-11-05T20:00:00Z"));
        assert_eq!(before.days_since_setback, 4);
        assert_eq!(after.days_since_setback, 0);
        assert_eq!(
            (
                after.days_in_recovery,
                after.check_in_streak_days,
                after.sessions_attended,
                after.goals_completed
            ),
            (
                before.days_in_recovery,
                before.check_in_streak_days,
                before.sessions_attended,
                before.goals_completed
            )
        );
        assert_eq!(after.check_in_streak_days, 5);
    }

    #[test]
    fn an_absence_corrected_to_excused_no_longer_counts_as_missed() {
        let mut state = Journal::default();
        for (session, outcome) in [("s1", Some(false)), ("s2", Some(false))] {
            let events = decide(
                &state,
                JournalCommand::RecordSessionAttendance {
                    session_id: session.into(),
                    outcome,
                },
            )
            .expect("ok");
            state = events
                .iter()
                .fold(state, |s, e| evolve(s, e, at("2026-11-02T13:00:00Z")));
        }
        assert_eq!(state.missed_in_a_row, 2);
        let events = decide(
            &state,
            JournalCommand::RecordSessionAttendance {
                session_id: "s1".into(),
                outcome: None,
            },
        )
        .expect("ok");
        assert_eq!(
            events,
            vec![Event::SessionAttended {
                session_id: "s1".into(),
                attended: false,
                excused: true
            }]
        );
        state = events
            .iter()
            .fold(state, |s, e| evolve(s, e, at("2026-11-02T14:00:00Z")));
        assert_eq!((state.missed_in_a_row, state.sessions_attended), (1, 0));
        let again = decide(
            &state,
            JournalCommand::RecordSessionAttendance {
                session_id: "s1".into(),
                outcome: None,
            },
        );
        assert_eq!(again, Ok(vec![]), "the same outcome twice changes nothing");
    }

    #[test]
    fn day_milestones_are_recorded_once_each() {
        let state = given(&[goal_set()]);
        let events = decide(
            &state,
            JournalCommand::RecordDayMilestones {
                now: at("2026-11-09T12:00:00Z"),
            },
        )
        .expect("ok");
        assert_eq!(
            events,
            vec![
                Event::MilestoneReached {
                    kind: "days-since-setback".into(),
                    value: 1
                },
                Event::MilestoneReached {
                    kind: "days-since-setback".into(),
                    value: 7
                },
            ]
        );
        let after = events
            .iter()
            .fold(state, |s, e| evolve(s, e, at("2026-11-09T12:00:00Z")));
        assert_eq!(
            decide(
                &after,
                JournalCommand::RecordDayMilestones {
                    now: at("2026-11-09T12:00:00Z")
                }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn an_acknowledged_rung_stops_the_ladder_and_only_the_recipient_may_acknowledge() {
        let send = |nudge_id: &str, level, recipient_id: Option<&str>, after: &[&str]| {
            JournalCommand::SendNudge {
                nudge_id: nudge_id.into(),
                level,
                reason: "missed-check-in".into(),
                goal_id: Some("g".into()),
                recipient_id: recipient_id.map(Into::into),
                due_at: at("2026-11-02T12:00:00Z"),
                after: after.iter().map(|id| (*id).to_owned()).collect(),
            }
        };
        let apply = |state: Journal, command| {
            decide(&state, command)
                .expect("ok")
                .iter()
                .fold(state, |s, e| evolve(s, e, at("2026-11-02T13:00:00Z")))
        };
        let mut state = apply(
            Journal::default(),
            send("g-1", NudgeLevel::Participant, None, &[]),
        );
        state = apply(
            state,
            send("g-2", NudgeLevel::Partner, Some("pat"), &["g-1"]),
        );
        // Not the partner's to acknowledge as the owner, nor as another participant or
        // as staff with the partner's id: to them there is no such nudge.
        for by in [
            Recipient::Owner,
            Recipient::Participant("riley".into()),
            Recipient::Staff("pat".into()),
        ] {
            assert_eq!(
                decide(
                    &state,
                    JournalCommand::AcknowledgeNudge {
                        public_id: "g-2".into(),
                        by: by.clone(),
                    }
                ),
                Err(DomainError::NudgeNotFound),
                "{by:?}"
            );
        }
        let acknowledge = JournalCommand::AcknowledgeNudge {
            public_id: "g-2".into(),
            by: Recipient::Participant("pat".into()),
        };
        state = apply(state, acknowledge.clone());
        assert_eq!(
            state.nudges["g-2"].acknowledged_at,
            Some(at("2026-11-02T13:00:00Z"))
        );
        assert_eq!(decide(&state, acknowledge), Ok(vec![]), "once is enough");
        // The facilitator's rung after an acknowledged one is not sent.
        assert_eq!(
            decide(
                &state,
                send("g-3", NudgeLevel::Facilitator, Some("fran"), &["g-2"])
            ),
            Ok(vec![])
        );
        // A receipt: failed, then delivered; a failure after delivery is refused.
        let receipt = |delivered| JournalCommand::RecordNudgeDelivery {
            public_id: "g-1".into(),
            delivered,
            channel: DeliveryChannel::Sms,
        };
        state = apply(state, receipt(false));
        state = apply(state, receipt(true));
        assert_eq!(
            state.nudges["g-1"].delivery.map(|d| d.delivered),
            Some(true)
        );
        assert_eq!(decide(&state, receipt(true)), Ok(vec![]));
        assert_eq!(
            decide(&state, receipt(false)),
            Err(DomainError::NudgeAlreadyDelivered)
        );
        assert_eq!(
            decide(
                &state,
                JournalCommand::RecordNudgeDelivery {
                    public_id: "nope".into(),
                    delivered: true,
                    channel: DeliveryChannel::Push,
                }
            ),
            Err(DomainError::NudgeNotFound)
        );
        // A nudge id that is no valid name segment is found by its derived one.
        assert_eq!(nudge_public_id("g-1"), "g-1");
        let odd = "missed-sessions-".to_owned() + &"x".repeat(60);
        state = apply(state, send(&odd, NudgeLevel::Participant, None, &[]));
        assert!(state.nudge(&nudge_public_id(&odd)).is_some());
        assert_ne!(nudge_public_id(&odd), odd);
    }

    #[test]
    fn a_safety_concern_alerts_every_facilitator_in_the_same_commit_and_a_measure_counts_once() {
        let catalog = super::super::instruments::Catalog::standard().expect("catalog");
        let answers: Vec<(String, u32)> = (1..=9)
            .map(|item| (item.to_string(), u32::from(item == 9)))
            .collect();
        let scored = catalog.score("phq-9", &answers).expect("scored");
        let night = at("2026-11-17T05:00:00Z");
        let record = |measurement_id: &str, scored| JournalCommand::RecordMeasurement {
            measurement_id: measurement_id.into(),
            scored,
            answers: measurement_answers(&answers),
            alert: vec!["fran".into(), "frank".into()],
            now: night,
        };
        let events = decide(&Journal::default(), record("m1", scored.clone())).expect("ok");
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            &events[0],
            Event::MeasurementRecorded { scores, safety, .. }
                if scores[0].score == 1 && safety == &["self-harm".to_owned()]
        ));
        for (event, facilitator) in events[1..].iter().zip(["fran", "frank"]) {
            assert_eq!(
                event,
                &Event::NudgeSent {
                    nudge_id: format!("safety-m1-{facilitator}"),
                    level: NudgeLevel::Facilitator,
                    reason: SAFETY_ALERT.into(),
                    goal_id: None,
                    recipient_id: Some(facilitator.into()),
                    due_at: night,
                }
            );
        }
        let state = events
            .iter()
            .fold(Journal::default(), |s, e| evolve(s, e, night));
        assert_eq!(decide(&state, record("m1", scored)), Ok(vec![]));
        // No concern, no alert.
        let calm: Vec<(String, u32)> = (1..=9).map(|item| (item.to_string(), 0)).collect();
        let events = decide(
            &state,
            record("m2", catalog.score("phq-9", &calm).expect("scored")),
        )
        .expect("ok");
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0],
            Event::MeasurementRecorded { safety, .. } if safety.is_empty()
        ));
        assert_eq!(parse_measurement_answers(&measurement_answers(&calm)), calm);
    }

    #[test]
    fn a_nudge_is_sent_once_and_attendance_runs_become_milestones() {
        let nudge = JournalCommand::SendNudge {
            nudge_id: "n1".into(),
            level: NudgeLevel::Participant,
            reason: "missed-check-in".into(),
            goal_id: None,
            recipient_id: None,
            due_at: at("2026-11-02T12:00:00Z"),
            after: Vec::new(),
        };
        let events = decide(&Journal::default(), nudge.clone()).expect("ok");
        let after = events.iter().fold(Journal::default(), |s, e| {
            evolve(s, e, at("2026-11-02T13:00:00Z"))
        });
        assert_eq!(decide(&after, nudge), Ok(vec![]));

        let mut state = Journal::default();
        for n in 1..=3 {
            state = evolve(
                state,
                &Event::SessionAttended {
                    session_id: format!("s{n}"),
                    attended: true,
                    excused: false,
                },
                at("2026-11-02T13:00:00Z"),
            );
        }
        assert_eq!(
            decide(
                &state,
                JournalCommand::RecordSessionAttendance {
                    session_id: "s4".into(),
                    outcome: Some(true)
                }
            ),
            Ok(vec![
                Event::SessionAttended {
                    session_id: "s4".into(),
                    attended: true,
                    excused: false
                },
                Event::MilestoneReached {
                    kind: "sessions-attended-in-a-row".into(),
                    value: 4
                }
            ])
        );
    }
}
