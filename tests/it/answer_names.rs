//! Every resource name in an answer is a full name, the one a read shows.

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use tonic::Code;

use crate::accountability::{Circle, circle};
use crate::support::{admin, as_participant, refusal};

#[tokio::test]
async fn partnership_answers_name_the_group_in_full() -> anyhow::Result<()> {
    let Circle {
        mut system,
        group,
        sam,
        jordan,
        ..
    } = circle("2026-11-20T18:00:00Z").await?;
    let read = system
        .enrollment
        .get_group(admin(enrollment::GetGroupRequest {
            name: group.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .group
        .map(|group| group.name)
        .unwrap_or_default();
    assert_eq!(read, group);

    // The group's clinic is checked against the record: under another clinic it is
    // not found (and nothing is proposed).
    let elsewhere = group.replace("/clinics/north/", "/clinics/south/");
    let refused = system
        .accountability
        .propose_partnership(admin(pb::ProposePartnershipRequest {
            participant: sam.clone(),
            invitee: jordan.clone(),
            group: elsewhere,
            request_id: String::new(),
        }))
        .await;
    let (code, reason, _) = refusal(refused);
    assert_eq!((code, reason.as_str()), (Code::NotFound, "GROUP_NOT_FOUND"));

    let proposed = system
        .accountability
        .propose_partnership(as_participant(
            pb::ProposePartnershipRequest {
                participant: sam.clone(),
                invitee: jordan.clone(),
                group: group.clone(),
                request_id: String::new(),
            },
            "sam",
        ))
        .await?
        .into_inner()
        .partnership
        .unwrap_or_default();
    assert_eq!(proposed.group, group, "propose: {proposed:?}");
    assert_eq!(
        (proposed.proposer.as_str(), proposed.invitee.as_str()),
        (sam.as_str(), jordan.as_str())
    );
    let accepted = system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: proposed.name.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await?
        .into_inner()
        .partnership
        .unwrap_or_default();
    assert_eq!(accepted.group, group, "accept: {accepted:?}");
    let ended = system
        .accountability
        .end_partnership(admin(pb::EndPartnershipRequest {
            name: proposed.name.clone(),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .partnership
        .unwrap_or_default();
    assert_eq!(ended.group, group, "end: {ended:?}");
    assert_eq!(ended.state, "ended");

    // A partnership never proposed has no group to name: staff are told it is not
    // found; a participant, as for any partnership they are not in, that it is not
    // theirs (permission before existence: probing reveals nothing).
    let unknown = format!("networks/{}/partnerships/never", crate::support::NETWORK);
    let refused = system
        .accountability
        .accept_partnership(as_participant(
            pb::AcceptPartnershipRequest {
                name: unknown.clone(),
                request_id: String::new(),
            },
            "jordan",
        ))
        .await;
    let (code, reason, _) = refusal(refused);
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "NOT_YOUR_RECORD")
    );
    let refused = system
        .accountability
        .end_partnership(admin(pb::EndPartnershipRequest {
            name: unknown,
            request_id: String::new(),
        }))
        .await;
    assert_eq!(refusal(refused).0, Code::NotFound);
    Ok(())
}
