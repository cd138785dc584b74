//! Who is calling, proven: a bearer JWT signed with an asymmetric key (RS256, ES256 or
//! EdDSA) from a configured JWKS, checked for issuer, audience, expiry and not-before,
//! and read into a [`Caller`] (network, subject, roles, clinics). The tenant is the
//! verified token's `network`; nothing in a request body or header can name it.
//!
//! - [`jwt`]: verifying a token against a [`jwks::KeySet`] into [`Claims`] and a
//!   [`Caller`]. There is no symmetric (HMAC) path at all, so a token signed with a
//!   public key as an HMAC secret, or with `alg: none`, has nothing to verify against.
//! - [`jwks`]: the keys, from a file or a URL, refreshed in the background.
//! - [`sign`]: signing tokens, for `circle token` (development keys) and tests.
//!
//! A service's own process managers act as [`Caller::process_manager`], whose role
//! ([`Role::ProcessManager`]) no token can claim.

pub mod jwks;
pub mod jwt;
pub mod sign;

pub use jwks::{KeySet, KeySource, Keys};
pub use jwt::{AuthError, Claims, Verifier, VerifierSettings};

/// Seconds since the epoch on the system clock: the time tokens are checked against
/// (not a service's domain clock, which tests move).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    NetworkAdmin,
    ClinicAdmin,
    Facilitator,
    IntakeCoordinator,
    Participant,
    /// Another service calling Circle (an EHR, billing, a messaging service). Its
    /// token names it as `sub`; what it may call is configured per service identity
    /// (`auth.services`), never claimed.
    Service,
    /// One of a service's own process managers (the materialiser, the nudger, …),
    /// acting in process. No token yields it.
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

    /// The roles a token may claim; never [`Role::ProcessManager`].
    pub fn parse_claimed(value: &str) -> Option<Self> {
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

    /// Whether this role reaches the whole network (not only the clinics it lists).
    pub fn is_network_wide(self) -> bool {
        matches!(
            self,
            Self::NetworkAdmin | Self::Service | Self::ProcessManager
        )
    }

    /// Whether this role's reach ends at the clinics it lists.
    pub fn is_clinic_scoped(self) -> bool {
        matches!(
            self,
            Self::ClinicAdmin | Self::Facilitator | Self::IntakeCoordinator
        )
    }
}

/// The authenticated caller of one request.
///
/// A token may hold several staff roles (a clinic admin who also facilitates); a
/// participant's token holds only `participant`, and a calling service's only
/// `service` (checked when the token is read), so a person is never both a patient and
/// staff in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub network: String,
    /// The verified subject: a staff or participant id, or a service identity. Never a
    /// name.
    pub actor_id: String,
    /// At least one role, sorted, without repeats.
    pub roles: Vec<Role>,
    /// Clinics a clinic-scoped staff member is scoped to.
    pub clinics: Vec<String>,
    /// When the token this caller came with expires (seconds since the epoch); `None`
    /// for the service's own process managers. A stream it opened ends then.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error("the caller's network does not own {resource}")]
    WrongNetwork { resource: String },
}

impl Caller {
    /// A caller with the given roles (sorted and deduplicated here).
    pub fn new(network: &str, actor_id: &str, roles: &[Role], clinics: &[&str]) -> Self {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        Self {
            network: network.to_owned(),
            actor_id: actor_id.to_owned(),
            roles,
            clinics: clinics.iter().map(|clinic| (*clinic).to_owned()).collect(),
            expires_at: None,
        }
    }

    /// Whether the token this caller came with has expired at `now` (seconds since
    /// the epoch).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }

    /// Whether the token this caller came with has expired by now.
    pub fn expired(&self) -> bool {
        self.expired_at(unix_now())
    }

    /// One of the service's own process managers, `name` saying which. Only code in
    /// the service can make this caller; no token reads as it.
    pub fn process_manager(network: &str, name: &str) -> Self {
        Self::new(network, name, &[Role::ProcessManager], &[])
    }

    /// Whether this caller is one of the service's own process managers.
    pub fn is_process_manager(&self) -> bool {
        self.has(Role::ProcessManager)
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A participant acting for themselves (their token holds no other role).
    pub fn is_participant(&self) -> bool {
        self.has(Role::Participant)
    }

    /// Whether this caller is staff whose reach ends at their clinics: a clinic-scoped
    /// role and no network-wide one.
    pub fn is_clinic_scoped(&self) -> bool {
        self.roles.iter().any(|role| role.is_clinic_scoped())
            && !self.roles.iter().any(|role| role.is_network_wide())
    }

    /// The broadest of the caller's roles, recorded with what it commits.
    pub fn primary_role(&self) -> Role {
        self.roles.first().copied().unwrap_or(Role::Participant)
    }

    /// The roles, comma-separated (for commit metadata).
    pub fn roles_text(&self) -> String {
        self.roles
            .iter()
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(",")
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

    #[test]
    fn roles_are_sorted_broadest_first_and_scope_follows_them() {
        let both = Caller::new(
            "acme",
            "staff-7",
            &[Role::Facilitator, Role::ClinicAdmin, Role::Facilitator],
            &["north"],
        );
        assert_eq!(both.roles, vec![Role::ClinicAdmin, Role::Facilitator]);
        assert_eq!(both.primary_role(), Role::ClinicAdmin);
        assert!(both.is_clinic_scoped());
        assert!(!both.is_participant());
        let admin = Caller::new("acme", "a", &[Role::NetworkAdmin], &[]);
        assert!(!admin.is_clinic_scoped());
        assert!(!Caller::new("acme", "p", &[Role::Participant], &[]).is_clinic_scoped());
        assert_eq!(both.roles_text(), "clinic-admin,facilitator");
    }

    #[test]
    fn no_token_role_is_a_process_manager() {
        assert_eq!(Role::parse_claimed("process-manager"), None);
        assert_eq!(Role::parse_claimed("service"), Some(Role::Service));
        assert!(Caller::process_manager("acme", "sessions-materializer").is_process_manager());
        assert!(!Caller::new("acme", "billing", &[Role::Service], &[]).is_process_manager());
    }
}
