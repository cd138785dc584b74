//! `circle faults`: fault injection. For each NATS topology asked for (one server, or
//! a three-node cluster on loopback ports with R3 streams; every server syncs each write
//! before acknowledging it, `sync_interval: always`), it starts a PostgreSQL of its own,
//! the NATS servers, and two replicas of each service (`circle serve`, each a process),
//! seeds a small network through the public API, and then, under steady load from
//! clients that retry with the same request id on the other replica (as real clients
//! do), SIGKILLs and restarts at random moments: a NATS server (in a cluster one node
//! at a time and, briefly, two), PostgreSQL (its whole process group), and a replica of
//! each service. Then every process is brought back, the load drains, the projections
//! catch up, the services stop, and an independent checker ([`check`]) confirms:
//!
//! - every acknowledged command is in the log exactly once (and no request id is
//!   committed twice on an aggregate);
//! - each aggregate's commits are in line: each appended at the version its
//!   predecessor left (the expected subject sequence the server kept), and stamped no
//!   earlier;
//! - seats taken never exceeded a group's capacity after any commit;
//! - every read model equals a rebuild of it from the log, with no dead letters.
//!
//! It writes `faults.md` and `faults.json` into `--out`; exit 0 only when every check
//! holds.

pub mod check;
pub mod infra;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use circle_config::Config;
use circle_proto::accountability::v1 as acc;
use circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient;
use circle_proto::enrollment::v1 as pb;
use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;
use circle_proto::sessions::v1 as ses;
use circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient;
use rand::Rng as _;
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use tonic::transport::Channel;

use crate::bench::load::{Clients, Mint, Network, Size};
use crate::dev_keys::{self, DevKeys};
use infra::Process;

const NETWORK: &str = "faults";
const SERVICES: [&str; 3] = ["enrollment", "sessions", "accountability"];
const REPLICAS: usize = 2;
/// How long a client keeps retrying one command before it gives up (the command's
/// outcome is then unknown: it may or may not be in the log, never twice).
const GIVE_UP: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One NATS server.
    Single,
    /// Three NATS servers clustered, R3 streams.
    Cluster,
}

impl Topology {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "single" => Ok(Self::Single),
            "cluster" => Ok(Self::Cluster),
            other => anyhow::bail!("unknown topology {other:?}: single or cluster"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
        }
    }

    fn nodes(self) -> usize {
        match self {
            Self::Single => 1,
            Self::Cluster => 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub topologies: Vec<Topology>,
    /// Seconds of load under faults, per topology.
    pub seconds: f64,
    pub size: Size,
    pub concurrency: usize,
    /// Seconds between faults: drawn between these.
    pub interval: (f64, f64),
    pub seed: u64,
    pub out: PathBuf,
    pub nats_server: Option<PathBuf>,
    pub postgres_bin: Option<PathBuf>,
    /// Keep the scratch directories (data and logs) afterwards.
    pub keep: bool,
}

impl Options {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.topologies.is_empty(),
            "--topology needs single, cluster or both"
        );
        anyhow::ensure!(
            self.seconds >= 1.0 && self.seconds <= 86_400.0,
            "--seconds must be between 1 and 86400"
        );
        anyhow::ensure!(
            (1..=1_000).contains(&self.size.groups),
            "--groups must be between 1 and 1000"
        );
        anyhow::ensure!(
            (1..=100_000).contains(&self.size.participants),
            "--participants must be between 1 and 100000"
        );
        anyhow::ensure!(
            (1..=200).contains(&self.size.capacity),
            "--capacity must be between 1 and 200"
        );
        anyhow::ensure!(
            (1..=256).contains(&self.concurrency),
            "--concurrency must be between 1 and 256"
        );
        let (low, high) = self.interval;
        anyhow::ensure!(
            low >= 0.1 && high >= low && high <= 600.0,
            "--interval needs 0.1 <= low <= high <= 600 seconds"
        );
        Ok(())
    }
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Faults {
    pub nats_node: u32,
    pub nats_two_nodes: u32,
    pub postgres: u32,
    pub enrollment: u32,
    pub sessions: u32,
    pub accountability: u32,
    /// Processes that exited without being killed (each started again).
    pub exited_on_their_own: BTreeMap<String, u32>,
}

impl Faults {
    pub fn total(&self) -> u32 {
        self.nats_node
            + self.nats_two_nodes
            + self.postgres
            + self.enrollment
            + self.sessions
            + self.accountability
    }
}

/// What the load's clients saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Commands {
    pub sent: u64,
    pub acknowledged: u64,
    /// Answered with a refusal that retrying cannot change (by code).
    pub refused: BTreeMap<String, u64>,
    /// Given up after retrying for two minutes (in the log at most once).
    pub gave_up: u64,
    /// Attempts answered with a transient failure and retried (by code).
    pub retried: BTreeMap<String, u64>,
    pub acknowledged_by_operation: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TopologyReport {
    pub topology: Topology,
    pub nats_nodes: usize,
    pub stream_replicas: usize,
    pub seconds: f64,
    pub faults: Faults,
    pub commands: Commands,
    pub logs: BTreeMap<String, check::LogCheck>,
    pub capacity: check::CapacityCheck,
    pub read_models: Vec<check::ReadModelCheck>,
    /// Dead letters of every projection, process managers' included.
    pub dead_letters: i64,
    /// Every check held.
    pub passed: bool,
    pub work_dir: String,
}

impl TopologyReport {
    fn lost(&self) -> usize {
        self.logs.values().map(|log| log.lost).sum()
    }
    fn doubled(&self) -> usize {
        self.logs
            .values()
            .map(|log| log.doubled + log.request_ids_twice)
            .sum()
    }
    /// Every check held, and had something to check: each stream holds acknowledged
    /// commands and every commit's expected version, enrollments raced for seats, and
    /// every read model was compared.
    fn judge(&mut self) {
        self.passed = self.lost() == 0
            && self.doubled() == 0
            && self.logs.len() == SERVICES.len()
            && self.logs.values().all(|log| {
                log.acknowledged > 0
                    && log.versions_checked == log.commits
                    && log.versions_out_of_line == 0
                    && log.times_backwards == 0
            })
            && self.capacity.violations == 0
            && self.capacity.commits > 0
            && self
                .commands
                .acknowledged_by_operation
                .get("enroll")
                .is_some_and(|count| *count > 0)
            && !self.read_models.is_empty()
            && self
                .read_models
                .iter()
                .all(|model| model.equal && model.dead_letters == 0)
            && self.dead_letters == 0;
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub date: String,
    pub seed: u64,
    pub size: Size,
    pub concurrency: usize,
    pub nats_server: String,
    pub runs: Vec<TopologyReport>,
    pub passed: bool,
}

/// Runs every topology in turn; writes the report (also when a check failed).
pub async fn run(
    config: &Config,
    options: &Options,
    progress: impl Fn(&str),
) -> anyhow::Result<Report> {
    options.validate()?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let nats_server = infra::nats_server(options.nats_server.as_deref());
    let postgres_bin = infra::postgres_bin(options.postgres_bin.as_deref())?;
    let mut runs = Vec::new();
    for (index, &topology) in options.topologies.iter().enumerate() {
        progress(&format!("{}: starting", topology.label()));
        let work_dir = std::env::temp_dir().join(format!(
            "circle-faults-{}-{}",
            std::process::id(),
            topology.label()
        ));
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir)?;
        let seed = options.seed.wrapping_add(index as u64);
        // SIGTERM or SIGINT drops the run midway: every process it started is killed
        // with it (`kill_on_drop`, and PostgreSQL's process group by `Process`'s drop).
        let result = tokio::select! {
            result = run_topology(
                config,
                options,
                topology,
                seed,
                &nats_server,
                &postgres_bin,
                &work_dir,
                &progress,
            ) => result,
            () = circle_service::stop_requested() => {
                Err(anyhow::anyhow!("stopped by a signal; every process it started is killed"))
            }
        }
        .with_context(|| {
            format!(
                "the {} run (its processes' logs: {})",
                topology.label(),
                work_dir.display()
            )
        });
        match result {
            Ok(report) => {
                if report.passed && !options.keep {
                    let _ = std::fs::remove_dir_all(&work_dir);
                }
                runs.push(report);
            }
            Err(error) => return Err(error),
        }
    }
    let passed = runs.iter().all(|run| run.passed);
    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        seed: options.seed,
        size: options.size,
        concurrency: options.concurrency,
        nats_server: format!(
            "{} ({})",
            nats_server.display(),
            infra::nats_version(&nats_server)
                .map(|(major, minor)| format!("{major}.{minor}"))
                .unwrap_or_default()
        ),
        runs,
        passed,
    };
    std::fs::write(
        options.out.join("faults.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(options.out.join("faults.md"), render(&report))?;
    Ok(report)
}

/// The processes of one run.
struct Processes {
    postgres: Process,
    nats: Vec<Process>,
    /// Two replicas of each service, in `SERVICES` order.
    services: Vec<(&'static str, Process)>,
}

/// A process `wait_up` waits for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Postgres,
    Nats(usize),
}

impl Processes {
    /// Waits until `target` accepts connections, starting again meanwhile whatever
    /// exits on its own (it included: e.g. a restart that failed at once).
    async fn wait_up(
        &mut self,
        target: Target,
        faults: &mut Faults,
        within: Duration,
    ) -> anyhow::Result<()> {
        let port = match target {
            Target::Postgres => self.postgres.port,
            Target::Nats(node) => self.nats[node].port,
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.heal(faults)?;
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{target:?} did not accept connections within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts again whatever exited on its own (as an orchestrator would).
    fn heal(&mut self, faults: &mut Faults) -> anyhow::Result<()> {
        let mut all: Vec<&mut Process> = vec![&mut self.postgres];
        all.extend(self.nats.iter_mut());
        all.extend(self.services.iter_mut().map(|(_, process)| process));
        for process in all {
            if process.reap() {
                *faults
                    .exited_on_their_own
                    .entry(process.name.clone())
                    .or_default() += 1;
                process.start()?;
            }
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for (_, service) in &mut self.services {
            service.stop(Duration::from_secs(30)).await;
        }
        for node in &mut self.nats {
            node.stop(Duration::from_secs(10)).await;
        }
        self.postgres.stop(Duration::from_secs(30)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_topology(
    config: &Config,
    options: &Options,
    topology: Topology,
    seed: u64,
    nats_server: &std::path::Path,
    postgres_bin: &std::path::Path,
    work_dir: &std::path::Path,
    progress: &impl Fn(&str),
) -> anyhow::Result<TopologyReport> {
    // Every port of the run at once: PostgreSQL, each node's client and route port,
    // each service replica.
    let mut ports = infra::Ports::reserve(1 + 2 * topology.nodes() + SERVICES.len() * REPLICAS)?;
    let mut processes = Processes {
        postgres: infra::postgres(postgres_bin, &work_dir.join("postgres"), ports.take()?)?,
        nats: infra::nats(
            nats_server,
            &work_dir.join("nats"),
            topology.nodes(),
            &mut ports,
        )?,
        services: Vec::new(),
    };
    let mut faults = Faults::default();
    let outcome = async {
        processes.postgres.start()?;
        processes
            .wait_up(Target::Postgres, &mut faults, Duration::from_secs(60))
            .await?;
        for node in &mut processes.nats {
            node.start()?;
        }
        for node in 0..processes.nats.len() {
            processes
                .wait_up(Target::Nats(node), &mut faults, Duration::from_secs(60))
                .await?;
        }
        let nats_url = processes
            .nats
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",");
        let database = format!("127.0.0.1:{}/circle_faults", processes.postgres.port);
        let dev_dir = dev_keys::dev_dir()?;
        let keys = DevKeys::ensure(&dev_dir)?;
        let master_keys = DevKeys::master_keys(&dev_dir)?;
        let mut faults_config = config.clone();
        faults_config.nats.url = nats_url.clone();
        faults_config.nats.namespace = String::new();
        faults_config.nats.replicas = topology.nodes();
        faults_config.nats.user = None;
        faults_config.nats.password = None;
        faults_config.nats.token = None;
        faults_config.nats.credentials_file = None;
        faults_config.nats.nkey_seed_file = None;
        faults_config.nats.tls_required = false;
        faults_config.nats.tls_ca = None;
        faults_config.nats.tls_cert = None;
        faults_config.nats.tls_key = None;
        faults_config.database.url = format!("postgres://circle_service:circle_service@{database}");
        faults_config.database.owner_url = format!("postgres://postgres@{database}");
        faults_config.auth.issuer = dev_keys::ISSUER.to_owned();
        faults_config.auth.jwks_file = keys.jwks_file.display().to_string();
        faults_config.auth.jwks_url = String::new();
        faults_config.vault.master_keys_file = master_keys.display().to_string();
        faults_config.vault.master_keys = None;
        wait_postgres(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            processes.postgres.port
        ))
        .await?;
        wait_jetstream(&nats_url, topology.nodes()).await?;
        crate::ensure_database(&faults_config).await?;

        progress(&format!(
            "{}: starting two replicas of each service",
            topology.label()
        ));
        let exe = std::env::current_exe().context("finding the circle binary")?;
        let env = vec![
            ("CIRCLE_NATS__URL".to_owned(), nats_url.clone()),
            ("CIRCLE_NATS__NAMESPACE".to_owned(), String::new()),
            (
                "CIRCLE_NATS__REPLICAS".to_owned(),
                topology.nodes().to_string(),
            ),
            (
                "CIRCLE_DATABASE__URL".to_owned(),
                faults_config.database.url.clone(),
            ),
            (
                "CIRCLE_DATABASE__OWNER_URL".to_owned(),
                faults_config.database.owner_url.clone(),
            ),
            (
                "CIRCLE_AUTH__ISSUER".to_owned(),
                faults_config.auth.issuer.clone(),
            ),
            (
                "CIRCLE_AUTH__JWKS_FILE".to_owned(),
                faults_config.auth.jwks_file.clone(),
            ),
            ("CIRCLE_AUTH__JWKS_URL".to_owned(), String::new()),
            (
                "CIRCLE_VAULT__MASTER_KEYS_FILE".to_owned(),
                faults_config.vault.master_keys_file.clone(),
            ),
            (
                "CIRCLE_TELEMETRY__LOG_FILTER".to_owned(),
                std::env::var("CIRCLE_TELEMETRY__LOG_FILTER").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        // The replicas read the run's settings alone: no configuration file and none of
        // the caller's `CIRCLE_…` variables (its credentials, TLS or master keys would
        // not fit the run's servers).
        let env_remove: Vec<String> = std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| key.starts_with("CIRCLE_"))
            .chain(std::iter::once(circle_config::FILE_VARIABLE.to_owned()))
            .collect();
        for service in SERVICES {
            for replica in 0..REPLICAS {
                let port = ports.take()?;
                let mut env = env.clone();
                env.push((
                    format!("CIRCLE_{}__LISTEN", service.to_ascii_uppercase()),
                    format!("127.0.0.1:{port}"),
                ));
                let mut process = Process::new(
                    format!("{service}-{replica}"),
                    port,
                    infra::Recipe {
                        program: exe.clone(),
                        args: vec!["serve".into(), service.into()],
                        env,
                        env_remove: env_remove.clone(),
                        user: None,
                        log: work_dir.join(format!("{service}-{replica}.log")),
                        dir: work_dir.to_owned(),
                        own_group: false,
                        stop_signal: "TERM",
                    },
                );
                process.start()?;
                processes.services.push((service, process));
            }
        }
        // A replica that gives up at its start (a new cluster's streams still electing
        // their leaders) is started again, as afterwards.
        bring_back(&mut processes, &mut faults).await?;

        progress(&format!("{}: seeding the network", topology.label()));
        let mint: Mint = crate::bench::load::mint(keys, &faults_config, NETWORK);
        let address = |service: &str, replica: usize| {
            processes
                .services
                .iter()
                .filter(|(name, _)| *name == service)
                .nth(replica)
                .map(|(_, process)| format!("http://127.0.0.1:{}", process.port))
                .unwrap_or_default()
        };
        let seeding = Clients::connect(
            &address("enrollment", 0),
            &address("sessions", 0),
            &address("accountability", 0),
        )
        .await?;
        let network = Network::seed(&seeding, &mint, NETWORK, options.size, |_| {}).await?;
        let replicas = Replicas::connect(|service, replica| address(service, replica))?;

        progress(&format!(
            "{}: {} s of load while processes are killed",
            topology.label(),
            options.seconds
        ));
        let load = Arc::new(Load {
            replicas,
            network,
            admin: mint("network-admin", "faults-admin"),
            run: format!("{:x}", chrono::Utc::now().timestamp_millis()),
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            memberships: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
        });
        let workers: Vec<_> = (0..options.concurrency)
            .map(|_| tokio::spawn(worker(load.clone())))
            .collect();
        let injected = inject(&mut processes, topology, options, seed, &mut faults).await;
        // Whatever happened, everything runs again before the load drains.
        let healed = bring_back(&mut processes, &mut faults).await;
        load.stop.store(true, Ordering::Relaxed);
        progress(&format!("{}: draining the load", topology.label()));
        for worker in workers {
            // A worker that panicked may have taken acknowledgements with it.
            worker.await.context("a load worker failed")?;
        }
        injected?;
        healed?;
        // The streams have their leaders again (after two nodes were down, an election).
        wait_jetstream(&nats_url, topology.nodes()).await?;

        progress(&format!(
            "{}: waiting for the projections to catch up",
            topology.label()
        ));
        let ops = crate::ops::Ops::connect(&faults_config).await?;
        wait_caught_up(&ops, &mut processes, &mut faults).await?;
        for (_, service) in &mut processes.services {
            service.stop(Duration::from_secs(30)).await;
        }

        progress(&format!(
            "{}: checking the log and the read models",
            topology.label()
        ));
        let tally = load
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut logs = BTreeMap::new();
        let mut enrollment_log = Vec::new();
        for service in SERVICES {
            let stream = ops
                .stream(service)
                .await?
                .with_context(|| format!("the {service} stream is missing"))?;
            let stored = check::read_stream(&stream).await?;
            let acknowledged = tally.acked.get(service).cloned().unwrap_or_default();
            logs.insert(service.to_owned(), check::check_log(&stored, &acknowledged));
            if service == "enrollment" {
                enrollment_log = stored;
            }
        }
        let capacity = check::check_capacity(&enrollment_log)?;
        let (read_models, dead_letters) = compare_read_models(&ops, &faults_config).await?;
        let mut report = TopologyReport {
            topology,
            nats_nodes: topology.nodes(),
            stream_replicas: topology.nodes(),
            seconds: options.seconds,
            faults,
            commands: tally.commands,
            logs,
            capacity,
            read_models,
            dead_letters,
            passed: false,
            work_dir: work_dir.display().to_string(),
        };
        report.judge();
        anyhow::Ok(report)
    }
    .await;
    processes.stop_all().await;
    outcome
}

async fn wait_postgres(url: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match <sqlx::PgConnection as sqlx::Connection>::connect(url).await {
            Ok(connection) => {
                let _ = sqlx::Connection::close(connection).await;
                return Ok(());
            }
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(anyhow::anyhow!(
                    "PostgreSQL did not accept connections: {error}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until JetStream answers (in a cluster: a meta leader is elected and every
/// node is in it).
async fn wait_jetstream(url: &str, nodes: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let client =
        async_nats::connect(circle_service::nats_servers(url).map_err(anyhow::Error::msg)?)
            .await
            .context("connecting to NATS")?;
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut last_error;
    loop {
        let ready = async {
            jetstream
                .query_account()
                .await
                .map_err(|error| error.to_string())?;
            if nodes > 1 {
                // A scratch R3 stream can be made only once the cluster is whole.
                let name = "CIRCLE_FAULTS_READY";
                jetstream
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: name.to_owned(),
                        subjects: vec!["circlefaultsready".to_owned()],
                        num_replicas: nodes,
                        ..Default::default()
                    })
                    .await
                    .map_err(|error| error.to_string())?;
                jetstream
                    .delete_stream(name)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            Ok::<(), String>(())
        }
        .await;
        match ready {
            Ok(()) => return Ok(()),
            Err(error) => last_error = error,
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "JetStream was not ready within 90 s: {last_error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_serving(port: u16, within: Duration) -> anyhow::Result<()> {
    crate::bench::system::wait_serving(([127, 0, 0, 1], port).into(), within).await
}

/// One fault of the run.
#[derive(Debug, Clone, Copy)]
enum Fault {
    NatsNode,
    NatsTwoNodes,
    Postgres,
    Service(&'static str),
}

/// Sleeps `duration`, starting again meanwhile whatever exits on its own.
async fn pause(
    processes: &mut Processes,
    faults: &mut Faults,
    duration: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < until {
        processes.heal(faults)?;
        tokio::time::sleep(Duration::from_millis(100).min(until - tokio::time::Instant::now()))
            .await;
    }
    Ok(())
}

/// Injects faults at random moments for the run's duration, every kind in each round
/// (in a random order), and at least one whole round.
async fn inject(
    processes: &mut Processes,
    topology: Topology,
    options: &Options,
    seed: u64,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kinds = vec![
        Fault::NatsNode,
        Fault::Postgres,
        Fault::Service("enrollment"),
        Fault::Service("sessions"),
        Fault::Service("accountability"),
    ];
    if topology == Topology::Cluster {
        kinds.push(Fault::NatsTwoNodes);
    }
    let started = Instant::now();
    let mut round = Vec::new();
    let (low, high) = options.interval;
    loop {
        if round.is_empty() {
            if started.elapsed().as_secs_f64() >= options.seconds {
                return Ok(());
            }
            round = kinds.clone();
            round.shuffle(&mut random);
        }
        let Some(fault) = round.pop() else {
            continue;
        };
        let wait = Duration::from_secs_f64(random.random_range(low..=high));
        pause(processes, faults, wait).await?;
        let down = Duration::from_secs_f64(random.random_range(0.5..=3.0));
        match fault {
            Fault::NatsNode => {
                let node = random.random_range(0..processes.nats.len());
                processes.nats[node].kill().await;
                faults.nats_node += 1;
                pause(processes, faults, down).await?;
                processes.nats[node].start()?;
                processes
                    .wait_up(Target::Nats(node), faults, Duration::from_secs(60))
                    .await?;
            }
            Fault::NatsTwoNodes => {
                let mut nodes: Vec<usize> = (0..processes.nats.len()).collect();
                nodes.shuffle(&mut random);
                let nodes = &nodes[..2];
                for &node in nodes {
                    processes.nats[node].kill().await;
                }
                faults.nats_two_nodes += 1;
                // Briefly: the streams have no quorum meanwhile.
                let brief = Duration::from_secs_f64(random.random_range(0.5..=1.5));
                pause(processes, faults, brief).await?;
                for &node in nodes {
                    processes.nats[node].start()?;
                }
                for &node in nodes {
                    processes
                        .wait_up(Target::Nats(node), faults, Duration::from_secs(60))
                        .await?;
                }
            }
            Fault::Postgres => {
                processes.postgres.kill().await;
                faults.postgres += 1;
                pause(processes, faults, down).await?;
                processes.postgres.start()?;
                processes
                    .wait_up(Target::Postgres, faults, Duration::from_secs(120))
                    .await?;
            }
            Fault::Service(service) => {
                let replica = random.random_range(0..REPLICAS);
                let Some((_, process)) = processes
                    .services
                    .iter_mut()
                    .filter(|(name, _)| *name == service)
                    .nth(replica)
                else {
                    continue;
                };
                process.kill().await;
                match service {
                    "enrollment" => faults.enrollment += 1,
                    "sessions" => faults.sessions += 1,
                    _ => faults.accountability += 1,
                }
                pause(processes, faults, down).await?;
                if let Some((_, process)) = processes
                    .services
                    .iter_mut()
                    .filter(|(name, _)| *name == service)
                    .nth(replica)
                {
                    process.start()?;
                }
            }
        }
    }
}

/// Starts whatever is down and waits until every service replica serves again.
async fn bring_back(processes: &mut Processes, faults: &mut Faults) -> anyhow::Result<()> {
    processes.heal(faults)?;
    if !processes.postgres.is_up() {
        processes.postgres.start()?;
    }
    for node in &mut processes.nats {
        if !node.is_up() {
            node.start()?;
        }
    }
    for (_, service) in &mut processes.services {
        if !service.is_up() {
            service.start()?;
        }
    }
    for index in 0..processes.services.len() {
        let port = processes.services[index].1.port;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            processes.heal(faults)?;
            if wait_serving(port, Duration::from_secs(1)).await.is_ok() {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} did not serve again within 180 s",
                processes.services[index].1.name
            );
        }
    }
    Ok(())
}

/// Waits until every projection has applied its whole stream and nothing moves for
/// three checks in a row (process managers' commands settle too). A check that fails
/// (a stream without its leader yet) counts as not yet.
async fn wait_caught_up(
    ops: &crate::ops::Ops,
    processes: &mut Processes,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut quiet = 0;
    let mut last_seen = Vec::new();
    loop {
        processes.heal(faults)?;
        let observed = async {
            let mut positions = Vec::new();
            let mut behind = Vec::new();
            for line in crate::ops::projections::list(ops).await? {
                let entry = crate::ops::catalog::find(&line.projection)
                    .context("a projection missing from the catalog")?;
                let last = match ops.stream(entry.stream).await? {
                    Some(mut stream) => stream.info().await?.state.last_sequence,
                    None => 0,
                };
                let checkpoint = line.checkpoint.unwrap_or(0);
                if checkpoint < last {
                    behind.push(format!("{} at {checkpoint} of {last}", line.projection));
                }
                positions.push((checkpoint, last));
            }
            anyhow::Ok((positions, behind))
        }
        .await;
        let waiting_for = match observed {
            Ok((positions, behind)) => {
                if behind.is_empty() && positions == last_seen {
                    quiet += 1;
                    if quiet >= 3 {
                        return Ok(());
                    }
                } else {
                    quiet = 0;
                }
                last_seen = positions;
                behind.join(", ")
            }
            Err(error) => {
                quiet = 0;
                format!("{error:#}")
            }
        };
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the projections did not catch up within 300 s: {waiting_for}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each read model's tables, then a rebuild of it from the log, then its tables again.
async fn compare_read_models(
    ops: &crate::ops::Ops,
    config: &Config,
) -> anyhow::Result<(Vec<check::ReadModelCheck>, i64)> {
    let superuser = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&config.database.owner_url)
        .await?;
    let mut checks = Vec::new();
    for entry in crate::ops::catalog::CATALOG
        .iter()
        .filter(|entry| entry.kind == crate::ops::catalog::Kind::ReadModel)
    {
        let live = check::snapshot(&superuser, entry.schema).await?;
        let dead_letters: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{}\".dead_letters WHERE projection = $1",
            entry.schema
        )))
        .bind(entry.name)
        .fetch_one(&superuser)
        .await?;
        crate::ops::projections::rebuild(ops, entry.name, |_| {})
            .await
            .with_context(|| format!("rebuilding {}", entry.name))?;
        let rebuilt = check::snapshot(&superuser, entry.schema).await?;
        let differing_tables = check::differing(&live, &rebuilt);
        checks.push(check::ReadModelCheck {
            read_model: entry.name.to_owned(),
            tables: live.len(),
            rows: live.values().map(|(rows, _)| rows).sum(),
            equal: differing_tables.is_empty(),
            differing_tables,
            dead_letters,
        });
    }
    // Every projection's dead letters, process managers' included (their checkpoints
    // move past a message they give up on, as a read model's do).
    let schemas: BTreeSet<&str> = crate::ops::catalog::CATALOG
        .iter()
        .map(|entry| entry.schema)
        .collect();
    let mut dead_letters = 0;
    for schema in schemas {
        let table = format!("{schema}.dead_letters");
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&table)
            .fetch_one(&superuser)
            .await?;
        if exists.is_some() {
            let count: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&superuser)
                    .await?;
            dead_letters += count;
        }
    }
    superuser.close().await;
    Ok((checks, dead_letters))
}

/// Clients of both replicas of each service.
struct Replicas {
    enrollment: Vec<EnrollmentServiceClient<Channel>>,
    sessions: Vec<SessionsServiceClient<Channel>>,
    accountability: Vec<AccountabilityServiceClient<Channel>>,
}

impl Replicas {
    fn connect(address: impl Fn(&str, usize) -> String) -> anyhow::Result<Self> {
        let channel = |service: &str, replica: usize| -> anyhow::Result<Channel> {
            Ok(Channel::from_shared(address(service, replica))?
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy())
        };
        let mut replicas = Self {
            enrollment: Vec::new(),
            sessions: Vec::new(),
            accountability: Vec::new(),
        };
        for replica in 0..REPLICAS {
            replicas
                .enrollment
                .push(EnrollmentServiceClient::new(channel(
                    "enrollment",
                    replica,
                )?));
            replicas
                .sessions
                .push(SessionsServiceClient::new(channel("sessions", replica)?));
            replicas
                .accountability
                .push(AccountabilityServiceClient::new(channel(
                    "accountability",
                    replica,
                )?));
        }
        Ok(replicas)
    }
}

#[derive(Debug, Clone, Default)]
struct Tally {
    commands: Commands,
    /// Acknowledged request ids, by the service whose stream holds them.
    acked: BTreeMap<&'static str, BTreeSet<String>>,
}

struct Load {
    replicas: Replicas,
    network: Network,
    admin: String,
    run: String,
    next: AtomicU64,
    stop: AtomicBool,
    /// Memberships the load made (in any state: what it accepts offers of and
    /// discharges).
    memberships: Mutex<Vec<String>>,
    tally: Mutex<Tally>,
}

enum Answer<T> {
    Acked(T),
    Refused,
    GaveUp,
}

impl Load {
    fn tally(&self, update: impl FnOnce(&mut Tally)) {
        // Every update is whole before the guard drops: a poisoned lock's tally is whole.
        let mut tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update(&mut tally);
    }

    /// Calls until answered: a transient failure (the replica or what it needs is
    /// down) is retried with the same request on the other replica, for up to two
    /// minutes; `also` are codes this command may see before the service has learnt
    /// what it needs (retried too).
    async fn call<T, F, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        request_id: &str,
        also: &[tonic::Code],
        mut call: F,
    ) -> Answer<T>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        use tonic::Code;
        self.tally(|tally| tally.commands.sent += 1);
        let deadline = tokio::time::Instant::now() + GIVE_UP;
        let mut attempt = rand::rng().random_range(0..REPLICAS);
        loop {
            let answer = call(attempt % REPLICAS).await;
            match answer {
                Ok(response) => {
                    self.tally(|tally| {
                        tally.commands.acknowledged += 1;
                        *tally
                            .commands
                            .acknowledged_by_operation
                            .entry(operation.to_owned())
                            .or_default() += 1;
                        tally
                            .acked
                            .entry(service)
                            .or_default()
                            .insert(request_id.to_owned());
                    });
                    return Answer::Acked(response.into_inner());
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Cancelled
                            | Code::Unknown
                            | Code::Aborted
                            | Code::ResourceExhausted
                            | Code::Internal
                    ) || also.contains(&status.code()) =>
                {
                    let code = format!("{:?}", status.code());
                    if tokio::time::Instant::now() >= deadline {
                        self.tally(|tally| tally.commands.gave_up += 1);
                        return Answer::GaveUp;
                    }
                    self.tally(|tally| *tally.commands.retried.entry(code).or_default() += 1);
                    let backoff = rand::rng().random_range(50..400);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    attempt += 1;
                }
                Err(status) => {
                    let code = status.code();
                    self.tally(|tally| {
                        *tally
                            .commands
                            .refused
                            .entry(format!("{operation}: {code:?}"))
                            .or_default() += 1;
                    });
                    return Answer::Refused;
                }
            }
        }
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = crate::demo::with_token(message, token);
    request.set_timeout(Duration::from_secs(10));
    request
}

async fn worker(load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let n = load.next.fetch_add(1, Ordering::Relaxed);
        let roll = rand::rng().random_range(0..100);
        match roll {
            0..40 => check_in(&load, n).await,
            40..52 => schedule(&load, n).await,
            52..62 => {
                register(&load, n).await;
            }
            62..82 => enroll(&load, n).await,
            82..91 => accept(&load, n).await,
            _ => discharge(&load, n).await,
        }
    }
}

async fn check_in(load: &Load, n: u64) {
    let members = &load.network.members;
    if members.is_empty() {
        return;
    }
    let member = &members[rand::rng().random_range(0..members.len())];
    let request_id = format!("faults-{}-{n}", load.run);
    let request = acc::SubmitCheckInRequest {
        parent: member.name.clone(),
        progress: acc::Progress::OnTrack as i32,
        mood: 6,
        craving: 2,
        text: "Kept to the plan today.".into(),
        visibility: acc::Visibility::Group as i32,
        request_id: request_id.clone(),
        ..Default::default()
    };
    load.call("accountability", "check-in", &request_id, &[], |replica| {
        let mut client = load.replicas.accountability[replica].clone();
        let request = with_token(request.clone(), &member.token);
        async move { client.submit_check_in(request).await }
    })
    .await;
}

async fn schedule(load: &Load, n: u64) {
    let groups = &load.network.groups;
    let group = &groups[rand::rng().random_range(0..groups.len())];
    let request_id = format!("faults-{}-{n}", load.run);
    // Days ahead, spread so that sessions of a group rarely overlap.
    let start = chrono::Utc::now()
        + chrono::Duration::days(3)
        + chrono::Duration::minutes((n % 50_000) as i64 * 17);
    let request = ses::ScheduleSessionRequest {
        parent: group.name.clone(),
        session_id: format!("f{}-{n}", load.run),
        start_time: Some(prost_types::Timestamp {
            seconds: start.timestamp(),
            nanos: 0,
        }),
        duration_minutes: 15,
        request_id: request_id.clone(),
    };
    load.call(
        "sessions",
        "schedule-session",
        &request_id,
        &[tonic::Code::FailedPrecondition],
        |replica| {
            let mut client = load.replicas.sessions[replica].clone();
            let request = with_token(request.clone(), &load.admin);
            async move { client.schedule_session(request).await }
        },
    )
    .await;
}

/// Registers a new participant; its resource name when acknowledged.
async fn register(load: &Load, n: u64) -> Option<String> {
    let participant_id = format!("f{}-{n}", load.run);
    let request_id = format!("faults-{}-{n}", load.run);
    let request = crate::bench::load::new_participant(NETWORK, &participant_id, &request_id);
    match load
        .call("enrollment", "register", &request_id, &[], |replica| {
            let mut client = load.replicas.enrollment[replica].clone();
            let request = with_token(request.clone(), &load.admin);
            async move { client.register_participant(request).await }
        })
        .await
    {
        Answer::Acked(_) => Some(format!("networks/{NETWORK}/participants/{participant_id}")),
        Answer::Refused | Answer::GaveUp => None,
    }
}

/// A new participant enrolled in a random group: the groups' last seats are raced for
/// by every worker, through both replicas.
async fn enroll(load: &Load, n: u64) {
    let Some(participant) = register(load, n).await else {
        return;
    };
    let groups = &load.network.groups;
    let group = &groups[rand::rng().random_range(0..groups.len())];
    let request_id = format!("faults-{}-{n}-enroll", load.run);
    let request = pb::EnrollParticipantRequest {
        parent: group.name.clone(),
        participant,
        request_id: request_id.clone(),
        ..Default::default()
    };
    if let Answer::Acked(answer) = load
        .call(
            "enrollment",
            "enroll",
            &request_id,
            &[tonic::Code::FailedPrecondition, tonic::Code::NotFound],
            |replica| {
                let mut client = load.replicas.enrollment[replica].clone();
                let request = with_token(request.clone(), &load.admin);
                async move { client.enroll_participant(request).await }
            },
        )
        .await
        && let Some(membership) = answer.membership
        && let Ok(mut memberships) = load.memberships.lock()
    {
        memberships.push(membership.name);
    }
}

/// Accepts the seat offered to one of the load's memberships (a refusal when it holds
/// no offer): the offered seat becomes an active member's.
async fn accept(load: &Load, n: u64) {
    let membership = load.memberships.lock().ok().and_then(|memberships| {
        (!memberships.is_empty())
            .then(|| memberships[rand::rng().random_range(0..memberships.len())].clone())
    });
    let Some(name) = membership else {
        return check_in(load, n).await;
    };
    let request_id = format!("faults-{}-{n}", load.run);
    let request = pb::AcceptSeatOfferRequest {
        name,
        request_id: request_id.clone(),
    };
    load.call("enrollment", "accept-offer", &request_id, &[], |replica| {
        let mut client = load.replicas.enrollment[replica].clone();
        let request = with_token(request.clone(), &load.admin);
        async move { client.accept_seat_offer(request).await }
    })
    .await;
}

/// Discharges one of the load's memberships, whatever its state (an active member's
/// or an offer's seat frees and is offered to the waitlist), or checks in when there
/// is none.
async fn discharge(load: &Load, n: u64) {
    let membership = load.memberships.lock().ok().and_then(|mut memberships| {
        (!memberships.is_empty()).then(|| {
            let at = rand::rng().random_range(0..memberships.len());
            memberships.swap_remove(at)
        })
    });
    let Some(name) = membership else {
        return check_in(load, n).await;
    };
    let request_id = format!("faults-{}-{n}", load.run);
    let request = pb::DischargeParticipantRequest {
        name,
        reason: pb::EndReason::Completed as i32,
        request_id: request_id.clone(),
    };
    load.call("enrollment", "discharge", &request_id, &[], |replica| {
        let mut client = load.replicas.enrollment[replica].clone();
        let request = with_token(request.clone(), &load.admin);
        async move { client.discharge_participant(request).await }
    })
    .await;
}

/// The report as markdown.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Circle fault injection ({}; seed {})\n\nNetwork: {} groups of {}, {} participants; {} clients; NATS {}.\n",
        report.date,
        report.seed,
        report.size.groups,
        report.size.capacity,
        report.size.participants,
        report.concurrency,
        report.nats_server
    );
    let _ = writeln!(
        out,
        "| NATS | seconds | NATS node killed | two NATS nodes | PostgreSQL | enrollment | sessions | accountability | exited on their own | commands acknowledged | refused | gave up | lost | doubled | versions out of line | capacity violations | read models equal to a rebuild | passed |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in &report.runs {
        let faults = &run.faults;
        let _ = writeln!(
            out,
            "| {} ({} node{}, R{}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
            run.topology.label(),
            run.nats_nodes,
            if run.nats_nodes == 1 { "" } else { "s" },
            run.stream_replicas,
            run.seconds,
            faults.nats_node,
            faults.nats_two_nodes,
            faults.postgres,
            faults.enrollment,
            faults.sessions,
            faults.accountability,
            faults.exited_on_their_own.values().sum::<u32>(),
            run.commands.acknowledged,
            run.commands.refused.values().sum::<u64>(),
            run.commands.gave_up,
            run.lost(),
            run.doubled(),
            run.logs
                .values()
                .map(|log| log.versions_out_of_line)
                .sum::<usize>(),
            run.capacity.violations,
            run.read_models.iter().filter(|model| model.equal).count(),
            run.read_models.len(),
            if run.passed { "yes" } else { "NO" }
        );
    }
    for run in &report.runs {
        let _ = writeln!(
            out,
            "\n**{}**: commits checked by stream:",
            run.topology.label()
        );
        for (service, log) in &run.logs {
            let _ = writeln!(
                out,
                "- {service}: {} commits of {} aggregates; {} acknowledged commands, {} lost, {} doubled; {} appends checked against their aggregate's version, {} out of line",
                log.commits,
                log.aggregates,
                log.acknowledged,
                log.lost,
                log.doubled,
                log.versions_checked,
                log.versions_out_of_line
            );
            for example in &log.examples {
                let _ = writeln!(out, "  - {example}");
            }
        }
        let capacity = &run.capacity;
        let _ = writeln!(
            out,
            "- capacity: {} groups, {} group commits replayed ({} admissions, {} waitlisted, {} offers), at most {} seats taken, {} violations",
            capacity.groups,
            capacity.commits,
            capacity.admissions,
            capacity.waitlisted,
            capacity.offers,
            capacity.most_seats_taken,
            capacity.violations
        );
        for model in &run.read_models {
            let _ = writeln!(
                out,
                "- {}: {} tables, {} rows, {}{}",
                model.read_model,
                model.tables,
                model.rows,
                if model.equal {
                    "equal to its rebuild".to_owned()
                } else {
                    format!(
                        "DIFFERS from its rebuild in {}",
                        model.differing_tables.join(", ")
                    )
                },
                if model.dead_letters > 0 {
                    format!(", {} dead letters", model.dead_letters)
                } else {
                    String::new()
                }
            );
        }
        if !run.commands.retried.is_empty() {
            let retried: Vec<String> = run
                .commands
                .retried
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(out, "- attempts retried: {}", retried.join(", "));
        }
        if !run.commands.refused.is_empty() {
            let refused: Vec<String> = run
                .commands
                .refused
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(out, "- refused: {}", refused.join(", "));
        }
    }
    out
}
