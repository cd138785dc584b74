//! Every projection the services run: its name (checkpoint key and durable consumer),
//! the service that runs it, its schema, the stream it reads, and whether it is a read
//! model (rebuilt from the stream at will) or a process manager (which issues commands
//! as it applies: replaying one would issue them again, so `circle` never rebuilds,
//! resets or retries one).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    ReadModel,
    ProcessManager,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadModel => "read-model",
            Self::ProcessManager => "process-manager",
        }
    }
}

/// One projection of the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub service: &'static str,
    pub schema: &'static str,
    /// The stream it reads, by service name (`enrollment`, `sessions_audit`, …; the
    /// configuration's `stream_name` namespaces it).
    pub stream: &'static str,
    pub kind: Kind,
    /// Which implementation ([`dispatch!`]).
    pub id: Id,
}

/// The projection implementations `circle` can run itself (read models only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    EnrollmentReadModel,
    EnrollmentDisclosures(usize),
    SessionsRoster,
    SessionsReadModel,
    AccountabilityRoster,
    AccountabilityReadModel,
    /// A process manager: never run by `circle` (`circle setup` only prepares its
    /// schema).
    ProcessManager(Manager),
}

/// The process managers, by name: which schema `circle setup` prepares for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    OfferTimers,
    Transfers,
    FromSessions,
    PartnershipGuard,
    /// Accountability's integration events publisher (replaying it would publish
    /// again: harmless to subscribers, who de-duplicate, but not `circle`'s to do).
    Integration,
}

use circle_enrollment::disclosures::SOURCES;

pub const CATALOG: [Entry; 13] = [
    Entry {
        name: "enrollment-read-model",
        service: "enrollment",
        schema: circle_enrollment::read_model::SCHEMA,
        stream: "enrollment",
        kind: Kind::ReadModel,
        id: Id::EnrollmentReadModel,
    },
    Entry {
        name: "enrollment-offer-timers",
        service: "enrollment",
        schema: circle_enrollment::process::OFFER_TIMERS_SCHEMA,
        stream: "enrollment",
        kind: Kind::ProcessManager,
        id: Id::ProcessManager(Manager::OfferTimers),
    },
    Entry {
        name: circle_enrollment::process::TRANSFERS_NAME,
        service: "enrollment",
        schema: circle_enrollment::process::TRANSFERS_SCHEMA,
        stream: "enrollment",
        kind: Kind::ProcessManager,
        id: Id::ProcessManager(Manager::Transfers),
    },
    Entry {
        name: SOURCES[0].projection,
        service: "enrollment",
        schema: SOURCES[0].schema,
        stream: "enrollment_audit",
        kind: Kind::ReadModel,
        id: Id::EnrollmentDisclosures(0),
    },
    Entry {
        name: SOURCES[1].projection,
        service: "enrollment",
        schema: SOURCES[1].schema,
        stream: "sessions_audit",
        kind: Kind::ReadModel,
        id: Id::EnrollmentDisclosures(1),
    },
    Entry {
        name: SOURCES[2].projection,
        service: "enrollment",
        schema: SOURCES[2].schema,
        stream: "accountability_audit",
        kind: Kind::ReadModel,
        id: Id::EnrollmentDisclosures(2),
    },
    Entry {
        name: "sessions-roster",
        service: "sessions",
        schema: circle_sessions::roster::SCHEMA,
        stream: "enrollment",
        kind: Kind::ReadModel,
        id: Id::SessionsRoster,
    },
    Entry {
        name: "sessions-read-model",
        service: "sessions",
        schema: circle_sessions::read_model::SCHEMA,
        stream: "sessions",
        kind: Kind::ReadModel,
        id: Id::SessionsReadModel,
    },
    Entry {
        name: "accountability-roster",
        service: "accountability",
        schema: circle_accountability::roster::SCHEMA,
        stream: "enrollment",
        kind: Kind::ReadModel,
        id: Id::AccountabilityRoster,
    },
    Entry {
        name: "accountability-read-model",
        service: "accountability",
        schema: circle_accountability::read_model::SCHEMA,
        stream: "accountability",
        kind: Kind::ReadModel,
        id: Id::AccountabilityReadModel,
    },
    Entry {
        name: circle_accountability::process::FROM_SESSIONS_NAME,
        service: "accountability",
        schema: circle_accountability::process::FROM_SESSIONS_SCHEMA,
        stream: "sessions",
        kind: Kind::ProcessManager,
        id: Id::ProcessManager(Manager::FromSessions),
    },
    Entry {
        name: circle_accountability::process::PARTNERSHIP_GUARD_NAME,
        service: "accountability",
        schema: circle_accountability::process::PARTNERSHIP_GUARD_SCHEMA,
        stream: "enrollment",
        kind: Kind::ProcessManager,
        id: Id::ProcessManager(Manager::PartnershipGuard),
    },
    Entry {
        name: circle_accountability::integration::NAME,
        service: "accountability",
        schema: circle_accountability::integration::SCHEMA,
        stream: "accountability",
        kind: Kind::ProcessManager,
        id: Id::ProcessManager(Manager::Integration),
    },
];

/// The streams `circle status` reports: each service's event log and audit stream,
/// and accountability's integration events.
pub const STREAMS: [(&str, &str); 7] = [
    ("enrollment", "enrollment"),
    ("sessions", "sessions"),
    ("accountability", "accountability"),
    ("enrollment", "enrollment_audit"),
    ("sessions", "sessions_audit"),
    ("accountability", "accountability_audit"),
    ("accountability", "accountability_integration"),
];

pub fn find(name: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|entry| entry.name == name)
}

/// A read model by name, or why not: unknown (exit 3), or a process manager (exit 2).
pub fn read_model(name: &str, doing: &str) -> anyhow::Result<&'static Entry> {
    let entry = find(name).ok_or_else(|| {
        super::Refusal::not_found(format!(
            "no projection {name}; `circle projections list` shows them"
        ))
    })?;
    if entry.kind == Kind::ProcessManager {
        return Err(super::Refusal::usage(format!(
            "{name} is a process manager: it issues commands as it applies events, so {doing} \
             it would issue them again; circle refuses"
        )));
    }
    Ok(entry)
}

/// Runs `$body` with `$projection` bound to the implementation of the read model
/// `$entry` (`Projection` is not object-safe: each arm is its own type).
#[macro_export]
macro_rules! dispatch {
    ($entry:expr, |$projection:ident| $body:expr) => {{
        use $crate::ops::catalog::Id;
        match $entry.id {
            Id::EnrollmentReadModel => {
                let $projection = &circle_enrollment::read_model::ReadModel;
                $body
            }
            Id::EnrollmentDisclosures(index) => {
                let $projection = &circle_enrollment::disclosures::Disclosures {
                    source: circle_enrollment::disclosures::SOURCES[index],
                };
                $body
            }
            Id::SessionsRoster => {
                let $projection = &circle_sessions::roster::Roster;
                $body
            }
            Id::SessionsReadModel => {
                let $projection = &circle_sessions::read_model::ReadModel;
                $body
            }
            Id::AccountabilityRoster => {
                let $projection = &circle_accountability::roster::Roster;
                $body
            }
            Id::AccountabilityReadModel => {
                let $projection = &circle_accountability::read_model::ReadModel;
                $body
            }
            Id::ProcessManager(_) => Err($crate::ops::Refusal::usage(format!(
                "{} is a process manager; circle does not run it",
                $entry.name
            ))),
        }
    }};
}
