use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use circle_eventstore::{HeaderExtractor, StoredCommit};
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tracing::Instrument;

use crate::health::{Health, Metrics};
use crate::walls::{self, Database, WallError};

/// A read model fed from one stream.
pub trait Projection: Send + Sync + 'static {
    /// Durable consumer name and checkpoint key, e.g. `enrollment-read-model`.
    fn name(&self) -> &str;
    /// Statements creating the projection's tables (unqualified names, idempotent). The
    /// read model is disposable: a change of shape is made by a rebuild, not by ALTER.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one commit. Runs inside the batch transaction with `search_path` set and
    /// the commit's network (its subject's) set (`walls::NETWORK_SETTING`): the tables
    /// show and take only that network's rows.
    fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;
    /// The shape of the tables: bump it when `tables` or `apply` change what the tables
    /// hold. A runner that finds an older shape rebuilds the projection before it starts
    /// (a new table of an old projection would otherwise stay empty of the past).
    fn shape_version(&self) -> u32 {
        1
    }
    /// For a process manager that keeps nothing but its checkpoint and was moved to a
    /// schema of its own: the schema its checkpoint was kept in before. Its first start
    /// in the new schema resumes from there instead of replaying the stream from the
    /// start (a replay would issue its commands again under the new code's ids).
    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        None
    }
    /// Whether this is a process manager (it issues commands): its steps are counted
    /// by outcome (`circle.process_manager.steps`).
    fn process_manager(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database or network may recover: retried without limit, never dead-lettered.
    #[error("transient: {0}")]
    Transient(String),
    /// The message itself cannot be applied (undecodable, violates a constraint):
    /// retried a bounded number of times, then dead-lettered.
    #[error("{0}")]
    Poison(String),
    /// The schema already holds another projection's checkpoint. A projection owns its
    /// schema (a rebuild swaps the whole schema), so two may never share one.
    #[error(
        "schema {schema} belongs to projection {owner}; each projection needs a schema of its own"
    )]
    SchemaTaken { schema: String, owner: String },
    /// The tenant wall would not hold (the runtime role owns a table, a table has no
    /// network): refused at start.
    #[error(transparent)]
    Wall(#[from] WallError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database) => {
                let code = database.code().unwrap_or_default();
                // 08 connection, 40 serialization / deadlock, 53 resources, 55 object
                // not in state (a lock not available), 57 operator intervention, and
                // 25006 (a read-only transaction: a standby during a failover): all may
                // pass.
                if ["08", "40", "53", "55", "57", "25006"]
                    .iter()
                    .any(|class| code.starts_with(class))
                {
                    Self::Transient(error.to_string())
                } else {
                    Self::Poison(error.to_string())
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Transient(error.to_string()),
            _ => Self::Poison(error.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProjectionSettings {
    pub batch_size: usize,
    pub ack_wait: Duration,
    pub max_attempts: u32,
    /// How often a halted projection tries its event again.
    pub halt_retry: Duration,
    /// The service running the projection (`circle.service` on its spans).
    pub service: String,
    /// How many partitions the projection's work is split into (1..=[`MAX_PARTITIONS`]):
    /// a network's messages are one partition's ([`partition_of`]), each partition has
    /// its own checkpoint, consumer and writer, and the replicas share the partitions out.
    /// A change is made by a rebuild, once no replica runs the former count; process
    /// managers are never split ([`partitions_for`]).
    pub partitions: u32,
}

impl Default for ProjectionSettings {
    fn default() -> Self {
        Self {
            batch_size: 128,
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            halt_retry: Duration::from_secs(30),
            service: String::new(),
            partitions: 1,
        }
    }
}

/// The most partitions a projection may have.
pub const MAX_PARTITIONS: u32 = 64;

/// The partition count `projection` runs with when `requested`: a process manager's
/// is 1 — it is never rebuilt (a replay would issue its commands again), and a new
/// count is made by a rebuild — and any other's is `requested`, within bounds.
pub fn partitions_for<P: Projection>(projection: &P, requested: u32) -> u32 {
    if projection.process_manager() {
        1
    } else {
        requested.clamp(1, MAX_PARTITIONS)
    }
}

/// The partition (of `count`) a network's messages belong to: FNV-1a of its name,
/// modulo the count. A network's messages stay in one partition, in stream order, so a
/// projection may join rows of different aggregates of a network as it does unsplit.
/// Never change it: every split projection would then need a rebuild.
pub fn partition_of(network: &str, count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in network.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % count
}

/// The checkpoint row (and writer lock) of partition `index` of `count`: the
/// projection's own name when it is not split, so an unsplit projection keeps the
/// row it always had; `<name>@<index>/<count>` when it is.
pub(crate) fn partition_key(name: &str, index: u32, count: u32) -> String {
    if count <= 1 {
        name.to_owned()
    } else {
        format!("{name}@{index}/{count}")
    }
}

/// The durable consumer of partition `index` of `count` (NATS names take no `@` or
/// `/`).
pub(crate) fn partition_consumer(name: &str, index: u32, count: u32) -> String {
    if count <= 1 {
        name.to_owned()
    } else {
        format!("{name}_{index}of{count}")
    }
}

/// The partition count that checkpoint rows `keys` (of one projection) were made for,
/// if they are one whole set of one count.
pub(crate) fn partition_count_of(name: &str, keys: &[String]) -> Option<u32> {
    let count = match keys.first()?.strip_prefix(name)? {
        "" => 1,
        rest => rest.rsplit_once('/')?.1.parse().ok()?,
    };
    let mut expected: Vec<String> = (0..count)
        .map(|index| partition_key(name, index, count))
        .collect();
    let mut found = keys.to_vec();
    expected.sort();
    found.sort();
    (expected == found).then_some(count)
}

/// Checkpoint rows of projection `name`: its own, or its partitions' (`name@…`).
pub(crate) const OF_PROJECTION: &str = "split_part(projection, '@', 1) = $1";

/// The class of a poison failure, to tell whether two events failed the same way:
/// the message with quoted parts and numbers taken out (they name the row or the
/// value, not the fault), hashed (FNV-1a) so that what is kept and compared holds no
/// data of the event.
pub(crate) fn failure_class(reason: &str) -> String {
    let mut normalised = String::with_capacity(reason.len());
    let mut quote: Option<char> = None;
    for character in reason.chars() {
        match quote {
            Some(open) => {
                let close = if open == '(' { ')' } else { open };
                if character == close {
                    quote = None;
                }
            }
            None if matches!(character, '"' | '\'' | '(') => quote = Some(character),
            None if character.is_ascii_digit() => {
                if !normalised.ends_with('#') {
                    normalised.push('#');
                }
            }
            None => normalised.push(character),
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalised.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// One delivered message, detached from the consumer that delivered it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub sequence: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Vec<u8>,
}

impl Delivery {
    fn from_message(message: &jetstream::Message) -> Result<Self, ApplyError> {
        let info = message
            .info()
            .map_err(|error| ApplyError::Transient(format!("unreadable delivery: {error}")))?;
        Ok(Self {
            sequence: info.stream_sequence,
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.to_vec(),
        })
    }
}

/// Where a projection has got to; lets queries wait for a consistency token.
#[derive(Clone)]
pub struct ProjectionHandle {
    name: String,
    schema: String,
    pool: PgPool,
    /// Where each partition's checkpoint is, as this process last knew it (a partition
    /// another replica writes stays at what was known: lower than or equal to its row).
    position: watch::Receiver<Vec<u64>>,
    /// The stream the projection consumes, for where it ends.
    stream: jetstream::stream::Stream,
    /// How many partitions this process writes now.
    led: Arc<std::sync::atomic::AtomicU32>,
}

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("the read model has not reached version {wanted} yet (at {reached})")]
    NotYet { wanted: u64, reached: u64 },
    #[error("cannot read the projection checkpoint: {0}")]
    Database(String),
    /// The stream ends before `wanted`: no write has that sequence (yet), so waiting
    /// is pointless.
    #[error("the stream ends at {last}; nothing has version {wanted}")]
    BeyondStream { wanted: u64, last: u64 },
    /// The stream could not be asked where it ends.
    #[error("cannot read where the stream ends: {0}")]
    Stream(String),
}

fn lowest(positions: &[u64]) -> u64 {
    positions.iter().copied().min().unwrap_or(0)
}

impl ProjectionHandle {
    /// Where the projection has got to, as this process knows: every message up to it
    /// is applied (the lowest of its partitions' checkpoints).
    pub fn position(&self) -> u64 {
        lowest(&self.position.borrow())
    }

    /// How many of the projection's partitions this process writes now.
    pub fn partitions_led(&self) -> u32 {
        self.led.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A receiver that wakes when this process's runner moves the projection on
    /// (already marked as seen, so it waits for the next move).
    pub fn changes(&self) -> watch::Receiver<Vec<u64>> {
        let mut changes = self.position.clone();
        changes.mark_unchanged();
        changes
    }

    /// Waits, at most `limit`, until the projection has applied `sequence`. Follows
    /// this process's runner and also polls the checkpoint, which another replica's
    /// runner may be moving. A sequence beyond the end of the stream is refused at
    /// once (`BeyondStream`); if the stream cannot be asked, it is waited for.
    pub async fn wait_for(&self, sequence: u64, limit: Duration) -> Result<(), LagError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut position = self.position.clone();
        let mut runner_alive = true;
        let mut end_checked = false;
        loop {
            if lowest(&position.borrow_and_update()) >= sequence {
                return Ok(());
            }
            let stored = read_checkpoint(&self.pool, &self.schema, &self.name)
                .await
                .map_err(|error| LagError::Database(error.to_string()))?;
            if stored >= sequence {
                return Ok(());
            }
            if !end_checked {
                end_checked = true;
                if let Ok(info) = self.stream.get_info().await
                    && sequence > info.state.last_sequence
                {
                    return Err(LagError::BeyondStream {
                        wanted: sequence,
                        last: info.state.last_sequence,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LagError::NotYet {
                    wanted: sequence,
                    reached: stored.max(lowest(&position.borrow())),
                });
            }
            let poll = tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
            );
            if runner_alive {
                tokio::select! {
                    changed = position.changed() => runner_alive = changed.is_ok(),
                    () = poll => {}
                }
            } else {
                // The runner of this process has stopped: poll the checkpoint only.
                poll.await;
            }
        }
    }
}

/// Waits, at most `limit`, until the projection `name` in `schema` has applied every
/// message `stream` held when this was called — for a reader that must see all that was
/// written before it asked, of a projection this process may not run (one whose runner
/// waits for its stream, or runs on another replica). Polls the checkpoint.
pub async fn wait_for_stream_end(
    pool: &PgPool,
    schema: &str,
    name: &str,
    stream: &jetstream::stream::Stream,
    limit: Duration,
) -> Result<(), LagError> {
    let deadline = tokio::time::Instant::now() + limit;
    let end = stream
        .get_info()
        .await
        .map_err(|error| LagError::Stream(error.to_string()))?
        .state
        .last_sequence;
    loop {
        let reached = read_checkpoint(pool, schema, name)
            .await
            .map_err(|error| LagError::Database(error.to_string()))?;
        if reached >= end {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LagError::NotYet {
                wanted: end,
                reached,
            });
        }
        tokio::time::sleep_until(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
        )
        .await;
    }
}

/// Makes a projection's schema and tables as [`ProjectionRunner::new`] does — the
/// migration, as the owner: tables, walls, grants — without a stream: for a projection
/// of a stream that may not exist yet, whose tables are read meanwhile (its runner is
/// made once the stream exists).
pub async fn prepare<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    partitions: u32,
) -> Result<(), ApplyError> {
    let partitions = partitions_for(projection, partitions);
    prepare_schema(database, schema, projection, partitions).await?;
    adopt_former_checkpoint(&database.owner, schema, projection).await
}

/// Where some projections have got to, for any number of watchers
/// ([`watch_checkpoints`]); cloned freely, its poller ends when every clone is gone.
#[derive(Clone)]
pub struct Checkpoints {
    sender: watch::Sender<Vec<u64>>,
}

impl Checkpoints {
    /// A receiver that wakes when any of the projections has moved (positions in the
    /// order they were given).
    pub fn subscribe(&self) -> watch::Receiver<Vec<u64>> {
        self.sender.subscribe()
    }
}

/// One poller for any number of watchers: every `every`, while anyone is subscribed,
/// reads how far each of `projections` (schema, name) has got — the sum of its
/// partitions' checkpoints, which moves whenever any partition moves (the lowest would
/// stand still behind a halted partition of another network) — and tells the
/// subscribers when any moved. It costs one query per projection per `every` whichever
/// replica writes them and however many wait, and none while nobody does. A read that
/// fails is tried again at the next tick.
pub fn watch_checkpoints(
    pool: PgPool,
    projections: Vec<(String, String)>,
    every: Duration,
) -> Checkpoints {
    let (sender, _) = watch::channel(vec![0; projections.len()]);
    let polling = sender.clone();
    tokio::spawn(async move {
        let sender = polling;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Every `Checkpoints` is gone: so is anyone who could subscribe.
            if sender.sender_count() <= 1 {
                return;
            }
            if sender.receiver_count() == 0 {
                continue;
            }
            let mut now = Vec::with_capacity(projections.len());
            for (schema, name) in &projections {
                match read_progress(&pool, schema, name).await {
                    Ok(position) => now.push(position),
                    Err(_) => break,
                }
            }
            if now.len() == projections.len() {
                sender.send_if_modified(|seen| {
                    let moved = *seen != now;
                    if moved {
                        *seen = now;
                    }
                    moved
                });
            }
        }
    });
    Checkpoints { sender }
}

/// The sum of a projection's partitions' checkpoints: not a position, but a number
/// that grows whenever any partition moves.
async fn read_progress(pool: &PgPool, schema: &str, name: &str) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "SELECT coalesce(sum(last_sequence), 0)::bigint FROM {schema}.projection_checkpoint WHERE {OF_PROJECTION}"
    );
    let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(value.max(0) as u64)
}

/// Where the projection has got to: the lowest checkpoint of its partitions (every
/// message up to it is applied, whichever partition it belongs to).
pub(crate) async fn read_checkpoint(
    pool: &PgPool,
    schema: &str,
    name: &str,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "SELECT min(last_sequence) FROM {schema}.projection_checkpoint WHERE {OF_PROJECTION}"
    );
    let value: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// The checkpoint rows of projection `name` (key, last sequence).
pub(crate) async fn checkpoint_rows<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    schema: &str,
    name: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence FROM {schema}.projection_checkpoint
         WHERE {OF_PROJECTION} ORDER BY projection"
    )))
    .bind(name)
    .fetch_all(executor)
    .await
}

const RUNTIME_TABLES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS projection_checkpoint (
        projection text PRIMARY KEY,
        last_sequence bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )",
    // A dead letter's network is its subject's (`<root>.<network>.<type>.<id>`, the
    // root has no dot): the one the runner set when it gave up on the message.
    "CREATE TABLE IF NOT EXISTS dead_letters (
        projection text NOT NULL,
        sequence bigint NOT NULL,
        subject text NOT NULL,
        error text NOT NULL,
        payload bytea NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT now(),
        network text GENERATED ALWAYS AS (split_part(subject, '.', 2)) STORED,
        PRIMARY KEY (projection, sequence)
    )",
    "CREATE TABLE IF NOT EXISTS networks (network text PRIMARY KEY)",
];

/// Columns added to the runtime tables after they were first made: (table, column,
/// definition), each added where missing. Looked up first: `ALTER TABLE … ADD COLUMN
/// IF NOT EXISTS` would lock the live checkpoint on every start even when the column
/// exists.
const ADDED_COLUMNS: [(&str, &str, &str); 7] = [
    // Rows written before shapes were versioned are shape 1.
    (
        "projection_checkpoint",
        "shape_version",
        "integer NOT NULL DEFAULT 1",
    ),
    // Dead letters kept before the walls get their network.
    (
        "dead_letters",
        "network",
        "text GENERATED ALWAYS AS (split_part(subject, '.', 2)) STORED",
    ),
    // The class (`failure_class`) of the failure of the message at the checkpoint when
    // it was dead-lettered, NULL when it was applied: the halting rule compares the next
    // failure with it, across restarts and replicas.
    ("projection_checkpoint", "failure_class", "text"),
    // Since when the projection is halted on the message after the checkpoint (NULL
    // while it is not): written by the writer, so `circle status` and every replica
    // see a halt, and `circle projections skip` knows what it may skip.
    ("projection_checkpoint", "halted_since", "timestamptz"),
    // The sequence the projection is halted on: the halt holds only while it is the
    // one right after the checkpoint (an older release that moves the checkpoint
    // without knowing these columns ends it).
    ("projection_checkpoint", "halted_sequence", "bigint"),
    // A dead letter an operator skipped a halted projection past (`circle projections
    // skip`): a rebuild dead-letters it again instead of halting on it.
    ("dead_letters", "skipped", "boolean NOT NULL DEFAULT false"),
    // The sequence of the dead letter whose failure `failure_class` holds: a retry of
    // that dead letter forgets the failure (a split projection's checkpoint moves on
    // past other partitions' messages, so the checkpoint does not tell).
    ("projection_checkpoint", "failure_sequence", "bigint"),
];

/// The network of a stream message: its subject's second token
/// (`<root>.<network>.<aggregate_type>.<id>`; a stream's subjects are `<root>.>`, so a
/// message always has one).
pub(crate) fn network_of(subject: &str) -> &str {
    subject.split('.').nth(1).unwrap_or_default()
}

/// Creates the schema and all tables (runtime and projection) if missing, walls them
/// (`walls::wall_schema`) and checks that the runtime role owns none of them; run by
/// the owner. Refuses a schema that holds another projection: a rebuild swaps the
/// whole schema, and would drop the other one's tables and checkpoint with it.
pub(crate) async fn prepare_schema<P: Projection>(
    database: &Database,
    schema: &str,
    projection: &P,
    partitions: u32,
) -> Result<(), ApplyError> {
    let mut transaction = database.owner.begin().await?;
    // Concurrent starts in one database must not race on CREATE SCHEMA.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *transaction)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&mut *transaction)
    .await?;
    set_search_path(&mut transaction, schema).await?;
    let had_networks: Option<String> = sqlx::query_scalar("SELECT to_regclass('networks')::text")
        .fetch_one(&mut *transaction)
        .await?;
    for statement in RUNTIME_TABLES {
        sqlx::query(statement).execute(&mut *transaction).await?;
    }
    for (table, column, definition) in ADDED_COLUMNS {
        let missing: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns
                                WHERE table_schema = current_schema()
                                  AND table_name = $1 AND column_name = $2)",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut *transaction)
        .await?;
        if missing {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            )))
            .execute(&mut *transaction)
            .await?;
        }
    }
    for statement in projection.tables() {
        sqlx::query(*statement).execute(&mut *transaction).await?;
    }
    if had_networks.is_none() {
        remember_networks_of_rows(&mut transaction, schema).await?;
    }
    walls::wall_schema(&mut transaction, schema, database.runtime_role()).await?;
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT projection FROM projection_checkpoint
         WHERE split_part(projection, '@', 1) <> $1 LIMIT 1",
    )
    .bind(projection.name())
    .fetch_optional(&mut *transaction)
    .await?;
    if let Some(owner) = owner {
        return Err(ApplyError::SchemaTaken {
            schema: schema.to_owned(),
            owner,
        });
    }
    // A projection's first rows: one per partition. Rows of another partition count
    // stay as they are: the runner's upgrade rebuilds for the new count.
    let keys: Vec<String> = (0..partitions.max(1))
        .map(|index| partition_key(projection.name(), index, partitions.max(1)))
        .collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projection_checkpoint (projection, last_sequence, shape_version)
         SELECT unnest($2::text[]), 0, $3
         WHERE NOT EXISTS (SELECT 1 FROM projection_checkpoint WHERE {OF_PROJECTION})
         ON CONFLICT (projection) DO NOTHING"
    )))
    .bind(projection.name())
    .bind(&keys)
    .bind(i32::try_from(projection.shape_version()).unwrap_or(i32::MAX))
    .execute(&mut *transaction)
    .await?;
    Ok(transaction.commit().await?)
}

/// Fills a new `networks` table from the rows the schema already holds (tables made
/// before the walls, which the owner still sees whole): once, when it is created.
async fn remember_networks_of_rows(
    connection: &mut PgConnection,
    schema: &str,
) -> Result<(), ApplyError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'network' AND NOT a.attisdropped
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&mut *connection)
    .await?;
    for table in tables.iter().filter(|table| *table != "networks") {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO networks (network)
             SELECT DISTINCT network FROM \"{table}\" WHERE network IS NOT NULL AND network <> ''
             ON CONFLICT DO NOTHING"
        )))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// A stateless process manager's first start in a schema of its own resumes from the
/// checkpoint it kept in its former schema (see [`Projection::checkpoint_formerly_in`]).
/// Only a checkpoint that has never moved is replaced, so this runs once. A migration:
/// run by the owner (the former schema was made before the walls, by the owner).
async fn adopt_former_checkpoint<P: Projection>(
    pool: &PgPool,
    schema: &str,
    projection: &P,
) -> Result<(), ApplyError> {
    let Some(former) = projection.checkpoint_formerly_in() else {
        return Ok(());
    };
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{former}.projection_checkpoint"))
        .fetch_one(pool)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let adopted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.projection_checkpoint AS live SET last_sequence = former.last_sequence
         FROM {former}.projection_checkpoint AS former
         WHERE split_part(live.projection, '@', 1) = $1 AND former.projection = $1
           AND live.last_sequence = 0"
    )))
    .bind(projection.name())
    .execute(pool)
    .await?;
    if adopted.rows_affected() > 0 {
        tracing::info!(
            projection = projection.name(),
            former,
            schema,
            "resumed from the checkpoint of the former schema"
        );
    }
    Ok(())
}

/// Rebuilds the projection when its tables are of an older shape than the code's (see
/// [`Projection::shape_version`]) or its checkpoints are of another partition count
/// than `settings.partitions` (a rebuild replays the stream into rows of the new
/// count). The runner calls it as a writer, before it applies anything; an advisory
/// lock keeps it apart from its other partitions' writers and any other caller.
async fn upgrade_shape<P: Projection>(
    database: &Database,
    schema: &str,
    projection: &P,
    stream: &jetstream::stream::Stream,
    settings: &ProjectionSettings,
) -> Result<(), ApplyError> {
    let wanted = i32::try_from(projection.shape_version()).unwrap_or(i32::MAX);
    // A connection of its own (detached: the pool opens another in its place, and the
    // lock goes with the connection if this future is dropped).
    let mut guard = database.pool.acquire().await?.detach();
    let lock_key = format!("circle.projection.shape.{schema}");
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&lock_key)
        .execute(&mut guard)
        .await?;
    let count = partitions_for(projection, settings.partitions);
    let settings = &ProjectionSettings {
        partitions: count,
        ..settings.clone()
    };
    let rows_sql = format!(
        "SELECT projection, shape_version, last_sequence FROM {schema}.projection_checkpoint
         WHERE {OF_PROJECTION}"
    );
    let upgraded: Result<(), ApplyError> = async {
        let mut rows: Vec<(String, i32, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(rows_sql.clone()))
                .bind(projection.name())
                .fetch_all(&mut guard)
                .await?;
        let keys: Vec<String> = rows.iter().map(|(key, _, _)| key.clone()).collect();
        let stored_count = partition_count_of(projection.name(), &keys);
        let stored = rows.iter().map(|(_, shape, _)| *shape).min().unwrap_or(0);
        if stored_count == Some(count) && stored >= wanted {
            return Ok(());
        }
        // Rows of another count, or split rows of an older shape: replicas still
        // running that count or shape write them (a rolling change). Wait for them to
        // stop rather than rebuild under them (two counts would rebuild each other
        // away; older code would write into the new tables): the tables are read as
        // they are meanwhile. Asked twice, further apart than a replica takes to make
        // a lost session again, which holds no lock for a moment.
        if let Some(other) = stored_count
            && (other != count || (other > 1 && stored < wanted))
        {
            for asked in 0..2 {
                if asked > 0 {
                    tokio::time::sleep(SHARE_CHECK + LEADER_POLL * 2).await;
                }
                if count_in_use(&mut guard, schema, projection.name(), other, stored).await? {
                    return Err(ApplyError::Transient(format!(
                        "the projection is written as {other} partitions of shape {stored} by \
                         replicas still running; it is made {count} of shape {wanted} once \
                         they have stopped"
                    )));
                }
            }
            // Where the last of them left the rows (one may have applied a batch before
            // it stopped).
            rows = sqlx::query_as(sqlx::AssertSqlSafe(rows_sql.clone()))
                .bind(projection.name())
                .fetch_all(&mut guard)
                .await?;
        }
        let advanced = rows.iter().any(|(_, _, last_sequence)| *last_sequence > 0);
        if projection.process_manager() && stored_count != Some(count) {
            // Never rebuilt (a replay would issue its commands again): its rows become
            // its one row at the lowest of them, where every partition had got to (the
            // steps after it, idempotent commands, are taken again).
            let lowest = rows
                .iter()
                .map(|(_, _, last_sequence)| *last_sequence)
                .min()
                .unwrap_or(0)
                .max(0);
            let mut transaction = database.owner.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {schema}.projection_checkpoint WHERE {OF_PROJECTION}"
            )))
            .bind(projection.name())
            .execute(&mut *transaction)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.projection_checkpoint (projection, last_sequence, shape_version)
                 VALUES ($1, $2, $3)"
            )))
            .bind(partition_key(projection.name(), 0, count))
            .bind(lowest)
            .bind(wanted)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
        } else if advanced {
            let report = rebuild(projection, database, schema, stream, settings).await?;
            tracing::info!(
                projection = projection.name(),
                from = stored,
                to = wanted,
                partitions_from = ?stored_count,
                partitions = count,
                applied_through = report.applied_through,
                "rebuilt for a new shape of its tables or a new partition count"
            );
        } else if stored_count != Some(count) {
            // Nothing applied yet: the rows of the new count replace the others.
            let mut transaction = database.owner.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {schema}.projection_checkpoint WHERE {OF_PROJECTION}"
            )))
            .bind(projection.name())
            .execute(&mut *transaction)
            .await?;
            let keys: Vec<String> = (0..count)
                .map(|index| partition_key(projection.name(), index, count))
                .collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.projection_checkpoint (projection, last_sequence, shape_version)
                 SELECT unnest($1::text[]), 0, $2"
            )))
            .bind(&keys)
            .bind(wanted)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
        }
        // The durable consumers of a former count have nothing more to deliver.
        if let Some(other) = stored_count.filter(|other| *other != count) {
            for index in 0..other {
                let _ = stream
                    .delete_consumer(&partition_consumer(projection.name(), index, other))
                    .await;
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {schema}.projection_checkpoint SET shape_version = $2 WHERE {OF_PROJECTION}"
        )))
        .bind(projection.name())
        .bind(wanted)
        .execute(&mut guard)
        .await?;
        Ok(())
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&lock_key)
        .execute(&mut guard)
        .await;
    upgraded?;
    unlocked?;
    Ok(())
}

pub(crate) async fn set_search_path(
    connection: &mut PgConnection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(schema)
        .execute(connection)
        .await
        .map(|_| ())
}

/// Applies deliveries in order after the checkpoint, in one transaction with the
/// checkpoint. Returns the new checkpoint. A poison message that has used up its
/// attempts is dead-lettered; one that has not stops the batch after committing what
/// came before it.
struct Applier<'a, P> {
    projection: &'a P,
    schema: &'a str,
    /// The checkpoint row this applier moves ([`partition_key`]).
    key: &'a str,
    /// The partition applied (index, count): another partition's message only moves
    /// the checkpoint past it. `None` when the projection is not split.
    partition: Option<(u32, u32)>,
    /// The stream's name and the service's, for the spans.
    stream: &'a str,
    service: &'a str,
    max_attempts: u32,
    attempts: &'a mut HashMap<u64, u32>,
    /// A consumer freshly positioned at this checkpoint + 1 delivers what exists from
    /// there: a jump right after it is a real hole in the stream, not a skip.
    accept_gap_after: Option<u64>,
    /// Off for a rebuild, whose ordered consumer cannot skip.
    check_gaps: bool,
    /// Whether a failure that repeats the one dead-lettered just before halts the
    /// projection (in a rebuild it aborts the rebuild, so a faulty one never replaces the live schema).
    halt: bool,
    /// Sequences an operator skipped the live projection past (a rebuild's replay):
    /// dead-lettered again when they fail, never halted on.
    skipped: &'a std::collections::BTreeSet<u64>,
}

#[derive(Debug)]
struct BatchOutcome {
    checkpoint: u64,
    /// Set when a message failed and will be retried.
    stopped_by: Option<ApplyError>,
    /// Set when the deliveries skipped sequences after the checkpoint.
    gap: bool,
    /// How many messages this batch dead-lettered.
    dead_lettered: u64,
    /// How many messages this batch applied.
    applied: u64,
    /// Set when the message after the checkpoint failed the same way as the one
    /// dead-lettered right before it: the projection halts on it (`stopped_by` holds the
    /// failure), nothing is dead-lettered.
    halted: bool,
}

/// No sequence skipped: a live runner's (an operator's skip moves its checkpoint).
static NONE_SKIPPED: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();

impl<P: Projection> Applier<'_, P> {
    /// Applies a batch in one transaction. First without a savepoint per message (two
    /// statements fewer each): when every message applies, which is the rule, that is
    /// the whole batch. When one cannot (a poison message), that transaction is rolled
    /// back, nothing of it kept, and the batch is applied again with a savepoint
    /// around each message, so the bad one is retried or dead-lettered on its own. A
    /// batch with a message already failing goes the careful way at once.
    async fn apply(
        &mut self,
        connection: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<BatchOutcome, ApplyError> {
        // Failures of messages already applied (here or by another replica that led
        // meanwhile) are forgotten, so they do not keep the careful way on.
        if let Some(first) = deliveries.first() {
            self.attempts
                .retain(|sequence, _| *sequence >= first.sequence);
        }
        if self.attempts.is_empty() {
            match self.apply_in(connection, deliveries, false).await {
                Err(ApplyError::Poison(_)) => {}
                done => return done,
            }
        }
        self.apply_in(connection, deliveries, true).await
    }

    /// [`Applier::apply`], with or without a savepoint around each message; without,
    /// a poison message fails the whole batch (`ApplyError::Poison`, its transaction
    /// rolled back).
    async fn apply_in(
        &mut self,
        connection: &mut PgConnection,
        deliveries: &[Delivery],
        savepoints: bool,
    ) -> Result<BatchOutcome, ApplyError> {
        use sqlx::Connection as _;
        let mut transaction = connection.begin().await?;
        set_search_path(&mut transaction, self.schema).await?;
        let row: Option<(i64, Option<String>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT last_sequence, failure_class, failure_sequence, tableoid::oid::bigint
             FROM projection_checkpoint WHERE projection = $1 FOR UPDATE",
        )
        .bind(self.key)
        .fetch_optional(&mut *transaction)
        .await?;
        // Gone when the projection was rebuilt for another partition count (by a
        // replica configured with another `projection.partitions`): this writer must
        // not apply by its old split.
        let Some((stored, mut previous_failure, mut previous_failure_at, locked_table)) = row
        else {
            return Err(ApplyError::Transient(format!(
                "the projection has no checkpoint {}: it was rebuilt for another partition \
                 count (every replica must run the same projection.partitions)",
                self.key
            )));
        };
        // A rebuild or reset swaps the schema while holding this row: a batch that
        // waited for it got the row of the table swapped out, while its later
        // statements would find the new one by name. Then start the batch again.
        let table_now: i64 =
            sqlx::query_scalar("SELECT 'projection_checkpoint'::regclass::oid::bigint")
                .fetch_one(&mut *transaction)
                .await?;
        if table_now != locked_table {
            return Err(ApplyError::Transient(
                "the projection's schema was swapped during the batch; starting it again".into(),
            ));
        }
        let start = stored.max(0) as u64;
        let mut checkpoint = start;
        let mut stopped_by = None;
        let mut gap = false;
        let mut dead_lettered = 0;
        let mut applied = 0;
        let mut halted = None;
        // The networks of the messages applied or dead-lettered, and the one set now.
        let mut networks = Vec::<&str>::new();
        let mut network_set: Option<&str> = None;
        for delivery in deliveries {
            if delivery.sequence <= checkpoint {
                continue; // redelivered: already applied
            }
            // A projection consumes a whole stream, whose sequences are contiguous
            // (deletes are denied), so a jump means the consumer skipped messages
            // (it was ahead of the checkpoint, or delivered new messages before
            // redelivering unacknowledged ones). Stop; the runner repositions it.
            if self.check_gaps
                && delivery.sequence > checkpoint + 1
                && self.accept_gap_after != Some(checkpoint)
            {
                gap = true;
                break;
            }
            let network = network_of(&delivery.subject);
            // Another partition's message: its writer applies it; this one moves past.
            if let Some((index, count)) = self.partition
                && partition_of(network, count) != index
            {
                checkpoint = delivery.sequence;
                continue;
            }
            // The tenant wall: the message sees and writes only its own network's rows
            // (a commit whose payload names another network than its subject cannot
            // write there). Set outside the savepoint, so it holds for a dead letter too.
            if network_set != Some(network) {
                walls::set_network(&mut transaction, network).await?;
                network_set = Some(network);
            }
            if savepoints {
                sqlx::query("SAVEPOINT apply_one")
                    .execute(&mut *transaction)
                    .await?;
            }
            let result = self.apply_one(&mut transaction, delivery).await;
            match result {
                Ok(()) => {
                    if savepoints {
                        sqlx::query("RELEASE SAVEPOINT apply_one")
                            .execute(&mut *transaction)
                            .await?;
                    }
                    self.attempts.remove(&delivery.sequence);
                    checkpoint = delivery.sequence;
                    networks.push(network);
                    previous_failure = None;
                    previous_failure_at = None;
                    applied += 1;
                }
                Err(
                    error @ (ApplyError::Transient(_)
                    | ApplyError::SchemaTaken { .. }
                    | ApplyError::Wall(_)),
                ) => {
                    return Err(error);
                }
                // Without savepoints nothing of the batch can be kept: dropping the
                // transaction rolls it all back, and the careful way takes over.
                Err(error @ ApplyError::Poison(_)) if !savepoints => return Err(error),
                Err(ApplyError::Poison(reason)) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT apply_one")
                        .execute(&mut *transaction)
                        .await?;
                    let attempts = self.attempts.entry(delivery.sequence).or_insert(0);
                    *attempts += 1;
                    if *attempts < self.max_attempts {
                        tracing::warn!(sequence = delivery.sequence, attempts = *attempts, failure = %failure_class(&reason), "projection failed to apply a message, will retry");
                        stopped_by = Some(ApplyError::Poison(reason));
                        break;
                    }
                    let class = failure_class(&reason);
                    let skipped = self.skipped.contains(&delivery.sequence);
                    if self.halt && !skipped && previous_failure.as_deref() == Some(class.as_str())
                    {
                        // The message right after a dead letter fails the same way, with
                        // nothing applied between: not a bad event but a fault of the
                        // projection (a bug, a schema mismatch). Halt on it rather than
                        // dead-letter the stream one event at a time; its next attempt
                        // decides again.
                        *attempts = self.max_attempts.saturating_sub(1);
                        stopped_by = Some(ApplyError::Poison(reason));
                        halted = Some(delivery.sequence);
                        break;
                    }
                    tracing::error!(sequence = delivery.sequence, failure = %class, "projection gave up on a message: dead-lettered");
                    sqlx::query(
                        "INSERT INTO dead_letters (projection, sequence, subject, error, payload, skipped)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(self.projection.name())
                    .bind(delivery.sequence as i64)
                    .bind(&delivery.subject)
                    .bind(&reason)
                    .bind(&delivery.payload)
                    .bind(skipped)
                    .execute(&mut *transaction)
                    .await?;
                    self.attempts.remove(&delivery.sequence);
                    checkpoint = delivery.sequence;
                    networks.push(network);
                    dead_lettered += 1;
                    // An operator's skip forgot the failure; so does its replay.
                    previous_failure = (!skipped).then_some(class);
                    previous_failure_at = (!skipped).then_some(delivery.sequence as i64);
                }
            }
        }
        networks.sort_unstable();
        networks.dedup();
        if !networks.is_empty() {
            sqlx::query(
                "INSERT INTO networks (network) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&networks)
            .execute(&mut *transaction)
            .await?;
        }
        if checkpoint > start {
            sqlx::query(
                "UPDATE projection_checkpoint
                 SET last_sequence = $2, failure_class = $3, failure_sequence = $4,
                     halted_since = NULL, halted_sequence = NULL, updated_at = now()
                 WHERE projection = $1",
            )
            .bind(self.key)
            .bind(checkpoint as i64)
            .bind(&previous_failure)
            .bind(previous_failure_at)
            .execute(&mut *transaction)
            .await?;
        }
        if let Some(sequence) = halted {
            sqlx::query(
                "UPDATE projection_checkpoint
                 SET halted_since = coalesce(halted_since, now()), halted_sequence = $2
                 WHERE projection = $1",
            )
            .bind(self.key)
            .bind(sequence as i64)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(BatchOutcome {
            checkpoint,
            stopped_by,
            gap,
            dead_lettered,
            applied,
            halted: halted.is_some(),
        })
    }

    async fn apply_one(
        &self,
        connection: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), ApplyError> {
        let commit = <circle_eventstore::wire::Commit as prost::Message>::decode(
            delivery.payload.as_slice(),
        )
        .map_err(|error| ApplyError::Poison(format!("undecodable commit: {error}")))?;
        let stored = StoredCommit {
            sequence: delivery.sequence,
            subject: delivery.subject.clone(),
            commit,
            headers: delivery.headers.clone(),
        };
        // The consumer span of this message: a child of the append that produced it
        // (its context travels in the headers), so the command's trace goes on into
        // every projection and process manager, and into the commands a step issues.
        let span = tracing::info_span!(
            "process",
            otel.name = format!("process {}", self.stream),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            circle.service = self.service,
            messaging.system = "nats",
            messaging.destination.name = self.stream,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.consumer.group.name = self.projection.name(),
            messaging.message.id = delivery.sequence.to_string(),
        );
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let parent = producer_context(&delivery.headers);
            let _ = span.set_parent(parent);
        }
        let applied = self
            .projection
            .apply(connection, &stored)
            .instrument(span.clone())
            .await;
        if applied.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        applied
    }
}

/// The trace context of the append that produced a message, from its headers.
fn producer_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// What applying a batch did.
#[derive(Debug)]
pub struct Applied {
    /// How many of the messages (a prefix) the checkpoint now covers: acknowledge them.
    pub covered: usize,
    /// A message failed and is to be retried after a pause.
    pub retry: Option<ApplyError>,
    /// The consumer skipped sequences: it must be repositioned at the checkpoint.
    pub gap: bool,
    /// The next message failed the same way as the one dead-lettered right before it:
    /// the projection is halted on it (`retry` holds the failure).
    pub halted: bool,
    /// The batch moved the checkpoint (applied or dead-lettered something new).
    pub advanced: bool,
}

/// Makes the server notice within about half a minute that the peer of a session that
/// holds a lock (a projection's writer, a loop's lease) has vanished — a node lost
/// without a FIN or RST — instead of after the system's TCP keepalive (two hours by
/// default), so another replica takes over in time. Every role may set these.
pub(crate) async fn keep_alive_briefly(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000",
    )
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Runs one projection from its durable consumers until shutdown.
///
/// The projection's work is split into `settings.partitions` partitions (one by
/// default). Each partition is applied by one writer at a time, whatever the number
/// of replicas: the writer holds a PostgreSQL advisory lock on a connection and
/// applies its batches on that same connection, so losing the connection loses the
/// lock and the right to write together. The others wait as standbys.
///
/// Unsplit, the writer's connection is its own, held while it writes. Split, a
/// replica holds one connection for the projection (its *session*), whatever the
/// count: a shared "member" lock on it counts the replicas running the projection,
/// the writer locks of the partitions it writes are taken on it, and their batches
/// take turns on it. Each replica writes at most its fair share (the count divided by
/// the members, rounded up), giving up partitions beyond it when a replica joins and
/// taking the partitions of one that left.
pub struct ProjectionRunner<P> {
    partitions: Vec<Partition<P>>,
    shared: Arc<Shared<P>>,
}

/// What a projection's partitions share.
struct Shared<P> {
    projection: Arc<P>,
    database: Database,
    schema: String,
    stream: jetstream::stream::Stream,
    stream_name: String,
    settings: ProjectionSettings,
    /// Each partition's checkpoint as this process knows it.
    positions: watch::Sender<Vec<u64>>,
    health: Health,
    metrics: Metrics,
    /// How many partitions this process writes now.
    led: Arc<std::sync::atomic::AtomicU32>,
    /// How many replicas run the projection, as last counted (1 until counted).
    members: std::sync::atomic::AtomicU32,
    /// A split projection's session: this replica's member lock and the writer locks
    /// of the partitions it writes.
    session: tokio::sync::Mutex<Option<PgConnection>>,
    /// Bumped whenever the session is replaced: a partition whose lock was taken in
    /// an earlier one has lost it.
    generation: AtomicU64,
    /// Whether the tables were brought to the code's shape and partition count (by
    /// the first of the partitions to write; the others wait for it).
    shape_checked: tokio::sync::Mutex<bool>,
}

impl<P> Shared<P> {
    fn count(&self) -> u32 {
        self.settings.partitions.clamp(1, MAX_PARTITIONS)
    }

    /// The shape of the tables this replica's code writes.
    fn shape(&self) -> i32
    where
        P: Projection,
    {
        i32::try_from(self.projection.shape_version()).unwrap_or(i32::MAX)
    }

    /// The most partitions this process should write.
    fn fair_share(&self) -> u32 {
        let members = self
            .members
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        self.count().div_ceil(members)
    }
}

/// One partition of a projection: its writer when this process holds its lock.
struct Partition<P> {
    shared: Arc<Shared<P>>,
    index: u32,
    /// Its checkpoint row and lock ([`partition_key`]).
    key: String,
    attempts: HashMap<u64, u32>,
    /// An unsplit projection's writer connection, while it writes.
    leader: Option<PgConnection>,
    /// A split projection's partition: the session generation its lock was taken in,
    /// while it writes.
    led_in: Option<u64>,
    accept_gap_after: Option<u64>,
    /// Whether this runner, as a writer, has brought the tables to the code's shape.
    shape_checked: bool,
}

const LEADER_POLL: Duration = Duration::from_millis(200);

/// How often a writer checks that it holds no more than its share of the partitions,
/// and how often the members are counted.
const SHARE_CHECK: Duration = Duration::from_secs(1);

impl<P: Projection> ProjectionRunner<P> {
    /// Prepares the schema and tables as the owner — the migration: tables, walls,
    /// grants — and refuses a runtime role that owns any of them; the consumers are
    /// created when [`Self::run`] starts. Everything after runs as the runtime role.
    pub async fn new(
        projection: Arc<P>,
        database: &Database,
        schema: &str,
        stream: jetstream::stream::Stream,
        settings: ProjectionSettings,
    ) -> Result<Self, ApplyError> {
        let count = partitions_for(projection.as_ref(), settings.partitions);
        let settings = ProjectionSettings {
            partitions: count,
            ..settings
        };
        prepare(projection.as_ref(), database, schema, count).await?;
        let rows: HashMap<String, i64> = checkpoint_rows(&database.pool, schema, projection.name())
            .await?
            .into_iter()
            .collect();
        let keys: Vec<String> = (0..count)
            .map(|index| partition_key(projection.name(), index, count))
            .collect();
        let lowest_row = rows.values().copied().min().unwrap_or(0).max(0) as u64;
        let start = keys
            .iter()
            .map(|key| rows.get(key).map_or(lowest_row, |at| (*at).max(0) as u64))
            .collect();
        let (positions, _) = watch::channel(start);
        let stream_name = stream.cached_info().config.name.clone();
        let health = Health::new(projection.name(), count);
        let metrics = Metrics::new(
            &health,
            &stream_name,
            projection.process_manager(),
            &settings.service,
        );
        let shared = Arc::new(Shared {
            projection,
            database: database.clone(),
            schema: schema.to_owned(),
            stream,
            stream_name,
            settings,
            positions,
            health,
            metrics,
            led: Arc::default(),
            members: std::sync::atomic::AtomicU32::new(1),
            session: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            shape_checked: tokio::sync::Mutex::new(false),
        });
        let partitions = keys
            .into_iter()
            .enumerate()
            .map(|(index, key)| Partition {
                shared: shared.clone(),
                index: index as u32,
                key,
                attempts: HashMap::new(),
                leader: None,
                led_in: None,
                accept_gap_after: None,
                shape_checked: false,
            })
            .collect();
        Ok(Self { partitions, shared })
    }

    pub fn handle(&self) -> ProjectionHandle {
        let shared = &self.shared;
        ProjectionHandle {
            name: shared.projection.name().to_owned(),
            schema: shared.schema.clone(),
            pool: shared.database.pool.clone(),
            position: shared.positions.subscribe(),
            stream: shared.stream.clone(),
            led: shared.led.clone(),
        }
    }

    /// Whether the runner is halted, and how far behind it is (see [`Health`]).
    pub fn health(&self) -> Health {
        self.shared.health.clone()
    }

    /// Tries once to become the writer of the first partition.
    pub async fn try_lead(&mut self) -> Result<bool, ApplyError> {
        self.partitions[0].try_lead().await
    }

    /// The first partition's durable consumer (see [`Partition::consumer`]).
    pub async fn consumer(&mut self) -> Result<pull::Stream, ApplyError> {
        self.partitions[0].consumer().await
    }

    /// Takes what is available now, up to the batch size, waiting for the first.
    pub async fn next_batch(
        &self,
        messages: &mut pull::Stream,
    ) -> Result<Vec<jetstream::Message>, ApplyError> {
        self.partitions[0].next_batch(messages).await
    }

    /// Applies a batch as the first partition's writer and commits, without
    /// acknowledging (see [`Partition::apply_batch`]).
    pub async fn apply_batch(
        &mut self,
        messages: &[jetstream::Message],
    ) -> Result<Applied, ApplyError> {
        self.partitions[0].apply_batch(messages).await
    }

    /// Runs until `shutdown` resolves: every partition waits to be written by this
    /// process, then consumes. Failures are retried with backoff; nothing here gives
    /// up. A batch being applied when shutdown comes is committed (and acknowledged)
    /// first: it is one transaction, so it is applied whole or not at all. Meanwhile the
    /// lag is sampled every second (see [`Health`]), and, for a split projection, the
    /// replicas running it are counted.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ApplyError> {
        let shared = self.shared.clone();
        let sampler = sample_lag(
            shared.stream.clone(),
            shared.database.pool.clone(),
            shared.schema.clone(),
            shared.health.clone(),
        );
        let shutdown = shutdown.boxed().shared();
        let consumed = futures::future::try_join_all(
            self.partitions
                .into_iter()
                .map(|partition| partition.consume(shutdown.clone())),
        );
        let membership = async {
            if shared.count() > 1 {
                count_members(&shared).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            consumed = consumed => consumed.map(|_| ()),
            never = sampler => match never {},
            never = membership => match never {},
        }
    }
}

/// The key of the member lock of the projection in `schema` split into `count` with
/// tables of `shape` (a two-key advisory lock: `MEMBER_CLASS`, `hashtext(key)`): its
/// holders are the replicas running it so.
fn member_key(schema: &str, count: u32, shape: i32) -> String {
    format!("circle.projection.members.{schema}.{count}.{shape}")
}

/// Whether replicas run the projection `name` in `schema` with `count` partitions of
/// `shape`: they hold its member lock (split), or its writer lock (unsplit, whatever
/// the shape: a standby of an unsplit projection holds nothing, and would find the rows
/// gone if it came to write).
async fn count_in_use(
    connection: &mut PgConnection,
    schema: &str,
    name: &str,
    count: u32,
    shape: i32,
) -> Result<bool, sqlx::Error> {
    let (class, key, subid) = if count > 1 {
        (Some(MEMBER_CLASS), member_key(schema, count, shape), 2)
    } else {
        (None, format!("circle.projection.{schema}.{name}"), 1)
    };
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = $3
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ($1::bigint IS NULL OR classid::bigint = $1)
           AND objid::bigint = (hashtext($2)::bigint & 4294967295))",
    )
    .bind(class)
    .bind(key)
    .bind(subid)
    .fetch_one(connection)
    .await
}

/// The first key of member locks ("CIRC").
const MEMBER_CLASS: i64 = 1_129_464_387;

impl<P: Projection> Shared<P> {
    /// The session, opened (and this replica made a member) if there is none. A new
    /// session is a new generation: locks taken in an earlier one are gone with it.
    async fn session<'a>(
        &self,
        session: &'a mut Option<PgConnection>,
    ) -> Result<&'a mut PgConnection, ApplyError> {
        if session.is_none() {
            let mut connection = self.database.pool.acquire().await?.detach();
            keep_alive_briefly(&mut connection).await?;
            sqlx::query("SELECT pg_advisory_lock_shared($1::int, hashtext($2))")
                .bind(MEMBER_CLASS as i32)
                .bind(member_key(&self.schema, self.count(), self.shape()))
                .execute(&mut connection)
                .await?;
            self.generation.fetch_add(1, Ordering::SeqCst);
            *session = Some(connection);
        }
        session
            .as_mut()
            .ok_or_else(|| ApplyError::Transient("no session".into()))
    }

    /// Drops the session (its connection may be broken): every lock on it goes.
    fn lose_session(&self, session: &mut Option<PgConnection>) {
        if session.take().is_some() {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Keeps this replica a member of a split projection and counts the members every
/// [`SHARE_CHECK`], forever: the holders of the member lock, one session each. A lost
/// session is made again; meanwhile the last count stays.
async fn count_members<P: Projection>(shared: &Shared<P>) -> std::convert::Infallible {
    let key = member_key(&shared.schema, shared.count(), shared.shape());
    loop {
        let mut session = shared.session.lock().await;
        let counted: Result<i64, ApplyError> = async {
            let connection = shared.session(&mut session).await?;
            // A two-key advisory lock shows its keys as classid and objid (unsigned)
            // with objsubid 2.
            Ok(sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND objsubid = 2
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND classid::bigint = $1
                   AND objid::bigint = (hashtext($2)::bigint & 4294967295)",
            )
            .bind(MEMBER_CLASS)
            .bind(&key)
            .fetch_one(connection)
            .await?)
        }
        .await;
        if counted.is_err() {
            shared.lose_session(&mut session);
        }
        drop(session);
        match counted {
            Ok(members) => {
                let members = u32::try_from(members.max(1)).unwrap_or(u32::MAX);
                let before = shared.members.swap(members, Ordering::Relaxed);
                if before != members {
                    tracing::info!(
                        projection = shared.projection.name(),
                        replicas = members,
                        share = shared.fair_share(),
                        "replicas running the projection counted"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(projection = shared.projection.name(), %error, "cannot count the replicas running the projection, retrying");
            }
        }
        tokio::time::sleep(SHARE_CHECK).await;
    }
}

impl<P: Projection> Partition<P> {
    fn name(&self) -> &str {
        self.shared.projection.name()
    }

    fn count(&self) -> u32 {
        self.shared.count()
    }

    fn split(&self) -> bool {
        self.count() > 1
    }

    fn consumer_name(&self) -> String {
        partition_consumer(self.name(), self.index, self.count())
    }

    fn lock_key(&self) -> String {
        format!("circle.projection.{}.{}", self.shared.schema, self.key)
    }

    /// Whether this replica writes the partition now (a split one's lock is gone when
    /// its session was replaced; the count of partitions written follows).
    fn leads(&mut self) -> bool {
        if !self.split() {
            return self.leader.is_some();
        }
        match self.led_in {
            Some(generation) if generation == self.shared.generation.load(Ordering::SeqCst) => true,
            Some(_) => {
                self.led_in = None;
                self.shared.led.fetch_sub(1, Ordering::Relaxed);
                self.shared.health.set_halted_partition(self.index, false);
                self.shared.health.set_oldest_pending(self.index, None);
                false
            }
            None => false,
        }
    }

    /// Tries once to become the partition's single writer; for a split projection,
    /// only while this process writes fewer partitions than its share.
    async fn try_lead(&mut self) -> Result<bool, ApplyError> {
        if self.leads() {
            return Ok(true);
        }
        let lock_key = self.lock_key();
        if self.split() {
            if self.shared.led.load(Ordering::Relaxed) >= self.shared.fair_share() {
                return Ok(false);
            }
            let shared = self.shared.clone();
            let mut session = shared.session.lock().await;
            // Again under the lock: this replica's partitions try one at a time.
            if shared.led.load(Ordering::Relaxed) >= shared.fair_share() {
                return Ok(false);
            }
            let locked: Result<bool, ApplyError> = async {
                let connection = shared.session(&mut session).await?;
                Ok(
                    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                        .bind(&lock_key)
                        .fetch_one(connection)
                        .await?,
                )
            }
            .await;
            match locked {
                Ok(true) => {
                    self.led_in = Some(shared.generation.load(Ordering::SeqCst));
                    shared.led.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        projection = self.name(),
                        partition = self.index,
                        "writing the partition"
                    );
                    return Ok(true);
                }
                Ok(false) => return Ok(false),
                Err(error) => {
                    shared.lose_session(&mut session);
                    return Err(error);
                }
            }
        }
        let mut connection = self.shared.database.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&lock_key)
            .fetch_one(&mut *connection)
            .await?;
        if locked {
            // The lock lives with the session: keep the connection out of the pool,
            // and let the server see a vanished writer within about half a minute.
            let mut connection = connection.detach();
            if let Err(error) = keep_alive_briefly(&mut connection).await {
                tracing::warn!(projection = self.name(), %error, "cannot shorten the writer session's keepalive");
            }
            self.leader = Some(connection);
            self.shared.led.fetch_add(1, Ordering::Relaxed);
        }
        Ok(locked)
    }

    /// Stops writing after a failure: the connection may be broken, so it goes, and
    /// the lock with it (a split projection's whole session: every partition this
    /// replica writes is competed for again). Whether the partition is halted is the
    /// writer's to say: a replica that no longer writes it is not halted on it.
    async fn lose_lead(&mut self) {
        if self.split() {
            if let Some(generation) = self.led_in {
                let shared = self.shared.clone();
                let mut session = shared.session.lock().await;
                // Not a newer session another partition made meanwhile.
                if shared.generation.load(Ordering::SeqCst) == generation {
                    shared.lose_session(&mut session);
                }
                drop(session);
                self.leads();
            }
        } else if self.leader.take().is_some() {
            self.shared.led.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.health.set_halted_partition(self.index, false);
    }

    /// Gives the partition up when this process writes more than its share (a replica
    /// joined): its lock is released, so a replica under its share takes it within
    /// [`LEADER_POLL`]. Answers whether it gave up.
    async fn give_up_if_over_share(&mut self) -> bool {
        if !self.split() || !self.leads() {
            return false;
        }
        let fair = self.shared.fair_share();
        // One partition gives up at a time: the one that takes the count down.
        let over = self
            .shared
            .led
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |led| {
                (led > fair).then(|| led - 1)
            })
            .is_ok();
        if !over {
            return false;
        }
        self.led_in = None;
        let shared = self.shared.clone();
        let mut session = shared.session.lock().await;
        let unlocked = match session.as_mut() {
            Some(connection) => sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(self.lock_key())
                .execute(connection)
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        if unlocked.is_err() {
            shared.lose_session(&mut session);
        }
        drop(session);
        shared.health.set_halted_partition(self.index, false);
        shared.health.set_oldest_pending(self.index, None);
        tracing::info!(
            projection = self.name(),
            partition = self.index,
            share = fair,
            "gave the partition up to a replica under its share"
        );
        true
    }

    /// The durable consumer; created at the checkpoint if it does not exist yet, and
    /// recreated there if it has delivered past the checkpoint (the messages between
    /// were never applied: a crash before commit, or a database restored from backup).
    async fn consumer(&mut self) -> Result<pull::Stream, ApplyError> {
        let name = self.consumer_name();
        let checkpoint = self.checkpoint().await?;
        let mut consumer: jetstream::consumer::PullConsumer = self
            .shared
            .stream
            .get_or_create_consumer(&name, self.consumer_config(checkpoint))
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?;
        let delivered = consumer
            .info()
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?
            .delivered
            .stream_sequence;
        if delivered > checkpoint {
            self.reposition().await?;
            consumer = self
                .shared
                .stream
                .get_consumer(&name)
                .await
                .map_err(|error| ApplyError::Transient(error.to_string()))?;
        }
        consumer
            .messages()
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))
    }

    /// The partition's own checkpoint row (0 while it has none).
    async fn checkpoint(&self) -> Result<u64, ApplyError> {
        let value: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT last_sequence FROM {}.projection_checkpoint WHERE projection = $1",
            self.shared.schema
        )))
        .bind(&self.key)
        .fetch_optional(&self.shared.database.pool)
        .await?;
        Ok(value.unwrap_or(0).max(0) as u64)
    }

    fn consumer_config(&self, checkpoint: u64) -> pull::Config {
        let settings = &self.shared.settings;
        pull::Config {
            durable_name: Some(self.consumer_name()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: checkpoint + 1,
            },
            ack_policy: AckPolicy::All,
            ack_wait: settings.ack_wait,
            // A backstop only: the runner dead-letters a failing message itself long
            // before the server would stop delivering it.
            max_deliver: i64::from(settings.max_attempts) * 10,
            max_ack_pending: (settings.batch_size * 8) as i64,
            ..Default::default()
        }
    }

    /// Replaces the durable consumer with one that starts right after the checkpoint.
    async fn reposition(&mut self) -> Result<(), ApplyError> {
        let name = self.consumer_name();
        let checkpoint = self.checkpoint().await?;
        tracing::info!(projection = self.name(), consumer = %name, checkpoint, "repositioning the consumer right after the checkpoint");
        let _ = self.shared.stream.delete_consumer(&name).await;
        self.shared
            .stream
            .create_consumer(self.consumer_config(checkpoint))
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?;
        self.accept_gap_after = Some(checkpoint);
        Ok(())
    }

    /// Takes what is available now, up to the batch size, waiting for the first.
    async fn next_batch(
        &self,
        messages: &mut pull::Stream,
    ) -> Result<Vec<jetstream::Message>, ApplyError> {
        let mut batch = Vec::new();
        match messages.next().await {
            Some(Ok(message)) => batch.push(message),
            Some(Err(error)) => return Err(ApplyError::Transient(error.to_string())),
            None => return Err(ApplyError::Transient("consumer closed".into())),
        }
        while batch.len() < self.shared.settings.batch_size {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// Applies a batch and commits, without acknowledging. Waits to become the
    /// partition's writer first if it is not yet.
    async fn apply_batch(
        &mut self,
        messages: &[jetstream::Message],
    ) -> Result<Applied, ApplyError> {
        if self.split() {
            // Its lock may have gone with a replaced session, and another replica may
            // write the partition now: back to competing, not waiting here.
            if !self.try_lead().await? {
                return Err(ApplyError::Transient(
                    "the partition is not written by this replica".into(),
                ));
            }
        } else {
            while !self.try_lead().await? {
                tokio::time::sleep(LEADER_POLL).await;
            }
        }
        let deliveries = messages
            .iter()
            .map(Delivery::from_message)
            .collect::<Result<Vec<_>, _>>()?;
        let shared = self.shared.clone();
        let count = shared.count();
        // A split projection's batches take turns on the replica's session, and only
        // while the partition's lock is still on it.
        let mut session = None;
        if count > 1 {
            let guard = shared.session.lock().await;
            if self.led_in != Some(shared.generation.load(Ordering::SeqCst)) || guard.is_none() {
                drop(guard);
                self.leads();
                return Err(ApplyError::Transient(
                    "the partition's lock went with the session".into(),
                ));
            }
            session = Some(guard);
        }
        let connection = match session.as_mut() {
            Some(guard) => guard.as_mut(),
            None => self.leader.as_mut(),
        };
        let Some(connection) = connection else {
            return Err(ApplyError::Transient("not the projection's writer".into()));
        };
        let mut applier = Applier {
            projection: shared.projection.as_ref(),
            schema: &shared.schema,
            key: &self.key,
            partition: (count > 1).then_some((self.index, count)),
            stream: &shared.stream_name,
            service: &shared.settings.service,
            max_attempts: shared.settings.max_attempts,
            attempts: &mut self.attempts,
            accept_gap_after: self.accept_gap_after,
            check_gaps: true,
            halt: true,
            skipped: &NONE_SKIPPED,
        };
        // The batch's span: a root of its own, linked to the append of every message
        // (each message's span is a child of its append).
        let batch_span = tracing::info_span!(
            parent: None,
            "process batch",
            otel.name = format!("process {}", shared.stream_name),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            circle.service = shared.settings.service.as_str(),
            messaging.system = "nats",
            messaging.destination.name = shared.stream_name.as_str(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.consumer.group.name = shared.projection.name(),
            messaging.batch.message_count = deliveries.len(),
        );
        {
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            for delivery in &deliveries {
                let producer = producer_context(&delivery.headers);
                let producer = producer.span().span_context().clone();
                if producer.is_valid() {
                    batch_span.add_link(producer);
                }
            }
        }
        let applied = applier
            .apply(connection, &deliveries)
            .instrument(batch_span.clone())
            .await;
        if applied
            .as_ref()
            .map_or(true, |outcome| outcome.stopped_by.is_some())
        {
            batch_span.record("otel.status_code", "ERROR");
        }
        let outcome = match applied {
            Ok(outcome) => outcome,
            Err(error) => {
                // The connection may be broken: give up the lock with it and compete
                // again, rather than write on a connection that no longer holds it. A
                // split projection's session is kept when it still answers (the batch
                // failed for another reason, say a rebuild's swap): dropping it would
                // move every partition this replica writes.
                if let Some(guard) = session.as_mut() {
                    use sqlx::Connection as _;
                    let answers = match guard.as_mut() {
                        Some(connection) => {
                            tokio::time::timeout(Duration::from_secs(5), connection.ping())
                                .await
                                .is_ok_and(|pinged| pinged.is_ok())
                        }
                        None => false,
                    };
                    if answers {
                        return Err(error);
                    }
                }
                drop(session);
                self.lose_lead().await;
                return Err(error);
            }
        };
        if outcome.checkpoint > self.accept_gap_after.unwrap_or(u64::MAX) {
            self.accept_gap_after = None;
        }
        let index = self.index as usize;
        let advanced = shared.positions.send_if_modified(|positions| {
            let Some(position) = positions.get_mut(index) else {
                return false;
            };
            let advanced = outcome.checkpoint > *position;
            *position = (*position).max(outcome.checkpoint);
            advanced
        });
        let covered = deliveries
            .iter()
            .take_while(|delivery| delivery.sequence <= outcome.checkpoint)
            .count();
        shared.metrics.applied(outcome.applied);
        shared.metrics.dead_lettered(outcome.dead_lettered);
        if outcome.halted {
            shared.metrics.step("halted", 1);
        } else if outcome.stopped_by.is_some() {
            shared.metrics.step("retried", 1);
        }
        Ok(Applied {
            covered,
            retry: outcome.stopped_by,
            gap: outcome.gap,
            halted: outcome.halted,
            advanced,
        })
    }

    async fn consume(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApplyError> {
        let result = self.consume_until(shutdown).await;
        // Stopped: an unsplit writer's lock goes with its connection; a split one's
        // session goes when the runner does.
        if !self.split() {
            self.lose_lead().await;
        }
        result
    }

    async fn consume_until(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApplyError> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(50);
        let split = self.count() > 1;
        let health = self.shared.health.clone();
        macro_rules! pause {
            () => {{
                tokio::select! { () = &mut shutdown => return Ok(()), () = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }};
        }
        // Brings the tables to the code's shape and partition count before anything is
        // applied (once per runner: its partitions wait for the first to do it); queries
        // read the live tables meanwhile. True once done; false after a pause when it
        // cannot be done yet.
        macro_rules! check_shape {
            () => {{
                if self.shape_checked {
                    true
                } else {
                    let shared = self.shared.clone();
                    let upgraded = tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        upgraded = async {
                            let mut checked = shared.shape_checked.lock().await;
                            if !*checked {
                                upgrade_shape(&shared.database, &shared.schema, shared.projection.as_ref(), &shared.stream, &shared.settings).await?;
                                *checked = true;
                            }
                            Ok::<(), ApplyError>(())
                        } => upgraded,
                    };
                    match upgraded {
                        Ok(()) => {
                            self.shape_checked = true;
                            if let Ok(checkpoint) = self.checkpoint().await {
                                let index = self.index as usize;
                                shared.positions.send_modify(|positions| {
                                    if let Some(position) = positions.get_mut(index) {
                                        *position = checkpoint;
                                    }
                                });
                            }
                            true
                        }
                        Err(error) => {
                            tracing::warn!(projection = self.name(), %error, "cannot bring the tables to the new shape, retrying");
                            pause!();
                            false
                        }
                    }
                }
            }};
        }
        'connect: loop {
            // Split, before competing for a partition (the shape lock keeps the
            // runners apart): a partition held while waiting for older replicas to stop
            // would be written by nobody. Unsplit, as the writer (a replica still
            // running older code holds the writer's lock until it stops).
            if split && !check_shape!() {
                continue 'connect;
            }
            match self.try_lead().await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! { () = &mut shutdown => return Ok(()), () = tokio::time::sleep(LEADER_POLL) => {} }
                    continue 'connect;
                }
                Err(error) => {
                    tracing::warn!(projection = self.name(), %error, "cannot reach PostgreSQL, retrying");
                    pause!();
                    continue 'connect;
                }
            }
            if !split && !check_shape!() {
                continue 'connect;
            }
            let mut messages = tokio::select! {
                () = &mut shutdown => return Ok(()),
                consumer = self.consumer() => match consumer {
                    Ok(messages) => messages,
                    Err(error) => {
                        tracing::warn!(projection = self.name(), %error, "cannot reach the consumer, retrying");
                        pause!();
                        continue 'connect;
                    }
                },
            };
            let mut pending: Vec<jetstream::Message> = Vec::new();
            let mut share_check = tokio::time::interval(SHARE_CHECK);
            share_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            'batches: loop {
                // Its lock went with a replaced session, or it is over its share.
                if split && (!self.leads() || self.give_up_if_over_share().await) {
                    continue 'connect;
                }
                if pending.is_empty() {
                    pending = tokio::select! {
                        // Shutdown first: no new batch once it has come.
                        biased;
                        () = &mut shutdown => return Ok(()),
                        // A split projection's writer looks at its share now and then,
                        // even while its partition is quiet.
                        _ = share_check.tick(), if split => continue 'batches,
                        batch = self.next_batch(&mut messages) => match batch {
                            Ok(batch) => batch,
                            Err(error) => {
                                tracing::warn!(projection = self.name(), %error, "consumer failed, reconnecting");
                                continue 'connect;
                            }
                        },
                    };
                }
                health.set_oldest_pending(self.index, pending.first().and_then(published_nanos));
                match self.apply_batch(&pending).await {
                    Ok(applied) => {
                        if applied.covered > 0 {
                            // Ack-all acknowledges every stream sequence up to the one acked:
                            // ack the highest applied (a redelivery may come last). The
                            // server confirms the ack (one round trip a batch), so a runner
                            // that stops after a batch leaves it committed and acknowledged.
                            let highest = pending[..applied.covered].iter().max_by_key(|message| {
                                message.info().map(|info| info.stream_sequence).unwrap_or(0)
                            });
                            // A batch of redeliveries only (nothing new applied) is acked
                            // without waiting: some servers (2.10.19–2.10.24) do not
                            // answer an ack at or below the consumer's ack floor.
                            let acked = match highest {
                                Some(message) if applied.advanced => message.double_ack().await,
                                Some(message) => message.ack().await,
                                None => Ok(()),
                            };
                            if let Err(error) = acked {
                                tracing::warn!(%error, "ack failed; the batch will be redelivered and skipped");
                            }
                            pending.drain(..applied.covered);
                            health.set_oldest_pending(
                                self.index,
                                pending.first().and_then(published_nanos),
                            );
                        }
                        if applied.gap {
                            if let Err(error) = self.reposition().await {
                                tracing::warn!(projection = self.name(), %error, "cannot reposition the consumer");
                                pause!();
                            }
                            continue 'connect;
                        }
                        if applied.halted {
                            if health.set_halted_partition(self.index, true) {
                                // Its class, not its text: a database's message can quote
                                // the value it refused.
                                let error = applied
                                    .retry
                                    .as_ref()
                                    .map(|error| failure_class(&error.to_string()))
                                    .unwrap_or_default();
                                tracing::error!(
                                    projection = self.name(),
                                    partition = self.index,
                                    stream = %self.shared.stream_name,
                                    sequence = pending.first().and_then(|message| message.info().ok()).map(|info| info.stream_sequence),
                                    %error,
                                    retry_every = ?self.shared.settings.halt_retry,
                                    "projection halted: the event after a dead letter fails the same way, \
                                     so the fault is the projection's, not the event's; nothing more is \
                                     dead-lettered, the checkpoint stays, and the event is tried again \
                                     until it applies"
                                );
                            }
                            tokio::select! {
                                () = &mut shutdown => return Ok(()),
                                () = tokio::time::sleep(self.shared.settings.halt_retry) => {}
                            }
                            continue;
                        }
                        if health.set_halted_partition(self.index, false) {
                            tracing::info!(projection = self.name(), partition = self.index, stream = %self.shared.stream_name, "projection resumed after a halt");
                            // A long halt outlives the consumer's redeliveries (`max_deliver`):
                            // start it afresh right after the checkpoint.
                            if let Err(error) = self.reposition().await {
                                tracing::warn!(projection = self.name(), %error, "cannot reposition the consumer");
                                pause!();
                            }
                            continue 'connect;
                        }
                        if applied.retry.is_some() {
                            pause!();
                        } else {
                            backoff = Duration::from_millis(50);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(projection = self.name(), %error, "batch failed, retrying");
                        pause!();
                        if !self.leads() {
                            continue 'connect;
                        }
                    }
                }
            }
        }
    }
}

/// When a message was published (Unix nanoseconds), from its JetStream metadata.
fn published_nanos(message: &jetstream::Message) -> Option<u64> {
    let info = message.info().ok()?;
    u64::try_from(info.published.unix_timestamp_nanos()).ok()
}

/// How often a runner samples its lag.
const LAG_SAMPLE: Duration = Duration::from_secs(1);

/// Samples the projection's lag into `health` every [`LAG_SAMPLE`], forever: the
/// stream's last sequence minus the checkpoint row (whichever replica writes), and the
/// age of the message right after the checkpoint (the oldest not applied; 0 when
/// caught up). A sample that cannot be taken leaves the last one.
async fn sample_lag(
    stream: jetstream::stream::Stream,
    pool: PgPool,
    schema: String,
    health: Health,
) -> std::convert::Infallible {
    loop {
        if let (Ok(info), Ok(checkpoint)) = (
            stream.get_info().await,
            read_checkpoint(&pool, &schema, health.projection()).await,
        ) {
            let events = info.state.last_sequence.saturating_sub(checkpoint);
            // The age of the oldest message this runner holds unapplied, from its
            // publish time (no read of the stream: a service's NATS user may consume
            // another service's stream but not read its messages one by one). Unknown
            // on a replica that does not write, or before the first fetch: the last
            // sample stays.
            let seconds = if events == 0 {
                Some(0.0)
            } else {
                health.oldest_pending().map(|published| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_nanos());
                    now.saturating_sub(u128::from(published)) as f64 / 1e9
                })
            };
            health.set_lag(events, seconds);
        }
        tokio::time::sleep(LAG_SAMPLE).await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub applied_through: u64,
    /// The messages the rebuild dead-lettered (the rebuilt `dead_letters` holds them; a
    /// count of the table would see none of them through the walls).
    pub dead_letters: u64,
}

/// Replays the whole stream into a fresh copy of the projection's schema, then swaps it
/// in place of the live one in one transaction and drops the old tables. Queries keep
/// reading the live tables until the swap. The live runner's checkpoint row is locked
/// for the final catch-up and the swap, so no message is applied to one copy only.
///
/// The schema work (creating the fresh schema with its walls, the swap, dropping the
/// old tables) is the owner's; the replay runs as the runtime role, under the walls,
/// exactly as the live runner applies.
pub async fn rebuild<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    stream: &jetstream::stream::Stream,
    settings: &ProjectionSettings,
) -> Result<RebuildReport, ApplyError> {
    rebuild_reporting(projection, database, schema, stream, settings, &mut |_| {}).await
}

/// [`rebuild`], telling `progress` the sequence the fresh schema has reached after
/// each batch (`admin::rebuild` shows it to an operator). A split projection's
/// partitions are replayed at once, each on a connection and an ordered consumer of its
/// own; the progress is the lowest of them.
pub(crate) async fn rebuild_reporting<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    stream: &jetstream::stream::Stream,
    settings: &ProjectionSettings,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<RebuildReport, ApplyError> {
    let owner = &database.owner;
    let count = partitions_for(projection, settings.partitions);
    let fresh = format!("{schema}_rebuild");
    let retired = format!("{schema}_retired");
    for old in [&fresh, &retired] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {old} CASCADE"
        )))
        .execute(owner)
        .await?;
    }
    prepare_schema(database, &fresh, projection, count).await?;
    prepare_schema(database, schema, projection, count).await?;
    let stream_name = stream.cached_info().config.name.clone();
    // What an operator skipped the live projection past, network by network (dead
    // letters are walled; the column may be missing in a schema of an older release).
    let mut skipped = std::collections::BTreeSet::new();
    for network in walls::networks(&database.pool, schema).await? {
        let mut transaction = walls::tenant_transaction(&database.pool, &network).await?;
        let here: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT sequence FROM {schema}.dead_letters d
             WHERE projection = $1 AND (to_jsonb(d) ->> 'skipped')::boolean IS TRUE"
        )))
        .bind(projection.name())
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        skipped.extend(here.into_iter().map(|sequence| sequence.max(0) as u64));
    }
    let mut replays = Vec::new();
    for index in 0..count {
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|error| ApplyError::Transient(error.to_string()))?;
        replays.push(Replay {
            index,
            key: partition_key(projection.name(), index, count),
            messages,
            // Out of the pool (closed when the rebuild ends): a rebuild of many
            // partitions must not take every connection of the pool it shares.
            connection: database.pool.acquire().await?.detach(),
            attempts: HashMap::new(),
            rebuilt: 0,
            dead_letters: 0,
        });
    }
    let reached = std::sync::Mutex::new((vec![0u64; count as usize], progress));
    let context = ReplayContext {
        projection,
        schema: &fresh,
        stream: &stream_name,
        settings,
        count,
        skipped: &skipped,
        reached: &reached,
    };
    // Catch up with the live checkpoints without blocking the live runners…
    let live: Vec<(String, i64)> =
        checkpoint_rows(&database.pool, schema, projection.name()).await?;
    catch_up_all(&mut replays, &context, &live).await?;
    // …then lock them, take the last few messages, and swap.
    let mut swap = owner.begin().await?;
    let locked = lock_rows(&mut swap, schema, projection.name()).await?;
    catch_up_all(&mut replays, &context, &locked).await?;
    swap_in(swap, owner, schema, &fresh).await?;
    Ok(RebuildReport {
        applied_through: replays
            .iter()
            .map(|replay| replay.rebuilt)
            .min()
            .unwrap_or(0),
        dead_letters: replays.iter().map(|replay| replay.dead_letters).sum(),
    })
}

/// Catches every partition of a rebuild up, side by side, to where `live` says
/// ([`catch_up_targets`]).
async fn catch_up_all<P: Projection>(
    replays: &mut [Replay],
    context: &ReplayContext<'_, '_, P>,
    live: &[(String, i64)],
) -> Result<(), ApplyError> {
    let targets = catch_up_targets(live, replays);
    futures::future::try_join_all(
        replays
            .iter_mut()
            .zip(targets)
            .map(|(replay, target)| replay.catch_up(context, target)),
    )
    .await?;
    Ok(())
}

/// Locks every checkpoint row of projection `name` in `schema` (in key order, so two
/// lockers never deadlock) for the rest of `transaction`; answers them.
pub(crate) async fn lock_rows(
    transaction: &mut PgConnection,
    schema: &str,
    name: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence FROM {schema}.projection_checkpoint
         WHERE {OF_PROJECTION} ORDER BY projection FOR UPDATE"
    )))
    .bind(name)
    .fetch_all(transaction)
    .await
}

/// Puts schema `fresh` in the place of `schema` in `swap` (which holds the live rows'
/// locks) and commits, then drops the schema it replaced.
pub(crate) async fn swap_in(
    mut swap: sqlx::Transaction<'_, sqlx::Postgres>,
    owner: &PgPool,
    schema: &str,
    fresh: &str,
) -> Result<(), sqlx::Error> {
    let retired = format!("{schema}_retired");
    for statement in [
        format!("ALTER SCHEMA {schema} RENAME TO {retired}"),
        format!("ALTER SCHEMA {fresh} RENAME TO {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *swap)
            .await?;
    }
    swap.commit().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {retired} CASCADE"
    )))
    .execute(owner)
    .await?;
    Ok(())
}

/// How far each partition of a rebuild must get before the swap: its live row's
/// checkpoint when the live rows are of the same partitions (a halted partition's row
/// stays where it is, so the rebuild does not stop on the event it is halted on), and
/// else — a rebuild for a new partition count — the furthest live checkpoint for all.
fn catch_up_targets(live: &[(String, i64)], replays: &[Replay]) -> Vec<u64> {
    let at = |value: i64| value.max(0) as u64;
    let furthest = live.iter().map(|(_, value)| at(*value)).max().unwrap_or(0);
    let same = replays.len() == live.len()
        && replays
            .iter()
            .all(|replay| live.iter().any(|(key, _)| *key == replay.key));
    replays
        .iter()
        .map(|replay| {
            live.iter()
                .find(|(key, _)| same && *key == replay.key)
                .map_or(furthest, |(_, value)| at(*value))
        })
        .collect()
}

/// What a rebuild's partitions share.
struct ReplayContext<'a, 'p, P> {
    projection: &'a P,
    /// The fresh schema.
    schema: &'a str,
    stream: &'a str,
    settings: &'a ProjectionSettings,
    count: u32,
    skipped: &'a std::collections::BTreeSet<u64>,
    /// Where each partition has got to, and whom to tell the lowest.
    #[allow(clippy::type_complexity)]
    reached: &'a std::sync::Mutex<(Vec<u64>, &'p mut (dyn FnMut(u64) + Send))>,
}

/// One partition of a rebuild: the whole stream read in order, its partition's messages
/// applied to the fresh schema.
struct Replay {
    index: u32,
    key: String,
    messages: pull::Ordered,
    connection: PgConnection,
    attempts: HashMap<u64, u32>,
    rebuilt: u64,
    dead_letters: u64,
}

impl Replay {
    async fn catch_up<P: Projection>(
        &mut self,
        context: &ReplayContext<'_, '_, P>,
        target: u64,
    ) -> Result<(), ApplyError> {
        let mut applier = Applier {
            projection: context.projection,
            schema: context.schema,
            key: &self.key,
            partition: (context.count > 1).then_some((self.index, context.count)),
            stream: context.stream,
            service: &context.settings.service,
            max_attempts: context.settings.max_attempts,
            attempts: &mut self.attempts,
            accept_gap_after: None,
            // Off: an ordered consumer cannot skip.
            check_gaps: false,
            // A fault that repeats from event to event would dead-letter the whole
            // stream into the fresh schema, which would then replace a good one: the
            // rebuild stops instead, and the live schema stays. What an operator
            // skipped past is dead-lettered again, not halted on.
            halt: true,
            skipped: context.skipped,
        };
        while self.rebuilt < target {
            let mut batch = Vec::new();
            while batch.len() < context.settings.batch_size {
                let next = if batch.is_empty() {
                    tokio::time::timeout(Duration::from_secs(10), self.messages.next())
                        .await
                        .map_err(|_| ApplyError::Transient("stream read timed out".into()))?
                } else {
                    match self.messages.next().now_or_never() {
                        Some(next) => next,
                        None => break,
                    }
                };
                let message = next
                    .ok_or_else(|| ApplyError::Transient("stream read ended".into()))?
                    .map_err(|error| ApplyError::Transient(error.to_string()))?;
                let delivery = Delivery::from_message(&message)?;
                let last = delivery.sequence >= target;
                batch.push(delivery);
                if last {
                    break;
                }
            }
            // In a rebuild every message is retried in place until applied or
            // dead-lettered: nothing else is waiting behind it.
            let mut remaining = batch.as_slice();
            while !remaining.is_empty() {
                let outcome = applier.apply(&mut self.connection, remaining).await?;
                if outcome.halted {
                    return Err(ApplyError::Poison(format!(
                        "the rebuild failed the same way on consecutive events ({}): the \
                         projection's fault, not the events'; fix it first — the live \
                         schema is unchanged",
                        outcome
                            .stopped_by
                            .as_ref()
                            .map(|error| failure_class(&error.to_string()))
                            .unwrap_or_default()
                    )));
                }
                self.rebuilt = self.rebuilt.max(outcome.checkpoint);
                self.dead_letters += outcome.dead_lettered;
                if let Ok(mut reached) = context.reached.lock() {
                    let (positions, progress) = &mut *reached;
                    if let Some(position) = positions.get_mut(self.index as usize) {
                        *position = self.rebuilt;
                    }
                    let lowest = lowest(positions);
                    progress(lowest);
                }
                let covered = remaining
                    .iter()
                    .take_while(|delivery| delivery.sequence <= outcome.checkpoint)
                    .count();
                remaining = &remaining[covered..];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{failure_class, partition_count_of, partition_key, partition_of};

    #[test]
    fn a_networks_partition_is_stable_and_rows_name_their_count() {
        // Fixed values: the split of every live projection depends on them.
        assert_eq!(partition_of("acme", 1), 0);
        assert_eq!(partition_of("acme", 4), 3);
        assert_eq!(partition_of("acme", 8), 7);
        let spread: std::collections::BTreeSet<u32> = (0..64)
            .map(|index| partition_of(&format!("network-{index}"), 4))
            .collect();
        assert_eq!(spread.len(), 4, "networks fall in every partition");
        assert_eq!(partition_key("tally", 0, 1), "tally");
        assert_eq!(partition_key("tally", 2, 4), "tally@2/4");
        let rows = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect::<Vec<_>>();
        assert_eq!(partition_count_of("tally", &rows(&["tally"])), Some(1));
        assert_eq!(
            partition_count_of("tally", &rows(&["tally@1/2", "tally@0/2"])),
            Some(2)
        );
        assert_eq!(
            partition_count_of("tally", &rows(&["tally@0/2"])),
            None,
            "a set lacking one"
        );
        assert_eq!(
            partition_count_of("tally", &rows(&["tally", "tally@0/2"])),
            None
        );
        assert_eq!(partition_count_of("tally", &[]), None);
    }

    #[test]
    fn failures_differing_only_in_values_are_of_one_class() {
        assert_eq!(
            failure_class(
                r#"error returned from database: duplicate key value violates unique constraint "clinics_pkey" (clinic_id)=(c1) at 12"#
            ),
            failure_class(
                r#"error returned from database: duplicate key value violates unique constraint "clinics_pkey" (clinic_id)=(c22) at 7"#
            ),
        );
        assert_ne!(
            failure_class("error returned from database: injected fault"),
            failure_class("undecodable commit: invalid wire type"),
        );
        assert!(
            !failure_class("value 'Ada Lovelace' refused").contains("Ada"),
            "a class holds nothing of the event"
        );
    }
}
