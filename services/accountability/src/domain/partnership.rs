//! An accountability partnership between two members of one group: proposed,
//! accepted, ended (by either member, or when either leaves the group or withdraws
//! consent). A pair may start again after an ending.

use super::{DomainError, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartnershipState {
    #[default]
    None,
    Proposed,
    Active,
    Ended,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partnership {
    pub state: PartnershipState,
    pub group_id: String,
    pub proposer_id: String,
    pub invitee_id: String,
}

impl Partnership {
    pub fn involves(&self, participant_id: &str) -> bool {
        self.proposer_id == participant_id || self.invitee_id == participant_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnershipCommand {
    /// `eligible`: both are active members of the group and both consented.
    Propose {
        group_id: String,
        proposer_id: String,
        invitee_id: String,
        eligible: bool,
    },
    Accept {
        by: String,
    },
    End {
        reason: String,
    },
}

pub fn decide(state: &Partnership, command: PartnershipCommand) -> Result<Vec<Event>, DomainError> {
    match command {
        PartnershipCommand::Propose {
            group_id,
            proposer_id,
            invitee_id,
            eligible,
        } => {
            if proposer_id == invitee_id {
                return Err(DomainError::SelfPartnership);
            }
            if matches!(
                state.state,
                PartnershipState::Proposed | PartnershipState::Active
            ) {
                return Err(DomainError::PartnershipExists);
            }
            if !eligible {
                return Err(DomainError::NotEligibleForPartnership);
            }
            Ok(vec![Event::PartnershipProposed {
                group_id,
                proposer_id,
                invitee_id,
            }])
        }
        PartnershipCommand::Accept { by } => {
            if state.state != PartnershipState::Proposed {
                return Err(if state.state == PartnershipState::None {
                    DomainError::PartnershipNotFound
                } else {
                    DomainError::NotProposed
                });
            }
            if by != state.invitee_id {
                return Err(DomainError::NotTheInvitee);
            }
            Ok(vec![Event::PartnershipAccepted])
        }
        PartnershipCommand::End { reason } => match state.state {
            PartnershipState::None => Err(DomainError::PartnershipNotFound),
            PartnershipState::Ended => Ok(Vec::new()),
            _ => Ok(vec![Event::PartnershipEnded { reason }]),
        },
    }
}

pub fn evolve(mut state: Partnership, event: &Event) -> Partnership {
    match event {
        Event::PartnershipProposed {
            group_id,
            proposer_id,
            invitee_id,
        } => {
            state = Partnership {
                state: PartnershipState::Proposed,
                group_id: group_id.clone(),
                proposer_id: proposer_id.clone(),
                invitee_id: invitee_id.clone(),
            };
        }
        Event::PartnershipAccepted => state.state = PartnershipState::Active,
        Event::PartnershipEnded { .. } => state.state = PartnershipState::Ended,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn propose(eligible: bool) -> PartnershipCommand {
        PartnershipCommand::Propose {
            group_id: "g".into(),
            proposer_id: "a".into(),
            invitee_id: "b".into(),
            eligible,
        }
    }

    fn proposed() -> Partnership {
        evolve(
            Partnership::default(),
            &Event::PartnershipProposed {
                group_id: "g".into(),
                proposer_id: "a".into(),
                invitee_id: "b".into(),
            },
        )
    }

    #[test]
    fn partners_must_be_eligible_and_distinct() {
        assert!(matches!(
            decide(&Partnership::default(), propose(true)).as_deref(),
            Ok([Event::PartnershipProposed { .. }])
        ));
        assert_eq!(
            decide(&Partnership::default(), propose(false)),
            Err(DomainError::NotEligibleForPartnership)
        );
        let myself = PartnershipCommand::Propose {
            group_id: "g".into(),
            proposer_id: "a".into(),
            invitee_id: "a".into(),
            eligible: true,
        };
        assert_eq!(
            decide(&Partnership::default(), myself),
            Err(DomainError::SelfPartnership)
        );
        assert_eq!(
            decide(&proposed(), propose(true)),
            Err(DomainError::PartnershipExists)
        );
    }

    #[test]
    fn only_the_invitee_accepts_and_either_ends() {
        assert_eq!(
            decide(&proposed(), PartnershipCommand::Accept { by: "a".into() }),
            Err(DomainError::NotTheInvitee)
        );
        assert_eq!(
            decide(&proposed(), PartnershipCommand::Accept { by: "b".into() }),
            Ok(vec![Event::PartnershipAccepted])
        );
        let active = evolve(proposed(), &Event::PartnershipAccepted);
        assert_eq!(
            decide(
                &active,
                PartnershipCommand::End {
                    reason: "left-group".into()
                }
            ),
            Ok(vec![Event::PartnershipEnded {
                reason: "left-group".into()
            }])
        );
        let ended = evolve(
            active,
            &Event::PartnershipEnded {
                reason: "left-group".into(),
            },
        );
        assert_eq!(
            decide(&ended, PartnershipCommand::End { reason: "x".into() }),
            Ok(vec![])
        );
        assert!(
            matches!(
                decide(&ended, propose(true)).as_deref(),
                Ok([Event::PartnershipProposed { .. }])
            ),
            "a pair may start again"
        );
    }
}
