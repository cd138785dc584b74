//! Accountability events to and from their protobuf payloads, and the aggregates'
//! folds (which also get the commit's time).

use circle_eventstore::{Aggregate, DecodeError, NewEvent, StoredCommit, wire};
use circle_proto::accountability::events::v1 as pb;
use prost::{Message, Name};

use crate::domain::instruments::ScaleScore;
use crate::domain::journal::{self, Journal};
use crate::domain::partnership::{self, Partnership};
use crate::domain::settings::{self, ClinicSettings};
use crate::domain::{Cadence, DeliveryChannel, Event, NudgeLevel, Progress, Time, Visibility};

pub use circle_calendar::{from_timestamp, timestamp};

pub fn cadence_to_wire(cadence: Cadence) -> i32 {
    (match cadence {
        Cadence::Daily => pb::Cadence::Daily,
        Cadence::Weekly => pb::Cadence::Weekly,
        Cadence::PerSession => pb::Cadence::PerSession,
    }) as i32
}

/// The API enums share these numbers.
pub fn cadence_from_wire(value: i32) -> Option<Cadence> {
    Some(match pb::Cadence::try_from(value).ok()? {
        pb::Cadence::Daily => Cadence::Daily,
        pb::Cadence::Weekly => Cadence::Weekly,
        pb::Cadence::PerSession => Cadence::PerSession,
        pb::Cadence::Unspecified => return None,
    })
}

pub fn progress_to_wire(progress: Progress) -> i32 {
    (match progress {
        Progress::OnTrack => pb::Progress::OnTrack,
        Progress::Struggling => pb::Progress::Struggling,
        Progress::Setback => pb::Progress::Setback,
    }) as i32
}

pub fn progress_from_wire(value: i32) -> Option<Progress> {
    Some(match pb::Progress::try_from(value).ok()? {
        pb::Progress::OnTrack => Progress::OnTrack,
        pb::Progress::Struggling => Progress::Struggling,
        pb::Progress::Setback => Progress::Setback,
        pb::Progress::Unspecified => return None,
    })
}

pub fn visibility_to_wire(visibility: Visibility) -> i32 {
    (match visibility {
        Visibility::Group => pb::Visibility::Group,
        Visibility::Partner => pb::Visibility::Partner,
        Visibility::Facilitators => pb::Visibility::Facilitators,
        Visibility::Private => pb::Visibility::Private,
    }) as i32
}

pub fn visibility_from_wire(value: i32) -> Option<Visibility> {
    Some(match pb::Visibility::try_from(value).ok()? {
        pb::Visibility::Group => Visibility::Group,
        pb::Visibility::Partner => Visibility::Partner,
        pb::Visibility::Facilitators => Visibility::Facilitators,
        pb::Visibility::Private => Visibility::Private,
        pb::Visibility::Unspecified => return None,
    })
}

/// A nudge level on the wire (the API's enum has the same numbers).
pub fn level_to_wire(level: NudgeLevel) -> i32 {
    (match level {
        NudgeLevel::Participant => pb::NudgeLevel::Participant,
        NudgeLevel::Partner => pb::NudgeLevel::Partner,
        NudgeLevel::Facilitator => pb::NudgeLevel::Facilitator,
    }) as i32
}

/// A delivery channel on the wire (the API's enum has the same numbers).
pub fn channel_to_wire(channel: DeliveryChannel) -> i32 {
    match channel {
        DeliveryChannel::Sms => pb::DeliveryChannel::Sms,
        DeliveryChannel::Push => pb::DeliveryChannel::Push,
        DeliveryChannel::Email => pb::DeliveryChannel::Email,
    }
    .into()
}

pub fn channel_from_wire(value: i32) -> Option<DeliveryChannel> {
    match pb::DeliveryChannel::try_from(value).ok()? {
        pb::DeliveryChannel::Sms => Some(DeliveryChannel::Sms),
        pb::DeliveryChannel::Push => Some(DeliveryChannel::Push),
        pb::DeliveryChannel::Email => Some(DeliveryChannel::Email),
        pb::DeliveryChannel::Unspecified => None,
    }
}

pub fn channel_text(channel: DeliveryChannel) -> &'static str {
    match channel {
        DeliveryChannel::Sms => "sms",
        DeliveryChannel::Push => "push",
        DeliveryChannel::Email => "email",
    }
}

/// The read model's text back to a channel (`None` for none recorded).
pub fn channel_from_text(text: &str) -> Option<DeliveryChannel> {
    match text {
        "sms" => Some(DeliveryChannel::Sms),
        "push" => Some(DeliveryChannel::Push),
        "email" => Some(DeliveryChannel::Email),
        _ => None,
    }
}

/// The read model's text back to a nudge level (`None` for a text it never writes).
pub fn level_from_text(text: &str) -> Option<NudgeLevel> {
    match text {
        "participant" => Some(NudgeLevel::Participant),
        "partner" => Some(NudgeLevel::Partner),
        "facilitator" => Some(NudgeLevel::Facilitator),
        _ => None,
    }
}

pub fn visibility_text(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Group => "group",
        Visibility::Partner => "partner",
        Visibility::Facilitators => "facilitators",
        Visibility::Private => "private",
    }
}

pub fn visibility_from_text(text: &str) -> Visibility {
    match text {
        "group" => Visibility::Group,
        "partner" => Visibility::Partner,
        "facilitators" => Visibility::Facilitators,
        _ => Visibility::Private,
    }
}

pub fn level_text(level: NudgeLevel) -> &'static str {
    match level {
        NudgeLevel::Participant => "participant",
        NudgeLevel::Partner => "partner",
        NudgeLevel::Facilitator => "facilitator",
    }
}

fn optional(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

pub fn encode(event: &Event) -> NewEvent {
    match event {
        Event::GoalSet {
            goal_id,
            text,
            cadence,
        } => NewEvent::from_message(&pb::GoalSet {
            goal_id: goal_id.clone(),
            text: text.clone(),
            cadence: cadence_to_wire(*cadence),
        }),
        Event::GoalRevised {
            goal_id,
            text,
            cadence,
        } => NewEvent::from_message(&pb::GoalRevised {
            goal_id: goal_id.clone(),
            text: text.clone(),
            cadence: cadence_to_wire(*cadence),
        }),
        Event::GoalCompleted { goal_id } => NewEvent::from_message(&pb::GoalCompleted {
            goal_id: goal_id.clone(),
        }),
        Event::GoalAbandoned { goal_id } => NewEvent::from_message(&pb::GoalAbandoned {
            goal_id: goal_id.clone(),
        }),
        Event::CheckInSubmitted {
            check_in_id,
            goal_id,
            progress,
            mood,
            craving,
            text,
            visibility,
            session_id,
        } => NewEvent::from_message(&pb::CheckInSubmitted {
            check_in_id: check_in_id.clone(),
            goal_id: goal_id.clone().unwrap_or_default(),
            progress: progress_to_wire(*progress),
            mood: *mood,
            craving: *craving,
            text: text.clone(),
            visibility: visibility_to_wire(*visibility),
            session_id: session_id.clone().unwrap_or_default(),
        }),
        Event::EncouragementReceived {
            check_in_id,
            from_participant_id,
            reaction,
            message,
        } => NewEvent::from_message(&pb::EncouragementReceived {
            check_in_id: check_in_id.clone(),
            from_participant_id: from_participant_id.clone(),
            reaction: reaction.clone(),
            message: message.clone(),
        }),
        Event::SetbackReported {
            setback_id,
            text,
            visibility,
        } => NewEvent::from_message(&pb::SetbackReported {
            setback_id: setback_id.clone(),
            text: text.clone(),
            visibility: visibility_to_wire(*visibility),
        }),
        Event::MilestoneReached { kind, value } => NewEvent::from_message(&pb::MilestoneReached {
            kind: kind.clone(),
            value: *value,
        }),
        Event::NudgeSent {
            nudge_id,
            level,
            reason,
            goal_id,
            recipient_id,
            due_at,
        } => NewEvent::from_message(&pb::NudgeSent {
            nudge_id: nudge_id.clone(),
            level: level_to_wire(*level),
            reason: reason.clone(),
            goal_id: goal_id.clone().unwrap_or_default(),
            recipient_id: recipient_id.clone().unwrap_or_default(),
            due_time: Some(timestamp(*due_at)),
        }),
        Event::MeasurementCadenceSet {
            instrument,
            every_days,
        } => NewEvent::from_message(&pb::MeasurementCadenceSet {
            instrument: instrument.clone(),
            every_days: *every_days,
        }),
        Event::MeasurementRecorded {
            measurement_id,
            instrument,
            version,
            answers,
            scores,
            safety,
        } => NewEvent::from_message(&pb::MeasurementRecorded {
            measurement_id: measurement_id.clone(),
            instrument: instrument.clone(),
            instrument_version: *version,
            answers: answers.clone(),
            scores: scores
                .iter()
                .map(|score| pb::ScaleScore {
                    scale: score.scale.clone(),
                    score: score.score,
                    band: score.band.clone(),
                    significant: score.significant,
                })
                .collect(),
            safety: safety.clone(),
        }),
        Event::NudgeAcknowledged { nudge_id } => NewEvent::from_message(&pb::NudgeAcknowledged {
            nudge_id: nudge_id.clone(),
        }),
        Event::NudgeDeliveryRecorded {
            nudge_id,
            delivered,
            channel,
        } => NewEvent::from_message(&pb::NudgeDeliveryRecorded {
            nudge_id: nudge_id.clone(),
            delivered: *delivered,
            channel: channel_to_wire(*channel),
        }),
        Event::SessionAttended {
            session_id,
            attended,
            excused,
        } => NewEvent::from_message(&pb::SessionAttended {
            session_id: session_id.clone(),
            attended: *attended,
            excused: *excused,
        }),
        Event::PartnershipProposed {
            group_id,
            proposer_id,
            invitee_id,
        } => NewEvent::from_message(&pb::PartnershipProposed {
            group_id: group_id.clone(),
            proposer_id: proposer_id.clone(),
            invitee_id: invitee_id.clone(),
        }),
        Event::PartnershipAccepted => NewEvent::from_message(&pb::PartnershipAccepted {}),
        Event::PartnershipEnded { reason } => NewEvent::from_message(&pb::PartnershipEnded {
            reason: reason.clone(),
        }),
        Event::QuietHoursSet {
            start_minute,
            end_minute,
        } => NewEvent::from_message(&pb::QuietHoursSet {
            start_minute: *start_minute,
            end_minute: *end_minute,
        }),
    }
}

pub fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
    let fail = |reason: String| DecodeError {
        event_type: event.event_type.clone(),
        reason,
    };
    let payload = event.payload.as_slice();
    let name = event.event_type.as_str();
    macro_rules! message {
        ($type:ty) => {
            <$type>::decode(payload).map_err(|error| fail(error.to_string()))?
        };
    }
    let bad = |what: &str| fail(format!("unknown {what}"));
    Ok(if name == pb::GoalSet::full_name() {
        let m = message!(pb::GoalSet);
        Event::GoalSet {
            cadence: cadence_from_wire(m.cadence).ok_or_else(|| bad("cadence"))?,
            goal_id: m.goal_id,
            text: m.text,
        }
    } else if name == pb::GoalRevised::full_name() {
        let m = message!(pb::GoalRevised);
        Event::GoalRevised {
            cadence: cadence_from_wire(m.cadence).ok_or_else(|| bad("cadence"))?,
            goal_id: m.goal_id,
            text: m.text,
        }
    } else if name == pb::GoalCompleted::full_name() {
        Event::GoalCompleted {
            goal_id: message!(pb::GoalCompleted).goal_id,
        }
    } else if name == pb::GoalAbandoned::full_name() {
        Event::GoalAbandoned {
            goal_id: message!(pb::GoalAbandoned).goal_id,
        }
    } else if name == pb::CheckInSubmitted::full_name() {
        let m = message!(pb::CheckInSubmitted);
        Event::CheckInSubmitted {
            progress: progress_from_wire(m.progress).ok_or_else(|| bad("progress"))?,
            visibility: visibility_from_wire(m.visibility).ok_or_else(|| bad("visibility"))?,
            goal_id: optional(&m.goal_id),
            session_id: optional(&m.session_id),
            check_in_id: m.check_in_id,
            mood: m.mood,
            craving: m.craving,
            text: m.text,
        }
    } else if name == pb::EncouragementReceived::full_name() {
        let m = message!(pb::EncouragementReceived);
        Event::EncouragementReceived {
            check_in_id: m.check_in_id,
            from_participant_id: m.from_participant_id,
            reaction: m.reaction,
            message: m.message,
        }
    } else if name == pb::SetbackReported::full_name() {
        let m = message!(pb::SetbackReported);
        Event::SetbackReported {
            visibility: visibility_from_wire(m.visibility).ok_or_else(|| bad("visibility"))?,
            setback_id: m.setback_id,
            text: m.text,
        }
    } else if name == pb::MilestoneReached::full_name() {
        let m = message!(pb::MilestoneReached);
        Event::MilestoneReached {
            kind: m.kind,
            value: m.value,
        }
    } else if name == pb::NudgeSent::full_name() {
        let m = message!(pb::NudgeSent);
        Event::NudgeSent {
            level: match pb::NudgeLevel::try_from(m.level) {
                Ok(pb::NudgeLevel::Participant) => NudgeLevel::Participant,
                Ok(pb::NudgeLevel::Partner) => NudgeLevel::Partner,
                Ok(pb::NudgeLevel::Facilitator) => NudgeLevel::Facilitator,
                _ => return Err(bad("nudge level")),
            },
            due_at: m
                .due_time
                .and_then(from_timestamp)
                .ok_or_else(|| bad("due time"))?,
            goal_id: optional(&m.goal_id),
            recipient_id: optional(&m.recipient_id),
            nudge_id: m.nudge_id,
            reason: m.reason,
        }
    } else if name == pb::MeasurementCadenceSet::full_name() {
        let m = message!(pb::MeasurementCadenceSet);
        Event::MeasurementCadenceSet {
            instrument: m.instrument,
            every_days: m.every_days,
        }
    } else if name == pb::MeasurementRecorded::full_name() {
        let m = message!(pb::MeasurementRecorded);
        Event::MeasurementRecorded {
            measurement_id: m.measurement_id,
            instrument: m.instrument,
            version: m.instrument_version,
            answers: m.answers,
            scores: m
                .scores
                .into_iter()
                .map(|score| ScaleScore {
                    scale: score.scale,
                    score: score.score,
                    band: score.band,
                    significant: score.significant,
                })
                .collect(),
            safety: m.safety,
        }
    } else if name == pb::NudgeAcknowledged::full_name() {
        Event::NudgeAcknowledged {
            nudge_id: message!(pb::NudgeAcknowledged).nudge_id,
        }
    } else if name == pb::NudgeDeliveryRecorded::full_name() {
        let m = message!(pb::NudgeDeliveryRecorded);
        Event::NudgeDeliveryRecorded {
            channel: channel_from_wire(m.channel).ok_or_else(|| bad("delivery channel"))?,
            nudge_id: m.nudge_id,
            delivered: m.delivered,
        }
    } else if name == pb::SessionAttended::full_name() {
        let m = message!(pb::SessionAttended);
        Event::SessionAttended {
            session_id: m.session_id,
            attended: m.attended,
            excused: m.excused,
        }
    } else if name == pb::PartnershipProposed::full_name() {
        let m = message!(pb::PartnershipProposed);
        Event::PartnershipProposed {
            group_id: m.group_id,
            proposer_id: m.proposer_id,
            invitee_id: m.invitee_id,
        }
    } else if name == pb::PartnershipAccepted::full_name() {
        Event::PartnershipAccepted
    } else if name == pb::PartnershipEnded::full_name() {
        Event::PartnershipEnded {
            reason: message!(pb::PartnershipEnded).reason,
        }
    } else if name == pb::QuietHoursSet::full_name() {
        let m = message!(pb::QuietHoursSet);
        Event::QuietHoursSet {
            start_minute: m.start_minute,
            end_minute: m.end_minute,
        }
    } else {
        return Err(fail("unknown event type".into()));
    })
}

pub fn decode_commit(commit: &StoredCommit) -> Result<Vec<Event>, DecodeError> {
    commit.commit.events.iter().map(decode).collect()
}

pub fn commit_time(commit: &StoredCommit) -> Result<Time, DecodeError> {
    commit
        .commit
        .committed_at
        .and_then(from_timestamp)
        .ok_or_else(|| DecodeError {
            event_type: "commit".into(),
            reason: "no valid commit time".into(),
        })
}

impl Aggregate for Journal {
    const TYPE: &'static str = "journal";
    type Event = Event;
    fn encode(event: &Event) -> NewEvent {
        encode(event)
    }
    fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
        decode(event)
    }
    fn evolve(self, event: &Event, at: Time) -> Self {
        journal::evolve(self, event, at)
    }
}

impl Aggregate for Partnership {
    const TYPE: &'static str = "partnership";
    type Event = Event;
    fn encode(event: &Event) -> NewEvent {
        encode(event)
    }
    fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
        decode(event)
    }
    fn evolve(self, event: &Event, _at: Time) -> Self {
        partnership::evolve(self, event)
    }
}

/// A clinic's settings: the pure `domain::settings` aggregate.
impl Aggregate for ClinicSettings {
    const TYPE: &'static str = "clinic-settings";
    type Event = Event;
    fn encode(event: &Event) -> NewEvent {
        encode(event)
    }
    fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
        decode(event)
    }
    fn evolve(mut self, event: &Event, _at: Time) -> Self {
        settings::evolve(&mut self, event);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every kind, with every optional part present somewhere.
    fn every_kind_of_event() -> Vec<Event> {
        let at: Time = "2026-11-24T00:30:00Z".parse().expect("time");
        vec![
            Event::GoalSet {
                goal_id: "g1".into(),
                text: "walk daily".into(),
                cadence: Cadence::Daily,
            },
            Event::GoalRevised {
                goal_id: "g1".into(),
                text: "walk".into(),
                cadence: Cadence::PerSession,
            },
            Event::GoalCompleted {
                goal_id: "g1".into(),
            },
            Event::GoalAbandoned {
                goal_id: "g2".into(),
            },
            Event::CheckInSubmitted {
                check_in_id: "c1".into(),
                goal_id: Some("g1".into()),
                progress: Progress::Struggling,
                mood: 7,
                craving: 2,
                text: "ok".into(),
                visibility: Visibility::Partner,
                session_id: Some("s1".into()),
            },
            Event::CheckInSubmitted {
                check_in_id: "c2".into(),
                goal_id: None,
                progress: Progress::Setback,
                mood: 0,
                craving: 10,
                text: String::new(),
                visibility: Visibility::Private,
                session_id: None,
            },
            Event::EncouragementReceived {
                check_in_id: "c1".into(),
                from_participant_id: "p2".into(),
                reaction: "clap".into(),
                message: "keep going".into(),
            },
            Event::SetbackReported {
                setback_id: "s1".into(),
                text: "hard week".into(),
                visibility: Visibility::Facilitators,
            },
            Event::MilestoneReached {
                kind: "streak".into(),
                value: 30,
            },
            Event::NudgeSent {
                nudge_id: "n1".into(),
                level: NudgeLevel::Partner,
                reason: "missed-check-in".into(),
                goal_id: Some("g1".into()),
                recipient_id: Some("p2".into()),
                due_at: at,
            },
            Event::NudgeSent {
                nudge_id: "n2".into(),
                level: NudgeLevel::Facilitator,
                reason: "missed-sessions".into(),
                goal_id: None,
                recipient_id: None,
                due_at: at,
            },
            Event::NudgeAcknowledged {
                nudge_id: "n1".into(),
            },
            Event::MeasurementCadenceSet {
                instrument: "phq-9".into(),
                every_days: 14,
            },
            Event::MeasurementRecorded {
                measurement_id: "m1".into(),
                instrument: "phq-9".into(),
                version: 1,
                answers: "1=0;9=2".into(),
                scores: vec![ScaleScore {
                    scale: "total".into(),
                    score: 11,
                    band: "moderate".into(),
                    significant: true,
                }],
                safety: vec!["self-harm".into()],
            },
            Event::NudgeDeliveryRecorded {
                nudge_id: "n1".into(),
                delivered: true,
                channel: DeliveryChannel::Push,
            },
            Event::NudgeDeliveryRecorded {
                nudge_id: "n2".into(),
                delivered: false,
                channel: DeliveryChannel::Email,
            },
            Event::SessionAttended {
                session_id: "s1".into(),
                attended: true,
                excused: false,
            },
            Event::PartnershipProposed {
                group_id: "g".into(),
                proposer_id: "p1".into(),
                invitee_id: "p2".into(),
            },
            Event::PartnershipAccepted,
            Event::PartnershipEnded {
                reason: "moved".into(),
            },
            Event::QuietHoursSet {
                start_minute: 22 * 60,
                end_minute: 7 * 60,
            },
        ]
    }

    #[test]
    fn the_api_shares_the_events_numbers_for_levels_and_channels() {
        use circle_proto::accountability::v1 as api;
        for level in [
            NudgeLevel::Participant,
            NudgeLevel::Partner,
            NudgeLevel::Facilitator,
        ] {
            let wire = level_to_wire(level);
            assert_eq!(
                api::NudgeLevel::try_from(wire).map(|v| v.as_str_name()),
                pb::NudgeLevel::try_from(wire).map(|v| v.as_str_name())
            );
        }
        for channel in [
            DeliveryChannel::Sms,
            DeliveryChannel::Push,
            DeliveryChannel::Email,
        ] {
            let wire = channel_to_wire(channel);
            assert_eq!(
                api::DeliveryChannel::try_from(wire).map(|v| v.as_str_name()),
                pb::DeliveryChannel::try_from(wire).map(|v| v.as_str_name())
            );
            assert_eq!(channel_from_wire(wire), Some(channel));
        }
        assert_eq!(channel_from_wire(0), None);
    }

    #[test]
    fn every_event_survives_the_wire() {
        for event in every_kind_of_event() {
            let encoded = encode(&event);
            let wire = wire::Event {
                event_id: "e".into(),
                event_type: encoded.event_type,
                schema_version: encoded.schema_version,
                occurred_at: None,
                payload: encoded.payload,
            };
            assert_eq!(decode(&wire).expect("decodes"), event);
        }
    }

    circle_eventstore::codec_properties!(
        fuzz,
        event: crate::domain::Event,
        events: super::every_kind_of_event,
        encode: super::super::encode,
        decode: super::super::decode,
        decode_commit: super::super::decode_commit,
        subject: "accountability.acme.journal.p",
        commit_time: super::super::commit_time,
    );
}
