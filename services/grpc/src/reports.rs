//! `observatory.v1.ReportService`: run reports, follow runs, stream published outputs.

use chrono::Utc;
use observatory_analytics::{
    CsvStyle, Period,
    report::Scope,
    runs::{RunError, RunParameters, RunState, RunView, Runner},
};
use observatory_domain::{CodeError, Violations, codes::Filiere, model::RecordId};
use observatory_proto::v1::{self as pb, report_service_server::ReportService};
use observatory_store::report_runs::{RunStatus, RunTrigger};
use sha2::Digest;
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

use observatory_app::reports::{self as ops, Reports};

use crate::convert::{self as c, all_some};
use crate::{error, guard};

/// Largest chunk of a streamed file.
pub const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ReportApi {
    reports: Reports,
}

impl ReportApi {
    /// `floor`: the lowest suppression threshold a run request may ask for (see
    /// `report_min_threshold` in the configuration), between 1 and [`observatory_app::reports::MAX_THRESHOLD`].
    pub fn new(runner: Runner, floor: u32) -> Self {
        Self {
            reports: Reports::new(runner, floor),
        }
    }
}

fn run_error(e: RunError) -> Status {
    error::app(ops::run_error(e))
}

/// What a run request asks for: its parameters, every invalid field named, and the filière and
/// cohort it names (for the scope check).
pub struct Asked {
    pub parameters: RunParameters,
    pub filiere: Option<Filiere>,
    pub cohort: Option<RecordId>,
}

pub fn parameters(r: &pb::RunReportRequest, floor: u32) -> Result<Asked, Status> {
    let mut v = Violations::new();
    let asked = collect_parameters(&mut v, r, floor);
    match asked {
        Some(asked) if v.is_empty() => Ok(asked),
        _ => Err(error::invalid(&v)),
    }
}

/// The period a request names (`Some(None)`: neither period nor range, which only a synthesis
/// may leave out), its violations added to `v`.
fn collect_period(
    v: &mut Violations,
    period: &str,
    range: Option<&pb::DateRange>,
    required: bool,
) -> Option<Option<Period>> {
    let range = range.filter(|r| !(r.from.is_empty() && r.to.is_empty()));
    Some(Some(match (c::opt_str(period), range) {
        (Some(_), Some(_)) => {
            v.push("range", "CONFLICT", "give either period or range, not both");
            return None;
        }
        (Some(p), None) => v.check(
            "period",
            Period::parse(p)
                .map_err(|e| CodeError::new("BAD_FORMAT", format!("{}: use 2026-Q3, 2026-09 or 2026", e.reason))),
        )?,
        (None, Some(range)) => {
            let from = v.check("range.from", c::date(&range.from));
            let to = v.check("range.to", c::date(&range.to));
            match (from, to) {
                (Some(from), Some(to)) if to < from => {
                    v.push("range.to", "OUT_OF_RANGE", "is before range.from");
                    return None;
                }
                (Some(from), Some(to)) => Period { from, to },
                _ => return None,
            }
        }
        (None, None) if !required => return Some(None),
        (None, None) => {
            v.push(
                "period",
                "REQUIRED",
                "give a period (2026-Q3, 2026-09, 2026) or a range",
            );
            return None;
        }
    }))
}

/// [`parameters`], its violations added to `v`.
fn collect_parameters(v: &mut Violations, r: &pb::RunReportRequest, floor: u32) -> Option<Asked> {
    let period = collect_period(v, &r.period, r.range.as_ref(), true).flatten();
    let as_of = match &r.as_of {
        None => Some(None),
        Some(t) => match c::instant(t) {
            Ok(t) if t > Utc::now() => {
                v.push(
                    "as_of",
                    "OUT_OF_RANGE",
                    "is in the future: a report is about what the registry knew at a past instant",
                );
                None
            }
            Ok(t) => Some(Some(t)),
            Err(e) => {
                v.push("as_of", e.reason, e.description);
                None
            }
        },
    };
    let filiere = v.check("filiere", c::optional(&r.filiere, c::filiere));
    let cohort = v.check("cohort_id", c::optional(&r.cohort_id, c::id));
    let language = language(v, &r.language);
    // The floor is the application layer's rule; checked here too, so that every fault is named
    // at once.
    let threshold = v.check(
        "suppression_threshold",
        observatory_app::reports::threshold(r.suppression_threshold, floor),
    );
    let (Some(period), Some(as_of), Some(filiere), Some(cohort), Some(threshold), Some(language)) =
        (period, as_of, filiere, cohort, threshold, language)
    else {
        return None;
    };
    let parameters = RunParameters {
        period_from: period.from,
        period_to: period.to,
        as_of,
        threshold,
        csv: if r.french_csv {
            CsvStyle::French
        } else {
            CsvStyle::Standard
        },
        scope: Scope {
            filiere: filiere.clone().map(String::from),
            cohort: cohort.clone().map(String::from),
        },
        synthesis: None,
        language,
    };
    Some(Asked {
        parameters,
        filiere,
        cohort,
    })
}

/// A document's language: "fr" when empty, or "en"; UNKNOWN_CODE otherwise.
fn language(v: &mut Violations, raw: &str) -> Option<observatory_analytics::synthesis::Language> {
    use observatory_analytics::synthesis::Language;
    match c::opt_str(raw) {
        None => Some(Language::Fr),
        Some(l) => {
            let parsed = (l.len() <= 16).then(|| Language::parse(l)).flatten();
            if parsed.is_none() {
                v.push("language", "UNKNOWN_CODE", "must be fr or en");
            }
            parsed
        }
    }
}

/// The parameters of a synthesis request, every invalid field named at once.
pub fn synthesis_parameters(r: &pb::RunSynthesisRequest, floor: u32) -> Result<ops::SynthesisAsk, Status> {
    use observatory_analytics::{
        runs::SynthesisRequest,
        synthesis::{Language, Target},
    };
    use pb::run_synthesis_request::Subject;
    let mut v = Violations::new();
    // Neither period nor range: the next one due, which the operation works out.
    let period = collect_period(&mut v, &r.period, r.range.as_ref(), false);
    // Cutoff, threshold and CSV style are read as a report request's (over a placeholder
    // period, replaced by the operation).
    let as_report = pb::RunReportRequest {
        period: "2000".into(),
        range: None,
        as_of: r.as_of,
        suppression_threshold: r.suppression_threshold,
        french_csv: r.french_csv,
        ..Default::default()
    };
    let common = collect_parameters(&mut v, &as_report, floor).map(|asked| asked.parameters);
    let target = match &r.subject {
        Some(Subject::FrameworkId(id)) => v
            .check("framework_id", c::id(id))
            .map(|id| Target::Framework(id.into())),
        Some(Subject::CohortId(id)) => v.check("cohort_id", c::id(id)).map(|id| Target::Cohort(id.into())),
        None => {
            v.push("framework_id", "REQUIRED", "give a framework_id or a cohort_id");
            None
        }
    };
    let language = language(&mut v, &r.language);
    all_some!(v; period, common, target, language);
    Ok(ops::SynthesisAsk {
        period: period.map(|p| (p.from, p.to)),
        parameters: RunParameters {
            synthesis: Some(SynthesisRequest { target, language }),
            // The synthesis's language is its own; this one is a report page's.
            language: Language::En,
            ..common
        },
    })
}

fn run_out(view: &RunView) -> Result<pb::ReportRun, Status> {
    let run = &view.record.run;
    let parameters = view.parameters().map_err(run_error)?;
    let (status, stage, done, total) = match &view.state {
        RunState::Queued => (pb::ReportRunStatus::Queued, String::new(), 0, 0),
        RunState::Running { stage, done, total } => (pb::ReportRunStatus::Running, stage.clone(), *done, *total),
        RunState::Ended(RunStatus::Succeeded) => (pb::ReportRunStatus::Succeeded, String::new(), 0, 0),
        RunState::Ended(RunStatus::Failed) => (pb::ReportRunStatus::Failed, String::new(), 0, 0),
        RunState::Ended(RunStatus::Interrupted) => (pb::ReportRunStatus::Interrupted, String::new(), 0, 0),
    };
    let manifest = view.manifest().map_err(run_error)?.map(|m| pb::ReportManifest {
        snapshot_hash: m.snapshot_hash().to_owned(),
        code_version: m.code_version().to_owned(),
        outputs: m
            .outputs()
            .iter()
            .map(|o| pb::ReportOutput {
                file: o.file.clone(),
                rows: o.rows,
                sha256: o.sha256.clone(),
            })
            .collect(),
    });
    let period = parameters.period();
    use observatory_analytics::synthesis::Target as Subject;
    let (synthesis_framework_id, synthesis_cohort_id, language) = match &parameters.synthesis {
        Some(sy) => match &sy.target {
            Subject::Framework(id) => (id.clone(), None, sy.language.code().to_owned()),
            Subject::Cohort(id) => (String::new(), Some(id.clone()), sy.language.code().to_owned()),
        },
        None => (String::new(), None, parameters.language.code().to_owned()),
    };
    let synthesis = parameters.synthesis.is_some();
    Ok(pb::ReportRun {
        run_id: run.id.clone(),
        status: status.into(),
        trigger: match run.trigger {
            RunTrigger::Request => pb::ReportRunTrigger::Request,
            RunTrigger::Schedule => pb::ReportRunTrigger::Schedule,
            RunTrigger::CommandLine => pb::ReportRunTrigger::CommandLine,
        }
        .into(),
        schedule: run.schedule.clone().unwrap_or_default(),
        attempt: run.attempt,
        period: run.period_label.clone(),
        period_from: period.from.to_string(),
        period_to: period.to.to_string(),
        as_of: Some(c::ts(run.as_of)),
        // A synthesis's filière is that of its cohorts, as recorded with the run.
        filiere: parameters
            .scope
            .filiere
            .or_else(|| synthesis.then(|| run.filiere.clone()).flatten())
            .unwrap_or_default(),
        cohort_id: synthesis_cohort_id.or(parameters.scope.cohort).unwrap_or_default(),
        synthesis,
        synthesis_framework_id,
        language,
        suppression_threshold: parameters.threshold,
        french_csv: parameters.csv == CsvStyle::French,
        requested_at: Some(c::ts(run.requested_at)),
        requested_by: run.requested_by.clone(),
        request_id: run.request_id.clone(),
        stage,
        stages_done: done,
        stages_total: total,
        finished_at: view.record.outcome.as_ref().map(|o| c::ts(o.finished_at)),
        error: view
            .record
            .outcome
            .as_ref()
            .and_then(|o| o.error.clone())
            .unwrap_or_default(),
        manifest,
        files_deleted_at: view.record.purged_at.map(c::ts),
    })
}

type ChunkStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ReportFileChunk, Status>>;

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn run_report(&self, req: Request<pb::RunReportRequest>) -> Result<Response<pb::ReportRun>, Status> {
        let r = req.get_ref();
        let key = match c::opt_str(&r.idempotency_key) {
            None => None,
            Some(k) => Some(
                c::idempotency_key(k).map_err(|e| error::invalid_field("idempotency_key", e.reason, &e.description))?,
            ),
        };
        let Asked {
            parameters,
            filiere,
            cohort,
        } = parameters(r, self.reports.floor)?;
        let call = guard::call(&req, "RunReport")?;
        let view = ops::run(&self.reports, &call, key, parameters, filiere, cohort)
            .await
            .map_err(error::app)?;
        Ok(Response::new(run_out(&view)?))
    }

    async fn run_synthesis(&self, req: Request<pb::RunSynthesisRequest>) -> Result<Response<pb::ReportRun>, Status> {
        let r = req.get_ref();
        let key = match c::opt_str(&r.idempotency_key) {
            None => None,
            Some(k) => Some(
                c::idempotency_key(k).map_err(|e| error::invalid_field("idempotency_key", e.reason, &e.description))?,
            ),
        };
        let parameters = synthesis_parameters(r, self.reports.floor)?;
        let call = guard::call(&req, "RunSynthesis")?;
        let view = ops::run_synthesis(&self.reports, &call, key, parameters, Utc::now().date_naive())
            .await
            .map_err(error::app)?;
        Ok(Response::new(run_out(&view)?))
    }

    async fn get_report_run(&self, req: Request<pb::GetReportRunRequest>) -> Result<Response<pb::ReportRun>, Status> {
        let id = c::id(&req.get_ref().run_id).map_err(|e| error::invalid_field("run_id", e.reason, &e.description))?;
        let call = guard::call(&req, "GetReportRun")?;
        let view = ops::get(&self.reports, &call, &id).await.map_err(error::app)?;
        Ok(Response::new(run_out(&view)?))
    }

    async fn list_report_runs(
        &self,
        req: Request<pb::ListReportRunsRequest>,
    ) -> Result<Response<pb::ListReportRunsResponse>, Status> {
        let mut v = Violations::new();
        let page = c::page(&mut v, req.get_ref().page.as_ref());
        if !v.is_empty() {
            return Err(error::invalid(&v));
        }
        let call = guard::call(&req, "ListReportRuns")?;
        let page = ops::list(&self.reports, &call, &page).await.map_err(error::app)?;
        Ok(Response::new(pb::ListReportRunsResponse {
            runs: page.items.iter().map(run_out).collect::<Result<_, _>>()?,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type DownloadReportFileStream = ChunkStream;

    async fn download_report_file(
        &self,
        req: Request<pb::DownloadReportFileRequest>,
    ) -> Result<Response<Self::DownloadReportFileStream>, Status> {
        let r = req.get_ref();
        let id = c::id(&r.run_id).map_err(|e| error::invalid_field("run_id", e.reason, &e.description))?;
        let call = guard::call(&req, "DownloadReportFile")?;
        let (_, path, expected) = ops::open_output(&self.reports, &call, &id, &r.file)
            .await
            .map_err(error::app)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "report output missing");
            Status::data_loss(format!("output {} of this run is no longer on the server", r.file))
        })?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Status::data_loss(format!("output {} cannot be read: {e}", r.file)))?
            .len();
        let name = r.file.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut hasher = sha2::Sha256::new();
            let mut offset = 0u64;
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!("output {name} cannot be read: {e}"))))
                            .await;
                        return;
                    }
                };
                if n == 0 && !first {
                    break;
                }
                buf.truncate(n);
                hasher.update(&buf);
                let chunk = pb::ReportFileChunk {
                    size_bytes: if first { size } else { 0 },
                    sha256: if first { expected.clone() } else { String::new() },
                    offset,
                    data: buf,
                };
                first = false;
                offset += n as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return; // the client went away
                }
                if n == 0 {
                    break;
                }
            }
            if hex::encode(hasher.finalize()) != expected {
                tracing::error!(file = %name, "report output differs from its manifest checksum");
                let _ = tx
                    .send(Err(Status::data_loss(format!(
                        "output {name} changed on disk since the run: its checksum differs from the manifest"
                    ))))
                    .await;
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
