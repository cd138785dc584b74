//! The participant timeline is a history: every change shows as its own dated item,
//! and nothing shown earlier is rewritten.

use circle_proto::accountability::v1 as pb;

use crate::accountability::{Circle, circle};
use crate::support::{System, admin, as_participant};

/// The goal items of Sam's timeline as (kind, time, goal, detail), read at `token`.
async fn goal_items(
    system: &mut System,
    sam: &str,
    token: &str,
) -> anyhow::Result<Vec<(String, i64, String, String)>> {
    let timeline = system
        .accountability
        .get_participant_timeline(admin(pb::GetParticipantTimelineRequest {
            participant: sam.into(),
            consistency_token: token.into(),
        }))
        .await?
        .into_inner();
    Ok(timeline
        .items
        .into_iter()
        .filter(|item| item.kind.starts_with("goal-"))
        .map(|item| {
            (
                item.kind,
                item.time.map(|time| time.seconds).unwrap_or_default(),
                item.goal,
                item.detail,
            )
        })
        .collect())
}

fn seconds(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<chrono::DateTime<chrono::Utc>>()?.timestamp())
}

#[tokio::test]
async fn every_goal_change_is_its_own_dated_item_and_earlier_items_stay_as_shown()
-> anyhow::Result<()> {
    let Circle {
        mut system, sam, ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let set = system
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
        .await?
        .into_inner();
    let first = set.goal.map(|goal| goal.name).unwrap_or_default();
    let shown_first = goal_items(&mut system, &sam, &set.consistency_token).await?;

    system.clock.advance(chrono::Duration::hours(1));
    system
        .accountability
        .revise_goal(as_participant(
            pb::ReviseGoalRequest {
                name: first.clone(),
                text: "Call my sponsor twice".into(),
                cadence: pb::Cadence::Daily as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    system.clock.advance(chrono::Duration::hours(1));
    system
        .accountability
        .complete_goal(as_participant(
            pb::CompleteGoalRequest {
                name: first.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?;
    system.clock.advance(chrono::Duration::hours(1));
    let second = system
        .accountability
        .set_goal(as_participant(
            pb::SetGoalRequest {
                parent: sam.clone(),
                text: "Walk every morning".into(),
                cadence: pb::Cadence::Weekly as i32,
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner()
        .goal
        .map(|goal| goal.name)
        .unwrap_or_default();
    system.clock.advance(chrono::Duration::hours(1));
    let abandoned = system
        .accountability
        .abandon_goal(as_participant(
            pb::AbandonGoalRequest {
                name: second.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner();

    let shown = goal_items(&mut system, &sam, &abandoned.consistency_token).await?;
    let item = |kind: &str, time: &str, goal: &str, detail: &str| -> anyhow::Result<_> {
        Ok((
            kind.to_owned(),
            seconds(time)?,
            goal.to_owned(),
            detail.to_owned(),
        ))
    };
    assert_eq!(
        shown,
        [
            item(
                "goal-set",
                "2026-11-20T18:00:00Z",
                &first,
                "Call my sponsor"
            )?,
            item(
                "goal-revised",
                "2026-11-20T19:00:00Z",
                &first,
                "Call my sponsor twice"
            )?,
            item(
                "goal-completed",
                "2026-11-20T20:00:00Z",
                &first,
                "Call my sponsor twice"
            )?,
            item(
                "goal-set",
                "2026-11-20T21:00:00Z",
                &second,
                "Walk every morning"
            )?,
            item(
                "goal-abandoned",
                "2026-11-20T22:00:00Z",
                &second,
                "Walk every morning"
            )?,
        ]
    );
    assert_eq!(
        shown_first,
        shown[..1],
        "the goal-set item reads as it did before the revision"
    );
    Ok(())
}
