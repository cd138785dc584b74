//! Time for Circle services: the [`Clock`] every service reads (controllable in tests),
//! [`Schedule`], a group's weekly recurrence in its clinic's time zone, and the one
//! parsing of a time or date a request carries ([`parse_time`], [`parse_date`]). Pure
//! code, shared so that enrollment (which owns schedules) and sessions (which
//! materialises them) compute the same session times.

mod clock;
mod input;
mod schedule;

pub use clock::{Clock, ManualClock, SystemClock};
pub use input::{
    DateRange, TimeRange, parse_date, parse_optional_time, parse_required_time, parse_time,
};
pub use schedule::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, Schedule, time_zone};

/// A point in time (UTC).
pub type Time = chrono::DateTime<chrono::Utc>;

/// A time as a protobuf `Timestamp` (events and API messages carry these).
pub fn timestamp(time: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A recorded protobuf `Timestamp` (an event's) as a time; `None` when chrono cannot
/// hold it. Request inputs go through [`parse_time`], which also checks the ranges.
pub fn from_timestamp(timestamp: prost_types::Timestamp) -> Option<Time> {
    chrono::DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}
