//! The accountability service: goals, check-ins, encouragement, setbacks, partners,
//! milestones, nudges and the live group feed. A library with a thin `main.rs`.
//!
//! It learns about groups, members and consents from the ENROLLMENT stream (schema
//! `accountability_roster`) and about attendance and session check-ins from the
//! SESSIONS stream (a process manager); it writes only its ACCOUNTABILITY stream and
//! projects it into schema `accountability`.
//!
//! Personal text is sealed at rest (`personal`: what is sealed, with whose key) and
//! opened only in the application layer's answers, with the key store of
//! `circle_service::connect`.

pub mod api;
pub mod app;
pub mod codec;
pub mod domain;
pub mod integration;
pub mod personal;
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
use circle_proto::accountability::v1::accountability_service_server::AccountabilityServiceServer;
use circle_service::Tasks;

use crate::domain::settings::QuietHours;

pub use circle_service::{Running, StartError};

pub const SERVICE: &str = "accountability";

pub fn stream_spec(config: &Config) -> StreamSpec {
    circle_service::stream_spec(config, SERVICE)
}

pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// Connects, provisions the ACCOUNTABILITY stream and the schemas, starts the roster,
/// read-model and process-manager projections, the nudger and the gRPC server;
/// returns once the server listens. Everything stops when `shutdown` resolves.
pub async fn start_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let default_quiet_hours = config
        .accountability
        .quiet_hours_minutes()
        .and_then(|(start, end)| QuietHours::new(start, end).ok())
        .ok_or_else(|| StartError::Config("accountability quiet hours".into()))?;
    // The instruments are data embedded at build time: one that does not hold together
    // stops the service here, not each measure later.
    domain::instruments::Catalog::shared()
        .map_err(|error| StartError::Config(format!("instrument definitions: {error}")))?;
    let base = circle_service::connect(config, SERVICE).await?;
    let integration_store = circle_eventstore::EventStore::open_with(
        base.nats.clone(),
        integration::stream_spec(config),
        config.nats.stream_mismatch,
    )
    .await?;
    let settings = base.settings;
    let jetstream = base.store.jetstream().clone();
    let own_stream = base.own_stream;
    let integration_source = own_stream.clone();
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
        own_stream,
        settings.clone(),
    )
    .await?;
    let shutdown = Shutdown::new(shutdown);
    let queries = app::Queries::new(
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
        clock,
        shutdown.clone(),
        base.audit.clone(),
        vault,
    )
    .with_group_trend_min_members(config.accountability.group_trend_min_members)
    .with_integration(app::integration::IntegrationFeed {
        stream: integration_store.stream().clone(),
        subject_root: integration_store.spec().subject_root.clone(),
    });
    let api = api::AccountabilityApi::new(commands.clone(), queries);
    let host = Host::bind(
        config.accountability.listen,
        "circle.accountability.v1.AccountabilityService",
        circle_proto::FILE_DESCRIPTOR_SET,
        base.nats,
        pool.clone(),
        shutdown.clone(),
        base.access.clone(),
        circle_service::host_options(config)?,
    )
    .await?;
    let mut tasks = Tasks::new(&shutdown);
    tasks.projection(read_model);
    // The integration events, written from the service's own stream.
    tasks.projection(
        ProjectionRunner::new(
            Arc::new(integration::Publisher {
                jetstream: integration_store.jetstream().clone(),
                spec: integration_store.spec().clone(),
            }),
            &base.database,
            integration::SCHEMA,
            integration_source,
            settings.clone(),
        )
        .await?,
    );
    // Enrollment's and sessions' streams may not exist yet (services start in any
    // order): until they do, there is nothing to react to, and the empty roster says so.
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
    tasks
        .projection_of_stream_to_come(
            &jetstream,
            &base.database,
            &settings,
            Arc::new(process::FromSessions {
                commands: commands.clone(),
            }),
            process::FROM_SESSIONS_SCHEMA,
            config.stream_name("sessions"),
        )
        .await?;
    tasks
        .projection_of_stream_to_come(
            &jetstream,
            &base.database,
            &settings,
            Arc::new(process::PartnershipGuard {
                commands: commands.clone(),
            }),
            process::PARTNERSHIP_GUARD_SCHEMA,
            config.stream_name("enrollment"),
        )
        .await?;
    let nudger = process::Nudger {
        pool,
        commands,
        default_quiet_hours,
    };
    tasks.spawn(nudger.run(
        Duration::from_millis(config.accountability.nudge_poll_ms),
        circle_service::loop_lease(&base.database, SERVICE, "nudger"),
        tasks.shutting_down(),
    ));
    Ok(circle_service::serve(
        SERVICE,
        host,
        |router| {
            router.add_service(
                AccountabilityServiceServer::new(api)
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
