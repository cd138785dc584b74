//! The command side: one function per command RPC on `Commands`, and the steps only the
//! service's own process managers take. Each checks its row of the access table with
//! what its names show before anything is loaded (a participant's home clinic, known
//! only from their record, is checked again once loaded), then resolves what the
//! command needs (other aggregates, read-model facts), records who sent it
//! (`circle_service::commit_meta`, with the request id and fingerprint the edge read)
//! and runs it through the aggregates. The answer is built from the commit, so a retry
//! gets the original answer, and is the view a query answers with (`views`). Errors are `ApiError`s (the domain's table in `errors`).
//!
//! The aggregates' states hold personal text sealed (`aggregates`): a command opens
//! what a check of its own needs in clear (the current profile a change is merged
//! into) and the view it answers with (`Commands::opened`), retries answered from the
//! stored commit included, with the keys of the participants it shows, fetched for
//! that one answer.
//!
//! One file per kind of record: `clinics`, `groups`, `participants` (profile, home
//! clinic, consents), `memberships` (enrolling, offers, hold, discharge, transfer), and
//! `steps`, the process managers' own.

mod clinics;
mod groups;
mod memberships;
mod participants;
mod steps;

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore};
use circle_grpc::{ApiError, Caller, Target};
use circle_names::Id;
use circle_service::{Fingerprint, commit_meta};
use circle_vault::Personal;
use circle_vault::store::KeyStore;
use sqlx::PgPool;

use super::aggregates::{Aggregates, CommandError};
use crate::domain::Time;
use circle_service::errors::key_store_error;

pub use clinics::{ArchiveClinic, CreateClinic, UpdateClinic};
pub use groups::{ArchiveGroup, CreateGroup, NewGroup, UpdateGroup};
pub use memberships::{
    DischargeParticipant, EnrollParticipant, HoldMembership, MembershipAnswer, OnMembership,
    TransferParticipant,
};
pub use participants::{
    ConsentAnswer, ForgetParticipant, ProfileChanges, RecordConsent, RegisterParticipant,
    RevokeConsent, UpdateParticipant, checked_profile,
};

/// What the commands need: the aggregates (over the event store, sealing with the key
/// store), the pool (for the read-model facts a command checks), the clock, and the key
/// store (answers are opened with it; forgetting destroys a key in it).
pub struct Commands {
    aggregates: Aggregates,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    vault: KeyStore,
}

/// How a command was sent: its request id (a retry carries the same) and the
/// fingerprint of its content, which a retry must match.
#[derive(Debug, Clone)]
pub struct Sent {
    pub request_id: String,
    pub fingerprint: Fingerprint,
}

impl Sent {
    fn meta(self, caller: &Caller) -> CommitMeta {
        commit_meta(caller, self.request_id, self.fingerprint)
    }
}

/// Why a process-manager step did not run: refused by the access table (a bug: only
/// the service's process managers call steps), or the command's own error.
#[derive(Debug)]
pub(crate) enum StepError {
    Refused(ApiError),
    Command(CommandError),
}

impl Commands {
    pub fn new(
        store: EventStore,
        pool: PgPool,
        clock: Arc<dyn Clock>,
        vault: KeyStore,
        offer_ttl: chrono::Duration,
    ) -> Self {
        Self {
            aggregates: Aggregates::new(store, clock.clone(), &vault, offer_ttl),
            pool,
            clock,
            vault,
        }
    }

    /// The service's clock (a schedule's dates are checked against today).
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// `view` with its personal fields opened for the answer (`[redacted]` for a
    /// forgotten participant); the view names whose fields they are.
    async fn opened<T: Personal>(&self, network: &str, mut view: T) -> Result<T, ApiError> {
        self.vault
            .open_all(network, "", std::slice::from_mut(&mut view))
            .await
            .map_err(key_store_error)?;
        Ok(view)
    }
}

fn clinics<'a>(clinics: &'a [&'a str]) -> Target<'a> {
    Target {
        clinics,
        ..Target::default()
    }
}

/// An id derived from what a request names (`seed`, usually with its request id), so a
/// retry of a create without an id lands on the same record.
pub fn derived_id(network: &str, field: &str, seed: &str) -> Id {
    Id::derived(&format!("{network}/{field}/{seed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A create retried without an id must land on the record the first attempt made:
    /// the derivation never changes.
    #[test]
    fn a_derived_id_is_the_same_for_the_same_request() {
        let id = derived_id("acme", "clinic_id", "r-1");
        let expected =
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"acme/clinic_id/r-1").to_string();
        assert_eq!(id.as_str(), expected);
        assert_eq!(derived_id("acme", "clinic_id", "r-1"), id);
        assert_ne!(
            derived_id("acme", "group_id", "r-1"),
            derived_id("acme", "clinic_id", "r-1")
        );
    }
}
