//! Who may run which query, over gRPC: the rows of the access table
//! (`app::access`) as a client sees them, for staff scoped to one clinic and for a
//! participant.

use circle_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::support::{Service, code_and_reason, membership_of};

/// A request from `role` acting as `actor`, scoped to `clinics` (comma-separated).
fn from<T>(
    message: T,
    role: &'static str,
    actor: &'static str,
    clinics: &'static str,
) -> tonic::Request<T> {
    let clinics: Vec<&str> = clinics
        .split(',')
        .filter(|clinic| !clinic.is_empty())
        .collect();
    crate::support::from(message, crate::support::NETWORK, role, actor, &clinics)
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    code_and_reason(result)
}

#[tokio::test]
async fn queries_follow_the_access_table_for_scoped_staff_and_participants() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    let north_group = service.group(&north, "g-north", 5).await?;
    let south_group = service.group(&south, "g-south", 5).await?;
    let sam = service.participant(&north, "sam").await?;
    let pat = service.participant(&south, "pat").await?;
    let enrolled = service.enroll(&north_group, &sam).await?;
    let token = enrolled.consistency_token;
    let out_of_scope = (Code::PermissionDenied, "CLINIC_OUT_OF_SCOPE".to_owned());
    let role_not_allowed = (Code::PermissionDenied, "ROLE_NOT_ALLOWED".to_owned());
    let not_yours = (Code::PermissionDenied, "NOT_YOUR_RECORD".to_owned());
    let client = &mut service.client;
    let intake = |message| from(message, "intake-coordinator", "i-1", "north");

    // An intake coordinator of north: the rosters and records of north only.
    let group = client
        .get_group(intake(pb::GetGroupRequest {
            name: north_group.clone(),
            consistency_token: token.clone(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        group.group.map(|group| group.name),
        Some(north_group.clone())
    );
    assert_eq!(
        refused(
            client
                .get_group(intake(pb::GetGroupRequest {
                    name: south_group.clone(),
                    consistency_token: String::new(),
                }))
                .await
        ),
        out_of_scope
    );
    assert_eq!(
        refused(
            client
                .list_group_members(from(
                    pb::ListGroupMembersRequest {
                        parent: south_group.clone(),
                        ..Default::default()
                    },
                    "intake-coordinator",
                    "i-1",
                    "north"
                ))
                .await
        ),
        out_of_scope
    );
    assert_eq!(
        refused(
            client
                .list_groups(from(
                    pb::ListGroupsRequest {
                        parent: south.clone(),
                        ..Default::default()
                    },
                    "intake-coordinator",
                    "i-1",
                    "north"
                ))
                .await
        ),
        out_of_scope
    );
    let members = client
        .list_group_members(from(
            pb::ListGroupMembersRequest {
                parent: north_group.clone(),
                consistency_token: token.clone(),
                ..Default::default()
            },
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await?
        .into_inner();
    assert_eq!(members.memberships.len(), 1);
    client
        .get_participant(from(
            pb::GetParticipantRequest {
                name: sam.clone(),
                consistency_token: String::new(),
            },
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await?;
    assert_eq!(
        refused(
            client
                .get_participant(from(
                    pb::GetParticipantRequest {
                        name: pat.clone(),
                        consistency_token: String::new(),
                    },
                    "intake-coordinator",
                    "i-1",
                    "north"
                ))
                .await
        ),
        out_of_scope,
        "a participant of another clinic"
    );
    // Someone who was never registered is refused exactly as someone of another
    // clinic is: the answer tells a clinic-scoped caller nothing about who exists
    // elsewhere.
    let absent = format!("networks/{}/participants/nobody", crate::support::NETWORK);
    let status = |result: Result<tonic::Response<pb::GetParticipantResponse>, tonic::Status>| {
        let status = result.expect_err("refused");
        (
            status.code(),
            status.message().to_owned(),
            code_and_reason(Err::<(), _>(status)).1,
        )
    };
    let elsewhere = status(
        client
            .get_participant(from(
                pb::GetParticipantRequest {
                    name: pat.clone(),
                    consistency_token: String::new(),
                },
                "intake-coordinator",
                "i-1",
                "north",
            ))
            .await,
    );
    let nowhere = status(
        client
            .get_participant(from(
                pb::GetParticipantRequest {
                    name: absent.clone(),
                    consistency_token: String::new(),
                },
                "intake-coordinator",
                "i-1",
                "north",
            ))
            .await,
    );
    assert_eq!(elsewhere, nowhere);
    assert_eq!(elsewhere.2, "CLINIC_OUT_OF_SCOPE");
    // A caller who may see participants anywhere learns that one does not exist.
    let (code, reason) = refused(
        client
            .get_participant(from(
                pb::GetParticipantRequest {
                    name: absent.clone(),
                    consistency_token: String::new(),
                },
                "network-admin",
                "a-1",
                "",
            ))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "PARTICIPANT_NOT_FOUND")
    );

    // Listing the whole network's groups shows clinic-scoped staff their clinics' only.
    let network_groups = |role, clinics| {
        from(
            pb::ListGroupsRequest {
                parent: format!("networks/{}", crate::support::NETWORK),
                consistency_token: token.clone(),
                ..Default::default()
            },
            role,
            "staff-x",
            clinics,
        )
    };
    let listed = |response: pb::ListGroupsResponse| -> Vec<String> {
        response
            .groups
            .into_iter()
            .map(|group| group.name)
            .collect()
    };
    assert_eq!(
        listed(
            client
                .list_groups(network_groups("intake-coordinator", "north"))
                .await?
                .into_inner()
        ),
        vec![north_group.clone()]
    );
    assert_eq!(
        listed(
            client
                .list_groups(network_groups("network-admin", ""))
                .await?
                .into_inner()
        ),
        vec![north_group.clone(), south_group.clone()]
    );

    // Clinics and the open-seat search are network-wide for every staff role.
    client
        .get_clinic(from(
            pb::GetClinicRequest {
                name: south.clone(),
                consistency_token: String::new(),
            },
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await?;
    let seats = client
        .search_open_seats(from(
            pb::SearchOpenSeatsRequest {
                parent: format!("networks/{}", crate::support::NETWORK),
                clinic: south.clone(),
                ..Default::default()
            },
            "intake-coordinator",
            "i-1",
            "north",
        ))
        .await;
    assert!(seats.is_ok(), "{seats:?}");

    // Staff of south see none of sam's memberships, which are all in north.
    let memberships = client
        .list_participant_memberships(from(
            pb::ListParticipantMembershipsRequest {
                parent: sam.clone(),
                consistency_token: token.clone(),
                ..Default::default()
            },
            "facilitator",
            "f-1",
            "south",
        ))
        .await?
        .into_inner();
    assert!(memberships.memberships.is_empty());

    // A participant: their own record and memberships, nothing else.
    let as_sam = |message| from(message, "participant", "sam", "");
    let own = client
        .get_participant(as_sam(pb::GetParticipantRequest {
            name: sam.clone(),
            consistency_token: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        own.participant.map(|participant| participant.name),
        Some(sam.clone())
    );
    assert_eq!(
        refused(
            client
                .get_participant(from(
                    pb::GetParticipantRequest {
                        name: pat.clone(),
                        consistency_token: String::new(),
                    },
                    "participant",
                    "sam",
                    ""
                ))
                .await
        ),
        not_yours
    );
    client
        .get_membership(from(
            pb::GetMembershipRequest {
                name: membership_of(&north_group, &sam),
                consistency_token: token.clone(),
            },
            "participant",
            "sam",
            "",
        ))
        .await?;
    let mine = client
        .list_participant_memberships(from(
            pb::ListParticipantMembershipsRequest {
                parent: sam.clone(),
                consistency_token: token.clone(),
                ..Default::default()
            },
            "participant",
            "sam",
            "",
        ))
        .await?
        .into_inner();
    assert_eq!(mine.memberships.len(), 1);
    assert_eq!(
        refused(
            client
                .list_participant_memberships(from(
                    pb::ListParticipantMembershipsRequest {
                        parent: pat.clone(),
                        ..Default::default()
                    },
                    "participant",
                    "sam",
                    ""
                ))
                .await
        ),
        not_yours
    );
    assert_eq!(
        refused(
            client
                .get_group(from(
                    pb::GetGroupRequest {
                        name: north_group.clone(),
                        consistency_token: String::new(),
                    },
                    "participant",
                    "sam",
                    ""
                ))
                .await
        ),
        role_not_allowed,
        "rosters are staff's"
    );
    assert_eq!(
        refused(
            client
                .get_clinic(from(
                    pb::GetClinicRequest {
                        name: north.clone(),
                        consistency_token: String::new(),
                    },
                    "participant",
                    "sam",
                    ""
                ))
                .await
        ),
        role_not_allowed
    );
    Ok(())
}

#[tokio::test]
async fn role_and_scope_are_refused_before_bad_fields_are_reported() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    let south_group = service.group(&south, "g-south", 5).await?;
    let out_of_scope = (Code::PermissionDenied, "CLINIC_OUT_OF_SCOPE".to_owned());
    let role_not_allowed = (Code::PermissionDenied, "ROLE_NOT_ALLOWED".to_owned());
    let client = &mut service.client;
    let bad_token = "not-a-page-token".to_owned();

    // A participant may not list clinics, whatever else is wrong with the request.
    assert_eq!(
        refused(
            client
                .list_clinics(from(
                    pb::ListClinicsRequest {
                        parent: "networks/acme".into(),
                        page_token: bad_token.clone(),
                        ..Default::default()
                    },
                    "participant",
                    "sam",
                    "",
                ))
                .await
        ),
        role_not_allowed
    );
    // North's intake coordinator is out of scope in south before the page is read.
    for roster in [true, false] {
        let result = if roster {
            client
                .list_group_members(from(
                    pb::ListGroupMembersRequest {
                        parent: south_group.clone(),
                        page_token: bad_token.clone(),
                        ..Default::default()
                    },
                    "intake-coordinator",
                    "i-1",
                    "north",
                ))
                .await
                .map(|_| ())
        } else {
            client
                .list_waitlist(from(
                    pb::ListWaitlistRequest {
                        parent: south_group.clone(),
                        page_token: bad_token.clone(),
                        ..Default::default()
                    },
                    "intake-coordinator",
                    "i-1",
                    "north",
                ))
                .await
                .map(|_| ())
        };
        assert_eq!(refused(result), out_of_scope);
    }
    // In scope, the bad field is what is wrong.
    let (code, reason) = refused(
        client
            .list_groups(from(
                pb::ListGroupsRequest {
                    parent: north.clone(),
                    page_token: bad_token.clone(),
                    ..Default::default()
                },
                "intake-coordinator",
                "i-1",
                "north",
            ))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "INVALID_ARGUMENT")
    );
    Ok(())
}
