//! A command and its retry are answered from the same events, in every service: a
//! retry gets the original answer field by field (even after the record changed in
//! between), and a request id used again for other content is refused with
//! FAILED_PRECONDITION / REQUEST_ID_REUSED, storing nothing (defect 11).

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use tonic::Code;

use crate::accountability::{Circle, circle};
use crate::support::{System, admin, as_facilitator, refusal};

fn check_in(parent: &str, request_id: &str, text: &str, mood: u32) -> pb::SubmitCheckInRequest {
    pb::SubmitCheckInRequest {
        parent: parent.into(),
        progress: pb::Progress::OnTrack as i32,
        mood,
        craving: 2,
        text: text.into(),
        visibility: pb::Visibility::Group as i32,
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn reused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let (code, reason, _) = refusal(result);
    (code, reason)
}

fn request_id_reused() -> (Code, String) {
    (Code::FailedPrecondition, "REQUEST_ID_REUSED".to_owned())
}

fn membership_of(group: &str, participant: &str) -> String {
    let participant_id = participant.rsplit('/').next().unwrap_or_default();
    format!("{group}/memberships/{participant_id}")
}

/// Starts the group's session of 2026-11-24 (the circle starts four days before).
async fn start_session(system: &mut System, group: &str) -> anyhow::Result<String> {
    let session = system.session_on(group, "2026-11-24")?;
    system.clock.advance(chrono::Duration::days(4));
    system
        .sessions
        .start_session(admin(sessions::StartSessionRequest {
            name: session.clone(),
            request_id: String::new(),
        }))
        .await?;
    Ok(session)
}

#[tokio::test]
async fn submit_check_in_with_a_request_id_used_for_another_check_in_is_refused()
-> anyhow::Result<()> {
    let Circle {
        mut system, sam, ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let first = system
        .accountability
        .submit_check_in(admin(check_in(&sam, "check-in-1", "A good week.", 7)))
        .await?
        .into_inner();
    let before = system.accountability_stream_last_sequence().await?;
    let other = system
        .accountability
        .submit_check_in(admin(check_in(&sam, "check-in-1", "A hard week.", 3)))
        .await;
    assert_eq!(reused(other), request_id_reused());
    assert_eq!(
        system
            .client_commits_since(
                circle_accountability::stream_spec(&system.env.config),
                before
            )
            .await?,
        Vec::<String>::new(),
        "nothing is stored"
    );
    let retry = system
        .accountability
        .submit_check_in(admin(check_in(&sam, "check-in-1", "A good week.", 7)))
        .await?
        .into_inner();
    assert_eq!(
        retry, first,
        "the same request again is the original answer"
    );
    Ok(())
}

#[tokio::test]
async fn hold_membership_with_a_request_id_used_for_another_hold_is_refused() -> anyhow::Result<()>
{
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let membership = membership_of(&group, &sam);
    let hold = |reason: &str| enrollment::HoldMembershipRequest {
        name: membership.clone(),
        reason: reason.into(),
        request_id: "hold-1".into(),
    };
    system
        .enrollment
        .hold_membership(admin(hold("Travelling for work")))
        .await?;
    let other = system
        .enrollment
        .hold_membership(admin(hold("In hospital")))
        .await;
    assert_eq!(reused(other), request_id_reused());
    Ok(())
}

#[tokio::test]
async fn write_shared_note_with_a_request_id_used_for_another_note_is_refused() -> anyhow::Result<()>
{
    let Circle {
        mut system, group, ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let session = start_session(&mut system, &group).await?;
    let note = |text: &str| sessions::WriteSharedNoteRequest {
        name: session.clone(),
        text: text.into(),
        request_id: "note-1".into(),
    };
    system
        .sessions
        .write_shared_note(as_facilitator(note("We talked about routines.")))
        .await?;
    let other = system
        .sessions
        .write_shared_note(as_facilitator(note("We talked about the holidays.")))
        .await;
    assert_eq!(reused(other), request_id_reused());
    Ok(())
}

#[tokio::test]
async fn a_retry_gets_the_original_answer_even_after_the_record_changed() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;

    // Accountability: a check-in, another one, then the first again.
    let first = system
        .accountability
        .submit_check_in(admin(check_in(
            &sam,
            "monday",
            "Made it to the meeting.",
            6,
        )))
        .await?
        .into_inner();
    system.clock.advance(chrono::Duration::hours(3));
    system
        .accountability
        .submit_check_in(admin(check_in(&sam, "tuesday", "Quiet day.", 5)))
        .await?;
    let retry = system
        .accountability
        .submit_check_in(admin(check_in(
            &sam,
            "monday",
            "Made it to the meeting.",
            6,
        )))
        .await?
        .into_inner();
    assert_eq!(retry, first);

    // Enrollment: a clinic renamed twice; the first rename again.
    let clinic = group
        .split("/groups/")
        .next()
        .unwrap_or_default()
        .to_owned();
    let rename = |display_name: &str, request_id: &str| enrollment::UpdateClinicRequest {
        clinic: Some(enrollment::Clinic {
            name: clinic.clone(),
            display_name: display_name.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
        request_id: request_id.into(),
    };
    let first = system
        .enrollment
        .update_clinic(admin(rename("North Side", "rename-1")))
        .await?
        .into_inner();
    system
        .enrollment
        .update_clinic(admin(rename("Northside Recovery", "rename-2")))
        .await?;
    let retry = system
        .enrollment
        .update_clinic(admin(rename("North Side", "rename-1")))
        .await?
        .into_inner();
    assert_eq!(retry, first);

    // Sessions: a note signed, then amended; the signing again.
    let session = start_session(&mut system, &group).await?;
    system
        .sessions
        .write_shared_note(as_facilitator(sessions::WriteSharedNoteRequest {
            name: session.clone(),
            text: "We talked about routines.".into(),
            request_id: String::new(),
        }))
        .await?;
    let note = format!("{session}/notes/shared");
    let sign = || sessions::SignNoteRequest {
        name: note.clone(),
        request_id: "sign-1".into(),
    };
    let first = system
        .sessions
        .sign_note(as_facilitator(sign()))
        .await?
        .into_inner();
    system.clock.advance(chrono::Duration::minutes(20));
    system
        .sessions
        .amend_note(as_facilitator(sessions::AmendNoteRequest {
            name: note.clone(),
            text: "Sam left early.".into(),
            request_id: String::new(),
        }))
        .await?;
    let retry = system
        .sessions
        .sign_note(as_facilitator(sign()))
        .await?
        .into_inner();
    assert_eq!(retry, first);
    Ok(())
}
