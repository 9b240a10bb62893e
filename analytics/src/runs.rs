//! Report runs: each run of the job is recorded in the registry database when accepted and
//! again when it ends (append-only), executes one at a time in the background, and reports its
//! progress while it goes. The periodic schedule of `serve` reports each closed month or
//! quarter once, catching up the periods missed while the server was down.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use observatory_store::{
    Page, PageRequest, Store, StoreError,
    report_runs::{NewReportRun, Recorded, ReportRunRecord, RunOutcome, RunStatus, RunTrigger},
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tracing::Instrument;

use crate::{
    Period,
    report::{self, CsvStyle, OutputFile, ReportError, ReportManifest, ReportOptions, Scope, Stage},
    synthesis::{self, Language, SynthesisError, SynthesisManifest, SynthesisOptions, Target},
};

/// A synthesis asked for instead of the periodic report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthesisRequest {
    pub target: Target,
    #[serde(default)]
    pub language: Language,
}

/// Parameters of a run, as requested: what its idempotency key is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunParameters {
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    /// The cutoff as requested; `None` is the instant the run was accepted.
    pub as_of: Option<DateTime<Utc>>,
    pub threshold: u32,
    pub csv: CsvStyle,
    pub scope: Scope,
    /// The synthesis of one framework or cohort rather than the periodic report (absent from
    /// report runs, so that their parameters read and hash as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<SynthesisRequest>,
    /// The language of a report's HTML page. Runs recorded before reports had one were written
    /// in English, and English runs read and hash as they did (absent).
    #[serde(default = "english", skip_serializing_if = "is_english")]
    pub language: Language,
}

fn english() -> Language {
    Language::En
}

fn is_english(language: &Language) -> bool {
    *language == Language::En
}

/// What a succeeded run wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum RunManifest {
    Report(ReportManifest),
    Synthesis(Box<SynthesisManifest>),
}

impl RunManifest {
    pub fn outputs(&self) -> &[OutputFile] {
        match self {
            RunManifest::Report(m) => &m.outputs,
            RunManifest::Synthesis(m) => &m.outputs,
        }
    }

    pub fn snapshot_hash(&self) -> &str {
        match self {
            RunManifest::Report(m) => &m.snapshot_hash,
            RunManifest::Synthesis(m) => &m.snapshot_hash,
        }
    }

    pub fn code_version(&self) -> &str {
        match self {
            RunManifest::Report(m) => &m.code_version,
            RunManifest::Synthesis(m) => &m.code_version,
        }
    }

    /// `manifest.json` as the run wrote it.
    pub fn to_json_pretty(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            RunManifest::Report(m) => serde_json::to_vec_pretty(m),
            RunManifest::Synthesis(m) => serde_json::to_vec_pretty(m),
        }
    }

    fn to_value(&self) -> serde_json::Value {
        match self {
            RunManifest::Report(m) => serde_json::to_value(m).unwrap_or_default(),
            RunManifest::Synthesis(m) => serde_json::to_value(m).unwrap_or_default(),
        }
    }
}

impl RunParameters {
    pub fn period(&self) -> Period {
        Period {
            from: self.period_from,
            to: self.period_to,
        }
    }

    fn fingerprint(&self) -> String {
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(self).unwrap_or_default()))
    }
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub parameters: RunParameters,
    pub trigger: RunTrigger,
    pub schedule: Option<Schedule>,
    pub attempt: i64,
    pub requested_by: String,
    pub request_id: String,
    pub idempotency_key: Option<String>,
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Accepted, waiting for the runs before it.
    Queued,
    /// Going on: the stage that began last, how many stages began, of how many.
    Running {
        stage: String,
        done: u32,
        total: u32,
    },
    Ended(RunStatus),
}

/// A recorded run and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub record: ReportRunRecord,
    pub state: RunState,
}

impl RunView {
    /// The run's parameters (as requested).
    pub fn parameters(&self) -> Result<RunParameters, RunError> {
        serde_json::from_value(self.record.run.parameters.clone()).map_err(|e| RunError::Corrupt(e.to_string()))
    }

    /// The manifest of a succeeded run.
    pub fn manifest(&self) -> Result<Option<RunManifest>, RunError> {
        let Some(value) = self.record.outcome.as_ref().and_then(|o| o.manifest.clone()) else {
            return Ok(None);
        };
        let corrupt = |e: serde_json::Error| RunError::Corrupt(e.to_string());
        Ok(Some(if self.parameters()?.synthesis.is_some() {
            RunManifest::Synthesis(Box::new(serde_json::from_value(value).map_err(corrupt)?))
        } else {
            RunManifest::Report(serde_json::from_value(value).map_err(corrupt)?)
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Synthesis(#[from] SynthesisError),
    #[error("stored report run could not be read: {0}")]
    Corrupt(String),
    #[error("report directory {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} report runs of this requester are waiting or running already: retry once one has ended")]
    Busy(usize),
}

/// Starts, executes and follows report runs. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    reports_dir: PathBuf,
    /// Runs of this process that have not ended.
    progress: Mutex<HashMap<String, RunState>>,
    /// One run at a time: a report takes both cores.
    slot: tokio::sync::Semaphore,
    /// Runs asked for over gRPC that have not ended, per requester (`role:token-id`), and how many
    /// one requester may have (`None`: unbounded).
    waiting: Mutex<HashMap<String, usize>>,
    per_requester: Option<usize>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("reports_dir", &self.inner.reports_dir)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Runs write their outputs under `reports_dir/<run id>`.
    pub fn new(store: Store, reports_dir: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                reports_dir,
                progress: Mutex::new(HashMap::new()),
                slot: tokio::sync::Semaphore::new(1),
                waiting: Mutex::new(HashMap::new()),
                per_requester: None,
            }),
        }
    }

    /// At most `n` runs asked for by one requester may wait or run at once; one more is
    /// [`RunError::Busy`]. Call before the runner is shared.
    pub fn bounded_per_requester(mut self, n: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.per_requester = Some(n.max(1));
        }
        self
    }

    /// Counts a run of `requester` as waiting, unless it has `per_requester` already. The
    /// schedule is the server's own and is not bounded: it queues the national report and each
    /// filière's, for every period it catches up.
    fn reserve(&self, requester: &str) -> Result<(), RunError> {
        let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let n = waiting.entry(requester.to_owned()).or_default();
        if let Some(max) = self.inner.per_requester
            && requester != SCHEDULE_PRINCIPAL
            && *n >= max
        {
            return Err(RunError::Busy(max));
        }
        *n += 1;
        Ok(())
    }

    fn release(&self, requester: &str) {
        let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = waiting.get_mut(requester) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                waiting.remove(requester);
            }
        }
    }

    /// The registry the runs read and are recorded in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn reports_dir(&self) -> &std::path::Path {
        &self.inner.reports_dir
    }

    /// Records an `interrupted` outcome for every run left without one by an earlier process.
    /// Call once at start, before accepting runs.
    pub async fn recover(&self) -> Result<usize, RunError> {
        let mut n = 0;
        for r in self.inner.store.unfinished_report_runs().await? {
            if self.state_in_process(&r.run.id).is_some() {
                continue;
            }
            let outcome = RunOutcome {
                finished_at: Utc::now(),
                status: RunStatus::Interrupted,
                manifest: None,
                error: Some("the observatory stopped before the run ended".to_owned()),
            };
            self.inner.store.finish_report_run(&r.run.id, &outcome).await?;
            tracing::warn!(run_id = %r.run.id, period = %r.run.period_label, "report run interrupted by a stop");
            n += 1;
        }
        Ok(n)
    }

    fn state_in_process(&self, id: &str) -> Option<RunState> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunState>> {
        // A poisoned map only holds progress figures: keep using it.
        self.inner.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new run writing into `out_dir`, by default `reports_dir/<run id>`.
    async fn new_run(&self, request: &RunRequest, out_dir: Option<PathBuf>) -> Result<NewReportRun, RunError> {
        // The filière the run belongs to, for access: the one asked for, else that of the
        // cohort asked for (an unknown cohort: none, and the report is empty).
        let scope = &request.parameters.scope;
        let filiere = match (&request.parameters.synthesis, &scope.filiere, &scope.cohort) {
            // A synthesis belongs to the filière of its cohorts (none when they span several:
            // national roles only).
            (Some(synthesis), _, _) => self.synthesis_filiere(&synthesis.target).await?,
            (None, Some(f), _) => Some(f.clone()),
            (None, None, Some(cohort)) => self
                .inner
                .store
                .get::<observatory_domain::model::Cohort>(cohort)
                .await?
                .map(|c| c.record.filiere.to_string()),
            (None, None, None) => None,
        };
        let now = Utc::now();
        let id = uuid::Uuid::now_v7().to_string();
        let out_dir = out_dir.unwrap_or_else(|| self.inner.reports_dir.join(&id));
        Ok(NewReportRun {
            requested_at: now,
            requested_by: request.requested_by.clone(),
            request_id: request.request_id.clone(),
            trigger: request.trigger,
            schedule: request.schedule.map(|s| s.code().to_owned()),
            attempt: request.attempt,
            idempotency_key: request.idempotency_key.clone(),
            fingerprint: request.parameters.fingerprint(),
            period_label: request.parameters.period().label(),
            as_of: request.parameters.as_of.unwrap_or(now),
            filiere,
            parameters: serde_json::to_value(&request.parameters).unwrap_or_default(),
            out_dir: out_dir.to_string_lossy().into_owned(),
            id,
        })
    }

    /// The filière of a synthesis's cohorts, when they all belong to one.
    async fn synthesis_filiere(&self, target: &Target) -> Result<Option<String>, RunError> {
        use observatory_domain::model::Cohort;
        let filieres: std::collections::BTreeSet<String> = match target {
            Target::Cohort(id) => self
                .inner
                .store
                .get::<Cohort>(id)
                .await?
                .map(|c| c.record.filiere.to_string())
                .into_iter()
                .collect(),
            Target::Framework(id) => self
                .inner
                .store
                .cohorts_of_framework(id)
                .await?
                .into_iter()
                .map(|c| c.record.filiere.to_string())
                .collect(),
        };
        Ok(if filieres.len() == 1 {
            filieres.into_iter().next()
        } else {
            None
        })
    }

    /// Records a run and starts it in the background (after the runs before it). With an
    /// idempotency key used before for the same parameters, the earlier run, not started again.
    pub async fn submit(&self, request: RunRequest) -> Result<(RunView, bool), RunError> {
        std::fs::create_dir_all(&self.inner.reports_dir)
            .map_err(|e| RunError::Io(self.inner.reports_dir.clone(), e))?;
        let requester = request.requested_by.clone();
        if let Err(busy) = self.reserve(&requester) {
            // A replay is answered whatever the requester has waiting: it starts nothing.
            if let Some(key) = &request.idempotency_key
                && let Some(earlier) = self.inner.store.report_run_by_key(&requester, key).await?
            {
                return if earlier.run.fingerprint == request.parameters.fingerprint() {
                    Ok((self.view(earlier), true))
                } else {
                    Err(RunError::Store(observatory_store::StoreError::IdempotencyMismatch {
                        scope: "RunReport".to_owned(),
                    }))
                };
            }
            return Err(busy);
        }
        let recorded = async {
            let run = self.new_run(&request, None).await?;
            Ok::<_, RunError>((self.inner.store.record_report_run(&run).await?, run))
        }
        .await;
        match recorded {
            Err(e) => {
                self.release(&requester);
                Err(e)
            }
            Ok((Recorded::Replayed(record), _)) => {
                self.release(&requester);
                Ok((self.view(record), true))
            }
            Ok((Recorded::New(record), run)) => {
                self.lock().insert(run.id.clone(), RunState::Queued);
                let runner = self.clone();
                let span = run_span(&run);
                tokio::spawn(async move {
                    let _ = runner.execute(run, span, |_| {}).await;
                    runner.release(&requester);
                });
                Ok((self.view(record), false))
            }
        }
    }

    /// Records a run writing into `out` and executes it now, telling `observe` each stage
    /// (the command line's progress bar).
    pub async fn run_now(
        &self,
        request: RunRequest,
        out: PathBuf,
        observe: impl Fn(Stage<'_>) + Send + Sync + 'static,
    ) -> Result<(String, RunManifest), RunError> {
        let out = std::path::absolute(&out).map_err(|e| RunError::Io(out.clone(), e))?;
        // Never over an earlier report: its recorded run would point at overwritten files.
        if let Ok(mut entries) = std::fs::read_dir(&out)
            && entries.next().is_some()
        {
            return Err(RunError::Io(
                out,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "holds files already: give a new or empty directory",
                ),
            ));
        }
        let run = self.new_run(&request, Some(out)).await?;
        let id = run.id.clone();
        self.inner.store.record_report_run(&run).await?;
        self.lock().insert(id.clone(), RunState::Queued);
        let span = run_span(&run);
        self.execute(run, span, observe).await.map(|manifest| (id, manifest))
    }

    /// Executes a recorded run in `span`, then records its outcome.
    async fn execute(
        &self,
        run: NewReportRun,
        span: tracing::Span,
        observe: impl Fn(Stage<'_>) + Send + Sync + 'static,
    ) -> Result<RunManifest, RunError> {
        // Once the runs before it are done.
        let mut started = None;
        let result = async {
            let _slot = self.inner.slot.acquire().await;
            started = Some(std::time::Instant::now());
            let parameters: RunParameters =
                serde_json::from_value(run.parameters.clone()).map_err(|e| RunError::Corrupt(e.to_string()))?;
            let synthesis_request = parameters.synthesis.clone();
            let options = ReportOptions {
                period: parameters.period(),
                as_of: run.as_of,
                out: PathBuf::from(&run.out_dir),
                threshold: parameters.threshold,
                csv: parameters.csv,
                scope: parameters.scope,
                language: parameters.language,
            };
            let progress = self.clone();
            let id = run.id.clone();
            let total = match &synthesis_request {
                Some(_) => synthesis::stage_count(),
                None => report::stage_count(),
            } as u32;
            let tell = move |stage: Stage<'_>| {
                let state = match stage {
                    Stage::Snapshot => Some(RunState::Running {
                        stage: "snapshot".to_owned(),
                        done: 1,
                        total,
                    }),
                    Stage::Table { name, index, .. } => Some(RunState::Running {
                        stage: name.to_owned(),
                        done: index as u32 + 1,
                        total,
                    }),
                    Stage::Done => None,
                };
                if let Some(state) = state {
                    progress.lock().insert(id.clone(), state);
                }
                observe(stage);
            };
            tracing::info!("report run started");
            let store = self.inner.store.clone();
            // Its own task: a panic in the job fails the run instead of leaving it running.
            let job = tokio::spawn(
                async move {
                    match synthesis_request {
                        None => report::run_observed(&store, &options, tell)
                            .await
                            .map(RunManifest::Report)
                            .map_err(RunError::from),
                        Some(request) => {
                            let options = SynthesisOptions {
                                target: request.target,
                                period: options.period,
                                as_of: options.as_of,
                                out: options.out,
                                threshold: options.threshold,
                                csv: options.csv,
                                language: request.language,
                            };
                            synthesis::run_observed(&store, &options, tell)
                                .await
                                .map(|m| RunManifest::Synthesis(Box::new(m)))
                                .map_err(RunError::from)
                        }
                    }
                }
                .in_current_span(),
            );
            match job.await {
                Ok(result) => result,
                Err(e) => Err(RunError::Corrupt(format!("the report job stopped: {e}"))),
            }
        }
        .instrument(span.clone())
        .await;
        let outcome = match &result {
            Ok(manifest) => RunOutcome {
                finished_at: Utc::now(),
                status: RunStatus::Succeeded,
                manifest: Some(manifest.to_value()),
                error: None,
            },
            Err(e) => RunOutcome {
                finished_at: Utc::now(),
                status: RunStatus::Failed,
                manifest: None,
                error: Some(error_chain(e)),
            },
        };
        // In the run's span, never entered across an await (the task may move between threads).
        async {
            match &result {
                Ok(m) => tracing::info!(snapshot = %m.snapshot_hash(), outputs = m.outputs().len(), "report run succeeded"),
                Err(e) => tracing::error!(error = %error_chain(e), "report run failed"),
            }
            let took = started.map(|s| s.elapsed()).unwrap_or_default();
            record_run(run.trigger, outcome.status, took, result.as_ref().ok());
            if let Err(e) = self.inner.store.finish_report_run(&run.id, &outcome).await {
                tracing::error!(error = %e, "cannot record the end of a report run: it will show as interrupted after a restart");
            }
        }
        .instrument(span)
        .await;
        self.lock().remove(&run.id);
        result
    }

    fn view(&self, record: ReportRunRecord) -> RunView {
        let state = match &record.outcome {
            Some(o) => RunState::Ended(o.status),
            // Not ended: queued or running here, or running in another process (the command line).
            None => self.state_in_process(&record.run.id).unwrap_or(RunState::Running {
                stage: String::new(),
                done: 0,
                total: report::stage_count() as u32,
            }),
        };
        RunView { record, state }
    }

    pub async fn get(&self, id: &str) -> Result<Option<RunView>, RunError> {
        Ok(self.inner.store.get_report_run(id).await?.map(|r| self.view(r)))
    }

    /// Runs, newest first: every run, or (`within` some filières) those limited to one of them.
    pub async fn list(
        &self,
        within: Option<&[observatory_domain::codes::Filiere]>,
        page: &PageRequest,
    ) -> Result<Page<RunView>, RunError> {
        let page = self.inner.store.list_report_runs(within, page).await?;
        Ok(Page {
            items: page.items.into_iter().map(|r| self.view(r)).collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// Starts a run for every period of the schedule that is due at `now` (see
    /// [`due_periods`]), national and, with `per_filiere`, for each filière that has a cohort;
    /// returns the runs started. Each report (national, or a filière's) keeps its own history:
    /// a filière that gets its first cohort is reported from the last closed period on.
    pub async fn catch_up(&self, config: &ScheduleConfig, now: DateTime<Utc>) -> Result<Vec<RunView>, RunError> {
        let history = self.inner.store.scheduled_report_runs(config.schedule.code()).await?;
        let mut targets: Vec<Option<String>> = vec![None];
        if config.per_filiere {
            targets.extend(self.inner.store.cohort_filieres().await?.into_iter().map(Some));
        }
        let mut due = Vec::new();
        for target in targets {
            let mut attempts = Vec::new();
            for r in history.iter().filter(|r| r.run.filiere == target) {
                let parameters: RunParameters =
                    serde_json::from_value(r.run.parameters.clone()).map_err(|e| RunError::Corrupt(e.to_string()))?;
                attempts.push(Attempt {
                    period: parameters.period(),
                    attempt: r.run.attempt,
                    status: r.outcome.as_ref().map(|o| o.status),
                });
            }
            for (period, attempt) in due_periods(config.schedule, &attempts, now) {
                due.push((target.clone(), period, attempt));
            }
        }
        let mut started = Vec::new();
        for (filiere, period, attempt) in due {
            let request = RunRequest {
                parameters: RunParameters {
                    period_from: period.from,
                    period_to: period.to,
                    as_of: None,
                    threshold: config.threshold,
                    csv: config.csv,
                    scope: Scope { filiere, cohort: None },
                    synthesis: None,
                    language: config.language,
                },
                trigger: RunTrigger::Schedule,
                schedule: Some(config.schedule),
                attempt,
                requested_by: SCHEDULE_PRINCIPAL.to_owned(),
                request_id: uuid::Uuid::now_v7().to_string(),
                idempotency_key: None,
            };
            match self.submit(request).await {
                Ok((view, _)) => {
                    tracing::info!(run_id = %view.record.run.id, period = %period.label(), attempt, "scheduled report run started");
                    started.push(view);
                }
                // Another instance recorded the same attempt first.
                Err(RunError::Store(StoreError::AlreadyExists(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }

    /// Deletes the files of the runs that ended more than `retention_days` days before `now`:
    /// everything in their output directory (snapshot of pseudonymised records, tables,
    /// documents) but the manifest, when this runner wrote it in its reports directory. The run, its manifest and its audit events
    /// stay, with the purge recorded (and audited); a directory elsewhere (`--out` on the
    /// command line) is its operator's, and is left alone. Returns the runs purged.
    pub async fn purge_expired(&self, retention_days: u32, now: DateTime<Utc>) -> Result<usize, RunError> {
        let before = now - chrono::Duration::days(i64::from(retention_days));
        let expired = self.inner.store.expired_report_runs(before, 10_000).await?;
        let mut purged = 0;
        for record in expired {
            let dir = std::path::PathBuf::from(&record.run.out_dir);
            if dir.parent() != Some(self.inner.reports_dir.as_path()) {
                continue;
            }
            let (files, bytes) = match tokio::fs::metadata(&dir).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
                Err(e) => {
                    tracing::error!(run_id = %record.run.id, error = %e, "cannot read a report run's files to delete them");
                    continue;
                }
                Ok(_) => {
                    let counted = tokio::task::spawn_blocking({
                        let dir = dir.clone();
                        move || delete_but_manifest(&dir)
                    })
                    .await
                    .map_err(|e| RunError::Io("report retention".into(), std::io::Error::other(e)))?;
                    match counted {
                        Ok(counted) => counted,
                        Err(e) => {
                            tracing::error!(run_id = %record.run.id, error = %e, "cannot delete a report run's files");
                            continue;
                        }
                    }
                }
            };
            self.inner
                .store
                .record_report_run_purge(&record.run.id, now, files, bytes)
                .await?;
            tracing::info!(run_id = %record.run.id, files, bytes, retention_days, "report run files deleted under the retention setting");
            purged += 1;
        }
        Ok(purged)
    }

    /// Applies the retention of report files at once, then every [`SCHEDULE_CHECK_INTERVAL`],
    /// until `shutdown`.
    pub async fn run_retention(self, retention_days: u32, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.purge_expired(retention_days, Utc::now()).await {
                tracing::error!(error = %e, "cannot apply the retention of report files");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(SCHEDULE_CHECK_INTERVAL) => {}
            }
        }
    }

    /// Checks the schedule at once, then every [`SCHEDULE_CHECK_INTERVAL`], until `shutdown`.
    pub async fn run_schedule(self, config: ScheduleConfig, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.catch_up(&config, Utc::now()).await {
                tracing::error!(error = %e, "cannot check the report schedule");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(SCHEDULE_CHECK_INTERVAL) => {}
            }
        }
    }
}

/// The span of a run: a trace of its own (a run outlives the call that asked for it), linked to
/// the span that started it (a `RunReport` call, the schedule, the command line).
fn run_span(run: &NewReportRun) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "report.run",
        run_id = %run.id,
        period = %run.period_label,
        trigger = run.trigger.code()
    );
    span.follows_from(tracing::Span::current());
    span
}

/// Records a run's duration by outcome and trigger, and the rows of each published table.
/// Instruments come from the global meter provider at each run: runs are rare.
fn record_run(trigger: RunTrigger, status: RunStatus, took: Duration, manifest: Option<&RunManifest>) {
    use opentelemetry::KeyValue;
    let meter = opentelemetry::global::meter("observatory");
    meter
        .f64_histogram("observatory.report.duration")
        .with_unit("s")
        .with_description("time a report run took, from its start (once the runs before it ended) to its outcome, by trigger and status")
        .build()
        .record(
            took.as_secs_f64(),
            &[
                KeyValue::new("trigger", trigger.code()),
                KeyValue::new("status", status.code()),
            ],
        );
    let rows = meter
        .u64_histogram("observatory.report.rows")
        .with_unit("{row}")
        .with_description("rows of each table a report run published")
        .build();
    for output in manifest.map(RunManifest::outputs).unwrap_or_default() {
        if let Some(table) = output.file.strip_prefix("tables/").and_then(|f| f.strip_suffix(".csv")) {
            rows.record(output.rows, &[KeyValue::new("table", table.to_owned())]);
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Deletes everything in a run's directory but its `manifest.json` (kept with the run, and still
/// served); returns the files and bytes deleted.
fn delete_but_manifest(dir: &std::path::Path) -> std::io::Result<(i64, i64)> {
    let (mut files, mut bytes) = (0i64, 0i64);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == "manifest.json" {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let (f, b) = count_files(&path);
            std::fs::remove_dir_all(&path)?;
            files += f;
            bytes += b;
        } else {
            bytes += entry
                .metadata()
                .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX));
            std::fs::remove_file(&path)?;
            files += 1;
        }
    }
    Ok((files, bytes))
}

/// Files and bytes under `dir` (what a purge deletes); unreadable entries count as nothing.
fn count_files(dir: &std::path::Path) -> (i64, i64) {
    let (mut files, mut bytes) = (0i64, 0i64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => {
                    files += 1;
                    bytes += entry
                        .metadata()
                        .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX));
                }
                Err(_) => {}
            }
        }
    }
    (files, bytes)
}

/// Principal recorded as the requester of scheduled runs.
pub const SCHEDULE_PRINCIPAL: &str = "schedule";

/// How often `serve` looks for a closed period to report.
pub const SCHEDULE_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Failed attempts after which a scheduled period is no longer retried by itself.
pub const MAX_SCHEDULED_ATTEMPTS: i64 = 3;

/// The periodic reports of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Monthly,
    Quarterly,
}

impl Schedule {
    pub fn code(self) -> &'static str {
        match self {
            Schedule::Monthly => "monthly",
            Schedule::Quarterly => "quarterly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "monthly" => Some(Schedule::Monthly),
            "quarterly" => Some(Schedule::Quarterly),
            _ => None,
        }
    }

    /// The month or quarter holding `date`.
    pub fn period_of(self, date: NaiveDate) -> Period {
        let label = match self {
            Schedule::Monthly => format!("{}-{:02}", date.year(), date.month()),
            Schedule::Quarterly => format!("{}-Q{}", date.year(), (date.month() - 1) / 3 + 1),
        };
        // Built from a valid date: always parses.
        Period::parse(&label).unwrap_or(Period { from: date, to: date })
    }

    /// The period after `period`.
    pub fn next(self, period: Period) -> Period {
        self.period_of(period.to.succ_opt().unwrap_or(period.to))
    }
}

/// Settings of the periodic reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    pub schedule: Schedule,
    pub threshold: u32,
    pub csv: CsvStyle,
    /// Besides the national report, one report per filière that has a cohort, limited to it:
    /// what that filière's analysts and data managers read.
    pub per_filiere: bool,
    /// The language of the scheduled reports' HTML pages.
    pub language: Language,
}

/// One recorded attempt of a scheduled period; `status` is `None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub period: Period,
    pub attempt: i64,
    pub status: Option<RunStatus>,
}

/// The date that has begun everywhere in France, overseas included: the calendar date at
/// UTC-10 (French Polynesia, the westernmost offset). A period is closed once this date is
/// after its last day.
pub fn date_everywhere(now: DateTime<Utc>) -> NaiveDate {
    (now - chrono::Duration::hours(10)).date_naive()
}

/// The last period of `schedule` that is closed at `now`.
pub fn last_closed(schedule: Schedule, now: DateTime<Utc>) -> Period {
    let current = schedule.period_of(date_everywhere(now));
    schedule.period_of(current.from.pred_opt().unwrap_or(current.from))
}

/// The (period, attempt number) to run at `now`: every closed period from the first one the
/// schedule ever attempted (the last closed period, for a new schedule) that has no succeeded
/// run, no run going on and fewer than [`MAX_SCHEDULED_ATTEMPTS`] failed attempts. So each
/// closed period is reported once, and periods missed while the server was down are caught up.
pub fn due_periods(schedule: Schedule, attempts: &[Attempt], now: DateTime<Utc>) -> Vec<(Period, i64)> {
    let last = last_closed(schedule, now);
    let mut by_period: BTreeMap<NaiveDate, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        by_period.entry(a.period.from).or_default().push(a);
    }
    let mut period = match by_period.keys().next() {
        Some(first) => {
            let first = schedule.period_of(*first);
            if first.from <= last.from { first } else { last }
        }
        None => last,
    };
    let mut due = Vec::new();
    while period.from <= last.from {
        let tried = by_period.get(&period.from).map(Vec::as_slice).unwrap_or(&[]);
        let done_or_going = tried
            .iter()
            .any(|a| matches!(a.status, None | Some(RunStatus::Succeeded)));
        let attempts = tried.iter().map(|a| a.attempt).max().unwrap_or(0);
        if !done_or_going {
            if attempts < MAX_SCHEDULED_ATTEMPTS {
                due.push((period, attempts + 1));
            } else {
                tracing::warn!(period = %period.label(), attempts, "scheduled report failed too often: run it by hand");
            }
        }
        period = schedule.next(period);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn p(label: &str) -> Period {
        Period::parse(label).unwrap()
    }

    #[test]
    fn a_period_closes_once_its_last_day_is_over_everywhere_in_france() {
        // 1 October 05:00 UTC is still 30 September in French Polynesia.
        assert_eq!(last_closed(Schedule::Monthly, at("2026-10-01T05:00:00Z")), p("2026-08"));
        assert_eq!(last_closed(Schedule::Monthly, at("2026-10-01T10:00:00Z")), p("2026-09"));
        assert_eq!(
            last_closed(Schedule::Quarterly, at("2026-10-01T10:00:00Z")),
            p("2026-Q3")
        );
        assert_eq!(
            last_closed(Schedule::Quarterly, at("2027-01-02T00:00:00Z")),
            p("2026-Q4")
        );
        assert_eq!(Schedule::Quarterly.next(p("2026-Q4")), p("2027-Q1"));
    }

    #[test]
    fn a_new_schedule_reports_the_last_closed_period_only() {
        let due = due_periods(Schedule::Monthly, &[], at("2026-11-23T12:00:00Z"));
        assert_eq!(due, vec![(p("2026-10"), 1)]);
    }

    #[test]
    fn each_closed_period_is_reported_once_and_missed_ones_are_caught_up() {
        let done = |label: &str| Attempt {
            period: p(label),
            attempt: 1,
            status: Some(RunStatus::Succeeded),
        };
        // Reported up to July, then the server was down until late November.
        let attempts = vec![done("2026-06"), done("2026-07")];
        let due = due_periods(Schedule::Monthly, &attempts, at("2026-11-23T12:00:00Z"));
        assert_eq!(due, vec![(p("2026-08"), 1), (p("2026-09"), 1), (p("2026-10"), 1)]);
        // Once they succeeded, nothing is due until December closes.
        let mut all = attempts;
        all.extend(["2026-08", "2026-09", "2026-10"].map(done));
        assert!(due_periods(Schedule::Monthly, &all, at("2026-11-30T12:00:00Z")).is_empty());
        assert_eq!(
            due_periods(Schedule::Monthly, &all, at("2026-12-01T12:00:00Z")),
            vec![(p("2026-11"), 1)]
        );
    }

    #[test]
    fn failed_periods_are_retried_a_bounded_number_of_times_and_running_ones_are_left_alone() {
        let now = at("2026-11-23T12:00:00Z");
        let attempt = |label: &str, attempt, status| Attempt {
            period: p(label),
            attempt,
            status,
        };
        let attempts = vec![
            attempt("2026-08", 1, Some(RunStatus::Failed)),
            attempt("2026-08", 2, Some(RunStatus::Interrupted)),
            attempt("2026-09", 1, None),
            attempt("2026-10", 1, Some(RunStatus::Failed)),
            attempt("2026-10", 2, Some(RunStatus::Failed)),
            attempt("2026-10", 3, Some(RunStatus::Failed)),
        ];
        assert_eq!(due_periods(Schedule::Monthly, &attempts, now), vec![(p("2026-08"), 3)]);
    }
}
