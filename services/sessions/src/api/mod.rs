//! The gRPC edge of the sessions service: `write` validates requests, resolves the
//! roster and the other members' names, and runs commands; `read` reads query requests
//! into the application's inputs, runs them on [`crate::app::Queries`] and maps the
//! answers to protobuf.

mod read;
mod write;

use std::sync::Arc;

use circle_grpc::caller;
use circle_grpc::{ApiError, Violations};
use circle_proto::sessions::v1 as pb;
use circle_service::commit_meta as meta;
use circle_service::errors::store_error;
use pb::sessions_service_server::SessionsService;
use tonic::{Code, Request, Response, Status};

use crate::app::Queries;
use crate::commands::{CommandError, Commands, Refusal};
use crate::domain::DomainError;

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

pub const GROUP: &[&str] = &["networks", "clinics", "groups"];
pub const SESSION: &[&str] = &["networks", "clinics", "groups", "sessions"];
pub const NOTE: &[&str] = &["networks", "clinics", "groups", "sessions", "notes"];
pub const PARTICIPANT: &[&str] = &["networks", "participants"];

pub fn session_name(network: &str, clinic: &str, group: &str, session: &str) -> String {
    format!("networks/{network}/clinics/{clinic}/groups/{group}/sessions/{session}")
}

pub fn note_name(session: &str, note_key: &str) -> String {
    if note_key.is_empty() {
        format!("{session}/notes/shared")
    } else {
        format!("{session}/notes/{note_key}")
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
        E::SessionExists => (Code::AlreadyExists, "SESSION_EXISTS"),
        E::SessionNotFound => (Code::NotFound, "SESSION_NOT_FOUND"),
        E::NoteNotFound => (Code::NotFound, "NOTE_NOT_FOUND"),
        E::SessionCancelled => (Code::FailedPrecondition, "SESSION_CANCELLED"),
        E::SessionNotStarted => (Code::FailedPrecondition, "SESSION_NOT_STARTED"),
        E::SessionAlreadyStarted => (Code::FailedPrecondition, "SESSION_ALREADY_STARTED"),
        E::SessionNotInProgress => (Code::FailedPrecondition, "SESSION_NOT_IN_PROGRESS"),
        E::NotOnRoster => (Code::FailedPrecondition, "NOT_ON_ROSTER"),
        E::MemberAbsent => (Code::FailedPrecondition, "MEMBER_ABSENT"),
        E::NoteSigned => (Code::FailedPrecondition, "NOTE_SIGNED"),
        E::NoteNotSigned => (Code::FailedPrecondition, "NOTE_NOT_SIGNED"),
        E::NoteAlreadySigned => (Code::FailedPrecondition, "NOTE_ALREADY_SIGNED"),
        E::MinutesOverLength { .. } | E::MinutesForAbsentee | E::NoMinutesForAttendee => {
            let mut bad = Violations::default();
            bad.add("minutes_attended", error.to_string());
            let mut api = bad.into_result().err().unwrap_or_else(ApiError::internal);
            api.reason = "INVALID_MINUTES";
            return api;
        }
        E::NamesAnotherMember { start, end } => {
            let mut bad = Violations::default();
            bad.add("text", error.to_string());
            let mut api = bad.into_result().err().unwrap_or_else(ApiError::internal);
            api.reason = "NAMES_ANOTHER_MEMBER";
            return api
                .with_metadata("span_start", start.to_string())
                .with_metadata("span_end", end.to_string());
        }
    };
    ApiError::new(code, reason, error.to_string())
}

/// Errors of a session command: the shared mapping, with the session's own refusals.
fn command_error(error: CommandError) -> ApiError {
    circle_service::errors::execute_error(error, |refusal| match refusal {
        Refusal::Domain(error) => domain_error(error),
        Refusal::WrongGroup => ApiError::new(
            Code::NotFound,
            "SESSION_NOT_FOUND",
            "no such session in this group",
        ),
    })
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
