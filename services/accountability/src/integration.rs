//! The accountability service's integration events (`circle.integration.v1`): the
//! published contract other services subscribe to, separate from the domain events.
//! `events_of` says (purely) which integration events a domain commit makes — a nudge
//! to deliver, a nudge acknowledged, a measure completed — with ids and resource names
//! only; `Publisher`, a process manager over ACCOUNTABILITY, writes them to the
//! service's own integration stream (`ACCOUNTABILITY_INTEGRATION`, subjects
//! `accountability-integration.<network>.<kind>`: a network id and a fixed word, no
//! personal data) with the event id as `Nats-Msg-Id`. Published before its checkpoint
//! moves, so a crash may publish an event again (the server drops a repeat within its
//! duplicate window; after it, the subscriber's idempotency key does): at least once,
//! never lost. `app::Queries::watch_integration_events` serves them.

use async_nats::jetstream;
use circle_config::Config;
use circle_eventstore::{StoredCommit, StreamSpec};
use circle_projection::{ApplyError, Projection};
use circle_proto::integration::v1 as pb;
use prost::{Message as _, Name as _};
use sqlx::PgConnection;

use crate::app::queries::{participant_name, recipient_name};
use crate::codec::{self, level_text};
use crate::domain::journal::{SAFETY_ALERT, nudge_public_id};
use crate::domain::{Event, Time};

pub const SCHEMA: &str = "accountability_integration";
/// The publisher's name (its checkpoint and durable consumer).
pub const NAME: &str = "accountability-integration";

/// The integration event types this service writes, by full name.
pub fn event_types() -> [String; 3] {
    [
        pb::NudgeRequested::full_name(),
        pb::NudgeAcknowledged::full_name(),
        pb::MeasurementCompleted::full_name(),
    ]
}

/// The service's integration stream: `<ACCOUNTABILITY>_INTEGRATION`, subjects
/// `accountability-integration.…`, kept like the event log (no limits, nothing
/// deleted).
pub fn stream_spec(config: &Config) -> StreamSpec {
    StreamSpec {
        name: config.stream_name(&format!("{}_integration", crate::SERVICE)),
        subject_root: config.subject_root(&format!("{}-integration", crate::SERVICE)),
        replicas: config.nats.replicas,
        duplicate_window: std::time::Duration::from_secs(config.nats.duplicate_window_secs),
    }
}

/// The subject word of a payload (fixed, no data).
fn kind(payload: &pb::integration_event::Payload) -> &'static str {
    match payload {
        pb::integration_event::Payload::NudgeRequested(_) => "nudge-requested",
        pb::integration_event::Payload::NudgeAcknowledged(_) => "nudge-acknowledged",
        pb::integration_event::Payload::MeasurementCompleted(_) => "measurement-completed",
    }
}

fn type_name(payload: &pb::integration_event::Payload) -> String {
    match payload {
        pb::integration_event::Payload::NudgeRequested(_) => pb::NudgeRequested::full_name(),
        pb::integration_event::Payload::NudgeAcknowledged(_) => pb::NudgeAcknowledged::full_name(),
        pb::integration_event::Payload::MeasurementCompleted(_) => {
            pb::MeasurementCompleted::full_name()
        }
    }
}

/// The integration events of one journal commit's `events` (recorded at `at`), each
/// with its id (`accountability-<sequence>-<place in the commit>`: the same however
/// often it is published) and without a position (the integration stream gives it).
pub fn events_of(
    network: &str,
    participant_id: &str,
    sequence: u64,
    at: Time,
    events: &[Event],
) -> Vec<pb::IntegrationEvent> {
    let about = participant_name(network, participant_id);
    let mut out = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let payload = match event {
            Event::NudgeSent {
                nudge_id,
                level,
                reason,
                recipient_id,
                ..
            } => pb::integration_event::Payload::NudgeRequested(pb::NudgeRequested {
                nudge: format!("{about}/nudges/{}", nudge_public_id(nudge_id)),
                recipient: recipient_name(
                    network,
                    participant_id,
                    *level,
                    recipient_id.as_deref().unwrap_or_default(),
                ),
                level: level_text(*level).to_owned(),
                reason: reason.clone(),
                urgent: reason == SAFETY_ALERT,
            }),
            Event::NudgeAcknowledged { nudge_id } => {
                pb::integration_event::Payload::NudgeAcknowledged(pb::NudgeAcknowledged {
                    nudge: format!("{about}/nudges/{}", nudge_public_id(nudge_id)),
                })
            }
            Event::MeasurementRecorded {
                measurement_id,
                instrument,
                safety,
                ..
            } => pb::integration_event::Payload::MeasurementCompleted(pb::MeasurementCompleted {
                measurement: format!("{about}/measurements/{measurement_id}"),
                instrument: instrument.clone(),
                safety_concern: !safety.is_empty(),
            }),
            _ => continue,
        };
        out.push(pb::IntegrationEvent {
            event_id: format!("{}-{sequence}-{index}", crate::SERVICE),
            position: 0,
            network: format!("networks/{network}"),
            event_type: type_name(&payload),
            occur_time: Some(codec::timestamp(at)),
            payload: Some(payload),
        });
    }
    out
}

/// Writes each journal commit's integration events to the integration stream.
pub struct Publisher {
    pub jetstream: jetstream::Context,
    pub spec: StreamSpec,
}

impl Projection for Publisher {
    fn name(&self) -> &str {
        NAME
    }

    fn process_manager(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        _connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        if commit.commit.aggregate_type != "journal" {
            return Ok(());
        }
        let poison = |error: circle_eventstore::DecodeError| ApplyError::Poison(error.to_string());
        let events = codec::decode_commit(commit).map_err(poison)?;
        let at = codec::commit_time(commit).map_err(poison)?;
        let network = commit.commit.network.as_str();
        let transient = |error: String| ApplyError::Transient(error);
        for event in events_of(
            network,
            &commit.commit.aggregate_id,
            commit.sequence,
            at,
            &events,
        ) {
            let Some(payload) = &event.payload else {
                continue;
            };
            let subject = format!("{}.{network}.{}", self.spec.subject_root, kind(payload));
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.event_id.as_str());
            let acknowledgement = self
                .jetstream
                .publish_with_headers(subject, headers, event.encode_to_vec().into())
                .await
                .map_err(|error| transient(error.to_string()))?;
            acknowledgement
                .await
                .map_err(|error| transient(error.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NudgeLevel;
    use crate::domain::instruments::ScaleScore;

    #[test]
    fn a_journal_commit_becomes_ids_and_codes_only() {
        let at: Time = "2026-11-17T05:00:00Z".parse().expect("time");
        let events = vec![
            Event::CheckInSubmitted {
                check_in_id: "c1".into(),
                goal_id: None,
                progress: crate::domain::Progress::OnTrack,
                mood: 5,
                craving: 2,
                text: "private words".into(),
                visibility: crate::domain::Visibility::Group,
                session_id: None,
            },
            Event::MeasurementRecorded {
                measurement_id: "m1".into(),
                instrument: "phq-9".into(),
                version: 1,
                answers: "sealed answers".into(),
                scores: vec![ScaleScore {
                    scale: "total".into(),
                    score: 12,
                    band: "moderate".into(),
                    significant: true,
                }],
                safety: vec!["self-harm".into()],
            },
            Event::NudgeSent {
                nudge_id: "safety-m1-staff-1".into(),
                level: NudgeLevel::Facilitator,
                reason: SAFETY_ALERT.into(),
                goal_id: None,
                recipient_id: Some("staff-1".into()),
                due_at: at,
            },
            Event::NudgeAcknowledged {
                nudge_id: "g-1".into(),
            },
        ];
        let out = events_of("acme", "sam", 41, at, &events);
        let ids: Vec<&str> = out.iter().map(|event| event.event_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "accountability-41-1",
                "accountability-41-2",
                "accountability-41-3"
            ],
            "the check-in is no integration event; ids are the commit's places"
        );
        assert_eq!(
            out[0].payload,
            Some(pb::integration_event::Payload::MeasurementCompleted(
                pb::MeasurementCompleted {
                    measurement: "networks/acme/participants/sam/measurements/m1".into(),
                    instrument: "phq-9".into(),
                    safety_concern: true,
                }
            ))
        );
        assert_eq!(
            out[1].payload,
            Some(pb::integration_event::Payload::NudgeRequested(
                pb::NudgeRequested {
                    nudge: "networks/acme/participants/sam/nudges/safety-m1-staff-1".into(),
                    recipient: "networks/acme/staff/staff-1".into(),
                    level: "facilitator".into(),
                    reason: "safety-alert".into(),
                    urgent: true,
                }
            ))
        );
        assert_eq!(out[2].event_type, "circle.integration.v1.NudgeAcknowledged");
        // No text of the journal reaches the contract.
        for event in &out {
            let bytes = event.encode_to_vec();
            for secret in ["private words", "sealed answers", "moderate"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret}"
                );
            }
        }
    }
}
