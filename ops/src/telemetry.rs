//! Logs and traces, set up once per binary.
//!
//! - Log lines: JSON (one object per line, with the fields of the current span, so the
//!   correlation id of a request is on every line it causes) or human-readable.
//! - Traces: off unless `KEEL_OTLP_ENDPOINT` names an OpenTelemetry collector's OTLP/HTTP
//!   traces endpoint (e.g. `http://otel-collector:4318/v1/traces`); spans are then batched
//!   and exported under the service's name.
//! - W3C trace context: [`set_parent`] continues a trace from a `traceparent` (an HTTP
//!   header, an event's metadata, a Kafka header) and [`current_traceparent`] hands the
//!   current span's context on, so a trace runs HTTP → event → Kafka → projector and saga.

use std::str::FromStr;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::env::{ConfigError, Lookup};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("unknown format {other:?}; expected json or pretty")),
        }
    }
}

/// Logging and tracing settings of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `service.name` of exported spans.
    pub service: &'static str,
    /// Log line format.
    pub format: LogFormat,
    /// `EnvFilter` directives (`RUST_LOG`).
    pub filter: String,
    /// OTLP/HTTP traces endpoint; `None` = no export.
    pub otlp_endpoint: Option<String>,
}

impl TelemetrySettings {
    /// `format`, filter `info`, no export: what [`from_lookup`](Self::from_lookup) gives
    /// when nothing is set.
    pub fn new(service: &'static str, format: LogFormat) -> Self {
        Self {
            service,
            format,
            filter: "info".into(),
            otlp_endpoint: None,
        }
    }

    /// `KEEL_LOG_FORMAT` (default `default_format`), `RUST_LOG` (default `info`) and
    /// `KEEL_OTLP_ENDPOINT` (default: no export).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn from_lookup(
        service: &'static str,
        default_format: LogFormat,
        lookup: Lookup<'_>,
    ) -> Result<Self, ConfigError> {
        let format = match lookup("KEEL_LOG_FORMAT") {
            None => default_format,
            Some(value) => value.parse().map_err(|reason| ConfigError {
                var: "KEEL_LOG_FORMAT",
                reason,
            })?,
        };
        let otlp_endpoint = lookup("KEEL_OTLP_ENDPOINT")
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        if let Some(endpoint) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError {
                var: "KEEL_OTLP_ENDPOINT",
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        let mut settings = Self::new(service, format);
        if let Some(filter) = lookup("RUST_LOG") {
            settings.filter = filter;
        }
        settings.otlp_endpoint = otlp_endpoint;
        Ok(settings)
    }

    /// [`from_lookup`](Self::from_lookup) on the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn from_env(service: &'static str, default_format: LogFormat) -> Result<Self, ConfigError> {
        Self::from_lookup(service, default_format, &|name| std::env::var(name).ok())
    }
}

/// Logging or tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter cannot be built.
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the trace exporter alive; dropping it flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {error}");
        }
    }
}

/// Installs the global subscriber (and the W3C propagator). Call once, from `main`, and
/// keep the returned guard until the process ends.
///
/// # Errors
/// [`TelemetryError`].
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.filter)?;
    let provider = match &settings.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(
                        Resource::builder()
                            .with_service_name(settings.service)
                            .build(),
                    )
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(settings.service))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init()?,
    }
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(%endpoint, service = settings.service, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// The remote context a well-formed W3C `traceparent` names.
fn remote_context(traceparent: Option<&str>) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent?.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the trace in `traceparent` (W3C), if it is well-formed and
/// tracing is exported; otherwise does nothing.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = remote_context(traceparent) {
        // Only fails for a span that is already closed or not recorded by the OTel layer.
        let _ = span.set_parent(context);
    }
}

/// [`set_parent`] from a request's `traceparent` header.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok());
    set_parent(span, traceparent);
}

/// Links `span` to the trace in `traceparent`: for a span that handles many messages at
/// once (a projector batch), each from its own trace.
pub fn add_link(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = remote_context(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}

/// The W3C `traceparent` of the current span, when tracing is exported.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetrySettings::from_lookup("test", LogFormat::Pretty, &|name| vars.get(name).cloned())
    }

    #[test]
    fn settings_default_to_no_export_and_check_the_endpoint() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            (s.format, s.filter.as_str(), s.otlp_endpoint),
            (LogFormat::Pretty, "info", None)
        );
        let s = settings(&[
            ("KEEL_LOG_FORMAT", "json"),
            ("KEEL_OTLP_ENDPOINT", "http://collector:4318/v1/traces"),
        ])
        .unwrap();
        assert_eq!(s.format, LogFormat::Json);
        assert_eq!(
            s.otlp_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            settings(&[("KEEL_OTLP_ENDPOINT", "collector:4318")])
                .unwrap_err()
                .var,
            "KEEL_OTLP_ENDPOINT"
        );
        assert_eq!(
            settings(&[("KEEL_LOG_FORMAT", "xml")]).unwrap_err().var,
            "KEEL_LOG_FORMAT"
        );
    }

    #[test]
    fn a_trace_continues_from_a_traceparent_and_is_handed_on() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));

        let handed_on = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("project_event");
            set_parent(&span, Some(TRACEPARENT));
            let batch = tracing::info_span!("projector_batch");
            add_link(&batch, Some(TRACEPARENT));
            add_link(&batch, Some("not a traceparent"));
            drop(batch);
            let _entered = span.enter();
            current_traceparent()
        });
        provider.force_flush().unwrap();

        let handed_on = handed_on.expect("a traceparent inside a traced span");
        assert!(
            handed_on.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{handed_on}"
        );
        assert!(
            !handed_on.contains("00f067aa0ba902b7"),
            "the child's own span id: {handed_on}"
        );
        let spans = exporter.get_finished_spans().unwrap();
        let event = spans.iter().find(|s| s.name == "project_event").unwrap();
        assert_eq!(
            event.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(event.parent_span_id.to_string(), "00f067aa0ba902b7");
        let batch = spans.iter().find(|s| s.name == "projector_batch").unwrap();
        assert_eq!(
            batch.links.links.len(),
            1,
            "only the valid traceparent is linked"
        );
    }

    #[test]
    fn without_export_nothing_is_invented() {
        assert_eq!(current_traceparent(), None);
        set_parent(&tracing::Span::none(), Some(TRACEPARENT));
    }
}
