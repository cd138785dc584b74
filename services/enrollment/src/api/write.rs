//! Commands: validate, authorize, resolve what the command needs from elsewhere, run
//! it, and answer from the commit (so a retry gets the original answer).

use circle_grpc::{ApiError, Caller, Violations};
use circle_proto::enrollment::v1 as pb;
use circle_service::Fingerprint;
use tonic::{Code, Request};

use super::convert::{self, CLINIC, CONSENT, GROUP, MEMBERSHIP, NETWORK, PARTICIPANT, owned};
use super::{
    ADMINS, ApiResult, CLINIC_ADMINS, EnrollmentApi, OVERRIDERS, STAFF, authorize,
    authorize_self_or_staff, caller, command_error, meta, request_id_reused,
};
use crate::codec;
use crate::domain::{
    ClinicCommand, GroupChanges, GroupCommand, GroupDetails, ParticipantCommand, TransferRef,
};

fn etag(violations: &mut Violations, field: &str, value: &str) -> Option<u64> {
    violations.check(field, circle_grpc::etag(value)).flatten()
}

fn paths(
    violations: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Vec<String> {
    let paths = mask.map(|mask| mask.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        violations.add(
            "update_mask",
            format!("must list the fields to change: {}", allowed.join(", ")),
        );
    }
    for path in &paths {
        if !allowed.contains(&path.as_str()) {
            violations.add(
                "update_mask",
                format!("{path} cannot be updated; allowed: {}", allowed.join(", ")),
            );
        }
    }
    paths
}

fn version_and_commit<A: circle_eventstore::Aggregate>(
    executed: &circle_eventstore::Executed<A>,
) -> (u64, String) {
    let version = executed.version();
    (version, version.to_string())
}

impl EnrollmentApi {
    pub(super) async fn create_clinic(
        &self,
        request: Request<pb::CreateClinicRequest>,
    ) -> ApiResult<pb::CreateClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        owned(&caller, &mut violations, "parent", &request.parent, NETWORK)?;
        authorize(&caller, ADMINS, &[])?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let clinic = request.clinic.unwrap_or_default();
        let display_name = violations.check(
            "clinic.display_name",
            convert::text(&clinic.display_name, 200),
        );
        let time_zone = violations.check(
            "clinic.time_zone",
            convert::time_zone_name(&clinic.time_zone),
        );
        let network = caller.network.clone();
        let clinic_id = convert::resource_id(
            &mut violations,
            "clinic_id",
            &request.clinic_id,
            &network,
            &request_id,
        );
        violations.into_result()?;
        let (Some(display_name), Some(time_zone)) = (display_name, time_zone) else {
            return Err(ApiError::internal());
        };
        let executed = self
            .commands
            .clinic(
                &network,
                &clinic_id,
                &meta(&caller, request_id, fingerprint),
                None,
                ClinicCommand::Create {
                    display_name,
                    time_zone,
                },
            )
            .await
            .map_err(command_error)?;
        let Some(commit) = executed.commit() else {
            return Err(ApiError::internal());
        };
        Ok(pb::CreateClinicResponse {
            clinic: Some(convert::clinic_view(
                &network,
                &clinic_id,
                executed.state(),
                commit.sequence,
            )),
            consistency_token: commit.sequence.to_string(),
        })
    }

    pub(super) async fn update_clinic(
        &self,
        request: Request<pb::UpdateClinicRequest>,
    ) -> ApiResult<pb::UpdateClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let clinic = request.clinic.unwrap_or_default();
        let mut violations = Violations::default();
        let ids = owned(
            &caller,
            &mut violations,
            "clinic.name",
            &clinic.name,
            CLINIC,
        )?;
        authorize(&caller, ADMINS, &[])?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "clinic.etag", &clinic.etag);
        let paths = paths(
            &mut violations,
            request.update_mask.as_ref(),
            &["display_name", "time_zone"],
        );
        let display_name = if paths.iter().any(|path| path == "display_name") {
            violations.check(
                "clinic.display_name",
                convert::text(&clinic.display_name, 200),
            )
        } else {
            None
        };
        let time_zone = if paths.iter().any(|path| path == "time_zone") {
            violations.check(
                "clinic.time_zone",
                convert::time_zone_name(&clinic.time_zone),
            )
        } else {
            None
        };
        let ids = violations.finish(ids)?;
        let executed = self
            .commands
            .clinic(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                etag,
                ClinicCommand::Update {
                    display_name,
                    time_zone,
                },
            )
            .await
            .map_err(command_error)?;
        let (version, token) = version_and_commit(&executed);
        Ok(pb::UpdateClinicResponse {
            clinic: Some(convert::clinic_view(
                &ids[0],
                &ids[1],
                executed.state(),
                version,
            )),
            consistency_token: token,
        })
    }

    pub(super) async fn archive_clinic(
        &self,
        request: Request<pb::ArchiveClinicRequest>,
    ) -> ApiResult<pb::ArchiveClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, CLINIC)?;
        authorize(&caller, ADMINS, &[])?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        let ids = violations.finish(ids)?;
        // Best effort on the read model: a clinic with open groups is not archived.
        let open_groups = self.queries.open_groups_of_clinic(&ids[0], &ids[1]).await?;
        if open_groups > 0 {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                "CLINIC_HAS_GROUPS",
                "archive the clinic's groups first",
            ));
        }
        let executed = self
            .commands
            .clinic(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                etag,
                ClinicCommand::Archive,
            )
            .await
            .map_err(command_error)?;
        let (version, token) = version_and_commit(&executed);
        Ok(pb::ArchiveClinicResponse {
            clinic: Some(convert::clinic_view(
                &ids[0],
                &ids[1],
                executed.state(),
                version,
            )),
            consistency_token: token,
        })
    }

    pub(super) async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> ApiResult<pb::CreateGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let parent = owned(&caller, &mut violations, "parent", &request.parent, CLINIC)?;
        let scope: Vec<&str> = parent.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, CLINIC_ADMINS, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let group = request.group.unwrap_or_default();
        let display_name = violations.check(
            "group.display_name",
            convert::text(&group.display_name, 200),
        );
        let modality = violations.check("group.modality", convert::slug(&group.modality));
        let level_of_care =
            violations.check("group.level_of_care", convert::slug(&group.level_of_care));
        let capacity = violations.check("group.capacity", convert::capacity(group.capacity));
        let admission_mode = violations.check(
            "group.admission_mode",
            convert::admission_mode(group.admission_mode),
        );
        let facilitators =
            convert::facilitators(&mut violations, "group.facilitators", &group.facilitators);
        let today = self.commands.clock.now().date_naive();
        let schedule = group
            .schedule
            .as_ref()
            .map(|schedule| convert::schedule(&mut violations, "group.schedule", schedule, today));
        let network = caller.network.clone();
        let group_id = convert::resource_id(
            &mut violations,
            "group_id",
            &request.group_id,
            &network,
            &request_id,
        );
        violations.into_result()?;
        let (
            Some(parent),
            Some(display_name),
            Some(modality),
            Some(level_of_care),
            Some(capacity),
            Some(admission_mode),
        ) = (
            parent,
            display_name,
            modality,
            level_of_care,
            capacity,
            admission_mode,
        )
        else {
            return Err(ApiError::internal());
        };
        let clinic_id = parent[1].clone();
        let clinic = self
            .commands
            .load_clinic(&network, &clinic_id)
            .await
            .map_err(command_error)?;
        crate::domain::clinic::require_open(&clinic).map_err(super::domain_error)?;
        let details = GroupDetails {
            clinic_id,
            display_name,
            modality,
            level_of_care,
            capacity,
            admission_mode,
            time_zone: clinic.time_zone.clone(),
            facilitators,
            schedule: schedule.flatten(),
        };
        let executed = self
            .commands
            .group(
                &network,
                None,
                &group_id,
                &meta(&caller, request_id, fingerprint),
                None,
                GroupCommand::Create(details),
            )
            .await
            .map_err(command_error)?;
        let Some(commit) = executed.commit() else {
            return Err(ApiError::internal());
        };
        Ok(pb::CreateGroupResponse {
            group: Some(convert::group_view(
                &network,
                &group_id,
                executed.state(),
                commit.sequence,
                self.commands.clock.now(),
            )),
            consistency_token: commit.sequence.to_string(),
        })
    }

    pub(super) async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> ApiResult<pb::UpdateGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let group = request.group.unwrap_or_default();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "group.name", &group.name, GROUP)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, CLINIC_ADMINS, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "group.etag", &group.etag);
        let paths = paths(
            &mut violations,
            request.update_mask.as_ref(),
            &[
                "display_name",
                "modality",
                "level_of_care",
                "capacity",
                "admission_mode",
                "facilitators",
                "schedule",
            ],
        );
        let has = |name: &str| paths.iter().any(|path| path == name);
        let mut changes = GroupChanges::default();
        if has("display_name") {
            changes.display_name = violations.check(
                "group.display_name",
                convert::text(&group.display_name, 200),
            );
        }
        if has("modality") {
            changes.modality = violations.check("group.modality", convert::slug(&group.modality));
        }
        if has("level_of_care") {
            changes.level_of_care =
                violations.check("group.level_of_care", convert::slug(&group.level_of_care));
        }
        if has("capacity") {
            changes.capacity =
                violations.check("group.capacity", convert::capacity(group.capacity));
        }
        if has("admission_mode") {
            if group.admission_mode == pb::AdmissionMode::Unspecified as i32 {
                violations.add("group.admission_mode", "must be rolling or closed");
            } else {
                changes.admission_mode = violations.check(
                    "group.admission_mode",
                    convert::admission_mode(group.admission_mode),
                );
            }
        }
        if has("facilitators") {
            changes.facilitators = Some(convert::facilitators(
                &mut violations,
                "group.facilitators",
                &group.facilitators,
            ));
        }
        if has("schedule") {
            changes.schedule = Some(match &group.schedule {
                Some(schedule) => convert::schedule(
                    &mut violations,
                    "group.schedule",
                    schedule,
                    self.commands.clock.now().date_naive(),
                ),
                None => None,
            });
        }
        let ids = violations.finish(ids)?;
        let executed = self
            .commands
            .group(
                &ids[0],
                Some(&ids[1]),
                &ids[2],
                &meta(&caller, request_id, fingerprint),
                etag,
                GroupCommand::Update(changes),
            )
            .await
            .map_err(command_error)?;
        let (version, token) = version_and_commit(&executed);
        Ok(pb::UpdateGroupResponse {
            group: Some(convert::group_view(
                &ids[0],
                &ids[2],
                executed.state(),
                version,
                self.commands.clock.now(),
            )),
            consistency_token: token,
        })
    }

    pub(super) async fn archive_group(
        &self,
        request: Request<pb::ArchiveGroupRequest>,
    ) -> ApiResult<pb::ArchiveGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, GROUP)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, CLINIC_ADMINS, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        let ids = violations.finish(ids)?;
        let executed = self
            .commands
            .group(
                &ids[0],
                Some(&ids[1]),
                &ids[2],
                &meta(&caller, request_id, fingerprint),
                etag,
                GroupCommand::Archive,
            )
            .await
            .map_err(command_error)?;
        let (version, token) = version_and_commit(&executed);
        Ok(pb::ArchiveGroupResponse {
            group: Some(convert::group_view(
                &ids[0],
                &ids[2],
                executed.state(),
                version,
                self.commands.clock.now(),
            )),
            consistency_token: token,
        })
    }

    pub(super) async fn register_participant(
        &self,
        request: Request<pb::RegisterParticipantRequest>,
    ) -> ApiResult<pb::RegisterParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        owned(&caller, &mut violations, "parent", &request.parent, NETWORK)?;
        let participant = request.participant.unwrap_or_default();
        let home = owned(
            &caller,
            &mut violations,
            "participant.home_clinic",
            &participant.home_clinic,
            CLINIC,
        )?;
        let scope: Vec<&str> = home.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, STAFF, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let profile = convert::profile(
            &mut violations,
            "participant.profile",
            &participant.profile.unwrap_or_default(),
        );
        let network = caller.network.clone();
        let participant_id = convert::resource_id(
            &mut violations,
            "participant_id",
            &request.participant_id,
            &network,
            &request_id,
        );
        if participant_id == "shared" {
            // Reserved: `.../notes/shared` names a session's shared note.
            violations.add("participant_id", "\"shared\" is reserved");
        }
        let home = violations.finish(home)?;
        let clinic = self
            .commands
            .load_clinic(&network, &home[1])
            .await
            .map_err(command_error)?;
        crate::domain::clinic::require_open(&clinic).map_err(super::domain_error)?;
        let command = ParticipantCommand::Register {
            home_clinic_id: home[1].clone(),
            profile,
        };
        let executed = self
            .commands
            .participant(
                &network,
                &participant_id,
                &meta(&caller, request_id, fingerprint),
                None,
                command,
            )
            .await
            .map_err(command_error)?;
        let Some(commit) = executed.commit() else {
            return Err(ApiError::internal());
        };
        Ok(pb::RegisterParticipantResponse {
            participant: Some(participant_view(
                &network,
                &participant_id,
                executed.state(),
                commit.sequence,
            )),
            consistency_token: commit.sequence.to_string(),
        })
    }

    pub(super) async fn update_participant(
        &self,
        request: Request<pb::UpdateParticipantRequest>,
    ) -> ApiResult<pb::UpdateParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let participant = request.participant.unwrap_or_default();
        let mut violations = Violations::default();
        let ids = owned(
            &caller,
            &mut violations,
            "participant.name",
            &participant.name,
            PARTICIPANT,
        )?;
        const PROFILE_FIELDS: [&str; 5] = [
            "given_name",
            "family_name",
            "preferred_name",
            "email",
            "phone",
        ];
        let mut allowed = vec!["home_clinic", "profile"];
        let profile_paths: Vec<String> = PROFILE_FIELDS
            .iter()
            .map(|field| format!("profile.{field}"))
            .collect();
        allowed.extend(profile_paths.iter().map(String::as_str));
        let paths = paths(&mut violations, request.update_mask.as_ref(), &allowed);
        let home = if paths.iter().any(|path| path == "home_clinic") {
            owned(
                &caller,
                &mut violations,
                "participant.home_clinic",
                &participant.home_clinic,
                CLINIC,
            )?
        } else {
            None
        };
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "participant.etag", &participant.etag);
        let ids = violations.finish(ids)?;
        let current = self
            .commands
            .load_participant(&ids[0], &ids[1])
            .await
            .map_err(command_error)?;
        let mut scope = vec![current.home_clinic_id.as_str()];
        if let Some(home) = &home {
            scope.push(home[1].as_str());
        }
        // Profile and home clinic are the care team's to change, not the participant's.
        authorize(&caller, STAFF, &scope)?;
        if !current.registered {
            return Err(super::domain_error(
                crate::domain::DomainError::ParticipantNotFound,
            ));
        }
        // The changed fields replace the current ones; the merged profile is checked as
        // at registration (the unchanged fields were valid already).
        let given = participant.profile.unwrap_or_default();
        let mut merged = pb_profile(&current.profile);
        let mut profile_changed = false;
        for field in PROFILE_FIELDS {
            if !paths
                .iter()
                .any(|path| path == "profile" || *path == format!("profile.{field}"))
            {
                continue;
            }
            profile_changed = true;
            match field {
                "given_name" => merged.given_name = given.given_name.clone(),
                "family_name" => merged.family_name = given.family_name.clone(),
                "preferred_name" => merged.preferred_name = given.preferred_name.clone(),
                "email" => merged.email = given.email.clone(),
                _ => merged.phone = given.phone.clone(),
            }
        }
        let mut violations = Violations::default();
        let merged = convert::profile(&mut violations, "participant.profile", &merged);
        violations.into_result()?;
        let home_clinic_id = match home {
            Some(home) => {
                let clinic = self
                    .commands
                    .load_clinic(&ids[0], &home[1])
                    .await
                    .map_err(command_error)?;
                crate::domain::clinic::require_open(&clinic).map_err(super::domain_error)?;
                Some(home[1].clone())
            }
            None => None,
        };
        let command = ParticipantCommand::Update {
            profile: profile_changed.then_some(merged),
            home_clinic_id,
        };
        let executed = self
            .commands
            .participant(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        let (version, token) = version_and_commit(&executed);
        Ok(pb::UpdateParticipantResponse {
            participant: Some(participant_view(
                &ids[0],
                &ids[1],
                executed.state(),
                version,
            )),
            consistency_token: token,
        })
    }

    pub(super) async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> ApiResult<pb::RecordConsentResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(
            &caller,
            &mut violations,
            "parent",
            &request.parent,
            PARTICIPANT,
        )?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let consent = request.consent.unwrap_or_default();
        let terms = convert::consent_terms(&mut violations, &consent);
        violations.into_result()?;
        let (Some(ids), Some(terms)) = (ids, terms) else {
            return Err(ApiError::internal());
        };
        let participant = self
            .commands
            .load_participant(&ids[0], &ids[1])
            .await
            .map_err(command_error)?;
        authorize_self_or_staff(&caller, &ids[1], &[participant.home_clinic_id.as_str()])?;
        let consent_id = convert::resource_id(
            &mut Violations::default(),
            "consent_id",
            "",
            &ids[0],
            &format!("{}/{request_id}", ids[1]),
        );
        let command = ParticipantCommand::RecordConsent {
            consent_id: consent_id.clone(),
            terms,
        };
        let executed = self
            .commands
            .participant(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                None,
                command,
            )
            .await
            .map_err(command_error)?;
        let Some(commit) = executed.commit() else {
            return Err(ApiError::internal());
        };
        let state = executed.state();
        let Some(recorded) = state.consents.get(&consent_id) else {
            return Err(request_id_reused());
        };
        Ok(pb::RecordConsentResponse {
            consent: Some(consent_view(
                &ids[0],
                &ids[1],
                &consent_id,
                recorded,
                Some(codec::timestamp(commit.committed_at)),
                None,
            )),
            consistency_token: commit.sequence.to_string(),
        })
    }

    pub(super) async fn revoke_consent(
        &self,
        request: Request<pb::RevokeConsentRequest>,
    ) -> ApiResult<pb::RevokeConsentResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, CONSENT)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ids = violations.finish(ids)?;
        let participant = self
            .commands
            .load_participant(&ids[0], &ids[1])
            .await
            .map_err(command_error)?;
        authorize_self_or_staff(&caller, &ids[1], &[participant.home_clinic_id.as_str()])?;
        let command = ParticipantCommand::RevokeConsent {
            consent_id: ids[2].clone(),
        };
        let executed = self
            .commands
            .participant(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                None,
                command,
            )
            .await
            .map_err(command_error)?;
        let Some(consent) = executed.state().consents.get(&ids[2]) else {
            return Err(ApiError::internal());
        };
        let revoked_at = executed.committed_at().map(codec::timestamp);
        Ok(pb::RevokeConsentResponse {
            consent: Some(consent_view(
                &ids[0], &ids[1], &ids[2], consent, None, revoked_at,
            )),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn enroll_participant(
        &self,
        request: Request<pb::EnrollParticipantRequest>,
    ) -> ApiResult<pb::EnrollParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let group = owned(&caller, &mut violations, "parent", &request.parent, GROUP)?;
        let participant = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let scope: Vec<&str> = group.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, STAFF, &scope)?;
        if request.facilitator_override {
            authorize(&caller, OVERRIDERS, &scope).map_err(|_| {
                ApiError::new(
                    Code::PermissionDenied,
                    "OVERRIDE_NOT_ALLOWED",
                    "only facilitators and admins may override closed admission",
                )
            })?;
        }
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        violations.into_result()?;
        let (Some(group), Some(participant)) = (group, participant) else {
            return Err(ApiError::internal());
        };
        let (network, clinic_id, group_id, participant_id) =
            (&group[0], &group[1], &group[2], &participant[1]);
        self.require_participant(network, participant_id, &request.participant)
            .await?;
        let command = GroupCommand::Enroll {
            participant_id: participant_id.clone(),
            facilitator_override: request.facilitator_override,
        };
        let executed = self
            .commands
            .group(
                network,
                Some(clinic_id),
                group_id,
                &meta(&caller, request_id, fingerprint),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let membership =
            convert::membership_from_commit(network, clinic_id, group_id, participant_id, commit)
                .ok_or_else(request_id_reused)?;
        Ok(pb::EnrollParticipantResponse {
            membership: Some(membership),
            etag: commit.sequence.to_string(),
            consistency_token: commit.sequence.to_string(),
        })
    }

    async fn require_participant(
        &self,
        network: &str,
        participant_id: &str,
        name: &str,
    ) -> ApiResult<()> {
        let participant = self
            .commands
            .load_participant(network, participant_id)
            .await
            .map_err(command_error)?;
        if participant.registered {
            Ok(())
        } else {
            Err(super::not_found("PARTICIPANT_NOT_FOUND", name))
        }
    }

    /// Runs a command on one membership and answers with the membership as the
    /// commit left it.
    async fn membership_command<R: MembershipReply>(
        &self,
        caller: &Caller,
        name: &str,
        (request_id, fingerprint): (&str, Fingerprint),
        extra: Violations,
        allow_self: bool,
        command: impl FnOnce(String) -> GroupCommand,
    ) -> ApiResult<R> {
        let mut violations = extra;
        let ids = owned(caller, &mut violations, "name", name, MEMBERSHIP)?;
        if let Some(ids) = &ids {
            if allow_self {
                authorize_self_or_staff(caller, &ids[3], &[ids[1].as_str()])?;
            } else {
                authorize(caller, STAFF, &[ids[1].as_str()])?;
            }
        }
        let request_id = circle_grpc::request_id_field(&mut violations, request_id);
        let ids = violations.finish(ids)?;
        let (network, clinic_id, group_id, participant_id) = (&ids[0], &ids[1], &ids[2], &ids[3]);
        let executed = self
            .commands
            .group(
                network,
                Some(clinic_id),
                group_id,
                &meta(caller, request_id, fingerprint),
                None,
                command(participant_id.clone()),
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let membership =
            convert::membership_from_commit(network, clinic_id, group_id, participant_id, commit)
                .ok_or_else(request_id_reused)?;
        let version = commit.sequence.to_string();
        Ok(R::new(membership, version.clone(), version))
    }

    pub(super) async fn accept_seat_offer(
        &self,
        request: Request<pb::AcceptSeatOfferRequest>,
    ) -> ApiResult<pb::AcceptSeatOfferResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        self.membership_command(
            &caller,
            &request.name,
            (&request.request_id, fingerprint),
            Violations::default(),
            true,
            |participant_id| GroupCommand::AcceptOffer { participant_id },
        )
        .await
    }

    pub(super) async fn decline_seat_offer(
        &self,
        request: Request<pb::DeclineSeatOfferRequest>,
    ) -> ApiResult<pb::DeclineSeatOfferResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        self.membership_command(
            &caller,
            &request.name,
            (&request.request_id, fingerprint),
            Violations::default(),
            true,
            |participant_id| GroupCommand::DeclineOffer { participant_id },
        )
        .await
    }

    pub(super) async fn hold_membership(
        &self,
        request: Request<pb::HoldMembershipRequest>,
    ) -> ApiResult<pb::HoldMembershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let reason = violations
            .check("reason", convert::optional_text(&request.reason, 500))
            .unwrap_or_default();
        self.membership_command(
            &caller,
            &request.name,
            (&request.request_id, fingerprint),
            violations,
            false,
            |participant_id| GroupCommand::Hold {
                participant_id,
                reason,
            },
        )
        .await
    }

    pub(super) async fn resume_membership(
        &self,
        request: Request<pb::ResumeMembershipRequest>,
    ) -> ApiResult<pb::ResumeMembershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        self.membership_command(
            &caller,
            &request.name,
            (&request.request_id, fingerprint),
            Violations::default(),
            false,
            |participant_id| GroupCommand::Resume { participant_id },
        )
        .await
    }

    pub(super) async fn discharge_participant(
        &self,
        request: Request<pb::DischargeParticipantRequest>,
    ) -> ApiResult<pb::DischargeParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let reason = violations.check("reason", convert::discharge_reason(request.reason));
        self.membership_command(
            &caller,
            &request.name,
            (&request.request_id, fingerprint),
            violations,
            false,
            |participant_id| GroupCommand::Discharge {
                participant_id,
                reason: reason.unwrap_or(crate::domain::DischargeReason::Administrative),
            },
        )
        .await
    }

    /// The first half of a transfer runs here: the new group takes the participant
    /// (seat or waitlist). The old group releases them once they hold the new seat —
    /// the transfers process manager does that from the log.
    pub(super) async fn transfer_participant(
        &self,
        request: Request<pb::TransferParticipantRequest>,
    ) -> ApiResult<pb::TransferParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let from = owned(&caller, &mut violations, "name", &request.name, MEMBERSHIP)?;
        let to = owned(
            &caller,
            &mut violations,
            "target_group",
            &request.target_group,
            GROUP,
        )?;
        let mut scope: Vec<&str> = Vec::new();
        scope.extend(from.iter().map(|ids| ids[1].as_str()));
        scope.extend(to.iter().map(|ids| ids[1].as_str()));
        authorize(&caller, STAFF, &scope)?;
        if let (Some(from), Some(to)) = (&from, &to)
            && from[2] == to[2]
        {
            violations.add("target_group", "must be a different group");
        }
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        violations.into_result()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::internal());
        };
        let (network, participant_id) = (&from[0], &from[3]);
        let source = self
            .commands
            .load_group(network, &from[2])
            .await
            .map_err(command_error)?;
        let in_source = source
            .state
            .details
            .as_ref()
            .is_some_and(|details| details.clinic_id == from[1])
            && source.state.members.contains_key(participant_id);
        // A retry is answered by the new group even after the old seat was released.
        let retried = self
            .commands
            .load_group(network, &to[2])
            .await
            .map_err(command_error)?
            .has_request(&request_id);
        if !in_source && !retried {
            return Err(super::domain_error(crate::domain::DomainError::NotEnrolled));
        }
        let transfer = TransferRef {
            // Unique per network, groups, participant and request: two transfers out of one
            // group never share the id their release is keyed on.
            transfer_id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!(
                    "{network}/{}/{}/{participant_id}/{request_id}",
                    from[2], to[2]
                )
                .as_bytes(),
            )
            .to_string(),
            from_group_id: from[2].clone(),
            to_group_id: to[2].clone(),
        };
        let command = GroupCommand::TransferIn {
            participant_id: participant_id.clone(),
            transfer,
            facilitator_override: false,
        };
        let executed = self
            .commands
            .group(
                network,
                Some(&to[1]),
                &to[2],
                &meta(&caller, request_id, fingerprint),
                None,
                command,
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        let membership =
            convert::membership_from_commit(network, &to[1], &to[2], participant_id, commit)
                .ok_or_else(request_id_reused)?;
        Ok(pb::TransferParticipantResponse {
            membership: Some(membership),
            consistency_token: commit.sequence.to_string(),
        })
    }
}

fn pb_profile(profile: &crate::domain::Profile) -> pb::ParticipantProfile {
    pb::ParticipantProfile {
        given_name: profile.given_name.clone(),
        family_name: profile.family_name.clone(),
        preferred_name: profile.preferred_name.clone(),
        email: profile.email.clone(),
        phone: profile.phone.clone(),
    }
}

fn participant_view(
    network: &str,
    participant_id: &str,
    participant: &crate::domain::Participant,
    version: u64,
) -> pb::Participant {
    pb::Participant {
        name: convert::participant_name(network, participant_id),
        home_clinic: convert::clinic_name(network, &participant.home_clinic_id),
        profile: Some(pb_profile(&participant.profile)),
        etag: version.to_string(),
        consents: participant
            .consents
            .iter()
            .map(|(consent_id, consent)| {
                consent_view(network, participant_id, consent_id, consent, None, None)
            })
            .collect(),
    }
}

fn consent_view(
    network: &str,
    participant_id: &str,
    consent_id: &str,
    consent: &crate::domain::participant::ConsentState,
    recorded: Option<prost_types::Timestamp>,
    revoked: Option<prost_types::Timestamp>,
) -> pb::Consent {
    use crate::domain::{ConsentTerms, PeerDisplay};
    let mut view = pb::Consent {
        name: convert::consent_name(network, participant_id, consent_id),
        record_time: recorded,
        revoke_time: if consent.revoked { revoked } else { None },
        ..Default::default()
    };
    match &consent.terms {
        ConsentTerms::TreatmentDisclosure { recipient, purpose } => {
            view.kind = pb::ConsentKind::TreatmentDisclosure as i32;
            view.recipient = recipient.clone();
            view.purpose = purpose.clone();
        }
        ConsentTerms::PeerVisibility {
            display,
            alias,
            share_check_ins,
            share_milestones,
        } => {
            view.kind = pb::ConsentKind::PeerVisibility as i32;
            view.display = match display {
                PeerDisplay::FirstName => pb::PeerDisplay::FirstName,
                PeerDisplay::Alias => pb::PeerDisplay::Alias,
            } as i32;
            view.alias = alias.clone();
            view.share_check_ins = *share_check_ins;
            view.share_milestones = *share_milestones;
        }
    }
    view
}

/// A response that carries the membership a command changed.
trait MembershipReply {
    fn new(membership: pb::Membership, etag: String, consistency_token: String) -> Self;
}

macro_rules! membership_reply {
    ($($response:ty),* $(,)?) => {$(
        impl MembershipReply for $response {
            fn new(membership: pb::Membership, etag: String, consistency_token: String) -> Self {
                Self {
                    membership: Some(membership),
                    etag,
                    consistency_token,
                }
            }
        }
    )*};
}

membership_reply!(
    pb::AcceptSeatOfferResponse,
    pb::DeclineSeatOfferResponse,
    pb::HoldMembershipResponse,
    pb::ResumeMembershipResponse,
    pb::DischargeParticipantResponse
);
