//! What the roster projection (schema `accountability_roster`) and the read model know
//! of how callers relate to participants and groups, which both the queries and the
//! commands ask before they run (best effort: the roster follows the enrollment log by
//! a moment).

use circle_grpc::{ApiError, Caller, Rule, Target};
use circle_names::ParticipantName;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::Code;

use super::access::{self, Operation};
use super::database_error;
use crate::domain::visibility::{Consent, Viewer};

type ApiResult<T> = Result<T, ApiError>;

/// Staff who do not reach a participant, or another participant.
pub(crate) fn not_your_record() -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        "NOT_YOUR_RECORD",
        "only the participant or their care team may do this",
    )
}

/// A group as the roster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupFacts {
    pub clinic_id: String,
    /// Staff ids of its facilitators.
    pub facilitators: Vec<String>,
}

impl GroupFacts {
    /// Whether the group lists `staff_id` among its facilitators.
    pub(crate) fn lists(&self, staff_id: &str) -> bool {
        self.facilitators.iter().any(|listed| listed == staff_id)
    }
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

    /// A transaction that sees only `network`'s rows (the tenant wall).
    async fn tenant(&self, network: &str) -> ApiResult<Transaction<'static, Postgres>> {
        super::tenant(&self.pool, network).await
    }

    /// A group as the roster knows it: its clinic and its facilitators.
    pub(crate) async fn group(
        &self,
        network: &str,
        group_id: &str,
    ) -> ApiResult<Option<GroupFacts>> {
        let found: Option<(String, Vec<String>)> = sqlx::query_as(
            "SELECT clinic_id, facilitators FROM accountability_roster.groups WHERE network = $1 AND group_id = $2",
        )
        .bind(network)
        .bind(group_id)
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        Ok(found.map(|(clinic_id, facilitators)| GroupFacts {
            clinic_id,
            facilitators,
        }))
    }

    /// Whether staff reach a participant's record under `rule` (a care-team row):
    /// through one of the groups the participant is active in, as the row's scope
    /// says — a facilitator held to their groups through one that lists them, other
    /// clinic-scoped roles through one in their clinics — or anywhere for a
    /// network-wide role. Someone in no group (or never registered) is reached by
    /// network-wide roles only, so the answer tells no one else whether they exist.
    pub(crate) async fn staff_reaches(
        &self,
        caller: &Caller,
        rule: Rule,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<bool> {
        let participant = [participant_id.to_owned()];
        Ok(self
            .staff_reaches_among(caller, rule, network, &participant)
            .await?
            .contains(participant_id))
    }

    /// [`Facts::staff_reaches`] for many participants at once, in one query whatever
    /// their number: the participants staff reach under `rule`, through the groups
    /// each is active in.
    pub(crate) async fn staff_reaches_among(
        &self,
        caller: &Caller,
        rule: Rule,
        network: &str,
        participants: &[String],
    ) -> ApiResult<std::collections::HashSet<String>> {
        if caller.is_participant() || !rule.allows(caller) {
            return Ok(Default::default());
        }
        let through = |participant_id: &str, clinic: Option<&str>, facilitates: bool| {
            let clinics: Vec<&str> = clinic.into_iter().collect();
            rule.check(
                caller,
                &Target {
                    clinics: &clinics,
                    participant: Some(participant_id),
                    caller_facilitates: facilitates,
                    ..Target::default()
                },
            )
            .is_ok()
        };
        let mut reached: std::collections::HashSet<String> = participants
            .iter()
            .filter(|participant| through(participant, None, false))
            .cloned()
            .collect();
        if reached.len() == participants.len() {
            return Ok(reached);
        }
        let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
            "SELECT DISTINCT p.participant_id, g.clinic_id, g.facilitators FROM accountability_roster.member_periods p
             JOIN accountability_roster.groups g ON g.network = p.network AND g.group_id = p.group_id
             WHERE p.network = $1 AND p.participant_id = ANY($2) AND p.to_at IS NULL",
        )
        .bind(network)
        .bind(participants)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        for (participant_id, clinic_id, facilitators) in rows {
            let group = GroupFacts {
                clinic_id,
                facilitators,
            };
            if through(
                &participant_id,
                Some(&group.clinic_id),
                group.lists(&caller.actor_id),
            ) {
                reached.insert(participant_id);
            }
        }
        Ok(reached)
    }

    /// How the caller relates to each of `participants`, as [`Queries::viewer`] decides
    /// it one by one, in a fixed number of queries whatever their number: the
    /// participant themselves, their peers (an active group shared now; partners where
    /// a partnership is active), staff who reach them under `rule`, or strangers.
    pub(crate) async fn viewers(
        &self,
        caller: &Caller,
        rule: Rule,
        network: &str,
        participants: &[String],
    ) -> ApiResult<std::collections::HashMap<String, Viewer>> {
        if !caller.is_participant() {
            let reached = self
                .staff_reaches_among(caller, rule, network, participants)
                .await?;
            return Ok(participants
                .iter()
                .map(|participant| {
                    let viewer = if reached.contains(participant) {
                        Viewer::Staff
                    } else {
                        Viewer::Stranger
                    };
                    (participant.clone(), viewer)
                })
                .collect());
        }
        let others: Vec<&String> = participants
            .iter()
            .filter(|participant| **participant != caller.actor_id)
            .collect();
        let peers: std::collections::HashSet<String> = if others.is_empty() {
            Default::default()
        } else {
            let shared: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT b.participant_id FROM accountability_roster.member_periods a
                 JOIN accountability_roster.member_periods b ON b.network = a.network AND b.group_id = a.group_id
                 WHERE a.network = $1 AND a.participant_id = $2 AND b.participant_id = ANY($3)
                   AND a.to_at IS NULL AND b.to_at IS NULL",
            )
            .bind(network)
            .bind(&caller.actor_id)
            .bind(&others)
            .fetch_all(&mut *self.tenant(network).await?)
            .await
            .map_err(database_error)?;
            shared.into_iter().collect()
        };
        let partners = if peers.is_empty() {
            Default::default()
        } else {
            self.partners_of(network, &caller.actor_id).await?
        };
        Ok(participants
            .iter()
            .map(|participant| {
                let viewer = if *participant == caller.actor_id {
                    Viewer::Author
                } else if peers.contains(participant) {
                    Viewer::Peer {
                        partner: partners.contains(participant),
                    }
                } else {
                    Viewer::Stranger
                };
                (participant.clone(), viewer)
            })
            .collect())
    }

    /// The participants `participant_id` is in an active partnership with.
    pub(crate) async fn partners_of(
        &self,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<std::collections::HashSet<String>> {
        let partners: Vec<String> = sqlx::query_scalar(
            "SELECT CASE WHEN proposer_id = $2 THEN invitee_id ELSE proposer_id END
             FROM accountability.partnerships
             WHERE network = $1 AND state = 'active' AND (proposer_id = $2 OR invitee_id = $2)",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        Ok(partners.into_iter().collect())
    }

    /// The participant themselves (`Author`), or staff who reach them under `rule`
    /// (`Staff`).
    pub(crate) async fn require_self_or_staff(
        &self,
        caller: &Caller,
        rule: Rule,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<Viewer> {
        if caller.is_participant() && caller.actor_id == participant_id {
            return Ok(Viewer::Author);
        }
        if self
            .staff_reaches(caller, rule, network, participant_id)
            .await?
        {
            return Ok(Viewer::Staff);
        }
        Err(not_your_record())
    }

    /// `operation`'s rule on a participant's record (the tenant, the role and the own
    /// record first, with nothing looked up), then, for staff, whether they reach the
    /// participant ([`Facts::staff_reaches`]): staff who do not, and a participant who
    /// does not exist, are both `NOT_YOUR_RECORD`.
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
            access::rule(operation),
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
        .fetch_optional(&mut *self.tenant(network).await?)
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
        .fetch_optional(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        Ok(Viewer::Peer {
            partner: partner.is_some(),
        })
    }

    /// The facilitators of the groups a participant is active in (each once, by
    /// group, lead first): whom a measure's safety concern alerts.
    pub(crate) async fn facilitators_of(
        &self,
        network: &str,
        participant_id: &str,
    ) -> ApiResult<Vec<String>> {
        let lists: Vec<Vec<String>> = sqlx::query_scalar(
            "SELECT g.facilitators FROM accountability_roster.member_periods p
             JOIN accountability_roster.groups g ON g.network = p.network AND g.group_id = p.group_id
             WHERE p.network = $1 AND p.participant_id = $2 AND p.to_at IS NULL
             ORDER BY g.group_id",
        )
        .bind(network)
        .bind(participant_id)
        .fetch_all(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)?;
        let mut facilitators: Vec<String> = Vec::new();
        for staff_id in lists.into_iter().flatten() {
            if !facilitators.contains(&staff_id) {
                facilitators.push(staff_id);
            }
        }
        Ok(facilitators)
    }

    /// The peer-visibility consent a participant has given.
    pub(crate) async fn consent(&self, network: &str, participant_id: &str) -> ApiResult<Consent> {
        let mut tenant = self.tenant(network).await?;
        crate::process::consent_of(&mut tenant, network, participant_id)
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
        .fetch_one(&mut *self.tenant(network).await?)
        .await
        .map_err(database_error)
    }
}
