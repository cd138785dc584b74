//! The sessions service's matrix (README: "Who may do what: sessions").
//!
//! Placements: `north` and `south` (a clinic, its group, or the started session
//! `<clinic>-1` of that group, with its member: sam in north, pat in south; the north
//! group is led by staff-1, the south one by staff-3); `sam` and `pat` (a participant's
//! attendance history); `staff-1` and `staff-3` (a facilitator's unsigned-notes queue).

use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as pb;
use pb::sessions_service_client::SessionsServiceClient;
use tonic::transport::Channel;

use super::{ACME, Answer, OTHER, Row, with_token};
use crate::support::System;

/// What every caller may do in sessions, and where. Queries first: they must answer
/// `ok` on what was seeded, before any command changed it.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // rpc                     placement   admin  cadmin fac    facx   intake sam    pat    svc
    ("ListSessions",           "north",   "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("ListSessions",           "south",   "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    // The sheet for all staff of the clinic; its notes' text only for staff-1 (checked
    // in tests/it/sessions.rs: what each viewer sees).
    ("GetSession",             "north",   "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("GetSession",             "south",   "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    ("ListUnsignedNotes",      "staff-1", "ok     ok     ok     QUEUE  ROLE   ROLE   ROLE   ROLE"),
    ("ListUnsignedNotes",      "staff-3", "ok     ok     QUEUE  QUEUE  ROLE   ROLE   ROLE   ROLE"),
    ("GetAttendanceHistory",   "sam",     "ok     ok     ok     ok     ok     ok     RECORD ok"),
    ("GetAttendanceHistory",   "pat",     "ok     ok     ok     ok     ok     RECORD ok     ok"),
    ("ExportBilling",          "north",   "ok     ok     ROLE   ROLE   ROLE   ROLE   ROLE   ok"),
    ("ExportBilling",          "south",   "ok     CLINIC ROLE   ROLE   ROLE   ROLE   ROLE   ok"),
    // Commands: one request id per row (the first permitted caller's runs, the rest
    // are its retries), or a refusal of the domain.
    ("ScheduleSession",        "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("ScheduleSession",        "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
    ("RescheduleSession",      "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("RescheduleSession",      "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
    ("StartSession",           "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("StartSession",           "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
    ("RecordAttendance",       "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("RecordAttendance",       "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
    ("RecordSessionCheckIn",   "north",   "pass   pass   pass   pass   ROLE   pass   RECORD ROLE"),
    ("RecordSessionCheckIn",   "south",   "pass   CLINIC CLINIC CLINIC ROLE   RECORD pass   ROLE"),
    ("WriteSharedNote",        "north",   "ROLE   ROLE   pass   FAC    ROLE   ROLE   ROLE   ROLE"),
    ("WriteSharedNote",        "south",   "ROLE   ROLE   CLINIC CLINIC ROLE   ROLE   ROLE   ROLE"),
    ("WriteMemberNote",        "north",   "ROLE   ROLE   pass   FAC    ROLE   ROLE   ROLE   ROLE"),
    ("WriteMemberNote",        "south",   "ROLE   ROLE   CLINIC CLINIC ROLE   ROLE   ROLE   ROLE"),
    ("SignNote",               "north",   "ROLE   ROLE   pass   FAC    ROLE   ROLE   ROLE   ROLE"),
    ("SignNote",               "south",   "ROLE   ROLE   CLINIC CLINIC ROLE   ROLE   ROLE   ROLE"),
    ("AmendNote",              "north",   "ROLE   ROLE   pass   FAC    ROLE   ROLE   ROLE   ROLE"),
    ("AmendNote",              "south",   "ROLE   ROLE   CLINIC CLINIC ROLE   ROLE   ROLE   ROLE"),
    ("CloseSession",           "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("CloseSession",           "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
    ("CancelSession",          "north",   "pass   pass   pass   pass   ROLE   ROLE   ROLE   pass"),
    ("CancelSession",          "south",   "pass   CLINIC CLINIC CLINIC ROLE   ROLE   ROLE   pass"),
];

/// A clinic placement: the clinic, its group's lead and its member.
fn place(place: &str) -> (&'static str, &'static str, &'static str) {
    match place {
        "south" | "pat" | "staff-3" => ("south", "staff-3", "pat"),
        _ => ("north", "staff-1", "sam"),
    }
}

fn clinic(network: &str, clinic: &str) -> String {
    format!("networks/{network}/clinics/{clinic}")
}

fn group(network: &str, clinic_id: &str) -> String {
    format!("{}/groups/{clinic_id}-tue", clinic(network, clinic_id))
}

/// The session `seed` starts in a clinic's group.
fn session(network: &str, clinic_id: &str) -> String {
    format!("{}/sessions/{clinic_id}-1", group(network, clinic_id))
}

fn participant(network: &str, participant: &str) -> String {
    format!("networks/{network}/participants/{participant}")
}

fn at(text: &str) -> anyhow::Result<prost_types::Timestamp> {
    Ok(prost_types::Timestamp {
        seconds: chrono::DateTime::parse_from_rfc3339(text)?.timestamp(),
        nanos: 0,
    })
}

/// One call of `rpc` at `place`, with names of `network`, as the bearer of `token`.
async fn call(
    client: &SessionsServiceClient<Channel>,
    rpc: &'static str,
    at_place: &'static str,
    network: &'static str,
    token: String,
) -> anyhow::Result<Answer> {
    let mut client = client.clone();
    let n = network;
    let request_id = format!("matrix-{}-{at_place}", rpc.to_ascii_lowercase());
    let (clinic_id, _, member) = place(at_place);
    let t = token.as_str();
    let session = session(n, clinic_id);
    Ok(match rpc {
        "ListSessions" => Answer::of(
            client
                .list_sessions(with_token(
                    pb::ListSessionsRequest {
                        parent: group(n, clinic_id),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "GetSession" => Answer::of(
            client
                .get_session(with_token(
                    pb::GetSessionRequest {
                        name: session,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListUnsignedNotes" => Answer::of(
            client
                .list_unsigned_notes(with_token(
                    pb::ListUnsignedNotesRequest {
                        parent: format!("networks/{n}/staff/{at_place}"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "GetAttendanceHistory" => Answer::of(
            client
                .get_attendance_history(with_token(
                    pb::GetAttendanceHistoryRequest {
                        participant: participant(n, member),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ExportBilling" => Answer::of(
            client
                .export_billing(with_token(
                    pb::ExportBillingRequest {
                        clinic: clinic(n, clinic_id),
                        start_date: "2026-11-01".into(),
                        end_date: "2026-11-30".into(),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ScheduleSession" => Answer::of(
            client
                .schedule_session(with_token(
                    pb::ScheduleSessionRequest {
                        parent: group(n, clinic_id),
                        session_id: format!("{clinic_id}-extra"),
                        start_time: Some(at("2026-12-03T15:00:00Z")?),
                        duration_minutes: 60,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RescheduleSession" => Answer::of(
            client
                .reschedule_session(with_token(
                    pb::RescheduleSessionRequest {
                        name: format!("{}/sessions/{clinic_id}-extra", group(n, clinic_id)),
                        start_time: Some(at("2026-12-03T16:00:00Z")?),
                        request_id,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "CancelSession" => Answer::of(
            client
                .cancel_session(with_token(
                    pb::CancelSessionRequest {
                        name: format!("{}/sessions/{clinic_id}-extra", group(n, clinic_id)),
                        reason: "Facilitator unwell".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "StartSession" => Answer::of(
            client
                .start_session(with_token(
                    pb::StartSessionRequest {
                        name: session,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "CloseSession" => Answer::of(
            client
                .close_session(with_token(
                    pb::CloseSessionRequest {
                        name: session,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RecordAttendance" => Answer::of(
            client
                .record_attendance(with_token(
                    pb::RecordAttendanceRequest {
                        name: session,
                        participant: participant(n, member),
                        status: pb::AttendanceStatus::Late as i32,
                        minutes_attended: 70,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RecordSessionCheckIn" => Answer::of(
            client
                .record_session_check_in(with_token(
                    pb::RecordSessionCheckInRequest {
                        name: session,
                        participant: participant(n, member),
                        mood: 6,
                        craving: 3,
                        share: "Glad to be here.".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "WriteSharedNote" => Answer::of(
            client
                .write_shared_note(with_token(
                    pb::WriteSharedNoteRequest {
                        name: session,
                        text: "Theme: routines.".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "WriteMemberNote" => Answer::of(
            client
                .write_member_note(with_token(
                    pb::WriteMemberNoteRequest {
                        name: session,
                        participant: participant(n, member),
                        text: "Engaged; shared a plan for the weekend.".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "SignNote" => Answer::of(
            client
                .sign_note(with_token(
                    pb::SignNoteRequest {
                        name: format!("{session}/notes/{member}"),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "AmendNote" => Answer::of(
            client
                .amend_note(with_token(
                    pb::AmendNoteRequest {
                        name: format!("{session}/notes/shared"),
                        text: "Correction: and the holidays.".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        other => anyhow::bail!("no request for {other}"),
    })
}

/// What the matrix needs in `network`, made by that network's admin (and the groups'
/// facilitators, who alone write notes): in each of north and south a group (`-tue`,
/// led by staff-1 in north and staff-3 in south) with its member (sam, pat), and a
/// session `<clinic>-1` of it, started, the member present, with a member note and a
/// signed shared note.
async fn seed(system: &System, network: &str) -> anyhow::Result<()> {
    let mut enrollment = system.enrollment.clone();
    let mut sessions = system.sessions.clone();
    let admin = circle_testkit::token(network, "admin-1", &["network-admin"], &[]);
    let t = admin.as_str();
    for (clinic_id, lead, member) in [("north", "staff-1", "sam"), ("south", "staff-3", "pat")] {
        enrollment
            .create_clinic(with_token(
                enrollment::CreateClinicRequest {
                    parent: format!("networks/{network}"),
                    clinic_id: clinic_id.into(),
                    clinic: Some(enrollment::Clinic {
                        display_name: format!("Clinic {clinic_id}"),
                        time_zone: "America/Chicago".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        enrollment
            .create_group(with_token(
                enrollment::CreateGroupRequest {
                    parent: clinic(network, clinic_id),
                    group_id: format!("{clinic_id}-tue"),
                    group: Some(enrollment::Group {
                        display_name: "Tuesday evening process group".into(),
                        modality: "process".into(),
                        level_of_care: "intensive-outpatient".into(),
                        capacity: 12,
                        facilitators: vec![enrollment::Facilitator {
                            staff_id: lead.into(),
                            role: enrollment::FacilitatorRole::Lead as i32,
                        }],
                        schedule: Some(enrollment::Schedule {
                            days: vec![enrollment::Weekday::Tuesday as i32],
                            start_time: "18:30".into(),
                            duration_minutes: 90,
                            start_date: "2026-11-01".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        enrollment
            .register_participant(with_token(
                enrollment::RegisterParticipantRequest {
                    parent: format!("networks/{network}"),
                    participant_id: member.into(),
                    participant: Some(enrollment::Participant {
                        home_clinic: clinic(network, clinic_id),
                        profile: Some(enrollment::ParticipantProfile {
                            given_name: member.into(),
                            family_name: "Rivera".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        enrollment
            .enroll_participant(with_token(
                enrollment::EnrollParticipantRequest {
                    parent: group(network, clinic_id),
                    participant: participant(network, member),
                    ..Default::default()
                },
                t,
            ))
            .await?;
    }
    // A session an hour from now in each group, once the roster shows its member.
    let start = circle_calendar::Clock::now(system.clock.as_ref()) + chrono::Duration::hours(1);
    for (clinic_id, _, member) in [place("north"), place("south")] {
        let session_id = format!("{clinic_id}-1");
        super::until("the roster knows the member", || {
            let mut sessions = sessions.clone();
            let request = pb::ScheduleSessionRequest {
                parent: group(network, clinic_id),
                session_id: session_id.clone(),
                start_time: Some(prost_types::Timestamp {
                    seconds: start.timestamp(),
                    nanos: 0,
                }),
                duration_minutes: 90,
                request_id: format!("seed-{session_id}"),
            };
            let admin = admin.clone();
            let session = session(network, clinic_id);
            let member = participant(network, member);
            async move {
                let scheduled = match sessions.schedule_session(with_token(request, &admin)).await {
                    Ok(scheduled) => scheduled.into_inner(),
                    Err(status) => {
                        // The roster does not know the group yet.
                        anyhow::ensure!(status.code() == tonic::Code::NotFound, "{status:?}");
                        return Ok(false);
                    }
                };
                let sheet = sessions
                    .get_session(with_token(
                        pb::GetSessionRequest {
                            name: session,
                            consistency_token: scheduled.consistency_token,
                        },
                        &admin,
                    ))
                    .await?
                    .into_inner()
                    .session
                    .unwrap_or_default();
                Ok(sheet.roster.iter().any(|entry| entry.participant == member))
            }
        })
        .await?;
    }
    system.clock.advance(chrono::Duration::hours(1));
    for (clinic_id, lead, member) in [place("north"), place("south")] {
        let session = session(network, clinic_id);
        let facilitator = circle_testkit::token(network, lead, &["facilitator"], &[clinic_id]);
        sessions
            .start_session(with_token(
                pb::StartSessionRequest {
                    name: session.clone(),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        sessions
            .record_attendance(with_token(
                pb::RecordAttendanceRequest {
                    name: session.clone(),
                    participant: participant(network, member),
                    status: pb::AttendanceStatus::Present as i32,
                    minutes_attended: 90,
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        sessions
            .write_member_note(with_token(
                pb::WriteMemberNoteRequest {
                    name: session.clone(),
                    participant: participant(network, member),
                    text: "Engaged.".into(),
                    request_id: String::new(),
                },
                &facilitator,
            ))
            .await?;
        sessions
            .write_shared_note(with_token(
                pb::WriteSharedNoteRequest {
                    name: session.clone(),
                    text: "Theme: the holidays.".into(),
                    request_id: String::new(),
                },
                &facilitator,
            ))
            .await?;
        let signed = sessions
            .sign_note(with_token(
                pb::SignNoteRequest {
                    name: format!("{session}/notes/shared"),
                    request_id: String::new(),
                },
                &facilitator,
            ))
            .await?
            .into_inner();
        // Read what was written, so the queries answer on all of it.
        sessions
            .get_session(with_token(
                pb::GetSessionRequest {
                    name: session,
                    consistency_token: signed.consistency_token,
                },
                t,
            ))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_sessions_rpc_admits_exactly_whom_its_row_names() -> anyhow::Result<()> {
    let rpcs = circle_proto::rpc_names("circle.sessions.v1", "SessionsService")?;
    super::check_table(TABLE, &rpcs)?;
    let system = super::system("2026-11-20T12:00:00Z").await?;
    let client = system.sessions.clone();
    let call = |rpc, place, network, token| call(&client, rpc, place, network, token);

    // Another network's names, before that network has anything.
    let before = super::across_networks(TABLE, call).await?;

    seed(&system, ACME).await?;
    let cells = super::run_in_network(TABLE, call).await?;
    assert_eq!(cells, TABLE.len() * super::CALLERS.len());

    // The same names once another network's admin made them: the same answers.
    seed(&system, OTHER).await?;
    let after = super::across_networks(TABLE, call).await?;
    super::same_answers(TABLE, &before, &after)
}
