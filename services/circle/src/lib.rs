//! The `circle` command's work, as a library so the end-to-end tests run exactly what
//! `circle dev` runs: prepare the database, start every service in this process, and
//! seed a demo network through the public gRPC API.

pub mod demo;
pub mod dev_keys;
pub mod ops;

use std::net::SocketAddr;

use std::sync::Arc;

use anyhow::Context as _;
use circle_calendar::{Clock, SystemClock};
use circle_config::Config;
use sqlx::Connection as _;

/// Where each started service listens.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub enrollment: SocketAddr,
    pub sessions: SocketAddr,
    pub accountability: SocketAddr,
}

/// Prepares the database for the services: creates the configured database if it does
/// not exist (as the owner, `database.owner_url`, connecting to the server's `postgres`
/// database to do so) and the runtime role `database.url` logs in as, if missing
/// (`LOGIN NOSUPERUSER NOBYPASSRLS`, with the URL's password). Both idempotent. Schemas,
/// tables, walls and grants are made by each service at start, as the owner.
pub async fn ensure_database(config: &Config) -> anyhow::Result<()> {
    let url = &config.database.owner_url;
    let mut owner = match sqlx::PgConnection::connect(url).await {
        Ok(owner) => owner,
        Err(_) => {
            let (server, name) = url
                .rsplit_once('/')
                .context("database.owner_url has no database name")?;
            let name = name.split('?').next().unwrap_or(name);
            anyhow::ensure!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "database name {name:?} must be letters, digits and '_'"
            );
            let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                .await
                .with_context(|| "connecting to PostgreSQL to create the database".to_owned())?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .with_context(|| format!("creating database {name}"))?;
            admin
        }
    };
    circle_projection::walls::provision_runtime_role(&mut owner, &config.database.url)
        .await
        .context("creating the runtime role of database.url")?;
    Ok(())
}

/// Starts every service in this process; they stop when `shutdown` resolves.
pub async fn start_all(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Addresses, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    start_all_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// `start_all` on a given clock, shared by every service (tests move it).
pub async fn start_all_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Addresses, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let shutdown = circle_grpc::host::Shutdown::new(shutdown);
    let enrollment = circle_enrollment::start_with_clock(config, clock.clone(), shutdown.signal())
        .await
        .context("starting the enrollment service")?;
    let sessions = circle_sessions::start_with_clock(config, clock.clone(), shutdown.signal())
        .await
        .context("starting the sessions service")?;
    let accountability = circle_accountability::start_with_clock(config, clock, shutdown.signal())
        .await
        .context("starting the accountability service")?;
    let addresses = Addresses {
        enrollment: enrollment.local_addr,
        sessions: sessions.local_addr,
        accountability: accountability.local_addr,
    };
    let task = tokio::spawn(async move {
        enrollment.task.await??;
        sessions.task.await??;
        accountability.task.await??;
        Ok(())
    });
    Ok((addresses, task))
}
