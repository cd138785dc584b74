//! `WatchIntegrationEvents`: the service's integration events (`crate::integration`)
//! of one network, after a position, as they are written, with heartbeats. For calling
//! services only (the access table; `auth.services` names which identities may call
//! it at all), in their own token's network: another network's events are refused
//! before anything is read. Read from the integration stream with an ordered consumer
//! filtered on the network's subjects, so nothing of another network is even fetched.
//! Each event is recorded in the audit log (the participant it is about) before it is
//! sent, as every read that shows a participant is.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use circle_audit::Purpose;
use circle_grpc::{ApiError, Caller, Target, Violations};
use circle_names::NetworkName;
use circle_proto::integration::v1 as pb;
use futures::StreamExt as _;
use prost::Message as _;
use tonic::Code;

use super::Queries;
use super::access::{self, Operation};

/// The integration stream as the subscription reads it.
#[derive(Clone)]
pub struct IntegrationFeed {
    pub stream: async_nats::jetstream::stream::Stream,
    /// `accountability-integration` (with the namespace, if any).
    pub subject_root: String,
}

/// What an open subscription sends: an event, or the position reached while quiet.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationItem {
    Event(Box<pb::IntegrationEvent>),
    Heartbeat(u64),
}

pub type IntegrationStream =
    Pin<Box<dyn futures::Stream<Item = Result<IntegrationItem, ApiError>> + Send + 'static>>;

/// The event types a subscription may ask for (at most this many).
pub const MAX_EVENT_TYPES: usize = 16;

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "the integration stream could not be read");
    ApiError::new(
        Code::Unavailable,
        "INTEGRATION_UNAVAILABLE",
        "the integration events cannot be read now; resume after the last position received",
    )
}

/// The participant a resource name is of (`networks/{n}/participants/{p}[/…]`).
fn participant_of(name: &str) -> Option<String> {
    let mut parts = name.split('/');
    (parts.nth(2) == Some("participants"))
        .then(|| parts.next().map(str::to_owned))
        .flatten()
}

/// The participants an event shows: the one it is about, and a partner it is for
/// (whose partnership it shows too).
fn about(event: &pb::IntegrationEvent) -> Vec<String> {
    let names: Vec<&str> = match event.payload.as_ref() {
        Some(pb::integration_event::Payload::NudgeRequested(nudge)) => {
            vec![&nudge.nudge, &nudge.recipient]
        }
        Some(pb::integration_event::Payload::NudgeAcknowledged(nudge)) => vec![&nudge.nudge],
        Some(pb::integration_event::Payload::MeasurementCompleted(measurement)) => {
            vec![&measurement.measurement]
        }
        None => Vec::new(),
    };
    let mut shown: Vec<String> = names.into_iter().filter_map(participant_of).collect();
    shown.dedup();
    shown
}

impl Queries {
    /// The integration events of `network` after `after_position`, of `types` (every
    /// type when empty), then as they are written, with a heartbeat when quiet.
    pub async fn watch_integration_events(
        &self,
        caller: &Caller,
        network: &NetworkName,
        types: BTreeSet<String>,
        after_position: u64,
        heartbeat: Duration,
        purpose: Option<Purpose>,
    ) -> Result<IntegrationStream, ApiError> {
        access::permit_unplaced(
            caller,
            Operation::WatchIntegrationEvents,
            network.network.as_str(),
            &Target::default(),
        )?;
        let feed = self
            .integration
            .clone()
            .ok_or_else(|| unavailable("no integration stream"))?;
        // A position past the stream's end is none this service sent (the server would
        // start at the end and send lower positions after it).
        let end = feed
            .stream
            .clone()
            .info()
            .await
            .map_err(unavailable)?
            .state
            .last_sequence;
        if after_position > end {
            let mut violations = Violations::default();
            // The end is not told: positions count every network's events.
            violations.add("after_position", "must be a position this service sent");
            violations.into_result()?;
        }
        let consumer = feed
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{}.{}.>", feed.subject_root, network.network),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after_position + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        let reading = Self::reading(
            caller,
            Operation::WatchIntegrationEvents,
            network.to_string(),
            purpose,
        );
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let queries = self.clone();
        let caller = caller.clone();
        let stopping = self.shutdown.signal();
        tokio::spawn(async move {
            let watch = async {
                let mut position = after_position;
                let mut last_sent = tokio::time::Instant::now();
                loop {
                    if caller.expired() {
                        let _ = sender.send(Err(super::stream_token_expired())).await;
                        return;
                    }
                    // At least every second, so an expired token ends a quiet stream
                    // promptly too.
                    let wait = heartbeat
                        .saturating_sub(last_sent.elapsed())
                        .min(Duration::from_secs(1));
                    let next = tokio::select! {
                        biased;
                        () = sender.closed() => return,
                        next = tokio::time::timeout(wait, messages.next()) => next,
                    };
                    match next {
                        Err(_quiet) if last_sent.elapsed() < heartbeat => {}
                        Err(_quiet) => {
                            if sender
                                .send(Ok(IntegrationItem::Heartbeat(position)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            last_sent = tokio::time::Instant::now();
                        }
                        Ok(Some(Ok(message))) => {
                            let sequence = match message.info() {
                                Ok(info) => info.stream_sequence,
                                Err(error) => {
                                    let _ = sender.send(Err(unavailable(error))).await;
                                    return;
                                }
                            };
                            // The consumer, recreated after a reset that came before its
                            // first message, starts over from the stream's start: what
                            // was sent already is not sent again, and positions only
                            // go forward.
                            if sequence <= position {
                                continue;
                            }
                            position = sequence;
                            // A message this service did not write well is skipped
                            // (logged), not sent: the contract is what decodes.
                            let Ok(mut event) =
                                pb::IntegrationEvent::decode(message.payload.as_ref())
                            else {
                                tracing::error!(sequence, "an integration event does not decode");
                                continue;
                            };
                            if !types.is_empty() && !types.contains(&event.event_type) {
                                continue;
                            }
                            event.position = sequence;
                            if sender.is_closed() {
                                return;
                            }
                            // Sent only once what it shows is recorded.
                            let shown = about(&event);
                            if !shown.is_empty()
                                && let Err(error) = queries.disclose(&reading, &shown).await
                            {
                                let _ = sender.send(Err(error)).await;
                                return;
                            }
                            if sender
                                .send(Ok(IntegrationItem::Event(Box::new(event))))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            last_sent = tokio::time::Instant::now();
                        }
                        Ok(Some(Err(error))) => {
                            let _ = sender.send(Err(unavailable(error))).await;
                            return;
                        }
                        Ok(None) => {
                            let _ = sender
                                .send(Err(unavailable("the subscription ended")))
                                .await;
                            return;
                        }
                    }
                }
            };
            tokio::select! {
                () = watch => {}
                () = stopping => {
                    let _ = sender.try_send(Err(super::stream_shutting_down()));
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_shows_the_participant_it_is_about_and_a_partner_it_is_for() {
        let event = |payload| pb::IntegrationEvent {
            payload: Some(payload),
            ..Default::default()
        };
        assert_eq!(
            about(&event(pb::integration_event::Payload::NudgeAcknowledged(
                pb::NudgeAcknowledged {
                    nudge: "networks/acme/participants/sam/nudges/n1".into(),
                }
            ))),
            ["sam"]
        );
        assert_eq!(
            about(&event(
                pb::integration_event::Payload::MeasurementCompleted(pb::MeasurementCompleted {
                    measurement: "networks/acme/participants/pat/measurements/m1".into(),
                    ..Default::default()
                })
            )),
            ["pat"]
        );
        let requested = |recipient: &str| {
            about(&event(pb::integration_event::Payload::NudgeRequested(
                pb::NudgeRequested {
                    nudge: "networks/acme/participants/sam/nudges/n2".into(),
                    recipient: recipient.into(),
                    ..Default::default()
                },
            )))
        };
        assert_eq!(
            requested("networks/acme/participants/jordan"),
            ["sam", "jordan"]
        );
        assert_eq!(requested("networks/acme/staff/staff-1"), ["sam"]);
        assert_eq!(requested("networks/acme/participants/sam"), ["sam"]);
        assert!(about(&pb::IntegrationEvent::default()).is_empty());
    }
}
