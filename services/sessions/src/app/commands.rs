//! The commands of the sessions service: one public function per command RPC, and
//! the crate-private steps the service's own process manager (the materialiser)
//! takes, which share the RPCs' internals. Each RPC function checks the caller
//! against the access table on the names it is given first (the tenant, then the
//! row; only the role when a name did not parse), then refuses bad fields, then
//! resolves what the command needs (the session, roster facts, the other members'
//! names), builds the commit metadata and runs it. Inputs are typed names and checked
//! fields, answers the state the commit left (as the queries show it: its personal
//! text, sealed in the state, opened for the answer — `super::personal`), errors
//! [`ApiError`]s. Each step checks its own row (`access::step_rule`), names its
//! request id after its cause and sets what only the materialiser may set (a
//! session's origin `schedule`); it answers with a [`StepError`].

use std::sync::Arc;

use circle_calendar::{Clock, TimeRange};
use circle_eventstore::{CommitMeta, EventStore, ExecuteError};
use circle_grpc::{ApiError, Caller, Target};
use circle_names::{GroupName, Id, NoteName, ParticipantName, SessionName};
use circle_service::Fingerprint;
use circle_vault::store::KeyStore;
use sqlx::PgPool;
use tonic::Code;

use super::access::{self, Operation, Step};
use super::aggregates::{CommandError, Refusal, Sessions};
use super::errors::command_error;
use super::facts::GroupPlace;
use super::personal;
use super::{NoteView, RosterLine, SessionView};
use crate::domain::{
    AttendanceStatus, DomainError, NoteKey, Origin, Session, SessionCommand, Time,
};

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
    pub fingerprint: Fingerprint,
}

impl<R, F> Command<R, F> {
    /// The command's parts once it is whole, with its commit metadata.
    fn whole(self, caller: &Caller) -> Result<(R, F, CommitMeta), ApiError> {
        let fields = self.fields?;
        let resource = self.resource.ok_or_else(ApiError::internal)?;
        let meta = circle_service::commit_meta(caller, self.request_id, self.fingerprint);
        Ok((resource, fields, meta))
    }
}

/// Why a process-manager step did not do what it was asked.
#[derive(Debug)]
pub(crate) enum StepError {
    /// Refused by the access table: a bug (only the service's process manager takes
    /// steps), failing the same way every time.
    Refused(ApiError),
    /// The session or group moved on since the materialiser read it (the session
    /// exists, started, was cancelled, moved or is gone; the group was archived or is
    /// gone): the step no longer applies, and a later pass decides again.
    MovedOn(ApiError),
    /// Anything else (the store or database unavailable, …): the pass fails and is
    /// retried.
    Failed(ApiError),
}

/// Why a command shared by an RPC and a step did not run, before it becomes what a
/// client sees ([`Failure::into_api`]) or what the materialiser does
/// ([`StepError`]).
#[derive(Debug)]
enum Failure {
    GroupNotFound(String),
    GroupArchived,
    Command(CommandError),
    Other(ApiError),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Other(error)
    }
}

impl Failure {
    fn into_api(self) -> ApiError {
        match self {
            Failure::GroupNotFound(group) => ApiError::new(
                Code::NotFound,
                "GROUP_NOT_FOUND",
                format!("{group} not found"),
            ),
            Failure::GroupArchived => ApiError::new(
                Code::FailedPrecondition,
                "GROUP_ARCHIVED",
                "the group is archived",
            ),
            Failure::Command(error) => command_error(error),
            Failure::Other(error) => error,
        }
    }

    /// Whether the session a step was decided from has moved on since: it started,
    /// was cancelled or is not there (in this group). `etag`: a step made only at the
    /// version it was decided from also moved on when the session changed since.
    fn session_moved_on(&self, etag: bool) -> bool {
        use DomainError as E;
        match self {
            Failure::Command(ExecuteError::Rejected(Refusal::Domain(
                E::SessionNotFound | E::SessionCancelled | E::SessionAlreadyStarted,
            ))) => true,
            Failure::Command(ExecuteError::Rejected(Refusal::WrongGroup)) => true,
            Failure::Command(ExecuteError::EtagMismatch { .. }) => etag,
            _ => false,
        }
    }

    /// A step's failure: moved on when `moved_on` says so, else failed.
    fn step_error(self, moved_on: bool) -> StepError {
        if moved_on {
            StepError::MovedOn(self.into_api())
        } else {
            StepError::Failed(self.into_api())
        }
    }
}

// The request ids of the materialiser's steps, named after their cause. They must
// never change: a step's id after an upgrade must be the one before it, or the step
// would be taken twice.

fn materialize_request_id(session: &Id) -> String {
    format!("pm:materialize-{session}")
}

/// One move per version of the session it was decided from.
fn move_request_id(session: &Id, version: i64) -> String {
    format!("pm:reschedule-{session}-from-{version}")
}

fn unschedule_request_id(session: &Id) -> String {
    format!("pm:unschedule-{session}")
}

/// Checks `caller` against the row of a process-manager step, in `network`.
fn permit_step(caller: &Caller, step: Step, network: &Id) -> Result<(), StepError> {
    access::step_rule(step)
        .permit(caller, network.as_str(), &Target::default())
        .map_err(StepError::Refused)
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
/// from the group and the request id, so a retry schedules it once. Its origin is the
/// application's to set: `ad-hoc` for the RPC, `schedule` only for the materialiser's
/// step.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub session: Option<Id>,
    pub starts_at: Time,
    pub duration_minutes: u32,
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

/// What the commands need: the session aggregates, the pool (the roster facts), the
/// clock and the key store (the commits are sealed with it, the answers and the other
/// members' names opened).
pub struct Commands {
    sessions: Sessions,
    pub(super) pool: PgPool,
    clock: Arc<dyn Clock>,
    pub(super) vault: KeyStore,
}

/// A resource of a group in one clinic of a network: what the access check of most
/// commands looks at.
trait InClinic {
    fn network(&self) -> &Id;
    fn clinic(&self) -> &Id;
    fn group(&self) -> GroupName;
}

impl InClinic for GroupName {
    fn network(&self) -> &Id {
        &self.network
    }
    fn clinic(&self) -> &Id {
        &self.clinic
    }
    fn group(&self) -> GroupName {
        self.clone()
    }
}

impl InClinic for SessionName {
    fn network(&self) -> &Id {
        &self.network
    }
    fn clinic(&self) -> &Id {
        &self.clinic
    }
    fn group(&self) -> GroupName {
        self.group_name()
    }
}

impl InClinic for NoteName {
    fn network(&self) -> &Id {
        &self.network
    }
    fn clinic(&self) -> &Id {
        &self.clinic
    }
    fn group(&self) -> GroupName {
        self.session_name().group_name()
    }
}

/// Checks `caller` for `operation` on the network and clinic of the command's
/// resource (only the role when its name did not parse), then takes the command's
/// parts.
fn checked<R: InClinic, F>(
    caller: &Caller,
    operation: Operation,
    input: Command<R, F>,
) -> Result<(R, F, CommitMeta), ApiError> {
    let place = input
        .resource
        .as_ref()
        .map(|resource| (resource.network(), resource.clinic()));
    access::permit_in_clinic(caller, operation, place)?;
    input.whole(caller)
}

impl Commands {
    /// [`checked`] for a row of the group's clinical record: the tenant and the role
    /// first, with nothing looked up; then, with whether the roster lists the caller
    /// as one of the group's facilitators, the clinic and the group (a group the roster
    /// does not know lists no one: refused as one of others is, before anything says
    /// it does not exist). Then the command's parts.
    async fn checked_by_facilitator<R: InClinic, F>(
        &self,
        caller: &Caller,
        operation: Operation,
        input: Command<R, F>,
    ) -> Result<(R, F, CommitMeta), ApiError> {
        match &input.resource {
            Some(resource) => {
                access::permit_unplaced(
                    caller,
                    operation,
                    Some((resource.network(), Target::default())),
                )?;
                let facilitates =
                    super::facts::facilitates(&self.pool, caller, &resource.group()).await?;
                access::permit_in_group(
                    caller,
                    operation,
                    Some((resource.network(), resource.clinic())),
                    facilitates,
                )?;
            }
            None => access::permit(caller, operation, None)?,
        }
        input.whole(caller)
    }
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
        text_withheld: false,
    }
}

impl Commands {
    pub fn new(store: EventStore, pool: PgPool, clock: Arc<dyn Clock>, vault: KeyStore) -> Self {
        Self {
            sessions: Sessions::new(store, clock.clone(), vault.clone()),
            pool,
            clock,
            vault,
        }
    }

    /// A note as the session holds it right after a command, its text opened.
    async fn opened_note(
        &self,
        name: NoteName,
        session: &Session,
        key: &NoteKey,
    ) -> Result<NoteView, ApiError> {
        let network = name.network.clone();
        let mut view = [note_view(name, session, key)];
        personal::open(&self.vault, &network, &mut view).await?;
        let [view] = view;
        Ok(view)
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
        self.execute(name, meta, etag, command)
            .await
            .map_err(command_error)
    }

    async fn execute(
        &self,
        name: &SessionName,
        meta: &CommitMeta,
        etag: Option<u64>,
        command: SessionCommand,
    ) -> Result<(Session, u64), CommandError> {
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
    ) -> Result<Written<SessionView>, Failure> {
        let (session, version) = self
            .execute(&name, meta, etag, command)
            .await
            .map_err(Failure::Command)?;
        Ok(Written {
            value: session_view(name, &session, version)?,
            version,
        })
    }

    /// Schedules a session in a group the roster knows, not archived.
    async fn schedule(
        &self,
        group: GroupName,
        new: NewSession,
        origin: Origin,
        meta: &CommitMeta,
    ) -> Result<Written<SessionView>, Failure> {
        let session_id = match new.session {
            Some(id) => id,
            None => Id::derived(&format!("{group}/ad-hoc/{}", meta.request_id)),
        };
        match self.group_place(&group).await? {
            Some(GroupPlace {
                clinic_id,
                archived,
            }) if group.clinic == clinic_id.as_str() => {
                if archived {
                    return Err(Failure::GroupArchived);
                }
            }
            _ => return Err(Failure::GroupNotFound(group.to_string())),
        }
        let command = SessionCommand::Schedule {
            group_id: group.group.as_str().to_owned(),
            clinic_id: group.clinic.as_str().to_owned(),
            starts_at: new.starts_at,
            duration_minutes: new.duration_minutes,
            origin,
        };
        self.session_answer(group.session(session_id), meta, None, command)
            .await
    }

    async fn reschedule(
        &self,
        name: SessionName,
        moved: Move,
        meta: &CommitMeta,
    ) -> Result<Written<SessionView>, Failure> {
        let command = SessionCommand::Reschedule {
            starts_at: moved.starts_at,
            duration_minutes: moved.duration_minutes,
        };
        self.session_answer(name, meta, moved.etag, command).await
    }

    /// Cancels a session for `reason`; the answer shows the reason given.
    async fn cancel(
        &self,
        name: SessionName,
        reason: String,
        meta: &CommitMeta,
    ) -> Result<Written<SessionView>, Failure> {
        let command = SessionCommand::Cancel {
            reason: reason.clone(),
        };
        let mut written = self.session_answer(name, meta, None, command).await?;
        written.value.cancel_reason = reason;
        Ok(written)
    }

    /// Schedules an ad-hoc session in a group the roster knows, not archived.
    pub async fn schedule_session(
        &self,
        caller: &Caller,
        input: Command<GroupName, NewSession>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (group, new, meta) = checked(caller, Operation::ScheduleSession, input)?;
        self.schedule(group, new, Origin::AdHoc, &meta)
            .await
            .map_err(Failure::into_api)
    }

    pub async fn reschedule_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, Move>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, moved, meta) = checked(caller, Operation::RescheduleSession, input)?;
        self.reschedule(name, moved, &meta)
            .await
            .map_err(Failure::into_api)
    }

    /// Cancels a session for `reason`; the answer shows the reason given.
    pub async fn cancel_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, String>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, reason, meta) = checked(caller, Operation::CancelSession, input)?;
        self.cancel(name, reason, &meta)
            .await
            .map_err(Failure::into_api)
    }

    /// The materialiser's step: a session a group's schedule produces, with origin
    /// `schedule`. Request id `pm:materialize-<session>`. Moved on: the session
    /// exists, or the group was archived (or is gone) since the pass read it.
    pub(crate) async fn materialize_session(
        &self,
        caller: &Caller,
        group: &GroupName,
        session: Id,
        starts_at: Time,
        duration_minutes: u32,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::MaterializeSession, &group.network)?;
        let meta = circle_service::step_meta(caller, materialize_request_id(&session));
        let new = NewSession {
            session: Some(session),
            starts_at,
            duration_minutes,
        };
        match self
            .schedule(group.clone(), new, Origin::Schedule, &meta)
            .await
        {
            Ok(_) => Ok(()),
            Err(failure) => {
                let moved_on = matches!(
                    failure,
                    Failure::GroupArchived
                        | Failure::GroupNotFound(_)
                        | Failure::Command(ExecuteError::Rejected(Refusal::Domain(
                            DomainError::SessionExists
                        )))
                );
                Err(failure.step_error(moved_on))
            }
        }
    }

    /// The materialiser's step: a generated session still to come follows its
    /// schedule's new time and length, made only while the session is at `version`,
    /// the one it was decided from. Request id `pm:reschedule-<session>-from-<version>`:
    /// a retry of this decision is answered from the log, a later decision is new.
    /// Moved on: the session changed since (etag), started, was cancelled or is gone.
    pub(crate) async fn move_generated_session(
        &self,
        caller: &Caller,
        name: SessionName,
        starts_at: Time,
        duration_minutes: u32,
        version: i64,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::MoveGeneratedSession, &name.network)?;
        let request_id = move_request_id(&name.session, version);
        let meta = circle_service::step_meta(caller, request_id);
        let moved = Move {
            starts_at,
            duration_minutes: Some(duration_minutes),
            etag: Some(version as u64),
        };
        match self.reschedule(name, moved, &meta).await {
            Ok(_) => Ok(()),
            Err(failure) => {
                let moved_on = failure.session_moved_on(true);
                Err(failure.step_error(moved_on))
            }
        }
    }

    /// The materialiser's step: a generated session the schedule no longer produces
    /// is cancelled for `reason`. Request id `pm:unschedule-<session>`. Moved on: the
    /// session started, was cancelled or is gone.
    pub(crate) async fn cancel_generated_session(
        &self,
        caller: &Caller,
        name: SessionName,
        reason: &str,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::CancelGeneratedSession, &name.network)?;
        let request_id = unschedule_request_id(&name.session);
        let meta = circle_service::step_meta(caller, request_id);
        match self.cancel(name, reason.to_owned(), &meta).await {
            Ok(_) => Ok(()),
            Err(failure) => {
                let moved_on = failure.session_moved_on(false);
                Err(failure.step_error(moved_on))
            }
        }
    }

    pub async fn start_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, ()>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, (), meta) = checked(caller, Operation::StartSession, input)?;
        self.session_answer(name, &meta, None, SessionCommand::Start)
            .await
            .map_err(Failure::into_api)
    }

    pub async fn close_session(
        &self,
        caller: &Caller,
        input: Command<SessionName, ()>,
    ) -> Result<Written<SessionView>, ApiError> {
        let (name, (), meta) = checked(caller, Operation::CloseSession, input)?;
        self.session_answer(name, &meta, None, SessionCommand::Close)
            .await
            .map_err(Failure::into_api)
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

    /// Records a member's attendance; the answer is their roster line. Refused for a
    /// forgotten member (`super::personal`).
    pub async fn record_attendance(
        &self,
        caller: &Caller,
        input: Command<SessionName, Attendance>,
    ) -> Result<Written<RosterLine>, ApiError> {
        let (name, attendance, meta) = checked(caller, Operation::RecordAttendance, input)?;
        let participant = &attendance.participant;
        caller.require_network(participant.network.as_str(), &participant.to_string())?;
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
    /// or by staff for them. Refused for a forgotten member, whether or not it shares
    /// a line (`super::personal`).
    pub async fn record_session_check_in(
        &self,
        caller: &Caller,
        input: Command<(SessionName, ParticipantName), CheckIn>,
    ) -> Result<Written<()>, ApiError> {
        match &input.resource {
            Some((session, participant)) => {
                // Both names in the caller's network.
                caller
                    .require_network(participant.network.as_str(), &participant.to_string())
                    .map_err(ApiError::from)?;
                access::permit(
                    caller,
                    Operation::RecordSessionCheckIn,
                    Some((
                        &session.network,
                        Target {
                            clinics: &[session.clinic.as_str()],
                            participant: Some(participant.participant.as_str()),
                            ..Target::default()
                        },
                    )),
                )?
            }
            None => access::permit(caller, Operation::RecordSessionCheckIn, None)?,
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
        let (name, text, meta) = self
            .checked_by_facilitator(caller, Operation::WriteSharedNote, input)
            .await?;
        let command = SessionCommand::WriteSharedNote { text };
        let (session, version) = self.run(&name, &meta, None, command).await?;
        let key = NoteKey::Shared;
        Ok(Written {
            value: self
                .opened_note(note_name(&name, &key)?, &session, &key)
                .await?,
            version,
        })
    }

    /// Writes a member's note, refused when it names another member of the group.
    pub async fn write_member_note(
        &self,
        caller: &Caller,
        input: Command<SessionName, MemberNote>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, note, meta) = self
            .checked_by_facilitator(caller, Operation::WriteMemberNote, input)
            .await?;
        let participant = &note.participant;
        caller.require_network(participant.network.as_str(), &participant.to_string())?;
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
            value: self
                .opened_note(name.note(note.participant.participant), &session, &key)
                .await?,
            version,
        })
    }

    /// Signs a note as the caller: one of the group's facilitators, recorded as the
    /// token's subject.
    pub async fn sign_note(
        &self,
        caller: &Caller,
        input: Command<NoteName, ()>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, (), meta) = self
            .checked_by_facilitator(caller, Operation::SignNote, input)
            .await?;
        let key = NoteKey::from_id(name.note.as_str());
        let command = SessionCommand::Sign {
            note: key.clone(),
            staff_id: caller.actor_id.clone(),
        };
        let (session, version) = self.run(&name.session_name(), &meta, None, command).await?;
        Ok(Written {
            value: self.opened_note(name, &session, &key).await?,
            version,
        })
    }

    /// Amends a signed note as the caller (one of the group's facilitators, recorded as
    /// the token's subject); a member's amendment, like their note, may not name another
    /// member.
    pub async fn amend_note(
        &self,
        caller: &Caller,
        input: Command<NoteName, String>,
    ) -> Result<Written<NoteView>, ApiError> {
        let (name, text, meta) = self
            .checked_by_facilitator(caller, Operation::AmendNote, input)
            .await?;
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
            value: self.opened_note(name, &session, &key).await?,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> Id {
        Id::parse(value).unwrap_or_else(|error| panic!("{value:?}: {error}"))
    }

    #[test]
    fn the_materialisers_request_ids_stay_as_they_were() {
        let session = id("2f1d6c0e-52b4-5a8e-9e55-0d3f6a1c7b20");
        assert_eq!(
            materialize_request_id(&session),
            "pm:materialize-2f1d6c0e-52b4-5a8e-9e55-0d3f6a1c7b20"
        );
        assert_eq!(
            move_request_id(&session, 7),
            "pm:reschedule-2f1d6c0e-52b4-5a8e-9e55-0d3f6a1c7b20-from-7"
        );
        assert_eq!(
            unschedule_request_id(&session),
            "pm:unschedule-2f1d6c0e-52b4-5a8e-9e55-0d3f6a1c7b20"
        );
    }

    #[test]
    fn a_session_moved_on_is_told_by_its_refusal_not_its_reason_text() {
        let refused = |error: DomainError| Failure::Command(ExecuteError::Rejected(error.into()));
        for error in [
            DomainError::SessionNotFound,
            DomainError::SessionCancelled,
            DomainError::SessionAlreadyStarted,
        ] {
            assert!(refused(error).session_moved_on(false));
        }
        assert!(
            Failure::Command(ExecuteError::Rejected(Refusal::WrongGroup)).session_moved_on(false)
        );
        let stale = || Failure::Command(ExecuteError::EtagMismatch { current: 3 });
        assert!(stale().session_moved_on(true));
        assert!(!stale().session_moved_on(false));
        assert!(!refused(DomainError::SessionExists).session_moved_on(true));
        assert!(!Failure::Command(ExecuteError::RequestIdReused).session_moved_on(true));
        assert!(!Failure::Other(ApiError::internal()).session_moved_on(true));
    }
}
