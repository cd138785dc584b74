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

/// The time to the whole microsecond, earlier digits dropped: the precision PostgreSQL
/// keeps, so a time a service records (a commit's, or one a client sent) reads the same
/// in a command's answer, in the events and in every read model.
pub fn whole_microseconds(time: Time) -> Time {
    let nanos = time.timestamp_subsec_nanos();
    time - chrono::Duration::nanoseconds(i64::from(nanos % 1_000))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_microseconds_drops_only_the_sub_microsecond_digits() {
        let time: Time = "2026-11-20T12:00:00.123456789Z".parse().expect("time");
        let expected: Time = "2026-11-20T12:00:00.123456Z".parse().expect("time");
        assert_eq!(whole_microseconds(time), expected);
        assert_eq!(whole_microseconds(expected), expected);
        let before_epoch: Time = "1969-12-31T23:59:59.999999999Z".parse().expect("time");
        assert_eq!(
            whole_microseconds(before_epoch),
            "1969-12-31T23:59:59.999999Z".parse::<Time>().expect("time")
        );
    }
}
