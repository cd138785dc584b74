//! The integration contract as another service sees it: a subscriber over gRPC (a
//! messaging service's token) follows a scripted scenario's integration events,
//! de-duplicates them by event id, resumes after the services restart without a gap,
//! is refused another network's events, and finds no names or free text in them.

use std::collections::BTreeMap;
use std::time::Duration;

use circle_proto::accountability::v1 as pb;
use circle_proto::integration::v1 as integration;
use pb::watch_integration_events_response::Event as Item;
use prost::Message as _;
use tonic::Code;

use crate::accountability::{Circle, circle_with};
use crate::support::{System, as_facilitator, as_messaging, as_participant, refusal};

const WATCH: &str = "circle.accountability.v1.AccountabilityService/WatchIntegrationEvents";

fn watch_request(after_position: u64) -> pb::WatchIntegrationEventsRequest {
    pb::WatchIntegrationEventsRequest {
        network: "networks/acme".into(),
        event_types: Vec::new(),
        after_position,
        heartbeat_seconds: 1,
    }
}

/// What the subscriber has: each event once, by its idempotency key, and every
/// delivery (repeats included) in order.
#[derive(Default)]
struct Subscriber {
    events: BTreeMap<String, integration::IntegrationEvent>,
    deliveries: Vec<(String, u64)>,
    position: u64,
}

impl Subscriber {
    /// Reads `stream` until `done` holds for what it has (at most 20 s).
    async fn follow(
        &mut self,
        stream: &mut tonic::Streaming<pb::WatchIntegrationEventsResponse>,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done(self) {
            let next = tokio::time::timeout_at(deadline, stream.message())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "waited 20 s; have {:?}",
                        self.events
                            .values()
                            .map(|e| &e.event_type)
                            .collect::<Vec<_>>()
                    )
                })??
                .ok_or_else(|| anyhow::anyhow!("the subscription ended"))?;
            match next.event {
                Some(Item::IntegrationEvent(event)) => {
                    anyhow::ensure!(
                        event.position > self.position,
                        "positions only go forward: {} after {}",
                        event.position,
                        self.position
                    );
                    self.position = event.position;
                    self.deliveries
                        .push((event.event_id.clone(), event.position));
                    // An event already handled is dropped: its id is the key.
                    self.events.entry(event.event_id.clone()).or_insert(event);
                }
                Some(Item::HeartbeatPosition(position)) => {
                    anyhow::ensure!(position >= self.position, "a heartbeat goes no back");
                    self.position = position;
                }
                None => anyhow::bail!("an empty message"),
            }
        }
        Ok(())
    }

    /// The events' (type, subject resource), in position order.
    fn summary(&self) -> Vec<(String, String)> {
        let mut events: Vec<&integration::IntegrationEvent> = self.events.values().collect();
        events.sort_by_key(|event| event.position);
        events
            .iter()
            .map(|event| {
                let subject = match &event.payload {
                    Some(integration::integration_event::Payload::NudgeRequested(n)) => {
                        format!("{} -> {}", n.reason, n.recipient)
                    }
                    Some(integration::integration_event::Payload::NudgeAcknowledged(n)) => n
                        .nudge
                        .split("/nudges/")
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    Some(integration::integration_event::Payload::MeasurementCompleted(m)) => {
                        format!(
                            "{} {}",
                            m.measurement
                                .split("/measurements/")
                                .next()
                                .unwrap_or_default(),
                            m.instrument
                        )
                    }
                    None => String::new(),
                };
                (
                    event
                        .event_type
                        .trim_start_matches("circle.integration.v1.")
                        .to_owned(),
                    subject,
                )
            })
            .collect()
    }
}

fn phq9(item9: u32) -> Vec<pb::MeasurementAnswer> {
    (1..=9)
        .map(|item| pb::MeasurementAnswer {
            item: item.to_string(),
            option: if item == 9 { item9 } else { 1 },
        })
        .collect()
}

async fn submit_phq9(
    system: &mut System,
    participant: &str,
    actor: &'static str,
    item9: u32,
) -> anyhow::Result<()> {
    system
        .accountability
        .submit_measurement(as_participant(
            pb::SubmitMeasurementRequest {
                parent: participant.into(),
                instrument: "phq-9".into(),
                answers: phq9(item9),
                request_id: String::new(),
            },
            actor,
        ))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_subscriber_gets_each_event_once_resumes_without_gaps_and_sees_only_ids()
-> anyhow::Result<()> {
    let Circle {
        mut system,
        sam,
        jordan,
        riley,
        ..
    } = circle_with("2026-11-17T05:00:00Z", |config| {
        config
            .auth
            .services
            .insert("messaging".to_owned(), vec![WATCH.to_owned()]);
        config.auth.services.insert(
            "billing".to_owned(),
            vec!["circle.accountability.v1.AccountabilityService/ListMyNudges".to_owned()],
        );
    })
    .await?;

    // Who may not subscribe: a participant, a service not allowed the method, and the
    // messaging service asking for another network's events.
    let participant = system
        .accountability
        .watch_integration_events(as_participant(watch_request(0), "sam"))
        .await;
    assert_eq!(refusal(participant).1, "ROLE_NOT_ALLOWED");
    let billing = system
        .accountability
        .watch_integration_events(circle_testkit::request_as(
            watch_request(0),
            "acme",
            "service",
            "billing",
            &[],
        ))
        .await;
    assert_eq!(refusal(billing).1, "SERVICE_NOT_ALLOWED");
    let elsewhere = system
        .accountability
        .watch_integration_events(as_messaging(
            pb::WatchIntegrationEventsRequest {
                network: "networks/other".into(),
                ..watch_request(0)
            },
            "acme",
        ))
        .await;
    assert_eq!(
        refusal(elsewhere),
        (Code::PermissionDenied, "WRONG_NETWORK".to_owned(), vec![])
    );
    let unknown_type = system
        .accountability
        .watch_integration_events(as_messaging(
            pb::WatchIntegrationEventsRequest {
                event_types: vec!["circle.accountability.events.v1.CheckInSubmitted".into()],
                ..watch_request(0)
            },
            "acme",
        ))
        .await;
    assert_eq!(refusal(unknown_type).2, vec!["event_types".to_owned()]);

    // The subscription opens before anything happens.
    let mut subscriber = Subscriber::default();
    let mut stream = system
        .accountability
        .watch_integration_events(as_messaging(watch_request(0), "acme"))
        .await?
        .into_inner();

    // The script: a check-in with free text (no integration event), Sam's PHQ-9 with
    // item 9 positive at night (a measure, an urgent nudge to the facilitator), the
    // facilitator's acknowledgement, Jordan's PHQ-9.
    system
        .accountability
        .submit_check_in(as_participant(
            pb::SubmitCheckInRequest {
                parent: sam.clone(),
                progress: pb::Progress::Struggling as i32,
                mood: 3,
                craving: 6,
                text: "Rough night after the argument with Dana.".into(),
                visibility: pb::Visibility::Group as i32,
                ..Default::default()
            },
            "sam",
        ))
        .await?;
    submit_phq9(&mut system, &sam, "sam", 1).await?;
    let alert = system
        .accountability
        .list_my_nudges(as_facilitator(pb::ListMyNudgesRequest {
            recipient: "networks/acme/staff/staff-1".into(),
            consistency_token: system
                .accountability_stream_last_sequence()
                .await?
                .to_string(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .nudges;
    anyhow::ensure!(alert.len() == 1, "the alert: {alert:?}");
    system
        .accountability
        .acknowledge_nudge(as_facilitator(pb::AcknowledgeNudgeRequest {
            name: alert[0].name.clone(),
            request_id: String::new(),
        }))
        .await?;
    submit_phq9(&mut system, &jordan, "jordan", 0).await?;
    subscriber
        .follow(&mut stream, |s| s.events.len() >= 4)
        .await?;
    let expected = vec![
        ("MeasurementCompleted".to_owned(), format!("{sam} phq-9")),
        (
            "NudgeRequested".to_owned(),
            "safety-alert -> networks/acme/staff/staff-1".to_owned(),
        ),
        ("NudgeAcknowledged".to_owned(), sam.clone()),
        ("MeasurementCompleted".to_owned(), format!("{jordan} phq-9")),
    ];
    assert_eq!(subscriber.summary(), expected);
    let urgent = subscriber.events.values().any(|event| {
        matches!(
            &event.payload,
            Some(integration::integration_event::Payload::NudgeRequested(n))
                if n.urgent && n.nudge == alert[0].name
        )
    });
    assert!(urgent, "the safety alert is to be delivered at once");

    // A repeat, as a publisher that restarted after the server's duplicate window
    // would send it: the same event, the same id, at a new position. It reaches the
    // subscriber, which handles it once.
    let mut repeat = subscriber
        .events
        .values()
        .find(|event| event.event_type.ends_with("MeasurementCompleted"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("a measure's event"))?;
    repeat.position = 0;
    let subject = format!(
        "{}.acme.measurement-completed",
        system.env.config.subject_root("accountability-integration")
    );
    system
        .env
        .jetstream()
        .publish(subject, repeat.encode_to_vec().into())
        .await?
        .await?;
    subscriber
        .follow(&mut stream, |s| s.deliveries.len() >= 5)
        .await?;
    assert_eq!(
        subscriber.deliveries.len(),
        5,
        "{:?}",
        subscriber.deliveries
    );
    assert_eq!(
        subscriber.deliveries[4].0, repeat.event_id,
        "the fifth delivery is the repeat"
    );
    assert_eq!(
        subscriber.summary(),
        expected,
        "the repeat is one of the four"
    );

    // The services restart; the subscriber reconnects after the last position it
    // handled, and the script goes on meanwhile.
    drop(stream);
    system.restart().await?;
    submit_phq9(&mut system, &riley, "riley", 0).await?;
    let mut resumed = system
        .accountability
        .watch_integration_events(as_messaging(watch_request(subscriber.position), "acme"))
        .await?
        .into_inner();
    let before = subscriber.deliveries.len();
    subscriber
        .follow(&mut resumed, |s| s.events.len() >= 5)
        .await?;
    let mut all = expected.clone();
    all.push(("MeasurementCompleted".to_owned(), format!("{riley} phq-9")));
    assert_eq!(
        subscriber.summary(),
        all,
        "nothing missed after the restart"
    );
    assert_eq!(
        subscriber.deliveries.len() - before,
        1,
        "only what came after the position: {:?}",
        subscriber.deliveries
    );

    // Exactly once after de-duplication: every event the stream holds for this
    // network is one the subscriber has, and a fresh subscription from the start
    // delivers the same set of ids.
    let mut replay = Subscriber::default();
    let mut from_start = system
        .accountability
        .watch_integration_events(as_messaging(watch_request(0), "acme"))
        .await?
        .into_inner();
    replay
        .follow(&mut from_start, |s| s.events.len() >= 5)
        .await?;
    assert_eq!(
        replay.events.keys().collect::<Vec<_>>(),
        subscriber.events.keys().collect::<Vec<_>>()
    );

    // Asked for one type, a subscriber gets that type only.
    let mut measures = Subscriber::default();
    let mut only_measures = system
        .accountability
        .watch_integration_events(as_messaging(
            pb::WatchIntegrationEventsRequest {
                event_types: vec!["circle.integration.v1.MeasurementCompleted".into()],
                ..watch_request(0)
            },
            "acme",
        ))
        .await?
        .into_inner();
    measures
        .follow(&mut only_measures, |s| s.events.len() >= 3)
        .await?;
    assert_eq!(
        measures.summary(),
        all.iter()
            .filter(|(kind, _)| kind == "MeasurementCompleted")
            .cloned()
            .collect::<Vec<_>>()
    );
    // A position this service never sent is refused.
    let beyond = system
        .accountability
        .watch_integration_events(as_messaging(watch_request(u64::MAX / 2), "acme"))
        .await;
    assert_eq!(
        refusal(beyond),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".to_owned(),
            vec!["after_position".to_owned()]
        )
    );

    // Ids and codes only: no person's name, alias or free text anywhere in them.
    for event in subscriber.events.values() {
        let bytes = event.encode_to_vec();
        for word in [
            "Sam", "Rivera", "Sunny", "Jordan", "Kim", "Riley", "Okafor", "Dana", "argument",
            "night",
        ] {
            assert!(
                !bytes.windows(word.len()).any(|w| w == word.as_bytes()),
                "{word} in {event:?}"
            );
        }
        assert_eq!(event.network, "networks/acme");
        assert!(!event.event_id.is_empty());
    }

    // Another network's subscriber sees none of it: only heartbeats.
    let mut other = system
        .accountability
        .watch_integration_events(as_messaging(
            pb::WatchIntegrationEventsRequest {
                network: "networks/other".into(),
                ..watch_request(0)
            },
            "other",
        ))
        .await?
        .into_inner();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), other.message())
            .await??
            .and_then(|message| message.event);
        assert_eq!(next, Some(Item::HeartbeatPosition(0)), "heartbeats only");
    }
    Ok(())
}
