//! The ReportService over gRPC and the periodic reports of `serve`: runs recorded once,
//! outputs streamed with their checksums, only published outputs reachable, scheduled periods
//! reported once and caught up after a stop.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use observatory_analytics::{
    CsvStyle, Period, ReportManifest,
    report::Scope,
    runs::{Runner, Schedule, ScheduleConfig, last_closed},
};
use observatory_proto::v1 as pb;
use observatory_server::seed::{SeedOptions, seed};
use observatory_store::report_runs::{NewReportRun, ReportRunRecord, RunOutcome, RunStatus, RunTrigger};
use sha2::Digest;

use crate::helpers::{Backend, TestApp, fresh_database, spawn_app, start_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    reports_run_over_grpc_and_stream_their_published_outputs,
    a_synthesis_runs_over_grpc_and_its_document_downloads,
    the_next_synthesis_due_follows_the_interval_its_protocol_sets,
    a_national_analyst_runs_national_reports_that_filiere_analysts_do_not_see,
    report_files_are_deleted_once_the_retention_period_is_over,
    scheduled_reports_cover_each_closed_period_once_and_catch_up_after_a_stop,
);

pub(crate) async fn seed_registry(app: &TestApp, patients: u32) {
    seed(
        &crate::helpers::app_of(&app.store).await,
        &SeedOptions {
            patients,
            seed: 5,
            until: NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
            concurrency: 16,
        },
    )
    .await
    .expect("seed");
}

/// A report of the third quarter of 2026 for the FILNEMUS filière.
pub(crate) fn q3(key: &str) -> pb::RunReportRequest {
    pb::RunReportRequest {
        period: "2026-Q3".into(),
        filiere: "FILNEMUS".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// Polls a run until it has ended.
pub(crate) async fn wait_for_end(app: &mut TestApp, run_id: &str) -> pb::ReportRun {
    wait_with(&mut app.reports, run_id).await
}

/// [`wait_for_end`] through `client`.
async fn wait_with(
    client: &mut observatory_proto::v1::report_service_client::ReportServiceClient<crate::helpers::Authed>,
    run_id: &str,
) -> pb::ReportRun {
    for _ in 0..600 {
        let run = client
            .get_report_run(pb::GetReportRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
            .expect("get run")
            .into_inner();
        let status = pb::ReportRunStatus::try_from(run.status).expect("known status");
        if !matches!(status, pb::ReportRunStatus::Queued | pb::ReportRunStatus::Running) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("report run {run_id} did not end within two minutes");
}

pub(crate) async fn download(
    app: &mut TestApp,
    run_id: &str,
    file: &str,
) -> Result<(Vec<u8>, u64, String), tonic::Status> {
    download_with(&mut app.reports, run_id, file).await
}

/// [`download`] by the holder of `secret`.
async fn download_as(
    secret: &str,
    app: &TestApp,
    run_id: &str,
    file: &str,
) -> Result<(Vec<u8>, u64, String), tonic::Status> {
    download_with(&mut app.reports_as(secret), run_id, file).await
}

async fn download_with(
    client: &mut observatory_proto::v1::report_service_client::ReportServiceClient<crate::helpers::Authed>,
    run_id: &str,
    file: &str,
) -> Result<(Vec<u8>, u64, String), tonic::Status> {
    let mut stream = client
        .download_report_file(pb::DownloadReportFileRequest {
            run_id: run_id.to_owned(),
            file: file.to_owned(),
        })
        .await?
        .into_inner();
    let (mut bytes, mut size, mut sha) = (Vec::new(), 0, String::new());
    while let Some(chunk) = stream.message().await? {
        if chunk.offset == 0 {
            size = chunk.size_bytes;
            sha = chunk.sha256.clone();
        }
        assert_eq!(chunk.offset, bytes.len() as u64, "chunks arrive in order");
        assert!(chunk.data.len() <= 64 * 1024);
        bytes.extend_from_slice(&chunk.data);
    }
    Ok((bytes, size, sha))
}

/// Appends a forged row to the published activity table of run `run_id`, on disk.
pub(crate) fn forge_activity_table(app: &TestApp, run_id: &str) {
    let csv = app.dir.path().join("reports").join(run_id).join("tables/activity.csv");
    let mut altered = std::fs::read(&csv).expect("csv");
    altered.extend_from_slice(b"forged,row\n");
    std::fs::write(&csv, altered).expect("alter");
}

async fn list_runs(app: &mut TestApp) -> Vec<pb::ReportRun> {
    app.reports
        .list_report_runs(pb::ListReportRunsRequest::default())
        .await
        .expect("list runs")
        .into_inner()
        .runs
}

/// Every run recorded, whatever its filière, newest first.
async fn every_run(app: &TestApp) -> Vec<ReportRunRecord> {
    let page = observatory_store::PageRequest { size: 500, token: None };
    app.store.list_report_runs(None, &page).await.expect("list runs").items
}

/// The synthesis of the early access of concizumab (reference frameworks; MHEMO).
fn synthesis_of(framework: &str, key: &str) -> pb::RunSynthesisRequest {
    pb::RunSynthesisRequest {
        subject: Some(pb::run_synthesis_request::Subject::FrameworkId(framework.into())),
        range: Some(pb::DateRange {
            from: "2026-01-01".into(),
            to: "2026-06-30".into(),
        }),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn a_synthesis_runs_over_grpc_and_its_document_downloads(backend: Backend) {
    const FRAMEWORK: &str = "0193a000-0000-7000-8000-000000000002";
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 150).await;

    // Invalid requests name their field and record nothing.
    use pb::run_synthesis_request::Subject;
    let cases: Vec<(pb::RunSynthesisRequest, &str)> = vec![
        (
            pb::RunSynthesisRequest {
                subject: None,
                ..synthesis_of(FRAMEWORK, "")
            },
            "framework_id",
        ),
        (
            pb::RunSynthesisRequest {
                subject: Some(Subject::CohortId("not-an-id".into())),
                ..synthesis_of(FRAMEWORK, "")
            },
            "cohort_id",
        ),
        (
            pb::RunSynthesisRequest {
                language: "de".into(),
                ..synthesis_of(FRAMEWORK, "")
            },
            "language",
        ),
        (
            pb::RunSynthesisRequest {
                period: "2026-Q3".into(),
                ..synthesis_of(FRAMEWORK, "")
            },
            "range",
        ),
        (synthesis_of("0193a000-0000-7000-8000-0000000000ff", ""), "framework_id"),
    ];
    for (request, field) in cases {
        let status = app.reports.run_synthesis(request).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            violated_fields(&status).contains(&field.to_owned()),
            "{field}: {status:?}"
        );
    }
    assert!(
        every_run(&app).await.is_empty(),
        "nothing recorded for a refused request"
    );

    // A synthesis runs like a report and is listed with the runs.
    let run = app
        .reports
        .run_synthesis(pb::RunSynthesisRequest {
            language: "en".into(),
            ..synthesis_of(FRAMEWORK, "synthesis-1")
        })
        .await
        .expect("accepted")
        .into_inner();
    assert!(run.synthesis);
    assert_eq!(run.synthesis_framework_id, FRAMEWORK);
    assert_eq!(run.filiere, "MHEMO", "the filière of the framework's cohorts");
    let ended = wait_for_end(&mut app, &run.run_id).await;
    assert_eq!(
        pb::ReportRunStatus::try_from(ended.status),
        Ok(pb::ReportRunStatus::Succeeded),
        "{}",
        ended.error
    );
    assert_eq!(ended.language, "en");
    let manifest = ended.manifest.expect("manifest");
    let files: Vec<&str> = manifest.outputs.iter().map(|o| o.file.as_str()).collect();
    for file in [
        "synthesis.docx",
        "synthesis.html",
        "synthesis.xlsx",
        "tables/efficacy.csv",
    ] {
        assert!(files.contains(&file), "{file} in {files:?}");
    }
    let (docx, size, sha) = download(&mut app, &run.run_id, "synthesis.docx").await.expect("docx");
    assert_eq!(size, docx.len() as u64);
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&docx)));
    assert!(docx.starts_with(b"PK"), "a zip package");
    let (json, _, _) = download(&mut app, &run.run_id, "manifest.json")
        .await
        .expect("manifest");
    let written: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(written["target"]["kind"], "framework");
    assert_eq!(written["language"], "en");
    // A replay answers the same run.
    let again = app
        .reports
        .run_synthesis(pb::RunSynthesisRequest {
            language: "en".into(),
            ..synthesis_of(FRAMEWORK, "synthesis-1")
        })
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(again.run_id, run.run_id);
    assert!(
        list_runs(&mut app)
            .await
            .iter()
            .any(|r| r.run_id == run.run_id && r.synthesis)
    );
}

async fn reports_run_over_grpc_and_stream_their_published_outputs(backend: Backend) {
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 150).await;

    // Invalid requests name their field and record nothing.
    let future = prost_types::Timestamp {
        seconds: Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let cases: Vec<(pb::RunReportRequest, &str)> = vec![
        (pb::RunReportRequest::default(), "period"),
        (
            pb::RunReportRequest {
                period: "2026-Q5".into(),
                ..Default::default()
            },
            "period",
        ),
        (
            pb::RunReportRequest {
                as_of: Some(future),
                ..q3("")
            },
            "as_of",
        ),
        (
            pb::RunReportRequest {
                suppression_threshold: 5000,
                ..q3("")
            },
            "suppression_threshold",
        ),
        (
            pb::RunReportRequest {
                filiere: "NOPE".into(),
                ..q3("")
            },
            "filiere",
        ),
        (
            pb::RunReportRequest {
                period: String::new(),
                range: Some(pb::DateRange {
                    from: "2026-09-30".into(),
                    to: "2026-07-01".into(),
                }),
                ..Default::default()
            },
            "range.to",
        ),
        (
            pb::RunReportRequest {
                range: Some(pb::DateRange {
                    from: "2026-07-01".into(),
                    to: "2026-09-30".into(),
                }),
                ..q3("")
            },
            "range",
        ),
    ];
    for (request, field) in cases {
        let status = app.reports.run_report(request).await.expect_err("invalid request");
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{status:?}");
    }
    assert!(list_runs(&mut app).await.is_empty(), "rejected requests recorded a run");

    // A run, replayed with its key, is one run; the key with other parameters is refused.
    let run = app.reports.run_report(q3("q3-first")).await.expect("run").into_inner();
    assert_eq!(run.trigger, pb::ReportRunTrigger::Request as i32);
    assert_eq!(
        (run.period.as_str(), run.period_from.as_str()),
        ("2026-Q3", "2026-07-01")
    );
    assert_eq!(run.suppression_threshold, 10);
    let replay = app
        .reports
        .run_report(q3("q3-first"))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.run_id, run.run_id);
    let status = app
        .reports
        .run_report(pb::RunReportRequest {
            suppression_threshold: 20,
            ..q3("q3-first")
        })
        .await
        .expect_err("key reused");
    assert_eq!(violated_fields(&status), vec!["idempotency_key".to_owned()]);

    let ended = wait_for_end(&mut app, &run.run_id).await;
    assert_eq!(ended.status, pb::ReportRunStatus::Succeeded as i32, "{}", ended.error);
    assert!(ended.finished_at.is_some());
    let manifest = ended.manifest.expect("manifest of a succeeded run");
    assert_eq!(manifest.snapshot_hash.len(), 64);
    let listed = list_runs(&mut app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run_id, run.run_id);

    // Every output streams whole, with the manifest's checksum, equal to the file written.
    let run_dir = app.dir.path().join("reports").join(&run.run_id);
    for output in &manifest.outputs {
        let (bytes, size, sha) = download(&mut app, &run.run_id, &output.file).await.expect("download");
        assert_eq!(sha, output.sha256);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            output.sha256,
            "{}",
            output.file
        );
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(
            bytes,
            std::fs::read(run_dir.join(&output.file)).expect("output on disk")
        );
    }
    assert!(manifest.outputs.iter().any(|o| o.file == "report.html"));
    let (bytes, ..) = download(&mut app, &run.run_id, "manifest.json")
        .await
        .expect("manifest");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest is JSON");
    assert_eq!(json["snapshot_hash"], manifest.snapshot_hash.as_str());
    assert_eq!(json["period"], "2026-Q3");

    // Only published outputs: never the patient-level snapshot, never a path.
    for file in ["snapshot/episodes.parquet", "../observatory.key", "tables", ""] {
        let status = download(&mut app, &run.run_id, file).await.expect_err(file);
        assert_eq!(violated_fields(&status), vec!["file".to_owned()], "{file}");
    }
    let status = app
        .reports
        .get_report_run(pb::GetReportRunRequest {
            run_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("unknown run");
    // Unknown and out of scope are one answer.
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = app
        .reports
        .get_report_run(pb::GetReportRunRequest { run_id: "x".into() })
        .await
        .expect_err("bad id");
    assert_eq!(violated_fields(&status), vec!["run_id".to_owned()]);

    // A file altered on disk after the run is refused at the end of its stream.
    forge_activity_table(&app, &run.run_id);
    let status = download(&mut app, &run.run_id, "tables/activity.csv")
        .await
        .expect_err("altered output");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");

    // A second run with other parameters is another run, listed newest first.
    let french = app
        .reports
        .run_report(pb::RunReportRequest {
            french_csv: true,
            filiere: "MHEMO".into(),
            ..q3("q3-french")
        })
        .await
        .expect("second run")
        .into_inner();
    let ended = wait_for_end(&mut app, &french.run_id).await;
    assert_eq!(ended.status, pb::ReportRunStatus::Succeeded as i32, "{}", ended.error);
    assert_eq!((ended.filiere.as_str(), ended.french_csv), ("MHEMO", true));
    let (bytes, ..) = download(&mut app, &french.run_id, "tables/activity.csv")
        .await
        .expect("download");
    assert!(bytes.starts_with("\u{feff}".as_bytes()), "French CSV starts with a BOM");
    let listed: Vec<String> = list_runs(&mut app).await.into_iter().map(|r| r.run_id).collect();
    assert_eq!(listed, vec![french.run_id.clone(), run.run_id.clone()]);
    let page = app
        .reports
        .list_report_runs(pb::ListReportRunsRequest {
            page: Some(pb::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(page.runs.len(), 1);
    let rest = app
        .reports
        .list_report_runs(pb::ListReportRunsRequest {
            page: Some(pb::PageRequest {
                page_size: 1,
                page_token: page.next_page_token,
            }),
        })
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(rest.runs[0].run_id, run.run_id);
    assert!(rest.next_page_token.is_empty());
    app.stop().await;
}

async fn scheduled_reports_cover_each_closed_period_once_and_catch_up_after_a_stop(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let app = start_app(url, dir, &[]).await;
    seed_registry(&app, 60).await;
    let now = Utc::now();
    let last = last_closed(Schedule::Monthly, now);
    let before = Schedule::Monthly.period_of(last.from.pred_opt().expect("date"));
    let oldest = Schedule::Monthly.period_of(before.from.pred_opt().expect("date"));

    // History: the schedule reported `oldest`; a run was going on when the server stopped.
    let record = |period: Period, trigger: RunTrigger, attempt: i64| NewReportRun {
        id: uuid::Uuid::now_v7().to_string(),
        requested_at: now,
        requested_by: "schedule".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trigger,
        schedule: (trigger == RunTrigger::Schedule).then(|| "monthly".to_owned()),
        attempt,
        idempotency_key: None,
        fingerprint: "0".repeat(64),
        period_label: period.label(),
        as_of: now,
        filiere: None,
        parameters: serde_json::json!({
            "period_from": period.from, "period_to": period.to, "as_of": null, "threshold": 10,
            "csv": "Standard", "scope": {"filiere": null, "cohort": null}
        }),
        out_dir: "/nonexistent".into(),
    };
    let done = record(oldest, RunTrigger::Schedule, 1);
    app.store.record_report_run(&done).await.expect("record");
    app.store
        .finish_report_run(
            &done.id,
            &RunOutcome {
                finished_at: now,
                status: RunStatus::Succeeded,
                manifest: Some(
                    serde_json::to_value(ReportManifest {
                        period: oldest.label(),
                        period_from: oldest.from,
                        period_to: oldest.to,
                        as_of: now,
                        snapshot_hash: "0".repeat(64),
                        code_version: "0.1.0".into(),
                        suppression_threshold: 10,
                        csv_style: CsvStyle::Standard,
                        scope: Scope::default(),
                        suppression: Default::default(),
                        outputs: Vec::new(),
                    })
                    .expect("manifest"),
                ),
                error: None,
            },
        )
        .await
        .expect("finish");
    let cut_short = record(before, RunTrigger::Request, 1);
    app.store.record_report_run(&cut_short).await.expect("record");
    let (url, dir) = app.stop().await;

    // Start with the monthly schedule: the run cut short is interrupted, and the two closed
    // months after `oldest` are reported, once each, over the whole registry; each filière with
    // a cohort (the seed's two), new to the schedule, gets the last closed month.
    let mut app = start_app(url, dir, &[("OBSERVATORY_REPORT_SCHEDULE", "monthly")]).await;
    let succeeded = |r: &ReportRunRecord| r.outcome.as_ref().is_some_and(|o| o.status == RunStatus::Succeeded);
    let mut scheduled = Vec::new();
    for _ in 0..900 {
        scheduled = every_run(&app)
            .await
            .into_iter()
            .filter(|r| r.run.trigger == RunTrigger::Schedule && r.run.id != done.id)
            .collect();
        if scheduled.len() == 4 && scheduled.iter().all(succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut reports: Vec<(String, String)> = scheduled
        .iter()
        .map(|r| (r.run.filiere.clone().unwrap_or_default(), r.run.period_label.clone()))
        .collect();
    reports.sort();
    assert_eq!(
        reports,
        vec![
            (String::new(), before.label()),
            (String::new(), last.label()),
            ("FILNEMUS".to_owned(), last.label()),
            ("MHEMO".to_owned(), last.label()),
        ],
        "{scheduled:#?}"
    );
    assert!(
        scheduled
            .iter()
            .all(|r| succeeded(r) && r.run.schedule.as_deref() == Some("monthly")),
        "{scheduled:#?}"
    );
    // Each filière's report is its analysts' to read; the national ones are not.
    let listed: Vec<String> = list_runs(&mut app).await.into_iter().map(|r| r.run_id).collect();
    let mut expected: Vec<String> = scheduled
        .iter()
        .filter(|r| r.run.filiere.is_some())
        .map(|r| r.run.id.clone())
        .collect();
    let mut shown = listed.clone();
    shown.sort();
    expected.sort();
    assert_eq!(
        shown, expected,
        "an analyst of MHEMO and FILNEMUS lists its filières' scheduled reports"
    );
    let interrupted = app
        .store
        .get_report_run(&cut_short.id)
        .await
        .expect("get")
        .and_then(|r| r.outcome)
        .expect("outcome recorded");
    assert_eq!(interrupted.status, RunStatus::Interrupted);
    assert!(interrupted.error.is_some_and(|e| !e.is_empty()));

    // Nothing more is due, now or after a restart.
    let runner = Runner::new(app.store.clone(), app.dir.path().join("reports"));
    let config = ScheduleConfig {
        schedule: Schedule::Monthly,
        threshold: 10,
        csv: CsvStyle::Standard,
        per_filiere: true,
        language: observatory_analytics::synthesis::Language::Fr,
    };
    assert!(runner.catch_up(&config, Utc::now()).await.expect("check").is_empty());
    let (url, dir) = app.stop().await;
    let app = start_app(url, dir, &[("OBSERVATORY_REPORT_SCHEDULE", "monthly")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scheduled = every_run(&app)
        .await
        .into_iter()
        .filter(|r| r.run.trigger == RunTrigger::Schedule)
        .count();
    assert_eq!(scheduled, 5, "a restart reported a period again");
    app.stop().await;
}

/// With no period, RunSynthesis writes the oldest period of the framework's interval that has
/// ended with no synthesis written or under way; a retry gets its first attempt's period; an
/// amended protocol starts its interval after the periods already due; and a framework with no
/// interval, or none ended, is refused with the reason.
async fn the_next_synthesis_due_follows_the_interval_its_protocol_sets(backend: Backend) {
    // Concizumab's early access: granted from 2023-12-01, open-ended, a synthesis every 6 months.
    const FRAMEWORK: &str = "0193a000-0000-7000-8000-000000000002";
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 60).await;
    let framework = app
        .reference
        .get_framework(pb::GetFrameworkRequest { id: FRAMEWORK.into() })
        .await
        .expect("framework")
        .into_inner();
    assert_eq!(framework.synthesis_months, 6, "as shipped");
    let due = |key: &str| pb::RunSynthesisRequest {
        subject: Some(pb::run_synthesis_request::Subject::FrameworkId(FRAMEWORK.into())),
        idempotency_key: key.into(),
        ..Default::default()
    };

    // The oldest period, then, the first being under way, the next one.
    let first = app
        .reports
        .run_synthesis(due("due-1"))
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(
        (first.period_from.as_str(), first.period_to.as_str()),
        ("2023-12-01", "2024-05-31")
    );
    let second = app.reports.run_synthesis(due("")).await.expect("accepted").into_inner();
    assert_eq!(
        (second.period_from.as_str(), second.period_to.as_str()),
        ("2024-06-01", "2024-11-30")
    );
    // A retry of the first request is the first run, not the period due now.
    let retried = app
        .reports
        .run_synthesis(due("due-1"))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(retried.run_id, first.run_id);
    for run in [&first, &second] {
        let ended = wait_for_end(&mut app, &run.run_id).await;
        assert_eq!(
            pb::ReportRunStatus::try_from(ended.status),
            Ok(pb::ReportRunStatus::Succeeded),
            "{}",
            ended.error
        );
    }
    let third = app.reports.run_synthesis(due("")).await.expect("accepted").into_inner();
    assert_eq!(
        (third.period_from.as_str(), third.period_to.as_str()),
        ("2024-12-01", "2025-05-31")
    );
    // A period given explicitly is written whatever is due.
    let interim = app
        .reports
        .run_synthesis(pb::RunSynthesisRequest {
            period: "2026-Q1".into(),
            ..due("")
        })
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(interim.period_from, "2026-01-01");
    wait_for_end(&mut app, &third.run_id).await;
    wait_for_end(&mut app, &interim.run_id).await;

    // Invalid intervals and amendments name their field.
    use pb::transition_framework_request::{AmendProtocol, Transition as T};
    let amend = |version: i64, protocol: &str, months: i32| pb::TransitionFrameworkRequest {
        id: FRAMEWORK.into(),
        expected_version: version,
        transition: Some(T::AmendProtocol(AmendProtocol {
            date: Utc::now().date_naive().to_string(),
            protocol_version: protocol.into(),
            synthesis_months: months,
        })),
    };
    let v = framework.meta.as_ref().expect("meta").version;
    for (request, field) in [
        (amend(v, "2", 37), "amend_protocol.synthesis_months"),
        (amend(v, "1", 12), "amend_protocol.protocol_version"),
        (amend(v, "", 12), "amend_protocol.protocol_version"),
    ] {
        let status = app.reference.transition_framework(request).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{status:?}");
    }
    let status = app
        .reference
        .create_framework(pb::CreateFrameworkRequest {
            idempotency_key: "too-long-interval".into(),
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "B02BX06".into(),
            indication: "Acquired haemophilia A".into(),
            orpha_codes: vec!["98878".into()],
            authority: "ANSM".into(),
            decision_reference: "CPC test".into(),
            valid_from: "2026-01-01".into(),
            status: pb::FrameworkStatus::Granted as i32,
            protocol_type: pb::ProtocolType::PutSp as i32,
            source: "test".into(),
            synthesis_months: -1,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(
        violated_fields(&status),
        vec!["synthesis_months".to_owned()],
        "{status:?}"
    );

    // Six-monthly, then yearly: the yearly periods start after the last six-monthly one due, so
    // none of them has ended yet, and the refusal says when the first ends.
    let amended = app
        .reference
        .transition_framework(amend(v, "2", 12))
        .await
        .expect("amended")
        .into_inner();
    assert_eq!((amended.protocol_version.as_str(), amended.synthesis_months), ("2", 12));
    assert_eq!(amended.status, framework.status, "an amendment changes no status");
    let status = app.reports.run_synthesis(due("")).await.expect_err("none due");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("first synthesis period"), "{status:?}");
    // No interval at all.
    let v = amended.meta.as_ref().expect("meta").version;
    app.reference
        .transition_framework(amend(v, "3", 0))
        .await
        .expect("amended");
    let status = app.reports.run_synthesis(due("")).await.expect_err("no interval");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("sets no interval"), "{status:?}");
    assert_eq!(
        every_run(&app).await.len(),
        4,
        "four syntheses recorded, none for a refused request"
    );
}

/// A national analyst runs reports over every filière, or one filière's, and reads the runs of
/// all; an analyst of a filière neither sees nor reads a national run; neither reads a patient.
async fn a_national_analyst_runs_national_reports_that_filiere_analysts_do_not_see(backend: Backend) {
    use observatory_domain::access::Role;
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 60).await;
    let national = crate::helpers::scoped_token(&app.store, Role::NationalAnalyst, &[], &[]).await;
    let mut national_reports = app.reports_as(&national);

    // A national analyst's token is bound to nothing.
    let bound = crate::helpers::try_scoped_token(&app.store, Role::NationalAnalyst, &[], &["MHEMO"]).await;
    assert!(bound.is_err(), "a national analyst token bound to a filière: {bound:?}");

    // With no filière named: the whole registry.
    let whole = national_reports
        .run_report(pb::RunReportRequest {
            period: "2026-Q3".into(),
            idempotency_key: "national-q3".into(),
            ..Default::default()
        })
        .await
        .expect("national run")
        .into_inner();
    assert_eq!(whole.filiere, "", "a run over every filière");
    let ended = wait_with(&mut national_reports, &whole.run_id).await;
    assert_eq!(
        pb::ReportRunStatus::try_from(ended.status),
        Ok(pb::ReportRunStatus::Succeeded),
        "{}",
        ended.error
    );
    // One filière's, on request.
    let filnemus = national_reports
        .run_report(pb::RunReportRequest {
            idempotency_key: "national-filnemus".into(),
            ..q3("")
        })
        .await
        .expect("a filière's run")
        .into_inner();
    assert_eq!(filnemus.filiere, "FILNEMUS");
    // And the synthesis of a framework, its filière's run.
    let synthesis = national_reports
        .run_synthesis(pb::RunSynthesisRequest {
            subject: Some(pb::run_synthesis_request::Subject::FrameworkId(
                "0193a000-0000-7000-8000-000000000002".into(),
            )),
            period: "2026-Q1".into(),
            ..Default::default()
        })
        .await
        .expect("a synthesis")
        .into_inner();
    assert_eq!(synthesis.filiere, "MHEMO");

    // The national run's outputs download for the national analyst only.
    let (manifest, _, _) = download_as(&national, &app, &whole.run_id, "manifest.json")
        .await
        .expect("the national analyst downloads a national output");
    assert!(!manifest.is_empty());
    let listed: Vec<String> = national_reports
        .list_report_runs(pb::ListReportRunsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .runs
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    for run in [&whole.run_id, &filnemus.run_id, &synthesis.run_id] {
        assert!(listed.contains(run), "{run} in {listed:?}");
    }
    // An analyst of MHEMO and FILNEMUS: its filières' runs, never the national one.
    let mine: Vec<String> = list_runs(&mut app).await.into_iter().map(|r| r.run_id).collect();
    assert!(!mine.contains(&whole.run_id), "a filière analyst lists a national run");
    assert!(mine.contains(&filnemus.run_id) && mine.contains(&synthesis.run_id));
    let status = app
        .reports
        .get_report_run(pb::GetReportRunRequest {
            run_id: whole.run_id.clone(),
        })
        .await
        .expect_err("a national run");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = download(&mut app, &whole.run_id, "manifest.json")
        .await
        .expect_err("a national output");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // A filière analyst still cannot run a national report.
    let status = app
        .reports
        .run_report(pb::RunReportRequest {
            period: "2026-Q3".into(),
            ..Default::default()
        })
        .await
        .expect_err("a national report");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // No patient-level record for a national analyst.
    let status = app
        .registry_as(&national)
        .list_patients(pb::ListPatientsRequest::default())
        .await
        .expect_err("patients");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    wait_for_end(&mut app, &filnemus.run_id).await;
    wait_for_end(&mut app, &synthesis.run_id).await;
}

/// Once a run ended more than the retention period ago, its files (snapshot, tables, documents)
/// are deleted from the reports directory; the run, its manifest and a record of the deletion
/// stay, downloads of its files are refused with the reason, and a directory outside the
/// reports directory (a command line's `--out`) is left alone.
async fn report_files_are_deleted_once_the_retention_period_is_over(backend: Backend) {
    let mut app = spawn_app(backend).await;
    seed_registry(&app, 40).await;
    let run = app
        .reports
        .run_report(q3("kept-then-deleted"))
        .await
        .expect("run")
        .into_inner();
    let ended = wait_for_end(&mut app, &run.run_id).await;
    assert_eq!(
        pb::ReportRunStatus::try_from(ended.status),
        Ok(pb::ReportRunStatus::Succeeded),
        "{}",
        ended.error
    );
    assert!(ended.files_deleted_at.is_none());
    let reports_dir = app.dir.path().join("reports");
    let run_dir = reports_dir.join(&run.run_id);
    assert!(run_dir.join("snapshot").is_dir(), "the run's snapshot is on disk");

    // A run written elsewhere on the command line, ended long ago.
    let elsewhere = tempfile::tempdir().expect("dir");
    std::fs::write(elsewhere.path().join("manifest.json"), b"{}").expect("write");
    let now = Utc::now();
    let old = NewReportRun {
        id: uuid::Uuid::now_v7().to_string(),
        requested_at: now - chrono::Duration::days(400),
        requested_by: "command-line".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trigger: RunTrigger::CommandLine,
        schedule: None,
        attempt: 1,
        idempotency_key: None,
        fingerprint: "0".repeat(64),
        period_label: "2025-Q3".into(),
        as_of: now - chrono::Duration::days(400),
        filiere: None,
        parameters: serde_json::json!({
            "period_from": "2025-07-01", "period_to": "2025-09-30", "as_of": null, "threshold": 10,
            "csv": "Standard", "scope": {"filiere": null, "cohort": null}
        }),
        out_dir: elsewhere.path().to_string_lossy().into_owned(),
    };
    app.store.record_report_run(&old).await.expect("record");
    app.store
        .finish_report_run(
            &old.id,
            &RunOutcome {
                finished_at: now - chrono::Duration::days(400),
                status: RunStatus::Failed,
                manifest: None,
                error: Some("test".into()),
            },
        )
        .await
        .expect("finish");

    let runner = Runner::new(app.store.clone(), reports_dir.clone());
    // Within the retention period, nothing goes.
    assert_eq!(runner.purge_expired(30, now).await.expect("purge"), 0);
    assert!(run_dir.is_dir());
    // 31 days later the run's files go; the directory elsewhere stays.
    let later = now + chrono::Duration::days(31);
    assert_eq!(runner.purge_expired(30, later).await.expect("purge"), 1);
    let left: Vec<String> = std::fs::read_dir(&run_dir)
        .expect("the run's directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        vec!["manifest.json".to_owned()],
        "the run's files are deleted, its manifest kept"
    );
    assert!(
        elsewhere.path().join("manifest.json").exists(),
        "a directory outside reports_dir is left alone"
    );
    // Once only.
    assert_eq!(runner.purge_expired(30, later).await.expect("purge"), 0);

    let after = app
        .reports
        .get_report_run(pb::GetReportRunRequest {
            run_id: run.run_id.clone(),
        })
        .await
        .expect("the run stays")
        .into_inner();
    assert!(after.files_deleted_at.is_some(), "the run says when its files went");
    assert!(after.manifest.is_some(), "and keeps its manifest");
    let status = download(&mut app, &run.run_id, "tables/activity.csv")
        .await
        .expect_err("deleted");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("retention"), "{status:?}");
    let (manifest, _, _) = download(&mut app, &run.run_id, "manifest.json")
        .await
        .expect("the manifest remains");
    assert!(!manifest.is_empty());
    // The deletion is in the audit trail.
    let events = app
        .store
        .audit_events(
            chrono::DateTime::UNIX_EPOCH,
            later + chrono::Duration::hours(1),
            0,
            100_000,
        )
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.action == "PurgeReportRun" && e.reason.contains("files")),
        "a PurgeReportRun event"
    );
}
