//! `observatory.v1.ReportService`: run reports, follow runs, stream published outputs.

use std::path::PathBuf;

use chrono::Utc;
use observatory_analytics::{
    CsvStyle, Period,
    report::Scope,
    runs::{RunError, RunParameters, RunRequest, RunState, RunView, Runner},
    suppress::DEFAULT_THRESHOLD,
};
use observatory_domain::{CodeError, Violations, codes::Filiere, model::RecordId};
use observatory_proto::v1::{self as pb, report_service_server::ReportService};
use observatory_store::audit::AuditTarget;
use observatory_store::report_runs::{RunStatus, RunTrigger};
use sha2::Digest;
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use crate::convert::{self as c, all_some};
use crate::error;
use crate::guard::{Admitted, Target, admit};

/// Largest chunk of a streamed file.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Highest suppression threshold a run accepts.
pub const MAX_THRESHOLD: u32 = 1000;

#[derive(Debug, Clone)]
pub struct ReportApi {
    runner: Runner,
    /// Lowest suppression threshold a caller may ask for: every report that leaves the server
    /// over gRPC is suppressed at this threshold or above. Only the command line, run by
    /// whoever holds the database, may go lower.
    floor: u32,
}

impl ReportApi {
    /// `floor`: the lowest suppression threshold a run request may ask for (see
    /// `report_min_threshold` in the configuration), between 1 and [`MAX_THRESHOLD`].
    pub fn new(runner: Runner, floor: u32) -> Self {
        Self {
            runner,
            floor: floor.clamp(1, MAX_THRESHOLD),
        }
    }

    /// A run the caller may see: one limited to a filière of its token. A run that does not
    /// exist is answered as one out of scope.
    async fn view<T>(&self, req: &Request<T>, raw_id: &str) -> Result<(RunView, Admitted), Status> {
        let id = c::id(raw_id).map_err(|e| error::invalid_field("run_id", e.reason, &e.description))?;
        let view = self.runner.get(id.as_str()).await.map_err(run_error)?;
        let filiere = view.as_ref().and_then(|v| v.record.run.filiere.as_deref());
        let admitted = admit(self.runner.store(), req, Target::Run(filiere)).await?;
        match view {
            Some(view) => Ok((view, admitted)),
            None => Err(Status::internal("a report run admitted without being found")),
        }
    }
}

fn run_error(e: RunError) -> Status {
    match e {
        RunError::Store(e) => error::store(e),
        e @ RunError::Busy(_) => Status::with_error_details(
            tonic::Code::ResourceExhausted,
            e.to_string(),
            tonic_types::ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(10))),
        ),
        e @ (RunError::Report(_) | RunError::Corrupt(_) | RunError::Io(..)) => {
            tracing::error!(error = %e, "report run error");
            Status::internal("internal error; it has been logged")
        }
    }
}

/// What a run request asks for: its parameters, every invalid field named, and the filière and
/// cohort it names (for the scope check).
struct Asked {
    parameters: RunParameters,
    filiere: Option<Filiere>,
    cohort: Option<RecordId>,
}

/// The threshold a run request asks for: 0 means the default (10, or the floor when it is
/// higher); below the floor or above [`MAX_THRESHOLD`] is refused.
fn threshold(asked: u32, floor: u32) -> Result<u32, CodeError> {
    match asked {
        0 => Ok(DEFAULT_THRESHOLD.max(floor)),
        t if t > MAX_THRESHOLD => Err(CodeError::new(
            "OUT_OF_RANGE",
            format!(
                "must be at most {MAX_THRESHOLD} (0 for the default {})",
                DEFAULT_THRESHOLD.max(floor)
            ),
        )),
        t if t < floor => Err(CodeError::new(
            "BELOW_FLOOR",
            format!(
                "must be at least {floor}, the lowest threshold this server publishes reports with (0 for the default {})",
                DEFAULT_THRESHOLD.max(floor)
            ),
        )),
        t => Ok(t),
    }
}

fn parameters(r: &pb::RunReportRequest, floor: u32) -> Result<Asked, Status> {
    let mut v = Violations::new();
    let period = match (c::opt_str(&r.period), r.range.as_ref()) {
        (Some(_), Some(range)) if !(range.from.is_empty() && range.to.is_empty()) => {
            v.push("range", "CONFLICT", "give either period or range, not both");
            None
        }
        (Some(p), _) => v.check(
            "period",
            Period::parse(p)
                .map_err(|e| CodeError::new("BAD_FORMAT", format!("{}: use 2026-Q3, 2026-09 or 2026", e.reason))),
        ),
        (None, Some(range)) => {
            let from = v.check("range.from", c::date(&range.from));
            let to = v.check("range.to", c::date(&range.to));
            match (from, to) {
                (Some(from), Some(to)) if to < from => {
                    v.push("range.to", "OUT_OF_RANGE", "is before range.from");
                    None
                }
                (Some(from), Some(to)) => Some(Period { from, to }),
                _ => None,
            }
        }
        (None, None) => {
            v.push(
                "period",
                "REQUIRED",
                "give a period (2026-Q3, 2026-09, 2026) or a range",
            );
            None
        }
    };
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
    let threshold = v.check("suppression_threshold", threshold(r.suppression_threshold, floor));
    all_some!(v; period, as_of, filiere, cohort, threshold);
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
    };
    Ok(Asked {
        parameters,
        filiere,
        cohort,
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
        snapshot_hash: m.snapshot_hash,
        code_version: m.code_version,
        outputs: m
            .outputs
            .into_iter()
            .map(|o| pb::ReportOutput {
                file: o.file,
                rows: o.rows,
                sha256: o.sha256,
            })
            .collect(),
    });
    let period = parameters.period();
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
        filiere: parameters.scope.filiere.unwrap_or_default(),
        cohort_id: parameters.scope.cohort.unwrap_or_default(),
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
            mut parameters,
            filiere,
            cohort,
        } = parameters(r, self.floor)?;
        let target = Target::NewRun {
            filiere: filiere.as_ref(),
            cohort: cohort.as_ref(),
        };
        let admitted = admit(self.runner.store(), &req, target).await?;
        // Limited to the caller's filière when it asked for none (its only one).
        parameters.scope.filiere = admitted.run_filiere().map(|f| f.as_str().to_owned());
        let ctx = admitted.context(key.clone());
        let request = RunRequest {
            parameters,
            trigger: RunTrigger::Request,
            schedule: None,
            attempt: 1,
            requested_by: ctx.actor,
            request_id: ctx.request_id,
            idempotency_key: key,
        };
        let (view, _replayed) = self.runner.submit(request).await.map_err(run_error)?;
        Ok(Response::new(run_out(&view)?))
    }

    async fn get_report_run(&self, req: Request<pb::GetReportRunRequest>) -> Result<Response<pb::ReportRun>, Status> {
        let (view, _) = self.view(&req, &req.get_ref().run_id).await?;
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
        admit(self.runner.store(), &req, Target::List).await?;
        let within = crate::guard::principal(&req)?.scope.filieres();
        let page = self.runner.list(Some(within), &page).await.map_err(run_error)?;
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
        let (view, admitted) = self.view(&req, &r.run_id).await?;
        let Some(manifest) = view.manifest().map_err(run_error)? else {
            return Err(Status::failed_precondition(format!(
                "report run {} has not succeeded: it has no outputs",
                view.record.run.id
            )));
        };
        // Only the published outputs, by their exact names: never the snapshot, never a path
        // of the caller's choosing.
        let expected = if r.file == "manifest.json" {
            let bytes =
                serde_json::to_vec_pretty(&manifest).map_err(|e| run_error(RunError::Corrupt(e.to_string())))?;
            hex::encode(sha2::Sha256::digest(bytes))
        } else {
            match manifest.outputs.iter().find(|o| o.file == r.file) {
                Some(o) => o.sha256.clone(),
                None => {
                    return Err(error::invalid_field(
                        "file",
                        "UNKNOWN_OUTPUT",
                        "is not an output of this run: give a file listed in its manifest, or manifest.json",
                    ));
                }
            }
        };
        // An export: recorded, with the digest of what is sent, before the first byte goes.
        let target = AuditTarget {
            after: Some(expected.clone()),
            ..AuditTarget::object("REPORT_FILE", format!("{}/{}", view.record.run.id, r.file))
        };
        admitted
            .audit_read(self.runner.store(), "DownloadReportFile", vec![target])
            .await
            .map_err(error::app)?;
        let path = PathBuf::from(&view.record.run.out_dir).join(&r.file);
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
