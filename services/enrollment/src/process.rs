//! Process managers, run from the ENROLLMENT stream like projections (durable
//! consumer, checkpoint in a PostgreSQL schema of each one's own) and acting through
//! idempotent commands whose request ids derive from the event that triggered them. A
//! step repeated after a restart is answered from the log and changes nothing. They
//! act through the application layer (`app::Commands`, its process-manager steps) as
//! `Caller::process_manager`, whose row in the access table is theirs alone.
//!
//! Seat offers themselves need no process manager: the group decides them in the same
//! commit that frees the seat. What needs one is time (offers expire) and the second
//! half of a transfer (releasing the old seat once the new one is taken).

use std::sync::Arc;
use std::time::Duration;

use circle_eventstore::{ExecuteError, SealError, StoreError, StoredCommit};
use circle_grpc::Caller;
use circle_projection::{ApplyError, Projection};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;

use crate::app::Commands;
use crate::app::commands::StepError;
use crate::codec;
use crate::domain::Event;

/// The schema of [`OfferTimers`] (its timers and checkpoint). Each projection owns its
/// schema: a rebuild swaps the whole schema.
pub const OFFER_TIMERS_SCHEMA: &str = "enrollment_offer_timers";
/// The schema of [`Transfers`] (its checkpoint only).
pub const TRANSFERS_SCHEMA: &str = "enrollment_transfers";
/// [`Transfers`]' name (its checkpoint key and durable consumer), for those who prepare
/// its schema without running it (`circle setup`).
pub const TRANSFERS_NAME: &str = "enrollment-transfers";
/// The schema [`Transfers`]' checkpoint was kept in before it had one of its own.
pub const TRANSFERS_FORMERLY_IN: &str = "enrollment_process";

/// This service's process managers: an in-process caller that no client can claim to
/// be (whatever role a client states).
fn process_manager(network: &str) -> Caller {
    Caller::process_manager(network, "enrollment-process")
}

fn failure(error: StepError) -> Result<(), ApplyError> {
    let error = match error {
        StepError::Command(error) => error,
        // Only this service's process managers take steps: a refusal is a bug, and
        // fails the same way every time.
        StepError::Refused(refusal) => {
            tracing::error!(
                reason = refusal.reason,
                "process step refused by the access table"
            );
            return Err(ApplyError::Poison(refusal.message));
        }
    };
    match error {
        // A refusal is final: the step no longer applies (say the group was archived).
        ExecuteError::Rejected(reason) => {
            tracing::warn!(%reason, "process step refused; skipped");
            Ok(())
        }
        // A step about someone forgotten since: nothing more is recorded about them.
        ExecuteError::Sealing(SealError::Forgotten) => {
            tracing::warn!("process step about a forgotten participant; skipped");
            Ok(())
        }
        ExecuteError::EtagMismatch { .. } | ExecuteError::InvalidKey(_) => {
            tracing::warn!(%error, "process step refused; skipped");
            Ok(())
        }
        // A step too large for the event log fails the same way every time.
        ExecuteError::Store(error @ StoreError::TooLarge { .. }) => {
            Err(ApplyError::Poison(error.to_string()))
        }
        other => Err(ApplyError::Transient(other.to_string())),
    }
}

/// Keeps one timer per open seat offer.
pub struct OfferTimers;

impl Projection for OfferTimers {
    fn name(&self) -> &str {
        "enrollment-offer-timers"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS offer_timers (
            network text NOT NULL,
            group_id text NOT NULL,
            participant_id text NOT NULL,
            offer_id text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (network, group_id, offer_id)
        )"]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        if commit.commit.aggregate_type != "group" {
            return Ok(());
        }
        let (network, group_id) = (&commit.commit.network, &commit.commit.aggregate_id);
        for event in
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?
        {
            match event {
                Event::SeatOffered {
                    participant_id,
                    offer_id,
                    expires_at,
                    ..
                } => {
                    sqlx::query(
                        "INSERT INTO offer_timers (network, group_id, participant_id, offer_id, expires_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(network)
                    .bind(group_id)
                    .bind(participant_id)
                    .bind(offer_id)
                    .bind(expires_at)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::MemberAdmitted { participant_id, .. }
                | Event::SeatOfferDeclined { participant_id, .. }
                | Event::SeatOfferExpired { participant_id, .. }
                | Event::MemberDischarged { participant_id, .. }
                | Event::MemberTransferredOut { participant_id, .. } => {
                    sqlx::query("DELETE FROM offer_timers WHERE network = $1 AND group_id = $2 AND participant_id = $3")
                        .bind(network)
                        .bind(group_id)
                        .bind(participant_id)
                        .execute(&mut *connection)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Fires due offer timers: each becomes an `ExpireOffer` command (request id
/// `expire-<offer>`), which expires the offer and offers the seat to the next person in
/// the same commit. Runs until `shutdown`. Under the tenant walls it goes network by
/// network (the networks the timer projection has seen), each read in a transaction of
/// that network.
pub async fn fire_offer_timers(
    pool: PgPool,
    commands: Arc<Commands>,
    poll: Duration,
    mut lease: circle_projection::Lease,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(poll) => {}
        }
        // One replica at a time runs the timers.
        if !lease.wait_for_turn(&mut shutdown).await {
            break;
        }
        let pass = circle_service::loop_pass_span(crate::SERVICE, "offer_timers");
        fire_all_due_offers(&pool, &commands, &pass)
            .instrument(pass.clone())
            .await;
    }
    lease.release().await;
}

/// One pass of the offer timers: every network's due offers.
async fn fire_all_due_offers(pool: &PgPool, commands: &Commands, pass: &tracing::Span) {
    let networks = match circle_service::networks(pool, OFFER_TIMERS_SCHEMA).await {
        Ok(networks) => networks,
        Err(error) => {
            circle_service::failed(pass);
            tracing::warn!(%error, "cannot read the networks of the offer timers");
            return;
        }
    };
    for network in networks {
        if let Err(error) = fire_due_offers(pool, commands, &network).await {
            circle_service::failed(pass);
            tracing::warn!(%error, "cannot read offer timers");
        }
    }
}

/// Fires the due offer timers of one network (at most 100 a pass).
async fn fire_due_offers(
    pool: &PgPool,
    commands: &Commands,
    network: &str,
) -> Result<(), sqlx::Error> {
    let now = commands.now();
    let due: Vec<(String, String)> = {
        let mut tenant = circle_service::tenant_transaction(pool, network).await?;
        sqlx::query_as(
            "SELECT group_id, offer_id FROM enrollment_offer_timers.offer_timers
             WHERE network = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT 100",
        )
        .bind(network)
        .bind(now)
        .fetch_all(&mut *tenant)
        .await?
    };
    for (group_id, offer_id) in due {
        let span = circle_service::loop_command_span("offer_timers", "ExpireOffer");
        let result = commands
            .expire_offer(&process_manager(network), network, &group_id, &offer_id)
            .instrument(span.clone())
            .await;
        let done = match result {
            Ok(_) => true,
            Err(error) => failure(error).is_ok(),
        };
        if !done {
            circle_service::failed(&span);
        }
        if done {
            // The timer projection removes it too once it sees the expiry; removing
            // it here keeps it from firing again in the meantime.
            let _ = forget_timer(pool, network, &group_id, &offer_id).await;
        }
    }
    Ok(())
}

async fn forget_timer(
    pool: &PgPool,
    network: &str,
    group_id: &str,
    offer_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tenant = circle_service::tenant_transaction(pool, network).await?;
    sqlx::query(
        "DELETE FROM enrollment_offer_timers.offer_timers WHERE network = $1 AND group_id = $2 AND offer_id = $3",
    )
    .bind(network)
    .bind(group_id)
    .bind(offer_id)
    .execute(&mut *tenant)
    .await?;
    tenant.commit().await
}

/// The second half of a transfer: once the participant holds a seat in the new group,
/// release the old one (request id `pm:release-<transfer>`).
pub struct Transfers {
    pub commands: Arc<Commands>,
}

impl Projection for Transfers {
    fn name(&self) -> &str {
        TRANSFERS_NAME
    }

    fn process_manager(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its checkpoint was kept in the schema it shared with the offer timers until
    /// each got its own: resume from there instead of replaying every transfer.
    fn checkpoint_formerly_in(&self) -> Option<&'static str> {
        Some(TRANSFERS_FORMERLY_IN)
    }

    async fn apply(
        &self,
        _connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        if commit.commit.aggregate_type != "group" {
            return Ok(());
        }
        for event in
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?
        {
            if let Event::MemberAdmitted {
                participant_id,
                transfer: Some(transfer),
                ..
            } = event
            {
                let network = &commit.commit.network;
                if let Err(error) = self
                    .commands
                    .release_for_transfer(
                        &process_manager(network),
                        network,
                        participant_id,
                        transfer,
                    )
                    .await
                {
                    failure(error)?;
                }
            }
        }
        Ok(())
    }
}
