//! The application layer of the enrollment service: what the gRPC edge and the
//! process managers call. It takes typed inputs (resource names from `circle-names`,
//! checked fields) and a typed caller, decides access from the service's one table
//! (`access`), and answers with plain Rust values; errors are `ApiError` values,
//! mapped to gRPC once at the edge.
//!
//! `commands` runs every command RPC (and the process managers' steps): the access
//! rule first, before anything is loaded, then what the command needs (other
//! aggregates, read-model facts from `facts`), then the command through `aggregates`
//! (the repositories over the ENROLLMENT stream, seen only here); `errors` is the
//! domain's error table. `queries` answers every query RPC from the read model (schema
//! `enrollment`): the access rule first, before anything is looked up, then
//! read-your-writes on the client's consistency token, then the read. Both answer with
//! the same `views`: a command builds its view from the state its commit left, a query
//! reads it from the read model. A query that discloses participants' data (`audit`)
//! records them in the audit log before it answers; `ListDisclosures` reads the
//! accounting the services' audit logs make (`crate::disclosures`).

pub mod access;
mod aggregates;
pub mod audit;
pub mod commands;
mod errors;
mod facts;
pub mod queries;
mod views;

use std::sync::Arc;
use std::time::Duration;

use circle_audit::{AuditLog, Purpose, Reading};
use circle_calendar::Clock;
use circle_grpc::{ApiError, Caller};
use circle_names::Id;
use circle_projection::ProjectionHandle;
use circle_vault::store::KeyStore;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::Code;

pub use commands::{
    ArchiveClinic, ArchiveGroup, Commands, ConsentAnswer, CreateClinic, CreateGroup,
    DischargeParticipant, EnrollParticipant, ForgetParticipant, HoldMembership, MembershipAnswer,
    NewGroup, OnMembership, ProfileChanges, RecordConsent, RegisterParticipant, RevokeConsent,
    Sent, TransferParticipant, UpdateClinic, UpdateGroup, UpdateParticipant, checked_profile,
    derived_id,
};
pub use queries::{
    DisclosureRange, DisclosureView, GroupsIn, GroupsWanted, OpenSeat, OpenSeatSearch, OpenSeats,
};
pub use views::{
    ClinicView, ConsentView, GroupView, MembershipEventView, MembershipView, ParticipantView,
};

/// What the queries need: the pool, the read model they wait on for read-your-writes,
/// how long they wait, the clock (a group's next session is computed at read time), the
/// audit log their disclosures are recorded in, the accounting `ListDisclosures`
/// reads, and the key store the answers are opened with.
pub struct Queries {
    pool: PgPool,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    accounting: crate::disclosures::Accounting,
    vault: KeyStore,
}

/// A page of a list: how many items, after how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    pub offset: i64,
}

impl Queries {
    pub fn new(
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        accounting: crate::disclosures::Accounting,
        vault: KeyStore,
    ) -> Self {
        Self {
            pool,
            read_model,
            read_your_writes_timeout,
            clock,
            audit,
            accounting,
            vault,
        }
    }

    /// Records in the audit log that `caller`'s `operation` on `resource` disclosed the
    /// data of `participants` (ids), for the `purpose` the request stated or the
    /// operation's default ([`audit::default_purpose`]). The answer is given only once
    /// this has succeeded.
    async fn disclose<I, S>(
        &self,
        caller: &Caller,
        operation: access::Operation,
        resource: &(dyn std::fmt::Display + Sync),
        purpose: Option<Purpose>,
        participants: I,
    ) -> Result<(), ApiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let default = audit::default_purpose(operation).unwrap_or(Purpose::Treatment);
        let reading = Reading::new(
            caller,
            operation.rpc(),
            resource.to_string(),
            purpose,
            default,
        );
        self.audit
            .record(&reading, self.clock.now(), participants)
            .await
    }

    /// A transaction that sees and reads only `network`'s rows (the tenant wall).
    async fn tenant(&self, network: &Id) -> Result<Transaction<'static, Postgres>, ApiError> {
        circle_service::tenant_transaction(&self.pool, network.as_str())
            .await
            .map_err(database_error)
    }

    /// Waits for the read model to include the write a client's consistency token
    /// names (none: no wait).
    async fn read_after(&self, consistency_token: &str) -> Result<(), ApiError> {
        circle_service::consistent_read(
            &self.read_model,
            self.read_your_writes_timeout,
            consistency_token,
        )
        .await
    }
}

/// A read model that cannot be queried: the one mapping every service shares.
pub(crate) use circle_service::errors::database_error;

pub(crate) fn not_found(reason: &'static str, what: &str) -> ApiError {
    ApiError::new(Code::NotFound, reason, format!("{what} not found"))
}
