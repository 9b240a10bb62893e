//! The patients of the caller's scope: list and search, registration, a patient's page.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use observatory_app::registry as ops;
use observatory_domain::catalogue::Catalogue;
use observatory_domain::model::{Cohort, Episode, Patient, RecordId};
use observatory_proto::v1 as pb;
use observatory_store::{CohortFilter, EpisodeFilter, PageRequest, Versioned};
use serde::Deserialize;

use super::{Page, date_opt, pb_enum, refused, render, short_pseudonym};
use crate::{Posted, Signed, Web, form::FormState, i18n::Lang, labels, op};

/// One line of a list of patients.
pub struct PatientRow {
    pub id: String,
    pub pseudonym: String,
    pub kind: &'static str,
    pub sex: String,
    pub birth: String,
    pub registered: String,
}

fn row(page: &Page, p: &Versioned<Patient>) -> PatientRow {
    PatientRow {
        id: p.meta.id.clone(),
        pseudonym: short_pseudonym(&p.record.pseudonym),
        kind: p.record.pseudonym.kind.code(),
        sex: page.label("sex", p.record.sex.code()),
        birth: p.record.birth_year_month.to_string(),
        registered: page.lang.date(p.meta.recorded_at.date_naive()),
    }
}

#[derive(Template)]
#[template(path = "patients.html")]
struct List {
    page: Page,
    q: String,
    cohort: String,
    cohorts: Vec<(String, String)>,
    pathway: String,
    pathways: Vec<(String, String)>,
    status: String,
    statuses: Vec<(String, String)>,
    rows: Vec<PatientRow>,
    next: Option<String>,
    message: Option<String>,
    can_register: bool,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    cohort: String,
    #[serde(default)]
    pathway: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

/// The cohorts the caller may see, as `(id, name)` options.
pub(crate) async fn cohort_options(web: &Web, signed: &Signed) -> Vec<(String, String)> {
    let page = PageRequest { size: 200, token: None };
    match ops::list_cohorts(
        web.app(),
        &signed.call(op("ListCohorts")),
        &CohortFilter::default(),
        &page,
    )
    .await
    {
        Ok(p) => p
            .items
            .into_iter()
            .map(|c| (c.meta.id, format!("{} ({})", c.record.name, c.record.filiere.as_str())))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "no cohorts for a page");
            Vec::new()
        }
    }
}

pub async fn list(State(web): State<Web>, signed: Signed, Query(q): Query<ListQuery>) -> Response {
    let lang = signed.lang;
    let request = pb::ListPatientsRequest {
        page: Some(pb::PageRequest {
            page_size: 50,
            page_token: q.page.clone(),
        }),
        pseudonym: q.q.clone(),
        cohort_id: q.cohort.clone(),
        pathway: pb_enum(&q.pathway, "PATHWAY_", pb::Pathway::from_str_name),
        status: pb_enum(&q.status, "EPISODE_STATUS_", pb::EpisodeStatus::from_str_name),
    };
    let cohorts = cohort_options(&web, &signed).await;
    let page = signed.page(lang.t("patients.title"));
    let (rows, next, message) = match observatory_grpc::parse::parse_patient_filter(&request) {
        Err(status) => (Vec::new(), None, Some(super::explain(lang, &status))),
        Ok((filter, page_request)) => {
            match ops::list_patients(web.app(), &signed.call(op("ListPatients")), &filter, &page_request).await {
                Ok(p) => (p.items.iter().map(|x| row(&page, x)).collect(), p.next_page_token, None),
                Err(e) => return refused(&signed, e),
            }
        }
    };
    render(&List {
        can_register: observatory_app::access::allows("RegisterPatient", signed.role()),
        page,
        pathways: labels::options(signed.lang, "pathway"),
        statuses: labels::options(signed.lang, "episode_status"),
        q: q.q,
        cohort: q.cohort,
        pathway: q.pathway,
        status: q.status,
        cohorts,
        rows,
        next,
        message,
    })
}

#[derive(Template)]
#[template(path = "patient_new.html")]
struct New {
    page: Page,
    form: FormState,
    diseases: Vec<(String, String)>,
    regions: Vec<(String, String)>,
    sexes: Vec<(String, String)>,
    statuses: Vec<(String, String)>,
    factor_classes: Vec<(String, String)>,
    inhibitors: Vec<(String, String)>,
    age_kinds: Vec<(String, String)>,
    consents: Vec<(String, String)>,
}

fn new_page(catalogue: &Catalogue, signed: &Signed, form: FormState) -> New {
    let lang = signed.lang;
    New {
        page: signed.page(lang.t("patient_new.title")),
        form,
        diseases: disease_options(catalogue),
        regions: super::regions(),
        sexes: labels::options(lang, "sex"),
        statuses: labels::options(lang, "diagnosis_status"),
        factor_classes: labels::options(lang, "factor_level_class"),
        inhibitors: labels::options(lang, "inhibitor_status"),
        age_kinds: labels::options(lang, "age_kind"),
        consents: labels::options(lang, "consent_status"),
    }
}

/// The common data elements a form gives (`cde.*`), as the contract's message; `None` when the
/// form leaves them all empty.
fn cde_of(f: &crate::form::Fields) -> Option<pb::CommonDataElements> {
    let age = |prefix: &str| {
        let kind = f.get(&format!("{prefix}.kind"));
        (!kind.is_empty()).then(|| pb::AgeAt {
            kind: pb_enum(kind, "AGE_KIND_", pb::AgeKind::from_str_name),
            // A number the form cannot hold is sent as out of range, for the contract to refuse.
            months: match f.get(&format!("{prefix}.months")) {
                "" => 0,
                raw => raw.trim().parse().unwrap_or(u32::MAX),
            },
        })
    };
    let gene = f.get("cde.genotype[0].gene").trim();
    let genotype = if gene.is_empty() {
        Vec::new()
    } else {
        vec![pb::Genotype {
            gene: gene.to_owned(),
            variants: f
                .get("cde.genotype[0].variants")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }]
    };
    let consent = |name: &str| pb_enum(f.get(name), "CONSENT_STATUS_", pb::ConsentStatus::from_str_name);
    let cde = pb::CommonDataElements {
        age_at_onset: age("cde.age_at_onset"),
        age_at_diagnosis: age("cde.age_at_diagnosis"),
        undiagnosed: f.ticked("cde.undiagnosed"),
        genotype,
        contact_for_research: consent("cde.contact_for_research"),
        reuse_consent: consent("cde.reuse_consent"),
    };
    (cde != pb::CommonDataElements::default()).then_some(cde)
}

pub async fn new(State(web): State<Web>, signed: Signed) -> Response {
    render(&new_page(
        &web.app().catalogue(),
        &signed,
        FormState::with(&[
            ("subject", "idmr".to_owned()),
            ("diagnoses[0].status", "CONFIRMED".to_owned()),
        ]),
    ))
}

/// The registration a form asks for, as the contract's request: identity fields go to the
/// server's pseudonymisation and nowhere else (never logged, never stored).
fn registration(f: &crate::form::Fields) -> pb::RegisterPatientRequest {
    use pb::register_patient_request::Subject;
    let subject = match f.get("subject") {
        "identity" => Some(Subject::Identity(pb::Identity {
            last_name: f.get("identity.last_name").to_owned(),
            first_name: f.get("identity.first_name").to_owned(),
            birth_date: f.get("identity.birth_date").to_owned(),
            sex: pb_enum(f.get("identity.sex"), "SEX_", pb::Sex::from_str_name),
        })),
        _ => Some(Subject::Idmr(f.get("idmr").to_owned())),
    };
    let identity = f.get("subject") == "identity";
    let diagnoses = if f.get("diagnoses[0].orpha_code").is_empty() {
        Vec::new()
    } else {
        vec![pb::Diagnosis {
            orpha_code: f.get("diagnoses[0].orpha_code").to_owned(),
            icd10: String::new(),
            status: pb_enum(
                f.get("diagnoses[0].status"),
                "DIAGNOSIS_STATUS_",
                pb::DiagnosisStatus::from_str_name,
            ),
            diagnosis_date: f.get("diagnoses[0].diagnosis_date").to_owned(),
            factor_level_class: pb_enum(
                f.get("diagnoses[0].factor_level_class"),
                "FACTOR_LEVEL_CLASS_",
                pb::FactorLevelClass::from_str_name,
            ),
            inhibitor_status: pb_enum(
                f.get("diagnoses[0].inhibitor_status"),
                "INHIBITOR_STATUS_",
                pb::InhibitorStatus::from_str_name,
            ),
        }]
    };
    pb::RegisterPatientRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        subject,
        // With identity fields, sex and birth month come from them.
        sex: if identity {
            0
        } else {
            pb_enum(f.get("sex"), "SEX_", pb::Sex::from_str_name)
        },
        birth_year_month: if identity {
            String::new()
        } else {
            f.get("birth_year_month").to_owned()
        },
        region_code: f.get("region_code").to_owned(),
        objects_to_reuse: f.ticked("objects_to_reuse"),
        diagnoses,
        cde: cde_of(f),
    }
}

pub async fn register(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let request = registration(&fields);
    let refuse = |status: tonic::Status| {
        // Identity fields are shown again to the one who typed them, in this answer only.
        let mut r = render(&new_page(
            &web.app().catalogue(),
            &signed,
            FormState::refused(&fields, &status, signed.lang),
        ));
        *r.status_mut() = super::http_status(&status);
        r
    };
    let (key, reg) = match observatory_grpc::parse::parse_registration(&request) {
        Ok(x) => x,
        Err(status) => return refuse(status),
    };
    match ops::register_patient(web.app(), &signed.call(op("RegisterPatient")), Some(key), reg).await {
        Ok(p) => Redirect::to(&format!("/patients/{}", p.meta.id)).into_response(),
        Err(e) => refuse(observatory_grpc::error::app(e)),
    }
}

/// One episode of a patient, as its page lists it.
pub struct EpisodeRow {
    pub id: String,
    pub cohort: String,
    pub pathway: String,
    pub drug: String,
    pub status: String,
    pub status_code: &'static str,
    pub request_date: String,
    pub first_administration: String,
    pub end_date: String,
}

/// A drug's name and code, as the catalogue in force knows it (and says so when it retired it).
pub(crate) fn drug_label(c: &Catalogue, lang: Lang, atc: &str) -> String {
    match c.drug(atc) {
        Some(d) if d.retired => format!("{} ({atc}, {})", d.name, lang.t("common.retired")),
        Some(d) => format!("{} ({atc})", d.name),
        None => atc.to_owned(),
    }
}

/// A disease's name and code, as the catalogue in force knows it.
pub(crate) fn disease_label(c: &Catalogue, lang: Lang, orpha: &str) -> String {
    match c.disease(orpha) {
        Some(d) if d.retired => format!("{} (ORPHA:{orpha}, {})", d.name, lang.t("common.retired")),
        Some(d) => format!("{} (ORPHA:{orpha})", d.name),
        None => format!("ORPHA:{orpha}"),
    }
}

/// The picker of diseases: those the networks follow (a filière in the catalogue), in force.
pub(crate) fn disease_options(c: &Catalogue) -> Vec<(String, String)> {
    c.diseases()
        .filter(|(_, d)| !d.retired && d.filiere.is_some())
        .map(|(code, d)| (code.to_owned(), format!("{} (ORPHA:{code})", d.name)))
        .collect()
}

/// The picker of drugs: those the networks follow, in force.
pub(crate) fn drug_options(c: &Catalogue) -> Vec<(String, String)> {
    c.drugs()
        .filter(|(_, d)| !d.retired && d.followed)
        .map(|(atc, d)| {
            (
                atc.to_owned(),
                format!("{} ({atc}) {}", d.name, d.brand).trim_end().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn episode_row(c: &Catalogue, page: &Page, e: &Versioned<Episode>, cohort: &str) -> EpisodeRow {
    let x = &e.record;
    EpisodeRow {
        id: e.meta.id.clone(),
        cohort: cohort.to_owned(),
        pathway: page.label("pathway", x.pathway.code()),
        drug: drug_label(c, page.lang, x.drug_atc.as_str()),
        status: page.label("episode_status", x.status.code()),
        status_code: x.status.code(),
        request_date: page.lang.date(x.request_date),
        first_administration: date_opt(page.lang, x.first_administration_date),
        end_date: date_opt(page.lang, x.end_date),
    }
}

/// One cell of the record status matrix: where an expected form stands.
pub struct Cell {
    /// `DONE`, `DUE`, `LATE`, `NOT_YET`, `NOT_EXPECTED`, or empty (no such form).
    pub code: &'static str,
    pub label: String,
    pub date: String,
}

/// One treatment's row of the record status matrix.
pub struct StatusRow {
    pub episode_id: String,
    pub drug: String,
    pub cells: Vec<Cell>,
}

/// The record status matrix: one row per treatment, one column per form its schedule expects
/// (declaration, authorisation, first administration, each visit).
async fn status_matrix(
    web: &Web,
    signed: &Signed,
    page: &Page,
    episodes: &[Versioned<Episode>],
    months: &std::collections::HashMap<String, u32>,
) -> Result<(Vec<String>, Vec<StatusRow>), observatory_app::AppError> {
    use observatory_domain::{
        model::{Authorisation, FollowUp},
        schedule::{self, ExpectedForm},
    };
    let app = web.app();
    let today = observatory_store::today(chrono::Utc::now());
    let mut rows = Vec::new();
    let mut visits_max = 0u32;
    for e in episodes {
        let authorisation = match &e.record.authorisation_id {
            None => None,
            Some(id) => {
                let a = ops::get::<Authorisation>(app, &signed.call(op("GetAuthorisation")), id).await?;
                Some((a.record.status, a.record.decision_date))
            }
        };
        let visits = ops::list_by_episode::<FollowUp>(
            app,
            &signed.call(op("ListFollowUps")),
            &RecordId::from_minted(e.meta.id.clone()),
            &PageRequest { size: 500, token: None },
        )
        .await?
        .items
        .iter()
        .map(|v| v.record.visit_date)
        .collect::<Vec<_>>();
        let interval = months.get(e.record.cohort_id.as_str()).copied().unwrap_or(6);
        let forms = schedule::record_status(&e.record, authorisation, &visits, interval, today);
        let mut cells: Vec<Cell> = Vec::new();
        let cell = |status: schedule::FormStatus| Cell {
            code: status.code(),
            label: page.label("form_status", status.code()),
            date: status.date().map(|d| page.lang.date(d)).unwrap_or_default(),
        };
        let none = || Cell {
            code: "",
            label: page.t("matrix.not_applicable").to_owned(),
            date: String::new(),
        };
        // Fixed columns first: declaration, authorisation, first administration.
        let find = |f: ExpectedForm| forms.iter().find(|(x, _)| *x == f).map(|(_, s)| *s);
        cells.push(find(ExpectedForm::Declaration).map_or_else(none, cell));
        cells.push(find(ExpectedForm::Authorisation).map_or_else(none, cell));
        cells.push(find(ExpectedForm::FirstAdministration).map_or_else(none, cell));
        for (form, status) in &forms {
            if let ExpectedForm::Visit(n) = form {
                visits_max = visits_max.max(*n);
                cells.push(cell(*status));
            }
        }
        rows.push(StatusRow {
            episode_id: e.meta.id.clone(),
            drug: drug_label(&web.app().catalogue(), page.lang, e.record.drug_atc.as_str()),
            cells,
        });
    }
    for row in &mut rows {
        while row.cells.len() < 3 + visits_max as usize {
            row.cells.push(Cell {
                code: "",
                label: String::new(),
                date: String::new(),
            });
        }
    }
    let mut columns = vec![
        page.t("matrix.declaration").to_owned(),
        page.t("matrix.authorisation").to_owned(),
        page.t("matrix.first_administration").to_owned(),
    ];
    columns.extend((1..=visits_max).map(|n| format!("{} {n}", page.t("matrix.visit"))));
    Ok((columns, rows))
}

#[derive(Template)]
#[template(path = "patient.html")]
struct Show {
    page: Page,
    id: String,
    version: i64,
    pseudonym: String,
    kind: String,
    sex: String,
    birth: String,
    region: String,
    vital_status: String,
    objects_to_reuse: bool,
    diagnoses: Vec<String>,
    /// The common data elements known, as (label, value) facts.
    cde: Vec<(String, String)>,
    sexes: Vec<(String, String)>,
    episodes: Vec<EpisodeRow>,
    can_declare: bool,
    columns: Vec<String>,
    matrix: Vec<StatusRow>,
    /// The form that was refused (`correct`, `rcp_request`, `rcp_opinion`) and its state.
    failed: String,
    form: FormState,
    can_correct: bool,
    regions: Vec<(String, String)>,
    vital_statuses: Vec<(String, String)>,
    reviews: Vec<ReviewRow>,
    /// Reviews awaiting an opinion (or deferred): `(id, label)`.
    awaited: Vec<(String, String)>,
    rcp_levels: Vec<(String, String)>,
    rcp_opinions: Vec<(String, String)>,
    filieres: Vec<(String, String)>,
    drugs: Vec<(String, String)>,
    diseases: Vec<(String, String)>,
    /// The caller's first centre: the one presenting a case by default.
    centre: String,
    can_merge: bool,
    merged_into: String,
    merged_from: Vec<String>,
}

impl Show {
    fn form_of(&self, name: &str) -> FormState {
        if self.failed == name {
            self.form.clone()
        } else if name == "rcp_request" {
            FormState::with(&[
                ("requested_date", chrono::Utc::now().date_naive().to_string()),
                ("centre_finess", self.centre.clone()),
            ])
        } else if name == "rcp_opinion" {
            // The one case awaiting an opinion, when there is one, chosen already.
            let mut values = vec![("meeting_date", chrono::Utc::now().date_naive().to_string())];
            if let [(id, _)] = self.awaited.as_slice() {
                values.push(("review_id", id.clone()));
            }
            FormState::with(&values)
        } else {
            FormState::fresh()
        }
    }
}

/// An RCP review as the patient's page lists it.
pub struct ReviewRow {
    pub requested: String,
    pub level: String,
    pub drug: String,
    pub meeting: String,
    pub opinion: String,
    pub conditions: String,
    /// The treatments declared on its opinion: `(episode id, label)`.
    pub episodes: Vec<(String, String)>,
}

pub async fn show(State(web): State<Web>, signed: Signed, Path(id): Path<String>) -> Response {
    let Ok(id) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    patient_page(&web, &signed, &id, None).await
}

/// The patient's page; `refused` is a refused form (its name and state) to show again.
async fn patient_page(web: &Web, signed: &Signed, id: &RecordId, refused_form: Option<(&str, FormState)>) -> Response {
    let signed = signed.clone();
    let id = id.clone();
    let app = web.app();
    let catalogue = app.catalogue();
    let patient = match ops::get::<Patient>(app, &signed.call(op("GetPatient")), &id).await {
        Ok(p) => p,
        Err(e) => return refused(&signed, e),
    };
    let filter = EpisodeFilter {
        patient_id: Some(id.clone()),
        ..EpisodeFilter::default()
    };
    let page_request = PageRequest { size: 200, token: None };
    let episodes = match ops::list_episodes(app, &signed.call(op("ListEpisodes")), &filter, &page_request).await {
        Ok(p) => p.items,
        Err(e) => return refused(&signed, e),
    };
    let page = signed.page(signed.lang.t("patient.title"));
    let mut rows = Vec::new();
    let mut months = std::collections::HashMap::new();
    for e in &episodes {
        let cohort = match ops::get::<Cohort>(app, &signed.call(op("GetCohort")), &e.record.cohort_id).await {
            Ok(c) => {
                months.insert(e.record.cohort_id.to_string(), c.record.follow_up_months);
                c.record.name
            }
            Err(_) => e.record.cohort_id.to_string(),
        };
        rows.push(episode_row(&catalogue, &page, e, &cohort));
    }
    let (columns, matrix) = match status_matrix(web, &signed, &page, &episodes, &months).await {
        Ok(x) => x,
        Err(e) => return refused(&signed, e),
    };
    let p = &patient.record;
    let refused_correction = refused_form.is_some();
    let (failed, form) = refused_form
        .map(|(name, state)| (name.to_owned(), state))
        .unwrap_or_else(|| (String::new(), FormState::fresh()));
    let lang = signed.lang;
    let reviews = p
        .rcp_reviews
        .iter()
        .map(|x| ReviewRow {
            requested: lang.date(x.requested_on),
            level: match &x.filiere {
                Some(f) => format!("{} · {}", page.label("rcp_level", x.level.code()), f.as_str()),
                None => format!(
                    "{} · {}",
                    page.label("rcp_level", x.level.code()),
                    x.centre_finess.as_str()
                ),
            },
            drug: drug_label(&catalogue, lang, x.drug_atc.as_str()),
            meeting: x.meeting_date.map(|d| lang.date(d)).unwrap_or_default(),
            opinion: x.opinion.map_or_else(
                || lang.t("rcp.awaited").to_owned(),
                |o| page.label("rcp_opinion", o.code()),
            ),
            conditions: x.conditions.clone().unwrap_or_default(),
            episodes: episodes
                .iter()
                .filter(|e| e.record.rcp_review_id.as_ref() == Some(&x.id))
                .map(|e| {
                    (
                        e.meta.id.clone(),
                        format!(
                            "{} · {}",
                            drug_label(&catalogue, lang, e.record.drug_atc.as_str()),
                            lang.date(e.record.request_date)
                        ),
                    )
                })
                .collect(),
        })
        .collect();
    let awaited = p
        .rcp_reviews
        .iter()
        .filter(|x| {
            x.opinion
                .is_none_or(|o| o == observatory_domain::model::RcpOpinion::Deferred)
        })
        .map(|x| (x.id.to_string(), super::episodes::review_label(lang, &catalogue, x)))
        .collect();
    let mut r = render(&Show {
        failed,
        form,
        reviews,
        awaited,
        rcp_levels: labels::options(lang, "rcp_level"),
        rcp_opinions: labels::options(lang, "rcp_opinion"),
        filieres: observatory_domain::reference::filieres()
            .map(|(c, n)| (c.to_owned(), format!("{c} · {n}")))
            .collect(),
        drugs: drug_options(&catalogue),
        diseases: disease_options(&catalogue),
        centre: signed
            .principal
            .scope
            .centres()
            .first()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        can_correct: observatory_app::access::allows("UpdatePatient", signed.role()) && p.merged_into.is_none(),
        can_merge: observatory_app::access::allows("MergePatients", signed.role()) && p.merged_into.is_none(),
        merged_into: p.merged_into.as_ref().map(ToString::to_string).unwrap_or_default(),
        merged_from: p.merged_from.iter().map(ToString::to_string).collect(),
        regions: super::regions(),
        vital_statuses: labels::options(signed.lang, "vital_status"),
        id: patient.meta.id.clone(),
        version: patient.meta.version,
        pseudonym: p.pseudonym.value.clone(),
        kind: p.pseudonym.kind.code().to_owned(),
        sex: page.label("sex", p.sex.code()),
        birth: p.birth_year_month.to_string(),
        region: p
            .region
            .as_ref()
            .map(|r| {
                observatory_domain::reference::region(r.as_str())
                    .map_or_else(|| r.as_str().to_owned(), |n| format!("{n} ({})", r.as_str()))
            })
            .unwrap_or_default(),
        vital_status: page.label("vital_status", p.vital_status.code()),
        objects_to_reuse: p.objects_to_reuse,
        diagnoses: p
            .diagnoses
            .iter()
            .map(|d| {
                let mut text = format!(
                    "{} · {}",
                    disease_label(&catalogue, signed.lang, d.orpha_code.as_str()),
                    page.label("diagnosis_status", d.status.code())
                );
                if let Some(f) = d.severity.factor_level_class {
                    text.push_str(&format!(" · {}", page.label("factor_level_class", f.code())));
                }
                if let Some(i) = d.severity.inhibitor_status {
                    text.push_str(&format!(" · {}", page.label("inhibitor_status", i.code())));
                }
                text
            })
            .collect(),
        cde: cde_facts(&page, &p.cde),
        sexes: labels::options(signed.lang, "sex"),
        episodes: rows,
        can_declare: observatory_app::access::allows("DeclareEpisode", signed.role()) && p.merged_into.is_none(),
        columns,
        matrix,
        page,
    });
    if refused_correction {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

/// The common data elements a record holds, as the patient's page lists them.
fn cde_facts(page: &Page, c: &observatory_domain::model::CommonDataElements) -> Vec<(String, String)> {
    let lang = page.lang;
    let age = |a: &observatory_domain::model::AgeAt| match (a.kind, a.months) {
        (observatory_domain::model::AgeKind::Months, Some(m)) => {
            format!("{} {}", lang.count(u64::from(m)), lang.t("patient.months_unit"))
        }
        (kind, _) => page.label("age_kind", kind.code()),
    };
    let mut facts = Vec::new();
    if let Some(a) = &c.age_at_onset {
        facts.push((lang.t("patient.age_at_onset").to_owned(), age(a)));
    }
    if let Some(a) = &c.age_at_diagnosis {
        facts.push((lang.t("patient.age_at_diagnosis").to_owned(), age(a)));
    }
    if c.undiagnosed {
        facts.push((
            lang.t("patient.undiagnosed").to_owned(),
            lang.t("common.yes").to_owned(),
        ));
    }
    for g in &c.genotype {
        facts.push((
            lang.t("patient.gene").to_owned(),
            format!("{} {}", g.gene, g.variants.join(" ")),
        ));
    }
    if let Some(x) = c.contact_for_research {
        facts.push((
            lang.t("patient.contact_for_research").to_owned(),
            page.label("consent_status", x.code()),
        ));
    }
    if let Some(x) = c.reuse_consent {
        facts.push((
            lang.t("patient.reuse_consent").to_owned(),
            page.label("consent_status", x.code()),
        ));
    }
    facts
}

/// Corrects a patient (sex, birth month, region, vital status, objection to reuse) with a
/// required reason.
pub async fn correct(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(rid) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let request = pb::UpdatePatientRequest {
        id: id.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        reason: f.get("reason").to_owned(),
        region_code: (!f.get("region_code").is_empty()).then(|| f.get("region_code").to_owned()),
        vital_status: pb_enum(f.get("vital_status"), "VITAL_STATUS_", pb::VitalStatus::from_str_name),
        objects_to_reuse: match f.get("objects_to_reuse") {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        diagnoses: None,
        cde: None,
        sex: pb_enum(f.get("sex"), "SEX_", pb::Sex::from_str_name),
        birth_year_month: (!f.get("birth_year_month").is_empty()).then(|| f.get("birth_year_month").to_owned()),
    };
    let outcome = match observatory_grpc::parse::parse_patient_update(&request) {
        Err(s) => Err(s),
        Ok((pid, v, update, reason)) => {
            ops::update_patient(web.app(), &signed.call(op("UpdatePatient")), pid, v, update, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            patient_page(&web, &signed, &rid, Some(("correct", form))).await
        }
    }
}

/// Puts the patient's case to an RCP (national or local).
pub async fn request_rcp(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(rid) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let request = pb::RequestRcpReviewRequest {
        patient_id: id.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        level: pb_enum(f.get("level"), "RCP_LEVEL_", pb::RcpLevel::from_str_name),
        filiere: f.get("filiere").to_owned(),
        centre_finess: f.get("centre_finess").to_owned(),
        drug_atc: f.get("drug_atc").to_owned(),
        indication_orpha_code: f.get("indication_orpha_code").to_owned(),
        requested_date: f.get("requested_date").to_owned(),
    };
    let outcome = match observatory_grpc::parse::parse_rcp_request(&request) {
        Err(s) => Err(s),
        Ok((pid, v, r)) => ops::request_rcp_review(web.app(), &signed.call(op("RequestRcpReview")), pid, v, r)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    rcp_after(&web, &signed, &fields, &rid, "rcp_request", outcome).await
}

/// Records an RCP's opinion on one of the patient's reviews.
pub async fn record_rcp_opinion(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(rid) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let request = pb::RecordRcpOpinionRequest {
        patient_id: id.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        review_id: f.get("review_id").to_owned(),
        meeting_date: f.get("meeting_date").to_owned(),
        opinion: pb_enum(f.get("opinion"), "RCP_OPINION_", pb::RcpOpinion::from_str_name),
        conditions: f.get("conditions").to_owned(),
    };
    let outcome = match observatory_grpc::parse::parse_rcp_opinion(&request) {
        Err(s) => Err(s),
        Ok((pid, v, r)) => ops::record_rcp_opinion(web.app(), &signed.call(op("RecordRcpOpinion")), pid, v, r)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    rcp_after(&web, &signed, &fields, &rid, "rcp_opinion", outcome).await
}

/// Merges another record of the same person into this one: the other record's current
/// version is read (an audited read) and merged, with a required reason.
pub async fn merge(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(rid) = RecordId::parse(&id) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let other = f.get("merged_id");
    let merged_version = match RecordId::parse(other) {
        Ok(other_id) => ops::get::<Patient>(web.app(), &signed.call(op("GetPatient")), &other_id)
            .await
            .map_or(0, |p| p.meta.version),
        Err(_) => 0,
    };
    let request = pb::MergePatientsRequest {
        kept_id: id.clone(),
        kept_version: f.get("expected_version").parse().unwrap_or(0),
        merged_id: other.to_owned(),
        merged_version: merged_version.max(1),
        reason: f.get("reason").to_owned(),
    };
    let outcome = match observatory_grpc::parse::parse_merge(&request) {
        Err(s) => Err(s),
        Ok((kept, merged, reason)) => {
            ops::merge_patients(web.app(), &signed.call(op("MergePatients")), kept, merged, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    rcp_after(&web, &signed, &fields, &rid, "merge", outcome).await
}

async fn rcp_after(
    web: &Web,
    signed: &Signed,
    fields: &crate::form::Fields,
    id: &RecordId,
    form: &str,
    outcome: Result<(), tonic::Status>,
) -> Response {
    match outcome {
        Ok(()) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(status) => {
            let state = FormState::refused(fields, &status, signed.lang);
            patient_page(web, signed, id, Some((form, state))).await
        }
    }
}
