//! The audit stream against a real NATS server: records as the projection reads them,
//! one per participant, and a stream that keeps them — no deletes, no purges, the
//! configured retention of at least six years.

use std::time::Duration;

use circle_audit::{AuditLog, AuditSpec, Disclosed, MIN_RETENTION, Purpose, Reading};
use circle_grpc::{Caller, Role};
use circle_testkit::TestEnv;

const SERVICE: &str = "circle.sessions.v1.SessionsService";

fn spec(env: &TestEnv, retention: Duration) -> AuditSpec {
    AuditSpec {
        name: env.config.stream_name("sessions_audit"),
        subject_root: env.config.subject_root("sessions-audit"),
        replicas: 1,
        retention,
        duplicate_window: Duration::from_secs(120),
    }
}

async fn records(env: &TestEnv, spec: &AuditSpec) -> anyhow::Result<Vec<(String, Disclosed)>> {
    let stream = env.jetstream().get_stream(&spec.name).await?;
    let last = stream.get_info().await?.state.last_sequence;
    let mut records = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await?;
        let commit =
            <circle_eventstore::wire::Commit as prost::Message>::decode(message.payload.as_ref())?;
        records.push((
            message.subject.to_string(),
            Disclosed::from_commit(&commit).map_err(anyhow::Error::msg)?,
        ));
    }
    Ok(records)
}

async fn record(
    log: &AuditLog,
    reading: &Reading,
    at: chrono::DateTime<chrono::Utc>,
    participants: &[&str],
) -> anyhow::Result<()> {
    log.record(reading, at, participants)
        .await
        .map_err(|error| anyhow::anyhow!("{error:?}"))
}

#[tokio::test]
async fn a_read_is_recorded_once_per_participant_whose_data_it_disclosed() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let spec = spec(&env, MIN_RETENTION);
    let log = AuditLog::open(env.nats.clone(), spec.clone(), SERVICE).await?;
    let facilitator = Caller::new("acme", "staff-1", &[Role::Facilitator], &["north"]);
    let session = "networks/acme/clinics/north/groups/tue/sessions/s-1";
    let reading = Reading::new(
        &facilitator,
        "GetSession",
        session,
        None,
        Purpose::Treatment,
    );
    let at = "2026-11-24T19:00:00.123456789Z".parse()?;
    record(&log, &reading, at, &["sam", "jordan", "sam"]).await?;

    let recorded = records(&env, &spec).await?;
    let subjects: Vec<&str> = recorded
        .iter()
        .map(|(subject, _)| subject.as_str())
        .collect();
    let root = &spec.subject_root;
    assert_eq!(
        subjects,
        [
            format!("{root}.acme.participant.jordan"),
            format!("{root}.acme.participant.sam")
        ],
        "one record per participant, on a subject of ids only"
    );
    let (_, jordan) = &recorded[0];
    assert_eq!(jordan.participant_id, "jordan");
    assert_eq!(jordan.network, "acme");
    assert_eq!(jordan.actor_id, "staff-1");
    assert_eq!(jordan.actor_roles, ["facilitator"]);
    assert_eq!(jordan.calling_service, "");
    assert_eq!(
        jordan.operation,
        "circle.sessions.v1.SessionsService/GetSession"
    );
    assert_eq!(jordan.resource, session);
    assert_eq!(jordan.purpose, Purpose::Treatment);
    assert!(!jordan.purpose_stated);
    assert_eq!(jordan.trace_id, "", "no trace without OpenTelemetry");
    assert_eq!(
        jordan.at,
        "2026-11-24T19:00:00.123456Z".parse::<chrono::DateTime<chrono::Utc>>()?,
        "to the whole microsecond, as PostgreSQL keeps it"
    );
    assert_eq!(
        recorded[1].1.disclosure_id, jordan.disclosure_id,
        "one read, one disclosure id"
    );

    // Nothing of the caller's own, and nothing when nobody else's data was shown.
    let sam = Caller::new("acme", "sam", &[Role::Participant], &[]);
    let own = Reading::new(
        &sam,
        "GetParticipantTimeline",
        "networks/acme/participants/sam",
        Some(Purpose::Operations),
        Purpose::Treatment,
    );
    record(&log, &own, at, &["sam"]).await?;
    record(&log, &reading, at, &[]).await?;
    assert_eq!(records(&env, &spec).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn the_audit_stream_refuses_deletes_and_purges_and_keeps_the_configured_retention()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let spec = spec(&env, MIN_RETENTION);
    let log = AuditLog::open(env.nats.clone(), spec.clone(), SERVICE).await?;
    let reading = Reading::new(
        &Caller::new("acme", "billing", &[Role::Service], &[]),
        "ExportBilling",
        "networks/acme/clinics/north",
        None,
        Purpose::Payment,
    );
    record(&log, &reading, chrono::Utc::now(), &["sam"]).await?;

    let stream = env.jetstream().get_stream(&spec.name).await?;
    let info = stream.get_info().await?;
    assert_eq!(info.config.max_age, MIN_RETENTION);
    assert!(info.config.deny_delete && info.config.deny_purge);
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert!(
        stream.delete_message(1).await.is_err(),
        "a record cannot be deleted"
    );
    assert!(stream.purge().await.is_err(), "nor the stream purged");
    assert_eq!(stream.get_info().await?.state.messages, 1);

    // A longer retention configured later is taken; one under six years never is.
    let longer = Duration::from_secs(7 * 366 * 86_400);
    AuditLog::open(env.nats.clone(), spec_with(&spec, longer), SERVICE).await?;
    assert_eq!(stream.get_info().await?.config.max_age, longer);
    let shorter = MIN_RETENTION - Duration::from_secs(86_400);
    let refused = AuditLog::open(env.nats.clone(), spec_with(&spec, shorter), SERVICE).await;
    assert!(refused.is_err());
    assert_eq!(stream.get_info().await?.config.max_age, longer);
    Ok(())
}

fn spec_with(spec: &AuditSpec, retention: Duration) -> AuditSpec {
    AuditSpec {
        retention,
        ..spec.clone()
    }
}

#[tokio::test]
async fn an_existing_stream_that_could_lose_records_is_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let spec = spec(&env, MIN_RETENTION);
    env.jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: spec.name.clone(),
            subjects: vec![format!("{}.>", spec.subject_root)],
            max_age: MIN_RETENTION,
            ..Default::default()
        })
        .await?;
    let error = AuditLog::open(env.nats.clone(), spec, SERVICE)
        .await
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("deleting or purging"), "{error}");
    Ok(())
}

#[tokio::test]
async fn an_existing_stream_with_another_duplicate_window_is_refused_or_warned_about()
-> anyhow::Result<()> {
    use circle_eventstore::{Opened, StreamMismatch};
    let env = TestEnv::new().await?;
    let spec = spec(&env, MIN_RETENTION);
    let created = AuditLog::open(env.nats.clone(), spec.clone(), SERVICE).await?;
    assert_eq!(created.opened(), &Opened::Created);
    let equal = AuditLog::open(env.nats.clone(), spec.clone(), SERVICE).await?;
    assert_eq!(
        equal.opened(),
        &Opened::Existing {
            differences: Vec::new()
        }
    );
    assert_eq!(equal.retention_was(), None);

    let other_window = AuditSpec {
        duplicate_window: Duration::from_secs(30),
        ..spec.clone()
    };
    let error = AuditLog::open(env.nats.clone(), other_window.clone(), SERVICE)
        .await
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    for part in [
        format!("stream {}", spec.name),
        "duplicate_window is 120s on the stream but 30s in the configuration".to_owned(),
        "nats.duplicate_window_secs".to_owned(),
    ] {
        assert!(error.contains(&part), "{part:?} in {error}");
    }

    let warned = AuditLog::open_with(
        env.nats.clone(),
        other_window,
        SERVICE,
        StreamMismatch::Warn,
    )
    .await?;
    let Opened::Existing { differences } = warned.opened() else {
        anyhow::bail!("the stream existed");
    };
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].key, "nats.duplicate_window_secs");
    let stream = env.jetstream().get_stream(&spec.name).await?;
    assert_eq!(
        stream.get_info().await?.config.duplicate_window,
        Duration::from_secs(120),
        "warn uses the stream as it is"
    );
    Ok(())
}
