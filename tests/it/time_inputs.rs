//! Time inputs: every Timestamp and date a request carries is within the protobuf
//! range (0001-01-01 to 9999-12-31) and within the range its field documents, or the
//! request is refused with the field named and nothing is stored.

use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as pb;
use tonic::Code;

use crate::support::{System, admin, refusal};

/// 10000-01-01T00:00:00Z, the first second after the protobuf range.
const AFTER_9999: i64 = 253_402_300_800;

fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn utc(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp())
}

/// A system at Friday 20 Nov 2026 with a weekly group the sessions service knows.
async fn group_with_sessions() -> anyhow::Result<(System, String, String)> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let next = system.session_on(&group, "2026-11-24")?;
    system.wait_for_session(&next, |_| true).await?;
    Ok((system, group, next))
}

#[tokio::test]
async fn session_times_outside_the_protobuf_or_the_session_range_are_refused_and_nothing_is_stored()
-> anyhow::Result<()> {
    let (mut system, group, next) = group_with_sessions().await?;
    let before = system.sessions_stream_last_sequence().await?;
    let schedule = |start_time| {
        admin(pb::ScheduleSessionRequest {
            parent: group.clone(),
            session_id: "extra".into(),
            start_time,
            duration_minutes: 90,
            request_id: String::new(),
        })
    };
    let out_of_range = [
        ("after 9999-12-31", at(AFTER_9999, 0)),
        ("before 0001-01-01", at(-62_135_596_801, 0)),
        ("negative nanos", at(utc("2026-11-21T12:00:00Z")?, -1)),
        (
            "nanos of a whole second",
            at(utc("2026-11-21T12:00:00Z")?, 1_000_000_000),
        ),
        ("a century ahead", at(utc("2126-11-21T12:00:00Z")?, 0)),
        ("two years back", at(utc("2024-11-20T12:00:00Z")?, 0)),
        ("missing", None),
    ];
    for (case, start_time) in out_of_range {
        let refused = system.sessions.schedule_session(schedule(start_time)).await;
        assert_eq!(
            refusal(refused),
            (
                Code::InvalidArgument,
                "INVALID_ARGUMENT".to_owned(),
                vec!["start_time".to_owned()]
            ),
            "schedule, {case}"
        );
        let refused = system
            .sessions
            .reschedule_session(admin(pb::RescheduleSessionRequest {
                name: next.clone(),
                start_time,
                ..Default::default()
            }))
            .await;
        assert_eq!(
            refusal(refused),
            (
                Code::InvalidArgument,
                "INVALID_ARGUMENT".to_owned(),
                vec!["start_time".to_owned()]
            ),
            "reschedule, {case}"
        );
    }
    assert_eq!(
        system
            .client_commits_since(circle_sessions::stream_spec(&system.env.config), before)
            .await?,
        Vec::<String>::new(),
        "a refused time stores nothing"
    );

    // Every session of the group still reads, with its time in the protobuf range.
    let listed = system
        .sessions
        .list_sessions(admin(pb::ListSessionsRequest {
            parent: group.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(!listed.sessions.is_empty());
    for session in &listed.sessions {
        let start = session.start_time.unwrap_or_default();
        assert!(
            start.seconds < AFTER_9999 && (0..1_000_000_000).contains(&start.nanos),
            "{session:?}"
        );
    }

    // A time at the edge of the session range is accepted.
    system
        .sessions
        .schedule_session(schedule(at(utc("2026-11-21T12:00:00Z")?, 999_999_999)))
        .await?;
    Ok(())
}

#[tokio::test]
async fn list_sessions_refuses_a_filter_outside_the_protobuf_range() -> anyhow::Result<()> {
    let (mut system, group, _) = group_with_sessions().await?;
    let refused = system
        .sessions
        .list_sessions(admin(pb::ListSessionsRequest {
            parent: group.clone(),
            start_time: at(AFTER_9999, 0),
            end_time: at(utc("2026-12-01T00:00:00Z")?, -5),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        refusal(refused),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".to_owned(),
            vec!["start_time".to_owned(), "end_time".to_owned()]
        )
    );
    Ok(())
}

#[tokio::test]
async fn dates_outside_their_documented_range_are_refused() -> anyhow::Result<()> {
    let (mut system, _, _) = group_with_sessions().await?;
    let clinic = format!("networks/{}/clinics/north", crate::support::NETWORK);
    let billing = |start: &str, end: &str| {
        admin(pb::ExportBillingRequest {
            clinic: clinic.clone(),
            start_date: start.into(),
            end_date: end.into(),
            consistency_token: String::new(),
        })
    };
    for (start, end, field) in [
        ("0000-01-01", "0000-01-31", "start_date"),
        ("1999-01-01", "1999-01-31", "start_date"),
        ("2026-11-01", "+10000-01-01", "end_date"),
    ] {
        let refused = system.sessions.export_billing(billing(start, end)).await;
        let (code, _, fields) = refusal(refused);
        assert_eq!(code, Code::InvalidArgument, "{start}..{end}");
        assert!(
            fields.contains(&field.to_owned()),
            "{start}..{end}: {fields:?}"
        );
    }
    system
        .sessions
        .export_billing(billing("2026-11-01", "2026-11-30"))
        .await?;

    // A schedule starting on 9999-12-31 at 18:30 in Chicago would have its first
    // session after the protobuf range; a schedule's dates have a documented range.
    for (start_date, end_date, field) in [
        ("9999-12-31", "", "group.schedule.start_date"),
        ("1900-01-01", "", "group.schedule.start_date"),
        ("2026-11-01", "9999-12-31", "group.schedule.end_date"),
    ] {
        let refused = system
            .enrollment
            .create_group(admin(enrollment::CreateGroupRequest {
                parent: clinic.clone(),
                group_id: "thursday".into(),
                group: Some(enrollment::Group {
                    display_name: "Thursday group".into(),
                    modality: "process".into(),
                    level_of_care: "outpatient".into(),
                    capacity: 12,
                    schedule: Some(enrollment::Schedule {
                        days: vec![enrollment::Weekday::Thursday as i32],
                        start_time: "18:30".into(),
                        duration_minutes: 90,
                        start_date: start_date.into(),
                        end_date: end_date.into(),
                        exception_dates: vec!["0000-02-29".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await;
        let (code, _, fields) = refusal(refused);
        assert_eq!(code, Code::InvalidArgument, "{start_date}..{end_date}");
        assert!(fields.contains(&field.to_owned()), "{field}: {fields:?}");
        assert!(
            fields.contains(&"group.schedule.exception_dates".to_owned()),
            "{fields:?}"
        );
    }
    Ok(())
}
