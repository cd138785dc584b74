//! Resource names as types (AIP-122), parsed once at the edge: "parse, don't
//! validate". Every name starts with its network (the tenant), so a parsed name always
//! knows whose it is, and its `Display` is the full name a client sent.
//!
//! ```
//! use circle_names::GroupName;
//! let group = GroupName::parse("networks/acme/clinics/north/groups/tue-evening").expect("valid");
//! assert_eq!(group.network.as_str(), "acme");
//! assert_eq!(group.clinic_name().to_string(), "networks/acme/clinics/north");
//! ```

use std::fmt;

/// One id segment of a resource name: 1–63 of `[a-z0-9-]`, not starting with '-'. Ids
/// go into NATS subjects and SQL keys, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub const MAX_LEN: usize = 63;

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && !value.starts_with('-')
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError)
        }
    }

    /// The id derived from `seed`: a UUIDv5 (OID namespace) of it, which is always a
    /// valid id. Records created without a client-given id take one derived from what
    /// the request names and its request id, so a retry lands on the same record; the
    /// derivation never changes (ids already in the log depend on it).
    pub fn derived(seed: &str) -> Self {
        Self(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 63 lowercase letters, digits or '-', not starting with '-'")]
pub struct IdError;

/// A resource name that does not have the expected form; the message says which form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be of the form {pattern}, with ids of lowercase letters, digits or '-'")]
pub struct NameError {
    pub pattern: &'static str,
}

/// A resource name that starts with its network (the tenant): every name type here.
pub trait Tenant: std::str::FromStr<Err = NameError> {
    /// The network the name belongs to.
    fn network(&self) -> &Id;
}

/// Splits `name` into the ids of `collections` (in order), or `None`.
fn split<const N: usize>(name: &str, collections: [&str; N]) -> Option<[Id; N]> {
    let mut segments = name.split('/');
    let mut ids = Vec::with_capacity(N);
    for collection in collections {
        if segments.next()? != collection {
            return None;
        }
        ids.push(Id::parse(segments.next()?).ok()?);
    }
    if segments.next().is_some() {
        return None;
    }
    ids.try_into().ok()
}

/// Declares a resource name type from its collections and field names, with `parse`,
/// `PATTERN` and `Display` (the full name).
macro_rules! resource_name {
    ($(#[$meta:meta])* $name:ident { $($collection:literal / $field:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            $(pub $field: Id,)+
        }

        impl $name {
            /// The form of this name, e.g. `networks/{network}/clinics/{clinic}`.
            pub const PATTERN: &'static str =
                concat!($($collection, "/{", stringify!($field), "}/"),+);

            pub fn parse(name: &str) -> Result<Self, NameError> {
                let error = NameError { pattern: Self::PATTERN.trim_end_matches('/') };
                let [$($field),+] = split(name, [$($collection),+]).ok_or(error)?;
                Ok(Self { $($field),+ })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut first = true;
                $(
                    if !first {
                        formatter.write_str("/")?;
                    }
                    first = false;
                    write!(formatter, "{}/{}", $collection, self.$field)?;
                )+
                let _ = first;
                Ok(())
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::parse(name)
            }
        }

        impl Tenant for $name {
            fn network(&self) -> &Id {
                &self.network
            }
        }
    };
}

resource_name!(
    /// `networks/{network}`
    NetworkName { "networks" / network }
);
resource_name!(
    /// `networks/{network}/clinics/{clinic}`
    ClinicName { "networks" / network, "clinics" / clinic }
);
resource_name!(
    /// `networks/{network}/clinics/{clinic}/groups/{group}`
    GroupName { "networks" / network, "clinics" / clinic, "groups" / group }
);
resource_name!(
    /// `networks/{network}/clinics/{clinic}/groups/{group}/memberships/{membership}`
    MembershipName {
        "networks" / network,
        "clinics" / clinic,
        "groups" / group,
        "memberships" / membership,
    }
);
resource_name!(
    /// `networks/{network}/clinics/{clinic}/groups/{group}/sessions/{session}`
    SessionName {
        "networks" / network,
        "clinics" / clinic,
        "groups" / group,
        "sessions" / session,
    }
);
resource_name!(
    /// `networks/{network}/clinics/{clinic}/groups/{group}/sessions/{session}/notes/{note}`
    /// (`shared` is the session's shared narrative, otherwise a participant id).
    NoteName {
        "networks" / network,
        "clinics" / clinic,
        "groups" / group,
        "sessions" / session,
        "notes" / note,
    }
);
resource_name!(
    /// `networks/{network}/participants/{participant}`
    ParticipantName { "networks" / network, "participants" / participant }
);
resource_name!(
    /// `networks/{network}/participants/{participant}/consents/{consent}`
    ConsentName {
        "networks" / network,
        "participants" / participant,
        "consents" / consent,
    }
);
resource_name!(
    /// `networks/{network}/participants/{participant}/goals/{goal}`
    GoalName { "networks" / network, "participants" / participant, "goals" / goal }
);
resource_name!(
    /// `networks/{network}/participants/{participant}/check-ins/{check_in}`
    CheckInName {
        "networks" / network,
        "participants" / participant,
        "check-ins" / check_in,
    }
);
resource_name!(
    /// `networks/{network}/participants/{participant}/measurements/{measurement}`: a
    /// completed outcome measure.
    MeasurementName {
        "networks" / network,
        "participants" / participant,
        "measurements" / measurement,
    }
);
resource_name!(
    /// `networks/{network}/participants/{participant}/nudges/{nudge}`: a nudge about
    /// the participant (to them, their partner or a facilitator).
    NudgeName {
        "networks" / network,
        "participants" / participant,
        "nudges" / nudge,
    }
);
resource_name!(
    /// `networks/{network}/partnerships/{partnership}`
    PartnershipName { "networks" / network, "partnerships" / partnership }
);
resource_name!(
    /// `networks/{network}/staff/{staff}`
    StaffName { "networks" / network, "staff" / staff }
);

impl GroupName {
    pub fn clinic_name(&self) -> ClinicName {
        ClinicName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
        }
    }

    pub fn membership(&self, membership: Id) -> MembershipName {
        MembershipName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
            membership,
        }
    }

    pub fn session(&self, session: Id) -> SessionName {
        SessionName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
            session,
        }
    }
}

impl MembershipName {
    pub fn group_name(&self) -> GroupName {
        GroupName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
        }
    }
}

impl SessionName {
    pub fn group_name(&self) -> GroupName {
        GroupName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
        }
    }

    pub fn note(&self, note: Id) -> NoteName {
        NoteName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
            session: self.session.clone(),
            note,
        }
    }
}

impl NoteName {
    pub fn session_name(&self) -> SessionName {
        SessionName {
            network: self.network.clone(),
            clinic: self.clinic.clone(),
            group: self.group.clone(),
            session: self.session.clone(),
        }
    }
}

impl ParticipantName {
    pub fn consent(&self, consent: Id) -> ConsentName {
        ConsentName {
            network: self.network.clone(),
            participant: self.participant.clone(),
            consent,
        }
    }

    pub fn goal(&self, goal: Id) -> GoalName {
        GoalName {
            network: self.network.clone(),
            participant: self.participant.clone(),
            goal,
        }
    }

    pub fn check_in(&self, check_in: Id) -> CheckInName {
        CheckInName {
            network: self.network.clone(),
            participant: self.participant.clone(),
            check_in,
        }
    }

    pub fn measurement(&self, measurement: Id) -> MeasurementName {
        MeasurementName {
            network: self.network.clone(),
            participant: self.participant.clone(),
            measurement,
        }
    }

    pub fn nudge(&self, nudge: Id) -> NudgeName {
        NudgeName {
            network: self.network.clone(),
            participant: self.participant.clone(),
            nudge,
        }
    }
}

macro_rules! participant_child {
    ($name:ident) => {
        impl $name {
            pub fn participant_name(&self) -> ParticipantName {
                ParticipantName {
                    network: self.network.clone(),
                    participant: self.participant.clone(),
                }
            }
        }
    };
}
participant_child!(ConsentName);
participant_child!(GoalName);
participant_child!(CheckInName);
participant_child!(NudgeName);
participant_child!(MeasurementName);

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> Id {
        Id::parse(value).expect("valid id")
    }

    #[test]
    fn a_name_parses_into_its_ids_and_prints_back_the_same() {
        let text = "networks/acme/clinics/north/groups/tue-evening/sessions/2026-03-03";
        let session = SessionName::parse(text).expect("valid");
        assert_eq!(session.network, id("acme"));
        assert_eq!(session.clinic, id("north"));
        assert_eq!(session.group, id("tue-evening"));
        assert_eq!(session.session, id("2026-03-03"));
        assert_eq!(session.to_string(), text);
        assert_eq!(
            session.group_name().to_string(),
            "networks/acme/clinics/north/groups/tue-evening"
        );
        assert_eq!(
            session.note(id("shared")).to_string(),
            format!("{text}/notes/shared")
        );
    }

    #[test]
    fn malformed_names_are_refused_with_the_expected_form() {
        for bad in [
            "",
            "networks/acme",
            "networks/acme/clinics/north/groups",
            "networks/acme/clinic/north/groups/g",
            "networks/acme/clinics/North/groups/g",
            "networks/acme/clinics/a.b/groups/g",
            "networks/acme/clinics/-a/groups/g",
            "networks/acme/clinics/north/groups/g/extra",
            "networks/acme/clinics/north/groups/g/",
            "/networks/acme/clinics/north/groups/g",
            "networks/acme/clinics//groups/g",
        ] {
            let error = GroupName::parse(bad).expect_err(bad);
            assert_eq!(
                error.pattern,
                "networks/{network}/clinics/{clinic}/groups/{group}"
            );
        }
        let long = "a".repeat(64);
        assert!(ParticipantName::parse(&format!("networks/acme/participants/{long}")).is_err());
        assert!(
            ParticipantName::parse(&format!("networks/acme/participants/{}", &long[1..])).is_ok()
        );
    }

    #[test]
    fn one_collection_name_is_not_another() {
        assert!(ClinicName::parse("networks/acme/participants/p1").is_err());
        assert!(CheckInName::parse("networks/acme/participants/p1/check-ins/c1").is_ok());
        assert!(GoalName::parse("networks/acme/participants/p1/check-ins/c1").is_err());
        assert_eq!(
            NetworkName::parse("networks/acme/x").map_err(|error| error.pattern),
            Err("networks/{network}")
        );
    }

    #[test]
    fn a_derived_id_is_a_stable_valid_id() {
        let derived = Id::derived("acme/clinic_id/r-1");
        assert_eq!(Id::parse(derived.as_str()), Ok(derived.clone()));
        assert_eq!(Id::derived("acme/clinic_id/r-1"), derived);
        assert_ne!(Id::derived("acme/group_id/r-1"), derived);
    }

    #[test]
    fn children_and_parents_agree() {
        let participant = ParticipantName::parse("networks/acme/participants/p1").expect("valid");
        let goal = participant.goal(id("g1"));
        assert_eq!(goal.to_string(), "networks/acme/participants/p1/goals/g1");
        assert_eq!(goal.participant_name(), participant);
        let group = GroupName::parse("networks/acme/clinics/c/groups/g").expect("valid");
        let membership = group.membership(id("m1"));
        assert_eq!(membership.group_name(), group);
        assert_eq!(group.clinic_name().to_string(), "networks/acme/clinics/c");
    }
}
