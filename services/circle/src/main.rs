//! `circle`: the command-line tool.
//!
//! - `circle dev [--config FILE]`: creates the database if needed, starts every service
//!   in this process, seeds the demo network, prints the gRPC addresses, and runs until
//!   Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;

const USAGE: &str = "usage: circle dev [--config FILE]";

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let config_file = match arguments.as_slice() {
        [command] if command == "dev" => None,
        [command, flag, file] if command == "dev" && flag == "--config" => {
            Some(PathBuf::from(file))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match dev(config_file).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("circle: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dev(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = circle_config::Config::load(config_file.as_deref())?;
    // It seeds its own services over plaintext: a development tool, not a deployment.
    anyhow::ensure!(
        config.grpc.tls_cert.is_none(),
        "circle dev serves plaintext for development; unset grpc.tls_cert and grpc.tls_key \
         (TLS is for the service binaries)"
    );
    let _telemetry = circle_telemetry::init(
        "circle-dev",
        &config.telemetry.log_filter,
        config.telemetry.otlp_endpoint.as_deref(),
    )?;
    circle_cli::ensure_database(&config).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let (addresses, task) = circle_cli::start_all(&config, shutdown).await?;
    let mut client =
        EnrollmentServiceClient::connect(format!("http://{}", addresses.enrollment)).await?;
    let seeded = circle_cli::demo::seed(&mut client).await?;
    let mut accountability = circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient::connect(format!(
        "http://{}",
        addresses.accountability
    ))
    .await?;
    let check_ins = circle_cli::demo::seed_accountability(&mut client, &mut accountability).await?;
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
        "Try: grpcurl -plaintext -H 'x-circle-network: demo' -H 'x-circle-role: network-admin' \\"
    );
    println!(
        "       -d '{{\"parent\": \"{}\"}}' {} circle.enrollment.v1.EnrollmentService/ListWaitlist",
        seeded.groups.last().cloned().unwrap_or_default(),
        addresses.enrollment
    );
    task.await??;
    Ok(())
}
