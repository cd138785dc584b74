//! The roster projection: what the sessions service knows of enrollment, built from
//! the ENROLLMENT stream into its own schema `sessions_roster` (it never reads the
//! enrollment service's tables). Groups with their schedule and facilitators, each
//! member's active periods (admitted or resumed → held, discharged or transferred
//! out), and the names and aliases of participants — personal data, kept in their own
//! table, used only to keep individual notes from naming other members.
//!
//! Names and aliases arrive sealed with each participant's data key (enrollment seals
//! them) and are stored as they arrive: this projection holds no keys, and nothing it
//! stores is readable once the participant is forgotten. The application opens them
//! for the note check (`crate::app`), and de-duplicates them there.

use circle_enrollment_events::{self as facts, Fact};
use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, Projection};
use circle_proto::enrollment::events::v1 as pb;
use prost::Message;
use sqlx::PgConnection;

pub const SCHEMA: &str = "sessions_roster";

pub struct Roster;

impl Projection for Roster {
    fn name(&self) -> &str {
        "sessions-roster"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS groups (
                network text NOT NULL,
                group_id text NOT NULL,
                clinic_id text NOT NULL,
                time_zone text NOT NULL,
                schedule bytea,
                facilitators text[] NOT NULL DEFAULT '{}',
                archived boolean NOT NULL DEFAULT false,
                version bigint NOT NULL,
                PRIMARY KEY (network, group_id)
            )",
            "CREATE TABLE IF NOT EXISTS member_periods (
                network text NOT NULL,
                group_id text NOT NULL,
                participant_id text NOT NULL,
                from_at timestamptz NOT NULL,
                to_at timestamptz,
                PRIMARY KEY (network, group_id, participant_id, from_at)
            )",
            // A participant's groups without a scan of the network's periods.
            "CREATE INDEX IF NOT EXISTS member_periods_by_participant ON member_periods (network, participant_id) WHERE to_at IS NULL",
            "CREATE TABLE IF NOT EXISTS member_names (
                network text NOT NULL,
                participant_id text NOT NULL,
                given_name text NOT NULL DEFAULT '',
                family_name text NOT NULL DEFAULT '',
                preferred_name text NOT NULL DEFAULT '',
                aliases text[] NOT NULL DEFAULT '{}',
                PRIMARY KEY (network, participant_id)
            )",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let network = commit.commit.network.as_str();
        let id = commit.commit.aggregate_id.as_str();
        let version = commit.sequence as i64;
        let at = commit
            .commit
            .committed_at
            .and_then(crate::codec::from_timestamp)
            .ok_or_else(|| ApplyError::Poison("commit without a valid time".into()))?;
        for event in &commit.commit.events {
            let fact =
                facts::decode(event).map_err(|error| ApplyError::Poison(error.to_string()))?;
            match fact {
                Some(Fact::GroupCreated(group)) => {
                    sqlx::query(
                        "INSERT INTO groups (network, group_id, clinic_id, time_zone, schedule, facilitators, version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(&group.clinic_id)
                    .bind(&group.time_zone)
                    .bind(group.schedule.as_ref().map(Message::encode_to_vec))
                    .bind(facts::staff_ids(&group.facilitators))
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::GroupScheduleChanged(change)) => {
                    sqlx::query("UPDATE groups SET schedule = $3, version = $4 WHERE network = $1 AND group_id = $2")
                        .bind(network)
                        .bind(id)
                        .bind(change.schedule.as_ref().map(Message::encode_to_vec))
                        .bind(version)
                        .execute(&mut *connection)
                        .await?;
                }
                Some(Fact::GroupFacilitatorsChanged(staff)) => {
                    sqlx::query("UPDATE groups SET facilitators = $3, version = $4 WHERE network = $1 AND group_id = $2")
                        .bind(network)
                        .bind(id)
                        .bind(staff)
                        .bind(version)
                        .execute(&mut *connection)
                        .await?;
                }
                Some(Fact::GroupArchived) => {
                    sqlx::query("UPDATE groups SET archived = true, version = $3 WHERE network = $1 AND group_id = $2")
                        .bind(network)
                        .bind(id)
                        .bind(version)
                        .execute(&mut *connection)
                        .await?;
                }
                Some(Fact::PeriodOpened { participant_id }) => {
                    sqlx::query(
                        "INSERT INTO member_periods (network, group_id, participant_id, from_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(participant_id)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::PeriodClosed { participant_id, .. }) => {
                    sqlx::query(
                        "UPDATE member_periods SET to_at = $4
                         WHERE network = $1 AND group_id = $2 AND participant_id = $3 AND to_at IS NULL",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(participant_id)
                    .bind(at)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::Profile(profile)) => {
                    sqlx::query(
                        "INSERT INTO member_names (network, participant_id, given_name, family_name, preferred_name)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (network, participant_id) DO UPDATE SET
                            given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
                            preferred_name = EXCLUDED.preferred_name",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(profile.given_name)
                    .bind(profile.family_name)
                    .bind(profile.preferred_name)
                    .execute(&mut *connection)
                    .await?;
                }
                // An alias a member was known by stays on the list even after the consent
                // is revoked: it still identifies them in a note. Sealed, the same alias
                // recorded twice is two different values (each sealing has its own nonce),
                // so only an identical value (text from before sealing) is kept out here;
                // the reader de-duplicates what the values open to.
                Some(Fact::ConsentRecorded(consent))
                    if consent.kind == pb::ConsentKind::PeerVisibility as i32
                        && !consent.alias.trim().is_empty() =>
                {
                    sqlx::query(
                        "UPDATE member_names SET aliases = array_append(aliases, $3)
                         WHERE network = $1 AND participant_id = $2 AND NOT ($3 = ANY(aliases))",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(consent.alias.trim())
                    .execute(&mut *connection)
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
