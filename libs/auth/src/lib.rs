//! Who is calling. Until authentication lands, a trusted caller states it in request
//! metadata; this module is the one place that reads it, and the JWT check will
//! replace [`Caller::from_metadata`] without changing its callers.
//!
//! Metadata keys: `x-circle-network` (required), `x-circle-role` (required:
//! `network-admin`, `clinic-admin`, `facilitator`, `intake-coordinator`,
//! `participant` or `service`), `x-circle-actor` (the staff or participant id), and
//! `x-circle-clinics` (comma-separated clinic ids a staff member is scoped to).
//!
//! A service's own process managers act as [`Caller::process_manager`], whose role
//! ([`Role::ProcessManager`]) no metadata can name: a client claiming `service` (or
//! anything else) is a client, and gets no process manager's treatment.

use tonic::metadata::MetadataMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    NetworkAdmin,
    ClinicAdmin,
    Facilitator,
    IntakeCoordinator,
    Participant,
    /// A trusted client (an integration, the demo seeding): a client like any other.
    Service,
    /// One of a service's own process managers (the materialiser, the nudger, …),
    /// acting in process. [`Caller::from_metadata`] never yields it.
    ProcessManager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkAdmin => "network-admin",
            Self::ClinicAdmin => "clinic-admin",
            Self::Facilitator => "facilitator",
            Self::IntakeCoordinator => "intake-coordinator",
            Self::Participant => "participant",
            Self::Service => "service",
            Self::ProcessManager => "process-manager",
        }
    }

    /// The roles a client may state; never [`Role::ProcessManager`].
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "network-admin" => Self::NetworkAdmin,
            "clinic-admin" => Self::ClinicAdmin,
            "facilitator" => Self::Facilitator,
            "intake-coordinator" => Self::IntakeCoordinator,
            "participant" => Self::Participant,
            "service" => Self::Service,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub network: String,
    pub role: Role,
    /// Opaque staff or participant id; never a name.
    pub actor_id: String,
    /// Clinics a staff member is scoped to; empty means the whole network for admins.
    pub clinics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error("request metadata {key} is missing")]
    Missing { key: &'static str },
    #[error("request metadata {key} is not valid")]
    Invalid { key: &'static str },
    #[error("the caller's network does not own {resource}")]
    WrongNetwork { resource: String },
}

pub const NETWORK_KEY: &str = "x-circle-network";
pub const ROLE_KEY: &str = "x-circle-role";
pub const ACTOR_KEY: &str = "x-circle-actor";
pub const CLINICS_KEY: &str = "x-circle-clinics";

impl Caller {
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, CallerError> {
        let text = |key: &'static str| -> Result<Option<&str>, CallerError> {
            match metadata.get(key) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map(|value| Some(value.trim()))
                    .map_err(|_| CallerError::Invalid { key }),
            }
        };
        let network = text(NETWORK_KEY)?
            .filter(|value| !value.is_empty())
            .ok_or(CallerError::Missing { key: NETWORK_KEY })?;
        let role = text(ROLE_KEY)?.ok_or(CallerError::Missing { key: ROLE_KEY })?;
        let role = Role::parse(role).ok_or(CallerError::Invalid { key: ROLE_KEY })?;
        let actor_id = text(ACTOR_KEY)?.unwrap_or_default().to_owned();
        let clinics = text(CLINICS_KEY)?
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|clinic| !clinic.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            network: network.to_owned(),
            role,
            actor_id,
            clinics,
        })
    }

    /// One of the service's own process managers, `name` saying which. Only code in
    /// the service can make this caller; no request metadata reads as it.
    pub fn process_manager(network: &str, name: &str) -> Self {
        Self {
            network: network.to_owned(),
            role: Role::ProcessManager,
            actor_id: name.to_owned(),
            clinics: Vec::new(),
        }
    }

    /// Whether this caller is one of the service's own process managers.
    pub fn is_process_manager(&self) -> bool {
        self.role == Role::ProcessManager
    }

    /// The tenant comes from the caller, never from the request body: a resource of
    /// another network is refused before anything else is looked at.
    pub fn require_network(&self, network: &str, resource: &str) -> Result<(), CallerError> {
        if self.network == network {
            Ok(())
        } else {
            Err(CallerError::WrongNetwork {
                resource: resource.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (key, value) in pairs {
            map.insert(*key, value.parse().expect("ascii"));
        }
        map
    }

    #[test]
    fn reads_the_caller_from_metadata() {
        let caller = Caller::from_metadata(&metadata(&[
            (NETWORK_KEY, "acme"),
            (ROLE_KEY, "facilitator"),
            (ACTOR_KEY, "staff-7"),
            (CLINICS_KEY, "north, south"),
        ]))
        .expect("valid caller");
        assert_eq!(caller.network, "acme");
        assert_eq!(caller.role, Role::Facilitator);
        assert_eq!(caller.clinics, vec!["north", "south"]);
    }

    #[test]
    fn a_caller_without_network_or_with_an_unknown_role_is_refused() {
        assert_eq!(
            Caller::from_metadata(&metadata(&[(ROLE_KEY, "facilitator")])),
            Err(CallerError::Missing { key: NETWORK_KEY })
        );
        assert_eq!(
            Caller::from_metadata(&metadata(&[(NETWORK_KEY, "acme"), (ROLE_KEY, "root")])),
            Err(CallerError::Invalid { key: ROLE_KEY })
        );
    }

    #[test]
    fn no_client_can_be_a_process_manager() {
        assert_eq!(
            Caller::from_metadata(&metadata(&[
                (NETWORK_KEY, "acme"),
                (ROLE_KEY, "process-manager")
            ])),
            Err(CallerError::Invalid { key: ROLE_KEY })
        );
        let service = Caller::from_metadata(&metadata(&[
            (NETWORK_KEY, "acme"),
            (ROLE_KEY, "service"),
            (ACTOR_KEY, "sessions-materializer"),
        ]))
        .expect("a valid client");
        assert!(!service.is_process_manager());
        assert!(Caller::process_manager("acme", "sessions-materializer").is_process_manager());
    }
}
