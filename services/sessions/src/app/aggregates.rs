//! Runs session commands against the event log: the one path by which the
//! application changes a session. The repository does the plumbing every command
//! shares (key, etag precondition, retries, answering a retry); what is left here is
//! the session's own check that it belongs to the group and clinic its name gives.
//! Every commit's personal fields are sealed by the key store before they are encoded
//! (`crate::domain::personal`), so the states this answers with carry sealed text: the
//! caller opens what it shows (`super::personal`).

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{AggregateKey, CommitMeta, EventStore, ExecuteError, Executed, Repository};
use circle_grpc::ApiError;
use circle_names::SessionName;
use circle_service::errors::store_error;
use circle_vault::store::KeyStore;
use tonic::Code;

use crate::domain::{DomainError, Session, SessionCommand, decide};

/// Why a session command was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the session belongs to another group")]
    WrongGroup,
}

/// Why a command did not run: refused, or the store could not run it.
pub(super) type CommandError = ExecuteError<Refusal>;

/// The session aggregates of the SESSIONS stream.
pub(super) struct Sessions {
    repository: Repository<Session>,
}

/// Whether a session is the one `name` gives: of its group and clinic.
fn in_place(session: &Session, name: &SessionName) -> bool {
    session.details.as_ref().is_none_or(|details| {
        name.group == details.group_id.as_str() && name.clinic == details.clinic_id.as_str()
    })
}

impl Sessions {
    pub(super) fn new(store: EventStore, clock: Arc<dyn Clock>, vault: KeyStore) -> Self {
        Self {
            repository: Repository::new(store, clock).sealed_by(Arc::new(vault)),
        }
    }

    /// The session `name` gives; one of another group or clinic is not found.
    pub(super) async fn load(&self, name: &SessionName) -> Result<Session, ApiError> {
        let key = AggregateKey::new(name.network.as_str(), "session", name.session.as_str())
            .map_err(|_| ApiError::internal())?;
        let snapshot = self.repository.load(&key).await.map_err(store_error)?;
        match &snapshot.state.details {
            Some(_) if in_place(&snapshot.state, name) => Ok(snapshot.state.clone()),
            _ => Err(ApiError::new(
                Code::NotFound,
                "SESSION_NOT_FOUND",
                format!("{name} not found"),
            )),
        }
    }

    /// Runs a command on the session `name` gives. A session of another clinic or
    /// group is "not found": names carry both, and the caller was checked against
    /// the clinic in the name.
    pub(super) async fn execute(
        &self,
        name: &SessionName,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> Result<Executed<Session>, CommandError> {
        let key = self
            .repository
            .key(name.network.as_str(), name.session.as_str())
            .map_err(ExecuteError::from)?;
        self.repository
            .execute(&key, meta, etag, |snapshot, _| {
                if !in_place(&snapshot.state, name) {
                    return Err(Refusal::WrongGroup);
                }
                Ok(decide(&snapshot.state, command.clone())?)
            })
            .await
    }
}
