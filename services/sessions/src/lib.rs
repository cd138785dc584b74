//! The sessions service: what happened in each session. A library with a thin
//! `main.rs`, so tests and `circle dev` start it in-process on any port.
//!
//! It learns about groups and members only from the ENROLLMENT stream (the
//! `sessions-roster` projection into schema `sessions_roster`), writes only its own
//! SESSIONS stream, and projects that into schema `sessions`. The materialiser turns
//! schedules into sessions.

pub mod api;
pub mod codec;
pub mod commands;
pub mod domain;
pub mod process;
pub mod read_model;
pub mod roster;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use circle_calendar::{Clock, SystemClock};
use circle_config::Config;
use circle_eventstore::{EventStore, StreamSpec};
use circle_grpc::host::{Host, Shutdown};
use circle_projection::{ProjectionRunner, ProjectionSettings};
use circle_proto::sessions::v1::sessions_service_server::SessionsServiceServer;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

pub const SERVICE: &str = "sessions";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(String),
    #[error("event log: {0}")]
    EventStore(#[from] circle_eventstore::StoreError),
    #[error("projection: {0}")]
    Projection(#[from] circle_projection::ApplyError),
    #[error("the enrollment stream {0} does not exist; start the enrollment service first")]
    NoEnrollmentStream(String),
    #[error(transparent)]
    Host(#[from] circle_grpc::host::HostError),
    #[error("gRPC server: {0}")]
    Server(String),
}

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

fn projection_settings(config: &Config) -> ProjectionSettings {
    ProjectionSettings {
        batch_size: config.projection.batch_size,
        ack_wait: Duration::from_secs(config.projection.ack_wait_secs),
        max_attempts: config.projection.max_attempts,
    }
}

pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// Connects, provisions the SESSIONS stream and the schemas, starts the roster and
/// read-model projections, the materialiser and the gRPC server; returns once the
/// server listens. Everything stops when `shutdown` resolves.
pub async fn start_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let nats_error = |error: &dyn std::fmt::Display| StartError::Nats {
        url: config.nats.url.clone(),
        reason: error.to_string(),
    };
    let nats = async_nats::connect(&config.nats.url)
        .await
        .map_err(|error| nats_error(&error))?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&config.database.url)
        .await
        .map_err(|error| StartError::Database(error.to_string()))?;
    let store = EventStore::open(nats.clone(), stream_spec(config)).await?;
    let sessions_stream = store
        .jetstream()
        .get_stream(&store.spec().name)
        .await
        .map_err(|error| nats_error(&error))?;
    let enrollment_stream = circle_eventstore::wait_for_stream(
        store.jetstream(),
        &config.stream_name("enrollment"),
        Duration::from_secs(30),
    )
    .await
    .map_err(|_| StartError::NoEnrollmentStream(config.stream_name("enrollment")))?;
    let settings = projection_settings(config);
    let commands = Arc::new(commands::Commands::new(store, clock));
    let roster_runner = ProjectionRunner::new(
        Arc::new(roster::Roster),
        pool.clone(),
        roster::SCHEMA,
        enrollment_stream,
        settings.clone(),
    )
    .await?;
    let read_model = ProjectionRunner::new(
        Arc::new(read_model::ReadModel),
        pool.clone(),
        read_model::SCHEMA,
        sessions_stream,
        settings,
    )
    .await?;
    let api = api::SessionsApi::new(
        commands.clone(),
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
        api::Billing {
            code: config.sessions.billing_code.clone(),
            payer_cap: config.sessions.payer_cap,
        },
    );
    let shutdown = Shutdown::new(shutdown);
    let host = Host::bind(
        config.sessions.listen,
        "circle.sessions.v1.SessionsService",
        circle_proto::FILE_DESCRIPTOR_SET,
        nats,
        pool.clone(),
        shutdown.clone(),
    )
    .await?;
    let local_addr = host.local_addr;
    let background = vec![
        tokio::spawn(roster_runner.run(shutdown.signal())),
        tokio::spawn(read_model.run(shutdown.signal())),
    ];
    let materializer = process::Materializer {
        pool,
        commands,
        horizon: chrono::Duration::days(i64::from(config.sessions.horizon_days)),
        lookback: chrono::Duration::days(i64::from(config.sessions.lookback_days)),
    };
    let materializing = tokio::spawn(materializer.run(
        Duration::from_millis(config.sessions.materialize_poll_ms),
        shutdown.signal(),
    ));
    let task = tokio::spawn(async move {
        let served = host
            .serve(|router| router.add_service(SessionsServiceServer::new(api)))
            .await
            .map_err(|error| StartError::Server(error.to_string()));
        for runner in background {
            runner
                .await
                .map_err(|error| StartError::Server(error.to_string()))??;
        }
        materializing
            .await
            .map_err(|error| StartError::Server(error.to_string()))?;
        served
    });
    tracing::info!(%local_addr, "sessions service listening");
    Ok(Running { local_addr, task })
}

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
