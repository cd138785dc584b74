//! Session events to and from their protobuf payloads.

use circle_eventstore::{Aggregate, DecodeError, NewEvent, StoredCommit, wire};
use circle_proto::sessions::events::v1 as pb;
use prost::{Message, Name};

use crate::domain::{AttendanceStatus, Event, NoteKey, Origin, Session, evolve};

pub use circle_calendar::{from_timestamp, timestamp};

pub fn status_to_wire(status: AttendanceStatus) -> pb::AttendanceStatus {
    match status {
        AttendanceStatus::Present => pb::AttendanceStatus::Present,
        AttendanceStatus::Late => pb::AttendanceStatus::Late,
        AttendanceStatus::LeftEarly => pb::AttendanceStatus::LeftEarly,
        AttendanceStatus::Absent => pb::AttendanceStatus::Absent,
        AttendanceStatus::Excused => pb::AttendanceStatus::Excused,
    }
}

/// The same numbering is used by the API enum.
pub fn status_from_wire(value: i32) -> Option<AttendanceStatus> {
    Some(match pb::AttendanceStatus::try_from(value).ok()? {
        pb::AttendanceStatus::Present => AttendanceStatus::Present,
        pb::AttendanceStatus::Late => AttendanceStatus::Late,
        pb::AttendanceStatus::LeftEarly => AttendanceStatus::LeftEarly,
        pb::AttendanceStatus::Absent => AttendanceStatus::Absent,
        pb::AttendanceStatus::Excused => AttendanceStatus::Excused,
        pb::AttendanceStatus::Unspecified => return None,
    })
}

fn note_to_wire(note: &NoteKey) -> String {
    match note {
        NoteKey::Shared => String::new(),
        NoteKey::Member(participant_id) => participant_id.clone(),
    }
}

fn note_from_wire(value: String) -> NoteKey {
    if value.is_empty() {
        NoteKey::Shared
    } else {
        NoteKey::Member(value)
    }
}

pub fn encode(event: &Event) -> NewEvent {
    match event {
        Event::SessionScheduled {
            group_id,
            clinic_id,
            starts_at,
            duration_minutes,
            origin,
        } => NewEvent::from_message(&pb::SessionScheduled {
            group_id: group_id.clone(),
            clinic_id: clinic_id.clone(),
            start_time: Some(timestamp(*starts_at)),
            duration_minutes: *duration_minutes,
            origin: match origin {
                Origin::Schedule => pb::SessionOrigin::Schedule,
                Origin::AdHoc => pb::SessionOrigin::AdHoc,
            } as i32,
        }),
        Event::SessionRescheduled {
            starts_at,
            duration_minutes,
        } => NewEvent::from_message(&pb::SessionRescheduled {
            start_time: Some(timestamp(*starts_at)),
            duration_minutes: *duration_minutes,
        }),
        Event::SessionCancelled { reason } => NewEvent::from_message(&pb::SessionCancelled {
            reason: reason.clone(),
        }),
        Event::SessionStarted => NewEvent::from_message(&pb::SessionStarted {}),
        Event::SessionClosed => NewEvent::from_message(&pb::SessionClosed {}),
        Event::AttendanceRecorded {
            participant_id,
            status,
            minutes,
        } => NewEvent::from_message(&pb::AttendanceRecorded {
            participant_id: participant_id.clone(),
            status: status_to_wire(*status) as i32,
            minutes_attended: *minutes,
        }),
        Event::SessionCheckInRecorded {
            participant_id,
            mood,
            craving,
            share,
        } => NewEvent::from_message(&pb::SessionCheckInRecorded {
            participant_id: participant_id.clone(),
            mood: *mood,
            craving: *craving,
            share: share.clone(),
        }),
        Event::SharedNoteWritten { text } => {
            NewEvent::from_message(&pb::SharedNoteWritten { text: text.clone() })
        }
        Event::MemberNoteWritten {
            participant_id,
            text,
        } => NewEvent::from_message(&pb::MemberNoteWritten {
            participant_id: participant_id.clone(),
            text: text.clone(),
        }),
        Event::NoteSigned { note, staff_id } => NewEvent::from_message(&pb::NoteSigned {
            note_participant_id: note_to_wire(note),
            staff_id: staff_id.clone(),
        }),
        Event::NoteAmended {
            note,
            text,
            staff_id,
        } => NewEvent::from_message(&pb::NoteAmended {
            note_participant_id: note_to_wire(note),
            text: text.clone(),
            staff_id: staff_id.clone(),
        }),
    }
}

pub fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
    let fail = |reason: String| DecodeError {
        event_type: event.event_type.clone(),
        reason,
    };
    let payload = event.payload.as_slice();
    let name = event.event_type.as_str();
    macro_rules! message {
        ($type:ty) => {
            <$type>::decode(payload).map_err(|error| fail(error.to_string()))?
        };
    }
    Ok(if name == pb::SessionScheduled::full_name() {
        let message = message!(pb::SessionScheduled);
        Event::SessionScheduled {
            starts_at: message
                .start_time
                .and_then(from_timestamp)
                .ok_or_else(|| fail("no start time".into()))?,
            origin: match pb::SessionOrigin::try_from(message.origin) {
                Ok(pb::SessionOrigin::AdHoc) => Origin::AdHoc,
                _ => Origin::Schedule,
            },
            group_id: message.group_id,
            clinic_id: message.clinic_id,
            duration_minutes: message.duration_minutes,
        }
    } else if name == pb::SessionRescheduled::full_name() {
        let message = message!(pb::SessionRescheduled);
        Event::SessionRescheduled {
            starts_at: message
                .start_time
                .and_then(from_timestamp)
                .ok_or_else(|| fail("no start time".into()))?,
            duration_minutes: message.duration_minutes,
        }
    } else if name == pb::SessionCancelled::full_name() {
        Event::SessionCancelled {
            reason: message!(pb::SessionCancelled).reason,
        }
    } else if name == pb::SessionStarted::full_name() {
        Event::SessionStarted
    } else if name == pb::SessionClosed::full_name() {
        Event::SessionClosed
    } else if name == pb::AttendanceRecorded::full_name() {
        let message = message!(pb::AttendanceRecorded);
        Event::AttendanceRecorded {
            status: status_from_wire(message.status)
                .ok_or_else(|| fail("unknown attendance status".into()))?,
            participant_id: message.participant_id,
            minutes: message.minutes_attended,
        }
    } else if name == pb::SessionCheckInRecorded::full_name() {
        let message = message!(pb::SessionCheckInRecorded);
        Event::SessionCheckInRecorded {
            participant_id: message.participant_id,
            mood: message.mood,
            craving: message.craving,
            share: message.share,
        }
    } else if name == pb::SharedNoteWritten::full_name() {
        Event::SharedNoteWritten {
            text: message!(pb::SharedNoteWritten).text,
        }
    } else if name == pb::MemberNoteWritten::full_name() {
        let message = message!(pb::MemberNoteWritten);
        Event::MemberNoteWritten {
            participant_id: message.participant_id,
            text: message.text,
        }
    } else if name == pb::NoteSigned::full_name() {
        let message = message!(pb::NoteSigned);
        Event::NoteSigned {
            note: note_from_wire(message.note_participant_id),
            staff_id: message.staff_id,
        }
    } else if name == pb::NoteAmended::full_name() {
        let message = message!(pb::NoteAmended);
        Event::NoteAmended {
            note: note_from_wire(message.note_participant_id),
            text: message.text,
            staff_id: message.staff_id,
        }
    } else {
        return Err(fail("unknown event type".into()));
    })
}

pub fn decode_commit(commit: &StoredCommit) -> Result<Vec<Event>, DecodeError> {
    commit.commit.events.iter().map(decode).collect()
}

/// The time a commit was recorded.
pub fn commit_time(commit: &StoredCommit) -> Result<crate::domain::Time, DecodeError> {
    commit
        .commit
        .committed_at
        .and_then(from_timestamp)
        .ok_or_else(|| DecodeError {
            event_type: "commit".into(),
            reason: "no valid commit time".into(),
        })
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Event = Event;
    fn encode(event: &Event) -> NewEvent {
        encode(event)
    }
    fn decode(event: &wire::Event) -> Result<Event, DecodeError> {
        decode(event)
    }
    fn evolve(self, event: &Event, at: crate::domain::Time) -> Self {
        evolve(self, event, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every kind.
    fn every_kind_of_event() -> Vec<Event> {
        let at: crate::domain::Time = "2026-11-24T00:30:00Z".parse().expect("time");
        vec![
            Event::SessionScheduled {
                group_id: "g".into(),
                clinic_id: "c".into(),
                starts_at: at,
                duration_minutes: 90,
                origin: Origin::AdHoc,
            },
            Event::SessionRescheduled {
                starts_at: at,
                duration_minutes: 60,
            },
            Event::SessionCancelled {
                reason: "snow".into(),
            },
            Event::SessionStarted,
            Event::SessionClosed,
            Event::AttendanceRecorded {
                participant_id: "p".into(),
                status: AttendanceStatus::LeftEarly,
                minutes: 40,
            },
            Event::SessionCheckInRecorded {
                participant_id: "p".into(),
                mood: 7,
                craving: 2,
                share: "ok".into(),
            },
            Event::SharedNoteWritten {
                text: "narrative".into(),
            },
            Event::MemberNoteWritten {
                participant_id: "p".into(),
                text: "note".into(),
            },
            Event::NoteSigned {
                note: NoteKey::Shared,
                staff_id: "s".into(),
            },
            Event::NoteAmended {
                note: NoteKey::Member("p".into()),
                text: "amended".into(),
                staff_id: "s".into(),
            },
        ]
    }

    #[test]
    fn every_event_survives_the_wire() {
        for event in every_kind_of_event() {
            let encoded = encode(&event);
            let wire = wire::Event {
                event_id: "e".into(),
                event_type: encoded.event_type,
                schema_version: encoded.schema_version,
                occurred_at: None,
                payload: encoded.payload,
            };
            assert_eq!(decode(&wire).expect("decodes"), event);
        }
    }

    circle_eventstore::codec_properties!(
        fuzz,
        event: crate::domain::Event,
        events: super::every_kind_of_event,
        encode: super::super::encode,
        decode: super::super::decode,
        decode_commit: super::super::decode_commit,
        subject: "sessions.acme.session.s",
        commit_time: super::super::commit_time,
    );
}
