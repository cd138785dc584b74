//! What the roster projection (schema `accountability_roster`) and the read model know
//! of how callers relate to participants and groups, which both the queries and the
//! commands ask before they run (best effort: the roster follows the enrollment log by
//! a moment).

use circle_grpc::{ApiError, Caller, Target};
use circle_names::ParticipantName;
use sqlx::PgPool;
use tonic::Code;

use super::access::{self, Operation};
use super::database_error;
use crate::domain::visibility::{Consent, Viewer};

type ApiResult<T> = Result<T, ApiError>;

/// Staff who do not reach a participant, or another participant.
fn not_your_record() -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        "NOT_YOUR_RECORD",
        "only the participant or their care team may do this",
    )
}

/// The roster facts, read from the service's database.
#[derive(Clone)]
pub(crate) struct Facts {
    pool: PgPool,
}

impl Facts {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The clinic a group belongs to, as the roster knows it.
    pub(crate) async fn group_clinic(
        &self,
        network: &str,
        group_id: &str,
    ) -> ApiResult<Option<String>> {
        sqlx::query_scalar("SELECT clinic_id FROM accountability_roster.groups WHERE network = $1 AND group_id = $2")
            .bind(network)
            .bind(group_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database_error)
    }

    /// The clinics of the groups a participant is active in.
    async fn clinics_of(&self, network: &str, participant_id: &str) -> ApiResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT g.clinic_id FROM accountability_roster.member_periods p
             JOIN accountability_roster.groups g ON g.network = p.network AND g.group_id = p.group_id
             WHERE p.network = $1 AND p.participant_id = $2 AND p.to_at IS NULL",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)
    }

    /// Staff may reach a participant when their role does: clinic-scoped roles need a
    /// clinic of one of the participant's groups.
    pub(crate) async fn staff_reaches(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<bool> {
        if !caller
            .roles
            .iter()
            .any(|role| circle_grpc::roles::STAFF.contains(role))
        {
            return Ok(false);
        }
        if !caller.is_clinic_scoped() {
            return Ok(true);
        }
        let clinics = self.clinics_of(network, participant_id).await?;
        Ok(clinics.iter().any(|clinic| caller.clinics.contains(clinic)))
    }

    /// The participant themselves (`Author`), or staff who reach them (`Staff`).
    pub(crate) async fn require_self_or_staff(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<Viewer> {
        if caller.is_participant() && caller.actor_id == participant_id {
            return Ok(Viewer::Author);
        }
        if self.staff_reaches(caller, network, participant_id).await? {
            return Ok(Viewer::Staff);
        }
        Err(not_your_record())
    }

    /// `operation`'s rule on a participant's record (role and own record first, with
    /// nothing looked up), then, for clinic-scoped staff, whether they reach the
    /// participant through a clinic of one of their groups.
    pub(crate) async fn authorize_record(
        &self,
        caller: &Caller,
        operation: Operation,
        participant: &ParticipantName,
    ) -> ApiResult<Viewer> {
        access::permit_unplaced(
            caller,
            operation,
            participant.network.as_str(),
            &Target {
                participant: Some(participant.participant.as_str()),
                ..Target::default()
            },
        )?;
        self.require_self_or_staff(
            caller,
            participant.network.as_str(),
            participant.participant.as_str(),
        )
        .await
    }

    /// Peers share an active group; partners also an active partnership.
    pub(crate) async fn peer_relation(
        &self,
        network: &str,
        viewer_id: &str,
        author_id: &str,
    ) -> ApiResult<Viewer> {
        let shared: Option<String> = sqlx::query_scalar(
            "SELECT a.group_id FROM accountability_roster.member_periods a
             JOIN accountability_roster.member_periods b ON b.network = a.network AND b.group_id = a.group_id
             WHERE a.network = $1 AND a.participant_id = $2 AND b.participant_id = $3 AND a.to_at IS NULL AND b.to_at IS NULL
             LIMIT 1",
        )
        .bind(network)
        .bind(viewer_id)
        .bind(author_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        if shared.is_none() {
            return Ok(Viewer::Stranger);
        }
        let partner: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM accountability.partnerships
             WHERE network = $1 AND state = 'active'
               AND ((proposer_id = $2 AND invitee_id = $3) OR (proposer_id = $3 AND invitee_id = $2)) LIMIT 1",
        )
        .bind(network)
        .bind(viewer_id)
        .bind(author_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(Viewer::Peer {
            partner: partner.is_some(),
        })
    }

    /// The peer-visibility consent a participant has given.
    pub(crate) async fn consent(&self, network: &str, participant_id: &str) -> ApiResult<Consent> {
        let mut connection = self.pool.acquire().await.map_err(database_error)?;
        crate::process::consent_of(&mut connection, network, participant_id)
            .await
            .map_err(database_error)
    }

    /// How many of the given participants are active members of the group now.
    pub(crate) async fn active_members_among(
        &self,
        network: &str,
        group_id: &str,
        participants: [&str; 2],
    ) -> ApiResult<i64> {
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
