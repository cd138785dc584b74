//! The gRPC edge of the accountability service: it translates protobuf to the
//! application's types and back and maps errors to gRPC, nothing else. `write` runs
//! commands, `read` answers queries and streams the group feed through
//! `app::Queries`, which authorizes them against `app::access` and reads the read
//! models.

mod read;
mod write;

use std::sync::Arc;

use circle_grpc::caller;
use circle_grpc::{ApiError, Caller};
use circle_proto::accountability::v1 as pb;
use circle_service::commit_meta as meta;
use pb::accountability_service_server::AccountabilityService;
use tonic::{Code, Request, Response, Status};

use crate::app::Queries;
use crate::app::queries::participant_name;
use crate::commands::{CommandError, Commands};
use crate::domain::DomainError;
use crate::domain::visibility::{Consent, Viewer};

pub const ERROR_DOMAIN: &str = "circle.accountability";

pub const PARTICIPANT: &[&str] = &["networks", "participants"];
pub const GOAL: &[&str] = &["networks", "participants", "goals"];
pub const CHECK_IN: &[&str] = &["networks", "participants", "check-ins"];
pub const GROUP: &[&str] = &["networks", "clinics", "groups"];
pub const CLINIC: &[&str] = &["networks", "clinics"];
pub const PARTNERSHIP: &[&str] = &["networks", "partnerships"];

#[derive(Clone)]
pub struct AccountabilityApi {
    commands: Arc<Commands>,
    /// The command side's one remaining read (`write.rs`), until it moves into `app/`.
    queries: Queries,
}

type ApiResult<T> = Result<T, ApiError>;

impl AccountabilityApi {
    pub fn new(commands: Arc<Commands>, queries: Queries) -> Self {
        Self { commands, queries }
    }

    // What the commands ask of the read models, answered by the application layer.

    async fn group_clinic(&self, network: &str, group_id: &str) -> ApiResult<Option<String>> {
        self.queries.group_clinic(network, group_id).await
    }

    async fn require_self_or_staff(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<Viewer> {
        self.queries
            .require_self_or_staff(caller, network, participant_id)
            .await
    }

    async fn peer_relation(
        &self,
        network: &str,
        viewer_id: &str,
        author_id: &str,
    ) -> ApiResult<Viewer> {
        self.queries
            .peer_relation(network, viewer_id, author_id)
            .await
    }

    async fn consent(&self, network: &str, participant_id: &str) -> ApiResult<Consent> {
        self.queries.consent(network, participant_id).await
    }
}

fn status(error: ApiError) -> Status {
    if error.code == Code::Internal {
        tracing::error!(reason = error.reason, message = %error.message, "internal error");
    }
    error.into_status(ERROR_DOMAIN)
}

fn domain_error(error: DomainError) -> ApiError {
    use DomainError as E;
    let (code, reason) = match &error {
        E::GoalExists => (Code::AlreadyExists, "GOAL_EXISTS"),
        E::AlreadyEncouraged => (Code::AlreadyExists, "ALREADY_ENCOURAGED"),
        E::PartnershipExists => (Code::AlreadyExists, "PARTNERSHIP_EXISTS"),
        E::GoalNotFound => (Code::NotFound, "GOAL_NOT_FOUND"),
        E::CheckInNotFound => (Code::NotFound, "CHECK_IN_NOT_FOUND"),
        E::PartnershipNotFound => (Code::NotFound, "PARTNERSHIP_NOT_FOUND"),
        E::GoalNotActive => (Code::FailedPrecondition, "GOAL_NOT_ACTIVE"),
        E::ConsentRequired => (Code::FailedPrecondition, "CONSENT_REQUIRED"),
        E::CannotSeeCheckIn => (Code::PermissionDenied, "CANNOT_SEE_CHECK_IN"),
        E::OwnCheckIn => (Code::InvalidArgument, "OWN_CHECK_IN"),
        E::NotEligibleForPartnership => (Code::FailedPrecondition, "NOT_ELIGIBLE_FOR_PARTNERSHIP"),
        E::NotTheInvitee => (Code::PermissionDenied, "NOT_THE_INVITEE"),
        E::NotProposed => (Code::FailedPrecondition, "PARTNERSHIP_NOT_PROPOSED"),
        E::SelfPartnership => (Code::InvalidArgument, "SELF_PARTNERSHIP"),
    };
    ApiError::new(code, reason, error.to_string())
}

/// Errors of a command: the shared mapping, with this service's domain table.
fn command_error(error: CommandError) -> ApiError {
    circle_service::errors::execute_error(error, domain_error)
}

#[tonic::async_trait]
impl AccountabilityService for AccountabilityApi {
    #[tracing::instrument(skip_all)]
    async fn set_goal(
        &self,
        request: Request<pb::SetGoalRequest>,
    ) -> Result<Response<pb::SetGoalResponse>, Status> {
        AccountabilityApi::set_goal(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn revise_goal(
        &self,
        request: Request<pb::ReviseGoalRequest>,
    ) -> Result<Response<pb::ReviseGoalResponse>, Status> {
        AccountabilityApi::revise_goal(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn complete_goal(
        &self,
        request: Request<pb::CompleteGoalRequest>,
    ) -> Result<Response<pb::CompleteGoalResponse>, Status> {
        AccountabilityApi::complete_goal(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn abandon_goal(
        &self,
        request: Request<pb::AbandonGoalRequest>,
    ) -> Result<Response<pb::AbandonGoalResponse>, Status> {
        AccountabilityApi::abandon_goal(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn submit_check_in(
        &self,
        request: Request<pb::SubmitCheckInRequest>,
    ) -> Result<Response<pb::SubmitCheckInResponse>, Status> {
        AccountabilityApi::submit_check_in(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn encourage(
        &self,
        request: Request<pb::EncourageRequest>,
    ) -> Result<Response<pb::EncourageResponse>, Status> {
        AccountabilityApi::encourage(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn report_setback(
        &self,
        request: Request<pb::ReportSetbackRequest>,
    ) -> Result<Response<pb::ReportSetbackResponse>, Status> {
        AccountabilityApi::report_setback(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn propose_partnership(
        &self,
        request: Request<pb::ProposePartnershipRequest>,
    ) -> Result<Response<pb::ProposePartnershipResponse>, Status> {
        AccountabilityApi::propose_partnership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn accept_partnership(
        &self,
        request: Request<pb::AcceptPartnershipRequest>,
    ) -> Result<Response<pb::AcceptPartnershipResponse>, Status> {
        AccountabilityApi::accept_partnership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn end_partnership(
        &self,
        request: Request<pb::EndPartnershipRequest>,
    ) -> Result<Response<pb::EndPartnershipResponse>, Status> {
        AccountabilityApi::end_partnership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn set_quiet_hours(
        &self,
        request: Request<pb::SetQuietHoursRequest>,
    ) -> Result<Response<pb::SetQuietHoursResponse>, Status> {
        AccountabilityApi::set_quiet_hours(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn get_group_board(
        &self,
        request: Request<pb::GetGroupBoardRequest>,
    ) -> Result<Response<pb::GetGroupBoardResponse>, Status> {
        AccountabilityApi::get_group_board(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn get_participant_timeline(
        &self,
        request: Request<pb::GetParticipantTimelineRequest>,
    ) -> Result<Response<pb::GetParticipantTimelineResponse>, Status> {
        AccountabilityApi::get_participant_timeline(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        AccountabilityApi::list_at_risk(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    type WatchGroupFeedStream = read::FeedStream;

    #[tracing::instrument(skip_all)]
    async fn watch_group_feed(
        &self,
        request: Request<pb::WatchGroupFeedRequest>,
    ) -> Result<Response<Self::WatchGroupFeedStream>, Status> {
        AccountabilityApi::watch_group_feed(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
}
