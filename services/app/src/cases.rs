//! Pharmacovigilance case files: one adverse event, or the events of a period, gathered with
//! what a regional pharmacovigilance centre (CRPV) or the rights holder's pharmacovigilance needs
//! for a valid case (the treatment and its suspect drug, the patient's sex and age, the
//! reaction), and written as an ICH E2B(R3) individual case safety report message
//! ([`e2b::message`]) and as a case sheet a person reads or prints ([`sheet::render`]).
//!
//! A case file is a patient-level export: the call is admitted against the caller's scope (one
//! event as a record, a period as a list kept to the scope), and every case it holds is
//! recorded in the audit trail, with the episode and patient it discloses, before it is given.

pub mod e2b;
pub mod sheet;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::{
    catalogue::Catalogue,
    model::{AdverseEvent, Cohort, Episode, FollowUp, Framework, Patient, RecordId, RecordKind},
    registration,
};
use observatory_store::{AdverseEventFilter, PageRequest, Versioned, audit::AuditTarget};

use crate::scope::{Target, admit};
use crate::{App, AppError, AppResult, Call};

/// Most cases in one file: a period with more is exported a page at a time.
pub const MAX_CASES: u32 = 100;

/// Which adverse events a case file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseSelection {
    /// One event, by id.
    One(RecordId),
    /// The events of the caller's scope whose onset falls within `from..=to`; serious ones only
    /// when asked.
    Period {
        from: NaiveDate,
        to: NaiveDate,
        serious_only: bool,
    },
}

/// One adverse event with the records around it.
#[derive(Debug, Clone)]
pub struct Case {
    pub event: Versioned<AdverseEvent>,
    /// When the registry first recorded the event (E2B C.1.4).
    pub first_recorded: DateTime<Utc>,
    pub episode: Versioned<Episode>,
    pub patient: Versioned<Patient>,
    pub cohort: Versioned<Cohort>,
    pub framework: Option<Versioned<Framework>>,
    /// The weight of the latest visit on or before the onset that measured one (E2B D.3).
    pub weight_kg: Option<f64>,
}

/// The cases of one export, with the reference data to name their codes.
#[derive(Debug, Clone)]
pub struct CaseFile {
    pub cases: Vec<Case>,
    pub created_at: DateTime<Utc>,
    pub catalogue: Arc<Catalogue>,
    /// Present when more cases of the period follow: the token of the next page.
    pub next_page_token: Option<String>,
}

/// The case file of `selection`: at most [`MAX_CASES`] cases of a period per page (`page`
/// carries the size, 1 to [`MAX_CASES`], and the token of a previous answer), or the one event
/// asked for. Every case is audited as a patient-level read (the event, its episode and
/// patient) before it is returned; a period with no event in scope gives an empty file.
pub async fn export_cases(
    app: &App,
    call: &Call,
    selection: &CaseSelection,
    page: &PageRequest,
) -> AppResult<CaseFile> {
    let store = &app.store;
    let (admitted, events, next_page_token) = match selection {
        CaseSelection::One(id) => {
            let admitted = admit(store, call, Target::Record(RecordKind::AdverseEvent, id)).await?;
            let event = store.require::<AdverseEvent>(id.as_str()).await?;
            (admitted, vec![event], None)
        }
        CaseSelection::Period { from, to, serious_only } => {
            if let Err(e) = registration::check_case_period(*from, *to) {
                return Err(AppError::invalid("to", e.reason, e.description));
            }
            let admitted = admit(store, call, Target::List).await?;
            let filter = AdverseEventFilter {
                onset_from: Some(*from),
                onset_to: Some(*to),
                serious_only: *serious_only,
                cohort_id: None,
            };
            let page = PageRequest {
                size: page.size.clamp(1, MAX_CASES),
                token: page.token.clone(),
            };
            let p = store.list_adverse_events(&filter, admitted.within(), &page).await?;
            (admitted, p.items, p.next_page_token)
        }
    };
    let mut cases = Vec::with_capacity(events.len());
    for event in events {
        cases.push(gather(app, event).await?);
    }
    let mut targets = Vec::with_capacity(cases.len() * 3);
    for c in &cases {
        targets.push(AuditTarget::read(RecordKind::AdverseEvent, &c.event));
        targets.push(AuditTarget::read(RecordKind::Episode, &c.episode));
        targets.push(AuditTarget::read(RecordKind::Patient, &c.patient));
    }
    if !targets.is_empty() {
        admitted.audit_read(store, call.operation, targets).await?;
    }
    Ok(CaseFile {
        cases,
        created_at: Utc::now(),
        catalogue: app.catalogue(),
        next_page_token,
    })
}

/// The records around one event.
async fn gather(app: &App, event: Versioned<AdverseEvent>) -> AppResult<Case> {
    let store = &app.store;
    let first_recorded = store
        .history(RecordKind::AdverseEvent, &event.meta.id)
        .await?
        .first()
        .map_or(event.meta.recorded_at, |r| r.meta().recorded_at);
    let episode = store.require::<Episode>(event.record.episode_id.as_str()).await?;
    let patient = store.require::<Patient>(episode.record.patient_id.as_str()).await?;
    let cohort = store.require::<Cohort>(episode.record.cohort_id.as_str()).await?;
    let framework = match &episode.record.framework_id {
        Some(id) => store.get::<Framework>(id.as_str()).await?,
        None => None,
    };
    let weight_kg = weight_before(app, &event.record.episode_id, event.record.onset_date).await?;
    Ok(Case {
        event,
        first_recorded,
        episode,
        patient,
        cohort,
        framework,
        weight_kg,
    })
}

/// The weight of the episode's latest visit on or before `onset` that measured one.
async fn weight_before(app: &App, episode: &RecordId, onset: NaiveDate) -> AppResult<Option<f64>> {
    let mut best: Option<(NaiveDate, f64)> = None;
    let mut page = PageRequest { size: 500, token: None };
    loop {
        let visits = app.store.list_by_episode::<FollowUp>(episode, &page).await?;
        for v in &visits.items {
            let (date, weight) = (v.record.visit_date, v.record.weight_kg);
            if let Some(w) = weight.filter(|_| date <= onset)
                && best.is_none_or(|(d, _)| date >= d)
            {
                best = Some((date, w));
            }
        }
        match visits.next_page_token {
            Some(token) => page.token = Some(token),
            None => return Ok(best.map(|(_, w)| w)),
        }
    }
}

/// Whole months from a birth month to a day (the birth day is not kept: counted from the 1st).
pub fn age_in_months(birth: observatory_domain::model::YearMonth, on: NaiveDate) -> Option<u32> {
    use chrono::Datelike;
    let born = birth.first_day()?;
    let months = (on.year() - born.year()) * 12 + on.month() as i32 - born.month() as i32;
    u32::try_from(months).ok()
}
