//! The event store against a real NATS server (the one at CIRCLE_TEST_NATS_URL, so the
//! same tests run on Debian's 2.9 and on a current server).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use circle_eventstore::{
    Aggregate, AggregateKey, AppendOutcome, CommitMeta, DecodeError, EventStore, Executed,
    NewEvent, Repository, StoreError, StreamSpec,
};
use circle_testkit::TestEnv;
use prost::Message;

/// A test event: the version the writer saw and the count it decided.
#[derive(Clone, PartialEq, prost::Message)]
struct Counted {
    #[prost(uint64, tag = "1")]
    seen_version: u64,
    #[prost(uint64, tag = "2")]
    count: u64,
    /// Filler, to make a commit as large as a test needs.
    #[prost(bytes = "vec", tag = "3")]
    padding: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Counter {
    count: u64,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Event = Counted;
    fn encode(event: &Counted) -> NewEvent {
        NewEvent {
            event_type: "test.Counted".into(),
            schema_version: 1,
            payload: event.encode_to_vec(),
        }
    }
    fn decode(event: &circle_eventstore::wire::Event) -> Result<Counted, DecodeError> {
        Counted::decode(event.payload.as_slice()).map_err(|error| DecodeError {
            event_type: event.event_type.clone(),
            reason: error.to_string(),
        })
    }
    fn evolve(self, event: &Counted, _at: circle_calendar::Time) -> Self {
        Self { count: event.count }
    }
}

fn increment(seen_version: u64, count: u64) -> Vec<Counted> {
    vec![Counted {
        seen_version,
        count,
        padding: Vec::new(),
    }]
}

/// [`increment`] as the store appends it.
fn increment_raw(seen_version: u64, count: u64) -> Vec<NewEvent> {
    increment(seen_version, count)
        .iter()
        .map(Counter::encode)
        .collect()
}

fn meta(request_id: impl Into<String>) -> CommitMeta {
    CommitMeta {
        request_id: request_id.into(),
        actor_role: "service".into(),
        actor_id: "test".into(),
        fingerprint: String::new(),
    }
}

async fn open(env: &TestEnv) -> anyhow::Result<EventStore> {
    let spec = StreamSpec::new(
        env.config.stream_name("evtest"),
        env.config.subject_root("evtest"),
    );
    Ok(EventStore::open(env.nats.clone(), spec).await?)
}

fn clock() -> Arc<dyn circle_calendar::Clock> {
    Arc::new(circle_calendar::SystemClock)
}

fn key(id: &str) -> AggregateKey {
    AggregateKey::new("acme", Counter::TYPE, id).expect("valid key")
}

#[tokio::test]
async fn sixteen_concurrent_writers_write_every_version_exactly_once() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let key = key("hot");
    const WRITERS: usize = 16;
    const COMMANDS_EACH: usize = 10;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        // One repository per writer: separate caches and locks, like separate replicas,
        // so the only thing that orders them is the server's expected-sequence check.
        let repository = Repository::<Counter>::new(store.clone(), clock());
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for command in 0..COMMANDS_EACH {
                let request_id = format!("w{writer}-c{command}");
                // Bounded: a writer that never gets through fails the test.
                for attempt in 0.. {
                    anyhow::ensure!(attempt < 1_000, "{request_id} never got through");
                    let result = repository
                        .execute(&key, &meta(&request_id), None, |snapshot, _| {
                            Ok::<_, std::convert::Infallible>(increment(
                                snapshot.version,
                                snapshot.state.count + 1,
                            ))
                        })
                        .await;
                    match result {
                        Ok(executed) => {
                            acknowledged.push((request_id.clone(), executed.version()));
                            break;
                        }
                        // Retrying with the same request id is always safe.
                        Err(circle_eventstore::ExecuteError::TooMuchContention { .. }) => continue,
                        Err(error) => return Err(anyhow::anyhow!(error)),
                    }
                }
            }
            Ok(acknowledged)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await??);
    }
    assert_eq!(acknowledged.len(), WRITERS * COMMANDS_EACH);

    let last = store.version(&key).await?;
    let commits = store.read(&key, 0, last).await?;
    assert_eq!(
        commits.len(),
        WRITERS * COMMANDS_EACH,
        "no commit lost or doubled"
    );
    let mut previous_version = 0;
    for (index, commit) in commits.iter().enumerate() {
        let counted = Counted::decode(commit.commit.events[0].payload.as_slice())?;
        assert_eq!(counted.count, index as u64 + 1, "counts are contiguous");
        assert_eq!(
            counted.seen_version, previous_version,
            "each commit was decided on the version right before it"
        );
        previous_version = commit.sequence;
    }
    let mut stored_ids: Vec<_> = commits
        .iter()
        .map(|commit| (commit.commit.request_id.clone(), commit.sequence))
        .collect();
    stored_ids.sort();
    acknowledged.sort();
    assert_eq!(
        stored_ids, acknowledged,
        "every acknowledged write is stored once"
    );
    Ok(())
}

#[tokio::test]
async fn a_retried_command_returns_the_original_commit() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let key = key("retry");
    let decisions = AtomicU32::new(0);
    let decide = |snapshot: &circle_eventstore::Snapshot<Counter>, _| {
        decisions.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(increment(snapshot.version, snapshot.state.count + 1))
    };
    let first = repository
        .execute(&key, &meta("req-1"), None, decide)
        .await?;
    assert!(matches!(first, Executed::Committed { .. }));
    repository
        .execute(&key, &meta("req-2"), None, decide)
        .await?;

    // A retry of the first command, after another command: answered from the log.
    let retry = repository
        .execute(&key, &meta("req-1"), None, decide)
        .await?;
    assert!(matches!(retry, Executed::Replayed { .. }));
    assert_eq!(retry.version(), first.version());
    assert_eq!(
        retry.commit(),
        first.commit(),
        "the retry is answered with the first attempt's events and commit time"
    );
    assert_eq!(
        retry.state().count,
        1,
        "and with the aggregate as that commit left it, not as it is now"
    );
    assert_eq!(
        decisions.load(Ordering::SeqCst),
        2,
        "the retry decided nothing"
    );

    // A fresh repository (a restarted replica) recognises it too.
    let restarted = Repository::<Counter>::new(store.clone(), clock());
    let retry = restarted
        .execute(&key, &meta("req-1"), None, decide)
        .await?;
    assert!(matches!(retry, Executed::Replayed { .. }));
    assert_eq!(retry.version(), first.version());
    assert_eq!(retry.commit(), first.commit());
    assert_eq!(retry.state().count, 1);
    assert_eq!(decisions.load(Ordering::SeqCst), 2, "nor on a restart");
    assert_eq!(
        store.read(&key, 0, store.version(&key).await?).await?.len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_raw_append_retry_is_a_duplicate_on_every_server_version() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let key = key("raw");
    let stored = store
        .append(&key, 0, &meta("once"), increment_raw(0, 1))
        .await?;
    let AppendOutcome::Stored { sequence } = stored else {
        anyhow::bail!("first append must store, got {stored:?}");
    };
    // Same request, same expected version: 2.9 answers from its dedupe window, 2.12+
    // with "wrong last sequence"; both must come out as the original sequence.
    let retried = store
        .append(&key, 0, &meta("once"), increment_raw(0, 1))
        .await?;
    assert_eq!(retried, AppendOutcome::Duplicate { sequence });
    // A different request on a stale version is a conflict and writes nothing.
    let stale = store
        .append(&key, 0, &meta("other"), increment_raw(0, 1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected: 0 })),
        "{stale:?}"
    );
    assert_eq!(store.version(&key).await?, sequence);
    Ok(())
}

#[tokio::test]
async fn an_aggregate_of_a_thousand_events_loads_correctly() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let key = key("long");
    let mut version = 0;
    for count in 1..=1000u64 {
        version = store
            .append(
                &key,
                version,
                &meta(format!("r{count}")),
                increment_raw(version, count),
            )
            .await?
            .sequence();
    }
    // Interleave another aggregate so the stream sequence and the version differ.
    store
        .append(&key_other(), 0, &meta("x"), increment_raw(0, 1))
        .await?;
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let snapshot = repository.load(&key).await?;
    assert_eq!(snapshot.state.count, 1000);
    assert_eq!(snapshot.version, version);
    let commits = store.read(&key, 0, version).await?;
    assert_eq!(commits.len(), 1000);
    assert!(
        commits
            .windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence)
    );
    Ok(())
}

fn key_other() -> AggregateKey {
    key("other")
}

#[tokio::test]
async fn an_existing_stream_that_could_drop_events_is_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let name = env.config.stream_name("unsafe");
    let root = env.config.subject_root("unsafe");
    env.jetstream()
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{root}.>")],
            storage: StorageType::File,
            max_age: std::time::Duration::from_secs(60),
            discard: DiscardPolicy::Old,
            ..Default::default()
        })
        .await?;
    let result = EventStore::open(env.nats.clone(), StreamSpec::new(name, root)).await;
    let Err(StoreError::UnsafeStream { reason, .. }) = result else {
        anyhow::bail!("an unsafe stream must be refused");
    };
    assert!(reason.contains("expires old events"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn an_existing_stream_with_another_duplicate_window_is_refused_or_warned_about()
-> anyhow::Result<()> {
    use circle_eventstore::{Opened, StreamMismatch};
    let env = TestEnv::new().await?;
    let name = env.config.stream_name("windowed");
    let root = env.config.subject_root("windowed");
    let spec = |window: u64| StreamSpec {
        duplicate_window: std::time::Duration::from_secs(window),
        ..StreamSpec::new(name.clone(), root.clone())
    };
    let created = EventStore::open(env.nats.clone(), spec(120)).await?;
    assert_eq!(created.opened(), &Opened::Created);

    // Equal: opens, whatever the policy, and differs in nothing.
    for policy in [StreamMismatch::Refuse, StreamMismatch::Warn] {
        let equal = EventStore::open_with(env.nats.clone(), spec(120), policy).await?;
        assert_eq!(
            equal.opened(),
            &Opened::Existing {
                differences: Vec::new()
            }
        );
    }

    // Another duplicate window, refused (the default): the error names the stream, the
    // setting, the stream's value and the configured one.
    let refused = EventStore::open(env.nats.clone(), spec(60)).await;
    let Err(error @ StoreError::Mismatch(_)) = refused else {
        anyhow::bail!("a stream with another duplicate window must be refused");
    };
    let message = error.to_string();
    for part in [
        format!("stream {name}"),
        "duplicate_window is 120s on the stream but 60s in the configuration".to_owned(),
        "nats.duplicate_window_secs".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} in {message}");
    }

    // Warned about: it opens as it is (the stream is not changed), and says what differs.
    let warned = EventStore::open_with(env.nats.clone(), spec(60), StreamMismatch::Warn).await?;
    let Opened::Existing { differences } = warned.opened() else {
        anyhow::bail!("the stream existed");
    };
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].setting, "duplicate_window");
    assert_eq!(differences[0].on_stream, "120s");
    assert_eq!(differences[0].configured, "60s");
    let mut stream = env.jetstream().get_stream(&name).await?;
    assert_eq!(
        stream.info().await?.config.duplicate_window,
        std::time::Duration::from_secs(120)
    );
    warned
        .append(&key("a"), 0, &meta("1"), increment_raw(0, 1))
        .await?;
    Ok(())
}

#[tokio::test]
async fn opening_twice_reuses_the_stream() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let first = Arc::new(open(&env).await?);
    first
        .append(&key("a"), 0, &meta("1"), increment_raw(0, 1))
        .await?;
    let second = open(&env).await?;
    assert_eq!(second.version(&key("a")).await?, 1);
    Ok(())
}

/// The spans a test's tracer provider ended.
#[derive(Debug, Clone, Default)]
struct Spans(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl Spans {
    fn named(&self, name: &str) -> Vec<opentelemetry_sdk::trace::SpanData> {
        self.0
            .lock()
            .map(|spans| {
                spans
                    .iter()
                    .filter(|span| span.name == name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for Spans {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        if let Ok(mut spans) = self.0.lock() {
            spans.push(span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(
        &self,
        _: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

fn attribute(span: &opentelemetry_sdk::trace::SpanData, name: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == name)
        .map(|attribute| attribute.value.to_string())
}

#[tokio::test]
async fn the_trace_context_travels_in_the_commit_headers() -> anyhow::Result<()> {
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let spans = Spans::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // A current-thread test runtime: the scoped subscriber covers the whole append.
    let _scoped = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("command");
    let trace_id = span.context().span().span_context().trace_id();
    let command_span_id = span.context().span().span_context().span_id();
    assert_ne!(trace_id, opentelemetry::trace::TraceId::INVALID);
    let sequence = store
        .append(&key("traced"), 0, &meta("t1"), increment_raw(0, 1))
        .instrument(span.clone())
        .await?
        .sequence();
    // A conflict: the producer span records the error.
    let conflict = store
        .append(&key("traced"), 0, &meta("t2"), increment_raw(0, 1))
        .instrument(span)
        .await;
    assert!(conflict.is_err());
    let stored = store.read_commit(sequence).await?;
    let traceparent = stored
        .headers
        .get("traceparent")
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        traceparent.contains(&trace_id.to_string()),
        "traceparent {traceparent:?} should carry trace {trace_id}"
    );
    // The append is a PRODUCER span `send <STREAM>`, child of the command's, with the
    // messaging conventions' attributes; its context is the one in the headers.
    let stream = store.spec().name.clone();
    let sends = spans.named(&format!("send {stream}"));
    assert_eq!(sends.len(), 2, "{sends:?}");
    let send = &sends[0];
    assert_eq!(send.span_kind, opentelemetry::trace::SpanKind::Producer);
    assert_eq!(send.parent_span_id, command_span_id);
    assert!(
        traceparent.contains(&send.span_context.span_id().to_string()),
        "the headers carry the producer span's context"
    );
    for (name, value) in [
        ("messaging.system", "nats".to_owned()),
        ("messaging.destination.name", stream.clone()),
        ("messaging.operation.type", "send".to_owned()),
        ("messaging.operation.name", "publish".to_owned()),
        ("messaging.message.id", sequence.to_string()),
    ] {
        assert_eq!(
            attribute(send, name).as_deref(),
            Some(value.as_str()),
            "{name}"
        );
    }
    assert_eq!(send.status, opentelemetry::trace::Status::Unset);
    assert!(
        matches!(sends[1].status, opentelemetry::trace::Status::Error { .. }),
        "a conflict is an error of its span: {:?}",
        sends[1].status
    );
    // Headers name event types only; the payload stays out of them.
    assert_eq!(
        stored
            .headers
            .get("Circle-Event-Types")
            .map(|value| value.as_str()),
        Some("test.Counted")
    );
    Ok(())
}

#[tokio::test]
async fn a_command_that_changes_nothing_appends_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let key = key("quiet");
    repository
        .execute(&key, &meta("a"), None, |snapshot, _| {
            Ok::<_, std::convert::Infallible>(increment(snapshot.version, 1))
        })
        .await?;
    let unchanged = repository
        .execute(&key, &meta("b"), None, |_, _| {
            Ok::<_, std::convert::Infallible>(Vec::new())
        })
        .await?;
    assert!(
        matches!(unchanged, Executed::Unchanged { version, .. } if version == store.version(&key).await?)
    );
    assert_eq!(
        store.read(&key, 0, store.version(&key).await?).await?.len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn the_same_request_id_on_the_same_id_in_two_networks_stores_both() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let acme = AggregateKey::new("acme", Counter::TYPE, "g-1")?;
    let other = AggregateKey::new("other", Counter::TYPE, "g-1")?;
    let first = store
        .append(&acme, 0, &meta("r1"), increment_raw(0, 1))
        .await?;
    let second = store
        .append(&other, 0, &meta("r1"), increment_raw(0, 1))
        .await?;
    assert!(matches!(first, AppendOutcome::Stored { .. }));
    assert!(
        matches!(second, AppendOutcome::Stored { .. }),
        "not a duplicate of the other tenant's commit: {second:?}"
    );
    Ok(())
}

/// A `tracing` writer into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_was_retried_and_succeeded_is_not_logged_as_an_error() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let key = key("raced");
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The command runs on this thread (the test's main future), so a scoped subscriber
    // sees everything the repository logs for it.
    let _scoped = tracing::subscriber::set_default(subscriber);
    let other_writer = store.clone();
    let raced = AtomicU32::new(0);
    let executed = repository
        .execute(&key, &meta("mine"), None, |snapshot, _| {
            if raced.fetch_add(1, Ordering::SeqCst) == 0 {
                // Another replica commits between this decision and its append: the
                // append conflicts and the repository decides again.
                let key = key.clone();
                let other_writer = other_writer.clone();
                let version = snapshot.version;
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async move {
                        other_writer
                            .append(&key, version, &meta("theirs"), increment_raw(version, 1))
                            .await
                    })
                })
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            }
            Ok::<_, std::io::Error>(increment(snapshot.version, snapshot.state.count + 1))
        })
        .await?;
    assert!(matches!(executed, Executed::Committed { .. }));
    assert_eq!(
        raced.load(Ordering::SeqCst),
        2,
        "decided again after the conflict"
    );
    assert_eq!(executed.state().count, 2);
    let text = logs.text();
    assert!(
        text.contains("append conflict"),
        "the retried conflict is logged (at debug): {text}"
    );
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a conflict that was retried and succeeded is not an error: {errors:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn commit_times_of_an_aggregate_never_go_backwards_across_replicas() -> anyhow::Result<()> {
    use circle_calendar::{Clock, ManualClock};
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let key = key("two-replicas");
    let start: circle_calendar::Time = "2026-03-01T09:00:00Z".parse()?;
    // Two replicas whose clocks disagree by 25 ms, as two hosts' clocks do.
    let ahead = Arc::new(ManualClock::new(start + chrono::Duration::milliseconds(25)));
    let behind = Arc::new(ManualClock::new(start));
    let replicas = [
        Repository::<Counter>::new(store.clone(), ahead.clone()),
        Repository::<Counter>::new(store.clone(), behind.clone()),
    ];
    for command in 0..6 {
        let repository = &replicas[command % 2];
        repository
            .execute(&key, &meta(format!("c{command}")), None, |snapshot, _| {
                Ok::<_, std::convert::Infallible>(increment(
                    snapshot.version,
                    snapshot.state.count + 1,
                ))
            })
            .await?;
        ahead.advance(chrono::Duration::milliseconds(1));
        behind.advance(chrono::Duration::milliseconds(1));
    }
    let commits = store.read(&key, 0, store.version(&key).await?).await?;
    assert_eq!(commits.len(), 6);
    let times: Vec<circle_calendar::Time> = commits
        .iter()
        .map(|commit| {
            commit
                .commit
                .committed_at
                .and_then(circle_calendar::from_timestamp)
                .ok_or_else(|| anyhow::anyhow!("commit without a time"))
        })
        .collect::<anyhow::Result<_>>()?;
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "commit times go backwards: {times:?}"
    );
    assert!(
        times[0] >= ahead.now() - chrono::Duration::milliseconds(6),
        "the first commit is stamped by its replica's clock: {times:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_commit_larger_than_the_servers_maximum_payload_is_refused_and_nothing_is_stored()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let key = key("too-large");
    let limit = env.nats.server_info().max_payload;
    assert!(limit > 0, "the server announced its maximum payload");
    let oversized = vec![Counted {
        seen_version: 0,
        count: 1,
        padding: vec![7; limit],
    }];
    for _ in 0..2 {
        let refused = repository
            .execute(&key, &meta("big"), None, |_, _| {
                Ok::<_, std::convert::Infallible>(oversized.clone())
            })
            .await;
        assert!(
            matches!(
                refused,
                Err(circle_eventstore::ExecuteError::Store(StoreError::TooLarge { size, limit: refused_limit }))
                    if size > limit && refused_limit == limit
            ),
            "a commit over the limit is refused as too large, every time: {refused:?}"
        );
    }
    assert_eq!(store.version(&key).await?, 0, "nothing stored");
    // Just under the limit, with the envelope and headers counted, is stored.
    let fits = vec![Counter::encode(&Counted {
        seen_version: 0,
        count: 1,
        padding: vec![7; limit - 2_048],
    })];
    let raw = store
        .append(
            &key,
            0,
            &meta("raw-big"),
            oversized.iter().map(Counter::encode).collect(),
        )
        .await;
    assert!(matches!(raw, Err(StoreError::TooLarge { .. })), "{raw:?}");
    let stored = store.append(&key, 0, &meta("fits"), fits).await?;
    assert!(matches!(stored, AppendOutcome::Stored { .. }));
    Ok(())
}

#[tokio::test]
async fn a_request_id_used_again_for_another_command_is_refused_and_a_retry_is_answered()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = open(&env).await?;
    let repository = Repository::<Counter>::new(store.clone(), clock());
    let key = key("fingerprints");
    let asking = |fingerprint: &str| CommitMeta {
        fingerprint: fingerprint.into(),
        ..meta("req-1")
    };
    let decide = |snapshot: &circle_eventstore::Snapshot<Counter>, _| {
        Ok::<_, std::convert::Infallible>(increment(snapshot.version, snapshot.state.count + 1))
    };
    let first = repository
        .execute(&key, &asking("one"), None, decide)
        .await?;
    let other = repository.execute(&key, &asking("two"), None, decide).await;
    assert!(
        matches!(other, Err(circle_eventstore::ExecuteError::RequestIdReused)),
        "{other:?}"
    );
    let retry = repository
        .execute(&key, &asking("one"), None, decide)
        .await?;
    assert!(matches!(retry, Executed::Replayed { .. }));
    assert_eq!(retry.commit(), first.commit());
    assert_eq!(
        store.version(&key).await?,
        first.version(),
        "nothing appended"
    );

    // A commit without a fingerprint (written before them) matches any command.
    let legacy = key_other();
    repository
        .execute(&legacy, &meta("old"), None, decide)
        .await?;
    let retry = repository
        .execute(
            &legacy,
            &CommitMeta {
                fingerprint: "anything".into(),
                ..meta("old")
            },
            None,
            decide,
        )
        .await?;
    assert!(matches!(retry, Executed::Replayed { .. }));
    Ok(())
}
