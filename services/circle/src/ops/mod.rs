//! The operator's commands of the `circle` tool, as library functions that answer
//! plain values (serialisable: `--json` prints them as they are), so the end-to-end
//! tests call exactly what the binary runs; `main.rs` only parses and prints.
//!
//! Each command connects as a service does (`Ops::connect`): NATS with the
//! configured TLS and credentials, the runtime role (`database.url`) for rows under the
//! walls, and the owner (`database.owner_url`) for the catalogue and schema work.

pub mod catalog;
pub mod dead_letters;
pub mod events;
pub mod projections;
pub mod status;
pub mod table;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use circle_config::Config;
use circle_projection::Database;
use sqlx::postgres::PgPoolOptions;

/// What an operator's command could not do, with the exit code scripts rely on.
#[derive(Debug)]
pub struct Refusal {
    pub exit_code: u8,
    pub message: String,
}

/// Exit code: the operation failed (the default for any other error).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: unhealthy, or the thing named does not exist.
pub const EXIT_UNHEALTHY: u8 = 3;

impl Refusal {
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            exit_code: EXIT_USAGE,
            message: message.into(),
        })
    }

    pub fn not_found(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            exit_code: EXIT_UNHEALTHY,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// The exit code for an error: a [`Refusal`]'s own, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Refusal>()
        .map_or(EXIT_FAILED, |refusal| refusal.exit_code)
}

/// Connections of an operator's command.
#[derive(Clone)]
pub struct Ops {
    pub config: Config,
    pub database: Database,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl Ops {
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let nats = circle_service::nats_options(config, "circle")
            .await?
            .connect(circle_service::nats_servers(&config.nats.url).map_err(anyhow::Error::msg)?)
            .await
            .with_context(|| {
                format!(
                    "connecting to NATS at {}",
                    without_credentials(&config.nats.url)
                )
            })?;
        let options = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10));
        let pool = options
            .clone()
            .connect(&config.database.url)
            .await
            .context("connecting to PostgreSQL as database.url")?;
        let owner = options
            .connect(&config.database.owner_url)
            .await
            .context("connecting to PostgreSQL as database.owner_url")?;
        let database = Database::new(pool, owner).await?;
        Ok(Self {
            config: config.clone(),
            database,
            jetstream: jetstream::new(nats.clone()),
            nats,
        })
    }

    /// A stream by its service name (`enrollment`, `sessions_audit`, …), namespaced as
    /// configured; `None` when it does not exist (yet).
    pub async fn stream(&self, service: &str) -> anyhow::Result<Option<jetstream::stream::Stream>> {
        let name = self.config.stream_name(service);
        match self.jetstream.get_stream(&name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(error)
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(inner)
                        if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(anyhow::Error::new(error).context(format!("reading stream {name}"))),
        }
    }
}

pub use circle_service::without_credentials;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_named_without_their_credentials() {
        assert_eq!(
            without_credentials("nats://enrollment:s3cret@nats.internal:4222"),
            "nats://nats.internal:4222"
        );
        assert_eq!(
            without_credentials("tls://token@nats:4222"),
            "tls://nats:4222"
        );
        assert_eq!(
            without_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
