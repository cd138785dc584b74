//! The sessions service fed by the enrollment service: rosters, schedules, attendance,
//! check-ins, notes and the billing export.

use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as pb;
use tonic::Code;

use crate::support::{System, admin, as_caller, as_facilitator, eventually, on_roster, refusal};

fn utc(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp())
}

#[tokio::test]
async fn members_appear_on_future_sessions_only_and_leave_future_sessions_only()
-> anyhow::Result<()> {
    // Friday 20 Nov 2026, noon UTC.
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let member = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    let past = system.session_on(&group, "2026-11-17")?;
    let next = system.session_on(&group, "2026-11-24")?;
    let later = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&later, |_| true).await?;

    system.enroll(&group, &member).await?;
    system
        .wait_for_session(&next, |session| on_roster(session, &member))
        .await?;
    system
        .wait_for_session(&later, |session| on_roster(session, &member))
        .await?;
    assert!(
        !on_roster(&system.wait_for_session(&past, |_| true).await?, &member),
        "not on a session before joining"
    );

    // Tuesday's session takes place; on Thursday the member is discharged.
    system.clock.advance(chrono::Duration::days(6));
    system
        .enrollment
        .discharge_participant(admin(enrollment::DischargeParticipantRequest {
            name: format!("{group}/memberships/sam"),
            reason: enrollment::EndReason::Completed as i32,
            request_id: String::new(),
        }))
        .await?;
    system
        .wait_for_session(&later, |session| !on_roster(session, &member))
        .await?;
    let attended = system.wait_for_session(&next, |_| true).await?;
    assert!(
        on_roster(&attended, &member),
        "still on the session that happened before the discharge"
    );
    Ok(())
}

#[tokio::test]
async fn generated_sessions_keep_their_local_time_across_the_daylight_saving_change()
-> anyhow::Result<()> {
    // Sunday 25 Oct 2026: Chicago changes from CDT to CST on 1 Nov.
    let mut system = System::start_at("2026-10-25T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-10-01")
        .await?;
    let before = system
        .wait_for_session(&system.session_on(&group, "2026-10-27")?, |_| true)
        .await?;
    let after = system
        .wait_for_session(&system.session_on(&group, "2026-11-03")?, |_| true)
        .await?;
    assert_eq!(
        before.start_time.map(|t| t.seconds),
        Some(utc("2026-10-27T23:30:00Z")?),
        "18:30 CDT"
    );
    assert_eq!(
        after.start_time.map(|t| t.seconds),
        Some(utc("2026-11-04T00:30:00Z")?),
        "18:30 CST"
    );
    // The materialiser creates the sessions one by one: wait for the third, then check
    // that the window holds exactly these three.
    let (start, end) = (utc("2026-10-26T00:00:00Z")?, utc("2026-11-12T00:00:00Z")?);
    let client = system.sessions.clone();
    let listed = eventually(
        || {
            let mut client = client.clone();
            let parent = group.clone();
            async move {
                Ok(client
                    .list_sessions(admin(pb::ListSessionsRequest {
                        parent,
                        start_time: Some(prost_types::Timestamp {
                            seconds: start,
                            nanos: 0,
                        }),
                        end_time: Some(prost_types::Timestamp {
                            seconds: end,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .sessions)
            }
        },
        |sessions: &Vec<pb::Session>| sessions.len() >= 3,
    )
    .await?;
    let local_starts: Vec<i64> = listed
        .iter()
        .filter_map(|session| session.start_time.map(|t| t.seconds))
        .collect();
    assert_eq!(
        local_starts,
        [
            utc("2026-10-27T23:30:00Z")?,
            utc("2026-11-04T00:30:00Z")?,
            utc("2026-11-11T00:30:00Z")?
        ],
        "27 Oct, 3 Nov and 10 Nov, each at 18:30 local time"
    );
    Ok(())
}

/// A started ad hoc session of a group with two members, Sam (attends) and Jordan Kim
/// (absent, known to the group as "Sunny"), and a registered non-member.
struct Sheet {
    system: System,
    session: String,
    sam: String,
    jordan: String,
    stranger: String,
}

async fn started_session() -> anyhow::Result<Sheet> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let sam = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    let jordan = system
        .participant(&clinic, "jordan", "Jordan", "Kim")
        .await?;
    let stranger = system
        .participant(&clinic, "stranger", "Alex", "Moreau")
        .await?;
    system
        .enrollment
        .record_consent(admin(enrollment::RecordConsentRequest {
            parent: jordan.clone(),
            consent: Some(enrollment::Consent {
                kind: enrollment::ConsentKind::PeerVisibility as i32,
                display: enrollment::PeerDisplay::Alias as i32,
                alias: "Sunny".into(),
                share_check_ins: true,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?;
    system.enroll(&group, &sam).await?;
    system.enroll(&group, &jordan).await?;
    // The sessions service learns of the group from the enrollment stream: wait until
    // it has (its next generated session shows both members).
    let next = system.session_on(&group, "2026-11-24")?;
    system
        .wait_for_session(&next, |s| s.roster.len() == 2)
        .await?;
    let scheduled = system
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
        .into_inner();
    let session = scheduled.session.map(|s| s.name).unwrap_or_default();
    system
        .wait_for_session(&session, |s| on_roster(s, &sam) && on_roster(s, &jordan))
        .await?;
    system.clock.advance(chrono::Duration::hours(1));
    system
        .sessions
        .start_session(admin(pb::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    Ok(Sheet {
        system,
        session,
        sam,
        jordan,
        stranger,
    })
}

fn attendance(
    session: &str,
    participant: &str,
    status: pb::AttendanceStatus,
    minutes: u32,
) -> tonic::Request<pb::RecordAttendanceRequest> {
    admin(pb::RecordAttendanceRequest {
        name: session.into(),
        participant: participant.into(),
        status: status as i32,
        minutes_attended: minutes,
        request_id: String::new(),
    })
}

fn member_note(
    session: &str,
    participant: &str,
    text: &str,
) -> tonic::Request<pb::WriteMemberNoteRequest> {
    as_caller(
        pb::WriteMemberNoteRequest {
            name: session.into(),
            participant: participant.into(),
            text: text.into(),
            request_id: String::new(),
        },
        "facilitator",
        "staff-1",
    )
}

#[tokio::test]
async fn attendance_is_for_the_roster_within_the_session_length() -> anyhow::Result<()> {
    let Sheet {
        mut system,
        session,
        sam,
        jordan,
        stranger,
    } = started_session().await?;
    let before = system.sessions_stream_last_sequence().await?;
    let walk_in = system
        .sessions
        .record_attendance(attendance(
            &session,
            &stranger,
            pb::AttendanceStatus::Present,
            90,
        ))
        .await;
    assert_eq!(
        refusal(walk_in),
        (Code::FailedPrecondition, "NOT_ON_ROSTER".into(), vec![])
    );
    let too_long = system
        .sessions
        .record_attendance(attendance(
            &session,
            &sam,
            pb::AttendanceStatus::Present,
            120,
        ))
        .await;
    assert_eq!(
        refusal(too_long),
        (
            Code::InvalidArgument,
            "INVALID_MINUTES".into(),
            vec!["minutes_attended".into()]
        )
    );
    let no_status = system
        .sessions
        .record_attendance(attendance(
            &session,
            &sam,
            pb::AttendanceStatus::Unspecified,
            90,
        ))
        .await;
    assert_eq!(refusal(no_status).2, vec!["status".to_owned()]);
    let unknown = system
        .sessions
        .record_attendance(attendance(
            &format!("{}-nope", session),
            &sam,
            pb::AttendanceStatus::Present,
            90,
        ))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );

    let recorded = system
        .sessions
        .record_attendance(attendance(&session, &sam, pb::AttendanceStatus::Late, 75))
        .await?
        .into_inner();
    assert_eq!(
        recorded.entry.map(|e| (e.attendance, e.minutes_attended)),
        Some((pb::AttendanceStatus::Late as i32, 75))
    );
    system
        .sessions
        .record_attendance(attendance(
            &session,
            &jordan,
            pb::AttendanceStatus::Absent,
            0,
        ))
        .await?;

    // Check-ins come from members who are there.
    let check_in = |participant: &str, mood: u32| {
        admin(pb::RecordSessionCheckInRequest {
            name: session.clone(),
            participant: participant.into(),
            mood,
            craving: 2,
            share: "Thirty days today.".into(),
            request_id: String::new(),
        })
    };
    let last_write = system
        .sessions
        .record_session_check_in(check_in(&sam, 7))
        .await?
        .into_inner()
        .consistency_token;
    assert_eq!(
        refusal(
            system
                .sessions
                .record_session_check_in(check_in(&jordan, 5))
                .await
        )
        .1,
        "MEMBER_ABSENT"
    );
    assert_eq!(
        refusal(
            system
                .sessions
                .record_session_check_in(check_in(&sam, 11))
                .await
        )
        .2,
        vec!["mood".to_owned()]
    );

    let sheet = system
        .sessions
        .get_session(admin(pb::GetSessionRequest {
            name: session.clone(),
            consistency_token: last_write,
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    let rows: Vec<(String, i32, bool)> = sheet
        .roster
        .iter()
        .map(|e| (e.participant.clone(), e.attendance, e.checked_in))
        .collect();
    assert_eq!(
        rows,
        [
            (jordan.clone(), pb::AttendanceStatus::Absent as i32, false),
            (sam.clone(), pb::AttendanceStatus::Late as i32, true)
        ]
    );

    // Nothing is recorded on a cancelled session.
    let other = system
        .sessions
        .schedule_session(admin(pb::ScheduleSessionRequest {
            parent: session
                .rsplit_once("/sessions/")
                .map(|(group, _)| group.to_owned())
                .unwrap_or_default(),
            session_id: "cancelled".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: utc("2026-11-21T13:00:00Z")?,
                nanos: 0,
            }),
            duration_minutes: 60,
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .session
        .map(|s| s.name)
        .unwrap_or_default();
    system
        .sessions
        .cancel_session(admin(pb::CancelSessionRequest {
            name: other.clone(),
            reason: "Clinic closed for snow".into(),
            request_id: String::new(),
        }))
        .await?;
    let on_cancelled = system
        .sessions
        .record_attendance(attendance(&other, &sam, pb::AttendanceStatus::Present, 60))
        .await;
    assert_eq!(refusal(on_cancelled).1, "SESSION_CANCELLED");
    Ok(())
}

#[tokio::test]
async fn member_notes_stand_alone_and_signed_notes_change_only_by_amendment() -> anyhow::Result<()>
{
    let Sheet {
        mut system,
        session,
        sam,
        jordan,
        ..
    } = started_session().await?;
    system
        .sessions
        .record_attendance(attendance(
            &session,
            &sam,
            pb::AttendanceStatus::Present,
            90,
        ))
        .await?;
    system
        .sessions
        .record_attendance(attendance(
            &session,
            &jordan,
            pb::AttendanceStatus::Absent,
            0,
        ))
        .await?;
    let before = system.sessions_stream_last_sequence().await?;

    let absent = system
        .sessions
        .write_member_note(member_note(&session, &jordan, "Did not attend."))
        .await;
    assert_eq!(refusal(absent).1, "MEMBER_ABSENT");
    let naming = system
        .sessions
        .write_member_note(member_note(
            &session,
            &sam,
            "Offered support to jordan after the break.",
        ))
        .await;
    let Err(status) = naming else {
        anyhow::bail!("a note naming another member must be refused")
    };
    use tonic_types::StatusExt;
    let Some(info) = status.get_details_error_info() else {
        anyhow::bail!("no ErrorInfo")
    };
    assert_eq!(
        (status.code(), info.reason.as_str()),
        (Code::InvalidArgument, "NAMES_ANOTHER_MEMBER")
    );
    assert_eq!(
        (
            info.metadata.get("span_start").map(String::as_str),
            info.metadata.get("span_end").map(String::as_str)
        ),
        (Some("19"), Some("25")),
        "the offending span is reported"
    );
    let alias = system
        .sessions
        .write_member_note(member_note(
            &session,
            &sam,
            "Sunny's story moved the client.",
        ))
        .await;
    assert_eq!(
        refusal(alias).1,
        "NAMES_ANOTHER_MEMBER",
        "a peer alias counts as a name"
    );
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );

    let written = system
        .sessions
        .write_member_note(member_note(
            &session,
            &sam,
            "Engaged; described a new coping plan for weekends.",
        ))
        .await?
        .into_inner();
    let note = written.note.map(|n| n.name).unwrap_or_default();
    assert!(note.ends_with("/notes/sam"));
    let sign = || {
        as_caller(
            pb::SignNoteRequest {
                name: note.clone(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        )
    };
    system.sessions.sign_note(sign()).await?;
    assert_eq!(
        refusal(system.sessions.sign_note(sign()).await).1,
        "NOTE_ALREADY_SIGNED"
    );
    let edit = system
        .sessions
        .write_member_note(member_note(&session, &sam, "Changed my mind."))
        .await;
    assert_eq!(refusal(edit).1, "NOTE_SIGNED");
    let amend = |text: &str| {
        as_caller(
            pb::AmendNoteRequest {
                name: note.clone(),
                text: text.into(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        )
    };
    assert_eq!(
        refusal(
            system
                .sessions
                .amend_note(amend("Spoke with Kim afterwards."))
                .await
        )
        .1,
        "NAMES_ANOTHER_MEMBER"
    );
    system
        .sessions
        .amend_note(amend("Correction: plan covers weekday evenings too."))
        .await?;

    // The shared narrative may name the group's work but is signed the same way.
    let shared = system
        .sessions
        .write_shared_note(as_facilitator(pb::WriteSharedNoteRequest {
            name: session.clone(),
            text: "Theme: building routines for the holidays.".into(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let shared_name = shared.note.map(|n| n.name).unwrap_or_default();
    let latest = shared.consistency_token;
    assert!(shared_name.ends_with("/notes/shared"));

    let sheet_for = |viewer: tonic::Request<pb::GetSessionRequest>| {
        let mut sessions = system.sessions.clone();
        async move {
            anyhow::Ok(
                sessions
                    .get_session(viewer)
                    .await?
                    .into_inner()
                    .session
                    .unwrap_or_default(),
            )
        }
    };
    let read = || pb::GetSessionRequest {
        name: session.clone(),
        consistency_token: latest.clone(),
    };
    let sheet = sheet_for(as_facilitator(read())).await?;
    let sams = sheet
        .roster
        .iter()
        .find(|e| e.participant == sam)
        .and_then(|e| e.note.clone())
        .unwrap_or_default();
    assert!(sams.signed);
    assert_eq!(sams.signed_by, "staff-1");
    assert_eq!(
        sams.text, "Engaged; described a new coping plan for weekends.",
        "the signed text is kept as signed"
    );
    assert!(!sams.text_withheld);
    assert_eq!(
        sams.amendments
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>(),
        ["Correction: plan covers weekday evenings too."]
    );
    assert!(sheet.shared_note.clone().is_some_and(|n| !n.signed));

    // Anyone else who may see the session sees the notes' status, not their text: an
    // admin, intake, a facilitator of another group, a calling service alike.
    for viewer in [
        admin(read()),
        as_caller(read(), "clinic-admin", "admin-2"),
        as_caller(read(), "intake-coordinator", "intake-1"),
        as_caller(read(), "facilitator", "staff-2"),
    ] {
        let withheld = sheet_for(viewer).await?;
        let note = |sheet: &pb::Session| {
            sheet
                .roster
                .iter()
                .find(|e| e.participant == sam)
                .and_then(|e| e.note.clone())
                .unwrap_or_default()
        };
        let (seen, shown) = (note(&withheld), note(&sheet));
        assert!(seen.text_withheld && seen.text.is_empty());
        assert_eq!(
            (seen.signed, &seen.signed_by, seen.sign_time, &seen.name),
            (shown.signed, &shown.signed_by, shown.sign_time, &shown.name)
        );
        assert_eq!(
            seen.amendments
                .iter()
                .map(|a| (a.text.as_str(), a.staff_id.as_str(), a.time))
                .collect::<Vec<_>>(),
            shown
                .amendments
                .iter()
                .map(|a| ("", a.staff_id.as_str(), a.time))
                .collect::<Vec<_>>()
        );
        assert!(
            withheld
                .shared_note
                .is_some_and(|n| n.text_withheld && n.text.is_empty())
        );
        assert_eq!(withheld.roster.len(), sheet.roster.len());
    }

    // Only the group's own facilitators write, sign and amend its notes.
    let by = |role: &'static str, actor: &'static str| {
        as_caller(
            pb::SignNoteRequest {
                name: shared_name.clone(),
                request_id: String::new(),
            },
            role,
            actor,
        )
    };
    for (role, actor, reason) in [
        ("facilitator", "staff-2", "NOT_A_FACILITATOR"),
        ("network-admin", "admin-1", "ROLE_NOT_ALLOWED"),
        ("clinic-admin", "admin-2", "ROLE_NOT_ALLOWED"),
    ] {
        assert_eq!(
            refusal(system.sessions.sign_note(by(role, actor)).await),
            (Code::PermissionDenied, reason.to_owned(), Vec::new()),
            "{role} {actor}"
        );
    }

    // The facilitator's queue holds the unsigned shared note and the unclosed session.
    let queue = system
        .sessions
        .list_unsigned_notes(as_caller(
            pb::ListUnsignedNotesRequest {
                parent: "networks/acme/staff/staff-1".into(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ))
        .await?
        .into_inner();
    let items: Vec<(String, Option<String>)> = queue
        .items
        .iter()
        .filter(|item| item.session.as_ref().is_some_and(|s| s.name == session))
        .map(|item| {
            (
                item.session
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                item.note.as_ref().map(|n| n.name.clone()),
            )
        })
        .collect();
    assert_eq!(items, [(session.clone(), Some(shared_name.clone()))]);
    let texts = |queue: &pb::ListUnsignedNotesResponse| -> Vec<(String, bool)> {
        queue
            .items
            .iter()
            .filter_map(|item| item.note.as_ref())
            .map(|note| (note.text.clone(), note.text_withheld))
            .collect()
    };
    assert_eq!(
        texts(&queue),
        [(
            "Theme: building routines for the holidays.".to_owned(),
            false
        )]
    );
    // An admin looking at the facilitator's queue sees what waits, not what it says.
    let supervised = system
        .sessions
        .list_unsigned_notes(admin(pb::ListUnsignedNotesRequest {
            parent: "networks/acme/staff/staff-1".into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(texts(&supervised), [(String::new(), true)]);
    let someone_elses = system
        .sessions
        .list_unsigned_notes(as_caller(
            pb::ListUnsignedNotesRequest {
                parent: "networks/acme/staff/staff-2".into(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ))
        .await;
    assert_eq!(refusal(someone_elses).0, Code::PermissionDenied);
    Ok(())
}

#[tokio::test]
async fn billing_exports_attendees_only_and_flags_sessions_over_the_payer_cap() -> anyhow::Result<()>
{
    let mut system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.sessions.payer_cap = 2
    })
    .await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let mut people = Vec::new();
    for (id, given) in [
        ("a", "Avery"),
        ("b", "Blake"),
        ("c", "Casey"),
        ("d", "Drew"),
    ] {
        let participant = system.participant(&clinic, id, given, "Lopez").await?;
        system.enroll(&group, &participant).await?;
        people.push(participant);
    }
    let session = system.session_on(&group, "2026-11-24")?;
    system
        .wait_for_session(&session, |s| s.roster.len() == 4)
        .await?;
    system.clock.advance(chrono::Duration::days(4));
    system
        .sessions
        .start_session(admin(pb::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    for (participant, status, minutes) in [
        (&people[0], pb::AttendanceStatus::Present, 90),
        (&people[1], pb::AttendanceStatus::Late, 80),
        (&people[2], pb::AttendanceStatus::LeftEarly, 45),
        (&people[3], pb::AttendanceStatus::Absent, 0),
    ] {
        system
            .sessions
            .record_attendance(attendance(&session, participant, status, minutes))
            .await?;
    }
    let closed = system
        .sessions
        .close_session(admin(pb::CloseSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let export = system
        .sessions
        .export_billing(admin(pb::ExportBillingRequest {
            clinic: clinic.clone(),
            start_date: "2026-11-24".into(),
            end_date: "2026-11-24".into(),
            consistency_token: closed.consistency_token.clone(),
        }))
        .await?
        .into_inner();
    let lines: Vec<(String, String, u32, u32, bool)> = export
        .lines
        .iter()
        .map(|l| {
            (
                l.participant.clone(),
                l.code.clone(),
                l.minutes_attended,
                l.attendee_count,
                l.over_payer_cap,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (people[0].clone(), "90853".into(), 90, 3, true),
            (people[1].clone(), "90853".into(), 80, 3, true),
            (people[2].clone(), "90853".into(), 45, 3, true),
        ],
        "the absentee is not billed"
    );
    let other_day = system
        .sessions
        .export_billing(admin(pb::ExportBillingRequest {
            clinic: clinic.clone(),
            start_date: "2026-11-25".into(),
            end_date: "2026-11-30".into(),
            consistency_token: String::new(),
        }))
        .await?
        .into_inner();
    assert!(
        other_day.lines.is_empty(),
        "the session is on the 24th, local time"
    );

    let history = system
        .sessions
        .get_attendance_history(admin(pb::GetAttendanceHistoryRequest {
            participant: people[3].clone(),
            consistency_token: closed.consistency_token,
        }))
        .await?
        .into_inner();
    assert_eq!(
        (
            history.sessions_attended,
            history.sessions_missed,
            history.attendance_rate
        ),
        (0, 1, 0.0)
    );
    Ok(())
}

#[tokio::test]
async fn the_roster_projection_survives_a_restart_and_a_rebuild() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let mut members = Vec::new();
    for id in ["a", "b", "c"] {
        let participant = system.participant(&clinic, id, "Robin", id).await?;
        system.enroll(&group, &participant).await?;
        members.push(participant);
    }
    system
        .enrollment
        .hold_membership(admin(enrollment::HoldMembershipRequest {
            name: format!("{group}/memberships/b"),
            ..Default::default()
        }))
        .await?;
    // Two on the roster is also the state before c's admission is projected: wait for
    // exactly a and c (b on hold), which only the whole log gives.
    let next = system.session_on(&group, "2026-11-24")?;
    let (a, c) = (members[0].clone(), members[2].clone());
    system
        .wait_for_session(&next, |s| {
            s.roster.len() == 2 && on_roster(s, &a) && on_roster(s, &c)
        })
        .await?;

    let pool = system.env.pool.clone();
    let snapshot = || {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT format('%s', t) FROM (
                    SELECT 'group' AS kind, group_id AS id, clinic_id AS a, time_zone AS b, archived::text AS c FROM sessions_roster.groups
                    UNION ALL SELECT 'period', participant_id, group_id, from_at::text, coalesce(to_at::text, '') FROM sessions_roster.member_periods
                    UNION ALL SELECT 'name', participant_id, given_name, family_name, array_to_string(aliases, ',') FROM sessions_roster.member_names
                 ) t ORDER BY 1",
            )
            .fetch_all(&pool)
            .await?;
            anyhow::Ok(rows)
        }
    };
    let before = snapshot().await?;
    assert_eq!(
        before.len(),
        1 + 3 + 3,
        "one group, three periods (one closed by the hold), three names"
    );

    system.restart().await?;
    // Once the restarted roster shows a later registration it has read everything
    // after its checkpoint: the only change is that new name.
    system.participant(&clinic, "d", "Dana", "d").await?;
    // (Names are sealed at rest: the new one is known by its participant id.)
    let after = eventually(&snapshot, |rows: &Vec<(String,)>| {
        rows.iter().any(|(row,)| row.starts_with("(name,d,"))
    })
    .await?;
    assert_eq!(
        after
            .into_iter()
            .filter(|(row,)| !row.starts_with("(name,d,"))
            .collect::<Vec<_>>(),
        before,
        "a restart changes nothing"
    );
    let before = snapshot().await?;

    let stream = system
        .env
        .jetstream()
        .get_stream(system.env.config.stream_name("enrollment"))
        .await?;
    let settings = circle_projection::ProjectionSettings {
        batch_size: 64,
        ack_wait: std::time::Duration::from_secs(2),
        max_attempts: 3,
        ..Default::default()
    };
    let report = circle_projection::rebuild(
        &circle_sessions::roster::Roster,
        &system.env.database().await?,
        circle_sessions::roster::SCHEMA,
        &stream,
        &settings,
    )
    .await?;
    assert_eq!(report.dead_letters, 0);
    assert_eq!(
        snapshot().await?,
        before,
        "a rebuild from the log gives the same roster"
    );
    let sheet = system.wait_for_session(&next, |_| true).await?;
    assert_eq!(sheet.roster.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_session_is_rescheduled_only_before_it_starts_and_closed_only_after() -> anyhow::Result<()>
{
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let session = system.session_on(&group, "2026-11-24")?;
    let generated = system.wait_for_session(&session, |_| true).await?;
    let moved_to = prost_types::Timestamp {
        seconds: utc("2026-11-25T00:00:00Z")?,
        nanos: 0,
    };
    let stale = system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: session.clone(),
            start_time: Some(moved_to),
            etag: "1".into(),
            ..Default::default()
        }))
        .await;
    assert_eq!(refusal(stale).1, "ETAG_MISMATCH");
    let moved = system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: session.clone(),
            start_time: Some(moved_to),
            duration_minutes: 60,
            etag: generated.etag.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    assert_eq!(
        (moved.start_time, moved.duration_minutes),
        (Some(moved_to), 60)
    );
    let before = system.sessions_stream_last_sequence().await?;
    let close_early = system
        .sessions
        .close_session(admin(pb::CloseSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        refusal(close_early),
        (
            Code::FailedPrecondition,
            "SESSION_NOT_STARTED".into(),
            vec![]
        )
    );
    let unknown = system
        .sessions
        .start_session(admin(pb::StartSessionRequest {
            name: format!("{group}/sessions/nope"),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
    let no_reason = system
        .sessions
        .cancel_session(admin(pb::CancelSessionRequest {
            name: session.clone(),
            reason: " ".into(),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(refusal(no_reason).2, vec!["reason".to_owned()]);
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );
    system
        .sessions
        .start_session(admin(pb::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    let too_late = system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: session.clone(),
            start_time: Some(moved_to),
            ..Default::default()
        }))
        .await;
    assert_eq!(refusal(too_late).1, "SESSION_ALREADY_STARTED");
    Ok(())
}

#[tokio::test]
async fn staff_of_one_clinic_cannot_reach_another_clinics_sessions_through_their_own_clinic_name()
-> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    system.clinic("north").await?;
    let south = system.clinic("south").await?;
    let group = system
        .weekly_group(&south, "southern", "2026-11-01")
        .await?;
    let session = system.session_on(&group, "2026-11-24")?;
    system.wait_for_session(&session, |_| true).await?;
    let disguised = session.replace("/clinics/south/", "/clinics/north/");
    let before = system.sessions_stream_last_sequence().await?;
    // A facilitator scoped to north names the south session under north.
    let start = system
        .sessions
        .start_session(as_caller(
            pb::StartSessionRequest {
                name: disguised.clone(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-9",
        ))
        .await;
    assert_eq!(refusal(start).0, Code::NotFound);
    let read = system
        .sessions
        .get_session(as_caller(
            pb::GetSessionRequest {
                name: disguised,
                consistency_token: String::new(),
            },
            "facilitator",
            "staff-9",
        ))
        .await;
    assert_eq!(refusal(read).0, Code::NotFound);
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new()
    );
    // Billing dates out of any sensible range are bad input, not a crash.
    let far = system
        .sessions
        .export_billing(admin(pb::ExportBillingRequest {
            clinic: south,
            start_date: "+262143-12-29".into(),
            end_date: "+262143-12-31".into(),
            consistency_token: String::new(),
        }))
        .await;
    assert_eq!(
        refusal(far).2,
        vec!["start_date".to_owned(), "end_date".to_owned()]
    );
    Ok(())
}

#[tokio::test]
async fn a_schedule_change_moves_generated_sessions_but_not_ones_staff_moved() -> anyhow::Result<()>
{
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let first = system.session_on(&group, "2026-11-24")?;
    let second = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&second, |_| true).await?;
    // Staff move the first session by an hour themselves.
    let moved_by_staff = prost_types::Timestamp {
        seconds: utc("2026-11-25T02:00:00Z")?,
        nanos: 0,
    };
    system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: first.clone(),
            start_time: Some(moved_by_staff),
            ..Default::default()
        }))
        .await?;
    // The group moves to 19:30.
    system
        .enrollment
        .update_group(admin(circle_proto::enrollment::v1::UpdateGroupRequest {
            group: Some(circle_proto::enrollment::v1::Group {
                name: group.clone(),
                schedule: Some(circle_proto::enrollment::v1::Schedule {
                    days: vec![circle_proto::enrollment::v1::Weekday::Tuesday as i32],
                    start_time: "19:30".into(),
                    duration_minutes: 60,
                    start_date: "2026-11-01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["schedule".into()],
            }),
            request_id: String::new(),
        }))
        .await?;
    let later = utc("2026-12-02T01:30:00Z")?;
    let moved = system
        .wait_for_session(&second, |s| s.start_time.map(|t| t.seconds) == Some(later))
        .await?;
    assert_eq!(moved.duration_minutes, 60);
    let kept = system.wait_for_session(&first, |_| true).await?;
    assert_eq!(
        kept.start_time,
        Some(moved_by_staff),
        "a session staff moved stays where they put it"
    );
    Ok(())
}

/// Moves the group's weekly Tuesday schedule to `start_time` (local), 90 minutes.
async fn move_schedule(system: &mut System, group: &str, start_time: &str) -> anyhow::Result<()> {
    system
        .enrollment
        .update_group(admin(enrollment::UpdateGroupRequest {
            group: Some(enrollment::Group {
                name: group.into(),
                schedule: Some(enrollment::Schedule {
                    days: vec![enrollment::Weekday::Tuesday as i32],
                    start_time: start_time.into(),
                    duration_minutes: 90,
                    start_date: "2026-11-01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["schedule".into()],
            }),
            request_id: String::new(),
        }))
        .await?;
    Ok(())
}

/// The schedule of a group as the sessions service's roster holds it, once it differs
/// from `known` (waits at most 15 s).
async fn roster_schedule_other_than(
    system: &System,
    group_id: &str,
    known: Option<Vec<u8>>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let pool = system.env.pool.clone();
    eventually(
        || {
            let pool = pool.clone();
            async move {
                let schedule: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                    "SELECT schedule FROM sessions_roster.groups WHERE group_id = $1",
                )
                .bind(group_id)
                .fetch_optional(&pool)
                .await?;
                anyhow::Ok(schedule.flatten())
            }
        },
        |schedule| schedule.is_some() && *schedule != known,
    )
    .await
}

/// A system whose own materialiser passes only at start (before any group exists), so
/// the test runs every pass itself.
async fn system_with_manual_materializer() -> anyhow::Result<System> {
    System::start_with("2026-11-20T12:00:00Z", |config| {
        config.sessions.materialize_poll_ms = 600_000
    })
    .await
}

#[tokio::test]
async fn a_schedule_that_flips_back_and_forth_moves_generated_sessions_every_time()
-> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let session = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&session, |_| true).await?;
    // 18:30 and 19:30 in Chicago (CST) on 1 Dec.
    let (evening, later) = (utc("2026-12-02T00:30:00Z")?, utc("2026-12-02T01:30:00Z")?);
    for (start_time, expected) in [("19:30", later), ("18:30", evening), ("19:30", later)] {
        move_schedule(&mut system, &group, start_time).await?;
        system
            .wait_for_session(&session, |s| {
                s.start_time.map(|t| t.seconds) == Some(expected)
            })
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_client_claiming_the_service_role_moves_a_session_as_staff_do() -> anyhow::Result<()> {
    // A calling service may move sessions: its identity is configured to.
    let mut system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.auth.services.insert(
            "integration-1".to_owned(),
            vec!["circle.sessions.v1.SessionsService/RescheduleSession".to_owned()],
        );
    })
    .await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let first = system.session_on(&group, "2026-11-24")?;
    let second = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&second, |_| true).await?;
    // A client with role `service` moves the first session itself; it is not the
    // materialiser, whatever role it claims.
    let moved_by_client = prost_types::Timestamp {
        seconds: utc("2026-11-25T02:00:00Z")?,
        nanos: 0,
    };
    let token = system
        .sessions
        .reschedule_session(as_caller(
            pb::RescheduleSessionRequest {
                name: first.clone(),
                start_time: Some(moved_by_client),
                ..Default::default()
            },
            "service",
            "integration-1",
        ))
        .await?
        .into_inner()
        .consistency_token;
    system
        .sessions
        .get_session(admin(pb::GetSessionRequest {
            name: first.clone(),
            consistency_token: token,
        }))
        .await?;
    move_schedule(&mut system, &group, "19:30").await?;
    let later = utc("2026-12-02T01:30:00Z")?;
    system
        .wait_for_session(&second, |s| s.start_time.map(|t| t.seconds) == Some(later))
        .await?;
    let kept = system.wait_for_session(&first, |_| true).await?;
    assert_eq!(
        kept.start_time,
        Some(moved_by_client),
        "a session a client moved stays where they put it"
    );
    Ok(())
}

#[tokio::test]
async fn the_materialiser_never_overwrites_a_staff_move_its_read_model_has_not_seen_yet()
-> anyhow::Result<()> {
    let mut system = system_with_manual_materializer().await?;
    let materializer = system.materializer().await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let schedule = roster_schedule_other_than(&system, "tuesday", None).await?;
    materializer.once().await.map_err(anyhow::Error::msg)?;
    let session = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&session, |_| true).await?;
    let session_id = session.rsplit('/').next().unwrap_or_default().to_owned();
    let pool = system.env.pool.clone();
    let row = |pool: sqlx::PgPool, session_id: String| async move {
        let row: (chrono::DateTime<chrono::Utc>, i64, bool) = sqlx::query_as(
            "SELECT starts_at, version, moved_by_staff FROM sessions.sessions WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_one(&pool)
        .await?;
        anyhow::Ok(row)
    };
    let generated = row(pool.clone(), session_id.clone()).await?;

    // Staff move the session; the move is in the log.
    let moved_by_staff = prost_types::Timestamp {
        seconds: utc("2026-12-02T02:00:00Z")?,
        nanos: 0,
    };
    let token = system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: session.clone(),
            start_time: Some(moved_by_staff),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .consistency_token;
    system
        .sessions
        .get_session(admin(pb::GetSessionRequest {
            name: session.clone(),
            consistency_token: token,
        }))
        .await?;
    // The materialiser's read model has not seen the move yet: put its row back as it
    // was before the move (as a lagging projection would show it).
    sqlx::query(
        "UPDATE sessions.sessions SET starts_at = $2, version = $3, moved_by_staff = $4 WHERE session_id = $1",
    )
    .bind(&session_id)
    .bind(generated.0)
    .bind(generated.1)
    .bind(generated.2)
    .execute(&pool)
    .await?;

    // The group moves to 19:30, and the materialiser makes a pass.
    move_schedule(&mut system, &group, "19:30").await?;
    roster_schedule_other_than(&system, "tuesday", schedule).await?;
    let before = system.sessions_stream_last_sequence().await?;
    materializer.once().await.map_err(anyhow::Error::msg)?;
    let reschedules: Vec<String> = system
        .request_ids_since(circle_sessions::stream_spec(&system.env.config), before)
        .await?
        .into_iter()
        .filter(|request_id| request_id.contains(&session_id))
        .collect();
    assert_eq!(
        reschedules,
        Vec::<String>::new(),
        "the session staff moved is not moved back to the schedule"
    );
    Ok(())
}

#[tokio::test]
async fn a_schedule_that_cannot_be_decoded_changes_no_session() -> anyhow::Result<()> {
    let mut system = system_with_manual_materializer().await?;
    let materializer = system.materializer().await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    roster_schedule_other_than(&system, "tuesday", None).await?;
    materializer.once().await.map_err(anyhow::Error::msg)?;
    let session = system.session_on(&group, "2026-12-01")?;
    system.wait_for_session(&session, |_| true).await?;

    // The recorded schedule is one this service cannot read (say, written by a newer
    // enrollment service).
    sqlx::query("UPDATE sessions_roster.groups SET schedule = $2 WHERE group_id = $1")
        .bind("tuesday")
        .bind(vec![0xff_u8, 0xff, 0xff])
        .execute(&system.env.pool)
        .await?;
    let before = system.sessions_stream_last_sequence().await?;
    let pass = materializer.once().await.map_err(anyhow::Error::msg)?;
    assert_eq!(
        system
            .request_ids_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new(),
        "no generated session is cancelled or moved"
    );
    assert_eq!(
        pass.unreadable_schedules,
        [("acme".to_owned(), "tuesday".to_owned())],
        "the unreadable schedule is reported"
    );
    Ok(())
}

#[tokio::test]
async fn a_scheduled_start_time_reads_the_same_in_the_answer_and_every_later_read()
-> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    // Once a generated session exists, the sessions service knows the group.
    system
        .wait_for_session(&system.session_on(&group, "2026-11-24")?, |_| true)
        .await?;
    let start_time = prost_types::Timestamp {
        seconds: utc("2026-11-26T17:00:00Z")?,
        nanos: 123_456_789,
    };
    let scheduled = system
        .sessions
        .schedule_session(admin(pb::ScheduleSessionRequest {
            parent: group.clone(),
            start_time: Some(start_time),
            duration_minutes: 90,
            request_id: "ad-hoc-nanos".into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    let read = system.wait_for_session(&scheduled.name, |_| true).await?;
    assert_eq!(
        scheduled.start_time, read.start_time,
        "ScheduleSession vs GetSession"
    );
    let moved = system
        .sessions
        .reschedule_session(admin(pb::RescheduleSessionRequest {
            name: scheduled.name.clone(),
            start_time: Some(prost_types::Timestamp {
                seconds: utc("2026-11-27T17:00:00Z")?,
                nanos: 987_654_321,
            }),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    let read = system
        .wait_for_session(&scheduled.name, |session| session.etag == moved.etag)
        .await?;
    assert_eq!(
        moved.start_time, read.start_time,
        "RescheduleSession vs GetSession"
    );
    Ok(())
}

#[tokio::test]
async fn sign_and_amend_answer_with_the_note_as_a_read_shows_it() -> anyhow::Result<()> {
    let Sheet {
        mut system,
        session,
        ..
    } = started_session().await?;
    system
        .sessions
        .write_shared_note(as_facilitator(pb::WriteSharedNoteRequest {
            name: session.clone(),
            text: "We talked about the holidays.".into(),
            request_id: String::new(),
        }))
        .await?;
    let note_name = format!("{session}/notes/shared");
    system
        .clock
        .advance(chrono::Duration::nanoseconds(1_234_567_891));
    let signed = system
        .sessions
        .sign_note(as_caller(
            pb::SignNoteRequest {
                name: note_name.clone(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?
        .into_inner();
    let read = system
        .sessions
        .get_session(as_facilitator(pb::GetSessionRequest {
            name: session.clone(),
            consistency_token: signed.consistency_token.clone(),
        }))
        .await?
        .into_inner()
        .session
        .and_then(|session| session.shared_note);
    assert_eq!(
        signed.note, read,
        "SignNote's answer is what GetSession shows"
    );
    assert_eq!(
        signed.note.as_ref().map(|note| note.signed_by.as_str()),
        Some("staff-1")
    );
    system.clock.advance(chrono::Duration::minutes(5));
    let amended = system
        .sessions
        .amend_note(as_caller(
            pb::AmendNoteRequest {
                name: note_name,
                text: "Correction: and the new year.".into(),
                request_id: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?
        .into_inner();
    let read = system
        .sessions
        .get_session(as_facilitator(pb::GetSessionRequest {
            name: session.clone(),
            consistency_token: amended.consistency_token.clone(),
        }))
        .await?
        .into_inner()
        .session
        .and_then(|session| session.shared_note);
    assert_eq!(
        amended.note, read,
        "AmendNote's answer is what GetSession shows"
    );
    assert_eq!(
        amended
            .note
            .map(|note| note.amendments.len())
            .unwrap_or_default(),
        1
    );
    Ok(())
}
