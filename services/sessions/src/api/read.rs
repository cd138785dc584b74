//! Queries, answered from the sessions read model and the roster projection.

use std::collections::BTreeMap;

use circle_calendar::time_zone;
use circle_grpc::{ApiError, Violations, authorize, authorize_self_or_staff, owned, roles};
use circle_proto::sessions::v1 as pb;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use tonic::{Code, Request};

use super::{
    ApiResult, CLINIC, GROUP, PARTICIPANT, SESSION, STAFF_MEMBER, SessionsApi, caller,
    database_error, note_name, participant_name, session_name,
};
use crate::codec;
use crate::domain::Time;

/// How far back and ahead of today a billing export's dates may be.
pub const BILLING_YEARS_BACK: u32 = 10;
pub const BILLING_YEARS_AHEAD: u32 = 1;

const SESSION_COLUMNS: &str = "s.network, s.session_id, s.group_id, s.clinic_id, s.starts_at, s.duration_minutes, s.origin, s.state, s.cancel_reason, s.version";

fn session_from_row(row: &PgRow) -> Result<pb::Session, sqlx::Error> {
    let network: String = row.try_get("network")?;
    let starts_at: Time = row.try_get("starts_at")?;
    let state: String = row.try_get("state")?;
    let origin: String = row.try_get("origin")?;
    Ok(pb::Session {
        name: session_name(
            &network,
            &row.try_get::<String, _>("clinic_id")?,
            &row.try_get::<String, _>("group_id")?,
            &row.try_get::<String, _>("session_id")?,
        ),
        state: match state.as_str() {
            "scheduled" => pb::SessionState::Scheduled,
            "started" => pb::SessionState::Started,
            "closed" => pb::SessionState::Closed,
            "cancelled" => pb::SessionState::Cancelled,
            _ => pb::SessionState::Unspecified,
        } as i32,
        start_time: Some(codec::timestamp(starts_at)),
        duration_minutes: row.try_get::<i32, _>("duration_minutes")?.max(0) as u32,
        origin: if origin == "ad-hoc" {
            pb::SessionOrigin::AdHoc
        } else {
            pb::SessionOrigin::Schedule
        } as i32,
        cancel_reason: row.try_get("cancel_reason")?,
        etag: row.try_get::<i64, _>("version")?.to_string(),
        ..Default::default()
    })
}

pub fn status_from_text(text: &str) -> pb::AttendanceStatus {
    match text {
        "present" => pb::AttendanceStatus::Present,
        "late" => pb::AttendanceStatus::Late,
        "left-early" => pb::AttendanceStatus::LeftEarly,
        "absent" => pb::AttendanceStatus::Absent,
        "excused" => pb::AttendanceStatus::Excused,
        _ => pb::AttendanceStatus::Unspecified,
    }
}

fn attended(text: &str) -> bool {
    matches!(text, "present" | "late" | "left-early")
}

impl SessionsApi {
    pub(super) async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> ApiResult<pb::ListSessionsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let group = owned(&caller, &mut violations, "parent", &request.parent, GROUP)?;
        let scope: Vec<&str> = group.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, roles::STAFF, &scope)?;
        let any_time = circle_calendar::TimeRange::protobuf();
        let from = violations
            .check(
                "start_time",
                circle_calendar::parse_optional_time(request.start_time, &any_time),
            )
            .flatten();
        let until = violations
            .check(
                "end_time",
                circle_calendar::parse_optional_time(request.end_time, &any_time),
            )
            .flatten();
        if let (Some(from), Some(until)) = (from, until)
            && until < from
        {
            violations.add("end_time", "must not be before start_time");
        }
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        let group = violations.finish(group)?;
        self.consistent_read(&request.consistency_token).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions.sessions s
             WHERE s.network = $1 AND s.group_id = $2 AND s.clinic_id = $3
               AND ($4::timestamptz IS NULL OR s.starts_at >= $4) AND ($5::timestamptz IS NULL OR s.starts_at < $5)
             ORDER BY s.starts_at, s.session_id LIMIT $6 OFFSET $7"
        )))
        .bind(&group[0])
        .bind(&group[2])
        .bind(&group[1])
        .bind(from)
        .bind(until)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(database_error)?;
        Ok(pb::ListSessionsResponse {
            next_page_token: circle_grpc::next_page_token(offset, size, sessions.len()),
            sessions,
        })
    }

    /// The session sheet: the roster (active members when it started, and anyone with
    /// attendance recorded), their attendance, check-ins and notes.
    pub(super) async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> ApiResult<pb::GetSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, SESSION)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, roles::STAFF, &scope)?;
        let ids = violations.finish(ids)?;
        self.consistent_read(&request.consistency_token).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions.sessions s
             WHERE s.network = $1 AND s.session_id = $2 AND s.group_id = $3 AND s.clinic_id = $4"
        )))
        .bind(&ids[0])
        .bind(&ids[3])
        .bind(&ids[2])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                "SESSION_NOT_FOUND",
                format!("{} not found", request.name),
            )
        })?;
        let mut session = session_from_row(&row).map_err(database_error)?;
        let starts_at: Time = row.try_get("starts_at").map_err(database_error)?;
        let roster: Vec<(String, Option<String>, Option<i32>, bool)> = sqlx::query_as(
            "SELECT p.participant_id, a.status, a.minutes, c.participant_id IS NOT NULL
             FROM (SELECT DISTINCT participant_id FROM sessions_roster.member_periods
                   WHERE network = $1 AND group_id = $2 AND from_at <= $4 AND (to_at IS NULL OR to_at > $4)
                   UNION SELECT participant_id FROM sessions.attendance WHERE network = $1 AND session_id = $3) p
             LEFT JOIN sessions.attendance a ON a.network = $1 AND a.session_id = $3 AND a.participant_id = p.participant_id
             LEFT JOIN sessions.check_ins c ON c.network = $1 AND c.session_id = $3 AND c.participant_id = p.participant_id
             ORDER BY p.participant_id",
        )
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(&ids[3])
        .bind(starts_at)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut notes = self.notes(&ids[0], &ids[3], &request.name).await?;
        session.shared_note = notes.remove("");
        session.roster = roster
            .into_iter()
            .map(
                |(participant_id, status, minutes, checked_in)| pb::RosterEntry {
                    participant: participant_name(&ids[0], &participant_id),
                    attendance: status
                        .as_deref()
                        .map_or(pb::AttendanceStatus::Unspecified, status_from_text)
                        as i32,
                    minutes_attended: minutes.unwrap_or(0).max(0) as u32,
                    checked_in,
                    note: notes.remove(&participant_id),
                },
            )
            .collect();
        Ok(pb::GetSessionResponse {
            session: Some(session),
        })
    }

    async fn notes(
        &self,
        network: &str,
        session_id: &str,
        session_name: &str,
    ) -> ApiResult<BTreeMap<String, pb::Note>> {
        let rows: Vec<(String, String, bool, String, Option<Time>)> = sqlx::query_as(
            "SELECT note_key, text, signed, signed_by, signed_at FROM sessions.notes WHERE network = $1 AND session_id = $2",
        )
        .bind(network)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let amendments: Vec<(String, String, String, Time)> = sqlx::query_as(
            "SELECT note_key, text, staff_id, at FROM sessions.note_amendments
             WHERE network = $1 AND session_id = $2 ORDER BY version",
        )
        .bind(network)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut notes: BTreeMap<String, pb::Note> = rows
            .into_iter()
            .map(|(key, text, signed, signed_by, signed_at)| {
                let note = pb::Note {
                    name: note_name(session_name, &key),
                    text,
                    signed,
                    signed_by,
                    sign_time: signed_at.map(codec::timestamp),
                    amendments: Vec::new(),
                };
                (key, note)
            })
            .collect();
        for (key, text, staff_id, at) in amendments {
            if let Some(note) = notes.get_mut(&key) {
                note.amendments.push(pb::Amendment {
                    text,
                    staff_id,
                    time: Some(codec::timestamp(at)),
                });
            }
        }
        Ok(notes)
    }

    /// Unsigned notes and unclosed sessions (started, or scheduled and already past)
    /// across the groups the staff member facilitates.
    pub(super) async fn list_unsigned_notes(
        &self,
        request: Request<pb::ListUnsignedNotesRequest>,
    ) -> ApiResult<pb::ListUnsignedNotesResponse> {
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
        if let Some(staff) = &staff
            && caller.role == circle_grpc::Role::Facilitator
            && caller.actor_id != staff[1]
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "NOT_YOUR_QUEUE",
                "facilitators see their own queue",
            ));
        }
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        let staff = violations.finish(staff)?;
        self.consistent_read(&request.consistency_token).await?;
        let now = self.commands.clock.now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS}, n.note_key, n.text
             FROM sessions.sessions s
             JOIN sessions_roster.groups g ON g.network = s.network AND g.group_id = s.group_id
             LEFT JOIN sessions.notes n ON n.network = s.network AND n.session_id = s.session_id AND NOT n.signed
             WHERE s.network = $1 AND $2 = ANY(g.facilitators)
               AND (NOT $6 OR s.clinic_id = ANY($7))
               AND (n.note_key IS NOT NULL OR s.state = 'started' OR (s.state = 'scheduled' AND s.starts_at < $3))
             ORDER BY s.starts_at, s.session_id, n.note_key NULLS FIRST LIMIT $4 OFFSET $5"
        )))
        .bind(&staff[0])
        .bind(&staff[1])
        .bind(now)
        .bind(size)
        .bind(offset)
        .bind(circle_grpc::is_clinic_scoped(caller.role))
        .bind(&caller.clinics)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut items = Vec::new();
        for row in &rows {
            let session = session_from_row(row).map_err(database_error)?;
            let note_key: Option<String> = row.try_get("note_key").map_err(database_error)?;
            let note = match note_key {
                Some(key) => Some(pb::Note {
                    name: note_name(&session.name, &key),
                    text: row.try_get("text").map_err(database_error)?,
                    ..Default::default()
                }),
                None => None,
            };
            items.push(pb::UnsignedItem {
                session: Some(session),
                note,
            });
        }
        Ok(pb::ListUnsignedNotesResponse {
            next_page_token: circle_grpc::next_page_token(offset, size, items.len()),
            items,
        })
    }

    pub(super) async fn get_attendance_history(
        &self,
        request: Request<pb::GetAttendanceHistoryRequest>,
    ) -> ApiResult<pb::GetAttendanceHistoryResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let participant = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        if let Some(participant) = &participant {
            authorize_self_or_staff(&caller, &participant[1], &[])?;
        }
        let participant = violations.finish(participant)?;
        self.consistent_read(&request.consistency_token).await?;
        // Clinic-scoped staff see only the sessions of their clinics.
        let scoped = circle_grpc::is_clinic_scoped(caller.role);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS}, a.status, a.minutes FROM sessions.attendance a
             JOIN sessions.sessions s ON s.network = a.network AND s.session_id = a.session_id
             WHERE a.network = $1 AND a.participant_id = $2 AND s.state <> 'cancelled'
               AND (NOT $3 OR s.clinic_id = ANY($4))
             ORDER BY s.starts_at, s.session_id"
        )))
        .bind(&participant[0])
        .bind(&participant[1])
        .bind(scoped)
        .bind(&caller.clinics)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut response = pb::GetAttendanceHistoryResponse::default();
        for row in &rows {
            let status: String = row.try_get("status").map_err(database_error)?;
            match status.as_str() {
                "excused" => response.sessions_excused += 1,
                "absent" => response.sessions_missed += 1,
                _ if attended(&status) => response.sessions_attended += 1,
                _ => {}
            }
            response.records.push(pb::AttendanceRecord {
                session: Some(session_from_row(row).map_err(database_error)?),
                status: status_from_text(&status) as i32,
                minutes_attended: row
                    .try_get::<i32, _>("minutes")
                    .map_err(database_error)?
                    .max(0) as u32,
            });
        }
        let counted = response.sessions_attended + response.sessions_missed;
        response.attendance_rate = if counted == 0 {
            0.0
        } else {
            f64::from(response.sessions_attended) / f64::from(counted)
        };
        Ok(response)
    }

    /// One line per attendee per closed session in the clinic between two local dates;
    /// absentees are never billed. Sessions above the payer cap are flagged.
    pub(super) async fn export_billing(
        &self,
        request: Request<pb::ExportBillingRequest>,
    ) -> ApiResult<pb::ExportBillingResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let clinic = owned(&caller, &mut violations, "clinic", &request.clinic, CLINIC)?;
        let scope: Vec<&str> = clinic.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, roles::CLINIC_ADMINS, &scope)?;
        let billable = circle_calendar::DateRange::around(
            self.commands.clock.now().date_naive(),
            BILLING_YEARS_BACK,
            BILLING_YEARS_AHEAD,
        );
        let date = |field: &str, value: &str, violations: &mut Violations| {
            violations.check(field, circle_calendar::parse_date(value, &billable))
        };
        let start = date("start_date", &request.start_date, &mut violations);
        let end = date("end_date", &request.end_date, &mut violations);
        if let (Some(start), Some(end)) = (start, end) {
            if end < start {
                violations.add("end_date", "must not be before start_date");
            } else if (end - start).num_days() > 366 {
                violations.add("end_date", "the range must be at most a year");
            }
        }
        violations.into_result()?;
        let (Some(clinic), Some(start), Some(end)) = (clinic, start, end) else {
            return Err(ApiError::internal());
        };
        self.consistent_read(&request.consistency_token).await?;
        // Two days of margin either side cover every time zone; local dates are
        // checked exactly below.
        let from = start
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc() - chrono::Duration::days(2));
        let until = end
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc() + chrono::Duration::days(3));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS}, g.time_zone, a.participant_id, a.minutes,
                    count(*) OVER (PARTITION BY s.session_id) AS attendee_count
             FROM sessions.sessions s
             JOIN sessions.attendance a ON a.network = s.network AND a.session_id = s.session_id
             JOIN sessions_roster.groups g ON g.network = s.network AND g.group_id = s.group_id
             WHERE s.network = $1 AND s.clinic_id = $2 AND s.state = 'closed'
               AND a.status IN ('present', 'late', 'left-early')
               AND s.starts_at >= $3 AND s.starts_at < $4
             ORDER BY s.starts_at, s.session_id, a.participant_id"
        )))
        .bind(&clinic[0])
        .bind(&clinic[1])
        .bind(from)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut lines = Vec::new();
        for row in &rows {
            let starts_at: Time = row.try_get("starts_at").map_err(database_error)?;
            let zone: String = row.try_get("time_zone").map_err(database_error)?;
            let local_date = starts_at.with_timezone(&time_zone(&zone)).date_naive();
            if local_date < start || local_date > end {
                continue;
            }
            let count = row
                .try_get::<i64, _>("attendee_count")
                .map_err(database_error)?
                .max(0) as u32;
            let session = session_from_row(row).map_err(database_error)?;
            lines.push(pb::BillingLine {
                session: session.name,
                participant: participant_name(
                    &clinic[0],
                    &row.try_get::<String, _>("participant_id")
                        .map_err(database_error)?,
                ),
                session_start_time: Some(codec::timestamp(starts_at)),
                code: self.billing.code.clone(),
                minutes_attended: row
                    .try_get::<i32, _>("minutes")
                    .map_err(database_error)?
                    .max(0) as u32,
                attendee_count: count,
                over_payer_cap: count > self.billing.payer_cap,
            });
        }
        Ok(pb::ExportBillingResponse { lines })
    }
}
