//! `circle bench`: the benchmark (not a timed test). In one run on one machine it
//!
//! 1. measures the raw engines: JetStream appends with per-subject optimistic
//!    concurrency at each concurrency, and batched inserts into PostgreSQL;
//! 2. starts the three services, each a process of its own (`circle serve`), on a
//!    scratch namespace (`nats.namespace = bench`, database `<name>_bench`), seeds a
//!    network of the asked size through the public API and drives it over gRPC at
//!    fixed concurrencies: new registrations (what the raw append does), check-ins on
//!    existing journals, and a realistic mix, while a probe measures ack-to-read-model
//!    lag;
//! 3. rebuilds the two largest read models, and reads each service's peak memory;
//!
//! and writes `bench.md` and `bench.json` into `--out`, each figure also as a ratio to
//! its raw baseline. The scratch streams and database are deleted afterwards unless
//! `--keep`.

pub mod load;
pub mod raw;
pub mod stats;
pub mod system;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;
use circle_config::Config;

use crate::dev_keys::{self, DevKeys};
use load::{Clients, Mint, Network, Size, Workload};
use stats::Summary;

/// What to measure, and how big.
#[derive(Debug, Clone)]
pub struct Options {
    pub size: Size,
    pub concurrency: Vec<usize>,
    /// Each step's duration.
    pub seconds: f64,
    /// Rows of the raw PostgreSQL insert baseline.
    pub raw_rows: usize,
    pub out: PathBuf,
    /// A label for this run (e.g. "before", "after").
    pub label: String,
    /// Keep the scratch streams and database.
    pub keep: bool,
    /// The configuration file the services should read too (`--config`).
    pub config_file: Option<PathBuf>,
}

/// The scratch namespace is `bench` followed by the configuration's own (so runs of
/// differently namespaced configurations never meet), and the network is `bench`.
const NAMESPACE: &str = "bench";
const NETWORK: &str = "bench";

#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub nats: String,
    pub postgres: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RawStep {
    pub concurrency: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub workload: Workload,
    pub concurrency: usize,
    #[serde(flatten)]
    pub summary: Summary,
    pub lag: Summary,
    /// This step's calls per second over the raw append rate at the same concurrency.
    pub ratio_to_raw_append: f64,
    pub by_operation: Vec<(String, Summary)>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuild {
    pub read_model: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub ratio_to_raw_insert: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub label: String,
    pub date: String,
    pub machine: Machine,
    pub size: Size,
    pub members: usize,
    pub seed_seconds: f64,
    pub seed_commands: usize,
    pub raw_append: Vec<RawStep>,
    pub raw_insert_rows_per_second: f64,
    pub steps: Vec<Step>,
    pub rebuilds: Vec<Rebuild>,
    pub peak_memory_mib: Vec<(String, f64)>,
}

/// The database URL `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let scheme_end = base.find("://").context("the database URL has no scheme")? + 3;
    let path_start = base[scheme_end..].find('/').map(|at| at + scheme_end);
    let host = path_start.map_or(base, |at| &base[..at]);
    Ok(match query {
        Some(query) => format!("{host}/{name}?{query}"),
        None => format!("{host}/{name}"),
    })
}

/// The database name of `url` (`circle` when it names none).
fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    after_scheme
        .split_once('/')
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty())
        .unwrap_or("circle")
        .to_owned()
}

fn machine_facts() -> (String, usize, f64) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    (cpu, cores, memory_gib)
}

async fn delete_scratch_streams(
    jetstream: &async_nats::jetstream::Context,
    namespace: &str,
) -> anyhow::Result<()> {
    use futures::TryStreamExt as _;
    let suffix = format!("_{}", namespace.to_ascii_uppercase());
    let names: Vec<String> = jetstream.stream_names().try_collect().await?;
    for name in names {
        if name.ends_with(&suffix) {
            jetstream
                .delete_stream(&name)
                .await
                .with_context(|| format!("deleting the scratch stream {name}"))?;
        }
    }
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await
    .with_context(|| format!("dropping the scratch database {name}"))?;
    Ok(())
}

/// Runs the benchmark; `progress` is told what it is doing.
pub async fn run(
    config: &Config,
    options: &Options,
    progress: impl Fn(&str),
) -> anyhow::Result<Report> {
    // Bounded like any input: a clear refusal, before anything is made.
    anyhow::ensure!(
        (1..=100_000).contains(&options.size.groups),
        "--groups must be between 1 and 100000"
    );
    anyhow::ensure!(
        options.size.participants <= 1_000_000,
        "--participants must be at most 1000000"
    );
    anyhow::ensure!(
        !options.concurrency.is_empty()
            && options.concurrency.iter().all(|c| (1..=1024).contains(c)),
        "--concurrency needs values between 1 and 1024"
    );
    anyhow::ensure!(
        options.seconds > 0.0 && options.seconds <= 3600.0,
        "--seconds must be more than 0 and at most 3600"
    );
    anyhow::ensure!(
        (1..=10_000_000).contains(&options.raw_rows),
        "--raw-rows must be between 1 and 10000000"
    );
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let dev_dir = dev_keys::dev_dir()?;
    let keys = DevKeys::ensure(&dev_dir)?;
    let master_keys = DevKeys::master_keys(&dev_dir)?;
    let admin_url = if config.database.owner_url.is_empty() {
        config.database.url.clone()
    } else {
        config.database.owner_url.clone()
    };
    let scratch_database = format!(
        "{}_{NAMESPACE}{}",
        database_name(&config.database.url),
        config.nats.namespace
    );
    let mut bench = config.clone();
    bench.nats.namespace = format!("{NAMESPACE}{}", config.nats.namespace);
    bench.database.url = with_database(&config.database.url, &scratch_database)?;
    if !config.database.owner_url.is_empty() {
        bench.database.owner_url = with_database(&config.database.owner_url, &scratch_database)?;
    }
    bench.auth.issuer = dev_keys::ISSUER.to_owned();
    bench.auth.jwks_file = keys.jwks_file.display().to_string();
    bench.auth.jwks_url = String::new();
    // The configuration's master keys when it has them (as `circle dev` does), else
    // the development ones.
    let own_master_keys =
        config.vault.master_keys_file.is_empty() && config.vault.master_keys.is_none();
    if own_master_keys {
        bench.vault.master_keys_file = master_keys.display().to_string();
    }

    progress("removing an earlier run's scratch streams and database");
    drop_database(&with_database(&admin_url, "postgres")?, &scratch_database).await?;
    // From here on, whatever happens short of the process being killed, the scratch
    // streams and database are removed (unless `--keep`).
    let outcome = async {
        crate::ensure_database(&bench).await?;
        let ops = crate::ops::Ops::connect(&bench).await?;
        delete_scratch_streams(&ops.jetstream, &bench.nats.namespace).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(if bench.database.owner_url.is_empty() {
                &bench.database.url
            } else {
                &bench.database.owner_url
            })
            .await
            .context("connecting to the scratch database")?;
        let postgres: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await?;
        let (cpu, cores, memory_gib) = machine_facts();
        let machine = Machine {
            cpu,
            cores,
            memory_gib,
            nats: ops.nats.server_info().version,
            postgres,
        };

        progress("raw baselines: JetStream optimistic appends");
        // A scratch stream of the scratch namespace (deleted with the others).
        let raw_stream = format!("CIRCLE_RAW_{}", bench.nats.namespace.to_ascii_uppercase());
        let raw_subject = format!("circleraw{}", bench.nats.namespace);
        ops.jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: raw_stream.clone(),
                subjects: vec![format!("{raw_subject}.>")],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("creating the raw append stream")?;
        let mut raw_append = Vec::new();
        for (round, &concurrency) in options.concurrency.iter().enumerate() {
            let mut latencies = raw::jetstream_appends(
                &ops.jetstream,
                &format!("{raw_subject}.r{round}"),
                concurrency,
                options.seconds,
            )
            .await?;
            raw_append.push(RawStep {
                concurrency,
                summary: latencies.summary(),
            });
        }
        ops.jetstream
            .delete_stream(&raw_stream)
            .await
            .context("deleting the raw stream")?;
        progress("raw baselines: PostgreSQL batched inserts");
        let raw_insert_rows_per_second = raw::postgres_inserts(&pool, options.raw_rows).await?;

        progress("starting the services");
        let mut env = vec![
            ("CIRCLE_NATS__URL".to_owned(), bench.nats.url.clone()),
            (
                "CIRCLE_NATS__NAMESPACE".to_owned(),
                bench.nats.namespace.clone(),
            ),
            (
                "CIRCLE_DATABASE__URL".to_owned(),
                bench.database.url.clone(),
            ),
            ("CIRCLE_AUTH__ISSUER".to_owned(), bench.auth.issuer.clone()),
            (
                "CIRCLE_AUTH__JWKS_FILE".to_owned(),
                bench.auth.jwks_file.clone(),
            ),
            ("CIRCLE_AUTH__JWKS_URL".to_owned(), String::new()),
            // Quiet unless asked otherwise (e.g. `sqlx::query=debug` to see statements).
            (
                "CIRCLE_TELEMETRY__LOG_FILTER".to_owned(),
                std::env::var("CIRCLE_TELEMETRY__LOG_FILTER").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        if own_master_keys {
            env.push((
                "CIRCLE_VAULT__MASTER_KEYS_FILE".to_owned(),
                bench.vault.master_keys_file.clone(),
            ));
        }
        if !bench.database.owner_url.is_empty() {
            env.push((
                "CIRCLE_DATABASE__OWNER_URL".to_owned(),
                bench.database.owner_url.clone(),
            ));
        }
        if let Some(file) = &options.config_file {
            env.push((
                circle_config::FILE_VARIABLE.to_owned(),
                file.display().to_string(),
            ));
        }
        let system = system::System::start(&env, &options.out).await?;
        let result = measure(
            &bench,
            options,
            &system,
            keys,
            &progress,
            machine,
            raw_append,
            raw_insert_rows_per_second,
        )
        .await;
        system.stop().await;
        pool.close().await;
        result
    }
    .await;
    if !options.keep {
        progress("removing the scratch streams and database");
        // Both are tried, whatever the other does.
        let streams = async {
            let ops = crate::ops::Ops::connect(&bench).await?;
            delete_scratch_streams(&ops.jetstream, &bench.nats.namespace).await
        }
        .await;
        let database = async {
            drop_database(&with_database(&admin_url, "postgres")?, &scratch_database).await
        }
        .await;
        if let Err(error) = streams.and(database) {
            eprintln!("bench: the scratch namespace was not all removed: {error:#}");
        }
    }
    let report = outcome?;
    std::fs::write(
        options.out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(options.out.join("bench.md"), render(&report))?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    bench: &Config,
    options: &Options,
    system: &system::System,
    keys: DevKeys,
    progress: &impl Fn(&str),
    machine: Machine,
    raw_append: Vec<RawStep>,
    raw_insert_rows_per_second: f64,
) -> anyhow::Result<Report> {
    let mint: Mint = load::mint(keys, bench, NETWORK);
    let clients = Clients::connect(
        &system.address("enrollment"),
        &system.address("sessions"),
        &system.address("accountability"),
    )
    .await?;
    let seeding = Instant::now();
    let network = Arc::new(Network::seed(&clients, &mint, NETWORK, options.size, progress).await?);
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let members = network.members.len();
    // register + enroll per participant, consent + goal + a first check-in per member,
    // a clinic per five groups, a group each, a session started per group.
    let seed_commands = options.size.participants * 2
        + members * 3
        + options.size.groups.div_ceil(5)
        + options.size.groups * 2;
    let mut steps = Vec::new();
    for workload in [Workload::Register, Workload::CheckIn, Workload::Mix] {
        for &concurrency in &options.concurrency {
            progress(&format!(
                "{} at concurrency {concurrency}",
                workload.label()
            ));
            let stop = Arc::new(AtomicBool::new(false));
            let probe = tokio::spawn(load::probe_lag(
                clients.clone(),
                network.clone(),
                stop.clone(),
            ));
            let mut measured =
                load::drive(&clients, &network, workload, concurrency, options.seconds).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut lag = probe.await.unwrap_or_default();
            let summary = measured.all.summary();
            let raw_rate = raw_append
                .iter()
                .find(|step| step.concurrency == concurrency)
                .map_or(0.0, |step| step.summary.per_second);
            steps.push(Step {
                workload,
                concurrency,
                ratio_to_raw_append: ratio(summary.per_second, raw_rate),
                summary,
                lag: lag.summary(),
                by_operation: measured
                    .by_operation
                    .iter_mut()
                    .map(|(name, latencies)| ((*name).to_owned(), latencies.summary()))
                    .collect(),
                errors: std::mem::take(&mut measured.errors),
            });
        }
    }
    let peak_memory_mib = system
        .peak_memory()
        .into_iter()
        .map(|(name, mib)| (name.to_owned(), (mib * 10.0).round() / 10.0))
        .collect();
    let ops = crate::ops::Ops::connect(bench).await?;
    let mut rebuilds = Vec::new();
    for read_model in ["enrollment-read-model", "accountability-read-model"] {
        progress(&format!("rebuilding {read_model}"));
        let rebuilt = crate::ops::projections::rebuild(&ops, read_model, |_| {}).await?;
        let per_second = rebuilt.applied_through as f64 / rebuilt.seconds.max(1e-9);
        rebuilds.push(Rebuild {
            read_model: read_model.to_owned(),
            events: rebuilt.applied_through,
            seconds: (rebuilt.seconds * 100.0).round() / 100.0,
            events_per_second: per_second.round(),
            ratio_to_raw_insert: ratio(per_second, raw_insert_rows_per_second),
        });
    }
    Ok(Report {
        label: options.label.clone(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine,
        size: options.size,
        members,
        seed_seconds: (seed_seconds * 10.0).round() / 10.0,
        seed_commands,
        raw_append,
        raw_insert_rows_per_second: raw_insert_rows_per_second.round(),
        steps,
        rebuilds,
        peak_memory_mib,
    })
}

fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        // Six decimals: a slow step against a fast engine is still above zero.
        (value / baseline * 1e6).round() / 1e6
    } else {
        0.0
    }
}

/// The report as markdown tables.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let machine = &report.machine;
    let _ = writeln!(
        out,
        "### Circle benchmark: {} ({})\n",
        report.label, report.date
    );
    let _ = writeln!(
        out,
        "Machine: {} × {} cores, {} GiB; NATS {}; PostgreSQL {}; all on this one machine.  ",
        machine.cpu, machine.cores, machine.memory_gib, machine.nats, machine.postgres
    );
    let _ = writeln!(
        out,
        "Network: {} groups of {}, {} participants ({} active members); seeded in {} s \
         ({} commands, {:.0}/s).\n",
        report.size.groups,
        report.size.capacity,
        report.size.participants,
        report.members,
        report.seed_seconds,
        report.seed_commands,
        report.seed_commands as f64 / report.seed_seconds.max(1e-9)
    );
    let _ = writeln!(
        out,
        "| raw engine | concurrency | ops/s | p50 ms | p99 ms | p999 ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for step in &report.raw_append {
        let s = &step.summary;
        let _ = writeln!(
            out,
            "| JetStream append, per-subject OCC | {} | {:.0} | {} | {} | {} |",
            step.concurrency, s.per_second, s.p50_ms, s.p99_ms, s.p999_ms
        );
    }
    let _ = writeln!(
        out,
        "| PostgreSQL insert, 500 rows a statement | 1 | {:.0} rows/s | | | |\n",
        report.raw_insert_rows_per_second
    );
    let _ = writeln!(
        out,
        "| Circle over gRPC | concurrency | calls/s | p50 ms | p99 ms | p999 ms | failed | × raw append | lag p50 ms | lag p99 ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for step in &report.steps {
        let s = &step.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            step.workload.label(),
            step.concurrency,
            s.per_second,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.failed,
            step.ratio_to_raw_append,
            step.lag.p50_ms,
            step.lag.p99_ms
        );
    }
    if let Some(mix) = report
        .steps
        .iter()
        .rev()
        .find(|step| step.workload == Workload::Mix)
    {
        let _ = writeln!(
            out,
            "\nThe mix at concurrency {}, by operation:\n\n| operation | calls/s | p50 ms | p99 ms | p999 ms | failed |\n|---|---|---|---|---|---|",
            mix.concurrency
        );
        for (name, s) in &mix.by_operation {
            let _ = writeln!(
                out,
                "| {name} | {:.0} | {} | {} | {} | {} |",
                s.per_second, s.p50_ms, s.p99_ms, s.p999_ms, s.failed
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| rebuild | events | seconds | events/s | × raw insert |\n|---|---|---|---|---|"
    );
    for rebuild in &report.rebuilds {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} |",
            rebuild.read_model,
            rebuild.events,
            rebuild.seconds,
            rebuild.events_per_second,
            rebuild.ratio_to_raw_insert
        );
    }
    let _ = writeln!(out, "\n| service | peak resident MiB |\n|---|---|");
    for (service, mib) in &report.peak_memory_mib {
        let _ = writeln!(out, "| {service} | {mib} |");
    }
    let errors: Vec<&String> = report.steps.iter().flat_map(|step| &step.errors).collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nFirst failures seen:\n");
        for error in errors.iter().take(10) {
            let _ = writeln!(out, "- {error}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_database_replaces_only_the_name() -> anyhow::Result<()> {
        assert_eq!(
            with_database(
                "postgres://u:p@h:5432/circle?sslmode=disable",
                "circle_bench"
            )?,
            "postgres://u:p@h:5432/circle_bench?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "circle_bench")?,
            "postgres://h/circle_bench"
        );
        assert_eq!(database_name("postgres://u@h/circle?x=1"), "circle");
        assert_eq!(database_name("postgres://u@h"), "circle");
        Ok(())
    }
}
