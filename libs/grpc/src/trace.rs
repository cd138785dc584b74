//! RPC traces and metrics: the tower layer outermost in front of every route (so a
//! call refused by authentication or the limits is traced and measured too). For
//! each call it takes the W3C trace context from the request headers (a caller's
//! `traceparent` makes the call part of the caller's trace), opens a SERVER span
//! named `{rpc.service}/{rpc.method}` with the OpenTelemetry RPC attributes, under
//! which the handler's own spans are children, reads the answer's `grpc-status`
//! (trailers-only answers carry it in the headers, others in the body's trailers) and
//! records it on the span — status ERROR for the server's faults only — and in the
//! `rpc.server.call.duration` histogram. Health checks (probes every few seconds)
//! are neither traced nor measured. No request or response content is recorded.
//!
//! [`inject_trace_context`] is the client side: the current span's context as
//! `traceparent` in an outgoing call's metadata.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::Code;
use tonic::body::Body;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The health service's routes: never traced or measured.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Whether a status is the server's fault (span status ERROR), after the
/// OpenTelemetry gRPC conventions: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS. The others are the client's (its input, its
/// rights, its precondition) and leave the span's status unset.
pub fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// `/pkg.Service/Method` as (`pkg.Service`, `Method`).
fn rpc_of(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// The `grpc-status` of a header block, if it has one.
fn status_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(Code::from_i32)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Puts the current span's trace context (`traceparent`) in an outgoing call's
/// metadata, so the called service's span joins this trace.
pub fn inject_trace_context<T>(request: &mut tonic::Request<T>) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    });
}

/// A tonic interceptor doing [`inject_trace_context`], for a client:
/// `Client::with_interceptor(channel, circle_grpc::trace::propagate)`.
pub fn propagate(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject_trace_context(&mut request);
    Ok(request)
}

/// The layer [`crate::host::Host`] puts outermost, for one service.
#[derive(Clone)]
pub struct TraceLayer {
    /// The service's `circle.service` (`circle-enrollment`, …), the root of its
    /// spans and the meter its duration histogram is made from.
    service: &'static str,
    duration: Histogram<f64>,
    /// Every `package.Service/Method` the host serves: a path outside it is named
    /// `_OTHER` on spans and metrics (a client chooses its path, and the names must
    /// stay a bounded set).
    methods: std::sync::Arc<std::collections::HashSet<String>>,
}

/// The name of a method the host does not serve (the conventions' `_OTHER`).
const OTHER: &str = "_OTHER";

/// The `package.Service/Method` of every method in an encoded `FileDescriptorSet`.
fn methods_of(descriptors: &[u8]) -> std::collections::HashSet<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(descriptors) else {
        return std::collections::HashSet::new();
    };
    let mut methods = std::collections::HashSet::new();
    for file in set.file {
        let package = file.package.unwrap_or_default();
        for service in file.service {
            let service_name = service.name.unwrap_or_default();
            for method in service.method {
                methods.insert(format!(
                    "{package}.{service_name}/{}",
                    method.name.unwrap_or_default()
                ));
            }
        }
    }
    methods
}

impl TraceLayer {
    /// The layer of the service whose full gRPC name is `grpc_service`, serving the
    /// methods `descriptors` (an encoded `FileDescriptorSet`) describe and reflection.
    pub fn new(grpc_service: &str, descriptors: &[u8]) -> Self {
        let service = circle_telemetry::service_of_grpc(grpc_service).unwrap_or("circle");
        let duration = circle_telemetry::meter(service)
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of incoming RPCs, until the last byte of the answer")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .build();
        let mut methods = methods_of(descriptors);
        methods.insert("grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned());
        Self {
            service,
            duration,
            methods: std::sync::Arc::new(methods),
        }
    }
}

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind the [`TraceLayer`].
#[derive(Clone)]
pub struct Traced<S> {
    inner: S,
    layer: TraceLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// What is recorded when a call ends.
struct Call {
    span: tracing::Span,
    started: Instant,
    attributes: [KeyValue; 3],
    duration: Histogram<f64>,
    ended: bool,
}

impl Call {
    fn end(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let code_number = code as i64;
        self.span.record("rpc.grpc.status_code", code_number);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        let mut attributes = self.attributes.to_vec();
        attributes.push(KeyValue::new("rpc.grpc.status_code", code_number));
        self.duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

impl Drop for Call {
    /// An answer dropped before its end (the client went away) is CANCELLED.
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for Traced<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone took `poll_ready`'s place; call the one that is ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        if path.starts_with(HEALTH_PREFIX) {
            return Box::pin(inner.call(request));
        }
        let (rpc_service, rpc_method) = rpc_of(&path)
            .filter(|_| self.layer.methods.contains(&path[1..]))
            .unwrap_or((OTHER, OTHER));
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("{rpc_service}/{rpc_method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = rpc_service,
            rpc.method = rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
            circle.service = self.layer.service,
        );
        let _ = span.set_parent(parent);
        let mut call = Call {
            span: span.clone(),
            started: Instant::now(),
            attributes: [
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", rpc_service.to_owned()),
                KeyValue::new("rpc.method", rpc_method.to_owned()),
            ],
            duration: self.layer.duration.clone(),
            ended: false,
        };
        let answered = span.in_scope(|| inner.call(request));
        Box::pin(
            async move {
                let response = match answered.await {
                    Ok(response) => response,
                    Err(error) => {
                        call.end(Code::Unknown);
                        return Err(error);
                    }
                };
                if let Some(code) = status_in(response.headers()) {
                    // Trailers-only: the answer is all in the headers.
                    call.end(code);
                    return Ok(response);
                }
                Ok(response.map(|body| {
                    Body::new(Watched {
                        inner: body,
                        call: Some(call),
                    })
                }))
            }
            .instrument(span),
        )
    }
}

/// A response body that records the call's status from its trailers, and polls its
/// stream inside the call's span.
struct Watched {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let _entered = this.call.as_ref().map(|call| call.span.clone().entered());
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(context));
        let ended = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| status_in(trailers).unwrap_or(Code::Unknown)),
            Some(Err(status)) => Some(status.code()),
            // The body ended without trailers: no status was sent.
            None => Some(Code::Unknown),
        };
        if let Some(code) = ended
            && let Some(mut call) = this.call.take()
        {
            call.end(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_methods_a_host_serves_are_named() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet {
            file: vec![prost_types::FileDescriptorProto {
                package: Some("circle.enrollment.v1".into()),
                service: vec![prost_types::ServiceDescriptorProto {
                    name: Some("EnrollmentService".into()),
                    method: vec![prost_types::MethodDescriptorProto {
                        name: Some("GetGroup".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let methods = methods_of(&set.encode_to_vec());
        assert_eq!(
            methods.into_iter().collect::<Vec<_>>(),
            ["circle.enrollment.v1.EnrollmentService/GetGroup"]
        );
        assert!(methods_of(b"not a descriptor set").is_empty());
    }

    #[test]
    fn only_the_servers_faults_are_span_errors() {
        let server = [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let client = [
            Code::Ok,
            Code::Cancelled,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unauthenticated,
        ];
        for code in server {
            assert!(is_server_error(code), "{code:?} is the server's fault");
        }
        for code in client {
            assert!(!is_server_error(code), "{code:?} is not the server's fault");
        }
    }

    #[test]
    fn rpc_names_come_from_the_path() {
        assert_eq!(
            rpc_of("/circle.enrollment.v1.EnrollmentService/RegisterParticipant"),
            Some((
                "circle.enrollment.v1.EnrollmentService",
                "RegisterParticipant"
            ))
        );
        assert_eq!(rpc_of("/"), None);
        assert_eq!(rpc_of("/only-a-service"), None);
        assert_eq!(rpc_of("/a/b/c"), None);
    }

    #[test]
    fn the_status_is_read_from_a_header_block() -> Result<(), http::header::InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        assert_eq!(status_in(&headers), None);
        headers.insert("grpc-status", "13".parse()?);
        assert_eq!(status_in(&headers), Some(Code::Internal));
        Ok(())
    }
}
