//! `circle dead-letters list | show | retry | discard`. A dead letter's payload is a
//! stored commit whose personal fields are sealed; `circle` shows its envelope and the
//! types of its events, never a payload.

use anyhow::Context as _;
use circle_projection::admin::{self, DeadLetter};
use serde::Serialize;

use super::{Ops, Refusal, catalog, table};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetterView {
    pub projection: String,
    pub schema: String,
    pub sequence: u64,
    pub subject: String,
    pub network: String,
    pub error: String,
    pub failed_at: String,
    /// The envelope, when the payload decodes as a commit.
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub actor_role: Option<String>,
    pub request_id: Option<String>,
    pub committed_at: Option<String>,
    pub event_types: Vec<String>,
}

impl DeadLetterView {
    fn of(schema: &str, letter: &DeadLetter) -> Self {
        let commit = letter.commit().ok().map(|stored| stored.commit);
        Self {
            projection: letter.projection.clone(),
            schema: schema.to_owned(),
            sequence: letter.sequence,
            subject: letter.subject.clone(),
            network: letter.network.clone(),
            error: letter.error.clone(),
            failed_at: letter.failed_at.clone(),
            aggregate_type: commit.as_ref().map(|commit| commit.aggregate_type.clone()),
            aggregate_id: commit.as_ref().map(|commit| commit.aggregate_id.clone()),
            actor_role: commit
                .as_ref()
                .and_then(|commit| commit.actor.as_ref())
                .map(|actor| actor.role.clone()),
            request_id: commit.as_ref().map(|commit| commit.request_id.clone()),
            committed_at: commit
                .as_ref()
                .and_then(|commit| commit.committed_at.as_ref())
                .map(super::events::timestamp_text),
            event_types: commit
                .map(|commit| {
                    commit
                        .events
                        .into_iter()
                        .map(|event| event.event_type)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The schema of a projection: the catalogue's, else the one the database shows it in.
async fn schema_of(ops: &Ops, projection: &str) -> anyhow::Result<String> {
    if let Some(entry) = catalog::find(projection) {
        return Ok(entry.schema.to_owned());
    }
    admin::checkpoints(&ops.database.owner)
        .await?
        .into_iter()
        .find(|checkpoint| admin::projection_of(&checkpoint.projection) == projection)
        .map(|checkpoint| checkpoint.schema)
        .ok_or_else(|| {
            Refusal::not_found(format!(
                "no projection {projection}; `circle projections list` shows them"
            ))
        })
}

/// The dead letters of every projection the database holds, or of one.
pub async fn list(ops: &Ops, projection: Option<&str>) -> anyhow::Result<Vec<DeadLetterView>> {
    if let Some(projection) = projection {
        let schema = schema_of(ops, projection).await?;
        let letters = admin::dead_letters(&ops.database, &schema, Some(projection)).await?;
        return Ok(letters
            .iter()
            .map(|letter| DeadLetterView::of(&schema, letter))
            .collect());
    }
    let mut schemas: Vec<String> = admin::checkpoints(&ops.database.owner)
        .await?
        .into_iter()
        .map(|checkpoint| checkpoint.schema)
        .collect();
    schemas.dedup();
    let mut views = Vec::new();
    for schema in schemas {
        let letters = admin::dead_letters(&ops.database, &schema, None).await?;
        views.extend(
            letters
                .iter()
                .map(|letter| DeadLetterView::of(&schema, letter)),
        );
    }
    Ok(views)
}

async fn find(ops: &Ops, projection: &str, sequence: u64) -> anyhow::Result<(String, DeadLetter)> {
    let schema = schema_of(ops, projection).await?;
    let letter = admin::find_dead_letter(&ops.database, &schema, projection, sequence)
        .await?
        .ok_or_else(|| {
            Refusal::not_found(format!(
                "projection {projection} has no dead letter at sequence {sequence}"
            ))
        })?;
    Ok((schema, letter))
}

pub async fn show(ops: &Ops, projection: &str, sequence: u64) -> anyhow::Result<DeadLetterView> {
    let (schema, letter) = find(ops, projection, sequence).await?;
    Ok(DeadLetterView::of(&schema, &letter))
}

/// Applies the dead letter's message through its read model again and deletes it;
/// a failure leaves it (the error says why) — exit 1.
pub async fn retry(ops: &Ops, projection: &str, sequence: u64) -> anyhow::Result<()> {
    let entry = catalog::read_model(projection, "retrying a message of")?;
    find(ops, projection, sequence).await?;
    crate::dispatch!(entry, |implementation| {
        admin::retry_dead_letter(implementation, &ops.database, entry.schema, sequence)
            .await
            .with_context(|| {
                format!("retrying {projection} sequence {sequence}; the dead letter stays")
            })
    })
}

/// Deletes a dead letter: its message's effects stay missing from the projection.
pub async fn discard(ops: &Ops, projection: &str, sequence: u64) -> anyhow::Result<()> {
    let (schema, _) = find(ops, projection, sequence).await?;
    admin::discard_dead_letter(&ops.database, &schema, projection, sequence).await?;
    Ok(())
}

pub fn render_list(views: &[DeadLetterView]) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            vec![
                view.projection.clone(),
                view.sequence.to_string(),
                view.subject.clone(),
                view.failed_at.clone(),
                view.error.chars().take(60).collect(),
            ]
        })
        .collect();
    table::render(
        &["PROJECTION", "SEQUENCE", "SUBJECT", "FAILED AT", "ERROR"],
        &rows,
    )
}

pub fn render_one(view: &DeadLetterView) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    format!(
        "projection     {}\nschema         {}\nsequence       {}\nsubject        {}\nnetwork        {}\n\
         failed at      {}\nerror          {}\naggregate      {} {}\nactor role     {}\n\
         request id     {}\ncommitted at   {}\nevents         {}\n",
        view.projection,
        view.schema,
        view.sequence,
        view.subject,
        view.network,
        view.failed_at,
        view.error,
        or_dash(&view.aggregate_type),
        or_dash(&view.aggregate_id),
        or_dash(&view.actor_role),
        or_dash(&view.request_id),
        or_dash(&view.committed_at),
        if view.event_types.is_empty() {
            "(payload does not decode as a commit)".to_owned()
        } else {
            view.event_types.join(", ")
        }
    )
}
