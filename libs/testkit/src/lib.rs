//! Test support: every test gets its own PostgreSQL database and its own NATS
//! namespace (unique stream names and subject roots), so tests share nothing and run in
//! parallel against the real servers. Services are started on port 0.
//!
//! `CIRCLE_TEST_NATS_URL` and `CIRCLE_TEST_DATABASE_URL` (an admin connection used to
//! create databases) override the local defaults. Leftovers of earlier runs older than
//! two hours are swept once per test process.
//!
//! The database is reached as the two roles a deployment has: the admin (who creates
//! the database and so owns it) is `database.owner_url`, and [`RUNTIME_ROLE`] —
//! provisioned here if missing, neither superuser nor BYPASSRLS — is `database.url`,
//! so the services run under the tenant walls in every test.

pub mod otlp;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use circle_config::Config;
use futures_util_lite::drain_names;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_ADMIN_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
/// The role the services run as in tests (and in `circle dev`): its password is its
/// name (ignored where the server trusts local logins).
pub const RUNTIME_ROLE: &str = "circle_service";
const STALE_AFTER_SECS: u64 = 2 * 60 * 60;

/// The issuer of the tokens tests sign.
pub const ISSUER: &str = "circle-test";
/// Every service's audience (the defaults); test tokens are good for all three.
pub const AUDIENCES: [&str; 3] = [
    "circle-enrollment",
    "circle-sessions",
    "circle-accountability",
];

/// This test process's signing key (Ed25519, made once per process).
pub fn signing_key() -> &'static circle_auth::sign::SigningKey {
    static KEY: OnceLock<circle_auth::sign::SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        circle_auth::sign::SigningKey::generate_ed25519("circle-test")
            .unwrap_or_else(|error| panic!("cannot make a test signing key: {error}"))
    })
}

/// The tests' master key (a fixed test value, not a secret of any deployment).
pub const MASTER_KEYS: &str = "test-1:dGVzdHMtb25seS1tYXN0ZXIta2V5LTMyLWJ5dGVzISE=";

/// The JWKS file with this process's public key, which every [`TestEnv`]'s
/// configuration trusts (written once per process; a later run's sweep removes it).
pub fn jwks_file() -> anyhow::Result<&'static Path> {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = FILE.get() {
        return Ok(path);
    }
    let path = std::env::temp_dir().join(format!(
        "{JWKS_PREFIX}{}-{}.json",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, circle_auth::sign::SigningKey::jwks(&[signing_key()]))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(FILE.get_or_init(|| path))
}

const JWKS_PREFIX: &str = "circle-test-jwks-";

/// A token of this process's issuer for `subject` in `network`, with `roles` and
/// `clinics`, valid for an hour for every service.
pub fn token(network: &str, subject: &str, roles: &[&str], clinics: &[&str]) -> String {
    let now = circle_auth::unix_now();
    signing_key().sign(&circle_auth::sign::TokenClaims {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCES
            .iter()
            .map(|audience| (*audience).to_owned())
            .collect(),
        subject: subject.to_owned(),
        network: network.to_owned(),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        clinics: clinics.iter().map(|clinic| (*clinic).to_owned()).collect(),
        issued_at: now,
        not_before: Some(now),
        expires_at: now + 3600,
    })
}

/// Puts `token` on `request` as its bearer token.
pub fn authorize<T>(request: &mut tonic::Request<T>, token: &str) {
    match format!("Bearer {token}").parse() {
        Ok(value) => {
            request.metadata_mut().insert("authorization", value);
        }
        Err(error) => panic!("a token is ASCII: {error}"),
    }
}

/// `message` as a request from `subject` in `network` with one `role` and `clinics`.
pub fn request_as<T>(
    message: T,
    network: &str,
    role: &str,
    subject: &str,
    clinics: &[&str],
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    authorize(&mut request, &token(network, subject, &[role], clinics));
    request.set_timeout(Duration::from_secs(30));
    request
}

pub struct TestEnv {
    /// A configuration pointing at this test's database and namespace, port 0.
    pub config: Config,
    pub nats: async_nats::Client,
    /// The admin's (owner's) pool on this test's database: a superuser, who sees every
    /// row through the walls — for a test to look at or arrange the tables.
    pub pool: PgPool,
    /// The runtime role's pool on this test's database (`config.database.url`): what the
    /// services see, one network per transaction.
    pub runtime_pool: PgPool,
    pub namespace: String,
    admin_url: String,
    database: String,
}

impl Drop for TestEnv {
    /// Drops the test's database and streams, so a test run leaves nothing behind
    /// (what a crash leaves is swept by a later run).
    fn drop(&mut self) {
        let (admin_url, database, nats_url) = (
            self.admin_url.clone(),
            self.database.clone(),
            self.config.nats.url.clone(),
        );
        let suffix = format!("_{}", self.namespace.to_ascii_uppercase());
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
                if let Ok(nats) = async_nats::connect(&nats_url).await {
                    let jetstream = async_nats::jetstream::new(nats);
                    for stream in drain_names(&jetstream).await {
                        if stream.ends_with(&suffix) {
                            let _ = jetstream.delete_stream(&stream).await;
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

impl TestEnv {
    pub async fn new() -> anyhow::Result<Self> {
        let nats_url =
            std::env::var("CIRCLE_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.into());
        let admin_url = std::env::var("CIRCLE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_DATABASE_URL.into());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let namespace = format!("t{now}{}", &random[..8]);

        let nats = async_nats::connect(&nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {nats_url}"))?;
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        keep_anchor(&nats).await?;
        static SWEPT: AtomicBool = AtomicBool::new(false);
        if !SWEPT.swap(true, Ordering::SeqCst) {
            sweep_stale(&nats, &mut admin, now).await;
        }
        let database = format!("circle_{namespace}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .context("creating the test database")?;
        let database_url = replace_database(&admin_url, &database);
        let runtime_url = replace_user(&database_url, RUNTIME_ROLE, RUNTIME_ROLE);
        circle_projection::walls::provision_runtime_role(&mut admin, &runtime_url)
            .await
            .context("provisioning the runtime role")?;
        drop(admin);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&database_url)
            .await?;
        let runtime_pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&runtime_url)
            .await
            .with_context(|| format!("connecting as the runtime role {RUNTIME_ROLE}"))?;

        let mut config = Config::default();
        config.nats.url = nats_url;
        config.nats.namespace = namespace.clone();
        config.database.url = runtime_url;
        config.database.owner_url = database_url;
        config.enrollment.listen = ([127, 0, 0, 1], 0).into();
        config.enrollment.timer_poll_ms = 50;
        config.sessions.listen = ([127, 0, 0, 1], 0).into();
        config.sessions.materialize_poll_ms = 50;
        config.accountability.listen = ([127, 0, 0, 1], 0).into();
        config.accountability.nudge_poll_ms = 50;
        config.projection.ack_wait_secs = 2;
        // Tests stop and restart services often; a test of the drain sets its own.
        config.grpc.drain_delay_ms = 0;
        config.projection.max_attempts = 3;
        config.auth.issuer = ISSUER.to_owned();
        config.auth.jwks_file = jwks_file()?.display().to_string();
        config.vault.master_keys = Some(circle_config::Secret::new(MASTER_KEYS));
        Ok(Self {
            config,
            nats,
            pool,
            runtime_pool,
            namespace,
            admin_url,
            database,
        })
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.nats.clone())
    }

    /// The database as a service reaches it: the runtime role, and the admin as owner.
    pub async fn database(&self) -> anyhow::Result<circle_projection::Database> {
        Ok(circle_projection::Database::new(self.runtime_pool.clone(), self.pool.clone()).await?)
    }

    /// Waits until `condition` holds, checking every 20 ms, for at most `limit`.
    pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if condition().await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("condition not met within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// `url` with another user and password.
pub fn replace_user(url: &str, user: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}{path}")
}

/// A stream the tests never delete: NATS 2.9 removes an account's stream directory
/// when its last stream goes, and a stream created at that moment fails ("could not
/// create storage directory", seen as `error creating store for stream`). Tests delete
/// their streams all the time, so one always stays. Its name has no test namespace:
/// no sweep takes it.
async fn keep_anchor(nats: &async_nats::Client) -> anyhow::Result<()> {
    async_nats::jetstream::new(nats.clone())
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "CIRCLE_TEST_ANCHOR".to_owned(),
            subjects: vec!["circle-test-anchor".to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            max_messages: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| anyhow::anyhow!("keeping the tests' anchor stream: {error}"))?;
    Ok(())
}

/// Drops databases and streams that earlier test runs left behind (older than two
/// hours, so a parallel run is never disturbed). Best effort: failures are ignored.
async fn sweep_stale(nats: &async_nats::Client, admin: &mut PgConnection, now: u64) {
    let is_stale = |namespace: &str| {
        namespace
            .strip_prefix('t')
            .and_then(|rest| rest.get(..10))
            .and_then(|secs| secs.parse::<u64>().ok())
            .is_some_and(|created| created + STALE_AFTER_SECS < now)
    };
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'circle_t%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for database in databases {
        if database.strip_prefix("circle_").is_some_and(is_stale) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
    // Earlier processes' JWKS files (a few hundred bytes each).
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age.as_secs() > STALE_AFTER_SECS);
            if old && entry.file_name().to_string_lossy().starts_with(JWKS_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let jetstream = async_nats::jetstream::new(nats.clone());
    for stream in drain_names(&jetstream).await {
        let namespace = stream
            .rsplit_once('_')
            .map(|(_, namespace)| namespace.to_ascii_lowercase());
        if namespace.as_deref().is_some_and(is_stale) {
            let _ = jetstream.delete_stream(&stream).await;
        }
    }
}

mod futures_util_lite {
    use futures::StreamExt;

    pub async fn drain_names(jetstream: &async_nats::jetstream::Context) -> Vec<String> {
        let mut names = jetstream.stream_names();
        let mut all = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            all.push(name);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_user_of_a_url() {
        assert_eq!(
            replace_user("postgres://postgres:pw@127.0.0.1:5432/x", "svc", "s"),
            "postgres://svc:s@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_user("postgres://h/x?sslmode=disable", "svc", "s"),
            "postgres://svc:s@h/x?sslmode=disable"
        );
    }

    #[test]
    fn replaces_only_the_database_of_a_url() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
