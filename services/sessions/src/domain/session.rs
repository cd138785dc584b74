//! The session aggregate: scheduled → started → closed, or cancelled (or
//! rescheduled while still scheduled). Attendance, check-ins and notes hang off it.
//! Notes are signed and then locked; a change after signing is an amendment.

use std::collections::{BTreeMap, BTreeSet};

use super::names::find_other_member_name;
use super::{DomainError, Event, Time};

pub const MIN_DURATION_MINUTES: u32 = 15;
pub const MAX_DURATION_MINUTES: u32 = 480;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Schedule,
    AdHoc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionState {
    #[default]
    Scheduled,
    Started,
    Closed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttendanceStatus {
    Present,
    Late,
    LeftEarly,
    Absent,
    Excused,
}

impl AttendanceStatus {
    pub fn attended(self) -> bool {
        matches!(self, Self::Present | Self::Late | Self::LeftEarly)
    }
}

/// Which note: the shared narrative, or one member's individual note.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKey {
    Shared,
    Member(String),
}

impl NoteKey {
    /// The id of the shared note in a note's resource name (`…/notes/shared`); a
    /// member's note has the participant's id.
    pub const SHARED_ID: &'static str = "shared";

    /// The note a resource name's note id names.
    pub fn from_id(id: &str) -> Self {
        if id == Self::SHARED_ID {
            Self::Shared
        } else {
            Self::Member(id.to_owned())
        }
    }

    /// The note's id in its resource name.
    pub fn id(&self) -> &str {
        match self {
            Self::Shared => Self::SHARED_ID,
            Self::Member(participant_id) => participant_id,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signed: bool,
    /// Who signed it and when (the signing commit's time); empty until signed.
    pub signed_by: String,
    pub signed_at: Option<Time>,
    /// Changes after signing, oldest first; the signed text itself never changes.
    pub amendments: Vec<Amendment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    pub text: String,
    pub staff_id: String,
    pub at: Time,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub group_id: String,
    pub clinic_id: String,
    pub starts_at: Time,
    pub duration_minutes: u32,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    pub details: Option<Details>,
    pub state: SessionState,
    pub attendance: BTreeMap<String, (AttendanceStatus, u32)>,
    pub checked_in: BTreeSet<String>,
    pub notes: BTreeMap<NoteKey, Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Schedule {
        group_id: String,
        clinic_id: String,
        starts_at: Time,
        duration_minutes: u32,
        origin: Origin,
    },
    Reschedule {
        starts_at: Time,
        duration_minutes: Option<u32>,
    },
    Cancel {
        reason: String,
    },
    Start,
    Close,
    /// `on_roster`: the participant was an active member when the session started.
    RecordAttendance {
        participant_id: String,
        on_roster: bool,
        status: AttendanceStatus,
        minutes: u32,
    },
    RecordCheckIn {
        participant_id: String,
        on_roster: bool,
        mood: u32,
        craving: u32,
        share: String,
    },
    WriteSharedNote {
        text: String,
    },
    /// `other_member_names`: names and aliases of the group's other members.
    WriteMemberNote {
        participant_id: String,
        text: String,
        other_member_names: Vec<String>,
    },
    Sign {
        note: NoteKey,
        staff_id: String,
    },
    Amend {
        note: NoteKey,
        text: String,
        staff_id: String,
        other_member_names: Vec<String>,
    },
}

fn require_in_progress_or_closed(state: &Session) -> Result<(), DomainError> {
    match state.state {
        SessionState::Cancelled => Err(DomainError::SessionCancelled),
        SessionState::Scheduled => Err(DomainError::SessionNotStarted),
        SessionState::Started | SessionState::Closed => Ok(()),
    }
}

fn check_names(text: &str, names: &[String]) -> Result<(), DomainError> {
    match find_other_member_name(text, names) {
        Some((start, end)) => Err(DomainError::NamesAnotherMember { start, end }),
        None => Ok(()),
    }
}

pub fn decide(state: &Session, command: SessionCommand) -> Result<Vec<Event>, DomainError> {
    if let SessionCommand::Schedule {
        group_id,
        clinic_id,
        starts_at,
        duration_minutes,
        origin,
    } = command
    {
        if state.details.is_some() {
            return Err(DomainError::SessionExists);
        }
        return Ok(vec![Event::SessionScheduled {
            group_id,
            clinic_id,
            starts_at: circle_calendar::whole_microseconds(starts_at),
            duration_minutes,
            origin,
        }]);
    }
    let Some(details) = &state.details else {
        return Err(DomainError::SessionNotFound);
    };
    let events = match command {
        SessionCommand::Schedule { .. } => return Err(DomainError::SessionExists),
        SessionCommand::Reschedule {
            starts_at,
            duration_minutes,
        } => {
            match state.state {
                SessionState::Scheduled => {}
                SessionState::Cancelled => return Err(DomainError::SessionCancelled),
                _ => return Err(DomainError::SessionAlreadyStarted),
            }
            vec![Event::SessionRescheduled {
                starts_at: circle_calendar::whole_microseconds(starts_at),
                duration_minutes: duration_minutes.unwrap_or(details.duration_minutes),
            }]
        }
        SessionCommand::Cancel { reason } => match state.state {
            SessionState::Scheduled => vec![Event::SessionCancelled { reason }],
            SessionState::Cancelled => return Ok(Vec::new()),
            _ => return Err(DomainError::SessionAlreadyStarted),
        },
        SessionCommand::Start => match state.state {
            SessionState::Scheduled => vec![Event::SessionStarted],
            SessionState::Cancelled => return Err(DomainError::SessionCancelled),
            _ => return Err(DomainError::SessionAlreadyStarted),
        },
        SessionCommand::Close => match state.state {
            SessionState::Started => vec![Event::SessionClosed],
            SessionState::Cancelled => return Err(DomainError::SessionCancelled),
            SessionState::Scheduled => return Err(DomainError::SessionNotStarted),
            SessionState::Closed => return Ok(Vec::new()),
        },
        SessionCommand::RecordAttendance {
            participant_id,
            on_roster,
            status,
            minutes,
        } => {
            require_in_progress_or_closed(state)?;
            if !on_roster {
                return Err(DomainError::NotOnRoster);
            }
            if minutes > details.duration_minutes {
                return Err(DomainError::MinutesOverLength {
                    duration: details.duration_minutes,
                });
            }
            if status.attended() && minutes == 0 {
                return Err(DomainError::NoMinutesForAttendee);
            }
            if !status.attended() && minutes > 0 {
                return Err(DomainError::MinutesForAbsentee);
            }
            if state.attendance.get(&participant_id) == Some(&(status, minutes)) {
                return Ok(Vec::new());
            }
            vec![Event::AttendanceRecorded {
                participant_id,
                status,
                minutes,
            }]
        }
        SessionCommand::RecordCheckIn {
            participant_id,
            on_roster,
            mood,
            craving,
            share,
        } => {
            require_in_progress_or_closed(state)?;
            if !on_roster {
                return Err(DomainError::NotOnRoster);
            }
            if state
                .attendance
                .get(&participant_id)
                .is_some_and(|(status, _)| !status.attended())
            {
                return Err(DomainError::MemberAbsent);
            }
            vec![Event::SessionCheckInRecorded {
                participant_id,
                mood,
                craving,
                share,
            }]
        }
        SessionCommand::WriteSharedNote { text } => {
            require_in_progress_or_closed(state)?;
            if state
                .notes
                .get(&NoteKey::Shared)
                .is_some_and(|note| note.signed)
            {
                return Err(DomainError::NoteSigned);
            }
            vec![Event::SharedNoteWritten { text }]
        }
        SessionCommand::WriteMemberNote {
            participant_id,
            text,
            other_member_names,
        } => {
            require_in_progress_or_closed(state)?;
            // Absent members get no note; neither does anyone not recorded as attending.
            if !state
                .attendance
                .get(&participant_id)
                .is_some_and(|(status, _)| status.attended())
            {
                return Err(DomainError::MemberAbsent);
            }
            if state
                .notes
                .get(&NoteKey::Member(participant_id.clone()))
                .is_some_and(|note| note.signed)
            {
                return Err(DomainError::NoteSigned);
            }
            check_names(&text, &other_member_names)?;
            vec![Event::MemberNoteWritten {
                participant_id,
                text,
            }]
        }
        SessionCommand::Sign { note, staff_id } => {
            let existing = state.notes.get(&note).ok_or(DomainError::NoteNotFound)?;
            if existing.signed {
                return Err(DomainError::NoteAlreadySigned);
            }
            vec![Event::NoteSigned { note, staff_id }]
        }
        SessionCommand::Amend {
            note,
            text,
            staff_id,
            other_member_names,
        } => {
            let existing = state.notes.get(&note).ok_or(DomainError::NoteNotFound)?;
            if !existing.signed {
                return Err(DomainError::NoteNotSigned);
            }
            if matches!(note, NoteKey::Member(_)) {
                check_names(&text, &other_member_names)?;
            }
            vec![Event::NoteAmended {
                note,
                text,
                staff_id,
            }]
        }
    };
    Ok(events)
}

/// Applies one event recorded at `at` (its commit's time).
pub fn evolve(mut state: Session, event: &Event, at: Time) -> Session {
    match event {
        Event::SessionScheduled {
            group_id,
            clinic_id,
            starts_at,
            duration_minutes,
            origin,
        } => {
            state.details = Some(Details {
                group_id: group_id.clone(),
                clinic_id: clinic_id.clone(),
                starts_at: *starts_at,
                duration_minutes: *duration_minutes,
                origin: *origin,
            });
            state.state = SessionState::Scheduled;
        }
        Event::SessionRescheduled {
            starts_at,
            duration_minutes,
        } => {
            if let Some(details) = state.details.as_mut() {
                details.starts_at = *starts_at;
                details.duration_minutes = *duration_minutes;
            }
        }
        Event::SessionCancelled { .. } => state.state = SessionState::Cancelled,
        Event::SessionStarted => state.state = SessionState::Started,
        Event::SessionClosed => state.state = SessionState::Closed,
        Event::AttendanceRecorded {
            participant_id,
            status,
            minutes,
        } => {
            state
                .attendance
                .insert(participant_id.clone(), (*status, *minutes));
        }
        Event::SessionCheckInRecorded { participant_id, .. } => {
            state.checked_in.insert(participant_id.clone());
        }
        Event::SharedNoteWritten { text } => {
            state.notes.entry(NoteKey::Shared).or_default().text = text.clone();
        }
        Event::MemberNoteWritten {
            participant_id,
            text,
        } => {
            state
                .notes
                .entry(NoteKey::Member(participant_id.clone()))
                .or_default()
                .text = text.clone();
        }
        Event::NoteSigned { note, staff_id } => {
            if let Some(existing) = state.notes.get_mut(note) {
                existing.signed = true;
                existing.signed_by = staff_id.clone();
                existing.signed_at = Some(at);
            }
        }
        // An amendment is kept beside the signed note; the note and its lock are
        // unchanged.
        Event::NoteAmended {
            note,
            text,
            staff_id,
        } => {
            if let Some(existing) = state.notes.get_mut(note) {
                existing.amendments.push(Amendment {
                    text: text.clone(),
                    staff_id: staff_id.clone(),
                    at,
                });
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    //! Given events, when a command, then events or an error.

    use super::*;

    #[test]
    fn a_note_id_names_the_shared_note_or_a_members() {
        assert_eq!(NoteKey::from_id("shared"), NoteKey::Shared);
        assert_eq!(NoteKey::from_id("p1"), NoteKey::Member("p1".into()));
        for key in [NoteKey::Shared, NoteKey::Member("p1".into())] {
            assert_eq!(NoteKey::from_id(key.id()), key);
        }
    }

    fn at(text: &str) -> Time {
        text.parse().expect("RFC 3339")
    }

    fn scheduled() -> Event {
        Event::SessionScheduled {
            group_id: "g".into(),
            clinic_id: "c".into(),
            starts_at: at("2026-11-24T00:30:00Z"),
            duration_minutes: 90,
            origin: Origin::Schedule,
        }
    }

    fn when(events: &[Event], command: SessionCommand) -> Result<Vec<Event>, DomainError> {
        let state = events.iter().fold(Session::default(), |state, event| {
            evolve(state, event, at("2026-11-24T01:00:00Z"))
        });
        decide(&state, command)
    }

    fn attendance(participant: &str, status: AttendanceStatus, minutes: u32) -> SessionCommand {
        SessionCommand::RecordAttendance {
            participant_id: participant.into(),
            on_roster: true,
            status,
            minutes,
        }
    }

    fn attended(participant: &str) -> Event {
        Event::AttendanceRecorded {
            participant_id: participant.into(),
            status: AttendanceStatus::Present,
            minutes: 90,
        }
    }

    fn member_note(participant: &str, text: &str) -> SessionCommand {
        SessionCommand::WriteMemberNote {
            participant_id: participant.into(),
            text: text.into(),
            other_member_names: vec!["Jordan".into(), "Sunny".into()],
        }
    }

    #[test]
    fn a_session_is_scheduled_once() {
        let schedule = SessionCommand::Schedule {
            group_id: "g".into(),
            clinic_id: "c".into(),
            starts_at: at("2026-11-24T00:30:00Z"),
            duration_minutes: 90,
            origin: Origin::Schedule,
        };
        assert_eq!(when(&[], schedule.clone()), Ok(vec![scheduled()]));
        assert_eq!(
            when(&[scheduled()], schedule),
            Err(DomainError::SessionExists)
        );
    }

    #[test]
    fn the_lifecycle_runs_scheduled_started_closed() {
        assert_eq!(
            when(&[scheduled()], SessionCommand::Start),
            Ok(vec![Event::SessionStarted])
        );
        assert_eq!(
            when(&[scheduled()], SessionCommand::Close),
            Err(DomainError::SessionNotStarted)
        );
        assert_eq!(
            when(&[scheduled(), Event::SessionStarted], SessionCommand::Close),
            Ok(vec![Event::SessionClosed])
        );
        assert_eq!(
            when(&[scheduled(), Event::SessionStarted], SessionCommand::Start),
            Err(DomainError::SessionAlreadyStarted)
        );
    }

    #[test]
    fn only_a_scheduled_session_is_rescheduled_or_cancelled() {
        let reschedule = SessionCommand::Reschedule {
            starts_at: at("2026-11-25T00:30:00Z"),
            duration_minutes: None,
        };
        assert_eq!(
            when(&[scheduled()], reschedule.clone()),
            Ok(vec![Event::SessionRescheduled {
                starts_at: at("2026-11-25T00:30:00Z"),
                duration_minutes: 90
            }])
        );
        assert_eq!(
            when(&[scheduled(), Event::SessionStarted], reschedule),
            Err(DomainError::SessionAlreadyStarted)
        );
        let cancel = SessionCommand::Cancel {
            reason: "holiday".into(),
        };
        assert_eq!(
            when(&[scheduled()], cancel.clone()),
            Ok(vec![Event::SessionCancelled {
                reason: "holiday".into()
            }])
        );
        assert_eq!(
            when(&[scheduled(), Event::SessionStarted], cancel),
            Err(DomainError::SessionAlreadyStarted)
        );
    }

    #[test]
    fn attendance_follows_the_roster_and_the_session_length() {
        let started = [scheduled(), Event::SessionStarted];
        assert_eq!(
            when(&started, attendance("p1", AttendanceStatus::Late, 70)),
            Ok(vec![Event::AttendanceRecorded {
                participant_id: "p1".into(),
                status: AttendanceStatus::Late,
                minutes: 70
            }])
        );
        assert_eq!(
            when(&started, attendance("p1", AttendanceStatus::Present, 91)),
            Err(DomainError::MinutesOverLength { duration: 90 })
        );
        assert_eq!(
            when(&started, attendance("p1", AttendanceStatus::Absent, 10)),
            Err(DomainError::MinutesForAbsentee)
        );
        assert_eq!(
            when(&started, attendance("p1", AttendanceStatus::Present, 0)),
            Err(DomainError::NoMinutesForAttendee)
        );
        let walk_in = SessionCommand::RecordAttendance {
            participant_id: "stranger".into(),
            on_roster: false,
            status: AttendanceStatus::Present,
            minutes: 90,
        };
        assert_eq!(when(&started, walk_in), Err(DomainError::NotOnRoster));
    }

    #[test]
    fn attendance_is_refused_on_a_cancelled_or_unstarted_session() {
        let cancelled = [
            scheduled(),
            Event::SessionCancelled {
                reason: "snow".into(),
            },
        ];
        assert_eq!(
            when(&cancelled, attendance("p1", AttendanceStatus::Present, 90)),
            Err(DomainError::SessionCancelled)
        );
        assert_eq!(
            when(
                &[scheduled()],
                attendance("p1", AttendanceStatus::Present, 90)
            ),
            Err(DomainError::SessionNotStarted)
        );
    }

    #[test]
    fn a_check_in_is_taken_from_a_member_who_is_not_absent() {
        let started = [scheduled(), Event::SessionStarted];
        let check_in = |on_roster| SessionCommand::RecordCheckIn {
            participant_id: "p1".into(),
            on_roster,
            mood: 6,
            craving: 3,
            share: "Two weeks sober today".into(),
        };
        assert!(matches!(
            when(&started, check_in(true)).as_deref(),
            Ok([Event::SessionCheckInRecorded { .. }])
        ));
        assert_eq!(
            when(&started, check_in(false)),
            Err(DomainError::NotOnRoster)
        );
        let absent = Event::AttendanceRecorded {
            participant_id: "p1".into(),
            status: AttendanceStatus::Absent,
            minutes: 0,
        };
        assert_eq!(
            when(
                &[scheduled(), Event::SessionStarted, absent],
                check_in(true)
            ),
            Err(DomainError::MemberAbsent)
        );
    }

    #[test]
    fn member_notes_are_for_attendees_and_name_no_other_member() {
        let started = [scheduled(), Event::SessionStarted, attended("p1")];
        assert_eq!(
            when(
                &started,
                member_note("p1", "Engaged well; shared a coping plan.")
            ),
            Ok(vec![Event::MemberNoteWritten {
                participant_id: "p1".into(),
                text: "Engaged well; shared a coping plan.".into()
            }])
        );
        assert_eq!(
            when(&started, member_note("p1", "Gave feedback to Jordan.")),
            Err(DomainError::NamesAnotherMember { start: 17, end: 23 })
        );
        assert_eq!(
            when(&started, member_note("p2", "Quiet today.")),
            Err(DomainError::MemberAbsent)
        );
    }

    #[test]
    fn a_note_remembers_who_signed_it_when_and_its_amendments() {
        let events = [
            (scheduled(), at("2026-11-24T00:00:00Z")),
            (Event::SessionStarted, at("2026-11-24T00:30:00Z")),
            (
                Event::SharedNoteWritten {
                    text: "Topic.".into(),
                },
                at("2026-11-24T02:00:00Z"),
            ),
            (
                Event::NoteSigned {
                    note: NoteKey::Shared,
                    staff_id: "s1".into(),
                },
                at("2026-11-24T02:05:00Z"),
            ),
            (
                Event::NoteAmended {
                    note: NoteKey::Shared,
                    text: "Late entry.".into(),
                    staff_id: "s2".into(),
                },
                at("2026-11-25T09:00:00Z"),
            ),
        ];
        let state = events
            .iter()
            .fold(Session::default(), |state, (event, time)| {
                evolve(state, event, *time)
            });
        let note = state
            .notes
            .get(&NoteKey::Shared)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            note,
            Note {
                text: "Topic.".into(),
                signed: true,
                signed_by: "s1".into(),
                signed_at: Some(at("2026-11-24T02:05:00Z")),
                amendments: vec![Amendment {
                    text: "Late entry.".into(),
                    staff_id: "s2".into(),
                    at: at("2026-11-25T09:00:00Z"),
                }],
            }
        );
    }

    #[test]
    fn a_signed_note_is_locked_and_changed_only_by_amendment() {
        let signed = [
            scheduled(),
            Event::SessionStarted,
            Event::SharedNoteWritten {
                text: "Topic: relapse warning signs.".into(),
            },
            Event::NoteSigned {
                note: NoteKey::Shared,
                staff_id: "s1".into(),
            },
        ];
        assert_eq!(
            when(
                &signed,
                SessionCommand::WriteSharedNote { text: "x".into() }
            ),
            Err(DomainError::NoteSigned)
        );
        assert_eq!(
            when(
                &signed,
                SessionCommand::Sign {
                    note: NoteKey::Shared,
                    staff_id: "s1".into()
                }
            ),
            Err(DomainError::NoteAlreadySigned)
        );
        let amend = SessionCommand::Amend {
            note: NoteKey::Shared,
            text: "Late entry: fire drill at 19:10.".into(),
            staff_id: "s1".into(),
            other_member_names: vec![],
        };
        assert_eq!(
            when(&signed, amend.clone()),
            Ok(vec![Event::NoteAmended {
                note: NoteKey::Shared,
                text: "Late entry: fire drill at 19:10.".into(),
                staff_id: "s1".into()
            }])
        );
        assert_eq!(when(&signed[..3], amend), Err(DomainError::NoteNotSigned));
        assert_eq!(
            when(
                &[scheduled()],
                SessionCommand::Sign {
                    note: NoteKey::Shared,
                    staff_id: "s1".into()
                }
            ),
            Err(DomainError::NoteNotFound)
        );
    }
}
