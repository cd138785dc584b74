//! Seeding a network of the asked size through the public API, and driving the running
//! services with fixed concurrencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use circle_proto::accountability::v1 as acc;
use circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient;
use circle_proto::enrollment::v1 as pb;
use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;
use circle_proto::sessions::v1 as ses;
use circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient;
use futures::{StreamExt as _, TryStreamExt as _};
use rand::Rng as _;
use tonic::transport::Channel;

use super::stats::Latencies;

/// Makes a bearer token: (role, subject).
pub type Mint = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Tokens of `network` signed with the development key, for a day, for every service
/// of `config` (the bench's and the fault injection's callers).
pub fn mint(keys: crate::dev_keys::DevKeys, config: &circle_config::Config, network: &str) -> Mint {
    let audiences = crate::dev_keys::audiences(config);
    let network = network.to_owned();
    Arc::new(move |role: &str, subject: &str| {
        crate::dev_keys::TokenRequest {
            role: role.to_owned(),
            network: network.clone(),
            subject: Some(subject.to_owned()),
            clinics: Vec::new(),
            audiences: audiences.clone(),
            ttl_minutes: 24 * 60,
        }
        .claims(crate::dev_keys::now())
        .map(|claims| keys.token(&claims))
        .unwrap_or_default()
    })
}

/// Connections to the three services: a few HTTP/2 connections each, as several
/// client processes would open.
#[derive(Clone)]
pub struct Clients {
    enrollment: Vec<EnrollmentServiceClient<Channel>>,
    sessions: Vec<SessionsServiceClient<Channel>>,
    accountability: Vec<AccountabilityServiceClient<Channel>>,
}

const CONNECTIONS: usize = 4;

impl Clients {
    pub async fn connect(
        enrollment: &str,
        sessions: &str,
        accountability: &str,
    ) -> anyhow::Result<Self> {
        let mut clients = Self {
            enrollment: Vec::new(),
            sessions: Vec::new(),
            accountability: Vec::new(),
        };
        for _ in 0..CONNECTIONS {
            clients.enrollment.push(
                EnrollmentServiceClient::new(
                    Channel::from_shared(enrollment.to_owned())?
                        .connect()
                        .await?,
                )
                .max_decoding_message_size(16 << 20),
            );
            clients.sessions.push(SessionsServiceClient::new(
                Channel::from_shared(sessions.to_owned())?.connect().await?,
            ));
            clients
                .accountability
                .push(AccountabilityServiceClient::new(
                    Channel::from_shared(accountability.to_owned())?
                        .connect()
                        .await?,
                ));
        }
        Ok(clients)
    }

    fn enrollment(&self, n: u64) -> EnrollmentServiceClient<Channel> {
        self.enrollment[n as usize % CONNECTIONS].clone()
    }
    fn sessions(&self, n: u64) -> SessionsServiceClient<Channel> {
        self.sessions[n as usize % CONNECTIONS].clone()
    }
    fn accountability(&self, n: u64) -> AccountabilityServiceClient<Channel> {
        self.accountability[n as usize % CONNECTIONS].clone()
    }
}

/// `message` with `token` as its bearer token (`demo::with_token`), and a deadline: a
/// stuck call fails, the bench does not hang.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = crate::demo::with_token(message, token);
    request.set_timeout(Duration::from_secs(30));
    request
}

/// Calls `call` again while it answers FAILED_PRECONDITION (what one service has not
/// learnt from another's stream yet) or UNAVAILABLE, for up to 60 s.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::Unavailable
                ) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answer => return answer,
        }
    }
}

/// A seeded member: active in a group, with peer consent, a daily goal and a first
/// check-in.
pub struct Member {
    pub name: String,
    pub group: usize,
    pub token: String,
}

/// A group as the load uses it: its name, its active members (indexes into
/// `Network::members`), and one session in progress with its roster.
pub struct Group {
    pub name: String,
    pub members: Vec<usize>,
    pub session: Option<(String, Vec<String>)>,
}

/// What seeding made, and what the load draws on.
pub struct Network {
    pub name: String,
    pub groups: Vec<Group>,
    pub members: Vec<Member>,
    admins: Vec<String>,
    /// Recent check-ins by group (to encourage).
    check_ins: Vec<std::sync::Mutex<Vec<String>>>,
    /// Numbers the load gives new participants and request ids.
    next: AtomicU64,
    run: String,
}

/// The size of the seeded network.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Size {
    pub groups: usize,
    pub participants: usize,
    pub capacity: u32,
}

const GROUPS_PER_CLINIC: usize = 5;
const SEED_CONCURRENCY: usize = 48;

impl Network {
    fn admin(&self, n: u64) -> &str {
        &self.admins[n as usize % self.admins.len()]
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Seeds clinics (five groups each), groups of `capacity`, and participants spread
    /// round-robin over the groups, each registered, enrolled (past capacity they
    /// wait: only the active are members), with peer consent, a daily goal and a first
    /// check-in shared with the group; then
    /// one session of each group started.
    pub async fn seed(
        clients: &Clients,
        mint: &Mint,
        network: &str,
        size: Size,
        progress: impl Fn(&str),
    ) -> anyhow::Result<Self> {
        let admins: Vec<String> = (0..8)
            .map(|n| mint("network-admin", &format!("bench-admin-{n}")))
            .collect();
        let run = format!("{:x}", chrono::Utc::now().timestamp_millis());
        let clinics = size.groups.div_ceil(GROUPS_PER_CLINIC);
        let start_date = chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        progress(&format!(
            "seeding {clinics} clinics and {} groups",
            size.groups
        ));
        futures::stream::iter(0..clinics)
            .map(|clinic| {
                let mut client = clients.enrollment(clinic as u64);
                let admin = admins[clinic % admins.len()].clone();
                async move {
                    let clinic_id = format!("clinic-{clinic:04}");
                    client
                        .create_clinic(with_token(
                            pb::CreateClinicRequest {
                                parent: format!("networks/{network}"),
                                clinic_id: clinic_id.clone(),
                                clinic: Some(pb::Clinic {
                                    display_name: format!("Clinic {clinic}"),
                                    time_zone: "America/Chicago".into(),
                                    ..Default::default()
                                }),
                                request_id: format!("bench-{clinic_id}"),
                            },
                            &admin,
                        ))
                        .await
                        .with_context(|| format!("creating {clinic_id}"))?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let weekdays = [
            pb::Weekday::Monday,
            pb::Weekday::Tuesday,
            pb::Weekday::Wednesday,
            pb::Weekday::Thursday,
            pb::Weekday::Friday,
        ];
        let group_names: Vec<String> = futures::stream::iter(0..size.groups)
            .map(|group| {
                let mut client = clients.enrollment(group as u64);
                let admin = admins[group % admins.len()].clone();
                let start_date = start_date.clone();
                async move {
                    let clinic_id = format!("clinic-{:04}", group / GROUPS_PER_CLINIC);
                    let group_id = format!("group-{group:05}");
                    let created = client
                        .create_group(with_token(
                            pb::CreateGroupRequest {
                                parent: format!("networks/{network}/clinics/{clinic_id}"),
                                group_id: group_id.clone(),
                                group: Some(pb::Group {
                                    display_name: format!("Group {group}"),
                                    modality: "process".into(),
                                    level_of_care: "outpatient".into(),
                                    capacity: size.capacity,
                                    admission_mode: pb::AdmissionMode::Rolling as i32,
                                    facilitators: vec![pb::Facilitator {
                                        staff_id: format!("staff-{clinic_id}"),
                                        role: pb::FacilitatorRole::Lead as i32,
                                    }],
                                    schedule: Some(pb::Schedule {
                                        days: vec![weekdays[group % weekdays.len()] as i32],
                                        start_time: "18:00".into(),
                                        duration_minutes: 90,
                                        start_date,
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                }),
                                request_id: format!("bench-{group_id}"),
                            },
                            &admin,
                        ))
                        .await
                        .with_context(|| format!("creating {group_id}"))?
                        .into_inner();
                    anyhow::Ok(created.group.map(|group| group.name).unwrap_or_default())
                }
            })
            .buffered(SEED_CONCURRENCY)
            .try_collect()
            .await?;
        progress(&format!("seeding {} participants", size.participants));
        let seeded: Vec<Option<Member>> = futures::stream::iter(0..size.participants)
            .map(|index| {
                let clients = clients.clone();
                let admin = admins[index % admins.len()].clone();
                let group = index % size.groups.max(1);
                let group_name = group_names[group].clone();
                let mint = mint.clone();
                async move {
                    seed_member(&clients, network, &admin, &mint, index, group, &group_name).await
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect()
            .await?;
        let members: Vec<Member> = seeded.into_iter().flatten().collect();
        let mut groups: Vec<Group> = group_names
            .into_iter()
            .map(|name| Group {
                name,
                members: Vec::new(),
                session: None,
            })
            .collect();
        for (index, member) in members.iter().enumerate() {
            groups[member.group].members.push(index);
        }
        progress("starting one session of each group");
        let sessions: Vec<Option<(String, Vec<String>)>> = futures::stream::iter(groups.iter())
            .map(|group| {
                let mut client = clients.sessions(0);
                let admin = admins[0].clone();
                let expected = group.members.len();
                let name = group.name.clone();
                async move { start_session(&mut client, &admin, &name, expected).await }
            })
            .buffered(SEED_CONCURRENCY)
            .try_collect()
            .await?;
        for (group, session) in groups.iter_mut().zip(sessions) {
            group.session = session;
        }
        let check_ins = groups
            .iter()
            .map(|_| std::sync::Mutex::new(Vec::new()))
            .collect();
        Ok(Self {
            name: network.to_owned(),
            groups,
            members,
            admins,
            check_ins,
            next: AtomicU64::new(0),
            run,
        })
    }
}

async fn seed_member(
    clients: &Clients,
    network: &str,
    admin: &str,
    mint: &Mint,
    index: usize,
    group: usize,
    group_name: &str,
) -> anyhow::Result<Option<Member>> {
    let participant_id = format!("member-{index:06}");
    let participant = format!("networks/{network}/participants/{participant_id}");
    let enrollment = clients.enrollment(index as u64);
    let accountability = clients.accountability(index as u64);
    let clinic_id = format!("clinic-{:04}", group / GROUPS_PER_CLINIC);
    let register = pb::RegisterParticipantRequest {
        parent: format!("networks/{network}"),
        participant_id: participant_id.clone(),
        participant: Some(pb::Participant {
            home_clinic: format!("networks/{network}/clinics/{clinic_id}"),
            profile: Some(pb::ParticipantProfile {
                given_name: "Sam".into(),
                family_name: format!("Member{index}"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: format!("bench-register-{participant_id}"),
    };
    patiently(|| {
        let request = with_token(register.clone(), admin);
        let mut client = enrollment.clone();
        async move { client.register_participant(request).await }
    })
    .await
    .with_context(|| format!("registering {participant_id}"))?;
    let enroll = pb::EnrollParticipantRequest {
        parent: group_name.to_owned(),
        participant: participant.clone(),
        request_id: format!("bench-enroll-{participant_id}"),
        ..Default::default()
    };
    let enrolled = patiently(|| {
        let request = with_token(enroll.clone(), admin);
        let mut client = enrollment.clone();
        async move { client.enroll_participant(request).await }
    })
    .await
    .with_context(|| format!("enrolling {participant_id}"))?
    .into_inner();
    if enrolled.membership.map(|membership| membership.state()) != Some(pb::MembershipState::Active)
    {
        return Ok(None);
    }
    let own = mint("participant", &participant_id);
    let consent = pb::RecordConsentRequest {
        parent: participant.clone(),
        consent: Some(pb::Consent {
            kind: pb::ConsentKind::PeerVisibility as i32,
            display: pb::PeerDisplay::FirstName as i32,
            share_check_ins: true,
            share_milestones: true,
            ..Default::default()
        }),
        request_id: format!("bench-consent-{participant_id}"),
    };
    patiently(|| {
        let request = with_token(consent.clone(), &own);
        let mut client = enrollment.clone();
        async move { client.record_consent(request).await }
    })
    .await
    .with_context(|| format!("recording {participant_id}'s consent"))?;
    let goal = acc::SetGoalRequest {
        parent: participant.clone(),
        text: "Go to a meeting every day".into(),
        cadence: acc::Cadence::Daily as i32,
        request_id: format!("bench-goal-{participant_id}"),
    };
    patiently(|| {
        let request = with_token(goal.clone(), &own);
        async { accountability.clone().set_goal(request).await }
    })
    .await
    .with_context(|| format!("setting {participant_id}'s goal"))?;
    // A first check-in shared with the group: every member has a history, and every
    // group's feed a backlog.
    let check_in = acc::SubmitCheckInRequest {
        parent: participant.clone(),
        progress: acc::Progress::OnTrack as i32,
        mood: 6,
        craving: 2,
        text: "Started the program this week.".into(),
        visibility: acc::Visibility::Group as i32,
        request_id: format!("bench-first-check-in-{participant_id}"),
        ..Default::default()
    };
    patiently(|| {
        let request = with_token(check_in.clone(), &own);
        async { accountability.clone().submit_check_in(request).await }
    })
    .await
    .with_context(|| format!("recording {participant_id}'s first check-in"))?;
    Ok(Some(Member {
        name: participant,
        group,
        token: own,
    }))
}

/// Waits for the sessions service to have made the group's sessions with its members
/// on the roster, and starts the first.
async fn start_session(
    client: &mut SessionsServiceClient<Channel>,
    admin: &str,
    group: &str,
    members: usize,
) -> anyhow::Result<Option<(String, Vec<String>)>> {
    // `members`: the group's active members; none, no session is needed.
    if members == 0 {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = ses::ListSessionsRequest {
            parent: group.to_owned(),
            page_size: 5,
            ..Default::default()
        };
        let listed = patiently(|| {
            let request = with_token(list.clone(), admin);
            let mut client = client.clone();
            async move { client.list_sessions(request).await }
        })
        .await?
        .into_inner()
        .sessions;
        // The first of the group's sessions whose roster has members (a roster is who
        // was active when the session was made, so an early one may have fewer).
        for first in listed
            .into_iter()
            .filter(|session| session.state() != ses::SessionState::Cancelled)
        {
            let get = ses::GetSessionRequest {
                name: first.name.clone(),
                ..Default::default()
            };
            let session = patiently(|| {
                let request = with_token(get.clone(), admin);
                let mut client = client.clone();
                async move { client.get_session(request).await }
            })
            .await?
            .into_inner()
            .session
            .unwrap_or_default();
            if session.roster.is_empty() {
                continue;
            }
            if session.state() == ses::SessionState::Scheduled {
                let id = first.name.rsplit('/').next().unwrap_or_default().to_owned();
                let start = ses::StartSessionRequest {
                    name: first.name.clone(),
                    request_id: format!("bench-start-{id}"),
                };
                patiently(|| {
                    let request = with_token(start.clone(), admin);
                    let mut client = client.clone();
                    async move { client.start_session(request).await }
                })
                .await?;
            }
            let roster = session
                .roster
                .into_iter()
                .map(|entry| entry.participant)
                .collect();
            return Ok(Some((first.name, roster)));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the sessions service made no session with the members of {group} within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a load step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// RegisterParticipant, each a new aggregate (what the raw append baseline does).
    Register,
    /// SubmitCheckIn by seeded members (each an existing journal).
    CheckIn,
    /// The mix: check-ins 35%, board reads 20%, encouragement 10%, attendance 10%,
    /// new enrollments (register + enroll) 10%, feed reads 10%, timeline reads 5%.
    Mix,
}

impl Workload {
    pub fn label(self) -> &'static str {
        match self {
            Self::Register => "register (new aggregate)",
            Self::CheckIn => "check-in (existing journal)",
            Self::Mix => "mix",
        }
    }
}

/// The operations of the mix, for per-operation latencies.
pub const OPERATIONS: [&str; 8] = [
    "register",
    "check-in",
    "board",
    "encourage",
    "attendance",
    "enroll",
    "feed",
    "timeline",
];

/// One step's results: all calls, and per operation.
pub struct Measured {
    pub all: Latencies,
    pub by_operation: Vec<(&'static str, Latencies)>,
    pub errors: Vec<String>,
}

/// Runs `workload` at `concurrency` for `seconds`.
pub async fn drive(
    clients: &Clients,
    network: &Arc<Network>,
    workload: Workload,
    concurrency: usize,
    seconds: f64,
) -> Measured {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let clients = clients.clone();
        let network = network.clone();
        tasks.push(tokio::spawn(async move {
            let mut by_operation: Vec<(&'static str, Latencies)> = OPERATIONS
                .iter()
                .map(|name| (*name, Latencies::default()))
                .collect();
            let mut errors = Vec::new();
            while Instant::now() < deadline {
                let n = network.next();
                let operation = match workload {
                    Workload::Register => "register",
                    Workload::CheckIn => "check-in",
                    Workload::Mix => pick(rand::rng().random_range(0..100u32)),
                };
                let began = Instant::now();
                let outcome = run(&clients, &network, operation, n).await;
                if let Err(status) = &outcome
                    && errors.len() < 5
                {
                    errors.push(format!(
                        "{operation}: {:?} {}",
                        status.code(),
                        status.message()
                    ));
                }
                if let Some((_, latencies)) =
                    by_operation.iter_mut().find(|(name, _)| *name == operation)
                {
                    latencies.record(began.elapsed(), outcome.is_ok());
                }
            }
            (by_operation, errors)
        }));
    }
    let mut all = Latencies::default();
    let mut by_operation: Vec<(&'static str, Latencies)> = OPERATIONS
        .iter()
        .map(|name| (*name, Latencies::default()))
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        if let Ok((operations, task_errors)) = task.await {
            for ((_, total), (_, latencies)) in by_operation.iter_mut().zip(operations) {
                all.merge(latencies.clone());
                total.merge(latencies);
            }
            errors.extend(task_errors);
        }
    }
    let elapsed = started.elapsed();
    all.elapsed = elapsed;
    for (_, latencies) in &mut by_operation {
        latencies.elapsed = elapsed;
    }
    by_operation.retain(|(_, latencies)| latencies.count() > 0 || latencies.failed > 0);
    errors.truncate(10);
    Measured {
        all,
        by_operation,
        errors,
    }
}

fn pick(roll: u32) -> &'static str {
    match roll {
        0..35 => "check-in",
        35..55 => "board",
        55..65 => "encourage",
        65..75 => "attendance",
        75..85 => "enroll",
        85..95 => "feed",
        _ => "timeline",
    }
}

async fn run(
    clients: &Clients,
    network: &Network,
    operation: &str,
    n: u64,
) -> Result<(), tonic::Status> {
    // Drawn before any await: the generator is the thread's.
    let (member_index, roster_pick, group_pick) = {
        let mut random = rand::rng();
        (
            random.random_range(0..network.members.len().max(1)),
            random.random_range(0..usize::MAX),
            random.random_range(0..usize::MAX),
        )
    };
    let Some(member) = network.members.get(member_index) else {
        return Err(tonic::Status::failed_precondition("no members were seeded"));
    };
    let request_id = format!("bench-{}-{n}", network.run);
    match operation {
        "register" => {
            register(clients, network, n, &request_id).await?;
        }
        "check-in" => {
            let answer = clients
                .accountability(n)
                .submit_check_in(with_token(
                    acc::SubmitCheckInRequest {
                        parent: member.name.clone(),
                        progress: acc::Progress::OnTrack as i32,
                        mood: 6,
                        craving: 2,
                        text: "Kept to the plan today.".into(),
                        visibility: acc::Visibility::Group as i32,
                        request_id,
                        ..Default::default()
                    },
                    &member.token,
                ))
                .await?
                .into_inner();
            if let Some(check_in) = answer.check_in
                && let Ok(mut recent) = network.check_ins[member.group].lock()
            {
                if recent.len() >= 16 {
                    recent.remove(0);
                }
                recent.push(check_in.name);
            }
        }
        "board" => {
            clients
                .accountability(n)
                .get_group_board(with_token(
                    acc::GetGroupBoardRequest {
                        group: network.groups[member.group].name.clone(),
                        ..Default::default()
                    },
                    &member.token,
                ))
                .await?;
        }
        "encourage" => {
            let check_in = network.check_ins[member.group]
                .lock()
                .ok()
                .and_then(|recent| recent.get(roster_pick % recent.len().max(1)).cloned());
            let Some(check_in) =
                check_in.filter(|name| !name.starts_with(&format!("{}/", member.name)))
            else {
                // Nothing of a peer's to encourage yet: a board read instead.
                return Box::pin(run(clients, network, "board", n)).await;
            };
            clients
                .accountability(n)
                .encourage(with_token(
                    acc::EncourageRequest {
                        check_in,
                        participant: member.name.clone(),
                        reaction: "strong".into(),
                        message: String::new(),
                        request_id,
                    },
                    &member.token,
                ))
                .await?;
        }
        "attendance" => {
            let group = &network.groups[member.group];
            let Some((session, roster)) = &group.session else {
                return Err(tonic::Status::failed_precondition(
                    "the group has no session",
                ));
            };
            let participant = roster[roster_pick % roster.len().max(1)].clone();
            let present = n.is_multiple_of(2);
            clients
                .sessions(n)
                .record_attendance(with_token(
                    ses::RecordAttendanceRequest {
                        name: session.clone(),
                        participant,
                        status: if present {
                            ses::AttendanceStatus::Present as i32
                        } else {
                            ses::AttendanceStatus::Absent as i32
                        },
                        minutes_attended: if present { 90 } else { 0 },
                        request_id,
                    },
                    network.admin(n),
                ))
                .await?;
        }
        "enroll" => {
            let participant = register(clients, network, n, &request_id).await?;
            let group = &network.groups[group_pick % network.groups.len()];
            clients
                .enrollment(n)
                .enroll_participant(with_token(
                    pb::EnrollParticipantRequest {
                        parent: group.name.clone(),
                        participant,
                        request_id: format!("{request_id}-enroll"),
                        ..Default::default()
                    },
                    network.admin(n),
                ))
                .await?;
        }
        "feed" => {
            let mut feed = clients
                .accountability(n)
                .watch_group_feed(with_token(
                    acc::WatchGroupFeedRequest {
                        group: network.groups[member.group].name.clone(),
                        after_position: 0,
                        heartbeat_seconds: 0,
                    },
                    &member.token,
                ))
                .await?
                .into_inner();
            // The first item (the backlog's oldest, or a heartbeat), then hang up.
            let _ = tokio::time::timeout(Duration::from_secs(5), feed.message()).await;
        }
        _ => {
            clients
                .accountability(n)
                .get_participant_timeline(with_token(
                    acc::GetParticipantTimelineRequest {
                        participant: member.name.clone(),
                        consistency_token: String::new(),
                    },
                    &member.token,
                ))
                .await?;
        }
    }
    Ok(())
}

/// A new participant of `network`'s first clinic (what the load registers).
pub fn new_participant(
    network: &str,
    participant_id: &str,
    request_id: &str,
) -> pb::RegisterParticipantRequest {
    pb::RegisterParticipantRequest {
        parent: format!("networks/{network}"),
        participant_id: participant_id.to_owned(),
        participant: Some(pb::Participant {
            home_clinic: format!("networks/{network}/clinics/clinic-0000"),
            profile: Some(pb::ParticipantProfile {
                given_name: "Alex".into(),
                family_name: "New".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: request_id.to_owned(),
    }
}

/// Registers a new participant; its resource name.
async fn register(
    clients: &Clients,
    network: &Network,
    n: u64,
    request_id: &str,
) -> Result<String, tonic::Status> {
    let participant_id = format!("new-{}-{n}", network.run);
    clients
        .enrollment(n)
        .register_participant(with_token(
            new_participant(&network.name, &participant_id, request_id),
            network.admin(n),
        ))
        .await?;
    Ok(format!(
        "networks/{}/participants/{participant_id}",
        network.name
    ))
}

/// Ack-to-read-model lag, measured while a step runs: one probe at a time registers a
/// participant and reads it back (no consistency token) until the read model has it.
pub async fn probe_lag(
    clients: Clients,
    network: Arc<Network>,
    stop: Arc<AtomicBool>,
) -> Latencies {
    let mut lags = Latencies::default();
    let mut enrollment = clients.enrollment(0);
    while !stop.load(Ordering::Relaxed) {
        let n = network.next();
        let request_id = format!("bench-probe-{}-{n}", network.run);
        let Ok(name) = register(&clients, &network, n, &request_id).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(30);
        let seen = loop {
            let mut request = with_token(
                pb::GetParticipantRequest {
                    name: name.clone(),
                    consistency_token: String::new(),
                },
                network.admin(n),
            );
            if let Ok(value) = "operations".parse() {
                request
                    .metadata_mut()
                    .insert(circle_audit::PURPOSE_METADATA, value);
            }
            match enrollment.get_participant(request).await {
                Ok(_) => break true,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                Err(_) => break false,
            }
        };
        lags.record(acked.elapsed(), seen);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags
}
