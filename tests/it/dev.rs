//! The whole system as `circle dev` starts it, with its demo data.

use circle_proto::enrollment::v1 as pb;
use circle_testkit::TestEnv;
use pb::enrollment_service_client::EnrollmentServiceClient;

fn as_demo_admin<T>(message: T) -> tonic::Request<T> {
    circle_testkit::request_as(message, "demo", "network-admin", "demo-admin", &[])
}

/// Tokens of the demo network, as `circle dev` mints them for its seeding.
fn mint(role: &str, subject: &str, clinics: &[&str]) -> String {
    circle_testkit::token("demo", subject, &[role], clinics)
}

#[tokio::test]
async fn dev_mode_seeds_the_demo_network_once_and_serves_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    circle_cli::ensure_database(&env.config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addresses, task) = circle_cli::start_all(&env.config, async {
        let _ = stopped.await;
    })
    .await?;
    let mut client =
        EnrollmentServiceClient::connect(format!("http://{}", addresses.enrollment)).await?;
    let seeded = circle_cli::demo::seed(&mut client, &mint).await?;
    assert_eq!(
        (
            seeded.clinics.len(),
            seeded.groups.len(),
            seeded.participants
        ),
        (2, 3, 12)
    );
    assert_eq!((seeded.active, seeded.waitlisted), (10, 2));

    // Seeding again (a restart of `circle dev`) is answered from the log: same result.
    let again = circle_cli::demo::seed(&mut client, &mint).await?;
    assert_eq!((again.active, again.waitlisted), (10, 2));

    let stream = env.config.stream_name("enrollment");
    let mut info = env.jetstream().get_stream(&stream).await?;
    let last = info.info().await?.state.last_sequence;
    assert_eq!(last, 2 + 3 + 12 + 12, "one commit per command, none twice");

    // Accountability demo data, seeded twice as well: one goal and one shared check-in
    // each for three members, no more.
    let mut accountability = circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient::connect(format!(
        "http://{}",
        addresses.accountability
    ))
    .await?;
    assert_eq!(
        circle_cli::demo::seed_accountability(&mut client, &mut accountability, &mint).await?,
        3
    );
    assert_eq!(
        circle_cli::demo::seed_accountability(&mut client, &mut accountability, &mint).await?,
        3
    );
    let mut info = env
        .jetstream()
        .get_stream(env.config.stream_name("accountability"))
        .await?;
    assert_eq!(
        info.info().await?.state.last_sequence,
        3 + 3,
        "three goals and three check-ins"
    );
    let board = accountability
        .get_group_board(as_demo_admin(
            circle_proto::accountability::v1::GetGroupBoardRequest {
                group: "networks/demo/clinics/riverside/groups/relapse-prevention-mon".into(),
                consistency_token: "6".into(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(
        board
            .entries
            .iter()
            .filter(|entry| entry.last_check_in.is_some())
            .count(),
        3
    );

    let lakeview = "networks/demo/clinics/lakeview/groups/dbt-skills-wed";
    let waitlist = client
        .list_waitlist(as_demo_admin(pb::ListWaitlistRequest {
            parent: lakeview.into(),
            page_size: 0,
            page_token: String::new(),
            consistency_token: last.to_string(),
        }))
        .await?
        .into_inner();
    let positions: Vec<_> = waitlist
        .memberships
        .iter()
        .map(|m| (m.participant.as_str(), m.waitlist_position))
        .collect();
    assert_eq!(
        positions,
        vec![
            ("networks/demo/participants/participant-11", 1),
            ("networks/demo/participants/participant-12", 2)
        ]
    );

    // Standard health is served next to the API.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", addresses.enrollment))?
            .connect()
            .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: "circle.enrollment.v1.EnrollmentService".into(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let _ = stop.send(());
    task.await??;
    Ok(())
}
