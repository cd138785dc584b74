//! The service's one access table: which roles may run each operation, and on which
//! scope. Every command and query of `app` checks its row here before anything is
//! looked up (as far as its names show: a partnership's name shows neither the
//! partners nor the clinic, so only the role is checked before it is loaded, the rest
//! against the partnership loaded). The process managers' own steps, which no RPC
//! runs, have their rows apart (`Step`, `step_rule`): for `Role::ProcessManager` only,
//! a caller that only `Caller::process_manager`, in process, makes.
//!
//! Minimum necessary: everything here is clinical (goals, check-ins with mood and
//! craving, setbacks, partners, who is at risk), so it is the participant's, their
//! peers' as `domain::visibility` allows, and their care team's: facilitators for the
//! groups they facilitate (a check-in shared with "facilitators" reaches those of the
//! author's groups, not every facilitator of the clinic), clinic admins for their
//! clinics, network admins anywhere. Intake coordinators (enrollment work) and calling
//! services (integrations get integration events, not records) have no row but
//! `SetQuietHours`, a clinic setting, and `RecordNudgeDelivery`, a messaging service's
//! receipt (which shows it nothing it was not handed).
//!
//! Beyond the table, a few rules depend on the record itself and are decided where it
//! is loaded: a participant encourages only as themselves, accepts only a partnership
//! they were invited to, ends only their own; a facilitator lists only their own
//! at-risk members; clinic-scoped roles see at-risk members of their clinics only; a
//! nudge is listed and acknowledged by its recipient alone (anyone else is told there
//! is no such nudge); and what a viewer sees of a record is `domain::visibility`'s
//! decision.

use circle_grpc::{ApiError, Caller, Role, Rule, Scope, Target, roles};

/// Every RPC of `circle.accountability.v1.AccountabilityService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    SetGoal,
    ReviseGoal,
    CompleteGoal,
    AbandonGoal,
    SubmitCheckIn,
    Encourage,
    ReportSetback,
    ProposePartnership,
    AcceptPartnership,
    EndPartnership,
    SetQuietHours,
    GetGroupBoard,
    GetParticipantTimeline,
    ListAtRisk,
    WatchGroupFeed,
    ListMyNudges,
    AcknowledgeNudge,
    RecordNudgeDelivery,
    SetMeasurementCadence,
    SubmitMeasurement,
    ListMeasurements,
    WatchIntegrationEvents,
}

impl Operation {
    pub const ALL: [Operation; 22] = [
        Self::SetGoal,
        Self::ReviseGoal,
        Self::CompleteGoal,
        Self::AbandonGoal,
        Self::SubmitCheckIn,
        Self::Encourage,
        Self::ReportSetback,
        Self::ProposePartnership,
        Self::AcceptPartnership,
        Self::EndPartnership,
        Self::SetQuietHours,
        Self::GetGroupBoard,
        Self::GetParticipantTimeline,
        Self::ListAtRisk,
        Self::WatchGroupFeed,
        Self::ListMyNudges,
        Self::AcknowledgeNudge,
        Self::RecordNudgeDelivery,
        Self::SetMeasurementCadence,
        Self::SubmitMeasurement,
        Self::ListMeasurements,
        Self::WatchIntegrationEvents,
    ];

    /// The RPC's name, as the proto spells it.
    pub fn rpc(self) -> &'static str {
        match self {
            Self::SetGoal => "SetGoal",
            Self::ReviseGoal => "ReviseGoal",
            Self::CompleteGoal => "CompleteGoal",
            Self::AbandonGoal => "AbandonGoal",
            Self::SubmitCheckIn => "SubmitCheckIn",
            Self::Encourage => "Encourage",
            Self::ReportSetback => "ReportSetback",
            Self::ProposePartnership => "ProposePartnership",
            Self::AcceptPartnership => "AcceptPartnership",
            Self::EndPartnership => "EndPartnership",
            Self::SetQuietHours => "SetQuietHours",
            Self::GetGroupBoard => "GetGroupBoard",
            Self::GetParticipantTimeline => "GetParticipantTimeline",
            Self::ListAtRisk => "ListAtRisk",
            Self::WatchGroupFeed => "WatchGroupFeed",
            Self::ListMyNudges => "ListMyNudges",
            Self::AcknowledgeNudge => "AcknowledgeNudge",
            Self::RecordNudgeDelivery => "RecordNudgeDelivery",
            Self::SetMeasurementCadence => "SetMeasurementCadence",
            Self::SubmitMeasurement => "SubmitMeasurement",
            Self::ListMeasurements => "ListMeasurements",
            Self::WatchIntegrationEvents => "WatchIntegrationEvents",
        }
    }
}

/// The care team, and the participant on their own record or in their own groups.
const CARE_TEAM_AND_PARTICIPANTS: &[Role] = &[
    Role::NetworkAdmin,
    Role::ClinicAdmin,
    Role::Facilitator,
    Role::Participant,
];

/// The care team: who may see who is at risk.
const CARE_TEAM: &[Role] = &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Facilitator];

/// Participants only (acting for themselves).
const PARTICIPANTS: &[Role] = &[Role::Participant];

/// Other services, with a token of their own.
const CALLING_SERVICES: &[Role] = &[Role::Service];

/// The access rule of `operation`. A participant's record is reached through the
/// groups they are active in: a facilitator through one they facilitate, a clinic admin
/// through one in their clinics.
pub fn rule(operation: Operation) -> Rule {
    use Operation as O;
    match operation {
        // A participant's journal: the person, or their care team.
        O::SetGoal
        | O::ReviseGoal
        | O::CompleteGoal
        | O::AbandonGoal
        | O::SubmitCheckIn
        | O::ReportSetback
        | O::GetParticipantTimeline => {
            Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::OwnRecordOrCareTeam)
        }
        // Members encourage for themselves; what they may see is the domain's call.
        O::Encourage => Rule::new(PARTICIPANTS, Scope::OwnRecordOrClinics),
        // The proposer's record; the care team of the group may propose for them.
        O::ProposePartnership => Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::OwnRecordOrCareTeam),
        // The invitee accepts, either partner ends; the care team of the partnership's
        // group may record either for them.
        O::AcceptPartnership | O::EndPartnership => {
            Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::OwnRecordOrCareTeam)
        }
        // A clinic setting: its admins, or a provisioning integration.
        O::SetQuietHours => Rule::new(roles::CLINIC_ADMINS, Scope::Clinics),
        // A group's board and feed: its members, or its care team.
        O::GetGroupBoard | O::WatchGroupFeed => {
            Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::OwnGroupsOrCareTeam)
        }
        // Who is at risk is for the care team only, never intake, an integration or
        // participants (the list is filtered to the caller's clinics).
        O::ListAtRisk => Rule::new(CARE_TEAM, Scope::Clinics),
        // A recipient's own nudges: the name must be the caller's own (staff or
        // participant), and a nudge is acknowledged by its recipient alone, decided on
        // the nudge (no broader role lifts either).
        O::ListMyNudges | O::AcknowledgeNudge => {
            Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::Network)
        }
        // A messaging service's delivery receipt.
        O::RecordNudgeDelivery => Rule::new(CALLING_SERVICES, Scope::Network),
        // Outcome measures: the care team sets how often; the participant (or their
        // care team, administering it) submits; the participant and their care team
        // read them, never peers.
        O::SetMeasurementCadence => Rule::new(CARE_TEAM, Scope::OwnRecordOrCareTeam),
        O::SubmitMeasurement | O::ListMeasurements => {
            Rule::new(CARE_TEAM_AND_PARTICIPANTS, Scope::OwnRecordOrCareTeam)
        }
        // The integration contract: other services, in their own network (which
        // identities may call it at all is `auth.services`').
        O::WatchIntegrationEvents => Rule::new(CALLING_SERVICES, Scope::Network),
    }
}

/// A step of the service's process managers that no RPC runs (`Operation::ALL` lists
/// exactly the RPCs; these are not among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Attendance from SESSIONS reaches the journal (`FromSessions`).
    RecordAttendance,
    /// A session check-in from SESSIONS becomes a journal check-in (`FromSessions`).
    SubmitSessionCheckIn,
    /// A partnership ends when a member leaves the group or withdraws consent
    /// (`PartnershipGuard`).
    EndPartnership,
    /// Day milestones are recorded as they come (`Nudger`).
    RecordDayMilestones,
    /// A due nudge is sent (`Nudger`).
    SendNudge,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Self::RecordAttendance,
        Self::SubmitSessionCheckIn,
        Self::EndPartnership,
        Self::RecordDayMilestones,
        Self::SendNudge,
    ];
}

/// The service's own process managers, in process; no client can be one.
const PROCESS_MANAGERS: &[Role] = &[Role::ProcessManager];

/// The access rule of a process manager's `step`: the process managers only, anywhere
/// in the network they act for (their caller's network is the tenant of the step).
pub fn step_rule(step: Step) -> Rule {
    match step {
        Step::RecordAttendance
        | Step::SubmitSessionCheckIn
        | Step::EndPartnership
        | Step::RecordDayMilestones
        | Step::SendNudge => Rule::new(PROCESS_MANAGERS, Scope::Network),
    }
}

/// Checks `operation`'s rule for the caller against what the request touches in
/// `network` (the tenant first: `Rule::permit`).
pub fn permit(
    caller: &Caller,
    operation: Operation,
    network: &str,
    target: &Target<'_>,
) -> Result<(), ApiError> {
    rule(operation).permit(caller, network, target)
}

/// [`permit`] for a request whose names show no clinic (`Rule::permit_unplaced`: the
/// tenant, the role and a participant's own record): the caller must then be held to
/// their reach on what is looked up, or by the query's filter.
pub fn permit_unplaced(
    caller: &Caller,
    operation: Operation,
    network: &str,
    target: &Target<'_>,
) -> Result<(), ApiError> {
    rule(operation).permit_unplaced(caller, network, target)
}

/// The role part of `operation`'s rule alone, which needs nothing from the request.
pub fn check_role(caller: &Caller, operation: Operation) -> Result<(), ApiError> {
    rule(operation).check_role(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, actor: &str, clinics: &[&str]) -> Caller {
        Caller::new("acme", actor, &[role], clinics)
    }

    fn outcome(result: Result<(), ApiError>) -> &'static str {
        result.err().map_or("OK", |error| error.reason)
    }

    const CLIENT_ROLES: [Role; 6] = [
        Role::NetworkAdmin,
        Role::ClinicAdmin,
        Role::Facilitator,
        Role::IntakeCoordinator,
        Role::Participant,
        Role::Service,
    ];

    fn scope_text(scope: Scope) -> &'static str {
        match scope {
            Scope::Network => "the network",
            Scope::Clinics => "staff: their clinics",
            Scope::OwnRecordOrClinics => "participant: own record; staff: their clinics",
            Scope::OwnGroupsOrClinics => "participant: own groups; staff: their clinics",
            Scope::OwnRecordOrCareTeam => {
                "participant: own record; facilitator: members of their groups; admins: their clinics"
            }
            Scope::OwnGroupsOrCareTeam => {
                "participant: own groups; facilitator: their groups; admins: their clinics"
            }
            Scope::FacilitatedGroups => "facilitator: their groups",
        }
    }

    /// The table as README.md shows it, one row per operation.
    fn printed() -> Vec<String> {
        Operation::ALL
            .into_iter()
            .map(|operation| {
                let rule = rule(operation);
                let roles: Vec<&str> = rule.roles.iter().map(|role| role.as_str()).collect();
                format!(
                    "| {} | {} | {} |",
                    operation.rpc(),
                    roles.join(", "),
                    scope_text(rule.scope)
                )
            })
            .collect()
    }

    #[test]
    fn every_operation_has_exactly_one_row_and_the_readme_shows_the_table() {
        let mut seen = std::collections::HashSet::new();
        for operation in Operation::ALL {
            assert!(seen.insert(operation), "{operation:?} twice");
        }
        assert_eq!(seen.len(), 22, "one row per RPC of the service");
        let readme = include_str!("../../README.md");
        for row in printed() {
            println!("{row}");
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
    }

    #[test]
    fn every_rpc_of_the_service_has_one_row() -> Result<(), prost::DecodeError> {
        let rpcs = circle_proto::rpc_names("circle.accountability.v1", "AccountabilityService")?;
        assert!(!rpcs.is_empty(), "the descriptor has the service");
        let mut operations: Vec<&str> = Operation::ALL.iter().map(|op| op.rpc()).collect();
        operations.sort_unstable();
        assert_eq!(operations, rpcs);
        Ok(())
    }

    #[test]
    fn the_process_managers_steps_are_theirs_alone() {
        let anywhere = Target {
            clinics: &["north"],
            participant: Some("sam"),
            caller_is_member: true,
            caller_facilitates: true,
        };
        for step in Step::ALL {
            let rule = step_rule(step);
            for role in CLIENT_ROLES {
                let who = caller(role, "sam", &["north"]);
                assert_eq!(
                    outcome(rule.check(&who, &anywhere)),
                    "ROLE_NOT_ALLOWED",
                    "{step:?} {role:?}"
                );
            }
            let process = Caller::process_manager("acme", "accountability-process");
            assert_eq!(outcome(rule.check(&process, &Target::default())), "OK");
        }
        // And no RPC's row lets a process manager in: the steps are the way in.
        let process = Caller::process_manager("acme", "accountability-process");
        for operation in Operation::ALL {
            assert_eq!(
                outcome(check_role(&process, operation)),
                "ROLE_NOT_ALLOWED",
                "{operation:?}"
            );
        }
    }

    #[test]
    fn who_is_at_risk_is_for_the_care_team_only() {
        let north = Target {
            clinics: &["north"],
            ..Target::default()
        };
        let expected = [
            (Role::NetworkAdmin, "OK"),
            (Role::ClinicAdmin, "OK"),
            (Role::Facilitator, "OK"),
            (Role::IntakeCoordinator, "ROLE_NOT_ALLOWED"),
            (Role::Participant, "ROLE_NOT_ALLOWED"),
            (Role::Service, "ROLE_NOT_ALLOWED"),
        ];
        for (role, reason) in expected {
            let who = caller(role, "someone", &["north"]);
            assert_eq!(
                outcome(permit(&who, Operation::ListAtRisk, "acme", &north)),
                reason,
                "{role:?}"
            );
            assert_eq!(
                outcome(check_role(&who, Operation::ListAtRisk)),
                reason,
                "{role:?}"
            );
        }
    }

    #[test]
    fn intake_and_calling_services_reach_no_clinical_record() {
        let north = Target {
            clinics: &["north"],
            participant: Some("sam"),
            caller_is_member: false,
            caller_facilitates: true,
        };
        for role in [Role::IntakeCoordinator, Role::Service] {
            let who = caller(role, "x", &["north"]);
            for operation in Operation::ALL {
                let expected = if role == Role::Service
                    && matches!(
                        operation,
                        Operation::SetQuietHours
                            | Operation::RecordNudgeDelivery
                            | Operation::WatchIntegrationEvents
                    ) {
                    "OK"
                } else {
                    "ROLE_NOT_ALLOWED"
                };
                assert_eq!(
                    outcome(permit(&who, operation, "acme", &north)),
                    expected,
                    "{role:?} {operation:?}"
                );
            }
        }
        // The tenant before anything else, for every operation.
        let admin = caller(Role::NetworkAdmin, "a", &[]);
        for operation in Operation::ALL {
            assert_eq!(
                outcome(permit(&admin, operation, "other", &north)),
                "WRONG_NETWORK",
                "{operation:?}"
            );
        }
    }

    #[test]
    fn a_participant_reads_their_own_record_and_the_groups_they_are_in() {
        let sam = caller(Role::Participant, "sam", &[]);
        let own = Target {
            participant: Some("sam"),
            ..Target::default()
        };
        let someone_else = Target {
            participant: Some("jordan"),
            ..Target::default()
        };
        assert_eq!(
            outcome(permit(
                &sam,
                Operation::GetParticipantTimeline,
                "acme",
                &own
            )),
            "OK"
        );
        assert_eq!(
            outcome(permit(
                &sam,
                Operation::GetParticipantTimeline,
                "acme",
                &someone_else
            )),
            "NOT_YOUR_RECORD"
        );
        for operation in [Operation::GetGroupBoard, Operation::WatchGroupFeed] {
            let member = Target {
                clinics: &["north"],
                caller_is_member: true,
                ..Target::default()
            };
            assert_eq!(outcome(permit(&sam, operation, "acme", &member)), "OK");
            let outsider = Target {
                caller_is_member: false,
                ..member
            };
            assert_eq!(
                outcome(permit(&sam, operation, "acme", &outsider)),
                "NOT_A_MEMBER"
            );
        }
    }

    #[test]
    fn a_facilitator_reaches_the_groups_they_facilitate_and_admins_their_clinics() {
        let theirs = Target {
            participant: Some("sam"),
            clinics: &["north"],
            caller_facilitates: true,
            ..Target::default()
        };
        let not_theirs = Target {
            caller_facilitates: false,
            ..theirs
        };
        let facilitator = caller(Role::Facilitator, "f", &["north"]);
        let elsewhere = caller(Role::Facilitator, "f", &["south"]);
        let clinic_admin = caller(Role::ClinicAdmin, "a", &["north"]);
        for operation in [
            Operation::SetGoal,
            Operation::ReviseGoal,
            Operation::CompleteGoal,
            Operation::AbandonGoal,
            Operation::SubmitCheckIn,
            Operation::ReportSetback,
            Operation::ProposePartnership,
            Operation::AcceptPartnership,
            Operation::EndPartnership,
            Operation::GetParticipantTimeline,
        ] {
            assert_eq!(
                outcome(permit(&facilitator, operation, "acme", &theirs)),
                "OK"
            );
            assert_eq!(
                outcome(permit(&facilitator, operation, "acme", &not_theirs)),
                "NOT_YOUR_RECORD",
                "{operation:?}"
            );
            assert_eq!(
                outcome(permit(&elsewhere, operation, "acme", &theirs)),
                "CLINIC_OUT_OF_SCOPE"
            );
            assert_eq!(
                outcome(permit(&clinic_admin, operation, "acme", &not_theirs)),
                "OK"
            );
        }
        for operation in [Operation::GetGroupBoard, Operation::WatchGroupFeed] {
            assert_eq!(
                outcome(permit(&facilitator, operation, "acme", &theirs)),
                "OK"
            );
            assert_eq!(
                outcome(permit(&facilitator, operation, "acme", &not_theirs)),
                "NOT_A_FACILITATOR"
            );
            assert_eq!(
                outcome(permit(&clinic_admin, operation, "acme", &not_theirs)),
                "OK"
            );
        }
        // Encouragement is a member's own act: staff do not encourage for anyone.
        assert_eq!(
            outcome(permit(&facilitator, Operation::Encourage, "acme", &theirs)),
            "ROLE_NOT_ALLOWED"
        );
        let sam = caller(Role::Participant, "sam", &[]);
        assert_eq!(
            outcome(permit(&sam, Operation::Encourage, "acme", &theirs)),
            "OK"
        );
        // Quiet hours are a clinic setting for its admins.
        assert_eq!(
            outcome(permit(
                &clinic_admin,
                Operation::SetQuietHours,
                "acme",
                &theirs
            )),
            "OK"
        );
        assert_eq!(
            outcome(permit(
                &facilitator,
                Operation::SetQuietHours,
                "acme",
                &theirs
            )),
            "ROLE_NOT_ALLOWED"
        );
    }
}
