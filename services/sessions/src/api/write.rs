//! Commands at the edge: each request is read into the application's command (typed
//! resource names, checked fields, every bad field at once, the request id and the
//! request's fingerprint), run by [`crate::app::Commands`] (which checks the caller
//! against the access table first), and its answer mapped to protobuf.

use circle_grpc::{ApiError, Caller, Violations, named};
use circle_names::{GroupName, Id, NoteName, ParticipantName, SessionName, Tenant};
use circle_proto::sessions::v1 as pb;
use circle_service::Fingerprint;
use tonic::Request;

use super::wire::{note_to_wire, roster_entry_to_wire, session_to_wire};
use super::{ApiResult, SessionsApi, caller};
use crate::app::{Attendance, CheckIn, Command, MemberNote, Move, NewSession};
use crate::codec;
use crate::domain::session::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES};

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

/// The parts every command request has, read in the order every command reads them:
/// its resource name (refused at once when of another network), any other names,
/// then the request id; with the bad fields found so far.
struct Parts<N> {
    name: Option<N>,
    request_id: String,
    fingerprint: Fingerprint,
    violations: Violations,
}

impl<N> Parts<N> {
    /// The command for the application on the resource name read: its fields, or
    /// every bad field.
    fn command<F>(mut self, fields: Option<F>) -> Command<N, F> {
        let resource = self.name.take();
        self.command_on(resource, fields)
    }

    /// [`Parts::command`] on another resource (made of the names read).
    fn command_on<R, F>(self, resource: Option<R>, fields: Option<F>) -> Command<R, F> {
        Command {
            resource,
            fields: self.violations.finish(fields),
            request_id: self.request_id,
            fingerprint: self.fingerprint,
        }
    }
}

/// Reads the resource name in `field`, the other names (`other_names`) and the
/// request id of a command request.
fn parts<N: Tenant>(
    caller: &Caller,
    fingerprint: Fingerprint,
    field: &str,
    name: &str,
    request_id: &str,
    other_names: impl FnOnce(&mut Violations) -> Result<(), ApiError>,
) -> ApiResult<Parts<N>> {
    let mut violations = Violations::default();
    let name = named::<N>(caller, &mut violations, field, name)?;
    other_names(&mut violations)?;
    let request_id = circle_grpc::request_id_field(&mut violations, request_id);
    Ok(Parts {
        name,
        request_id,
        fingerprint,
        violations,
    })
}

fn note_text(violations: &mut Violations, text: &str) -> Option<String> {
    violations.check("text", circle_grpc::paragraphs(text, MAX_NOTE_CHARS, true))
}

impl SessionsApi {
    pub(super) async fn schedule_session(
        &self,
        request: Request<pb::ScheduleSessionRequest>,
    ) -> ApiResult<pb::ScheduleSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut parts = parts::<GroupName>(
            &caller,
            fingerprint,
            "parent",
            &request.parent,
            &request.request_id,
            |_| Ok(()),
        )?;
        let violations = &mut parts.violations;
        let starts_at = violations.check(
            "start_time",
            circle_calendar::parse_required_time(
                request.start_time,
                &self.commands.session_starts(),
            ),
        );
        let duration = violations.check("duration_minutes", duration(request.duration_minutes));
        let session = if request.session_id.is_empty() {
            None
        } else {
            violations.check(
                "session_id",
                Id::parse(&request.session_id).map_err(|error| error.to_string()),
            )
        };
        let fields = starts_at
            .zip(duration)
            .map(|(starts_at, duration_minutes)| NewSession {
                session,
                starts_at,
                duration_minutes,
            });
        let written = self
            .commands
            .schedule_session(&caller, parts.command(fields))
            .await?;
        Ok(pb::ScheduleSessionResponse {
            consistency_token: written.consistency_token(),
            session: Some(session_to_wire(written.value)),
        })
    }

    pub(super) async fn reschedule_session(
        &self,
        request: Request<pb::RescheduleSessionRequest>,
    ) -> ApiResult<pb::RescheduleSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let violations = &mut parts.violations;
        let starts_at = violations.check(
            "start_time",
            circle_calendar::parse_required_time(
                request.start_time,
                &self.commands.session_starts(),
            ),
        );
        let duration_minutes = if request.duration_minutes == 0 {
            Some(None)
        } else {
            violations
                .check("duration_minutes", duration(request.duration_minutes))
                .map(Some)
        };
        let etag = violations.check("etag", circle_grpc::etag(&request.etag));
        let fields = match (starts_at, duration_minutes, etag) {
            (Some(starts_at), Some(duration_minutes), Some(etag)) => Some(Move {
                starts_at,
                duration_minutes,
                etag,
            }),
            _ => None,
        };
        let written = self
            .commands
            .reschedule_session(&caller, parts.command(fields))
            .await?;
        Ok(pb::RescheduleSessionResponse {
            consistency_token: written.consistency_token(),
            session: Some(session_to_wire(written.value)),
        })
    }

    pub(super) async fn cancel_session(
        &self,
        request: Request<pb::CancelSessionRequest>,
    ) -> ApiResult<pb::CancelSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let reason = parts
            .violations
            .check("reason", circle_grpc::line(&request.reason, 200, true));
        let written = self
            .commands
            .cancel_session(&caller, parts.command(reason))
            .await?;
        Ok(pb::CancelSessionResponse {
            consistency_token: written.consistency_token(),
            session: Some(session_to_wire(written.value)),
        })
    }

    pub(super) async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> ApiResult<pb::StartSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let written = self
            .commands
            .start_session(&caller, parts.command(Some(())))
            .await?;
        Ok(pb::StartSessionResponse {
            consistency_token: written.consistency_token(),
            session: Some(session_to_wire(written.value)),
        })
    }

    pub(super) async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> ApiResult<pb::CloseSessionResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let written = self
            .commands
            .close_session(&caller, parts.command(Some(())))
            .await?;
        Ok(pb::CloseSessionResponse {
            consistency_token: written.consistency_token(),
            session: Some(session_to_wire(written.value)),
        })
    }

    pub(super) async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> ApiResult<pb::RecordAttendanceResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut participant = None;
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |violations| {
                participant = named::<ParticipantName>(
                    &caller,
                    violations,
                    "participant",
                    &request.participant,
                )?;
                Ok(())
            },
        )?;
        let status = parts.violations.check(
            "status",
            codec::status_from_wire(request.status)
                .ok_or_else(|| "must be present, late, left early, absent or excused".to_owned()),
        );
        let fields = participant
            .zip(status)
            .map(|(participant, status)| Attendance {
                participant,
                status,
                minutes: request.minutes_attended,
            });
        let written = self
            .commands
            .record_attendance(&caller, parts.command(fields))
            .await?;
        Ok(pb::RecordAttendanceResponse {
            consistency_token: written.consistency_token(),
            entry: Some(roster_entry_to_wire(written.value)),
        })
    }

    pub(super) async fn record_session_check_in(
        &self,
        request: Request<pb::RecordSessionCheckInRequest>,
    ) -> ApiResult<pb::RecordSessionCheckInResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut participant = None;
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |violations| {
                participant = named::<ParticipantName>(
                    &caller,
                    violations,
                    "participant",
                    &request.participant,
                )?;
                Ok(())
            },
        )?;
        let violations = &mut parts.violations;
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
        let check_in = CheckIn {
            mood: request.mood,
            craving: request.craving,
            share: request.share.trim().to_owned(),
        };
        let resource = parts.name.take().zip(participant);
        let written = self
            .commands
            .record_session_check_in(&caller, parts.command_on(resource, Some(check_in)))
            .await?;
        Ok(pb::RecordSessionCheckInResponse {
            consistency_token: written.consistency_token(),
        })
    }

    pub(super) async fn write_shared_note(
        &self,
        request: Request<pb::WriteSharedNoteRequest>,
    ) -> ApiResult<pb::WriteSharedNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let text = note_text(&mut parts.violations, &request.text);
        let written = self
            .commands
            .write_shared_note(&caller, parts.command(text))
            .await?;
        Ok(pb::WriteSharedNoteResponse {
            consistency_token: written.consistency_token(),
            note: Some(note_to_wire(written.value)),
        })
    }

    pub(super) async fn write_member_note(
        &self,
        request: Request<pb::WriteMemberNoteRequest>,
    ) -> ApiResult<pb::WriteMemberNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut participant = None;
        let mut parts = parts::<SessionName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |violations| {
                participant = named::<ParticipantName>(
                    &caller,
                    violations,
                    "participant",
                    &request.participant,
                )?;
                Ok(())
            },
        )?;
        let text = note_text(&mut parts.violations, &request.text);
        let fields = participant
            .zip(text)
            .map(|(participant, text)| MemberNote { participant, text });
        let written = self
            .commands
            .write_member_note(&caller, parts.command(fields))
            .await?;
        Ok(pb::WriteMemberNoteResponse {
            consistency_token: written.consistency_token(),
            note: Some(note_to_wire(written.value)),
        })
    }

    pub(super) async fn sign_note(
        &self,
        request: Request<pb::SignNoteRequest>,
    ) -> ApiResult<pb::SignNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let parts = parts::<NoteName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let written = self
            .commands
            .sign_note(&caller, parts.command(Some(())))
            .await?;
        Ok(pb::SignNoteResponse {
            consistency_token: written.consistency_token(),
            note: Some(note_to_wire(written.value)),
        })
    }

    pub(super) async fn amend_note(
        &self,
        request: Request<pb::AmendNoteRequest>,
    ) -> ApiResult<pb::AmendNoteResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut parts = parts::<NoteName>(
            &caller,
            fingerprint,
            "name",
            &request.name,
            &request.request_id,
            |_| Ok(()),
        )?;
        let text = note_text(&mut parts.violations, &request.text);
        let written = self
            .commands
            .amend_note(&caller, parts.command(text))
            .await?;
        Ok(pb::AmendNoteResponse {
            consistency_token: written.consistency_token(),
            note: Some(note_to_wire(written.value)),
        })
    }
}
