//! `circle setup`: everything the services would otherwise make as the owner when they
//! start, made once before them — the one-shot setup job of a deployment (the Helm
//! chart's, the compose file's). Idempotent, and safe to run on every deploy and while
//! the services run: each step makes only what is missing, the way the services'
//! own start does (the same functions), under the same locks.
//!
//! 1. The database: the one `database.owner_url` names, created if missing (connecting
//!    as the owner to the server's `postgres` database), and the runtime role
//!    `database.url` logs in as, if missing (`LOGIN NOSUPERUSER NOBYPASSRLS`, with the
//!    URL's password; `circle_projection::walls::provision_runtime_role`).
//! 2. The streams: each service's event log and audit stream, created with the
//!    configured replicas and duplicate window, or checked — an existing stream that
//!    could lose events is refused, and one whose replicas or duplicate window differ
//!    is refused or warned about as `nats.stream_mismatch` says (`EventStore::open_with`,
//!    `AuditLog::open_with`); an audit stream's retention is set to the configured one.
//! 3. The key store's schema (`circle_vault`, `KeyStore::prepare`; no master keys
//!    needed) and every projection's schema, tables and walls
//!    (`circle_projection::prepare`, the catalog's read models and process managers),
//!    as the owner, so the services' runtime role finds them ready.
//!
//! Nothing here prints a URL (they may hold passwords): the database and role are
//! named, NATS by its host.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use circle_config::Config;
use circle_eventstore::{Difference, EventStore, Opened, StoredCommit};
use circle_projection::{ApplyError, Database, Projection};
use serde::Serialize;
use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;

use crate::ops::catalog::{CATALOG, Entry, Id, Manager};

/// The services whose streams `circle setup` provisions.
pub const SERVICES: [&str; 3] = ["enrollment", "sessions", "accountability"];

/// What `circle setup` did (`--json` prints it as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub database: DatabaseStep,
    pub streams: Vec<StreamStep>,
    pub schemas: Vec<SchemaStep>,
}

/// The database and the runtime role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseStep {
    /// The database's name (of `database.owner_url`).
    pub database: String,
    pub database_created: bool,
    /// The runtime role's name (the user of `database.url`).
    pub runtime_role: String,
    pub runtime_role_created: bool,
}

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStep {
    pub service: String,
    /// `events` (the service's event log) or `audit` (its audit stream).
    pub kind: &'static str,
    /// Its name, namespaced as configured.
    pub stream: String,
    pub created: bool,
    /// How an existing stream differs from the configuration, each as "SETTING is X on
    /// the stream but Y in the configuration (KEY)": used as it is because
    /// `nats.stream_mismatch` is `warn` (with `refuse`, setup fails instead).
    pub differences: Vec<String>,
    /// For an audit stream whose retention was set to the configured one: the
    /// retention it had, in days (0 for none).
    pub retention_was_days: Option<u64>,
}

/// One schema: a projection's, or the key store's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaStep {
    /// The projection (`enrollment-read-model`, …), or `key-store`.
    pub name: String,
    pub schema: String,
    /// Whether the schema did not exist before (its tables, walls and grants are
    /// checked and completed either way).
    pub created: bool,
}

impl Report {
    /// Whether this run made anything (a second run makes nothing).
    pub fn changed(&self) -> bool {
        self.database.database_created
            || self.database.runtime_role_created
            || self
                .streams
                .iter()
                .any(|stream| stream.created || stream.retention_was_days.is_some())
            || self.schemas.iter().any(|schema| schema.created)
    }
}

/// Runs the setup: the database and runtime role, the six streams, the key store's and
/// every projection's schema.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let database = prepare_database(config).await?;
    // The operator tool's connections (NATS as `circle`, both database roles, the
    // runtime role checked as a service's start checks it), now that the database is.
    let ops = crate::ops::Ops::connect(config).await?;
    let streams = provision_streams(config, &ops.nats).await?;
    let schemas = prepare_schemas(&ops.database, ops.config.projection.partitions).await?;
    ops.nats.flush().await.ok();
    ops.database.pool.close().await;
    ops.database.owner.close().await;
    Ok(Report {
        database,
        streams,
        schemas,
    })
}

/// The database `database.owner_url` names, created if missing, and the runtime role
/// of `database.url`, created if missing. Both idempotent, also when run concurrently.
pub async fn prepare_database(config: &Config) -> anyhow::Result<DatabaseStep> {
    let owner_options = PgConnectOptions::from_str(&config.database.owner_url)
        .context("database.owner_url is not a PostgreSQL URL")?;
    let runtime_options = PgConnectOptions::from_str(&config.database.url)
        .context("database.url is not a PostgreSQL URL")?;
    let name = owner_options
        .get_database()
        .context("database.owner_url names no database")?
        .to_owned();
    let runtime_role = runtime_options.get_username().to_owned();
    anyhow::ensure!(
        !runtime_role.is_empty(),
        "database.url names no user (the runtime role)"
    );
    let (mut owner, database_created) = match sqlx::PgConnection::connect_with(&owner_options).await
    {
        Ok(owner) => (owner, false),
        Err(error) if is_missing_database(&error) => {
            anyhow::ensure!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "cannot create database {name:?}: its name must be lowercase letters, \
                     digits and '_'"
            );
            let mut admin =
                sqlx::PgConnection::connect_with(&owner_options.clone().database("postgres"))
                    .await
                    .context(
                        "connecting as database.owner_url's role to the server's postgres \
                             database, to create the database",
                    )?;
            let created = match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
            {
                Ok(_) => true,
                // Another setup created it meanwhile.
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {
                    false
                }
                Err(error) => {
                    return Err(
                        anyhow::Error::new(error).context(format!("creating database {name}"))
                    );
                }
            };
            let owner = sqlx::PgConnection::connect_with(&owner_options)
                .await
                .with_context(|| format!("connecting to database {name} as its owner"))?;
            (owner, created)
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "connecting to database {name} as database.owner_url"
            )));
        }
    };
    let role_existed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&runtime_role)
            .fetch_one(&mut owner)
            .await
            .context("looking up the runtime role")?;
    circle_projection::walls::provision_runtime_role(&mut owner, &config.database.url)
        .await
        .with_context(|| format!("creating the runtime role {runtime_role} of database.url"))?;
    owner.close().await.ok();
    Ok(DatabaseStep {
        database: name,
        database_created,
        runtime_role,
        runtime_role_created: !role_existed,
    })
}

fn is_missing_database(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("3D000"))
}

/// Each service's event log and audit stream, created as configured or checked
/// (`nats.stream_mismatch` deciding about differing replicas or duplicate window).
pub async fn provision_streams(
    config: &Config,
    nats: &async_nats::Client,
) -> anyhow::Result<Vec<StreamStep>> {
    let policy = config.nats.stream_mismatch;
    let mut steps = Vec::new();
    for service in SERVICES {
        let spec = circle_service::stream_spec(config, service);
        let name = spec.name.clone();
        let store = EventStore::open_with(nats.clone(), spec, policy)
            .await
            .with_context(|| format!("provisioning {service}'s event stream {name}"))?;
        steps.push(stream_step(service, "events", name, store.opened(), None));
        let spec = circle_service::audit_spec(config, service);
        let name = spec.name.clone();
        let audit = circle_audit::AuditLog::open_with(
            nats.clone(),
            spec,
            &circle_service::api_name(service),
            policy,
        )
        .await
        .with_context(|| format!("provisioning {service}'s audit stream {name}"))?;
        steps.push(stream_step(
            service,
            "audit",
            name,
            audit.opened(),
            audit.retention_was(),
        ));
    }
    Ok(steps)
}

fn stream_step(
    service: &str,
    kind: &'static str,
    stream: String,
    opened: &Opened,
    retention_was: Option<Duration>,
) -> StreamStep {
    let differences = match opened {
        Opened::Created => Vec::new(),
        Opened::Existing { differences } => differences.iter().map(Difference::to_string).collect(),
    };
    StreamStep {
        service: service.to_owned(),
        kind,
        stream,
        created: opened.created(),
        differences,
        retention_was_days: retention_was.map(|retention| retention.as_secs() / 86_400),
    }
}

/// The key store's schema and every projection's, as the owner.
pub async fn prepare_schemas(
    database: &Database,
    partitions: u32,
) -> anyhow::Result<Vec<SchemaStep>> {
    let mut steps = Vec::new();
    let created = !schema_exists(database, circle_vault::store::SCHEMA).await?;
    circle_vault::store::KeyStore::prepare(database)
        .await
        .context("preparing the key store")?;
    steps.push(SchemaStep {
        name: "key-store".to_owned(),
        schema: circle_vault::store::SCHEMA.to_owned(),
        created,
    });
    for entry in &CATALOG {
        let created = !schema_exists(database, entry.schema).await?;
        prepare_projection(entry, database, partitions)
            .await
            .with_context(|| {
                format!(
                    "preparing projection {} (schema {})",
                    entry.name, entry.schema
                )
            })?;
        steps.push(SchemaStep {
            name: entry.name.to_owned(),
            schema: entry.schema.to_owned(),
            created,
        });
    }
    Ok(steps)
}

async fn schema_exists(database: &Database, schema: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&database.owner)
        .await
        .with_context(|| format!("looking up schema {schema}"))
}

/// Prepares one catalog entry's schema as its service's start does.
/// `partitions`: the services' `projection.partitions`, for a projection's first rows.
async fn prepare_projection(
    entry: &Entry,
    database: &Database,
    partitions: u32,
) -> anyhow::Result<()> {
    use circle_projection::prepare;
    let manager = |name, formerly_in| ManagerShape {
        name,
        formerly_in: Some(formerly_in),
    };
    let prepared = match entry.id {
        Id::ProcessManager(Manager::OfferTimers) => {
            prepare(
                &circle_enrollment::process::OfferTimers,
                database,
                entry.schema,
                partitions,
            )
            .await
        }
        Id::ProcessManager(Manager::Transfers) => {
            let shape = manager(
                circle_enrollment::process::TRANSFERS_NAME,
                circle_enrollment::process::TRANSFERS_FORMERLY_IN,
            );
            prepare(&shape, database, entry.schema, partitions).await
        }
        Id::ProcessManager(Manager::FromSessions) => {
            let shape = manager(
                circle_accountability::process::FROM_SESSIONS_NAME,
                circle_accountability::process::PROCESS_MANAGERS_FORMERLY_IN,
            );
            prepare(&shape, database, entry.schema, partitions).await
        }
        Id::ProcessManager(Manager::PartnershipGuard) => {
            let shape = manager(
                circle_accountability::process::PARTNERSHIP_GUARD_NAME,
                circle_accountability::process::PROCESS_MANAGERS_FORMERLY_IN,
            );
            prepare(&shape, database, entry.schema, partitions).await
        }
        Id::ProcessManager(Manager::Integration) => {
            let shape = ManagerShape {
                name: circle_accountability::integration::NAME,
                formerly_in: None,
            };
            prepare(&shape, database, entry.schema, partitions).await
        }
        // The read models, as the catalog gives them.
        _ => {
            return crate::dispatch!(entry, |projection| {
                prepare(projection, database, entry.schema, partitions)
                    .await
                    .map_err(anyhow::Error::from)
            });
        }
    };
    Ok(prepared?)
}

/// A stateless process manager's schema as its service prepares it — its name (the
/// checkpoint row), no tables of its own, the schema its checkpoint was kept in before
/// — without the commands it issues, which setup has no use for: `prepare` reads
/// nothing else. It never applies anything.
struct ManagerShape {
    name: &'static str,
    formerly_in: Option<&'static str>,
}

impl Projection for ManagerShape {
    fn name(&self) -> &str {
        self.name
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        self.formerly_in
    }

    fn process_manager(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        _connection: &mut sqlx::PgConnection,
        _commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        Err(ApplyError::Poison(
            "circle setup prepares a process manager's schema and never applies events".into(),
        ))
    }
}

/// The report for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let state = |created: bool| if created { "created" } else { "already there" };
    let mut out = String::new();
    let database = &report.database;
    let _ = writeln!(
        out,
        "database {}: {}; runtime role {}: {}",
        database.database,
        state(database.database_created),
        database.runtime_role,
        state(database.runtime_role_created)
    );
    for stream in &report.streams {
        let _ = writeln!(
            out,
            "stream {} ({} {}): {}",
            stream.stream,
            stream.service,
            stream.kind,
            state(stream.created)
        );
        if let Some(days) = stream.retention_was_days {
            let _ = writeln!(
                out,
                "  retention set to the configured one (was {days} days)"
            );
        }
        for difference in &stream.differences {
            let _ = writeln!(
                out,
                "  WARNING: {difference}; used as it is (nats.stream_mismatch = \"warn\")"
            );
        }
    }
    for schema in &report.schemas {
        let _ = writeln!(
            out,
            "schema {} ({}): {}",
            schema.schema,
            schema.name,
            if schema.created {
                "created"
            } else {
                "already there, checked"
            }
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if report.changed() {
            "setup done: the services can start"
        } else {
            "setup done: nothing to change"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(created: bool) -> Report {
        Report {
            database: DatabaseStep {
                database: "circle".into(),
                database_created: created,
                runtime_role: "circle_service".into(),
                runtime_role_created: false,
            },
            streams: vec![StreamStep {
                service: "enrollment".into(),
                kind: "events",
                stream: "ENROLLMENT".into(),
                created,
                differences: if created {
                    Vec::new()
                } else {
                    vec![
                        "num_replicas is 1 on the stream but 3 in the configuration (nats.replicas)"
                            .into(),
                    ]
                },
                retention_was_days: None,
            }],
            schemas: vec![SchemaStep {
                name: "enrollment-read-model".into(),
                schema: "enrollment".into(),
                created,
            }],
        }
    }

    #[test]
    fn the_report_says_what_was_made_and_what_differs() {
        let made = render(&report(true));
        assert_eq!(
            made,
            "database circle: created; runtime role circle_service: already there\n\
             stream ENROLLMENT (enrollment events): created\n\
             schema enrollment (enrollment-read-model): created\n\
             setup done: the services can start\n"
        );
        let again = render(&report(false));
        assert!(again.contains("stream ENROLLMENT (enrollment events): already there\n  WARNING: num_replicas is 1 on the stream but 3 in the configuration (nats.replicas); used as it is (nats.stream_mismatch = \"warn\")\n"), "{again}");
        assert!(
            again.ends_with("setup done: nothing to change\n"),
            "{again}"
        );
        assert!(!report(false).changed());
        assert!(report(true).changed());
    }
}
