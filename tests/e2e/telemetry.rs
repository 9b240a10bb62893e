//! OpenTelemetry, through in-memory exporters and an OTLP receiver on loopback:
//! - a call carrying a W3C `traceparent` yields one server span in the caller's trace, named by
//!   its method, with its role and status code and no identifier, exported over OTLP; a short
//!   load shows in the metrics as calls and durations by method and code;
//! - the store's work is traced under the call (the commit group in a trace of its own, linked
//!   to its callers), and the audit trail records the call's trace id, sent or not;
//! - a report run is a trace of its own linked to the call that asked for it, its stages child
//!   spans; a stream that fails after it started is counted with its final code.
//!
//! Telemetry is process-wide and other tests run meanwhile: spans are found by their trace ids,
//! counts checked as "at least what this test did".

use std::{collections::HashMap, time::Duration};

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, reference_service_client::ReferenceServiceClient};
use opentelemetry::{Value, trace::SpanKind};
use opentelemetry_sdk::{
    metrics::data::{AggregatedMetrics, MetricData},
    trace::SpanData,
};
use tonic::{Code, service::interceptor::InterceptedService};

use crate::helpers::{Backend, Bearer, Telemetry, rpps, spawn_app, telemetry, token_for};
use crate::on_both_backends;
use crate::reports_api::{download, forge_activity_table, q3, seed_registry, wait_for_end};

on_both_backends!(
    a_call_continues_its_callers_trace_and_is_counted_by_method_and_code,
    store_work_is_traced_under_its_call_and_the_audit_trail_keeps_the_calls_trace_id,
    a_report_run_is_traced_apart_linked_to_its_request_and_a_failed_stream_counts_its_final_code,
);

/// A fresh (trace id, parent span id) pair: a UUIDv7 is 16 bytes, its last 8 random.
fn fresh_trace() -> (String, String) {
    (
        hex::encode(uuid::Uuid::now_v7().as_bytes()),
        hex::encode(&uuid::Uuid::now_v7().as_bytes()[8..]),
    )
}

fn with_traceparent<T>(message: T, (trace_id, parent_id): &(String, String)) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().expect("metadata"),
    );
    request
}

/// The first finished span that `find` picks, waiting up to 10 s for it to end.
async fn span(t: &Telemetry, what: &str, find: impl Fn(&SpanData) -> bool) -> SpanData {
    for _ in 0..100 {
        if let Some(span) = t.spans.get_finished_spans().expect("spans").into_iter().find(&find) {
            return span;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {what} span ended within 10 s");
}

fn attribute(span: &SpanData, name: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == name)
        .map(|kv| kv.value.clone())
}

fn in_trace(span: &SpanData, trace_id: &str) -> bool {
    span.span_context.trace_id().to_string() == trace_id
}

/// The latest exported value of each data point of `metric` (sum of a counter or value of a
/// gauge; count of a histogram), with its attributes.
fn points(t: &Telemetry, metric: &str) -> Vec<(HashMap<String, String>, f64)> {
    t.meter_provider.force_flush().expect("flush metrics");
    let exported = t.metrics.get_finished_metrics().expect("metrics");
    let mut latest: Vec<(HashMap<String, String>, f64)> = Vec::new();
    let mut keep =
        |attributes: HashMap<String, String>, value: f64| match latest.iter_mut().find(|(a, _)| *a == attributes) {
            Some(point) => point.1 = value,
            None => latest.push((attributes, value)),
        };
    let labels = |kvs: Vec<&opentelemetry::KeyValue>| -> HashMap<String, String> {
        kvs.into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.as_str().into_owned()))
            .collect()
    };
    for resource in &exported {
        for scope in resource.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == metric) {
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            keep(labels(p.attributes().collect()), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::I64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            keep(labels(p.attributes().collect()), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            keep(labels(p.attributes().collect()), p.count() as f64);
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            keep(labels(p.attributes().collect()), p.count() as f64);
                        }
                    }
                    other => panic!("{metric}: unexpected data {other:?}"),
                }
            }
        }
    }
    latest
}

/// The value of `metric`'s data point with every one of `wanted` attributes (0 when absent).
pub(crate) fn metric_value(t: &Telemetry, metric: &str, wanted: &[(&str, &str)]) -> f64 {
    points(t, metric)
        .into_iter()
        .filter(|(attributes, _)| {
            wanted
                .iter()
                .all(|(k, v)| attributes.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| value)
        .sum()
}

async fn a_call_continues_its_callers_trace_and_is_counted_by_method_and_code(backend: Backend) {
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    let trace = fresh_trace();

    app.reference
        .list_centres(with_traceparent(pb::ListCentresRequest::default(), &trace))
        .await
        .expect("list centres");
    // An identity registration in the same trace: its spans hold no identity field.
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
        .register_patient(with_traceparent(registration, &trace))
        .await
        .expect("register");

    let listed = span(t, "ListCentres", |s| {
        in_trace(s, &trace.0) && s.name == "observatory.v1.ReferenceService/ListCentres"
    })
    .await;
    assert_eq!(
        listed.parent_span_id.to_string(),
        trace.1,
        "the caller's span is the parent"
    );
    assert_eq!(listed.span_kind, SpanKind::Server);
    let attr = |name: &str| attribute(&listed, name).unwrap_or_else(|| panic!("no {name} on {listed:#?}"));
    assert_eq!(attr("rpc.system"), Value::from("grpc"));
    assert_eq!(attr("rpc.service"), Value::from("observatory.v1.ReferenceService"));
    assert_eq!(attr("rpc.method"), Value::from("ListCentres"));
    assert_eq!(attr("rpc.grpc.status_code"), Value::I64(0));
    assert_eq!(attr("role"), Value::from("admin"));
    assert_eq!(attr("trace_id"), Value::from(trace.0.clone()));
    span(t, "RegisterPatient", |s| {
        in_trace(s, &trace.0) && s.name == "observatory.v1.RegistryService/RegisterPatient"
    })
    .await;
    // No identifier in any span of the process, its attributes or its events.
    for span in t.spans.get_finished_spans().expect("spans") {
        let text = format!("{:?} {:?} {:?}", span.name, span.attributes, span.events);
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
            trace.0.clone(),
            "observatory.v1.ReferenceService/ListCentres".to_owned()
        )),
        "not received over OTLP: {} spans",
        exported.len()
    );

    // A short load: five calls answered NOT_FOUND, one refused.
    let method = "/observatory.v1.ReferenceService/GetPrescriber";
    let not_found = [("rpc.method", method), ("rpc.grpc.status", "NOT_FOUND")];
    let before = metric_value(t, "rpc.server.calls", &not_found);
    let timed_before = metric_value(t, "rpc.server.duration", &not_found);
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
    assert!(metric_value(t, "rpc.server.calls", &not_found) >= before + 5.0);
    assert!(metric_value(t, "rpc.server.duration", &not_found) >= timed_before + 5.0);
    assert!(
        metric_value(
            t,
            "rpc.server.calls",
            &[
                ("rpc.method", "/observatory.v1.ReferenceService/CreateCentre"),
                ("rpc.grpc.status", "PERMISSION_DENIED")
            ]
        ) >= 1.0
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

async fn store_work_is_traced_under_its_call_and_the_audit_trail_keeps_the_calls_trace_id(backend: Backend) {
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort_id = app.aac_cohort().await.meta.expect("meta").id;
    let patient_id = app.patient(1).await.meta.expect("meta").id;
    let aac = [("pathway", "AAC")];
    let declared_before = metric_value(t, "observatory.episodes.recorded", &aac);
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);

    // A write in the caller's trace.
    let trace = fresh_trace();
    let declaration = app.aac_declaration(&patient_id, &cohort_id, &rpps, "traced-episode");
    app.registry
        .declare_episode(with_traceparent(declaration, &trace))
        .await
        .expect("declare");
    let call = span(t, "DeclareEpisode", |s| {
        in_trace(s, &trace.0) && s.name == "observatory.v1.RegistryService/DeclareEpisode"
    })
    .await;
    let call_id = call.span_context.span_id();
    // Its reads (the access check's) and its write are children of the call.
    let read = span(t, "store read", |s| {
        in_trace(s, &trace.0) && s.name.starts_with("store.") && s.name != "store.execute"
    })
    .await;
    assert_eq!(read.parent_span_id, call_id, "{read:#?}");
    let execute = span(t, "store.execute", |s| {
        in_trace(s, &trace.0) && s.name == "store.execute"
    })
    .await;
    assert_eq!(execute.parent_span_id, call_id);
    assert_eq!(attribute(&execute, "command"), Some(Value::from("DeclareEpisode")));
    // The group that committed it is a trace of its own, linked to the write's span.
    let group = span(t, "store.commit_group", |s| {
        s.name == "store.commit_group"
            && s.links
                .iter()
                .any(|l| l.span_context.span_id() == execute.span_context.span_id())
    })
    .await;
    assert!(!in_trace(&group, &trace.0), "a group serves many traces");
    let size = attribute(&group, "size").map(|v| v.as_str().parse::<u64>());
    assert!(matches!(size, Some(Ok(n)) if n >= 1), "{group:#?}");
    // Counted by pathway (other tests declare too: at least this one; the conformance suite
    // counts exactly, replays and refusals left out, on a meter of its own).
    assert!(metric_value(t, "observatory.episodes.recorded", &aac) >= declared_before + 1.0);

    // A read without trace context still gets a trace, and the audit trail records its id.
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut read = tonic::Request::new(pb::GetRequest { id: patient_id.clone() });
    read.metadata_mut()
        .insert("x-request-id", request_id.parse().expect("metadata"));
    app.registry.get_patient(read).await.expect("get patient");
    let events = app
        .store
        .audit_events(started, chrono::Utc::now() + chrono::Duration::seconds(1), 0, 1000)
        .await
        .expect("audit events");
    let declared = events
        .iter()
        .find(|e| e.action == "DeclareEpisode")
        .expect("declaration audited");
    assert_eq!(declared.trace_id, trace.0, "the caller's trace id");
    let got = events
        .iter()
        .find(|e| e.request_id == request_id)
        .expect("read audited");
    assert_eq!(got.trace_id.len(), 32, "{got:?}");
    let read_call = span(t, "GetPatient", |s| {
        in_trace(s, &got.trace_id) && s.name == "observatory.v1.RegistryService/GetPatient"
    })
    .await;
    let audited = span(t, "store.record_access", |s| {
        in_trace(s, &got.trace_id) && s.name == "store.record_access"
    })
    .await;
    assert_eq!(audited.parent_span_id, read_call.span_context.span_id());

    // The pools and the writer report.
    let pool = match backend {
        Backend::Sqlite => "sqlite-readers",
        Backend::Postgres => "postgresql",
    };
    let named = [("db.client.connection.pool.name", pool)];
    assert!(metric_value(t, "db.client.connection.wait_time", &named) >= 1.0);
    assert!(metric_value(t, "db.client.connection.max", &named) >= 1.0);
    let states: Vec<String> = points(t, "db.client.connection.count")
        .into_iter()
        .filter(|(a, _)| a.get("db.client.connection.pool.name").map(String::as_str) == Some(pool))
        .filter_map(|(mut a, _)| a.remove("db.client.connection.state"))
        .collect();
    assert!(
        states.contains(&"used".to_owned()) && states.contains(&"idle".to_owned()),
        "{states:?}"
    );
    assert!(metric_value(t, "observatory.store.commit_group.size", &[]) >= 1.0);
    app.stop().await;
}

async fn a_report_run_is_traced_apart_linked_to_its_request_and_a_failed_stream_counts_its_final_code(
    backend: Backend,
) {
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 40).await;
    let succeeded = [("status", "succeeded"), ("trigger", "request")];
    let runs_before = metric_value(t, "observatory.report.duration", &succeeded);

    let trace = fresh_trace();
    let run = app
        .reports
        .run_report(with_traceparent(q3("traced-run"), &trace))
        .await
        .expect("run report")
        .into_inner();
    let ended = wait_for_end(&mut app, &run.run_id).await;
    assert_eq!(ended.status, pb::ReportRunStatus::Succeeded as i32, "{}", ended.error);

    let request = span(t, "RunReport", |s| {
        in_trace(s, &trace.0) && s.name == "observatory.v1.ReportService/RunReport"
    })
    .await;
    let run_span = span(t, "report.run", |s| {
        s.name == "report.run" && attribute(s, "run_id") == Some(Value::from(run.run_id.clone()))
    })
    .await;
    assert!(!in_trace(&run_span, &trace.0), "a run outlives its call");
    assert!(
        run_span
            .links
            .iter()
            .any(|l| l.span_context.span_id() == request.span_context.span_id()),
        "the run links to the call that asked for it: {run_span:#?}"
    );
    let run_trace = run_span.span_context.trace_id().to_string();
    let snapshot = span(t, "report.snapshot", |s| {
        in_trace(s, &run_trace) && s.name == "report.snapshot"
    })
    .await;
    assert_eq!(snapshot.parent_span_id, run_span.span_context.span_id());
    let scan = span(t, "store.scan", |s| in_trace(s, &run_trace) && s.name == "store.scan").await;
    assert_eq!(scan.parent_span_id, snapshot.span_context.span_id());
    let table = span(t, "report.table", |s| {
        in_trace(s, &run_trace) && s.name == "report.table" && attribute(s, "table") == Some(Value::from("activity"))
    })
    .await;
    assert_eq!(table.parent_span_id, run_span.span_context.span_id());
    assert!(metric_value(t, "observatory.report.duration", &succeeded) >= runs_before + 1.0);
    assert!(metric_value(t, "observatory.report.rows", &[("table", "activity")]) >= 1.0);

    // A published file altered on disk: the stream starts, then ends DATA_LOSS in its trailers.
    let method = "/observatory.v1.ReportService/DownloadReportFile";
    let data_loss = [("rpc.method", method), ("rpc.grpc.status", "DATA_LOSS")];
    let lost_before = metric_value(t, "rpc.server.calls", &data_loss);
    forge_activity_table(&app, &run.run_id);
    let status = download(&mut app, &run.run_id, "tables/activity.csv")
        .await
        .expect_err("altered output");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    let counted = async {
        for _ in 0..100 {
            if metric_value(t, "rpc.server.calls", &data_loss) >= lost_before + 1.0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        counted.await,
        "a stream failing after its start is counted with its final code"
    );
    let streamed = span(t, "DownloadReportFile", |s| {
        s.name == "observatory.v1.ReportService/DownloadReportFile"
            && attribute(s, "rpc.grpc.status_code") == Some(Value::I64(Code::DataLoss as i64))
    })
    .await;
    assert!(
        matches!(streamed.status, opentelemetry::trace::Status::Error { .. }),
        "DATA_LOSS is the server's fault: {streamed:#?}"
    );
    app.stop().await;
}
