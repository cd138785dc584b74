//! Graceful shutdown under load: every command a client saw acknowledged is in the
//! stream exactly once, and the read model, stopped mid-stream, holds exactly what its
//! checkpoint covers (a batch is applied whole or not at all); after a restart it holds
//! every stored command once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use circle_proto::enrollment::v1 as enrollment;

use crate::support::{NETWORK, System, admin, eventually};

const WRITERS: usize = 8;
const COMMANDS_PER_WRITER: usize = 40;

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
        "SELECT last_sequence FROM enrollment.projection_checkpoint
         WHERE projection = 'enrollment-read-model'",
    )
    .fetch_one(&mut *transaction)
    .await?;
    Ok((clinics.into_iter().collect(), checkpoint.max(0) as u64))
}

#[tokio::test]
async fn a_shutdown_under_load_loses_no_acknowledged_command_and_leaves_no_half_applied_batch()
-> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = system.enrollment.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for command in 0..COMMANDS_PER_WRITER {
                let clinic_id = format!("load-{writer}-{command}");
                let created = client
                    .create_clinic(admin(enrollment::CreateClinicRequest {
                        parent: format!("networks/{NETWORK}"),
                        clinic_id: clinic_id.clone(),
                        clinic: Some(enrollment::Clinic {
                            display_name: format!("Clinic {clinic_id}"),
                            time_zone: "America/Chicago".into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    }))
                    .await;
                match created {
                    Ok(_) => {
                        mine.push(clinic_id);
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused or cut off by the shutdown: not acknowledged.
                    Err(_) => break,
                }
            }
            mine
        }));
    }
    // Stop mid-load: once a good part of the commands are acknowledged.
    let seen = acknowledged.clone();
    eventually(
        || {
            let seen = seen.clone();
            async move { Ok(seen.load(Ordering::SeqCst)) }
        },
        |count| *count >= WRITERS * COMMANDS_PER_WRITER / 4,
    )
    .await?;
    system.stop(Duration::from_secs(60)).await?;
    let mut acked = BTreeSet::new();
    for writer in writers {
        acked.extend(writer.await?);
    }
    assert!(
        acked.len() < WRITERS * COMMANDS_PER_WRITER,
        "the stop came after the load; nothing was shown"
    );

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
    // The read model, as the stop left it, holds exactly what its checkpoint covers.
    let (clinics, checkpoint) = read_model(&system).await?;
    let covered: BTreeSet<String> = stored
        .iter()
        .filter(|(sequence, _)| *sequence <= checkpoint)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(clinics, covered, "the read model holds part of a batch");

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
