//! Work that one replica at a time should do (a background loop: offer timers, the
//! schedule materialiser, the nudger): a lease held as a PostgreSQL session advisory
//! lock on a connection of its own, like a projection's writer lock. The lease goes
//! with its holder's session: a replica that stops, dies or loses its database
//! connection drops it, and another replica's next [`Lease::hold`] takes it (standbys
//! try every [`LEASE_RETRY`]). Holding is checked before every pass (the connection
//! must still answer), so a holder whose session ended stops at once; for the short
//! time two replicas could both run a pass (a connection lost in the middle of one),
//! the loops' commands are idempotent (their request ids derive from what they act on),
//! so nothing is done twice.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

/// How often a replica that does not hold a lease tries to take it.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// The longest a lease's database call may take (an unreachable database must not
/// hold a loop, or a shutdown, for the network's timeouts).
const LEASE_CALL_LIMIT: Duration = Duration::from_secs(5);

pub struct Lease {
    key: String,
    pool: PgPool,
    held: Option<PgConnection>,
}

impl Lease {
    /// The lease `key` (e.g. `circle.loop.sessions.materializer`), taken through
    /// `pool` (the runtime role's).
    pub fn new(pool: PgPool, key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            pool,
            held: None,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this replica holds the lease now: a held one is checked (its session
    /// must still answer), else it is taken if free. A database that cannot be reached
    /// answers false (and a pass could not run anyway).
    pub async fn hold(&mut self) -> bool {
        if let Some(connection) = &mut self.held {
            let alive = tokio::time::timeout(
                LEASE_CALL_LIMIT,
                sqlx::query("SELECT 1").execute(&mut *connection),
            )
            .await;
            if matches!(alive, Ok(Ok(_))) {
                return true;
            }
            tracing::warn!(lease = %self.key, "lost the lease with its database session");
            self.held = None;
        }
        let Ok(Ok(mut connection)) =
            tokio::time::timeout(LEASE_CALL_LIMIT, self.pool.acquire()).await
        else {
            return false;
        };
        let locked = tokio::time::timeout(
            LEASE_CALL_LIMIT,
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&self.key)
                .fetch_one(&mut *connection),
        )
        .await;
        let locked = match locked {
            Ok(locked) => locked.unwrap_or(false),
            Err(_) => {
                // The attempt may still take the lock once it is answered: never hand
                // that session back to the pool, close it (and the lock with it).
                drop(connection.detach());
                return false;
            }
        };
        if !locked {
            return false;
        }
        // The lock lives with the session: keep the connection out of the pool, and
        // have the server notice within about half a minute if this replica's node
        // vanishes (by default a silent peer holds its session, and the lease, for
        // hours of TCP keepalive).
        let mut connection = connection.detach();
        if let Err(error) = crate::runner::keep_alive_briefly(&mut connection).await {
            tracing::warn!(lease = %self.key, %error, "cannot shorten the lease session's keepalive");
        }
        tracing::info!(lease = %self.key, "holding the lease: this replica runs the loop");
        self.held = Some(connection);
        true
    }

    /// Gives the lease up (at shutdown: another replica takes it at once, without
    /// waiting for this session to be seen gone).
    pub async fn release(&mut self) {
        if let Some(mut connection) = self.held.take() {
            let _ = tokio::time::timeout(LEASE_CALL_LIMIT, async {
                let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                    .bind(&self.key)
                    .execute(&mut connection)
                    .await;
                use sqlx::Connection as _;
                let _ = connection.close().await;
            })
            .await;
        }
    }

    /// Waits until this replica holds the lease (trying every [`LEASE_RETRY`]);
    /// false when `stopped` resolves first.
    pub async fn wait_for_turn(
        &mut self,
        stopped: &mut (impl Future<Output = ()> + Unpin),
    ) -> bool {
        loop {
            if self.hold().await {
                return true;
            }
            tokio::select! {
                () = &mut *stopped => return false,
                () = tokio::time::sleep(LEASE_RETRY) => {}
            }
        }
    }
}
