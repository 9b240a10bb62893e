//! Telemetry, wired in one place: logs through `tracing` (text or JSON on stderr), OpenTelemetry
//! traces, and metrics; exported over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_*`
//! variables name an endpoint (service name from `OTEL_SERVICE_NAME`). With no such variable
//! nothing is exported: plain logs only.
//!
//! - **Traces**: one server span per RPC, named by its method, carrying `rpc.*` attributes, the
//!   caller's role and the gRPC status code, never a request field. A W3C `traceparent` sent by
//!   the caller makes it the parent, so a partner's trace continues into ours. Store calls and
//!   report stages are child spans. Spans get trace ids even when nothing is exported, so that
//!   log lines and audit events of one call share its trace id.
//! - **Metrics**: `rpc.server.calls` (count) and `rpc.server.duration` (seconds, to the end of
//!   the response), by method and status code, refused calls included; a stream's code is read
//!   from its trailers. The store and the report runner define their own instruments with the
//!   OpenTelemetry API (pool, writes, report runs): this module installs the provider they use.
//! - **Logs**: every line within a call carries its `trace_id` (JSON: top-level `trace_id` and
//!   `span_id`); fields whose names denote identity or secrets ([`is_sensitive`]) are written
//!   `[redacted]`, a second guard behind the rule that such values are never logged.
//!
//! The RPC layer ([`RpcLayer`]) and the span of each call ([`rpc_span`]) are used by the server
//! whether or not an exporter is configured.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use anyhow::Context as _;
use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
    propagation::Extractor,
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider,
};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::LevelFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::{Format, Json, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// Name of the instrumentation scope of our spans and metrics.
pub const SCOPE: &str = "observatory";

/// The providers in use, flushed and shut down by [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
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

/// Sets up logging (filter from `OBSERVATORY_LOG`, default `info`), spans and, when `env`
/// configures OTLP, trace and metric export. Call once, inside the Tokio runtime.
pub fn init(format: &LogFormat, env: &HashMap<String, String>) -> anyhow::Result<Telemetry> {
    install_propagator();
    let filter = EnvFilter::try_new(env.get("OBSERVATORY_LOG").map(String::as_str).unwrap_or("info"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (tracer_provider, meter_provider) = if otlp_configured(env) {
        let (tracer_provider, meter_provider) = otlp_exporters(None)?;
        (tracer_provider.build(), Some(meter_provider.build()))
    } else {
        // Spans still get ids, for the logs and the audit trail; they are dropped when they end.
        (tracer_provider().build(), None)
    };
    if let Some(meter_provider) = &meter_provider {
        global::set_meter_provider(meter_provider.clone());
    }
    // Colours only on a terminal: files and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(format, std::io::stderr, ansi, filter, &tracer_provider)
        .try_init()
        .context("cannot install the log subscriber")?;
    Ok(Telemetry {
        tracer_provider,
        meter_provider,
    })
}

/// The service's resource: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, read by the SDK.
fn resource() -> Resource {
    Resource::builder().build()
}

/// Links a span may keep: a commit group links to each call it serves, up to the writer's
/// largest group (the SDK's default keeps 128).
const MAX_LINKS: u32 = 256;

/// A tracer provider of the service's resource, without exporter yet.
fn tracer_provider() -> opentelemetry_sdk::trace::TracerProviderBuilder {
    SdkTracerProvider::builder()
        .with_resource(resource())
        .with_max_links_per_span(MAX_LINKS)
}

/// Trace and meter providers exporting over OTLP/gRPC, to `endpoint` or else where the
/// `OTEL_EXPORTER_OTLP_*` variables say. Builders, so that tests may add exporters of their
/// own. Call inside the Tokio runtime that is to carry the exports.
pub fn otlp_exporters(
    endpoint: Option<&str>,
) -> anyhow::Result<(
    opentelemetry_sdk::trace::TracerProviderBuilder,
    opentelemetry_sdk::metrics::MeterProviderBuilder,
)> {
    use opentelemetry_otlp::WithExportConfig;
    let mut spans = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        spans = spans.with_endpoint(endpoint);
        metrics = metrics.with_endpoint(endpoint);
    }
    let spans = spans.build().context("cannot set up the OTLP trace exporter")?;
    let metrics = metrics.build().context("cannot set up the OTLP metric exporter")?;
    Ok((
        tracer_provider().with_batch_exporter(Redacting(spans)),
        SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(resource()),
    ))
}

/// The subscriber of the process: log lines to `writer` (text, coloured when `ansi`, or one
/// JSON object a line with the `trace_id` and `span_id` of the event's span), filtered by
/// `log_filter`, sensitive fields redacted in both; and spans of `info` level and above turned
/// into OpenTelemetry spans of `provider`, whatever the log level.
pub fn subscriber<W>(
    format: &LogFormat,
    writer: W,
    ansi: bool,
    log_filter: EnvFilter,
    provider: &SdkTracerProvider,
) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::field::MakeExt;
    let installed = Arc::new(OnceLock::new());
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(TracedJson {
                inner: tracing_subscriber::fmt::format().json(),
                dispatch: Arc::clone(&installed),
            })
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
                    "message" => write!(w, "{value:?}"),
                    name if is_sensitive(name) => write!(w, "{name}={REDACTED}"),
                    name => write!(w, "{name}={value:?}"),
                })
                .delimited(" "),
            )
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
    };
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_filter(LevelFilter::INFO);
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(logs.with_filter(log_filter))
            .with(traces),
    );
    // Log lines look their spans' trace ids up through it; a weak handle, so that a dropped
    // subscriber (tests) is not kept alive by its own formatter.
    let _ = installed.set(dispatch.downgrade());
    dispatch
}

/// What a sensitive field's value is replaced with in the logs.
pub const REDACTED: &str = "[redacted]";

/// Whether a field named `name` (its last dotted segment, in any case) may hold identity or a
/// secret: identity fields, pseudonyms, IdMR, NIR, tokens, keys, passwords.
pub fn is_sensitive(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "last_name",
        "first_name",
        "birth_name",
        "birth_date",
        "identity",
        "nir",
        "idmr",
        "pseudonym",
        "authorization",
        "bearer",
        "token",
        "key",
        "pseudonym_key",
        "private_key",
    ];
    let name = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    NAMES.contains(&name.as_str()) || ["secret", "password", "passphrase"].iter().any(|w| name.contains(w))
}

/// Replaces the values of sensitive keys, at any depth.
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_sensitive(key) {
                    *value = serde_json::Value::from(REDACTED);
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Replaces the values of sensitive attributes.
fn redact_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes.iter_mut().filter(|kv| is_sensitive(kv.key.as_str())) {
        kv.value = opentelemetry::Value::from(REDACTED);
    }
}

/// A span exporter that redacts sensitive span and event attributes before they leave the
/// process: the second guard of the logs, for traces.
#[derive(Debug)]
pub struct Redacting<E>(pub E);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter for Redacting<E> {
    async fn export(
        &self,
        mut batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        for span in &mut batch {
            redact_attributes(&mut span.attributes);
            for event in &mut span.events.events {
                redact_attributes(&mut event.attributes);
            }
        }
        self.0.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The JSON line of `tracing_subscriber`, with the trace and span ids of the event's span and
/// sensitive fields redacted.
struct TracedJson {
    inner: Format<Json>,
    /// The subscriber this formatter is part of: the dispatcher in force while an event is
    /// being written is a no-op one, to prevent recursion.
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

impl<S, N> FormatEvent<S, N> for TracedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&line) else {
            // Never reached with the JSON formatter; if it were, nothing unredacted gets out.
            return writeln!(
                writer,
                "{{\"level\":\"{}\",\"message\":\"unformattable log event\"}}",
                event.metadata().level()
            );
        };
        redact(&mut value);
        let dispatch = self.dispatch.get().and_then(tracing::dispatcher::WeakDispatch::upgrade);
        if let (Some(object), Some(span), Some(dispatch)) = (value.as_object_mut(), ctx.parent_span(), dispatch)
            && let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        {
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                object.insert("trace_id".into(), sc.trace_id().to_string().into());
                object.insert("span_id".into(), sc.span_id().to_string().into());
            }
        }
        writeln!(writer, "{value}")
    }
}

impl Telemetry {
    /// Exports what is pending and stops the exporters.
    pub fn shutdown(self) {
        if let Err(e) = self.tracer_provider.shutdown() {
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
/// with the `rpc.*` attributes; role, status code and trace id are recorded as the call goes. A
/// caller's `traceparent` makes it the span's parent. Request bodies are never recorded.
pub fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = method_label(request.uri().path());
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, name));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        role = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    // Without an OpenTelemetry layer there is nothing to parent: that is fine.
    let _ = span.set_parent(parent);
    span
}

/// What spans and metrics call the method of `path`: the path itself for a method the server
/// serves, `_OTHER` for any other, so that made-up paths cannot multiply names and labels.
fn method_label(path: &str) -> &str {
    if observatory_grpc::access::is_known_path(path) {
        path
    } else {
        OTHER
    }
}

/// The name of every method the server does not serve, in spans and metrics.
const OTHER: &str = "_OTHER";

/// The trace id of `span`, when it has one (an OpenTelemetry layer is installed).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The gRPC status code in `headers` (a trailers-only response's head, or trailers).
fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// Whether a server span ending with `code` is an error, as the OpenTelemetry conventions for
/// gRPC servers say: the server's faults, not the caller's.
fn is_server_error(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    )
}

/// Counts and times every call, by method and status code, records the code on its span, and
/// hands the call's trace id to the services (for the audit trail). Outermost layer: refused
/// calls are counted too.
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
                .with_description(
                    "time from a gRPC call's arrival to the end of its response, by method and status code",
                )
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

/// A call in progress: counted and its span given its code once the response has ended.
struct CallEnd {
    layer: RpcLayer,
    method: String,
    started: Instant,
    /// Kept open until the response ends, so that a stream's span covers the stream.
    span: tracing::Span,
}

impl CallEnd {
    fn finish(self, code: tonic::Code) {
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        let attributes = [
            KeyValue::new("rpc.method", self.method),
            KeyValue::new("rpc.grpc.status", observatory_grpc::error::code_name(code)),
        ];
        self.layer.calls.add(1, &attributes);
        self.layer
            .duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

/// A response body that finishes its call when the trailers (with the status code) go out, or
/// as CANCELLED when dropped before its end (the caller went away).
struct Observed {
    inner: tonic::body::Body,
    call: Option<CallEnd>,
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|trailers| status_code(trailers).unwrap_or(tonic::Code::Ok)),
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            // gRPC ends with trailers; a body ending without them ended with no error either.
            Poll::Ready(None) => Some(tonic::Code::Ok),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(tonic::Code::Cancelled);
        }
    }
}

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

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let method = method_label(req.uri().path()).to_owned();
        let started = Instant::now();
        Box::pin(async move {
            // Polled inside the call's span (see `rpc_span`).
            let span = tracing::Span::current();
            if let Some(trace_id) = trace_id(&span) {
                span.record("trace_id", trace_id.as_str());
                req.extensions_mut().insert(observatory_grpc::CallTraceId(trace_id));
            }
            let response = inner.call(req).await?;
            let call = CallEnd {
                layer,
                method,
                started,
                span,
            };
            // A trailers-only response (an error before any message) carries its code in its head.
            if let Some(code) = status_code(response.headers()) {
                call.finish(code);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                tonic::body::Body::new(Observed {
                    inner,
                    call: Some(call),
                })
            }))
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
    fn status_codes_come_from_the_head_or_the_trailers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(
            status_code(&headers).map(observatory_grpc::error::code_name),
            Some("PERMISSION_DENIED")
        );
        assert!(!is_server_error(tonic::Code::PermissionDenied));
        assert!(is_server_error(tonic::Code::DataLoss));
    }

    #[test]
    fn identity_and_secret_fields_are_sensitive_and_others_are_not() {
        for name in [
            "last_name",
            "patient.first_name",
            "BIRTH_DATE",
            "idmr",
            "nir",
            "pseudonym",
            "token",
            "client_secret",
            "db_password",
            "authorization",
            "key",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "message",
            "otel.name",
            "rpc.method",
            "token_id",
            "role",
            "trace_id",
            "run_id",
            "period",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    /// Log lines written by `log_layer` in `format` while `f` runs under a subscriber with an
    /// OpenTelemetry layer (no exporter).
    fn logged(format: LogFormat, f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = SdkTracerProvider::builder().build();
        let dispatch = subscriber(
            &format,
            move || writer.clone(),
            false,
            EnvFilter::new("info"),
            &provider,
        );
        tracing::dispatcher::with_default(&dispatch, f);
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    /// A request carrying `traceparent` with `trace_id`.
    fn traced_request(trace_id: &str) -> http::Request<()> {
        http::Request::builder()
            .uri("/observatory.v1.RegistryService/GetPatient")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .body(())
            .unwrap()
    }

    #[test]
    fn json_log_lines_carry_the_callers_trace_id_and_no_sensitive_value() {
        install_propagator();
        let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
        let out = logged(LogFormat::Json, || {
            let span = rpc_span(&traced_request(caller));
            let _entered = span.enter();
            let child = tracing::info_span!("store.get", kind = "patient");
            let _child = child.enter();
            tracing::info!(
                last_name = "Plumqvarte",
                token = "s3cr3t",
                role = "prescriber",
                "looked up"
            );
        });
        let line: serde_json::Value = serde_json::from_str(out.lines().next().expect("one line")).unwrap();
        assert_eq!(line["trace_id"], caller, "{line}");
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
        assert_eq!(line["fields"]["message"], "looked up");
        assert_eq!(line["fields"]["last_name"], REDACTED);
        assert_eq!(line["fields"]["token"], REDACTED);
        assert_eq!(line["fields"]["role"], "prescriber");
        assert_eq!(line["span"]["name"], "store.get");
        assert!(!out.contains("Plumqvarte") && !out.contains("s3cr3t"), "{out}");
    }

    #[test]
    fn text_log_lines_redact_sensitive_values() {
        let out = logged(LogFormat::Text, || {
            let span = tracing::info_span!("grpc", first_name = "Ysoline");
            let _entered = span.enter();
            tracing::warn!(idmr = "00000000000000001234", attempt = 2, "refused");
        });
        assert!(out.contains("refused") && out.contains("attempt=2"), "{out}");
        assert!(
            out.contains("idmr=[redacted]") && out.contains("first_name=[redacted]"),
            "{out}"
        );
        assert!(!out.contains("Ysoline") && !out.contains("1234"), "{out}");
    }

    #[test]
    fn exported_spans_and_events_carry_no_sensitive_value() {
        let exported = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = tracer_provider()
            .with_simple_exporter(Redacting(exported.clone()))
            .build();
        let dispatch = subscriber(&LogFormat::Text, std::io::sink, false, EnvFilter::new("off"), &provider);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("store.get", last_name = "Plumqvarte", kind = "patient");
            let _entered = span.enter();
            tracing::info!(token = "obs_s3cr3t", attempt = 2, "looked up");
        });
        let spans = exported.get_finished_spans().expect("spans");
        let text = format!("{spans:?}");
        assert!(text.contains("patient") && text.contains("attempt"), "{text}");
        assert!(!text.contains("Plumqvarte") && !text.contains("obs_s3cr3t"), "{text}");
        assert!(text.contains(REDACTED), "{text}");
    }

    #[test]
    fn methods_the_server_does_not_serve_are_one_label() {
        assert_eq!(
            method_label("/observatory.v1.RegistryService/GetPatient"),
            "/observatory.v1.RegistryService/GetPatient"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for made_up in ["/observatory.v1.RegistryService/DropTables", "/x/y", "/", ""] {
            assert_eq!(method_label(made_up), OTHER, "{made_up}");
        }
    }

    #[test]
    fn every_span_of_a_call_gets_a_trace_id_even_without_export() {
        install_propagator();
        let mut seen = None;
        logged(LogFormat::Text, || {
            let span = rpc_span(&http::Request::builder().uri("/s/M").body(()).unwrap());
            seen = trace_id(&span);
        });
        assert_eq!(seen.map(|t| t.len()), Some(32));
    }
}
