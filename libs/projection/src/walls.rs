//! The tenant walls in PostgreSQL (BLUEPRINT §4): row-level security on every table of
//! every projection's schema, as a second wall behind the queries' own `network = $1`.
//!
//! Two roles share the database. The **owner** (`database.owner_url`) runs the DDL:
//! the migrations at start (schemas, tables, indexes, `ENABLE` and `FORCE ROW LEVEL
//! SECURITY`, the [`WALL_POLICY`] and the grants) and a rebuild's schema work. The
//! **runtime role** (`database.url`) does everything else: it is neither superuser nor
//! `BYPASSRLS` nor a member of any table's owner, which [`Database::new`] and each
//! schema's migration check, refusing to start otherwise.
//!
//! The runtime role sees and writes a row only in a transaction that set the row's
//! network first ([`tenant_transaction`], or [`set_network`] inside one): the policy
//! is `network = NULLIF(current_setting('circle.network', true), '')`, so with no
//! network set (or an empty one) nothing is visible and nothing can be written.
//! [`UNWALLED`] lists the tables that hold no tenant's data, each with its reason.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// The transaction-local setting that names the network a transaction works for.
pub const NETWORK_SETTING: &str = "circle.network";

/// The name of the policy every walled table carries.
pub const WALL_POLICY: &str = "tenant_wall";

/// Who may see and write a row: the transaction's network, and only a non-empty one.
const WALL: &str = "network = NULLIF(current_setting('circle.network', true), '')";

/// The tables of a projection's schema without a wall: they hold no tenant's data.
/// Each with why, and what the runtime role may do on it.
pub const UNWALLED: [Unwalled; 2] = [
    Unwalled {
        table: "projection_checkpoint",
        reason: "the projection's name, its position in the stream and the shape of its \
                 tables: no tenant's data",
        privileges: &["SELECT", "UPDATE"],
    },
    Unwalled {
        table: "networks",
        reason: "only the ids of the networks the projection has applied events of, which \
                 the background loops go through network by network",
        privileges: &["SELECT", "INSERT"],
    },
];

/// What the runtime role may do on a walled table (the wall decides which rows).
const WALLED_PRIVILEGES: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// A table of a projection's schema that holds no tenant's data.
#[derive(Debug, Clone, Copy)]
pub struct Unwalled {
    pub table: &'static str,
    pub reason: &'static str,
    pub privileges: &'static [&'static str],
}

/// Why a service refuses to start: the wall would not hold.
#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error(
        "database.url connects as role {role:?}, which is {what}: row-level security does \
         not hold it, so the tenant wall would be off. Connect the services as a role that \
         is neither superuser nor BYPASSRLS and owns nothing (e.g. circle_service), and give \
         the owner of the schemas as database.owner_url"
    )]
    Privileged { role: String, what: &'static str },
    #[error(
        "database.url connects as role {role:?}, which owns (or may act as the owner of) \
         table {table}: row-level security does not hold a table's owner, so the tenant \
         wall would be off. Connect the services as a role that owns nothing (e.g. \
         circle_service); database.owner_url is the owner"
    )]
    Owner { role: String, table: String },
    #[error(
        "database.url ({runtime}) and database.owner_url ({owner}) name different \
         databases; they must name the same one"
    )]
    OtherDatabase { runtime: String, owner: String },
    #[error(
        "table {table} has no network column, so it cannot be walled; every table of a \
         projection carries its rows' network"
    )]
    NoNetwork { table: String },
    #[error(
        "table {table} has a row-level security policy {policy:?} besides the wall; \
         permissive policies are OR-ed, so it could open the wall. Drop it"
    )]
    OtherPolicy { table: String, policy: String },
    #[error("checking the database roles: {0}")]
    Database(#[from] sqlx::Error),
}

/// The read models' database as the two roles reach it.
#[derive(Clone, Debug)]
pub struct Database {
    /// The runtime role: every read and write a service makes.
    pub pool: PgPool,
    /// The owner: DDL only (migrations at start, a rebuild's schemas).
    pub owner: PgPool,
    runtime_role: String,
}

impl Database {
    /// Checks the runtime role of `pool` — not superuser, not `BYPASSRLS`, in the
    /// database `owner` connects to — and refuses it otherwise. Whether it owns a table
    /// is checked by each schema's migration, once the tables exist.
    pub async fn new(pool: PgPool, owner: PgPool) -> Result<Self, WallError> {
        let (role, superuser, bypass_rls, database): (String, bool, bool, String) = sqlx::query_as(
            "SELECT rolname::text, rolsuper, rolbypassrls, current_database()::text
                 FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await?;
        if superuser {
            return Err(WallError::Privileged {
                role,
                what: "a superuser",
            });
        }
        if bypass_rls {
            return Err(WallError::Privileged {
                role,
                what: "BYPASSRLS",
            });
        }
        // A member of such a role could SET ROLE to it.
        let privileged_member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_roles r
                 WHERE (r.rolsuper OR r.rolbypassrls) AND r.rolname <> current_user
                   AND pg_has_role(current_user, r.oid, 'MEMBER'))",
        )
        .fetch_one(&pool)
        .await?;
        if privileged_member {
            return Err(WallError::Privileged {
                role,
                what: "a member of a superuser or BYPASSRLS role",
            });
        }
        let owner_database: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&owner)
            .await?;
        if owner_database != database {
            return Err(WallError::OtherDatabase {
                runtime: database,
                owner: owner_database,
            });
        }
        Ok(Self {
            pool,
            owner,
            runtime_role: role,
        })
    }

    /// The role the services run as (`current_user` of [`Database::pool`]).
    pub fn runtime_role(&self) -> &str {
        &self.runtime_role
    }
}

/// Sets the network of the current transaction (transaction-local: it ends with it).
pub async fn set_network(connection: &mut PgConnection, network: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(NETWORK_SETTING)
        .bind(network)
        .execute(connection)
        .await
        .map(|_| ())
}

/// Begins a transaction that sees and writes only `network`'s rows. A read needs no
/// commit (dropping the transaction rolls it back); a write commits it.
pub async fn tenant_transaction(
    pool: &PgPool,
    network: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    set_network(&mut transaction, network).await?;
    Ok(transaction)
}

/// A read-only transaction of `network` whose statements all see one snapshot
/// (`REPEATABLE READ`), for a read of several statements that must agree.
pub async fn tenant_snapshot(
    pool: &PgPool,
    network: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut transaction = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    set_network(&mut transaction, network).await?;
    Ok(transaction)
}

/// The networks a projection has applied events of (its schema's `networks`), for
/// background loops that go through them one by one.
pub async fn networks(pool: &PgPool, schema: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT network FROM {schema}.networks ORDER BY network"
    )))
    .fetch_all(pool)
    .await
}

/// `value` as an SQL identifier.
fn identifier(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Walls every table of `schema` (run by the owner, in the migration's transaction):
/// row-level security enabled and forced with [`WALL_POLICY`], the runtime role's
/// privileges granted; the tables in [`UNWALLED`] get their own privileges only. A
/// table without a `network` column is refused. Then checks that the runtime role owns
/// none of the schema's tables. Each step runs only when missing, so a start that finds
/// everything in place takes no lock beyond reading the catalog.
pub async fn wall_schema(
    connection: &mut PgConnection,
    schema: &str,
    runtime_role: &str,
) -> Result<(), WallError> {
    wall_schema_granting(connection, schema, runtime_role, &WALLED_PRIVILEGES).await
}

/// [`wall_schema`], granting the runtime role only `privileges` on the walled tables
/// (a table the services must never delete from, say).
pub async fn wall_schema_granting(
    connection: &mut PgConnection,
    schema: &str,
    runtime_role: &str,
    privileges: &[&str],
) -> Result<(), WallError> {
    // The schema's owner (or anyone who may create in it) could drop a walled table
    // and put an unwalled one in its place.
    let (owns_schema, creates): (bool, bool) = sqlx::query_as(
        "SELECT pg_has_role($1, n.nspowner, 'MEMBER'), has_schema_privilege($1, n.oid, 'CREATE')
         FROM pg_namespace n WHERE n.nspname = $2",
    )
    .bind(runtime_role)
    .bind(schema)
    .fetch_one(&mut *connection)
    .await?;
    if owns_schema || creates {
        return Err(WallError::Owner {
            role: runtime_role.to_owned(),
            table: format!("{schema} (the schema)"),
        });
    }
    let walled_privileges = privileges;
    let has_usage: bool = sqlx::query_scalar("SELECT has_schema_privilege($1, $2, 'USAGE')")
        .bind(runtime_role)
        .bind(schema)
        .fetch_one(&mut *connection)
        .await?;
    if !has_usage {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA {} TO {}",
            identifier(schema),
            identifier(runtime_role)
        )))
        .execute(&mut *connection)
        .await?;
    }
    let tables: Vec<(String, bool, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text,
                EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attname = 'network' AND NOT a.attisdropped),
                c.relrowsecurity,
                c.relforcerowsecurity,
                EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2),
                pg_has_role($3, c.relowner, 'MEMBER')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
         ORDER BY c.relname",
    )
    .bind(schema)
    .bind(WALL_POLICY)
    .bind(runtime_role)
    .fetch_all(&mut *connection)
    .await?;
    for (table, has_network, enabled, forced, has_policy, owned_by_runtime) in tables {
        let qualified = format!("{}.{}", identifier(schema), identifier(&table));
        if owned_by_runtime {
            return Err(WallError::Owner {
                role: runtime_role.to_owned(),
                table: format!("{schema}.{table}"),
            });
        }
        let privileges = match UNWALLED.iter().find(|unwalled| unwalled.table == table) {
            Some(unwalled) => unwalled.privileges,
            None => {
                if !has_network {
                    return Err(WallError::NoNetwork {
                        table: format!("{schema}.{table}"),
                    });
                }
                if !(enabled && forced) {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"
                    )))
                    .execute(&mut *connection)
                    .await?;
                }
                if !has_policy {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE POLICY {WALL_POLICY} ON {qualified} USING ({WALL}) WITH CHECK ({WALL})"
                    )))
                    .execute(&mut *connection)
                    .await?;
                }
                let other: Option<String> = sqlx::query_scalar(
                    "SELECT polname::text FROM pg_policy WHERE polrelid = $1::regclass AND polname <> $2 LIMIT 1",
                )
                .bind(&qualified)
                .bind(WALL_POLICY)
                .fetch_optional(&mut *connection)
                .await?;
                if let Some(policy) = other {
                    return Err(WallError::OtherPolicy {
                        table: format!("{schema}.{table}"),
                        policy,
                    });
                }
                walled_privileges
            }
        };
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT privilege FROM unnest($1::text[]) AS privilege
             WHERE NOT has_table_privilege($2, $3::regclass, privilege)",
        )
        .bind(privileges)
        .bind(runtime_role)
        .bind(&qualified)
        .fetch_all(&mut *connection)
        .await?;
        if !missing.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "GRANT {} ON {qualified} TO {}",
                missing.join(", "),
                identifier(runtime_role)
            )))
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}

/// For development and tests: creates the runtime role `runtime_url` logs in as, if it
/// does not exist — `LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE`, with the
/// URL's password if it has one — over `admin`, a connection of a role that may create
/// roles. An existing role is left as it is (a misconfigured one is refused at start).
/// Safe to run concurrently.
pub async fn provision_runtime_role(
    admin: &mut PgConnection,
    runtime_url: &str,
) -> Result<String, sqlx::Error> {
    let (role, password) = user_of(runtime_url)
        .ok_or_else(|| sqlx::Error::Configuration("database.url names no user".into()))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&role)
            .fetch_one(&mut *admin)
            .await?;
    if exists {
        return Ok(role);
    }
    let statement: String = sqlx::query_scalar(
        "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE', $1::text)
                || coalesce(format(' PASSWORD %L', $2::text), '')",
    )
    .bind(&role)
    .bind(password)
    .fetch_one(&mut *admin)
    .await?;
    match sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut *admin)
        .await
    {
        Ok(_) => Ok(role),
        // Another process created it meanwhile.
        Err(sqlx::Error::Database(error))
            if matches!(error.code().as_deref(), Some("42710" | "23505")) =>
        {
            Ok(role)
        }
        Err(error) => Err(error),
    }
}

/// The user and password of a `postgres://user:password@host/…` URL, percent-decoded.
fn user_of(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = percent_decode(user)?;
    (!user.is_empty()).then_some(())?;
    let password = match password {
        Some(password) => Some(percent_decode(password)?),
        None => None,
    };
    Some((user, password))
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_and_password_of_a_url_are_read_decoded() {
        assert_eq!(
            user_of("postgres://circle_service:circle_service@127.0.0.1:5432/circle"),
            Some(("circle_service".into(), Some("circle_service".into())))
        );
        assert_eq!(
            user_of("postgres://svc@h/db?sslmode=disable"),
            Some(("svc".into(), None))
        );
        assert_eq!(
            user_of("postgresql://a%40b:p%3Aw%2F@h:1/db"),
            Some(("a@b".into(), Some("p:w/".into())))
        );
        assert_eq!(user_of("postgres://127.0.0.1/db"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(identifier("circle_service"), "\"circle_service\"");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
    }
}
