//! Report operations: start a run, follow runs, open a published output. Run and read by
//! analysts and data managers, limited to the filières of their token; every report that leaves
//! the server is suppressed at the configured floor or above.

use chrono::NaiveDate;
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

/// A synthesis as asked for: its parameters (`synthesis` names the framework or cohort), and
/// its period, or `None` for the next one due under the framework's periodicity (the period in
/// `parameters` is then replaced).
#[derive(Debug, Clone)]
pub struct SynthesisAsk {
    pub parameters: RunParameters,
    pub period: Option<(NaiveDate, NaiveDate)>,
}

/// The synthesis period due next for `subject` on `today`: the oldest period of its framework's
/// periodicity that has ended and has no synthesis written (succeeded) or under way (queued or
/// running). A cohort follows its framework's periodicity, and its own runs. Refused, saying
/// why and what to do, when the framework sets no periodicity, when its first period has not
/// ended, or when every ended period is written.
pub async fn next_synthesis_period(
    store: &observatory_store::Store,
    subject: &observatory_analytics::synthesis::Target,
    today: NaiveDate,
) -> AppResult<(NaiveDate, NaiveDate)> {
    use observatory_analytics::synthesis::Target as Subject;
    use observatory_domain::model::{Cohort, Framework};
    use observatory_store::report_runs::RunStatus;
    let refused = |why: String| AppError::from(observatory_domain::DomainError::Precondition(why));
    let (kind, id, framework_id) = match subject {
        Subject::Framework(id) => ("framework", id.clone(), id.clone()),
        Subject::Cohort(id) => {
            let cohort = store
                .get::<Cohort>(id)
                .await?
                .ok_or(AppError::Internal("a cohort admitted without being found"))?;
            match cohort.record.framework_id {
                Some(f) => ("cohort", id.clone(), f.to_string()),
                None => {
                    return Err(refused(format!(
                        "period: cohort {id} is under no framework, so no synthesis periodicity applies: give a period or a range"
                    )));
                }
            }
        }
    };
    let framework = store
        .get::<Framework>(&framework_id)
        .await?
        .ok_or(AppError::Internal("a framework named by a cohort is missing"))?
        .record;
    if framework.synthesis_months == 0 {
        return Err(refused(format!(
            "period: framework {framework_id} sets no interval between synthesis reports (amend its protocol to set one): give a period or a range"
        )));
    }
    let ended = framework.ended_synthesis_periods(today);
    let Some(last) = ended.last().copied() else {
        let first = framework.current_synthesis_period(today);
        return Err(refused(match first {
            Some(p) => format!(
                "period: the first synthesis period of framework {framework_id} ends on {}: give a period or a range for an interim synthesis",
                p.to
            ),
            None => format!("period: framework {framework_id} has no synthesis period: give a period or a range"),
        }));
    };
    let runs = store.synthesis_runs(kind, &id).await?;
    let covered = |from: NaiveDate, to: NaiveDate| {
        runs.iter().any(|run| {
            let live = match &run.outcome {
                None => true,
                Some(o) => o.status == RunStatus::Succeeded,
            };
            live && run.run.parameters.get("period_from").and_then(|v| v.as_str()) == Some(&from.to_string())
                && run.run.parameters.get("period_to").and_then(|v| v.as_str()) == Some(&to.to_string())
        })
    };
    match ended.iter().find(|p| !covered(p.from, p.to)) {
        Some(p) => Ok((p.from, p.to)),
        None => Err(refused(format!(
            "period: every synthesis period of framework {framework_id} that has ended is written (the last, {} to {}){}: give a period or a range to write one again",
            last.from,
            last.to,
            framework
                .current_synthesis_period(today)
                .map(|p| format!("; the next ends on {}", p.to))
                .unwrap_or_default()
        ))),
    }
}

/// Admits `call` to the synthesis of `subject`: the caller's token must cover the filière of its
/// cohorts (see [`run_synthesis`]). `quiet`: a refusal is not recorded (no call was made).
async fn admit_synthesis(
    store: &observatory_store::Store,
    call: &Call,
    subject: &observatory_analytics::synthesis::Target,
    quiet: bool,
) -> AppResult<crate::scope::Admitted> {
    use observatory_analytics::synthesis::Target as Subject;
    use observatory_domain::model::Framework;
    let gate = async |target: Target<'_>| {
        if quiet {
            crate::scope::admit_quietly(store, call, target).await
        } else {
            admit(store, call, target).await
        }
    };
    Ok(match subject {
        Subject::Cohort(id) => {
            let id = RecordId::parse(id).map_err(|e| AppError::invalid("cohort_id", e.reason, e.description))?;
            gate(Target::NewRun {
                filiere: None,
                cohort: Some(&id),
            })
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
                    gate(Target::NewRun {
                        filiere: Some(only),
                        cohort: None,
                    })
                    .await?
                }
                // A national analyst synthesises a framework of several filières; others, on the
                // command line.
                many if call.principal().is_some_and(|p| !p.scope.national()) => {
                    let names: Vec<&str> = many.iter().map(Filiere::as_str).collect();
                    return Err(AppError::Denied(format!(
                        "framework_id: its cohorts span several filières ({}); such a synthesis is written by a national analyst or on the command line",
                        names.join(", ")
                    )));
                }
                _ => gate(Target::Unbound).await?,
            }
        }
    })
}

/// The synthesis period due next for `subject` ([`next_synthesis_period`] on `today`), for a
/// caller who may write its synthesis: what a page offers, so a refusal is not recorded.
pub async fn synthesis_due(
    r: &Reports,
    call: &Call,
    subject: &observatory_analytics::synthesis::Target,
    today: NaiveDate,
) -> AppResult<(NaiveDate, NaiveDate)> {
    let store = r.runner.store();
    admit_synthesis(store, call, subject, true).await?;
    next_synthesis_period(store, subject, today).await
}

/// Starts the synthesis of a framework or cohort (or replays the one `key` started).
/// `ask.parameters.synthesis` names it; its threshold is what was asked (0: the default); with
/// no period, the next one due ([`next_synthesis_period`] on `today`).
/// The caller's token must cover the filière of its cohorts: a cohort's own, or the one filière
/// of every cohort bound to the framework (a framework whose cohorts span several filières is
/// synthesised on the command line).
pub async fn run_synthesis(
    r: &Reports,
    call: &Call,
    key: Option<String>,
    ask: SynthesisAsk,
    today: NaiveDate,
) -> AppResult<RunView> {
    let SynthesisAsk { mut parameters, period } = ask;
    parameters.threshold = threshold(parameters.threshold, r.floor)
        .map_err(|e| AppError::invalid("suppression_threshold", e.reason, e.description))?;
    let subject = parameters
        .synthesis
        .as_ref()
        .map(|s| s.target.clone())
        .ok_or(AppError::Internal("a synthesis asked for with no subject"))?;
    let store = r.runner.store();
    let admitted = admit_synthesis(store, call, &subject, false).await?;
    let ctx = admitted.context(key.clone());
    // Worked out once the caller is admitted: what runs exist is no business of anyone else.
    // A retry of a request that left the period out is the same request: it gets the period
    // its first attempt was given, and so the same run.
    let (from, to) = match period {
        Some(period) => period,
        None => {
            let earlier = match &key {
                Some(k) => store.report_run_by_key(&ctx.actor, k).await?,
                None => None,
            };
            let replayed = earlier.and_then(|run| {
                let earlier: RunParameters = serde_json::from_value(run.run.parameters).ok()?;
                (earlier.synthesis.as_ref().map(|s| &s.target) == Some(&subject))
                    .then_some((earlier.period_from, earlier.period_to))
            });
            match replayed {
                Some(period) => period,
                None => next_synthesis_period(store, &subject, today).await?,
            }
        }
    };
    parameters.period_from = from;
    parameters.period_to = to;
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
    // A national analyst reads every run; others, the runs of their filières.
    let within = admitted.within().filter(|s| !s.national()).map(|s| s.filieres());
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
    // Deleted under the retention setting: the manifest alone remains, kept with the run.
    if let Some(at) = view.record.purged_at
        && file != "manifest.json"
    {
        return Err(AppError::from(observatory_domain::DomainError::Precondition(format!(
            "the files of report run {} were deleted on {} under the server's retention setting; its manifest remains (manifest.json): run the report again for its tables",
            view.record.run.id,
            at.format("%Y-%m-%d")
        ))));
    }
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
