//! The audit log (BLUEPRINT §4; 42 CFR 2.24 and HIPAA 45 CFR 164.528, the accounting
//! of disclosures): every read that discloses a participant's data is recorded — who
//! read (subject, roles, the calling service), what (the RPC and the resource it
//! named), when, why (the purpose) and the request's trace — before it is answered,
//! one record per participant whose data the answer holds, so a participant's
//! accounting is a lookup by their id.
//!
//! - [`Purpose`] and [`stated_purpose`]: why, as a request states it in its
//!   `circle-purpose` metadata; otherwise the operation's default is recorded.
//! - [`AuditLog`]: a service's own audit stream (`<SERVICE>_AUDIT`, subjects
//!   `<service>-audit.<network>.participant.<participant>`), provisioned and checked
//!   like the event log: file storage, deletes and purges denied, no rollups, no limit
//!   that drops records — only the configured retention (`max_age`, at least six
//!   years). [`AuditLog::record`] appends the records of one read (a [`Reading`]) and
//!   fails the read (`UNAVAILABLE`, `AUDIT_UNAVAILABLE`) when it cannot: nothing is
//!   answered unrecorded.
//! - [`Disclosed`]: a record as read back, for the projection the accounting is read
//!   from.
//!
//! A record is a commit envelope (`circle.eventstore.v1.Commit`, so the projection
//! runtime reads it like any stream) holding one `ParticipantDataDisclosed`. Ids only:
//! no names or free text in records, subjects or headers. A participant reading their
//! own data is not a disclosure to anyone and is not recorded (HIPAA's accounting
//! leaves out disclosures to the individual); neither is anything a service's own
//! process managers read.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    context::GetStreamErrorKind,
    message::PublishMessage,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use circle_calendar::Time;
use circle_eventstore::mismatch::{self, Mismatch, Opened, StreamMismatch};
use circle_eventstore::{HeaderInjector, wire};
use circle_grpc::{ApiError, Caller, Role};
use circle_names::{Id, ParticipantName};
use circle_proto::audit::events::v1 as pb;
use prost::{Message as _, Name as _};
use tonic::Code;

/// The request metadata a caller states its purpose in.
pub const PURPOSE_METADATA: &str = "circle-purpose";

/// The aggregate type of a record's subject and envelope: the participant whose data
/// was disclosed (`<root>.<network>.participant.<participant>`).
pub const AGGREGATE_TYPE: &str = "participant";

/// Why a participant's data was read: HIPAA's treatment, payment and health care
/// operations (45 CFR 164.506), the purposes a care team reads for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    Treatment,
    Payment,
    /// Health care operations (quality review, administration, audits).
    Operations,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Self::Treatment, Self::Payment, Self::Operations];

    /// As a request states it (`circle-purpose`) and the read model keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Treatment => "treatment",
            Self::Payment => "payment",
            Self::Operations => "operations",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|purpose| purpose.as_str() == value)
    }

    fn to_wire(self) -> pb::Purpose {
        match self {
            Self::Treatment => pb::Purpose::Treatment,
            Self::Payment => pb::Purpose::Payment,
            Self::Operations => pb::Purpose::HealthCareOperations,
        }
    }

    fn from_wire(value: i32) -> Option<Self> {
        match pb::Purpose::try_from(value).ok()? {
            pb::Purpose::Treatment => Some(Self::Treatment),
            pb::Purpose::Payment => Some(Self::Payment),
            pb::Purpose::HealthCareOperations => Some(Self::Operations),
            pb::Purpose::Unspecified => None,
        }
    }
}

/// The purpose a request states in its `circle-purpose` metadata, if any; a value not
/// on the list (or given twice) is an error, the description of a field violation.
pub fn stated_purpose(metadata: &tonic::metadata::MetadataMap) -> Result<Option<Purpose>, String> {
    let mut values = metadata.get_all(PURPOSE_METADATA).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let listed = || {
        let names: Vec<&str> = Purpose::ALL
            .iter()
            .map(|purpose| purpose.as_str())
            .collect();
        format!("must be one of {}", names.join(", "))
    };
    if values.next().is_some() {
        return Err(format!("must be given once; {}", listed()));
    }
    value
        .to_str()
        .ok()
        .and_then(Purpose::parse)
        .map(Some)
        .ok_or_else(listed)
}

/// The W3C trace id (32 lowercase hex digits) of the current span's OpenTelemetry
/// context, or empty when the request is not traced (no OpenTelemetry layer, or no
/// sampled trace).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

/// One read as the audit log records it: taken when the read starts (its trace is the
/// current span's), recorded with the participants its answer discloses.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    network: String,
    actor_id: String,
    actor_roles: Vec<String>,
    calling_service: String,
    /// The caller's own participant id: their own data is not disclosed to anyone.
    own_record: Option<String>,
    /// A service's own process manager: reads inside the service disclose nothing.
    in_process: bool,
    method: &'static str,
    resource: String,
    purpose: Purpose,
    purpose_stated: bool,
    trace_id: String,
}

impl Reading {
    /// `caller` runs `method` (the RPC's name, e.g. `GetSession`) on `resource` (the
    /// full resource name the request named), for the purpose it `stated` or else the
    /// operation's `default`.
    pub fn new(
        caller: &Caller,
        method: &'static str,
        resource: impl Into<String>,
        stated: Option<Purpose>,
        default: Purpose,
    ) -> Self {
        Self {
            network: caller.network.clone(),
            actor_id: caller.actor_id.clone(),
            actor_roles: caller
                .roles
                .iter()
                .map(|role| role.as_str().to_owned())
                .collect(),
            calling_service: if caller.has(Role::Service) {
                caller.actor_id.clone()
            } else {
                String::new()
            },
            own_record: caller.is_participant().then(|| caller.actor_id.clone()),
            in_process: caller.is_process_manager(),
            method,
            resource: resource.into(),
            purpose: stated.unwrap_or(default),
            purpose_stated: stated.is_some(),
            trace_id: current_trace_id(),
        }
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The participants of `disclosed` whose data this read tells someone else: all
    /// but the caller's own record (a participant reading about themselves).
    fn recorded<I, S>(&self, disclosed: I) -> BTreeSet<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if self.in_process {
            return BTreeSet::new();
        }
        disclosed
            .into_iter()
            .map(|participant| participant.as_ref().to_owned())
            .filter(|participant| self.own_record.as_ref() != Some(participant))
            .collect()
    }
}

/// The shape of one service's audit stream.
#[derive(Debug, Clone)]
pub struct AuditSpec {
    /// Stream name, for example `SESSIONS_AUDIT`.
    pub name: String,
    /// First subject token, for example `sessions-audit`; the stream holds `<root>.>`.
    pub subject_root: String,
    /// 1 in development, 3 in production.
    pub replicas: usize,
    /// How long a record is kept (`max_age`): at least six years.
    pub retention: Duration,
    /// How long the server remembers a record's id, so a repeated publish is not
    /// stored twice.
    pub duplicate_window: Duration,
}

/// The shortest retention an audit stream may have.
pub const MIN_RETENTION: Duration =
    Duration::from_secs(circle_config::AUDIT_MIN_RETENTION_DAYS as u64 * 24 * 60 * 60);

impl AuditSpec {
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
            max_age: self.retention,
            discard: DiscardPolicy::New,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_direct: true,
            description: Some(
                "Circle audit log: one record per participant whose data a read disclosed"
                    .to_owned(),
            ),
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// The existing stream could lose records, or keep them less than six years.
    #[error("audit stream {stream} has an unsafe configuration: {reason}")]
    UnsafeStream { stream: String, reason: String },
    /// The existing stream's replicas or duplicate window differ from the
    /// configuration, and `nats.stream_mismatch` is `refuse`.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

/// A service's audit stream, where its reads' disclosures are appended.
#[derive(Clone)]
pub struct AuditLog {
    jetstream: jetstream::Context,
    spec: AuditSpec,
    /// The service whose reads are recorded, e.g. `circle.sessions.v1.SessionsService`.
    service: String,
    opened: Opened,
    /// The retention an existing stream had before it was set to the configured one.
    retention_was: Option<Duration>,
}

impl AuditLog {
    /// [`AuditLog::open_with`], refusing an existing stream whose replicas or duplicate
    /// window differ from the spec (`nats.stream_mismatch = "refuse"`).
    pub async fn open(
        client: async_nats::Client,
        spec: AuditSpec,
        service: &str,
    ) -> Result<Self, AuditError> {
        Self::open_with(client, spec, service, StreamMismatch::Refuse).await
    }

    /// Creates the stream, or checks an existing one (refusing one that could lose
    /// records) and sets its retention to the configured one. An existing stream whose
    /// replica count or duplicate window differs from the spec is refused naming what
    /// differs or, when `on_mismatch` is `warn`, used as it is with a warning (as the
    /// event log does, `circle_eventstore::mismatch`); [`AuditLog::opened`] says which.
    pub async fn open_with(
        client: async_nats::Client,
        spec: AuditSpec,
        service: &str,
        on_mismatch: StreamMismatch,
    ) -> Result<Self, AuditError> {
        if spec.retention < MIN_RETENTION {
            return Err(AuditError::UnsafeStream {
                stream: spec.name.clone(),
                reason: "its retention would be shorter than six years".to_owned(),
            });
        }
        let jetstream = jetstream::new(client);
        let unavailable =
            |error: &dyn std::fmt::Display| AuditError::Unavailable(error.to_string());
        let existing = match jetstream.get_stream(&spec.name).await {
            Ok(stream) => Some(stream),
            Err(error) if is_stream_not_found(&error) => {
                match jetstream.create_stream(spec.desired_config()).await {
                    Ok(_) => None,
                    // Another replica created it first: check theirs.
                    Err(created) => Some(
                        jetstream
                            .get_stream(&spec.name)
                            .await
                            .map_err(|_| unavailable(&created))?,
                    ),
                }
            }
            Err(error) => return Err(unavailable(&error)),
        };
        let mut opened = Opened::Created;
        let mut retention_was = None;
        if let Some(mut existing) = existing {
            let config = existing
                .info()
                .await
                .map_err(|error| unavailable(&error))?
                .config
                .clone();
            check_existing(&spec, &config)?;
            opened = mismatch::check_existing(
                &spec.name,
                &config,
                spec.replicas,
                spec.duplicate_window,
                on_mismatch,
            )?;
            if config.max_age != spec.retention {
                retention_was = Some(config.max_age);
                let from_days = config.max_age.as_secs() / 86_400;
                let to_days = spec.retention.as_secs() / 86_400;
                if config.max_age.is_zero() || config.max_age > spec.retention {
                    tracing::warn!(stream = %spec.name, from_days, to_days, "shortening the audit log's retention to the configured one");
                } else {
                    tracing::info!(stream = %spec.name, from_days, to_days, "lengthening the audit log's retention to the configured one");
                }
                let updated = stream::Config {
                    max_age: spec.retention,
                    ..config
                };
                jetstream
                    .update_stream(updated)
                    .await
                    .map_err(|error| unavailable(&error))?;
            }
        }
        Ok(Self {
            jetstream,
            spec,
            service: service.to_owned(),
            opened,
            retention_was,
        })
    }

    pub fn spec(&self) -> &AuditSpec {
        &self.spec
    }

    /// Whether [`AuditLog::open_with`] created the stream or found it, and how a stream
    /// it found differs from the spec (allowed by `warn`).
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// The retention (`max_age`, zero for none) an existing stream had when opening set
    /// it to the configured one; `None` when it was created or already had it.
    pub fn retention_was(&self) -> Option<Duration> {
        self.retention_was
    }

    /// Records that `reading`'s answer, given at `at`, disclosed the data of
    /// `participants` (ids of the reading's network; the caller's own is left out): one
    /// record each, all sharing one disclosure id, appended and acknowledged before
    /// this returns. The read must not be answered if this fails: `UNAVAILABLE`
    /// (`AUDIT_UNAVAILABLE`), which a retry may get past.
    pub async fn record<I, S>(
        &self,
        reading: &Reading,
        at: Time,
        participants: I,
    ) -> Result<(), ApiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let recorded = reading.recorded(participants);
        if recorded.is_empty() {
            return Ok(());
        }
        let at = circle_calendar::whole_microseconds(at);
        let disclosure_id = uuid::Uuid::now_v7().to_string();
        let operation = format!("{}/{}", self.service, reading.method);
        let mut acknowledgements = Vec::with_capacity(recorded.len());
        for participant in &recorded {
            let (subject, message) =
                self.message(reading, &operation, &disclosure_id, participant, at)?;
            let acknowledgement = self
                .jetstream
                .send_publish(subject, message)
                .await
                .map_err(|error| audit_unavailable(&error))?;
            acknowledgements.push(std::future::IntoFuture::into_future(acknowledgement));
        }
        futures::future::try_join_all(acknowledgements)
            .await
            .map_err(|error| audit_unavailable(&error))?;
        Ok(())
    }

    /// One record: its subject and message (the commit envelope, its headers and its
    /// message id, which makes a repeated publish of it a duplicate).
    fn message(
        &self,
        reading: &Reading,
        operation: &str,
        disclosure_id: &str,
        participant: &str,
        at: Time,
    ) -> Result<(String, PublishMessage), ApiError> {
        let (Ok(network), Ok(participant_id)) =
            (Id::parse(&reading.network), Id::parse(participant))
        else {
            tracing::error!("a disclosure names an id that is not one");
            return Err(ApiError::internal());
        };
        let name = ParticipantName {
            network: network.clone(),
            participant: participant_id,
        };
        let timestamp = circle_calendar::timestamp(at);
        let payload = pb::ParticipantDataDisclosed {
            disclosure_id: disclosure_id.to_owned(),
            participant: name.to_string(),
            actor_id: reading.actor_id.clone(),
            actor_roles: reading.actor_roles.clone(),
            calling_service: reading.calling_service.clone(),
            operation: operation.to_owned(),
            resource: reading.resource.clone(),
            purpose: reading.purpose.to_wire() as i32,
            purpose_stated: reading.purpose_stated,
            trace_id: reading.trace_id.clone(),
            disclose_time: Some(timestamp),
        };
        let event_type = pb::ParticipantDataDisclosed::full_name();
        let commit = wire::Commit {
            request_id: disclosure_id.to_owned(),
            network: network.as_str().to_owned(),
            aggregate_type: AGGREGATE_TYPE.to_owned(),
            aggregate_id: participant.to_owned(),
            actor: Some(wire::Actor {
                role: reading.actor_roles.join(","),
                id: reading.actor_id.clone(),
            }),
            committed_at: Some(timestamp),
            command_fingerprint: String::new(),
            events: vec![wire::Event {
                event_id: uuid::Uuid::now_v7().to_string(),
                event_type: event_type.clone(),
                schema_version: 1,
                occurred_at: Some(timestamp),
                payload: payload.encode_to_vec(),
            }],
        };
        let mut headers = HeaderMap::new();
        headers.insert(circle_eventstore::EVENT_TYPES_HEADER, event_type.as_str());
        headers.insert(
            circle_eventstore::ENVELOPE_HEADER,
            wire::Commit::full_name().as_str(),
        );
        inject_trace(&mut headers);
        let subject = format!(
            "{}.{}.{AGGREGATE_TYPE}.{participant}",
            self.spec.subject_root,
            network.as_str()
        );
        let message = PublishMessage::build()
            .payload(commit.encode_to_vec().into())
            .headers(headers)
            .message_id(format!(
                "{}.{AGGREGATE_TYPE}.{participant}.{disclosure_id}",
                network.as_str()
            ));
        Ok((subject, message))
    }
}

/// The read cannot be recorded, so it is not answered.
fn audit_unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "the audit log did not take a read's disclosures; the read is refused");
    ApiError::new(
        Code::Unavailable,
        "AUDIT_UNAVAILABLE",
        "the audit log could not record this read, so it is not answered; retry",
    )
}

/// The current span's trace context in the record's headers, as the event log does.
fn inject_trace(headers: &mut HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    const STREAM_NOT_FOUND: u64 = 10059;
    matches!(error.kind(), GetStreamErrorKind::JetStream(inner) if inner.error_code().0 == STREAM_NOT_FOUND)
}

/// Refuses an existing stream that could lose, rewrite or not store records. Its
/// retention is not checked here: it is set to the configured one.
fn check_existing(spec: &AuditSpec, config: &stream::Config) -> Result<(), AuditError> {
    let unsafe_because = |reason: &str| AuditError::UnsafeStream {
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
            "its retention deletes records once consumed (must be limits)",
        ));
    }
    if config.storage != StorageType::File {
        return Err(unsafe_because("it is not stored on disk (must be file)"));
    }
    if config.max_messages_per_subject > 0 && !config.discard_new_per_subject {
        return Err(unsafe_because(
            "it keeps a limited number of records per participant and discards the oldest",
        ));
    }
    let has_limit = config.max_messages > 0 || config.max_bytes > 0;
    if has_limit && config.discard != DiscardPolicy::New {
        return Err(unsafe_because(
            "it has a size limit that discards old records (use discard new or no limits)",
        ));
    }
    if !config.deny_delete || !config.deny_purge {
        return Err(unsafe_because("it allows deleting or purging records"));
    }
    if config.allow_rollup {
        return Err(unsafe_because("it allows rollups, which delete records"));
    }
    if config.no_ack {
        return Err(unsafe_because("it does not acknowledge appends"));
    }
    if config.sealed {
        return Err(unsafe_because("it is sealed"));
    }
    Ok(())
}

/// A record as read back from an audit stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosed {
    pub network: String,
    pub participant_id: String,
    pub disclosure_id: String,
    pub at: Time,
    pub actor_id: String,
    pub actor_roles: Vec<String>,
    pub calling_service: String,
    /// The full RPC, e.g. `circle.sessions.v1.SessionsService/GetSession`.
    pub operation: String,
    pub resource: String,
    pub purpose: Purpose,
    pub purpose_stated: bool,
    pub trace_id: String,
}

impl Disclosed {
    /// The record a commit of an audit stream holds; an error says why it holds none.
    pub fn from_commit(commit: &wire::Commit) -> Result<Self, String> {
        let [event] = commit.events.as_slice() else {
            return Err(format!(
                "an audit record holds one event, not {}",
                commit.events.len()
            ));
        };
        if event.event_type != pb::ParticipantDataDisclosed::full_name() {
            return Err(format!("not an audit record: {}", event.event_type));
        }
        let record = pb::ParticipantDataDisclosed::decode(event.payload.as_slice())
            .map_err(|error| format!("undecodable audit record: {error}"))?;
        let participant = ParticipantName::parse(&record.participant)
            .map_err(|error| format!("participant: {error}"))?;
        if participant.network.as_str() != commit.network
            || participant.participant.as_str() != commit.aggregate_id
        {
            return Err("the record's participant is not its commit's".to_owned());
        }
        let purpose = Purpose::from_wire(record.purpose)
            .ok_or_else(|| format!("unknown purpose {}", record.purpose))?;
        let at = record
            .disclose_time
            .and_then(circle_calendar::from_timestamp)
            .ok_or_else(|| "no disclose time".to_owned())?;
        Ok(Self {
            network: commit.network.clone(),
            participant_id: commit.aggregate_id.clone(),
            disclosure_id: record.disclosure_id,
            at,
            actor_id: record.actor_id,
            actor_roles: record.actor_roles,
            calling_service: record.calling_service,
            operation: record.operation,
            resource: record.resource,
            purpose,
            purpose_stated: record.purpose_stated,
            trace_id: record.trace_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[Role], actor: &str) -> Caller {
        Caller::new("acme", actor, roles, &["north"])
    }

    #[test]
    fn a_purpose_is_one_of_the_list_or_none() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(stated_purpose(&metadata), Ok(None));
        for purpose in Purpose::ALL {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert(
                PURPOSE_METADATA,
                tonic::metadata::MetadataValue::from_static(purpose.as_str()),
            );
            assert_eq!(stated_purpose(&metadata), Ok(Some(purpose)));
        }
        metadata.insert(
            PURPOSE_METADATA,
            tonic::metadata::MetadataValue::from_static("curiosity"),
        );
        assert_eq!(
            stated_purpose(&metadata),
            Err("must be one of treatment, payment, operations".to_owned())
        );
        metadata.insert(
            PURPOSE_METADATA,
            tonic::metadata::MetadataValue::from_static("treatment"),
        );
        metadata.append(
            PURPOSE_METADATA,
            tonic::metadata::MetadataValue::from_static("payment"),
        );
        assert!(stated_purpose(&metadata).is_err(), "two purposes are none");
    }

    #[test]
    fn a_reading_records_others_data_with_the_stated_or_default_purpose() {
        let facilitator = Reading::new(
            &caller(&[Role::Facilitator], "staff-1"),
            "GetSession",
            "networks/acme/clinics/north/groups/g/sessions/s",
            None,
            Purpose::Treatment,
        );
        assert_eq!(facilitator.purpose(), Purpose::Treatment);
        assert!(!facilitator.purpose_stated);
        assert_eq!(facilitator.calling_service, "");
        assert_eq!(
            facilitator.recorded(["sam", "jordan", "sam"]),
            BTreeSet::from(["jordan".to_owned(), "sam".to_owned()])
        );

        // A participant's own data is not disclosed to anyone; a peer's is.
        let peer = Reading::new(
            &Caller::new("acme", "sam", &[Role::Participant], &[]),
            "GetGroupBoard",
            "networks/acme/clinics/north/groups/g",
            Some(Purpose::Operations),
            Purpose::Treatment,
        );
        assert_eq!(peer.purpose(), Purpose::Operations);
        assert!(peer.purpose_stated);
        assert_eq!(
            peer.recorded(["sam", "jordan"]),
            BTreeSet::from(["jordan".to_owned()])
        );

        // A calling service is named as such.
        let billing = Reading::new(
            &caller(&[Role::Service], "billing"),
            "ExportBilling",
            "networks/acme/clinics/north",
            None,
            Purpose::Payment,
        );
        assert_eq!(billing.calling_service, "billing");
        assert_eq!(billing.actor_roles, ["service"]);

        // The service's own process managers read inside the service.
        let in_process = Reading::new(
            &Caller::process_manager("acme", "nudger"),
            "GetGroupBoard",
            "networks/acme/clinics/north/groups/g",
            None,
            Purpose::Treatment,
        );
        assert!(in_process.recorded(["sam"]).is_empty());
    }

    #[test]
    fn an_untraced_read_has_no_trace_id_and_a_traced_one_its_trace() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        assert_eq!(current_trace_id(), "");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("read");
            let _entered = span.enter();
            let trace_id = current_trace_id();
            assert_eq!(trace_id.len(), 32, "{trace_id}");
            assert!(trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
            let reading = Reading::new(
                &caller(&[Role::Facilitator], "staff-1"),
                "GetSession",
                "networks/acme/clinics/north/groups/g/sessions/s",
                None,
                Purpose::Treatment,
            );
            assert_eq!(reading.trace_id, trace_id);
        });
    }

    #[test]
    fn the_stream_we_create_passes_our_own_check_and_one_that_can_lose_records_does_not() {
        let spec = AuditSpec {
            name: "SESSIONS_AUDIT".into(),
            subject_root: "sessions-audit".into(),
            replicas: 1,
            retention: MIN_RETENTION,
            duplicate_window: Duration::from_secs(120),
        };
        assert!(check_existing(&spec, &spec.desired_config()).is_ok());
        assert_eq!(spec.desired_config().max_age, MIN_RETENTION);
        let mut purgeable = spec.desired_config();
        purgeable.deny_purge = false;
        assert!(check_existing(&spec, &purgeable).is_err());
        let mut per_participant = spec.desired_config();
        per_participant.max_messages_per_subject = 10;
        assert!(check_existing(&spec, &per_participant).is_err());
        let mut in_memory = spec.desired_config();
        in_memory.storage = StorageType::Memory;
        assert!(check_existing(&spec, &in_memory).is_err());
        assert_eq!(MIN_RETENTION.as_secs(), 2192 * 86_400);
    }
}
