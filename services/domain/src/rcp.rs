//! The multidisciplinary team meeting (RCP) as a tracked step: a patient's case is put to the
//! filière's national RCP or to a centre's local one, the meeting gives its opinion (or defers
//! it to a later one), and the treatments declared on that opinion link to it. The reviews are
//! kept on the patient record, each request and opinion a new version of it.

use chrono::NaiveDate;
use serde::Serialize;

use crate::codes::{Atc, Filiere, Finess, OrphaCode};
use crate::error::{DomainError, Violations};
use crate::model::{MAX_RCP_REVIEWS, Patient, RcpLevel, RcpOpinion, RcpReview, RecordId};

/// A request for an RCP's opinion on a patient's treatment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RcpRequest {
    pub level: RcpLevel,
    /// Required for a national RCP: the filière whose meeting reviews the case.
    pub filiere: Option<Filiere>,
    pub centre_finess: Finess,
    pub drug_atc: Atc,
    pub indication: Option<OrphaCode>,
    pub requested_on: NaiveDate,
}

/// An RCP's opinion on a review asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RcpOpinionRecord {
    pub review_id: RecordId,
    pub meeting_date: NaiveDate,
    pub opinion: RcpOpinion,
    pub conditions: Option<String>,
}

/// The patient record with a new review asked for, under `id`.
pub fn request_review(
    patient: &Patient,
    r: &RcpRequest,
    id: RecordId,
    today: NaiveDate,
) -> Result<Patient, DomainError> {
    let mut v = Violations::new();
    if r.requested_on > today {
        v.push("requested_date", "IN_FUTURE", "must not be in the future");
    }
    match (r.level, &r.filiere) {
        (RcpLevel::National, None) => v.push(
            "filiere",
            "REQUIRED",
            "a national RCP is the meeting of a filière: name it",
        ),
        (RcpLevel::Local, Some(_)) => v.push(
            "filiere",
            "NOT_APPLICABLE",
            "a local RCP is the meeting of the centre (centre_finess), not of a filière",
        ),
        _ => {}
    }
    v.into_result()?;
    if patient.rcp_reviews.len() >= MAX_RCP_REVIEWS {
        return Err(DomainError::Precondition(format!(
            "the patient record holds {MAX_RCP_REVIEWS} RCP reviews already"
        )));
    }
    let mut next = patient.clone();
    next.rcp_reviews.push(RcpReview {
        id,
        level: r.level,
        filiere: r.filiere.clone(),
        centre_finess: r.centre_finess.clone(),
        drug_atc: r.drug_atc.clone(),
        indication: r.indication.clone(),
        requested_on: r.requested_on,
        meeting_date: None,
        opinion: None,
        conditions: None,
    });
    Ok(next)
}

/// The patient record with a review's opinion: a review awaited, or deferred by an earlier
/// meeting, takes it; one already decided is FAILED_PRECONDITION.
pub fn record_opinion(patient: &Patient, r: &RcpOpinionRecord, today: NaiveDate) -> Result<Patient, DomainError> {
    let mut next = patient.clone();
    let Some(review) = next.rcp_reviews.iter_mut().find(|x| x.id == r.review_id) else {
        return Err(DomainError::invalid(
            "review_id",
            "NOT_FOUND",
            "is not an RCP review of this patient",
        ));
    };
    if let Some(given) = review.opinion.filter(|o| *o != RcpOpinion::Deferred) {
        return Err(DomainError::Precondition(format!(
            "RCP review {} already has its opinion ({given}, {})",
            r.review_id,
            review.meeting_date.map(|d| d.to_string()).unwrap_or_default()
        )));
    }
    let mut v = Violations::new();
    if r.meeting_date > today {
        v.push("meeting_date", "IN_FUTURE", "must not be in the future");
    }
    if r.meeting_date < review.requested_on {
        v.push(
            "meeting_date",
            "BEFORE_REQUEST",
            "must not be before the review was asked for",
        );
    }
    if let Some(previous) = review.meeting_date
        && r.meeting_date < previous
    {
        v.push(
            "meeting_date",
            "BEFORE_PREVIOUS_MEETING",
            "must not be before the meeting that deferred the opinion",
        );
    }
    match (r.opinion, &r.conditions) {
        (RcpOpinion::FavourableWithConditions, None) => v.push(
            "conditions",
            "REQUIRED",
            "say the conditions of a favourable opinion with conditions",
        ),
        (o, Some(_)) if o != RcpOpinion::FavourableWithConditions => v.push(
            "conditions",
            "NOT_APPLICABLE",
            "only a favourable opinion with conditions has conditions",
        ),
        _ => {}
    }
    v.into_result()?;
    review.meeting_date = Some(r.meeting_date);
    review.opinion = Some(r.opinion);
    review.conditions = r.conditions.clone();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pseudonym, PseudonymKind, Sex, VitalStatus, YearMonth};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn patient() -> Patient {
        Patient {
            pseudonym: Pseudonym {
                kind: PseudonymKind::IdMr,
                value: "00000000000000000001".into(),
            },
            sex: Sex::Female,
            birth_year_month: YearMonth::parse("2015-03").unwrap(),
            region: None,
            vital_status: VitalStatus::Alive,
            objects_to_reuse: false,
            diagnoses: Vec::new(),
            cde: Default::default(),
            rcp_reviews: Vec::new(),
            merged_into: None,
            merged_from: Vec::new(),
        }
    }

    fn request(level: RcpLevel, filiere: Option<&str>) -> RcpRequest {
        RcpRequest {
            level,
            filiere: filiere.map(|f| Filiere::parse(f).unwrap()),
            centre_finess: Finess::parse("750100125").unwrap(),
            drug_atc: Atc::parse("M09AX10").unwrap(),
            indication: Some(OrphaCode::parse("70").unwrap()),
            requested_on: day("2026-03-01"),
        }
    }

    fn id(n: u8) -> RecordId {
        RecordId::parse(&format!("0193a000-0000-7000-8000-0000000000{n:02}")).unwrap()
    }

    #[test]
    fn a_review_is_asked_then_deferred_then_decided_once() {
        let today = day("2026-06-01");
        let asked = request_review(&patient(), &request(RcpLevel::National, Some("FILNEMUS")), id(1), today).unwrap();
        assert_eq!(asked.rcp_reviews[0].opinion, None);
        assert_eq!(asked.rcp_reviews[0].as_rcp(), None, "no opinion to follow yet");
        let opinion = |date: &str, opinion: RcpOpinion, conditions: Option<&str>| RcpOpinionRecord {
            review_id: id(1),
            meeting_date: day(date),
            opinion,
            conditions: conditions.map(str::to_owned),
        };
        let deferred = record_opinion(&asked, &opinion("2026-03-10", RcpOpinion::Deferred, None), today).unwrap();
        let err = record_opinion(&deferred, &opinion("2026-03-05", RcpOpinion::Favourable, None), today).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.as_slice()[0].reason == "BEFORE_PREVIOUS_MEETING"));
        let err = record_opinion(
            &deferred,
            &opinion("2026-04-07", RcpOpinion::FavourableWithConditions, None),
            today,
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.as_slice()[0].field == "conditions"));
        let decided = record_opinion(
            &deferred,
            &opinion(
                "2026-04-07",
                RcpOpinion::FavourableWithConditions,
                Some("HFMSE every 6 months"),
            ),
            today,
        )
        .unwrap();
        let rcp = decided.rcp_reviews[0].as_rcp().unwrap();
        assert_eq!(
            (rcp.opinion, rcp.level),
            (RcpOpinion::FavourableWithConditions, Some(RcpLevel::National))
        );
        let again = record_opinion(&decided, &opinion("2026-05-01", RcpOpinion::Unfavourable, None), today);
        assert!(matches!(again, Err(DomainError::Precondition(_))), "decided once");
    }

    #[test]
    fn a_national_review_names_its_filiere_a_local_one_none() {
        let today = day("2026-06-01");
        let err = request_review(&patient(), &request(RcpLevel::National, None), id(1), today).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.as_slice()[0].field == "filiere"));
        let err = request_review(&patient(), &request(RcpLevel::Local, Some("MHEMO")), id(1), today).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.as_slice()[0].reason == "NOT_APPLICABLE"));
        assert!(request_review(&patient(), &request(RcpLevel::Local, None), id(1), today).is_ok());
    }
}
