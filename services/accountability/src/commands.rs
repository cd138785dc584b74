//! Runs accountability commands against the event log: the one path by which the API
//! and the process managers change a journal, a partnership or a clinic's settings.
//! The repository does the plumbing every command shares (key, retries, answering a
//! retry); each method here only names the aggregate and its pure decision.

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, Executed, Repository};

use crate::domain::DomainError;
use crate::domain::journal::{self, Journal, JournalCommand};
use crate::domain::partnership::{self, Partnership, PartnershipCommand};
use crate::domain::settings::{self, ClinicSettings, QuietHours, SettingsCommand};

/// Why a command did not run: the domain refused it, or the store could not run it.
pub type CommandError = ExecuteError<DomainError>;

pub type CommandResult<A> = Result<Executed<A>, CommandError>;

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

    pub async fn journal(
        &self,
        network: &str,
        participant_id: &str,
        meta: &CommitMeta,
        command: JournalCommand,
    ) -> CommandResult<Journal> {
        let key = self.journals.key(network, participant_id)?;
        self.journals
            .execute(&key, meta, None, |snapshot, _| {
                journal::decide(&snapshot.state, command.clone())
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
        let key = self.partnerships.key(network, partnership_id)?;
        self.partnerships
            .execute(&key, meta, None, |snapshot, _| {
                partnership::decide(&snapshot.state, command.clone())
            })
            .await
    }

    pub async fn quiet_hours(
        &self,
        network: &str,
        clinic_id: &str,
        meta: &CommitMeta,
        quiet_hours: QuietHours,
    ) -> CommandResult<ClinicSettings> {
        let key = self.settings.key(network, clinic_id)?;
        self.settings
            .execute(&key, meta, None, |snapshot, _| {
                Ok(settings::decide(
                    &snapshot.state,
                    SettingsCommand::SetQuietHours(quiet_hours),
                ))
            })
            .await
    }

    pub async fn load_journal(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Journal, CommandError> {
        let key = self.journals.key(network, participant_id)?;
        Ok(self.journals.load(&key).await?.state.clone())
    }

    pub async fn load_partnership(
        &self,
        network: &str,
        partnership_id: &str,
    ) -> Result<Partnership, CommandError> {
        let key = self.partnerships.key(network, partnership_id)?;
        Ok(self.partnerships.load(&key).await?.state.clone())
    }
}
