//! Process managers. Each runs its steps through the application layer
//! (`app::Commands`) as `Caller::process_manager`, every step checked against its row
//! of the access table (`app::access::step_rule`), and treats a step that did not run
//! in one way (`failure`). From SESSIONS: attendance and session check-ins reach the
//! journals. From ENROLLMENT: a partnership ends when either member leaves the group or
//! withdraws peer-visibility consent. And the nudger, on the service's clock: missed
//! check-ins nudge the participant, then the partner, then the facilitator; two missed
//! sessions in a row reach the facilitator; nothing is sent in the clinic's quiet
//! hours (what is due is the pure policy's decision, `domain::nudges`); day milestones
//! are recorded as they come. Every step's request id (and nudge id) derives from what
//! triggered it, so nothing is repeated after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use circle_calendar::time_zone;
use circle_enrollment_events::Fact;
use circle_eventstore::StoredCommit;
use circle_grpc::Caller;
use circle_projection::{ApplyError, Projection};
use circle_proto::{enrollment::events::v1 as enrollment, sessions::events::v1 as sessions};
use prost::{Message, Name};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;

use crate::app::Commands;
use crate::app::commands::{SessionCheckIn, StepError};
use crate::codec::visibility_from_text;
use crate::domain::Time;
use crate::domain::journal::DAY_MILESTONES;
use crate::domain::nudges::{
    ActiveGoal, DueNudge, MeasureCadence, NudgeReason, RecentSetback, SETBACK_PROMPT_WINDOW,
    Situation, due_nudges,
};
use crate::domain::settings::{ClinicSettings, QuietHours};
use crate::domain::visibility::Consent;
use crate::read_model::cadence_from_text;

/// The schema of [`FromSessions`] (its checkpoint). Each projection owns its schema: a
/// rebuild swaps the whole schema.
pub const FROM_SESSIONS_SCHEMA: &str = "accountability_from_sessions";
/// The schema of [`PartnershipGuard`] (its checkpoint).
pub const PARTNERSHIP_GUARD_SCHEMA: &str = "accountability_partnership_guard";
/// [`FromSessions`]' name (its checkpoint key and durable consumer), for those who
/// prepare its schema without running it (`circle setup`).
pub const FROM_SESSIONS_NAME: &str = "accountability-from-sessions";
/// [`PartnershipGuard`]'s name, likewise.
pub const PARTNERSHIP_GUARD_NAME: &str = "accountability-partnership-guard";
/// The schema both process managers' checkpoints were kept in before each had one of
/// its own.
pub const PROCESS_MANAGERS_FORMERLY_IN: &str = "accountability_process";

/// The caller of this service's process managers in `network`: an in-process caller
/// that no client can claim to be (whatever role a client states).
fn process_manager(network: &str) -> Caller {
    Caller::process_manager(network, "accountability-process")
}

/// What a step that did not run means for a projection-driven process manager: a step
/// the domain or the log refused is skipped (it ran before, or no longer applies), as
/// is one about a forgotten participant (nothing more is recorded for them), one
/// the access table refused (a bug) or that fails the same way every time is poison
/// (dead-lettered, logged at ERROR), the rest is retried with the commit.
fn failure(result: Result<(), StepError>) -> Result<(), ApplyError> {
    match result {
        Ok(()) => Ok(()),
        Err(StepError::Rejected(reason)) => {
            tracing::warn!(%reason, "process step refused; skipped");
            Ok(())
        }
        Err(StepError::Invalid(error)) => {
            tracing::warn!(%error, "process step refused; skipped");
            Ok(())
        }
        Err(StepError::Forgotten) => {
            tracing::info!("process step about a forgotten participant; skipped");
            Ok(())
        }
        Err(StepError::Refused(error)) => {
            tracing::error!(%error, "process step refused by the access table");
            Err(ApplyError::Poison(error))
        }
        // A step too large for the event log fails the same way every time.
        Err(StepError::Poison(error)) => Err(ApplyError::Poison(error)),
        Err(StepError::Transient(error)) => Err(ApplyError::Transient(error)),
    }
}

/// What a step that did not run means for the nudger: one the domain refused is done
/// (the journal has it already, or it no longer applies) and stays quiet, since the
/// read model it decides from may lag, as is one about a forgotten participant; anything
/// else ends the pass, which the next one retries.
/// [`nudger_failure`], marking the step's span failed when it failed.
fn nudger_failure_in(span: &tracing::Span, result: Result<(), StepError>) -> Result<(), String> {
    let outcome = nudger_failure(result);
    if outcome.is_err() {
        circle_service::failed(span);
    }
    outcome
}

fn nudger_failure(result: Result<(), StepError>) -> Result<(), String> {
    match result {
        Ok(()) | Err(StepError::Rejected(_)) => Ok(()),
        Err(StepError::Forgotten) => {
            tracing::debug!("nudger step about a forgotten participant; skipped");
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// The peer-visibility consent a participant has given, as the roster knows it.
pub async fn consent_of(
    connection: &mut PgConnection,
    network: &str,
    participant_id: &str,
) -> Result<Consent, sqlx::Error> {
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT share_check_ins, share_milestones FROM accountability_roster.people WHERE network = $1 AND participant_id = $2",
    )
    .bind(network)
    .bind(participant_id)
    .fetch_optional(connection)
    .await?;
    Ok(row
        .map(|(share_check_ins, share_milestones)| Consent {
            share_check_ins,
            share_milestones,
        })
        .unwrap_or_default())
}

/// Attendance and session check-ins from the sessions service.
pub struct FromSessions {
    pub commands: Arc<Commands>,
}

impl Projection for FromSessions {
    fn name(&self) -> &str {
        FROM_SESSIONS_NAME
    }

    fn process_manager(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its checkpoint was kept in the schema it shared with the other process
    /// manager until each got its own: resume from there (a replay would submit every
    /// past session check-in again under the new ids).
    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        Some(PROCESS_MANAGERS_FORMERLY_IN)
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let network = commit.commit.network.as_str();
        let session_id = commit.commit.aggregate_id.as_str();
        for event in &commit.commit.events {
            let payload = event.payload.as_slice();
            let poison = |error: prost::DecodeError| ApplyError::Poison(error.to_string());
            if event.event_type == sessions::AttendanceRecorded::full_name() {
                let m = sessions::AttendanceRecorded::decode(payload).map_err(poison)?;
                let attended = matches!(
                    sessions::AttendanceStatus::try_from(m.status),
                    Ok(sessions::AttendanceStatus::Present
                        | sessions::AttendanceStatus::Late
                        | sessions::AttendanceStatus::LeftEarly)
                );
                let excused = m.status == sessions::AttendanceStatus::Excused as i32;
                let request_id = format!("pm:attendance-{session_id}-{}", commit.sequence);
                failure(
                    self.commands
                        .record_attendance(
                            &process_manager(network),
                            &m.participant_id,
                            session_id,
                            (!excused).then_some(attended),
                            request_id,
                        )
                        .await,
                )?;
            } else if event.event_type == sessions::SessionCheckInRecorded::full_name() {
                let m = sessions::SessionCheckInRecorded::decode(payload).map_err(poison)?;
                let consent = consent_of(connection, network, &m.participant_id).await?;
                // Each recorded session check-in (a correction too) is its own journal
                // check-in: id and request id derive from the commit that recorded it.
                let check_in_id = circle_names::Id::derived(&format!(
                    "{network}/sessions/{session_id}/check-in/{}",
                    commit.sequence
                ))
                .into_string();
                let check_in = SessionCheckIn {
                    check_in_id,
                    session_id: session_id.to_owned(),
                    mood: m.mood,
                    craving: m.craving,
                    // Copied as SESSIONS recorded it: sealed there with the member's key
                    // as a check-in (`field::CHECK_IN`), which the journal's sealing
                    // keeps as it is; text from before sealing is sealed now.
                    text: m.share,
                    consent,
                };
                let request_id = format!("pm:session-check-in-{session_id}-{}", commit.sequence);
                failure(
                    self.commands
                        .submit_session_check_in(
                            &process_manager(network),
                            &m.participant_id,
                            check_in,
                            request_id,
                        )
                        .await,
                )?;
            }
        }
        Ok(())
    }
}

/// Ends partnerships when a member leaves the group or withdraws consent.
pub struct PartnershipGuard {
    pub commands: Arc<Commands>,
}

impl Projection for PartnershipGuard {
    fn name(&self) -> &str {
        PARTNERSHIP_GUARD_NAME
    }

    fn process_manager(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its checkpoint was kept in the schema it shared with the other process
    /// manager until each got its own: resume from there (a replay would end today's
    /// partnerships for departures and consent changes of long ago).
    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        Some(PROCESS_MANAGERS_FORMERLY_IN)
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let network = commit.commit.network.as_str();
        let facts = commit
            .commit
            .events
            .iter()
            .map(circle_enrollment_events::decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ApplyError::Poison(error.to_string()))?;
        // A new peer-visibility consent supersedes the old one in the same commit: the
        // partnership survives if the new consent still shares check-ins.
        let still_sharing = facts.iter().any(|fact| {
            matches!(fact, Some(Fact::ConsentRecorded(consent))
                if consent.kind == enrollment::ConsentKind::PeerVisibility as i32 && consent.share_check_ins)
        });
        for fact in facts {
            let (participant_id, group_id, reason) = match fact {
                Some(Fact::PeriodClosed {
                    participant_id,
                    left_group: true,
                }) => (
                    participant_id,
                    Some(commit.commit.aggregate_id.clone()),
                    "left-group",
                ),
                Some(Fact::ConsentRevoked(revoked))
                    if revoked.kind == enrollment::ConsentKind::PeerVisibility as i32
                        && !still_sharing =>
                {
                    (commit.commit.aggregate_id.clone(), None, "consent-revoked")
                }
                Some(Fact::ConsentRecorded(consent))
                    if consent.kind == enrollment::ConsentKind::PeerVisibility as i32
                        && !consent.share_check_ins =>
                {
                    (commit.commit.aggregate_id.clone(), None, "consent-revoked")
                }
                _ => continue,
            };
            let partnerships: Vec<(String,)> = sqlx::query_as(
                "SELECT partnership_id FROM accountability.partnerships
                 WHERE network = $1 AND state IN ('proposed', 'active') AND (proposer_id = $2 OR invitee_id = $2)
                   AND ($3::text IS NULL OR group_id = $3)",
            )
            .bind(network)
            .bind(&participant_id)
            .bind(group_id)
            .fetch_all(&mut *connection)
            .await?;
            for (partnership_id,) in partnerships {
                let request_id = format!("pm:end-{partnership_id}-{}", commit.sequence);
                failure(
                    self.commands
                        .end_partnership_for(
                            &process_manager(network),
                            &partnership_id,
                            reason,
                            request_id,
                        )
                        .await,
                )?;
            }
        }
        Ok(())
    }
}

pub struct Nudger {
    pub pool: PgPool,
    pub commands: Arc<Commands>,
    /// Quiet hours where a clinic set none.
    pub default_quiet_hours: QuietHours,
}

type JournalRow = (
    String,
    String,
    Time,
    Option<Time>,
    Option<Time>,
    i32,
    String,
);
type GroupRow = (String, String, Vec<String>, bool, bool);

/// How far back the nudger reads acknowledgements: a ladder's rungs come a day or a
/// week apart, so an older acknowledgement is of a ladder long climbed (the journal
/// holds back its next rung in any case).
const ACKNOWLEDGED_LOOKBACK: chrono::Duration = chrono::Duration::days(30);

/// Journals the nudger reads at a time.
const NUDGER_PAGE: i64 = 500;

/// What the nudge policy needs of a page of journals' members, by participant.
#[derive(Default)]
struct PageFacts {
    /// The first active group (by id): clinic, time zone, facilitators, and the
    /// member's consent to share check-ins and milestones.
    groups: HashMap<String, GroupRow>,
    partners: HashMap<String, String>,
    goals: HashMap<String, Vec<ActiveGoal>>,
    setbacks: HashMap<String, Vec<RecentSetback>>,
    /// Day milestones reached: (value, when).
    milestones: HashMap<String, Vec<(i32, Time)>>,
    /// Recent missed-check-in nudges their recipients acknowledged (each holds back the
    /// rung above it; the journal decides for older ones).
    acknowledged: HashMap<String, std::collections::BTreeSet<String>>,
    /// Outcome measures each is asked to complete, with when they last did.
    measures: HashMap<String, Vec<MeasureCadence>>,
}

/// What the journals read model says of a member, beside their group.
struct JournalFacts {
    last_check_in_at: Option<Time>,
    missed_sessions_in_a_row: u32,
    last_missed_session: String,
}

impl Nudger {
    pub async fn run(
        self,
        poll: Duration,
        mut lease: circle_projection::Lease,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            // One replica at a time nudges.
            if !lease.wait_for_turn(&mut shutdown).await {
                break;
            }
            let pass = circle_service::loop_pass_span(crate::SERVICE, "nudger");
            if let Err(error) = self.once().instrument(pass.clone()).await {
                circle_service::failed(&pass);
                tracing::warn!(parent: &pass, %error, "nudge pass failed; will retry");
            }
            // The pass ends here, not after the wait.
            drop(pass);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(poll) => {}
            }
        }
        lease.release().await;
    }

    /// One pass: for every journal, records due day milestones, loads the member's
    /// situation, asks the nudge policy what is due and sends what was not sent yet.
    /// Network by network (the tenant walls show one network's rows at a time; the
    /// networks are those the journals' read model has seen).
    pub async fn once(&self) -> Result<(), String> {
        let networks = circle_service::networks(&self.pool, crate::read_model::SCHEMA)
            .await
            .map_err(|error| error.to_string())?;
        // One network's failure does not hold back the others; the pass still reports
        // it.
        let mut failed = None;
        for network in networks {
            if let Err(error) = self.network_once(&network).await {
                tracing::warn!(%network, %error, "a network's nudges were not run");
                failed.get_or_insert(error);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// A transaction that sees `network`'s rows only.
    async fn tenant(
        &self,
        network: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, String> {
        circle_service::tenant_transaction(&self.pool, network)
            .await
            .map_err(|error| error.to_string())
    }

    /// One pass over the journals of one network, a page of journals at a time: what
    /// the nudge policy needs of a page's members is read in a fixed number of queries
    /// whatever the page's size (not several per member), then each member's due
    /// nudges are sent.
    async fn network_once(&self, network: &str) -> Result<(), String> {
        let now = self.commands.now();
        let mut quiet: HashMap<String, (i32, i32)> = HashMap::new();
        {
            let rows: Vec<(String, i32, i32)> = sqlx::query_as(
                "SELECT clinic_id, start_minute, end_minute FROM accountability.quiet_hours WHERE network = $1",
            )
            .bind(network)
            .fetch_all(&mut *self.tenant(network).await?)
            .await
            .map_err(|error| error.to_string())?;
            for (clinic_id, start, end) in rows {
                quiet.insert(clinic_id, (start, end));
            }
        }
        let mut after = String::new();
        loop {
            let journals: Vec<JournalRow> = sqlx::query_as(
                "SELECT network, participant_id, started_at, last_check_in_at, last_setback_at, missed_in_a_row, last_missed_session
                 FROM accountability.journals WHERE network = $1 AND participant_id > $2
                 ORDER BY participant_id LIMIT $3",
            )
            .bind(network)
            .bind(&after)
            .bind(NUDGER_PAGE)
            .fetch_all(&mut *self.tenant(network).await?)
            .await
            .map_err(|error| error.to_string())?;
            let Some(last) = journals.last() else {
                return Ok(());
            };
            after = last.1.clone();
            let full = journals.len() as i64 == NUDGER_PAGE;
            let facts = self.page_facts(network, &journals, now).await?;
            for (
                network,
                participant_id,
                started_at,
                last_check_in_at,
                last_setback_at,
                missed_in_a_row,
                last_missed_session,
            ) in journals
            {
                self.day_milestones(
                    &network,
                    &participant_id,
                    started_at,
                    last_setback_at,
                    now,
                    &facts,
                )
                .await?;
                let journal = JournalFacts {
                    last_check_in_at,
                    missed_sessions_in_a_row: missed_in_a_row.max(0).unsigned_abs(),
                    last_missed_session,
                };
                let Some(situation) = self.situation(&participant_id, journal, now, &facts, &quiet)
                else {
                    continue;
                };
                for nudge in due_nudges(&situation) {
                    self.nudge(&network, &participant_id, nudge).await?;
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// What the policy needs of a page of journals' members, in one query per kind
    /// (on one connection): each one's first active group (by id) with its clinic,
    /// time zone, facilitators and the member's consent; their partners; active goals;
    /// recent setbacks; and the day milestones they have reached.
    async fn page_facts(
        &self,
        network: &str,
        journals: &[JournalRow],
        now: Time,
    ) -> Result<PageFacts, String> {
        let ids: Vec<&str> = journals.iter().map(|journal| journal.1.as_str()).collect();
        let mut tenant = self.tenant(network).await?;
        let error = |error: sqlx::Error| error.to_string();
        let groups: Vec<(String, String, String, Vec<String>, bool, bool)> = sqlx::query_as(
            "SELECT DISTINCT ON (p.participant_id) p.participant_id, g.clinic_id, g.time_zone, g.facilitators,
                    coalesce(pe.share_check_ins, false), coalesce(pe.share_milestones, false)
             FROM accountability_roster.member_periods p
             JOIN accountability_roster.groups g ON g.network = p.network AND g.group_id = p.group_id
             LEFT JOIN accountability_roster.people pe
               ON pe.network = p.network AND pe.participant_id = p.participant_id
             WHERE p.network = $1 AND p.participant_id = ANY($2) AND p.to_at IS NULL
             ORDER BY p.participant_id, g.group_id",
        )
        .bind(network)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let partnerships: Vec<(String, String)> = sqlx::query_as(
            "SELECT proposer_id, invitee_id FROM accountability.partnerships
             WHERE network = $1 AND state = 'active' AND (proposer_id = ANY($2) OR invitee_id = ANY($2))
             ORDER BY group_id",
        )
        .bind(network)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let goals: Vec<(String, String, String, Time)> = sqlx::query_as(
            "SELECT participant_id, goal_id, cadence, set_at FROM accountability.goals
             WHERE network = $1 AND participant_id = ANY($2) AND status = 'active'
             ORDER BY participant_id, goal_id",
        )
        .bind(network)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let setbacks: Vec<(String, String, String, Time)> = sqlx::query_as(
            "SELECT participant_id, setback_id, visibility, at FROM accountability.setbacks
             WHERE network = $1 AND participant_id = ANY($2) AND at > $3",
        )
        .bind(network)
        .bind(&ids)
        .bind(now - SETBACK_PROMPT_WINDOW)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let milestones: Vec<(String, i32, Time)> = sqlx::query_as(
            "SELECT participant_id, value, at FROM accountability.milestones
             WHERE network = $1 AND participant_id = ANY($2) AND kind = 'days-since-setback'",
        )
        .bind(network)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let measures: Vec<(String, String, i32, Time, Option<Time>)> = sqlx::query_as(
            "SELECT c.participant_id, c.instrument, c.every_days, c.set_at,
                    (SELECT max(m.at) FROM accountability.measurements m
                     WHERE m.network = c.network AND m.participant_id = c.participant_id
                       AND m.instrument = c.instrument)
             FROM accountability.measurement_cadences c
             WHERE c.network = $1 AND c.participant_id = ANY($2)
             ORDER BY c.participant_id, c.instrument",
        )
        .bind(network)
        .bind(&ids)
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        let acknowledged: Vec<(String, String)> = sqlx::query_as(
            "SELECT participant_id, nudge_id FROM accountability.nudges
             WHERE network = $1 AND participant_id = ANY($2) AND reason = $4
               AND acknowledged_at IS NOT NULL AND due_at > $3",
        )
        .bind(network)
        .bind(&ids)
        .bind(now - ACKNOWLEDGED_LOOKBACK)
        .bind(NudgeReason::MissedCheckIn.as_str())
        .fetch_all(&mut *tenant)
        .await
        .map_err(error)?;
        drop(tenant);
        let mut facts = PageFacts::default();
        for (participant_id, clinic_id, zone, facilitators, share_check_ins, share_milestones) in
            groups
        {
            facts.groups.insert(
                participant_id,
                (
                    clinic_id,
                    zone,
                    facilitators,
                    share_check_ins,
                    share_milestones,
                ),
            );
        }
        // Each member's first partnership by group, as one member's own query found it.
        for (proposer, invitee) in partnerships {
            facts
                .partners
                .entry(proposer.clone())
                .or_insert_with(|| invitee.clone());
            facts.partners.entry(invitee).or_insert(proposer);
        }
        for (participant_id, goal_id, cadence, set_at) in goals {
            facts
                .goals
                .entry(participant_id)
                .or_default()
                .push(ActiveGoal {
                    goal_id,
                    cadence: cadence_from_text(&cadence),
                    set_at,
                });
        }
        for (participant_id, setback_id, visibility, at) in setbacks {
            facts
                .setbacks
                .entry(participant_id)
                .or_default()
                .push(RecentSetback {
                    setback_id,
                    visibility: visibility_from_text(&visibility),
                    at,
                });
        }
        for (participant_id, value, at) in milestones {
            facts
                .milestones
                .entry(participant_id)
                .or_default()
                .push((value, at));
        }
        for (participant_id, instrument, every_days, set_at, last_at) in measures {
            facts
                .measures
                .entry(participant_id)
                .or_default()
                .push(MeasureCadence {
                    instrument,
                    every_days: every_days.max(0).unsigned_abs(),
                    set_at,
                    last_at,
                });
        }
        for (participant_id, nudge_id) in acknowledged {
            facts
                .acknowledged
                .entry(participant_id)
                .or_default()
                .insert(nudge_id);
        }
        Ok(facts)
    }

    /// What the nudge policy needs to know of a member, from a page's facts; `None`
    /// for someone in no active group (nudges go to group members only) or in their
    /// clinic's quiet hours.
    fn situation(
        &self,
        participant_id: &str,
        journal: JournalFacts,
        now: Time,
        facts: &PageFacts,
        quiet: &HashMap<String, (i32, i32)>,
    ) -> Option<Situation> {
        let (clinic_id, zone, facilitator_ids, share_check_ins, share_milestones) =
            facts.groups.get(participant_id)?.clone();
        let clinic = ClinicSettings {
            quiet_hours: quiet.get(&clinic_id).and_then(|(start, end)| {
                QuietHours::new(start.max(&0).unsigned_abs(), end.max(&0).unsigned_abs()).ok()
            }),
        };
        let quiet_hours = clinic.quiet_hours_or(self.default_quiet_hours);
        let time_zone = time_zone(&zone);
        // Nothing is due in quiet hours (the policy says so too).
        if quiet_hours.contains_time(now, time_zone) {
            return None;
        }
        Some(Situation {
            now,
            time_zone,
            quiet_hours,
            last_check_in_at: journal.last_check_in_at,
            goals: facts.goals.get(participant_id).cloned().unwrap_or_default(),
            partner_id: facts.partners.get(participant_id).cloned(),
            facilitator_ids,
            consent: Consent {
                share_check_ins,
                share_milestones,
            },
            setbacks: facts
                .setbacks
                .get(participant_id)
                .cloned()
                .unwrap_or_default(),
            missed_sessions_in_a_row: journal.missed_sessions_in_a_row,
            last_missed_session: journal.last_missed_session,
            acknowledged: facts
                .acknowledged
                .get(participant_id)
                .cloned()
                .unwrap_or_default(),
            measures: facts
                .measures
                .get(participant_id)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Sends a due nudge unless the read model shows it sent (the journal refuses an id
    /// twice in any case, so a lagging read model repeats nothing).
    async fn nudge(
        &self,
        network: &str,
        participant_id: &str,
        nudge: DueNudge,
    ) -> Result<(), String> {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM accountability.nudges WHERE network = $1 AND participant_id = $2 AND nudge_id = $3",
        )
        .bind(network)
        .bind(participant_id)
        .bind(&nudge.nudge_id)
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(|error| error.to_string())?;
        if sent.is_some() {
            return Ok(());
        }
        let request_id = format!("pm:nudge-{}", nudge.nudge_id);
        let span = circle_service::loop_command_span("nudger", "SendNudge");
        nudger_failure_in(
            &span,
            self.commands
                .send_nudge(&process_manager(network), participant_id, nudge, request_id)
                .instrument(span.clone())
                .await,
        )
    }

    async fn day_milestones(
        &self,
        network: &str,
        participant_id: &str,
        started_at: Time,
        last_setback_at: Option<Time>,
        now: Time,
        facts: &PageFacts,
    ) -> Result<(), String> {
        let since = last_setback_at.unwrap_or(started_at);
        let days = (now - since).num_days().max(0) as u32;
        let due: Vec<i32> = DAY_MILESTONES
            .iter()
            .filter(|value| **value <= days)
            .map(|value| *value as i32)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let reached = facts.milestones.get(participant_id).map_or(0, |reached| {
            reached
                .iter()
                .filter(|(value, at)| due.contains(value) && *at >= since)
                .count()
        });
        if reached >= due.len() {
            return Ok(());
        }
        let request_id = format!("pm:days-{}-{days}", since.timestamp());
        let span = circle_service::loop_command_span("nudger", "RecordDayMilestones");
        nudger_failure_in(
            &span,
            self.commands
                .record_day_milestones(&process_manager(network), participant_id, now, request_id)
                .instrument(span.clone())
                .await,
        )
    }
}
