//! The one mapping of the application's answers to protobuf that queries and
//! commands share: a session, a note, a roster line.

use circle_proto::sessions::v1 as pb;

use crate::app::{NoteView, RosterLine, SessionView};
use crate::codec;
use crate::domain::{AttendanceStatus, Origin, SessionState};

fn state_to_wire(state: SessionState) -> pb::SessionState {
    match state {
        SessionState::Scheduled => pb::SessionState::Scheduled,
        SessionState::Started => pb::SessionState::Started,
        SessionState::Closed => pb::SessionState::Closed,
        SessionState::Cancelled => pb::SessionState::Cancelled,
    }
}

pub(super) fn attendance_to_wire(status: Option<AttendanceStatus>) -> pb::AttendanceStatus {
    match status {
        Some(AttendanceStatus::Present) => pb::AttendanceStatus::Present,
        Some(AttendanceStatus::Late) => pb::AttendanceStatus::Late,
        Some(AttendanceStatus::LeftEarly) => pb::AttendanceStatus::LeftEarly,
        Some(AttendanceStatus::Absent) => pb::AttendanceStatus::Absent,
        Some(AttendanceStatus::Excused) => pb::AttendanceStatus::Excused,
        None => pb::AttendanceStatus::Unspecified,
    }
}

pub(super) fn session_to_wire(session: SessionView) -> pb::Session {
    pb::Session {
        name: session.name.to_string(),
        state: session
            .state
            .map_or(pb::SessionState::Unspecified, state_to_wire) as i32,
        start_time: Some(codec::timestamp(session.starts_at)),
        duration_minutes: session.duration_minutes,
        origin: match session.origin {
            Origin::AdHoc => pb::SessionOrigin::AdHoc,
            Origin::Schedule => pb::SessionOrigin::Schedule,
        } as i32,
        cancel_reason: session.cancel_reason,
        etag: session.version.to_string(),
        ..Default::default()
    }
}

pub(super) fn note_to_wire(view: NoteView) -> pb::Note {
    let note = view.note;
    pb::Note {
        name: view.name.to_string(),
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
        text_withheld: view.text_withheld,
    }
}

pub(super) fn roster_entry_to_wire(line: RosterLine) -> pb::RosterEntry {
    pb::RosterEntry {
        participant: line.participant.to_string(),
        attendance: attendance_to_wire(line.attendance) as i32,
        minutes_attended: line.minutes_attended,
        checked_in: line.checked_in,
        note: line.note.map(note_to_wire),
    }
}
