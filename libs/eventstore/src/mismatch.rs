//! An existing stream against the configuration: its replica count and duplicate
//! window (`nats.replicas`, `nats.duplicate_window_secs`), refused or warned about as
//! `nats.stream_mismatch` says. Shared by the event log ([`crate::EventStore::open_with`])
//! and the audit streams (`circle_audit::AuditLog::open_with`). Deciding is pure
//! ([`differences`], [`judge`]): a single NATS server cannot hold a stream of more than
//! one replica, so the replica rule is tested without one.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::stream;
pub use circle_config::StreamMismatch;

/// A setting of an existing stream that differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The stream's setting, as NATS names it: `num_replicas` or `duplicate_window`.
    pub setting: &'static str,
    /// The configuration key that sets it: `nats.replicas` or
    /// `nats.duplicate_window_secs`.
    pub key: &'static str,
    /// The stream's value (`3`, `120s`).
    pub on_stream: String,
    /// The configured value.
    pub configured: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} is {} on the stream but {} in the configuration ({})",
            self.setting, self.on_stream, self.configured, self.key
        )
    }
}

/// An existing stream refused because it differs from the configuration
/// (`nats.stream_mismatch = "refuse"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stream {stream} differs from the configuration: {}; edit the stream to the configured \
     values (nats stream edit {stream}), or set nats.stream_mismatch = \"warn\" to use it as \
     it is",
    listed(.differences)
)]
pub struct Mismatch {
    pub stream: String,
    pub differences: Vec<Difference>,
}

fn listed(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The settings of an existing stream (its `config`, as the server reports it) that
/// differ from the configured `replicas` and `duplicate_window`; empty when both match.
pub fn differences(
    config: &stream::Config,
    replicas: usize,
    duplicate_window: Duration,
) -> Vec<Difference> {
    let mut found = Vec::new();
    // The server keeps 0 ("the default") as 1.
    let on_stream = config.num_replicas.max(1);
    if on_stream != replicas.max(1) {
        found.push(Difference {
            setting: "num_replicas",
            key: "nats.replicas",
            on_stream: on_stream.to_string(),
            configured: replicas.to_string(),
        });
    }
    if config.duplicate_window != duplicate_window {
        found.push(Difference {
            setting: "duplicate_window",
            key: "nats.duplicate_window_secs",
            on_stream: seconds(config.duplicate_window),
            configured: seconds(duplicate_window),
        });
    }
    found
}

fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

/// What `policy` makes of the `differences` of the existing stream `stream`: none, or
/// `warn`, opens it (each difference logged as a warning) and answers with them;
/// `refuse` refuses it, naming them all.
pub fn judge(
    stream: &str,
    differences: Vec<Difference>,
    policy: StreamMismatch,
) -> Result<Vec<Difference>, Mismatch> {
    if differences.is_empty() {
        return Ok(differences);
    }
    match policy {
        StreamMismatch::Refuse => Err(Mismatch {
            stream: stream.to_owned(),
            differences,
        }),
        StreamMismatch::Warn => {
            for difference in &differences {
                tracing::warn!(
                    stream,
                    setting = difference.setting,
                    on_stream = %difference.on_stream,
                    configured = %difference.configured,
                    key = difference.key,
                    "the stream differs from the configuration; used as it is (nats.stream_mismatch = warn)"
                );
            }
            Ok(differences)
        }
    }
}

/// An existing stream (its server-reported `config`) against the configured
/// `replicas` and `duplicate_window`, as `policy` says: [`Opened::Existing`] with what
/// differs, or refused. What the event log and the audit streams both do on opening.
pub fn check_existing(
    stream: &str,
    config: &stream::Config,
    replicas: usize,
    duplicate_window: Duration,
    policy: StreamMismatch,
) -> Result<Opened, Mismatch> {
    let differences = judge(
        stream,
        differences(config, replicas, duplicate_window),
        policy,
    )?;
    Ok(Opened::Existing { differences })
}

/// What opening a stream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// It did not exist: it was created as configured.
    Created,
    /// It existed (and passed the checks); `differences` are the settings in which it
    /// differs from the configuration, used as they are because
    /// `nats.stream_mismatch` is `warn` (empty when it matches).
    Existing { differences: Vec<Difference> },
}

impl Opened {
    pub fn created(&self) -> bool {
        matches!(self, Self::Created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(replicas: usize, window: u64) -> stream::Config {
        stream::Config {
            name: "ENROLLMENT".into(),
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(window),
            ..Default::default()
        }
    }

    #[test]
    fn a_stream_as_configured_differs_in_nothing_and_opens_whatever_the_policy() {
        let config = stream_of(3, 120);
        assert!(differences(&config, 3, Duration::from_secs(120)).is_empty());
        for policy in [StreamMismatch::Refuse, StreamMismatch::Warn] {
            assert_eq!(judge("ENROLLMENT", Vec::new(), policy), Ok(Vec::new()));
        }
    }

    #[test]
    fn other_replicas_are_refused_naming_the_stream_the_setting_and_both_values() {
        let found = differences(&stream_of(1, 120), 3, Duration::from_secs(120));
        assert_eq!(
            found,
            vec![Difference {
                setting: "num_replicas",
                key: "nats.replicas",
                on_stream: "1".into(),
                configured: "3".into(),
            }]
        );
        let refused = judge("ENROLLMENT", found, StreamMismatch::Refuse).expect_err("refused");
        let message = refused.to_string();
        for part in [
            "stream ENROLLMENT",
            "num_replicas is 1 on the stream but 3 in the configuration (nats.replicas)",
            "nats.stream_mismatch",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        // More replicas on the stream than configured differ too.
        assert_eq!(
            differences(&stream_of(5, 120), 3, Duration::from_secs(120)).len(),
            1
        );
    }

    #[test]
    fn another_duplicate_window_is_refused_and_both_differences_are_named() {
        let found = differences(&stream_of(1, 120), 3, Duration::from_secs(60));
        assert_eq!(found.len(), 2, "{found:?}");
        let message = judge("SESSIONS_AUDIT", found, StreamMismatch::Refuse)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("stream SESSIONS_AUDIT"), "{message}");
        assert!(message.contains("num_replicas is 1"), "{message}");
        assert!(
            message.contains(
                "duplicate_window is 120s on the stream but 60s in the configuration \
                 (nats.duplicate_window_secs)"
            ),
            "{message}"
        );
    }

    #[test]
    fn warn_opens_a_differing_stream_and_answers_what_differs() {
        let found = differences(&stream_of(1, 120), 3, Duration::from_secs(120));
        let opened = judge("ENROLLMENT", found.clone(), StreamMismatch::Warn).expect("opens");
        assert_eq!(opened, found);
    }

    #[test]
    fn a_replica_count_of_zero_is_the_servers_one() {
        assert!(differences(&stream_of(0, 120), 1, Duration::from_secs(120)).is_empty());
    }
}
