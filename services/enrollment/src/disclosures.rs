//! The accounting of disclosures, as enrollment keeps it for `ListDisclosures`: the
//! audit streams of the three services (`<SERVICE>_AUDIT`, each written only by its
//! own service) projected into walled tables, one projection — and so one schema —
//! per stream (`enrollment_disclosures_<service>`), each with one row per record: a
//! participant whose data one read disclosed. The query reads the three together.
//!
//! Enrollment starts first (the others wait for its stream), so the other services'
//! audit streams may not exist yet when it starts: the tables are made at start and
//! each runner starts once its stream exists (`Tasks::projection_of_stream_to_come`).

use std::time::Duration;

use async_nats::jetstream;
use circle_audit::Disclosed;
use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, LagError, Projection};
use sqlx::{PgConnection, PgPool};

/// One service's audit stream and where enrollment projects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The service whose reads the stream records.
    pub service: &'static str,
    pub schema: &'static str,
    /// The projection's name: its durable consumer and its checkpoint.
    pub projection: &'static str,
}

/// Every service's audit stream.
pub const SOURCES: [Source; 3] = [
    Source {
        service: "enrollment",
        schema: "enrollment_disclosures_enrollment",
        projection: "enrollment-disclosures-enrollment",
    },
    Source {
        service: "sessions",
        schema: "enrollment_disclosures_sessions",
        projection: "enrollment-disclosures-sessions",
    },
    Source {
        service: "accountability",
        schema: "enrollment_disclosures_accountability",
        projection: "enrollment-disclosures-accountability",
    },
];

/// The projection of one audit stream (the same tables for each).
pub struct Disclosures {
    pub source: Source,
}

impl Projection for Disclosures {
    fn name(&self) -> &str {
        self.source.projection
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            // One row per participant whose data a read disclosed; ids only.
            "CREATE TABLE IF NOT EXISTS disclosures (
                network text NOT NULL,
                participant_id text NOT NULL,
                disclosure_id text NOT NULL,
                disclosed_at timestamptz NOT NULL,
                actor_id text NOT NULL,
                actor_roles text[] NOT NULL,
                calling_service text NOT NULL,
                operation text NOT NULL,
                resource text NOT NULL,
                purpose text NOT NULL,
                purpose_stated boolean NOT NULL,
                trace_id text NOT NULL,
                sequence bigint NOT NULL,
                PRIMARY KEY (network, participant_id, disclosure_id)
            )",
            "CREATE INDEX IF NOT EXISTS disclosures_by_time
                ON disclosures (network, participant_id, disclosed_at, disclosure_id)",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let record = Disclosed::from_commit(&commit.commit).map_err(ApplyError::Poison)?;
        sqlx::query(
            "INSERT INTO disclosures (network, participant_id, disclosure_id, disclosed_at, actor_id,
                 actor_roles, calling_service, operation, resource, purpose, purpose_stated, trace_id, sequence)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT DO NOTHING",
        )
        .bind(&record.network)
        .bind(&record.participant_id)
        .bind(&record.disclosure_id)
        .bind(record.at)
        .bind(&record.actor_id)
        .bind(&record.actor_roles)
        .bind(&record.calling_service)
        .bind(&record.operation)
        .bind(&record.resource)
        .bind(record.purpose.as_str())
        .bind(record.purpose_stated)
        .bind(&record.trace_id)
        .bind(i64::try_from(commit.sequence).unwrap_or(i64::MAX))
        .execute(connection)
        .await?;
        Ok(())
    }
}

/// Where `ListDisclosures` reads: the audit streams (by name, as the configuration
/// names them) and their projections.
#[derive(Clone)]
pub struct Accounting {
    jetstream: jetstream::Context,
    streams: Vec<(String, Source)>,
}

impl Accounting {
    pub fn new(jetstream: jetstream::Context, config: &circle_config::Config) -> Self {
        Self {
            jetstream,
            streams: SOURCES
                .iter()
                .map(|source| {
                    (
                        circle_service::audit_spec(config, source.service).name,
                        *source,
                    )
                })
                .collect(),
        }
    }

    /// Waits, at most `limit` in all, until every projection has applied everything its
    /// audit stream held when asked: an accounting holds every disclosure recorded
    /// before it was asked for. A stream not created yet holds nothing.
    pub async fn caught_up(&self, pool: &PgPool, limit: Duration) -> Result<(), LagError> {
        let deadline = tokio::time::Instant::now() + limit;
        for (name, source) in &self.streams {
            let stream = match self.jetstream.get_stream(name).await {
                Ok(stream) => stream,
                Err(error)
                    if matches!(
                        error.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(inner)
                            if inner.error_code().0 == STREAM_NOT_FOUND
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(LagError::Stream(error.to_string())),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            circle_projection::wait_for_stream_end(
                pool,
                source.schema,
                source.projection,
                &stream,
                left,
            )
            .await?;
        }
        Ok(())
    }
}

/// JetStream's "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;
