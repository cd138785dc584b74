//! The participant aggregate: registration, profile (personal data), home clinic and
//! consents. A new peer-visibility consent supersedes the previous one. Each consent
//! keeps when it was recorded and revoked (its commits' times), so a command's answer
//! shows what a read shows.
//!
//! Forgetting (crypto-shredding) ends the record: the application destroys the
//! participant's data key first, then commits `ParticipantForgotten`, after which every
//! command is refused (`ParticipantForgotten`) but a second forget, which changes
//! nothing. The state then holds `circle_vault::REDACTED` in place of every personal
//! text it kept (sealed text no longer opens anyway; this also covers text written
//! before sealing began), as the read model does.

use std::collections::BTreeMap;

use super::{ConsentKind, ConsentTerms, DomainError, Event, ForgetReason, Profile, Time};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentState {
    pub terms: ConsentTerms,
    /// The time of the commit that recorded it, to the whole microsecond.
    pub recorded_at: Time,
    /// The time of the commit that revoked or superseded it, likewise.
    pub revoked_at: Option<Time>,
    /// How many of the participant's consents were recorded before it: their order
    /// of recording (one consent is recorded per commit, so this is also the order of
    /// the versions that recorded them).
    pub recorded_index: usize,
}

impl ConsentState {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// When and why a participant was forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub reason: ForgetReason,
    pub reference: String,
    pub at: Time,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    pub registered: bool,
    pub home_clinic_id: String,
    /// Sealed text (see the module's docs): the application opens it.
    pub profile: Profile,
    pub consents: BTreeMap<String, ConsentState>,
    pub forgotten: Option<Forgotten>,
}

impl Participant {
    /// The peer-visibility consent in force, if any.
    pub fn peer_visibility(&self) -> Option<(&String, &ConsentState)> {
        self.consents.iter().find(|(_, consent)| {
            !consent.is_revoked() && consent.terms.kind() == ConsentKind::PeerVisibility
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantCommand {
    Register {
        home_clinic_id: String,
        profile: Profile,
    },
    /// `home_clinic_id` is known to be an open clinic (checked before).
    Update {
        profile: Option<Profile>,
        home_clinic_id: Option<String>,
    },
    RecordConsent {
        consent_id: String,
        terms: ConsentTerms,
    },
    RevokeConsent {
        consent_id: String,
    },
    /// The participant's data key is destroyed already (the application does that
    /// first): record it. Forgetting someone forgotten changes nothing.
    Forget {
        reason: ForgetReason,
        reference: String,
    },
}

/// The events of `command` on `state`, decided at `now` (the commit's time).
pub fn decide(
    state: &Participant,
    command: ParticipantCommand,
    now: Time,
) -> Result<Vec<Event>, DomainError> {
    if !state.registered && !matches!(command, ParticipantCommand::Register { .. }) {
        return Err(DomainError::ParticipantNotFound);
    }
    if state.forgotten.is_some() {
        return match command {
            ParticipantCommand::Forget { .. } => Ok(Vec::new()),
            ParticipantCommand::Register { .. } => Err(DomainError::ParticipantExists),
            _ => Err(DomainError::ParticipantForgotten),
        };
    }
    match command {
        ParticipantCommand::Register {
            home_clinic_id,
            profile,
        } => {
            if state.registered {
                return Err(DomainError::ParticipantExists);
            }
            Ok(vec![Event::ParticipantRegistered {
                home_clinic_id,
                profile,
            }])
        }
        // `profile` is plaintext and the state's is sealed, so they always differ
        // here: the application compares the opened profile and passes `None` when
        // nothing changed.
        ParticipantCommand::Update {
            profile,
            home_clinic_id,
        } => {
            let mut events = Vec::new();
            if let Some(profile) = profile
                && profile != state.profile
            {
                events.push(Event::ParticipantProfileChanged { profile });
            }
            if let Some(home_clinic_id) = home_clinic_id
                && home_clinic_id != state.home_clinic_id
            {
                events.push(Event::ParticipantHomeClinicChanged { home_clinic_id });
            }
            Ok(events)
        }
        ParticipantCommand::RecordConsent { consent_id, terms } => {
            if state.consents.contains_key(&consent_id) {
                return Err(DomainError::ConsentExists);
            }
            let mut events = Vec::new();
            if terms.kind() == ConsentKind::PeerVisibility
                && let Some((previous, _)) = state.peer_visibility()
            {
                events.push(Event::ConsentRevoked {
                    consent_id: previous.clone(),
                    kind: ConsentKind::PeerVisibility,
                });
            }
            events.push(Event::ConsentRecorded { consent_id, terms });
            Ok(events)
        }
        ParticipantCommand::RevokeConsent { consent_id } => {
            let consent = state
                .consents
                .get(&consent_id)
                .ok_or(DomainError::ConsentNotFound)?;
            if consent.is_revoked() {
                return Ok(Vec::new());
            }
            Ok(vec![Event::ConsentRevoked {
                consent_id,
                kind: consent.terms.kind(),
            }])
        }
        ParticipantCommand::Forget { reason, reference } => Ok(vec![Event::ParticipantForgotten {
            reason,
            reference,
            forgotten_at: circle_calendar::whole_microseconds(now),
        }]),
    }
}

/// `text` as a forgotten participant's record keeps it: empty stays empty (as an
/// opener shows it), anything else is [`circle_vault::REDACTED`].
pub fn redacted(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        circle_vault::REDACTED.to_owned()
    }
}

fn redact_profile(profile: &mut Profile) {
    for text in [
        &mut profile.given_name,
        &mut profile.family_name,
        &mut profile.preferred_name,
        &mut profile.email,
        &mut profile.phone,
    ] {
        *text = redacted(text);
    }
}

fn redact_terms(terms: &mut ConsentTerms) {
    match terms {
        ConsentTerms::TreatmentDisclosure { recipient, purpose } => {
            *recipient = redacted(recipient);
            *purpose = redacted(purpose);
        }
        ConsentTerms::PeerVisibility { alias, .. } => *alias = redacted(alias),
    }
}

/// Applies one event recorded at `at` (its commit's time, kept to the whole
/// microsecond as commits and the read model keep it).
pub fn evolve(mut state: Participant, event: &Event, at: Time) -> Participant {
    let at = circle_calendar::whole_microseconds(at);
    match event {
        Event::ParticipantRegistered {
            home_clinic_id,
            profile,
        } => {
            state.registered = true;
            state.home_clinic_id = home_clinic_id.clone();
            state.profile = profile.clone();
        }
        Event::ParticipantProfileChanged { profile } => state.profile = profile.clone(),
        Event::ParticipantHomeClinicChanged { home_clinic_id } => {
            state.home_clinic_id = home_clinic_id.clone();
        }
        Event::ConsentRecorded { consent_id, terms } => {
            let recorded_index = state.consents.len();
            state.consents.insert(
                consent_id.clone(),
                ConsentState {
                    terms: terms.clone(),
                    recorded_at: at,
                    revoked_at: None,
                    recorded_index,
                },
            );
        }
        Event::ConsentRevoked { consent_id, .. } => {
            if let Some(consent) = state.consents.get_mut(consent_id)
                && consent.revoked_at.is_none()
            {
                consent.revoked_at = Some(at);
            }
        }
        Event::ParticipantForgotten {
            reason,
            reference,
            forgotten_at,
        } => {
            redact_profile(&mut state.profile);
            for consent in state.consents.values_mut() {
                redact_terms(&mut consent.terms);
            }
            state.forgotten = Some(Forgotten {
                reason: *reason,
                reference: reference.clone(),
                at: *forgotten_at,
            });
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PeerDisplay;

    fn registered() -> Event {
        Event::ParticipantRegistered {
            home_clinic_id: "north".into(),
            profile: Profile {
                given_name: "Sam".into(),
                family_name: "Rivera".into(),
                ..Profile::default()
            },
        }
    }

    fn at(rfc3339: &str) -> Time {
        rfc3339.parse().expect("a valid time")
    }

    /// Each event in a commit of its own, a second after the one before.
    fn replayed(events: &[Event]) -> Participant {
        let start = at("2026-11-20T12:00:00Z");
        events
            .iter()
            .zip(1..)
            .fold(Participant::default(), |state, (event, seconds)| {
                evolve(state, event, start + chrono::Duration::seconds(seconds))
            })
    }

    fn when(events: &[Event], command: ParticipantCommand) -> Result<Vec<Event>, DomainError> {
        decide(
            &replayed(events),
            command,
            at("2026-11-21T09:00:00.000000500Z"),
        )
    }

    fn forgotten() -> Event {
        Event::ParticipantForgotten {
            reason: ForgetReason::ParticipantRequest,
            reference: "ticket-42".into(),
            forgotten_at: at("2026-11-21T09:00:00Z"),
        }
    }

    fn peer(alias: &str) -> ConsentTerms {
        ConsentTerms::PeerVisibility {
            display: PeerDisplay::Alias,
            alias: alias.into(),
            share_check_ins: true,
            share_milestones: true,
        }
    }

    #[test]
    fn a_participant_is_registered_once() {
        let register = ParticipantCommand::Register {
            home_clinic_id: "north".into(),
            profile: Profile::default(),
        };
        assert!(matches!(
            when(&[], register.clone()).as_deref(),
            Ok([Event::ParticipantRegistered { .. }])
        ));
        assert_eq!(
            when(&[registered()], register),
            Err(DomainError::ParticipantExists)
        );
    }

    #[test]
    fn commands_on_an_unregistered_participant_are_refused() {
        let revoke = ParticipantCommand::RevokeConsent {
            consent_id: "c".into(),
        };
        assert_eq!(when(&[], revoke), Err(DomainError::ParticipantNotFound));
    }

    #[test]
    fn an_update_records_only_what_changed() {
        let update = ParticipantCommand::Update {
            profile: None,
            home_clinic_id: Some("south".into()),
        };
        assert_eq!(
            when(&[registered()], update),
            Ok(vec![Event::ParticipantHomeClinicChanged {
                home_clinic_id: "south".into()
            }])
        );
        let same = ParticipantCommand::Update {
            profile: None,
            home_clinic_id: Some("north".into()),
        };
        assert_eq!(when(&[registered()], same), Ok(vec![]));
    }

    #[test]
    fn a_new_peer_visibility_consent_supersedes_the_previous_one() {
        let first = Event::ConsentRecorded {
            consent_id: "c1".into(),
            terms: peer("Sunny"),
        };
        let record = ParticipantCommand::RecordConsent {
            consent_id: "c2".into(),
            terms: peer("River"),
        };
        assert_eq!(
            when(&[registered(), first], record),
            Ok(vec![
                Event::ConsentRevoked {
                    consent_id: "c1".into(),
                    kind: ConsentKind::PeerVisibility
                },
                Event::ConsentRecorded {
                    consent_id: "c2".into(),
                    terms: peer("River")
                },
            ])
        );
    }

    #[test]
    fn revoking_applies_once_and_unknown_consents_are_refused() {
        let recorded = Event::ConsentRecorded {
            consent_id: "c1".into(),
            terms: ConsentTerms::TreatmentDisclosure {
                recipient: "County probation office".into(),
                purpose: "court-ordered treatment compliance".into(),
            },
        };
        let revoke = ParticipantCommand::RevokeConsent {
            consent_id: "c1".into(),
        };
        let revoked = Event::ConsentRevoked {
            consent_id: "c1".into(),
            kind: ConsentKind::TreatmentDisclosure,
        };
        assert_eq!(
            when(&[registered(), recorded.clone()], revoke.clone()),
            Ok(vec![revoked.clone()])
        );
        assert_eq!(when(&[registered(), recorded, revoked], revoke), Ok(vec![]));
        assert_eq!(
            when(
                &[registered()],
                ParticipantCommand::RevokeConsent {
                    consent_id: "zz".into()
                }
            ),
            Err(DomainError::ConsentNotFound)
        );
    }

    #[test]
    fn a_consent_keeps_the_times_of_the_commits_that_recorded_and_revoked_it() {
        let recorded = Event::ConsentRecorded {
            consent_id: "c1".into(),
            terms: peer("Sunny"),
        };
        let superseding = [
            Event::ConsentRevoked {
                consent_id: "c1".into(),
                kind: ConsentKind::PeerVisibility,
            },
            Event::ConsentRecorded {
                consent_id: "c2".into(),
                terms: peer("River"),
            },
        ];
        let state = evolve(
            evolve(
                Participant::default(),
                &registered(),
                at("2026-11-20T12:00:00Z"),
            ),
            &recorded,
            at("2026-11-20T12:00:01.123456789Z"),
        );
        // One commit: the superseded consent is revoked when the new one is recorded.
        let superseded_at = at("2026-11-20T12:00:02.000000999Z");
        let state = superseding
            .iter()
            .fold(state, |state, event| evolve(state, event, superseded_at));
        let times = |id: &str| {
            state.consents.get(id).map(|consent| {
                (
                    consent.recorded_at,
                    consent.revoked_at,
                    consent.recorded_index,
                )
            })
        };
        assert_eq!(
            times("c1"),
            Some((
                at("2026-11-20T12:00:01.123456Z"),
                Some(at("2026-11-20T12:00:02Z")),
                0
            ))
        );
        assert_eq!(times("c2"), Some((at("2026-11-20T12:00:02Z"), None, 1)));
        assert_eq!(
            state.peer_visibility().map(|(id, _)| id.as_str()),
            Some("c2")
        );
    }

    #[test]
    fn forgetting_records_when_and_why_once() {
        let forget = ParticipantCommand::Forget {
            reason: ForgetReason::ParticipantRequest,
            reference: "ticket-42".into(),
        };
        assert_eq!(when(&[registered()], forget.clone()), Ok(vec![forgotten()]));
        assert_eq!(
            when(&[registered(), forgotten()], forget.clone()),
            Ok(vec![])
        );
        assert_eq!(when(&[], forget), Err(DomainError::ParticipantNotFound));
    }

    #[test]
    fn a_forgotten_participant_refuses_every_other_command() {
        let history = [
            registered(),
            Event::ConsentRecorded {
                consent_id: "c1".into(),
                terms: peer("Sunny"),
            },
            forgotten(),
        ];
        for command in [
            ParticipantCommand::Update {
                profile: Some(Profile::default()),
                home_clinic_id: None,
            },
            ParticipantCommand::Update {
                profile: None,
                home_clinic_id: Some("south".into()),
            },
            ParticipantCommand::RecordConsent {
                consent_id: "c2".into(),
                terms: peer("River"),
            },
            ParticipantCommand::RevokeConsent {
                consent_id: "c1".into(),
            },
        ] {
            assert_eq!(
                when(&history, command.clone()),
                Err(DomainError::ParticipantForgotten),
                "{command:?}"
            );
        }
        assert_eq!(
            when(
                &history,
                ParticipantCommand::Register {
                    home_clinic_id: "north".into(),
                    profile: Profile::default(),
                }
            ),
            Err(DomainError::ParticipantExists)
        );
    }

    #[test]
    fn a_forgotten_record_keeps_no_personal_text() {
        let history = [
            registered(),
            Event::ConsentRecorded {
                consent_id: "c1".into(),
                terms: peer("Sunny"),
            },
            Event::ConsentRecorded {
                consent_id: "c2".into(),
                terms: ConsentTerms::TreatmentDisclosure {
                    recipient: "County probation office".into(),
                    purpose: "compliance".into(),
                },
            },
            forgotten(),
        ];
        let state = replayed(&history);
        let redacted = circle_vault::REDACTED;
        assert_eq!(state.profile.given_name, redacted);
        assert_eq!(state.profile.family_name, redacted);
        // Empty stays empty, as an opener shows it.
        assert_eq!(state.profile.email, "");
        assert_eq!(state.consents["c1"].terms, peer(redacted));
        assert_eq!(
            state.consents["c2"].terms,
            ConsentTerms::TreatmentDisclosure {
                recipient: redacted.into(),
                purpose: redacted.into(),
            }
        );
        assert_eq!(
            state.forgotten,
            Some(Forgotten {
                reason: ForgetReason::ParticipantRequest,
                reference: "ticket-42".into(),
                at: at("2026-11-21T09:00:00Z"),
            })
        );
    }
}
