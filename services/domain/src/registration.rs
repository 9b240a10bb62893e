//! The rules of a registration and of the other inputs whose checks depend on more than one
//! field: what every way in (gRPC, the import, the web front) gets checked against, once.

use crate::codes::{IdMr, RegionCode};
use crate::error::{CodeError, DomainError, Violations};
use crate::model::{
    AgeAt, AgeKind, CommonDataElements, Diagnosis, DiagnosisStatus, HAEMOPHILIA, MAX_GENES, MAX_VARIANTS, Patient,
    Pseudonym, Sex, VitalStatus, YearMonth,
};
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
    pub cde: CommonDataElements,
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
        cde: r.cde,
        rcp_reviews: Vec::new(),
        merged_into: None,
        merged_from: Vec::new(),
    })
}

/// An HGNC gene symbol: a letter, then letters, digits and hyphens, 20 characters at most.
fn gene_symbol_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 20
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// An HGVS variant description: 3 to 200 printable characters without spaces, holding a `.`
/// (`c.6046C>T`, `NM_000132.4:c.6046C>T`, `p.(Arg2016Trp)`).
fn hgvs_ok(s: &str) -> bool {
    (3..=200).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_graphic()) && s.contains('.')
}

fn check_age(v: &mut Violations, field: &str, age: Option<&AgeAt>, months_lived: Option<i64>) {
    let Some(age) = age else { return };
    match (age.kind, age.months) {
        (AgeKind::Months, None) => v.push(format!("{field}.months"), "REQUIRED", "is required when kind is MONTHS"),
        (AgeKind::Months, Some(m)) if m > 1440 => {
            v.push(format!("{field}.months"), "OUT_OF_RANGE", "must be between 0 and 1440")
        }
        (AgeKind::Months, Some(m)) if months_lived.is_some_and(|lived| i64::from(m) > lived) => v.push(
            format!("{field}.months"),
            "AFTER_TODAY",
            "is more than the patient's age today (from the birth month)",
        ),
        (_, Some(_)) if age.kind != AgeKind::Months => v.push(
            format!("{field}.months"),
            "NOT_APPLICABLE",
            "is given only when kind is MONTHS",
        ),
        _ => {}
    }
}

/// The rules of a patient record that hold across its fields, whatever wrote it (a
/// registration or a correction): ages within the patient's life, an undiagnosed case without
/// a confirmed diagnosis, genes and variants in their nomenclatures, a severity class only for
/// a disease that has one.
pub fn check_patient(p: &Patient, today: chrono::NaiveDate) -> Result<(), DomainError> {
    use chrono::Datelike;
    let mut v = Violations::new();
    let months_lived = p
        .birth_year_month
        .first_day()
        .map(|born| i64::from(today.year() - born.year()) * 12 + i64::from(today.month()) - i64::from(born.month()));
    if months_lived.is_some_and(|m| m < 0) {
        v.push("birth_year_month", "IN_FUTURE", "must not be after the current month");
    }
    let cde = &p.cde;
    check_age(&mut v, "cde.age_at_onset", cde.age_at_onset.as_ref(), months_lived);
    check_age(
        &mut v,
        "cde.age_at_diagnosis",
        cde.age_at_diagnosis.as_ref(),
        months_lived,
    );
    if cde.undiagnosed && p.diagnoses.iter().any(|d| d.status == DiagnosisStatus::Confirmed) {
        v.push(
            "cde.undiagnosed",
            "CONTRADICTS",
            "a patient with a confirmed diagnosis is not an undiagnosed case",
        );
    }
    if cde.genotype.len() > MAX_GENES {
        v.push(
            "cde.genotype",
            "TOO_MANY",
            format!("must hold at most {MAX_GENES} genes"),
        );
    } else {
        for (i, g) in cde.genotype.iter().enumerate() {
            if !gene_symbol_ok(&g.gene) {
                v.push(
                    format!("cde.genotype[{i}].gene"),
                    "BAD_FORMAT",
                    "must be an HGNC gene symbol (a letter, then letters, digits or hyphens; at most 20)",
                );
            }
            if g.variants.len() > MAX_VARIANTS {
                v.push(
                    format!("cde.genotype[{i}].variants"),
                    "TOO_MANY",
                    format!("must hold at most {MAX_VARIANTS} variants"),
                );
                continue;
            }
            for (j, variant) in g.variants.iter().enumerate() {
                if !hgvs_ok(variant) {
                    v.push(
                        format!("cde.genotype[{i}].variants[{j}]"),
                        "BAD_FORMAT",
                        "must be an HGVS description such as c.6046C>T (3 to 200 characters, no spaces)",
                    );
                }
            }
        }
    }
    for (i, d) in p.diagnoses.iter().enumerate() {
        if !d.severity.is_empty() && !HAEMOPHILIA.contains(&d.orpha_code.as_str()) {
            let field = if d.severity.factor_level_class.is_some() {
                "factor_level_class"
            } else {
                "inhibitor_status"
            };
            v.push(
                format!("diagnoses[{i}].{field}"),
                "NOT_APPLICABLE",
                "is classed for haemophilia A and B (ORPHA:98878, ORPHA:98879) only",
            );
        }
    }
    v.into_result()
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

/// Longest period of onsets one export of pharmacovigilance cases covers.
pub const MAX_CASE_PERIOD_DAYS: i64 = 3 * 366;

/// The end of a period of onsets, against its start: not before it, at most
/// [`MAX_CASE_PERIOD_DAYS`] after it.
pub fn check_case_period(from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<(), CodeError> {
    if to < from {
        return Err(CodeError::new("BEFORE_FROM", "must not be before from"));
    }
    if (to - from).num_days() > MAX_CASE_PERIOD_DAYS {
        return Err(CodeError::new(
            "PERIOD_TOO_LONG",
            format!("a period covers at most {MAX_CASE_PERIOD_DAYS} days: export it in parts"),
        ));
    }
    Ok(())
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
    if f.synthesis_months > crate::corrections::MAX_SYNTHESIS_MONTHS {
        v.push(
            "synthesis_months",
            "OUT_OF_RANGE",
            "must be between 0 (no periodic synthesis) and 36",
        );
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
            cde: CommonDataElements::default(),
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

    fn haemophilia_patient() -> Patient {
        let mut r = registration(Subject::IdMr(IdMr::parse("12345678901234567890").expect("idmr")));
        r.sex = Some(Sex::Male);
        r.birth_year_month = Some(YearMonth::parse("2020-03").expect("month"));
        r.diagnoses = vec![Diagnosis {
            orpha_code: crate::codes::OrphaCode::parse("98878").expect("orpha"),
            icd10: None,
            status: DiagnosisStatus::Confirmed,
            diagnosis_date: None,
            severity: crate::model::Severity {
                factor_level_class: Some(crate::model::FactorLevelClass::Severe),
                inhibitor_status: Some(crate::model::InhibitorStatus::Never),
            },
        }];
        patient(r, &key()).expect("patient")
    }

    fn months(m: u16) -> Option<AgeAt> {
        Some(AgeAt {
            kind: AgeKind::Months,
            months: Some(m),
        })
    }

    #[test]
    fn common_data_elements_hold_across_fields() {
        let today = crate::model::parse_date("2026-12-02").expect("today");
        let mut p = haemophilia_patient();
        p.cde = CommonDataElements {
            age_at_onset: months(8),
            age_at_diagnosis: Some(AgeAt {
                kind: AgeKind::Antenatal,
                months: None,
            }),
            undiagnosed: false,
            genotype: vec![crate::model::Genotype {
                gene: "F8".into(),
                variants: vec!["NM_000132.4:c.6046C>T".into()],
            }],
            contact_for_research: Some(crate::model::ConsentStatus::Given),
            reuse_consent: None,
        };
        check_patient(&p, today).expect("a plausible record");

        let mut bad = p.clone();
        // Born in 2020-03: at most 81 months old in 2026-12.
        bad.cde.age_at_onset = months(82);
        bad.cde.age_at_diagnosis = Some(AgeAt {
            kind: AgeKind::AtBirth,
            months: Some(3),
        });
        bad.cde.undiagnosed = true;
        bad.cde.genotype[0].gene = "F 8".into();
        bad.cde.genotype[0].variants.push("no dot".into());
        assert_eq!(
            fields(check_patient(&bad, today).unwrap_err()),
            [
                "cde.age_at_onset.months",
                "cde.age_at_diagnosis.months",
                "cde.undiagnosed",
                "cde.genotype[0].gene",
                "cde.genotype[0].variants[1]",
            ]
        );
        let mut at_limit = p.clone();
        at_limit.cde.age_at_onset = months(81);
        check_patient(&at_limit, today).expect("the current month of age");
        let mut missing = p.clone();
        missing.cde.age_at_onset = Some(AgeAt {
            kind: AgeKind::Months,
            months: None,
        });
        assert_eq!(
            fields(check_patient(&missing, today).unwrap_err()),
            ["cde.age_at_onset.months"]
        );
    }

    #[test]
    fn a_severity_class_is_for_haemophilia_only() {
        let today = crate::model::parse_date("2026-12-02").expect("today");
        let mut p = haemophilia_patient();
        check_patient(&p, today).expect("haemophilia A has a class");
        p.diagnoses[0].orpha_code = crate::codes::OrphaCode::parse("70").expect("orpha");
        assert_eq!(
            fields(check_patient(&p, today).unwrap_err()),
            ["diagnoses[0].factor_level_class"]
        );
        p.diagnoses[0].severity.factor_level_class = None;
        assert_eq!(
            fields(check_patient(&p, today).unwrap_err()),
            ["diagnoses[0].inhibitor_status"]
        );
        let mut future = haemophilia_patient();
        future.birth_year_month = YearMonth::parse("2027-01").expect("month");
        assert_eq!(fields(check_patient(&future, today).unwrap_err()), ["birth_year_month"]);
    }
}
