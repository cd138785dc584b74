//! `circle projections list | rebuild NAME | reset NAME | skip NAME`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use circle_projection::admin::{self, Progress};
use serde::Serialize;

use super::catalog::{self, CATALOG, Kind};
use super::{Ops, Refusal, table};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectionLine {
    pub projection: String,
    pub service: String,
    pub kind: Kind,
    pub schema: String,
    pub stream: String,
    /// `None` when its schema has no checkpoint yet (its service has not started).
    pub checkpoint: Option<u64>,
    pub shape_version: Option<u32>,
    pub updated_at: Option<String>,
    /// Whether `circle projections rebuild` and `reset` take it.
    pub rebuildable: bool,
}

/// Every projection of the services, with its checkpoint when the database has one.
pub async fn list(ops: &Ops) -> anyhow::Result<Vec<ProjectionLine>> {
    let checkpoints = admin::checkpoints(&ops.database.owner).await?;
    Ok(CATALOG
        .iter()
        .map(|entry| {
            // A split projection's lowest partition: everything up to it is applied.
            let checkpoint = checkpoints
                .iter()
                .filter(|checkpoint| {
                    admin::projection_of(&checkpoint.projection) == entry.name
                        && checkpoint.schema == entry.schema
                })
                .min_by_key(|checkpoint| checkpoint.last_sequence);
            ProjectionLine {
                projection: entry.name.to_owned(),
                service: entry.service.to_owned(),
                kind: entry.kind,
                schema: entry.schema.to_owned(),
                stream: ops.config.stream_name(entry.stream),
                checkpoint: checkpoint.map(|checkpoint| checkpoint.last_sequence),
                shape_version: checkpoint.map(|checkpoint| checkpoint.shape_version),
                updated_at: checkpoint.map(|checkpoint| checkpoint.updated_at.clone()),
                rebuildable: entry.kind == Kind::ReadModel,
            }
        })
        .collect())
}

pub fn render_list(lines: &[ProjectionLine]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            vec![
                line.projection.clone(),
                line.service.clone(),
                line.kind.as_str().to_owned(),
                line.schema.clone(),
                line.stream.clone(),
                line.checkpoint
                    .map_or_else(|| "-".to_owned(), |checkpoint| checkpoint.to_string()),
            ]
        })
        .collect();
    table::render(
        &[
            "PROJECTION",
            "SERVICE",
            "KIND",
            "SCHEMA",
            "STREAM",
            "CHECKPOINT",
        ],
        &rows,
    )
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rebuilt {
    pub projection: String,
    pub schema: String,
    /// The last sequence the rebuilt tables hold.
    pub applied_through: u64,
    /// Messages the rebuild dead-lettered (in the rebuilt schema's `dead_letters`).
    pub dead_letters: u64,
    pub seconds: f64,
}

/// Rebuilds a read model without downtime (`circle_projection::admin::rebuild`),
/// telling `progress` after each batch.
pub async fn rebuild(
    ops: &Ops,
    name: &str,
    progress: impl FnMut(Progress) + Send,
) -> anyhow::Result<Rebuilt> {
    let entry = catalog::read_model(name, "rebuilding")?;
    let stream = ops.stream(entry.stream).await?.ok_or_else(|| {
        Refusal::not_found(format!(
            "stream {} does not exist yet: nothing to rebuild from",
            ops.config.stream_name(entry.stream)
        ))
    })?;
    let settings = circle_service::projection_settings(&ops.config, entry.service);
    let started = Instant::now();
    let report = crate::dispatch!(entry, |projection| {
        admin::rebuild(
            projection,
            &ops.database,
            entry.schema,
            &stream,
            &settings,
            progress,
        )
        .await
        .with_context(|| format!("rebuilding {name}"))
    })?;
    Ok(Rebuilt {
        projection: name.to_owned(),
        schema: entry.schema.to_owned(),
        applied_through: report.applied_through,
        dead_letters: report.dead_letters,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Empties a read model so its running service replays it from the start
/// (`circle_projection::admin::reset`).
pub async fn reset(ops: &Ops, name: &str) -> anyhow::Result<()> {
    let entry = catalog::read_model(name, "resetting")?;
    let stream = ops.stream(entry.stream).await?;
    crate::dispatch!(entry, |projection| {
        admin::reset(projection, &ops.database, entry.schema, stream.as_ref())
            .await
            .with_context(|| format!("resetting {name}"))
    })
}

/// Dead-letters the message a halted projection is stuck on and moves it past it
/// (`circle_projection::admin::skip_halted`); read models and process managers alike
/// (a process manager then does not issue what that event would have caused).
/// Answers the sequence skipped.
pub async fn skip(ops: &Ops, name: &str) -> anyhow::Result<u64> {
    let entry =
        catalog::find(name).ok_or_else(|| Refusal::not_found(format!("no projection {name}")))?;
    let stream = ops.stream(entry.stream).await?.ok_or_else(|| {
        Refusal::not_found(format!(
            "stream {} does not exist yet: nothing to skip",
            ops.config.stream_name(entry.stream)
        ))
    })?;
    match admin::skip_halted(&ops.database, entry.schema, entry.name, &stream).await {
        Ok(sequence) => Ok(sequence),
        Err(admin::AdminError::NotHalted { .. }) => Err(Refusal::usage(format!(
            "{name} is not halted; nothing to skip (dead letters are retried or discarded with `circle dead-letters`)"
        ))),
        Err(admin::AdminError::NoProjection { .. }) => Err(Refusal::not_found(format!(
            "{name} has no checkpoint yet (its service has not started)"
        ))),
        Err(error) => Err(anyhow::Error::from(error).context(format!("skipping in {name}"))),
    }
}

/// A progress bar for a rebuild: position/total and an ETA, on stderr (hidden when
/// stderr is no terminal).
pub fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, ETA {eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub fn render_rebuilt(rebuilt: &Rebuilt) -> String {
    format!(
        "rebuilt {} (schema {}) through sequence {} in {:.1}s; {} dead letters\n",
        rebuilt.projection,
        rebuilt.schema,
        rebuilt.applied_through,
        rebuilt.seconds,
        rebuilt.dead_letters
    )
}
