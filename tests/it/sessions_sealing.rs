//! Crypto-shredding in the sessions service: a member's check-in share and the notes
//! about them are sealed with their key everywhere they rest (the SESSIONS stream, the
//! read model), opened only in the answers; once their key is destroyed every read
//! shows `[redacted]` for them, and nothing new is recorded about them.

use circle_proto::sessions::v1 as pb;
use circle_sessions::domain::Event;
use circle_vault::{REDACTED, field};
use tonic::Code;

use crate::support;
use crate::support::{NETWORK, System, admin, as_facilitator, refusal};

const SAM_SHARE: &str = "Thirty days today, the lighthouse walk helped.";
const JORDAN_SHARE: &str = "Rough week at the warehouse, still here.";
const SAM_NOTE: &str = "Engaged; described a marigold coping plan for weekends.";
const SAM_AMENDMENT: &str = "Correction: the marigold plan covers weekday evenings too.";
const JORDAN_NOTE: &str = "Quiet; spoke once about the warehouse shifts.";
const JORDAN_AMENDMENT: &str = "Late entry: asked for a warehouse schedule letter.";

/// Every plaintext the test writes about a member.
const PLAINTEXTS: [&str; 6] = [
    SAM_SHARE,
    JORDAN_SHARE,
    SAM_NOTE,
    SAM_AMENDMENT,
    JORDAN_NOTE,
    JORDAN_AMENDMENT,
];

fn utc(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp())
}

/// A started ad hoc session of a weekly group whose two members, Sam and Jordan, are
/// both present.
async fn session_with_two_members() -> anyhow::Result<(System, String, String, String)> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let sam = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    let jordan = system
        .participant(&clinic, "jordan", "Jordan", "Kim")
        .await?;
    system.enroll(&group, &sam).await?;
    system.enroll(&group, &jordan).await?;
    let next = system.session_on(&group, "2026-11-24")?;
    system
        .wait_for_session(&next, |s| s.roster.len() == 2)
        .await?;
    let session = system
        .sessions
        .schedule_session(admin(pb::ScheduleSessionRequest {
            parent: group.clone(),
            session_id: "extra".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: utc("2026-11-20T13:00:00Z")?,
                nanos: 0,
            }),
            duration_minutes: 90,
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .session
        .map(|s| s.name)
        .unwrap_or_default();
    system
        .wait_for_session(&session, |s| s.roster.len() == 2)
        .await?;
    system.clock.advance(chrono::Duration::hours(1));
    system
        .sessions
        .start_session(admin(pb::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    for participant in [&sam, &jordan] {
        system
            .sessions
            .record_attendance(attendance(&session, participant))
            .await?;
    }
    Ok((system, session, sam, jordan))
}

fn attendance(session: &str, participant: &str) -> tonic::Request<pb::RecordAttendanceRequest> {
    admin(pb::RecordAttendanceRequest {
        name: session.into(),
        participant: participant.into(),
        status: pb::AttendanceStatus::Present as i32,
        minutes_attended: 90,
        request_id: String::new(),
    })
}

fn check_in(
    session: &str,
    participant: &str,
    share: &str,
) -> tonic::Request<pb::RecordSessionCheckInRequest> {
    admin(pb::RecordSessionCheckInRequest {
        name: session.into(),
        participant: participant.into(),
        mood: 6,
        craving: 3,
        share: share.into(),
        request_id: String::new(),
    })
}

fn member_note(
    session: &str,
    participant: &str,
    text: &str,
    request_id: &str,
) -> tonic::Request<pb::WriteMemberNoteRequest> {
    as_facilitator(pb::WriteMemberNoteRequest {
        name: session.into(),
        participant: participant.into(),
        text: text.into(),
        request_id: request_id.into(),
    })
}

fn sign(note: &str) -> tonic::Request<pb::SignNoteRequest> {
    as_facilitator(pb::SignNoteRequest {
        name: note.into(),
        request_id: String::new(),
    })
}

fn amend(note: &str, text: &str) -> tonic::Request<pb::AmendNoteRequest> {
    as_facilitator(pb::AmendNoteRequest {
        name: note.into(),
        text: text.into(),
        request_id: String::new(),
    })
}

fn texts(note: &pb::Note) -> (String, Vec<String>) {
    (
        note.text.clone(),
        note.amendments.iter().map(|a| a.text.clone()).collect(),
    )
}

/// The note of `participant` on the session sheet, as its facilitator reads it after
/// the write `consistency_token` names.
async fn sheet_note(
    system: &System,
    session: &str,
    participant: &str,
    consistency_token: &str,
) -> anyhow::Result<pb::Note> {
    let sheet = system
        .sessions
        .clone()
        .get_session(as_facilitator(pb::GetSessionRequest {
            name: session.into(),
            consistency_token: consistency_token.into(),
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    sheet
        .roster
        .into_iter()
        .find(|entry| entry.participant == participant)
        .and_then(|entry| entry.note)
        .ok_or_else(|| anyhow::anyhow!("no note of {participant} on the sheet"))
}

/// The session check-ins' shares as the SESSIONS stream holds them: (participant,
/// share).
async fn stored_shares(system: &System) -> anyhow::Result<Vec<(String, String)>> {
    let store = circle_eventstore::EventStore::open(
        system.env.nats.clone(),
        circle_sessions::stream_spec(&system.env.config),
    )
    .await?;
    let mut shares = Vec::new();
    for sequence in 1..=store.last_sequence().await? {
        for event in circle_sessions::codec::decode_commit(&store.read_commit(sequence).await?)? {
            if let Event::SessionCheckInRecorded {
                participant_id,
                share,
                ..
            } = event
            {
                shares.push((participant_id, share));
            }
        }
    }
    Ok(shares)
}

/// The stored shares opened as accountability opens the session check-ins it copies:
/// with the member's key, as `field::CHECK_IN`.
async fn opened_shares(system: &System) -> anyhow::Result<Vec<(String, String)>> {
    let shares = stored_shares(system).await?;
    let opener = system
        .key_store()
        .await?
        .opener(NETWORK, shares.iter().map(|(participant, _)| participant))
        .await?;
    Ok(shares
        .into_iter()
        .map(|(participant, share)| {
            let opened = opener.open(&participant, field::CHECK_IN, &share);
            (participant, opened)
        })
        .collect())
}

/// Which of sessions' columns (read model and roster) hold `needle`; every column the
/// sealing covers is among those looked at.
async fn columns_holding(system: &System, needle: &str) -> anyhow::Result<Vec<String>> {
    let (checked, holding) = support::columns_holding(system, "sessions%", needle).await?;
    for must in [
        "sessions.check_ins.share",
        "sessions.notes.text",
        "sessions.note_amendments.text",
        "sessions_roster.member_names.given_name",
        "sessions_roster.member_names.aliases",
    ] {
        anyhow::ensure!(checked.iter().any(|c| c == must), "{must} not checked");
    }
    Ok(holding)
}

#[tokio::test]
async fn shares_and_member_notes_rest_sealed_and_are_answered_in_clear() -> anyhow::Result<()> {
    let (mut system, session, sam, jordan) = session_with_two_members().await?;
    for (participant, share) in [(&sam, SAM_SHARE), (&jordan, JORDAN_SHARE)] {
        system
            .sessions
            .record_session_check_in(check_in(&session, participant, share))
            .await?;
    }
    // The command answers show the text as written.
    let written = system
        .sessions
        .write_member_note(member_note(&session, &sam, SAM_NOTE, "note-sam"))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(texts(&written), (SAM_NOTE.to_owned(), vec![]));
    let jordans = system
        .sessions
        .write_member_note(member_note(&session, &jordan, JORDAN_NOTE, ""))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(texts(&jordans), (JORDAN_NOTE.to_owned(), vec![]));
    let signed = system
        .sessions
        .sign_note(sign(&written.name))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(texts(&signed), (SAM_NOTE.to_owned(), vec![]));
    let amended = system
        .sessions
        .amend_note(amend(&written.name, SAM_AMENDMENT))
        .await?
        .into_inner();
    assert_eq!(
        texts(&amended.note.unwrap_or_default()),
        (SAM_NOTE.to_owned(), vec![SAM_AMENDMENT.to_owned()])
    );
    // A retry is answered from the stored commit (read back from the log, since later
    // commits followed), opened the same way.
    let retried = system
        .sessions
        .write_member_note(member_note(&session, &sam, SAM_NOTE, "note-sam"))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(texts(&retried), (SAM_NOTE.to_owned(), vec![]));

    // The session sheet shows them in clear to the group's facilitator.
    let token = amended.consistency_token;
    assert_eq!(
        texts(&sheet_note(&system, &session, &sam, &token).await?),
        (SAM_NOTE.to_owned(), vec![SAM_AMENDMENT.to_owned()])
    );
    assert_eq!(
        texts(&sheet_note(&system, &session, &jordan, &token).await?),
        (JORDAN_NOTE.to_owned(), vec![])
    );

    // At rest none of it is readable: not in any message of the SESSIONS stream…
    let messages =
        support::stream_messages(&system, &system.env.config.stream_name("sessions")).await?;
    assert!(!messages.is_empty(), "the stream was read");
    assert!(messages.len() >= 8, "{} messages", messages.len());
    for plaintext in PLAINTEXTS {
        assert!(
            !messages
                .iter()
                .any(|bytes| support::contains(bytes, plaintext)),
            "{plaintext:?} is in the SESSIONS stream"
        );
    }
    // …nor in any text column of the read model or the roster, whose rows are there.
    for plaintext in PLAINTEXTS {
        assert_eq!(
            columns_holding(&system, plaintext).await?,
            Vec::<String>::new(),
            "{plaintext:?}"
        );
    }
    let sealed_rows: Vec<String> = sqlx::query_scalar(
        "SELECT share FROM sessions.check_ins
         UNION ALL SELECT text FROM sessions.notes
         UNION ALL SELECT text FROM sessions.note_amendments",
    )
    .fetch_all(&system.env.pool)
    .await?;
    assert_eq!(sealed_rows.len(), 5, "{sealed_rows:?}");
    assert!(
        sealed_rows.iter().all(|text| text.starts_with("v1.")),
        "{sealed_rows:?}"
    );
    // The shares are sealed for their member's check-ins, as accountability opens them.
    let mut shares = opened_shares(&system).await?;
    shares.sort();
    assert_eq!(
        shares,
        [
            ("jordan".to_owned(), JORDAN_SHARE.to_owned()),
            ("sam".to_owned(), SAM_SHARE.to_owned()),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_forgotten_members_text_reads_redacted_and_nothing_new_is_recorded_about_them()
-> anyhow::Result<()> {
    let (mut system, session, sam, jordan) = session_with_two_members().await?;
    for (participant, share) in [(&sam, SAM_SHARE), (&jordan, JORDAN_SHARE)] {
        system
            .sessions
            .record_session_check_in(check_in(&session, participant, share))
            .await?;
    }
    let mut notes = Vec::new();
    for (participant, text, amendment) in [
        (&sam, SAM_NOTE, SAM_AMENDMENT),
        (&jordan, JORDAN_NOTE, JORDAN_AMENDMENT),
    ] {
        let note = system
            .sessions
            .write_member_note(member_note(&session, participant, text, ""))
            .await?
            .into_inner()
            .note
            .map(|note| note.name)
            .unwrap_or_default();
        system.sessions.sign_note(sign(&note)).await?;
        system.sessions.amend_note(amend(&note, amendment)).await?;
        notes.push(note);
    }
    let (sams_note, jordans_note) = (notes[0].clone(), notes[1].clone());

    // Jordan is forgotten: their key is destroyed in the services' key store.
    assert!(system.key_store().await?.forget(NETWORK, "jordan").await?);

    // Every read shows their text redacted, with no projection work; Sam's stays.
    let token = system.sessions_stream_last_sequence().await?.to_string();
    assert_eq!(
        texts(&sheet_note(&system, &session, &jordan, &token).await?),
        (REDACTED.to_owned(), vec![REDACTED.to_owned()])
    );
    assert_eq!(
        texts(&sheet_note(&system, &session, &sam, &token).await?),
        (SAM_NOTE.to_owned(), vec![SAM_AMENDMENT.to_owned()])
    );
    let mut shares = opened_shares(&system).await?;
    shares.sort();
    assert_eq!(
        shares,
        [
            ("jordan".to_owned(), REDACTED.to_owned()),
            ("sam".to_owned(), SAM_SHARE.to_owned()),
        ]
    );

    // Nothing new is recorded about Jordan: a check-in (with a share or without),
    // attendance, a note's amendment are refused, and nothing is appended.
    let before = system.sessions_stream_last_sequence().await?;
    let forgotten = (
        Code::FailedPrecondition,
        "PARTICIPANT_FORGOTTEN".to_owned(),
        Vec::<String>::new(),
    );
    assert_eq!(
        refusal(
            system
                .sessions
                .record_session_check_in(check_in(&session, &jordan, "Back again."))
                .await
        ),
        forgotten
    );
    assert_eq!(
        refusal(
            system
                .sessions
                .record_session_check_in(check_in(&session, &jordan, ""))
                .await
        ),
        forgotten
    );
    // (Attendance as already recorded changes nothing and appends nothing; a change
    // to it is what must be refused.)
    let mut changed = attendance(&session, &jordan);
    changed.get_mut().status = pb::AttendanceStatus::LeftEarly as i32;
    changed.get_mut().minutes_attended = 45;
    assert_eq!(
        refusal(system.sessions.record_attendance(changed).await),
        forgotten
    );
    assert_eq!(
        refusal(
            system
                .sessions
                .amend_note(amend(&jordans_note, "Late entry: called in."))
                .await
        ),
        forgotten
    );
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new()
    );

    // Sam's record goes on as before, answered in clear.
    system
        .sessions
        .record_session_check_in(check_in(&session, &sam, "Still going."))
        .await?;
    let amended = system
        .sessions
        .amend_note(amend(&sams_note, "Late entry: stayed after for coffee."))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(
        texts(&amended).1,
        [SAM_AMENDMENT, "Late entry: stayed after for coffee."]
    );
    Ok(())
}

#[tokio::test]
async fn a_forgotten_members_note_waits_redacted_and_can_still_be_signed() -> anyhow::Result<()> {
    let (mut system, session, _sam, jordan) = session_with_two_members().await?;
    let note = system
        .sessions
        .write_member_note(member_note(&session, &jordan, JORDAN_NOTE, "note-jordan"))
        .await?
        .into_inner()
        .note
        .map(|note| note.name)
        .unwrap_or_default();
    assert!(system.key_store().await?.forget(NETWORK, "jordan").await?);

    // A new note about them is refused; a retry of the one written is answered, redacted.
    assert_eq!(
        refusal(
            system
                .sessions
                .write_member_note(member_note(&session, &jordan, JORDAN_NOTE, ""))
                .await
        ),
        (
            Code::FailedPrecondition,
            "PARTICIPANT_FORGOTTEN".to_owned(),
            Vec::new()
        )
    );
    let retried = system
        .sessions
        .write_member_note(member_note(&session, &jordan, JORDAN_NOTE, "note-jordan"))
        .await?
        .into_inner()
        .note
        .unwrap_or_default();
    assert_eq!(texts(&retried), (REDACTED.to_owned(), vec![]));

    // The facilitator's queue shows it redacted; signing it empties the queue.
    let client = system.sessions.clone();
    let queue = |consistency_token: String| {
        let mut sessions = client.clone();
        async move {
            anyhow::Ok(
                sessions
                    .list_unsigned_notes(as_facilitator(pb::ListUnsignedNotesRequest {
                        parent: format!("networks/{NETWORK}/staff/staff-1"),
                        consistency_token,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .items,
            )
        }
    };
    let token = system.sessions_stream_last_sequence().await?.to_string();
    let waiting: Vec<(String, String)> = queue(token)
        .await?
        .into_iter()
        .filter_map(|item| item.note)
        .map(|note| (note.name, note.text))
        .collect();
    assert_eq!(waiting, [(note.clone(), REDACTED.to_owned())]);
    let signed = system.sessions.sign_note(sign(&note)).await?.into_inner();
    assert_eq!(
        signed.note.map(|note| (note.signed, note.text)),
        Some((true, REDACTED.to_owned()))
    );
    assert!(
        queue(signed.consistency_token)
            .await?
            .iter()
            .all(|item| item.note.is_none())
    );
    Ok(())
}
