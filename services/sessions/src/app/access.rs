//! The sessions service's access table: for every operation (each RPC, commands and
//! queries alike), which roles may run it and on which scope. It is the one place
//! these permissions are written down; `README.md` shows it, and a test keeps the
//! two the same.
//!
//! Queries are checked against it in [`super::Queries`] and commands in
//! [`super::Commands`], before anything is looked up or loaded.
//!
//! Minimum necessary: a session's notes (the shared narrative, each member's note and
//! their amendments) are the group's clinical record, written, signed, amended and
//! read only by the facilitators listed on that group (`Scope::FacilitatedGroups`; the
//! signer recorded is the token's subject); everyone else the table lets see a session
//! sees its notes' status without their text ([`NOTE_TEXT`]). A check-in's mood and
//! craving are clinical too: the participant or the care team record them, not intake
//! or a calling service. Calling services (`service`) do the administrative work an
//! integration needs (schedule, attendance, billing) and nothing clinical.
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

/// The care team (no intake, no calling service), or a participant on their own record.
const CARE_TEAM_OR_PARTICIPANT: &[Role] = &[
    Role::NetworkAdmin,
    Role::ClinicAdmin,
    Role::Facilitator,
    Role::Participant,
];

/// The care team's clinicians and admins (a queue of notes is no integration's work).
const CARE_TEAM: &[Role] = &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Facilitator];

/// A group's clinical record: its listed facilitators, in their clinics.
const GROUP_FACILITATORS: Rule = Rule::new(&[Role::Facilitator], Scope::FacilitatedGroups);

/// Who reads the text of a session's notes (on top of the row that lets them see the
/// session or the queue): the group's facilitators. Anyone else sees a note's status
/// (signed, by whom, when, amended when) without its text.
pub const NOTE_TEXT: Rule = GROUP_FACILITATORS;

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
/// (`NOT_YOUR_QUEUE`), queries over several clinics (`ListUnsignedNotes`,
/// `GetAttendanceHistory`) show clinic-scoped staff only the sessions of their clinics,
/// and a note's text is shown only as [`NOTE_TEXT`] says.
pub fn rule(operation: Operation) -> Rule {
    use Operation as O;
    match operation {
        // The schedule and the session sheet (roster, attendance, check-ins, the notes'
        // status; their text only to the group's facilitators).
        O::ListSessions | O::GetSession => Rule::new(roles::STAFF, Scope::Clinics),
        // Running a session: staff of the clinic who run groups, and integrations
        // (calendars, telehealth, attendance kiosks).
        O::ScheduleSession
        | O::RescheduleSession
        | O::CancelSession
        | O::StartSession
        | O::CloseSession
        | O::RecordAttendance => Rule::new(roles::CLINICIANS, Scope::Clinics),
        // The notes are the group's clinical record: its facilitators write, sign and
        // amend them, as themselves.
        O::WriteSharedNote | O::WriteMemberNote | O::SignNote | O::AmendNote => GROUP_FACILITATORS,
        // A participant checks in for themselves; the care team may record it for
        // them (mood and craving are clinical: not intake's, not an integration's).
        O::RecordSessionCheckIn => Rule::new(CARE_TEAM_OR_PARTICIPANT, Scope::OwnRecordOrClinics),
        // A clinician's queue: the facilitator's own, or anyone's for admins (the
        // notes' text only where they facilitate).
        O::ListUnsignedNotes => Rule::new(CARE_TEAM, Scope::Clinics),
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

/// [`permit`] for a request about a group (or a session or note of it) in one clinic,
/// knowing whether the caller is listed as one of the group's facilitators, which the
/// rows of its clinical record need (`None`: its name did not parse).
pub fn permit_in_group(
    caller: &Caller,
    operation: Operation,
    place: Option<(&Id, &Id)>,
    caller_facilitates: bool,
) -> Result<(), ApiError> {
    match place {
        Some((network, clinic)) => permit(
            caller,
            operation,
            Some((
                network,
                Target {
                    clinics: &[clinic.as_str()],
                    caller_facilitates,
                    ..Target::default()
                },
            )),
        ),
        None => permit(caller, operation, None),
    }
}

/// Whether a caller who may see a session (or a queue item) of a group reads its
/// notes' text ([`NOTE_TEXT`]).
pub fn reads_note_text(caller: &Caller, clinic: &str, caller_facilitates: bool) -> bool {
    NOTE_TEXT
        .check(
            caller,
            &Target {
                clinics: &[clinic],
                caller_facilitates,
                ..Target::default()
            },
        )
        .is_ok()
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
    fn the_table_gives_each_role_what_it_needs_and_no_more() {
        use Operation as O;
        use Role as R;
        const NOTES: [Operation; 4] = [
            O::WriteSharedNote,
            O::WriteMemberNote,
            O::SignNote,
            O::AmendNote,
        ];
        // Intake coordinators see the schedule and the session sheet (the notes'
        // status, not their text) and attendance, but run no session, record no
        // check-in, write or sign no note and have no queue.
        for operation in [O::ListSessions, O::GetSession, O::GetAttendanceHistory] {
            assert_eq!(outcome(operation, R::IntakeCoordinator, "north"), "OK");
        }
        for operation in [
            O::StartSession,
            O::RecordAttendance,
            O::RecordSessionCheckIn,
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
        // Clinic-scoped staff stay in their clinics; billing is for admins.
        assert_eq!(
            outcome(O::GetSession, R::Facilitator, "south"),
            "CLINIC_OUT_OF_SCOPE"
        );
        assert_eq!(
            outcome(O::ExportBilling, R::Facilitator, "north"),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(outcome(O::ExportBilling, R::ClinicAdmin, "north"), "OK");
        assert_eq!(
            outcome(O::ExportBilling, R::ClinicAdmin, "south"),
            "CLINIC_OUT_OF_SCOPE"
        );
        // The notes are the group's facilitators' alone: no admin, no integration, no
        // facilitator of another group.
        for operation in NOTES {
            assert_eq!(
                outcome(operation, R::Facilitator, "north"),
                "NOT_A_FACILITATOR"
            );
            assert_eq!(
                check(
                    &caller(R::Facilitator, "f-1"),
                    operation,
                    Some(Target {
                        clinics: &["north"],
                        caller_facilitates: true,
                        ..Target::default()
                    })
                )
                .err()
                .map(|error| error.reason),
                None,
                "{operation:?}"
            );
            for role in [R::NetworkAdmin, R::ClinicAdmin, R::Service] {
                assert_eq!(outcome(operation, role, "north"), "ROLE_NOT_ALLOWED");
            }
        }
        // Network admins go anywhere but the notes; calling services to the
        // administrative work only.
        for operation in Operation::ALL {
            let admin = if NOTES.contains(&operation) {
                "ROLE_NOT_ALLOWED"
            } else {
                "OK"
            };
            assert_eq!(
                outcome(operation, R::NetworkAdmin, "south"),
                admin,
                "{operation:?}"
            );
            let service = match operation {
                O::ListSessions
                | O::GetSession
                | O::ScheduleSession
                | O::RescheduleSession
                | O::CancelSession
                | O::StartSession
                | O::CloseSession
                | O::RecordAttendance
                | O::GetAttendanceHistory
                | O::ExportBilling => "OK",
                _ => "ROLE_NOT_ALLOWED",
            };
            assert_eq!(
                outcome(operation, R::Service, "south"),
                service,
                "{operation:?}"
            );
            // The materialiser runs its commands in process, not through the table.
            assert_eq!(
                outcome(operation, R::ProcessManager, "north"),
                "ROLE_NOT_ALLOWED"
            );
        }
    }

    #[test]
    fn a_notes_text_is_for_the_groups_facilitators() {
        let facilitator = caller(Role::Facilitator, "f-1");
        assert!(reads_note_text(&facilitator, "north", true));
        assert!(!reads_note_text(&facilitator, "north", false));
        assert!(!reads_note_text(&facilitator, "south", true));
        for role in [
            Role::NetworkAdmin,
            Role::ClinicAdmin,
            Role::IntakeCoordinator,
            Role::Service,
        ] {
            assert!(
                !reads_note_text(&caller(role, "f-1"), "north", true),
                "{role:?}"
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
        for role in [Role::NetworkAdmin, Role::Facilitator] {
            let staff = caller(role, "a-1");
            for operation in Operation::ALL {
                assert_eq!(
                    permit_in_group(&staff, operation, Some((&id("other"), &id("north"))), true)
                        .err()
                        .map(|error| error.reason),
                    Some("WRONG_NETWORK"),
                    "{operation:?}"
                );
            }
        }
        let admin = caller(Role::NetworkAdmin, "a-1");
        assert!(
            permit_in_clinic(
                &admin,
                Operation::GetSession,
                Some((&id("acme"), &id("north")))
            )
            .is_ok()
        );
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
