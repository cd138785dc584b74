//! The binaries started the way the README says — a service binary with
//! `CIRCLE_CONFIG=FILE`, `circle dev --config FILE` — with unrelated `CIRCLE_`
//! variables in the environment (as `CIRCLE_TEST_…` are while tests run).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use circle_testkit::TestEnv;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a binary gets to build (when the workspace build has not built it yet)
/// and to start.
const BUILD_LIMIT: Duration = Duration::from_secs(900);
const START_LIMIT: Duration = Duration::from_secs(60);

/// The path of a binary of this workspace, built now if needed (a test binary can
/// name only its own crate's binaries with `CARGO_BIN_EXE_…`).
pub(crate) async fn binary(name: &'static str) -> anyhow::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let build = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--message-format=json", "--bin", name])
            .arg("--manifest-path")
            .arg(manifest)
            .stderr(Stdio::inherit())
            .output()
    });
    let output = tokio::time::timeout(BUILD_LIMIT, build)
        .await
        .with_context(|| format!("building {name} took over {BUILD_LIMIT:?}"))???;
    anyhow::ensure!(output.status.success(), "building {name} failed");
    let messages = String::from_utf8(output.stdout)?;
    messages
        .lines()
        .filter_map(|line| line.split_once("\"executable\":\""))
        .filter_map(|(_, rest)| rest.split('"').next())
        .find(|path| Path::new(path).file_name().is_some_and(|file| file == name))
        .map(PathBuf::from)
        .with_context(|| format!("cargo built no executable {name}"))
}

/// A started binary, killed when dropped (also when the test fails). Its stdout and
/// stderr go to files.
struct Process {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

impl Process {
    fn start(
        env: &TestEnv,
        program: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let stem = std::env::temp_dir().join(format!(
            "{}-{}-{}",
            env.namespace,
            program
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("binary"),
            uuid_suffix()
        ));
        let stdout = stem.with_extension("out");
        let stderr = stem.with_extension("err");
        let mut command = Command::new(program);
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .env("NO_COLOR", "1")
            // Unrelated CIRCLE_ variables (the test runner's own are inherited too).
            .env("CIRCLE_TEST_UNRELATED", "1")
            .env("CIRCLE_APT_UPDATED", "1");
        configure(&mut command);
        Ok(Self {
            child: command.spawn()?,
            stdout,
            stderr,
        })
    }

    fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        strip_ansi(&format!("{}{}", read(&self.stdout), read(&self.stderr)))
    }

    /// Waits until the output has a line containing `marker`, and returns that line;
    /// fails at once if the process ends first.
    async fn line_with(&mut self, marker: &str) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            let output = self.output();
            if let Some(line) = output.lines().find(|line| line.contains(marker)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("exited ({status}) before {marker:?}:\n{output}");
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("no {marker:?} within {START_LIMIT:?}:\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to end; its exit code and output.
    async fn exited(&mut self) -> anyhow::Result<(Option<i32>, String)> {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status.code(), self.output()));
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("still running after {START_LIMIT:?}:\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn uuid_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The test's configuration as a TOML file, every service on port 0.
pub(crate) fn config_file(env: &TestEnv) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("{}-{}.toml", env.namespace, uuid_suffix()));
    let config = &env.config;
    std::fs::write(
        &path,
        format!(
            "[nats]\nurl = {:?}\nnamespace = {:?}\n\n[database]\nurl = {:?}\nowner_url = {:?}\n\n\
             [enrollment]\nlisten = \"127.0.0.1:0\"\n\n[sessions]\nlisten = \"127.0.0.1:0\"\n\n\
             [accountability]\nlisten = \"127.0.0.1:0\"\n",
            config.nats.url, config.nats.namespace, config.database.url, config.database.owner_url
        ),
    )?;
    Ok(path)
}

/// Where a service binary listens, from its "listening" log line.
fn listening_address(line: &str) -> anyhow::Result<SocketAddr> {
    let address = line
        .split_once("local_addr=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .with_context(|| format!("no local_addr in {line:?}"))?;
    Ok(address.parse()?)
}

/// Waits until `address` reports `service` SERVING.
pub(crate) async fn serving(address: SocketAddr, service: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|answer| answer.into_inner().status());
        if matches!(status, Ok(ServingStatus::Serving)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{service} at {address}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_service_binary_starts_with_circle_config_and_unrelated_circle_variables()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let mut running = Vec::new();
    // In the order their streams are needed: sessions and accountability wait for the
    // streams the services before them create.
    for (name, service) in [
        (
            "circle-enrollment",
            "circle.enrollment.v1.EnrollmentService",
        ),
        ("circle-sessions", "circle.sessions.v1.SessionsService"),
        (
            "circle-accountability",
            "circle.accountability.v1.AccountabilityService",
        ),
    ] {
        let program = binary(name).await?;
        let mut process = Process::start(&env, &program, |command| {
            command
                .env("CIRCLE_CONFIG", &file)
                .env("CIRCLE_AUTH__ISSUER", &env.config.auth.issuer)
                .env("CIRCLE_AUTH__JWKS_FILE", &env.config.auth.jwks_file)
                .env("CIRCLE_VAULT__MASTER_KEYS", circle_testkit::MASTER_KEYS);
        })?;
        let line = process
            .line_with("listening")
            .await
            .with_context(|| name.to_owned())?;
        serving(listening_address(&line)?, service).await?;
        running.push(process);
    }
    drop(running);
    std::fs::remove_file(&file)?;
    Ok(())
}

#[tokio::test]
async fn circle_dev_starts_with_its_config_file_and_unrelated_circle_variables()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let program = binary("circle").await?;
    // `circle dev` makes its development key here, and `circle token` signs with it.
    let dev_dir = std::env::temp_dir().join(format!("{}-dev-{}", env.namespace, uuid_suffix()));
    let mut process = Process::start(&env, &program, |command| {
        command
            .arg("dev")
            .arg("--config")
            .arg(&file)
            .env("CIRCLE_DEV_DIR", &dev_dir);
    })?;
    let line = process.line_with("enrollment  grpc://").await?;
    let address: SocketAddr = line
        .split_once("grpc://")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .context("no address")?
        .parse()?;
    serving(address, "circle.enrollment.v1.EnrollmentService").await?;

    // The second of the README's two steps: a token from `circle token`, then a call.
    let minted = Command::new(&program)
        .args(["token", "network-admin", "--config"])
        .arg(&file)
        .env("CIRCLE_DEV_DIR", &dev_dir)
        .output()?;
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout)?.trim().to_owned();
    let mut client =
        circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient::connect(
            format!("http://{address}"),
        )
        .await?;
    let mut request = tonic::Request::new(circle_proto::enrollment::v1::ListClinicsRequest {
        parent: "networks/demo".into(),
        ..Default::default()
    });
    circle_testkit::authorize(&mut request, &token);
    let clinics = client.list_clinics(request).await?.into_inner().clinics;
    assert_eq!(clinics.len(), 2, "the demo's clinics: {clinics:?}");
    // Without a token, nothing.
    let refused = client
        .list_clinics(circle_proto::enrollment::v1::ListClinicsRequest {
            parent: "networks/demo".into(),
            ..Default::default()
        })
        .await
        .expect_err("a call without a token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    drop(process);
    std::fs::remove_file(&file)?;
    std::fs::remove_dir_all(&dev_dir)?;
    Ok(())
}

#[tokio::test]
async fn a_service_binary_without_token_keys_refuses_to_start_naming_the_keys() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let program = binary("circle-enrollment").await?;
    let mut process = Process::start(&env, &program, |command| {
        command.env("CIRCLE_CONFIG", &file);
    })?;
    let (code, output) = process.exited().await?;
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("auth.jwks_file"), "{output}");
    std::fs::remove_file(&file)?;
    Ok(())
}

#[tokio::test]
async fn a_service_binary_without_master_keys_refuses_to_start_naming_them() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let program = binary("circle-enrollment").await?;
    for master_keys in [None, Some("k1:not-a-key")] {
        let mut process = Process::start(&env, &program, |command| {
            command
                .env("CIRCLE_CONFIG", &file)
                .env("CIRCLE_AUTH__ISSUER", &env.config.auth.issuer)
                .env("CIRCLE_AUTH__JWKS_FILE", &env.config.auth.jwks_file);
            // Nothing the runner's environment may hold.
            command
                .env_remove("CIRCLE_VAULT__MASTER_KEYS")
                .env_remove("CIRCLE_VAULT__MASTER_KEYS_FILE");
            if let Some(keys) = master_keys {
                command.env("CIRCLE_VAULT__MASTER_KEYS", keys);
            }
        })?;
        let (code, output) = process.exited().await?;
        assert_ne!(code, Some(0), "{output}");
        assert!(output.contains("vault"), "{output}");
        assert!(
            !output.contains("not-a-key"),
            "a master key is never printed: {output}"
        );
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

#[tokio::test]
async fn circle_rewrap_moves_data_keys_to_the_newest_master_key() -> anyhow::Result<()> {
    use circle_vault::store::KeyStore;
    use circle_vault::{Context, MasterKeys};
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let old = MasterKeys::parse(circle_testkit::MASTER_KEYS)?;
    let store = KeyStore::open(env.database().await?, old).await?;
    let context = Context {
        network: "acme",
        participant: "sam",
        field: circle_vault::field::GIVEN_NAME,
    };
    let sealed = store
        .sealing_key("acme", "sam")
        .await?
        .seal(context, "Sam")?;
    store.sealing_key("acme", "pat").await?;

    let newest = MasterKeys::generate_entry("k2")?;
    let program = binary("circle").await?;
    let rewrapped = Command::new(&program)
        .args(["rewrap", "--network", "acme", "--config"])
        .arg(&file)
        .env(
            "CIRCLE_VAULT__MASTER_KEYS",
            format!("{newest},{}", circle_testkit::MASTER_KEYS),
        )
        .output()?;
    let printed = String::from_utf8_lossy(&rewrapped.stdout).into_owned();
    assert!(rewrapped.status.success(), "{rewrapped:?}");
    assert!(
        printed.contains("acme: 2 data keys re-wrapped with master key k2"),
        "{printed}"
    );
    // The old master key retired: the re-wrapped keys still open what they sealed.
    let retired = KeyStore::open(env.database().await?, MasterKeys::parse(&newest)?).await?;
    let key = retired
        .opening_key("acme", "sam")
        .await?
        .context("sam's key")?;
    assert_eq!(key.open(context, &sealed)?, "Sam");
    std::fs::remove_file(&file)?;
    Ok(())
}

#[tokio::test]
async fn a_service_binary_refuses_an_unknown_key_of_a_known_section_naming_it() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let program = binary("circle-enrollment").await?;
    for (variable, named) in [
        ("CIRCLE_NATS__REPLICA", "replica"),
        ("CIRCLE_DATABASE_URL", "CIRCLE_DATABASE__URL"),
    ] {
        let mut process = Process::start(&env, &program, |command| {
            command.env("CIRCLE_CONFIG", &file).env(variable, "3");
        })?;
        let (code, output) = process.exited().await?;
        assert_eq!(code, Some(2), "{variable}: {output}");
        assert!(output.contains(named), "{variable}: {output}");
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

/// The operator's commands as a script runs them: JSON on stdout, and the exit codes
/// the README documents (0 ok, 2 usage, 3 unhealthy or not found).
// Multi-threaded: the services run in this process and must answer `circle status`
// while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_operator_commands_answer_json_and_exit_codes_scripts_can_trust()
-> anyhow::Result<()> {
    let mut system = crate::support::System::start_at("2026-03-02T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    system
        .participant(&clinic, "sam", "Samantha", "Quillfeather")
        .await?;
    let file = config_file(&system.env)?;
    let program = binary("circle").await?;
    let run = |arguments: &[&str]| -> anyhow::Result<(Option<i32>, String, String)> {
        let mut command = Command::new(&program);
        command.args(arguments).arg("--config").arg(&file);
        // The services run on this runtime: let its other tasks move off this worker
        // while the binary runs.
        let output = tokio::task::block_in_place(|| command.output())?;
        Ok((
            output.status.code(),
            String::from_utf8(output.stdout)?,
            String::from_utf8(output.stderr)?,
        ))
    };
    // Healthy once every projection has caught up (exit 3 until then).
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    let status = loop {
        let (code, stdout, stderr) = run(&[
            "status",
            "--json",
            "--max-lag",
            "0",
            "--enrollment",
            &format!("http://{}", system.addresses.enrollment),
            "--sessions",
            &format!("http://{}", system.addresses.sessions),
            "--accountability",
            &format!("http://{}", system.addresses.accountability),
        ])?;
        if code == Some(0) {
            break serde_json::from_str::<serde_json::Value>(&stdout)?;
        }
        assert_eq!(code, Some(3), "{stdout}{stderr}");
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never healthy: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["healthy"], true);
    // Every projection of the three services, the integration publisher included.
    assert_eq!(status["projections"].as_array().map(Vec::len), Some(13));
    let services: Vec<(&str, &str)> = status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|service| Some((service["service"].as_str()?, service["health"].as_str()?)))
        .collect();
    assert_eq!(
        services,
        vec![
            ("enrollment", "serving"),
            ("sessions", "serving"),
            ("accountability", "serving")
        ]
    );
    // A service that does not answer makes the status unhealthy.
    let (code, stdout, _) = run(&["status", "--json", "--enrollment", "http://127.0.0.1:9"])?;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("\"unreachable\""), "{stdout}");

    let (code, stdout, stderr) =
        run(&["projections", "rebuild", "enrollment-read-model", "--json"])?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let rebuilt: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(rebuilt["projection"], "enrollment-read-model");
    assert!(rebuilt["applied_through"].as_u64() >= Some(2), "{rebuilt}");

    let (code, _, stderr) = run(&["projections", "rebuild", "enrollment-transfers"])?;
    assert_eq!(code, Some(2), "a process manager: {stderr}");
    let (code, _, stderr) = run(&["projections", "reset", "enrollment-read-model"])?;
    assert_eq!(code, Some(2), "reset needs --yes: {stderr}");
    let (code, _, stderr) = run(&["dead-letters", "show", "enrollment-read-model", "999"])?;
    assert_eq!(code, Some(3), "no such dead letter: {stderr}");
    let (code, _, stderr) = run(&["projections", "frobnicate"])?;
    assert_eq!(code, Some(2), "{stderr}");

    let (code, stdout, stderr) = run(&["events", "show", "enrollment", "acme/participant/sam"])?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("ParticipantRegistered") && stdout.contains("[sealed]"),
        "{stdout}"
    );
    assert!(!stdout.contains("Samantha"), "{stdout}");
    let (code, stdout, _) = run(&["projections", "list"])?;
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("PROJECTION"), "{stdout}");
    std::fs::remove_file(&file)?;
    Ok(())
}

/// What Kubernetes does to stop a pod: SIGTERM. The service stops cleanly (exit 0),
/// saying it stopped serving before it refused calls, and its spans and metrics are
/// flushed on the way out: with an export interval far longer than the test, the
/// receiver has them only because the exit exported them.
#[tokio::test]
async fn a_service_binary_stops_on_sigterm_and_flushes_its_spans_and_metrics() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let receiver = circle_testkit::otlp::OtlpReceiver::start().await?;
    let program = binary("circle-enrollment").await?;
    let mut process = Process::start(&env, &program, |command| {
        command
            .env("CIRCLE_CONFIG", &file)
            .env("CIRCLE_AUTH__ISSUER", &env.config.auth.issuer)
            .env("CIRCLE_AUTH__JWKS_FILE", &env.config.auth.jwks_file)
            .env("CIRCLE_VAULT__MASTER_KEYS", circle_testkit::MASTER_KEYS)
            .env("CIRCLE_TELEMETRY__OTLP_ENDPOINT", receiver.endpoint())
            .env("CIRCLE_TELEMETRY__EXPORT_INTERVAL_MS", "600000")
            .env("CIRCLE_GRPC__DRAIN_DELAY_MS", "3000");
    })?;
    let line = process.line_with("listening").await?;
    let address = listening_address(&line)?;
    serving(address, "circle.enrollment.v1.EnrollmentService").await?;
    // One call (about a clinic that does not exist: NOT_FOUND is answered and traced
    // like any other answer).
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let answer =
        circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient::new(
            channel,
        )
        .get_clinic(crate::support::admin(
            circle_proto::enrollment::v1::GetClinicRequest {
                name: format!("networks/{}/clinics/nowhere", crate::support::NETWORK),
                consistency_token: String::new(),
            },
        ))
        .await;
    assert_eq!(
        answer.err().map(|status| status.code()),
        Some(tonic::Code::NotFound)
    );
    assert!(
        receiver.spans().is_empty() && receiver.metric_names().is_empty(),
        "exported before the exit; the test shows nothing"
    );

    let mut health = HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{address}"))?
            .connect()
            .await?,
    );
    let terminated = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()?;
    anyhow::ensure!(terminated.success(), "kill -TERM failed");
    // Not serving first, while the process still runs (the drain delay).
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: "circle.enrollment.v1.EnrollmentService".into(),
            })
            .await
            .map(|answer| answer.into_inner().status());
        if matches!(status, Ok(ServingStatus::NotServing)) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline && process.child.try_wait()?.is_none(),
            "never reported NOT_SERVING before stopping: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, output) = process.exited().await?;
    assert_eq!(code, Some(0), "did not stop cleanly:\n{output}");
    let not_serving = output
        .find("shutting down: not serving")
        .with_context(|| format!("no not-serving line:\n{output}"))?;
    let refusing = output
        .find("refusing new calls")
        .with_context(|| format!("no refusing line:\n{output}"))?;
    assert!(
        not_serving < refusing,
        "refused calls before reporting not serving"
    );

    // Exported at the exit: the call's server span and its duration.
    let spans = receiver.spans();
    assert!(
        spans.iter().any(
            |span| span.name == "circle.enrollment.v1.EnrollmentService/GetClinic"
                && span.service == "circle-enrollment"
        ),
        "the call's span was not flushed: {:?} {:?}\n{output}",
        spans.iter().map(|span| &span.name).collect::<Vec<_>>(),
        receiver.metric_names()
    );
    assert!(
        !receiver
            .metric_points("rpc.server.call.duration")
            .is_empty(),
        "no RPC duration was flushed: {:?}",
        receiver.metric_names()
    );
    std::fs::remove_file(&file)?;
    Ok(())
}

/// Each binary validates only its own section besides the shared ones (a value meant
/// for another service never stops it), and takes secrets from files named by
/// `CIRCLE_<SECTION>__<KEY>_FILE` (as Kubernetes mounts them).
#[tokio::test]
async fn a_service_binary_validates_its_own_section_and_reads_secrets_from_files()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let secrets = std::env::temp_dir().join(format!("{}-{}", env.namespace, uuid_suffix()));
    std::fs::create_dir_all(&secrets)?;
    let master_keys = secrets.join("master-keys");
    std::fs::write(&master_keys, format!("{}\n", circle_testkit::MASTER_KEYS))?;
    let owner_url = secrets.join("owner-url");
    std::fs::write(&owner_url, format!("{}\n", env.config.database.owner_url))?;
    let configure = |command: &mut Command| {
        command
            .env("CIRCLE_CONFIG", &file)
            .env("CIRCLE_AUTH__ISSUER", &env.config.auth.issuer)
            .env("CIRCLE_AUTH__JWKS_FILE", &env.config.auth.jwks_file)
            .env("CIRCLE_VAULT__MASTER_KEYS_FILE", &master_keys)
            .env("CIRCLE_DATABASE__OWNER_URL_FILE", &owner_url)
            // Invalid for sessions, which enrollment does not read.
            .env("CIRCLE_SESSIONS__HORIZON_DAYS", "0");
    };
    // The owner URL comes only from its file: the config file's is unusable, so
    // starting proves the file was read.
    let text = std::fs::read_to_string(&file)?.replace(
        &format!("owner_url = {:?}", env.config.database.owner_url),
        "owner_url = \"postgres://nobody@127.0.0.1:1/nowhere\"",
    );
    anyhow::ensure!(text.contains("nowhere"), "the config file has no owner_url");
    std::fs::write(&file, text)?;
    let program = binary("circle-enrollment").await?;
    let mut enrollment = Process::start(&env, &program, |command| {
        configure(command);
    })?;
    let line = enrollment.line_with("listening").await?;
    serving(
        listening_address(&line)?,
        "circle.enrollment.v1.EnrollmentService",
    )
    .await?;
    drop(enrollment);

    let program = binary("circle-sessions").await?;
    let mut sessions = Process::start(&env, &program, |command| {
        configure(command);
    })?;
    let (code, output) = sessions.exited().await?;
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("sessions.horizon_days"), "{output}");

    // An unreadable secret file stops the start, naming the variable, not a value.
    let program = binary("circle-enrollment").await?;
    let mut unreadable = Process::start(&env, &program, |command| {
        configure(command);
        command.env("CIRCLE_NATS__PASSWORD_FILE", secrets.join("missing"));
    })?;
    let (code, output) = unreadable.exited().await?;
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("CIRCLE_NATS__PASSWORD_FILE"), "{output}");
    std::fs::remove_dir_all(&secrets)?;
    std::fs::remove_file(&file)?;
    Ok(())
}

/// Runs `command` (started in a process group of its own) to its end; past `limit` its
/// whole process group is killed (with every process it started) and the test fails.
async fn output_within(
    mut command: tokio::process::Command,
    limit: Duration,
    what: &str,
) -> anyhow::Result<std::process::Output> {
    use tokio::io::AsyncReadExt as _;
    let mut child = command.spawn()?;
    let group = child.id().context("the child's pid")?;
    let mut stdout = child.stdout.take().context("stdout is piped")?;
    let mut stderr = child.stderr.take().context("stderr is piped")?;
    let stdout = tokio::spawn(async move {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).await.map(|_| bytes)
    });
    let stderr = tokio::spawn(async move {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).await.map(|_| bytes)
    });
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Ok(std::process::Output {
            status: status?,
            stdout: stdout.await??,
            stderr: stderr.await??,
        }),
        Err(_) => {
            // SIGTERM first: it stops what it started (a PostgreSQL in a group of its
            // own too); SIGKILL to the group if it has not gone in 30 s.
            let signal = |name: &str| {
                let _ = Command::new("kill")
                    .args([name, "--", &format!("-{group}")])
                    .status();
            };
            signal("-TERM");
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                signal("-KILL");
            }
            anyhow::bail!("{what} took over {limit:?} (stopped with what it started)")
        }
    }
}

/// `circle bench` at a tiny size, as CI can afford: every figure the report promises
/// is there and was measured (nothing refused on the write workloads), and the scratch
/// namespace's streams and the scratch database are gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_bench_measures_every_figure_and_leaves_nothing_behind() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let file = config_file(&env)?;
    let program = binary("circle").await?;
    let scratch = std::env::temp_dir().join(format!("{}-bench-{}", env.namespace, uuid_suffix()));
    let dev_dir = scratch.join("dev");
    let out = scratch.join("out");
    let mut command = tokio::process::Command::new(&program);
    command
        // Its own process group, with the services it starts: an overrun kills them all.
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .args([
            "bench",
            "--json",
            "--groups",
            "2",
            "--participants",
            "12",
            "--capacity",
            "8",
            "--concurrency",
            "1,2",
            "--seconds",
            "1",
            "--raw-rows",
            "1000",
            "--label",
            "smoke",
            "--config",
        ])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .env("CIRCLE_DEV_DIR", &dev_dir);
    let output = output_within(command, Duration::from_secs(600), "the bench").await?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    let number = |value: &serde_json::Value| value.as_f64().unwrap_or(-1.0);
    assert_eq!(report["label"], "smoke");
    assert_eq!(report["members"], 12, "{report:#}");
    let raw = report["raw_append"].as_array().context("raw_append")?;
    assert_eq!(raw.len(), 2, "{report:#}");
    for step in raw {
        assert!(number(&step["per_second"]) > 0.0, "{step}");
        assert!(number(&step["p50_ms"]) > 0.0, "{step}");
    }
    assert!(number(&report["raw_insert_rows_per_second"]) > 0.0);
    let steps = report["steps"].as_array().context("steps")?;
    assert_eq!(
        steps.len(),
        6,
        "three workloads at two concurrencies: {report:#}"
    );
    for step in steps {
        assert!(number(&step["count"]) > 0.0, "{step}");
        assert!(number(&step["ratio_to_raw_append"]) > 0.0, "{step}");
        assert!(number(&step["p50_ms"]) > 0.0, "{step}");
        if step["workload"] != "mix" {
            assert_eq!(step["failed"], 0, "{step}");
        }
    }
    assert!(
        steps.iter().any(|step| number(&step["lag"]["count"]) > 0.0),
        "no lag measured: {report:#}"
    );
    let rebuilds = report["rebuilds"].as_array().context("rebuilds")?;
    assert_eq!(rebuilds.len(), 2);
    for rebuild in rebuilds {
        assert!(number(&rebuild["events"]) > 0.0, "{rebuild}");
        assert!(number(&rebuild["events_per_second"]) > 0.0, "{rebuild}");
    }
    let memory = report["peak_memory_mib"].as_array().context("memory")?;
    assert_eq!(memory.len(), 3);
    for service in memory {
        assert!(number(&service[1]) > 0.0, "{service}");
    }
    let table = std::fs::read_to_string(out.join("bench.md"))?;
    assert!(table.contains("| mix | 2 |"), "{table}");
    assert!(out.join("bench.json").exists());
    // Nothing left behind: the scratch streams and database.
    let suffix = format!("_BENCH{}", env.namespace.to_ascii_uppercase());
    assert!(
        stderr.contains("removing the scratch streams and database")
            && !stderr.contains("was not all removed"),
        "{stderr}"
    );
    let mut names = Vec::new();
    {
        use tokio_stream::StreamExt as _;
        let jetstream = env.jetstream();
        let mut listed = jetstream.stream_names();
        while let Some(name) = listed.next().await {
            names.push(name?);
        }
    }
    assert!(
        !names.iter().any(|name| name.ends_with(&suffix)),
        "scratch streams left: {names:?}"
    );
    let database = env
        .config
        .database
        .url
        .rsplit('/')
        .next()
        .and_then(|name| name.split('?').next())
        .context("database name")?
        .to_owned();
    let left: Option<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
            .bind(format!("{database}_bench{}", env.namespace))
            .fetch_optional(&env.pool)
            .await?;
    assert_eq!(left, None, "the scratch database is left");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `circle faults` at a size CI can afford, on both NATS topologies (one server; a
/// three-node cluster with R3 streams): every kind of fault was injected under load,
/// commands were acknowledged through it, and the independent checker found nothing
/// lost or doubled, every append in line with its aggregate's version, the capacity
/// held after every group commit, and every read model equal to its rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_faults_kills_every_process_under_load_and_loses_nothing() -> anyhow::Result<()> {
    let program = binary("circle").await?;
    let scratch = std::env::temp_dir().join(format!("circle-faults-test-{}", uuid_suffix()));
    let out = scratch.join("out");
    let mut command = tokio::process::Command::new(&program);
    command
        // Its own process group, with the services and NATS servers it starts (and
        // PostgreSQL in one of its own, which it stops on SIGTERM): an overrun stops
        // them all.
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .args([
            "faults",
            "--json",
            "--topology",
            "single,cluster",
            "--seconds",
            "15",
            "--interval",
            "0.5,1.5",
            "--groups",
            "3",
            "--participants",
            "9",
            "--capacity",
            "4",
            "--concurrency",
            "6",
            "--seed",
            "20261201",
        ])
        .arg("--out")
        .arg(&out)
        .env("CIRCLE_DEV_DIR", scratch.join("dev"));
    // The current server deploy/test.sh installs (a cluster syncing every write needs
    // 2.10 or newer); else the command's own lookup.
    if let Some(server) = std::env::var_os("CIRCLE_TEST_NATS_SERVER") {
        command.arg("--nats-server").arg(server);
    }
    let output = output_within(command, Duration::from_secs(900), "the faults run").await?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
    assert_eq!(report["passed"], true, "{report:#}");
    let runs = report["runs"].as_array().context("runs")?;
    assert_eq!(runs.len(), 2, "{report:#}");
    for run in runs {
        let faults = &run["faults"];
        let mut kinds = vec![
            "nats_node",
            "postgres",
            "enrollment",
            "sessions",
            "accountability",
        ];
        if run["topology"] == "cluster" {
            assert_eq!(run["nats_nodes"], 3, "{run:#}");
            kinds.push("nats_two_nodes");
        }
        for kind in kinds {
            assert!(number(&faults[kind]) >= 1, "no {kind} fault: {run:#}");
        }
        assert!(number(&run["commands"]["acknowledged"]) > 0, "{run:#}");
        let logs = run["logs"].as_object().context("logs")?;
        assert_eq!(logs.len(), 3, "{run:#}");
        for (service, log) in logs {
            assert_eq!(number(&log["lost"]), 0, "{service}: {log:#}");
            assert_eq!(number(&log["doubled"]), 0, "{service}: {log:#}");
            assert_eq!(number(&log["request_ids_twice"]), 0, "{service}: {log:#}");
            assert!(number(&log["acknowledged"]) > 0, "{service}: {log:#}");
            // Every commit's append was checked against its aggregate's version.
            assert_eq!(
                log["versions_checked"], log["commits"],
                "{service}: {log:#}"
            );
            assert_eq!(
                number(&log["versions_out_of_line"]),
                0,
                "{service}: {log:#}"
            );
        }
        let capacity = &run["capacity"];
        assert_eq!(number(&capacity["violations"]), 0, "{capacity:#}");
        assert!(number(&capacity["admissions"]) > 0, "{capacity:#}");
        let read_models = run["read_models"].as_array().context("read_models")?;
        assert_eq!(read_models.len(), 8, "{run:#}");
        for model in read_models {
            assert_eq!(model["equal"], true, "{model:#}");
            assert_eq!(number(&model["dead_letters"]), 0, "{model:#}");
        }
    }
    let table = std::fs::read_to_string(out.join("faults.md"))?;
    assert!(table.contains("| cluster (3 nodes, R3) |"), "{table}");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
