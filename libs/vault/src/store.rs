//! The key store: one data key per participant, shared by the services, in the walled
//! table `circle_vault.data_keys` (a row per network and participant: the key wrapped
//! by a master key and that key's id, when it was made, and — once the participant is
//! forgotten — when, with the wrapped key gone). The keys are the one state outside the
//! log: no rebuild drops this schema.
//!
//! - [`KeyStore::sealing_key`]: the key to seal with, made on first use; a forgotten
//!   participant gets none ([`StoreError::Forgotten`]), so nothing new is ever written
//!   readable for them.
//! - [`KeyStore::opening_key`]: the key to open with, or `None` once forgotten (the
//!   reader shows [`crate::REDACTED`]).
//! - [`KeyStore::forget`]: destroys the key, keeping the tombstone.
//! - [`KeyStore::rewrap`]: re-wraps a network's keys with the current master key (the
//!   rotation step before an old master key is retired).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use circle_eventstore::{AggregateKey, Seal, SealError};
use circle_projection::Database;

use crate::personal::{Opener, Personal, SealFailure, Sealer, concerned, participants_of};
use crate::{DataKey, MasterKeys, VaultError, Wrapped};

pub const SCHEMA: &str = "circle_vault";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the participant has been forgotten; nothing more is kept for them")]
    Forgotten,
    #[error("key store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("key store walls: {0}")]
    Wall(#[from] circle_projection::WallError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

#[derive(Clone)]
pub struct KeyStore {
    database: Database,
    master: Arc<MasterKeys>,
}

type Row = (Option<String>, Option<Vec<u8>>, bool);
/// A row of [`KeyStore::opener`]'s query: the participant, then a [`Row`].
type ParticipantRow = (String, Option<String>, Option<Vec<u8>>, bool);

impl KeyStore {
    /// Creates the schema if needed (as the owner, one service at a time), walls it,
    /// and returns the store.
    pub async fn open(database: Database, master: MasterKeys) -> Result<Self, StoreError> {
        Self::prepare(&database).await?;
        Ok(Self {
            database,
            master: Arc::new(master),
        })
    }

    /// The key store's schema, table, tombstone trigger and walls, made as the owner if
    /// missing (what [`KeyStore::open`] does first; `circle setup` runs it without the
    /// master keys, which it does not need). Idempotent and safe to run concurrently.
    pub async fn prepare(database: &Database) -> Result<(), StoreError> {
        let mut migration = database.owner.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(SCHEMA)
            .execute(&mut *migration)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {SCHEMA}"
        )))
        .execute(&mut *migration)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {SCHEMA}.data_keys (
                network text NOT NULL,
                participant_id text NOT NULL,
                master_key_id text,
                wrapped bytea,
                created_at timestamptz NOT NULL DEFAULT now(),
                forgotten_at timestamptz,
                PRIMARY KEY (network, participant_id),
                CHECK ((forgotten_at IS NULL) = (wrapped IS NOT NULL))
            )"
        )))
        .execute(&mut *migration)
        .await?;
        // A forgotten participant stays forgotten: the services may not delete a row
        // (no DELETE grant), and no update touches a tombstone.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE OR REPLACE FUNCTION {SCHEMA}.keep_tombstones() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
               IF OLD.forgotten_at IS NOT NULL THEN
                 RAISE EXCEPTION 'a forgotten participant''s key row is kept as it is'
                   USING ERRCODE = 'integrity_constraint_violation';
               END IF;
               IF TG_OP = 'DELETE' THEN
                 RETURN OLD;
               END IF;
               RETURN NEW;
             END $$"
        )))
        .execute(&mut *migration)
        .await?;
        let has_trigger: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'keep_tombstones'
                 AND tgrelid = 'circle_vault.data_keys'::regclass)",
        )
        .fetch_one(&mut *migration)
        .await?;
        if !has_trigger {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TRIGGER keep_tombstones BEFORE UPDATE OR DELETE ON {SCHEMA}.data_keys
                 FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.keep_tombstones()"
            )))
            .execute(&mut *migration)
            .await?;
        }
        circle_projection::walls::wall_schema_granting(
            &mut migration,
            SCHEMA,
            database.runtime_role(),
            &["SELECT", "INSERT", "UPDATE"],
        )
        .await?;
        migration.commit().await?;
        Ok(())
    }

    async fn row(
        &self,
        transaction: &mut sqlx::PgConnection,
        network: &str,
        participant: &str,
    ) -> Result<Option<Row>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT master_key_id, wrapped, forgotten_at IS NOT NULL
             FROM {SCHEMA}.data_keys WHERE network = $1 AND participant_id = $2"
        )))
        .bind(network)
        .bind(participant)
        .fetch_optional(transaction)
        .await?)
    }

    fn unwrap(
        &self,
        row: Row,
        network: &str,
        participant: &str,
    ) -> Result<Option<DataKey>, StoreError> {
        match row {
            (_, _, true) => Ok(None),
            (Some(master_key_id), Some(bytes), false) => Ok(Some(self.master.unwrap(
                &Wrapped {
                    master_key_id,
                    bytes,
                },
                network,
                participant,
            )?)),
            _ => Err(StoreError::Vault(VaultError::Unwrap)),
        }
    }

    /// The participant's key to seal with, made now if they have none.
    pub async fn sealing_key(
        &self,
        network: &str,
        participant: &str,
    ) -> Result<DataKey, StoreError> {
        let mut transaction =
            circle_projection::tenant_transaction(&self.database.pool, network).await?;
        let mut row = self.row(&mut transaction, network, participant).await?;
        if row.is_none() {
            let fresh = DataKey::generate()?;
            let wrapped = self.master.wrap(&fresh, network, participant)?;
            // Two services may make a first key at once: the first insert wins and
            // both use the stored one.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {SCHEMA}.data_keys (network, participant_id, master_key_id, wrapped)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            )))
            .bind(network)
            .bind(participant)
            .bind(&wrapped.master_key_id)
            .bind(&wrapped.bytes)
            .execute(&mut *transaction)
            .await?;
            row = self.row(&mut transaction, network, participant).await?;
        }
        let row = row.ok_or(StoreError::Vault(VaultError::Unwrap))?;
        transaction.commit().await?;
        self.unwrap(row, network, participant)?
            .ok_or(StoreError::Forgotten)
    }

    /// The participant's key to open with; `None` if they were forgotten or never had
    /// one.
    pub async fn opening_key(
        &self,
        network: &str,
        participant: &str,
    ) -> Result<Option<DataKey>, StoreError> {
        let mut transaction =
            circle_projection::tenant_transaction(&self.database.pool, network).await?;
        match self.row(&mut transaction, network, participant).await? {
            Some(row) => self.unwrap(row, network, participant),
            None => Ok(None),
        }
    }

    /// Destroys the participant's key (a tombstone stays, so no key is made for them
    /// again). Whether there was a live key to destroy.
    pub async fn forget(&self, network: &str, participant: &str) -> Result<bool, StoreError> {
        let mut transaction =
            circle_projection::tenant_transaction(&self.database.pool, network).await?;
        let existed: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {SCHEMA}.data_keys (network, participant_id, forgotten_at)
             VALUES ($1, $2, now())
             ON CONFLICT (network, participant_id) DO UPDATE
               SET master_key_id = NULL, wrapped = NULL, forgotten_at = now()
               WHERE {SCHEMA}.data_keys.forgotten_at IS NULL
             RETURNING (xmax <> 0)"
        )))
        .bind(network)
        .bind(participant)
        .fetch_optional(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(existed.unwrap_or(false))
    }

    /// Re-wraps every live key of `network` not wrapped by the current master key; how
    /// many were re-wrapped.
    pub async fn rewrap(&self, network: &str) -> Result<u64, StoreError> {
        let mut transaction =
            circle_projection::tenant_transaction(&self.database.pool, network).await?;
        let stale: Vec<(String, String, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT participant_id, master_key_id, wrapped FROM {SCHEMA}.data_keys
             WHERE network = $1 AND forgotten_at IS NULL AND master_key_id <> $2
             FOR UPDATE"
        )))
        .bind(network)
        .bind(self.master.current_id())
        .fetch_all(&mut *transaction)
        .await?;
        let count = u64::try_from(stale.len()).unwrap_or(u64::MAX);
        for (participant, master_key_id, bytes) in stale {
            let key = self.master.unwrap(
                &Wrapped {
                    master_key_id,
                    bytes,
                },
                network,
                &participant,
            )?;
            let wrapped = self.master.wrap(&key, network, &participant)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {SCHEMA}.data_keys SET master_key_id = $3, wrapped = $4
                 WHERE network = $1 AND participant_id = $2 AND forgotten_at IS NULL"
            )))
            .bind(network)
            .bind(&participant)
            .bind(&wrapped.master_key_id)
            .bind(&wrapped.bytes)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(count)
    }

    /// How many live keys of `network` are still wrapped by an older master key than the
    /// current one (none once a rotation's re-wrap is complete).
    pub async fn stale(&self, network: &str) -> Result<u64, StoreError> {
        let mut transaction =
            circle_projection::tenant_transaction(&self.database.pool, network).await?;
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {SCHEMA}.data_keys
             WHERE network = $1 AND forgotten_at IS NULL AND master_key_id <> $2"
        )))
        .bind(network)
        .bind(self.master.current_id())
        .fetch_one(&mut *transaction)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The sealing keys of `participants` (made for those who have none yet);
    /// [`StoreError::Forgotten`] if any of them has been forgotten.
    pub async fn sealer<I, S>(&self, network: &str, participants: I) -> Result<Sealer, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = HashMap::new();
        for participant in participants {
            let participant = participant.as_ref();
            if participant.is_empty() || keys.contains_key(participant) {
                continue;
            }
            let key = self.sealing_key(network, participant).await?;
            keys.insert(participant.to_owned(), key);
        }
        Ok(Sealer::new(network, keys))
    }

    /// The opening keys of `participants`, in one query (none for the forgotten, or
    /// for anyone who never had one).
    pub async fn opener<I, S>(&self, network: &str, participants: I) -> Result<Opener, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ids: Vec<String> = participants
            .into_iter()
            .map(|id| id.as_ref().to_owned())
            .filter(|id| !id.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        let mut keys: HashMap<String, Option<DataKey>> = HashMap::new();
        if !ids.is_empty() {
            let mut transaction =
                circle_projection::tenant_transaction(&self.database.pool, network).await?;
            let rows: Vec<ParticipantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT participant_id, master_key_id, wrapped, forgotten_at IS NOT NULL
                     FROM {SCHEMA}.data_keys WHERE network = $1 AND participant_id = ANY($2)"
            )))
            .bind(network)
            .bind(&ids)
            .fetch_all(&mut *transaction)
            .await?;
            transaction.commit().await?;
            for (participant, master_key_id, wrapped, forgotten) in rows {
                let key =
                    self.unwrap((master_key_id, wrapped, forgotten), network, &participant)?;
                keys.insert(participant, key);
            }
        }
        Ok(Opener::new(network, keys))
    }

    /// `items` with every personal field opened (owner: see [`Personal`]).
    pub async fn open_all<T: Personal>(
        &self,
        network: &str,
        owner: &str,
        items: &mut [T],
    ) -> Result<(), StoreError> {
        let participants = participants_of(owner, items);
        if participants.is_empty() {
            return Ok(());
        }
        self.opener(network, &participants)
            .await?
            .open_all(owner, items);
        Ok(())
    }
}

/// Forgotten is final; a database that cannot be reached may recover (retry); a key
/// that does not unwrap (a retired master key, a damaged row) or a wall that does not
/// hold will not, whatever the caller does.
impl From<StoreError> for SealError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Forgotten => SealError::Forgotten,
            StoreError::Database(error) => SealError::Unavailable(error.to_string()),
            error @ (StoreError::Wall(_) | StoreError::Vault(_)) => {
                SealError::Damaged(error.to_string())
            }
        }
    }
}

impl From<SealFailure> for SealError {
    fn from(failure: SealFailure) -> Self {
        SealError::Damaged(failure.to_string())
    }
}

/// Every repository of a service seals its commits through the key store.
impl<E: Personal + Send + Sync> Seal<E> for KeyStore {
    fn seal<'a>(
        &'a self,
        key: &'a AggregateKey,
        events: &'a mut [E],
    ) -> Pin<Box<dyn Future<Output = Result<(), SealError>> + Send + 'a>> {
        Box::pin(async move {
            let participants = concerned(key.id(), events);
            if participants.is_empty() {
                return Ok(());
            }
            let sealer = self.sealer(key.network(), &participants).await?;
            sealer.seal_all(key.id(), events)?;
            Ok(())
        })
    }
}
