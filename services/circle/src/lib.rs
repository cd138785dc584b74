//! The `circle` command's work, as a library so the end-to-end tests run exactly what
//! `circle dev` runs: prepare the database, start every service in this process, and
//! seed a demo network through the public gRPC API.

pub mod bench;
pub mod demo;
pub mod dev_keys;
pub mod faults;
pub mod ops;
pub mod setup;

use std::net::SocketAddr;

use std::sync::Arc;

use anyhow::Context as _;
use circle_calendar::{Clock, SystemClock};
use circle_config::Config;

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
/// (`LOGIN NOSUPERUSER NOBYPASSRLS`, with the URL's password). Both idempotent
/// (`setup::prepare_database`, the first step of `circle setup`). Schemas, tables, walls
/// and grants are made by each service at start (or beforehand by `circle setup`), as
/// the owner.
pub async fn ensure_database(config: &Config) -> anyhow::Result<()> {
    setup::prepare_database(config).await.map(|_| ())
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
