//! Nudges that reach people: each rung of the ladder in its recipient's
//! `ListMyNudges`, an acknowledgement that stops the next rung, quiet hours and a
//! revoked consent holding back what they should, and a messaging service's receipt.
//! The clock is the tests' own; each step runs a whole nudger pass
//! (`Nudger::once`, as the running one does) and reads with a consistency token, so
//! "not sent" is asserted after a pass that would have sent it.

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use tonic::Code;

use crate::accountability::{Circle, circle_with};
use crate::support::{
    System, admin, as_caller, as_facilitator, as_messaging, as_participant, refusal,
};

/// The nudges `recipient` (a participant's or staff member's name) lists as `who`.
async fn my_nudges(
    system: &mut System,
    recipient: &str,
    who: (&'static str, &'static str),
    token: &str,
) -> anyhow::Result<Vec<pb::Nudge>> {
    Ok(system
        .accountability
        .list_my_nudges(as_caller(
            pb::ListMyNudgesRequest {
                recipient: recipient.into(),
                consistency_token: token.into(),
                ..Default::default()
            },
            who.0,
            who.1,
        ))
        .await?
        .into_inner()
        .nudges)
}

fn summary(nudges: &[pb::Nudge]) -> Vec<(String, pb::NudgeLevel, pb::NudgeReason)> {
    nudges
        .iter()
        .map(|nudge| (nudge.recipient.clone(), nudge.level(), nudge.reason()))
        .collect()
}

fn check_in(parent: &str) -> pb::SubmitCheckInRequest {
    pb::SubmitCheckInRequest {
        parent: parent.into(),
        progress: pb::Progress::OnTrack as i32,
        mood: 7,
        craving: 2,
        text: "Doing fine.".into(),
        visibility: pb::Visibility::Group as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_ladder_reaches_each_recipient_stops_when_acknowledged_and_holds_back_in_quiet_hours_and_without_consent()
-> anyhow::Result<()> {
    // Monday 16 Nov 2026, noon in Chicago (UTC-6); quiet hours 21:00–08:00.
    let Circle {
        mut system,
        sam,
        jordan,
        group,
        ..
    } = circle_with("2026-11-16T18:00:00Z", |config| {
        config.auth.services.insert(
            "messaging".to_owned(),
            vec!["circle.accountability.v1.AccountabilityService/RecordNudgeDelivery".to_owned()],
        );
    })
    .await?;
    let staff = "networks/acme/staff/staff-1";
    system
        .accountability
        .set_quiet_hours(admin(pb::SetQuietHoursRequest {
            clinic: "networks/acme/clinics/north".into(),
            start_time: "21:00".into(),
            end_time: "08:00".into(),
            request_id: String::new(),
        }))
        .await?;
    system
        .accountability
        .submit_check_in(as_participant(check_in(&sam), "sam"))
        .await?;
    let partnership = system
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
    system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: partnership.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?;
    // Friday noon: a daily goal, then no check-in.
    system.clock.advance(chrono::Duration::days(4));
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

    // Saturday 13:00, the first miss: Sam's own nudge, and nobody else's.
    let token = system.nudge_pass_after(chrono::Duration::hours(25)).await?;
    let sams = my_nudges(&mut system, &sam, ("participant", "sam"), &token).await?;
    assert_eq!(
        summary(&sams),
        [(
            sam.clone(),
            pb::NudgeLevel::Participant,
            pb::NudgeReason::MissedCheckIn
        )]
    );
    assert!(sams[0].name.starts_with(&format!("{sam}/nudges/")));
    assert_eq!(sams[0].delivery_state(), pb::DeliveryState::Pending);
    assert!(sams[0].acknowledge_time.is_none());
    assert!(
        my_nudges(&mut system, &jordan, ("participant", "jordan"), &token)
            .await?
            .is_empty()
    );

    // Sunday 13:00, the second miss, Sam's nudge unacknowledged: the partner's rung
    // is in Jordan's list, about Sam, saying why and nothing more.
    let token = system.nudge_pass_after(chrono::Duration::hours(24)).await?;
    let jordans = my_nudges(&mut system, &jordan, ("participant", "jordan"), &token).await?;
    assert_eq!(
        summary(&jordans),
        [(
            jordan.clone(),
            pb::NudgeLevel::Partner,
            pb::NudgeReason::MissedCheckIn
        )]
    );
    let partner_nudge = jordans[0].clone();
    assert!(partner_nudge.name.starts_with(&format!("{sam}/nudges/")));
    // Sam's list does not show the rung sent to Jordan; nobody else may list Jordan's
    // or acknowledge it.
    assert_eq!(
        my_nudges(&mut system, &sam, ("participant", "sam"), &token)
            .await?
            .len(),
        1
    );
    let outsider = system
        .accountability
        .list_my_nudges(as_participant(
            pb::ListMyNudgesRequest {
                recipient: jordan.clone(),
                ..Default::default()
            },
            "riley",
        ))
        .await;
    assert_eq!(
        refusal(outsider),
        (Code::PermissionDenied, "NOT_YOUR_RECORD".to_owned(), vec![])
    );
    for (role, actor) in [
        ("participant", "riley"),
        ("participant", "sam"),
        ("facilitator", "staff-1"),
    ] {
        let before = system.accountability_stream_last_sequence().await?;
        let refused = system
            .accountability
            .acknowledge_nudge(as_caller(
                pb::AcknowledgeNudgeRequest {
                    name: partner_nudge.name.clone(),
                    request_id: String::new(),
                },
                role,
                actor,
            ))
            .await;
        assert_eq!(
            refusal(refused),
            (Code::NotFound, "NUDGE_NOT_FOUND".to_owned(), vec![]),
            "{actor}"
        );
        assert_eq!(
            system
                .client_commits_since(
                    circle_accountability::stream_spec(&system.env.config),
                    before
                )
                .await?,
            Vec::<String>::new(),
            "a refusal appends nothing"
        );
    }
    // Jordan acknowledges; the answer is what a read shows.
    let acknowledged = system
        .accountability
        .acknowledge_nudge(as_participant(
            pb::AcknowledgeNudgeRequest {
                name: partner_nudge.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?
        .into_inner();
    let answer = acknowledged.nudge.clone().unwrap_or_default();
    assert!(answer.acknowledge_time.is_some());
    let listed = my_nudges(
        &mut system,
        &jordan,
        ("participant", "jordan"),
        &acknowledged.consistency_token,
    )
    .await?;
    assert_eq!(listed, [answer]);

    // Tuesday 09:00, the third miss is long due and the quiet hours are over: the
    // facilitator's rung is not sent, the partner having seen theirs.
    let token = system.nudge_pass_after(chrono::Duration::hours(44)).await?;
    assert!(
        my_nudges(&mut system, staff, ("facilitator", "staff-1"), &token)
            .await?
            .is_empty(),
        "the facilitator is not told"
    );
    let timeline = system
        .accountability
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: sam.clone(),
            consistency_token: token.clone(),
        }))
        .await?
        .into_inner();
    let rungs: Vec<&str> = timeline
        .items
        .iter()
        .filter(|item| item.kind == "nudge")
        .map(|item| item.detail.as_str())
        .collect();
    assert_eq!(
        rungs,
        ["participant: missed-check-in", "partner: missed-check-in"]
    );

    // A messaging service records delivering Sam's own nudge; Sam sees it delivered.
    let receipt = system
        .accountability
        .record_nudge_delivery(as_messaging(
            pb::RecordNudgeDeliveryRequest {
                name: sams[0].name.clone(),
                state: pb::DeliveryState::Delivered as i32,
                channel: pb::DeliveryChannel::Sms as i32,
                request_id: String::new(),
            },
            "acme",
        ))
        .await?
        .into_inner();
    let delivered = receipt.nudge.unwrap_or_default();
    assert_eq!(delivered.delivery_state(), pb::DeliveryState::Delivered);
    assert_eq!(delivered.delivery_channel(), pb::DeliveryChannel::Sms);
    let sams = my_nudges(
        &mut system,
        &sam,
        ("participant", "sam"),
        &receipt.consistency_token,
    )
    .await?;
    assert_eq!(sams, [delivered]);
    // Only a calling service records receipts, a failure after delivery is refused,
    // and a state that is no outcome is a bad field.
    let not_a_service = system
        .accountability
        .record_nudge_delivery(as_participant(
            pb::RecordNudgeDeliveryRequest {
                name: sams[0].name.clone(),
                state: pb::DeliveryState::Delivered as i32,
                channel: pb::DeliveryChannel::Sms as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(refusal(not_a_service).1, "ROLE_NOT_ALLOWED");
    let late_failure = system
        .accountability
        .record_nudge_delivery(as_messaging(
            pb::RecordNudgeDeliveryRequest {
                name: sams[0].name.clone(),
                state: pb::DeliveryState::Failed as i32,
                channel: pb::DeliveryChannel::Sms as i32,
                request_id: String::new(),
            },
            "acme",
        ))
        .await;
    assert_eq!(
        refusal(late_failure),
        (
            Code::FailedPrecondition,
            "NUDGE_ALREADY_DELIVERED".to_owned(),
            vec![]
        )
    );
    let pending = system
        .accountability
        .record_nudge_delivery(as_messaging(
            pb::RecordNudgeDeliveryRequest {
                name: sams[0].name.clone(),
                state: pb::DeliveryState::Pending as i32,
                channel: 0,
                request_id: String::new(),
            },
            "acme",
        ))
        .await;
    assert_eq!(
        refusal(pending).2,
        vec!["state".to_owned(), "channel".to_owned()]
    );

    // A new ladder after a check-in, once Sam has withdrawn consent for peers to see
    // their check-ins: Jordan hears nothing of it (and no longer lists the earlier
    // rung about Sam), and the facilitator's rung waits out the quiet hours.
    system
        .accountability
        .submit_check_in(as_participant(check_in(&sam), "sam"))
        .await?;
    let consents = system
        .enrollment
        .get_participant(admin(enrollment::GetParticipantRequest {
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
        .find(|consent| consent.kind() == enrollment::ConsentKind::PeerVisibility)
        .ok_or_else(|| anyhow::anyhow!("Sam's peer-visibility consent"))?;
    system
        .enrollment
        .revoke_consent(admin(enrollment::RevokeConsentRequest {
            name: peer.name.clone(),
            request_id: String::new(),
        }))
        .await?;
    // The roster follows enrollment's log: wait until the board shows Sam withheld.
    let client = system.accountability.clone();
    let board_group = group.clone();
    crate::support::eventually(
        || {
            let mut client = client.clone();
            let group = board_group.clone();
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
            entries
                .iter()
                .any(|entry| entry.participant.ends_with("/sam") && entry.last_check_in.is_none())
        },
    )
    .await?;
    // Wednesday 09:00 (a day after the check-in at Tuesday 09:00) and Thursday 09:00:
    // Sam's nudge, then nothing for Jordan.
    let token = system.nudge_pass_after(chrono::Duration::hours(24)).await?;
    assert_eq!(
        my_nudges(&mut system, &sam, ("participant", "sam"), &token)
            .await?
            .len(),
        2
    );
    let token = system.nudge_pass_after(chrono::Duration::hours(24)).await?;
    assert!(
        my_nudges(&mut system, &jordan, ("participant", "jordan"), &token)
            .await?
            .is_empty(),
        "the partner lists nothing about Sam without Sam's consent"
    );
    // …and no partner's rung was sent for this ladder (Sam's record, as the care team
    // sees it: still the one partner's rung of the first ladder).
    let timeline = system
        .accountability
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: sam.clone(),
            consistency_token: token.clone(),
        }))
        .await?
        .into_inner();
    let partner_rungs = timeline
        .items
        .iter()
        .filter(|item| item.kind == "nudge" && item.detail.starts_with("partner:"))
        .count();
    assert_eq!(
        partner_rungs, 1,
        "the partner hears nothing without Sam's consent"
    );
    // Nor may Jordan act on the first ladder's rung any more.
    let withheld = system
        .accountability
        .acknowledge_nudge(as_participant(
            pb::AcknowledgeNudgeRequest {
                name: partner_nudge.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await;
    assert_eq!(refusal(withheld).1, "NUDGE_NOT_FOUND");
    // Friday 22:00 Chicago, the third miss due since 09:00, the first pass in quiet
    // hours: held back.
    let token = system.nudge_pass_after(chrono::Duration::hours(37)).await?;
    assert!(
        my_nudges(&mut system, staff, ("facilitator", "staff-1"), &token)
            .await?
            .is_empty(),
        "nothing in quiet hours"
    );
    // Saturday 08:30, the quiet hours over: the facilitator's rung.
    let token = system
        .nudge_pass_after(chrono::Duration::minutes(10 * 60 + 30))
        .await?;
    let facilitators = my_nudges(&mut system, staff, ("facilitator", "staff-1"), &token).await?;
    assert_eq!(
        summary(&facilitators),
        [(
            staff.to_owned(),
            pb::NudgeLevel::Facilitator,
            pb::NudgeReason::MissedCheckIn
        )]
    );
    let sent = facilitators[0]
        .send_time
        .map(|time| time.seconds)
        .unwrap_or_default();
    assert_eq!(
        sent,
        "2026-11-28T14:30:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()?
            .timestamp(),
        "sent when the quiet hours ended"
    );
    // The facilitator acknowledges it (staff act on their own nudges).
    let acknowledged = system
        .accountability
        .acknowledge_nudge(as_facilitator(pb::AcknowledgeNudgeRequest {
            name: facilitators[0].name.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert!(
        acknowledged
            .nudge
            .is_some_and(|nudge| nudge.acknowledge_time.is_some())
    );
    let unacknowledged = system
        .accountability
        .list_my_nudges(as_facilitator(pb::ListMyNudgesRequest {
            recipient: staff.into(),
            unacknowledged_only: true,
            consistency_token: acknowledged.consistency_token,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(unacknowledged.nudges.is_empty());
    Ok(())
}
