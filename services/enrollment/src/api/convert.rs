//! Wire types to domain types: resource ids, field validation (collected into one
//! `INVALID_ARGUMENT` naming every bad field). The way back is `wire`.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveTime, Timelike};
use circle_calendar::DateRange;
use circle_grpc::Violations;
use circle_proto::enrollment::v1 as pb;

use crate::domain::schedule::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES};
use crate::domain::{
    AdmissionMode, ConsentTerms, DischargeReason, Facilitator, FacilitatorRole, ForgetReason,
    PeerDisplay, Profile, Schedule,
};

pub const MAX_CAPACITY: u32 = 50;
pub const MAX_FACILITATORS: usize = 10;
/// A schedule's dates with no session (documented on `Schedule.exception_dates`).
pub const MAX_EXCEPTION_DATES: usize = 500;
/// Weekdays in a list of weekdays: each at most once.
pub const MAX_WEEKDAYS: usize = 7;

/// Resource id: the client's, or one derived from the request id so that a retry of a
/// create without an id lands on the same record. `None` when the given one is not an
/// id (recorded in `violations`).
pub fn resource_id(
    violations: &mut Violations,
    field: &str,
    given: &str,
    network: &str,
    request_id: &str,
) -> Option<circle_names::Id> {
    if given.is_empty() {
        return Some(crate::app::derived_id(network, field, request_id));
    }
    violations.check(
        field,
        circle_names::Id::parse(given).map_err(|error| error.to_string()),
    )
}

pub fn text(value: &str, max_chars: usize) -> Result<String, String> {
    circle_grpc::line(value, max_chars, true)
}

pub fn optional_text(value: &str, max_chars: usize) -> Result<String, String> {
    circle_grpc::line(value, max_chars, false)
}

pub fn time_zone_name(value: &str) -> Result<String, String> {
    match value.parse::<chrono_tz::Tz>() {
        Ok(zone) => Ok(zone.name().to_owned()),
        Err(_) => Err("must be an IANA time zone such as America/Chicago".into()),
    }
}

pub fn slug(value: &str) -> Result<String, String> {
    circle_grpc::check_id(value).map(|()| value.to_owned())
}

pub fn capacity(value: u32) -> Result<u32, String> {
    if (1..=MAX_CAPACITY).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be between 1 and {MAX_CAPACITY}"))
    }
}

/// Unspecified means rolling on create.
pub fn admission_mode(value: i32) -> Result<AdmissionMode, String> {
    match pb::AdmissionMode::try_from(value) {
        Ok(pb::AdmissionMode::Unspecified | pb::AdmissionMode::Rolling) => {
            Ok(AdmissionMode::Rolling)
        }
        Ok(pb::AdmissionMode::Closed) => Ok(AdmissionMode::Closed),
        Err(_) => Err("unknown admission mode".into()),
    }
}

pub fn facilitators(
    violations: &mut Violations,
    field: &str,
    facilitators: &[pb::Facilitator],
) -> Vec<Facilitator> {
    if facilitators.len() > MAX_FACILITATORS {
        violations.add(field, format!("at most {MAX_FACILITATORS} facilitators"));
    }
    let mut seen = BTreeSet::new();
    let mut result = Vec::new();
    for (index, facilitator) in facilitators.iter().enumerate() {
        let staff_field = format!("{field}[{index}].staff_id");
        if violations
            .check(&staff_field, circle_grpc::check_id(&facilitator.staff_id))
            .is_some()
            && !seen.insert(facilitator.staff_id.clone())
        {
            violations.add(staff_field, "listed twice");
        }
        let role = match pb::FacilitatorRole::try_from(facilitator.role) {
            Ok(pb::FacilitatorRole::Lead) => Some(FacilitatorRole::Lead),
            Ok(pb::FacilitatorRole::CoFacilitator) => Some(FacilitatorRole::CoFacilitator),
            Ok(pb::FacilitatorRole::PeerLeader) => Some(FacilitatorRole::PeerLeader),
            _ => {
                violations.add(
                    format!("{field}[{index}].role"),
                    "must be lead, co-facilitator or peer leader",
                );
                None
            }
        };
        if let Some(role) = role {
            result.push(Facilitator {
                staff_id: facilitator.staff_id.clone(),
                role,
            });
        }
    }
    result
}

/// The earliest date a schedule may name. Fixed rather than relative to today, so an
/// unchanged schedule of a long-running group is still accepted when sent again.
const SCHEDULE_EARLIEST: (i32, u32, u32) = (2000, 1, 1);
/// How far ahead of today a schedule may start.
pub const SCHEDULE_START_YEARS_AHEAD: u32 = 5;
/// How far ahead of today a schedule's end and exception dates may be.
pub const SCHEDULE_DATES_YEARS_AHEAD: u32 = 10;

fn schedule_dates(today: NaiveDate, years_ahead: u32) -> DateRange {
    let (year, month, day) = SCHEDULE_EARLIEST;
    DateRange::between(
        NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN),
        today
            .checked_add_months(chrono::Months::new(years_ahead.saturating_mul(12)))
            .unwrap_or(NaiveDate::MAX),
    )
}

pub fn local_time(value: &str) -> Result<u32, String> {
    NaiveTime::parse_from_str(value, "%H:%M")
        .map(|time| time.hour() * 60 + time.minute())
        .map_err(|_| "must be a local time HH:MM".to_owned())
}

pub fn iso_weekday(value: i32) -> Result<u32, String> {
    match pb::Weekday::try_from(value) {
        Ok(pb::Weekday::Unspecified) | Err(_) => Err("must name a weekday".into()),
        Ok(day) => Ok(day as u32),
    }
}

/// A schedule from the API. Its dates are from 2000-01-01 to five years from `today`
/// (the start) or ten (the end and exceptions).
pub fn schedule(
    violations: &mut Violations,
    field: &str,
    schedule: &pb::Schedule,
    today: NaiveDate,
) -> Option<Schedule> {
    let start_dates = schedule_dates(today, SCHEDULE_START_YEARS_AHEAD);
    let other_dates = schedule_dates(today, SCHEDULE_DATES_YEARS_AHEAD);
    let date = |value: &str, range: &DateRange| circle_calendar::parse_date(value, range);
    let mut days = BTreeSet::new();
    if schedule.days.is_empty() {
        violations.add(format!("{field}.days"), "must name at least one weekday");
    }
    if schedule.days.len() > MAX_WEEKDAYS {
        violations.add(
            format!("{field}.days"),
            format!("at most {MAX_WEEKDAYS} weekdays"),
        );
    } else {
        for day in &schedule.days {
            if let Some(day) = violations.check(&format!("{field}.days"), iso_weekday(*day)) {
                days.insert(day);
            }
        }
    }
    let start_minute = violations.check(
        &format!("{field}.start_time"),
        local_time(&schedule.start_time),
    );
    if !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&schedule.duration_minutes) {
        violations.add(
            format!("{field}.duration_minutes"),
            format!("must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES}"),
        );
    }
    let start_date = violations.check(
        &format!("{field}.start_date"),
        date(&schedule.start_date, &start_dates),
    );
    let end_date = if schedule.end_date.is_empty() {
        Some(None)
    } else {
        violations
            .check(
                &format!("{field}.end_date"),
                date(&schedule.end_date, &other_dates),
            )
            .map(Some)
    };
    let mut exception_dates = BTreeSet::new();
    if schedule.exception_dates.len() > MAX_EXCEPTION_DATES {
        violations.add(
            format!("{field}.exception_dates"),
            format!("at most {MAX_EXCEPTION_DATES} dates"),
        );
        return None;
    }
    for exception in &schedule.exception_dates {
        if let Some(exception) = violations.check(
            &format!("{field}.exception_dates"),
            date(exception, &other_dates),
        ) {
            exception_dates.insert(exception);
        }
    }
    let result = Schedule {
        iso_weekdays: days,
        start_minute: start_minute?,
        duration_minutes: schedule.duration_minutes,
        start_date: start_date?,
        end_date: end_date?,
        exception_dates,
    };
    if let Err(problem) = result.check() {
        violations.add(field, problem);
        return None;
    }
    Some(result)
}

/// A profile from the API, checked as the application checks every profile.
pub fn profile(
    violations: &mut Violations,
    field: &str,
    profile: &pb::ParticipantProfile,
) -> Profile {
    crate::app::checked_profile(
        violations,
        field,
        &Profile {
            given_name: profile.given_name.clone(),
            family_name: profile.family_name.clone(),
            preferred_name: profile.preferred_name.clone(),
            email: profile.email.clone(),
            phone: profile.phone.clone(),
        },
    )
}

pub fn consent_terms(violations: &mut Violations, consent: &pb::Consent) -> Option<ConsentTerms> {
    match pb::ConsentKind::try_from(consent.kind) {
        Ok(pb::ConsentKind::TreatmentDisclosure) => {
            let recipient = violations.check("consent.recipient", text(&consent.recipient, 200));
            let purpose = violations.check("consent.purpose", text(&consent.purpose, 200));
            Some(ConsentTerms::TreatmentDisclosure {
                recipient: recipient?,
                purpose: purpose?,
            })
        }
        Ok(pb::ConsentKind::PeerVisibility) => {
            let display = match pb::PeerDisplay::try_from(consent.display) {
                Ok(pb::PeerDisplay::FirstName) => Some(PeerDisplay::FirstName),
                Ok(pb::PeerDisplay::Alias) => Some(PeerDisplay::Alias),
                _ => {
                    violations.add("consent.display", "must be first name or alias");
                    None
                }
            };
            let alias = if display == Some(PeerDisplay::Alias) {
                violations.check("consent.alias", text(&consent.alias, 40))
            } else {
                violations.check("consent.alias", optional_text(&consent.alias, 40))
            };
            Some(ConsentTerms::PeerVisibility {
                display: display?,
                alias: alias?,
                share_check_ins: consent.share_check_ins,
                share_milestones: consent.share_milestones,
            })
        }
        _ => {
            violations.add(
                "consent.kind",
                "must be treatment disclosure or peer visibility",
            );
            None
        }
    }
}

pub fn forget_reason(value: i32) -> Result<ForgetReason, String> {
    match pb::ForgetReason::try_from(value) {
        Ok(pb::ForgetReason::ParticipantRequest) => Ok(ForgetReason::ParticipantRequest),
        Ok(pb::ForgetReason::RetentionEnded) => Ok(ForgetReason::RetentionEnded),
        Ok(pb::ForgetReason::LegalOrder) => Ok(ForgetReason::LegalOrder),
        Ok(pb::ForgetReason::Other) => Ok(ForgetReason::Other),
        _ => Err("must be participant request, retention ended, legal order or other".into()),
    }
}

pub fn discharge_reason(value: i32) -> Result<DischargeReason, String> {
    match pb::EndReason::try_from(value) {
        Ok(pb::EndReason::Completed) => Ok(DischargeReason::Completed),
        Ok(pb::EndReason::Clinical) => Ok(DischargeReason::Clinical),
        Ok(pb::EndReason::Administrative) => Ok(DischargeReason::Administrative),
        Ok(pb::EndReason::NoShow) => Ok(DischargeReason::NoShow),
        Ok(pb::EndReason::Withdrew) => Ok(DischargeReason::Withdrew),
        _ => Err("must be completed, clinical, administrative, no-show or withdrew".into()),
    }
}

pub use circle_grpc::named;

/// An optional id-like filter (`modality`, `level_of_care`): empty means any.
pub fn optional_id(
    violations: &mut Violations,
    field: &str,
    value: &str,
) -> Option<circle_names::Id> {
    if value.is_empty() {
        return None;
    }
    violations.check(
        field,
        circle_names::Id::parse(value).map_err(|error| error.to_string()),
    )
}
