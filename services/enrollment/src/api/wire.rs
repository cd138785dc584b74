//! The application's views to protobuf: one mapping per view, for the answers of
//! queries (`read`) and commands (`write`) alike, so a command's answer and a read
//! show a record the same way.

use circle_proto::enrollment::v1 as pb;

use circle_audit::Purpose;

use crate::app::{
    ClinicView, ConsentView, DisclosureView, GroupView, MembershipView, ParticipantView,
};
use crate::codec;
use crate::domain::{ConsentKind, Facilitator, FacilitatorRole, PeerDisplay, Profile, Schedule};
use crate::read_model::state;

pub fn clinic(clinic: ClinicView) -> pb::Clinic {
    pb::Clinic {
        name: clinic.name.to_string(),
        display_name: clinic.display_name,
        time_zone: clinic.time_zone,
        archived: clinic.archived,
        etag: clinic.version.to_string(),
    }
}

pub fn group(group: GroupView) -> pb::Group {
    pb::Group {
        name: group.name.to_string(),
        display_name: group.display_name,
        modality: group.modality,
        level_of_care: group.level_of_care,
        capacity: group.capacity,
        admission_mode: codec::admission_to_wire(group.admission_mode) as i32,
        active_member_count: group.active_count,
        waitlist_count: group.waitlist_count,
        etag: group.version.to_string(),
        facilitators: facilitators(&group.facilitators),
        next_session_time: group.next_session.map(codec::timestamp),
        schedule: group.schedule.as_ref().map(schedule),
        time_zone: group.time_zone,
        on_hold_count: group.on_hold_count,
        open_offer_count: group.offer_count,
        archived: group.archived,
    }
}

pub fn participant(participant: ParticipantView) -> pb::Participant {
    pb::Participant {
        name: participant.name.to_string(),
        home_clinic: participant.home_clinic.to_string(),
        profile: Some(profile(participant.profile)),
        etag: participant.version.to_string(),
        consents: participant.consents.into_iter().map(consent).collect(),
        forgotten_at: participant.forgotten_at.map(codec::timestamp),
    }
}

fn profile(profile: Profile) -> pb::ParticipantProfile {
    pb::ParticipantProfile {
        given_name: profile.given_name,
        family_name: profile.family_name,
        preferred_name: profile.preferred_name,
        email: profile.email,
        phone: profile.phone,
    }
}

pub fn consent(consent: ConsentView) -> pb::Consent {
    pb::Consent {
        name: consent.name.to_string(),
        kind: match consent.kind {
            ConsentKind::PeerVisibility => pb::ConsentKind::PeerVisibility,
            ConsentKind::TreatmentDisclosure => pb::ConsentKind::TreatmentDisclosure,
        } as i32,
        recipient: consent.recipient,
        purpose: consent.purpose,
        display: match consent.display {
            Some(PeerDisplay::Alias) => pb::PeerDisplay::Alias,
            Some(PeerDisplay::FirstName) => pb::PeerDisplay::FirstName,
            None => pb::PeerDisplay::Unspecified,
        } as i32,
        alias: consent.alias,
        share_check_ins: consent.share_check_ins,
        share_milestones: consent.share_milestones,
        record_time: Some(codec::timestamp(consent.recorded_at)),
        revoke_time: consent.revoked_at.map(codec::timestamp),
    }
}

pub fn membership(membership: MembershipView) -> pb::Membership {
    pb::Membership {
        name: membership.name.to_string(),
        participant: membership.participant.to_string(),
        state: membership_state(&membership.state) as i32,
        waitlist_position: membership.waitlist_position,
        since: Some(codec::timestamp(membership.since)),
        offer_expire_time: membership.offer_expires_at.map(codec::timestamp),
        end_reason: end_reason(&membership.end_reason) as i32,
        history: membership
            .history
            .into_iter()
            .map(|event| pb::MembershipEvent {
                kind: event.kind,
                state_after: membership_state(&event.state_after) as i32,
                time: Some(codec::timestamp(event.at)),
                version: event.version,
                detail: event.detail,
            })
            .collect(),
    }
}

pub fn disclosure(disclosure: DisclosureView) -> pb::Disclosure {
    pb::Disclosure {
        name: format!(
            "{}/disclosures/{}",
            disclosure.participant, disclosure.disclosure_id
        ),
        disclose_time: Some(codec::timestamp(disclosure.at)),
        actor: disclosure.actor_id,
        actor_roles: disclosure.actor_roles,
        calling_service: disclosure.calling_service,
        operation: disclosure.operation,
        resource: disclosure.resource,
        purpose: match disclosure.purpose {
            Some(Purpose::Treatment) => pb::DisclosurePurpose::Treatment,
            Some(Purpose::Payment) => pb::DisclosurePurpose::Payment,
            Some(Purpose::Operations) => pb::DisclosurePurpose::HealthCareOperations,
            None => pb::DisclosurePurpose::Unspecified,
        } as i32,
        purpose_stated: disclosure.purpose_stated,
        trace_id: disclosure.trace_id,
    }
}

/// A membership state as the read model stores it (`read_model::state`).
fn membership_state(text: &str) -> pb::MembershipState {
    match text {
        state::ACTIVE => pb::MembershipState::Active,
        state::ON_HOLD => pb::MembershipState::OnHold,
        state::WAITLISTED => pb::MembershipState::Waitlisted,
        state::OFFERED => pb::MembershipState::Offered,
        state::ENDED => pb::MembershipState::Ended,
        _ => pb::MembershipState::Unspecified,
    }
}

/// An end reason as the read model stores it.
fn end_reason(text: &str) -> pb::EndReason {
    match text {
        "completed" => pb::EndReason::Completed,
        "clinical" => pb::EndReason::Clinical,
        "administrative" => pb::EndReason::Administrative,
        "no-show" => pb::EndReason::NoShow,
        "withdrew" => pb::EndReason::Withdrew,
        "transferred" => pb::EndReason::Transferred,
        "offer-declined" => pb::EndReason::OfferDeclined,
        "offer-expired" => pb::EndReason::OfferExpired,
        _ => pb::EndReason::Unspecified,
    }
}

fn schedule(schedule: &Schedule) -> pb::Schedule {
    pb::Schedule {
        days: schedule
            .iso_weekdays
            .iter()
            .map(|day| *day as i32)
            .collect(),
        start_time: format!(
            "{:02}:{:02}",
            schedule.start_minute / 60,
            schedule.start_minute % 60
        ),
        duration_minutes: schedule.duration_minutes,
        start_date: schedule.start_date.format("%Y-%m-%d").to_string(),
        end_date: schedule
            .end_date
            .map(|end| end.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        exception_dates: schedule
            .exception_dates
            .iter()
            .map(|date| date.format("%Y-%m-%d").to_string())
            .collect(),
        rrule: schedule.rrule(),
    }
}

fn facilitators(facilitators: &[Facilitator]) -> Vec<pb::Facilitator> {
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
