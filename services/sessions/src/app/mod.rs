//! The application layer of the sessions service: what a caller may do, what a
//! command changes and what a query reads, whoever carried the request (the gRPC edge,
//! or the materialiser through its own steps). `access.rs` is the service's access
//! table (a row per RPC, and per materialiser step); `commands.rs` runs commands and
//! the materialiser's steps (over `aggregates.rs`, the event log, with `facts.rs`, what the
//! roster projection knows, and `errors.rs`, the table of the domain's refusals);
//! `queries.rs` answers queries from the read model and the roster projection;
//! `personal.rs` opens the personal text answers show (everything personal is sealed at
//! rest: plaintext exists only inside one request). Inputs are application types (typed
//! resource names, checked fields), answers plain structs, errors [`ApiError`] values;
//! protobuf stays at the edge.

pub mod access;
mod aggregates;
pub mod audit;
pub mod commands;
mod errors;
mod facts;
mod personal;
pub mod queries;

use std::sync::Arc;
use std::time::Duration;

use circle_audit::{AuditLog, Purpose, Reading};
use circle_calendar::Clock;
use circle_grpc::{ApiError, Caller};
use circle_names::Id;
use circle_projection::ProjectionHandle;
use circle_vault::store::KeyStore;
use sqlx::{PgPool, Postgres, Transaction};

pub use commands::{Attendance, CheckIn, Command, Commands, MemberNote, Move, NewSession, Written};
pub use queries::{
    AttendanceHistory, AttendanceRecord, BillingLine, BillingPeriod, NoteView, RosterLine,
    SessionFilter, SessionSheet, SessionView, UnsignedItem,
};

/// Settings of the billing export.
#[derive(Debug, Clone)]
pub struct Billing {
    pub code: String,
    pub payer_cap: u32,
}

/// A transaction that sees and writes only `network`'s rows (the tenant wall): every
/// read of the read models runs in one.
async fn tenant(pool: &PgPool, network: &Id) -> Result<Transaction<'static, Postgres>, ApiError> {
    circle_service::tenant_transaction(pool, network.as_str())
        .await
        .map_err(database_error)
}

/// What the queries need: the pool, the read model's handle (to read a caller's own
/// write), how long to wait for it, the clock, the billing settings, the audit log
/// the reads that disclose participants' data are recorded in, and the key store the
/// answers' personal text is opened with.
pub struct Queries {
    pool: PgPool,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
    clock: Arc<dyn Clock>,
    billing: Billing,
    audit: AuditLog,
    vault: KeyStore,
}

impl Queries {
    pub fn new(
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
        clock: Arc<dyn Clock>,
        billing: Billing,
        audit: AuditLog,
        vault: KeyStore,
    ) -> Self {
        Self {
            pool,
            read_model,
            read_your_writes_timeout,
            clock,
            billing,
            audit,
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

    /// The input's parts once it is whole, after waiting for the write its
    /// consistency token names.
    async fn read_after<R, F>(&self, input: Input<R, F>) -> Result<(R, F), ApiError> {
        let fields = input.fields?;
        let resource = input.resource.ok_or_else(ApiError::internal)?;
        circle_service::consistent_read(
            &self.read_model,
            self.read_your_writes_timeout,
            &input.consistency_token,
        )
        .await?;
        Ok((resource, fields))
    }
}

/// A query as the edge read it from a request: the resource it is about (`None` when
/// its name did not parse), the rest of its input or every bad field (the name's
/// included), the consistency token of a write to read after (empty: none) and the
/// purpose it stated.
///
/// The application checks the caller against the access table on the resource first,
/// so a caller who may not run the query is told so whatever else is wrong with the
/// request; only then are bad fields reported.
#[derive(Debug)]
pub struct Input<R, F> {
    pub resource: Option<R>,
    pub fields: Result<F, ApiError>,
    pub consistency_token: String,
    /// The purpose the request stated (`circle-purpose`), for a read that discloses
    /// participants' data (a bad one is among the bad fields).
    pub purpose: Option<Purpose>,
}

/// A page of a list: at most `size` items after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    pub offset: i64,
}

/// A read model that cannot be queried: the one mapping every service shares.
pub(crate) use circle_service::errors::database_error;
