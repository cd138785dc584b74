//! The schedule materialiser: turns each group's schedule (as the roster projection
//! knows it) into sessions, from `lookback_days` ago to `horizon_days` ahead, and
//! cancels generated sessions that a schedule change or an archived group left behind.
//! Session ids derive from the group and the local date, and each command's request
//! id from the session id, so running it again — after a restart, on two replicas —
//! creates nothing twice. It takes the application's process-manager steps
//! ([`crate::app::Commands`]'s `materialize_session`, `move_generated_session` and
//! `cancel_generated_session`, each under its own row, `access::step_rule`) as the
//! service's process manager ([`Caller::process_manager`]); the steps name their
//! request ids after the session (and the version a move was decided from).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use circle_calendar::time_zone;
use circle_grpc::{ApiError, Caller};
use circle_names::{GroupName, Id, SessionName};
use prost::Message;
use sqlx::PgPool;
use tracing::Instrument as _;

use crate::app::Commands;
use crate::app::commands::StepError;
use crate::domain::Time;

pub struct Materializer {
    pub pool: PgPool,
    pub commands: Arc<Commands>,
    pub horizon: chrono::Duration,
    pub lookback: chrono::Duration,
}

/// A generated session's id: stable for a group and a local date.
pub fn session_id(network: &str, group_id: &str, date: chrono::NaiveDate) -> String {
    circle_names::Id::derived(&format!("{network}/{group_id}/{date}")).into_string()
}

/// Who the materialiser acts as: the service's process manager, an in-process caller
/// no client can claim to be (whatever role a client states).
fn materializer(network: &str) -> Caller {
    Caller::process_manager(network, "sessions-materializer")
}

/// A command's error as the pass reports it.
fn failed(error: ApiError) -> String {
    format!("{}: {}", error.reason, error.message)
}

/// What the pass does with a step's outcome: a step the session or group moved on
/// from since the pass read it no longer applies (a later pass decides again); any
/// other failure fails the pass, retried on the next. A refusal by the access table
/// is a bug (only this process manager takes these steps), logged as one.
/// [`stepped`], marking the step's span failed when it failed.
fn stepped_in(span: &tracing::Span, outcome: Result<(), StepError>) -> Result<(), String> {
    let stepped = stepped(outcome);
    if stepped.is_err() {
        circle_service::failed(span);
    }
    stepped
}

fn stepped(outcome: Result<(), StepError>) -> Result<(), String> {
    match outcome {
        Ok(()) => Ok(()),
        Err(StepError::MovedOn(reason)) => {
            tracing::debug!(reason = reason.reason, "step no longer applies; skipped");
            Ok(())
        }
        Err(StepError::Refused(refusal)) => {
            tracing::error!(
                reason = refusal.reason,
                "materialiser step refused by the access table"
            );
            Err(failed(refusal))
        }
        Err(StepError::Failed(error)) => Err(failed(error)),
    }
}

/// A group's name from its roster row (every id was valid when enrollment took it).
fn group_name(network: &str, clinic_id: &str, group_id: &str) -> Result<GroupName, String> {
    let id = |value: &str| Id::parse(value).map_err(|error| format!("{value:?}: {error}"));
    Ok(GroupName {
        network: id(network)?,
        clinic: id(clinic_id)?,
        group: id(group_id)?,
    })
}

fn session_name(group: &GroupName, session_id: &str) -> Result<SessionName, String> {
    let id = Id::parse(session_id).map_err(|error| format!("{session_id:?}: {error}"))?;
    Ok(group.session(id))
}

type GroupRow = (String, String, String, String, Option<Vec<u8>>, bool);

/// What a pass found that needs someone's attention.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Groups (network, group id) whose recorded schedule this service cannot read
    /// (say, written by a newer enrollment service). Their sessions are left exactly
    /// as they are: an unreadable schedule is not "no schedule".
    pub unreadable_schedules: Vec<(String, String)>,
}

/// A group's schedule as the roster recorded it.
enum RecordedSchedule {
    /// The group has no schedule (or is archived): no generated session is wanted.
    None,
    Readable(circle_calendar::Schedule),
    Unreadable(String),
}

fn recorded_schedule(bytes: Option<&[u8]>) -> RecordedSchedule {
    let Some(bytes) = bytes else {
        return RecordedSchedule::None;
    };
    match circle_proto::enrollment::events::v1::Schedule::decode(bytes) {
        Err(error) => RecordedSchedule::Unreadable(error.to_string()),
        Ok(schedule) => match circle_enrollment_events::schedule(&schedule) {
            Ok(schedule) => RecordedSchedule::Readable(schedule),
            Err(error) => RecordedSchedule::Unreadable(error.to_string()),
        },
    }
}

impl Materializer {
    pub async fn run(
        self,
        poll: Duration,
        mut lease: circle_projection::Lease,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        // Reported once when a group's schedule becomes unreadable, not on every pass.
        let mut unreadable = BTreeSet::new();
        loop {
            // One replica at a time materialises.
            if !lease.wait_for_turn(&mut shutdown).await {
                break;
            }
            let pass = circle_service::loop_pass_span(crate::SERVICE, "materializer");
            let outcome = self.once().instrument(pass.clone()).await;
            if outcome.is_err() {
                circle_service::failed(&pass);
            }
            match outcome {
                Ok(done) => {
                    let now_unreadable: BTreeSet<_> =
                        done.unreadable_schedules.into_iter().collect();
                    for (network, group_id) in now_unreadable.difference(&unreadable) {
                        tracing::error!(
                            %network,
                            %group_id,
                            "the group's schedule cannot be read; its sessions are left as they are"
                        );
                    }
                    unreadable = now_unreadable;
                }
                Err(error) => {
                    tracing::warn!(parent: &pass, %error, "materialising sessions failed; will retry")
                }
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

    /// One pass over every group, network by network (the tenant walls show one
    /// network's rows at a time; the networks are those the roster has seen).
    pub async fn once(&self) -> Result<Pass, String> {
        let networks = circle_service::networks(&self.pool, crate::roster::SCHEMA)
            .await
            .map_err(|error| error.to_string())?;
        let mut pass = Pass::default();
        // One network's failure does not hold back the others; the pass still reports
        // it.
        let mut failed = None;
        for network in networks {
            if let Err(error) = self.network_once(&network, &mut pass).await {
                tracing::warn!(%network, %error, "a network's sessions were not materialised");
                failed.get_or_insert(error);
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(pass),
        }
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

    /// One pass over the groups of one network.
    async fn network_once(&self, network: &str, pass: &mut Pass) -> Result<(), String> {
        let groups: Vec<GroupRow> = sqlx::query_as(
            "SELECT network, group_id, clinic_id, time_zone, schedule, archived FROM sessions_roster.groups
             WHERE network = $1",
        )
        .bind(network)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(|error| error.to_string())?;
        let now = self.commands.now();
        for (network, group_id, clinic_id, zone, schedule, archived) in groups {
            let schedule = match recorded_schedule(schedule.as_deref()) {
                RecordedSchedule::Unreadable(reason) if !archived => {
                    tracing::debug!(%network, %group_id, %reason, "unreadable schedule");
                    pass.unreadable_schedules.push((network, group_id));
                    continue;
                }
                RecordedSchedule::Readable(schedule) => Some(schedule),
                RecordedSchedule::None | RecordedSchedule::Unreadable(_) => None,
            };
            let group = group_name(&network, &clinic_id, &group_id)?;
            let mut desired = BTreeSet::new();
            if let (Some(schedule), false) = (&schedule, archived) {
                let tz = time_zone(&zone);
                let from = (now - self.lookback)
                    .with_timezone(&tz)
                    .date_naive()
                    .max(schedule.start_date);
                let to = (now + self.horizon).with_timezone(&tz).date_naive();
                for (date, starts_at) in schedule.occurrences(tz, from, to) {
                    let session_id = session_id(&network, &group_id, date);
                    desired.insert(session_id.clone());
                    self.ensure(&group, &session_id, starts_at, schedule.duration_minutes)
                        .await?;
                }
            }
            self.cancel_leftovers(&group, &desired, now, archived)
                .await?;
        }
        Ok(())
    }

    async fn ensure(
        &self,
        group: &GroupName,
        session_id: &str,
        starts_at: Time,
        duration_minutes: u32,
    ) -> Result<(), String> {
        let network = group.network.as_str();
        let caller = materializer(network);
        let name = session_name(group, session_id)?;
        let known: Option<(String, String, Time, i32, bool, i64)> = sqlx::query_as(
            "SELECT state, origin, starts_at, duration_minutes, moved_by_staff, version FROM sessions.sessions
             WHERE network = $1 AND session_id = $2",
        )
        .bind(network)
        .bind(session_id)
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(|error| error.to_string())?;
        if let Some((state, origin, known_start, known_duration, moved_by_staff, version)) = known {
            // A schedule change of time or length moves the generated sessions still to
            // come — but not one staff moved themselves.
            let differs = known_start != starts_at || known_duration != duration_minutes as i32;
            if differs
                && state == "scheduled"
                && origin == "schedule"
                && !moved_by_staff
                && known_start > self.commands.now()
            {
                // One move per version of the session it was decided from: a retry of
                // this decision is answered from the log, while a later schedule change
                // (even back to an earlier time) is a new decision with a new id
                // (`pm:reschedule-<session>-from-<version>`). The read model may lag
                // behind the log: the move is made only while the session is still at
                // the version it was decided from. A staff move the read model does not
                // show yet makes it moved on (skipped), and a later pass decides again
                // from the row that shows the move.
                let span =
                    circle_service::loop_command_span("materializer", "MoveGeneratedSession");
                let moved = self
                    .commands
                    .move_generated_session(&caller, name, starts_at, duration_minutes, version)
                    .instrument(span.clone())
                    .await;
                stepped_in(&span, moved)?;
            }
            return Ok(());
        }
        // Already there; or the group was archived (or is gone) since this pass read
        // it, and a later pass cancels what it left: moved on.
        let span = circle_service::loop_command_span("materializer", "MaterializeSession");
        let materialized = self
            .commands
            .materialize_session(&caller, group, name.session, starts_at, duration_minutes)
            .instrument(span.clone())
            .await;
        stepped_in(&span, materialized)
    }

    /// Cancels generated sessions still scheduled in the future that the schedule no
    /// longer produces.
    async fn cancel_leftovers(
        &self,
        group: &GroupName,
        desired: &BTreeSet<String>,
        now: Time,
        archived: bool,
    ) -> Result<(), String> {
        let horizon_end = now + self.horizon;
        let scheduled: Vec<(String, Time)> = sqlx::query_as(
            "SELECT session_id, starts_at FROM sessions.sessions
             WHERE network = $1 AND group_id = $2 AND origin = 'schedule' AND state = 'scheduled'
               AND starts_at > $3 AND starts_at <= $4",
        )
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .bind(now)
        .bind(horizon_end)
        .fetch_all(&mut *self.tenant(group.network.as_str()).await?)
        .await
        .map_err(|error| error.to_string())?;
        for (session_id, _) in scheduled
            .into_iter()
            .filter(|(id, _)| !desired.contains(id))
        {
            let reason = if archived {
                "the group was archived"
            } else {
                "the group's schedule changed"
            };
            let name = session_name(group, &session_id)?;
            let span = circle_service::loop_command_span("materializer", "CancelGeneratedSession");
            let cancelled = self
                .commands
                .cancel_generated_session(&materializer(group.network.as_str()), name, reason)
                .instrument(span.clone())
                .await;
            stepped_in(&span, cancelled)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Generated sessions already in the log are found again by their id: the
    /// derivation (UUIDv5 of network, group and local date) never changes.
    #[test]
    fn a_generated_sessions_id_stays_as_it_was() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("a date");
        assert_eq!(
            super::session_id("acme", "tue-evening", date),
            "3d69a33c-d79a-5a6e-a901-96aca5a345ec"
        );
    }
}
