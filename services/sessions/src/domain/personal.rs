//! Which fields of a session's events are personal, and whose (crypto-shredding,
//! `circle-vault`). The repository seals these fields with their participant's data key
//! before a commit is encoded, so the SESSIONS stream, the read model copied from it and
//! the aggregate states carry only sealed text; the application opens them for one
//! answer at a time. Once a participant is forgotten (their key destroyed) their fields
//! read as `[redacted]` everywhere, and a new command whose events would hold their text
//! is refused.
//!
//! Sealed, each with the key of the member it is about:
//! - a session check-in's share (`field::CHECK_IN`: accountability copies it into the
//!   member's journal and opens it with the same field);
//! - a member note (`field::MEMBER_NOTE`), and an amendment of a member note (the same
//!   field: an amendment is part of the note).
//!
//! Not sealed, and why:
//! - the shared note and its amendments: the session's narrative, the group's clinical
//!   record rather than one member's. It belongs to no single participant, so no one
//!   participant's key may govern it (forgetting one member would shred the record of
//!   everyone else in the room); it is written about the group's work, and the names of
//!   members stay out of individual notes by the note check, not out of this one —
//!   keeping a member's personal details out of it is the facilitator's duty;
//! - a cancellation's reason: about the session (a holiday, the schedule), written by
//!   staff or the materialiser;
//! - ids (group, clinic, participant, staff), times, attendance and the mood and craving
//!   scores: not text, and needed in clear to route, check and count. A check-in and
//!   attendance name their member as a subject (`Personal::subjects`), so a commit of
//!   either about a forgotten member is refused by the sealing as one with their text
//!   is: nothing new about them is recorded at all.

use circle_vault::{Field, Personal, field};

use super::{Event, NoteKey};

impl Personal for Event {
    /// Every event names the member its fields belong to, so `owner` (the session) is
    /// not needed.
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<Field<'a>> {
        match self {
            Event::SessionCheckInRecorded {
                participant_id,
                share,
                ..
            } => vec![Field::new(participant_id, field::CHECK_IN, share)],
            Event::MemberNoteWritten {
                participant_id,
                text,
            }
            | Event::NoteAmended {
                note: NoteKey::Member(participant_id),
                text,
                ..
            } => vec![Field::new(participant_id, field::MEMBER_NOTE, text)],
            Event::NoteAmended {
                note: NoteKey::Shared,
                ..
            }
            | Event::SharedNoteWritten { .. }
            | Event::SessionCancelled { .. }
            | Event::SessionScheduled { .. }
            | Event::SessionRescheduled { .. }
            | Event::SessionStarted
            | Event::SessionClosed
            | Event::AttendanceRecorded { .. }
            | Event::NoteSigned { .. } => Vec::new(),
        }
    }

    /// A check-in (its share may be empty, its scores are in clear) and attendance are
    /// about their member.
    fn subjects<'a>(&'a self, _owner: &'a str) -> Vec<&'a str> {
        match self {
            Event::SessionCheckInRecorded { participant_id, .. }
            | Event::AttendanceRecorded { participant_id, .. } => vec![participant_id],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AttendanceStatus, Origin};

    fn at(text: &str) -> crate::domain::Time {
        text.parse().expect("RFC 3339")
    }

    /// One of every event, each string a distinct value.
    fn every_event() -> Vec<Event> {
        vec![
            Event::SessionScheduled {
                group_id: "group".into(),
                clinic_id: "clinic".into(),
                starts_at: at("2026-11-24T00:30:00Z"),
                duration_minutes: 90,
                origin: Origin::Schedule,
            },
            Event::SessionRescheduled {
                starts_at: at("2026-11-25T00:30:00Z"),
                duration_minutes: 60,
            },
            Event::SessionCancelled {
                reason: "holiday".into(),
            },
            Event::SessionStarted,
            Event::SessionClosed,
            Event::AttendanceRecorded {
                participant_id: "p-attended".into(),
                status: AttendanceStatus::Present,
                minutes: 90,
            },
            Event::SessionCheckInRecorded {
                participant_id: "p-check-in".into(),
                mood: 6,
                craving: 3,
                share: "Two weeks sober today".into(),
            },
            Event::SharedNoteWritten {
                text: "We talked about routines.".into(),
            },
            Event::MemberNoteWritten {
                participant_id: "p-note".into(),
                text: "Engaged well.".into(),
            },
            Event::NoteSigned {
                note: NoteKey::Member("p-note".into()),
                staff_id: "staff-1".into(),
            },
            Event::NoteAmended {
                note: NoteKey::Member("p-amended".into()),
                text: "Late entry: left at 19:40.".into(),
                staff_id: "staff-2".into(),
            },
            Event::NoteAmended {
                note: NoteKey::Shared,
                text: "Late entry: fire drill.".into(),
                staff_id: "staff-3".into(),
            },
        ]
    }

    fn fields_of(event: &mut Event) -> Vec<(String, &'static str, String)> {
        event
            .personal_fields("session")
            .into_iter()
            .map(|field| {
                (
                    field.participant.to_owned(),
                    field.name,
                    field.value.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn the_members_text_is_sealed_with_their_key_and_nothing_else_is() {
        let mut events = every_event();
        let visited: Vec<_> = events.iter_mut().flat_map(fields_of).collect();
        assert_eq!(
            visited,
            [
                (
                    "p-check-in".to_owned(),
                    field::CHECK_IN,
                    "Two weeks sober today".to_owned()
                ),
                (
                    "p-note".to_owned(),
                    field::MEMBER_NOTE,
                    "Engaged well.".to_owned()
                ),
                (
                    "p-amended".to_owned(),
                    field::MEMBER_NOTE,
                    "Late entry: left at 19:40.".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn every_personal_field_is_the_one_changed_in_place() {
        let mut events = every_event();
        for event in &mut events {
            for field in event.personal_fields("session") {
                *field.value = format!("sealed:{}", field.value);
            }
        }
        let mut sealed = Vec::new();
        let mut clear = Vec::new();
        for event in every_event().iter().zip(&events) {
            match event {
                (
                    Event::SessionCheckInRecorded { share: before, .. },
                    Event::SessionCheckInRecorded { share: after, .. },
                )
                | (
                    Event::MemberNoteWritten { text: before, .. },
                    Event::MemberNoteWritten { text: after, .. },
                )
                | (
                    Event::NoteAmended {
                        note: NoteKey::Member(_),
                        text: before,
                        ..
                    },
                    Event::NoteAmended { text: after, .. },
                ) => sealed.push((before.clone(), after.clone())),
                (before, after) => clear.push((before.clone(), after.clone())),
            }
        }
        assert_eq!(sealed.len(), 3);
        for (before, after) in sealed {
            assert_eq!(after, format!("sealed:{before}"));
        }
        // Ids, staff, the shared note and a cancellation's reason are left as they were.
        for (before, after) in clear {
            assert_eq!(before, after);
        }
    }

    #[test]
    fn an_empty_share_is_a_field_of_its_member_still() {
        let mut event = Event::SessionCheckInRecorded {
            participant_id: "p1".into(),
            mood: 5,
            craving: 5,
            share: String::new(),
        };
        assert_eq!(
            fields_of(&mut event),
            [("p1".to_owned(), field::CHECK_IN, String::new())]
        );
    }
}
