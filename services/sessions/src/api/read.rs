//! Queries at the edge: each request is read into the application's input (typed
//! resource names, checked fields, every bad field at once), run by
//! [`crate::app::Queries`] (which checks the caller against the access table first),
//! and its answer mapped to protobuf.

use circle_audit::Purpose;
use circle_grpc::Violations;
use circle_names::{ClinicName, GroupName, ParticipantName, SessionName, StaffName};
use circle_proto::sessions::v1 as pb;
use tonic::Request;

use super::wire::{attendance_to_wire, note_to_wire, roster_entry_to_wire, session_to_wire};
use super::{ApiResult, SessionsApi, caller};
use crate::app::{
    AttendanceRecord, BillingLine, BillingPeriod, Input, Page, SessionFilter, UnsignedItem,
};
use crate::codec;

/// The page a request asks for, recording bad page fields.
fn page(violations: &mut Violations, page_size: i32, page_token: &str) -> Page {
    let (size, offset) = violations.page(page_size, page_token);
    Page { size, offset }
}

/// The purpose a request states in its `circle-purpose` metadata, recording a bad one
/// with the request's other bad fields.
fn stated_purpose<T>(violations: &mut Violations, request: &Request<T>) -> Option<Purpose> {
    violations
        .check(
            circle_audit::PURPOSE_METADATA,
            circle_audit::stated_purpose(request.metadata()),
        )
        .flatten()
}

fn next_page_token(page: Page, returned: usize) -> String {
    circle_grpc::next_page_token(page.offset, page.size, returned)
}

fn unsigned_item_to_wire(item: UnsignedItem) -> pb::UnsignedItem {
    pb::UnsignedItem {
        session: Some(session_to_wire(item.session)),
        note: item.note.map(note_to_wire),
    }
}

fn attendance_record_to_wire(record: AttendanceRecord) -> pb::AttendanceRecord {
    pb::AttendanceRecord {
        session: Some(session_to_wire(record.session)),
        status: attendance_to_wire(record.status) as i32,
        minutes_attended: record.minutes_attended,
    }
}

fn billing_line_to_wire(line: BillingLine) -> pb::BillingLine {
    pb::BillingLine {
        session: line.session.to_string(),
        participant: line.participant.to_string(),
        session_start_time: Some(codec::timestamp(line.session_start)),
        code: line.code,
        minutes_attended: line.minutes_attended,
        attendee_count: line.attendee_count,
        over_payer_cap: line.over_payer_cap,
    }
}

impl SessionsApi {
    pub(super) async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> ApiResult<pb::ListSessionsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let group =
            circle_grpc::named::<GroupName>(&caller, &mut violations, "parent", &request.parent)?;
        let any_time = circle_calendar::TimeRange::protobuf();
        let from = violations
            .check(
                "start_time",
                circle_calendar::parse_optional_time(request.start_time, &any_time),
            )
            .flatten();
        let until = violations
            .check(
                "end_time",
                circle_calendar::parse_optional_time(request.end_time, &any_time),
            )
            .flatten();
        if let (Some(from), Some(until)) = (from, until)
            && until < from
        {
            violations.add("end_time", "must not be before start_time");
        }
        let page = page(&mut violations, request.page_size, &request.page_token);
        let input = Input {
            resource: group,
            fields: violations
                .into_result()
                .map(|()| SessionFilter { from, until, page }),
            consistency_token: request.consistency_token,
            purpose: None,
        };
        let sessions = self.queries.list_sessions(&caller, input).await?;
        Ok(pb::ListSessionsResponse {
            next_page_token: next_page_token(page, sessions.len()),
            sessions: sessions.into_iter().map(session_to_wire).collect(),
        })
    }

    pub(super) async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> ApiResult<pb::GetSessionResponse> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let purpose = stated_purpose(&mut violations, &request);
        let request = request.into_inner();
        let session =
            circle_grpc::named::<SessionName>(&caller, &mut violations, "name", &request.name)?;
        let input = Input {
            resource: session,
            fields: violations.into_result(),
            consistency_token: request.consistency_token,
            purpose,
        };
        let sheet = self.queries.get_session(&caller, input).await?;
        let mut session = session_to_wire(sheet.session);
        session.shared_note = sheet.shared_note.map(note_to_wire);
        session.roster = sheet.roster.into_iter().map(roster_entry_to_wire).collect();
        Ok(pb::GetSessionResponse {
            session: Some(session),
        })
    }

    pub(super) async fn list_unsigned_notes(
        &self,
        request: Request<pb::ListUnsignedNotesRequest>,
    ) -> ApiResult<pb::ListUnsignedNotesResponse> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let purpose = stated_purpose(&mut violations, &request);
        let request = request.into_inner();
        let staff =
            circle_grpc::named::<StaffName>(&caller, &mut violations, "parent", &request.parent)?;
        let page = page(&mut violations, request.page_size, &request.page_token);
        let input = Input {
            resource: staff,
            fields: violations.into_result().map(|()| page),
            consistency_token: request.consistency_token,
            purpose,
        };
        let items = self.queries.list_unsigned_notes(&caller, input).await?;
        Ok(pb::ListUnsignedNotesResponse {
            next_page_token: next_page_token(page, items.len()),
            items: items.into_iter().map(unsigned_item_to_wire).collect(),
        })
    }

    pub(super) async fn get_attendance_history(
        &self,
        request: Request<pb::GetAttendanceHistoryRequest>,
    ) -> ApiResult<pb::GetAttendanceHistoryResponse> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let purpose = stated_purpose(&mut violations, &request);
        let request = request.into_inner();
        let participant = circle_grpc::named::<ParticipantName>(
            &caller,
            &mut violations,
            "participant",
            &request.participant,
        )?;
        let input = Input {
            resource: participant,
            fields: violations.into_result(),
            consistency_token: request.consistency_token,
            purpose,
        };
        let history = self.queries.get_attendance_history(&caller, input).await?;
        Ok(pb::GetAttendanceHistoryResponse {
            records: history
                .records
                .into_iter()
                .map(attendance_record_to_wire)
                .collect(),
            sessions_attended: history.sessions_attended,
            sessions_missed: history.sessions_missed,
            sessions_excused: history.sessions_excused,
            attendance_rate: history.attendance_rate,
        })
    }

    pub(super) async fn export_billing(
        &self,
        request: Request<pb::ExportBillingRequest>,
    ) -> ApiResult<pb::ExportBillingResponse> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let purpose = stated_purpose(&mut violations, &request);
        let request = request.into_inner();
        let clinic =
            circle_grpc::named::<ClinicName>(&caller, &mut violations, "clinic", &request.clinic)?;
        let billable = self.queries.billable_dates();
        let start = violations.check(
            "start_date",
            circle_calendar::parse_date(&request.start_date, &billable),
        );
        let end = violations.check(
            "end_date",
            circle_calendar::parse_date(&request.end_date, &billable),
        );
        let period = match (start, end) {
            (Some(start), Some(end)) => {
                violations.check("end_date", BillingPeriod::new(start, end))
            }
            _ => None,
        };
        let input = Input {
            resource: clinic,
            fields: violations.finish(period),
            consistency_token: request.consistency_token,
            purpose,
        };
        let lines = self.queries.export_billing(&caller, input).await?;
        Ok(pb::ExportBillingResponse {
            lines: lines.into_iter().map(billing_line_to_wire).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::SessionView;
    use crate::domain::Origin;

    #[test]
    fn a_session_maps_to_the_wire_with_its_full_name_and_etag()
    -> Result<(), circle_names::NameError> {
        let name = SessionName::parse("networks/acme/clinics/north/groups/tue/sessions/s-1")?;
        let starts_at = "2026-11-24T00:30:00Z".parse().unwrap_or_default();
        let wire = session_to_wire(SessionView {
            name,
            state: None,
            starts_at,
            duration_minutes: 90,
            origin: Origin::AdHoc,
            cancel_reason: String::new(),
            version: 7,
        });
        assert_eq!(
            wire.name,
            "networks/acme/clinics/north/groups/tue/sessions/s-1"
        );
        assert_eq!(wire.state, pb::SessionState::Unspecified as i32);
        assert_eq!(wire.origin, pb::SessionOrigin::AdHoc as i32);
        assert_eq!(wire.etag, "7");
        assert_eq!(wire.start_time, Some(codec::timestamp(starts_at)));
        Ok(())
    }
}
