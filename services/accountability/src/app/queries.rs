//! Every query of the accountability service, each filtered through the visibility
//! rules for the viewer asking: the group board, the participant timeline, the at-risk
//! list and the live group feed. Each checks its row of the access table before
//! anything is looked up, then reads the read models (schemas `accountability` and
//! `accountability_roster`). The rows hold personal text sealed (`crate::personal`;
//! names and aliases as enrollment sealed them): each answer, and each page of the
//! feed, is opened with one `Opener` for the participants it shows — a forgotten
//! participant's texts and name read `[redacted]`.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::time::Duration;

use chrono::NaiveDate;
use circle_audit::Purpose;
use circle_grpc::{ApiError, Caller, Role, Target, Violations};
use circle_names::{GroupName, Id, MeasurementName, NudgeName, ParticipantName, StaffName};
use circle_vault::{Opener, field};
use sqlx::Row as _;
use tonic::Code;

use super::access::{self, Operation};
use super::{Queries, database_error};
use crate::codec;
use crate::domain::instruments::ScaleScore;
use crate::domain::journal::{
    CounterFacts, Counters, Delivery, SentNudge, parse_measurement_answers,
};
use crate::domain::visibility::{Consent, Viewer, can_see_check_in, can_see_milestones};
use crate::domain::{Cadence, NudgeLevel, Progress, Time, Visibility};

type ApiResult<T> = Result<T, ApiError>;

/// A participant's full resource name.
pub fn participant_name(network: &str, participant_id: &str) -> String {
    format!("networks/{network}/participants/{participant_id}")
}

/// A check-in as a viewer may see it; names are full resource names.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInView {
    pub name: String,
    pub author_display: String,
    /// The goal it reports on, if any.
    pub goal: Option<String>,
    /// `None` for a text the read model does not know.
    pub progress: Option<Progress>,
    pub mood: u32,
    pub craving: u32,
    pub text: String,
    pub visibility: Visibility,
    pub submit_time: Time,
    pub encouragement_count: u32,
}

/// An active goal on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveGoal {
    pub name: String,
    pub text: String,
    /// `None` for a text the read model does not know.
    pub cadence: Option<Cadence>,
}

/// One member on a group's board, as the viewer may see them.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardEntry {
    pub participant: String,
    pub display_name: String,
    pub active_goals: Vec<ActiveGoal>,
    pub last_check_in: Option<CheckInView>,
    /// Only when the viewer may see the member's milestones.
    pub counters: Option<Counters>,
    /// Only the care team sees who is at risk.
    pub at_risk: bool,
}

/// One dated item of a participant's history.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineItem {
    /// `check-in`, `goal-set`, `goal-revised`, `goal-completed`, `goal-abandoned`,
    /// `setback`, `milestone`, `encouragement` or `nudge`.
    pub kind: String,
    pub time: Time,
    pub check_in: Option<CheckInView>,
    pub detail: String,
    /// The goal a goal item is about.
    pub goal: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub items: Vec<TimelineItem>,
    pub counters: Counters,
}

/// A member at risk, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct AtRiskEntry {
    pub participant: String,
    pub group: String,
    pub reasons: Vec<&'static str>,
}

/// A completed outcome measure, for the participant and their care team.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementView {
    pub name: MeasurementName,
    pub instrument: String,
    pub version: u32,
    /// (item id, the chosen option's place in its set), opened.
    pub answers: Vec<(String, u32)>,
    pub scores: Vec<ScaleScore>,
    /// A safety rule was met (the facilitators were alerted).
    pub safety_concern: bool,
    pub submitted_at: Time,
}

/// A participant's measures, oldest first, and the cadences they are asked on.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    pub measurements: Vec<MeasurementView>,
    /// (instrument, every how many days).
    pub cadences: Vec<(String, u32)>,
}

/// One week of a group's trend: its Monday, how many current members contributed, and
/// the mean of each one's latest score that week.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    pub week_start: NaiveDate,
    pub contributors: u32,
    pub mean_score: f64,
}

/// One scale of one instrument across a group, week by week.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTrend {
    pub instrument: String,
    pub scale: String,
    pub points: Vec<TrendPoint>,
}

/// A group's board: its members as the viewer may see them, and the group's trends.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub entries: Vec<BoardEntry>,
    pub trends: Vec<GroupTrend>,
}

/// How far back a group trend goes.
const TREND_WEEKS: i64 = 12;
/// How long after a week ends its trend point is shown.
const TREND_SETTLE: chrono::Duration = chrono::Duration::days(1);
/// The most measures one `ListMeasurements` answers (the latest).
const MAX_MEASUREMENTS: i64 = 500;

/// A nudge as its recipient sees it: who it is about (the name's participant), to
/// whom, why, and what became of it. Nothing else: no goal, check-in or setback text.
#[derive(Debug, Clone, PartialEq)]
pub struct NudgeView {
    pub name: NudgeName,
    /// The recipient's full resource name (a participant's or a staff member's).
    pub recipient: String,
    pub level: NudgeLevel,
    /// One of `domain::nudges::NudgeReason`'s codes (`missed-check-in`, …, `safety-alert`).
    pub reason: String,
    pub sent_at: Time,
    pub acknowledged_at: Option<Time>,
    /// The last receipt, if any.
    pub delivery: Option<Delivery>,
}

impl NudgeView {
    /// The nudge `name` names, as its journal holds it.
    pub(crate) fn of(name: &NudgeName, nudge: &SentNudge) -> Self {
        let network = name.network.as_str();
        Self {
            name: name.clone(),
            recipient: recipient_name(
                network,
                name.participant.as_str(),
                nudge.level,
                nudge.recipient_id.as_deref().unwrap_or_default(),
            ),
            level: nudge.level,
            reason: nudge.reason.clone(),
            sent_at: nudge.sent_at,
            acknowledged_at: nudge.acknowledged_at,
            delivery: nudge.delivery,
        }
    }
}

/// A nudge's recipient as a resource name: the participant it is about, their
/// partner, or a facilitator (staff).
pub(crate) fn recipient_name(
    network: &str,
    owner: &str,
    level: NudgeLevel,
    recipient_id: &str,
) -> String {
    match level {
        NudgeLevel::Participant => participant_name(network, owner),
        NudgeLevel::Partner => participant_name(network, recipient_id),
        NudgeLevel::Facilitator => format!("networks/{network}/staff/{recipient_id}"),
    }
}

/// Whose nudges a `ListMyNudges` asks for: a participant's or a staff member's.
#[derive(Debug, Clone, PartialEq)]
pub enum NudgeRecipient {
    Participant(ParticipantName),
    Staff(StaffName),
}

/// A page of a recipient's nudges, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NudgePage {
    pub nudges: Vec<NudgeView>,
    /// Where the next page starts (before this position); `None` on the last page.
    pub next: Option<i64>,
}

/// Which page of a recipient's nudges: at most `size` (1–100) before position
/// `before` (`None`: the newest), optionally only those not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NudgePageRequest {
    pub size: u32,
    pub before: Option<i64>,
    pub unacknowledged_only: bool,
}

/// A row of `accountability.nudges` as `list_my_nudges` reads it.
type NudgeRow = (
    String,
    String,
    String,
    String,
    String,
    Time,
    i64,
    Option<Time>,
    String,
    String,
    Option<Time>,
);

fn recipient_network(recipient: &NudgeRecipient) -> Id {
    match recipient {
        NudgeRecipient::Participant(name) => name.network.clone(),
        NudgeRecipient::Staff(name) => name.network.clone(),
    }
}

/// One item of the group feed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedItem {
    pub position: u64,
    /// `check-in`, `encouragement` or `milestone`.
    pub kind: String,
    /// The check-in's time (also for an encouragement of it), or the milestone's.
    pub time: Option<Time>,
    pub check_in: Option<CheckInView>,
    pub from_display: String,
    pub reaction: String,
    pub message: String,
    pub milestone: String,
}

/// What an open feed sends: an item, or the position it has reached while quiet.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    Item(Box<FeedItem>),
    Heartbeat(u64),
}

pub type FeedStream =
    Pin<Box<dyn futures::Stream<Item = Result<FeedEvent, ApiError>> + Send + 'static>>;

/// A journal row's counters and at-risk reasons.
struct Standing {
    counters: Counters,
    at_risk: Vec<&'static str>,
}

/// A person's relation to the caller, their consent and how the caller may call them.
type Person = (Viewer, Consent, String);

/// A person of a page, as [`Queries::people`] read them all at once (someone not read
/// is a stranger: shown nothing).
fn person(people: &HashMap<String, Person>, participant_id: &str) -> Person {
    people.get(participant_id).cloned().unwrap_or((
        Viewer::Stranger,
        Consent::default(),
        String::new(),
    ))
}

fn get<T>(result: Result<T, sqlx::Error>) -> Result<T, ApiError> {
    result.map_err(database_error)
}

/// The counters and at-risk reasons of a journal row (the columns of
/// `STANDING_COLUMNS`).
fn standing_of(row: &sqlx::postgres::PgRow, now: Time) -> ApiResult<Standing> {
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

/// A journal's columns for [`standing_of`]; `$3` is a week before now.
const STANDING_COLUMNS: &str = "j.participant_id, j.started_at, j.last_setback_at, j.check_in_days, j.sessions_attended, j.goals_completed, j.last_progress, j.last_craving, j.missed_in_a_row,
    (SELECT count(*) FROM accountability.nudges n WHERE n.network = j.network AND n.participant_id = j.participant_id
       AND n.level IN ('partner', 'facilitator') AND n.reason = 'missed-check-in' AND n.at > $3) AS escalations";

/// How `viewer` may call a participant, from the roster's sealed given name, display
/// choice and alias: peers by first name or alias as the consent says (or not at all
/// without it); staff and the person by first name.
fn display_as(
    viewer: Viewer,
    participant_id: &str,
    given: &str,
    display: &str,
    alias: &str,
    opener: &Opener,
) -> String {
    let given_name = || opener.open(participant_id, field::GIVEN_NAME, given);
    match viewer {
        Viewer::Author | Viewer::Staff => given_name(),
        Viewer::Peer { .. } => match display {
            "alias" => opener.open(participant_id, field::ALIAS, alias),
            "first-name" => given_name(),
            _ => "A group member".to_owned(),
        },
        Viewer::Stranger => String::new(),
    }
}

fn progress_from_text(text: &str) -> Option<Progress> {
    match text {
        "on-track" => Some(Progress::OnTrack),
        "struggling" => Some(Progress::Struggling),
        "setback" => Some(Progress::Setback),
        _ => None,
    }
}

fn cadence_from_text(text: &str) -> Option<Cadence> {
    match text {
        "daily" => Some(Cadence::Daily),
        "weekly" => Some(Cadence::Weekly),
        "per-session" => Some(Cadence::PerSession),
        _ => None,
    }
}

const CHECK_IN_COLUMNS: &str = "c.participant_id, c.check_in_id, c.goal_id, c.progress, c.mood, c.craving, c.text, c.visibility, c.at, c.position,
    (SELECT count(*) FROM accountability.encouragements e WHERE e.network = c.network AND e.participant_id = c.participant_id AND e.check_in_id = c.check_in_id) AS encouragements";

/// A check-in row as a view, its text opened with its author's key.
fn check_in_from_row(
    network: &str,
    row: &sqlx::postgres::PgRow,
    author_display: String,
    opener: &Opener,
) -> Result<CheckInView, sqlx::Error> {
    let participant_id: String = row.try_get("participant_id")?;
    let goal_id: String = row.try_get("goal_id")?;
    let visibility: String = row.try_get("visibility")?;
    let participant = participant_name(network, &participant_id);
    Ok(CheckInView {
        name: format!(
            "{participant}/check-ins/{}",
            row.try_get::<String, _>("check_in_id")?
        ),
        author_display,
        goal: (!goal_id.is_empty()).then(|| format!("{participant}/goals/{goal_id}")),
        progress: progress_from_text(&row.try_get::<String, _>("progress")?),
        mood: row.try_get::<i32, _>("mood")?.max(0) as u32,
        craving: row.try_get::<i32, _>("craving")?.max(0) as u32,
        text: opener.open(
            &participant_id,
            field::CHECK_IN,
            &row.try_get::<String, _>("text")?,
        ),
        visibility: codec::visibility_from_text(&visibility),
        submit_time: row.try_get("at")?,
        encouragement_count: row.try_get::<i64, _>("encouragements")?.max(0) as u32,
    })
}

// How callers relate to participants and groups, as the roster knows it.
impl Queries {
    /// How a viewer may call a participant: peers by first name or alias as the
    /// consent says (or not at all without it); staff and the person by first name.
    /// The roster keeps them as enrollment sealed them; `opener` (which has the
    /// participant's key) opens the one shown.
    async fn display_name(
        &self,
        viewer: Viewer,
        network: &str,
        participant_id: &str,
        opener: &Opener,
    ) -> ApiResult<String> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT given_name, display, alias FROM accountability_roster.people WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let (given, display, alias) = row.unwrap_or_default();
        Ok(display_as(
            viewer,
            participant_id,
            &given,
            &display,
            &alias,
            opener,
        ))
    }

    /// [`Queries::person`] for many at once, in a fixed number of queries whatever
    /// their number: each one's relation to the caller under `operation`'s rule, consent
    /// and display name (opened by `opener`).
    async fn people(
        &self,
        caller: &Caller,
        operation: Operation,
        network: &str,
        participants: &[String],
        opener: &Opener,
    ) -> ApiResult<HashMap<String, Person>> {
        if participants.is_empty() {
            return Ok(HashMap::new());
        }
        let viewers = self
            .facts
            .viewers(caller, access::rule(operation), network, participants)
            .await?;
        let rows: Vec<(String, String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT participant_id, given_name, display, alias, share_check_ins, share_milestones
             FROM accountability_roster.people WHERE network = $1 AND participant_id = ANY($2)",
        )
        .bind(network)
        .bind(participants)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let mut rows: HashMap<String, (String, String, String, Consent)> = rows
            .into_iter()
            .map(
                |(id, given, display, alias, share_check_ins, share_milestones)| {
                    let consent = Consent {
                        share_check_ins,
                        share_milestones,
                    };
                    (id, (given, display, alias, consent))
                },
            )
            .collect();
        Ok(participants
            .iter()
            .map(|participant| {
                let viewer = viewers
                    .get(participant)
                    .copied()
                    .unwrap_or(Viewer::Stranger);
                let (given, display, alias, consent) = rows.remove(participant).unwrap_or_default();
                let shown = display_as(viewer, participant, &given, &display, &alias, opener);
                (participant.clone(), (viewer, consent, shown))
            })
            .collect())
    }

    /// `operation`'s rule on a group (a board or its feed): the tenant and the role
    /// before anything is looked up; then, with the group's active members and its
    /// facilitators as the roster knows them (all that is read before permission is
    /// decided), the clinic in the name, a participant's membership and a
    /// facilitator's own groups. A group the roster does not know has no members and no
    /// facilitators, so it is refused as a group of others is. Then the group must
    /// exist in that clinic. Returns the members.
    pub(super) async fn authorize_group(
        &self,
        caller: &Caller,
        operation: Operation,
        group: &GroupName,
    ) -> ApiResult<Vec<String>> {
        caller.require_network(group.network.as_str(), &group.to_string())?;
        access::rule(operation).check_role(caller)?;
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT participant_id FROM accountability_roster.member_periods
             WHERE network = $1 AND group_id = $2 AND to_at IS NULL ORDER BY participant_id",
        )
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .fetch_all(&mut *self.tenant(group.network.as_str()).await?)
        .await
        .map_err(database_error)?;
        let known = self
            .facts
            .group(group.network.as_str(), group.group.as_str())
            .await?
            .filter(|known| known.clinic_id == group.clinic.as_str());
        access::permit(
            caller,
            operation,
            group.network.as_str(),
            &Target {
                clinics: &[group.clinic.as_str()],
                caller_is_member: caller.is_participant() && members.contains(&caller.actor_id),
                caller_facilitates: known
                    .as_ref()
                    .is_some_and(|known| known.lists(&caller.actor_id)),
                ..Target::default()
            },
        )?;
        // Permission first, then existence: the clinic in the name must be the group's,
        // since that is the clinic the caller was authorized for.
        if known.is_none() {
            return Err(ApiError::new(
                Code::NotFound,
                "GROUP_NOT_FOUND",
                format!("{group} not found"),
            ));
        }
        Ok(members)
    }
}

// Counters and at-risk reasons.
impl Queries {
    async fn standing(
        &self,
        network: &str,
        participant_id: &str,
        now: Time,
    ) -> ApiResult<Standing> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STANDING_COLUMNS} FROM accountability.journals j
             WHERE j.network = $1 AND j.participant_id = $2"
        )))
        .bind(network)
        .bind(participant_id)
        .bind(now - chrono::Duration::days(7))
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let Some(row) = row else {
            return Ok(Standing {
                counters: Counters::default(),
                at_risk: Vec::new(),
            });
        };
        standing_of(&row, now)
    }
}

// The queries.
impl Queries {
    /// The group's active members as the caller may see them: goals, last check-in,
    /// counters and (for staff) whether they are at risk.
    pub async fn get_group_board(
        &self,
        caller: &Caller,
        group: &GroupName,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> ApiResult<Board> {
        let members = self
            .authorize_group(caller, Operation::GetGroupBoard, group)
            .await?;
        self.consistent_read(consistency_token).await?;
        let network = group.network.as_str();
        let now = self.clock.now();
        // Every text on the board is a member's own: one opener for them all.
        let opener = self.opener(network, &members).await?;
        // How the caller relates to each member, their consent and name, in a bounded
        // number of queries whatever the group's size.
        let people = self
            .people(caller, Operation::GetGroupBoard, network, &members, &opener)
            .await?;
        let mut tenant = self.tenant(network).await?;
        let goals: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT participant_id, goal_id, text, cadence FROM accountability.goals
             WHERE network = $1 AND participant_id = ANY($2) AND status = 'active'
             ORDER BY participant_id, set_at, goal_id",
        )
        .bind(network)
        .bind(&members)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        // Each member's latest check-in of each visibility: the latest the viewer may
        // see is among them.
        let check_ins = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT ON (c.participant_id, c.visibility) {CHECK_IN_COLUMNS}
             FROM accountability.check_ins c WHERE c.network = $1 AND c.participant_id = ANY($2)
             ORDER BY c.participant_id, c.visibility, c.position DESC"
        )))
        .bind(network)
        .bind(&members)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let journals = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STANDING_COLUMNS} FROM accountability.journals j
             WHERE j.network = $1 AND j.participant_id = ANY($2)"
        )))
        .bind(network)
        .bind(&members)
        .bind(now - chrono::Duration::days(7))
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let mut standings = HashMap::new();
        let mut started = HashMap::new();
        for row in &journals {
            let participant_id: String = get(row.try_get("participant_id"))?;
            let started_at: Time = get(row.try_get("started_at"))?;
            started.insert(participant_id.clone(), started_at);
            standings.insert(participant_id, standing_of(row, now)?);
        }
        let peers: Vec<&String> = members
            .iter()
            .filter(|member| matches!(people.get(*member), Some((Viewer::Peer { .. }, ..))))
            .collect();
        let setbacks: Vec<(String, String, Time)> = if peers.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT participant_id, visibility, at FROM accountability.setbacks
                 WHERE network = $1 AND participant_id = ANY($2)",
            )
            .bind(network)
            .bind(&peers)
            .fetch_all(&mut *tenant)
            .await
            .map_err(database_error)?
        };
        drop(tenant);
        let mut entries = Vec::new();
        for member in &members {
            let (viewer, consent, display) = person(&people, member);
            let sees_check_ins = |visibility| can_see_check_in(viewer, visibility, consent);
            let shows_goals = sees_check_ins(Visibility::Group)
                || matches!(viewer, Viewer::Author | Viewer::Staff);
            let mut last_check_in: Option<(i64, CheckInView)> = None;
            for row in &check_ins {
                let author: String = get(row.try_get("participant_id"))?;
                let visibility: String = get(row.try_get("visibility"))?;
                let position: i64 = get(row.try_get("position"))?;
                if author != *member
                    || !sees_check_ins(codec::visibility_from_text(&visibility))
                    || last_check_in
                        .as_ref()
                        .is_some_and(|(latest, _)| *latest > position)
                {
                    continue;
                }
                last_check_in = Some((
                    position,
                    get(check_in_from_row(network, row, display.clone(), &opener))?,
                ));
            }
            let mut standing = standings.remove(member).unwrap_or(Standing {
                counters: Counters::default(),
                at_risk: Vec::new(),
            });
            if matches!(viewer, Viewer::Peer { .. }) {
                let since = setbacks
                    .iter()
                    .filter(|(author, visibility, _)| {
                        author == member
                            && can_see_check_in(
                                viewer,
                                codec::visibility_from_text(visibility),
                                consent,
                            )
                    })
                    .map(|(_, _, at)| *at)
                    .max()
                    .or_else(|| started.get(member).copied())
                    .unwrap_or(now);
                standing.counters.days_since_setback = (now - since).num_days().max(0) as u32;
            }
            let participant = participant_name(network, member);
            entries.push(BoardEntry {
                active_goals: goals
                    .iter()
                    .filter(|(author, ..)| shows_goals && author == member)
                    .map(|(_, goal_id, text, cadence)| ActiveGoal {
                        name: format!("{participant}/goals/{goal_id}"),
                        text: opener.open(member, field::GOAL, text),
                        cadence: cadence_from_text(cadence),
                    })
                    .collect(),
                participant,
                display_name: display,
                last_check_in: last_check_in.map(|(_, check_in)| check_in),
                counters: can_see_milestones(viewer, consent).then_some(standing.counters),
                // Only the care team sees who is at risk.
                at_risk: viewer == Viewer::Staff && !standing.at_risk.is_empty(),
            });
        }
        // Every member is on the board (a peer without their consent as "A group
        // member", but there, by id).
        let trends = self
            .group_trends(network, group.group.as_str(), now)
            .await?;
        let reading = Self::reading(caller, Operation::GetGroupBoard, group.to_string(), purpose);
        self.disclose(&reading, &members).await?;
        Ok(Board { entries, trends })
    }

    /// The group's measures week by week over the last `TREND_WEEKS` closed weeks
    /// (UTC, Monday to Sunday): the latest score of each scale each member gave that
    /// week while a member of this group, averaged; a week only once it ended more than
    /// `TREND_SETTLE` ago (the read models have long applied its last scores and
    /// memberships) and only when at least `trend_min_members` members contributed to
    /// it. A point does not change once shown — a week's scores and who was a member
    /// then are history — so no member's score can be told from the trend, by the size
    /// of the group or by watching it move (an open week, a member joining or leaving, a
    /// second answer). A read model halted for longer than `TREND_SETTLE` could still
    /// add a late score to a week shown; `circle status` shows a halt.
    async fn group_trends(
        &self,
        network: &str,
        group_id: &str,
        now: Time,
    ) -> ApiResult<Vec<GroupTrend>> {
        let this_week = (now - TREND_SETTLE)
            .date_naive()
            .week(chrono::Weekday::Mon)
            .first_day();
        let week_start = this_week
            .and_hms_opt(0, 0, 0)
            .map(|start| start.and_utc())
            .unwrap_or(now);
        // From the group's members (past ones too) to their scores of the period, each
        // while a member: the scores read are the group's alone.
        let rows: Vec<(String, String, NaiveDate, i64, f64)> = sqlx::query_as(
            "SELECT instrument, scale, week, count(*), avg(score)::float8 FROM (
                 SELECT DISTINCT ON (s.participant_id, s.instrument, s.scale, date_trunc('week', s.at AT TIME ZONE 'UTC'))
                        s.instrument, s.scale, s.score,
                        date_trunc('week', s.at AT TIME ZONE 'UTC')::date AS week
                 FROM accountability_roster.member_periods p
                 JOIN accountability.measurement_scores s
                   ON s.network = p.network AND s.participant_id = p.participant_id
                  AND s.at >= p.from_at AND (p.to_at IS NULL OR s.at < p.to_at)
                 WHERE p.network = $1 AND p.group_id = $2 AND s.at >= $3 AND s.at < $5
                   AND (p.to_at IS NULL OR p.to_at > $3)
                 ORDER BY s.participant_id, s.instrument, s.scale,
                          date_trunc('week', s.at AT TIME ZONE 'UTC'), s.at DESC
             ) latest
             GROUP BY instrument, scale, week HAVING count(*) >= $4
             ORDER BY instrument, scale, week",
        )
        .bind(network)
        .bind(group_id)
        .bind(week_start - chrono::Duration::weeks(TREND_WEEKS))
        .bind(i64::from(self.trend_min_members))
        .bind(week_start)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let mut trends: Vec<GroupTrend> = Vec::new();
        for (instrument, scale, week_start, contributors, mean_score) in rows {
            let point = TrendPoint {
                week_start,
                contributors: u32::try_from(contributors).unwrap_or(u32::MAX),
                mean_score,
            };
            match trends.last_mut() {
                Some(trend) if trend.instrument == instrument && trend.scale == scale => {
                    trend.points.push(point);
                }
                _ => trends.push(GroupTrend {
                    instrument,
                    scale,
                    points: vec![point],
                }),
            }
        }
        Ok(trends)
    }

    /// A participant's measures (optionally one instrument's), oldest first — their
    /// trend — with the answers opened, and the cadences they are asked on: for the
    /// participant and their care team.
    pub async fn list_measurements(
        &self,
        caller: &Caller,
        participant: &ParticipantName,
        instrument: Option<&str>,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> ApiResult<Measurements> {
        self.facts
            .authorize_record(caller, Operation::ListMeasurements, participant)
            .await?;
        self.consistent_read(consistency_token).await?;
        let network = participant.network.as_str();
        let participant_id = participant.participant.as_str();
        let mut tenant = self.tenant(network).await?;
        let rows: Vec<(String, String, i32, String, Vec<String>, Time)> = sqlx::query_as(
            "SELECT measurement_id, instrument, version, answers, safety, at FROM (
                 SELECT * FROM accountability.measurements
                 WHERE network = $1 AND participant_id = $2 AND ($3 = '' OR instrument = $3)
                 ORDER BY position DESC LIMIT $4
             ) latest ORDER BY position",
        )
        .bind(network)
        .bind(participant_id)
        .bind(instrument.unwrap_or_default())
        .bind(MAX_MEASUREMENTS)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
        let scores: Vec<(String, String, i32, String, bool)> = sqlx::query_as(
            "SELECT measurement_id, scale, score, band, significant FROM accountability.measurement_scores
             WHERE network = $1 AND participant_id = $2 AND measurement_id = ANY($3)
             ORDER BY measurement_id, place",
        )
        .bind(network)
        .bind(participant_id)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let cadences: Vec<(String, i32)> = sqlx::query_as(
            "SELECT instrument, every_days FROM accountability.measurement_cadences
             WHERE network = $1 AND participant_id = $2 ORDER BY instrument",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        drop(tenant);
        let opener = self.opener(network, [participant_id]).await?;
        let mut by_measurement: HashMap<String, Vec<ScaleScore>> = HashMap::new();
        for (measurement_id, scale, score, band, significant) in scores {
            by_measurement
                .entry(measurement_id)
                .or_default()
                .push(ScaleScore {
                    scale,
                    score: score.max(0).unsigned_abs(),
                    band,
                    significant,
                });
        }
        let mut measurements = Vec::new();
        for (measurement_id, instrument, version, answers, safety, at) in rows {
            let Ok(id) = Id::parse(&measurement_id) else {
                continue;
            };
            measurements.push(MeasurementView {
                name: participant.measurement(id),
                instrument,
                version: version.max(0).unsigned_abs(),
                answers: parse_measurement_answers(&opener.open(
                    participant_id,
                    field::MEASUREMENT,
                    &answers,
                )),
                scores: by_measurement.remove(&measurement_id).unwrap_or_default(),
                safety_concern: !safety.is_empty(),
                submitted_at: at,
            });
        }
        let reading = Self::reading(
            caller,
            Operation::ListMeasurements,
            participant.to_string(),
            purpose,
        );
        self.disclose(&reading, [participant_id]).await?;
        Ok(Measurements {
            measurements,
            cadences: cadences
                .into_iter()
                .map(|(instrument, every_days)| (instrument, every_days.max(0).unsigned_abs()))
                .collect(),
        })
    }

    /// A participant's history, each change its own dated item, as the person or their
    /// care team may see it.
    pub async fn get_participant_timeline(
        &self,
        caller: &Caller,
        participant: &ParticipantName,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> ApiResult<Timeline> {
        let viewer = self
            .facts
            .authorize_record(caller, Operation::GetParticipantTimeline, participant)
            .await?;
        self.consistent_read(consistency_token).await?;
        let network = participant.network.as_str();
        let participant_id = participant.participant.as_str();
        let consent = self.facts.consent(network, participant_id).await?;
        // Every text of a timeline is its participant's (an encouragement is in the
        // journal of its recipient, sealed with their key).
        let opener = self.opener(network, [participant_id]).await?;
        let display = self
            .display_name(viewer, network, participant_id, &opener)
            .await?;
        let mut items: Vec<(Time, i64, TimelineItem)> = Vec::new();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECK_IN_COLUMNS} FROM accountability.check_ins c WHERE c.network = $1 AND c.participant_id = $2"
        )))
        .bind(network)
        .bind(participant_id)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        for row in &rows {
            let visibility: String = get(row.try_get("visibility"))?;
            if !can_see_check_in(viewer, codec::visibility_from_text(&visibility), consent) {
                continue;
            }
            let at: Time = get(row.try_get("at"))?;
            let position: i64 = get(row.try_get("position"))?;
            let check_in = get(check_in_from_row(network, row, display.clone(), &opener))?;
            items.push((
                at,
                position,
                TimelineItem {
                    kind: "check-in".into(),
                    time: at,
                    check_in: Some(check_in),
                    detail: String::new(),
                    goal: None,
                },
            ));
        }
        let goal_changes: Vec<(String, Time, i64, String, String)> = sqlx::query_as(
            "SELECT kind, at, position, goal_id, text FROM accountability.goal_history
             WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        for (kind, at, position, goal_id, text) in goal_changes {
            items.push((
                at,
                position,
                TimelineItem {
                    kind,
                    time: at,
                    check_in: None,
                    detail: opener.open(participant_id, field::GOAL, &text),
                    goal: Some(format!("{participant}/goals/{goal_id}")),
                },
            ));
        }
        // Items of one time in the order they were recorded.
        let others: Vec<(String, Time, String, i64)> = sqlx::query_as(
            "SELECT 'setback', at, CASE WHEN $3 THEN text ELSE '' END, position FROM accountability.setbacks WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'milestone', at, kind || ' ' || value, position FROM accountability.milestones WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'encouragement', at, reaction, position FROM accountability.encouragements WHERE network = $1 AND participant_id = $2
             UNION ALL SELECT 'nudge', at, level || ': ' || reason, position FROM accountability.nudges WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant_id)
        .bind(viewer == Viewer::Author)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        for (kind, at, detail, position) in others {
            // A setback's text and an encouragement's reaction are sealed; a
            // milestone's and a nudge's details are the service's own codes.
            let detail = match kind.as_str() {
                "setback" => opener.open(participant_id, field::SETBACK, &detail),
                "encouragement" => opener.open(participant_id, field::ENCOURAGEMENT, &detail),
                _ => detail,
            };
            items.push((
                at,
                position,
                TimelineItem {
                    kind,
                    time: at,
                    check_in: None,
                    detail,
                    goal: None,
                },
            ));
        }
        items.sort_by_key(|item| (item.0, item.1));
        let standing = self
            .standing(network, participant_id, self.clock.now())
            .await?;
        // Their history and counters, even with no item yet.
        let reading = Self::reading(
            caller,
            Operation::GetParticipantTimeline,
            participant.to_string(),
            purpose,
        );
        self.disclose(&reading, [participant_id]).await?;
        Ok(Timeline {
            items: items.into_iter().map(|(_, _, item)| item).collect(),
            counters: standing.counters,
        })
    }

    /// The members of a staff member's groups who are at risk. Facilitators see only
    /// their own list; clinic-scoped roles only their clinics' groups.
    pub async fn list_at_risk(
        &self,
        caller: &Caller,
        staff: &StaffName,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> ApiResult<Vec<AtRiskEntry>> {
        // The list is filtered to the caller's clinics below, so no clinic is checked
        // here: only the role.
        access::permit_unplaced(
            caller,
            Operation::ListAtRisk,
            staff.network.as_str(),
            &Target::default(),
        )?;
        if access::rule(Operation::ListAtRisk).admits_only_as(caller, Role::Facilitator)
            && caller.actor_id != staff.staff.as_str()
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "NOT_YOUR_LIST",
                "facilitators see their own groups",
            ));
        }
        self.consistent_read(consistency_token).await?;
        let network = staff.network.as_str();
        let members: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT DISTINCT p.participant_id, g.group_id, g.clinic_id FROM accountability_roster.groups g
             JOIN accountability_roster.member_periods p ON p.network = g.network AND p.group_id = g.group_id AND p.to_at IS NULL
             WHERE g.network = $1 AND $2 = ANY(g.facilitators) AND (NOT $3 OR g.clinic_id = ANY($4))
             ORDER BY g.group_id, p.participant_id",
        )
        .bind(network)
        .bind(staff.staff.as_str())
        .bind(caller.is_clinic_scoped())
        .bind(&caller.clinics)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let now = self.clock.now();
        let mut entries = Vec::new();
        let mut listed = BTreeSet::new();
        for (participant, group_id, clinic_id) in members {
            let standing = self.standing(network, &participant, now).await?;
            if !standing.at_risk.is_empty() {
                entries.push(AtRiskEntry {
                    participant: participant_name(network, &participant),
                    group: format!("networks/{network}/clinics/{clinic_id}/groups/{group_id}"),
                    reasons: standing.at_risk,
                });
                listed.insert(participant);
            }
        }
        let reading = Self::reading(caller, Operation::ListAtRisk, staff.to_string(), purpose);
        self.disclose(&reading, &listed).await?;
        Ok(entries)
    }

    /// The nudges sent to the caller, newest first, `page_size` at a time before
    /// `before` (a position from the previous page). A participant sees their own and
    /// those they received as a partner — the latter only while the member they are
    /// about lets peers see their check-ins; staff those they received as a
    /// facilitator.
    pub async fn list_my_nudges(
        &self,
        caller: &Caller,
        recipient: &NudgeRecipient,
        page: NudgePageRequest,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> ApiResult<NudgePage> {
        let (network, resource, own) = match recipient {
            NudgeRecipient::Participant(name) => (
                name.network.as_str(),
                name.to_string(),
                caller.is_participant() && caller.actor_id == name.participant.as_str(),
            ),
            NudgeRecipient::Staff(name) => (
                name.network.as_str(),
                name.to_string(),
                !caller.is_participant() && caller.actor_id == name.staff.as_str(),
            ),
        };
        access::permit_unplaced(caller, Operation::ListMyNudges, network, &Target::default())?;
        if !own {
            return Err(super::facts::not_your_record());
        }
        self.consistent_read(consistency_token).await?;
        let recipient_id = caller.actor_id.as_str();
        let rows: Vec<NudgeRow> = sqlx::query_as(
            // Each branch on an index: a participant's own nudges by the journal's key,
            // a partner's and a facilitator's by `nudges_by_recipient`.
            "SELECT n.participant_id, n.public_id, n.level, n.reason, n.recipient_id, n.at, n.position,
                    n.acknowledged_at, n.delivery, n.delivery_channel, n.delivery_at
             FROM (
                 SELECT * FROM accountability.nudges
                 WHERE $6 AND network = $1 AND participant_id = $2 AND level = 'participant'
                   AND position < $3
                 UNION ALL
                 SELECT * FROM accountability.nudges
                 WHERE $6 AND network = $1 AND level = 'partner' AND recipient_id = $2
                   AND position < $3
                 UNION ALL
                 SELECT * FROM accountability.nudges
                 WHERE NOT $6 AND network = $1 AND level = 'facilitator' AND recipient_id = $2
                   AND position < $3
             ) n
             LEFT JOIN accountability_roster.people pe
               ON pe.network = n.network AND pe.participant_id = n.participant_id
             WHERE (NOT $4 OR n.acknowledged_at IS NULL)
               AND (n.level <> 'partner' OR coalesce(pe.share_check_ins, false))
             ORDER BY n.position DESC LIMIT $5",
        )
        .bind(network)
        .bind(recipient_id)
        .bind(page.before.unwrap_or(i64::MAX))
        .bind(page.unacknowledged_only)
        .bind(i64::from(page.size) + 1)
        .bind(matches!(recipient, NudgeRecipient::Participant(_)))
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let more = rows.len() > page.size as usize;
        let mut nudges = Vec::new();
        let mut about = BTreeSet::new();
        let mut last = None;
        for row in rows.into_iter().take(page.size as usize) {
            let (participant_id, public_id, level, reason, to, at, position) =
                (row.0, row.1, row.2, row.3, row.4, row.5, row.6);
            let (acknowledged_at, delivery, channel, delivery_at) = (row.7, row.8, row.9, row.10);
            last = Some(position);
            let (Some(level), Ok(participant), Ok(nudge)) = (
                codec::level_from_text(&level),
                Id::parse(&participant_id),
                Id::parse(&public_id),
            ) else {
                continue;
            };
            let name = NudgeName {
                network: recipient_network(recipient),
                participant,
                nudge,
            };
            let delivery = match (codec::channel_from_text(&channel), delivery_at) {
                (Some(channel), Some(at)) if delivery != "pending" => Some(Delivery {
                    delivered: delivery == "delivered",
                    channel,
                    at,
                }),
                _ => None,
            };
            nudges.push(NudgeView {
                recipient: recipient_name(network, &participant_id, level, &to),
                name,
                level,
                reason,
                sent_at: at,
                acknowledged_at,
                delivery,
            });
            about.insert(participant_id);
        }
        let reading = Self::reading(caller, Operation::ListMyNudges, resource, purpose);
        self.disclose(&reading, &about).await?;
        Ok(NudgePage {
            nudges,
            next: if more { last } else { None },
        })
    }

    /// Feed items after `after` that the caller may see, in position order, the
    /// position the page reached, and the participants the items show (authors and
    /// encouragers).
    async fn feed_page(
        &self,
        caller: &Caller,
        group: &GroupName,
        after: u64,
    ) -> ApiResult<(Vec<FeedItem>, u64, BTreeSet<String>, bool)> {
        let network = group.network.as_str();
        // Both queries read one snapshot: with two, a batch committed between them
        // (a check-in at P, a milestone at P+1) would move the page past P unseen.
        let mut snapshot = circle_projection::tenant_snapshot(&self.pool, network)
            .await
            .map_err(database_error)?;
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
        .bind(group.group.as_str())
        .bind(after as i64)
        .fetch_all(&mut *snapshot)
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
        .bind(group.group.as_str())
        .bind(after as i64)
        .fetch_all(&mut *snapshot)
        .await
        .map_err(database_error)?;
        // Given back before anything else is looked up: a handler never holds one
        // connection while it waits for another (with every connection so held, none
        // would be free, and each would wait out the pool's timeout).
        drop(snapshot);
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
        // Everyone the page may show (authors, whose texts and names these are, and
        // encouragers, whose names): one opener for the page.
        let mut named: BTreeSet<String> = milestones
            .iter()
            .map(|milestone| milestone.0.clone())
            .collect();
        for row in &rows {
            named.insert(get(row.try_get("participant_id"))?);
            named.insert(get(row.try_get("from_id"))?);
        }
        let opener = self.opener(network, &named).await?;
        let mut items: Vec<FeedItem> = Vec::new();
        let mut shown = BTreeSet::new();
        let mut last = after;
        // Each person's relation to the viewer, consent and display, looked up for the
        // whole page at once.
        let named: Vec<String> = named.into_iter().collect();
        let people = self
            .people(caller, Operation::WatchGroupFeed, network, &named, &opener)
            .await?;
        for row in &rows {
            let kind: String = get(row.try_get("kind"))?;
            let position = get(row.try_get::<i64, _>("item_position"))?.max(0) as u64;
            if position > cutoff {
                break;
            }
            last = last.max(position);
            let author: String = get(row.try_get("participant_id"))?;
            let (viewer, consent, display) = person(&people, &author);
            let visibility: String = get(row.try_get("visibility"))?;
            if !can_see_check_in(viewer, codec::visibility_from_text(&visibility), consent) {
                continue;
            }
            let check_in = get(check_in_from_row(network, row, display, &opener))?;
            let mut item = FeedItem {
                position,
                time: Some(check_in.submit_time),
                check_in: Some(check_in),
                ..Default::default()
            };
            if kind == "encouragement" {
                let from: String = get(row.try_get("from_id"))?;
                item.from_display = person(&people, &from).2;
                // In the author's journal: sealed with the author's key.
                let reaction: String = get(row.try_get("reaction"))?;
                let message: String = get(row.try_get("message"))?;
                item.reaction = opener.open(&author, field::ENCOURAGEMENT, &reaction);
                item.message = opener.open(&author, field::ENCOURAGEMENT, &message);
                shown.insert(from);
            }
            item.kind = kind;
            items.push(item);
            shown.insert(author);
        }
        for (author, kind, value, at, position, repeated) in milestones {
            let position = position.max(0) as u64;
            if position > cutoff {
                break;
            }
            last = last.max(position);
            let (viewer, consent, display) = person(&people, &author);
            if !can_see_milestones(viewer, consent)
                || (repeated && matches!(viewer, Viewer::Peer { .. }))
            {
                continue;
            }
            items.push(FeedItem {
                position,
                kind: "milestone".into(),
                time: Some(at),
                from_display: display,
                milestone: format!("{kind} {value}"),
                ..Default::default()
            });
            shown.insert(author);
        }
        items.sort_by_key(|item| item.position);
        // Cut off at a full query: more is there to read now.
        Ok((items, last, shown, cutoff != u64::MAX))
    }

    /// Streams the group feed after `after_position`: what is there now, then what
    /// happens, with a heartbeat when quiet for `heartbeat`. A client that reconnects
    /// with the last position it saw misses and repeats nothing. The feed ends with
    /// `UNAVAILABLE`/`SHUTTING_DOWN` as soon as shutdown starts.
    ///
    /// An open feed reads a page only when the read model has moved (or the last page
    /// was cut off at its size), and checks access again whenever the roster has moved
    /// (both seen by one poller per process, `circle_projection::watch_checkpoints`,
    /// every 250 ms; this process's own runner wakes it at once): nothing happening
    /// costs no query however many feeds are open. A member who leaves the group, or a
    /// facilitator taken off it, gets the refusal a new call would get
    /// (`PERMISSION_DENIED`) and nothing after it, once the poller has seen the roster
    /// move (within 250 ms). A feed lives no longer than the token that opened it
    /// (`TOKEN_EXPIRED`, checked at least every second, at no query's cost).
    pub async fn watch_group_feed(
        &self,
        caller: &Caller,
        group: &GroupName,
        after_position: u64,
        heartbeat: Duration,
        purpose: Option<Purpose>,
    ) -> ApiResult<FeedStream> {
        // Subscribed before access is checked: a roster change after the check is seen
        // as one, and checked again.
        let mut watermarks = self.watermarks.subscribe();
        let mut seen = watermarks.borrow_and_update().clone();
        self.authorize_group(caller, Operation::WatchGroupFeed, group)
            .await?;
        if i64::try_from(after_position).is_err() {
            let mut violations = Violations::default();
            violations.add("after_position", "must be a position this feed sent");
            violations.into_result()?;
        }
        // Taken now, so every page is recorded with the trace of the call that opened it.
        let reading = Self::reading(
            caller,
            Operation::WatchGroupFeed,
            group.to_string(),
            purpose,
        );
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let queries = self.clone();
        let caller = caller.clone();
        let group = group.clone();
        let stopping = self.shutdown.signal();
        tokio::spawn(async move {
            let feed = async {
                let mut position = after_position;
                let mut last_sent = tokio::time::Instant::now();
                // Read when the read model or the roster has moved (this process's
                // runner says so at once; the shared poller within 250 ms, whichever
                // replica writes them): an open feed costs no query while nothing
                // happens. Access is checked again whenever the roster has moved.
                let mut changes = queries.read_model.changes();
                let (mut recheck, mut read) = (false, true);
                loop {
                    // A feed lives no longer than the token that opened it.
                    if caller.expired() {
                        let _ = sender.send(Err(super::stream_token_expired())).await;
                        return;
                    }
                    // Whoever was let in may have lost access since: checked again
                    // when the roster has moved, and before any page once the poller
                    // has seen it move.
                    let roster_now = watermarks.borrow().get(1).copied();
                    if roster_now != seen.get(1).copied() {
                        recheck = true;
                    }
                    if recheck
                        && let Err(error) = queries
                            .authorize_group(&caller, Operation::WatchGroupFeed, &group)
                            .await
                    {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    if recheck
                        && let Some(roster) = roster_now
                        && let Some(known) = seen.get_mut(1)
                    {
                        *known = roster;
                    }
                    let page = if read {
                        queries.feed_page(&caller, &group, position).await
                    } else {
                        Ok((Vec::new(), position, BTreeSet::new(), false))
                    };
                    let more = match page {
                        Ok((items, last, shown, cut_off)) => {
                            // Nobody to show it to (the client has gone): nothing is
                            // recorded as shown.
                            if sender.is_closed() {
                                return;
                            }
                            // A page is sent only once what it shows is recorded; an
                            // audit log that cannot record it ends the feed (the client
                            // resumes after the last position it received).
                            if !items.is_empty()
                                && let Err(error) = queries.disclose(&reading, &shown).await
                            {
                                let _ = sender.send(Err(error)).await;
                                return;
                            }
                            for item in items {
                                if sender
                                    .send(Ok(FeedEvent::Item(Box::new(item))))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                last_sent = tokio::time::Instant::now();
                            }
                            position = last;
                            cut_off
                        }
                        Err(error) => {
                            let _ = sender.send(Err(error)).await;
                            return;
                        }
                    };
                    if last_sent.elapsed() >= heartbeat {
                        if sender
                            .send(Ok(FeedEvent::Heartbeat(position)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                    (recheck, read) = (false, false);
                    // A page cut off at its size: the rest is read now, not when the
                    // read model next moves.
                    if more {
                        read = true;
                        continue;
                    }
                    let next_heartbeat = heartbeat
                        .saturating_sub(last_sent.elapsed())
                        .min(Duration::from_secs(1));
                    tokio::select! {
                        biased;
                        () = sender.closed() => return,
                        // Once this process's projection runner has stopped, the poller
                        // wakes us.
                        Ok(()) = changes.changed() => read = true,
                        Ok(()) = watermarks.changed() => {
                            let now = watermarks.borrow_and_update().clone();
                            read = now.first() != seen.first();
                            recheck = now.get(1) != seen.get(1);
                            seen = now;
                        }
                        // The token's expiry and the heartbeat, which cost no query.
                        () = tokio::time::sleep(next_heartbeat) => {}
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
                    let _ = sender.try_send(Err(super::stream_shutting_down()));
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}
