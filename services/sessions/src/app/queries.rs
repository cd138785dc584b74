//! The queries of the sessions service, answered from the read model (schema
//! `sessions`) and the roster projection (`sessions_roster`). Each one checks the
//! caller against the access table first, then takes its input (or refuses its bad
//! fields), waits for the caller's own write, and reads. The read model holds personal
//! text sealed; a query opens what its answer shows, with one fetch of the keys of the
//! participants it shows (`super::personal`), after withholding what the caller may
//! not read.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use circle_calendar::{DateRange, time_zone};
use circle_grpc::{ApiError, Caller, Role, Target};
use circle_names::{ClinicName, GroupName, Id, NoteName, ParticipantName, SessionName, StaffName};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use tonic::Code;

use super::access::{self, Operation};
use super::{Input, Page, Queries, database_error, facts, personal, tenant};
use crate::domain::session::{Amendment, Note};
use crate::domain::{AttendanceStatus, NoteKey, Origin, SessionState, Time};
use crate::read_model;

/// How far back and ahead of today a billing export's dates may be.
pub const BILLING_YEARS_BACK: u32 = 10;
pub const BILLING_YEARS_AHEAD: u32 = 1;
/// The longest billing period, in days between its first and last date.
pub const BILLING_MAX_DAYS: i64 = 366;

/// A session as the read model shows it, without its roster.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub name: SessionName,
    /// `None` for a state this version does not know (a newer one wrote it).
    pub state: Option<SessionState>,
    pub starts_at: Time,
    pub duration_minutes: u32,
    pub origin: Origin,
    pub cancel_reason: String,
    /// The session's version (its etag).
    pub version: i64,
}

/// A note with its name. `text_withheld`: the viewer is not one of the group's
/// facilitators, so the note's text and its amendments' are empty (`access::NOTE_TEXT`);
/// whether it is signed, by whom and when, and when it was amended by whom, remain.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteView {
    pub name: NoteName,
    pub note: Note,
    pub text_withheld: bool,
}

impl NoteView {
    /// The note with its text shown, or withheld (`shown` false).
    fn shown_if(mut self, shown: bool) -> Self {
        if !shown {
            self.note.text.clear();
            for amendment in &mut self.note.amendments {
                amendment.text.clear();
            }
            self.text_withheld = true;
        }
        self
    }
}

/// One line of a session's roster.
#[derive(Debug, Clone, PartialEq)]
pub struct RosterLine {
    pub participant: ParticipantName,
    /// `None` until attendance is recorded (or for a status this version does not know).
    pub attendance: Option<AttendanceStatus>,
    pub minutes_attended: u32,
    pub checked_in: bool,
    pub note: Option<NoteView>,
}

/// The session sheet: the session, its shared note, and its roster (the active
/// members when it started, and anyone with attendance recorded) with attendance,
/// check-ins and notes.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSheet {
    pub session: SessionView,
    pub shared_note: Option<NoteView>,
    pub roster: Vec<RosterLine>,
}

/// Which sessions of a group to list: starting in `[from, until)`, either end open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionFilter {
    pub from: Option<Time>,
    pub until: Option<Time>,
    pub page: Page,
}

/// An item of a clinician's queue: a session not closed yet, or one of its unsigned
/// notes (name and text only).
#[derive(Debug, Clone, PartialEq)]
pub struct UnsignedItem {
    pub session: SessionView,
    pub note: Option<NoteView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttendanceRecord {
    pub session: SessionView,
    pub status: Option<AttendanceStatus>,
    pub minutes_attended: u32,
}

/// A participant's attendance, session by session, and its counts: present, late and
/// left early count as attended, absent as missed, excused as neither.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttendanceHistory {
    pub records: Vec<AttendanceRecord>,
    pub sessions_attended: u32,
    pub sessions_missed: u32,
    pub sessions_excused: u32,
    /// Attended of attended and missed; 0 with neither.
    pub attendance_rate: f64,
}

/// The local dates a billing export covers, first and last included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl BillingPeriod {
    /// A period within `billable` (the edge parses the dates against it), checked
    /// here: the end not before the start, at most a year long. The error names the
    /// `end_date` field.
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, String> {
        if end < start {
            Err("must not be before start_date".into())
        } else if (end - start).num_days() > BILLING_MAX_DAYS {
            Err("the range must be at most a year".into())
        } else {
            Ok(Self { start, end })
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BillingLine {
    pub session: SessionName,
    pub participant: ParticipantName,
    pub session_start: Time,
    pub code: String,
    pub minutes_attended: u32,
    /// Attendees billed for the session.
    pub attendee_count: u32,
    pub over_payer_cap: bool,
}

const SESSION_COLUMNS: &str = "s.network, s.session_id, s.group_id, s.clinic_id, s.starts_at, s.duration_minutes, s.origin, s.state, s.cancel_reason, s.version";

/// An id the read model holds. Every id was valid when it was written, so one that is
/// not means a damaged row.
fn stored_id(value: &str) -> Result<Id, ApiError> {
    Id::parse(value).map_err(|_| {
        tracing::error!("the read model holds an id that is not valid");
        ApiError::internal()
    })
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, ApiError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(database_error)
}

fn non_negative(value: i32) -> u32 {
    value.max(0).unsigned_abs()
}

fn session_from_row(row: &PgRow) -> Result<SessionView, ApiError> {
    let id = |name: &str| stored_id(&column::<String>(row, name)?);
    Ok(SessionView {
        name: SessionName {
            network: id("network")?,
            clinic: id("clinic_id")?,
            group: id("group_id")?,
            session: id("session_id")?,
        },
        state: read_model::state_from_text(&column::<String>(row, "state")?),
        starts_at: column(row, "starts_at")?,
        duration_minutes: non_negative(column(row, "duration_minutes")?),
        origin: read_model::origin_from_text(&column::<String>(row, "origin")?),
        cancel_reason: column(row, "cancel_reason")?,
        version: column(row, "version")?,
    })
}

/// A note's name from its key in the read model (empty for the shared note).
fn note_name(session: &SessionName, key: &str) -> Result<NoteName, ApiError> {
    Ok(session.note(stored_id(if key.is_empty() {
        NoteKey::SHARED_ID
    } else {
        key
    })?))
}

impl Queries {
    /// The local dates a billing export may ask for, around today.
    pub fn billable_dates(&self) -> DateRange {
        DateRange::around(
            self.clock.now().date_naive(),
            BILLING_YEARS_BACK,
            BILLING_YEARS_AHEAD,
        )
    }

    /// A group's sessions, by start time.
    pub async fn list_sessions(
        &self,
        caller: &Caller,
        input: Input<GroupName, SessionFilter>,
    ) -> Result<Vec<SessionView>, ApiError> {
        let place = input
            .resource
            .as_ref()
            .map(|group| (&group.network, &group.clinic));
        access::permit_in_clinic(caller, Operation::ListSessions, place)?;
        let (group, filter) = self.read_after(input).await?;
        let mut tenant = tenant(&self.pool, &group.network).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions.sessions s
             WHERE s.network = $1 AND s.group_id = $2 AND s.clinic_id = $3
               AND ($4::timestamptz IS NULL OR s.starts_at >= $4) AND ($5::timestamptz IS NULL OR s.starts_at < $5)
             ORDER BY s.starts_at, s.session_id LIMIT $6 OFFSET $7"
        )))
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .bind(group.clinic.as_str())
        .bind(filter.from)
        .bind(filter.until)
        .bind(filter.page.size)
        .bind(filter.page.offset)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        rows.iter().map(session_from_row).collect()
    }

    /// The session sheet. A session of another group or clinic than its name says is
    /// not found.
    pub async fn get_session(
        &self,
        caller: &Caller,
        input: Input<SessionName, ()>,
    ) -> Result<SessionSheet, ApiError> {
        let place = input
            .resource
            .as_ref()
            .map(|session| (&session.network, &session.clinic));
        access::permit_in_clinic(caller, Operation::GetSession, place)?;
        let purpose = input.purpose;
        let (name, ()) = self.read_after(input).await?;
        // Asked before the transaction is opened: a handler never holds one connection
        // while it waits for another (with every connection so held, none would be
        // free, and each handler would wait out the pool's timeout).
        let facilitates = facts::facilitates(&self.pool, caller, &name.group_name()).await?;
        let mut tenant = tenant(&self.pool, &name.network).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions.sessions s
             WHERE s.network = $1 AND s.session_id = $2 AND s.group_id = $3 AND s.clinic_id = $4"
        )))
        .bind(name.network.as_str())
        .bind(name.session.as_str())
        .bind(name.group.as_str())
        .bind(name.clinic.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                "SESSION_NOT_FOUND",
                format!("{name} not found"),
            )
        })?;
        let session = session_from_row(&row)?;
        // The notes' text is the group's facilitators' alone.
        let shown = access::reads_note_text(caller, name.clinic.as_str(), facilitates);
        let roster: Vec<(String, Option<String>, Option<i32>, bool)> = sqlx::query_as(
            "SELECT p.participant_id, a.status, a.minutes, c.participant_id IS NOT NULL
             FROM (SELECT DISTINCT participant_id FROM sessions_roster.member_periods
                   WHERE network = $1 AND group_id = $2 AND from_at <= $4 AND (to_at IS NULL OR to_at > $4)
                   UNION SELECT participant_id FROM sessions.attendance WHERE network = $1 AND session_id = $3) p
             LEFT JOIN sessions.attendance a ON a.network = $1 AND a.session_id = $3 AND a.participant_id = p.participant_id
             LEFT JOIN sessions.check_ins c ON c.network = $1 AND c.session_id = $3 AND c.participant_id = p.participant_id
             ORDER BY p.participant_id",
        )
        .bind(name.network.as_str())
        .bind(name.group.as_str())
        .bind(name.session.as_str())
        .bind(session.starts_at)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let mut notes: BTreeMap<String, NoteView> = notes(&mut tenant, &name)
            .await?
            .into_iter()
            .map(|(key, note)| (key, note.shown_if(shown)))
            .collect();
        let shared_note = notes.remove("");
        let mut roster = roster
            .into_iter()
            .map(|(participant_id, status, minutes, checked_in)| {
                Ok(RosterLine {
                    participant: ParticipantName {
                        network: name.network.clone(),
                        participant: stored_id(&participant_id)?,
                    },
                    attendance: status.as_deref().and_then(read_model::status_from_text),
                    minutes_attended: non_negative(minutes.unwrap_or(0)),
                    checked_in,
                    note: notes.remove(&participant_id),
                })
            })
            .collect::<Result<Vec<RosterLine>, ApiError>>()?;
        // The members' notes, opened (withheld ones are empty: nothing to open) before
        // the disclosure is recorded, so no record is left of an answer never given.
        drop(tenant);
        personal::open(&self.vault, &name.network, &mut roster).await?;
        // Everyone on the sheet: their place on the roster, attendance, check-in, note.
        self.disclose(
            caller,
            Operation::GetSession,
            &name,
            purpose,
            roster
                .iter()
                .map(|line| line.participant.participant.as_str()),
        )
        .await?;
        Ok(SessionSheet {
            session,
            shared_note,
            roster,
        })
    }
}

/// A session's notes by key (empty for the shared note), amendments oldest first, read
/// in the caller's transaction of the session's network.
async fn notes(
    tenant: &mut PgConnection,
    session: &SessionName,
) -> Result<BTreeMap<String, NoteView>, ApiError> {
    let rows: Vec<(String, String, bool, String, Option<Time>)> = sqlx::query_as(
        "SELECT note_key, text, signed, signed_by, signed_at FROM sessions.notes WHERE network = $1 AND session_id = $2",
    )
    .bind(session.network.as_str())
    .bind(session.session.as_str())
    .fetch_all(&mut *tenant)
    .await
    .map_err(database_error)?;
    let amendments: Vec<(String, String, String, Time)> = sqlx::query_as(
        "SELECT note_key, text, staff_id, at FROM sessions.note_amendments
         WHERE network = $1 AND session_id = $2 ORDER BY version",
    )
    .bind(session.network.as_str())
    .bind(session.session.as_str())
    .fetch_all(&mut *tenant)
    .await
    .map_err(database_error)?;
    let mut notes = BTreeMap::new();
    for (key, text, signed, signed_by, signed_at) in rows {
        let note = NoteView {
            name: note_name(session, &key)?,
            note: Note {
                text,
                signed,
                signed_by,
                signed_at,
                amendments: Vec::new(),
            },
            text_withheld: false,
        };
        notes.insert(key, note);
    }
    for (key, text, staff_id, at) in amendments {
        if let Some(view) = notes.get_mut(&key) {
            view.note.amendments.push(Amendment { text, staff_id, at });
        }
    }
    Ok(notes)
}

impl Queries {
    /// A clinician's queue: unsigned notes and unclosed sessions (started, or
    /// scheduled and already past) across the groups the staff member facilitates,
    /// in the caller's clinics when the caller is clinic-scoped. A facilitator sees
    /// only their own queue.
    pub async fn list_unsigned_notes(
        &self,
        caller: &Caller,
        input: Input<StaffName, Page>,
    ) -> Result<Vec<UnsignedItem>, ApiError> {
        let named = input
            .resource
            .as_ref()
            .map(|staff| (&staff.network, Target::default()));
        // The queue is filtered to the caller's clinics below.
        access::permit_unplaced(caller, Operation::ListUnsignedNotes, named)?;
        if let Some(staff) = &input.resource
            && access::rule(Operation::ListUnsignedNotes).admits_only_as(caller, Role::Facilitator)
            && staff.staff.as_str() != caller.actor_id
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "NOT_YOUR_QUEUE",
                "facilitators see their own queue",
            ));
        }
        let purpose = input.purpose;
        let (staff, page) = self.read_after(input).await?;
        let mut tenant = tenant(&self.pool, &staff.network).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS}, n.note_key, n.text, $8 = ANY(g.facilitators) AS caller_facilitates
             FROM sessions.sessions s
             JOIN sessions_roster.groups g ON g.network = s.network AND g.group_id = s.group_id
             LEFT JOIN sessions.notes n ON n.network = s.network AND n.session_id = s.session_id AND NOT n.signed
             WHERE s.network = $1 AND $2 = ANY(g.facilitators)
               AND (NOT $6 OR s.clinic_id = ANY($7))
               AND (n.note_key IS NOT NULL OR s.state = 'started' OR (s.state = 'scheduled' AND s.starts_at < $3))
             ORDER BY s.starts_at, s.session_id, n.note_key NULLS FIRST LIMIT $4 OFFSET $5"
        )))
        .bind(staff.network.as_str())
        .bind(staff.staff.as_str())
        .bind(self.clock.now())
        .bind(page.size)
        .bind(page.offset)
        .bind(caller.is_clinic_scoped())
        .bind(&caller.clinics)
        .bind(&caller.actor_id)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let session = session_from_row(row)?;
            // The text only to the group's facilitators (an admin looking at someone's
            // queue sees which notes wait, not what they say).
            let shown = access::reads_note_text(
                caller,
                session.name.clinic.as_str(),
                column(row, "caller_facilitates")?,
            );
            let note = match column::<Option<String>>(row, "note_key")? {
                Some(key) => Some(
                    NoteView {
                        name: note_name(&session.name, &key)?,
                        note: Note {
                            text: column(row, "text")?,
                            ..Note::default()
                        },
                        text_withheld: false,
                    }
                    .shown_if(shown),
                ),
                None => None,
            };
            items.push(UnsignedItem { session, note });
        }
        drop(tenant);
        personal::open(&self.vault, &staff.network, &mut items).await?;
        // The member notes in the queue (the shared note names no one).
        let members = items
            .iter()
            .filter_map(|item| item.note.as_ref())
            .map(|note| note.name.note.as_str())
            .filter(|key| *key != NoteKey::SHARED_ID);
        self.disclose(
            caller,
            Operation::ListUnsignedNotes,
            &staff,
            purpose,
            members,
        )
        .await?;
        Ok(items)
    }

    /// A participant's attendance across sessions that were not cancelled; staff of
    /// some clinics see only the sessions of their clinics.
    pub async fn get_attendance_history(
        &self,
        caller: &Caller,
        input: Input<ParticipantName, ()>,
    ) -> Result<AttendanceHistory, ApiError> {
        let named = input.resource.as_ref().map(|participant| {
            (
                &participant.network,
                Target {
                    participant: Some(participant.participant.as_str()),
                    ..Target::default()
                },
            )
        });
        // The history is filtered to the caller's clinics below.
        access::permit_unplaced(caller, Operation::GetAttendanceHistory, named)?;
        let purpose = input.purpose;
        let (participant, ()) = self.read_after(input).await?;
        let mut tenant = tenant(&self.pool, &participant.network).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS}, a.status, a.minutes FROM sessions.attendance a
             JOIN sessions.sessions s ON s.network = a.network AND s.session_id = a.session_id
             WHERE a.network = $1 AND a.participant_id = $2 AND s.state <> 'cancelled'
               AND (NOT $3 OR s.clinic_id = ANY($4))
             ORDER BY s.starts_at, s.session_id"
        )))
        .bind(participant.network.as_str())
        .bind(participant.participant.as_str())
        .bind(caller.is_clinic_scoped())
        .bind(&caller.clinics)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let mut history = AttendanceHistory::default();
        for row in &rows {
            let status = read_model::status_from_text(&column::<String>(row, "status")?);
            match status {
                Some(AttendanceStatus::Excused) => history.sessions_excused += 1,
                Some(AttendanceStatus::Absent) => history.sessions_missed += 1,
                Some(status) if status.attended() => history.sessions_attended += 1,
                _ => {}
            }
            history.records.push(AttendanceRecord {
                session: session_from_row(row)?,
                status,
                minutes_attended: non_negative(column(row, "minutes")?),
            });
        }
        let counted = history.sessions_attended + history.sessions_missed;
        history.attendance_rate = if counted == 0 {
            0.0
        } else {
            f64::from(history.sessions_attended) / f64::from(counted)
        };
        // No attendance, nothing of theirs disclosed.
        let disclosed = (!history.records.is_empty()).then_some(participant.participant.as_str());
        self.disclose(
            caller,
            Operation::GetAttendanceHistory,
            &participant,
            purpose,
            disclosed,
        )
        .await?;
        Ok(history)
    }

    /// One line per attendee per closed session in the clinic between two local dates
    /// (the group's); absentees are never billed. Sessions with more attendees than
    /// the payer cap are flagged.
    pub async fn export_billing(
        &self,
        caller: &Caller,
        input: Input<ClinicName, BillingPeriod>,
    ) -> Result<Vec<BillingLine>, ApiError> {
        let place = input
            .resource
            .as_ref()
            .map(|clinic| (&clinic.network, &clinic.clinic));
        access::permit_in_clinic(caller, Operation::ExportBilling, place)?;
        let purpose = input.purpose;
        let (clinic, period) = self.read_after(input).await?;
        let mut tenant = tenant(&self.pool, &clinic.network).await?;
        // Two days of margin either side cover every time zone; local dates are
        // checked exactly below.
        let from = period
            .start
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc() - chrono::Duration::days(2));
        let until = period
            .end
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
        .bind(clinic.network.as_str())
        .bind(clinic.clinic.as_str())
        .bind(from)
        .bind(until)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let mut lines = Vec::new();
        for row in &rows {
            let starts_at: Time = column(row, "starts_at")?;
            let zone: String = column(row, "time_zone")?;
            let local_date = starts_at.with_timezone(&time_zone(&zone)).date_naive();
            if local_date < period.start || local_date > period.end {
                continue;
            }
            let attendee_count =
                u32::try_from(column::<i64>(row, "attendee_count")?.max(0)).unwrap_or(u32::MAX);
            lines.push(BillingLine {
                session: session_from_row(row)?.name,
                participant: ParticipantName {
                    network: clinic.network.clone(),
                    participant: stored_id(&column::<String>(row, "participant_id")?)?,
                },
                session_start: starts_at,
                code: self.billing.code.clone(),
                minutes_attended: non_negative(column(row, "minutes")?),
                attendee_count,
                over_payer_cap: attendee_count > self.billing.payer_cap,
            });
        }
        self.disclose(
            caller,
            Operation::ExportBilling,
            &clinic,
            purpose,
            lines
                .iter()
                .map(|line| line.participant.participant.as_str()),
        )
        .await?;
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn a_billing_period_runs_forwards_for_at_most_a_year() {
        assert!(BillingPeriod::new(date("2026-01-01"), date("2026-12-31")).is_ok());
        assert!(BillingPeriod::new(date("2026-01-01"), date("2027-01-02")).is_ok());
        assert_eq!(
            BillingPeriod::new(date("2026-01-01"), date("2027-01-03")),
            Err("the range must be at most a year".to_owned())
        );
        assert_eq!(
            BillingPeriod::new(date("2026-02-01"), date("2026-01-31")),
            Err("must not be before start_date".to_owned())
        );
    }
}
