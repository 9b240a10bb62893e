//! Reference data and cohorts: centres and their prescribers (declared and corrected by the
//! admin, read by every role), cohorts (set up, closed and reopened by a filière's data
//! managers), frameworks (read).

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use observatory_app::{reference as refs, registry as ops};
use observatory_domain::{access::Role, codes::Finess, model::Centre};
use observatory_proto::v1 as pb;
use observatory_store::{CentreFilter, CohortFilter, FrameworkFilter, PageRequest, Versioned};

use observatory_domain::catalogue::Catalogue;

use super::patients::{disease_label, drug_label};
use super::{Page, pb_enum, refused, regions, render};
use crate::{Posted, Signed, Web, form::FormState, labels, op};

fn all() -> PageRequest {
    PageRequest { size: 500, token: None }
}

pub struct CentreRow {
    pub finess: String,
    pub name: String,
    pub centre_type: String,
    pub region: String,
    /// Its filières' codes, comma-separated.
    pub filieres: String,
    pub filiere_codes: Vec<String>,
}

fn centre_row(page: &Page, c: &Versioned<Centre>) -> CentreRow {
    let x = &c.record;
    CentreRow {
        finess: x.finess.as_str().to_owned(),
        name: x.name.clone(),
        centre_type: page.label("centre_type", x.centre_type.code()),
        region: observatory_domain::reference::region(x.region.as_str())
            .map_or_else(|| x.region.as_str().to_owned(), str::to_owned),
        filieres: x.filieres.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
        filiere_codes: x.filieres.iter().map(|f| f.as_str().to_owned()).collect(),
    }
}

/// Every filière, as a checkbox shows it.
fn filiere_options() -> Vec<(String, String)> {
    observatory_domain::reference::filieres()
        .map(|(c, n)| (c.to_owned(), format!("{c} · {n}")))
        .collect()
}

#[derive(Template)]
#[template(path = "centres.html")]
struct Centres {
    page: Page,
    rows: Vec<CentreRow>,
    form: FormState,
    can_write: bool,
    types: Vec<(String, String)>,
    regions: Vec<(String, String)>,
    filieres: Vec<(String, String)>,
}

async fn centres_page(web: &Web, signed: &Signed, form: FormState, status: StatusCode) -> Response {
    let lang = signed.lang;
    let centres = match refs::list_centres(
        web.app(),
        &signed.call(op("ListCentres")),
        &CentreFilter::default(),
        &all(),
    )
    .await
    {
        Ok(p) => p.items,
        Err(e) => return refused(signed, e),
    };
    let page = signed.page(lang.t("centres.title"));
    let mut r = render(&Centres {
        rows: centres.iter().map(|c| centre_row(&page, c)).collect(),
        form,
        can_write: observatory_app::access::allows("CreateCentre", signed.role()),
        types: labels::options(lang, "centre_type"),
        regions: regions(),
        filieres: filiere_options(),
        page,
    });
    *r.status_mut() = status;
    r
}

pub async fn centres(State(web): State<Web>, signed: Signed) -> Response {
    centres_page(&web, &signed, FormState::fresh(), StatusCode::OK).await
}

pub async fn create_centre(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::CreateCentreRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        finess: f.get("finess").to_owned(),
        name: f.get("name").to_owned(),
        r#type: pb_enum(f.get("type"), "CENTRE_TYPE_", pb::CentreType::from_str_name),
        region_code: f.get("region_code").to_owned(),
        filieres: f.all("filieres").into_iter().map(str::to_owned).collect(),
    };
    let outcome = match observatory_grpc::parse::parse_centre(&request) {
        Err(s) => Err(s),
        Ok((key, centre)) => refs::create_centre(web.app(), &signed.call(op("CreateCentre")), Some(key), centre)
            .await
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(c) => Redirect::to(&format!("/centres/{}", c.record.finess.as_str())).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            centres_page(&web, &signed, form, super::http_status(&status)).await
        }
    }
}

pub struct PrescriberRow {
    pub rpps: String,
    pub version: i64,
    pub specialty: String,
}

#[derive(Template)]
#[template(path = "centre.html")]
struct CentrePage {
    page: Page,
    centre: CentreRow,
    version: i64,
    prescribers: Vec<PrescriberRow>,
    can_write: bool,
    types: Vec<(String, String)>,
    regions: Vec<(String, String)>,
    filieres: Vec<(String, String)>,
    failed: String,
    form: FormState,
}

impl CentrePage {
    fn form_of(&self, name: &str) -> FormState {
        if self.failed == name {
            self.form.clone()
        } else if name == "centre" {
            // The correction form opens with the centre's filières ticked.
            let ticked: Vec<(&str, String)> = self
                .centre
                .filiere_codes
                .iter()
                .map(|c| ("filieres.filieres", c.clone()))
                .collect();
            FormState::with(&ticked)
        } else {
            FormState::fresh()
        }
    }
}

async fn centre_page(
    web: &Web,
    signed: &Signed,
    finess: &str,
    failed: Option<(String, FormState)>,
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let Ok(finess) = Finess::parse(finess) else {
        return super::failure_for(signed, StatusCode::NOT_FOUND, lang.t("error.not_found"));
    };
    let app = web.app();
    let centre = match refs::get_centre(app, &signed.call(op("GetCentre")), &finess).await {
        Ok(c) => c,
        Err(e) => return refused(signed, e),
    };
    let prescribers =
        match refs::list_prescribers(app, &signed.call(op("ListPrescribers")), Some(&finess), &all()).await {
            Ok(p) => p.items,
            Err(e) => return refused(signed, e),
        };
    let page = signed.page(&centre.record.name);
    let (failed, form) = failed.unwrap_or_default();
    let mut r = render(&CentrePage {
        centre: centre_row(&page, &centre),
        version: centre.meta.version,
        prescribers: prescribers
            .iter()
            .map(|p| PrescriberRow {
                rpps: p.record.rpps.as_str().to_owned(),
                version: p.meta.version,
                specialty: p.record.specialty.clone(),
            })
            .collect(),
        can_write: observatory_app::access::allows("UpdateCentre", signed.role()),
        types: labels::options(lang, "centre_type"),
        regions: regions(),
        filieres: filiere_options(),
        failed,
        form,
        page,
    });
    *r.status_mut() = status;
    r
}

pub async fn centre(State(web): State<Web>, signed: Signed, Path(finess): Path<String>) -> Response {
    centre_page(&web, &signed, &finess, None, StatusCode::OK).await
}

use super::some;

pub async fn update_centre(State(web): State<Web>, Path(finess): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::UpdateCentreRequest {
        finess: finess.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        reason: f.get("reason").to_owned(),
        name: some(f.get("name")),
        r#type: some(f.get("type")).map(|t| pb_enum(&t, "CENTRE_TYPE_", pb::CentreType::from_str_name)),
        region_code: some(f.get("region_code")),
        // The form always shows the filières: those ticked are the centre's (none is refused).
        filieres: Some(pb::FiliereList {
            filieres: f.all("filieres.filieres").into_iter().map(str::to_owned).collect(),
        }),
    };
    let outcome = match observatory_grpc::parse::parse_centre_update(&request) {
        Err(s) => Err(s),
        Ok((id, v, update, reason)) => {
            refs::update_centre(web.app(), &signed.call(op("UpdateCentre")), id, v, update, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/centres/{finess}")).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            centre_page(
                &web,
                &signed,
                &finess,
                Some(("centre".into(), form)),
                super::http_status(&status),
            )
            .await
        }
    }
}

pub async fn create_prescriber(State(web): State<Web>, Path(finess): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::CreatePrescriberRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        rpps: f.get("rpps").to_owned(),
        specialty: f.get("specialty").to_owned(),
        centre_finess: finess.clone(),
    };
    let outcome = match observatory_grpc::parse::parse_prescriber(&request) {
        Err(s) => Err(s),
        Ok((key, p)) => refs::create_prescriber(web.app(), &signed.call(op("CreatePrescriber")), Some(key), p)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/centres/{finess}")).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            centre_page(
                &web,
                &signed,
                &finess,
                Some(("prescriber".into(), form)),
                super::http_status(&status),
            )
            .await
        }
    }
}

pub async fn update_prescriber(State(web): State<Web>, Path(rpps): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let back = f.get("back_finess").to_owned();
    let request = pb::UpdatePrescriberRequest {
        rpps: rpps.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        reason: f.get("reason").to_owned(),
        specialty: some(f.get("specialty")),
        centre_finess: some(f.get("centre_finess")),
    };
    let outcome = match observatory_grpc::parse::parse_prescriber_update(&request) {
        Err(s) => Err(s),
        Ok((id, v, update, reason)) => {
            refs::update_prescriber(web.app(), &signed.call(op("UpdatePrescriber")), id, v, update, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/centres/{}", super::encode(&back))).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            centre_page(
                &web,
                &signed,
                &back,
                Some((format!("prescriber-{rpps}"), form)),
                super::http_status(&status),
            )
            .await
        }
    }
}

pub struct CohortRow {
    pub id: String,
    pub version: i64,
    pub name: String,
    pub filiere: String,
    pub pathway: String,
    pub drug: String,
    pub diseases: String,
    pub months: u32,
    pub status: String,
    pub open: bool,
}

#[derive(Template)]
#[template(path = "cohorts.html")]
struct Cohorts {
    page: Page,
    rows: Vec<CohortRow>,
    form: FormState,
    can_write: bool,
    filieres: Vec<(String, String)>,
    pathways: Vec<(String, String)>,
    drugs: Vec<(String, String)>,
    diseases: Vec<(String, String)>,
    frameworks: Vec<(String, String)>,
}

async fn cohorts_page(web: &Web, signed: &Signed, form: FormState, status: StatusCode) -> Response {
    let lang = signed.lang;
    let app = web.app();
    let catalogue = app.catalogue();
    let cohorts = match ops::list_cohorts(app, &signed.call(op("ListCohorts")), &CohortFilter::default(), &all()).await
    {
        Ok(p) => p.items,
        Err(e) => return refused(signed, e),
    };
    let frameworks = refs::list_frameworks(app, &signed.call(op("ListFrameworks")), &FrameworkFilter::default())
        .await
        .unwrap_or_default();
    let page = signed.page(lang.t("cohorts.title"));
    let rows = cohorts
        .iter()
        .map(|c| {
            let x = &c.record;
            CohortRow {
                id: c.meta.id.clone(),
                version: c.meta.version,
                name: x.name.clone(),
                filiere: x.filiere.as_str().to_owned(),
                pathway: page.label("pathway", x.pathway.code()),
                drug: drug_label(&catalogue, lang, x.drug_atc.as_str()),
                diseases: x
                    .orpha_codes
                    .iter()
                    .map(|o| disease_label(&catalogue, lang, o.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
                months: x.follow_up_months,
                status: page.label("cohort_status", x.status.code()),
                open: x.status == observatory_domain::model::CohortStatus::Open,
            }
        })
        .collect();
    let mut r = render(&Cohorts {
        rows,
        form,
        can_write: observatory_app::access::allows("CreateCohort", signed.role()),
        filieres: signed
            .principal
            .scope
            .filieres()
            .iter()
            .map(|f| (f.as_str().to_owned(), f.as_str().to_owned()))
            .collect(),
        pathways: labels::options(lang, "pathway"),
        drugs: super::patients::drug_options(&catalogue),
        diseases: super::patients::disease_options(&catalogue),
        frameworks: frameworks
            .iter()
            .map(|f| {
                (
                    f.meta.id.clone(),
                    format!(
                        "{} · {} · {}",
                        labels::label(lang, "pathway", f.record.pathway.code()),
                        drug_label(&catalogue, lang, f.record.drug_atc.as_str()),
                        f.record.decision_reference
                    ),
                )
            })
            .collect(),
        page,
    });
    *r.status_mut() = status;
    r
}

pub async fn cohorts(State(web): State<Web>, signed: Signed) -> Response {
    let form = FormState::with(&[("follow_up_months", "6".to_owned())]);
    cohorts_page(&web, &signed, form, StatusCode::OK).await
}

pub async fn create_cohort(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let filiere = match f.get("filiere") {
        "" => signed
            .principal
            .scope
            .filieres()
            .first()
            .map(|x| x.as_str().to_owned())
            .unwrap_or_default(),
        given => given.to_owned(),
    };
    let request = pb::CreateCohortRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        name: f.get("name").to_owned(),
        filiere,
        pathway: pb_enum(f.get("pathway"), "PATHWAY_", pb::Pathway::from_str_name),
        drug_atc: f.get("drug_atc").to_owned(),
        orpha_codes: f.all("orpha_codes").into_iter().map(str::to_owned).collect(),
        framework_id: f.get("framework_id").to_owned(),
        follow_up_months: f.get("follow_up_months").parse().unwrap_or(-1),
    };
    let outcome = match observatory_grpc::parse::parse_cohort(&request) {
        Err(s) => Err(s),
        Ok((key, cohort)) => ops::create_cohort(web.app(), &signed.call(op("CreateCohort")), Some(key), cohort)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(()) => Redirect::to("/cohorts").into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            cohorts_page(&web, &signed, form, super::http_status(&status)).await
        }
    }
}

pub async fn transition_cohort(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let request = pb::TransitionCohortRequest {
        id,
        expected_version: fields.get("expected_version").parse().unwrap_or(0),
        transition: pb_enum(
            fields.get("transition"),
            "COHORT_TRANSITION_",
            pb::CohortTransition::from_str_name,
        ),
    };
    let outcome = match observatory_grpc::parse::parse_cohort_transition(&request) {
        Err(s) => Err(s),
        Ok((id, v, t)) => ops::transition_cohort(web.app(), &signed.call(op("TransitionCohort")), id, v, t)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(()) => Redirect::to("/cohorts").into_response(),
        Err(status) => super::failure_for(
            &signed,
            super::http_status(&status),
            &super::explain(signed.lang, &status),
        ),
    }
}

pub struct FrameworkRow {
    pub id: String,
    pub pathway: String,
    pub drug: String,
    pub indication: String,
    pub decision: String,
    pub validity: String,
    pub status: String,
    pub protocol: String,
    pub requires_national_rcp: bool,
    /// The interval between synthesis reports, in words.
    pub synthesis_every: String,
}

#[derive(Template)]
#[template(path = "frameworks.html")]
struct Frameworks {
    page: Page,
    rows: Vec<FrameworkRow>,
    form: FormState,
    can_write: bool,
    pathways: Vec<(String, String)>,
    drugs: Vec<(String, String)>,
    diseases: Vec<(String, String)>,
    statuses: Vec<(String, String)>,
    protocols: Vec<(String, String)>,
}

pub async fn frameworks(State(web): State<Web>, signed: Signed) -> Response {
    let form = FormState::with(&[
        ("authority", "HAS".to_owned()),
        ("status", "GRANTED".to_owned()),
        ("protocol_type", "PUT_RD".to_owned()),
        ("follow_up_months", "6".to_owned()),
    ]);
    frameworks_page(&web, &signed, form, StatusCode::OK).await
}

fn framework_row(
    catalogue: &Catalogue,
    page: &Page,
    f: &Versioned<observatory_domain::model::Framework>,
) -> FrameworkRow {
    let lang = page.lang;
    let x = &f.record;
    FrameworkRow {
        id: f.meta.id.clone(),
        pathway: page.label("pathway", x.pathway.code()),
        drug: drug_label(catalogue, page.lang, x.drug_atc.as_str()),
        indication: x.indication.clone(),
        decision: format!("{} {}", x.authority, x.decision_reference),
        validity: format!(
            "{} → {}",
            lang.date(x.valid_from),
            x.valid_to
                .map_or_else(|| lang.t("framework.open_ended").to_owned(), |d| lang.date(d))
        ),
        status: page.label("framework_status", x.status.code()),
        protocol: format!(
            "{}{} · {} {}",
            x.protocol_type.code(),
            if x.protocol_version.is_empty() {
                String::new()
            } else {
                format!(" v{}", x.protocol_version)
            },
            x.follow_up_months,
            lang.t("frameworks.months")
        ),
        requires_national_rcp: x.requires_national_rcp,
        synthesis_every: match x.synthesis_months {
            0 => lang.t("frameworks.synthesis_none").to_owned(),
            n => lang.t("frameworks.every_months").replace("{n}", &n.to_string()),
        },
    }
}

async fn frameworks_page(web: &Web, signed: &Signed, form: FormState, status: StatusCode) -> Response {
    let lang = signed.lang;
    let all = match refs::list_frameworks(
        web.app(),
        &signed.call(op("ListFrameworks")),
        &FrameworkFilter::default(),
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return refused(signed, e),
    };
    let page = signed.page(lang.t("frameworks.title"));
    let catalogue = web.app().catalogue();
    let rows = all.iter().map(|f| framework_row(&catalogue, &page, f)).collect();
    let mut r = render(&Frameworks {
        rows,
        form,
        can_write: observatory_app::access::allows("CreateFramework", signed.role()),
        pathways: labels::options(lang, "pathway")
            .into_iter()
            .filter(|(c, _)| observatory_domain::model::Pathway::from_code(c).is_some_and(|p| p.needs_framework()))
            .collect(),
        drugs: super::patients::drug_options(&catalogue),
        diseases: super::patients::disease_options(&catalogue),
        statuses: labels::options(lang, "framework_status"),
        protocols: ["NONE", "PUT_RD", "PUT_SP"]
            .iter()
            .map(|c| ((*c).to_owned(), (*c).to_owned()))
            .collect(),
        page,
    });
    *r.status_mut() = status;
    r
}

pub async fn create_framework(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let request = pb::CreateFrameworkRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        pathway: pb_enum(f.get("pathway"), "PATHWAY_", pb::Pathway::from_str_name),
        drug_atc: f.get("drug_atc").to_owned(),
        indication: f.get("indication").to_owned(),
        orpha_codes: f.all("orpha_codes").into_iter().map(str::to_owned).collect(),
        authority: f.get("authority").to_owned(),
        decision_reference: f.get("decision_reference").to_owned(),
        valid_from: f.get("valid_from").to_owned(),
        valid_to: f.get("valid_to").to_owned(),
        status: pb_enum(f.get("status"), "FRAMEWORK_STATUS_", pb::FrameworkStatus::from_str_name),
        protocol_type: pb_enum(
            f.get("protocol_type"),
            "PROTOCOL_TYPE_",
            pb::ProtocolType::from_str_name,
        ),
        protocol_version: f.get("protocol_version").to_owned(),
        follow_up_months: f.get("follow_up_months").parse().unwrap_or(-1),
        source: f.get("source").to_owned(),
        confirmed: f.ticked("confirmed"),
        requires_national_rcp: f.ticked("requires_national_rcp"),
        // Left empty: none set.
        synthesis_months: match f.get("synthesis_months") {
            "" => 0,
            n => n.parse().unwrap_or(-1),
        },
    };
    let outcome = match observatory_grpc::parse::parse_framework(&request) {
        Err(s) => Err(s),
        Ok((key, framework)) => {
            refs::create_framework(web.app(), &signed.call(op("CreateFramework")), Some(key), framework)
                .await
                .map_err(observatory_grpc::error::app)
        }
    };
    match outcome {
        Ok(x) => Redirect::to(&format!("/frameworks/{}", x.meta.id)).into_response(),
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            frameworks_page(&web, &signed, form, super::http_status(&status)).await
        }
    }
}

#[derive(Template)]
#[template(path = "framework.html")]
struct FrameworkPage {
    page: Page,
    framework: FrameworkRow,
    version: i64,
    can_write: bool,
    steps: Vec<(String, String)>,
    form: FormState,
    /// The periodic synthesis form, for those who run reports.
    can_synthesise: bool,
    synthesis: FormState,
    /// The next synthesis due, or why none is.
    next_due: String,
    /// Whether a period is due (the form then holds its dates).
    due: bool,
    languages: Vec<(String, String)>,
}

/// The synthesis form's defaults, in the reader's language: the next period due under the
/// framework's periodicity, or else the last half-year that has ended.
fn synthesis_defaults(lang: crate::i18n::Lang, due: Option<(chrono::NaiveDate, chrono::NaiveDate)>) -> FormState {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let (from, to) = if let Some((from, to)) = due {
        (from.to_string(), to.to_string())
    } else if today.month() > 6 {
        (format!("{}-01-01", today.year()), format!("{}-06-30", today.year()))
    } else {
        (
            format!("{}-07-01", today.year() - 1),
            format!("{}-12-31", today.year() - 1),
        )
    };
    FormState::with(&[
        ("range.from", from),
        ("range.to", to),
        ("language", lang.code().to_owned()),
    ])
}

/// The framework's page with the synthesis form as refused.
pub async fn framework_with_synthesis_form(
    web: &Web,
    signed: &Signed,
    id: &str,
    synthesis: FormState,
    status: StatusCode,
) -> Response {
    let form = FormState::with(&[("date", super::today())]);
    framework_page_with(web, signed, id, form, Some(synthesis), status).await
}

async fn framework_page(web: &Web, signed: &Signed, id: &str, form: FormState, status: StatusCode) -> Response {
    framework_page_with(web, signed, id, form, None, status).await
}

/// The framework's page; `synthesis` is the synthesis form as refused, `None` for its defaults.
async fn framework_page_with(
    web: &Web,
    signed: &Signed,
    id: &str,
    form: FormState,
    synthesis: Option<FormState>,
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let Ok(rid) = observatory_domain::model::RecordId::parse(id) else {
        return super::failure_for(signed, StatusCode::NOT_FOUND, lang.t("error.not_found"));
    };
    let f = match refs::get_framework(web.app(), &signed.call(op("GetFramework")), &rid).await {
        Ok(f) => f,
        Err(e) => return refused(signed, e),
    };
    let page = signed.page(lang.t("frameworks.one"));
    let can_synthesise = observatory_app::access::allows("RunSynthesis", signed.role());
    // The next period due, for those who write syntheses (and so may know which are written).
    let due = if can_synthesise {
        observatory_app::reports::synthesis_due(
            web.reports(),
            &signed.call(op("RunSynthesis")),
            &observatory_analytics::synthesis::Target::Framework(rid.to_string()),
            chrono::Utc::now().date_naive(),
        )
        .await
    } else {
        Err(observatory_app::AppError::Internal("not asked"))
    };
    let next_due = match &due {
        Ok((from, to)) => format!("{} → {}", lang.date(*from), lang.date(*to)),
        // Why none is due, as the operation words it, after the field it names.
        Err(observatory_app::AppError::Store(observatory_store::StoreError::Domain(
            observatory_domain::DomainError::Precondition(why),
        ))) => {
            let why = why.split_once(": ").map_or(why.as_str(), |(_, rest)| rest);
            format!("{} ({why})", lang.t("synthesis.none_due"))
        }
        Err(_) => lang.t("synthesis.none_due").to_owned(),
    };
    let due = due.ok();
    let synthesis = synthesis.unwrap_or_else(|| synthesis_defaults(lang, due));
    let mut r = render(&FrameworkPage {
        framework: framework_row(&web.app().catalogue(), &page, &f),
        version: f.meta.version,
        can_write: observatory_app::access::allows("TransitionFramework", signed.role()),
        steps: FRAMEWORK_STEPS
            .iter()
            .map(|s| ((*s).to_owned(), crate::labels::label(lang, "framework_step", s)))
            .collect(),
        form,
        can_synthesise,
        synthesis,
        next_due,
        due: due.is_some(),
        languages: vec![
            ("fr".to_owned(), lang.t("synthesis.french").to_owned()),
            ("en".to_owned(), lang.t("synthesis.english").to_owned()),
        ],
        page,
    });
    *r.status_mut() = status;
    r
}

/// The steps of a framework's lifecycle, as the contract names them.
pub const FRAMEWORK_STEPS: [&str; 10] = [
    "start_review",
    "grant",
    "refuse",
    "submit_renewal",
    "renew",
    "suspend",
    "reinstate",
    "withdraw",
    "end",
    "amend_protocol",
];

pub async fn framework(State(web): State<Web>, signed: Signed, Path(id): Path<String>) -> Response {
    let form = FormState::with(&[("date", super::today())]);
    framework_page(&web, &signed, &id, form, StatusCode::OK).await
}

pub async fn transition_framework(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    use pb::transition_framework_request::{AmendProtocol, DatedStep, Grant, Renew, Transition as T};
    let Posted { signed, fields } = posted;
    let f = &fields;
    let date = f.get("date").to_owned();
    let step = || DatedStep { date: date.clone() };
    let transition = match f.get("step") {
        "start_review" => Some(T::StartReview(step())),
        "grant" => Some(T::Grant(Grant {
            date: date.clone(),
            valid_from: f.get("valid_from").to_owned(),
            valid_to: f.get("valid_to").to_owned(),
        })),
        "refuse" => Some(T::Refuse(step())),
        "submit_renewal" => Some(T::SubmitRenewal(step())),
        "renew" => Some(T::Renew(Renew {
            date: date.clone(),
            valid_to: f.get("valid_to").to_owned(),
        })),
        "suspend" => Some(T::Suspend(step())),
        "reinstate" => Some(T::Reinstate(step())),
        "withdraw" => Some(T::Withdraw(step())),
        "end" => Some(T::End(step())),
        "amend_protocol" => Some(T::AmendProtocol(AmendProtocol {
            date: date.clone(),
            protocol_version: f.get("protocol_version").to_owned(),
            synthesis_months: match f.get("synthesis_months") {
                "" => 0,
                n => n.parse().unwrap_or(-1),
            },
        })),
        _ => None,
    };
    let request = pb::TransitionFrameworkRequest {
        id: id.clone(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        transition,
    };
    let outcome = match observatory_grpc::parse::parse_framework_transition(&request) {
        Err(s) => Err(s),
        Ok((rid, v, t)) => refs::transition_framework(web.app(), &signed.call(op("TransitionFramework")), rid, v, t)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/frameworks/{id}")).into_response(),
        Err(status) => {
            // The contract names a step's fields by the step (`grant.valid_from`); this one form
            // holds them for every step, by their plain names.
            let mut state = FormState::refused(&fields, &status, signed.lang);
            state.unprefix();
            framework_page(&web, &signed, &id, state, super::http_status(&status)).await
        }
    }
}

/// Whether a role sees the reference sections in its navigation.
pub fn reads_reference(role: Role) -> bool {
    matches!(role, Role::Admin | Role::DataManager)
}
