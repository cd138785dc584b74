//! One trace end to end, exported for real: an OTLP/gRPC receiver started here, the
//! process's telemetry exporting to it, and a client's `traceparent` followed from
//! its call into enrollment, through the ENROLLMENT append, into the projectors of
//! sessions and accountability, and on into the command accountability's partnership
//! guard issues in reaction; with the RPC conventions on the server span, each
//! service's `service.name`, the RPC duration metric, and no personal data in
//! anything exported.

use std::collections::HashMap;
use std::time::Duration;

use circle_config::{LogFormat, TelemetryConfig};
use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use circle_testkit::otlp::{ExportedSpan, OtlpReceiver};

use crate::accountability::{Circle, circle};
use crate::support::{admin, as_participant, eventually};

/// The caller's trace and the caller's span, as its `traceparent` names them.
const TRACE_ID: &str = "5ca1ab1e0ddba11c0ffee0000000d0c5";
const CALLER_SPAN_ID: &str = "0be7a11e0ddba115";
/// What the test's people are called (and Sam's alias): none may be exported.
const PERSONAL: [&str; 4] = ["Rivera", "Okafor", "Kim", "Sunny"];
const WAIT: Duration = Duration::from_secs(20);

/// The span with `span_id` and every span above it in the same trace.
fn ancestry<'a>(spans: &'a [ExportedSpan], span: &'a ExportedSpan) -> Vec<&'a ExportedSpan> {
    let by_id: HashMap<&str, &ExportedSpan> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    let mut chain = vec![span];
    let mut current = span;
    while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
        chain.push(parent);
        current = parent;
    }
    chain
}

/// A projection's (or process manager's) CONSUMER span of the trace: the one that
/// processed a message for it (its consumer group is the projection).
fn consumer<'a>(spans: &'a [ExportedSpan], projection: &str) -> Option<&'a ExportedSpan> {
    spans.iter().find(|span| {
        span.trace_id == TRACE_ID
            && span.kind == 5
            && span.attribute("messaging.consumer.group.name") == Some(projection)
    })
}

/// An append: the event store's PRODUCER span (`send <STREAM>`).
fn is_append(span: &ExportedSpan) -> bool {
    span.kind == 4 && span.name.starts_with("send ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_a_callers_traceparent_to_the_command_another_service_issues_in_reaction()
-> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let telemetry = circle_telemetry::init(
        "circle-e2e",
        &TelemetryConfig {
            log_filter: "info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval_ms: 100,
            instance_id: "telemetry-test".into(),
        },
    )?;
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-16T18:00:00Z").await?;
    // Sam and Jordan become partners: when Jordan leaves the group, accountability's
    // partnership guard ends the partnership by itself (a command of its own).
    let proposed = system
        .accountability
        .propose_partnership(as_participant(
            pb::ProposePartnershipRequest {
                participant: sam.clone(),
                invitee: jordan.clone(),
                group: group.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner()
        .partnership
        .unwrap_or_default();
    system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: proposed.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?;
    // The guard finds partnerships in accountability's read model: wait until it
    // shows this one, or the guard would have nothing to end.
    let partnership_id = proposed
        .name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pool = system.env.pool.clone();
    eventually(
        || {
            let (pool, partnership_id) = (pool.clone(), partnership_id.clone());
            async move {
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM accountability.partnerships WHERE partnership_id = $1",
                )
                .bind(partnership_id)
                .fetch_optional(&pool)
                .await?;
                Ok(state)
            }
        },
        |state| state.as_deref() == Some("active"),
    )
    .await?;

    // A call refused at the door is traced too (the layer is outside authentication).
    let refused = system
        .enrollment
        .get_group(tonic::Request::new(enrollment::GetGroupRequest {
            name: group.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        refused.map_err(|status| status.code()).err(),
        Some(tonic::Code::Unauthenticated)
    );

    // The client's call, in the client's own trace.
    let mut discharge = admin(enrollment::DischargeParticipantRequest {
        name: format!("{group}/memberships/jordan"),
        reason: enrollment::EndReason::Completed as i32,
        request_id: String::new(),
    });
    discharge.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse()?,
    );
    system.enrollment.discharge_participant(discharge).await?;

    // The server span: the caller's trace, the caller's span as its parent, SERVER,
    // the RPC conventions, enrollment's resource.
    let method = "circle.enrollment.v1.EnrollmentService/DischargeParticipant";
    let server = receiver
        .wait_for_spans(WAIT, |spans| {
            spans
                .iter()
                .find(|span| span.name == method && span.trace_id == TRACE_ID)
                .cloned()
        })
        .await?;
    assert_eq!(server.parent_span_id, CALLER_SPAN_ID);
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(server.status_code, 0, "an OK call leaves the status unset");
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "circle.enrollment.v1.EnrollmentService"),
        ("rpc.method", "DischargeParticipant"),
        ("rpc.grpc.status_code", "0"),
    ] {
        assert_eq!(server.attribute(key), Some(value), "{key} of {server:#?}");
    }
    assert_eq!(server.service, "circle-enrollment");
    assert_eq!(
        server.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        server
            .resource
            .get("service.instance.id")
            .map(String::as_str),
        Some("telemetry-test")
    );

    // The whole chain, in the caller's trace: the append under the server span, the
    // roster projectors of sessions and accountability, the partnership guard, the
    // command it issued (an append on ACCOUNTABILITY under the guard's span), and
    // accountability's read model applying that command's commit.
    let chain = receiver
        .wait_for_spans(WAIT, |spans| {
            // Enrollment's own append is the nearest below the server span (the
            // follow-on command's append is below it too, across NATS).
            let append = spans
                .iter()
                .filter(|span| span.trace_id == TRACE_ID && is_append(span))
                .filter_map(|span| {
                    let depth = ancestry(spans, span)
                        .iter()
                        .position(|above| above.span_id == server.span_id)?;
                    Some((depth, span))
                })
                .min_by_key(|(depth, _)| *depth)
                .map(|(_, span)| span)?;
            let sessions_roster = consumer(spans, "sessions-roster")?;
            let accountability_roster = consumer(spans, "accountability-roster")?;
            let guard = consumer(spans, "accountability-partnership-guard")?;
            let follow_on = spans.iter().find(|span| {
                span.trace_id == TRACE_ID
                    && is_append(span)
                    && ancestry(spans, span)
                        .iter()
                        .any(|above| above.span_id == guard.span_id)
            })?;
            let read_model = consumer(spans, "accountability-read-model")?;
            Some([
                append.clone(),
                sessions_roster.clone(),
                accountability_roster.clone(),
                guard.clone(),
                follow_on.clone(),
                read_model.clone(),
            ])
        })
        .await?;
    let [
        append,
        sessions_roster,
        accountability_roster,
        guard,
        follow_on,
        read_model,
    ] = &chain;
    assert_eq!(append.service, "circle-enrollment", "{append:#?}");
    // The messaging conventions: the appends are PRODUCER spans `send <STREAM>` …
    for (producer, stream) in [(append, "ENROLLMENT"), (follow_on, "ACCOUNTABILITY")] {
        assert!(
            producer.name.starts_with(&format!("send {stream}")),
            "{producer:#?}"
        );
        assert_eq!(producer.attribute("messaging.system"), Some("nats"));
        assert_eq!(producer.attribute("messaging.operation.type"), Some("send"));
        assert!(
            producer
                .attribute("messaging.destination.name")
                .is_some_and(|name| name.starts_with(stream)),
            "{producer:#?}"
        );
    }
    assert_eq!(follow_on.service, "circle-accountability", "{follow_on:#?}");
    // … and each projector's is a CONSUMER span `process <STREAM>`, the child of the
    // append whose message it processed, under its own service's name.
    for (consumer_span, producer, service) in [
        (sessions_roster, append, "circle-sessions"),
        (accountability_roster, append, "circle-accountability"),
        (guard, append, "circle-accountability"),
        (read_model, follow_on, "circle-accountability"),
    ] {
        assert_eq!(
            consumer_span.parent_span_id, producer.span_id,
            "{consumer_span:#?}"
        );
        assert_eq!(consumer_span.service, service, "{consumer_span:#?}");
        assert!(
            consumer_span.name.starts_with("process "),
            "{consumer_span:#?}"
        );
        assert_eq!(consumer_span.attribute("messaging.system"), Some("nats"));
        assert_eq!(
            consumer_span.attribute("messaging.operation.type"),
            Some("process")
        );
        assert!(
            consumer_span.attribute("messaging.message.id").is_some(),
            "{consumer_span:#?}"
        );
    }
    // A batch's span links to the appends of the messages it holds.
    let linked = receiver
        .wait_for_spans(WAIT, |spans| {
            spans
                .iter()
                .find(|span| {
                    span.service == "circle-sessions"
                        && span
                            .links
                            .iter()
                            .any(|(trace, id)| trace == TRACE_ID && *id == append.span_id)
                })
                .cloned()
        })
        .await?;
    assert_eq!(linked.kind, 5, "{linked:#?}");
    assert_eq!(
        ancestry(&receiver.spans(), append)
            .last()
            .map(|root| root.span_id.clone()),
        Some(server.span_id.clone()),
        "the append's root in this process is the server span"
    );

    // A refused call: traced and measured with its status, not a server error.
    let refusal = receiver
        .wait_for_spans(WAIT, |spans| {
            spans
                .iter()
                .find(|span| span.name == "circle.enrollment.v1.EnrollmentService/GetGroup")
                .cloned()
        })
        .await?;
    assert_eq!(refusal.attribute("rpc.grpc.status_code"), Some("16"));
    assert_eq!(refusal.status_code, 0, "UNAUTHENTICATED is the client's");

    // Each service's RPCs are measured under its own service.name, by method and status.
    receiver
        .wait_for_metric("rpc.server.call.duration", WAIT, |points| {
            points.iter().any(|point| {
                point.service == "circle-enrollment"
                    && point.unit == "s"
                    && point.attribute("rpc.method") == Some("DischargeParticipant")
                    && point.attribute("rpc.grpc.status_code") == Some("0")
                    && point.attribute("rpc.system") == Some("grpc")
                    && point.value.as_f64() >= 1.0
            }) && points.iter().any(|point| {
                point.service == "circle-accountability"
                    && point.attribute("rpc.method") == Some("AcceptPartnership")
            }) && points.iter().any(|point| {
                point.attribute("rpc.method") == Some("GetGroup")
                    && point.attribute("rpc.grpc.status_code") == Some("16")
            })
        })
        .await?;
    // Health checks are neither traced nor measured.
    assert!(
        receiver
            .spans()
            .iter()
            .all(|span| !span.name.starts_with("grpc.health")),
        "health checks are not traced"
    );

    // Nothing exported holds what the test's people are called: not the spans of
    // the calls that registered them (with their names), not any attribute.
    let spans = receiver.spans();
    assert!(spans.len() > 20, "{} spans", spans.len());
    for span in &spans {
        for text in span.texts() {
            for personal in PERSONAL {
                assert!(
                    !text.contains(personal),
                    "{personal:?} exported in {span:#?}"
                );
            }
        }
    }
    for text in receiver.metric_texts() {
        for personal in PERSONAL {
            assert!(!text.contains(personal), "{personal:?} in a metric: {text}");
        }
    }
    drop(system);
    drop(telemetry);
    Ok(())
}

/// The latest exported value of `name` for `projection`, exported under `service`.
fn latest(
    points: &[circle_testkit::otlp::MetricPoint],
    service: &str,
    projection: &str,
) -> Option<f64> {
    points
        .iter()
        .filter(|point| {
            point.service == service && point.attribute("circle.projection") == Some(projection)
        })
        .max_by_key(|point| point.time_unix_nano)
        .map(|point| point.value.as_f64())
}

/// Projection lag, read from the exported metrics: it rises while enrollment's read
/// model is held still (its checkpoint row locked, as a long transaction or a stuck
/// database would) and the stream goes on growing, and returns to zero once it is let
/// go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_lag_rises_while_a_projector_is_held_and_returns_to_zero() -> anyhow::Result<()>
{
    let receiver = OtlpReceiver::start().await?;
    let telemetry = circle_telemetry::init(
        "circle-e2e",
        &TelemetryConfig {
            log_filter: "warn".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval_ms: 100,
            instance_id: "lag-test".into(),
        },
    )?;
    let mut system = crate::support::System::start_at("2026-11-16T18:00:00Z").await?;
    system.clinic("north").await?;
    let (service, projection) = ("circle-enrollment", "enrollment-read-model");
    let caught_up = |points: &[circle_testkit::otlp::MetricPoint]| {
        latest(points, service, projection) == Some(0.0)
    };
    receiver
        .wait_for_metric("circle.projection.lag.events", WAIT, caught_up)
        .await?;

    // Held: its next batch waits for the checkpoint row, which this transaction holds.
    let mut hold = system.env.pool.begin().await?;
    sqlx::query(
        "SELECT last_sequence FROM enrollment.projection_checkpoint
         WHERE projection = $1 FOR UPDATE",
    )
    .bind(projection)
    .fetch_one(&mut *hold)
    .await?;
    for clinic in ["east", "south", "west"] {
        system.clinic(clinic).await?;
    }
    receiver
        .wait_for_metric("circle.projection.lag.events", WAIT, |points| {
            latest(points, service, projection) >= Some(3.0)
        })
        .await?;
    receiver
        .wait_for_metric("circle.projection.lag.seconds", WAIT, |points| {
            latest(points, service, projection) >= Some(1.0)
        })
        .await?;

    // Let go: it applies what waited, and the lag is zero again.
    hold.rollback().await?;
    receiver
        .wait_for_metric("circle.projection.lag.events", WAIT, caught_up)
        .await?;
    receiver
        .wait_for_metric("circle.projection.lag.seconds", WAIT, caught_up)
        .await?;
    // Its events were counted as applied, under enrollment's name.
    let applied = receiver
        .wait_for_metric("circle.projection.events_applied", WAIT, |points| {
            latest(points, service, projection) >= Some(4.0)
        })
        .await?;
    assert!(!applied.is_empty());
    // The connections' health, under the service's name: the pool's connections by
    // state, and NATS connected.
    receiver
        .wait_for_metric("db.client.connection.count", WAIT, |points| {
            points.iter().any(|point| {
                point.service == service
                    && point.attribute("db.client.connection.state") == Some("idle")
            }) && points.iter().any(|point| {
                point.service == service
                    && point.attribute("db.client.connection.state") == Some("used")
            })
        })
        .await?;
    receiver
        .wait_for_metric("circle.nats.connected", WAIT, |points| {
            points
                .iter()
                .any(|point| point.service == service && point.value.as_f64() == 1.0)
        })
        .await?;
    drop(system);
    drop(telemetry);
    Ok(())
}
