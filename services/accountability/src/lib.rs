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
use circle_projection::{ProjectionRunner, ProjectionSettings};
use circle_proto::accountability::v1::accountability_service_server::AccountabilityServiceServer;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
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
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
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

/// Waits (up to 30 s) for another service's stream; this service never creates it.
async fn other_stream(
    jetstream: &async_nats::jetstream::Context,
    name: String,
) -> Result<async_nats::jetstream::stream::Stream, StartError> {
    for _ in 0..150 {
        if let Ok(stream) = jetstream.get_stream(&name).await {
            return Ok(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StartError::MissingStream(name))
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
    let enrollment_stream =
        other_stream(store.jetstream(), config.stream_name("enrollment")).await?;
    let sessions_stream = other_stream(store.jetstream(), config.stream_name("sessions")).await?;
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
    let listener = tokio::net::TcpListener::bind(config.accountability.listen)
        .await
        .map_err(|error| StartError::Listen {
            addr: config.accountability.listen,
            reason: error.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|error| StartError::Listen {
        addr: config.accountability.listen,
        reason: error.to_string(),
    })?;

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AccountabilityServiceServer<api::AccountabilityApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(circle_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| StartError::Server(error.to_string()))?;
    let background = vec![
        tokio::spawn(roster_runner.run(until_stopped(stopped.clone()))),
        tokio::spawn(read_model.run(until_stopped(stopped.clone()))),
        tokio::spawn(from_sessions.run(until_stopped(stopped.clone()))),
        tokio::spawn(guard.run(until_stopped(stopped.clone()))),
    ];
    let nudger = process::Nudger {
        pool,
        commands,
        default_quiet_hours,
    };
    let nudging = tokio::spawn(nudger.run(
        Duration::from_millis(config.accountability.nudge_poll_ms),
        until_stopped(stopped.clone()),
    ));
    let server = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(256)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AccountabilityServiceServer::new(api))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            until_stopped(stopped),
        );
    let task = tokio::spawn(async move {
        let served = server
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
