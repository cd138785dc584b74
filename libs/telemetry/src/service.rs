//! Which service a span belongs to, in a process that runs several: the
//! [`SERVICE_FIELD`] of the span or of its nearest tracing ancestor, stamped on the
//! OpenTelemetry span as it closes, and the [`RoutingExporter`] that exports each
//! span with its service's resource.

use std::collections::HashMap;
use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span field naming the service a span (and every span under it) belongs to:
/// `circle.service = "circle-sessions"` (one of [`crate::SERVICES`]). Set it on
/// the roots a service opens: an RPC (the gRPC trace layer does), a background
/// loop's pass, a projection's work.
pub const SERVICE_FIELD: &str = "circle.service";

/// The service of a span, kept in its extensions.
struct ServiceOf(String);

/// The tracing layer that follows [`SERVICE_FIELD`] down the span tree and stamps
/// the inherited value on spans that do not carry it themselves. Put it inside
/// (before) the OpenTelemetry layer, so it stamps before that layer ends the span.
#[derive(Default)]
pub struct ServiceLayer {
    /// The subscriber it is part of, to reach the OpenTelemetry layer's span data
    /// (asking the dispatcher for the current one could answer none while a close
    /// runs inside another dispatch).
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

#[derive(Default)]
struct ServiceVisitor(Option<String>);

impl Visit for ServiceVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == SERVICE_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == SERVICE_FIELD {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// Whether a span carries the field itself (then the OpenTelemetry layer records
/// it as an attribute and nothing needs stamping).
struct Own;

impl<S> tracing_subscriber::Layer<S> for ServiceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let mut own = ServiceVisitor::default();
        attributes.record(&mut own);
        let (service, is_own) = match own.0 {
            Some(service) => (Some(service), true),
            None => (
                span.parent()
                    .and_then(|parent| parent.extensions().get::<ServiceOf>().map(|s| s.0.clone())),
                false,
            ),
        };
        let mut extensions = span.extensions_mut();
        if let Some(service) = service {
            extensions.insert(ServiceOf(service));
        }
        if is_own {
            extensions.insert(Own);
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let service = {
            let extensions = span.extensions();
            if extensions.get::<Own>().is_some() {
                return;
            }
            match extensions.get::<ServiceOf>() {
                Some(service) => service.0.clone(),
                None => return,
            }
        };
        let Some(dispatch) = self.dispatch.get().and_then(|weak| weak.upgrade()) else {
            return;
        };
        if let Some(otel) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
            otel.span()
                .set_attribute(KeyValue::new(SERVICE_FIELD, service));
        }
    }
}

/// Exports each span with the resource of its service ([`SERVICE_FIELD`]), through
/// that service's exporter; spans of no (or an unknown) service go with the
/// process's resource.
pub(crate) struct RoutingExporter<E> {
    default: E,
    routes: Vec<(&'static str, E)>,
}

impl<E> RoutingExporter<E> {
    pub(crate) fn new(default: E, routes: Vec<(&'static str, E)>) -> Self {
        Self { default, routes }
    }
}

impl<E> fmt::Debug for RoutingExporter<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RoutingExporter")
            .field(
                "services",
                &self
                    .routes
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn service_of(span: &SpanData) -> Option<&str> {
    span.attributes.iter().find_map(|attribute| {
        (attribute.key.as_str() == SERVICE_FIELD).then_some(match &attribute.value {
            Value::String(value) => value.as_str(),
            _ => "",
        })
    })
}

impl<E: SpanExporter> SpanExporter for RoutingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut by_route: HashMap<Option<usize>, Vec<SpanData>> = HashMap::new();
        for span in batch {
            let route = service_of(&span)
                .and_then(|service| self.routes.iter().position(|(name, _)| *name == service));
            by_route.entry(route).or_default().push(span);
        }
        let mut result = Ok(());
        for (route, spans) in by_route {
            let exporter = match route {
                Some(index) => &self.routes[index].1,
                None => &self.default,
            };
            if let Err(error) = exporter.export(spans).await {
                result = Err(error);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        let mut result = self.default.shutdown_with_timeout(timeout);
        for (_, exporter) in &self.routes {
            if let Err(error) = exporter.shutdown_with_timeout(timeout) {
                result = Err(error);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = self.default.force_flush();
        for (_, exporter) in &self.routes {
            if let Err(error) = exporter.force_flush() {
                result = Err(error);
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.default.set_resource(resource);
        for (service, exporter) in &mut self.routes {
            exporter.set_resource(&crate::with_service(resource, service));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(batch);
            Ok(())
        }
    }

    #[test]
    fn spans_inherit_the_service_of_their_tracing_root() {
        let collect = Collect::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(collect.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(ServiceLayer::default())
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("pass", circle.service = "circle-sessions");
            root.in_scope(|| {
                let child = tracing::info_span!("step");
                child.in_scope(|| tracing::info_span!("append").in_scope(|| {}));
            });
            drop(root);
            tracing::info_span!("orphan").in_scope(|| {});
        });
        let spans = collect
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let service = |name: &str| {
            spans
                .iter()
                .find(|span| span.name == name)
                .map(|span| service_of(span).map(str::to_owned))
        };
        assert_eq!(service("pass"), Some(Some("circle-sessions".into())));
        assert_eq!(service("step"), Some(Some("circle-sessions".into())));
        assert_eq!(service("append"), Some(Some("circle-sessions".into())));
        assert_eq!(service("orphan"), Some(None));
    }
}
