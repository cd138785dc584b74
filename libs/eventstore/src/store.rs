use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    context::{GetStreamErrorKind, PublishErrorKind},
    message::PublishMessage,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use futures::StreamExt;
use prost::Message as _;

use crate::key::AggregateKey;
use crate::mismatch::{self, Mismatch, Opened, StreamMismatch};
use crate::trace;
use crate::wire;

/// Header naming the event types of a commit, comma-separated (never the payload).
pub const EVENT_TYPES_HEADER: &str = "Circle-Event-Types";
/// Header with the commit's schema of envelope.
pub const ENVELOPE_HEADER: &str = "Circle-Envelope";
const ENVELOPE_VERSION: &str = "circle.eventstore.v1.Commit";

/// The shape of one service's stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Stream name, for example `ENROLLMENT`.
    pub name: String,
    /// First subject token, for example `enrollment`; the stream holds `<root>.>`.
    pub subject_root: String,
    /// 1 in development, 3 in production.
    pub replicas: usize,
    /// How long the server remembers a request id for deduplication.
    pub duplicate_window: Duration,
}

impl StreamSpec {
    pub fn new(name: impl Into<String>, subject_root: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subject_root: subject_root.into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }

    fn subject_filter(&self) -> String {
        format!("{}.>", self.subject_root)
    }

    fn desired_config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subject_filter()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_age: Duration::ZERO,
            discard: DiscardPolicy::New,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_direct: true,
            description: Some("Circle event log: one commit per command".to_owned()),
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another command appended to the aggregate first.
    #[error("the aggregate changed concurrently (expected version {expected})")]
    Conflict { expected: u64 },
    /// NATS did not answer or refused for a reason that may pass.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The existing stream is configured in a way that could lose or rewrite events.
    #[error("stream {stream} has an unsafe configuration: {reason}")]
    UnsafeStream { stream: String, reason: String },
    /// The commit is larger than the NATS server accepts in one message: the same
    /// command can never be stored, so this is not worth retrying.
    #[error("the commit is {size} bytes, over the event log's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A stored message could not be decoded.
    #[error("stored commit at sequence {sequence} is unreadable: {reason}")]
    Corrupt { sequence: u64, reason: String },
    /// The existing stream's replicas or duplicate window differ from the
    /// configuration, and `nats.stream_mismatch` is `refuse`.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

impl StoreError {
    /// A low-cardinality name of the error (`error.type` on spans and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "conflict",
            Self::Unavailable(_) => "unavailable",
            Self::UnsafeStream { .. } => "unsafe_stream",
            Self::TooLarge { .. } => "too_large",
            Self::Corrupt { .. } => "corrupt",
            Self::Mismatch(_) => "stream_mismatch",
        }
    }
}

/// Who issued a command, its idempotency key and what it asked (its fingerprint). The
/// commit's time is not the caller's to give: the repository stamps it (see
/// [`crate::Repository`]).
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    pub request_id: String,
    pub actor_role: String,
    pub actor_id: String,
    /// A fingerprint of the command's content (without its request id); empty for a
    /// step whose request id alone names what it does (a process manager's).
    pub fingerprint: String,
}

/// One event to append: its protobuf type name and encoded payload.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Vec<u8>,
}

impl NewEvent {
    pub fn from_message<M: prost::Name>(message: &M) -> Self {
        Self {
            event_type: M::full_name(),
            schema_version: 1,
            payload: message.encode_to_vec(),
        }
    }
}

/// A commit as read back from the stream. Its `sequence` is the aggregate's version
/// after it.
#[derive(Debug, Clone)]
pub struct StoredCommit {
    pub sequence: u64,
    pub subject: String,
    pub commit: wire::Commit,
    pub headers: HeaderMap,
}

/// What [`EventStore::append_commit`] did.
#[derive(Debug)]
pub(crate) enum Appended {
    Stored(Box<StoredCommit>),
    Duplicate { sequence: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly stored at this stream sequence.
    Stored { sequence: u64 },
    /// The same request id was stored before, at this sequence; nothing new was written.
    Duplicate { sequence: u64 },
}

impl AppendOutcome {
    pub fn sequence(self) -> u64 {
        match self {
            Self::Stored { sequence } | Self::Duplicate { sequence } => sequence,
        }
    }
}

/// A service's event log on JetStream.
#[derive(Clone)]
pub struct EventStore {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    spec: StreamSpec,
    opened: Opened,
    /// `messaging.client.operation.duration` of appends (seconds), by stream and
    /// outcome (`circle.outcome`: ok, duplicate, conflict, error).
    append_duration: opentelemetry::metrics::Histogram<f64>,
}

impl EventStore {
    /// [`EventStore::open_with`], refusing an existing stream whose replicas or
    /// duplicate window differ from the spec (`nats.stream_mismatch = "refuse"`).
    pub async fn open(client: async_nats::Client, spec: StreamSpec) -> Result<Self, StoreError> {
        Self::open_with(client, spec, StreamMismatch::Refuse).await
    }

    /// Creates the stream, or checks that an existing one is safe to append to: a stream
    /// whose limits could drop events, that deletes on consumption, or that allows
    /// rollups is refused rather than used. An existing stream whose replica count or
    /// duplicate window differs from the spec is refused naming what differs, or, when
    /// `on_mismatch` is `warn`, used as it is with a warning ([`EventStore::opened`]
    /// says which). Safe to run concurrently: a stream another process created first
    /// is checked like any existing one.
    pub async fn open_with(
        client: async_nats::Client,
        spec: StreamSpec,
        on_mismatch: StreamMismatch,
    ) -> Result<Self, StoreError> {
        let jetstream = jetstream::new(client);
        let unavailable =
            |error: &dyn std::fmt::Display| StoreError::Unavailable(error.to_string());
        let (existing, created) = match jetstream.get_stream(&spec.name).await {
            Ok(existing) => (existing, false),
            Err(error) if is_stream_not_found(&error) => {
                match jetstream.create_stream(spec.desired_config()).await {
                    Ok(created) => (created, true),
                    // Another process created it first (with another configuration, or
                    // the server would have answered with it): check theirs.
                    Err(refused) => (
                        jetstream
                            .get_stream(&spec.name)
                            .await
                            .map_err(|_| unavailable(&refused))?,
                        false,
                    ),
                }
            }
            Err(error) => return Err(unavailable(&error)),
        };
        let (stream, opened) = if created {
            (existing, Opened::Created)
        } else {
            let mut existing = existing;
            let config = existing
                .info()
                .await
                .map_err(|error| unavailable(&error))?
                .config
                .clone();
            check_existing(&spec, &config)?;
            let opened = mismatch::check_existing(
                &spec.name,
                &config,
                spec.replicas,
                spec.duplicate_window,
                on_mismatch,
            )?;
            (existing, opened)
        };
        // From the service's meter as it is when the store opens (after telemetry's
        // set-up).
        let append_duration = service_meter(&spec.name)
            .f64_histogram("messaging.client.operation.duration")
            .with_description("time an append takes, from publish to the stream's acknowledgement")
            .with_unit("s")
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .build();
        Ok(Self {
            jetstream,
            stream,
            spec,
            opened,
            append_duration,
        })
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// Whether [`EventStore::open_with`] created the stream or found it, and how a
    /// stream it found differs from the spec (allowed by `warn`).
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The service's stream, as opened (for its own projections).
    pub fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    pub fn subject(&self, key: &AggregateKey) -> String {
        key.subject(&self.spec.subject_root)
    }

    /// The largest message the NATS server accepts (headers and payload), as it
    /// announced when the connection was made.
    fn max_payload(&self) -> usize {
        let client = self.jetstream.client();
        match client.server_info().max_payload {
            0 => client.max_payload(),
            announced => announced,
        }
    }

    /// The aggregate's version: the stream sequence of its last commit, 0 if none.
    pub async fn version(&self, key: &AggregateKey) -> Result<u64, StoreError> {
        Ok(self
            .last_message(key)
            .await?
            .map_or(0, |message| message.sequence))
    }

    /// The aggregate's newest commit, if it has any.
    async fn last_commit(&self, key: &AggregateKey) -> Result<Option<StoredCommit>, StoreError> {
        self.last_message(key)
            .await?
            .map(|message| {
                decode_commit(
                    message.sequence,
                    message.subject.to_string(),
                    message.headers,
                    &message.payload,
                )
            })
            .transpose()
    }

    async fn last_message(
        &self,
        key: &AggregateKey,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject(key))
            .await
        {
            Ok(message) => Ok(Some(message)),
            Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                Ok(None)
            }
            Err(error) => Err(StoreError::Unavailable(error.to_string())),
        }
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, StoreError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// Reads one commit by its stream sequence.
    pub async fn read_commit(&self, sequence: u64) -> Result<StoredCommit, StoreError> {
        let message = self
            .stream
            .get_raw_message(sequence)
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        decode_commit(
            message.sequence,
            message.subject.to_string(),
            message.headers,
            &message.payload,
        )
    }

    /// Reads the aggregate's commits with sequence in `(after, until]`, in order: the
    /// first few one by one (a "next message of the subject" get each, from the stream's
    /// leader), the rest of a longer history with an ordered consumer filtered on the
    /// aggregate's subject. Most aggregates have a short history, and a consumer costs
    /// the server more than a few gets (it is made, lingers, and is deleted).
    pub async fn read(
        &self,
        key: &AggregateKey,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredCommit>, StoreError> {
        const GETS: usize = 8;
        let subject = self.subject(key);
        let mut commits = Vec::new();
        let mut after = after;
        for _ in 0..GETS {
            if until <= after {
                return Ok(commits);
            }
            let message = self
                .stream
                .get_first_raw_message_by_subject(&subject, after + 1)
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            let sequence = message.sequence;
            if sequence > until {
                // Committed after `until` was read: not asked for.
                return Ok(commits);
            }
            commits.push(decode_commit(
                sequence,
                message.subject.to_string(),
                message.headers,
                &message.payload,
            )?);
            after = sequence;
        }
        commits.extend(self.read_with_consumer(key, after, until).await?);
        Ok(commits)
    }

    /// [`EventStore::read`] with an ordered consumer.
    async fn read_with_consumer(
        &self,
        key: &AggregateKey,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredCommit>, StoreError> {
        if until <= after {
            return Ok(Vec::new());
        }
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: self.subject(key),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let mut commits = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| StoreError::Unavailable("timed out reading an aggregate".into()))?;
            let Some(message) = next else {
                return Err(StoreError::Unavailable("aggregate read ended early".into()));
            };
            let message = message.map_err(|error| StoreError::Unavailable(error.to_string()))?;
            let sequence = message
                .info()
                .map_err(|error| StoreError::Unavailable(error.to_string()))?
                .stream_sequence;
            let headers = message.headers.clone().unwrap_or_default();
            commits.push(decode_commit(
                sequence,
                message.subject.to_string(),
                headers,
                &message.payload,
            )?);
            if sequence >= until {
                return Ok(commits);
            }
        }
    }

    /// Appends one commit to the aggregate if its version is still `expected_version`.
    ///
    /// The request id becomes the message id (scoped to the aggregate), so a retry
    /// inside the duplicate window is answered as a duplicate with the original
    /// sequence. Servers 2.12+ check the expected sequence before deduplication and
    /// answer a retry with "wrong last sequence"; then the aggregate's last commit is
    /// read and a matching request id is a duplicate too.
    ///
    /// An error is the status of the append's producer span (see `append_commit`); the
    /// caller decides whether to log it.
    pub async fn append(
        &self,
        key: &AggregateKey,
        expected_version: u64,
        meta: &CommitMeta,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        Ok(
            match self
                .append_commit(
                    key,
                    expected_version,
                    meta,
                    circle_calendar::whole_microseconds(chrono::Utc::now()),
                    events,
                )
                .await?
            {
                Appended::Stored(stored) => AppendOutcome::Stored {
                    sequence: stored.sequence,
                },
                Appended::Duplicate { sequence } => AppendOutcome::Duplicate { sequence },
            },
        )
    }

    /// [`EventStore::append`] at time `at`, answering with the stored commit as the log now holds
    /// it (built here from what was sent and the acknowledged sequence, so a command
    /// costs no read-back). Errors are not logged here: the caller decides whether one
    /// is an error (a conflict the repository retries is not).
    ///
    /// Runs in a PRODUCER span `send <STREAM>` (the OpenTelemetry messaging
    /// conventions; the destination is the stream, not the subject, which holds ids)
    /// whose context the message carries in its headers, and is timed
    /// (`messaging.client.operation.duration`).
    pub(crate) async fn append_commit(
        &self,
        key: &AggregateKey,
        expected_version: u64,
        meta: &CommitMeta,
        at: circle_calendar::Time,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "send",
            otel.name = format!("send {}", self.spec.name),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.destination.name = self.spec.name.as_str(),
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.message.id = tracing::field::Empty,
            circle.aggregate_type = key.aggregate_type(),
            circle.expected_version = expected_version,
            error.type = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let appended = self
            .publish_commit(key, expected_version, meta, at, events)
            .instrument(span.clone())
            .await;
        let outcome = match &appended {
            Ok(Appended::Stored(stored)) => {
                span.record("messaging.message.id", stored.sequence.to_string());
                "ok"
            }
            Ok(Appended::Duplicate { sequence }) => {
                span.record("messaging.message.id", sequence.to_string());
                "duplicate"
            }
            Err(StoreError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        if let Err(error) = &appended {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.kind());
        }
        self.append_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                opentelemetry::KeyValue::new("messaging.system", "nats"),
                opentelemetry::KeyValue::new("messaging.operation.name", "publish"),
                opentelemetry::KeyValue::new("messaging.destination.name", self.spec.name.clone()),
                opentelemetry::KeyValue::new("circle.outcome", outcome),
            ],
        );
        appended
    }

    async fn publish_commit(
        &self,
        key: &AggregateKey,
        expected_version: u64,
        meta: &CommitMeta,
        at: circle_calendar::Time,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let timestamp = circle_calendar::timestamp(at);
        let event_types = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let commit = wire::Commit {
            request_id: meta.request_id.clone(),
            network: key.network().to_owned(),
            aggregate_type: key.aggregate_type().to_owned(),
            aggregate_id: key.id().to_owned(),
            actor: Some(wire::Actor {
                role: meta.actor_role.clone(),
                id: meta.actor_id.clone(),
            }),
            committed_at: Some(timestamp),
            command_fingerprint: meta.fingerprint.clone(),
            events: events
                .into_iter()
                .map(|event| wire::Event {
                    event_id: uuid::Uuid::now_v7().to_string(),
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    occurred_at: Some(timestamp),
                    payload: event.payload,
                })
                .collect(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_TYPES_HEADER, event_types.as_str());
        headers.insert(ENVELOPE_HEADER, ENVELOPE_VERSION);
        trace::inject_current(&mut headers);
        let payload = commit.encode_to_vec();
        let message_id = message_id(key, &meta.request_id);
        let size = message_size(&headers, &message_id, expected_version, payload.len());
        let limit = self.max_payload();
        if size > limit {
            return Err(StoreError::TooLarge { size, limit });
        }
        let publish = PublishMessage::build()
            .payload(payload.into())
            .headers(headers.clone())
            .message_id(message_id)
            .expected_last_subject_sequence(expected_version);
        let subject = self.subject(key);
        let acknowledgement = self
            .jetstream
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?
            .await;
        match acknowledgement {
            Ok(ack) if ack.duplicate => Ok(Appended::Duplicate {
                sequence: ack.sequence,
            }),
            Ok(ack) => Ok(Appended::Stored(Box::new(StoredCommit {
                sequence: ack.sequence,
                subject,
                commit,
                headers,
            }))),
            Err(error) if matches!(error.kind(), PublishErrorKind::WrongLastSequence) => {
                if let Some(last) = self.last_commit(key).await?
                    && last.commit.request_id == meta.request_id
                {
                    return Ok(Appended::Duplicate {
                        sequence: last.sequence,
                    });
                }
                Err(StoreError::Conflict {
                    expected: expected_version,
                })
            }
            Err(error) => Err(StoreError::Unavailable(error.to_string())),
        }
    }
}

/// Waits, at most `limit`, for another service's stream to exist. A service reads
/// other services' streams but never creates them.
pub async fn wait_for_stream(
    jetstream: &jetstream::Context,
    name: &str,
    limit: Duration,
) -> Result<stream::Stream, StoreError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match jetstream.get_stream(name).await {
            Ok(stream) => return Ok(stream),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(StoreError::Unavailable(format!("stream {name}: {error}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The message id scopes the request id to the aggregate (tenant included), so two
/// clients that pick the same request id for different aggregates — or for the same id
/// in another network — do not swallow each other (deduplication is stream-wide).
fn message_id(key: &AggregateKey, request_id: &str) -> String {
    format!(
        "{}.{}.{}.{}",
        key.network(),
        key.aggregate_type(),
        key.id(),
        request_id
    )
}

/// The size of a commit message on the wire as the server counts it against its
/// maximum payload: the header block ("NATS/1.0", each "name: value" line, the
/// JetStream headers the publish adds) and the payload.
fn message_size(
    headers: &HeaderMap,
    message_id: &str,
    expected_version: u64,
    payload: usize,
) -> usize {
    const LINE_END: usize = 2;
    const SEPARATOR: usize = 2;
    let line = |name: &str, value: usize| name.len() + SEPARATOR + value + LINE_END;
    let mut size = "NATS/1.0".len() + LINE_END + LINE_END;
    for (name, values) in headers.iter() {
        for value in values {
            size += line(name.as_ref(), value.as_str().len());
        }
    }
    size += line("Nats-Msg-Id", message_id.len());
    size += line(
        "Nats-Expected-Last-Subject-Sequence",
        expected_version.to_string().len(),
    );
    size + payload
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    const STREAM_NOT_FOUND: u64 = 10059;
    matches!(error.kind(), GetStreamErrorKind::JetStream(inner) if inner.error_code().0 == STREAM_NOT_FOUND)
}

pub(crate) fn decode_commit(
    sequence: u64,
    subject: String,
    headers: HeaderMap,
    payload: &[u8],
) -> Result<StoredCommit, StoreError> {
    let commit = wire::Commit::decode(payload).map_err(|error| StoreError::Corrupt {
        sequence,
        reason: error.to_string(),
    })?;
    Ok(StoredCommit {
        sequence,
        subject,
        commit,
        headers,
    })
}

/// Refuses an existing stream that could silently lose, rewrite or not store events.
fn check_existing(spec: &StreamSpec, config: &stream::Config) -> Result<(), StoreError> {
    let unsafe_because = |reason: &str| StoreError::UnsafeStream {
        stream: spec.name.clone(),
        reason: reason.to_owned(),
    };
    if !config.subjects.contains(&spec.subject_filter()) {
        return Err(unsafe_because(&format!(
            "it does not hold the subjects {}",
            spec.subject_filter()
        )));
    }
    if config.retention != RetentionPolicy::Limits {
        return Err(unsafe_because(
            "its retention deletes events once consumed (must be limits)",
        ));
    }
    if config.storage != StorageType::File {
        return Err(unsafe_because("it is not stored on disk (must be file)"));
    }
    if !config.max_age.is_zero() {
        return Err(unsafe_because("it has a max age, which expires old events"));
    }
    if config.max_messages_per_subject > 0 && !config.discard_new_per_subject {
        return Err(unsafe_because(
            "it keeps a limited number of events per subject and discards an aggregate's oldest",
        ));
    }
    let has_limit = config.max_messages > 0 || config.max_bytes > 0;
    if has_limit && config.discard != DiscardPolicy::New {
        return Err(unsafe_because(
            "it has a size limit that discards old events (use discard new or no limits)",
        ));
    }
    if !config.deny_delete || !config.deny_purge {
        return Err(unsafe_because("it allows deleting or purging events"));
    }
    if config.allow_rollup {
        return Err(unsafe_because("it allows rollups, which delete events"));
    }
    if config.no_ack {
        return Err(unsafe_because("it does not acknowledge appends"));
    }
    if config.sealed {
        return Err(unsafe_because("it is sealed"));
    }
    Ok(())
}

/// The meter of the service whose stream `stream` is (`ENROLLMENT`, namespaced or not:
/// `circle-enrollment`), so its instruments export under that service's name; the
/// process's (global) meter for any other stream.
pub(crate) fn service_meter(stream: &str) -> opentelemetry::metrics::Meter {
    let base = stream
        .split('_')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match circle_telemetry::service_name(&base) {
        Some(service) => circle_telemetry::meter(service),
        None => opentelemetry::global::meter(circle_telemetry::SCOPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_we_create_passes_our_own_check() {
        let spec = StreamSpec::new("ENROLLMENT", "enrollment");
        assert!(check_existing(&spec, &spec.desired_config()).is_ok());
    }

    #[test]
    fn limits_that_drop_old_events_are_refused() {
        let spec = StreamSpec::new("ENROLLMENT", "enrollment");
        let mut config = spec.desired_config();
        config.max_messages = 1_000_000;
        config.discard = DiscardPolicy::Old;
        let error = check_existing(&spec, &config).expect_err("must refuse");
        assert!(error.to_string().contains("discards old events"), "{error}");
        config.discard = DiscardPolicy::New;
        assert!(
            check_existing(&spec, &config).is_ok(),
            "a size limit that refuses new events loses nothing"
        );

        // Age and per-subject limits expire old events whatever the discard policy.
        let mut aged = spec.desired_config();
        aged.max_age = Duration::from_secs(3600);
        aged.discard = DiscardPolicy::New;
        assert!(check_existing(&spec, &aged).is_err());
        let mut per_subject = spec.desired_config();
        per_subject.max_messages_per_subject = 100;
        per_subject.discard = DiscardPolicy::New;
        assert!(check_existing(&spec, &per_subject).is_err());
        per_subject.discard_new_per_subject = true;
        assert!(check_existing(&spec, &per_subject).is_ok());
    }

    #[test]
    fn a_stream_that_allows_deleting_events_is_refused() {
        let spec = StreamSpec::new("ENROLLMENT", "enrollment");
        let mut config = spec.desired_config();
        config.deny_purge = false;
        assert!(check_existing(&spec, &config).is_err());
    }

    #[test]
    fn work_queue_retention_is_refused() {
        let spec = StreamSpec::new("ENROLLMENT", "enrollment");
        let mut config = spec.desired_config();
        config.retention = RetentionPolicy::WorkQueue;
        assert!(check_existing(&spec, &config).is_err());
    }
}

#[cfg(test)]
mod fuzz_tests {
    //! A stored message's payload read as a commit: arbitrary and damaged bytes are
    //! `StoreError::Corrupt` naming the message's sequence (never a panic), and a
    //! commit's encoding reads back as that commit.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use crate::fuzzing::{edited, edits};

    use super::*;

    fn commit(
        request_id: String,
        network: String,
        time: Option<(i64, i32)>,
        payloads: Vec<Vec<u8>>,
        fingerprint: String,
    ) -> wire::Commit {
        wire::Commit {
            request_id,
            network,
            aggregate_type: "group".into(),
            aggregate_id: "tuesday".into(),
            actor: Some(wire::Actor {
                role: "network-admin".into(),
                id: "admin-1".into(),
            }),
            committed_at: time.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
            events: payloads
                .into_iter()
                .enumerate()
                .map(|(index, payload)| wire::Event {
                    event_id: format!("e{index}"),
                    event_type: "circle.enrollment.events.v1.GroupCreated".into(),
                    schema_version: 1,
                    occurred_at: None,
                    payload,
                })
                .collect(),
            command_fingerprint: fingerprint,
        }
    }

    /// What reading `payload` as the commit at `sequence` gives: it, or a refusal
    /// naming that sequence.
    fn read(sequence: u64, payload: &[u8]) -> Result<(), TestCaseError> {
        match decode_commit(
            sequence,
            "enrollment.acme.group.tuesday".into(),
            HeaderMap::new(),
            payload,
        ) {
            Ok(stored) => {
                prop_assert_eq!(stored.sequence, sequence);
            }
            Err(StoreError::Corrupt { sequence: at, .. }) => {
                prop_assert_eq!(at, sequence);
            }
            Err(other) => {
                return Err(TestCaseError::fail(format!(
                    "not a corrupt commit: {other}"
                )));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_as_a_commit_never_panics(
            sequence in any::<u64>(),
            payload in vec(any::<u8>(), 0..512),
        ) {
            read(sequence, &payload)?;
        }

        #[test]
        fn decoding_a_damaged_commit_never_panics(
            sequence in any::<u64>(),
            time in proptest::option::of((any::<i64>(), any::<i32>())),
            payloads in vec(vec(any::<u8>(), 0..32), 0..4),
            edits in edits(),
        ) {
            let encoded = commit("r".into(), "acme".into(), time, payloads, "f".into()).encode_to_vec();
            read(sequence, &edited(encoded, &edits))?;
        }

        #[test]
        fn a_commit_reads_back_as_itself(
            request_id in ".{0,40}",
            network in "[a-z0-9-]{1,63}",
            time in proptest::option::of((any::<i64>(), any::<i32>())),
            payloads in vec(vec(any::<u8>(), 0..64), 0..4),
            fingerprint in ".{0,40}",
        ) {
            let written = commit(request_id, network, time, payloads, fingerprint);
            let stored = decode_commit(
                3,
                "enrollment.acme.group.tuesday".into(),
                HeaderMap::new(),
                &written.encode_to_vec(),
            );
            prop_assert_eq!(stored.ok().map(|stored| stored.commit), Some(written));
        }
    }
}
