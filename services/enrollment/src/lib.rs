//! The enrollment service: who is in which group. A library with a thin `main.rs`, so
//! tests and `circle dev` start it in-process on any port.
//!
//! Write side: gRPC command → pure `domain::*::decide` → one commit appended to the
//! ENROLLMENT stream (optimistic concurrency on the aggregate's subject). Read side:
//! the `enrollment-read-model` projection fills schema `enrollment`; queries read it,
//! waiting for a consistency token when one is given. Process managers (offer expiry,
//! transfers) run from the same stream, in schema `enrollment_process`.

pub mod api;
pub mod codec;
pub mod commands;
pub mod domain;
pub mod process;
pub mod read_model;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use circle_config::Config;
use circle_eventstore::{EventStore, StreamSpec};
use circle_grpc::host::{Host, Shutdown};
use circle_projection::{ProjectionRunner, ProjectionSettings};
use circle_proto::enrollment::v1::enrollment_service_server::EnrollmentServiceServer;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

pub use circle_calendar::{Clock, ManualClock, SystemClock};

pub const SERVICE: &str = "enrollment";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(String),
    #[error("event log: {0}")]
    EventStore(#[from] circle_eventstore::StoreError),
    #[error("read model: {0}")]
    Projection(#[from] circle_projection::ApplyError),
    #[error(transparent)]
    Host(#[from] circle_grpc::host::HostError),
    #[error("gRPC server: {0}")]
    Server(String),
}

/// A started service: where it listens, and its tasks (which end after shutdown).
pub struct Running {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<Result<(), StartError>>,
}

pub fn stream_spec(config: &Config) -> StreamSpec {
    StreamSpec {
        name: config.stream_name(SERVICE),
        subject_root: config.subject_root(SERVICE),
        replicas: config.nats.replicas,
        duplicate_window: Duration::from_secs(config.nats.duplicate_window_secs),
    }
}

pub fn projection_settings(config: &Config) -> ProjectionSettings {
    ProjectionSettings {
        batch_size: config.projection.batch_size,
        ack_wait: Duration::from_secs(config.projection.ack_wait_secs),
        max_attempts: config.projection.max_attempts,
    }
}

/// `start_with_clock` on the system clock.
pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// Connects, provisions the stream and schemas, starts the projection, the process
/// managers and the gRPC server, and returns once the server is listening. Everything
/// stops when `shutdown` resolves: the server stops taking calls and drains, the
/// projections finish their batch.
pub async fn start_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let nats = async_nats::connect(&config.nats.url)
        .await
        .map_err(|error| StartError::Nats {
            url: config.nats.url.clone(),
            reason: error.to_string(),
        })?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&config.database.url)
        .await
        .map_err(|error| StartError::Database(error.to_string()))?;
    let store = EventStore::open(nats.clone(), stream_spec(config)).await?;
    let stream = store
        .jetstream()
        .get_stream(&store.spec().name)
        .await
        .map_err(|error| StartError::Nats {
            url: config.nats.url.clone(),
            reason: error.to_string(),
        })?;
    let settings = projection_settings(config);
    let commands = Arc::new(commands::Commands::new(
        store,
        clock,
        chrono::Duration::hours(i64::from(config.enrollment.seat_offer_hours)),
    ));
    let read_model = ProjectionRunner::new(
        Arc::new(read_model::ReadModel),
        pool.clone(),
        read_model::SCHEMA,
        stream.clone(),
        settings.clone(),
    )
    .await?;
    let offer_timers = ProjectionRunner::new(
        Arc::new(process::OfferTimers),
        pool.clone(),
        process::SCHEMA,
        stream.clone(),
        settings.clone(),
    )
    .await?;
    let transfers = ProjectionRunner::new(
        Arc::new(process::Transfers {
            commands: commands.clone(),
        }),
        pool.clone(),
        process::SCHEMA,
        stream,
        settings,
    )
    .await?;
    let api = api::EnrollmentApi::new(
        commands.clone(),
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
    );

    let shutdown = Shutdown::new(shutdown);
    let host = Host::bind(
        config.enrollment.listen,
        "circle.enrollment.v1.EnrollmentService",
        circle_proto::FILE_DESCRIPTOR_SET,
        nats,
        pool.clone(),
        shutdown.clone(),
    )
    .await?;
    let local_addr = host.local_addr;
    let background = vec![
        tokio::spawn(read_model.run(shutdown.signal())),
        tokio::spawn(offer_timers.run(shutdown.signal())),
        tokio::spawn(transfers.run(shutdown.signal())),
    ];
    let timers = tokio::spawn(process::fire_offer_timers(
        pool,
        commands,
        Duration::from_millis(config.enrollment.timer_poll_ms),
        shutdown.signal(),
    ));
    let task = tokio::spawn(async move {
        let served = host
            .serve(|router| router.add_service(EnrollmentServiceServer::new(api)))
            .await
            .map_err(|error| StartError::Server(error.to_string()));
        for runner in background {
            runner
                .await
                .map_err(|error| StartError::Server(error.to_string()))??;
        }
        timers
            .await
            .map_err(|error| StartError::Server(error.to_string()))?;
        served
    });
    tracing::info!(%local_addr, "enrollment service listening");
    Ok(Running { local_addr, task })
}

/// Runs until `shutdown`; for `main`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let running = start(&config, shutdown).await?;
    running
        .task
        .await
        .map_err(|error| StartError::Server(error.to_string()))?
}
