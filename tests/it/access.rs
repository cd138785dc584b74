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

    // A group's board: its members and the staff of its clinic.
    let board = |group: &str| pb::GetGroupBoardRequest {
        group: group.to_owned(),
        ..Default::default()
    };
    client
        .get_group_board(as_participant(board(&group), "sam"))
        .await?;
    client
        .get_group_board(in_clinic(
            board(&group),
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await?;
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

    // A participant's timeline: the person, or staff of a clinic of their groups.
    let timeline = |participant: &str| pb::GetParticipantTimelineRequest {
        participant: participant.to_owned(),
        ..Default::default()
    };
    client
        .get_participant_timeline(as_participant(timeline(&sam), "sam"))
        .await?;
    client
        .get_participant_timeline(in_clinic(
            timeline(&sam),
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await?;
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
