//! Memberships: enrolling, seat offers, hold and resume, discharge, transfers; each
//! answered with the membership as its commit left it.

use circle_eventstore::Recorded;
use circle_grpc::{ApiError, Caller, Target};
use circle_names::{GroupName, Id, MembershipName, ParticipantName};

use super::{Commands, Sent, clinics};
use crate::app::access::{self, Operation, permit};
use crate::app::errors::{command_error, domain_error};
use crate::app::{MembershipView, not_found};
use crate::domain::{DischargeReason, DomainError, Event, GroupCommand, TransferRef};
use crate::read_model::{discharge_reason_text, state};

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

impl Commands {
    /// Seat or waitlist; admitting into a closed group after its first session takes
    /// `facilitator_override`, which only some roles may give. The participant must be
    /// registered, and clinic-scoped staff hold both the group's clinic and the
    /// participant's home clinic (known once the record is loaded), as for a transfer:
    /// someone of another clinic, and someone never registered, are refused alike.
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
        let record = self
            .aggregates
            .load_participant(group.network.as_str(), participant.participant.as_str())
            .await
            .map_err(command_error)?;
        let mut both = vec![group.clinic.as_str()];
        if record.registered {
            both.push(record.home_clinic_id.as_str());
        } else {
            // Someone never registered is in no clinic: none of a scoped caller's.
            both.clear();
        }
        permit(
            caller,
            Operation::EnrollParticipant,
            &group.network,
            clinics(&both),
        )?;
        if !record.registered {
            return Err(not_found("PARTICIPANT_NOT_FOUND", &participant.to_string()));
        }
        // Nothing new is recorded about someone forgotten: no new membership.
        if record.forgotten.is_some() {
            return Err(domain_error(DomainError::ParticipantForgotten));
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
        // Both groups are the caller's network's (the edge refused another's already).
        caller.require_network(to.network.as_str(), &to.to_string())?;
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
        // A transfer makes a new membership: none for someone forgotten (their
        // existing ones may still be held, resumed or discharged, which records
        // nothing personal — a hold with a reason cannot be sealed for them and is
        // refused as PARTICIPANT_FORGOTTEN by the repository).
        if !retried
            && self
                .aggregates
                .load_participant(network, participant_id)
                .await
                .map_err(command_error)?
                .forgotten
                .is_some()
        {
            return Err(domain_error(DomainError::ParticipantForgotten));
        }
        let transfer = TransferRef {
            // Unique per network, groups, participant and request: two transfers out
            // of one group never share the id their release is keyed on.
            transfer_id: Id::derived(&format!(
                "{network}/{}/{}/{participant_id}/{}",
                from.group, to.group, sent.request_id
            ))
            .into_string(),
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
            ..Target::default()
        },
    )
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn membership(name: &str) -> MembershipName {
        MembershipName::parse(name).expect("valid name")
    }

    fn commit(events: Vec<Event>) -> Recorded<Event> {
        Recorded {
            sequence: 7,
            committed_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 24, 18, 0, 0)
                .single()
                .expect("valid time"),
            events,
        }
    }

    #[test]
    fn a_commit_answers_for_the_membership_it_touched_with_its_last_state() {
        let name = membership("networks/acme/clinics/north/groups/tue/memberships/sam");
        let answer = membership_from_commit(
            name.clone(),
            &commit(vec![
                Event::MemberResumed {
                    participant_id: "pat".into(),
                },
                Event::MemberDischarged {
                    participant_id: "sam".into(),
                    reason: DischargeReason::Completed,
                },
            ]),
        )
        .expect("the commit touched sam");
        assert_eq!(answer.name, name);
        assert_eq!(
            answer.participant.to_string(),
            "networks/acme/participants/sam"
        );
        assert_eq!(answer.state, state::ENDED);
        assert_eq!(answer.end_reason, "completed");
        assert_eq!(answer.offer_expires_at, None);
        assert!(answer.history.is_empty());
    }

    #[test]
    fn a_commit_that_did_not_touch_the_membership_answers_nothing() {
        let name = membership("networks/acme/clinics/north/groups/tue/memberships/sam");
        let other = commit(vec![Event::MemberResumed {
            participant_id: "pat".into(),
        }]);
        assert_eq!(membership_from_commit(name, &other), None);
    }
}
