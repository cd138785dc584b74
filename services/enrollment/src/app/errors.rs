//! The enrollment domain's refusals as API errors: its one table. Everything else a
//! command can fail with (store, etag, request id, contention) is mapped by
//! `circle_service::errors`.

use circle_grpc::ApiError;
use tonic::Code;

use super::aggregates::CommandError;
use crate::domain::DomainError;

pub(super) fn domain_error(error: DomainError) -> ApiError {
    use DomainError as E;
    let (code, reason) = match &error {
        E::ClinicExists => (Code::AlreadyExists, "CLINIC_EXISTS"),
        E::GroupExists => (Code::AlreadyExists, "GROUP_EXISTS"),
        E::ParticipantExists => (Code::AlreadyExists, "PARTICIPANT_EXISTS"),
        E::ConsentExists => (Code::AlreadyExists, "CONSENT_EXISTS"),
        E::AlreadyActive => (Code::AlreadyExists, "ALREADY_ENROLLED"),
        E::AlreadyWaitlisted => (Code::AlreadyExists, "ALREADY_WAITLISTED"),
        E::AlreadyOffered => (Code::AlreadyExists, "ALREADY_OFFERED"),
        E::ClinicNotFound => (Code::NotFound, "CLINIC_NOT_FOUND"),
        E::GroupNotFound => (Code::NotFound, "GROUP_NOT_FOUND"),
        E::ParticipantNotFound => (Code::NotFound, "PARTICIPANT_NOT_FOUND"),
        E::ConsentNotFound => (Code::NotFound, "CONSENT_NOT_FOUND"),
        E::ClinicArchived => (Code::FailedPrecondition, "CLINIC_ARCHIVED"),
        E::GroupArchived => (Code::FailedPrecondition, "GROUP_ARCHIVED"),
        E::GroupHasMembers => (Code::FailedPrecondition, "GROUP_HAS_MEMBERS"),
        E::CapacityBelowOccupancy { .. } => (Code::FailedPrecondition, "CAPACITY_BELOW_OCCUPANCY"),
        E::GroupClosed => (Code::FailedPrecondition, "GROUP_CLOSED"),
        E::NotEnrolled => (Code::FailedPrecondition, "NOT_ENROLLED"),
        E::NotActive => (Code::FailedPrecondition, "MEMBERSHIP_NOT_ACTIVE"),
        E::NotOnHold => (Code::FailedPrecondition, "MEMBERSHIP_NOT_ON_HOLD"),
        E::NoOpenOffer => (Code::FailedPrecondition, "NO_OPEN_OFFER"),
        E::OfferExpired => (Code::FailedPrecondition, "OFFER_EXPIRED"),
        E::TransferToSameGroup => (Code::InvalidArgument, "TRANSFER_TO_SAME_GROUP"),
        // The same refusal as a commit that cannot be sealed for them.
        E::ParticipantForgotten => return circle_service::errors::participant_forgotten(),
    };
    ApiError::new(code, reason, error.to_string())
}

/// Errors of a command: the shared mapping, with this service's domain table.
pub(super) fn command_error(error: CommandError) -> ApiError {
    circle_service::errors::execute_error(error, domain_error)
}
