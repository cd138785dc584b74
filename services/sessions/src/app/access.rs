//! The sessions service's access table: for every operation (each RPC, commands and
//! queries alike), which roles may run it and on which scope. It is the one place
//! these permissions are written down; `README.md` shows it, and a test keeps the
//! two the same.
//!
//! Queries are checked against it in [`super::Queries`] and commands in
//! [`super::Commands`], before anything is looked up or loaded.
//!
//! The table is what clients may do, and every check holds the caller to the network
//! of the names first ([`permit`]). The service's own process manager (the
//! materialiser, [`Role::ProcessManager`], a role no client can claim) is in no row of
//! it: the steps it takes in process ([`Step`]) have rows of their own
//! ([`step_rule`]), apart from the RPCs.

use circle_grpc::{ApiError, Caller, Role, Rule, Scope, Target, roles};
use circle_names::Id;

/// Every RPC of `circle.sessions.v1.SessionsService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ListSessions,
    GetSession,
    ScheduleSession,
    RescheduleSession,
    CancelSession,
    StartSession,
    CloseSession,
    RecordAttendance,
    RecordSessionCheckIn,
    WriteSharedNote,
    WriteMemberNote,
    SignNote,
    AmendNote,
    ListUnsignedNotes,
    GetAttendanceHistory,
    ExportBilling,
}

impl Operation {
    pub const ALL: [Operation; 16] = [
        Operation::ListSessions,
        Operation::GetSession,
        Operation::ScheduleSession,
        Operation::RescheduleSession,
        Operation::CancelSession,
        Operation::StartSession,
        Operation::CloseSession,
        Operation::RecordAttendance,
        Operation::RecordSessionCheckIn,
        Operation::WriteSharedNote,
        Operation::WriteMemberNote,
        Operation::SignNote,
        Operation::AmendNote,
        Operation::ListUnsignedNotes,
        Operation::GetAttendanceHistory,
        Operation::ExportBilling,
    ];

    /// The RPC's name, as the service definition spells it.
    pub fn rpc(self) -> &'static str {
        match self {
            Operation::ListSessions => "ListSessions",
            Operation::GetSession => "GetSession",
            Operation::ScheduleSession => "ScheduleSession",
            Operation::RescheduleSession => "RescheduleSession",
            Operation::CancelSession => "CancelSession",
            Operation::StartSession => "StartSession",
            Operation::CloseSession => "CloseSession",
            Operation::RecordAttendance => "RecordAttendance",
            Operation::RecordSessionCheckIn => "RecordSessionCheckIn",
            Operation::WriteSharedNote => "WriteSharedNote",
            Operation::WriteMemberNote => "WriteMemberNote",
            Operation::SignNote => "SignNote",
            Operation::AmendNote => "AmendNote",
            Operation::ListUnsignedNotes => "ListUnsignedNotes",
            Operation::GetAttendanceHistory => "GetAttendanceHistory",
            Operation::ExportBilling => "ExportBilling",
        }
    }
}

/// Staff, or a participant on their own record.
const STAFF_OR_PARTICIPANT: &[Role] = &[
    Role::NetworkAdmin,
    Role::ClinicAdmin,
    Role::Facilitator,
    Role::IntakeCoordinator,
    Role::Service,
    Role::Participant,
];

/// Who may run `operation`, and where.
///
/// Beyond the table, `ListUnsignedNotes` keeps a facilitator to their own queue
/// (`NOT_YOUR_QUEUE`), and queries over several clinics (`ListUnsignedNotes`,
/// `GetAttendanceHistory`) show clinic-scoped staff only the sessions of their clinics.
pub fn rule(operation: Operation) -> Rule {
    use Operation as O;
    match operation {
        // The schedule and the session sheet (roster, attendance, check-ins, notes).
        O::ListSessions | O::GetSession => Rule::new(roles::STAFF, Scope::Clinics),
        // Running a session and its notes is clinical work.
        O::ScheduleSession
        | O::RescheduleSession
        | O::CancelSession
        | O::StartSession
        | O::CloseSession
        | O::RecordAttendance
        | O::WriteSharedNote
        | O::WriteMemberNote
        | O::SignNote
        | O::AmendNote => Rule::new(roles::CLINICIANS, Scope::Clinics),
        // A participant checks in for themselves; staff may record it for them.
        O::RecordSessionCheckIn => Rule::new(STAFF_OR_PARTICIPANT, Scope::OwnRecordOrClinics),
        // A clinician's queue: the facilitator's own, or anyone's for admins.
        O::ListUnsignedNotes => Rule::new(roles::CLINICIANS, Scope::Clinics),
        O::GetAttendanceHistory => Rule::new(STAFF_OR_PARTICIPANT, Scope::OwnRecordOrClinics),
        O::ExportBilling => Rule::new(roles::CLINIC_ADMINS, Scope::Clinics),
    }
}

/// Checks `caller` against the table for `operation`, before anything is looked up.
/// `target` is what the request names; `None` when its resource name did not parse:
/// then only the role is checked (a caller who may not run the operation at all is
/// told so), and the bad name is reported with the request's other bad fields.
///
/// This is the rule alone, without the tenant: the application checks requests with
/// [`permit`], which holds the caller to the network of the names first; only the
/// table's tests use this.
#[cfg(test)]
fn check(
    caller: &Caller,
    operation: Operation,
    target: Option<Target<'_>>,
) -> Result<(), ApiError> {
    rule(operation).check_parsed(caller, target.as_ref())
}

/// The check the application makes before anything is looked up: with the request's
/// names parsed (`Some((network, target))`: the network they are in, and what they
/// show), the tenant first and then the row of `operation` ([`Rule::permit`]); when a
/// name did not parse (`None`), only the role (the bad name is reported with the
/// request's other bad fields).
pub fn permit(
    caller: &Caller,
    operation: Operation,
    named: Option<(&Id, Target<'_>)>,
) -> Result<(), ApiError> {
    match named {
        Some((network, target)) => rule(operation).permit(caller, network.as_str(), &target),
        None => rule(operation).check_role(caller),
    }
}

/// [`permit`] for a request whose names show no clinic: a staff member's queue or a
/// participant's history, which the query filters to the caller's clinics
/// (`Rule::permit_unplaced`: the tenant, the role and a participant's own record).
pub fn permit_unplaced(
    caller: &Caller,
    operation: Operation,
    named: Option<(&Id, Target<'_>)>,
) -> Result<(), ApiError> {
    match named {
        Some((network, target)) => {
            rule(operation).permit_unplaced(caller, network.as_str(), &target)
        }
        None => rule(operation).check_role(caller),
    }
}

/// [`permit`] for a request about something in one clinic of a network (`None`: its
/// name did not parse).
pub fn permit_in_clinic(
    caller: &Caller,
    operation: Operation,
    place: Option<(&Id, &Id)>,
) -> Result<(), ApiError> {
    match place {
        Some((network, clinic)) => permit(
            caller,
            operation,
            Some((
                network,
                Target {
                    clinics: &[clinic.as_str()],
                    ..Target::default()
                },
            )),
        ),
        None => permit(caller, operation, None),
    }
}

/// The steps only the service's own process manager (the materialiser) takes: not
/// RPCs (no client can ask for them), so not in [`Operation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A group's schedule produces a session that does not exist yet: schedule it
    /// (origin `schedule`).
    MaterializeSession,
    /// A schedule change of time or length moves a generated session still to come.
    MoveGeneratedSession,
    /// A generated session the schedule no longer produces (or whose group was
    /// archived) is cancelled.
    CancelGeneratedSession,
}

impl Step {
    pub const ALL: [Step; 3] = [
        Self::MaterializeSession,
        Self::MoveGeneratedSession,
        Self::CancelGeneratedSession,
    ];
}

/// The row of a process-manager step: the service's process manager, anywhere in the
/// network it acts for.
pub fn step_rule(step: Step) -> Rule {
    match step {
        Step::MaterializeSession | Step::MoveGeneratedSession | Step::CancelGeneratedSession => {
            Rule::new(&[Role::ProcessManager], Scope::Network)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 7] = [
        Role::NetworkAdmin,
        Role::ClinicAdmin,
        Role::Facilitator,
        Role::IntakeCoordinator,
        Role::Participant,
        Role::Service,
        Role::ProcessManager,
    ];

    fn caller(role: Role, actor: &str) -> Caller {
        Caller::new("acme", actor, &[role], &["north"])
    }

    /// The outcome for a caller of `role` (scoped to clinic north, actor p-1) on a
    /// request that names clinic `clinic` and participant p-1.
    fn outcome(operation: Operation, role: Role, clinic: &str) -> &'static str {
        let clinics = [clinic];
        let target = Target {
            clinics: &clinics,
            participant: Some("p-1"),
            ..Target::default()
        };
        check(&caller(role, "p-1"), operation, Some(target))
            .err()
            .map_or("OK", |error| error.reason)
    }

    #[test]
    fn the_table_keeps_what_the_service_enforced_before_it() {
        use Operation as O;
        use Role as R;
        // Intake coordinators see the schedule and the session sheet, and record a
        // check-in for someone, but run no session, write or sign no note and have no
        // queue. (The session sheet they see includes its notes, as it always has:
        // a question for the authentication issue, not changed here.)
        for operation in [O::ListSessions, O::GetSession, O::RecordSessionCheckIn] {
            assert_eq!(outcome(operation, R::IntakeCoordinator, "north"), "OK");
        }
        for operation in [
            O::StartSession,
            O::RecordAttendance,
            O::WriteMemberNote,
            O::SignNote,
            O::AmendNote,
            O::ListUnsignedNotes,
            O::ExportBilling,
        ] {
            assert_eq!(
                outcome(operation, R::IntakeCoordinator, "north"),
                "ROLE_NOT_ALLOWED",
                "{operation:?}"
            );
        }
        // Participants: their own check-in and attendance history, nothing else.
        for operation in Operation::ALL {
            let expected = match operation {
                O::RecordSessionCheckIn | O::GetAttendanceHistory => "OK",
                _ => "ROLE_NOT_ALLOWED",
            };
            assert_eq!(
                outcome(operation, R::Participant, "south"),
                expected,
                "{operation:?}"
            );
        }
        let someone_else = Target {
            participant: Some("p-2"),
            ..Target::default()
        };
        assert_eq!(
            check(
                &caller(R::Participant, "p-1"),
                O::GetAttendanceHistory,
                Some(someone_else)
            )
            .err()
            .map(|error| error.reason),
            Some("NOT_YOUR_RECORD")
        );
        // Clinic-scoped staff stay in their clinics; network admins and service
        // clients go anywhere; billing is for admins.
        assert_eq!(
            outcome(O::GetSession, R::Facilitator, "south"),
            "CLINIC_OUT_OF_SCOPE"
        );
        assert_eq!(outcome(O::SignNote, R::Facilitator, "north"), "OK");
        assert_eq!(
            outcome(O::ExportBilling, R::Facilitator, "north"),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(outcome(O::ExportBilling, R::ClinicAdmin, "north"), "OK");
        assert_eq!(
            outcome(O::ExportBilling, R::ClinicAdmin, "south"),
            "CLINIC_OUT_OF_SCOPE"
        );
        for operation in Operation::ALL {
            assert_eq!(outcome(operation, R::NetworkAdmin, "south"), "OK");
            assert_eq!(outcome(operation, R::Service, "south"), "OK");
            // The materialiser runs its commands in process, not through the table.
            assert_eq!(
                outcome(operation, R::ProcessManager, "north"),
                "ROLE_NOT_ALLOWED"
            );
        }
    }

    #[test]
    fn the_materialisers_steps_are_for_the_process_manager_only() {
        let materializer = Caller::process_manager("acme", "sessions-materializer");
        let clinics = ["south"];
        let elsewhere = Target {
            clinics: &clinics,
            ..Target::default()
        };
        for step in Step::ALL {
            let row = step_rule(step);
            assert!(
                row.permit(&materializer, "acme", &elsewhere).is_ok(),
                "{step:?}"
            );
            // Its own network only.
            assert_eq!(
                row.permit(&materializer, "other", &elsewhere)
                    .err()
                    .map(|error| error.reason),
                Some("WRONG_NETWORK"),
                "{step:?}"
            );
            for role in ROLES
                .into_iter()
                .filter(|role| *role != Role::ProcessManager)
            {
                assert_eq!(
                    row.permit(&caller(role, "p-1"), "acme", &elsewhere)
                        .err()
                        .map(|error| error.reason),
                    Some("ROLE_NOT_ALLOWED"),
                    "{step:?} {role:?}"
                );
            }
        }
        // No RPC's row admits the process manager: it takes its steps, nothing else.
        for operation in Operation::ALL {
            assert!(
                !rule(operation).allows_role(Role::ProcessManager),
                "{operation:?}"
            );
            assert_eq!(
                permit(&materializer, operation, Some((&id("acme"), elsewhere)))
                    .err()
                    .map(|error| error.reason),
                Some("ROLE_NOT_ALLOWED"),
                "{operation:?}"
            );
        }
    }

    fn id(value: &str) -> Id {
        Id::parse(value).unwrap_or_else(|error| panic!("{value:?}: {error}"))
    }

    #[test]
    fn a_name_of_another_network_is_refused_before_the_rule() {
        let admin = caller(Role::NetworkAdmin, "a-1");
        for operation in Operation::ALL {
            assert_eq!(
                permit_in_clinic(&admin, operation, Some((&id("other"), &id("north"))))
                    .err()
                    .map(|error| error.reason),
                Some("WRONG_NETWORK"),
                "{operation:?}"
            );
            assert!(permit_in_clinic(&admin, operation, Some((&id("acme"), &id("north")))).is_ok());
        }
    }

    #[test]
    fn a_name_that_did_not_parse_still_has_its_role_checked() {
        let participant = caller(Role::Participant, "p-1");
        assert_eq!(
            check(&participant, Operation::ListSessions, None)
                .err()
                .map(|error| error.reason),
            Some("ROLE_NOT_ALLOWED")
        );
        // Allowed to ask at all: the bad name is reported as a bad field instead.
        assert!(check(&participant, Operation::GetAttendanceHistory, None).is_ok());
    }

    /// The table as `README.md` shows it: operation, roles, scope.
    fn markdown() -> String {
        let mut table = String::from("| operation | roles | scope |\n|---|---|---|\n");
        for operation in Operation::ALL {
            let rule = rule(operation);
            let roles: Vec<&str> = ROLES
                .iter()
                .filter(|role| rule.allows_role(**role))
                .map(|role| role.as_str())
                .collect();
            let scope = match rule.scope {
                Scope::Network => "network",
                Scope::Clinics => "their clinics",
                Scope::OwnRecordOrClinics => "own record (participant), their clinics (staff)",
                Scope::OwnGroupsOrClinics => "own groups (participant), their clinics (staff)",
                Scope::FacilitatedGroups => "the group's facilitators, in their clinics",
                Scope::OwnRecordOrCareTeam | Scope::OwnGroupsOrCareTeam => "not used here",
            };
            table.push_str(&format!(
                "| `{}` | {} | {scope} |\n",
                operation.rpc(),
                roles.join(", ")
            ));
        }
        table
    }

    #[test]
    fn the_readme_shows_the_table() {
        let table = markdown();
        println!("{table}");
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&table),
            "README.md must show the sessions access table as:\n{table}"
        );
    }

    #[test]
    fn every_rpc_of_the_service_has_one_row() -> Result<(), prost::DecodeError> {
        let rpcs = circle_proto::rpc_names("circle.sessions.v1", "SessionsService")?;
        let mut operations: Vec<&str> = Operation::ALL.iter().map(|op| op.rpc()).collect();
        operations.sort_unstable();
        assert_eq!(operations, rpcs);
        Ok(())
    }
}
