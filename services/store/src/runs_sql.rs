//! SQL of the report runs, compiled once per backend like `shared.rs`. Writes go to `write`
//! (SQLite's single writer connection), reads to `read`.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, types::Json};

use super::{Db, audit_sql, shared::push_in};
use crate::audit::{AuditEntry, AuditKey, AuditTarget};
use crate::report_runs::{NewReportRun, Recorded, ReportRunRecord, RunOutcome, RunStatus, RunTrigger};
use crate::{Page, Result, StoreError};

type Pool = sqlx::Pool<Db>;

const SELECT: &str = "SELECT r.id, r.requested_at, r.requested_by, r.request_id, r.trigger, r.schedule, r.attempt, \
     k.key AS idempotency_key, r.fingerprint, r.period_label, r.as_of, r.filiere, r.parameters, r.out_dir, \
     o.finished_at, o.status, o.manifest, o.error, p.purged_at \
     FROM report_runs r LEFT JOIN report_run_outcomes o ON o.run_id = r.id \
     LEFT JOIN report_run_keys k ON k.run_id = r.id \
     LEFT JOIN report_run_purges p ON p.run_id = r.id";

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    requested_at: DateTime<Utc>,
    requested_by: String,
    request_id: String,
    trigger: String,
    schedule: Option<String>,
    attempt: i64,
    idempotency_key: Option<String>,
    fingerprint: String,
    period_label: String,
    as_of: DateTime<Utc>,
    filiere: Option<String>,
    parameters: Json<serde_json::Value>,
    out_dir: String,
    finished_at: Option<DateTime<Utc>>,
    status: Option<String>,
    manifest: Option<Json<serde_json::Value>>,
    error: Option<String>,
    purged_at: Option<DateTime<Utc>>,
}

impl RunRow {
    fn into_record(self) -> Result<ReportRunRecord> {
        let corrupt = |what: &str| StoreError::Corrupt {
            kind: "REPORT_RUN",
            id: self.id.clone(),
            source: std::sync::Arc::new(<serde_json::Error as serde::de::Error>::custom(what)),
        };
        let trigger = RunTrigger::from_code(&self.trigger).ok_or_else(|| corrupt("unknown trigger"))?;
        let outcome = match (self.finished_at, &self.status) {
            (Some(finished_at), Some(status)) => Some(RunOutcome {
                finished_at,
                status: RunStatus::from_code(status).ok_or_else(|| corrupt("unknown status"))?,
                manifest: self.manifest.map(|m| m.0),
                error: self.error,
            }),
            _ => None,
        };
        Ok(ReportRunRecord {
            run: NewReportRun {
                id: self.id,
                requested_at: self.requested_at,
                requested_by: self.requested_by,
                request_id: self.request_id,
                trigger,
                schedule: self.schedule,
                attempt: self.attempt,
                idempotency_key: self.idempotency_key,
                fingerprint: self.fingerprint,
                period_label: self.period_label,
                as_of: self.as_of,
                filiere: self.filiere,
                parameters: self.parameters.0,
                out_dir: self.out_dir,
            },
            outcome,
            purged_at: self.purged_at,
        })
    }
}

fn records(rows: Vec<RunRow>) -> Result<Vec<ReportRunRecord>> {
    rows.into_iter().map(RunRow::into_record).collect()
}

pub async fn record(write: &Pool, _read: &Pool, run: &NewReportRun, key: Option<&AuditKey>) -> Result<Recorded> {
    // A synthesis (its parameters name one) is recorded as such.
    let operation = if run.parameters.get("synthesis").is_some() {
        "RunSynthesis"
    } else {
        "RunReport"
    };
    let entry = AuditEntry {
        request_id: run.request_id.clone(),
        ..AuditEntry::local(&run.requested_by, operation, AuditTarget::object("REPORT_RUN", &run.id))
    };
    let inserted = audit_sql::in_transaction(write, entry, key, async |conn| {
        sqlx::query(
            "INSERT INTO report_runs (id, requested_at, requested_by, request_id, trigger, schedule, attempt, \
             idempotency_key, fingerprint, period_label, as_of, filiere, parameters, out_dir) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&run.id)
        .bind(run.requested_at)
        .bind(&run.requested_by)
        .bind(&run.request_id)
        .bind(run.trigger.code())
        .bind(&run.schedule)
        .bind(run.attempt)
        // The key is kept per principal in report_run_keys, not in this legacy column.
        .bind(None::<String>)
        .bind(&run.fingerprint)
        .bind(&run.period_label)
        .bind(run.as_of)
        .bind(&run.filiere)
        .bind(Json(&run.parameters))
        .bind(&run.out_dir)
        .execute(&mut *conn)
        .await?;
        if let Some(key) = &run.idempotency_key {
            sqlx::query("INSERT INTO report_run_keys (principal, key, run_id) VALUES ($1, $2, $3)")
                .bind(&run.requested_by)
                .bind(key)
                .bind(&run.id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    })
    .await;
    match inserted {
        Ok(()) => Ok(Recorded::New(ReportRunRecord {
            run: run.clone(),
            outcome: None,
            purged_at: None,
        })),
        Err(StoreError::Database(e)) if matches!(&*e, sqlx::Error::Database(d) if d.is_unique_violation()) => {
            if let Some(key) = &run.idempotency_key {
                let mut q = QueryBuilder::<Db>::new(SELECT);
                q.push(" WHERE k.principal = ")
                    .push_bind(run.requested_by.clone())
                    .push(" AND k.key = ")
                    .push_bind(key.clone());
                // Read from the writer: the run it collided with may have just been committed.
                if let Some(row) = q.build_query_as::<RunRow>().fetch_optional(write).await? {
                    let earlier = row.into_record()?;
                    return if earlier.run.fingerprint == run.fingerprint {
                        Ok(Recorded::Replayed(earlier))
                    } else {
                        Err(StoreError::IdempotencyMismatch {
                            scope: "RunReport".to_owned(),
                        })
                    };
                }
            }
            Err(StoreError::AlreadyExists(format!(
                "report run of {} ({} attempt {}) is already recorded",
                run.period_label,
                run.schedule.as_deref().unwrap_or("on demand"),
                run.attempt
            )))
        }
        Err(e) => Err(e),
    }
}

/// Actor of the outcomes of report runs: the runner of the observatory.
const RUNNER: &str = "report-runner";

pub async fn finish(write: &Pool, _read: &Pool, id: &str, outcome: &RunOutcome, key: Option<&AuditKey>) -> Result<()> {
    let entry = AuditEntry {
        reason: outcome.status.code().to_owned(),
        ..AuditEntry::local(RUNNER, "FinishReportRun", AuditTarget::object("REPORT_RUN", id))
    };
    audit_sql::in_transaction(write, entry, key, async |conn| {
        sqlx::query(
            "INSERT INTO report_run_outcomes (run_id, finished_at, status, manifest, error) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(outcome.finished_at)
        .bind(outcome.status.code())
        .bind(outcome.manifest.as_ref().map(Json))
        .bind(&outcome.error)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

pub async fn get(_write: &Pool, read: &Pool, id: &str) -> Result<Option<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE r.id = ").push_bind(id.to_owned());
    q.build_query_as::<RunRow>()
        .fetch_optional(read)
        .await?
        .map(RunRow::into_record)
        .transpose()
}

/// The run `principal` asked for with idempotency key `key`, read from the writer (it may have
/// just been committed).
pub async fn by_key(write: &Pool, _read: &Pool, principal: &str, key: &str) -> Result<Option<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE k.principal = ")
        .push_bind(principal.to_owned())
        .push(" AND k.key = ")
        .push_bind(key.to_owned());
    q.build_query_as::<RunRow>()
        .fetch_optional(write)
        .await?
        .map(RunRow::into_record)
        .transpose()
}

pub async fn list(
    _write: &Pool,
    read: &Pool,
    within: Option<Vec<String>>,
    after: Option<String>,
    size: u32,
) -> Result<Page<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE 1 = 1");
    if let Some(filieres) = within {
        push_in(q.push(" AND "), "r.filiere", filieres);
    }
    if let Some(after) = after {
        q.push(" AND r.id < ").push_bind(after);
    }
    // One more than asked tells whether another page follows.
    q.push(" ORDER BY r.id DESC LIMIT ").push_bind(i64::from(size) + 1);
    let mut items = records(q.build_query_as::<RunRow>().fetch_all(read).await?)?;
    let next_page_token = if items.len() > size as usize {
        items.truncate(size as usize);
        items.last().map(|r| crate::kinds::encode_token(&r.run.id))
    } else {
        None
    };
    Ok(Page { items, next_page_token })
}

pub async fn scheduled(_write: &Pool, read: &Pool, schedule: &str) -> Result<Vec<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE r.schedule = ").push_bind(schedule.to_owned());
    q.push(" ORDER BY r.id");
    records(q.build_query_as::<RunRow>().fetch_all(read).await?)
}

/// The newest `limit` runs of the synthesis of `subject` (`framework:<id>` or `cohort:<id>`),
/// newest first.
pub async fn of_synthesis(_write: &Pool, read: &Pool, subject: String, limit: i64) -> Result<Vec<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE r.synthesis_subject = ").push_bind(subject);
    q.push(" ORDER BY r.id DESC LIMIT ").push_bind(limit);
    records(q.build_query_as::<RunRow>().fetch_all(read).await?)
}

/// Runs that ended before `before` and whose files are not deleted yet, oldest first.
pub async fn expired(_write: &Pool, read: &Pool, before: DateTime<Utc>, limit: i64) -> Result<Vec<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE o.finished_at < ")
        .push_bind(before)
        .push(" AND p.run_id IS NULL ORDER BY r.id LIMIT ")
        .push_bind(limit);
    records(q.build_query_as::<RunRow>().fetch_all(read).await?)
}

/// Records that a run's files were deleted (once: a second purge is refused by the database).
pub async fn purged(
    write: &Pool,
    _read: &Pool,
    id: &str,
    at: DateTime<Utc>,
    files: i64,
    bytes: i64,
    key: Option<&AuditKey>,
) -> Result<()> {
    let entry = AuditEntry {
        reason: format!("retention: {files} files, {bytes} bytes deleted"),
        ..AuditEntry::local(RUNNER, "PurgeReportRun", AuditTarget::object("REPORT_RUN", id))
    };
    audit_sql::in_transaction(write, entry, key, async |conn| {
        sqlx::query("INSERT INTO report_run_purges (run_id, purged_at, files, bytes) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(at)
            .bind(files)
            .bind(bytes)
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

pub async fn unfinished(_write: &Pool, read: &Pool) -> Result<Vec<ReportRunRecord>> {
    let mut q = QueryBuilder::<Db>::new(SELECT);
    q.push(" WHERE o.run_id IS NULL ORDER BY r.id");
    records(q.build_query_as::<RunRow>().fetch_all(read).await?)
}
