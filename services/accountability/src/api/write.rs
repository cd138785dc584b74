//! Commands at the edge: read the caller, parse the request into the application's
//! input (names with `circle_names`, a name of another network refused at once, every
//! bad field collected), call `app::Commands`, which authorizes and runs it, and map
//! the answer to protobuf.

use circle_grpc::{Caller, Target, Violations, named};
use circle_names::{
    CheckInName, ClinicName, GoalName, GroupName, NudgeName, ParticipantName, PartnershipName,
};
use circle_proto::accountability::v1 as pb;
use circle_service::Fingerprint;
use tonic::Request;

use super::{AccountabilityApi, ApiResult, caller};
use crate::app::access::{self, Operation};
use crate::app::commands::{
    AcknowledgeNudge, CheckInAnswer, Encourage, GoalAnswer, GoalChange, Idempotency,
    PartnershipAnswer, PartnershipChange, ProposePartnership, RecordNudgeDelivery, ReportSetback,
    ReviseGoal, SetGoal, SetMeasurementCadence, SetQuietHours, SubmitCheckIn, SubmitMeasurement,
};
use crate::codec;
use crate::domain::instruments::MAX_ITEMS;
use crate::domain::journal::GoalStatus;
use crate::domain::partnership::PartnershipState;
use crate::domain::settings::QuietHours;
use crate::domain::{Cadence, Visibility};

const MAX_GOAL_CHARS: usize = 500;
const MAX_CHECK_IN_CHARS: usize = 1000;
/// The longest a measurement cadence may be.
const MAX_CADENCE_DAYS: u32 = 365;
/// The longest item id an answer may name (the catalog's are far shorter).
const MAX_ITEM_CHARS: usize = 32;

fn goal_view(answer: &GoalAnswer) -> pb::Goal {
    pb::Goal {
        name: answer.name.to_string(),
        text: answer.goal.text.clone(),
        cadence: codec::cadence_to_wire(answer.goal.cadence),
        state: match answer.goal.status {
            GoalStatus::Active => pb::GoalState::Active,
            GoalStatus::Completed => pb::GoalState::Completed,
            GoalStatus::Abandoned => pb::GoalState::Abandoned,
        } as i32,
    }
}

fn partnership_view(answer: PartnershipAnswer) -> pb::Partnership {
    pb::Partnership {
        name: answer.name.to_string(),
        group: answer.group,
        proposer: answer.proposer,
        invitee: answer.invitee,
        state: match answer.state {
            PartnershipState::Proposed => "proposed",
            PartnershipState::Active => "active",
            PartnershipState::Ended => "ended",
            PartnershipState::None => "",
        }
        .to_owned(),
    }
}

fn check_in_view(answer: CheckInAnswer) -> pb::CheckIn {
    pb::CheckIn {
        name: answer.name.to_string(),
        goal: answer.goal.map(|goal| goal.to_string()).unwrap_or_default(),
        progress: codec::progress_to_wire(answer.progress),
        mood: answer.mood,
        craving: answer.craving,
        text: answer.text,
        visibility: codec::visibility_to_wire(answer.visibility),
        submit_time: Some(codec::timestamp(answer.submit_time)),
        ..Default::default()
    }
}

fn cadence_field(violations: &mut Violations, cadence: i32) -> Option<Cadence> {
    violations.check(
        "cadence",
        codec::cadence_from_wire(cadence)
            .ok_or_else(|| "must be daily, weekly or per session".to_owned()),
    )
}

/// The request id of a command and the fingerprint of its content.
fn idempotency(request_id: String, fingerprint: Fingerprint) -> Idempotency {
    Idempotency {
        request_id,
        fingerprint,
    }
}

impl AccountabilityApi {
    pub(super) async fn set_goal(
        &self,
        request: Request<pb::SetGoalRequest>,
    ) -> ApiResult<pb::SetGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_GOAL_CHARS, true),
        );
        let cadence = cadence_field(&mut violations, request.cadence);
        let checked = violations.finish(participant.zip(text).zip(cadence))?;
        let ((participant, text), cadence) = checked;
        let answer = self
            .commands
            .set_goal(
                &caller,
                SetGoal {
                    participant,
                    text,
                    cadence,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::SetGoalResponse {
            goal: Some(goal_view(&answer)),
            consistency_token: answer.consistency_token,
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
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_GOAL_CHARS, true),
        );
        let cadence = cadence_field(&mut violations, request.cadence);
        let goal = named::<GoalName>(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ((goal, text), cadence) = violations.finish(goal.zip(text).zip(cadence))?;
        let answer = self
            .commands
            .revise_goal(
                &caller,
                ReviseGoal {
                    goal,
                    text,
                    cadence,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::ReviseGoalResponse {
            goal: Some(goal_view(&answer)),
            consistency_token: answer.consistency_token,
        })
    }

    /// The input of a command on a goal named in `name`.
    fn goal_change(
        caller: &Caller,
        name: &str,
        request_id: &str,
        fingerprint: Fingerprint,
    ) -> ApiResult<GoalChange> {
        let mut violations = Violations::default();
        let goal = named::<GoalName>(caller, &mut violations, "name", name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, request_id);
        Ok(GoalChange {
            goal: violations.finish(goal)?,
            request: idempotency(request_id, fingerprint),
        })
    }

    pub(super) async fn complete_goal(
        &self,
        request: Request<pb::CompleteGoalRequest>,
    ) -> ApiResult<pb::CompleteGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let input = Self::goal_change(&caller, &request.name, &request.request_id, fingerprint)?;
        let answer = self.commands.complete_goal(&caller, input).await?;
        Ok(pb::CompleteGoalResponse {
            goal: Some(goal_view(&answer)),
            consistency_token: answer.consistency_token,
        })
    }

    pub(super) async fn abandon_goal(
        &self,
        request: Request<pb::AbandonGoalRequest>,
    ) -> ApiResult<pb::AbandonGoalResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let input = Self::goal_change(&caller, &request.name, &request.request_id, fingerprint)?;
        let answer = self.commands.abandon_goal(&caller, input).await?;
        Ok(pb::AbandonGoalResponse {
            goal: Some(goal_view(&answer)),
            consistency_token: answer.consistency_token,
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
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        let goal = if request.goal.is_empty() {
            None
        } else {
            named::<GoalName>(&caller, &mut violations, "goal", &request.goal)?
        };
        if let (Some(participant), Some(goal)) = (&participant, &goal)
            && goal.participant != participant.participant
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
        let (((participant, progress), visibility), text) =
            violations.finish(participant.zip(progress).zip(visibility).zip(text))?;
        let answer = self
            .commands
            .submit_check_in(
                &caller,
                SubmitCheckIn {
                    participant,
                    goal,
                    progress,
                    mood: request.mood,
                    craving: request.craving,
                    text,
                    visibility,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        let consistency_token = answer.consistency_token.clone();
        Ok(pb::SubmitCheckInResponse {
            check_in: Some(check_in_view(answer)),
            consistency_token,
        })
    }

    pub(super) async fn encourage(
        &self,
        request: Request<pb::EncourageRequest>,
    ) -> ApiResult<pb::EncourageResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let check_in =
            named::<CheckInName>(&caller, &mut violations, "check_in", &request.check_in)?;
        let participant = named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
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
        let (check_in, participant) = violations.finish(check_in.zip(participant))?;
        let answer = self
            .commands
            .encourage(
                &caller,
                Encourage {
                    check_in,
                    participant,
                    reaction,
                    message,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::EncourageResponse {
            consistency_token: answer.consistency_token,
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
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let text = violations.check(
            "text",
            circle_grpc::paragraphs(&request.text, MAX_CHECK_IN_CHARS, false),
        );
        let visibility = violations.check(
            "visibility",
            match codec::visibility_from_wire(request.visibility) {
                Some(Visibility::Private) | None => Err(
                    "must be group, partner or facilitators: support has to reach someone"
                        .to_owned(),
                ),
                Some(visibility) => Ok(visibility),
            },
        );
        let ((participant, text), visibility) =
            violations.finish(participant.zip(text).zip(visibility))?;
        let answer = self
            .commands
            .report_setback(
                &caller,
                ReportSetback {
                    participant,
                    text,
                    visibility,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::ReportSetbackResponse {
            counters: Some(super::read::counters_view(answer.counters)),
            consistency_token: answer.consistency_token,
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
        let proposer = named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let invitee =
            named::<ParticipantName>(&caller, &mut violations, "invitee", &request.invitee)?;
        let group = named::<GroupName>(&caller, &mut violations, "group", &request.group)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let ((proposer, invitee), group) = violations.finish(proposer.zip(invitee).zip(group))?;
        let answer = self
            .commands
            .propose_partnership(
                &caller,
                ProposePartnership {
                    proposer,
                    invitee,
                    group,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        let consistency_token = answer.consistency_token.clone();
        Ok(pb::ProposePartnershipResponse {
            partnership: Some(partnership_view(answer)),
            consistency_token,
        })
    }

    /// The input of a command on a partnership named in `name`.
    fn partnership_change(
        caller: &Caller,
        name: &str,
        request_id: &str,
        fingerprint: Fingerprint,
    ) -> ApiResult<PartnershipChange> {
        let mut violations = Violations::default();
        let partnership = named::<PartnershipName>(caller, &mut violations, "name", name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, request_id);
        Ok(PartnershipChange {
            partnership: violations.finish(partnership)?,
            request: idempotency(request_id, fingerprint),
        })
    }

    pub(super) async fn accept_partnership(
        &self,
        request: Request<pb::AcceptPartnershipRequest>,
    ) -> ApiResult<pb::AcceptPartnershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let input =
            Self::partnership_change(&caller, &request.name, &request.request_id, fingerprint)?;
        let answer = self.commands.accept_partnership(&caller, input).await?;
        let consistency_token = answer.consistency_token.clone();
        Ok(pb::AcceptPartnershipResponse {
            partnership: Some(partnership_view(answer)),
            consistency_token,
        })
    }

    pub(super) async fn end_partnership(
        &self,
        request: Request<pb::EndPartnershipRequest>,
    ) -> ApiResult<pb::EndPartnershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let input =
            Self::partnership_change(&caller, &request.name, &request.request_id, fingerprint)?;
        let answer = self.commands.end_partnership(&caller, input).await?;
        let consistency_token = answer.consistency_token.clone();
        Ok(pb::EndPartnershipResponse {
            partnership: Some(partnership_view(answer)),
            consistency_token,
        })
    }

    pub(super) async fn acknowledge_nudge(
        &self,
        request: Request<pb::AcknowledgeNudgeRequest>,
    ) -> ApiResult<pb::AcknowledgeNudgeResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let nudge = named::<NudgeName>(&caller, &mut violations, "name", &request.name)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let nudge = violations.finish(nudge)?;
        let answer = self
            .commands
            .acknowledge_nudge(
                &caller,
                AcknowledgeNudge {
                    nudge,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::AcknowledgeNudgeResponse {
            nudge: Some(super::read::nudge_view(answer.nudge)),
            consistency_token: answer.consistency_token,
        })
    }

    pub(super) async fn record_nudge_delivery(
        &self,
        request: Request<pb::RecordNudgeDeliveryRequest>,
    ) -> ApiResult<pb::RecordNudgeDeliveryResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let nudge = named::<NudgeName>(&caller, &mut violations, "name", &request.name)?;
        // A caller who may not record receipts is refused before the rest is read.
        access::check_role(&caller, Operation::RecordNudgeDelivery)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let delivered = violations.check(
            "state",
            match pb::DeliveryState::try_from(request.state) {
                Ok(pb::DeliveryState::Delivered) => Ok(true),
                Ok(pb::DeliveryState::Failed) => Ok(false),
                _ => Err("must be DELIVERED or FAILED".to_owned()),
            },
        );
        let channel = violations.check(
            "channel",
            // The events' and the API's enums share their numbers.
            codec::channel_from_wire(request.channel)
                .ok_or_else(|| "must be SMS, PUSH or EMAIL".to_owned()),
        );
        let ((nudge, delivered), channel) = violations.finish(nudge.zip(delivered).zip(channel))?;
        let answer = self
            .commands
            .record_nudge_delivery(
                &caller,
                RecordNudgeDelivery {
                    nudge,
                    delivered,
                    channel,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::RecordNudgeDeliveryResponse {
            nudge: Some(super::read::nudge_view(answer.nudge)),
            consistency_token: answer.consistency_token,
        })
    }

    pub(super) async fn set_measurement_cadence(
        &self,
        request: Request<pb::SetMeasurementCadenceRequest>,
    ) -> ApiResult<pb::SetMeasurementCadenceResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let participant = named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let instrument =
            super::instrument_field(&mut violations, "instrument", &request.instrument, false);
        let every_days = violations.check(
            "every_days",
            if request.every_days <= MAX_CADENCE_DAYS {
                Ok(request.every_days)
            } else {
                Err(format!("must be 0 (stop) to {MAX_CADENCE_DAYS} days"))
            },
        );
        let ((participant, instrument), every_days) =
            violations.finish(participant.zip(instrument).zip(every_days))?;
        let answer = self
            .commands
            .set_measurement_cadence(
                &caller,
                SetMeasurementCadence {
                    participant,
                    instrument,
                    every_days,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::SetMeasurementCadenceResponse {
            cadence: Some(pb::MeasurementCadence {
                instrument: answer.instrument,
                every_days: answer.every_days,
            }),
            consistency_token: answer.consistency_token,
        })
    }

    pub(super) async fn submit_measurement(
        &self,
        request: Request<pb::SubmitMeasurementRequest>,
    ) -> ApiResult<pb::SubmitMeasurementResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let fingerprint = Fingerprint::of(&request);
        let mut violations = Violations::default();
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        let request_id = circle_grpc::request_id_field(&mut violations, &request.request_id);
        let instrument =
            super::instrument_field(&mut violations, "instrument", &request.instrument, false);
        let answers = violations.check(
            "answers",
            if request.answers.len() > MAX_ITEMS {
                Err(format!("at most {MAX_ITEMS} answers"))
            } else if request.answers.iter().any(|answer| {
                answer.item.is_empty() || answer.item.chars().count() > MAX_ITEM_CHARS
            }) {
                Err(format!(
                    "each answer names an item id of 1 to {MAX_ITEM_CHARS} characters"
                ))
            } else {
                Ok(request
                    .answers
                    .iter()
                    .map(|answer| (answer.item.clone(), answer.option))
                    .collect::<Vec<_>>())
            },
        );
        let ((participant, instrument), answers) =
            violations.finish(participant.zip(instrument).zip(answers))?;
        let answer = self
            .commands
            .submit_measurement(
                &caller,
                SubmitMeasurement {
                    participant,
                    instrument,
                    answers,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::SubmitMeasurementResponse {
            measurement: Some(super::read::measurement_view(answer.measurement)),
            consistency_token: answer.consistency_token,
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
        let clinic = named::<ClinicName>(&caller, &mut violations, "clinic", &request.clinic)?;
        // As before, a role or clinic the table refuses is refused before the times are
        // read (only the role when the clinic did not parse).
        let clinics = clinic.iter().map(|clinic| clinic.clinic.as_str());
        let clinics: Vec<&str> = clinics.collect();
        let target = clinic.as_ref().map(|_| Target {
            clinics: &clinics,
            ..Target::default()
        });
        access::rule(Operation::SetQuietHours).check_parsed(&caller, target.as_ref())?;
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
        let (clinic, quiet_hours) = violations.finish(clinic.zip(quiet_hours))?;
        let answer = self
            .commands
            .set_quiet_hours(
                &caller,
                SetQuietHours {
                    clinic,
                    quiet_hours,
                    request: idempotency(request_id, fingerprint),
                },
            )
            .await?;
        Ok(pb::SetQuietHoursResponse {
            consistency_token: answer.consistency_token,
        })
    }
}
