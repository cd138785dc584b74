//! A real OTLP/gRPC receiver for tests: the collector's trace and metrics services
//! (opentelemetry-proto's generated servers) on `127.0.0.1:0`, keeping every export
//! request it is sent. Point `telemetry.otlp_endpoint` at [`OtlpReceiver::endpoint`]
//! (with a short `telemetry.export_interval_ms`), `circle_telemetry::init` the
//! process, and read what the SDK really exported: [`OtlpReceiver::spans`] (each with
//! its resource's `service.name`), [`OtlpReceiver::metric_points`] by metric name,
//! and wait for a condition with [`OtlpReceiver::wait_for_spans`] /
//! [`OtlpReceiver::wait_for_metric`] (no sleeps: each export wakes the waiter, which
//! gives up at its deadline with what it last saw).
//!
//! ```ignore
//! let receiver = OtlpReceiver::start().await?;
//! config.telemetry.otlp_endpoint = Some(receiver.endpoint());
//! config.telemetry.export_interval_ms = 100;
//! let _telemetry = circle_telemetry::init("circle-test", &config.telemetry)?;
//! // … make projection lag rise …
//! let points = receiver
//!     .wait_for_metric("circle.projection.lag", Duration::from_secs(15), |points| {
//!         points.iter().any(|point| point.value.as_f64() > 0.0)
//!     })
//!     .await?;
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio::sync::Notify;

/// Everything the receiver was sent.
#[derive(Default)]
struct Received {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    /// Woken at every export.
    arrived: Notify,
}

#[derive(Clone)]
struct Collector(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A span as exported, flattened with its resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSpan {
    /// The `service.name` of the resource it was exported with.
    pub service: String,
    /// Every attribute of that resource, as text.
    pub resource: BTreeMap<String, String>,
    pub name: String,
    /// Lowercase hex, as in `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// Every attribute, as text (see [`text`]).
    pub attributes: BTreeMap<String, String>,
    /// Each event's name and attributes (an `err` recorded by `#[instrument]`, …).
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// Linked spans, as (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl ExportedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Every text of the span a person could read: name, resource, attributes,
    /// events, status message (to check none holds personal data).
    pub fn texts(&self) -> Vec<&str> {
        let mut texts = vec![self.name.as_str(), self.status_message.as_str()];
        texts.extend(self.resource.values().map(String::as_str));
        texts.extend(self.attributes.values().map(String::as_str));
        for (name, attributes) in &self.events {
            texts.push(name);
            texts.extend(attributes.values().map(String::as_str));
        }
        texts
    }
}

/// A metric's value at one point.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Int(i64),
    Double(f64),
    /// A histogram point: how many measurements, and their sum.
    Histogram {
        count: u64,
        sum: f64,
    },
}

impl PointValue {
    /// The value as a number (a histogram's count).
    pub fn as_f64(&self) -> f64 {
        match self {
            // A test's values are far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            Self::Int(value) => *value as f64,
            Self::Double(value) => *value,
            #[allow(clippy::cast_precision_loss)]
            Self::Histogram { count, .. } => *count as f64,
        }
    }
}

/// One exported data point of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The `service.name` of the resource it was exported with.
    pub service: String,
    pub name: String,
    pub unit: String,
    pub attributes: BTreeMap<String, String>,
    pub value: PointValue,
    /// When the point was taken (Unix nanoseconds): later exports of a cumulative
    /// metric have later times.
    pub time_unix_nano: u64,
}

impl MetricPoint {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An OTLP attribute value as text: strings as they are, numbers and booleans
/// printed, arrays and maps as their parts joined with `,`, bytes as hex.
pub fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(value)) => value.to_string(),
        Some(any_value::Value::IntValue(value)) => value.to_string(),
        Some(any_value::Value::DoubleValue(value)) => value.to_string(),
        Some(any_value::Value::ArrayValue(array)) => array
            .values
            .iter()
            .map(|value| text(Some(value)))
            .collect::<Vec<_>>()
            .join(","),
        Some(any_value::Value::KvlistValue(list)) => list
            .values
            .iter()
            .map(|pair| format!("{}={}", pair.key, text(pair.value.as_ref())))
            .collect::<Vec<_>>()
            .join(","),
        Some(any_value::Value::BytesValue(bytes)) => hex(bytes),
        #[allow(unreachable_patterns)]
        Some(_) => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

/// The OTLP receiver a test's process exports to; stops when dropped.
pub struct OtlpReceiver {
    address: std::net::SocketAddr,
    received: Arc<Received>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Serves the OTLP trace and metrics services on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let collector = Collector(received.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        Ok(Self {
            address,
            received,
            _stop: stop,
        })
    }

    /// `http://127.0.0.1:<port>`, for `telemetry.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far, in the order they arrived.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        let traces = self
            .received
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut spans = Vec::new();
        for request in traces.iter() {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|resource| attributes(&resource.attributes))
                    .unwrap_or_default();
                let service = resource.get("service.name").cloned().unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        let status = span.status.clone().unwrap_or_default();
                        spans.push(ExportedSpan {
                            service: service.clone(),
                            resource: resource.clone(),
                            name: span.name.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            kind: span.kind,
                            status_code: status.code,
                            status_message: status.message,
                            attributes: attributes(&span.attributes),
                            events: span
                                .events
                                .iter()
                                .map(|event| (event.name.clone(), attributes(&event.attributes)))
                                .collect(),
                            links: span
                                .links
                                .iter()
                                .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                                .collect(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Every data point received so far of the metric `name`, oldest export first.
    pub fn metric_points(&self, name: &str) -> Vec<MetricPoint> {
        let metrics = self
            .received
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut points = Vec::new();
        for request in metrics.iter() {
            for resource_metrics in &request.resource_metrics {
                let service = resource_metrics
                    .resource
                    .as_ref()
                    .map(|resource| attributes(&resource.attributes))
                    .and_then(|resource| resource.get("service.name").cloned())
                    .unwrap_or_default();
                for scope in &resource_metrics.scope_metrics {
                    for metric in scope.metrics.iter().filter(|metric| metric.name == name) {
                        let point =
                            |attributes: BTreeMap<String, String>, value, time| MetricPoint {
                                service: service.clone(),
                                name: metric.name.clone(),
                                unit: metric.unit.clone(),
                                attributes,
                                value,
                                time_unix_nano: time,
                            };
                        let numbers = |data: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint]| {
                            data.iter()
                                .map(|number| {
                                    let value = match number.value {
                                        Some(number_data_point::Value::AsInt(value)) => {
                                            PointValue::Int(value)
                                        }
                                        Some(number_data_point::Value::AsDouble(value)) => {
                                            PointValue::Double(value)
                                        }
                                        None => PointValue::Int(0),
                                    };
                                    point(attributes(&number.attributes), value, number.time_unix_nano)
                                })
                                .collect::<Vec<_>>()
                        };
                        match &metric.data {
                            Some(metric::Data::Gauge(gauge)) => {
                                points.extend(numbers(&gauge.data_points));
                            }
                            Some(metric::Data::Sum(sum)) => {
                                points.extend(numbers(&sum.data_points));
                            }
                            Some(metric::Data::Histogram(histogram)) => {
                                points.extend(histogram.data_points.iter().map(|data| {
                                    point(
                                        attributes(&data.attributes),
                                        PointValue::Histogram {
                                            count: data.count,
                                            sum: data.sum.unwrap_or_default(),
                                        },
                                        data.time_unix_nano,
                                    )
                                }));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        points
    }

    /// Waits (at most `limit`) until `found` finds something in the spans received,
    /// and returns it; at the deadline, an error naming the spans seen.
    pub async fn wait_for_spans<T>(
        &self,
        limit: Duration,
        found: impl Fn(&[ExportedSpan]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.received.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let spans = self.spans();
            if let Some(found) = found(&spans) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let seen: Vec<String> = spans
                    .iter()
                    .map(|span| format!("{} {} {}", span.service, span.name, span.trace_id))
                    .collect();
                anyhow::bail!(
                    "no such spans within {limit:?}; {} received: {seen:#?}",
                    spans.len()
                );
            }
        }
    }

    /// Waits (at most `limit`) until `holds` holds for the points of metric `name`
    /// received, and returns them; at the deadline, an error with the points seen.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        limit: Duration,
        holds: impl Fn(&[MetricPoint]) -> bool,
    ) -> anyhow::Result<Vec<MetricPoint>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.received.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let points = self.metric_points(name);
            if holds(&points) {
                return Ok(points);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                anyhow::bail!(
                    "metric {name}: condition not met within {limit:?}; seen {points:#?}"
                );
            }
        }
    }

    /// The names of every metric received so far.
    pub fn metric_names(&self) -> Vec<String> {
        let metrics = self
            .received
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = metrics
            .iter()
            .flat_map(|request| &request.resource_metrics)
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .map(|metric| metric.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every attribute value of every metric point received (to check none holds
    /// personal data).
    pub fn metric_texts(&self) -> Vec<String> {
        self.metric_names()
            .iter()
            .flat_map(|name| self.metric_points(name))
            .flat_map(|point| point.attributes.into_values())
            .collect()
    }
}
