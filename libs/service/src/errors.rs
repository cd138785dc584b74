//! The one mapping of the event store's and the read models' errors to what a client
//! sees (gRPC code and `ErrorInfo` reason). A service keeps only its domain table: what
//! each of its refusals means, passed to [`execute_error`].
//!
//! - a concurrent change the repository could not get past: `ABORTED` /
//!   `CONCURRENT_MODIFICATION` (retry with the same request id);
//! - a stale etag: `ABORTED` / `ETAG_MISMATCH`, the current etag in the metadata;
//! - a request id used before for another command: `FAILED_PRECONDITION` /
//!   `REQUEST_ID_REUSED`;
//! - a commit over the event log's limit: `INVALID_ARGUMENT` / `COMMIT_TOO_LARGE`;
//! - the event log or a read model unreachable: `UNAVAILABLE` / `BACKEND_UNAVAILABLE`;
//! - a command whose events would be about a forgotten participant:
//!   `FAILED_PRECONDITION` / `PARTICIPANT_FORGOTTEN`; the key store unreachable:
//!   `UNAVAILABLE` / `BACKEND_UNAVAILABLE`;
//! - an unreadable log, an unsafe stream or an aggregate id that cannot be a subject
//!   (ids are checked at the edge first): `INTERNAL`, the only real internal faults.

use circle_eventstore::{ExecuteError, SealError, StoreError};
use circle_grpc::ApiError;
use tonic::Code;

/// What a client sees for an error of the event log.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict { .. } => concurrent_modification(),
        StoreError::Unavailable(reason) => {
            tracing::warn!(%reason, "event log unavailable");
            ApiError::unavailable("the event log")
        }
        StoreError::TooLarge { size, limit } => ApiError::new(
            Code::InvalidArgument,
            "COMMIT_TOO_LARGE",
            format!(
                "the change is {size} bytes, over the limit of {limit} bytes; send less at once"
            ),
        ),
        StoreError::UnsafeStream { .. } | StoreError::Corrupt { .. } | StoreError::Mismatch(_) => {
            tracing::error!(%error, "event log error");
            ApiError::internal()
        }
    }
}

/// What a client sees for a command that did not run; `refused` is the service's
/// table for its own refusals.
pub fn execute_error<E>(error: ExecuteError<E>, refused: impl FnOnce(E) -> ApiError) -> ApiError {
    match error {
        ExecuteError::Rejected(refusal) => refused(refusal),
        ExecuteError::EtagMismatch { current } => ApiError::new(
            Code::Aborted,
            "ETAG_MISMATCH",
            "the record changed since the given etag; read it again",
        )
        .with_metadata("current_etag", current.to_string()),
        ExecuteError::RequestIdReused => ApiError::request_id_reused(),
        ExecuteError::TooMuchContention { .. } => concurrent_modification(),
        ExecuteError::Store(error) => store_error(error),
        ExecuteError::Sealing(error) => seal_error(&error),
        ExecuteError::InvalidKey(error) => {
            tracing::error!(%error, "an aggregate id passed the edge's checks but is no subject");
            ApiError::internal()
        }
    }
}

/// What a client sees when personal fields could not be sealed (or opened).
pub fn seal_error(error: &SealError) -> ApiError {
    match error {
        SealError::Forgotten => participant_forgotten(),
        SealError::Unavailable(reason) => {
            tracing::warn!(%reason, "key store unavailable");
            ApiError::unavailable("the key store")
        }
        SealError::Damaged(reason) => {
            tracing::error!(%reason, "key store cannot seal or open");
            ApiError::internal()
        }
    }
}

/// What a client sees when the key store cannot give the keys an answer is opened with
/// (or destroy one): as a commit it could not seal ([`seal_error`]).
pub fn key_store_error(error: circle_vault::store::StoreError) -> ApiError {
    seal_error(&error.into())
}

/// A command about a participant who has been forgotten: nothing more is kept for them.
pub fn participant_forgotten() -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        "PARTICIPANT_FORGOTTEN",
        "the participant has been forgotten; nothing more can be recorded about them",
    )
}

/// What a client sees when a read model cannot be queried: unavailable (retry) when
/// the database may recover, internal when a row does not read as the code expects
/// (a retry would fail the same way).
pub fn database_error(error: sqlx::Error) -> ApiError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => {
            tracing::error!(%error, "a read model row does not match the code");
            ApiError::internal()
        }
        error => {
            tracing::warn!(%error, "read model query failed");
            ApiError::unavailable("the read model")
        }
    }
}

fn concurrent_modification() -> ApiError {
    ApiError::new(
        Code::Aborted,
        "CONCURRENT_MODIFICATION",
        "the record changed concurrently; retry with the same request_id",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(error: ApiError) -> (Code, &'static str) {
        (error.code, error.reason)
    }

    #[test]
    fn every_store_and_command_error_has_one_code_and_reason() {
        let refused = |_: ()| ApiError::new(Code::FailedPrecondition, "DOMAIN", "refused");
        let cases: Vec<(ExecuteError<()>, (Code, &str))> = vec![
            (
                ExecuteError::Rejected(()),
                (Code::FailedPrecondition, "DOMAIN"),
            ),
            (
                ExecuteError::EtagMismatch { current: 7 },
                (Code::Aborted, "ETAG_MISMATCH"),
            ),
            (
                ExecuteError::RequestIdReused,
                (Code::FailedPrecondition, "REQUEST_ID_REUSED"),
            ),
            (
                ExecuteError::TooMuchContention { attempts: 32 },
                (Code::Aborted, "CONCURRENT_MODIFICATION"),
            ),
            (
                ExecuteError::Store(StoreError::Conflict { expected: 3 }),
                (Code::Aborted, "CONCURRENT_MODIFICATION"),
            ),
            (
                ExecuteError::Store(StoreError::Unavailable("down".into())),
                (Code::Unavailable, "BACKEND_UNAVAILABLE"),
            ),
            (
                ExecuteError::Sealing(SealError::Forgotten),
                (Code::FailedPrecondition, "PARTICIPANT_FORGOTTEN"),
            ),
            (
                ExecuteError::Sealing(SealError::Unavailable("down".into())),
                (Code::Unavailable, "BACKEND_UNAVAILABLE"),
            ),
            (
                ExecuteError::Sealing(SealError::Damaged("k1 retired".into())),
                (Code::Internal, "INTERNAL"),
            ),
            (
                ExecuteError::Store(StoreError::TooLarge { size: 2, limit: 1 }),
                (Code::InvalidArgument, "COMMIT_TOO_LARGE"),
            ),
            (
                ExecuteError::Store(StoreError::Corrupt {
                    sequence: 1,
                    reason: "bad".into(),
                }),
                (Code::Internal, "INTERNAL"),
            ),
        ];
        for (error, expected) in cases {
            let shown = format!("{error:?}");
            assert_eq!(seen(execute_error(error, refused)), expected, "{shown}");
        }
        let etag = execute_error::<()>(ExecuteError::EtagMismatch { current: 7 }, refused);
        assert_eq!(etag.metadata, vec![("current_etag", "7".to_owned())]);
    }

    #[test]
    fn a_read_model_that_cannot_be_queried_is_unavailable_not_internal() {
        assert_eq!(
            seen(database_error(sqlx::Error::PoolTimedOut)),
            (Code::Unavailable, "BACKEND_UNAVAILABLE")
        );
    }

    #[test]
    fn a_row_that_does_not_read_as_the_code_expects_is_internal_not_a_retry() {
        assert_eq!(
            seen(database_error(sqlx::Error::ColumnNotFound(
                "starts_at".into()
            ))),
            (Code::Internal, "INTERNAL")
        );
    }
}
