//! Clinics, groups and participants as records: updates by field mask, archiving,
//! listing and searching, consents.

use circle_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::support::{NETWORK, Service, admin, code_and_reason, group_body, reason_and_fields};

fn schedule(day: pb::Weekday, start_time: &str) -> pb::Schedule {
    pb::Schedule {
        days: vec![day as i32],
        start_time: start_time.into(),
        duration_minutes: 90,
        start_date: "2026-11-01".into(),
        ..Default::default()
    }
}

async fn scheduled_group(
    service: &mut Service,
    clinic: &str,
    group_id: &str,
    modality: &str,
    capacity: u32,
    schedule: pb::Schedule,
) -> anyhow::Result<pb::Group> {
    Ok(service
        .client
        .create_group(admin(pb::CreateGroupRequest {
            parent: clinic.into(),
            group_id: group_id.into(),
            group: Some(pb::Group {
                modality: modality.into(),
                schedule: Some(schedule),
                facilitators: vec![pb::Facilitator {
                    staff_id: "staff-1".into(),
                    role: pb::FacilitatorRole::Lead as i32,
                }],
                ..group_body(capacity)
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .group
        .unwrap_or_default())
}

#[tokio::test]
async fn a_group_is_updated_by_field_mask_and_archived_when_empty() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let created = scheduled_group(
        &mut service,
        &clinic,
        "g",
        "process",
        8,
        schedule(pb::Weekday::Tuesday, "18:30"),
    )
    .await?;
    assert_eq!(
        created.schedule.as_ref().map(|s| s.rrule.as_str()),
        Some("FREQ=WEEKLY;BYDAY=TU")
    );
    assert_eq!(
        created.time_zone, "America/Chicago",
        "the clinic's time zone"
    );

    let updated = service
        .client
        .update_group(admin(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: created.name.clone(),
                display_name: "Renamed".into(),
                modality: "ignored-because-not-in-mask".into(),
                facilitators: vec![
                    pb::Facilitator {
                        staff_id: "staff-1".into(),
                        role: pb::FacilitatorRole::Lead as i32,
                    },
                    pb::Facilitator {
                        staff_id: "peer-9".into(),
                        role: pb::FacilitatorRole::PeerLeader as i32,
                    },
                ],
                schedule: Some(schedule(pb::Weekday::Thursday, "09:00")),
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "display_name".into(),
                    "facilitators".into(),
                    "schedule".into(),
                ],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let group = service
        .client
        .get_group(admin(pb::GetGroupRequest {
            name: created.name.clone(),
            consistency_token: updated.consistency_token.clone(),
        }))
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    assert_eq!(
        (group.display_name.as_str(), group.modality.as_str()),
        ("Renamed", "process")
    );
    assert_eq!(group.facilitators.len(), 2);
    assert_eq!(
        group.schedule.as_ref().map(|s| s.start_time.as_str()),
        Some("09:00")
    );
    assert_eq!(group.etag, updated.consistency_token);
    // Thursday 26 Nov 2026 09:00 in Chicago; the clock stands at Friday 20 Nov noon.
    assert_eq!(
        group.next_session_time.map(|t| t.seconds),
        Some(
            "2026-11-26T15:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()?
                .timestamp()
        )
    );

    // The schedule and facilitator changes are events other services consume.
    let log = service.group_log("g").await?;
    assert!(log.iter().any(|(_, e)| matches!(
        e,
        circle_enrollment::domain::Event::GroupScheduleChanged { .. }
    )));
    assert!(log.iter().any(|(_, e)| matches!(
        e,
        circle_enrollment::domain::Event::GroupFacilitatorsChanged { .. }
    )));

    // An old etag is refused; the current one archives the empty group.
    let stale = service
        .client
        .archive_group(admin(pb::ArchiveGroupRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
            request_id: String::new(),
        }))
        .await;
    assert_eq!(
        code_and_reason(stale),
        (Code::Aborted, "ETAG_MISMATCH".to_owned())
    );
    let archived = service
        .client
        .archive_group(admin(pb::ArchiveGroupRequest {
            name: created.name.clone(),
            etag: group.etag.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert!(archived.group.is_some_and(|g| g.archived));
    let participant = service.participant(&clinic, "p").await?;
    let refused = service
        .client
        .enroll_participant(admin(pb::EnrollParticipantRequest {
            parent: created.name.clone(),
            participant,
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(refused),
        (Code::FailedPrecondition, "GROUP_ARCHIVED".to_owned())
    );
    let listed = service
        .client
        .list_groups(admin(pb::ListGroupsRequest {
            parent: clinic.clone(),
            consistency_token: archived.consistency_token.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(
        listed.groups.is_empty(),
        "archived groups are left out unless asked for"
    );
    Ok(())
}

#[tokio::test]
async fn groups_are_listed_with_filters_and_open_seats_found_soonest_first() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    // The clock stands at Friday 20 Nov 2026, 06:00 in Chicago.
    scheduled_group(
        &mut service,
        &north,
        "tue-evening",
        "process",
        2,
        schedule(pb::Weekday::Tuesday, "18:30"),
    )
    .await?;
    scheduled_group(
        &mut service,
        &north,
        "sat-morning",
        "process",
        2,
        schedule(pb::Weekday::Saturday, "10:00"),
    )
    .await?;
    scheduled_group(
        &mut service,
        &south,
        "mon-dbt",
        "dbt-skills",
        2,
        schedule(pb::Weekday::Monday, "12:00"),
    )
    .await?;
    let full = scheduled_group(
        &mut service,
        &south,
        "full",
        "process",
        1,
        schedule(pb::Weekday::Friday, "20:00"),
    )
    .await?;
    let participant = service.participant(&south, "p").await?;
    let last = service
        .enroll(&full.name, &participant)
        .await?
        .consistency_token;

    let process_groups = service
        .client
        .list_groups(admin(pb::ListGroupsRequest {
            parent: format!("networks/{NETWORK}"),
            modality: "process".into(),
            consistency_token: last.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let names: Vec<String> = process_groups
        .groups
        .iter()
        .map(|g| g.name.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["sat-morning", "tue-evening", "full"]);

    let search = |weekdays: Vec<i32>, earliest: &str, latest: &str| pb::SearchOpenSeatsRequest {
        parent: format!("networks/{NETWORK}"),
        weekdays,
        earliest_start_time: earliest.into(),
        latest_start_time: latest.into(),
        consistency_token: last.clone(),
        ..Default::default()
    };
    let open = service
        .client
        .search_open_seats(admin(search(vec![], "", "")))
        .await?
        .into_inner();
    let found: Vec<(String, u32)> = open
        .open_seats
        .iter()
        .map(|seat| {
            (
                seat.group
                    .as_ref()
                    .map(|g| g.name.rsplit('/').next().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
                seat.free_seats,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("sat-morning".to_owned(), 2),
            ("mon-dbt".to_owned(), 2),
            ("tue-evening".to_owned(), 2)
        ],
        "soonest next session first; the full group is left out"
    );
    let evenings = service
        .client
        .search_open_seats(admin(search(
            vec![pb::Weekday::Tuesday as i32, pb::Weekday::Monday as i32],
            "17:00",
            "21:00",
        )))
        .await?
        .into_inner();
    assert_eq!(evenings.open_seats.len(), 1);
    assert!(
        evenings.open_seats[0]
            .group
            .as_ref()
            .is_some_and(|g| g.name.ends_with("tue-evening"))
    );

    let backwards = service
        .client
        .search_open_seats(admin(search(vec![], "21:00", "17:00")))
        .await;
    let Err(status) = backwards else {
        anyhow::bail!("a reversed window must be refused")
    };
    assert_eq!(
        (status.code(), reason_and_fields(&status).1),
        (Code::InvalidArgument, vec!["latest_start_time".to_owned()])
    );
    Ok(())
}

#[tokio::test]
async fn consents_are_recorded_superseded_and_revoked_going_forward() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let participant = service.participant(&clinic, "sam").await?;
    let record = |consent: pb::Consent| pb::RecordConsentRequest {
        parent: participant.clone(),
        consent: Some(consent),
        request_id: String::new(),
    };
    let disclosure = service
        .client
        .record_consent(admin(record(pb::Consent {
            kind: pb::ConsentKind::TreatmentDisclosure as i32,
            recipient: "County drug court".into(),
            purpose: "Compliance with treatment conditions".into(),
            ..Default::default()
        })))
        .await?
        .into_inner()
        .consent
        .unwrap_or_default();
    // The participant gives peer-visibility consent themselves, then changes it.
    let own = |request, actor| crate::support::from(request, "acme", "participant", actor, &[]);
    let first = own(
        record(pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::Alias as i32,
            alias: "Sunny".into(),
            share_check_ins: true,
            ..Default::default()
        }),
        "sam",
    );
    let first = service
        .client
        .record_consent(first)
        .await?
        .into_inner()
        .consent
        .unwrap_or_default();
    let second = own(
        record(pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::FirstName as i32,
            share_check_ins: true,
            share_milestones: true,
            ..Default::default()
        }),
        "sam",
    );
    service.client.record_consent(second).await?;
    // Somebody else may not.
    let other = own(
        record(pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: 1,
            ..Default::default()
        }),
        "someone-else",
    );
    assert_eq!(
        code_and_reason(service.client.record_consent(other).await),
        (Code::PermissionDenied, "NOT_YOUR_RECORD".to_owned())
    );

    let revoked = service
        .client
        .revoke_consent(admin(pb::RevokeConsentRequest {
            name: disclosure.name.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert!(
        revoked
            .consent
            .as_ref()
            .is_some_and(|c| c.revoke_time.is_some())
    );
    let shown = service
        .client
        .get_participant(admin(pb::GetParticipantRequest {
            name: participant.clone(),
            consistency_token: revoked.consistency_token,
        }))
        .await?
        .into_inner()
        .participant
        .unwrap_or_default();
    let states: Vec<(i32, bool)> = shown
        .consents
        .iter()
        .map(|c| (c.kind, c.revoke_time.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            (pb::ConsentKind::TreatmentDisclosure as i32, true),
            (pb::ConsentKind::PeerVisibility as i32, true),
            (pb::ConsentKind::PeerVisibility as i32, false),
        ]
    );
    assert!(
        shown
            .consents
            .iter()
            .any(|c| c.name == first.name && c.revoke_time.is_some()),
        "the alias consent was superseded"
    );

    let bad = service
        .client
        .record_consent(admin(record(pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::Alias as i32,
            ..Default::default()
        })))
        .await;
    let Err(status) = bad else {
        anyhow::bail!("an alias display without an alias must be refused")
    };
    assert_eq!(
        reason_and_fields(&status).1,
        vec!["consent.alias".to_owned()]
    );
    Ok(())
}

#[tokio::test]
async fn a_participant_is_updated_by_field_mask_with_the_same_checks_as_at_registration()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    let participant = service.participant(&north, "sam").await?;
    let update = |profile: pb::ParticipantProfile, paths: &[&str], home: &str| {
        pb::UpdateParticipantRequest {
            participant: Some(pb::Participant {
                name: participant.clone(),
                home_clinic: home.into(),
                profile: Some(profile),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            request_id: String::new(),
        }
    };
    let before = service.stream_last_sequence().await?;
    let bad = service
        .client
        .update_participant(admin(update(
            pb::ParticipantProfile {
                email: "not an email".into(),
                ..Default::default()
            },
            &["profile.email"],
            "",
        )))
        .await;
    let Err(status) = bad else {
        anyhow::bail!("a bad email must be refused")
    };
    assert_eq!(
        reason_and_fields(&status).1,
        vec!["participant.profile.email".to_owned()]
    );
    assert_eq!(service.stream_last_sequence().await?, before);

    let updated = service
        .client
        .update_participant(admin(update(
            pb::ParticipantProfile {
                preferred_name: "Sammy".into(),
                email: "sam@example.org".into(),
                ..Default::default()
            },
            &["profile.preferred_name", "profile.email", "home_clinic"],
            &south,
        )))
        .await?
        .into_inner()
        .participant
        .unwrap_or_default();
    let profile = updated.profile.unwrap_or_default();
    assert_eq!(
        (
            profile.given_name.as_str(),
            profile.preferred_name.as_str(),
            profile.email.as_str(),
            updated.home_clinic.as_str()
        ),
        ("Sam", "Sammy", "sam@example.org", south.as_str())
    );
    Ok(())
}

#[tokio::test]
async fn a_clinic_is_read_listed_updated_and_archived_once_its_groups_are() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    service.clinic("south").await?;
    let group = service.group(&clinic, "g", 4).await?;
    let updated = service
        .client
        .update_clinic(admin(pb::UpdateClinicRequest {
            clinic: Some(pb::Clinic {
                name: clinic.clone(),
                time_zone: "America/Denver".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["time_zone".into()],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let read = service
        .client
        .get_clinic(admin(pb::GetClinicRequest {
            name: clinic.clone(),
            consistency_token: updated.consistency_token.clone(),
        }))
        .await?
        .into_inner()
        .clinic
        .unwrap_or_default();
    assert_eq!(
        (read.display_name.as_str(), read.time_zone.as_str()),
        ("Clinic north", "America/Denver")
    );

    let bad_zone = service
        .client
        .update_clinic(admin(pb::UpdateClinicRequest {
            clinic: Some(pb::Clinic {
                name: clinic.clone(),
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["time_zone".into()],
            }),
            request_id: String::new(),
        }))
        .await;
    let Err(status) = bad_zone else {
        anyhow::bail!("an unknown time zone must be refused")
    };
    assert_eq!(
        reason_and_fields(&status).1,
        vec!["clinic.time_zone".to_owned()]
    );

    let with_groups = service
        .client
        .archive_clinic(admin(pb::ArchiveClinicRequest {
            name: clinic.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(with_groups),
        (Code::FailedPrecondition, "CLINIC_HAS_GROUPS".to_owned())
    );
    let archived_group = service
        .client
        .archive_group(admin(pb::ArchiveGroupRequest {
            name: group,
            ..Default::default()
        }))
        .await?
        .into_inner();
    service
        .client
        .get_group(admin(pb::GetGroupRequest {
            name: archived_group.group.map(|g| g.name).unwrap_or_default(),
            consistency_token: archived_group.consistency_token,
        }))
        .await?;
    let archived = service
        .client
        .archive_clinic(admin(pb::ArchiveClinicRequest {
            name: clinic.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(archived.clinic.is_some_and(|c| c.archived));
    let listed = service
        .client
        .list_clinics(admin(pb::ListClinicsRequest {
            parent: format!("networks/{NETWORK}"),
            consistency_token: archived.consistency_token.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(
        listed
            .clinics
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        [format!("networks/{NETWORK}/clinics/south")]
    );
    let closed = service
        .client
        .create_group(admin(pb::CreateGroupRequest {
            parent: clinic.clone(),
            group: Some(group_body(4)),
            ..Default::default()
        }))
        .await;
    assert_eq!(
        code_and_reason(closed),
        (Code::FailedPrecondition, "CLINIC_ARCHIVED".to_owned())
    );
    Ok(())
}

#[tokio::test]
async fn a_participant_cannot_change_their_own_record() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let participant = service.participant(&north, "sam").await?;
    let before = service.stream_last_sequence().await?;
    let request = crate::support::from(
        pb::UpdateParticipantRequest {
            participant: Some(pb::Participant {
                name: participant.clone(),
                profile: Some(pb::ParticipantProfile {
                    preferred_name: "S".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["profile.preferred_name".into()],
            }),
            request_id: String::new(),
        },
        "acme",
        "participant",
        "sam",
        &[],
    );
    let refused = service.client.update_participant(request).await;
    assert_eq!(
        code_and_reason(refused),
        (Code::PermissionDenied, "ROLE_NOT_ALLOWED".to_owned())
    );
    assert_eq!(service.stream_last_sequence().await?, before);
    Ok(())
}

/// A participant command's answer is what a read shows at its consistency token: the
/// whole `Participant` (consents with their recorded and revoked times included), or
/// the consent it recorded or revoked. The clock moves by odd nanoseconds between
/// commands, so each time is a different one, kept to the microsecond as commits are.
#[tokio::test]
async fn a_participant_command_answers_with_what_a_read_of_its_token_shows() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let north = service.clinic("north").await?;
    let south = service.clinic("south").await?;
    let step = |service: &Service| {
        service
            .clock
            .advance(chrono::Duration::nanoseconds(1_234_567_891))
    };
    async fn read(
        service: &mut Service,
        participant: &str,
        token: &str,
    ) -> anyhow::Result<pb::Participant> {
        Ok(service
            .client
            .get_participant(admin(pb::GetParticipantRequest {
                name: participant.into(),
                consistency_token: token.into(),
            }))
            .await?
            .into_inner()
            .participant
            .unwrap_or_default())
    }
    fn consent_named<'a>(participant: &'a pb::Participant, name: &str) -> Option<&'a pb::Consent> {
        participant
            .consents
            .iter()
            .find(|consent| consent.name == name)
    }

    step(&service);
    let registered = service
        .client
        .register_participant(admin(pb::RegisterParticipantRequest {
            parent: format!("networks/{NETWORK}"),
            participant_id: "sam".into(),
            participant: Some(pb::Participant {
                home_clinic: north.clone(),
                profile: Some(pb::ParticipantProfile {
                    given_name: "Sam".into(),
                    family_name: "Rivera".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let answered = registered.participant.unwrap_or_default();
    let participant = answered.name.clone();
    assert_eq!(
        answered,
        read(&mut service, &participant, &registered.consistency_token).await?,
        "RegisterParticipant"
    );

    let record = |consent: pb::Consent| pb::RecordConsentRequest {
        parent: participant.clone(),
        consent: Some(consent),
        request_id: String::new(),
    };
    let mut recorded = Vec::new();
    for consent in [
        pb::Consent {
            kind: pb::ConsentKind::TreatmentDisclosure as i32,
            recipient: "County drug court".into(),
            purpose: "Compliance with treatment conditions".into(),
            ..Default::default()
        },
        pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::Alias as i32,
            alias: "Sunny".into(),
            share_check_ins: true,
            ..Default::default()
        },
        // Supersedes the alias consent in the same commit.
        pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::FirstName as i32,
            share_milestones: true,
            ..Default::default()
        },
    ] {
        step(&service);
        let answer = service
            .client
            .record_consent(admin(record(consent)))
            .await?
            .into_inner();
        let consent = answer.consent.unwrap_or_default();
        let shown = read(&mut service, &participant, &answer.consistency_token).await?;
        assert_eq!(
            Some(&consent),
            consent_named(&shown, &consent.name),
            "RecordConsent"
        );
        assert!(consent.record_time.is_some());
        recorded.push(consent);
    }

    step(&service);
    let revoked = service
        .client
        .revoke_consent(admin(pb::RevokeConsentRequest {
            name: recorded[0].name.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let consent = revoked.consent.unwrap_or_default();
    let shown = read(&mut service, &participant, &revoked.consistency_token).await?;
    assert_eq!(
        Some(&consent),
        consent_named(&shown, &consent.name),
        "RevokeConsent"
    );
    assert!(consent.revoke_time.is_some());

    step(&service);
    let updated = service
        .client
        .update_participant(admin(pb::UpdateParticipantRequest {
            participant: Some(pb::Participant {
                name: participant.clone(),
                home_clinic: south.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["home_clinic".into()],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let answered = updated.participant.unwrap_or_default();
    let shown = read(&mut service, &participant, &updated.consistency_token).await?;
    assert_eq!(answered, shown, "UpdateParticipant");
    let times: Vec<(bool, bool)> = shown
        .consents
        .iter()
        .map(|consent| (consent.record_time.is_some(), consent.revoke_time.is_some()))
        .collect();
    assert_eq!(times, [(true, true), (true, true), (true, false)]);
    Ok(())
}

/// A clinic's and a group's command answers are what a read at their consistency
/// token shows: one view, one mapping to protobuf (the group's next session included,
/// computed at the same time, and its counts once it has a member and a waitlist).
#[tokio::test]
async fn clinic_and_group_command_answers_are_what_a_read_of_their_token_shows()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let created = service
        .client
        .create_clinic(admin(pb::CreateClinicRequest {
            parent: format!("networks/{NETWORK}"),
            clinic_id: "north".into(),
            clinic: Some(pb::Clinic {
                display_name: "North".into(),
                time_zone: "America/Chicago".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let clinic = created.clinic.unwrap_or_default();
    let read_clinic = |token: String| pb::GetClinicRequest {
        name: clinic.name.clone(),
        consistency_token: token,
    };
    assert_eq!(
        Some(clinic.clone()),
        service
            .client
            .get_clinic(admin(read_clinic(created.consistency_token)))
            .await?
            .into_inner()
            .clinic
    );
    let updated = service
        .client
        .update_clinic(admin(pb::UpdateClinicRequest {
            clinic: Some(pb::Clinic {
                name: clinic.name.clone(),
                display_name: "North side".into(),
                etag: clinic.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        updated.clinic,
        service
            .client
            .get_clinic(admin(read_clinic(updated.consistency_token)))
            .await?
            .into_inner()
            .clinic
    );

    let group = scheduled_group(
        &mut service,
        &clinic.name,
        "g",
        "process",
        1,
        schedule(pb::Weekday::Tuesday, "18:30"),
    )
    .await?;
    let read_group = |token: &str| pb::GetGroupRequest {
        name: group.name.clone(),
        consistency_token: token.into(),
    };
    assert!(group.next_session_time.is_some());
    assert_eq!(
        Some(group.clone()),
        service
            .client
            .get_group(admin(read_group(&group.etag)))
            .await?
            .into_inner()
            .group
    );
    let first = service.participant(&clinic.name, "sam").await?;
    let second = service.participant(&clinic.name, "pat").await?;
    service.enroll(&group.name, &first).await?;
    let waitlisted = service.enroll(&group.name, &second).await?;
    let current = service
        .client
        .get_group(admin(read_group(&waitlisted.consistency_token)))
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    let updated = service
        .client
        .update_group(admin(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.name.clone(),
                display_name: "Renamed".into(),
                etag: current.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let answered = updated.group.unwrap_or_default();
    assert_eq!(
        (answered.active_member_count, answered.waitlist_count),
        (1, 1)
    );
    assert_eq!(
        Some(answered),
        service
            .client
            .get_group(admin(read_group(&updated.consistency_token)))
            .await?
            .into_inner()
            .group
    );
    Ok(())
}
