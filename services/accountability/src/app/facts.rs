//! What the roster projection knows that a command checks before it runs (best
//! effort: the roster follows the enrollment log by a moment).

use circle_grpc::ApiError;

use super::{Queries, database_error};

impl Queries {
    /// How many of the given participants are active members of the group now.
    pub async fn active_members_among(
        &self,
        network: &str,
        group_id: &str,
        participants: [&str; 2],
    ) -> Result<i64, ApiError> {
        sqlx::query_scalar(
            "SELECT count(DISTINCT participant_id) FROM accountability_roster.member_periods
             WHERE network = $1 AND group_id = $2 AND participant_id IN ($3, $4) AND to_at IS NULL",
        )
        .bind(network)
        .bind(group_id)
        .bind(participants[0])
        .bind(participants[1])
        .fetch_one(&self.pool)
        .await
        .map_err(database_error)
    }
}
