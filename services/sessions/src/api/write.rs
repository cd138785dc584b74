//! Commands: validate, authorize, resolve the roster and the other members' names,
//! run, and answer from the state the commit left.

use circle_eventstore::AggregateKey;
use circle_grpc::{ApiError, Caller, Violations, authorize, authorize_self_or_staff, owned, roles};
use circle_proto::sessions::v1 as pb;
use circle_service::Fingerprint;
use tonic::{Code, Request};

use super::{
    ApiResult, GROUP, NOTE, PARTICIPANT, SESSION, SessionsApi, caller, command_error, meta,
    note_name, session_name,
};
use crate::app::facts::GroupPlace;
use crate::codec;
use crate::domain::session::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES};
use crate::domain::{NoteKey, Origin, Session, SessionCommand, SessionState, Time};

pub const MAX_NOTE_CHARS: usize = 20_000;
pub const MAX_SHARE_CHARS: usize = 280;

fn duration(value: u32) -> Result<u32, String> {
    if (MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES}"
        ))
    }
}

/// How far back a session may start (recording one that took place) and how far ahead.
pub const SESSION_START_YEARS_BACK: u32 = 1;
pub const SESSION_START_YEARS_AHEAD: u32 = 2;

fn start_time(value: Option<prost_types::Timestamp>, now: Time) -> Result<Time, String> {
    circle_calendar::parse_required_time(
        value,
        &circle_calendar::TimeRange::around(
            now,
            SESSION_START_YEARS_BACK,
            SESSION_START_YEARS_AHEAD,
        ),
    )
}

pub fn state_to_wire(state: SessionState) -> pb::SessionState {
    match state {
        SessionState::Scheduled => pb::SessionState::Scheduled,
        SessionState::Started => pb::SessionState::Started,
        SessionState::Closed => pb::SessionState::Closed,
        SessionState::Cancelled => pb::SessionState::Cancelled,
    }
}

/// A session as the write side knows it right after a command (without roster).
pub fn session_view(
    network: &str,
    clinic: &str,
    group: &str,
    session_id: &str,
    session: &Session,
    version: u64,
) -> pb::Session {
    let details = session.details.as_ref();
    pb::Session {
        name: session_name(network, clinic, group, session_id),
        state: state_to_wire(session.state) as i32,
        start_time: details.map(|details| codec::timestamp(details.starts_at)),
        duration_minutes: details.map_or(0, |details| details.duration_minutes),
        origin: match details.map(|details| details.origin) {
            Some(Origin::AdHoc) => pb::SessionOrigin::AdHoc,
            _ => pb::SessionOrigin::Schedule,
        } as i32,
        etag: version.to_string(),
        ..Default::default()
    }
}

impl SessionsApi {
    async fn load(
        &self,
        network: &str,
        clinic_id: &str,
        group_id: &str,
        session_id: &str,
        name: &str,
    ) -> ApiResult<Session> {
        let key =
            AggregateKey::new(network, "session", session_id).map_err(|_| ApiError::internal())?;
        let snapshot = self
            .commands
            .sessions
            .load(&key)
            .await
            .map_err(super::store_error)?;
        match &snapshot.state.details {
            Some(details) if details.group_id == group_id && details.clinic_id == clinic_id => {
                Ok(snapshot.state.clone())
            }
            _ => Err(ApiError::new(
                Code::NotFound,
                "SESSION_NOT_FOUND",
                format!("{name} not found"),
            )),
        }
    }

    /// Parses and authorizes a session name for a command.
    fn session_ids(
        &self,
        caller: &Caller,
        violations: &mut Violations,
        field: &str,
        name: &str,
    ) -> ApiResult<Option<Vec<String>>> {
        let ids = owned(caller, violations, field, name, SESSION)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(caller, roles::CLINICIANS, &scope)?;
        Ok(ids)
    }

    async fn run(
        &self,
        caller: &Caller,
        ids: &[String],
        request_id: String,
        fingerprint: Fingerprint,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> ApiResult<(Session, u64)> {
        let executed = self
            .commands
            .session(
                &ids[0],
                Some((&ids[1], &ids[2])),
                &ids[3],
                &meta(caller, request_id, fingerprint),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        Ok((executed.state().clone(), executed.version()))
    }

    pub(super) async fn schedule_session(
        &self,
        request: Request<pb::ScheduleSessionRequest>,
    ) -> ApiResult<pb::ScheduleSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let group = owned(&caller, &mut violations, "parent", &request.parent, GROUP)?;
        let scope: Vec<&str> = group.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, roles::CLINICIANS, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let starts_at = violations.check(
            "start_time",
            start_time(request.start_time, self.commands.clock.now()),
        );
        let duration = violations.check("duration_minutes", duration(request.duration_minutes));
        let session_id = if request.session_id.is_empty() {
            let seed = format!("{}/ad-hoc/{request_id}", request.parent);
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
        } else {
            violations.check("session_id", circle_grpc::check_id(&request.session_id));
            request.session_id.clone()
        };
        violations.into_result()?;
        let (Some(group), Some(starts_at), Some(duration)) = (group, starts_at, duration) else {
            return Err(ApiError::internal());
        };
        match self.queries.group_place(&group[0], &group[2]).await? {
            Some(GroupPlace {
                clinic_id,
                archived: false,
            }) if clinic_id == group[1] => {}
            Some(GroupPlace {
                clinic_id,
                archived: true,
            }) if clinic_id == group[1] => {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    "GROUP_ARCHIVED",
                    "the group is archived",
                ));
            }
            _ => {
                return Err(ApiError::new(
                    Code::NotFound,
                    "GROUP_NOT_FOUND",
                    format!("{} not found", request.parent),
                ));
            }
        }
        let ids = [
            group[0].clone(),
            group[1].clone(),
            group[2].clone(),
            session_id.clone(),
        ];
        let command = SessionCommand::Schedule {
            group_id: group[2].clone(),
            clinic_id: group[1].clone(),
            starts_at,
            duration_minutes: duration,
            origin: Origin::AdHoc,
        };
        let (session, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        Ok(pb::ScheduleSessionResponse {
            session: Some(session_view(
                &ids[0], &ids[1], &ids[2], &ids[3], &session, version,
            )),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn reschedule_session(
        &self,
        request: Request<pb::RescheduleSessionRequest>,
    ) -> ApiResult<pb::RescheduleSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let starts_at = violations.check(
            "start_time",
            start_time(request.start_time, self.commands.clock.now()),
        );
        let duration = if request.duration_minutes == 0 {
            Some(None)
        } else {
            violations
                .check("duration_minutes", duration(request.duration_minutes))
                .map(Some)
        };
        let etag = violations
            .check("etag", circle_grpc::etag(&request.etag))
            .flatten();
        violations.into_result()?;
        let (Some(ids), Some(starts_at), Some(duration_minutes)) = (ids, starts_at, duration)
        else {
            return Err(ApiError::internal());
        };
        let (session, version) = self
            .run(
                &caller,
                &ids,
                request_id,
                fingerprint,
                etag,
                SessionCommand::Reschedule {
                    starts_at,
                    duration_minutes,
                },
            )
            .await?;
        Ok(pb::RescheduleSessionResponse {
            session: Some(session_view(
                &ids[0], &ids[1], &ids[2], &ids[3], &session, version,
            )),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn cancel_session(
        &self,
        request: Request<pb::CancelSessionRequest>,
    ) -> ApiResult<pb::CancelSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let reason = violations.check("reason", circle_grpc::line(&request.reason, 200, true));
        violations.into_result()?;
        let (Some(ids), Some(reason)) = (ids, reason) else {
            return Err(ApiError::internal());
        };
        let (session, version) = self
            .run(
                &caller,
                &ids,
                request_id,
                fingerprint,
                None,
                SessionCommand::Cancel {
                    reason: reason.clone(),
                },
            )
            .await?;
        let mut view = session_view(&ids[0], &ids[1], &ids[2], &ids[3], &session, version);
        view.cancel_reason = reason;
        Ok(pb::CancelSessionResponse {
            session: Some(view),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> ApiResult<pb::StartSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ids = violations.finish(ids)?;
        let (session, version) = self
            .run(
                &caller,
                &ids,
                request_id,
                fingerprint,
                None,
                SessionCommand::Start,
            )
            .await?;
        Ok(pb::StartSessionResponse {
            session: Some(session_view(
                &ids[0], &ids[1], &ids[2], &ids[3], &session, version,
            )),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> ApiResult<pb::CloseSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ids = violations.finish(ids)?;
        let (session, version) = self
            .run(
                &caller,
                &ids,
                request_id,
                fingerprint,
                None,
                SessionCommand::Close,
            )
            .await?;
        Ok(pb::CloseSessionResponse {
            session: Some(session_view(
                &ids[0], &ids[1], &ids[2], &ids[3], &session, version,
            )),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> ApiResult<pb::RecordAttendanceResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let participant = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let status = violations.check(
            "status",
            codec::status_from_wire(request.status)
                .ok_or_else(|| "must be present, late, left early, absent or excused".to_owned()),
        );
        violations.into_result()?;
        let (Some(ids), Some(participant), Some(status)) = (ids, participant, status) else {
            return Err(ApiError::internal());
        };
        let session = self
            .load(&ids[0], &ids[1], &ids[2], &ids[3], &request.name)
            .await?;
        let starts_at = session
            .details
            .as_ref()
            .map(|details| details.starts_at)
            .ok_or_else(ApiError::internal)?;
        let on_roster = self
            .queries
            .on_roster(&ids[0], &ids[2], &participant[1], starts_at)
            .await?;
        let command = SessionCommand::RecordAttendance {
            participant_id: participant[1].clone(),
            on_roster,
            status,
            minutes: request.minutes_attended,
        };
        let (session, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        let (status, minutes) = session
            .attendance
            .get(&participant[1])
            .copied()
            .ok_or_else(ApiError::request_id_reused)?;
        Ok(pb::RecordAttendanceResponse {
            entry: Some(pb::RosterEntry {
                participant: request.participant.clone(),
                attendance: codec::status_to_wire(status) as i32,
                minutes_attended: minutes,
                checked_in: session.checked_in.contains(&participant[1]),
                note: None,
            }),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn record_session_check_in(
        &self,
        request: Request<pb::RecordSessionCheckInRequest>,
    ) -> ApiResult<pb::RecordSessionCheckInResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, SESSION)?;
        let participant = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        if let (Some(ids), Some(participant)) = (&ids, &participant) {
            authorize_self_or_staff(&caller, &participant[1], &[ids[1].as_str()])?;
        }
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        for (field, value) in [("mood", request.mood), ("craving", request.craving)] {
            if value > 10 {
                violations.add(field, "must be between 0 and 10");
            }
        }
        if request.share.contains(['\n', '\r']) {
            violations.add("share", "must be one line");
        } else if request.share.chars().count() > MAX_SHARE_CHARS {
            violations.add(
                "share",
                format!("must be at most {MAX_SHARE_CHARS} characters"),
            );
        }
        violations.into_result()?;
        let (Some(ids), Some(participant)) = (ids, participant) else {
            return Err(ApiError::internal());
        };
        let session = self
            .load(&ids[0], &ids[1], &ids[2], &ids[3], &request.name)
            .await?;
        let starts_at = session
            .details
            .as_ref()
            .map(|details| details.starts_at)
            .ok_or_else(ApiError::internal)?;
        let on_roster = self
            .queries
            .on_roster(&ids[0], &ids[2], &participant[1], starts_at)
            .await?;
        let command = SessionCommand::RecordCheckIn {
            participant_id: participant[1].clone(),
            on_roster,
            mood: request.mood,
            craving: request.craving,
            share: request.share.trim().to_owned(),
        };
        let (_, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        Ok(pb::RecordSessionCheckInResponse {
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn write_shared_note(
        &self,
        request: Request<pb::WriteSharedNoteRequest>,
    ) -> ApiResult<pb::WriteSharedNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_NOTE_CHARS, true),
        );
        violations.into_result()?;
        let (Some(ids), Some(text)) = (ids, text) else {
            return Err(ApiError::internal());
        };
        let (session, version) = self
            .run(
                &caller,
                &ids,
                request_id,
                fingerprint,
                None,
                SessionCommand::WriteSharedNote { text },
            )
            .await?;
        Ok(pb::WriteSharedNoteResponse {
            note: Some(note_view(&request.name, &session, &NoteKey::Shared)),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn write_member_note(
        &self,
        request: Request<pb::WriteMemberNoteRequest>,
    ) -> ApiResult<pb::WriteMemberNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = self.session_ids(&caller, &mut violations, "name", &request.name)?;
        let participant = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_NOTE_CHARS, true),
        );
        violations.into_result()?;
        let (Some(ids), Some(participant), Some(text)) = (ids, participant, text) else {
            return Err(ApiError::internal());
        };
        let other_member_names = self
            .queries
            .other_member_names(&ids[0], &ids[2], &participant[1])
            .await?;
        let command = SessionCommand::WriteMemberNote {
            participant_id: participant[1].clone(),
            text,
            other_member_names,
        };
        let (session, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        Ok(pb::WriteMemberNoteResponse {
            note: Some(note_view(
                &request.name,
                &session,
                &NoteKey::Member(participant[1].clone()),
            )),
            consistency_token: version.to_string(),
        })
    }

    /// Parses a note name into the session ids and the note key.
    fn note_ids(
        &self,
        caller: &Caller,
        violations: &mut Violations,
        name: &str,
    ) -> ApiResult<Option<(Vec<String>, NoteKey, String)>> {
        let ids = owned(caller, violations, "name", name, NOTE)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(caller, roles::CLINICIANS, &scope)?;
        Ok(ids.map(|ids| {
            let session = session_name(&ids[0], &ids[1], &ids[2], &ids[3]);
            let key = if ids[4] == "shared" {
                NoteKey::Shared
            } else {
                NoteKey::Member(ids[4].clone())
            };
            (ids[..4].to_vec(), key, session)
        }))
    }

    pub(super) async fn sign_note(
        &self,
        request: Request<pb::SignNoteRequest>,
    ) -> ApiResult<pb::SignNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let parsed = self.note_ids(&caller, &mut violations, &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        violations.into_result()?;
        let Some((ids, note, session_name)) = parsed else {
            return Err(ApiError::internal());
        };
        let command = SessionCommand::Sign {
            note: note.clone(),
            staff_id: caller.actor_id.clone(),
        };
        let (session, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        Ok(pb::SignNoteResponse {
            note: Some(note_view(&session_name, &session, &note)),
            consistency_token: version.to_string(),
        })
    }

    pub(super) async fn amend_note(
        &self,
        request: Request<pb::AmendNoteRequest>,
    ) -> ApiResult<pb::AmendNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let parsed = self.note_ids(&caller, &mut violations, &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_NOTE_CHARS, true),
        );
        violations.into_result()?;
        let (Some((ids, note, session_name)), Some(text)) = (parsed, text) else {
            return Err(ApiError::internal());
        };
        let other_member_names = match &note {
            NoteKey::Member(participant_id) => {
                self.queries
                    .other_member_names(&ids[0], &ids[2], participant_id)
                    .await?
            }
            NoteKey::Shared => Vec::new(),
        };
        let command = SessionCommand::Amend {
            note: note.clone(),
            text,
            staff_id: caller.actor_id.clone(),
            other_member_names,
        };
        let (session, version) = self
            .run(&caller, &ids, request_id, fingerprint, None, command)
            .await?;
        Ok(pb::AmendNoteResponse {
            note: Some(note_view(&session_name, &session, &note)),
            consistency_token: version.to_string(),
        })
    }
}

fn note_view(session_name: &str, session: &Session, key: &NoteKey) -> pb::Note {
    let note = session.notes.get(key).cloned().unwrap_or_default();
    pb::Note {
        name: note_name(session_name, &crate::read_model::note_key_text(key)),
        text: note.text,
        signed: note.signed,
        signed_by: note.signed_by,
        sign_time: note.signed_at.map(codec::timestamp),
        amendments: note
            .amendments
            .into_iter()
            .map(|amendment| pb::Amendment {
                text: amendment.text,
                staff_id: amendment.staff_id,
                time: Some(codec::timestamp(amendment.at)),
            })
            .collect(),
    }
}
