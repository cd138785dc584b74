//! The sessions domain, pure and synchronous: one aggregate per session with
//! `decide(&state, command)` and `evolve(state, &event)`, and the check that keeps an
//! individual note from naming other members. Whatever a command needs from elsewhere
//! (is the participant on the roster, the names of the other members) is resolved
//! before the command is built. `personal.rs` says which fields of the events are
//! personal and whose (the repository seals them; see `crate::app` for where they are
//! opened).

pub mod names;
pub mod personal;
pub mod session;

pub use circle_calendar::Time;
pub use session::{
    AttendanceStatus, NoteKey, Origin, Session, SessionCommand, SessionState, decide, evolve,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SessionScheduled {
        group_id: String,
        clinic_id: String,
        starts_at: Time,
        duration_minutes: u32,
        origin: Origin,
    },
    SessionRescheduled {
        starts_at: Time,
        duration_minutes: u32,
    },
    SessionCancelled {
        reason: String,
    },
    SessionStarted,
    SessionClosed,
    AttendanceRecorded {
        participant_id: String,
        status: AttendanceStatus,
        minutes: u32,
    },
    SessionCheckInRecorded {
        participant_id: String,
        mood: u32,
        craving: u32,
        share: String,
    },
    SharedNoteWritten {
        text: String,
    },
    MemberNoteWritten {
        participant_id: String,
        text: String,
    },
    NoteSigned {
        note: NoteKey,
        staff_id: String,
    },
    NoteAmended {
        note: NoteKey,
        text: String,
        staff_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the session already exists")]
    SessionExists,
    #[error("the session does not exist")]
    SessionNotFound,
    #[error("the session was cancelled")]
    SessionCancelled,
    #[error("the session has not started")]
    SessionNotStarted,
    #[error("the session has already started")]
    SessionAlreadyStarted,
    #[error("the session is not in progress")]
    SessionNotInProgress,
    #[error("the participant is not on this session's roster")]
    NotOnRoster,
    #[error("minutes attended cannot exceed the session's {duration} minutes")]
    MinutesOverLength { duration: u32 },
    #[error("an absent or excused member attended no minutes")]
    MinutesForAbsentee,
    #[error("an attending member attended at least one minute")]
    NoMinutesForAttendee,
    #[error("the member did not attend this session")]
    MemberAbsent,
    #[error("the note does not exist")]
    NoteNotFound,
    #[error("the note is signed; change it with an amendment")]
    NoteSigned,
    #[error("the note is not signed yet; edit it instead")]
    NoteNotSigned,
    #[error("the note is already signed")]
    NoteAlreadySigned,
    #[error("the note names another member of the group at characters {start}..{end}")]
    NamesAnotherMember { start: usize, end: usize },
}
