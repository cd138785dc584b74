//! Forgetting a participant across the three services: after `ForgetParticipant`, and
//! after every read model is rebuilt from the log (the services stopped, every read
//! model's schema dropped, the services started again), nothing the participant wrote
//! or that was written about them is anywhere in clear — not in any table (the rebuilt
//! read models, the process managers' checkpoints, the dead letters), not in any
//! message of any stream (the three event streams and the audit streams), not in
//! anything the services logged or any span they opened — while the answers show them
//! redacted and their peer's records are exactly as they were. The nudger, meeting the
//! forgotten participant on its passes, skips them and nudges the peer.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use circle_vault::REDACTED;

use crate::accountability::wait_for_board;
use crate::support;
use crate::support::{NETWORK, System, admin, as_facilitator, as_participant, eventually};

const START: &str = "2026-11-20T18:00:00Z";

/// Everything personal the scene records about Ottoline (`otto`), each string unusual
/// enough that finding it anywhere is a leak.
const OTTO_PROFILE: [&str; 5] = [
    "Ottoline",
    "Featherstonehaugh",
    "Otty-F",
    "ottoline.f@example.net",
    "+1 555 0142",
];
const OTTO_ALIAS: &str = "Comet Heron";
const OTTO_SHARE: &str = "Forty days, the ferry crossing steadied me";
const OTTO_NOTE: &str = "Described a juniper grounding routine";
const OTTO_AMENDMENT: &str = "Correction: the juniper routine is for mornings";
const OTTO_GOAL: &str = "Phone my sponsor from the allotment";
const OTTO_CHECK_IN: &str = "Quiet week tending the allotment";
const OTTO_SETBACK: &str = "Relapsed after the regatta dinner";
/// Written by Pim on Ottoline's check-in: in Ottoline's journal, sealed with her key.
const PIM_TO_OTTO: &str = "Proud of you, allotment champion";
const PIM_REACTION: &str = "lighthouse salute";

/// Pim, the peer whose records must stay as they were (sealed at rest too).
const PIM_PROFILE: [&str; 5] = ["Pimpernel", "Abernathy-Kwok", "", "", ""];
const PIM_SHARE: &str = "Night shifts at the bakery are hard";
const PIM_NOTE: &str = "Spoke about the bakery rota";
const PIM_GOAL: &str = "Walk along the canal at dawn";
const PIM_CHECK_IN: &str = "Canal walk done three times";

fn otto_plaintext() -> Vec<&'static str> {
    let mut all = OTTO_PROFILE.to_vec();
    all.extend([
        OTTO_ALIAS,
        OTTO_SHARE,
        OTTO_NOTE,
        OTTO_AMENDMENT,
        OTTO_GOAL,
        OTTO_CHECK_IN,
        OTTO_SETBACK,
        PIM_TO_OTTO,
        PIM_REACTION,
    ]);
    all
}

fn pim_plaintext() -> Vec<&'static str> {
    vec![
        PIM_PROFILE[0],
        PIM_PROFILE[1],
        PIM_SHARE,
        PIM_NOTE,
        PIM_GOAL,
        PIM_CHECK_IN,
    ]
}

/// Every line the services log and every span they open or close (with its fields),
/// as text: the test's subscriber writes here. It is the default of the test's thread
/// only, and a `#[tokio::test]` runs the services' tasks on that one thread, so it
/// captures this test's services and nothing of any other test in the process.
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn captured() -> MutexGuard<'static, Vec<u8>> {
    CAPTURED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        captured().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures until the guard is dropped. DEBUG and above, every library's included;
/// TRACE is left out (no Circle code logs at TRACE, and the HTTP/2 and NATS clients'
/// frame-by-frame lines would multiply the capture's size).
fn capture_logs_and_spans() -> tracing::subscriber::DefaultGuard {
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_ansi(false)
        .set_default()
}

fn profile(values: [&str; 5]) -> enrollment::ParticipantProfile {
    let [given_name, family_name, preferred_name, email, phone] = values.map(str::to_owned);
    enrollment::ParticipantProfile {
        given_name,
        family_name,
        preferred_name,
        email,
        phone,
    }
}

async fn register(
    system: &mut System,
    clinic: &str,
    participant_id: &str,
    values: [&str; 5],
) -> anyhow::Result<String> {
    Ok(system
        .enrollment
        .register_participant(admin(enrollment::RegisterParticipantRequest {
            parent: format!("networks/{NETWORK}"),
            participant_id: participant_id.into(),
            participant: Some(enrollment::Participant {
                home_clinic: clinic.into(),
                profile: Some(profile(values)),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .participant
        .map(|participant| participant.name)
        .unwrap_or_default())
}

fn utc(text: &str) -> anyhow::Result<prost_types::Timestamp> {
    Ok(prost_types::Timestamp {
        seconds: text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp(),
        nanos: 0,
    })
}

struct Scene {
    system: System,
    group: String,
    session: String,
    otto: String,
    pim: String,
    /// The consistency tokens of the last writes in sessions and accountability.
    sessions_token: String,
    accountability_token: String,
}

/// Ottoline and Pim in one group: profiles and peer consents (Ottoline by an alias), a
/// started session where both are present, shared a check-in and have a member note
/// (Ottoline's signed and amended), and journals with a daily goal and a check-in each;
/// Ottoline also reported a setback and Pim encouraged her check-in. One of Ottoline's
/// setbacks could not be projected (a fault injected into the read model) and was
/// dead-lettered.
async fn scene() -> anyhow::Result<Scene> {
    let mut system = System::start_at(START).await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let otto = register(&mut system, &clinic, "otto", OTTO_PROFILE).await?;
    let pim = register(&mut system, &clinic, "pim", PIM_PROFILE).await?;
    system.peer_consent(&otto, Some(OTTO_ALIAS), true).await?;
    system.peer_consent(&pim, None, true).await?;
    for participant in [&otto, &pim] {
        system.enroll(&group, participant).await?;
    }
    wait_for_board(&system, &group, 2).await?;

    // Sessions: an ad hoc session an hour from now, started, both present.
    let session = system
        .sessions
        .schedule_session(admin(sessions::ScheduleSessionRequest {
            parent: group.clone(),
            session_id: "extra".into(),
            start_time: Some(utc("2026-11-20T19:00:00Z")?),
            duration_minutes: 90,
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .session
        .map(|session| session.name)
        .unwrap_or_default();
    system
        .wait_for_session(&session, |s| s.roster.len() == 2)
        .await?;
    system.clock.advance(chrono::Duration::hours(1));
    system
        .sessions
        .start_session(admin(sessions::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    for (participant, share) in [(&otto, OTTO_SHARE), (&pim, PIM_SHARE)] {
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
        system
            .sessions
            .record_session_check_in(admin(sessions::RecordSessionCheckInRequest {
                name: session.clone(),
                participant: participant.clone(),
                mood: 6,
                craving: 3,
                share: share.into(),
                request_id: String::new(),
            }))
            .await?;
    }
    let mut notes = Vec::new();
    for (participant, text) in [(&otto, OTTO_NOTE), (&pim, PIM_NOTE)] {
        let note = system
            .sessions
            .write_member_note(as_facilitator(sessions::WriteMemberNoteRequest {
                name: session.clone(),
                participant: participant.clone(),
                text: text.into(),
                request_id: String::new(),
            }))
            .await?
            .into_inner()
            .note
            .unwrap_or_default();
        notes.push(note.name);
    }
    system
        .sessions
        .sign_note(as_facilitator(sessions::SignNoteRequest {
            name: notes[0].clone(),
            request_id: String::new(),
        }))
        .await?;
    let sessions_token = system
        .sessions
        .amend_note(as_facilitator(sessions::AmendNoteRequest {
            name: notes[0].clone(),
            text: OTTO_AMENDMENT.into(),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .consistency_token;

    // Accountability: goals and check-ins; Pim encourages Ottoline's check-in.
    let mut check_ins = Vec::new();
    for (participant, id, goal, text) in [
        (&otto, "otto", OTTO_GOAL, OTTO_CHECK_IN),
        (&pim, "pim", PIM_GOAL, PIM_CHECK_IN),
    ] {
        system
            .accountability
            .set_goal(as_participant(
                pb::SetGoalRequest {
                    parent: participant.clone(),
                    text: goal.into(),
                    cadence: pb::Cadence::Daily as i32,
                    request_id: String::new(),
                },
                id,
            ))
            .await?;
        let check_in = system
            .accountability
            .submit_check_in(as_participant(
                pb::SubmitCheckInRequest {
                    parent: participant.clone(),
                    progress: pb::Progress::OnTrack as i32,
                    mood: 7,
                    craving: 2,
                    text: text.into(),
                    visibility: pb::Visibility::Group as i32,
                    ..Default::default()
                },
                id,
            ))
            .await?
            .into_inner()
            .check_in
            .unwrap_or_default();
        check_ins.push(check_in.name);
    }
    system
        .accountability
        .encourage(as_participant(
            pb::EncourageRequest {
                check_in: check_ins[0].clone(),
                participant: pim.clone(),
                reaction: PIM_REACTION.into(),
                message: PIM_TO_OTTO.into(),
                request_id: String::new(),
            },
            "pim",
        ))
        .await?;

    // A fault in the read model: Ottoline's setback cannot be stored, so after its
    // attempts the message is dead-lettered — the stored message, as the stream holds it.
    refuse_setbacks(&system).await?;
    let accountability_token = system
        .accountability
        .report_setback(as_participant(
            pb::ReportSetbackRequest {
                parent: otto.clone(),
                text: OTTO_SETBACK.into(),
                visibility: pb::Visibility::Facilitators as i32,
                request_id: String::new(),
            },
            "otto",
        ))
        .await?
        .into_inner()
        .consistency_token;
    wait_for_the_dead_letter(&system).await?;
    accept_setbacks(&system).await?;
    Ok(Scene {
        system,
        group,
        session,
        otto,
        pim,
        sessions_token,
        accountability_token,
    })
}

async fn refuse_setbacks(system: &System) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE FUNCTION accountability.refuse_setbacks() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER refuse_setbacks BEFORE INSERT ON accountability.setbacks
         FOR EACH ROW EXECUTE FUNCTION accountability.refuse_setbacks();",
    )
    .execute(&system.env.pool)
    .await?;
    Ok(())
}

async fn accept_setbacks(system: &System) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "DROP TRIGGER refuse_setbacks ON accountability.setbacks;
         DROP FUNCTION accountability.refuse_setbacks();",
    )
    .execute(&system.env.pool)
    .await?;
    Ok(())
}

/// Waits until the read model has dead-lettered Ottoline's setback (its only dead
/// letter).
async fn wait_for_the_dead_letter(system: &System) -> anyhow::Result<()> {
    let pool = system.env.pool.clone();
    eventually(
        || {
            let pool = pool.clone();
            async move {
                Ok(sqlx::query_as::<_, (String, String)>(
                    "SELECT projection, subject FROM accountability.dead_letters",
                )
                .fetch_all(&pool)
                .await?)
            }
        },
        |letters: &Vec<(String, String)>| {
            letters.len() == 1
                && letters[0].0 == "accountability-read-model"
                && letters[0].1.ends_with(".otto")
        },
    )
    .await?;
    Ok(())
}

/// What the answers show of a participant: their record, their timeline and the
/// session sheet (as the group's facilitator reads them), and the group board.
#[derive(Debug, PartialEq)]
struct Answers {
    participant: enrollment::Participant,
    timeline: pb::GetParticipantTimelineResponse,
    /// The participant's roster entry on the session sheet, with its note.
    sheet: sessions::RosterEntry,
    board: pb::BoardEntry,
}

async fn answers(scene: &Scene, participant: &str, tokens: [&str; 3]) -> anyhow::Result<Answers> {
    let [enrollment_token, sessions_token, accountability_token] = tokens;
    let system = &scene.system;
    let participant_record = system
        .enrollment
        .clone()
        .get_participant(admin(enrollment::GetParticipantRequest {
            name: participant.into(),
            consistency_token: enrollment_token.into(),
        }))
        .await?
        .into_inner()
        .participant
        .unwrap_or_default();
    let timeline = system
        .accountability
        .clone()
        .get_participant_timeline(as_facilitator(pb::GetParticipantTimelineRequest {
            participant: participant.into(),
            consistency_token: accountability_token.into(),
        }))
        .await?
        .into_inner();
    let sheet = system
        .sessions
        .clone()
        .get_session(as_facilitator(sessions::GetSessionRequest {
            name: scene.session.clone(),
            consistency_token: sessions_token.into(),
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default()
        .roster
        .into_iter()
        .find(|entry| entry.participant == participant)
        .ok_or_else(|| anyhow::anyhow!("{participant} is not on the sheet"))?;
    let board = system
        .accountability
        .clone()
        .get_group_board(as_facilitator(pb::GetGroupBoardRequest {
            group: scene.group.clone(),
            consistency_token: accountability_token.into(),
        }))
        .await?
        .into_inner()
        .entries
        .into_iter()
        .find(|entry| entry.participant == participant)
        .ok_or_else(|| anyhow::anyhow!("{participant} is not on the board"))?;
    Ok(Answers {
        participant: participant_record,
        timeline,
        sheet,
        board,
    })
}

/// The texts of a timeline: (kind, check-in text or detail).
fn timeline_texts(timeline: &pb::GetParticipantTimelineResponse) -> Vec<(String, String)> {
    timeline
        .items
        .iter()
        .map(|item| match &item.check_in {
            Some(check_in) => (item.kind.clone(), check_in.text.clone()),
            None => (item.kind.clone(), item.detail.clone()),
        })
        .collect()
}

/// Every schema the services keep (read models, rosters, process managers, the key
/// store): `schema.table.column` of each text, bytea or JSON column holding `needle`.
async fn tables_holding(system: &System, needle: &str) -> anyhow::Result<Vec<String>> {
    let (checked, holding) = support::columns_holding(system, "%", needle).await?;
    for must in [
        "enrollment.participant_profiles.given_name",
        "enrollment.consents.alias",
        "sessions.check_ins.share",
        "sessions.notes.text",
        "sessions.note_amendments.text",
        "sessions_roster.member_names.given_name",
        "accountability.goals.text",
        "accountability.check_ins.text",
        "accountability.setbacks.text",
        "accountability.encouragements.message",
        "accountability_roster.people.given_name",
        "accountability.dead_letters.payload",
        "accountability_from_sessions.projection_checkpoint.projection",
    ] {
        anyhow::ensure!(checked.iter().any(|c| c == must), "{must} not checked");
    }
    Ok(holding)
}

/// The raw bytes of every message of every stream of this test's namespace (found by
/// its suffix, as the test environment's cleanup finds them): the three event streams
/// and their audit streams, and nothing else.
async fn all_stream_messages(system: &System) -> anyhow::Result<Vec<(String, Vec<Vec<u8>>)>> {
    use tokio_stream::StreamExt as _;
    let suffix = format!("_{}", system.env.namespace.to_ascii_uppercase());
    let jetstream = system.env.jetstream();
    let mut names = Vec::new();
    let mut listed = jetstream.stream_names();
    while let Some(name) = listed.next().await {
        let name = name?;
        if name.ends_with(&suffix) {
            names.push(name);
        }
    }
    names.sort();
    let mut expected: Vec<String> = ["enrollment", "sessions", "accountability"]
        .into_iter()
        .flat_map(|service| {
            [
                system.env.config.stream_name(service),
                circle_service::audit_spec(&system.env.config, service).name,
            ]
        })
        .chain([circle_accountability::integration::stream_spec(&system.env.config).name])
        .collect();
    expected.sort();
    assert_eq!(names, expected, "the namespace's streams");
    let mut all = Vec::new();
    for name in names {
        let messages = support::stream_messages(system, &name).await?;
        all.push((name, messages));
    }
    Ok(all)
}

/// The read models, each with its schema and the stream it follows: what the rebuild
/// drops and replays.
fn read_models(system: &System) -> Vec<(&'static str, String, String)> {
    use circle_projection::Projection as _;
    let config = &system.env.config;
    let mut all = vec![
        (
            circle_enrollment::read_model::SCHEMA,
            circle_enrollment::read_model::ReadModel.name().to_owned(),
            config.stream_name("enrollment"),
        ),
        (
            circle_sessions::read_model::SCHEMA,
            circle_sessions::read_model::ReadModel.name().to_owned(),
            config.stream_name("sessions"),
        ),
        (
            circle_sessions::roster::SCHEMA,
            circle_sessions::roster::Roster.name().to_owned(),
            config.stream_name("enrollment"),
        ),
        (
            circle_accountability::read_model::SCHEMA,
            circle_accountability::read_model::ReadModel
                .name()
                .to_owned(),
            config.stream_name("accountability"),
        ),
        (
            circle_accountability::roster::SCHEMA,
            circle_accountability::roster::Roster.name().to_owned(),
            config.stream_name("enrollment"),
        ),
    ];
    for source in circle_enrollment::disclosures::SOURCES {
        all.push((
            source.schema,
            source.projection.to_owned(),
            circle_service::audit_spec(config, source.service).name,
        ));
    }
    all
}

/// Waits until the projection `name` (in `schema`) has applied everything its stream
/// holds now.
async fn caught_up(system: &System, schema: &str, name: &str, stream: &str) -> anyhow::Result<()> {
    let stream = system.env.jetstream().get_stream(stream).await?;
    circle_projection::wait_for_stream_end(
        &system.env.pool,
        schema,
        name,
        &stream,
        Duration::from_secs(30),
    )
    .await
    .map_err(|error| anyhow::anyhow!("{name} did not catch up: {error}"))
}

/// Every personal string of the scene that `answer` (debug-printed) shows.
fn plaintext_in(answer: &impl std::fmt::Debug, plaintext: &[&str]) -> Vec<String> {
    let shown = format!("{answer:?}");
    plaintext
        .iter()
        .filter(|plain| shown.contains(**plain))
        .map(|plain| (*plain).to_owned())
        .collect()
}

#[tokio::test]
async fn a_forgotten_participant_leaves_no_plaintext_anywhere_even_after_a_rebuild()
-> anyhow::Result<()> {
    let _capture = capture_logs_and_spans();
    let mut scene = scene().await?;
    let (otto, pim) = (scene.otto.clone(), scene.pim.clone());
    // Accountability's process manager has copied the session into the journals: the
    // token of accountability's last commit names everything the scene caused there.
    caught_up(
        &scene.system,
        circle_accountability::process::FROM_SESSIONS_SCHEMA,
        "accountability-from-sessions",
        &scene.system.env.config.stream_name("sessions"),
    )
    .await?;
    scene.accountability_token = scene
        .system
        .accountability_stream_last_sequence()
        .await?
        .to_string();
    let tokens_before = [
        "",
        scene.sessions_token.as_str(),
        scene.accountability_token.as_str(),
    ];
    let otto_before = answers(&scene, &otto, tokens_before).await?;
    let pim_before = answers(&scene, &pim, tokens_before).await?;
    // The answers show both in clear before the forget.
    assert_eq!(otto_before.participant.profile, Some(profile(OTTO_PROFILE)));
    assert_eq!(
        otto_before.sheet.note.as_ref().map(|note| (
            note.text.as_str(),
            note.amendments
                .iter()
                .map(|amendment| amendment.text.as_str())
                .collect::<Vec<_>>()
        )),
        Some((OTTO_NOTE, vec![OTTO_AMENDMENT]))
    );
    assert!(
        timeline_texts(&otto_before.timeline)
            .contains(&("check-in".to_owned(), OTTO_CHECK_IN.to_owned())),
        "{:?}",
        otto_before.timeline
    );
    assert_eq!(pim_before.participant.profile, Some(profile(PIM_PROFILE)));
    assert!(
        timeline_texts(&pim_before.timeline)
            .contains(&("check-in".to_owned(), PIM_CHECK_IN.to_owned())),
        "{:?}",
        pim_before.timeline
    );

    let forgotten = scene
        .system
        .enrollment
        .forget_participant(admin(enrollment::ForgetParticipantRequest {
            name: otto.clone(),
            reason: enrollment::ForgetReason::ParticipantRequest as i32,
            reference: "privacy ticket 2026-204".into(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let enrollment_token = forgotten.consistency_token.clone();
    let tokens = [
        enrollment_token.as_str(),
        scene.sessions_token.as_str(),
        scene.accountability_token.as_str(),
    ];
    let otto_forgotten = answers(&scene, &otto, tokens).await?;
    assert_eq!(
        Some(otto_forgotten.participant.clone()),
        forgotten.participant
    );
    assert!(otto_forgotten.participant.forgotten_at.is_some());
    assert_eq!(
        otto_forgotten.participant.profile,
        Some(profile([REDACTED; 5]))
    );
    assert_eq!(otto_forgotten.board.display_name, REDACTED);
    assert_eq!(
        otto_forgotten
            .sheet
            .note
            .as_ref()
            .map(|note| note.text.as_str()),
        Some(REDACTED)
    );
    let texts = timeline_texts(&otto_forgotten.timeline);
    for kind in ["goal-set", "check-in", "encouragement"] {
        assert!(
            texts.contains(&(kind.to_owned(), REDACTED.to_owned())),
            "{kind}: {texts:?}"
        );
    }
    assert_eq!(
        plaintext_in(&otto_forgotten, &otto_plaintext()),
        Vec::<String>::new(),
        "every answer about Ottoline is redacted"
    );

    // Every read model rebuilt from the log: the services stopped, every schema but the
    // key store's and the process managers' (which keep only their checkpoints, scanned
    // all the same) dropped, the services started again: each read model replays its
    // stream from the start. The fault is back, so the replay dead-letters the setback
    // again.
    scene.system.stop(Duration::from_secs(30)).await?;
    let kept = [
        circle_vault::store::SCHEMA,
        circle_enrollment::process::OFFER_TIMERS_SCHEMA,
        circle_enrollment::process::TRANSFERS_SCHEMA,
        circle_accountability::process::FROM_SESSIONS_SCHEMA,
        circle_accountability::process::PARTNERSHIP_GUARD_SCHEMA,
        circle_accountability::integration::SCHEMA,
    ];
    let dropped: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')
           AND nspname <> ALL($1) ORDER BY 1",
    )
    .bind(kept.map(str::to_owned).to_vec())
    .fetch_all(&scene.system.env.pool)
    .await?;
    let read_models = read_models(&scene.system);
    let mut expected: Vec<String> = read_models
        .iter()
        .map(|(schema, _, _)| (*schema).to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        dropped, expected,
        "every schema is a read model's or kept (a process manager dropped would replay its steps)"
    );
    for schema in &dropped {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&scene.system.env.pool)
        .await?;
    }
    circle_projection::prepare(
        &circle_accountability::read_model::ReadModel,
        &scene.system.env.database().await?,
        circle_accountability::read_model::SCHEMA,
        1,
    )
    .await?;
    refuse_setbacks(&scene.system).await?;
    scene.system.restart().await?;
    for (schema, name, stream) in &read_models {
        caught_up(&scene.system, schema, name, stream).await?;
    }
    wait_for_the_dead_letter(&scene.system).await?;
    accept_setbacks(&scene.system).await?;
    let otto_rebuilt = answers(&scene, &otto, tokens).await?;
    let pim_rebuilt = answers(&scene, &pim, tokens).await?;

    // Every answer about Ottoline is as the forget left it, redacted; Pim's are exactly
    // as they were.
    assert_eq!(otto_rebuilt, otto_forgotten);
    assert_eq!(pim_rebuilt, pim_before);

    // The nudger meets Ottoline on its passes a day later: her steps are skipped, Pim is
    // nudged for the check-in he missed, and nothing is recorded about her.
    let accountability = circle_eventstore::EventStore::open(
        scene.system.env.nats.clone(),
        circle_accountability::stream_spec(&scene.system.env.config),
    )
    .await?;
    let before_the_day = accountability.last_sequence().await?;
    scene.system.clock.advance(chrono::Duration::hours(25));
    let client = scene.system.accountability.clone();
    let pim_name = pim.clone();
    eventually(
        || {
            let mut client = client.clone();
            let participant = pim_name.clone();
            async move {
                Ok(client
                    .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
                        participant,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .items)
            }
        },
        |items: &Vec<pb::TimelineItem>| items.iter().any(|item| item.kind == "nudge"),
    )
    .await?;
    let skipped = "nudger step about a forgotten participant; skipped";
    eventually(
        || {
            let found = support::contains(&captured(), skipped);
            async move { Ok(found) }
        },
        |found| *found,
    )
    .await?;
    let mut about_otto = Vec::new();
    for sequence in before_the_day + 1..=accountability.last_sequence().await? {
        let commit = accountability.read_commit(sequence).await?;
        if commit.subject.ends_with(".otto") {
            about_otto.push(commit.subject);
        }
    }
    assert_eq!(
        about_otto,
        Vec::<String>::new(),
        "nothing recorded for Ottoline"
    );

    // At rest, at the end: no table (the rebuilt read models, the dead letter, the
    // process managers' and the key store's) and no message of any stream holds any of
    // Ottoline's text, nor Pim's in clear.
    let everyone: Vec<&str> = otto_plaintext()
        .into_iter()
        .chain(pim_plaintext())
        .collect();
    let group_name = "Tuesday evening process group";
    assert!(
        !tables_holding(&scene.system, group_name).await?.is_empty(),
        "what is not personal is in clear in the tables (the scan would find a leak)"
    );
    for plain in &everyone {
        assert_eq!(
            tables_holding(&scene.system, plain).await?,
            Vec::<String>::new(),
            "{plain:?} after the rebuild"
        );
    }
    let streams = all_stream_messages(&scene.system).await?;
    for (name, messages) in &streams {
        anyhow::ensure!(!messages.is_empty(), "{name} holds messages");
    }
    assert!(
        streams.iter().any(|(_, messages)| messages
            .iter()
            .any(|message| support::contains(message, group_name))),
        "what is not personal is in clear in the streams (the scan would find a leak)"
    );
    for plain in &everyone {
        for (name, messages) in &streams {
            let found = messages
                .iter()
                .filter(|message| support::contains(message, plain))
                .count();
            assert_eq!(found, 0, "{plain:?} in clear in {name}");
        }
    }

    // Nothing personal was logged, or put on a span, at any time.
    let logs = captured().clone();
    for seen in [
        // Spans with their fields, from the RPCs and the process managers.
        "forget_participant",
        // An append's producer span, and a process manager's consumer span.
        "send{otel.name=\"send ACCOUNTABILITY",
        "circle.aggregate_type=\"journal\"",
        "messaging.consumer.group.name=\"accountability-from-sessions\"",
        "projection gave up on a message: dead-lettered",
    ] {
        assert!(support::contains(&logs, seen), "the capture holds {seen:?}");
    }
    for plain in &everyone {
        assert!(
            !support::contains(&logs, plain),
            "{plain:?} in the logs or spans"
        );
    }
    Ok(())
}
