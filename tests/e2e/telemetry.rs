//! OpenTelemetry, through in-memory exporters and an OTLP receiver on loopback: a call carrying a
//! W3C `traceparent` yields one server span in the caller's trace, named by its method, with its
//! role and status code and no identifier, exported over OTLP; a short load shows in the metrics
//! as calls and durations by method and code.

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, reference_service_client::ReferenceServiceClient};
use opentelemetry::{Value, trace::SpanKind};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use tonic::{Code, service::interceptor::InterceptedService};

use crate::helpers::{Backend, Bearer, rpps, spawn_app, telemetry, token_for};
use crate::on_both_backends;

on_both_backends!(a_call_continues_its_callers_trace_and_is_counted_by_method_and_code);

fn with_traceparent<T>(message: T, trace_id: &str, parent_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().expect("metadata"),
    );
    request
}

/// The value of the last exported point of `metric` with these method and status attributes:
/// (sum of a counter, count of a histogram).
fn metric_value(t: &crate::helpers::Telemetry, metric: &str, method: &str, status: &str) -> u64 {
    t.meter_provider.force_flush().expect("flush metrics");
    let exported = t.metrics.get_finished_metrics().expect("metrics");
    let matches = |attributes: Vec<&opentelemetry::KeyValue>| {
        attributes
            .iter()
            .any(|kv| kv.key.as_str() == "rpc.method" && kv.value.as_str() == method)
            && attributes
                .iter()
                .any(|kv| kv.key.as_str() == "rpc.grpc.status" && kv.value.as_str() == status)
    };
    let mut value = 0;
    for resource in &exported {
        for scope in resource.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == metric) {
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for point in sum.data_points().filter(|p| matches(p.attributes().collect())) {
                            value = point.value();
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                        for point in histogram.data_points().filter(|p| matches(p.attributes().collect())) {
                            value = point.count();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    value
}

async fn a_call_continues_its_callers_trace_and_is_counted_by_method_and_code(backend: Backend) {
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    // Fresh ids: a UUIDv7 is 16 bytes, its last 8 random.
    let trace_id = hex::encode(uuid::Uuid::now_v7().as_bytes());
    let parent_id = hex::encode(&uuid::Uuid::now_v7().as_bytes()[8..]);

    app.reference
        .list_centres(with_traceparent(
            pb::ListCentresRequest::default(),
            &trace_id,
            &parent_id,
        ))
        .await
        .expect("list centres");
    // An identity registration in the same trace: its span holds no identity field.
    let registration = pb::RegisterPatientRequest {
        idempotency_key: "traced".into(),
        subject: Some(pb::register_patient_request::Subject::Identity(pb::Identity {
            last_name: "Plumqvarte".into(),
            first_name: "Ysoline".into(),
            birth_date: "2014-08-09".into(),
            sex: pb::Sex::Female as i32,
        })),
        region_code: "11".into(),
        ..Default::default()
    };
    app.registry
        .register_patient(with_traceparent(registration, &trace_id, &parent_id))
        .await
        .expect("register");

    let spans = t.spans.get_finished_spans().expect("spans");
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .collect();
    let listed = ours
        .iter()
        .find(|s| s.name == "observatory.v1.ReferenceService/ListCentres")
        .unwrap_or_else(|| panic!("no span of the call in the caller's trace: {ours:#?}"));
    assert_eq!(
        listed.parent_span_id.to_string(),
        parent_id,
        "the caller's span is the parent"
    );
    assert_eq!(listed.span_kind, SpanKind::Server);
    let attribute = |name: &str| {
        listed
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == name)
            .map(|kv| kv.value.clone())
            .unwrap_or_else(|| panic!("no {name} on {listed:#?}"))
    };
    assert_eq!(attribute("rpc.system"), Value::from("grpc"));
    assert_eq!(attribute("rpc.service"), Value::from("observatory.v1.ReferenceService"));
    assert_eq!(attribute("rpc.method"), Value::from("ListCentres"));
    assert_eq!(attribute("rpc.grpc.status_code"), Value::I64(0));
    assert_eq!(attribute("role"), Value::from("admin"));
    assert!(
        ours.iter()
            .any(|s| s.name == "observatory.v1.RegistryService/RegisterPatient"),
        "{ours:#?}"
    );
    // No identifier in any span of the process.
    for span in &spans {
        let text = format!("{:?} {:?}", span.name, span.attributes);
        for value in ["Plumqvarte", "Ysoline", "2014-08-09"] {
            assert!(!text.contains(value), "a span holds {value}: {text}");
        }
    }

    // The same span reached the OTLP receiver on loopback, through the exporter `serve` sets
    // up, with the trace id the caller sent.
    t.flush();
    let exported: Vec<(String, String)> = t
        .received
        .traces
        .lock()
        .expect("received")
        .iter()
        .flat_map(|request| request.resource_spans.iter())
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter())
        .map(|span| (hex::encode(&span.trace_id), span.name.clone()))
        .collect();
    assert!(
        exported.contains(&(
            trace_id.clone(),
            "observatory.v1.ReferenceService/ListCentres".to_owned()
        )),
        "not received over OTLP: {} spans",
        exported.len()
    );

    // A short load: five calls answered NOT_FOUND, one refused. Counts only grow, and other
    // tests may call the same methods meanwhile: at least what this test did.
    let method = "/observatory.v1.ReferenceService/GetPrescriber";
    let before = metric_value(t, "rpc.server.calls", method, "NOT_FOUND");
    for n in 0..5 {
        let status = app
            .reference
            .get_prescriber(pb::GetPrescriberRequest { rpps: rpps(900 + n) })
            .await
            .expect_err("unknown prescriber");
        assert_eq!(status.code(), Code::NotFound);
    }
    let analyst = token_for(&app.store, Role::Analyst).await;
    let refused = ReferenceServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&analyst)))
        .create_centre(pb::CreateCentreRequest::default())
        .await
        .expect_err("an analyst creating a centre");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(metric_value(t, "rpc.server.calls", method, "NOT_FOUND") >= before + 5);
    assert!(metric_value(t, "rpc.server.duration", method, "NOT_FOUND") >= before + 5);
    assert!(
        metric_value(
            t,
            "rpc.server.calls",
            "/observatory.v1.ReferenceService/CreateCentre",
            "PERMISSION_DENIED"
        ) >= 1
    );
    // Metrics reached the receiver too.
    t.flush();
    let names: Vec<String> = t
        .received
        .metrics
        .lock()
        .expect("received")
        .iter()
        .flat_map(|request| request.resource_metrics.iter())
        .flat_map(|r| r.scope_metrics.iter())
        .flat_map(|s| s.metrics.iter())
        .map(|m| m.name.clone())
        .collect();
    for metric in ["rpc.server.calls", "rpc.server.duration"] {
        assert!(
            names.iter().any(|n| n == metric),
            "{metric} not received over OTLP: {names:?}"
        );
    }
    app.stop().await;
}
