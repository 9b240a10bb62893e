//! The registry as FHIR R4 resources, exported in the Bulk Data layout: NDJSON lines, one
//! resource type per file, and a manifest. The export is a patient-level read, kept to the
//! caller's scope as the change feed is and audited batch by batch before anything is given.
//!
//! | Registry | FHIR R4 |
//! |---|---|
//! | patient | `Patient` (FR Core patient profile; the pseudonym as its only identifier) |
//! | diagnosis | `Condition` (ORPHA and ICD-10 codings, verification status, haemophilia severity) |
//! | objection to reuse, consent to reuse | `Consent` (research scope, deny or permit) |
//! | episode | `MedicationRequest` (the access regime as an extension with its own CodeSystem, off-label use as the IHE `offLabel` extension) |
//! | first administration | `MedicationAdministration` |
//! | adverse event | `AdverseEvent` (seriousness criteria as the AE clinical research backport extension) |
//! | cohort | `ResearchStudy`; its episodes `ResearchSubject` |
//!
//! The observatory's own definitions (the access regimes and off-label axes as CodeSystems,
//! the access-regime extension, the identifier systems of its pseudonyms) are named under
//! [`CANONICAL`]; the export carries the two CodeSystems themselves.

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::{
    catalogue::Catalogue,
    model::{
        AdverseEvent, AeOutcome, Causality, Cohort, CohortStatus, ConsentStatus, DiagnosisStatus, Dosage, Episode,
        EpisodeStatus, FactorLevelClass, OffLabelAxis, Pathway, Patient, PseudonymKind, RecordId, RecordKind, Route,
        SeriousnessCriterion, Sex, VitalStatus,
    },
};
use observatory_store::{
    AdverseEventFilter, CohortFilter, EpisodeFilter, Page, PageRequest, PatientFilter, Versioned, audit::AuditTarget,
};
use serde_json::{Value, json};

use crate::scope::{Admitted, Target, admit};
use crate::{App, AppResult, Call};

/// Base of the observatory's own FHIR definitions (CodeSystems, extensions, identifier
/// systems). `.invalid`: nothing resolves it by mistake until the project publishes an
/// implementation guide; the export carries the CodeSystems it names.
pub const CANONICAL: &str = "https://observatoire.invalid/fhir";

const ORPHANET: &str = "https://www.orpha.net";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const ATC: &str = "http://www.whocc.no/atc";
const MEDDRA: &str = "https://www.meddra.org";
const UCUM: &str = "http://unitsofmeasure.org";
const SNOMED: &str = "http://snomed.info/sct";
const NCIT: &str = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl";
const FR_CORE_PATIENT: &str = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient";
const IHE_OFF_LABEL: &str = "https://profiles.ihe.net/PHARM/MPD/StructureDefinition/ihe-ext-offLabel";
const AE_SERIOUSNESS_CRITERIA: &str =
    "http://hl7.org/fhir/uv/ae-research-backport-ig/StructureDefinition/seriousness-criteria";

/// Records read per batch.
pub const BATCH: u32 = 500;

/// The resource types of an export, in the order they are written.
pub const RESOURCE_TYPES: [&str; 9] = [
    "CodeSystem",
    "ResearchStudy",
    "Patient",
    "Condition",
    "Consent",
    "MedicationRequest",
    "MedicationAdministration",
    "ResearchSubject",
    "AdverseEvent",
];

fn access_regime_system() -> String {
    format!("{CANONICAL}/CodeSystem/access-regime")
}

fn off_label_axis_system() -> String {
    format!("{CANONICAL}/CodeSystem/off-label-axis")
}

/// What an export covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FhirExport {
    /// Only this cohort, its patients and their records.
    pub cohort: Option<RecordId>,
    /// Only what changed after this instant (each resource's record, as last recorded).
    pub since: Option<DateTime<Utc>>,
}

/// One batch of resources: NDJSON lines of one resource type each.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub parts: Vec<(&'static str, Vec<String>)>,
}

impl Batch {
    fn add(&mut self, resource_type: &'static str, resource: &Value) {
        let line = resource.to_string();
        match self.parts.iter_mut().find(|(t, _)| *t == resource_type) {
            Some((_, lines)) => lines.push(line),
            None => self.parts.push((resource_type, vec![line])),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Definitions,
    Studies,
    Patients,
    Episodes,
    Events,
    Done,
}

/// An export under way: [`Export::next`] gives its batches, in order, each audited.
#[derive(Debug)]
pub struct Export {
    app: App,
    call: Call,
    admitted: Admitted,
    asked: FhirExport,
    catalogue: std::sync::Arc<Catalogue>,
    phase: Phase,
    page: PageRequest,
}

/// Starts an export for `call`: the caller's role may export (the change feed's readers), and
/// a cohort asked for is one whose catalogue entry it reads.
pub async fn start(app: &App, call: &Call, asked: FhirExport) -> AppResult<Export> {
    let target = match &asked.cohort {
        Some(id) => Target::CohortEntry(id),
        None => Target::List,
    };
    let admitted = admit(&app.store, call, target).await?;
    Ok(Export {
        app: app.clone(),
        call: call.clone(),
        admitted,
        asked,
        catalogue: app.catalogue(),
        phase: Phase::Definitions,
        page: PageRequest {
            size: BATCH,
            token: None,
        },
    })
}

fn changed_since<T>(since: Option<DateTime<Utc>>, v: &Versioned<T>) -> bool {
    since.is_none_or(|s| v.meta.recorded_at > s)
}

impl Export {
    /// The next batch, `None` once everything is written. The patient-level records a batch
    /// discloses are recorded in the audit trail before it is returned.
    pub async fn next(&mut self) -> AppResult<Option<Batch>> {
        loop {
            let mut batch = Batch::default();
            let mut read = Vec::new();
            let next_token = match self.phase {
                Phase::Done => return Ok(None),
                Phase::Definitions => {
                    batch.add("CodeSystem", &access_regime_code_system());
                    batch.add("CodeSystem", &off_label_axis_code_system());
                    None
                }
                Phase::Studies => {
                    let page = self.cohorts().await?;
                    for c in page.items.iter().filter(|c| changed_since(self.asked.since, c)) {
                        batch.add("ResearchStudy", &research_study(c, &self.catalogue));
                    }
                    page.next_page_token
                }
                Phase::Patients => {
                    let filter = PatientFilter {
                        cohort_id: self.asked.cohort.clone(),
                        ..PatientFilter::default()
                    };
                    let page = self
                        .app
                        .store
                        .list_patients(&filter, self.admitted.within(), &self.page)
                        .await?;
                    for p in page.items.iter().filter(|p| changed_since(self.asked.since, p)) {
                        read.push(AuditTarget::read(RecordKind::Patient, p));
                        batch.add("Patient", &patient(p));
                        for (i, _) in p.record.diagnoses.iter().enumerate() {
                            batch.add("Condition", &condition(p, i, &self.catalogue));
                        }
                        if let Some(c) = consent(p) {
                            batch.add("Consent", &c);
                        }
                    }
                    page.next_page_token
                }
                Phase::Episodes => {
                    let filter = EpisodeFilter {
                        cohort_id: self.asked.cohort.clone(),
                        ..EpisodeFilter::default()
                    };
                    let page = self
                        .app
                        .store
                        .list_episodes(&filter, self.admitted.within(), &self.page)
                        .await?;
                    for e in page.items.iter().filter(|e| changed_since(self.asked.since, e)) {
                        read.push(AuditTarget::read(RecordKind::Episode, e));
                        batch.add("MedicationRequest", &medication_request(e, &self.catalogue));
                        if let Some(a) = medication_administration(e, &self.catalogue) {
                            batch.add("MedicationAdministration", &a);
                        }
                        batch.add("ResearchSubject", &research_subject(e));
                    }
                    page.next_page_token
                }
                Phase::Events => {
                    let filter = AdverseEventFilter {
                        cohort_id: self.asked.cohort.clone(),
                        ..AdverseEventFilter::default()
                    };
                    let page = self
                        .app
                        .store
                        .list_adverse_events(&filter, self.admitted.within(), &self.page)
                        .await?;
                    let episodes = self.episodes_of(&page).await?;
                    for a in page.items.iter().filter(|a| changed_since(self.asked.since, a)) {
                        read.push(AuditTarget::read(RecordKind::AdverseEvent, a));
                        let episode = episodes.iter().find(|e| e.meta.id == a.record.episode_id.as_str());
                        batch.add("AdverseEvent", &adverse_event(a, episode, &self.catalogue));
                    }
                    page.next_page_token
                }
            };
            match next_token {
                Some(token) => self.page.token = Some(token),
                None => {
                    self.page.token = None;
                    self.phase = match self.phase {
                        Phase::Definitions => Phase::Studies,
                        Phase::Studies => Phase::Patients,
                        Phase::Patients => Phase::Episodes,
                        Phase::Episodes => Phase::Events,
                        Phase::Events | Phase::Done => Phase::Done,
                    };
                }
            }
            if !read.is_empty() {
                self.admitted
                    .audit_read(&self.app.store, self.call.operation, read)
                    .await?;
            }
            if !batch.parts.is_empty() {
                return Ok(Some(batch));
            }
        }
    }

    async fn cohorts(&self) -> AppResult<Page<Versioned<Cohort>>> {
        match &self.asked.cohort {
            Some(id) => Ok(Page {
                items: vec![self.app.store.require::<Cohort>(id.as_str()).await?],
                next_page_token: None,
            }),
            None => Ok(self
                .app
                .store
                .list_cohorts(&CohortFilter::default(), self.admitted.within(), &self.page)
                .await?),
        }
    }

    /// The episodes of a page of adverse events (to name their drug), read together.
    async fn episodes_of(&self, events: &Page<Versioned<AdverseEvent>>) -> AppResult<Vec<Versioned<Episode>>> {
        let mut ids: Vec<&str> = events.items.iter().map(|a| a.record.episode_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut episodes = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.app.store.get::<Episode>(id).await? {
                episodes.push(e);
            }
        }
        Ok(episodes)
    }
}

/// The Bulk Data manifest of a finished export: each file with its resource type and count.
pub fn manifest(transaction_time: DateTime<Utc>, request: &str, files: &[(&str, String, u64)]) -> Value {
    json!({
        "transactionTime": transaction_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "request": request,
        "requiresAccessToken": false,
        "output": files
            .iter()
            .map(|(t, url, count)| json!({"type": t, "url": url, "count": count}))
            .collect::<Vec<_>>(),
        "error": [],
    })
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    match display {
        Some(d) => json!({"system": system, "code": code, "display": d}),
        None => json!({"system": system, "code": code}),
    }
}

fn pathway_display(p: Pathway) -> &'static str {
    match p {
        Pathway::Aac => "Autorisation d'accès compassionnel (AAC)",
        Pathway::AapPre => "Accès précoce avant AMM (AAP)",
        Pathway::AapPost => "Accès précoce après AMM (AAP)",
        Pathway::Cpc => "Cadre de prescription compassionnelle (CPC)",
        Pathway::OffLabel => "Prescription hors AMM",
        Pathway::Direct => "Accès direct",
        Pathway::AtuNominative => "ATU nominative",
        Pathway::AtuCohort => "ATU de cohorte",
        Pathway::Rtu => "Recommandation temporaire d'utilisation (RTU)",
        Pathway::CommonLaw => "Droit commun",
    }
}

fn axis_display(a: OffLabelAxis) -> &'static str {
    match a {
        OffLabelAxis::Indication => "Indication outside the marketing authorisation",
        OffLabelAxis::Age => "Age outside the marketing authorisation",
        OffLabelAxis::Dose => "Dose outside the marketing authorisation",
        OffLabelAxis::Route => "Route outside the marketing authorisation",
    }
}

/// The access regimes, as a CodeSystem of the observatory (no standard one exists).
pub fn access_regime_code_system() -> Value {
    json!({
        "resourceType": "CodeSystem",
        "id": "access-regime",
        "url": access_regime_system(),
        "name": "AccessRegime",
        "title": "French derogatory access regimes to medicines",
        "status": "active",
        "content": "complete",
        "caseSensitive": true,
        "description": "The pathway under which a drug reaches a patient in France: compassionate access (AAC, CPC), early access (AAP), plain off-label prescription, accès direct, the legacy ATU and RTU schemes, and common law (marketed and reimbursed).",
        "concept": Pathway::ALL
            .iter()
            .map(|p| json!({"code": p.code(), "display": pathway_display(*p)}))
            .collect::<Vec<_>>(),
    })
}

/// The axes on which an off-label prescription departs from the marketing authorisation.
pub fn off_label_axis_code_system() -> Value {
    json!({
        "resourceType": "CodeSystem",
        "id": "off-label-axis",
        "url": off_label_axis_system(),
        "name": "OffLabelAxis",
        "title": "Axes of an off-label prescription",
        "status": "active",
        "content": "complete",
        "caseSensitive": true,
        "concept": OffLabelAxis::ALL
            .iter()
            .map(|a| json!({"code": a.code(), "display": axis_display(*a)}))
            .collect::<Vec<_>>(),
    })
}

fn reference(resource_type: &str, id: &str) -> Value {
    json!({"reference": format!("{resource_type}/{id}")})
}

fn drug_concept(atc: &str, catalogue: &Catalogue) -> Value {
    match catalogue.drug(atc) {
        Some(d) => json!({
            "coding": [coding(ATC, atc, Some(&d.name))],
            "text": if d.brand.is_empty() { d.name.clone() } else { format!("{} ({})", d.brand, d.name) },
        }),
        None => json!({"coding": [coding(ATC, atc, None)]}),
    }
}

fn disease_coding(orpha: &str, catalogue: &Catalogue) -> Value {
    coding(ORPHANET, orpha, catalogue.disease(orpha).map(|d| d.name.as_str()))
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A patient: the pseudonym its only identifier, sex, birth month, region, vital status.
pub fn patient(v: &Versioned<Patient>) -> Value {
    let p = &v.record;
    let system = match p.pseudonym.kind {
        PseudonymKind::IdMr => format!("{CANONICAL}/NamingSystem/idmr"),
        PseudonymKind::Hmac => format!("{CANONICAL}/NamingSystem/keyed-pseudonym"),
    };
    let mut r = json!({
        "resourceType": "Patient",
        "id": v.meta.id,
        "meta": {
            "profile": [FR_CORE_PATIENT],
            "security": [coding("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "PSEUDED", Some("pseudonymized"))],
        },
        "identifier": [{"use": "secondary", "system": system, "value": p.pseudonym.value}],
        "gender": match p.sex {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Unknown => "unknown",
        },
        "birthDate": p.birth_year_month.to_string(),
    });
    match p.vital_status {
        VitalStatus::Deceased => r["deceasedBoolean"] = json!(true),
        VitalStatus::Alive => r["deceasedBoolean"] = json!(false),
        VitalStatus::Unknown => {}
    }
    if let Some(region) = &p.region {
        r["address"] = json!([{"use": "home", "state": region.as_str(), "country": "FR"}]);
    }
    r
}

/// A patient's diagnosis `i`.
pub fn condition(v: &Versioned<Patient>, i: usize, catalogue: &Catalogue) -> Value {
    let d = &v.record.diagnoses[i];
    let mut codings = vec![disease_coding(d.orpha_code.as_str(), catalogue)];
    if let Some(icd) = &d.icd10 {
        codings.push(coding(ICD10, icd.as_str(), None));
    }
    let verification = match d.status {
        DiagnosisStatus::Confirmed => "confirmed",
        DiagnosisStatus::Probable => "provisional",
        DiagnosisStatus::InProgress | DiagnosisStatus::Undetermined => "unconfirmed",
    };
    let mut r = json!({
        "resourceType": "Condition",
        "id": format!("{}-{i}", v.meta.id),
        "clinicalStatus": {"coding": [coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", None)]},
        "verificationStatus": {"coding": [coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification, None)]},
        "code": {"coding": codings},
        "subject": reference("Patient", &v.meta.id),
    });
    if let Some(date) = d.diagnosis_date {
        r["recordedDate"] = json!(day(date));
    }
    if let Some(class) = d.severity.factor_level_class {
        let (code, display) = match class {
            FactorLevelClass::Severe => ("24484000", "Severe"),
            FactorLevelClass::Moderate => ("6736007", "Moderate"),
            FactorLevelClass::Mild => ("255604002", "Mild"),
        };
        r["severity"] = json!({"coding": [coding(SNOMED, code, Some(display))]});
    }
    r
}

/// The patient's objection to the reuse of their data (a research consent denied), or their
/// consent to it; none when neither is recorded.
pub fn consent(v: &Versioned<Patient>) -> Option<Value> {
    let p = &v.record;
    let permit = match (p.objects_to_reuse, p.cde.reuse_consent) {
        (true, _) | (false, Some(ConsentStatus::Refused)) => false,
        (false, Some(ConsentStatus::Given)) => true,
        (false, _) => return None,
    };
    Some(json!({
        "resourceType": "Consent",
        "id": v.meta.id,
        "status": "active",
        "scope": {"coding": [coding("http://terminology.hl7.org/CodeSystem/consentscope", "research", None)]},
        "category": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/consentcategorycodes", "research", None)]}],
        "patient": reference("Patient", &v.meta.id),
        "dateTime": v.meta.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "policyRule": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            if permit { "OPTIN" } else { "OPTOUT" },
            None,
        )]},
        "provision": {
            "type": if permit { "permit" } else { "deny" },
            "purpose": [coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HRESCH", Some("healthcare research"))],
        },
    }))
}

fn route(r: Route) -> Value {
    // SNOMED CT routes where one fits (the FHIR example binding).
    let (code, display) = match r {
        Route::Intravenous => (Some("47625008"), "intravenous"),
        Route::Subcutaneous => (Some("34206005"), "subcutaneous"),
        Route::Oral => (Some("26643006"), "oral"),
        Route::Intrathecal => (Some("72607000"), "intrathecal"),
        Route::Intramuscular => (Some("78421000"), "intramuscular"),
        Route::Other => (None, "other"),
    };
    match code {
        Some(code) => json!({"coding": [coding(SNOMED, code, Some(display))], "text": display}),
        None => json!({"text": display}),
    }
}

fn dose(d: &Dosage) -> Option<Value> {
    let unit = crate::cases::e2b::ucum(&d.unit)?;
    Some(json!({"value": d.dose, "unit": d.unit, "system": UCUM, "code": unit}))
}

fn ended(status: EpisodeStatus) -> bool {
    !matches!(
        status,
        EpisodeStatus::Declared | EpisodeStatus::Initiated | EpisodeStatus::Ongoing
    )
}

/// An episode as the prescription it is.
pub fn medication_request(v: &Versioned<Episode>, catalogue: &Catalogue) -> Value {
    let e = &v.record;
    let mut extensions = vec![json!({
        "url": format!("{CANONICAL}/StructureDefinition/access-regime"),
        "valueCoding": coding(&access_regime_system(), e.pathway.code(), Some(pathway_display(e.pathway))),
    })];
    if e.pathway == Pathway::OffLabel || e.off_label.is_some() {
        let mut parts = vec![json!({"url": "isOffLabelUse", "valueBoolean": true})];
        for axis in e.off_label.iter().flat_map(|o| o.axes.iter()) {
            parts.push(json!({
                "url": "reason",
                "valueCodeableConcept": {
                    "coding": [coding(&off_label_axis_system(), axis.code(), Some(axis_display(*axis)))],
                },
            }));
        }
        extensions.push(json!({"url": IHE_OFF_LABEL, "extension": parts}));
    }
    let mut r = json!({
        "resourceType": "MedicationRequest",
        "id": v.meta.id,
        "extension": extensions,
        "status": if ended(e.status) { "stopped" } else { "active" },
        "intent": "order",
        "medicationCodeableConcept": drug_concept(e.drug_atc.as_str(), catalogue),
        "subject": reference("Patient", e.patient_id.as_str()),
        "authoredOn": day(e.request_date),
        "reasonCode": [{"coding": [disease_coding(e.indication.as_str(), catalogue)]}],
    });
    if let Some(d) = &e.dosage {
        let mut instruction = json!({
            "text": format!("{} {}, {}", d.dose, d.unit, d.frequency),
            "route": route(d.route),
        });
        if let Some(q) = dose(d) {
            instruction["doseAndRate"] = json!([{"doseQuantity": q}]);
        }
        r["dosageInstruction"] = json!([instruction]);
    }
    if let Some(previous) = &e.previous_episode_id {
        r["priorPrescription"] = reference("MedicationRequest", previous.as_str());
    }
    if let Some(evidence) = e.off_label.as_ref().map(|o| o.evidence_reference.as_str()) {
        r["note"] = json!([{"text": format!("Off-label justification: {evidence}")}]);
    }
    r
}

/// An episode's first administration, once recorded.
pub fn medication_administration(v: &Versioned<Episode>, catalogue: &Catalogue) -> Option<Value> {
    let e = &v.record;
    let date = e.first_administration_date?;
    let mut r = json!({
        "resourceType": "MedicationAdministration",
        "id": v.meta.id,
        "status": "completed",
        "medicationCodeableConcept": drug_concept(e.drug_atc.as_str(), catalogue),
        "subject": reference("Patient", e.patient_id.as_str()),
        "effectiveDateTime": day(date),
        "request": reference("MedicationRequest", &v.meta.id),
    });
    if let Some(d) = &e.dosage {
        let mut dosage = json!({"text": format!("{} {}, {}", d.dose, d.unit, d.frequency), "route": route(d.route)});
        if let Some(q) = dose(d) {
            dosage["dose"] = q;
        }
        r["dosage"] = dosage;
    }
    Some(r)
}

/// A cohort as the study its patients are followed in.
pub fn research_study(v: &Versioned<Cohort>, catalogue: &Catalogue) -> Value {
    let c = &v.record;
    json!({
        "resourceType": "ResearchStudy",
        "id": v.meta.id,
        "title": c.name,
        "status": match c.status {
            CohortStatus::Open => "active",
            CohortStatus::Closed => "closed-to-accrual",
        },
        "category": [{"coding": [coding(&access_regime_system(), c.pathway.code(), Some(pathway_display(c.pathway)))]}],
        "focus": [drug_concept(c.drug_atc.as_str(), catalogue)],
        "condition": c.orpha_codes.iter().map(|o| json!({"coding": [disease_coding(o.as_str(), catalogue)]})).collect::<Vec<_>>(),
        "keyword": [{"text": c.filiere.as_str()}],
    })
}

/// An episode as a patient's participation in its cohort.
pub fn research_subject(v: &Versioned<Episode>) -> Value {
    let e = &v.record;
    let status = match e.status {
        EpisodeStatus::Declared => "pending-on-study",
        EpisodeStatus::Initiated | EpisodeStatus::Ongoing => "on-study-intervention",
        _ => "off-study",
    };
    let mut period = json!({"start": day(e.request_date)});
    if let Some(end) = e.end_date {
        period["end"] = json!(day(end));
    }
    json!({
        "resourceType": "ResearchSubject",
        "id": v.meta.id,
        "status": status,
        "period": period,
        "study": reference("ResearchStudy", e.cohort_id.as_str()),
        "individual": reference("Patient", e.patient_id.as_str()),
    })
}

fn criterion_code(c: SeriousnessCriterion) -> (&'static str, &'static str) {
    match c {
        SeriousnessCriterion::Death => ("C48275", "Results In Death"),
        SeriousnessCriterion::LifeThreatening => ("C84266", "Is Life Threatening"),
        SeriousnessCriterion::Hospitalisation => ("C83052", "Requires Inpatient Hospitalization"),
        SeriousnessCriterion::Disability => ("C11338", "Results In Persistent Or Significant Disability"),
        SeriousnessCriterion::CongenitalAnomaly => ("C83117", "Congenital Anomaly or Birth Defect"),
        SeriousnessCriterion::OtherMedicallyImportant => ("C82521", "Other Medically Important Condition"),
    }
}

/// An adverse event, its seriousness criteria, outcome and the prescriber's causality.
pub fn adverse_event(
    v: &Versioned<AdverseEvent>,
    episode: Option<&Versioned<Episode>>,
    catalogue: &Catalogue,
) -> Value {
    let a = &v.record;
    let pt_name = catalogue
        .meddra(observatory_domain::catalogue::EntryKind::MeddraPt, a.meddra_pt.as_str())
        .map(|t| t.name.clone());
    let mut r = json!({
        "resourceType": "AdverseEvent",
        "id": v.meta.id,
        "actuality": "actual",
        "event": {"coding": [coding(MEDDRA, a.meddra_pt.as_str(), pt_name.as_deref())]},
        "date": day(a.onset_date),
        "recordedDate": v.meta.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "seriousness": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
            if a.serious { "serious" } else { "non-serious" },
            None,
        )]},
        "outcome": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
            match a.outcome {
                AeOutcome::Recovered => "resolved",
                AeOutcome::Recovering => "recovering",
                AeOutcome::NotRecovered => "ongoing",
                AeOutcome::RecoveredWithSequelae => "resolvedWithSequelae",
                AeOutcome::Fatal => "fatal",
                AeOutcome::Unknown => "unknown",
            },
            None,
        )]},
    });
    let criteria: Vec<Value> = a
        .details
        .seriousness
        .iter()
        .map(|c| {
            let (code, display) = criterion_code(*c);
            json!({
                "url": AE_SERIOUSNESS_CRITERIA,
                "extension": [
                    {"url": "criterionCode", "valueCodeableConcept": {"coding": [coding(NCIT, code, Some(display))]}},
                    {"url": "criterionPresent", "valueBoolean": true},
                ],
            })
        })
        .collect();
    if !criteria.is_empty() {
        r["extension"] = json!(criteria);
    }
    if let Some(e) = episode {
        r["subject"] = reference("Patient", e.record.patient_id.as_str());
        r["study"] = json!([reference("ResearchStudy", e.record.cohort_id.as_str())]);
        if e.record.first_administration_date.is_some() {
            let assessment = match a.causality {
                Causality::Related => {
                    json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess", "probably-likely", Some("Probably/Likely"))]})
                }
                Causality::PossiblyRelated => {
                    json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess", "possible", Some("Possible"))]})
                }
                Causality::Unlikely => {
                    json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess", "unlikely", Some("Unlikely"))]})
                }
                Causality::NotAssessable => {
                    json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess", "unassessable-unclassifiable", Some("Unassessable/Unclassifiable"))]})
                }
                Causality::NotRelated => json!({"text": "not related"}),
            };
            r["suspectEntity"] = json!([{
                "instance": reference("MedicationAdministration", &e.meta.id),
                "causality": [{"assessment": assessment}],
            }]);
        }
    }
    r
}
