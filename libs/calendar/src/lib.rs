//! Time for Circle services: the [`Clock`] every service reads (controllable in tests),
//! and [`Schedule`], a group's weekly recurrence in its clinic's time zone. Pure code,
//! shared so that enrollment (which owns schedules) and sessions (which materialises
//! them) compute the same session times.

mod clock;
mod schedule;

pub use clock::{Clock, ManualClock, SystemClock};
pub use schedule::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, Schedule, time_zone};

/// A point in time (UTC).
pub type Time = chrono::DateTime<chrono::Utc>;
