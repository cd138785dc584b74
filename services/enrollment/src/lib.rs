//! The enrollment service: who is in which group. A library with a thin `main.rs`, so
//! tests and `circle dev` start it in-process on any port.
//!
//! Write side: gRPC command → `app::Commands` (access table, what the command needs)
//! → pure `domain::*::decide` → one commit appended to the ENROLLMENT stream
//! (optimistic concurrency on the aggregate's subject). Read side:
//! the `enrollment-read-model` projection fills schema `enrollment`; queries read it,
//! waiting for a consistency token when one is given. Process managers (offer expiry,
//! transfers) run from the same stream, each in a schema of its own. The accounting
//! of disclosures projects every service's audit stream (`disclosures`), each into a
//! schema of its own.

pub mod api;
pub mod app;
pub mod codec;
pub mod disclosures;
pub mod domain;
pub mod process;
pub mod read_model;

use std::sync::Arc;
use std::time::Duration;

use circle_config::Config;
use circle_eventstore::StreamSpec;
use circle_grpc::host::{Host, Shutdown};
use circle_grpc::limits::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use circle_projection::ProjectionRunner;
use circle_proto::enrollment::v1::enrollment_service_server::EnrollmentServiceServer;
use circle_service::Tasks;

pub use circle_calendar::{Clock, ManualClock, SystemClock};
pub use circle_service::{Running, StartError};

pub const SERVICE: &str = "enrollment";

pub fn stream_spec(config: &Config) -> StreamSpec {
    circle_service::stream_spec(config, SERVICE)
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
    let base = circle_service::connect(config, SERVICE).await?;
    let jetstream = base.store.jetstream().clone();
    let settings = base.settings;
    let stream = base.own_stream;
    let pool = base.pool;
    let commands = Arc::new(app::Commands::new(
        base.store,
        pool.clone(),
        clock.clone(),
        base.vault.clone(),
        chrono::Duration::hours(i64::from(config.enrollment.seat_offer_hours)),
    ));
    let read_model = ProjectionRunner::new(
        Arc::new(read_model::ReadModel),
        &base.database,
        read_model::SCHEMA,
        stream.clone(),
        settings.clone(),
    )
    .await?;
    let offer_timers = ProjectionRunner::new(
        Arc::new(process::OfferTimers),
        &base.database,
        process::OFFER_TIMERS_SCHEMA,
        stream.clone(),
        settings.clone(),
    )
    .await?;
    let transfers = ProjectionRunner::new(
        Arc::new(process::Transfers {
            commands: commands.clone(),
        }),
        &base.database,
        process::TRANSFERS_SCHEMA,
        stream,
        settings.clone(),
    )
    .await?;
    let queries = Arc::new(app::Queries::new(
        pool.clone(),
        read_model.handle(),
        Duration::from_millis(config.projection.read_your_writes_timeout_ms),
        clock,
        base.audit.clone(),
        disclosures::Accounting::new(jetstream.clone(), config),
        base.vault,
    ));
    let api = api::EnrollmentApi::new(commands.clone(), queries);

    let shutdown = Shutdown::new(shutdown);
    let host = Host::bind(
        config.enrollment.listen,
        "circle.enrollment.v1.EnrollmentService",
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
    tasks.projection(offer_timers);
    tasks.projection(transfers);
    for source in disclosures::SOURCES {
        tasks
            .projection_of_stream_to_come(
                &jetstream,
                &base.database,
                &settings,
                Arc::new(disclosures::Disclosures { source }),
                source.schema,
                circle_service::audit_spec(config, source.service).name,
            )
            .await?;
    }
    tasks.spawn(process::fire_offer_timers(
        pool,
        commands,
        Duration::from_millis(config.enrollment.timer_poll_ms),
        circle_service::loop_lease(&base.database, SERVICE, "offer_timers"),
        tasks.shutting_down(),
    ));
    Ok(circle_service::serve(
        SERVICE,
        host,
        |router| {
            router.add_service(
                EnrollmentServiceServer::new(api)
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
