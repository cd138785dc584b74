//! Which of enrollment's event fields are personal, and whose (`circle_vault::Personal`):
//! the repositories seal them with the participant's data key before a commit is
//! encoded, so the log, the aggregates' states and the read model (which copies the
//! sealed text as it is) hold no plaintext; the application opens what it answers
//! with. Field names are by kind of data and shared with the other services, which
//! open the names and aliases they copy from these events with the same names.
//!
//! Personal (sealed):
//! - a participant's profile (given, family and preferred name, email, phone), in
//!   `ParticipantRegistered` and `ParticipantProfileChanged`: the participant's key;
//! - a consent's free text, in `ConsentRecorded`: the peer-visibility alias, and a
//!   treatment-disclosure consent's recipient and purpose (free text written about the
//!   participant: the recipient may be a named person — a probation officer, a
//!   relative — and the purpose tells why their records go there, such as a court
//!   order), the participant's key;
//! - a hold's reason (`MemberHeld`), free text about the member: the member's key.
//!
//! Not personal: ids (clinic, group, participant, consent, offer, transfer), enums,
//! counts and times, clinic and group descriptions, staff ids, and a forget's
//! reference (a case or ticket reference, documented as not personal data).

use circle_vault::{Field, Personal, field};

use super::{ConsentTerms, Event, Profile};

/// Field names of personal text only enrollment writes and reads (a consent's
/// treatment-disclosure terms); the other services never copy them.
pub mod own_field {
    /// Who may receive a participant's treatment records.
    pub const CONSENT_RECIPIENT: &str = "consent-recipient";
    /// Why they may receive them.
    pub const CONSENT_PURPOSE: &str = "consent-purpose";
}

impl Profile {
    /// The profile's fields, all `participant`'s.
    pub fn fields<'a>(&'a mut self, participant: &'a str) -> Vec<Field<'a>> {
        vec![
            Field::new(participant, field::GIVEN_NAME, &mut self.given_name),
            Field::new(participant, field::FAMILY_NAME, &mut self.family_name),
            Field::new(participant, field::PREFERRED_NAME, &mut self.preferred_name),
            Field::new(participant, field::EMAIL, &mut self.email),
            Field::new(participant, field::PHONE, &mut self.phone),
        ]
    }
}

impl ConsentTerms {
    /// The terms' free text, all `participant`'s.
    pub fn fields<'a>(&'a mut self, participant: &'a str) -> Vec<Field<'a>> {
        match self {
            ConsentTerms::TreatmentDisclosure { recipient, purpose } => vec![
                Field::new(participant, own_field::CONSENT_RECIPIENT, recipient),
                Field::new(participant, own_field::CONSENT_PURPOSE, purpose),
            ],
            ConsentTerms::PeerVisibility { alias, .. } => {
                vec![Field::new(participant, field::ALIAS, alias)]
            }
        }
    }
}

/// A profile is its owner's: the participant whose record holds it.
impl Personal for Profile {
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>> {
        self.fields(owner)
    }
}

/// `owner` is the commit's aggregate id: the participant for a participant's events;
/// a group's events name their member.
impl Personal for Event {
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>> {
        match self {
            Event::ParticipantRegistered { profile, .. }
            | Event::ParticipantProfileChanged { profile } => profile.fields(owner),
            Event::ConsentRecorded { terms, .. } => terms.fields(owner),
            Event::MemberHeld {
                participant_id,
                reason,
            } => vec![Field::new(participant_id, field::HOLD_REASON, reason)],
            // Every other event is listed, so a new one needs a decision here.
            Event::ClinicCreated { .. }
            | Event::ClinicUpdated { .. }
            | Event::ClinicArchived
            | Event::GroupCreated(_)
            | Event::GroupDetailsChanged { .. }
            | Event::GroupCapacityChanged { .. }
            | Event::GroupScheduleChanged { .. }
            | Event::GroupFacilitatorsChanged { .. }
            | Event::GroupArchived
            | Event::ParticipantHomeClinicChanged { .. }
            | Event::ConsentRevoked { .. }
            | Event::ParticipantForgotten { .. }
            | Event::MemberAdmitted { .. }
            | Event::MemberWaitlisted { .. }
            | Event::SeatOffered { .. }
            | Event::SeatOfferDeclined { .. }
            | Event::SeatOfferExpired { .. }
            | Event::MemberResumed { .. }
            | Event::MemberDischarged { .. }
            | Event::MemberTransferredOut { .. } => Vec::new(),
        }
    }

    /// A new membership (a seat, or a place on the waitlist) is about its member: no
    /// one forgotten joins a group, whichever command or offer would admit them (and in
    /// the moment between their key's destruction and `ParticipantForgotten`). What
    /// frees a seat — discharge, a declined or expired offer, a transfer out — stays
    /// open, so a forgotten member's place can be given back.
    fn subjects<'a>(&'a self, _owner: &'a str) -> Vec<&'a str> {
        match self {
            Event::MemberAdmitted { participant_id, .. }
            | Event::MemberWaitlisted { participant_id, .. } => vec![participant_id],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ForgetReason, PeerDisplay, Time};

    fn visited(mut event: Event, owner: &str) -> Vec<(String, &'static str, String)> {
        event
            .personal_fields(owner)
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

    fn profile() -> Profile {
        Profile {
            given_name: "Sam".into(),
            family_name: "Rivera".into(),
            preferred_name: "Sammy".into(),
            email: "sam@example.org".into(),
            phone: "+1 555 0100".into(),
        }
    }

    #[test]
    fn every_profile_field_is_the_participants() {
        let expected = vec![
            ("sam".to_owned(), field::GIVEN_NAME, "Sam".to_owned()),
            ("sam".to_owned(), field::FAMILY_NAME, "Rivera".to_owned()),
            ("sam".to_owned(), field::PREFERRED_NAME, "Sammy".to_owned()),
            ("sam".to_owned(), field::EMAIL, "sam@example.org".to_owned()),
            ("sam".to_owned(), field::PHONE, "+1 555 0100".to_owned()),
        ];
        let registered = Event::ParticipantRegistered {
            home_clinic_id: "north".into(),
            profile: profile(),
        };
        assert_eq!(visited(registered, "sam"), expected);
        let changed = Event::ParticipantProfileChanged { profile: profile() };
        assert_eq!(visited(changed, "sam"), expected);
    }

    #[test]
    fn a_consents_free_text_is_the_participants() {
        let peer = Event::ConsentRecorded {
            consent_id: "c1".into(),
            terms: ConsentTerms::PeerVisibility {
                display: PeerDisplay::Alias,
                alias: "Sunny".into(),
                share_check_ins: true,
                share_milestones: false,
            },
        };
        assert_eq!(
            visited(peer, "sam"),
            [("sam".to_owned(), field::ALIAS, "Sunny".to_owned())]
        );
        let disclosure = Event::ConsentRecorded {
            consent_id: "c2".into(),
            terms: ConsentTerms::TreatmentDisclosure {
                recipient: "Officer Jones, county probation".into(),
                purpose: "court-ordered treatment compliance".into(),
            },
        };
        assert_eq!(
            visited(disclosure, "sam"),
            [
                (
                    "sam".to_owned(),
                    own_field::CONSENT_RECIPIENT,
                    "Officer Jones, county probation".to_owned()
                ),
                (
                    "sam".to_owned(),
                    own_field::CONSENT_PURPOSE,
                    "court-ordered treatment compliance".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_hold_reason_is_the_members_not_the_groups() {
        let held = Event::MemberHeld {
            participant_id: "sam".into(),
            reason: "inpatient stay".into(),
        };
        assert_eq!(
            visited(held, "tuesday-group"),
            [(
                "sam".to_owned(),
                field::HOLD_REASON,
                "inpatient stay".to_owned()
            )]
        );
    }

    #[test]
    fn events_without_personal_text_have_no_fields() {
        let at: Time = "2026-11-20T12:00:00Z".parse().expect("a valid time");
        for event in [
            Event::ClinicCreated {
                display_name: "North".into(),
                time_zone: "UTC".into(),
            },
            Event::ParticipantHomeClinicChanged {
                home_clinic_id: "south".into(),
            },
            Event::ParticipantForgotten {
                reason: ForgetReason::LegalOrder,
                reference: "case 7".into(),
                forgotten_at: at,
            },
            Event::MemberResumed {
                participant_id: "sam".into(),
            },
        ] {
            assert_eq!(visited(event.clone(), "sam"), [], "{event:?}");
        }
    }

    /// Each field sealed with the participant's key for its own field name, and opened
    /// again: nothing personal is left in clear on the way, and everything comes back.
    #[test]
    fn sealed_events_hold_no_plaintext_and_open_again() -> Result<(), circle_vault::VaultError> {
        let key = circle_vault::DataKey::generate()?;
        let original = vec![
            Event::ParticipantRegistered {
                home_clinic_id: "north".into(),
                profile: profile(),
            },
            Event::ConsentRecorded {
                consent_id: "c2".into(),
                terms: ConsentTerms::TreatmentDisclosure {
                    recipient: "Officer Jones".into(),
                    purpose: "compliance".into(),
                },
            },
        ];
        let mut events = original.clone();
        let context = |field: &Field<'_>| circle_vault::Context {
            network: "acme",
            participant: "sam",
            field: field.name,
        };
        for event in &mut events {
            for field in event.personal_fields("sam") {
                let sealed = key.seal(context(&field), field.value)?;
                *field.value = sealed;
            }
        }
        let text = format!("{events:?}");
        for plain in [
            "Sam",
            "Rivera",
            "sam@example.org",
            "0100",
            "Officer Jones",
            "compliance",
        ] {
            assert!(!text.contains(plain), "{plain} left in clear");
        }
        for event in &mut events {
            for field in event.personal_fields("sam") {
                let opened = key.open(context(&field), field.value)?;
                *field.value = opened;
            }
        }
        assert_eq!(events, original);
        Ok(())
    }
}
