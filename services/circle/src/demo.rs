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

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-circle-network",
        tonic::metadata::MetadataValue::from_static(NETWORK),
    );
    metadata.insert(
        "x-circle-role",
        tonic::metadata::MetadataValue::from_static("service"),
    );
    metadata.insert(
        "x-circle-actor",
        tonic::metadata::MetadataValue::from_static("demo-seed"),
    );
    request
}

pub async fn seed(client: &mut EnrollmentServiceClient<Channel>) -> anyhow::Result<Seeded> {
    let mut seeded = Seeded::default();
    for (clinic_id, display_name, time_zone) in CLINICS {
        let created = client
            .create_clinic(request(pb::CreateClinicRequest {
                parent: format!("networks/{NETWORK}"),
                clinic_id: clinic_id.into(),
                clinic: Some(pb::Clinic {
                    display_name: display_name.into(),
                    time_zone: time_zone.into(),
                    ..Default::default()
                }),
                request_id: format!("demo-clinic-{clinic_id}"),
            }))
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
            .create_group(request(pb::CreateGroupRequest {
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
            }))
            .await?
            .into_inner();
        seeded.groups.extend(created.group.map(|group| group.name));
    }
    for (index, (clinic_id, given_name, family_name)) in PARTICIPANTS.into_iter().enumerate() {
        let participant_id = format!("participant-{:02}", index + 1);
        let registered = client
            .register_participant(request(pb::RegisterParticipantRequest {
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
            }))
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
            .enroll_participant(request(pb::EnrollParticipantRequest {
                parent: group,
                participant: registered.participant.map(|p| p.name).unwrap_or_default(),
                request_id: format!("demo-enroll-{participant_id}"),
                ..Default::default()
            }))
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
