//! Queries and the live group feed, each filtered through the visibility rules for the
//! viewer asking.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use chrono::NaiveDate;
use circle_grpc::{ApiError, Role, Violations, authorize, owned, roles};
use circle_proto::accountability::v1 as pb;
use sqlx::Row as _;
use tonic::{Code, Request, Status};

use super::{
    AccountabilityApi, ApiResult, GROUP, PARTICIPANT, STAFF_MEMBER, caller, database_error,
    participant_name,
};
use crate::codec;
use crate::domain::Time;
use crate::domain::journal::{CounterFacts, Counters};
use crate::domain::visibility::{Viewer, can_see_check_in, can_see_milestones};

pub type FeedStream = Pin<
    Box<dyn futures::Stream<Item = Result<pb::WatchGroupFeedResponse, Status>> + Send + 'static>,
>;

pub fn counters_view(counters: Counters) -> pb::Counters {
    pb::Counters {
        days_since_setback: counters.days_since_setback,
        days_in_recovery: counters.days_in_recovery,
        check_in_streak_days: counters.check_in_streak_days,
        sessions_attended: counters.sessions_attended,
        goals_completed: counters.goals_completed,
    }
}

/// A journal row's counters and at-risk reasons.
struct Standing {
    counters: Counters,
    at_risk: Vec<&'static str>,
}

fn get<T>(result: Result<T, sqlx::Error>) -> Result<T, ApiError> {
    result.map_err(database_error)
}

fn progress_from_text(text: &str) -> i32 {
    (match text {
        "on-track" => pb::Progress::OnTrack,
        "struggling" => pb::Progress::Struggling,
        "setback" => pb::Progress::Setback,
        _ => pb::Progress::Unspecified,
    }) as i32
}

fn cadence_from_text(text: &str) -> i32 {
    (match text {
        "daily" => pb::Cadence::Daily,
        "weekly" => pb::Cadence::Weekly,
        "per-session" => pb::Cadence::PerSession,
        _ => pb::Cadence::Unspecified,
    }) as i32
}

const CHECK_IN_COLUMNS: &str = "c.participant_id, c.check_in_id, c.goal_id, c.progress, c.mood, c.craving, c.text, c.visibility, c.at, c.position,
    (SELECT count(*) FROM accountability.encouragements e WHERE e.network = c.network AND e.participant_id = c.participant_id AND e.check_in_id = c.check_in_id) AS encouragements";

fn check_in_from_row(
    network: &str,
    row: &sqlx::postgres::PgRow,
    author_display: String,
) -> Result<pb::CheckIn, sqlx::Error> {
    let participant_id: String = row.try_get("participant_id")?;
    let goal_id: String = row.try_get("goal_id")?;
    let at: Time = row.try_get("at")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(pb::CheckIn {
        name: format!(
            "{}/check-ins/{}",
            participant_name(network, &participant_id),
            row.try_get::<String, _>("check_in_id")?
        ),
        author_display,
        goal: if goal_id.is_empty() {
            String::new()
        } else {
            format!(
                "{}/goals/{goal_id}",
                participant_name(network, &participant_id)
            )
        },
        progress: progress_from_text(&row.try_get::<String, _>("progress")?),
        mood: row.try_get::<i32, _>("mood")?.max(0) as u32,
        craving: row.try_get::<i32, _>("craving")?.max(0) as u32,
        text: row.try_get("text")?,
        visibility: codec::visibility_to_wire(codec::visibility_from_text(&visibility)),
        submit_time: Some(codec::timestamp(at)),
        encouragement_count: row.try_get::<i64, _>("encouragements")?.max(0) as u32,
    })
}

impl AccountabilityApi {
    async fn standing(
        &self,
        network: &str,
        participant_id: &str,
        now: Time,
    ) -> ApiResult<Standing> {
        let row = sqlx::query(
            "SELECT started_at, last_setback_at, check_in_days, sessions_attended, goals_completed, last_progress, last_craving, missed_in_a_row,
                    (SELECT count(*) FROM accountability.nudges n WHERE n.network = j.network AND n.participant_id = j.participant_id
                       AND n.level IN ('partner', 'facilitator') AND n.reason = 'missed-check-in' AND n.at > $3) AS escalations
             FROM accountability.journals j WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant_id)
        .bind(now - chrono::Duration::days(7))
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let Some(row) = row else {
            return Ok(Standing {
                counters: Counters::default(),
                at_risk: Vec::new(),
            });
        };
        let days: Vec<NaiveDate> = get(row.try_get("check_in_days"))?;
        let days: BTreeSet<NaiveDate> = days.into_iter().collect();
        let last_setback_at: Option<Time> = get(row.try_get("last_setback_at"))?;
        let counters = CounterFacts {
            started_at: Some(get(row.try_get("started_at"))?),
            last_setback_at,
            check_in_days: &days,
            sessions_attended: get(row.try_get::<i32, _>("sessions_attended"))?.max(0) as u32,
            goals_completed: get(row.try_get::<i32, _>("goals_completed"))?.max(0) as u32,
        }
        .counters(now);
        let mut at_risk = Vec::new();
        if last_setback_at.is_some_and(|at| now - at < chrono::Duration::days(7)) {
            at_risk.push("setback");
        }
        let progress: String = get(row.try_get("last_progress"))?;
        if progress == "struggling" || progress == "setback" {
            at_risk.push("struggling");
        }
        if get(row.try_get::<Option<i32>, _>("last_craving"))?.is_some_and(|craving| craving >= 8) {
            at_risk.push("high-craving");
        }
        if get(row.try_get::<i64, _>("escalations"))? > 0 {
            at_risk.push("missed-check-ins");
        }
        if get(row.try_get::<i32, _>("missed_in_a_row"))? >= 2 {
            at_risk.push("missed-sessions");
        }
        Ok(Standing { counters, at_risk })
    }

    /// Days since the last setback a peer may see (or since the journal began): a
    /// setback shared with facilitators only must not show in a peer's counters.
    async fn days_since_visible_setback(
        &self,
        network: &str,
        participant_id: &str,
        viewer: Viewer,
        consent: crate::domain::visibility::Consent,
        now: Time,
    ) -> ApiResult<u32> {
        let setbacks: Vec<(String, Time)> =
            sqlx::query_as("SELECT visibility, at FROM accountability.setbacks WHERE network = $1 AND participant_id = $2")
                .bind(network)
                .bind(participant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?;
        let started: Option<Time> =
            sqlx::query_scalar("SELECT started_at FROM accountability.journals WHERE network = $1 AND participant_id = $2")
                .bind(network)
                .bind(participant_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?;
        let since = setbacks
            .into_iter()
            .filter(|(visibility, _)| {
                can_see_check_in(viewer, codec::visibility_from_text(visibility), consent)
            })
            .map(|(_, at)| at)
            .max()
            .or(started)
            .unwrap_or(now);
        Ok((now - since).num_days().max(0) as u32)
    }

    /// The group's active members, and how the caller may view the group.
    async fn group_and_members(
        &self,
        caller: &circle_grpc::Caller,
        name: &str,
        field: &str,
    ) -> ApiResult<(Vec<String>, Vec<String>)> {
        let mut violations = Violations::default();
        let ids = owned(caller, &mut violations, field, name, GROUP)?;
        let ids = violations.finish(ids)?;
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT participant_id FROM accountability_roster.member_periods
             WHERE network = $1 AND group_id = $2 AND to_at IS NULL ORDER BY participant_id",
        )
        .bind(&ids[0])
        .bind(&ids[2])
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        if caller.role == Role::Participant {
            if !members.contains(&caller.actor_id) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    "NOT_A_MEMBER",
                    "only the group's members see its board and feed",
                ));
            }
        } else {
            authorize(caller, roles::STAFF, &[ids[1].as_str()])?;
        }
        // Permission first, then existence: the clinic in the name must be the group's,
        // since that is the clinic the caller was authorized for.
        if self.group_clinic(&ids[0], &ids[2]).await?.as_deref() != Some(ids[1].as_str()) {
            return Err(ApiError::new(
                Code::NotFound,
                "GROUP_NOT_FOUND",
                format!("{name} not found"),
            ));
        }
        Ok((ids, members))
    }

    pub(super) async fn get_group_board(
        &self,
        request: Request<pb::GetGroupBoardRequest>,
    ) -> ApiResult<pb::GetGroupBoardResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (ids, members) = self
            .group_and_members(&caller, &request.group, "group")
            .await?;
        self.consistent_read(&request.consistency_token).await?;
        let network = &ids[0];
        let now = self.commands.clock.now();
        let mut entries = Vec::new();
        for member in members {
            let viewer = self.viewer(&caller, network, &member).await?;
            let consent = self.consent(network, &member).await?;
            let display = self.display_name(viewer, network, &member).await?;
            let sees_check_ins = |visibility| can_see_check_in(viewer, visibility, consent);
            let goals: Vec<(String, String, String)> = if sees_check_ins(
                crate::domain::Visibility::Group,
            ) || matches!(
                viewer,
                Viewer::Author | Viewer::Staff
            ) {
                sqlx::query_as("SELECT goal_id, text, cadence FROM accountability.goals WHERE network = $1 AND participant_id = $2 AND status = 'active' ORDER BY set_at, goal_id")
                    .bind(network)
                    .bind(&member)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?
            } else {
                Vec::new()
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CHECK_IN_COLUMNS} FROM accountability.check_ins c WHERE c.network = $1 AND c.participant_id = $2 ORDER BY c.position DESC"
            )))
            .bind(network)
            .bind(&member)
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)?;
            let mut last_check_in = None;
            for row in &rows {
                let visibility: String = row.try_get("visibility").map_err(database_error)?;
                if sees_check_ins(codec::visibility_from_text(&visibility)) {
                    last_check_in = Some(
                        check_in_from_row(network, row, display.clone()).map_err(database_error)?,
                    );
                    break;
                }
            }
            let mut standing = self.standing(network, &member, now).await?;
            if matches!(viewer, Viewer::Peer { .. }) {
                standing.counters.days_since_setback = self
                    .days_since_visible_setback(network, &member, viewer, consent, now)
                    .await?;
            }
            entries.push(pb::BoardEntry {
                participant: participant_name(network, &member),
                display_name: display.clone(),
                active_goals: goals
                    .into_iter()
                    .map(|(goal_id, text, cadence)| pb::Goal {
                        name: format!("{}/goals/{goal_id}", participant_name(network, &member)),
                        text,
                        cadence: cadence_from_text(&cadence),
                        state: pb::GoalState::Active as i32,
                    })
                    .collect(),
                last_check_in,
                counters: can_see_milestones(viewer, consent)
                    .then(|| counters_view(standing.counters)),
                // Only the care team sees who is at risk.
                at_risk: viewer == Viewer::Staff && !standing.at_risk.is_empty(),
            });
        }
        Ok(pb::GetGroupBoardResponse { entries })
    }

    pub(super) async fn get_participant_timeline(
        &self,
        request: Request<pb::GetParticipantTimelineRequest>,
    ) -> ApiResult<pb::GetParticipantTimelineResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let ids = violations.finish(ids)?;
        let (network, participant) = (&ids[0], &ids[1]);
        let viewer = self
            .require_self_or_staff(&caller, network, participant)
            .await?;
        self.consistent_read(&request.consistency_token).await?;
        let consent = self.consent(network, participant).await?;
        let display = self.display_name(viewer, network, participant).await?;
        let mut items: Vec<(Time, i64, pb::TimelineItem)> = Vec::new();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECK_IN_COLUMNS} FROM accountability.check_ins c WHERE c.network = $1 AND c.participant_id = $2"
        )))
        .bind(network)
        .bind(participant)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        for row in &rows {
            let visibility: String = row.try_get("visibility").map_err(database_error)?;
            if !can_see_check_in(viewer, codec::visibility_from_text(&visibility), consent) {
                continue;
            }
            let at: Time = row.try_get("at").map_err(database_error)?;
            let position: i64 = row.try_get("position").map_err(database_error)?;
            let check_in =
                check_in_from_row(network, row, display.clone()).map_err(database_error)?;
            items.push((
                at,
                position,
                pb::TimelineItem {
                    kind: "check-in".into(),
                    time: Some(codec::timestamp(at)),
                    check_in: Some(check_in),
                    detail: String::new(),
                    goal: String::new(),
                },
            ));
        }
        let goal_changes: Vec<(String, Time, i64, String, String)> = sqlx::query_as(
            "SELECT kind, at, position, goal_id, text FROM accountability.goal_history
             WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        for (kind, at, position, goal_id, text) in goal_changes {
            items.push((
                at,
                position,
                pb::TimelineItem {
                    kind,
                    time: Some(codec::timestamp(at)),
                    check_in: None,
                    detail: text,
                    goal: format!("{}/goals/{goal_id}", participant_name(network, participant)),
                },
            ));
        }
        let others: Vec<(String, Time, String)> = sqlx::query_as(
            "SELECT 'setback', at, CASE WHEN $3 THEN text ELSE '' END FROM accountability.setbacks WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'milestone', at, kind || ' ' || value FROM accountability.milestones WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'encouragement', at, reaction FROM accountability.encouragements WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'nudge', at, level || ': ' || reason FROM accountability.nudges WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant)
        .bind(viewer == Viewer::Author)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        for (kind, at, detail) in others {
            items.push((
                at,
                i64::MAX,
                pb::TimelineItem {
                    kind,
                    time: Some(codec::timestamp(at)),
                    check_in: None,
                    detail,
                    goal: String::new(),
                },
            ));
        }
        items.sort_by_key(|item| (item.0, item.1));
        let standing = self
            .standing(network, participant, self.commands.clock.now())
            .await?;
        Ok(pb::GetParticipantTimelineResponse {
            items: items.into_iter().map(|(_, _, item)| item).collect(),
            counters: Some(counters_view(standing.counters)),
        })
    }

    pub(super) async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> ApiResult<pb::ListAtRiskResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let staff = owned(
            &caller,
            &mut violations,
            "parent",
            &request.parent,
            STAFF_MEMBER,
        )?;
        authorize(&caller, roles::CLINICIANS, &[])?;
        let staff = violations.finish(staff)?;
        if caller.role == Role::Facilitator && caller.actor_id != staff[1] {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "NOT_YOUR_LIST",
                "facilitators see their own groups",
            ));
        }
        self.consistent_read(&request.consistency_token).await?;
        let members: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT DISTINCT p.participant_id, g.group_id, g.clinic_id FROM accountability_roster.groups g
             JOIN accountability_roster.member_periods p ON p.network = g.network AND p.group_id = g.group_id AND p.to_at IS NULL
             WHERE g.network = $1 AND $2 = ANY(g.facilitators) AND (NOT $3 OR g.clinic_id = ANY($4))
             ORDER BY g.group_id, p.participant_id",
        )
        .bind(&staff[0])
        .bind(&staff[1])
        .bind(circle_grpc::is_clinic_scoped(caller.role))
        .bind(&caller.clinics)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let now = self.commands.clock.now();
        let mut entries = Vec::new();
        for (participant, group_id, clinic_id) in members {
            let standing = self.standing(&staff[0], &participant, now).await?;
            if !standing.at_risk.is_empty() {
                entries.push(pb::AtRiskEntry {
                    participant: participant_name(&staff[0], &participant),
                    group: format!(
                        "networks/{}/clinics/{clinic_id}/groups/{group_id}",
                        staff[0]
                    ),
                    reasons: standing
                        .at_risk
                        .iter()
                        .map(|reason| (*reason).to_owned())
                        .collect(),
                });
            }
        }
        Ok(pb::ListAtRiskResponse { entries })
    }

    /// Feed items after `after` that the caller may see, in position order.
    async fn feed_page(
        &self,
        caller: &circle_grpc::Caller,
        ids: &[String],
        after: u64,
    ) -> ApiResult<(Vec<pb::FeedItem>, u64)> {
        let network = &ids[0];
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 'check-in' AS kind, {CHECK_IN_COLUMNS}, c.position AS item_position, '' AS from_id, '' AS reaction, '' AS message, '' AS milestone
             FROM accountability.check_ins c
             JOIN accountability_roster.member_periods p ON p.network = c.network AND p.participant_id = c.participant_id AND p.group_id = $2
               AND p.from_at <= c.at AND (p.to_at IS NULL OR p.to_at > c.at)
             WHERE c.network = $1 AND c.position > $3
             UNION ALL
             SELECT 'encouragement', {CHECK_IN_COLUMNS}, e.position, e.from_participant_id, e.reaction, e.message, ''
             FROM accountability.encouragements e
             JOIN accountability.check_ins c ON c.network = e.network AND c.participant_id = e.participant_id AND c.check_in_id = e.check_in_id
             JOIN accountability_roster.member_periods p ON p.network = c.network AND p.participant_id = c.participant_id AND p.group_id = $2
               AND p.from_at <= c.at AND (p.to_at IS NULL OR p.to_at > c.at)
             WHERE e.network = $1 AND e.position > $3
             ORDER BY item_position LIMIT 200"
        )))
        .bind(network)
        .bind(&ids[2])
        .bind(after as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        // A day milestone reached again after a setback is flagged as a repeat: peers do
        // not see repeats, which would tell them a setback happened.
        let milestones: Vec<(String, String, i32, Time, i64, bool)> = sqlx::query_as(
            "SELECT m.participant_id, m.kind, m.value, m.at, m.position,
                    EXISTS (SELECT 1 FROM accountability.milestones e WHERE e.network = m.network
                        AND e.participant_id = m.participant_id AND e.kind = m.kind AND e.value = m.value
                        AND e.position < m.position) AS repeated
             FROM accountability.milestones m
             JOIN accountability_roster.member_periods p ON p.network = m.network AND p.participant_id = m.participant_id AND p.group_id = $2
               AND p.from_at <= m.at AND (p.to_at IS NULL OR p.to_at > m.at)
             WHERE m.network = $1 AND m.position > $3 ORDER BY m.position LIMIT 200",
        )
        .bind(network)
        .bind(&ids[2])
        .bind(after as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        // Both queries are capped; a full one only covers positions up to its last row, so
        // this page stops there and the next page resumes after it.
        const PAGE: usize = 200;
        let mut cutoff = u64::MAX;
        if rows.len() == PAGE {
            let highest = rows
                .last()
                .and_then(|row| row.try_get::<i64, _>("item_position").ok())
                .unwrap_or(0);
            cutoff = cutoff.min(highest.max(0) as u64);
        }
        if milestones.len() == PAGE {
            let highest = milestones.last().map(|milestone| milestone.4).unwrap_or(0);
            cutoff = cutoff.min(highest.max(0) as u64);
        }
        let mut items: Vec<pb::FeedItem> = Vec::new();
        let mut last = after;
        // Each person's relation to the viewer, consent and display, looked up once per page.
        let mut people: std::collections::HashMap<
            String,
            (Viewer, crate::domain::visibility::Consent, String),
        > = std::collections::HashMap::new();
        for row in &rows {
            let kind: String = row.try_get("kind").map_err(database_error)?;
            let position = row
                .try_get::<i64, _>("item_position")
                .map_err(database_error)?
                .max(0) as u64;
            if position > cutoff {
                break;
            }
            last = last.max(position);
            let author: String = row.try_get("participant_id").map_err(database_error)?;
            let (viewer, consent, display) =
                self.person(&mut people, caller, network, &author).await?;
            let visibility: String = row.try_get("visibility").map_err(database_error)?;
            if !can_see_check_in(viewer, codec::visibility_from_text(&visibility), consent) {
                continue;
            }
            let check_in = check_in_from_row(network, row, display).map_err(database_error)?;
            let mut item = pb::FeedItem {
                position,
                kind: kind.clone(),
                time: check_in.submit_time,
                check_in: Some(check_in),
                ..Default::default()
            };
            if kind == "encouragement" {
                let from: String = row.try_get("from_id").map_err(database_error)?;
                item.from_display = self.person(&mut people, caller, network, &from).await?.2;
                item.reaction = row.try_get("reaction").map_err(database_error)?;
                item.message = row.try_get("message").map_err(database_error)?;
            }
            items.push(item);
        }
        for (author, kind, value, at, position, repeated) in milestones {
            let position = position.max(0) as u64;
            if position > cutoff {
                break;
            }
            last = last.max(position);
            let (viewer, consent, display) =
                self.person(&mut people, caller, network, &author).await?;
            if !can_see_milestones(viewer, consent)
                || (repeated && matches!(viewer, Viewer::Peer { .. }))
            {
                continue;
            }
            items.push(pb::FeedItem {
                position,
                kind: "milestone".into(),
                time: Some(codec::timestamp(at)),
                from_display: display,
                milestone: format!("{kind} {value}"),
                ..Default::default()
            });
        }
        items.sort_by_key(|item| item.position);
        Ok((items, last))
    }

    /// A person's relation to the caller, consent and display name, cached for a page.
    async fn person(
        &self,
        people: &mut std::collections::HashMap<
            String,
            (Viewer, crate::domain::visibility::Consent, String),
        >,
        caller: &circle_grpc::Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<(Viewer, crate::domain::visibility::Consent, String)> {
        if let Some(known) = people.get(participant_id) {
            return Ok(known.clone());
        }
        let viewer = self.viewer(caller, network, participant_id).await?;
        let consent = self.consent(network, participant_id).await?;
        let display = self.display_name(viewer, network, participant_id).await?;
        people.insert(
            participant_id.to_owned(),
            (viewer, consent, display.clone()),
        );
        Ok((viewer, consent, display))
    }

    /// Streams the group feed after `after_position`: what is there now, then what
    /// happens, with a heartbeat when quiet. A client that reconnects with the last
    /// position it saw misses and repeats nothing.
    pub(super) async fn watch_group_feed(
        &self,
        request: Request<pb::WatchGroupFeedRequest>,
    ) -> ApiResult<FeedStream> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (ids, _) = self
            .group_and_members(&caller, &request.group, "group")
            .await?;
        if i64::try_from(request.after_position).is_err() {
            let mut violations = Violations::default();
            violations.add("after_position", "must be a position this feed sent");
            violations.into_result()?;
        }
        let heartbeat = Duration::from_secs(u64::from(if request.heartbeat_seconds == 0 {
            15
        } else {
            request.heartbeat_seconds.min(300)
        }));
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let api = self.clone();
        let stopping = self.shutdown.signal();
        tokio::spawn(async move {
            let feed = async {
                let mut position = request.after_position;
                let mut last_sent = tokio::time::Instant::now();
                loop {
                    match api.feed_page(&caller, &ids, position).await {
                        Ok((items, last)) => {
                            for item in items {
                                if sender
                                    .send(Ok(pb::WatchGroupFeedResponse {
                                        event: Some(pb::watch_group_feed_response::Event::Item(
                                            item,
                                        )),
                                    }))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                last_sent = tokio::time::Instant::now();
                            }
                            position = last;
                        }
                        Err(error) => {
                            let _ = sender
                                .send(Err(error.into_status(super::ERROR_DOMAIN)))
                                .await;
                            return;
                        }
                    }
                    if last_sent.elapsed() >= heartbeat {
                        let beat = pb::WatchGroupFeedResponse {
                            event: Some(pb::watch_group_feed_response::Event::HeartbeatPosition(
                                position,
                            )),
                        };
                        if sender.send(Ok(beat)).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                    let mut changes = api.read_model.changes();
                    tokio::select! {
                        () = sender.closed() => return,
                        // Once this process's projection runner has stopped, only the timer wakes us.
                        Ok(()) = changes.changed() => {}
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            };
            tokio::select! {
                () = feed => {}
                // Shutdown ends the feed at once (a graceful drain waits for every open
                // call): the client is told to reconnect and resume from the last
                // position it received. If the client is not reading, the stream just
                // ends when the sender is dropped.
                () = stopping => {
                    let _ = sender.try_send(Err(ApiError::new(
                        Code::Unavailable,
                        "SHUTTING_DOWN",
                        "the service is shutting down; reconnect and resume after the last position received",
                    )
                    .into_status(super::ERROR_DOMAIN)));
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}
