//! The enrollment service's one access table: for every RPC, which roles may run it
//! and on which scope (`circle_grpc::Rule`). Queries and commands check their row
//! here before anything is looked up or loaded; the edge checks the same rows early,
//! as far as a request's names show, before it reports bad fields. The steps only the
//! service's own process managers take (`Step`) have rows of their own, apart from the
//! RPCs.
//!
//! Enrollment keeps no clinical notes: its protected records are rosters, waitlists,
//! memberships and participants' profiles and consents (42 CFR Part 2), all staff
//! work, with clinic-scoped roles (clinic admin, facilitator, intake coordinator)
//! held to their clinics. A participant acts only on their own record: their profile
//! and consents, their memberships and seat offers.

use circle_grpc::roles::{ADMINS, CLINIC_ADMINS, STAFF};
use circle_grpc::{ApiError, Caller, Role, Rule, Scope, Target};
use circle_names::Id;
use tonic::Code;

/// Every RPC of `circle.enrollment.v1.EnrollmentService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateClinic,
    GetClinic,
    ListClinics,
    UpdateClinic,
    ArchiveClinic,
    CreateGroup,
    GetGroup,
    ListGroups,
    UpdateGroup,
    ArchiveGroup,
    RegisterParticipant,
    GetParticipant,
    UpdateParticipant,
    RecordConsent,
    RevokeConsent,
    ForgetParticipant,
    EnrollParticipant,
    AcceptSeatOffer,
    DeclineSeatOffer,
    TransferParticipant,
    HoldMembership,
    ResumeMembership,
    DischargeParticipant,
    GetMembership,
    ListGroupMembers,
    ListWaitlist,
    ListParticipantMemberships,
    SearchOpenSeats,
    ListDisclosures,
}

impl Operation {
    pub const ALL: [Operation; 29] = [
        Self::CreateClinic,
        Self::GetClinic,
        Self::ListClinics,
        Self::UpdateClinic,
        Self::ArchiveClinic,
        Self::CreateGroup,
        Self::GetGroup,
        Self::ListGroups,
        Self::UpdateGroup,
        Self::ArchiveGroup,
        Self::RegisterParticipant,
        Self::GetParticipant,
        Self::UpdateParticipant,
        Self::RecordConsent,
        Self::RevokeConsent,
        Self::ForgetParticipant,
        Self::EnrollParticipant,
        Self::AcceptSeatOffer,
        Self::DeclineSeatOffer,
        Self::TransferParticipant,
        Self::HoldMembership,
        Self::ResumeMembership,
        Self::DischargeParticipant,
        Self::GetMembership,
        Self::ListGroupMembers,
        Self::ListWaitlist,
        Self::ListParticipantMemberships,
        Self::SearchOpenSeats,
        Self::ListDisclosures,
    ];

    /// The RPC's name, as the service definition spells it.
    pub fn rpc(self) -> &'static str {
        match self {
            Self::CreateClinic => "CreateClinic",
            Self::GetClinic => "GetClinic",
            Self::ListClinics => "ListClinics",
            Self::UpdateClinic => "UpdateClinic",
            Self::ArchiveClinic => "ArchiveClinic",
            Self::CreateGroup => "CreateGroup",
            Self::GetGroup => "GetGroup",
            Self::ListGroups => "ListGroups",
            Self::UpdateGroup => "UpdateGroup",
            Self::ArchiveGroup => "ArchiveGroup",
            Self::RegisterParticipant => "RegisterParticipant",
            Self::GetParticipant => "GetParticipant",
            Self::UpdateParticipant => "UpdateParticipant",
            Self::RecordConsent => "RecordConsent",
            Self::RevokeConsent => "RevokeConsent",
            Self::ForgetParticipant => "ForgetParticipant",
            Self::EnrollParticipant => "EnrollParticipant",
            Self::AcceptSeatOffer => "AcceptSeatOffer",
            Self::DeclineSeatOffer => "DeclineSeatOffer",
            Self::TransferParticipant => "TransferParticipant",
            Self::HoldMembership => "HoldMembership",
            Self::ResumeMembership => "ResumeMembership",
            Self::DischargeParticipant => "DischargeParticipant",
            Self::GetMembership => "GetMembership",
            Self::ListGroupMembers => "ListGroupMembers",
            Self::ListWaitlist => "ListWaitlist",
            Self::ListParticipantMemberships => "ListParticipantMemberships",
            Self::SearchOpenSeats => "SearchOpenSeats",
            Self::ListDisclosures => "ListDisclosures",
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

/// Who may read a participant's accounting of disclosures: the participant, and the
/// administrators answerable for their record (network admins; clinic admins of their
/// home clinic). Not the care team at large: the accounting says who read what, which
/// is the administrators' to review and the participant's to ask for.
const ACCOUNTING: &[Role] = &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Participant];

/// Who may forget a participant (`ForgetParticipant`).
const FORGETTING: &[Role] = &[Role::NetworkAdmin];

/// Who may admit into a closed group after its first session
/// (`EnrollParticipant` with `facilitator_override`), on top of that operation's row.
pub const CLOSED_ADMISSION_OVERRIDE: Rule = Rule::new(
    &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Facilitator],
    Scope::Clinics,
);

/// Admitting into a closed group after its first session: who may not is
/// `OVERRIDE_NOT_ALLOWED` (with `None`, only the role is checked: the names did not
/// parse).
pub fn check_closed_admission_override(
    caller: &Caller,
    target: Option<&Target<'_>>,
) -> Result<(), ApiError> {
    CLOSED_ADMISSION_OVERRIDE
        .check_parsed(caller, target)
        .map_err(|_| {
            ApiError::new(
                Code::PermissionDenied,
                "OVERRIDE_NOT_ALLOWED",
                "only facilitators and admins may override closed admission",
            )
        })
}

/// Checks `caller` against `rule`, before anything is looked up: the tenant first (the
/// edge has refused another network's names already; this keeps every other caller of
/// the application to the same rule), then the rule.
pub(super) fn permit_rule(
    caller: &Caller,
    rule: Rule,
    network: &str,
    target: Target<'_>,
) -> Result<(), ApiError> {
    rule.permit(caller, network, &target)
}

/// [`permit`] for an operation whose clinics its names do not show
/// (`Rule::permit_unplaced`): the tenant, the role and a participant's own record. The
/// caller must then be checked with [`permit`] on the clinics of what is loaded (a
/// participant's home clinic), or the query must filter to the caller's clinics.
pub(super) fn permit_unplaced(
    caller: &Caller,
    operation: Operation,
    network: &Id,
    target: Target<'_>,
) -> Result<(), ApiError> {
    rule(operation).permit_unplaced(caller, network.as_str(), &target)
}

/// [`permit_rule`] with the row of `operation`.
pub(super) fn permit(
    caller: &Caller,
    operation: Operation,
    network: &Id,
    target: Target<'_>,
) -> Result<(), ApiError> {
    permit_rule(caller, rule(operation), network.as_str(), target)
}

/// The steps only the service's own process managers take: not RPCs (no client can
/// ask for them), so not in `Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A seat offer's time is up (`OfferTimers`).
    ExpireOffer,
    /// The old seat of a transfer whose new seat is taken (`Transfers`).
    ReleaseForTransfer,
}

impl Step {
    pub const ALL: [Step; 2] = [Self::ExpireOffer, Self::ReleaseForTransfer];
}

/// The row of a process-manager step: the service's process managers, anywhere in the
/// network they act for.
pub fn step_rule(step: Step) -> Rule {
    match step {
        Step::ExpireOffer | Step::ReleaseForTransfer => {
            Rule::new(&[Role::ProcessManager], Scope::Network)
        }
    }
}

/// The check the edge makes before it reports a request's bad fields (role and scope
/// come first, as in every service): the whole rule with what the request's names show,
/// or only the role when they did not parse. Names that show no clinic (a participant's
/// record, the whole network) are checked as far as they go (`Rule::check_unplaced`);
/// the application checks the clinics once it knows them.
pub fn check_early(
    caller: &Caller,
    operation: Operation,
    target: Option<Target<'_>>,
) -> Result<(), ApiError> {
    match target {
        Some(target) if target.clinics.is_empty() => {
            rule(operation).check_unplaced(caller, &target)
        }
        target => rule(operation).check_parsed(caller, target.as_ref()),
    }
}

/// The row of `operation`. The clinics of a `Scope::Clinics` row are those in the
/// resource names the request carries (a participant's: their home clinic; a
/// transfer: both groups' clinics; enrolling: the group's and the participant's home
/// clinic).
pub fn rule(operation: Operation) -> Rule {
    use Operation as O;
    match operation {
        // The network's clinics: network admins (and trusted services) only.
        O::CreateClinic | O::UpdateClinic | O::ArchiveClinic => Rule::new(ADMINS, Scope::Network),
        // Any staff member may read any clinic of the network.
        O::GetClinic | O::ListClinics => Rule::new(STAFF, Scope::Network),
        O::CreateGroup | O::UpdateGroup | O::ArchiveGroup => {
            Rule::new(CLINIC_ADMINS, Scope::Clinics)
        }
        // A group and its roster and waitlist; listing by clinic is held to the
        // caller's clinics (listing the whole network is not filtered).
        O::GetGroup | O::ListGroups | O::ListGroupMembers | O::ListWaitlist => {
            Rule::new(STAFF, Scope::Clinics)
        }
        // Registering and changing a participant: the home clinic (old and new).
        O::RegisterParticipant | O::UpdateParticipant => Rule::new(STAFF, Scope::Clinics),
        // Staff of the participant's home clinic, or the participant.
        O::GetParticipant | O::RecordConsent | O::RevokeConsent => {
            Rule::new(STAFF_OR_PARTICIPANT, Scope::OwnRecordOrClinics)
        }
        // Forgetting someone cannot be undone and reaches every service: network
        // admins only (not a calling service, not the participant, who asks the
        // network).
        O::ForgetParticipant => Rule::new(FORGETTING, Scope::Network),
        // Staff of the membership's clinic, or the participant whose membership it
        // is. A participant's own list shows all their memberships; clinic-scoped
        // staff see only those in their clinics.
        O::GetMembership
        | O::ListParticipantMemberships
        | O::AcceptSeatOffer
        | O::DeclineSeatOffer => Rule::new(STAFF_OR_PARTICIPANT, Scope::OwnRecordOrClinics),
        O::EnrollParticipant
        | O::TransferParticipant
        | O::HoldMembership
        | O::ResumeMembership
        | O::DischargeParticipant => Rule::new(STAFF, Scope::Clinics),
        // Finding a seat for someone spans the network, whatever clinics the caller
        // holds.
        O::SearchOpenSeats => Rule::new(STAFF, Scope::Network),
        // The participant's accounting of disclosures: their own, or their home
        // clinic's admins' (network admins anywhere).
        O::ListDisclosures => Rule::new(ACCOUNTING, Scope::OwnRecordOrClinics),
    }
}

#[cfg(test)]
mod tests {
    use circle_grpc::{ApiError, Caller, Target};

    use super::*;

    fn caller(role: Role, actor: &str, clinics: &[&str]) -> Caller {
        Caller::new("acme", actor, &[role], clinics)
    }

    fn outcome(result: Result<(), ApiError>) -> &'static str {
        result.err().map_or("OK", |error| error.reason)
    }

    /// The roles in the order README.md lists them.
    const ROLES: [Role; 6] = [
        Role::NetworkAdmin,
        Role::ClinicAdmin,
        Role::Facilitator,
        Role::IntakeCoordinator,
        Role::Participant,
        Role::Service,
    ];

    fn scope_name(scope: Scope) -> &'static str {
        match scope {
            Scope::Network => "network",
            Scope::Clinics => "their clinics",
            Scope::OwnRecordOrClinics => "own record (participant), their clinics (staff)",
            Scope::OwnGroupsOrClinics => "own groups (participant), their clinics (staff)",
            Scope::FacilitatedGroups | Scope::OwnRecordOrCareTeam | Scope::OwnGroupsOrCareTeam => {
                "not used here"
            }
        }
    }

    /// The clinics a row's scope is checked on, as README.md explains them.
    fn clinics_checked(operation: Operation) -> &'static str {
        use Operation as O;
        match operation {
            O::CreateClinic
            | O::UpdateClinic
            | O::ArchiveClinic
            | O::GetClinic
            | O::ListClinics
            | O::SearchOpenSeats
            | O::ForgetParticipant => "",
            O::CreateGroup
            | O::UpdateGroup
            | O::ArchiveGroup
            | O::GetGroup
            | O::ListGroupMembers
            | O::ListWaitlist
            | O::HoldMembership
            | O::ResumeMembership
            | O::DischargeParticipant
            | O::GetMembership
            | O::AcceptSeatOffer
            | O::DeclineSeatOffer => "the group's",
            O::ListGroups => "the clinic named; for the whole network, only theirs are listed",
            O::TransferParticipant => "both groups'",
            O::EnrollParticipant => {
                "the group's and the participant's home clinic (someone not registered is in none)"
            }
            O::RegisterParticipant => "the home clinic",
            O::UpdateParticipant => "the home clinic, current and new",
            O::GetParticipant | O::RecordConsent | O::RevokeConsent | O::ListDisclosures => {
                "the home clinic (someone not registered is in none)"
            }
            O::ListParticipantMemberships => "only memberships in their clinics are listed",
        }
    }

    /// The table as README.md shows it: operation, roles, scope (and on which clinics).
    fn markdown() -> String {
        let mut table = String::from("| operation | roles | scope |\n|---|---|---|\n");
        for operation in Operation::ALL {
            let rule = rule(operation);
            let roles: Vec<&str> = ROLES
                .iter()
                .filter(|role| rule.allows_role(**role))
                .map(|role| role.as_str())
                .collect();
            let clinics = match clinics_checked(operation) {
                "" => String::new(),
                clinics => format!(": {clinics}"),
            };
            table.push_str(&format!(
                "| `{}` | {} | {}{clinics} |\n",
                operation.rpc(),
                roles.join(", "),
                scope_name(rule.scope)
            ));
        }
        table
    }

    #[test]
    fn every_operation_has_a_row_and_the_readme_shows_the_table() {
        assert_eq!(Operation::ALL.len(), 29, "one per RPC of the service");
        for operation in Operation::ALL {
            let rule = rule(operation);
            assert!(!rule.roles.is_empty(), "{operation:?}");
            assert!(
                !rule.allows_role(Role::ProcessManager),
                "process managers call the application, not the API: {operation:?}"
            );
            assert!(
                rule.roles.iter().all(|role| ROLES.contains(role)),
                "{operation:?}"
            );
        }
        let table = markdown();
        println!("{table}");
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&table),
            "README.md must show the enrollment access table as:\n{table}"
        );
    }

    #[test]
    fn an_intake_coordinator_sees_rosters_and_enrolls_in_their_clinics_only() {
        let intake = caller(Role::IntakeCoordinator, "i-1", &["north"]);
        let north = Target {
            clinics: &["north"],
            ..Target::default()
        };
        let south = Target {
            clinics: &["south"],
            ..Target::default()
        };
        for operation in [
            Operation::GetGroup,
            Operation::ListGroupMembers,
            Operation::ListWaitlist,
            Operation::EnrollParticipant,
            Operation::RegisterParticipant,
            Operation::DischargeParticipant,
        ] {
            assert_eq!(outcome(rule(operation).check(&intake, &north)), "OK");
            assert_eq!(
                outcome(rule(operation).check(&intake, &south)),
                "CLINIC_OUT_OF_SCOPE",
                "{operation:?}"
            );
        }
        // Clinics and open seats are network-wide.
        assert_eq!(
            outcome(rule(Operation::GetClinic).check(&intake, &south)),
            "OK"
        );
        assert_eq!(
            outcome(rule(Operation::SearchOpenSeats).check(&intake, &south)),
            "OK"
        );
        // Groups and clinics are administrators' to shape.
        for operation in [
            Operation::CreateGroup,
            Operation::UpdateGroup,
            Operation::ArchiveGroup,
            Operation::CreateClinic,
        ] {
            assert_eq!(
                outcome(rule(operation).check(&intake, &north)),
                "ROLE_NOT_ALLOWED",
                "{operation:?}"
            );
        }
        // Closed admission is overridden by facilitators and admins, not intake.
        assert!(!CLOSED_ADMISSION_OVERRIDE.allows_role(Role::IntakeCoordinator));
        assert!(!CLOSED_ADMISSION_OVERRIDE.allows_role(Role::Service));
        assert!(CLOSED_ADMISSION_OVERRIDE.allows_role(Role::Facilitator));
    }

    #[test]
    fn a_participant_reads_and_decides_only_on_their_own_record() {
        let sam = caller(Role::Participant, "sam", &[]);
        let own = Target {
            clinics: &["north"],
            participant: Some("sam"),
            ..Target::default()
        };
        let other = Target {
            participant: Some("pat"),
            ..own
        };
        for operation in [
            Operation::GetParticipant,
            Operation::RecordConsent,
            Operation::RevokeConsent,
            Operation::GetMembership,
            Operation::ListParticipantMemberships,
            Operation::AcceptSeatOffer,
            Operation::DeclineSeatOffer,
            Operation::ListDisclosures,
        ] {
            assert_eq!(outcome(rule(operation).check(&sam, &own)), "OK");
            assert_eq!(
                outcome(rule(operation).check(&sam, &other)),
                "NOT_YOUR_RECORD",
                "{operation:?}"
            );
        }
        // Everything else — rosters, clinics, the profile's changes, enrolling — is
        // staff work.
        for operation in [
            Operation::GetGroup,
            Operation::ListGroups,
            Operation::ListGroupMembers,
            Operation::ListWaitlist,
            Operation::GetClinic,
            Operation::ListClinics,
            Operation::SearchOpenSeats,
            Operation::UpdateParticipant,
            Operation::EnrollParticipant,
            Operation::HoldMembership,
            Operation::TransferParticipant,
        ] {
            assert_eq!(
                outcome(rule(operation).check(&sam, &own)),
                "ROLE_NOT_ALLOWED",
                "{operation:?}"
            );
        }
    }

    /// The command rows keep the role sets the edge checked before commands moved
    /// into the application.
    #[test]
    fn command_rows_match_the_checks_the_write_side_makes() {
        let rows: [(Operation, &[Role]); 9] = [
            (Operation::CreateClinic, ADMINS),
            (Operation::UpdateClinic, ADMINS),
            (Operation::ArchiveClinic, ADMINS),
            (Operation::CreateGroup, CLINIC_ADMINS),
            (Operation::UpdateGroup, CLINIC_ADMINS),
            (Operation::ArchiveGroup, CLINIC_ADMINS),
            (Operation::RegisterParticipant, STAFF),
            (Operation::UpdateParticipant, STAFF),
            (Operation::TransferParticipant, STAFF),
        ];
        for (operation, roles) in rows {
            assert_eq!(rule(operation).roles, roles, "{operation:?}");
        }
        let admin = caller(Role::NetworkAdmin, "a", &[]);
        let facilitator = caller(Role::Facilitator, "f", &["north"]);
        let north = Target {
            clinics: &["north"],
            ..Target::default()
        };
        assert_eq!(
            outcome(rule(Operation::ArchiveClinic).check(&admin, &north)),
            "OK"
        );
        assert_eq!(
            outcome(rule(Operation::ArchiveClinic).check(&facilitator, &north)),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(
            outcome(rule(Operation::HoldMembership).check(&facilitator, &north)),
            "OK"
        );
    }

    #[test]
    fn an_accounting_is_the_participants_and_their_administrators() {
        let rule = rule(Operation::ListDisclosures);
        let home = Target {
            clinics: &["north"],
            participant: Some("sam"),
            ..Target::default()
        };
        assert_eq!(
            outcome(rule.check(&caller(Role::NetworkAdmin, "a", &[]), &home)),
            "OK"
        );
        assert_eq!(
            outcome(rule.check(&caller(Role::ClinicAdmin, "c", &["north"]), &home)),
            "OK"
        );
        assert_eq!(
            outcome(rule.check(&caller(Role::ClinicAdmin, "c", &["south"]), &home)),
            "CLINIC_OUT_OF_SCOPE"
        );
        assert_eq!(
            outcome(rule.check(&caller(Role::Participant, "sam", &[]), &home)),
            "OK"
        );
        assert_eq!(
            outcome(rule.check(&caller(Role::Participant, "pat", &[]), &home)),
            "NOT_YOUR_RECORD"
        );
        for role in [Role::Facilitator, Role::IntakeCoordinator, Role::Service] {
            assert_eq!(
                outcome(rule.check(&caller(role, "x", &["north"]), &home)),
                "ROLE_NOT_ALLOWED",
                "{role:?}"
            );
        }
    }

    #[test]
    fn only_network_admins_forget_a_participant() {
        let rule = rule(Operation::ForgetParticipant);
        let anywhere = Target {
            participant: Some("sam"),
            ..Target::default()
        };
        assert_eq!(
            outcome(rule.check(&caller(Role::NetworkAdmin, "a", &[]), &anywhere)),
            "OK"
        );
        for role in [
            Role::ClinicAdmin,
            Role::Facilitator,
            Role::IntakeCoordinator,
            Role::Service,
            Role::Participant,
        ] {
            assert_eq!(
                outcome(rule.check(&caller(role, "sam", &["north"]), &anywhere)),
                "ROLE_NOT_ALLOWED",
                "{role:?}"
            );
        }
    }

    #[test]
    fn process_manager_steps_are_for_process_managers_only() {
        let pm = Caller::process_manager("acme", "enrollment-process");
        let elsewhere = Target {
            clinics: &["north"],
            ..Target::default()
        };
        for step in Step::ALL {
            assert_eq!(outcome(step_rule(step).check(&pm, &elsewhere)), "OK");
            for role in [
                Role::NetworkAdmin,
                Role::ClinicAdmin,
                Role::Facilitator,
                Role::IntakeCoordinator,
                Role::Service,
                Role::Participant,
            ] {
                assert_eq!(
                    outcome(step_rule(step).check(&caller(role, "x", &["north"]), &elsewhere)),
                    "ROLE_NOT_ALLOWED",
                    "{step:?} {role:?}"
                );
            }
        }
    }

    #[test]
    fn every_rpc_of_the_service_has_one_row() -> Result<(), prost::DecodeError> {
        let rpcs = circle_proto::rpc_names("circle.enrollment.v1", "EnrollmentService")?;
        assert!(!rpcs.is_empty(), "the descriptor holds the service");
        let mut operations: Vec<&str> = Operation::ALL.iter().map(|op| op.rpc()).collect();
        operations.sort_unstable();
        let distinct: std::collections::BTreeSet<&str> = operations.iter().copied().collect();
        assert_eq!(distinct.len(), operations.len(), "each RPC once");
        assert_eq!(operations, rpcs);
        Ok(())
    }
}
