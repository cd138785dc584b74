//! The application layer of the accountability service, which the gRPC edge calls
//! (and the process managers, once the command side moves here). `access` is the
//! service's one access table; `queries`
//! answers every query (board, timeline, at-risk list, the group feed) from the read
//! models, filtered through `domain::visibility` for the viewer asking. Inputs are
//! typed names (`circle_names`) and checked values, answers plain structs, errors
//! `ApiError`s; the edge translates protobuf and nothing else.

pub mod access;
mod facts;
pub mod queries;

use std::sync::Arc;
use std::time::Duration;

use circle_calendar::Clock;
use circle_grpc::ApiError;
use circle_grpc::host::Shutdown;
use circle_projection::ProjectionHandle;
use sqlx::PgPool;

pub use access::Operation;

/// What the queries need: the read models, how long a read waits for the caller's own
/// write, the service's clock, and the shutdown signal that ends open feeds.
#[derive(Clone)]
pub struct Queries {
    pool: PgPool,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Open feeds end when shutdown starts, so they never hold up the drain.
    shutdown: Shutdown,
}

impl Queries {
    pub fn new(
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
        clock: Arc<dyn Clock>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            pool,
            read_model,
            read_your_writes_timeout,
            clock,
            shutdown,
        }
    }

    /// Waits until the read model has the write a consistency token names (any state
    /// for an empty token).
    async fn consistent_read(&self, token: &str) -> Result<(), ApiError> {
        circle_service::consistent_read(&self.read_model, self.read_your_writes_timeout, token)
            .await
    }
}

/// A read model that cannot be queried: the one mapping every service shares.
pub(crate) use circle_service::errors::database_error;
