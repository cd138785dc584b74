//! The gRPC edge shared by every Circle service: errors as `google.rpc.Status` with
//! one `ErrorInfo` reason (and `BadRequest` field violations for bad input), resource
//! name parsing, request ids, etags, consistency tokens and page tokens.

pub mod auth;
pub mod host;
pub mod limits;
pub mod tls;
pub mod trace;

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetail, ErrorInfo, FieldViolation, StatusExt};

pub use circle_auth::{Caller, CallerError, Role};

/// The caller of a request, as [`auth::AuthLayer`] verified it from the call's bearer
/// token. A request that did not pass that layer has no caller.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, ApiError> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                Code::Unauthenticated,
                "TOKEN_MISSING",
                "the call was not authenticated",
            )
        })
}

/// An error as a client should see it: a code, a stable reason, a message, and for
/// bad input the offending fields. Built deliberately; never from `e.to_string()` of
/// an internal error.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    pub violations: Vec<(String, String)>,
    pub metadata: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: Vec::new(),
        }
    }

    pub fn with_metadata(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// The status a client gets. An `INTERNAL` answer is a bug, so it is also logged at
    /// ERROR here, the one place every service turns an error into a status.
    pub fn into_status(self, domain: &str) -> Status {
        if self.code == Code::Internal {
            tracing::error!(reason = self.reason, message = %self.message, "internal error");
        }
        let metadata: HashMap<String, String> = self
            .metadata
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        let mut details = vec![ErrorDetail::ErrorInfo(ErrorInfo::new(
            self.reason,
            domain,
            metadata,
        ))];
        if !self.violations.is_empty() {
            details.push(ErrorDetail::BadRequest(tonic_types::BadRequest::new(
                self.violations
                    .into_iter()
                    .map(|(field, description)| FieldViolation::new(field, description))
                    .collect::<Vec<_>>(),
            )));
        }
        Status::with_error_details_vec(self.code, self.message, details)
    }

    pub fn unavailable(what: &str) -> Self {
        Self::new(
            Code::Unavailable,
            "BACKEND_UNAVAILABLE",
            format!("{what} is unavailable; retry with the same request_id"),
        )
    }

    /// A retried request id whose original commit was for a different request.
    pub fn request_id_reused() -> Self {
        Self::new(
            Code::FailedPrecondition,
            "REQUEST_ID_REUSED",
            "this request_id was already used for a different request",
        )
    }

    pub fn internal() -> Self {
        Self::new(Code::Internal, "INTERNAL", "internal error")
    }
}

impl From<CallerError> for ApiError {
    fn from(error: CallerError) -> Self {
        match error {
            CallerError::WrongNetwork { .. } => {
                Self::new(Code::PermissionDenied, "WRONG_NETWORK", error.to_string())
            }
        }
    }
}

/// Roles by what they may do.
pub mod roles {
    use super::Role;

    pub const ADMINS: &[Role] = &[Role::NetworkAdmin, Role::Service];
    pub const CLINIC_ADMINS: &[Role] = &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Service];
    pub const STAFF: &[Role] = &[
        Role::NetworkAdmin,
        Role::ClinicAdmin,
        Role::Facilitator,
        Role::IntakeCoordinator,
        Role::Service,
    ];
    pub const CLINICIANS: &[Role] = &[
        Role::NetworkAdmin,
        Role::ClinicAdmin,
        Role::Facilitator,
        Role::Service,
    ];
}

/// How far a permission reaches for one operation of a service's access table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Anywhere in the caller's network, whatever clinics a clinic-scoped role lists
    /// (e.g. the network-wide open-seat search).
    Network,
    /// Clinic-scoped roles only in the clinics they hold; network-wide roles anywhere.
    Clinics,
    /// A participant on their own record; staff as in [`Scope::Clinics`].
    OwnRecordOrClinics,
    /// A participant who is an active member of the group the operation touches;
    /// staff as in [`Scope::Clinics`].
    OwnGroupsOrClinics,
    /// Only the facilitators listed on the group the operation touches, in their
    /// clinics (`Target::caller_facilitates`): a group's clinical record. Never a
    /// participant; an admin role lifts nothing here.
    FacilitatedGroups,
    /// A participant on their own record; staff as the participant's care team: a
    /// facilitator (let in by no broader role of the rule) only where a group the
    /// participant is active in lists them (`Target::caller_facilitates`), other
    /// clinic-scoped roles in their clinics, network-wide roles anywhere.
    OwnRecordOrCareTeam,
    /// A participant who is an active member of the group; staff as the group's care
    /// team: a facilitator (let in by no broader role of the rule) only in the groups
    /// they facilitate, other clinic-scoped roles in their clinics, network-wide roles
    /// anywhere.
    OwnGroupsOrCareTeam,
}

/// One row of a service's access table: which roles may run an operation, and on
/// which scope. Each service keeps its whole table in one place
/// (`app::access::rule(Operation)`), so it can be read, documented and tested as a
/// matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub roles: &'static [Role],
    pub scope: Scope,
}

/// What an operation touches, for the scope check: the clinics in its resource
/// names (or of the record, once loaded), the participant whose record it is, and how
/// the caller relates to the group it touches (resolved by the application where the
/// scope needs it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub clinics: &'a [&'a str],
    pub participant: Option<&'a str>,
    /// The caller (a participant) is an active member of the group.
    pub caller_is_member: bool,
    /// The caller is listed as a facilitator of the group (for a participant's
    /// record: of a group the participant is active in).
    pub caller_facilitates: bool,
}

impl Rule {
    pub const fn new(roles: &'static [Role], scope: Scope) -> Self {
        Self { roles, scope }
    }

    /// Whether `role` appears in this rule at all (a participant's own-record or
    /// own-group access also needs the role listed).
    pub fn allows_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether `role` is the only one of the caller's roles this rule lists, so the
    /// caller may do here only what that role may (a facilitator who is not also an
    /// admin, say).
    pub fn admits_only_as(&self, caller: &Caller, role: Role) -> bool {
        caller.has(role)
            && self.allows_role(role)
            && caller
                .roles
                .iter()
                .filter(|held| self.allows_role(**held))
                .all(|held| *held == role)
    }

    /// Whether any of the caller's roles appears in this rule.
    pub fn allows(&self, caller: &Caller) -> bool {
        caller.roles.iter().any(|role| self.allows_role(*role))
    }

    /// Checks only the caller's roles (for a request whose names did not parse, so its
    /// scope is unknown).
    pub fn check_role(&self, caller: &Caller) -> Result<(), ApiError> {
        if self.allows(caller) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::PermissionDenied,
                "ROLE_NOT_ALLOWED",
                format!("the {} role may not do this", caller.roles_text()),
            ))
        }
    }

    /// [`Rule::check`] for a request whose names may not have parsed: with `None` only
    /// the role is checked (the bad name is reported with the request's other fields).
    pub fn check_parsed(
        &self,
        caller: &Caller,
        target: Option<&Target<'_>>,
    ) -> Result<(), ApiError> {
        match target {
            Some(target) => self.check(caller, target),
            None => self.check_role(caller),
        }
    }

    /// The check an application makes before anything is looked up: the tenant first
    /// (`network` is the network of the names the operation touches; the edge has
    /// refused another network's names already, this holds every other caller of the
    /// application to the same wall), then [`Rule::check`].
    pub fn permit(
        &self,
        caller: &Caller,
        network: &str,
        target: &Target<'_>,
    ) -> Result<(), ApiError> {
        caller.require_network(network, &format!("networks/{network}"))?;
        self.check(caller, target)
    }

    /// [`Rule::permit`] for an operation whose clinics its names do not show
    /// ([`Rule::check_unplaced`]): the tenant, then the role and a participant's own
    /// record or group.
    pub fn permit_unplaced(
        &self,
        caller: &Caller,
        network: &str,
        target: &Target<'_>,
    ) -> Result<(), ApiError> {
        caller.require_network(network, &format!("networks/{network}"))?;
        self.check_unplaced(caller, target)
    }

    /// Checks the caller against this rule, before anything is looked up. A clinic-
    /// scoped caller held to their clinics must hold every clinic of `target`, and a
    /// target in no clinic is in none of theirs: refused, never passed for want of a
    /// clinic to check.
    pub fn check(&self, caller: &Caller, target: &Target<'_>) -> Result<(), ApiError> {
        self.check_scope(caller, target, true)
    }

    /// The part of [`Rule::check`] that needs no place: the role, and a participant's
    /// own record (or group). For an operation whose clinics the request's names do not
    /// show (a participant's record, whose home clinic or groups are known once it is
    /// loaded; a list the query filters to the caller's clinics); the clinic wall (and
    /// a facilitator's groups) must then be checked on what is loaded — with
    /// [`Rule::check`] — or held by the query's filter.
    pub fn check_unplaced(&self, caller: &Caller, target: &Target<'_>) -> Result<(), ApiError> {
        self.check_scope(caller, target, false)
    }

    fn check_scope(
        &self,
        caller: &Caller,
        target: &Target<'_>,
        placed: bool,
    ) -> Result<(), ApiError> {
        self.check_role(caller)?;
        if caller.is_participant() {
            return match self.scope {
                Scope::Network => Ok(()),
                Scope::OwnRecordOrClinics | Scope::OwnRecordOrCareTeam
                    if target.participant == Some(&caller.actor_id) =>
                {
                    Ok(())
                }
                Scope::OwnGroupsOrClinics | Scope::OwnGroupsOrCareTeam
                    if target.caller_is_member =>
                {
                    Ok(())
                }
                Scope::OwnGroupsOrClinics | Scope::OwnGroupsOrCareTeam => Err(ApiError::new(
                    Code::PermissionDenied,
                    "NOT_A_MEMBER",
                    "participants see only the groups they are members of",
                )),
                Scope::FacilitatedGroups => Err(not_a_facilitator()),
                Scope::Clinics | Scope::OwnRecordOrClinics | Scope::OwnRecordOrCareTeam => {
                    Err(ApiError::new(
                        Code::PermissionDenied,
                        "NOT_YOUR_RECORD",
                        "participants may act only for themselves",
                    ))
                }
            };
        }
        if self.scope == Scope::Network || !placed {
            return Ok(());
        }
        // A network-wide role the rule lists reaches every clinic; otherwise the roles
        // that let the caller in end at the caller's clinics.
        let network_wide = caller
            .roles
            .iter()
            .any(|role| role.is_network_wide() && self.allows_role(*role));
        if !network_wide
            && (target.clinics.is_empty()
                || target
                    .clinics
                    .iter()
                    .any(|clinic| !caller.clinics.iter().any(|scoped| scoped == clinic)))
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "CLINIC_OUT_OF_SCOPE",
                "the caller is not scoped to this clinic",
            ));
        }
        // Facilitators are held to the groups they facilitate: always on a group's
        // clinical record, and on the care team's rows when no broader role of the
        // caller's lets them in.
        let held_to_groups = match self.scope {
            Scope::FacilitatedGroups => true,
            Scope::OwnRecordOrCareTeam | Scope::OwnGroupsOrCareTeam => {
                self.admits_only_as(caller, Role::Facilitator)
            }
            _ => false,
        };
        if held_to_groups && !target.caller_facilitates {
            return Err(if self.scope == Scope::OwnRecordOrCareTeam {
                ApiError::new(
                    Code::PermissionDenied,
                    "NOT_YOUR_RECORD",
                    "only the participant or their care team may do this",
                )
            } else {
                not_a_facilitator()
            });
        }
        Ok(())
    }
}

fn not_a_facilitator() -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        "NOT_A_FACILITATOR",
        "only the group's facilitators may do this",
    )
}

/// Parses `field` as a resource name of type `N` (`circle-names`), recording a
/// violation if it is not one, and refuses at once (`PERMISSION_DENIED`,
/// `WRONG_NETWORK`) a name of another network than the caller's: the tenant comes from
/// the caller, never from the request.
pub fn named<N: circle_names::Tenant>(
    caller: &Caller,
    violations: &mut Violations,
    field: &str,
    value: &str,
) -> Result<Option<N>, ApiError> {
    let name = violations.check(field, value.parse::<N>().map_err(|error| error.to_string()));
    if let Some(name) = &name {
        caller.require_network(name.network().as_str(), value)?;
    }
    Ok(name)
}

/// Collects field violations so a request reports all its bad fields at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Runs a check, recording its error against `field`; returns the value if valid.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = self.0.iter().map(|(field, _)| field.as_str()).collect();
        let mut error = ApiError::new(
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
            format!("invalid request: {}", fields.join(", ")),
        );
        error.violations = self.0;
        Err(error)
    }

    /// The (size, offset) of a page request, recording bad page fields.
    pub fn page(&mut self, page_size: i32, page_token: &str) -> (i64, i64) {
        page(page_size, page_token).unwrap_or_else(|(field, description)| {
            self.add(field, description);
            (0, 0)
        })
    }

    /// [`Violations::into_result`], then the value a check produced: with no
    /// violations recorded every check passed, so a missing value is a bug (INTERNAL).
    pub fn finish<T>(self, checked: Option<T>) -> Result<T, ApiError> {
        self.into_result()?;
        checked.ok_or_else(ApiError::internal)
    }
}

/// An id segment of a resource name: 1–63 of `[a-z0-9-]`, not starting with '-'.
pub fn check_id(value: &str) -> Result<(), String> {
    circle_names::Id::parse(value)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// A request id (AIP-155): empty means "not retried" and gets a fresh one.
pub fn request_id(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    if value.len() > 100
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("must be at most 100 letters, digits, '-' or '_' (a UUID is best)".into());
    }
    Ok(value.to_owned())
}

/// A request id read into `violations` (a fresh one when absent).
pub fn request_id_field(violations: &mut Violations, value: &str) -> String {
    violations
        .check("request_id", request_id(value))
        .unwrap_or_default()
}

/// A single line of text, trimmed: at most `max_chars`, no control characters, and
/// not empty when `required`.
pub fn line(value: &str, max_chars: usize, required: bool) -> Result<String, String> {
    checked_text(value, max_chars, required, |c| c.is_control())
}

/// Free text, trimmed, that may run over several lines (newlines and tabs allowed).
pub fn paragraphs(value: &str, max_chars: usize, required: bool) -> Result<String, String> {
    checked_text(value, max_chars, required, |c| {
        c.is_control() && c != '\n' && c != '\t'
    })
}

fn checked_text(
    value: &str,
    max_chars: usize,
    required: bool,
    forbidden: impl Fn(char) -> bool,
) -> Result<String, String> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if trimmed.chars().any(forbidden) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

/// An etag is the aggregate's version, in decimal; empty means no precondition.
pub fn etag(value: &str) -> Result<Option<u64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .trim_matches('"')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| "must be an etag returned by this service".into())
}

/// A consistency token is the stream sequence a command wrote; empty means "any".
pub fn consistency_token(value: &str) -> Result<Option<u64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| "must be a consistency_token returned by this service".into())
}

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

/// Page size and offset from `page_size` and an opaque `page_token`.
pub fn page(page_size: i32, page_token: &str) -> Result<(i64, i64), (String, String)> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => {
            return Err(("page_size".into(), "must not be negative".into()));
        }
        size => i64::from(size).min(MAX_PAGE_SIZE),
    };
    if page_token.is_empty() {
        return Ok((size, 0));
    }
    let offset = page_token
        .strip_prefix("p")
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|offset| *offset >= 0)
        .ok_or_else(|| {
            (
                "page_token".to_owned(),
                "must be a next_page_token returned by this service".to_owned(),
            )
        })?;
    Ok((size, offset))
}

/// The token for the page after one that started at `offset` and held `returned` of
/// `size` items; empty when that was the last page.
pub fn next_page_token(offset: i64, size: i64, returned: usize) -> String {
    if (returned as i64) < size {
        String::new()
    } else {
        format!("p{:x}", offset + size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, actor: &str, clinics: &[&str]) -> Caller {
        Caller::new("acme", actor, &[role], clinics)
    }

    fn reason(result: Result<(), ApiError>) -> &'static str {
        result.err().map_or("OK", |error| error.reason)
    }

    #[test]
    fn an_access_rule_checks_role_then_scope() {
        const STAFF_OR_SELF: Rule = Rule::new(
            &[Role::NetworkAdmin, Role::Facilitator, Role::Participant],
            Scope::OwnRecordOrClinics,
        );
        let north = Target {
            clinics: &["north"],
            participant: Some("p1"),
            ..Target::default()
        };
        let admin = caller(Role::NetworkAdmin, "a", &[]);
        let facilitator = caller(Role::Facilitator, "f", &["north"]);
        let elsewhere = caller(Role::Facilitator, "f", &["south"]);
        let owner = caller(Role::Participant, "p1", &[]);
        let other = caller(Role::Participant, "p2", &[]);
        let intake = caller(Role::IntakeCoordinator, "i", &["north"]);
        assert_eq!(reason(STAFF_OR_SELF.check(&admin, &north)), "OK");
        assert_eq!(reason(STAFF_OR_SELF.check(&facilitator, &north)), "OK");
        assert_eq!(
            reason(STAFF_OR_SELF.check(&elsewhere, &north)),
            "CLINIC_OUT_OF_SCOPE"
        );
        assert_eq!(reason(STAFF_OR_SELF.check(&owner, &north)), "OK");
        assert_eq!(
            reason(STAFF_OR_SELF.check(&other, &north)),
            "NOT_YOUR_RECORD"
        );
        assert_eq!(
            reason(STAFF_OR_SELF.check(&intake, &north)),
            "ROLE_NOT_ALLOWED"
        );

        const NETWORK_WIDE: Rule = Rule::new(&[Role::Facilitator], Scope::Network);
        assert_eq!(reason(NETWORK_WIDE.check(&elsewhere, &north)), "OK");

        const MEMBERS: Rule = Rule::new(
            &[Role::Facilitator, Role::Participant],
            Scope::OwnGroupsOrClinics,
        );
        assert_eq!(reason(MEMBERS.check(&other, &north)), "NOT_A_MEMBER");
        let member = Target {
            caller_is_member: true,
            ..north
        };
        assert_eq!(reason(MEMBERS.check(&other, &member)), "OK");
        assert_eq!(
            reason(MEMBERS.check(&elsewhere, &member)),
            "CLINIC_OUT_OF_SCOPE",
            "membership is a participant's way in, not staff's"
        );

        // Several staff roles: any role the rule lists lets the caller in, and only a
        // network-wide role the rule lists lifts the clinic wall.
        const FACILITATORS: Rule = Rule::new(&[Role::Facilitator], Scope::Clinics);
        let both = Caller::new(
            "acme",
            "s",
            &[Role::ClinicAdmin, Role::Facilitator],
            &["north"],
        );
        let south = Target {
            clinics: &["south"],
            ..north
        };
        assert_eq!(reason(FACILITATORS.check(&both, &north)), "OK");
        assert_eq!(
            reason(FACILITATORS.check(&both, &south)),
            "CLINIC_OUT_OF_SCOPE"
        );
        let admin_and_facilitator = Caller::new(
            "acme",
            "s",
            &[Role::NetworkAdmin, Role::Facilitator],
            &["north"],
        );
        assert_eq!(
            reason(FACILITATORS.check(&admin_and_facilitator, &south)),
            "CLINIC_OUT_OF_SCOPE",
            "the rule does not list network admins, so that role lifts nothing"
        );
        assert_eq!(
            reason(STAFF_OR_SELF.check(&admin_and_facilitator, &south)),
            "OK"
        );
    }

    #[test]
    fn a_target_in_no_clinic_is_in_none_of_a_clinic_scoped_callers() {
        const STAFF: Rule = Rule::new(
            &[Role::NetworkAdmin, Role::ClinicAdmin, Role::Participant],
            Scope::OwnRecordOrClinics,
        );
        let nowhere = Target {
            participant: Some("p1"),
            ..Target::default()
        };
        let clinic_admin = caller(Role::ClinicAdmin, "c", &["north"]);
        assert_eq!(
            reason(STAFF.check(&clinic_admin, &nowhere)),
            "CLINIC_OUT_OF_SCOPE",
            "no clinic to check is no pass"
        );
        assert_eq!(
            reason(STAFF.check(&caller(Role::NetworkAdmin, "a", &[]), &nowhere)),
            "OK"
        );
        assert_eq!(
            reason(STAFF.check(&caller(Role::Participant, "p1", &[]), &nowhere)),
            "OK"
        );
        // Before the place is known, the role and the own record only; the clinic wall
        // is then the caller's to check on what is loaded.
        assert_eq!(reason(STAFF.check_unplaced(&clinic_admin, &nowhere)), "OK");
        assert_eq!(
            reason(STAFF.check_unplaced(&caller(Role::Participant, "p2", &[]), &nowhere)),
            "NOT_YOUR_RECORD"
        );
        assert_eq!(
            reason(STAFF.check_unplaced(&caller(Role::Facilitator, "f", &["north"]), &nowhere)),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(
            reason(STAFF.permit_unplaced(&clinic_admin, "other", &nowhere)),
            "WRONG_NETWORK"
        );
        // A network-wide row needs no clinic at all.
        const ANYWHERE: Rule = Rule::new(&[Role::ClinicAdmin], Scope::Network);
        assert_eq!(reason(ANYWHERE.check(&clinic_admin, &nowhere)), "OK");
    }

    #[test]
    fn a_groups_clinical_record_is_its_facilitators_alone() {
        const NOTES: Rule = Rule::new(&[Role::Facilitator], Scope::FacilitatedGroups);
        let theirs = Target {
            clinics: &["north"],
            caller_facilitates: true,
            ..Target::default()
        };
        let not_theirs = Target {
            caller_facilitates: false,
            ..theirs
        };
        let facilitator = caller(Role::Facilitator, "f", &["north"]);
        assert_eq!(reason(NOTES.check(&facilitator, &theirs)), "OK");
        assert_eq!(
            reason(NOTES.check(&facilitator, &not_theirs)),
            "NOT_A_FACILITATOR"
        );
        assert_eq!(
            reason(NOTES.check(&caller(Role::Facilitator, "f", &["south"]), &theirs)),
            "CLINIC_OUT_OF_SCOPE",
            "the clinic wall first"
        );
        for role in [Role::NetworkAdmin, Role::ClinicAdmin, Role::Service] {
            assert_eq!(
                reason(NOTES.check(&caller(role, "f", &["north"]), &theirs)),
                "ROLE_NOT_ALLOWED",
                "{role:?}"
            );
        }
        let admin_who_facilitates = Caller::new(
            "acme",
            "f",
            &[Role::ClinicAdmin, Role::Facilitator],
            &["north"],
        );
        assert_eq!(
            reason(NOTES.check(&admin_who_facilitates, &not_theirs)),
            "NOT_A_FACILITATOR",
            "an admin role lifts nothing here"
        );
        assert_eq!(reason(NOTES.check(&admin_who_facilitates, &theirs)), "OK");
    }

    #[test]
    fn a_care_team_holds_facilitators_to_their_groups_and_admins_to_their_clinics() {
        const RECORD: Rule = Rule::new(
            &[
                Role::NetworkAdmin,
                Role::ClinicAdmin,
                Role::Facilitator,
                Role::Participant,
            ],
            Scope::OwnRecordOrCareTeam,
        );
        const GROUP: Rule = Rule::new(RECORD.roles, Scope::OwnGroupsOrCareTeam);
        let in_their_group = Target {
            clinics: &["north"],
            participant: Some("p1"),
            caller_is_member: false,
            caller_facilitates: true,
        };
        let in_another_group = Target {
            caller_facilitates: false,
            ..in_their_group
        };
        let facilitator = caller(Role::Facilitator, "f", &["north"]);
        let clinic_admin = caller(Role::ClinicAdmin, "c", &["north"]);
        assert_eq!(reason(RECORD.check(&facilitator, &in_their_group)), "OK");
        assert_eq!(
            reason(RECORD.check(&facilitator, &in_another_group)),
            "NOT_YOUR_RECORD"
        );
        assert_eq!(
            reason(GROUP.check(&facilitator, &in_another_group)),
            "NOT_A_FACILITATOR"
        );
        assert_eq!(reason(RECORD.check(&clinic_admin, &in_another_group)), "OK");
        assert_eq!(reason(GROUP.check(&clinic_admin, &in_another_group)), "OK");
        let both = Caller::new(
            "acme",
            "c",
            &[Role::ClinicAdmin, Role::Facilitator],
            &["north"],
        );
        assert_eq!(
            reason(GROUP.check(&both, &in_another_group)),
            "OK",
            "a clinic admin who also facilitates is held to the clinic only"
        );
        assert_eq!(
            reason(RECORD.check(&caller(Role::Participant, "p1", &[]), &in_another_group)),
            "OK"
        );
        assert_eq!(
            reason(GROUP.check(&caller(Role::Participant, "p1", &[]), &in_another_group)),
            "NOT_A_MEMBER"
        );
        assert_eq!(
            reason(RECORD.check_unplaced(&facilitator, &in_another_group)),
            "OK",
            "the groups are checked once placed"
        );
    }

    #[test]
    fn a_name_is_parsed_and_held_to_the_callers_network() {
        let admin = caller(Role::NetworkAdmin, "a", &[]);
        let mut violations = Violations::default();
        let name = named::<circle_names::ClinicName>(
            &admin,
            &mut violations,
            "name",
            "networks/acme/clinics/north",
        );
        assert_eq!(
            name.ok().flatten().map(|name| name.clinic.into_string()),
            Some("north".to_owned())
        );
        let other = named::<circle_names::ClinicName>(
            &admin,
            &mut violations,
            "name",
            "networks/other/clinics/north",
        );
        assert_eq!(other.err().map(|error| error.reason), Some("WRONG_NETWORK"));
        assert!(violations.into_result().is_ok());
        let mut violations = Violations::default();
        let bad = named::<circle_names::ClinicName>(&admin, &mut violations, "name", "clinics/x");
        assert!(matches!(bad, Ok(None)));
        let error = violations.into_result().err().map(|error| error.violations);
        assert_eq!(
            error.map(|violations| violations[0].0.clone()),
            Some("name".to_owned())
        );
    }

    #[test]
    fn text_is_trimmed_bounded_and_single_line_where_asked() {
        assert_eq!(line("  Sam ", 10, true), Ok("Sam".to_owned()));
        assert!(line("   ", 10, true).is_err());
        assert_eq!(line("", 10, false), Ok(String::new()));
        assert!(line("two\nlines", 20, true).is_err());
        assert!(paragraphs("two\nlines", 20, true).is_ok());
        assert!(paragraphs("bell\u{7}", 20, true).is_err());
        assert!(line(&"x".repeat(11), 10, true).is_err());
    }

    #[test]
    fn client_request_ids_cannot_take_the_form_process_managers_use() {
        assert!(request_id("5b2f0c1e-7a4d-4c1b-9f0e-1d2c3b4a5f60").is_ok());
        assert!(request_id("pm:expire-offer-1").is_err());
        assert!(request_id("").is_ok_and(|generated| !generated.is_empty()));
    }

    #[test]
    fn page_tokens_round_trip() {
        let (size, offset) = page(0, "").expect("first page");
        assert_eq!((size, offset), (DEFAULT_PAGE_SIZE, 0));
        let token = next_page_token(offset, 10, 10);
        assert_eq!(page(10, &token).expect("next"), (10, 10));
        assert_eq!(next_page_token(10, 10, 3), "");
        assert!(page(10, "garbage").is_err());
        assert!(page(-1, "").is_err());
    }

    #[test]
    fn status_carries_error_info_and_field_violations() {
        let mut violations = Violations::default();
        violations.add("group.capacity", "must be between 1 and 50");
        let status = violations
            .into_result()
            .expect_err("invalid")
            .into_status("circle.enrollment");
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, "circle.enrollment");
        let bad_request = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad_request.field_violations[0].field, "group.capacity");
    }
}
