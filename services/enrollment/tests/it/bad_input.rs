use circle_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::support::{Service, admin, as_caller, group_body, reason_and_fields};

#[tokio::test]
async fn bad_group_input_names_the_fields_and_appends_nothing() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let before = service.stream_last_sequence().await?;

    let cases: Vec<(pb::CreateGroupRequest, Vec<&str>)> = vec![
        (
            pb::CreateGroupRequest {
                parent: clinic.clone(),
                group_id: String::new(),
                group: Some(pb::Group {
                    display_name: "   ".into(),
                    ..group_body(12)
                }),
                request_id: String::new(),
            },
            vec!["group.display_name"],
        ),
        (
            pb::CreateGroupRequest {
                parent: clinic.clone(),
                group_id: String::new(),
                group: Some(pb::Group {
                    display_name: "x".repeat(201),
                    ..group_body(12)
                }),
                request_id: String::new(),
            },
            vec!["group.display_name"],
        ),
        (
            pb::CreateGroupRequest {
                parent: clinic.clone(),
                group_id: String::new(),
                group: Some(group_body(0)),
                request_id: String::new(),
            },
            vec!["group.capacity"],
        ),
        (
            pb::CreateGroupRequest {
                parent: clinic.clone(),
                group_id: "Bad.Id".into(),
                group: Some(group_body(100_000)),
                request_id: String::new(),
            },
            vec!["group.capacity", "group_id"],
        ),
        (
            pb::CreateGroupRequest {
                parent: "networks/acme/clinic/north".into(),
                group_id: String::new(),
                group: Some(pb::Group {
                    modality: "Process Group".into(),
                    admission_mode: 9,
                    ..group_body(12)
                }),
                request_id: "has spaces".into(),
            },
            vec![
                "parent",
                "request_id",
                "group.modality",
                "group.admission_mode",
            ],
        ),
    ];
    for (request, mut expected_fields) in cases {
        let error = service
            .client
            .create_group(admin(request))
            .await
            .expect_err("must be refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        let (reason, mut fields) = reason_and_fields(&error);
        assert_eq!(reason, "INVALID_ARGUMENT");
        fields.sort();
        expected_fields.sort();
        assert_eq!(fields, expected_fields);
    }
    assert_eq!(
        service.stream_last_sequence().await?,
        before,
        "nothing appended"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_resources_are_not_found_and_append_nothing() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let participant = service.participant(&clinic, "p1").await?;
    let group = service.group(&clinic, "g1", 4).await?;
    let before = service.stream_last_sequence().await?;

    let error = service
        .client
        .create_group(admin(pb::CreateGroupRequest {
            parent: "networks/acme/clinics/nowhere".into(),
            group_id: String::new(),
            group: Some(group_body(12)),
            request_id: String::new(),
        }))
        .await
        .expect_err("unknown clinic");
    assert_eq!(
        (error.code(), reason_and_fields(&error).0.as_str()),
        (Code::NotFound, "CLINIC_NOT_FOUND")
    );

    let enroll = |parent: &str, participant: &str| pb::EnrollParticipantRequest {
        parent: parent.into(),
        participant: participant.into(),
        request_id: String::new(),
        etag: String::new(),
        facilitator_override: false,
    };
    let error = service
        .client
        .enroll_participant(admin(enroll(
            "networks/acme/clinics/north/groups/missing",
            &participant,
        )))
        .await
        .expect_err("unknown group");
    assert_eq!(
        (error.code(), reason_and_fields(&error).0.as_str()),
        (Code::NotFound, "GROUP_NOT_FOUND")
    );

    // The group exists, but not under this clinic.
    let error = service
        .client
        .enroll_participant(admin(enroll(
            "networks/acme/clinics/south/groups/g1",
            &participant,
        )))
        .await
        .expect_err("group of another clinic");
    assert_eq!(error.code(), Code::NotFound);

    let error = service
        .client
        .enroll_participant(admin(enroll(&group, "networks/acme/participants/ghost")))
        .await
        .expect_err("unknown participant");
    assert_eq!(
        (error.code(), reason_and_fields(&error).0.as_str()),
        (Code::NotFound, "PARTICIPANT_NOT_FOUND")
    );

    let error = service
        .client
        .get_group(admin(pb::GetGroupRequest {
            name: "networks/acme/clinics/north/groups/missing".into(),
            consistency_token: String::new(),
        }))
        .await
        .expect_err("unknown group");
    assert_eq!(error.code(), Code::NotFound);

    let error = service
        .client
        .enroll_participant(admin(enroll("groups/g1", "participant")))
        .await
        .expect_err("malformed names");
    let (_, mut fields) = reason_and_fields(&error);
    fields.sort();
    assert_eq!(
        (error.code(), fields),
        (
            Code::InvalidArgument,
            vec!["parent".to_owned(), "participant".to_owned()]
        )
    );

    assert_eq!(
        service.stream_last_sequence().await?,
        before,
        "nothing appended"
    );
    Ok(())
}

#[tokio::test]
async fn the_caller_must_belong_to_the_network_and_hold_a_staff_role() -> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let before = service.stream_last_sequence().await?;
    let request = || pb::CreateGroupRequest {
        parent: clinic.clone(),
        group_id: String::new(),
        group: Some(group_body(12)),
        request_id: String::new(),
    };
    let error = service
        .client
        .create_group(as_caller(request(), "other", "network-admin"))
        .await
        .expect_err("other network");
    assert_eq!(
        (error.code(), reason_and_fields(&error).0.as_str()),
        (Code::PermissionDenied, "WRONG_NETWORK")
    );
    let error = service
        .client
        .create_group(as_caller(request(), "acme", "participant"))
        .await
        .expect_err("participant role");
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = service
        .client
        .create_group(tonic::Request::new(request()))
        .await
        .expect_err("no caller");
    assert_eq!(error.code(), Code::Unauthenticated);
    assert_eq!(service.stream_last_sequence().await?, before);
    Ok(())
}

#[tokio::test]
async fn a_group_with_too_many_exception_dates_is_refused_for_good_and_appends_nothing()
-> anyhow::Result<()> {
    let mut service = Service::start().await?;
    let clinic = service.clinic("north").await?;
    let before = service.stream_last_sequence().await?;
    // 10,000 dates: far over the documented 500, in a request (≈140 KB) under the gRPC
    // message limit, so the field check refuses it, not the message size (100,000
    // dates, 1.4 MB, are refused as MESSAGE_TOO_LARGE before they are read).
    let exception_dates: Vec<String> = (0..10_000)
        .map(|day| {
            (chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap_or_default()
                + chrono::Duration::days(day))
            .to_string()
        })
        .collect();
    let request = || {
        admin(pb::CreateGroupRequest {
            parent: clinic.clone(),
            group_id: "huge".into(),
            group: Some(pb::Group {
                schedule: Some(pb::Schedule {
                    days: vec![pb::Weekday::Tuesday as i32],
                    start_time: "18:00".into(),
                    duration_minutes: 90,
                    start_date: "2027-01-01".into(),
                    exception_dates: exception_dates.clone(),
                    ..Default::default()
                }),
                ..group_body(12)
            }),
            request_id: "huge-1".into(),
        })
    };
    for attempt in 0..2 {
        let Err(refused) = service.client.create_group(request()).await else {
            anyhow::bail!("attempt {attempt}: 10,000 exception dates were accepted");
        };
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "attempt {attempt}: a request that can never succeed is not to be retried: {refused:?}"
        );
        let (_, fields) = reason_and_fields(&refused);
        assert_eq!(fields, vec!["group.schedule.exception_dates"]);
    }
    assert_eq!(
        service.stream_last_sequence().await?,
        before,
        "nothing appended"
    );
    Ok(())
}
