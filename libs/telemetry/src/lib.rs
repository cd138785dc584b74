//! Telemetry for every Circle process: log lines to stderr (text or JSON, with the
//! trace and span id of the span they were logged in), and — when
//! `telemetry.otlp_endpoint` is set — OpenTelemetry spans and metrics exported over
//! OTLP/gRPC. The W3C trace-context propagator is always installed so `traceparent`
//! crosses gRPC and NATS.
//!
//! **One `service.name` per service, in one process too.** `circle dev` and the tests
//! run the three services in one process under one global subscriber, so which
//! service a span belongs to is a span field: [`SERVICE_FIELD`] (`circle.service`),
//! set on the roots (the RPC span of [`circle_grpc`'s trace layer], a background
//! loop's pass, a projection's span) and inherited by every span opened under them
//! (the tracing parent, not the OpenTelemetry one: a consumer span whose remote
//! parent is another service's append is still its runner's). Spans are exported
//! with the resource of their service (`service.name` = the field's value) and
//! without one the process's (`service.name` = the binary, `circle-dev` for `circle
//! dev`). Metrics the same way: [`meter`] gives the meter of a service's own
//! provider.
//!
//! Nothing is exported without an endpoint: [`meter`] then answers the global no-op
//! meter, so instruments cost nothing and need no condition at the call site.

mod logs;
mod service;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use circle_config::{LogFormat, TelemetryConfig};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use logs::{LogLine, json_line};
pub use service::{SERVICE_FIELD, ServiceLayer};

/// The services' names as they appear in `service.name` and in [`SERVICE_FIELD`].
pub const ENROLLMENT: &str = "circle-enrollment";
pub const SESSIONS: &str = "circle-sessions";
pub const ACCOUNTABILITY: &str = "circle-accountability";
pub const SERVICES: [&str; 3] = [ENROLLMENT, SESSIONS, ACCOUNTABILITY];

/// The `service.name` of a service known by its short name (`enrollment` →
/// `circle-enrollment`); `None` for anything else.
pub fn service_name(service: &str) -> Option<&'static str> {
    SERVICES
        .into_iter()
        .find(|name| name.strip_prefix("circle-") == Some(service))
}

/// The spans traces are made of: INFO and above (`#[instrument]`'s default level),
/// whatever the log filter.
const TRACE_LEVEL: LevelFilter = LevelFilter::INFO;

/// The instrumentation scope of every Circle instrument.
pub const SCOPE: &str = "circle";

/// The service a gRPC service name belongs to: `circle.enrollment.v1.EnrollmentService`
/// is `circle-enrollment`.
pub fn service_of_grpc(grpc_service: &str) -> Option<&'static str> {
    let package = grpc_service.split('.').nth(1)?;
    SERVICES
        .into_iter()
        .find(|service| service.strip_prefix("circle-") == Some(package))
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid telemetry.log_filter: {0}")]
    Filter(String),
    #[error("cannot build the OTLP exporter for telemetry.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
}

/// What the process exports to, kept for the meter providers made on first use.
struct Export {
    endpoint: String,
    interval: Duration,
    /// The process's resource; a service's is this with its `service.name`.
    resource: Resource,
    meters: Mutex<HashMap<String, SdkMeterProvider>>,
}

static EXPORT: OnceLock<Export> = OnceLock::new();

/// The resource of `service` in this process: `service.name`, `service.version` (the
/// workspace version) and `service.instance.id`.
fn resource(service: &str, instance_id: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance_id.to_owned()),
        ])
        .build()
}

fn with_service(base: &Resource, service: &str) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            base.iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(service.to_owned())
        .build()
}

/// The meter `service`'s instruments are made from (scope [`SCOPE`]): its own
/// provider, exporting with its `service.name`, when an endpoint is configured; the
/// global (no-op) meter otherwise. Make instruments once (at start) and keep them;
/// call it inside the tokio runtime (a service's first call makes its exporter, whose
/// gRPC channel lives there).
pub fn meter(service: &str) -> opentelemetry::metrics::Meter {
    use opentelemetry::metrics::MeterProvider as _;
    let Some(export) = EXPORT.get() else {
        return opentelemetry::global::meter(SCOPE);
    };
    let mut meters = export
        .meters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(provider) = meters.get(service) {
        return provider.meter(SCOPE);
    }
    match meter_provider(export, service) {
        Ok(provider) => {
            let meter = provider.meter(SCOPE);
            meters.insert(service.to_owned(), provider);
            meter
        }
        Err(error) => {
            eprintln!("metrics of {service} are not exported: {error}");
            opentelemetry::global::meter(SCOPE)
        }
    }
}

fn meter_provider(export: &Export, service: &str) -> Result<SdkMeterProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .build()
        .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(export.interval)
        .build();
    Ok(SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(with_service(&export.resource, service))
        .build())
}

/// Flushes and shuts down span and metric export when dropped (the end of `main`,
/// after the services drained: what they did last is exported too).
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span and the metrics now, blocking until done.
    pub fn flush(&self) {
        if let Some(tracer) = &self.tracer
            && let Err(error) = tracer.force_flush()
        {
            eprintln!("spans were not flushed: {error}");
        }
        for provider in meter_providers() {
            if let Err(error) = provider.force_flush() {
                eprintln!("metrics were not flushed: {error}");
            }
        }
    }
}

fn meter_providers() -> Vec<SdkMeterProvider> {
    EXPORT.get().map_or_else(Vec::new, |export| {
        export
            .meters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    })
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown()
        {
            eprintln!("span export did not shut down cleanly: {error}");
        }
        for provider in meter_providers() {
            if let Err(error) = provider.shutdown() {
                eprintln!("metric export did not shut down cleanly: {error}");
            }
        }
    }
}

/// Installs the global subscriber (and, with an endpoint, the span and metric export)
/// for a process named `process` (its `service.name` for spans of no service). Call
/// once per process, from `main`, inside the tokio runtime (the exporters' gRPC
/// channels live on it).
pub fn init(
    process: &'static str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|error| TelemetryError::Filter(error.to_string()))?;
    let instance_id = if config.instance_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        config.instance_id.clone()
    };
    let json = config.log_format == LogFormat::Json;
    let process_resource = resource(process, &instance_id);
    let mut tracer_provider = SdkTracerProvider::builder().with_resource(process_resource.clone());
    // Without an endpoint spans are still made (so log lines carry the trace of the
    // call they serve, a caller's `traceparent` included) but none is exported.
    if let Some(endpoint) = config.otlp_endpoint.as_deref() {
        let interval = Duration::from_millis(config.export_interval_ms);
        let span_exporter = || {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.to_owned())
                .build()
                .map_err(|error| TelemetryError::Exporter(error.to_string()))
        };
        let mut routes = Vec::new();
        for service in SERVICES {
            routes.push((service, span_exporter()?));
        }
        let exporter = service::RoutingExporter::new(span_exporter()?, routes);
        tracer_provider = tracer_provider.with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(interval)
                        .build(),
                )
                .build(),
        );
        let export = Export {
            endpoint: endpoint.to_owned(),
            interval,
            resource: process_resource,
            meters: Mutex::new(HashMap::new()),
        };
        // The process's own meter provider is the global one (instruments of no
        // service).
        let process_meters = meter_provider(&export, process)?;
        export
            .meters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(process.to_owned(), process_meters.clone());
        if EXPORT.set(export).is_err() {
            return Err(TelemetryError::AlreadyInitialised);
        }
        opentelemetry::global::set_meter_provider(process_meters);
    }
    let tracer_provider = tracer_provider.build();
    let tracer = tracer_provider.tracer(SCOPE);
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    // Inner to outer: the service layer's `on_close` runs before the OpenTelemetry
    // layer's, so it stamps the service on the span before that layer ends it. Traces
    // take every span at INFO and above whatever `log_filter` says (quieter logs must
    // not cut traces apart); the filter is the log lines' alone.
    tracing_subscriber::registry()
        .with(ServiceLayer::default().with_filter(TRACE_LEVEL))
        .with(
            // Code location stays (`code.*`); thread ids, busy/idle times and the
            // target (the module again) are noise on every span.
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_filter(TRACE_LEVEL),
        )
        .with(logs::layer(json, std::io::stderr).with_filter(filter))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(TelemetryGuard {
        tracer: Some(tracer_provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_services_map_to_their_service() {
        assert_eq!(
            service_of_grpc("circle.enrollment.v1.EnrollmentService"),
            Some(ENROLLMENT)
        );
        assert_eq!(
            service_of_grpc("circle.accountability.v1.AccountabilityService"),
            Some(ACCOUNTABILITY)
        );
        assert_eq!(service_of_grpc("grpc.health.v1.Health"), None);
    }
}
