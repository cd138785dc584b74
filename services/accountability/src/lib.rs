//! The accountability service: goals, check-ins, encouragement, setbacks, partners,
//! milestones, nudges and the live group feed. A library with a thin `main.rs`.
//!
//! It learns about groups, members and consents from the ENROLLMENT stream (schema
//! `accountability_roster`) and about attendance and session check-ins from the
//! SESSIONS stream (a process manager); it writes only its ACCOUNTABILITY stream and
//! projects it into schema `accountability`.

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
use circle_proto::accountability::v1::accountability_service_server::AccountabilityServiceServer;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

pub const SERVICE: &str = "accountability";

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
    #[error("the stream {0} does not exist; start the enrollment and sessions services first")]
    MissingStream(String),
    #[error("invalid configuration: {0}")]
    Config(String),
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

pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

pub async fn start_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let nats_error = |error: &dyn std::fmt::Display| StartError::Nats {
        url: config.nats.url.clone(),
        reason: error.to_string(),
    };
    let default_quiet_hours = config
        .accountability
        .quiet_hours_minutes()
        .ok_or_else(|| StartError::Config("accountability quiet hours".into()))?;
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
    let own_stream = store
        .jetstream()
        .get_stream(&store.spec().name)
        .await
        .map_err(|error| nats_error(&error))?;
    let jetstream = store.jetstream().clone();
    let other_stream = |name: String| {
        let jetstream = jetstream.clone();
        async move {
            circle_eventstore::wait_for_stream(&jetstream, &name, Duration::from_secs(30))
                .await
                .map_err(|_| StartError::MissingStream(name))
        }
    };
    let enrollment_stream = other_stream(config.stream_name("enrollment")).await?;
    let sessions_stream = other_stream(config.stream_name("sessions")).await?;
    let settings = ProjectionSettings {
        batch_size: config.projection.batch_size,
        ack_wait: Duration::from_secs(config.projection.ack_wait_secs),
        max_attempts: config.projection.max_attempts,
    };
    let commands = Arc::new(commands::Commands::new(store, clock));
    let roster_runner = ProjectionRunner::new(
        Arc::new(roster::Roster),
        pool.clone(),
        roster::SCHEMA,
        enrollment_stream.clone(),
        settings.clone(),
    )
    .await?;
    let read_model = ProjectionRunner::new(
        Arc::new(read_model::ReadModel),
        pool.clone(),
        read_model::SCHEMA,
        own_stream,
        settings.clone(),
    )
    .await?;
    let from_sessions = ProjectionRunner::new(
        Arc::new(process::FromSessions {
            commands: commands.clone(),
        }),
        pool.clone(),
        process::SCHEMA,
        sessions_stream,
        settings.clone(),
    )
    .await?;
    let guard = ProjectionRunner::new(
        Arc::new(process::PartnershipGuard {
            commands: commands.clone(),
        }),
        pool.clone(),
        process::SCHEMA,
        enrollment_stream,
        settings,
    )
    .await?;
    let api = api::AccountabilityApi::new(
        commands.clone(),
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
    );
    let shutdown = Shutdown::new(shutdown);
    let host = Host::bind(
        config.accountability.listen,
        "circle.accountability.v1.AccountabilityService",
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
        tokio::spawn(from_sessions.run(shutdown.signal())),
        tokio::spawn(guard.run(shutdown.signal())),
    ];
    let nudger = process::Nudger {
        pool,
        commands,
        default_quiet_hours,
    };
    let nudging = tokio::spawn(nudger.run(
        Duration::from_millis(config.accountability.nudge_poll_ms),
        shutdown.signal(),
    ));
    let task = tokio::spawn(async move {
        let served = host
            .serve(|router| router.add_service(AccountabilityServiceServer::new(api)))
            .await
            .map_err(|error| StartError::Server(error.to_string()));
        for runner in background {
            runner
                .await
                .map_err(|error| StartError::Server(error.to_string()))??;
        }
        nudging
            .await
            .map_err(|error| StartError::Server(error.to_string()))?;
        served
    });
    tracing::info!(%local_addr, "accountability service listening");
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
