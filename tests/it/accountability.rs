//! The accountability service fed by enrollment and sessions: what each viewer sees,
//! the nudge ladder, the live feed, and refusals.

use circle_proto::accountability::v1 as pb;
use circle_proto::sessions::v1 as sessions;
use tonic::Code;

use crate::support::{System, admin, as_caller, as_participant, eventually, on_roster, refusal};

/// A group with Sam (alias "Sunny", shares check-ins and milestones), Jordan (first
/// name, shares check-ins only) and Riley (no consent), facilitated by staff-1.
struct Circle {
    system: System,
    group: String,
    sam: String,
    jordan: String,
    riley: String,
}

async fn circle(now: &str) -> anyhow::Result<Circle> {
    let mut system = System::start_at(now).await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let sam = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    let jordan = system
        .participant(&clinic, "jordan", "Jordan", "Kim")
        .await?;
    let riley = system
        .participant(&clinic, "riley", "Riley", "Okafor")
        .await?;
    system.peer_consent(&sam, Some("Sunny"), true).await?;
    system.peer_consent(&jordan, None, false).await?;
    for participant in [&sam, &jordan, &riley] {
        system.enroll(&group, participant).await?;
    }
    // Once sessions sees all three, accountability's roster (same stream) is close behind.
    let next = system.session_on(&group, "2026-11-24")?;
    system
        .wait_for_session(&next, |s| s.roster.len() == 3)
        .await?;
    let client = system.accountability.clone();
    let group_name = group.clone();
    eventually(
        || {
            let mut client = client.clone();
            let group = group_name.clone();
            async move {
                Ok(client
                    .get_group_board(admin(pb::GetGroupBoardRequest {
                        group,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .entries
                    .len())
            }
        },
        |count| *count == 3,
    )
    .await?;
    Ok(Circle {
        system,
        group,
        sam,
        jordan,
        riley,
    })
}

fn check_in(parent: &str, visibility: pb::Visibility, text: &str) -> pb::SubmitCheckInRequest {
    pb::SubmitCheckInRequest {
        parent: parent.into(),
        progress: pb::Progress::OnTrack as i32,
        mood: 7,
        craving: 2,
        text: text.into(),
        visibility: visibility as i32,
        ..Default::default()
    }
}

async fn board(
    system: &mut System,
    group: &str,
    viewer: tonic::Request<pb::GetGroupBoardRequest>,
) -> anyhow::Result<Vec<pb::BoardEntry>> {
    let _ = group;
    Ok(system
        .accountability
        .get_group_board(viewer)
        .await?
        .into_inner()
        .entries)
}

fn entry<'a>(entries: &'a [pb::BoardEntry], participant: &str) -> &'a pb::BoardEntry {
    entries
        .iter()
        .find(|e| e.participant == participant)
        .unwrap_or_else(|| panic!("{participant} on the board"))
}

#[tokio::test]
async fn each_viewer_sees_exactly_what_they_may_across_the_three_services() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        riley,
    } = circle("2026-11-20T18:00:00Z").await?;

    // Sessions: both attend Tuesday's session, Sam checks in there too.
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
        .wait_for_session(&session, |s| on_roster(s, &sam))
        .await?;
    // The session check-in reaches Sam's journal through the sessions stream.
    let client = system.accountability.clone();
    let sam_name = sam.clone();
    eventually(
        || {
            let mut client = client.clone();
            let participant = sam_name.clone();
            async move {
                Ok(client
                    .get_participant_timeline(as_participant(
                        pb::GetParticipantTimelineRequest {
                            participant,
                            ..Default::default()
                        },
                        "sam",
                    ))
                    .await?
                    .into_inner()
                    .items)
            }
        },
        |items: &Vec<pb::TimelineItem>| {
            items.iter().any(|item| {
                item.check_in
                    .as_ref()
                    .is_some_and(|c| c.text == "Glad to be here.")
            })
        },
    )
    .await?;

    // Accountability: Sam shares with the group, Jordan keeps one private.
    let shared = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Ten days, feeling steady."),
            "sam",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    let private = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&jordan, pb::Visibility::Private, "Rough night."),
            "jordan",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    let encourage = |check_in: &str, participant: &str| pb::EncourageRequest {
        check_in: check_in.into(),
        participant: participant.into(),
        reaction: "strong".into(),
        message: "Proud of you".into(),
        request_id: String::new(),
    };
    system
        .accountability
        .encourage(as_participant(encourage(&shared.name, &jordan), "jordan"))
        .await?;
    let peeking = system
        .accountability
        .encourage(as_participant(encourage(&private.name, &sam), "sam"))
        .await;
    assert_eq!(
        refusal(peeking),
        (Code::PermissionDenied, "CANNOT_SEE_CHECK_IN".into(), vec![])
    );
    let setback = system
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
        .await?
        .into_inner();
    assert_eq!(
        setback.counters.as_ref().map(|c| c.days_since_setback),
        Some(0)
    );
    let token = setback.consistency_token;

    // Jordan's view: Sam as "Sunny" with the shared check-in and counters; Riley anonymous.
    let mut as_jordan = as_participant(
        pb::GetGroupBoardRequest {
            group: group.clone(),
            consistency_token: token.clone(),
        },
        "jordan",
    );
    as_jordan.metadata_mut().remove("x-circle-clinics");
    let jordans = board(&mut system, &group, as_jordan).await?;
    let sunny = entry(&jordans, &sam);
    assert_eq!(sunny.display_name, "Sunny");
    assert_eq!(
        sunny
            .last_check_in
            .as_ref()
            .map(|c| (c.text.as_str(), c.encouragement_count)),
        Some(("Ten days, feeling steady.", 1))
    );
    assert!(sunny.counters.is_some(), "Sam shares milestones");
    assert!(!sunny.at_risk, "peers never see who is at risk");
    let mine = entry(&jordans, &jordan);
    assert_eq!(
        mine.last_check_in.as_ref().map(|c| c.text.as_str()),
        Some("Rough night."),
        "one's own private check-in"
    );
    let anonymous = entry(&jordans, &riley);
    assert_eq!(
        (
            anonymous.display_name.as_str(),
            anonymous.last_check_in.is_none(),
            anonymous.counters.is_none()
        ),
        ("A group member", true, true)
    );

    // Sam's view: Jordan's private check-in stays hidden, as do Jordan's counters.
    let sams = board(
        &mut system,
        &group,
        as_participant(
            pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            },
            "sam",
        ),
    )
    .await?;
    let jordan_for_sam = entry(&sams, &jordan);
    assert_eq!(
        (
            jordan_for_sam.display_name.as_str(),
            jordan_for_sam.last_check_in.is_none(),
            jordan_for_sam.counters.is_none()
        ),
        ("Jordan", true, true)
    );

    // The facilitator sees Sam at risk after the setback, with counters that kept the
    // sessions attended (from the sessions service) and the streak.
    let staff = board(
        &mut system,
        &group,
        as_caller(
            pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ),
    )
    .await?;
    assert!(entry(&staff, &sam).at_risk);
    assert!(
        entry(&staff, &jordan).last_check_in.is_none(),
        "private means private, from staff too"
    );
    let client = system.accountability.clone();
    let sam_name = sam.clone();
    let timeline = eventually(
        || {
            let mut client = client.clone();
            let participant = sam_name.clone();
            async move {
                Ok(client
                    .get_participant_timeline(as_participant(
                        pb::GetParticipantTimelineRequest {
                            participant,
                            ..Default::default()
                        },
                        "sam",
                    ))
                    .await?
                    .into_inner())
            }
        },
        |timeline| timeline.counters.is_some_and(|c| c.sessions_attended == 1),
    )
    .await?;
    let counters = timeline.counters.unwrap_or_default();
    assert_eq!(
        (
            counters.days_since_setback,
            counters.check_in_streak_days,
            counters.sessions_attended
        ),
        (0, 1, 1)
    );
    let kinds: Vec<&str> = timeline
        .items
        .iter()
        .map(|item| item.kind.as_str())
        .collect();
    for kind in ["check-in", "encouragement", "setback"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let at_risk = system
        .accountability
        .list_at_risk(as_caller(
            pb::ListAtRiskRequest {
                parent: "networks/acme/staff/staff-1".into(),
                ..Default::default()
            },
            "facilitator",
            "staff-1",
        ))
        .await?
        .into_inner();
    assert_eq!(
        at_risk
            .entries
            .iter()
            .map(|e| e.participant.as_str())
            .collect::<Vec<_>>(),
        [sam.as_str()]
    );

    // Riley's feed: Sam's session check-in and shared check-in, Jordan's encouragement; no private ones.
    let mut feed = system
        .accountability
        .watch_group_feed(as_participant(
            pb::WatchGroupFeedRequest {
                group: group.clone(),
                after_position: 0,
                heartbeat_seconds: 1,
            },
            "riley",
        ))
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = feed.message().await? {
        match message.event {
            Some(pb::watch_group_feed_response::Event::Item(item)) => seen.push((
                item.kind.clone(),
                item.check_in.map(|c| c.text).unwrap_or_default(),
            )),
            Some(pb::watch_group_feed_response::Event::HeartbeatPosition(_)) => break,
            None => {}
        }
    }
    assert!(
        seen.contains(&(
            "check-in".to_owned(),
            "Ten days, feeling steady.".to_owned()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("check-in".to_owned(), "Glad to be here.".to_owned())),
        "a session check-in counts too: {seen:?}"
    );
    assert!(
        seen.contains(&(
            "encouragement".to_owned(),
            "Ten days, feeling steady.".to_owned()
        )),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|(_, text)| text == "Rough night."),
        "{seen:?}"
    );

    // Sam withdraws peer visibility: past check-ins leave peers' view from then on.
    let consents = system
        .enrollment
        .get_participant(admin(circle_proto::enrollment::v1::GetParticipantRequest {
            name: sam.clone(),
            consistency_token: String::new(),
        }))
        .await?
        .into_inner()
        .participant
        .unwrap_or_default()
        .consents;
    let peer = consents
        .iter()
        .find(|c| c.revoke_time.is_none())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    system
        .enrollment
        .revoke_consent(admin(circle_proto::enrollment::v1::RevokeConsentRequest {
            name: peer,
            request_id: String::new(),
        }))
        .await?;
    let client = system.accountability.clone();
    let (group_name, sam_name) = (group.clone(), sam.clone());
    eventually(
        || {
            let mut client = client.clone();
            let group = group_name.clone();
            async move {
                Ok(client
                    .get_group_board(as_participant(
                        pb::GetGroupBoardRequest {
                            group,
                            ..Default::default()
                        },
                        "jordan",
                    ))
                    .await?
                    .into_inner()
                    .entries)
            }
        },
        |entries: &Vec<pb::BoardEntry>| {
            entries.iter().any(|e| {
                e.participant == sam_name
                    && e.last_check_in.is_none()
                    && e.display_name == "A group member"
            })
        },
    )
    .await?;
    Ok(())
}
