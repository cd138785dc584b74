//! The steps only the service's own process managers take, each under its own row of
//! the access table (`access::step_rule`), with request ids named after their cause.

use circle_grpc::{Caller, Target};

use super::{Commands, StepError};
use crate::app::access::{self, Step, permit_rule};
use crate::domain::{GroupCommand, TransferRef};

impl Commands {
    /// A seat offer's time is up: expire it (and offer the seat to the next person, in
    /// the same commit). Request id `pm:expire-<offer>`.
    pub(crate) async fn expire_offer(
        &self,
        caller: &Caller,
        network: &str,
        group_id: &str,
        offer_id: &str,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::ExpireOffer, network)?;
        let command = GroupCommand::ExpireOffer {
            offer_id: offer_id.to_owned(),
        };
        self.step(
            caller,
            network,
            group_id,
            format!("pm:expire-{offer_id}"),
            command,
        )
        .await
    }

    /// The second half of a transfer: the participant holds the new seat, so the old
    /// group releases them. Request id `pm:release-<transfer>`.
    pub(crate) async fn release_for_transfer(
        &self,
        caller: &Caller,
        network: &str,
        participant_id: String,
        transfer: TransferRef,
    ) -> Result<(), StepError> {
        permit_step(caller, Step::ReleaseForTransfer, network)?;
        let request_id = format!("pm:release-{}", transfer.transfer_id);
        let from_group = transfer.from_group_id.clone();
        let command = GroupCommand::ReleaseForTransfer {
            participant_id,
            transfer,
        };
        self.step(caller, network, &from_group, request_id, command)
            .await
    }

    async fn step(
        &self,
        caller: &Caller,
        network: &str,
        group_id: &str,
        request_id: String,
        command: GroupCommand,
    ) -> Result<(), StepError> {
        self.aggregates
            .group(
                network,
                None,
                group_id,
                &circle_service::step_meta(caller, request_id),
                None,
                command,
            )
            .await
            .map(|_| ())
            .map_err(StepError::Command)
    }
}

fn permit_step(caller: &Caller, step: Step, network: &str) -> Result<(), StepError> {
    permit_rule(caller, access::step_rule(step), network, Target::default())
        .map_err(StepError::Refused)
}
