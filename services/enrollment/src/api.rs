//! The gRPC edge of the enrollment service: wire requests are validated and turned
//! into domain commands here (all field errors at once), commands run through the
//! repositories, and queries read the projected tables.

use std::time::Duration;

use circle_eventstore::{
    AggregateKey, CommitMeta, ExecuteError, Executed, NewEvent, Repository, StoreError,
};
use circle_grpc::{ApiError, Caller, Role, Violations};
use circle_projection::{LagError, ProjectionHandle};
use circle_proto::enrollment::v1 as pb;
use pb::enrollment_service_server::EnrollmentService;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};

use crate::codec;
use crate::domain::{
    self, AdmissionMode, Clinic, Command, DomainError, Event, Group, GroupDetails, Participant,
    ParticipantProfile,
};

pub const ERROR_DOMAIN: &str = "circle.enrollment";
const MAX_CAPACITY: u32 = 50;

pub struct EnrollmentApi {
    clinics: Repository<Clinic>,
    groups: Repository<Group>,
    participants: Repository<Participant>,
    pool: PgPool,
    read_model: ProjectionHandle,
    read_your_writes_timeout: Duration,
}

impl EnrollmentApi {
    pub fn new(
        store: circle_eventstore::EventStore,
        pool: PgPool,
        read_model: ProjectionHandle,
        read_your_writes_timeout: Duration,
    ) -> Self {
        Self {
            clinics: Repository::new(store.clone()),
            groups: Repository::new(store.clone()),
            participants: Repository::new(store),
            pool,
            read_model,
            read_your_writes_timeout,
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn status(error: ApiError) -> Status {
    if error.code == Code::Internal {
        tracing::error!(reason = error.reason, message = %error.message, "internal error");
    }
    error.into_status(ERROR_DOMAIN)
}

fn domain_error(error: DomainError) -> ApiError {
    let (code, reason) = match error {
        DomainError::ClinicExists => (Code::AlreadyExists, "CLINIC_EXISTS"),
        DomainError::GroupExists => (Code::AlreadyExists, "GROUP_EXISTS"),
        DomainError::ParticipantExists => (Code::AlreadyExists, "PARTICIPANT_EXISTS"),
        DomainError::GroupNotFound => (Code::NotFound, "GROUP_NOT_FOUND"),
        DomainError::AlreadyActive => (Code::AlreadyExists, "ALREADY_ENROLLED"),
        DomainError::AlreadyWaitlisted => (Code::AlreadyExists, "ALREADY_WAITLISTED"),
        DomainError::WrongAggregate => return ApiError::internal(),
    };
    ApiError::new(code, reason, error.to_string())
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict { .. } => ApiError::new(
            Code::Aborted,
            "CONCURRENT_MODIFICATION",
            "the record changed concurrently; retry with the same request_id",
        ),
        StoreError::Unavailable(reason) => {
            tracing::warn!(%reason, "event log unavailable");
            ApiError::unavailable("the event log")
        }
        StoreError::UnsafeStream { .. } | StoreError::Corrupt { .. } => {
            tracing::error!(%error, "event log error");
            ApiError::internal()
        }
    }
}

fn execute_error(error: ExecuteError<ApiError>) -> ApiError {
    match error {
        ExecuteError::Rejected(error) => error,
        ExecuteError::Store(error) => store_error(error),
        ExecuteError::TooMuchContention { .. } => ApiError::new(
            Code::Aborted,
            "CONCURRENT_MODIFICATION",
            "the record is busy; retry with the same request_id",
        ),
    }
}

fn database_error(error: sqlx::Error) -> ApiError {
    tracing::warn!(%error, "read model query failed");
    ApiError::unavailable("the read model")
}

fn not_found(reason: &'static str, what: &str) -> ApiError {
    ApiError::new(Code::NotFound, reason, format!("{what} not found"))
}

fn request_id_reused() -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
        "this request_id was already used for a different request",
    )
}

/// Who may do what, checked before anything is looked up.
fn authorize(caller: &Caller, allowed: &[Role], clinic: Option<&str>) -> ApiResult<()> {
    if !allowed.contains(&caller.role) {
        return Err(ApiError::new(
            Code::PermissionDenied,
            "ROLE_NOT_ALLOWED",
            format!("the {} role may not do this", caller.role.as_str()),
        ));
    }
    let clinic_scoped = matches!(
        caller.role,
        Role::ClinicAdmin | Role::Facilitator | Role::IntakeCoordinator
    );
    if let Some(clinic) = clinic
        && clinic_scoped
        && !caller.clinics.iter().any(|scoped| scoped == clinic)
    {
        return Err(ApiError::new(
            Code::PermissionDenied,
            "CLINIC_OUT_OF_SCOPE",
            "the caller is not scoped to this clinic",
        ));
    }
    Ok(())
}

const ADMINS: &[Role] = &[Role::NetworkAdmin, Role::Service];
const CLINIC_ADMINS: &[Role] = &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Service];
const STAFF: &[Role] = &[
    Role::NetworkAdmin,
    Role::ClinicAdmin,
    Role::Facilitator,
    Role::IntakeCoordinator,
    Role::Service,
];

fn caller<T>(request: &Request<T>) -> ApiResult<Caller> {
    Ok(Caller::from_metadata(request.metadata())?)
}

fn meta(caller: &Caller, request_id: String) -> CommitMeta {
    CommitMeta {
        request_id,
        actor_role: caller.role.as_str().to_owned(),
        actor_id: caller.actor_id.clone(),
    }
}

fn key(network: &str, aggregate_type: &'static str, id: &str) -> ApiResult<AggregateKey> {
    AggregateKey::new(network, aggregate_type, id).map_err(|_| ApiError::internal())
}

/// Resource id: the client's, or one derived from the request id so that a retry of a
/// create without an id lands on the same record.
fn resource_id(
    violations: &mut Violations,
    field: &str,
    given: &str,
    network: &str,
    request_id: &str,
) -> String {
    if given.is_empty() {
        let seed = format!("{network}/{field}/{request_id}");
        return uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string();
    }
    violations.check(field, circle_grpc::check_id(given));
    given.to_owned()
}

fn text(value: &str, max_chars: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

fn time_zone(value: &str) -> Result<String, String> {
    let well_formed = !value.is_empty()
        && value.len() <= 64
        && value.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'+')
        })
        && value.as_bytes()[0].is_ascii_uppercase();
    if well_formed {
        Ok(value.to_owned())
    } else {
        Err("must be an IANA time zone such as America/Chicago".into())
    }
}

fn slug(value: &str) -> Result<String, String> {
    circle_grpc::check_id(value).map(|()| value.to_owned())
}

fn parse(
    violations: &mut Violations,
    field: &str,
    name: &str,
    collections: &[&str],
) -> Option<Vec<String>> {
    violations.check(field, circle_grpc::parse_name(name, collections))
}

fn timestamp(commit: &circle_eventstore::StoredCommit) -> Option<prost_types::Timestamp> {
    commit.commit.committed_at
}

fn clinic_name(network: &str, clinic: &str) -> String {
    format!("networks/{network}/clinics/{clinic}")
}

fn group_name(network: &str, clinic: &str, group: &str) -> String {
    format!("networks/{network}/clinics/{clinic}/groups/{group}")
}

fn participant_name(network: &str, participant: &str) -> String {
    format!("networks/{network}/participants/{participant}")
}

fn encode_all(events: Vec<Event>) -> Vec<NewEvent> {
    events.iter().map(codec::encode).collect()
}

impl EnrollmentApi {
    /// Waits for the read model to include a write the client made, if it says so.
    async fn consistent_read(&self, token: &str) -> ApiResult<()> {
        let mut violations = Violations::default();
        let wanted = violations
            .check("consistency_token", circle_grpc::consistency_token(token))
            .flatten();
        violations.into_result()?;
        let Some(wanted) = wanted else {
            return Ok(());
        };
        self.read_model
            .wait_for(wanted, self.read_your_writes_timeout)
            .await
            .map_err(|error| match error {
                LagError::NotYet { .. } => ApiError::new(
                    Code::Unavailable,
                    "READ_MODEL_BEHIND",
                    "the read model has not caught up with this write yet; retry shortly",
                ),
                LagError::Database(_) => ApiError::unavailable("the read model"),
            })
    }

    async fn clinic_exists(&self, network: &str, clinic: &str) -> ApiResult<bool> {
        let snapshot = self
            .clinics
            .load(&key(network, "clinic", clinic)?)
            .await
            .map_err(store_error)?;
        Ok(snapshot.state.created.is_some())
    }

    async fn create_clinic(
        &self,
        request: Request<pb::CreateClinicRequest>,
    ) -> ApiResult<pb::CreateClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let parent = parse(&mut violations, "parent", &request.parent, &["networks"]);
        if let Some(ids) = &parent {
            caller.require_network(&ids[0], &request.parent)?;
        }
        authorize(&caller, ADMINS, None)?;
        let request_id =
            violations.check("request_id", circle_grpc::request_id(&request.request_id));
        let clinic = request.clinic.unwrap_or_default();
        let display_name = violations.check("clinic.display_name", text(&clinic.display_name, 200));
        let zone = violations.check("clinic.time_zone", time_zone(&clinic.time_zone));
        let network = caller.network.clone();
        let clinic_id = resource_id(
            &mut violations,
            "clinic_id",
            &request.clinic_id,
            &network,
            request_id.as_deref().unwrap_or_default(),
        );
        violations.into_result()?;
        let (Some(request_id), Some(display_name), Some(zone)) = (request_id, display_name, zone)
        else {
            return Err(ApiError::internal());
        };
        let command = Command::CreateClinic {
            display_name,
            time_zone: zone,
        };
        let executed = self
            .clinics
            .execute(
                &key(&network, "clinic", &clinic_id)?,
                &meta(&caller, request_id),
                |snapshot| {
                    domain::decide_clinic(&snapshot.state, command.clone())
                        .map(encode_all)
                        .map_err(domain_error)
                },
            )
            .await
            .map_err(execute_error)?;
        let commit = executed.commit();
        let events = codec::decode_commit(commit).map_err(|_| ApiError::internal())?;
        let Some(Event::ClinicCreated {
            display_name,
            time_zone,
        }) = events.into_iter().next()
        else {
            return Err(request_id_reused());
        };
        Ok(pb::CreateClinicResponse {
            clinic: Some(pb::Clinic {
                name: clinic_name(&network, &clinic_id),
                display_name,
                time_zone,
                etag: commit.sequence.to_string(),
            }),
            consistency_token: commit.sequence.to_string(),
        })
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> ApiResult<pb::CreateGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let parent = parse(
            &mut violations,
            "parent",
            &request.parent,
            &["networks", "clinics"],
        );
        if let Some(ids) = &parent {
            caller.require_network(&ids[0], &request.parent)?;
        }
        authorize(
            &caller,
            CLINIC_ADMINS,
            parent.as_ref().map(|ids| ids[1].as_str()),
        )?;
        let request_id =
            violations.check("request_id", circle_grpc::request_id(&request.request_id));
        let group = request.group.unwrap_or_default();
        let display_name = violations.check("group.display_name", text(&group.display_name, 200));
        let modality = violations.check("group.modality", slug(&group.modality));
        let level_of_care = violations.check("group.level_of_care", slug(&group.level_of_care));
        let capacity = violations.check(
            "group.capacity",
            if (1..=MAX_CAPACITY).contains(&group.capacity) {
                Ok(group.capacity)
            } else {
                Err(format!("must be between 1 and {MAX_CAPACITY}"))
            },
        );
        let admission_mode = violations.check(
            "group.admission_mode",
            match pb::AdmissionMode::try_from(group.admission_mode) {
                Ok(pb::AdmissionMode::Unspecified | pb::AdmissionMode::Rolling) => {
                    Ok(AdmissionMode::Rolling)
                }
                Ok(pb::AdmissionMode::Closed) => Ok(AdmissionMode::Closed),
                Err(_) => Err("unknown admission mode".to_owned()),
            },
        );
        let network = caller.network.clone();
        let group_id = resource_id(
            &mut violations,
            "group_id",
            &request.group_id,
            &network,
            request_id.as_deref().unwrap_or_default(),
        );
        violations.into_result()?;
        let (
            Some(ids),
            Some(request_id),
            Some(display_name),
            Some(modality),
            Some(level_of_care),
            Some(capacity),
            Some(admission_mode),
        ) = (
            parent,
            request_id,
            display_name,
            modality,
            level_of_care,
            capacity,
            admission_mode,
        )
        else {
            return Err(ApiError::internal());
        };
        let clinic_id = ids[1].clone();
        if !self.clinic_exists(&network, &clinic_id).await? {
            return Err(not_found("CLINIC_NOT_FOUND", &request.parent));
        }
        let details = GroupDetails {
            clinic_id: clinic_id.clone(),
            display_name,
            modality,
            level_of_care,
            capacity,
            admission_mode,
        };
        let executed = self
            .groups
            .execute(
                &key(&network, "group", &group_id)?,
                &meta(&caller, request_id),
                |snapshot| {
                    domain::decide_group(&snapshot.state, Command::CreateGroup(details.clone()))
                        .map(encode_all)
                        .map_err(domain_error)
                },
            )
            .await
            .map_err(execute_error)?;
        let commit = executed.commit();
        let events = codec::decode_commit(commit).map_err(|_| ApiError::internal())?;
        let Some(Event::GroupCreated(details)) = events.into_iter().next() else {
            return Err(request_id_reused());
        };
        Ok(pb::CreateGroupResponse {
            group: Some(pb::Group {
                name: group_name(&network, &details.clinic_id, &group_id),
                display_name: details.display_name,
                modality: details.modality,
                level_of_care: details.level_of_care,
                capacity: details.capacity,
                admission_mode: codec::admission_to_wire(details.admission_mode) as i32,
                active_member_count: 0,
                waitlist_count: 0,
                etag: commit.sequence.to_string(),
            }),
            consistency_token: commit.sequence.to_string(),
        })
    }

    async fn register_participant(
        &self,
        request: Request<pb::RegisterParticipantRequest>,
    ) -> ApiResult<pb::RegisterParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let parent = parse(&mut violations, "parent", &request.parent, &["networks"]);
        if let Some(ids) = &parent {
            caller.require_network(&ids[0], &request.parent)?;
        }
        let participant = request.participant.unwrap_or_default();
        let home_clinic = parse(
            &mut violations,
            "participant.home_clinic",
            &participant.home_clinic,
            &["networks", "clinics"],
        );
        if let Some(ids) = &home_clinic {
            caller.require_network(&ids[0], &participant.home_clinic)?;
        }
        authorize(
            &caller,
            STAFF,
            home_clinic.as_ref().map(|ids| ids[1].as_str()),
        )?;
        let request_id =
            violations.check("request_id", circle_grpc::request_id(&request.request_id));
        let given_name =
            violations.check("participant.given_name", text(&participant.given_name, 100));
        let family_name = violations.check(
            "participant.family_name",
            text(&participant.family_name, 100),
        );
        let network = caller.network.clone();
        let participant_id = resource_id(
            &mut violations,
            "participant_id",
            &request.participant_id,
            &network,
            request_id.as_deref().unwrap_or_default(),
        );
        violations.into_result()?;
        let (Some(home_clinic), Some(request_id), Some(given_name), Some(family_name)) =
            (home_clinic, request_id, given_name, family_name)
        else {
            return Err(ApiError::internal());
        };
        let home_clinic_id = home_clinic[1].clone();
        if !self.clinic_exists(&network, &home_clinic_id).await? {
            return Err(not_found("CLINIC_NOT_FOUND", &participant.home_clinic));
        }
        let command = Command::RegisterParticipant {
            home_clinic_id,
            profile: ParticipantProfile {
                given_name,
                family_name,
            },
        };
        let executed = self
            .participants
            .execute(
                &key(&network, "participant", &participant_id)?,
                &meta(&caller, request_id),
                |snapshot| {
                    domain::decide_participant(&snapshot.state, command.clone())
                        .map(encode_all)
                        .map_err(domain_error)
                },
            )
            .await
            .map_err(execute_error)?;
        let commit = executed.commit();
        let events = codec::decode_commit(commit).map_err(|_| ApiError::internal())?;
        let Some(Event::ParticipantRegistered {
            home_clinic_id,
            profile,
        }) = events.into_iter().next()
        else {
            return Err(request_id_reused());
        };
        Ok(pb::RegisterParticipantResponse {
            participant: Some(pb::Participant {
                name: participant_name(&network, &participant_id),
                home_clinic: clinic_name(&network, &home_clinic_id),
                given_name: profile.given_name,
                family_name: profile.family_name,
                etag: commit.sequence.to_string(),
            }),
            consistency_token: commit.sequence.to_string(),
        })
    }

    async fn enroll_participant(
        &self,
        request: Request<pb::EnrollParticipantRequest>,
    ) -> ApiResult<pb::EnrollParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let group = parse(
            &mut violations,
            "parent",
            &request.parent,
            &["networks", "clinics", "groups"],
        );
        if let Some(ids) = &group {
            caller.require_network(&ids[0], &request.parent)?;
        }
        let participant = parse(
            &mut violations,
            "participant",
            &request.participant,
            &["networks", "participants"],
        );
        if let Some(ids) = &participant {
            caller.require_network(&ids[0], &request.participant)?;
        }
        authorize(&caller, STAFF, group.as_ref().map(|ids| ids[1].as_str()))?;
        let request_id =
            violations.check("request_id", circle_grpc::request_id(&request.request_id));
        let expected_etag = violations
            .check("etag", circle_grpc::etag(&request.etag))
            .flatten();
        violations.into_result()?;
        let (Some(group), Some(participant), Some(request_id)) = (group, participant, request_id)
        else {
            return Err(ApiError::internal());
        };
        let network = caller.network.clone();
        let (clinic_id, group_id, participant_id) =
            (group[1].clone(), group[2].clone(), participant[1].clone());
        let registered = self
            .participants
            .load(&key(&network, "participant", &participant_id)?)
            .await
            .map_err(store_error)?;
        if registered.state.home_clinic_id.is_none() {
            return Err(not_found("PARTICIPANT_NOT_FOUND", &request.participant));
        }
        let executed = self
            .groups
            .execute(
                &key(&network, "group", &group_id)?,
                &meta(&caller, request_id),
                |snapshot| {
                    let details = snapshot.state.details.as_ref();
                    if details.is_none_or(|details| details.clinic_id != clinic_id) {
                        return Err(not_found("GROUP_NOT_FOUND", &request.parent));
                    }
                    if let Some(expected) = expected_etag
                        && expected != snapshot.version
                    {
                        return Err(ApiError::new(
                            Code::Aborted,
                            "ETAG_MISMATCH",
                            "the group changed since the given etag; read it again",
                        )
                        .with_metadata("current_etag", snapshot.version.to_string()));
                    }
                    domain::decide_group(
                        &snapshot.state,
                        Command::Enroll {
                            participant_id: participant_id.clone(),
                        },
                    )
                    .map(encode_all)
                    .map_err(domain_error)
                },
            )
            .await
            .map_err(execute_error)?;
        let commit = executed.commit();
        let events = codec::decode_commit(commit).map_err(|_| ApiError::internal())?;
        let (state, position) = match events.first() {
            Some(Event::MemberAdmitted {
                participant_id: admitted,
            }) if *admitted == participant_id => (pb::MembershipState::Active, 0),
            Some(Event::MemberWaitlisted {
                participant_id: waiting,
                position,
            }) if *waiting == participant_id => (pb::MembershipState::Waitlisted, *position),
            _ => return Err(request_id_reused()),
        };
        if let Executed::Committed { .. } = executed {
            tracing::info!(
                version = commit.sequence,
                state = state.as_str_name(),
                "enrolled"
            );
        }
        Ok(pb::EnrollParticipantResponse {
            membership: Some(pb::Membership {
                name: format!(
                    "{}/memberships/{participant_id}",
                    group_name(&network, &clinic_id, &group_id)
                ),
                participant: participant_name(&network, &participant_id),
                state: state as i32,
                waitlist_position: position,
                since: timestamp(commit),
            }),
            etag: commit.sequence.to_string(),
            consistency_token: commit.sequence.to_string(),
        })
    }

    /// Parses and authorizes a group name for a query, then finds the group's row.
    async fn group_for_query(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
        token: &str,
    ) -> ApiResult<(Vec<String>, GroupRow)> {
        let mut violations = Violations::default();
        let ids = parse(
            &mut violations,
            field,
            name,
            &["networks", "clinics", "groups"],
        );
        if let Some(ids) = &ids {
            caller.require_network(&ids[0], name)?;
        }
        authorize(caller, STAFF, ids.as_ref().map(|ids| ids[1].as_str()))?;
        violations.into_result()?;
        let Some(ids) = ids else {
            return Err(ApiError::internal());
        };
        self.consistent_read(token).await?;
        let row: Option<GroupRow> = sqlx::query_as(
            "SELECT display_name, modality, level_of_care, capacity, admission_mode,
                    active_count, waitlist_count, version
             FROM enrollment.groups WHERE network = $1 AND group_id = $2 AND clinic_id = $3",
        )
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let row = row.ok_or_else(|| not_found("GROUP_NOT_FOUND", name))?;
        Ok((ids, row))
    }

    async fn memberships(
        &self,
        request_parent: &str,
        ids: &[String],
        state: &str,
        page_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<pb::Membership>, String)> {
        let (size, offset) =
            circle_grpc::page(page_size, page_token).map_err(|(field, description)| {
                let mut violations = Violations::default();
                violations.add(field, description);
                violations
                    .into_result()
                    .err()
                    .unwrap_or_else(ApiError::internal)
            })?;
        let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT participant_id, since FROM enrollment.memberships
             WHERE network = $1 AND group_id = $2 AND state = $3
             ORDER BY arrival, participant_id LIMIT $4 OFFSET $5",
        )
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(state)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let waitlisted = state == "waitlisted";
        let next = circle_grpc::next_page_token(offset, size, rows.len());
        let memberships = rows
            .into_iter()
            .enumerate()
            .map(|(index, (participant_id, since))| pb::Membership {
                name: format!("{request_parent}/memberships/{participant_id}"),
                participant: participant_name(&ids[0], &participant_id),
                state: if waitlisted {
                    pb::MembershipState::Waitlisted
                } else {
                    pb::MembershipState::Active
                } as i32,
                waitlist_position: if waitlisted {
                    (offset as u32) + index as u32 + 1
                } else {
                    0
                },
                since: Some(prost_types::Timestamp {
                    seconds: since.timestamp(),
                    nanos: since.timestamp_subsec_nanos() as i32,
                }),
            })
            .collect();
        Ok((memberships, next))
    }
}

/// display_name, modality, level_of_care, capacity, admission_mode, active_count,
/// waitlist_count, version
type GroupRow = (String, String, String, i32, String, i32, i32, i64);

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    #[tracing::instrument(skip_all)]
    async fn create_clinic(
        &self,
        request: Request<pb::CreateClinicRequest>,
    ) -> Result<Response<pb::CreateClinicResponse>, Status> {
        self.create_clinic(request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        self.create_group(request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn register_participant(
        &self,
        request: Request<pb::RegisterParticipantRequest>,
    ) -> Result<Response<pb::RegisterParticipantResponse>, Status> {
        self.register_participant(request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn enroll_participant(
        &self,
        request: Request<pb::EnrollParticipantRequest>,
    ) -> Result<Response<pb::EnrollParticipantResponse>, Status> {
        self.enroll_participant(request)
            .await
            .map(Response::new)
            .map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        let result = async {
            let caller = caller(&request)?;
            let request = request.into_inner();
            let (ids, row) = self
                .group_for_query(&caller, "name", &request.name, &request.consistency_token)
                .await?;
            let (
                display_name,
                modality,
                level_of_care,
                capacity,
                admission_mode,
                active_count,
                waitlist_count,
                version,
            ) = row;
            Ok(pb::GetGroupResponse {
                group: Some(pb::Group {
                    name: group_name(&ids[0], &ids[1], &ids[2]),
                    display_name,
                    modality,
                    level_of_care,
                    capacity: capacity.max(0) as u32,
                    admission_mode: if admission_mode == "closed" {
                        pb::AdmissionMode::Closed
                    } else {
                        pb::AdmissionMode::Rolling
                    } as i32,
                    active_member_count: active_count.max(0) as u32,
                    waitlist_count: waitlist_count.max(0) as u32,
                    etag: version.to_string(),
                }),
            })
        };
        result.await.map(Response::new).map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let result = async {
            let caller = caller(&request)?;
            let request = request.into_inner();
            let (ids, _) = self
                .group_for_query(
                    &caller,
                    "parent",
                    &request.parent,
                    &request.consistency_token,
                )
                .await?;
            let (memberships, next_page_token) = self
                .memberships(
                    &request.parent,
                    &ids,
                    "active",
                    request.page_size,
                    &request.page_token,
                )
                .await?;
            Ok(pb::ListGroupMembersResponse {
                memberships,
                next_page_token,
            })
        };
        result.await.map(Response::new).map_err(status)
    }

    #[tracing::instrument(skip_all)]
    async fn list_waitlist(
        &self,
        request: Request<pb::ListWaitlistRequest>,
    ) -> Result<Response<pb::ListWaitlistResponse>, Status> {
        let result = async {
            let caller = caller(&request)?;
            let request = request.into_inner();
            let (ids, _) = self
                .group_for_query(
                    &caller,
                    "parent",
                    &request.parent,
                    &request.consistency_token,
                )
                .await?;
            let (memberships, next_page_token) = self
                .memberships(
                    &request.parent,
                    &ids,
                    "waitlisted",
                    request.page_size,
                    &request.page_token,
                )
                .await?;
            Ok(pb::ListWaitlistResponse {
                memberships,
                next_page_token,
            })
        };
        result.await.map(Response::new).map_err(status)
    }
}
