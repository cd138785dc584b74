use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circle_calendar::{Clock, Time};

use crate::key::AggregateKey;
use crate::store::{Appended, CommitMeta, EventStore, NewEvent, StoreError, StoredCommit};

/// State rebuilt from an aggregate's commits. Implemented by each service next to its
/// wire codec; the state itself lives in the service's pure domain module.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    const TYPE: &'static str;
    fn apply(&mut self, commit: &StoredCommit) -> Result<(), DecodeError>;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

/// An aggregate's state at a version, with the request ids of every commit that made it
/// (so a retry of any earlier command is recognised, however old).
#[derive(Debug, Clone, Default)]
pub struct Snapshot<A> {
    pub state: A,
    pub version: u64,
    request_ids: HashMap<String, u64>,
    /// The time of the aggregate's last commit: the next one is never stamped earlier.
    committed_at: Option<Time>,
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
    fn apply(&mut self, commit: &StoredCommit) -> Result<(), StoreError> {
        self.state
            .apply(commit)
            .map_err(|error| StoreError::Corrupt {
                sequence: commit.sequence,
                reason: error.to_string(),
            })?;
        self.version = commit.sequence;
        if let Some(at) = commit
            .commit
            .committed_at
            .and_then(circle_calendar::from_timestamp)
        {
            self.committed_at = Some(self.committed_at.map_or(at, |last| last.max(at)));
        }
        self.request_ids
            .insert(commit.commit.request_id.clone(), commit.sequence);
        Ok(())
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub enum Executed<A> {
    /// Appended now; `state` is the aggregate after the commit.
    Committed { commit: StoredCommit, state: A },
    /// The request id was seen before; this is the commit it produced then, and the
    /// aggregate's current state.
    Replayed { commit: StoredCommit, state: A },
    /// The command changed nothing (it asked for what already holds); nothing was
    /// appended.
    Unchanged { state: A, version: u64 },
}

impl<A> Executed<A> {
    /// The commit the command produced, now or on its first attempt.
    pub fn commit(&self) -> Option<&StoredCommit> {
        match self {
            Self::Committed { commit, .. } | Self::Replayed { commit, .. } => Some(commit),
            Self::Unchanged { .. } => None,
        }
    }

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
    #[error(transparent)]
    Rejected(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {attempts} concurrent modifications")]
    TooMuchContention { attempts: u32 },
}

const LOCK_STRIPES: usize = 64;
const CACHE_CAPACITY: usize = 4096;
const MAX_ATTEMPTS: u32 = 32;

/// Runs commands against aggregates of one type.
///
/// Commands on one aggregate are serialised inside this process (striped locks), so
/// optimistic conflicts only arise between replicas; a conflict reloads and decides
/// again, a bounded number of times.
pub struct Repository<A> {
    store: EventStore,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Arc<Snapshot<A>>>>,
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl<A: Aggregate> Repository<A> {
    /// A repository whose commits are stamped by `clock` (the service's clock).
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
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
            snapshot.apply(&commit)?;
        }
        let snapshot = Arc::new(snapshot);
        self.remember(subject, snapshot.clone());
        Ok(snapshot)
    }

    /// Loads the aggregate, asks `decide` for the events of the command, and appends
    /// them as one commit. A request id already stored on the aggregate is answered
    /// with its original commit and nothing is appended.
    ///
    /// `decide` gets the time the commit will carry: the clock's, but never earlier
    /// than the aggregate's last commit (replicas' clocks differ by milliseconds, and an
    /// aggregate's history must not go back in time).
    pub async fn execute<E, F>(
        &self,
        key: &AggregateKey,
        meta: &CommitMeta,
        mut decide: F,
    ) -> Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&Snapshot<A>, Time) -> Result<Vec<NewEvent>, E>,
    {
        let subject = self.store.subject(key);
        let _serialised = self.lock_for(&subject).lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let snapshot = self.load(key).await?;
            if let Some(&sequence) = snapshot.request_ids.get(&meta.request_id) {
                return Ok(self.replay(sequence, &snapshot).await?);
            }
            let at = self.commit_time(&snapshot);
            let events = decide(&snapshot, at).map_err(ExecuteError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed::Unchanged {
                    state: snapshot.state.clone(),
                    version: snapshot.version,
                });
            }
            match self
                .store
                .append_commit(key, snapshot.version, meta, at, events)
                .await
            {
                Ok(Appended::Stored(commit)) => {
                    let mut next = (*snapshot).clone();
                    next.apply(&commit)?;
                    let state = next.state.clone();
                    self.remember(subject, Arc::new(next));
                    return Ok(Executed::Committed {
                        commit: *commit,
                        state,
                    });
                }
                Ok(Appended::Duplicate { .. }) => {
                    // Stored by an earlier attempt whose answer was lost: reload so the
                    // request id is found in the aggregate and answered from there.
                    self.forget(&subject);
                    let snapshot = self.load(key).await?;
                    if let Some(&sequence) = snapshot.request_ids.get(&meta.request_id) {
                        return Ok(self.replay(sequence, &snapshot).await?);
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

    async fn replay(
        &self,
        sequence: u64,
        snapshot: &Snapshot<A>,
    ) -> Result<Executed<A>, StoreError> {
        let commit = self.store.read_commit(sequence).await?;
        Ok(Executed::Replayed {
            commit,
            state: snapshot.state.clone(),
        })
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
            .and_then(|cache| cache.get(subject).cloned())
    }

    fn remember(&self, subject: String, snapshot: Arc<Snapshot<A>>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY && !cache.contains_key(&subject) {
                // Recent states are a cache, not a source of truth: dropping them all is
                // always correct and keeps memory bounded without bookkeeping.
                cache.clear();
            }
            cache.insert(subject, snapshot);
        }
    }

    fn forget(&self, subject: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(subject);
        }
    }
}
