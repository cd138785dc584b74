//! The gRPC edge of the enrollment service. It translates protobuf to application
//! types and back and maps errors once (`ApiError::into_status`). Queries (`read`)
//! parse their requests into typed names and checked fields and call `app::Queries`,
//! which decides access from the service's table and reads. Commands (`write`) are
//! parsed the same way (`convert`: names, every bad field at once, domain values) and
//! call `app::Commands`, which decides access from the same table, loads and runs
//! them. Both answer with the application's views, mapped to protobuf once (`wire`).
//! The edge checks the table early, as far as a request's names show, so role
//! and scope are reported before bad fields; it holds no SQL and no event-store call.

mod convert;
mod read;
mod wire;
mod write;

use std::sync::Arc;

use circle_grpc::ApiError;
use circle_grpc::caller;
use circle_proto::enrollment::v1 as pb;
use pb::enrollment_service_server::EnrollmentService;
use tonic::{Request, Response, Status};

use crate::app::{Commands, Queries};

pub const ERROR_DOMAIN: &str = "circle.enrollment";

pub struct EnrollmentApi {
    commands: Arc<Commands>,
    queries: Arc<Queries>,
}

impl EnrollmentApi {
    pub fn new(commands: Arc<Commands>, queries: Arc<Queries>) -> Self {
        Self { commands, queries }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn status(error: ApiError) -> Status {
    error.into_status(ERROR_DOMAIN)
}

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    #[tracing::instrument(skip_all)]
    async fn create_clinic(
        &self,
        request: Request<pb::CreateClinicRequest>,
    ) -> Result<Response<pb::CreateClinicResponse>, Status> {
        EnrollmentApi::create_clinic(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn get_clinic(
        &self,
        request: Request<pb::GetClinicRequest>,
    ) -> Result<Response<pb::GetClinicResponse>, Status> {
        EnrollmentApi::get_clinic(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_clinics(
        &self,
        request: Request<pb::ListClinicsRequest>,
    ) -> Result<Response<pb::ListClinicsResponse>, Status> {
        EnrollmentApi::list_clinics(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn update_clinic(
        &self,
        request: Request<pb::UpdateClinicRequest>,
    ) -> Result<Response<pb::UpdateClinicResponse>, Status> {
        EnrollmentApi::update_clinic(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn archive_clinic(
        &self,
        request: Request<pb::ArchiveClinicRequest>,
    ) -> Result<Response<pb::ArchiveClinicResponse>, Status> {
        EnrollmentApi::archive_clinic(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        EnrollmentApi::create_group(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        EnrollmentApi::get_group(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        EnrollmentApi::list_groups(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::UpdateGroupResponse>, Status> {
        EnrollmentApi::update_group(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn archive_group(
        &self,
        request: Request<pb::ArchiveGroupRequest>,
    ) -> Result<Response<pb::ArchiveGroupResponse>, Status> {
        EnrollmentApi::archive_group(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn register_participant(
        &self,
        request: Request<pb::RegisterParticipantRequest>,
    ) -> Result<Response<pb::RegisterParticipantResponse>, Status> {
        EnrollmentApi::register_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn get_participant(
        &self,
        request: Request<pb::GetParticipantRequest>,
    ) -> Result<Response<pb::GetParticipantResponse>, Status> {
        EnrollmentApi::get_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn update_participant(
        &self,
        request: Request<pb::UpdateParticipantRequest>,
    ) -> Result<Response<pb::UpdateParticipantResponse>, Status> {
        EnrollmentApi::update_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        EnrollmentApi::record_consent(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn revoke_consent(
        &self,
        request: Request<pb::RevokeConsentRequest>,
    ) -> Result<Response<pb::RevokeConsentResponse>, Status> {
        EnrollmentApi::revoke_consent(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn forget_participant(
        &self,
        request: Request<pb::ForgetParticipantRequest>,
    ) -> Result<Response<pb::ForgetParticipantResponse>, Status> {
        EnrollmentApi::forget_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn enroll_participant(
        &self,
        request: Request<pb::EnrollParticipantRequest>,
    ) -> Result<Response<pb::EnrollParticipantResponse>, Status> {
        EnrollmentApi::enroll_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn accept_seat_offer(
        &self,
        request: Request<pb::AcceptSeatOfferRequest>,
    ) -> Result<Response<pb::AcceptSeatOfferResponse>, Status> {
        EnrollmentApi::accept_seat_offer(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn decline_seat_offer(
        &self,
        request: Request<pb::DeclineSeatOfferRequest>,
    ) -> Result<Response<pb::DeclineSeatOfferResponse>, Status> {
        EnrollmentApi::decline_seat_offer(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn transfer_participant(
        &self,
        request: Request<pb::TransferParticipantRequest>,
    ) -> Result<Response<pb::TransferParticipantResponse>, Status> {
        EnrollmentApi::transfer_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn hold_membership(
        &self,
        request: Request<pb::HoldMembershipRequest>,
    ) -> Result<Response<pb::HoldMembershipResponse>, Status> {
        EnrollmentApi::hold_membership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn resume_membership(
        &self,
        request: Request<pb::ResumeMembershipRequest>,
    ) -> Result<Response<pb::ResumeMembershipResponse>, Status> {
        EnrollmentApi::resume_membership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn discharge_participant(
        &self,
        request: Request<pb::DischargeParticipantRequest>,
    ) -> Result<Response<pb::DischargeParticipantResponse>, Status> {
        EnrollmentApi::discharge_participant(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn get_membership(
        &self,
        request: Request<pb::GetMembershipRequest>,
    ) -> Result<Response<pb::GetMembershipResponse>, Status> {
        EnrollmentApi::get_membership(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        EnrollmentApi::list_group_members(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_waitlist(
        &self,
        request: Request<pb::ListWaitlistRequest>,
    ) -> Result<Response<pb::ListWaitlistResponse>, Status> {
        EnrollmentApi::list_waitlist(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_participant_memberships(
        &self,
        request: Request<pb::ListParticipantMembershipsRequest>,
    ) -> Result<Response<pb::ListParticipantMembershipsResponse>, Status> {
        EnrollmentApi::list_participant_memberships(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn list_disclosures(
        &self,
        request: Request<pb::ListDisclosuresRequest>,
    ) -> Result<Response<pb::ListDisclosuresResponse>, Status> {
        EnrollmentApi::list_disclosures(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
    #[tracing::instrument(skip_all)]
    async fn search_open_seats(
        &self,
        request: Request<pb::SearchOpenSeatsRequest>,
    ) -> Result<Response<pb::SearchOpenSeatsResponse>, Status> {
        EnrollmentApi::search_open_seats(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
}
