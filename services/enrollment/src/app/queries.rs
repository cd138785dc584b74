//! The queries of the enrollment service, one per query RPC, answered from the
//! projected tables in schema `enrollment`. Each checks its row of the access table
//! before anything is looked up, then waits for the client's consistency token, then
//! reads. Answers are views (plain structs, `views`); the edge maps them to protobuf.
//! The read model holds personal text sealed: a view with personal fields is opened
//! just before it is answered (`[redacted]` for a forgotten participant).

use circle_audit::Purpose;
use circle_grpc::{ApiError, Caller, Target};
use circle_names::{ClinicName, GroupName, Id, MembershipName, NetworkName, ParticipantName};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::access::{Operation, permit, permit_unplaced};
use super::views::{
    ClinicView, ConsentView, GroupView, MembershipEventView, MembershipView, ParticipantView,
};
use super::{Page, Queries, database_error, not_found};
use crate::domain::schedule::time_zone;
use crate::domain::{AdmissionMode, ConsentKind, PeerDisplay, Profile, Time};
use crate::read_model::{facilitators_from_column, schedule_from_column, state};
use circle_service::errors::key_store_error;

/// Where to list groups: the whole network, or one clinic.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupsIn {
    Network(NetworkName),
    Clinic(ClinicName),
}

/// Which groups `list_groups` answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupsWanted {
    pub parent: GroupsIn,
    pub modality: Option<Id>,
    pub level_of_care: Option<Id>,
    pub include_archived: bool,
}

/// What a search for open seats looks for. Times are minutes after local midnight;
/// weekdays are ISO (1 = Monday).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSeatSearch {
    pub network: NetworkName,
    pub clinic: Option<ClinicName>,
    pub modality: Option<Id>,
    pub level_of_care: Option<Id>,
    pub weekdays: Vec<u32>,
    pub earliest_start_minute: u32,
    pub latest_start_minute: u32,
}

/// A group with a free seat.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSeat {
    pub group: GroupView,
    pub free_seats: u32,
    pub next_session: Time,
}

/// A page of open seats, and whether more follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSeats {
    pub seats: Vec<OpenSeat>,
    pub more: bool,
}

const GROUP_COLUMNS: &str = "group_id, clinic_id, display_name, modality, level_of_care, capacity, admission_mode,
    time_zone, facilitators, schedule, active_count, on_hold_count, offer_count, waitlist_count, archived, version";

const MEMBERSHIP_COLUMNS: &str =
    "group_id, clinic_id, participant_id, state, since, offer_expires_at, end_reason";

/// Memberships matching `condition` (on `m`), each with its place on its group's
/// waitlist (as of arrival; meaningful only for the waitlisted).
fn memberships_with_position(condition: &str) -> String {
    format!(
        "SELECT {MEMBERSHIP_COLUMNS}, (SELECT count(*) FROM enrollment.memberships w
            WHERE w.network = m.network AND w.group_id = m.group_id AND w.state = 'waitlisted'
              AND w.arrival <= m.arrival) AS waitlist_position
         FROM enrollment.memberships m
         WHERE {condition}"
    )
}

fn clinics<'a>(clinic: &'a [&'a str]) -> Target<'a> {
    Target {
        clinics: clinic,
        ..Target::default()
    }
}

/// An id the read model stored; every id was checked before it was written, so one
/// that does not parse is a bug.
fn stored_id(value: &str) -> Result<Id, ApiError> {
    Id::parse(value).map_err(|_| {
        tracing::error!("the read model holds an invalid id");
        ApiError::internal()
    })
}

fn version(value: i64) -> u64 {
    value.max(0) as u64
}

fn count(row: &PgRow, column: &str) -> Result<u32, ApiError> {
    Ok(row
        .try_get::<i32, _>(column)
        .map_err(database_error)?
        .max(0) as u32)
}

fn text(row: &PgRow, column: &str) -> Result<String, ApiError> {
    row.try_get::<String, _>(column).map_err(database_error)
}

fn group_from_row(network: &Id, row: &PgRow, now: Time) -> Result<GroupView, ApiError> {
    let zone = text(row, "time_zone")?;
    let facilitators: Vec<u8> = row.try_get("facilitators").map_err(database_error)?;
    let schedule: Option<Vec<u8>> = row.try_get("schedule").map_err(database_error)?;
    let schedule = schedule_from_column(schedule.as_deref());
    Ok(GroupView {
        name: GroupName {
            network: network.clone(),
            clinic: stored_id(&text(row, "clinic_id")?)?,
            group: stored_id(&text(row, "group_id")?)?,
        },
        display_name: text(row, "display_name")?,
        modality: text(row, "modality")?,
        level_of_care: text(row, "level_of_care")?,
        capacity: count(row, "capacity")?,
        admission_mode: if text(row, "admission_mode")? == "closed" {
            AdmissionMode::Closed
        } else {
            AdmissionMode::Rolling
        },
        next_session: schedule
            .as_ref()
            .and_then(|schedule| schedule.next_session(time_zone(&zone), now)),
        facilitators: facilitators_from_column(&facilitators),
        schedule,
        time_zone: zone,
        active_count: count(row, "active_count")?,
        on_hold_count: count(row, "on_hold_count")?,
        offer_count: count(row, "offer_count")?,
        waitlist_count: count(row, "waitlist_count")?,
        archived: row.try_get("archived").map_err(database_error)?,
        version: version(row.try_get("version").map_err(database_error)?),
    })
}

fn membership_from_row(network: &Id, row: &PgRow) -> Result<MembershipView, ApiError> {
    let participant = stored_id(&text(row, "participant_id")?)?;
    let state = text(row, "state")?;
    let position: Option<i64> = row.try_get("waitlist_position").ok();
    Ok(MembershipView {
        name: MembershipName {
            network: network.clone(),
            clinic: stored_id(&text(row, "clinic_id")?)?,
            group: stored_id(&text(row, "group_id")?)?,
            membership: participant.clone(),
        },
        participant: ParticipantName {
            network: network.clone(),
            participant,
        },
        waitlist_position: if state == state::WAITLISTED {
            position.unwrap_or(0).max(0) as u32
        } else {
            0
        },
        state,
        since: row.try_get("since").map_err(database_error)?,
        offer_expires_at: row.try_get("offer_expires_at").map_err(database_error)?,
        end_reason: text(row, "end_reason")?,
        history: Vec::new(),
    })
}

fn consent_from_row(participant: &ParticipantName, row: &PgRow) -> Result<ConsentView, ApiError> {
    Ok(ConsentView {
        name: participant.consent(stored_id(&text(row, "consent_id")?)?),
        kind: if text(row, "kind")? == "peer-visibility" {
            ConsentKind::PeerVisibility
        } else {
            ConsentKind::TreatmentDisclosure
        },
        recipient: text(row, "recipient")?,
        purpose: text(row, "purpose")?,
        display: match text(row, "display")?.as_str() {
            "alias" => Some(PeerDisplay::Alias),
            "first-name" => Some(PeerDisplay::FirstName),
            _ => None,
        },
        alias: text(row, "alias")?,
        share_check_ins: row.try_get("share_check_ins").map_err(database_error)?,
        share_milestones: row.try_get("share_milestones").map_err(database_error)?,
        recorded_at: row.try_get("recorded_at").map_err(database_error)?,
        revoked_at: row.try_get("revoked_at").map_err(database_error)?,
    })
}

impl Queries {
    pub async fn get_clinic(
        &self,
        caller: &Caller,
        name: &ClinicName,
        consistency_token: &str,
    ) -> Result<ClinicView, ApiError> {
        permit(
            caller,
            Operation::GetClinic,
            &name.network,
            clinics(&[name.clinic.as_str()]),
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&name.network).await?;
        let row: Option<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT display_name, time_zone, archived, version FROM enrollment.clinics WHERE network = $1 AND clinic_id = $2",
        )
        .bind(name.network.as_str())
        .bind(name.clinic.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        let (display_name, time_zone, archived, clinic_version) =
            row.ok_or_else(|| not_found("CLINIC_NOT_FOUND", &name.to_string()))?;
        Ok(ClinicView {
            name: name.clone(),
            display_name,
            time_zone,
            archived,
            version: version(clinic_version),
        })
    }

    pub async fn list_clinics(
        &self,
        caller: &Caller,
        network: &NetworkName,
        include_archived: bool,
        page: Page,
        consistency_token: &str,
    ) -> Result<Vec<ClinicView>, ApiError> {
        permit(
            caller,
            Operation::ListClinics,
            &network.network,
            Target::default(),
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&network.network).await?;
        let rows: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
            "SELECT clinic_id, display_name, time_zone, archived, version FROM enrollment.clinics
             WHERE network = $1 AND ($2 OR NOT archived) ORDER BY clinic_id LIMIT $3 OFFSET $4",
        )
        .bind(network.network.as_str())
        .bind(include_archived)
        .bind(page.size)
        .bind(page.offset)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        rows.into_iter()
            .map(
                |(clinic_id, display_name, time_zone, archived, clinic_version)| {
                    Ok(ClinicView {
                        name: ClinicName {
                            network: network.network.clone(),
                            clinic: stored_id(&clinic_id)?,
                        },
                        display_name,
                        time_zone,
                        archived,
                        version: version(clinic_version),
                    })
                },
            )
            .collect()
    }

    /// The group's row, once the caller may run `operation` on it.
    async fn group(
        &self,
        caller: &Caller,
        operation: Operation,
        name: &GroupName,
        consistency_token: &str,
    ) -> Result<GroupView, ApiError> {
        permit(
            caller,
            operation,
            &name.network,
            clinics(&[name.clinic.as_str()]),
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&name.network).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups WHERE network = $1 AND group_id = $2 AND clinic_id = $3"
        )))
        .bind(name.network.as_str())
        .bind(name.group.as_str())
        .bind(name.clinic.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?
        .ok_or_else(|| not_found("GROUP_NOT_FOUND", &name.to_string()))?;
        group_from_row(&name.network, &row, self.clock.now())
    }

    pub async fn get_group(
        &self,
        caller: &Caller,
        name: &GroupName,
        consistency_token: &str,
    ) -> Result<GroupView, ApiError> {
        self.group(caller, Operation::GetGroup, name, consistency_token)
            .await
    }

    pub async fn list_groups(
        &self,
        caller: &Caller,
        wanted: &GroupsWanted,
        page: Page,
        consistency_token: &str,
    ) -> Result<Vec<GroupView>, ApiError> {
        let (network, clinic) = match &wanted.parent {
            GroupsIn::Network(network) => (&network.network, None),
            GroupsIn::Clinic(clinic) => (&clinic.network, Some(clinic.clinic.as_str())),
        };
        // One clinic: the caller must be scoped to it. The whole network: clinic-scoped
        // staff see the groups of their clinics only (the filter below).
        match clinic {
            Some(clinic) => permit(caller, Operation::ListGroups, network, clinics(&[clinic]))?,
            None => permit_unplaced(caller, Operation::ListGroups, network, Target::default())?,
        }
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(network).await?;
        let optional = |id: &Option<Id>| id.as_ref().map(Id::as_str).unwrap_or_default().to_owned();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups
             WHERE network = $1 AND ($2 = '' OR clinic_id = $2) AND ($3 = '' OR modality = $3)
               AND ($4 = '' OR level_of_care = $4) AND ($5 OR NOT archived)
               AND (NOT $8 OR clinic_id = ANY($9))
             ORDER BY clinic_id, group_id LIMIT $6 OFFSET $7"
        )))
        .bind(network.as_str())
        .bind(clinic.unwrap_or_default())
        .bind(optional(&wanted.modality))
        .bind(optional(&wanted.level_of_care))
        .bind(wanted.include_archived)
        .bind(page.size)
        .bind(page.offset)
        .bind(caller.is_clinic_scoped())
        .bind(&caller.clinics)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let now = self.clock.now();
        rows.iter()
            .map(|row| group_from_row(network, row, now))
            .collect()
    }

    pub async fn get_participant(
        &self,
        caller: &Caller,
        name: &ParticipantName,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> Result<ParticipantView, ApiError> {
        let own = Some(name.participant.as_str());
        permit_unplaced(
            caller,
            Operation::GetParticipant,
            &name.network,
            Target {
                participant: own,
                ..Target::default()
            },
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&name.network).await?;
        let found = sqlx::query(
            "SELECT p.home_clinic_id, p.version, p.forgotten_at, f.given_name, f.family_name, f.preferred_name, f.email, f.phone
             FROM enrollment.participants p JOIN enrollment.participant_profiles f USING (network, participant_id)
             WHERE p.network = $1 AND p.participant_id = $2",
        )
        .bind(name.network.as_str())
        .bind(name.participant.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        let home_clinic = match &found {
            Some(row) => Some(stored_id(&text(row, "home_clinic_id")?)?),
            None => None,
        };
        // Clinic-scoped staff see the participants of their clinics: the home clinic
        // is known only now. Someone who is not registered is in none of them, so such
        // a caller gets the same refusal whether the participant is elsewhere or
        // nowhere; only a caller who may see them anywhere learns they do not exist.
        let home: Vec<&str> = home_clinic.iter().map(Id::as_str).collect();
        permit(
            caller,
            Operation::GetParticipant,
            &name.network,
            Target {
                clinics: &home,
                participant: own,
                ..Target::default()
            },
        )?;
        let (Some(row), Some(home_clinic)) = (found, home_clinic) else {
            return Err(not_found("PARTICIPANT_NOT_FOUND", &name.to_string()));
        };
        let consents = sqlx::query(
            "SELECT consent_id, kind, recipient, purpose, display, alias, share_check_ins, share_milestones,
                    recorded_at, revoked_at
             FROM enrollment.consents WHERE network = $1 AND participant_id = $2 ORDER BY recorded_version, consent_id",
        )
        .bind(name.network.as_str())
        .bind(name.participant.as_str())
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?
        .iter()
        .map(|consent| consent_from_row(name, consent))
        .collect::<Result<Vec<_>, _>>()?;
        let mut view = ParticipantView {
            name: name.clone(),
            home_clinic: ClinicName {
                network: name.network.clone(),
                clinic: home_clinic,
            },
            profile: Profile {
                given_name: text(&row, "given_name")?,
                family_name: text(&row, "family_name")?,
                preferred_name: text(&row, "preferred_name")?,
                email: text(&row, "email")?,
                phone: text(&row, "phone")?,
            },
            version: version(row.try_get("version").map_err(database_error)?),
            consents,
            forgotten_at: row.try_get("forgotten_at").map_err(database_error)?,
        };
        // Opened before the disclosure is recorded: no record of an answer never given.
        drop(tenant);
        self.vault
            .open_all(name.network.as_str(), "", std::slice::from_mut(&mut view))
            .await
            .map_err(key_store_error)?;
        self.disclose(
            caller,
            Operation::GetParticipant,
            name,
            purpose,
            [name.participant.as_str()],
        )
        .await?;
        Ok(view)
    }

    pub async fn get_membership(
        &self,
        caller: &Caller,
        name: &MembershipName,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> Result<MembershipView, ApiError> {
        permit(
            caller,
            Operation::GetMembership,
            &name.network,
            Target {
                clinics: &[name.clinic.as_str()],
                participant: Some(name.membership.as_str()),
                ..Target::default()
            },
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&name.network).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(memberships_with_position(
            "network = $1 AND group_id = $2 AND participant_id = $3 AND clinic_id = $4",
        )))
        .bind(name.network.as_str())
        .bind(name.group.as_str())
        .bind(name.membership.as_str())
        .bind(name.clinic.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?
        .ok_or_else(|| not_found("MEMBERSHIP_NOT_FOUND", &name.to_string()))?;
        let mut membership = membership_from_row(&name.network, &row)?;
        let history: Vec<(String, String, Time, i64, String)> = sqlx::query_as(
            "SELECT kind, state_after, at, version, detail FROM enrollment.membership_history
             WHERE network = $1 AND group_id = $2 AND participant_id = $3 ORDER BY version, position",
        )
        .bind(name.network.as_str())
        .bind(name.group.as_str())
        .bind(name.membership.as_str())
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        membership.history = history
            .into_iter()
            .map(
                |(kind, state_after, at, event_version, detail)| MembershipEventView {
                    kind,
                    state_after,
                    at,
                    version: version(event_version),
                    detail,
                },
            )
            .collect();
        self.disclose(
            caller,
            Operation::GetMembership,
            name,
            purpose,
            [name.membership.as_str()],
        )
        .await?;
        Ok(membership)
    }

    /// Active and held members of a group, in order of arrival.
    pub async fn list_group_members(
        &self,
        caller: &Caller,
        group: &GroupName,
        page: Page,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> Result<Vec<MembershipView>, ApiError> {
        self.group(
            caller,
            Operation::ListGroupMembers,
            group,
            consistency_token,
        )
        .await?;
        let members = self
            .group_memberships(group, &[state::ACTIVE, state::ON_HOLD], page)
            .await?;
        self.disclose_memberships(
            caller,
            Operation::ListGroupMembers,
            group,
            purpose,
            &members,
        )
        .await?;
        Ok(members)
    }

    /// Open offers, then the waitlist in order, with positions.
    pub async fn list_waitlist(
        &self,
        caller: &Caller,
        group: &GroupName,
        page: Page,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> Result<Vec<MembershipView>, ApiError> {
        self.group(caller, Operation::ListWaitlist, group, consistency_token)
            .await?;
        let waiting = self
            .group_memberships(group, &[state::OFFERED, state::WAITLISTED], page)
            .await?;
        self.disclose_memberships(caller, Operation::ListWaitlist, group, purpose, &waiting)
            .await?;
        Ok(waiting)
    }

    /// Records that `memberships` were shown: each one's participant.
    async fn disclose_memberships(
        &self,
        caller: &Caller,
        operation: Operation,
        resource: &(dyn std::fmt::Display + Sync),
        purpose: Option<Purpose>,
        memberships: &[MembershipView],
    ) -> Result<(), ApiError> {
        let participants = memberships
            .iter()
            .map(|membership| membership.participant.participant.as_str());
        self.disclose(caller, operation, resource, purpose, participants)
            .await
    }

    async fn group_memberships(
        &self,
        group: &GroupName,
        states: &[&str],
        page: Page,
    ) -> Result<Vec<MembershipView>, ApiError> {
        let states: Vec<String> = states.iter().map(|state| (*state).to_owned()).collect();
        let mut tenant = self.tenant(&group.network).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBERSHIP_COLUMNS},
                    row_number() OVER (PARTITION BY state ORDER BY arrival, participant_id) AS waitlist_position
             FROM enrollment.memberships
             WHERE network = $1 AND group_id = $2 AND state = ANY($3)
             ORDER BY (state = 'waitlisted'), arrival, participant_id LIMIT $4 OFFSET $5"
        )))
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .bind(&states)
        .bind(page.size)
        .bind(page.offset)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        rows.iter()
            .map(|row| membership_from_row(&group.network, row))
            .collect()
    }

    /// A participant's memberships, newest first. Clinic-scoped staff see only those
    /// in their clinics.
    pub async fn list_participant_memberships(
        &self,
        caller: &Caller,
        participant: &ParticipantName,
        page: Page,
        consistency_token: &str,
        purpose: Option<Purpose>,
    ) -> Result<Vec<MembershipView>, ApiError> {
        // Clinic-scoped staff see only the memberships in their clinics (the filter
        // below): an empty list for someone elsewhere or nowhere alike.
        permit_unplaced(
            caller,
            Operation::ListParticipantMemberships,
            &participant.network,
            Target {
                participant: Some(participant.participant.as_str()),
                ..Target::default()
            },
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&participant.network).await?;
        let scoped = caller.is_clinic_scoped();
        let rows = sqlx::query(sqlx::AssertSqlSafe(memberships_with_position(
            "network = $1 AND participant_id = $2 AND (NOT $3 OR clinic_id = ANY($4))
             ORDER BY since DESC, group_id LIMIT $5 OFFSET $6",
        )))
        .bind(participant.network.as_str())
        .bind(participant.participant.as_str())
        .bind(scoped)
        .bind(&caller.clinics)
        .bind(page.size)
        .bind(page.offset)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let memberships = rows
            .iter()
            .map(|row| membership_from_row(&participant.network, row))
            .collect::<Result<Vec<_>, _>>()?;
        self.disclose_memberships(
            caller,
            Operation::ListParticipantMemberships,
            participant,
            purpose,
            &memberships,
        )
        .await?;
        Ok(memberships)
    }

    /// Groups with a free seat across the network, soonest next session first. The
    /// weekday and time window are checked against the local schedule; the next
    /// session is computed in each group's time zone. Closed groups that have started
    /// take no one without an override, so they are not listed.
    pub async fn search_open_seats(
        &self,
        caller: &Caller,
        search: &OpenSeatSearch,
        page: Page,
        consistency_token: &str,
    ) -> Result<OpenSeats, ApiError> {
        let scope: Vec<&str> = search
            .clinic
            .iter()
            .map(|clinic| clinic.clinic.as_str())
            .collect();
        permit(
            caller,
            Operation::SearchOpenSeats,
            &search.network.network,
            clinics(&scope),
        )?;
        self.read_after(consistency_token).await?;
        let mut tenant = self.tenant(&search.network.network).await?;
        let optional = |id: &Option<Id>| id.as_ref().map(Id::as_str).unwrap_or_default().to_owned();
        let weekdays: Vec<i32> = search.weekdays.iter().map(|day| *day as i32).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM enrollment.groups
             WHERE network = $1 AND NOT archived
               AND capacity > active_count + on_hold_count + offer_count AND waitlist_count = 0
               AND ($2 = '' OR clinic_id = $2) AND ($3 = '' OR modality = $3) AND ($4 = '' OR level_of_care = $4)
               AND schedule IS NOT NULL AND start_minute BETWEEN $5 AND $6
               AND (cardinality($7::integer[]) = 0 OR schedule_days && $7)"
        )))
        .bind(search.network.network.as_str())
        .bind(scope.first().copied().unwrap_or_default())
        .bind(optional(&search.modality))
        .bind(optional(&search.level_of_care))
        .bind(search.earliest_start_minute as i32)
        .bind(search.latest_start_minute as i32)
        .bind(&weekdays)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        let now = self.clock.now();
        let mut open = Vec::new();
        for row in &rows {
            let group = group_from_row(&search.network.network, row, now)?;
            let started_closed = group.admission_mode == AdmissionMode::Closed
                && group
                    .schedule
                    .as_ref()
                    .and_then(|schedule| schedule.first_session(time_zone(&group.time_zone)))
                    .is_some_and(|first| first <= now);
            let Some(next_session) = group.next_session else {
                continue;
            };
            if started_closed {
                continue;
            }
            let free_seats = group
                .capacity
                .saturating_sub(group.active_count + group.on_hold_count + group.offer_count);
            open.push((
                next_session.timestamp(),
                group.name.to_string(),
                OpenSeat {
                    group,
                    free_seats,
                    next_session,
                },
            ));
        }
        open.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let total = open.len();
        let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
        let seats: Vec<OpenSeat> = open
            .into_iter()
            .skip(offset)
            .take(usize::try_from(page.size).unwrap_or(0))
            .map(|(_, _, seat)| seat)
            .collect();
        Ok(OpenSeats {
            more: offset.saturating_add(seats.len()) < total,
            seats,
        })
    }
}

/// The times an accounting covers: from `start` (included) to `end` (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisclosureRange {
    pub start: Time,
    pub end: Time,
}

impl DisclosureRange {
    /// The longest range one request covers: six years, what the audit log keeps at
    /// the least.
    pub const MAX_DAYS: i64 = circle_config::AUDIT_MIN_RETENTION_DAYS as i64;

    /// A range that runs forwards, at most [`Self::MAX_DAYS`] long. The error names
    /// the `end_time` field.
    pub fn new(start: Time, end: Time) -> Result<Self, String> {
        if end <= start {
            Err("must be after start_time".into())
        } else if end - start > chrono::Duration::days(Self::MAX_DAYS) {
            Err(format!(
                "must be at most {} days after start_time",
                Self::MAX_DAYS
            ))
        } else {
            Ok(Self { start, end })
        }
    }
}

/// One read that disclosed a participant's data, as their accounting shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DisclosureView {
    pub participant: ParticipantName,
    pub disclosure_id: Id,
    pub at: Time,
    pub actor_id: String,
    pub actor_roles: Vec<String>,
    pub calling_service: String,
    pub operation: String,
    pub resource: String,
    /// `None` for a purpose this version does not know.
    pub purpose: Option<Purpose>,
    pub purpose_stated: bool,
    pub trace_id: String,
}

/// The accounting's columns, from the projection of every audit stream.
fn disclosures_of_every_service() -> String {
    crate::disclosures::SOURCES
        .iter()
        .map(|source| {
            format!(
                "SELECT disclosure_id, disclosed_at, actor_id, actor_roles, calling_service, operation,
                        resource, purpose, purpose_stated, trace_id
                 FROM {}.disclosures
                 WHERE network = $1 AND participant_id = $2 AND disclosed_at >= $3 AND disclosed_at < $4",
                source.schema
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

impl Queries {
    /// A participant's accounting of disclosures over `range`, oldest first: every read
    /// in any service that disclosed their data to someone else. Holds every disclosure
    /// recorded before it was asked (it waits for the audit logs' projections, at most
    /// the read-your-writes timeout). The participant, or an admin of their home
    /// clinic (known once the record is found), or a network admin.
    pub async fn list_disclosures(
        &self,
        caller: &Caller,
        participant: &ParticipantName,
        range: DisclosureRange,
        page: Page,
    ) -> Result<Vec<DisclosureView>, ApiError> {
        let own = Some(participant.participant.as_str());
        permit_unplaced(
            caller,
            Operation::ListDisclosures,
            &participant.network,
            Target {
                participant: own,
                ..Target::default()
            },
        )?;
        let home: Option<String> = {
            let mut tenant = self.tenant(&participant.network).await?;
            sqlx::query_scalar(
                "SELECT home_clinic_id FROM enrollment.participants WHERE network = $1 AND participant_id = $2",
            )
            .bind(participant.network.as_str())
            .bind(participant.participant.as_str())
            .fetch_optional(&mut *tenant)
            .await
            .map_err(database_error)?
        };
        // As for GetParticipant: someone not registered is in no clinic, so a
        // clinic-scoped caller is refused alike whether they are elsewhere or nowhere.
        let clinics: Vec<&str> = home.iter().map(String::as_str).collect();
        permit(
            caller,
            Operation::ListDisclosures,
            &participant.network,
            Target {
                clinics: &clinics,
                participant: own,
                ..Target::default()
            },
        )?;
        if home.is_none() {
            return Err(not_found("PARTICIPANT_NOT_FOUND", &participant.to_string()));
        }
        self.accounting
            .caught_up(&self.pool, self.read_your_writes_timeout)
            .await
            .map_err(|error| match error {
                circle_projection::LagError::NotYet { .. } => ApiError::new(
                    tonic::Code::Unavailable,
                    "READ_MODEL_BEHIND",
                    "the accounting has not caught up with the audit log yet; retry shortly",
                ),
                _ => ApiError::unavailable("the accounting of disclosures"),
            })?;
        let mut tenant = self.tenant(&participant.network).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM ({}) d ORDER BY disclosed_at, disclosure_id LIMIT $5 OFFSET $6",
            disclosures_of_every_service()
        )))
        .bind(participant.network.as_str())
        .bind(participant.participant.as_str())
        .bind(range.start)
        .bind(range.end)
        .bind(page.size)
        .bind(page.offset)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        rows.iter()
            .map(|row| {
                Ok(DisclosureView {
                    participant: participant.clone(),
                    disclosure_id: stored_id(&text(row, "disclosure_id")?)?,
                    at: row.try_get("disclosed_at").map_err(database_error)?,
                    actor_id: text(row, "actor_id")?,
                    actor_roles: row.try_get("actor_roles").map_err(database_error)?,
                    calling_service: text(row, "calling_service")?,
                    operation: text(row, "operation")?,
                    resource: text(row, "resource")?,
                    purpose: Purpose::parse(&text(row, "purpose")?),
                    purpose_stated: row.try_get("purpose_stated").map_err(database_error)?,
                    trace_id: text(row, "trace_id")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use circle_grpc::Role;

    use super::*;

    #[test]
    fn an_accounting_covers_at_most_six_years_forwards() {
        let at = |text: &str| text.parse::<Time>().unwrap_or_default();
        assert!(
            DisclosureRange::new(at("2020-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")).is_ok()
        );
        assert_eq!(
            DisclosureRange::new(at("2020-01-01T00:00:00Z"), at("2026-01-03T00:00:00Z")),
            Err("must be at most 2192 days after start_time".to_owned())
        );
        assert_eq!(
            DisclosureRange::new(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")),
            Err("must be after start_time".to_owned())
        );
    }

    #[test]
    fn the_application_keeps_every_caller_to_its_own_network_before_the_table() {
        let caller = Caller::new("acme", "a", &[Role::NetworkAdmin], &[]);
        let other = Id::parse("other").expect("valid id");
        let own = Id::parse("acme").expect("valid id");
        let refused = permit(&caller, Operation::GetGroup, &other, Target::default());
        assert_eq!(
            refused.err().map(|error| error.reason),
            Some("WRONG_NETWORK")
        );
        assert!(permit(&caller, Operation::GetGroup, &own, Target::default()).is_ok());
    }
}
