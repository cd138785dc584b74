use std::time::Duration;

use circle_proto::enrollment::v1 as pb;
use circle_testkit::TestEnv;
use pb::enrollment_service_client::EnrollmentServiceClient;
use tonic::transport::Channel;

pub const NETWORK: &str = "acme";

pub struct Service {
    pub env: TestEnv,
    pub client: EnrollmentServiceClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    replicas: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Service {
    pub async fn start() -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = circle_enrollment::start(&env.config, async {
            let _ = stopped.await;
        })
        .await?;
        let client =
            EnrollmentServiceClient::connect(format!("http://{}", running.local_addr)).await?;
        Ok(Self {
            env,
            client,
            stop: Some(stop),
            replicas: Vec::new(),
        })
    }

    /// A second replica of the service on the same stream and database.
    pub async fn replica(&mut self) -> anyhow::Result<EnrollmentServiceClient<Channel>> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = circle_enrollment::start(&self.env.config, async {
            let _ = stopped.await;
        })
        .await?;
        self.replicas.push(stop);
        Ok(EnrollmentServiceClient::connect(format!("http://{}", running.local_addr)).await?)
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
        if let Some(stop) = self.stop.take() {
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

pub fn as_caller<T>(message: T, network: &'static str, role: &'static str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        circle_grpc_keys::NETWORK,
        tonic::metadata::MetadataValue::from_static(network),
    );
    metadata.insert(
        circle_grpc_keys::ROLE,
        tonic::metadata::MetadataValue::from_static(role),
    );
    metadata.insert(
        circle_grpc_keys::ACTOR,
        tonic::metadata::MetadataValue::from_static("staff-1"),
    );
    request.set_timeout(Duration::from_secs(30));
    request
}

mod circle_grpc_keys {
    pub const NETWORK: &str = "x-circle-network";
    pub const ROLE: &str = "x-circle-role";
    pub const ACTOR: &str = "x-circle-actor";
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
