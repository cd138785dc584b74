//! The authorization matrix: every RPC of every service × every kind of caller × the
//! places its resource can be (the caller's clinic or another, the caller's own record
//! or someone else's, a group they are in or lead or not), over real gRPC against one
//! started system per service, asserting the exact refusal (code `PERMISSION_DENIED`
//! and its reason) or that permission passed.
//!
//! The expected outcomes are written out below each service's `TABLE` as data, one row
//! per RPC and placement and one column per caller — the README's access tables made
//! concrete — never computed from `access::rule`, so a change to a table that the
//! matrix does not also say is a failure.
//!
//! Each service's matrix also calls every RPC with names of another network (`other`),
//! as every caller of `acme`, once before `other` has any of it and once after an
//! admin of `other` created it: both answers must be `PERMISSION_DENIED` /
//! `WRONG_NETWORK` and identical (code, reason and message), so trying names across
//! networks tells nothing about what exists there.

mod accountability;
mod enrollment;
mod sessions;

use std::future::Future;

use tonic::Code;

/// The network the callers are in.
pub const ACME: &str = "acme";
/// Another network, whose names every caller of `acme` tries.
pub const OTHER: &str = "other";

/// The calling service's identity, configured to call every RPC of every service: what
/// it may do is then what the access tables give the `service` role.
pub const SERVICE: &str = "integration-1";

/// A kind of caller: one column of every table.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The column's heading in the tables.
    pub column: &'static str,
    pub role: &'static str,
    pub subject: &'static str,
    pub clinics: &'static [&'static str],
}

/// The columns of every table, in order. `north` is the callers' clinic and `south`
/// another; `staff-1` is the facilitator listed on the north group(s) every matrix
/// makes (`staff-3` on the south ones), `staff-2` a facilitator of north who leads
/// none of them; `sam` is a participant of north, a member of its group, and `pat` one
/// of south.
pub const CALLERS: [Caller; 8] = [
    Caller {
        column: "admin",
        role: "network-admin",
        subject: "admin-1",
        clinics: &[],
    },
    Caller {
        column: "cadmin",
        role: "clinic-admin",
        subject: "cadmin-north",
        clinics: &["north"],
    },
    Caller {
        column: "fac",
        role: "facilitator",
        subject: "staff-1",
        clinics: &["north"],
    },
    Caller {
        column: "facx",
        role: "facilitator",
        subject: "staff-2",
        clinics: &["north"],
    },
    Caller {
        column: "intake",
        role: "intake-coordinator",
        subject: "intake-1",
        clinics: &["north"],
    },
    Caller {
        column: "sam",
        role: "participant",
        subject: "sam",
        clinics: &[],
    },
    Caller {
        column: "pat",
        role: "participant",
        subject: "pat",
        clinics: &[],
    },
    Caller {
        column: "svc",
        role: "service",
        subject: SERVICE,
        clinics: &[],
    },
];

/// A row of a table: the RPC, where its resource is (a placement each service's
/// `request` knows), and one expected outcome per caller, in [`CALLERS`] order:
///
/// - `ok`: answered with success;
/// - `pass`: permission passed: any answer but `PERMISSION_DENIED` and
///   `UNAUTHENTICATED` (the domain may still refuse: a seat offer that is not there),
///   and never `INTERNAL`, `UNKNOWN` or `UNIMPLEMENTED`;
/// - otherwise the refusal, `PERMISSION_DENIED` with the reason: `ROLE`
///   (`ROLE_NOT_ALLOWED`), `CLINIC` (`CLINIC_OUT_OF_SCOPE`), `RECORD`
///   (`NOT_YOUR_RECORD`), `MEMBER` (`NOT_A_MEMBER`), `FAC` (`NOT_A_FACILITATOR`),
///   `QUEUE` (`NOT_YOUR_QUEUE`), `LIST` (`NOT_YOUR_LIST`).
pub type Row = (&'static str, &'static str, &'static str);

/// A token of `network` for `caller`.
pub fn token(network: &str, caller: &Caller) -> String {
    circle_testkit::token(network, caller.subject, &[caller.role], caller.clinics)
}

/// `message` with a bearer `token`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    circle_testkit::authorize(&mut request, token);
    request.set_timeout(std::time::Duration::from_secs(30));
    request
}

/// What a call answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok,
    Refused {
        code: Code,
        reason: String,
        message: String,
    },
}

impl Answer {
    pub fn of<T>(result: Result<T, tonic::Status>) -> Self {
        use tonic_types::StatusExt;
        match result {
            Ok(_) => Answer::Ok,
            Err(status) => Answer::Refused {
                code: status.code(),
                reason: status
                    .get_details_error_info()
                    .map(|info| info.reason)
                    .unwrap_or_default(),
                message: status.message().to_owned(),
            },
        }
    }

    fn short(&self) -> String {
        match self {
            Answer::Ok => "OK".to_owned(),
            Answer::Refused {
                code,
                reason,
                message,
            } => format!("{code:?}/{reason} ({message})"),
        }
    }
}

/// A cell's expectation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Ok,
    Pass,
    Denied(&'static str),
}

fn expected(cell: &str) -> Option<Expected> {
    Some(match cell {
        "ok" => Expected::Ok,
        "pass" => Expected::Pass,
        "ROLE" => Expected::Denied("ROLE_NOT_ALLOWED"),
        "CLINIC" => Expected::Denied("CLINIC_OUT_OF_SCOPE"),
        "RECORD" => Expected::Denied("NOT_YOUR_RECORD"),
        "MEMBER" => Expected::Denied("NOT_A_MEMBER"),
        "FAC" => Expected::Denied("NOT_A_FACILITATOR"),
        "QUEUE" => Expected::Denied("NOT_YOUR_QUEUE"),
        "LIST" => Expected::Denied("NOT_YOUR_LIST"),
        _ => return None,
    })
}

impl Expected {
    fn holds_for(self, answer: &Answer) -> bool {
        match (self, answer) {
            (Expected::Ok, Answer::Ok) | (Expected::Pass, Answer::Ok) => true,
            // Let in, and answered by the operation itself: not a refusal of access,
            // and not a fault or a missing handler either.
            (Expected::Pass, Answer::Refused { code, .. }) => !matches!(
                code,
                Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::Internal
                    | Code::Unknown
                    | Code::Unimplemented
            ),
            (Expected::Denied(expected), Answer::Refused { code, reason, .. }) => {
                *code == Code::PermissionDenied && reason == expected
            }
            _ => false,
        }
    }
}

/// The table is whole: every RPC of the service has a row, every row is an RPC of it,
/// and every row has one known outcome per caller.
pub fn check_table(table: &[Row], rpcs: &[String]) -> anyhow::Result<()> {
    for rpc in rpcs {
        anyhow::ensure!(
            table.iter().any(|(row, _, _)| row == rpc),
            "{rpc} has no row in the matrix"
        );
    }
    for (rpc, place, cells) in table {
        anyhow::ensure!(
            rpcs.iter().any(|known| known == rpc),
            "{rpc} is not an RPC of the service"
        );
        let cells: Vec<&str> = cells.split_whitespace().collect();
        anyhow::ensure!(
            cells.len() == CALLERS.len(),
            "{rpc} {place}: {} cells for {} callers",
            cells.len(),
            CALLERS.len()
        );
        for cell in cells {
            anyhow::ensure!(expected(cell).is_some(), "{rpc} {place}: unknown {cell:?}");
        }
    }
    Ok(())
}

/// Runs every row for every caller of `acme` against names of `acme`, and fails with
/// every cell that did not hold (not only the first). Returns how many cells ran.
pub async fn run_in_network<F, Fut>(table: &[Row], call: F) -> anyhow::Result<usize>
where
    F: Fn(&'static str, &'static str, &'static str, String) -> Fut,
    Fut: Future<Output = anyhow::Result<Answer>>,
{
    let mut failures = Vec::new();
    let mut cells_run = 0;
    for (rpc, place, cells) in table {
        for (caller, cell) in CALLERS.iter().zip(cells.split_whitespace()) {
            let want = expected(cell).ok_or_else(|| anyhow::anyhow!("unknown {cell:?}"))?;
            let answer = call(rpc, place, ACME, token(ACME, caller)).await?;
            cells_run += 1;
            if !want.holds_for(&answer) {
                failures.push(format!(
                    "{rpc} {place} as {}: expected {cell}, got {}",
                    caller.column,
                    answer.short()
                ));
            }
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {cells_run} cells did not hold:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(cells_run)
}

/// Every row's RPC and placement, with names of [`OTHER`], as every caller of `acme`:
/// the answers, in order. Each must be `PERMISSION_DENIED` / `WRONG_NETWORK`.
pub async fn across_networks<F, Fut>(table: &[Row], call: F) -> anyhow::Result<Vec<Answer>>
where
    F: Fn(&'static str, &'static str, &'static str, String) -> Fut,
    Fut: Future<Output = anyhow::Result<Answer>>,
{
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    for (rpc, place, _) in table {
        for caller in &CALLERS {
            let answer = call(rpc, place, OTHER, token(ACME, caller)).await?;
            if !Expected::Denied("WRONG_NETWORK").holds_for(&answer) {
                failures.push(format!(
                    "{rpc} {place} as {} of {ACME} with names of {OTHER}: got {}",
                    caller.column,
                    answer.short()
                ));
            }
            answers.push(answer);
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "not refused as another network's:\n{}",
        failures.join("\n")
    );
    Ok(answers)
}

/// The answers across networks before and after [`OTHER`]'s resources existed must be
/// the same, call by call.
pub fn same_answers(table: &[Row], before: &[Answer], after: &[Answer]) -> anyhow::Result<()> {
    anyhow::ensure!(
        before.len() == after.len(),
        "as many answers before as after"
    );
    let calls = table
        .iter()
        .flat_map(|(rpc, place, _)| CALLERS.iter().map(move |caller| (rpc, place, caller)));
    let differing: Vec<String> = calls
        .zip(before.iter().zip(after))
        .filter(|(_, (before, after))| before != after)
        .map(|((rpc, place, caller), (before, after))| {
            format!(
                "{rpc} {place} as {}: {} before, {} after",
                caller.column,
                before.short(),
                after.short()
            )
        })
        .collect();
    anyhow::ensure!(
        differing.is_empty(),
        "the answer tells whether another network's resource exists:\n{}",
        differing.join("\n")
    );
    Ok(())
}

/// Every RPC of a service, as `package.Service/Method`, for the calling service's
/// allow-list.
pub fn methods(package: &str, service: &str) -> anyhow::Result<Vec<String>> {
    Ok(circle_proto::rpc_names(package, service)?
        .into_iter()
        .map(|rpc| format!("{package}.{service}/{rpc}"))
        .collect())
}

/// Starts the whole system with [`SERVICE`] allowed every RPC of every service.
pub async fn system(now: &str) -> anyhow::Result<crate::support::System> {
    let mut allowed = methods("circle.enrollment.v1", "EnrollmentService")?;
    allowed.extend(methods("circle.sessions.v1", "SessionsService")?);
    allowed.extend(methods(
        "circle.accountability.v1",
        "AccountabilityService",
    )?);
    crate::support::System::start_with(now, move |config| {
        config.auth.services.insert(SERVICE.to_owned(), allowed);
    })
    .await
}

/// Waits (at most 20 s) until `condition` holds.
pub async fn until<Fut>(what: &str, mut condition: impl FnMut() -> Fut) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition().await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Ok(())
}
