//! `circle-enrollment`: runs the enrollment service alone (see `circle_service::main` for its
//! configuration and exit codes).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    circle_service::main("circle-enrollment", |config, shutdown| {
        circle_enrollment::run(config, shutdown)
    })
    .await
}
