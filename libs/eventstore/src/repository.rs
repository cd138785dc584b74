use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circle_calendar::{Clock, Time};

use crate::key::{AggregateKey, KeyError};
use crate::store::{Appended, CommitMeta, EventStore, NewEvent, StoreError, StoredCommit};
use crate::wire;

/// State rebuilt from an aggregate's events, typed on the service's domain events.
/// Implemented by each service next to its codec; the state and `evolve` live in the
/// service's pure domain module.
///
/// A write encodes each decided event once and evolves the state from the same domain
/// events; a load decodes each stored event once.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    const TYPE: &'static str;
    /// The service's domain event.
    type Event: Clone + fmt::Debug + Send + Sync + 'static;
    /// The protobuf payload of an event (the service's codec).
    fn encode(event: &Self::Event) -> NewEvent;
    /// The domain event of a stored payload (the service's codec).
    fn decode(event: &wire::Event) -> Result<Self::Event, DecodeError>;
    /// The state after `event`, recorded in a commit at `at`.
    fn evolve(self, event: &Self::Event, at: Time) -> Self;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

/// One commit of an aggregate as domain events: what a command decided, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    /// The stream sequence: the aggregate's version (its etag) after this commit.
    pub sequence: u64,
    pub committed_at: Time,
    pub events: Vec<E>,
}

/// An aggregate's state at a version, with the request ids of every commit that made it
/// (so a retry of any earlier command is recognised, however old).
#[derive(Debug, Clone, Default)]
pub struct Snapshot<A> {
    pub state: A,
    pub version: u64,
    request_ids: HashMap<String, Request>,
    /// The time of the aggregate's last commit: the next one is never stamped earlier.
    committed_at: Option<Time>,
}

/// A command stored on an aggregate: its commit and what it asked.
#[derive(Debug, Clone)]
struct Request {
    sequence: u64,
    fingerprint: String,
}

impl Request {
    /// Whether a command with `fingerprint` is a retry of this one. An empty
    /// fingerprint (a commit written before fingerprints, or a process step) matches.
    fn is_retried_by(&self, fingerprint: &str) -> bool {
        self.fingerprint.is_empty() || fingerprint.is_empty() || self.fingerprint == fingerprint
    }
}

impl<A> Snapshot<A> {
    /// The time of the aggregate's last commit, if it has one.
    pub fn committed_at(&self) -> Option<Time> {
        self.committed_at
    }

    /// Whether a command with this request id already made a commit on the aggregate.
    pub fn has_request(&self, request_id: &str) -> bool {
        self.request_ids.contains_key(request_id)
    }
}

impl<A: Aggregate> Snapshot<A> {
    /// Applies a stored commit: each event decoded once.
    fn apply_stored(&mut self, commit: &StoredCommit) -> Result<Recorded<A::Event>, StoreError> {
        let recorded = decode_recorded::<A>(commit)?;
        self.apply(
            &commit.commit.request_id,
            &commit.commit.command_fingerprint,
            &recorded,
        );
        Ok(recorded)
    }

    /// Applies a commit's domain events (decided now, or decoded from the log).
    fn apply(&mut self, request_id: &str, fingerprint: &str, commit: &Recorded<A::Event>) {
        for event in &commit.events {
            self.state = std::mem::take(&mut self.state).evolve(event, commit.committed_at);
        }
        self.version = commit.sequence;
        self.committed_at = Some(
            self.committed_at
                .map_or(commit.committed_at, |last| last.max(commit.committed_at)),
        );
        self.request_ids.insert(
            request_id.to_owned(),
            Request {
                sequence: commit.sequence,
                fingerprint: fingerprint.to_owned(),
            },
        );
    }
}

/// A stored commit's domain events, each decoded once.
fn decode_recorded<A: Aggregate>(commit: &StoredCommit) -> Result<Recorded<A::Event>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        sequence: commit.sequence,
        reason,
    };
    let committed_at = commit
        .commit
        .committed_at
        .and_then(circle_calendar::from_timestamp)
        .ok_or_else(|| corrupt("no valid commit time".into()))?;
    let events = commit
        .commit
        .events
        .iter()
        .map(A::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| corrupt(error.to_string()))?;
    Ok(Recorded {
        sequence: commit.sequence,
        committed_at,
        events,
    })
}

/// What a command did.
#[derive(Debug, Clone)]
pub enum Executed<A: Aggregate> {
    /// Appended now: the events decided, and the aggregate right after the commit.
    Committed {
        commit: Recorded<A::Event>,
        state: A,
    },
    /// The request id was seen before: the events its commit recorded then, and the
    /// aggregate as it was right after that commit (not as it is now), so a retry is
    /// answered exactly as the first attempt was.
    Replayed {
        commit: Recorded<A::Event>,
        state: A,
    },
    /// The command changed nothing (it asked for what already holds); nothing was
    /// appended.
    Unchanged { state: A, version: u64 },
}

impl<A: Aggregate> Executed<A> {
    /// The commit the command produced, now or on its first attempt.
    pub fn commit(&self) -> Option<&Recorded<A::Event>> {
        match self {
            Self::Committed { commit, .. } | Self::Replayed { commit, .. } => Some(commit),
            Self::Unchanged { .. } => None,
        }
    }

    /// The events of the command's commit (none when nothing changed).
    pub fn events(&self) -> &[A::Event] {
        self.commit().map_or(&[], |commit| commit.events.as_slice())
    }

    /// The time of the command's commit, if it made one.
    pub fn committed_at(&self) -> Option<Time> {
        self.commit().map(|commit| commit.committed_at)
    }

    /// The aggregate right after the command's commit (or as it stood, when nothing
    /// changed).
    pub fn state(&self) -> &A {
        match self {
            Self::Committed { state, .. }
            | Self::Replayed { state, .. }
            | Self::Unchanged { state, .. } => state,
        }
    }

    /// The version this answer reflects: the commit's, or the aggregate's when
    /// nothing changed.
    pub fn version(&self) -> u64 {
        match self {
            Self::Committed { commit, .. } | Self::Replayed { commit, .. } => commit.sequence,
            Self::Unchanged { version, .. } => *version,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision refused the command.
    #[error(transparent)]
    Rejected(E),
    /// The caller's etag names another version than the aggregate's current one.
    #[error("the record changed since the given etag")]
    EtagMismatch { current: u64 },
    /// The aggregate id cannot name a subject (ids are checked at the edge, so this
    /// is a fault of the caller's code).
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// The request id was used before on this aggregate for a command that asked
    /// something else; nothing was decided or appended.
    #[error("the request id was used before for another command")]
    RequestIdReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {attempts} concurrent modifications")]
    TooMuchContention { attempts: u32 },
    /// The decided events' personal fields could not be sealed; nothing was appended.
    #[error(transparent)]
    Sealing(#[from] SealError),
}

/// Why a commit's personal fields could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A participant the events are about has been forgotten: nothing more is written
    /// readable for them.
    #[error("a participant in this command has been forgotten")]
    Forgotten,
    /// The key store could not be reached.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// A key does not unwrap, or the store's wall does not hold: no retry helps.
    #[error("the key store cannot seal: {0}")]
    Damaged(String),
}

/// Seals the personal fields of decided events before they are encoded (crypto-
/// shredding, `circle-vault`): a repository given one appends only sealed text, and its
/// states and answers carry the sealed text too (opened only where an answer is made).
pub trait Seal<E>: Send + Sync {
    fn seal<'a>(
        &'a self,
        key: &'a AggregateKey,
        events: &'a mut [E],
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SealError>> + Send + 'a>>;
}

/// How a command ended, for `circle.commands`: the outcome and, for a refusal, its
/// reason (the domain error's variant name, or the repository's own reason code) —
/// low-cardinality names, never the error's text.
fn command_outcome<A: Aggregate, E: std::fmt::Debug>(
    executed: &Result<Executed<A>, ExecuteError<E>>,
    attempts: u32,
) -> (&'static str, Option<String>) {
    match executed {
        Ok(Executed::Committed { .. }) if attempts > 1 => ("conflict_retried", None),
        Ok(Executed::Committed { .. }) => ("ok", None),
        Ok(Executed::Unchanged { .. }) => ("unchanged", None),
        Ok(Executed::Replayed { .. }) => ("duplicate", None),
        Err(ExecuteError::Rejected(refusal)) => ("refused", Some(variant_name(refusal))),
        Err(ExecuteError::EtagMismatch { .. }) => ("refused", Some("ETAG_MISMATCH".to_owned())),
        Err(ExecuteError::RequestIdReused) => ("refused", Some("REQUEST_ID_REUSED".to_owned())),
        Err(ExecuteError::Sealing(SealError::Forgotten)) => ("forgotten", None),
        Err(ExecuteError::TooMuchContention { .. }) => ("error", Some("CONTENTION".to_owned())),
        Err(ExecuteError::Store(error)) => ("error", Some(error.kind().to_owned())),
        Err(ExecuteError::Sealing(_) | ExecuteError::InvalidKey(_)) => ("error", None),
    }
}

/// The name of an error's variant (its `Debug` up to the first non-identifier
/// character): what a refusal is, without what it carries.
fn variant_name(error: &impl std::fmt::Debug) -> String {
    format!("{error:?}")
        .chars()
        .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
        .collect()
}

/// Commands on aggregates whose subjects hash alike wait for each other in process:
/// enough stripes that unrelated aggregates rarely do.
const LOCK_STRIPES: usize = 1024;
/// States kept per generation of the cache (two generations: at most twice this).
const CACHE_GENERATION: usize = 8192;
const MAX_ATTEMPTS: u32 = 32;

/// Runs commands against aggregates of one type: the one path by which a service
/// changes an aggregate (its API and its process managers alike).
///
/// Commands on one aggregate are serialised inside this process (striped locks), so
/// optimistic conflicts only arise between replicas; a conflict reloads and decides
/// again, a bounded number of times.
pub struct Repository<A: Aggregate> {
    store: EventStore,
    clock: Arc<dyn Clock>,
    cache: Mutex<Generations<Arc<Snapshot<A>>>>,
    locks: Vec<tokio::sync::Mutex<()>>,
    sealing: Option<Arc<dyn Seal<A::Event>>>,
    /// `circle.commands`: commands run, by outcome (see [`command_outcome`]).
    commands: opentelemetry::metrics::Counter<u64>,
}

impl<A: Aggregate> Repository<A> {
    /// A repository whose commits are stamped by `clock` (the service's clock).
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        let meter = crate::store::service_meter(&store.spec().name);
        Self {
            store,
            clock,
            cache: Mutex::new(Generations::new(CACHE_GENERATION)),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            sealing: None,
            commands: meter
                .u64_counter("circle.commands")
                .with_description("commands run on aggregates, by outcome")
                .with_unit("{command}")
                .build(),
        }
    }

    /// This repository with every commit's events sealed by `sealing` before they are
    /// encoded and evolved.
    #[must_use]
    pub fn sealed_by(mut self, sealing: Arc<dyn Seal<A::Event>>) -> Self {
        self.sealing = Some(sealing);
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The key of this repository's aggregate `id` in `network`.
    pub fn key(&self, network: &str, id: &str) -> Result<AggregateKey, KeyError> {
        AggregateKey::new(network, A::TYPE, id)
    }

    /// Loads the aggregate at its current version: one round trip when the cached
    /// state is current, otherwise only the commits after the cached version are read.
    pub async fn load(&self, key: &AggregateKey) -> Result<Arc<Snapshot<A>>, StoreError> {
        let subject = self.store.subject(key);
        let current = self.store.version(key).await?;
        let cached = self.cached(&subject);
        if let Some(snapshot) = &cached
            && snapshot.version == current
        {
            return Ok(snapshot.clone());
        }
        let mut snapshot = match cached {
            Some(snapshot) if snapshot.version < current => (*snapshot).clone(),
            _ => Snapshot::default(),
        };
        for commit in self.store.read(key, snapshot.version, current).await? {
            snapshot.apply_stored(&commit)?;
        }
        let snapshot = Arc::new(snapshot);
        self.remember(subject, snapshot.clone());
        Ok(snapshot)
    }

    /// Loads the aggregate, asks `decide` for the events of the command, encodes each
    /// once and appends them as one commit, and evolves the cached state from the same
    /// events. A request id already stored on the aggregate is answered with its
    /// original commit and nothing is decided or appended.
    ///
    /// With `etag` (the version the caller last saw), a command on an aggregate that
    /// has moved on is refused with [`ExecuteError::EtagMismatch`] (a retry of a stored
    /// command is still answered: its etag was current then).
    ///
    /// `decide` gets the time the commit will carry: the clock's, but never earlier
    /// than the aggregate's last commit (replicas' clocks differ by milliseconds, and an
    /// aggregate's history must not go back in time).
    ///
    /// Counted in `circle.commands` by outcome (`circle.outcome`: ok,
    /// conflict_retried, unchanged, duplicate, refused — with `circle.reason` —,
    /// forgotten, error), with the stream and the aggregate type.
    pub async fn execute<E, F>(
        &self,
        key: &AggregateKey,
        meta: &CommitMeta,
        etag: Option<u64>,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&Snapshot<A>, Time) -> Result<Vec<A::Event>, E>,
        E: std::fmt::Debug,
    {
        let mut attempts = 0;
        let executed = self
            .execute_attempts(key, meta, etag, decide, &mut attempts)
            .await;
        let (outcome, reason) = command_outcome(&executed, attempts);
        let mut attributes = vec![
            opentelemetry::KeyValue::new(
                "messaging.destination.name",
                self.store.spec().name.clone(),
            ),
            opentelemetry::KeyValue::new("circle.aggregate_type", A::TYPE),
            opentelemetry::KeyValue::new("circle.outcome", outcome),
        ];
        if let Some(reason) = reason {
            attributes.push(opentelemetry::KeyValue::new("circle.reason", reason));
        }
        self.commands.add(1, &attributes);
        executed
    }

    async fn execute_attempts<E, F>(
        &self,
        key: &AggregateKey,
        meta: &CommitMeta,
        etag: Option<u64>,
        mut decide: F,
        attempts: &mut u32,
    ) -> Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&Snapshot<A>, Time) -> Result<Vec<A::Event>, E>,
    {
        let subject = self.store.subject(key);
        let _serialised = self.lock_for(&subject).lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            *attempts = attempt;
            let snapshot = self.load(key).await?;
            if let Some(stored) = snapshot.request_ids.get(&meta.request_id) {
                return self.replay(key, meta, stored, &snapshot).await;
            }
            if let Some(expected) = etag
                && expected != snapshot.version
            {
                return Err(ExecuteError::EtagMismatch {
                    current: snapshot.version,
                });
            }
            let at = self.commit_time(&snapshot);
            let mut events = decide(&snapshot, at).map_err(ExecuteError::Rejected)?;
            if let Some(sealing) = &self.sealing
                && !events.is_empty()
            {
                sealing.seal(key, &mut events).await?;
            }
            if events.is_empty() {
                return Ok(Executed::Unchanged {
                    state: snapshot.state.clone(),
                    version: snapshot.version,
                });
            }
            let encoded = events.iter().map(A::encode).collect();
            match self
                .store
                .append_commit(key, snapshot.version, meta, at, encoded)
                .await
            {
                Ok(Appended::Stored(stored)) => {
                    let commit = Recorded {
                        sequence: stored.sequence,
                        committed_at: at,
                        events,
                    };
                    let mut next = (*snapshot).clone();
                    next.apply(&meta.request_id, &meta.fingerprint, &commit);
                    let state = next.state.clone();
                    self.remember(subject, Arc::new(next));
                    return Ok(Executed::Committed { commit, state });
                }
                Ok(Appended::Duplicate { .. }) => {
                    // Stored by an earlier attempt whose answer was lost: reload so the
                    // request id is found in the aggregate and answered from there.
                    self.forget(&subject);
                    let snapshot = self.load(key).await?;
                    if let Some(stored) = snapshot.request_ids.get(&meta.request_id) {
                        return self.replay(key, meta, stored, &snapshot).await;
                    }
                    return Err(StoreError::Corrupt {
                        sequence: snapshot.version,
                        reason: "duplicate acknowledged but request id not on the aggregate".into(),
                    }
                    .into());
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(attempt, "append conflict, deciding again");
                    let backoff = Duration::from_millis(
                        u64::from(attempt.min(8)) * 2 + rand::random_range(0..10),
                    );
                    tokio::time::sleep(backoff).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(ExecuteError::TooMuchContention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The time of the next commit on the aggregate: now by the clock, or the
    /// aggregate's last commit time when this replica's clock is behind; to the whole
    /// microsecond, as read models keep it, so an answer and a later read agree.
    fn commit_time(&self, snapshot: &Snapshot<A>) -> Time {
        let now = circle_calendar::whole_microseconds(self.clock.now());
        snapshot.committed_at.map_or(now, |last| now.max(last))
    }

    /// The answer to a request id already on the aggregate, decided here for every
    /// command of every service: another command under the same id is refused
    /// ([`ExecuteError::RequestIdReused`]); a retry gets the events of the original
    /// commit and the state right after it (rebuilt from the log up to that commit
    /// unless it is the aggregate's last).
    async fn replay<E>(
        &self,
        key: &AggregateKey,
        meta: &CommitMeta,
        stored: &Request,
        snapshot: &Snapshot<A>,
    ) -> Result<Executed<A>, ExecuteError<E>> {
        if !stored.is_retried_by(&meta.fingerprint) {
            return Err(ExecuteError::RequestIdReused);
        }
        Ok(self.replay_commit(key, stored.sequence, snapshot).await?)
    }

    async fn replay_commit(
        &self,
        key: &AggregateKey,
        sequence: u64,
        snapshot: &Snapshot<A>,
    ) -> Result<Executed<A>, StoreError> {
        if sequence == snapshot.version {
            let stored = self.store.read_commit(sequence).await?;
            return Ok(Executed::Replayed {
                commit: decode_recorded::<A>(&stored)?,
                state: snapshot.state.clone(),
            });
        }
        let mut then = Snapshot::<A>::default();
        let mut last = None;
        for stored in self.store.read(key, 0, sequence).await? {
            last = Some(then.apply_stored(&stored)?);
        }
        match last {
            Some(commit) if commit.sequence == sequence => Ok(Executed::Replayed {
                commit,
                state: then.state,
            }),
            _ => Err(StoreError::Corrupt {
                sequence,
                reason: "a request id's commit is not on its aggregate".into(),
            }),
        }
    }

    fn lock_for(&self, subject: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        subject.hash(&mut hasher);
        let stripe = (hasher.finish() % LOCK_STRIPES as u64) as usize;
        &self.locks[stripe]
    }

    fn cached(&self, subject: &str) -> Option<Arc<Snapshot<A>>> {
        self.cache
            .lock()
            .ok()
            .and_then(|mut cache| cache.get(subject))
    }

    fn remember(&self, subject: String, snapshot: Arc<Snapshot<A>>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(subject, snapshot);
        }
    }

    fn forget(&self, subject: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(subject);
        }
    }
}

/// A bounded cache that keeps what was used recently: two generations of at most
/// `capacity` entries each. New and used entries go to the young one; when it is full
/// it becomes the old one and the old one is dropped, so an entry used within the last
/// `capacity` insertions stays, and anything dropped is only a cache miss (the states
/// are a cache, never a source of truth). O(1) per call, no per-entry bookkeeping.
#[derive(Debug)]
pub(crate) struct Generations<V> {
    capacity: usize,
    young: HashMap<String, V>,
    old: HashMap<String, V>,
}

impl<V: Clone> Generations<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    /// The entry, moved to the young generation when it was old.
    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        if let Some(value) = self.young.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.old.remove_entry(key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    pub(crate) fn insert(&mut self, key: String, value: V) {
        if self.young.len() >= self.capacity && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&key);
        self.young.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.young.remove(key);
        self.old.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod generations_tests {
    use super::Generations;

    #[test]
    fn recently_used_entries_stay_and_the_size_is_bounded() {
        let mut cache = Generations::new(3);
        for n in 0..3 {
            cache.insert(format!("k{n}"), n);
        }
        // k0 is used, so it moves along; k1 and k2 age out two generations later.
        for n in 3..9 {
            assert_eq!(cache.get("k0"), Some(0));
            cache.insert(format!("k{n}"), n);
            assert!(cache.len() <= 6, "{}", cache.len());
        }
        assert_eq!(cache.get("k0"), Some(0));
        assert_eq!(cache.get("k1"), None);
        assert_eq!(cache.get("k8"), Some(8));
        cache.remove("k8");
        assert_eq!(cache.get("k8"), None);
    }

    #[test]
    fn an_entry_replaced_in_the_old_generation_is_not_read_back_stale() {
        let mut cache = Generations::new(2);
        cache.insert("a".to_owned(), 1);
        cache.insert("b".to_owned(), 1);
        cache.insert("c".to_owned(), 1); // a and b are in the old generation now
        cache.insert("a".to_owned(), 2); // the old a is dropped, not kept behind
        assert_eq!(cache.get("a"), Some(2));
        cache.insert("d".to_owned(), 1); // a is old again: still the new value
        cache.insert("e".to_owned(), 1);
        assert_eq!(cache.get("a"), Some(2));
    }
}

#[cfg(test)]
mod decoding_tests {
    //! A stored commit as an aggregate's domain events: whatever its time and events,
    //! applying it never panics; a time chrono cannot hold or an event the codec
    //! refuses is `StoreError::Corrupt` naming the commit, and a valid commit applies
    //! every event at its time.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// An aggregate whose events are UTF-8 text, counting them.
    #[derive(Debug, Clone, Default)]
    struct Texts(usize);

    impl Aggregate for Texts {
        const TYPE: &'static str = "texts";
        type Event = String;

        fn encode(event: &String) -> NewEvent {
            NewEvent {
                event_type: "test.Text".into(),
                schema_version: 1,
                payload: event.clone().into_bytes(),
            }
        }

        fn decode(event: &wire::Event) -> Result<String, DecodeError> {
            String::from_utf8(event.payload.clone()).map_err(|error| DecodeError {
                event_type: event.event_type.clone(),
                reason: error.to_string(),
            })
        }

        fn evolve(self, _event: &String, _at: Time) -> Self {
            Self(self.0 + 1)
        }
    }

    fn stored(time: Option<(i64, i32)>, payloads: Vec<Vec<u8>>) -> StoredCommit {
        StoredCommit {
            sequence: 9,
            subject: "test.acme.texts.t".into(),
            commit: wire::Commit {
                request_id: "r".into(),
                committed_at: time
                    .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                events: payloads
                    .into_iter()
                    .map(|payload| wire::Event {
                        event_type: "test.Text".into(),
                        payload,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            headers: Default::default(),
        }
    }

    proptest! {
        #[test]
        fn applying_any_commit_never_panics(
            time in proptest::option::of((any::<i64>(), any::<i32>())),
            payloads in vec(vec(any::<u8>(), 0..16), 0..4),
        ) {
            let commit = stored(time, payloads.clone());
            let mut snapshot = Snapshot::<Texts>::default();
            match snapshot.apply_stored(&commit) {
                Ok(recorded) => {
                    prop_assert_eq!(recorded.events.len(), payloads.len());
                    prop_assert_eq!(snapshot.state.0, payloads.len());
                    prop_assert_eq!(snapshot.version, 9);
                    prop_assert!(snapshot.has_request("r"));
                }
                Err(StoreError::Corrupt { sequence, .. }) => {
                    prop_assert_eq!(sequence, 9);
                    prop_assert_eq!(snapshot.version, 0);
                }
                Err(other) => {
                    return Err(TestCaseError::fail(format!("not a corrupt commit: {other}")));
                }
            }
        }

        #[test]
        fn a_valid_commit_gives_its_events_at_its_time(
            seconds in -62_135_596_800i64..253_402_300_800,
            nanos in 0i32..1_000_000_000,
            texts in vec(".{0,20}", 0..4),
        ) {
            let commit = stored(
                Some((seconds, nanos)),
                texts.iter().map(|text| text.clone().into_bytes()).collect(),
            );
            let recorded = decode_recorded::<Texts>(&commit).map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(recorded.sequence, 9);
            prop_assert_eq!(
                (recorded.committed_at.timestamp(), recorded.committed_at.timestamp_subsec_nanos()),
                (seconds, nanos as u32)
            );
            prop_assert_eq!(recorded.events, texts);
        }
    }
}
