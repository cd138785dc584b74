//! Every command of the accountability service, for the gRPC edge (one function per
//! command RPC) and for the process managers (their own steps, `pub(crate)`). Each
//! checks its row of the access table first, with what its names show and nothing
//! looked up; then resolves what it needs (the aggregate, the roster's facts, what the
//! caller may see through `domain::visibility`), builds the commit metadata and runs
//! the domain's decision through the repository (`aggregates`), which seals what it
//! appends. An answer with personal text (a goal, a check-in) is opened with the
//! participant's key before it is given (`crate::personal`); a retry answered from
//! its stored commit too. Refusals come back as `ApiError`s (`errors`); a step's as a
//! `StepError` its process manager acts on.

use std::fmt;
use std::sync::Arc;

use circle_calendar::Clock;
use circle_eventstore::{CommitMeta, EventStore, ExecuteError, SealError, StoreError};
use circle_grpc::{ApiError, Caller, Rule, Target};
use circle_names::{
    CheckInName, ClinicName, GoalName, GroupName, Id, NudgeName, ParticipantName, PartnershipName,
};
use circle_service::Fingerprint;
use circle_vault::store::KeyStore;
use circle_vault::{Opener, field};
use sqlx::PgPool;
use tonic::Code;

use super::access::{self, Operation, Step};
use super::aggregates::{Aggregates, CommandError, partnership_id};
use super::errors::{command_error, domain_error};
use super::facts::Facts;
use super::queries::{MeasurementView, NudgeView, participant_name};
use crate::domain::instruments::{Catalog, ScoringError};
use crate::domain::journal::{Counters, Goal, JournalCommand, Recipient, measurement_answers};
use crate::domain::nudges::DueNudge;
use crate::domain::partnership::{Partnership, PartnershipCommand, PartnershipState};
use crate::domain::settings::QuietHours;
use crate::domain::visibility::{Consent, Viewer, can_see_check_in, widest_allowed};
use crate::domain::{Cadence, DeliveryChannel, DomainError, Event, Progress, Time, Visibility};
use circle_service::errors::key_store_error;

type ApiResult<T> = Result<T, ApiError>;

/// What the commands need: the aggregates (through the repository, which seals with
/// the key store), the roster's facts, the service's clock, and the key store that
/// opens the answers.
pub struct Commands {
    aggregates: Aggregates,
    facts: Facts,
    clock: Arc<dyn Clock>,
    vault: KeyStore,
}

impl Commands {
    pub fn new(store: EventStore, pool: PgPool, clock: Arc<dyn Clock>, vault: KeyStore) -> Self {
        Self {
            aggregates: Aggregates::new(store, clock.clone(), &vault),
            facts: Facts::new(pool),
            clock,
            vault,
        }
    }

    /// The opening key of the participant whose journal an answer shows.
    async fn opener(&self, network: &str, participant_id: &str) -> ApiResult<Opener> {
        self.vault
            .opener(network, [participant_id])
            .await
            .map_err(key_store_error)
    }

    /// The service's clock, now.
    pub(crate) fn now(&self) -> Time {
        self.clock.now()
    }
}

/// A client's request id (AIP-155, checked) and the fingerprint of the request's
/// content: a retry is answered from the original commit, another request under the
/// same id refused.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub request_id: String,
    pub fingerprint: Fingerprint,
}

impl Idempotency {
    fn meta(self, caller: &Caller) -> CommitMeta {
        circle_service::commit_meta(caller, self.request_id, self.fingerprint)
    }
}

pub struct SetGoal {
    pub participant: ParticipantName,
    pub text: String,
    pub cadence: Cadence,
    pub request: Idempotency,
}

pub struct ReviseGoal {
    pub goal: GoalName,
    pub text: String,
    pub cadence: Cadence,
    pub request: Idempotency,
}

/// Completing or abandoning a goal.
pub struct GoalChange {
    pub goal: GoalName,
    pub request: Idempotency,
}

pub struct SubmitCheckIn {
    pub participant: ParticipantName,
    /// One of the participant's own goals, if the check-in reports on one.
    pub goal: Option<GoalName>,
    pub progress: Progress,
    /// 0–10.
    pub mood: u32,
    /// 0–10.
    pub craving: u32,
    pub text: String,
    pub visibility: Visibility,
    pub request: Idempotency,
}

pub struct Encourage {
    pub check_in: CheckInName,
    /// Who encourages: the caller, a member acting for themselves.
    pub participant: ParticipantName,
    pub reaction: String,
    pub message: String,
    pub request: Idempotency,
}

pub struct ReportSetback {
    pub participant: ParticipantName,
    pub text: String,
    /// Never private: support has to reach someone.
    pub visibility: Visibility,
    pub request: Idempotency,
}

pub struct ProposePartnership {
    pub proposer: ParticipantName,
    pub invitee: ParticipantName,
    pub group: GroupName,
    pub request: Idempotency,
}

/// Accepting or ending a partnership.
pub struct PartnershipChange {
    pub partnership: PartnershipName,
    pub request: Idempotency,
}

pub struct SetQuietHours {
    pub clinic: ClinicName,
    pub quiet_hours: QuietHours,
    pub request: Idempotency,
}

pub struct AcknowledgeNudge {
    pub nudge: NudgeName,
    pub request: Idempotency,
}

pub struct RecordNudgeDelivery {
    pub nudge: NudgeName,
    /// Delivered, or the messaging service gave up.
    pub delivered: bool,
    pub channel: DeliveryChannel,
    pub request: Idempotency,
}

pub struct SetMeasurementCadence {
    pub participant: ParticipantName,
    pub instrument: String,
    /// 0 stops asking.
    pub every_days: u32,
    pub request: Idempotency,
}

pub struct SubmitMeasurement {
    pub participant: ParticipantName,
    pub instrument: String,
    /// (item id, the chosen option's place in its set).
    pub answers: Vec<(String, u32)>,
    pub request: Idempotency,
}

/// A cadence as the command left it.
#[derive(Debug, Clone, PartialEq)]
pub struct CadenceAnswer {
    pub instrument: String,
    pub every_days: u32,
    pub consistency_token: String,
}

/// The measure the commit recorded (on a retry, the original), its answers opened.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementAnswer {
    pub measurement: MeasurementView,
    pub consistency_token: String,
}

/// The instruments (loaded and checked at start: `crate::start_with_clock`).
fn catalog() -> ApiResult<&'static Catalog> {
    Catalog::shared().map_err(|error| {
        tracing::error!(%error, "the instrument definitions do not hold together");
        ApiError::internal()
    })
}

/// The most facilitators one safety concern alerts (the lead of each group first): a
/// commit holds at most 16 events, the measure and its alerts.
const MAX_ALERTED: usize = 15;

/// Answers that can never be scored: the field they are wrong in and why.
fn scoring_error(error: ScoringError) -> ApiError {
    let field = match error {
        ScoringError::UnknownInstrument(_) => "instrument",
        _ => "answers",
    };
    let mut violations = circle_grpc::Violations::default();
    violations.add(field, error.to_string());
    violations
        .finish::<()>(None)
        .expect_err("a violation was added")
}

/// A nudge as the command left it (on a retry, as the original commit left it).
#[derive(Debug, Clone, PartialEq)]
pub struct NudgeAnswer {
    pub nudge: NudgeView,
    pub consistency_token: String,
}

/// A goal as the command left it (its text opened).
#[derive(Debug, Clone, PartialEq)]
pub struct GoalAnswer {
    pub name: GoalName,
    pub goal: Goal,
    pub consistency_token: String,
}

/// The check-in the commit recorded (on a retry, the original), its text opened.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInAnswer {
    pub name: CheckInName,
    pub goal: Option<GoalName>,
    pub progress: Progress,
    pub mood: u32,
    pub craving: u32,
    pub text: String,
    pub visibility: Visibility,
    pub submit_time: Time,
    pub consistency_token: String,
}

/// The participant's counters after a setback.
#[derive(Debug, Clone, PartialEq)]
pub struct SetbackAnswer {
    pub counters: Counters,
    pub consistency_token: String,
}

/// A partnership as the command left it; `group`, `proposer` and `invitee` are full
/// resource names.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnershipAnswer {
    pub name: PartnershipName,
    pub group: String,
    pub proposer: String,
    pub invitee: String,
    pub state: PartnershipState,
    pub consistency_token: String,
}

/// A command that answers only where its write is.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub consistency_token: String,
}

/// An id derived from the parent's name and the request id, so a retry names the
/// same record.
fn derived_id(parent: &str, kind: &str, request_id: &str) -> String {
    Id::derived(&format!("{parent}/{kind}/{request_id}")).into_string()
}

/// An id this service derived or recorded, as a name segment (always one: a failure
/// is a bug).
fn id(value: &str) -> ApiResult<Id> {
    Id::parse(value).map_err(|_| ApiError::internal())
}

/// The scope of a participant's record, as its name shows it.
fn record(participant: &ParticipantName) -> Target<'_> {
    Target {
        participant: Some(participant.participant.as_str()),
        ..Target::default()
    }
}

/// The caller, when they are one of the partnership's two partners. A participant who
/// is not is refused here, before anything else about the partnership is looked up.
fn own_partnership<'a>(
    caller: &'a Caller,
    network: &str,
    rule: Rule,
    current: &Partnership,
) -> ApiResult<Option<&'a str>> {
    let partner = current
        .involves(&caller.actor_id)
        .then_some(caller.actor_id.as_str());
    if caller.is_participant() && partner.is_none() {
        rule.permit(caller, network, &Target::default())?;
    }
    Ok(partner)
}

fn partnership_answer(
    name: &PartnershipName,
    clinic_id: &str,
    partnership: &Partnership,
    version: u64,
) -> PartnershipAnswer {
    let network = name.network.as_str();
    PartnershipAnswer {
        name: name.clone(),
        group: format!(
            "networks/{network}/clinics/{clinic_id}/groups/{}",
            partnership.group_id
        ),
        proposer: participant_name(network, &partnership.proposer_id),
        invitee: participant_name(network, &partnership.invitee_id),
        state: partnership.state,
        consistency_token: version.to_string(),
    }
}

// The commands of the RPCs.
impl Commands {
    pub async fn set_goal(&self, caller: &Caller, input: SetGoal) -> ApiResult<GoalAnswer> {
        let participant = &input.participant;
        self.facts
            .authorize_record(caller, Operation::SetGoal, participant)
            .await?;
        let goal_id = derived_id(&participant.to_string(), "goal", &input.request.request_id);
        let goal = participant.goal(id(&goal_id)?);
        let command = JournalCommand::SetGoal {
            goal_id,
            text: input.text,
            cadence: input.cadence,
        };
        self.run_goal_command(caller, goal, input.request, command)
            .await
    }

    pub async fn revise_goal(&self, caller: &Caller, input: ReviseGoal) -> ApiResult<GoalAnswer> {
        self.facts
            .authorize_record(
                caller,
                Operation::ReviseGoal,
                &input.goal.participant_name(),
            )
            .await?;
        let command = JournalCommand::ReviseGoal {
            goal_id: input.goal.goal.to_string(),
            text: input.text,
            cadence: input.cadence,
        };
        self.run_goal_command(caller, input.goal, input.request, command)
            .await
    }

    pub async fn complete_goal(&self, caller: &Caller, input: GoalChange) -> ApiResult<GoalAnswer> {
        self.facts
            .authorize_record(
                caller,
                Operation::CompleteGoal,
                &input.goal.participant_name(),
            )
            .await?;
        let command = JournalCommand::CompleteGoal {
            goal_id: input.goal.goal.to_string(),
        };
        self.run_goal_command(caller, input.goal, input.request, command)
            .await
    }

    pub async fn abandon_goal(&self, caller: &Caller, input: GoalChange) -> ApiResult<GoalAnswer> {
        self.facts
            .authorize_record(
                caller,
                Operation::AbandonGoal,
                &input.goal.participant_name(),
            )
            .await?;
        let command = JournalCommand::AbandonGoal {
            goal_id: input.goal.goal.to_string(),
        };
        self.run_goal_command(caller, input.goal, input.request, command)
            .await
    }

    /// Runs an authorized goal command and answers the goal as it left it, opened with
    /// the participant's key as it is once the command has run (a first goal's commit
    /// is what makes their key). A revision is decided on the goal's text in clear.
    async fn run_goal_command(
        &self,
        caller: &Caller,
        goal: GoalName,
        request: Idempotency,
        command: JournalCommand,
    ) -> ApiResult<GoalAnswer> {
        let (network, participant_id) = (goal.network.as_str(), goal.participant.as_str());
        let meta = request.meta(caller);
        let executed = if matches!(command, JournalCommand::ReviseGoal { .. }) {
            let opener = self.opener(network, participant_id).await?;
            self.aggregates
                .journal_opened(network, participant_id, &meta, command, &opener)
                .await
        } else {
            self.aggregates
                .journal(network, participant_id, &meta, command)
                .await
        }
        .map_err(command_error)?;
        let mut state = executed
            .state()
            .goals
            .get(goal.goal.as_str())
            .ok_or_else(ApiError::request_id_reused)?
            .clone();
        state.text = self.opener(network, participant_id).await?.open(
            participant_id,
            field::GOAL,
            &state.text,
        );
        Ok(GoalAnswer {
            name: goal,
            goal: state,
            consistency_token: executed.version().to_string(),
        })
    }

    pub async fn submit_check_in(
        &self,
        caller: &Caller,
        input: SubmitCheckIn,
    ) -> ApiResult<CheckInAnswer> {
        let participant = &input.participant;
        self.facts
            .authorize_record(caller, Operation::SubmitCheckIn, participant)
            .await?;
        let (network, participant_id) = (
            participant.network.as_str(),
            participant.participant.as_str(),
        );
        let consent = self.facts.consent(network, participant_id).await?;
        let check_in_id = derived_id(
            &participant.to_string(),
            "check-in",
            &input.request.request_id,
        );
        let command = JournalCommand::SubmitCheckIn {
            check_in_id: check_in_id.clone(),
            goal_id: input.goal.as_ref().map(|goal| goal.goal.to_string()),
            progress: input.progress,
            mood: input.mood,
            craving: input.craving,
            text: input.text,
            visibility: input.visibility,
            session_id: None,
            consent,
        };
        let executed = self
            .aggregates
            .journal(
                network,
                participant_id,
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        // The answer is the check-in the commit recorded (on a retry, the original).
        let recorded = executed.events().iter().find_map(|event| match event {
            Event::CheckInSubmitted {
                check_in_id: id,
                goal_id,
                progress,
                mood,
                craving,
                text,
                visibility,
                ..
            } if *id == check_in_id => {
                Some((goal_id, *progress, *mood, *craving, text, *visibility))
            }
            _ => None,
        });
        let (Some((goal_id, progress, mood, craving, text, visibility)), Some(at)) =
            (recorded, executed.committed_at())
        else {
            // Only a commit from before fingerprints can be another command here.
            return Err(ApiError::request_id_reused());
        };
        let goal = match goal_id {
            Some(goal_id) => Some(participant.goal(id(goal_id)?)),
            None => None,
        };
        // Opened with the key as it is now (the commit may have made it).
        let text =
            self.opener(network, participant_id)
                .await?
                .open(participant_id, field::CHECK_IN, text);
        Ok(CheckInAnswer {
            name: participant.check_in(id(&check_in_id)?),
            goal,
            progress,
            mood,
            craving,
            text,
            visibility,
            submit_time: at,
            consistency_token: executed.version().to_string(),
        })
    }

    /// Only a member of a group the author is active in, who may see the check-in,
    /// encourages it; the encourager acts for themselves (the table's row: a
    /// participant, on their own record).
    pub async fn encourage(&self, caller: &Caller, input: Encourage) -> ApiResult<Committed> {
        access::permit(
            caller,
            Operation::Encourage,
            input.participant.network.as_str(),
            &record(&input.participant),
        )?;
        let check_in = &input.check_in;
        caller.require_network(check_in.network.as_str(), &check_in.to_string())?;
        let network = check_in.network.as_str();
        let author = check_in.participant.as_str();
        let from = input.participant.participant.as_str();
        if author == from {
            return Err(domain_error(DomainError::OwnCheckIn));
        }
        let viewer = self.facts.peer_relation(network, from, author).await?;
        let journal = self
            .aggregates
            .load_journal(network, author)
            .await
            .map_err(command_error)?;
        let consent = self.facts.consent(network, author).await?;
        let can_see = matches!(viewer, Viewer::Peer { .. })
            && journal
                .check_ins
                .get(check_in.check_in.as_str())
                .is_some_and(|facts| can_see_check_in(viewer, facts.visibility, consent));
        let command = JournalCommand::Encourage {
            check_in_id: check_in.check_in.to_string(),
            from_participant_id: from.to_owned(),
            reaction: input.reaction,
            message: input.message,
            can_see,
        };
        let executed = self
            .aggregates
            .journal(network, author, &input.request.meta(caller), command)
            .await
            .map_err(command_error)?;
        Ok(Committed {
            consistency_token: executed.version().to_string(),
        })
    }

    pub async fn report_setback(
        &self,
        caller: &Caller,
        input: ReportSetback,
    ) -> ApiResult<SetbackAnswer> {
        let participant = &input.participant;
        self.facts
            .authorize_record(caller, Operation::ReportSetback, participant)
            .await?;
        let (network, participant_id) = (
            participant.network.as_str(),
            participant.participant.as_str(),
        );
        let consent = self.facts.consent(network, participant_id).await?;
        let setback_id = derived_id(
            &participant.to_string(),
            "setback",
            &input.request.request_id,
        );
        let command = JournalCommand::ReportSetback {
            setback_id,
            text: input.text,
            visibility: input.visibility,
            consent,
        };
        let executed = self
            .aggregates
            .journal(
                network,
                participant_id,
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(SetbackAnswer {
            counters: executed.state().counters(self.clock.now()),
            consistency_token: executed.version().to_string(),
        })
    }

    /// The proposer's record, or the care team of the group the partnership is in
    /// (staff may propose for a member); both must be active in the group and share
    /// check-ins.
    pub async fn propose_partnership(
        &self,
        caller: &Caller,
        input: ProposePartnership,
    ) -> ApiResult<PartnershipAnswer> {
        let (proposer, invitee, group) = (&input.proposer, &input.invitee, &input.group);
        caller.require_network(invitee.network.as_str(), &invitee.to_string())?;
        caller.require_network(group.network.as_str(), &group.to_string())?;
        let network = proposer.network.as_str();
        // The tenant, the role and a participant's own record, with nothing looked up.
        access::permit_unplaced(
            caller,
            Operation::ProposePartnership,
            network,
            &record(proposer),
        )?;
        let group_id = group.group.as_str();
        let known = self.facts.group(network, group_id).await?;
        // Staff are held to the group's clinic as its name gives it, and a facilitator
        // to a group that lists them (the roster's facilitators are all that is looked
        // up before this; a group it does not know lists no one).
        let facilitates = known.as_ref().is_some_and(|known| {
            known.clinic_id == group.clinic.as_str() && known.lists(&caller.actor_id)
        });
        access::permit(
            caller,
            Operation::ProposePartnership,
            network,
            &Target {
                clinics: &[group.clinic.as_str()],
                participant: Some(proposer.participant.as_str()),
                caller_facilitates: facilitates,
                ..Target::default()
            },
        )?;
        // The group's clinic is checked against the record: a group of another clinic
        // is not found. (A group the roster does not know yet is not eligible below.)
        if known.is_some_and(|known| known.clinic_id != group.clinic.as_str()) {
            return Err(ApiError::new(
                Code::NotFound,
                "GROUP_NOT_FOUND",
                format!("{group} not found"),
            ));
        }
        let (proposer_id, invitee_id) =
            (proposer.participant.as_str(), invitee.participant.as_str());
        let active_in_group = self
            .facts
            .active_members_among(network, group_id, [proposer_id, invitee_id])
            .await?;
        let consented = self
            .facts
            .consent(network, proposer_id)
            .await?
            .share_check_ins
            && self
                .facts
                .consent(network, invitee_id)
                .await?
                .share_check_ins;
        let name = PartnershipName {
            network: proposer.network.clone(),
            partnership: id(&partnership_id(network, group_id, proposer_id, invitee_id))?,
        };
        let command = PartnershipCommand::Propose {
            group_id: group_id.to_owned(),
            proposer_id: proposer_id.to_owned(),
            invitee_id: invitee_id.to_owned(),
            eligible: active_in_group == 2 && consented,
        };
        let executed = self
            .aggregates
            .partnership(
                network,
                name.partnership.as_str(),
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(partnership_answer(
            &name,
            group.clinic.as_str(),
            executed.state(),
            executed.version(),
        ))
    }

    /// The invitee accepts; staff of the group's clinic may record the acceptance for
    /// them.
    pub async fn accept_partnership(
        &self,
        caller: &Caller,
        input: PartnershipChange,
    ) -> ApiResult<PartnershipAnswer> {
        let rule = access::rule(Operation::AcceptPartnership);
        // The name shows neither the partners nor the clinic: the tenant and the role
        // first, the scope against the partnership.
        let name = &input.partnership;
        caller.require_network(name.network.as_str(), &name.to_string())?;
        rule.check_role(caller)?;
        let network = name.network.as_str();
        let current = self
            .aggregates
            .load_partnership(network, name.partnership.as_str())
            .await
            .map_err(command_error)?;
        let by = if caller.is_participant() {
            caller.actor_id.clone()
        } else {
            current.invitee_id.clone()
        };
        // A participant's own record is a partnership they are in (so a partnership of
        // others, or none, is refused alike, before its group is looked up: probing
        // reveals nothing); the domain then refuses anyone but the invitee. Staff act
        // in the clinic of its group.
        let partner = own_partnership(caller, network, rule, &current)?;
        let (clinic, facilitates) = self.partnership_group(caller, network, &current).await?;
        let clinics: Vec<&str> = clinic.iter().map(String::as_str).collect();
        rule.permit(
            caller,
            network,
            &Target {
                clinics: &clinics,
                participant: partner,
                caller_facilitates: facilitates,
                ..Target::default()
            },
        )?;
        let clinic = clinic.unwrap_or_default();
        let executed = self
            .aggregates
            .partnership(
                network,
                name.partnership.as_str(),
                &input.request.meta(caller),
                PartnershipCommand::Accept { by },
            )
            .await
            .map_err(command_error)?;
        Ok(partnership_answer(
            name,
            &clinic,
            executed.state(),
            executed.version(),
        ))
    }

    /// Either partner ends it; staff of the group's clinic may record it for them.
    pub async fn end_partnership(
        &self,
        caller: &Caller,
        input: PartnershipChange,
    ) -> ApiResult<PartnershipAnswer> {
        let rule = access::rule(Operation::EndPartnership);
        // The name shows neither the partners nor the clinic: the tenant and the role
        // first, the scope against the partnership.
        let name = &input.partnership;
        caller.require_network(name.network.as_str(), &name.to_string())?;
        rule.check_role(caller)?;
        let network = name.network.as_str();
        let current = self
            .aggregates
            .load_partnership(network, name.partnership.as_str())
            .await
            .map_err(command_error)?;
        // A participant's own record is a partnership they are in.
        let partner = own_partnership(caller, network, rule, &current)?;
        let (clinic, facilitates) = self.partnership_group(caller, network, &current).await?;
        let clinics: Vec<&str> = clinic.iter().map(String::as_str).collect();
        rule.permit(
            caller,
            network,
            &Target {
                clinics: &clinics,
                participant: partner,
                caller_facilitates: facilitates,
                ..Target::default()
            },
        )?;
        let clinic = clinic.unwrap_or_default();
        let command = PartnershipCommand::End {
            reason: "ended-by-member".into(),
        };
        let executed = self
            .aggregates
            .partnership(
                network,
                name.partnership.as_str(),
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(partnership_answer(
            name,
            &clinic,
            executed.state(),
            executed.version(),
        ))
    }

    /// The clinic of a partnership's group, and whether it lists the caller as a
    /// facilitator. A partnership never proposed is in no clinic (refused to a
    /// clinic-scoped caller as one of another clinic is; the command refuses it to
    /// anyone else). A partnership is proposed only in a group the roster knows, so an
    /// unknown group means the roster is not readable now.
    async fn partnership_group(
        &self,
        caller: &Caller,
        network: &str,
        partnership: &Partnership,
    ) -> ApiResult<(Option<String>, bool)> {
        if partnership.state == PartnershipState::None {
            return Ok((None, false));
        }
        let group = self
            .facts
            .group(network, &partnership.group_id)
            .await?
            .ok_or_else(|| ApiError::unavailable("the roster"))?;
        let facilitates = group.lists(&caller.actor_id);
        Ok((Some(group.clinic_id), facilitates))
    }

    pub async fn set_quiet_hours(
        &self,
        caller: &Caller,
        input: SetQuietHours,
    ) -> ApiResult<Committed> {
        let clinic = &input.clinic;
        access::permit(
            caller,
            Operation::SetQuietHours,
            clinic.network.as_str(),
            &Target {
                clinics: &[clinic.clinic.as_str()],
                ..Target::default()
            },
        )?;
        let executed = self
            .aggregates
            .quiet_hours(
                clinic.network.as_str(),
                clinic.clinic.as_str(),
                &input.request.meta(caller),
                input.quiet_hours,
            )
            .await
            .map_err(command_error)?;
        Ok(Committed {
            consistency_token: executed.version().to_string(),
        })
    }
}

// The nudges' commands: a recipient's acknowledgement, a messaging service's receipt.
impl Commands {
    /// The recipient acknowledges a nudge: the caller as the journal knows them (its
    /// owner, another participant, or staff), checked against the nudge's recipient
    /// by the journal, which tells anyone else there is no such nudge.
    pub async fn acknowledge_nudge(
        &self,
        caller: &Caller,
        input: AcknowledgeNudge,
    ) -> ApiResult<NudgeAnswer> {
        let nudge = &input.nudge;
        access::permit_unplaced(
            caller,
            Operation::AcknowledgeNudge,
            nudge.network.as_str(),
            &Target::default(),
        )?;
        let by = if !caller.is_participant() {
            Recipient::Staff(caller.actor_id.clone())
        } else if caller.actor_id == nudge.participant.as_str() {
            Recipient::Owner
        } else {
            // A partner acts on a nudge about the member only while the member shares
            // check-ins with peers, as they list it (else, as for no such nudge).
            let consent = self
                .facts
                .consent(nudge.network.as_str(), nudge.participant.as_str())
                .await?;
            if !consent.share_check_ins {
                return Err(domain_error(DomainError::NudgeNotFound));
            }
            Recipient::Participant(caller.actor_id.clone())
        };
        let command = JournalCommand::AcknowledgeNudge {
            public_id: nudge.nudge.to_string(),
            by,
        };
        self.run_nudge_command(caller, &input.nudge, input.request, command)
            .await
    }

    /// A messaging service records how a nudge it was handed went.
    pub async fn record_nudge_delivery(
        &self,
        caller: &Caller,
        input: RecordNudgeDelivery,
    ) -> ApiResult<NudgeAnswer> {
        let nudge = &input.nudge;
        access::permit_unplaced(
            caller,
            Operation::RecordNudgeDelivery,
            nudge.network.as_str(),
            &Target::default(),
        )?;
        let command = JournalCommand::RecordNudgeDelivery {
            public_id: nudge.nudge.to_string(),
            delivered: input.delivered,
            channel: input.channel,
        };
        self.run_nudge_command(caller, &input.nudge, input.request, command)
            .await
    }

    /// Runs an authorized nudge command and answers the nudge as the commit left it.
    async fn run_nudge_command(
        &self,
        caller: &Caller,
        nudge: &NudgeName,
        request: Idempotency,
        command: JournalCommand,
    ) -> ApiResult<NudgeAnswer> {
        let (network, participant_id) = (nudge.network.as_str(), nudge.participant.as_str());
        let executed = self
            .aggregates
            .journal(network, participant_id, &request.meta(caller), command)
            .await
            .map_err(command_error)?;
        let (_, sent) = executed
            .state()
            .nudge(nudge.nudge.as_str())
            .ok_or_else(ApiError::request_id_reused)?;
        Ok(NudgeAnswer {
            nudge: NudgeView::of(nudge, sent),
            consistency_token: executed.version().to_string(),
        })
    }
}

// Outcome measures.
impl Commands {
    /// The care team sets how often a participant completes an instrument.
    pub async fn set_measurement_cadence(
        &self,
        caller: &Caller,
        input: SetMeasurementCadence,
    ) -> ApiResult<CadenceAnswer> {
        let participant = &input.participant;
        self.facts
            .authorize_record(caller, Operation::SetMeasurementCadence, participant)
            .await?;
        let catalog = catalog()?;
        if catalog.get(&input.instrument).is_none() {
            return Err(scoring_error(ScoringError::UnknownInstrument(
                input.instrument,
            )));
        }
        let command = JournalCommand::SetMeasurementCadence {
            instrument: input.instrument.clone(),
            every_days: input.every_days,
        };
        let executed = self
            .aggregates
            .journal(
                participant.network.as_str(),
                participant.participant.as_str(),
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        // What the command asked is what the journal holds: set, already so, or (a
        // retry, same fingerprint) set by the original.
        Ok(CadenceAnswer {
            instrument: input.instrument,
            every_days: input.every_days,
            consistency_token: executed.version().to_string(),
        })
    }

    /// A completed measure: scored here from the answers alone (never from the
    /// client), recorded with its answers sealed; a safety concern alerts the
    /// facilitators of the member's groups in the same commit.
    pub async fn submit_measurement(
        &self,
        caller: &Caller,
        input: SubmitMeasurement,
    ) -> ApiResult<MeasurementAnswer> {
        let participant = &input.participant;
        self.facts
            .authorize_record(caller, Operation::SubmitMeasurement, participant)
            .await?;
        let (network, participant_id) = (
            participant.network.as_str(),
            participant.participant.as_str(),
        );
        let catalog = catalog()?;
        let scored = catalog
            .score(&input.instrument, &input.answers)
            .map_err(scoring_error)?;
        let alert = if scored.safety.is_empty() {
            Vec::new()
        } else {
            let mut facilitators = self.facts.facilitators_of(network, participant_id).await?;
            if facilitators.is_empty() {
                // Recorded all the same (the measure's safety concern, and its
                // integration event, say so); an operator should know no one was told.
                tracing::warn!(
                    network,
                    "a measure's safety concern has no facilitator to alert: the member is in no active group"
                );
            }
            facilitators.truncate(MAX_ALERTED);
            facilitators
        };
        let measurement_id = derived_id(
            &participant.to_string(),
            "measurement",
            &input.request.request_id,
        );
        let command = JournalCommand::RecordMeasurement {
            measurement_id: measurement_id.clone(),
            scored,
            answers: measurement_answers(&input.answers),
            alert,
            now: self.clock.now(),
        };
        let executed = self
            .aggregates
            .journal(
                network,
                participant_id,
                &input.request.meta(caller),
                command,
            )
            .await
            .map_err(command_error)?;
        let recorded = executed
            .events()
            .iter()
            .find_map(|event| match event {
                Event::MeasurementRecorded {
                    measurement_id: id,
                    instrument,
                    version,
                    answers,
                    scores,
                    safety,
                } if *id == measurement_id => Some((
                    instrument.clone(),
                    *version,
                    answers.clone(),
                    scores.clone(),
                    !safety.is_empty(),
                )),
                _ => None,
            })
            .ok_or_else(ApiError::request_id_reused)?;
        let (instrument, version, answers, scores, safety_concern) = recorded;
        let answers = self.opener(network, participant_id).await?.open(
            participant_id,
            field::MEASUREMENT,
            &answers,
        );
        Ok(MeasurementAnswer {
            measurement: MeasurementView {
                name: participant.measurement(id(&measurement_id)?),
                instrument,
                version,
                answers: crate::domain::journal::parse_measurement_answers(&answers),
                scores,
                safety_concern,
                submitted_at: executed
                    .committed_at()
                    .ok_or_else(ApiError::request_id_reused)?,
            },
            consistency_token: executed.version().to_string(),
        })
    }
}

/// Why a process manager's step did not run, as the process manager acts on it.
#[derive(Debug)]
pub(crate) enum StepError {
    /// The domain refused the step (it ran before, or no longer applies).
    Rejected(DomainError),
    /// The access table refused the caller: a bug in the service, never a reason to
    /// skip what the step stands for.
    Refused(String),
    /// The step cannot run as asked, now or ever: a stale etag, an id that is no
    /// subject.
    Invalid(String),
    /// The step fails the same way every time it is tried (over the event log's
    /// limit).
    Poison(String),
    /// The step is about a participant who has been forgotten: nothing more is
    /// recorded for them, now or ever.
    Forgotten,
    /// The event log could not run it now; a retry may.
    Transient(String),
}

impl fmt::Display for StepError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(reason) => reason.fmt(formatter),
            Self::Forgotten => formatter.write_str("the participant has been forgotten"),
            Self::Refused(error)
            | Self::Invalid(error)
            | Self::Poison(error)
            | Self::Transient(error) => formatter.write_str(error),
        }
    }
}

impl From<CommandError> for StepError {
    fn from(error: CommandError) -> Self {
        match error {
            ExecuteError::Rejected(reason) => Self::Rejected(reason),
            ExecuteError::EtagMismatch { .. } | ExecuteError::InvalidKey(_) => {
                Self::Invalid(error.to_string())
            }
            ExecuteError::Store(error @ StoreError::TooLarge { .. }) => {
                Self::Poison(error.to_string())
            }
            ExecuteError::Sealing(SealError::Forgotten) => Self::Forgotten,
            other => Self::Transient(other.to_string()),
        }
    }
}

/// A check-in a member made in a session, as SESSIONS recorded it.
pub(crate) struct SessionCheckIn {
    /// Derived from the SESSIONS commit that recorded it.
    pub check_in_id: String,
    pub session_id: String,
    pub mood: u32,
    pub craving: u32,
    pub text: String,
    /// The member's peer-visibility consent now.
    pub consent: Consent,
}

// The process managers' own steps. Each acts in the network of its caller (the
// process manager acting for the commit it follows) under a request id derived from
// what caused it.
impl Commands {
    fn allow(caller: &Caller, step: Step) -> Result<(), StepError> {
        access::step_rule(step)
            .check(caller, &Target::default())
            .map_err(|error| StepError::Refused(error.message))
    }

    async fn journal_step(
        &self,
        caller: &Caller,
        participant_id: &str,
        request_id: String,
        command: JournalCommand,
    ) -> Result<(), StepError> {
        self.aggregates
            .journal(
                &caller.network,
                participant_id,
                &circle_service::step_meta(caller, request_id),
                command,
            )
            .await?;
        Ok(())
    }

    /// A member's attendance of a session reaches their journal; `outcome` is `None`
    /// for an excused absence.
    pub(crate) async fn record_attendance(
        &self,
        caller: &Caller,
        participant_id: &str,
        session_id: &str,
        outcome: Option<bool>,
        request_id: String,
    ) -> Result<(), StepError> {
        Self::allow(caller, Step::RecordAttendance)?;
        let command = JournalCommand::RecordSessionAttendance {
            session_id: session_id.to_owned(),
            outcome,
        };
        self.journal_step(caller, participant_id, request_id, command)
            .await
    }

    /// A session check-in becomes a journal check-in, shared as widely as the
    /// member's consent allows.
    pub(crate) async fn submit_session_check_in(
        &self,
        caller: &Caller,
        participant_id: &str,
        check_in: SessionCheckIn,
        request_id: String,
    ) -> Result<(), StepError> {
        Self::allow(caller, Step::SubmitSessionCheckIn)?;
        let command = JournalCommand::SubmitCheckIn {
            check_in_id: check_in.check_in_id,
            goal_id: None,
            progress: if check_in.craving >= 7 {
                Progress::Struggling
            } else {
                Progress::OnTrack
            },
            mood: check_in.mood.min(10),
            craving: check_in.craving.min(10),
            text: check_in.text,
            visibility: widest_allowed(check_in.consent),
            session_id: Some(check_in.session_id),
            consent: check_in.consent,
        };
        self.journal_step(caller, participant_id, request_id, command)
            .await
    }

    /// A partnership ends for `reason` (a member left the group or withdrew consent).
    pub(crate) async fn end_partnership_for(
        &self,
        caller: &Caller,
        partnership_id: &str,
        reason: &str,
        request_id: String,
    ) -> Result<(), StepError> {
        Self::allow(caller, Step::EndPartnership)?;
        let command = PartnershipCommand::End {
            reason: reason.to_owned(),
        };
        self.aggregates
            .partnership(
                &caller.network,
                partnership_id,
                &circle_service::step_meta(caller, request_id),
                command,
            )
            .await?;
        Ok(())
    }

    /// The day milestones a member has reached by `now` are recorded.
    pub(crate) async fn record_day_milestones(
        &self,
        caller: &Caller,
        participant_id: &str,
        now: Time,
        request_id: String,
    ) -> Result<(), StepError> {
        Self::allow(caller, Step::RecordDayMilestones)?;
        self.journal_step(
            caller,
            participant_id,
            request_id,
            JournalCommand::RecordDayMilestones { now },
        )
        .await
    }

    /// A nudge the policy (`domain::nudges`) says is due is sent (the journal refuses
    /// a nudge id twice).
    pub(crate) async fn send_nudge(
        &self,
        caller: &Caller,
        participant_id: &str,
        nudge: DueNudge,
        request_id: String,
    ) -> Result<(), StepError> {
        Self::allow(caller, Step::SendNudge)?;
        let DueNudge {
            nudge_id,
            level,
            reason,
            goal_id,
            recipient_id,
            due_at,
            after,
        } = nudge;
        let command = JournalCommand::SendNudge {
            nudge_id,
            level,
            reason: reason.as_str().to_owned(),
            goal_id,
            recipient_id,
            due_at,
            after,
        };
        self.journal_step(caller, participant_id, request_id, command)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_about_a_forgotten_participant_is_told_apart_from_a_key_store_down() {
        assert!(matches!(
            StepError::from(CommandError::Sealing(SealError::Forgotten)),
            StepError::Forgotten
        ));
        assert!(matches!(
            StepError::from(CommandError::Sealing(SealError::Unavailable("down".into()))),
            StepError::Transient(_)
        ));
    }
}
