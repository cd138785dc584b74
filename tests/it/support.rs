use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use accountability::accountability_service_client::AccountabilityServiceClient;
use circle_calendar::ManualClock;
use circle_proto::accountability::v1 as accountability;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use circle_testkit::TestEnv;
use enrollment::enrollment_service_client::EnrollmentServiceClient;
use sessions::sessions_service_client::SessionsServiceClient;
use tonic::transport::Channel;

pub const NETWORK: &str = "acme";

type Stop = tokio::sync::oneshot::Sender<()>;
pub type Task = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Every service, on one clock that only the test moves.
pub struct System {
    pub env: TestEnv,
    pub clock: Arc<ManualClock>,
    pub enrollment: EnrollmentServiceClient<Channel>,
    pub sessions: SessionsServiceClient<Channel>,
    pub accountability: AccountabilityServiceClient<Channel>,
    /// Where each service listens (changes on restart).
    pub addresses: circle_cli::Addresses,
    running: Option<(Stop, Task)>,
}

type Clients = (
    EnrollmentServiceClient<Channel>,
    SessionsServiceClient<Channel>,
    AccountabilityServiceClient<Channel>,
    circle_cli::Addresses,
);

impl System {
    pub async fn start_at(now: &str) -> anyhow::Result<Self> {
        Self::start_with(now, |_| {}).await
    }

    pub async fn start_with(
        now: &str,
        configure: impl FnOnce(&mut circle_config::Config),
    ) -> anyhow::Result<Self> {
        let mut env = TestEnv::new().await?;
        configure(&mut env.config);
        let clock = Arc::new(ManualClock::new(now.parse()?));
        let ((enrollment, sessions, accountability, addresses), running) =
            launch(&env, clock.clone()).await?;
        Ok(Self {
            env,
            clock,
            enrollment,
            sessions,
            accountability,
            addresses,
            running: Some(running),
        })
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await??;
        }
        let ((enrollment, sessions, accountability, addresses), running) =
            launch(&self.env, self.clock.clone()).await?;
        self.addresses = addresses;
        self.enrollment = enrollment;
        self.sessions = sessions;
        self.accountability = accountability;
        self.running = Some(running);
        Ok(())
    }

    /// Asks every service to stop and returns at once; the task ends once they have
    /// shut down (for tests that watch a shutdown as it happens).
    pub fn begin_stop(&mut self) -> anyhow::Result<Task> {
        let (stop, task) = self
            .running
            .take()
            .ok_or_else(|| anyhow::anyhow!("the services are not running"))?;
        let _ = stop.send(());
        Ok(task)
    }

    /// Stops every service and waits (at most `limit`) until they have shut down.
    pub async fn stop(&mut self, limit: Duration) -> anyhow::Result<()> {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            tokio::time::timeout(limit, task)
                .await
                .map_err(|_| anyhow::anyhow!("the services did not stop within {limit:?}"))???;
        }
        Ok(())
    }

    /// A schedule materialiser of its own, on the test's clock, for tests that decide
    /// when a pass happens (start the system with a long `sessions.materialize_poll_ms`).
    pub async fn materializer(&self) -> anyhow::Result<circle_sessions::process::Materializer> {
        let config = &self.env.config;
        let store = circle_eventstore::EventStore::open(
            self.env.nats.clone(),
            circle_sessions::stream_spec(config),
        )
        .await?;
        Ok(circle_sessions::process::Materializer {
            pool: self.env.runtime_pool.clone(),
            commands: Arc::new(circle_sessions::app::Commands::new(
                store,
                self.env.runtime_pool.clone(),
                self.clock.clone(),
                self.key_store().await?,
            )),
            horizon: chrono::Duration::days(i64::from(config.sessions.horizon_days)),
            lookback: chrono::Duration::days(i64::from(config.sessions.lookback_days)),
        })
    }

    /// A nudger of its own, on the test's clock and the services' stores, as the
    /// running one is (a pass of it is a whole pass, whoever else runs one).
    pub async fn nudger(&self) -> anyhow::Result<circle_accountability::process::Nudger> {
        let config = &self.env.config;
        let (start, end) = config
            .accountability
            .quiet_hours_minutes()
            .ok_or_else(|| anyhow::anyhow!("quiet hours"))?;
        Ok(circle_accountability::process::Nudger {
            pool: self.env.runtime_pool.clone(),
            commands: Arc::new(circle_accountability::app::Commands::new(
                circle_eventstore::EventStore::open(
                    self.env.nats.clone(),
                    circle_accountability::stream_spec(config),
                )
                .await?,
                self.env.runtime_pool.clone(),
                self.clock.clone(),
                self.key_store().await?,
            )),
            default_quiet_hours: circle_accountability::domain::settings::QuietHours::new(
                start, end,
            )?,
        })
    }

    /// Advances the clock, runs one whole nudger pass, and answers the accountability
    /// stream's last sequence: a consistency token under which every read sees what the
    /// pass sent.
    pub async fn nudge_pass_after(&self, advance: chrono::Duration) -> anyhow::Result<String> {
        self.clock.advance(advance);
        self.nudger()
            .await?
            .once()
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(self
            .accountability_stream_last_sequence()
            .await?
            .to_string())
    }

    /// The participants' data keys, as the services keep them (crypto-shredding): the
    /// same store, with the tests' master key.
    pub async fn key_store(&self) -> anyhow::Result<circle_vault::store::KeyStore> {
        Ok(circle_vault::store::KeyStore::open(
            self.env.database().await?,
            circle_vault::MasterKeys::parse(circle_testkit::MASTER_KEYS)?,
        )
        .await?)
    }

    /// The request ids of the commits appended to a service's stream after `before`.
    pub async fn request_ids_since(
        &self,
        spec: circle_eventstore::StreamSpec,
        before: u64,
    ) -> anyhow::Result<Vec<String>> {
        let store = circle_eventstore::EventStore::open(self.env.nats.clone(), spec).await?;
        let mut request_ids = Vec::new();
        for sequence in before + 1..=store.last_sequence().await? {
            request_ids.push(store.read_commit(sequence).await?.commit.request_id);
        }
        Ok(request_ids)
    }

    pub async fn sessions_stream_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .env
            .jetstream()
            .get_stream(self.env.config.stream_name("sessions"))
            .await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    pub async fn clinic(&mut self, clinic_id: &str) -> anyhow::Result<String> {
        let response = self
            .enrollment
            .create_clinic(create_clinic_request(clinic_id))
            .await?
            .into_inner();
        Ok(response
            .clinic
            .map(|clinic| clinic.name)
            .unwrap_or_default())
    }

    /// A weekly group, Tuesdays 18:30 in Chicago, facilitated by `staff-1`.
    pub async fn weekly_group(
        &mut self,
        clinic: &str,
        group_id: &str,
        start_date: &str,
    ) -> anyhow::Result<String> {
        let response = self
            .enrollment
            .create_group(admin(enrollment::CreateGroupRequest {
                parent: clinic.into(),
                group_id: group_id.into(),
                group: Some(enrollment::Group {
                    display_name: "Tuesday evening process group".into(),
                    modality: "process".into(),
                    level_of_care: "intensive-outpatient".into(),
                    capacity: 12,
                    facilitators: vec![enrollment::Facilitator {
                        staff_id: "staff-1".into(),
                        role: enrollment::FacilitatorRole::Lead as i32,
                    }],
                    schedule: Some(enrollment::Schedule {
                        days: vec![enrollment::Weekday::Tuesday as i32],
                        start_time: "18:30".into(),
                        duration_minutes: 90,
                        start_date: start_date.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
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
        given_name: &str,
        family_name: &str,
    ) -> anyhow::Result<String> {
        let response = self
            .enrollment
            .register_participant(admin(enrollment::RegisterParticipantRequest {
                parent: format!("networks/{NETWORK}"),
                participant_id: participant_id.into(),
                participant: Some(enrollment::Participant {
                    home_clinic: clinic.into(),
                    profile: Some(enrollment::ParticipantProfile {
                        given_name: given_name.into(),
                        family_name: family_name.into(),
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

    pub async fn enroll(&mut self, group: &str, participant: &str) -> anyhow::Result<()> {
        self.enrollment
            .enroll_participant(admin(enrollment::EnrollParticipantRequest {
                parent: group.into(),
                participant: participant.into(),
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    /// The generated session of a group on a local date.
    pub fn session_on(&self, group: &str, date: &str) -> anyhow::Result<String> {
        let group_id = group.rsplit('/').next().unwrap_or_default();
        let session_id = circle_sessions::process::session_id(NETWORK, group_id, date.parse()?);
        Ok(format!("{group}/sessions/{session_id}"))
    }

    pub async fn session(&mut self, name: &str) -> anyhow::Result<Option<sessions::Session>> {
        match self
            .sessions
            .get_session(admin(sessions::GetSessionRequest {
                name: name.into(),
                consistency_token: String::new(),
            }))
            .await
        {
            Ok(response) => Ok(response.into_inner().session),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    /// Waits (at most 15 s) until the session exists and `condition` holds for it.
    pub async fn wait_for_session(
        &mut self,
        name: &str,
        condition: impl Fn(&sessions::Session) -> bool,
    ) -> anyhow::Result<sessions::Session> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let seen = self.session(name).await?;
            if let Some(session) = &seen
                && condition(session)
            {
                return Ok(session.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{name}: condition not met; last seen {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            let _ = stop.send(());
        }
    }
}

async fn launch(env: &TestEnv, clock: Arc<ManualClock>) -> anyhow::Result<(Clients, (Stop, Task))> {
    circle_cli::ensure_database(&env.config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addresses, task) = circle_cli::start_all_with_clock(&env.config, clock, async {
        let _ = stopped.await;
    })
    .await?;
    let enrollment =
        EnrollmentServiceClient::connect(format!("http://{}", addresses.enrollment)).await?;
    let sessions = SessionsServiceClient::connect(format!("http://{}", addresses.sessions)).await?;
    let accountability =
        AccountabilityServiceClient::connect(format!("http://{}", addresses.accountability))
            .await?;
    Ok((
        (enrollment, sessions, accountability, addresses),
        (stop, task),
    ))
}

/// A network admin's request to create clinic `clinic_id` of `acme` ("Clinic <id>").
pub fn create_clinic_request(clinic_id: &str) -> tonic::Request<enrollment::CreateClinicRequest> {
    admin(enrollment::CreateClinicRequest {
        parent: format!("networks/{NETWORK}"),
        clinic_id: clinic_id.to_owned(),
        clinic: Some(enrollment::Clinic {
            display_name: format!("Clinic {clinic_id}"),
            time_zone: "America/Chicago".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    })
}

/// A request from a network admin of `acme`.
pub fn admin<T>(message: T) -> tonic::Request<T> {
    as_caller(message, "network-admin", "admin-1")
}

/// A request from `actor` of `acme` with one `role`, scoped (if staff) to `north`,
/// carrying a bearer token of the tests' issuer.
pub fn as_caller<T>(message: T, role: &'static str, actor: &'static str) -> tonic::Request<T> {
    let clinics: &[&str] = if role == "participant" {
        &[]
    } else {
        &["north"]
    };
    circle_testkit::request_as(message, NETWORK, role, actor, clinics)
}

pub fn on_roster(session: &sessions::Session, participant: &str) -> bool {
    session
        .roster
        .iter()
        .any(|entry| entry.participant == participant)
}

/// Code, ErrorInfo reason and BadRequest fields of a refusal.
pub fn refusal<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
) -> (tonic::Code, String, Vec<String>) {
    use tonic_types::StatusExt;
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(status) => (
            status.code(),
            status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default(),
            status
                .get_details_bad_request()
                .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
                .unwrap_or_default(),
        ),
    }
}

impl System {
    /// Records peer-visibility consent for a participant.
    pub async fn peer_consent(
        &mut self,
        participant: &str,
        alias: Option<&str>,
        share_milestones: bool,
    ) -> anyhow::Result<()> {
        self.enrollment
            .record_consent(admin(enrollment::RecordConsentRequest {
                parent: participant.into(),
                consent: Some(enrollment::Consent {
                    kind: enrollment::ConsentKind::PeerVisibility as i32,
                    display: if alias.is_some() {
                        enrollment::PeerDisplay::Alias
                    } else {
                        enrollment::PeerDisplay::FirstName
                    } as i32,
                    alias: alias.unwrap_or_default().into(),
                    share_check_ins: true,
                    share_milestones,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await?;
        Ok(())
    }

    /// The event types of the commits callers (not process managers, whose request
    /// ids start with `pm:`) appended to a service's stream after sequence `before`:
    /// "a refused request changed nothing", while the nudger or the materialiser may
    /// still be writing.
    pub async fn client_commits_since(
        &self,
        spec: circle_eventstore::StreamSpec,
        before: u64,
    ) -> anyhow::Result<Vec<String>> {
        let store = circle_eventstore::EventStore::open(self.env.nats.clone(), spec).await?;
        let mut appended = Vec::new();
        for sequence in before + 1..=store.last_sequence().await? {
            let stored = store.read_commit(sequence).await?;
            if !stored.commit.request_id.starts_with("pm:") {
                appended.extend(stored.commit.events.into_iter().map(|e| e.event_type));
            }
        }
        Ok(appended)
    }

    pub async fn accountability_stream_last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .env
            .jetstream()
            .get_stream(self.env.config.stream_name("accountability"))
            .await?;
        Ok(stream.info().await?.state.last_sequence)
    }
}

/// Waits (at most 15 s) until `condition` holds for what `query` returns.
pub async fn eventually<T: std::fmt::Debug, Fut>(
    mut query: impl FnMut() -> Fut,
    condition: impl Fn(&T) -> bool,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = query().await?;
        if condition(&seen) {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met; last seen {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A request from `staff-1`, scoped to `north`, the facilitator of every group
/// `System::weekly_group` makes (the one who writes, signs and amends its notes).
pub fn as_facilitator<T>(message: T) -> tonic::Request<T> {
    as_caller(message, "facilitator", "staff-1")
}

/// A request from the messaging service of `network` (a calling service's token; the
/// test allows it under `auth.services`).
pub fn as_messaging<T>(message: T, network: &str) -> tonic::Request<T> {
    circle_testkit::request_as(message, network, "service", "messaging", &[])
}

/// A request from a participant acting for themselves.
pub fn as_participant<T>(message: T, participant_id: &'static str) -> tonic::Request<T> {
    as_caller(message, "participant", participant_id)
}

/// Sends bytes as they are, and takes the answer's bytes as they are: a client that
/// can send what no generated client would.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        bytes::BufMut::put(buf, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, Self::Error> {
        use bytes::Buf as _;
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// Calls `path` at `address` with `body` as the message's bytes and `authorization`
/// (if any) as that metadata, over a new connection.
pub async fn call_raw(
    address: std::net::SocketAddr,
    path: &'static str,
    body: Bytes,
    authorization: Option<&str>,
) -> anyhow::Result<Result<Bytes, tonic::Status>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(Duration::from_secs(30));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse()?);
    }
    Ok(grpc
        .unary(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
        .map(tonic::Response::into_inner))
}

/// Every message of a stream as its raw bytes (subject, headers, payload), read
/// straight from JetStream: what a scan for plaintext at rest looks through.
pub async fn stream_messages(system: &System, stream_name: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut stream = system.env.jetstream().get_stream(stream_name).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await?;
        let mut bytes = message.subject.as_bytes().to_vec();
        for (name, values) in message.headers.iter() {
            bytes.extend_from_slice(name.as_ref());
            for value in values {
                bytes.extend_from_slice(value.as_ref());
            }
        }
        bytes.extend_from_slice(&message.payload);
        messages.push(bytes);
    }
    Ok(messages)
}

/// Whether `haystack` holds the bytes of `needle`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The text, text-array, JSON and bytea columns of the tables of the schemas `LIKE
/// schema_pattern` (PostgreSQL's own catalogs aside), read as the owner so every
/// network's rows are seen: every column looked at (`schema.table.column`), and those
/// holding `needle`.
pub async fn columns_holding(
    system: &System,
    schema_pattern: &str,
    needle: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text
         FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema LIKE $1 AND t.table_type = 'BASE TABLE'
           AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
           AND c.data_type IN ('text', 'character varying', 'ARRAY', 'bytea', 'json', 'jsonb')
         ORDER BY 1, 2, 3",
    )
    .bind(schema_pattern)
    .fetch_all(&system.env.pool)
    .await?;
    let mut checked = Vec::new();
    let mut holding = Vec::new();
    for (schema, table, column, data_type) in columns {
        let value = if data_type == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        let found: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE strpos({value}, $1) > 0"
        )))
        .bind(needle)
        .fetch_one(&system.env.pool)
        .await?;
        let qualified = format!("{schema}.{table}.{column}");
        if found > 0 {
            holding.push(qualified.clone());
        }
        checked.push(qualified);
    }
    Ok((checked, holding))
}
