//! Runs session commands against the event log: the one path by which the API and the
//! schedule materialiser change a session. The repository does the plumbing every
//! command shares (key, etag precondition, retries, answering a retry); what is left
//! here is the session's own check that it belongs to the group in the name.

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, Executed, Repository};

use crate::domain::{DomainError, Session, SessionCommand, decide};

/// Why a session command was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the session belongs to another group")]
    WrongGroup,
}

/// Why a command did not run: refused, or the store could not run it.
pub type CommandError = ExecuteError<Refusal>;

pub type CommandResult = Result<Executed<Session>, CommandError>;

pub struct Commands {
    pub sessions: Repository<Session>,
    pub clock: Arc<dyn Clock>,
}

impl Commands {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            sessions: Repository::new(store, clock.clone()),
            clock,
        }
    }

    /// Runs a session command. With `place` (clinic, group), a session of another
    /// clinic or group is "not found": resource names carry both, and the caller was
    /// authorized for the clinic in the name.
    pub async fn session(
        &self,
        network: &str,
        place: Option<(&str, &str)>,
        session_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> CommandResult {
        let key = self.sessions.key(network, session_id)?;
        self.sessions
            .execute(&key, meta, etag, |snapshot, _| {
                if let (Some((clinic_id, group_id)), Some(details)) =
                    (place, snapshot.state.details.as_ref())
                    && (details.group_id != group_id || details.clinic_id != clinic_id)
                {
                    return Err(Refusal::WrongGroup);
                }
                Ok(decide(&snapshot.state, command.clone())?)
            })
            .await
    }
}
