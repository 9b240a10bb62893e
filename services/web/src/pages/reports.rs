//! Report runs of the analyst's filières: start one, follow it, open its HTML report, download
//! its tables (CSV each, all in one XLSX workbook).

use askama::Template;
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use observatory_analytics::runs::{RunState, RunView};
use observatory_app::reports as ops;
use observatory_domain::model::RecordId;
use observatory_proto::v1 as pb;
use observatory_store::{PageRequest, report_runs::RunStatus};

use super::{Page, refused, render};
use crate::{Posted, Signed, Web, form::FormState, op};

/// One run, as the pages show it.
pub struct RunRow {
    pub id: String,
    pub period: String,
    pub filiere: String,
    pub status: String,
    pub status_code: &'static str,
    pub requested_at: String,
    pub threshold: u32,
    pub progress: String,
    pub error: String,
    /// `(file, rows)` of each published output.
    pub outputs: Vec<(String, u64)>,
    pub running: bool,
    /// A synthesis: what it covers ("framework <id>", "cohort <id>"), empty for a report.
    pub synthesis: String,
    /// When its files were deleted under the retention setting, empty while they are kept.
    pub files_deleted: String,
}

fn run_purged(page: &Page, v: &RunView) -> String {
    v.record.purged_at.map(|at| page.lang.instant(at)).unwrap_or_default()
}

fn status_code(state: &RunState) -> &'static str {
    match state {
        RunState::Queued => "QUEUED",
        RunState::Running { .. } => "RUNNING",
        RunState::Ended(RunStatus::Succeeded) => "SUCCEEDED",
        RunState::Ended(RunStatus::Failed) => "FAILED",
        RunState::Ended(RunStatus::Interrupted) => "INTERRUPTED",
    }
}

fn row(page: &Page, v: &RunView) -> RunRow {
    let run = &v.record.run;
    let code = status_code(&v.state);
    let threshold = v.parameters().map(|p| p.threshold).unwrap_or_default();
    let progress = match &v.state {
        RunState::Running { stage, done, total } => format!("{stage} ({done}/{total})"),
        _ => String::new(),
    };
    let outputs = v
        .manifest()
        .ok()
        .flatten()
        .map(|m| m.outputs().iter().map(|o| (o.file.clone(), o.rows)).collect())
        .unwrap_or_default();
    let synthesis = v
        .parameters()
        .ok()
        .and_then(|p| p.synthesis)
        .map(|sy| match sy.target {
            observatory_analytics::synthesis::Target::Framework(id) => {
                format!("{} {id}", page.lang.t("synthesis.framework"))
            }
            observatory_analytics::synthesis::Target::Cohort(id) => format!("{} {id}", page.lang.t("synthesis.cohort")),
        })
        .unwrap_or_default();
    RunRow {
        synthesis,
        id: run.id.clone(),
        period: run.period_label.clone(),
        filiere: run
            .filiere
            .clone()
            .unwrap_or_else(|| page.lang.t("reports.every_filiere").to_owned()),
        status: page.label("run_status", code),
        status_code: code,
        requested_at: page.lang.instant(run.requested_at),
        threshold,
        progress,
        error: v
            .record
            .outcome
            .as_ref()
            .and_then(|o| o.error.clone())
            .unwrap_or_default(),
        outputs,
        running: matches!(v.state, RunState::Queued | RunState::Running { .. }),
        files_deleted: run_purged(page, v),
    }
}

#[derive(Template)]
#[template(path = "reports.html")]
struct List {
    page: Page,
    rows: Vec<RunRow>,
    form: FormState,
    /// The filières a run may be limited to, `(value, label)`; an empty value for every filière.
    filieres: Vec<(String, String)>,
    floor: u32,
    default_threshold: u32,
}

async fn list_page(web: &Web, signed: &Signed, form: FormState) -> Response {
    let runs = match ops::list(
        web.reports(),
        &signed.call(op("ListReportRuns")),
        &PageRequest { size: 50, token: None },
    )
    .await
    {
        Ok(p) => p.items,
        Err(e) => return refused(signed, e),
    };
    let page = signed.page(signed.lang.t("reports.title"));
    let floor = web.reports().floor;
    render(&List {
        rows: runs.iter().map(|v| row(&page, v)).collect(),
        form,
        filieres: if signed.principal.scope.national() {
            // A national analyst runs national reports, or one filière's.
            std::iter::once((String::new(), signed.lang.t("reports.every_filiere").to_owned()))
                .chain(
                    observatory_domain::reference::filieres()
                        .map(|(code, name)| (code.to_owned(), format!("{code} · {name}"))),
                )
                .collect()
        } else {
            signed
                .principal
                .scope
                .filieres()
                .iter()
                .map(|f| (f.as_str().to_owned(), f.as_str().to_owned()))
                .collect()
        },
        floor,
        default_threshold: ops::threshold(0, floor).unwrap_or(floor),
        page,
    })
}

pub async fn list(State(web): State<Web>, signed: Signed) -> Response {
    let form = FormState::with(&[("period", last_quarter())]);
    list_page(&web, &signed, form).await
}

/// The last quarter that has ended, the default period.
fn last_quarter() -> String {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let q = (today.month0() / 3) as i32; // this quarter, 0-based
    let (year, quarter) = if q == 0 {
        (today.year() - 1, 4)
    } else {
        (today.year(), q)
    };
    format!("{year}-Q{quarter}")
}

pub async fn start(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::RunReportRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        period: f.get("period").to_owned(),
        range: None,
        as_of: None,
        filiere: f.get("filiere").to_owned(),
        cohort_id: String::new(),
        suppression_threshold: f.get("suppression_threshold").parse().unwrap_or(0),
        french_csv: f.ticked("french_csv"),
        // The page in the reader's language.
        language: signed.lang.code().to_owned(),
    };
    let key = request.idempotency_key.clone();
    let outcome = match observatory_grpc::parse::parse_run(&request, web.reports().floor) {
        Err(s) => Err(s),
        Ok(asked) => ops::run(
            web.reports(),
            &signed.call(op("RunReport")),
            (!key.is_empty()).then_some(key),
            asked.parameters,
            asked.filiere,
            asked.cohort,
        )
        .await
        .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(view) => Redirect::to(&format!("/reports/{}", view.record.run.id)).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            let mut r = list_page(&web, &signed, form).await;
            *r.status_mut() = super::http_status(&status);
            r
        }
    }
}

#[derive(Template)]
#[template(path = "report.html")]
struct Show {
    page: Page,
    run: RunRow,
}

pub async fn show(State(web): State<Web>, signed: Signed, Path(id): Path<String>) -> Response {
    let Ok(id) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let view = match ops::get(web.reports(), &signed.call(op("GetReportRun")), &id).await {
        Ok(v) => v,
        Err(e) => return refused(&signed, e),
    };
    let page = signed.page(signed.lang.t("report.title"));
    let run = row(&page, &view);
    let running = run.running;
    let mut r = render(&Show { page, run });
    if running {
        // The page follows the run without a script: the browser reloads it.
        r.headers_mut().insert(header::REFRESH, HeaderValue::from_static("3"));
    }
    r
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}

/// A published output: the HTML report opens in the browser, the others download. The export
/// is recorded in the audit trail (with the file's SHA-256) before anything is sent, as over
/// gRPC; the file is streamed, never held in memory whole.
pub async fn download(State(web): State<Web>, signed: Signed, Path((id, file)): Path<(String, String)>) -> Response {
    let Ok(id) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    // Outputs under tables/ are named with their folder in the manifest.
    let file = if file.ends_with(".csv") || file.ends_with(".parquet") {
        if file.contains('/') {
            file
        } else {
            format!("tables/{file}")
        }
    } else {
        file
    };
    let (_, path, _sha) =
        match ops::open_output(web.reports(), &signed.call(op("DownloadReportFile")), &id, &file).await {
            Ok(x) => x,
            Err(e) => return refused(&signed, e),
        };
    let handle = match tokio::fs::File::open(&path).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "a published report output cannot be opened");
            return super::failure_for(
                &signed,
                StatusCode::INTERNAL_SERVER_ERROR,
                signed.lang.t("error.internal"),
            );
        }
    };
    let name = file.rsplit('/').next().unwrap_or("output").to_owned();
    let stream = tokio_util::io::ReaderStream::new(handle);
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&name)));
    if name.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
            ),
        );
    } else if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The synthesis form of a framework's page: starts the run and shows it, or the page again
/// with what was refused.
pub async fn start_synthesis(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::RunSynthesisRequest {
        subject: Some(pb::run_synthesis_request::Subject::FrameworkId(id.clone())),
        period: String::new(),
        range: Some(pb::DateRange {
            from: f.get("range.from").to_owned(),
            to: f.get("range.to").to_owned(),
        }),
        as_of: None,
        suppression_threshold: f.get("suppression_threshold").parse().unwrap_or(0),
        french_csv: f.ticked("french_csv"),
        language: f.get("language").to_owned(),
        idempotency_key: f.get("idempotency_key").to_owned(),
    };
    let key = request.idempotency_key.clone();
    let outcome = match observatory_grpc::parse::parse_synthesis(&request, web.reports().floor) {
        Err(s) => Err(s),
        Ok(parameters) => ops::run_synthesis(
            web.reports(),
            &signed.call(op("RunSynthesis")),
            (!key.is_empty()).then_some(key),
            parameters,
            chrono::Utc::now().date_naive(),
        )
        .await
        .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(view) => Redirect::to(&format!("/reports/{}", view.record.run.id)).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            super::reference::framework_with_synthesis_form(&web, &signed, &id, form, super::http_status(&status)).await
        }
    }
}
