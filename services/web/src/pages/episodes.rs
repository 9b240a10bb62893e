//! Episodes: declaration (with the fields of its pathway), the episode's page with its
//! authorisation, visits and adverse events, and the forms of every step of its life.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use observatory_app::{reference as refs, registry as ops};
use observatory_domain::model::{
    AdverseEvent, Authorisation, Cohort, Episode, FollowUp, Framework, Pathway, Patient, RecordId,
};
use observatory_proto::v1 as pb;
use observatory_store::{PageRequest, Versioned};
use serde::Deserialize;

use super::patients::{disease_label, drug_label};
use super::{Page, date_opt, number, pb_enum, refused, render, short_pseudonym, today};
use crate::{
    Posted, Signed, Web,
    form::{Fields, FormState},
    labels, op,
};

pub(super) fn not_found(signed: &Signed) -> Response {
    super::failure_for(signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"))
}

// ---- Declaration ------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "episode_new.html")]
struct New {
    page: Page,
    form: FormState,
    patient_id: String,
    patient: String,
    cohorts: Vec<(String, String)>,
    /// The chosen cohort, once there is one: the rest of the form follows it.
    cohort: Option<CohortView>,
    prescribers: Vec<(String, String)>,
    centres: Vec<String>,
    axes: Vec<(String, String)>,
    opinions: Vec<(String, String)>,
    levels: Vec<(String, String)>,
    routes: Vec<(String, String)>,
    /// The patient's RCP reviews whose opinion was given: `(id, label)`.
    reviews: Vec<(String, String)>,
}

/// An RCP review in one line: its meeting, level, opinion and drug.
pub(super) fn review_label(
    lang: crate::i18n::Lang,
    catalogue: &observatory_domain::catalogue::Catalogue,
    r: &observatory_domain::model::RcpReview,
) -> String {
    let mut s = format!(
        "{} · {} · {}",
        r.meeting_date
            .map_or_else(|| lang.date(r.requested_on), |d| lang.date(d)),
        labels::label(lang, "rcp_level", r.level.code()),
        r.opinion.map_or_else(
            || lang.t("rcp.awaited").to_owned(),
            |o| labels::label(lang, "rcp_opinion", o.code())
        ),
    );
    s.push_str(" · ");
    s.push_str(&drug_label(catalogue, lang, r.drug_atc.as_str()));
    s
}

/// A cohort as the declaration form shows it, with its framework.
pub struct CohortView {
    pub id: String,
    pub name: String,
    pub pathway: String,
    pub pathway_code: &'static str,
    pub drug: String,
    pub diseases: Vec<(String, String)>,
    pub framework: Option<String>,
    /// Pathways decided patient by patient, which file an authorisation request with the
    /// declaration.
    pub per_patient: bool,
    pub off_label: bool,
    /// The framework takes a declaration only with a favourable national RCP opinion.
    pub requires_national_rcp: bool,
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    cohort: String,
    /// A switch: the episode the new one replaces, and the version it was read at.
    #[serde(default)]
    previous: String,
    #[serde(default)]
    previous_version: String,
}

async fn cohort_view(web: &Web, signed: &Signed, id: &RecordId) -> Option<CohortView> {
    let app = web.app();
    let catalogue = app.catalogue();
    let lang = signed.lang;
    let c = ops::get::<Cohort>(app, &signed.call(op("GetCohort")), id).await.ok()?;
    let framework = match &c.record.framework_id {
        None => None,
        Some(fid) => refs::get_framework(app, &signed.call(op("GetFramework")), fid)
            .await
            .ok(),
    };
    let requires_national_rcp = framework.as_ref().is_some_and(|f| f.record.requires_national_rcp);
    let framework = framework.map(|f| framework_text(lang, &f));
    let pathway = c.record.pathway;
    Some(CohortView {
        id: c.meta.id.clone(),
        name: c.record.name.clone(),
        pathway: labels::label(lang, "pathway", pathway.code()),
        pathway_code: pathway.code(),
        drug: drug_label(&catalogue, signed.lang, c.record.drug_atc.as_str()),
        diseases: c
            .record
            .orpha_codes
            .iter()
            .map(|o| {
                (
                    o.as_str().to_owned(),
                    disease_label(&catalogue, signed.lang, o.as_str()),
                )
            })
            .collect(),
        framework,
        per_patient: matches!(pathway, Pathway::Aac | Pathway::AtuNominative),
        off_label: pathway == Pathway::OffLabel,
        requires_national_rcp,
    })
}

/// A framework in one line: its decision, validity and status.
fn framework_text(lang: crate::i18n::Lang, f: &Versioned<Framework>) -> String {
    let x = &f.record;
    let to = x
        .valid_to
        .map_or_else(|| lang.t("framework.open_ended").to_owned(), |d| lang.date(d));
    format!(
        "{} {} · {} {} {} {} · {}",
        x.authority,
        x.decision_reference,
        lang.t("framework.valid_from"),
        lang.date(x.valid_from),
        lang.t("framework.valid_to"),
        to,
        labels::label(lang, "framework_status", x.status.code()),
    )
}

async fn new_page(web: &Web, signed: &Signed, patient_id: &RecordId, cohort: &str, form: FormState) -> Response {
    let app = web.app();
    let lang = signed.lang;
    let patient = match ops::get::<Patient>(app, &signed.call(op("GetPatient")), patient_id).await {
        Ok(p) => p,
        Err(e) => return refused(signed, e),
    };
    let cohorts = super::patients::cohort_options(web, signed).await;
    let cohort = match RecordId::parse(cohort) {
        Ok(id) => cohort_view(web, signed, &id).await,
        Err(_) => None,
    };
    let centres: Vec<String> = signed
        .principal
        .scope
        .centres()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let mut prescribers = Vec::new();
    for centre in signed.principal.scope.centres() {
        if let Ok(p) = refs::list_prescribers(
            app,
            &signed.call(op("ListPrescribers")),
            Some(centre),
            &PageRequest { size: 200, token: None },
        )
        .await
        {
            prescribers.extend(p.items.into_iter().map(|x| {
                let rpps = x.record.rpps.as_str().to_owned();
                (
                    rpps.clone(),
                    format!("{rpps} · {} · {}", x.record.specialty, centre.as_str()),
                )
            }));
        }
    }
    let mut r = render(&New {
        page: signed.page(lang.t("episode_new.title")),
        form,
        patient_id: patient.meta.id.clone(),
        patient: short_pseudonym(&patient.record.pseudonym),
        cohorts,
        cohort,
        prescribers,
        centres,
        axes: labels::options(lang, "off_label_axis"),
        opinions: labels::options(lang, "rcp_opinion"),
        levels: labels::options(lang, "rcp_level"),
        routes: labels::options(lang, "route"),
        reviews: patient
            .record
            .rcp_reviews
            .iter()
            .filter(|x| {
                x.opinion
                    .is_some_and(|o| o != observatory_domain::model::RcpOpinion::Deferred)
            })
            .map(|x| (x.id.to_string(), review_label(lang, &app.catalogue(), x)))
            .collect(),
    });
    *r.status_mut() = StatusCode::OK;
    r
}

pub async fn new(
    State(web): State<Web>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<NewQuery>,
) -> Response {
    let Ok(id) = RecordId::parse(&id) else {
        return not_found(&signed);
    };
    let form = FormState::with(&[
        ("cohort_id", q.cohort.clone()),
        ("request_date", today()),
        ("authorisation.submitted_date", today()),
        ("previous_episode_id", q.previous.clone()),
        ("previous_episode_version", q.previous_version.clone()),
    ]);
    new_page(&web, &signed, &id, &q.cohort, form).await
}

/// The declaration a form asks for, as the contract's request.
fn declaration(f: &Fields) -> pb::DeclareEpisodeRequest {
    let pathway = f.get("pathway");
    let per_patient = matches!(pathway, "AAC" | "ATU_NOMINATIVE");
    let some_of = |names: &[&str]| names.iter().any(|n| !f.get(n).is_empty());
    pb::DeclareEpisodeRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        patient_id: f.get("patient_id").to_owned(),
        cohort_id: f.get("cohort_id").to_owned(),
        pathway: pb_enum(pathway, "PATHWAY_", pb::Pathway::from_str_name),
        indication_orpha_code: f.get("indication_orpha_code").to_owned(),
        prescriber_rpps: f.get("prescriber_rpps").to_owned(),
        centre_finess: f.get("centre_finess").to_owned(),
        rcp: some_of(&["rcp.date", "rcp.opinion", "rcp.level"]).then(|| pb::Rcp {
            date: f.get("rcp.date").to_owned(),
            opinion: pb_enum(f.get("rcp.opinion"), "RCP_OPINION_", pb::RcpOpinion::from_str_name),
            level: pb_enum(f.get("rcp.level"), "RCP_LEVEL_", pb::RcpLevel::from_str_name),
        }),
        off_label: (pathway == "OFF_LABEL").then(|| pb::OffLabelJustification {
            axes: f
                .all("off_label.axes")
                .into_iter()
                .map(|a| pb_enum(a, "OFF_LABEL_AXIS_", pb::OffLabelAxis::from_str_name))
                .collect(),
            evidence_reference: f.get("off_label.evidence_reference").to_owned(),
        }),
        dosage: dosage(f, "dosage"),
        request_date: f.get("request_date").to_owned(),
        authorisation: per_patient.then(|| pb::AuthorisationRequest {
            submitted_date: f.get("authorisation.submitted_date").to_owned(),
            reference: f.get("authorisation.reference").to_owned(),
        }),
        previous_episode_id: f.get("previous_episode_id").to_owned(),
        previous_episode_version: f.get("previous_episode_version").parse().unwrap_or(0),
        dispense_first: per_patient && f.ticked("dispense_first"),
        rcp_review_id: f.get("rcp_review_id").to_owned(),
    }
}

pub(super) fn dosage(f: &Fields, prefix: &str) -> Option<pb::Dosage> {
    let name = |n: &str| format!("{prefix}.{n}");
    let given = ["dose", "unit", "frequency", "route"]
        .iter()
        .any(|n| !f.get(&name(n)).is_empty());
    given.then(|| pb::Dosage {
        dose: number(f.get(&name("dose"))),
        unit: f.get(&name("unit")).to_owned(),
        frequency: f.get(&name("frequency")).to_owned(),
        route: pb_enum(f.get(&name("route")), "ROUTE_", pb::Route::from_str_name),
    })
}

pub async fn declare(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let request = declaration(&fields);
    let patient = fields.get("patient_id").to_owned();
    let cohort = fields.get("cohort_id").to_owned();
    let outcome = match observatory_grpc::parse::parse_declaration(&request) {
        Err(status) => Err(status),
        Ok((key, d)) => ops::declare_episode(web.app(), &signed.call(op("DeclareEpisode")), Some(key), d)
            .await
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok(d) => Redirect::to(&format!("/episodes/{}", d.episode.meta.id)).into_response(),
        Err(status) => {
            let Ok(patient_id) = RecordId::parse(&patient) else {
                return super::failure_for(&signed, StatusCode::BAD_REQUEST, &super::explain(signed.lang, &status));
            };
            let form = FormState::refused(&fields, &status, signed.lang);
            let mut r = new_page(&web, &signed, &patient_id, &cohort, form).await;
            *r.status_mut() = super::http_status(&status);
            r
        }
    }
}

// ---- The episode's page -----------------------------------------------------------------

pub struct Visit {
    pub id: String,
    pub version: i64,
    pub date: String,
    pub efficacy: String,
    pub adherence: String,
    pub weight: String,
    pub measures: String,
}

pub struct Event {
    pub id: String,
    /// The seriousness criteria, in words.
    pub criteria: String,
    pub version: i64,
    pub onset: String,
    pub pt: String,
    pub soc: String,
    pub serious: bool,
    pub outcome: String,
    pub causality: String,
    pub declared: String,
}

pub struct AuthorisationView {
    pub id: String,
    pub version: i64,
    pub status: String,
    pub status_code: &'static str,
    pub reference: String,
    pub submitted: String,
    pub decision: String,
    pub valid_from: String,
    pub valid_to: String,
    pub renewals: u32,
    /// Awaiting a decision: grant, refuse, ask for information.
    pub pending: bool,
    /// In force: renewal, suspension, withdrawal, expiry.
    pub in_force: bool,
    pub renewal_pending: bool,
}

/// A measure field of the visit form: its code, what it measures, its valid range.
pub struct MeasureField {
    pub code: &'static str,
    pub description: &'static str,
    pub range: String,
}

#[derive(Template)]
#[template(path = "episode.html")]
struct Show {
    page: Page,
    id: String,
    version: i64,
    patient_id: String,
    patient: String,
    cohort: String,
    pathway: String,
    drug: String,
    indication: String,
    prescriber: String,
    centre: String,
    framework: Option<String>,
    status: String,
    status_code: &'static str,
    request_date: String,
    decision_date: String,
    first_administration: String,
    end_date: String,
    stop_reason: String,
    dosage: String,
    rcp: String,
    off_label: String,
    authorisation: Option<AuthorisationView>,
    visits: Vec<Visit>,
    events: Vec<Event>,
    measures: Vec<MeasureField>,
    /// The form that was refused, by name, and its state; the others are fresh.
    failed: String,
    form: FormState,
    can_write: bool,
    can_correct: bool,
    declared: bool,
    /// A visit may be recorded: a baseline before the first administration, long-term
    /// follow-up after a stop.
    visits_open: bool,
    active: bool,
    stop_reasons: Vec<(String, String)>,
    /// A one-shot treatment (a gene therapy).
    single_administration: bool,
    efficacies: Vec<(String, String)>,
    adherences: Vec<(String, String)>,
    outcomes: Vec<(String, String)>,
    causalities: Vec<(String, String)>,
    criteria: Vec<(String, String)>,
    drug_actions: Vec<(String, String)>,
    challenges: Vec<(String, String)>,
    reporters: Vec<(String, String)>,
    /// The first administration is recorded (and may be corrected).
    started: bool,
    /// The episode ended and its end date may be corrected (a switch's end is its successor's).
    end_correctable: bool,
    indications: Vec<(String, String)>,
    routes: Vec<(String, String)>,
    /// Initial values of the correction forms: the episode and authorisation as recorded.
    recorded: Vec<(String, String)>,
}

impl Show {
    /// The state of form `name`: the refused one as it was sent, the others fresh.
    fn form_of(&self, name: &str) -> FormState {
        if self.failed == name {
            self.form.clone()
        } else {
            let mut values: Vec<(&str, String)> = self.recorded.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            values.extend([
                ("date", today()),
                ("visit_date", today()),
                ("onset_date", today()),
                ("grant.decision_date", today()),
                ("grant.valid_from", today()),
                ("initiate.first_administration_date", today()),
                ("stop.date", today()),
                ("refuse.date", today()),
                ("submit_renewal.date", today()),
                ("renew.decision_date", today()),
            ]);
            FormState::with(&values)
        }
    }
}

async fn episode_page(web: &Web, signed: &Signed, id: &RecordId, failed: Option<(&str, FormState)>) -> Response {
    let app = web.app();
    let catalogue = app.catalogue();
    let lang = signed.lang;
    let episode = match ops::get::<Episode>(app, &signed.call(op("GetEpisode")), id).await {
        Ok(e) => e,
        Err(e) => return refused(signed, e),
    };
    let e = &episode.record;
    let patient = match ops::get::<Patient>(app, &signed.call(op("GetPatient")), &e.patient_id).await {
        Ok(p) => short_pseudonym(&p.record.pseudonym),
        Err(err) => return refused(signed, err),
    };
    let cohort_record = ops::get::<Cohort>(app, &signed.call(op("GetCohort")), &e.cohort_id)
        .await
        .ok();
    let cohort = cohort_record
        .as_ref()
        .map_or_else(|| e.cohort_id.to_string(), |c| c.record.name.clone());
    let indications = cohort_record
        .iter()
        .flat_map(|c| c.record.orpha_codes.iter())
        .map(|o| (o.as_str().to_owned(), disease_label(&catalogue, lang, o.as_str())))
        .collect();
    let framework = match &e.framework_id {
        None => None,
        Some(fid) => refs::get_framework(app, &signed.call(op("GetFramework")), fid)
            .await
            .ok()
            .map(|f| framework_text(lang, &f)),
    };
    let authorisation = match &e.authorisation_id {
        None => None,
        Some(aid) => match ops::get::<Authorisation>(app, &signed.call(op("GetAuthorisation")), aid).await {
            Ok(a) => Some((authorisation_view(lang, &a), a.record)),
            Err(err) => return refused(signed, err),
        },
    };
    let page_request = PageRequest { size: 200, token: None };
    let visits = match ops::list_by_episode::<FollowUp>(app, &signed.call(op("ListFollowUps")), id, &page_request).await
    {
        Ok(p) => p.items,
        Err(err) => return refused(signed, err),
    };
    let events =
        match ops::list_by_episode::<AdverseEvent>(app, &signed.call(op("ListAdverseEvents")), id, &page_request).await
        {
            Ok(p) => p.items,
            Err(err) => return refused(signed, err),
        };
    let page = signed.page(lang.t("episode.title"));
    let (failed, form) = match failed {
        Some((name, form)) => (name.to_owned(), form),
        None => (String::new(), FormState::default()),
    };
    let measures = observatory_domain::reference::measures_for_disease(e.indication.as_str())
        .iter()
        .filter_map(|c| observatory_domain::reference::measure(c))
        .map(|m| MeasureField {
            code: m.code,
            description: m.description,
            range: format!("{} – {}", m.min, m.max),
        })
        .collect();
    let status = e.status;
    use observatory_domain::model::EpisodeStatus as S;
    let show = Show {
        id: episode.meta.id.clone(),
        version: episode.meta.version,
        patient_id: e.patient_id.to_string(),
        patient,
        cohort,
        pathway: page.label("pathway", e.pathway.code()),
        drug: drug_label(&catalogue, signed.lang, e.drug_atc.as_str()),
        indication: disease_label(&catalogue, signed.lang, e.indication.as_str()),
        prescriber: e.prescriber_rpps.as_str().to_owned(),
        centre: e.centre_finess.as_str().to_owned(),
        framework,
        status: page.label("episode_status", status.code()),
        status_code: status.code(),
        request_date: lang.date(e.request_date),
        decision_date: date_opt(lang, e.decision_date),
        first_administration: date_opt(lang, e.first_administration_date),
        end_date: date_opt(lang, e.end_date),
        stop_reason: e
            .stop_reason
            .map(|r| page.label("stop_reason", r.code()))
            .unwrap_or_default(),
        dosage: e
            .dosage
            .as_ref()
            .map(|d| {
                format!(
                    "{} {} · {} · {}",
                    d.dose,
                    d.unit,
                    d.frequency,
                    page.label("route", d.route.code())
                )
            })
            .unwrap_or_default(),
        rcp: e
            .rcp
            .as_ref()
            .map(|r| {
                let level = r.level.map(|l| page.label("rcp_level", l.code()));
                [
                    Some(lang.date(r.date)),
                    level,
                    Some(page.label("rcp_opinion", r.opinion.code())),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ")
            })
            .unwrap_or_default(),
        off_label: e
            .off_label
            .as_ref()
            .map(|o| {
                let axes: Vec<String> = o.axes.iter().map(|a| page.label("off_label_axis", a.code())).collect();
                format!("{} · {}", axes.join(", "), o.evidence_reference)
            })
            .unwrap_or_default(),
        recorded: super::episode_corrections::recorded(e, authorisation.as_ref().map(|(_, a)| a)),
        authorisation: authorisation.map(|(view, _)| view),
        visits: visits.iter().map(|v| visit(lang, v)).collect(),
        events: events.iter().map(|x| event(lang, x)).collect(),
        measures,
        failed,
        form,
        can_write: observatory_app::access::allows("RecordFollowUp", signed.role()),
        can_correct: observatory_app::access::allows("UpdateAdverseEvent", signed.role()),
        declared: status == S::Declared,
        active: matches!(status, S::Initiated | S::Ongoing),
        visits_open: matches!(status, S::Declared | S::Initiated | S::Ongoing | S::Stopped),
        // A one-shot treatment given once has its follow-up end; another is stopped for a reason.
        stop_reasons: labels::options(lang, "stop_reason")
            .into_iter()
            .filter(|(code, _)| {
                let given_once = e.single_administration && e.first_administration_date.is_some();
                if given_once {
                    code == "END_OF_FOLLOW_UP" || code == "OTHER"
                } else {
                    code != "END_OF_FOLLOW_UP"
                }
            })
            .collect(),
        single_administration: e.single_administration,
        efficacies: labels::options(lang, "efficacy"),
        adherences: labels::options(lang, "adherence"),
        outcomes: labels::options(lang, "ae_outcome"),
        causalities: labels::options(lang, "causality"),
        criteria: labels::options(lang, "seriousness"),
        drug_actions: labels::options(lang, "drug_action"),
        challenges: labels::options(lang, "challenge"),
        reporters: labels::options(lang, "reporter"),
        started: e.first_administration_date.is_some(),
        end_correctable: e.end_date.is_some() && status != S::Switched,
        indications,
        routes: labels::options(lang, "route"),
        page,
    };
    render(&show)
}

fn authorisation_view(lang: crate::i18n::Lang, a: &Versioned<Authorisation>) -> AuthorisationView {
    use observatory_domain::model::AuthorisationStatus as A;
    let x = &a.record;
    AuthorisationView {
        id: a.meta.id.clone(),
        version: a.meta.version,
        status: labels::label(lang, "authorisation_status", x.status.code()),
        status_code: x.status.code(),
        reference: x.reference.clone().unwrap_or_default(),
        submitted: lang.date(x.submitted_date),
        decision: date_opt(lang, x.decision_date),
        valid_from: date_opt(lang, x.valid_from),
        valid_to: date_opt(lang, x.valid_to),
        renewals: x.renewals,
        pending: matches!(x.status, A::Submitted | A::InformationRequested),
        in_force: matches!(x.status, A::Granted | A::Renewed),
        renewal_pending: x.status == A::RenewalSubmitted,
    }
}

fn visit(lang: crate::i18n::Lang, v: &Versioned<FollowUp>) -> Visit {
    let x = &v.record;
    Visit {
        id: v.meta.id.clone(),
        version: v.meta.version,
        date: lang.date(x.visit_date),
        efficacy: labels::label(lang, "efficacy", x.efficacy.code()),
        adherence: labels::label(lang, "adherence", x.adherence.code()),
        weight: x.weight_kg.map(|w| format!("{w} kg")).unwrap_or_default(),
        measures: x
            .measures
            .iter()
            .map(|m| format!("{} {}", m.code.as_str(), m.value))
            .collect::<Vec<_>>()
            .join(" · "),
    }
}

fn event(lang: crate::i18n::Lang, v: &Versioned<AdverseEvent>) -> Event {
    let x = &v.record;
    Event {
        id: v.meta.id.clone(),
        criteria: x
            .details
            .seriousness
            .iter()
            .map(|c| labels::label(lang, "seriousness", c.code()))
            .collect::<Vec<_>>()
            .join(", "),
        version: v.meta.version,
        onset: lang.date(x.onset_date),
        pt: x.meddra_pt.as_str().to_owned(),
        soc: x.meddra_soc.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        serious: x.serious,
        outcome: labels::label(lang, "ae_outcome", x.outcome.code()),
        causality: labels::label(lang, "causality", x.causality.code()),
        declared: match (&x.pv_declaration_date, &x.pv_reference) {
            (Some(d), r) => {
                let mut s = format!("{} {}", lang.date(*d), r.clone().unwrap_or_default());
                if let Some(to) = &x.pv_receiver {
                    s.push_str(" · ");
                    s.push_str(to);
                }
                s.trim().to_owned()
            }
            (None, _) => String::new(),
        },
    }
}

pub async fn show(State(web): State<Web>, signed: Signed, Path(id): Path<String>) -> Response {
    match RecordId::parse(&id) {
        Ok(id) => episode_page(&web, &signed, &id, None).await,
        Err(_) => not_found(&signed),
    }
}

/// After a step: the episode's page again, or the page with the refused form.
pub(super) async fn after(
    web: &Web,
    signed: &Signed,
    fields: &Fields,
    episode: &RecordId,
    form: &'static str,
    outcome: Result<(), tonic::Status>,
) -> Response {
    match outcome {
        Ok(()) => Redirect::to(&format!("/episodes/{episode}")).into_response(),
        Err(status) => {
            let state = FormState::refused(fields, &status, signed.lang);
            let mut r = episode_page(web, signed, episode, Some((form, state))).await;
            if r.status() == StatusCode::OK {
                *r.status_mut() = super::http_status(&status);
            }
            r
        }
    }
}

/// A step of the episode: initiate, stop, transfer, lost to follow-up, deceased.
pub async fn transition(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    use pb::transition_episode_request::{Deceased, Initiate, LostToFollowUp, Stop, Transfer, Transition as T};
    let Posted { signed, fields } = posted;
    let Ok(id) = RecordId::parse(&id) else {
        return not_found(&signed);
    };
    let f = &fields;
    let (form, transition) = match f.get("transition") {
        "initiate" => (
            "initiate",
            Some(T::Initiate(Initiate {
                first_administration_date: f.get("initiate.first_administration_date").to_owned(),
                dosage: dosage(f, "initiate.dosage"),
            })),
        ),
        "stop" => (
            "stop",
            Some(T::Stop(Stop {
                date: f.get("stop.date").to_owned(),
                reason: pb_enum(f.get("stop.reason"), "STOP_REASON_", pb::StopReason::from_str_name),
            })),
        ),
        "transfer" => (
            "transfer",
            Some(T::Transfer(Transfer {
                date: f.get("transfer.date").to_owned(),
                to_centre_finess: f.get("transfer.to_centre_finess").to_owned(),
            })),
        ),
        "lost_to_follow_up" => (
            "stop",
            Some(T::LostToFollowUp(LostToFollowUp {
                date: f.get("lost_to_follow_up.date").to_owned(),
            })),
        ),
        "deceased" => (
            "stop",
            Some(T::Deceased(Deceased {
                date: f.get("deceased.date").to_owned(),
            })),
        ),
        _ => ("stop", None),
    };
    let request = pb::TransitionEpisodeRequest {
        id: id.to_string(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        transition,
    };
    let outcome = match observatory_grpc::parse::parse_episode_transition(&request) {
        Err(s) => Err(s),
        Ok((rid, version, t)) => {
            ops::transition_episode(web.app(), &signed.call(op("TransitionEpisode")), rid, version, t)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    after(&web, &signed, &fields, &id, form, outcome).await
}

/// A step of the episode's authorisation: grant, refuse, ask for information, renew...
pub async fn authorise(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    use pb::transition_authorisation_request::{DatedStep, Grant, Transition as T};
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(episode) = RecordId::parse(f.get("episode_id")) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    };
    let step = |name: &str| DatedStep {
        date: f.get(&format!("{name}.date")).to_owned(),
    };
    let grant = |name: &str| Grant {
        decision_date: f.get(&format!("{name}.decision_date")).to_owned(),
        valid_from: f.get(&format!("{name}.valid_from")).to_owned(),
        valid_to: f.get(&format!("{name}.valid_to")).to_owned(),
        reference: f.get(&format!("{name}.reference")).to_owned(),
    };
    let chosen = f.get("transition");
    let transition = match chosen {
        "grant" => Some(T::Grant(grant("grant"))),
        "renew" => Some(T::Renew(grant("renew"))),
        "refuse" => Some(T::Refuse(step("refuse"))),
        "request_information" => Some(T::RequestInformation(step("request_information"))),
        "resubmit" => Some(T::Resubmit(step("resubmit"))),
        "submit_renewal" => Some(T::SubmitRenewal(step("submit_renewal"))),
        "expire" => Some(T::Expire(step("expire"))),
        "suspend" => Some(T::Suspend(step("suspend"))),
        "reinstate" => Some(T::Reinstate(step("reinstate"))),
        "withdraw" => Some(T::Withdraw(step("withdraw"))),
        _ => None,
    };
    let form: &'static str = match chosen {
        "grant" => "grant",
        "renew" => "renew",
        "refuse" => "refuse",
        "submit_renewal" => "submit_renewal",
        _ => "authorisation",
    };
    let request = pb::TransitionAuthorisationRequest {
        id,
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        transition,
    };
    let outcome = match observatory_grpc::parse::parse_authorisation_transition(&request) {
        Err(s) => Err(s),
        Ok((rid, version, t)) => {
            ops::transition_authorisation(web.app(), &signed.call(op("TransitionAuthorisation")), rid, version, t)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    after(&web, &signed, &fields, &episode, form, outcome).await
}

/// Violations of `measures[i]` named by the form's field of that measure (`measure.ABR`).
pub(super) fn rename_measures(status: tonic::Status, codes: &[String]) -> tonic::Status {
    let violations = crate::form::violations(&status);
    if !violations.iter().any(|(f, _)| f.starts_with("measures[")) {
        return status;
    }
    let mut v = observatory_domain::Violations::new();
    for (field, why) in violations {
        let renamed = field
            .strip_prefix("measures[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .and_then(|i| codes.get(i))
            .map_or(field.clone(), |code| format!("measure.{code}"));
        v.push(renamed, "INVALID", why);
    }
    observatory_grpc::error::invalid(&v)
}

/// The measures typed in a visit form's fields `{prefix}{code}`, in the order of the form, and
/// their codes (to name a refused one by its field).
pub(super) fn typed_measures(f: &Fields, prefix: &str) -> (Vec<String>, Vec<pb::Measure>) {
    f.pairs()
        .iter()
        .filter_map(|(name, value)| {
            let code = name.strip_prefix(prefix)?;
            (!value.trim().is_empty()).then(|| {
                (
                    code.to_owned(),
                    pb::Measure {
                        code: code.to_owned(),
                        value: number(value),
                    },
                )
            })
        })
        .unzip()
}

pub async fn follow_up(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let Ok(id) = RecordId::parse(&id) else {
        return not_found(&signed);
    };
    let f = &fields;
    // The measures typed, in the order of the form.
    let (codes, measures) = typed_measures(f, "measure.");
    let weight = f.get("weight_kg");
    let request = pb::RecordFollowUpRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        episode_id: id.to_string(),
        visit_date: f.get("visit_date").to_owned(),
        efficacy: pb_enum(
            f.get("efficacy"),
            "EFFICACY_ASSESSMENT_",
            pb::EfficacyAssessment::from_str_name,
        ),
        measures,
        weight_kg: if weight.is_empty() { 0.0 } else { number(weight) },
        adherence: pb_enum(f.get("adherence"), "ADHERENCE_", pb::Adherence::from_str_name),
    };
    let outcome = match observatory_grpc::parse::parse_follow_up(&request) {
        Err(s) => Err(s),
        Ok((key, visit)) => ops::record_follow_up(web.app(), &signed.call(op("RecordFollowUp")), Some(key), visit)
            .await
            .map(|_| ())
            .map_err(observatory_grpc::error::app),
    }
    .map_err(|s| rename_measures(s, &codes));
    after(&web, &signed, &fields, &id, "follow_up", outcome).await
}

pub async fn adverse_event(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let Ok(id) = RecordId::parse(&id) else {
        return not_found(&signed);
    };
    let f = &fields;
    let request = pb::RecordAdverseEventRequest {
        idempotency_key: f.get("idempotency_key").to_owned(),
        episode_id: id.to_string(),
        onset_date: f.get("onset_date").to_owned(),
        meddra_pt_code: f.get("meddra_pt_code").to_owned(),
        meddra_soc_code: f.get("meddra_soc_code").to_owned(),
        serious: f.ticked("serious"),
        outcome: pb_enum(f.get("outcome"), "AE_OUTCOME_", pb::AeOutcome::from_str_name),
        causality: pb_enum(f.get("causality"), "CAUSALITY_", pb::Causality::from_str_name),
        pv_declaration_date: f.get("pv_declaration_date").to_owned(),
        pv_reference: f.get("pv_reference").to_owned(),
        pv_receiver: f.get("pv_receiver").to_owned(),
        case_details: case_details(f),
    };
    let outcome = match observatory_grpc::parse::parse_adverse_event(&request) {
        Err(s) => Err(s),
        Ok((key, event)) => {
            ops::record_adverse_event(web.app(), &signed.call(op("RecordAdverseEvent")), Some(key), event)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    };
    after(&web, &signed, &fields, &id, "adverse_event", outcome).await
}

/// The E2B case fields of the event form; none when the form leaves them all empty.
fn case_details(f: &Fields) -> Option<pb::CaseDetails> {
    let name = |n: &str| format!("case_details.{n}");
    let details = pb::CaseDetails {
        seriousness: f
            .all(&name("seriousness"))
            .into_iter()
            .map(|c| pb_enum(c, "SERIOUSNESS_CRITERION_", pb::SeriousnessCriterion::from_str_name))
            .collect(),
        end_date: f.get(&name("end_date")).to_owned(),
        meddra_llt_code: f.get(&name("meddra_llt_code")).to_owned(),
        action_taken: pb_enum(
            f.get(&name("action_taken")),
            "DRUG_ACTION_",
            pb::DrugAction::from_str_name,
        ),
        dechallenge: pb_enum(
            f.get(&name("dechallenge")),
            "CHALLENGE_RESULT_",
            pb::ChallengeResult::from_str_name,
        ),
        rechallenge: pb_enum(
            f.get(&name("rechallenge")),
            "CHALLENGE_RESULT_",
            pb::ChallengeResult::from_str_name,
        ),
        suspect_dosage: None,
        batch: f.get(&name("batch")).to_owned(),
        reporter: pb_enum(
            f.get(&name("reporter")),
            "REPORTER_QUALIFICATION_",
            pb::ReporterQualification::from_str_name,
        ),
        narrative: f.get(&name("narrative")).to_owned(),
        off_label_use: f.ticked(&name("off_label_use")),
    };
    (details != pb::CaseDetails::default()).then_some(details)
}

/// Completes or corrects an adverse event of the episode (seriousness, outcome, causality,
/// the declaration to pharmacovigilance) with a required reason.
pub async fn correct_event(State(web): State<Web>, Path(episode): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let Ok(episode) = RecordId::parse(&episode) else {
        return not_found(&signed);
    };
    let f = &fields;
    // The event and the version the form was drawn from: `id:version`.
    let (id, version) = f
        .get("fix_event.event")
        .split_once(':')
        .unwrap_or((f.get("fix_event.event"), "0"));
    let request = pb::UpdateAdverseEventRequest {
        id: id.to_owned(),
        expected_version: version.parse().unwrap_or(0),
        reason: f.get("fix_event.reason").to_owned(),
        serious: match f.get("fix_event.serious") {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        outcome: pb_enum(f.get("fix_event.outcome"), "AE_OUTCOME_", pb::AeOutcome::from_str_name),
        causality: pb_enum(f.get("fix_event.causality"), "CAUSALITY_", pb::Causality::from_str_name),
        pv_declaration_date: f.get("fix_event.pv_declaration_date").to_owned(),
        pv_reference: f.get("fix_event.pv_reference").to_owned(),
        pv_receiver: super::some(f.get("fix_event.pv_receiver")),
        case_details: None,
    };
    let outcome = match observatory_grpc::parse::parse_adverse_event_update(&request) {
        Err(s) => Err(s),
        Ok((rid, v, update, reason)) => ops::update_adverse_event(
            web.app(),
            &signed.call(op("UpdateAdverseEvent")),
            rid,
            v,
            update,
            reason,
        )
        .await
        .map(|_| ())
        .map_err(observatory_grpc::error::app),
    }
    .map_err(|s| super::episode_corrections::under(s, "fix_event"));
    after(&web, &signed, &fields, &episode, "correct_event", outcome).await
}
