//! Queries, answered from the projected tables in schema `enrollment`. A query that
//! carries a consistency token first waits for the projection to reach it.

use circle_grpc::{ApiError, Caller, Violations};
use circle_proto::enrollment::v1 as pb;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use tonic::Request;

use super::convert::{self, CLINIC, GROUP, MEMBERSHIP, NETWORK, PARTICIPANT, owned};
use super::{
    ApiResult, EnrollmentApi, STAFF, authorize, authorize_self_or_staff, caller, database_error,
    not_found,
};
use crate::codec;
use crate::domain::schedule::time_zone;
use crate::read_model::{facilitators_from_column, schedule_from_column, state};

const GROUP_COLUMNS: &str = "group_id, clinic_id, display_name, modality, level_of_care, capacity, admission_mode,
    time_zone, facilitators, schedule, active_count, on_hold_count, offer_count, waitlist_count, archived, version";

fn group_from_row(
    network: &str,
    row: &PgRow,
    now: crate::domain::Time,
) -> Result<pb::Group, sqlx::Error> {
    let group_id: String = row.try_get("group_id")?;
    let clinic_id: String = row.try_get("clinic_id")?;
    let zone: String = row.try_get("time_zone")?;
    let facilitators: Vec<u8> = row.try_get("facilitators")?;
    let schedule: Option<Vec<u8>> = row.try_get("schedule")?;
    let schedule = schedule_from_column(schedule.as_deref());
    let count = |column: &str| -> Result<u32, sqlx::Error> {
        Ok(row.try_get::<i32, _>(column)?.max(0) as u32)
    };
    Ok(pb::Group {
        name: convert::group_name(network, &clinic_id, &group_id),
        display_name: row.try_get("display_name")?,
        modality: row.try_get("modality")?,
        level_of_care: row.try_get("level_of_care")?,
        capacity: count("capacity")?,
        admission_mode: if row.try_get::<String, _>("admission_mode")? == "closed" {
            pb::AdmissionMode::Closed
        } else {
            pb::AdmissionMode::Rolling
        } as i32,
        active_member_count: count("active_count")?,
        waitlist_count: count("waitlist_count")?,
        etag: row.try_get::<i64, _>("version")?.to_string(),
        facilitators: convert::facilitators_to_api(&facilitators_from_column(&facilitators)),
        next_session_time: schedule
            .as_ref()
            .and_then(|schedule| schedule.next_session(time_zone(&zone), now))
            .map(codec::timestamp),
        schedule: schedule.as_ref().map(convert::schedule_to_api),
        time_zone: zone,
        on_hold_count: count("on_hold_count")?,
        open_offer_count: count("offer_count")?,
        archived: row.try_get("archived")?,
    })
}

fn membership_from_row(network: &str, row: &PgRow) -> Result<pb::Membership, sqlx::Error> {
    let group_id: String = row.try_get("group_id")?;
    let clinic_id: String = row.try_get("clinic_id")?;
    let participant_id: String = row.try_get("participant_id")?;
    let state: String = row.try_get("state")?;
    let since: crate::domain::Time = row.try_get("since")?;
    let offer_expires_at: Option<crate::domain::Time> = row.try_get("offer_expires_at")?;
    let end_reason: String = row.try_get("end_reason")?;
    let position: Option<i64> = row.try_get("waitlist_position").ok();
    Ok(pb::Membership {
        name: convert::membership_name(network, &clinic_id, &group_id, &participant_id),
        participant: convert::participant_name(network, &participant_id),
        state: convert::membership_state_from_text(&state) as i32,
        waitlist_position: if state == state::WAITLISTED {
            position.unwrap_or(0).max(0) as u32
        } else {
            0
        },
        since: Some(codec::timestamp(since)),
        offer_expire_time: offer_expires_at.map(codec::timestamp),
        end_reason: convert::end_reason_from_text(&end_reason) as i32,
        history: Vec::new(),
    })
}

const MEMBERSHIP_COLUMNS: &str =
    "group_id, clinic_id, participant_id, state, since, offer_expires_at, end_reason";

impl EnrollmentApi {
    pub(super) async fn get_clinic(
        &self,
        request: Request<pb::GetClinicRequest>,
    ) -> ApiResult<pb::GetClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, CLINIC)?;
        authorize(&caller, STAFF, &[])?;
        let ids = violations.finish(ids)?;
        self.consistent_read(&request.consistency_token).await?;
        let row: Option<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT display_name, time_zone, archived, version FROM enrollment.clinics WHERE network = $1 AND clinic_id = $2",
        )
        .bind(&ids[0])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let (display_name, time_zone, archived, version) =
            row.ok_or_else(|| not_found("CLINIC_NOT_FOUND", &request.name))?;
        Ok(pb::GetClinicResponse {
            clinic: Some(pb::Clinic {
                name: request.name,
                display_name,
                time_zone,
                archived,
                etag: version.to_string(),
            }),
        })
    }

    pub(super) async fn list_clinics(
        &self,
        request: Request<pb::ListClinicsRequest>,
    ) -> ApiResult<pb::ListClinicsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "parent", &request.parent, NETWORK)?;
        authorize(&caller, STAFF, &[])?;
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        let ids = violations.finish(ids)?;
        self.consistent_read(&request.consistency_token).await?;
        let rows: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
            "SELECT clinic_id, display_name, time_zone, archived, version FROM enrollment.clinics
             WHERE network = $1 AND ($2 OR NOT archived) ORDER BY clinic_id LIMIT $3 OFFSET $4",
        )
        .bind(&ids[0])
        .bind(request.include_archived)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let next_page_token = circle_grpc::next_page_token(offset, size, rows.len());
        Ok(pb::ListClinicsResponse {
            clinics: rows
                .into_iter()
                .map(
                    |(clinic_id, display_name, time_zone, archived, version)| pb::Clinic {
                        name: convert::clinic_name(&ids[0], &clinic_id),
                        display_name,
                        time_zone,
                        archived,
                        etag: version.to_string(),
                    },
                )
                .collect(),
            next_page_token,
        })
    }

    /// Parses and authorizes a group name, then finds the group's row.
    async fn group_row(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
        token: &str,
    ) -> ApiResult<(Vec<String>, PgRow)> {
        let mut violations = Violations::default();
        let ids = owned(caller, &mut violations, field, name, GROUP)?;
        let scope: Vec<&str> = ids.iter().map(|ids| ids[1].as_str()).collect();
        authorize(caller, STAFF, &scope)?;
        let ids = violations.finish(ids)?;
        self.consistent_read(token).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups WHERE network = $1 AND group_id = $2 AND clinic_id = $3"
        )))
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let row = row.ok_or_else(|| not_found("GROUP_NOT_FOUND", name))?;
        Ok((ids, row))
    }

    pub(super) async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> ApiResult<pb::GetGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (ids, row) = self
            .group_row(&caller, "name", &request.name, &request.consistency_token)
            .await?;
        let group =
            group_from_row(&ids[0], &row, self.commands.clock.now()).map_err(database_error)?;
        Ok(pb::GetGroupResponse { group: Some(group) })
    }

    pub(super) async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> ApiResult<pb::ListGroupsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let (network, clinic) = match circle_grpc::parse_name(&request.parent, NETWORK) {
            Ok(ids) => (Some(ids[0].clone()), None),
            Err(_) => match owned(&caller, &mut violations, "parent", &request.parent, CLINIC)? {
                Some(ids) => (Some(ids[0].clone()), Some(ids[1].clone())),
                None => (None, None),
            },
        };
        if let Some(network) = &network {
            caller.require_network(network, &request.parent)?;
        }
        let scope: Vec<&str> = clinic.iter().map(String::as_str).collect();
        authorize(&caller, STAFF, &scope)?;
        if !request.modality.is_empty() {
            violations.check("modality", convert::slug(&request.modality));
        }
        if !request.level_of_care.is_empty() {
            violations.check("level_of_care", convert::slug(&request.level_of_care));
        }
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        let network = violations.finish(network)?;
        self.consistent_read(&request.consistency_token).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups
             WHERE network = $1 AND ($2 = '' OR clinic_id = $2) AND ($3 = '' OR modality = $3)
               AND ($4 = '' OR level_of_care = $4) AND ($5 OR NOT archived)
             ORDER BY clinic_id, group_id LIMIT $6 OFFSET $7"
        )))
        .bind(&network)
        .bind(clinic.unwrap_or_default())
        .bind(&request.modality)
        .bind(&request.level_of_care)
        .bind(request.include_archived)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let now = self.commands.clock.now();
        let groups = rows
            .iter()
            .map(|row| group_from_row(&network, row, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(database_error)?;
        Ok(pb::ListGroupsResponse {
            next_page_token: circle_grpc::next_page_token(offset, size, groups.len()),
            groups,
        })
    }

    pub(super) async fn get_participant(
        &self,
        request: Request<pb::GetParticipantRequest>,
    ) -> ApiResult<pb::GetParticipantResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, PARTICIPANT)?;
        let ids = violations.finish(ids)?;
        if caller.role == circle_grpc::Role::Participant {
            authorize_self_or_staff(&caller, &ids[1], &[])?;
        } else {
            authorize(&caller, STAFF, &[])?;
        }
        self.consistent_read(&request.consistency_token).await?;
        let row = sqlx::query(
            "SELECT p.home_clinic_id, p.version, f.given_name, f.family_name, f.preferred_name, f.email, f.phone
             FROM enrollment.participants p JOIN enrollment.participant_profiles f USING (network, participant_id)
             WHERE p.network = $1 AND p.participant_id = $2",
        )
        .bind(&ids[0])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .ok_or_else(|| not_found("PARTICIPANT_NOT_FOUND", &request.name))?;
        let home_clinic_id: String = row.try_get("home_clinic_id").map_err(database_error)?;
        // Clinic-scoped staff see the participants of their clinics.
        if caller.role != circle_grpc::Role::Participant {
            authorize(&caller, STAFF, &[home_clinic_id.as_str()])?;
        }
        let text = |column: &str| row.try_get::<String, _>(column).map_err(database_error);
        let consents = sqlx::query(
            "SELECT consent_id, kind, recipient, purpose, display, alias, share_check_ins, share_milestones,
                    recorded_at, revoked_at
             FROM enrollment.consents WHERE network = $1 AND participant_id = $2 ORDER BY recorded_version, consent_id",
        )
        .bind(&ids[0])
        .bind(&ids[1])
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?
        .iter()
        .map(|consent| consent_from_row(&ids[0], &ids[1], consent))
        .collect::<Result<Vec<_>, _>>()
        .map_err(database_error)?;
        Ok(pb::GetParticipantResponse {
            participant: Some(pb::Participant {
                name: request.name.clone(),
                home_clinic: convert::clinic_name(&ids[0], &home_clinic_id),
                profile: Some(pb::ParticipantProfile {
                    given_name: text("given_name")?,
                    family_name: text("family_name")?,
                    preferred_name: text("preferred_name")?,
                    email: text("email")?,
                    phone: text("phone")?,
                }),
                etag: row
                    .try_get::<i64, _>("version")
                    .map_err(database_error)?
                    .to_string(),
                consents,
            }),
        })
    }

    pub(super) async fn get_membership(
        &self,
        request: Request<pb::GetMembershipRequest>,
    ) -> ApiResult<pb::GetMembershipResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "name", &request.name, MEMBERSHIP)?;
        if let Some(ids) = &ids {
            authorize_self_or_staff(&caller, &ids[3], &[ids[1].as_str()])?;
        }
        let ids = violations.finish(ids)?;
        self.consistent_read(&request.consistency_token).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBERSHIP_COLUMNS}, (SELECT count(*) FROM enrollment.memberships w
                WHERE w.network = m.network AND w.group_id = m.group_id AND w.state = 'waitlisted'
                  AND w.arrival <= m.arrival) AS waitlist_position
             FROM enrollment.memberships m
             WHERE network = $1 AND group_id = $2 AND participant_id = $3 AND clinic_id = $4"
        )))
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(&ids[3])
        .bind(&ids[1])
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .ok_or_else(|| not_found("MEMBERSHIP_NOT_FOUND", &request.name))?;
        let mut membership = membership_from_row(&ids[0], &row).map_err(database_error)?;
        let history: Vec<(String, String, crate::domain::Time, i64, String)> = sqlx::query_as(
            "SELECT kind, state_after, at, version, detail FROM enrollment.membership_history
             WHERE network = $1 AND group_id = $2 AND participant_id = $3 ORDER BY version, position",
        )
        .bind(&ids[0])
        .bind(&ids[2])
        .bind(&ids[3])
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        membership.history = history
            .into_iter()
            .map(
                |(kind, state_after, at, version, detail)| pb::MembershipEvent {
                    kind,
                    state_after: convert::membership_state_from_text(&state_after) as i32,
                    time: Some(codec::timestamp(at)),
                    version: version.max(0) as u64,
                    detail,
                },
            )
            .collect();
        Ok(pb::GetMembershipResponse {
            membership: Some(membership),
        })
    }

    async fn group_memberships(
        &self,
        network: &str,
        group_id: &str,
        states: &[&str],
        page_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<pb::Membership>, String)> {
        let mut violations = Violations::default();
        let (size, offset) = violations.page(page_size, page_token);
        violations.into_result()?;
        let states: Vec<String> = states.iter().map(|state| (*state).to_owned()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBERSHIP_COLUMNS},
                    row_number() OVER (PARTITION BY state ORDER BY arrival, participant_id) AS waitlist_position
             FROM enrollment.memberships
             WHERE network = $1 AND group_id = $2 AND state = ANY($3)
             ORDER BY (state = 'waitlisted'), arrival, participant_id LIMIT $4 OFFSET $5"
        )))
        .bind(network)
        .bind(group_id)
        .bind(&states)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let memberships = rows
            .iter()
            .map(|row| membership_from_row(network, row))
            .collect::<Result<Vec<_>, _>>()
            .map_err(database_error)?;
        Ok((
            memberships,
            circle_grpc::next_page_token(offset, size, rows.len()),
        ))
    }

    pub(super) async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> ApiResult<pb::ListGroupMembersResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (ids, _) = self
            .group_row(
                &caller,
                "parent",
                &request.parent,
                &request.consistency_token,
            )
            .await?;
        let (memberships, next_page_token) = self
            .group_memberships(
                &ids[0],
                &ids[2],
                &[state::ACTIVE, state::ON_HOLD],
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(pb::ListGroupMembersResponse {
            memberships,
            next_page_token,
        })
    }

    pub(super) async fn list_waitlist(
        &self,
        request: Request<pb::ListWaitlistRequest>,
    ) -> ApiResult<pb::ListWaitlistResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (ids, _) = self
            .group_row(
                &caller,
                "parent",
                &request.parent,
                &request.consistency_token,
            )
            .await?;
        let (memberships, next_page_token) = self
            .group_memberships(
                &ids[0],
                &ids[2],
                &[state::OFFERED, state::WAITLISTED],
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(pb::ListWaitlistResponse {
            memberships,
            next_page_token,
        })
    }

    pub(super) async fn list_participant_memberships(
        &self,
        request: Request<pb::ListParticipantMembershipsRequest>,
    ) -> ApiResult<pb::ListParticipantMembershipsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(
            &caller,
            &mut violations,
            "parent",
            &request.parent,
            PARTICIPANT,
        )?;
        if let Some(ids) = &ids {
            authorize_self_or_staff(&caller, &ids[1], &[])?;
        }
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        let ids = violations.finish(ids)?;
        self.consistent_read(&request.consistency_token).await?;
        // Clinic-scoped staff see only the memberships in their clinics.
        let scoped = circle_grpc::is_clinic_scoped(caller.role);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBERSHIP_COLUMNS}, (SELECT count(*) FROM enrollment.memberships w
                WHERE w.network = m.network AND w.group_id = m.group_id AND w.state = 'waitlisted'
                  AND w.arrival <= m.arrival) AS waitlist_position
             FROM enrollment.memberships m
             WHERE network = $1 AND participant_id = $2 AND (NOT $3 OR clinic_id = ANY($4))
             ORDER BY since DESC, group_id LIMIT $5 OFFSET $6"
        )))
        .bind(&ids[0])
        .bind(&ids[1])
        .bind(scoped)
        .bind(&caller.clinics)
        .bind(size)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let memberships = rows
            .iter()
            .map(|row| membership_from_row(&ids[0], row))
            .collect::<Result<Vec<_>, _>>()
            .map_err(database_error)?;
        Ok(pb::ListParticipantMembershipsResponse {
            next_page_token: circle_grpc::next_page_token(offset, size, rows.len()),
            memberships,
        })
    }

    /// Groups with a free seat across the network, soonest next session first. The
    /// weekday and time window are checked against the local schedule; the next
    /// session is computed in each group's time zone.
    pub(super) async fn search_open_seats(
        &self,
        request: Request<pb::SearchOpenSeatsRequest>,
    ) -> ApiResult<pb::SearchOpenSeatsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ids = owned(&caller, &mut violations, "parent", &request.parent, NETWORK)?;
        authorize(&caller, STAFF, &[])?;
        let clinic = if request.clinic.is_empty() {
            None
        } else {
            owned(&caller, &mut violations, "clinic", &request.clinic, CLINIC)?
                .map(|ids| ids[1].clone())
        };
        if !request.modality.is_empty() {
            violations.check("modality", convert::slug(&request.modality));
        }
        if !request.level_of_care.is_empty() {
            violations.check("level_of_care", convert::slug(&request.level_of_care));
        }
        if request.weekdays.len() > convert::MAX_WEEKDAYS {
            violations.add(
                "weekdays",
                format!("at most {} weekdays", convert::MAX_WEEKDAYS),
            );
        }
        let weekdays: Vec<i32> = request
            .weekdays
            .iter()
            .take(convert::MAX_WEEKDAYS)
            .filter_map(|day| {
                violations
                    .check("weekdays", convert::iso_weekday(*day))
                    .map(|day| day as i32)
            })
            .collect();
        let earliest = if request.earliest_start_time.is_empty() {
            Some(0)
        } else {
            violations.check(
                "earliest_start_time",
                convert::local_time(&request.earliest_start_time),
            )
        };
        let latest = if request.latest_start_time.is_empty() {
            Some(24 * 60 - 1)
        } else {
            violations.check(
                "latest_start_time",
                convert::local_time(&request.latest_start_time),
            )
        };
        if let (Some(earliest), Some(latest)) = (earliest, latest)
            && earliest > latest
        {
            violations.add(
                "latest_start_time",
                "must not be before earliest_start_time",
            );
        }
        let (size, offset) = violations.page(request.page_size, &request.page_token);
        violations.into_result()?;
        let (Some(ids), Some(earliest), Some(latest)) = (ids, earliest, latest) else {
            return Err(ApiError::internal());
        };
        self.consistent_read(&request.consistency_token).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups
             WHERE network = $1 AND NOT archived
               AND capacity > active_count + on_hold_count + offer_count AND waitlist_count = 0
               AND ($2 = '' OR clinic_id = $2) AND ($3 = '' OR modality = $3) AND ($4 = '' OR level_of_care = $4)
               AND schedule IS NOT NULL AND start_minute BETWEEN $5 AND $6
               AND (cardinality($7::integer[]) = 0 OR schedule_days && $7)"
        )))
        .bind(&ids[0])
        .bind(clinic.unwrap_or_default())
        .bind(&request.modality)
        .bind(&request.level_of_care)
        .bind(earliest as i32)
        .bind(latest as i32)
        .bind(&weekdays)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let now = self.commands.clock.now();
        let mut open = Vec::new();
        for row in &rows {
            let group = group_from_row(&ids[0], row, now).map_err(database_error)?;
            // Closed groups that have started take no one without an override.
            let started_closed = group.admission_mode == pb::AdmissionMode::Closed as i32
                && schedule_from_column(
                    row.try_get::<Option<Vec<u8>>, _>("schedule")
                        .map_err(database_error)?
                        .as_deref(),
                )
                .and_then(|schedule| schedule.first_session(time_zone(&group.time_zone)))
                .is_some_and(|first| first <= now);
            let Some(next) = group.next_session_time else {
                continue;
            };
            if started_closed {
                continue;
            }
            let free = group.capacity.saturating_sub(
                group.active_member_count + group.on_hold_count + group.open_offer_count,
            );
            open.push((
                next.seconds,
                group.name.clone(),
                pb::OpenSeat {
                    free_seats: free,
                    next_session_time: Some(next),
                    group: Some(group),
                },
            ));
        }
        open.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let total = open.len();
        let open_seats: Vec<pb::OpenSeat> = open
            .into_iter()
            .skip(offset as usize)
            .take(size as usize)
            .map(|(_, _, seat)| seat)
            .collect();
        let next_page_token = if (offset as usize) + open_seats.len() < total {
            circle_grpc::next_page_token(offset, size, open_seats.len())
        } else {
            String::new()
        };
        Ok(pb::SearchOpenSeatsResponse {
            open_seats,
            next_page_token,
        })
    }
}

fn consent_from_row(
    network: &str,
    participant_id: &str,
    row: &PgRow,
) -> Result<pb::Consent, sqlx::Error> {
    let consent_id: String = row.try_get("consent_id")?;
    let kind: String = row.try_get("kind")?;
    let display: String = row.try_get("display")?;
    let recorded_at: crate::domain::Time = row.try_get("recorded_at")?;
    let revoked_at: Option<crate::domain::Time> = row.try_get("revoked_at")?;
    Ok(pb::Consent {
        name: convert::consent_name(network, participant_id, &consent_id),
        kind: if kind == "peer-visibility" {
            pb::ConsentKind::PeerVisibility
        } else {
            pb::ConsentKind::TreatmentDisclosure
        } as i32,
        recipient: row.try_get("recipient")?,
        purpose: row.try_get("purpose")?,
        display: match display.as_str() {
            "alias" => pb::PeerDisplay::Alias,
            "first-name" => pb::PeerDisplay::FirstName,
            _ => pb::PeerDisplay::Unspecified,
        } as i32,
        alias: row.try_get("alias")?,
        share_check_ins: row.try_get("share_check_ins")?,
        share_milestones: row.try_get("share_milestones")?,
        record_time: Some(codec::timestamp(recorded_at)),
        revoke_time: revoked_at.map(codec::timestamp),
    })
}
