//! Domain events to and from their protobuf payloads: the one place where event wire
//! types meet the domain.

use circle_eventstore::{Aggregate, DecodeError, NewEvent, StoredCommit, wire};
use circle_proto::enrollment::events::v1 as pb;
use prost::{Message, Name};

use crate::domain::{
    AdmissionMode, Clinic, Event, Group, GroupDetails, Participant, ParticipantProfile,
    evolve_clinic, evolve_group, evolve_participant,
};

pub fn encode(event: &Event) -> NewEvent {
    match event {
        Event::ClinicCreated {
            display_name,
            time_zone,
        } => NewEvent::from_message(&pb::ClinicCreated {
            display_name: display_name.clone(),
            time_zone: time_zone.clone(),
        }),
        Event::GroupCreated(details) => NewEvent::from_message(&pb::GroupCreated {
            clinic_id: details.clinic_id.clone(),
            display_name: details.display_name.clone(),
            modality: details.modality.clone(),
            level_of_care: details.level_of_care.clone(),
            capacity: details.capacity,
            admission_mode: admission_to_wire(details.admission_mode) as i32,
        }),
        Event::ParticipantRegistered {
            home_clinic_id,
            profile,
        } => NewEvent::from_message(&pb::ParticipantRegistered {
            home_clinic_id: home_clinic_id.clone(),
            profile: Some(pb::ParticipantProfile {
                given_name: profile.given_name.clone(),
                family_name: profile.family_name.clone(),
            }),
        }),
        Event::MemberAdmitted { participant_id } => NewEvent::from_message(&pb::MemberAdmitted {
            participant_id: participant_id.clone(),
        }),
        Event::MemberWaitlisted {
            participant_id,
            position,
        } => NewEvent::from_message(&pb::MemberWaitlisted {
            participant_id: participant_id.clone(),
            position_at_join: *position,
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
    let decoded = if name == pb::ClinicCreated::full_name() {
        let message = pb::ClinicCreated::decode(payload).map_err(|e| fail(e.to_string()))?;
        Event::ClinicCreated {
            display_name: message.display_name,
            time_zone: message.time_zone,
        }
    } else if name == pb::GroupCreated::full_name() {
        let message = pb::GroupCreated::decode(payload).map_err(|e| fail(e.to_string()))?;
        Event::GroupCreated(GroupDetails {
            admission_mode: admission_from_wire(message.admission_mode)
                .ok_or_else(|| fail("unknown admission mode".into()))?,
            clinic_id: message.clinic_id,
            display_name: message.display_name,
            modality: message.modality,
            level_of_care: message.level_of_care,
            capacity: message.capacity,
        })
    } else if name == pb::ParticipantRegistered::full_name() {
        let message =
            pb::ParticipantRegistered::decode(payload).map_err(|e| fail(e.to_string()))?;
        let profile = message.profile.unwrap_or_default();
        Event::ParticipantRegistered {
            home_clinic_id: message.home_clinic_id,
            profile: ParticipantProfile {
                given_name: profile.given_name,
                family_name: profile.family_name,
            },
        }
    } else if name == pb::MemberAdmitted::full_name() {
        let message = pb::MemberAdmitted::decode(payload).map_err(|e| fail(e.to_string()))?;
        Event::MemberAdmitted {
            participant_id: message.participant_id,
        }
    } else if name == pb::MemberWaitlisted::full_name() {
        let message = pb::MemberWaitlisted::decode(payload).map_err(|e| fail(e.to_string()))?;
        Event::MemberWaitlisted {
            participant_id: message.participant_id,
            position: message.position_at_join,
        }
    } else {
        return Err(fail("unknown event type".into()));
    };
    Ok(decoded)
}

pub fn decode_commit(commit: &StoredCommit) -> Result<Vec<Event>, DecodeError> {
    commit.commit.events.iter().map(decode).collect()
}

pub fn admission_to_wire(mode: AdmissionMode) -> pb::AdmissionMode {
    match mode {
        AdmissionMode::Rolling => pb::AdmissionMode::Rolling,
        AdmissionMode::Closed => pb::AdmissionMode::Closed,
    }
}

pub fn admission_from_wire(value: i32) -> Option<AdmissionMode> {
    match pb::AdmissionMode::try_from(value).ok()? {
        pb::AdmissionMode::Rolling => Some(AdmissionMode::Rolling),
        pb::AdmissionMode::Closed => Some(AdmissionMode::Closed),
        pb::AdmissionMode::Unspecified => None,
    }
}

macro_rules! aggregate {
    ($state:ty, $type_name:literal, $evolve:path) => {
        impl Aggregate for $state {
            const TYPE: &'static str = $type_name;
            fn apply(&mut self, commit: &StoredCommit) -> Result<(), DecodeError> {
                for event in decode_commit(commit)? {
                    *self = $evolve(std::mem::take(self), &event);
                }
                Ok(())
            }
        }
    };
}

aggregate!(Clinic, "clinic", evolve_clinic);
aggregate!(Group, "group", evolve_group);
aggregate!(Participant, "participant", evolve_participant);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: Event) {
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

    #[test]
    fn every_event_survives_the_wire() {
        round_trip(Event::ClinicCreated {
            display_name: "North".into(),
            time_zone: "America/Chicago".into(),
        });
        round_trip(Event::GroupCreated(GroupDetails {
            clinic_id: "north".into(),
            display_name: "Process".into(),
            modality: "process".into(),
            level_of_care: "outpatient".into(),
            capacity: 12,
            admission_mode: AdmissionMode::Closed,
        }));
        round_trip(Event::ParticipantRegistered {
            home_clinic_id: "north".into(),
            profile: ParticipantProfile {
                given_name: "Sam".into(),
                family_name: "Rivera".into(),
            },
        });
        round_trip(Event::MemberAdmitted {
            participant_id: "p1".into(),
        });
        round_trip(Event::MemberWaitlisted {
            participant_id: "p1".into(),
            position: 4,
        });
    }
}
