//! Commands: validate, authorize, resolve consent and the encourager's view, run.

use circle_grpc::{ApiError, Role, Violations, authorize, owned, roles};
use circle_proto::accountability::v1 as pb;
use circle_service::Fingerprint;
use tonic::{Code, Request};

use super::{
    AccountabilityApi, ApiResult, CHECK_IN, CLINIC, GOAL, GROUP, PARTICIPANT, PARTNERSHIP, caller,
    command_error, meta, participant_name,
};
use crate::codec;
use crate::commands::partnership_id;
use crate::domain::Event;
use crate::domain::journal::{GoalStatus, JournalCommand};
use crate::domain::partnership::{Partnership, PartnershipCommand, PartnershipState};
use crate::domain::settings::QuietHours;
use crate::domain::visibility::{Viewer, can_see_check_in};

const MAX_GOAL_CHARS: usize = 500;
const MAX_CHECK_IN_CHARS: usize = 1000;

fn derived_id(parent: &str, kind: &str, request_id: &str) -> String {
    let seed = format!("{parent}/{kind}/{request_id}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
}

fn goal_view(
    network: &str,
    participant_id: &str,
    goal_id: &str,
    goal: &crate::domain::journal::Goal,
) -> pb::Goal {
    pb::Goal {
        name: format!(
            "{}/goals/{goal_id}",
            participant_name(network, participant_id)
        ),
        text: goal.text.clone(),
        cadence: codec::cadence_to_wire(goal.cadence),
        state: match goal.status {
            GoalStatus::Active => pb::GoalState::Active,
            GoalStatus::Completed => pb::GoalState::Completed,
            GoalStatus::Abandoned => pb::GoalState::Abandoned,
        } as i32,
    }
}

/// A partnership as answered; `clinic_id` is the clinic of its group, so the group is
/// named in full.
fn partnership_view(
    network: &str,
    partnership_id: &str,
    clinic_id: &str,
    partnership: &Partnership,
) -> pb::Partnership {
    pb::Partnership {
        name: format!("networks/{network}/partnerships/{partnership_id}"),
        group: format!(
            "networks/{network}/clinics/{clinic_id}/groups/{}",
            partnership.group_id
        ),
        proposer: participant_name(network, &partnership.proposer_id),
        invitee: participant_name(network, &partnership.invitee_id),
        state: match partnership.state {
            PartnershipState::Proposed => "proposed",
            PartnershipState::Active => "active",
            PartnershipState::Ended => "ended",
            PartnershipState::None => "",
        }
        .to_owned(),
    }
}

impl AccountabilityApi {
    /// The clinic of a partnership's group (empty for a partnership never proposed,
    /// which the command refuses). A partnership is proposed only in a group the
    /// roster knows, so an unknown group means the roster is not readable now.
    async fn partnership_clinic(
        &self,
        network: &str,
        partnership: &Partnership,
    ) -> ApiResult<String> {
        if partnership.state == PartnershipState::None {
            return Ok(String::new());
        }
        self.group_clinic(network, &partnership.group_id)
            .await?
            .ok_or_else(|| ApiError::unavailable("the roster"))
    }

    async fn goal_command(
        &self,
        request_caller: &circle_grpc::Caller,
        name: &str,
        request_id_value: &str,
        fingerprint: Fingerprint,
        mut violations: Violations,
        command: impl FnOnce(String) -> JournalCommand,
    ) -> ApiResult<(pb::Goal, String)> {
        let ids = owned(request_caller, &mut violations, "name", name, GOAL)?;
        let request_id = circle_grpc::request_id_field(&mut violations, request_id_value);
        let ids = violations.finish(ids)?;
        self.require_self_or_staff(request_caller, &ids[0], &ids[1])
            .await?;
        let executed = self
            .commands
            .journal(
                &ids[0],
                &ids[1],
                &meta(request_caller, request_id, fingerprint),
                command(ids[2].clone()),
            )
            .await
            .map_err(command_error)?;
        let goal = executed
            .state()
            .goals
            .get(&ids[2])
            .ok_or_else(ApiError::request_id_reused)?;
        Ok((
            goal_view(&ids[0], &ids[1], &ids[2], goal),
            executed.version().to_string(),
        ))
    }

    pub(super) async fn set_goal(
        &self,
        request: Request<pb::SetGoalRequest>,
    ) -> ApiResult<pb::SetGoalResponse> {
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
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_GOAL_CHARS, true),
        );
        let cadence = violations.check(
            "cadence",
            codec::cadence_from_wire(request.cadence)
                .ok_or_else(|| "must be daily, weekly or per session".to_owned()),
        );
        violations.into_result()?;
        let (Some(ids), Some(text), Some(cadence)) = (ids, text, cadence) else {
            return Err(ApiError::internal());
        };
        self.require_self_or_staff(&caller, &ids[0], &ids[1])
            .await?;
        let goal_id = derived_id(&request.parent, "goal", &request_id);
        let executed = self
            .commands
            .journal(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                JournalCommand::SetGoal {
                    goal_id: goal_id.clone(),
                    text,
                    cadence,
                },
            )
            .await
            .map_err(command_error)?;
        let goal = executed
            .state()
            .goals
            .get(&goal_id)
            .ok_or_else(ApiError::request_id_reused)?;
        Ok(pb::SetGoalResponse {
            goal: Some(goal_view(&ids[0], &ids[1], &goal_id, goal)),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn revise_goal(
        &self,
        request: Request<pb::ReviseGoalRequest>,
    ) -> ApiResult<pb::ReviseGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let text = violations
            .check(
                "text",
                circle_grpc::paragraphs(&request.text, MAX_GOAL_CHARS, true),
            )
            .unwrap_or_default();
        let cadence = violations.check(
            "cadence",
            codec::cadence_from_wire(request.cadence)
                .ok_or_else(|| "must be daily, weekly or per session".to_owned()),
        );
        let (goal, token) = self
            .goal_command(
                &caller,
                &request.name,
                &request.request_id,
                fingerprint,
                violations,
                |goal_id| JournalCommand::ReviseGoal {
                    goal_id,
                    text,
                    cadence: cadence.unwrap_or(crate::domain::Cadence::Daily),
                },
            )
            .await?;
        Ok(pb::ReviseGoalResponse {
            goal: Some(goal),
            consistency_token: token,
        })
    }

    pub(super) async fn complete_goal(
        &self,
        request: Request<pb::CompleteGoalRequest>,
    ) -> ApiResult<pb::CompleteGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let (goal, token) = self
            .goal_command(
                &caller,
                &request.name,
                &request.request_id,
                fingerprint,
                Violations::default(),
                |goal_id| JournalCommand::CompleteGoal { goal_id },
            )
            .await?;
        Ok(pb::CompleteGoalResponse {
            goal: Some(goal),
            consistency_token: token,
        })
    }

    pub(super) async fn abandon_goal(
        &self,
        request: Request<pb::AbandonGoalRequest>,
    ) -> ApiResult<pb::AbandonGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let (goal, token) = self
            .goal_command(
                &caller,
                &request.name,
                &request.request_id,
                fingerprint,
                Violations::default(),
                |goal_id| JournalCommand::AbandonGoal { goal_id },
            )
            .await?;
        Ok(pb::AbandonGoalResponse {
            goal: Some(goal),
            consistency_token: token,
        })
    }

    pub(super) async fn submit_check_in(
        &self,
        request: Request<pb::SubmitCheckInRequest>,
    ) -> ApiResult<pb::SubmitCheckInResponse> {
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
        let goal = if request.goal.is_empty() {
            None
        } else {
            owned(&caller, &mut violations, "goal", &request.goal, GOAL)?
        };
        if let (Some(ids), Some(goal)) = (&ids, &goal)
            && goal[1] != ids[1]
        {
            violations.add("goal", "must be one of the participant's own goals");
        }
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let progress = violations.check(
            "progress",
            codec::progress_from_wire(request.progress)
                .ok_or_else(|| "must be on track, struggling or setback".to_owned()),
        );
        let visibility = violations.check(
            "visibility",
            codec::visibility_from_wire(request.visibility)
                .ok_or_else(|| "must be group, partner, facilitators or private".to_owned()),
        );
        for (field, value) in [("mood", request.mood), ("craving", request.craving)] {
            if value > 10 {
                violations.add(field, "must be between 0 and 10");
            }
        }
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_CHECK_IN_CHARS, false),
        );
        violations.into_result()?;
        let (Some(ids), Some(progress), Some(visibility), Some(text)) =
            (ids, progress, visibility, text)
        else {
            return Err(ApiError::internal());
        };
        self.require_self_or_staff(&caller, &ids[0], &ids[1])
            .await?;
        let consent = self.consent(&ids[0], &ids[1]).await?;
        let check_in_id = derived_id(&request.parent, "check-in", &request_id);
        let command = JournalCommand::SubmitCheckIn {
            check_in_id: check_in_id.clone(),
            goal_id: goal.map(|goal| goal[2].clone()),
            progress,
            mood: request.mood,
            craving: request.craving,
            text: text.clone(),
            visibility,
            session_id: None,
            consent,
        };
        let executed = self
            .commands
            .journal(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
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
        Ok(pb::SubmitCheckInResponse {
            check_in: Some(pb::CheckIn {
                name: format!("{}/check-ins/{check_in_id}", request.parent),
                goal: goal_id
                    .as_ref()
                    .map(|goal_id| format!("{}/goals/{goal_id}", request.parent))
                    .unwrap_or_default(),
                progress: codec::progress_to_wire(progress),
                mood,
                craving,
                text: text.clone(),
                visibility: codec::visibility_to_wire(visibility),
                submit_time: Some(codec::timestamp(at)),
                ..Default::default()
            }),
            consistency_token: executed.version().to_string(),
        })
    }

    /// Only a member of a group the author is active in, who may see the check-in,
    /// encourages it; the encourager acts for themselves.
    pub(super) async fn encourage(
        &self,
        request: Request<pb::EncourageRequest>,
    ) -> ApiResult<pb::EncourageResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let check_in = owned(
            &caller,
            &mut violations,
            "check_in",
            &request.check_in,
            CHECK_IN,
        )?;
        let from = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let reaction = violations
            .check("reaction", circle_grpc::line(&request.reaction, 32, false))
            .unwrap_or_default();
        let message = violations
            .check("message", circle_grpc::line(&request.message, 280, false))
            .unwrap_or_default();
        if reaction.is_empty() && message.is_empty() {
            violations.add("reaction", "a reaction or a message is needed");
        }
        violations.into_result()?;
        let (Some(check_in), Some(from)) = (check_in, from) else {
            return Err(ApiError::internal());
        };
        let allowed = caller.role == Role::Participant && caller.actor_id == from[1];
        if !allowed {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "NOT_YOUR_RECORD",
                "members encourage for themselves",
            ));
        }
        let (network, author, check_in_id) = (&check_in[0], &check_in[1], &check_in[2]);
        if *author == from[1] {
            return Err(super::domain_error(crate::domain::DomainError::OwnCheckIn));
        }
        let viewer = self.peer_relation(network, &from[1], author).await?;
        let journal = self
            .commands
            .load_journal(network, author)
            .await
            .map_err(command_error)?;
        let consent = self.consent(network, author).await?;
        let can_see = matches!(viewer, Viewer::Peer { .. })
            && journal
                .check_ins
                .get(check_in_id)
                .is_some_and(|facts| can_see_check_in(viewer, facts.visibility, consent));
        let command = JournalCommand::Encourage {
            check_in_id: check_in_id.clone(),
            from_participant_id: from[1].clone(),
            reaction,
            message,
            can_see,
        };
        let executed = self
            .commands
            .journal(
                network,
                author,
                &meta(&caller, request_id, fingerprint),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(pb::EncourageResponse {
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn report_setback(
        &self,
        request: Request<pb::ReportSetbackRequest>,
    ) -> ApiResult<pb::ReportSetbackResponse> {
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
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_CHECK_IN_CHARS, false),
        );
        let visibility = violations.check(
            "visibility",
            match codec::visibility_from_wire(request.visibility) {
                Some(crate::domain::Visibility::Private) | None => Err(
                    "must be group, partner or facilitators: support has to reach someone"
                        .to_owned(),
                ),
                Some(visibility) => Ok(visibility),
            },
        );
        violations.into_result()?;
        let (Some(ids), Some(text), Some(visibility)) = (ids, text, visibility) else {
            return Err(ApiError::internal());
        };
        self.require_self_or_staff(&caller, &ids[0], &ids[1])
            .await?;
        let consent = self.consent(&ids[0], &ids[1]).await?;
        let setback_id = derived_id(&request.parent, "setback", &request_id);
        let command = JournalCommand::ReportSetback {
            setback_id,
            text,
            visibility,
            consent,
        };
        let executed = self
            .commands
            .journal(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                command,
            )
            .await
            .map_err(command_error)?;
        let counters = executed.state().counters(self.commands.clock.now());
        Ok(pb::ReportSetbackResponse {
            counters: Some(super::read::counters_view(counters)),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn propose_partnership(
        &self,
        request: Request<pb::ProposePartnershipRequest>,
    ) -> ApiResult<pb::ProposePartnershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let proposer = owned(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
            PARTICIPANT,
        )?;
        let invitee = owned(
            &caller,
            &mut violations,
            "invitee",
            &request.invitee,
            PARTICIPANT,
        )?;
        let group = owned(&caller, &mut violations, "group", &request.group, GROUP)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        violations.into_result()?;
        let (Some(proposer), Some(invitee), Some(group)) = (proposer, invitee, group) else {
            return Err(ApiError::internal());
        };
        self.require_self_or_staff(&caller, &proposer[0], &proposer[1])
            .await?;
        let network = &proposer[0];
        // The group's clinic is checked against the record: a group of another clinic
        // is not found. (A group the roster does not know yet is not eligible below.)
        if self
            .group_clinic(network, &group[2])
            .await?
            .is_some_and(|clinic| clinic != group[1])
        {
            return Err(ApiError::new(
                Code::NotFound,
                "GROUP_NOT_FOUND",
                format!("{} not found", request.group),
            ));
        }
        let active_in_group = self
            .queries
            .active_members_among(network, &group[2], [&proposer[1], &invitee[1]])
            .await?;
        let consented = self.consent(network, &proposer[1]).await?.share_check_ins
            && self.consent(network, &invitee[1]).await?.share_check_ins;
        let partnership_id = partnership_id(network, &group[2], &proposer[1], &invitee[1]);
        let command = PartnershipCommand::Propose {
            group_id: group[2].clone(),
            proposer_id: proposer[1].clone(),
            invitee_id: invitee[1].clone(),
            eligible: active_in_group == 2 && consented,
        };
        let executed = self
            .commands
            .partnership(
                network,
                &partnership_id,
                &meta(&caller, request_id, fingerprint),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(pb::ProposePartnershipResponse {
            partnership: Some(partnership_view(
                network,
                &partnership_id,
                &group[1],
                executed.state(),
            )),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn accept_partnership(
        &self,
        request: Request<pb::AcceptPartnershipRequest>,
    ) -> ApiResult<pb::AcceptPartnershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, PARTNERSHIP)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ids = violations.finish(ids)?;
        let current = self
            .commands
            .load_partnership(&ids[0], &ids[1])
            .await
            .map_err(command_error)?;
        // The invitee accepts; staff may record the acceptance for them.
        let by = if caller.role == Role::Participant {
            caller.actor_id.clone()
        } else {
            current.invitee_id.clone()
        };
        let clinic = self.partnership_clinic(&ids[0], &current).await?;
        if caller.role != Role::Participant {
            authorize(&caller, roles::STAFF, &[clinic.as_str()])?;
        }
        let executed = self
            .commands
            .partnership(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                PartnershipCommand::Accept { by },
            )
            .await
            .map_err(command_error)?;
        Ok(pb::AcceptPartnershipResponse {
            partnership: Some(partnership_view(
                &ids[0],
                &ids[1],
                &clinic,
                executed.state(),
            )),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn end_partnership(
        &self,
        request: Request<pb::EndPartnershipRequest>,
    ) -> ApiResult<pb::EndPartnershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, PARTNERSHIP)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ids = violations.finish(ids)?;
        let current = self
            .commands
            .load_partnership(&ids[0], &ids[1])
            .await
            .map_err(command_error)?;
        let clinic = self.partnership_clinic(&ids[0], &current).await?;
        if caller.role == Role::Participant {
            if !current.involves(&caller.actor_id) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    "NOT_YOUR_RECORD",
                    "only the partners may end a partnership",
                ));
            }
        } else {
            authorize(&caller, roles::STAFF, &[clinic.as_str()])?;
        }
        let command = PartnershipCommand::End {
            reason: "ended-by-member".into(),
        };
        let executed = self
            .commands
            .partnership(
                &ids[0],
                &ids[1],
                &meta(&caller, request_id, fingerprint),
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(pb::EndPartnershipResponse {
            partnership: Some(partnership_view(
                &ids[0],
                &ids[1],
                &clinic,
                executed.state(),
            )),
            consistency_token: executed.version().to_string(),
        })
    }

    pub(super) async fn set_quiet_hours(
        &self,
        request: Request<pb::SetQuietHoursRequest>,
    ) -> ApiResult<pb::SetQuietHoursResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let clinic = owned(&caller, &mut violations, "clinic", &request.clinic, CLINIC)?;
        let scope: Vec<&str> = clinic.iter().map(|ids| ids[1].as_str()).collect();
        authorize(&caller, roles::CLINIC_ADMINS, &scope)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let minute = |value: &str| {
            chrono::NaiveTime::parse_from_str(value, "%H:%M")
                .map(|time| chrono::Timelike::hour(&time) * 60 + chrono::Timelike::minute(&time))
                .map_err(|_| "must be a local time HH:MM".to_owned())
        };
        let start = violations.check("start_time", minute(&request.start_time));
        let end = violations.check("end_time", minute(&request.end_time));
        let quiet_hours = match (start, end) {
            (Some(start), Some(end)) => violations.check(
                "start_time",
                QuietHours::new(start, end).map_err(|error| error.to_string()),
            ),
            _ => None,
        };
        violations.into_result()?;
        let (Some(clinic), Some(quiet_hours)) = (clinic, quiet_hours) else {
            return Err(ApiError::internal());
        };
        let executed = self
            .commands
            .quiet_hours(
                &clinic[0],
                &clinic[1],
                &meta(&caller, request_id, fingerprint),
                quiet_hours,
            )
            .await
            .map_err(command_error)?;
        Ok(pb::SetQuietHoursResponse {
            consistency_token: executed.version().to_string(),
        })
    }
}
