//! `circle`: the command-line tool.
//!
//! - `circle dev [--config FILE]`: creates the database if needed, makes (once) a
//!   development signing key and trusts it, starts every service in this process,
//!   seeds the demo network, prints the gRPC addresses, and runs until Ctrl-C.
//! - `circle token ROLE [--subject ID] [--clinic ID]... [--network ID]
//!   [--ttl-minutes N] [--config FILE]`: prints a development bearer token for one of
//!   the demo's people (signed with `circle dev`'s key; see `dev_keys`).
//! - `circle rewrap [--network ID]... [--config FILE]`: the master key rotation's
//!   second step: re-wraps every live data key of the networks (all the networks
//!   enrollment knows, when none is named) with the newest master key of `vault.*`,
//!   after which the older master keys can be removed from the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use circle_cli::dev_keys::{self, DevKeys, TokenRequest};
use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;

const USAGE: &str = "usage: circle dev [--config FILE]
       circle token ROLE [--subject ID] [--clinic ID]... [--network ID] [--ttl-minutes N] [--config FILE]
         ROLE: network-admin, clinic-admin, facilitator, intake-coordinator, participant, service
       circle rewrap [--network ID]... [--config FILE]";

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let result = match arguments.split_first() {
        Some((command, rest)) if command == "dev" => match rest {
            [] => dev(None).await,
            [flag, file] if flag == "--config" => dev(Some(PathBuf::from(file))).await,
            _ => return usage(),
        },
        Some((command, rest)) if command == "rewrap" => match parse_rewrap(rest) {
            Some((networks, config)) => rewrap(networks, config).await,
            None => return usage(),
        },
        Some((command, rest)) if command == "token" => match parse_token(rest) {
            Some((request, config)) => token(request, config),
            None => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("circle: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn parse_rewrap(arguments: &[String]) -> Option<(Vec<String>, Option<PathBuf>)> {
    let (mut networks, mut config, mut rest) = (Vec::new(), None, arguments);
    while let [flag, value, tail @ ..] = rest {
        match flag.as_str() {
            "--network" => networks.push(value.clone()),
            "--config" => config = Some(PathBuf::from(value)),
            _ => return None,
        }
        rest = tail;
    }
    rest.is_empty().then_some((networks, config))
}

/// Re-wraps the data keys of `networks` (or of every network enrollment knows) with
/// the newest configured master key, printing how many per network.
async fn rewrap(networks: Vec<String>, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = circle_config::Config::load(config_file.as_deref())?;
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
    Ok(())
}

fn parse_token(arguments: &[String]) -> Option<(TokenRequest, Option<PathBuf>)> {
    let (role, mut rest) = arguments.split_first()?;
    let mut request = TokenRequest {
        role: role.clone(),
        network: circle_cli::demo::NETWORK.to_owned(),
        subject: None,
        clinics: Vec::new(),
        audiences: Vec::new(),
        ttl_minutes: 8 * 60,
    };
    let mut config = None;
    while let [flag, value, tail @ ..] = rest {
        match flag.as_str() {
            "--subject" => request.subject = Some(value.clone()),
            "--clinic" => request.clinics.push(value.clone()),
            "--network" => request.network = value.clone(),
            "--ttl-minutes" => request.ttl_minutes = value.parse().ok()?,
            "--config" => config = Some(PathBuf::from(value)),
            _ => return None,
        }
        rest = tail;
    }
    rest.is_empty().then_some((request, config))
}

fn token(mut request: TokenRequest, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = circle_config::Config::load(config_file.as_deref())?;
    request.audiences = dev_keys::audiences(&config);
    let keys = DevKeys::ensure(&dev_keys::dev_dir()?)?;
    println!("{}", keys.token(&request.claims(dev_keys::now())?));
    Ok(())
}

async fn dev(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = circle_config::Config::load(config_file.as_deref())?;
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
    if config.vault.master_keys_file.is_empty() && config.vault.master_keys.is_none() {
        config.vault.master_keys_file = DevKeys::master_keys(&dev_dir)?.display().to_string();
    }
    let _telemetry = circle_telemetry::init("circle-dev", &config.telemetry)?;
    circle_cli::ensure_database(&config).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let (addresses, task) = circle_cli::start_all(&config, shutdown).await?;
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
    Ok(())
}
