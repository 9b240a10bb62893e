//! The worklist of the caller's scope: authorisations expiring within 30, 60 or 90 days,
//! overdue follow-up visits, treatments declared but never initiated.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Response,
};
use observatory_app::registry as ops;
use serde::Deserialize;

use super::patients::drug_label;
use super::{Page, refused, render};
use crate::{Signed, Web, op};

pub struct Line {
    pub episode_id: String,
    pub patient_id: String,
    pub drug: String,
    pub pathway: String,
    pub centre: String,
    /// The date the line is about (expiry, due date, request date).
    pub date: String,
    /// Days left or late, or since the request.
    pub days: i64,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "worklist.html")]
struct Show {
    page: Page,
    horizon: u32,
    horizons: Vec<u32>,
    as_of: String,
    expiring: Vec<Line>,
    overdue: Vec<Line>,
    never_initiated: Vec<Line>,
    frameworks: Vec<FrameworkLine>,
    dispensed_first: Vec<Line>,
    undeclared: Vec<Line>,
    truncated: bool,
}

/// A framework's warning, as the worklist lists it.
pub struct FrameworkLine {
    pub id: String,
    pub framework: String,
    pub pathway: String,
    pub warning: String,
    pub date: String,
    pub days: i64,
}

#[derive(Debug, Deserialize)]
pub struct WorklistQuery {
    #[serde(default)]
    within: u32,
}

pub async fn show(State(web): State<Web>, signed: Signed, Query(q): Query<WorklistQuery>) -> Response {
    let lang = signed.lang;
    let today = observatory_store::today(chrono::Utc::now());
    let request = observatory_proto::v1::GetWorklistRequest {
        within_days: i32::try_from(q.within).unwrap_or(i32::MAX),
    };
    let horizon = match observatory_grpc::parse::parse_worklist(&request) {
        Ok(h) => h,
        Err(status) => return super::failure_for(&signed, super::http_status(&status), &super::explain(lang, &status)),
    };
    let w = match ops::worklist(web.app(), &signed.call(op("GetWorklist")), horizon, today).await {
        Ok(w) => w,
        Err(e) => return refused(&signed, e),
    };
    let page = signed.page(lang.t("worklist.title"));
    let catalogue = web.app().catalogue();
    let line = |e: &observatory_store::Versioned<observatory_domain::model::Episode>, date, days, detail| Line {
        episode_id: e.meta.id.clone(),
        patient_id: e.record.patient_id.to_string(),
        drug: drug_label(&catalogue, signed.lang, e.record.drug_atc.as_str()),
        pathway: page.label("pathway", e.record.pathway.code()),
        centre: e.record.centre_finess.as_str().to_owned(),
        date,
        days,
        detail,
    };
    let expiring = w
        .expiring
        .iter()
        .map(|x| {
            let a = &x.authorisation.record;
            line(
                &x.episode,
                a.valid_to.map(|d| lang.date(d)).unwrap_or_default(),
                x.days_left,
                format!(
                    "{} · {}",
                    page.label("authorisation_status", a.status.code()),
                    a.reference.clone().unwrap_or_default()
                ),
            )
        })
        .collect();
    let overdue = w
        .overdue
        .iter()
        .map(|x| {
            line(
                &x.episode,
                lang.date(x.due),
                x.days_late,
                x.last_visit
                    .map(|d| format!("{} {}", lang.t("worklist.last_visit"), lang.date(d)))
                    .unwrap_or_else(|| lang.t("worklist.no_visit").to_owned()),
            )
        })
        .collect();
    let never_initiated = w
        .never_initiated
        .iter()
        .map(|e| {
            line(
                e,
                lang.date(e.record.request_date),
                (today - e.record.request_date).num_days(),
                String::new(),
            )
        })
        .collect();
    let frameworks = w
        .frameworks
        .iter()
        .map(|x| {
            let f = &x.framework.record;
            FrameworkLine {
                id: x.framework.meta.id.clone(),
                framework: format!(
                    "{} · {} · {}",
                    drug_label(&catalogue, lang, f.drug_atc.as_str()),
                    f.indication,
                    f.decision_reference
                ),
                pathway: page.label("pathway", f.pathway.code()),
                warning: page.label("framework_warning", x.warning.code()),
                date: lang.date(x.date),
                days: x.days_left,
            }
        })
        .collect();
    let dispensed_first = w
        .dispensed_first
        .iter()
        .map(|x| {
            let first = x.episode.record.first_administration_date;
            line(
                &x.episode,
                first.map(|d| lang.date(d)).unwrap_or_default(),
                first.map_or(0, |d| (today - d).num_days()),
                page.label("authorisation_status", x.authorisation.record.status.code()),
            )
        })
        .collect();
    let undeclared = w
        .undeclared
        .iter()
        .map(|x| {
            let e = &x.event.record;
            let criteria: Vec<String> = e
                .details
                .seriousness
                .iter()
                .map(|c| page.label("seriousness", c.code()))
                .collect();
            let detail = if criteria.is_empty() {
                format!("MedDRA {}", e.meddra_pt.as_str())
            } else {
                format!("MedDRA {} · {}", e.meddra_pt.as_str(), criteria.join(", "))
            };
            line(&x.episode, lang.date(e.onset_date), x.days, detail)
        })
        .collect();
    render(&Show {
        undeclared,
        dispensed_first,
        frameworks,
        horizon: w.horizon,
        horizons: observatory_domain::worklist::HORIZONS.to_vec(),
        as_of: lang.date(w.as_of),
        expiring,
        overdue,
        never_initiated,
        truncated: w.truncated,
        page,
    })
}
