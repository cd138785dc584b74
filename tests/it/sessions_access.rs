//! Who may run the sessions service's queries, over gRPC: the access table decides
//! before anything is looked up, and a caller who may not run a query is told so
//! whatever else is wrong with the request (only then are bad fields reported).

use circle_proto::sessions::v1 as pb;
use tonic::Code;

use crate::support::{System, admin, as_caller, as_participant, refusal};

const NORTH_GROUP: &str = "networks/acme/clinics/north/groups/tue";
const SOUTH_SESSION: &str = "networks/acme/clinics/south/groups/tue/sessions/s-1";

fn denied(reason: &str) -> (Code, String, Vec<String>) {
    (Code::PermissionDenied, reason.to_owned(), Vec::new())
}

fn invalid(fields: &[&str]) -> (Code, String, Vec<String>) {
    (
        Code::InvalidArgument,
        "INVALID_ARGUMENT".to_owned(),
        fields.iter().map(|field| (*field).to_owned()).collect(),
    )
}

fn list_sessions(parent: &str) -> pb::ListSessionsRequest {
    pb::ListSessionsRequest {
        parent: parent.into(),
        page_token: "not-a-token".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_access_table_decides_before_a_query_reads_anything() -> anyhow::Result<()> {
    let system = System::start_at("2026-11-20T12:00:00Z").await?;
    let mut sessions = system.sessions.clone();

    // Sessions are staff work: a participant is refused on the role, even with a bad
    // name or page token; staff (intake included) get their bad fields back.
    assert_eq!(
        refusal(
            sessions
                .list_sessions(as_participant(list_sessions(NORTH_GROUP), "p-1"))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            sessions
                .get_session(as_participant(
                    pb::GetSessionRequest {
                        name: "not a name".into(),
                        ..Default::default()
                    },
                    "p-1",
                ))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            sessions
                .list_sessions(as_caller(
                    list_sessions(NORTH_GROUP),
                    "intake-coordinator",
                    "staff-7",
                ))
                .await
        ),
        invalid(&["page_token"])
    );
    assert_eq!(
        refusal(
            sessions
                .list_sessions(as_caller(
                    list_sessions("networks/acme/groups/tue"),
                    "facilitator",
                    "staff-1",
                ))
                .await
        ),
        invalid(&["parent", "page_token"])
    );
    // Clinic-scoped staff (scoped to north here) stay in their clinics.
    assert_eq!(
        refusal(
            sessions
                .get_session(as_caller(
                    pb::GetSessionRequest {
                        name: SOUTH_SESSION.into(),
                        ..Default::default()
                    },
                    "facilitator",
                    "staff-1",
                ))
                .await
        ),
        denied("CLINIC_OUT_OF_SCOPE")
    );
    assert_eq!(
        refusal(
            sessions
                .get_session(as_caller(
                    pb::GetSessionRequest {
                        name: format!("{NORTH_GROUP}/sessions/s-1"),
                        ..Default::default()
                    },
                    "intake-coordinator",
                    "staff-7",
                ))
                .await
        ),
        (Code::NotFound, "SESSION_NOT_FOUND".to_owned(), Vec::new())
    );
    // A name of another network is refused before anything else.
    assert_eq!(
        refusal(
            sessions
                .list_sessions(admin(list_sessions(
                    "networks/other/clinics/north/groups/tue"
                )))
                .await
        ),
        denied("WRONG_NETWORK")
    );

    // The unsigned-notes queue is clinicians' work, and a facilitator's own.
    let queue = |staff: &str| pb::ListUnsignedNotesRequest {
        parent: format!("networks/acme/staff/{staff}"),
        page_token: "not-a-token".into(),
        ..Default::default()
    };
    assert_eq!(
        refusal(
            sessions
                .list_unsigned_notes(as_caller(queue("staff-7"), "intake-coordinator", "staff-7"))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            sessions
                .list_unsigned_notes(as_caller(queue("staff-2"), "facilitator", "staff-1"))
                .await
        ),
        denied("NOT_YOUR_QUEUE")
    );
    assert_eq!(
        refusal(
            sessions
                .list_unsigned_notes(as_caller(queue("staff-2"), "clinic-admin", "staff-1"))
                .await
        ),
        invalid(&["page_token"])
    );

    // Attendance history: staff, or the participant themselves.
    let history = |participant: &str| pb::GetAttendanceHistoryRequest {
        participant: participant.into(),
        ..Default::default()
    };
    assert_eq!(
        refusal(
            sessions
                .get_attendance_history(as_participant(
                    history("networks/acme/participants/p-2"),
                    "p-1",
                ))
                .await
        ),
        denied("NOT_YOUR_RECORD")
    );
    assert_eq!(
        refusal(
            sessions
                .get_attendance_history(as_participant(history("p-1"), "p-1"))
                .await
        ),
        invalid(&["participant"])
    );
    let own = sessions
        .get_attendance_history(as_participant(
            history("networks/acme/participants/p-1"),
            "p-1",
        ))
        .await?
        .into_inner();
    assert!(own.records.is_empty());

    // Billing: clinic admins, in their clinics.
    let billing = |clinic: &str| pb::ExportBillingRequest {
        clinic: format!("networks/acme/clinics/{clinic}"),
        start_date: "yesterday".into(),
        end_date: "2026-11-30".into(),
        ..Default::default()
    };
    assert_eq!(
        refusal(
            sessions
                .export_billing(as_caller(billing("north"), "facilitator", "staff-1"))
                .await
        ),
        denied("ROLE_NOT_ALLOWED")
    );
    assert_eq!(
        refusal(
            sessions
                .export_billing(as_caller(billing("south"), "clinic-admin", "staff-3"))
                .await
        ),
        denied("CLINIC_OUT_OF_SCOPE")
    );
    assert_eq!(
        refusal(
            sessions
                .export_billing(as_caller(billing("north"), "clinic-admin", "staff-3"))
                .await
        ),
        invalid(&["start_date"])
    );
    Ok(())
}
