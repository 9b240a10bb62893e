//! The change feed, for partner systems: the versions written after a position, as far as the
//! caller's scope covers them, each read of patient-level records audited before it is given.
//! A transport streams the batches (and waits for new commits when following).

use std::collections::HashMap;

use observatory_domain::{access::Reach, model::RecordKind};
use observatory_store::{Change, audit::AuditTarget};

use crate::scope::{Target, admit};
use crate::{App, AppResult, Call};

/// One batch of the feed.
#[derive(Debug)]
pub struct ChangesRead {
    /// The changes the caller's scope covers, in position order.
    pub visible: Vec<Change>,
    /// The last position read (visible or not): where the next batch starts.
    pub read_to: i64,
    /// Whether the batch was full (more may follow at once).
    pub full: bool,
}

/// At most `limit` changes after position `after`, of `kinds` (all when empty), kept to what the
/// caller's scope covers: reference data for every caller, cohorts of the filières it reads,
/// patient-level records where they belong now. The patient-level ones are recorded in the
/// audit trail (as the call's operation) before they are returned.
pub async fn read_changes(
    app: &App,
    call: &Call,
    after: i64,
    kinds: &[RecordKind],
    limit: u32,
) -> AppResult<ChangesRead> {
    let admitted = admit(&app.store, call, Target::List).await?;
    let batch = app.store.changes_after(after, kinds, limit).await?;
    let full = batch.len() == limit.max(1) as usize;
    let read_to = batch.last().map_or(after, |c| c.position);
    let visible = match admitted.within() {
        None => batch,
        Some(scope) => {
            let mut ids: HashMap<RecordKind, Vec<String>> = HashMap::new();
            for change in &batch {
                let kind = change.record.kind();
                if kind == RecordKind::Cohort || kind.is_patient_level() {
                    ids.entry(kind).or_default().push(change.record.meta().id.clone());
                }
            }
            let mut reaches: HashMap<RecordKind, HashMap<String, Reach>> = HashMap::new();
            for (kind, mut ids) in ids {
                ids.sort_unstable();
                ids.dedup();
                reaches.insert(kind, app.store.reach_many(kind, &ids).await?);
            }
            batch
                .into_iter()
                .filter(|change| {
                    let kind = change.record.kind();
                    let reach = || reaches.get(&kind).and_then(|r| r.get(change.record.meta().id.as_str()));
                    match kind {
                        RecordKind::Centre | RecordKind::Prescriber | RecordKind::Framework => true,
                        RecordKind::Cohort => {
                            reach().is_some_and(|r| r.filieres.iter().any(|f| scope.reads_cohorts_of(f)))
                        }
                        _ => reach().is_some_and(|r| scope.covers(r)),
                    }
                })
                .collect()
        }
    };
    let targets: Vec<AuditTarget> = visible
        .iter()
        .filter(|c| c.record.kind().is_patient_level())
        .map(|c| c.record.audit_target())
        .collect();
    if !targets.is_empty() {
        admitted.audit_read(&app.store, call.operation, targets).await?;
    }
    Ok(ChangesRead { visible, read_to, full })
}
