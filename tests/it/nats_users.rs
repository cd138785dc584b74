//! The per-service NATS users of `deploy/nats/users.conf` on a real nats-server (the
//! current one `deploy/infra.sh` installs from PyPI), over TLS with client
//! certificates, as `deploy/nats/nats-server.conf` has it: the three services
//! start and work with their own users, the enrollment user appends to its own stream
//! but may not publish into another service's subjects, and the server logs no
//! permission violation but the ones the test provokes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use circle_config::{Config, Secret};
use circle_eventstore::{AggregateKey, CommitMeta, EventStore, NewEvent};
use circle_proto::accountability::v1 as accountability;
use circle_proto::enrollment::v1 as enrollment;
use circle_proto::sessions::v1 as sessions;
use circle_testkit::TestEnv;
use tonic::transport::Channel;

use crate::pki::Pki;
use crate::support::{admin, eventually};

const USERS: &str = include_str!("../../deploy/nats/users.conf");

/// The nats-server binary: `CIRCLE_TEST_NATS_SERVER`, else where `deploy/infra.sh`
/// installs the current server (`nats-server-current` on the PATH, or its venv).
fn nats_server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CIRCLE_TEST_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server-current"))
        .find(|candidate| candidate.is_file());
    if let Some(path) = on_path {
        return Ok(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    let installed = cache.join("circle/nats-current/bin/nats-server");
    anyhow::ensure!(
        installed.is_file(),
        "no current nats-server at {}: run deploy/test.sh (or source deploy/infra.sh and \
         run ensure_current_nats) to install it",
        installed.display()
    );
    Ok(installed)
}

/// A nats-server of the test's own, with TLS and `users.conf`; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    passwords: Vec<(&'static str, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(pki: &Pki) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = &pki.dir;
        let log = dir.join("nats.log");
        std::fs::write(dir.join("users.conf"), USERS)?;
        let quoted = |path: &Path| format!("{:?}", path.display().to_string());
        std::fs::write(
            dir.join("nats.conf"),
            format!(
                "listen: 127.0.0.1:{port}\n\
                 log_file: {log}\n\
                 jetstream {{ store_dir: {store} }}\n\
                 tls {{ cert_file: {cert}, key_file: {key}, ca_file: {clients}, verify: true, \
                 timeout: 2 }}\n\
                 include users.conf\n",
                log = quoted(&log),
                store = quoted(&dir.join("jetstream")),
                cert = quoted(&pki.server_cert),
                key = quoted(&pki.server_key),
                clients = quoted(&pki.client_ca),
            ),
        )?;
        let passwords: Vec<(&'static str, String)> =
            ["enrollment", "sessions", "accountability", "ops", "circle"]
                .into_iter()
                .map(|user| (user, uuid_password()))
                .collect();
        let mut command = Command::new(nats_server_binary()?);
        command
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (user, password) in &passwords {
            command.env(
                format!("NATS_{}_PASSWORD", user.to_ascii_uppercase()),
                password,
            );
        }
        let mut server = Self {
            child: command.spawn()?,
            port,
            log,
            passwords,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("nats-server exited ({status}):\n{}", server.log_text());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not listen within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `base` for `user`: this server over TLS (trusting the test's CA, with the
    /// client certificate the server verifies), production stream names (no
    /// namespace), the user's password.
    fn config_for(&self, base: &Config, pki: &Pki, user: &'static str) -> Config {
        let mut config = base.clone();
        config.nats.url = format!("tls://127.0.0.1:{}", self.port);
        config.nats.namespace = String::new();
        config.nats.tls_ca = Some(pki.server_ca.clone());
        config.nats.tls_required = true;
        config.nats.tls_cert = Some(pki.client_cert.clone());
        config.nats.tls_key = Some(pki.client_key.clone());
        config.nats.user = Some(user.to_owned());
        config.nats.password = self
            .passwords
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, password)| Secret::new(password.clone()));
        config
    }

    /// The permission violations the server logged.
    fn violations(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|line| line.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }
}

fn uuid_password() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("pw-{nanos:x}-{:x}", std::process::id())
}

type Stop = tokio::sync::oneshot::Sender<()>;

#[tokio::test]
async fn each_service_works_with_its_own_user_and_no_user_writes_another_stream()
-> anyhow::Result<()> {
    let pki = Pki::new("nats")?;
    let server = Server::start(&pki).await?;
    let env = TestEnv::new().await?;
    let mut base = env.config.clone();
    base.sessions.materialize_poll_ms = 50;
    base.auth.services.insert(
        "messaging".to_owned(),
        vec!["circle.accountability.v1.AccountabilityService/WatchIntegrationEvents".to_owned()],
    );

    // The three services, each as its own user.
    let mut stops: Vec<(Stop, circle_service::Running)> = Vec::new();
    let started = |stop: tokio::sync::oneshot::Receiver<()>| async move {
        let _ = stop.await;
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let enrollment_running = circle_enrollment::start(
        &server.config_for(&base, &pki, "enrollment"),
        started(stopped),
    )
    .await
    .with_context(|| server.log_text())?;
    let enrollment_address = enrollment_running.local_addr;
    stops.push((stop, enrollment_running));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let sessions_running = circle_sessions::start(
        &server.config_for(&base, &pki, "sessions"),
        started(stopped),
    )
    .await
    .with_context(|| server.log_text())?;
    let sessions_address = sessions_running.local_addr;
    stops.push((stop, sessions_running));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let accountability_running = circle_accountability::start(
        &server.config_for(&base, &pki, "accountability"),
        started(stopped),
    )
    .await
    .with_context(|| server.log_text())?;
    let accountability_address = accountability_running.local_addr;
    stops.push((stop, accountability_running));

    // Enrollment writes a clinic and a group; sessions reads them (its roster, from
    // ENROLLMENT) and generates the group's sessions (its own stream and read model);
    // accountability's roster knows the group (ENROLLMENT again).
    let channel = |address| Channel::from_shared(format!("http://{address}"));
    let mut enrollment_client = enrollment::enrollment_service_client::EnrollmentServiceClient::new(
        channel(enrollment_address)?.connect().await?,
    );
    let clinic = enrollment_client
        .create_clinic(admin(enrollment::CreateClinicRequest {
            parent: "networks/acme".into(),
            clinic_id: "north".into(),
            clinic: Some(enrollment::Clinic {
                display_name: "North".into(),
                time_zone: "America/Chicago".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .clinic
        .map(|clinic| clinic.name)
        .unwrap_or_default();
    let group = enrollment_client
        .create_group(admin(enrollment::CreateGroupRequest {
            parent: clinic.clone(),
            group_id: "tuesday".into(),
            group: Some(enrollment::Group {
                display_name: "Tuesday group".into(),
                modality: "process".into(),
                level_of_care: "intensive-outpatient".into(),
                capacity: 12,
                schedule: Some(enrollment::Schedule {
                    days: vec![enrollment::Weekday::Tuesday as i32],
                    start_time: "18:30".into(),
                    duration_minutes: 90,
                    start_date: "2026-01-06".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .group
        .map(|group| group.name)
        .unwrap_or_default();
    let sessions_client = sessions::sessions_service_client::SessionsServiceClient::new(
        channel(sessions_address)?.connect().await?,
    );
    eventually(
        || {
            let mut client = sessions_client.clone();
            let group = group.clone();
            async move {
                Ok(client
                    .list_sessions(admin(sessions::ListSessionsRequest {
                        parent: group,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .sessions
                    .len())
            }
        },
        |generated| *generated > 0,
    )
    .await
    .with_context(|| server.violations().join("\n"))?;
    let accountability_client =
        accountability::accountability_service_client::AccountabilityServiceClient::new(
            channel(accountability_address)?.connect().await?,
        );
    eventually(
        || {
            let mut client = accountability_client.clone();
            let group = group.clone();
            async move {
                Ok(client
                    .get_group_board(admin(accountability::GetGroupBoardRequest {
                        group,
                        ..Default::default()
                    }))
                    .await
                    .is_ok())
            }
        },
        |known| *known,
    )
    .await
    .with_context(|| server.violations().join("\n"))?;
    // Accountability's integration events: a measure's is published to its
    // integration stream, and a calling service reads it back from there.
    let mut client = accountability_client.clone();
    client
        .submit_measurement(circle_testkit::request_as(
            accountability::SubmitMeasurementRequest {
                parent: "networks/acme/participants/sam".into(),
                instrument: "gad-7".into(),
                answers: (1..=7)
                    .map(|item| accountability::MeasurementAnswer {
                        item: item.to_string(),
                        option: 0,
                    })
                    .collect(),
                request_id: String::new(),
            },
            "acme",
            "participant",
            "sam",
            &[],
        ))
        .await?;
    let mut integration_events = client
        .watch_integration_events(circle_testkit::request_as(
            accountability::WatchIntegrationEventsRequest {
                network: "networks/acme".into(),
                heartbeat_seconds: 1,
                ..Default::default()
            },
            "acme",
            "service",
            "messaging",
            &[],
        ))
        .await?
        .into_inner();
    let published = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = integration_events.message().await? {
            if let Some(
                accountability::watch_integration_events_response::Event::IntegrationEvent(event),
            ) = message.event
            {
                return Ok::<_, anyhow::Error>(event);
            }
        }
        anyhow::bail!("the subscription ended")
    })
    .await
    .with_context(|| server.violations().join("\n"))??;
    assert_eq!(
        published.event_type,
        "circle.integration.v1.MeasurementCompleted"
    );
    drop(integration_events);
    for (stop, running) in stops {
        let _ = stop.send(());
        running.finished().await?;
    }
    assert_eq!(
        server.violations(),
        Vec::<String>::new(),
        "the services needed nothing their users are not allowed"
    );

    // The operator tool as the `circle` user: status, a rebuild (its replay of the
    // stream) and the decoded tail need nothing more either.
    {
        use circle_cli::ops::{self, Ops};
        let ops = Ops::connect(&server.config_for(&base, &pki, "circle")).await?;
        let status = ops::status::status(&ops, u64::MAX).await?;
        assert!(
            status.streams.iter().filter(|stream| stream.exists).count() == 7,
            "{status:?}"
        );
        ops::projections::rebuild(&ops, "sessions-read-model", |_| {}).await?;
        let mut tailed = 0;
        ops::events::tail(&ops, "enrollment", 5, false, |_| {
            tailed += 1;
            true
        })
        .await?;
        assert!(tailed > 0);
        assert_eq!(
            server.violations(),
            Vec::<String>::new(),
            "the circle tool needed nothing its user is not allowed"
        );
    }

    // As the enrollment user: its own stream takes a commit…
    let config = server.config_for(&base, &pki, "enrollment");
    let (events, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let events = Arc::new(events);
    let nats = circle_service::nats_options(&config, "enrollment")
        .await?
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = events.send(error.to_string());
                }
            }
        })
        .connect(config.nats.url.as_str())
        .await?;
    let store = EventStore::open(nats.clone(), circle_enrollment::stream_spec(&config)).await?;
    let key = AggregateKey::new("acme", "clinic", "probe")?;
    store
        .append(
            &key,
            0,
            &CommitMeta {
                request_id: "probe-1".into(),
                actor_role: "network-admin".into(),
                actor_id: "admin-1".into(),
                fingerprint: String::new(),
            },
            vec![NewEvent {
                event_type: "circle.test.Probe".into(),
                schema_version: 1,
                payload: Vec::new(),
            }],
        )
        .await?;
    assert_eq!(store.version(&key).await?, store.last_sequence().await?);

    // …but another service's subjects are not its to publish to.
    for subject in [
        "sessions.acme.session.probe",
        "accountability.acme.journal.probe",
    ] {
        nats.publish(subject, "forged".into()).await?;
        nats.flush().await?;
        let error = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .context("no permission error from the server")?
            .context("the event channel closed")?;
        assert!(
            error.contains("Permissions Violation") && error.contains(subject),
            "{error}"
        );
    }
    let violations = server.violations();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations
            .iter()
            .all(|line| line.contains("user:enrollment") && line.contains("Publish Violation")),
        "{violations:#?}"
    );
    Ok(())
}
