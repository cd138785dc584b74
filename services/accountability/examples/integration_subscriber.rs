//! An example subscriber to Circle's integration events, as another service (say, a
//! messaging service) would write one: it follows `WatchIntegrationEvents` of one
//! network, handles each event once (its `event_id` is the idempotency key), keeps the
//! last position it handled in a file so a restart resumes without a gap, and
//! reconnects after an error.
//!
//! ```sh
//! TOKEN=$(cargo run -q -p circle-cli --bin circle -- token service --subject messaging)
//! cargo run -p circle-accountability --example integration_subscriber -- \
//!   http://127.0.0.1:50053 demo "$TOKEN" /tmp/subscriber.position
//! ```
//!
//! (`messaging` must be listed under `auth.services` with
//! `circle.accountability.v1.AccountabilityService/WatchIntegrationEvents`.)

use std::collections::VecDeque;
use std::time::Duration;

use circle_proto::accountability::v1 as pb;
use circle_proto::integration::v1::integration_event::Payload;
use pb::accountability_service_client::AccountabilityServiceClient;
use pb::watch_integration_events_response::Event;

/// How many recent event ids are remembered to drop a repeat (a repeat comes soon
/// after the original: a reconnect, or a publisher restart).
const REMEMBERED: usize = 10_000;
/// A nudge older than this is not delivered (a first subscription reads the history).
const STALE_SECONDS: i64 = 24 * 60 * 60;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, network, token, position_file] = args.as_slice() else {
        return Err("usage: integration_subscriber ADDRESS NETWORK TOKEN POSITION_FILE".into());
    };
    let mut position: u64 = std::fs::read_to_string(position_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let mut seen: VecDeque<String> = VecDeque::new();
    loop {
        match follow(
            address,
            network,
            token,
            position_file,
            &mut position,
            &mut seen,
        )
        .await
        {
            Ok(()) => eprintln!("the subscription ended; reconnecting"),
            Err(error) => eprintln!("{error}; reconnecting after position {position}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow(
    address: &str,
    network: &str,
    token: &str,
    position_file: &str,
    position: &mut u64,
    seen: &mut VecDeque<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = AccountabilityServiceClient::connect(address.to_owned()).await?;
    let mut request = tonic::Request::new(pb::WatchIntegrationEventsRequest {
        network: format!("networks/{network}"),
        event_types: Vec::new(),
        after_position: *position,
        heartbeat_seconds: 15,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut stream = client.watch_integration_events(request).await?.into_inner();
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(Event::IntegrationEvent(event)) => {
                let age = event.occur_time.map_or(0, |time| unix_now() - time.seconds);
                if !seen.contains(&event.event_id) {
                    handle(&event.event_type, event.payload.as_ref(), age);
                    seen.push_back(event.event_id.clone());
                    if seen.len() > REMEMBERED {
                        seen.pop_front();
                    }
                }
                *position = event.position;
            }
            Some(Event::HeartbeatPosition(reached)) => *position = reached,
            None => continue,
        }
        // Handled before the position moves on: a crash repeats, never skips.
        std::fs::write(position_file, position.to_string())?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// What a messaging service would do with each event (`age`: seconds since it
/// happened).
fn handle(event_type: &str, payload: Option<&Payload>, age: i64) {
    match payload {
        Some(Payload::NudgeRequested(nudge)) if age > STALE_SECONDS => {
            println!("skip {} (too old to deliver)", nudge.nudge);
        }
        Some(Payload::NudgeRequested(nudge)) => println!(
            "deliver {} ({}, {}{}) to {}",
            nudge.nudge,
            nudge.level,
            nudge.reason,
            if nudge.urgent { ", now" } else { "" },
            nudge.recipient
        ),
        Some(Payload::NudgeAcknowledged(nudge)) => println!("drop pending {}", nudge.nudge),
        Some(Payload::MeasurementCompleted(measurement)) => println!(
            "measure {} ({}){}",
            measurement.measurement,
            measurement.instrument,
            if measurement.safety_concern {
                ", safety concern"
            } else {
                ""
            }
        ),
        None => println!("{event_type}: a type this subscriber does not know yet"),
    }
}
