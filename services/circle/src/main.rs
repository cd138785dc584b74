//! `circle`: the command-line tool (clap; `circle --help` lists everything).
//!
//! - `circle dev`: creates the database if needed, makes (once) a development signing
//!   key and trusts it, starts every service in this process, seeds the demo network,
//!   prints the gRPC addresses, and runs until Ctrl-C.
//! - `circle token ROLE [--subject ID] [--clinic ID]... [--network ID]
//!   [--ttl-minutes N]`: prints a development bearer token for one of the demo's people
//!   (signed with `circle dev`'s key; see `dev_keys`).
//! - `circle rewrap [--network ID]...`: the master key rotation's second step:
//!   re-wraps every live data key of the networks (all the networks enrollment knows,
//!   when none is named) with the newest master key of `vault.*`, after which the older
//!   master keys can be removed from the configuration.
//! - `circle setup`: the deployment's one-shot setup (`circle_cli::setup`): the
//!   database and runtime role, the streams, the schemas; idempotent.
//! - The operator's commands (`status`, `projections`, `dead-letters`, `events`): see
//!   `circle_cli::ops`; this file parses and prints.
//!
//! Every command takes `--config FILE` and `--json`. Exit codes: 0 ok, 1 the operation
//! failed, 2 bad usage or configuration, 3 unhealthy or not found.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use circle_cli::dev_keys::{self, DevKeys, TokenRequest};
use circle_cli::ops::{self, EXIT_UNHEALTHY, Ops, Refusal};
use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "circle",
    version,
    about = "Circle's command-line tool: development and operations"
)]
struct Cli {
    /// The configuration file (else the file CIRCLE_CONFIG names, as for the service
    /// binaries; else defaults), then CIRCLE_<SECTION>__<KEY> variables.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine output: JSON with stable field names, one document (one per line for
    /// `events tail --follow`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every service in this process with the demo network (development).
    Dev,
    /// Make what the services need before they start, once per deploy (idempotent,
    /// safe while they run): the database and runtime role, every service's event and
    /// audit stream, and every schema as the owner.
    Setup,
    /// Print a development bearer token signed with `circle dev`'s key.
    Token {
        /// network-admin, clinic-admin, facilitator, intake-coordinator, participant, service
        role: String,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long = "clinic", value_name = "ID")]
        clinics: Vec<String>,
        #[arg(long, default_value = circle_cli::demo::NETWORK)]
        network: String,
        #[arg(long, default_value_t = 8 * 60)]
        ttl_minutes: i64,
    },
    /// Re-wrap data keys with the newest master key (rotation's second step).
    Rewrap {
        #[arg(long = "network", value_name = "ID")]
        networks: Vec<String>,
    },
    /// Streams, consumers, and each projection's lag and health (exit 3 if unhealthy).
    Status {
        /// A projection further behind its stream than this many events is unhealthy.
        #[arg(long, default_value_t = 100)]
        max_lag: u64,
        /// Where to ask enrollment's health (plaintext gRPC). Default: http:// and the
        /// configuration's `enrollment.listen` when it names one host (a wildcard host
        /// or port 0: not asked, shown unknown).
        #[arg(long)]
        enrollment: Option<String>,
        /// Likewise for sessions (`sessions.listen`).
        #[arg(long)]
        sessions: Option<String>,
        /// Likewise for accountability (`accountability.listen`).
        #[arg(long)]
        accountability: Option<String>,
    },
    /// The services' projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Messages projections gave up on.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Decoded events of the services' streams (personal fields shown `[sealed]`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Run one service in this process (what `circle bench` starts, each service a
    /// process of its own); configured as the service binaries are.
    #[command(hide = true)]
    Serve {
        /// enrollment, sessions or accountability
        service: String,
    },
    /// Benchmark: the raw engines, then the services (each its own process, on a
    /// scratch namespace and database) seeded with a network and driven over gRPC;
    /// writes bench.md and bench.json (see `circle_cli::bench`).
    Bench {
        #[arg(long, default_value_t = 500)]
        groups: usize,
        #[arg(long, default_value_t = 6000)]
        participants: usize,
        #[arg(long, default_value_t = 12)]
        capacity: u32,
        /// Concurrencies to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Seconds per measured step.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Rows of the raw PostgreSQL insert baseline.
        #[arg(long, default_value_t = 200_000)]
        raw_rows: usize,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long, default_value = "current")]
        label: String,
        /// Keep the scratch streams and database afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Fault injection: under steady load, SIGKILLs and restarts NATS (one server, or
    /// one and then two nodes of a three-node cluster), PostgreSQL and a replica of each
    /// service (two of each run), then checks the log and the read models (see
    /// `circle_cli::faults`); writes faults.md and faults.json; exit 1 when a check fails.
    Faults {
        /// single, cluster, or both (comma-separated).
        #[arg(
            long = "topology",
            value_delimiter = ',',
            default_value = "single,cluster"
        )]
        topologies: Vec<String>,
        /// Seconds of load under faults, per topology.
        #[arg(long, default_value_t = 120.0)]
        seconds: f64,
        #[arg(long, default_value_t = 8)]
        groups: usize,
        #[arg(long, default_value_t = 40)]
        participants: usize,
        #[arg(long, default_value_t = 6)]
        capacity: u32,
        /// Clients sending commands at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds between faults, drawn between LOW and HIGH.
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        interval: Vec<f64>,
        /// The random seed (default: from the clock; printed in the report).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "faults-results")]
        out: PathBuf,
        /// The nats-server to run (default: $CIRCLE_NATS_SERVER, the current server
        /// deploy/infra.sh installs, or nats-server on the PATH).
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// PostgreSQL's programs (default: the newest /usr/lib/postgresql/*/bin).
        #[arg(long)]
        postgres_bin: Option<PathBuf>,
        /// Keep the scratch directories (data and logs) of passing runs too.
        #[arg(long)]
        keep: bool,
    },
    /// Seed a demo network into running services (which trust `circle dev`'s key).
    Demo {
        /// Default: http:// and the configuration's `enrollment.listen`.
        #[arg(long, value_name = "URL")]
        enrollment: Option<String>,
        /// Default: http:// and the configuration's `sessions.listen`.
        #[arg(long, value_name = "URL")]
        sessions: Option<String>,
        /// Default: http:// and the configuration's `accountability.listen`.
        #[arg(long, value_name = "URL")]
        accountability: Option<String>,
        #[arg(long, default_value = "demo-large")]
        network: String,
        #[arg(long, default_value_t = 3)]
        clinics: usize,
        #[arg(long, default_value_t = 30)]
        participants: usize,
        #[arg(long, default_value_t = 4)]
        weeks: usize,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Every projection: service, kind, schema, stream, checkpoint.
    List,
    /// Rebuild a read model from its stream into a fresh schema, then swap it in (no
    /// downtime; process managers are refused).
    Rebuild { name: String },
    /// Empty a read model so its running service replays it from the start (reads see
    /// a partial model meanwhile; needs --yes).
    Reset {
        name: String,
        #[arg(long)]
        yes: bool,
    },
    /// The way out of a halt caused by two bad events in a row: dead-letter the event
    /// the halted projection is stuck on and go on past it (needs --yes).
    Skip {
        name: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// Every dead letter, or one projection's.
    List {
        #[arg(long)]
        projection: Option<String>,
    },
    /// One dead letter: subject, error, time, and its events' types (never a payload).
    Show { projection: String, sequence: u64 },
    /// Apply the message through its read model again; deleted on success, kept (exit
    /// 1) on failure.
    Retry { projection: String, sequence: u64 },
    /// Delete a dead letter (its message's effects stay missing; needs --yes).
    Discard {
        projection: String,
        sequence: u64,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// The last events of a service's stream; --follow keeps printing new ones.
    Tail {
        #[arg(long, default_value = "enrollment")]
        service: String,
        /// How many of the last commits to show first.
        #[arg(long, default_value_t = 20)]
        count: u64,
        #[arg(long)]
        follow: bool,
    },
    /// Every event of one aggregate: SERVICE NETWORK/TYPE/ID (e.g. `enrollment
    /// acme/participant/sam`).
    Show {
        service: String,
        aggregate: String,
        /// Show personal fields in clear (needs the master keys of the configuration);
        /// the disclosure is recorded in the service's audit stream first.
        #[arg(long, requires_all = ["purpose", "operator"])]
        reveal: bool,
        /// Why: treatment, payment or operations (recorded with the disclosure).
        #[arg(long, requires = "reveal")]
        purpose: Option<String>,
        /// Who is looking: your operator id (recorded with the disclosure; never a name).
        #[arg(long, requires = "reveal")]
        operator: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve { service } = &cli.command {
        return serve(service).await;
    }
    let file = cli.config.clone().or_else(|| {
        std::env::var_os(circle_config::FILE_VARIABLE)
            .filter(|file| !file.is_empty())
            .map(PathBuf::from)
    });
    let config = match circle_config::Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("circle: {error:#}");
            return ExitCode::from(ops::EXIT_USAGE);
        }
    };
    let json = cli.json;
    let result = match cli.command {
        Command::Dev => dev(config).await,
        Command::Setup => setup(config, json).await,
        Command::Token {
            role,
            subject,
            clinics,
            network,
            ttl_minutes,
        } => token(TokenRequest {
            role,
            network,
            subject,
            clinics,
            audiences: dev_keys::audiences(&config),
            ttl_minutes,
        }),
        Command::Rewrap { networks } => rewrap(networks, config).await,
        Command::Bench {
            groups,
            participants,
            capacity,
            concurrency,
            seconds,
            raw_rows,
            out,
            label,
            keep,
        } => {
            let options = circle_cli::bench::Options {
                size: circle_cli::bench::load::Size {
                    groups,
                    participants,
                    capacity,
                },
                concurrency,
                seconds,
                raw_rows,
                out,
                label,
                keep,
                config_file: file.clone(),
            };
            bench(&config, &options, json).await
        }
        Command::Faults {
            topologies,
            seconds,
            groups,
            participants,
            capacity,
            concurrency,
            interval,
            seed,
            out,
            nats_server,
            postgres_bin,
            keep,
        } => {
            let options = (|| {
                anyhow::ensure!(
                    interval.len() == 2,
                    "--interval takes two numbers: LOW,HIGH"
                );
                Ok(circle_cli::faults::Options {
                    topologies: topologies
                        .iter()
                        .map(|topology| circle_cli::faults::Topology::parse(topology))
                        .collect::<anyhow::Result<_>>()?,
                    seconds,
                    size: circle_cli::bench::load::Size {
                        groups,
                        participants,
                        capacity,
                    },
                    concurrency,
                    interval: (interval[0], interval[1]),
                    seed: seed.unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |since| since.as_nanos() as u64)
                    }),
                    out,
                    nats_server,
                    postgres_bin,
                    keep,
                })
            })();
            match options {
                Ok(options) => faults(&config, &options, json).await,
                Err(error) => Err(ops::Refusal::usage(format!("{error:#}"))),
            }
        }
        Command::Demo {
            enrollment,
            sessions,
            accountability,
            network,
            clinics,
            participants,
            weeks,
        } => {
            let size = circle_cli::demo::Size {
                clinics,
                participants,
                weeks,
                start_date: (chrono::Utc::now() - chrono::Duration::weeks(weeks as i64))
                    .date_naive(),
            };
            let urls = [
                enrollment.unwrap_or_else(|| format!("http://{}", config.enrollment.listen)),
                sessions.unwrap_or_else(|| format!("http://{}", config.sessions.listen)),
                accountability
                    .unwrap_or_else(|| format!("http://{}", config.accountability.listen)),
            ];
            demo(config, urls, network, size, json).await
        }
        command => operate(command, config, json).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("circle: {error:#}");
            ExitCode::from(ops::exit_code(&error))
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The operator's commands; the exit code on success (3 for an unhealthy status).
async fn operate(
    command: Command,
    config: circle_config::Config,
    json: bool,
) -> anyhow::Result<u8> {
    let ops = Ops::connect(&config).await?;
    match command {
        Command::Status {
            max_lag,
            enrollment,
            sessions,
            accountability,
        } => {
            use ops::status::{default_url, probe_services};
            let services = probe_services(vec![
                (
                    "enrollment",
                    enrollment.or_else(|| default_url(config.enrollment.listen)),
                ),
                (
                    "sessions",
                    sessions.or_else(|| default_url(config.sessions.listen)),
                ),
                (
                    "accountability",
                    accountability.or_else(|| default_url(config.accountability.listen)),
                ),
            ])
            .await;
            let status = ops::status::status(&ops, max_lag)
                .await?
                .with_services(services);
            if json {
                print_json(&status)?;
            } else {
                print!("{}", ops::status::render(&status));
                println!();
            }
            return Ok(if status.healthy { 0 } else { EXIT_UNHEALTHY });
        }
        Command::Projections(ProjectionsCommand::List) => {
            let lines = ops::projections::list(&ops).await?;
            if json {
                print_json(&lines)?;
            } else {
                print!("{}", ops::projections::render_list(&lines));
            }
        }
        Command::Projections(ProjectionsCommand::Rebuild { name }) => {
            // The bar on stderr, only for a person watching.
            let bar =
                (!json && std::io::stderr().is_terminal()).then(ops::projections::progress_bar);
            let rebuilt = ops::projections::rebuild(&ops, &name, |progress| {
                if let Some(bar) = &bar {
                    bar.set_length(progress.total);
                    bar.set_position(progress.position);
                }
            })
            .await;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let rebuilt = rebuilt?;
            if json {
                print_json(&rebuilt)?;
            } else {
                print!("{}", ops::projections::render_rebuilt(&rebuilt));
            }
        }
        Command::Projections(ProjectionsCommand::Reset { name, yes }) => {
            if !yes {
                return Err(Refusal::usage(format!(
                    "resetting {name} empties it until its service has replayed the stream; run again with --yes (or use `circle projections rebuild {name}`, without downtime)"
                )));
            }
            ops::projections::reset(&ops, &name).await?;
            if json {
                print_json(&serde_json::json!({ "projection": name, "reset": true }))?;
            } else {
                println!("reset {name}: its service replays it from the start");
            }
        }
        Command::Projections(ProjectionsCommand::Skip { name, yes }) => {
            if !yes {
                return Err(Refusal::usage(format!(
                    "skipping dead-letters the event {name} is halted on and leaves {name} without its effects; judge it first (`circle status`, the service's log), then run again with --yes"
                )));
            }
            let sequence = ops::projections::skip(&ops, &name).await?;
            if json {
                print_json(&serde_json::json!({ "projection": name, "skipped": sequence }))?;
            } else {
                println!(
                    "{name}: sequence {sequence} dead-lettered and skipped; the projection goes on (`circle dead-letters show {name} {sequence}`)"
                );
            }
        }
        Command::DeadLetters(DeadLettersCommand::List { projection }) => {
            let letters = ops::dead_letters::list(&ops, projection.as_deref()).await?;
            if json {
                print_json(&letters)?;
            } else {
                print!("{}", ops::dead_letters::render_list(&letters));
            }
        }
        Command::DeadLetters(DeadLettersCommand::Show {
            projection,
            sequence,
        }) => {
            let letter = ops::dead_letters::show(&ops, &projection, sequence).await?;
            if json {
                print_json(&letter)?;
            } else {
                print!("{}", ops::dead_letters::render_one(&letter));
            }
        }
        Command::DeadLetters(DeadLettersCommand::Retry {
            projection,
            sequence,
        }) => {
            ops::dead_letters::retry(&ops, &projection, sequence).await?;
            if json {
                print_json(
                    &serde_json::json!({ "projection": projection, "sequence": sequence, "retried": true }),
                )?;
            } else {
                println!("{projection} sequence {sequence}: applied; dead letter removed");
            }
        }
        Command::DeadLetters(DeadLettersCommand::Discard {
            projection,
            sequence,
            yes,
        }) => {
            if !yes {
                return Err(Refusal::usage(format!(
                    "discarding leaves {projection} without the effects of sequence {sequence}; run again with --yes"
                )));
            }
            ops::dead_letters::discard(&ops, &projection, sequence).await?;
            if json {
                print_json(
                    &serde_json::json!({ "projection": projection, "sequence": sequence, "discarded": true }),
                )?;
            } else {
                println!("{projection} sequence {sequence}: dead letter discarded");
            }
        }
        Command::Events(EventsCommand::Show {
            service,
            aggregate,
            reveal,
            purpose,
            operator,
        }) => {
            let reveal = match (reveal, purpose, operator) {
                (true, Some(purpose), Some(operator)) => {
                    Some(ops::events::Reveal::open(&ops, &service, &operator, &purpose).await?)
                }
                _ => None,
            };
            let events = ops::events::show(&ops, &service, &aggregate, reveal.as_ref()).await?;
            if json {
                print_json(&events)?;
            } else {
                for event in &events {
                    print!("{}", ops::events::render(event));
                }
            }
        }
        Command::Events(EventsCommand::Tail {
            service,
            count,
            follow,
        }) => {
            let mut failed = None;
            ops::events::tail(&ops, &service, count, follow, |event| {
                let printed = if json {
                    serde_json::to_string(&event).map(|line| println!("{line}"))
                } else {
                    print!("{}", ops::events::render(&event));
                    Ok(())
                };
                if let Err(error) = printed {
                    failed = Some(error);
                    return false;
                }
                true
            })
            .await?;
            if let Some(error) = failed {
                return Err(error.into());
            }
        }
        Command::Dev
        | Command::Serve { .. }
        | Command::Bench { .. }
        | Command::Faults { .. }
        | Command::Setup
        | Command::Token { .. }
        | Command::Rewrap { .. }
        | Command::Demo { .. } => {}
    }
    Ok(0)
}

/// `circle setup`: prints what it made (or found); a failure is the caller's exit 1.
async fn setup(config: circle_config::Config, json: bool) -> anyhow::Result<u8> {
    let report = circle_cli::setup::run(&config).await?;
    if json {
        print_json(&report)?;
    } else {
        print!("{}", circle_cli::setup::render(&report));
    }
    Ok(0)
}

/// Re-wraps the data keys of `networks` (or of every network enrollment knows) with
/// the newest configured master key, printing how many per network.
async fn rewrap(networks: Vec<String>, config: circle_config::Config) -> anyhow::Result<u8> {
    let master = circle_service::master_keys(&config)?;
    let current = master.current_id().to_owned();
    let options = sqlx::postgres::PgPoolOptions::new().max_connections(2);
    let pool = options.clone().connect(&config.database.url).await?;
    let owner = options.connect(&config.database.owner_url).await?;
    let database = circle_service::Database::new(pool.clone(), owner).await?;
    let store = circle_vault::store::KeyStore::open(database, master).await?;
    let networks = if networks.is_empty() {
        circle_service::networks(&pool, circle_enrollment::read_model::SCHEMA).await?
    } else {
        networks
    };
    let mut left = Vec::new();
    for network in networks {
        let count = store.rewrap(&network).await?;
        println!("{network}: {count} data keys re-wrapped with master key {current}");
        // A service still running on the old configuration may have made one since.
        let stale = store.stale(&network).await?;
        if stale > 0 {
            left.push(format!("{network}: {stale}"));
        }
    }
    anyhow::ensure!(
        left.is_empty(),
        "data keys still wrapped by an older master key ({}); restart every service with \
         the new master key first and run circle rewrap again, before removing the old key",
        left.join(", ")
    );
    Ok(0)
}

/// Seeds a demo network of `size` into the services at `urls` (enrollment, sessions,
/// accountability), with tokens signed by `circle dev`'s development key.
async fn demo(
    config: circle_config::Config,
    [enrollment, sessions, accountability]: [String; 3],
    network: String,
    size: circle_cli::demo::Size,
    json: bool,
) -> anyhow::Result<u8> {
    use circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient;
    use circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient;
    if size.clinics == 0 {
        return Err(Refusal::usage("--clinics must be at least 1"));
    }
    let keys = DevKeys::ensure(&dev_keys::dev_dir()?)?;
    let audiences = dev_keys::audiences(&config);
    let mint = |role: &str, subject: &str, clinics: &[&str]| -> String {
        let request = TokenRequest {
            role: role.to_owned(),
            network: network.clone(),
            subject: Some(subject.to_owned()),
            clinics: clinics.iter().map(|clinic| (*clinic).to_owned()).collect(),
            audiences: audiences.clone(),
            ttl_minutes: 60,
        };
        request
            .claims(dev_keys::now())
            .map(|claims| keys.token(&claims))
            .unwrap_or_default()
    };
    let mut enrollment = EnrollmentServiceClient::connect(enrollment).await?;
    let mut sessions = SessionsServiceClient::connect(sessions).await?;
    let mut accountability = AccountabilityServiceClient::connect(accountability).await?;
    let seeded = circle_cli::demo::seed_network(
        &network,
        &mut enrollment,
        &mut sessions,
        &mut accountability,
        &mint,
        size,
    )
    .await?;
    if json {
        print_json(&seeded)?;
    } else {
        println!(
            "network {}: {} clinics, {} groups, {} participants ({} active, {} waitlisted), \
             {} sessions held with {} attendance records, {} check-ins",
            seeded.network,
            seeded.clinics,
            seeded.groups,
            seeded.participants,
            seeded.active,
            seeded.waitlisted,
            seeded.sessions_held,
            seeded.attendance_records,
            seeded.check_ins
        );
    }
    Ok(0)
}

/// `circle serve SERVICE`: one service, as its own binary runs it.
async fn serve(service: &str) -> ExitCode {
    match service {
        "enrollment" => circle_service::main("circle-enrollment", circle_enrollment::run).await,
        "sessions" => circle_service::main("circle-sessions", circle_sessions::run).await,
        "accountability" => {
            circle_service::main("circle-accountability", circle_accountability::run).await
        }
        other => {
            eprintln!(
                "circle: unknown service {other:?}; one of enrollment, sessions, accountability"
            );
            ExitCode::from(ops::EXIT_USAGE)
        }
    }
}

/// `circle bench`: prints the report's tables (or its JSON) when done.
async fn bench(
    config: &circle_config::Config,
    options: &circle_cli::bench::Options,
    json: bool,
) -> anyhow::Result<u8> {
    let report = circle_cli::bench::run(config, options, |step| eprintln!("bench: {step}")).await?;
    if json {
        print_json(&report)?;
    } else {
        println!("{}", circle_cli::bench::render(&report));
        eprintln!(
            "bench: wrote {} and {}",
            options.out.join("bench.md").display(),
            options.out.join("bench.json").display()
        );
    }
    Ok(0)
}

/// `circle faults`: prints the summary (or the report's JSON); exit 1 when a check
/// failed.
async fn faults(
    config: &circle_config::Config,
    options: &circle_cli::faults::Options,
    json: bool,
) -> anyhow::Result<u8> {
    if let Err(error) = options.validate() {
        return Err(ops::Refusal::usage(format!("{error:#}")));
    }
    let report =
        circle_cli::faults::run(config, options, |step| eprintln!("faults: {step}")).await?;
    if json {
        print_json(&report)?;
    } else {
        println!("{}", circle_cli::faults::render(&report));
        eprintln!(
            "faults: wrote {} and {}",
            options.out.join("faults.md").display(),
            options.out.join("faults.json").display()
        );
    }
    Ok(if report.passed { 0 } else { 1 })
}

fn token(request: TokenRequest) -> anyhow::Result<u8> {
    let keys = DevKeys::ensure(&dev_keys::dev_dir()?)?;
    println!("{}", keys.token(&request.claims(dev_keys::now())?));
    Ok(0)
}

/// The calling-service identity `circle dev` lets follow the integration events.
const DEV_MESSAGING_SERVICE: &str = "messaging";

async fn dev(mut config: circle_config::Config) -> anyhow::Result<u8> {
    // First: a Ctrl-C while the services start is kept for when they have.
    let stop = circle_service::stop_requested();
    anyhow::ensure!(
        config.auth.jwks_file.is_empty() && config.auth.jwks_url.is_empty(),
        "`circle dev` trusts its own development key; unset auth.jwks_file and auth.jwks_url \
         (a deployment with real keys runs the service binaries)"
    );
    // It seeds its own services over plaintext: a development tool, not a deployment.
    anyhow::ensure!(
        config.grpc.tls_cert.is_none(),
        "circle dev serves plaintext for development; unset grpc.tls_cert and grpc.tls_key \
         (TLS is for the service binaries)"
    );
    let dev_dir = dev_keys::dev_dir()?;
    let keys = DevKeys::ensure(&dev_dir)?;
    config.auth.issuer = dev_keys::ISSUER.to_owned();
    config.auth.jwks_file = keys.jwks_file.display().to_string();
    // A development messaging service (`circle token service --subject messaging`), for
    // the README's example subscriber: it follows accountability's integration events
    // and records nudge deliveries. A configuration that names it already is kept.
    config
        .auth
        .services
        .entry(DEV_MESSAGING_SERVICE.to_owned())
        .or_insert_with(|| {
            use circle_proto::accountability::v1::accountability_service_server::SERVICE_NAME;
            ["WatchIntegrationEvents", "RecordNudgeDelivery"]
                .map(|method| format!("{SERVICE_NAME}/{method}"))
                .to_vec()
        });
    if config.vault.master_keys_file.is_empty() && config.vault.master_keys.is_none() {
        config.vault.master_keys_file = DevKeys::master_keys(&dev_dir)?.display().to_string();
    }
    let _telemetry = circle_telemetry::init("circle-dev", &config.telemetry)?;
    circle_cli::ensure_database(&config).await?;
    let (addresses, task) = circle_cli::start_all(&config, stop).await?;
    let audiences = dev_keys::audiences(&config);
    let mint = |role: &str, subject: &str, clinics: &[&str]| -> String {
        let request = TokenRequest {
            role: role.to_owned(),
            network: circle_cli::demo::NETWORK.to_owned(),
            subject: Some(subject.to_owned()),
            clinics: clinics.iter().map(|clinic| (*clinic).to_owned()).collect(),
            audiences: audiences.clone(),
            ttl_minutes: 60,
        };
        request
            .claims(dev_keys::now())
            .map(|claims| keys.token(&claims))
            .unwrap_or_default()
    };
    let mut client =
        EnrollmentServiceClient::connect(format!("http://{}", addresses.enrollment)).await?;
    let seeded = circle_cli::demo::seed(&mut client, &mint).await?;
    let mut accountability = circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient::connect(format!(
        "http://{}",
        addresses.accountability
    ))
    .await?;
    let check_ins =
        circle_cli::demo::seed_accountability(&mut client, &mut accountability, &mint).await?;
    println!("Circle is running (Ctrl-C stops it).");
    println!(
        "  enrollment  grpc://{}  (circle.enrollment.v1.EnrollmentService, health, reflection)",
        addresses.enrollment
    );
    println!(
        "  sessions    grpc://{}  (circle.sessions.v1.SessionsService, health, reflection)",
        addresses.sessions
    );
    println!(
        "  accountability grpc://{}  (circle.accountability.v1.AccountabilityService, health, reflection)",
        addresses.accountability
    );
    println!(
        "Demo network 'demo': {} clinics, {} groups, {} participants ({} active, {} waitlisted).",
        seeded.clinics.len(),
        seeded.groups.len(),
        seeded.participants,
        seeded.active,
        seeded.waitlisted
    );
    println!(
        "Accountability: {check_ins} members with a daily goal and a check-in shared with their group."
    );
    println!(
        "Every call needs a bearer token: `circle token ROLE` prints one for the demo's people \
         (ROLE: network-admin, clinic-admin, facilitator, intake-coordinator, participant)."
    );
    println!(
        "Try: grpcurl -plaintext -H \"authorization: Bearer $(cargo run -q -p circle-cli --bin circle -- token network-admin)\" \\"
    );
    println!(
        "       -d '{{\"parent\": \"{}\"}}' {} circle.enrollment.v1.EnrollmentService/ListWaitlist",
        seeded.groups.last().cloned().unwrap_or_default(),
        addresses.enrollment
    );
    task.await??;
    Ok(0)
}
