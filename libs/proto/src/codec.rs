//! The codec of every generated service and client: prost, except that a message
//! that is not valid protobuf (invalid UTF-8 in a string, a truncated field, a wrong
//! wire type, …) is refused with `INVALID_ARGUMENT` and a `google.rpc.ErrorInfo`
//! (reason `MALFORMED_REQUEST`, the domain of the message's service) instead of
//! tonic-prost's `INTERNAL`: the sender can never succeed with those bytes, and
//! `INTERNAL` is for our bugs. `build.rs` names this codec (`codec_path`).
//!
//! A client decoding a malformed *answer* gets the same status; Circle's servers
//! answer with messages prost encoded, so that does not happen in practice.

use std::collections::HashMap;
use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo` reason of a message that is not valid protobuf.
pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";

/// Encodes `T` and decodes `U` with prost.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    types: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self { types: PhantomData }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder {
            message: PhantomData,
        }
    }
}

/// Decodes `U`; bytes that are not a valid `U` are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    message: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| malformed::<U>(&error))
    }
}

/// The refusal of bytes that are not a valid `U`. prost's description names the
/// field and the problem, never the bytes, so it carries no personal data.
pub fn malformed<U: Name>(error: &prost::DecodeError) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("not a valid {}: {error}", U::full_name()),
        ErrorDetails::with_error_info(MALFORMED_REQUEST, error_domain(U::PACKAGE), HashMap::new()),
    )
}

/// The `ErrorInfo` domain of a package's service: `circle.sessions.v1` →
/// `circle.sessions`, as the services' own errors say.
fn error_domain(package: &str) -> &str {
    match package.rsplit_once('.') {
        Some((domain, version))
            if version.starts_with('v')
                && version[1..].starts_with(|c: char| c.is_ascii_digit()) =>
        {
            domain
        }
        _ => package,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_the_package_without_its_version() {
        assert_eq!(error_domain("circle.sessions.v1"), "circle.sessions");
        assert_eq!(
            error_domain("circle.enrollment.v2beta1"),
            "circle.enrollment"
        );
        assert_eq!(error_domain("circle.eventstore"), "circle.eventstore");
    }

    #[test]
    fn bytes_that_are_not_the_message_are_invalid_argument_with_a_reason() {
        use crate::sessions::v1::GetSessionRequest;
        use tonic_types::StatusExt as _;
        // Field 1 (a string) holding bytes that are not UTF-8.
        let error =
            GetSessionRequest::decode(&[0x0A_u8, 0x02, 0xC3, 0x28][..]).expect_err("not UTF-8");
        let status = malformed::<GetSessionRequest>(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (MALFORMED_REQUEST, "circle.sessions")
        );
    }
}
