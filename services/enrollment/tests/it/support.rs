use std::sync::Arc;
use std::time::Duration;

use circle_enrollment::{ManualClock, StartError};
use tokio::task::JoinHandle;

use circle_proto::enrollment::v1 as pb;
use circle_testkit::TestEnv;
use pb::enrollment_service_client::EnrollmentServiceClient;
use tonic::transport::Channel;

pub const NETWORK: &str = "acme";

/// A started service: how to stop it, and its task.
type Running = (
    tokio::sync::oneshot::Sender<()>,
    JoinHandle<Result<(), StartError>>,
);

pub struct Service {
    pub env: TestEnv,
    pub client: EnrollmentServiceClient<Channel>,
    /// The service's clock; it moves only when a test advances it.
    pub clock: Arc<ManualClock>,
    running: Option<Running>,
    replicas: Vec<tokio::sync::oneshot::Sender<()>>,
}

async fn launch(
    config: &circle_config::Config,
    clock: Arc<ManualClock>,
) -> anyhow::Result<(EnrollmentServiceClient<Channel>, Running)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = circle_enrollment::start_with_clock(config, clock, async {
        let _ = stopped.await;
    })
    .await?;
    let client = EnrollmentServiceClient::connect(format!("http://{}", running.local_addr)).await?;
    Ok((client, (stop, running.task)))
}

impl Service {
    pub async fn start() -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let clock = Arc::new(ManualClock::new("2026-11-20T12:00:00Z".parse()?));
        let (client, running) = launch(&env.config, clock.clone()).await?;
        Ok(Self {
            env,
            client,
            clock,
            running: Some(running),
            replicas: Vec::new(),
        })
    }

    /// Stops the service (its server, projections and process managers) and starts
    /// it again on the same stream, database and clock.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await??;
        }
        let (client, running) = launch(&self.env.config, self.clock.clone()).await?;
        self.client = client;
        self.running = Some(running);
        Ok(())
    }

    /// A second replica of the service on the same stream, database and clock.
    pub async fn replica(&mut self) -> anyhow::Result<EnrollmentServiceClient<Channel>> {
        let (client, (stop, _task)) = launch(&self.env.config, self.clock.clone()).await?;
        self.replicas.push(stop);
        Ok(client)
    }

    /// The last sequence of the service's stream: unchanged means nothing was appended.
    pub async fn stream_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .env
            .jetstream()
            .get_stream(self.env.config.stream_name("enrollment"))
            .await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    pub async fn clinic(&mut self, clinic_id: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .create_clinic(admin(pb::CreateClinicRequest {
                parent: format!("networks/{NETWORK}"),
                clinic_id: clinic_id.into(),
                clinic: Some(pb::Clinic {
                    display_name: format!("Clinic {clinic_id}"),
                    time_zone: "America/Chicago".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await?
            .into_inner();
        Ok(response
            .clinic
            .map(|clinic| clinic.name)
            .unwrap_or_default())
    }

    pub async fn group(
        &mut self,
        clinic: &str,
        group_id: &str,
        capacity: u32,
    ) -> anyhow::Result<String> {
        let response = self
            .client
            .create_group(admin(pb::CreateGroupRequest {
                parent: clinic.into(),
                group_id: group_id.into(),
                group: Some(group_body(capacity)),
                request_id: String::new(),
            }))
            .await?
            .into_inner();
        Ok(response.group.map(|group| group.name).unwrap_or_default())
    }

    pub async fn participant(
        &mut self,
        clinic: &str,
        participant_id: &str,
    ) -> anyhow::Result<String> {
        let response = self
            .client
            .register_participant(admin(pb::RegisterParticipantRequest {
                parent: format!("networks/{NETWORK}"),
                participant_id: participant_id.into(),
                participant: Some(pb::Participant {
                    home_clinic: clinic.into(),
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
        Ok(response
            .participant
            .map(|participant| participant.name)
            .unwrap_or_default())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            let _ = stop.send(());
        }
        for stop in self.replicas.drain(..) {
            let _ = stop.send(());
        }
    }
}

pub fn group_body(capacity: u32) -> pb::Group {
    pb::Group {
        display_name: "Tuesday evening process group".into(),
        modality: "process".into(),
        level_of_care: "intensive-outpatient".into(),
        capacity,
        admission_mode: pb::AdmissionMode::Rolling as i32,
        ..Default::default()
    }
}

/// A request from a trusted caller: a network admin of `acme`.
pub fn admin<T>(message: T) -> tonic::Request<T> {
    as_caller(message, NETWORK, "network-admin")
}

/// A request from `staff-1` of `network` with one `role` and no clinics, carrying a
/// bearer token of the tests' issuer.
pub fn as_caller<T>(message: T, network: &'static str, role: &'static str) -> tonic::Request<T> {
    from(message, network, role, "staff-1", &[])
}

/// A request from `actor` of `network` with one `role`, scoped to `clinics`.
pub fn from<T>(
    message: T,
    network: &str,
    role: &str,
    actor: &str,
    clinics: &[&str],
) -> tonic::Request<T> {
    circle_testkit::request_as(message, network, role, actor, clinics)
}

/// The ErrorInfo reason and the BadRequest fields of a failed call.
pub fn reason_and_fields(status: &tonic::Status) -> (String, Vec<String>) {
    use tonic_types::StatusExt;
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    let fields = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    (reason, fields)
}

/// `networks/acme/clinics/{clinic}/groups/{group}/memberships/{participant}`
pub fn membership_of(group: &str, participant: &str) -> String {
    let participant_id = participant.rsplit('/').next().unwrap_or_default();
    format!("{group}/memberships/{participant_id}")
}

impl Service {
    pub async fn enroll(
        &mut self,
        group: &str,
        participant: &str,
    ) -> anyhow::Result<pb::EnrollParticipantResponse> {
        Ok(self
            .client
            .enroll_participant(admin(pb::EnrollParticipantRequest {
                parent: group.into(),
                participant: participant.into(),
                ..Default::default()
            }))
            .await?
            .into_inner())
    }

    pub async fn discharge(
        &mut self,
        membership: &str,
        reason: pb::EndReason,
    ) -> Result<pb::DischargeParticipantResponse, tonic::Status> {
        Ok(self
            .client
            .discharge_participant(admin(pb::DischargeParticipantRequest {
                name: membership.into(),
                reason: reason as i32,
                request_id: String::new(),
            }))
            .await?
            .into_inner())
    }

    /// The membership once the read model has reached `token` (or now, if empty).
    pub async fn membership(
        &mut self,
        membership: &str,
        token: &str,
    ) -> anyhow::Result<pb::Membership> {
        Ok(self
            .client
            .get_membership(admin(pb::GetMembershipRequest {
                name: membership.into(),
                consistency_token: token.into(),
            }))
            .await?
            .into_inner()
            .membership
            .unwrap_or_default())
    }

    /// Waits until the membership is in `state` (read model), at most 15 s.
    pub async fn wait_for_state(
        &mut self,
        membership: &str,
        state: pb::MembershipState,
    ) -> anyhow::Result<pb::Membership> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let current = self.membership(membership, "").await;
            if let Ok(current) = &current
                && current.state == state as i32
            {
                return Ok(current.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{membership} did not reach {state:?}; last seen {current:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every event of a group, with the sequence of the commit it is in, from the log.
    pub async fn group_log(
        &self,
        group_id: &str,
    ) -> anyhow::Result<Vec<(u64, circle_enrollment::domain::Event)>> {
        let store = circle_eventstore::EventStore::open(
            self.env.nats.clone(),
            circle_enrollment::stream_spec(&self.env.config),
        )
        .await?;
        let key = circle_eventstore::AggregateKey::new(NETWORK, "group", group_id)?;
        let mut events = Vec::new();
        for commit in store.read(&key, 0, store.version(&key).await?).await? {
            for event in circle_enrollment::codec::decode_commit(&commit)? {
                events.push((commit.sequence, event));
            }
        }
        Ok(events)
    }

    /// Waits until the process managers have handled everything in the stream.
    pub async fn process_managers_caught_up(&self) -> anyhow::Result<()> {
        let last = self.stream_last_sequence().await? as i64;
        let pool = self.env.pool.clone();
        TestEnv::eventually(Duration::from_secs(15), || {
            let pool = pool.clone();
            async move {
                let behind: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (
                        SELECT last_sequence FROM enrollment_offer_timers.projection_checkpoint
                        UNION ALL SELECT last_sequence FROM enrollment_transfers.projection_checkpoint
                     ) checkpoints WHERE last_sequence < $1",
                )
                .bind(last)
                .fetch_one(&pool)
                .await?;
                Ok(behind == 0)
            }
        })
        .await
    }
}

pub fn code_and_reason(
    result: Result<impl std::fmt::Debug, tonic::Status>,
) -> (tonic::Code, String) {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(status) => {
            let (reason, _) = reason_and_fields(&status);
            (status.code(), reason)
        }
    }
}
