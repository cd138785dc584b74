//! Capacity under concurrent enrolls, transfers, discharges, acceptances and capacity
//! changes, spread over two replicas; the invariant is checked against the log.

use circle_enrollment::domain::Group;
use circle_eventstore::{AggregateKey, EventStore};
use circle_proto::enrollment::v1 as pb;
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::support::{NETWORK, Service, admin, membership_of};

const GROUPS: usize = 3;
const PEOPLE: usize = 24;
const WORKERS: u64 = 8;
const OPERATIONS_EACH: usize = 20;
const SEED: u64 = 20261126;

#[tokio::test]
async fn capacity_is_never_exceeded_under_a_random_concurrent_mix() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let replica = service.replica().await?;
    let clinic = service.clinic("north").await?;
    let mut groups = Vec::new();
    for index in 0..GROUPS {
        groups.push(service.group(&clinic, &format!("g{index}"), 3).await?);
    }
    let mut people = Vec::new();
    for index in 0..PEOPLE {
        people.push(
            service
                .participant(&clinic, &format!("p{index:02}"))
                .await?,
        );
    }

    let workers = (0..WORKERS).map(|worker| {
        let mut client = if worker % 2 == 0 {
            service.client.clone()
        } else {
            replica.clone()
        };
        let (groups, people) = (groups.clone(), people.clone());
        async move {
            let seed = SEED + worker;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut outcomes = Vec::new();
            for _ in 0..OPERATIONS_EACH {
                let group = &groups[rng.random_range(0..GROUPS)];
                let mut person = people[rng.random_range(0..PEOPLE)].clone();
                let roll = rng.random_range(0..100);
                let kind = match roll {
                    0..40 => "enroll",
                    40..60 => "transfer",
                    60..75 => "capacity",
                    75..90 => "discharge",
                    _ => "accept",
                };
                // Transfers, discharges and acceptances mostly pick someone the group
                // knows (as a coordinator would), read from the roster or waitlist.
                if roll >= 40 {
                    let listed = if kind == "accept" {
                        client
                            .list_waitlist(admin(pb::ListWaitlistRequest {
                                parent: group.clone(),
                                ..Default::default()
                            }))
                            .await
                            .map(|response| response.into_inner().memberships)
                    } else {
                        client
                            .list_group_members(admin(pb::ListGroupMembersRequest {
                                parent: group.clone(),
                                ..Default::default()
                            }))
                            .await
                            .map(|response| response.into_inner().memberships)
                    };
                    match listed {
                        Ok(listed) if !listed.is_empty() => {
                            person = listed[rng.random_range(0..listed.len())]
                                .participant
                                .clone();
                        }
                        Ok(_) => {}
                        // A list never refuses; its failure fails the test below.
                        Err(status) => {
                            outcomes.push(("list", Err((seed, Code::Internal, status.to_string()))))
                        }
                    }
                }
                let person = &person;
                let result = match roll {
                    0..40 => client
                        .enroll_participant(admin(pb::EnrollParticipantRequest {
                            parent: group.clone(),
                            participant: person.clone(),
                            ..Default::default()
                        }))
                        .await
                        .map(|_| ()),
                    40..60 => {
                        let target = groups
                            .iter()
                            .filter(|other| *other != group)
                            .nth(rng.random_range(0..GROUPS - 1));
                        client
                            .transfer_participant(admin(pb::TransferParticipantRequest {
                                name: membership_of(group, person),
                                target_group: target.cloned().unwrap_or_default(),
                                request_id: String::new(),
                            }))
                            .await
                            .map(|_| ())
                    }
                    60..75 => client
                        .update_group(admin(pb::UpdateGroupRequest {
                            group: Some(pb::Group {
                                name: group.clone(),
                                capacity: rng.random_range(1..=6),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["capacity".into()],
                            }),
                            request_id: String::new(),
                        }))
                        .await
                        .map(|_| ()),
                    75..90 => client
                        .discharge_participant(admin(pb::DischargeParticipantRequest {
                            name: membership_of(group, person),
                            reason: pb::EndReason::Completed as i32,
                            request_id: String::new(),
                        }))
                        .await
                        .map(|_| ()),
                    _ => client
                        .accept_seat_offer(admin(pb::AcceptSeatOfferRequest {
                            name: membership_of(group, person),
                            request_id: String::new(),
                        }))
                        .await
                        .map(|_| ()),
                };
                outcomes.push((
                    kind,
                    result.map_err(|status| (seed, status.code(), status.message().to_owned())),
                ));
            }
            outcomes
        }
    });
    let mut succeeded = std::collections::BTreeMap::<&str, usize>::new();
    for (kind, outcome) in join_all(workers).await.into_iter().flatten() {
        match outcome {
            Ok(()) => *succeeded.entry(kind).or_default() += 1,
            // The documented refusals of a busy, changing group.
            Err((_, Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted, _)) => {}
            Err((seed, code, message)) => {
                anyhow::bail!("seed {seed}: unexpected {code:?}: {message}")
            }
        }
    }
    eprintln!("succeeded by kind: {succeeded:?}");
    // Every kind of command took effect at least once, so the mix really mixed.
    assert_eq!(succeeded.len(), 5, "succeeded by kind: {succeeded:?}");
    service.process_managers_caught_up().await?;

    let store = EventStore::open(
        service.env.nats.clone(),
        circle_enrollment::stream_spec(&service.env.config),
    )
    .await?;
    let last = service.stream_last_sequence().await?;
    for (index, name) in groups.iter().enumerate() {
        let key = AggregateKey::new(NETWORK, "group", format!("g{index}"))?;
        let mut state = Group::default();
        for commit in store.read(&key, 0, store.version(&key).await?).await? {
            for event in circle_enrollment::codec::decode_commit(&commit)? {
                state = circle_enrollment::domain::group::evolve(state, &event);
            }
            assert!(
                state.occupied() <= state.capacity(),
                "g{index} over capacity after commit {}: {} taken of {}",
                commit.sequence,
                state.occupied(),
                state.capacity()
            );
            assert!(
                state.free_seats() == 0 || state.waitlist.is_empty(),
                "a free seat left while people wait"
            );
        }
        // The read model agrees with the log.
        let view = service
            .client
            .get_group(admin(pb::GetGroupRequest {
                name: name.clone(),
                consistency_token: last.to_string(),
            }))
            .await?
            .into_inner()
            .group
            .unwrap_or_default();
        assert_eq!(
            (
                view.capacity,
                view.active_member_count + view.on_hold_count,
                view.open_offer_count,
                view.waitlist_count
            ),
            (
                state.capacity(),
                state.members.len() as u32,
                state.offers.len() as u32,
                state.waitlist.len() as u32
            ),
            "g{index}"
        );
    }
    Ok(())
}
