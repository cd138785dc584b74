//! Commands at the edge: read the caller, parse the request (resource names into
//! `circle-names` types — another network's name is refused at once —, role and scope
//! as far as the names show, then every bad field collected), call `app::Commands`,
//! which checks access from the service's table, loads, runs and answers from the
//! commit (so a retry gets the original answer), and map its answer to protobuf
//! (`wire`, as the queries' answers are).

use circle_grpc::{Caller, Target, Violations, request_id_field};
use circle_names::{
    ClinicName, ConsentName, GroupName, Id, MembershipName, NetworkName, ParticipantName,
};
use circle_proto::enrollment::v1 as pb;
use circle_service::Fingerprint;
use tonic::Request;

use super::convert::{self, named};
use super::{ApiResult, EnrollmentApi, caller, wire};
use crate::app::access::{self, Operation};
use crate::app::{
    ArchiveClinic, ArchiveGroup, CreateClinic, CreateGroup, DischargeParticipant,
    EnrollParticipant, ForgetParticipant, HoldMembership, MembershipAnswer, NewGroup, OnMembership,
    ProfileChanges, RecordConsent, RegisterParticipant, RevokeConsent, Sent, TransferParticipant,
    UpdateClinic, UpdateGroup, UpdateParticipant,
};
use crate::domain::{DischargeReason, GroupChanges};

/// The access check before bad fields are reported: the operation's row with the
/// clinics (and participant) the request's names show.
fn early(
    caller: &Caller,
    operation: Operation,
    clinics: &[&str],
    participant: Option<&str>,
) -> ApiResult<()> {
    access::check_early(
        caller,
        operation,
        Some(Target {
            clinics,
            participant,
            ..Target::default()
        }),
    )
}

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

fn sent(request_id: String, fingerprint: Fingerprint) -> Sent {
    Sent {
        request_id,
        fingerprint,
    }
}

/// A clinic of `network` named by an id the request gives or its request id derives.
fn clinic_of(network: &NetworkName, clinic: Id) -> ClinicName {
    ClinicName {
        network: network.network.clone(),
        clinic,
    }
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
        let parent = named::<NetworkName>(&caller, &mut violations, "parent", &request.parent)?;
        early(&caller, Operation::CreateClinic, &[], None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let clinic = request.clinic.unwrap_or_default();
        let display_name = violations.check(
            "clinic.display_name",
            convert::text(&clinic.display_name, 200),
        );
        let time_zone = violations.check(
            "clinic.time_zone",
            convert::time_zone_name(&clinic.time_zone),
        );
        let clinic_id = convert::resource_id(
            &mut violations,
            "clinic_id",
            &request.clinic_id,
            &caller.network,
            &request_id,
        );
        violations.into_result()?;
        let (Some(parent), Some(display_name), Some(time_zone), Some(clinic_id)) =
            (parent, display_name, time_zone, clinic_id)
        else {
            return Err(circle_grpc::ApiError::internal());
        };
        let clinic = self
            .commands
            .create_clinic(
                &caller,
                CreateClinic {
                    name: clinic_of(&parent, clinic_id),
                    display_name,
                    time_zone,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::CreateClinicResponse {
            consistency_token: clinic.version.to_string(),
            clinic: Some(wire::clinic(clinic)),
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
        let name = named::<ClinicName>(&caller, &mut violations, "clinic.name", &clinic.name)?;
        early(&caller, Operation::UpdateClinic, &[], None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
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
        let name = violations.finish(name)?;
        let clinic = self
            .commands
            .update_clinic(
                &caller,
                UpdateClinic {
                    name,
                    display_name,
                    time_zone,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::UpdateClinicResponse {
            consistency_token: clinic.version.to_string(),
            clinic: Some(wire::clinic(clinic)),
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
        let name = named::<ClinicName>(&caller, &mut violations, "name", &request.name)?;
        early(&caller, Operation::ArchiveClinic, &[], None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        let name = violations.finish(name)?;
        let clinic = self
            .commands
            .archive_clinic(
                &caller,
                ArchiveClinic {
                    name,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::ArchiveClinicResponse {
            consistency_token: clinic.version.to_string(),
            clinic: Some(wire::clinic(clinic)),
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
        let parent = named::<ClinicName>(&caller, &mut violations, "parent", &request.parent)?;
        let scope: Vec<&str> = parent.iter().map(|name| name.clinic.as_str()).collect();
        early(&caller, Operation::CreateGroup, &scope, None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
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
        let today = self.commands.now().date_naive();
        let schedule = group
            .schedule
            .as_ref()
            .map(|schedule| convert::schedule(&mut violations, "group.schedule", schedule, today));
        let group_id = convert::resource_id(
            &mut violations,
            "group_id",
            &request.group_id,
            &caller.network,
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
            Some(group_id),
        ) = (
            parent,
            display_name,
            modality,
            level_of_care,
            capacity,
            admission_mode,
            group_id,
        )
        else {
            return Err(circle_grpc::ApiError::internal());
        };
        let name = GroupName {
            network: parent.network,
            clinic: parent.clinic,
            group: group_id,
        };
        let group = self
            .commands
            .create_group(
                &caller,
                CreateGroup {
                    name,
                    group: NewGroup {
                        display_name,
                        modality,
                        level_of_care,
                        capacity,
                        admission_mode,
                        facilitators,
                        schedule: schedule.flatten(),
                    },
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::CreateGroupResponse {
            consistency_token: group.version.to_string(),
            group: Some(wire::group(group)),
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
        let name = named::<GroupName>(&caller, &mut violations, "group.name", &group.name)?;
        let scope: Vec<&str> = name.iter().map(|name| name.clinic.as_str()).collect();
        early(&caller, Operation::UpdateGroup, &scope, None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
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
                    self.commands.now().date_naive(),
                ),
                None => None,
            });
        }
        let name = violations.finish(name)?;
        let group = self
            .commands
            .update_group(
                &caller,
                UpdateGroup {
                    name,
                    changes,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::UpdateGroupResponse {
            consistency_token: group.version.to_string(),
            group: Some(wire::group(group)),
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
        let name = named::<GroupName>(&caller, &mut violations, "name", &request.name)?;
        let scope: Vec<&str> = name.iter().map(|name| name.clinic.as_str()).collect();
        early(&caller, Operation::ArchiveGroup, &scope, None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        let name = violations.finish(name)?;
        let group = self
            .commands
            .archive_group(
                &caller,
                ArchiveGroup {
                    name,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::ArchiveGroupResponse {
            consistency_token: group.version.to_string(),
            group: Some(wire::group(group)),
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
        let parent = named::<NetworkName>(&caller, &mut violations, "parent", &request.parent)?;
        let participant = request.participant.unwrap_or_default();
        let home = named::<ClinicName>(
            &caller,
            &mut violations,
            "participant.home_clinic",
            &participant.home_clinic,
        )?;
        let scope: Vec<&str> = home.iter().map(|home| home.clinic.as_str()).collect();
        early(&caller, Operation::RegisterParticipant, &scope, None)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let profile = convert::profile(
            &mut violations,
            "participant.profile",
            &participant.profile.unwrap_or_default(),
        );
        let participant_id = convert::resource_id(
            &mut violations,
            "participant_id",
            &request.participant_id,
            &caller.network,
            &request_id,
        );
        if participant_id.as_ref().is_some_and(|id| id == "shared") {
            // Reserved: `.../notes/shared` names a session's shared note.
            violations.add("participant_id", "\"shared\" is reserved");
        }
        violations.into_result()?;
        let (Some(parent), Some(home), Some(participant_id)) = (parent, home, participant_id)
        else {
            return Err(circle_grpc::ApiError::internal());
        };
        let participant = self
            .commands
            .register_participant(
                &caller,
                RegisterParticipant {
                    name: ParticipantName {
                        network: parent.network,
                        participant: participant_id,
                    },
                    home_clinic: home,
                    profile,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::RegisterParticipantResponse {
            consistency_token: participant.version.to_string(),
            participant: Some(wire::participant(participant)),
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
        let name = named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant.name",
            &participant.name,
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
        let home_clinic = if paths.iter().any(|path| path == "home_clinic") {
            named::<ClinicName>(
                &caller,
                &mut violations,
                "participant.home_clinic",
                &participant.home_clinic,
            )?
        } else {
            None
        };
        let request_id = request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "participant.etag", &participant.etag);
        let name = violations.finish(name)?;
        // The changed fields replace the current ones (the application checks the
        // merged profile, and who may change it, once it has the record).
        let given = participant.profile.unwrap_or_default();
        let changed = |field: &str| {
            paths
                .iter()
                .any(|path| path == "profile" || *path == format!("profile.{field}"))
        };
        let pick = |field: &str, value: &String| changed(field).then(|| value.clone());
        let profile = ProfileChanges {
            given_name: pick("given_name", &given.given_name),
            family_name: pick("family_name", &given.family_name),
            preferred_name: pick("preferred_name", &given.preferred_name),
            email: pick("email", &given.email),
            phone: pick("phone", &given.phone),
        };
        let participant = self
            .commands
            .update_participant(
                &caller,
                UpdateParticipant {
                    name,
                    home_clinic,
                    profile,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::UpdateParticipantResponse {
            consistency_token: participant.version.to_string(),
            participant: Some(wire::participant(participant)),
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
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let consent = request.consent.unwrap_or_default();
        let terms = convert::consent_terms(&mut violations, &consent);
        violations.into_result()?;
        let (Some(participant), Some(terms)) = (participant, terms) else {
            return Err(circle_grpc::ApiError::internal());
        };
        let answer = self
            .commands
            .record_consent(
                &caller,
                RecordConsent {
                    participant,
                    terms,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::RecordConsentResponse {
            consistency_token: answer.version.to_string(),
            consent: Some(wire::consent(answer.consent)),
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
        let name = named::<ConsentName>(&caller, &mut violations, "name", &request.name)?;
        let request_id = request_id_field(&mut violations, &request.request_id);
        let name = violations.finish(name)?;
        let answer = self
            .commands
            .revoke_consent(
                &caller,
                RevokeConsent {
                    name,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::RevokeConsentResponse {
            consistency_token: answer.version.to_string(),
            consent: Some(wire::consent(answer.consent)),
        })
    }

    pub(super) async fn forget_participant(
        &self,
        request: Request<pb::ForgetParticipantRequest>,
    ) -> ApiResult<pb::ForgetParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let name = named::<ParticipantName>(&caller, &mut violations, "name", &request.name)?;
        early(&caller, Operation::ForgetParticipant, &[], None)?;
        let reason = violations.check("reason", convert::forget_reason(request.reason));
        let reference = violations
            .check("reference", convert::optional_text(&request.reference, 200))
            .unwrap_or_default();
        let request_id = request_id_field(&mut violations, &request.request_id);
        violations.into_result()?;
        let (Some(name), Some(reason)) = (name, reason) else {
            return Err(circle_grpc::ApiError::internal());
        };
        let participant = self
            .commands
            .forget_participant(
                &caller,
                ForgetParticipant {
                    name,
                    reason,
                    reference,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::ForgetParticipantResponse {
            consistency_token: participant.version.to_string(),
            participant: Some(wire::participant(participant)),
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
        let group = named::<GroupName>(&caller, &mut violations, "parent", &request.parent)?;
        let participant = named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let scope: Vec<&str> = group.iter().map(|group| group.clinic.as_str()).collect();
        early(&caller, Operation::EnrollParticipant, &scope, None)?;
        if request.facilitator_override {
            access::check_closed_admission_override(
                &caller,
                Some(&Target {
                    clinics: &scope,
                    ..Target::default()
                }),
            )?;
        }
        let request_id = request_id_field(&mut violations, &request.request_id);
        let etag = etag(&mut violations, "etag", &request.etag);
        violations.into_result()?;
        let (Some(group), Some(participant)) = (group, participant) else {
            return Err(circle_grpc::ApiError::internal());
        };
        let answer = self
            .commands
            .enroll_participant(
                &caller,
                EnrollParticipant {
                    group,
                    participant,
                    facilitator_override: request.facilitator_override,
                    etag,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        let version = answer.version.to_string();
        Ok(pb::EnrollParticipantResponse {
            membership: Some(wire::membership(answer.membership)),
            etag: version.clone(),
            consistency_token: version,
        })
    }

    /// A command on one membership: `extra` holds the violations of its other fields
    /// (reported first, as before the name); the access check is early only once the
    /// name parsed.
    fn membership_request(
        caller: &Caller,
        operation: Operation,
        name: &str,
        request_id: &str,
        mut violations: Violations,
    ) -> ApiResult<(MembershipName, String)> {
        let name = named::<MembershipName>(caller, &mut violations, "name", name)?;
        if let Some(name) = &name {
            early(
                caller,
                operation,
                &[name.clinic.as_str()],
                Some(name.membership.as_str()),
            )?;
        }
        let request_id = request_id_field(&mut violations, request_id);
        Ok((violations.finish(name)?, request_id))
    }

    pub(super) async fn accept_seat_offer(
        &self,
        request: Request<pb::AcceptSeatOfferRequest>,
    ) -> ApiResult<pb::AcceptSeatOfferResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let (name, request_id) = Self::membership_request(
            &caller,
            Operation::AcceptSeatOffer,
            &request.name,
            &request.request_id,
            Violations::default(),
        )?;
        let answer = self
            .commands
            .accept_seat_offer(
                &caller,
                OnMembership {
                    name,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(MembershipReply::from_answer(answer))
    }

    pub(super) async fn decline_seat_offer(
        &self,
        request: Request<pb::DeclineSeatOfferRequest>,
    ) -> ApiResult<pb::DeclineSeatOfferResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let (name, request_id) = Self::membership_request(
            &caller,
            Operation::DeclineSeatOffer,
            &request.name,
            &request.request_id,
            Violations::default(),
        )?;
        let answer = self
            .commands
            .decline_seat_offer(
                &caller,
                OnMembership {
                    name,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(MembershipReply::from_answer(answer))
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
        let (name, request_id) = Self::membership_request(
            &caller,
            Operation::HoldMembership,
            &request.name,
            &request.request_id,
            violations,
        )?;
        let answer = self
            .commands
            .hold_membership(
                &caller,
                HoldMembership {
                    name,
                    reason,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(MembershipReply::from_answer(answer))
    }

    pub(super) async fn resume_membership(
        &self,
        request: Request<pb::ResumeMembershipRequest>,
    ) -> ApiResult<pb::ResumeMembershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let (name, request_id) = Self::membership_request(
            &caller,
            Operation::ResumeMembership,
            &request.name,
            &request.request_id,
            Violations::default(),
        )?;
        let answer = self
            .commands
            .resume_membership(
                &caller,
                OnMembership {
                    name,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(MembershipReply::from_answer(answer))
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
        let (name, request_id) = Self::membership_request(
            &caller,
            Operation::DischargeParticipant,
            &request.name,
            &request.request_id,
            violations,
        )?;
        let answer = self
            .commands
            .discharge_participant(
                &caller,
                DischargeParticipant {
                    name,
                    reason: reason.unwrap_or(DischargeReason::Administrative),
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(MembershipReply::from_answer(answer))
    }

    pub(super) async fn transfer_participant(
        &self,
        request: Request<pb::TransferParticipantRequest>,
    ) -> ApiResult<pb::TransferParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let from = named::<MembershipName>(&caller, &mut violations, "name", &request.name)?;
        let to = named::<GroupName>(
            &caller,
            &mut violations,
            "target_group",
            &request.target_group,
        )?;
        let mut scope: Vec<&str> = Vec::new();
        scope.extend(from.iter().map(|from| from.clinic.as_str()));
        scope.extend(to.iter().map(|to| to.clinic.as_str()));
        early(&caller, Operation::TransferParticipant, &scope, None)?;
        if let (Some(from), Some(to)) = (&from, &to)
            && from.group == to.group
        {
            violations.add("target_group", "must be a different group");
        }
        let request_id = request_id_field(&mut violations, &request.request_id);
        violations.into_result()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(circle_grpc::ApiError::internal());
        };
        let answer = self
            .commands
            .transfer_participant(
                &caller,
                TransferParticipant {
                    from,
                    to,
                    sent: sent(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::TransferParticipantResponse {
            consistency_token: answer.version.to_string(),
            membership: Some(wire::membership(answer.membership)),
        })
    }
}

/// A response that carries the membership a command changed, its etag and the
/// consistency token (both the commit's version).
trait MembershipReply: Sized {
    fn new(membership: pb::Membership, etag: String, consistency_token: String) -> Self;

    fn from_answer(answer: MembershipAnswer) -> Self {
        let version = answer.version.to_string();
        Self::new(
            wire::membership(answer.membership),
            version.clone(),
            version,
        )
    }
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
