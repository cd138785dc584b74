//! The projection runtime against real NATS and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use circle_eventstore::{AggregateKey, CommitMeta, EventStore, NewEvent, StoredCommit, StreamSpec};
use circle_projection::{
    ApplyError, Database, LagError, Projection, ProjectionRunner, ProjectionSettings, WallError,
    admin, rebuild,
};
use circle_testkit::TestEnv;

use sqlx::PgConnection;

const SCHEMA: &str = "tally";
const POISON: i64 = 666;

/// Test read model: `totals` adds up values per aggregate, so applying a message twice
/// shows; `seen` records each applied sequence once.
struct Tally;

impl Projection for Tally {
    fn name(&self) -> &str {
        "tally"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS totals (network text NOT NULL, aggregate text PRIMARY KEY, total bigint NOT NULL, applied bigint NOT NULL)",
            "CREATE TABLE IF NOT EXISTS seen (network text NOT NULL, sequence bigint PRIMARY KEY, aggregate text NOT NULL)",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        for event in &commit.commit.events {
            let value = prost_types_lite::decode(&event.payload)
                .map_err(|error| ApplyError::Poison(error.to_string()))?;
            if value == POISON {
                return Err(ApplyError::Poison("this value cannot be applied".into()));
            }
            sqlx::query(
                "INSERT INTO totals (network, aggregate, total, applied) VALUES ($3, $1, $2, 1)
                 ON CONFLICT (aggregate) DO UPDATE SET total = totals.total + $2, applied = totals.applied + 1",
            )
            .bind(&commit.commit.aggregate_id)
            .bind(value)
            .bind(&commit.commit.network)
            .execute(&mut *connection)
            .await?;
        }
        sqlx::query("INSERT INTO seen (network, sequence, aggregate) VALUES ($3, $1, $2)")
            .bind(commit.sequence as i64)
            .bind(&commit.commit.aggregate_id)
            .bind(&commit.commit.network)
            .execute(&mut *connection)
            .await?;
        Ok(())
    }
}

mod prost_types_lite {
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(int64, tag = "1")]
        pub value: i64,
    }

    pub fn decode(bytes: &[u8]) -> Result<i64, prost::DecodeError> {
        Value::decode(bytes).map(|value| value.value)
    }

    pub fn encode(value: i64) -> Vec<u8> {
        Value { value }.encode_to_vec()
    }
}

struct Fixture {
    env: TestEnv,
    /// The test database as a service reaches it: the runtime role, the admin as owner.
    database: Database,
    store: EventStore,
    stream: async_nats::jetstream::stream::Stream,
    settings: ProjectionSettings,
}

impl Fixture {
    async fn new() -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let spec = StreamSpec::new(
            env.config.stream_name("tally"),
            env.config.subject_root("tally"),
        );
        let store = EventStore::open(env.nats.clone(), spec.clone()).await?;
        let stream = env.jetstream().get_stream(&spec.name).await?;
        let settings = ProjectionSettings {
            batch_size: 16,
            ack_wait: Duration::from_secs(1),
            max_attempts: 3,
            halt_retry: Duration::from_millis(200),
            ..ProjectionSettings::default()
        };
        let database = env.database().await?;
        Ok(Self {
            env,
            database,
            store,
            stream,
            settings,
        })
    }

    async fn runner(&self) -> anyhow::Result<ProjectionRunner<Tally>> {
        Ok(ProjectionRunner::new(
            Arc::new(Tally),
            &self.database,
            SCHEMA,
            self.stream.clone(),
            self.settings.clone(),
        )
        .await?)
    }

    /// Appends one value to aggregate `id`; returns its sequence.
    async fn append(&self, id: &str, value: i64) -> anyhow::Result<u64> {
        let key = AggregateKey::new("acme", "tally", id)?;
        let version = self.store.version(&key).await?;
        let meta = CommitMeta {
            request_id: uuid_like(id, version),
            actor_role: "service".into(),
            actor_id: "test".into(),
            fingerprint: String::new(),
        };
        let event = NewEvent {
            event_type: "test.Value".into(),
            schema_version: 1,
            payload: prost_types_lite::encode(value),
        };
        Ok(self
            .store
            .append(&key, version, &meta, vec![event])
            .await?
            .sequence())
    }

    async fn totals(&self) -> anyhow::Result<Vec<(String, i64, i64)>> {
        Ok(
            sqlx::query_as("SELECT aggregate, total, applied FROM tally.totals ORDER BY aggregate")
                .fetch_all(&self.env.pool)
                .await?,
        )
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT last_sequence FROM tally.projection_checkpoint WHERE projection = 'tally'",
        )
        .fetch_one(&self.env.pool)
        .await?)
    }
}

fn uuid_like(id: &str, version: u64) -> String {
    format!("{id}-{version}")
}

#[tokio::test]
async fn a_message_delivered_twice_is_applied_once() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.append("a", 5).await?;
    fixture.append("a", 7).await?;
    let mut runner = fixture.runner().await?;
    let mut messages = runner.consumer().await?;
    let mut batch = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while batch.len() < 2 {
            batch.extend(runner.next_batch(&mut messages).await?);
        }
        anyhow::Ok(())
    })
    .await??;
    let applied = runner.apply_batch(&batch).await?;
    assert_eq!(
        (applied.covered, applied.retry.is_none(), applied.gap),
        (2, true, false)
    );
    // The same two messages again, and each message twice within one batch.
    let doubled = vec![
        batch[0].clone(),
        batch[0].clone(),
        batch[1].clone(),
        batch[1].clone(),
    ];
    runner.apply_batch(&batch).await?;
    runner.apply_batch(&doubled).await?;
    assert_eq!(fixture.totals().await?, vec![("a".to_owned(), 12, 2)]);
    Ok(())
}

#[tokio::test]
async fn a_crash_between_commit_and_ack_leaves_the_read_model_as_if_delivered_once()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let mut last = 0;
    for value in 1..=10 {
        last = fixture
            .append(if value % 2 == 0 { "even" } else { "odd" }, value)
            .await?;
    }
    {
        // First process: applies and commits, then "crashes" before acknowledging.
        let mut runner = fixture.runner().await?;
        let mut messages = runner.consumer().await?;
        let mut batch = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(15), async {
            while batch.len() < 10 {
                batch.extend(runner.next_batch(&mut messages).await?);
            }
            anyhow::Ok(())
        })
        .await??;
        runner.apply_batch(&batch).await?;
    }
    assert_eq!(fixture.checkpoint().await?, last as i64);
    // Second process: the server redelivers everything after ack_wait.
    let runner = fixture.runner().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let consumer_name = "tally";
    TestEnv::eventually(Duration::from_secs(15), || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = fixture
            .stream
            .get_consumer(consumer_name)
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
        let info = consumer.info().await?;
        Ok(info.ack_floor.stream_sequence >= last && info.num_ack_pending == 0)
    })
    .await?;
    let _ = stop.send(());
    task.await??;
    assert_eq!(
        fixture.totals().await?,
        vec![
            ("even".to_owned(), 2 + 4 + 6 + 8 + 10, 5),
            ("odd".to_owned(), 1 + 3 + 5 + 7 + 9, 5)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_and_the_projection_goes_on()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.append("a", 1).await?;
    let poison = fixture.append("a", POISON).await?;
    let last = fixture.append("a", 2).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    let dead: Vec<(i64, String)> = sqlx::query_as("SELECT sequence, error FROM tally.dead_letters")
        .fetch_all(&fixture.env.pool)
        .await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, poison as i64);
    assert!(dead[0].1.contains("cannot be applied"), "{}", dead[0].1);
    assert_eq!(fixture.totals().await?, vec![("a".to_owned(), 3, 2)]);
    Ok(())
}

/// The tally, by code that fails on every event.
struct Broken;

impl Projection for Broken {
    fn name(&self) -> &str {
        Tally.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        Tally.tables()
    }

    async fn apply(
        &self,
        _connection: &mut PgConnection,
        _commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Err(ApplyError::Poison("column \"total\" does not exist".into()))
    }
}

/// A rebuild that fails the same way event after event (the projection's fault, not
/// the events') stops instead of dead-lettering the stream into a fresh schema that
/// would replace the live one: the live tables stay as they were.
#[tokio::test]
async fn a_rebuild_failing_the_same_way_on_consecutive_events_leaves_the_live_tables()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    for value in 1..=5 {
        fixture.append("g1", value).await?;
    }
    // Live, before the fault: five values applied.
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(5, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    let total = || async {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>("SELECT total FROM tally.totals WHERE aggregate = 'g1'")
                .fetch_one(&fixture.env.pool)
                .await?,
        )
    };
    assert_eq!(total().await?, 15);
    let schema_oid = "SELECT oid::bigint FROM pg_namespace WHERE nspname = 'tally'";
    let oid_before: i64 = sqlx::query_scalar(schema_oid)
        .fetch_one(&fixture.env.pool)
        .await?;

    // A rebuild by code that cannot apply any of them (a bug in a new version).
    let refused = rebuild(
        &Broken,
        &fixture.database,
        SCHEMA,
        &fixture.stream,
        &fixture.settings,
    )
    .await;
    assert!(
        matches!(&refused, Err(ApplyError::Poison(reason)) if reason.contains("live schema is unchanged")),
        "{refused:?}"
    );
    let oid_after: i64 = sqlx::query_scalar(schema_oid)
        .fetch_one(&fixture.env.pool)
        .await?;
    assert_eq!(oid_before, oid_after, "the live tables were not replaced");
    assert_eq!(total().await?, 15);
    Ok(())
}

#[tokio::test]
async fn a_rebuild_from_scratch_equals_the_live_tables_and_the_live_runner_goes_on()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    for value in 1..=40 {
        fixture.append(&format!("g{}", value % 7), value).await?;
    }
    let last = fixture.append("g0", POISON).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;

    let snapshot = |pool: sqlx::PgPool| async move {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT format('%s', t) FROM (
                SELECT 'total' AS kind, aggregate, total AS value, applied AS extra FROM tally.totals
                UNION ALL SELECT 'seen', aggregate, sequence, 0 FROM tally.seen
                UNION ALL SELECT 'dead', subject, sequence, 0 FROM tally.dead_letters
                UNION ALL SELECT 'checkpoint', projection, last_sequence, 0 FROM tally.projection_checkpoint
             ) t ORDER BY 1",
        )
        .fetch_all(&pool)
        .await?;
        anyhow::Ok(rows)
    };
    let schema_oid = "SELECT oid::bigint FROM pg_namespace WHERE nspname = 'tally'";
    let before = snapshot(fixture.env.pool.clone()).await?;
    let oid_before: i64 = sqlx::query_scalar(schema_oid)
        .fetch_one(&fixture.env.pool)
        .await?;
    let report = rebuild(
        &Tally,
        &fixture.database,
        SCHEMA,
        &fixture.stream,
        &fixture.settings,
    )
    .await?;
    let after = snapshot(fixture.env.pool.clone()).await?;
    let oid_after: i64 = sqlx::query_scalar(schema_oid)
        .fetch_one(&fixture.env.pool)
        .await?;
    assert_ne!(oid_before, oid_after, "the tables were built anew");
    assert_eq!(report.applied_through, last);
    assert_eq!(report.dead_letters, 1);
    assert_eq!(before.len(), 7 + 40 + 1 + 1);
    assert_eq!(before, after);

    // The live runner keeps projecting into the swapped-in tables.
    let next = fixture.append("g1", 1000).await?;
    handle.wait_for(next, Duration::from_secs(15)).await?;
    let total: i64 = sqlx::query_scalar("SELECT total FROM tally.totals WHERE aggregate = 'g1'")
        .fetch_one(&fixture.env.pool)
        .await?;
    assert_eq!(total, (1..=40).filter(|v| v % 7 == 1).sum::<i64>() + 1000);
    let _ = stop.send(());
    task.await??;
    Ok(())
}

#[tokio::test]
async fn waiting_for_a_version_the_projection_has_not_reached_times_out() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let sequence = fixture.append("a", 1).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let result = handle.wait_for(sequence, Duration::from_millis(200)).await;
    assert!(matches!(result, Err(LagError::NotYet { wanted, reached: 0 }) if wanted == sequence));
    Ok(())
}

#[tokio::test]
async fn a_consumer_ahead_of_the_checkpoint_is_repositioned_and_nothing_is_skipped()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let mut last = 0;
    for value in 1..=6 {
        last = fixture.append("a", value).await?;
    }
    // A durable left over from elsewhere (say, before the database was restored) that
    // would start delivering at the fourth message.
    fixture
        .stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("tally".into()),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: last - 2,
            },
            ack_policy: async_nats::jetstream::consumer::AckPolicy::All,
            ..Default::default()
        })
        .await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    assert_eq!(fixture.totals().await?, vec![("a".to_owned(), 21, 6)]);
    Ok(())
}

#[tokio::test]
async fn of_two_replicas_one_writes_and_the_other_takes_over_when_it_stops() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let first = fixture.append("a", 1).await?;
    let spawn = |runner: ProjectionRunner<Tally>| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(runner.run(async {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    let leader = fixture.runner().await?;
    let leader_position = leader.handle();
    let (stop_leader, leader_task) = spawn(leader);
    leader_position
        .wait_for(first, Duration::from_secs(15))
        .await?;
    let standby = fixture.runner().await?;
    let standby_position = standby.handle();
    let (stop_standby, standby_task) = spawn(standby);

    let mut last = first;
    for value in 2..=20 {
        last = fixture
            .append(if value % 2 == 0 { "a" } else { "b" }, value)
            .await?;
    }
    leader_position
        .wait_for(last, Duration::from_secs(15))
        .await?;
    assert_eq!(
        standby_position.position(),
        first,
        "the standby applied nothing (it started at the checkpoint)"
    );

    // The leader stops; the standby takes over and projects what comes next.
    let _ = stop_leader.send(());
    leader_task.await??;
    let next = fixture.append("b", 100).await?;
    standby_position
        .wait_for(next, Duration::from_secs(15))
        .await?;
    let _ = stop_standby.send(());
    standby_task.await??;
    assert_eq!(
        fixture.totals().await?,
        vec![
            (
                "a".to_owned(),
                (1..=20).filter(|v| v % 2 == 0).sum::<i64>() + 1,
                11
            ),
            (
                "b".to_owned(),
                (1..=20).filter(|v| v % 2 == 1 && *v > 1).sum::<i64>() + 100,
                10
            ),
        ]
    );
    Ok(())
}

/// Tally under another name: a second projection.
struct OtherTally;

impl Projection for OtherTally {
    fn name(&self) -> &str {
        "other-tally"
    }

    fn tables(&self) -> &'static [&'static str] {
        Tally.tables()
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Tally.apply(connection, commit).await
    }
}

#[tokio::test]
async fn a_projection_cannot_share_another_projections_schema() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.append("a", 1).await?;
    let _tally = fixture.runner().await?;
    let sharing = ProjectionRunner::new(
        Arc::new(OtherTally),
        &fixture.database,
        SCHEMA,
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await;
    assert!(
        matches!(&sharing, Err(ApplyError::SchemaTaken { schema, owner }) if schema == SCHEMA && owner == "tally"),
        "{:?}",
        sharing.err()
    );
    let rebuilt_into_it = rebuild(
        &OtherTally,
        &fixture.database,
        SCHEMA,
        &fixture.stream,
        &fixture.settings,
    )
    .await;
    assert!(
        matches!(rebuilt_into_it, Err(ApplyError::SchemaTaken { .. })),
        "a rebuild into a schema another projection holds is refused"
    );
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT projection FROM tally.projection_checkpoint")
            .fetch_all(&fixture.env.pool)
            .await?,
        ["tally"],
        "the schema is left as it was"
    );
    Ok(())
}

#[tokio::test]
async fn waiting_for_a_version_beyond_the_stream_is_refused_at_once() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let sequence = fixture.append("a", 1).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    // Refused without waiting out the limit.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        handle.wait_for(u64::MAX, Duration::from_secs(60)),
    )
    .await?;
    assert!(
        matches!(result, Err(LagError::BeyondStream { wanted: u64::MAX, last }) if last == sequence),
        "{result:?}"
    );
    // The boundary: one past the last sequence is beyond; the last one is only not
    // reached yet (this runner is not running).
    let next = handle.wait_for(sequence + 1, Duration::from_secs(60)).await;
    assert!(
        matches!(next, Err(LagError::BeyondStream { last, .. }) if last == sequence),
        "{next:?}"
    );
    let last = handle.wait_for(sequence, Duration::from_millis(300)).await;
    assert!(
        matches!(&last, Err(error) if !matches!(error, LagError::BeyondStream { .. })),
        "{last:?}"
    );
    Ok(())
}

/// Tally with one more table, `values_seen` (one row per value applied): a new shape.
struct TallyWithValues;

impl Projection for TallyWithValues {
    fn name(&self) -> &str {
        "tally"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS totals (network text NOT NULL, aggregate text PRIMARY KEY, total bigint NOT NULL, applied bigint NOT NULL)",
            "CREATE TABLE IF NOT EXISTS seen (network text NOT NULL, sequence bigint PRIMARY KEY, aggregate text NOT NULL)",
            "CREATE TABLE IF NOT EXISTS values_seen (network text NOT NULL, sequence bigint PRIMARY KEY, value bigint NOT NULL)",
        ]
    }

    fn shape_version(&self) -> u32 {
        2
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Tally.apply(connection, commit).await?;
        for event in &commit.commit.events {
            let value = prost_types_lite::decode(&event.payload)
                .map_err(|error| ApplyError::Poison(error.to_string()))?;
            sqlx::query("INSERT INTO values_seen (network, sequence, value) VALUES ($3, $1, $2)")
                .bind(commit.sequence as i64)
                .bind(value)
                .bind(&commit.commit.network)
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_new_shape_of_the_tables_is_filled_from_the_whole_log_before_anything_new_is_applied()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.append("a", 1).await?;
    let last = fixture.append("a", 2).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;

    // The next version of the code adds a table: its writer fills it with the past
    // before applying anything new, and nothing is applied twice.
    let upgraded = ProjectionRunner::new(
        Arc::new(TallyWithValues),
        &fixture.database,
        SCHEMA,
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await?;
    let handle = upgraded.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(upgraded.run(async {
        let _ = stopped.await;
    }));
    let next = fixture.append("a", 4).await?;
    handle.wait_for(next, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    let values: Vec<(i64,)> =
        sqlx::query_as("SELECT value FROM tally.values_seen ORDER BY sequence")
            .fetch_all(&fixture.env.pool)
            .await?;
    assert_eq!(values, vec![(1,), (2,), (4,)]);
    assert_eq!(fixture.totals().await?, vec![("a".to_owned(), 7, 3)]);
    let (shape, checkpoint): (i32, i64) = sqlx::query_as(
        "SELECT shape_version, last_sequence FROM tally.projection_checkpoint WHERE projection = 'tally'",
    )
    .fetch_one(&fixture.env.pool)
    .await?;
    assert_eq!((shape, checkpoint), (2, next as i64));
    assert!(last < next);

    // Starting again at the same shape rebuilds nothing.
    sqlx::query("INSERT INTO tally.values_seen (network, sequence, value) VALUES ('acme', 0, 0)")
        .execute(&fixture.env.pool)
        .await?;
    let again = ProjectionRunner::new(
        Arc::new(TallyWithValues),
        &fixture.database,
        SCHEMA,
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await?;
    let handle = again.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(again.run(async {
        let _ = stopped.await;
    }));
    let after = fixture.append("a", 8).await?;
    handle.wait_for(after, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    let marker: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tally.values_seen WHERE sequence = 0")
            .fetch_one(&fixture.env.pool)
            .await?;
    assert_eq!(marker, 1, "no second rebuild at the same shape");
    Ok(())
}

/// A stateless process manager that moved to a schema of its own.
struct MovedStep;

impl Projection for MovedStep {
    fn name(&self) -> &str {
        "moved-step"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        Some("shared_steps")
    }

    async fn apply(
        &self,
        _connection: &mut PgConnection,
        _commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_process_manager_moved_to_its_own_schema_resumes_where_it_was() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    for value in 1..=3 {
        fixture.append("a", value).await?;
    }
    // The former layout: two process managers' checkpoints in one schema.
    for statement in [
        "CREATE SCHEMA shared_steps",
        "CREATE TABLE shared_steps.projection_checkpoint (projection text PRIMARY KEY, last_sequence bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO shared_steps.projection_checkpoint (projection, last_sequence) VALUES ('moved-step', 2), ('sibling', 3)",
    ] {
        sqlx::query(statement).execute(&fixture.env.pool).await?;
    }
    let runner = ProjectionRunner::new(
        Arc::new(MovedStep),
        &fixture.database,
        "moved_step",
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await?;
    assert_eq!(
        runner.handle().position(),
        2,
        "resumes after what it had done, not from the start of the log"
    );
    drop(runner);
    // Once it has its own checkpoint, the former one no longer matters.
    sqlx::query("UPDATE moved_step.projection_checkpoint SET last_sequence = 3")
        .execute(&fixture.env.pool)
        .await?;
    let again = ProjectionRunner::new(
        Arc::new(MovedStep),
        &fixture.database,
        "moved_step",
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await?;
    assert_eq!(again.handle().position(), 3);
    Ok(())
}

/// A projection with a table that does not carry its rows' network.
struct Unwallable;

impl Projection for Unwallable {
    fn name(&self) -> &str {
        "unwallable"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS loose (id text PRIMARY KEY)"]
    }

    async fn apply(
        &self,
        _connection: &mut PgConnection,
        _commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_table_without_a_network_column_cannot_be_walled_and_is_refused() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let refused = ProjectionRunner::new(
        Arc::new(Unwallable),
        &fixture.database,
        "unwallable",
        fixture.stream.clone(),
        fixture.settings.clone(),
    )
    .await;
    assert!(
        matches!(&refused, Err(ApplyError::Wall(WallError::NoNetwork { table })) if table == "unwallable.loose"),
        "{:?}",
        refused.err()
    );
    Ok(())
}

#[tokio::test]
async fn a_commit_that_names_another_network_than_its_subject_writes_nothing_there()
-> anyhow::Result<()> {
    use prost::Message as _;
    let fixture = Fixture::new().await?;
    fixture.append("a", 1).await?;
    // On acme's subject, a payload that says it is another network's.
    let forged = circle_eventstore::wire::Commit {
        request_id: "forged".into(),
        network: "other".into(),
        aggregate_type: "tally".into(),
        aggregate_id: "a".into(),
        events: vec![circle_eventstore::wire::Event {
            event_type: "test.Value".into(),
            schema_version: 1,
            payload: prost_types_lite::encode(100),
            ..Default::default()
        }],
        ..Default::default()
    };
    let subject = format!("{}.acme.tally.a", fixture.env.config.subject_root("tally"));
    let forged_sequence = fixture
        .env
        .jetstream()
        .publish(subject, forged.encode_to_vec().into())
        .await?
        .await?
        .sequence;
    let last = fixture.append("a", 2).await?;
    let runner = fixture.runner().await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;
    assert_eq!(
        fixture.totals().await?,
        vec![("a".to_owned(), 3, 2)],
        "applied under acme's wall, the forged commit could not write"
    );
    let other: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tally.totals WHERE network <> 'acme'")
            .fetch_one(&fixture.env.pool)
            .await?;
    assert_eq!(other, 0);
    let dead: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT sequence, network, error FROM tally.dead_letters")
            .fetch_all(&fixture.env.pool)
            .await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].0, dead[0].1.as_str()),
        (forged_sequence as i64, "acme"),
        "dead-lettered under its subject's network"
    );
    assert!(dead[0].2.contains("row-level security"), "{}", dead[0].2);
    Ok(())
}

#[tokio::test]
async fn tables_made_before_the_walls_are_walled_and_their_networks_remembered_at_start()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    // The layout before the walls, made by the role that is now the owner.
    for statement in [
        "CREATE SCHEMA tally",
        "CREATE TABLE tally.projection_checkpoint (projection text PRIMARY KEY, last_sequence bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(), shape_version integer NOT NULL DEFAULT 1)",
        "INSERT INTO tally.projection_checkpoint (projection, last_sequence) VALUES ('tally', 0)",
        "CREATE TABLE tally.dead_letters (projection text NOT NULL, sequence bigint NOT NULL, subject text NOT NULL,
            error text NOT NULL, payload bytea NOT NULL, failed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, sequence))",
        "INSERT INTO tally.dead_letters (projection, sequence, subject, error, payload)
            VALUES ('tally', 7, 'tally-old.acme.tally.a', 'poison', '')",
        "CREATE TABLE tally.totals (network text NOT NULL, aggregate text PRIMARY KEY, total bigint NOT NULL, applied bigint NOT NULL)",
        "INSERT INTO tally.totals VALUES ('beta', 'b', 1, 1)",
    ] {
        sqlx::query(statement).execute(&fixture.env.pool).await?;
    }
    let _runner = fixture.runner().await?;
    let networks = circle_projection::networks(&fixture.env.runtime_pool, SCHEMA).await?;
    assert_eq!(networks, ["acme", "beta"], "from the rows already there");
    let dead: Vec<(i64, String)> =
        sqlx::query_as("SELECT sequence, network FROM tally.dead_letters")
            .fetch_all(&fixture.env.pool)
            .await?;
    assert_eq!(
        dead,
        vec![(7, "acme".to_owned())],
        "a dead letter's network is its subject's"
    );
    let walled: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class
         WHERE relnamespace = 'tally'::regnamespace AND relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&fixture.env.pool)
    .await?;
    assert_eq!(
        walled,
        vec![
            ("dead_letters".to_owned(), true, true),
            ("networks".to_owned(), false, false),
            ("projection_checkpoint".to_owned(), false, false),
            ("seen".to_owned(), true, true),
            ("totals".to_owned(), true, true),
        ]
    );
    // The runtime role sees beta's row with beta set, and nothing without.
    let mut runtime = fixture.env.runtime_pool.acquire().await?;
    let unset: i64 = sqlx::query_scalar("SELECT count(*) FROM tally.totals")
        .fetch_one(&mut *runtime)
        .await?;
    let mut beta = circle_projection::tenant_transaction(&fixture.env.runtime_pool, "beta").await?;
    let set: i64 = sqlx::query_scalar("SELECT count(*) FROM tally.totals")
        .fetch_one(&mut *beta)
        .await?;
    assert_eq!((unset, set), (0, 1));
    Ok(())
}

#[tokio::test]
async fn a_projection_prepared_before_its_stream_is_read_at_once_and_waited_for_to_the_streams_end()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    // The tables, walled, with no runner and no stream yet to read.
    circle_projection::prepare(&Tally, &fixture.database, SCHEMA, 1).await?;
    let mut transaction =
        circle_projection::tenant_transaction(&fixture.database.pool, "acme").await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tally.totals")
        .fetch_one(&mut *transaction)
        .await?;
    assert_eq!(rows, 0);
    transaction.rollback().await?;

    // Waiting for the end of the stream: nothing to wait for on an empty one; a
    // message no runner applies is waited for in vain; once a runner runs, it is had.
    let pool = &fixture.database.pool;
    let wait = |limit| {
        circle_projection::wait_for_stream_end(pool, SCHEMA, "tally", &fixture.stream, limit)
    };
    wait(Duration::from_millis(1)).await?;
    let sequence = fixture.append("a", 5).await?;
    let behind = wait(Duration::from_millis(200)).await;
    assert!(
        matches!(behind, Err(LagError::NotYet { wanted, reached: 0 }) if wanted == sequence),
        "{behind:?}"
    );
    let runner = fixture.runner().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    wait(Duration::from_secs(15)).await?;
    assert_eq!(fixture.totals().await?, vec![("a".to_owned(), 5, 1)]);
    let _ = stop.send(());
    task.await??;
    Ok(())
}

/// Stores a fault in `tally.totals`: every insert raises the same error.
async fn break_totals(fixture: &Fixture) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE FUNCTION tally.refuse() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON tally.totals
         FOR EACH ROW EXECUTE FUNCTION tally.refuse();",
    )
    .execute(&fixture.env.pool)
    .await?;
    Ok(())
}

async fn dead_letters(fixture: &Fixture) -> anyhow::Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT sequence FROM tally.dead_letters ORDER BY sequence")
            .fetch_all(&fixture.env.pool)
            .await?,
    )
}

async fn wait_until(mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_failure_that_repeats_after_a_dead_letter_halts_and_a_fix_resumes_from_the_checkpoint()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let good = fixture.append("a", 1).await?;
    let runner = fixture.runner().await?;
    let (handle, health) = (runner.handle(), runner.health());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(good, Duration::from_secs(15)).await?;
    break_totals(&fixture).await?;
    let first_failing = fixture.append("b", 2).await?;
    fixture.append("c", 3).await?;
    let last = fixture.append("d", 4).await?;
    wait_until(|| health.halted()).await?;
    assert_eq!(dead_letters(&fixture).await?, vec![first_failing as i64]);
    assert_eq!(fixture.checkpoint().await?, first_failing as i64);

    // A restart while halted halts again on the same event: the rule's memory is the
    // checkpoint row, not the process.
    let _ = stop.send(());
    task.await??;
    let runner = fixture.runner().await?;
    let (handle, health) = (runner.handle(), runner.health());
    assert!(!health.halted());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    wait_until(|| health.halted()).await?;
    assert_eq!(dead_letters(&fixture).await?, vec![first_failing as i64]);
    assert_eq!(fixture.checkpoint().await?, first_failing as i64);
    // Its lag shows the two events behind it, and their age.
    wait_until(|| health.lag_events() == last - first_failing && health.lag_seconds() > 0.0)
        .await?;

    // The fix: it resumes by itself from the checkpoint.
    sqlx::raw_sql("DROP TRIGGER refuse ON tally.totals; DROP FUNCTION tally.refuse();")
        .execute(&fixture.env.pool)
        .await?;
    handle.wait_for(last, Duration::from_secs(15)).await?;
    wait_until(|| !health.halted()).await?;
    wait_until(|| health.lag_events() == 0 && health.lag_seconds() == 0.0).await?;
    let _ = stop.send(());
    task.await??;
    assert_eq!(dead_letters(&fixture).await?, vec![first_failing as i64]);
    assert_eq!(
        fixture.totals().await?,
        vec![
            ("a".to_owned(), 1, 1),
            ("c".to_owned(), 3, 1),
            ("d".to_owned(), 4, 1)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn poison_events_with_a_good_one_between_are_each_dead_lettered_without_halting()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let first = fixture.append("a", POISON).await?;
    fixture.append("a", 1).await?;
    let second = fixture.append("a", POISON).await?;
    let last = fixture.append("a", 2).await?;
    let runner = fixture.runner().await?;
    let (handle, health) = (runner.handle(), runner.health());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(last, Duration::from_secs(15)).await?;
    assert!(!health.halted());
    let _ = stop.send(());
    task.await??;
    assert_eq!(
        dead_letters(&fixture).await?,
        vec![first as i64, second as i64]
    );
    Ok(())
}

/// Two bad events in a row halt the projection (the rule cannot tell them from a
/// fault); an operator's skip dead-letters the second and the projection goes on;
/// a later rebuild replays both without halting (the skip is remembered) and keeps
/// both dead letters; the halt shows in the checkpoints only while it lasts.
#[tokio::test]
async fn a_skip_past_two_bad_events_holds_through_a_rebuild() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.append("a", 1).await?;
    let first = fixture.append("a", POISON).await?;
    let second = fixture.append("b", POISON).await?;
    let last = fixture.append("a", 2).await?;
    let runner = fixture.runner().await?;
    let (handle, health) = (runner.handle(), runner.health());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    wait_until(|| health.halted()).await?;
    let halted = admin::checkpoints(&fixture.database.owner).await?;
    let tally = halted
        .iter()
        .find(|checkpoint| checkpoint.schema == SCHEMA)
        .expect("tally's checkpoint");
    assert!(tally.halted_since.is_some(), "{tally:?}");
    assert_eq!(tally.last_sequence, first);

    let skipped = admin::skip_halted(&fixture.database, SCHEMA, "tally", &fixture.stream).await?;
    assert_eq!(skipped, second);
    handle.wait_for(last, Duration::from_secs(15)).await?;
    wait_until(|| !health.halted()).await?;
    assert_eq!(
        dead_letters(&fixture).await?,
        vec![first as i64, second as i64]
    );
    let refused = admin::skip_halted(&fixture.database, SCHEMA, "tally", &fixture.stream).await;
    assert!(
        matches!(refused, Err(admin::AdminError::NotHalted { .. })),
        "{refused:?}"
    );
    let after = admin::checkpoints(&fixture.database.owner).await?;
    assert!(
        after
            .iter()
            .all(|checkpoint| checkpoint.halted_since.is_none())
    );

    // A rebuild replays both bad events: the first dead-lettered, the second (skipped
    // by the operator) dead-lettered again instead of halting the rebuild.
    let live = fixture.totals().await?;
    let report = circle_projection::rebuild(
        &Tally,
        &fixture.database,
        SCHEMA,
        &fixture.stream,
        &fixture.settings,
    )
    .await?;
    assert_eq!(report.applied_through, last);
    assert_eq!(fixture.totals().await?, live);
    assert_eq!(
        dead_letters(&fixture).await?,
        vec![first as i64, second as i64]
    );
    let skipped_flags: Vec<bool> =
        sqlx::query_scalar("SELECT skipped FROM tally.dead_letters ORDER BY sequence")
            .fetch_all(&fixture.env.pool)
            .await?;
    assert_eq!(skipped_flags, vec![false, true]);
    let _ = stop.send(());
    task.await??;
    Ok(())
}

/// A process manager in miniature: a commit on `ping-*` makes it append one on `pong-*`.
struct Echo {
    store: EventStore,
}

impl Projection for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn process_manager(&self) -> bool {
        true
    }

    async fn apply(&self, _: &mut PgConnection, commit: &StoredCommit) -> Result<(), ApplyError> {
        let Some(id) = commit.commit.aggregate_id.strip_prefix("ping-") else {
            return Ok(());
        };
        let key = AggregateKey::new("acme", "tally", format!("pong-{id}"))
            .map_err(|error| ApplyError::Poison(error.to_string()))?;
        let meta = CommitMeta {
            request_id: format!("echo-{id}"),
            actor_role: "service".into(),
            actor_id: "echo".into(),
            fingerprint: String::new(),
        };
        let event = NewEvent {
            event_type: "test.Value".into(),
            schema_version: 1,
            payload: prost_types_lite::encode(1),
        };
        self.store
            .append(&key, 0, &meta, vec![event])
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?;
        Ok(())
    }
}

/// The spans a test's tracer provider ended.
#[derive(Debug, Clone, Default)]
struct Spans(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl Spans {
    fn all(&self) -> Vec<opentelemetry_sdk::trace::SpanData> {
        self.0.lock().map(|spans| spans.clone()).unwrap_or_default()
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for Spans {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        if let Ok(mut spans) = self.0.lock() {
            spans.push(span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

fn attribute(span: &opentelemetry_sdk::trace::SpanData, name: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == name)
        .map(|attribute| attribute.value.to_string())
}

#[tokio::test]
async fn a_commits_trace_continues_into_the_consumer_and_the_commands_it_issues()
-> anyhow::Result<()> {
    use opentelemetry::trace::{SpanKind, TraceContextExt as _, TracerProvider as _};
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let fixture = Fixture::new().await?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let spans = Spans::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // A current-thread test runtime: the scoped subscriber covers the runner's task.
    let _scoped = tracing::subscriber::set_default(subscriber);

    let command = tracing::info_span!("command");
    let trace_id = command.context().span().span_context().trace_id();
    let ping = fixture.append("ping-1", 1).instrument(command).await?;
    let runner = ProjectionRunner::new(
        Arc::new(Echo {
            store: fixture.store.clone(),
        }),
        &fixture.database,
        "echo",
        fixture.stream.clone(),
        ProjectionSettings {
            service: "tally".into(),
            ..fixture.settings.clone()
        },
    )
    .await?;
    let handle = runner.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    // The echo's own commit comes after the ping (appended while the ping is
    // applied); once it is applied too, every span of the ping has ended.
    handle.wait_for(ping, Duration::from_secs(15)).await?;
    handle.wait_for(ping + 1, Duration::from_secs(15)).await?;
    let _ = stop.send(());
    task.await??;

    let stream = fixture.stream.cached_info().config.name.clone();
    let spans = spans.all();
    let named = |name: String| {
        spans
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let sends = named(format!("send {stream}"));
    let processes = named(format!("process {stream}"));
    let ping_send = sends
        .iter()
        .find(|span| attribute(span, "messaging.message.id") == Some(ping.to_string()))
        .ok_or_else(|| anyhow::anyhow!("no producer span of the ping: {sends:?}"))?;
    assert_eq!(ping_send.span_context.trace_id(), trace_id);
    // Per message: a CONSUMER span, child of the append that produced it.
    let consumed = processes
        .iter()
        .find(|span| {
            span.span_kind == SpanKind::Consumer
                && attribute(span, "messaging.message.id") == Some(ping.to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("no consumer span of the ping: {processes:?}"))?;
    assert_eq!(consumed.span_context.trace_id(), trace_id);
    assert_eq!(consumed.parent_span_id, ping_send.span_context.span_id());
    for (name, value) in [
        ("messaging.system", "nats"),
        ("messaging.destination.name", stream.as_str()),
        ("messaging.operation.type", "process"),
        ("messaging.consumer.group.name", "echo"),
        ("circle.service", "tally"),
    ] {
        assert_eq!(attribute(consumed, name).as_deref(), Some(value), "{name}");
    }
    // The command the step issued: its append is a child of the consumer span.
    let echo_send = sends
        .iter()
        .find(|span| span.parent_span_id == consumed.span_context.span_id())
        .ok_or_else(|| anyhow::anyhow!("the step's append is not in the consumer span"))?;
    assert_eq!(echo_send.span_context.trace_id(), trace_id);
    // Per batch: a root span linked to the append of each of its messages.
    let batch = processes
        .iter()
        .find(|span| {
            span.links
                .iter()
                .any(|link| link.span_context.span_id() == ping_send.span_context.span_id())
        })
        .ok_or_else(|| anyhow::anyhow!("no batch span linked to the ping's append"))?;
    assert_ne!(
        batch.span_context.trace_id(),
        trace_id,
        "a batch has a trace of its own"
    );
    assert_eq!(attribute(batch, "circle.service").as_deref(), Some("tally"));
    Ok(())
}

/// A metric exporter that keeps the last export: (metric, projection, value) for every
/// data point of the projection's instruments.
#[derive(Debug, Clone, Default)]
struct Exported(Arc<std::sync::Mutex<Vec<(String, String, f64)>>>);

impl Exported {
    fn value(&self, metric: &str, projection: &str) -> Option<f64> {
        self.0.lock().ok().and_then(|points| {
            points
                .iter()
                .find(|(name, of, _)| name == metric && of == projection)
                .map(|(_, _, value)| *value)
        })
    }
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for Exported {
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        fn points<T: Copy>(
            data: &MetricData<T>,
            to_f64: fn(T) -> f64,
        ) -> Vec<(Vec<opentelemetry::KeyValue>, f64)> {
            match data {
                MetricData::Gauge(gauge) => gauge
                    .data_points()
                    .map(|point| (point.attributes().cloned().collect(), to_f64(point.value())))
                    .collect(),
                MetricData::Sum(sum) => sum
                    .data_points()
                    .map(|point| (point.attributes().cloned().collect(), to_f64(point.value())))
                    .collect(),
                _ => Vec::new(),
            }
        }
        let mut exported = Vec::new();
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                let points = match metric.data() {
                    AggregatedMetrics::F64(data) => points(data, |value| value),
                    AggregatedMetrics::U64(data) => points(data, |value| value as f64),
                    AggregatedMetrics::I64(data) => points(data, |value| value as f64),
                };
                for (attributes, value) in points {
                    let projection = attributes
                        .iter()
                        .find(|attribute| attribute.key.as_str() == "circle.projection")
                        .map(|attribute| attribute.value.to_string())
                        .unwrap_or_default();
                    exported.push((metric.name().to_owned(), projection, value));
                }
            }
        }
        if let Ok(mut last) = self.0.lock() {
            *last = exported;
        }
        Ok(())
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        opentelemetry_sdk::metrics::Temporality::Cumulative
    }
}

#[tokio::test]
async fn a_halt_and_the_lag_are_exported_through_the_global_meter() -> anyhow::Result<()> {
    let exported = Exported::default();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(exported.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let collect = |metric: &str| -> anyhow::Result<Option<f64>> {
        provider
            .force_flush()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(exported.value(metric, "tally"))
    };

    let fixture = Fixture::new().await?;
    let good = fixture.append("a", 1).await?;
    let runner = fixture.runner().await?;
    let (handle, health) = (runner.handle(), runner.health());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    handle.wait_for(good, Duration::from_secs(15)).await?;
    break_totals(&fixture).await?;
    fixture.append("b", 2).await?;
    fixture.append("c", 3).await?;
    let last = fixture.append("d", 4).await?;
    wait_until(|| health.halted() && health.lag_events() == 2).await?;
    assert_eq!(collect("circle.projection.halted")?, Some(1.0));
    assert_eq!(collect("circle.projection.dead_letters")?, Some(1.0));
    assert_eq!(collect("circle.projection.lag.events")?, Some(2.0));
    assert!(collect("circle.projection.lag.seconds")?.is_some_and(|seconds| seconds > 0.0));

    sqlx::raw_sql("DROP TRIGGER refuse ON tally.totals; DROP FUNCTION tally.refuse();")
        .execute(&fixture.env.pool)
        .await?;
    handle.wait_for(last, Duration::from_secs(15)).await?;
    wait_until(|| !health.halted() && health.lag_events() == 0).await?;
    let _ = stop.send(());
    task.await??;
    assert_eq!(collect("circle.projection.halted")?, Some(0.0));
    assert_eq!(collect("circle.projection.lag.events")?, Some(0.0));
    assert_eq!(collect("circle.projection.lag.seconds")?, Some(0.0));
    assert_eq!(collect("circle.projection.events_applied")?, Some(3.0));
    Ok(())
}

impl Fixture {
    /// The fixture's settings, split into `partitions`.
    fn split(&self, partitions: u32) -> ProjectionSettings {
        ProjectionSettings {
            partitions,
            ..self.settings.clone()
        }
    }

    async fn split_runner(&self, partitions: u32) -> anyhow::Result<ProjectionRunner<Tally>> {
        Ok(ProjectionRunner::new(
            Arc::new(Tally),
            &self.database,
            SCHEMA,
            self.stream.clone(),
            self.split(partitions),
        )
        .await?)
    }

    /// Appends one value to aggregate `id` of `network`; returns its sequence.
    async fn append_in(&self, network: &str, id: &str, value: i64) -> anyhow::Result<u64> {
        let key = AggregateKey::new(network, "tally", id)?;
        let version = self.store.version(&key).await?;
        let meta = CommitMeta {
            request_id: format!("{network}-{}", uuid_like(id, version)),
            actor_role: "service".into(),
            actor_id: "test".into(),
            fingerprint: String::new(),
        };
        let event = NewEvent {
            event_type: "test.Value".into(),
            schema_version: 1,
            payload: prost_types_lite::encode(value),
        };
        Ok(self
            .store
            .append(&key, version, &meta, vec![event])
            .await?
            .sequence())
    }

    /// The checkpoint rows: (key, last sequence).
    async fn checkpoint_rows(&self) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT projection, last_sequence FROM tally.projection_checkpoint ORDER BY projection",
        )
        .fetch_all(&self.env.pool)
        .await?)
    }

    async fn seen(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM tally.seen")
            .fetch_one(&self.env.pool)
            .await?)
    }
}

/// Networks named `net-0`, `net-1`, … until each of `partitions` partitions has two.
fn networks_covering(partitions: u32) -> Vec<String> {
    let mut found = Vec::new();
    let mut per_partition = vec![0; partitions as usize];
    let mut index = 0;
    while per_partition.iter().any(|count| *count < 2) {
        let network = format!("net-{index}");
        let partition = circle_projection::partition_of(&network, partitions) as usize;
        if per_partition[partition] < 2 {
            per_partition[partition] += 1;
            found.push(network);
        }
        index += 1;
    }
    found
}

/// Appends `rounds` values to two aggregates of each network, adding them to
/// `expected` (aggregate → total, applications); returns the last sequence.
async fn append_round(
    fixture: &Fixture,
    networks: &[String],
    round: i64,
    expected: &mut std::collections::BTreeMap<String, (i64, i64)>,
) -> anyhow::Result<u64> {
    let mut last = 0;
    for (offset, network) in networks.iter().enumerate() {
        for aggregate in ["x", "y"] {
            let id = format!("{network}-{aggregate}");
            let value = round * 100 + offset as i64;
            last = fixture.append_in(network, &id, value).await?;
            let entry = expected.entry(id).or_insert((0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
    }
    Ok(last)
}

fn as_rows(expected: &std::collections::BTreeMap<String, (i64, i64)>) -> Vec<(String, i64, i64)> {
    expected
        .iter()
        .map(|(aggregate, (total, applied))| (aggregate.clone(), *total, *applied))
        .collect()
}

#[tokio::test]
async fn a_split_projections_partitions_are_shared_out_and_move_when_a_replica_dies_or_joins()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let networks = networks_covering(4);
    let mut expected = std::collections::BTreeMap::new();
    let mut appended = 0;
    let mut last = append_round(&fixture, &networks, 1, &mut expected).await?;
    appended += networks.len() as i64 * 2;

    // One replica: it writes all four partitions.
    let first = fixture.split_runner(4).await?;
    let first_handle = first.handle();
    let (stop_first, stopped) = tokio::sync::oneshot::channel::<()>();
    let first_task = tokio::spawn(first.run(async {
        let _ = stopped.await;
    }));
    first_handle.wait_for(last, Duration::from_secs(20)).await?;
    wait_until(|| first_handle.partitions_led() == 4).await?;

    // A second joins: the first gives up partitions beyond its share, the second
    // takes them.
    let second = fixture.split_runner(4).await?;
    let second_handle = second.handle();
    let second_task = tokio::spawn(second.run(std::future::pending::<()>()));
    wait_until(|| first_handle.partitions_led() == 2 && second_handle.partitions_led() == 2)
        .await?;
    last = append_round(&fixture, &networks, 2, &mut expected).await?;
    appended += networks.len() as i64 * 2;
    second_handle
        .wait_for(last, Duration::from_secs(20))
        .await?;

    // The second dies (its task dropped mid-way, its connections with it): the first
    // takes its partitions back and goes on.
    last = append_round(&fixture, &networks, 3, &mut expected).await?;
    appended += networks.len() as i64 * 2;
    second_task.abort();
    let _ = second_task.await;
    wait_until(|| first_handle.partitions_led() == 4).await?;
    last = last.max(append_round(&fixture, &networks, 4, &mut expected).await?);
    appended += networks.len() as i64 * 2;
    first_handle.wait_for(last, Duration::from_secs(30)).await?;

    // Every message applied exactly once (a second application would have been
    // refused by `seen` and dead-lettered), every partition's row at the end.
    assert_eq!(fixture.totals().await?, as_rows(&expected));
    assert_eq!(fixture.seen().await?, appended);
    assert_eq!(dead_letters(&fixture).await?, Vec::<i64>::new());
    let rows = fixture.checkpoint_rows().await?;
    assert_eq!(
        rows,
        (0..4)
            .map(|index| (format!("tally@{index}/4"), last as i64))
            .collect::<Vec<_>>()
    );

    // A rebuild replays the partitions side by side and equals the live tables.
    let live = fixture.totals().await?;
    let report = rebuild(
        &Tally,
        &fixture.database,
        SCHEMA,
        &fixture.stream,
        &fixture.split(4),
    )
    .await?;
    assert_eq!(report.applied_through, last);
    assert_eq!((report.dead_letters, fixture.totals().await?), (0, live));
    assert_eq!(fixture.seen().await?, appended);

    let _ = stop_first.send(());
    first_task.await??;
    Ok(())
}

#[tokio::test]
async fn a_new_partition_count_rebuilds_the_projection_into_rows_of_that_count()
-> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let networks = networks_covering(3);
    let mut expected = std::collections::BTreeMap::new();
    let mut round = 1;
    let last = append_round(&fixture, &networks, round, &mut expected).await?;
    let spawn = |runner: ProjectionRunner<Tally>| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(runner.run(async {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    let rows_of = |count: u32, at: u64| -> Vec<(String, i64)> {
        if count == 1 {
            return vec![("tally".to_owned(), at as i64)];
        }
        (0..count)
            .map(|index| (format!("tally@{index}/{count}"), at as i64))
            .collect()
    };
    let unsplit = fixture.runner().await?;
    let mut writing = unsplit.handle();
    let mut running = spawn(unsplit);
    writing.wait_for(last, Duration::from_secs(20)).await?;
    assert_eq!(fixture.checkpoint_rows().await?, rows_of(1, last));

    // A replica of another count starts while one of the current count runs (a
    // rolling change): it waits, writing nothing — round after round, for seconds, the
    // current one goes on writing its rows and no rebuild starts — until that one
    // stops; then it rebuilds into its count and writes every partition, applying
    // nothing twice. Unsplit to three, then three to two.
    for (from, to) in [(1, 3), (3, 2)] {
        let next = fixture.split_runner(to).await?;
        let next_handle = next.handle();
        let next_running = spawn(next);
        // Over longer than a waiting runner takes to decide (it asks twice, more than a
        // second apart), and at least three rounds; meanwhile it holds no partition
        // (one held while waiting would be written by nobody).
        let watched = tokio::time::Instant::now();
        let mut rounds = 0;
        while rounds < 3 || watched.elapsed() < Duration::from_secs(4) {
            rounds += 1;
            round += 1;
            let at = append_round(&fixture, &networks, round, &mut expected).await?;
            writing.wait_for(at, Duration::from_secs(20)).await?;
            assert_eq!(
                fixture.checkpoint_rows().await?,
                rows_of(from, at),
                "{from} → {to}"
            );
            let rebuilding: Option<String> =
                sqlx::query_scalar("SELECT to_regnamespace('tally_rebuild')::text")
                    .fetch_one(&fixture.env.pool)
                    .await?;
            assert_eq!(rebuilding, None, "no rebuild while {from} runs");
            assert_eq!(next_handle.partitions_led(), 0, "{from} → {to}");
            assert_eq!(fixture.totals().await?, as_rows(&expected));
        }
        let (stop, task) = running;
        let _ = stop.send(());
        task.await??;
        round += 1;
        let at = append_round(&fixture, &networks, round, &mut expected).await?;
        next_handle.wait_for(at, Duration::from_secs(30)).await?;
        TestEnv::eventually(Duration::from_secs(30), || async {
            Ok(fixture.checkpoint_rows().await? == rows_of(to, at))
        })
        .await?;
        wait_until(|| next_handle.partitions_led() == to).await?;
        assert_eq!(fixture.totals().await?, as_rows(&expected));
        assert_eq!(
            fixture.seen().await?,
            networks.len() as i64 * 2 * round,
            "{from} → {to}"
        );
        assert_eq!(dead_letters(&fixture).await?, Vec::<i64>::new());
        writing = next_handle;
        running = next_running;
    }
    let (stop, task) = running;
    let _ = stop.send(());
    task.await??;
    Ok(())
}
