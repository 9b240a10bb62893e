//! Telemetry, wired in one place: logs through `tracing` (text or JSON on stderr) and, when an
//! OTLP endpoint is configured by the standard `OTEL_EXPORTER_OTLP_*` variables, OpenTelemetry
//! traces and metrics exported over OTLP/gRPC (service name from `OTEL_SERVICE_NAME`). With no
//! such variable there is no exporter: plain logs only.
//!
//! - **Traces**: one server span per RPC, named by its method, carrying `rpc.*` attributes, the
//!   caller's role and the gRPC status code, never a request field. A W3C `traceparent` sent by
//!   the caller makes it the parent, so a partner's trace continues into ours. Store queries and
//!   report stages are child spans.
//! - **Metrics**: `rpc.server.calls` (count) and `rpc.server.duration` (seconds), by method and
//!   status code, refused calls included.
//!
//! The RPC layer ([`RpcLayer`]) and the span of each call ([`rpc_span`]) are used by the server
//! whether or not an exporter is configured: without one, the OpenTelemetry API is a no-op.

use std::{
    collections::HashMap,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use anyhow::Context as _;
use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
    propagation::Extractor,
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Name of the instrumentation scope of our spans and metrics.
pub const SCOPE: &str = "observatory";

/// The exporters in use, flushed and shut down by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

/// Whether `env` configures an OTLP endpoint.
pub fn otlp_configured(env: &HashMap<String, String>) -> bool {
    env.iter().any(|(k, v)| {
        !v.trim().is_empty()
            && matches!(
                k.as_str(),
                "OTEL_EXPORTER_OTLP_ENDPOINT"
                    | "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                    | "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
            )
    })
}

/// Installs the W3C trace-context propagator, which reads `traceparent` from incoming calls.
pub fn install_propagator() {
    global::set_text_map_propagator(TraceContextPropagator::new());
}

/// Sets up logging (filter from `OBSERVATORY_LOG`, default `info`) and, when `env` configures
/// OTLP, trace and metric export. Call once, inside the Tokio runtime.
pub fn init(format: &LogFormat, env: &HashMap<String, String>) -> anyhow::Result<Telemetry> {
    install_propagator();
    let filter = || {
        EnvFilter::try_new(env.get("OBSERVATORY_LOG").map(String::as_str).unwrap_or("info"))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        // Colours only on a terminal: files and log collectors get plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let mut telemetry = Telemetry::default();
    let traces = if otlp_configured(env) {
        let (tracer_provider, meter_provider) = otlp_exporters(None)?;
        let tracer_provider = tracer_provider.build();
        let meter_provider = meter_provider.build();
        global::set_meter_provider(meter_provider.clone());
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer_provider.tracer(SCOPE))
            .with_filter(filter());
        telemetry.tracer_provider = Some(tracer_provider);
        telemetry.meter_provider = Some(meter_provider);
        Some(layer)
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter()))
        .with(traces)
        .try_init()
        .context("cannot install the log subscriber")?;
    Ok(telemetry)
}

/// Trace and meter providers exporting over OTLP/gRPC, to `endpoint` or else where the
/// `OTEL_EXPORTER_OTLP_*` variables say, with the resource `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` describe. Builders, so that tests may add exporters of their own.
/// Call inside the Tokio runtime that is to carry the exports.
pub fn otlp_exporters(
    endpoint: Option<&str>,
) -> anyhow::Result<(
    opentelemetry_sdk::trace::TracerProviderBuilder,
    opentelemetry_sdk::metrics::MeterProviderBuilder,
)> {
    use opentelemetry_otlp::WithExportConfig;
    let resource = Resource::builder().build();
    let mut spans = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        spans = spans.with_endpoint(endpoint);
        metrics = metrics.with_endpoint(endpoint);
    }
    let spans = spans.build().context("cannot set up the OTLP trace exporter")?;
    let metrics = metrics.build().context("cannot set up the OTLP metric exporter")?;
    Ok((
        SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone()),
        SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(resource),
    ))
}

impl Telemetry {
    /// Exports what is pending and stops the exporters.
    pub fn shutdown(self) {
        if let Some(p) = self.tracer_provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("cannot flush traces: {e}");
        }
        if let Some(p) = self.meter_provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("cannot flush metrics: {e}");
        }
    }
}

/// Reads W3C trace context from request headers (gRPC metadata).
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span of one call: named by its method (`observatory.v1.RegistryService/GetPatient`),
/// with the `rpc.*` attributes; role and status code are recorded as the call goes. A caller's
/// `traceparent` makes it the span's parent. Request bodies are never recorded.
pub fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        role = tracing::field::Empty,
    );
    let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    // Without an OpenTelemetry layer (no exporter) there is nothing to parent: that is fine.
    let _ = span.set_parent(parent);
    span
}

/// The gRPC status code of a response head: `grpc-status` when the call ended at once (errors),
/// else 0 (OK; a stream failing later is counted as started).
fn status_code(headers: &http::HeaderMap) -> i32 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Name of a gRPC status code, as metrics label it.
fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts and times every call, by method and status code, and records the code on its span.
/// Outermost layer: refused calls are counted too.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    calls: Counter<u64>,
    duration: Histogram<f64>,
}

impl RpcLayer {
    /// Instruments from the global meter provider (a no-op one when none is configured).
    pub fn new() -> Self {
        let meter = global::meter(SCOPE);
        Self {
            calls: meter
                .u64_counter("rpc.server.calls")
                .with_description("gRPC calls answered, by method and status code")
                .build(),
            duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("s")
                .with_description("time to answer a gRPC call (to the start of a stream), by method and status code")
                .build(),
        }
    }
}

impl Default for RpcLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rpc<S> {
    inner: S,
    layer: RpcLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Rpc<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        Box::pin(async move {
            let answer = inner.call(req).await;
            if let Ok(response) = &answer {
                let code = status_code(response.headers());
                tracing::Span::current().record("rpc.grpc.status_code", code);
                let attributes = [
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("rpc.grpc.status", code_name(code)),
                ];
                layer.calls.add(1, &attributes);
                layer.duration.record(started.elapsed().as_secs_f64(), &attributes);
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_endpoint_turns_export_on() {
        let env = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(!otlp_configured(&HashMap::new()));
        assert!(!otlp_configured(&env("OTEL_EXPORTER_OTLP_ENDPOINT", " ")));
        assert!(!otlp_configured(&env("OTEL_SERVICE_NAME", "observatory")));
        assert!(otlp_configured(&env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317"
        )));
        assert!(otlp_configured(&env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317"
        )));
    }

    #[test]
    fn status_codes_come_from_the_response_head() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(code_name(status_code(&headers)), "OK");
        headers.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(code_name(status_code(&headers)), "PERMISSION_DENIED");
    }
}
