//! The enrollment read model in schema `enrollment`: projected from the ENROLLMENT
//! stream, queried by the gRPC queries. Personal data (names) sits in its own table so
//! the privacy work can encrypt or shred it without touching the rest.

use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, Projection};
use sqlx::PgConnection;

use crate::codec;
use crate::domain::{AdmissionMode, Event};

pub const SCHEMA: &str = "enrollment";
pub const PROJECTION_NAME: &str = "enrollment-read-model";

pub struct ReadModel;

impl Projection for ReadModel {
    fn name(&self) -> &str {
        PROJECTION_NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS clinics (
                network text NOT NULL,
                clinic_id text NOT NULL,
                display_name text NOT NULL,
                time_zone text NOT NULL,
                version bigint NOT NULL,
                PRIMARY KEY (network, clinic_id)
            )",
            "CREATE TABLE IF NOT EXISTS groups (
                network text NOT NULL,
                group_id text NOT NULL,
                clinic_id text NOT NULL,
                display_name text NOT NULL,
                modality text NOT NULL,
                level_of_care text NOT NULL,
                capacity integer NOT NULL,
                admission_mode text NOT NULL,
                active_count integer NOT NULL DEFAULT 0,
                waitlist_count integer NOT NULL DEFAULT 0,
                version bigint NOT NULL,
                PRIMARY KEY (network, group_id)
            )",
            "CREATE TABLE IF NOT EXISTS participants (
                network text NOT NULL,
                participant_id text NOT NULL,
                home_clinic_id text NOT NULL,
                version bigint NOT NULL,
                PRIMARY KEY (network, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS participant_profiles (
                network text NOT NULL,
                participant_id text NOT NULL,
                given_name text NOT NULL,
                family_name text NOT NULL,
                PRIMARY KEY (network, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS memberships (
                network text NOT NULL,
                group_id text NOT NULL,
                participant_id text NOT NULL,
                state text NOT NULL CHECK (state IN ('active', 'waitlisted')),
                arrival bigint NOT NULL,
                since timestamptz NOT NULL,
                PRIMARY KEY (network, group_id, participant_id)
            )",
            "CREATE INDEX IF NOT EXISTS memberships_by_state
                ON memberships (network, group_id, state, arrival)",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let events =
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?;
        let network = commit.commit.network.as_str();
        let aggregate_id = commit.commit.aggregate_id.as_str();
        let version = commit.sequence as i64;
        let committed_at = commit
            .commit
            .committed_at
            .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
            .ok_or_else(|| ApplyError::Poison("commit without a valid time".into()))?;
        for event in events {
            match event {
                Event::ClinicCreated {
                    display_name,
                    time_zone,
                } => {
                    sqlx::query(
                        "INSERT INTO clinics (network, clinic_id, display_name, time_zone, version)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(display_name)
                    .bind(time_zone)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::GroupCreated(details) => {
                    sqlx::query(
                        "INSERT INTO groups (network, group_id, clinic_id, display_name, modality,
                            level_of_care, capacity, admission_mode, version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(details.clinic_id)
                    .bind(details.display_name)
                    .bind(details.modality)
                    .bind(details.level_of_care)
                    .bind(details.capacity as i32)
                    .bind(match details.admission_mode {
                        AdmissionMode::Rolling => "rolling",
                        AdmissionMode::Closed => "closed",
                    })
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::ParticipantRegistered {
                    home_clinic_id,
                    profile,
                } => {
                    sqlx::query(
                        "INSERT INTO participants (network, participant_id, home_clinic_id, version)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(home_clinic_id)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                    sqlx::query(
                        "INSERT INTO participant_profiles (network, participant_id, given_name, family_name)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(profile.given_name)
                    .bind(profile.family_name)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::MemberAdmitted { participant_id } => {
                    let previous: Option<String> = sqlx::query_scalar(
                        "SELECT state FROM memberships
                         WHERE network = $1 AND group_id = $2 AND participant_id = $3",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(&participant_id)
                    .fetch_optional(&mut *connection)
                    .await?;
                    sqlx::query(
                        "INSERT INTO memberships (network, group_id, participant_id, state, arrival, since)
                         VALUES ($1, $2, $3, 'active', $4, $5)
                         ON CONFLICT (network, group_id, participant_id)
                         DO UPDATE SET state = 'active', since = EXCLUDED.since",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(&participant_id)
                    .bind(version)
                    .bind(committed_at)
                    .execute(&mut *connection)
                    .await?;
                    let from_waitlist = i32::from(previous.as_deref() == Some("waitlisted"));
                    sqlx::query(
                        "UPDATE groups SET active_count = active_count + 1,
                            waitlist_count = waitlist_count - $3, version = $4
                         WHERE network = $1 AND group_id = $2",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(from_waitlist)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
                Event::MemberWaitlisted { participant_id, .. } => {
                    sqlx::query(
                        "INSERT INTO memberships (network, group_id, participant_id, state, arrival, since)
                         VALUES ($1, $2, $3, 'waitlisted', $4, $5)",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(&participant_id)
                    .bind(version)
                    .bind(committed_at)
                    .execute(&mut *connection)
                    .await?;
                    sqlx::query(
                        "UPDATE groups SET waitlist_count = waitlist_count + 1, version = $3
                         WHERE network = $1 AND group_id = $2",
                    )
                    .bind(network)
                    .bind(aggregate_id)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
                }
            }
        }
        Ok(())
    }
}
