//! The enrollment service's matrix (README: "Who may do what in enrollment").
//!
//! Placements: `north` and `south` (a clinic, or its `tue` group: `north` is the
//! callers' clinic); `network` (the network itself); `sam` and `pat` (a participant's
//! record — `sam`'s home and group are in north, `pat`'s in south — or their membership
//! in their `tue` group); `nobody` (a participant never registered); `across` (a
//! transfer from north's `tue` to south's `thu`, or enrolling pat, of south, in north's
//! `thu`).

use circle_proto::enrollment::v1 as pb;
use pb::enrollment_service_client::EnrollmentServiceClient;
use tonic::transport::Channel;

use super::{ACME, Answer, OTHER, Row, with_token};

/// What every caller may do in enrollment, and where. Queries first: they must answer
/// `ok` on what was seeded, before any command changed it.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // rpc                            placement    admin  cadmin fac    facx   intake sam    pat    svc
    ("GetClinic",                     "north",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("GetClinic",                     "south",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("ListClinics",                   "network",  "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("GetGroup",                      "north",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("GetGroup",                      "south",    "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    ("ListGroups",                    "north",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("ListGroups",                    "south",    "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    ("ListGroups",                    "network",  "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("GetParticipant",                "sam",      "ok     ok     ok     ok     ok     ok     RECORD ok"),
    ("ListDisclosures",               "sam",      "ok     ok     ROLE   ROLE   ROLE   ok     RECORD ROLE"),
    ("ListDisclosures",               "pat",      "ok     CLINIC ROLE   ROLE   ROLE   RECORD ok     ROLE"),
    ("ListDisclosures",               "nobody",   "pass   CLINIC ROLE   ROLE   ROLE   RECORD RECORD ROLE"),
    ("GetParticipant",                "pat",      "ok     CLINIC CLINIC CLINIC CLINIC RECORD ok     ok"),
    ("GetParticipant",                "nobody",   "pass   CLINIC CLINIC CLINIC CLINIC RECORD RECORD pass"),
    ("GetMembership",                 "sam",      "ok     ok     ok     ok     ok     ok     RECORD ok"),
    ("GetMembership",                 "pat",      "ok     CLINIC CLINIC CLINIC CLINIC RECORD ok     ok"),
    ("ListGroupMembers",              "north",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("ListGroupMembers",              "south",    "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    ("ListWaitlist",                  "north",    "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    ("ListWaitlist",                  "south",    "ok     CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   ok"),
    ("ListParticipantMemberships",    "sam",      "ok     ok     ok     ok     ok     ok     RECORD ok"),
    ("ListParticipantMemberships",    "pat",      "ok     ok     ok     ok     ok     RECORD ok     ok"),
    ("SearchOpenSeats",               "network",  "ok     ok     ok     ok     ok     ROLE   ROLE   ok"),
    // Commands. A permitted caller's command may run (each row sends one request id,
    // so the first runs and the rest are its retries) or be refused by the domain.
    ("CreateClinic",                  "network",  "pass   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("UpdateClinic",                  "north",    "pass   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("UpdateClinic",                  "south",    "pass   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("CreateGroup",                   "north",    "pass   pass   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("CreateGroup",                   "south",    "pass   CLINIC ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("UpdateGroup",                   "north",    "pass   pass   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("UpdateGroup",                   "south",    "pass   CLINIC ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("RegisterParticipant",           "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("RegisterParticipant",           "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("UpdateParticipant",             "sam",      "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("UpdateParticipant",             "pat",      "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("UpdateParticipant",             "nobody",   "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("RecordConsent",                 "sam",      "pass   pass   pass   pass   pass   pass   RECORD pass"),
    ("RecordConsent",                 "pat",      "pass   CLINIC CLINIC CLINIC CLINIC RECORD pass   pass"),
    ("RecordConsent",                 "nobody",   "pass   CLINIC CLINIC CLINIC CLINIC RECORD RECORD pass"),
    ("RevokeConsent",                 "sam",      "pass   pass   pass   pass   pass   pass   RECORD pass"),
    ("RevokeConsent",                 "pat",      "pass   CLINIC CLINIC CLINIC CLINIC RECORD pass   pass"),
    ("EnrollParticipant",             "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("EnrollParticipant",             "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("EnrollParticipant",             "across",   "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("EnrollParticipant",             "nobody",   "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("AcceptSeatOffer",               "sam",      "pass   pass   pass   pass   pass   pass   RECORD pass"),
    ("AcceptSeatOffer",               "pat",      "pass   CLINIC CLINIC CLINIC CLINIC RECORD pass   pass"),
    ("DeclineSeatOffer",              "sam",      "pass   pass   pass   pass   pass   pass   RECORD pass"),
    ("DeclineSeatOffer",              "pat",      "pass   CLINIC CLINIC CLINIC CLINIC RECORD pass   pass"),
    ("HoldMembership",                "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("HoldMembership",                "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("ResumeMembership",              "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("ResumeMembership",              "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("TransferParticipant",           "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("TransferParticipant",           "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("TransferParticipant",           "across",   "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("DischargeParticipant",          "north",    "pass   pass   pass   pass   pass   ROLE   ROLE   pass"),
    ("DischargeParticipant",          "south",    "pass   CLINIC CLINIC CLINIC CLINIC ROLE   ROLE   pass"),
    ("ArchiveGroup",                  "north",    "pass   pass   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("ArchiveGroup",                  "south",    "pass   CLINIC ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    ("ArchiveClinic",                 "north",    "pass   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   pass"),
    // Last: it forgets pat for good (network admins only; not even a calling service).
    ("ForgetParticipant",             "pat",      "pass   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE   ROLE"),
];

fn clinic(network: &str, clinic: &str) -> String {
    format!("networks/{network}/clinics/{clinic}")
}

/// A clinic's group meeting on `day` (group ids are the network's: `north-tue`).
fn group(network: &str, clinic_id: &str, day: &str) -> String {
    format!("{}/groups/{clinic_id}-{day}", clinic(network, clinic_id))
}

fn participant(network: &str, participant: &str) -> String {
    format!("networks/{network}/participants/{participant}")
}

/// A participant placement: who, and their home clinic (where their `tue` membership
/// is).
fn person(place: &str) -> (&'static str, &'static str) {
    match place {
        "pat" => ("pat", "south"),
        "nobody" => ("nobody", "north"),
        _ => ("sam", "north"),
    }
}

/// A clinic placement: the clinic, and who is the member of its `tue` group.
fn place_clinic(place: &str) -> (&'static str, &'static str) {
    match place {
        "south" => ("south", "pat"),
        _ => ("north", "sam"),
    }
}

fn membership(network: &str, clinic_id: &str, member: &str) -> String {
    format!("{}/memberships/{member}", group(network, clinic_id, "tue"))
}

/// The consent `seed` records for `member` (its id derives from the request id, as
/// every created record's does).
fn consent(network: &str, member: &str) -> String {
    let id = circle_enrollment::app::commands::derived_id(
        network,
        "consent_id",
        &format!("{member}/seed-consent-{member}"),
    );
    format!("{}/consents/{id}", participant(network, member))
}

fn weekly(day: pb::Weekday) -> pb::Schedule {
    pb::Schedule {
        days: vec![day as i32],
        start_time: "18:30".into(),
        duration_minutes: 90,
        start_date: "2026-11-01".into(),
        ..Default::default()
    }
}

fn new_group(lead: &str) -> pb::Group {
    pb::Group {
        display_name: "Evening process group".into(),
        modality: "process".into(),
        level_of_care: "intensive-outpatient".into(),
        capacity: 12,
        facilitators: vec![pb::Facilitator {
            staff_id: lead.into(),
            role: pb::FacilitatorRole::Lead as i32,
        }],
        schedule: Some(weekly(pb::Weekday::Tuesday)),
        ..Default::default()
    }
}

fn profile(given: &str) -> pb::ParticipantProfile {
    pb::ParticipantProfile {
        given_name: given.into(),
        family_name: "Rivera".into(),
        ..Default::default()
    }
}

fn peer_consent() -> pb::Consent {
    pb::Consent {
        kind: pb::ConsentKind::PeerVisibility as i32,
        display: pb::PeerDisplay::FirstName as i32,
        share_check_ins: true,
        ..Default::default()
    }
}

/// One call of `rpc` at `place`, with names of `network`, as the bearer of `token`.
async fn call(
    client: &EnrollmentServiceClient<Channel>,
    rpc: &'static str,
    place: &'static str,
    network: &'static str,
    token: String,
) -> anyhow::Result<Answer> {
    let mut client = client.clone();
    let n = network;
    let request_id = format!("matrix-{}-{place}", rpc.to_ascii_lowercase());
    let (clinic_id, member) = place_clinic(place);
    let (who, home) = person(place);
    let t = token.as_str();
    Ok(match rpc {
        "GetClinic" => Answer::of(
            client
                .get_clinic(with_token(
                    pb::GetClinicRequest {
                        name: clinic(n, clinic_id),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListClinics" => Answer::of(
            client
                .list_clinics(with_token(
                    pb::ListClinicsRequest {
                        parent: format!("networks/{n}"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "GetGroup" => Answer::of(
            client
                .get_group(with_token(
                    pb::GetGroupRequest {
                        name: group(n, clinic_id, "tue"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListGroups" => Answer::of(
            client
                .list_groups(with_token(
                    pb::ListGroupsRequest {
                        parent: if place == "network" {
                            format!("networks/{n}")
                        } else {
                            clinic(n, clinic_id)
                        },
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "GetParticipant" => Answer::of(
            client
                .get_participant(with_token(
                    pb::GetParticipantRequest {
                        name: participant(n, who),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "GetMembership" => Answer::of(
            client
                .get_membership(with_token(
                    pb::GetMembershipRequest {
                        name: membership(n, home, who),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListGroupMembers" => Answer::of(
            client
                .list_group_members(with_token(
                    pb::ListGroupMembersRequest {
                        parent: group(n, clinic_id, "tue"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListWaitlist" => Answer::of(
            client
                .list_waitlist(with_token(
                    pb::ListWaitlistRequest {
                        parent: group(n, clinic_id, "tue"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListParticipantMemberships" => Answer::of(
            client
                .list_participant_memberships(with_token(
                    pb::ListParticipantMembershipsRequest {
                        parent: participant(n, who),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "ListDisclosures" => Answer::of(
            client
                .list_disclosures(with_token(
                    pb::ListDisclosuresRequest {
                        parent: participant(n, who),
                        start_time: Some(prost_types::Timestamp {
                            seconds: 1_767_225_600, // 2026-01-01
                            nanos: 0,
                        }),
                        end_time: Some(prost_types::Timestamp {
                            seconds: 1_798_761_600, // 2027-01-01
                            nanos: 0,
                        }),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "SearchOpenSeats" => Answer::of(
            client
                .search_open_seats(with_token(
                    pb::SearchOpenSeatsRequest {
                        parent: format!("networks/{n}"),
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "CreateClinic" => Answer::of(
            client
                .create_clinic(with_token(
                    pb::CreateClinicRequest {
                        parent: format!("networks/{n}"),
                        clinic_id: "east".into(),
                        clinic: Some(pb::Clinic {
                            display_name: "East".into(),
                            time_zone: "America/Chicago".into(),
                            ..Default::default()
                        }),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "UpdateClinic" => Answer::of(
            client
                .update_clinic(with_token(
                    pb::UpdateClinicRequest {
                        clinic: Some(pb::Clinic {
                            name: clinic(n, clinic_id),
                            display_name: format!("Clinic {clinic_id}, renamed"),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ArchiveClinic" => Answer::of(
            client
                .archive_clinic(with_token(
                    pb::ArchiveClinicRequest {
                        name: clinic(n, clinic_id),
                        request_id,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "CreateGroup" => Answer::of(
            client
                .create_group(with_token(
                    pb::CreateGroupRequest {
                        parent: clinic(n, clinic_id),
                        group_id: format!("{clinic_id}-wed"),
                        group: Some(new_group("staff-1")),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "UpdateGroup" => Answer::of(
            client
                .update_group(with_token(
                    pb::UpdateGroupRequest {
                        group: Some(pb::Group {
                            name: group(n, clinic_id, "tue"),
                            display_name: "Tuesday group, renamed".into(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ArchiveGroup" => Answer::of(
            client
                .archive_group(with_token(
                    pb::ArchiveGroupRequest {
                        name: group(n, clinic_id, "thu"),
                        request_id,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "RegisterParticipant" => Answer::of(
            client
                .register_participant(with_token(
                    pb::RegisterParticipantRequest {
                        parent: format!("networks/{n}"),
                        participant_id: format!("new-{clinic_id}"),
                        participant: Some(pb::Participant {
                            home_clinic: clinic(n, clinic_id),
                            profile: Some(profile("Robin")),
                            ..Default::default()
                        }),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "UpdateParticipant" => Answer::of(
            client
                .update_participant(with_token(
                    pb::UpdateParticipantRequest {
                        participant: Some(pb::Participant {
                            name: participant(n, who),
                            profile: Some(pb::ParticipantProfile {
                                preferred_name: "Sunny".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["profile.preferred_name".into()],
                        }),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RecordConsent" => Answer::of(
            client
                .record_consent(with_token(
                    pb::RecordConsentRequest {
                        parent: participant(n, who),
                        consent: Some(peer_consent()),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "RevokeConsent" => Answer::of(
            client
                .revoke_consent(with_token(
                    pb::RevokeConsentRequest {
                        name: consent(n, who),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ForgetParticipant" => Answer::of(
            client
                .forget_participant(with_token(
                    pb::ForgetParticipantRequest {
                        name: participant(n, who),
                        reason: pb::ForgetReason::ParticipantRequest as i32,
                        reference: "matrix".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "EnrollParticipant" => Answer::of(
            client
                .enroll_participant(with_token(
                    pb::EnrollParticipantRequest {
                        // Across: pat, of south, into north's group; nobody: someone
                        // never registered, into north's.
                        parent: group(n, clinic_id, "thu"),
                        participant: participant(
                            n,
                            match place {
                                "across" => "pat",
                                "nobody" => "nobody",
                                _ => member,
                            },
                        ),
                        request_id,
                        ..Default::default()
                    },
                    t,
                ))
                .await,
        ),
        "AcceptSeatOffer" => Answer::of(
            client
                .accept_seat_offer(with_token(
                    pb::AcceptSeatOfferRequest {
                        name: membership(n, home, who),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "DeclineSeatOffer" => Answer::of(
            client
                .decline_seat_offer(with_token(
                    pb::DeclineSeatOfferRequest {
                        name: membership(n, home, who),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "HoldMembership" => Answer::of(
            client
                .hold_membership(with_token(
                    pb::HoldMembershipRequest {
                        name: membership(n, clinic_id, member),
                        reason: "Travelling".into(),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "ResumeMembership" => Answer::of(
            client
                .resume_membership(with_token(
                    pb::ResumeMembershipRequest {
                        name: membership(n, clinic_id, member),
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        "TransferParticipant" => {
            let (from, to) = match place {
                "across" => (membership(n, "north", "sam"), group(n, "south", "thu")),
                _ => (membership(n, clinic_id, member), group(n, clinic_id, "thu")),
            };
            Answer::of(
                client
                    .transfer_participant(with_token(
                        pb::TransferParticipantRequest {
                            name: from,
                            target_group: to,
                            request_id,
                        },
                        t,
                    ))
                    .await,
            )
        }
        "DischargeParticipant" => Answer::of(
            client
                .discharge_participant(with_token(
                    pb::DischargeParticipantRequest {
                        name: membership(n, clinic_id, member),
                        reason: pb::EndReason::Completed as i32,
                        request_id,
                    },
                    t,
                ))
                .await,
        ),
        other => anyhow::bail!("no request for {other}"),
    })
}

/// What the matrix needs in `network`, made by that network's admin: clinics north and
/// south, groups `tue` and `thu` in each (north's led by staff-1, south's by
/// staff-3), sam (north) and pat (south) as members of their clinic's `tue`, each with
/// a recorded consent.
async fn seed(client: &EnrollmentServiceClient<Channel>, network: &str) -> anyhow::Result<()> {
    let mut client = client.clone();
    let admin = circle_testkit::token(network, "admin-1", &["network-admin"], &[]);
    let t = admin.as_str();
    let mut last = String::new();
    for (clinic_id, lead, member) in [("north", "staff-1", "sam"), ("south", "staff-3", "pat")] {
        client
            .create_clinic(with_token(
                pb::CreateClinicRequest {
                    parent: format!("networks/{network}"),
                    clinic_id: clinic_id.into(),
                    clinic: Some(pb::Clinic {
                        display_name: format!("Clinic {clinic_id}"),
                        time_zone: "America/Chicago".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        for day in ["tue", "thu"] {
            client
                .create_group(with_token(
                    pb::CreateGroupRequest {
                        parent: clinic(network, clinic_id),
                        group_id: format!("{clinic_id}-{day}"),
                        group: Some(new_group(lead)),
                        request_id: String::new(),
                    },
                    t,
                ))
                .await?;
        }
        client
            .register_participant(with_token(
                pb::RegisterParticipantRequest {
                    parent: format!("networks/{network}"),
                    participant_id: member.into(),
                    participant: Some(pb::Participant {
                        home_clinic: clinic(network, clinic_id),
                        profile: Some(profile(member)),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                t,
            ))
            .await?;
        let recorded = client
            .record_consent(with_token(
                pb::RecordConsentRequest {
                    parent: participant(network, member),
                    consent: Some(peer_consent()),
                    request_id: format!("seed-consent-{member}"),
                },
                t,
            ))
            .await?
            .into_inner();
        anyhow::ensure!(
            recorded.consent.map(|consent| consent.name) == Some(consent(network, member)),
            "the matrix names {member}'s consent as enrollment does"
        );
        last = client
            .enroll_participant(with_token(
                pb::EnrollParticipantRequest {
                    parent: group(network, clinic_id, "tue"),
                    participant: participant(network, member),
                    ..Default::default()
                },
                t,
            ))
            .await?
            .into_inner()
            .consistency_token;
    }
    // Read what was written, so the queries answer on all of it.
    client
        .list_group_members(with_token(
            pb::ListGroupMembersRequest {
                parent: group(network, "south", "tue"),
                consistency_token: last,
                ..Default::default()
            },
            t,
        ))
        .await?;
    Ok(())
}

#[tokio::test]
async fn every_enrollment_rpc_admits_exactly_whom_its_row_names() -> anyhow::Result<()> {
    let rpcs = circle_proto::rpc_names("circle.enrollment.v1", "EnrollmentService")?;
    super::check_table(TABLE, &rpcs)?;
    let system = super::system("2026-11-20T12:00:00Z").await?;
    let client = system.enrollment.clone();
    let call = |rpc, place, network, token| call(&client, rpc, place, network, token);

    // Another network's names, before that network has anything.
    let before = super::across_networks(TABLE, call).await?;

    seed(&client, ACME).await?;
    let cells = super::run_in_network(TABLE, call).await?;
    assert_eq!(cells, TABLE.len() * super::CALLERS.len());

    // The same names once another network's admin made them: the same answers.
    seed(&client, OTHER).await?;
    let after = super::across_networks(TABLE, call).await?;
    super::same_answers(TABLE, &before, &after)
}
