//! The abuse limits as a client sees them over a real socket (`circle_grpc::limits`):
//! calls held open on the accountability feed (a streaming RPC) fill the in-flight
//! limits, so the next call is refused at once; a feed past its deadline ends with
//! DEADLINE_EXCEEDED and frees its place; an oversize request is refused by size.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use circle_proto::accountability::v1 as pb;
use circle_proto::enrollment::v1 as enrollment;
use pb::accountability_service_client::AccountabilityServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{System, admin, eventually, refusal};

const NOW: &str = "2026-11-20T18:00:00Z";

/// The system with `max_in_flight` and `max_in_flight_per_caller`, and a group that
/// accountability knows (its board answers).
async fn with_limits(
    max_in_flight: usize,
    max_in_flight_per_caller: usize,
) -> anyhow::Result<(System, String)> {
    let mut system = System::start_with(NOW, |config| {
        config.grpc.max_in_flight = max_in_flight;
        config.grpc.max_in_flight_per_caller = max_in_flight_per_caller;
    })
    .await?;
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let client = system.accountability.clone();
    eventually(
        || {
            let mut client = client.clone();
            let group = group.clone();
            async move {
                Ok(client
                    .get_group_board(admin(pb::GetGroupBoardRequest {
                        group,
                        ..Default::default()
                    }))
                    .await
                    .is_ok())
            }
        },
        |known| *known,
    )
    .await?;
    Ok((system, group))
}

/// A feed request of network admin `who` (each subject is a caller of its own).
fn feed_of(group: &str, who: &'static str) -> tonic::Request<pb::WatchGroupFeedRequest> {
    crate::support::as_caller(
        pb::WatchGroupFeedRequest {
            group: group.to_owned(),
            after_position: 0,
            heartbeat_seconds: 300,
        },
        "network-admin",
        who,
    )
}

fn feed(group: &str) -> tonic::Request<pb::WatchGroupFeedRequest> {
    admin(pb::WatchGroupFeedRequest {
        group: group.to_owned(),
        after_position: 0,
        heartbeat_seconds: 300,
    })
}

/// A client of `address` whose connections come from `from` (the caller is the token's
/// network and subject; the address only shows it is not the connection that counts).
async fn client_from(
    address: SocketAddr,
    from: [u8; 4],
) -> anyhow::Result<AccountabilityServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .local_address(Some(IpAddr::from(from)))
        .connect()
        .await?;
    Ok(AccountabilityServiceClient::new(channel))
}

#[tokio::test]
async fn held_calls_fill_the_limits_and_the_next_is_refused_at_once() -> anyhow::Result<()> {
    let (system, group) = with_limits(2, 1).await?;
    let address = system.addresses.accountability;
    let mut first = client_from(address, [127, 0, 0, 1]).await?;
    // From the same address as the first: the caller is the token's subject.
    let mut second = client_from(address, [127, 0, 0, 1]).await?;
    let mut third = client_from(address, [127, 0, 0, 3]).await?;

    let held = first.watch_group_feed(feed(&group)).await?.into_inner();
    // The same caller again: over its own limit of one.
    let (code, reason, _) = refusal(first.watch_group_feed(feed(&group)).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "CALLER_CONCURRENCY")
    );
    let (code, reason, _) = refusal(
        first
            .get_group_board(admin(pb::GetGroupBoardRequest {
                group: group.clone(),
                ..Default::default()
            }))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "CALLER_CONCURRENCY"),
        "a unary call of that caller too"
    );

    // Another caller takes the second place; a third finds the service full.
    let _held_too = second
        .watch_group_feed(feed_of(&group, "admin-2"))
        .await?
        .into_inner();
    let refused = third.watch_group_feed(feed_of(&group, "admin-3")).await;
    let Err(status) = refused else {
        anyhow::bail!("a third call was admitted into a service full with two");
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    let (_, reason, _) = refusal::<()>(Err(status));
    assert_eq!(reason, "OVERLOADED");

    // Health is not the service's route: it answers while the service is full.
    let mut health = HealthClient::new(
        Channel::from_shared(format!("http://{address}"))?
            .connect()
            .await?,
    );
    health
        .check(HealthCheckRequest {
            service: "circle.accountability.v1.AccountabilityService".into(),
        })
        .await?;

    // A closed stream frees its place (once the server has seen it go).
    drop(held);
    eventually(
        || {
            let mut third = third.clone();
            let group = group.clone();
            async move {
                Ok(
                    match third.watch_group_feed(feed_of(&group, "admin-3")).await {
                        Ok(stream) => Some(stream.into_inner()),
                        Err(status) if status.code() == Code::ResourceExhausted => None,
                        Err(status) => return Err(status.into()),
                    },
                )
            }
        },
        Option::is_some,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_feed_past_its_deadline_ends_with_deadline_exceeded_and_frees_its_place()
-> anyhow::Result<()> {
    let (mut system, group) = with_limits(10, 1).await?;
    let mut request = feed(&group);
    // Long enough for the stream to start; the feed itself never ends on its own
    // (heartbeats every 300 s), so only the deadline can end it.
    request.set_timeout(Duration::from_secs(1));
    let mut stream = system
        .accountability
        .watch_group_feed(request)
        .await?
        .into_inner();
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => anyhow::bail!("the feed ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    let (_, reason, _) = refusal::<()>(Err(ended));
    assert_eq!(reason, "DEADLINE_EXCEEDED");
    // The server dropped the call before answering: its caller's one place is free.
    system.accountability.watch_group_feed(feed(&group)).await?;
    Ok(())
}

#[tokio::test]
async fn a_request_over_the_message_limit_is_refused_by_size() -> anyhow::Result<()> {
    let mut system = System::start_at(NOW).await?;
    let request = admin(enrollment::CreateClinicRequest {
        parent: "networks/acme".into(),
        clinic_id: "large".into(),
        clinic: Some(enrollment::Clinic {
            display_name: "x".repeat(circle_grpc::limits::MAX_REQUEST_BYTES),
            time_zone: "America/Chicago".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    let (code, reason, _) = refusal(system.enrollment.create_clinic(request).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE")
    );
    // A request under the limit is read and judged on its fields.
    let request = admin(enrollment::CreateClinicRequest {
        parent: "networks/acme".into(),
        clinic_id: "large".into(),
        clinic: Some(enrollment::Clinic {
            display_name: "x".repeat(1_000),
            time_zone: "America/Chicago".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    let (code, _, fields) = refusal(system.enrollment.create_clinic(request).await);
    assert_eq!(
        (code, fields),
        (
            Code::InvalidArgument,
            vec!["clinic.display_name".to_owned()]
        )
    );
    Ok(())
}
