//! Which reads of the enrollment service disclose participants' data, and so are
//! recorded in the audit log (`circle_audit`, the ENROLLMENT_AUDIT stream) before they
//! are answered, one record per participant the answer shows: the purpose a read is
//! recorded under when its caller states none (`circle-purpose`), `None` for an
//! operation that shows no participant's data.
//!
//! In an SUD program a membership identifies a patient (42 CFR Part 2), so rosters,
//! waitlists and memberships disclose as much as the profile does. Clinics, groups
//! (their counts, not their members) and open seats name no participant. Commands are
//! not reads: what they write is in the event log with who wrote it. The accounting
//! itself (`ListDisclosures`) is not recorded: it is the record of the disclosures,
//! read by the participant or the administrators answerable for it, and recording it
//! would make each reading of an accounting change it.

use circle_audit::Purpose;

use super::access::Operation;

/// The purpose `operation` is recorded under by default; `None`: it discloses nothing.
pub fn default_purpose(operation: Operation) -> Option<Purpose> {
    use Operation as O;
    match operation {
        // A participant's profile and consents, a membership and its history, a
        // group's roster and waitlist, a participant's memberships.
        O::GetParticipant
        | O::GetMembership
        | O::ListGroupMembers
        | O::ListWaitlist
        | O::ListParticipantMemberships => Some(Purpose::Treatment),
        O::GetClinic | O::ListClinics | O::GetGroup | O::ListGroups | O::SearchOpenSeats => None,
        O::ListDisclosures => None,
        O::CreateClinic
        | O::UpdateClinic
        | O::ArchiveClinic
        | O::CreateGroup
        | O::UpdateGroup
        | O::ArchiveGroup
        | O::RegisterParticipant
        | O::UpdateParticipant
        | O::RecordConsent
        | O::RevokeConsent
        | O::ForgetParticipant
        | O::EnrollParticipant
        | O::AcceptSeatOffer
        | O::DeclineSeatOffer
        | O::TransferParticipant
        | O::HoldMembership
        | O::ResumeMembership
        | O::DischargeParticipant => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as README.md shows it (printed with `--nocapture`).
    #[test]
    fn the_reads_that_disclose_are_those_that_name_participants() {
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
                ("GetParticipant", "treatment"),
                ("GetMembership", "treatment"),
                ("ListGroupMembers", "treatment"),
                ("ListWaitlist", "treatment"),
                ("ListParticipantMemberships", "treatment"),
            ]
        );
    }
}
