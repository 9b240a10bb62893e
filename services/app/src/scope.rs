//! Admission: whether the caller of an operation may make it (its role, [`crate::access`]) and
//! whether what it touches lies within the centres and filières of its token.
//!
//! This module is the only place that decides it. An operation names what its call touches (a
//! [`Target`]) and gets back an [`Admitted`] call: the only way to a write context, an audited
//! read or a scoped list. An operation therefore cannot write or disclose anything before the
//! check, and the table-driven access test tries every RPC in and out of scope.
//!
//! A record out of scope and a record that does not exist get the same answer
//! (PERMISSION_DENIED), so that ids cannot be probed across centres.

use observatory_domain::{
    access::{Principal, Reach, Scope},
    codes::{Filiere, Finess, Rpps},
    model::{Cohort, EpisodeStatus, Prescriber, RecordId, RecordKind},
};
use observatory_store::{EpisodeFilter, PageRequest, Store, WriteContext, audit::AuditEntry, audit::AuditTarget};

use crate::{AppError, AppResult, Call};

/// What a call touches.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Bound to no centre or filière: reference data, the audit trail, a new patient (who
    /// belongs to the caller's scope once registered). The role rule suffices.
    Unbound,
    /// A list: the store keeps only the rows within the caller's scope ([`Admitted::within`]).
    List,
    /// A cohort's catalogue entry, to read (see [`Scope::reads_cohorts_of`]).
    CohortEntry(&'a RecordId),
    /// An existing record to read or change: a cohort, or a patient-level record.
    Record(RecordKind, &'a RecordId),
    /// A new cohort of a filière.
    NewCohort(&'a Filiere),
    /// A new episode for a patient in a cohort, at a centre (by default the prescriber's),
    /// possibly replacing an earlier episode. The patient must be within scope already (enrolled
    /// or treated there), or belong nowhere (registered before enrolments were recorded, no
    /// episode), or have an episode transferred to one of the caller's centres: that is how a
    /// patient joins another centre.
    NewEpisode {
        patient: &'a RecordId,
        centre: Option<&'a Finess>,
        prescriber: &'a Rpps,
        cohort: &'a RecordId,
        previous: Option<&'a RecordId>,
    },
    /// A report run, limited to a filière (`None`: a run over every filière).
    Run(Option<&'a str>),
    /// A new report run, asked for a filière and/or a cohort.
    NewRun {
        filiere: Option<&'a Filiere>,
        cohort: Option<&'a RecordId>,
    },
}

/// A call whose caller may touch its target.
#[derive(Debug, Clone)]
pub struct Admitted {
    call: Call,
    run_filiere: Option<Filiere>,
}

fn denied(principal: &Principal, what: &str) -> AppError {
    tracing::info!(role = %principal.role, token_id = %principal.token_id, what, "out-of-scope call refused");
    AppError::Denied(what.to_owned())
}

/// The centres a patient's episodes were transferred to.
async fn transferred_to(store: &Store, patient: &RecordId) -> AppResult<Vec<Finess>> {
    let filter = EpisodeFilter {
        patient_id: Some(patient.clone()),
        status: Some(EpisodeStatus::Transferred),
        ..EpisodeFilter::default()
    };
    let mut centres = Vec::new();
    let mut page = PageRequest { size: 500, token: None };
    loop {
        let episodes = store.list_episodes(&filter, None, &page).await?;
        centres.extend(episodes.items.into_iter().filter_map(|e| e.record.transferred_to));
        match episodes.next_page_token {
            Some(token) => page.token = Some(token),
            None => return Ok(centres),
        }
    }
}

/// Checks that the caller of `call` may make its operation (its role) and touch `target` (its
/// scope). A refusal is recorded in the audit trail (the operation, its caller, no target), so
/// that probing for records out of scope leaves a trace.
pub async fn admit(store: &Store, call: &Call, target: Target<'_>) -> AppResult<Admitted> {
    match check(store, call, target).await {
        Err(AppError::Denied(why)) => {
            let mut entry = AuditEntry::new(&call.context(None), call.operation, Vec::new());
            entry.reason = "refused: PERMISSION_DENIED".to_owned();
            // The refusal stands whether or not its event could be recorded.
            if let Err(e) = store.record_access(entry).await {
                tracing::warn!(error = %e, "cannot record a refused call in the audit trail");
            }
            Err(AppError::Denied(why))
        }
        other => other,
    }
}

/// Like [`admit`], without recording a refusal: to decide what a page offers when no call is
/// made (a form shown or not), so that browsing leaves no refused operation in the trail.
pub async fn admit_quietly(store: &Store, call: &Call, target: Target<'_>) -> AppResult<Admitted> {
    check(store, call, target).await
}

async fn check(store: &Store, call: &Call, target: Target<'_>) -> AppResult<Admitted> {
    let Some(principal) = call.principal() else {
        // A local process holds the whole registry; a new report run it asks for names its
        // filière, if any, itself.
        let run_filiere = match target {
            Target::NewRun { filiere, .. } => filiere.cloned(),
            _ => None,
        };
        return Ok(Admitted {
            call: call.clone(),
            run_filiere,
        });
    };
    if !crate::access::allows(call.operation, principal.role) {
        return Err(denied(
            principal,
            &format!("the {} role may not make {}", principal.role, call.operation),
        ));
    }
    let scope = &principal.scope;
    let mut run_filiere = None;
    let covered = |reach: &Reach| scope.covers(reach);
    match target {
        Target::Unbound | Target::List => {}
        Target::CohortEntry(id) => {
            let reach = store.reach(RecordKind::Cohort, id.as_str()).await?;
            if !reach.filieres.iter().any(|f| scope.reads_cohorts_of(f)) {
                return Err(denied(
                    principal,
                    &format!("cohort {id} is not in a filière of this token, or does not exist"),
                ));
            }
        }
        Target::Record(kind, id) => {
            let reach = store.reach(kind, id.as_str()).await?;
            if !covered(&reach) {
                return Err(denied(
                    principal,
                    &format!(
                        "{} {id} is not within the centres and filières of this token, or does not exist",
                        kind.code().to_lowercase().replace('_', " ")
                    ),
                ));
            }
        }
        Target::NewCohort(filiere) => {
            if !covered(&Reach::filiere(filiere.clone())) {
                return Err(denied(
                    principal,
                    &format!("filiere: {filiere} is not a filière of this token"),
                ));
            }
        }
        Target::NewEpisode {
            patient,
            centre,
            prescriber,
            cohort,
            previous,
        } => {
            let mut reach = store.reach(RecordKind::Patient, patient.as_str()).await?;
            // A patient enrolled in filières only belongs somewhere too.
            let nowhere = reach.centres.is_empty() && reach.filieres.is_empty();
            if !nowhere && !covered(&reach) {
                reach.centres.extend(transferred_to(store, patient).await?);
                if !covered(&reach) {
                    return Err(denied(
                        principal,
                        &format!(
                            "patient_id: patient {patient} is not within the centres and filières of this token, or does not exist; \
                             a patient followed elsewhere joins a centre of this token when an episode is transferred there"
                        ),
                    ));
                }
            }
            let centre = match centre {
                Some(c) => c.clone(),
                None => {
                    store
                        .require::<Prescriber>(prescriber.as_str())
                        .await?
                        .record
                        .centre_finess
                }
            };
            let mut reach = store.reach(RecordKind::Cohort, cohort.as_str()).await?;
            reach.centres.insert(centre.clone());
            if !covered(&reach) {
                return Err(denied(
                    principal,
                    &format!(
                        "centre_finess: an episode at {centre} in this cohort is outside the centres and filières of this token"
                    ),
                ));
            }
            if let Some(previous) = previous {
                let reach = store.reach(RecordKind::Episode, previous.as_str()).await?;
                if !covered(&reach) {
                    return Err(denied(
                        principal,
                        &format!(
                            "previous_episode_id: episode {previous} is not within the centres and filières of this token, or does not exist"
                        ),
                    ));
                }
            }
        }
        Target::Run(filiere) => {
            if !scope.reads_runs_of(filiere) {
                return Err(denied(
                    principal,
                    "this report run is not limited to a filière of this token, or does not exist",
                ));
            }
        }
        Target::NewRun { filiere, cohort } => {
            let cohort_filiere = match cohort {
                None => None,
                Some(id) => {
                    let c = store.get::<Cohort>(id.as_str()).await?;
                    let Some(c) = c.filter(|c| scope.national() || scope.filieres().contains(&c.record.filiere)) else {
                        return Err(denied(
                            principal,
                            &format!("cohort_id: cohort {id} is not in a filière of this token, or does not exist"),
                        ));
                    };
                    Some(c.record.filiere)
                }
            };
            // A national analyst's run covers what it names, or every filière.
            if scope.national() {
                if let (Some(f), Some(c)) = (filiere, &cohort_filiere)
                    && f != c
                {
                    return Err(AppError::invalid(
                        "cohort_id",
                        "CONFLICT",
                        format!("belongs to filière {c}, not to {f}"),
                    ));
                }
                return Ok(Admitted {
                    call: call.clone(),
                    run_filiere: filiere.cloned().or(cohort_filiere),
                });
            }
            let resolved = match (filiere, cohort_filiere) {
                (Some(f), Some(c)) if *f != c => {
                    return Err(AppError::invalid(
                        "cohort_id",
                        "CONFLICT",
                        format!("belongs to filière {c}, not to {f}"),
                    ));
                }
                (Some(f), _) => f.clone(),
                (None, Some(c)) => c,
                (None, None) => match scope.filieres() {
                    [only] => only.clone(),
                    many => {
                        let names: Vec<&str> = many.iter().map(Filiere::as_str).collect();
                        return Err(denied(
                            principal,
                            &format!(
                                "filiere: name one of this token's filières ({}); reports over every filière are run by the schedule or on the command line",
                                names.join(", ")
                            ),
                        ));
                    }
                },
            };
            if !scope.filieres().contains(&resolved) {
                return Err(denied(
                    principal,
                    &format!("filiere: {resolved} is not a filière of this token"),
                ));
            }
            run_filiere = Some(resolved);
        }
    }
    Ok(Admitted {
        call: call.clone(),
        run_filiere,
    })
}

impl Admitted {
    /// The token's principal; `None` for a local process.
    pub fn principal(&self) -> Option<&Principal> {
        self.call.principal()
    }

    /// The scope lists are restricted to; `None` (everything) for a local process.
    pub fn within(&self) -> Option<&Scope> {
        self.call.principal().map(|p| &p.scope)
    }

    /// For a new report run: the filière it is limited to.
    pub fn run_filiere(&self) -> Option<&Filiere> {
        self.run_filiere.as_ref()
    }

    /// Who writes, under which request and trace ids.
    pub fn context(&self, idempotency_key: Option<String>) -> WriteContext {
        self.call.context(idempotency_key)
    }

    /// Records a patient-level read (or an export) in the audit trail before it is answered:
    /// UNAVAILABLE, and nothing disclosed, when the event cannot be recorded.
    pub async fn audit_read(&self, store: &Store, action: &str, targets: Vec<AuditTarget>) -> AppResult<()> {
        let entry = AuditEntry::new(&self.context(None), action, targets);
        store.record_access(entry).await?;
        Ok(())
    }
}
