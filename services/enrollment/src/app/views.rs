//! The views the application answers with, commands and queries alike: a query reads
//! them from the read model (`queries`), a command builds them here from the state
//! its commit left (`ClinicView::of`, `GroupView::of`, `ParticipantView::of`), so a
//! command's answer shows what a read at its consistency token shows. Names are
//! `circle-names` types; the edge maps each view to protobuf once.
//!
//! A view is made with the sealed text its source holds (the state, the read model);
//! the views with personal fields (`ParticipantView`, `ConsentView`) are
//! `circle_vault::Personal`, and are opened by whoever answers with them — a command
//! or a query — just before the answer (`[redacted]` once the participant is
//! forgotten). Plaintext exists only inside one request.

use circle_grpc::ApiError;
use circle_names::{ClinicName, ConsentName, GroupName, Id, MembershipName, ParticipantName};
use circle_vault::{Field, Personal, field};

use crate::domain::participant::ConsentState;
use crate::domain::personal::own_field;
use crate::domain::schedule::time_zone;
use crate::domain::{
    AdmissionMode, Clinic, ConsentKind, ConsentTerms, Facilitator, Group, MemberState, Participant,
    PeerDisplay, Profile, Schedule, Time,
};

/// A clinic at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct ClinicView {
    pub name: ClinicName,
    pub display_name: String,
    pub time_zone: String,
    pub archived: bool,
    pub version: u64,
}

/// A group at a version, with its next session computed at the time of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub name: GroupName,
    pub display_name: String,
    pub modality: String,
    pub level_of_care: String,
    pub capacity: u32,
    pub admission_mode: AdmissionMode,
    pub time_zone: String,
    pub facilitators: Vec<Facilitator>,
    pub schedule: Option<Schedule>,
    pub next_session: Option<Time>,
    pub active_count: u32,
    pub on_hold_count: u32,
    pub offer_count: u32,
    pub waitlist_count: u32,
    pub archived: bool,
    pub version: u64,
}

/// A participant's record: home clinic, profile (personal data) and consents.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantView {
    pub name: ParticipantName,
    pub home_clinic: ClinicName,
    pub profile: Profile,
    pub version: u64,
    pub consents: Vec<ConsentView>,
    /// Set once the participant is forgotten (their personal fields read redacted).
    pub forgotten_at: Option<Time>,
}

/// A consent, with when it was recorded and revoked (commit times).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentView {
    pub name: ConsentName,
    pub kind: ConsentKind,
    pub recipient: String,
    pub purpose: String,
    /// How peers know the participant (peer-visibility consents only).
    pub display: Option<PeerDisplay>,
    pub alias: String,
    pub share_check_ins: bool,
    pub share_milestones: bool,
    pub recorded_at: Time,
    pub revoked_at: Option<Time>,
}

/// A membership (one group, one participant).
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipView {
    pub name: MembershipName,
    pub participant: ParticipantName,
    /// As stored (`read_model::state`).
    pub state: String,
    /// Place on the waitlist (1 first), 0 when not waitlisted.
    pub waitlist_position: u32,
    pub since: Time,
    pub offer_expires_at: Option<Time>,
    /// As stored: a discharge reason, `transferred`, `offer-declined`,
    /// `offer-expired`, or empty.
    pub end_reason: String,
    /// The dated history, oldest first (only `get_membership` fills it).
    pub history: Vec<MembershipEventView>,
}

/// One event of a membership's history.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipEventView {
    pub kind: String,
    /// As stored (`read_model::state`).
    pub state_after: String,
    pub at: Time,
    pub version: u64,
    pub detail: String,
}

/// An id the participant's record holds; every id was checked before it was recorded,
/// so one that does not parse is a bug.
fn recorded_id(value: &str) -> Result<Id, ApiError> {
    Id::parse(value).map_err(|_| {
        tracing::error!("a participant's record holds an invalid id");
        ApiError::internal()
    })
}

impl ClinicView {
    /// The clinic a command left at `version`.
    pub fn of(name: ClinicName, clinic: &Clinic, version: u64) -> Self {
        Self {
            name,
            display_name: clinic.display_name.clone(),
            time_zone: clinic.time_zone.clone(),
            archived: clinic.archived,
            version,
        }
    }
}

impl GroupView {
    /// The group a command left at `version` (`name`'s clinic is the group's own: a
    /// command on a group of another clinic is refused), with its next session after
    /// `now`. `None` for a group never created.
    pub fn of(name: GroupName, group: &Group, version: u64, now: Time) -> Option<Self> {
        let details = group.details.as_ref()?;
        let count = |wanted: MemberState| {
            group
                .members
                .values()
                .filter(|state| **state == wanted)
                .count() as u32
        };
        Some(Self {
            name,
            display_name: details.display_name.clone(),
            modality: details.modality.clone(),
            level_of_care: details.level_of_care.clone(),
            capacity: details.capacity,
            admission_mode: details.admission_mode,
            time_zone: details.time_zone.clone(),
            facilitators: details.facilitators.clone(),
            next_session: details
                .schedule
                .as_ref()
                .and_then(|schedule| schedule.next_session(time_zone(&details.time_zone), now)),
            schedule: details.schedule.clone(),
            active_count: count(MemberState::Active),
            on_hold_count: count(MemberState::OnHold),
            offer_count: group.offers.len() as u32,
            waitlist_count: group.waitlist.len() as u32,
            archived: group.archived,
            version,
        })
    }
}

impl ParticipantView {
    /// The participant a command left at `version`: consents in the order they were
    /// recorded, as a read lists them.
    pub fn of(
        name: ParticipantName,
        participant: &Participant,
        version: u64,
    ) -> Result<Self, ApiError> {
        let mut consents: Vec<(&String, &ConsentState)> = participant.consents.iter().collect();
        consents.sort_by_key(|(_, consent)| consent.recorded_index);
        let consents = consents
            .into_iter()
            .map(|(consent_id, consent)| {
                Ok(ConsentView::of(
                    name.consent(recorded_id(consent_id)?),
                    consent,
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Self {
            home_clinic: ClinicName {
                network: name.network.clone(),
                clinic: recorded_id(&participant.home_clinic_id)?,
            },
            profile: participant.profile.clone(),
            version,
            consents,
            forgotten_at: participant.forgotten.as_ref().map(|forgotten| forgotten.at),
            name,
        })
    }
}

/// The profile and every consent's free text, the participant's (the view names them).
impl Personal for ParticipantView {
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<Field<'a>> {
        let Self {
            name,
            profile,
            consents,
            ..
        } = self;
        let participant = name.participant.as_str();
        let mut fields = profile.fields(participant);
        for consent in consents {
            fields.extend(consent.personal_fields(participant));
        }
        fields
    }
}

/// Recipient, purpose and alias, the participant's (the consent's name names them).
impl Personal for ConsentView {
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<Field<'a>> {
        let Self {
            name,
            recipient,
            purpose,
            alias,
            ..
        } = self;
        let participant = name.participant.as_str();
        vec![
            Field::new(participant, own_field::CONSENT_RECIPIENT, recipient),
            Field::new(participant, own_field::CONSENT_PURPOSE, purpose),
            Field::new(participant, field::ALIAS, alias),
        ]
    }
}

impl ConsentView {
    /// A consent of a participant's record.
    pub fn of(name: ConsentName, consent: &ConsentState) -> Self {
        let mut view = Self {
            name,
            kind: consent.terms.kind(),
            recipient: String::new(),
            purpose: String::new(),
            display: None,
            alias: String::new(),
            share_check_ins: false,
            share_milestones: false,
            recorded_at: consent.recorded_at,
            revoked_at: consent.revoked_at,
        };
        match &consent.terms {
            ConsentTerms::TreatmentDisclosure { recipient, purpose } => {
                view.recipient = recipient.clone();
                view.purpose = purpose.clone();
            }
            ConsentTerms::PeerVisibility {
                display,
                alias,
                share_check_ins,
                share_milestones,
            } => {
                view.display = Some(*display);
                view.alias = alias.clone();
                view.share_check_ins = *share_check_ins;
                view.share_milestones = *share_milestones;
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, participant};

    #[test]
    fn a_participant_answers_with_consents_in_the_order_they_were_recorded() {
        let start: Time = "2026-11-20T12:00:00Z".parse().expect("a valid time");
        let terms = ConsentTerms::TreatmentDisclosure {
            recipient: "County drug court".into(),
            purpose: "Compliance".into(),
        };
        let events = [
            Event::ParticipantRegistered {
                home_clinic_id: "north".into(),
                profile: Profile::default(),
            },
            Event::ConsentRecorded {
                consent_id: "b".into(),
                terms: terms.clone(),
            },
            Event::ConsentRecorded {
                consent_id: "a".into(),
                terms,
            },
        ];
        let state = events.iter().fold(Participant::default(), |state, event| {
            participant::evolve(state, event, start)
        });
        let name = ParticipantName::parse("networks/acme/participants/sam").expect("a name");
        let view = ParticipantView::of(name, &state, 3).expect("a registered participant");
        let consents: Vec<String> = view
            .consents
            .iter()
            .map(|consent| consent.name.to_string())
            .collect();
        assert_eq!(
            consents,
            [
                "networks/acme/participants/sam/consents/b",
                "networks/acme/participants/sam/consents/a"
            ]
        );
        assert_eq!(view.home_clinic.to_string(), "networks/acme/clinics/north");
        assert_eq!(view.consents[0].recorded_at, start);
        assert_eq!(view.forgotten_at, None);
    }

    /// What an answer opens: every personal field of the record, each as the
    /// participant's, under the field name the events sealed it with.
    #[test]
    fn a_participants_view_opens_the_profile_and_every_consents_free_text() {
        let start: Time = "2026-11-20T12:00:00Z".parse().expect("a valid time");
        let events = [
            Event::ParticipantRegistered {
                home_clinic_id: "north".into(),
                profile: Profile {
                    given_name: "Sam".into(),
                    family_name: "Rivera".into(),
                    preferred_name: "Sammy".into(),
                    email: "sam@example.org".into(),
                    phone: "555".into(),
                },
            },
            Event::ConsentRecorded {
                consent_id: "b".into(),
                terms: ConsentTerms::TreatmentDisclosure {
                    recipient: "Officer Jones".into(),
                    purpose: "Compliance".into(),
                },
            },
            Event::ConsentRecorded {
                consent_id: "a".into(),
                terms: ConsentTerms::PeerVisibility {
                    display: PeerDisplay::Alias,
                    alias: "Sunny".into(),
                    share_check_ins: true,
                    share_milestones: true,
                },
            },
        ];
        let state = events.iter().fold(Participant::default(), |state, event| {
            participant::evolve(state, event, start)
        });
        let name = ParticipantName::parse("networks/acme/participants/sam").expect("a name");
        let mut view = ParticipantView::of(name, &state, 3).expect("a registered participant");
        let fields: Vec<(String, &str, String)> = view
            .personal_fields("ignored")
            .into_iter()
            .filter(|field| !field.value.is_empty())
            .map(|field| {
                (
                    field.participant.to_owned(),
                    field.name,
                    field.value.clone(),
                )
            })
            .collect();
        let sam = |name: &'static str, value: &str| ("sam".to_owned(), name, value.to_owned());
        assert_eq!(
            fields,
            [
                sam(field::GIVEN_NAME, "Sam"),
                sam(field::FAMILY_NAME, "Rivera"),
                sam(field::PREFERRED_NAME, "Sammy"),
                sam(field::EMAIL, "sam@example.org"),
                sam(field::PHONE, "555"),
                sam(own_field::CONSENT_RECIPIENT, "Officer Jones"),
                sam(own_field::CONSENT_PURPOSE, "Compliance"),
                sam(field::ALIAS, "Sunny"),
            ]
        );
    }
}
