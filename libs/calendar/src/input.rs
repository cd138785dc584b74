//! The one parsing of a time or a date a request carries. A `google.protobuf.Timestamp`
//! must be a valid one (nanos in 0..1e9, seconds within 0001-01-01T00:00:00Z to
//! 9999-12-31T23:59:59.999999999Z, or conforming clients cannot read it back) and
//! within the range the field documents; a date "YYYY-MM-DD" likewise. Errors are
//! descriptions for a field violation.

use chrono::{DateTime, Months, NaiveDate, Utc};

use crate::Time;

/// Seconds of 0001-01-01T00:00:00Z, the earliest a `Timestamp` may hold.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Seconds of 9999-12-31T23:59:59Z, the latest a `Timestamp` may hold.
const MAX_SECONDS: i64 = 253_402_300_799;
const MAX_NANOS: i32 = 999_999_999;

/// The times a field accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    earliest: Time,
    latest: Time,
}

impl TimeRange {
    /// Every time a `Timestamp` can hold (for filters, whose bounds need no more).
    pub fn protobuf() -> Self {
        Self {
            earliest: DateTime::from_timestamp(MIN_SECONDS, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
            latest: DateTime::from_timestamp(MAX_SECONDS, MAX_NANOS as u32)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// From `years_back` years before `now` to `years_ahead` years after it, and
    /// within the protobuf range.
    pub fn around(now: Time, years_back: u32, years_ahead: u32) -> Self {
        let protobuf = Self::protobuf();
        let earliest = now
            .checked_sub_months(Months::new(years_back.saturating_mul(12)))
            .map_or(protobuf.earliest, |time| time.max(protobuf.earliest));
        let latest = now
            .checked_add_months(Months::new(years_ahead.saturating_mul(12)))
            .map_or(protobuf.latest, |time| time.min(protobuf.latest));
        Self { earliest, latest }
    }

    pub fn contains(&self, time: Time) -> bool {
        self.earliest <= time && time <= self.latest
    }
}

/// A `Timestamp` input as a time within `range`.
pub fn parse_time(value: prost_types::Timestamp, range: &TimeRange) -> Result<Time, String> {
    if !(0..=MAX_NANOS).contains(&value.nanos) {
        return Err(format!("nanos must be between 0 and {MAX_NANOS}"));
    }
    let time = (MIN_SECONDS..=MAX_SECONDS)
        .contains(&value.seconds)
        .then(|| DateTime::from_timestamp(value.seconds, value.nanos as u32))
        .flatten()
        .ok_or_else(|| {
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z".to_owned()
        })?;
    if !range.contains(time) {
        return Err(format!(
            "must be between {} and {}",
            range
                .earliest
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            range
                .latest
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
    }
    Ok(time)
}

/// A required `Timestamp` input: missing is a violation too.
pub fn parse_required_time(
    value: Option<prost_types::Timestamp>,
    range: &TimeRange,
) -> Result<Time, String> {
    parse_time(value.ok_or_else(|| "must be a time".to_owned())?, range)
}

/// An optional `Timestamp` input (absent stays absent).
pub fn parse_optional_time(
    value: Option<prost_types::Timestamp>,
    range: &TimeRange,
) -> Result<Option<Time>, String> {
    value.map(|value| parse_time(value, range)).transpose()
}

/// The dates a field accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    earliest: NaiveDate,
    latest: NaiveDate,
}

impl DateRange {
    /// 0001-01-01 to 9999-12-31, what "YYYY-MM-DD" can write.
    pub fn protobuf() -> Self {
        Self {
            earliest: NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN),
            latest: NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX),
        }
    }

    /// From `earliest` to `latest`, within 0001-01-01 to 9999-12-31.
    pub fn between(earliest: NaiveDate, latest: NaiveDate) -> Self {
        let protobuf = Self::protobuf();
        Self {
            earliest: earliest.max(protobuf.earliest),
            latest: latest.min(protobuf.latest),
        }
    }

    /// From `years_back` years before `today` to `years_ahead` years after it.
    pub fn around(today: NaiveDate, years_back: u32, years_ahead: u32) -> Self {
        let protobuf = Self::protobuf();
        Self::between(
            today
                .checked_sub_months(Months::new(years_back.saturating_mul(12)))
                .unwrap_or(protobuf.earliest),
            today
                .checked_add_months(Months::new(years_ahead.saturating_mul(12)))
                .unwrap_or(protobuf.latest),
        )
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.earliest <= date && date <= self.latest
    }
}

/// A date input, exactly "YYYY-MM-DD", as a date within `range`.
pub fn parse_date(value: &str, range: &DateRange) -> Result<NaiveDate, String> {
    let number = |digits: &str| -> Option<u32> {
        digits
            .bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let date = match value.as_bytes() {
        [_, _, _, _, b'-', _, _, b'-', _, _] => {
            let year = value.get(0..4).and_then(number);
            let month = value.get(5..7).and_then(number);
            let day = value.get(8..10).and_then(number);
            match (year, month, day) {
                (Some(year), Some(month), Some(day)) => {
                    NaiveDate::from_ymd_opt(year as i32, month, day)
                }
                _ => None,
            }
        }
        _ => None,
    }
    .ok_or_else(|| "must be a date YYYY-MM-DD".to_owned())?;
    if !range.contains(date) {
        return Err(format!(
            "must be between {} and {}",
            range.earliest.format("%Y-%m-%d"),
            range.latest.format("%Y-%m-%d")
        ));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    fn now() -> Time {
        "2026-11-20T12:00:00Z".parse().expect("a time")
    }

    #[test]
    fn the_protobuf_range_is_accepted_to_its_last_nanosecond() {
        let any = TimeRange::protobuf();
        assert_eq!(
            parse_time(timestamp(MIN_SECONDS, 0), &any),
            Ok("0001-01-01T00:00:00Z".parse().expect("a time"))
        );
        assert_eq!(
            parse_time(timestamp(MAX_SECONDS, 999_999_999), &any),
            Ok("9999-12-31T23:59:59.999999999Z".parse().expect("a time"))
        );
    }

    #[test]
    fn times_outside_the_protobuf_range_are_refused_even_when_chrono_could_hold_them() {
        let any = TimeRange::protobuf();
        for (seconds, nanos) in [
            (MAX_SECONDS + 1, 0),
            (MIN_SECONDS - 1, 999_999_999),
            (i64::MAX, 0),
            (i64::MIN, 0),
            (0, -1),
            (0, 1_000_000_000),
            (0, i32::MIN),
            (0, i32::MAX),
        ] {
            assert!(
                parse_time(timestamp(seconds, nanos), &any).is_err(),
                "{seconds}.{nanos}"
            );
        }
    }

    #[test]
    fn a_domain_range_around_now_includes_its_ends_only() {
        let range = TimeRange::around(now(), 1, 2);
        let earliest = "2025-11-20T12:00:00Z".parse::<Time>().expect("a time");
        let latest = "2028-11-20T12:00:00Z".parse::<Time>().expect("a time");
        let at = |time: Time| timestamp(time.timestamp(), time.timestamp_subsec_nanos() as i32);
        assert_eq!(parse_time(at(earliest), &range), Ok(earliest));
        assert_eq!(parse_time(at(latest), &range), Ok(latest));
        let refused = parse_time(at(latest + chrono::Duration::nanoseconds(1)), &range);
        assert_eq!(
            refused,
            Err("must be between 2025-11-20T12:00:00Z and 2028-11-20T12:00:00Z".to_owned())
        );
        assert!(parse_time(at(earliest - chrono::Duration::nanoseconds(1)), &range).is_err());
    }

    #[test]
    fn a_range_around_now_never_leaves_the_protobuf_range() {
        let near_the_end = "9999-06-01T00:00:00Z".parse::<Time>().expect("a time");
        let range = TimeRange::around(near_the_end, 1, 5);
        assert!(parse_time(timestamp(MAX_SECONDS, 999_999_999), &range).is_ok());
        assert!(parse_time(timestamp(MAX_SECONDS + 1, 0), &range).is_err());
        assert_eq!(
            TimeRange::around(now(), u32::MAX, u32::MAX),
            TimeRange::protobuf()
        );
    }

    #[test]
    fn required_and_optional_times() {
        let any = TimeRange::protobuf();
        assert_eq!(
            parse_required_time(None, &any),
            Err("must be a time".to_owned())
        );
        assert_eq!(parse_optional_time(None, &any), Ok(None));
        assert!(parse_optional_time(Some(timestamp(MAX_SECONDS + 1, 0)), &any).is_err());
    }

    #[test]
    fn dates_are_exactly_year_month_day_within_their_range() {
        let any = DateRange::protobuf();
        assert_eq!(parse_date("0001-01-01", &any), Ok(date("0001-01-01")));
        assert_eq!(parse_date("9999-12-31", &any), Ok(date("9999-12-31")));
        assert_eq!(parse_date("2028-02-29", &any), Ok(date("2028-02-29")));
        for text in [
            "0000-01-01",
            "0000-02-29",
            "+10000-01-01",
            "-0001-01-01",
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "2026-01-1 ",
            " 2026-01-01",
            "2026/01/01",
            "+026-01-01",
            "2026-+1-01",
            "",
            "२०२६-01-01",
        ] {
            assert!(parse_date(text, &any).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_date_range_around_today_includes_its_ends_only() {
        let range = DateRange::around(date("2026-11-20"), 10, 1);
        assert_eq!(parse_date("2016-11-20", &range), Ok(date("2016-11-20")));
        assert_eq!(parse_date("2027-11-20", &range), Ok(date("2027-11-20")));
        assert_eq!(
            parse_date("2027-11-21", &range),
            Err("must be between 2016-11-20 and 2027-11-20".to_owned())
        );
        assert!(parse_date("2016-11-19", &range).is_err());
        let fixed = DateRange::between(date("0001-01-01") - chrono::Days::new(1), NaiveDate::MAX);
        assert_eq!(fixed, DateRange::protobuf());
    }
}
