use std::collections::HashSet;

use circle_proto::enrollment::v1 as pb;
use futures::future::join_all;

use crate::support::{Service, admin, group_body, reason_and_fields};

#[tokio::test]
async fn forty_concurrent_enrolls_into_twelve_seats() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "process-tue", 12).await?;
    let mut participants = Vec::new();
    for index in 0..40 {
        participants.push(
            service
                .participant(&clinic, &format!("p{index:02}"))
                .await?,
        );
    }

    let calls = participants.iter().enumerate().map(|(index, participant)| {
        let mut client = service.client.clone();
        let request = pb::EnrollParticipantRequest {
            parent: group.clone(),
            participant: participant.clone(),
            request_id: format!("enroll-{index}"),
            etag: String::new(),
            facilitator_override: false,
        };
        async move { client.enroll_participant(admin(request)).await }
    });
    let results = join_all(calls).await;
    let mut responses = Vec::new();
    for result in results {
        // No error at all is expected: conflicts are retried inside the service.
        responses.push(result?.into_inner());
    }
    let active: Vec<_> = responses
        .iter()
        .filter(|response| {
            response
                .membership
                .as_ref()
                .is_some_and(|m| m.state == pb::MembershipState::Active as i32)
        })
        .collect();
    let mut waitlisted: Vec<_> = responses
        .iter()
        .filter(|response| {
            response
                .membership
                .as_ref()
                .is_some_and(|m| m.state == pb::MembershipState::Waitlisted as i32)
        })
        .collect();
    assert_eq!(active.len(), 12);
    assert_eq!(waitlisted.len(), 28);

    // Arrival order is the order of the commits on the group: positions 1..=28 follow
    // the etags (stream sequences) of the commits that waitlisted them.
    let etag = |response: &&pb::EnrollParticipantResponse| -> u64 {
        response.etag.parse().expect("an etag is a stream sequence")
    };
    waitlisted.sort_by_key(etag);
    let positions: Vec<u32> = waitlisted
        .iter()
        .filter_map(|response| response.membership.as_ref().map(|m| m.waitlist_position))
        .collect();
    assert_eq!(positions, (1..=28).collect::<Vec<_>>());
    // Every admission came before every waitlisting.
    let last_admission = active.iter().map(etag).max();
    let first_waitlisting = waitlisted.iter().map(etag).min();
    assert!(
        last_admission.is_some() && last_admission < first_waitlisting,
        "{last_admission:?} < {first_waitlisting:?}"
    );

    // The read model agrees once it has caught up with the last write.
    let token = responses
        .iter()
        .filter_map(|r| r.consistency_token.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let roster = service
        .client
        .list_group_members(admin(pb::ListGroupMembersRequest {
            parent: group.clone(),
            page_size: 100,
            page_token: String::new(),
            consistency_token: token.to_string(),
        }))
        .await?
        .into_inner();
    let roster_participants: HashSet<String> = roster
        .memberships
        .iter()
        .map(|m| m.participant.clone())
        .collect();
    let admitted: HashSet<String> = active
        .iter()
        .filter_map(|r| r.membership.as_ref().map(|m| m.participant.clone()))
        .collect();
    assert_eq!(roster_participants, admitted);

    let mut waitlist = Vec::new();
    let mut page_token = String::new();
    loop {
        // Small pages, so pagination is exercised too.
        let page = service
            .client
            .list_waitlist(admin(pb::ListWaitlistRequest {
                parent: group.clone(),
                page_size: 10,
                page_token: page_token.clone(),
                consistency_token: token.to_string(),
            }))
            .await?
            .into_inner();
        waitlist.extend(page.memberships);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: Vec<(String, u32)> = waitlisted
        .iter()
        .filter_map(|r| {
            r.membership
                .as_ref()
                .map(|m| (m.participant.clone(), m.waitlist_position))
        })
        .collect();
    let listed: Vec<(String, u32)> = waitlist
        .iter()
        .map(|m| (m.participant.clone(), m.waitlist_position))
        .collect();
    assert_eq!(listed, expected);

    let group_view = service
        .client
        .get_group(admin(pb::GetGroupRequest {
            name: group.clone(),
            consistency_token: token.to_string(),
        }))
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    assert_eq!(
        (group_view.active_member_count, group_view.waitlist_count),
        (12, 28)
    );
    assert_eq!(group_view.etag, token.to_string());
    Ok(())
}

#[tokio::test]
async fn a_retried_enroll_returns_the_original_result_and_appends_nothing() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "small", 1).await?;
    let first = service.participant(&clinic, "first").await?;
    let second = service.participant(&clinic, "second").await?;
    let enroll = |participant: &str, request_id: &str| pb::EnrollParticipantRequest {
        parent: group.clone(),
        participant: participant.into(),
        request_id: request_id.into(),
        etag: String::new(),
        facilitator_override: false,
    };
    let original = service
        .client
        .enroll_participant(admin(enroll(&first, "r-1")))
        .await?
        .into_inner();
    service
        .client
        .enroll_participant(admin(enroll(&second, "r-2")))
        .await?;
    let before = service.stream_last_sequence().await?;
    let retried = service
        .client
        .enroll_participant(admin(enroll(&first, "r-1")))
        .await?
        .into_inner();
    assert_eq!(retried, original);
    assert_eq!(service.stream_last_sequence().await?, before);

    // Enrolling again under a new request id is refused: already a member.
    let error = service
        .client
        .enroll_participant(admin(enroll(&first, "r-3")))
        .await
        .expect_err("already enrolled");
    assert_eq!(error.code(), tonic::Code::AlreadyExists);
    assert_eq!(reason_and_fields(&error).0, "ALREADY_ENROLLED");
    assert_eq!(service.stream_last_sequence().await?, before);
    Ok(())
}

#[tokio::test]
async fn a_stale_etag_is_refused_and_a_current_one_accepted() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let created = service
        .client
        .create_group(admin(pb::CreateGroupRequest {
            parent: clinic.clone(),
            group_id: "g".into(),
            group: Some(group_body(5)),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    let group = created.name.clone();
    let one = service.participant(&clinic, "one").await?;
    let two = service.participant(&clinic, "two").await?;
    let first = service
        .client
        .enroll_participant(admin(pb::EnrollParticipantRequest {
            parent: group.clone(),
            participant: one,
            request_id: String::new(),
            etag: String::new(),
            facilitator_override: false,
        }))
        .await?
        .into_inner();
    let stale = pb::EnrollParticipantRequest {
        parent: group.clone(),
        participant: two.clone(),
        request_id: String::new(),
        // The group's etag when it was created: stale since the first enroll.
        etag: created.etag,
        facilitator_override: false,
    };
    let error = service
        .client
        .enroll_participant(admin(stale))
        .await
        .expect_err("stale etag");
    assert_eq!(error.code(), tonic::Code::Aborted);
    assert_eq!(reason_and_fields(&error).0, "ETAG_MISMATCH");
    let current = pb::EnrollParticipantRequest {
        parent: group,
        participant: two,
        request_id: String::new(),
        etag: first.etag,
        facilitator_override: false,
    };
    let accepted = service
        .client
        .enroll_participant(admin(current))
        .await?
        .into_inner();
    assert_eq!(
        accepted.membership.map(|m| m.state),
        Some(pb::MembershipState::Active as i32)
    );
    Ok(())
}

#[tokio::test]
async fn capacity_holds_when_two_replicas_enroll_concurrently() -> anyhow::Result<()> {
    use circle_eventstore::{AggregateKey, EventStore};

    let mut service = Service::start().await?;
    let replica = service.replica().await?;
    let clinic = service.clinic("north").await?;
    let group = service.group(&clinic, "busy", 12).await?;
    let mut participants = Vec::new();
    for index in 0..40 {
        participants.push(
            service
                .participant(&clinic, &format!("p{index:02}"))
                .await?,
        );
    }
    let calls = participants.iter().enumerate().map(|(index, participant)| {
        // Alternate replicas: their appends race on the group's subject and only the
        // server's expected-sequence check orders them.
        let mut client = if index % 2 == 0 {
            service.client.clone()
        } else {
            replica.clone()
        };
        let request = pb::EnrollParticipantRequest {
            parent: group.clone(),
            participant: participant.clone(),
            request_id: format!("enroll-{index}"),
            etag: String::new(),
            facilitator_override: false,
        };
        async move { client.enroll_participant(admin(request)).await }
    });
    for result in join_all(calls).await {
        result?;
    }

    // Check the invariant against the log itself: replay the group's commits one by
    // one; at no point are more than 12 active.
    let store = EventStore::open(
        service.env.nats.clone(),
        circle_enrollment::stream_spec(&service.env.config),
    )
    .await?;
    let key = AggregateKey::new("acme", "group", "busy")?;
    let commits = store.read(&key, 0, store.version(&key).await?).await?;
    assert_eq!(commits.len(), 1 + 40, "one commit per command");
    let mut state = circle_enrollment::domain::Group::default();
    for commit in &commits {
        for event in circle_enrollment::codec::decode_commit(commit)? {
            state = circle_enrollment::domain::group::evolve(state, &event);
        }
        assert!(
            state.occupied() <= state.capacity(),
            "capacity exceeded at {}",
            commit.sequence
        );
    }
    assert_eq!((state.members.len(), state.waitlist.len()), (12, 28));
    Ok(())
}
