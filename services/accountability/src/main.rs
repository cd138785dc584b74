//! `circle-accountability`: runs the accountability service alone (see `circle_service::main` for its
//! configuration and exit codes).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    circle_service::main("circle-accountability", |config, shutdown| {
        circle_accountability::run(config, shutdown)
    })
    .await
}
