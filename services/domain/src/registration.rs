//! The rules of a registration and of the other inputs whose checks depend on more than one
//! field: what every way in (gRPC, the import, the web front) gets checked against, once.

use crate::codes::{IdMr, RegionCode};
use crate::error::{DomainError, Violations};
use crate::model::{Diagnosis, Patient, Pseudonym, Sex, VitalStatus, YearMonth};
use crate::pseudonym::{self, Identity, PseudonymKey};

/// Who is registered: by national rare-disease identifier, or by identity fields that are
/// turned into a keyed pseudonym here and never kept.
pub enum Subject {
    IdMr(IdMr),
    Identity(Identity),
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Identity fields never reach a log, even through a debug print.
        match self {
            Subject::IdMr(_) => f.write_str("Subject::IdMr(..)"),
            Subject::Identity(_) => f.write_str("Subject::Identity(..)"),
        }
    }
}

/// A registration as asked, its fields parsed.
#[derive(Debug)]
pub struct Registration {
    pub subject: Subject,
    /// Required with an IdMR; with identity fields, taken from them (and must agree if given).
    pub sex: Option<Sex>,
    /// Likewise: required with an IdMR, else taken from the birth date.
    pub birth_year_month: Option<YearMonth>,
    pub region: Option<RegionCode>,
    pub objects_to_reuse: bool,
    pub diagnoses: Vec<Diagnosis>,
}

/// The patient record a registration makes: its pseudonym, sex and birth month checked for
/// consistency, identity names checked to be usable. Descriptions never repeat what was sent.
pub fn patient(r: Registration, key: &PseudonymKey) -> Result<Patient, DomainError> {
    let mut v = Violations::new();
    let (pseudonym, sex, birth_year_month) = match &r.subject {
        Subject::IdMr(idmr) => {
            if r.sex.is_none() {
                v.push("sex", "REQUIRED", "is required when registering with an IdMR");
            }
            if r.birth_year_month.is_none() {
                v.push(
                    "birth_year_month",
                    "REQUIRED",
                    "is required when registering with an IdMR",
                );
            }
            (Pseudonym::idmr(idmr), r.sex, r.birth_year_month)
        }
        Subject::Identity(identity) => {
            if r.sex.is_some_and(|given| given != identity.sex) {
                v.push("sex", "MISMATCH", "must agree with identity.sex");
            }
            if r.birth_year_month
                .is_some_and(|given| given != YearMonth::of(identity.birth_date))
            {
                v.push("birth_year_month", "MISMATCH", "must agree with identity.birth_date");
            }
            let (last_ok, first_ok) = identity.names_are_usable();
            if !last_ok {
                v.push("identity.last_name", "BAD_FORMAT", "must contain letters");
            }
            if !first_ok {
                v.push("identity.first_name", "BAD_FORMAT", "must contain letters");
            }
            (
                pseudonym::pseudonymise(key, identity),
                Some(identity.sex),
                Some(YearMonth::of(identity.birth_date)),
            )
        }
    };
    v.into_result()?;
    let (Some(sex), Some(birth_year_month)) = (sex, birth_year_month) else {
        unreachable!("checked above");
    };
    Ok(Patient {
        pseudonym,
        sex,
        birth_year_month,
        region: r.region,
        vital_status: VitalStatus::Alive,
        objects_to_reuse: r.objects_to_reuse,
        diagnoses: r.diagnoses,
    })
}

/// The follow-up schedule of a cohort: `None` takes the framework's; else 1 to 24 months.
pub fn check_follow_up_months(months: Option<u32>) -> Result<(), DomainError> {
    match months {
        Some(m) if !(1..=24).contains(&m) => {
            let mut v = Violations::new();
            v.push(
                "follow_up_months",
                "OUT_OF_RANGE",
                "must be between 1 and 24 (0 for the framework's schedule)",
            );
            Err(DomainError::Invalid(v))
        }
        _ => Ok(()),
    }
}

/// A weight measured at a visit: more than 0 and at most 400 kg.
pub fn check_weight(weight_kg: Option<f64>) -> Result<(), DomainError> {
    match weight_kg {
        Some(w) if !(w.is_finite() && w > 0.0 && w <= 400.0) => {
            let mut v = Violations::new();
            v.push(
                "weight_kg",
                "OUT_OF_RANGE",
                "must be between 0 and 400 kg (0 when not measured)",
            );
            Err(DomainError::Invalid(v))
        }
        _ => Ok(()),
    }
}

/// A declaration to pharmacovigilance has a date and a reference, both or neither (a new
/// adverse event may have a date alone: declared, reference to come).
pub fn check_pv_declaration(date_given: bool, reference_given: bool, new_event: bool) -> Result<(), DomainError> {
    let mut v = Violations::new();
    if reference_given && !date_given {
        v.push("pv_declaration_date", "REQUIRED", "is required with pv_reference");
    }
    if !new_event && date_given && !reference_given {
        v.push("pv_reference", "REQUIRED", "is required with pv_declaration_date");
    }
    v.into_result()
}

/// A framework as declared: a pathway that has frameworks, a known authority, a validity that
/// does not end before it starts, a follow-up schedule of at most 24 months.
pub fn check_framework(f: &crate::model::Framework) -> Result<(), DomainError> {
    let mut v = Violations::new();
    if !f.pathway.needs_framework() {
        v.push(
            "pathway",
            "NOT_APPLICABLE",
            "frameworks exist for AAP_PRE, AAP_POST, CPC, ATU_COHORT, RTU and DIRECT only",
        );
    }
    if !matches!(f.authority.as_str(), "ANSM" | "HAS" | "MINISTERS") {
        v.push("authority", "UNKNOWN_CODE", "must be ANSM, HAS or MINISTERS");
    }
    if f.valid_to.is_some_and(|to| to < f.valid_from) {
        v.push("valid_to", "BEFORE_START", "must not be before valid_from");
    }
    if f.follow_up_months > 24 {
        v.push("follow_up_months", "OUT_OF_RANGE", "must be between 0 and 24");
    }
    v.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::new(vec![7; 32]).expect("key")
    }

    fn registration(subject: Subject) -> Registration {
        Registration {
            subject,
            sex: None,
            birth_year_month: None,
            region: None,
            objects_to_reuse: false,
            diagnoses: Vec::new(),
        }
    }

    fn fields(e: DomainError) -> Vec<String> {
        match e {
            DomainError::Invalid(v) => v.as_slice().iter().map(|f| f.field.clone()).collect(),
            other => panic!("expected violations, got {other}"),
        }
    }

    fn identity(last: &str, sex: Sex) -> Identity {
        Identity {
            last_name: last.into(),
            first_name: "Jeanne".into(),
            birth_date: crate::model::parse_date("2012-03-04").expect("date"),
            sex,
        }
    }

    #[test]
    fn an_idmr_registration_needs_sex_and_birth_month() {
        let idmr = IdMr::parse("12345678901234567890").expect("idmr");
        let e = patient(registration(Subject::IdMr(idmr.clone())), &key()).unwrap_err();
        assert_eq!(fields(e), ["sex", "birth_year_month"]);
        let mut r = registration(Subject::IdMr(idmr));
        r.sex = Some(Sex::Female);
        r.birth_year_month = Some(YearMonth::parse("2012-03").expect("month"));
        assert_eq!(patient(r, &key()).expect("patient").sex, Sex::Female);
    }

    #[test]
    fn identity_fields_are_checked_then_pseudonymised() {
        let mut r = registration(Subject::Identity(identity("--", Sex::Male)));
        r.sex = Some(Sex::Female);
        r.birth_year_month = Some(YearMonth::parse("2011-03").expect("month"));
        let e = patient(r, &key()).unwrap_err();
        assert_eq!(fields(e), ["sex", "birth_year_month", "identity.last_name"]);
        let p = patient(registration(Subject::Identity(identity("Martin", Sex::Male))), &key()).expect("patient");
        assert_eq!(p.birth_year_month, YearMonth::parse("2012-03").expect("month"));
        assert_ne!(p.pseudonym.value, "Martin");
        assert!(!format!("{:?}", Subject::Identity(identity("Martin", Sex::Male))).contains("Martin"));
    }

    #[test]
    fn bounds_of_schedules_weights_and_declarations() {
        assert!(check_follow_up_months(None).is_ok());
        assert!(check_follow_up_months(Some(24)).is_ok());
        assert!(check_follow_up_months(Some(25)).is_err());
        assert!(check_weight(Some(400.0)).is_ok());
        assert!(check_weight(Some(f64::NAN)).is_err());
        assert!(check_weight(Some(-1.0)).is_err());
        assert!(check_pv_declaration(true, false, true).is_ok());
        assert!(check_pv_declaration(true, false, false).is_err());
        assert!(check_pv_declaration(false, true, true).is_err());
    }
}
