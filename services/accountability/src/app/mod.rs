//! The application layer of the accountability service, which both the gRPC edge and
//! the process managers call. `access` is the service's one access table (every RPC,
//! and the process managers' own steps); `commands` runs every command, `queries`
//! answers every query (board, timeline, at-risk list, the group feed) from the read
//! models, filtered through `domain::visibility` for the viewer asking. Each checks its
//! rule first, then resolves what it needs: aggregates through `aggregates` (the
//! repository runner, private to this layer), roster facts through `facts`. Inputs are
//! typed names (`circle_names`) and checked values, answers plain structs, errors
//! `ApiError`s (`errors` maps the domain's refusals); the edge translates protobuf and
//! nothing else.
//!
//! Personal text is sealed everywhere at rest (`crate::personal`); this layer is the
//! only place it is opened: each answer (a command's, a query's, each page of the
//! feed) with one `circle_vault::Opener` for the participants it shows, fetched from
//! the key store when the answer is made.

pub mod access;
mod aggregates;
pub mod audit;
pub mod commands;
mod errors;
mod facts;
pub mod integration;
pub mod queries;

use std::sync::Arc;
use std::time::Duration;

use circle_audit::{AuditLog, Purpose, Reading};
use circle_calendar::Clock;
use circle_grpc::host::Shutdown;
use circle_grpc::{ApiError, Caller};
use circle_projection::ProjectionHandle;
use circle_vault::Opener;
use circle_vault::store::KeyStore;
use sqlx::{PgPool, Postgres, Transaction};

pub use access::Operation;
pub use commands::Commands;
use facts::Facts;

/// What the queries need: the read models, how long a read waits for the caller's own
/// write, the service's clock, the shutdown signal that ends open feeds, the audit log
/// every read that shows a participant's data is recorded in, and the key store the
/// answers are opened with.
#[derive(Clone)]
pub struct Queries {
    pool: PgPool,
    facts: Facts,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Open feeds end when shutdown starts, so they never hold up the drain.
    shutdown: Shutdown,
    audit: AuditLog,
    vault: KeyStore,
    /// Where the read model and the roster have got to (in that order), polled once
    /// for every open feed of this process: a feed reads only when one has moved.
    watermarks: circle_projection::Checkpoints,
    /// The fewest contributors a week of a group's measure trend needs to be shown.
    trend_min_members: u32,
    /// The integration stream `WatchIntegrationEvents` reads.
    integration: Option<integration::IntegrationFeed>,
}

impl Queries {
    pub fn new(
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
        clock: Arc<dyn Clock>,
        shutdown: Shutdown,
        audit: AuditLog,
        vault: KeyStore,
    ) -> Self {
        let watermarks = circle_projection::watch_checkpoints(
            pool.clone(),
            vec![
                (
                    crate::read_model::SCHEMA.to_owned(),
                    circle_projection::Projection::name(&crate::read_model::ReadModel).to_owned(),
                ),
                (
                    crate::roster::SCHEMA.to_owned(),
                    circle_projection::Projection::name(&crate::roster::Roster).to_owned(),
                ),
            ],
            Duration::from_millis(250),
        );
        Self {
            facts: Facts::new(pool.clone()),
            pool,
            watermarks,
            read_model,
            read_your_writes_timeout,
            clock,
            shutdown,
            audit,
            vault,
            trend_min_members: circle_config::DEFAULT_GROUP_TREND_MIN_MEMBERS,
            integration: None,
        }
    }

    /// The integration stream `WatchIntegrationEvents` reads (without one, it answers
    /// UNAVAILABLE).
    pub fn with_integration(mut self, feed: integration::IntegrationFeed) -> Self {
        self.integration = Some(feed);
        self
    }

    /// The fewest contributors a week of a group's measure trend needs
    /// (`accountability.group_trend_min_members`).
    pub fn with_group_trend_min_members(mut self, members: u32) -> Self {
        self.trend_min_members = members;
        self
    }

    /// The opening keys of the participants one answer (or one page of the feed)
    /// shows, in one query.
    async fn opener<I, S>(&self, network: &str, participants: I) -> Result<Opener, ApiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.vault
            .opener(network, participants)
            .await
            .map_err(circle_service::errors::key_store_error)
    }

    /// `caller`'s `operation` on `resource`, as the audit log records it: for the
    /// `purpose` the request stated, or the operation's default
    /// ([`audit::default_purpose`]).
    fn reading(
        caller: &Caller,
        operation: Operation,
        resource: String,
        purpose: Option<Purpose>,
    ) -> Reading {
        let default = audit::default_purpose(operation).unwrap_or(Purpose::Treatment);
        Reading::new(caller, operation.rpc(), resource, purpose, default)
    }

    /// Records that `reading`'s answer shows the data of `participants` (ids); the
    /// answer is given only once this has succeeded.
    async fn disclose<I, S>(&self, reading: &Reading, participants: I) -> Result<(), ApiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.audit
            .record(reading, self.clock.now(), participants)
            .await
    }

    /// A transaction that sees only `network`'s rows (the tenant wall); each read runs
    /// in one of its own.
    async fn tenant(&self, network: &str) -> Result<Transaction<'static, Postgres>, ApiError> {
        tenant(&self.pool, network).await
    }

    /// Waits until the read model has the write a consistency token names (any state
    /// for an empty token).
    async fn consistent_read(&self, token: &str) -> Result<(), ApiError> {
        circle_service::consistent_read(&self.read_model, self.read_your_writes_timeout, token)
            .await
    }
}

/// What ends an open stream (the group feed, the integration events) whose token has
/// expired: the client reconnects with a new one and resumes.
pub(crate) fn stream_token_expired() -> ApiError {
    ApiError::new(
        tonic::Code::Unauthenticated,
        "TOKEN_EXPIRED",
        "the token that opened this stream has expired; reconnect with a new one and resume \
         after the last position received",
    )
}

/// What ends an open stream at shutdown (a graceful drain waits for every open call):
/// the client reconnects and resumes.
pub(crate) fn stream_shutting_down() -> ApiError {
    ApiError::new(
        tonic::Code::Unavailable,
        "SHUTTING_DOWN",
        "the service is shutting down; reconnect and resume after the last position received",
    )
}

/// A transaction of `pool` that sees and writes only `network`'s rows.
async fn tenant(pool: &PgPool, network: &str) -> Result<Transaction<'static, Postgres>, ApiError> {
    circle_service::tenant_transaction(pool, network)
        .await
        .map_err(database_error)
}

/// A read model that cannot be queried: the one mapping every service shares.
pub(crate) use circle_service::errors::database_error;
