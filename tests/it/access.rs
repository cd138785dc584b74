//! Who may run the accountability queries, as the access table says
//! (`services/accountability/src/app/access.rs`), over gRPC: who gets an answer, and
//! the code and reason of every refusal — permission before existence and, for a
//! board or feed, before the rest of the input.

use circle_proto::accountability::v1 as pb;
use tonic::Code;

use crate::accountability::{Circle, circle};
use crate::support::{admin, as_caller, as_participant, refusal};

/// A staff caller scoped to `clinic`.
fn in_clinic<T>(
    message: T,
    role: &'static str,
    actor: &'static str,
    clinic: &'static str,
) -> tonic::Request<T> {
    circle_testkit::request_as(message, crate::support::NETWORK, role, actor, &[clinic])
}

fn denied(reason: &str) -> (Code, String, Vec<String>) {
    (Code::PermissionDenied, reason.to_owned(), Vec::new())
}

fn invalid(field: &str) -> (Code, String, Vec<String>) {
    (
        Code::InvalidArgument,
        "INVALID_ARGUMENT".to_owned(),
        vec![field.to_owned()],
    )
}

#[tokio::test]
async fn the_queries_admit_exactly_whom_the_access_table_names() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let client = &mut system.accountability;

    // A group's board: its members and its care team (its facilitators, the admins
    // of its clinic); not intake, not a facilitator of another group.
    let board = |group: &str| pb::GetGroupBoardRequest {
        group: group.to_owned(),
        ..Default::default()
    };
    client
        .get_group_board(as_participant(board(&group), "sam"))
        .await?;
    client
        .get_group_board(in_clinic(board(&group), "facilitator", "staff-1", "north"))
        .await?;
    client
        .get_group_board(in_clinic(board(&group), "clinic-admin", "admin-2", "north"))
        .await?;
    assert_eq!(
        refusal(
            client
                .get_group_board(in_clinic(
                    board(&group),
                    "intake-coordinator",
                    "i-1",
                    "north",
                ))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            client
                .get_group_board(in_clinic(board(&group), "facilitator", "staff-2", "north"))
                .await
        ),
        denied("NOT_A_FACILITATOR")
    );
    assert_eq!(
        refusal(
            client
                .get_group_board(as_participant(board(&group), "stranger"))
                .await
        ),
        denied("NOT_A_MEMBER")
    );
    assert_eq!(
        refusal(
            client
                .get_group_board(in_clinic(board(&group), "facilitator", "staff-9", "south"))
                .await
        ),
        denied("CLINIC_OUT_OF_SCOPE")
    );
    let elsewhere = group.replace("/clinics/north/", "/clinics/south/");
    let (code, reason, _) = refusal(client.get_group_board(admin(board(&elsewhere))).await);
    assert_eq!((code, reason.as_str()), (Code::NotFound, "GROUP_NOT_FOUND"));
    assert_eq!(
        refusal(client.get_group_board(admin(board("groups/tuesday"))).await),
        invalid("group")
    );

    // Its feed: the same, and permission before the rest of the input.
    let feed = |after_position| pb::WatchGroupFeedRequest {
        group: group.clone(),
        after_position,
        heartbeat_seconds: 1,
    };
    let watch = |request| {
        let mut client = client.clone();
        async move { client.watch_group_feed(request).await.map(|_| ()) }
    };
    assert_eq!(
        refusal(watch(as_participant(feed(0), "stranger")).await),
        denied("NOT_A_MEMBER")
    );
    assert_eq!(
        refusal(watch(as_participant(feed(u64::MAX), "stranger")).await),
        denied("NOT_A_MEMBER")
    );
    assert_eq!(
        refusal(watch(as_participant(feed(u64::MAX), "sam")).await),
        invalid("after_position")
    );
    watch(as_participant(feed(0), "sam")).await?;

    // A participant's timeline: the person, or their care team: a facilitator of one
    // of their groups, an admin of its clinic.
    let timeline = |participant: &str| pb::GetParticipantTimelineRequest {
        participant: participant.to_owned(),
        ..Default::default()
    };
    client
        .get_participant_timeline(as_participant(timeline(&sam), "sam"))
        .await?;
    client
        .get_participant_timeline(in_clinic(timeline(&sam), "facilitator", "staff-1", "north"))
        .await?;
    for (role, actor, reason) in [
        ("intake-coordinator", "i-1", "ROLE_NOT_ALLOWED"),
        ("facilitator", "staff-2", "NOT_YOUR_RECORD"),
    ] {
        assert_eq!(
            refusal(
                client
                    .get_participant_timeline(in_clinic(timeline(&sam), role, actor, "north"))
                    .await
            ),
            denied(reason),
            "{role} {actor}"
        );
    }
    assert_eq!(
        refusal(
            client
                .get_participant_timeline(as_participant(timeline(&jordan), "sam"))
                .await
        ),
        denied("NOT_YOUR_RECORD")
    );
    assert_eq!(
        refusal(
            client
                .get_participant_timeline(in_clinic(
                    timeline(&sam),
                    "facilitator",
                    "staff-9",
                    "south"
                ))
                .await
        ),
        denied("NOT_YOUR_RECORD")
    );
    assert_eq!(
        refusal(
            client
                .get_participant_timeline(admin(timeline("networks/other/participants/sam")))
                .await
        ),
        denied("WRONG_NETWORK")
    );

    // Who is at risk: clinicians only, a facilitator their own list; a role that may
    // not list is refused before its input is read.
    let at_risk = |parent: &str| pb::ListAtRiskRequest {
        parent: parent.to_owned(),
        ..Default::default()
    };
    let own_list = "networks/acme/staff/staff-1";
    client
        .list_at_risk(as_caller(at_risk(own_list), "facilitator", "staff-1"))
        .await?;
    client
        .list_at_risk(as_caller(at_risk(own_list), "clinic-admin", "admin-2"))
        .await?;
    assert_eq!(
        refusal(
            client
                .list_at_risk(as_caller(at_risk(own_list), "intake-coordinator", "i-1"))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            client
                .list_at_risk(as_participant(at_risk("staff-1"), "sam"))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            client
                .list_at_risk(as_caller(at_risk(own_list), "facilitator", "staff-2"))
                .await
        ),
        denied("NOT_YOUR_LIST")
    );
    assert_eq!(
        refusal(client.list_at_risk(admin(at_risk("staff-1"))).await),
        invalid("parent")
    );
    Ok(())
}

/// An open feed checks the caller's access again before every page it reads: a member
/// who leaves the group stops receiving, told so as a new call would be.
#[tokio::test]
async fn a_member_who_leaves_the_group_stops_receiving_its_feed() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let mut feed = system
        .accountability
        .watch_group_feed(as_participant(
            pb::WatchGroupFeedRequest {
                group: group.clone(),
                after_position: 0,
                heartbeat_seconds: 1,
            },
            "sam",
        ))
        .await?
        .into_inner();
    // Open and delivering (a heartbeat or an item).
    let first = tokio::time::timeout(std::time::Duration::from_secs(15), feed.message()).await?;
    assert!(matches!(first, Ok(Some(_))), "{first:?}");

    let membership = format!(
        "{group}/memberships/{}",
        sam.rsplit('/').next().unwrap_or_default()
    );
    system
        .enrollment
        .discharge_participant(admin(
            circle_proto::enrollment::v1::DischargeParticipantRequest {
                name: membership,
                reason: circle_proto::enrollment::v1::EndReason::Completed as i32,
                ..Default::default()
            },
        ))
        .await?;
    // Whatever was read while Sam was a member may still arrive; then the refusal, and
    // nothing after it.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            match feed.message().await {
                Ok(Some(_)) => continue,
                Err(status) => return Some(status),
                Ok(None) => return None,
            }
        }
    })
    .await?;
    let Some(status) = refused else {
        anyhow::bail!("the feed ended without telling why");
    };
    assert_eq!(refusal::<()>(Err(status)), denied("NOT_A_MEMBER"));
    let after = tokio::time::timeout(std::time::Duration::from_secs(15), feed.message()).await?;
    assert!(
        matches!(after, Ok(None)),
        "nothing after the refusal: {after:?}"
    );
    Ok(())
}
