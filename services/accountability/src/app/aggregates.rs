//! The repository runner of the application layer: the one path by which a command
//! (of the API or a process manager) loads or changes a journal, a partnership or a
//! clinic's settings. The repository does the plumbing every command shares (key,
//! retries, answering a retry); each method here only names the aggregate and its pure
//! decision. Private to `app`: the edge and the process managers go through
//! `app::Commands`.

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, Executed, Repository};

use crate::domain::DomainError;
use crate::domain::journal::{self, Journal, JournalCommand};
use crate::domain::partnership::{self, Partnership, PartnershipCommand};
use crate::domain::settings::{self, ClinicSettings, QuietHours, SettingsCommand};

/// Why a command did not run: the domain refused it, or the store could not run it.
pub(super) type CommandError = ExecuteError<DomainError>;

pub(super) type CommandResult<A> = Result<Executed<A>, CommandError>;

pub(super) struct Aggregates {
    journals: Repository<Journal>,
    partnerships: Repository<Partnership>,
    settings: Repository<ClinicSettings>,
}

/// A partnership's id: stable for a group and a pair, whoever proposed.
pub(super) fn partnership_id(network: &str, group_id: &str, first: &str, second: &str) -> String {
    let (a, b) = if first <= second {
        (first, second)
    } else {
        (second, first)
    };
    circle_names::Id::derived(&format!("{network}/{group_id}/{a}/{b}")).into_string()
}

impl Aggregates {
    pub(super) fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            journals: Repository::new(store.clone(), clock.clone()),
            partnerships: Repository::new(store.clone(), clock.clone()),
            settings: Repository::new(store, clock),
        }
    }

    pub(super) async fn journal(
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

    pub(super) async fn partnership(
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

    pub(super) async fn quiet_hours(
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

    pub(super) async fn load_journal(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Journal, CommandError> {
        let key = self.journals.key(network, participant_id)?;
        Ok(self.journals.load(&key).await?.state.clone())
    }

    pub(super) async fn load_partnership(
        &self,
        network: &str,
        partnership_id: &str,
    ) -> Result<Partnership, CommandError> {
        let key = self.partnerships.key(network, partnership_id)?;
        Ok(self.partnerships.load(&key).await?.state.clone())
    }
}
