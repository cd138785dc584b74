//! Operations on projections for an operator (the `circle` tool): where each
//! projection is, its dead letters, a rebuild that reports its progress, a reset, and
//! retrying or discarding a dead letter. Everything here runs next to live runners in
//! other processes and keeps to the runtime's rules: schema work as the owner, rows
//! as the runtime role under the walls, one network per transaction, and the live
//! checkpoint row locked whenever a write must not interleave with the runner's.

use async_nats::jetstream;
use circle_eventstore::StoredCommit;
use sqlx::PgPool;

use crate::ApplyError;
use crate::runner::{self, Projection, ProjectionSettings, RebuildReport};
use crate::walls::{self, Database};

/// A projection's checkpoint row, as the database shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub schema: String,
    pub projection: String,
    pub last_sequence: u64,
    pub shape_version: u32,
    /// When the checkpoint last moved (RFC 3339, UTC).
    pub updated_at: String,
    /// Since when the projection is halted on the message after its checkpoint (RFC
    /// 3339, UTC); `None` while it is not.
    pub halted_since: Option<String>,
}

/// The projection a checkpoint row is of: the row's key without its partition
/// (`name@index/count` for a split projection).
pub fn projection_of(key: &str) -> &str {
    key.split('@').next().unwrap_or(key)
}

/// Suffixes of the schemas a rebuild or reset works in: never live.
const WORK_SUFFIXES: [&str; 3] = ["_rebuild", "_retired", "_reset"];

/// Every projection checkpoint of the database: each schema with a
/// `projection_checkpoint` table (but the work schemas of a rebuild or reset under
/// way), and each row of it. Read as the owner (`database.owner_url`); the table holds
/// no tenant's data.
pub async fn checkpoints(owner: &PgPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = 'projection_checkpoint' AND c.relkind IN ('r', 'p')
         ORDER BY 1",
    )
    .fetch_all(owner)
    .await?;
    let mut found = Vec::new();
    for schema in schemas
        .into_iter()
        .filter(|schema| !WORK_SUFFIXES.iter().any(|suffix| schema.ends_with(suffix)))
    {
        // `halted_since` through the row's JSON: a schema whose service has not yet
        // run the version that added the column reads as not halted; so does a halt on
        // a sequence that is not the one after the checkpoint (an older release moved
        // the checkpoint on without knowing of the halt).
        let rows: Vec<(String, i64, i32, String, Option<String>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT projection, last_sequence, shape_version,
                    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    CASE WHEN (to_jsonb(c) ->> 'halted_sequence')::bigint = c.last_sequence + 1
                    THEN to_char((to_jsonb(c) ->> 'halted_since')::timestamptz AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                    END
             FROM \"{schema}\".projection_checkpoint c ORDER BY projection"
            )))
            .fetch_all(owner)
            .await?;
        found.extend(rows.into_iter().map(
            |(projection, last_sequence, shape_version, updated_at, halted_since)| Checkpoint {
                schema: schema.clone(),
                projection,
                last_sequence: last_sequence.max(0) as u64,
                shape_version: shape_version.max(0) as u32,
                updated_at,
                halted_since,
            },
        ));
    }
    Ok(found)
}

/// One message a projection gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub projection: String,
    pub sequence: u64,
    pub subject: String,
    pub network: String,
    pub error: String,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub failed_at: String,
    /// The stored message (a commit envelope; its personal fields are sealed).
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// The stored commit, decoded (no personal field opened: they stay sealed).
    pub fn commit(&self) -> Result<StoredCommit, prost::DecodeError> {
        Ok(StoredCommit {
            sequence: self.sequence,
            subject: self.subject.clone(),
            commit: <circle_eventstore::wire::Commit as prost::Message>::decode(
                self.payload.as_slice(),
            )?,
            headers: Default::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The projection has no checkpoint in the schema.
    #[error("schema {schema} holds no checkpoint of projection {projection}")]
    NoProjection { schema: String, projection: String },
    /// The schema holds another projection's checkpoint too: a rebuild or reset swaps
    /// or drops the whole schema, and would take the other one with it.
    #[error(
        "schema {schema} also holds projection {other}; a rebuild or reset replaces the whole \
         schema, so it is refused (give each projection a schema of its own first)"
    )]
    SchemaShared { schema: String, other: String },
    /// Another rebuild or reset (or a runner's rebuild for a new shape) of the schema
    /// is under way.
    #[error("a rebuild of schema {schema} is already under way")]
    Busy { schema: String },
    #[error("projection {projection} has no dead letter at sequence {sequence}")]
    NoDeadLetter { projection: String, sequence: u64 },
    #[error("the stream cannot be read: {0}")]
    Stream(String),
    /// `skip` is for a halted projection only.
    #[error("projection {projection} is not halted; nothing to skip")]
    NotHalted { projection: String },
}

const DEAD_LETTER_COLUMNS: &str = "projection, sequence, subject, network, error,
    to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), payload";

type DeadLetterRow = (String, i64, String, String, String, String, Vec<u8>);

fn dead_letter(
    (projection, sequence, subject, network, error, failed_at, payload): DeadLetterRow,
) -> DeadLetter {
    DeadLetter {
        projection,
        sequence: sequence.max(0) as u64,
        subject,
        network,
        error,
        failed_at,
        payload,
    }
}

/// The dead letters of `schema` (of one projection, or all it holds), oldest sequence
/// first. Dead letters hold tenants' messages and are walled: read as the runtime role,
/// network by network (the schema's `networks` lists each one a dead letter has).
pub async fn dead_letters(
    database: &Database,
    schema: &str,
    projection: Option<&str>,
) -> Result<Vec<DeadLetter>, AdminError> {
    let mut found = Vec::new();
    for network in walls::networks(&database.pool, schema).await? {
        let mut transaction = walls::tenant_transaction(&database.pool, &network).await?;
        let rows: Vec<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM \"{schema}\".dead_letters
             WHERE $1::text IS NULL OR projection = $1"
        )))
        .bind(projection)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        found.extend(rows.into_iter().map(dead_letter));
    }
    found.sort_by(|a, b| (&a.projection, a.sequence).cmp(&(&b.projection, b.sequence)));
    Ok(found)
}

/// One dead letter, if there is one at `sequence`.
pub async fn find_dead_letter(
    database: &Database,
    schema: &str,
    projection: &str,
    sequence: u64,
) -> Result<Option<DeadLetter>, AdminError> {
    Ok(dead_letters(database, schema, Some(projection))
        .await?
        .into_iter()
        .find(|letter| letter.sequence == sequence))
}

/// Forgets a dead letter (the projection stays without that message's effects).
pub async fn discard_dead_letter(
    database: &Database,
    schema: &str,
    projection: &str,
    sequence: u64,
) -> Result<(), AdminError> {
    let letter = find_dead_letter(database, schema, projection, sequence)
        .await?
        .ok_or_else(|| AdminError::NoDeadLetter {
            projection: projection.to_owned(),
            sequence,
        })?;
    let mut transaction = walls::tenant_transaction(&database.pool, &letter.network).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\".dead_letters WHERE projection = $1 AND sequence = $2"
    )))
    .bind(projection)
    .bind(sequence as i64)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// Applies a dead letter's message again through the projection, as the runner does
/// (the schema's `search_path`, the message's network, the runtime role), and deletes
/// the dead letter in the same transaction (and, for the dead letter whose failure its
/// partition's checkpoint row holds, forgets that failure, so a later one is judged
/// afresh by the halt rule); a failure leaves everything as it was. The
/// live checkpoint row is locked meanwhile, so no batch of the runner interleaves. The
/// message lands after the ones the projection applied since: what it does must not
/// depend on coming before them (an insert of what is missing is fine; a retry of an
/// old update over a newer one is for the operator to judge first).
pub async fn retry_dead_letter<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    sequence: u64,
) -> Result<(), AdminError> {
    let letter = find_dead_letter(database, schema, projection.name(), sequence)
        .await?
        .ok_or_else(|| AdminError::NoDeadLetter {
            projection: projection.name().to_owned(),
            sequence,
        })?;
    let stored = letter
        .commit()
        .map_err(|error| ApplyError::Poison(format!("undecodable commit: {error}")))?;
    let mut transaction = database.pool.begin().await?;
    runner::set_search_path(&mut transaction, schema).await?;
    walls::set_network(&mut transaction, &letter.network).await?;
    // The row of the letter's partition (the projection's own when it is not split):
    // its writer is the one that could interleave.
    let key = partition_row(&mut transaction, schema, projection.name(), &letter.network).await?;
    let _locked: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_checkpoint WHERE projection = $1 FOR UPDATE",
    )
    .bind(&key)
    .fetch_one(&mut *transaction)
    .await?;
    // Taken first, under the checkpoint's lock: of two retries (or a retry and a
    // discard) only one finds it, so a message is never applied twice.
    let taken = sqlx::query("DELETE FROM dead_letters WHERE projection = $1 AND sequence = $2")
        .bind(projection.name())
        .bind(sequence as i64)
        .execute(&mut *transaction)
        .await?;
    if taken.rows_affected() == 0 {
        return Err(AdminError::NoDeadLetter {
            projection: projection.name().to_owned(),
            sequence,
        });
    }
    projection.apply(&mut transaction, &stored).await?;
    // The dead letter whose failure the row holds (`failure_sequence`; in a row from
    // before that column, the one at the checkpoint) applies now, so what made it fail
    // is gone: the next failure is not "the same again" and is dead-lettered on its own
    // rather than halting the projection. (An older one's retry says nothing of the
    // newest.)
    // Through the row's JSON: a schema whose service has not yet run the release that
    // added the column reads it as missing. A row whose checkpoint is this dead letter
    // holds this dead letter's failure whatever the column says.
    sqlx::query(
        "UPDATE projection_checkpoint c SET failure_class = NULL
         WHERE projection = $1
           AND ((to_jsonb(c) ->> 'failure_sequence')::bigint = $2 OR last_sequence = $2)",
    )
    .bind(&key)
    .bind(sequence as i64)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// The way out of a halt that two bad events in a row caused (the halt rule cannot
/// tell them from a fault of the projection): dead-letters the message the halted
/// projection is stuck on — the one right after its checkpoint, read from the stream —
/// and moves the checkpoint past it, forgetting the failure, so the next message is
/// judged afresh (a bad one is dead-lettered on its own; if the projection is at fault
/// after all, it halts again on the next one). The live checkpoint row is locked
/// meanwhile, so no batch of the runner interleaves; the runner sees the checkpoint
/// moved and goes on by itself. The dead letter's error names the failure class only.
/// Answers the sequence skipped.
pub async fn skip_halted(
    database: &Database,
    schema: &str,
    projection: &str,
    stream: &jetstream::stream::Stream,
) -> Result<u64, AdminError> {
    let mut transaction = database.pool.begin().await?;
    runner::set_search_path(&mut transaction, schema).await?;
    // Every row of the projection (one per partition when it is split), locked; the
    // first halted one is skipped.
    // (key, checkpoint, failure class, halted on, table oid)
    type Row = (String, i64, Option<String>, Option<i64>, i64);
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence, failure_class,
                CASE WHEN (to_jsonb(c) ->> 'halted_since') IS NOT NULL
                     THEN (to_jsonb(c) ->> 'halted_sequence')::bigint END,
                tableoid::oid::bigint
         FROM projection_checkpoint c WHERE {} ORDER BY projection FOR UPDATE",
        runner::OF_PROJECTION
    )))
    .bind(projection)
    .fetch_all(&mut *transaction)
    .await?;
    if rows.is_empty() {
        return Err(AdminError::NoProjection {
            schema: schema.to_owned(),
            projection: projection.to_owned(),
        });
    }
    let halted_row = rows
        .iter()
        .find(|(_, checkpoint, _, halted_on, _)| *halted_on == Some(checkpoint + 1))
        .or_else(|| rows.first());
    let Some((key, checkpoint, class, halted_on, locked_table)) = halted_row.cloned() else {
        return Err(AdminError::NoProjection {
            schema: schema.to_owned(),
            projection: projection.to_owned(),
        });
    };
    // A rebuild or reset swaps the schema while holding this row: the row locked may
    // be the retired table's, while the statements below would find the new one.
    let table_now: i64 =
        sqlx::query_scalar("SELECT 'projection_checkpoint'::regclass::oid::bigint")
            .fetch_one(&mut *transaction)
            .await?;
    if table_now != locked_table {
        return Err(AdminError::Busy {
            schema: schema.to_owned(),
        });
    }
    // Halted only on the sequence right after the checkpoint (an older release that
    // moved the checkpoint on ended the halt without clearing it).
    let sequence = checkpoint.max(0) as u64 + 1;
    if halted_on != Some(sequence as i64) {
        return Err(AdminError::NotHalted {
            projection: projection.to_owned(),
        });
    }
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|error| AdminError::Stream(error.to_string()))?;
    let network = runner::network_of(&message.subject);
    walls::set_network(&mut transaction, network).await?;
    // The network's dead letters are listed (and counted) only once it is known.
    sqlx::query("INSERT INTO networks (network) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(network)
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO dead_letters (projection, sequence, subject, error, payload, skipped)
         VALUES ($1, $2, $3, $4, $5, true) ON CONFLICT DO NOTHING",
    )
    .bind(projection)
    .bind(sequence as i64)
    .bind(message.subject.as_str())
    .bind(format!(
        "skipped by an operator while the projection was halted on it (failure class {})",
        class.as_deref().unwrap_or("unknown")
    ))
    .bind(message.payload.as_ref())
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE projection_checkpoint
         SET last_sequence = $2, failure_class = NULL, halted_since = NULL,
             halted_sequence = NULL, updated_at = now()
         WHERE projection = $1",
    )
    .bind(&key)
    .bind(sequence as i64)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(sequence)
}

/// How far a rebuild has got: the sequence the fresh schema has reached, and the end
/// of the stream (it may grow while the rebuild runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub position: u64,
    pub total: u64,
}

/// The key of the lock a rebuild holds: the runner's rebuild for a new shape
/// (`runner::upgrade_shape`) takes the same one, so no two rebuilds of a schema run at
/// once.
fn rebuild_lock(schema: &str) -> String {
    format!("circle.projection.shape.{schema}")
}

/// Refuses a schema that lacks the projection's checkpoint or holds another's.
async fn check_owned<P: Projection>(
    projection: &P,
    owner: &PgPool,
    schema: &str,
) -> Result<(), AdminError> {
    let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT projection FROM \"{schema}\".projection_checkpoint ORDER BY projection"
    )))
    .fetch_all(owner)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some("42P01") => {
            AdminError::NoProjection {
                schema: schema.to_owned(),
                projection: projection.name().to_owned(),
            }
        }
        _ => AdminError::Database(error),
    })?;
    if let Some(other) = names
        .iter()
        .find(|name| name.split('@').next() != Some(projection.name()))
    {
        return Err(AdminError::SchemaShared {
            schema: schema.to_owned(),
            other: other.clone(),
        });
    }
    if names.is_empty() {
        return Err(AdminError::NoProjection {
            schema: schema.to_owned(),
            projection: projection.name().to_owned(),
        });
    }
    Ok(())
}

/// Runs `work` holding the schema's rebuild lock (refused at once if someone holds it).
async fn holding_rebuild_lock<T>(
    database: &Database,
    schema: &str,
    work: impl Future<Output = Result<T, AdminError>>,
) -> Result<T, AdminError> {
    // A connection of its own: the lock lives with the session.
    let mut guard = database.owner.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(rebuild_lock(schema))
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        return Err(AdminError::Busy {
            schema: schema.to_owned(),
        });
    }
    let result = work.await;
    // Closing the session releases the lock as well.
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(rebuild_lock(schema))
        .execute(&mut guard)
        .await;
    result
}

/// Rebuilds a projection without downtime ([`crate::rebuild`]: the stream replayed
/// into a fresh schema, then swapped in one transaction while the live runner's
/// checkpoint row is locked; queries read the live tables until then), telling
/// `progress` where it is after each batch. The live runner copes with the swap: it
/// names its schema on every transaction, so its next batch finds the fresh schema,
/// whose checkpoint is at least the live one's, and skips what the rebuild applied.
///
/// Refused for a schema that holds another projection's checkpoint (the swap would
/// take it along) and while another rebuild of the schema runs.
pub async fn rebuild<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    stream: &jetstream::stream::Stream,
    settings: &ProjectionSettings,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<RebuildReport, AdminError> {
    check_owned(projection, &database.owner, schema).await?;
    // The live runners' partition count, whatever the caller's configuration says: a
    // rebuild into another count would leave them without their rows.
    let mut settings = settings.clone();
    settings.partitions = live_partition_count(&database.owner, schema, projection.name())
        .await?
        .unwrap_or(runner::partitions_for(projection, settings.partitions));
    let settings = &settings;
    holding_rebuild_lock(database, schema, async {
        let mut total = last_sequence(stream).await?;
        progress(Progress { position: 0, total });
        let mut report = |position: u64| {
            total = total.max(position);
            progress(Progress { position, total });
        };
        Ok(
            runner::rebuild_reporting(projection, database, schema, stream, settings, &mut report)
                .await?,
        )
    })
    .await
}

async fn last_sequence(stream: &jetstream::stream::Stream) -> Result<u64, AdminError> {
    Ok(stream
        .get_info()
        .await
        .map_err(|error| AdminError::Stream(error.to_string()))?
        .state
        .last_sequence)
}

/// Empties a projection: its schema is replaced (in one transaction, the live
/// checkpoint row locked) by a fresh one with its tables empty, its checkpoint at 0
/// and no dead letters, and its durable consumer is deleted, so the running service's
/// runner reconnects and replays the stream from the start. Until it has caught up,
/// queries see a partial read model ([`rebuild`] is the way without that). Refused, as
/// a rebuild is, for a shared schema or while a rebuild runs. `stream` is `None` when
/// the projection's stream does not exist (yet): there is no consumer to delete.
pub async fn reset<P: Projection>(
    projection: &P,
    database: &Database,
    schema: &str,
    stream: Option<&jetstream::stream::Stream>,
) -> Result<(), AdminError> {
    check_owned(projection, &database.owner, schema).await?;
    let count = live_partition_count(&database.owner, schema, projection.name())
        .await?
        .unwrap_or(1);
    holding_rebuild_lock(database, schema, async {
        let owner = &database.owner;
        let fresh = format!("{schema}_reset");
        let retired = format!("{schema}_retired");
        for old in [&fresh, &retired] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {old} CASCADE"
            )))
            .execute(owner)
            .await?;
        }
        runner::prepare_schema(database, &fresh, projection, count).await?;
        let mut swap = owner.begin().await?;
        runner::lock_rows(&mut swap, schema, projection.name()).await?;
        runner::swap_in(swap, owner, schema, &fresh).await?;
        if let Some(stream) = stream {
            // The runners' pulls fail with "consumer deleted"; they reconnect and make
            // their consumers again right after the checkpoints, now 0.
            for index in 0..count {
                let name = runner::partition_consumer(projection.name(), index, count);
                match stream.delete_consumer(&name).await {
                    Ok(_) => {}
                    Err(error)
                        if matches!(
                            error.kind(),
                            jetstream::stream::ConsumerErrorKind::JetStream(inner)
                                if inner.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
                        ) => {}
                    Err(error) => return Err(AdminError::Stream(error.to_string())),
                }
            }
        }
        Ok(())
    })
    .await
}

/// The partition count of the projection's checkpoint rows in `schema`, if they are
/// one whole set.
async fn live_partition_count(
    owner: &PgPool,
    schema: &str,
    name: &str,
) -> Result<Option<u32>, sqlx::Error> {
    let keys: Vec<String> = runner::checkpoint_rows(owner, &format!("\"{schema}\""), name)
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    Ok(runner::partition_count_of(name, &keys))
}

/// The checkpoint row of the partition `network` belongs to.
async fn partition_row(
    connection: &mut sqlx::PgConnection,
    schema: &str,
    name: &str,
    network: &str,
) -> Result<String, AdminError> {
    let keys: Vec<String> = runner::checkpoint_rows(&mut *connection, schema, name)
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let count =
        runner::partition_count_of(name, &keys).ok_or_else(|| AdminError::NoProjection {
            schema: schema.to_owned(),
            projection: name.to_owned(),
        })?;
    Ok(runner::partition_key(
        name,
        runner::partition_of(network, count),
        count,
    ))
}

/// The number of dead letters of a projection (walled: counted network by network).
pub async fn dead_letter_count(
    database: &Database,
    schema: &str,
    projection: &str,
) -> Result<u64, AdminError> {
    let mut count = 0;
    for network in walls::networks(&database.pool, schema).await? {
        let mut transaction = walls::tenant_transaction(&database.pool, &network).await?;
        let here: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".dead_letters WHERE projection = $1"
        )))
        .bind(projection)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        count += here.max(0) as u64;
    }
    Ok(count)
}
