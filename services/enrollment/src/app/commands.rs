//! The command side: one function per command RPC on `Commands`, and the steps only the
//! service's own process managers take. Each checks its row of the access table with
//! what its names show before anything is loaded (a participant's home clinic, known
//! only from their record, is checked again once loaded), then resolves what the
//! command needs (other aggregates, read-model facts), records who sent it
//! (`circle_service::commit_meta`, with the request id and fingerprint the edge read)
//! and runs it through the aggregates. The answer is built from the commit, so a retry
//! gets the original answer. Errors are `ApiError`s (the domain's table in `errors`).

use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{EventStore, Recorded};
use circle_grpc::{ApiError, Caller, Target, Violations};
use circle_names::{ClinicName, ConsentName, GroupName, Id, MembershipName, ParticipantName};
use circle_service::{Fingerprint, commit_meta};
use sqlx::PgPool;
use tonic::Code;

use super::access::{self, Operation, Step, permit, permit_rule};
use super::aggregates::{Aggregates, CommandError};
use super::errors::{command_error, domain_error};
use super::{MembershipView, facts, not_found};
use crate::domain::participant::ConsentState;
use crate::domain::{
    AdmissionMode, Clinic, ClinicCommand, ConsentTerms, DischargeReason, DomainError, Event,
    Facilitator, Group, GroupChanges, GroupCommand, GroupDetails, Participant, ParticipantCommand,
    Profile, Schedule, Time, TransferRef, clinic,
};
use crate::read_model::{discharge_reason_text, state};

/// What the commands need: the aggregates (over the event store), the pool (for the
/// read-model facts a command checks) and the clock.
pub struct Commands {
    aggregates: Aggregates,
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

/// How a command was sent: its request id (a retry carries the same) and the
/// fingerprint of its content, which a retry must match.
#[derive(Debug, Clone)]
pub struct Sent {
    pub request_id: String,
    pub fingerprint: Fingerprint,
}

impl Sent {
    fn meta(self, caller: &Caller) -> circle_eventstore::CommitMeta {
        commit_meta(caller, self.request_id, self.fingerprint)
    }
}

pub struct CreateClinic {
    pub name: ClinicName,
    pub display_name: String,
    pub time_zone: String,
    pub sent: Sent,
}

/// Only the fields given change.
pub struct UpdateClinic {
    pub name: ClinicName,
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
    pub etag: Option<u64>,
    pub sent: Sent,
}

pub struct ArchiveClinic {
    pub name: ClinicName,
    pub etag: Option<u64>,
    pub sent: Sent,
}

/// A clinic and its version (etag) as a command left it.
#[derive(Debug, Clone)]
pub struct ClinicAnswer {
    pub name: ClinicName,
    pub clinic: Clinic,
    pub version: u64,
}

/// A new group's own fields; its time zone is its clinic's.
pub struct NewGroup {
    pub display_name: String,
    pub modality: String,
    pub level_of_care: String,
    pub capacity: u32,
    pub admission_mode: AdmissionMode,
    pub facilitators: Vec<Facilitator>,
    pub schedule: Option<Schedule>,
}

pub struct CreateGroup {
    pub name: GroupName,
    pub group: NewGroup,
    pub sent: Sent,
}

pub struct UpdateGroup {
    pub name: GroupName,
    pub changes: GroupChanges,
    pub etag: Option<u64>,
    pub sent: Sent,
}

pub struct ArchiveGroup {
    pub name: GroupName,
    pub etag: Option<u64>,
    pub sent: Sent,
}

/// A group and its version as a command left it, with the time the answer was made
/// (its next session is computed from it).
#[derive(Debug, Clone)]
pub struct GroupAnswer {
    pub name: GroupName,
    pub group: Group,
    pub version: u64,
    pub now: Time,
}

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

/// A participant and their version as a command left them.
#[derive(Debug, Clone)]
pub struct ParticipantAnswer {
    pub name: ParticipantName,
    pub participant: Participant,
    pub version: u64,
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

/// A consent as a command left it: when it was recorded (answering a record) or
/// revoked (answering a revocation), and the version of the participant's record.
#[derive(Debug, Clone)]
pub struct ConsentAnswer {
    pub name: ConsentName,
    pub consent: ConsentState,
    pub recorded_at: Option<Time>,
    pub revoked_at: Option<Time>,
    pub version: u64,
}

pub struct EnrollParticipant {
    pub group: GroupName,
    pub participant: ParticipantName,
    pub facilitator_override: bool,
    pub etag: Option<u64>,
    pub sent: Sent,
}

/// A command on one membership that needs nothing but its name.
pub struct OnMembership {
    pub name: MembershipName,
    pub sent: Sent,
}

pub struct HoldMembership {
    pub name: MembershipName,
    /// Checked; may be empty.
    pub reason: String,
    pub sent: Sent,
}

pub struct DischargeParticipant {
    pub name: MembershipName,
    pub reason: DischargeReason,
    pub sent: Sent,
}

pub struct TransferParticipant {
    /// The membership that moves.
    pub from: MembershipName,
    /// Another group.
    pub to: GroupName,
    pub sent: Sent,
}

/// A membership as one commit left it (no history), and the commit's version.
#[derive(Debug, Clone)]
pub struct MembershipAnswer {
    pub membership: MembershipView,
    pub version: u64,
}

/// Why a process-manager step did not run: refused by the access table (a bug: only
/// the service's process managers call steps), or the command's own error.
#[derive(Debug)]
pub(crate) enum StepError {
    Refused(ApiError),
    Command(CommandError),
}

impl Commands {
    pub fn new(
        store: EventStore,
        pool: PgPool,
        clock: Arc<dyn Clock>,
        offer_ttl: chrono::Duration,
    ) -> Self {
        Self {
            aggregates: Aggregates::new(store, clock.clone(), offer_ttl),
            pool,
            clock,
        }
    }

    /// The service's clock (a schedule's dates are checked against today).
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    pub async fn create_clinic(
        &self,
        caller: &Caller,
        input: CreateClinic,
    ) -> Result<ClinicAnswer, ApiError> {
        let CreateClinic {
            name,
            display_name,
            time_zone,
            sent,
        } = input;
        permit(
            caller,
            Operation::CreateClinic,
            &name.network,
            Target::default(),
        )?;
        let executed = self
            .aggregates
            .clinic(
                name.network.as_str(),
                name.clinic.as_str(),
                &sent.meta(caller),
                None,
                ClinicCommand::Create {
                    display_name,
                    time_zone,
                },
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        Ok(ClinicAnswer {
            version: commit.sequence,
            clinic: executed.state().clone(),
            name,
        })
    }

    pub async fn update_clinic(
        &self,
        caller: &Caller,
        input: UpdateClinic,
    ) -> Result<ClinicAnswer, ApiError> {
        permit(
            caller,
            Operation::UpdateClinic,
            &input.name.network,
            Target::default(),
        )?;
        let command = ClinicCommand::Update {
            display_name: input.display_name,
            time_zone: input.time_zone,
        };
        self.clinic_command(caller, input.name, input.sent, input.etag, command)
            .await
    }

    /// A clinic with open groups is not archived (best effort, on the read model).
    pub async fn archive_clinic(
        &self,
        caller: &Caller,
        input: ArchiveClinic,
    ) -> Result<ClinicAnswer, ApiError> {
        let name = &input.name;
        permit(
            caller,
            Operation::ArchiveClinic,
            &name.network,
            Target::default(),
        )?;
        let open_groups =
            facts::open_groups_of_clinic(&self.pool, name.network.as_str(), name.clinic.as_str())
                .await?;
        if open_groups > 0 {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                "CLINIC_HAS_GROUPS",
                "archive the clinic's groups first",
            ));
        }
        self.clinic_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            ClinicCommand::Archive,
        )
        .await
    }

    async fn clinic_command(
        &self,
        caller: &Caller,
        name: ClinicName,
        sent: Sent,
        etag: Option<u64>,
        command: ClinicCommand,
    ) -> Result<ClinicAnswer, ApiError> {
        let executed = self
            .aggregates
            .clinic(
                name.network.as_str(),
                name.clinic.as_str(),
                &sent.meta(caller),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(ClinicAnswer {
            version: executed.version(),
            clinic: executed.state().clone(),
            name,
        })
    }

    /// The group takes its clinic's time zone; the clinic must be open.
    pub async fn create_group(
        &self,
        caller: &Caller,
        input: CreateGroup,
    ) -> Result<GroupAnswer, ApiError> {
        let CreateGroup { name, group, sent } = input;
        permit(
            caller,
            Operation::CreateGroup,
            &name.network,
            clinics(&[name.clinic.as_str()]),
        )?;
        let clinic = self
            .aggregates
            .load_clinic(name.network.as_str(), name.clinic.as_str())
            .await
            .map_err(command_error)?;
        clinic::require_open(&clinic).map_err(domain_error)?;
        let details = GroupDetails {
            clinic_id: name.clinic.to_string(),
            display_name: group.display_name,
            modality: group.modality,
            level_of_care: group.level_of_care,
            capacity: group.capacity,
            admission_mode: group.admission_mode,
            time_zone: clinic.time_zone.clone(),
            facilitators: group.facilitators,
            schedule: group.schedule,
        };
        let executed = self
            .aggregates
            .group(
                name.network.as_str(),
                None,
                name.group.as_str(),
                &sent.meta(caller),
                None,
                GroupCommand::Create(details),
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        Ok(GroupAnswer {
            version: commit.sequence,
            group: executed.state().clone(),
            now: self.clock.now(),
            name,
        })
    }

    pub async fn update_group(
        &self,
        caller: &Caller,
        input: UpdateGroup,
    ) -> Result<GroupAnswer, ApiError> {
        permit(
            caller,
            Operation::UpdateGroup,
            &input.name.network,
            clinics(&[input.name.clinic.as_str()]),
        )?;
        self.group_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            GroupCommand::Update(input.changes),
        )
        .await
    }

    pub async fn archive_group(
        &self,
        caller: &Caller,
        input: ArchiveGroup,
    ) -> Result<GroupAnswer, ApiError> {
        permit(
            caller,
            Operation::ArchiveGroup,
            &input.name.network,
            clinics(&[input.name.clinic.as_str()]),
        )?;
        self.group_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            GroupCommand::Archive,
        )
        .await
    }

    async fn group_command(
        &self,
        caller: &Caller,
        name: GroupName,
        sent: Sent,
        etag: Option<u64>,
        command: GroupCommand,
    ) -> Result<GroupAnswer, ApiError> {
        let executed = self
            .aggregates
            .group(
                name.network.as_str(),
                Some(name.clinic.as_str()),
                name.group.as_str(),
                &sent.meta(caller),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(GroupAnswer {
            version: executed.version(),
            group: executed.state().clone(),
            now: self.clock.now(),
            name,
        })
    }

    /// The home clinic must be open.
    pub async fn register_participant(
        &self,
        caller: &Caller,
        input: RegisterParticipant,
    ) -> Result<ParticipantAnswer, ApiError> {
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
        Ok(ParticipantAnswer {
            version: commit.sequence,
            participant: executed.state().clone(),
            name,
        })
    }

    /// Profile and home clinic are the care team's to change (the current home clinic
    /// and the new one), not the participant's. The changed profile fields replace the
    /// current ones and the merged profile is checked as at registration; a new home
    /// clinic must be open.
    pub async fn update_participant(
        &self,
        caller: &Caller,
        input: UpdateParticipant,
    ) -> Result<ParticipantAnswer, ApiError> {
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
        permit(
            caller,
            Operation::UpdateParticipant,
            &name.network,
            clinics(&new_home),
        )?;
        let (network, participant_id) = (name.network.as_str(), name.participant.as_str());
        let current = self
            .aggregates
            .load_participant(network, participant_id)
            .await
            .map_err(command_error)?;
        // The current home clinic is known only now.
        let mut scope = vec![current.home_clinic_id.as_str()];
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
        let profile_changed = !profile.is_empty();
        let mut violations = Violations::default();
        let merged = checked_profile(
            &mut violations,
            "participant.profile",
            &profile.merged_into(current.profile.clone()),
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
            profile: profile_changed.then_some(merged),
            home_clinic_id,
        };
        let executed = self
            .aggregates
            .participant(network, participant_id, &sent.meta(caller), etag, command)
            .await
            .map_err(command_error)?;
        Ok(ParticipantAnswer {
            version: executed.version(),
            participant: executed.state().clone(),
            name,
        })
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
        )
        .ok_or_else(ApiError::internal)?;
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
        Ok(ConsentAnswer {
            name: participant.consent(consent_id),
            consent: recorded.clone(),
            recorded_at: Some(commit.committed_at),
            revoked_at: None,
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
        Ok(ConsentAnswer {
            consent: consent.clone(),
            recorded_at: None,
            revoked_at: executed.committed_at(),
            version: executed.version(),
            name,
        })
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
        permit(
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
        permit(
            caller,
            operation,
            &participant.network,
            Target {
                clinics: &[record.home_clinic_id.as_str()],
                participant: own,
                caller_is_member: false,
            },
        )
    }

    /// Seat or waitlist; admitting into a closed group after its first session takes
    /// `facilitator_override`, which only some roles may give. The participant must be
    /// registered.
    pub async fn enroll_participant(
        &self,
        caller: &Caller,
        input: EnrollParticipant,
    ) -> Result<MembershipAnswer, ApiError> {
        let EnrollParticipant {
            group,
            participant,
            facilitator_override,
            etag,
            sent,
        } = input;
        let scope = [group.clinic.as_str()];
        permit(
            caller,
            Operation::EnrollParticipant,
            &group.network,
            clinics(&scope),
        )?;
        if facilitator_override {
            access::check_closed_admission_override(caller, Some(&clinics(&scope)))?;
        }
        let registered = self
            .aggregates
            .load_participant(group.network.as_str(), participant.participant.as_str())
            .await
            .map_err(command_error)?
            .registered;
        if !registered {
            return Err(not_found("PARTICIPANT_NOT_FOUND", &participant.to_string()));
        }
        let command = GroupCommand::Enroll {
            participant_id: participant.participant.to_string(),
            facilitator_override,
        };
        self.membership_command(
            caller,
            group.membership(participant.participant),
            sent,
            etag,
            command,
        )
        .await
    }

    /// The participant (an offer made to them) or staff of the group's clinic.
    pub async fn accept_seat_offer(
        &self,
        caller: &Caller,
        input: OnMembership,
    ) -> Result<MembershipAnswer, ApiError> {
        permit_membership(caller, Operation::AcceptSeatOffer, &input.name)?;
        let command = GroupCommand::AcceptOffer {
            participant_id: input.name.membership.to_string(),
        };
        self.membership_command(caller, input.name, input.sent, None, command)
            .await
    }

    /// The participant (an offer made to them) or staff of the group's clinic.
    pub async fn decline_seat_offer(
        &self,
        caller: &Caller,
        input: OnMembership,
    ) -> Result<MembershipAnswer, ApiError> {
        permit_membership(caller, Operation::DeclineSeatOffer, &input.name)?;
        let command = GroupCommand::DeclineOffer {
            participant_id: input.name.membership.to_string(),
        };
        self.membership_command(caller, input.name, input.sent, None, command)
            .await
    }

    pub async fn hold_membership(
        &self,
        caller: &Caller,
        input: HoldMembership,
    ) -> Result<MembershipAnswer, ApiError> {
        permit_membership(caller, Operation::HoldMembership, &input.name)?;
        let command = GroupCommand::Hold {
            participant_id: input.name.membership.to_string(),
            reason: input.reason,
        };
        self.membership_command(caller, input.name, input.sent, None, command)
            .await
    }

    pub async fn resume_membership(
        &self,
        caller: &Caller,
        input: OnMembership,
    ) -> Result<MembershipAnswer, ApiError> {
        permit_membership(caller, Operation::ResumeMembership, &input.name)?;
        let command = GroupCommand::Resume {
            participant_id: input.name.membership.to_string(),
        };
        self.membership_command(caller, input.name, input.sent, None, command)
            .await
    }

    pub async fn discharge_participant(
        &self,
        caller: &Caller,
        input: DischargeParticipant,
    ) -> Result<MembershipAnswer, ApiError> {
        permit_membership(caller, Operation::DischargeParticipant, &input.name)?;
        let command = GroupCommand::Discharge {
            participant_id: input.name.membership.to_string(),
            reason: input.reason,
        };
        self.membership_command(caller, input.name, input.sent, None, command)
            .await
    }

    /// The first half of a transfer runs here: the new group takes the participant
    /// (seat or waitlist). The old group releases them once they hold the new seat —
    /// the transfers process manager does that from the log (`release_for_transfer`).
    /// Staff of both groups' clinics.
    pub async fn transfer_participant(
        &self,
        caller: &Caller,
        input: TransferParticipant,
    ) -> Result<MembershipAnswer, ApiError> {
        let TransferParticipant { from, to, sent } = input;
        permit(
            caller,
            Operation::TransferParticipant,
            &from.network,
            clinics(&[from.clinic.as_str(), to.clinic.as_str()]),
        )?;
        let network = from.network.as_str();
        let participant_id = from.membership.as_str();
        let source = self
            .aggregates
            .load_group(network, from.group.as_str())
            .await
            .map_err(command_error)?;
        let in_source = source
            .state
            .details
            .as_ref()
            .is_some_and(|details| details.clinic_id == from.clinic.as_str())
            && source.state.members.contains_key(participant_id);
        // A retry is answered by the new group even after the old seat was released.
        let retried = self
            .aggregates
            .load_group(network, to.group.as_str())
            .await
            .map_err(command_error)?
            .has_request(&sent.request_id);
        if !in_source && !retried {
            return Err(domain_error(DomainError::NotEnrolled));
        }
        let transfer = TransferRef {
            // Unique per network, groups, participant and request: two transfers out
            // of one group never share the id their release is keyed on.
            transfer_id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!(
                    "{network}/{}/{}/{participant_id}/{}",
                    from.group, to.group, sent.request_id
                )
                .as_bytes(),
            )
            .to_string(),
            from_group_id: from.group.to_string(),
            to_group_id: to.group.to_string(),
        };
        let command = GroupCommand::TransferIn {
            participant_id: participant_id.to_owned(),
            transfer,
            facilitator_override: false,
        };
        self.membership_command(caller, to.membership(from.membership), sent, None, command)
            .await
    }

    /// Runs a command on one membership's group and answers with the membership as
    /// the commit left it.
    async fn membership_command(
        &self,
        caller: &Caller,
        name: MembershipName,
        sent: Sent,
        etag: Option<u64>,
        command: GroupCommand,
    ) -> Result<MembershipAnswer, ApiError> {
        let executed = self
            .aggregates
            .group(
                name.network.as_str(),
                Some(name.clinic.as_str()),
                name.group.as_str(),
                &sent.meta(caller),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let membership =
            membership_from_commit(name, commit).ok_or_else(ApiError::request_id_reused)?;
        Ok(MembershipAnswer {
            membership,
            version: commit.sequence,
        })
    }

    /// A seat offer's time is up: expire it (and offer the seat to the next person, in
    /// the same commit). Request id `pm:expire-<offer>`.
    pub(crate) async fn expire_offer(
        &self,
        caller: &Caller,
        network: &str,
        group_id: &str,
        offer_id: &str,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::ExpireOffer, network)?;
        let command = GroupCommand::ExpireOffer {
            offer_id: offer_id.to_owned(),
        };
        self.step(
            caller,
            network,
            group_id,
            format!("pm:expire-{offer_id}"),
            command,
        )
        .await
    }

    /// The second half of a transfer: the participant holds the new seat, so the old
    /// group releases them. Request id `pm:release-<transfer>`.
    pub(crate) async fn release_for_transfer(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: String,
        transfer: TransferRef,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::ReleaseForTransfer, network)?;
        let request_id = format!("pm:release-{}", transfer.transfer_id);
        let from_group = transfer.from_group_id.clone();
        let command = GroupCommand::ReleaseForTransfer {
            participant_id,
            transfer,
        };
        self.step(caller, network, &from_group, request_id, command)
            .await
    }

    async fn step(
        &self,
        caller: &Caller,
        network: &str,
        group_id: &str,
        request_id: String,
        command: GroupCommand,
    ) -> Result<(), StepError> {
        self.aggregates
            .group(
                network,
                None,
                group_id,
                &circle_service::step_meta(caller, request_id),
                None,
                command,
            )
            .await
            .map(|_| ())
            .map_err(StepError::Command)
    }
}

fn clinics<'a>(clinics: &'a [&'a str]) -> Target<'a> {
    Target {
        clinics,
        ..Target::default()
    }
}

/// A membership's row: staff of its group's clinic, or (where the row lets them) the
/// participant whose membership it is.
fn permit_membership(
    caller: &Caller,
    operation: Operation,
    name: &MembershipName,
) -> Result<(), ApiError> {
    permit(
        caller,
        operation,
        &name.network,
        Target {
            clinics: &[name.clinic.as_str()],
            participant: Some(name.membership.as_str()),
            caller_is_member: false,
        },
    )
}

fn permit_step(caller: &Caller, step: Step, network: &str) -> Result<(), StepError> {
    permit_rule(caller, access::step_rule(step), network, Target::default())
        .map_err(StepError::Refused)
}

/// An id derived from what a request names (`seed`, usually with its request id), so a
/// retry of a create without an id lands on the same record.
pub fn derived_id(network: &str, field: &str, seed: &str) -> Option<Id> {
    let seed = format!("{network}/{field}/{seed}");
    Id::parse(&uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()).ok()
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

/// The membership `name` names as one commit left it: the original answer to the
/// command that made the commit, whenever it is asked again. `None` when the commit
/// did not touch it (the request id was used for another command).
fn membership_from_commit(
    name: MembershipName,
    commit: &Recorded<Event>,
) -> Option<MembershipView> {
    let participant = name.membership.to_string();
    let participant_id = participant.as_str();
    let mut membership = MembershipView {
        participant: ParticipantName {
            network: name.network.clone(),
            participant: name.membership.clone(),
        },
        name,
        state: String::new(),
        waitlist_position: 0,
        since: commit.committed_at,
        offer_expires_at: None,
        end_reason: String::new(),
        history: Vec::new(),
    };
    let mut found = false;
    for event in &commit.events {
        let (state, position, expires, reason) = match event {
            Event::MemberAdmitted {
                participant_id: p, ..
            } if p == participant_id => (state::ACTIVE, 0, None, ""),
            Event::MemberWaitlisted {
                participant_id: p,
                position,
                ..
            } if p == participant_id => (state::WAITLISTED, *position, None, ""),
            Event::SeatOffered {
                participant_id: p,
                expires_at,
                ..
            } if p == participant_id => (state::OFFERED, 0, Some(*expires_at), ""),
            Event::SeatOfferDeclined {
                participant_id: p, ..
            } if p == participant_id => (state::ENDED, 0, None, "offer-declined"),
            Event::SeatOfferExpired {
                participant_id: p, ..
            } if p == participant_id => (state::ENDED, 0, None, "offer-expired"),
            Event::MemberHeld {
                participant_id: p, ..
            } if p == participant_id => (state::ON_HOLD, 0, None, ""),
            Event::MemberResumed { participant_id: p } if p == participant_id => {
                (state::ACTIVE, 0, None, "")
            }
            Event::MemberDischarged {
                participant_id: p,
                reason,
            } if p == participant_id => (state::ENDED, 0, None, discharge_reason_text(*reason)),
            Event::MemberTransferredOut {
                participant_id: p, ..
            } if p == participant_id => (state::ENDED, 0, None, "transferred"),
            _ => continue,
        };
        found = true;
        membership.state = state.to_owned();
        membership.waitlist_position = position;
        membership.offer_expires_at = expires;
        membership.end_reason = reason.to_owned();
    }
    found.then_some(membership)
}
