//! The gRPC edge of the sessions service: it reads requests into the application's
//! inputs (typed resource names, checked fields, every bad field at once), runs them
//! on [`crate::app::Commands`] (`write`) or [`crate::app::Queries`] (`read`), maps the
//! answers to protobuf (`wire`, shared by both) and errors to `google.rpc.Status`. It
//! decides no permission and holds no SQL and no event-log call.

mod read;
mod wire;
mod write;

use std::sync::Arc;

use circle_grpc::ApiError;
use circle_grpc::caller;
use circle_proto::sessions::v1 as pb;
use pb::sessions_service_server::SessionsService;
use tonic::{Request, Response, Status};

use crate::app::{Commands, Queries};

pub const ERROR_DOMAIN: &str = "circle.sessions";

pub struct SessionsApi {
    commands: Arc<Commands>,
    queries: Queries,
}

impl SessionsApi {
    pub fn new(commands: Arc<Commands>, queries: Queries) -> Self {
        Self { commands, queries }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn status(error: ApiError) -> Status {
    error.into_status(ERROR_DOMAIN)
}

#[tonic::async_trait]
impl SessionsService for SessionsApi {
    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        SessionsApi::list_sessions(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        SessionsApi::get_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn schedule_session(
        &self,
        request: Request<pb::ScheduleSessionRequest>,
    ) -> Result<Response<pb::ScheduleSessionResponse>, Status> {
        SessionsApi::schedule_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn reschedule_session(
        &self,
        request: Request<pb::RescheduleSessionRequest>,
    ) -> Result<Response<pb::RescheduleSessionResponse>, Status> {
        SessionsApi::reschedule_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_session(
        &self,
        request: Request<pb::CancelSessionRequest>,
    ) -> Result<Response<pb::CancelSessionResponse>, Status> {
        SessionsApi::cancel_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::StartSessionResponse>, Status> {
        SessionsApi::start_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        SessionsApi::close_session(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> Result<Response<pb::RecordAttendanceResponse>, Status> {
        SessionsApi::record_attendance(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn record_session_check_in(
        &self,
        request: Request<pb::RecordSessionCheckInRequest>,
    ) -> Result<Response<pb::RecordSessionCheckInResponse>, Status> {
        SessionsApi::record_session_check_in(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn write_shared_note(
        &self,
        request: Request<pb::WriteSharedNoteRequest>,
    ) -> Result<Response<pb::WriteSharedNoteResponse>, Status> {
        SessionsApi::write_shared_note(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn write_member_note(
        &self,
        request: Request<pb::WriteMemberNoteRequest>,
    ) -> Result<Response<pb::WriteMemberNoteResponse>, Status> {
        SessionsApi::write_member_note(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn sign_note(
        &self,
        request: Request<pb::SignNoteRequest>,
    ) -> Result<Response<pb::SignNoteResponse>, Status> {
        SessionsApi::sign_note(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn amend_note(
        &self,
        request: Request<pb::AmendNoteRequest>,
    ) -> Result<Response<pb::AmendNoteResponse>, Status> {
        SessionsApi::amend_note(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn list_unsigned_notes(
        &self,
        request: Request<pb::ListUnsignedNotesRequest>,
    ) -> Result<Response<pb::ListUnsignedNotesResponse>, Status> {
        SessionsApi::list_unsigned_notes(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn get_attendance_history(
        &self,
        request: Request<pb::GetAttendanceHistoryRequest>,
    ) -> Result<Response<pb::GetAttendanceHistoryResponse>, Status> {
        SessionsApi::get_attendance_history(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn export_billing(
        &self,
        request: Request<pb::ExportBillingRequest>,
    ) -> Result<Response<pb::ExportBillingResponse>, Status> {
        SessionsApi::export_billing(self, request)
            .await
            .map(Response::new)
            .map_err(status)
    }
}
