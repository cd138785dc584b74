//! Domain events to and from their protobuf payloads: the one place where event wire
//! types meet the domain.

use circle_eventstore::{Aggregate, DecodeError, NewEvent, StoredCommit, wire};
use circle_proto::enrollment::events::v1 as pb;
use prost::{Message, Name};

use crate::domain::{
    AdmissionMode, AdmissionPath, Clinic, ConsentKind, ConsentTerms, DischargeReason, Event,
    Facilitator, FacilitatorRole, ForgetReason, Group, GroupDetails, Participant, PeerDisplay,
    Profile, Schedule, TransferRef, clinic, group, participant,
};

use circle_enrollment_events::SCHEDULE_DATE as DATE_FORMAT;

pub fn encode(event: &Event) -> NewEvent {
    match event {
        Event::ClinicCreated {
            display_name,
            time_zone,
        } => NewEvent::from_message(&pb::ClinicCreated {
            display_name: display_name.clone(),
            time_zone: time_zone.clone(),
        }),
        Event::ClinicUpdated {
            display_name,
            time_zone,
        } => NewEvent::from_message(&pb::ClinicUpdated {
            display_name: display_name.clone(),
            time_zone: time_zone.clone(),
        }),
        Event::ClinicArchived => NewEvent::from_message(&pb::ClinicArchived {}),
        Event::GroupCreated(details) => NewEvent::from_message(&pb::GroupCreated {
            clinic_id: details.clinic_id.clone(),
            display_name: details.display_name.clone(),
            modality: details.modality.clone(),
            level_of_care: details.level_of_care.clone(),
            capacity: details.capacity,
            admission_mode: admission_to_wire(details.admission_mode) as i32,
            time_zone: details.time_zone.clone(),
            facilitators: facilitators_to_wire(&details.facilitators),
            schedule: details.schedule.as_ref().map(schedule_to_wire),
        }),
        Event::GroupDetailsChanged {
            display_name,
            modality,
            level_of_care,
            admission_mode,
        } => NewEvent::from_message(&pb::GroupDetailsChanged {
            display_name: display_name.clone(),
            modality: modality.clone(),
            level_of_care: level_of_care.clone(),
            admission_mode: admission_to_wire(*admission_mode) as i32,
        }),
        Event::GroupCapacityChanged { capacity } => {
            NewEvent::from_message(&pb::GroupCapacityChanged {
                capacity: *capacity,
            })
        }
        Event::GroupScheduleChanged { schedule } => {
            NewEvent::from_message(&pb::GroupScheduleChanged {
                schedule: schedule.as_ref().map(schedule_to_wire),
            })
        }
        Event::GroupFacilitatorsChanged { facilitators } => {
            NewEvent::from_message(&pb::GroupFacilitatorsChanged {
                facilitators: facilitators_to_wire(facilitators),
            })
        }
        Event::GroupArchived => NewEvent::from_message(&pb::GroupArchived {}),
        Event::ParticipantRegistered {
            home_clinic_id,
            profile,
        } => NewEvent::from_message(&pb::ParticipantRegistered {
            home_clinic_id: home_clinic_id.clone(),
            profile: Some(profile_to_wire(profile)),
        }),
        Event::ParticipantProfileChanged { profile } => {
            NewEvent::from_message(&pb::ParticipantProfileChanged {
                profile: Some(profile_to_wire(profile)),
            })
        }
        Event::ParticipantHomeClinicChanged { home_clinic_id } => {
            NewEvent::from_message(&pb::ParticipantHomeClinicChanged {
                home_clinic_id: home_clinic_id.clone(),
            })
        }
        Event::ConsentRecorded { consent_id, terms } => {
            let mut message = pb::ConsentRecorded {
                consent_id: consent_id.clone(),
                ..Default::default()
            };
            match terms {
                ConsentTerms::TreatmentDisclosure { recipient, purpose } => {
                    message.kind = pb::ConsentKind::TreatmentDisclosure as i32;
                    message.recipient = recipient.clone();
                    message.purpose = purpose.clone();
                }
                ConsentTerms::PeerVisibility {
                    display,
                    alias,
                    share_check_ins,
                    share_milestones,
                } => {
                    message.kind = pb::ConsentKind::PeerVisibility as i32;
                    message.display = match display {
                        PeerDisplay::FirstName => pb::PeerDisplay::FirstName,
                        PeerDisplay::Alias => pb::PeerDisplay::Alias,
                    } as i32;
                    message.alias = alias.clone();
                    message.share_check_ins = *share_check_ins;
                    message.share_milestones = *share_milestones;
                }
            }
            NewEvent::from_message(&message)
        }
        Event::ConsentRevoked { consent_id, kind } => NewEvent::from_message(&pb::ConsentRevoked {
            consent_id: consent_id.clone(),
            kind: consent_kind_to_wire(*kind) as i32,
        }),
        Event::ParticipantForgotten {
            reason,
            reference,
            forgotten_at,
        } => NewEvent::from_message(&pb::ParticipantForgotten {
            reason: forget_reason_to_wire(*reason) as i32,
            reference: reference.clone(),
            forgotten_at: Some(timestamp(*forgotten_at)),
        }),
        Event::MemberAdmitted {
            participant_id,
            path,
            transfer,
            facilitator_override,
        } => NewEvent::from_message(&pb::MemberAdmitted {
            participant_id: participant_id.clone(),
            path: match path {
                AdmissionPath::Direct => pb::AdmissionPath::Direct,
                AdmissionPath::Offer => pb::AdmissionPath::Offer,
            } as i32,
            transfer: transfer.as_ref().map(transfer_to_wire),
            facilitator_override: *facilitator_override,
        }),
        Event::MemberWaitlisted {
            participant_id,
            position,
            transfer,
        } => NewEvent::from_message(&pb::MemberWaitlisted {
            participant_id: participant_id.clone(),
            position_at_join: *position,
            transfer: transfer.as_ref().map(transfer_to_wire),
        }),
        Event::SeatOffered {
            participant_id,
            offer_id,
            expires_at,
            transfer,
        } => NewEvent::from_message(&pb::SeatOffered {
            participant_id: participant_id.clone(),
            offer_id: offer_id.clone(),
            expire_time: Some(timestamp(*expires_at)),
            transfer: transfer.as_ref().map(transfer_to_wire),
        }),
        Event::SeatOfferDeclined {
            participant_id,
            offer_id,
        } => NewEvent::from_message(&pb::SeatOfferDeclined {
            participant_id: participant_id.clone(),
            offer_id: offer_id.clone(),
        }),
        Event::SeatOfferExpired {
            participant_id,
            offer_id,
        } => NewEvent::from_message(&pb::SeatOfferExpired {
            participant_id: participant_id.clone(),
            offer_id: offer_id.clone(),
        }),
        Event::MemberHeld {
            participant_id,
            reason,
        } => NewEvent::from_message(&pb::MemberHeld {
            participant_id: participant_id.clone(),
            reason: reason.clone(),
        }),
        Event::MemberResumed { participant_id } => NewEvent::from_message(&pb::MemberResumed {
            participant_id: participant_id.clone(),
        }),
        Event::MemberDischarged {
            participant_id,
            reason,
        } => NewEvent::from_message(&pb::MemberDischarged {
            participant_id: participant_id.clone(),
            reason: discharge_to_wire(*reason) as i32,
        }),
        Event::MemberTransferredOut {
            participant_id,
            transfer,
        } => NewEvent::from_message(&pb::MemberTransferredOut {
            participant_id: participant_id.clone(),
            transfer: Some(transfer_to_wire(transfer)),
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
    let decoded = if name == pb::ClinicCreated::full_name() {
        let message = message!(pb::ClinicCreated);
        Event::ClinicCreated {
            display_name: message.display_name,
            time_zone: message.time_zone,
        }
    } else if name == pb::ClinicUpdated::full_name() {
        let message = message!(pb::ClinicUpdated);
        Event::ClinicUpdated {
            display_name: message.display_name,
            time_zone: message.time_zone,
        }
    } else if name == pb::ClinicArchived::full_name() {
        Event::ClinicArchived
    } else if name == pb::GroupCreated::full_name() {
        let message = message!(pb::GroupCreated);
        Event::GroupCreated(GroupDetails {
            admission_mode: admission_from_wire(message.admission_mode)
                .ok_or_else(|| fail("unknown admission mode".into()))?,
            facilitators: facilitators_from_wire(&message.facilitators).map_err(fail)?,
            schedule: message
                .schedule
                .as_ref()
                .map(schedule_from_wire)
                .transpose()
                .map_err(fail)?,
            clinic_id: message.clinic_id,
            display_name: message.display_name,
            modality: message.modality,
            level_of_care: message.level_of_care,
            capacity: message.capacity,
            time_zone: message.time_zone,
        })
    } else if name == pb::GroupDetailsChanged::full_name() {
        let message = message!(pb::GroupDetailsChanged);
        Event::GroupDetailsChanged {
            admission_mode: admission_from_wire(message.admission_mode)
                .ok_or_else(|| fail("unknown admission mode".into()))?,
            display_name: message.display_name,
            modality: message.modality,
            level_of_care: message.level_of_care,
        }
    } else if name == pb::GroupCapacityChanged::full_name() {
        Event::GroupCapacityChanged {
            capacity: message!(pb::GroupCapacityChanged).capacity,
        }
    } else if name == pb::GroupScheduleChanged::full_name() {
        let message = message!(pb::GroupScheduleChanged);
        Event::GroupScheduleChanged {
            schedule: message
                .schedule
                .as_ref()
                .map(schedule_from_wire)
                .transpose()
                .map_err(fail)?,
        }
    } else if name == pb::GroupFacilitatorsChanged::full_name() {
        let message = message!(pb::GroupFacilitatorsChanged);
        Event::GroupFacilitatorsChanged {
            facilitators: facilitators_from_wire(&message.facilitators).map_err(fail)?,
        }
    } else if name == pb::GroupArchived::full_name() {
        Event::GroupArchived
    } else if name == pb::ParticipantRegistered::full_name() {
        let message = message!(pb::ParticipantRegistered);
        Event::ParticipantRegistered {
            home_clinic_id: message.home_clinic_id,
            profile: profile_from_wire(message.profile.unwrap_or_default()),
        }
    } else if name == pb::ParticipantProfileChanged::full_name() {
        let message = message!(pb::ParticipantProfileChanged);
        Event::ParticipantProfileChanged {
            profile: profile_from_wire(message.profile.unwrap_or_default()),
        }
    } else if name == pb::ParticipantHomeClinicChanged::full_name() {
        Event::ParticipantHomeClinicChanged {
            home_clinic_id: message!(pb::ParticipantHomeClinicChanged).home_clinic_id,
        }
    } else if name == pb::ConsentRecorded::full_name() {
        let message = message!(pb::ConsentRecorded);
        let terms = match pb::ConsentKind::try_from(message.kind) {
            Ok(pb::ConsentKind::TreatmentDisclosure) => ConsentTerms::TreatmentDisclosure {
                recipient: message.recipient,
                purpose: message.purpose,
            },
            Ok(pb::ConsentKind::PeerVisibility) => ConsentTerms::PeerVisibility {
                display: match pb::PeerDisplay::try_from(message.display) {
                    Ok(pb::PeerDisplay::Alias) => PeerDisplay::Alias,
                    _ => PeerDisplay::FirstName,
                },
                alias: message.alias,
                share_check_ins: message.share_check_ins,
                share_milestones: message.share_milestones,
            },
            _ => return Err(fail("unknown consent kind".into())),
        };
        Event::ConsentRecorded {
            consent_id: message.consent_id,
            terms,
        }
    } else if name == pb::ConsentRevoked::full_name() {
        let message = message!(pb::ConsentRevoked);
        Event::ConsentRevoked {
            kind: match pb::ConsentKind::try_from(message.kind) {
                Ok(pb::ConsentKind::TreatmentDisclosure) => ConsentKind::TreatmentDisclosure,
                Ok(pb::ConsentKind::PeerVisibility) => ConsentKind::PeerVisibility,
                _ => return Err(fail("unknown consent kind".into())),
            },
            consent_id: message.consent_id,
        }
    } else if name == pb::ParticipantForgotten::full_name() {
        let message = message!(pb::ParticipantForgotten);
        Event::ParticipantForgotten {
            reason: forget_reason_from_wire(message.reason)
                .ok_or_else(|| fail("unknown forget reason".into()))?,
            reference: message.reference,
            forgotten_at: message
                .forgotten_at
                .and_then(from_timestamp)
                .ok_or_else(|| fail("no valid forgotten_at".into()))?,
        }
    } else if name == pb::MemberAdmitted::full_name() {
        let message = message!(pb::MemberAdmitted);
        Event::MemberAdmitted {
            path: match pb::AdmissionPath::try_from(message.path) {
                Ok(pb::AdmissionPath::Offer) => AdmissionPath::Offer,
                _ => AdmissionPath::Direct,
            },
            transfer: message.transfer.map(transfer_from_wire),
            facilitator_override: message.facilitator_override,
            participant_id: message.participant_id,
        }
    } else if name == pb::MemberWaitlisted::full_name() {
        let message = message!(pb::MemberWaitlisted);
        Event::MemberWaitlisted {
            participant_id: message.participant_id,
            position: message.position_at_join,
            transfer: message.transfer.map(transfer_from_wire),
        }
    } else if name == pb::SeatOffered::full_name() {
        let message = message!(pb::SeatOffered);
        Event::SeatOffered {
            expires_at: message
                .expire_time
                .and_then(from_timestamp)
                .ok_or_else(|| fail("offer without a valid expiry".into()))?,
            participant_id: message.participant_id,
            offer_id: message.offer_id,
            transfer: message.transfer.map(transfer_from_wire),
        }
    } else if name == pb::SeatOfferDeclined::full_name() {
        let message = message!(pb::SeatOfferDeclined);
        Event::SeatOfferDeclined {
            participant_id: message.participant_id,
            offer_id: message.offer_id,
        }
    } else if name == pb::SeatOfferExpired::full_name() {
        let message = message!(pb::SeatOfferExpired);
        Event::SeatOfferExpired {
            participant_id: message.participant_id,
            offer_id: message.offer_id,
        }
    } else if name == pb::MemberHeld::full_name() {
        let message = message!(pb::MemberHeld);
        Event::MemberHeld {
            participant_id: message.participant_id,
            reason: message.reason,
        }
    } else if name == pb::MemberResumed::full_name() {
        Event::MemberResumed {
            participant_id: message!(pb::MemberResumed).participant_id,
        }
    } else if name == pb::MemberDischarged::full_name() {
        let message = message!(pb::MemberDischarged);
        Event::MemberDischarged {
            reason: discharge_from_wire(message.reason)
                .ok_or_else(|| fail("unknown discharge reason".into()))?,
            participant_id: message.participant_id,
        }
    } else if name == pb::MemberTransferredOut::full_name() {
        let message = message!(pb::MemberTransferredOut);
        Event::MemberTransferredOut {
            participant_id: message.participant_id,
            transfer: message
                .transfer
                .map(transfer_from_wire)
                .ok_or_else(|| fail("transfer missing".into()))?,
        }
    } else {
        return Err(fail("unknown event type".into()));
    };
    Ok(decoded)
}

pub fn decode_commit(commit: &StoredCommit) -> Result<Vec<Event>, DecodeError> {
    commit.commit.events.iter().map(decode).collect()
}

pub use circle_calendar::{from_timestamp, timestamp};

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

fn consent_kind_to_wire(kind: ConsentKind) -> pb::ConsentKind {
    match kind {
        ConsentKind::TreatmentDisclosure => pb::ConsentKind::TreatmentDisclosure,
        ConsentKind::PeerVisibility => pb::ConsentKind::PeerVisibility,
    }
}

pub fn forget_reason_to_wire(reason: ForgetReason) -> pb::ForgetReason {
    match reason {
        ForgetReason::ParticipantRequest => pb::ForgetReason::ParticipantRequest,
        ForgetReason::RetentionEnded => pb::ForgetReason::RetentionEnded,
        ForgetReason::LegalOrder => pb::ForgetReason::LegalOrder,
        ForgetReason::Other => pb::ForgetReason::Other,
    }
}

pub fn forget_reason_from_wire(value: i32) -> Option<ForgetReason> {
    match pb::ForgetReason::try_from(value) {
        Ok(pb::ForgetReason::ParticipantRequest) => Some(ForgetReason::ParticipantRequest),
        Ok(pb::ForgetReason::RetentionEnded) => Some(ForgetReason::RetentionEnded),
        Ok(pb::ForgetReason::LegalOrder) => Some(ForgetReason::LegalOrder),
        Ok(pb::ForgetReason::Other) => Some(ForgetReason::Other),
        _ => None,
    }
}

pub fn discharge_to_wire(reason: DischargeReason) -> pb::DischargeReason {
    match reason {
        DischargeReason::Completed => pb::DischargeReason::Completed,
        DischargeReason::Clinical => pb::DischargeReason::Clinical,
        DischargeReason::Administrative => pb::DischargeReason::Administrative,
        DischargeReason::NoShow => pb::DischargeReason::NoShow,
        DischargeReason::Withdrew => pb::DischargeReason::Withdrew,
    }
}

fn discharge_from_wire(value: i32) -> Option<DischargeReason> {
    Some(match pb::DischargeReason::try_from(value).ok()? {
        pb::DischargeReason::Completed => DischargeReason::Completed,
        pb::DischargeReason::Clinical => DischargeReason::Clinical,
        pb::DischargeReason::Administrative => DischargeReason::Administrative,
        pb::DischargeReason::NoShow => DischargeReason::NoShow,
        pb::DischargeReason::Withdrew => DischargeReason::Withdrew,
        pb::DischargeReason::Unspecified => return None,
    })
}

pub fn facilitators_to_wire(facilitators: &[Facilitator]) -> Vec<pb::Facilitator> {
    facilitators
        .iter()
        .map(|facilitator| pb::Facilitator {
            staff_id: facilitator.staff_id.clone(),
            role: match facilitator.role {
                FacilitatorRole::Lead => pb::FacilitatorRole::Lead,
                FacilitatorRole::CoFacilitator => pb::FacilitatorRole::CoFacilitator,
                FacilitatorRole::PeerLeader => pb::FacilitatorRole::PeerLeader,
            } as i32,
        })
        .collect()
}

pub fn facilitators_from_wire(
    facilitators: &[pb::Facilitator],
) -> Result<Vec<Facilitator>, String> {
    facilitators
        .iter()
        .map(|facilitator| {
            let role = match pb::FacilitatorRole::try_from(facilitator.role) {
                Ok(pb::FacilitatorRole::Lead) => FacilitatorRole::Lead,
                Ok(pb::FacilitatorRole::CoFacilitator) => FacilitatorRole::CoFacilitator,
                Ok(pb::FacilitatorRole::PeerLeader) => FacilitatorRole::PeerLeader,
                _ => return Err("unknown facilitator role".to_owned()),
            };
            Ok(Facilitator {
                staff_id: facilitator.staff_id.clone(),
                role,
            })
        })
        .collect()
}

pub fn schedule_to_wire(schedule: &Schedule) -> pb::Schedule {
    pb::Schedule {
        iso_weekdays: schedule.iso_weekdays.iter().copied().collect(),
        start_minute: schedule.start_minute,
        duration_minutes: schedule.duration_minutes,
        start_date: schedule.start_date.format(DATE_FORMAT).to_string(),
        end_date: schedule
            .end_date
            .map(|end| end.format(DATE_FORMAT).to_string())
            .unwrap_or_default(),
        exception_dates: schedule
            .exception_dates
            .iter()
            .map(|date| date.format(DATE_FORMAT).to_string())
            .collect(),
    }
}

pub use circle_enrollment_events::schedule as schedule_from_wire;

fn profile_to_wire(profile: &Profile) -> pb::ParticipantProfile {
    pb::ParticipantProfile {
        given_name: profile.given_name.clone(),
        family_name: profile.family_name.clone(),
        preferred_name: profile.preferred_name.clone(),
        email: profile.email.clone(),
        phone: profile.phone.clone(),
    }
}

fn profile_from_wire(profile: pb::ParticipantProfile) -> Profile {
    Profile {
        given_name: profile.given_name,
        family_name: profile.family_name,
        preferred_name: profile.preferred_name,
        email: profile.email,
        phone: profile.phone,
    }
}

fn transfer_to_wire(transfer: &TransferRef) -> pb::Transfer {
    pb::Transfer {
        transfer_id: transfer.transfer_id.clone(),
        from_group_id: transfer.from_group_id.clone(),
        to_group_id: transfer.to_group_id.clone(),
    }
}

fn transfer_from_wire(transfer: pb::Transfer) -> TransferRef {
    TransferRef {
        transfer_id: transfer.transfer_id,
        from_group_id: transfer.from_group_id,
        to_group_id: transfer.to_group_id,
    }
}

/// `$evolve` is given the state, the event and its commit's time.
macro_rules! aggregate {
    ($state:ty, $type_name:literal, $evolve:expr) => {
        impl Aggregate for $state {
            const TYPE: &'static str = $type_name;
            type Event = Event;
            fn encode(event: &Event) -> NewEvent {
                encode(event)
            }
            fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
                decode(event)
            }
            fn evolve(self, event: &Event, at: circle_calendar::Time) -> Self {
                ($evolve)(self, event, at)
            }
        }
    };
}

aggregate!(Clinic, "clinic", |state, event, _at| clinic::evolve(
    state, event
));
aggregate!(Group, "group", |state, event, _at| group::evolve(
    state, event
));
// A participant's consents keep the times of the commits that recorded and revoked them.
aggregate!(Participant, "participant", participant::evolve);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::NaiveDate;

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

    /// One event of every kind, with every optional part present somewhere.
    fn every_kind_of_event() -> Vec<Event> {
        let transfer = TransferRef {
            transfer_id: "t".into(),
            from_group_id: "a".into(),
            to_group_id: "b".into(),
        };
        let schedule = Schedule {
            iso_weekdays: BTreeSet::from([2, 4]),
            start_minute: 18 * 60 + 30,
            duration_minutes: 90,
            start_date: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            end_date: Some(NaiveDate::from_ymd_opt(2027, 6, 1).expect("date")),
            exception_dates: BTreeSet::from([NaiveDate::from_ymd_opt(2026, 12, 24).expect("date")]),
        };
        let details = GroupDetails {
            clinic_id: "north".into(),
            display_name: "Process".into(),
            modality: "process".into(),
            level_of_care: "outpatient".into(),
            capacity: 12,
            admission_mode: AdmissionMode::Closed,
            time_zone: "America/Chicago".into(),
            facilitators: vec![Facilitator {
                staff_id: "s1".into(),
                role: FacilitatorRole::PeerLeader,
            }],
            schedule: Some(schedule.clone()),
        };
        let profile = Profile {
            given_name: "Sam".into(),
            family_name: "Rivera".into(),
            preferred_name: "Sammy".into(),
            email: "sam@example.org".into(),
            phone: "+1 555 0100".into(),
        };
        let at: crate::domain::Time = "2026-11-20T12:00:00Z".parse().expect("time");
        vec![
            Event::ClinicCreated {
                display_name: "North".into(),
                time_zone: "America/Chicago".into(),
            },
            Event::ClinicUpdated {
                display_name: "N".into(),
                time_zone: "UTC".into(),
            },
            Event::ClinicArchived,
            Event::GroupCreated(details),
            Event::GroupDetailsChanged {
                display_name: "P".into(),
                modality: "dbt-skills".into(),
                level_of_care: "outpatient".into(),
                admission_mode: AdmissionMode::Rolling,
            },
            Event::GroupCapacityChanged { capacity: 8 },
            Event::GroupScheduleChanged {
                schedule: Some(schedule),
            },
            Event::GroupScheduleChanged { schedule: None },
            Event::GroupFacilitatorsChanged {
                facilitators: vec![],
            },
            Event::GroupArchived,
            Event::ParticipantRegistered {
                home_clinic_id: "north".into(),
                profile: profile.clone(),
            },
            Event::ParticipantProfileChanged { profile },
            Event::ParticipantHomeClinicChanged {
                home_clinic_id: "south".into(),
            },
            Event::ConsentRecorded {
                consent_id: "c1".into(),
                terms: ConsentTerms::TreatmentDisclosure {
                    recipient: "r".into(),
                    purpose: "p".into(),
                },
            },
            Event::ConsentRecorded {
                consent_id: "c2".into(),
                terms: ConsentTerms::PeerVisibility {
                    display: PeerDisplay::Alias,
                    alias: "Sunny".into(),
                    share_check_ins: true,
                    share_milestones: false,
                },
            },
            Event::ConsentRevoked {
                consent_id: "c2".into(),
                kind: ConsentKind::PeerVisibility,
            },
            Event::ParticipantForgotten {
                reason: ForgetReason::RetentionEnded,
                reference: "ticket-42".into(),
                forgotten_at: at,
            },
            Event::MemberAdmitted {
                participant_id: "p1".into(),
                path: AdmissionPath::Offer,
                transfer: Some(transfer.clone()),
                facilitator_override: true,
            },
            Event::MemberWaitlisted {
                participant_id: "p1".into(),
                position: 4,
                transfer: None,
            },
            Event::SeatOffered {
                participant_id: "p1".into(),
                offer_id: "offer-1".into(),
                expires_at: at,
                transfer: Some(transfer.clone()),
            },
            Event::SeatOfferDeclined {
                participant_id: "p1".into(),
                offer_id: "offer-1".into(),
            },
            Event::SeatOfferExpired {
                participant_id: "p1".into(),
                offer_id: "offer-1".into(),
            },
            Event::MemberHeld {
                participant_id: "p1".into(),
                reason: "travel".into(),
            },
            Event::MemberResumed {
                participant_id: "p1".into(),
            },
            Event::MemberDischarged {
                participant_id: "p1".into(),
                reason: DischargeReason::NoShow,
            },
            Event::MemberTransferredOut {
                participant_id: "p1".into(),
                transfer,
            },
        ]
    }

    #[test]
    fn every_event_survives_the_wire() {
        for event in every_kind_of_event() {
            round_trip(event);
        }
    }

    circle_eventstore::codec_properties!(
        fuzz,
        event: crate::domain::Event,
        events: super::every_kind_of_event,
        encode: super::super::encode,
        decode: super::super::decode,
        decode_commit: super::super::decode_commit,
        subject: "enrollment.acme.group.g",
    );
}
