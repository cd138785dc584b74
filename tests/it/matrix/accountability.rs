//! The accountability service's matrix (services/accountability/README.md).
//!
//! Placements: `north` and `south` (a clinic, its group `<clinic>-tue` — led by
//! staff-1 in north, staff-3 in south — or the partnership in it: sam and jordan in
//! north, pat and kim in south); `sam` and `pat` (a participant's record: their
//! journal, goal and check-ins; for `Encourage`, the encourager, on a check-in of a
//! fellow member); `staff-1` and `staff-3` (a facilitator's at-risk list).

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use pb::accountability_service_client::AccountabilityServiceClient;
use tonic::transport::Channel;

use super::{ACME, Answer, OTHER, Row, with_token};
use crate::support::System;

/// What every caller may do in accountability, and where. Queries first: they must
/// answer `ok` on what was seeded, before any command changed it.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // rpc                       placement   admin  cadmin fac    facx   intake sam    pat    svc
    ("GetGroupBoard",            "north",   "ok     ok     ok     FAC    ROLE   ok     MEMBER ROLE"),
    ("GetGroupBoard",            "south",   "ok     CLINIC CLINIC CLINIC ROLE   MEMBER ok     ROLE"),
    ("WatchGroupFeed",           "north",   "ok     ok     ok     FAC    ROLE   ok     MEMBER ROLE"),
    ("WatchGroupFeed",           "south",   "ok     CLINIC CLINIC CLINIC ROLE   MEMBER ok     ROLE"),
    ("GetParticipantTimeline",   "sam",     "ok     ok     ok     RECORD ROLE   ok     RECORD ROLE"),
    ("GetParticipantTimeline",   "pat",     "ok     RECORD RECORD RECORD ROLE   RECORD ok     ROLE"),
    ("ListAtRisk",               "staff-1", "ok     ok     ok     LIST   ROLE   ROLE   ROLE   ROLE"),
    ("ListAtRisk",               "staff-3", "ok     ok     LIST   LIST   ROLE   ROLE   ROLE   ROLE"),
    ("ListMeasurements",         "sam",     "ok     ok     ok     RECORD ROLE   ok     RECORD ROLE"),
    ("ListMeasurements",         "pat",     "ok     RECORD RECORD RECORD ROLE   RECORD ok     ROLE"),
    // Integration events are for calling services (which ones: auth.services).
    ("WatchIntegrationEvents",   "north",   "ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   ok"),
    // A recipient lists only their own nudges, whatever their role.
    ("ListMyNudges",             "sam",     "RECORD RECORD RECORD RECORD ROLE   ok     RECORD ROLE"),
    ("ListMyNudges",             "staff-1", "RECORD RECORD ok     RECORD ROLE   RECORD RECORD ROLE"),
    // Commands: one request id per row (the first permitted caller's runs, the rest
    // are its retries), or a refusal of the domain.
    ("SetGoal",                  "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("SetGoal",                  "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("ReviseGoal",               "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("ReviseGoal",               "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("SubmitCheckIn",            "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("SubmitCheckIn",            "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("ReportSetback",            "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("ReportSetback",            "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("Encourage",                "sam",     "ROLE   ROLE   ROLE   ROLE   ROLE   pass   RECORD ROLE"),
    ("Encourage",                "pat",     "ROLE   ROLE   ROLE   ROLE   ROLE   RECORD pass   ROLE"),
    ("ProposePartnership",       "north",   "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("ProposePartnership",       "south",   "pass   CLINIC CLINIC CLINIC ROLE   RECORD pass   ROLE"),
    ("AcceptPartnership",        "north",   "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("AcceptPartnership",        "south",   "pass   CLINIC CLINIC CLINIC ROLE   RECORD pass   ROLE"),
    ("SetQuietHours",            "north",   "pass   pass   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("SetQuietHours",            "south",   "pass   CLINIC ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("CompleteGoal",             "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("CompleteGoal",             "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("AbandonGoal",              "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("AbandonGoal",              "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
    ("EndPartnership",           "north",   "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("EndPartnership",           "south",   "pass   CLINIC CLINIC CLINIC ROLE   RECORD pass   ROLE"),
    // Whether the caller is the nudge's recipient is the journal's to say (NOT_FOUND
    // to anyone else, as for no such nudge).
    ("AcknowledgeNudge",         "sam",     "pass   pass   pass   pass   ROLE   pass   pass   ROLE"),
    ("RecordNudgeDelivery",      "sam",     "ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("SetMeasurementCadence",    "sam",     "pass   pass   pass   RECORD ROLE   ROLE   ROLE   ROLE"),
    ("SetMeasurementCadence",    "pat",     "pass   RECORD RECORD RECORD ROLE   ROLE   ROLE   ROLE"),
    ("SubmitMeasurement",        "sam",     "pass   pass   pass   RECORD ROLE   pass   RECORD ROLE"),
    ("SubmitMeasurement",        "pat",     "pass   RECORD RECORD RECORD ROLE   RECORD pass   ROLE"),
];

/// A placement: the clinic, its group's lead, the participant whose record or
/// partnership it is, and their partner (a fellow member).
fn place(place: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    match place {
        "south" | "pat" | "staff-3" => ("south", "staff-3", "pat", "kim"),
        _ => ("north", "staff-1", "sam", "jordan"),
    }
}

fn clinic(network: &str, clinic: &str) -> String {
    format!("networks/{network}/clinics/{clinic}")
}

fn group_id(clinic_id: &str) -> String {
    format!("{clinic_id}-tue")
}

fn group(network: &str, clinic_id: &str) -> String {
    format!(
        "{}/groups/{}",
        clinic(network, clinic_id),
        group_id(clinic_id)
    )
}

fn participant(network: &str, participant: &str) -> String {
    format!("networks/{network}/participants/{participant}")
}

/// The goal `seed` sets for `member` (ids derive from the parent and the request id,
/// as the service derives them).
fn goal(network: &str, member: &str) -> String {
    let parent = participant(network, member);
    let id = circle_names::Id::derived(&format!("{parent}/goal/seed-goal-{member}"));
    format!("{parent}/goals/{id}")
}

/// The check-in `seed` submits for `member`.
fn check_in(network: &str, member: &str) -> String {
    let parent = participant(network, member);
    let id = circle_names::Id::derived(&format!("{parent}/check-in/seed-check-in-{member}"));
    format!("{parent}/check-ins/{id}")
}

/// The partnership of two members of a clinic's group.
fn partnership(network: &str, clinic_id: &str, one: &str, other: &str) -> String {
    let (a, b) = if one <= other {
        (one, other)
    } else {
        (other, one)
    };
    let group = group_id(clinic_id);
    let id = circle_names::Id::derived(&format!("{network}/{group}/{a}/{b}"));
    format!("networks/{network}/partnerships/{id}")
}

/// One call of `rpc` at `place`, with names of `network`, as the bearer of `token`.
async fn call(
    client: &AccountabilityServiceClient<Channel>,
    rpc: &'static str,
    at_place: &'static str,
    network: &'static str,
    token: String,
) -> anyhow::Result<Answer> {
    let mut client = client.clone();
    let n = network;
    let request_id = format!("matrix-{}-{at_place}", rpc.to_ascii_lowercase());
    let (clinic_id, _, member, partner) = place(at_place);
    let t = token.as_str();
    Ok(match rpc {
        "GetGroupBoard" => Answer::of(
            client
                .get_group_board(with_token(
                    pb::GetGroupBoardRequest {
                        group: group(n, clinic_id),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        // Let in or not is answered when the stream opens.
        "WatchGroupFeed" => Answer::of(
            client
                .watch_group_feed(with_token(
                    pb::WatchGroupFeedRequest {
                        group: group(n, clinic_id),
                        after_position: 0,
                        heartbeat_seconds: 1,
                    },
                    t,
                ))
                .await,
        ),
        "GetParticipantTimeline" => Answer::of(
            client
                .get_participant_timeline(with_token(
                    pb::GetParticipantTimelineRequest {
                        participant: participant(n, member),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListAtRisk" => Answer::of(
            client
                .list_at_risk(with_token(
                    pb::ListAtRiskRequest {
                        parent: format!("networks/{n}/staff/{at_place}"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "SetGoal" => Answer::of(
            client
                .set_goal(with_token(
                    pb::SetGoalRequest {
                        parent: participant(n, member),
                        text: "Walk every morning".into(),
                        cadence: pb::Cadence::Daily as i32,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ReviseGoal" => Answer::of(
            client
                .revise_goal(with_token(
                    pb::ReviseGoalRequest {
                        name: goal(n, member),
                        text: "Call my sponsor twice a week".into(),
                        cadence: pb::Cadence::Weekly as i32,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "CompleteGoal" => Answer::of(
            client
                .complete_goal(with_token(
                    pb::CompleteGoalRequest {
                        name: goal(n, member),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "AbandonGoal" => Answer::of(
            client
                .abandon_goal(with_token(
                    pb::AbandonGoalRequest {
                        name: goal(n, member),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "SubmitCheckIn" => Answer::of(
            client
                .submit_check_in(with_token(
                    pb::SubmitCheckInRequest {
                        parent: participant(n, member),
                        progress: pb::Progress::OnTrack as i32,
                        mood: 6,
                        craving: 2,
                        text: "A steady day.".into(),
                        visibility: pb::Visibility::Facilitators as i32,
                        request_id,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ReportSetback" => Answer::of(
            client
                .report_setback(with_token(
                    pb::ReportSetbackRequest {
                        parent: participant(n, member),
                        text: "A hard evening.".into(),
                        visibility: pb::Visibility::Facilitators as i32,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "Encourage" => Answer::of(
            client
                .encourage(with_token(
                    pb::EncourageRequest {
                        check_in: check_in(n, partner),
                        participant: participant(n, member),
                        reaction: "clap".into(),
                        message: "Keep going.".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ProposePartnership" => Answer::of(
            client
                .propose_partnership(with_token(
                    pb::ProposePartnershipRequest {
                        participant: participant(n, member),
                        invitee: participant(n, partner),
                        group: group(n, clinic_id),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "AcceptPartnership" => Answer::of(
            client
                .accept_partnership(with_token(
                    pb::AcceptPartnershipRequest {
                        name: partnership(n, clinic_id, member, partner),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "EndPartnership" => Answer::of(
            client
                .end_partnership(with_token(
                    pb::EndPartnershipRequest {
                        name: partnership(n, clinic_id, member, partner),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "SetQuietHours" => Answer::of(
            client
                .set_quiet_hours(with_token(
                    pb::SetQuietHoursRequest {
                        clinic: clinic(n, clinic_id),
                        start_time: "22:00".into(),
                        end_time: "07:00".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        // Let in or not is answered when the stream opens.
        "WatchIntegrationEvents" => Answer::of(
            client
                .watch_integration_events(with_token(
                    pb::WatchIntegrationEventsRequest {
                        network: format!("networks/{n}"),
                        heartbeat_seconds: 1,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListMeasurements" => Answer::of(
            client
                .list_measurements(with_token(
                    pb::ListMeasurementsRequest {
                        participant: participant(n, member),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "SetMeasurementCadence" => Answer::of(
            client
                .set_measurement_cadence(with_token(
                    pb::SetMeasurementCadenceRequest {
                        participant: participant(n, member),
                        instrument: "gad-7".into(),
                        every_days: 14,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "SubmitMeasurement" => Answer::of(
            client
                .submit_measurement(with_token(
                    pb::SubmitMeasurementRequest {
                        parent: participant(n, member),
                        instrument: "gad-7".into(),
                        answers: (1..=7)
                            .map(|item| pb::MeasurementAnswer {
                                item: item.to_string(),
                                option: 1,
                            })
                            .collect(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ListMyNudges" => Answer::of(
            client
                .list_my_nudges(with_token(
                    pb::ListMyNudgesRequest {
                        recipient: if at_place.starts_with("staff-") {
                            format!("networks/{n}/staff/{at_place}")
                        } else {
                            participant(n, member)
                        },
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "AcknowledgeNudge" => Answer::of(
            client
                .acknowledge_nudge(with_token(
                    pb::AcknowledgeNudgeRequest {
                        name: format!("{}/nudges/no-such-nudge", participant(n, member)),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RecordNudgeDelivery" => Answer::of(
            client
                .record_nudge_delivery(with_token(
                    pb::RecordNudgeDeliveryRequest {
                        name: format!("{}/nudges/no-such-nudge", participant(n, member)),
                        state: pb::DeliveryState::Delivered as i32,
                        channel: pb::DeliveryChannel::Push as i32,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        other => anyhow::bail!("no request for {other}"),
    })
}

/// What the matrix needs in `network`: in each of north and south a group
/// (`<clinic>-tue`, led by staff-1 in north and staff-3 in south) with two members who
/// share check-ins (sam and jordan, pat and kim); each member's goal and check-in,
/// made by themselves; and the first proposing a partnership to the second.
async fn seed(system: &System, network: &str) -> anyhow::Result<()> {
    let mut enrollment = system.enrollment.clone();
    let mut accountability = system.accountability.clone();
    let admin = circle_testkit::token(network, "admin-1", &["network-admin"], &[]);
    let t = admin.as_str();
    for (clinic_id, lead, first, second) in [place("north"), place("south")] {
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
                    group_id: group_id(clinic_id),
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
        for member in [first, second] {
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
                .record_consent(with_token(
                    enrollment::RecordConsentRequest {
                        parent: participant(network, member),
                        consent: Some(enrollment::Consent {
                            kind: enrollment::ConsentKind::PeerVisibility as i32,
                            display: enrollment::PeerDisplay::FirstName as i32,
                            share_check_ins: true,
                            share_milestones: true,
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
    }
    for (clinic_id, _, first, second) in [place("north"), place("south")] {
        // Accountability learns the roster from the enrollment stream.
        super::until("the roster shows both members", || {
            let mut accountability = accountability.clone();
            let request = with_token(
                pb::GetGroupBoardRequest {
                    group: group(network, clinic_id),
                    ..Default::default()
                },
                t,
            );
            async move {
                Ok(match accountability.get_group_board(request).await {
                    Ok(board) => board.into_inner().entries.len() == 2,
                    Err(status) if status.code() == tonic::Code::NotFound => false,
                    Err(status) => return Err(status.into()),
                })
            }
        })
        .await?;
        for member in [first, second] {
            let own = circle_testkit::token(network, member, &["participant"], &[]);
            let set = accountability
                .set_goal(with_token(
                    pb::SetGoalRequest {
                        parent: participant(network, member),
                        text: "Go to a meeting".into(),
                        cadence: pb::Cadence::Daily as i32,
                        request_id: format!("seed-goal-{member}"),
                    },
                    &own,
                ))
                .await?
                .into_inner();
            anyhow::ensure!(
                set.goal.map(|goal| goal.name) == Some(goal(network, member)),
                "the matrix names {member}'s goal as the service does"
            );
            let checked_in = accountability
                .submit_check_in(with_token(
                    pb::SubmitCheckInRequest {
                        parent: participant(network, member),
                        progress: pb::Progress::OnTrack as i32,
                        mood: 7,
                        craving: 1,
                        text: "Went to the meeting.".into(),
                        visibility: pb::Visibility::Group as i32,
                        request_id: format!("seed-check-in-{member}"),
                        ..Default::default()
                    },
                    &own,
                ))
                .await?
                .into_inner();
            anyhow::ensure!(
                checked_in.check_in.map(|check_in| check_in.name)
                    == Some(check_in(network, member)),
                "the matrix names {member}'s check-in as the service does"
            );
        }
        let proposer = circle_testkit::token(network, first, &["participant"], &[]);
        let proposed = accountability
            .propose_partnership(with_token(
                pb::ProposePartnershipRequest {
                    participant: participant(network, first),
                    invitee: participant(network, second),
                    group: group(network, clinic_id),
                    request_id: String::new(),
                },
                &proposer,
            ))
            .await?
            .into_inner();
        anyhow::ensure!(
            proposed.partnership.map(|partnership| partnership.name)
                == Some(partnership(network, clinic_id, first, second)),
            "the matrix names the partnership as the service does"
        );
        // Read what was written, so the queries answer on all of it.
        accountability
            .get_group_board(with_token(
                pb::GetGroupBoardRequest {
                    group: group(network, clinic_id),
                    consistency_token: proposed.consistency_token,
                },
                t,
            ))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_accountability_rpc_admits_exactly_whom_its_row_names() -> anyhow::Result<()> {
    let rpcs = circle_proto::rpc_names("circle.accountability.v1", "AccountabilityService")?;
    super::check_table(TABLE, &rpcs)?;
    let system = super::system("2026-11-20T12:00:00Z").await?;
    let client = system.accountability.clone();
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
