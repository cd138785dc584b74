//! `circle events tail | show`: commits of a service's stream, decoded — the envelope
//! (sequence, time, actor role, request id) and each event's fields, read with the
//! protos' descriptors. Personal fields are sealed at rest (crypto-shredding), and a
//! sealed value is shown as `[sealed]`, never as its ciphertext; bytes as their length.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt as _;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Ops, Refusal};

/// How a sealed personal value is shown.
pub const SEALED: &str = "[sealed]";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    pub sequence: u64,
    pub subject: String,
    pub committed_at: String,
    pub actor_role: String,
    pub request_id: String,
    pub event_type: String,
    pub fields: Value,
}

pub fn timestamp_text(timestamp: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(timestamp.seconds, timestamp.nanos.max(0) as u32)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{}s", timestamp.seconds))
}

/// The protos' messages and enums by full name, for decoding any event payload.
pub struct Decoder {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
    /// Sealed values opened for `--reveal` (sealed text → plaintext); any other sealed
    /// value is shown as [`SEALED`].
    revealed: HashMap<String, String>,
    /// Every sealed value met while decoding (what `--reveal` tries to open).
    seen: std::sync::Mutex<Vec<String>>,
}

impl Decoder {
    pub fn new() -> anyhow::Result<Self> {
        let set = FileDescriptorSet::decode(circle_proto::FILE_DESCRIPTOR_SET)?;
        let mut decoder = Self {
            messages: HashMap::new(),
            enums: HashMap::new(),
            revealed: HashMap::new(),
            seen: std::sync::Mutex::new(Vec::new()),
        };
        for file in set.file {
            let package = file.package().to_owned();
            for message in file.message_type {
                decoder.add_message(&package, message);
            }
            for declared in file.enum_type {
                decoder
                    .enums
                    .insert(format!("{package}.{}", declared.name()), declared);
            }
        }
        Ok(decoder)
    }

    fn add_message(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested.clone());
        }
        for declared in &message.enum_type {
            self.enums
                .insert(format!("{name}.{}", declared.name()), declared.clone());
        }
        self.messages.insert(name, message);
    }

    /// A payload of message type `type_name` as JSON: field names to values, sealed
    /// values and bytes withheld. An unknown type or malformed bytes show as a note.
    pub fn decode(&self, type_name: &str, bytes: &[u8]) -> Value {
        let Some(message) = self.messages.get(type_name.trim_start_matches('.')) else {
            return Value::String(format!("<{} bytes of unknown type>", bytes.len()));
        };
        if type_name.trim_start_matches('.') == "google.protobuf.Timestamp" {
            return match prost_types::Timestamp::decode(bytes) {
                Ok(timestamp) => Value::String(timestamp_text(&timestamp)),
                Err(_) => Value::String("<malformed>".into()),
            };
        }
        self.decode_message(message, bytes)
            .unwrap_or_else(|| Value::String("<malformed>".into()))
    }

    fn decode_message(&self, message: &DescriptorProto, mut bytes: &[u8]) -> Option<Value> {
        use prost::encoding::{WireType, decode_key, decode_varint};
        let mut fields = Map::new();
        while !bytes.is_empty() {
            let (number, wire_type) = decode_key(&mut bytes).ok()?;
            let field = message
                .field
                .iter()
                .find(|field| field.number() == number as i32);
            let value = match wire_type {
                WireType::Varint => {
                    let raw = decode_varint(&mut bytes).ok()?;
                    field.map_or(Value::from(raw), |field| self.varint(field, raw))
                }
                WireType::SixtyFourBit => {
                    let (head, rest) = bytes.split_at_checked(8)?;
                    bytes = rest;
                    Value::from(u64::from_le_bytes(head.try_into().ok()?))
                }
                WireType::ThirtyTwoBit => {
                    let (head, rest) = bytes.split_at_checked(4)?;
                    bytes = rest;
                    Value::from(u32::from_le_bytes(head.try_into().ok()?))
                }
                WireType::LengthDelimited => {
                    let length = usize::try_from(decode_varint(&mut bytes).ok()?).ok()?;
                    let (head, rest) = bytes.split_at_checked(length)?;
                    bytes = rest;
                    match field.map(|field| field.r#type()) {
                        Some(Type::String) => {
                            let text = String::from_utf8_lossy(head);
                            if circle_vault::is_sealed(&text) {
                                if let Ok(mut seen) = self.seen.lock() {
                                    seen.push(text.clone().into_owned());
                                }
                                Value::String(
                                    self.revealed
                                        .get(text.as_ref())
                                        .cloned()
                                        .unwrap_or_else(|| SEALED.into()),
                                )
                            } else {
                                Value::String(text.into_owned())
                            }
                        }
                        Some(Type::Message) => {
                            self.decode(field.map(|field| field.type_name()).unwrap_or(""), head)
                        }
                        _ => Value::String(format!("<{} bytes>", head.len())),
                    }
                }
                WireType::StartGroup | WireType::EndGroup => return None,
            };
            let name = field.map_or_else(|| number.to_string(), |field| field.name().to_owned());
            let repeated = field.is_some_and(|field| field.label() == Label::Repeated);
            if repeated {
                match fields
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(values) => values.push(value),
                    other => *other = value,
                }
            } else {
                fields.insert(name, value);
            }
        }
        Some(Value::Object(fields))
    }

    fn varint(&self, field: &prost_types::FieldDescriptorProto, raw: u64) -> Value {
        match field.r#type() {
            Type::Bool => Value::Bool(raw != 0),
            Type::Enum => self
                .enums
                .get(field.type_name().trim_start_matches('.'))
                .and_then(|declared| {
                    declared
                        .value
                        .iter()
                        .find(|value| i64::from(value.number()) == raw as i64)
                })
                .map_or(Value::from(raw), |value| {
                    Value::String(value.name().to_owned())
                }),
            Type::Int32 | Type::Int64 => Value::from(raw as i64),
            _ => Value::from(raw),
        }
    }

    /// Every event of a stored commit.
    pub fn views(&self, sequence: u64, subject: &str, payload: &[u8]) -> Vec<EventView> {
        let Ok(commit) = circle_eventstore::wire::Commit::decode(payload) else {
            return vec![EventView {
                sequence,
                subject: subject.to_owned(),
                committed_at: String::new(),
                actor_role: String::new(),
                request_id: String::new(),
                event_type: "<undecodable commit>".into(),
                fields: Value::Null,
            }];
        };
        let committed_at = commit
            .committed_at
            .as_ref()
            .map(timestamp_text)
            .unwrap_or_default();
        let actor_role = commit
            .actor
            .as_ref()
            .map(|actor| actor.role.clone())
            .unwrap_or_default();
        commit
            .events
            .iter()
            .map(|event| EventView {
                sequence,
                subject: subject.to_owned(),
                committed_at: committed_at.clone(),
                actor_role: actor_role.clone(),
                request_id: commit.request_id.clone(),
                event_type: event.event_type.clone(),
                fields: self.decode(&event.event_type, &event.payload),
            })
            .collect()
    }
}

/// The services whose streams `circle events` reads (their event logs).
pub const SERVICES: [&str; 3] = ["enrollment", "sessions", "accountability"];

/// The subject of an aggregate: `AGGREGATE` is `NETWORK/TYPE/ID` (e.g.
/// `acme/participant/sam`) of `service`'s stream.
pub fn aggregate_subject(ops: &Ops, service: &str, aggregate: &str) -> anyhow::Result<String> {
    if !SERVICES.contains(&service) {
        return Err(Refusal::usage(format!(
            "unknown service {service:?}: one of {}",
            SERVICES.join(", ")
        )));
    }
    let parts: Vec<&str> = aggregate.split('/').collect();
    let valid = |part: &&str| {
        !part.is_empty()
            && part.len() <= 63
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if parts.len() != 3 || !parts.iter().all(valid) {
        return Err(Refusal::usage(format!(
            "aggregate {aggregate:?} is not NETWORK/TYPE/ID (e.g. acme/participant/sam)"
        )));
    }
    Ok(format!(
        "{}.{}",
        ops.config.subject_root(service),
        parts.join(".")
    ))
}

/// What `--reveal` needs: the key store (the master keys of the configuration), the
/// service's audit log, who is looking and why.
pub struct Reveal {
    pub keys: circle_vault::store::KeyStore,
    pub audit: circle_audit::AuditLog,
    /// The operator's id, recorded as the reader (never a name).
    pub operator: String,
    pub purpose: circle_audit::Purpose,
}

impl Reveal {
    /// Opens the configured key store and `service`'s audit log. Missing or bad master
    /// keys are a configuration error (exit 2).
    pub async fn open(
        ops: &Ops,
        service: &str,
        operator: &str,
        purpose: &str,
    ) -> anyhow::Result<Self> {
        let purpose = circle_audit::Purpose::parse(purpose).ok_or_else(|| {
            Refusal::usage(format!(
                "--purpose {purpose:?}: one of treatment, payment, operations"
            ))
        })?;
        let valid_id = !operator.is_empty()
            && operator.len() <= 63
            && operator
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_id {
            return Err(Refusal::usage(
                "--operator must be an id (1-63 of a-z, 0-9, '-'), never a name",
            ));
        }
        let master = circle_service::master_keys(&ops.config)
            .map_err(|error| Refusal::usage(error.to_string()))?;
        let keys = circle_vault::store::KeyStore::open(ops.database.clone(), master).await?;
        let audit = circle_audit::AuditLog::open(
            ops.nats.clone(),
            circle_service::audit_spec(&ops.config, service),
            &circle_service::api_name(service),
        )
        .await?;
        Ok(Self {
            keys,
            audit,
            operator: operator.to_owned(),
            purpose,
        })
    }
}

/// Every field name a sealed value may be bound to.
const SEALED_FIELDS: [&str; 12] = [
    circle_vault::field::GIVEN_NAME,
    circle_vault::field::FAMILY_NAME,
    circle_vault::field::PREFERRED_NAME,
    circle_vault::field::EMAIL,
    circle_vault::field::PHONE,
    circle_vault::field::ALIAS,
    circle_vault::field::HOLD_REASON,
    circle_vault::field::CHECK_IN,
    circle_vault::field::MEMBER_NOTE,
    circle_vault::field::GOAL,
    circle_vault::field::SETBACK,
    circle_vault::field::ENCOURAGEMENT,
];

/// The participant ids an event may seal for: its aggregate's id, and every value of
/// a field whose name says it is a participant's.
fn candidates(aggregate_id: &str, fields: &Value, into: &mut Vec<String>) {
    fn walk(value: &Value, key: &str, into: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(key, value)| walk(value, key, into)),
            Value::Array(values) => values.iter().for_each(|value| walk(value, key, into)),
            Value::String(text) if key.contains("participant") => {
                into.push(text.rsplit('/').next().unwrap_or_default().to_owned())
            }
            _ => {}
        }
    }
    into.push(aggregate_id.to_owned());
    walk(fields, "", into);
}

/// Every event of one aggregate, oldest first. With `reveal`, the sealed values that
/// open with their participants' keys are shown in clear, after the disclosure (one
/// record per participant whose data is shown, the operator as reader) is recorded in
/// the service's audit stream; if it cannot be recorded, nothing is shown.
pub async fn show(
    ops: &Ops,
    service: &str,
    aggregate: &str,
    reveal: Option<&Reveal>,
) -> anyhow::Result<Vec<EventView>> {
    let subject = aggregate_subject(ops, service, aggregate)?;
    let stream = ops.stream(service).await?.ok_or_else(|| {
        Refusal::not_found(format!(
            "stream {} does not exist",
            ops.config.stream_name(service)
        ))
    })?;
    let mut decoder = Decoder::new()?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut pending = consumer.cached_info().num_pending;
    if pending == 0 {
        return Err(Refusal::not_found(format!(
            "no events of {aggregate} in {}",
            ops.config.stream_name(service)
        )));
    }
    let mut messages = consumer.messages().await?;
    let mut commits = Vec::new();
    while pending > 0 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("timed out reading the aggregate")?
            .context("the stream read ended")??;
        let info = message.info().map_err(|error| anyhow::anyhow!("{error}"))?;
        commits.push((
            info.stream_sequence,
            message.subject.to_string(),
            message.payload.to_vec(),
        ));
        pending = info.pending;
    }
    let decode = |decoder: &Decoder| -> Vec<EventView> {
        commits
            .iter()
            .flat_map(|(sequence, subject, payload)| decoder.views(*sequence, subject, payload))
            .collect()
    };
    let views = decode(&decoder);
    let Some(reveal) = reveal else {
        return Ok(views);
    };
    let network = aggregate.split('/').next().unwrap_or_default();
    let aggregate_id = aggregate.rsplit('/').next().unwrap_or_default();
    let mut participants = Vec::new();
    for view in &views {
        candidates(aggregate_id, &view.fields, &mut participants);
    }
    participants.sort();
    participants.dedup();
    let sealed: Vec<String> = decoder
        .seen
        .lock()
        .map(|seen| seen.clone())
        .unwrap_or_default();
    let mut disclosed = std::collections::BTreeSet::new();
    for participant in &participants {
        let Some(key) = reveal.keys.opening_key(network, participant).await? else {
            continue; // never had a key, or forgotten: stays sealed
        };
        for text in &sealed {
            if decoder.revealed.contains_key(text) {
                continue;
            }
            // The value's associated data binds it to its participant and field: only
            // the right pair opens it.
            let opened = SEALED_FIELDS.iter().find_map(|field| {
                key.open(
                    circle_vault::Context {
                        network,
                        participant,
                        field,
                    },
                    text,
                )
                .ok()
            });
            if let Some(plaintext) = opened {
                decoder.revealed.insert(text.clone(), plaintext);
                disclosed.insert(participant.clone());
            }
        }
    }
    if disclosed.is_empty() {
        return Ok(views);
    }
    // The operator reads as a network administrator would (the disclosure record
    // names them and the roles; there is no token: the master keys are the licence).
    let caller = circle_auth::Caller::new(
        network,
        &reveal.operator,
        &[circle_auth::Role::NetworkAdmin],
        &[],
    );
    let reading = circle_audit::Reading::new(
        &caller,
        "CircleEventsShow",
        format!("{service}:{aggregate}"),
        Some(reveal.purpose),
        reveal.purpose,
    );
    reveal
        .audit
        .record(&reading, chrono::Utc::now(), &disclosed)
        .await
        .map_err(|error| {
            anyhow::anyhow!("the disclosure could not be recorded, so nothing is shown: {error:?}")
        })?;
    Ok(decode(&decoder))
}

/// The last `count` commits of a service's stream; with `follow`, then every new one
/// as it arrives, handed to `each` (until `each` says stop or the stream read fails).
pub async fn tail(
    ops: &Ops,
    service: &str,
    count: u64,
    follow: bool,
    mut each: impl FnMut(EventView) -> bool,
) -> anyhow::Result<()> {
    if !SERVICES.contains(&service) {
        return Err(Refusal::usage(format!(
            "unknown service {service:?}: one of {}",
            SERVICES.join(", ")
        )));
    }
    let mut stream = ops.stream(service).await?.ok_or_else(|| {
        Refusal::not_found(format!(
            "stream {} does not exist",
            ops.config.stream_name(service)
        ))
    })?;
    let last = stream.info().await?.state.last_sequence;
    if last == 0 && !follow {
        return Ok(());
    }
    let start = last.saturating_sub(count.max(1)) + 1;
    let decoder = Decoder::new()?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.min(last + 1).max(1),
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    if count == 0 && !follow {
        return Ok(());
    }
    loop {
        let next = if follow {
            messages.next().await
        } else {
            tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .context("timed out reading the stream")?
        };
        let message = next.context("the stream read ended")??;
        let info = message.info().map_err(|error| anyhow::anyhow!("{error}"))?;
        let sequence = info.stream_sequence;
        for view in decoder.views(sequence, message.subject.as_str(), &message.payload) {
            if !each(view) {
                return Ok(());
            }
        }
        if !follow && sequence >= last {
            return Ok(());
        }
    }
}

pub fn render(view: &EventView) -> String {
    format!(
        "#{} {} {} ({}, request {})\n  subject {}\n  {}\n",
        view.sequence,
        view.committed_at,
        view.event_type,
        view.actor_role,
        view.request_id,
        view.subject,
        view.fields
    )
}

#[cfg(test)]
mod tests {
    //! The operator's decoding of any payload never panics: arbitrary and damaged bytes
    //! under every message type the protos declare (and names they do not) show as
    //! fields or a note, and so do whole commits; a valid event shows its fields.

    use circle_eventstore::fuzzing::{edited, edits};
    use circle_proto::accountability::events::v1 as accountability;
    use circle_proto::enrollment::events::v1 as enrollment;
    use circle_proto::sessions::events::v1 as sessions;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn decoder() -> &'static Decoder {
        static DECODER: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        DECODER.get_or_init(|| Decoder::new().expect("the protos' descriptors decode"))
    }

    /// Every message type the protos declare, with a leading dot too, and arbitrary
    /// text.
    fn type_name() -> impl Strategy<Value = String> {
        let mut known: Vec<String> = decoder().messages.keys().cloned().collect();
        known.sort();
        prop_oneof![
            4 => proptest::sample::select(known.clone()),
            1 => proptest::sample::select(known).prop_map(|name| format!(".{name}")),
            1 => ".{0,40}",
        ]
    }

    fn timestamp() -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: 1_795_132_800,
            nanos: 250_000_000,
        }
    }

    /// Filled events of each service, a commit of them and a timestamp: (type, bytes).
    fn samples() -> Vec<(String, Vec<u8>)> {
        fn of<M: prost::Name>(message: &M) -> (String, Vec<u8>) {
            (M::full_name(), message.encode_to_vec())
        }
        let group = of(&enrollment::GroupCreated {
            clinic_id: "north".into(),
            display_name: "Process".into(),
            modality: "process".into(),
            level_of_care: "outpatient".into(),
            capacity: 12,
            admission_mode: enrollment::AdmissionMode::Closed as i32,
            time_zone: "America/Chicago".into(),
            facilitators: vec![enrollment::Facilitator {
                staff_id: "s1".into(),
                role: enrollment::FacilitatorRole::Lead as i32,
            }],
            schedule: Some(enrollment::Schedule {
                iso_weekdays: vec![2, 4],
                start_minute: 18 * 60 + 30,
                duration_minutes: 90,
                start_date: "2026-12-01".into(),
                end_date: String::new(),
                exception_dates: vec!["2026-12-24".into()],
            }),
        });
        let forgotten = of(&enrollment::ParticipantForgotten {
            reason: enrollment::ForgetReason::LegalOrder as i32,
            reference: "ticket-42".into(),
            forgotten_at: Some(timestamp()),
        });
        let scheduled = of(&sessions::SessionScheduled {
            group_id: "tuesday".into(),
            clinic_id: "north".into(),
            start_time: Some(timestamp()),
            duration_minutes: 90,
            origin: sessions::SessionOrigin::AdHoc as i32,
        });
        let check_in = of(&accountability::CheckInSubmitted {
            check_in_id: "c1".into(),
            goal_id: "g1".into(),
            progress: accountability::Progress::OnTrack as i32,
            mood: 7,
            craving: 2,
            text: "v1.sealed-text".into(),
            visibility: accountability::Visibility::Group as i32,
            session_id: String::new(),
        });
        let commit = of(&circle_eventstore::wire::Commit {
            request_id: "r".into(),
            network: "acme".into(),
            aggregate_type: "group".into(),
            aggregate_id: "tuesday".into(),
            actor: Some(circle_eventstore::wire::Actor {
                role: "network-admin".into(),
                id: "admin-1".into(),
            }),
            committed_at: Some(timestamp()),
            events: [&group, &forgotten]
                .into_iter()
                .map(|(event_type, payload)| circle_eventstore::wire::Event {
                    event_id: "e".into(),
                    event_type: event_type.clone(),
                    schema_version: 1,
                    occurred_at: Some(timestamp()),
                    payload: payload.clone(),
                })
                .collect(),
            command_fingerprint: "f".into(),
        });
        let time = (
            "google.protobuf.Timestamp".to_owned(),
            timestamp().encode_to_vec(),
        );
        vec![group, forgotten, scheduled, check_in, commit, time]
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            type_name in type_name(),
            bytes in vec(any::<u8>(), 0..256),
        ) {
            let shown = decoder().decode(&type_name, &bytes);
            prop_assert!(shown.is_object() || shown.is_string(), "{}", shown);
        }

        #[test]
        fn decoding_damaged_events_never_panics(
            index in any::<Index>(),
            other_type in type_name(),
            keep_type in any::<bool>(),
            edits in edits(),
        ) {
            let samples = samples();
            let (own_type, bytes) = index.get(samples.as_slice()).clone();
            let type_name = if keep_type { own_type } else { other_type };
            let shown = decoder().decode(&type_name, &edited(bytes, &edits));
            prop_assert!(shown.is_object() || shown.is_string(), "{}", shown);
        }

        #[test]
        fn showing_arbitrary_or_damaged_commits_never_panics(
            bytes in vec(any::<u8>(), 0..256),
            edits in edits(),
            damage_a_commit in any::<bool>(),
        ) {
            let bytes = if damage_a_commit {
                let commit = samples().swap_remove(4).1;
                edited(commit, &edits)
            } else {
                bytes
            };
            let views = decoder().views(7, "enrollment.acme.group.tuesday", &bytes);
            match circle_eventstore::wire::Commit::decode(bytes.as_slice()) {
                Ok(commit) => prop_assert_eq!(views.len(), commit.events.len()),
                Err(_) => {
                    prop_assert_eq!(views.len(), 1);
                    prop_assert_eq!(views[0].event_type.as_str(), "<undecodable commit>");
                }
            }
        }

        #[test]
        fn a_valid_event_shows_its_fields(
            display_name in "[a-zA-Z ]{1,30}",
            capacity in 1u32..=u32::MAX,
            staff_id in "[a-z0-9-]{1,20}",
        ) {
            let message = enrollment::GroupCreated {
                display_name: display_name.clone(),
                capacity,
                admission_mode: enrollment::AdmissionMode::Closed as i32,
                facilitators: vec![enrollment::Facilitator {
                    staff_id: staff_id.clone(),
                    role: enrollment::FacilitatorRole::Lead as i32,
                }],
                ..Default::default()
            };
            let shown = decoder().decode(
                "circle.enrollment.events.v1.GroupCreated",
                &message.encode_to_vec(),
            );
            prop_assert_eq!(shown["display_name"].as_str(), Some(display_name.as_str()));
            prop_assert_eq!(shown["capacity"].as_u64(), Some(u64::from(capacity)));
            prop_assert_eq!(shown["admission_mode"].as_str(), Some("ADMISSION_MODE_CLOSED"));
            prop_assert_eq!(
                shown["facilitators"][0]["staff_id"].as_str(),
                Some(staff_id.as_str())
            );
        }
    }
}
