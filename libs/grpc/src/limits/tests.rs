//! The limit layer driven directly, with services whose calls the test holds open:
//! admission is decided when a call arrives, so a held call is a call in flight.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use tonic_types::StatusExt as _;
use tower::ServiceExt as _;
use tower_layer::Layer as _;
use tower_service::Service as _;

use super::*;

const SERVICE: &str = "circle.test.v1.TestService";

fn limits(max_in_flight: usize, max_in_flight_per_caller: usize) -> Limits {
    Limits {
        max_in_flight,
        max_in_flight_per_caller,
    }
}

/// A request to `path` of the caller `key`, with an empty body.
fn request(path: &str, key: Option<&str>) -> http::Request<Body> {
    let mut request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(Body::empty())
        .expect("a valid request");
    if let Some(key) = key {
        request.extensions_mut().insert(CallerKey(key.to_owned()));
    }
    request
}

fn call_of(key: &str) -> http::Request<Body> {
    request(&format!("/{SERVICE}/Call"), Some(key))
}

/// A response body that never ends; its receiver learns when it is dropped.
struct Held(#[allow(dead_code)] oneshot::Sender<()>);

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Poll::Pending
    }
}

/// A sender the test's (cloneable) service hands to its one call; the receiver learns
/// when what holds it is dropped.
type Handed = Arc<Mutex<Option<oneshot::Sender<()>>>>;

fn handed() -> (Handed, oneshot::Receiver<()>) {
    let (sender, receiver) = oneshot::channel();
    (Arc::new(Mutex::new(Some(sender))), receiver)
}

fn take(handed: &Handed) -> oneshot::Sender<()> {
    handed
        .lock()
        .ok()
        .and_then(|mut sender| sender.take())
        .expect("called once")
}

/// A service whose calls never answer.
fn never_answers() -> impl tower_service::Service<
    http::Request<Body>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_: http::Request<Body>| std::future::pending())
}

/// The status of a trailers-only answer (a refusal), if it is one.
fn refusal(response: &http::Response<Body>) -> Option<Status> {
    Status::from_header_map(response.headers())
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// Calls `service` and answers what it answers at once, or `None` while it is held.
fn answer_now(
    service: &mut Limited<
        impl tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    >,
    request: http::Request<Body>,
) -> (
    Option<http::Response<Body>>,
    BoxFuture<http::Response<Body>, Infallible>,
) {
    let mut call = service.call(request);
    let waker = std::task::Waker::noop();
    match call.as_mut().poll(&mut Context::from_waker(waker)) {
        Poll::Ready(Ok(response)) => (Some(response), call),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => (None, call),
    }
}

#[tokio::test]
async fn a_caller_over_its_limit_is_refused_at_once_and_others_still_get_in() {
    let mut service = LimitLayer::new(SERVICE, limits(10, 2)).layer(never_answers());
    let (first, _held_a1) = answer_now(&mut service, call_of("a"));
    let (second, held_a2) = answer_now(&mut service, call_of("a"));
    assert!(
        first.is_none() && second.is_none(),
        "two calls are admitted"
    );

    let (third, _) = answer_now(&mut service, call_of("a"));
    let status = third
        .as_ref()
        .and_then(refusal)
        .expect("the third call of one caller is answered at once");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "CALLER_CONCURRENCY");
    let info = status.get_error_details().error_info().cloned();
    assert_eq!(
        info.map(|info| (info.domain, info.metadata.get("limit").cloned())),
        Some(("circle.test".to_owned(), Some("2".to_owned())))
    );

    let (other, _held_b) = answer_now(&mut service, call_of("b"));
    assert!(other.is_none(), "another caller is admitted");

    drop(held_a2);
    let (again, _held_a3) = answer_now(&mut service, call_of("a"));
    assert!(again.is_none(), "a finished call frees its caller's place");
}

#[tokio::test]
async fn a_full_service_is_overloaded_but_health_still_answers() {
    let mut service = LimitLayer::new(SERVICE, limits(2, 5)).layer(never_answers());
    let (_, _held_a) = answer_now(&mut service, call_of("a"));
    let (_, _held_b) = answer_now(&mut service, call_of("b"));

    let (third, _) = answer_now(&mut service, call_of("c"));
    let status = third.as_ref().and_then(refusal).expect("refused at once");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "OVERLOADED");

    // Health and reflection are not the service's routes: never limited.
    let (health, _held_health) = answer_now(
        &mut service,
        request("/grpc.health.v1.Health/Check", Some("c")),
    );
    assert!(health.is_none(), "health is not refused");
    // The refused call left no place taken for its caller.
    assert!(
        service
            .shared
            .callers
            .lock()
            .map(|callers| !callers.contains_key("caller:c"))
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn without_a_caller_key_the_peer_ip_address_is_the_caller() {
    let mut service = LimitLayer::new(SERVICE, limits(10, 1)).layer(never_answers());
    let from = |peer: &str| {
        let mut request = request(&format!("/{SERVICE}/Call"), None);
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer.parse().expect("an address")),
        });
        request
    };
    let (_, _held) = answer_now(&mut service, from("10.1.1.1:40000"));
    let (same_host, _) = answer_now(&mut service, from("10.1.1.1:40001"));
    assert_eq!(
        same_host
            .as_ref()
            .and_then(refusal)
            .map(|status| reason(&status)),
        Some("CALLER_CONCURRENCY".to_owned()),
        "another connection from the same address is the same caller"
    );
    let (other_host, _held_other) = answer_now(&mut service, from("10.1.1.2:40000"));
    assert!(other_host.is_none(), "another address is another caller");
}

#[tokio::test]
async fn a_call_is_in_flight_until_its_response_stream_ends() {
    let (dropped_sender, dropped) = handed();
    let streaming = tower::service_fn(move |_: http::Request<Body>| {
        let body = Held(take(&dropped_sender));
        std::future::ready(Ok::<_, Infallible>(http::Response::new(Body::new(body))))
    });
    let mut service = LimitLayer::new(SERVICE, limits(10, 1)).layer(streaming);
    let stream = service.call(call_of("a")).await.expect("infallible");
    assert!(refusal(&stream).is_none());
    let (second, _) = answer_now(&mut service, call_of("a"));
    assert_eq!(
        second
            .as_ref()
            .and_then(refusal)
            .map(|status| reason(&status)),
        Some("CALLER_CONCURRENCY".to_owned()),
        "an open response stream holds its place"
    );
    drop(stream);
    assert!(dropped.await.is_err(), "the stream was dropped");
    assert_eq!(
        service.shared.in_flight.available_permits(),
        10,
        "its place was freed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_answers_deadline_exceeded_and_drops_the_work() {
    let (work_sender, work) = handed();
    let blocked = tower::service_fn(move |_: http::Request<Body>| {
        let held = take(&work_sender);
        async move {
            let _held = held;
            std::future::pending::<Result<http::Response<Body>, Infallible>>().await
        }
    });
    let service = LimitLayer::new(SERVICE, limits(10, 10)).layer(blocked);
    let mut call = call_of("a");
    call.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("200m"));
    let started = Instant::now();
    let response = service.clone().oneshot(call).await.expect("infallible");
    let status = refusal(&response).expect("answered with a status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert!(work.await.is_err(), "the handler's future was dropped");
    assert_eq!(service.shared.in_flight.available_permits(), 10);
}

#[tokio::test]
async fn a_deadline_already_passed_is_answered_without_running_the_call() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        tower::service_fn(move |_: http::Request<Body>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(http::Response::new(Body::empty())))
        })
    };
    let service = LimitLayer::new(SERVICE, limits(10, 10)).layer(counted);
    let mut call = call_of("a");
    call.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("0n"));
    let response = service.oneshot(call).await.expect("infallible");
    assert_eq!(
        refusal(&response).map(|status| status.code()),
        Some(Code::DeadlineExceeded)
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_response_stream_past_its_deadline_ends_with_deadline_exceeded() {
    let (dropped_sender, dropped) = handed();
    let streaming = tower::service_fn(move |_: http::Request<Body>| {
        let body = Held(take(&dropped_sender));
        std::future::ready(Ok::<_, Infallible>(http::Response::new(Body::new(body))))
    });
    let service = LimitLayer::new(SERVICE, limits(10, 10)).layer(streaming);
    let mut call = call_of("a");
    call.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("1S"));
    let response = service.clone().oneshot(call).await.expect("infallible");
    assert!(refusal(&response).is_none(), "the stream started");
    let mut body = response.into_body();
    let frame = body
        .frame()
        .await
        .expect("a last frame")
        .expect("not an error");
    let trailers = frame.into_trailers().expect("trailers");
    let status = Status::from_header_map(&trailers).expect("a status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        dropped.await.is_err(),
        "the stream was dropped before the answer"
    );
    assert_eq!(service.shared.in_flight.available_permits(), 10);
    assert!(body.frame().await.is_none(), "and then the body ends");
}

#[tokio::test]
async fn a_request_message_over_the_limit_is_refused_when_its_length_arrives() {
    let reader = tower::service_fn(|request: http::Request<Body>| async move {
        let outcome = request.into_body().collect().await;
        let status = match outcome {
            Ok(_) => Status::ok("read"),
            Err(status) => status,
        };
        Ok::<_, Infallible>(status.into_http::<Body>())
    });
    let service = LimitLayer::new(SERVICE, limits(10, 10)).layer(reader);

    let framed = |length: usize, sent: usize| {
        let mut bytes = vec![0_u8];
        bytes.extend_from_slice(&u32::try_from(length).expect("small").to_be_bytes());
        bytes.extend(std::iter::repeat_n(7_u8, sent));
        Body::new(http_body_util::Full::new(Bytes::from(bytes)))
    };
    let send = |body: Body| {
        let service = service.clone();
        async move {
            let mut call = call_of("a");
            *call.body_mut() = body;
            let response = service.oneshot(call).await.expect("infallible");
            refusal(&response).expect("a status")
        }
    };

    // Only the prefix of a message one byte over the limit: refused before the rest.
    let status = send(framed(MAX_REQUEST_BYTES + 1, 0)).await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "MESSAGE_TOO_LARGE");
    // A message at the limit, and two messages in one chunk, pass.
    let status = send(framed(MAX_REQUEST_BYTES, MAX_REQUEST_BYTES)).await;
    assert_eq!(status.code(), Code::Ok);
    let mut two = vec![0_u8, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0, 1, 9];
    two.extend_from_slice(&[0, 0, 0x10, 0, 0]);
    let status = send(Body::new(http_body_util::Full::new(Bytes::from(two)))).await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE".to_owned()),
        "the third message's prefix (1 MiB) follows two small ones"
    );
}

#[test]
fn grpc_timeouts_are_read_as_tonic_reads_them() {
    let timeout = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static(value));
        grpc_timeout(&headers)
    };
    assert_eq!(timeout("3H"), Some(Duration::from_secs(3 * 3600)));
    assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
    assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
    assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
    assert_eq!(
        timeout("99999999u"),
        Some(Duration::from_micros(99_999_999))
    );
    assert_eq!(timeout("0n"), Some(Duration::ZERO));
    assert_eq!(timeout("123456789S"), None, "at most 8 digits");
    assert_eq!(timeout("5"), None);
    assert_eq!(timeout("S"), None);
    assert_eq!(timeout("-5S"), None);
    assert_eq!(timeout("5s"), None);
    assert_eq!(grpc_timeout(&HeaderMap::new()), None);
}

#[test]
fn refusals_carry_the_domain_of_the_service() {
    assert_eq!(
        error_domain("circle.enrollment.v1.EnrollmentService"),
        "circle.enrollment"
    );
    assert_eq!(
        error_domain("circle.accountability.v1.AccountabilityService"),
        "circle.accountability"
    );
    assert_eq!(error_domain("grpc.health.Health"), "grpc.health");
}
