//! Runs domain commands against the event log: the one path by which the API and the
//! process managers change an aggregate.

use std::sync::Arc;

use circle_eventstore::{
    AggregateKey, CommitMeta, EventStore, ExecuteError, Executed, Repository, Snapshot,
};

use crate::codec;
use crate::domain::{
    Clinic, ClinicCommand, DomainError, Event, Group, GroupCommand, GroupContext, Participant,
    ParticipantCommand, clinic, group, participant,
};
use circle_calendar::Clock;

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The caller's etag no longer matches the aggregate.
    #[error("the record changed since the given etag")]
    EtagMismatch { current: u64 },
    #[error("invalid aggregate id")]
    InvalidKey,
}

pub type CommandResult<A> = Result<Executed<A>, ExecuteError<CommandError>>;

pub struct Commands {
    pub clinics: Repository<Clinic>,
    pub groups: Repository<Group>,
    pub participants: Repository<Participant>,
    pub clock: Arc<dyn Clock>,
    pub offer_ttl: chrono::Duration,
}

fn key(
    network: &str,
    aggregate_type: &'static str,
    id: &str,
) -> Result<AggregateKey, ExecuteError<CommandError>> {
    AggregateKey::new(network, aggregate_type, id)
        .map_err(|_| ExecuteError::Rejected(CommandError::InvalidKey))
}

fn check_etag<A>(snapshot: &Snapshot<A>, etag: Option<u64>) -> Result<(), CommandError> {
    match etag {
        Some(expected) if expected != snapshot.version => Err(CommandError::EtagMismatch {
            current: snapshot.version,
        }),
        _ => Ok(()),
    }
}

fn encode(events: Vec<Event>) -> Vec<circle_eventstore::NewEvent> {
    events.iter().map(codec::encode).collect()
}

impl Commands {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>, offer_ttl: chrono::Duration) -> Self {
        Self {
            clinics: Repository::new(store.clone(), clock.clone()),
            groups: Repository::new(store.clone(), clock.clone()),
            participants: Repository::new(store, clock.clone()),
            clock,
            offer_ttl,
        }
    }

    pub async fn clinic(
        &self,
        network: &str,
        clinic_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: ClinicCommand,
    ) -> CommandResult<Clinic> {
        self.clinics
            .execute(&key(network, "clinic", clinic_id)?, meta, |snapshot, _| {
                check_etag(snapshot, etag)?;
                Ok(encode(clinic::decide(&snapshot.state, command.clone())?))
            })
            .await
    }

    /// Runs a group command. With `clinic_id`, a group of another clinic is "not found"
    /// (resource names carry the clinic).
    pub async fn group(
        &self,
        network: &str,
        clinic_id: Option<&str>,
        group_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: GroupCommand,
    ) -> CommandResult<Group> {
        // The decision's time is the commit's: read once per attempt, inside the
        // aggregate's lock.
        self.groups
            .execute(&key(network, "group", group_id)?, meta, |snapshot, at| {
                if let (Some(clinic_id), Some(details)) =
                    (clinic_id, snapshot.state.details.as_ref())
                    && details.clinic_id != clinic_id
                {
                    return Err(DomainError::GroupNotFound.into());
                }
                check_etag(snapshot, etag)?;
                Ok(encode(group::decide(
                    &snapshot.state,
                    command.clone(),
                    GroupContext {
                        now: at,
                        offer_ttl: self.offer_ttl,
                    },
                )?))
            })
            .await
    }

    pub async fn participant(
        &self,
        network: &str,
        participant_id: &str,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: ParticipantCommand,
    ) -> CommandResult<Participant> {
        self.participants
            .execute(
                &key(network, "participant", participant_id)?,
                meta,
                |snapshot, _| {
                    check_etag(snapshot, etag)?;
                    Ok(encode(participant::decide(
                        &snapshot.state,
                        command.clone(),
                    )?))
                },
            )
            .await
    }

    pub async fn load_clinic(
        &self,
        network: &str,
        clinic_id: &str,
    ) -> Result<Clinic, ExecuteError<CommandError>> {
        Ok(self
            .clinics
            .load(&key(network, "clinic", clinic_id)?)
            .await?
            .state
            .clone())
    }

    pub async fn load_group(
        &self,
        network: &str,
        group_id: &str,
    ) -> Result<Arc<Snapshot<Group>>, ExecuteError<CommandError>> {
        Ok(self.groups.load(&key(network, "group", group_id)?).await?)
    }

    pub async fn load_participant(
        &self,
        network: &str,
        participant_id: &str,
    ) -> Result<Participant, ExecuteError<CommandError>> {
        Ok(self
            .participants
            .load(&key(network, "participant", participant_id)?)
            .await?
            .state
            .clone())
    }
}
