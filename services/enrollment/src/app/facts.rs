//! What the read model knows that a command checks before it runs (best effort: the
//! read model may lag the log by a moment).

use circle_grpc::ApiError;
use sqlx::PgPool;

use super::database_error;

/// How many groups of the clinic are not archived.
pub(super) async fn open_groups_of_clinic(
    pool: &PgPool,
    network: &str,
    clinic_id: &str,
) -> Result<i64, ApiError> {
    let mut tenant = circle_service::tenant_transaction(pool, network)
        .await
        .map_err(database_error)?;
    sqlx::query_scalar(
        "SELECT count(*) FROM enrollment.groups WHERE network = $1 AND clinic_id = $2 AND NOT archived",
    )
    .bind(network)
    .bind(clinic_id)
    .fetch_one(&mut *tenant)
    .await
    .map_err(database_error)
}
