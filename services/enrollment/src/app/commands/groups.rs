//! Groups: created in an open clinic (taking its time zone), changed and archived.
//! Each answers with the group as its commit left it, its next session computed at the
//! time of the answer (its version is the etag and the consistency token).

use circle_grpc::{ApiError, Caller};
use circle_names::GroupName;

use super::{Commands, Sent, clinics};
use crate::app::GroupView;
use crate::app::access::{Operation, permit};
use crate::app::errors::{command_error, domain_error};
use crate::domain::{
    AdmissionMode, Facilitator, GroupChanges, GroupCommand, GroupDetails, Schedule, clinic,
};

/// A new group's own fields; its time zone is its clinic's.
pub struct NewGroup {
    pub display_name: String,
    pub modality: String,
    pub level_of_care: String,
    pub capacity: u32,
    pub admission_mode: AdmissionMode,
    pub facilitators: Vec<Facilitator>,
    pub schedule: Option<Schedule>,
}

pub struct CreateGroup {
    pub name: GroupName,
    pub group: NewGroup,
    pub sent: Sent,
}

pub struct UpdateGroup {
    pub name: GroupName,
    pub changes: GroupChanges,
    pub etag: Option<u64>,
    pub sent: Sent,
}

pub struct ArchiveGroup {
    pub name: GroupName,
    pub etag: Option<u64>,
    pub sent: Sent,
}

impl Commands {
    /// The group takes its clinic's time zone; the clinic must be open.
    pub async fn create_group(
        &self,
        caller: &Caller,
        input: CreateGroup,
    ) -> Result<GroupView, ApiError> {
        let CreateGroup { name, group, sent } = input;
        permit(
            caller,
            Operation::CreateGroup,
            &name.network,
            clinics(&[name.clinic.as_str()]),
        )?;
        let clinic = self
            .aggregates
            .load_clinic(name.network.as_str(), name.clinic.as_str())
            .await
            .map_err(command_error)?;
        clinic::require_open(&clinic).map_err(domain_error)?;
        let details = GroupDetails {
            clinic_id: name.clinic.to_string(),
            display_name: group.display_name,
            modality: group.modality,
            level_of_care: group.level_of_care,
            capacity: group.capacity,
            admission_mode: group.admission_mode,
            time_zone: clinic.time_zone.clone(),
            facilitators: group.facilitators,
            schedule: group.schedule,
        };
        let executed = self
            .aggregates
            .group(
                name.network.as_str(),
                None,
                name.group.as_str(),
                &sent.meta(caller),
                None,
                GroupCommand::Create(details),
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        GroupView::of(name, executed.state(), commit.sequence, self.clock.now())
            .ok_or_else(ApiError::internal)
    }

    pub async fn update_group(
        &self,
        caller: &Caller,
        input: UpdateGroup,
    ) -> Result<GroupView, ApiError> {
        permit(
            caller,
            Operation::UpdateGroup,
            &input.name.network,
            clinics(&[input.name.clinic.as_str()]),
        )?;
        self.group_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            GroupCommand::Update(input.changes),
        )
        .await
    }

    pub async fn archive_group(
        &self,
        caller: &Caller,
        input: ArchiveGroup,
    ) -> Result<GroupView, ApiError> {
        permit(
            caller,
            Operation::ArchiveGroup,
            &input.name.network,
            clinics(&[input.name.clinic.as_str()]),
        )?;
        self.group_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            GroupCommand::Archive,
        )
        .await
    }

    async fn group_command(
        &self,
        caller: &Caller,
        name: GroupName,
        sent: Sent,
        etag: Option<u64>,
        command: GroupCommand,
    ) -> Result<GroupView, ApiError> {
        let executed = self
            .aggregates
            .group(
                name.network.as_str(),
                Some(name.clinic.as_str()),
                name.group.as_str(),
                &sent.meta(caller),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        GroupView::of(name, executed.state(), executed.version(), self.clock.now())
            .ok_or_else(ApiError::internal)
    }
}
