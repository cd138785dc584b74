//! `circle-sessions`: runs the sessions service alone (see `circle_service::main` for its
//! configuration and exit codes).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    circle_service::main("circle-sessions", |config, shutdown| {
        circle_sessions::run(config, shutdown)
    })
    .await
}
