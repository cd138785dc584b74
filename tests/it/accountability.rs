//! The accountability service fed by enrollment and sessions: what each viewer sees,
//! the nudge ladder, the live feed, and refusals.

use circle_proto::accountability::v1 as pb;
use circle_proto::sessions::v1 as sessions;
use tonic::Code;

use crate::support::{System, admin, as_caller, as_participant, eventually, refusal};

/// A group with Sam (alias "Sunny", shares check-ins and milestones), Jordan (first
/// name, shares check-ins only) and Riley (no consent), facilitated by staff-1.
pub(crate) struct Circle {
    pub system: System,
    pub group: String,
    pub sam: String,
    pub jordan: String,
    pub riley: String,
}

pub(crate) async fn circle(now: &str) -> anyhow::Result<Circle> {
    circle_with(now, |_| {}).await
}

/// [`circle`] with the services' configuration changed first.
pub(crate) async fn circle_with(
    now: &str,
    configure: impl FnOnce(&mut circle_config::Config),
) -> anyhow::Result<Circle> {
    let mut system = System::start_with(now, configure).await?;
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
    wait_for_board(&system, &group, 3).await?;
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
        .wait_for_session(&session, |s| {
            s.roster
                .iter()
                .any(|entry| entry.participant == sam && entry.checked_in)
        })
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
    // Encouragement is a member's own act: staff may not send it, even for a member
    // (the table's row lists participants only).
    let by_staff = system
        .accountability
        .encourage(admin(encourage(&shared.name, &jordan)))
        .await;
    assert_eq!(
        refusal(by_staff),
        (Code::PermissionDenied, "ROLE_NOT_ALLOWED".into(), vec![])
    );
    // A day later Sam reports a setback to the facilitators only.
    system.clock.advance(chrono::Duration::days(1));
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
    let as_jordan = as_participant(
        pb::GetGroupBoardRequest {
            group: group.clone(),
            consistency_token: token.clone(),
        },
        "jordan",
    );
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
    let sunny_counters = sunny.counters.unwrap_or_default();
    assert_eq!(
        (
            sunny_counters.days_since_setback,
            sunny_counters.days_in_recovery
        ),
        (1, 1),
        "a setback shared with facilitators only does not show in a peer's counters"
    );
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
    assert_eq!(
        entry(&staff, &sam).counters.map(|c| c.days_since_setback),
        Some(0)
    );
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
    // Jordan still shares; Riley's feed shows that and nothing of Sam's any more.
    system
        .accountability
        .submit_check_in(as_participant(
            check_in(&jordan, pb::Visibility::Group, "Still with you all."),
            "jordan",
        ))
        .await?;
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
    let mut after = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(message) = feed.message().await? {
            if let Some(pb::watch_group_feed_response::Event::Item(item)) = message.event {
                let done = item
                    .check_in
                    .as_ref()
                    .is_some_and(|c| c.text == "Still with you all.");
                after.push(item);
                if done {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("the feed ended before Jordan's check-in")
    })
    .await??;
    assert!(
        !after.iter().any(|item| item
            .check_in
            .as_ref()
            .is_some_and(|c| c.name.starts_with(&sam))),
        "after revocation: {after:?}"
    );
    Ok(())
}

/// Nudges of a participant, oldest first: (level, recipient, time).
async fn nudges_of(system: &mut System, participant: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let timeline = system
        .accountability
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: participant.into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(timeline
        .items
        .into_iter()
        .filter(|item| item.kind == "nudge")
        .map(|item| {
            (
                item.detail,
                item.time.map(|t| t.seconds).unwrap_or_default(),
            )
        })
        .collect())
}

async fn wait_for_nudges(
    system: &mut System,
    participant: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, i64)>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let nudges = nudges_of(system, participant).await?;
        if nudges.len() >= count {
            return Ok(nudges);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("expected {count} nudges, have {nudges:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn at(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp())
}

#[tokio::test]
async fn the_nudge_ladder_climbs_with_the_clock_keeps_quiet_hours_and_never_repeats_after_a_restart()
-> anyhow::Result<()> {
    // Monday 16 Nov 2026, noon in Chicago (UTC-6).
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-16T18:00:00Z").await?;
    system
        .accountability
        .set_quiet_hours(admin(pb::SetQuietHoursRequest {
            clinic: "networks/acme/clinics/north".into(),
            start_time: "21:00".into(),
            end_time: "08:00".into(),
            request_id: String::new(),
        }))
        .await?;
    // Sam's journal starts with a check-in today; Jordan becomes Sam's partner.
    system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Starting out."),
            "sam",
        ))
        .await?;
    let proposed = system
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
        .await?
        .into_inner()
        .partnership
        .unwrap_or_default();
    let not_sam = system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: proposed.name.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(refusal(not_sam).1, "NOT_THE_INVITEE");
    // Someone outside the partnership is refused before anything about it shows: the
    // same answer for a partnership of others and for one that does not exist.
    for name in [
        proposed.name.clone(),
        "networks/acme/partnerships/no-such-partnership".to_owned(),
    ] {
        let outsider = system
            .accountability
            .accept_partnership(as_participant(
                pb::AcceptPartnershipRequest {
                    name: name.clone(),
                    request_id: String::new(),
                },
                "riley",
            ))
            .await;
        assert_eq!(
            refusal(outsider),
            (
                tonic::Code::PermissionDenied,
                "NOT_YOUR_RECORD".to_owned(),
                vec![]
            ),
            "{name}"
        );
    }
    system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: proposed.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?;

    // Friday noon: a daily goal is set, and then no check-in comes.
    system.clock.advance(chrono::Duration::days(4));
    let before = system.accountability_stream_last_sequence().await?;
    let bad = system
        .accountability
        .set_goal(as_participant(
            pb::SetGoalRequest {
                parent: sam.clone(),
                text: " ".into(),
                cadence: 0,
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(
        refusal(bad).2,
        vec!["text".to_owned(), "cadence".to_owned()]
    );
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );
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

    // Saturday 13:00: the first miss nudges Sam.
    system.clock.advance(chrono::Duration::hours(25));
    let nudges = wait_for_nudges(&mut system, &sam, 1).await?;
    assert_eq!(
        nudges,
        [(
            "participant: missed-check-in".to_owned(),
            at("2026-11-21T19:00:00Z")?
        )]
    );
    // Sunday 13:00: the second reaches the partner.
    system.clock.advance(chrono::Duration::hours(24));
    let nudges = wait_for_nudges(&mut system, &sam, 2).await?;
    assert_eq!(
        nudges[1],
        (
            "partner: missed-check-in".to_owned(),
            at("2026-11-22T19:00:00Z")?
        )
    );

    // Monday 22:00, in quiet hours, the third miss is due but waits. The week-one
    // milestone (recorded on the same pass) shows the nudger has looked.
    system.clock.advance(chrono::Duration::hours(33));
    let client = system.accountability.clone();
    let sam_name = sam.clone();
    eventually(
        || {
            let mut client = client.clone();
            let participant = sam_name.clone();
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
        |items: &Vec<pb::TimelineItem>| {
            items
                .iter()
                .any(|item| item.kind == "milestone" && item.detail == "days-since-setback 7")
        },
    )
    .await?;
    // Tuesday 08:30 the quiet hours end and the facilitator is told.
    system
        .clock
        .advance(chrono::Duration::minutes(10 * 60 + 30));
    let nudges = wait_for_nudges(&mut system, &sam, 3).await?;
    assert_eq!(
        nudges[2],
        (
            "facilitator: missed-check-in".to_owned(),
            at("2026-11-24T14:30:00Z")?
        ),
        "sent after the quiet hours, not in them"
    );

    // A restart does not repeat a step: a nudger that starts afresh (nothing in
    // memory) and makes a whole pass an hour later sends nothing new.
    system.restart().await?;
    // Read once the read model holds everything in the log so far.
    let last = system.nudge_pass_after(chrono::Duration::hours(1)).await?;
    let timeline = system
        .accountability
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: sam.clone(),
            consistency_token: last,
        }))
        .await?
        .into_inner();
    assert_eq!(
        timeline
            .items
            .iter()
            .filter(|item| item.kind == "nudge")
            .count(),
        3,
        "{:?}",
        timeline.items
    );
    // A new miss after a new check-in starts the ladder again.
    system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Back at it."),
            "sam",
        ))
        .await?;
    system.clock.advance(chrono::Duration::hours(25));
    let nudges = wait_for_nudges(&mut system, &sam, 4).await?;
    assert_eq!(nudges.len(), 4, "{nudges:?}");
    assert_eq!(nudges[3].0, "participant: missed-check-in");

    // A setback shared with the partner prompts the partner and the facilitator to support.
    system
        .accountability
        .report_setback(as_participant(
            pb::ReportSetbackRequest {
                parent: sam.clone(),
                text: "Used last night.".into(),
                visibility: pb::Visibility::Partner as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    let nudges = wait_for_nudges(&mut system, &sam, 6).await?;
    let mut support: Vec<&str> = nudges[4..]
        .iter()
        .map(|(detail, _)| detail.as_str())
        .collect();
    support.sort_unstable();
    assert_eq!(
        support,
        ["facilitator: setback-support", "partner: setback-support"],
        "{nudges:?}"
    );

    // When Jordan leaves the group, the partnership ends by itself.
    system
        .enrollment
        .discharge_participant(admin(
            circle_proto::enrollment::v1::DischargeParticipantRequest {
                name: format!("{group}/memberships/jordan"),
                reason: circle_proto::enrollment::v1::EndReason::Completed as i32,
                request_id: String::new(),
            },
        ))
        .await?;
    let pool = system.env.pool.clone();
    let partnership_id = proposed
        .name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    eventually(
        || {
            let pool = pool.clone();
            let partnership_id = partnership_id.clone();
            async move {
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM accountability.partnerships WHERE partnership_id = $1",
                )
                .bind(partnership_id)
                .fetch_optional(&pool)
                .await?;
                Ok(state)
            }
        },
        |state| state.as_deref() == Some("ended"),
    )
    .await?;
    Ok(())
}

/// A backlog longer than one page (200 items) is sent whole at once, though nothing
/// else happens meanwhile: the feed reads on while its last page was cut off, instead
/// of waiting for the read model to move again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_a_page_is_sent_whole_while_nothing_else_happens()
-> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    const BACKLOG: usize = 230;
    let mut token = String::new();
    for number in 0..BACKLOG {
        token = system
            .accountability
            .submit_check_in(as_participant(
                check_in(&sam, pb::Visibility::Group, &format!("Day {number}.")),
                "sam",
            ))
            .await?
            .into_inner()
            .consistency_token;
    }
    // The read model has every one of them before the feed opens.
    system
        .accountability
        .get_participant_timeline(as_participant(
            pb::GetParticipantTimelineRequest {
                participant: sam.clone(),
                consistency_token: token,
            },
            "sam",
        ))
        .await?;
    let open = |system: &mut System| {
        let mut client = system.accountability.clone();
        let group = group.clone();
        async move {
            anyhow::Ok(
                client
                    .watch_group_feed(as_participant(
                        pb::WatchGroupFeedRequest {
                            group,
                            after_position: 0,
                            heartbeat_seconds: 2,
                        },
                        "jordan",
                    ))
                    .await?
                    .into_inner(),
            )
        }
    };
    // Everything before the first heartbeat: a heartbeat comes only once the feed has
    // nothing more to send.
    async fn until_heartbeat(
        feed: &mut tonic::Streaming<pb::WatchGroupFeedResponse>,
    ) -> anyhow::Result<Vec<String>> {
        let mut texts = Vec::new();
        while let Some(message) = feed.message().await? {
            match message.event {
                Some(pb::watch_group_feed_response::Event::Item(item)) => {
                    texts.push(item.check_in.map(|c| c.text).unwrap_or_default());
                }
                Some(pb::watch_group_feed_response::Event::HeartbeatPosition(_)) => break,
                None => {}
            }
        }
        Ok(texts)
    }
    let expected: Vec<String> = (0..BACKLOG)
        .map(|number| format!("Day {number}."))
        .collect();
    let mut first = open(&mut system).await?;
    assert_eq!(until_heartbeat(&mut first).await?, expected);
    // The first feed stays open, so the service's checkpoint poller has run for its two
    // quiet seconds and knows where the read model is: a second feed opened now is
    // woken by nothing but its own cut-off page.
    let mut second = open(&mut system).await?;
    assert_eq!(until_heartbeat(&mut second).await?, expected);
    drop(first);
    Ok(())
}

#[tokio::test]
async fn the_feed_resumes_from_a_position_across_a_restart_with_nothing_missed_or_repeated()
-> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "First."),
            "sam",
        ))
        .await?;
    let read = |system: &mut System, after: u64| {
        let mut client = system.accountability.clone();
        let group = group.clone();
        async move {
            let mut feed = client
                .watch_group_feed(as_participant(
                    pb::WatchGroupFeedRequest {
                        group,
                        after_position: after,
                        heartbeat_seconds: 1,
                    },
                    "jordan",
                ))
                .await?
                .into_inner();
            let mut items = Vec::new();
            while let Some(message) = feed.message().await? {
                match message.event {
                    Some(pb::watch_group_feed_response::Event::Item(item)) => items.push(item),
                    Some(pb::watch_group_feed_response::Event::HeartbeatPosition(_)) => break,
                    None => {}
                }
            }
            anyhow::Ok(items)
        }
    };
    let first = read(&mut system, 0).await?;
    assert_eq!(
        first
            .iter()
            .map(|i| i
                .check_in
                .as_ref()
                .map(|c| c.text.as_str())
                .unwrap_or_default())
            .collect::<Vec<_>>(),
        ["First."]
    );
    let position = first[0].position;

    system.restart().await?;
    system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Second."),
            "sam",
        ))
        .await?;
    let last = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Third."),
            "sam",
        ))
        .await?
        .into_inner()
        .consistency_token;
    system
        .accountability
        .get_group_board(admin(pb::GetGroupBoardRequest {
            group: group.clone(),
            consistency_token: last,
        }))
        .await?;
    let resumed = read(&mut system, position).await?;
    let texts: Vec<&str> = resumed
        .iter()
        .map(|i| {
            i.check_in
                .as_ref()
                .map(|c| c.text.as_str())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(texts, ["Second.", "Third."]);
    assert!(
        resumed
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_and_out_of_bounds_requests_are_refused_and_append_nothing() -> anyhow::Result<()>
{
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    // Someone from another group.
    let clinic = "networks/acme/clinics/north".to_owned();
    let other_group = system.weekly_group(&clinic, "other", "2026-11-01").await?;
    let outsider = system
        .participant(&clinic, "outsider", "Pat", "Lee")
        .await?;
    system.peer_consent(&outsider, None, true).await?;
    system.enroll(&other_group, &outsider).await?;
    let outsider_next = system.session_on(&other_group, "2026-11-24")?;
    system
        .wait_for_session(&outsider_next, |s| s.roster.len() == 1)
        .await?;
    // The refusals below are about the outsider's group: wait until accountability's
    // own roster has them there, not only the sessions service's.
    wait_for_board(&system, &other_group, 1).await?;

    let shared = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&sam, pb::Visibility::Group, "Doing fine."),
            "sam",
        ))
        .await?
        .into_inner()
        .check_in
        .unwrap_or_default();
    let goal = system
        .accountability
        .set_goal(as_participant(
            pb::SetGoalRequest {
                parent: sam.clone(),
                text: "Walk daily".into(),
                cadence: pb::Cadence::Daily as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner()
        .goal
        .unwrap_or_default();
    system
        .accountability
        .abandon_goal(as_participant(
            pb::AbandonGoalRequest {
                name: goal.name.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    let before = system.accountability_stream_last_sequence().await?;

    let outside = system
        .accountability
        .encourage(as_participant(
            pb::EncourageRequest {
                check_in: shared.name.clone(),
                participant: outsider.clone(),
                reaction: "clap".into(),
                message: String::new(),
                request_id: String::new(),
            },
            "outsider",
        ))
        .await;
    assert_eq!(
        refusal(outside),
        (Code::PermissionDenied, "CANNOT_SEE_CHECK_IN".into(), vec![])
    );
    let across = system
        .accountability
        .propose_partnership(as_participant(
            pb::ProposePartnershipRequest {
                participant: sam.clone(),
                invitee: outsider.clone(),
                group: group.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(
        refusal(across),
        (
            Code::FailedPrecondition,
            "NOT_ELIGIBLE_FOR_PARTNERSHIP".into(),
            vec![]
        )
    );
    let on_abandoned = pb::SubmitCheckInRequest {
        goal: goal.name.clone(),
        ..check_in(&sam, pb::Visibility::Group, "x")
    };
    assert_eq!(
        refusal(
            system
                .accountability
                .submit_check_in(as_participant(on_abandoned, "sam"))
                .await
        )
        .1,
        "GOAL_NOT_ACTIVE"
    );
    let too_wide = check_in(&sam, pb::Visibility::Group, "x");
    let mut riley_wide = too_wide.clone();
    riley_wide.parent = "networks/acme/participants/riley".into();
    assert_eq!(
        refusal(
            system
                .accountability
                .submit_check_in(as_participant(riley_wide, "riley"))
                .await
        )
        .1,
        "CONSENT_REQUIRED"
    );
    let out_of_range = pb::SubmitCheckInRequest {
        mood: 11,
        craving: 12,
        ..too_wide.clone()
    };
    assert_eq!(
        refusal(
            system
                .accountability
                .submit_check_in(as_participant(out_of_range, "sam"))
                .await
        )
        .2,
        vec!["mood".to_owned(), "craving".to_owned()]
    );
    let for_someone_else = system
        .accountability
        .submit_check_in(as_participant(
            check_in(&jordan, pb::Visibility::Group, "x"),
            "sam",
        ))
        .await;
    assert_eq!(refusal(for_someone_else).1, "NOT_YOUR_RECORD");
    let own = system
        .accountability
        .encourage(as_participant(
            pb::EncourageRequest {
                check_in: shared.name.clone(),
                participant: sam.clone(),
                reaction: "clap".into(),
                message: String::new(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(refusal(own).0, Code::InvalidArgument);
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );
    Ok(())
}

/// The texts of the check-ins on a participant's timeline, as staff see it.
async fn check_in_texts(system: &System, participant: &str) -> anyhow::Result<Vec<String>> {
    let mut client = system.accountability.clone();
    Ok(client
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: participant.into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .items
        .into_iter()
        .filter_map(|item| item.check_in.map(|c| c.text))
        .collect())
}

#[tokio::test]
async fn a_corrected_session_check_in_reaches_the_journal_too() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
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
        .record_attendance(admin(sessions::RecordAttendanceRequest {
            name: session.clone(),
            participant: sam.clone(),
            status: sessions::AttendanceStatus::Present as i32,
            minutes_attended: 90,
            request_id: String::new(),
        }))
        .await?;
    // The facilitator records Sam's check-in, then corrects it.
    for (mood, share) in [
        (6, "Glad to be here."),
        (4, "Glad to be here, a bit shaky."),
    ] {
        system
            .sessions
            .record_session_check_in(admin(sessions::RecordSessionCheckInRequest {
                name: session.clone(),
                participant: sam.clone(),
                mood,
                craving: 3,
                share: share.into(),
                request_id: String::new(),
            }))
            .await?;
    }
    let texts = eventually(
        || check_in_texts(&system, &sam),
        |texts: &Vec<String>| texts.iter().any(|t| t == "Glad to be here, a bit shaky."),
    )
    .await?;
    assert!(
        texts.iter().any(|t| t == "Glad to be here."),
        "the first check-in stays on the timeline: {texts:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_open_feed_ends_when_the_service_shuts_down() -> anyhow::Result<()> {
    let Circle {
        mut system, group, ..
    } = circle("2026-11-20T18:00:00Z").await?;
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
    // The feed is open: its first heartbeat arrives.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(message) = feed.message().await? {
            if let Some(pb::watch_group_feed_response::Event::HeartbeatPosition(_)) = message.event
            {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the feed ended before its first heartbeat")
    })
    .await??;

    let asked = tokio::time::Instant::now();
    system.stop(std::time::Duration::from_secs(5)).await?;
    // The client sees the stream end: with UNAVAILABLE (reconnect later, from the last
    // position) rather than an end that looks like a finished feed.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match feed.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the feed is still open after shutdown"))?;
    assert_eq!(ended, Some(Code::Unavailable));
    assert!(asked.elapsed() < std::time::Duration::from_secs(10));
    Ok(())
}

/// Every projection's checkpoint in the database: name → (schema, last sequence).
async fn checkpoints(
    pool: &sqlx::PgPool,
) -> anyhow::Result<std::collections::BTreeMap<String, (String, i64)>> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'projection_checkpoint'",
    )
    .fetch_all(pool)
    .await?;
    let mut checkpoints = std::collections::BTreeMap::new();
    for schema in schemas {
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT projection, last_sequence FROM {schema}.projection_checkpoint"
        )))
        .fetch_all(pool)
        .await?;
        for (projection, last_sequence) in rows {
            checkpoints.insert(projection, (schema.clone(), last_sequence));
        }
    }
    Ok(checkpoints)
}

#[tokio::test]
async fn rebuilding_one_process_manager_leaves_the_others_checkpoint() -> anyhow::Result<()> {
    use circle_projection::Projection;
    let Circle { system, .. } = circle("2026-11-20T18:00:00Z").await?;
    let pool = system.env.pool.clone();
    let (from_sessions, guard) = (
        "accountability-from-sessions",
        "accountability-partnership-guard",
    );
    let before = eventually(
        || checkpoints(&pool),
        |checkpoints| {
            checkpoints.get(from_sessions).is_some_and(|c| c.1 > 0)
                && checkpoints.get(guard).is_some_and(|c| c.1 > 0)
        },
    )
    .await?;
    let commands = std::sync::Arc::new(circle_accountability::app::Commands::new(
        circle_eventstore::EventStore::open(
            system.env.nats.clone(),
            circle_accountability::stream_spec(&system.env.config),
        )
        .await?,
        system.env.runtime_pool.clone(),
        system.clock.clone(),
        system.key_store().await?,
    ));
    let database = system.env.database().await?;
    let settings = circle_projection::ProjectionSettings {
        batch_size: 64,
        ack_wait: std::time::Duration::from_secs(2),
        max_attempts: 3,
        ..Default::default()
    };
    let jetstream = system.env.jetstream();
    let sessions_stream = jetstream
        .get_stream(system.env.config.stream_name("sessions"))
        .await?;
    let enrollment_stream = jetstream
        .get_stream(system.env.config.stream_name("enrollment"))
        .await?;

    let rebuilt = circle_accountability::process::FromSessions {
        commands: commands.clone(),
    };
    circle_projection::rebuild(
        &rebuilt,
        &database,
        &before[rebuilt.name()].0,
        &sessions_stream,
        &settings,
    )
    .await?;
    let after = checkpoints(&pool).await?;
    assert!(
        after.get(guard).is_some_and(|c| c.1 >= before[guard].1),
        "the partnership guard's checkpoint survives a rebuild of from-sessions: {after:?}"
    );

    let rebuilt = circle_accountability::process::PartnershipGuard { commands };
    circle_projection::rebuild(
        &rebuilt,
        &database,
        &after[rebuilt.name()].0,
        &enrollment_stream,
        &settings,
    )
    .await?;
    let after = checkpoints(&pool).await?;
    assert!(
        after
            .get(from_sessions)
            .is_some_and(|c| c.1 >= before[from_sessions].1),
        "from-sessions' checkpoint survives a rebuild of the partnership guard: {after:?}"
    );
    Ok(())
}

/// Waits until accountability's own roster shows `members` on the group's board
/// (until it has the group at all, the group is not found).
pub(crate) async fn wait_for_board(
    system: &System,
    group: &str,
    members: usize,
) -> anyhow::Result<()> {
    let client = system.accountability.clone();
    let group = group.to_owned();
    eventually(
        || {
            let mut client = client.clone();
            let group = group.clone();
            async move {
                match client
                    .get_group_board(admin(pb::GetGroupBoardRequest {
                        group,
                        ..Default::default()
                    }))
                    .await
                {
                    Ok(board) => Ok(board.into_inner().entries.len()),
                    Err(status) if status.code() == Code::NotFound => Ok(0),
                    Err(status) => Err(status.into()),
                }
            }
        },
        |count| *count == members,
    )
    .await?;
    Ok(())
}
