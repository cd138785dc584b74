//! Two replicas of every service share the work and survive the loss of one: each
//! replica is a whole process's worth of services (`start_all_with_clock`) on a tokio
//! runtime of its own, so "killing" it stops every task of it at whatever await it
//! was in and drops its connections, as a killed process's are dropped, with no
//! graceful shutdown. Projections are split into four partitions; four networks are
//! seeded (the demo's seeding: clinics, groups, members, goals, check-ins, sessions
//! held) through both replicas at once, and one replica is killed mid-way. Its
//! partitions and loops move to the other; the clients retry what failed there.
//! Afterwards seats are offered and expire and missed check-ins are nudged by the
//! survivor's loops, every read model equals a rebuild from the log, nothing
//! acknowledged is lost or doubled, and no nudge or offer expiry is sent twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use circle_cli::ops::{self, Ops};
use circle_proto::accountability::v1::accountability_service_client::AccountabilityServiceClient;
use circle_proto::enrollment::v1::enrollment_service_client::EnrollmentServiceClient;
use circle_proto::sessions::v1::sessions_service_client::SessionsServiceClient;
use circle_testkit::TestEnv;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::support::eventually;

const PARTITIONS: u32 = 4;

/// One replica of every service, on a runtime of its own.
struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
    addresses: circle_cli::Addresses,
}

impl Replica {
    /// Starts the services with `config`, its database sessions named `name`
    /// (`application_name`, to tell which replica holds which lock).
    async fn start(
        config: &circle_config::Config,
        clock: Arc<circle_calendar::ManualClock>,
        name: &str,
    ) -> anyhow::Result<Self> {
        let mut config = config.clone();
        let url = &mut config.database.url;
        let separator = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!("{separator}application_name={name}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name(name.to_owned())
            .build()?;
        let clock: Arc<dyn circle_calendar::Clock> = clock;
        let started = runtime.spawn(async move {
            let (addresses, task) =
                circle_cli::start_all_with_clock(&config, clock, std::future::pending()).await?;
            // Runs until the runtime goes.
            tokio::spawn(task);
            anyhow::Ok(addresses)
        });
        let addresses = match started.await {
            Ok(Ok(addresses)) => addresses,
            failed => {
                // Not dropped here: a runtime may not be dropped inside another.
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(error)) => error,
                    Err(error) => error.into(),
                    Ok(Ok(_)) => unreachable!(),
                });
            }
        };
        Ok(Self {
            runtime: Some(runtime),
            addresses,
        })
    }

    /// Kills it: every task stops where it is, its connections dropped.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    async fn clients(&self) -> anyhow::Result<Clients> {
        Ok(Clients {
            enrollment: EnrollmentServiceClient::connect(format!(
                "http://{}",
                self.addresses.enrollment
            ))
            .await?,
            sessions: SessionsServiceClient::connect(format!("http://{}", self.addresses.sessions))
                .await?,
            accountability: AccountabilityServiceClient::connect(format!(
                "http://{}",
                self.addresses.accountability
            ))
            .await?,
        })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
struct Clients {
    enrollment: EnrollmentServiceClient<Channel>,
    sessions: SessionsServiceClient<Channel>,
    accountability: AccountabilityServiceClient<Channel>,
}

/// Networks `net-a`, `net-b`, … one in each partition.
fn networks() -> Vec<String> {
    let mut found = Vec::new();
    let mut per_partition = vec![0; PARTITIONS as usize];
    for letter in 'a'..='z' {
        let network = format!("net-{letter}");
        let partition = circle_projection::partition_of(&network, PARTITIONS) as usize;
        if per_partition[partition] == 0 {
            per_partition[partition] += 1;
            found.push(network);
        }
    }
    found
}

fn size() -> anyhow::Result<circle_cli::demo::Size> {
    Ok(circle_cli::demo::Size {
        clinics: 1,
        // Two groups of ten: one waits in each.
        participants: 22,
        weeks: 1,
        start_date: "2026-02-23".parse()?,
    })
}

async fn seed(
    network: String,
    clients: Clients,
) -> anyhow::Result<circle_cli::demo::SeededNetwork> {
    let Clients {
        mut enrollment,
        mut sessions,
        mut accountability,
    } = clients;
    let mint = |role: &str, subject: &str, clinics: &[&str]| {
        circle_testkit::token(&network, subject, &[role], clinics)
    };
    circle_cli::demo::seed_network(
        &network,
        &mut enrollment,
        &mut sessions,
        &mut accountability,
        &mint,
        size()?,
    )
    .await
}

/// Which replicas (by `application_name`) hold advisory locks: exclusive ones
/// (projection writers and loop leases) and shared ones (members of split
/// projections).
async fn lock_holders(env: &TestEnv) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT a.application_name::text, l.mode::text FROM pg_locks l
         JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY 1, 2",
    )
    .fetch_all(&env.pool)
    .await?)
}

/// How many partitions of each split read model each replica writes: the writer
/// locks (`circle.projection.<schema>.<name>@<i>/<count>`) it holds, by (replica,
/// schema).
async fn partitions_written(env: &TestEnv) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    let (keys, schemas): (Vec<String>, Vec<String>) = read_models()
        .flat_map(|entry| {
            (0..PARTITIONS).map(move |index| {
                (
                    format!(
                        "circle.projection.{}.{}@{index}/{PARTITIONS}",
                        entry.schema, entry.name
                    ),
                    entry.schema.to_owned(),
                )
            })
        })
        .unzip();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT a.application_name::text, k.schema, count(*) FROM pg_locks l
         JOIN pg_stat_activity a ON a.pid = l.pid
         JOIN unnest($1::text[], $2::text[]) AS k (key, schema)
           ON l.objid::bigint = (hashtext(k.key)::bigint & 4294967295)
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(keys)
    .bind(schemas)
    .fetch_all(&env.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(replica, schema, count)| ((replica, schema), count))
        .collect())
}

fn read_models() -> impl Iterator<Item = &'static ops::catalog::Entry> {
    ops::catalog::CATALOG
        .iter()
        .filter(|entry| entry.kind == ops::catalog::Kind::ReadModel)
}

/// Whether each replica named writes `each` partitions of every read model.
fn shared_out(written: &BTreeMap<(String, String), i64>, replicas: &[&str], each: i64) -> bool {
    written.len() == replicas.len() * read_models().count()
        && replicas.iter().all(|replica| {
            read_models().all(|entry| {
                written.get(&((*replica).to_owned(), entry.schema.to_owned())) == Some(&each)
            })
        })
}

/// Every commit of a stream: (subject, commit).
async fn commits(
    env: &TestEnv,
    service: &str,
) -> anyhow::Result<Vec<(String, circle_eventstore::wire::Commit)>> {
    let stream = env
        .jetstream()
        .get_stream(env.config.stream_name(service))
        .await?;
    let last = stream.get_info().await?.state.last_sequence;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut found = Vec::new();
    while (found.len() as u64) < last {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
        found.push((
            message.subject.to_string(),
            circle_eventstore::wire::Commit::decode(message.payload.as_ref())?,
        ));
    }
    Ok(found)
}

/// The payloads of the events of `event_type` (its last name), with their subjects.
fn events_of(
    commits: &[(String, circle_eventstore::wire::Commit)],
    event_type: &str,
) -> Vec<(String, Vec<u8>)> {
    let suffix = format!(".{event_type}");
    commits
        .iter()
        .flat_map(|(subject, commit)| {
            commit
                .events
                .iter()
                .filter(|event| event.event_type.ends_with(&suffix))
                .map(move |event| (subject.clone(), event.payload.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_and_one_killed_under_load_loses_and_doubles_nothing()
-> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.config.projection.partitions = PARTITIONS;
    // Two replicas of every service in one PostgreSQL of 100 connections, the test
    // running alone (`.config/nextest.toml`): small pools (each replica also holds a
    // session for each split projection, a writer's connection for each process
    // manager it writes and a lease's for each loop; about twenty in all).
    env.config.database.max_connections = 4;
    env.config.enrollment.timer_poll_ms = 200;
    env.config.sessions.materialize_poll_ms = 200;
    env.config.accountability.nudge_poll_ms = 200;
    circle_cli::ensure_database(&env.config).await?;
    // Monday 2 March 2026, noon in Chicago.
    let clock = Arc::new(circle_calendar::ManualClock::new(
        "2026-03-02T18:00:00Z".parse()?,
    ));
    let mut first = Replica::start(&env.config, clock.clone(), "replica-a").await?;
    let second = Replica::start(&env.config, clock.clone(), "replica-b").await?;
    let ops = Ops::connect(&env.config).await?;

    // Both replicas are members of the split projections, and the read models'
    // partitions are shared out: each replica writes some, all are written.
    eventually(
        || lock_holders(&env),
        |holders| {
            ["replica-a", "replica-b"].iter().all(|replica| {
                holders
                    .iter()
                    .any(|(name, held)| name == replica && held == "ShareLock")
            })
        },
    )
    .await?;
    eventually(
        || partitions_written(&env),
        |written| shared_out(written, &["replica-a", "replica-b"], 2),
    )
    .await?;

    // Load: the four networks seeded at once, two through each replica.
    let networks = networks();
    assert_eq!(networks.len(), PARTITIONS as usize);
    let (through_first, through_second) = (first.clients().await?, second.clients().await?);
    let mut seeding = Vec::new();
    for (index, network) in networks.iter().enumerate() {
        let clients = if index % 2 == 0 {
            through_first.clone()
        } else {
            through_second.clone()
        };
        seeding.push(tokio::spawn(seed(network.clone(), clients)));
    }
    // Mid-way (a third of the enrollment log the seeding writes), the first replica
    // is killed.
    let enrollment_stream = env
        .jetstream()
        .get_stream(env.config.stream_name("enrollment"))
        .await?;
    eventually(
        || {
            let stream = enrollment_stream.clone();
            async move { Ok(stream.get_info().await?.state.last_sequence) }
        },
        |last| *last >= 150,
    )
    .await?;
    first.kill();
    // Its partitions and loops move: only the second replica holds locks now, and it
    // writes every partition.
    eventually(
        || lock_holders(&env),
        |holders| holders.iter().all(|(name, _)| name != "replica-a"),
    )
    .await?;
    eventually(
        || partitions_written(&env),
        |written| shared_out(written, &["replica-b"], i64::from(PARTITIONS)),
    )
    .await?;
    // What failed through the killed replica is tried again through the other (the
    // seeding's request ids are fixed: what was written before the kill is not
    // written again).
    let mut seeded = BTreeMap::new();
    // The survivor may answer UNAVAILABLE ("retry with the same request_id") for a
    // moment while it takes the killed one's partitions over: a client retries, and
    // so does this one, a few times.
    for (index, task) in seeding.into_iter().enumerate() {
        let network = networks[index].clone();
        let mut result = task.await?;
        for _ in 0..5 {
            if result.is_ok() {
                break;
            }
            result = seed(network.clone(), through_second.clone()).await;
        }
        seeded.insert(network.clone(), result.with_context(|| network.clone())?);
    }
    for result in seeded.values() {
        assert_eq!(
            (
                result.groups,
                result.participants,
                result.active,
                result.waitlisted
            ),
            (2, 22, 20, 2),
            "{result:?}"
        );
    }

    // The survivor's loops: a seat opens in every group (a member completes) and is
    // offered to the one waiting, who does not answer; and nobody checks in.
    let mut enrollment = through_second.enrollment.clone();
    let mut offered = 0;
    for network in &networks {
        for group in 1..=2 {
            let group =
                format!("networks/{network}/clinics/clinic-01/groups/clinic-01-group-{group}");
            let members = enrollment
                .list_group_members(circle_testkit::request_as(
                    circle_proto::enrollment::v1::ListGroupMembersRequest {
                        parent: group.clone(),
                        page_size: 100,
                        ..Default::default()
                    },
                    network,
                    "network-admin",
                    "admin-1",
                    &[],
                ))
                .await?
                .into_inner();
            let member = members
                .memberships
                .iter()
                .find(|membership| {
                    membership.state() == circle_proto::enrollment::v1::MembershipState::Active
                })
                .map(|membership| membership.name.clone())
                .ok_or_else(|| anyhow::anyhow!("no active member in {group}"))?;
            enrollment
                .discharge_participant(circle_testkit::request_as(
                    circle_proto::enrollment::v1::DischargeParticipantRequest {
                        name: member,
                        reason: circle_proto::enrollment::v1::EndReason::Completed as i32,
                        ..Default::default()
                    },
                    network,
                    "network-admin",
                    "admin-1",
                    &[],
                ))
                .await?;
            offered += 1;
        }
    }
    // Three days on (past the 48-hour offers and two missed daily check-ins), at noon.
    clock.advance(chrono::Duration::days(3));
    eventually(
        || {
            let env = &env;
            async move { Ok(events_of(&commits(env, "enrollment").await?, "SeatOfferExpired").len()) }
        },
        |expired| *expired >= offered,
    )
    .await?;
    let members_with_goals: usize = seeded.values().map(|result| result.active).sum();
    eventually(
        || {
            let env = &env;
            async move {
                let nudged: std::collections::BTreeSet<String> =
                    events_of(&commits(env, "accountability").await?, "NudgeSent")
                        .into_iter()
                        .map(|(subject, _)| subject)
                        .collect();
                Ok(nudged.len())
            }
        },
        |nudged| *nudged >= members_with_goals - offered,
    )
    .await?;
    crate::ops::caught_up(&ops).await?;

    // Every read model equals a rebuild from the log (rebuilt by partitions, as the
    // live ones are split).
    for entry in read_models() {
        let live = crate::ops::content(&env.pool, entry.schema).await?;
        let rebuilt = ops::projections::rebuild(&ops, entry.name, |_| {}).await?;
        assert_eq!(rebuilt.dead_letters, 0, "{}", entry.name);
        assert_eq!(
            crate::ops::content(&env.pool, entry.schema).await?,
            live,
            "{} rebuilt equal",
            entry.name
        );
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT projection FROM \"{}\".projection_checkpoint ORDER BY 1",
            entry.schema
        )))
        .fetch_all(&env.pool)
        .await?;
        assert_eq!(
            rows,
            (0..PARTITIONS)
                .map(|index| format!("{}@{index}/{PARTITIONS}", entry.name))
                .collect::<Vec<_>>(),
            "split into partitions"
        );
    }

    // Process managers are never split (a new count would replay their commands).
    for name in [
        circle_enrollment::process::TRANSFERS_NAME,
        circle_accountability::process::FROM_SESSIONS_NAME,
        circle_accountability::process::PARTNERSHIP_GUARD_NAME,
    ] {
        let schema = ops::catalog::find(name).expect("in the catalogue").schema;
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT projection FROM \"{schema}\".projection_checkpoint"
        )))
        .fetch_all(&env.pool)
        .await?;
        assert_eq!(rows, vec![name.to_owned()]);
    }

    // Nothing acknowledged lost or doubled: every commit's request id once per
    // aggregate, every seeded participant registered once, every member's goal set
    // once.
    for service in ["enrollment", "sessions", "accountability"] {
        let commits = commits(&env, service).await?;
        // A request id is its aggregate's (the seeding's are the same in every
        // network, a process manager's the same in every group).
        let mut ids = BTreeMap::<(String, String), usize>::new();
        for (subject, commit) in &commits {
            *ids.entry((subject.clone(), commit.request_id.clone()))
                .or_default() += 1;
        }
        let doubled: Vec<_> = ids.iter().filter(|(_, count)| **count > 1).collect();
        assert!(doubled.is_empty(), "{service}: {doubled:?}");
    }
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM enrollment.participants")
        .fetch_one(&env.pool)
        .await?;
    assert_eq!(registered, 22 * networks.len() as i64);
    let goals: i64 = sqlx::query_scalar("SELECT count(*) FROM accountability.goals")
        .fetch_one(&env.pool)
        .await?;
    assert_eq!(goals as usize, members_with_goals);

    // No offer expiry and no nudge sent twice: each offer expired once, each step of
    // each ladder (participant, level, goal, due time) once, and the read model holds
    // exactly what the log does.
    let enrollment_commits = commits(&env, "enrollment").await?;
    let mut expiries = BTreeMap::<(String, String), usize>::new();
    for (subject, payload) in events_of(&enrollment_commits, "SeatOfferExpired") {
        let expired =
            circle_proto::enrollment::events::v1::SeatOfferExpired::decode(payload.as_slice())?;
        *expiries.entry((subject, expired.offer_id)).or_default() += 1;
    }
    assert_eq!(expiries.len(), offered, "{expiries:?}");
    assert!(expiries.values().all(|count| *count == 1), "{expiries:?}");
    let nudges = events_of(&commits(&env, "accountability").await?, "NudgeSent");
    let mut steps = BTreeMap::<(String, i32, String, i64), usize>::new();
    for (subject, payload) in &nudges {
        let nudge =
            circle_proto::accountability::events::v1::NudgeSent::decode(payload.as_slice())?;
        let due = nudge.due_time.map(|time| time.seconds).unwrap_or_default();
        *steps
            .entry((subject.clone(), nudge.level, nudge.goal_id, due))
            .or_default() += 1;
    }
    let twice: Vec<_> = steps.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "nudges sent twice: {twice:?}");
    let in_read_model: i64 = sqlx::query_scalar("SELECT count(*) FROM accountability.nudges")
        .fetch_one(&env.pool)
        .await?;
    assert_eq!(in_read_model as usize, nudges.len());
    drop(second);
    Ok(())
}
