//! The accountability read model in schema `accountability`, projected from the
//! ACCOUNTABILITY stream. Every check-in, encouragement and milestone gets a feed
//! position (its commit's stream sequence × 16 + its place in the commit), so the
//! live feed can resume exactly after any item. Texts are personal data and stay here.

use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, Projection};
use sqlx::PgConnection;

use crate::codec::{self, channel_text, level_text, visibility_text};
use crate::domain::journal::nudge_public_id;
use crate::domain::{Cadence, Event, Progress};

pub const SCHEMA: &str = "accountability";

pub struct ReadModel;

pub fn cadence_text(cadence: Cadence) -> &'static str {
    match cadence {
        Cadence::Daily => "daily",
        Cadence::Weekly => "weekly",
        Cadence::PerSession => "per-session",
    }
}

/// The read model's text back to a cadence (an unknown text, which this projection
/// never writes, reads as per-session: it is never nudged on a clock).
pub fn cadence_from_text(text: &str) -> Cadence {
    match text {
        "daily" => Cadence::Daily,
        "weekly" => Cadence::Weekly,
        _ => Cadence::PerSession,
    }
}

pub fn progress_text(progress: Progress) -> &'static str {
    match progress {
        Progress::OnTrack => "on-track",
        Progress::Struggling => "struggling",
        Progress::Setback => "setback",
    }
}

impl Projection for ReadModel {
    fn name(&self) -> &str {
        "accountability-read-model"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS journals (
                network text NOT NULL,
                participant_id text NOT NULL,
                started_at timestamptz NOT NULL,
                last_check_in_at timestamptz,
                last_progress text NOT NULL DEFAULT '',
                last_craving integer,
                last_setback_at timestamptz,
                check_in_days date[] NOT NULL DEFAULT '{}',
                goals_completed integer NOT NULL DEFAULT 0,
                sessions_attended integer NOT NULL DEFAULT 0,
                missed_in_a_row integer NOT NULL DEFAULT 0,
                last_missed_session text NOT NULL DEFAULT '',
                PRIMARY KEY (network, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS goals (
                network text NOT NULL,
                participant_id text NOT NULL,
                goal_id text NOT NULL,
                text text NOT NULL,
                cadence text NOT NULL,
                status text NOT NULL,
                set_at timestamptz NOT NULL,
                PRIMARY KEY (network, participant_id, goal_id)
            )",
            // The timeline's goal items: one row per goal event, never updated, with
            // the goal's text as of that event.
            "CREATE TABLE IF NOT EXISTS goal_history (
                network text NOT NULL,
                participant_id text NOT NULL,
                position bigint NOT NULL,
                goal_id text NOT NULL,
                kind text NOT NULL,
                text text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (network, participant_id, position)
            )",
            "CREATE TABLE IF NOT EXISTS check_ins (
                network text NOT NULL,
                participant_id text NOT NULL,
                check_in_id text NOT NULL,
                goal_id text NOT NULL,
                progress text NOT NULL,
                mood integer NOT NULL,
                craving integer NOT NULL,
                text text NOT NULL,
                visibility text NOT NULL,
                at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (network, participant_id, check_in_id)
            )",
            "CREATE INDEX IF NOT EXISTS check_ins_by_position ON check_ins (network, position)",
            // A member's latest check-in of each visibility (the board) without reading
            // them all.
            "CREATE INDEX IF NOT EXISTS check_ins_latest_by_visibility ON check_ins (network, participant_id, visibility, position DESC)",
            "CREATE TABLE IF NOT EXISTS encouragements (
                network text NOT NULL,
                participant_id text NOT NULL,
                check_in_id text NOT NULL,
                from_participant_id text NOT NULL,
                reaction text NOT NULL,
                message text NOT NULL,
                at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (network, participant_id, check_in_id, from_participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS setbacks (
                network text NOT NULL,
                participant_id text NOT NULL,
                setback_id text NOT NULL,
                text text NOT NULL,
                visibility text NOT NULL,
                at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (network, participant_id, setback_id)
            )",
            "CREATE TABLE IF NOT EXISTS milestones (
                network text NOT NULL,
                participant_id text NOT NULL,
                kind text NOT NULL,
                value integer NOT NULL,
                at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (network, participant_id, position)
            )",
            "CREATE TABLE IF NOT EXISTS nudges (
                network text NOT NULL,
                participant_id text NOT NULL,
                nudge_id text NOT NULL,
                level text NOT NULL,
                reason text NOT NULL,
                goal_id text NOT NULL,
                recipient_id text NOT NULL,
                due_at timestamptz NOT NULL,
                at timestamptz NOT NULL,
                public_id text NOT NULL,
                position bigint NOT NULL,
                acknowledged_at timestamptz,
                delivery text NOT NULL DEFAULT 'pending',
                delivery_channel text NOT NULL DEFAULT '',
                delivery_at timestamptz,
                PRIMARY KEY (network, participant_id, nudge_id)
            )",
            "CREATE INDEX IF NOT EXISTS nudges_by_recipient ON nudges (network, level, recipient_id, position)",
            "CREATE TABLE IF NOT EXISTS measurements (
                network text NOT NULL,
                participant_id text NOT NULL,
                measurement_id text NOT NULL,
                instrument text NOT NULL,
                version integer NOT NULL,
                answers text NOT NULL,
                safety text[] NOT NULL,
                at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (network, participant_id, measurement_id)
            )",
            "CREATE TABLE IF NOT EXISTS measurement_scores (
                network text NOT NULL,
                participant_id text NOT NULL,
                measurement_id text NOT NULL,
                instrument text NOT NULL,
                scale text NOT NULL,
                place integer NOT NULL,
                score integer NOT NULL,
                band text NOT NULL,
                significant boolean NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (network, participant_id, measurement_id, scale)
            )",
            "CREATE TABLE IF NOT EXISTS measurement_cadences (
                network text NOT NULL,
                participant_id text NOT NULL,
                instrument text NOT NULL,
                every_days integer NOT NULL,
                set_at timestamptz NOT NULL,
                PRIMARY KEY (network, participant_id, instrument)
            )",
            "CREATE TABLE IF NOT EXISTS sessions_seen (
                network text NOT NULL,
                participant_id text NOT NULL,
                session_id text NOT NULL,
                attended boolean NOT NULL,
                excused boolean NOT NULL DEFAULT false,
                PRIMARY KEY (network, participant_id, session_id)
            )",
            "CREATE TABLE IF NOT EXISTS partnerships (
                network text NOT NULL,
                partnership_id text NOT NULL,
                group_id text NOT NULL,
                proposer_id text NOT NULL,
                invitee_id text NOT NULL,
                state text NOT NULL,
                PRIMARY KEY (network, partnership_id)
            )",
            "CREATE TABLE IF NOT EXISTS quiet_hours (
                network text NOT NULL,
                clinic_id text NOT NULL,
                start_minute integer NOT NULL,
                end_minute integer NOT NULL,
                PRIMARY KEY (network, clinic_id)
            )",
        ]
    }

    /// 2: `goal_history` (the timeline's goal items) was added; 3: nudges keep their
    /// public id, position, acknowledgement and delivery, and setbacks a position (a
    /// timeline orders the items of one time as they were recorded); outcome measures
    /// (`measurements`, `measurement_scores`, `measurement_cadences`); 4: a score's
    /// place among its measure's scales (a read shows them in the instrument's order).
    /// Older read models are rebuilt so the new columns hold the past too.
    fn shape_version(&self) -> u32 {
        4
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let events =
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?;
        let at =
            codec::commit_time(commit).map_err(|error| ApplyError::Poison(error.to_string()))?;
        let network = commit.commit.network.as_str();
        let id = commit.commit.aggregate_id.as_str();
        let aggregate_type = commit.commit.aggregate_type.as_str();
        if aggregate_type == "journal" {
            sqlx::query("INSERT INTO journals (network, participant_id, started_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(network)
                .bind(id)
                .bind(at)
                .execute(&mut *connection)
                .await?;
        }
        for (index, event) in events.into_iter().enumerate() {
            let position = (commit.sequence * 16 + index as u64) as i64;
            let run = |sql: &'static str| sqlx::query(sql).bind(network).bind(id);
            match event {
                Event::GoalSet {
                    goal_id,
                    text,
                    cadence,
                } => {
                    run("INSERT INTO goals (network, participant_id, goal_id, text, cadence, status, set_at) VALUES ($1, $2, $3, $4, $5, 'active', $6)")
                        .bind(&goal_id)
                        .bind(&text)
                        .bind(cadence_text(cadence))
                        .bind(at)
                        .execute(&mut *connection)
                        .await?;
                    goal_history(connection, network, id, position, &goal_id, "goal-set", at)
                        .await?;
                }
                Event::GoalRevised {
                    goal_id,
                    text,
                    cadence,
                } => {
                    run("UPDATE goals SET text = $4, cadence = $5 WHERE network = $1 AND participant_id = $2 AND goal_id = $3")
                        .bind(&goal_id)
                        .bind(text)
                        .bind(cadence_text(cadence))
                        .execute(&mut *connection)
                        .await?;
                    goal_history(
                        connection,
                        network,
                        id,
                        position,
                        &goal_id,
                        "goal-revised",
                        at,
                    )
                    .await?;
                }
                Event::GoalCompleted { goal_id } => {
                    run("UPDATE goals SET status = 'completed' WHERE network = $1 AND participant_id = $2 AND goal_id = $3")
                        .bind(&goal_id)
                        .execute(&mut *connection)
                        .await?;
                    goal_history(
                        connection,
                        network,
                        id,
                        position,
                        &goal_id,
                        "goal-completed",
                        at,
                    )
                    .await?;
                    run("UPDATE journals SET goals_completed = goals_completed + 1 WHERE network = $1 AND participant_id = $2")
                        .execute(&mut *connection)
                        .await?;
                }
                Event::GoalAbandoned { goal_id } => {
                    run("UPDATE goals SET status = 'abandoned' WHERE network = $1 AND participant_id = $2 AND goal_id = $3")
                        .bind(&goal_id)
                        .execute(&mut *connection)
                        .await?;
                    goal_history(
                        connection,
                        network,
                        id,
                        position,
                        &goal_id,
                        "goal-abandoned",
                        at,
                    )
                    .await?;
                }
                Event::CheckInSubmitted {
                    check_in_id,
                    goal_id,
                    progress,
                    mood,
                    craving,
                    text,
                    visibility,
                    ..
                } => {
                    run("INSERT INTO check_ins (network, participant_id, check_in_id, goal_id, progress, mood, craving, text, visibility, at, position)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                        .bind(check_in_id)
                        .bind(goal_id.unwrap_or_default())
                        .bind(progress_text(progress))
                        .bind(mood as i32)
                        .bind(craving as i32)
                        .bind(text)
                        .bind(visibility_text(visibility))
                        .bind(at)
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                    run("UPDATE journals SET last_check_in_at = $3, last_progress = $4, last_craving = $5,
                            check_in_days = CASE WHEN $6 = ANY(check_in_days) THEN check_in_days ELSE array_append(check_in_days, $6) END
                         WHERE network = $1 AND participant_id = $2")
                        .bind(at)
                        .bind(progress_text(progress))
                        .bind(craving as i32)
                        .bind(at.date_naive())
                        .execute(&mut *connection)
                        .await?;
                }
                Event::EncouragementReceived {
                    check_in_id,
                    from_participant_id,
                    reaction,
                    message,
                } => {
                    run("INSERT INTO encouragements (network, participant_id, check_in_id, from_participant_id, reaction, message, at, position)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(check_in_id)
                        .bind(from_participant_id)
                        .bind(reaction)
                        .bind(message)
                        .bind(at)
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::SetbackReported {
                    setback_id,
                    text,
                    visibility,
                } => {
                    run("INSERT INTO setbacks (network, participant_id, setback_id, text, visibility, at, position) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(setback_id)
                        .bind(text)
                        .bind(visibility_text(visibility))
                        .bind(at)
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                    run("UPDATE journals SET last_setback_at = $3 WHERE network = $1 AND participant_id = $2")
                        .bind(at)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::MilestoneReached { kind, value } => {
                    run("INSERT INTO milestones (network, participant_id, kind, value, at, position) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(kind)
                        .bind(value as i32)
                        .bind(at)
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::NudgeSent {
                    nudge_id,
                    level,
                    reason,
                    goal_id,
                    recipient_id,
                    due_at,
                } => {
                    run("INSERT INTO nudges (network, participant_id, nudge_id, level, reason, goal_id, recipient_id, due_at, at, public_id, position)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                        .bind(&nudge_id)
                        .bind(level_text(level))
                        .bind(reason)
                        .bind(goal_id.unwrap_or_default())
                        .bind(recipient_id.unwrap_or_default())
                        .bind(due_at)
                        .bind(at)
                        .bind(nudge_public_id(&nudge_id))
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::MeasurementCadenceSet {
                    instrument,
                    every_days,
                } => {
                    if every_days == 0 {
                        run("DELETE FROM measurement_cadences WHERE network = $1 AND participant_id = $2 AND instrument = $3")
                            .bind(instrument)
                            .execute(&mut *connection)
                            .await?;
                    } else {
                        run("INSERT INTO measurement_cadences (network, participant_id, instrument, every_days, set_at) VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (network, participant_id, instrument) DO UPDATE SET every_days = EXCLUDED.every_days, set_at = EXCLUDED.set_at")
                            .bind(instrument)
                            .bind(i32::try_from(every_days).unwrap_or(i32::MAX))
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                    }
                }
                Event::MeasurementRecorded {
                    measurement_id,
                    instrument,
                    version,
                    answers,
                    scores,
                    safety,
                } => {
                    run("INSERT INTO measurements (network, participant_id, measurement_id, instrument, version, answers, safety, at, position)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                        .bind(&measurement_id)
                        .bind(&instrument)
                        .bind(i32::try_from(version).unwrap_or(i32::MAX))
                        .bind(answers)
                        .bind(safety)
                        .bind(at)
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                    for (place, score) in scores.into_iter().enumerate() {
                        run("INSERT INTO measurement_scores (network, participant_id, measurement_id, instrument, scale, place, score, band, significant, at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                            .bind(&measurement_id)
                            .bind(&instrument)
                            .bind(score.scale)
                            .bind(i32::try_from(place).unwrap_or(i32::MAX))
                            .bind(i32::try_from(score.score).unwrap_or(i32::MAX))
                            .bind(score.band)
                            .bind(score.significant)
                            .bind(at)
                            .execute(&mut *connection)
                            .await?;
                    }
                }
                Event::NudgeAcknowledged { nudge_id } => {
                    run(
                        "UPDATE nudges SET acknowledged_at = coalesce(acknowledged_at, $4)
                         WHERE network = $1 AND participant_id = $2 AND nudge_id = $3",
                    )
                    .bind(nudge_id)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::NudgeDeliveryRecorded {
                    nudge_id,
                    delivered,
                    channel,
                } => {
                    run(
                        "UPDATE nudges SET delivery = $4, delivery_channel = $5, delivery_at = $6
                         WHERE network = $1 AND participant_id = $2 AND nudge_id = $3",
                    )
                    .bind(nudge_id)
                    .bind(if delivered { "delivered" } else { "failed" })
                    .bind(channel_text(channel))
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::SessionAttended {
                    session_id,
                    attended,
                    excused,
                } => {
                    // As the journal counts: an absence corrected to excused is taken back.
                    let before: Option<(bool, bool)> = sqlx::query_as(
                        "SELECT attended, excused FROM sessions_seen WHERE network = $1 AND participant_id = $2 AND session_id = $3",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(&session_id)
                    .fetch_optional(&mut *connection)
                    .await?;
                    let was_missed = before == Some((false, false));
                    run("INSERT INTO sessions_seen (network, participant_id, session_id, attended, excused) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (network, participant_id, session_id) DO UPDATE SET attended = EXCLUDED.attended, excused = EXCLUDED.excused")
                        .bind(&session_id)
                        .bind(attended)
                        .bind(excused)
                        .execute(&mut *connection)
                        .await?;
                    run("UPDATE journals SET
                            sessions_attended = (SELECT count(*) FROM sessions_seen s
                                WHERE s.network = $1 AND s.participant_id = $2 AND s.attended),
                            missed_in_a_row = CASE
                                WHEN $3 THEN 0
                                WHEN $5 THEN CASE WHEN $6 THEN greatest(missed_in_a_row - 1, 0) ELSE missed_in_a_row END
                                ELSE missed_in_a_row + 1 END,
                            last_missed_session = CASE WHEN $3 OR $5 THEN last_missed_session ELSE $4 END
                         WHERE network = $1 AND participant_id = $2")
                    .bind(attended)
                    .bind(session_id)
                    .bind(excused)
                    .bind(was_missed)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::PartnershipProposed {
                    group_id,
                    proposer_id,
                    invitee_id,
                } => {
                    run("INSERT INTO partnerships (network, partnership_id, group_id, proposer_id, invitee_id, state)
                         VALUES ($1, $2, $3, $4, $5, 'proposed')
                         ON CONFLICT (network, partnership_id) DO UPDATE SET group_id = EXCLUDED.group_id,
                            proposer_id = EXCLUDED.proposer_id, invitee_id = EXCLUDED.invitee_id, state = 'proposed'")
                        .bind(group_id)
                        .bind(proposer_id)
                        .bind(invitee_id)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::PartnershipAccepted | Event::PartnershipEnded { .. } => {
                    let state = if event == Event::PartnershipAccepted {
                        "active"
                    } else {
                        "ended"
                    };
                    run("UPDATE partnerships SET state = $3 WHERE network = $1 AND partnership_id = $2")
                        .bind(state)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::QuietHoursSet {
                    start_minute,
                    end_minute,
                } => {
                    run("INSERT INTO quiet_hours (network, clinic_id, start_minute, end_minute) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (network, clinic_id) DO UPDATE SET start_minute = EXCLUDED.start_minute, end_minute = EXCLUDED.end_minute")
                        .bind(start_minute as i32)
                        .bind(end_minute as i32)
                        .execute(&mut *connection)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Appends a goal event to the timeline's history with the goal's text as the `goals`
/// row holds it after the event (so a later revision leaves this row as it was).
async fn goal_history(
    connection: &mut PgConnection,
    network: &str,
    participant_id: &str,
    position: i64,
    goal_id: &str,
    kind: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO goal_history (network, participant_id, position, goal_id, kind, text, at)
         SELECT network, participant_id, $3, goal_id, $5, text, $6 FROM goals
         WHERE network = $1 AND participant_id = $2 AND goal_id = $4",
    )
    .bind(network)
    .bind(participant_id)
    .bind(position)
    .bind(goal_id)
    .bind(kind)
    .bind(at)
    .execute(connection)
    .await?;
    Ok(())
}
