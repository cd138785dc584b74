//! Crypto-shredding in accountability: which fields of its events are personal, whose
//! key seals them, and how the journals' commits are sealed.
//!
//! The rule: at rest everything personal is sealed — the events in the log, the read
//! models' rows (the projections copy the sealed text as it is and hold no keys), the
//! aggregates' states. Plaintext exists only inside one request: the application layer
//! opens, with one `circle_vault::Opener` fetched for the participants it shows, the
//! answers it gives (command answers, retries answered from the stored commit, the
//! board, the timeline, each page of the group feed) and whatever one of its checks
//! needs in clear (a goal revision that changes nothing). Once a participant is
//! forgotten (`KeyStore::forget` destroys their key) every read shows
//! `circle_vault::REDACTED` with no projection work, and a rebuild brings nothing back.
//!
//! What is sealed, each with the key of the journal's owner (the journal's aggregate id
//! is its participant's id; its events name no participant) and a field name shared by
//! every service (`circle_vault::field`, so a value copied between services opens
//! unchanged):
//!
//! - `GoalSet` / `GoalRevised` text: [`field::GOAL`];
//! - `CheckInSubmitted` text: [`field::CHECK_IN`] — a session check-in copied in by the
//!   process manager arrives already sealed by sessions for the same member and field,
//!   and is kept as it is;
//! - `EncouragementReceived` reaction and message: [`field::ENCOURAGEMENT`], with the
//!   recipient's key (it is in their journal). The reaction is sealed too: the edge
//!   takes any short line there ("clap", "heart", "strong" are what clients send, not a
//!   closed list), so a person may have written anything in it;
//! - `SetbackReported` text: [`field::SETBACK`];
//! - `MeasurementRecorded` answers (`item=option;…`): [`field::MEASUREMENT`]. Its
//!   scores, bands and the safety rules met stay in clear, like mood and craving: they
//!   are the service's own numbers and codes, which the care team's trends and the
//!   group's trend are computed from in the read model (where no key is held).
//!
//! What is not: ids (goal, check-in, session, nudge, measure, the encourager's and a
//! partner's participant ids), the numbers and enumerations (mood, craving, progress,
//! cadence, visibility, levels, a measure's instrument, scores and bands), and the codes the service itself writes — a milestone's kind,
//! a nudge's reason, and a partnership's end reason (`ended-by-member`, `left-group`,
//! `consent-revoked`: no request carries a reason a person wrote; were one ever
//! written, it would be sealed with the key of the partner who wrote it, whom the event
//! would then have to name, as a partnership's id is no participant's). Sealing a code with a partner's key would
//! also stop the partnership guard from ending a forgotten member's partnership, which
//! must still end for the other partner.
//!
//! A forgotten participant's journal takes no more commits at all, text or not (a
//! check-in with only mood and craving, a goal completed, attendance), and nothing more
//! is recorded that they sent (an encouragement in a peer's journal): every journal
//! event names its owner as a subject, an encouragement its sender too
//! (`Personal::subjects`), so the key store refuses the commit (`PARTICIPANT_FORGOTTEN`
//! to a client, a skipped step to a process manager). A retry is answered from its
//! stored commit and a command that changes nothing appends nothing: neither asks.

use circle_vault::{Field, Personal, field};

use crate::domain::Event;

impl Personal for Event {
    /// `owner`: the aggregate's id; for a journal, its participant's.
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>> {
        match self {
            Event::GoalSet { text, .. } | Event::GoalRevised { text, .. } => {
                vec![Field::new(owner, field::GOAL, text)]
            }
            Event::CheckInSubmitted { text, .. } => vec![Field::new(owner, field::CHECK_IN, text)],
            Event::EncouragementReceived {
                reaction, message, ..
            } => vec![
                Field::new(owner, field::ENCOURAGEMENT, reaction),
                Field::new(owner, field::ENCOURAGEMENT, message),
            ],
            Event::SetbackReported { text, .. } => vec![Field::new(owner, field::SETBACK, text)],
            Event::MeasurementRecorded { answers, .. } => {
                vec![Field::new(owner, field::MEASUREMENT, answers)]
            }
            Event::GoalCompleted { .. }
            | Event::MeasurementCadenceSet { .. }
            | Event::GoalAbandoned { .. }
            | Event::MilestoneReached { .. }
            | Event::NudgeSent { .. }
            | Event::NudgeAcknowledged { .. }
            | Event::NudgeDeliveryRecorded { .. }
            | Event::SessionAttended { .. }
            | Event::PartnershipProposed { .. }
            | Event::PartnershipAccepted
            | Event::PartnershipEnded { .. }
            | Event::QuietHoursSet { .. } => Vec::new(),
        }
    }

    /// A journal's events are about its owner (an encouragement about its sender too);
    /// a partnership's and the settings' are about no one in particular (their ids are
    /// no participant's).
    fn subjects<'a>(&'a self, owner: &'a str) -> Vec<&'a str> {
        match self {
            Event::EncouragementReceived {
                from_participant_id,
                ..
            } => vec![owner, from_participant_id],
            Event::GoalSet { .. }
            | Event::GoalRevised { .. }
            | Event::GoalCompleted { .. }
            | Event::GoalAbandoned { .. }
            | Event::CheckInSubmitted { .. }
            | Event::SetbackReported { .. }
            | Event::MilestoneReached { .. }
            | Event::NudgeSent { .. }
            | Event::NudgeAcknowledged { .. }
            | Event::NudgeDeliveryRecorded { .. }
            | Event::MeasurementCadenceSet { .. }
            | Event::MeasurementRecorded { .. }
            | Event::SessionAttended { .. } => vec![owner],
            Event::PartnershipProposed { .. }
            | Event::PartnershipAccepted
            | Event::PartnershipEnded { .. }
            | Event::QuietHoursSet { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cadence, NudgeLevel, Progress, Visibility};

    const OWNER: &str = "sam";

    fn at(text: &str) -> crate::domain::Time {
        text.parse().expect("RFC 3339")
    }

    /// Every event, each string field holding its own name.
    fn every_event() -> Vec<Event> {
        let s = |text: &str| text.to_owned();
        vec![
            Event::GoalSet {
                goal_id: s("goal_id"),
                text: s("goal text"),
                cadence: Cadence::Daily,
            },
            Event::GoalRevised {
                goal_id: s("goal_id"),
                text: s("revised goal text"),
                cadence: Cadence::Weekly,
            },
            Event::GoalCompleted {
                goal_id: s("goal_id"),
            },
            Event::GoalAbandoned {
                goal_id: s("goal_id"),
            },
            Event::CheckInSubmitted {
                check_in_id: s("check_in_id"),
                goal_id: Some(s("goal_id")),
                progress: Progress::Struggling,
                mood: 4,
                craving: 6,
                text: s("check-in text"),
                visibility: Visibility::Group,
                session_id: Some(s("session_id")),
            },
            Event::EncouragementReceived {
                check_in_id: s("check_in_id"),
                from_participant_id: s("from_participant_id"),
                reaction: s("reaction"),
                message: s("encouragement message"),
            },
            Event::SetbackReported {
                setback_id: s("setback_id"),
                text: s("setback text"),
                visibility: Visibility::Facilitators,
            },
            Event::MilestoneReached {
                kind: s("days-since-setback"),
                value: 7,
            },
            Event::NudgeSent {
                nudge_id: s("nudge_id"),
                level: NudgeLevel::Partner,
                reason: s("missed-check-in"),
                goal_id: Some(s("goal_id")),
                recipient_id: Some(s("recipient_id")),
                due_at: at("2026-11-20T18:00:00Z"),
            },
            Event::SessionAttended {
                session_id: s("session_id"),
                attended: true,
                excused: false,
            },
            Event::MeasurementRecorded {
                measurement_id: s("measurement_id"),
                instrument: s("phq-9"),
                version: 1,
                answers: s("measurement answers"),
                scores: Vec::new(),
                safety: vec![s("self-harm")],
            },
            Event::PartnershipProposed {
                group_id: s("group_id"),
                proposer_id: s("proposer_id"),
                invitee_id: s("invitee_id"),
            },
            Event::PartnershipAccepted,
            Event::PartnershipEnded {
                reason: s("ended-by-member"),
            },
            Event::QuietHoursSet {
                start_minute: 1320,
                end_minute: 420,
            },
        ]
    }

    /// (event, field name, participant, text) of every personal field.
    fn visited(events: &mut [Event]) -> Vec<(usize, &'static str, String, String)> {
        let mut seen = Vec::new();
        for (index, event) in events.iter_mut().enumerate() {
            for field in event.personal_fields(OWNER) {
                seen.push((
                    index,
                    field.name,
                    field.participant.to_owned(),
                    field.value.clone(),
                ));
            }
        }
        seen
    }

    #[test]
    fn every_free_text_is_a_personal_field_of_the_journals_owner() {
        let mut events = every_event();
        let owned = |index: usize, name: &'static str, text: &str| {
            (index, name, OWNER.to_owned(), text.to_owned())
        };
        assert_eq!(
            visited(&mut events),
            [
                owned(0, field::GOAL, "goal text"),
                owned(1, field::GOAL, "revised goal text"),
                owned(4, field::CHECK_IN, "check-in text"),
                owned(5, field::ENCOURAGEMENT, "reaction"),
                owned(5, field::ENCOURAGEMENT, "encouragement message"),
                owned(6, field::SETBACK, "setback text"),
                owned(10, field::MEASUREMENT, "measurement answers"),
            ]
        );
    }

    #[test]
    fn what_a_field_names_is_what_sealing_rewrites_and_nothing_else() {
        let mut events = every_event();
        for event in &mut events {
            for field in event.personal_fields(OWNER) {
                *field.value = format!("sealed {}", field.name);
            }
        }
        let mut expected = every_event();
        for (index, event) in expected.iter_mut().enumerate() {
            match event {
                Event::GoalSet { text, .. } | Event::GoalRevised { text, .. } => {
                    *text = "sealed goal".into();
                }
                Event::CheckInSubmitted { text, .. } => *text = "sealed check-in".into(),
                Event::EncouragementReceived {
                    reaction, message, ..
                } => {
                    *reaction = "sealed encouragement".into();
                    *message = "sealed encouragement".into();
                }
                Event::SetbackReported { text, .. } => *text = "sealed setback".into(),
                Event::MeasurementRecorded { answers, .. } => {
                    *answers = "sealed measurement".into();
                }
                _ => {}
            }
            assert_eq!(events[index], *event, "event {index}");
        }
    }

    #[test]
    fn codes_and_ids_are_not_personal_fields() {
        let mut events = every_event();
        let texts: Vec<String> = visited(&mut events)
            .into_iter()
            .map(|(_, _, _, text)| text)
            .collect();
        for code in [
            "days-since-setback",
            "missed-check-in",
            "ended-by-member",
            "from_participant_id",
            "recipient_id",
            "goal_id",
            "check_in_id",
            "session_id",
        ] {
            assert!(
                !texts.iter().any(|text| text == code),
                "{code} is not sealed"
            );
        }
    }
}
