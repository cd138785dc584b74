//! Clinics: created, changed and archived by the network's administrators. Each
//! answers with the clinic as its commit left it (its version is the etag and the
//! consistency token).

use circle_grpc::{ApiError, Caller, Target};
use circle_names::ClinicName;
use tonic::Code;

use super::{Commands, Sent};
use crate::app::access::{Operation, permit};
use crate::app::errors::command_error;
use crate::app::{ClinicView, facts};
use crate::domain::ClinicCommand;

pub struct CreateClinic {
    pub name: ClinicName,
    pub display_name: String,
    pub time_zone: String,
    pub sent: Sent,
}

/// Only the fields given change.
pub struct UpdateClinic {
    pub name: ClinicName,
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
    pub etag: Option<u64>,
    pub sent: Sent,
}

pub struct ArchiveClinic {
    pub name: ClinicName,
    pub etag: Option<u64>,
    pub sent: Sent,
}

impl Commands {
    pub async fn create_clinic(
        &self,
        caller: &Caller,
        input: CreateClinic,
    ) -> Result<ClinicView, ApiError> {
        let CreateClinic {
            name,
            display_name,
            time_zone,
            sent,
        } = input;
        permit(
            caller,
            Operation::CreateClinic,
            &name.network,
            Target::default(),
        )?;
        let executed = self
            .aggregates
            .clinic(
                name.network.as_str(),
                name.clinic.as_str(),
                &sent.meta(caller),
                None,
                ClinicCommand::Create {
                    display_name,
                    time_zone,
                },
            )
            .await
            .map_err(command_error)?;
        let commit = executed.commit().ok_or_else(ApiError::internal)?;
        Ok(ClinicView::of(name, executed.state(), commit.sequence))
    }

    pub async fn update_clinic(
        &self,
        caller: &Caller,
        input: UpdateClinic,
    ) -> Result<ClinicView, ApiError> {
        permit(
            caller,
            Operation::UpdateClinic,
            &input.name.network,
            Target::default(),
        )?;
        let command = ClinicCommand::Update {
            display_name: input.display_name,
            time_zone: input.time_zone,
        };
        self.clinic_command(caller, input.name, input.sent, input.etag, command)
            .await
    }

    /// A clinic with open groups is not archived (best effort, on the read model).
    pub async fn archive_clinic(
        &self,
        caller: &Caller,
        input: ArchiveClinic,
    ) -> Result<ClinicView, ApiError> {
        let name = &input.name;
        permit(
            caller,
            Operation::ArchiveClinic,
            &name.network,
            Target::default(),
        )?;
        let open_groups =
            facts::open_groups_of_clinic(&self.pool, name.network.as_str(), name.clinic.as_str())
                .await?;
        if open_groups > 0 {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                "CLINIC_HAS_GROUPS",
                "archive the clinic's groups first",
            ));
        }
        self.clinic_command(
            caller,
            input.name,
            input.sent,
            input.etag,
            ClinicCommand::Archive,
        )
        .await
    }

    async fn clinic_command(
        &self,
        caller: &Caller,
        name: ClinicName,
        sent: Sent,
        etag: Option<u64>,
        command: ClinicCommand,
    ) -> Result<ClinicView, ApiError> {
        let executed = self
            .aggregates
            .clinic(
                name.network.as_str(),
                name.clinic.as_str(),
                &sent.meta(caller),
                etag,
                command,
            )
            .await
            .map_err(command_error)?;
        Ok(ClinicView::of(name, executed.state(), executed.version()))
    }
}
