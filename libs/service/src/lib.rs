//! The start-up and shutdown every Circle service shares, so a service's `start`
//! names only what is its own (its projections, loops and API):
//!
//! 1. [`connect`]: the host's access (token keys), NATS (with the TLS and credentials
//!    of [`nats_options`]), PostgreSQL as its two roles ([`Database`]: the runtime
//!    role, refused if superuser or BYPASSRLS, and the owner for migrations), the
//!    service's own stream (provisioned and checked by the event store), its own audit
//!    stream (`circle_audit`), the participants' data keys (`circle_vault`, master keys
//!    from `vault.*`: a service does not start without them) and the projection
//!    settings;
//! 2. [`Tasks`]: projections and background loops (a projection of another
//!    service's stream, which may not exist yet, starts once it does: services start
//!    in any order);
//! 3. [`serve`]: the gRPC host (bound with [`host_options`]: TLS and abuse limits),
//!    joined with every task once it stops;
//! 4. [`main`]: configuration, telemetry and SIGTERM/Ctrl-C for a service binary;
//!
//! and, at the edge, [`consistent_read`] (read-your-writes), [`commit_meta`] (with the
//! command's [`Fingerprint`]) and [`errors`], the one mapping of store, command and
//! database errors to gRPC codes and reasons; for every read and write of the read
//! models, [`tenant_transaction`] (the tenant wall: a transaction that sees one
//! network's rows).

pub mod errors;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use circle_audit::{AuditLog, AuditSpec};
use circle_config::Config;
use circle_eventstore::{CommitMeta, EventStore, StreamSpec};
use circle_grpc::auth::Authenticator;
use circle_grpc::host::{Access, Host, HostOptions, Routes, Shutdown};
use circle_grpc::limits::Limits;
use circle_grpc::tls::{ClientCertificates, ServerTls};
use circle_grpc::{ApiError, Caller, Violations};
pub use circle_projection::{Database, WallError, networks, tenant_transaction};
use circle_projection::{
    Health, LagError, Projection, ProjectionHandle, ProjectionRunner, ProjectionSettings,
};
use circle_proto::CommandRequest;
use circle_vault::MasterKeys;
use circle_vault::store::KeyStore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

/// How often a projection of a stream to come looks for it.
const STREAM_TO_COME_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(String),
    #[error("cannot connect to PostgreSQL as the owner (database.owner_url): {0}")]
    OwnerDatabase(String),
    #[error("refusing to start: {0}")]
    Wall(#[from] WallError),
    #[error("event log: {0}")]
    EventStore(#[from] circle_eventstore::StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] circle_audit::AuditError),
    #[error("projection: {0}")]
    Projection(circle_projection::ApplyError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("gRPC TLS: {0}")]
    Tls(#[from] circle_grpc::tls::TlsError),
    #[error(transparent)]
    Host(#[from] circle_grpc::host::HostError),
    #[error("gRPC server: {0}")]
    Server(String),
    #[error("key store: {0}")]
    Vault(circle_vault::store::StoreError),
}

impl From<circle_vault::store::StoreError> for StartError {
    /// The key store's wall is checked like the read models': a role it would not hold
    /// is the same refusal to start.
    fn from(error: circle_vault::store::StoreError) -> Self {
        match error {
            circle_vault::store::StoreError::Wall(wall) => Self::Wall(wall),
            other => Self::Vault(other),
        }
    }
}

impl From<circle_projection::ApplyError> for StartError {
    /// A wall that would not hold (found by a projection's migration) is a refusal to
    /// start like the role checks at connect, with the same words.
    fn from(error: circle_projection::ApplyError) -> Self {
        match error {
            circle_projection::ApplyError::Wall(wall) => Self::Wall(wall),
            other => Self::Projection(other),
        }
    }
}

/// A started service: where it listens, and its task (which ends after shutdown,
/// once the server has drained and every projection and loop has stopped).
pub struct Running {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Waits for the service to stop.
    pub async fn finished(self) -> Result<(), StartError> {
        self.task
            .await
            .map_err(|error| StartError::Server(error.to_string()))?
    }
}

/// The stream `service` appends to, named by the configuration.
pub fn stream_spec(config: &Config, service: &str) -> StreamSpec {
    StreamSpec {
        name: config.stream_name(service),
        subject_root: config.subject_root(service),
        replicas: config.nats.replicas,
        duplicate_window: Duration::from_secs(config.nats.duplicate_window_secs),
    }
}

/// The audit stream `service` appends its reads' disclosures to: `<SERVICE>_AUDIT`,
/// subjects `<service>-audit.…`, kept `audit.retention_days`.
pub fn audit_spec(config: &Config, service: &str) -> AuditSpec {
    AuditSpec {
        name: config.stream_name(&format!("{service}_audit")),
        subject_root: config.subject_root(&format!("{service}-audit")),
        replicas: config.nats.replicas,
        retention: Duration::from_secs(u64::from(config.audit.retention_days) * 24 * 60 * 60),
        duplicate_window: Duration::from_secs(config.nats.duplicate_window_secs),
    }
}

/// The full name of `service`'s gRPC API, e.g. `circle.enrollment.v1.EnrollmentService`.
pub fn api_name(service: &str) -> String {
    let mut letters = service.chars();
    let capitalized: String = letters
        .next()
        .map(|first| first.to_ascii_uppercase())
        .into_iter()
        .chain(letters)
        .collect();
    format!("circle.{service}.v1.{capitalized}Service")
}

/// The projection settings of `service`'s runners.
pub fn projection_settings(config: &Config, service: &str) -> ProjectionSettings {
    ProjectionSettings {
        batch_size: config.projection.batch_size,
        ack_wait: Duration::from_secs(config.projection.ack_wait_secs),
        max_attempts: config.projection.max_attempts,
        halt_retry: Duration::from_millis(config.projection.halt_retry_ms),
        partitions: config.projection.partitions,
        // The telemetry's name of the service (`circle-enrollment`): spans carrying it
        // export under that service's resource.
        service: circle_telemetry::service_name(service)
            .unwrap_or(service)
            .to_owned(),
    }
}

/// What a service starts from.
pub struct Connected {
    pub nats: async_nats::Client,
    /// The runtime role's pool (`database.pool`), for everything the service does.
    pub pool: PgPool,
    /// Both roles: projections migrate their schemas as the owner.
    pub database: Database,
    pub store: EventStore,
    /// The service's own stream, for its read-model projection.
    pub own_stream: Stream,
    /// The service's own audit stream, where its reads' disclosures are recorded.
    pub audit: AuditLog,
    pub settings: ProjectionSettings,
    /// Who may reach the service's gRPC host.
    pub access: Access,
    /// The participants' data keys: the repositories seal commits with them, answers
    /// are opened with them.
    pub vault: KeyStore,
}

/// Connects to NATS and PostgreSQL and opens `service`'s stream. The runtime role
/// (`database.url`) is refused if it is superuser or BYPASSRLS (the tenant wall would
/// be off); the owner (`database.owner_url`) gets a small pool that holds no connection
/// while idle, for the migrations and rebuilds.
pub async fn connect(config: &Config, service: &str) -> Result<Connected, StartError> {
    let access = access(config, service).await?;
    let master_keys = master_keys(config)?;
    let nats_error = |error: &dyn std::fmt::Display| StartError::Nats {
        url: without_credentials(&config.nats.url),
        reason: error.to_string(),
    };
    let nats = nats_options(config, service)
        .await?
        .connect(nats_servers(&config.nats.url).map_err(|error| nats_error(&error))?)
        .await
        .map_err(|error| nats_error(&error))?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&config.database.url)
        .await
        .map_err(|error| StartError::Database(error.to_string()))?;
    let owner = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .idle_timeout(Duration::from_secs(30))
        .acquire_timeout(Duration::from_secs(5))
        .connect(&config.database.owner_url)
        .await
        .map_err(|error| StartError::OwnerDatabase(error.to_string()))?;
    let database = Database::new(pool.clone(), owner).await?;
    observe_connections(service, &nats, &pool, config.database.max_connections);
    let vault = KeyStore::open(database.clone(), master_keys).await?;
    let store = EventStore::open_with(
        nats.clone(),
        stream_spec(config, service),
        config.nats.stream_mismatch,
    )
    .await?;
    let own_stream = store.stream().clone();
    let audit = AuditLog::open_with(
        nats.clone(),
        audit_spec(config, service),
        &api_name(service),
        config.nats.stream_mismatch,
    )
    .await?;
    Ok(Connected {
        nats,
        pool,
        database,
        store,
        own_stream,
        audit,
        settings: projection_settings(config, service),
        access,
        vault,
    })
}

/// The health of `service`'s connections as metrics, sampled at each export:
/// `db.client.connection.count` (the runtime role's pool, by
/// `db.client.connection.state` `idle` / `used`), `db.client.connection.max`, and
/// `circle.nats.connected` (1 while the NATS client is connected, else 0).
fn observe_connections(
    service: &str,
    nats: &async_nats::Client,
    pool: &PgPool,
    max_connections: u32,
) {
    use opentelemetry::KeyValue;
    let meter = circle_telemetry::meter(circle_telemetry::service_name(service).unwrap_or(service));
    let pool_name = KeyValue::new("db.client.connection.pool.name", "runtime");
    let observed = pool.clone();
    let attributes = pool_name.clone();
    meter
        .u64_observable_gauge("db.client.connection.count")
        .with_description("connections of the runtime role's pool, by state")
        .with_unit("{connection}")
        .with_callback(move |observer| {
            let size = u64::from(observed.size());
            let idle = observed.num_idle() as u64;
            observer.observe(
                idle,
                &[
                    attributes.clone(),
                    KeyValue::new("db.client.connection.state", "idle"),
                ],
            );
            observer.observe(
                size.saturating_sub(idle),
                &[
                    attributes.clone(),
                    KeyValue::new("db.client.connection.state", "used"),
                ],
            );
        })
        .build();
    meter
        .u64_observable_gauge("db.client.connection.max")
        .with_description("the most connections the runtime role's pool opens")
        .with_unit("{connection}")
        .with_callback(move |observer| {
            observer.observe(u64::from(max_connections), std::slice::from_ref(&pool_name));
        })
        .build();
    let client = nats.clone();
    meter
        .u64_observable_gauge("circle.nats.connected")
        .with_description("1 while the service's NATS client is connected, else 0")
        .with_callback(move |observer| {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            observer.observe(u64::from(connected), &[]);
        })
        .build();
}

/// The master keys of `vault.master_keys_file` or `vault.master_keys` (read now: a
/// service does not start without them).
pub fn master_keys(config: &Config) -> Result<MasterKeys, StartError> {
    let vault = &config.vault;
    let text = match (vault.master_keys_file.is_empty(), &vault.master_keys) {
        (false, None) => std::fs::read_to_string(&vault.master_keys_file).map_err(|error| {
            StartError::Config(format!(
                "vault.master_keys_file {}: {error}",
                vault.master_keys_file
            ))
        })?,
        (true, Some(keys)) => keys.expose().to_owned(),
        _ => {
            return Err(StartError::Config(
                "vault.master_keys_file or vault.master_keys must give the master keys that \
                 wrap participants' data keys (`circle dev` makes development keys)"
                    .to_owned(),
            ));
        }
    };
    MasterKeys::parse(&text).map_err(|error| StartError::Config(format!("vault: {error}")))
}

/// Who may reach `service`'s host: tokens from `auth.issuer`, verified with the keys of
/// `auth.jwks_file` or `auth.jwks_url` (read now: a service does not start without
/// keys), for the service's own audience; calling services as `auth.services` says.
pub async fn access(config: &Config, service: &str) -> Result<Access, StartError> {
    let auth = &config.auth;
    let source = match (auth.jwks_file.is_empty(), auth.jwks_url.is_empty()) {
        (false, true) => circle_auth::KeySource::File(PathBuf::from(&auth.jwks_file)),
        (true, false) => circle_auth::KeySource::Url(auth.jwks_url.clone()),
        _ => {
            return Err(StartError::Config(
                "auth.jwks_file or auth.jwks_url must name the keys tokens are verified with \
                 (`circle dev` makes development keys)"
                    .to_owned(),
            ));
        }
    };
    if auth.issuer.trim().is_empty() {
        return Err(StartError::Config(
            "auth.issuer must name the trusted token issuer".to_owned(),
        ));
    }
    let audience = match service {
        "enrollment" => &config.enrollment.audience,
        "sessions" => &config.sessions.audience,
        "accountability" => &config.accountability.audience,
        other => return Err(StartError::Config(format!("no audience for {other}"))),
    };
    let keys = circle_auth::Keys::load(source, Duration::from_secs(auth.jwks_refresh_secs))
        .await
        .map_err(|error| StartError::Config(error.to_string()))?;
    let verifier = circle_auth::Verifier::new(
        keys,
        circle_auth::VerifierSettings {
            issuer: auth.issuer.clone(),
            leeway: Duration::from_secs(auth.leeway_secs),
        },
    );
    Ok(Access {
        authenticator: std::sync::Arc::new(Authenticator::new(
            verifier,
            audience,
            &format!("circle.{service}"),
            auth.services.clone(),
        )),
        reflection: auth.reflection,
    })
}

/// `scheme://host…` of a URL, without the user and password it may carry.
pub fn without_credentials(url: &str) -> String {
    let servers = circle_config::nats_servers(url);
    if servers.len() > 1 {
        return servers
            .into_iter()
            .map(without_credentials)
            .collect::<Vec<_>>()
            .join(",");
    }
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url
            .rsplit_once('@')
            .map_or(url, |(_, host)| host)
            .to_owned(),
    }
}

/// The servers of `nats.url`: one URL, or several comma-separated.
pub fn nats_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    circle_config::nats_servers(url)
        .into_iter()
        .map(|one| {
            one.parse::<async_nats::ServerAddr>()
                .map_err(|error| format!("{}: {error}", without_credentials(one)))
        })
        .collect()
}

/// How `service` connects to NATS: TLS (the CA to trust, a client certificate, TLS
/// required) and credentials as configured (see [`circle_config::NatsConfig`]), the
/// connection named after the service, and its inboxes under `_INBOX.<subject root>`
/// (e.g. `_INBOX.enrollment.…`), so a server can let each service user subscribe to
/// its own replies only (`deploy/nats/users.conf`). The URL stays in the log of a
/// failed connection; no credential does.
pub async fn nats_options(
    config: &Config,
    service: &str,
) -> Result<async_nats::ConnectOptions, StartError> {
    let nats = &config.nats;
    let failed = |reason: String| StartError::Nats {
        url: without_credentials(&nats.url),
        reason,
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("circle-{service}"))
        .custom_inbox_prefix(format!("_INBOX.{}", config.subject_root(service)));
    if let Some(ca) = &nats.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert, &nats.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if nats.tls_required {
        options = options.require_tls(true);
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(file) = &nats.credentials_file {
        options = options.credentials_file(file).await.map_err(|error| {
            failed(format!(
                "cannot read the credentials file {}: {}",
                file.display(),
                error.kind()
            ))
        })?;
    }
    if let Some(file) = &nats.nkey_seed_file {
        let seed = std::fs::read_to_string(file).map_err(|error| {
            failed(format!(
                "cannot read the nkey seed file {}: {}",
                file.display(),
                error.kind()
            ))
        })?;
        options = options.nkey(seed.trim().to_owned());
    }
    Ok(options)
}

/// How a service's gRPC port serves, from `grpc.*`: TLS when a certificate is
/// configured (its files read now, so a missing one stops the start), client
/// certificates when a client CA is, and the in-flight limits.
pub fn host_options(config: &Config) -> Result<HostOptions, StartError> {
    let grpc = &config.grpc;
    let tls = match (&grpc.tls_cert, &grpc.tls_key) {
        (Some(cert), Some(key)) => {
            let certificates = if grpc.require_client_cert {
                ClientCertificates::Required
            } else {
                ClientCertificates::Optional
            };
            let client_ca = grpc.client_ca.as_deref().map(|path| (path, certificates));
            Some(ServerTls::load(cert, key, client_ca)?)
        }
        _ => None,
    };
    Ok(HostOptions {
        tls,
        limits: Limits {
            max_in_flight: grpc.max_in_flight,
            max_in_flight_per_caller: grpc.max_in_flight_per_caller,
        },
        drain_delay: Duration::from_millis(grpc.drain_delay_ms),
        drain_timeout: Duration::from_millis(grpc.drain_timeout_ms),
    })
}

/// A service's projections and background loops, each stopped by the shutdown.
pub struct Tasks {
    /// Fires once the host has stopped serving (after the calls in flight finished,
    /// which may need the projections), or when the tasks are dropped unserved.
    stop: tokio::sync::watch::Sender<bool>,
    shutdown: Shutdown,
    handles: Vec<JoinHandle<Result<(), StartError>>>,
    /// The health of every projection, which the host's readiness follows.
    health: Vec<Arc<std::sync::OnceLock<Health>>>,
}

impl Tasks {
    pub fn new(shutdown: &Shutdown) -> Self {
        let (stop, _) = tokio::sync::watch::channel(false);
        Self {
            stop,
            shutdown: shutdown.clone(),
            handles: Vec::new(),
            health: Vec::new(),
        }
    }

    /// The health of the projections started so far (a projection of a stream to come
    /// is there once its runner has started).
    pub fn health(&self) -> Vec<Health> {
        self.health
            .iter()
            .filter_map(|health| health.get().cloned())
            .collect()
    }

    pub fn projection<P: Projection>(&mut self, runner: ProjectionRunner<P>) {
        self.health
            .push(Arc::new(std::sync::OnceLock::from(runner.health())));
        let stopped = self.signal();
        self.handles.push(tokio::spawn(async move {
            runner.run(stopped).await.map_err(StartError::from)
        }));
    }

    /// A projection of a stream that may not exist yet (another service's, which need
    /// not be running before this one): its tables are made now ([`circle_projection::
    /// prepare`]), so they can be read at once; its runner starts once the stream
    /// exists, looked for every half second until shutdown.
    pub async fn projection_of_stream_to_come<P: Projection>(
        &mut self,
        jetstream: &async_nats::jetstream::Context,
        database: &Database,
        settings: &ProjectionSettings,
        projection: Arc<P>,
        schema: &str,
        stream: String,
    ) -> Result<(), StartError> {
        circle_projection::prepare(projection.as_ref(), database, schema, settings.partitions)
            .await?;
        let jetstream = jetstream.clone();
        let database = database.clone();
        let settings = settings.clone();
        let schema = schema.to_owned();
        let stopped = self.signal();
        let health = Arc::new(std::sync::OnceLock::new());
        self.health.push(health.clone());
        self.handles.push(tokio::spawn(async move {
            tokio::pin!(stopped);
            // Not there yet is what is waited for; any other failure (a permission,
            // an unreachable server) is said once, each time it changes.
            let mut last_error: Option<String> = None;
            let found = loop {
                tokio::select! {
                    () = &mut stopped => return Ok(()),
                    found = jetstream.get_stream(&stream) => match found {
                        Ok(found) => break found,
                        Err(error) => {
                            let text = error.to_string();
                            if !text.contains("not found") && last_error.as_ref() != Some(&text) {
                                tracing::warn!(%stream, error = %text, "cannot look up the stream; still waiting for it");
                                last_error = Some(text);
                            }
                        }
                    },
                }
                tokio::select! {
                    () = &mut stopped => return Ok(()),
                    () = tokio::time::sleep(STREAM_TO_COME_POLL) => {}
                }
            };
            // Its tables were made at start, so what fails here now may pass (the
            // database was away): retried, like the runner retries; only a refusal
            // (a wall that would not hold, a schema taken) ends the task.
            let runner = loop {
                let made = ProjectionRunner::new(
                    projection.clone(),
                    &database,
                    &schema,
                    found.clone(),
                    settings.clone(),
                )
                .await;
                match made {
                    Ok(runner) => break runner,
                    Err(circle_projection::ApplyError::Transient(error)) => {
                        tracing::warn!(%schema, %error, "cannot start the projection yet, retrying");
                    }
                    Err(refused) => {
                        tracing::error!(%schema, error = %refused, "the projection of the stream that appeared is refused and cannot run; the service is not ready");
                        let _ = health.set(Health::refused(projection.name()));
                        return Err(refused.into());
                    }
                }
                tokio::select! {
                    () = &mut stopped => return Ok(()),
                    () = tokio::time::sleep(STREAM_TO_COME_POLL) => {}
                }
            };
            let _ = health.set(runner.health());
            runner.run(stopped).await.map_err(StartError::from)
        }));
        Ok(())
    }

    /// Resolves once the host has stopped serving (the calls in flight have finished:
    /// a read waiting for its write to be projected needs the projections until then),
    /// or at once if the host is never served; for the loops given to
    /// [`Tasks::spawn`]. Whether shutdown has started is [`Tasks::shutting_down`].
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            // A dropped sender (the tasks were never served) stops them too.
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }

    /// Resolves when shutdown starts (before the host drains).
    pub fn shutting_down(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.signal()
    }

    /// A loop that ends at shutdown (it is given [`Tasks::signal`]).
    pub fn spawn(&mut self, running: impl Future<Output = ()> + Send + 'static) {
        self.handles.push(tokio::spawn(async move {
            running.await;
            Ok(())
        }));
    }
}

/// The lease of `service`'s background loop `loop_name` (`circle.loop.<service>.<loop>`):
/// one replica at a time runs it ([`circle_projection::Lease`]).
pub fn loop_lease(database: &Database, service: &str, loop_name: &str) -> circle_projection::Lease {
    circle_projection::Lease::new(
        database.pool.clone(),
        format!("circle.loop.{service}.{loop_name}"),
    )
}

/// The span of one pass of a background loop (`circle.<loop> pass`): a root span of
/// its own (a pass is caused by the clock, not by a request), kind internal, with the
/// service's name (`circle.service`); the commands the pass issues are its children
/// ([`loop_command_span`]). A failed pass is marked with [`failed`].
pub fn loop_pass_span(service: &'static str, loop_name: &'static str) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "pass",
        otel.name = format!("circle.{loop_name} pass"),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        circle.service = circle_telemetry::service_name(service).unwrap_or(service),
        circle.loop = loop_name,
    )
}

/// The span of one command a background loop issues (`circle.<loop> <command>`), a
/// child of the current pass; the command's append is its child in turn.
pub fn loop_command_span(loop_name: &'static str, command: &'static str) -> tracing::Span {
    tracing::info_span!(
        "command",
        otel.name = format!("circle.{loop_name} {command}"),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        circle.command = command,
    )
}

/// Marks `span` (a pass's or a command's) as failed: its status is an error.
pub fn failed(span: &tracing::Span) {
    span.record("otel.status_code", "ERROR");
}

/// Serves `host` with the router `add` builds; the returned task ends when the
/// server has stopped and every task has finished.
pub fn serve(
    service: &'static str,
    host: Host,
    add: impl FnOnce(Routes) -> Routes + Send + 'static,
    tasks: Tasks,
) -> Running {
    let local_addr = host.local_addr;
    // Not ready while any projection is halted.
    for health in &tasks.health {
        let health = health.clone();
        host.readiness
            .require(move || health.get().is_none_or(|health| !health.halted()));
    }
    let task = tokio::spawn(async move {
        let served = host
            .serve(add)
            .await
            .map_err(|error| StartError::Server(error.to_string()));
        // The calls in flight have finished: now the projections (each finishing its
        // batch: committed, then acknowledged) and the loops stop.
        tasks.stop.send_replace(true);
        for handle in tasks.handles {
            handle
                .await
                .map_err(|error| StartError::Server(error.to_string()))??;
        }
        served
    });
    tracing::info!(%local_addr, service, "listening");
    Running { local_addr, task }
}

/// The whole `main` of a service binary `name` (`circle-<service>`): configuration
/// (defaults, then the TOML file named by `CIRCLE_CONFIG`, then
/// `CIRCLE_<SECTION>__<KEY>` variables and `CIRCLE_<SECTION>__<KEY>_FILE` ones naming
/// a file that holds the value; other `CIRCLE_…` variables are ignored), validated for
/// the shared sections and the service's own only, telemetry, and `run` until SIGTERM
/// or Ctrl-C. Exit code 2 for bad configuration, 1 when the service fails.
pub async fn main<R>(
    name: &'static str,
    run: impl FnOnce(Config, ShutdownSignal) -> R,
) -> std::process::ExitCode
where
    R: Future<Output = Result<(), StartError>>,
{
    // First: a stop asked for while the service starts is kept for when it has.
    let stop = stop_requested();
    let file = std::env::var_os(circle_config::FILE_VARIABLE).map(PathBuf::from);
    let scope = circle_config::Scope::Service(name.strip_prefix("circle-").unwrap_or(name));
    let config = match Config::load_for(file.as_deref(), scope) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = match circle_telemetry::init(name, &config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{name}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown: ShutdownSignal = Box::pin(stop);
    match run(config, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, service = name, "stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves when the process is asked to stop: SIGTERM (what Kubernetes, systemd and
/// `docker stop` send) or SIGINT (Ctrl-C). The handlers are installed when this is
/// called (inside the runtime), so a signal that comes while the service is still
/// starting is kept and stops it once it has started, instead of killing it.
pub fn stop_requested() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                _ => {
                    tracing::warn!("cannot listen for SIGTERM; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A future that resolves when the service should stop.
pub type ShutdownSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Read-your-writes at the edge: waits (at most `timeout`) for `read_model` to include
/// the write a client's consistency token names; no token, no wait. A token beyond
/// the end of the service's stream is `INVALID_ARGUMENT` at once (retrying cannot
/// help); a read model that has not caught up in time is `UNAVAILABLE`
/// (`READ_MODEL_BEHIND`).
pub async fn consistent_read(
    read_model: &ProjectionHandle,
    timeout: Duration,
    token: &str,
) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    let wanted = violations
        .check("consistency_token", circle_grpc::consistency_token(token))
        .flatten();
    violations.into_result()?;
    let Some(wanted) = wanted else {
        return Ok(());
    };
    read_model
        .wait_for(wanted, timeout)
        .await
        .map_err(|error| match error {
            LagError::NotYet { .. } => ApiError::new(
                tonic::Code::Unavailable,
                "READ_MODEL_BEHIND",
                "the read model has not caught up with this write yet; retry shortly",
            ),
            LagError::Database(_) | LagError::Stream(_) => ApiError::unavailable("the read model"),
            // A token this service never issued: no wait or retry makes it valid.
            LagError::BeyondStream { .. } => {
                let mut refusal = ApiError::new(
                    tonic::Code::InvalidArgument,
                    "INVALID_ARGUMENT",
                    "invalid request: consistency_token",
                );
                refusal.violations = vec![(
                    "consistency_token".to_owned(),
                    "names no write of this service (beyond the end of its log)".to_owned(),
                )];
                refusal
            }
        })
}

/// What a command asks, without its request id: the one fingerprint of a request,
/// stored on its commit so a request id used again for other content is refused and
/// a retry is answered from the original commit (see [`circle_eventstore::Repository`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A UUIDv5 over the request's full type name and its encoding with the request id
    /// cleared.
    pub fn of(request: &impl CommandRequest) -> Self {
        Self(uuid::Uuid::new_v5(&FINGERPRINT_NAMESPACE, &request.content()).to_string())
    }
}

/// The namespace of command fingerprints (fixed: a fingerprint never changes).
const FINGERPRINT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5c6a_61f4_86e1_5d3a_9d0e_2b7c_41a8_e913);

/// The commit metadata of a command the caller sent, with its fingerprint.
pub fn commit_meta(caller: &Caller, request_id: String, fingerprint: Fingerprint) -> CommitMeta {
    CommitMeta {
        request_id,
        actor_role: caller.roles_text(),
        actor_id: caller.actor_id.clone(),
        fingerprint: fingerprint.0,
    }
}

/// The commit metadata of a process manager's step: its request id is derived from
/// what caused it, so it names the step and no fingerprint is needed.
pub fn step_meta(caller: &Caller, request_id: String) -> CommitMeta {
    CommitMeta {
        request_id,
        actor_role: caller.roles_text(),
        actor_id: caller.actor_id.clone(),
        fingerprint: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_several_comma_separated_servers_whose_credentials_are_never_shown() {
        let servers = nats_servers("nats://a:4222, nats://u:secret@b:4223").expect("parses");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].port(), 4223);
        assert_eq!(
            without_credentials("nats://a:4222, nats://u:secret@b:4223"),
            "nats://a:4222,nats://b:4223"
        );
        let refused = nats_servers("nats://a:4222,nats://u:secret@b:x").expect_err("bad port");
        assert!(!refused.contains("secret"), "{refused}");
        // A comma inside a password does not split the URL, nor show part of it.
        let one = nats_servers("nats://u:pa,ss@h:4222").expect("parses");
        assert_eq!(one.len(), 1);
        assert_eq!(
            without_credentials("nats://u:pa,ss@h:4222"),
            "nats://h:4222"
        );
    }

    #[test]
    fn each_service_has_its_api_and_its_own_audit_stream() {
        assert_eq!(
            api_name("enrollment"),
            "circle.enrollment.v1.EnrollmentService"
        );
        assert_eq!(
            api_name("accountability"),
            "circle.accountability.v1.AccountabilityService"
        );
        let mut config = Config::default();
        let spec = audit_spec(&config, "sessions");
        assert_eq!(
            (spec.name.as_str(), spec.subject_root.as_str()),
            ("SESSIONS_AUDIT", "sessions-audit")
        );
        assert_eq!(spec.retention, circle_audit::MIN_RETENTION);
        config.nats.namespace = "t1a".into();
        let spec = audit_spec(&config, "sessions");
        assert_eq!(
            (spec.name.as_str(), spec.subject_root.as_str()),
            ("SESSIONS_AUDIT_T1A", "sessions-audit-t1a"),
            "namespaced like the event log, apart from its subjects"
        );
    }
}
