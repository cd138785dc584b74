//! Abuse limits every service's gRPC port applies, as one tower layer ([`LimitLayer`])
//! the [`Host`](crate::host::Host) puts in front of its routes:
//!
//! - **Deadlines.** A client's `grpc-timeout` is the call's deadline: when it passes,
//!   the call is answered `DEADLINE_EXCEEDED` (reason `DEADLINE_EXCEEDED`) and its work
//!   is dropped — the handler's future before it answered, the response stream of a
//!   streaming call after (the stream ends with that status in its trailers). A
//!   deadline that has already passed on arrival is answered at once.
//! - **Message size.** A request message (every message of a stream) longer than
//!   [`MAX_REQUEST_BYTES`] is refused with `RESOURCE_EXHAUSTED` (reason
//!   `MESSAGE_TOO_LARGE`) as soon as its length prefix arrives, before it is buffered.
//!   The generated servers carry the same bound ([`MAX_REQUEST_BYTES`],
//!   [`MAX_RESPONSE_BYTES`]) as a backstop.
//! - **Concurrency.** The service's own routes (not health or reflection, which must
//!   answer while the service is busy) admit at most [`Limits::max_in_flight`] calls at
//!   once, and at most [`Limits::max_in_flight_per_caller`] of one caller. A call over
//!   either is answered at once with `RESOURCE_EXHAUSTED` (reason `OVERLOADED` or
//!   `CALLER_CONCURRENCY`, the limit in the `ErrorInfo` metadata), never queued. A call
//!   is in flight until its response has been sent in full (a streaming call for as
//!   long as its stream is open). The caller is the request's [`CallerKey`] extension,
//!   which the authentication layer inserts before this one runs; without it, the peer's
//!   IP address (every caller behind one proxy then shares one limit).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use crate::ApiError;

/// The largest request message a service accepts, in bytes (its protobuf encoding).
///
/// Derived from the largest valid request: a session note (`WriteMemberNote`,
/// `WriteSharedNote`, `AmendNote`) of 20,000 characters, at most 4 bytes each in UTF-8,
/// is 80,000 bytes, plus names and ids (each at most a few hundred bytes); the next
/// largest, a group with 500 exception dates, 10 facilitators and its texts, is under
/// 10 KiB. 256 KiB is three times the note, and a quarter of the 1 MiB a NATS message
/// (one commit) may carry by default.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The largest response message a service sends, in bytes. Answers are pages of at
/// most 200 items; the largest items (a session with its roster's notes and their
/// amendments) are tens of KiB, so a page is a few MiB at most. An answer over this is
/// refused by tonic rather than sent (a bug, or a record grown beyond reason).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Who a call counts against for [`Limits::max_in_flight_per_caller`]: the
/// authentication layer inserts it into the request's extensions (e.g. the verified
/// network and subject of a token) before the [`LimitLayer`] runs. Without it, the
/// peer's IP address is the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerKey(pub String);

/// How many calls a service's routes run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in flight on the service's routes, all callers together.
    pub max_in_flight: usize,
    /// Calls in flight of one caller ([`CallerKey`], else the peer's IP address).
    pub max_in_flight_per_caller: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_in_flight_per_caller: 64,
        }
    }
}

/// The layer: deadlines and message size on every route, the concurrency limits on the
/// routes of `service` (its full gRPC name).
#[derive(Clone)]
pub struct LimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    /// `/<service>/`: the path prefix of the service's own routes.
    routes: String,
    /// The `ErrorInfo` domain of refusals: the service's package without its version,
    /// e.g. `circle.enrollment`, as the service's own errors.
    domain: String,
    limits: Limits,
    in_flight: Arc<Semaphore>,
    callers: Mutex<HashMap<String, usize>>,
}

impl LimitLayer {
    pub fn new(service: &str, limits: Limits) -> Self {
        Self {
            shared: Arc::new(Shared {
                routes: format!("/{service}/"),
                domain: error_domain(service),
                limits,
                in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
                callers: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service behind the [`LimitLayer`].
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Limited<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The deadline starts now, before tonic's own `grpc-timeout` timer (which wraps
        // this layer and starts after it), so this one answers first, with the right
        // code (tonic's answers CANCELLED).
        let deadline = grpc_timeout(request.headers()).map(|timeout| Instant::now() + timeout);
        let domain = self.shared.domain.clone();
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return refuse(deadline_exceeded(&domain));
        }
        let permits = if request.uri().path().starts_with(&self.shared.routes) {
            match self.shared.admit(&request) {
                Ok(permits) => Some(permits),
                Err(refusal) => return refuse(refusal),
            }
        } else {
            None
        };
        let request = request.map(|body| {
            Body::new(SizeChecked {
                inner: body,
                limit: MAX_REQUEST_BYTES,
                domain: domain.clone(),
                frame: FrameState::Prefix {
                    read: 0,
                    prefix: [0; 5],
                },
            })
        });
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut sleep = deadline.map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        Box::pin(async move {
            let answered = inner.call(request);
            let response = match sleep.as_mut() {
                None => answered.await?,
                Some(sleep) => {
                    tokio::select! {
                        biased;
                        response = answered => response?,
                        () = sleep.as_mut() => {
                            return Ok(deadline_exceeded(&domain).into_http());
                        }
                    }
                }
            };
            Ok(response.map(|body| {
                Body::new(Guarded {
                    inner: Some(body),
                    permits,
                    deadline: sleep,
                    domain,
                })
            }))
        })
    }
}

fn refuse<E: Send + 'static>(status: Status) -> BoxFuture<http::Response<Body>, E> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

fn deadline_exceeded(domain: &str) -> Status {
    ApiError::new(
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
        "the call's deadline (grpc-timeout) passed before it finished",
    )
    .into_status(domain)
}

impl Shared {
    /// A place among the calls in flight, the caller's first: a caller over its own
    /// limit is told so even when the service is full too.
    fn admit(self: &Arc<Self>, request: &http::Request<Body>) -> Result<Permits, Status> {
        let caller = caller_key(request);
        let caller = {
            let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
            let count = callers.entry(caller.clone()).or_insert(0);
            if *count >= self.limits.max_in_flight_per_caller {
                drop(callers);
                return Err(self.refusal(
                    "CALLER_CONCURRENCY",
                    "too many calls of this caller in flight; wait for one to finish",
                    self.limits.max_in_flight_per_caller,
                ));
            }
            *count += 1;
            CallerSlot {
                shared: self.clone(),
                key: caller,
            }
        };
        let Ok(service) = self.in_flight.clone().try_acquire_owned() else {
            drop(caller);
            return Err(self.refusal(
                "OVERLOADED",
                "the service has too many calls in flight; retry with backoff",
                self.limits.max_in_flight,
            ));
        };
        Ok(Permits {
            _caller: caller,
            _service: service,
        })
    }

    fn refusal(&self, reason: &'static str, message: &str, limit: usize) -> Status {
        tracing::debug!(reason, limit, routes = %self.routes, "call refused");
        ApiError::new(Code::ResourceExhausted, reason, message)
            .with_metadata("limit", limit.to_string())
            .into_status(&self.domain)
    }
}

/// The request's [`CallerKey`], else its peer's IP address.
fn caller_key(request: &http::Request<Body>) -> String {
    if let Some(CallerKey(key)) = request.extensions().get::<CallerKey>() {
        return format!("caller:{key}");
    }
    let extensions = request.extensions();
    let peer: Option<SocketAddr> = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        });
    match peer {
        Some(peer) => format!("peer:{}", peer.ip()),
        None => "peer:unknown".to_owned(),
    }
}

/// What an admitted call holds until its response has been sent.
struct Permits {
    _caller: CallerSlot,
    _service: OwnedSemaphorePermit,
}

struct CallerSlot {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut callers = self
            .shared
            .callers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = callers.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                callers.remove(&self.key);
            }
        }
    }
}

/// A response body that holds the call's permits until it ends, and ends with
/// `DEADLINE_EXCEEDED` when the deadline passes first (dropping the stream, and with it
/// the work that fed it, before the client is told).
struct Guarded {
    inner: Option<Body>,
    permits: Option<Permits>,
    deadline: Option<Pin<Box<Sleep>>>,
    domain: String,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                this.inner = None;
                this.permits = None;
            }
            return Poll::Ready(frame);
        }
        if let Some(deadline) = this.deadline.as_mut() {
            ready!(deadline.as_mut().poll(cx));
            this.inner = None;
            this.permits = None;
            let mut trailers = HeaderMap::new();
            if deadline_exceeded(&this.domain)
                .add_header(&mut trailers)
                .is_err()
            {
                trailers.insert(
                    Status::GRPC_STATUS,
                    HeaderValue::from(Code::DeadlineExceeded as i32),
                );
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}

/// A request body whose gRPC messages are checked against `limit` as their length
/// prefixes arrive: one over it is an error (`RESOURCE_EXHAUSTED`, `MESSAGE_TOO_LARGE`)
/// that tonic hands to the handler as the call's status, before the message is read.
struct SizeChecked {
    inner: Body,
    limit: usize,
    domain: String,
    frame: FrameState,
}

enum FrameState {
    /// Reading the 5-byte prefix: compression flag, then the length (big-endian u32).
    Prefix { read: usize, prefix: [u8; 5] },
    /// Inside a message, this many bytes still to come.
    Message { remaining: usize },
}

impl SizeChecked {
    /// Follows the framing through `data`; the length of a message over the limit.
    fn check(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            match &mut self.frame {
                FrameState::Prefix { read, prefix } => {
                    let take = (5 - *read).min(data.len());
                    prefix[*read..*read + take].copy_from_slice(&data[..take]);
                    *read += take;
                    data = &data[take..];
                    if *read == 5 {
                        let length =
                            u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]])
                                as usize;
                        if length > self.limit {
                            return Err(length);
                        }
                        self.frame = if length == 0 {
                            FrameState::Prefix {
                                read: 0,
                                prefix: [0; 5],
                            }
                        } else {
                            FrameState::Message { remaining: length }
                        };
                    }
                }
                FrameState::Message { remaining } => {
                    let take = (*remaining).min(data.len());
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.frame = FrameState::Prefix {
                            read: 0,
                            prefix: [0; 5],
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

impl http_body::Body for SizeChecked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(length) = this.check(data)
        {
            let status = ApiError::new(
                Code::ResourceExhausted,
                "MESSAGE_TOO_LARGE",
                format!(
                    "the request message is {length} bytes, over the limit of {} bytes",
                    this.limit
                ),
            )
            .with_metadata("limit", this.limit.to_string())
            .into_status(&this.domain);
            return Poll::Ready(Some(Err(status)));
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

/// The call's `grpc-timeout`, read as tonic reads it (1 to 8 digits and a unit); an
/// unreadable one is no deadline, as in tonic.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    if !amount.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 60 * 60),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `circle.enrollment.v1.EnrollmentService` → `circle.enrollment`: the package without
/// its version, the domain the service's own errors carry.
fn error_domain(service: &str) -> String {
    let package: Vec<&str> = service
        .split('.')
        .take_while(|token| {
            !(token.len() > 1
                && token.starts_with('v')
                && token[1..].bytes().all(|byte| byte.is_ascii_digit()))
        })
        .collect();
    if package.len() == service.split('.').count() {
        // No version: all but the service's own name.
        let mut tokens: Vec<&str> = service.split('.').collect();
        tokens.pop();
        return tokens.join(".");
    }
    package.join(".")
}

#[cfg(test)]
mod tests;
