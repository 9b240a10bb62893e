//! Report runs: the record of every run of the analytics job and of its outcome. Both are
//! written once (append-only tables); the store knows nothing of what a report contains, the
//! parameters and manifest are JSON the analytics crate defines.

use chrono::{DateTime, Utc};
use observatory_domain::codes::Filiere;
use serde::{Deserialize, Serialize};

use crate::{Page, PageRequest, Result, Store};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// Asked over gRPC.
    Request,
    /// The periodic schedule of `serve`.
    Schedule,
    /// `observatory report` on the command line.
    CommandLine,
}

impl RunTrigger {
    pub fn code(self) -> &'static str {
        match self {
            RunTrigger::Request => "request",
            RunTrigger::Schedule => "schedule",
            RunTrigger::CommandLine => "command_line",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [RunTrigger::Request, RunTrigger::Schedule, RunTrigger::CommandLine]
            .into_iter()
            .find(|t| t.code() == code)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// The process stopped while the run was going on.
    Interrupted,
}

impl RunStatus {
    pub fn code(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Interrupted]
            .into_iter()
            .find(|t| t.code() == code)
    }
}

/// A run as accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReportRun {
    /// UUIDv7, also the name of the run's output directory.
    pub id: String,
    pub requested_at: DateTime<Utc>,
    pub requested_by: String,
    pub request_id: String,
    pub trigger: RunTrigger,
    /// `monthly` or `quarterly` for scheduled runs.
    pub schedule: Option<String>,
    /// 1, then one more for each retry of a scheduled period.
    pub attempt: i64,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the parameters: what an idempotency key is bound to.
    pub fingerprint: String,
    pub period_label: String,
    pub as_of: DateTime<Utc>,
    /// The filière the run is limited to (`None`: every filière): to whom it may be shown.
    pub filiere: Option<String>,
    pub parameters: serde_json::Value,
    pub out_dir: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    /// The report's manifest, when it succeeded.
    pub manifest: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// A run and, once it has ended, its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRunRecord {
    pub run: NewReportRun,
    pub outcome: Option<RunOutcome>,
    /// When its files were deleted under the retention setting (the record and its manifest
    /// stay).
    pub purged_at: Option<DateTime<Utc>>,
}

/// What recording a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The run is new.
    New(ReportRunRecord),
    /// The idempotency key was used before with the same parameters: the earlier run.
    Replayed(ReportRunRecord),
}

impl Store {
    /// Records an accepted run. With an idempotency key used before: the earlier run when the
    /// parameters are the same, [`crate::StoreError::IdempotencyMismatch`] otherwise. A
    /// scheduled (schedule, period, attempt) recorded twice is
    /// [`crate::StoreError::AlreadyExists`].
    pub async fn record_report_run(&self, run: &NewReportRun) -> Result<Recorded> {
        dispatch!(self, runs_sql::record(run, self.audit_key.as_ref()))
    }

    /// Records how a run ended (once: a second outcome is refused by the database).
    pub async fn finish_report_run(&self, id: &str, outcome: &RunOutcome) -> Result<()> {
        dispatch!(self, runs_sql::finish(id, outcome, self.audit_key.as_ref()))
    }

    /// The run `requested_by` asked for with idempotency key `key`, if any.
    pub async fn report_run_by_key(&self, requested_by: &str, key: &str) -> Result<Option<ReportRunRecord>> {
        dispatch!(self, runs_sql::by_key(requested_by, key))
    }

    pub async fn get_report_run(&self, id: &str) -> Result<Option<ReportRunRecord>> {
        dispatch!(self, runs_sql::get(id))
    }

    /// Runs, newest first: every run, or (`within` some filières) only the runs limited to
    /// one of them.
    pub async fn list_report_runs(
        &self,
        within: Option<&[Filiere]>,
        page: &PageRequest,
    ) -> Result<Page<ReportRunRecord>> {
        let after = match page.token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(crate::kinds::decode_token(t)?),
        };
        let size = page.size.clamp(1, 500);
        let within: Option<Vec<String>> = within.map(|fs| fs.iter().map(|f| f.as_str().to_owned()).collect());
        dispatch!(self, runs_sql::list(within, after, size))
    }

    /// Every run of a schedule (`monthly` or `quarterly`), oldest first.
    pub async fn scheduled_report_runs(&self, schedule: &str) -> Result<Vec<ReportRunRecord>> {
        dispatch!(self, runs_sql::scheduled(schedule))
    }

    /// The newest runs (at most 1,000) of the synthesis of a framework (`kind` "framework") or a
    /// cohort ("cohort"), newest first, whatever their outcome.
    pub async fn synthesis_runs(&self, kind: &str, id: &str) -> Result<Vec<ReportRunRecord>> {
        dispatch!(self, runs_sql::of_synthesis(format!("{kind}:{id}"), 1000))
    }

    /// Runs that ended before `before` with their files not deleted yet, oldest first, at most
    /// `limit`.
    pub async fn expired_report_runs(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<ReportRunRecord>> {
        dispatch!(self, runs_sql::expired(before, limit))
    }

    /// Records that the files of run `id` were deleted at `at` (`files` files, `bytes` bytes),
    /// with its audit event.
    pub async fn record_report_run_purge(&self, id: &str, at: DateTime<Utc>, files: i64, bytes: i64) -> Result<()> {
        dispatch!(self, runs_sql::purged(id, at, files, bytes, self.audit_key.as_ref()))
    }

    /// Runs that have no outcome yet.
    pub async fn unfinished_report_runs(&self) -> Result<Vec<ReportRunRecord>> {
        dispatch!(self, runs_sql::unfinished())
    }
}
