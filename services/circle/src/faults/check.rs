//! The independent checker: reads each service's stream back with a NATS client of its
//! own and decodes the commit envelopes and the group events from the protobuf
//! definitions (not through the services' code); compares each read model with a
//! rebuild from the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use circle_proto::enrollment::events::v1 as ev;
use circle_proto::eventstore::v1 as wire;
use futures::StreamExt as _;
use prost::{Message as _, Name as _};

/// One commit as stored.
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    /// The sequence the append expected the subject to end at
    /// (`Nats-Expected-Last-Subject-Sequence`), where the server kept the header.
    pub expected: Option<u64>,
    pub commit: wire::Commit,
}

/// Every message of `stream`, in order, decoded.
pub async fn read_stream(stream: &jetstream::stream::Stream) -> anyhow::Result<Vec<Stored>> {
    let mut stream = stream.clone();
    let last = stream.info().await?.state.last_sequence;
    let mut stored = Vec::new();
    if last == 0 {
        return Ok(stored);
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating the checker's consumer")?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .context("the stream stopped delivering before its last message")?
    {
        let message = message.map_err(|error| anyhow::anyhow!("reading the stream: {error}"))?;
        let sequence = message
            .info()
            .map_err(|error| anyhow::anyhow!("{error}"))?
            .stream_sequence;
        let expected = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Expected-Last-Subject-Sequence"))
            .and_then(|value| value.as_str().parse().ok());
        let commit = wire::Commit::decode(message.payload.as_ref())
            .with_context(|| format!("commit {sequence} is not a commit envelope"))?;
        stored.push(Stored {
            sequence,
            subject: message.subject.to_string(),
            expected,
            commit,
        });
        if sequence >= last {
            break;
        }
    }
    Ok(stored)
}

/// What the log says about the commands the load saw acknowledged.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LogCheck {
    pub commits: usize,
    pub aggregates: usize,
    pub acknowledged: usize,
    /// Acknowledged, but in no commit.
    pub lost: usize,
    /// Acknowledged, and in more than one commit.
    pub doubled: usize,
    /// Any request id committed twice on one aggregate (acknowledged or not).
    pub request_ids_twice: usize,
    /// Commits whose expected subject sequence was kept by the server, all checked.
    pub versions_checked: usize,
    /// Commits appended at another version than the aggregate's last.
    pub versions_out_of_line: usize,
    /// Commits stamped earlier than the aggregate's previous commit.
    pub times_backwards: usize,
    pub examples: Vec<String>,
}

/// Checks one stream's commits against the request ids acknowledged on it.
pub fn check_log(stored: &[Stored], acknowledged: &BTreeSet<String>) -> LogCheck {
    let mut check = LogCheck {
        commits: stored.len(),
        acknowledged: acknowledged.len(),
        ..Default::default()
    };
    let mut by_request: HashMap<&str, usize> = HashMap::new();
    let mut on_aggregate: HashMap<(&str, &str), usize> = HashMap::new();
    let mut last_of: HashMap<&str, (u64, Option<prost_types::Timestamp>)> = HashMap::new();
    for commit in stored {
        let request_id = commit.commit.request_id.as_str();
        *by_request.entry(request_id).or_default() += 1;
        if !request_id.is_empty() {
            let count = on_aggregate
                .entry((commit.subject.as_str(), request_id))
                .or_default();
            *count += 1;
            if *count == 2 {
                check.request_ids_twice += 1;
                note(
                    &mut check.examples,
                    format!("request id committed twice on {}", commit.subject),
                );
            }
        }
        let previous = last_of.get(commit.subject.as_str());
        if let Some(expected) = commit.expected {
            check.versions_checked += 1;
            let previous_sequence = previous.map_or(0, |(sequence, _)| *sequence);
            if expected != previous_sequence {
                check.versions_out_of_line += 1;
                note(
                    &mut check.examples,
                    format!(
                        "commit {} expected version {expected}, the aggregate was at {previous_sequence}",
                        commit.sequence
                    ),
                );
            }
        }
        if let (Some((_, Some(before))), Some(now)) = (previous, &commit.commit.committed_at)
            && (now.seconds, now.nanos) < (before.seconds, before.nanos)
        {
            check.times_backwards += 1;
            note(
                &mut check.examples,
                format!(
                    "commit {} is stamped before its predecessor",
                    commit.sequence
                ),
            );
        }
        last_of.insert(
            commit.subject.as_str(),
            (commit.sequence, commit.commit.committed_at),
        );
    }
    check.aggregates = last_of.len();
    for request_id in acknowledged {
        match by_request.get(request_id.as_str()).copied().unwrap_or(0) {
            0 => {
                check.lost += 1;
                note(
                    &mut check.examples,
                    format!("acknowledged {request_id} is not in the log"),
                );
            }
            1 => {}
            _ => {
                check.doubled += 1;
                note(
                    &mut check.examples,
                    format!("acknowledged {request_id} is in the log more than once"),
                );
            }
        }
    }
    check
}

fn note(examples: &mut Vec<String>, example: String) {
    if examples.len() < 10 {
        examples.push(example);
    }
}

/// The group-capacity invariant, after every commit of every group.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CapacityCheck {
    pub groups: usize,
    pub commits: usize,
    pub admissions: usize,
    pub waitlisted: usize,
    pub offers: usize,
    pub most_seats_taken: u32,
    pub violations: usize,
    pub examples: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seat {
    Active,
    Held,
    Offered,
    Waiting,
}

#[derive(Default)]
struct GroupSeats {
    capacity: u32,
    members: HashMap<String, Seat>,
}

impl GroupSeats {
    fn taken(&self) -> u32 {
        self.members
            .values()
            .filter(|seat| matches!(seat, Seat::Active | Seat::Held | Seat::Offered))
            .count() as u32
    }
}

/// Replays every group of the enrollment stream from its events: seats taken (active,
/// on hold, offered) never exceed the capacity after any commit.
pub fn check_capacity(stored: &[Stored]) -> anyhow::Result<CapacityCheck> {
    let mut check = CapacityCheck::default();
    let mut groups: BTreeMap<&str, GroupSeats> = BTreeMap::new();
    for commit in stored
        .iter()
        .filter(|commit| commit.commit.aggregate_type == "group")
    {
        check.commits += 1;
        let group = groups.entry(commit.subject.as_str()).or_default();
        for event in &commit.commit.events {
            let payload = event.payload.as_slice();
            let name = event.event_type.as_str();
            let decode_failed = |error: prost::DecodeError| {
                anyhow::anyhow!("commit {}: {name}: {error}", commit.sequence)
            };
            if name == ev::GroupCreated::full_name() {
                group.capacity = ev::GroupCreated::decode(payload)
                    .map_err(decode_failed)?
                    .capacity;
            } else if name == ev::GroupCapacityChanged::full_name() {
                group.capacity = ev::GroupCapacityChanged::decode(payload)
                    .map_err(decode_failed)?
                    .capacity;
            } else if name == ev::MemberAdmitted::full_name() {
                let event = ev::MemberAdmitted::decode(payload).map_err(decode_failed)?;
                check.admissions += 1;
                group.members.insert(event.participant_id, Seat::Active);
            } else if name == ev::MemberWaitlisted::full_name() {
                let event = ev::MemberWaitlisted::decode(payload).map_err(decode_failed)?;
                check.waitlisted += 1;
                group.members.insert(event.participant_id, Seat::Waiting);
            } else if name == ev::SeatOffered::full_name() {
                let event = ev::SeatOffered::decode(payload).map_err(decode_failed)?;
                check.offers += 1;
                group.members.insert(event.participant_id, Seat::Offered);
            } else if name == ev::SeatOfferDeclined::full_name() {
                let event = ev::SeatOfferDeclined::decode(payload).map_err(decode_failed)?;
                group.members.remove(&event.participant_id);
            } else if name == ev::SeatOfferExpired::full_name() {
                let event = ev::SeatOfferExpired::decode(payload).map_err(decode_failed)?;
                group.members.remove(&event.participant_id);
            } else if name == ev::MemberHeld::full_name() {
                let event = ev::MemberHeld::decode(payload).map_err(decode_failed)?;
                group.members.insert(event.participant_id, Seat::Held);
            } else if name == ev::MemberResumed::full_name() {
                let event = ev::MemberResumed::decode(payload).map_err(decode_failed)?;
                group.members.insert(event.participant_id, Seat::Active);
            } else if name == ev::MemberDischarged::full_name() {
                let event = ev::MemberDischarged::decode(payload).map_err(decode_failed)?;
                group.members.remove(&event.participant_id);
            } else if name == ev::MemberTransferredOut::full_name() {
                let event = ev::MemberTransferredOut::decode(payload).map_err(decode_failed)?;
                group.members.remove(&event.participant_id);
            }
        }
        let taken = group.taken();
        check.most_seats_taken = check.most_seats_taken.max(taken);
        if taken > group.capacity {
            check.violations += 1;
            note(
                &mut check.examples,
                format!(
                    "after commit {}: {taken} seats taken of {}",
                    commit.sequence, group.capacity
                ),
            );
        }
    }
    check.groups = groups.len();
    Ok(check)
}

/// Every base table of `schema` but the projection runtime's own, each as (rows, a
/// digest of every row's text in order), read as the superuser (row-level security
/// does not hide a row from it).
pub async fn snapshot(
    pool: &sqlx::PgPool,
    schema: &str,
) -> anyhow::Result<BTreeMap<String, (i64, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_type = 'BASE TABLE'
           AND table_name NOT IN ('projection_checkpoint', 'dead_letters')
         ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let mut tables_rows = BTreeMap::new();
    for table in tables {
        let (rows, digest): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))
             FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_one(pool)
        .await
        .with_context(|| format!("reading {schema}.{table}"))?;
        tables_rows.insert(table, (rows, digest));
    }
    Ok(tables_rows)
}

/// A read model compared with its rebuild.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadModelCheck {
    pub read_model: String,
    pub tables: usize,
    pub rows: i64,
    pub equal: bool,
    pub differing_tables: Vec<String>,
    pub dead_letters: i64,
}

/// Tables whose digests differ between two snapshots (or exist in one only).
pub fn differing(
    live: &BTreeMap<String, (i64, String)>,
    rebuilt: &BTreeMap<String, (i64, String)>,
) -> Vec<String> {
    live.keys()
        .chain(rebuilt.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|table| live.get(*table) != rebuilt.get(*table))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(sequence: u64, subject: &str, request_id: &str, expected: Option<u64>) -> Stored {
        Stored {
            sequence,
            subject: subject.to_owned(),
            expected,
            commit: wire::Commit {
                request_id: request_id.to_owned(),
                committed_at: Some(prost_types::Timestamp {
                    seconds: sequence as i64,
                    nanos: 0,
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_log_check_finds_lost_doubled_and_out_of_line_commits() {
        let stored = vec![
            commit(1, "a", "r1", Some(0)),
            commit(2, "b", "r2", Some(0)),
            commit(3, "a", "r3", Some(1)),
            // Appended as if "a" were still at 1: out of line.
            commit(4, "a", "r4", Some(1)),
            commit(5, "b", "r2", Some(2)),
        ];
        let acknowledged: BTreeSet<String> = ["r1", "r2", "r3", "r9"]
            .iter()
            .map(|id| (*id).to_owned())
            .collect();
        let check = check_log(&stored, &acknowledged);
        assert_eq!(check.lost, 1, "r9 is lost");
        assert_eq!(check.doubled, 1, "r2 is doubled");
        assert_eq!(check.request_ids_twice, 1);
        assert_eq!(check.versions_checked, 5);
        assert_eq!(check.versions_out_of_line, 1);
        assert_eq!(check.aggregates, 2);
        let clean = check_log(
            &stored[..3],
            &["r1", "r2", "r3"]
                .iter()
                .map(|id| (*id).to_owned())
                .collect(),
        );
        assert_eq!(
            (clean.lost, clean.doubled, clean.versions_out_of_line),
            (0, 0, 0)
        );
    }

    fn group_commit(sequence: u64, events: Vec<wire::Event>) -> Stored {
        let mut stored = commit(sequence, "enrollment.n.group.g", "", None);
        stored.commit.aggregate_type = "group".into();
        stored.commit.events = events;
        stored
    }

    fn event<M: prost::Name>(message: &M) -> wire::Event {
        wire::Event {
            event_type: M::full_name(),
            payload: message.encode_to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_capacity_check_counts_offers_and_holds_as_seats() -> anyhow::Result<()> {
        let admitted = |id: &str| {
            event(&ev::MemberAdmitted {
                participant_id: id.into(),
                ..Default::default()
            })
        };
        let stored = vec![
            group_commit(
                1,
                vec![event(&ev::GroupCreated {
                    capacity: 2,
                    ..Default::default()
                })],
            ),
            group_commit(2, vec![admitted("a")]),
            group_commit(
                3,
                vec![event(&ev::SeatOffered {
                    participant_id: "b".into(),
                    ..Default::default()
                })],
            ),
            group_commit(
                4,
                vec![event(&ev::MemberDischarged {
                    participant_id: "a".into(),
                    ..Default::default()
                })],
            ),
            group_commit(5, vec![admitted("b"), admitted("c")]),
        ];
        let check = check_capacity(&stored)?;
        assert_eq!(check.violations, 0);
        assert_eq!(check.most_seats_taken, 2);
        let mut over = stored;
        over.push(group_commit(6, vec![admitted("d")]));
        assert_eq!(check_capacity(&over)?.violations, 1);
        Ok(())
    }
}
