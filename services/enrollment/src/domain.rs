//! The enrollment domain, pure and synchronous: `decide(&state, command)` returns the
//! events a command produces or why it is refused; `evolve(state, &event)` folds an
//! event into the state. No IO here: whatever a command needs from elsewhere (that the
//! clinic or participant exists) is resolved before the command is built.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionMode {
    Rolling,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetails {
    pub clinic_id: String,
    pub display_name: String,
    pub modality: String,
    pub level_of_care: String,
    pub capacity: u32,
    pub admission_mode: AdmissionMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantProfile {
    pub given_name: String,
    pub family_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ClinicCreated {
        display_name: String,
        time_zone: String,
    },
    GroupCreated(GroupDetails),
    ParticipantRegistered {
        home_clinic_id: String,
        profile: ParticipantProfile,
    },
    MemberAdmitted {
        participant_id: String,
    },
    MemberWaitlisted {
        participant_id: String,
        /// 1-based place in the waitlist when joining.
        position: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateClinic {
        display_name: String,
        time_zone: String,
    },
    CreateGroup(GroupDetails),
    RegisterParticipant {
        home_clinic_id: String,
        profile: ParticipantProfile,
    },
    /// The participant is known to exist (checked before the command is built).
    Enroll {
        participant_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the clinic already exists")]
    ClinicExists,
    #[error("the group already exists")]
    GroupExists,
    #[error("the participant is already registered")]
    ParticipantExists,
    #[error("the group does not exist")]
    GroupNotFound,
    #[error("the participant is already an active member of this group")]
    AlreadyActive,
    #[error("the participant is already on this group's waitlist")]
    AlreadyWaitlisted,
    #[error("this command does not apply to this kind of record")]
    WrongAggregate,
}

/// Clinic, group and participant aggregates share one state type per aggregate kind;
/// a command is decided against the state of the aggregate it targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clinic {
    pub created: Option<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    pub home_clinic_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub details: Option<GroupDetails>,
    pub active: HashSet<String>,
    /// In arrival order.
    pub waitlist: VecDeque<String>,
}

impl Group {
    pub fn has_free_seat(&self) -> bool {
        self.details
            .as_ref()
            .is_some_and(|details| (self.active.len() as u64) < u64::from(details.capacity))
    }

    pub fn waitlist_position(&self, participant_id: &str) -> Option<u32> {
        self.waitlist
            .iter()
            .position(|waiting| waiting == participant_id)
            .map(|index| index as u32 + 1)
    }
}

pub fn decide_clinic(state: &Clinic, command: Command) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::CreateClinic {
            display_name,
            time_zone,
        } => {
            if state.created.is_some() {
                return Err(DomainError::ClinicExists);
            }
            Ok(vec![Event::ClinicCreated {
                display_name,
                time_zone,
            }])
        }
        _ => Err(DomainError::WrongAggregate),
    }
}

pub fn evolve_clinic(mut state: Clinic, event: &Event) -> Clinic {
    if let Event::ClinicCreated {
        display_name,
        time_zone,
    } = event
    {
        state.created = Some((display_name.clone(), time_zone.clone()));
    }
    state
}

pub fn decide_participant(
    state: &Participant,
    command: Command,
) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::RegisterParticipant {
            home_clinic_id,
            profile,
        } => {
            if state.home_clinic_id.is_some() {
                return Err(DomainError::ParticipantExists);
            }
            Ok(vec![Event::ParticipantRegistered {
                home_clinic_id,
                profile,
            }])
        }
        _ => Err(DomainError::WrongAggregate),
    }
}

pub fn evolve_participant(mut state: Participant, event: &Event) -> Participant {
    if let Event::ParticipantRegistered { home_clinic_id, .. } = event {
        state.home_clinic_id = Some(home_clinic_id.clone());
    }
    state
}

pub fn decide_group(state: &Group, command: Command) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::CreateGroup(details) => {
            if state.details.is_some() {
                return Err(DomainError::GroupExists);
            }
            Ok(vec![Event::GroupCreated(details)])
        }
        Command::Enroll { participant_id } => {
            if state.details.is_none() {
                return Err(DomainError::GroupNotFound);
            }
            if state.active.contains(&participant_id) {
                return Err(DomainError::AlreadyActive);
            }
            if state.waitlist.contains(&participant_id) {
                return Err(DomainError::AlreadyWaitlisted);
            }
            // The group is the consistency boundary: this check and the append are
            // one optimistic step, so capacity holds under concurrent enrolls.
            if state.has_free_seat() {
                Ok(vec![Event::MemberAdmitted { participant_id }])
            } else {
                let position = state.waitlist.len() as u32 + 1;
                Ok(vec![Event::MemberWaitlisted {
                    participant_id,
                    position,
                }])
            }
        }
        _ => Err(DomainError::WrongAggregate),
    }
}

pub fn evolve_group(mut state: Group, event: &Event) -> Group {
    match event {
        Event::GroupCreated(details) => state.details = Some(details.clone()),
        Event::MemberAdmitted { participant_id } => {
            state.waitlist.retain(|waiting| waiting != participant_id);
            state.active.insert(participant_id.clone());
        }
        Event::MemberWaitlisted { participant_id, .. } => {
            state.waitlist.push_back(participant_id.clone());
        }
        Event::ClinicCreated { .. } | Event::ParticipantRegistered { .. } => {}
    }
    state
}

#[cfg(test)]
mod tests {
    //! Given events, when a command, then events or an error.

    use super::*;

    struct GroupScenario {
        state: Group,
    }

    fn given(events: &[Event]) -> GroupScenario {
        GroupScenario {
            state: events.iter().fold(Group::default(), evolve_group),
        }
    }

    impl GroupScenario {
        fn when(self, command: Command) -> Result<Vec<Event>, DomainError> {
            decide_group(&self.state, command)
        }
    }

    fn created(capacity: u32) -> Event {
        Event::GroupCreated(GroupDetails {
            clinic_id: "north".into(),
            display_name: "Tuesday process group".into(),
            modality: "process".into(),
            level_of_care: "outpatient".into(),
            capacity,
            admission_mode: AdmissionMode::Rolling,
        })
    }

    fn enroll(participant: &str) -> Command {
        Command::Enroll {
            participant_id: participant.into(),
        }
    }

    fn admitted(participant: &str) -> Event {
        Event::MemberAdmitted {
            participant_id: participant.into(),
        }
    }

    fn waitlisted(participant: &str, position: u32) -> Event {
        Event::MemberWaitlisted {
            participant_id: participant.into(),
            position,
        }
    }

    #[test]
    fn enrolling_into_a_group_with_a_free_seat_admits() {
        assert_eq!(
            given(&[created(2), admitted("p1")]).when(enroll("p2")),
            Ok(vec![admitted("p2")])
        );
    }

    #[test]
    fn enrolling_into_a_full_group_waitlists_at_the_back() {
        assert_eq!(
            given(&[created(1), admitted("p1"), waitlisted("p2", 1)]).when(enroll("p3")),
            Ok(vec![waitlisted("p3", 2)])
        );
    }

    #[test]
    fn enrolling_twice_is_refused() {
        assert_eq!(
            given(&[created(1), admitted("p1")]).when(enroll("p1")),
            Err(DomainError::AlreadyActive)
        );
        assert_eq!(
            given(&[created(1), admitted("p1"), waitlisted("p2", 1)]).when(enroll("p2")),
            Err(DomainError::AlreadyWaitlisted)
        );
    }

    #[test]
    fn enrolling_into_an_unknown_group_is_refused() {
        assert_eq!(
            given(&[]).when(enroll("p1")),
            Err(DomainError::GroupNotFound)
        );
    }

    #[test]
    fn creating_a_group_twice_is_refused() {
        assert_eq!(
            given(&[]).when(Command::CreateGroup(details())),
            Ok(vec![created(12)])
        );
        assert_eq!(
            given(&[created(12)]).when(Command::CreateGroup(details())),
            Err(DomainError::GroupExists)
        );
    }

    fn details() -> GroupDetails {
        match created(12) {
            Event::GroupCreated(details) => details,
            _ => unreachable!("created() builds GroupCreated"),
        }
    }

    #[test]
    fn capacity_is_never_exceeded_whatever_the_order() {
        let mut state = given(&[created(3)]).state;
        for index in 0..10 {
            let events = decide_group(&state, enroll(&format!("p{index}"))).expect("accepted");
            state = events.iter().fold(state, evolve_group);
        }
        assert_eq!(state.active.len(), 3);
        assert_eq!(state.waitlist.len(), 7);
        assert_eq!(state.waitlist_position("p3"), Some(1));
        assert_eq!(state.waitlist_position("p9"), Some(7));
    }

    #[test]
    fn a_clinic_or_participant_is_created_once() {
        let create = Command::CreateClinic {
            display_name: "North".into(),
            time_zone: "America/Chicago".into(),
        };
        let events = decide_clinic(&Clinic::default(), create.clone()).expect("created");
        let clinic = events.iter().fold(Clinic::default(), evolve_clinic);
        assert_eq!(
            decide_clinic(&clinic, create),
            Err(DomainError::ClinicExists)
        );

        let register = Command::RegisterParticipant {
            home_clinic_id: "north".into(),
            profile: ParticipantProfile {
                given_name: "Sam".into(),
                family_name: "Rivera".into(),
            },
        };
        let events = decide_participant(&Participant::default(), register.clone()).expect("ok");
        let participant = events
            .iter()
            .fold(Participant::default(), evolve_participant);
        assert_eq!(
            decide_participant(&participant, register),
            Err(DomainError::ParticipantExists)
        );
    }

    #[test]
    fn a_command_sent_to_the_wrong_kind_of_aggregate_is_refused() {
        assert_eq!(
            decide_clinic(&Clinic::default(), enroll("p1")),
            Err(DomainError::WrongAggregate)
        );
    }
}
