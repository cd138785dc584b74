//! The sessions service: what happened in each session. A library with a thin
//! `main.rs`, so tests and `circle dev` start it in-process on any port.
//!
//! It learns about groups and members only from the ENROLLMENT stream (the
//! `sessions-roster` projection into schema `sessions_roster`), writes only its own
//! SESSIONS stream, and projects that into schema `sessions`. The materialiser turns
//! schedules into sessions.
//!
//! Crypto-shredding: everything personal is sealed at rest with the data key of the
//! participant it is about (the shared key store, `circle_vault`) — the events it
//! writes, the aggregates' states, and the rows its projections copy from its own
//! stream and from enrollment's (projections hold no keys). Plaintext exists only
//! inside one request, opened by the application for the answer it gives
//! (`app::personal`). Forgetting a participant destroys their key: every read shows
//! `[redacted]` for them from then on, without a projection doing anything.

pub mod api;
pub mod app;
pub mod codec;
pub mod domain;
pub mod process;
pub mod read_model;
pub mod roster;

use std::sync::Arc;
use std::time::Duration;

use circle_calendar::{Clock, SystemClock};
use circle_config::Config;
use circle_eventstore::StreamSpec;
use circle_grpc::host::{Host, Shutdown};
use circle_grpc::limits::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use circle_projection::ProjectionRunner;
use circle_proto::sessions::v1::sessions_service_server::SessionsServiceServer;
use circle_service::Tasks;

pub use circle_service::{Running, StartError};

pub const SERVICE: &str = "sessions";

pub fn stream_spec(config: &Config) -> StreamSpec {
    circle_service::stream_spec(config, SERVICE)
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
    let base = circle_service::connect(config, SERVICE).await?;
    let settings = base.settings;
    let jetstream = base.store.jetstream().clone();
    let sessions_stream = base.own_stream;
    let pool = base.pool;
    let vault = base.vault;
    let commands = Arc::new(app::Commands::new(
        base.store,
        pool.clone(),
        clock.clone(),
        vault.clone(),
    ));
    let read_model = ProjectionRunner::new(
        Arc::new(read_model::ReadModel),
        &base.database,
        read_model::SCHEMA,
        sessions_stream,
        settings.clone(),
    )
    .await?;
    let queries = app::Queries::new(
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
        clock.clone(),
        app::Billing {
            code: config.sessions.billing_code.clone(),
            payer_cap: config.sessions.payer_cap,
        },
        base.audit.clone(),
        vault,
    );
    let api = api::SessionsApi::new(commands.clone(), queries);
    let shutdown = Shutdown::new(shutdown);
    let host = Host::bind(
        config.sessions.listen,
        "circle.sessions.v1.SessionsService",
        circle_proto::FILE_DESCRIPTOR_SET,
        base.nats,
        pool.clone(),
        shutdown.clone(),
        base.access.clone(),
        circle_service::host_options(config)?,
    )
    .await?;
    let mut tasks = Tasks::new(&shutdown);
    // Enrollment's stream may not exist yet (services start in any order): until it
    // does, no one is enrolled, and the empty roster says so.
    tasks
        .projection_of_stream_to_come(
            &jetstream,
            &base.database,
            &settings,
            Arc::new(roster::Roster),
            roster::SCHEMA,
            config.stream_name("enrollment"),
        )
        .await?;
    tasks.projection(read_model);
    let materializer = process::Materializer {
        pool,
        commands,
        horizon: chrono::Duration::days(i64::from(config.sessions.horizon_days)),
        lookback: chrono::Duration::days(i64::from(config.sessions.lookback_days)),
    };
    tasks.spawn(materializer.run(
        Duration::from_millis(config.sessions.materialize_poll_ms),
        circle_service::loop_lease(&base.database, SERVICE, "materializer"),
        tasks.shutting_down(),
    ));
    Ok(circle_service::serve(
        SERVICE,
        host,
        |router| {
            router.add_service(
                SessionsServiceServer::new(api)
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
        },
        tasks,
    ))
}

/// Runs until `shutdown`; for `main`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    start(&config, shutdown).await?.finished().await
}
