//! The accounting of disclosures across the three services: a scripted run of reads —
//! a facilitator's roster and session sheet, a clinic admin's billing export, a peer's
//! board and feed, a participant's own timeline, a billing service's export — and then
//! each participant's `ListDisclosures` is exactly the reads that disclosed their data,
//! with actor, roles, operation, resource and purpose, in time order; nothing of
//! anyone else's, nothing of their own reads. The audit streams refuse deletes and
//! purges and keep six years; a read that cannot be recorded is not answered.

use std::collections::BTreeMap;

use circle_calendar::Clock as _;

use circle_proto::accountability::v1 as accountability;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use prost_types::Timestamp;
use tonic::Code;

use crate::accountability::wait_for_board;
use crate::support::{NETWORK, System, admin, as_caller, as_participant, refusal};

const START: &str = "2026-11-20T18:00:00Z";

/// One line of an accounting, as the test compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    minute: i64,
    actor: String,
    roles: Vec<String>,
    calling_service: String,
    operation: String,
    resource: String,
    purpose: enrollment::DisclosurePurpose,
    stated: bool,
}

/// What the scripted reads touched.
struct Scene {
    system: System,
    group: String,
    session: String,
    clinic: String,
    sam: String,
    jordan: String,
    /// The first scripted read's time: everything before it is setting up.
    from: chrono::DateTime<chrono::Utc>,
}

fn with_purpose<T>(mut request: tonic::Request<T>, purpose: &str) -> tonic::Request<T> {
    match purpose.parse() {
        Ok(value) => {
            request
                .metadata_mut()
                .insert(circle_audit::PURPOSE_METADATA, value);
        }
        Err(error) => panic!("a purpose is ASCII: {error}"),
    }
    request
}

fn as_billing_service<T>(message: T) -> tonic::Request<T> {
    circle_testkit::request_as(message, NETWORK, "service", "billing", &[])
}

fn at(time: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    Some(circle_calendar::timestamp(time))
}

/// A Tuesday group of Sam and Jordan (both sharing check-ins with peers), a closed
/// session both attended, a check-in of Sam's on the feed — set up an hour before the
/// scripted reads, which then happen a minute apart.
async fn scene() -> anyhow::Result<Scene> {
    let mut system = System::start_with(START, |config| {
        config.auth.services.insert(
            "billing".to_owned(),
            vec!["circle.sessions.v1.SessionsService/ExportBilling".to_owned()],
        );
    })
    .await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let sam = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    let jordan = system
        .participant(&clinic, "jordan", "Jordan", "Kim")
        .await?;
    system.peer_consent(&sam, None, false).await?;
    system.peer_consent(&jordan, None, false).await?;
    for participant in [&sam, &jordan] {
        system.enroll(&group, participant).await?;
    }
    let session = system.session_on(&group, "2026-11-24")?;
    system
        .wait_for_session(&session, |s| s.roster.len() == 2)
        .await?;
    wait_for_board(&system, &group, 2).await?;
    system
        .accountability
        .submit_check_in(as_participant(
            accountability::SubmitCheckInRequest {
                parent: sam.clone(),
                progress: accountability::Progress::OnTrack as i32,
                mood: 7,
                craving: 2,
                text: "Ten days, feeling steady.".into(),
                visibility: accountability::Visibility::Group as i32,
                ..Default::default()
            },
            "sam",
        ))
        .await?;

    // Tuesday: the session runs, both attend, it closes.
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
    let closed = system
        .sessions
        .close_session(admin(sessions::CloseSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    // Everything the scripted reads show is in the read models before they start, so
    // each happens once, at its minute.
    system
        .sessions
        .get_attendance_history(admin(sessions::GetAttendanceHistoryRequest {
            participant: jordan.clone(),
            consistency_token: closed.consistency_token,
        }))
        .await?;
    let feed_has_the_check_in = wait_for_feed(&system, &group).await?;
    assert!(feed_has_the_check_in);

    system.clock.advance(chrono::Duration::hours(1));
    let from = system.clock.now();
    Ok(Scene {
        system,
        group,
        session,
        clinic,
        sam,
        jordan,
        from,
    })
}

/// Waits until the group's feed, as staff see it, holds Sam's check-in.
async fn wait_for_feed(system: &System, group: &str) -> anyhow::Result<bool> {
    let mut client = system.accountability.clone();
    let mut feed = client
        .watch_group_feed(admin(accountability::WatchGroupFeedRequest {
            group: group.to_owned(),
            after_position: 0,
            heartbeat_seconds: 60,
        }))
        .await?
        .into_inner();
    while let Some(message) = feed.message().await? {
        if let Some(accountability::watch_group_feed_response::Event::Item(item)) = message.event {
            return Ok(item.check_in.is_some());
        }
    }
    Ok(false)
}

/// The scripted reads, a minute apart (minute 0 is `Scene::from`).
async fn scripted_reads(scene: &mut Scene) -> anyhow::Result<()> {
    let Scene {
        system,
        group,
        session,
        clinic,
        sam,
        jordan,
        ..
    } = scene;
    let minute = |system: &System| system.clock.advance(chrono::Duration::minutes(1));

    // 0: the facilitator reads the group's roster.
    system
        .enrollment
        .list_group_members(as_caller(
            enrollment::ListGroupMembersRequest {
                parent: group.clone(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ))
        .await?;
    minute(system);
    // 1: and the session sheet, for a quality review they say.
    system
        .sessions
        .get_session(with_purpose(
            as_caller(
                sessions::GetSessionRequest {
                    name: session.clone(),
                    consistency_token: String::new(),
                },
                "facilitator",
                "staff-1",
            ),
            "operations",
        ))
        .await?;
    minute(system);
    // 2: the clinic admin exports billing.
    let billing = || sessions::ExportBillingRequest {
        clinic: clinic.clone(),
        start_date: "2026-11-24".into(),
        end_date: "2026-11-24".into(),
        consistency_token: String::new(),
    };
    let lines = system
        .sessions
        .export_billing(as_caller(billing(), "clinic-admin", "admin-north"))
        .await?
        .into_inner()
        .lines;
    assert_eq!(lines.len(), 2);
    minute(system);
    // 3: Jordan looks at the group board.
    system
        .accountability
        .get_group_board(as_participant(
            accountability::GetGroupBoardRequest {
                group: group.clone(),
                consistency_token: String::new(),
            },
            "jordan",
        ))
        .await?;
    minute(system);
    // 4: and opens the group feed, which shows Sam's check-in.
    let mut feed = system
        .accountability
        .watch_group_feed(as_participant(
            accountability::WatchGroupFeedRequest {
                group: group.clone(),
                after_position: 0,
                heartbeat_seconds: 60,
            },
            "jordan",
        ))
        .await?
        .into_inner();
    let first = feed.message().await?.and_then(|message| message.event);
    assert!(
        matches!(&first, Some(accountability::watch_group_feed_response::Event::Item(item)) if item.check_in.as_ref().is_some_and(|c| c.name.starts_with(sam.as_str()))),
        "{first:?}"
    );
    drop(feed);
    minute(system);
    // 5: Sam reads their own timeline: not a disclosure.
    system
        .accountability
        .get_participant_timeline(as_participant(
            accountability::GetParticipantTimelineRequest {
                participant: sam.clone(),
                consistency_token: String::new(),
            },
            "sam",
        ))
        .await?;
    minute(system);
    // 6: the facilitator reads Jordan's attendance.
    system
        .sessions
        .get_attendance_history(as_caller(
            sessions::GetAttendanceHistoryRequest {
                participant: jordan.clone(),
                consistency_token: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await?;
    minute(system);
    // 7: the billing service exports the same day.
    system
        .sessions
        .export_billing(as_billing_service(billing()))
        .await?;
    minute(system);
    Ok(())
}

/// Each expected line, in minutes after `Scene::from`.
fn line(
    minute: i64,
    actor: &str,
    role: &str,
    operation: &str,
    resource: &str,
    purpose: enrollment::DisclosurePurpose,
    stated: bool,
) -> Line {
    Line {
        minute,
        actor: actor.to_owned(),
        roles: vec![role.to_owned()],
        calling_service: if role == "service" {
            actor.to_owned()
        } else {
            String::new()
        },
        operation: operation.to_owned(),
        resource: resource.to_owned(),
        purpose,
        stated,
    }
}

fn list(
    participant: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> enrollment::ListDisclosuresRequest {
    enrollment::ListDisclosuresRequest {
        parent: participant.to_owned(),
        start_time: at(from),
        end_time: at(to),
        page_size: 0,
        page_token: String::new(),
    }
}

/// Every page of an accounting, as `caller` asks for it.
async fn accounting(
    system: &mut System,
    request: enrollment::ListDisclosuresRequest,
    caller: impl Fn(
        enrollment::ListDisclosuresRequest,
    ) -> tonic::Request<enrollment::ListDisclosuresRequest>,
) -> anyhow::Result<Vec<enrollment::Disclosure>> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = system
            .enrollment
            .list_disclosures(caller(request.clone()))
            .await?
            .into_inner();
        all.extend(page.disclosures);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

fn lines(from: chrono::DateTime<chrono::Utc>, disclosures: &[enrollment::Disclosure]) -> Vec<Line> {
    disclosures
        .iter()
        .map(|disclosure| Line {
            minute: disclosure
                .disclose_time
                .and_then(circle_calendar::from_timestamp)
                .map_or(-1, |time| (time - from).num_minutes()),
            actor: disclosure.actor.clone(),
            roles: disclosure.actor_roles.clone(),
            calling_service: disclosure.calling_service.clone(),
            operation: disclosure.operation.clone(),
            resource: disclosure.resource.clone(),
            purpose: disclosure.purpose(),
            stated: disclosure.purpose_stated,
        })
        .collect()
}

#[tokio::test]
async fn list_disclosures_shows_exactly_the_reads_that_disclosed_a_participants_data()
-> anyhow::Result<()> {
    use enrollment::DisclosurePurpose::{HealthCareOperations, Payment, Treatment};
    let mut scene = scene().await?;
    scripted_reads(&mut scene).await?;
    let Scene {
        mut system,
        group,
        session,
        clinic,
        sam,
        jordan,
        from,
    } = scene;
    let to = system.clock.now();
    const ENROLLMENT: &str = "circle.enrollment.v1.EnrollmentService";
    const SESSIONS: &str = "circle.sessions.v1.SessionsService";
    const ACCOUNTABILITY: &str = "circle.accountability.v1.AccountabilityService";
    let op = |service: &str, rpc: &str| format!("{service}/{rpc}");

    let roster = line(
        0,
        "staff-1",
        "facilitator",
        &op(ENROLLMENT, "ListGroupMembers"),
        &group,
        Treatment,
        false,
    );
    let sheet = line(
        1,
        "staff-1",
        "facilitator",
        &op(SESSIONS, "GetSession"),
        &session,
        HealthCareOperations,
        true,
    );
    let export = line(
        2,
        "admin-north",
        "clinic-admin",
        &op(SESSIONS, "ExportBilling"),
        &clinic,
        Payment,
        false,
    );
    let board = line(
        3,
        "jordan",
        "participant",
        &op(ACCOUNTABILITY, "GetGroupBoard"),
        &group,
        Treatment,
        false,
    );
    let feed = line(
        4,
        "jordan",
        "participant",
        &op(ACCOUNTABILITY, "WatchGroupFeed"),
        &group,
        Treatment,
        false,
    );
    let attendance = line(
        6,
        "staff-1",
        "facilitator",
        &op(SESSIONS, "GetAttendanceHistory"),
        &jordan,
        Treatment,
        false,
    );
    let service = line(
        7,
        "billing",
        "service",
        &op(SESSIONS, "ExportBilling"),
        &clinic,
        Payment,
        false,
    );

    // Sam's accounting, as Sam asks for it: everything that showed Sam to someone else
    // (Jordan's board and feed included), not Sam's own timeline, not Jordan's
    // attendance.
    let sams = accounting(&mut system, list(&sam, from, to), |request| {
        as_participant(request, "sam")
    })
    .await?;
    assert_eq!(
        lines(from, &sams),
        [
            roster.clone(),
            sheet.clone(),
            export.clone(),
            board,
            feed,
            service.clone()
        ]
    );
    for disclosure in &sams {
        assert!(
            disclosure.name.starts_with(&format!("{sam}/disclosures/")),
            "{}",
            disclosure.name
        );
        assert_eq!(disclosure.trace_id, "", "the tests run untraced");
    }

    // Jordan's: theirs alone — the same roster, sheet and exports (the same reads, by
    // the same disclosure ids), their attendance; not their own board and feed.
    let jordans = accounting(&mut system, list(&jordan, from, to), |request| {
        as_participant(request, "jordan")
    })
    .await?;
    assert_eq!(
        lines(from, &jordans),
        [roster, sheet, export, attendance, service]
    );
    let id = |disclosure: &enrollment::Disclosure| {
        disclosure
            .name
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        id(&sams[0]),
        id(&jordans[0]),
        "one roster read, one disclosure"
    );
    assert_ne!(id(&sams[0]), id(&sams[1]));

    // Administrators answerable for Sam's record see the same; asking changes nothing.
    let by_network_admin = accounting(&mut system, list(&sam, from, to), admin).await?;
    assert_eq!(by_network_admin, sams);
    let by_clinic_admin = accounting(&mut system, list(&sam, from, to), |request| {
        as_caller(request, "clinic-admin", "admin-north")
    })
    .await?;
    assert_eq!(by_clinic_admin, sams);

    // Pages of two, oldest first, and a range: from included, to excluded.
    let mut paged = list(&sam, from, to);
    paged.page_size = 2;
    let first = system
        .enrollment
        .list_disclosures(as_participant(paged.clone(), "sam"))
        .await?
        .into_inner();
    assert_eq!(first.disclosures, sams[..2]);
    assert!(!first.next_page_token.is_empty());
    let two_minutes = accounting(
        &mut system,
        list(&sam, from, from + chrono::Duration::minutes(2)),
        admin,
    )
    .await?;
    assert_eq!(two_minutes, sams[..2]);

    // A range outside the reads holds none of them.
    let later = accounting(
        &mut system,
        list(&sam, to, to + chrono::Duration::days(30)),
        admin,
    )
    .await?;
    assert!(later.is_empty(), "{later:?}");
    let before = accounting(
        &mut system,
        list(
            &sam,
            from - chrono::Duration::days(30),
            from - chrono::Duration::days(6),
        ),
        admin,
    )
    .await?;
    assert!(before.is_empty(), "{before:?}");

    // Who may not ask, and what may not be asked.
    let facilitator = system
        .enrollment
        .list_disclosures(as_caller(list(&sam, from, to), "facilitator", "staff-1"))
        .await;
    assert_eq!(
        refusal(facilitator),
        (Code::PermissionDenied, "ROLE_NOT_ALLOWED".into(), vec![])
    );
    let peer = system
        .enrollment
        .list_disclosures(as_participant(list(&sam, from, to), "jordan"))
        .await;
    assert_eq!(
        refusal(peer),
        (Code::PermissionDenied, "NOT_YOUR_RECORD".into(), vec![])
    );
    let elsewhere = system
        .enrollment
        .list_disclosures(circle_testkit::request_as(
            list(&sam, from, to),
            NETWORK,
            "clinic-admin",
            "admin-south",
            &["south"],
        ))
        .await;
    assert_eq!(
        refusal(elsewhere),
        (Code::PermissionDenied, "CLINIC_OUT_OF_SCOPE".into(), vec![])
    );
    let backwards = system
        .enrollment
        .list_disclosures(admin(list(&sam, to, from)))
        .await;
    assert_eq!(
        refusal(backwards),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".into(),
            vec!["end_time".into()]
        )
    );
    let too_long = system
        .enrollment
        .list_disclosures(admin(list(&sam, from, from + chrono::Duration::days(2193))))
        .await;
    assert_eq!(
        refusal(too_long),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".into(),
            vec!["end_time".into()]
        )
    );
    let unbounded = system
        .enrollment
        .list_disclosures(admin(enrollment::ListDisclosuresRequest {
            start_time: None,
            ..list(&sam, from, to)
        }))
        .await;
    assert_eq!(
        refusal(unbounded),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".into(),
            vec!["start_time".into()]
        )
    );

    // A purpose not on the list is refused with the request's bad fields, and the read
    // it came with is neither answered nor recorded.
    let curious = system
        .sessions
        .get_session(with_purpose(
            as_caller(
                sessions::GetSessionRequest {
                    name: session.clone(),
                    consistency_token: String::new(),
                },
                "facilitator",
                "staff-1",
            ),
            "curiosity",
        ))
        .await;
    assert_eq!(
        refusal(curious),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".into(),
            vec![circle_audit::PURPOSE_METADATA.to_owned()]
        )
    );
    let after = system.clock.now() + chrono::Duration::minutes(1);
    let again = accounting(&mut system, list(&sam, from, after), admin).await?;
    assert_eq!(again, sams, "the refused read recorded nothing");
    Ok(())
}

#[tokio::test]
async fn the_audit_streams_keep_six_years_refuse_deletes_and_a_read_they_cannot_record_is_not_answered()
-> anyhow::Result<()> {
    let mut scene = scene().await?;
    let system = &mut scene.system;
    let jetstream = system.env.jetstream();
    let mut streams = BTreeMap::new();
    for service in ["enrollment", "sessions", "accountability"] {
        let name = system.env.config.stream_name(&format!("{service}_audit"));
        let stream = jetstream.get_stream(&name).await?;
        let config = stream.get_info().await?.config;
        assert_eq!(
            config.max_age,
            std::time::Duration::from_secs(2192 * 24 * 60 * 60),
            "{name}: six years"
        );
        assert!(config.deny_delete && config.deny_purge, "{name}");
        assert_eq!(
            config.storage,
            async_nats::jetstream::stream::StorageType::File,
            "{name}"
        );
        streams.insert(service, (name, stream));
    }
    // Setting up read session sheets: the sessions audit stream holds records.
    let (sessions_audit, stream) = &streams["sessions"];
    let held = stream.get_info().await?.state.messages;
    assert!(held > 0);
    assert!(
        stream.delete_message(1).await.is_err(),
        "a record cannot be deleted"
    );
    assert!(stream.purge().await.is_err(), "nor the stream purged");
    assert_eq!(stream.get_info().await?.state.messages, held);

    // With the audit stream gone, the session sheet is not answered: UNAVAILABLE.
    jetstream.delete_stream(sessions_audit).await?;
    let unrecorded = system
        .sessions
        .get_session(as_caller(
            sessions::GetSessionRequest {
                name: scene.session.clone(),
                consistency_token: String::new(),
            },
            "facilitator",
            "staff-1",
        ))
        .await;
    assert_eq!(
        refusal(unrecorded),
        (Code::Unavailable, "AUDIT_UNAVAILABLE".into(), vec![])
    );
    // A read that discloses no one is not held up by it.
    system
        .sessions
        .list_sessions(as_caller(
            sessions::ListSessionsRequest {
                parent: scene.group.clone(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ))
        .await?;
    Ok(())
}
