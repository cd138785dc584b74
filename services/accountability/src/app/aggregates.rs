//! The repository runner of the application layer: the one path by which a command
//! (of the API or a process manager) loads or changes a journal, a partnership or a
//! clinic's settings. The repository does the plumbing every command shares (key,
//! retries, answering a retry); each method here only names the aggregate and its pure
//! decision. Private to `app`: the edge and the process managers go through
//! `app::Commands`.
//!
//! Every repository seals what it appends with the key store (`crate::personal` names
//! the fields and subjects: a journal's owner's key, and no commit at all for a
//! forgotten participant; the partnerships' and settings' events hold nothing personal,
//! so nothing is sealed or asked there). The states the repositories hold carry the
//! sealed text.

use std::borrow::Cow;
use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, Executed, Repository};
use circle_vault::store::KeyStore;
use circle_vault::{Opener, field};

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
    pub(super) fn new(store: EventStore, clock: Arc<dyn Clock>, vault: &KeyStore) -> Self {
        Self {
            journals: Repository::new(store.clone(), clock.clone())
                .sealed_by(Arc::new(vault.clone())),
            partnerships: Repository::new(store.clone(), clock.clone())
                .sealed_by(Arc::new(vault.clone())),
            settings: Repository::new(store, clock).sealed_by(Arc::new(vault.clone())),
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

    /// A journal command decided on the journal with the texts it compares opened by
    /// `opener` (the owner's key): a goal revision that leaves the text as it is
    /// changes nothing, which only the plaintext shows.
    pub(super) async fn journal_opened(
        &self,
        network: &str,
        participant_id: &str,
        meta: &CommitMeta,
        command: JournalCommand,
        opener: &Opener,
    ) -> CommandResult<Journal> {
        let key = self.journals.key(network, participant_id)?;
        self.journals
            .execute(&key, meta, None, |snapshot, _| {
                let state = opened_for(&snapshot.state, &command, participant_id, opener);
                journal::decide(&state, command.clone())
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

/// The journal `command` is decided on, with the one text its decision compares opened:
/// the revised goal's (a clone of the journal then; as it is otherwise).
fn opened_for<'a>(
    state: &'a Journal,
    command: &JournalCommand,
    participant_id: &str,
    opener: &Opener,
) -> Cow<'a, Journal> {
    let JournalCommand::ReviseGoal { goal_id, .. } = command else {
        return Cow::Borrowed(state);
    };
    let Some(goal) = state.goals.get(goal_id) else {
        return Cow::Borrowed(state);
    };
    let text = opener.open(participant_id, field::GOAL, &goal.text);
    let mut opened = state.clone();
    if let Some(goal) = opened.goals.get_mut(goal_id) {
        goal.text = text;
    }
    Cow::Owned(opened)
}
