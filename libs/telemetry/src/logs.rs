//! Log lines on stderr: text for people, JSON (one object a line) for a log
//! pipeline; both carry the trace and span id of the span a line was logged in, so
//! a line leads to its trace and a trace to its lines.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format::Format};
use tracing_subscriber::registry::LookupSpan;

/// One log line, as the JSON format writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// RFC 3339, UTC, microseconds.
    pub timestamp: String,
    pub level: String,
    pub target: String,
    pub message: String,
    /// The event's other fields.
    pub fields: Map<String, Value>,
    /// The name of the span the line was logged in.
    pub span: Option<String>,
    /// The OpenTelemetry trace and span id (lowercase hex) of that span.
    pub trace: Option<(String, String)>,
}

/// The JSON object of a line (without the newline): `timestamp`, `level`, `target`,
/// `message`, `fields` (an object), and inside a span `span`, `trace_id`, `span_id`.
pub fn json_line(line: &LogLine) -> String {
    let mut object = Map::new();
    object.insert("timestamp".into(), Value::String(line.timestamp.clone()));
    object.insert("level".into(), Value::String(line.level.clone()));
    object.insert("target".into(), Value::String(line.target.clone()));
    object.insert("message".into(), Value::String(line.message.clone()));
    object.insert("fields".into(), Value::Object(line.fields.clone()));
    if let Some(span) = &line.span {
        object.insert("span".into(), Value::String(span.clone()));
    }
    if let Some((trace_id, span_id)) = &line.trace {
        object.insert("trace_id".into(), Value::String(trace_id.clone()));
        object.insert("span_id".into(), Value::String(span_id.clone()));
    }
    Value::Object(object).to_string()
}

/// The text line's suffix naming the trace and span (empty outside a traced span).
fn text_suffix(trace: Option<&(String, String)>) -> String {
    trace.map_or_else(String::new, |(trace_id, span_id)| {
        format!(" trace_id={trace_id} span_id={span_id}")
    })
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else if !field.name().starts_with("log.") {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The trace and span id of the span entered on this thread. The OpenTelemetry layer
/// makes a span's context the current one while the span is entered (the dispatcher
/// cannot be asked from inside an event's dispatch: it answers with none).
fn current_trace() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The event format of both kinds of line.
pub(crate) struct Lines {
    pub(crate) json: bool,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let current = context.lookup_current();
        let trace = current.as_ref().and_then(|_| current_trace());
        if self.json {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let metadata = event.metadata();
            let line = LogLine {
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                level: metadata.level().to_string(),
                target: metadata.target().to_owned(),
                message: fields.message,
                fields: fields.fields,
                span: current.map(|span| span.name().to_owned()),
                trace,
            };
            return writeln!(writer, "{}", json_line(&line));
        }
        let mut text = String::new();
        Format::default()
            .with_ansi(writer.has_ansi_escapes())
            .format_event(context, Writer::new(&mut text), event)?;
        writeln!(
            writer,
            "{}{}",
            text.trim_end_matches('\n'),
            text_suffix(trace.as_ref())
        )
    }
}

/// The layer writing [`Lines`] to `writer` (stderr in a service).
pub(crate) fn layer<S, W>(json: bool, writer: W) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .event_format(Lines { json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_trace_of_its_span() -> Result<(), serde_json::Error> {
        let mut fields = Map::new();
        fields.insert("sequence".into(), Value::from(42_u64));
        let line = LogLine {
            timestamp: "2026-12-01T04:00:00.000000Z".into(),
            level: "INFO".into(),
            target: "circle_projection::runner".into(),
            message: "applied".into(),
            fields,
            span: Some("project".into()),
            trace: Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into(),
            )),
        };
        let parsed: Value = serde_json::from_str(&json_line(&line))?;
        assert_eq!(
            parsed,
            serde_json::json!({
                "timestamp": "2026-12-01T04:00:00.000000Z",
                "level": "INFO",
                "target": "circle_projection::runner",
                "message": "applied",
                "fields": {"sequence": 42},
                "span": "project",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
            })
        );
        Ok(())
    }

    /// Lines written into a buffer, by a subscriber made as `init` makes it.
    fn logged(json: bool, log: impl FnOnce()) -> String {
        use opentelemetry::propagation::TextMapPropagator as _;
        use opentelemetry::trace::TracerProvider as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(crate::ServiceLayer::default())
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(layer(json, writer));
        tracing::subscriber::with_default(subscriber, || {
            let carrier = std::collections::HashMap::from([(
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            )]);
            let parent =
                opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
            let span = tracing::info_span!("apply", sequence = 7_u64);
            let _ = span.set_parent(parent);
            span.in_scope(log);
            tracing::info!("outside");
        });
        let bytes = buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_inside_a_span_carries_its_trace() -> Result<(), serde_json::Error> {
        let text = logged(true, || tracing::warn!(attempt = 2_u64, "retrying"));
        let lines: Vec<Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(lines.len(), 2, "{text}");
        let inside = &lines[0];
        assert_eq!(inside["message"], "retrying");
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["fields"]["attempt"], 2);
        assert_eq!(inside["span"], "apply");
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let span_id = inside["span_id"].as_str().unwrap_or_default();
        assert!(
            span_id.len() == 16 && span_id != "00f067aa0ba902b7",
            "the line's own span, a child of the caller's: {span_id}"
        );
        assert!(lines[1].get("trace_id").is_none(), "{text}");

        let text = logged(false, || tracing::info!("applied"));
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains("applied")
                && first.contains(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id="),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_line_outside_a_span_has_no_trace() -> Result<(), serde_json::Error> {
        let line = LogLine {
            timestamp: "2026-12-01T04:00:00.000000Z".into(),
            level: "WARN".into(),
            target: "circle_service".into(),
            message: "readiness changed".into(),
            fields: Map::new(),
            span: None,
            trace: None,
        };
        let parsed: Value = serde_json::from_str(&json_line(&line))?;
        assert!(parsed.get("trace_id").is_none() && parsed.get("span").is_none());
        assert_eq!(text_suffix(None), "");
        assert_eq!(
            text_suffix(Some(&("ab".into(), "cd".into()))),
            " trace_id=ab span_id=cd"
        );
        Ok(())
    }
}
