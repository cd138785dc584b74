//! Where personal text is opened (crypto-shredding, `circle-vault`).
//!
//! The rule: at rest everything personal is sealed with the data key of the participant
//! it is about — the events in the SESSIONS stream (the repository seals each commit's
//! events before it encodes them: `crate::domain::personal` says which fields), the
//! aggregates' states evolved from those same sealed events, and every read-model row:
//! the projections copy the sealed text as it is and hold no keys (the read model's
//! notes, amendments and check-ins; the roster's names and aliases, as enrollment sealed
//! them). Plaintext exists only inside one request: the application opens, with one
//! `Opener` fetched for the participants an answer shows, the views it answers with —
//! command answers (a retry's too, made from the state after the stored commit) as well
//! as query answers — and whatever a check needs in clear (the other members' names the
//! note check looks for, `super::facts`). Once a participant is forgotten (their key
//! destroyed, `KeyStore::forget`), every read shows `circle_vault::REDACTED` in place of
//! their fields with no projection work, and a rebuild brings nothing back.
//!
//! Commands about a forgotten participant are refused by the sealing itself
//! (`PARTICIPANT_FORGOTTEN`), after a retry has been answered from its stored commit:
//! one whose events carry their text, and a check-in or attendance, whose events name
//! them as a subject (`crate::domain::personal`). Signing a note stays possible (it
//! adds nothing about the member, and leaves no note waiting forever).

use circle_grpc::ApiError;
use circle_names::Id;
use circle_service::errors::key_store_error;
use circle_vault::store::KeyStore;
use circle_vault::{Field, Personal, field};

use super::{NoteView, RosterLine, UnsignedItem};
use crate::domain::NoteKey;

/// A member's note and its amendments are theirs (`field::MEMBER_NOTE`); the shared
/// note is the group's record and is not sealed (`crate::domain::personal`). A withheld
/// text is empty, and an empty field is neither opened nor asked a key for.
impl Personal for NoteView {
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<Field<'a>> {
        let NoteView { name, note, .. } = self;
        let participant = name.note.as_str();
        if participant == NoteKey::SHARED_ID {
            return Vec::new();
        }
        std::iter::once(&mut note.text)
            .chain(
                note.amendments
                    .iter_mut()
                    .map(|amendment| &mut amendment.text),
            )
            .map(|text| Field::new(participant, field::MEMBER_NOTE, text))
            .collect()
    }
}

impl Personal for RosterLine {
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>> {
        self.note
            .as_mut()
            .map_or_else(Vec::new, |note| note.personal_fields(owner))
    }
}

impl Personal for UnsignedItem {
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>> {
        self.note
            .as_mut()
            .map_or_else(Vec::new, |note| note.personal_fields(owner))
    }
}

/// `items` with every personal field opened, with one fetch of the keys of the
/// participants they show.
pub(super) async fn open<T: Personal>(
    vault: &KeyStore,
    network: &Id,
    items: &mut [T],
) -> Result<(), ApiError> {
    vault
        .open_all(network.as_str(), "", items)
        .await
        .map_err(key_store_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::{Amendment, Note};
    use circle_names::{NoteName, ParticipantName};

    fn id(value: &str) -> Id {
        Id::parse(value).unwrap_or_else(|error| panic!("{value:?}: {error}"))
    }

    fn note(participant: &str) -> NoteView {
        let at = "2026-11-24T02:00:00Z".parse().expect("RFC 3339");
        NoteView {
            name: NoteName {
                network: id("acme"),
                clinic: id("north"),
                group: id("tuesday"),
                session: id("s1"),
                note: id(participant),
            },
            note: Note {
                text: "the note".into(),
                signed: true,
                signed_by: "staff-1".into(),
                signed_at: Some(at),
                amendments: vec![
                    Amendment {
                        text: "first amendment".into(),
                        staff_id: "staff-1".into(),
                        at,
                    },
                    Amendment {
                        text: "second amendment".into(),
                        staff_id: "staff-2".into(),
                        at,
                    },
                ],
            },
            text_withheld: false,
        }
    }

    fn fields_of(item: &mut impl Personal) -> Vec<(String, &'static str, String)> {
        item.personal_fields("")
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
    fn a_member_notes_text_and_amendments_are_opened_with_their_key() {
        let member = |text: &str| ("sam".to_owned(), field::MEMBER_NOTE, text.to_owned());
        assert_eq!(
            fields_of(&mut note("sam")),
            [
                member("the note"),
                member("first amendment"),
                member("second amendment")
            ]
        );
        assert_eq!(fields_of(&mut note(NoteKey::SHARED_ID)), []);
    }

    #[test]
    fn a_roster_line_opens_its_note() {
        let mut line = RosterLine {
            participant: ParticipantName {
                network: id("acme"),
                participant: id("sam"),
            },
            attendance: None,
            minutes_attended: 0,
            checked_in: true,
            note: Some(note("sam")),
        };
        assert_eq!(fields_of(&mut line).len(), 3);
        line.note = None;
        assert_eq!(fields_of(&mut line), []);
    }
}
