//! The gRPC surface fuzzed over real sockets, against real NATS and PostgreSQL: every
//! RPC of the three services — enumerated from the descriptor set they serve for
//! reflection — is sent random bytes (truncated and overlong varints, wrong and
//! invalid wire types, huge length prefixes, deep groups, invalid UTF-8, oversize
//! bodies), messages made at random from its input descriptor (each field a random
//! value of its type: empty, very long, unicode and control characters, this
//! network's resource names, another network's and broken ones, integers at their
//! extremes, enums out of range, many repeated elements, nested messages), and
//! mutations of those; mostly as a network admin of the test's network, some as a
//! participant, without a token and with garbage for one.
//!
//! Every answer is one a caller can act on: never INTERNAL or UNKNOWN, never a broken
//! connection or backend (UNAVAILABLE — but READ_MODEL_BEHIND, a read that waited for a
//! write in vain —, CANCELLED) or a call left unanswered past its deadline; a
//! structurally valid message is never refused as malformed; a call without a valid
//! token is UNAUTHENTICATED whatever its bytes; an OK answer is a valid encoding of
//! the method's output. Afterwards every service answers its health check SERVING on
//! a new connection, and every projection has applied everything the services
//! accepted (none halted, no dead letters).
//!
//! Reproducible: each method's cases come from the seed (`CIRCLE_FUZZ_SEED`, decimal
//! or `0x…`; a fixed one by default) and the method's path, so the same seed sends the
//! same bytes; a failure names the seed, the method, the case and the request's bytes
//! in hex. `CIRCLE_FUZZ_CASES` sets the calls per method.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use circle_cli::ops::status::Health;
use prost::Message as _;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::support::{NETWORK, RawCodec, System};

const NOW: &str = "2026-11-20T18:00:00Z";
/// The seed when `CIRCLE_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x00c1_7c1e_f022_2026;
/// Calls per method when `CIRCLE_FUZZ_CASES` is not set.
const DEFAULT_CASES: u64 = 64;
/// The packages of the three services' APIs.
const PACKAGES: [&str; 3] = [
    "circle.enrollment.v1",
    "circle.sessions.v1",
    "circle.accountability.v1",
];
/// The deadline every call carries: the service answers within it.
const DEADLINE: Duration = Duration::from_secs(10);
/// How much longer the client waits before it calls a call unanswered.
const GRACE: Duration = Duration::from_secs(5);
/// How long a stream's first message is waited for before hanging up.
const FIRST_MESSAGE: Duration = Duration::from_millis(200);
/// How deep generated messages nest.
const MAX_DEPTH: usize = 4;
/// A generated message stops growing past this (the services take 256 KiB).
const MAX_GENERATED_BYTES: usize = 200_000;
/// A field number no message declares.
const UNKNOWN_FIELD: u32 = 1_000_000;
/// Codes that say the service failed, not the request (but `UNAVAILABLE` /
/// `READ_MODEL_BEHIND`, a read that waited for a write in vain: retry shortly).
const BROKEN: [Code; 7] = [
    Code::Internal,
    Code::Unknown,
    Code::Unavailable,
    Code::Cancelled,
    Code::DeadlineExceeded,
    Code::DataLoss,
    Code::Unimplemented,
];

/// Text fields get these, among random text.
const WORDS: &[&str] = &[
    "x",
    "North clinic",
    "America/Chicago",
    "UTC",
    "Etc/GMT+14",
    "Mars/Olympus_Mons",
    "process",
    "intensive-outpatient",
    "2026-11-24",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "+275760-09-13",
    "18:30",
    "24:00",
    "23:59:60",
    "-01:00",
    "2026-11-24T18:30:00Z",
    "1970-01-01T00:00:00Z",
    "sam@example.org",
    "+1 555 0100",
    "'; DROP TABLE clinics; --",
    "%",
    "_",
    "\\",
    "\"",
    "{}",
    "null",
    "*",
    "-",
    ".",
    "..",
    "/",
    "v1.",
    "v1.AAAA",
];
const WEIRD: &[&str] = &[
    "\0",
    "a\0b",
    "\u{1}\u{2}\u{1b}[31m",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{202e}gnp.exe",
    "\u{200b}",
    "\u{feff}",
    "é",
    "名字",
    "🎉👨‍👩‍👧",
    "\u{10ffff}",
    "\u{fffd}",
    "e\u{301}",
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "NaN",
    "0x10",
    " 1",
    "01",
    "+1",
];
/// Etags, page and consistency tokens, request ids.
const TOKENS: &[&str] = &[
    "W/\"1\"",
    "\"1\"",
    "AAAAAAAA",
    "eyJhbGciOiJub25lIn0",
    "////",
    "!!!!",
    "Zm9v",
    "bnVsbA==",
    "00000000-0000-0000-0000-000000000000",
    "0192f0c1-7e2a-7a3b-9c4d-5e6f7a8b9c0d",
];
const BROKEN_NAMES: &[&str] = &[
    "networks/x/participants/../",
    "networks/acme/participants/..",
    "networks/acme/clinics/north/groups/tuesday/../../..",
    "networks/acme",
    "networks/acme/",
    "networks//clinics/north",
    "/networks/acme/clinics/north",
    "networks/ACME/clinics/north",
    "networks/other/clinics/north",
    "networks/other/participants/sam",
    "networks/acme/participants/-sam",
    "networks/acme/participants/SAM",
    "networks/acme/participants/sam%2F..",
    "networks/acme/clinics/*",
    "networks/-",
    "networks/acme/staff/",
    "networks/acme/partnerships/",
    "clinics/north",
    "north",
    "networks/acme/clinics/north/groups/tuesday/sessions/",
    "networks/acme/clinics/north/groups/tuesday/memberships/ghost",
    "networks/acme/participants/ghost/goals/goal-1",
];
/// What a real name is made the parent of.
const CHILDREN: &[&str] = &[
    "sessions/x",
    "notes/shared",
    "goals/goal-1",
    "check-ins/check-in-1",
    "memberships/sam",
    "consents/consent-1",
    "participants/sam",
    "..",
    ".",
    "",
];

/// The protos' messages and enums by full name, and the services' methods.
struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
    methods: Vec<Method>,
}

struct Method {
    package: String,
    /// `circle.enrollment.v1.EnrollmentService`
    service: String,
    /// `/circle.enrollment.v1.EnrollmentService/CreateClinic`
    path: String,
    input: String,
    output: String,
    server_streaming: bool,
}

impl Schema {
    fn load() -> anyhow::Result<Self> {
        let set = FileDescriptorSet::decode(circle_proto::FILE_DESCRIPTOR_SET)?;
        let mut schema = Self {
            messages: HashMap::new(),
            enums: HashMap::new(),
            methods: Vec::new(),
        };
        for file in set.file {
            let package = file.package().to_owned();
            for message in file.message_type {
                schema.add_message(&package, message);
            }
            for declared in file.enum_type {
                schema
                    .enums
                    .insert(format!("{package}.{}", declared.name()), declared);
            }
            if !PACKAGES.contains(&package.as_str()) {
                continue;
            }
            for declared in file.service {
                let service = format!("{package}.{}", declared.name());
                for method in declared.method {
                    let path = format!("/{service}/{}", method.name());
                    anyhow::ensure!(
                        !method.client_streaming(),
                        "{path} streams requests, which this test does not send"
                    );
                    schema.methods.push(Method {
                        package: package.clone(),
                        service: service.clone(),
                        input: method.input_type().trim_start_matches('.').to_owned(),
                        output: method.output_type().trim_start_matches('.').to_owned(),
                        server_streaming: method.server_streaming(),
                        path,
                    });
                }
            }
        }
        Ok(schema)
    }

    fn add_message(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested.clone());
        }
        for declared in &message.enum_type {
            self.enums
                .insert(format!("{name}.{}", declared.name()), declared.clone());
        }
        self.messages.insert(name, message);
    }

    /// The services of `package` (their full names).
    fn services(&self, package: &str) -> BTreeSet<String> {
        self.methods
            .iter()
            .filter(|method| method.package == package)
            .map(|method| method.service.clone())
            .collect()
    }
}

fn field_number(field: &FieldDescriptorProto) -> u32 {
    u32::try_from(field.number()).unwrap_or(1)
}

/// The wire type a field's values are written with (unpacked).
fn wire_type(field: &FieldDescriptorProto) -> WireType {
    match field.r#type() {
        Type::Double | Type::Fixed64 | Type::Sfixed64 => WireType::SixtyFourBit,
        Type::Float | Type::Fixed32 | Type::Sfixed32 => WireType::ThirtyTwoBit,
        Type::String | Type::Bytes | Type::Message => WireType::LengthDelimited,
        Type::Group => WireType::StartGroup,
        Type::Int32
        | Type::Int64
        | Type::Uint32
        | Type::Uint64
        | Type::Sint32
        | Type::Sint64
        | Type::Bool
        | Type::Enum => WireType::Varint,
    }
}

/// Whether `bytes` are a valid encoding of `type_name`: every declared field of its
/// wire type, strings UTF-8, nested messages valid in turn.
fn check_encoding(
    schema: &Schema,
    type_name: &str,
    mut bytes: &[u8],
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err("nested too deep".into());
    }
    let message = schema.messages.get(type_name);
    while !bytes.is_empty() {
        let (number, wire) = decode_key(&mut bytes).map_err(|error| error.to_string())?;
        let body = match wire {
            WireType::Varint => {
                decode_varint(&mut bytes).map_err(|error| error.to_string())?;
                None
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let size = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                let (_, rest) = bytes.split_at_checked(size).ok_or("a truncated number")?;
                bytes = rest;
                None
            }
            WireType::LengthDelimited => {
                let length = decode_varint(&mut bytes).map_err(|error| error.to_string())?;
                let length = usize::try_from(length).map_err(|error| error.to_string())?;
                let (head, rest) = bytes.split_at_checked(length).ok_or("a truncated field")?;
                bytes = rest;
                Some(head)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(format!("a group (field {number})"));
            }
        };
        let Some(field) = message.and_then(|message| {
            message
                .field
                .iter()
                .find(|field| field_number(field) == number)
        }) else {
            continue;
        };
        let expected = wire_type(field);
        let packed = field.label() == Label::Repeated && wire == WireType::LengthDelimited;
        if wire != expected && !packed {
            return Err(format!(
                "field {} has wire type {wire:?}, not {expected:?}",
                field.name()
            ));
        }
        match (field.r#type(), body) {
            (Type::String, Some(text)) => {
                std::str::from_utf8(text)
                    .map_err(|_| format!("field {} is not UTF-8", field.name()))?;
            }
            (Type::Message, Some(inner)) => {
                check_encoding(
                    schema,
                    field.type_name().trim_start_matches('.'),
                    inner,
                    depth + 1,
                )
                .map_err(|error| format!("{}: {error}", field.name()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Participant,
    Nobody,
    Garbage,
}

/// The bearer tokens of the test's network admin and participant.
struct Tokens {
    admin: String,
    participant: String,
}

struct Case {
    kind: String,
    caller: Caller,
    authorization: Option<String>,
    body: Vec<u8>,
    /// A structurally valid encoding of the input.
    valid: bool,
}

/// Random requests of the protos' shapes, from one seeded generator.
struct Generator<'a> {
    schema: &'a Schema,
    /// Resource names that exist in the test's network.
    names: &'a [String],
    rng: StdRng,
}

impl Generator<'_> {
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            self.rng.random_range(0..bound)
        }
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.random_bool(probability)
    }

    /// One of `from`, which is not empty.
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        let at = self.below(from.len());
        from[at]
    }

    /// The `index`th call of `method`.
    fn case(&mut self, method: &Method, index: usize, tokens: &Tokens) -> Case {
        let (kind, body, caller, valid) = match index % 12 {
            0..=2 => {
                let (kind, body) = self.garbage(&method.input);
                (kind.to_owned(), body, Caller::Admin, false)
            }
            3..=7 => (
                "a generated message".to_owned(),
                self.message(&method.input, 0),
                Caller::Admin,
                true,
            ),
            8 | 9 => {
                let base = if self.chance(0.8) {
                    self.message(&method.input, 0)
                } else {
                    self.garbage(&method.input).1
                };
                (
                    "a mutated message".to_owned(),
                    self.mutated(base),
                    Caller::Admin,
                    false,
                )
            }
            10 => (
                "a generated message".to_owned(),
                self.message(&method.input, 0),
                Caller::Participant,
                true,
            ),
            _ => {
                let caller = if (index / 12).is_multiple_of(2) {
                    Caller::Nobody
                } else {
                    Caller::Garbage
                };
                (
                    "a generated message".to_owned(),
                    self.message(&method.input, 0),
                    caller,
                    true,
                )
            }
        };
        let authorization = match caller {
            Caller::Admin => Some(tokens.admin.clone()),
            Caller::Participant => Some(tokens.participant.clone()),
            Caller::Nobody => None,
            Caller::Garbage => Some(self.garbage_authorization(&tokens.admin)),
        };
        Case {
            kind,
            caller,
            authorization,
            body,
            valid,
        }
    }

    /// A structurally valid encoding of `type_name` with random contents.
    fn message(&mut self, type_name: &str, depth: usize) -> Vec<u8> {
        let schema = self.schema;
        if type_name == "google.protobuf.Timestamp" {
            return self.timestamp();
        }
        let Some(message) = schema.messages.get(type_name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for field in &message.field {
            if out.len() > MAX_GENERATED_BYTES || !self.chance(0.75) {
                continue;
            }
            let wire = wire_type(field);
            if wire == WireType::StartGroup {
                continue;
            }
            let number = field_number(field);
            let repeated = field.label() == Label::Repeated;
            let count = if repeated {
                self.count(depth)
            } else if self.chance(0.05) {
                2 // the last one counts (messages merge)
            } else {
                1
            };
            if repeated && wire != WireType::LengthDelimited && count > 0 && self.chance(0.5) {
                // Packed, as proto3 writes repeated numbers.
                let mut packed = Vec::new();
                for _ in 0..count {
                    self.number(field, &mut packed);
                }
                encode_key(number, WireType::LengthDelimited, &mut out);
                encode_varint(packed.len() as u64, &mut out);
                out.extend_from_slice(&packed);
                continue;
            }
            for _ in 0..count {
                if out.len() > MAX_GENERATED_BYTES {
                    break;
                }
                encode_key(number, wire, &mut out);
                if wire == WireType::LengthDelimited {
                    let payload = self.delimited(field, message, depth);
                    encode_varint(payload.len() as u64, &mut out);
                    out.extend_from_slice(&payload);
                } else {
                    self.number(field, &mut out);
                }
            }
        }
        if self.chance(0.1) {
            // A field a later release may add: skipped.
            encode_key(UNKNOWN_FIELD, WireType::Varint, &mut out);
            encode_varint(self.rng.random(), &mut out);
        }
        out
    }

    /// How many elements a repeated field gets: none, a few, many, very many.
    fn count(&mut self, depth: usize) -> usize {
        if depth > 0 {
            return self.below(4);
        }
        match self.below(10) {
            0 | 1 => 0,
            2..=6 => 1 + self.below(3),
            7 | 8 => 4 + self.below(40),
            _ => 100 + self.below(400),
        }
    }

    /// A value of a field written as a varint or fixed-size number.
    fn number(&mut self, field: &FieldDescriptorProto, out: &mut Vec<u8>) {
        match field.r#type() {
            Type::Int32 => encode_varint(i64::from(self.int32()) as u64, out),
            Type::Int64 => encode_varint(self.int64() as u64, out),
            Type::Uint32 => encode_varint(u64::from(self.uint32()), out),
            Type::Uint64 => encode_varint(self.uint64(), out),
            Type::Sint32 => {
                let value = self.int32();
                encode_varint(u64::from(((value << 1) ^ (value >> 31)) as u32), out);
            }
            Type::Sint64 => {
                let value = self.int64();
                encode_varint(((value << 1) ^ (value >> 63)) as u64, out);
            }
            Type::Bool => encode_varint(self.pick(&[0, 1, 1, 2, u64::MAX]), out),
            Type::Enum => {
                let value = self.enum_number(field.type_name());
                encode_varint(i64::from(value) as u64, out);
            }
            Type::Fixed32 => out.extend_from_slice(&self.uint32().to_le_bytes()),
            Type::Sfixed32 => out.extend_from_slice(&self.int32().to_le_bytes()),
            Type::Fixed64 => out.extend_from_slice(&self.uint64().to_le_bytes()),
            Type::Sfixed64 => out.extend_from_slice(&self.int64().to_le_bytes()),
            Type::Float => {
                let value = self.pick(&[
                    0.0f32,
                    -0.0,
                    1.5,
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::MAX,
                    f32::MIN_POSITIVE,
                ]);
                out.extend_from_slice(&value.to_le_bytes());
            }
            Type::Double => {
                let value = self.pick(&[
                    0.0f64,
                    -0.0,
                    1.5,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::MAX,
                    f64::MIN_POSITIVE,
                ]);
                out.extend_from_slice(&value.to_le_bytes());
            }
            Type::String | Type::Bytes | Type::Message | Type::Group => {}
        }
    }

    /// The payload of a length-delimited field of `parent`.
    fn delimited(
        &mut self,
        field: &FieldDescriptorProto,
        parent: &DescriptorProto,
        depth: usize,
    ) -> Vec<u8> {
        match field.r#type() {
            Type::String => self.text(field.name()).into_bytes(),
            Type::Bytes => self.bytes(64),
            _ => {
                let type_name = field.type_name().trim_start_matches('.');
                if type_name == "google.protobuf.FieldMask" {
                    self.field_mask(parent)
                } else if depth >= MAX_DEPTH {
                    Vec::new()
                } else {
                    self.message(type_name, depth + 1)
                }
            }
        }
    }

    fn int64(&mut self) -> i64 {
        match self.below(8) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            3 => 0,
            4 => self.rng.random_range(1..100),
            5 => self.rng.random_range(-100..0),
            6 => self.rng.random_range(1_790_000_000..1_800_000_000),
            _ => self.rng.random(),
        }
    }

    fn int32(&mut self) -> i32 {
        match self.below(7) {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => -1,
            3 => 0,
            4 => self.rng.random_range(1..100),
            5 => self.rng.random_range(-100..0),
            _ => self.rng.random(),
        }
    }

    fn uint64(&mut self) -> u64 {
        match self.below(5) {
            0 => 0,
            1 => u64::MAX,
            2 => self.rng.random_range(1..100),
            3 => u64::from(u32::MAX) + 1,
            _ => self.rng.random(),
        }
    }

    fn uint32(&mut self) -> u32 {
        match self.below(6) {
            0 => 0,
            1 => u32::MAX,
            2 => self.rng.random_range(1..100),
            3 => 24 * 60,
            4 => 1 << 31,
            _ => self.rng.random(),
        }
    }

    /// A declared value of the enum, or one it does not declare.
    fn enum_number(&mut self, type_name: &str) -> i32 {
        let schema = self.schema;
        let declared: Vec<i32> = schema
            .enums
            .get(type_name.trim_start_matches('.'))
            .map(|declared| declared.value.iter().map(|value| value.number()).collect())
            .unwrap_or_default();
        if !declared.is_empty() && self.chance(0.7) {
            let at = self.below(declared.len());
            declared[at]
        } else {
            let past = declared
                .iter()
                .max()
                .copied()
                .unwrap_or(0)
                .saturating_add(1);
            self.pick(&[-1, i32::MIN, i32::MAX, past, 1000])
        }
    }

    /// A `google.protobuf.Timestamp`, often one no calendar holds.
    fn timestamp(&mut self) -> Vec<u8> {
        let seconds: i64 = match self.below(8) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -62_135_596_800, // 0001-01-01
            3 => 253_402_300_799, // 9999-12-31T23:59:59
            4 => 253_402_300_800, // 10000-01-01
            5 => -1,
            6 => self.rng.random_range(1_790_000_000..1_800_000_000),
            _ => self.rng.random(),
        };
        let nanos: i32 = match self.below(6) {
            0 => 0,
            1 => -1,
            2 => 999_999_999,
            3 => 1_000_000_000,
            4 => i32::MAX,
            _ => self.rng.random_range(0..1_000_000_000),
        };
        let mut out = Vec::new();
        if self.chance(0.9) {
            encode_key(1, WireType::Varint, &mut out);
            encode_varint(seconds as u64, &mut out);
        }
        if self.chance(0.7) {
            encode_key(2, WireType::Varint, &mut out);
            encode_varint(i64::from(nanos) as u64, &mut out);
        }
        out
    }

    /// A `google.protobuf.FieldMask` of `parent`: paths of its messages' fields, and
    /// some of nothing.
    fn field_mask(&mut self, parent: &DescriptorProto) -> Vec<u8> {
        let schema = self.schema;
        let mut paths: Vec<String> = ["*", "", "name", "no_such_field", "a.b.c", "etag"]
            .iter()
            .map(|path| (*path).to_owned())
            .collect();
        for sibling in &parent.field {
            if let Some(message) = schema
                .messages
                .get(sibling.type_name().trim_start_matches('.'))
            {
                for field in &message.field {
                    paths.push(field.name().to_owned());
                    paths.push(format!("{}.{}", sibling.name(), field.name()));
                }
            }
        }
        let mut out = Vec::new();
        for _ in 0..self.below(6) {
            let at = self.below(paths.len());
            let path = &paths[at];
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(path.len() as u64, &mut out);
            out.extend_from_slice(path.as_bytes());
        }
        out
    }

    /// A value of a string field: resource names for fields that name one, else words,
    /// numbers, tokens, ids, long, odd or random text.
    fn text(&mut self, field: &str) -> String {
        const NAMING: [&str; 14] = [
            "name",
            "parent",
            "group",
            "participant",
            "session",
            "clinic",
            "partner",
            "goal",
            "check_in",
            "membership",
            "note",
            "invitee",
            "staff",
            "consent",
        ];
        let naming = NAMING.iter().any(|word| field.contains(word));
        match self.below(if naming { 16 } else { 10 }) {
            0 => String::new(),
            1 => self.pick(WORDS).to_owned(),
            2 => self.pick(WEIRD).to_owned(),
            3 => self.long(),
            4 => self.random_text(),
            5 => self.pick(NUMBERS).to_owned(),
            6 => self.pick(TOKENS).to_owned(),
            7 => self.id(),
            8 => {
                let name = self.real_name();
                name.rsplit('/').next().unwrap_or_default().to_owned()
            }
            9 => {
                let word = self.pick(WORDS);
                let odd = self.pick(WEIRD);
                format!("{word}{odd}")
            }
            _ => self.name(),
        }
    }

    fn long(&mut self) -> String {
        let unit = self.pick(&["x", "é", "名", "🎉", "a/", "\0", " "]);
        let count = if self.chance(0.05) {
            60_000
        } else {
            64 + self.below(5_000)
        };
        unit.repeat(count)
    }

    fn random_text(&mut self) -> String {
        let length = self.below(40);
        (0..length)
            .map(|_| match self.below(4) {
                0 => char::from(self.rng.random_range(0x20u8..0x7f)),
                1 => char::from(self.rng.random_range(0u8..0x20)),
                _ => char::from_u32(self.rng.random_range(0..0x11_0000)).unwrap_or('\u{fffd}'),
            })
            .collect()
    }

    /// Something like an id: 1–64 of `[a-z0-9-]`.
    fn id(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let length = match self.below(4) {
            0 => 63,
            1 => 64,
            _ => 1 + self.below(20),
        };
        (0..length)
            .map(|_| char::from(ALPHABET[self.below(ALPHABET.len())]))
            .collect()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; self.below(max + 1)];
        self.rng.fill(bytes.as_mut_slice());
        bytes
    }

    fn real_name(&mut self) -> String {
        let names = self.names;
        let at = self.below(names.len());
        names.get(at).cloned().unwrap_or_default()
    }

    /// A resource name: one that exists, a child of one, a damaged one, a broken one.
    fn name(&mut self) -> String {
        let real = self.real_name();
        match self.below(8) {
            0..=2 => real,
            3 | 4 => self.pick(BROKEN_NAMES).to_owned(),
            5 => self.damaged(real),
            _ => {
                let child = self.pick(CHILDREN);
                format!("{real}/{child}")
            }
        }
    }

    fn damaged(&mut self, name: String) -> String {
        match self.below(8) {
            0 => name.replacen(NETWORK, "other", 1),
            1 => name.to_uppercase(),
            2 => format!("{name}/"),
            3 => format!("{name}-"),
            4 => {
                let cut = self.below(name.len());
                name.get(..cut).unwrap_or_default().to_owned()
            }
            5 => format!("{name}\0"),
            6 => match name.rsplit_once('/') {
                Some((head, _)) => format!("{head}/{}", "a".repeat(64)),
                None => name,
            },
            _ => name.replace('/', "//"),
        }
    }

    /// Bytes that are not a valid encoding of `input` (or only just are), and what
    /// they are.
    fn garbage(&mut self, input: &str) -> (&'static str, Vec<u8>) {
        let schema = self.schema;
        let fields: &[FieldDescriptorProto] = schema
            .messages
            .get(input)
            .map(|message| message.field.as_slice())
            .unwrap_or_default();
        let field = if fields.is_empty() {
            None
        } else {
            Some(&fields[self.below(fields.len())])
        };
        let number = field.map_or(1, field_number);
        let mut out = Vec::new();
        let kind = match self.below(14) {
            0 => {
                out = self.bytes(64);
                "random bytes"
            }
            1 => {
                encode_key(number, WireType::Varint, &mut out);
                out.extend_from_slice(&[0xff, 0xff, 0xff]);
                "a truncated varint"
            }
            2 => {
                encode_key(number, WireType::Varint, &mut out);
                out.extend_from_slice(&[0xff; 10]);
                out.push(0x01);
                "an eleven-byte varint"
            }
            3 => {
                encode_key(number, WireType::LengthDelimited, &mut out);
                let length = self.pick(&[u64::MAX, u64::from(u32::MAX), 1 << 40, 300_000]);
                encode_varint(length, &mut out);
                out.extend_from_slice(b"abc");
                "a huge length prefix"
            }
            4 => {
                encode_key(number, WireType::LengthDelimited, &mut out);
                encode_varint(5, &mut out);
                out.push(b'a');
                "a truncated field"
            }
            5 => {
                let wrong = match field.map(wire_type) {
                    Some(WireType::LengthDelimited) => WireType::Varint,
                    Some(WireType::Varint) => WireType::ThirtyTwoBit,
                    _ => WireType::LengthDelimited,
                };
                encode_key(number, wrong, &mut out);
                match wrong {
                    WireType::Varint => out.push(1),
                    WireType::ThirtyTwoBit => out.extend_from_slice(&[1, 0, 0, 0]),
                    _ => out.extend_from_slice(&[1, b'x']),
                }
                "a wrong wire type"
            }
            6 => {
                let wire = self.pick(&[6u64, 7]);
                encode_varint((u64::from(number) << 3) | wire, &mut out);
                out.extend_from_slice(&[1, 2, 3]);
                "an invalid wire type"
            }
            7 => {
                out.extend_from_slice(self.pick(&[&[0x00u8, 0x01][..], &[0x02, 0x01, b'x'][..]]));
                "field number zero"
            }
            8 => {
                let key = self.pick(&[(1u64 << 29) << 3, (1u64 << 32) << 3, u64::MAX]);
                encode_varint(key, &mut out);
                out.push(1);
                "a field number out of range"
            }
            9 => {
                let depth = 50 + self.below(200);
                for _ in 0..depth {
                    encode_key(UNKNOWN_FIELD, WireType::StartGroup, &mut out);
                }
                for _ in 0..depth {
                    encode_key(UNKNOWN_FIELD, WireType::EndGroup, &mut out);
                }
                "deeply nested groups"
            }
            10 => {
                encode_key(UNKNOWN_FIELD, WireType::EndGroup, &mut out);
                "an unmatched end of group"
            }
            11 => {
                let text = fields
                    .iter()
                    .find(|field| field.r#type() == Type::String)
                    .map_or(1, field_number);
                encode_key(text, WireType::LengthDelimited, &mut out);
                encode_varint(2, &mut out);
                out.extend_from_slice(&[0xc3, 0x28]);
                "invalid UTF-8 in a string"
            }
            12 => {
                out = self.message(input, 0);
                out.extend(self.bytes(8));
                "a valid message with noise after it"
            }
            _ if self.chance(0.2) => {
                out = vec![0x0a; 300_000];
                "an oversize body"
            }
            _ => {
                out = self.bytes(4096);
                "many random bytes"
            }
        };
        (kind, out)
    }

    /// `bytes` with up to four edits: a bit flipped, a byte set, inserted or deleted,
    /// the rest cut off, a part repeated, a long varint inserted, two bytes swapped.
    fn mutated(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..=self.below(4) {
            let len = bytes.len();
            match self.below(8) {
                0 if len > 0 => {
                    let at = self.below(len);
                    bytes[at] ^= 1u8 << self.below(8);
                }
                1 if len > 0 => {
                    let at = self.below(len);
                    bytes[at] = self.rng.random();
                }
                2 => {
                    let at = self.below(len + 1);
                    let byte = self.rng.random();
                    bytes.insert(at, byte);
                }
                3 if len > 0 => {
                    let at = self.below(len);
                    let _ = bytes.remove(at);
                }
                4 => {
                    let at = self.below(len + 1);
                    bytes.truncate(at);
                }
                5 if len > 0 => {
                    let start = self.below(len);
                    let end = start + 1 + self.below(len - start);
                    let part = bytes[start..end].to_vec();
                    let at = self.below(len + 1);
                    let tail = bytes.split_off(at);
                    bytes.extend_from_slice(&part);
                    bytes.extend_from_slice(&tail);
                }
                6 => {
                    let at = self.below(len + 1);
                    let tail = bytes.split_off(at);
                    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
                    bytes.extend_from_slice(&tail);
                }
                _ if len > 1 => {
                    let (first, second) = (self.below(len), self.below(len));
                    bytes.swap(first, second);
                }
                _ => {
                    let byte = self.rng.random();
                    bytes.push(byte);
                }
            }
        }
        bytes
    }

    /// An `authorization` value that is not a valid bearer token (visible ASCII, so
    /// it can be sent).
    fn garbage_authorization(&mut self, good: &str) -> String {
        let token = good.trim_start_matches("Bearer ");
        match self.below(6) {
            0 => "Bearer".to_owned(),
            1 => format!("Bearer {}", self.printable(200)),
            2 => {
                let cut = self.below(token.len());
                format!("Bearer {}", token.get(..cut).unwrap_or_default())
            }
            3 => format!("Basic {token}"),
            4 => format!("Bearer {token}x"),
            _ => {
                let header = self.printable(40);
                let claims = self.printable(80);
                let signature = self.printable(40);
                format!("Bearer {header}.{claims}.{signature}")
            }
        }
    }

    fn printable(&mut self, max: usize) -> String {
        let length = self.below(max + 1);
        (0..length)
            .map(|_| char::from(self.rng.random_range(0x21u8..0x7f)))
            .collect()
    }
}

/// What a call came to.
enum Outcome {
    /// OK: the answer (a stream's first message, if one came in time).
    Answered(Option<Bytes>),
    Refused(tonic::Status),
    /// Nothing within the deadline and the grace after it.
    Unanswered,
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answered(Some(bytes)) => format!("OK ({} bytes)", bytes.len()),
        Outcome::Answered(None) => "OK".to_owned(),
        Outcome::Refused(status) => {
            let reason = status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default();
            format!("{:?} {reason} {:?}", status.code(), status.message())
        }
        Outcome::Unanswered => format!("nothing within {:?}", DEADLINE + GRACE),
    }
}

fn label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answered(_) => "OK".to_owned(),
        Outcome::Refused(status) => format!("{:?}", status.code()),
        Outcome::Unanswered => "unanswered".to_owned(),
    }
}

/// What is wrong with `outcome` as the answer to `case`, if anything.
fn fault(schema: &Schema, method: &Method, case: &Case, outcome: &Outcome) -> Option<String> {
    if matches!(case.caller, Caller::Nobody | Caller::Garbage) {
        let oversize = case.body.len() > circle_grpc::limits::MAX_REQUEST_BYTES;
        return match outcome {
            Outcome::Refused(status) if status.code() == Code::Unauthenticated => None,
            Outcome::Refused(status) if oversize && status.code() == Code::ResourceExhausted => {
                None
            }
            other => Some(format!(
                "without a valid token, answered {}",
                describe(other)
            )),
        };
    }
    match outcome {
        Outcome::Unanswered => Some(describe(outcome)),
        Outcome::Answered(None) => None,
        Outcome::Answered(Some(bytes)) => check_encoding(schema, &method.output, bytes, 0)
            .err()
            .map(|error| {
                format!(
                    "answered OK with bytes that are not a {}: {error}",
                    method.output
                )
            }),
        Outcome::Refused(status) => {
            let reason = status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default();
            // A read model that has not caught up with a write within the read's wait
            // says so (retry shortly): under this load, an answer the caller can act on.
            let behind = status.code() == Code::Unavailable && reason == "READ_MODEL_BEHIND";
            if BROKEN.contains(&status.code()) && !behind {
                return Some(format!("answered {}", describe(outcome)));
            }
            let malformed = reason == circle_proto::codec::MALFORMED_REQUEST;
            (case.valid && malformed).then(|| {
                format!(
                    "refused a valid encoding as malformed: {}",
                    describe(outcome)
                )
            })
        }
    }
}

/// Sends `case` to `method` and waits for the answer (a stream's first message, or
/// its end, for a short while).
async fn send(
    grpc: &tonic::client::Grpc<Channel>,
    method: &Method,
    path: PathAndQuery,
    case: &Case,
) -> anyhow::Result<Outcome> {
    let mut request = tonic::Request::new(Bytes::from(case.body.clone()));
    request.set_timeout(DEADLINE);
    if let Some(value) = &case.authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse()?);
    }
    let call = exchange(grpc.clone(), request, path, method.server_streaming);
    Ok(match tokio::time::timeout(DEADLINE + GRACE, call).await {
        Ok(Ok(answer)) => Outcome::Answered(answer),
        Ok(Err(status)) => Outcome::Refused(status),
        Err(_) => Outcome::Unanswered,
    })
}

async fn exchange(
    mut grpc: tonic::client::Grpc<Channel>,
    request: tonic::Request<Bytes>,
    path: PathAndQuery,
    server_streaming: bool,
) -> Result<Option<Bytes>, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(format!("the connection failed: {error}")))?;
    if server_streaming {
        let mut stream = grpc
            .server_streaming(request, path, RawCodec)
            .await?
            .into_inner();
        match tokio::time::timeout(FIRST_MESSAGE, stream.message()).await {
            Ok(first) => first,
            // Nothing to say yet: hang up.
            Err(_) => Ok(None),
        }
    } else {
        grpc.unary(request, path, RawCodec)
            .await
            .map(|response| Some(response.into_inner()))
    }
}

#[derive(Default)]
struct Report {
    calls: usize,
    /// Answers by code.
    tally: BTreeMap<String, usize>,
    faults: Vec<String>,
}

/// Every method of `package`, `cases` calls each, one after another on one connection.
async fn fuzz_service(
    schema: &Schema,
    package: &str,
    address: SocketAddr,
    names: &[String],
    tokens: &Tokens,
    seed: u64,
    cases: usize,
) -> anyhow::Result<Report> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let grpc = tonic::client::Grpc::new(channel);
    let mut report = Report::default();
    for method in schema
        .methods
        .iter()
        .filter(|method| method.package == package)
    {
        let path: PathAndQuery = method.path.parse()?;
        let mut generator = Generator {
            schema,
            names,
            rng: StdRng::seed_from_u64(seed ^ fnv1a(&method.path)),
        };
        for index in 0..cases {
            let case = generator.case(method, index, tokens);
            let outcome = send(&grpc, method, path.clone(), &case).await?;
            report.calls += 1;
            *report.tally.entry(label(&outcome)).or_default() += 1;
            if let Some(fault) = fault(schema, method, &case, &outcome) {
                report.faults.push(format!(
                    "{} case {index} ({} as {:?}): {fault}\n    request, {} bytes: {}",
                    method.path,
                    case.kind,
                    case.caller,
                    case.body.len(),
                    hex(&case.body)
                ));
            }
        }
    }
    Ok(report)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    const SHOWN: usize = 512;
    let mut shown = String::with_capacity(2 * SHOWN);
    for byte in bytes.iter().take(SHOWN) {
        let _ = write!(shown, "{byte:02x}");
    }
    if bytes.len() > SHOWN {
        format!("{shown}… ({} bytes more)", bytes.len() - SHOWN)
    } else {
        shown
    }
}

/// A number from the environment (decimal or `0x` hex), or `default`.
fn setting(name: &str, default: u64) -> anyhow::Result<u64> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(digits) => u64::from_str_radix(digits, 16),
        None => text.parse(),
    };
    parsed.map_err(|error| anyhow::anyhow!("{name}={text:?}: {error}"))
}

/// A clinic, a weekly group, a participant enrolled in it: the names the generated
/// requests use (with their sessions', notes', goals' and so on, which may not exist).
async fn seed_network(system: &mut System) -> anyhow::Result<Vec<String>> {
    let clinic = system.clinic("north").await?;
    let group = system
        .weekly_group(&clinic, "tuesday", "2026-11-01")
        .await?;
    let participant = system.participant(&clinic, "sam", "Sam", "Rivera").await?;
    anyhow::ensure!(
        !clinic.is_empty() && !group.is_empty() && !participant.is_empty(),
        "the seed answered without names"
    );
    system.enroll(&group, &participant).await?;
    let session = system.session_on(&group, "2026-11-24")?;
    Ok(vec![
        format!("networks/{NETWORK}"),
        format!("{group}/memberships/sam"),
        format!("{session}/notes/shared"),
        format!("{session}/notes/sam"),
        format!("{participant}/consents/consent-1"),
        format!("{participant}/goals/goal-1"),
        format!("{participant}/check-ins/check-in-1"),
        format!("networks/{NETWORK}/partnerships/partnership-1"),
        format!("networks/{NETWORK}/staff/staff-1"),
        clinic,
        group,
        participant,
        session,
    ])
}

/// Whether `service` at `address` answers its health check SERVING, on a new
/// connection.
async fn serving(address: SocketAddr, service: &str) -> anyhow::Result<bool> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    Ok(answer.status == ServingStatus::Serving as i32)
}

/// The projections that have not applied everything the services accepted, once none
/// is still catching up (at most 30 s).
async fn unapplied(system: &System) -> anyhow::Result<Vec<String>> {
    let ops = circle_cli::ops::Ops::connect(&system.env.config).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = circle_cli::ops::status::status(&ops, 0).await?;
        let settled = status
            .projections
            .iter()
            .all(|projection| projection.health != Health::Behind);
        if settled || Instant::now() >= deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anyhow::ensure!(!status.projections.is_empty(), "no projections found");
    Ok(status
        .projections
        .iter()
        .filter(|projection| projection.health != Health::CaughtUp)
        .map(|projection| {
            format!(
                "projection {} is {} (checkpoint {}, lag {:?}, {} dead letters)",
                projection.projection,
                projection.health.as_str(),
                projection.checkpoint,
                projection.lag,
                projection.dead_letters
            )
        })
        .collect())
}

#[tokio::test]
async fn every_rpc_answers_random_and_malformed_requests_as_a_refusal_or_an_answer()
-> anyhow::Result<()> {
    let seed = setting("CIRCLE_FUZZ_SEED", DEFAULT_SEED)?;
    let cases = usize::try_from(setting("CIRCLE_FUZZ_CASES", DEFAULT_CASES)?)?;
    let schema = Schema::load()?;
    for package in PACKAGES {
        anyhow::ensure!(
            !schema.services(package).is_empty(),
            "the descriptor set has no service of {package}"
        );
    }
    let mut system = System::start_at(NOW).await?;
    let names = seed_network(&mut system).await?;
    let tokens = Tokens {
        admin: format!(
            "Bearer {}",
            circle_testkit::token(NETWORK, "admin-1", &["network-admin"], &["north"])
        ),
        participant: format!(
            "Bearer {}",
            circle_testkit::token(NETWORK, "sam", &["participant"], &[])
        ),
    };
    eprintln!(
        "fuzzing {} RPCs, {cases} calls each, seed {seed:#x} (CIRCLE_FUZZ_SEED={seed} repeats it)",
        schema.methods.len()
    );
    let started = Instant::now();
    let addresses = system.addresses.clone();
    let ports = [
        addresses.enrollment,
        addresses.sessions,
        addresses.accountability,
    ];
    // The services side by side, each one call at a time.
    let (enrollment, sessions, accountability) = tokio::try_join!(
        fuzz_service(&schema, PACKAGES[0], ports[0], &names, &tokens, seed, cases),
        fuzz_service(&schema, PACKAGES[1], ports[1], &names, &tokens, seed, cases),
        fuzz_service(&schema, PACKAGES[2], ports[2], &names, &tokens, seed, cases),
    )?;
    let mut faults = Vec::new();
    for (package, report) in PACKAGES.iter().zip([enrollment, sessions, accountability]) {
        eprintln!(
            "{package}: {} calls, answered {:?}",
            report.calls, report.tally
        );
        faults.extend(report.faults);
    }
    eprintln!("fuzzed in {:?}", started.elapsed());

    // Still up, and ready.
    for (package, address) in PACKAGES.iter().zip(ports) {
        for service in schema.services(package) {
            match serving(address, &service).await {
                Ok(true) => {}
                Ok(false) => faults.push(format!("{service} is not SERVING after the fuzz")),
                Err(error) => faults.push(format!(
                    "{service} did not answer its health check after the fuzz: {error:#}"
                )),
            }
        }
    }
    // What the services accepted, every read model applied.
    faults.extend(unapplied(&system).await?);

    assert!(
        faults.is_empty(),
        "seed {seed:#x} (CIRCLE_FUZZ_SEED={seed} repeats it): {} faults, the first {}:\n{}",
        faults.len(),
        faults.len().min(25),
        faults
            .iter()
            .take(25)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
