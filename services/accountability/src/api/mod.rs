//! The gRPC edge of the accountability service: it translates protobuf to the
//! application's types and back and maps errors to gRPC, nothing else. `write` reads
//! command requests into `app::Commands`' inputs, `read` query requests into
//! `app::Queries`'; the application authorizes each against `app::access` and runs
//! it.

mod read;
mod write;

use std::sync::Arc;

use circle_grpc::caller;
use circle_grpc::{ApiError, Violations};
use circle_proto::accountability::v1 as pb;
use pb::accountability_service_server::AccountabilityService;
use tonic::{Request, Response, Status};

use crate::app::{Commands, Queries};

pub const ERROR_DOMAIN: &str = "circle.accountability";

#[derive(Clone)]
pub struct AccountabilityApi {
    commands: Arc<Commands>,
    queries: Queries,
}

type ApiResult<T> = Result<T, ApiError>;

impl AccountabilityApi {
    pub fn new(commands: Arc<Commands>, queries: Queries) -> Self {
        Self { commands, queries }
    }
}

/// The longest instrument id a request may name (the catalog's are far shorter).
const MAX_INSTRUMENT_CHARS: usize = 32;

/// A request's instrument: an id of the catalog's form (the application says whether
/// it is one of the catalog's).
fn instrument_field(
    violations: &mut Violations,
    field: &str,
    instrument: &str,
    optional: bool,
) -> Option<String> {
    violations.check(
        field,
        if instrument.is_empty() && !optional {
            Err("must name an instrument, e.g. \"phq-9\"".to_owned())
        } else if instrument.chars().count() > MAX_INSTRUMENT_CHARS
            || !instrument
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            Err(format!(
                "must be an instrument id: at most {MAX_INSTRUMENT_CHARS} of a-z, 0-9 and '-'"
            ))
        } else {
            Ok(instrument.to_owned())
        },
    )
}

fn status(error: ApiError) -> Status {
    error.into_status(ERROR_DOMAIN)
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

    #[tracing::instrument(skip_all)]
    async fn list_my_nudges(
        &self,
        request: Request<pb::ListMyNudgesRequest>,
    ) -> Result<Response<pb::ListMyNudgesResponse>, Status> {
        AccountabilityApi::list_my_nudges(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn acknowledge_nudge(
        &self,
        request: Request<pb::AcknowledgeNudgeRequest>,
    ) -> Result<Response<pb::AcknowledgeNudgeResponse>, Status> {
        AccountabilityApi::acknowledge_nudge(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn record_nudge_delivery(
        &self,
        request: Request<pb::RecordNudgeDeliveryRequest>,
    ) -> Result<Response<pb::RecordNudgeDeliveryResponse>, Status> {
        AccountabilityApi::record_nudge_delivery(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn set_measurement_cadence(
        &self,
        request: Request<pb::SetMeasurementCadenceRequest>,
    ) -> Result<Response<pb::SetMeasurementCadenceResponse>, Status> {
        AccountabilityApi::set_measurement_cadence(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn submit_measurement(
        &self,
        request: Request<pb::SubmitMeasurementRequest>,
    ) -> Result<Response<pb::SubmitMeasurementResponse>, Status> {
        AccountabilityApi::submit_measurement(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn list_measurements(
        &self,
        request: Request<pb::ListMeasurementsRequest>,
    ) -> Result<Response<pb::ListMeasurementsResponse>, Status> {
        AccountabilityApi::list_measurements(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    type WatchIntegrationEventsStream = read::IntegrationEventStream;

    #[tracing::instrument(skip_all)]
    async fn watch_integration_events(
        &self,
        request: Request<pb::WatchIntegrationEventsRequest>,
    ) -> Result<Response<Self::WatchIntegrationEventsStream>, Status> {
        AccountabilityApi::watch_integration_events(self, request)
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
