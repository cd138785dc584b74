//! Circle's configuration: built-in defaults, then an optional TOML file, then
//! environment variables `CIRCLE_<SECTION>__<KEY>` (two underscores between section
//! and key, e.g. `CIRCLE_DATABASE__URL`). Only variables with the double underscore
//! are configuration; `CIRCLE_CONFIG` names the file for a service binary, and any
//! other `CIRCLE_…` variable (`CIRCLE_TEST_…`, …) is none of this crate's business —
//! except `CIRCLE_<SECTION>_<KEY>` with one underscore, a likely typo that is refused
//! rather than silently ignored. Invalid configuration fails at start with a message
//! that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub grpc: GrpcConfig,
    pub enrollment: EnrollmentConfig,
    pub sessions: SessionsConfig,
    pub accountability: AccountabilityConfig,
    pub projection: ProjectionConfig,
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub vault: VaultConfig,
}

/// The master keys that wrap every participant's data key (crypto-shredding,
/// `circle-vault`): entries `id:base64-of-32-bytes`, separated by commas or new lines,
/// the newest first. The newest wraps new data keys; the older ones only unwrap, until
/// `circle` re-wraps every data key with the newest and they can be removed. Exactly one
/// of the two is set; a service refuses to start with neither.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// A file holding the master keys (readable only by the service's user).
    pub master_keys_file: String,
    /// The master keys themselves, for a secret injected as the variable
    /// `CIRCLE_VAULT__MASTER_KEYS`.
    pub master_keys: Option<Secret>,
}

/// The shortest retention of the audit log: six years (HIPAA keeps documentation and
/// the accounting of disclosures six years, 45 CFR 164.316(b)(2) and 164.528), counted
/// as 6 × 365 days and the two leap days six years can hold.
pub const AUDIT_MIN_RETENTION_DAYS: u32 = 6 * 365 + 2;
/// The longest retention the configuration takes (a century), so a typo of a digit too
/// many is caught rather than kept.
pub const AUDIT_MAX_RETENTION_DAYS: u32 = 36_525;

/// The audit log: every read that discloses a participant's data is appended to the
/// answering service's audit stream (`<SERVICE>_AUDIT`), append-only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How long the audit streams keep a record (their `max_age`), in days: at least
    /// [`AUDIT_MIN_RETENTION_DAYS`] (six years); less is refused at start.
    pub retention_days: u32,
}

/// Who may call: every RPC needs a bearer JWT (RS256, ES256 or EdDSA) from `issuer`,
/// signed by a key of the JWKS at `jwks_file` or `jwks_url` (exactly one), and meant for
/// the called service (its `audience`, in its own section). Health is always open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The one trusted token issuer (`iss`).
    pub issuer: String,
    /// A JWKS file, read at start and re-read every `jwks_refresh_secs`.
    pub jwks_file: String,
    /// A JWKS URL (`https://…`), fetched at start and every `jwks_refresh_secs`.
    pub jwks_url: String,
    pub jwks_refresh_secs: u64,
    /// Clock skew allowed on a token's `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Whether gRPC server reflection is served (it lists the API to any caller).
    pub reflection: bool,
    /// Other services that call Circle, by identity (the `sub` of a token whose only
    /// role is `service`), each with the RPCs it may call, as
    /// `circle.<svc>.v1.<Service>/<Method>`. A service token whose identity is not here
    /// may call nothing.
    pub services: BTreeMap<String, Vec<String>>,
}

/// The servers `nats.url` lists: one URL, or several separated by commas. A comma
/// splits only where a URL (`scheme://`) follows it, so one inside a password does not.
pub fn nats_servers(url: &str) -> Vec<&str> {
    let mut servers = Vec::new();
    let mut start = 0;
    for (at, _) in url.match_indices(',') {
        let rest = url[at + 1..].trim_start();
        let scheme = rest.split("://").next().unwrap_or_default();
        if rest.contains("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        {
            servers.push(url[start..at].trim());
            start = at + 1;
        }
    }
    servers.push(url[start..].trim());
    servers
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// One server, or several of a cluster comma-separated (tried in turn when
    /// connecting; the client also learns the cluster's other servers from the one it
    /// reaches).
    pub url: String,
    /// Stream replicas: 1 in development, 3 in production.
    pub replicas: usize,
    /// Seconds the server remembers a request id for deduplication.
    pub duplicate_window_secs: u64,
    /// What opening an existing stream (events or audit) does when its replicas or
    /// duplicate window differ from `replicas` / `duplicate_window_secs`: `refuse`
    /// (the default: the service does not start) or `warn` (it starts, and logs the
    /// difference).
    pub stream_mismatch: StreamMismatch,
    /// Appended to stream names and subject roots so several deployments (or tests)
    /// can share one NATS server. Empty in production.
    pub namespace: String,
    /// PEM file of the CA that signed the NATS server's certificate (else the system's
    /// roots). TLS is used when the URL is `tls://`, when `tls_required` is set, or when
    /// the server requires it.
    pub tls_ca: Option<PathBuf>,
    /// PEM files of this service's client certificate and key, for a server that
    /// verifies clients (`verify: true` in its `tls` block). Both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse to talk to a server that does not offer TLS.
    pub tls_required: bool,
    /// Credentials, at most one kind: `user` and `password`; a `token`; a
    /// `credentials_file` (`.creds`: a user JWT and its nkey seed, decentralized auth);
    /// or an `nkey_seed_file` (a file holding the seed of an nkey user, `SU…`).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub credentials_file: Option<PathBuf>,
    pub nkey_seed_file: Option<PathBuf>,
}

/// What to do with an existing stream whose replicas or duplicate window differ from
/// the configuration (`nats.stream_mismatch`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamMismatch {
    /// Refuse the stream, naming what differs: the configuration says how the events
    /// are kept, and a stream that keeps them otherwise is not silently used.
    #[default]
    Refuse,
    /// Use the stream as it is and log a warning naming what differs (while a change
    /// of the stream is rolled out, say).
    Warn,
}

/// A configured secret (a password, a token): kept out of `Debug`, so a configuration
/// printed while debugging shows that it is set, not what it is.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(…)")
    }
}

/// How the three services serve gRPC (one section for all: they run side by side and
/// share a certificate or each has its own file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// PEM file of the server's certificate chain (its own certificate first) and of its
    /// private key (PKCS#8, PKCS#1 or SEC1). When both are set the services serve TLS
    /// only; when neither is, plaintext (development).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM file of the CA whose client certificates are accepted (mTLS for service
    /// callers); a presented certificate it did not sign fails the handshake.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate (otherwise they are
    /// served too, and identified by their token alone).
    pub require_client_cert: bool,
    /// Calls a service runs at once on its API (not health or reflection); one more is
    /// answered RESOURCE_EXHAUSTED (OVERLOADED) at once.
    pub max_in_flight: usize,
    /// Calls of one caller a service runs at once (the caller as authenticated, else
    /// the peer's IP address); one more is RESOURCE_EXHAUSTED (CALLER_CONCURRENCY).
    pub max_in_flight_per_caller: usize,
    /// At shutdown (SIGTERM or Ctrl-C) the service reports NOT_SERVING and goes on
    /// serving this long before it refuses new calls, so load balancers and
    /// Kubernetes endpoints stop sending it calls first; then calls in flight finish.
    pub drain_delay_ms: u64,
    /// After the drain delay, how long calls and streams in flight get to finish;
    /// those still running then are cut off and the service stops (an unread stream
    /// must not hold a replica forever).
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The runtime role's connection: every read and write of the services. The role
    /// must be neither superuser nor BYPASSRLS nor an owner of the read-model tables
    /// (row-level security holds it; a service refuses to start otherwise).
    pub url: String,
    /// The owner's connection, for DDL only: the schema migrations each service runs at
    /// start (tables, row-level security, grants to the runtime role) and a
    /// projection's rebuild. Same database as `url`. Required: empty is refused (a
    /// service cannot wall its tables without their owner).
    pub owner_url: String,
    /// Connections of the runtime pool (the owner's pool keeps at most two, and none
    /// while idle).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Where the gRPC server listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How long a seat offered from the waitlist stays open.
    pub seat_offer_hours: u32,
    /// How often due offer timers are looked for.
    pub timer_poll_ms: u64,
    /// The token audience (`aud`) this service accepts.
    pub audience: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Where the gRPC server listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Sessions are generated from schedules this many days ahead…
    pub horizon_days: u32,
    /// …and this many days back (for a schedule that starts in the past).
    pub lookback_days: u32,
    /// How often schedules are checked for sessions to generate.
    pub materialize_poll_ms: u64,
    /// The billing code of a group psychotherapy line.
    pub billing_code: String,
    /// Payers' cap on attendees for group psychotherapy; sessions above are flagged.
    pub payer_cap: u32,
    /// The token audience (`aud`) this service accepts.
    pub audience: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountabilityConfig {
    /// Where the gRPC server listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How often cadences are checked for nudges and milestones.
    pub nudge_poll_ms: u64,
    /// Quiet hours where a clinic set none, local "HH:MM" (no nudges from start to end).
    pub quiet_hours_start: String,
    pub quiet_hours_end: String,
    /// The token audience (`aud`) this service accepts.
    pub audience: String,
    /// The fewest members whose outcome measures a group board's trend may show (a
    /// week with fewer contributors is withheld, so no one's score can be inferred);
    /// at least `MIN_GROUP_TREND_MEMBERS`.
    pub group_trend_min_members: u32,
}

/// Below three, a member who knows their own score could infer another's.
pub const MIN_GROUP_TREND_MEMBERS: u32 = 3;
/// `accountability.group_trend_min_members` when the configuration says nothing.
pub const DEFAULT_GROUP_TREND_MIN_MEMBERS: u32 = 5;
/// The most `accountability.group_trend_min_members` may be.
pub const MAX_GROUP_TREND_MEMBERS: u32 = 1_000;

impl AccountabilityConfig {
    /// The default quiet hours in minutes after local midnight.
    pub fn quiet_hours_minutes(&self) -> Option<(u32, u32)> {
        let minute = |text: &str| -> Option<u32> {
            let (hours, minutes) = text.split_once(':')?;
            let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
            (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
        };
        Some((
            minute(&self.quiet_hours_start)?,
            minute(&self.quiet_hours_end)?,
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectionConfig {
    /// Messages fetched and applied in one transaction.
    pub batch_size: usize,
    /// Seconds before an unacknowledged message is delivered again.
    pub ack_wait_secs: u64,
    /// Attempts at a failing message before it goes to the dead letters.
    pub max_attempts: u32,
    /// How long a query with a consistency token waits for its projection.
    pub read_your_writes_timeout_ms: u64,
    /// How often a halted projection tries the event it halted on again.
    pub halt_retry_ms: u64,
    /// How many partitions each projection's work is split into (1 to 64; process
    /// managers are never split): a network's events are one partition's, and the
    /// replicas of a service share the partitions out, each written by one replica at
    /// a time. Changing it rebuilds the read models once no replica runs the old count
    /// (those keep writing meanwhile).
    pub partitions: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives, e.g. `info,circle_enrollment=debug`.
    pub log_filter: String,
    /// `text` (for people, the default) or `json` (one object a line, for a log
    /// pipeline). Both show the trace and span id of a line logged inside a span.
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`; spans and metrics are exported
    /// only when set.
    pub otlp_endpoint: Option<String>,
    /// How often metrics are exported, and the longest a finished span waits to be
    /// exported, in milliseconds.
    pub export_interval_ms: u64,
    /// `service.instance.id` of this process's telemetry; empty: a fresh UUID at start.
    pub instance_id: String,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                replicas: 1,
                duplicate_window_secs: 120,
                stream_mismatch: StreamMismatch::Refuse,
                namespace: String::new(),
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
                tls_required: false,
                user: None,
                password: None,
                token: None,
                credentials_file: None,
                nkey_seed_file: None,
            },
            database: DatabaseConfig {
                url: "postgres://circle_service:circle_service@127.0.0.1:5432/circle".into(),
                owner_url: "postgres://postgres:postgres@127.0.0.1:5432/circle".into(),
                max_connections: 10,
            },
            grpc: GrpcConfig {
                tls_cert: None,
                tls_key: None,
                client_ca: None,
                require_client_cert: false,
                max_in_flight: 512,
                max_in_flight_per_caller: 64,
                drain_delay_ms: 2000,
                drain_timeout_ms: 10_000,
            },
            enrollment: EnrollmentConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
                seat_offer_hours: 48,
                timer_poll_ms: 1_000,
                audience: "circle-enrollment".into(),
            },
            sessions: SessionsConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
                horizon_days: 28,
                lookback_days: 7,
                materialize_poll_ms: 5_000,
                billing_code: "90853".into(),
                payer_cap: 12,
                audience: "circle-sessions".into(),
            },
            accountability: AccountabilityConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50053)),
                nudge_poll_ms: 60_000,
                quiet_hours_start: "21:00".into(),
                quiet_hours_end: "08:00".into(),
                audience: "circle-accountability".into(),
                group_trend_min_members: DEFAULT_GROUP_TREND_MIN_MEMBERS,
            },
            projection: ProjectionConfig {
                batch_size: 128,
                ack_wait_secs: 30,
                max_attempts: 5,
                read_your_writes_timeout_ms: 5_000,
                halt_retry_ms: 30_000,
                partitions: 1,
            },
            telemetry: TelemetryConfig {
                log_filter: "info".into(),
                log_format: LogFormat::Text,
                otlp_endpoint: None,
                export_interval_ms: 10_000,
                instance_id: String::new(),
            },
            auth: AuthConfig {
                issuer: String::new(),
                jwks_file: String::new(),
                jwks_url: String::new(),
                jwks_refresh_secs: 300,
                leeway_secs: 30,
                reflection: true,
                services: BTreeMap::new(),
            },
            audit: AuditConfig {
                retention_days: AUDIT_MIN_RETENTION_DAYS,
            },
            vault: VaultConfig {
                master_keys_file: String::new(),
                master_keys: None,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(
        "invalid configuration: {variable}: configuration variables separate section and \
         key with two underscores; did you mean {meant}?"
    )]
    OneUnderscore { variable: String, meant: String },
    #[error("invalid configuration: {variable}: cannot read {path}: {reason}")]
    ValueFile {
        variable: String,
        path: String,
        reason: String,
    },
    #[error(
        "invalid configuration: {variable}: {key} is not read from a file (it is a path \
         already, a number or a switch); set {instead} instead"
    )]
    NotFromFile {
        variable: String,
        key: String,
        instead: String,
    },
    #[error("invalid configuration: {variable} and {other} both set {key}; set one")]
    BothSet {
        variable: String,
        other: String,
        key: String,
    },
}

/// Which services' sections a configuration is validated for: a service binary
/// validates only its own (`enrollment`, `sessions`, `accountability`) besides the
/// shared ones, so a value meant for another service never stops it; `circle dev` and
/// the `circle` tool validate every section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    All,
    Service(&'a str),
}

impl Scope<'_> {
    fn covers(self, service: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Service(own) => own == service,
        }
    }
}

/// The variable that names the TOML file of a service binary.
pub const FILE_VARIABLE: &str = "CIRCLE_CONFIG";
const PREFIX: &str = "CIRCLE_";
const SECTIONS: [&str; 11] = [
    "nats",
    "database",
    "grpc",
    "enrollment",
    "sessions",
    "accountability",
    "projection",
    "telemetry",
    "auth",
    "audit",
    "vault",
];

/// Whether an environment variable is configuration: `CIRCLE_<SECTION>__<KEY>`.
pub fn is_config_variable(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|key| key.contains("__"))
}

/// Refuses `CIRCLE_<SECTION>_<KEY>` (one underscore) where `<KEY>` is a real key of
/// that section, which would otherwise be ignored; every other name passes (other
/// programs' variables, such as the `CIRCLE_SESSIONS_PORT` service links Kubernetes
/// injects for a Service named `circle-sessions`, must not stop a service).
pub fn check_variable_names<I, S>(names: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    for name in names {
        let name = name.as_ref();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if rest.contains("__") {
            continue;
        }
        for section in SECTIONS {
            let Some(key) = rest
                .get(..section.len())
                .filter(|head| head.eq_ignore_ascii_case(section))
                .and_then(|_| rest[section.len()..].strip_prefix('_'))
                .filter(|key| {
                    // `…_<KEY>_FILE` with one underscore is the same typo.
                    is_key_of(section, key)
                        || key
                            .strip_suffix("_FILE")
                            .or_else(|| key.strip_suffix("_file"))
                            .is_some_and(|key| is_key_of(section, key))
                })
            else {
                continue;
            };
            return Err(ConfigError::OneUnderscore {
                variable: name.to_owned(),
                meant: format!("{PREFIX}{}__{key}", &rest[..section.len()]),
            });
        }
    }
    Ok(())
}

/// Whether `key` (any case) is a key of `section` of [`Config`], optional ones included.
fn is_key_of(section: &str, key: &str) -> bool {
    let mut every_key_set = Config::default();
    every_key_set.telemetry.otlp_endpoint = Some(String::new());
    let nats = &mut every_key_set.nats;
    nats.tls_ca = Some(PathBuf::new());
    nats.tls_cert = Some(PathBuf::new());
    nats.tls_key = Some(PathBuf::new());
    nats.user = Some(String::new());
    nats.password = Some(Secret::new(""));
    nats.token = Some(Secret::new(""));
    nats.credentials_file = Some(PathBuf::new());
    nats.nkey_seed_file = Some(PathBuf::new());
    every_key_set.vault.master_keys = Some(Secret::new(""));
    let grpc = &mut every_key_set.grpc;
    grpc.tls_cert = Some(PathBuf::new());
    grpc.tls_key = Some(PathBuf::new());
    grpc.client_ca = Some(PathBuf::new());
    Figment::from(Serialized::defaults(every_key_set))
        .find_value(section)
        .ok()
        .and_then(|value| value.into_dict())
        .is_some_and(|keys| keys.contains_key(&key.to_ascii_lowercase()))
}

fn invalid(key: &'static str, reason: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    })
}

/// The keys whose value `CIRCLE_<SECTION>__<KEY>_FILE` may give from a file: the
/// secrets and addresses a deployment mounts (text values; the file's content is the
/// value as is). Keys that are paths already (`grpc.tls_key`, `auth.jwks_file`, …)
/// and numbers or switches are not read from files.
const FILE_KEYS: [&str; 10] = [
    "database.url",
    "database.owner_url",
    "nats.url",
    "nats.user",
    "nats.password",
    "nats.token",
    "vault.master_keys",
    "auth.issuer",
    "auth.jwks_url",
    "telemetry.otlp_endpoint",
];

/// The largest file a `…_FILE` variable may name.
const MAX_VALUE_FILE_BYTES: u64 = 64 * 1024;

/// The section and key a variable `CIRCLE_<SECTION>__<KEY>_FILE` would name, when
/// `<key>` is a key of the section and `<key>_file` is not (then the variable sets that
/// `…_file` key itself, e.g. `CIRCLE_AUTH__JWKS_FILE`).
fn file_variable_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PREFIX).unwrap_or(name);
    let (section, key) = rest.split_once("__")?;
    let key = key
        .strip_suffix("_FILE")
        .or_else(|| key.strip_suffix("_file"))?;
    let section = section.to_ascii_lowercase();
    let key = key.to_ascii_lowercase();
    (SECTIONS.contains(&section.as_str())
        && is_key_of(&section, &key)
        && !is_key_of(&section, &format!("{key}_file")))
    .then(|| format!("{section}.{key}"))
}

/// The values of the `…_FILE` variables among `variables` (name, value): each file
/// read now (a trailing newline dropped), as (dotted key, value); refused when the
/// file cannot be read (naming the variable and the path, never the content) or when
/// the key is also set by its own variable.
pub fn file_values<I>(variables: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let variables: Vec<(String, String)> = variables.into_iter().collect();
    let mut values = Vec::new();
    for (name, path) in &variables {
        let Some(key) = file_variable_key(name) else {
            continue;
        };
        // The variable that sets the key itself (the name less `_FILE`).
        let direct = name[..name.len() - "_FILE".len()].to_owned();
        if !FILE_KEYS.contains(&key.as_str()) {
            // A path key (whose value would become the file's content: a private key
            // in an error message) or a number or switch.
            return Err(ConfigError::NotFromFile {
                variable: name.clone(),
                key,
                instead: direct,
            });
        }
        if let Some((other, _)) = variables
            .iter()
            .find(|(other, _)| other.eq_ignore_ascii_case(&direct))
        {
            return Err(ConfigError::BothSet {
                variable: name.clone(),
                other: other.clone(),
                key,
            });
        }
        let unreadable = |reason: String| ConfigError::ValueFile {
            variable: name.clone(),
            path: path.clone(),
            reason,
        };
        // A value, not a document: a file larger than any URL, password or key list is
        // the wrong file (and is not read whole).
        let size = std::fs::metadata(path)
            .map_err(|error| unreadable(error.kind().to_string()))?
            .len();
        if size > MAX_VALUE_FILE_BYTES {
            return Err(unreadable(format!(
                "{size} bytes, over the {MAX_VALUE_FILE_BYTES} a value may have"
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|error| unreadable(error.kind().to_string()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        values.push((key, value.to_owned()));
    }
    Ok(values)
}

impl Config {
    /// Defaults, then `file` if given (it must exist), then the `CIRCLE_<SECTION>__<KEY>`
    /// variables of the process environment (others are ignored, see the crate docs),
    /// and the `CIRCLE_<SECTION>__<KEY>_FILE` ones (the key's value is the named
    /// file's content); every section validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_for(file, Scope::All)
    }

    /// [`Config::load`], validating the shared sections and those `scope` covers.
    pub fn load_for(file: Option<&Path>, scope: Scope<'_>) -> Result<Self, ConfigError> {
        check_variable_names(
            std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()),
        )?;
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let variables = Env::prefixed(PREFIX)
            .filter(|key| key.as_str().contains("__") && file_variable_key(key.as_str()).is_none())
            .split("__");
        figment = figment.merge(variables);
        let from_files = file_values(
            std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .filter(|(name, _)| name.starts_with(PREFIX)),
        )?;
        for (key, value) in from_files {
            figment = figment.merge(Serialized::default(&key, value));
        }
        Self::extract_for(figment, scope)
    }

    /// Extracts and validates a configuration from any figment (tests use this to
    /// layer values without touching the process environment).
    pub fn extract(figment: Figment) -> Result<Self, ConfigError> {
        Self::extract_for(figment, Scope::All)
    }

    /// [`Config::extract`], validating the shared sections and those `scope` covers.
    pub fn extract_for(figment: Figment, scope: Scope<'_>) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate_for(scope)?;
        Ok(config)
    }

    /// Validates every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Scope::All)
    }

    /// Validates the shared sections and the services' sections `scope` covers.
    pub fn validate_for(&self, scope: Scope<'_>) -> Result<(), ConfigError> {
        if nats_servers(&self.nats.url)
            .iter()
            .any(|url| !url.starts_with("nats://") && !url.starts_with("tls://"))
        {
            return invalid(
                "nats.url",
                "must start with nats:// or tls:// (several servers: comma-separated, each so)",
            );
        }
        if !(1..=5).contains(&self.nats.replicas) {
            return invalid("nats.replicas", "must be between 1 and 5");
        }
        if !(1..=86_400).contains(&self.nats.duplicate_window_secs) {
            return invalid(
                "nats.duplicate_window_secs",
                "must be between 1 and 86400 (a day)",
            );
        }
        if !self
            .nats
            .namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return invalid("nats.namespace", "only lowercase letters and digits");
        }
        self.validate_nats_security()?;
        self.validate_grpc()?;
        let postgres_url =
            |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres_url(&self.database.url) {
            return invalid("database.url", "must start with postgres://");
        }
        if self.database.owner_url.trim().is_empty() {
            return invalid(
                "database.owner_url",
                "must be set: the connection of the role that owns the schemas \
                 (migrations run as it; database.url is the runtime role)",
            );
        }
        if !postgres_url(&self.database.owner_url) {
            return invalid("database.owner_url", "must start with postgres://");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.projection.batch_size == 0 || self.projection.batch_size > 10_000 {
            return invalid("projection.batch_size", "must be between 1 and 10000");
        }
        if self.projection.halt_retry_ms == 0 {
            return invalid("projection.halt_retry_ms", "must be at least 1");
        }
        if self.projection.max_attempts == 0 {
            return invalid("projection.max_attempts", "must be at least 1");
        }
        if !(1..=64).contains(&self.projection.partitions) {
            return invalid("projection.partitions", "must be between 1 and 64");
        }
        if scope.covers("enrollment") {
            self.validate_enrollment()?;
        }
        if scope.covers("sessions") {
            self.validate_sessions()?;
        }
        if scope.covers("accountability") {
            self.validate_accountability()?;
        }
        self.validate_shared()
    }

    fn validate_enrollment(&self) -> Result<(), ConfigError> {
        if !(1..=24 * 30).contains(&self.enrollment.seat_offer_hours) {
            return invalid("enrollment.seat_offer_hours", "must be between 1 and 720");
        }
        if !(10..=60_000).contains(&self.enrollment.timer_poll_ms) {
            return invalid("enrollment.timer_poll_ms", "must be between 10 and 60000");
        }
        Ok(())
    }

    fn validate_sessions(&self) -> Result<(), ConfigError> {
        if !(1..=366).contains(&self.sessions.horizon_days) {
            return invalid("sessions.horizon_days", "must be between 1 and 366");
        }
        if self.sessions.lookback_days > 366 {
            return invalid("sessions.lookback_days", "must be at most 366");
        }
        if !(10..=600_000).contains(&self.sessions.materialize_poll_ms) {
            return invalid(
                "sessions.materialize_poll_ms",
                "must be between 10 and 600000",
            );
        }
        if self.sessions.billing_code.trim().is_empty() {
            return invalid("sessions.billing_code", "must not be empty");
        }
        if self.sessions.payer_cap == 0 {
            return invalid("sessions.payer_cap", "must be at least 1");
        }
        Ok(())
    }

    fn validate_accountability(&self) -> Result<(), ConfigError> {
        if self.accountability.quiet_hours_minutes().is_none() {
            return invalid(
                "accountability.quiet_hours_start",
                "quiet hours must be local times HH:MM",
            );
        }
        if !(10..=3_600_000).contains(&self.accountability.nudge_poll_ms) {
            return invalid(
                "accountability.nudge_poll_ms",
                "must be between 10 and 3600000",
            );
        }
        if !(MIN_GROUP_TREND_MEMBERS..=MAX_GROUP_TREND_MEMBERS)
            .contains(&self.accountability.group_trend_min_members)
        {
            return invalid(
                "accountability.group_trend_min_members",
                &format!(
                    "must be between {MIN_GROUP_TREND_MEMBERS} and {MAX_GROUP_TREND_MEMBERS} \
                     (fewer would let a member infer another's score)"
                ),
            );
        }
        Ok(())
    }

    fn validate_shared(&self) -> Result<(), ConfigError> {
        if !(10..=600_000).contains(&self.telemetry.export_interval_ms) {
            return invalid(
                "telemetry.export_interval_ms",
                "must be between 10 and 600000",
            );
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !endpoint.starts_with("http://")
            && !endpoint.starts_with("https://")
        {
            return invalid(
                "telemetry.otlp_endpoint",
                "must start with http:// or https:// (OTLP over gRPC, e.g. http://127.0.0.1:4317)",
            );
        }
        if self.projection.ack_wait_secs == 0 {
            return invalid("projection.ack_wait_secs", "must be at least 1");
        }
        if !self.vault.master_keys_file.is_empty() && self.vault.master_keys.is_some() {
            return invalid(
                "vault.master_keys",
                "set vault.master_keys_file or vault.master_keys, not both",
            );
        }
        if !(AUDIT_MIN_RETENTION_DAYS..=AUDIT_MAX_RETENTION_DAYS)
            .contains(&self.audit.retention_days)
        {
            return invalid(
                "audit.retention_days",
                &format!(
                    "must be between {AUDIT_MIN_RETENTION_DAYS} (six years: disclosures are \
                     accounted for six years) and {AUDIT_MAX_RETENTION_DAYS}"
                ),
            );
        }
        self.validate_auth()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        let auth = &self.auth;
        if !auth.jwks_file.is_empty() && !auth.jwks_url.is_empty() {
            return invalid(
                "auth.jwks_url",
                "set auth.jwks_file or auth.jwks_url, not both",
            );
        }
        if !auth.jwks_url.is_empty() && !auth.jwks_url.starts_with("https://") {
            // Keys fetched in the clear could be swapped on the way: plain HTTP only
            // from this machine.
            let loopback = auth
                .jwks_url
                .strip_prefix("http://")
                .and_then(|rest| rest.split(['/', '?']).next())
                .map(|authority| {
                    let host = match authority.rsplit_once(':') {
                        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                        _ => authority,
                    };
                    host.trim_start_matches('[').trim_end_matches(']')
                })
                .is_some_and(|host| {
                    host.eq_ignore_ascii_case("localhost")
                        || host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|address| address.is_loopback())
                });
            if !loopback {
                return invalid(
                    "auth.jwks_url",
                    "must start with https:// (http:// only to a loopback host)",
                );
            }
        }
        if !(10..=86_400).contains(&auth.jwks_refresh_secs) {
            return invalid("auth.jwks_refresh_secs", "must be between 10 and 86400");
        }
        if auth.leeway_secs > 300 {
            return invalid("auth.leeway_secs", "must be at most 300");
        }
        for (key, audience) in [
            ("enrollment.audience", &self.enrollment.audience),
            ("sessions.audience", &self.sessions.audience),
            ("accountability.audience", &self.accountability.audience),
        ] {
            if audience.trim().is_empty() {
                return invalid(key, "must not be empty");
            }
        }
        for (identity, methods) in &auth.services {
            let id_like = !identity.is_empty()
                && !identity.starts_with('-')
                && identity.len() <= 63
                && identity
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !id_like {
                return invalid(
                    "auth.services",
                    &format!(
                        "{identity:?} is not a service identity (lowercase letters, digits, '-')"
                    ),
                );
            }
            for method in methods {
                let well_formed = method.split_once('/').is_some_and(|(service, name)| {
                    service.starts_with("circle.") && !name.is_empty() && !name.contains('/')
                });
                if !well_formed {
                    return invalid(
                        "auth.services",
                        &format!("{method:?} is not an RPC (circle.<svc>.v1.<Service>/<Method>)"),
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_nats_security(&self) -> Result<(), ConfigError> {
        let nats = &self.nats;
        if nats.tls_cert.is_some() != nats.tls_key.is_some() {
            return invalid(
                "nats.tls_cert",
                "nats.tls_cert and nats.tls_key go together",
            );
        }
        if nats.user.is_some() != nats.password.is_some() {
            return invalid("nats.user", "nats.user and nats.password go together");
        }
        let kinds = [
            nats.user.is_some(),
            nats.token.is_some(),
            nats.credentials_file.is_some(),
            nats.nkey_seed_file.is_some(),
        ];
        if kinds.into_iter().filter(|set| *set).count() > 1 {
            return invalid(
                "nats.user",
                "set one kind of NATS credentials: user and password, token, \
                 credentials_file or nkey_seed_file",
            );
        }
        Ok(())
    }

    fn validate_grpc(&self) -> Result<(), ConfigError> {
        let grpc = &self.grpc;
        if grpc.tls_cert.is_some() != grpc.tls_key.is_some() {
            return invalid(
                "grpc.tls_cert",
                "grpc.tls_cert and grpc.tls_key go together",
            );
        }
        if grpc.client_ca.is_some() && grpc.tls_cert.is_none() {
            return invalid(
                "grpc.client_ca",
                "client certificates need TLS: set grpc.tls_cert and grpc.tls_key",
            );
        }
        if grpc.require_client_cert && grpc.client_ca.is_none() {
            return invalid(
                "grpc.require_client_cert",
                "requiring client certificates needs grpc.client_ca",
            );
        }
        if !(1..=100_000).contains(&grpc.max_in_flight) {
            return invalid("grpc.max_in_flight", "must be between 1 and 100000");
        }
        if grpc.drain_delay_ms > 300_000 {
            return invalid(
                "grpc.drain_delay_ms",
                "must be at most 300000 (five minutes)",
            );
        }
        if !(1..=300_000).contains(&grpc.drain_timeout_ms) {
            return invalid(
                "grpc.drain_timeout_ms",
                "must be between 1 and 300000 (five minutes)",
            );
        }
        if !(1..=grpc.max_in_flight).contains(&grpc.max_in_flight_per_caller) {
            return invalid(
                "grpc.max_in_flight_per_caller",
                "must be between 1 and grpc.max_in_flight",
            );
        }
        Ok(())
    }

    /// The stream name for a service, e.g. `ENROLLMENT` (namespaced in tests).
    pub fn stream_name(&self, service: &str) -> String {
        let base = service.to_ascii_uppercase();
        if self.nats.namespace.is_empty() {
            base
        } else {
            format!("{base}_{}", self.nats.namespace.to_ascii_uppercase())
        }
    }

    /// The first subject token of a service's stream, e.g. `enrollment`.
    pub fn subject_root(&self, service: &str) -> String {
        if self.nats.namespace.is_empty() {
            service.to_owned()
        } else {
            format!("{service}-{}", self.nats.namespace)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("circle-config-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write the temp file");
        path
    }

    #[test]
    fn a_file_variable_gives_its_key_the_files_content() {
        let url = temp_file("url", "postgres://app:s3cret@db:5432/circle\n");
        let password = temp_file("password", "p4ss");
        let values = file_values([
            (
                "CIRCLE_DATABASE__URL_FILE".to_owned(),
                url.display().to_string(),
            ),
            (
                "CIRCLE_NATS__PASSWORD_FILE".to_owned(),
                password.display().to_string(),
            ),
            // A key that is itself a file path is set by its own variable.
            (
                "CIRCLE_AUTH__JWKS_FILE".to_owned(),
                "/etc/jwks.json".to_owned(),
            ),
            ("CIRCLE_DATABASE__URL_FILES".to_owned(), "/x".to_owned()),
            ("CIRCLE_NOSECTION__URL_FILE".to_owned(), "/x".to_owned()),
        ])
        .expect("readable files");
        assert_eq!(
            values,
            vec![
                (
                    "database.url".to_owned(),
                    "postgres://app:s3cret@db:5432/circle".to_owned()
                ),
                ("nats.password".to_owned(), "p4ss".to_owned()),
            ]
        );
        let figment = values.into_iter().fold(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Serialized::default("nats.user", "enrollment")),
            |figment, (key, value)| figment.merge(Serialized::default(&key, value)),
        );
        let config = Config::extract(figment).expect("valid");
        assert_eq!(config.database.url, "postgres://app:s3cret@db:5432/circle");
        assert_eq!(
            config.nats.password.as_ref().map(Secret::expose),
            Some("p4ss")
        );
        let _ = std::fs::remove_file(url);
        let _ = std::fs::remove_file(password);
    }

    #[test]
    fn a_path_or_number_key_is_not_read_from_a_file() {
        for (variable, key) in [
            ("CIRCLE_GRPC__TLS_KEY_FILE", "grpc.tls_key"),
            ("CIRCLE_NATS__REPLICAS_FILE", "nats.replicas"),
        ] {
            let refused = file_values([(variable.to_owned(), "/etc/hostname".to_owned())])
                .expect_err("not from a file");
            let message = refused.to_string();
            assert!(
                message.contains(variable) && message.contains(key),
                "{message}"
            );
        }
        let typo = check_variable_names(["CIRCLE_DATABASE_URL_FILE"]).expect_err("one underscore");
        assert!(
            typo.to_string().contains("CIRCLE_DATABASE__URL_FILE"),
            "{typo}"
        );
    }

    #[test]
    fn a_file_variable_is_refused_when_unreadable_or_when_its_key_is_set_too() {
        let missing = file_values([(
            "CIRCLE_DATABASE__URL_FILE".to_owned(),
            "/nonexistent/circle-url".to_owned(),
        )])
        .expect_err("no such file");
        let message = missing.to_string();
        assert!(
            message.contains("CIRCLE_DATABASE__URL_FILE")
                && message.contains("/nonexistent/circle-url"),
            "{message}"
        );
        let url = temp_file("both", "postgres://a@b/c");
        let both = file_values([
            (
                "CIRCLE_DATABASE__URL".to_owned(),
                "postgres://x@y/z".to_owned(),
            ),
            (
                "CIRCLE_DATABASE__URL_FILE".to_owned(),
                url.display().to_string(),
            ),
        ])
        .expect_err("set twice");
        assert!(both.to_string().contains("database.url"), "{both}");
        let huge = temp_file("huge", &"x".repeat(70 * 1024));
        let refused = file_values([(
            "CIRCLE_NATS__PASSWORD_FILE".to_owned(),
            huge.display().to_string(),
        )])
        .expect_err("too large for a value");
        assert!(refused.to_string().contains("over the"), "{refused}");
        let _ = std::fs::remove_file(huge);
        let _ = std::fs::remove_file(url);
    }

    #[test]
    fn a_service_validates_only_its_own_section_besides_the_shared_ones() {
        let mut config = Config::default();
        config.sessions.horizon_days = 0;
        assert!(config.validate_for(Scope::Service("enrollment")).is_ok());
        assert!(
            config
                .validate_for(Scope::Service("accountability"))
                .is_ok()
        );
        let refused = config
            .validate_for(Scope::Service("sessions"))
            .expect_err("its own section");
        assert!(
            refused.to_string().contains("sessions.horizon_days"),
            "{refused}"
        );
        assert!(
            config.validate().is_err(),
            "circle dev validates every section"
        );
        // The shared sections hold for every service.
        let mut config = Config::default();
        config.projection.batch_size = 0;
        assert!(config.validate_for(Scope::Service("enrollment")).is_err());
    }

    #[test]
    fn a_projection_is_split_into_one_to_sixty_four_partitions() {
        for (partitions, valid) in [(0, false), (1, true), (8, true), (64, true), (65, false)] {
            let mut config = Config::default();
            config.projection.partitions = partitions;
            let checked = config.validate_for(Scope::Service("sessions"));
            assert_eq!(checked.is_ok(), valid, "{partitions}: {checked:?}");
            if let Err(refused) = checked {
                assert!(
                    refused.to_string().contains("projection.partitions"),
                    "{refused}"
                );
            }
        }
    }

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_are_refused() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[nats]\nreplicas = 3\n"));
        let config = Config::extract(figment).expect("valid");
        assert_eq!(config.nats.replicas, 3);
        assert_eq!(config.database, Config::default().database);

        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[nats]\nreplica = 3\n"));
        let error = Config::extract(figment).expect_err("typo must fail");
        assert!(error.to_string().contains("replica"), "{error}");
    }

    #[test]
    fn the_example_file_is_the_defaults_and_names_every_key() {
        let example = include_str!("../../../deploy/circle.example.toml");
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(example));
        let loaded = Config::extract(figment).expect("the example is valid");
        assert_eq!(loaded, Config::default());
        let every = toml_keys(example);
        let mut expected = Config::default();
        expected.telemetry.otlp_endpoint = Some(String::new());
        for (section, keys) in Figment::from(Serialized::defaults(expected))
            .extract::<BTreeMap<String, BTreeMap<String, figment::value::Value>>>()
            .expect("sections")
        {
            for key in keys.keys() {
                if section == "auth" && key == "services" {
                    continue;
                }
                assert!(
                    every.contains(&format!("{section}.{key}")),
                    "the example does not name {section}.{key}"
                );
            }
        }
    }

    /// `section.key` of every key in a TOML text, commented-out ones included.
    fn toml_keys(text: &str) -> Vec<String> {
        let mut section = String::new();
        let mut keys = Vec::new();
        for line in text.lines() {
            let line = line.trim().trim_start_matches("# ");
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                section = name.to_owned();
            } else if let Some((key, _)) = line.split_once(" = ") {
                keys.push(format!("{section}.{}", key.trim()));
            }
        }
        keys
    }

    #[test]
    fn jwks_urls_are_https_except_to_this_machine() {
        let check = |url: &str| {
            Config::extract(
                Figment::from(Serialized::defaults(Config::default()))
                    .merge(Toml::string(&format!("[auth]\njwks_url = {url:?}\n"))),
            )
            .map(|_| ())
            .map_err(|error| error.to_string())
        };
        assert!(check("https://idp.example/jwks.json").is_ok());
        assert!(check("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(check("http://localhost/jwks").is_ok());
        assert!(check("http://[::1]:9000/jwks").is_ok());
        for insecure in [
            "http://idp.example/jwks.json",
            "http://127.0.0.1.evil.example/jwks",
            "ftp://idp.example/jwks",
        ] {
            assert!(
                check(insecure).is_err_and(|error| error.contains("auth.jwks_url")),
                "{insecure}"
            );
        }
    }

    #[test]
    fn a_group_trend_needs_at_least_three_members() {
        assert_eq!(Config::default().accountability.group_trend_min_members, 5);
        for (members, valid) in [
            (0, false),
            (2, false),
            (3, true),
            (1000, true),
            (1001, false),
        ] {
            let figment =
                Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
                    &format!("[accountability]\ngroup_trend_min_members = {members}\n"),
                ));
            let loaded = Config::extract(figment);
            assert_eq!(loaded.is_ok(), valid, "{members} members");
            if let Err(error) = loaded {
                assert!(
                    error
                        .to_string()
                        .contains("accountability.group_trend_min_members"),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[database]\nurl = \"mysql://x\"\n"));
        let error = Config::extract(figment).expect_err("must fail");
        assert!(error.to_string().contains("database.url"), "{error}");
    }

    #[test]
    fn a_stream_mismatch_is_refused_or_warned_about_and_nothing_else() {
        let load = |toml: &str| {
            Config::extract(
                Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
            )
        };
        assert_eq!(
            Config::default().nats.stream_mismatch,
            StreamMismatch::Refuse
        );
        let warn = load("[nats]\nstream_mismatch = \"warn\"\n").expect("warn is a choice");
        assert_eq!(warn.nats.stream_mismatch, StreamMismatch::Warn);
        let refuse = load("[nats]\nstream_mismatch = \"refuse\"\n").expect("refuse is one");
        assert_eq!(refuse.nats.stream_mismatch, StreamMismatch::Refuse);
        for value in ["\"ignore\"", "\"Warn\"", "\"\"", "true"] {
            let error = load(&format!("[nats]\nstream_mismatch = {value}\n"))
                .expect_err("only refuse and warn");
            assert!(
                error.to_string().contains("nats.stream_mismatch"),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn telemetry_settings_are_checked_with_their_key() {
        let load = |toml: &str| {
            Config::extract(
                Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
            )
        };
        let json = load("[telemetry]\nlog_format = \"json\"\n").expect("json is a format");
        assert_eq!(json.telemetry.log_format, LogFormat::Json);
        for (toml, key) in [
            ("[telemetry]\nlog_format = \"xml\"\n", "log_format"),
            (
                "[telemetry]\nexport_interval_ms = 0\n",
                "telemetry.export_interval_ms",
            ),
            (
                "[telemetry]\notlp_endpoint = \"127.0.0.1:4317\"\n",
                "telemetry.otlp_endpoint",
            ),
        ] {
            let error = load(toml).expect_err("must fail");
            assert!(error.to_string().contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn the_owner_connection_is_required() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[database]\nowner_url = \"\"\n"));
        let error = Config::extract(figment).expect_err("must fail");
        assert!(error.to_string().contains("database.owner_url"), "{error}");
        assert!(error.to_string().contains("must be set"), "{error}");
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[database]\nowner_url = \"mysql://x\"\n"));
        let error = Config::extract(figment).expect_err("must fail");
        assert!(error.to_string().contains("database.owner_url"), "{error}");
        assert!(
            check_variable_names(["CIRCLE_DATABASE_OWNER_URL"]).is_err(),
            "a real key, so one underscore is a typo"
        );
    }

    #[test]
    fn the_audit_log_is_kept_at_least_six_years() {
        assert_eq!(
            Config::default().audit.retention_days,
            AUDIT_MIN_RETENTION_DAYS
        );
        assert_eq!(AUDIT_MIN_RETENTION_DAYS, 2192);
        for (days, valid) in [
            (AUDIT_MIN_RETENTION_DAYS - 1, false),
            (365, false),
            (0, false),
            (AUDIT_MIN_RETENTION_DAYS, true),
            (7 * 366, true),
            (AUDIT_MAX_RETENTION_DAYS + 1, false),
        ] {
            let figment = Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(&format!("[audit]\nretention_days = {days}\n")));
            let loaded = Config::extract(figment);
            assert_eq!(loaded.is_ok(), valid, "{days} days");
            if let Err(error) = loaded {
                assert!(
                    error.to_string().contains("audit.retention_days"),
                    "{error}"
                );
            }
        }
        assert!(
            check_variable_names(["CIRCLE_AUDIT_RETENTION_DAYS"]).is_err(),
            "a real key, so one underscore is a typo"
        );
    }

    #[test]
    fn only_variables_with_a_double_underscore_are_configuration() {
        assert!(is_config_variable("CIRCLE_DATABASE__URL"));
        assert!(
            is_config_variable("CIRCLE_NATS__REPLICA"),
            "a typo of a key still fails, named"
        );
        assert!(!is_config_variable("CIRCLE_CONFIG"));
        assert!(!is_config_variable("CIRCLE_TEST_DATABASE_URL"));
        assert!(!is_config_variable("DATABASE__URL"));
    }

    #[test]
    fn a_section_variable_with_one_underscore_is_refused_with_the_name_meant() {
        assert!(
            check_variable_names([
                "CIRCLE_CONFIG",
                "CIRCLE_TEST_DATABASE_URL",
                "CIRCLE_TEST_NATS_URL",
                "CIRCLE_DATABASE__URL",
                "CIRCLE_APT_UPDATED",
                "CIRCLE_NATSY",
                "PATH",
            ])
            .is_ok()
        );
        let error = check_variable_names(["CIRCLE_DATABASE_URL"]).expect_err("one underscore");
        assert!(
            error.to_string().contains("CIRCLE_DATABASE__URL"),
            "{error}"
        );
        let error = check_variable_names(["CIRCLE_Sessions_HORIZON_DAYS"]).expect_err("any case");
        assert!(
            error.to_string().contains("CIRCLE_Sessions__HORIZON_DAYS"),
            "{error}"
        );
    }

    #[test]
    fn kubernetes_service_links_do_not_stop_a_service() {
        // Kubernetes injects these for Services named circle-sessions, circle-nats, …
        assert!(
            check_variable_names([
                "CIRCLE_SESSIONS_PORT",
                "CIRCLE_SESSIONS_SERVICE_HOST",
                "CIRCLE_ENROLLMENT_PORT_50051_TCP",
                "CIRCLE_ENROLLMENT_PORT_50051_TCP_ADDR",
                "CIRCLE_NATS_SERVICE_PORT",
                "CIRCLE_DATABASE_PORT",
            ])
            .is_ok()
        );
        // A real key of the section with one underscore is still refused, an optional
        // one too.
        let error = check_variable_names(["CIRCLE_TELEMETRY_OTLP_ENDPOINT"])
            .expect_err("one underscore before a real key");
        assert!(
            error
                .to_string()
                .contains("CIRCLE_TELEMETRY__OTLP_ENDPOINT"),
            "{error}"
        );
    }

    fn with(toml: &str) -> Result<Config, ConfigError> {
        Config::extract(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
        )
    }

    #[test]
    fn grpc_tls_settings_go_together() {
        let config = with(
            "[grpc]\ntls_cert = \"/tls/server.pem\"\ntls_key = \"/tls/server.key\"\n\
             client_ca = \"/tls/clients.pem\"\nrequire_client_cert = true\n",
        )
        .expect("a full TLS section");
        assert_eq!(
            config.grpc.client_ca.as_deref(),
            Some(Path::new("/tls/clients.pem"))
        );
        for (toml, key) in [
            ("[grpc]\ntls_cert = \"/a\"\n", "grpc.tls_cert"),
            ("[grpc]\nclient_ca = \"/a\"\n", "grpc.client_ca"),
            (
                "[grpc]\nrequire_client_cert = true\n",
                "grpc.require_client_cert",
            ),
            ("[grpc]\nmax_in_flight = 0\n", "grpc.max_in_flight"),
            (
                "[grpc]\nmax_in_flight = 4\nmax_in_flight_per_caller = 5\n",
                "grpc.max_in_flight_per_caller",
            ),
        ] {
            let error = with(toml).expect_err(toml);
            assert!(error.to_string().contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn nats_credentials_are_one_kind_and_secrets_are_not_shown() {
        let config = with("[nats]\nuser = \"enrollment\"\npassword = \"hunter2\"\n")
            .expect("user and password");
        assert_eq!(
            config.nats.password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        for (toml, key) in [
            ("[nats]\nuser = \"a\"\n", "nats.user"),
            (
                "[nats]\ntoken = \"t\"\ncredentials_file = \"/a.creds\"\n",
                "nats.user",
            ),
            ("[nats]\ntls_key = \"/a\"\n", "nats.tls_cert"),
        ] {
            let error = with(toml).expect_err(toml);
            assert!(error.to_string().contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn optional_security_keys_with_one_underscore_are_refused() {
        for (variable, meant) in [
            ("CIRCLE_GRPC_TLS_CERT", "CIRCLE_GRPC__TLS_CERT"),
            ("CIRCLE_NATS_PASSWORD", "CIRCLE_NATS__PASSWORD"),
            (
                "CIRCLE_NATS_CREDENTIALS_FILE",
                "CIRCLE_NATS__CREDENTIALS_FILE",
            ),
        ] {
            let error = check_variable_names([variable]).expect_err(variable);
            assert!(error.to_string().contains(meant), "{error}");
        }
    }

    #[test]
    fn namespace_isolates_streams_and_subjects() {
        let mut config = Config::default();
        assert_eq!(config.stream_name("enrollment"), "ENROLLMENT");
        config.nats.namespace = "t1a".into();
        assert_eq!(config.stream_name("enrollment"), "ENROLLMENT_T1A");
        assert_eq!(config.subject_root("enrollment"), "enrollment-t1a");
    }
}
