//! Membership lifecycle end to end: seat offers and their expiry across restarts,
//! transfers, history, and refused transitions.

use circle_enrollment::domain::Event;
use circle_proto::enrollment::v1 as pb;
use pb::MembershipState as State;
use tonic::Code;

use crate::support::{Service, admin, as_caller, code_and_reason, group_body, membership_of};

fn offers_to(log: &[(u64, Event)], participant: &str) -> usize {
    log.iter()
        .filter(|(_, event)| matches!(event, Event::SeatOffered { participant_id, .. } if participant_id == participant))
        .count()
}

fn expiries_of(log: &[(u64, Event)], participant: &str) -> usize {
    log.iter()
        .filter(|(_, event)| matches!(event, Event::SeatOfferExpired { participant_id, .. } if participant_id == participant))
        .count()
}

/// Forgets what the process managers have done, as if they had died before
/// committing any progress: after a restart they see every event again.
async fn forget_process_progress(service: &Service) -> anyhow::Result<()> {
    for schema in ["enrollment_offer_timers", "enrollment_transfers"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {schema}.projection_checkpoint SET last_sequence = 0"
        )))
        .execute(&service.env.pool)
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_freed_seat_is_offered_once_and_an_expired_offer_moves_on_across_restarts()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "g", 1).await?;
    let first = service.participant(&clinic, "first").await?;
    let second = service.participant(&clinic, "second").await?;
    let third = service.participant(&clinic, "third").await?;
    service.enroll(&group, &first).await?;
    assert_eq!(
        service
            .enroll(&group, &second)
            .await?
            .membership
            .map(|m| m.state),
        Some(State::Waitlisted as i32)
    );
    service.enroll(&group, &third).await?;

    let discharged = service
        .discharge(&membership_of(&group, &first), pb::EndReason::Completed)
        .await?;
    assert_eq!(
        discharged.membership.as_ref().map(|m| m.end_reason),
        Some(pb::EndReason::Completed as i32)
    );
    let offered = service
        .membership(
            &membership_of(&group, &second),
            &discharged.consistency_token,
        )
        .await?;
    assert_eq!(offered.state, State::Offered as i32);
    let expires = offered
        .offer_expire_time
        .map(|t| t.seconds)
        .unwrap_or_default();
    assert_eq!(
        expires,
        "2026-11-22T12:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()?
            .timestamp(),
        "48 hours"
    );

    // The service goes down and comes back with its process managers' progress lost.
    forget_process_progress(&service).await?;
    service.restart().await?;
    service.process_managers_caught_up().await?;
    let log = service.group_log("g").await?;
    assert_eq!(offers_to(&log, "second"), 1, "offered exactly once");
    assert_eq!(offers_to(&log, "third"), 0);

    // Two days pass unanswered: the offer expires and the seat goes to the next.
    service.clock.advance(chrono::Duration::hours(49));
    service
        .wait_for_state(&membership_of(&group, &third), State::Offered)
        .await?;
    let expired = service
        .membership(&membership_of(&group, &second), "")
        .await?;
    assert_eq!(
        (expired.state, expired.end_reason),
        (State::Ended as i32, pb::EndReason::OfferExpired as i32)
    );

    forget_process_progress(&service).await?;
    service.restart().await?;
    service.process_managers_caught_up().await?;
    let log = service.group_log("g").await?;
    assert_eq!(
        (offers_to(&log, "second"), expiries_of(&log, "second")),
        (1, 1)
    );
    assert_eq!(
        (offers_to(&log, "third"), expiries_of(&log, "third")),
        (1, 0),
        "the next offer is made once and still open"
    );

    // A late acceptance is refused; the next person's is taken.
    let late = service
        .client
        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
            name: membership_of(&group, &second),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(late),
        (Code::FailedPrecondition, "OFFER_EXPIRED".to_owned())
    );
    let accepted = service
        .client
        .accept_seat_offer(as_caller(
            pb::AcceptSeatOfferRequest {
                name: membership_of(&group, &third),
                request_id: String::new(),
            },
            "acme",
            "participant",
        ))
        .await;
    assert_eq!(
        code_and_reason(accepted),
        (Code::PermissionDenied, "NOT_YOUR_RECORD".to_owned()),
        "someone else's offer"
    );
    let accepted = service
        .client
        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
            name: membership_of(&group, &third),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        accepted.membership.map(|m| m.state),
        Some(State::Active as i32)
    );
    Ok(())
}

#[tokio::test]
async fn declining_an_offer_passes_the_seat_on_and_raising_capacity_offers_new_seats()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "g", 1).await?;
    let mut people = Vec::new();
    for id in ["a", "b", "c", "d"] {
        let participant = service.participant(&clinic, id).await?;
        service.enroll(&group, &participant).await?;
        people.push(participant);
    }
    service
        .discharge(&membership_of(&group, &people[0]), pb::EndReason::Withdrew)
        .await?;
    let declined = service
        .client
        .decline_seat_offer(admin(pb::DeclineSeatOfferRequest {
            name: membership_of(&group, &people[1]),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        declined.membership.map(|m| m.end_reason),
        Some(pb::EndReason::OfferDeclined as i32)
    );
    let offered = service
        .membership(
            &membership_of(&group, &people[2]),
            &declined.consistency_token,
        )
        .await?;
    assert_eq!(offered.state, State::Offered as i32);

    let raised = service
        .client
        .update_group(admin(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.clone(),
                capacity: 2,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into()],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let view = raised.group.unwrap_or_default();
    assert_eq!(
        (view.capacity, view.open_offer_count, view.waitlist_count),
        (2, 2, 0)
    );
    let offered = service
        .membership(
            &membership_of(&group, &people[3]),
            &raised.consistency_token,
        )
        .await?;
    assert_eq!(offered.state, State::Offered as i32);

    // Lowering below the seats taken or offered is refused and changes nothing.
    let before = service.stream_last_sequence().await?;
    let lowered = service
        .client
        .update_group(admin(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.clone(),
                capacity: 1,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into()],
            }),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(lowered),
        (
            Code::FailedPrecondition,
            "CAPACITY_BELOW_OCCUPANCY".to_owned()
        )
    );
    assert_eq!(service.stream_last_sequence().await?, before);
    Ok(())
}

#[tokio::test]
async fn a_transfer_into_a_full_group_keeps_the_old_seat_until_the_new_one_is_taken()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    let old_group = service.group(&north, "old", 3).await?;
    let new_group = service.group(&south, "new", 1).await?;
    let mover = service.participant(&north, "mover").await?;
    let occupant = service.participant(&south, "occupant").await?;
    service.enroll(&old_group, &mover).await?;
    service.enroll(&new_group, &occupant).await?;

    let transfer = pb::TransferParticipantRequest {
        name: membership_of(&old_group, &mover),
        target_group: new_group.clone(),
        request_id: "move-1".into(),
    };
    let moved = service
        .client
        .transfer_participant(admin(transfer.clone()))
        .await?
        .into_inner();
    let in_new = moved.membership.clone().unwrap_or_default();
    assert_eq!(
        (in_new.state, in_new.waitlist_position),
        (State::Waitlisted as i32, 1)
    );
    service.process_managers_caught_up().await?;
    let in_old = service
        .membership(&membership_of(&old_group, &mover), &moved.consistency_token)
        .await?;
    assert_eq!(
        in_old.state,
        State::Active as i32,
        "still active in the old group"
    );

    // A seat frees in the new group: offered to the mover, who takes it; only then
    // does the old group let them go.
    service
        .discharge(
            &membership_of(&new_group, &occupant),
            pb::EndReason::Completed,
        )
        .await?;
    service
        .wait_for_state(&membership_of(&new_group, &mover), State::Offered)
        .await?;
    service
        .client
        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
            name: membership_of(&new_group, &mover),
            request_id: String::new(),
        }))
        .await?;
    let released = service
        .wait_for_state(&membership_of(&old_group, &mover), State::Ended)
        .await?;
    assert_eq!(released.end_reason, pb::EndReason::Transferred as i32);

    let admitted_at = service
        .group_log("new")
        .await?
        .into_iter()
        .find(|(_, event)| matches!(event, Event::MemberAdmitted { participant_id, transfer: Some(_), .. } if participant_id == "mover"))
        .map(|(sequence, _)| sequence);
    let released_at = service
        .group_log("old")
        .await?
        .into_iter()
        .find(|(_, event)| matches!(event, Event::MemberTransferredOut { participant_id, .. } if participant_id == "mover"))
        .map(|(sequence, _)| sequence);
    assert!(
        matches!((admitted_at, released_at), (Some(admitted), Some(released)) if admitted < released),
        "the new seat was taken ({admitted_at:?}) before the old one was released ({released_at:?})"
    );

    // Retrying the transfer request returns the original answer and moves nothing.
    let before = service.stream_last_sequence().await?;
    let retried = service
        .client
        .transfer_participant(admin(transfer))
        .await?
        .into_inner();
    assert_eq!(retried, moved);
    assert_eq!(service.stream_last_sequence().await?, before);
    Ok(())
}

#[tokio::test]
async fn a_transfer_into_a_free_seat_moves_at_once() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let old_group = service.group(&clinic, "old", 1).await?;
    let new_group = service.group(&clinic, "new", 2).await?;
    let mover = service.participant(&clinic, "mover").await?;
    let waiting = service.participant(&clinic, "waiting").await?;
    service.enroll(&old_group, &mover).await?;
    service.enroll(&old_group, &waiting).await?;
    let moved = service
        .client
        .transfer_participant(admin(pb::TransferParticipantRequest {
            name: membership_of(&old_group, &mover),
            target_group: new_group.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        moved.membership.map(|m| m.state),
        Some(State::Active as i32)
    );
    let left = service
        .wait_for_state(&membership_of(&old_group, &mover), State::Ended)
        .await?;
    assert_eq!(left.end_reason, pb::EndReason::Transferred as i32);
    // The seat the mover left is offered to the old group's waitlist.
    service
        .wait_for_state(&membership_of(&old_group, &waiting), State::Offered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_history_of_a_membership_reads_back_as_recorded() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "g", 1).await?;
    let holder = service.participant(&clinic, "holder").await?;
    let member = service.participant(&clinic, "member").await?;
    service.enroll(&group, &holder).await?;
    service.enroll(&group, &member).await?;
    service
        .discharge(&membership_of(&group, &holder), pb::EndReason::NoShow)
        .await?;
    let name = membership_of(&group, &member);
    service
        .client
        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
            name: name.clone(),
            request_id: String::new(),
        }))
        .await?;
    service
        .client
        .hold_membership(admin(pb::HoldMembershipRequest {
            name: name.clone(),
            reason: "residential treatment for two weeks".into(),
            request_id: String::new(),
        }))
        .await?;
    service
        .client
        .resume_membership(admin(pb::ResumeMembershipRequest {
            name: name.clone(),
            request_id: String::new(),
        }))
        .await?;
    let last = service.discharge(&name, pb::EndReason::Completed).await?;

    let membership = service.membership(&name, &last.consistency_token).await?;
    let read_back: Vec<(String, u64)> = membership
        .history
        .iter()
        .map(|step| (step.kind.clone(), step.version))
        .collect();
    let from_log: Vec<(String, u64)> = service
        .group_log("g")
        .await?
        .into_iter()
        .filter_map(|(sequence, event)| {
            let kind = match event {
                Event::MemberWaitlisted { participant_id, .. } if participant_id == "member" => {
                    "waitlisted"
                }
                Event::SeatOffered { participant_id, .. } if participant_id == "member" => {
                    "offered"
                }
                Event::MemberAdmitted { participant_id, .. } if participant_id == "member" => {
                    "admitted"
                }
                Event::MemberHeld { participant_id, .. } if participant_id == "member" => "held",
                Event::MemberResumed { participant_id } if participant_id == "member" => "resumed",
                Event::MemberDischarged { participant_id, .. } if participant_id == "member" => {
                    "discharged"
                }
                _ => return None,
            };
            Some((kind.to_owned(), sequence))
        })
        .collect();
    assert_eq!(read_back, from_log);
    let kinds: Vec<&str> = read_back.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "waitlisted",
            "offered",
            "admitted",
            "held",
            "resumed",
            "discharged"
        ]
    );
    assert_eq!(
        (membership.state, membership.end_reason),
        (State::Ended as i32, pb::EndReason::Completed as i32)
    );
    assert!(
        membership
            .history
            .iter()
            .all(|step| !step.detail.contains("residential")),
        "free text about the person stays out of the read model"
    );
    Ok(())
}

#[tokio::test]
async fn illegal_transitions_are_refused_with_a_reason_and_append_nothing() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "g", 2).await?;
    let member = service.participant(&clinic, "member").await?;
    let stranger = service.participant(&clinic, "stranger").await?;
    service.enroll(&group, &member).await?;
    let before = service.stream_last_sequence().await?;

    let not_enrolled = service
        .discharge(&membership_of(&group, &stranger), pb::EndReason::Completed)
        .await;
    assert_eq!(
        code_and_reason(not_enrolled),
        (Code::FailedPrecondition, "NOT_ENROLLED".to_owned())
    );
    let twice = service
        .client
        .enroll_participant(admin(pb::EnrollParticipantRequest {
            parent: group.clone(),
            participant: member.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(twice),
        (Code::AlreadyExists, "ALREADY_ENROLLED".to_owned())
    );
    let no_offer = service
        .client
        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
            name: membership_of(&group, &member),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(no_offer),
        (Code::FailedPrecondition, "NO_OPEN_OFFER".to_owned())
    );
    let not_on_hold = service
        .client
        .resume_membership(admin(pb::ResumeMembershipRequest {
            name: membership_of(&group, &member),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(not_on_hold),
        (
            Code::FailedPrecondition,
            "MEMBERSHIP_NOT_ON_HOLD".to_owned()
        )
    );
    let has_members = service
        .client
        .archive_group(admin(pb::ArchiveGroupRequest {
            name: group.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(has_members),
        (Code::FailedPrecondition, "GROUP_HAS_MEMBERS".to_owned())
    );
    let same_group = service
        .client
        .transfer_participant(admin(pb::TransferParticipantRequest {
            name: membership_of(&group, &member),
            target_group: group.clone(),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(same_group),
        (Code::InvalidArgument, "INVALID_ARGUMENT".to_owned())
    );
    let no_reason = service
        .discharge(&membership_of(&group, &member), pb::EndReason::Unspecified)
        .await;
    assert_eq!(
        code_and_reason(no_reason),
        (Code::InvalidArgument, "INVALID_ARGUMENT".to_owned())
    );
    let transferred_is_not_a_discharge = service
        .discharge(&membership_of(&group, &member), pb::EndReason::Transferred)
        .await;
    assert_eq!(
        code_and_reason(transferred_is_not_a_discharge).0,
        Code::InvalidArgument
    );
    let bad_mask = service
        .client
        .update_group(admin(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["clinic".into()],
            }),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(code_and_reason(bad_mask).0, Code::InvalidArgument);
    assert_eq!(
        service.stream_last_sequence().await?,
        before,
        "nothing appended"
    );
    Ok(())
}

#[tokio::test]
async fn a_closed_group_takes_newcomers_after_its_first_session_only_by_facilitator_override()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let closed = pb::Group {
        admission_mode: pb::AdmissionMode::Closed as i32,
        schedule: Some(pb::Schedule {
            days: vec![pb::Weekday::Tuesday as i32],
            start_time: "18:30".into(),
            duration_minutes: 90,
            start_date: "2026-11-01".into(),
            ..Default::default()
        }),
        ..group_body(12)
    };
    let group = service
        .client
        .create_group(admin(pb::CreateGroupRequest {
            parent: clinic.clone(),
            group_id: "closed".into(),
            group: Some(closed),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    // Tuesday 24 Nov 2026, 18:30 in Chicago is 00:30 UTC on the 25th.
    assert_eq!(
        group.next_session_time.map(|t| t.seconds),
        Some(
            "2026-11-25T00:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()?
                .timestamp()
        )
    );
    let late = service.participant(&clinic, "late").await?;
    let refused = service
        .client
        .enroll_participant(admin(pb::EnrollParticipantRequest {
            parent: group.name.clone(),
            participant: late.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(refused),
        (Code::FailedPrecondition, "GROUP_CLOSED".to_owned())
    );
    let intake = crate::support::from(
        pb::EnrollParticipantRequest {
            parent: group.name.clone(),
            participant: late.clone(),
            facilitator_override: true,
            ..Default::default()
        },
        "acme",
        "intake-coordinator",
        "staff-1",
        &["north"],
    );
    let not_allowed = service.client.enroll_participant(intake).await;
    assert_eq!(
        code_and_reason(not_allowed),
        (Code::PermissionDenied, "OVERRIDE_NOT_ALLOWED".to_owned())
    );
    let facilitator = crate::support::from(
        pb::EnrollParticipantRequest {
            parent: group.name.clone(),
            participant: late.clone(),
            facilitator_override: true,
            ..Default::default()
        },
        "acme",
        "facilitator",
        "staff-1",
        &["north"],
    );
    let admitted = service
        .client
        .enroll_participant(facilitator)
        .await?
        .into_inner();
    assert_eq!(
        admitted.membership.map(|m| m.state),
        Some(State::Active as i32)
    );
    let log = service.group_log("closed").await?;
    assert!(log.iter().any(|(_, event)| matches!(
        event,
        Event::MemberAdmitted {
            facilitator_override: true,
            ..
        }
    )));
    Ok(())
}

#[tokio::test]
async fn membership_times_in_command_answers_read_the_same_as_later_reads() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "g", 1).await?;
    let first = service.participant(&clinic, "first").await?;
    let second = service.participant(&clinic, "second").await?;
    // A clock with sub-microsecond digits, as a real one has.
    service
        .clock
        .advance(chrono::Duration::nanoseconds(123_456_789));
    let enrolled = service.enroll(&group, &first).await?;
    let waitlisted = service.enroll(&group, &second).await?;
    service
        .clock
        .advance(chrono::Duration::nanoseconds(987_654_321));
    let discharged = service
        .discharge(&membership_of(&group, &first), pb::EndReason::Completed)
        .await?;
    let answers = [
        (&first, enrolled.membership, enrolled.consistency_token),
        (&second, waitlisted.membership, waitlisted.consistency_token),
        (
            &first,
            discharged.membership.clone(),
            discharged.consistency_token.clone(),
        ),
    ];
    for (participant, answer, token) in answers {
        let answer = answer.unwrap_or_default();
        let read = service
            .membership(&membership_of(&group, participant), &token)
            .await?;
        if read.state == answer.state {
            assert_eq!(answer.since, read.since, "since of {}", answer.name);
        }
        assert!(
            answer.since.is_some_and(|since| since.nanos % 1_000 == 0),
            "{:?} is to the microsecond",
            answer.since
        );
    }
    // The second member was offered the freed seat in the discharge's commit; the
    // offer's expiry reads the same in the log's answer and in the read model.
    let offered = service
        .wait_for_state(&membership_of(&group, &second), State::Offered)
        .await?;
    let offer_expiry = offered.offer_expire_time.unwrap_or_default();
    assert_eq!(offer_expiry.nanos % 1_000, 0, "{offer_expiry:?}");
    let read = service
        .membership(
            &membership_of(&group, &first),
            &discharged.consistency_token,
        )
        .await?;
    let discharged = discharged.membership.unwrap_or_default();
    assert!(
        read.history
            .iter()
            .any(|entry| entry.time == discharged.since),
        "the discharge's time {:?} is in the history: {:?}",
        discharged.since,
        read.history
    );
    Ok(())
}
