//! The enrollment domain, pure and synchronous: for each aggregate (clinic, group,
//! participant) a `decide(&state, command, …)` returns the events a command produces
//! or why it is refused, and `evolve(state, &event)` folds an event into the state (the
//! participant's also takes its commit's time, which its consents keep). No
//! IO here: whatever a command needs from elsewhere (that a clinic or participant
//! exists, the current time) is resolved before the command is built.
//!
//! Personal text (`personal`: profiles, consents' free text, hold reasons) is sealed by
//! the repositories after `decide` and before the events are encoded and evolved, so
//! states hold sealed text: the domain never decides on personal text (the
//! application opens what a check needs, and the views it answers with).

pub mod clinic;
pub mod group;
pub mod participant;
pub mod personal;

pub use circle_calendar::Schedule;
pub use clinic::{Clinic, ClinicCommand};
pub use group::{Group, GroupChanges, GroupCommand, GroupContext, MemberState, Offer, Waiting};
pub use participant::{Participant, ParticipantCommand};

/// The weekly schedule math lives in `circle-calendar`, shared with sessions.
pub mod schedule {
    pub use circle_calendar::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, Schedule, time_zone};
}

pub use circle_calendar::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionMode {
    Rolling,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacilitatorRole {
    Lead,
    CoFacilitator,
    PeerLeader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facilitator {
    pub staff_id: String,
    pub role: FacilitatorRole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetails {
    pub clinic_id: String,
    pub display_name: String,
    pub modality: String,
    pub level_of_care: String,
    pub capacity: u32,
    pub admission_mode: AdmissionMode,
    /// The clinic's IANA time zone, copied when the group is created.
    pub time_zone: String,
    pub facilitators: Vec<Facilitator>,
    pub schedule: Option<Schedule>,
}

/// Personal data of a participant, kept in one place so it can be encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub given_name: String,
    pub family_name: String,
    pub preferred_name: String,
    pub email: String,
    pub phone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerDisplay {
    FirstName,
    Alias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentKind {
    TreatmentDisclosure,
    PeerVisibility,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentTerms {
    /// Who may receive treatment records, and for what purpose (42 CFR Part 2 style).
    TreatmentDisclosure { recipient: String, purpose: String },
    /// What the group may see of the participant.
    PeerVisibility {
        display: PeerDisplay,
        alias: String,
        share_check_ins: bool,
        share_milestones: bool,
    },
}

impl ConsentTerms {
    pub fn kind(&self) -> ConsentKind {
        match self {
            Self::TreatmentDisclosure { .. } => ConsentKind::TreatmentDisclosure,
            Self::PeerVisibility { .. } => ConsentKind::PeerVisibility,
        }
    }
}

/// Ties the two halves of a transfer together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRef {
    pub transfer_id: String,
    pub from_group_id: String,
    pub to_group_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionPath {
    Direct,
    Offer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DischargeReason {
    Completed,
    Clinical,
    Administrative,
    NoShow,
    Withdrew,
}

/// Why a participant was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetReason {
    ParticipantRequest,
    RetentionEnded,
    LegalOrder,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ClinicCreated {
        display_name: String,
        time_zone: String,
    },
    ClinicUpdated {
        display_name: String,
        time_zone: String,
    },
    ClinicArchived,
    GroupCreated(GroupDetails),
    GroupDetailsChanged {
        display_name: String,
        modality: String,
        level_of_care: String,
        admission_mode: AdmissionMode,
    },
    GroupCapacityChanged {
        capacity: u32,
    },
    GroupScheduleChanged {
        schedule: Option<Schedule>,
    },
    GroupFacilitatorsChanged {
        facilitators: Vec<Facilitator>,
    },
    GroupArchived,
    ParticipantRegistered {
        home_clinic_id: String,
        profile: Profile,
    },
    ParticipantProfileChanged {
        profile: Profile,
    },
    ParticipantHomeClinicChanged {
        home_clinic_id: String,
    },
    ConsentRecorded {
        consent_id: String,
        terms: ConsentTerms,
    },
    ConsentRevoked {
        consent_id: String,
        kind: ConsentKind,
    },
    /// The participant's data key was destroyed before this was committed; nothing
    /// more is recorded about them. `reference` is a case or ticket reference, not
    /// personal data.
    ParticipantForgotten {
        reason: ForgetReason,
        reference: String,
        forgotten_at: Time,
    },
    MemberAdmitted {
        participant_id: String,
        path: AdmissionPath,
        transfer: Option<TransferRef>,
        facilitator_override: bool,
    },
    MemberWaitlisted {
        participant_id: String,
        /// 1-based place in the waitlist when joining.
        position: u32,
        transfer: Option<TransferRef>,
    },
    SeatOffered {
        participant_id: String,
        offer_id: String,
        expires_at: Time,
        transfer: Option<TransferRef>,
    },
    SeatOfferDeclined {
        participant_id: String,
        offer_id: String,
    },
    SeatOfferExpired {
        participant_id: String,
        offer_id: String,
    },
    MemberHeld {
        participant_id: String,
        reason: String,
    },
    MemberResumed {
        participant_id: String,
    },
    MemberDischarged {
        participant_id: String,
        reason: DischargeReason,
    },
    MemberTransferredOut {
        participant_id: String,
        transfer: TransferRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the clinic already exists")]
    ClinicExists,
    #[error("the clinic does not exist")]
    ClinicNotFound,
    #[error("the clinic is archived")]
    ClinicArchived,
    #[error("the group already exists")]
    GroupExists,
    #[error("the group does not exist")]
    GroupNotFound,
    #[error("the group is archived")]
    GroupArchived,
    #[error("the group still has members, offers or a waitlist")]
    GroupHasMembers,
    #[error("the capacity cannot go below the {occupied} seats taken or offered")]
    CapacityBelowOccupancy { occupied: u32 },
    #[error("the group is closed to new members since its first session")]
    GroupClosed,
    #[error("the participant is already registered")]
    ParticipantExists,
    #[error("the participant does not exist")]
    ParticipantNotFound,
    #[error("the participant has been forgotten; nothing more can be recorded about them")]
    ParticipantForgotten,
    #[error("the participant is already a member of this group")]
    AlreadyActive,
    #[error("the participant is already on this group's waitlist")]
    AlreadyWaitlisted,
    #[error("the participant already has a seat offered in this group")]
    AlreadyOffered,
    #[error("the participant is not enrolled in this group")]
    NotEnrolled,
    #[error("the membership is not active")]
    NotActive,
    #[error("the membership is not on hold")]
    NotOnHold,
    #[error("the participant has no open seat offer in this group")]
    NoOpenOffer,
    #[error("the seat offer has expired")]
    OfferExpired,
    #[error("a transfer needs a different group")]
    TransferToSameGroup,
    #[error("a consent with this id already exists")]
    ConsentExists,
    #[error("the consent does not exist")]
    ConsentNotFound,
}

#[cfg(test)]
mod scenario {
    //! Given events, when a command, then events or an error.

    pub struct Given<S> {
        pub state: S,
    }

    pub fn given<S: Default, E>(events: &[E], evolve: impl Fn(S, &E) -> S) -> Given<S> {
        Given {
            state: events.iter().fold(S::default(), evolve),
        }
    }
}
