//! The schedule materialiser: turns each group's schedule (as the roster projection
//! knows it) into sessions, from `lookback_days` ago to `horizon_days` ahead, and
//! cancels generated sessions that a schedule change or an archived group left behind.
//! Session ids derive from the group and the local date, and each command's request
//! id from the session id, so running it again — after a restart, on two replicas —
//! creates nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use circle_calendar::time_zone;
use circle_eventstore::{CommitMeta, ExecuteError};
use prost::Message;
use sqlx::PgPool;

use crate::commands::{CommandError, Commands};
use crate::domain::{DomainError, Origin, SessionCommand, Time};

pub struct Materializer {
    pub pool: PgPool,
    pub commands: Arc<Commands>,
    pub horizon: chrono::Duration,
    pub lookback: chrono::Duration,
}

/// A generated session's id: stable for a group and a local date.
pub fn session_id(network: &str, group_id: &str, date: chrono::NaiveDate) -> String {
    let seed = format!("{network}/{group_id}/{date}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
}

fn meta(request_id: String) -> CommitMeta {
    CommitMeta {
        request_id,
        actor_role: "service".into(),
        actor_id: "sessions-materializer".into(),
    }
}

type GroupRow = (String, String, String, String, Option<Vec<u8>>, bool);

impl Materializer {
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.once().await {
                tracing::warn!(%error, "materialising sessions failed; will retry");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One pass over every group.
    pub async fn once(&self) -> Result<(), String> {
        let groups: Vec<GroupRow> = sqlx::query_as(
            "SELECT network, group_id, clinic_id, time_zone, schedule, archived FROM sessions_roster.groups",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| error.to_string())?;
        let now = self.commands.clock.now();
        for (network, group_id, clinic_id, zone, schedule, archived) in groups {
            let schedule = schedule
                .as_deref()
                .and_then(|bytes| {
                    circle_proto::enrollment::events::v1::Schedule::decode(bytes).ok()
                })
                .and_then(|schedule| circle_enrollment_events::schedule(&schedule).ok());
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
                    self.ensure(
                        &network,
                        &group_id,
                        &clinic_id,
                        &session_id,
                        starts_at,
                        schedule.duration_minutes,
                    )
                    .await?;
                }
            }
            self.cancel_leftovers(&network, &group_id, &desired, now, archived)
                .await?;
        }
        Ok(())
    }

    async fn ensure(
        &self,
        network: &str,
        group_id: &str,
        clinic_id: &str,
        session_id: &str,
        starts_at: Time,
        duration_minutes: u32,
    ) -> Result<(), String> {
        let known: Option<(String, String, Time, i32, bool)> = sqlx::query_as(
            "SELECT state, origin, starts_at, duration_minutes, moved_by_staff FROM sessions.sessions
             WHERE network = $1 AND session_id = $2",
        )
        .bind(network)
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| error.to_string())?;
        if let Some((state, origin, known_start, known_duration, moved_by_staff)) = known {
            // A schedule change of time or length moves the generated sessions still to
            // come — but not one staff moved themselves.
            let differs = known_start != starts_at || known_duration != duration_minutes as i32;
            if differs
                && state == "scheduled"
                && origin == "schedule"
                && !moved_by_staff
                && known_start > self.commands.clock.now()
            {
                let command = SessionCommand::Reschedule {
                    starts_at,
                    duration_minutes: Some(duration_minutes),
                };
                let request_id = format!(
                    "pm:reschedule-{session_id}-{}-{duration_minutes}",
                    starts_at.timestamp()
                );
                match self
                    .commands
                    .session(network, None, session_id, &meta(request_id), None, command)
                    .await
                {
                    Ok(_) | Err(ExecuteError::Rejected(_)) => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
            return Ok(());
        }
        let command = SessionCommand::Schedule {
            group_id: group_id.to_owned(),
            clinic_id: clinic_id.to_owned(),
            starts_at,
            duration_minutes,
            origin: Origin::Schedule,
        };
        match self
            .commands
            .session(
                network,
                None,
                session_id,
                &meta(format!("pm:materialize-{session_id}")),
                None,
                command,
            )
            .await
        {
            Ok(_)
            | Err(ExecuteError::Rejected(CommandError::Domain(DomainError::SessionExists))) => {
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Cancels generated sessions still scheduled in the future that the schedule no
    /// longer produces.
    async fn cancel_leftovers(
        &self,
        network: &str,
        group_id: &str,
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
        .bind(network)
        .bind(group_id)
        .bind(now)
        .bind(horizon_end)
        .fetch_all(&self.pool)
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
            let command = SessionCommand::Cancel {
                reason: reason.into(),
            };
            match self
                .commands
                .session(
                    network,
                    None,
                    &session_id,
                    &meta(format!("pm:unschedule-{session_id}")),
                    None,
                    command,
                )
                .await
            {
                Ok(_) | Err(ExecuteError::Rejected(_)) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }
}
