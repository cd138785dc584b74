//! Runs session commands against the event log: the one path by which the API and the
//! schedule materialiser change a session.

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{AggregateKey, CommitMeta, EventStore, ExecuteError, Executed, Repository};

use crate::codec;
use crate::domain::{DomainError, Session, SessionCommand, decide};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the session changed since the given etag")]
    EtagMismatch { current: u64 },
    #[error("the session belongs to another group")]
    WrongGroup,
    #[error("invalid aggregate id")]
    InvalidKey,
}

pub type CommandResult = Result<Executed<Session>, ExecuteError<CommandError>>;

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
        let key = AggregateKey::new(network, "session", session_id)
            .map_err(|_| ExecuteError::Rejected(CommandError::InvalidKey))?;
        self.sessions
            .execute(&key, meta, |snapshot, _| {
                if let (Some((clinic_id, group_id)), Some(details)) =
                    (place, snapshot.state.details.as_ref())
                    && (details.group_id != group_id || details.clinic_id != clinic_id)
                {
                    return Err(CommandError::WrongGroup);
                }
                if let Some(expected) = etag
                    && expected != snapshot.version
                {
                    return Err(CommandError::EtagMismatch {
                        current: snapshot.version,
                    });
                }
                let events = decide(&snapshot.state, command.clone())?;
                Ok(events.iter().map(codec::encode).collect())
            })
            .await
    }
}
