//! Strategies the decoders' property tests share (feature `fuzzing`, enabled by the
//! crates' dev-dependencies only): event type names, and damage done to a valid
//! encoding.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::wire;

/// One of `known` (most often), a near miss of one, or arbitrary text.
pub fn event_type(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(known.clone()),
        1 => proptest::sample::select(known).prop_map(|name| format!("{name}2")),
        1 => ".{0,60}",
    ]
}

/// Up to seven edits of an encoding: (what, where, which byte), for [`edited`].
pub fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    vec((0u8..5, any::<usize>(), any::<u8>()), 1..8)
}

/// `bytes` with a bit flipped, a byte set, inserted or deleted, or the rest cut off,
/// for each edit.
pub fn edited(mut bytes: Vec<u8>, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, byte) in edits {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] ^= 1 << (byte % 8),
            1 if len > 0 => bytes[at % len] = byte,
            2 => bytes.insert(at % (len + 1), byte),
            3 if len > 0 => {
                let _ = bytes.remove(at % len);
            }
            _ => bytes.truncate(at % (len + 1)),
        }
    }
    bytes
}

/// An event of the envelope with this type and payload.
pub fn wire_event(event_type: String, payload: Vec<u8>) -> wire::Event {
    wire::Event {
        event_id: "e".into(),
        event_type,
        schema_version: 1,
        occurred_at: None,
        payload,
    }
}

/// A commit of these events at this time, as read back from the stream.
pub fn stored(
    subject: &str,
    events: Vec<wire::Event>,
    committed_at: Option<prost_types::Timestamp>,
) -> crate::StoredCommit {
    crate::StoredCommit {
        sequence: 1,
        subject: subject.to_owned(),
        commit: wire::Commit {
            events,
            committed_at,
            ..Default::default()
        },
        headers: Default::default(),
    }
}

/// The property tests every service's codec shares, as a module `$name` of the
/// calling crate's tests: its `decode` and `decode_commit` never panic on arbitrary
/// payloads under known, near-miss or arbitrary type names, nor on valid encodings
/// damaged (flipped, set, inserted, deleted, cut off) under their own type or another,
/// nor on commits of them (with any commit time, where the codec reads one:
/// `commit_time`); a valid encoding still decodes with fields a later release adds; a
/// commit of valid events decodes to them in order (and a commit time chrono can hold
/// is read back). `events` gives one event of each kind; `subject` is a commit's.
#[macro_export]
macro_rules! codec_properties {
    (
        $name:ident,
        event: $event:ty,
        events: $events:path,
        encode: $encode:path,
        decode: $decode:path,
        decode_commit: $decode_commit:path,
        subject: $subject:expr
        $(, commit_time: $commit_time:path)?
        $(,)?
    ) => {
        mod $name {
            use ::proptest::collection::vec;
            use ::proptest::prelude::*;
            use ::proptest::sample::Index;
            use ::prost::encoding::{WireType, encode_key, encode_varint};
            use $crate::fuzzing::{edited, edits, stored, wire_event};
            use $crate::wire;

            fn event_type() -> impl Strategy<Value = String> {
                let known: Vec<String> = $events()
                    .iter()
                    .map(|event| $encode(event).event_type)
                    .collect();
                $crate::fuzzing::event_type(known)
            }

            /// One of the events, encoded and damaged (under its own type, or another).
            fn damaged(
                index: &Index,
                other_type: String,
                keep_type: bool,
                edits: &[(u8, usize, u8)],
            ) -> wire::Event {
                let events = $events();
                let encoded = $encode(index.get(events.as_slice()));
                let event_type = if keep_type { encoded.event_type } else { other_type };
                wire_event(event_type, edited(encoded.payload, edits))
            }

            proptest! {
                #[test]
                fn decoding_arbitrary_bytes_never_panics(
                    event_type in event_type(),
                    payload in vec(any::<u8>(), 0..256),
                ) {
                    let _ = $decode(&wire_event(event_type, payload));
                }

                #[test]
                fn decoding_damaged_encodings_never_panics(
                    index in any::<Index>(),
                    other_type in event_type(),
                    keep_type in any::<bool>(),
                    edits in edits(),
                ) {
                    let _ = $decode(&damaged(&index, other_type, keep_type, &edits));
                }

                #[test]
                fn decoding_commits_of_damaged_events_at_any_time_never_panics(
                    events in vec((any::<Index>(), event_type(), any::<bool>(), edits()), 0..5),
                    time in ::proptest::option::of((any::<i64>(), any::<i32>())),
                ) {
                    let events = events
                        .into_iter()
                        .map(|(index, other_type, keep_type, edits)| {
                            damaged(&index, other_type, keep_type, &edits)
                        })
                        .collect();
                    let committed_at =
                        time.map(|(seconds, nanos)| ::prost_types::Timestamp { seconds, nanos });
                    let commit = stored($subject, events, committed_at);
                    let _ = $decode_commit(&commit);
                    $( let _ = $commit_time(&commit); )?
                }

                #[test]
                fn fields_a_later_release_adds_are_skipped(
                    index in any::<Index>(),
                    number in 100u32..10_000,
                    varint in any::<u64>(),
                    bytes in vec(any::<u8>(), 0..32),
                ) {
                    let events = $events();
                    let event = index.get(events.as_slice());
                    let mut encoded = $encode(event);
                    encode_key(number, WireType::Varint, &mut encoded.payload);
                    encode_varint(varint, &mut encoded.payload);
                    encode_key(number + 1, WireType::LengthDelimited, &mut encoded.payload);
                    encode_varint(bytes.len() as u64, &mut encoded.payload);
                    encoded.payload.extend_from_slice(&bytes);
                    let decoded = $decode(&wire_event(encoded.event_type, encoded.payload));
                    prop_assert_eq!(decoded.as_ref().ok(), Some(event), "{:?}", decoded);
                }

                #[test]
                fn a_commit_of_valid_events_decodes_to_them_in_order(
                    indexes in vec(any::<Index>(), 0..6),
                ) {
                    let all = $events();
                    let chosen: Vec<$event> =
                        indexes.iter().map(|index| index.get(all.as_slice()).clone()).collect();
                    let events = chosen
                        .iter()
                        .map(|event| {
                            let encoded = $encode(event);
                            wire_event(encoded.event_type, encoded.payload)
                        })
                        .collect();
                    let decoded = $decode_commit(&stored($subject, events, None));
                    prop_assert_eq!(decoded.ok(), Some(chosen));
                }

                $(
                #[test]
                fn a_commit_time_chrono_can_hold_is_read_back(
                    seconds in -62_135_596_800i64..253_402_300_800,
                    nanos in 0i32..1_000_000_000,
                ) {
                    let commit = stored(
                        $subject,
                        Vec::new(),
                        Some(::prost_types::Timestamp { seconds, nanos }),
                    );
                    let time = $commit_time(&commit);
                    prop_assert_eq!(
                        time.as_ref()
                            .ok()
                            .map(|time| (time.timestamp(), time.timestamp_subsec_nanos())),
                        Some((seconds, nanos as u32)),
                        "{:?}",
                        time
                    );
                }
                )?
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_edit_does_what_it_says() {
        let bytes = vec![0u8, 1, 2, 3];
        assert_eq!(edited(bytes.clone(), &[(0, 1, 0)]), vec![0, 0, 2, 3]);
        assert_eq!(edited(bytes.clone(), &[(1, 2, 9)]), vec![0, 1, 9, 3]);
        assert_eq!(edited(bytes.clone(), &[(2, 4, 7)]), vec![0, 1, 2, 3, 7]);
        assert_eq!(edited(bytes.clone(), &[(3, 0, 0)]), vec![1, 2, 3]);
        assert_eq!(edited(bytes, &[(4, 2, 0)]), vec![0, 1]);
        assert_eq!(
            edited(Vec::new(), &[(0, 5, 1), (3, 1, 0)]),
            Vec::<u8>::new()
        );
    }
}
