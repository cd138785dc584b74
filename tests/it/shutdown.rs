//! Graceful shutdown under load, watched as it happens: the service reports
//! NOT_SERVING first, refuses new calls after the drain delay, lets a call in flight
//! finish (a read waiting for its write to be projected, so the projection must keep
//! running until the calls are done), finishes the projection batch it is in the
//! middle of (committed, then acknowledged), and only then stops. Every command a
//! client saw acknowledged is in the stream exactly once; the read model holds exactly
//! what its checkpoint covers; after a restart it holds every stored command once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use circle_proto::enrollment::v1 as enrollment;
use enrollment::enrollment_service_client::EnrollmentServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{NETWORK, System, admin, create_clinic_request, eventually};

const WRITERS: usize = 8;
/// A writer goes on until the shutdown refuses it (this many is far more than it gets
/// to write).
const COMMANDS_PER_WRITER: usize = 100_000;
const PROJECTION: &str = "enrollment-read-model";
const HEALTH_NAME: &str = "circle.enrollment.v1.EnrollmentService";

/// The clinic ids of the clinic commits in the enrollment stream, with their sequences.
async fn stored_clinics(system: &System) -> anyhow::Result<Vec<(u64, String)>> {
    let store = circle_eventstore::EventStore::open(
        system.env.nats.clone(),
        circle_enrollment::stream_spec(&system.env.config),
    )
    .await?;
    let mut clinics = Vec::new();
    for sequence in 1..=store.last_sequence().await? {
        let stored = store.read_commit(sequence).await?;
        if stored.commit.aggregate_type == "clinic" {
            clinics.push((sequence, stored.commit.aggregate_id));
        }
    }
    Ok(clinics)
}

/// The read model's clinics and its checkpoint, in one snapshot (as the owner).
async fn read_model(system: &System) -> anyhow::Result<(BTreeSet<String>, u64)> {
    let mut transaction = system.env.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *transaction)
        .await?;
    let clinics: Vec<String> = sqlx::query_scalar("SELECT clinic_id FROM enrollment.clinics")
        .fetch_all(&mut *transaction)
        .await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM enrollment.projection_checkpoint WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_one(&mut *transaction)
    .await?;
    Ok((clinics.into_iter().collect(), checkpoint.max(0) as u64))
}

/// Sessions waiting for a lock on the read model's clinics table: the projector's
/// batch, begun and stuck at its first insert.
async fn waiting_for_clinics(system: &System) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
         WHERE NOT granted AND relation = 'enrollment.clinics'::regclass",
    )
    .fetch_one(&system.env.pool)
    .await?)
}

/// A new call on `channel`: a read of a clinic the load wrote.
async fn new_call(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    EnrollmentServiceClient::new(channel)
        .get_clinic(admin(enrollment::GetClinicRequest {
            name: format!("networks/{NETWORK}/clinics/load-0-0"),
            consistency_token: String::new(),
        }))
        .await
        .map(|_| ())
}

async fn health_of(
    health: &mut HealthClient<tonic::transport::Channel>,
) -> anyhow::Result<Option<ServingStatus>> {
    Ok(health
        .check(HealthCheckRequest {
            service: HEALTH_NAME.into(),
        })
        .await
        .ok()
        .map(|answer| answer.into_inner().status()))
}

#[tokio::test]
async fn a_shutdown_under_load_goes_not_serving_first_and_finishes_calls_and_batches_in_flight()
-> anyhow::Result<()> {
    let mut system = System::start_with("2026-03-02T12:00:00Z", |config| {
        // Long enough to see NOT_SERVING while calls are still served.
        config.grpc.drain_delay_ms = 5_000;
        // The read held in flight waits for the projection as long as the test holds it.
        config.projection.read_your_writes_timeout_ms = 120_000;
    })
    .await?;
    let address = system.addresses.enrollment;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    assert_eq!(health_of(&mut health).await?, Some(ServingStatus::Serving));

    // The load: writers creating clinics until the shutdown refuses them.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = system.enrollment.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for command in 0..COMMANDS_PER_WRITER {
                let clinic_id = format!("load-{writer}-{command}");
                match client
                    .create_clinic(create_clinic_request(&clinic_id))
                    .await
                {
                    Ok(_) => {
                        mine.push(clinic_id);
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused or cut off by the shutdown: not acknowledged.
                    Err(_) => return (mine, true),
                }
            }
            (mine, false)
        }));
    }
    let seen = acknowledged.clone();
    eventually(
        || {
            let seen = seen.clone();
            async move { Ok(seen.load(Ordering::SeqCst)) }
        },
        |count| *count >= 10 * WRITERS,
    )
    .await?;

    // Hold the projector in the middle of a batch: inserts into its clinics table wait
    // for this lock (reads do not).
    let mut hold = system.env.pool.begin().await?;
    sqlx::query("LOCK TABLE enrollment.clinics IN SHARE MODE")
        .execute(&mut *hold)
        .await?;
    eventually(|| waiting_for_clinics(&system), |waiting| *waiting >= 1).await?;
    // A write after the held batch was fetched, so a later batch applies it: the
    // projection must still be running after the held batch for the read to see it.
    let mut client = system.enrollment.clone();
    let held = client
        .create_clinic(create_clinic_request("held"))
        .await?
        .into_inner();
    // A call in flight: a read of that write, waiting for it to be projected.
    let mut reader = system.enrollment.clone();
    let in_flight = tokio::spawn(async move {
        reader
            .get_clinic(admin(enrollment::GetClinicRequest {
                name: format!("networks/{NETWORK}/clinics/held"),
                consistency_token: held.consistency_token,
            }))
            .await
    });

    // Shutdown: NOT_SERVING first (health is still answered during the drain delay).
    let stopping = system.begin_stop()?;
    eventually(
        || {
            let mut health = health.clone();
            async move { health_of(&mut health).await }
        },
        |status| *status == Some(ServingStatus::NotServing),
    )
    .await?;
    // During the drain delay a new call is still served (load balancers, which follow
    // readiness, are taking the replica out meanwhile).
    new_call(channel.clone()).await?;
    // Then new calls are refused, on a new connection as on the open one, while the
    // call in flight and the batch are still held.
    eventually(
        || async {
            let fresh = match tonic::transport::Channel::from_shared(format!("http://{address}"))?
                .connect()
                .await
            {
                Ok(channel) => channel,
                Err(_) => return Ok(true),
            };
            Ok(new_call(fresh).await.is_err())
        },
        |refused| *refused,
    )
    .await?;
    eventually(
        || async { Ok(new_call(channel.clone()).await.is_err()) },
        |refused| *refused,
    )
    .await?;
    assert!(!in_flight.is_finished(), "the call in flight ended early");
    assert!(!stopping.is_finished(), "stopped with a call in flight");
    assert!(
        waiting_for_clinics(&system).await? >= 1,
        "the batch in flight gave up"
    );

    // Let the batch go: it finishes, the read sees its write, and the services stop.
    hold.commit().await?;
    let read = tokio::time::timeout(Duration::from_secs(60), in_flight).await???;
    assert_eq!(
        read.into_inner().clinic.map(|clinic| clinic.display_name),
        Some("Clinic held".to_owned()),
        "the call in flight did not get its answer"
    );
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .map_err(|_| anyhow::anyhow!("the services did not stop within 60 s"))???;

    let mut acked = BTreeSet::new();
    for writer in writers {
        let (mine, refused) = writer.await?;
        assert!(refused, "a writer ran out of work before the shutdown");
        acked.extend(mine);
    }
    acked.insert("held".to_owned());

    // Every acknowledged command is stored, exactly once.
    let stored = stored_clinics(&system).await?;
    let stored_ids: Vec<&String> = stored.iter().map(|(_, id)| id).collect();
    let unique: BTreeSet<&String> = stored_ids.iter().copied().collect();
    assert_eq!(unique.len(), stored_ids.len(), "a clinic stored twice");
    for clinic in &acked {
        assert!(
            unique.contains(clinic),
            "acknowledged {clinic} is not stored"
        );
    }
    // The read model, as the stop left it, holds exactly what its checkpoint covers,
    // and the batch that was held (with the write the read waited for) is in it.
    let (clinics, checkpoint) = read_model(&system).await?;
    let covered: BTreeSet<String> = stored
        .iter()
        .filter(|(sequence, _)| *sequence <= checkpoint)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(clinics, covered, "the read model holds part of a batch");
    assert!(
        clinics.contains("held"),
        "the write the call in flight waited for is not applied"
    );
    // And it was acknowledged before the stop: the durable consumer's ack floor is the
    // checkpoint, so a restart redelivers nothing already applied.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = system
        .env
        .jetstream()
        .get_stream(system.env.config.stream_name("enrollment"))
        .await?
        .get_consumer(PROJECTION)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let acked_floor = consumer.info().await?.ack_floor.stream_sequence;
    assert_eq!(
        acked_floor, checkpoint,
        "the last batch was committed but not acknowledged"
    );

    // After a restart it holds every stored command, once.
    system.restart().await?;
    let everything: BTreeSet<String> = stored.iter().map(|(_, id)| id.clone()).collect();
    let (clinics, _) = eventually(
        || read_model(&system),
        |(clinics, _)| clinics.len() >= everything.len(),
    )
    .await?;
    assert_eq!(clinics, everything);
    let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM enrollment.dead_letters")
        .fetch_one(&system.env.pool)
        .await?;
    assert_eq!(dead_letters, 0);
    system.stop(Duration::from_secs(60)).await?;
    Ok(())
}
