//! What a client sees for a command the domain refused or the event log (or the key
//! store) could not run: the shared mapping (`circle_service::errors::execute_error`)
//! with this service's domain table.

use circle_grpc::ApiError;
use tonic::Code;

use super::aggregates::CommandError;
use crate::domain::DomainError;

/// The service's domain table: each refusal's code and stable reason.
pub(crate) fn domain_error(error: DomainError) -> ApiError {
    use DomainError as E;
    let (code, reason) = match &error {
        E::GoalExists => (Code::AlreadyExists, "GOAL_EXISTS"),
        E::AlreadyEncouraged => (Code::AlreadyExists, "ALREADY_ENCOURAGED"),
        E::PartnershipExists => (Code::AlreadyExists, "PARTNERSHIP_EXISTS"),
        E::GoalNotFound => (Code::NotFound, "GOAL_NOT_FOUND"),
        E::CheckInNotFound => (Code::NotFound, "CHECK_IN_NOT_FOUND"),
        E::PartnershipNotFound => (Code::NotFound, "PARTNERSHIP_NOT_FOUND"),
        E::GoalNotActive => (Code::FailedPrecondition, "GOAL_NOT_ACTIVE"),
        E::ConsentRequired => (Code::FailedPrecondition, "CONSENT_REQUIRED"),
        E::CannotSeeCheckIn => (Code::PermissionDenied, "CANNOT_SEE_CHECK_IN"),
        E::OwnCheckIn => (Code::InvalidArgument, "OWN_CHECK_IN"),
        E::NotEligibleForPartnership => (Code::FailedPrecondition, "NOT_ELIGIBLE_FOR_PARTNERSHIP"),
        E::NotTheInvitee => (Code::PermissionDenied, "NOT_THE_INVITEE"),
        E::NotProposed => (Code::FailedPrecondition, "PARTNERSHIP_NOT_PROPOSED"),
        E::SelfPartnership => (Code::InvalidArgument, "SELF_PARTNERSHIP"),
        E::NudgeNotFound => (Code::NotFound, "NUDGE_NOT_FOUND"),
        E::NudgeAlreadyDelivered => (Code::FailedPrecondition, "NUDGE_ALREADY_DELIVERED"),
    };
    ApiError::new(code, reason, error.to_string())
}

/// Errors of a command: the shared mapping, with this service's domain table.
pub(crate) fn command_error(error: CommandError) -> ApiError {
    circle_service::errors::execute_error(error, domain_error)
}
