//! Crypto-shredding in enrollment, over real gRPC against real NATS and PostgreSQL: a
//! participant's personal fields (profile, consents' free text, a hold's reason) are
//! sealed everywhere they rest — every message of the ENROLLMENT stream, every text
//! column of enrollment's tables — while the answers show them in clear; and
//! `ForgetParticipant` (network admins only) makes every read show them redacted, ends
//! the record (every further command refused) and leaves everyone else's data as it
//! was.

use circle_proto::enrollment::v1 as enrollment;
use tonic::Code;

use crate::support;
use crate::support::{NETWORK, System, admin, as_caller, refusal};

const START: &str = "2026-11-20T12:00:00Z";

/// Sam's personal text: unusual enough that finding it anywhere is a leak.
const SAM_PROFILE: [&str; 5] = [
    "Quintessa",
    "Marchbanks",
    "Quin-Q",
    "quintessa.m@example.org",
    "+1 555 0199",
];
const SAM_ALIAS: &str = "Moonbeam Tiger";
const SAM_RECIPIENT: &str = "Officer Delacroix";
const SAM_PURPOSE: &str = "drug court compliance";
const SAM_HOLD_REASON: &str = "inpatient detox at Saint Brigid";

/// Everything personal the scene records about sam.
fn sam_plaintext() -> Vec<&'static str> {
    let mut all = SAM_PROFILE.to_vec();
    all.extend([SAM_ALIAS, SAM_RECIPIENT, SAM_PURPOSE, SAM_HOLD_REASON]);
    all
}

/// A group's name, as the scene makes it: not personal, so it is in clear at rest (the
/// scans below must find it, or they would find nothing at all).
const GROUP_DISPLAY_NAME: &str = "Tuesday evening process group";

struct Scene {
    system: System,
    group: String,
    sam: String,
    pat: String,
    /// The membership sam's hold is on.
    sam_membership: String,
    /// The consistency token of the scene's last write.
    token: String,
}

fn profile(values: [&str; 5]) -> enrollment::ParticipantProfile {
    let [given_name, family_name, preferred_name, email, phone] = values.map(str::to_owned);
    enrollment::ParticipantProfile {
        given_name,
        family_name,
        preferred_name,
        email,
        phone,
    }
}

async fn register(
    system: &mut System,
    clinic: &str,
    participant_id: &str,
    values: [&str; 5],
) -> anyhow::Result<enrollment::Participant> {
    system
        .enrollment
        .register_participant(admin(enrollment::RegisterParticipantRequest {
            parent: format!("networks/{NETWORK}"),
            participant_id: participant_id.into(),
            participant: Some(enrollment::Participant {
                home_clinic: clinic.into(),
                profile: Some(profile(values)),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .participant
        .ok_or_else(|| anyhow::anyhow!("a registration answers with the record"))
}

async fn consent(
    system: &mut System,
    participant: &str,
    consent: enrollment::Consent,
) -> anyhow::Result<enrollment::RecordConsentResponse> {
    Ok(system
        .enrollment
        .record_consent(admin(enrollment::RecordConsentRequest {
            parent: participant.into(),
            consent: Some(consent),
            request_id: String::new(),
        }))
        .await?
        .into_inner())
}

fn alias(alias: &str) -> enrollment::Consent {
    enrollment::Consent {
        kind: enrollment::ConsentKind::PeerVisibility as i32,
        display: enrollment::PeerDisplay::Alias as i32,
        alias: alias.into(),
        share_check_ins: true,
        ..Default::default()
    }
}

fn disclosure(recipient: &str, purpose: &str) -> enrollment::Consent {
    enrollment::Consent {
        kind: enrollment::ConsentKind::TreatmentDisclosure as i32,
        recipient: recipient.into(),
        purpose: purpose.into(),
        ..Default::default()
    }
}

/// Sam (profile, alias, a treatment-disclosure consent, a membership on hold with a
/// reason) and pat (a peer in the same group, with an alias of their own); every
/// answer shows what was sent, in clear.
async fn scene() -> anyhow::Result<Scene> {
    let mut system = System::start_at(START).await?;
    let clinic = system.clinic("north").await?;
    let group = system.weekly_group(&clinic, "tue", "2026-12-01").await?;

    let registered = register(&mut system, &clinic, "sam", SAM_PROFILE).await?;
    assert_eq!(registered.profile, Some(profile(SAM_PROFILE)));
    let sam = registered.name;
    let recorded = consent(&mut system, &sam, alias(SAM_ALIAS)).await?;
    assert_eq!(
        recorded.consent.map(|consent| consent.alias),
        Some(SAM_ALIAS.into())
    );
    let recorded = consent(&mut system, &sam, disclosure(SAM_RECIPIENT, SAM_PURPOSE)).await?;
    let answered = recorded.consent.unwrap_or_default();
    assert_eq!(
        (answered.recipient.as_str(), answered.purpose.as_str()),
        (SAM_RECIPIENT, SAM_PURPOSE)
    );
    system.enroll(&group, &sam).await?;

    let pat = register(
        &mut system,
        &clinic,
        "pat",
        ["Perpetua", "Oyelaran", "", "", ""],
    )
    .await?
    .name;
    consent(&mut system, &pat, alias("Harbor Light")).await?;
    system.enroll(&group, &pat).await?;

    let sam_membership = format!("{group}/memberships/sam");
    let held = system
        .enrollment
        .hold_membership(admin(enrollment::HoldMembershipRequest {
            name: sam_membership.clone(),
            reason: SAM_HOLD_REASON.into(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    Ok(Scene {
        system,
        group,
        sam,
        pat,
        sam_membership,
        token: held.consistency_token,
    })
}

async fn get_participant(
    system: &mut System,
    name: &str,
    consistency_token: &str,
) -> anyhow::Result<enrollment::Participant> {
    system
        .enrollment
        .get_participant(admin(enrollment::GetParticipantRequest {
            name: name.into(),
            consistency_token: consistency_token.into(),
        }))
        .await?
        .into_inner()
        .participant
        .ok_or_else(|| anyhow::anyhow!("a read answers with the record"))
}

/// Where `text` is found in enrollment's tables (every schema the service keeps, read
/// model and process managers alike): `schema.table.column` of each column holding it.
async fn found_in_tables(system: &System, text: &str) -> anyhow::Result<Vec<String>> {
    let (checked, holding) = support::columns_holding(system, "enrollment%", text).await?;
    anyhow::ensure!(
        checked
            .iter()
            .any(|c| c == "enrollment.participant_profiles.given_name"),
        "the scan sees the read model: {checked:?}"
    );
    Ok(holding)
}

/// At rest nothing of sam is in clear, in the log or in the tables; the answers (the
/// commands' above, a read here) show it all in clear.
#[tokio::test]
async fn personal_fields_are_sealed_at_rest_and_answered_in_clear() -> anyhow::Result<()> {
    let Scene {
        mut system,
        sam,
        token,
        ..
    } = scene().await?;

    let read = get_participant(&mut system, &sam, &token).await?;
    assert_eq!(read.profile, Some(profile(SAM_PROFILE)));
    let consents: Vec<(&str, &str, &str)> = read
        .consents
        .iter()
        .map(|consent| {
            (
                consent.alias.as_str(),
                consent.recipient.as_str(),
                consent.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(
        consents,
        [(SAM_ALIAS, "", ""), ("", SAM_RECIPIENT, SAM_PURPOSE)]
    );
    assert_eq!(read.forgotten_at, None);

    let messages =
        support::stream_messages(&system, &system.env.config.stream_name("enrollment")).await?;
    anyhow::ensure!(!messages.is_empty(), "the scene wrote to the stream");
    assert!(
        messages
            .iter()
            .any(|message| support::contains(message, GROUP_DISPLAY_NAME)),
        "the scan sees what is in clear"
    );
    for plain in sam_plaintext() {
        let leaks = messages
            .iter()
            .filter(|message| support::contains(message, plain))
            .count();
        assert_eq!(leaks, 0, "{plain:?} is in clear in the ENROLLMENT stream");
    }

    // The hold is projected (the token is its commit's): the tables hold all of it.
    let group_name_at = found_in_tables(&system, GROUP_DISPLAY_NAME).await?;
    assert!(
        group_name_at.contains(&"enrollment.groups.display_name".to_owned()),
        "{group_name_at:?}"
    );
    for plain in sam_plaintext() {
        assert_eq!(
            found_in_tables(&system, plain).await?,
            Vec::<String>::new(),
            "{plain:?} is in clear in enrollment's tables"
        );
    }
    Ok(())
}

fn forget_request(name: &str, request_id: &str) -> enrollment::ForgetParticipantRequest {
    enrollment::ForgetParticipantRequest {
        name: name.into(),
        reason: enrollment::ForgetReason::ParticipantRequest as i32,
        reference: "privacy ticket 2026-118".into(),
        request_id: request_id.into(),
    }
}

const REDACTED: &str = "[redacted]";

/// Staff other than network admins may not forget anyone; bad input is refused field
/// by field; a network admin's forget answers with the redacted record that every read
/// then shows, a retry and a second forget answer the same and record nothing more,
/// every further command about sam is refused, and pat is untouched.
#[tokio::test]
async fn a_network_admin_forgets_a_participant_for_good() -> anyhow::Result<()> {
    let Scene {
        mut system,
        group,
        sam,
        pat,
        sam_membership,
        token: _,
    } = scene().await?;
    // A request id already used on sam's record for another command is refused, and
    // destroys nothing: sam's record still opens.
    let updated = system
        .enrollment
        .update_participant(admin(enrollment::UpdateParticipantRequest {
            participant: Some(enrollment::Participant {
                name: sam.clone(),
                profile: Some(enrollment::ParticipantProfile {
                    email: "sam.rivera@lantern.example".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["profile.email".into()],
            }),
            request_id: "used-before".into(),
        }))
        .await?
        .into_inner();
    // Reads below wait for the update.
    let token = updated.consistency_token;
    let updated = updated.participant.unwrap_or_default();
    assert_eq!(
        refusal(
            system
                .enrollment
                .forget_participant(admin(forget_request(&sam, "used-before")))
                .await
        )
        .1,
        "REQUEST_ID_REUSED"
    );
    assert_eq!(
        get_participant(&mut system, &sam, &token).await?.profile,
        updated.profile,
        "nothing was destroyed"
    );

    let before = get_participant(&mut system, &sam, &token).await?;
    let pat_before = get_participant(&mut system, &pat, &token).await?;
    let spec = circle_enrollment::stream_spec(&system.env.config);
    let last = system.request_ids_since(spec.clone(), 0).await?.len() as u64;

    for (role, actor) in [
        ("clinic-admin", "cadmin-1"),
        ("facilitator", "staff-1"),
        ("intake-coordinator", "intake-1"),
        ("participant", "sam"),
    ] {
        let refused = system
            .enrollment
            .forget_participant(as_caller(forget_request(&sam, "forget-1"), role, actor))
            .await;
        assert_eq!(
            refusal(refused),
            (Code::PermissionDenied, "ROLE_NOT_ALLOWED".into(), vec![]),
            "{role}"
        );
    }
    let unspecified = enrollment::ForgetParticipantRequest {
        reason: enrollment::ForgetReason::Unspecified as i32,
        ..forget_request(&sam, "forget-1")
    };
    assert_eq!(
        refusal(
            system
                .enrollment
                .forget_participant(admin(unspecified))
                .await
        ),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".into(),
            vec!["reason".into()]
        )
    );
    for reference in ["line one\nline two".to_owned(), "x".repeat(201)] {
        let bad = enrollment::ForgetParticipantRequest {
            reference,
            ..forget_request(&sam, "forget-1")
        };
        assert_eq!(
            refusal(system.enrollment.forget_participant(admin(bad)).await),
            (
                Code::InvalidArgument,
                "INVALID_ARGUMENT".into(),
                vec!["reference".into()]
            )
        );
    }
    let nobody = format!("networks/{NETWORK}/participants/nobody");
    assert_eq!(
        refusal(
            system
                .enrollment
                .forget_participant(admin(forget_request(&nobody, "forget-nobody")))
                .await
        )
        .0,
        Code::NotFound
    );
    // Nothing changed: no commit, and sam's record still opens.
    assert_eq!(
        system.client_commits_since(spec.clone(), last).await?,
        Vec::<String>::new()
    );
    assert_eq!(get_participant(&mut system, &sam, "").await?, before);
    let forgotten = system
        .enrollment
        .forget_participant(admin(forget_request(&sam, "forget-1")))
        .await?
        .into_inner();
    let answer = forgotten.participant.clone().unwrap_or_default();
    assert!(answer.forgotten_at.is_some(), "{answer:?}");
    assert_eq!(
        answer.profile,
        Some(profile([REDACTED; 5])),
        "every profile field that was set reads redacted"
    );
    let consents: Vec<(&str, &str, &str)> = answer
        .consents
        .iter()
        .map(|consent| {
            (
                consent.alias.as_str(),
                consent.recipient.as_str(),
                consent.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(consents, [(REDACTED, "", ""), ("", REDACTED, REDACTED)]);
    assert_eq!(answer.home_clinic, before.home_clinic);

    // What every read shows from now on is the answer.
    let read = get_participant(&mut system, &sam, &forgotten.consistency_token).await?;
    assert_eq!(read, answer);

    // A retry answers the same; another forget answers with the record and records
    // nothing more.
    let retried = system
        .enrollment
        .forget_participant(admin(forget_request(&sam, "forget-1")))
        .await?
        .into_inner();
    assert_eq!(retried, forgotten);
    let again = system
        .enrollment
        .forget_participant(admin(forget_request(&sam, "forget-2")))
        .await?
        .into_inner();
    assert_eq!(again.participant, Some(answer.clone()));
    assert_eq!(
        system.client_commits_since(spec.clone(), last).await?,
        ["circle.enrollment.events.v1.ParticipantForgotten"]
    );

    // Nothing more is recorded about sam.
    let forgotten_refusal = (
        Code::FailedPrecondition,
        "PARTICIPANT_FORGOTTEN".into(),
        vec![],
    );
    let update = system
        .enrollment
        .update_participant(admin(enrollment::UpdateParticipantRequest {
            participant: Some(enrollment::Participant {
                name: sam.clone(),
                profile: Some(enrollment::ParticipantProfile {
                    email: "new@example.org".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["profile.email".into()],
            }),
            request_id: "update-after".into(),
        }))
        .await;
    assert_eq!(refusal(update), forgotten_refusal);
    let record = system
        .enrollment
        .record_consent(admin(enrollment::RecordConsentRequest {
            parent: sam.clone(),
            consent: Some(alias("Another Name")),
            request_id: "consent-after".into(),
        }))
        .await;
    assert_eq!(refusal(record), forgotten_refusal);
    let revoke = system
        .enrollment
        .revoke_consent(admin(enrollment::RevokeConsentRequest {
            name: answer.consents[0].name.clone(),
            request_id: "revoke-after".into(),
        }))
        .await;
    assert_eq!(refusal(revoke), forgotten_refusal);
    let hold_again = system
        .enrollment
        .hold_membership(admin(enrollment::HoldMembershipRequest {
            name: sam_membership.clone(),
            reason: "another reason".into(),
            request_id: "hold-after".into(),
        }))
        .await;
    // On hold already: the domain refuses first; either way nothing is recorded.
    assert_eq!(refusal(hold_again).0, Code::FailedPrecondition);
    let other_group = system
        .weekly_group(
            &format!("networks/{NETWORK}/clinics/north"),
            "thu",
            "2026-12-01",
        )
        .await?;
    let enroll = system
        .enrollment
        .enroll_participant(admin(enrollment::EnrollParticipantRequest {
            parent: other_group,
            participant: sam.clone(),
            request_id: "enroll-after".into(),
            ..Default::default()
        }))
        .await;
    assert_eq!(refusal(enroll), forgotten_refusal);
    let transfer = system
        .enrollment
        .transfer_participant(admin(enrollment::TransferParticipantRequest {
            name: sam_membership.clone(),
            target_group: format!("networks/{NETWORK}/clinics/north/groups/thu"),
            request_id: "transfer-after".into(),
        }))
        .await;
    assert_eq!(refusal(transfer), forgotten_refusal);
    assert_eq!(
        system.client_commits_since(spec, last).await?,
        [
            "circle.enrollment.events.v1.ParticipantForgotten",
            // The `thu` group made above.
            "circle.enrollment.events.v1.GroupCreated",
        ]
    );

    // The read model overwrote its copies too; pat's record is as it was.
    let profile_row: (String, String, String, String, String) = sqlx::query_as(
        "SELECT given_name, family_name, preferred_name, email, phone
         FROM enrollment.participant_profiles WHERE participant_id = 'sam'",
    )
    .fetch_one(&system.env.pool)
    .await?;
    assert_eq!(
        profile_row,
        (
            REDACTED.into(),
            REDACTED.into(),
            REDACTED.into(),
            REDACTED.into(),
            REDACTED.into()
        )
    );
    assert_eq!(get_participant(&mut system, &pat, "").await?, pat_before);
    assert_eq!(
        pat_before.profile.map(|profile| profile.given_name),
        Some("Perpetua".into())
    );
    // And sam is still a member of the group (discharging them is staff's to do).
    let members = system
        .enrollment
        .list_group_members(admin(enrollment::ListGroupMembersRequest {
            parent: group,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(members.memberships.len(), 2, "{members:?}");
    Ok(())
}

/// The key is destroyed before the record says so: a forget that stopped in between
/// (here: the key destroyed by hand) already shows sam redacted, and a retry completes
/// the record.
#[tokio::test]
async fn a_forget_interrupted_after_the_key_is_destroyed_completes_on_retry() -> anyhow::Result<()>
{
    let Scene {
        mut system,
        sam,
        token,
        ..
    } = scene().await?;
    let vault = circle_vault::store::KeyStore::open(
        system.env.database().await?,
        circle_service::master_keys(&system.env.config)?,
    )
    .await?;
    assert!(vault.forget(NETWORK, "sam").await?, "sam had a live key");

    let read = get_participant(&mut system, &sam, &token).await?;
    assert_eq!(read.profile, Some(profile([REDACTED; 5])));
    assert_eq!(read.forgotten_at, None, "not recorded yet");

    let forgotten = system
        .enrollment
        .forget_participant(admin(forget_request(&sam, "forget-1")))
        .await?
        .into_inner();
    let answer = forgotten.participant.unwrap_or_default();
    assert!(answer.forgotten_at.is_some(), "{answer:?}");
    assert_eq!(
        get_participant(&mut system, &sam, &forgotten.consistency_token).await?,
        answer
    );
    Ok(())
}
