//! The gRPC edge as a client sees it: what each port lists in server reflection,
//! how a request that is not valid protobuf is refused, answers on one connection,
//! and consistency tokens that name no write.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use circle_proto::sessions::v1 as sessions;
use circle_testkit::TestEnv;
use tonic::Code;
use tonic_reflection::pb::v1 as reflection;
use tonic_types::StatusExt as _;

use crate::support::{System, admin, refusal};

const ENROLLMENT: &str = "circle.enrollment.v1.EnrollmentService";
const SESSIONS: &str = "circle.sessions.v1.SessionsService";
const ACCOUNTABILITY: &str = "circle.accountability.v1.AccountabilityService";

/// What a port serves besides its own service.
fn served_with(service: &str) -> BTreeSet<String> {
    [
        service,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

async fn reflect(
    client: &mut reflection::server_reflection_client::ServerReflectionClient<
        tonic::transport::Channel,
    >,
    message: reflection::server_reflection_request::MessageRequest,
) -> anyhow::Result<reflection::server_reflection_response::MessageResponse> {
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    answers
        .message()
        .await?
        .and_then(|answer| answer.message_response)
        .context("reflection gave no answer")
}

/// The services a port lists in server reflection (v1, over a real socket), each
/// checked to be described by the port too.
async fn listed_services(address: SocketAddr) -> anyhow::Result<BTreeSet<String>> {
    use reflection::server_reflection_request::MessageRequest;
    use reflection::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut client = reflection::server_reflection_client::ServerReflectionClient::new(channel);
    let listed = match reflect(&mut client, MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect::<BTreeSet<_>>(),
        other => anyhow::bail!("ListServices answered {other:?}"),
    };
    for service in &listed {
        let described = reflect(
            &mut client,
            MessageRequest::FileContainingSymbol(service.clone()),
        )
        .await?;
        anyhow::ensure!(
            matches!(described, MessageResponse::FileDescriptorResponse(ref files) if !files.file_descriptor_proto.is_empty()),
            "{service} is listed but not described: {described:?}"
        );
    }
    Ok(listed)
}

#[tokio::test]
async fn reflection_on_each_port_lists_what_the_port_serves_under_dev() -> anyhow::Result<()> {
    let system = System::start_at("2026-11-20T12:00:00Z").await?;
    assert_eq!(
        listed_services(system.addresses.enrollment).await?,
        served_with(ENROLLMENT)
    );
    assert_eq!(
        listed_services(system.addresses.sessions).await?,
        served_with(SESSIONS)
    );
    assert_eq!(
        listed_services(system.addresses.accountability).await?,
        served_with(ACCOUNTABILITY)
    );
    Ok(())
}

#[tokio::test]
async fn reflection_on_each_port_lists_what_the_port_serves_when_started_alone()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    };
    // Each service on its own, in the order their streams are needed.
    let enrollment = circle_enrollment::start(&env.config, shutdown()).await?;
    assert_eq!(
        listed_services(enrollment.local_addr).await?,
        served_with(ENROLLMENT)
    );
    let sessions = circle_sessions::start(&env.config, shutdown()).await?;
    assert_eq!(
        listed_services(sessions.local_addr).await?,
        served_with(SESSIONS)
    );
    let accountability = circle_accountability::start(&env.config, shutdown()).await?;
    assert_eq!(
        listed_services(accountability.local_addr).await?,
        served_with(ACCOUNTABILITY)
    );
    stop.send(true)?;
    enrollment.finished().await?;
    sessions.finished().await?;
    accountability.finished().await?;
    Ok(())
}

async fn send_raw(
    address: SocketAddr,
    path: &'static str,
    body: &'static [u8],
) -> anyhow::Result<Result<Bytes, tonic::Status>> {
    let token = circle_testkit::token(crate::support::NETWORK, "admin-1", &["network-admin"], &[]);
    crate::support::call_raw(
        address,
        path,
        Bytes::from_static(body),
        Some(&format!("Bearer {token}")),
    )
    .await
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument_with_a_reason()
-> anyhow::Result<()> {
    let system = System::start_at("2026-11-20T12:00:00Z").await?;
    // A method of each service whose field 1 is a string.
    let methods = [
        (
            system.addresses.enrollment,
            "/circle.enrollment.v1.EnrollmentService/CreateClinic",
            "circle.enrollment",
        ),
        (
            system.addresses.sessions,
            "/circle.sessions.v1.SessionsService/GetSession",
            "circle.sessions",
        ),
        (
            system.addresses.accountability,
            "/circle.accountability.v1.AccountabilityService/GetGroupBoard",
            "circle.accountability",
        ),
    ];
    let malformed: [(&str, &'static [u8]); 3] = [
        // Field 1, length 2: not UTF-8.
        ("invalid UTF-8 in a string", &[0x0A, 0x02, 0xC3, 0x28]),
        // Field 1 says 5 bytes follow; 1 does.
        ("a truncated field", &[0x0A, 0x05, b'a']),
        // Field 1 (a string) sent as a varint.
        ("a wrong wire type", &[0x08, 0x01]),
    ];
    for (address, path, domain) in methods {
        for (case, body) in malformed {
            let status = match send_raw(address, path, body).await? {
                Ok(answer) => panic!("{path}, {case}: answered {answer:?}"),
                Err(status) => status,
            };
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path}, {case}: {status:?}"
            );
            let info = status
                .get_details_error_info()
                .with_context(|| format!("{path}, {case}: no ErrorInfo in {status:?}"))?;
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                ("MALFORMED_REQUEST", domain),
                "{path}, {case}"
            );
        }
        // The same method with valid protobuf gets past decoding (whatever it then says).
        if let Err(status) = send_raw(address, path, &[0x0A, 0x01, b'x']).await? {
            let reason = status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default();
            assert_ne!(reason, "MALFORMED_REQUEST", "{path}: {status:?}");
            assert_ne!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn answers_of_some_hundred_bytes_on_one_connection_are_not_held_back() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    // A week back and four ahead: 17 Nov to 15 Dec.
    let last = system.session_on(&group, "2026-12-15")?;
    system.wait_for_session(&last, |_| true).await?;
    let list = || {
        admin(sessions::ListSessionsRequest {
            parent: group.clone(),
            ..Default::default()
        })
    };
    let answer = system.sessions.list_sessions(list()).await?.into_inner();
    assert_eq!(answer.sessions.len(), 5);
    let size = prost::Message::encoded_len(&answer);
    assert!(
        size > 400,
        "the answer is {size} bytes: too small to show the delay"
    );

    // Every call on the same channel, which is one HTTP/2 connection.
    let mut durations = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        system.sessions.list_sessions(list()).await?;
        durations.push(started.elapsed());
    }
    durations.sort();
    // With Nagle's algorithm on the accepted socket, the end of every such answer
    // waits for the client's delayed ACK: at least 40 ms on Linux, on every call, so
    // even the fastest of 20 calls takes 40 ms or more. Without it a call takes 1–2 ms;
    // the bound is the fastest call (not the median or the slowest), so a loaded
    // machine that slows some calls down does not fail the test.
    assert!(
        durations[0] < Duration::from_millis(25),
        "the fastest of 20 calls took {:?} (all: {durations:?})",
        durations[0]
    );
    Ok(())
}

#[tokio::test]
async fn a_consistency_token_beyond_the_log_is_invalid_argument() -> anyhow::Result<()> {
    let mut system = System::start_at("2026-11-20T12:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let session = system.session_on(&group, "2026-11-24")?;
    system.wait_for_session(&session, |_| true).await?;
    let get = |token: String| {
        admin(sessions::GetSessionRequest {
            name: session.clone(),
            consistency_token: token,
        })
    };

    let started = Instant::now();
    let refused = system.sessions.get_session(get(u64::MAX.to_string())).await;
    assert_eq!(
        refusal(refused),
        (
            Code::InvalidArgument,
            "INVALID_ARGUMENT".to_owned(),
            vec!["consistency_token".to_owned()]
        )
    );
    let beyond = system.sessions_stream_last_sequence().await? + 1_000_000;
    let refused = system.sessions.get_session(get(beyond.to_string())).await;
    assert_eq!(refusal(refused).0, Code::InvalidArgument);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once, without waiting for the read model ({:?})",
        started.elapsed()
    );

    // A token of a write that happened is served.
    let last = system.sessions_stream_last_sequence().await?;
    let served = system.sessions.get_session(get(last.to_string())).await?;
    assert_eq!(
        served.into_inner().session.map(|session| session.name),
        Some(session.clone())
    );
    Ok(())
}
