//! The process managers' projections: each owns its schema, so rebuilding one leaves
//! the other's tables and checkpoint alone.

use std::collections::BTreeMap;

use circle_projection::{Projection, ProjectionSettings};

use crate::support::Service;

/// Every projection's checkpoint in the database: name → (schema, last sequence).
async fn checkpoints(pool: &sqlx::PgPool) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'projection_checkpoint'",
    )
    .fetch_all(pool)
    .await?;
    let mut checkpoints = BTreeMap::new();
    for schema in schemas {
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT projection, last_sequence FROM {schema}.projection_checkpoint"
        )))
        .fetch_all(pool)
        .await?;
        for (projection, last_sequence) in rows {
            checkpoints.insert(projection, (schema.clone(), last_sequence));
        }
    }
    Ok(checkpoints)
}

async fn rebuild(service: &Service, projection: &impl Projection) -> anyhow::Result<()> {
    let pool = &service.env.pool;
    let schema = checkpoints(pool)
        .await?
        .remove(projection.name())
        .map(|(schema, _)| schema)
        .ok_or_else(|| anyhow::anyhow!("{} has no checkpoint", projection.name()))?;
    let stream = service
        .env
        .jetstream()
        .get_stream(service.env.config.stream_name("enrollment"))
        .await?;
    let settings = ProjectionSettings {
        batch_size: 64,
        ack_wait: std::time::Duration::from_secs(2),
        max_attempts: 3,
        ..Default::default()
    };
    let database = service.env.database().await?;
    circle_projection::rebuild(projection, &database, &schema, &stream, &settings).await?;
    Ok(())
}

#[tokio::test]
async fn rebuilding_one_process_manager_leaves_the_others_tables_and_checkpoint()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    service.group(&clinic, "tuesday", 12).await?;
    service.process_managers_caught_up().await?;
    let before = checkpoints(&service.env.pool).await?;
    let (offer_timers, transfers) = ("enrollment-offer-timers", "enrollment-transfers");
    assert!(
        before[offer_timers].1 > 0 && before[transfers].1 > 0,
        "{before:?}"
    );

    rebuild(&service, &circle_enrollment::process::OfferTimers).await?;
    let after = checkpoints(&service.env.pool).await?;
    assert_eq!(
        after.get(transfers),
        before.get(transfers),
        "the transfers' checkpoint survives a rebuild of the offer timers: {after:?}"
    );

    let transfers_manager = circle_enrollment::process::Transfers {
        commands: std::sync::Arc::new(circle_enrollment::app::Commands::new(
            circle_eventstore::EventStore::open(
                service.env.nats.clone(),
                circle_enrollment::stream_spec(&service.env.config),
            )
            .await?,
            service.env.runtime_pool.clone(),
            service.clock.clone(),
            circle_vault::store::KeyStore::open(
                service.env.database().await?,
                circle_service::master_keys(&service.env.config)?,
            )
            .await?,
            chrono::Duration::hours(i64::from(service.env.config.enrollment.seat_offer_hours)),
        )),
    };
    rebuild(&service, &transfers_manager).await?;
    let after = checkpoints(&service.env.pool).await?;
    assert_eq!(
        after.get(offer_timers),
        before.get(offer_timers),
        "the offer timers' checkpoint survives a rebuild of the transfers: {after:?}"
    );
    let timers_table: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_regclass('{}.offer_timers')::text",
        after[offer_timers].0
    )))
    .fetch_one(&service.env.pool)
    .await?;
    assert!(
        timers_table.is_some(),
        "the offer timers' table is still there"
    );
    Ok(())
}
