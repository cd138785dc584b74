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
use circle_projection::{ProjectionRunner, ProjectionSettings};
use circle_proto::enrollment::v1::enrollment_service_server::EnrollmentServiceServer;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
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
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
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

    let listener = tokio::net::TcpListener::bind(config.enrollment.listen)
        .await
        .map_err(|error| StartError::Listen {
            addr: config.enrollment.listen,
            reason: error.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|error| StartError::Listen {
        addr: config.enrollment.listen,
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
        .set_serving::<EnrollmentServiceServer<api::EnrollmentApi>>()
        .await;
    tokio::spawn(watch_readiness(health, nats, pool.clone(), stopped.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(circle_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| StartError::Server(error.to_string()))?;

    let background = vec![
        tokio::spawn(read_model.run(until_stopped(stopped.clone()))),
        tokio::spawn(offer_timers.run(until_stopped(stopped.clone()))),
        tokio::spawn(transfers.run(until_stopped(stopped.clone()))),
    ];
    let timers = tokio::spawn(process::fire_offer_timers(
        pool,
        commands,
        Duration::from_millis(config.enrollment.timer_poll_ms),
        until_stopped(stopped.clone()),
    ));
    let server = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(256)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(EnrollmentServiceServer::new(api))
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

/// Readiness follows the dependencies: NOT_SERVING while NATS or PostgreSQL is gone.
async fn watch_readiness(
    health: tonic_health::server::HealthReporter,
    nats: async_nats::Client,
    pool: sqlx::PgPool,
    mut stopped: watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus;
    let mut ready = true;
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    health.set_not_serving::<EnrollmentServiceServer<api::EnrollmentApi>>().await;
                    return;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let nats_up = nats.connection_state() == async_nats::connection::State::Connected;
        let database_up = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
        if (nats_up && database_up) != ready {
            ready = nats_up && database_up;
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health
                .set_service_status("circle.enrollment.v1.EnrollmentService", status)
                .await;
            tracing::warn!(nats_up, database_up, "readiness changed");
        }
    }
}
