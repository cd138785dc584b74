//! Crypto-shredding in accountability: personal text is sealed at rest — in the
//! ACCOUNTABILITY stream and in every row of the service's read models — and shown in
//! clear only in answers; once a participant's key is destroyed their texts and their
//! name read `[redacted]` everywhere (a peer's stay in clear) and nothing more is
//! recorded for them.

use circle_proto::accountability::v1 as pb;
use circle_proto::sessions::v1 as sessions;
use circle_vault::{REDACTED, field};
use tonic::Code;

use crate::accountability::{Circle, circle};
use crate::support;
use crate::support::{NETWORK, System, admin, as_facilitator, as_participant, eventually, refusal};

const GOAL: &str = "Call my sponsor every evening";
const CHECK_IN: &str = "Ten quiet days, still steady";
const SESSION_CHECK_IN: &str = "Glad to see everyone tonight";
const SETBACK: &str = "Slipped at the wedding party";
const REACTION: &str = "hats off";
const MESSAGE: &str = "Proud of you, keep going";

fn check_in(parent: &str, text: &str, request_id: &str) -> pb::SubmitCheckInRequest {
    pb::SubmitCheckInRequest {
        parent: parent.into(),
        progress: pb::Progress::OnTrack as i32,
        mood: 7,
        craving: 2,
        text: text.into(),
        visibility: pb::Visibility::Group as i32,
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn set_goal(parent: &str, text: &str) -> pb::SetGoalRequest {
    pb::SetGoalRequest {
        parent: parent.into(),
        text: text.into(),
        cadence: pb::Cadence::Daily as i32,
        request_id: String::new(),
    }
}

fn setback(parent: &str, text: &str) -> pb::ReportSetbackRequest {
    pb::ReportSetbackRequest {
        parent: parent.into(),
        text: text.into(),
        visibility: pb::Visibility::Facilitators as i32,
        request_id: String::new(),
    }
}

fn encourage(
    check_in: &str,
    participant: &str,
    reaction: &str,
    message: &str,
) -> pb::EncourageRequest {
    pb::EncourageRequest {
        check_in: check_in.into(),
        participant: participant.into(),
        reaction: reaction.into(),
        message: message.into(),
        request_id: String::new(),
    }
}

async fn timeline(
    system: &mut System,
    request: tonic::Request<pb::GetParticipantTimelineRequest>,
) -> anyhow::Result<pb::GetParticipantTimelineResponse> {
    Ok(system
        .accountability
        .get_participant_timeline(request)
        .await?
        .into_inner())
}

/// (kind, detail or check-in text, check-in author's display) of each timeline item.
fn items(timeline: &pb::GetParticipantTimelineResponse) -> Vec<(String, String, String)> {
    timeline
        .items
        .iter()
        .map(|item| match &item.check_in {
            Some(check_in) => (
                item.kind.clone(),
                check_in.text.clone(),
                check_in.author_display.clone(),
            ),
            None => (item.kind.clone(), item.detail.clone(), String::new()),
        })
        .collect()
}

/// [`items`] without the milestones and nudges the service writes on its own.
fn written(timeline: &pb::GetParticipantTimelineResponse) -> Vec<(String, String, String)> {
    items(timeline)
        .into_iter()
        .filter(|(kind, _, _)| kind != "milestone" && kind != "nudge")
        .collect()
}

async fn board(
    system: &mut System,
    request: tonic::Request<pb::GetGroupBoardRequest>,
) -> anyhow::Result<Vec<pb::BoardEntry>> {
    Ok(system
        .accountability
        .get_group_board(request)
        .await?
        .into_inner()
        .entries)
}

fn entry<'a>(entries: &'a [pb::BoardEntry], participant: &str) -> &'a pb::BoardEntry {
    entries
        .iter()
        .find(|entry| entry.participant == participant)
        .unwrap_or_else(|| panic!("{participant} on the board"))
}

fn goal_texts(entry: &pb::BoardEntry) -> Vec<&str> {
    entry
        .active_goals
        .iter()
        .map(|goal| goal.text.as_str())
        .collect()
}

fn last_check_in_text(entry: &pb::BoardEntry) -> &str {
    entry
        .last_check_in
        .as_ref()
        .map_or("", |check_in| check_in.text.as_str())
}

/// The feed of `group` as `viewer` sees it from the start, until its first heartbeat.
async fn feed(
    system: &mut System,
    viewer: impl FnOnce(pb::WatchGroupFeedRequest) -> tonic::Request<pb::WatchGroupFeedRequest>,
    group: &str,
) -> anyhow::Result<Vec<pb::FeedItem>> {
    let mut stream = system
        .accountability
        .watch_group_feed(viewer(pb::WatchGroupFeedRequest {
            group: group.into(),
            after_position: 0,
            heartbeat_seconds: 1,
        }))
        .await?
        .into_inner();
    let mut items = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(pb::watch_group_feed_response::Event::Item(item)) => items.push(item),
            Some(pb::watch_group_feed_response::Event::HeartbeatPosition(_)) => break,
            None => {}
        }
    }
    Ok(items)
}

/// (kind, check-in text, author display, from display, reaction, message) of each item.
fn feed_view(items: &[pb::FeedItem]) -> Vec<(String, String, String, String, String, String)> {
    items
        .iter()
        .filter(|item| item.kind != "milestone")
        .map(|item| {
            let check_in = item.check_in.clone().unwrap_or_default();
            (
                item.kind.clone(),
                check_in.text,
                check_in.author_display,
                item.from_display.clone(),
                item.reaction.clone(),
                item.message.clone(),
            )
        })
        .collect()
}

/// Every row of every table of accountability's schemas (its read model, its roster,
/// its process managers' checkpoints), each as the text of the whole row.
async fn read_model_rows(system: &System) -> anyhow::Result<Vec<(String, String)>> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema LIKE 'accountability%' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&system.env.pool)
    .await?;
    anyhow::ensure!(
        tables
            .iter()
            .any(|(schema, table)| schema == "accountability" && table == "check_ins"),
        "the read model's tables are there: {tables:?}"
    );
    let mut rows = Vec::new();
    for (schema, table) in tables {
        let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_all(&system.env.pool)
        .await?;
        rows.extend(
            texts
                .into_iter()
                .map(|row| (format!("{schema}.{table}"), row)),
        );
    }
    Ok(rows)
}

#[tokio::test]
async fn personal_text_is_sealed_in_the_log_and_the_read_models_and_clear_in_answers()
-> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;

    // Command answers show what was written, in clear.
    let set = system
        .accountability
        .set_goal(as_participant(set_goal(&sam, GOAL), "sam"))
        .await?
        .into_inner();
    let goal = set.goal.clone().unwrap_or_default();
    assert_eq!(goal.text, GOAL);
    // A revision to the same text changes nothing: decided on the text in clear.
    let revised = system
        .accountability
        .revise_goal(as_participant(
            pb::ReviseGoalRequest {
                name: goal.name.clone(),
                text: GOAL.into(),
                cadence: pb::Cadence::Daily as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner();
    assert_eq!(
        (
            revised.goal.map(|goal| goal.text),
            revised.consistency_token
        ),
        (Some(GOAL.to_owned()), set.consistency_token.clone()),
        "an unchanged revision appends nothing"
    );
    let submit = check_in(&sam, CHECK_IN, "sealing-check-in-1");
    let submitted = system
        .accountability
        .submit_check_in(as_participant(submit.clone(), "sam"))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    assert_eq!(submitted.text, CHECK_IN);
    // A retry is answered from the stored (sealed) commit, opened.
    let retried = system
        .accountability
        .submit_check_in(as_participant(submit, "sam"))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    assert_eq!(retried, submitted);
    system
        .accountability
        .report_setback(as_participant(setback(&sam, SETBACK), "sam"))
        .await?;
    let encouraged = system
        .accountability
        .encourage(as_participant(
            encourage(&submitted.name, &jordan, REACTION, MESSAGE),
            "jordan",
        ))
        .await?
        .into_inner();

    // A session check-in reaches the journal through the process manager.
    let session = system.session_on(&group, "2026-11-24")?;
    system.clock.advance(chrono::Duration::days(4));
    system
        .sessions
        .start_session(admin(sessions::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    system
        .sessions
        .record_session_check_in(admin(sessions::RecordSessionCheckInRequest {
            name: session.clone(),
            participant: sam.clone(),
            mood: 6,
            craving: 3,
            share: SESSION_CHECK_IN.into(),
            request_id: String::new(),
        }))
        .await?;
    let client = system.accountability.clone();
    let sam_name = sam.clone();
    let token = encouraged.consistency_token.clone();
    let shown = eventually(
        || {
            let mut client = client.clone();
            let participant = sam_name.clone();
            let consistency_token = token.clone();
            async move {
                Ok(client
                    .get_participant_timeline(as_participant(
                        pb::GetParticipantTimelineRequest {
                            participant,
                            consistency_token,
                        },
                        "sam",
                    ))
                    .await?
                    .into_inner())
            }
        },
        |timeline| {
            items(timeline)
                .iter()
                .any(|(kind, text, _)| kind == "check-in" && text == SESSION_CHECK_IN)
        },
    )
    .await?;

    // Queries show it in clear: the timeline, the board, the feed.
    let shown = items(&shown);
    for expected in [
        ("goal-set", GOAL, ""),
        ("check-in", CHECK_IN, "Sam"),
        ("check-in", SESSION_CHECK_IN, "Sam"),
        ("setback", SETBACK, ""),
        ("encouragement", REACTION, ""),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(shown.contains(&expected), "{expected:?} in {shown:?}");
    }
    let seen_by_jordan = board(
        &mut system,
        as_participant(
            pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            },
            "jordan",
        ),
    )
    .await?;
    let sam_seen = entry(&seen_by_jordan, &sam);
    assert_eq!(
        (
            sam_seen.display_name.as_str(),
            goal_texts(sam_seen),
            last_check_in_text(sam_seen)
        ),
        ("Sunny", vec![GOAL], SESSION_CHECK_IN)
    );
    let seen_by_staff = board(
        &mut system,
        as_facilitator(pb::GetGroupBoardRequest {
            group: group.clone(),
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(entry(&seen_by_staff, &sam).display_name, "Sam");
    let fed = feed_view(&feed(&mut system, |r| as_participant(r, "jordan"), &group).await?);
    let encouragement = (
        "encouragement".to_owned(),
        CHECK_IN.to_owned(),
        "Sunny".to_owned(),
        "Jordan".to_owned(),
        REACTION.to_owned(),
        MESSAGE.to_owned(),
    );
    assert!(fed.contains(&encouragement), "{fed:?}");

    // At rest, none of it is in clear: not in the log (every message, headers and
    // all), not in the service's audit stream, not in any row of its schemas.
    let plaintexts = [GOAL, CHECK_IN, SESSION_CHECK_IN, SETBACK, REACTION, MESSAGE];
    let config = &system.env.config;
    for stream in [
        config.stream_name("accountability"),
        config.stream_name("accountability_audit"),
    ] {
        let messages = support::stream_messages(&system, &stream).await?;
        assert!(!messages.is_empty(), "{stream} has messages");
        for (index, message) in messages.iter().enumerate() {
            for plaintext in plaintexts {
                assert!(
                    !support::contains(message, plaintext),
                    "{stream} message {} holds {plaintext:?}",
                    index + 1
                );
            }
        }
    }
    let rows = read_model_rows(&system).await?;
    for (table, row) in &rows {
        for plaintext in plaintexts {
            assert!(
                !row.contains(plaintext),
                "{table} holds {plaintext:?}: {row}"
            );
        }
    }
    // The texts are there, sealed.
    let sealed: Vec<String> = sqlx::query_scalar(
        "SELECT text FROM accountability.goals UNION ALL SELECT text FROM accountability.goal_history
         UNION ALL SELECT text FROM accountability.check_ins UNION ALL SELECT text FROM accountability.setbacks
         UNION ALL SELECT reaction FROM accountability.encouragements UNION ALL SELECT message FROM accountability.encouragements",
    )
    .fetch_all(&system.env.pool)
    .await?;
    assert_eq!(sealed.len(), 7, "{sealed:?}");
    assert!(
        sealed.iter().all(|text| circle_vault::is_sealed(text)),
        "{sealed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_forgotten_participant_reads_redacted_and_gets_nothing_more_recorded()
-> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let vault = system.key_store().await?;

    // Sam's journal, and Jordan's; each encourages the other.
    system
        .accountability
        .set_goal(as_participant(set_goal(&sam, GOAL), "sam"))
        .await?;
    let first = check_in(&sam, CHECK_IN, "forgotten-check-in-1");
    let sams = system
        .accountability
        .submit_check_in(as_participant(first.clone(), "sam"))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    system
        .accountability
        .report_setback(as_participant(setback(&sam, SETBACK), "sam"))
        .await?;
    let jordan_goal = "Run three mornings a week";
    let jordan_check_in = "Slept well all week";
    let jordan_message = "Way to go, Jordan";
    system
        .accountability
        .set_goal(as_participant(set_goal(&jordan, jordan_goal), "jordan"))
        .await?;
    let jordans = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&jordan, jordan_check_in, ""),
            "jordan",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    system
        .accountability
        .encourage(as_participant(
            encourage(&sams.name, &jordan, REACTION, MESSAGE),
            "jordan",
        ))
        .await?;
    let last = system
        .accountability
        .encourage(as_participant(
            encourage(&jordans.name, &sam, "clap", jordan_message),
            "sam",
        ))
        .await?
        .into_inner();

    // The roster keeps names and aliases as enrollment sealed them, each with its
    // participant's key (`field::GIVEN_NAME`, `field::ALIAS`).
    let opener = vault.opener(NETWORK, ["sam", "jordan"]).await?;
    for (participant_id, column, name, plaintext) in [
        ("sam", "given_name", field::GIVEN_NAME, "Sam"),
        ("sam", "alias", field::ALIAS, "Sunny"),
        ("jordan", "given_name", field::GIVEN_NAME, "Jordan"),
    ] {
        let stored: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {column} FROM accountability_roster.people
             WHERE network = $1 AND participant_id = $2"
        )))
        .bind(NETWORK)
        .bind(participant_id)
        .fetch_one(&system.env.pool)
        .await?;
        assert!(
            circle_vault::is_sealed(&stored),
            "{participant_id}.{column}"
        );
        assert_eq!(opener.open(participant_id, name, &stored), plaintext);
    }
    let staff_board = |group: &str| {
        as_facilitator(pb::GetGroupBoardRequest {
            group: group.into(),
            consistency_token: last.consistency_token.clone(),
        })
    };
    let before = board(&mut system, staff_board(&group)).await?;
    assert_eq!(entry(&before, &sam).display_name, "Sam");
    let peer_before = board(
        &mut system,
        as_participant(
            pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            },
            "jordan",
        ),
    )
    .await?;
    assert_eq!(entry(&peer_before, &sam).display_name, "Sunny");

    assert!(vault.forget(NETWORK, "sam").await?, "Sam had a key");

    // Every read shows Sam's texts and name redacted; Jordan's stay in clear.
    let sams_own = timeline(
        &mut system,
        as_participant(
            pb::GetParticipantTimelineRequest {
                participant: sam.clone(),
                consistency_token: last.consistency_token.clone(),
            },
            "sam",
        ),
    )
    .await?;
    let redacted =
        |kind: &str, display: &str| (kind.to_owned(), REDACTED.to_owned(), display.to_owned());
    assert_eq!(
        written(&sams_own),
        [
            redacted("goal-set", ""),
            redacted("check-in", REDACTED),
            redacted("setback", ""),
            redacted("encouragement", ""),
        ]
    );
    let jordans_own = timeline(
        &mut system,
        as_participant(
            pb::GetParticipantTimelineRequest {
                participant: jordan.clone(),
                consistency_token: last.consistency_token.clone(),
            },
            "jordan",
        ),
    )
    .await?;
    let clear = |kind: &str, text: &str, display: &str| {
        (kind.to_owned(), text.to_owned(), display.to_owned())
    };
    assert_eq!(
        written(&jordans_own),
        [
            clear("goal-set", jordan_goal, ""),
            clear("check-in", jordan_check_in, "Jordan"),
            clear("encouragement", "clap", ""),
        ]
    );
    let after = board(&mut system, staff_board(&group)).await?;
    let (sam_entry, jordan_entry) = (entry(&after, &sam), entry(&after, &jordan));
    assert_eq!(
        (
            sam_entry.display_name.as_str(),
            goal_texts(sam_entry),
            last_check_in_text(sam_entry)
        ),
        (REDACTED, vec![REDACTED], REDACTED)
    );
    assert_eq!(
        (
            jordan_entry.display_name.as_str(),
            goal_texts(jordan_entry),
            last_check_in_text(jordan_entry)
        ),
        ("Jordan", vec![jordan_goal], jordan_check_in)
    );
    let peer_after = board(
        &mut system,
        as_participant(
            pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            },
            "jordan",
        ),
    )
    .await?;
    assert_eq!(entry(&peer_after, &sam).display_name, REDACTED);
    assert_eq!(entry(&peer_after, &jordan).display_name, "Jordan");
    let fed = feed_view(&feed(&mut system, |r| as_participant(r, "jordan"), &group).await?);
    let item = |kind: &str, text: &str, author: &str, from: &str, reaction: &str, message: &str| {
        (
            kind.to_owned(),
            text.to_owned(),
            author.to_owned(),
            from.to_owned(),
            reaction.to_owned(),
            message.to_owned(),
        )
    };
    assert_eq!(
        fed,
        [
            item("check-in", REDACTED, REDACTED, "", "", ""),
            item("check-in", jordan_check_in, "Jordan", "", "", ""),
            // In Sam's journal, sealed with Sam's key: gone with it.
            item(
                "encouragement",
                REDACTED,
                REDACTED,
                "Jordan",
                REDACTED,
                REDACTED
            ),
            // In Jordan's: Sam's words stay, Sam's name does not.
            item(
                "encouragement",
                jordan_check_in,
                "Jordan",
                REDACTED,
                "clap",
                jordan_message
            ),
        ]
    );

    // A rebuild of the read model from the log brings nothing back.
    let stream = system
        .env
        .jetstream()
        .get_stream(system.env.config.stream_name("accountability"))
        .await?;
    let report = circle_projection::rebuild(
        &circle_accountability::read_model::ReadModel,
        &system.env.database().await?,
        circle_accountability::read_model::SCHEMA,
        &stream,
        &circle_projection::ProjectionSettings {
            batch_size: 64,
            ack_wait: std::time::Duration::from_secs(2),
            max_attempts: 3,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(report.dead_letters, 0);
    for (participant, viewer, before) in
        [(&sam, "sam", &sams_own), (&jordan, "jordan", &jordans_own)]
    {
        let rebuilt = timeline(
            &mut system,
            as_participant(
                pb::GetParticipantTimelineRequest {
                    participant: participant.clone(),
                    consistency_token: last.consistency_token.clone(),
                },
                viewer,
            ),
        )
        .await?;
        assert_eq!(
            written(&rebuilt),
            written(before),
            "{participant} after a rebuild"
        );
    }

    // A retry of what Sam did before is answered from the stored commit: redacted.
    let retried = system
        .accountability
        .submit_check_in(as_participant(first, "sam"))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    assert_eq!(
        (retried.name, retried.text),
        (sams.name, REDACTED.to_owned())
    );

    // Nothing more is recorded for Sam, with text or without, whoever asks.
    let forgotten = (
        Code::FailedPrecondition,
        "PARTICIPANT_FORGOTTEN".to_owned(),
        vec![],
    );
    let before = system.accountability_stream_last_sequence().await?;
    assert_eq!(
        refusal(
            system
                .accountability
                .set_goal(as_participant(set_goal(&sam, "Start again"), "sam"))
                .await
        ),
        forgotten
    );
    assert_eq!(
        refusal(
            system
                .accountability
                .submit_check_in(as_participant(check_in(&sam, "Still here", ""), "sam"))
                .await
        ),
        forgotten
    );
    assert_eq!(
        refusal(
            system
                .accountability
                .submit_check_in(admin(check_in(&sam, "", "")))
                .await
        ),
        forgotten,
        "a check-in with no text is refused too"
    );
    assert_eq!(
        refusal(
            system
                .accountability
                .report_setback(as_facilitator(setback(&sam, "")))
                .await
        ),
        forgotten
    );
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new()
    );
    // Jordan goes on.
    let again = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&jordan, "Another good day", ""),
            "jordan",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    assert_eq!(again.text, "Another good day");
    // Nor anything Sam sends: an encouragement of Jordan's new check-in.
    let before = system.accountability_stream_last_sequence().await?;
    assert_eq!(
        refusal(
            system
                .accountability
                .encourage(as_participant(
                    encourage(&again.name, &sam, "clap", "Still cheering"),
                    "sam",
                ))
                .await
        ),
        forgotten
    );
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new()
    );

    // The process managers skip Sam's steps and go on with the next: both attend the
    // session, only Jordan's journal counts it.
    let session = system.session_on(&group, "2026-11-24")?;
    system.clock.advance(chrono::Duration::days(4));
    system
        .sessions
        .start_session(admin(sessions::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    // Sessions itself refuses attendance for a forgotten member; Jordan's is recorded.
    let attendance = |participant: &String| {
        admin(sessions::RecordAttendanceRequest {
            name: session.clone(),
            participant: participant.clone(),
            status: sessions::AttendanceStatus::Present as i32,
            minutes_attended: 90,
            request_id: String::new(),
        })
    };
    let refused = system
        .sessions
        .record_attendance(attendance(&sam))
        .await
        .expect_err("a forgotten member's attendance is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    system
        .sessions
        .record_attendance(attendance(&jordan))
        .await?;
    let client = system.accountability.clone();
    let attended = |participant: String| {
        let mut client = client.clone();
        async move {
            Ok(client
                .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
                    participant,
                    ..Default::default()
                }))
                .await?
                .into_inner()
                .counters
                .unwrap_or_default()
                .sessions_attended)
        }
    };
    eventually(|| attended(jordan.clone()), |count| *count == 1).await?;
    assert_eq!(attended(sam.clone()).await?, 0);
    Ok(())
}
