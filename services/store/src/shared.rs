//! Queries and the group-commit writer, written once and compiled for each backend: the
//! including module (`backend_sqlite` or `backend_pg`) defines `Db` and `BEGIN`.
//!
//! The SQL here is portable between SQLite and PostgreSQL (`$n` placeholders, partial indexes,
//! `ON CONFLICT DO NOTHING`); the few differences live in the including modules.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use observatory_domain::{
    DomainError, Violations,
    access::Reach,
    codes::{Atc, Filiere, Finess, OrphaCode},
    corrections,
    lifecycle::{self, EpisodeTransition},
    model::{
        AdverseEvent, Authorisation, Centre, Cohort, CohortStatus, Episode, FollowUp, Framework, FrameworkStatus,
        Pathway, Patient, Prescriber, ProtocolType, RecordId, RecordKind, VitalStatus, parse_date,
    },
    reference, treatment_corrections,
};
use sqlx::{QueryBuilder, types::Json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{BEGIN, Db, LOCK_AUDIT_CHAIN, audit_sql};
use crate::audit::{self, AuditEntry, AuditKey, AuditTarget};
use crate::kinds::{self, Filter, ListQuery, Stored, Val};
use crate::metrics::StoreMetrics;
use crate::{Command, Job, Meta, Page, Record, Result, StoreError, Versioned, Work, WriteContext, Written, today};

type Pool = sqlx::Pool<Db>;
type Tx<'c> = sqlx::Transaction<'c, Db>;
type Conn = <Db as sqlx::Database>::Connection;

const META_COLUMNS: &str = "id, version, recorded_at, recorded_by, reason, request_id, body";

/// (kind, id, version) of a version an idempotent call produced.
type VersionRef = (RecordKind, String, i64);

type MetaRow<T> = (String, i64, DateTime<Utc>, String, String, String, Json<T>);

fn from_row<T>(row: MetaRow<T>) -> Versioned<T> {
    let (id, version, recorded_at, recorded_by, reason, request_id, Json(record)) = row;
    Versioned {
        meta: Meta {
            id,
            version,
            recorded_at,
            recorded_by,
            reason,
            request_id,
        },
        record,
    }
}

// ---------------------------------------------------------------------------------------------
// Group commit

/// The group-commit writer of one database: receives commands and commits them in groups.
pub(crate) struct GroupWriter {
    pool: Pool,
    /// The pool's name, for the metrics.
    pool_name: &'static str,
    metrics: StoreMetrics,
    /// Bumped after each commit that added to the change feed.
    changed: tokio::sync::watch::Sender<u64>,
    /// The key of the audit events' MACs.
    audit_key: Option<AuditKey>,
}

impl GroupWriter {
    pub(crate) fn new(
        pool: Pool,
        pool_name: &'static str,
        metrics: StoreMetrics,
        changed: tokio::sync::watch::Sender<u64>,
        audit_key: Option<AuditKey>,
    ) -> Self {
        Self {
            pool,
            pool_name,
            metrics,
            changed,
            audit_key,
        }
    }

    /// Commits everything waiting when a transaction starts (at most `max_batch`) in that
    /// transaction, until every sender is gone.
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch).await;
        }
    }

    /// Commits a group. Commands check everything they can before their first write, so a
    /// command refused by a rule leaves the transaction clean and the group goes on without it.
    /// A command that fails after writing, or on a database error, poisons the transaction: it
    /// is rolled back, that command answered with its error, and the rest of the group tried
    /// again. No savepoint is needed on the common path, which saves two round trips per command
    /// on PostgreSQL.
    async fn commit_batch(&self, batch: &mut Vec<Job>) {
        let size = batch.len();
        let mut results: Vec<Option<Result<Written>>> = std::iter::repeat_with(|| None).take(size).collect();
        let mut pending: Vec<usize> = (0..size).collect();
        while !pending.is_empty() {
            // A trace of its own, linked to the span of every caller it serves.
            let span = tracing::info_span!(parent: None, "store.commit_group", size = pending.len());
            for &i in &pending {
                span.follows_from(&batch[i].span);
            }
            match self.attempt(batch, &pending).instrument(span).await {
                Attempt::Committed(outcomes) => {
                    self.metrics.committed(pending.len(), &outcomes);
                    for (&i, outcome) in pending.iter().zip(outcomes) {
                        results[i] = Some(outcome);
                    }
                    pending.clear();
                }
                Attempt::Poisoned {
                    error: StoreError::Unavailable(error),
                    ..
                } => {
                    // The database, not the command, failed: the whole group is refused at once,
                    // fast, rather than retried command by command against it.
                    tracing::warn!(error = %error, source = ?std::error::Error::source(&error), size, "the database is unavailable; the commands of the group are refused");
                    for &i in &pending {
                        results[i] = Some(Err(StoreError::Unavailable(error.clone())));
                    }
                    pending.clear();
                }
                Attempt::Poisoned { index, error } => {
                    tracing::debug!(error = %error, "a command poisoned its group; retrying the others");
                    results[index] = Some(Err(error));
                    pending.retain(|&i| i != index);
                }
                Attempt::Failed(error) => {
                    tracing::error!(error = %error, source = ?std::error::Error::source(&error), size, "group commit failed; the commands of the group are refused");
                    for &i in &pending {
                        results[i] = Some(Err(crate::StoreError::of_shared(error.clone())));
                    }
                    pending.clear();
                }
            }
        }
        for (job, result) in batch.drain(..).zip(results) {
            let result = result.unwrap_or(Err(StoreError::ShuttingDown));
            let _ = job.reply.send(result);
        }
    }

    async fn attempt(&self, batch: &[Job], pending: &[usize]) -> Attempt {
        let mut conn = match self.metrics.acquire(&self.pool, self.pool_name).await {
            Ok(conn) => conn,
            Err(e) => return Attempt::Failed(std::sync::Arc::new(e)),
        };
        let mut discard = false;
        let attempt = self.attempt_on(&mut conn, batch, pending, &mut discard).await;
        if discard {
            conn.close_on_drop();
        }
        attempt
    }

    /// One attempt at the group on `conn`; sets `discard` when the connection must not be used
    /// again.
    async fn attempt_on(&self, conn: &mut Conn, batch: &[Job], pending: &[usize], discard: &mut bool) -> Attempt {
        // A connection whose BEGIN, audit append, feed append or COMMIT failed is closed, not
        // given back: SQLite may have rolled back on its own (disk full, I/O error), leaving the
        // driver believing a transaction is open, and every later BEGIN would be refused.
        let mut tx = match sqlx::Connection::begin_with(conn, BEGIN).await {
            Ok(tx) => tx,
            Err(e) => {
                *discard = true;
                return Attempt::Failed(std::sync::Arc::new(e));
            }
        };
        let mut outcomes = Vec::with_capacity(pending.len());
        let mut events = Vec::with_capacity(pending.len());
        for &index in pending {
            let now = Utc::now().trunc_subsecs(6);
            let (command, ctx) = match &batch[index].work {
                Work::Command { command, ctx } => (command, ctx),
                Work::Access(entry) => {
                    events.push((entry.clone(), now));
                    outcomes.push(Ok(Written {
                        records: Vec::new(),
                        replayed: false,
                    }));
                    continue;
                }
            };
            let mut wrote = false;
            match apply(&mut tx, command, ctx, now, &mut wrote).await {
                Ok((written, event)) => {
                    events.push((event, now));
                    outcomes.push(Ok(written));
                }
                Err(e) if !wrote && !matches!(e, StoreError::Database(_) | StoreError::Unavailable(_)) => {
                    // A refused write is recorded too: who tried what, and why it was refused.
                    let mut entry = AuditEntry::new(ctx, command.name(), Vec::new());
                    entry.reason = format!("refused: {}", e.code());
                    events.push((entry, now));
                    outcomes.push(Err(e))
                }
                Err(error) => {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rollback failed; the connection is discarded");
                        *discard = true;
                    }
                    return Attempt::Poisoned { index, error };
                }
            }
        }
        // The group's audit events and changes go in with it: the writes, their trail and the
        // feed commit together.
        if let Err(e) = audit_sql::append(&mut tx, &events, self.audit_key.as_ref()).await {
            *discard = true;
            return Attempt::Failed(std::sync::Arc::new(e));
        }
        let changes: Vec<(RecordKind, &Meta)> = outcomes
            .iter()
            .flatten()
            .filter(|w| !w.replayed)
            .flat_map(|w| w.records.iter().map(|r| (r.kind(), r.meta())))
            .collect();
        let changed = !changes.is_empty();
        if let Err(e) = append_changes(&mut tx, changes.into_iter()).await {
            *discard = true;
            return Attempt::Failed(std::sync::Arc::new(e));
        }
        match tx.commit().await {
            Ok(()) => {
                if changed {
                    self.changed.send_modify(|n| *n += 1);
                }
                Attempt::Committed(outcomes)
            }
            Err(e) => {
                *discard = true;
                Attempt::Failed(std::sync::Arc::new(e))
            }
        }
    }
}

enum Attempt {
    /// Committed: one outcome per pending command, in order.
    Committed(Vec<Result<Written>>),
    /// Rolled back because of the command at `index`.
    Poisoned { index: usize, error: StoreError },
    /// BEGIN or COMMIT failed.
    Failed(std::sync::Arc<sqlx::Error>),
}

/// Applies one command, honouring its idempotency key, which belongs to the caller (`ctx.actor`):
/// another caller's key of the same value is another key. `wrote` tells whether it wrote
/// anything.
/// Returns what was written and the audit entry of the action.
async fn apply(
    tx: &mut Tx<'_>,
    command: &Command,
    ctx: &WriteContext,
    now: DateTime<Utc>,
    wrote: &mut bool,
) -> Result<(Written, AuditEntry)> {
    let scope = command.name();
    let fingerprint = command.fingerprint();
    if let Some(key) = &ctx.idempotency_key {
        let found: Option<(String, Json<Vec<VersionRef>>)> = sqlx::query_as(
            "SELECT request_hash, result FROM principal_idempotency_keys \
                 WHERE principal = $1 AND scope = $2 AND key = $3",
        )
        .bind(&ctx.actor)
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((hash, Json(refs))) = found {
            if hash != fingerprint {
                return Err(StoreError::IdempotencyMismatch {
                    scope: scope.to_owned(),
                });
            }
            let mut records = Vec::with_capacity(refs.len());
            for (kind, id, version) in refs {
                records.push(version_of(tx, kind, &id, version).await?);
            }
            // A replay discloses the versions again: recorded as a read of them.
            let mut entry = AuditEntry::new(ctx, scope, records.iter().map(Record::audit_target).collect());
            entry.reason = "replay of an earlier call with the same idempotency key".to_owned();
            return Ok((
                Written {
                    records,
                    replayed: true,
                },
                entry,
            ));
        }
    }
    let mut w = Writer {
        tx,
        ctx,
        now,
        today: today(now),
        wrote,
        targets: Vec::new(),
    };
    let records = w.dispatch(command).await?;
    let mut entry = AuditEntry::new(ctx, scope, std::mem::take(&mut w.targets));
    entry.reason = records.first().map(|r| r.meta().reason.clone()).unwrap_or_default();
    if let Some(key) = &ctx.idempotency_key {
        let refs: Vec<VersionRef> = records
            .iter()
            .map(|r| (r.kind(), r.meta().id.clone(), r.meta().version))
            .collect();
        // Another server on the same database may have committed the same key since the lookup
        // above: then this call's writes are rolled back and the caller told to retry, which
        // replays the other call's answer.
        let inserted = sqlx::query(
            "INSERT INTO principal_idempotency_keys (principal, scope, key, request_hash, result, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (principal, scope, key) DO NOTHING",
        )
        .bind(&ctx.actor)
        .bind(scope)
        .bind(key)
        .bind(&fingerprint)
        .bind(Json(refs))
        .bind(now)
        .execute(&mut **w.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::ConcurrentKey);
        }
    }
    Ok((
        Written {
            records,
            replayed: false,
        },
        entry,
    ))
}

struct Writer<'a, 'c> {
    tx: &'a mut Tx<'c>,
    ctx: &'a WriteContext,
    now: DateTime<Utc>,
    today: chrono::NaiveDate,
    /// Set by the first write: from then on a failure poisons the transaction.
    wrote: &'a mut bool,
    /// Every version written, with digests before and after, for the audit event.
    targets: Vec<AuditTarget>,
}

impl Writer<'_, '_> {
    async fn dispatch(&mut self, command: &Command) -> Result<Vec<Record>> {
        let reason = command.name();
        match command {
            Command::CreateCentre(c) => {
                if self.exists(c.finess.as_str()).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "centre {} is already declared",
                        c.finess
                    )));
                }
                let v = self.insert_new(c.finess.as_str().to_owned(), c, reason).await?;
                Ok(vec![Record::Centre(v)])
            }
            Command::CreatePrescriber(p) => {
                if self.exists(p.rpps.as_str()).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "prescriber {} is already declared",
                        p.rpps
                    )));
                }
                self.require::<Centre>(p.centre_finess.as_str()).await?;
                let v = self.insert_new(p.rpps.as_str().to_owned(), p, reason).await?;
                Ok(vec![Record::Prescriber(v)])
            }
            Command::CreateFramework(f) => {
                let v = self.insert_new(new_id(), f, reason).await?;
                Ok(vec![Record::Framework(v)])
            }
            Command::CreateCohort(n) => {
                let cohort = self.resolve_cohort(n).await?;
                let v = self.insert_new(new_id(), &cohort, reason).await?;
                Ok(vec![Record::Cohort(v)])
            }
            Command::RegisterPatient(p) => self.register_patient(p, reason).await,
            Command::DeclareEpisode(d) => self.declare_episode(d, reason).await,
            Command::TransitionEpisode {
                id,
                expected_version,
                transition,
            } => {
                let current = self.current_at::<Episode>(id.as_str(), *expected_version).await?;
                let authorisation = match &current.record.authorisation_id {
                    Some(a) => Some(self.require::<Authorisation>(a.as_str()).await?.record),
                    None => None,
                };
                let next =
                    lifecycle::transition_episode(&current.record, transition, authorisation.as_ref(), self.today)?;
                if let EpisodeTransition::Transfer { to, .. } = transition {
                    self.require::<Centre>(to.as_str()).await?;
                }
                let reason = format!("{reason}: {}", transition.action());
                let v = self.insert_version(&current, next, &reason).await?;
                let mut out = vec![Record::Episode(v)];
                // A death declared on a treatment is the patient's vital status, in the same
                // commit: reports and later declarations see it at once.
                if let EpisodeTransition::Deceased { .. } = transition {
                    let patient = self.require::<Patient>(current.record.patient_id.as_str()).await?;
                    if patient.record.vital_status != VitalStatus::Deceased {
                        let mut next = patient.record.clone();
                        next.vital_status = VitalStatus::Deceased;
                        let why = format!("{reason} (episode {id})");
                        out.push(Record::Patient(self.insert_version(&patient, next, &why).await?));
                    }
                }
                Ok(out)
            }
            Command::TransitionAuthorisation {
                id,
                expected_version,
                transition,
            } => {
                let current = self.current_at::<Authorisation>(id.as_str(), *expected_version).await?;
                let next = lifecycle::transition_authorisation(&current.record, transition, self.today)?;
                let reason = format!("{reason}: {}", transition.action());
                let v = self.insert_version(&current, next, &reason).await?;
                Ok(vec![Record::Authorisation(v)])
            }
            Command::RecordFollowUp(f) => {
                let episode = self.require::<Episode>(f.episode_id.as_str()).await?;
                let next = lifecycle::record_follow_up(&episode.record, f, self.today)?;
                let v = self.insert_new(new_id(), f, reason).await?;
                let mut out = vec![Record::FollowUp(v)];
                if next != episode.record {
                    let e = self
                        .insert_version(&episode, next, "RecordFollowUp: first follow-up")
                        .await?;
                    out.push(Record::Episode(e));
                }
                Ok(out)
            }
            Command::UpdatePatient {
                id,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<Patient>(id.as_str(), *expected_version).await?;
                observatory_domain::merge::check_not_merged(id, &current.record)?;
                let next = corrections::update_patient(&current.record, update)?;
                observatory_domain::registration::check_patient(&next, self.today)?;
                let v = self.insert_version(&current, next, &format!("{reason}: {why}")).await?;
                Ok(vec![Record::Patient(v)])
            }
            Command::RequestRcpReview {
                patient_id,
                expected_version,
                request,
            } => {
                let current = self
                    .current_at::<Patient>(patient_id.as_str(), *expected_version)
                    .await?;
                observatory_domain::merge::check_not_merged(patient_id, &current.record)?;
                self.require::<Centre>(request.centre_finess.as_str()).await?;
                let review = RecordId::from_minted(new_id());
                let next = observatory_domain::rcp::request_review(&current.record, request, review, self.today)?;
                let why = format!("{reason}: {} RCP review asked for", request.level.code().to_lowercase());
                let v = self.insert_version(&current, next, &why).await?;
                Ok(vec![Record::Patient(v)])
            }
            Command::MergePatients {
                kept,
                kept_version,
                merged,
                merged_version,
                reason: why,
            } => {
                self.merge_patients(
                    kept,
                    *kept_version,
                    merged,
                    *merged_version,
                    &format!("{reason}: {why}"),
                )
                .await
            }
            Command::RecordRcpOpinion {
                patient_id,
                expected_version,
                opinion,
            } => {
                let current = self
                    .current_at::<Patient>(patient_id.as_str(), *expected_version)
                    .await?;
                observatory_domain::merge::check_not_merged(patient_id, &current.record)?;
                let next = observatory_domain::rcp::record_opinion(&current.record, opinion, self.today)?;
                let why = format!(
                    "{reason}: RCP review {}: {}",
                    opinion.review_id,
                    opinion.opinion.code().to_lowercase().replace('_', " ")
                );
                let v = self.insert_version(&current, next, &why).await?;
                Ok(vec![Record::Patient(v)])
            }
            Command::UpdateAdverseEvent {
                id,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<AdverseEvent>(id.as_str(), *expected_version).await?;
                let episode = self.require::<Episode>(current.record.episode_id.as_str()).await?;
                let next = corrections::update_adverse_event(&current.record, &episode.record, update, self.today)?;
                let v = self.insert_version(&current, next, &format!("{reason}: {why}")).await?;
                Ok(vec![Record::AdverseEvent(v)])
            }
            Command::UpdateEpisode {
                id,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<Episode>(id.as_str(), *expected_version).await?;
                let e = &current.record;
                if let Some(rpps) = &update.prescriber_rpps {
                    self.require::<Prescriber>(rpps.as_str()).await?;
                }
                let cohort = self.require::<Cohort>(e.cohort_id.as_str()).await?.record;
                let framework = match &e.framework_id {
                    Some(f) => Some(self.require::<Framework>(f.as_str()).await?.record),
                    None => None,
                };
                let authorisation = match &e.authorisation_id {
                    Some(a) => Some(self.require::<Authorisation>(a.as_str()).await?.record),
                    None => None,
                };
                let visit_dates = self.visit_dates(id.as_str(), None).await?;
                let first_adverse_event: Option<chrono::NaiveDate> = sqlx::query_scalar(
                    "SELECT MIN(onset_date) FROM adverse_event_versions WHERE superseded_at IS NULL AND episode_id = $1",
                )
                .bind(id.as_str())
                .fetch_one(&mut **self.tx)
                .await?;
                let ctx = treatment_corrections::EpisodeContext {
                    cohort: &cohort,
                    framework: framework.as_ref(),
                    authorisation: authorisation.as_ref(),
                    visit_dates: &visit_dates,
                    first_adverse_event,
                    today: self.today,
                };
                let next = treatment_corrections::update_episode(e, update, &ctx)?;
                let why = format!("{reason}: {why}");
                // The episode this one replaced ended on its request date: that end moves with it.
                let previous = match (&e.previous_episode_id, update.request_date) {
                    (Some(p), Some(date)) if date != e.request_date => {
                        let prev = self.require::<Episode>(p.as_str()).await?;
                        let ends_here = prev.record.status == observatory_domain::model::EpisodeStatus::Switched
                            && prev.record.end_date == Some(e.request_date);
                        if ends_here {
                            let start = prev
                                .record
                                .first_administration_date
                                .unwrap_or(prev.record.request_date);
                            if date < start {
                                return Err(DomainError::invalid(
                                    "request_date",
                                    "BEFORE_PREVIOUS_START",
                                    format!("must not be before the start of the episode it replaced ({start})"),
                                )
                                .into());
                            }
                            let mut ended = prev.record.clone();
                            ended.end_date = Some(date);
                            Some((prev, ended))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let v = self.insert_version(&current, next, &why).await?;
                let mut out = vec![Record::Episode(v)];
                if let Some((prev, ended)) = previous {
                    let why = format!("{why} (end of the episode replaced by {id})");
                    out.push(Record::Episode(self.insert_version(&prev, ended, &why).await?));
                }
                Ok(out)
            }
            Command::UpdateAuthorisation {
                id,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<Authorisation>(id.as_str(), *expected_version).await?;
                let episode = self.require::<Episode>(current.record.episode_id.as_str()).await?;
                let next =
                    treatment_corrections::update_authorisation(&current.record, &episode.record, update, self.today)?;
                let why = format!("{reason}: {why}");
                let mirrored =
                    treatment_corrections::episode_after_authorisation(&episode.record, &current.record, &next);
                let v = self.insert_version(&current, next, &why).await?;
                let mut out = vec![Record::Authorisation(v)];
                if let Some(e) = mirrored {
                    let why = format!("{why} (decision date of authorisation {id})");
                    out.push(Record::Episode(self.insert_version(&episode, e, &why).await?));
                }
                Ok(out)
            }
            Command::UpdateFollowUp {
                id,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<FollowUp>(id.as_str(), *expected_version).await?;
                let episode = self.require::<Episode>(current.record.episode_id.as_str()).await?;
                let others = self
                    .visit_dates(current.record.episode_id.as_str(), Some(id.as_str()))
                    .await?;
                let (next, status) = treatment_corrections::update_follow_up(
                    &current.record,
                    &episode.record,
                    &others,
                    update,
                    self.today,
                )?;
                let why = format!("{reason}: {why}");
                let v = self.insert_version(&current, next, &why).await?;
                let mut out = vec![Record::FollowUp(v)];
                if status != episode.record.status {
                    let mut e = episode.record.clone();
                    e.status = status;
                    let why = format!("{why} (visit {id} moved)");
                    out.push(Record::Episode(self.insert_version(&episode, e, &why).await?));
                }
                Ok(out)
            }
            Command::TransitionCohort {
                id,
                expected_version,
                transition,
            } => {
                let current = self.current_at::<Cohort>(id.as_str(), *expected_version).await?;
                let next = corrections::transition_cohort(&current.record, *transition)?;
                let v = self
                    .insert_version(&current, next, &format!("{reason}: {transition:?}"))
                    .await?;
                Ok(vec![Record::Cohort(v)])
            }
            Command::UpdateCentre {
                finess,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<Centre>(finess.as_str(), *expected_version).await?;
                let next = corrections::update_centre(&current.record, update)?;
                let v = self.insert_version(&current, next, &format!("{reason}: {why}")).await?;
                Ok(vec![Record::Centre(v)])
            }
            Command::UpdatePrescriber {
                rpps,
                expected_version,
                update,
                reason: why,
            } => {
                let current = self.current_at::<Prescriber>(rpps.as_str(), *expected_version).await?;
                if let Some(centre) = &update.centre_finess {
                    self.require::<Centre>(centre.as_str()).await?;
                }
                let next = corrections::update_prescriber(&current.record, update)?;
                let v = self.insert_version(&current, next, &format!("{reason}: {why}")).await?;
                Ok(vec![Record::Prescriber(v)])
            }
            Command::TransitionFramework {
                id,
                expected_version,
                transition,
            } => {
                let current = self.current_at::<Framework>(id.as_str(), *expected_version).await?;
                let next = corrections::transition_framework(&current.record, transition, self.today)?;
                let v = self
                    .insert_version(&current, next, &format!("{reason}: {}", transition.action()))
                    .await?;
                Ok(vec![Record::Framework(v)])
            }
            Command::RecordAdverseEvent(ae) => {
                let episode = self.require::<Episode>(ae.episode_id.as_str()).await?;
                lifecycle::check_adverse_event(&episode.record, ae, self.today)?;
                let v = self.insert_new(new_id(), ae, reason).await?;
                Ok(vec![Record::AdverseEvent(v)])
            }
        }
    }

    async fn resolve_cohort(&mut self, n: &crate::NewCohort) -> Result<Cohort> {
        let mut v = Violations::new();
        let framework = match &n.framework_id {
            Some(id) => Some(self.require::<Framework>(id.as_str()).await?.record),
            None => None,
        };
        match &framework {
            None if n.pathway.needs_framework() => v.push(
                "framework_id",
                "REQUIRED",
                format!("a {} cohort must be bound to a framework", n.pathway),
            ),
            Some(_) if !n.pathway.needs_framework() => v.push(
                "framework_id",
                "NOT_APPLICABLE",
                format!("a {} cohort is not bound to a framework", n.pathway),
            ),
            Some(f) => {
                if f.pathway != n.pathway {
                    v.push(
                        "framework_id",
                        "PATHWAY_MISMATCH",
                        format!("the framework is a {} framework", f.pathway),
                    );
                }
                if f.drug_atc != n.drug_atc {
                    v.push(
                        "framework_id",
                        "DRUG_MISMATCH",
                        format!("the framework is for {}", f.drug_atc),
                    );
                }
                for (i, code) in n.orpha_codes.iter().enumerate() {
                    if !f.orpha_codes.contains(code) {
                        v.push(
                            format!("orpha_codes[{i}]"),
                            "NOT_COVERED",
                            "is not covered by the framework's indication",
                        );
                    }
                }
            }
            None => {}
        }
        v.into_result()?;
        let follow_up_months = n
            .follow_up_months
            .or_else(|| framework.as_ref().map(|f| f.follow_up_months))
            .unwrap_or(0);
        Ok(Cohort {
            name: n.name.clone(),
            filiere: n.filiere.clone(),
            pathway: n.pathway,
            drug_atc: n.drug_atc.clone(),
            orpha_codes: n.orpha_codes.clone(),
            framework_id: n.framework_id.clone(),
            follow_up_months,
            status: CohortStatus::Open,
        })
    }

    async fn declare_episode(&mut self, d: &lifecycle::EpisodeDeclaration, reason: &str) -> Result<Vec<Record>> {
        let patient = self.require::<Patient>(d.patient_id.as_str()).await?;
        observatory_domain::merge::check_not_merged(&d.patient_id, &patient.record)?;
        if patient.record.vital_status == VitalStatus::Deceased {
            return Err(DomainError::Precondition(format!("patient {} is recorded as deceased", d.patient_id)).into());
        }
        let cohort = self.require::<Cohort>(d.cohort_id.as_str()).await?;
        let framework = match &cohort.record.framework_id {
            Some(id) => Some(self.require::<Framework>(id.as_str()).await?.record),
            None => None,
        };
        let prescriber = self.require::<Prescriber>(d.prescriber.as_str()).await?;
        if let Some(centre) = &d.centre_finess {
            self.require::<Centre>(centre.as_str()).await?;
        }
        let previous = match &d.previous_episode {
            Some((id, expected)) => {
                let prev = self.current_at::<Episode>(id.as_str(), *expected).await?;
                if prev.record.patient_id != d.patient_id {
                    return Err(DomainError::invalid(
                        "previous_episode_id",
                        "OTHER_PATIENT",
                        "must be an episode of the same patient",
                    )
                    .into());
                }
                let switched = lifecycle::transition_episode(
                    &prev.record,
                    &EpisodeTransition::Switch { date: d.request_date },
                    None,
                    self.today,
                )?;
                Some((prev, switched))
            }
            None => None,
        };
        // One active episode per patient and drug: a second one would be counted twice in the
        // reports. A change of pathway for the same drug is a switch.
        let active: Option<String> = sqlx::query_scalar(
            "SELECT id FROM episode_versions WHERE superseded_at IS NULL AND patient_id = $1 AND drug_atc = $2 \
             AND status IN ('DECLARED', 'INITIATED', 'ONGOING') AND id <> $3 LIMIT 1",
        )
        .bind(d.patient_id.as_str())
        .bind(cohort.record.drug_atc.as_str())
        .bind(previous.as_ref().map_or("", |(p, _)| p.meta.id.as_str()))
        .fetch_optional(&mut **self.tx)
        .await?;
        if let Some(active) = active {
            return Err(DomainError::Precondition(format!(
                "patient {} already has an active episode {active} with {}: stop it, or declare this one as a switch \
                 (previous_episode_id)",
                d.patient_id, cohort.record.drug_atc
            ))
            .into());
        }
        let episode_id = RecordId::from_minted(new_id());
        let authorisation_id = d.pathway.needs_authorisation().then(|| RecordId::from_minted(new_id()));
        let rcp_review = d
            .rcp_review
            .as_ref()
            .and_then(|id| patient.record.rcp_reviews.iter().find(|r| &r.id == id));
        let ctx = lifecycle::DeclarationContext {
            cohort: &cohort.record,
            framework: framework.as_ref(),
            prescriber: &prescriber.record,
            rcp_review,
            today: self.today,
        };
        let (episode, authorisation) = lifecycle::declare_episode(d, &ctx, authorisation_id, &episode_id)?;
        let mut out = Vec::with_capacity(3);
        let e = self
            .insert_new(episode_id.as_str().to_owned(), &episode, reason)
            .await?;
        out.push(Record::Episode(e));
        if let Some(a) = authorisation {
            let id = episode
                .authorisation_id
                .clone()
                .map(String::from)
                .unwrap_or_else(new_id);
            let a = self.insert_new(id, &a, reason).await?;
            out.push(Record::Authorisation(a));
        }
        if let Some((prev, switched)) = previous {
            let reason = format!("DeclareEpisode: switched to episode {episode_id}");
            let p = self.insert_version(&prev, switched, &reason).await?;
            out.push(Record::Episode(p));
        }
        Ok(out)
    }

    /// Dates of the current visits of `episode`, but the visit `except`.
    async fn visit_dates(&mut self, episode: &str, except: Option<&str>) -> Result<Vec<chrono::NaiveDate>> {
        Ok(sqlx::query_scalar(
            "SELECT visit_date FROM follow_up_versions WHERE superseded_at IS NULL AND episode_id = $1 AND id <> $2",
        )
        .bind(episode)
        .bind(except.unwrap_or(""))
        .fetch_all(&mut **self.tx)
        .await?)
    }

    async fn exists(&mut self, id: &str) -> Result<bool> {
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **self.tx)
            .await?;
        Ok(found > 0)
    }

    async fn require<T: Stored>(&mut self, id: &str) -> Result<Versioned<T>> {
        fetch_current::<T>(&mut **self.tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: kind_label(T::KIND),
                id: id.to_owned(),
            })
    }

    /// Current version, checked against the version the client expects.
    async fn current_at<T: Stored>(&mut self, id: &str, expected: i64) -> Result<Versioned<T>> {
        let current = self.require::<T>(id).await?;
        if current.meta.version != expected {
            return Err(StoreError::Stale {
                kind: kind_label(T::KIND),
                id: id.to_owned(),
                expected,
                current: current.meta.version,
            });
        }
        Ok(current)
    }

    fn meta(&self, id: String, version: i64, reason: &str) -> Meta {
        Meta {
            id,
            version,
            recorded_at: self.now,
            recorded_by: self.ctx.actor.clone(),
            reason: reason.to_owned(),
            request_id: self.ctx.request_id.clone(),
        }
    }

    /// A registration belongs to its caller's scope. A patient of that pseudonym already within
    /// the scope is ALREADY_EXISTS (the caller reaches it anyway); one registered only elsewhere
    /// is neither confirmed nor denied: this scope gets a record of its own, enrolled at its
    /// centres or filières, as a fresh registration would. A local process (no scope) holds the
    /// whole registry: any current record of the pseudonym is ALREADY_EXISTS.
    async fn register_patient(&mut self, p: &Patient, reason: &str) -> Result<Vec<Record>> {
        observatory_domain::registration::check_patient(p, self.today)?;
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM patient_versions WHERE pseudonym = $1 AND superseded_at IS NULL ORDER BY id",
        )
        .bind(&p.pseudonym.value)
        .fetch_all(&mut **self.tx)
        .await?;
        // The context outlives this writer's borrow: no copy of the scope per registration.
        let ctx = self.ctx;
        let scope = ctx.scope.as_ref();
        let known = match scope {
            None => existing.first().cloned(),
            Some(_) if existing.is_empty() => None,
            Some(scope) => {
                let reaches = reach_many(self.tx, RecordKind::Patient, &existing).await?;
                existing
                    .iter()
                    .find(|id| reaches.get(*id).is_some_and(|r| scope.covers(r)))
                    .cloned()
            }
        };
        if let Some(id) = known {
            // A record merged into another is that other's person: named instead.
            let kept = match fetch_current::<Patient>(&mut **self.tx, &id).await? {
                Some(p) => p.record.merged_into.map_or(id, |into| into.to_string()),
                None => id,
            };
            return Err(StoreError::AlreadyExists(format!(
                "patient already registered as {kept}"
            )));
        }
        let v = self.insert_new(new_id(), p, reason).await?;
        if let Some(scope) = scope {
            let rows = scope
                .centres()
                .iter()
                .map(|c| (Some(c.as_str()), None))
                .chain(scope.filieres().iter().map(|f| (None, Some(f.as_str()))));
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO patient_enrolments (patient_id, pseudonym, centre_finess, filiere, recorded_at) ",
            );
            q.push_values(rows, |mut b, (centre, filiere): (Option<&str>, Option<&str>)| {
                b.push_bind(v.meta.id.clone())
                    .push_bind(p.pseudonym.value.clone())
                    .push_bind(centre.map(str::to_owned))
                    .push_bind(filiere.map(str::to_owned))
                    .push_bind(self.now);
            });
            if !scope.centres().is_empty() || !scope.filieres().is_empty() {
                match q.build().execute(&mut **self.tx).await {
                    Ok(_) => {}
                    // Another writer (a second server on the database) enrolled the same person in
                    // this scope first: the same answer as if this writer had seen it.
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        return Err(StoreError::AlreadyExists(
                            "patient already registered in this scope by a concurrent call: read it again".to_owned(),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(vec![Record::Patient(v)])
    }

    /// Merges one patient record into another (see `observatory_domain::merge`): the kept
    /// record's next version, the merged one's (pointing at it), the merged record's episodes
    /// and authorisations moved, each with the merge's reason; the kept record enrolled where
    /// the merged one was, so that every scope that reached the person still does.
    async fn merge_patients(
        &mut self,
        kept: &RecordId,
        kept_version: i64,
        merged: &RecordId,
        merged_version: i64,
        reason: &str,
    ) -> Result<Vec<Record>> {
        let kept_now = self.current_at::<Patient>(kept.as_str(), kept_version).await?;
        let merged_now = self.current_at::<Patient>(merged.as_str(), merged_version).await?;
        let kept_episodes = fetch_current_where::<Episode>(&mut **self.tx, "patient_id", kept.as_str()).await?;
        let merged_episodes = fetch_current_where::<Episode>(&mut **self.tx, "patient_id", merged.as_str()).await?;
        let merged_authorisations =
            fetch_current_where::<Authorisation>(&mut **self.tx, "patient_id", merged.as_str()).await?;
        let plan = observatory_domain::merge::merge(
            kept,
            &kept_now.record,
            merged,
            &merged_now.record,
            &kept_episodes.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
            &merged_episodes.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
            &merged_authorisations
                .iter()
                .map(|a| a.record.clone())
                .collect::<Vec<_>>(),
        )?;
        // The merged record stays where its treatments placed it, so that every scope that read
        // it still does once they move: enrolled at their centres and in their cohorts' filières.
        for select in [
            "SELECT DISTINCT e.centre_finess, NULL FROM episode_versions e \
             WHERE e.superseded_at IS NULL AND e.patient_id = $1",
            "SELECT DISTINCT NULL, c.filiere FROM episode_versions e \
             JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
             WHERE e.superseded_at IS NULL AND e.patient_id = $1",
        ] {
            let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                .bind(merged.as_str())
                .fetch_all(&mut **self.tx)
                .await?;
            for (centre, filiere) in rows {
                sqlx::query(
                    "INSERT INTO patient_enrolments (patient_id, pseudonym, centre_finess, filiere, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(merged.as_str())
                .bind(&merged_now.record.pseudonym.value)
                .bind(centre)
                .bind(filiere)
                .bind(self.now)
                .execute(&mut **self.tx)
                .await?;
            }
        }
        let mut out = Vec::with_capacity(2 + merged_episodes.len() + merged_authorisations.len());
        let why = format!("{reason} (merged {merged} into {kept})");
        out.push(Record::Patient(self.insert_version(&kept_now, plan.kept, &why).await?));
        out.push(Record::Patient(
            self.insert_version(&merged_now, plan.merged, &why).await?,
        ));
        for (current, next) in merged_episodes.iter().zip(plan.episodes) {
            out.push(Record::Episode(self.insert_version(current, next, &why).await?));
        }
        for (current, next) in merged_authorisations.iter().zip(plan.authorisations) {
            out.push(Record::Authorisation(self.insert_version(current, next, &why).await?));
        }
        sqlx::query(
            "INSERT INTO patient_enrolments (patient_id, pseudonym, centre_finess, filiere, recorded_at) \
             SELECT $1, $2, centre_finess, filiere, $3 FROM patient_enrolments WHERE patient_id = $4 \
             ON CONFLICT DO NOTHING",
        )
        .bind(kept.as_str())
        .bind(&kept_now.record.pseudonym.value)
        .bind(self.now)
        .bind(merged.as_str())
        .execute(&mut **self.tx)
        .await?;
        Ok(out)
    }

    async fn insert_new<T: Stored + Clone>(&mut self, id: String, record: &T, reason: &str) -> Result<Versioned<T>> {
        *self.wrote = true;
        sqlx::query("INSERT INTO records (id, kind, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(T::KIND.code())
            .bind(self.now)
            .execute(&mut **self.tx)
            .await?;
        let meta = self.meta(id, 1, reason);
        insert_row(self.tx, &meta, record).await?;
        self.targets.push(AuditTarget {
            kind: T::KIND.code().to_owned(),
            id: meta.id.clone(),
            version: Some(1),
            before: None,
            after: Some(audit::digest(record)),
        });
        Ok(Versioned {
            meta,
            record: record.clone(),
        })
    }

    /// Stamps the current version superseded and appends the next one.
    async fn insert_version<T: Stored>(
        &mut self,
        current: &Versioned<T>,
        next: T,
        reason: &str,
    ) -> Result<Versioned<T>> {
        *self.wrote = true;
        let table = kinds::table(T::KIND);
        let mut q = QueryBuilder::<Db>::new(format!("UPDATE {table} SET superseded_at = "));
        q.push_bind(self.now)
            .push(" WHERE id = ")
            .push_bind(current.meta.id.clone())
            .push(" AND version = ")
            .push_bind(current.meta.version)
            .push(" AND superseded_at IS NULL");
        let done = q.build().execute(&mut **self.tx).await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale {
                kind: kind_label(T::KIND),
                id: current.meta.id.clone(),
                expected: current.meta.version,
                current: current.meta.version + 1,
            });
        }
        let meta = self.meta(current.meta.id.clone(), current.meta.version + 1, reason);
        insert_row(self.tx, &meta, &next).await?;
        self.targets.push(AuditTarget {
            kind: T::KIND.code().to_owned(),
            id: meta.id.clone(),
            version: Some(meta.version),
            before: Some(audit::digest(&current.record)),
            after: Some(audit::digest(&next)),
        });
        Ok(Versioned { meta, record: next })
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Lowercase label of a kind for messages ("episode", "follow_up").
fn kind_label(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Centre => "centre",
        RecordKind::Prescriber => "prescriber",
        RecordKind::Framework => "framework",
        RecordKind::Cohort => "cohort",
        RecordKind::Patient => "patient",
        RecordKind::Episode => "episode",
        RecordKind::Authorisation => "authorisation",
        RecordKind::FollowUp => "follow-up",
        RecordKind::AdverseEvent => "adverse event",
    }
}

async fn insert_row<T: Stored>(conn: &mut Conn, meta: &Meta, record: &T) -> Result<()> {
    let table = kinds::table(T::KIND);
    let columns = record.columns();
    let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO {table} ({META_COLUMNS}"));
    for (name, _) in &columns {
        q.push(", ").push(*name);
    }
    q.push(") VALUES (")
        .push_bind(meta.id.clone())
        .push(", ")
        .push_bind(meta.version)
        .push(", ")
        .push_bind(meta.recorded_at)
        .push(", ")
        .push_bind(meta.recorded_by.clone())
        .push(", ")
        .push_bind(meta.reason.clone())
        .push(", ")
        .push_bind(meta.request_id.clone())
        .push(", ")
        .push_bind(Json(serde_json::to_value(record).map_err(|e| StoreError::Corrupt {
            kind: kind_label(T::KIND),
            id: meta.id.clone(),
            source: std::sync::Arc::new(e),
        })?));
    for (_, value) in columns {
        q.push(", ");
        match value {
            Val::Text(s) => q.push_bind(s),
            Val::Date(d) => q.push_bind(d),
            Val::Bool(b) => q.push_bind(b),
        };
    }
    q.push(")");
    q.build().execute(conn).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads

async fn fetch_current<'e, T: Stored>(
    e: impl sqlx::Executor<'e, Database = Db>,
    id: &str,
) -> Result<Option<Versioned<T>>> {
    let table = kinds::table(T::KIND);
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {META_COLUMNS} FROM {table} WHERE id = "));
    q.push_bind(id.to_owned()).push(" AND superseded_at IS NULL");
    let row: Option<MetaRow<T>> = q.build_query_as().fetch_optional(e).await?;
    Ok(row.map(from_row))
}

/// The current versions of the records of kind `T` whose typed `column` is `value`, by id.
async fn fetch_current_where<'e, T: Stored>(
    e: impl sqlx::Executor<'e, Database = Db>,
    column: &'static str,
    value: &str,
) -> Result<Vec<Versioned<T>>> {
    let table = kinds::table(T::KIND);
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {META_COLUMNS} FROM {table} WHERE {column} = "));
    q.push_bind(value.to_owned())
        .push(" AND superseded_at IS NULL ORDER BY id");
    let rows: Vec<MetaRow<T>> = q.build_query_as().fetch_all(e).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub async fn get_current<T: Stored>(conn: &mut Conn, id: &str) -> Result<Option<Versioned<T>>> {
    fetch_current::<T>(conn, id).await
}

async fn version_of(conn: &mut Conn, kind: RecordKind, id: &str, version: i64) -> Result<Record> {
    async fn one<T: Stored>(conn: &mut Conn, id: &str, version: i64) -> Result<Record> {
        let table = kinds::table(T::KIND);
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {META_COLUMNS} FROM {table} WHERE id = "));
        q.push_bind(id.to_owned()).push(" AND version = ").push_bind(version);
        let row: MetaRow<T> = q.build_query_as().fetch_one(conn).await?;
        Ok(T::into_record(from_row(row)))
    }
    match kind {
        RecordKind::Centre => one::<Centre>(conn, id, version).await,
        RecordKind::Prescriber => one::<Prescriber>(conn, id, version).await,
        RecordKind::Framework => one::<Framework>(conn, id, version).await,
        RecordKind::Cohort => one::<Cohort>(conn, id, version).await,
        RecordKind::Patient => one::<Patient>(conn, id, version).await,
        RecordKind::Episode => one::<Episode>(conn, id, version).await,
        RecordKind::Authorisation => one::<Authorisation>(conn, id, version).await,
        RecordKind::FollowUp => one::<FollowUp>(conn, id, version).await,
        RecordKind::AdverseEvent => one::<AdverseEvent>(conn, id, version).await,
    }
}

/// The audit digest of a stored version (what the event that wrote it recorded), `None` when
/// no such version is stored.
pub async fn version_digest(conn: &mut Conn, kind: RecordKind, id: &str, version: i64) -> Result<Option<String>> {
    match version_of(conn, kind, id, version).await {
        Ok(record) => Ok(record.audit_target().after),
        Err(StoreError::Database(e)) if matches!(*e, sqlx::Error::RowNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Up to `limit` (id, version) of the stored versions of `kind`, in order, after `after`.
pub async fn version_keys(
    conn: &mut Conn,
    kind: RecordKind,
    recorded_after: Option<DateTime<Utc>>,
    after: Option<(String, i64)>,
    limit: i64,
) -> Result<Vec<(String, i64)>> {
    let table = kinds::table(kind);
    let mut q = QueryBuilder::<Db>::new(format!("SELECT id, version FROM {table} WHERE 1 = 1 "));
    if let Some(at) = recorded_after {
        q.push("AND recorded_at > ").push_bind(at).push(" ");
    }
    if let Some((id, version)) = after {
        q.push("AND (id > ")
            .push_bind(id.clone())
            .push(" OR (id = ")
            .push_bind(id)
            .push(" AND version > ")
            .push_bind(version)
            .push(")) ");
    }
    q.push("ORDER BY id, version LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
}

pub async fn history(conn: &mut Conn, kind: RecordKind, id: &str) -> Result<Vec<Record>> {
    async fn all<T: Stored>(conn: &mut Conn, id: &str) -> Result<Vec<Record>> {
        let table = kinds::table(T::KIND);
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {META_COLUMNS} FROM {table} WHERE id = "));
        q.push_bind(id.to_owned()).push(" ORDER BY version");
        let rows: Vec<MetaRow<T>> = q.build_query_as().fetch_all(conn).await?;
        Ok(rows.into_iter().map(|r| T::into_record(from_row(r))).collect())
    }
    match kind {
        RecordKind::Centre => all::<Centre>(conn, id).await,
        RecordKind::Prescriber => all::<Prescriber>(conn, id).await,
        RecordKind::Framework => all::<Framework>(conn, id).await,
        RecordKind::Cohort => all::<Cohort>(conn, id).await,
        RecordKind::Patient => all::<Patient>(conn, id).await,
        RecordKind::Episode => all::<Episode>(conn, id).await,
        RecordKind::Authorisation => all::<Authorisation>(conn, id).await,
        RecordKind::FollowUp => all::<FollowUp>(conn, id).await,
        RecordKind::AdverseEvent => all::<AdverseEvent>(conn, id).await,
    }
}

pub async fn list<T: Stored>(conn: &mut Conn, lq: ListQuery) -> Result<Page<Versioned<T>>> {
    let table = kinds::table(T::KIND);
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {META_COLUMNS} FROM {table} WHERE superseded_at IS NULL"
    ));
    for (column, filter) in lq.filters {
        match filter {
            Filter::Eq(v) => q.push(" AND ").push(column).push(" = ").push_bind(v),
            Filter::IsTrue => q.push(" AND ").push(column),
            Filter::IsNull => q.push(" AND ").push(column).push(" IS NULL"),
            Filter::DateFrom(d) => q.push(" AND ").push(column).push(" >= ").push_bind(d),
            Filter::DateTo(d) => q.push(" AND ").push(column).push(" <= ").push_bind(d),
            Filter::In(values) => push_in(q.push(" AND "), column, values),
            Filter::EpisodesWithin { centres, filieres } => {
                push_in(q.push(" AND ("), column, centres);
                q.push(" OR cohort_id IN (SELECT id FROM cohort_versions WHERE superseded_at IS NULL AND ");
                push_in(&mut q, "filiere", filieres).push("))")
            }
            Filter::PatientsWithin { centres, filieres } => {
                // Where it was enrolled, or where its episodes are: as `reach` says.
                q.push(" AND (").push(column);
                q.push(" IN (SELECT patient_id FROM patient_enrolments WHERE ");
                push_in(&mut q, "centre_finess", centres.clone()).push(" OR ");
                push_in(&mut q, "filiere", filieres.clone()).push(") OR ").push(column);
                q.push(
                    " IN (SELECT e.patient_id FROM episode_versions e \
                     JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
                     WHERE e.superseded_at IS NULL AND (",
                );
                push_in(&mut q, "e.centre_finess", centres).push(" OR ");
                push_in(&mut q, "c.filiere", filieres).push(")))")
            }
            Filter::AuthorisationsWithin { centres, filieres } => {
                q.push(" AND ").push(column);
                q.push(" IN (SELECT id FROM episode_versions WHERE superseded_at IS NULL AND (");
                push_in(&mut q, "centre_finess", centres);
                q.push(" OR cohort_id IN (SELECT id FROM cohort_versions WHERE superseded_at IS NULL AND ");
                push_in(&mut q, "filiere", filieres).push(")))")
            }
            Filter::PatientsWithEpisode { pathway, status } => {
                q.push(" AND ").push(column);
                q.push(" IN (SELECT patient_id FROM episode_versions WHERE superseded_at IS NULL");
                if let Some(p) = pathway {
                    q.push(" AND pathway = ").push_bind(p);
                }
                if let Some(s) = status {
                    q.push(" AND status = ").push_bind(s);
                }
                q.push(")")
            }
            Filter::EpisodesOfCohort(cohort) => q
                .push(" AND ")
                .push(column)
                .push(" IN (SELECT id FROM episode_versions WHERE superseded_at IS NULL AND cohort_id = ")
                .push_bind(cohort)
                .push(")"),
            Filter::CentresOfFiliere(filiere) => {
                // Codes are letters, digits, '-' and '_'; '_' is escaped so LIKE matches it as itself.
                let pattern = format!(
                    "%|{}|%",
                    filiere.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%")
                );
                q.push(" AND (filieres LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
                q.push(" OR (filieres IS NULL AND ")
                    .push(column)
                    .push(" = ")
                    .push_bind(filiere)
                    .push("))")
            }
            Filter::PatientsInCohort(cohort) => q
                .push(" AND ")
                .push(column)
                .push(" IN (SELECT patient_id FROM episode_versions WHERE superseded_at IS NULL AND cohort_id = ")
                .push_bind(cohort)
                .push(")"),
        };
    }
    if let Some(after) = lq.after {
        q.push(" AND id > ").push_bind(after);
    }
    q.push(" ORDER BY id LIMIT ").push_bind(i64::from(lq.size) + 1);
    let rows: Vec<MetaRow<T>> = q.build_query_as().fetch_all(conn).await?;
    let mut items: Vec<Versioned<T>> = rows.into_iter().map(from_row).collect();
    let next_page_token = if items.len() > lq.size as usize {
        items.truncate(lq.size as usize);
        items.last().map(|v| kinds::encode_token(&v.meta.id))
    } else {
        None
    };
    Ok(Page { items, next_page_token })
}

/// `column IN (values...)`, or a condition no row meets when there are no values.
pub(crate) fn push_in<'q>(
    q: &'q mut QueryBuilder<Db>,
    column: &'static str,
    values: Vec<String>,
) -> &'q mut QueryBuilder<Db> {
    if values.is_empty() {
        return q.push("1 = 0");
    }
    q.push(column).push(" IN (");
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    q.push(")")
}

/// Where records of one kind belong (see `observatory_domain::access::Reach`), by id: a
/// cohort's filière for cohorts; the centres and cohort filières of the episodes a patient-level
/// record is or hangs from. Nothing for reference data (every role reads it) or for a record
/// that does not exist: such ids are absent from the map.
pub async fn reach_many(conn: &mut Conn, kind: RecordKind, ids: &[String]) -> Result<HashMap<String, Reach>> {
    let corrupt = |id: &str, what: String| StoreError::Corrupt {
        kind: kind.code(),
        id: id.to_owned(),
        source: std::sync::Arc::new(<serde_json::Error as serde::de::Error>::custom(what)),
    };
    let mut reaches: HashMap<String, Reach> = HashMap::new();
    if ids.is_empty() {
        return Ok(reaches);
    }
    // (record id, centre, filière) rows: the centre is empty for a cohort. A patient-level
    // record reaches through its episode: the patient's episodes, the episode itself, or the
    // episode an authorisation, follow-up or adverse event hangs from.
    let of_episodes = |key: &str| {
        format!(
            "SELECT {key}, e.centre_finess, c.filiere FROM episode_versions e \
             JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
             WHERE e.superseded_at IS NULL AND "
        )
    };
    let (select, key) = match kind {
        RecordKind::Cohort => (
            "SELECT c.id, '', c.filiere FROM cohort_versions c WHERE c.superseded_at IS NULL AND ".to_owned(),
            "c.id",
        ),
        RecordKind::Patient => (of_episodes("e.patient_id"), "e.patient_id"),
        RecordKind::Episode => (of_episodes("e.id"), "e.id"),
        RecordKind::Authorisation | RecordKind::FollowUp | RecordKind::AdverseEvent => (
            format!(
                "SELECT x.id, e.centre_finess, c.filiere FROM {} x \
                 JOIN episode_versions e ON e.id = x.episode_id AND e.superseded_at IS NULL \
                 JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
                 WHERE x.superseded_at IS NULL AND ",
                kinds::table(kind)
            ),
            "x.id",
        ),
        RecordKind::Centre | RecordKind::Prescriber | RecordKind::Framework => return Ok(reaches),
    };
    // 500 ids a statement stay far below either database's limit of parameters.
    for chunk in ids.chunks(500) {
        let mut q = QueryBuilder::<Db>::new(select.as_str());
        push_in(&mut q, key, chunk.to_vec());
        let mut rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
        if kind == RecordKind::Patient {
            // A patient also belongs where it was enrolled: a centre or a filière per row.
            let mut q = QueryBuilder::<Db>::new(
                "SELECT patient_id, COALESCE(centre_finess, ''), COALESCE(filiere, '') FROM patient_enrolments WHERE ",
            );
            push_in(&mut q, "patient_id", chunk.to_vec());
            rows.extend(
                q.build_query_as::<(String, String, String)>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        for (id, centre, filiere) in rows {
            let entry = reaches.entry(id.clone()).or_default();
            if !centre.is_empty() {
                let centre = Finess::parse(&centre)
                    .map_err(|_| corrupt(&id, format!("stored FINESS {centre:?} is malformed")))?;
                entry.centres.insert(centre);
            }
            if !filiere.is_empty() {
                let filiere = Filiere::parse(&filiere)
                    .map_err(|_| corrupt(&id, format!("stored filière {filiere:?} is malformed")))?;
                entry.filieres.insert(filiere);
            }
        }
    }
    Ok(reaches)
}

/// (patient id, id of the person's first record, objects to reuse) of every patient record
/// current at `as_of` whose pseudonym has several current records then: one person enrolled by
/// several scopes. Few rows: a person registered once appears in none.
pub async fn people_enrolled_twice(conn: &mut Conn, as_of: DateTime<Utc>) -> Result<Vec<(String, String, bool)>> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "WITH current AS ( \
             SELECT id, pseudonym, objects_to_reuse FROM patient_versions \
             WHERE recorded_at <= $1 AND (superseded_at IS NULL OR superseded_at > $1)), \
         shared AS ( \
             SELECT pseudonym, MIN(id) AS first_id FROM current GROUP BY pseudonym HAVING COUNT(*) > 1) \
         SELECT c.id, s.first_id, c.objects_to_reuse FROM current c JOIN shared s ON s.pseudonym = c.pseudonym \
         ORDER BY c.id",
    )
    .bind(as_of)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// The date of the latest current visit of each of `episodes` that has one.
pub async fn last_visit_dates(conn: &mut Conn, episodes: Vec<String>) -> Result<Vec<(String, chrono::NaiveDate)>> {
    if episodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::<Db>::new(
        "SELECT episode_id, MAX(visit_date) FROM follow_up_versions WHERE superseded_at IS NULL AND ",
    );
    push_in(&mut q, "episode_id", episodes).push(" GROUP BY episode_id");
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
}

/// Versions recorded at or before `as_of` in (id, version) order, `limit` at a time after the
/// version `after`: only those still current at `as_of` (not superseded by then) when
/// `current_only`, every one otherwise.
pub async fn versions_recorded_by<T: Stored>(
    conn: &mut Conn,
    as_of: DateTime<Utc>,
    current_only: bool,
    after: Option<(&str, i64)>,
    limit: i64,
) -> Result<Vec<Versioned<T>>> {
    let table = kinds::table(T::KIND);
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {META_COLUMNS} FROM {table} WHERE recorded_at <= "));
    q.push_bind(as_of);
    if current_only {
        q.push(" AND (superseded_at IS NULL OR superseded_at > ")
            .push_bind(as_of)
            .push(")");
    }
    if let Some((id, version)) = after {
        q.push(" AND (id > ")
            .push_bind(id.to_owned())
            .push(" OR (id = ")
            .push_bind(id.to_owned())
            .push(" AND version > ")
            .push_bind(version)
            .push("))");
    }
    q.push(" ORDER BY id, version LIMIT ").push_bind(limit);
    let rows: Vec<MetaRow<T>> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

// ---------------------------------------------------------------------------------------------
// Change feed

/// Numbers the versions a transaction wrote after the feed's head, in the order given. Call in
/// that transaction after the audit trail's append: on PostgreSQL the chain's advisory lock,
/// held to the commit, keeps the positions in commit order across writers.
pub(crate) async fn append_changes<'m>(
    conn: &mut Conn,
    versions: impl ExactSizeIterator<Item = (RecordKind, &'m Meta)>,
) -> sqlx::Result<()> {
    if versions.len() == 0 {
        return Ok(());
    }
    if let Some(lock) = LOCK_AUDIT_CHAIN {
        sqlx::query(lock).execute(&mut *conn).await?;
    }
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
        .fetch_one(&mut *conn)
        .await?;
    let rows: Vec<(i64, RecordKind, &Meta)> = versions
        .enumerate()
        .map(|(i, (kind, meta))| (head.unwrap_or(0) + 1 + i as i64, kind, meta))
        .collect();
    // 5 parameters a row: 500 rows a statement stay far below either database's limit.
    for chunk in rows.chunks(500) {
        let mut q = QueryBuilder::<Db>::new("INSERT INTO changes (seq, kind, id, version, recorded_at) ");
        q.push_values(chunk, |mut b, (seq, kind, meta)| {
            b.push_bind(*seq)
                .push_bind(kind.code())
                .push_bind(meta.id.clone())
                .push_bind(meta.version)
                .push_bind(meta.recorded_at);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Up to `limit` changes after position `after` (of `kinds`, or every kind when empty), in
/// order, each with the version it points at.
pub async fn changes_after(
    conn: &mut Conn,
    after: i64,
    kinds: &[RecordKind],
    limit: i64,
) -> Result<Vec<(i64, Record)>> {
    let mut q = QueryBuilder::<Db>::new("SELECT seq, kind FROM changes WHERE seq > ");
    q.push_bind(after);
    if !kinds.is_empty() {
        push_in(
            q.push(" AND "),
            "kind",
            kinds.iter().map(|k| k.code().to_owned()).collect(),
        );
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(limit);
    let heads: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
    let Some(last) = heads.last().map(|(seq, _)| *seq) else {
        return Ok(Vec::new());
    };
    let mut present: Vec<&str> = heads.iter().map(|(_, kind)| kind.as_str()).collect();
    present.sort_unstable();
    present.dedup();
    // One query per kind present, over the same window of positions.
    let mut changes = Vec::with_capacity(heads.len());
    for code in present {
        let kind = RecordKind::from_code(code).ok_or_else(|| StoreError::Corrupt {
            kind: "CHANGE",
            id: code.to_owned(),
            source: std::sync::Arc::new(<serde_json::Error as serde::de::Error>::custom("unknown record kind")),
        })?;
        changes.extend(match kind {
            RecordKind::Centre => changed::<Centre>(conn, after, last).await?,
            RecordKind::Prescriber => changed::<Prescriber>(conn, after, last).await?,
            RecordKind::Framework => changed::<Framework>(conn, after, last).await?,
            RecordKind::Cohort => changed::<Cohort>(conn, after, last).await?,
            RecordKind::Patient => changed::<Patient>(conn, after, last).await?,
            RecordKind::Episode => changed::<Episode>(conn, after, last).await?,
            RecordKind::Authorisation => changed::<Authorisation>(conn, after, last).await?,
            RecordKind::FollowUp => changed::<FollowUp>(conn, after, last).await?,
            RecordKind::AdverseEvent => changed::<AdverseEvent>(conn, after, last).await?,
        });
    }
    changes.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(changes)
}

/// The versions of kind `T` at positions `(after, last]`.
async fn changed<T: Stored>(conn: &mut Conn, after: i64, last: i64) -> Result<Vec<(i64, Record)>> {
    let table = kinds::table(T::KIND);
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT c.seq, v.id, v.version, v.recorded_at, v.recorded_by, v.reason, v.request_id, v.body \
         FROM changes c JOIN {table} v ON v.id = c.id AND v.version = c.version WHERE c.kind = "
    ));
    q.push_bind(T::KIND.code())
        .push(" AND c.seq > ")
        .push_bind(after)
        .push(" AND c.seq <= ")
        .push_bind(last);
    type Row<T> = (i64, String, i64, DateTime<Utc>, String, String, String, Json<T>);
    let rows: Vec<Row<T>> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, id, version, recorded_at, recorded_by, reason, request_id, body)| {
                let versioned = from_row((id, version, recorded_at, recorded_by, reason, request_id, body));
                (seq, T::into_record(versioned))
            },
        )
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Reference data

/// Loads the shipped frameworks and records the shipped lists as a reference release, in one
/// transaction and one audit event. Frameworks already present are left as they are (a
/// framework changes through its own versions, never by reloading the file); the shipped lists
/// are recorded unless the newest shipped release has the same files (the first release of a
/// new registry, or a new one after an upgrade changed them).
pub async fn load_reference(pool: &Pool, audit_key: Option<&AuditKey>) -> Result<()> {
    audit_sql::transaction(pool, async |tx| {
        let now = Utc::now().trunc_subsecs(6);
        let ctx = WriteContext {
            actor: "reference-data".into(),
            request_id: "observatory-migrate".into(),
            trace_id: String::new(),
            idempotency_key: None,
            scope: None,
        };
        let source = reference::source_of(reference::FRAMEWORKS_CSV);
        let mut wrote = false;
        let mut w = Writer {
            tx,
            ctx: &ctx,
            now,
            today: today(now),
            wrote: &mut wrote,
            targets: Vec::new(),
        };
        for f in reference::FRAMEWORKS.iter() {
            if w.exists(f.id).await? {
                continue;
            }
            let framework = shipped_framework(f, source)?;
            w.insert_new(
                f.id.to_owned(),
                &framework,
                "shipped reference data (services/domain/reference/frameworks.csv)",
            )
            .await?;
        }
        let mut targets = std::mem::take(&mut w.targets);
        let release = super::reference_sql::record_shipped(tx, &ctx.actor, &ctx.request_id, now).await?;
        if !targets.is_empty() || release.is_some() {
            let written: Vec<Meta> = targets
                .iter()
                .map(|t| Meta {
                    id: t.id.clone(),
                    version: t.version.unwrap_or(1),
                    recorded_at: now,
                    recorded_by: ctx.actor.clone(),
                    reason: String::new(),
                    request_id: ctx.request_id.clone(),
                })
                .collect();
            targets.extend(release.map(|r| AuditTarget::object("REFERENCE_RELEASE", r.seq.to_string())));
            let entry = AuditEntry::new(&ctx, "LoadReferenceData", targets);
            audit_sql::append(tx, &[(entry, now)], audit_key).await?;
            append_changes(tx, written.iter().map(|m| (RecordKind::Framework, m))).await?;
        }
        Ok(())
    })
    .await
}

fn shipped_framework(f: &reference::FrameworkRef, source: &str) -> Result<Framework> {
    let bad = |what: &str| {
        StoreError::Domain(DomainError::Precondition(format!(
            "shipped framework {} has an invalid {what}",
            f.id
        )))
    };
    Ok(Framework {
        pathway: Pathway::from_code(f.pathway).ok_or_else(|| bad("pathway"))?,
        drug_atc: Atc::parse(f.drug_atc).map_err(|_| bad("drug_atc"))?,
        indication: f.indication.to_owned(),
        orpha_codes: f
            .orpha_codes
            .iter()
            .map(|c| OrphaCode::parse(c))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("orpha_codes"))?,
        authority: f.authority.to_owned(),
        decision_reference: f.decision_reference.to_owned(),
        valid_from: parse_date(f.valid_from).map_err(|_| bad("valid_from"))?,
        valid_to: if f.valid_to.is_empty() {
            None
        } else {
            Some(parse_date(f.valid_to).map_err(|_| bad("valid_to"))?)
        },
        status: FrameworkStatus::from_code(f.status).ok_or_else(|| bad("status"))?,
        protocol_type: ProtocolType::from_code(f.protocol_type).ok_or_else(|| bad("protocol_type"))?,
        protocol_version: f.protocol_version.to_owned(),
        follow_up_months: f.follow_up_months,
        source: source.to_owned(),
        confirmed: f.confirmed,
        suspended_from: None,
        suspended_on: None,
        requires_national_rcp: f.requires_national_rcp,
        synthesis_months: f.synthesis_months,
        synthesis_from: None,
    })
}
