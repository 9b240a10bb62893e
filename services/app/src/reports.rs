//! Report operations: start a run, follow runs, open a published output. Run and read by
//! analysts and data managers, limited to the filières of their token; every report that leaves
//! the server is suppressed at the configured floor or above.

use observatory_analytics::{
    runs::{RunError, RunManifest, RunParameters, RunRequest, RunView, Runner},
    suppress::DEFAULT_THRESHOLD,
};
use observatory_domain::{CodeError, codes::Filiere, model::RecordId};
use observatory_store::{Page, PageRequest, audit::AuditTarget, report_runs::RunTrigger};

use crate::scope::{Target, admit};
use crate::{AppError, AppResult, Call};

/// Highest suppression threshold a run accepts.
pub const MAX_THRESHOLD: u32 = 1000;

/// The report runner and the disclosure floor every run asked for through an operation obeys.
#[derive(Clone)]
pub struct Reports {
    pub runner: Runner,
    /// Lowest suppression threshold a caller may ask for. Only the command line, run by whoever
    /// holds the database, may go lower.
    pub floor: u32,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl Reports {
    /// `floor` is clamped to 1..=[`MAX_THRESHOLD`].
    pub fn new(runner: Runner, floor: u32) -> Self {
        Self {
            runner,
            floor: floor.clamp(1, MAX_THRESHOLD),
        }
    }
}

/// The threshold a run asks for: 0 means the default (10, or the floor when it is higher);
/// below the floor or above [`MAX_THRESHOLD`] is refused.
pub fn threshold(asked: u32, floor: u32) -> Result<u32, CodeError> {
    let default = DEFAULT_THRESHOLD.max(floor);
    match asked {
        0 => Ok(default),
        t if t > MAX_THRESHOLD => Err(CodeError::new(
            "OUT_OF_RANGE",
            format!("must be at most {MAX_THRESHOLD} (0 for the default {default})"),
        )),
        t if t < floor => Err(CodeError::new(
            "BELOW_FLOOR",
            format!(
                "must be at least {floor}, the lowest threshold this server publishes reports with (0 for the default {default})"
            ),
        )),
        t => Ok(t),
    }
}

/// The application's answer to a failure of the report runner.
pub fn run_error(e: RunError) -> AppError {
    match e {
        RunError::Store(e) => AppError::Store(e),
        e @ RunError::Busy(_) => AppError::Exhausted(e.to_string()),
        e @ (RunError::Report(_) | RunError::Synthesis(_) | RunError::Corrupt(_) | RunError::Io(..)) => {
            tracing::error!(error = %e, "report run error");
            AppError::Internal("a report run failed on the server")
        }
    }
}

/// Starts a run (or replays the one `key` started): limited to `filiere` and/or `cohort`, or to
/// the caller's one filière when it names none. `parameters.threshold` is what was asked (0: the
/// default).
pub async fn run(
    r: &Reports,
    call: &Call,
    key: Option<String>,
    mut parameters: RunParameters,
    filiere: Option<Filiere>,
    cohort: Option<RecordId>,
) -> AppResult<RunView> {
    parameters.threshold = threshold(parameters.threshold, r.floor)
        .map_err(|e| AppError::invalid("suppression_threshold", e.reason, e.description))?;
    let target = Target::NewRun {
        filiere: filiere.as_ref(),
        cohort: cohort.as_ref(),
    };
    let admitted = admit(r.runner.store(), call, target).await?;
    parameters.scope.filiere = admitted.run_filiere().map(|f| f.as_str().to_owned());
    parameters.scope.cohort = cohort.map(String::from);
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
    let (view, _replayed) = r.runner.submit(request).await.map_err(run_error)?;
    Ok(view)
}

/// Starts the synthesis of a framework or cohort (or replays the one `key` started).
/// `parameters.synthesis` names it; `parameters.threshold` is what was asked (0: the default).
/// The caller's token must cover the filière of its cohorts: a cohort's own, or the one filière
/// of every cohort bound to the framework (a framework whose cohorts span several filières is
/// synthesised on the command line).
pub async fn run_synthesis(
    r: &Reports,
    call: &Call,
    key: Option<String>,
    mut parameters: RunParameters,
) -> AppResult<RunView> {
    use observatory_analytics::synthesis::Target as Subject;
    use observatory_domain::model::Framework;
    parameters.threshold = threshold(parameters.threshold, r.floor)
        .map_err(|e| AppError::invalid("suppression_threshold", e.reason, e.description))?;
    let subject = parameters
        .synthesis
        .as_ref()
        .map(|s| s.target.clone())
        .ok_or(AppError::Internal("a synthesis asked for with no subject"))?;
    let store = r.runner.store();
    let admitted = match &subject {
        Subject::Cohort(id) => {
            let id = RecordId::parse(id).map_err(|e| AppError::invalid("cohort_id", e.reason, e.description))?;
            admit(
                store,
                call,
                Target::NewRun {
                    filiere: None,
                    cohort: Some(&id),
                },
            )
            .await?
        }
        Subject::Framework(id) => {
            // Frameworks are public decisions: saying one does not exist tells nothing private.
            if store.get::<Framework>(id).await?.is_none() {
                return Err(AppError::invalid(
                    "framework_id",
                    "NOT_FOUND",
                    format!("no framework {id} in the registry"),
                ));
            }
            let mut filieres: Vec<Filiere> = store
                .cohorts_of_framework(id)
                .await?
                .into_iter()
                .map(|c| c.record.filiere)
                .collect();
            filieres.sort();
            filieres.dedup();
            match filieres.as_slice() {
                [] => {
                    return Err(AppError::invalid(
                        "framework_id",
                        "NO_COHORT",
                        "no cohort is bound to this framework: there is nothing to synthesise",
                    ));
                }
                [only] => {
                    admit(
                        store,
                        call,
                        Target::NewRun {
                            filiere: Some(only),
                            cohort: None,
                        },
                    )
                    .await?
                }
                many if call.principal().is_some() => {
                    let names: Vec<&str> = many.iter().map(Filiere::as_str).collect();
                    return Err(AppError::Denied(format!(
                        "framework_id: its cohorts span several filières ({}); such a synthesis is written on the command line",
                        names.join(", ")
                    )));
                }
                _ => admit(store, call, Target::Unbound).await?,
            }
        }
    };
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
    let (view, _replayed) = r.runner.submit(request).await.map_err(run_error)?;
    Ok(view)
}

/// A run the caller may see: one limited to a filière of its token. A run that does not exist
/// is answered as one out of scope.
pub async fn get(r: &Reports, call: &Call, id: &RecordId) -> AppResult<RunView> {
    let view = r.runner.get(id.as_str()).await.map_err(run_error)?;
    let filiere = view.as_ref().and_then(|v| v.record.run.filiere.as_deref());
    admit(r.runner.store(), call, Target::Run(filiere)).await?;
    view.ok_or(AppError::Internal("a report run admitted without being found"))
}

/// Runs of the caller's filières, newest first.
pub async fn list(r: &Reports, call: &Call, page: &PageRequest) -> AppResult<Page<RunView>> {
    let admitted = admit(r.runner.store(), call, Target::List).await?;
    let within = admitted.within().map(|s| s.filieres());
    r.runner.list(within, page).await.map_err(run_error)
}

/// A published output of a run the caller may see, by its name in the manifest (or
/// `manifest.json`): the run, the output's path and its SHA-256. The export is recorded in the
/// audit trail, with that digest, before anything is sent.
pub async fn open_output(
    r: &Reports,
    call: &Call,
    id: &RecordId,
    file: &str,
) -> AppResult<(RunView, std::path::PathBuf, String)> {
    use sha2::Digest;
    let view = r.runner.get(id.as_str()).await.map_err(run_error)?;
    let filiere = view.as_ref().and_then(|v| v.record.run.filiere.as_deref());
    let admitted = admit(r.runner.store(), call, Target::Run(filiere)).await?;
    let view = view.ok_or(AppError::Internal("a report run admitted without being found"))?;
    let manifest: RunManifest = view.manifest().map_err(run_error)?.ok_or_else(|| {
        AppError::from(observatory_domain::DomainError::Precondition(format!(
            "report run {} has not succeeded: it has no outputs",
            view.record.run.id
        )))
    })?;
    // Only the published outputs, by their exact names: never the snapshot, never a path of the
    // caller's choosing.
    let expected = if file == "manifest.json" {
        let bytes = manifest
            .to_json_pretty()
            .map_err(|e| run_error(RunError::Corrupt(e.to_string())))?;
        hex::encode(sha2::Sha256::digest(bytes))
    } else {
        match manifest.outputs().iter().find(|o| o.file == file) {
            Some(o) => o.sha256.clone(),
            None => {
                return Err(AppError::invalid(
                    "file",
                    "UNKNOWN_OUTPUT",
                    "is not an output of this run: give a file listed in its manifest, or manifest.json",
                ));
            }
        }
    };
    let target = AuditTarget {
        after: Some(expected.clone()),
        ..AuditTarget::object("REPORT_FILE", format!("{}/{}", view.record.run.id, file))
    };
    admitted
        .audit_read(r.runner.store(), call.operation, vec![target])
        .await?;
    let path = std::path::PathBuf::from(&view.record.run.out_dir).join(file);
    Ok((view, path, expected))
}
