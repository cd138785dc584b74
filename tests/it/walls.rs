//! The tenant walls in PostgreSQL (row-level security as a second wall behind the
//! queries' own filters): every table of the services' schemas, enumerated from
//! `pg_catalog` so that a table added later is covered too, holds rows of two networks
//! seeded through the services — and the services' database role sees a network's rows
//! only in a transaction that set that network. A service whose runtime role the wall
//! would not hold refuses to start.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use circle_testkit::TestEnv;
use sqlx::{Connection as _, PgConnection};

use crate::accountability::{Circle, circle};
use crate::support::{NETWORK, System, admin, as_caller, as_participant};

/// The second network: seeded by `circle dev`'s demo seed.
const OTHER: &str = circle_cli::demo::NETWORK;

/// The tables without a wall, each with why (the same list as ARCHITECTURE.md and
/// `circle_projection::walls::UNWALLED`; a table added to it must be added here too).
const UNWALLED: [(&str, &str); 2] = [
    (
        "projection_checkpoint",
        "a projection's name, stream position and shape: no tenant's data",
    ),
    (
        "networks",
        "only network ids, which the background loops go through one by one",
    ),
];

/// A table of the services' schemas as `pg_catalog` describes it.
#[derive(Debug)]
struct Table {
    schema: String,
    name: String,
    row_security: bool,
    forced: bool,
    /// The wall policy's command and whether it has USING and WITH CHECK.
    policy: Option<(String, bool, bool)>,
    generated_network: bool,
}

impl Table {
    fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// A row of [`tables`]' catalog query.
type CatalogRow = (String, String, bool, bool, Option<String>, bool, bool, bool);

/// Every ordinary table outside PostgreSQL's own schemas.
async fn tables(admin: &sqlx::PgPool) -> anyhow::Result<Vec<Table>> {
    let rows: Vec<CatalogRow> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                p.polcmd::text, p.polqual IS NOT NULL, p.polwithcheck IS NOT NULL,
                coalesce((SELECT a.attgenerated <> '' FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attname = 'network'), false)
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = 'tenant_wall'
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_%'
         ORDER BY 1, 2",
    )
    .fetch_all(admin)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(schema, name, row_security, forced, command, using, check, generated_network)| {
                Table {
                    schema,
                    name,
                    row_security,
                    forced,
                    policy: command.map(|command| (command, using, check)),
                    generated_network,
                }
            },
        )
        .collect())
}

fn unwalled(table: &Table) -> bool {
    UNWALLED.iter().any(|(name, _)| *name == table.name)
}

/// Rows per network, as the admin (a superuser, whom no wall holds) sees them.
async fn rows_by_network(
    admin: &sqlx::PgPool,
    table: &Table,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT network, count(*) FROM {} GROUP BY network",
        table.qualified()
    )))
    .fetch_all(admin)
    .await?;
    Ok(rows.into_iter().collect())
}

/// `count(*)` of a table as the runtime role, in a transaction of `network` (none:
/// a transaction that set nothing).
async fn count_as_runtime(
    connection: &mut PgConnection,
    table: &str,
    network: Option<&str>,
    filter: &str,
) -> anyhow::Result<i64> {
    let mut transaction = connection.begin().await?;
    if let Some(network) = network {
        circle_projection::set_network(&mut transaction, network).await?;
    }
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} {filter}"
    )))
    .fetch_one(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(count)
}

/// Where the two networks are seeded: every walled table must hold rows of `acme`;
/// these hold rows of the demo network too (the enrollment seed, the sessions the
/// materialiser makes of its schedules, its goals and check-ins).
const OTHER_NETWORK_TABLES: [&str; 8] = [
    "enrollment.groups",
    "enrollment.memberships",
    "sessions_roster.groups",
    "sessions.sessions",
    "accountability_roster.people",
    "accountability.goals",
    "accountability.check_ins",
    "accountability.journals",
];

/// Fills every table: a group's whole life in `acme` through the three services
/// (sessions with attendance, check-ins, notes and amendments; check-ins,
/// encouragement, a setback, a goal, a partnership, quiet hours, nudges and milestones
/// from the clock, an outcome measure on a cadence; an open seat offer; reads the audit logs record), the demo network
/// through `circle dev`'s seed, and one undecodable message per stream on an `acme`
/// subject, which every projection of that stream dead-letters.
async fn seed() -> anyhow::Result<System> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        riley,
    } = circle("2026-11-20T18:00:00Z").await?;
    system
        .accountability
        .set_quiet_hours(admin(pb::SetQuietHoursRequest {
            clinic: format!("networks/{NETWORK}/clinics/north"),
            start_time: "21:00".into(),
            end_time: "08:00".into(),
            request_id: String::new(),
        }))
        .await?;

    // Tuesday's session: attendance, a session check-in, a signed and amended note.
    let session = system.session_on(&group, "2026-11-24")?;
    system.clock.advance(chrono::Duration::days(4));
    system
        .sessions
        .start_session(admin(sessions::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    for participant in [&sam, &jordan] {
        system
            .sessions
            .record_attendance(admin(sessions::RecordAttendanceRequest {
                name: session.clone(),
                participant: participant.clone(),
                status: sessions::AttendanceStatus::Present as i32,
                minutes_attended: 90,
                request_id: String::new(),
            }))
            .await?;
    }
    system
        .sessions
        .record_session_check_in(admin(sessions::RecordSessionCheckInRequest {
            name: session.clone(),
            participant: sam.clone(),
            mood: 6,
            craving: 3,
            share: "Glad to be here.".into(),
            request_id: String::new(),
        }))
        .await?;
    system
        .sessions
        .write_shared_note(as_caller(
            sessions::WriteSharedNoteRequest {
                name: session.clone(),
                text: "We talked about the holidays.".into(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?;
    let note = format!("{session}/notes/shared");
    system
        .sessions
        .sign_note(as_caller(
            sessions::SignNoteRequest {
                name: note.clone(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?;
    system
        .sessions
        .amend_note(as_caller(
            sessions::AmendNoteRequest {
                name: note,
                text: "Correction: and the new year.".into(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?;

    // Between sessions: a shared check-in and encouragement, a setback, a daily goal,
    // a partnership proposed.
    let shared = system
        .accountability
        .submit_check_in(as_participant(
            pb::SubmitCheckInRequest {
                parent: sam.clone(),
                progress: pb::Progress::OnTrack as i32,
                mood: 7,
                craving: 2,
                text: "Ten days, feeling steady.".into(),
                visibility: pb::Visibility::Group as i32,
                ..Default::default()
            },
            "sam",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    system
        .accountability
        .encourage(as_participant(
            pb::EncourageRequest {
                check_in: shared.name,
                participant: jordan.clone(),
                reaction: "strong".into(),
                message: "Proud of you".into(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?;
    system
        .accountability
        .report_setback(as_participant(
            pb::ReportSetbackRequest {
                parent: sam.clone(),
                text: "Drank at a wedding.".into(),
                visibility: pb::Visibility::Facilitators as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    system
        .accountability
        .set_goal(as_participant(
            pb::SetGoalRequest {
                parent: sam.clone(),
                text: "Call my sponsor".into(),
                cadence: pb::Cadence::Daily as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    system
        .accountability
        .propose_partnership(as_participant(
            pb::ProposePartnershipRequest {
                participant: sam.clone(),
                invitee: jordan.clone(),
                group: group.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    // An outcome measure on a cadence the facilitator set.
    system
        .accountability
        .set_measurement_cadence(admin(pb::SetMeasurementCadenceRequest {
            participant: sam.clone(),
            instrument: "gad-7".into(),
            every_days: 14,
            request_id: String::new(),
        }))
        .await?;
    system
        .accountability
        .submit_measurement(as_participant(
            pb::SubmitMeasurementRequest {
                parent: sam.clone(),
                instrument: "gad-7".into(),
                answers: (1..=7)
                    .map(|item| pb::MeasurementAnswer {
                        item: item.to_string(),
                        option: 1,
                    })
                    .collect(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;

    // An open seat offer: a group of one seat, a waitlist, and the seat freed.
    let small = system
        .enrollment
        .create_group(admin(enrollment::CreateGroupRequest {
            parent: format!("networks/{NETWORK}/clinics/north"),
            group_id: "one-seat".into(),
            group: Some(enrollment::Group {
                display_name: "One seat".into(),
                modality: "process".into(),
                level_of_care: "outpatient".into(),
                capacity: 1,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .group
        .map(|group| group.name)
        .unwrap_or_default();
    let clinic = format!("networks/{NETWORK}/clinics/north");
    let casey = system
        .participant(&clinic, "casey", "Casey", "Moreau")
        .await?;
    system.enroll(&small, &riley).await?;
    system.enroll(&small, &casey).await?;
    system
        .enrollment
        .discharge_participant(admin(enrollment::DischargeParticipantRequest {
            name: format!("{small}/memberships/riley"),
            reason: enrollment::EndReason::Completed as i32,
            request_id: String::new(),
        }))
        .await?;

    // A day later (13:00 in Chicago, outside quiet hours) the goal is missed: a nudge,
    // and a day since the setback, a milestone.
    system.clock.advance(chrono::Duration::hours(25));

    // The demo network, as `circle dev` seeds it.
    let mint = |role: &str, subject: &str, clinics: &[&str]| {
        circle_testkit::token("demo", subject, &[role], clinics)
    };
    circle_cli::demo::seed(&mut system.enrollment, &mint).await?;
    circle_cli::demo::seed_accountability(
        &mut system.enrollment,
        &mut system.accountability,
        &mint,
    )
    .await?;

    // Reads that disclose participants' data, in each service (the session sheet and
    // the board were read while setting up): the accounting's tables.
    system
        .enrollment
        .list_group_members(admin(enrollment::ListGroupMembersRequest {
            parent: group.clone(),
            ..Default::default()
        }))
        .await?;

    // A message no projection can apply, on an acme subject of each stream (the audit
    // streams too).
    let jetstream = system.env.jetstream();
    for (service, aggregate) in [
        ("enrollment", "group"),
        ("sessions", "session"),
        ("accountability", "journal"),
        ("enrollment-audit", "participant"),
        ("sessions-audit", "participant"),
        ("accountability-audit", "participant"),
    ] {
        let subject = format!(
            "{}.{NETWORK}.{aggregate}.undecodable",
            system.env.config.subject_root(service)
        );
        jetstream
            .publish(subject, bytes::Bytes::from_static(b"\xff\xff\xff"))
            .await?
            .await?;
    }
    Ok(system)
}

/// Waits until every walled table holds rows of `acme` and the tables of
/// [`OTHER_NETWORK_TABLES`] rows of the demo network too (the projections dead-letter
/// the undecodable messages last, so then they have applied everything before them).
async fn seeded(env: &TestEnv) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for table in tables(&env.pool).await? {
            if unwalled(&table) {
                continue;
            }
            let rows = rows_by_network(&env.pool, &table).await?;
            if !rows.contains_key(NETWORK) {
                missing.push(format!("{} ({NETWORK})", table.qualified()));
            }
            if OTHER_NETWORK_TABLES.contains(&table.qualified().as_str())
                && !rows.contains_key(OTHER)
            {
                missing.push(format!("{} ({OTHER})", table.qualified()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("tables without the rows seeded: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_no_network_or_another_network_set_the_read_model_tables_return_no_rows()
-> anyhow::Result<()> {
    let mut system = seed().await?;
    seeded(&system.env).await?;
    // Nothing moves while the tables are counted.
    system.stop(Duration::from_secs(30)).await?;
    let env = &system.env;

    let tables = tables(&env.pool).await?;
    let schemas: BTreeSet<&str> = tables.iter().map(|table| table.schema.as_str()).collect();
    assert_eq!(
        schemas,
        BTreeSet::from([
            "accountability",
            "accountability_from_sessions",
            "accountability_integration",
            "accountability_partnership_guard",
            "accountability_roster",
            "circle_vault",
            "enrollment",
            "enrollment_disclosures_accountability",
            "enrollment_disclosures_enrollment",
            "enrollment_disclosures_sessions",
            "enrollment_offer_timers",
            "enrollment_transfers",
            "sessions",
            "sessions_roster",
        ]),
        "the services' schemas, and nothing in public"
    );
    // Each table is walled, or one of the exemptions (in every schema: the runtime's own).
    for table in &tables {
        if unwalled(table) {
            assert!(
                !table.row_security && table.policy.is_none(),
                "{}: an exemption",
                table.qualified()
            );
            continue;
        }
        assert!(
            table.row_security && table.forced,
            "{}: row-level security enabled and forced",
            table.qualified()
        );
        assert_eq!(
            table.policy,
            Some(("*".to_owned(), true, true)),
            "{}: the wall, for every command, on reads (USING) and writes (WITH CHECK)",
            table.qualified()
        );
    }
    let exempt: BTreeSet<&str> = tables
        .iter()
        .filter(|table| !table.row_security)
        .map(|table| table.name.as_str())
        .collect();
    assert_eq!(
        exempt,
        UNWALLED.iter().map(|(name, _)| *name).collect(),
        "the only tables without a wall"
    );

    // As the services' role: one network at a time.
    let mut runtime = env.runtime_pool.acquire().await?;
    let role: (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *runtime)
    .await?;
    assert_eq!(role, ("circle_service".to_owned(), false, false));
    let mut walled = 0;
    for table in tables.iter().filter(|table| !unwalled(table)) {
        let name = table.qualified();
        let rows = rows_by_network(&env.pool, table).await?;
        let own = rows.get(NETWORK).copied().unwrap_or(0);
        let others = rows.get(OTHER).copied().unwrap_or(0);
        assert!(own > 0, "{name}: seeded with {NETWORK}'s rows");
        assert_eq!(
            count_as_runtime(&mut runtime, &name, None, "").await?,
            0,
            "{name}: no network set, no rows (of {rows:?})"
        );
        assert_eq!(
            count_as_runtime(&mut runtime, &name, Some("elsewhere"), "").await?,
            0,
            "{name}: a network without rows set, no rows"
        );
        assert_eq!(
            count_as_runtime(
                &mut runtime,
                &name,
                Some(OTHER),
                &format!("WHERE network = '{NETWORK}'")
            )
            .await?,
            0,
            "{name}: another network set, none of {NETWORK}'s rows"
        );
        assert_eq!(
            count_as_runtime(&mut runtime, &name, Some(OTHER), "").await?,
            others,
            "{name}: another network set, its own rows only"
        );
        assert_eq!(
            count_as_runtime(&mut runtime, &name, Some(NETWORK), "").await?,
            own,
            "{name}: the right network set, its rows"
        );
        // The setting was transaction-local: once set and ended, nothing shows again.
        assert_eq!(
            count_as_runtime(&mut runtime, &name, None, "").await?,
            0,
            "{name}: after a transaction that set a network, none"
        );
        // Writes: nothing to change without the network, and no row moves to another.
        let mut transaction = runtime.begin().await?;
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {name}")))
            .execute(&mut *transaction)
            .await;
        match deleted {
            Ok(done) => assert_eq!(
                done.rows_affected(),
                0,
                "{name}: no network set, nothing to delete"
            ),
            // The key store grants the services no DELETE at all (tombstones stay).
            Err(sqlx::Error::Database(error))
                if name == "circle_vault.data_keys" && error.code().as_deref() == Some("42501") => {
            }
            Err(error) => return Err(error.into()),
        }
        transaction.rollback().await?;
        if !table.generated_network {
            let mut transaction = runtime.begin().await?;
            circle_projection::set_network(&mut transaction, NETWORK).await?;
            let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {name} SET network = '{OTHER}'"
            )))
            .execute(&mut *transaction)
            .await;
            let code = match &moved {
                Err(sqlx::Error::Database(error)) => error.code().map(|code| code.into_owned()),
                _ => None,
            };
            assert_eq!(
                code.as_deref(),
                Some("42501"),
                "{name}: a row cannot be written into another network: {moved:?}"
            );
            transaction.rollback().await?;
        }
        walled += 1;
    }
    assert!(walled >= 30, "{walled} walled tables");

    // What the background loops go through: both networks, in every projection.
    // (The key store is no projection: it keeps no list of networks.)
    for schema in schemas.iter().filter(|schema| **schema != "circle_vault") {
        let networks = circle_projection::networks(&env.runtime_pool, schema).await?;
        assert!(
            networks.contains(&NETWORK.to_owned()),
            "{schema}: {networks:?}"
        );
    }
    for schema in [
        "enrollment_offer_timers",
        "sessions_roster",
        "accountability",
    ] {
        let networks = circle_projection::networks(&env.runtime_pool, schema).await?;
        assert_eq!(networks, [NETWORK, OTHER], "{schema}");
    }
    Ok(())
}

/// Starts the enrollment service with `url` as its runtime role; the error it refuses
/// with.
async fn refusal_to_start(env: &TestEnv, url: String, owner_url: String) -> String {
    let mut config = env.config.clone();
    config.database.url = url;
    config.database.owner_url = owner_url;
    match circle_enrollment::start(&config, std::future::pending()).await {
        Ok(_) => "started".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// A login role of the test server (shared by test runs, like `circle_service`), made
/// by the admin if missing.
async fn role(env: &TestEnv, name: &str, attributes: &str) -> anyhow::Result<String> {
    let url = circle_testkit::replace_user(&env.config.database.owner_url, name, name);
    let mut admin = PgConnection::connect(&env.config.database.owner_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let created = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{name}' {attributes}"
        )))
        .execute(&mut admin)
        .await;
        // Another test process may have made it meanwhile.
        if let Err(sqlx::Error::Database(error)) = &created
            && !matches!(error.code().as_deref(), Some("42710" | "23505"))
        {
            created?;
        }
    }
    Ok(url)
}

#[tokio::test]
async fn a_service_whose_database_role_the_wall_would_not_hold_refuses_to_start()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let owner = env.config.database.owner_url.clone();

    // The admin (a superuser) as the runtime role.
    let error = refusal_to_start(&env, owner.clone(), owner.clone()).await;
    assert!(
        error.contains("refusing to start") && error.contains("superuser"),
        "{error}"
    );

    // A role with BYPASSRLS.
    let bypassing = role(&env, "circle_test_bypassrls", "NOSUPERUSER BYPASSRLS").await?;
    let error = refusal_to_start(&env, bypassing, owner.clone()).await;
    assert!(
        error.contains("refusing to start") && error.contains("BYPASSRLS"),
        "{error}"
    );

    // The owner of the tables (no superuser, no BYPASSRLS) as both roles: it migrates,
    // then is refused as the runtime role of the tables it owns.
    let owning = role(&env, "circle_test_owner", "NOSUPERUSER NOBYPASSRLS").await?;
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&env.pool)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT CREATE ON DATABASE {database} TO circle_test_owner"
    )))
    .execute(&env.pool)
    .await?;
    let error = refusal_to_start(&env, owning.clone(), owning).await;
    assert!(
        error.contains("refusing to start")
            && error.contains("circle_test_owner")
            && error.contains("owns"),
        "{error}"
    );
    Ok(())
}
