//! The sessions read model in schema `sessions`, projected from the SESSIONS stream.
//! Note texts and shares are personal data; they live only in `notes`,
//! `note_amendments` and `check_ins`.

use circle_eventstore::StoredCommit;
use circle_grpc::Role;
use circle_projection::{ApplyError, Projection};
use sqlx::PgConnection;

use crate::codec;
use crate::domain::{AttendanceStatus, Event, NoteKey, Origin, SessionState};

pub const SCHEMA: &str = "sessions";

pub struct ReadModel;

pub fn status_text(status: AttendanceStatus) -> &'static str {
    match status {
        AttendanceStatus::Present => "present",
        AttendanceStatus::Late => "late",
        AttendanceStatus::LeftEarly => "left-early",
        AttendanceStatus::Absent => "absent",
        AttendanceStatus::Excused => "excused",
    }
}

/// The inverse of [`status_text`]; `None` for a status this version does not know.
pub fn status_from_text(text: &str) -> Option<AttendanceStatus> {
    Some(match text {
        "present" => AttendanceStatus::Present,
        "late" => AttendanceStatus::Late,
        "left-early" => AttendanceStatus::LeftEarly,
        "absent" => AttendanceStatus::Absent,
        "excused" => AttendanceStatus::Excused,
        _ => return None,
    })
}

/// A session's state as the `state` column holds it; `None` for a state this
/// version does not know.
pub fn state_from_text(text: &str) -> Option<SessionState> {
    Some(match text {
        "scheduled" => SessionState::Scheduled,
        "started" => SessionState::Started,
        "closed" => SessionState::Closed,
        "cancelled" => SessionState::Cancelled,
        _ => return None,
    })
}

/// A session's origin as the `origin` column holds it (`ad-hoc`, else `schedule`).
pub fn origin_from_text(text: &str) -> Origin {
    if text == "ad-hoc" {
        Origin::AdHoc
    } else {
        Origin::Schedule
    }
}

pub fn note_key_text(note: &NoteKey) -> String {
    match note {
        NoteKey::Shared => String::new(),
        NoteKey::Member(participant_id) => participant_id.clone(),
    }
}

impl Projection for ReadModel {
    fn name(&self) -> &str {
        "sessions-read-model"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS sessions (
                network text NOT NULL,
                session_id text NOT NULL,
                group_id text NOT NULL,
                clinic_id text NOT NULL,
                starts_at timestamptz NOT NULL,
                duration_minutes integer NOT NULL,
                origin text NOT NULL,
                state text NOT NULL,
                cancel_reason text NOT NULL DEFAULT '',
                moved_by_staff boolean NOT NULL DEFAULT false,
                version bigint NOT NULL,
                PRIMARY KEY (network, session_id)
            )",
            "CREATE INDEX IF NOT EXISTS sessions_by_group ON sessions (network, group_id, starts_at)",
            "CREATE INDEX IF NOT EXISTS sessions_by_clinic ON sessions (network, clinic_id, starts_at)",
            "CREATE TABLE IF NOT EXISTS attendance (
                network text NOT NULL,
                session_id text NOT NULL,
                participant_id text NOT NULL,
                status text NOT NULL,
                minutes integer NOT NULL,
                version bigint NOT NULL,
                PRIMARY KEY (network, session_id, participant_id)
            )",
            "CREATE INDEX IF NOT EXISTS attendance_by_participant ON attendance (network, participant_id)",
            "CREATE TABLE IF NOT EXISTS check_ins (
                network text NOT NULL,
                session_id text NOT NULL,
                participant_id text NOT NULL,
                mood integer NOT NULL,
                craving integer NOT NULL,
                share text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (network, session_id, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS notes (
                network text NOT NULL,
                session_id text NOT NULL,
                note_key text NOT NULL,
                text text NOT NULL,
                signed boolean NOT NULL DEFAULT false,
                signed_by text NOT NULL DEFAULT '',
                signed_at timestamptz,
                PRIMARY KEY (network, session_id, note_key)
            )",
            "CREATE TABLE IF NOT EXISTS note_amendments (
                network text NOT NULL,
                session_id text NOT NULL,
                note_key text NOT NULL,
                version bigint NOT NULL,
                text text NOT NULL,
                staff_id text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (network, session_id, note_key, version)
            )",
        ]
    }

    /// 2: a move is the materialiser's only when a process manager made it (before, a
    /// client claiming the service role passed for it); older tables are rebuilt so
    /// such moves count as staff moves.
    fn shape_version(&self) -> u32 {
        2
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let events =
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?;
        let network = commit.commit.network.as_str();
        let id = commit.commit.aggregate_id.as_str();
        let version = commit.sequence as i64;
        let at = commit
            .commit
            .committed_at
            .and_then(codec::from_timestamp)
            .ok_or_else(|| ApplyError::Poison("commit without a valid time".into()))?;
        for event in events {
            match event {
                Event::SessionScheduled {
                    group_id,
                    clinic_id,
                    starts_at,
                    duration_minutes,
                    origin,
                } => {
                    sqlx::query(
                        "INSERT INTO sessions (network, session_id, group_id, clinic_id, starts_at, duration_minutes,
                            origin, state, version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'scheduled', $8)",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(group_id)
                    .bind(clinic_id)
                    .bind(starts_at)
                    .bind(duration_minutes as i32)
                    .bind(match origin {
                        Origin::Schedule => "schedule",
                        Origin::AdHoc => "ad-hoc",
                    })
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::SessionRescheduled {
                    starts_at,
                    duration_minutes,
                } => {
                    // A move made by a client (staff, or any client whatever role it
                    // claims) is theirs: the materialiser leaves it alone. Only the
                    // in-process materialiser records the process-manager role; its
                    // commits from before that role existed are known by their `pm:`
                    // request ids, which no client can send.
                    let by_staff = !by_process_manager(&commit.commit);
                    sqlx::query(
                        "UPDATE sessions SET starts_at = $3, duration_minutes = $4, version = $5,
                            moved_by_staff = moved_by_staff OR $6
                         WHERE network = $1 AND session_id = $2",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(starts_at)
                    .bind(duration_minutes as i32)
                    .bind(version)
                    .bind(by_staff)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::SessionCancelled { reason } => {
                    sqlx::query(
                        "UPDATE sessions SET state = 'cancelled', cancel_reason = $3, version = $4
                         WHERE network = $1 AND session_id = $2",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(reason)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::SessionStarted | Event::SessionClosed => {
                    let state = if event == Event::SessionStarted {
                        "started"
                    } else {
                        "closed"
                    };
                    sqlx::query("UPDATE sessions SET state = $3, version = $4 WHERE network = $1 AND session_id = $2")
                        .bind(network)
                        .bind(id)
                        .bind(state)
                        .bind(version)
                        .execute(&mut *connection)
                        .await?;
                }
                Event::AttendanceRecorded {
                    participant_id,
                    status,
                    minutes,
                } => {
                    sqlx::query(
                        "INSERT INTO attendance (network, session_id, participant_id, status, minutes, version)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (network, session_id, participant_id) DO UPDATE SET
                            status = EXCLUDED.status, minutes = EXCLUDED.minutes, version = EXCLUDED.version",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(participant_id)
                    .bind(status_text(status))
                    .bind(minutes as i32)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                    self.touch(connection, network, id, version).await?;
                }
                Event::SessionCheckInRecorded {
                    participant_id,
                    mood,
                    craving,
                    share,
                } => {
                    sqlx::query(
                        "INSERT INTO check_ins (network, session_id, participant_id, mood, craving, share, at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (network, session_id, participant_id) DO UPDATE SET
                            mood = EXCLUDED.mood, craving = EXCLUDED.craving, share = EXCLUDED.share, at = EXCLUDED.at",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(participant_id)
                    .bind(mood as i32)
                    .bind(craving as i32)
                    .bind(share)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                    self.touch(connection, network, id, version).await?;
                }
                Event::SharedNoteWritten { .. } | Event::MemberNoteWritten { .. } => {
                    let (note_key, text) = match event {
                        Event::MemberNoteWritten {
                            participant_id,
                            text,
                        } => (participant_id, text),
                        Event::SharedNoteWritten { text } => (String::new(), text),
                        _ => continue,
                    };
                    sqlx::query(
                        "INSERT INTO notes (network, session_id, note_key, text) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (network, session_id, note_key) DO UPDATE SET text = EXCLUDED.text",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(note_key)
                    .bind(text)
                    .execute(&mut *connection)
                    .await?;
                    self.touch(connection, network, id, version).await?;
                }
                Event::NoteSigned { note, staff_id } => {
                    sqlx::query(
                        "UPDATE notes SET signed = true, signed_by = $4, signed_at = $5
                         WHERE network = $1 AND session_id = $2 AND note_key = $3",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(note_key_text(&note))
                    .bind(staff_id)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                    self.touch(connection, network, id, version).await?;
                }
                Event::NoteAmended {
                    note,
                    text,
                    staff_id,
                } => {
                    sqlx::query(
                        "INSERT INTO note_amendments (network, session_id, note_key, version, text, staff_id, at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(note_key_text(&note))
                    .bind(version)
                    .bind(text)
                    .bind(staff_id)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                    self.touch(connection, network, id, version).await?;
                }
            }
        }
        Ok(())
    }
}

impl ReadModel {
    async fn touch(
        &self,
        connection: &mut PgConnection,
        network: &str,
        id: &str,
        version: i64,
    ) -> Result<(), ApplyError> {
        sqlx::query("UPDATE sessions SET version = $3 WHERE network = $1 AND session_id = $2")
            .bind(network)
            .bind(id)
            .bind(version)
            .execute(&mut *connection)
            .await?;
        Ok(())
    }
}

/// Whether a process manager made this commit: the in-process caller's role, or a
/// `pm:` request id (clients' request ids cannot take that form), which also marks the
/// commits process managers wrote before the role existed.
fn by_process_manager(commit: &circle_eventstore::wire::Commit) -> bool {
    commit.request_id.starts_with("pm:")
        || commit
            .actor
            .as_ref()
            .is_some_and(|actor| actor.role == Role::ProcessManager.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use circle_eventstore::wire;

    fn commit(request_id: &str, role: &str) -> wire::Commit {
        wire::Commit {
            request_id: request_id.into(),
            actor: Some(wire::Actor {
                role: role.into(),
                id: "sessions-materializer".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_materialisers_moves_are_known_old_and_new_and_clients_never_pass_for_it() {
        assert!(by_process_manager(&commit(
            "pm:reschedule-s-from-7",
            "process-manager"
        )));
        // Written before the process-manager role existed: role `service`, a `pm:` id.
        assert!(by_process_manager(&commit(
            "pm:reschedule-s-1796171400-90",
            "service"
        )));
        // A client claiming the service role (and the materialiser's name) moved it.
        assert!(!by_process_manager(&commit("5b2f0c1e-7a4d", "service")));
        assert!(!by_process_manager(&commit("5b2f0c1e-7a4d", "facilitator")));
    }
}
