//! Which reads of the accountability service disclose participants' data, and so are
//! recorded in the audit log (`circle_audit`, the ACCOUNTABILITY_AUDIT stream) before
//! they are answered, one record per participant the answer shows: the purpose a read
//! is recorded under when its caller states none (`circle-purpose`), `None` for an
//! operation that shows no participant's data.
//!
//! A peer's view is recorded too (a board or feed showing other members, under their
//! consent); a participant's view of their own data is not (`circle_audit::Reading`).
//! The live feed records each page it sends that holds items (its authors and
//! encouragers), before sending it; heartbeats show no one. Commands are not reads:
//! what they write is in the event log with who wrote it.

use circle_audit::Purpose;

use super::access::Operation;

/// The purpose `operation` is recorded under by default; `None`: it discloses nothing.
pub fn default_purpose(operation: Operation) -> Option<Purpose> {
    use Operation as O;
    match operation {
        // A group's members with their goals, check-ins and counters (staff also see
        // who is at risk); a participant's timeline; a facilitator's at-risk list; the
        // feed's check-ins, encouragements and milestones. Peer support in a group is
        // part of the group's treatment.
        // A recipient's nudges: who they are about and why (a partner's or a
        // facilitator's show another participant's missed check-ins).
        O::GetGroupBoard
        | O::GetParticipantTimeline
        | O::ListAtRisk
        | O::WatchGroupFeed
        | O::ListMyNudges
        | O::ListMeasurements
        | O::WatchIntegrationEvents => Some(Purpose::Treatment),
        O::SetGoal
        | O::ReviseGoal
        | O::CompleteGoal
        | O::AbandonGoal
        | O::SubmitCheckIn
        | O::Encourage
        | O::ReportSetback
        | O::ProposePartnership
        | O::AcceptPartnership
        | O::EndPartnership
        | O::SetQuietHours
        | O::AcknowledgeNudge
        | O::RecordNudgeDelivery
        | O::SetMeasurementCadence
        | O::SubmitMeasurement => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as README.md shows it (printed with `--nocapture`).
    #[test]
    fn the_reads_that_disclose_are_every_query() {
        let disclosing: Vec<(&str, &str)> = Operation::ALL
            .into_iter()
            .filter_map(|operation| {
                default_purpose(operation).map(|purpose| (operation.rpc(), purpose.as_str()))
            })
            .collect();
        for (rpc, purpose) in &disclosing {
            println!("| {rpc} | {purpose} |");
        }
        assert_eq!(
            disclosing,
            [
                ("GetGroupBoard", "treatment"),
                ("GetParticipantTimeline", "treatment"),
                ("ListAtRisk", "treatment"),
                ("WatchGroupFeed", "treatment"),
                ("ListMyNudges", "treatment"),
                ("ListMeasurements", "treatment"),
                ("WatchIntegrationEvents", "treatment"),
            ]
        );
    }
}
