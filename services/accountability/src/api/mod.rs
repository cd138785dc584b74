//! The gRPC edge of the accountability service. `write` runs commands, `read` answers
//! queries and streams the group feed. What a viewer may see is decided by
//! `domain::visibility`, with the viewer's relation resolved here.

mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use circle_grpc::caller;
use circle_grpc::host::Shutdown;
use circle_grpc::{ApiError, Caller, Role};
use circle_projection::ProjectionHandle;
use circle_proto::accountability::v1 as pb;
use circle_service::commit_meta as meta;
use circle_service::errors::database_error;
use pb::accountability_service_server::AccountabilityService;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};

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
pub const STAFF_MEMBER: &[&str] = &["networks", "staff"];

#[derive(Clone)]
pub struct AccountabilityApi {
    commands: Arc<Commands>,
    pool: PgPool,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
    /// Open feeds end when shutdown starts, so they never hold up the drain.
    shutdown: Shutdown,
}

type ApiResult<T> = Result<T, ApiError>;

impl AccountabilityApi {
    pub fn new(
        commands: Arc<Commands>,
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            commands,
            pool,
            read_model,
            read_your_writes_timeout,
            shutdown,
        }
    }

    async fn consistent_read(&self, token: &str) -> ApiResult<()> {
        circle_service::consistent_read(&self.read_model, self.read_your_writes_timeout, token)
            .await
    }

    /// The clinic a group belongs to, as the roster knows it.
    async fn group_clinic(&self, network: &str, group_id: &str) -> ApiResult<Option<String>> {
        sqlx::query_scalar("SELECT clinic_id FROM accountability_roster.groups WHERE network = $1 AND group_id = $2")
            .bind(network)
            .bind(group_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database_error)
    }

    /// The clinics of the groups a participant is active in.
    async fn clinics_of(&self, network: &str, participant_id: &str) -> ApiResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT g.clinic_id FROM accountability_roster.member_periods p
             JOIN accountability_roster.groups g ON g.network = p.network AND g.group_id = p.group_id
             WHERE p.network = $1 AND p.participant_id = $2 AND p.to_at IS NULL",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)
    }

    /// Staff may reach a participant when their role does: clinic-scoped roles need a
    /// clinic of one of the participant's groups.
    async fn staff_reaches(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<bool> {
        if !circle_grpc::roles::STAFF.contains(&caller.role) {
            return Ok(false);
        }
        if !circle_grpc::is_clinic_scoped(caller.role) {
            return Ok(true);
        }
        let clinics = self.clinics_of(network, participant_id).await?;
        Ok(clinics.iter().any(|clinic| caller.clinics.contains(clinic)))
    }

    /// The participant themselves (`Author`), or staff who reach them (`Staff`).
    async fn require_self_or_staff(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<Viewer> {
        if caller.role == Role::Participant && caller.actor_id == participant_id {
            return Ok(Viewer::Author);
        }
        if self.staff_reaches(caller, network, participant_id).await? {
            return Ok(Viewer::Staff);
        }
        Err(ApiError::new(
            Code::PermissionDenied,
            "NOT_YOUR_RECORD",
            "only the participant or their care team may do this",
        ))
    }

    /// How a caller relates to an author, for the visibility rules.
    async fn viewer(&self, caller: &Caller, network: &str, author_id: &str) -> ApiResult<Viewer> {
        if caller.role == Role::Participant {
            if caller.actor_id == author_id {
                return Ok(Viewer::Author);
            }
            return self
                .peer_relation(network, &caller.actor_id, author_id)
                .await;
        }
        Ok(if self.staff_reaches(caller, network, author_id).await? {
            Viewer::Staff
        } else {
            Viewer::Stranger
        })
    }

    /// Peers share an active group; partners also an active partnership.
    async fn peer_relation(
        &self,
        network: &str,
        viewer_id: &str,
        author_id: &str,
    ) -> ApiResult<Viewer> {
        let shared: Option<String> = sqlx::query_scalar(
            "SELECT a.group_id FROM accountability_roster.member_periods a
             JOIN accountability_roster.member_periods b ON b.network = a.network AND b.group_id = a.group_id
             WHERE a.network = $1 AND a.participant_id = $2 AND b.participant_id = $3 AND a.to_at IS NULL AND b.to_at IS NULL
             LIMIT 1",
        )
        .bind(network)
        .bind(viewer_id)
        .bind(author_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        if shared.is_none() {
            return Ok(Viewer::Stranger);
        }
        let partner: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM accountability.partnerships
             WHERE network = $1 AND state = 'active'
               AND ((proposer_id = $2 AND invitee_id = $3) OR (proposer_id = $3 AND invitee_id = $2)) LIMIT 1",
        )
        .bind(network)
        .bind(viewer_id)
        .bind(author_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(Viewer::Peer {
            partner: partner.is_some(),
        })
    }

    async fn consent(&self, network: &str, participant_id: &str) -> ApiResult<Consent> {
        let mut connection = self.pool.acquire().await.map_err(database_error)?;
        crate::process::consent_of(&mut connection, network, participant_id)
            .await
            .map_err(database_error)
    }

    /// How a viewer may call a participant: peers by first name or alias as the
    /// consent says (or not at all without it); staff and the person by first name.
    async fn display_name(
        &self,
        viewer: Viewer,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<String> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT given_name, display, alias FROM accountability_roster.people WHERE network = $1 AND participant_id = $2",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let (given, display, alias) = row.unwrap_or_default();
        Ok(match viewer {
            Viewer::Author | Viewer::Staff => given,
            Viewer::Peer { .. } => match display.as_str() {
                "alias" => alias,
                "first-name" => given,
                _ => "A group member".to_owned(),
            },
            Viewer::Stranger => String::new(),
        })
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

pub fn participant_name(network: &str, participant_id: &str) -> String {
    format!("networks/{network}/participants/{participant_id}")
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
