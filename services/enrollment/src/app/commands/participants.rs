//! Participants: registration in an open home clinic, profile and home clinic
//! changes, consents, forgetting. Each answers with the record, or the consent, as its
//! commit left it, times included, opened for the answer: what a read at its
//! consistency token shows.
//!
//! Forgetting (crypto-shredding) destroys the participant's data key first, then
//! commits `ParticipantForgotten`: a crash between the two leaves the key destroyed and
//! the record not yet marked, which a retry (or any later forget) completes; the other
//! order could leave a record marked forgotten whose text still opens.

use circle_grpc::{ApiError, Caller, Target, Violations};
use circle_names::{ClinicName, ConsentName, ParticipantName};

use super::{Commands, Sent, clinics, derived_id};
use crate::app::access::{Operation, permit, permit_unplaced};
use crate::app::errors::{command_error, domain_error};
use crate::app::{ConsentView, ParticipantView};
use crate::domain::{
    ConsentTerms, DomainError, ForgetReason, Participant, ParticipantCommand, Profile, clinic,
};
use circle_service::errors::key_store_error;

pub struct RegisterParticipant {
    pub name: ParticipantName,
    pub home_clinic: ClinicName,
    /// Checked (`checked_profile`).
    pub profile: Profile,
    pub sent: Sent,
}

/// The profile fields a change replaces (as given, checked once merged).
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub preferred_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl ProfileChanges {
    fn is_empty(&self) -> bool {
        self.given_name.is_none()
            && self.family_name.is_none()
            && self.preferred_name.is_none()
            && self.email.is_none()
            && self.phone.is_none()
    }

    fn merged_into(self, mut profile: Profile) -> Profile {
        let replace = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        replace(&mut profile.given_name, self.given_name);
        replace(&mut profile.family_name, self.family_name);
        replace(&mut profile.preferred_name, self.preferred_name);
        replace(&mut profile.email, self.email);
        replace(&mut profile.phone, self.phone);
        profile
    }
}

pub struct UpdateParticipant {
    pub name: ParticipantName,
    /// A new home clinic.
    pub home_clinic: Option<ClinicName>,
    pub profile: ProfileChanges,
    pub etag: Option<u64>,
    pub sent: Sent,
}

pub struct RecordConsent {
    pub participant: ParticipantName,
    pub terms: ConsentTerms,
    pub sent: Sent,
}

pub struct RevokeConsent {
    pub name: ConsentName,
    pub sent: Sent,
}

pub struct ForgetParticipant {
    pub name: ParticipantName,
    pub reason: ForgetReason,
    /// Checked: a case or ticket reference, not personal data; may be empty.
    pub reference: String,
    pub sent: Sent,
}

/// A consent as a command left it (when it was recorded, and revoked), and the
/// version of the participant's record: the consistency token.
#[derive(Debug, Clone)]
pub struct ConsentAnswer {
    pub consent: ConsentView,
    pub version: u64,
}

impl Commands {
    /// The home clinic must be open.
    pub async fn register_participant(
        &self,
        caller: &Caller,
        input: RegisterParticipant,
    ) -> Result<ParticipantView, ApiError> {
        let RegisterParticipant {
            name,
            home_clinic,
            profile,
            sent,
        } = input;
        permit(
            caller,
            Operation::RegisterParticipant,
            &name.network,
            clinics(&[home_clinic.clinic.as_str()]),
        )?;
        let clinic = self
            .aggregates
            .load_clinic(name.network.as_str(), home_clinic.clinic.as_str())
            .await
            .map_err(command_error)?;
        clinic::require_open(&clinic).map_err(domain_error)?;
        let executed = self
            .aggregates
            .participant(
                name.network.as_str(),
                name.participant.as_str(),
                &sent.meta(caller),
                None,
                ParticipantCommand::Register {
                    home_clinic_id: home_clinic.clinic.to_string(),
                    profile,
                },
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let network = name.network.to_string();
        let view = ParticipantView::of(name, executed.state(), commit.sequence)?;
        self.opened(&network, view).await
    }

    /// Profile and home clinic are the care team's to change (the current home clinic
    /// and the new one), not the participant's. The changed profile fields replace the
    /// current ones and the merged profile is checked as at registration; a new home
    /// clinic must be open.
    pub async fn update_participant(
        &self,
        caller: &Caller,
        input: UpdateParticipant,
    ) -> Result<ParticipantView, ApiError> {
        let UpdateParticipant {
            name,
            home_clinic,
            profile,
            etag,
            sent,
        } = input;
        let new_home: Vec<&str> = home_clinic
            .iter()
            .map(|home| home.clinic.as_str())
            .collect();
        // A new home clinic is in the request; the current one is known once loaded.
        if new_home.is_empty() {
            permit_unplaced(
                caller,
                Operation::UpdateParticipant,
                &name.network,
                Target::default(),
            )?;
        } else {
            permit(
                caller,
                Operation::UpdateParticipant,
                &name.network,
                clinics(&new_home),
            )?;
        }
        let (network, participant_id) = (name.network.as_str(), name.participant.as_str());
        let current = self
            .aggregates
            .load_participant(network, participant_id)
            .await
            .map_err(command_error)?;
        // The current home clinic is known only now (someone not registered is in no
        // clinic: refused to clinic-scoped staff as one of another clinic is).
        let mut scope: Vec<&str> = home_of(&current).into_iter().collect();
        scope.extend(new_home.iter().copied());
        permit(
            caller,
            Operation::UpdateParticipant,
            &name.network,
            clinics(&scope),
        )?;
        if !current.registered {
            return Err(domain_error(DomainError::ParticipantNotFound));
        }
        // Refused before the merge: a forgotten profile reads redacted and would be
        // reported as bad fields.
        if current.forgotten.is_some() {
            return Err(domain_error(DomainError::ParticipantForgotten));
        }
        // The state's profile is sealed: the changes merge into the profile in clear,
        // and "nothing changed" is decided here, on opened text (the domain would see
        // sealed text differ from any plaintext).
        let mut opened = current.profile.clone();
        self.vault
            .open_all(network, participant_id, std::slice::from_mut(&mut opened))
            .await
            .map_err(key_store_error)?;
        let profile_changed = !profile.is_empty();
        let mut violations = Violations::default();
        let merged = checked_profile(
            &mut violations,
            "participant.profile",
            &profile.merged_into(opened.clone()),
        );
        violations.into_result()?;
        let home_clinic_id = match &home_clinic {
            Some(home) => {
                let clinic = self
                    .aggregates
                    .load_clinic(network, home.clinic.as_str())
                    .await
                    .map_err(command_error)?;
                clinic::require_open(&clinic).map_err(domain_error)?;
                Some(home.clinic.to_string())
            }
            None => None,
        };
        let command = ParticipantCommand::Update {
            profile: (profile_changed && merged != opened).then_some(merged),
            home_clinic_id,
        };
        let executed = self
            .aggregates
            .participant(network, participant_id, &sent.meta(caller), etag, command)
            .await
            .map_err(command_error)?;
        let network = network.to_owned();
        let view = ParticipantView::of(name, executed.state(), executed.version())?;
        self.opened(&network, view).await
    }

    /// Staff of the participant's home clinic, or the participant. The consent's id is
    /// derived from the request id, so a retry lands on the same consent.
    pub async fn record_consent(
        &self,
        caller: &Caller,
        input: RecordConsent,
    ) -> Result<ConsentAnswer, ApiError> {
        let RecordConsent {
            participant,
            terms,
            sent,
        } = input;
        self.permit_on_record(caller, Operation::RecordConsent, &participant)
            .await?;
        let (network, participant_id) = (
            participant.network.as_str(),
            participant.participant.as_str(),
        );
        let consent_id = derived_id(
            network,
            "consent_id",
            &format!("{participant_id}/{}", sent.request_id),
        );
        let command = ParticipantCommand::RecordConsent {
            consent_id: consent_id.to_string(),
            terms,
        };
        let executed = self
            .aggregates
            .participant(network, participant_id, &sent.meta(caller), None, command)
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let Some(recorded) = executed.state().consents.get(consent_id.as_str()) else {
            return Err(ApiError::request_id_reused());
        };
        let consent = ConsentView::of(participant.consent(consent_id), recorded);
        Ok(ConsentAnswer {
            consent: self.opened(network, consent).await?,
            version: commit.sequence,
        })
    }

    pub async fn revoke_consent(
        &self,
        caller: &Caller,
        input: RevokeConsent,
    ) -> Result<ConsentAnswer, ApiError> {
        let RevokeConsent { name, sent } = input;
        let participant = name.participant_name();
        self.permit_on_record(caller, Operation::RevokeConsent, &participant)
            .await?;
        let command = ParticipantCommand::RevokeConsent {
            consent_id: name.consent.to_string(),
        };
        let executed = self
            .aggregates
            .participant(
                name.network.as_str(),
                name.participant.as_str(),
                &sent.meta(caller),
                None,
                command,
            )
            .await
            .map_err(command_error)?;
        let Some(consent) = executed.state().consents.get(name.consent.as_str()) else {
            return Err(ApiError::internal());
        };
        let network = name.network.to_string();
        let consent = ConsentView::of(name, consent);
        Ok(ConsentAnswer {
            consent: self.opened(&network, consent).await?,
            version: executed.version(),
        })
    }

    /// Network admins only (the whole network's records, and it cannot be undone).
    /// Destroys the participant's data key, then records it; answers with the record
    /// as reads show it from then on (personal fields redacted, `forgotten_at` set).
    /// Forgetting someone already forgotten destroys nothing more and records nothing:
    /// it answers with the record (a retry of the same request with its original
    /// answer).
    pub async fn forget_participant(
        &self,
        caller: &Caller,
        input: ForgetParticipant,
    ) -> Result<ParticipantView, ApiError> {
        let ForgetParticipant {
            name,
            reason,
            reference,
            sent,
        } = input;
        permit(
            caller,
            Operation::ForgetParticipant,
            &name.network,
            Target::default(),
        )?;
        let (network, participant_id) = (name.network.as_str(), name.participant.as_str());
        let current = self
            .aggregates
            .participant_snapshot(network, participant_id)
            .await
            .map_err(command_error)?;
        // No key (nor tombstone) is made for someone never registered.
        if !current.state.registered {
            return Err(domain_error(DomainError::ParticipantNotFound));
        }
        let meta = sent.meta(caller);
        // A request id already on the record is the repository's to answer (a retry
        // with its original answer, or REQUEST_ID_REUSED): nothing is destroyed for it.
        if !current.has_request(&meta.request_id) {
            self.vault
                .forget(network, participant_id)
                .await
                .map_err(key_store_error)?;
        }
        let executed = self
            .aggregates
            .participant(
                network,
                participant_id,
                &meta,
                None,
                ParticipantCommand::Forget { reason, reference },
            )
            .await
            .map_err(command_error)?;
        let network = network.to_owned();
        let view = ParticipantView::of(name, executed.state(), executed.version())?;
        self.opened(&network, view).await
    }

    /// The participant's own record, or staff of their home clinic (known once their
    /// record is loaded).
    async fn permit_on_record(
        &self,
        caller: &Caller,
        operation: Operation,
        participant: &ParticipantName,
    ) -> Result<(), ApiError> {
        let own = Some(participant.participant.as_str());
        permit_unplaced(
            caller,
            operation,
            &participant.network,
            Target {
                participant: own,
                ..Target::default()
            },
        )?;
        let record = self
            .aggregates
            .load_participant(
                participant.network.as_str(),
                participant.participant.as_str(),
            )
            .await
            .map_err(command_error)?;
        // Someone not registered is in no clinic: refused to clinic-scoped staff as
        // one of another clinic is, before the command says they do not exist.
        let home: Vec<&str> = home_of(&record).into_iter().collect();
        permit(
            caller,
            operation,
            &participant.network,
            Target {
                clinics: &home,
                participant: own,
                ..Target::default()
            },
        )
    }
}

/// A registered participant's home clinic; none for someone never registered.
fn home_of(record: &Participant) -> Option<&str> {
    record.registered.then_some(record.home_clinic_id.as_str())
}

/// A participant's profile checked field by field (`{field}.given_name`, …): names
/// required, preferred name, email and phone optional.
pub fn checked_profile(violations: &mut Violations, field: &str, profile: &Profile) -> Profile {
    let mut check = |name: &str, result: Result<String, String>| {
        violations
            .check(&format!("{field}.{name}"), result)
            .unwrap_or_default()
    };
    Profile {
        given_name: check(
            "given_name",
            circle_grpc::line(&profile.given_name, 100, true),
        ),
        family_name: check(
            "family_name",
            circle_grpc::line(&profile.family_name, 100, true),
        ),
        preferred_name: check(
            "preferred_name",
            circle_grpc::line(&profile.preferred_name, 100, false),
        ),
        email: check("email", email(&profile.email)),
        phone: check("phone", phone(&profile.phone)),
    }
}

fn email(value: &str) -> Result<String, String> {
    let value = circle_grpc::line(value, 254, false)?;
    if value.is_empty() || (value.contains('@') && !value.contains(' ')) {
        Ok(value)
    } else {
        Err("must be an email address".into())
    }
}

fn phone(value: &str) -> Result<String, String> {
    let value = circle_grpc::line(value, 32, false)?;
    if value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        Ok(value)
    } else {
        Err("must be a phone number".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_change_replaces_only_the_given_fields_and_is_checked_merged() {
        let current = Profile {
            given_name: "Sam".into(),
            family_name: "Doe".into(),
            preferred_name: String::new(),
            email: "sam@example.org".into(),
            phone: String::new(),
        };
        let changes = ProfileChanges {
            email: Some("not an email".into()),
            preferred_name: Some(" Sammy ".into()),
            ..ProfileChanges::default()
        };
        assert!(!changes.is_empty());
        assert!(ProfileChanges::default().is_empty());
        let merged = changes.merged_into(current);
        assert_eq!(merged.given_name, "Sam");
        assert_eq!(merged.email, "not an email");
        let mut violations = Violations::default();
        let checked = checked_profile(&mut violations, "participant.profile", &merged);
        assert_eq!(checked.preferred_name, "Sammy");
        let error = violations.into_result().expect_err("the email is checked");
        let fields: Vec<&str> = error
            .violations
            .iter()
            .map(|(field, _)| field.as_str())
            .collect();
        assert_eq!(fields, ["participant.profile.email"]);
    }
}
