//! The services under test: each in a process of its own (`circle serve SERVICE`, this
//! same binary), so each one's memory is measured apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const SERVICES: [&str; 3] = ["enrollment", "sessions", "accountability"];

/// One running service process.
pub struct Service {
    pub name: &'static str,
    pub address: SocketAddr,
    child: tokio::process::Child,
}

/// The three services, started with the bench's configuration (`env`: the
/// `CIRCLE_…` variables every one gets).
pub struct System {
    pub services: Vec<Service>,
}

/// A free loopback port (bound and released: the service binds it right after).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl System {
    pub async fn start(env: &[(String, String)], logs: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the circle binary")?;
        let mut services = Vec::new();
        let addresses = SERVICES
            .iter()
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (name, address) in SERVICES.into_iter().zip(addresses) {
            let log = std::fs::File::create(logs.join(format!("{name}.log")))
                .with_context(|| format!("creating {name}'s log in {}", logs.display()))?;
            let mut command = tokio::process::Command::new(&exe);
            // The bench's own settings replace the caller's, `_FILE` forms included
            // (both set is refused).
            for (key, _) in env {
                command.env_remove(format!("{key}_FILE"));
            }
            command
                .arg("serve")
                .arg(name)
                .envs(
                    env.iter()
                        .map(|(key, value)| (key.as_str(), value.as_str())),
                )
                .env(
                    format!("CIRCLE_{}__LISTEN", name.to_ascii_uppercase()),
                    address.to_string(),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let child = command
                .spawn()
                .with_context(|| format!("starting {name} ({})", exe.display()))?;
            services.push(Service {
                name,
                address,
                child,
            });
        }
        let system = Self { services };
        for service in &system.services {
            service
                .wait_serving(Duration::from_secs(60))
                .await
                .with_context(|| {
                    format!(
                        "{} did not become ready (its log: {})",
                        service.name,
                        logs.join(format!("{}.log", service.name)).display()
                    )
                })?;
        }
        Ok(system)
    }

    pub fn address(&self, name: &str) -> String {
        self.services
            .iter()
            .find(|service| service.name == name)
            .map(|service| format!("http://{}", service.address))
            .unwrap_or_default()
    }

    /// Each service's peak resident memory so far, in MiB (`VmHWM`).
    pub fn peak_memory(&self) -> Vec<(&'static str, f64)> {
        self.services
            .iter()
            .map(|service| {
                let peak = service
                    .child
                    .id()
                    .and_then(|pid| status_field(pid, "VmHWM:"))
                    .unwrap_or(0.0);
                (service.name, peak)
            })
            .collect()
    }

    /// Stops every service (SIGTERM, then waits up to 30 s; killed when it does not go).
    pub async fn stop(mut self) {
        for service in &self.services {
            if let Some(pid) = service.child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for service in &mut self.services {
            if tokio::time::timeout(Duration::from_secs(30), service.child.wait())
                .await
                .is_err()
            {
                let _ = service.child.kill().await;
            }
        }
    }
}

impl Service {
    async fn wait_serving(&self, within: Duration) -> anyhow::Result<()> {
        wait_serving(self.address, within).await
    }
}

/// Waits until the gRPC server at `address` answers its health check SERVING.
pub async fn wait_serving(address: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    let url = format!("http://{address}");
    loop {
        let serving = async {
            let channel = tonic::transport::Channel::from_shared(url.clone())?
                .connect()
                .await?;
            let mut client = HealthClient::new(channel);
            let status = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .status();
            anyhow::Ok(status == ServingStatus::Serving)
        }
        .await
        .unwrap_or(false);
        if serving {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not serving after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
fn status_field(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
