//! `circle-accountability`: runs the sessions service alone. Configuration: defaults, then
//! the TOML file named by `CIRCLE_CONFIG` (if set), then `CIRCLE_…` variables.

use std::path::PathBuf;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let file = std::env::var_os("CIRCLE_CONFIG").map(PathBuf::from);
    let config = match circle_config::Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("circle-accountability: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = match circle_telemetry::init(
        "circle-accountability",
        &config.telemetry.log_filter,
        config.telemetry.otlp_endpoint.as_deref(),
    ) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("circle-accountability: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match circle_accountability::run(config, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "sessions service stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
