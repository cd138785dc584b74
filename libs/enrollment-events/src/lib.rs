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

    mod fuzz {
        //! `decode` never panics: arbitrary payloads under every type enrollment
        //! publishes (and names it does not), and valid encodings with bytes flipped,
        //! set, inserted, deleted or cut off; fields a later release adds are skipped;
        //! the messages consumers copy pass through as they are. `schedule` never
        //! panics on any dates and reads back the dates enrollment writes.

        use std::collections::BTreeSet;

        use circle_eventstore::fuzzing::{edited, edits, wire_event as event_of};
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::Index;
        use prost::encoding::{WireType, encode_key, encode_varint};

        use super::super::{Fact, SCHEDULE_DATE, decode, schedule};
        use super::wire_event;
        use circle_eventstore::wire;
        use circle_proto::enrollment::events::v1 as pb;

        /// A filled event of every type enrollment publishes, encoded.
        fn every_kind_of_event() -> Vec<wire::Event> {
            let transfer = Some(pb::Transfer {
                transfer_id: "t".into(),
                from_group_id: "a".into(),
                to_group_id: "b".into(),
            });
            let dates = Some(pb::Schedule {
                iso_weekdays: vec![2, 4],
                start_minute: 18 * 60 + 30,
                duration_minutes: 90,
                start_date: "2026-12-01".into(),
                end_date: "2027-06-01".into(),
                exception_dates: vec!["2026-12-24".into()],
            });
            let facilitators = vec![pb::Facilitator {
                staff_id: "s1".into(),
                role: pb::FacilitatorRole::Lead as i32,
            }];
            let profile = Some(pb::ParticipantProfile {
                given_name: "v1.sealed-given".into(),
                family_name: "v1.sealed-family".into(),
                preferred_name: String::new(),
                email: "v1.sealed-email".into(),
                phone: String::new(),
            });
            let forgotten_at = "2026-11-20T12:00:00Z"
                .parse()
                .map(circle_calendar::timestamp)
                .ok();
            vec![
                wire_event(&pb::GroupCreated {
                    clinic_id: "north".into(),
                    display_name: "Process".into(),
                    modality: "process".into(),
                    level_of_care: "outpatient".into(),
                    capacity: 12,
                    admission_mode: pb::AdmissionMode::Closed as i32,
                    time_zone: "America/Chicago".into(),
                    facilitators: facilitators.clone(),
                    schedule: dates.clone(),
                }),
                wire_event(&pb::GroupScheduleChanged { schedule: dates }),
                wire_event(&pb::GroupFacilitatorsChanged { facilitators }),
                wire_event(&pb::GroupArchived {}),
                wire_event(&pb::MemberAdmitted {
                    participant_id: "p".into(),
                    path: pb::AdmissionPath::Offer as i32,
                    transfer: transfer.clone(),
                    facilitator_override: true,
                }),
                wire_event(&pb::MemberWaitlisted {
                    participant_id: "p".into(),
                    position_at_join: 3,
                    transfer: transfer.clone(),
                }),
                wire_event(&pb::MemberResumed {
                    participant_id: "p".into(),
                }),
                wire_event(&pb::MemberHeld {
                    participant_id: "p".into(),
                    reason: "v1.sealed-reason".into(),
                }),
                wire_event(&pb::MemberDischarged {
                    participant_id: "p".into(),
                    reason: pb::DischargeReason::Completed as i32,
                }),
                wire_event(&pb::MemberTransferredOut {
                    participant_id: "p".into(),
                    transfer,
                }),
                wire_event(&pb::ParticipantRegistered {
                    home_clinic_id: "north".into(),
                    profile: profile.clone(),
                }),
                wire_event(&pb::ParticipantProfileChanged { profile }),
                wire_event(&pb::ConsentRecorded {
                    consent_id: "c".into(),
                    kind: pb::ConsentKind::PeerVisibility as i32,
                    recipient: String::new(),
                    purpose: String::new(),
                    display: pb::PeerDisplay::Alias as i32,
                    alias: "v1.sealed-alias".into(),
                    share_check_ins: true,
                    share_milestones: false,
                }),
                wire_event(&pb::ConsentRevoked {
                    consent_id: "c".into(),
                    kind: pb::ConsentKind::PeerVisibility as i32,
                }),
                wire_event(&pb::ParticipantForgotten {
                    reason: pb::ForgetReason::LegalOrder as i32,
                    reference: "ticket-42".into(),
                    forgotten_at,
                }),
            ]
        }

        /// The types enrollment publishes, near misses of them, and arbitrary text.
        fn event_type() -> impl Strategy<Value = String> {
            let known: Vec<String> = every_kind_of_event()
                .into_iter()
                .map(|event| event.event_type)
                .collect();
            circle_eventstore::fuzzing::event_type(known)
        }

        proptest! {
            #[test]
            fn decoding_arbitrary_bytes_never_panics(
                event_type in event_type(),
                payload in vec(any::<u8>(), 0..256),
            ) {
                let _ = decode(&event_of(event_type, payload));
            }

            #[test]
            fn decoding_damaged_encodings_never_panics(
                index in any::<Index>(),
                other_type in event_type(),
                keep_type in any::<bool>(),
                edits in edits(),
            ) {
                let events = every_kind_of_event();
                let event = index.get(events.as_slice()).clone();
                let event_type = if keep_type { event.event_type } else { other_type };
                let _ = decode(&event_of(event_type, edited(event.payload, &edits)));
            }

            #[test]
            fn fields_a_later_release_adds_are_skipped(
                index in any::<Index>(),
                number in 100u32..10_000,
                varint in any::<u64>(),
                bytes in vec(any::<u8>(), 0..32),
            ) {
                let events = every_kind_of_event();
                let event = index.get(events.as_slice());
                let expected = decode(event).ok();
                prop_assert!(expected.is_some(), "{} does not decode", event.event_type);
                let mut payload = event.payload.clone();
                encode_key(number, WireType::Varint, &mut payload);
                encode_varint(varint, &mut payload);
                encode_key(number + 1, WireType::LengthDelimited, &mut payload);
                encode_varint(bytes.len() as u64, &mut payload);
                payload.extend_from_slice(&bytes);
                let decoded = decode(&event_of(event.event_type.clone(), payload));
                prop_assert_eq!(decoded.ok(), expected);
            }

            #[test]
            fn a_group_created_passes_through_as_it_is(
                display_name in ".{0,40}",
                capacity in any::<u32>(),
                admission_mode in any::<i32>(),
                iso_weekdays in vec(any::<u32>(), 0..8),
                start_date in ".{0,12}",
            ) {
                let message = pb::GroupCreated {
                    display_name,
                    capacity,
                    admission_mode,
                    schedule: Some(pb::Schedule {
                        iso_weekdays,
                        start_date,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                prop_assert_eq!(
                    decode(&wire_event(&message)).ok(),
                    Some(Some(Fact::GroupCreated(message)))
                );
            }

            #[test]
            fn reading_a_schedule_never_panics(
                iso_weekdays in vec(any::<u32>(), 0..10),
                start_minute in any::<u32>(),
                duration_minutes in any::<u32>(),
                start_date in ".{0,16}",
                end_date in ".{0,16}",
                exception_dates in vec(".{0,16}", 0..4),
            ) {
                let _ = schedule(&pb::Schedule {
                    iso_weekdays,
                    start_minute,
                    duration_minutes,
                    start_date,
                    end_date,
                    exception_dates,
                });
            }

            #[test]
            fn the_dates_enrollment_writes_read_back(
                year in 1000i32..=9980,
                month in 1u32..=12,
                day in 1u32..=28,
                later_days in 0i64..4000,
                iso_weekdays in vec(1u32..=7, 0..7),
            ) {
                let start = chrono::NaiveDate::from_ymd_opt(year, month, day).expect("a date");
                let end = start + chrono::Duration::days(later_days);
                let read = schedule(&pb::Schedule {
                    iso_weekdays: iso_weekdays.clone(),
                    start_minute: 600,
                    duration_minutes: 60,
                    start_date: start.format(SCHEDULE_DATE).to_string(),
                    end_date: end.format(SCHEDULE_DATE).to_string(),
                    exception_dates: vec![end.format(SCHEDULE_DATE).to_string()],
                });
                let read = read.map_err(TestCaseError::fail)?;
                prop_assert_eq!(read.start_date, start);
                prop_assert_eq!(read.end_date, Some(end));
                prop_assert_eq!(read.exception_dates, BTreeSet::from([end]));
                prop_assert_eq!(read.iso_weekdays, iso_weekdays.into_iter().collect::<BTreeSet<_>>());
            }
        }
    }
}
