//! Labels of coded values (`pathway.AAC`, `episode_status.ONGOING`), from the message files.

use observatory_domain::model::{
    Adherence, AeOutcome, AuthorisationStatus, Causality, CentreType, CohortStatus, DiagnosisStatus,
    EfficacyAssessment, EpisodeStatus, FrameworkStatus, OffLabelAxis, Pathway, RcpLevel, RcpOpinion, RecordKind, Route,
    Sex, StopReason, VitalStatus,
};

use crate::i18n::Lang;

/// Every coded value shown on a page, by the prefix of its labels: each must have a label in
/// both message files (checked by a test).
pub static CODED: std::sync::LazyLock<Vec<(&'static str, Vec<&'static str>)>> = std::sync::LazyLock::new(|| {
    fn codes<T: Copy>(all: &[T], code: impl Fn(T) -> &'static str) -> Vec<&'static str> {
        all.iter().map(|x| code(*x)).collect()
    }
    vec![
        ("pathway", codes(Pathway::ALL, Pathway::code)),
        ("episode_status", codes(EpisodeStatus::ALL, EpisodeStatus::code)),
        (
            "authorisation_status",
            codes(AuthorisationStatus::ALL, AuthorisationStatus::code),
        ),
        ("stop_reason", codes(StopReason::ALL, StopReason::code)),
        ("sex", codes(Sex::ALL, Sex::code)),
        ("efficacy", codes(EfficacyAssessment::ALL, EfficacyAssessment::code)),
        ("adherence", codes(Adherence::ALL, Adherence::code)),
        ("ae_outcome", codes(AeOutcome::ALL, AeOutcome::code)),
        ("causality", codes(Causality::ALL, Causality::code)),
        ("rcp_opinion", codes(RcpOpinion::ALL, RcpOpinion::code)),
        ("rcp_level", codes(RcpLevel::ALL, RcpLevel::code)),
        (
            "seriousness",
            codes(observatory_domain::model::SeriousnessCriterion::ALL, |x| x.code()),
        ),
        (
            "drug_action",
            codes(observatory_domain::model::DrugAction::ALL, |x| x.code()),
        ),
        (
            "challenge",
            codes(observatory_domain::model::ChallengeResult::ALL, |x| x.code()),
        ),
        (
            "reporter",
            codes(observatory_domain::model::ReporterQualification::ALL, |x| x.code()),
        ),
        ("route", codes(Route::ALL, Route::code)),
        ("off_label_axis", codes(OffLabelAxis::ALL, OffLabelAxis::code)),
        ("vital_status", codes(VitalStatus::ALL, VitalStatus::code)),
        ("cohort_status", codes(CohortStatus::ALL, CohortStatus::code)),
        ("diagnosis_status", codes(DiagnosisStatus::ALL, DiagnosisStatus::code)),
        ("framework_status", codes(FrameworkStatus::ALL, FrameworkStatus::code)),
        ("centre_type", codes(CentreType::ALL, CentreType::code)),
        ("record_kind", codes(RecordKind::ALL, RecordKind::code)),
        (
            "role",
            vec!["prescriber", "data_manager", "analyst", "partner", "admin"],
        ),
        ("form_status", vec!["DONE", "DUE", "LATE", "NOT_YET", "NOT_EXPECTED"]),
        (
            "run_status",
            vec!["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "INTERRUPTED"],
        ),
        (
            "factor_level_class",
            codes(observatory_domain::model::FactorLevelClass::ALL, |x| x.code()),
        ),
        (
            "inhibitor_status",
            codes(observatory_domain::model::InhibitorStatus::ALL, |x| x.code()),
        ),
        ("age_kind", codes(observatory_domain::model::AgeKind::ALL, |x| x.code())),
        (
            "consent_status",
            codes(observatory_domain::model::ConsentStatus::ALL, |x| x.code()),
        ),
        (
            "framework_warning",
            codes(&observatory_domain::worklist::FrameworkWarning::ALL, |w| w.code()),
        ),
        (
            "entry_kind",
            codes(&observatory_domain::catalogue::EntryKind::ALL, |k| k.code()),
        ),
        (
            "reference_source",
            codes(&observatory_domain::catalogue::Source::ALL, |s| s.code()),
        ),
    ]
});

/// The label of `code` under `prefix` in `lang`.
pub fn label(lang: Lang, prefix: &str, code: &str) -> String {
    lang.t(&format!("{prefix}.{code}")).to_owned()
}

/// `(code, label)` of every value of a coded enum, for a select.
pub fn options(lang: Lang, prefix: &'static str) -> Vec<(String, String)> {
    CODED
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, codes)| {
            codes
                .iter()
                .map(|c| ((*c).to_owned(), label(lang, prefix, c)))
                .collect()
        })
        .unwrap_or_default()
}
