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
pub(crate) fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
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

/// How big a network `circle demo` seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub clinics: usize,
    /// In all, spread over the clinics.
    pub participants: usize,
    /// Check-ins per participant, and sessions held per group (at most: those the
    /// sessions service has made within its horizon, `sessions.horizon_days`).
    pub weeks: usize,
    /// The first day of the groups' schedules (`weeks` weeks before the services'
    /// today, for sessions to hold).
    pub start_date: chrono::NaiveDate,
}

/// What [`seed_network`] made.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeededNetwork {
    pub network: String,
    pub clinics: usize,
    pub groups: usize,
    pub participants: usize,
    pub active: usize,
    pub waitlisted: usize,
    pub sessions_held: usize,
    pub attendance_records: usize,
    pub check_ins: usize,
}

const GIVEN_NAMES: [&str; 16] = [
    "Avery", "Jordan", "Riley", "Casey", "Morgan", "Quinn", "Jamie", "Taylor", "Drew", "Skyler",
    "Rowan", "Emerson", "Harper", "Reese", "Sage", "Dakota",
];
const FAMILY_NAMES: [&str; 12] = [
    "Lopez", "Kim", "Okafor", "Nguyen", "Schmidt", "Haddad", "Rossi", "Brooks", "Patel", "Moreau",
    "Adeyemi", "Silva",
];
const TIME_ZONES: [&str; 4] = [
    "America/Chicago",
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
];

/// Calls `call` again while it answers FAILED_PRECONDITION (what one service has not
/// learnt from another's stream yet), for up to 30 s.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            answer => return answer,
        }
    }
}

/// Seeds a network of `size` through the public APIs of running services: clinics
/// (two groups each, weekly, started `weeks` weeks ago), participants spread over the
/// clinics and enrolled round-robin (a group's capacity is 10: the rest wait), each with
/// a peer-visibility consent, a daily goal and `weeks` check-ins shared with their
/// group, and per group the first `weeks` sessions the schedule made that have members on
/// their roster (who was active when each starts) held: started, attendance taken (every fifth member absent), closed. Ids and request
/// ids are fixed, so seeding again changes nothing. Commands are stamped by the
/// services' clocks: history cannot be back-dated through the API.
pub async fn seed_network(
    network: &str,
    enrollment: &mut EnrollmentServiceClient<Channel>,
    sessions: &mut circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient<
        Channel,
    >,
    accountability: &mut circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient<Channel>,
    mint: Mint<'_>,
    size: Size,
) -> anyhow::Result<SeededNetwork> {
    use circle_proto::accountability::v1 as acc;
    use circle_proto::sessions::v1 as ses;
    let admin = mint("network-admin", ADMIN, &[]);
    let mut seeded = SeededNetwork {
        network: network.to_owned(),
        ..Default::default()
    };
    let start_date = size.start_date.format("%Y-%m-%d").to_string();
    let mut groups = Vec::new();
    for clinic in 0..size.clinics {
        let clinic_id = format!("clinic-{:02}", clinic + 1);
        enrollment
            .create_clinic(with_token(
                pb::CreateClinicRequest {
                    parent: format!("networks/{network}"),
                    clinic_id: clinic_id.clone(),
                    clinic: Some(pb::Clinic {
                        display_name: format!("Clinic {}", clinic + 1),
                        time_zone: TIME_ZONES[clinic % TIME_ZONES.len()].into(),
                        ..Default::default()
                    }),
                    request_id: format!("demo-{clinic_id}"),
                },
                &admin,
            ))
            .await?;
        seeded.clinics += 1;
        for (index, (weekday, start_time)) in [
            (pb::Weekday::Tuesday, "18:00"),
            (pb::Weekday::Thursday, "10:30"),
        ]
        .into_iter()
        .enumerate()
        {
            let group_id = format!("{clinic_id}-group-{}", index + 1);
            let created = enrollment
                .create_group(with_token(
                    pb::CreateGroupRequest {
                        parent: format!("networks/{network}/clinics/{clinic_id}"),
                        group_id: group_id.clone(),
                        group: Some(pb::Group {
                            display_name: format!("Group {} of clinic {}", index + 1, clinic + 1),
                            modality: "process".into(),
                            level_of_care: "outpatient".into(),
                            capacity: 10,
                            admission_mode: pb::AdmissionMode::Rolling as i32,
                            facilitators: vec![pb::Facilitator {
                                staff_id: format!("staff-{clinic_id}-lead"),
                                role: pb::FacilitatorRole::Lead as i32,
                            }],
                            schedule: Some(pb::Schedule {
                                days: vec![weekday as i32],
                                start_time: start_time.into(),
                                duration_minutes: 90,
                                start_date: start_date.clone(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        request_id: format!("demo-{group_id}"),
                    },
                    &admin,
                ))
                .await?
                .into_inner();
            groups.push((
                clinic,
                created.group.map(|group| group.name).unwrap_or_default(),
            ));
            seeded.groups += 1;
        }
    }
    let mut members = Vec::new();
    let mut active_in = std::collections::HashMap::<String, usize>::new();
    for index in 0..size.participants {
        let clinic = index % size.clinics.max(1);
        let clinic_id = format!("clinic-{:02}", clinic + 1);
        let participant_id = format!("member-{:04}", index + 1);
        let participant = format!("networks/{network}/participants/{participant_id}");
        enrollment
            .register_participant(with_token(
                pb::RegisterParticipantRequest {
                    parent: format!("networks/{network}"),
                    participant_id: participant_id.clone(),
                    participant: Some(pb::Participant {
                        home_clinic: format!("networks/{network}/clinics/{clinic_id}"),
                        profile: Some(pb::ParticipantProfile {
                            given_name: GIVEN_NAMES[index % GIVEN_NAMES.len()].into(),
                            family_name: FAMILY_NAMES
                                [(index / GIVEN_NAMES.len() + index) % FAMILY_NAMES.len()]
                            .into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    request_id: format!("demo-register-{participant_id}"),
                },
                &admin,
            ))
            .await?;
        seeded.participants += 1;
        let clinic_groups: Vec<&String> = groups
            .iter()
            .filter(|(of, _)| *of == clinic)
            .map(|(_, group)| group)
            .collect();
        let group =
            clinic_groups[(index / size.clinics.max(1)) % clinic_groups.len().max(1)].clone();
        let enrolled = enrollment
            .enroll_participant(with_token(
                pb::EnrollParticipantRequest {
                    parent: group.clone(),
                    participant: participant.clone(),
                    request_id: format!("demo-enroll-{participant_id}"),
                    ..Default::default()
                },
                &admin,
            ))
            .await?
            .into_inner();
        match enrolled.membership.map(|membership| membership.state()) {
            Some(pb::MembershipState::Active) => {
                seeded.active += 1;
                *active_in.entry(group).or_default() += 1;
                members.push((participant_id, participant));
            }
            Some(pb::MembershipState::Waitlisted) => seeded.waitlisted += 1,
            _ => {}
        }
    }
    for (participant_id, participant) in &members {
        let own = mint("participant", participant_id, &[]);
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
        let goal = acc::SetGoalRequest {
            parent: participant.clone(),
            text: "Go to a meeting every day".into(),
            cadence: acc::Cadence::Daily as i32,
            request_id: format!("demo-goal-{participant_id}"),
        };
        patiently(|| {
            let mut client = accountability.clone();
            let request = with_token(goal.clone(), &own);
            async move { client.set_goal(request).await }
        })
        .await?;
        for week in 0..size.weeks {
            let request = acc::SubmitCheckInRequest {
                parent: participant.clone(),
                progress: acc::Progress::OnTrack as i32,
                mood: (5 + week % 5) as u32,
                craving: (week % 4) as u32,
                text: "Kept to the plan this week.".into(),
                visibility: acc::Visibility::Group as i32,
                request_id: format!("demo-check-in-{participant_id}-{week}"),
                ..Default::default()
            };
            patiently(|| {
                let mut client = accountability.clone();
                let request = with_token(request.clone(), &own);
                async move { client.submit_check_in(request).await }
            })
            .await?;
            seeded.check_ins += 1;
        }
    }
    // The sessions service makes each group's sessions from its schedule (learnt from
    // the enrollment stream): wait for them, then hold the next `weeks` of each.
    for (_, group) in &groups {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        // A session's roster is who was active when it starts, as the sessions
        // service's roster (fed by the enrollment stream) shows them: wait until the
        // group's members are all on it.
        let members_of_group = active_in.get(group).copied().unwrap_or(0);
        let upcoming = loop {
            let listed = sessions
                .list_sessions(with_token(
                    ses::ListSessionsRequest {
                        parent: group.clone(),
                        page_size: 100,
                        ..Default::default()
                    },
                    &admin,
                ))
                .await?
                .into_inner()
                .sessions;
            let mut held = Vec::new();
            for listed in listed
                .into_iter()
                .filter(|session| session.state() != ses::SessionState::Cancelled)
            {
                let session = sessions
                    .get_session(with_token(
                        ses::GetSessionRequest {
                            name: listed.name.clone(),
                            ..Default::default()
                        },
                        &admin,
                    ))
                    .await?
                    .into_inner()
                    .session
                    .unwrap_or_default();
                if session.roster.len() == members_of_group && members_of_group > 0 {
                    held.push(session);
                }
            }
            held.sort_by_key(|session| session.start_time.as_ref().map(|start| start.seconds));
            // The materialiser makes a group's sessions in one pass: hold what it made.
            if !held.is_empty() || size.weeks == 0 || members_of_group == 0 {
                break held;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the sessions service made no sessions with the members of {group} within 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        for session in upcoming.into_iter().take(size.weeks) {
            let name = session.name.clone();
            let session_id = name.rsplit('/').next().unwrap_or_default().to_owned();
            if session.state() == ses::SessionState::Scheduled {
                sessions
                    .start_session(with_token(
                        ses::StartSessionRequest {
                            name: name.clone(),
                            request_id: format!("demo-start-{session_id}"),
                        },
                        &admin,
                    ))
                    .await?;
            }
            for (place, entry) in session.roster.iter().enumerate() {
                let member = entry.participant.rsplit('/').next().unwrap_or_default();
                let (status, minutes) = if place % 5 == 4 {
                    (ses::AttendanceStatus::Absent, 0)
                } else {
                    (ses::AttendanceStatus::Present, 90)
                };
                sessions
                    .record_attendance(with_token(
                        ses::RecordAttendanceRequest {
                            name: name.clone(),
                            participant: entry.participant.clone(),
                            status: status as i32,
                            minutes_attended: minutes,
                            request_id: format!("demo-attend-{session_id}-{member}"),
                        },
                        &admin,
                    ))
                    .await?;
                seeded.attendance_records += 1;
            }
            sessions
                .close_session(with_token(
                    ses::CloseSessionRequest {
                        name: name.clone(),
                        request_id: format!("demo-close-{session_id}"),
                    },
                    &admin,
                ))
                .await?;
            seeded.sessions_held += 1;
        }
    }
    Ok(seeded)
}
