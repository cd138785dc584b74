//! Background loops run once across replicas: each loop's lease (a PostgreSQL session
//! advisory lock) is held by one replica; a second replica waits, and takes it within
//! seconds once the holder stops, and the loop goes on there.

use std::sync::Arc;
use std::time::Duration;

use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;
use circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient;

use crate::support::{System, eventually};

const LOOPS: [&str; 3] = [
    "circle.loop.enrollment.offer_timers",
    "circle.loop.sessions.materializer",
    "circle.loop.accountability.nudger",
];

/// How many sessions of this database hold each loop's lease.
async fn holders(system: &System) -> anyhow::Result<Vec<i64>> {
    let mut counts = Vec::new();
    for key in LOOPS {
        counts.push(
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND objid = (hashtext($1)::bigint & 4294967295)::oid",
            )
            .bind(key)
            .fetch_one(&system.env.pool)
            .await?,
        );
    }
    Ok(counts)
}

/// The backend pids holding the loops' leases.
async fn holder_pids(system: &System) -> anyhow::Result<Vec<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND objid IN (SELECT (hashtext(key)::bigint & 4294967295)::oid
                         FROM unnest($1::text[]) AS key)
         ORDER BY pid",
    )
    .bind(LOOPS.map(str::to_owned).to_vec())
    .fetch_all(&system.env.pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_loop_runs_on_one_replica_and_moves_when_it_stops() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    eventually(|| holders(&system), |counts| counts == &[1, 1, 1]).await?;
    let first = holder_pids(&system).await?;

    // A second replica of every service, on the same NATS, database and clock.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let clock: Arc<dyn circle_calendar::Clock> = system.clock.clone();
    let (addresses, second) = circle_cli::start_all_with_clock(&system.env.config, clock, async {
        let _ = stopped.await;
    })
    .await?;
    // It waits: still one holder each, the same sessions (checked over a few of the
    // standby's retries).
    for _ in 0..3 {
        tokio::time::sleep(circle_projection::LEASE_RETRY).await;
        assert_eq!(holders(&system).await?, vec![1, 1, 1]);
        assert_eq!(holder_pids(&system).await?, first);
    }

    // The holder stops: the second replica takes every lease within seconds, and its
    // loops work (the materialiser makes a new group's sessions).
    system.stop(Duration::from_secs(60)).await?;
    let moved = eventually(|| holder_pids(&system), |pids| pids.len() == 3).await?;
    assert!(
        moved.iter().all(|pid| !first.contains(pid)),
        "{moved:?} {first:?}"
    );
    system.enrollment =
        EnrollmentServiceClient::connect(format!("http://{}", addresses.enrollment)).await?;
    system.sessions =
        SessionsServiceClient::connect(format!("http://{}", addresses.sessions)).await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-03-03")
        .await?;
    let first_session = system.session_on(&group, "2026-03-03")?;
    system.wait_for_session(&first_session, |_| true).await?;
    let _ = stop.send(());
    second.await??;
    Ok(())
}
