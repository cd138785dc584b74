//! Services start in any order: a service whose projections read another service's
//! stream starts and serves before that stream exists, and its projections start by
//! themselves once the stream appears (in Kubernetes every Deployment starts at once).

use std::time::Duration;

use circle_proto::enrollment::v1 as enrollment;
use circle_testkit::TestEnv;
use enrollment::enrollment_service_client::EnrollmentServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{create_clinic_request, eventually};

async fn serving(address: std::net::SocketAddr, service: &str) -> anyhow::Result<bool> {
    let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await
    else {
        return Ok(false);
    };
    Ok(HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .is_ok_and(|answer| answer.into_inner().status() == ServingStatus::Serving))
}

/// The checkpoint of `projection` in `schema` (0 when it has none).
async fn checkpoint(env: &TestEnv, schema: &str, projection: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(max(last_sequence), 0) FROM {schema}.projection_checkpoint
         WHERE projection = $1"
    )))
    .bind(projection)
    .fetch_one(&env.pool)
    .await?)
}

#[tokio::test]
async fn accountability_and_sessions_start_before_enrollment_and_catch_up_once_it_writes()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    circle_cli::ensure_database(&env.config).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    };
    // Last to first: no stream of another service exists when each starts.
    let accountability = circle_accountability::start(&env.config, signal()).await?;
    let sessions = circle_sessions::start(&env.config, signal()).await?;
    for (address, service) in [
        (
            accountability.local_addr,
            "circle.accountability.v1.AccountabilityService",
        ),
        (sessions.local_addr, "circle.sessions.v1.SessionsService"),
    ] {
        eventually(|| serving(address, service), |serving| *serving).await?;
    }
    let enrollment_stream = env.config.stream_name("enrollment");
    assert!(
        env.jetstream()
            .get_stream(&enrollment_stream)
            .await
            .is_err(),
        "enrollment's stream exists before enrollment started"
    );

    let enrollment_service = circle_enrollment::start(&env.config, signal()).await?;
    let mut client =
        EnrollmentServiceClient::connect(format!("http://{}", enrollment_service.local_addr))
            .await?;
    client.create_clinic(create_clinic_request("north")).await?;
    // The projections of enrollment's stream in the services started before it have
    // started and caught up with it.
    for (schema, projection) in [
        ("sessions_roster", "sessions-roster"),
        ("accountability_roster", "accountability-roster"),
        (
            "accountability_partnership_guard",
            "accountability-partnership-guard",
        ),
    ] {
        eventually(
            || checkpoint(&env, schema, projection),
            |reached| *reached >= 1,
        )
        .await?;
    }
    stop.send_replace(true);
    for running in [enrollment_service, sessions, accountability] {
        tokio::time::timeout(Duration::from_secs(60), running.finished()).await??;
    }
    Ok(())
}
