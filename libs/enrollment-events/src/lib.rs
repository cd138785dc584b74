//! What other services learn from the ENROLLMENT stream, decoded in one place so that
//! every consumer reads the enrollment service's published events the same way (and
//! never its tables). Events a consumer does not need decode to `None`.
//!
//! Personal text (profiles, aliases, consents' recipient and purpose, hold reasons)
//! arrives sealed with the participant's data key (`circle_vault`, the field names of
//! `circle_vault::field`): a consumer copies it as it is and opens it where it answers,
//! and once `ParticipantForgotten` arrives it no longer opens anywhere.

use circle_eventstore::wire;
use circle_proto::enrollment::events::v1 as pb;
use prost::{Message, Name};

/// One fact about groups, memberships or people.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    GroupCreated(pb::GroupCreated),
    GroupScheduleChanged(pb::GroupScheduleChanged),
    /// Staff ids of the group's facilitators, in order.
    GroupFacilitatorsChanged(Vec<String>),
    GroupArchived,
    /// The participant became an active member (admitted or resumed).
    PeriodOpened {
        participant_id: String,
    },
    /// The participant stopped being an active member (held, discharged, transferred out).
    PeriodClosed {
        participant_id: String,
        left_group: bool,
    },
    /// The participant's profile as registered or changed (personal data).
    Profile(pb::ParticipantProfile),
    ConsentRecorded(pb::ConsentRecorded),
    ConsentRevoked(pb::ConsentRevoked),
    /// The participant (the commit's aggregate) was forgotten: their data key is
    /// destroyed; a consumer may overwrite what it holds of them.
    ParticipantForgotten(pb::ParticipantForgotten),
}

#[derive(Debug)]
pub struct UndecodableEvent {
    pub event_type: String,
    pub reason: String,
}

impl std::fmt::Display for UndecodableEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot decode {}: {}", self.event_type, self.reason)
    }
}

/// Staff ids of facilitators.
pub fn staff_ids(facilitators: &[pb::Facilitator]) -> Vec<String> {
    facilitators
        .iter()
        .map(|facilitator| facilitator.staff_id.clone())
        .collect()
}

pub fn decode(event: &wire::Event) -> Result<Option<Fact>, UndecodableEvent> {
    let payload = event.payload.as_slice();
    let name = event.event_type.as_str();
    macro_rules! message {
        ($type:ty) => {
            <$type>::decode(payload).map_err(|error| UndecodableEvent {
                event_type: event.event_type.clone(),
                reason: error.to_string(),
            })?
        };
    }
    Ok(Some(if name == pb::GroupCreated::full_name() {
        Fact::GroupCreated(message!(pb::GroupCreated))
    } else if name == pb::GroupScheduleChanged::full_name() {
        Fact::GroupScheduleChanged(message!(pb::GroupScheduleChanged))
    } else if name == pb::GroupFacilitatorsChanged::full_name() {
        Fact::GroupFacilitatorsChanged(staff_ids(
            &message!(pb::GroupFacilitatorsChanged).facilitators,
        ))
    } else if name == pb::GroupArchived::full_name() {
        Fact::GroupArchived
    } else if name == pb::MemberAdmitted::full_name() {
        Fact::PeriodOpened {
            participant_id: message!(pb::MemberAdmitted).participant_id,
        }
    } else if name == pb::MemberResumed::full_name() {
        Fact::PeriodOpened {
            participant_id: message!(pb::MemberResumed).participant_id,
        }
    } else if name == pb::MemberHeld::full_name() {
        Fact::PeriodClosed {
            participant_id: message!(pb::MemberHeld).participant_id,
            left_group: false,
        }
    } else if name == pb::MemberDischarged::full_name() {
        Fact::PeriodClosed {
            participant_id: message!(pb::MemberDischarged).participant_id,
            left_group: true,
        }
    } else if name == pb::MemberTransferredOut::full_name() {
        Fact::PeriodClosed {
            participant_id: message!(pb::MemberTransferredOut).participant_id,
            left_group: true,
        }
    } else if name == pb::ParticipantRegistered::full_name() {
        Fact::Profile(
            message!(pb::ParticipantRegistered)
                .profile
                .unwrap_or_default(),
        )
    } else if name == pb::ParticipantProfileChanged::full_name() {
        Fact::Profile(
            message!(pb::ParticipantProfileChanged)
                .profile
                .unwrap_or_default(),
        )
    } else if name == pb::ConsentRecorded::full_name() {
        Fact::ConsentRecorded(message!(pb::ConsentRecorded))
    } else if name == pb::ConsentRevoked::full_name() {
        Fact::ConsentRevoked(message!(pb::ConsentRevoked))
    } else if name == pb::ParticipantForgotten::full_name() {
        Fact::ParticipantForgotten(message!(pb::ParticipantForgotten))
    } else {
        return Ok(None);
    }))
}

/// A group's schedule as enrollment records it (dates as `YYYY-MM-DD`); the one
/// decoding of it, for enrollment itself and for every consumer.
pub fn schedule(schedule: &pb::Schedule) -> Result<circle_calendar::Schedule, String> {
    let date = |text: &str| {
        chrono::NaiveDate::parse_from_str(text, SCHEDULE_DATE)
            .map_err(|_| format!("bad date {text:?}"))
    };
    Ok(circle_calendar::Schedule {
        iso_weekdays: schedule.iso_weekdays.iter().copied().collect(),
        start_minute: schedule.start_minute,
        duration_minutes: schedule.duration_minutes,
        start_date: date(&schedule.start_date)?,
        end_date: if schedule.end_date.is_empty() {
            None
        } else {
            Some(date(&schedule.end_date)?)
        },
        exception_dates: schedule
            .exception_dates
            .iter()
            .map(|text| date(text))
            .collect::<Result<_, _>>()?,
    })
}

/// How schedule dates are written in enrollment's events.
pub const SCHEDULE_DATE: &str = "%Y-%m-%d";

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_event<M: Name + Message>(message: &M) -> wire::Event {
        wire::Event {
            event_id: "e".into(),
            event_type: M::full_name(),
            schema_version: 1,
            occurred_at: None,
            payload: message.encode_to_vec(),
        }
    }

    #[test]
    fn membership_events_become_periods() {
        let admitted = wire_event(&pb::MemberAdmitted {
            participant_id: "p".into(),
            ..Default::default()
        });
        assert_eq!(
            decode(&admitted).ok().flatten(),
            Some(Fact::PeriodOpened {
                participant_id: "p".into()
            })
        );
        let held = wire_event(&pb::MemberHeld {
            participant_id: "p".into(),
            reason: "travel".into(),
        });
        assert_eq!(
            decode(&held).ok().flatten(),
            Some(Fact::PeriodClosed {
                participant_id: "p".into(),
                left_group: false
            })
        );
        let out = wire_event(&pb::MemberTransferredOut {
            participant_id: "p".into(),
            transfer: None,
        });
        assert_eq!(
            decode(&out).ok().flatten(),
            Some(Fact::PeriodClosed {
                participant_id: "p".into(),
                left_group: true
            })
        );
    }

    #[test]
    fn a_forgotten_participant_is_a_fact() {
        let forgotten = pb::ParticipantForgotten {
            reason: pb::ForgetReason::ParticipantRequest as i32,
            reference: "ticket-42".into(),
            forgotten_at: None,
        };
        assert_eq!(
            decode(&wire_event(&forgotten)).ok().flatten(),
            Some(Fact::ParticipantForgotten(forgotten))
        );
    }

    #[test]
    fn events_no_one_consumes_decode_to_nothing() {
        let waitlisted = wire_event(&pb::MemberWaitlisted {
            participant_id: "p".into(),
            ..Default::default()
        });
        assert_eq!(decode(&waitlisted).ok().flatten(), None);
    }
}
