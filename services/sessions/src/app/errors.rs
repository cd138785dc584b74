//! What a client sees when a session command is refused: the service's own table of
//! domain refusals, over the mapping every service shares
//! ([`circle_service::errors::execute_error`]).

use circle_grpc::{ApiError, Violations};
use tonic::Code;

use super::aggregates::{CommandError, Refusal};
use crate::domain::DomainError;

/// The domain's refusals as gRPC codes and `ErrorInfo` reasons; a bad field the
/// domain found (minutes, a note naming another member) as a field violation.
fn domain_error(error: DomainError) -> ApiError {
    use DomainError as E;
    let (code, reason) = match &error {
        E::SessionExists => (Code::AlreadyExists, "SESSION_EXISTS"),
        E::SessionNotFound => (Code::NotFound, "SESSION_NOT_FOUND"),
        E::NoteNotFound => (Code::NotFound, "NOTE_NOT_FOUND"),
        E::SessionCancelled => (Code::FailedPrecondition, "SESSION_CANCELLED"),
        E::SessionNotStarted => (Code::FailedPrecondition, "SESSION_NOT_STARTED"),
        E::SessionAlreadyStarted => (Code::FailedPrecondition, "SESSION_ALREADY_STARTED"),
        E::SessionNotInProgress => (Code::FailedPrecondition, "SESSION_NOT_IN_PROGRESS"),
        E::NotOnRoster => (Code::FailedPrecondition, "NOT_ON_ROSTER"),
        E::MemberAbsent => (Code::FailedPrecondition, "MEMBER_ABSENT"),
        E::NoteSigned => (Code::FailedPrecondition, "NOTE_SIGNED"),
        E::NoteNotSigned => (Code::FailedPrecondition, "NOTE_NOT_SIGNED"),
        E::NoteAlreadySigned => (Code::FailedPrecondition, "NOTE_ALREADY_SIGNED"),
        E::MinutesOverLength { .. } | E::MinutesForAbsentee | E::NoMinutesForAttendee => {
            let mut bad = Violations::default();
            bad.add("minutes_attended", error.to_string());
            let mut api = bad.into_result().err().unwrap_or_else(ApiError::internal);
            api.reason = "INVALID_MINUTES";
            return api;
        }
        E::NamesAnotherMember { start, end } => {
            let mut bad = Violations::default();
            bad.add("text", error.to_string());
            let mut api = bad.into_result().err().unwrap_or_else(ApiError::internal);
            api.reason = "NAMES_ANOTHER_MEMBER";
            return api
                .with_metadata("span_start", start.to_string())
                .with_metadata("span_end", end.to_string());
        }
    };
    ApiError::new(code, reason, error.to_string())
}

/// Errors of a session command: the shared mapping, with the session's own refusals.
pub(super) fn command_error(error: CommandError) -> ApiError {
    circle_service::errors::execute_error(error, |refusal| match refusal {
        Refusal::Domain(error) => domain_error(error),
        Refusal::WrongGroup => ApiError::new(
            Code::NotFound,
            "SESSION_NOT_FOUND",
            "no such session in this group",
        ),
    })
}
