//! Wire types stop here: prost messages in, domain types out (collecting every field violation
//! with its request path), and domain versions back to prost messages.

use chrono::NaiveDate;
use observatory_domain::{
    CodeError, Violations,
    codes::{self, Atc, Filiere, Finess, Icd10, MeasureCode, MeddraCode, OrphaCode, RegionCode, Rpps},
    model::{self as m, RecordId, parse_date},
};
use observatory_proto::v1 as pb;
use observatory_store::{Meta, Record, Versioned};

/// Maps a prost enum number to the domain enum with the same name (minus the prefix): zero is
/// REQUIRED, a number the contract does not define is UNKNOWN_ENUM_VALUE.
macro_rules! enum_in {
    ($raw:expr, $pb:ty, $prefix:literal, $domain:ty) => {{
        let raw: i32 = $raw;
        match <$pb>::try_from(raw) {
            Ok(_) if raw == 0 => Err(observatory_domain::CodeError::required()),
            Ok(p) => p
                .as_str_name()
                .strip_prefix($prefix)
                .and_then(<$domain>::from_code)
                .ok_or_else(|| observatory_domain::CodeError::new("UNKNOWN_ENUM_VALUE", "is not a supported value")),
            Err(_) => Err(observatory_domain::CodeError::new(
                "UNKNOWN_ENUM_VALUE",
                format!("{raw} is not a value of {}", stringify!($pb)),
            )),
        }
    }};
}

/// Domain enum to prost enum number, by name.
macro_rules! enum_out {
    ($value:expr, $pb:ty, $prefix:literal) => {{
        <$pb>::from_str_name(&format!("{}{}", $prefix, $value.code()))
            .map(i32::from)
            .unwrap_or(0)
    }};
}

pub(crate) use enum_in;
#[allow(unused_imports)]
pub(crate) use enum_out;

/// An optional enum: zero means absent.
macro_rules! enum_in_opt {
    ($raw:expr, $pb:ty, $prefix:literal, $domain:ty) => {{
        let raw: i32 = $raw;
        if raw == 0 {
            Ok(None)
        } else {
            enum_in!(raw, $pb, $prefix, $domain).map(Some)
        }
    }};
}
pub(crate) use enum_in_opt;

/// Returns INVALID_ARGUMENT with every violation collected so far, or binds each parsed
/// `Option` to its value.
macro_rules! all_some {
    ($v:expr; $($x:ident),+ $(,)?) => {
        if !$v.is_empty() {
            return Err($crate::error::invalid(&$v));
        }
        #[allow(unused_parens)]
        let ($(Some($x)),+) = ($($x),+) else {
            return Err(tonic::Status::internal("a parsed field went missing"));
        };
    };
}
pub(crate) use all_some;

/// Adds the violations of a domain rule to those of parsing, so that a request learns every
/// fault at once (the operation checks the rule again, for every way in).
pub fn rule(v: &mut Violations, checked: Result<(), observatory_domain::DomainError>) {
    if let Err(observatory_domain::DomainError::Invalid(broken)) = checked {
        for f in broken.as_slice() {
            v.push(f.field.clone(), f.reason, f.description.clone());
        }
    }
}

pub fn opt_str(raw: &str) -> Option<&str> {
    let t = raw.trim();
    (!t.is_empty()).then_some(t)
}

/// Parses an optional value: empty is `None`.
pub fn optional<T>(raw: &str, parse: impl FnOnce(&str) -> Result<T, CodeError>) -> Result<Option<T>, CodeError> {
    opt_str(raw).map(parse).transpose()
}

pub fn date(raw: &str) -> Result<NaiveDate, CodeError> {
    parse_date(raw)
}

pub fn id(raw: &str) -> Result<RecordId, CodeError> {
    RecordId::parse(raw)
}

pub fn text(max: usize) -> impl Fn(&str) -> Result<String, CodeError> {
    move |raw| codes::bounded_text(raw, max)
}

/// Idempotency keys: 1..=128 printable ASCII characters.
pub fn idempotency_key(raw: &str) -> Result<String, CodeError> {
    if raw.is_empty() {
        return Err(CodeError::new(
            "REQUIRED",
            "is required: choose a unique key per logical operation and reuse it on retries",
        ));
    }
    if raw.len() > 128 || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(CodeError::new(
            "BAD_FORMAT",
            "must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(raw.to_owned())
}

pub fn version(raw: i64) -> Result<i64, CodeError> {
    if raw < 1 {
        return Err(CodeError::new(
            "REQUIRED",
            "is required: the version of the record last read (>= 1)",
        ));
    }
    Ok(raw)
}

pub fn page(v: &mut Violations, p: Option<&pb::PageRequest>) -> observatory_store::PageRequest {
    let (size, token) = p
        .map(|p| (p.page_size, p.page_token.clone()))
        .unwrap_or((0, String::new()));
    let size = match size {
        0 => 50,
        1..=500 => size.unsigned_abs(),
        _ => {
            v.push(
                "page.page_size",
                "OUT_OF_RANGE",
                "must be between 1 and 500 (0 for the default 50)",
            );
            50
        }
    };
    observatory_store::PageRequest {
        size,
        token: opt_str(&token).map(str::to_owned),
    }
}

pub fn orpha_list(v: &mut Violations, field: &str, raw: &[String]) -> Vec<OrphaCode> {
    if raw.is_empty() {
        v.push(field, "REQUIRED", "needs at least one ORPHA code");
    }
    if raw.len() > 50 {
        v.push(field, "TOO_MANY", "must hold at most 50 codes");
        return Vec::new();
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, code) in raw.iter().enumerate() {
        if let Some(c) = v.check(&format!("{field}[{i}]"), OrphaCode::parse(code)) {
            if out.contains(&c) {
                v.push(format!("{field}[{i}]"), "DUPLICATE", "appears twice");
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// A centre's filières: each a listed code (`field[i]`), the set one to 23 codes each once
/// (`field`, or `field[i]` for the one named twice).
pub fn filiere_list(v: &mut Violations, field: &str, raw: &[String]) -> Option<Vec<Filiere>> {
    if raw.len() > m::MAX_CENTRE_FILIERES {
        v.push(
            field,
            "TOO_MANY",
            format!("must hold at most {} filières", m::MAX_CENTRE_FILIERES),
        );
        return None;
    }
    let mut out: Vec<Filiere> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, code) in raw.iter().enumerate() {
        match v.check(&format!("{field}[{i}]"), Filiere::parse(code)) {
            Some(f) if out.contains(&f) => {
                v.push(format!("{field}[{i}]"), "DUPLICATE", "appears twice");
                ok = false;
            }
            Some(f) => out.push(f),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    v.check(field, m::filiere_set(out))
}

pub fn rcp(v: &mut Violations, field: &str, r: Option<&pb::Rcp>) -> Option<m::Rcp> {
    let r = r?;
    let date = v.check(&format!("{field}.date"), date(&r.date));
    let opinion = v.check(
        &format!("{field}.opinion"),
        enum_in!(r.opinion, pb::RcpOpinion, "RCP_OPINION_", m::RcpOpinion),
    );
    let level = v.check(
        &format!("{field}.level"),
        enum_in_opt!(r.level, pb::RcpLevel, "RCP_LEVEL_", m::RcpLevel),
    );
    Some(m::Rcp {
        date: date?,
        opinion: opinion?,
        level: level?,
    })
}

pub fn off_label(
    v: &mut Violations,
    field: &str,
    o: Option<&pb::OffLabelJustification>,
) -> Option<m::OffLabelJustification> {
    let o = o?;
    let mut axes = Vec::new();
    if o.axes.is_empty() {
        v.push(format!("{field}.axes"), "REQUIRED", "needs at least one deviating axis");
    }
    if o.axes.len() > m::OffLabelAxis::ALL.len() {
        v.push(
            format!("{field}.axes"),
            "TOO_MANY",
            format!("must hold at most {} axes, each once", m::OffLabelAxis::ALL.len()),
        );
        return None;
    }
    for (i, raw) in o.axes.iter().enumerate() {
        let f = format!("{field}.axes[{i}]");
        if let Some(a) = v.check(&f, enum_in!(*raw, pb::OffLabelAxis, "OFF_LABEL_AXIS_", m::OffLabelAxis)) {
            if axes.contains(&a) {
                v.push(f, "DUPLICATE", "appears twice");
            } else {
                axes.push(a);
            }
        }
    }
    let evidence = v.check(
        &format!("{field}.evidence_reference"),
        codes::bounded_text(&o.evidence_reference, 500),
    );
    Some(m::OffLabelJustification {
        axes,
        evidence_reference: evidence?,
    })
}

pub fn dosage(v: &mut Violations, field: &str, d: Option<&pb::Dosage>) -> Option<m::Dosage> {
    let d = d?;
    // Gene therapies are dosed in vector genomes per kilogram (onasemnogene: 1.1e14 vg/kg).
    if !(d.dose.is_finite() && d.dose > 0.0 && d.dose < 1e16) {
        v.push(
            format!("{field}.dose"),
            "OUT_OF_RANGE",
            "must be a positive number below 1e16",
        );
    }
    let unit = v.check(&format!("{field}.unit"), codes::bounded_text(&d.unit, 32));
    let frequency = v.check(&format!("{field}.frequency"), codes::bounded_text(&d.frequency, 64));
    let route = v.check(
        &format!("{field}.route"),
        enum_in!(d.route, pb::Route, "ROUTE_", m::Route),
    );
    Some(m::Dosage {
        dose: d.dose,
        unit: unit?,
        frequency: frequency?,
        route: route?,
    })
}

/// The E2B case fields of an adverse event; violations under `field`. Absent: no details.
pub fn case_details(v: &mut Violations, field: &str, d: Option<&pb::CaseDetails>) -> m::CaseDetails {
    let Some(d) = d else {
        return m::CaseDetails::default();
    };
    let f = |name: &str| format!("{field}.{name}");
    let mut seriousness = Vec::with_capacity(d.seriousness.len());
    for (i, raw) in d.seriousness.iter().enumerate() {
        if let Some(c) = v.check(
            &f(&format!("seriousness[{i}]")),
            enum_in!(
                *raw,
                pb::SeriousnessCriterion,
                "SERIOUSNESS_CRITERION_",
                m::SeriousnessCriterion
            ),
        ) {
            seriousness.push(c);
        }
    }
    let opt_text =
        |v: &mut Violations, name: &str, raw: &str, max: usize| v.check(&f(name), optional(raw, text(max))).flatten();
    m::CaseDetails {
        seriousness,
        end_date: v.check(&f("end_date"), optional(&d.end_date, date)).flatten(),
        meddra_llt: v
            .check(&f("meddra_llt_code"), optional(&d.meddra_llt_code, meddra))
            .flatten(),
        action_taken: v
            .check(
                &f("action_taken"),
                enum_in_opt!(d.action_taken, pb::DrugAction, "DRUG_ACTION_", m::DrugAction),
            )
            .flatten(),
        dechallenge: v
            .check(
                &f("dechallenge"),
                enum_in_opt!(
                    d.dechallenge,
                    pb::ChallengeResult,
                    "CHALLENGE_RESULT_",
                    m::ChallengeResult
                ),
            )
            .flatten(),
        rechallenge: v
            .check(
                &f("rechallenge"),
                enum_in_opt!(
                    d.rechallenge,
                    pb::ChallengeResult,
                    "CHALLENGE_RESULT_",
                    m::ChallengeResult
                ),
            )
            .flatten(),
        suspect_dosage: dosage(v, &f("suspect_dosage"), d.suspect_dosage.as_ref()),
        batch: opt_text(v, "batch", &d.batch, 35),
        reporter: v
            .check(
                &f("reporter"),
                enum_in_opt!(
                    d.reporter,
                    pb::ReporterQualification,
                    "REPORTER_QUALIFICATION_",
                    m::ReporterQualification
                ),
            )
            .flatten(),
        narrative: opt_text(v, "narrative", &d.narrative, 2000),
        off_label_use: d.off_label_use,
    }
}

fn case_details_out(x: &m::CaseDetails) -> Option<pb::CaseDetails> {
    if x.is_empty() {
        return None;
    }
    Some(pb::CaseDetails {
        seriousness: x
            .seriousness
            .iter()
            .map(|c| enum_out!(*c, pb::SeriousnessCriterion, "SERIOUSNESS_CRITERION_"))
            .collect(),
        end_date: d(x.end_date),
        meddra_llt_code: s(x.meddra_llt.as_ref()),
        action_taken: x
            .action_taken
            .map_or(0, |a| enum_out!(a, pb::DrugAction, "DRUG_ACTION_")),
        dechallenge: x
            .dechallenge
            .map_or(0, |c| enum_out!(c, pb::ChallengeResult, "CHALLENGE_RESULT_")),
        rechallenge: x
            .rechallenge
            .map_or(0, |c| enum_out!(c, pb::ChallengeResult, "CHALLENGE_RESULT_")),
        suspect_dosage: x.suspect_dosage.as_ref().map(dosage_out),
        batch: x.batch.clone().unwrap_or_default(),
        reporter: x.reporter.map_or(0, |r| {
            enum_out!(r, pb::ReporterQualification, "REPORTER_QUALIFICATION_")
        }),
        narrative: x.narrative.clone().unwrap_or_default(),
        off_label_use: x.off_label_use,
    })
}

fn dosage_out(x: &m::Dosage) -> pb::Dosage {
    pb::Dosage {
        dose: x.dose,
        unit: x.unit.clone(),
        frequency: x.frequency.clone(),
        route: enum_out!(x.route, pb::Route, "ROUTE_"),
    }
}

pub fn diagnoses(v: &mut Violations, raw: &[pb::Diagnosis]) -> Vec<m::Diagnosis> {
    if raw.len() > 20 {
        v.push("diagnoses", "TOO_MANY", "must hold at most 20 diagnoses");
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let f = |name: &str| format!("diagnoses[{i}].{name}");
        let orpha = v.check(&f("orpha_code"), OrphaCode::parse(&d.orpha_code));
        let icd10 = v.check(&f("icd10"), optional(&d.icd10, Icd10::parse));
        let status = v.check(
            &f("status"),
            enum_in!(d.status, pb::DiagnosisStatus, "DIAGNOSIS_STATUS_", m::DiagnosisStatus),
        );
        let when = v.check(&f("diagnosis_date"), optional(&d.diagnosis_date, date));
        let factor = v.check(
            &f("factor_level_class"),
            enum_in_opt!(
                d.factor_level_class,
                pb::FactorLevelClass,
                "FACTOR_LEVEL_CLASS_",
                m::FactorLevelClass
            ),
        );
        let inhibitor = v.check(
            &f("inhibitor_status"),
            enum_in_opt!(
                d.inhibitor_status,
                pb::InhibitorStatus,
                "INHIBITOR_STATUS_",
                m::InhibitorStatus
            ),
        );
        if let (Some(orpha_code), Some(icd10), Some(status), Some(diagnosis_date), Some(factor), Some(inhibitor)) =
            (orpha, icd10, status, when, factor, inhibitor)
        {
            out.push(m::Diagnosis {
                orpha_code,
                icd10,
                status,
                diagnosis_date,
                severity: m::Severity {
                    factor_level_class: factor,
                    inhibitor_status: inhibitor,
                },
            });
        }
    }
    out
}

fn age_at(v: &mut Violations, field: &str, raw: Option<&pb::AgeAt>) -> Option<m::AgeAt> {
    let raw = raw?;
    let kind = v.check(
        &format!("{field}.kind"),
        enum_in!(raw.kind, pb::AgeKind, "AGE_KIND_", m::AgeKind),
    )?;
    let months = match u16::try_from(raw.months) {
        Ok(m) => m,
        Err(_) => {
            v.push(format!("{field}.months"), "OUT_OF_RANGE", "must be between 0 and 1440");
            return None;
        }
    };
    // 0 months is an age too, but only of the MONTHS kind.
    let months = (kind == m::AgeKind::Months)
        .then_some(months)
        .or((months > 0).then_some(months));
    Some(m::AgeAt { kind, months })
}

/// The common data elements of a registration or correction, their counts bounded before any
/// copy; the rules across fields are the domain's (`registration::check_patient`).
pub fn cde(v: &mut Violations, field: &str, raw: Option<&pb::CommonDataElements>) -> m::CommonDataElements {
    let Some(raw) = raw else {
        return m::CommonDataElements::default();
    };
    let genotype = if raw.genotype.len() > m::MAX_GENES {
        v.push(
            format!("{field}.genotype"),
            "TOO_MANY",
            format!("must hold at most {} genes", m::MAX_GENES),
        );
        Vec::new()
    } else {
        raw.genotype
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                if g.variants.len() > m::MAX_VARIANTS {
                    v.push(
                        format!("{field}.genotype[{i}].variants"),
                        "TOO_MANY",
                        format!("must hold at most {} variants", m::MAX_VARIANTS),
                    );
                    return None;
                }
                let long = |s: &String| s.len() > 200;
                if long(&g.gene) || g.variants.iter().any(long) {
                    v.push(
                        format!("{field}.genotype[{i}]"),
                        "TOO_LONG",
                        "gene and variants hold at most 200 characters",
                    );
                    return None;
                }
                Some(m::Genotype {
                    gene: g.gene.trim().to_owned(),
                    variants: g.variants.iter().map(|x| x.trim().to_owned()).collect(),
                })
            })
            .collect()
    };
    let consent = |v: &mut Violations, name: &str, raw: i32| {
        v.check(
            &format!("{field}.{name}"),
            enum_in_opt!(raw, pb::ConsentStatus, "CONSENT_STATUS_", m::ConsentStatus),
        )
        .flatten()
    };
    m::CommonDataElements {
        age_at_onset: age_at(v, &format!("{field}.age_at_onset"), raw.age_at_onset.as_ref()),
        age_at_diagnosis: age_at(v, &format!("{field}.age_at_diagnosis"), raw.age_at_diagnosis.as_ref()),
        undiagnosed: raw.undiagnosed,
        genotype,
        contact_for_research: consent(v, "contact_for_research", raw.contact_for_research),
        reuse_consent: consent(v, "reuse_consent", raw.reuse_consent),
    }
}

fn age_out(a: Option<&m::AgeAt>) -> Option<pb::AgeAt> {
    a.map(|a| pb::AgeAt {
        kind: enum_out!(a.kind, pb::AgeKind, "AGE_KIND_"),
        months: a.months.map(u32::from).unwrap_or(0),
    })
}

pub fn cde_out(c: &m::CommonDataElements) -> Option<pb::CommonDataElements> {
    (!c.is_empty()).then(|| pb::CommonDataElements {
        age_at_onset: age_out(c.age_at_onset.as_ref()),
        age_at_diagnosis: age_out(c.age_at_diagnosis.as_ref()),
        undiagnosed: c.undiagnosed,
        genotype: c
            .genotype
            .iter()
            .map(|g| pb::Genotype {
                gene: g.gene.clone(),
                variants: g.variants.clone(),
            })
            .collect(),
        contact_for_research: c
            .contact_for_research
            .map_or(0, |x| enum_out!(x, pb::ConsentStatus, "CONSENT_STATUS_")),
        reuse_consent: c
            .reuse_consent
            .map_or(0, |x| enum_out!(x, pb::ConsentStatus, "CONSENT_STATUS_")),
    })
}

pub fn measures(v: &mut Violations, raw: &[pb::Measure]) -> Vec<m::Measure> {
    if raw.len() > 50 {
        v.push("measures", "TOO_MANY", "must hold at most 50 measures");
        return Vec::new();
    }
    let mut out: Vec<m::Measure> = Vec::new();
    for (i, x) in raw.iter().enumerate() {
        let field = format!("measures[{i}].code");
        if let Some(code) = v.check(&field, MeasureCode::parse(&x.code)) {
            if out.iter().any(|o| o.code == code) {
                v.push(field, "DUPLICATE", "appears twice");
            } else {
                out.push(m::Measure { code, value: x.value });
            }
        }
    }
    out
}

/// A protobuf timestamp as an instant: BAD_FORMAT when out of range.
pub fn instant(t: &prost_types::Timestamp) -> Result<chrono::DateTime<chrono::Utc>, CodeError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| CodeError::new("BAD_FORMAT", "is not a valid timestamp"))
}

// ---------------------------------------------------------------------------------------------
// Out

pub fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn meta(meta: &Meta) -> Option<pb::RecordMeta> {
    Some(pb::RecordMeta {
        id: meta.id.clone(),
        version: meta.version,
        recorded_at: Some(ts(meta.recorded_at)),
        recorded_by: meta.recorded_by.clone(),
        reason: meta.reason.clone(),
        request_id: meta.request_id.clone(),
    })
}

fn d(date: Option<NaiveDate>) -> String {
    date.map(|d| d.to_string()).unwrap_or_default()
}

fn s<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map(ToString::to_string).unwrap_or_default()
}

pub fn centre(v: &Versioned<m::Centre>) -> pb::Centre {
    let c = &v.record;
    pb::Centre {
        meta: meta(&v.meta),
        finess: c.finess.to_string(),
        name: c.name.clone(),
        r#type: enum_out!(c.centre_type, pb::CentreType, "CENTRE_TYPE_"),
        region_code: c.region.to_string(),
        filieres: c.filieres.iter().map(ToString::to_string).collect(),
    }
}

pub fn prescriber(v: &Versioned<m::Prescriber>) -> pb::Prescriber {
    let p = &v.record;
    pb::Prescriber {
        meta: meta(&v.meta),
        rpps: p.rpps.to_string(),
        specialty: p.specialty.clone(),
        centre_finess: p.centre_finess.to_string(),
    }
}

pub fn framework(v: &Versioned<m::Framework>) -> pb::Framework {
    let f = &v.record;
    pb::Framework {
        meta: meta(&v.meta),
        pathway: enum_out!(f.pathway, pb::Pathway, "PATHWAY_"),
        drug_atc: f.drug_atc.to_string(),
        indication: f.indication.clone(),
        orpha_codes: f.orpha_codes.iter().map(ToString::to_string).collect(),
        authority: f.authority.clone(),
        decision_reference: f.decision_reference.clone(),
        valid_from: f.valid_from.to_string(),
        valid_to: d(f.valid_to),
        status: enum_out!(f.status, pb::FrameworkStatus, "FRAMEWORK_STATUS_"),
        protocol_type: enum_out!(f.protocol_type, pb::ProtocolType, "PROTOCOL_TYPE_"),
        protocol_version: f.protocol_version.clone(),
        follow_up_months: i32::try_from(f.follow_up_months).unwrap_or(i32::MAX),
        source: f.source.clone(),
        confirmed: f.confirmed,
        requires_national_rcp: f.requires_national_rcp,
        synthesis_months: i32::try_from(f.synthesis_months).unwrap_or(i32::MAX),
    }
}

pub fn cohort(v: &Versioned<m::Cohort>) -> pb::Cohort {
    let c = &v.record;
    pb::Cohort {
        meta: meta(&v.meta),
        name: c.name.clone(),
        filiere: c.filiere.to_string(),
        pathway: enum_out!(c.pathway, pb::Pathway, "PATHWAY_"),
        drug_atc: c.drug_atc.to_string(),
        orpha_codes: c.orpha_codes.iter().map(ToString::to_string).collect(),
        framework_id: s(c.framework_id.as_ref()),
        follow_up_months: i32::try_from(c.follow_up_months).unwrap_or(i32::MAX),
        status: enum_out!(c.status, pb::CohortStatus, "COHORT_STATUS_"),
    }
}

pub fn patient(v: &Versioned<m::Patient>) -> pb::Patient {
    let p = &v.record;
    pb::Patient {
        meta: meta(&v.meta),
        pseudonym_kind: enum_out!(p.pseudonym.kind, pb::PseudonymKind, "PSEUDONYM_KIND_"),
        sex: enum_out!(p.sex, pb::Sex, "SEX_"),
        birth_year_month: p.birth_year_month.to_string(),
        region_code: s(p.region.as_ref()),
        vital_status: enum_out!(p.vital_status, pb::VitalStatus, "VITAL_STATUS_"),
        objects_to_reuse: p.objects_to_reuse,
        diagnoses: p
            .diagnoses
            .iter()
            .map(|x| pb::Diagnosis {
                orpha_code: x.orpha_code.to_string(),
                icd10: s(x.icd10.as_ref()),
                status: enum_out!(x.status, pb::DiagnosisStatus, "DIAGNOSIS_STATUS_"),
                diagnosis_date: d(x.diagnosis_date),
                factor_level_class: x
                    .severity
                    .factor_level_class
                    .map_or(0, |f| enum_out!(f, pb::FactorLevelClass, "FACTOR_LEVEL_CLASS_")),
                inhibitor_status: x
                    .severity
                    .inhibitor_status
                    .map_or(0, |i| enum_out!(i, pb::InhibitorStatus, "INHIBITOR_STATUS_")),
            })
            .collect(),
        cde: cde_out(&p.cde),
        rcp_reviews: p.rcp_reviews.iter().map(rcp_review).collect(),
        merged_into: s(p.merged_into.as_ref()),
        merged_from: p.merged_from.iter().map(ToString::to_string).collect(),
    }
}

pub fn rcp_review(r: &m::RcpReview) -> pb::RcpReview {
    pb::RcpReview {
        id: r.id.to_string(),
        level: enum_out!(r.level, pb::RcpLevel, "RCP_LEVEL_"),
        filiere: s(r.filiere.as_ref()),
        centre_finess: r.centre_finess.to_string(),
        drug_atc: r.drug_atc.to_string(),
        indication_orpha_code: s(r.indication.as_ref()),
        requested_date: r.requested_on.to_string(),
        meeting_date: d(r.meeting_date),
        opinion: r.opinion.map_or(0, |o| enum_out!(o, pb::RcpOpinion, "RCP_OPINION_")),
        conditions: r.conditions.clone().unwrap_or_default(),
    }
}

pub fn episode(v: &Versioned<m::Episode>) -> pb::Episode {
    let e = &v.record;
    pb::Episode {
        meta: meta(&v.meta),
        patient_id: e.patient_id.to_string(),
        cohort_id: e.cohort_id.to_string(),
        pathway: enum_out!(e.pathway, pb::Pathway, "PATHWAY_"),
        drug_atc: e.drug_atc.to_string(),
        indication_orpha_code: e.indication.to_string(),
        prescriber_rpps: e.prescriber_rpps.to_string(),
        centre_finess: e.centre_finess.to_string(),
        framework_id: s(e.framework_id.as_ref()),
        authorisation_id: s(e.authorisation_id.as_ref()),
        rcp: e.rcp.as_ref().map(|r| pb::Rcp {
            date: r.date.to_string(),
            opinion: enum_out!(r.opinion, pb::RcpOpinion, "RCP_OPINION_"),
            level: r.level.map_or(0, |l| enum_out!(l, pb::RcpLevel, "RCP_LEVEL_")),
        }),
        off_label: e.off_label.as_ref().map(|o| pb::OffLabelJustification {
            axes: o
                .axes
                .iter()
                .map(|a| enum_out!(a, pb::OffLabelAxis, "OFF_LABEL_AXIS_"))
                .collect(),
            evidence_reference: o.evidence_reference.clone(),
        }),
        dosage: e.dosage.as_ref().map(dosage_out),
        request_date: e.request_date.to_string(),
        decision_date: d(e.decision_date),
        first_administration_date: d(e.first_administration_date),
        status: enum_out!(e.status, pb::EpisodeStatus, "EPISODE_STATUS_"),
        end_date: d(e.end_date),
        stop_reason: e
            .stop_reason
            .map(|r| enum_out!(r, pb::StopReason, "STOP_REASON_"))
            .unwrap_or(0),
        previous_episode_id: s(e.previous_episode_id.as_ref()),
        transferred_to_finess: s(e.transferred_to.as_ref()),
        dispense_first: e.dispense_first,
        single_administration: e.single_administration,
        rcp_review_id: s(e.rcp_review_id.as_ref()),
    }
}

pub fn authorisation(v: &Versioned<m::Authorisation>) -> pb::Authorisation {
    let a = &v.record;
    pb::Authorisation {
        meta: meta(&v.meta),
        episode_id: a.episode_id.to_string(),
        patient_id: a.patient_id.to_string(),
        pathway: enum_out!(a.pathway, pb::Pathway, "PATHWAY_"),
        reference: a.reference.clone().unwrap_or_default(),
        status: enum_out!(a.status, pb::AuthorisationStatus, "AUTHORISATION_STATUS_"),
        submitted_date: a.submitted_date.to_string(),
        decision_date: d(a.decision_date),
        valid_from: d(a.valid_from),
        valid_to: d(a.valid_to),
        renewals: i32::try_from(a.renewals).unwrap_or(i32::MAX),
        suspended_from: a
            .suspended_from
            .map(|x| enum_out!(x, pb::AuthorisationStatus, "AUTHORISATION_STATUS_"))
            .unwrap_or(0),
    }
}

pub fn follow_up(v: &Versioned<m::FollowUp>) -> pb::FollowUp {
    let f = &v.record;
    pb::FollowUp {
        meta: meta(&v.meta),
        episode_id: f.episode_id.to_string(),
        visit_date: f.visit_date.to_string(),
        efficacy: enum_out!(f.efficacy, pb::EfficacyAssessment, "EFFICACY_ASSESSMENT_"),
        measures: f
            .measures
            .iter()
            .map(|x| pb::Measure {
                code: x.code.to_string(),
                value: x.value,
            })
            .collect(),
        weight_kg: f.weight_kg.unwrap_or(0.0),
        adherence: enum_out!(f.adherence, pb::Adherence, "ADHERENCE_"),
    }
}

pub fn adverse_event(v: &Versioned<m::AdverseEvent>) -> pb::AdverseEvent {
    let a = &v.record;
    pb::AdverseEvent {
        meta: meta(&v.meta),
        episode_id: a.episode_id.to_string(),
        onset_date: a.onset_date.to_string(),
        meddra_pt_code: a.meddra_pt.to_string(),
        meddra_soc_code: s(a.meddra_soc.as_ref()),
        serious: a.serious,
        outcome: enum_out!(a.outcome, pb::AeOutcome, "AE_OUTCOME_"),
        causality: enum_out!(a.causality, pb::Causality, "CAUSALITY_"),
        pv_declaration_date: d(a.pv_declaration_date),
        pv_reference: a.pv_reference.clone().unwrap_or_default(),
        pv_receiver: a.pv_receiver.clone().unwrap_or_default(),
        case_details: case_details_out(&a.details),
    }
}

pub fn history_entry(r: &Record) -> pb::HistoryEntry {
    use pb::history_entry::Record as H;
    let record = match r {
        Record::Centre(v) => H::Centre(centre(v)),
        Record::Prescriber(v) => H::Prescriber(prescriber(v)),
        Record::Framework(v) => H::Framework(framework(v)),
        Record::Cohort(v) => H::Cohort(cohort(v)),
        Record::Patient(v) => H::Patient(patient(v)),
        Record::Episode(v) => H::Episode(episode(v)),
        Record::Authorisation(v) => H::Authorisation(authorisation(v)),
        Record::FollowUp(v) => H::FollowUp(follow_up(v)),
        Record::AdverseEvent(v) => H::AdverseEvent(adverse_event(v)),
    };
    pb::HistoryEntry { record: Some(record) }
}

// Parsers re-exported for the services, so every field is parsed the same way.
pub use codes::IdMr;
/// An ATC code by format; whether the catalogue in force lists it is the application's check.
pub fn atc(raw: &str) -> Result<Atc, CodeError> {
    Atc::parse(raw)
}
pub fn finess(raw: &str) -> Result<Finess, CodeError> {
    Finess::parse(raw)
}
pub fn rpps(raw: &str) -> Result<Rpps, CodeError> {
    Rpps::parse(raw)
}
pub fn region(raw: &str) -> Result<RegionCode, CodeError> {
    RegionCode::parse(raw)
}
pub fn filiere(raw: &str) -> Result<Filiere, CodeError> {
    Filiere::parse(raw)
}
pub fn meddra(raw: &str) -> Result<MeddraCode, CodeError> {
    MeddraCode::parse(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every domain value has a wire value of the same name and back.
    #[test]
    fn every_domain_enum_value_round_trips_through_the_wire() {
        for p in m::Pathway::ALL {
            let n = enum_out!(p, pb::Pathway, "PATHWAY_");
            assert_ne!(n, 0, "{p}");
            assert_eq!(enum_in!(n, pb::Pathway, "PATHWAY_", m::Pathway), Ok(*p));
        }
        for x in m::EpisodeStatus::ALL {
            let n = enum_out!(x, pb::EpisodeStatus, "EPISODE_STATUS_");
            assert_eq!(
                enum_in!(n, pb::EpisodeStatus, "EPISODE_STATUS_", m::EpisodeStatus),
                Ok(*x)
            );
        }
        for x in m::AuthorisationStatus::ALL {
            let n = enum_out!(x, pb::AuthorisationStatus, "AUTHORISATION_STATUS_");
            assert_eq!(
                enum_in!(
                    n,
                    pb::AuthorisationStatus,
                    "AUTHORISATION_STATUS_",
                    m::AuthorisationStatus
                ),
                Ok(*x)
            );
        }
        for x in m::StopReason::ALL {
            let n = enum_out!(x, pb::StopReason, "STOP_REASON_");
            assert_eq!(enum_in!(n, pb::StopReason, "STOP_REASON_", m::StopReason), Ok(*x));
        }
        for x in m::Sex::ALL {
            assert_ne!(enum_out!(x, pb::Sex, "SEX_"), 0);
        }
        for x in m::CentreType::ALL {
            assert_ne!(enum_out!(x, pb::CentreType, "CENTRE_TYPE_"), 0);
        }
        for x in m::FrameworkStatus::ALL {
            assert_ne!(enum_out!(x, pb::FrameworkStatus, "FRAMEWORK_STATUS_"), 0);
        }
        for x in m::ProtocolType::ALL {
            assert_ne!(enum_out!(x, pb::ProtocolType, "PROTOCOL_TYPE_"), 0);
        }
        for x in m::RecordKind::ALL {
            assert_ne!(enum_out!(x, pb::RecordKind, "RECORD_KIND_"), 0);
        }
        for x in m::AeOutcome::ALL {
            assert_ne!(enum_out!(x, pb::AeOutcome, "AE_OUTCOME_"), 0);
        }
        for x in m::Causality::ALL {
            assert_ne!(enum_out!(x, pb::Causality, "CAUSALITY_"), 0);
        }
        for x in m::EfficacyAssessment::ALL {
            assert_ne!(enum_out!(x, pb::EfficacyAssessment, "EFFICACY_ASSESSMENT_"), 0);
        }
        for x in m::Adherence::ALL {
            assert_ne!(enum_out!(x, pb::Adherence, "ADHERENCE_"), 0);
        }
        for x in m::VitalStatus::ALL {
            assert_ne!(enum_out!(x, pb::VitalStatus, "VITAL_STATUS_"), 0);
        }
        for x in m::PseudonymKind::ALL {
            assert_ne!(enum_out!(x, pb::PseudonymKind, "PSEUDONYM_KIND_"), 0);
        }
        for x in m::DiagnosisStatus::ALL {
            assert_ne!(enum_out!(x, pb::DiagnosisStatus, "DIAGNOSIS_STATUS_"), 0);
        }
        for x in m::Route::ALL {
            assert_ne!(enum_out!(x, pb::Route, "ROUTE_"), 0);
        }
        for x in m::OffLabelAxis::ALL {
            assert_ne!(enum_out!(x, pb::OffLabelAxis, "OFF_LABEL_AXIS_"), 0);
        }
        for x in m::RcpOpinion::ALL {
            assert_ne!(enum_out!(x, pb::RcpOpinion, "RCP_OPINION_"), 0);
        }
        for x in m::CohortStatus::ALL {
            assert_ne!(enum_out!(x, pb::CohortStatus, "COHORT_STATUS_"), 0);
        }
    }

    #[test]
    fn zero_and_unknown_enum_numbers_are_refused() {
        assert_eq!(
            enum_in!(0, pb::Pathway, "PATHWAY_", m::Pathway).unwrap_err().reason,
            "REQUIRED"
        );
        assert_eq!(
            enum_in!(99, pb::Pathway, "PATHWAY_", m::Pathway).unwrap_err().reason,
            "UNKNOWN_ENUM_VALUE"
        );
    }
}
