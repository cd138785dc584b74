//! `circle status`: each service's streams, and each projection's position, lag and
//! dead letters, with a health every script can read.

use serde::Serialize;

use super::catalog::{self, STREAMS};
use super::{Ops, table};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamStatus {
    pub service: String,
    pub stream: String,
    /// False when the stream does not exist (yet): the numbers are then 0.
    pub exists: bool,
    pub messages: u64,
    pub last_sequence: u64,
    pub consumers: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Stopped on the message after its checkpoint (a fault of the projection, or two
    /// bad events in a row: see `circle projections skip`).
    Halted,
    CaughtUp,
    Behind,
    HasDeadLetters,
    /// Not a projection of the services (`circle` cannot tell its stream).
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Halted => "HALTED",
            Self::CaughtUp => "caught up",
            Self::Behind => "behind",
            Self::HasDeadLetters => "has dead letters",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub projection: String,
    pub service: Option<String>,
    pub schema: String,
    pub kind: Option<catalog::Kind>,
    pub stream: Option<String>,
    pub checkpoint: u64,
    pub stream_last_sequence: Option<u64>,
    /// Events of its stream not applied yet.
    pub lag: Option<u64>,
    pub dead_letters: u64,
    pub health: Health,
    pub updated_at: String,
    /// Since when it is halted (RFC 3339, UTC), if it is.
    pub halted_since: Option<String>,
}

/// What a service's gRPC health service answers for its API (readiness: NATS,
/// PostgreSQL, no halted projection, not shutting down).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceHealth {
    Serving,
    NotServing,
    Unreachable,
    /// Not asked: no address to ask at (a wildcard listen host or port 0, and no URL
    /// given), or a TLS one.
    Unknown,
}

impl ServiceHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::NotServing => "NOT SERVING",
            Self::Unreachable => "UNREACHABLE",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceStatus {
    pub service: String,
    pub url: Option<String>,
    pub health: ServiceHealth,
    /// Why it is unreachable or unknown.
    pub detail: Option<String>,
}

/// How long a service gets to answer its health check.
const HEALTH_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Asks each service's standard gRPC health service about its API, at `url` (None:
/// not asked), all at once. Plaintext gRPC only: an `https://` URL is not asked.
pub async fn probe_services(urls: Vec<(&str, Option<String>)>) -> Vec<ServiceStatus> {
    let asked: Vec<_> = urls
        .into_iter()
        .map(|(service, url)| {
            let service = service.to_owned();
            tokio::spawn(async move {
                let (health, detail) = match &url {
                    None => (
                        ServiceHealth::Unknown,
                        Some("no address: the service listens on a wildcard host or port 0; give its URL".to_owned()),
                    ),
                    Some(url) if url.starts_with("https://") => (
                        ServiceHealth::Unknown,
                        Some("TLS: the status probe speaks plaintext gRPC only".to_owned()),
                    ),
                    Some(url) => match tokio::time::timeout(HEALTH_LIMIT * 2, check(url, &service)).await {
                        Ok(Ok(true)) => (ServiceHealth::Serving, None),
                        Ok(Ok(false)) => (ServiceHealth::NotServing, None),
                        Ok(Err(error)) => (ServiceHealth::Unreachable, Some(error)),
                        Err(_) => (ServiceHealth::Unreachable, Some("no answer in time".to_owned())),
                    },
                };
                ServiceStatus {
                    service,
                    url,
                    health,
                    detail,
                }
            })
        })
        .collect();
    let mut found = Vec::new();
    for probe in asked {
        if let Ok(status) = probe.await {
            found.push(status);
        }
    }
    found
}

/// Whether `service` at `url` reports its API SERVING.
async fn check(url: &str, service: &str) -> Result<bool, String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .map_err(|error| error.to_string())?
        .connect_timeout(HEALTH_LIMIT)
        .timeout(HEALTH_LIMIT)
        .connect()
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: circle_service::api_name(service),
        })
        .await
        .map_err(|error| format!("health check failed: {}", error.message()))?
        .into_inner()
        .status();
    Ok(status == ServingStatus::Serving)
}

/// The URL `circle status` asks a service at by default: its configured listen
/// address when that names one host (a wildcard host, `0.0.0.0` as in a container,
/// says nothing of where to reach it from here; port 0 is any port): none otherwise.
pub fn default_url(listen: std::net::SocketAddr) -> Option<String> {
    if listen.port() == 0 || listen.ip().is_unspecified() {
        return None;
    }
    Some(match listen.ip() {
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", listen.port()),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", listen.port()),
    })
}

impl Status {
    /// Adds what the services answered; a service not serving or unreachable makes
    /// the status unhealthy.
    pub fn with_services(mut self, services: Vec<ServiceStatus>) -> Self {
        if services.iter().any(|service| {
            matches!(
                service.health,
                ServiceHealth::NotServing | ServiceHealth::Unreachable
            )
        }) {
            self.healthy = false;
        }
        self.services = services;
        self
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Each service's readiness, as its health service answered (empty when not
    /// asked).
    pub services: Vec<ServiceStatus>,
    pub streams: Vec<StreamStatus>,
    pub projections: Vec<ProjectionStatus>,
    /// The lag over which a projection counts as unhealthy.
    pub max_lag: u64,
    pub healthy: bool,
}

/// Reads the streams, then every checkpoint the database holds (so a projection is
/// never shown ahead of its stream by more than what arrived meanwhile).
pub async fn status(ops: &Ops, max_lag: u64) -> anyhow::Result<Status> {
    let mut streams = Vec::new();
    for (service, stream) in STREAMS {
        let name = ops.config.stream_name(stream);
        let mut found = StreamStatus {
            service: service.to_owned(),
            stream: name,
            exists: false,
            messages: 0,
            last_sequence: 0,
            consumers: 0,
        };
        if let Some(mut handle) = ops.stream(stream).await? {
            let info = handle.info().await?;
            found.exists = true;
            found.messages = info.state.messages;
            found.last_sequence = info.state.last_sequence;
            found.consumers = info.state.consumer_count;
        }
        streams.push(found);
    }
    let mut projections = Vec::new();
    // Counted once a projection (a split one has a row per partition, each shown with
    // the projection's dead letters).
    let mut dead_letters_of = std::collections::HashMap::<(String, String), u64>::new();
    for checkpoint in circle_projection::admin::checkpoints(&ops.database.owner).await? {
        // A split projection has a row per partition (`name@index/count`), each shown.
        let of = circle_projection::admin::projection_of(&checkpoint.projection).to_owned();
        let entry = catalog::find(&of);
        let stream = entry.and_then(|entry| {
            let name = ops.config.stream_name(entry.stream);
            streams.iter().find(|stream| stream.stream == name)
        });
        let stream_last_sequence = stream.map(|stream| stream.last_sequence);
        let lag = stream_last_sequence.map(|last| last.saturating_sub(checkpoint.last_sequence));
        let counted = (checkpoint.schema.clone(), of.clone());
        let dead_letters = match dead_letters_of.get(&counted) {
            Some(count) => *count,
            None => {
                let count = circle_projection::admin::dead_letter_count(
                    &ops.database,
                    &checkpoint.schema,
                    &of,
                )
                .await?;
                dead_letters_of.insert(counted, count);
                count
            }
        };
        let health = match lag {
            _ if checkpoint.halted_since.is_some() => Health::Halted,
            _ if dead_letters > 0 => Health::HasDeadLetters,
            Some(0) => Health::CaughtUp,
            Some(_) => Health::Behind,
            None => Health::Unknown,
        };
        projections.push(ProjectionStatus {
            projection: checkpoint.projection,
            service: entry.map(|entry| entry.service.to_owned()),
            schema: checkpoint.schema,
            kind: entry.map(|entry| entry.kind),
            stream: stream.map(|stream| stream.stream.clone()),
            checkpoint: checkpoint.last_sequence,
            stream_last_sequence,
            lag,
            dead_letters,
            health,
            updated_at: checkpoint.updated_at,
            halted_since: checkpoint.halted_since,
        });
    }
    let healthy = projections.iter().all(|projection| {
        projection.halted_since.is_none()
            && projection.dead_letters == 0
            && projection.lag.unwrap_or(0) <= max_lag
    });
    Ok(Status {
        services: Vec::new(),
        streams,
        projections,
        max_lag,
        healthy,
    })
}

pub fn render(status: &Status) -> String {
    let streams: Vec<Vec<String>> = status
        .streams
        .iter()
        .map(|stream| {
            if stream.exists {
                vec![
                    stream.service.clone(),
                    stream.stream.clone(),
                    stream.messages.to_string(),
                    stream.last_sequence.to_string(),
                    stream.consumers.to_string(),
                ]
            } else {
                vec![
                    stream.service.clone(),
                    stream.stream.clone(),
                    "-".into(),
                    "(no stream)".into(),
                    "-".into(),
                ]
            }
        })
        .collect();
    let projections: Vec<Vec<String>> = status
        .projections
        .iter()
        .map(|projection| {
            vec![
                projection.projection.clone(),
                projection.schema.clone(),
                projection.checkpoint.to_string(),
                projection
                    .lag
                    .map_or_else(|| "?".to_owned(), |lag| lag.to_string()),
                projection.dead_letters.to_string(),
                projection.health.as_str().to_owned(),
            ]
        })
        .collect();
    let services: Vec<Vec<String>> = status
        .services
        .iter()
        .map(|service| {
            vec![
                service.service.clone(),
                service.url.clone().unwrap_or_else(|| "-".to_owned()),
                service.health.as_str().to_owned(),
                service.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let services = if services.is_empty() {
        String::new()
    } else {
        format!(
            "{}\n",
            table::render(&["SERVICE", "URL", "HEALTH", "DETAIL"], &services)
        )
    };
    format!(
        "{services}{}\n{}\n{}",
        table::render(
            &["SERVICE", "STREAM", "MESSAGES", "LAST SEQ", "CONSUMERS"],
            &streams
        ),
        table::render(
            &[
                "PROJECTION",
                "SCHEMA",
                "CHECKPOINT",
                "LAG",
                "DEAD LETTERS",
                "HEALTH"
            ],
            &projections
        ),
        if status.healthy {
            "healthy".to_owned()
        } else {
            format!(
                "UNHEALTHY: a service not serving, a halted projection, dead letters, or a lag over {} events",
                status.max_lag
            )
        }
    )
}
