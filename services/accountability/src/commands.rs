//! Runs accountability commands against the event log: the one path by which the API
//! and the process managers change a journal, a partnership or a clinic's settings.

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{
    Aggregate, AggregateKey, CommitMeta, EventStore, ExecuteError, Executed, Repository,
};

use crate::codec::{self, ClinicSettings};
use crate::domain::journal::{self, Journal, JournalCommand};
use crate::domain::partnership::{self, Partnership, PartnershipCommand};
use crate::domain::{DomainError, Event};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("invalid aggregate id")]
    InvalidKey,
}

pub type CommandResult<A> = Result<Executed<A>, ExecuteError<CommandError>>;

pub struct Commands {
    pub journals: Repository<Journal>,
    pub partnerships: Repository<Partnership>,
    pub settings: Repository<ClinicSettings>,
    pub clock: Arc<dyn Clock>,
}

/// A partnership's id: stable for a group and a pair, whoever proposed.
pub fn partnership_id(network: &str, group_id: &str, first: &str, second: &str) -> String {
    let (a, b) = if first <= second {
        (first, second)
    } else {
        (second, first)
    };
    let seed = format!("{network}/{group_id}/{a}/{b}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
}

impl Commands {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            journals: Repository::new(store.clone(), clock.clone()),
            partnerships: Repository::new(store.clone(), clock.clone()),
            settings: Repository::new(store, clock.clone()),
            clock,
        }
    }

    async fn run<A: Aggregate>(
        &self,
        repository: &Repository<A>,
        network: &str,
        id: &str,
        meta: &CommitMeta,
        mut decide: impl FnMut(&A) -> Result<Vec<Event>, DomainError>,
    ) -> CommandResult<A> {
        let key = AggregateKey::new(network, A::TYPE, id)
            .map_err(|_| ExecuteError::Rejected(CommandError::InvalidKey))?;
        repository
            .execute(&key, meta, |snapshot, _| {
                Ok(decide(&snapshot.state)?.iter().map(codec::encode).collect())
            })
            .await
    }

    pub async fn journal(
        &self,
        network: &str,
        participant_id: &str,
        meta: &CommitMeta,
        command: JournalCommand,
    ) -> CommandResult<Journal> {
        self.run(&self.journals, network, participant_id, meta, |state| {
            journal::decide(state, command.clone())
        })
        .await
    }

    pub async fn partnership(
        &self,
        network: &str,
        partnership_id: &str,
        meta: &CommitMeta,
        command: PartnershipCommand,
    ) -> CommandResult<Partnership> {
        self.run(&self.partnerships, network, partnership_id, meta, |state| {
            partnership::decide(state, command.clone())
        })
        .await
    }

    pub async fn quiet_hours(
        &self,
        network: &str,
        clinic_id: &str,
        meta: &CommitMeta,
        start_minute: u32,
        end_minute: u32,
    ) -> CommandResult<ClinicSettings> {
        self.run(&self.settings, network, clinic_id, meta, |state| {
            if state.quiet_hours == Some((start_minute, end_minute)) {
                Ok(Vec::new())
            } else {
                Ok(vec![Event::QuietHoursSet {
                    start_minute,
                    end_minute,
                }])
            }
        })
        .await
    }

    pub async fn load_journal(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Journal, ExecuteError<CommandError>> {
        let key = AggregateKey::new(network, Journal::TYPE, participant_id)
            .map_err(|_| ExecuteError::Rejected(CommandError::InvalidKey))?;
        Ok(self.journals.load(&key).await?.state.clone())
    }

    pub async fn load_partnership(
        &self,
        network: &str,
        partnership_id: &str,
    ) -> Result<Partnership, ExecuteError<CommandError>> {
        let key = AggregateKey::new(network, Partnership::TYPE, partnership_id)
            .map_err(|_| ExecuteError::Rejected(CommandError::InvalidKey))?;
        Ok(self.partnerships.load(&key).await?.state.clone())
    }
}
