//! A demo network — two clinics, three groups, a dozen participants — created through
//! the public API with fixed ids and request ids, so seeding twice changes nothing.

use circle_proto::enrollment::v1 as pb;
use pb::enrollment_service_client::EnrollmentServiceClient;
use tonic::transport::Channel;

pub const NETWORK: &str = "demo";

const CLINICS: [(&str, &str, &str); 2] = [
    ("riverside", "Riverside Recovery Center", "America/Chicago"),
    ("lakeview", "Lakeview Behavioral Health", "America/New_York"),
];

/// (clinic, group id, name, modality, level of care, capacity, weekday, start time)
type DemoGroup = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u32,
    pb::Weekday,
    &'static str,
);

const GROUPS: [DemoGroup; 3] = [
    (
        "riverside",
        "relapse-prevention-mon",
        "Monday relapse prevention",
        "relapse-prevention",
        "intensive-outpatient",
        8,
        pb::Weekday::Monday,
        "18:00",
    ),
    (
        "riverside",
        "process-thu",
        "Thursday process group",
        "process",
        "outpatient",
        12,
        pb::Weekday::Thursday,
        "17:30",
    ),
    (
        "lakeview",
        "dbt-skills-wed",
        "Wednesday DBT skills",
        "dbt-skills",
        "outpatient",
        4,
        pb::Weekday::Wednesday,
        "10:00",
    ),
];

const PARTICIPANTS: [(&str, &str, &str); 12] = [
    ("riverside", "Avery", "Lopez"),
    ("riverside", "Jordan", "Kim"),
    ("riverside", "Riley", "Okafor"),
    ("riverside", "Casey", "Nguyen"),
    ("riverside", "Morgan", "Schmidt"),
    ("riverside", "Quinn", "Haddad"),
    ("lakeview", "Jamie", "Rossi"),
    ("lakeview", "Taylor", "Brooks"),
    ("lakeview", "Drew", "Patel"),
    ("lakeview", "Skyler", "Moreau"),
    ("lakeview", "Rowan", "Adeyemi"),
    ("lakeview", "Emerson", "Silva"),
];

/// What the demo seeding made, for printing.
#[derive(Debug, Default)]
pub struct Seeded {
    pub clinics: Vec<String>,
    pub groups: Vec<String>,
    pub participants: usize,
    pub active: usize,
    pub waitlisted: usize,
}

/// Makes a bearer token of the demo network for (role, subject, clinics).
pub type Mint<'a> = &'a (dyn Fn(&str, &str, &[&str]) -> String + Sync);

/// The demo's network administrator, who seeds the network.
pub const ADMIN: &str = "demo-admin";

/// `message` with `token` as its bearer token (a token is base64url text, so always a
/// valid header value; were it not, the call would be refused as unauthenticated).
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

pub async fn seed(
    client: &mut EnrollmentServiceClient<Channel>,
    mint: Mint<'_>,
) -> anyhow::Result<Seeded> {
    let admin = mint("network-admin", ADMIN, &[]);
    let mut seeded = Seeded::default();
    for (clinic_id, display_name, time_zone) in CLINICS {
        let created = client
            .create_clinic(with_token(
                pb::CreateClinicRequest {
                    parent: format!("networks/{NETWORK}"),
                    clinic_id: clinic_id.into(),
                    clinic: Some(pb::Clinic {
                        display_name: display_name.into(),
                        time_zone: time_zone.into(),
                        ..Default::default()
                    }),
                    request_id: format!("demo-clinic-{clinic_id}"),
                },
                &admin,
            ))
            .await?
            .into_inner();
        seeded
            .clinics
            .extend(created.clinic.map(|clinic| clinic.name));
    }
    for (
        clinic_id,
        group_id,
        display_name,
        modality,
        level_of_care,
        capacity,
        weekday,
        start_time,
    ) in GROUPS
    {
        let created = client
            .create_group(with_token(
                pb::CreateGroupRequest {
                    parent: format!("networks/{NETWORK}/clinics/{clinic_id}"),
                    group_id: group_id.into(),
                    group: Some(pb::Group {
                        display_name: display_name.into(),
                        modality: modality.into(),
                        level_of_care: level_of_care.into(),
                        capacity,
                        admission_mode: pb::AdmissionMode::Rolling as i32,
                        facilitators: vec![pb::Facilitator {
                            staff_id: format!("staff-{clinic_id}-lead"),
                            role: pb::FacilitatorRole::Lead as i32,
                        }],
                        schedule: Some(pb::Schedule {
                            days: vec![weekday as i32],
                            start_time: start_time.into(),
                            duration_minutes: 90,
                            start_date: "2026-01-05".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    request_id: format!("demo-group-{group_id}"),
                },
                &admin,
            ))
            .await?
            .into_inner();
        seeded.groups.extend(created.group.map(|group| group.name));
    }
    for (index, (clinic_id, given_name, family_name)) in PARTICIPANTS.into_iter().enumerate() {
        let participant_id = format!("participant-{:02}", index + 1);
        let registered = client
            .register_participant(with_token(
                pb::RegisterParticipantRequest {
                    parent: format!("networks/{NETWORK}"),
                    participant_id: participant_id.clone(),
                    participant: Some(pb::Participant {
                        home_clinic: format!("networks/{NETWORK}/clinics/{clinic_id}"),
                        profile: Some(pb::ParticipantProfile {
                            given_name: given_name.into(),
                            family_name: family_name.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    request_id: format!("demo-register-{participant_id}"),
                },
                &admin,
            ))
            .await?
            .into_inner();
        seeded.participants += 1;
        // Everyone joins their clinic's first group; Lakeview's fills up, so its last
        // two wait.
        let group = GROUPS
            .iter()
            .find(|group| group.0 == clinic_id)
            .map(|group| format!("networks/{NETWORK}/clinics/{clinic_id}/groups/{}", group.1))
            .unwrap_or_default();
        let enrolled = client
            .enroll_participant(with_token(
                pb::EnrollParticipantRequest {
                    parent: group,
                    participant: registered.participant.map(|p| p.name).unwrap_or_default(),
                    request_id: format!("demo-enroll-{participant_id}"),
                    ..Default::default()
                },
                &admin,
            ))
            .await?
            .into_inner();
        match enrolled.membership.map(|membership| membership.state()) {
            Some(pb::MembershipState::Active) => seeded.active += 1,
            Some(pb::MembershipState::Waitlisted) => seeded.waitlisted += 1,
            _ => {}
        }
    }
    Ok(seeded)
}

/// Accountability demo data for the first three Riverside participants: peer
/// consent, a daily goal and a check-in shared with the group. The accountability
/// service learns of consents from the enrollment stream, so a refused check-in
/// (consent not seen yet) is retried for a few seconds.
pub async fn seed_accountability(
    enrollment: &mut EnrollmentServiceClient<Channel>,
    accountability: &mut circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient<Channel>,
    mint: Mint<'_>,
) -> anyhow::Result<usize> {
    use circle_proto::accountability::v1 as acc;
    let people = [
        (
            "participant-01",
            "Morning walk before work",
            "Walked 30 minutes, felt clear-headed.",
        ),
        (
            "participant-02",
            "Call my sponsor",
            "Called Dana; we talked through the weekend.",
        ),
        (
            "participant-03",
            "No drinking at home",
            "Quiet evening, made tea instead.",
        ),
    ];
    let mut check_ins = 0;
    for (participant_id, goal, text) in people {
        // Each participant gives their consent, sets their goal and checks in
        // themselves.
        let own = mint("participant", participant_id, &[]);
        let participant = format!("networks/{NETWORK}/participants/{participant_id}");
        enrollment
            .record_consent(with_token(
                pb::RecordConsentRequest {
                    parent: participant.clone(),
                    consent: Some(pb::Consent {
                        kind: pb::ConsentKind::PeerVisibility as i32,
                        display: pb::PeerDisplay::FirstName as i32,
                        share_check_ins: true,
                        share_milestones: true,
                        ..Default::default()
                    }),
                    request_id: format!("demo-consent-{participant_id}"),
                },
                &own,
            ))
            .await?;
        accountability
            .set_goal(with_token(
                acc::SetGoalRequest {
                    parent: participant.clone(),
                    text: goal.into(),
                    cadence: acc::Cadence::Daily as i32,
                    request_id: format!("demo-goal-{participant_id}"),
                },
                &own,
            ))
            .await?;
        let check_in = acc::SubmitCheckInRequest {
            parent: participant.clone(),
            progress: acc::Progress::OnTrack as i32,
            mood: 7,
            craving: 2,
            text: text.into(),
            visibility: acc::Visibility::Group as i32,
            request_id: format!("demo-check-in-{participant_id}"),
            ..Default::default()
        };
        let mut attempts = 0;
        loop {
            match accountability
                .submit_check_in(with_token(check_in.clone(), &own))
                .await
            {
                Ok(_) => break,
                Err(status)
                    if status.code() == tonic::Code::FailedPrecondition && attempts < 100 =>
                {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(status) => return Err(status.into()),
            }
        }
        check_ins += 1;
    }
    Ok(check_ins)
}
