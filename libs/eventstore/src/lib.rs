//! The event log: one JetStream stream per service, one subject per aggregate, one
//! message ("commit") per command, optimistic concurrency on the subject's last
//! sequence, and idempotency by request id. See BLUEPRINT §2 and ARCHITECTURE.md.
//!
//! - [`EventStore`] provisions the stream and appends / reads commits.
//! - [`Repository`] runs a command against an aggregate: load (with a cache of recent
//!   states), decide, append, retry on conflict, and answer retries of a stored
//!   command with the commit it produced.
//! - [`mismatch`] judges an existing stream's replicas and duplicate window against
//!   the configuration (`nats.stream_mismatch`: refuse or warn), for the event log and
//!   the audit streams alike.

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod key;
pub mod mismatch;
mod repository;
mod store;
mod trace;

pub use key::{AggregateKey, KeyError};
pub use mismatch::{Difference, Mismatch, Opened, StreamMismatch};
pub use repository::{
    Aggregate, DecodeError, ExecuteError, Executed, Recorded, Repository, Seal, SealError, Snapshot,
};
pub use store::{
    AppendOutcome, CommitMeta, ENVELOPE_HEADER, EVENT_TYPES_HEADER, EventStore, NewEvent,
    StoreError, StoredCommit, StreamSpec, wait_for_stream,
};
pub use trace::{HeaderExtractor, HeaderInjector};

pub use circle_proto::eventstore::v1 as wire;
