//! What a projection runner tells the rest of its process and the operators: whether it
//! is halted (readiness follows it) and how far behind the stream it is, through the
//! OpenTelemetry global meter (`circle` scope).
//!
//! Instruments (attributes `circle.projection` — the projection's name — and
//! `messaging.destination.name` — its stream):
//! - `circle.projection.events_applied` (counter): messages applied and committed;
//! - `circle.projection.dead_letters` (counter): messages given up on (dead-lettered);
//! - `circle.projection.halted` (gauge, 0/1): 1 while the runner is halted on a
//!   systemic failure (see the halting rule in `runner.rs`);
//! - `circle.projection.lag.events` (gauge): the stream's last sequence minus the
//!   checkpoint (a projection consumes its whole stream);
//! - `circle.projection.lag.seconds` (gauge): the age of the oldest message not yet
//!   applied (the one right after the checkpoint); 0 when caught up;
//! - `circle.process_manager.steps` (counter, process managers only, by
//!   `circle.outcome`: `ok`, `retried`, `dead_lettered`, `halted`).
//!
//! Lag is sampled every second by the runner (whether or not it is the writer), from
//! the stream's end and the checkpoint row, so it rises while the writer is stuck.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

/// A runner's health, shared with whoever needs it (readiness, metrics). Cheap to clone.
#[derive(Clone)]
pub struct Health {
    state: Arc<State>,
}

struct State {
    projection: String,
    /// The partitions halted on this replica, one bit each.
    halted: AtomicU64,
    lag_events: AtomicU64,
    /// `f64` bits.
    lag_seconds: AtomicU64,
    /// When the oldest message each partition's writer holds unapplied was published
    /// (Unix nanoseconds; 0 when it holds none).
    oldest_pending: Vec<AtomicU64>,
}

impl Health {
    pub(crate) fn new(projection: &str, partitions: u32) -> Self {
        Self {
            state: Arc::new(State {
                projection: projection.to_owned(),
                halted: AtomicU64::new(0),
                lag_events: AtomicU64::new(0),
                lag_seconds: AtomicU64::new(0f64.to_bits()),
                oldest_pending: (0..partitions.max(1)).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// The health of a projection that was refused and cannot run (its schema is
    /// another's, its tables would not be walled): halted for good, so the service
    /// reports not ready instead of serving from tables nothing fills.
    pub fn refused(projection: &str) -> Self {
        let health = Self::new(projection, 1);
        health.set_halted_partition(0, true);
        health
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.state.projection
    }

    /// Whether the runner is halted (on any partition this replica writes) on a
    /// failure that repeats from event to event (the process is then not ready).
    pub fn halted(&self) -> bool {
        self.state.halted.load(Ordering::Relaxed) != 0
    }

    /// Messages of the stream after the checkpoint, as last sampled.
    pub fn lag_events(&self) -> u64 {
        self.state.lag_events.load(Ordering::Relaxed)
    }

    /// Age in seconds of the oldest message not applied yet, as last sampled.
    pub fn lag_seconds(&self) -> f64 {
        f64::from_bits(self.state.lag_seconds.load(Ordering::Relaxed))
    }

    /// Sets whether `partition` is halted; answers whether that changed.
    pub(crate) fn set_halted_partition(&self, partition: u32, halted: bool) -> bool {
        let bit = 1u64 << (partition % 64);
        let before = if halted {
            self.state.halted.fetch_or(bit, Ordering::Relaxed)
        } else {
            self.state.halted.fetch_and(!bit, Ordering::Relaxed)
        };
        (before & bit != 0) != halted
    }

    /// Sets the lag in events, and in seconds when known (else the last stays).
    pub(crate) fn set_lag(&self, events: u64, seconds: Option<f64>) {
        self.state.lag_events.store(events, Ordering::Relaxed);
        if let Some(seconds) = seconds {
            self.state
                .lag_seconds
                .store(seconds.max(0.0).to_bits(), Ordering::Relaxed);
        }
    }

    /// Records when the oldest message `partition`'s writer holds unapplied was
    /// published.
    pub(crate) fn set_oldest_pending(&self, partition: u32, published_nanos: Option<u64>) {
        if let Some(slot) = self.state.oldest_pending.get(partition as usize) {
            slot.store(published_nanos.unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The oldest message any partition's writer here holds unapplied.
    pub(crate) fn oldest_pending(&self) -> Option<u64> {
        self.state
            .oldest_pending
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|nanos| *nanos > 0)
            .min()
    }
}

/// A runner's instruments.
pub(crate) struct Metrics {
    attributes: Vec<KeyValue>,
    events_applied: Counter<u64>,
    dead_letters: Counter<u64>,
    steps: Option<Counter<u64>>,
}

impl Metrics {
    /// Instruments of `service`'s meter (its telemetry name, `circle-enrollment`; the
    /// global meter for none) as it is now: a noop until telemetry installs providers,
    /// so runners are made after it. The gauges read `health` while it lives.
    pub(crate) fn new(health: &Health, stream: &str, process_manager: bool, service: &str) -> Self {
        let meter = if service.is_empty() {
            opentelemetry::global::meter(circle_telemetry::SCOPE)
        } else {
            circle_telemetry::meter(service)
        };
        let attributes = vec![
            KeyValue::new("circle.projection", health.projection().to_owned()),
            KeyValue::new("messaging.destination.name", stream.to_owned()),
        ];
        let observed = |health: &Health| Arc::downgrade(&health.state);
        let gauge_attributes = attributes.clone();
        let state: Weak<State> = observed(health);
        meter
            .i64_observable_gauge("circle.projection.halted")
            .with_description("1 while the projection is halted on a failure that repeats")
            .with_callback(move |observer| {
                if let Some(state) = state.upgrade() {
                    observer.observe(
                        i64::from(state.halted.load(Ordering::Relaxed) != 0),
                        &gauge_attributes,
                    );
                }
            })
            .build();
        let gauge_attributes = attributes.clone();
        let state = observed(health);
        meter
            .u64_observable_gauge("circle.projection.lag.events")
            .with_description("messages of the stream after the projection's checkpoint")
            .with_unit("{event}")
            .with_callback(move |observer| {
                if let Some(state) = state.upgrade() {
                    observer.observe(state.lag_events.load(Ordering::Relaxed), &gauge_attributes);
                }
            })
            .build();
        let gauge_attributes = attributes.clone();
        let state = observed(health);
        meter
            .f64_observable_gauge("circle.projection.lag.seconds")
            .with_description("age of the oldest message the projection has not applied yet")
            .with_unit("s")
            .with_callback(move |observer| {
                if let Some(state) = state.upgrade() {
                    observer.observe(
                        f64::from_bits(state.lag_seconds.load(Ordering::Relaxed)),
                        &gauge_attributes,
                    );
                }
            })
            .build();
        Self {
            events_applied: meter
                .u64_counter("circle.projection.events_applied")
                .with_description("messages applied to the read model and committed")
                .with_unit("{event}")
                .build(),
            dead_letters: meter
                .u64_counter("circle.projection.dead_letters")
                .with_description("messages the projection gave up on (dead-lettered)")
                .with_unit("{event}")
                .build(),
            steps: process_manager.then(|| {
                meter
                    .u64_counter("circle.process_manager.steps")
                    .with_description("process manager steps by outcome")
                    .with_unit("{step}")
                    .build()
            }),
            attributes,
        }
    }

    pub(crate) fn applied(&self, count: u64) {
        if count > 0 {
            self.events_applied.add(count, &self.attributes);
            self.step("ok", count);
        }
    }

    pub(crate) fn dead_lettered(&self, count: u64) {
        if count > 0 {
            self.dead_letters.add(count, &self.attributes);
            self.step("dead_lettered", count);
        }
    }

    pub(crate) fn step(&self, outcome: &'static str, count: u64) {
        if let Some(steps) = &self.steps
            && count > 0
        {
            let mut attributes = self.attributes.clone();
            attributes.push(KeyValue::new("circle.outcome", outcome));
            steps.add(count, &attributes);
        }
    }
}
