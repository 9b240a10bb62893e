//! Two patient records found to be the same person (registered once with an IdMR and once by
//! identity, say) merged into one. The record kept takes the other's treatments (their episodes
//! and authorisations move to it, each a new version naming the merge), its RCP reviews, its
//! diagnoses it lacked, the objection to reuse and a death if either record had them; the
//! merged record stays, readable, pointing at the one kept (`merged_into`), and takes no write
//! any more. Nothing is lost: every record's history keeps what it was before.

use crate::error::{DomainError, Violations};
use crate::model::{Authorisation, Episode, EpisodeStatus, MAX_RCP_REVIEWS, Patient, RecordId, VitalStatus};

/// Most diagnoses a patient record holds.
pub const MAX_DIAGNOSES: usize = 20;

/// What a merge writes: the record kept and the one merged, as their next versions, and the
/// merged record's episodes and authorisations moved to the kept one.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub kept: Patient,
    pub merged: Patient,
    pub episodes: Vec<Episode>,
    pub authorisations: Vec<Authorisation>,
}

fn active(e: &Episode) -> bool {
    matches!(
        e.status,
        EpisodeStatus::Declared | EpisodeStatus::Initiated | EpisodeStatus::Ongoing
    )
}

/// Merges `merged` (with its episodes and authorisations) into `kept` (with its own episodes,
/// for the rule of one active treatment per drug). The two must be distinct records of one
/// person as far as the registry can tell: same sex and birth month (a record of one of them
/// wrong is corrected first), neither merged already, no drug under active treatment in both.
pub fn merge(
    kept_id: &RecordId,
    kept: &Patient,
    merged_id: &RecordId,
    merged: &Patient,
    kept_episodes: &[Episode],
    merged_episodes: &[Episode],
    merged_authorisations: &[Authorisation],
) -> Result<Merged, DomainError> {
    if kept_id == merged_id {
        return Err(DomainError::invalid(
            "merged_id",
            "SAME_RECORD",
            "must be another record than kept_id",
        ));
    }
    for (which, p) in [("kept_id", kept), ("merged_id", merged)] {
        if let Some(into) = &p.merged_into {
            return Err(DomainError::Precondition(format!(
                "the record of {which} was merged into {into} already: merge into that one"
            )));
        }
    }
    let mut v = Violations::new();
    if kept.sex != merged.sex {
        v.push(
            "merged_id",
            "SEX_DIFFERS",
            "the two records give different sexes: correct the wrong one before merging",
        );
    }
    if kept.birth_year_month != merged.birth_year_month {
        v.push(
            "merged_id",
            "BIRTH_MONTH_DIFFERS",
            "the two records give different birth months: correct the wrong one before merging",
        );
    }
    v.into_result()?;
    if let Some(e) = merged_episodes
        .iter()
        .filter(|e| active(e))
        .find(|e| kept_episodes.iter().any(|k| active(k) && k.drug_atc == e.drug_atc))
    {
        return Err(DomainError::Precondition(format!(
            "both records have an active treatment with {}: stop or switch one of them before merging",
            e.drug_atc
        )));
    }
    if kept.rcp_reviews.len() + merged.rcp_reviews.len() > MAX_RCP_REVIEWS {
        return Err(DomainError::Precondition(format!(
            "the two records hold more than {MAX_RCP_REVIEWS} RCP reviews together"
        )));
    }

    let mut next = kept.clone();
    for d in &merged.diagnoses {
        if !next.diagnoses.iter().any(|k| k.orpha_code == d.orpha_code) {
            if next.diagnoses.len() >= MAX_DIAGNOSES {
                return Err(DomainError::Precondition(format!(
                    "the two records hold more than {MAX_DIAGNOSES} diagnoses together: correct the kept one first"
                )));
            }
            next.diagnoses.push(d.clone());
        }
    }
    next.rcp_reviews.extend(merged.rcp_reviews.iter().cloned());
    // An objection on either record stands for the person; so does a death.
    next.objects_to_reuse |= merged.objects_to_reuse;
    if merged.vital_status == VitalStatus::Deceased {
        next.vital_status = VitalStatus::Deceased;
    }
    if next.region.is_none() {
        next.region = merged.region.clone();
    }
    next.merged_from.push(merged_id.clone());

    let mut gone = merged.clone();
    gone.merged_into = Some(kept_id.clone());
    gone.rcp_reviews.clear();

    let episodes = merged_episodes
        .iter()
        .map(|e| Episode {
            patient_id: kept_id.clone(),
            ..e.clone()
        })
        .collect();
    let authorisations = merged_authorisations
        .iter()
        .map(|a| Authorisation {
            patient_id: kept_id.clone(),
            ..a.clone()
        })
        .collect();
    Ok(Merged {
        kept: next,
        merged: gone,
        episodes,
        authorisations,
    })
}

/// A write to a merged record is refused: its person is the record it was merged into.
pub fn check_not_merged(id: &RecordId, p: &Patient) -> Result<(), DomainError> {
    match &p.merged_into {
        Some(into) => Err(DomainError::Precondition(format!(
            "patient {id} was merged into {into}: write to that record"
        ))),
        None => Ok(()),
    }
}
