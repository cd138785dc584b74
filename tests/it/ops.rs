//! The `circle` tool's operator commands (`circle_cli::ops`, what the binary runs)
//! against the running system: status, projections list/rebuild/reset, dead letters
//! (made by a fault injected with a trigger), and decoded events.

use std::sync::{Arc, Mutex};

use circle_cli::ops::status::Health;
use circle_cli::ops::{self, Ops};
use sqlx::PgPool;

use crate::support::{System, eventually};

/// Writes through enrollment that reach every projection of the ENROLLMENT stream
/// (and, through the materialiser, SESSIONS): a clinic, a group, two participants
/// enrolled.
async fn some_writes(system: &mut System) -> anyhow::Result<()> {
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-03-03")
        .await?;
    for (id, given, family) in [
        ("sam", "Samantha", "Quillfeather"),
        ("pat", "Patrice", "Oakhaven"),
    ] {
        let participant = system.participant(&clinic, id, given, family).await?;
        system.enroll(&group, &participant).await?;
    }
    Ok(())
}

/// Waits until `circle status` shows every projection of the services caught up.
pub(crate) async fn caught_up(ops: &Ops) -> anyhow::Result<ops::status::Status> {
    eventually(
        || ops::status::status(ops, 0),
        |status| {
            status
                .projections
                .iter()
                .all(|projection| projection.health == Health::CaughtUp)
        },
    )
    .await
}

/// Every table of `schema` but its checkpoint (whose `updated_at` says when, not
/// what), each as its sorted rows' text: the read model's content.
pub(crate) async fn content(
    pool: &PgPool,
    schema: &str,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = $1 AND tablename <> 'projection_checkpoint' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let mut content = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{schema}\".\"{table}\" t ORDER BY 1"
        )))
        .fetch_all(pool)
        .await?;
        content.push((table, rows));
    }
    Ok(content)
}

/// Damages a read model behind the projection's back: one row of its first table
/// with rows (but `networks`) deleted, so only a real rebuild or replay shows it again.
async fn damage(pool: &PgPool, schema: &str) -> anyhow::Result<()> {
    for (table, rows) in content(pool, schema).await? {
        if table != "networks" && !rows.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM \"{schema}\".\"{table}\"
                 WHERE ctid IN (SELECT ctid FROM \"{schema}\".\"{table}\" LIMIT 1)"
            )))
            .execute(pool)
            .await?;
            return Ok(());
        }
    }
    anyhow::bail!("{schema} has no rows to damage")
}

#[tokio::test]
async fn status_shows_streams_and_every_projection_caught_up_after_writes() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    let status = caught_up(&ops).await?;
    assert!(status.healthy, "{status:#?}");
    let enrollment = status
        .streams
        .iter()
        .find(|stream| stream.stream == system.env.config.stream_name("enrollment"))
        .expect("the enrollment stream is reported");
    assert!(
        enrollment.exists && enrollment.last_sequence >= 5,
        "{enrollment:?}"
    );
    assert!(
        enrollment.consumers >= 5,
        "the services' durable consumers: {enrollment:?}"
    );
    // Every projection of the services, found in the database, mapped to its stream.
    let mut names: Vec<&str> = status
        .projections
        .iter()
        .map(|projection| projection.projection.as_str())
        .collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = ops::catalog::CATALOG
        .iter()
        .map(|entry| entry.name)
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    let roster = status
        .projections
        .iter()
        .find(|projection| projection.projection == "sessions-roster")
        .expect("sessions-roster");
    assert_eq!(roster.checkpoint, enrollment.last_sequence);
    assert_eq!((roster.lag, roster.dead_letters), (Some(0), 0));

    // `projections list` shows the same checkpoints, and which ones may be rebuilt.
    let lines = ops::projections::list(&ops).await?;
    let transfers = lines
        .iter()
        .find(|line| line.projection == "enrollment-transfers")
        .expect("transfers");
    assert!(!transfers.rebuildable);
    assert_eq!(transfers.checkpoint, Some(enrollment.last_sequence));
    Ok(())
}

#[tokio::test]
async fn rebuild_reports_progress_and_leaves_tables_equal_to_the_live_ones() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    caught_up(&ops).await?;
    let pool = system.env.pool.clone();
    for name in [
        "enrollment-read-model",
        "sessions-roster",
        "accountability-roster",
    ] {
        let schema = ops::catalog::find(name).expect("known").schema;
        let live = content(&pool, schema).await?;
        damage(&pool, schema).await?;
        assert_ne!(content(&pool, schema).await?, live);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rebuilt = ops::projections::rebuild(&ops, name, {
            let seen = seen.clone();
            move |progress| {
                if let Ok(mut seen) = seen.lock() {
                    seen.push(progress);
                }
            }
        })
        .await?;
        let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let last_sequence = caught_up(&ops)
            .await?
            .streams
            .iter()
            .find(|stream| stream.stream == system.env.config.stream_name("enrollment"))
            .map(|stream| stream.last_sequence)
            .unwrap_or_default();
        assert_eq!(rebuilt.applied_through, last_sequence, "{rebuilt:?}");
        assert_eq!(rebuilt.dead_letters, 0);
        // Progress from 0 to the end of the stream, never backwards.
        assert_eq!(seen.first().map(|p| p.position), Some(0), "{seen:?}");
        let end = seen.last().expect("progress reported");
        assert_eq!((end.position, end.total), (last_sequence, last_sequence));
        assert!(
            seen.windows(2)
                .all(|pair| pair[0].position <= pair[1].position)
        );
        assert_eq!(content(&pool, schema).await?, live, "{name} rebuilt equal");
    }
    // The live runner writes into the swapped-in schema: a later write shows there.
    let clinic = format!("networks/{}/clinics/north", crate::support::NETWORK);
    system
        .participant(&clinic, "ria", "Ria", "Lindqvist")
        .await?;
    caught_up(&ops).await?;
    let registered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM enrollment.participants WHERE participant_id = 'ria'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(registered, 1);

    // Process managers are never rebuilt (they would issue their commands again);
    // an unknown name is "not found".
    let refused = ops::projections::rebuild(&ops, "enrollment-transfers", |_| {})
        .await
        .expect_err("a process manager is refused");
    assert_eq!(ops::exit_code(&refused), ops::EXIT_USAGE, "{refused:#}");
    assert!(
        format!("{refused}").contains("process manager"),
        "{refused:#}"
    );
    let unknown = ops::projections::rebuild(&ops, "no-such-projection", |_| {})
        .await
        .expect_err("unknown");
    assert_eq!(ops::exit_code(&unknown), ops::EXIT_UNHEALTHY);
    Ok(())
}

#[tokio::test]
async fn a_schema_holding_two_projections_is_neither_rebuilt_nor_reset() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    caught_up(&ops).await?;
    sqlx::query(
        "INSERT INTO sessions_roster.projection_checkpoint (projection, last_sequence)
         VALUES ('someone-else', 0)",
    )
    .execute(&system.env.pool)
    .await?;
    let before = content(&system.env.pool, "sessions_roster").await?;
    let rebuild = ops::projections::rebuild(&ops, "sessions-roster", |_| {})
        .await
        .expect_err("shared schema");
    assert!(
        format!("{rebuild:#}").contains("someone-else"),
        "{rebuild:#}"
    );
    let reset = ops::projections::reset(&ops, "sessions-roster")
        .await
        .expect_err("shared schema");
    assert!(format!("{reset:#}").contains("someone-else"), "{reset:#}");
    assert_eq!(content(&system.env.pool, "sessions_roster").await?, before);
    Ok(())
}

#[tokio::test]
async fn reset_empties_a_read_model_and_the_running_service_replays_it() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    caught_up(&ops).await?;
    let pool = system.env.pool.clone();
    let live = content(&pool, "enrollment").await?;
    damage(&pool, "enrollment").await?;
    ops::projections::reset(&ops, "enrollment-read-model").await?;
    // No new write is needed: the runner's consumer was deleted, and it replays.
    eventually(|| content(&pool, "enrollment"), |now| *now == live).await?;
    caught_up(&ops).await?;
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_shown_retried_after_the_fault_and_discarded() -> anyhow::Result<()>
{
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let ops = Ops::connect(&system.env.config).await?;
    let pool = system.env.pool.clone();
    // A fault in the read model: a profile cannot be stored.
    sqlx::raw_sql(
        "CREATE FUNCTION enrollment.refuse_profiles() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER refuse_profiles BEFORE INSERT ON enrollment.participant_profiles
         FOR EACH ROW EXECUTE FUNCTION enrollment.refuse_profiles();",
    )
    .execute(&pool)
    .await?;
    system
        .participant(&clinic, "sam", "Samantha", "Quillfeather")
        .await?;
    let letters = eventually(
        || ops::dead_letters::list(&ops, Some("enrollment-read-model")),
        |letters| letters.len() == 1,
    )
    .await?;
    let letter = &letters[0];
    assert!(letter.subject.ends_with(".participant.sam"), "{letter:?}");
    assert!(letter.error.contains("injected fault"), "{letter:?}");
    assert_eq!(
        letter.event_types,
        ["circle.enrollment.events.v1.ParticipantRegistered"]
    );
    // Every projection's listing has it too; status is unhealthy.
    assert_eq!(ops::dead_letters::list(&ops, None).await?, letters);
    let status = ops::status::status(&ops, 1000).await?;
    assert!(!status.healthy);
    assert!(status.projections.iter().any(|projection| {
        projection.projection == "enrollment-read-model"
            && projection.health == Health::HasDeadLetters
            && projection.dead_letters == 1
    }));
    // Shown without its personal data.
    let shown = ops::dead_letters::show(&ops, "enrollment-read-model", letter.sequence).await?;
    assert_eq!(&shown, letter);
    let printed = format!(
        "{}{}",
        serde_json::to_string(&shown)?,
        ops::dead_letters::render_one(&shown)
    );
    for secret in ["Samantha", "Quillfeather"] {
        assert!(!printed.contains(secret), "{printed}");
    }

    // Retried while the fault is there: fails, exit 1, the dead letter stays.
    let failed = ops::dead_letters::retry(&ops, "enrollment-read-model", letter.sequence)
        .await
        .expect_err("the fault is still there");
    assert_eq!(ops::exit_code(&failed), ops::EXIT_FAILED);
    assert!(
        format!("{failed:#}").contains("injected fault"),
        "{failed:#}"
    );
    assert_eq!(
        ops::dead_letters::list(&ops, Some("enrollment-read-model")).await?,
        letters
    );
    // Fixed, retried: applied, and the dead letter is gone.
    sqlx::raw_sql(
        "DROP TRIGGER refuse_profiles ON enrollment.participant_profiles;
         DROP FUNCTION enrollment.refuse_profiles();",
    )
    .execute(&pool)
    .await?;
    ops::dead_letters::retry(&ops, "enrollment-read-model", letter.sequence).await?;
    assert!(ops::dead_letters::list(&ops, None).await?.is_empty());
    let profiles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM enrollment.participant_profiles WHERE participant_id = 'sam'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(profiles, 1);
    let missing = ops::dead_letters::retry(&ops, "enrollment-read-model", letter.sequence)
        .await
        .expect_err("gone");
    assert_eq!(ops::exit_code(&missing), ops::EXIT_UNHEALTHY);

    // Another one, discarded.
    sqlx::raw_sql(
        "CREATE FUNCTION enrollment.refuse_profiles() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER refuse_profiles BEFORE INSERT ON enrollment.participant_profiles
         FOR EACH ROW EXECUTE FUNCTION enrollment.refuse_profiles();",
    )
    .execute(&pool)
    .await?;
    system
        .participant(&clinic, "pat", "Patrice", "Oakhaven")
        .await?;
    let letters = eventually(
        || ops::dead_letters::list(&ops, Some("enrollment-read-model")),
        |letters| letters.len() == 1,
    )
    .await?;
    ops::dead_letters::discard(&ops, "enrollment-read-model", letters[0].sequence).await?;
    assert!(ops::dead_letters::list(&ops, None).await?.is_empty());
    // A process manager's dead letter is never retried by circle.
    let refused = ops::dead_letters::retry(&ops, "enrollment-transfers", 1)
        .await
        .expect_err("process manager");
    assert_eq!(ops::exit_code(&refused), ops::EXIT_USAGE);
    Ok(())
}

#[tokio::test]
async fn events_show_decodes_an_aggregate_with_personal_fields_sealed() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    let events = ops::events::show(&ops, "enrollment", "acme/participant/sam", None).await?;
    let registered = events
        .iter()
        .find(|event| event.event_type == "circle.enrollment.events.v1.ParticipantRegistered")
        .expect("registered");
    assert_eq!(registered.actor_role, "network-admin");
    assert!(!registered.request_id.is_empty());
    assert_eq!(registered.fields["home_clinic_id"], "north");
    assert_eq!(
        registered.fields["profile"]["given_name"],
        ops::events::SEALED,
        "{registered:?}"
    );
    let mut printed = serde_json::to_string(&events)?;
    for event in &events {
        printed.push_str(&ops::events::render(event));
    }
    for secret in ["Samantha", "Quillfeather"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    // The tail of the stream decodes the same way.
    let mut tailed = Vec::new();
    ops::events::tail(&ops, "enrollment", 100, false, |event| {
        tailed.push(event);
        true
    })
    .await?;
    assert!(tailed.iter().any(|event| event == registered));
    // A malformed aggregate is a usage error; an unknown one is "not found".
    let malformed = ops::events::show(&ops, "enrollment", "acme/participant", None)
        .await
        .expect_err("malformed");
    assert_eq!(ops::exit_code(&malformed), ops::EXIT_USAGE);
    let unknown = ops::events::show(&ops, "enrollment", "acme/participant/nobody", None)
        .await
        .expect_err("unknown");
    assert_eq!(ops::exit_code(&unknown), ops::EXIT_UNHEALTHY);
    Ok(())
}

#[tokio::test]
async fn events_show_reveals_personal_fields_only_after_recording_the_disclosure()
-> anyhow::Result<()> {
    use circle_audit::Disclosed;
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    some_writes(&mut system).await?;
    let ops = Ops::connect(&system.env.config).await?;
    let audit = system.env.config.stream_name("enrollment_audit");
    let records_before = system
        .env
        .jetstream()
        .get_stream(&audit)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    // A purpose off the list, or an operator that is no id, is a usage error.
    for (operator, purpose) in [("ops-oncall", "curiosity"), ("Jane Doe", "operations")] {
        let refused = ops::events::Reveal::open(&ops, "enrollment", operator, purpose)
            .await
            .err()
            .expect("refused");
        assert_eq!(ops::exit_code(&refused), ops::EXIT_USAGE, "{refused:#}");
    }
    let reveal = ops::events::Reveal::open(&ops, "enrollment", "ops-oncall", "operations").await?;
    let events =
        ops::events::show(&ops, "enrollment", "acme/participant/sam", Some(&reveal)).await?;
    let registered = events
        .iter()
        .find(|event| event.event_type == "circle.enrollment.events.v1.ParticipantRegistered")
        .expect("registered");
    assert_eq!(registered.fields["profile"]["given_name"], "Samantha");
    assert_eq!(registered.fields["profile"]["family_name"], "Quillfeather");
    // Recorded: one record, sam's, the operator as reader, for operations.
    let stream = system.env.jetstream().get_stream(&audit).await?;
    let last = stream.clone().info().await?.state.last_sequence;
    assert_eq!(last, records_before + 1);
    let message = stream.get_raw_message(last).await?;
    let commit = <circle_eventstore::wire::Commit as prost::Message>::decode(message.payload)?;
    let record = Disclosed::from_commit(&commit).map_err(anyhow::Error::msg)?;
    assert_eq!(
        (
            record.participant_id.as_str(),
            record.actor_id.as_str(),
            record.purpose
        ),
        ("sam", "ops-oncall", circle_audit::Purpose::Operations)
    );
    Ok(())
}

#[tokio::test]
async fn demo_seeds_a_network_with_weeks_of_activity_once() -> anyhow::Result<()> {
    use crate::support::NETWORK;
    let mut system = System::start_at("2026-03-02T12:00:00Z").await?;
    let ops = Ops::connect(&system.env.config).await?;
    let mint = |role: &str, subject: &str, clinics: &[&str]| {
        circle_testkit::token(NETWORK, subject, &[role], clinics)
    };
    let size = circle_cli::demo::Size {
        clinics: 2,
        participants: 44,
        weeks: 2,
        start_date: "2026-02-16".parse()?,
    };
    let mut seed = async || {
        circle_cli::demo::seed_network(
            NETWORK,
            &mut system.enrollment,
            &mut system.sessions,
            &mut system.accountability,
            &mint,
            size,
        )
        .await
    };
    let seeded = seed().await?;
    // Two groups a clinic of capacity 10, 11 members each: one waits in each.
    assert_eq!(
        (seeded.clinics, seeded.groups, seeded.participants),
        (2, 4, 44)
    );
    assert_eq!((seeded.active, seeded.waitlisted), (40, 4));
    assert_eq!(seeded.check_ins, 80);
    // Two sessions a group held, each with its ten members' attendance.
    assert_eq!((seeded.sessions_held, seeded.attendance_records), (8, 80));
    let status = caught_up(&ops).await?;
    let closed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions.sessions WHERE state = 'closed'")
            .fetch_one(&system.env.pool)
            .await?;
    assert_eq!(closed, 8);
    // Seeding again changes nothing in the logs it writes to.
    let last = |status: &ops::status::Status, service: &str| {
        status
            .streams
            .iter()
            .find(|stream| stream.stream == system.env.config.stream_name(service))
            .map(|stream| stream.last_sequence)
    };
    let before = (last(&status, "enrollment"), last(&status, "sessions"));
    assert_eq!(seed().await?, seeded);
    let again = caught_up(&ops).await?;
    assert_eq!(
        (last(&again, "enrollment"), last(&again, "sessions")),
        before
    );
    Ok(())
}

/// A rebuild of a projection of many events (the accounting of disclosures of
/// ENROLLMENT_AUDIT, fed by the audit log itself) finishes with progress to the end and
/// tables equal to the live ones. 5,000 events by default;
/// `CIRCLE_OPS_REBUILD_EVENTS=100000` for the size (its timing is printed).
#[tokio::test]
async fn rebuild_of_a_large_projection_reports_progress_and_equals_the_live_one()
-> anyhow::Result<()> {
    let events: usize = std::env::var("CIRCLE_OPS_REBUILD_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5_000);
    let system = System::start_at("2026-03-02T12:00:00Z").await?;
    let config = &system.env.config;
    let audit = circle_audit::AuditLog::open(
        system.env.nats.clone(),
        circle_service::audit_spec(config, "enrollment"),
        &circle_service::api_name("enrollment"),
    )
    .await?;
    let caller = circle_auth::Caller::new(
        crate::support::NETWORK,
        "staff-1",
        &[circle_auth::Role::Facilitator],
        &["north"],
    );
    let reading = circle_audit::Reading::new(
        &caller,
        "GetParticipant",
        "networks/acme/participants/many",
        None,
        circle_audit::Purpose::Treatment,
    );
    let written = std::time::Instant::now();
    let mut done = 0;
    while done < events {
        let batch: Vec<String> = (done..(done + 1_000).min(events))
            .map(|index| format!("p-{index}"))
            .collect();
        audit
            .record(
                &reading,
                circle_calendar::Clock::now(system.clock.as_ref()),
                &batch,
            )
            .await
            .map_err(|error| anyhow::anyhow!("{error:?}"))?;
        done += batch.len();
    }
    eprintln!("{events} audit records written in {:?}", written.elapsed());
    let ops = Ops::connect(config).await?;
    // The live runner applies them first: allow it time in proportion.
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_secs(15 + (events / 200) as u64);
    let status = loop {
        let status = ops::status::status(&ops, 0).await?;
        if status.healthy {
            break status;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not caught up: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let applied = std::time::Instant::now();
    let name = "enrollment-disclosures-enrollment";
    let live_checkpoint = status
        .projections
        .iter()
        .find(|projection| projection.projection == name)
        .map(|projection| projection.checkpoint);
    assert_eq!(live_checkpoint, Some(events as u64));
    let schema = ops::catalog::find(name).expect("known").schema;
    let pool = system.env.pool.clone();
    let live = content(&pool, schema).await?;
    damage(&pool, schema).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rebuilt = ops::projections::rebuild(&ops, name, {
        let seen = seen.clone();
        move |progress| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(progress);
            }
        }
    })
    .await?;
    eprintln!(
        "rebuilt {name}: {} events in {:.1}s ({:.0} events/s; live caught up {:?} before)",
        rebuilt.applied_through,
        rebuilt.seconds,
        rebuilt.applied_through as f64 / rebuilt.seconds.max(0.001),
        applied.elapsed()
    );
    let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
    assert_eq!(rebuilt.applied_through, events as u64);
    assert!(seen.len() > 2, "progress after each batch: {}", seen.len());
    let end = seen.last().expect("progress");
    assert_eq!((end.position, end.total), (events as u64, events as u64));
    assert_eq!(content(&pool, schema).await?, live);
    Ok(())
}
