//! The projection runtime (BLUEPRINT §3): a durable pull consumer per projection; each
//! fetched batch is applied in stream order inside one PostgreSQL transaction together
//! with the projection's checkpoint; the batch is acknowledged only after commit, and a
//! message at or below the checkpoint is a no-op, so effects happen exactly once on top
//! of at-least-once delivery. A message that keeps failing is written to the dead
//! letters (in the same transaction that moves the checkpoint past it) after a bounded
//! number of attempts and the projection goes on. [`rebuild`] replays the stream from
//! sequence 1 into a fresh schema and swaps it in.
//!
//! Tables of a projection live in one PostgreSQL schema, together with its checkpoint,
//! dead letters and the networks it has seen. Apply code uses unqualified table names:
//! the runner sets the transaction's `search_path` to the live schema, or to the
//! rebuild schema, and the network of each message before applying it.
//!
//! [`walls`]: row-level security on every table as a second tenant wall; the owner
//! migrates, the runtime role ([`Database`]) reads and writes one network at a time.

pub mod admin;
mod health;
mod lease;
mod runner;
pub mod walls;

pub use health::Health;
pub use lease::{LEASE_RETRY, Lease};
pub use runner::{
    Applied, ApplyError, Checkpoints, Delivery, LagError, MAX_PARTITIONS, Projection,
    ProjectionHandle, ProjectionRunner, ProjectionSettings, RebuildReport, partition_of, prepare,
    rebuild, wait_for_stream_end, watch_checkpoints,
};
pub use walls::{Database, WallError, networks, set_network, tenant_snapshot, tenant_transaction};
