//! The enrollment read model in schema `enrollment`: projected from the ENROLLMENT
//! stream, queried by the gRPC queries. Schedules and facilitators are stored as their
//! event protobuf encoding, exactly as recorded.
//!
//! Personal data (profiles; consents' recipient, purpose and alias) is copied here as
//! the events carry it: sealed with the participant's data key (`domain::personal`).
//! The projection holds and needs no key; the queries open what they answer with. Once
//! a participant is forgotten their key is gone, so their sealed text no longer opens
//! anywhere; on `ParticipantForgotten` the projection also marks them (`forgotten_at`)
//! and overwrites its copies of their personal text with `circle_vault::REDACTED`
//! (belt and braces, and text written before sealing began). A hold's reason is not
//! kept here at all.

use circle_eventstore::StoredCommit;
use circle_projection::{ApplyError, Projection};
use circle_proto::enrollment::events::v1 as pb;
use prost::Message as _;
use sqlx::PgConnection;

use crate::codec;
use crate::domain::{AdmissionMode, ConsentTerms, DischargeReason, Event, PeerDisplay, Time};

pub const SCHEMA: &str = "enrollment";
pub const PROJECTION_NAME: &str = "enrollment-read-model";

pub struct ReadModel;

pub fn admission_mode_text(mode: AdmissionMode) -> &'static str {
    match mode {
        AdmissionMode::Rolling => "rolling",
        AdmissionMode::Closed => "closed",
    }
}

pub fn discharge_reason_text(reason: DischargeReason) -> &'static str {
    match reason {
        DischargeReason::Completed => "completed",
        DischargeReason::Clinical => "clinical",
        DischargeReason::Administrative => "administrative",
        DischargeReason::NoShow => "no-show",
        DischargeReason::Withdrew => "withdrew",
    }
}

/// Membership states as stored.
pub mod state {
    pub const ACTIVE: &str = "active";
    pub const ON_HOLD: &str = "on-hold";
    pub const WAITLISTED: &str = "waitlisted";
    pub const OFFERED: &str = "offered";
    pub const ENDED: &str = "ended";
}

impl Projection for ReadModel {
    fn name(&self) -> &str {
        PROJECTION_NAME
    }

    /// 2: participants' `forgotten_at`.
    fn shape_version(&self) -> u32 {
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS clinics (
                network text NOT NULL,
                clinic_id text NOT NULL,
                display_name text NOT NULL,
                time_zone text NOT NULL,
                archived boolean NOT NULL DEFAULT false,
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
                time_zone text NOT NULL,
                facilitators bytea NOT NULL,
                schedule bytea,
                schedule_days integer[] NOT NULL DEFAULT '{}',
                start_minute integer,
                active_count integer NOT NULL DEFAULT 0,
                on_hold_count integer NOT NULL DEFAULT 0,
                offer_count integer NOT NULL DEFAULT 0,
                waitlist_count integer NOT NULL DEFAULT 0,
                archived boolean NOT NULL DEFAULT false,
                version bigint NOT NULL,
                PRIMARY KEY (network, group_id)
            )",
            "CREATE INDEX IF NOT EXISTS groups_by_clinic ON groups (network, clinic_id, group_id)",
            "CREATE TABLE IF NOT EXISTS participants (
                network text NOT NULL,
                participant_id text NOT NULL,
                home_clinic_id text NOT NULL,
                version bigint NOT NULL,
                forgotten_at timestamptz,
                PRIMARY KEY (network, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS participant_profiles (
                network text NOT NULL,
                participant_id text NOT NULL,
                given_name text NOT NULL,
                family_name text NOT NULL,
                preferred_name text NOT NULL DEFAULT '',
                email text NOT NULL DEFAULT '',
                phone text NOT NULL DEFAULT '',
                PRIMARY KEY (network, participant_id)
            )",
            "CREATE TABLE IF NOT EXISTS consents (
                network text NOT NULL,
                participant_id text NOT NULL,
                consent_id text NOT NULL,
                kind text NOT NULL,
                recipient text NOT NULL DEFAULT '',
                purpose text NOT NULL DEFAULT '',
                display text NOT NULL DEFAULT '',
                alias text NOT NULL DEFAULT '',
                share_check_ins boolean NOT NULL DEFAULT false,
                share_milestones boolean NOT NULL DEFAULT false,
                recorded_at timestamptz NOT NULL,
                recorded_version bigint NOT NULL,
                revoked_at timestamptz,
                PRIMARY KEY (network, participant_id, consent_id)
            )",
            "CREATE TABLE IF NOT EXISTS memberships (
                network text NOT NULL,
                group_id text NOT NULL,
                participant_id text NOT NULL,
                clinic_id text NOT NULL,
                state text NOT NULL,
                arrival bigint NOT NULL,
                since timestamptz NOT NULL,
                offer_expires_at timestamptz,
                end_reason text NOT NULL DEFAULT '',
                version bigint NOT NULL,
                PRIMARY KEY (network, group_id, participant_id)
            )",
            "CREATE INDEX IF NOT EXISTS memberships_by_state ON memberships (network, group_id, state, arrival)",
            "CREATE INDEX IF NOT EXISTS memberships_by_participant ON memberships (network, participant_id)",
            "CREATE TABLE IF NOT EXISTS membership_history (
                network text NOT NULL,
                group_id text NOT NULL,
                participant_id text NOT NULL,
                version bigint NOT NULL,
                position integer NOT NULL,
                kind text NOT NULL,
                state_after text NOT NULL,
                at timestamptz NOT NULL,
                detail text NOT NULL DEFAULT '',
                PRIMARY KEY (network, group_id, participant_id, version, position)
            )",
        ]
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        commit: &StoredCommit,
    ) -> Result<(), ApplyError> {
        let events =
            codec::decode_commit(commit).map_err(|error| ApplyError::Poison(error.to_string()))?;
        let at = commit
            .commit
            .committed_at
            .and_then(codec::from_timestamp)
            .ok_or_else(|| ApplyError::Poison("commit without a valid time".into()))?;
        let row = Row {
            network: &commit.commit.network,
            aggregate_id: &commit.commit.aggregate_id,
            version: commit.sequence as i64,
            at,
        };
        let mut membership_changed = false;
        for (position, event) in events.into_iter().enumerate() {
            membership_changed |= row.apply(connection, position as i32, event).await?;
        }
        if membership_changed {
            row.recount(connection).await?;
        }
        Ok(())
    }
}

struct Row<'a> {
    network: &'a str,
    aggregate_id: &'a str,
    version: i64,
    at: Time,
}

impl Row<'_> {
    /// Applies one event; returns whether a membership changed.
    async fn apply(
        &self,
        connection: &mut PgConnection,
        position: i32,
        event: Event,
    ) -> Result<bool, ApplyError> {
        let (network, id, version) = (self.network, self.aggregate_id, self.version);
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
                .bind(id)
                .bind(display_name)
                .bind(time_zone)
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::ClinicUpdated {
                display_name,
                time_zone,
            } => {
                sqlx::query(
                    "UPDATE clinics SET display_name = $3, time_zone = $4, version = $5
                     WHERE network = $1 AND clinic_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(display_name)
                .bind(time_zone)
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::ClinicArchived => {
                sqlx::query("UPDATE clinics SET archived = true, version = $3 WHERE network = $1 AND clinic_id = $2")
                    .bind(network)
                    .bind(id)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
            }
            Event::GroupCreated(details) => {
                let (schedule, days, start_minute) = schedule_columns(details.schedule.as_ref());
                sqlx::query(
                    "INSERT INTO groups (network, group_id, clinic_id, display_name, modality, level_of_care,
                        capacity, admission_mode, time_zone, facilitators, schedule, schedule_days,
                        start_minute, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(network)
                .bind(id)
                .bind(details.clinic_id)
                .bind(details.display_name)
                .bind(details.modality)
                .bind(details.level_of_care)
                .bind(details.capacity as i32)
                .bind(admission_mode_text(details.admission_mode))
                .bind(details.time_zone)
                .bind(facilitators_column(&details.facilitators))
                .bind(schedule)
                .bind(days)
                .bind(start_minute)
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::GroupDetailsChanged {
                display_name,
                modality,
                level_of_care,
                admission_mode,
            } => {
                sqlx::query(
                    "UPDATE groups SET display_name = $3, modality = $4, level_of_care = $5,
                        admission_mode = $6, version = $7
                     WHERE network = $1 AND group_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(display_name)
                .bind(modality)
                .bind(level_of_care)
                .bind(admission_mode_text(admission_mode))
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::GroupCapacityChanged { capacity } => {
                sqlx::query("UPDATE groups SET capacity = $3, version = $4 WHERE network = $1 AND group_id = $2")
                    .bind(network)
                    .bind(id)
                    .bind(capacity as i32)
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
            }
            Event::GroupScheduleChanged { schedule } => {
                let (schedule, days, start_minute) = schedule_columns(schedule.as_ref());
                sqlx::query(
                    "UPDATE groups SET schedule = $3, schedule_days = $4, start_minute = $5, version = $6
                     WHERE network = $1 AND group_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(schedule)
                .bind(days)
                .bind(start_minute)
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::GroupFacilitatorsChanged { facilitators } => {
                sqlx::query("UPDATE groups SET facilitators = $3, version = $4 WHERE network = $1 AND group_id = $2")
                    .bind(network)
                    .bind(id)
                    .bind(facilitators_column(&facilitators))
                    .bind(version)
                    .execute(&mut *connection)
                    .await?;
            }
            Event::GroupArchived => {
                sqlx::query("UPDATE groups SET archived = true, version = $3 WHERE network = $1 AND group_id = $2")
                    .bind(network)
                    .bind(id)
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
                .bind(id)
                .bind(home_clinic_id)
                .bind(version)
                .execute(&mut *connection)
                .await?;
                sqlx::query(
                    "INSERT INTO participant_profiles (network, participant_id, given_name, family_name,
                        preferred_name, email, phone)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(network)
                .bind(id)
                .bind(profile.given_name)
                .bind(profile.family_name)
                .bind(profile.preferred_name)
                .bind(profile.email)
                .bind(profile.phone)
                .execute(&mut *connection)
                .await?;
            }
            Event::ParticipantProfileChanged { profile } => {
                sqlx::query(
                    "UPDATE participant_profiles SET given_name = $3, family_name = $4, preferred_name = $5,
                        email = $6, phone = $7
                     WHERE network = $1 AND participant_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(profile.given_name)
                .bind(profile.family_name)
                .bind(profile.preferred_name)
                .bind(profile.email)
                .bind(profile.phone)
                .execute(&mut *connection)
                .await?;
                self.touch_participant(connection).await?;
            }
            Event::ParticipantHomeClinicChanged { home_clinic_id } => {
                sqlx::query(
                    "UPDATE participants SET home_clinic_id = $3, version = $4
                     WHERE network = $1 AND participant_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(home_clinic_id)
                .bind(version)
                .execute(&mut *connection)
                .await?;
            }
            Event::ConsentRecorded { consent_id, terms } => {
                let (kind, recipient, purpose, display, alias, check_ins, milestones) = match terms
                {
                    ConsentTerms::TreatmentDisclosure { recipient, purpose } => (
                        "treatment-disclosure",
                        recipient,
                        purpose,
                        "",
                        String::new(),
                        false,
                        false,
                    ),
                    ConsentTerms::PeerVisibility {
                        display,
                        alias,
                        share_check_ins,
                        share_milestones,
                    } => (
                        "peer-visibility",
                        String::new(),
                        String::new(),
                        match display {
                            PeerDisplay::FirstName => "first-name",
                            PeerDisplay::Alias => "alias",
                        },
                        alias,
                        share_check_ins,
                        share_milestones,
                    ),
                };
                sqlx::query(
                    "INSERT INTO consents (network, participant_id, consent_id, kind, recipient, purpose,
                        display, alias, share_check_ins, share_milestones, recorded_at, recorded_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(network)
                .bind(id)
                .bind(consent_id)
                .bind(kind)
                .bind(recipient)
                .bind(purpose)
                .bind(display)
                .bind(alias)
                .bind(check_ins)
                .bind(milestones)
                .bind(self.at)
                .bind(version)
                .execute(&mut *connection)
                .await?;
                self.touch_participant(connection).await?;
            }
            Event::ConsentRevoked {
                consent_id,
                kind: _,
            } => {
                sqlx::query(
                    // The first revocation is the one in force (as the aggregate keeps it).
                    "UPDATE consents SET revoked_at = $4
                     WHERE network = $1 AND participant_id = $2 AND consent_id = $3
                       AND revoked_at IS NULL",
                )
                .bind(network)
                .bind(id)
                .bind(consent_id)
                .bind(self.at)
                .execute(&mut *connection)
                .await?;
                self.touch_participant(connection).await?;
            }
            Event::ParticipantForgotten { forgotten_at, .. } => {
                sqlx::query(
                    "UPDATE participants SET forgotten_at = $3, version = $4
                     WHERE network = $1 AND participant_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(forgotten_at)
                .bind(version)
                .execute(&mut *connection)
                .await?;
                // Empty stays empty, as an opener shows it.
                sqlx::query(
                    "UPDATE participant_profiles SET
                        given_name = CASE WHEN given_name = '' THEN '' ELSE $3 END,
                        family_name = CASE WHEN family_name = '' THEN '' ELSE $3 END,
                        preferred_name = CASE WHEN preferred_name = '' THEN '' ELSE $3 END,
                        email = CASE WHEN email = '' THEN '' ELSE $3 END,
                        phone = CASE WHEN phone = '' THEN '' ELSE $3 END
                     WHERE network = $1 AND participant_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(circle_vault::REDACTED)
                .execute(&mut *connection)
                .await?;
                sqlx::query(
                    "UPDATE consents SET
                        recipient = CASE WHEN recipient = '' THEN '' ELSE $3 END,
                        purpose = CASE WHEN purpose = '' THEN '' ELSE $3 END,
                        alias = CASE WHEN alias = '' THEN '' ELSE $3 END
                     WHERE network = $1 AND participant_id = $2",
                )
                .bind(network)
                .bind(id)
                .bind(circle_vault::REDACTED)
                .execute(&mut *connection)
                .await?;
            }
            Event::MemberAdmitted {
                participant_id,
                path,
                transfer,
                facilitator_override,
            } => {
                let mut detail = match path {
                    crate::domain::AdmissionPath::Direct => "seat free".to_owned(),
                    crate::domain::AdmissionPath::Offer => "offer accepted".to_owned(),
                };
                if let Some(transfer) = transfer {
                    detail.push_str(&format!("; transfer from {}", transfer.from_group_id));
                }
                if facilitator_override {
                    detail.push_str("; facilitator override");
                }
                self.membership(connection, &participant_id, state::ACTIVE, true, None, "")
                    .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "admitted",
                    state::ACTIVE,
                    &detail,
                )
                .await?;
                return Ok(true);
            }
            Event::MemberWaitlisted {
                participant_id,
                position: place,
                transfer,
            } => {
                let mut detail = format!("position {place}");
                if let Some(transfer) = transfer {
                    detail.push_str(&format!("; transfer from {}", transfer.from_group_id));
                }
                self.membership(
                    connection,
                    &participant_id,
                    state::WAITLISTED,
                    true,
                    None,
                    "",
                )
                .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "waitlisted",
                    state::WAITLISTED,
                    &detail,
                )
                .await?;
                return Ok(true);
            }
            Event::SeatOffered {
                participant_id,
                offer_id,
                expires_at,
                ..
            } => {
                self.membership(
                    connection,
                    &participant_id,
                    state::OFFERED,
                    false,
                    Some(expires_at),
                    "",
                )
                .await?;
                let detail = format!("{offer_id} until {}", expires_at.to_rfc3339());
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "offered",
                    state::OFFERED,
                    &detail,
                )
                .await?;
                return Ok(true);
            }
            Event::SeatOfferDeclined {
                participant_id,
                offer_id,
            } => {
                self.membership(
                    connection,
                    &participant_id,
                    state::ENDED,
                    false,
                    None,
                    "offer-declined",
                )
                .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "offer-declined",
                    state::ENDED,
                    &offer_id,
                )
                .await?;
                return Ok(true);
            }
            Event::SeatOfferExpired {
                participant_id,
                offer_id,
            } => {
                self.membership(
                    connection,
                    &participant_id,
                    state::ENDED,
                    false,
                    None,
                    "offer-expired",
                )
                .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "offer-expired",
                    state::ENDED,
                    &offer_id,
                )
                .await?;
                return Ok(true);
            }
            Event::MemberHeld { participant_id, .. } => {
                // The reason is free text about a person: it stays in the event only
                // (sealed).
                self.membership(connection, &participant_id, state::ON_HOLD, false, None, "")
                    .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "held",
                    state::ON_HOLD,
                    "",
                )
                .await?;
                return Ok(true);
            }
            Event::MemberResumed { participant_id } => {
                self.membership(connection, &participant_id, state::ACTIVE, false, None, "")
                    .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "resumed",
                    state::ACTIVE,
                    "",
                )
                .await?;
                return Ok(true);
            }
            Event::MemberDischarged {
                participant_id,
                reason,
            } => {
                let reason = discharge_reason_text(reason);
                self.membership(
                    connection,
                    &participant_id,
                    state::ENDED,
                    false,
                    None,
                    reason,
                )
                .await?;
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "discharged",
                    state::ENDED,
                    reason,
                )
                .await?;
                return Ok(true);
            }
            Event::MemberTransferredOut {
                participant_id,
                transfer,
            } => {
                self.membership(
                    connection,
                    &participant_id,
                    state::ENDED,
                    false,
                    None,
                    "transferred",
                )
                .await?;
                let detail = format!("to {}", transfer.to_group_id);
                self.history(
                    connection,
                    &participant_id,
                    position,
                    "transferred-out",
                    state::ENDED,
                    &detail,
                )
                .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn touch_participant(&self, connection: &mut PgConnection) -> Result<(), ApplyError> {
        sqlx::query(
            "UPDATE participants SET version = $3 WHERE network = $1 AND participant_id = $2",
        )
        .bind(self.network)
        .bind(self.aggregate_id)
        .bind(self.version)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    /// Sets a membership's state. `arrives` starts a new stay (admission or joining the
    /// waitlist), which resets its place in arrival order.
    async fn membership(
        &self,
        connection: &mut PgConnection,
        participant_id: &str,
        new_state: &str,
        arrives: bool,
        offer_expires_at: Option<Time>,
        end_reason: &str,
    ) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO memberships (network, group_id, participant_id, clinic_id, state, arrival, since,
                offer_expires_at, end_reason, version)
             SELECT $1, $2, $3, g.clinic_id, $4, $5, $6, $7, $8, $5
             FROM groups g WHERE g.network = $1 AND g.group_id = $2
             ON CONFLICT (network, group_id, participant_id) DO UPDATE SET
                state = EXCLUDED.state,
                arrival = CASE WHEN $9 THEN EXCLUDED.arrival ELSE memberships.arrival END,
                since = EXCLUDED.since,
                offer_expires_at = EXCLUDED.offer_expires_at,
                end_reason = EXCLUDED.end_reason,
                version = EXCLUDED.version",
        )
        .bind(self.network)
        .bind(self.aggregate_id)
        .bind(participant_id)
        .bind(new_state)
        .bind(self.version)
        .bind(self.at)
        .bind(offer_expires_at)
        .bind(end_reason)
        .bind(arrives)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        connection: &mut PgConnection,
        participant_id: &str,
        position: i32,
        kind: &str,
        state_after: &str,
        detail: &str,
    ) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO membership_history (network, group_id, participant_id, version, position, kind,
                state_after, at, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(self.network)
        .bind(self.aggregate_id)
        .bind(participant_id)
        .bind(self.version)
        .bind(position)
        .bind(kind)
        .bind(state_after)
        .bind(self.at)
        .bind(detail)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    /// Recomputes a group's counters from its memberships.
    async fn recount(&self, connection: &mut PgConnection) -> Result<(), ApplyError> {
        sqlx::query(
            "UPDATE groups g SET
                active_count = c.active, on_hold_count = c.on_hold, offer_count = c.offered,
                waitlist_count = c.waitlisted, version = $3
             FROM (SELECT
                    count(*) FILTER (WHERE state = 'active') AS active,
                    count(*) FILTER (WHERE state = 'on-hold') AS on_hold,
                    count(*) FILTER (WHERE state = 'offered') AS offered,
                    count(*) FILTER (WHERE state = 'waitlisted') AS waitlisted
                   FROM memberships WHERE network = $1 AND group_id = $2) c
             WHERE g.network = $1 AND g.group_id = $2",
        )
        .bind(self.network)
        .bind(self.aggregate_id)
        .bind(self.version)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}

fn facilitators_column(facilitators: &[crate::domain::Facilitator]) -> Vec<u8> {
    pb::GroupFacilitatorsChanged {
        facilitators: codec::facilitators_to_wire(facilitators),
    }
    .encode_to_vec()
}

fn schedule_columns(
    schedule: Option<&crate::domain::Schedule>,
) -> (Option<Vec<u8>>, Vec<i32>, Option<i32>) {
    match schedule {
        Some(schedule) => (
            Some(codec::schedule_to_wire(schedule).encode_to_vec()),
            schedule
                .iso_weekdays
                .iter()
                .map(|day| *day as i32)
                .collect(),
            Some(schedule.start_minute as i32),
        ),
        None => (None, Vec::new(), None),
    }
}

/// Decodes the stored facilitators column.
pub fn facilitators_from_column(bytes: &[u8]) -> Vec<crate::domain::Facilitator> {
    pb::GroupFacilitatorsChanged::decode(bytes)
        .ok()
        .and_then(|message| codec::facilitators_from_wire(&message.facilitators).ok())
        .unwrap_or_default()
}

/// Decodes the stored schedule column.
pub fn schedule_from_column(bytes: Option<&[u8]>) -> Option<crate::domain::Schedule> {
    let message = pb::Schedule::decode(bytes?).ok()?;
    codec::schedule_from_wire(&message).ok()
}
