//! Outcome measures over gRPC: the care team sets a cadence, members submit answers
//! the service scores, a positive safety item alerts the facilitator at once in the
//! middle of the night, members' trends are for them and their care team only, and a
//! group board shows a group trend only once enough members contributed.

use circle_proto::accountability::v1 as pb;
use tonic::Code;

use crate::accountability::{Circle, circle_with};
use crate::support::{System, admin, as_caller, as_facilitator, as_participant, refusal};

/// PHQ-9 answers: items 1–9 with the given option places.
fn phq9(options: [u32; 9]) -> Vec<pb::MeasurementAnswer> {
    options
        .iter()
        .enumerate()
        .map(|(index, option)| pb::MeasurementAnswer {
            item: (index + 1).to_string(),
            option: *option,
        })
        .collect()
}

async fn submit(
    system: &mut System,
    participant: &str,
    actor: &'static str,
    answers: Vec<pb::MeasurementAnswer>,
) -> Result<pb::SubmitMeasurementResponse, tonic::Status> {
    system
        .accountability
        .submit_measurement(as_participant(
            pb::SubmitMeasurementRequest {
                parent: participant.into(),
                instrument: "phq-9".into(),
                answers,
                request_id: String::new(),
            },
            actor,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The nudges Sam lists, read under `token`.
async fn sams_nudges(
    system: &mut System,
    sam: &str,
    token: &str,
) -> anyhow::Result<Vec<pb::Nudge>> {
    Ok(system
        .accountability
        .list_my_nudges(as_participant(
            pb::ListMyNudgesRequest {
                recipient: sam.into(),
                consistency_token: token.into(),
                ..Default::default()
            },
            "sam",
        ))
        .await?
        .into_inner()
        .nudges)
}

async fn trends(
    system: &mut System,
    group: &str,
    token: &str,
) -> anyhow::Result<Vec<pb::GroupTrend>> {
    Ok(system
        .accountability
        .get_group_board(as_participant(
            pb::GetGroupBoardRequest {
                group: group.into(),
                consistency_token: token.into(),
            },
            "jordan",
        ))
        .await?
        .into_inner()
        .trends)
}

#[tokio::test]
async fn measures_are_scored_by_the_service_alert_at_night_and_a_group_trend_needs_enough_members()
-> anyhow::Result<()> {
    // Monday 16 Nov 2026, 23:00 in Chicago: inside the default quiet hours.
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        riley,
    } = circle_with("2026-11-17T05:00:00Z", |config| {
        config.accountability.group_trend_min_members = 3;
    })
    .await?;

    // The care team sets how often Sam completes the PHQ-9; Sam cannot.
    let cadence = system
        .accountability
        .set_measurement_cadence(as_facilitator(pb::SetMeasurementCadenceRequest {
            participant: sam.clone(),
            instrument: "phq-9".into(),
            every_days: 14,
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        cadence.cadence,
        Some(pb::MeasurementCadence {
            instrument: "phq-9".into(),
            every_days: 14,
        })
    );
    let own = system
        .accountability
        .set_measurement_cadence(as_participant(
            pb::SetMeasurementCadenceRequest {
                participant: sam.clone(),
                instrument: "phq-9".into(),
                every_days: 7,
                request_id: String::new(),
            },
            "sam",
        ))
        .await;
    assert_eq!(refusal(own).1, "ROLE_NOT_ALLOWED");
    let too_long = system
        .accountability
        .set_measurement_cadence(as_facilitator(pb::SetMeasurementCadenceRequest {
            participant: sam.clone(),
            instrument: "phq-99".into(),
            every_days: 400,
            request_id: String::new(),
        }))
        .await;
    assert_eq!(refusal(too_long).2, vec!["every_days".to_owned()]);
    let unknown = system
        .accountability
        .set_measurement_cadence(as_facilitator(pb::SetMeasurementCadenceRequest {
            participant: sam.clone(),
            instrument: "phq-99".into(),
            every_days: 14,
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        refusal(unknown),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".to_owned(),
            vec!["instrument".to_owned()]
        )
    );

    // Answers that can never be scored are refused and append nothing: a missing
    // item, an option past the item's set, an item twice, an unknown instrument.
    let before = system.accountability_stream_last_sequence().await?;
    let mut missing = phq9([1; 9]);
    missing.pop();
    let mut twice = phq9([1; 9]);
    twice[8].item = "1".into();
    for (answers, instrument) in [
        (missing, "phq-9"),
        (phq9([0, 0, 0, 0, 4, 0, 0, 0, 0]), "phq-9"),
        (twice, "phq-9"),
        (phq9([0; 9]), "phq-99"),
    ] {
        let refused = system
            .accountability
            .submit_measurement(as_participant(
                pb::SubmitMeasurementRequest {
                    parent: sam.clone(),
                    instrument: instrument.into(),
                    answers,
                    request_id: String::new(),
                },
                "sam",
            ))
            .await;
        let (code, reason, fields) = refusal(refused);
        assert_eq!(code, Code::InvalidArgument, "{reason}");
        let field = if instrument == "phq-99" {
            "instrument"
        } else {
            "answers"
        };
        assert_eq!(fields, vec![field.to_owned()]);
    }
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new(),
        "nothing appended"
    );

    // Sam answers item 9 "several days" at 23:00: the service scores it (a total of
    // 12, moderate) and the facilitator is alerted now, not in the morning.
    let sams = submit(&mut system, &sam, "sam", phq9([2, 2, 1, 2, 1, 1, 1, 1, 1])).await?;
    let measurement = sams.measurement.clone().unwrap_or_default();
    assert_eq!(
        measurement.scores,
        [pb::ScaleScore {
            scale: "total".into(),
            score: 12,
            band: "moderate".into(),
            significant: true,
        }]
    );
    assert!(measurement.safety_concern);
    assert_eq!(measurement.answers, phq9([2, 2, 1, 2, 1, 1, 1, 1, 1]));
    let alerts = system
        .accountability
        .list_my_nudges(as_facilitator(pb::ListMyNudgesRequest {
            recipient: "networks/acme/staff/staff-1".into(),
            consistency_token: sams.consistency_token.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .nudges;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].reason(), pb::NudgeReason::SafetyAlert);
    assert_eq!(alerts[0].level(), pb::NudgeLevel::Facilitator);
    assert!(alerts[0].name.starts_with(&format!("{sam}/nudges/")));
    assert_eq!(
        alerts[0].send_time.map(|time| time.seconds),
        Some(
            "2026-11-17T05:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()?
                .timestamp()
        ),
        "sent at 23:00 local, in quiet hours"
    );

    // Sam's trend is Sam's and the care team's: what they read is what the command
    // answered; a peer is refused.
    let listed = system
        .accountability
        .list_measurements(as_facilitator(pb::ListMeasurementsRequest {
            participant: sam.clone(),
            consistency_token: sams.consistency_token.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(listed.measurements, std::slice::from_ref(&measurement));
    assert_eq!(
        listed.cadences,
        cadence.cadence.into_iter().collect::<Vec<_>>()
    );
    let own = system
        .accountability
        .list_measurements(as_participant(
            pb::ListMeasurementsRequest {
                participant: sam.clone(),
                ..Default::default()
            },
            "sam",
        ))
        .await?
        .into_inner();
    assert_eq!(own.measurements, [measurement]);
    let peer = system
        .accountability
        .list_measurements(as_participant(
            pb::ListMeasurementsRequest {
                participant: sam.clone(),
                ..Default::default()
            },
            "jordan",
        ))
        .await;
    assert_eq!(
        refusal(peer),
        (Code::PermissionDenied, "NOT_YOUR_RECORD".to_owned(), vec![])
    );

    // Week one: Jordan too. An open week is never shown (it would move with each
    // answer).
    let jordans = submit(
        &mut system,
        &jordan,
        "jordan",
        phq9([0, 1, 0, 1, 0, 0, 0, 0, 0]),
    )
    .await?;
    let jordans_measure = jordans.measurement.clone().unwrap_or_default();
    assert!(!jordans_measure.safety_concern);
    assert_eq!(
        jordans_measure.scores,
        [pb::ScaleScore {
            scale: "total".into(),
            score: 2,
            band: "minimal".into(),
            significant: false,
        }]
    );
    assert!(
        trends(&mut system, &group, &jordans.consistency_token)
            .await?
            .is_empty(),
        "an open week is not shown"
    );
    // Week two: week one has ended with two contributors, and stays withheld (a
    // member could tell the other's score from it).
    system.clock.advance(chrono::Duration::days(7));
    let token = system
        .accountability_stream_last_sequence()
        .await?
        .to_string();
    assert!(
        trends(&mut system, &group, &token).await?.is_empty(),
        "withheld below three contributors"
    );
    submit(&mut system, &sam, "sam", phq9([2, 2, 1, 2, 1, 1, 1, 1, 0])).await?;
    submit(
        &mut system,
        &jordan,
        "jordan",
        phq9([0, 1, 0, 1, 0, 0, 0, 0, 0]),
    )
    .await?;
    let rileys = submit(
        &mut system,
        &riley,
        "riley",
        phq9([1, 1, 1, 1, 1, 1, 0, 0, 0]),
    )
    .await?;
    assert!(
        trends(&mut system, &group, &rileys.consistency_token)
            .await?
            .is_empty(),
        "three contributors, but the week is still open"
    );
    // Week three: week two shows the mean of its three totals, and no one's own score.
    system.clock.advance(chrono::Duration::days(7));
    let shown = trends(&mut system, &group, &rileys.consistency_token).await?;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(
        (shown[0].instrument.as_str(), shown[0].scale.as_str()),
        ("phq-9", "total")
    );
    assert_eq!(
        shown[0].points.len(),
        1,
        "week one stays withheld: {shown:?}"
    );
    let point = &shown[0].points[0];
    assert_eq!(
        (point.week_start.as_str(), point.contributors),
        ("2026-11-23", 3)
    );
    assert!(
        (point.mean_score - (11.0 + 2.0 + 6.0) / 3.0).abs() < 1e-9,
        "{point:?}"
    );
    // The admin's view of the board shows the same trend.
    let board = system
        .accountability
        .get_group_board(admin(pb::GetGroupBoardRequest {
            group: group.clone(),
            consistency_token: rileys.consistency_token.clone(),
        }))
        .await?
        .into_inner();
    assert_eq!(board.trends, shown);
    // Only the positive item 9 alerted: no later measure did, Sam's moderate total of
    // 11 included.
    let alerts = system
        .accountability
        .list_my_nudges(as_facilitator(pb::ListMyNudgesRequest {
            recipient: "networks/acme/staff/staff-1".into(),
            consistency_token: rileys.consistency_token.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .nudges;
    let safety: Vec<&pb::Nudge> = alerts
        .iter()
        .filter(|nudge| nudge.reason() == pb::NudgeReason::SafetyAlert)
        .collect();
    assert_eq!(safety.len(), 1, "{alerts:?}");
    // The cadence asks Sam again once 14 days have passed since the last measure
    // (24 Nov): not on 7 Dec, on 8 Dec (at 15:00 in Chicago, outside quiet hours).
    let sams_measure_due = |nudges: Vec<pb::Nudge>| {
        nudges
            .into_iter()
            .filter(|nudge| nudge.reason() == pb::NudgeReason::MeasurementDue)
            .count()
    };
    let token = system
        .nudge_pass_after(chrono::Duration::days(6) + chrono::Duration::hours(16))
        .await?;
    assert_eq!(
        sams_measure_due(sams_nudges(&mut system, &sam, &token).await?),
        0,
        "not due before 14 days"
    );
    let token = system.nudge_pass_after(chrono::Duration::days(1)).await?;
    assert_eq!(
        sams_measure_due(sams_nudges(&mut system, &sam, &token).await?),
        1,
        "due after 14 days"
    );
    // Intake coordinators (enrollment work) neither submit nor read measures.
    let intake = system
        .accountability
        .list_measurements(as_caller(
            pb::ListMeasurementsRequest {
                participant: sam.clone(),
                ..Default::default()
            },
            "intake-coordinator",
            "intake-1",
        ))
        .await;
    assert_eq!(refusal(intake).1, "ROLE_NOT_ALLOWED");
    Ok(())
}
