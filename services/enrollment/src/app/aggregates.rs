//! Runs domain commands against the event log: the one path by which an aggregate
//! changes (the application's commands and its process-manager steps alike). The
//! repository does the plumbing every command shares (key, etag precondition, retries,
//! answering a retry); what is left here is enrollment's own: the group's clinic check,
//! the offer lifetime, and the decision's time, which is the time recorded on the
//! commit.
//!
//! Every repository seals each commit's personal fields with the participants' data
//! keys (`circle_vault`'s key store; which fields: `domain::personal`) before it is
//! appended, so the log and the states loaded here hold sealed text: whoever answers
//! from a state opens it first (`Commands::opened`). A commit about a forgotten
//! participant that would carry personal text cannot be sealed and is refused
//! (`PARTICIPANT_FORGOTTEN`).

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, Executed, Repository, Snapshot};
use circle_vault::store::KeyStore;

use crate::domain::{
    Clinic, ClinicCommand, DomainError, Group, GroupCommand, GroupContext, Participant,
    ParticipantCommand, clinic, group, participant,
};

/// Why a command did not run: the domain refused it, or the store could not run it.
pub(crate) type CommandError = ExecuteError<DomainError>;

pub(super) type CommandResult<A> = Result<Executed<A>, CommandError>;

pub(super) struct Aggregates {
    clinics: Repository<Clinic>,
    groups: Repository<Group>,
    participants: Repository<Participant>,
    offer_ttl: chrono::Duration,
}

impl Aggregates {
    pub(super) fn new(
        store: EventStore,
        clock: Arc<dyn Clock>,
        vault: &KeyStore,
        offer_ttl: chrono::Duration,
    ) -> Self {
        // Clinics' events hold nothing personal; sealed all the same, so a personal
        // field added to them later is sealed without anyone remembering to.
        Self {
            clinics: Repository::new(store.clone(), clock.clone())
                .sealed_by(Arc::new(vault.clone())),
            groups: Repository::new(store.clone(), clock.clone())
                .sealed_by(Arc::new(vault.clone())),
            participants: Repository::new(store, clock).sealed_by(Arc::new(vault.clone())),
            offer_ttl,
        }
    }

    pub(super) async fn clinic(
        &self,
        network: &str,
        clinic_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: ClinicCommand,
    ) -> CommandResult<Clinic> {
        let key = self.clinics.key(network, clinic_id)?;
        self.clinics
            .execute(&key, meta, etag, |snapshot, _| {
                clinic::decide(&snapshot.state, command.clone())
            })
            .await
    }

    /// Runs a group command. With `clinic_id`, a group of another clinic is "not found"
    /// (resource names carry the clinic).
    pub(super) async fn group(
        &self,
        network: &str,
        clinic_id: Option<&str>,
        group_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: GroupCommand,
    ) -> CommandResult<Group> {
        let key = self.groups.key(network, group_id)?;
        // The decision's time is the commit's: read once per attempt, inside the
        // aggregate's lock.
        self.groups
            .execute(&key, meta, etag, |snapshot, at| {
                if let (Some(clinic_id), Some(details)) =
                    (clinic_id, snapshot.state.details.as_ref())
                    && details.clinic_id != clinic_id
                {
                    return Err(DomainError::GroupNotFound);
                }
                group::decide(
                    &snapshot.state,
                    command.clone(),
                    GroupContext {
                        now: at,
                        offer_ttl: self.offer_ttl,
                    },
                )
            })
            .await
    }

    pub(super) async fn participant(
        &self,
        network: &str,
        participant_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: ParticipantCommand,
    ) -> CommandResult<Participant> {
        let key = self.participants.key(network, participant_id)?;
        self.participants
            .execute(&key, meta, etag, |snapshot, at| {
                participant::decide(&snapshot.state, command.clone(), at)
            })
            .await
    }

    pub(super) async fn load_clinic(
        &self,
        network: &str,
        clinic_id: &str,
    ) -> Result<Clinic, CommandError> {
        let key = self.clinics.key(network, clinic_id)?;
        Ok(self.clinics.load(&key).await?.state.clone())
    }

    pub(super) async fn load_group(
        &self,
        network: &str,
        group_id: &str,
    ) -> Result<Arc<Snapshot<Group>>, CommandError> {
        let key = self.groups.key(network, group_id)?;
        Ok(self.groups.load(&key).await?)
    }

    pub(super) async fn load_participant(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Participant, CommandError> {
        Ok(self
            .participant_snapshot(network, participant_id)
            .await?
            .state
            .clone())
    }

    /// The participant's record with the request ids of the commands that made it.
    pub(super) async fn participant_snapshot(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Arc<Snapshot<Participant>>, CommandError> {
        let key = self.participants.key(network, participant_id)?;
        Ok(self.participants.load(&key).await?)
    }
}
