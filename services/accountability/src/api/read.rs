//! Queries at the edge: parse the request (names with `circle_names`, every bad field
//! collected), ask `app::Queries`, map the answer to protobuf.

use std::pin::Pin;
use std::time::Duration;

use circle_audit::Purpose;
use circle_grpc::{Caller, Violations};
use circle_names::{GroupName, ParticipantName, StaffName};
use circle_proto::accountability::v1 as pb;
use futures::StreamExt as _;
use tonic::{Request, Status};

use super::{AccountabilityApi, ApiResult, caller, status};
use crate::app::access::{self, Operation};
use crate::app::integration::{IntegrationItem, MAX_EVENT_TYPES};
use crate::app::queries::{
    ActiveGoal, AtRiskEntry, BoardEntry, CheckInView, FeedEvent, FeedItem, GroupTrend,
    MeasurementView, NudgePageRequest, NudgeRecipient, NudgeView, TimelineItem,
};
use crate::codec;
use crate::domain::journal::Counters;
use crate::domain::nudges::NudgeReason;

/// A page of nudges when the request does not say; at most `MAX_NUDGE_PAGE`.
const DEFAULT_NUDGE_PAGE: u32 = 50;
const MAX_NUDGE_PAGE: u32 = 100;

/// A measure as the API shows it.
pub(super) fn measurement_view(measurement: MeasurementView) -> pb::Measurement {
    pb::Measurement {
        name: measurement.name.to_string(),
        instrument: measurement.instrument,
        instrument_version: measurement.version,
        answers: measurement
            .answers
            .into_iter()
            .map(|(item, option)| pb::MeasurementAnswer { item, option })
            .collect(),
        scores: measurement
            .scores
            .into_iter()
            .map(|score| pb::ScaleScore {
                scale: score.scale,
                score: score.score,
                band: score.band,
                significant: score.significant,
            })
            .collect(),
        safety_concern: measurement.safety_concern,
        submit_time: Some(codec::timestamp(measurement.submitted_at)),
    }
}

fn trend_view(trend: GroupTrend) -> pb::GroupTrend {
    pb::GroupTrend {
        instrument: trend.instrument,
        scale: trend.scale,
        points: trend
            .points
            .into_iter()
            .map(|point| pb::TrendPoint {
                week_start: point.week_start.format("%Y-%m-%d").to_string(),
                contributors: point.contributors,
                mean_score: point.mean_score,
            })
            .collect(),
    }
}

/// A nudge as the API shows it.
pub(super) fn nudge_view(nudge: NudgeView) -> pb::Nudge {
    pb::Nudge {
        name: nudge.name.to_string(),
        recipient: nudge.recipient,
        // The events' and the API's enums share their numbers.
        level: codec::level_to_wire(nudge.level),
        reason: match NudgeReason::from_text(&nudge.reason) {
            Some(NudgeReason::MissedCheckIn) => pb::NudgeReason::MissedCheckIn,
            Some(NudgeReason::SetbackSupport) => pb::NudgeReason::SetbackSupport,
            Some(NudgeReason::MissedSessions) => pb::NudgeReason::MissedSessions,
            Some(NudgeReason::SafetyAlert) => pb::NudgeReason::SafetyAlert,
            Some(NudgeReason::MeasurementDue) => pb::NudgeReason::MeasurementDue,
            None => pb::NudgeReason::Unspecified,
        } as i32,
        send_time: Some(codec::timestamp(nudge.sent_at)),
        acknowledge_time: nudge.acknowledged_at.map(codec::timestamp),
        delivery_state: match nudge.delivery {
            None => pb::DeliveryState::Pending,
            Some(delivery) if delivery.delivered => pb::DeliveryState::Delivered,
            Some(_) => pb::DeliveryState::Failed,
        } as i32,
        delivery_channel: nudge
            .delivery
            .map_or(pb::DeliveryChannel::Unspecified as i32, |delivery| {
                codec::channel_to_wire(delivery.channel)
            }),
        delivery_time: nudge.delivery.map(|delivery| codec::timestamp(delivery.at)),
    }
}

pub type IntegrationEventStream = Pin<
    Box<
        dyn futures::Stream<Item = Result<pb::WatchIntegrationEventsResponse, Status>>
            + Send
            + 'static,
    >,
>;

pub type FeedStream = Pin<
    Box<dyn futures::Stream<Item = Result<pb::WatchGroupFeedResponse, Status>> + Send + 'static>,
>;

/// How long an open feed may stay quiet before a heartbeat, when the client does not say.
const DEFAULT_HEARTBEAT_SECONDS: u32 = 15;
const MAX_HEARTBEAT_SECONDS: u32 = 300;

pub fn counters_view(counters: Counters) -> pb::Counters {
    pb::Counters {
        days_since_setback: counters.days_since_setback,
        days_in_recovery: counters.days_in_recovery,
        check_in_streak_days: counters.check_in_streak_days,
        sessions_attended: counters.sessions_attended,
        goals_completed: counters.goals_completed,
    }
}

fn check_in_view(check_in: CheckInView) -> pb::CheckIn {
    pb::CheckIn {
        name: check_in.name,
        author_display: check_in.author_display,
        goal: check_in.goal.unwrap_or_default(),
        progress: check_in
            .progress
            .map_or(pb::Progress::Unspecified as i32, codec::progress_to_wire),
        mood: check_in.mood,
        craving: check_in.craving,
        text: check_in.text,
        visibility: codec::visibility_to_wire(check_in.visibility),
        submit_time: Some(codec::timestamp(check_in.submit_time)),
        encouragement_count: check_in.encouragement_count,
    }
}

fn active_goal_view(goal: ActiveGoal) -> pb::Goal {
    pb::Goal {
        name: goal.name,
        text: goal.text,
        cadence: goal
            .cadence
            .map_or(pb::Cadence::Unspecified as i32, codec::cadence_to_wire),
        state: pb::GoalState::Active as i32,
    }
}

fn board_entry_view(entry: BoardEntry) -> pb::BoardEntry {
    pb::BoardEntry {
        participant: entry.participant,
        display_name: entry.display_name,
        active_goals: entry
            .active_goals
            .into_iter()
            .map(active_goal_view)
            .collect(),
        last_check_in: entry.last_check_in.map(check_in_view),
        counters: entry.counters.map(counters_view),
        at_risk: entry.at_risk,
    }
}

fn timeline_item_view(item: TimelineItem) -> pb::TimelineItem {
    pb::TimelineItem {
        kind: item.kind,
        time: Some(codec::timestamp(item.time)),
        check_in: item.check_in.map(check_in_view),
        detail: item.detail,
        goal: item.goal.unwrap_or_default(),
    }
}

fn at_risk_view(entry: AtRiskEntry) -> pb::AtRiskEntry {
    pb::AtRiskEntry {
        participant: entry.participant,
        group: entry.group,
        reasons: entry
            .reasons
            .into_iter()
            .map(|reason| reason.to_owned())
            .collect(),
    }
}

fn feed_item_view(item: FeedItem) -> pb::FeedItem {
    pb::FeedItem {
        position: item.position,
        kind: item.kind,
        time: item.time.map(codec::timestamp),
        check_in: item.check_in.map(check_in_view),
        from_display: item.from_display,
        reaction: item.reaction,
        message: item.message,
        milestone: item.milestone,
    }
}

fn feed_event_view(event: FeedEvent) -> pb::WatchGroupFeedResponse {
    use pb::watch_group_feed_response::Event;
    pb::WatchGroupFeedResponse {
        event: Some(match event {
            FeedEvent::Item(item) => Event::Item(feed_item_view(*item)),
            FeedEvent::Heartbeat(position) => Event::HeartbeatPosition(position),
        }),
    }
}

/// The purpose a request states in its `circle-purpose` metadata (`stated`), a bad one
/// recorded with the request's other bad fields.
fn purpose(
    violations: &mut Violations,
    stated: Result<Option<Purpose>, String>,
) -> Option<Purpose> {
    violations
        .check(circle_audit::PURPOSE_METADATA, stated)
        .flatten()
}

impl AccountabilityApi {
    /// The `group` field of a board or feed request, and the purpose it `stated`.
    fn group_field(
        caller: &Caller,
        group: &str,
        stated: Result<Option<Purpose>, String>,
    ) -> ApiResult<(GroupName, Option<Purpose>)> {
        let mut violations = Violations::default();
        let group = circle_grpc::named::<GroupName>(caller, &mut violations, "group", group)?;
        let purpose = purpose(&mut violations, stated);
        Ok((violations.finish(group)?, purpose))
    }

    pub(super) async fn get_group_board(
        &self,
        request: Request<pb::GetGroupBoardRequest>,
    ) -> ApiResult<pb::GetGroupBoardResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let (group, purpose) = Self::group_field(&caller, &request.group, stated)?;
        let board = self
            .queries
            .get_group_board(&caller, &group, &request.consistency_token, purpose)
            .await?;
        Ok(pb::GetGroupBoardResponse {
            entries: board.entries.into_iter().map(board_entry_view).collect(),
            trends: board.trends.into_iter().map(trend_view).collect(),
        })
    }

    pub(super) async fn get_participant_timeline(
        &self,
        request: Request<pb::GetParticipantTimelineRequest>,
    ) -> ApiResult<pb::GetParticipantTimelineResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let participant = circle_grpc::named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let purpose = purpose(&mut violations, stated);
        let participant = violations.finish(participant)?;
        let timeline = self
            .queries
            .get_participant_timeline(&caller, &participant, &request.consistency_token, purpose)
            .await?;
        Ok(pb::GetParticipantTimelineResponse {
            items: timeline.items.into_iter().map(timeline_item_view).collect(),
            counters: Some(counters_view(timeline.counters)),
        })
    }

    pub(super) async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> ApiResult<pb::ListAtRiskResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let staff =
            circle_grpc::named::<StaffName>(&caller, &mut violations, "parent", &request.parent)?;
        // As before, a role that may not list at all is refused before its input is read.
        access::check_role(&caller, Operation::ListAtRisk)?;
        let purpose = purpose(&mut violations, stated);
        let staff = violations.finish(staff)?;
        let entries = self
            .queries
            .list_at_risk(&caller, &staff, &request.consistency_token, purpose)
            .await?;
        Ok(pb::ListAtRiskResponse {
            entries: entries.into_iter().map(at_risk_view).collect(),
        })
    }

    /// Streams the integration events of the caller's network after `after_position`.
    pub(super) async fn watch_integration_events(
        &self,
        request: Request<pb::WatchIntegrationEventsRequest>,
    ) -> ApiResult<IntegrationEventStream> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let network = circle_grpc::named::<circle_names::NetworkName>(
            &caller,
            &mut violations,
            "network",
            &request.network,
        )?;
        // A caller that may not subscribe is refused before the rest is read.
        access::check_role(&caller, Operation::WatchIntegrationEvents)?;
        let known = crate::integration::event_types();
        let types = violations.check(
            "event_types",
            if request.event_types.len() > MAX_EVENT_TYPES {
                Err(format!("at most {MAX_EVENT_TYPES}"))
            } else if let Some(unknown) = request
                .event_types
                .iter()
                .find(|name| !known.contains(name))
            {
                Err(format!(
                    "{} is not an integration event type of this service (one of {})",
                    unknown.chars().take(100).collect::<String>(),
                    known.join(", ")
                ))
            } else {
                Ok(request.event_types.iter().cloned().collect())
            },
        );
        let purpose = purpose(&mut violations, stated);
        let (network, types) = violations.finish(network.zip(types))?;
        let heartbeat = Duration::from_secs(u64::from(if request.heartbeat_seconds == 0 {
            DEFAULT_HEARTBEAT_SECONDS
        } else {
            request.heartbeat_seconds.min(MAX_HEARTBEAT_SECONDS)
        }));
        let events = self
            .queries
            .watch_integration_events(
                &caller,
                &network,
                types,
                request.after_position,
                heartbeat,
                purpose,
            )
            .await?;
        Ok(Box::pin(events.map(|item| {
            item.map(|item| pb::WatchIntegrationEventsResponse {
                event: Some(match item {
                    IntegrationItem::Event(event) => {
                        pb::watch_integration_events_response::Event::IntegrationEvent(*event)
                    }
                    IntegrationItem::Heartbeat(position) => {
                        pb::watch_integration_events_response::Event::HeartbeatPosition(position)
                    }
                }),
            })
            .map_err(status)
        })))
    }

    pub(super) async fn list_measurements(
        &self,
        request: Request<pb::ListMeasurementsRequest>,
    ) -> ApiResult<pb::ListMeasurementsResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let participant = circle_grpc::named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let instrument =
            super::instrument_field(&mut violations, "instrument", &request.instrument, true);
        let purpose = purpose(&mut violations, stated);
        let (participant, instrument) = violations.finish(participant.zip(instrument))?;
        let listed = self
            .queries
            .list_measurements(
                &caller,
                &participant,
                Some(instrument.as_str()).filter(|instrument| !instrument.is_empty()),
                &request.consistency_token,
                purpose,
            )
            .await?;
        Ok(pb::ListMeasurementsResponse {
            measurements: listed
                .measurements
                .into_iter()
                .map(measurement_view)
                .collect(),
            cadences: listed
                .cadences
                .into_iter()
                .map(|(instrument, every_days)| pb::MeasurementCadence {
                    instrument,
                    every_days,
                })
                .collect(),
        })
    }

    pub(super) async fn list_my_nudges(
        &self,
        request: Request<pb::ListMyNudgesRequest>,
    ) -> ApiResult<pb::ListMyNudgesResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let recipient = if request.recipient.contains("/staff/") {
            circle_grpc::named::<StaffName>(
                &caller,
                &mut violations,
                "recipient",
                &request.recipient,
            )?
            .map(NudgeRecipient::Staff)
        } else {
            circle_grpc::named::<ParticipantName>(
                &caller,
                &mut violations,
                "recipient",
                &request.recipient,
            )?
            .map(NudgeRecipient::Participant)
        };
        // As elsewhere, a role that may not list at all is refused before its input is
        // read.
        access::check_role(&caller, Operation::ListMyNudges)?;
        let size = violations.check(
            "page_size",
            match request.page_size {
                0 => Ok(DEFAULT_NUDGE_PAGE),
                size if size <= MAX_NUDGE_PAGE => Ok(size),
                _ => Err(format!("must be at most {MAX_NUDGE_PAGE}")),
            },
        );
        let before = violations.check(
            "page_token",
            match request.page_token.as_str() {
                "" => Ok(None),
                token => token
                    .parse::<i64>()
                    .ok()
                    .filter(|position| *position > 0)
                    .map(Some)
                    .ok_or_else(|| "must be a next_page_token this service gave".to_owned()),
            },
        );
        let purpose = purpose(&mut violations, stated);
        let ((recipient, size), before) = violations.finish(recipient.zip(size).zip(before))?;
        let page = self
            .queries
            .list_my_nudges(
                &caller,
                &recipient,
                NudgePageRequest {
                    size,
                    before,
                    unacknowledged_only: request.unacknowledged_only,
                },
                &request.consistency_token,
                purpose,
            )
            .await?;
        Ok(pb::ListMyNudgesResponse {
            nudges: page.nudges.into_iter().map(nudge_view).collect(),
            next_page_token: page.next.map(|next| next.to_string()).unwrap_or_default(),
        })
    }

    /// Streams the group feed after `after_position`: what is there now, then what
    /// happens, with a heartbeat when quiet.
    pub(super) async fn watch_group_feed(
        &self,
        request: Request<pb::WatchGroupFeedRequest>,
    ) -> ApiResult<FeedStream> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let (group, purpose) = Self::group_field(&caller, &request.group, stated)?;
        let heartbeat = Duration::from_secs(u64::from(if request.heartbeat_seconds == 0 {
            DEFAULT_HEARTBEAT_SECONDS
        } else {
            request.heartbeat_seconds.min(MAX_HEARTBEAT_SECONDS)
        }));
        let feed = self
            .queries
            .watch_group_feed(&caller, &group, request.after_position, heartbeat, purpose)
            .await?;
        Ok(Box::pin(
            feed.map(|event| event.map(feed_event_view).map_err(status)),
        ))
    }
}
