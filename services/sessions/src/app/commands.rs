//! The commands of the sessions service, one function per command RPC, run alike for
//! the gRPC edge and for the service's process manager (the materialiser). Each one
//! checks the caller against the access table on the names it is given first (only
//! the role when a name did not parse), then refuses bad fields, then resolves what
//! the command needs (the session, roster facts, the other members' names), builds
//! the commit metadata and runs it. Inputs are typed names and checked fields,
//! answers the state the commit left (as the queries show it), errors [`ApiError`]s.

use std::sync::Arc;

use circle_calendar::{Clock, TimeRange};
use circle_eventstore::{CommitMeta, EventStore};
use circle_grpc::{ApiError, Caller, Target};
use circle_names::{GroupName, Id, NoteName, ParticipantName, SessionName};
use circle_service::Fingerprint;
use sqlx::PgPool;
use tonic::Code;

use super::access::{self, Operation};
use super::aggregates::Sessions;
use super::facts::GroupPlace;
use super::{NoteView, RosterLine, SessionView};
use crate::domain::{AttendanceStatus, NoteKey, Origin, Session, SessionCommand, Time};

/// How far back a session may start (recording one that took place) and how far ahead.
pub const SESSION_START_YEARS_BACK: u32 = 1;
pub const SESSION_START_YEARS_AHEAD: u32 = 2;

/// A command as its caller gave it: the resource the access check looks at (`None`
/// when a name did not parse), the rest of its input or every bad field (a bad name
/// included), its request id, and the fingerprint of the request that carried it.
///
/// The caller is checked against the access table on the resource first, so a caller
/// who may not run the command is told so whatever else is wrong with the request;
/// only then are bad fields reported.
#[derive(Debug)]
pub struct Command<R, F> {
    pub resource: Option<R>,
    pub fields: Result<F, ApiError>,
    pub request_id: String,
    /// `None` only for a process manager's step, whose request id (derived from its
    /// cause) names it.
    pub fingerprint: Option<Fingerprint>,
}

impl<R, F> Command<R, F> {
    /// A process manager's step: whole, named by its request id.
    pub fn step(resource: R, fields: F, request_id: String) -> Self {
        Self {
            resource: Some(resource),
            fields: Ok(fields),
            request_id,
            fingerprint: None,
        }
    }

    /// The command's parts once it is whole, with its commit metadata.
    fn whole(self, caller: &Caller) -> Result<(R, F, CommitMeta), ApiError> {
        let fields = self.fields?;
        let resource = self.resource.ok_or_else(ApiError::internal)?;
        let meta = match self.fingerprint {
            Some(fingerprint) => circle_service::commit_meta(caller, self.request_id, fingerprint),
            None if caller.is_process_manager() => {
                circle_service::step_meta(caller, self.request_id)
            }
            None => return Err(ApiError::internal()),
        };
        Ok((resource, fields, meta))
    }
}

/// What a command left: its answer and the version of the commit (the consistency
/// token a read after it waits for).
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub version: u64,
}

impl<T> Written<T> {
    pub fn consistency_token(&self) -> String {
        self.version.to_string()
    }
}

/// A session to schedule in a group. Without an id, an ad-hoc session's id derives
/// from the group and the request id, so a retry schedules it once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub session: Option<Id>,
    pub starts_at: Time,
    pub duration_minutes: u32,
    pub origin: Origin,
}

/// A session's new time (and length, `None`: unchanged), made only while the session
/// is at `etag` when one is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub starts_at: Time,
    pub duration_minutes: Option<u32>,
    pub etag: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attendance {
    pub participant: ParticipantName,
    pub status: AttendanceStatus,
    pub minutes: u32,
}

/// A participant's check-in at a session (`share` trimmed).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    pub mood: u32,
    pub craving: u32,
    pub share: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberNote {
    pub participant: ParticipantName,
    pub text: String,
}

/// What the commands need: the session aggregates, the pool (the roster facts) and
/// the clock.
pub struct Commands {
    sessions: Sessions,
    pub(super) pool: PgPool,
    clock: Arc<dyn Clock>,
}

/// A resource in one clinic: what the access check of most commands looks at.
trait InClinic {
    fn clinic(&self) -> &Id;
}

impl InClinic for GroupName {
    fn clinic(&self) -> &Id {
        &self.clinic
    }
}

impl InClinic for SessionName {
    fn clinic(&self) -> &Id {
        &self.clinic
    }
}

impl InClinic for NoteName {
    fn clinic(&self) -> &Id {
        &self.clinic
    }
}

/// Checks `caller` for `operation` on the clinic of the command's resource (only the
/// role when its name did not parse), then takes the command's parts.
fn checked<R: InClinic, F>(
    caller: &Caller,
    operation: Operation,
    input: Command<R, F>,
) -> Result<(R, F, CommitMeta), ApiError> {
    let clinics = input
        .resource
        .as_ref()
        .map(|resource| [resource.clinic().as_str()]);
    let target = clinics.as_ref().map(|clinics| Target {
        clinics,
        ..Target::default()
    });
    access::check_command(caller, operation, target)?;
    input.whole(caller)
}

/// The session as the queries show it, right after a command.
fn session_view(
    name: SessionName,
    session: &Session,
    version: u64,
) -> Result<SessionView, ApiError> {
    let details = session.details.as_ref().ok_or_else(ApiError::internal)?;
    Ok(SessionView {
        name,
        state: Some(session.state),
        starts_at: details.starts_at,
        duration_minutes: details.duration_minutes,
        origin: details.origin,
        cancel_reason: String::new(),
        version: i64::try_from(version).map_err(|_| ApiError::internal())?,
    })
}

/// The name of a session's note.
fn note_name(session: &SessionName, key: &NoteKey) -> Result<NoteName, ApiError> {
    let id = Id::parse(key.id()).map_err(|_| ApiError::internal())?;
    Ok(session.note(id))
}

/// A note as the session holds it right after a command.
fn note_view(name: NoteName, session: &Session, key: &NoteKey) -> NoteView {
    NoteView {
        name,
        note: session.notes.get(key).cloned().unwrap_or_default(),
    }
}

impl Commands {
    pub fn new(store: EventStore, pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self {
            sessions: Sessions::new(store, clock.clone()),
            pool,
            clock,
        }
    }

    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// The times a session may start at, around now.
    pub fn session_starts(&self) -> TimeRange {
        TimeRange::around(
            self.clock.now(),
            SESSION_START_YEARS_BACK,
            SESSION_START_YEARS_AHEAD,
        )
    }

    async fn run(
        &self,
        name: &SessionName,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> Result<(Session, u64), ApiError> {
        let executed = self.sessions.execute(name, meta, etag, command).await?;
        Ok((executed.state().clone(), executed.version()))
    }

    /// Runs a command on a session and answers with the session.
    async fn session_answer(
        &self,
        name: SessionName,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> Result<Written<SessionView>, ApiError> {
        let (session, version) = self.run(&name, meta, etag, command).await?;
        Ok(Written {
            value: session_view(name, &session, version)?,
            version,
        })
    }

    /// Schedules a session in a group the roster knows, not archived.
    pub async fn schedule_session(
        &self,
        caller: &Caller,
        input: Command<GroupName, NewSession>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (group, new, meta) = checked(caller, Operation::ScheduleSession, input)?;
        let session_id = match new.session {
            Some(id) => id,
            None => {
                let seed = format!("{group}/ad-hoc/{}", meta.request_id);
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes());
                Id::parse(&id.to_string()).map_err(|_| ApiError::internal())?
            }
        };
        match self.group_place(&group).await? {
            Some(GroupPlace {
                clinic_id,
                archived,
            }) if group.clinic == clinic_id.as_str() => {
                if archived {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        "GROUP_ARCHIVED",
                        "the group is archived",
                    ));
                }
            }
            _ => {
                return Err(ApiError::new(
                    Code::NotFound,
                    "GROUP_NOT_FOUND",
                    format!("{group} not found"),
                ));
            }
        }
        let command = SessionCommand::Schedule {
            group_id: group.group.as_str().to_owned(),
            clinic_id: group.clinic.as_str().to_owned(),
            starts_at: new.starts_at,
            duration_minutes: new.duration_minutes,
            origin: new.origin,
        };
        self.session_answer(group.session(session_id), &meta, None, command)
            .await
    }

    pub async fn reschedule_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, Move>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, moved, meta) = checked(caller, Operation::RescheduleSession, input)?;
        let command = SessionCommand::Reschedule {
            starts_at: moved.starts_at,
            duration_minutes: moved.duration_minutes,
        };
        self.session_answer(name, &meta, moved.etag, command).await
    }

    /// Cancels a session for `reason`; the answer shows the reason given.
    pub async fn cancel_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, String>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, reason, meta) = checked(caller, Operation::CancelSession, input)?;
        let command = SessionCommand::Cancel {
            reason: reason.clone(),
        };
        let mut written = self.session_answer(name, &meta, None, command).await?;
        written.value.cancel_reason = reason;
        Ok(written)
    }

    pub async fn start_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, ()>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, (), meta) = checked(caller, Operation::StartSession, input)?;
        self.session_answer(name, &meta, None, SessionCommand::Start)
            .await
    }

    pub async fn close_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, ()>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, (), meta) = checked(caller, Operation::CloseSession, input)?;
        self.session_answer(name, &meta, None, SessionCommand::Close)
            .await
    }

    /// When the session started, for the roster check (a session that exists has
    /// details).
    async fn starts_at(&self, name: &SessionName) -> Result<Time, ApiError> {
        let session = self.sessions.load(name).await?;
        session
            .details
            .as_ref()
            .map(|details| details.starts_at)
            .ok_or_else(ApiError::internal)
    }

    /// Records a member's attendance; the answer is their roster line.
    pub async fn record_attendance(
        &self,
        caller: &Caller,
        input: Command<SessionName, Attendance>,
    ) -> Result<Written<RosterLine>, ApiError> {
        let (name, attendance, meta) = checked(caller, Operation::RecordAttendance, input)?;
        let participant_id = attendance.participant.participant.as_str().to_owned();
        let starts_at = self.starts_at(&name).await?;
        let on_roster = self.on_roster(&name, &participant_id, starts_at).await?;
        let command = SessionCommand::RecordAttendance {
            participant_id: participant_id.clone(),
            on_roster,
            status: attendance.status,
            minutes: attendance.minutes,
        };
        let (session, version) = self.run(&name, &meta, None, command).await?;
        let (status, minutes) = session
            .attendance
            .get(&participant_id)
            .copied()
            .ok_or_else(ApiError::request_id_reused)?;
        Ok(Written {
            value: RosterLine {
                checked_in: session.checked_in.contains(&participant_id),
                participant: attendance.participant,
                attendance: Some(status),
                minutes_attended: minutes,
                note: None,
            },
            version,
        })
    }

    /// Records a participant's check-in at a session: by the participant themselves,
    /// or by staff for them.
    pub async fn record_session_check_in(
        &self,
        caller: &Caller,
        input: Command<(SessionName, ParticipantName), CheckIn>,
    ) -> Result<Written<()>, ApiError> {
        match &input.resource {
            Some((session, participant)) => access::check_command(
                caller,
                Operation::RecordSessionCheckIn,
                Some(Target {
                    clinics: &[session.clinic.as_str()],
                    participant: Some(participant.participant.as_str()),
                    caller_is_member: false,
                }),
            )?,
            None => access::check_command(caller, Operation::RecordSessionCheckIn, None)?,
        }
        let ((name, participant), check_in, meta) = input.whole(caller)?;
        let participant_id = participant.participant.as_str();
        let starts_at = self.starts_at(&name).await?;
        let on_roster = self.on_roster(&name, participant_id, starts_at).await?;
        let command = SessionCommand::RecordCheckIn {
            participant_id: participant_id.to_owned(),
            on_roster,
            mood: check_in.mood,
            craving: check_in.craving,
            share: check_in.share,
        };
        let (_, version) = self.run(&name, &meta, None, command).await?;
        Ok(Written { value: (), version })
    }

    pub async fn write_shared_note(
        &self,
        caller: &Caller,
        input: Command<SessionName, String>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, text, meta) = checked(caller, Operation::WriteSharedNote, input)?;
        let command = SessionCommand::WriteSharedNote { text };
        let (session, version) = self.run(&name, &meta, None, command).await?;
        let key = NoteKey::Shared;
        Ok(Written {
            value: note_view(note_name(&name, &key)?, &session, &key),
            version,
        })
    }

    /// Writes a member's note, refused when it names another member of the group.
    pub async fn write_member_note(
        &self,
        caller: &Caller,
        input: Command<SessionName, MemberNote>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, note, meta) = checked(caller, Operation::WriteMemberNote, input)?;
        let participant_id = note.participant.participant.as_str();
        let other_member_names = self.other_member_names(&name, participant_id).await?;
        let command = SessionCommand::WriteMemberNote {
            participant_id: participant_id.to_owned(),
            text: note.text,
            other_member_names,
        };
        let (session, version) = self.run(&name, &meta, None, command).await?;
        let key = NoteKey::Member(participant_id.to_owned());
        Ok(Written {
            value: note_view(name.note(note.participant.participant), &session, &key),
            version,
        })
    }

    /// Signs a note as the caller.
    pub async fn sign_note(
        &self,
        caller: &Caller,
        input: Command<NoteName, ()>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, (), meta) = checked(caller, Operation::SignNote, input)?;
        let key = NoteKey::from_id(name.note.as_str());
        let command = SessionCommand::Sign {
            note: key.clone(),
            staff_id: caller.actor_id.clone(),
        };
        let (session, version) = self.run(&name.session_name(), &meta, None, command).await?;
        Ok(Written {
            value: note_view(name, &session, &key),
            version,
        })
    }

    /// Amends a signed note as the caller; a member's amendment, like their note, may
    /// not name another member.
    pub async fn amend_note(
        &self,
        caller: &Caller,
        input: Command<NoteName, String>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, text, meta) = checked(caller, Operation::AmendNote, input)?;
        let session_name = name.session_name();
        let key = NoteKey::from_id(name.note.as_str());
        let other_member_names = match &key {
            NoteKey::Member(participant_id) => {
                self.other_member_names(&session_name, participant_id)
                    .await?
            }
            NoteKey::Shared => Vec::new(),
        };
        let command = SessionCommand::Amend {
            note: key.clone(),
            text,
            staff_id: caller.actor_id.clone(),
            other_member_names,
        };
        let (session, version) = self.run(&session_name, &meta, None, command).await?;
        Ok(Written {
            value: note_view(name, &session, &key),
            version,
        })
    }
}
