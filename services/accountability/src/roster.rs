//! What accountability knows of enrollment, projected from the ENROLLMENT stream into
//! schema `accountability_roster`: groups (clinic, time zone, facilitators), members'
//! active periods, peer-visibility consent as it stands now, and first names and
//! aliases (personal data; shown to peers only as the consent allows).

use circle_enrollment_events::{self as facts, Fact};
use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, Projection};
use circle_proto::enrollment::events::v1 as pb;
use sqlx::PgConnection;

pub const SCHEMA: &str = "accountability_roster";

pub struct Roster;

impl Projection for Roster {
    fn name(&self) -> &str {
        "accountability-roster"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS groups (
                network text NOT NULL,
                group_id text NOT NULL,
                clinic_id text NOT NULL,
                time_zone text NOT NULL,
                facilitators text[] NOT NULL DEFAULT '{}',
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
            "CREATE TABLE IF NOT EXISTS people (
                network text NOT NULL,
                participant_id text NOT NULL,
                given_name text NOT NULL DEFAULT '',
                peer_consent_id text NOT NULL DEFAULT '',
                display text NOT NULL DEFAULT '',
                alias text NOT NULL DEFAULT '',
                share_check_ins boolean NOT NULL DEFAULT false,
                share_milestones boolean NOT NULL DEFAULT false,
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
        let at = crate::codec::commit_time(commit)
            .map_err(|error| ApplyError::Poison(error.to_string()))?;
        for event in &commit.commit.events {
            let fact =
                facts::decode(event).map_err(|error| ApplyError::Poison(error.to_string()))?;
            match fact {
                Some(Fact::GroupCreated(group)) => {
                    sqlx::query("INSERT INTO groups (network, group_id, clinic_id, time_zone, facilitators) VALUES ($1, $2, $3, $4, $5)")
                        .bind(network)
                        .bind(id)
                        .bind(&group.clinic_id)
                        .bind(&group.time_zone)
                        .bind(facts::staff_ids(&group.facilitators))
                        .execute(&mut *connection)
                        .await?;
                }
                Some(Fact::GroupFacilitatorsChanged(staff)) => {
                    sqlx::query(
                        "UPDATE groups SET facilitators = $3 WHERE network = $1 AND group_id = $2",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(staff)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::PeriodOpened { participant_id }) => {
                    sqlx::query(
                        "INSERT INTO member_periods (network, group_id, participant_id, from_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
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
                        "UPDATE member_periods SET to_at = $4 WHERE network = $1 AND group_id = $2 AND participant_id = $3 AND to_at IS NULL",
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
                        "INSERT INTO people (network, participant_id, given_name) VALUES ($1, $2, $3)
                         ON CONFLICT (network, participant_id) DO UPDATE SET given_name = EXCLUDED.given_name",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(profile.given_name)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::ConsentRecorded(consent))
                    if consent.kind == pb::ConsentKind::PeerVisibility as i32 =>
                {
                    let display = if consent.display == pb::PeerDisplay::Alias as i32 {
                        "alias"
                    } else {
                        "first-name"
                    };
                    sqlx::query(
                        "UPDATE people SET peer_consent_id = $3, display = $4, alias = $5, share_check_ins = $6, share_milestones = $7
                         WHERE network = $1 AND participant_id = $2",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(&consent.consent_id)
                    .bind(display)
                    .bind(&consent.alias)
                    .bind(consent.share_check_ins)
                    .bind(consent.share_milestones)
                    .execute(&mut *connection)
                    .await?;
                }
                Some(Fact::ConsentRevoked(revoked)) => {
                    sqlx::query(
                        "UPDATE people SET peer_consent_id = '', display = '', alias = '', share_check_ins = false, share_milestones = false
                         WHERE network = $1 AND participant_id = $2 AND peer_consent_id = $3",
                    )
                    .bind(network)
                    .bind(id)
                    .bind(&revoked.consent_id)
                    .execute(&mut *connection)
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
