//! The clinic aggregate: a site of the network with its time zone.

use super::{DomainError, Event};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clinic {
    pub created: bool,
    pub display_name: String,
    pub time_zone: String,
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClinicCommand {
    Create {
        display_name: String,
        time_zone: String,
    },
    Update {
        display_name: Option<String>,
        time_zone: Option<String>,
    },
    Archive,
}

pub fn decide(state: &Clinic, command: ClinicCommand) -> Result<Vec<Event>, DomainError> {
    match command {
        ClinicCommand::Create {
            display_name,
            time_zone,
        } => {
            if state.created {
                return Err(DomainError::ClinicExists);
            }
            Ok(vec![Event::ClinicCreated {
                display_name,
                time_zone,
            }])
        }
        ClinicCommand::Update {
            display_name,
            time_zone,
        } => {
            require_open(state)?;
            let display_name = display_name.unwrap_or_else(|| state.display_name.clone());
            let time_zone = time_zone.unwrap_or_else(|| state.time_zone.clone());
            if display_name == state.display_name && time_zone == state.time_zone {
                return Ok(Vec::new());
            }
            Ok(vec![Event::ClinicUpdated {
                display_name,
                time_zone,
            }])
        }
        ClinicCommand::Archive => {
            if !state.created {
                return Err(DomainError::ClinicNotFound);
            }
            if state.archived {
                return Ok(Vec::new());
            }
            Ok(vec![Event::ClinicArchived])
        }
    }
}

/// The clinic exists and takes new groups and participants.
pub fn require_open(state: &Clinic) -> Result<(), DomainError> {
    if !state.created {
        return Err(DomainError::ClinicNotFound);
    }
    if state.archived {
        return Err(DomainError::ClinicArchived);
    }
    Ok(())
}

pub fn evolve(mut state: Clinic, event: &Event) -> Clinic {
    match event {
        Event::ClinicCreated {
            display_name,
            time_zone,
        }
        | Event::ClinicUpdated {
            display_name,
            time_zone,
        } => {
            state.created = true;
            state.display_name = display_name.clone();
            state.time_zone = time_zone.clone();
        }
        Event::ClinicArchived => state.archived = true,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scenario::given;

    fn created() -> Event {
        Event::ClinicCreated {
            display_name: "North".into(),
            time_zone: "America/Chicago".into(),
        }
    }

    fn when(events: &[Event], command: ClinicCommand) -> Result<Vec<Event>, DomainError> {
        decide(&given(events, evolve).state, command)
    }

    #[test]
    fn a_clinic_is_created_once() {
        let create = ClinicCommand::Create {
            display_name: "North".into(),
            time_zone: "America/Chicago".into(),
        };
        assert_eq!(when(&[], create.clone()), Ok(vec![created()]));
        assert_eq!(when(&[created()], create), Err(DomainError::ClinicExists));
    }

    #[test]
    fn an_update_records_the_new_values_and_a_no_change_update_records_nothing() {
        let rename = ClinicCommand::Update {
            display_name: Some("North Side".into()),
            time_zone: None,
        };
        assert_eq!(
            when(&[created()], rename),
            Ok(vec![Event::ClinicUpdated {
                display_name: "North Side".into(),
                time_zone: "America/Chicago".into()
            }])
        );
        let same = ClinicCommand::Update {
            display_name: Some("North".into()),
            time_zone: None,
        };
        assert_eq!(when(&[created()], same), Ok(vec![]));
    }

    #[test]
    fn an_archived_clinic_takes_no_updates_and_archiving_again_changes_nothing() {
        let update = ClinicCommand::Update {
            display_name: Some("X".into()),
            time_zone: None,
        };
        assert_eq!(
            when(&[created(), Event::ClinicArchived], update),
            Err(DomainError::ClinicArchived)
        );
        assert_eq!(
            when(&[created()], ClinicCommand::Archive),
            Ok(vec![Event::ClinicArchived])
        );
        assert_eq!(
            when(&[created(), Event::ClinicArchived], ClinicCommand::Archive),
            Ok(vec![])
        );
        assert_eq!(
            when(&[], ClinicCommand::Archive),
            Err(DomainError::ClinicNotFound)
        );
    }
}
