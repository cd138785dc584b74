//! How long a projection takes to apply a backlog with one replica and with two, on
//! the NATS and PostgreSQL the tests use (`CIRCLE_TEST_NATS_URL`,
//! `CIRCLE_TEST_DATABASE_URL`). A measurement, not a test:
//!
//! ```sh
//! cargo run --release -p circle-projection --example catch_up -- 20000 4
//! ```
//!
//! appends the backlog (events spread over 16 networks, each event a commit of an
//! aggregate of its own), then applies it three times, each into a schema of its own:
//! unsplit by one replica, split into the given number of partitions by one replica,
//! and split by two replicas, each replica on a tokio runtime of its own (two
//! processes' worth of tasks, connections and sessions). Prints the times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use circle_eventstore::{AggregateKey, CommitMeta, EventStore, NewEvent, StoredCommit, StreamSpec};
use circle_projection::{ApplyError, Database, Projection, ProjectionRunner, ProjectionSettings};
use circle_testkit::TestEnv;
use futures::StreamExt as _;
use sqlx::PgConnection;
use sqlx::postgres::PgPoolOptions;

/// A read model of the usual kind: a row per aggregate kept up to date, and a row per
/// event.
struct Counts(&'static str);

impl Projection for Counts {
    fn name(&self) -> &str {
        self.0
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS totals (network text NOT NULL, aggregate text PRIMARY KEY, events bigint NOT NULL)",
            "CREATE TABLE IF NOT EXISTS seen (network text NOT NULL, sequence bigint PRIMARY KEY, aggregate text NOT NULL, payload bytea NOT NULL)",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO totals (network, aggregate, events) VALUES ($1, $2, 1)
             ON CONFLICT (aggregate) DO UPDATE SET events = totals.events + 1",
        )
        .bind(&commit.commit.network)
        .bind(&commit.commit.aggregate_id)
        .execute(&mut *connection)
        .await?;
        for event in &commit.commit.events {
            sqlx::query(
                "INSERT INTO seen (network, sequence, aggregate, payload) VALUES ($1, $2, $3, $4)",
            )
            .bind(&commit.commit.network)
            .bind(commit.sequence as i64)
            .bind(&commit.commit.aggregate_id)
            .bind(&event.payload)
            .execute(&mut *connection)
            .await?;
        }
        Ok(())
    }
}

const NETWORKS: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let events: usize = arguments.next().map_or(Ok(20_000), |n| n.parse())?;
    let partitions: u32 = arguments.next().map_or(Ok(4), |n| n.parse())?;
    let env = TestEnv::new().await?;
    let spec = StreamSpec::new(
        env.config.stream_name("backlog"),
        env.config.subject_root("backlog"),
    );
    let store = EventStore::open(env.nats.clone(), spec.clone()).await?;
    let stream = env.jetstream().get_stream(&spec.name).await?;

    let started = Instant::now();
    let appended = futures::stream::iter(0..events)
        .map(|index| {
            let store = store.clone();
            async move {
                let network = format!("network-{}", index % NETWORKS);
                let key = AggregateKey::new(&network, "item", format!("item-{index}"))?;
                let meta = CommitMeta {
                    request_id: format!("append-{index}"),
                    actor_role: "service".into(),
                    actor_id: "catch-up".into(),
                    fingerprint: String::new(),
                };
                let event = NewEvent {
                    event_type: "catch_up.Item".into(),
                    schema_version: 1,
                    payload: vec![7; 200],
                };
                anyhow::Ok(store.append(&key, 0, &meta, vec![event]).await?.sequence())
            }
        })
        .buffer_unordered(64)
        .fold(
            anyhow::Ok(0u64),
            |last: anyhow::Result<u64>, appended| async move { Ok(last?.max(appended?)) },
        )
        .await?;
    println!(
        "backlog: {events} events over {NETWORKS} networks appended in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let settings = ProjectionSettings {
        batch_size: 128,
        ack_wait: Duration::from_secs(30),
        ..ProjectionSettings::default()
    };
    for (label, name, count, replicas) in [
        ("unsplit, one replica", "catch_up_unsplit", 1, 1),
        ("split, one replica", "catch_up_split_one", partitions, 1),
        ("split, two replicas", "catch_up_split_two", partitions, 2),
    ] {
        // Runtimes may not be dropped inside another: each is shut down, whatever
        // happens. Each replica has its own pools, made on its own runtime, as a
        // process would.
        let mut runtimes = Vec::new();
        let measured = async {
            let mut handles = Vec::new();
            let started = Instant::now();
            for _ in 0..replicas {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let runtime_options = (*env.runtime_pool.connect_options()).clone();
                let owner_options = (*env.pool.connect_options()).clone();
                let stream = stream.clone();
                let settings = ProjectionSettings {
                    partitions: count,
                    ..settings.clone()
                };
                let started = runtime.spawn(async move {
                    let database = Database::new(
                        PgPoolOptions::new()
                            .max_connections(10)
                            .connect_with(runtime_options)
                            .await?,
                        PgPoolOptions::new()
                            .max_connections(2)
                            .connect_with(owner_options)
                            .await?,
                    )
                    .await?;
                    let runner = ProjectionRunner::new(
                        Arc::new(Counts(name)),
                        &database,
                        name,
                        stream,
                        settings,
                    )
                    .await?;
                    let handle = runner.handle();
                    tokio::spawn(runner.run(std::future::pending()));
                    anyhow::Ok(handle)
                });
                runtimes.push(runtime);
                handles.push(started.await??);
            }
            loop {
                match handles[0]
                    .wait_for(appended, Duration::from_secs(600))
                    .await
                {
                    Ok(()) => break,
                    Err(circle_projection::LagError::NotYet { .. }) => continue,
                    Err(error) => return Err(anyhow::Error::from(error)),
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            let led: Vec<u32> = handles
                .iter()
                .map(|handle| handle.partitions_led())
                .collect();
            println!(
                "{label:>22}: {events} events in {elapsed:.1} s ({:.0} events/s); \
                 partitions written by each replica: {led:?}",
                events as f64 / elapsed
            );
            anyhow::Ok(())
        }
        .await;
        for runtime in runtimes {
            runtime.shutdown_background();
        }
        measured?;
    }
    Ok(())
}
