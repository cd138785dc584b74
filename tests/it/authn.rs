//! Authentication on every RPC, over real sockets: which tokens each service refuses
//! (all `UNAUTHENTICATED`, each with its reason), that garbage never brings a service
//! down, what a calling service may call, that health stays open and reflection can
//! be switched off, and that keys come from a JWKS file that is re-read when it
//! changes or from a JWKS URL.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use circle_auth::sign::{SigningKey, TokenClaims};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::System;

/// One RPC of each service (an empty message is valid protobuf: a caller who gets
/// past authentication is answered by the service itself).
fn methods(system: &System) -> [(SocketAddr, &'static str); 3] {
    [
        (
            system.addresses.enrollment,
            "/circle.enrollment.v1.EnrollmentService/ListClinics",
        ),
        (
            system.addresses.sessions,
            "/circle.sessions.v1.SessionsService/ListSessions",
        ),
        (
            system.addresses.accountability,
            "/circle.accountability.v1.AccountabilityService/GetGroupBoard",
        ),
    ]
}

/// Calls `path` with an empty message and `authorization` (if any) as metadata.
async fn call(
    address: SocketAddr,
    path: &'static str,
    authorization: Option<&str>,
) -> anyhow::Result<Result<Bytes, tonic::Status>> {
    crate::support::call_raw(address, path, Bytes::new(), authorization).await
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// The code and reason `path` answers with `authorization`.
async fn answer(
    address: SocketAddr,
    path: &'static str,
    authorization: Option<&str>,
) -> anyhow::Result<(Code, String)> {
    Ok(match call(address, path, authorization).await? {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), reason(&status)),
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> TokenClaims {
    let now = now();
    TokenClaims {
        issuer: circle_testkit::ISSUER.to_owned(),
        audience: circle_testkit::AUDIENCES
            .iter()
            .map(|audience| (*audience).to_owned())
            .collect(),
        subject: "admin-1".to_owned(),
        network: "acme".to_owned(),
        roles: vec!["network-admin".to_owned()],
        clinics: Vec::new(),
        issued_at: now,
        not_before: Some(now),
        expires_at: now + 600,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with `header` over the good claims and `signature`.
fn forged(header: &str, signature: &[u8]) -> String {
    let good = circle_testkit::signing_key().sign(&claims());
    let payload = good.split('.').nth(1).unwrap_or_default().to_owned();
    format!(
        "{}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn every_service_refuses_every_kind_of_bad_token_as_unauthenticated() -> anyhow::Result<()> {
    let system = System::start_at("2026-11-20T12:00:00Z").await?;
    let key = circle_testkit::signing_key();
    let kid = key.kid().to_owned();
    let impostor = SigningKey::generate_ed25519(&kid)?;
    let stranger = SigningKey::generate_ed25519("nobody-knows-me")?;
    let public_jwks = SigningKey::jwks(&[key]);
    let hs256 = {
        let header = format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#);
        let good = key.sign(&claims());
        let payload = good.split('.').nth(1).unwrap_or_default();
        let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(&header));
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_jwks.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "TOKEN_MISSING"),
        (
            "not bearer",
            Some(format!("Basic {}", key.sign(&claims()))),
            "TOKEN_MALFORMED",
        ),
        ("malformed", Some(bearer("not-a-token")), "TOKEN_MALFORMED"),
        (
            "expired",
            Some(bearer(&key.sign(&TokenClaims {
                expires_at: now() - 3600,
                ..claims()
            }))),
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            Some(bearer(&key.sign(&TokenClaims {
                not_before: Some(now() + 3600),
                ..claims()
            }))),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "wrongly signed",
            Some(bearer(&impostor.sign(&claims()))),
            "TOKEN_SIGNATURE_INVALID",
        ),
        (
            "alg none",
            Some(bearer(&forged(
                &format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
                b"",
            ))),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        (
            "HS256 keyed with the public key",
            Some(bearer(&hs256)),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        (
            "unknown key id",
            Some(bearer(&stranger.sign(&claims()))),
            "TOKEN_KEY_UNKNOWN",
        ),
        (
            "wrong audience",
            Some(bearer(&key.sign(&TokenClaims {
                audience: vec!["circle-billing".to_owned()],
                ..claims()
            }))),
            "TOKEN_AUDIENCE_WRONG",
        ),
        (
            "wrong issuer",
            Some(bearer(&key.sign(&TokenClaims {
                issuer: "https://elsewhere.example".to_owned(),
                ..claims()
            }))),
            "TOKEN_ISSUER_WRONG",
        ),
        (
            "a participant who is also staff",
            Some(bearer(&key.sign(&TokenClaims {
                roles: vec!["participant".to_owned(), "network-admin".to_owned()],
                ..claims()
            }))),
            "TOKEN_CLAIMS_INVALID",
        ),
        (
            "a role no token may claim",
            Some(bearer(&key.sign(&TokenClaims {
                roles: vec!["process-manager".to_owned()],
                ..claims()
            }))),
            "TOKEN_CLAIMS_INVALID",
        ),
    ];
    for (address, path) in methods(&system) {
        for (case, authorization, expected) in &cases {
            assert_eq!(
                answer(address, path, authorization.as_deref()).await?,
                (Code::Unauthenticated, (*expected).to_owned()),
                "{path}: {case}"
            );
        }
        // The good token gets past authentication: the service itself answers.
        let (code, _) = answer(address, path, Some(&bearer(&key.sign(&claims())))).await?;
        assert_ne!(code, Code::Unauthenticated, "{path}: the good token");
        // For one service, a token that is good only for another.
        let sessions_only = key.sign(&TokenClaims {
            audience: vec!["circle-sessions".to_owned()],
            ..claims()
        });
        let (code, reason) = answer(address, path, Some(&bearer(&sessions_only))).await?;
        if path.contains("SessionsService") {
            assert_ne!(code, Code::Unauthenticated, "{path}");
        } else {
            assert_eq!(
                (code, reason.as_str()),
                (Code::Unauthenticated, "TOKEN_AUDIENCE_WRONG"),
                "{path}"
            );
        }
    }
    Ok(())
}

/// A small deterministic generator, so a failing case can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap_or(1)).unwrap_or(0)
    }
}

#[tokio::test]
async fn fuzzed_tokens_are_refused_and_never_bring_a_service_down() -> anyhow::Result<()> {
    let system = System::start_at("2026-11-20T12:00:00Z").await?;
    let good = circle_testkit::signing_key().sign(&claims());
    let alphabet: Vec<char> = "ABCxyz019-_.=+/ {}\":,\\".chars().collect();
    let mut random = XorShift(0x5eed_cafe_f00d_d00d);
    for (address, path) in methods(&system) {
        for round in 0..150 {
            let mut token: Vec<char> = good.chars().collect();
            match round % 5 {
                // Flip characters.
                0 | 1 => {
                    for _ in 0..=random.below(4) {
                        let at = random.below(token.len());
                        token[at] = alphabet[random.below(alphabet.len())];
                    }
                }
                // Cut it short.
                2 => token.truncate(random.below(token.len())),
                // Repeat a part.
                3 => {
                    let at = random.below(token.len());
                    let part: Vec<char> = token[at..].to_vec();
                    token.extend(part);
                }
                // Pure noise.
                _ => {
                    token = (0..random.below(300))
                        .map(|_| alphabet[random.below(alphabet.len())])
                        .collect();
                }
            }
            let token: String = token.into_iter().collect();
            if token == good {
                continue;
            }
            let authorization = bearer(&token);
            let Ok(value) = tonic::metadata::MetadataValue::<tonic::metadata::Ascii>::try_from(
                authorization.as_str(),
            ) else {
                continue;
            };
            let value = value.to_str()?.to_owned();
            let (code, reason) = answer(address, path, Some(&value)).await?;
            assert_eq!(
                code,
                Code::Unauthenticated,
                "{path}: {token:?} gave {reason}"
            );
            assert!(
                reason.starts_with("TOKEN_"),
                "{path}: {token:?} gave {reason}"
            );
        }
        // Still serving, and still taking the good token.
        let (code, _) = answer(address, path, Some(&bearer(&good))).await?;
        assert_ne!(code, Code::Unauthenticated, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn a_calling_service_may_call_only_what_its_identity_is_configured_for() -> anyhow::Result<()>
{
    let system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.auth.services.insert(
            "billing".to_owned(),
            vec!["circle.sessions.v1.SessionsService/ListSessions".to_owned()],
        );
    })
    .await?;
    let as_service = |subject: &str| {
        bearer(&circle_testkit::signing_key().sign(&TokenClaims {
            subject: subject.to_owned(),
            roles: vec!["service".to_owned()],
            ..claims()
        }))
    };
    let [enrollment, sessions, _] = methods(&system);
    let (code, _) = answer(sessions.0, sessions.1, Some(&as_service("billing"))).await?;
    assert!(
        code != Code::Unauthenticated && code != Code::PermissionDenied,
        "billing may list sessions: {code:?}"
    );
    assert_eq!(
        answer(enrollment.0, enrollment.1, Some(&as_service("billing"))).await?,
        (Code::PermissionDenied, "SERVICE_NOT_ALLOWED".to_owned())
    );
    assert_eq!(
        answer(sessions.0, sessions.1, Some(&as_service("stranger"))).await?,
        (Code::PermissionDenied, "SERVICE_UNKNOWN".to_owned())
    );
    Ok(())
}

#[tokio::test]
async fn health_needs_no_token_and_reflection_can_be_switched_off() -> anyhow::Result<()> {
    let system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.auth.reflection = false;
    })
    .await?;
    for (address, service) in [
        (
            system.addresses.enrollment,
            "circle.enrollment.v1.EnrollmentService",
        ),
        (
            system.addresses.sessions,
            "circle.sessions.v1.SessionsService",
        ),
        (
            system.addresses.accountability,
            "circle.accountability.v1.AccountabilityService",
        ),
    ] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
            .connect()
            .await?;
        let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
        let mut reflection =
            tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
                channel,
            );
        let refused = reflection
            .server_reflection_info(tokio_stream::once(
                tonic_reflection::pb::v1::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(
                        tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                            String::new(),
                        ),
                    ),
                },
            ))
            .await;
        let code = match refused {
            Ok(mut answers) => answers
                .get_mut()
                .message()
                .await
                .err()
                .map(|status| status.code()),
            Err(status) => Some(status.code()),
        };
        assert_eq!(code, Some(Code::Unimplemented), "{service}");
    }
    Ok(())
}

/// Waits until `path` takes `authorization` past authentication.
async fn accepted(
    address: SocketAddr,
    path: &'static str,
    authorization: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, reason) = answer(address, path, Some(authorization)).await?;
        if code != Code::Unauthenticated {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still refused: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_key_added_to_the_jwks_file_is_trusted_without_a_restart() -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("circle-rotation-{}.json", uuid_like(now())));
    std::fs::write(&file, SigningKey::jwks(&[circle_testkit::signing_key()]))?;
    let system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.auth.jwks_file = file.display().to_string();
    })
    .await?;
    let rotated = SigningKey::generate_ed25519("rotated-in")?;
    let token = bearer(&rotated.sign(&claims()));
    let [(address, path), ..] = methods(&system);
    assert_eq!(
        answer(address, path, Some(&token)).await?,
        (Code::Unauthenticated, "TOKEN_KEY_UNKNOWN".to_owned())
    );
    std::fs::write(
        &file,
        SigningKey::jwks(&[circle_testkit::signing_key(), &rotated]),
    )?;
    // An unknown key id asks for a refresh (at most every 10 s).
    accepted(address, path, &token).await?;
    std::fs::remove_file(&file)?;
    Ok(())
}

fn uuid_like(seed: i64) -> String {
    format!("{seed}-{}", std::process::id())
}

#[tokio::test]
async fn keys_can_come_from_a_jwks_url() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
    let jwks = SigningKey::jwks(&[circle_testkit::signing_key()]);
    let served = tokio::spawn(async move {
        // A plain HTTP/1.1 server answering every request with the JWKS.
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let system = System::start_with("2026-11-20T12:00:00Z", |config| {
        config.auth.jwks_file = String::new();
        config.auth.jwks_url = url;
    })
    .await?;
    let token = bearer(&circle_testkit::signing_key().sign(&claims()));
    for (address, path) in methods(&system) {
        let (code, reason) = answer(address, path, Some(&token)).await?;
        assert_ne!(code, Code::Unauthenticated, "{path}: {reason}");
    }
    served.abort();
    Ok(())
}

#[tokio::test]
async fn a_feed_ends_when_the_token_that_opened_it_expires() -> anyhow::Result<()> {
    use circle_proto::accountability::v1 as pb;
    let mut system = System::start_at("2026-11-20T18:00:00Z").await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    // Good for a few seconds only.
    let short = circle_testkit::signing_key().sign(&TokenClaims {
        expires_at: now() + 3,
        ..claims()
    });
    let open = |group: String| {
        let mut request = tonic::Request::new(pb::WatchGroupFeedRequest {
            group,
            after_position: 0,
            heartbeat_seconds: 1,
        });
        circle_testkit::authorize(&mut request, &short);
        request
    };
    // The feed opens once accountability knows the group.
    let mut client = system.accountability.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut feed = loop {
        match client.watch_group_feed(open(group.clone())).await {
            Ok(feed) => break feed.into_inner(),
            Err(status) if tokio::time::Instant::now() < deadline => {
                assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => anyhow::bail!("the feed never opened: {status:?}"),
        }
    };
    // Heartbeats until the token expires; then the feed ends, unauthenticated.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match feed.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        }
    })
    .await?;
    let status = ended.context("the feed ended without a status")?;
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unauthenticated, "TOKEN_EXPIRED")
    );
    Ok(())
}
