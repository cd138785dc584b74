//! The raw engines' baselines: what JetStream and PostgreSQL do on their own on this
//! machine, measured the way Circle uses them, so each of Circle's figures can be given
//! as a share of what the engines allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;

use super::stats::Latencies;

/// JetStream appends with per-subject optimistic concurrency, as the event store makes
/// them: each append a new subject with `Nats-Expected-Last-Subject-Sequence: 0`
/// (a new aggregate), file storage, one stream, `concurrency` appends in flight.
pub async fn jetstream_appends(
    jetstream: &jetstream::Context,
    subject_root: &str,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<Latencies> {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let jetstream = jetstream.clone();
        let counter = counter.clone();
        let subject_root = subject_root.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let payload = bytes::Bytes::from(vec![7u8; 200]);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                // Unique to this round's subject: never a duplicate of another round's.
                headers.insert("Nats-Msg-Id", format!("{subject_root}.{n}").as_str());
                let sent = Instant::now();
                let outcome = async {
                    jetstream
                        .publish_with_headers(
                            format!("{subject_root}.{n}"),
                            headers,
                            payload.clone(),
                        )
                        .await?
                        .await
                        .map_err(anyhow::Error::from)
                }
                .await;
                latencies.record(sent.elapsed(), outcome.is_ok());
            }
            latencies
        }));
    }
    let mut all = Latencies::default();
    for task in tasks {
        all.merge(task.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// Batched inserts into PostgreSQL: `rows` rows like a read model's (a key, a few
/// columns, a payload), 500 per statement (`unnest`), one transaction per statement,
/// on one connection — how a projection writes a batch. Rows per second.
pub async fn postgres_inserts(pool: &sqlx::PgPool, rows: usize) -> anyhow::Result<f64> {
    sqlx::query("DROP TABLE IF EXISTS bench_raw_inserts")
        .execute(pool)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_raw_inserts (network text NOT NULL, id text NOT NULL, \
         sequence bigint NOT NULL, state text NOT NULL, at timestamptz NOT NULL, \
         payload bytea NOT NULL, PRIMARY KEY (network, id))",
    )
    .execute(pool)
    .await
    .context("creating the raw-insert table")?;
    let mut connection = pool.acquire().await?;
    let started = Instant::now();
    const BATCH: usize = 500;
    let mut done = 0;
    while done < rows {
        let count = BATCH.min(rows - done);
        let ids: Vec<String> = (done..done + count)
            .map(|i| format!("row-{i:08}"))
            .collect();
        let sequences: Vec<i64> = (done..done + count).map(|i| i as i64).collect();
        let payloads: Vec<Vec<u8>> = (0..count).map(|_| vec![7u8; 200]).collect();
        sqlx::query(
            "INSERT INTO bench_raw_inserts (network, id, sequence, state, at, payload) \
             SELECT 'bench', id, sequence, 'active', now(), payload \
             FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS t(id, sequence, payload)",
        )
        .bind(&ids)
        .bind(&sequences)
        .bind(&payloads)
        .execute(&mut *connection)
        .await
        .context("inserting a batch")?;
        done += count;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_raw_inserts")
        .execute(&mut *connection)
        .await?;
    Ok(rows as f64 / elapsed)
}
