//! `circle setup`, the deployment's one-shot setup: on a fresh database and namespace
//! it makes the six streams and every schema, a second run changes nothing, the built
//! binary says so too, and then the services start and answer. An existing stream
//! that differs from the configuration fails the binary with the reason, or is warned
//! about when the configuration says so.

use std::process::Command;
use std::time::Duration;

use circle_cli::ops::catalog::CATALOG;
use circle_cli::setup::{self, Report};
use circle_testkit::TestEnv;

use crate::binaries::{binary, config_file, serving};

/// The six streams: each service's event log and audit stream.
fn streams(env: &TestEnv) -> Vec<String> {
    ["enrollment", "sessions", "accountability"]
        .into_iter()
        .flat_map(|service| [service.to_owned(), format!("{service}_audit")])
        .map(|stream| env.config.stream_name(&stream))
        .collect()
}

/// The schemas setup makes: the key store's and every projection's.
fn schemas() -> Vec<String> {
    std::iter::once(circle_vault::store::SCHEMA)
        .chain(CATALOG.iter().map(|entry| entry.schema))
        .map(str::to_owned)
        .collect()
}

async fn existing_schemas(env: &TestEnv) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname",
    )
    .bind(schemas())
    .fetch_all(&env.pool)
    .await?)
}

fn nothing_made(report: &Report) -> bool {
    !report.changed()
        && !report.database.database_created
        && !report.database.runtime_role_created
        && report
            .streams
            .iter()
            .all(|stream| !stream.created && stream.differences.is_empty())
        && report.schemas.iter().all(|schema| !schema.created)
}

#[tokio::test]
async fn setup_makes_the_streams_and_schemas_once_and_then_the_services_start() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let config = env.config.clone();
    for stream in streams(&env) {
        assert!(
            env.jetstream().get_stream(&stream).await.is_err(),
            "{stream} exists before setup"
        );
    }
    assert!(existing_schemas(&env).await?.is_empty());

    let first = setup::run(&config).await?;
    assert!(first.changed());
    let mut made: Vec<String> = first
        .streams
        .iter()
        .map(|stream| stream.stream.clone())
        .collect();
    made.sort();
    let mut expected = streams(&env);
    expected.sort();
    assert_eq!(made, expected);
    assert!(
        first.streams.iter().all(|stream| stream.created),
        "{first:?}"
    );
    for name in streams(&env) {
        let mut stream = env.jetstream().get_stream(&name).await?;
        let info = stream.info().await?;
        assert_eq!(info.config.num_replicas, config.nats.replicas, "{name}");
        assert_eq!(
            info.config.duplicate_window,
            Duration::from_secs(config.nats.duplicate_window_secs),
            "{name}"
        );
        assert!(info.config.deny_delete && info.config.deny_purge, "{name}");
    }
    let mut every_schema = schemas();
    every_schema.sort();
    assert_eq!(existing_schemas(&env).await?, every_schema);
    assert!(
        first.schemas.iter().all(|schema| schema.created),
        "{first:?}"
    );
    assert_eq!(first.schemas.len(), CATALOG.len() + 1);
    // Each projection's schema holds its own checkpoint row, and the runtime role may
    // read it (the walls' grants are in place).
    for entry in &CATALOG {
        let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT projection FROM {}.projection_checkpoint",
            entry.schema
        )))
        .fetch_all(&env.runtime_pool)
        .await?;
        assert_eq!(names, vec![entry.name.to_owned()], "{}", entry.schema);
    }

    // Again: nothing to make, nothing changed.
    let second = setup::run(&config).await?;
    assert!(nothing_made(&second), "{second:?}");
    assert_eq!(existing_schemas(&env).await?, every_schema);

    // The binary, as a deployment's job runs it: the same, as one JSON document.
    let file = config_file(&env)?;
    let program = binary("circle").await?;
    let output = Command::new(&program)
        .args(["setup", "--json", "--config"])
        .arg(&file)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(printed["streams"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        printed["schemas"].as_array().map(Vec::len),
        Some(CATALOG.len() + 1)
    );
    assert!(
        printed["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(printed["schemas"].as_array().into_iter().flatten())
            .all(|step| step["created"] == false),
        "{printed}"
    );
    assert_eq!(printed["database"]["database_created"], false);
    std::fs::remove_file(&file)?;

    // The services start on what setup made, and answer.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addresses, task) = circle_cli::start_all(&config, async {
        let _ = stopped.await;
    })
    .await?;
    serving(
        addresses.enrollment,
        "circle.enrollment.v1.EnrollmentService",
    )
    .await?;
    serving(addresses.sessions, "circle.sessions.v1.SessionsService").await?;
    serving(
        addresses.accountability,
        "circle.accountability.v1.AccountabilityService",
    )
    .await?;
    let mut enrollment =
        circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient::connect(
            format!("http://{}", addresses.enrollment),
        )
        .await?;
    let clinics = enrollment
        .list_clinics(circle_testkit::request_as(
            circle_proto::enrollment::v1::ListClinicsRequest {
                parent: "networks/acme".into(),
                ..Default::default()
            },
            "acme",
            "network-admin",
            "admin-1",
            &[],
        ))
        .await?
        .into_inner();
    assert!(clinics.clinics.is_empty());
    // Setup made nothing a service had to make again: still one checkpoint a schema.
    for entry in &CATALOG {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.projection_checkpoint",
            entry.schema
        )))
        .fetch_one(&env.pool)
        .await?;
        assert_eq!(rows, 1, "{}", entry.schema);
    }
    let _ = stop.send(());
    task.await??;
    Ok(())
}

#[tokio::test]
async fn setup_refuses_a_stream_that_differs_from_the_configuration_or_warns_when_told()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    // An enrollment stream made earlier with another duplicate window.
    let spec = circle_eventstore::StreamSpec {
        duplicate_window: Duration::from_secs(60),
        ..circle_service::stream_spec(&env.config, "enrollment")
    };
    let name = spec.name.clone();
    circle_eventstore::EventStore::open(env.nats.clone(), spec).await?;

    let file = config_file(&env)?;
    let program = binary("circle").await?;
    let refused = Command::new(&program)
        .args(["setup", "--config"])
        .arg(&file)
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    for part in [
        format!("stream {name}"),
        "duplicate_window is 60s on the stream but 120s in the configuration \
         (nats.duplicate_window_secs)"
            .to_owned(),
        "nats.stream_mismatch".to_owned(),
    ] {
        assert!(stderr.contains(&part), "{part:?} in {stderr}");
    }
    assert!(
        !stderr.contains(&env.config.database.owner_url)
            && !stderr.contains(&env.config.database.url),
        "no URL in {stderr}"
    );

    let warned = Command::new(&program)
        .args(["setup", "--config"])
        .arg(&file)
        .env("CIRCLE_NATS__STREAM_MISMATCH", "warn")
        .output()?;
    let stdout = String::from_utf8_lossy(&warned.stdout).into_owned();
    assert_eq!(
        warned.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&warned.stderr)
    );
    assert!(
        stdout.contains("WARNING: duplicate_window is 60s on the stream but 120s"),
        "{stdout}"
    );
    let mut stream = env.jetstream().get_stream(&name).await?;
    assert_eq!(
        stream.info().await?.config.duplicate_window,
        Duration::from_secs(60),
        "warn leaves the stream as it is"
    );
    std::fs::remove_file(&file)?;
    Ok(())
}

#[tokio::test]
async fn a_service_refuses_a_stream_that_differs_from_the_configuration_or_starts_with_a_warning()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let spec = circle_eventstore::StreamSpec {
        duplicate_window: Duration::from_secs(60),
        ..circle_service::stream_spec(&env.config, "enrollment")
    };
    circle_eventstore::EventStore::open(env.nats.clone(), spec).await?;

    let refused = circle_enrollment::start(&env.config, std::future::pending()).await;
    let Err(error) = refused else {
        anyhow::bail!("a service must refuse a stream that differs from the configuration");
    };
    assert!(
        error
            .to_string()
            .contains("duplicate_window is 60s on the stream but 120s in the configuration"),
        "{error}"
    );

    let mut config = env.config.clone();
    config.nats.stream_mismatch = circle_config::StreamMismatch::Warn;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = circle_enrollment::start(&config, async {
        let _ = stopped.await;
    })
    .await?;
    serving(running.local_addr, "circle.enrollment.v1.EnrollmentService").await?;
    let _ = stop.send(());
    running.finished().await?;
    Ok(())
}
