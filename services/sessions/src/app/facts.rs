//! What the roster projection knows that a command checks before it runs: who was on
//! a group's roster, the other members' names (for the note check) and where a group
//! is. Best effort: the roster follows the enrollment log by a moment.

use circle_grpc::{ApiError, Caller};
use circle_names::{GroupName, SessionName};
use sqlx::PgPool;

use super::{Commands, database_error, tenant};
use crate::domain::Time;

/// Whether the caller is listed as a facilitator of the group (in the clinic its name
/// gives), as the roster knows it. A group the roster does not know has none: asking
/// about one tells nothing a group of others would not.
pub(super) async fn facilitates(
    pool: &PgPool,
    caller: &Caller,
    group: &GroupName,
) -> Result<bool, ApiError> {
    let listed: Option<bool> = sqlx::query_scalar(
        "SELECT $4 = ANY(facilitators) FROM sessions_roster.groups
         WHERE network = $1 AND group_id = $2 AND clinic_id = $3",
    )
    .bind(group.network.as_str())
    .bind(group.group.as_str())
    .bind(group.clinic.as_str())
    .bind(&caller.actor_id)
    .fetch_optional(&mut *super::tenant(pool, &group.network).await?)
    .await
    .map_err(database_error)?;
    Ok(listed.unwrap_or(false))
}

/// Where a group is, as the roster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupPlace {
    pub clinic_id: String,
    pub archived: bool,
}

impl Commands {
    /// Was the participant an active member of the group at `starts_at`?
    pub(super) async fn on_roster(
        &self,
        session: &SessionName,
        participant_id: &str,
        starts_at: Time,
    ) -> Result<bool, ApiError> {
        let mut tenant = tenant(&self.pool, &session.network).await?;
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM sessions_roster.member_periods
             WHERE network = $1 AND group_id = $2 AND participant_id = $3
               AND from_at <= $4 AND (to_at IS NULL OR to_at > $4) LIMIT 1",
        )
        .bind(session.network.as_str())
        .bind(session.group.as_str())
        .bind(participant_id)
        .bind(starts_at)
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        Ok(found.is_some())
    }

    /// Names and aliases of everyone else who has been a member of the group.
    pub(super) async fn other_member_names(
        &self,
        session: &SessionName,
        participant_id: &str,
    ) -> Result<Vec<String>, ApiError> {
        let mut tenant = tenant(&self.pool, &session.network).await?;
        let rows: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
            "SELECT n.given_name, n.family_name, n.preferred_name, n.aliases
             FROM sessions_roster.member_names n
             WHERE n.network = $1 AND n.participant_id <> $3 AND n.participant_id IN (
                SELECT participant_id FROM sessions_roster.member_periods WHERE network = $1 AND group_id = $2)",
        )
        .bind(session.network.as_str())
        .bind(session.group.as_str())
        .bind(participant_id)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        Ok(rows
            .into_iter()
            .flat_map(|(given, family, preferred, aliases)| {
                [given, family, preferred].into_iter().chain(aliases)
            })
            .filter(|name| !name.trim().is_empty())
            .collect())
    }

    /// The group's clinic and whether it is archived; `None` for a group the roster
    /// does not know.
    pub(super) async fn group_place(
        &self,
        group: &GroupName,
    ) -> Result<Option<GroupPlace>, ApiError> {
        let mut tenant = tenant(&self.pool, &group.network).await?;
        let known: Option<(String, bool)> = sqlx::query_as(
            "SELECT clinic_id, archived FROM sessions_roster.groups WHERE network = $1 AND group_id = $2",
        )
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        Ok(known.map(|(clinic_id, archived)| GroupPlace {
            clinic_id,
            archived,
        }))
    }
}
