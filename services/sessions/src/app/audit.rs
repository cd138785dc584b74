//! Which reads of the sessions service disclose participants' data, and so are
//! recorded in the audit log (`circle_audit`, the SESSIONS_AUDIT stream) before they
//! are answered, one record per participant the answer shows: the purpose a read is
//! recorded under when its caller states none (`circle-purpose`), `None` for an
//! operation that shows no participant's data.
//!
//! Commands are not reads: what they write is in the event log with who wrote it.

use circle_audit::Purpose;

use super::access::Operation;

/// The purpose `operation` is recorded under by default; `None`: it discloses nothing.
pub fn default_purpose(operation: Operation) -> Option<Purpose> {
    use Operation as O;
    match operation {
        // The session sheet (its roster, attendance, check-ins and member notes), a
        // clinician's queue of unsigned member notes, a participant's attendance.
        O::GetSession | O::ListUnsignedNotes | O::GetAttendanceHistory => Some(Purpose::Treatment),
        // One line per attendee for the payer.
        O::ExportBilling => Some(Purpose::Payment),
        // A group's sessions: times and states, no participant.
        O::ListSessions => None,
        O::ScheduleSession
        | O::RescheduleSession
        | O::CancelSession
        | O::StartSession
        | O::CloseSession
        | O::RecordAttendance
        | O::RecordSessionCheckIn
        | O::WriteSharedNote
        | O::WriteMemberNote
        | O::SignNote
        | O::AmendNote => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as README.md shows it (printed with `--nocapture`).
    #[test]
    fn the_reads_that_disclose_are_the_clinical_ones() {
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
                ("GetSession", "treatment"),
                ("ListUnsignedNotes", "treatment"),
                ("GetAttendanceHistory", "treatment"),
                ("ExportBilling", "payment"),
            ]
        );
    }
}
