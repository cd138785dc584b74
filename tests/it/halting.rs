//! Failing loudly: a projection whose apply fails the same way on consecutive events
//! (a bug, a schema mismatch) halts instead of dead-lettering the stream one event at a
//! time — the first event is dead-lettered, the next is not, readiness over the
//! standard gRPC health service turns NOT_SERVING — and once the fault is fixed it
//! resumes from its checkpoint by itself and is ready again. The halted gauge and the
//! dead-letter counter are read from the exported metrics (a real OTLP receiver).

use std::net::SocketAddr;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use circle_config::{LogFormat, TelemetryConfig};
use circle_testkit::otlp::{MetricPoint, OtlpReceiver};

use crate::support::{System, eventually};

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The latest exported value of a metric of enrollment's read model.
fn latest(points: &[MetricPoint]) -> Option<f64> {
    points
        .iter()
        .filter(|point| {
            point.service == "circle-enrollment"
                && point.attribute("circle.projection") == Some("enrollment-read-model")
        })
        .max_by_key(|point| point.time_unix_nano)
        .map(|point| point.value.as_f64())
}

const ENROLLMENT: &str = "circle.enrollment.v1.EnrollmentService";
const SESSIONS: &str = "circle.sessions.v1.SessionsService";

async fn health(address: SocketAddr, service: &str) -> anyhow::Result<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status())
}

/// The clinics the enrollment read model holds, and its dead letters' subjects (read
/// as the owner, through no wall).
async fn read_model(system: &System) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let clinics = sqlx::query_scalar("SELECT clinic_id FROM enrollment.clinics ORDER BY 1")
        .fetch_all(&system.env.pool)
        .await?;
    let dead_letters = sqlx::query_scalar(
        "SELECT subject FROM enrollment.dead_letters WHERE projection = 'enrollment-read-model'
         ORDER BY sequence",
    )
    .fetch_all(&system.env.pool)
    .await?;
    Ok((clinics, dead_letters))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_bug_halts_the_projection_and_fixing_it_resumes_from_the_checkpoint()
-> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let telemetry = circle_telemetry::init(
        "circle-e2e",
        &TelemetryConfig {
            log_filter: "warn".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval_ms: 100,
            instance_id: "halting-test".into(),
        },
    )?;
    let mut system = System::start_with("2026-03-02T12:00:00Z", |config| {
        config.projection.halt_retry_ms = 100;
    })
    .await?;
    system.clinic("c0").await?;
    eventually(|| read_model(&system), |(clinics, _)| clinics.len() == 1).await?;
    assert_eq!(
        health(system.addresses.enrollment, ENROLLMENT).await?,
        ServingStatus::Serving
    );

    // An apply bug: every new clinic fails to be stored, the same way.
    sqlx::raw_sql(
        "CREATE SEQUENCE enrollment.refused_clinics;
         CREATE FUNCTION enrollment.refuse_clinics() RETURNS trigger
         LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN
             PERFORM nextval('enrollment.refused_clinics');
             RAISE EXCEPTION 'injected fault';
         END $$;
         CREATE TRIGGER refuse_clinics BEFORE INSERT ON enrollment.clinics
         FOR EACH ROW EXECUTE FUNCTION enrollment.refuse_clinics();",
    )
    .execute(&system.env.pool)
    .await?;
    for clinic in ["c1", "c2", "c3", "c4"] {
        system.clinic(clinic).await?;
    }
    let stream_end = system
        .env
        .jetstream()
        .get_stream(system.env.config.stream_name("enrollment"))
        .await?
        .info()
        .await?
        .state
        .last_sequence;

    // The first is dead-lettered after its attempts; the next fails the same way and
    // halts the projection: the service is not ready, the others are.
    let address = system.addresses.enrollment;
    eventually(
        || health(address, ENROLLMENT),
        |status| *status == ServingStatus::NotServing,
    )
    .await?;
    receiver
        .wait_for_metric("circle.projection.halted", WAIT, |points| {
            latest(points) == Some(1.0)
        })
        .await?;
    receiver
        .wait_for_metric("circle.projection.dead_letters", WAIT, |points| {
            latest(points) == Some(1.0)
        })
        .await?;
    let (clinics, dead_letters) = read_model(&system).await?;
    assert_eq!(clinics, vec!["c0".to_owned()]);
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    assert!(dead_letters[0].ends_with(".c1"), "{dead_letters:?}");
    assert_eq!(
        health(system.addresses.sessions, SESSIONS).await?,
        ServingStatus::Serving,
        "only the service whose projection halted is not ready"
    );
    let checkpoint = || async {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT last_sequence FROM enrollment.projection_checkpoint
             WHERE projection = 'enrollment-read-model'",
        )
        .fetch_one(&system.env.pool)
        .await?)
    };
    let halted_at = checkpoint().await?;
    assert!(
        (halted_at as u64) < stream_end,
        "the checkpoint stays before the event it halted on"
    );
    // It stays halted while the fault lasts: its event is tried again and again (the
    // trigger counts the attempts, outside the transactions they roll back), nothing
    // more is dead-lettered and the checkpoint does not move.
    let attempts = || async {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT last_value FROM enrollment.refused_clinics")
                .fetch_one(&system.env.pool)
                .await?,
        )
    };
    let halted_attempts = attempts().await?;
    eventually(attempts, |attempts| *attempts >= halted_attempts + 5).await?;
    assert_eq!(read_model(&system).await?.1.len(), 1);
    assert_eq!(checkpoint().await?, halted_at);
    assert_eq!(
        health(address, ENROLLMENT).await?,
        ServingStatus::NotServing
    );

    // The fix: the projection resumes from its checkpoint by itself and is ready again.
    sqlx::raw_sql(
        "DROP TRIGGER refuse_clinics ON enrollment.clinics;
         DROP FUNCTION enrollment.refuse_clinics();
         DROP SEQUENCE enrollment.refused_clinics;",
    )
    .execute(&system.env.pool)
    .await?;
    eventually(
        || health(address, ENROLLMENT),
        |status| *status == ServingStatus::Serving,
    )
    .await?;
    let (clinics, dead_letters) =
        eventually(|| read_model(&system), |(clinics, _)| clinics.len() == 4).await?;
    assert_eq!(clinics, vec!["c0", "c2", "c3", "c4"]);
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    eventually(checkpoint, |reached| *reached as u64 == stream_end).await?;
    receiver
        .wait_for_metric("circle.projection.halted", WAIT, |points| {
            latest(points) == Some(0.0)
        })
        .await?;
    // Still the one dead letter: nothing more was given up on while it was halted.
    let dead_letters = receiver
        .wait_for_metric("circle.projection.dead_letters", WAIT, |points| {
            latest(points).is_some()
        })
        .await?;
    assert_eq!(latest(&dead_letters), Some(1.0));
    drop(system);
    drop(telemetry);
    Ok(())
}

/// Two bad events in a row look like a fault of the projection, so it halts on the
/// second; `circle status` shows it halted (unhealthy), and `circle projections skip`
/// is the way out: the event it is stuck on is dead-lettered, the checkpoint moves past
/// it, and the projection goes on by itself with the events after it. Skipping a
/// projection that is not halted is refused and changes nothing.
#[tokio::test]
async fn two_bad_events_in_a_row_halt_and_skip_is_the_way_out() -> anyhow::Result<()> {
    use circle_cli::ops::{self, Ops, status::Health};
    let mut system = System::start_with("2026-03-02T12:00:00Z", |config| {
        config.projection.halt_retry_ms = 100;
    })
    .await?;
    let ops = Ops::connect(&system.env.config).await?;
    system.clinic("c0").await?;
    eventually(|| read_model(&system), |(clinics, _)| clinics.len() == 1).await?;
    let refused = ops::projections::skip(&ops, "enrollment-read-model").await;
    assert_eq!(
        refused.as_ref().map_err(ops::exit_code).err(),
        Some(2),
        "{refused:?}"
    );

    // Two bad events (these two clinics only), then a good one.
    sqlx::raw_sql(
        "CREATE FUNCTION enrollment.refuse_two() RETURNS trigger
         LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN
             IF NEW.clinic_id IN ('bad1', 'bad2') THEN RAISE EXCEPTION 'bad clinic'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_two BEFORE INSERT ON enrollment.clinics
         FOR EACH ROW EXECUTE FUNCTION enrollment.refuse_two();",
    )
    .execute(&system.env.pool)
    .await?;
    for clinic in ["bad1", "bad2", "good"] {
        system.clinic(clinic).await?;
    }
    let status = eventually(
        || ops::status::status(&ops, 100),
        |status| {
            status.projections.iter().any(|projection| {
                projection.projection == "enrollment-read-model"
                    && projection.health == Health::Halted
            })
        },
    )
    .await?;
    assert!(!status.healthy);
    assert!(ops::status::render(&status).contains("HALTED"));
    let (clinics, dead_letters) = read_model(&system).await?;
    assert_eq!(clinics, vec!["c0".to_owned()]);
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    assert!(dead_letters[0].ends_with(".bad1"), "{dead_letters:?}");
    eventually(
        || health(system.addresses.enrollment, ENROLLMENT),
        |status| *status == ServingStatus::NotServing,
    )
    .await?;

    // The way out: bad2 is dead-lettered, the projection goes on with `good`.
    let skipped = ops::projections::skip(&ops, "enrollment-read-model").await?;
    let (clinics, dead_letters) =
        eventually(|| read_model(&system), |(clinics, _)| clinics.len() == 2).await?;
    assert_eq!(clinics, vec!["c0".to_owned(), "good".to_owned()]);
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
    assert!(dead_letters[1].ends_with(".bad2"), "{dead_letters:?}");
    let letter = ops::dead_letters::show(&ops, "enrollment-read-model", skipped).await?;
    assert!(letter.subject.ends_with(".bad2"), "{letter:?}");
    eventually(
        || health(system.addresses.enrollment, ENROLLMENT),
        |status| *status == ServingStatus::Serving,
    )
    .await?;
    let status = ops::status::status(&ops, 100).await?;
    let projection = status
        .projections
        .iter()
        .find(|projection| projection.projection == "enrollment-read-model")
        .expect("the read model's status");
    assert_eq!(projection.halted_since, None);
    assert_eq!(projection.health, Health::HasDeadLetters);
    system.stop(std::time::Duration::from_secs(60)).await?;
    Ok(())
}
