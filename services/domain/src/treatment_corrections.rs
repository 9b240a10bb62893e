//! Corrections of treatment records entered wrong: an episode's dates, dosage, prescriber and
//! indication; an authorisation's dates and reference; a visit's values. A correction is not a
//! step of the lifecycle (a first administration is recorded by initiating the episode, a
//! grant by granting the authorisation): it changes what was recorded, keeps the record's
//! state, and must leave the records around it consistent, which the functions here check
//! against the records the store gives them.

use chrono::{Months, NaiveDate};
use serde::Serialize;

use crate::codes::{OrphaCode, Rpps};
use crate::error::{DomainError, Violations};
use crate::lifecycle::BASELINE_WINDOW_DAYS;
use crate::model::{
    Adherence, Authorisation, AuthorisationStatus, Cohort, Dosage, EfficacyAssessment, Episode, EpisodeStatus,
    FollowUp, Framework, Measure,
};

/// Fields of an episode that may be corrected; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EpisodeUpdate {
    pub request_date: Option<NaiveDate>,
    /// Only on an episode whose first administration is recorded.
    pub first_administration_date: Option<NaiveDate>,
    /// Only on an episode that ended (stopped, transferred, lost, deceased); the end of a
    /// switched episode is the request date of the one that replaced it.
    pub end_date: Option<NaiveDate>,
    pub dosage: Option<Dosage>,
    pub prescriber_rpps: Option<Rpps>,
    pub indication: Option<OrphaCode>,
}

/// What an episode correction is checked against, read in the write transaction.
#[derive(Debug)]
pub struct EpisodeContext<'a> {
    pub cohort: &'a Cohort,
    pub framework: Option<&'a Framework>,
    pub authorisation: Option<&'a Authorisation>,
    /// Dates of the episode's visits (current versions).
    pub visit_dates: &'a [NaiveDate],
    /// Earliest onset of the episode's adverse events.
    pub first_adverse_event: Option<NaiveDate>,
    pub today: NaiveDate,
}

/// Earliest date a baseline visit of a treatment requested on `request` may have.
pub fn baseline_window_start(request: NaiveDate) -> NaiveDate {
    request
        .checked_sub_days(chrono::Days::new(BASELINE_WINDOW_DAYS))
        .unwrap_or(request)
}

/// The status an initiated episode has given its visits: ONGOING once a visit follows the
/// first administration, INITIATED before. Other states are left as they are.
pub fn status_after_visits(episode: &Episode, visit_dates: &[NaiveDate]) -> EpisodeStatus {
    match (episode.status, episode.first_administration_date) {
        (EpisodeStatus::Initiated | EpisodeStatus::Ongoing, Some(first)) => {
            if visit_dates.iter().any(|d| *d >= first) {
                EpisodeStatus::Ongoing
            } else {
                EpisodeStatus::Initiated
            }
        }
        (status, _) => status,
    }
}

pub fn update_episode(current: &Episode, u: &EpisodeUpdate, ctx: &EpisodeContext<'_>) -> Result<Episode, DomainError> {
    let mut v = Violations::new();
    let mut next = current.clone();
    if let Some(date) = u.request_date {
        // A framework pathway's decision is the framework's: its date follows the request.
        if current.pathway.needs_framework() && current.decision_date == Some(current.request_date) {
            next.decision_date = Some(date);
        }
        next.request_date = date;
    }
    if let Some(date) = u.first_administration_date {
        if current.first_administration_date.is_none() {
            v.push(
                "first_administration_date",
                "NOT_RECORDED",
                "the treatment has no first administration to correct: record it by initiating the episode",
            );
        }
        next.first_administration_date = Some(date);
    }
    if let Some(date) = u.end_date {
        match current.status {
            EpisodeStatus::Switched => v.push(
                "end_date",
                "SET_BY_SWITCH",
                "a switched episode ends on the request date of the episode that replaced it: correct that one",
            ),
            _ if current.end_date.is_none() => v.push(
                "end_date",
                "NOT_RECORDED",
                "the episode has not ended: there is no end date to correct",
            ),
            _ => {}
        }
        next.end_date = Some(date);
    }
    if let Some(d) = &u.dosage {
        next.dosage = Some(d.clone());
    }
    if let Some(p) = &u.prescriber_rpps {
        next.prescriber_rpps = p.clone();
    }
    if let Some(code) = &u.indication {
        if !ctx.cohort.orpha_codes.contains(code) {
            v.push(
                "indication_orpha_code",
                "NOT_IN_COHORT",
                "must be one of the cohort's ORPHA codes",
            );
        }
        next.indication = code.clone();
    }
    v.into_result()?;
    crate::corrections::unchanged_is_invalid(current == &next)?;
    let mut v = Violations::new();
    check_episode_dates(&next, ctx, &mut v);
    v.into_result()?;
    next.status = status_after_visits(&next, ctx.visit_dates);
    Ok(next)
}

/// The dates of a corrected episode, in order and consistent with its framework,
/// authorisation, visits and adverse events.
fn check_episode_dates(e: &Episode, ctx: &EpisodeContext<'_>, v: &mut Violations) {
    if e.request_date > ctx.today {
        v.push("request_date", "IN_FUTURE", "must not be in the future");
    }
    if let Some(f) = ctx.framework.filter(|_| e.pathway.needs_framework())
        && !f.valid_on(e.request_date)
    {
        v.push(
            "request_date",
            "FRAMEWORK_NOT_VALID",
            format!(
                "the cohort's framework ({}, {} from {}{}) is not valid on this date",
                f.pathway,
                f.status,
                f.valid_from,
                f.valid_to.map(|t| format!(" to {t}")).unwrap_or_default()
            ),
        );
    }
    if let Some(a) = ctx.authorisation
        && a.submitted_date < e.request_date
    {
        v.push(
            "request_date",
            "AFTER_AUTHORISATION_REQUEST",
            format!(
                "must not be after the authorisation request was submitted ({})",
                a.submitted_date
            ),
        );
    }
    if let Some(first) = e.first_administration_date {
        if first > ctx.today {
            v.push("first_administration_date", "IN_FUTURE", "must not be in the future");
        }
        if first < e.request_date {
            v.push(
                "first_administration_date",
                "BEFORE_REQUEST",
                "must not be before the request date",
            );
        }
        // Given under the authorisation's first validity, unless dispensed before it.
        if let Some(a) = ctx.authorisation
            && !e.dispense_first
            && a.renewals == 0
            && let (Some(from), Some(to)) = (a.valid_from, a.valid_to)
            && (first < from || first > to)
        {
            v.push(
                "first_administration_date",
                "NOT_COVERED",
                format!("must be within the authorisation's validity ({from} to {to})"),
            );
        }
    }
    if let Some(end) = e.end_date {
        let start = e.first_administration_date.unwrap_or(e.request_date);
        if end < start {
            v.push(
                "end_date",
                "BEFORE_START",
                format!("must not be before the episode's start ({start})"),
            );
        }
        if end > ctx.today {
            v.push("end_date", "IN_FUTURE", "must not be in the future");
        }
    }
    let earliest = baseline_window_start(e.request_date);
    if let Some(d) = ctx.visit_dates.iter().min()
        && *d < earliest
    {
        v.push(
            "request_date",
            "VISIT_BEFORE_BASELINE_WINDOW",
            format!("the episode has a visit on {d}, more than {BASELINE_WINDOW_DAYS} days before this request date"),
        );
    }
    if e.first_administration_date.is_none() && e.status == EpisodeStatus::Stopped && !ctx.visit_dates.is_empty() {
        v.push(
            "first_administration_date",
            "REQUIRED",
            "the episode has visits after its stop, which follow a treatment given",
        );
    }
    if let Some(onset) = ctx.first_adverse_event
        && onset < e.request_date
    {
        v.push(
            "request_date",
            "AFTER_ADVERSE_EVENT",
            format!("must not be after the onset of the episode's adverse event ({onset})"),
        );
    }
}

/// Fields of an authorisation that may be corrected; dates of steps not taken cannot be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuthorisationUpdate {
    pub reference: Option<String>,
    pub submitted_date: Option<NaiveDate>,
    pub decision_date: Option<NaiveDate>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
}

pub fn update_authorisation(
    current: &Authorisation,
    episode: &Episode,
    u: &AuthorisationUpdate,
    today: NaiveDate,
) -> Result<Authorisation, DomainError> {
    let mut v = Violations::new();
    let mut next = current.clone();
    if let Some(r) = &u.reference {
        next.reference = Some(r.clone());
    }
    if let Some(d) = u.submitted_date {
        next.submitted_date = d;
    }
    let mut set = |field: &'static str, value: Option<NaiveDate>, slot: &mut Option<NaiveDate>, what: &str| {
        if let Some(d) = value {
            if slot.is_none() {
                v.push(
                    field,
                    "NOT_RECORDED",
                    format!("the authorisation has no {what} to correct"),
                );
            }
            *slot = Some(d);
        }
    };
    set("decision_date", u.decision_date, &mut next.decision_date, "decision");
    set("valid_from", u.valid_from, &mut next.valid_from, "validity");
    set("valid_to", u.valid_to, &mut next.valid_to, "validity");
    v.into_result()?;
    crate::corrections::unchanged_is_invalid(current == &next)?;
    let mut v = Violations::new();
    if next.submitted_date < episode.request_date {
        v.push(
            "submitted_date",
            "BEFORE_REQUEST",
            format!(
                "must not be before the episode's request date ({})",
                episode.request_date
            ),
        );
    }
    if next.submitted_date > today {
        v.push("submitted_date", "IN_FUTURE", "must not be in the future");
    }
    if let Some(d) = next.decision_date {
        if d < next.submitted_date {
            v.push(
                "decision_date",
                "BEFORE_SUBMISSION",
                "must not be before submitted_date",
            );
        }
        if d > today {
            v.push("decision_date", "IN_FUTURE", "must not be in the future");
        }
    }
    if let (Some(from), Some(to)) = (next.valid_from, next.valid_to) {
        if to < from {
            v.push("valid_to", "BEFORE_START", "must not be before valid_from");
        }
        if let Some(months) = next.pathway.max_authorisation_months()
            && from
                .checked_add_months(Months::new(months))
                .is_some_and(|cap| to >= cap)
        {
            v.push(
                "valid_to",
                "VALIDITY_TOO_LONG",
                format!("a {} grant or renewal lasts at most {months} months", next.pathway),
            );
        }
        if next.status == AuthorisationStatus::Expired && to >= today {
            v.push(
                "valid_to",
                "EXPIRED",
                "the authorisation is recorded as expired: its validity ended before today",
            );
        }
        if let Some(first) = episode.first_administration_date
            && !episode.dispense_first
            && next.renewals == 0
            && (first < from || first > to)
        {
            v.push(
                "valid_from",
                "FIRST_ADMINISTRATION_UNCOVERED",
                format!("the episode's first administration ({first}) must stay within the validity"),
            );
        }
    }
    v.into_result()?;
    Ok(next)
}

/// The episode's copy of its authorisation's decision date, which it takes when initiated.
pub fn episode_after_authorisation(
    episode: &Episode,
    before: &Authorisation,
    after: &Authorisation,
) -> Option<Episode> {
    (episode.decision_date.is_some()
        && episode.decision_date == before.decision_date
        && before.decision_date != after.decision_date)
        .then(|| Episode {
            decision_date: after.decision_date,
            ..episode.clone()
        })
}

/// Fields of a visit that may be corrected.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FollowUpUpdate {
    pub visit_date: Option<NaiveDate>,
    pub efficacy: Option<EfficacyAssessment>,
    /// Replaces every measure.
    pub measures: Option<Vec<Measure>>,
    /// `Some(None)` clears the weight.
    pub weight_kg: Option<Option<f64>>,
    pub adherence: Option<Adherence>,
}

/// Applies a correction to a visit, checks it as a new visit on its episode would be (dates,
/// baseline window, measure ranges), and returns the visit and the episode's status given
/// all its visits (a visit moved before the first administration becomes its baseline).
/// `other_visits` are the dates of the episode's other visits.
pub fn update_follow_up(
    current: &FollowUp,
    episode: &Episode,
    other_visits: &[NaiveDate],
    u: &FollowUpUpdate,
    today: NaiveDate,
) -> Result<(FollowUp, EpisodeStatus), DomainError> {
    let mut next = current.clone();
    if let Some(d) = u.visit_date {
        next.visit_date = d;
    }
    if let Some(e) = u.efficacy {
        next.efficacy = e;
    }
    if let Some(m) = &u.measures {
        next.measures = m.clone();
    }
    if let Some(w) = u.weight_kg {
        next.weight_kg = w;
    }
    if let Some(a) = u.adherence {
        next.adherence = a;
    }
    crate::corrections::unchanged_is_invalid(current == &next)?;
    // The checks of a new visit on the episode as it was when its visits began: started
    // (whatever happened since: a stop, a switch, a transfer), or declared; a treatment
    // stopped before it was given takes none.
    let mut bare = episode.clone();
    bare.status = match (episode.first_administration_date, episode.status) {
        (Some(_), _) => EpisodeStatus::Initiated,
        (None, EpisodeStatus::Stopped) => EpisodeStatus::Stopped,
        (None, _) => EpisodeStatus::Declared,
    };
    crate::lifecycle::record_follow_up(&bare, &next, today)?;
    let mut dates = other_visits.to_vec();
    dates.push(next.visit_date);
    Ok((next, status_after_visits(episode, &dates)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Atc, Finess, OrphaCode};
    use crate::model::{CohortStatus, Pathway, RecordId};

    fn day(s: &str) -> NaiveDate {
        crate::model::parse_date(s).expect("date")
    }

    fn rpps() -> Rpps {
        let base = "1000000000";
        Rpps::parse(&format!("{base}{}", crate::codes::luhn_check_digit(base))).expect("rpps")
    }

    fn cohort() -> Cohort {
        Cohort {
            name: "c".into(),
            filiere: crate::codes::Filiere::parse("MHEMO").expect("filiere"),
            pathway: Pathway::Aac,
            drug_atc: Atc::parse("B02BX07").expect("atc"),
            orpha_codes: vec![
                OrphaCode::parse("98878").expect("orpha"),
                OrphaCode::parse("98879").expect("orpha"),
            ],
            framework_id: None,
            follow_up_months: 6,
            status: CohortStatus::Open,
        }
    }

    fn episode() -> Episode {
        Episode {
            patient_id: RecordId::from_minted("p".into()),
            cohort_id: RecordId::from_minted("c".into()),
            pathway: Pathway::Aac,
            drug_atc: Atc::parse("B02BX07").expect("atc"),
            indication: OrphaCode::parse("98878").expect("orpha"),
            prescriber_rpps: rpps(),
            centre_finess: Finess::parse("130010044").expect("finess"),
            framework_id: None,
            authorisation_id: Some(RecordId::from_minted("a".into())),
            rcp: None,
            off_label: None,
            dosage: None,
            request_date: day("2026-01-10"),
            decision_date: Some(day("2026-01-20")),
            first_administration_date: Some(day("2026-02-01")),
            status: EpisodeStatus::Ongoing,
            end_date: None,
            stop_reason: None,
            previous_episode_id: None,
            transferred_to: None,
            dispense_first: false,
            single_administration: false,
            rcp_review_id: None,
        }
    }

    fn authorisation() -> Authorisation {
        Authorisation {
            episode_id: RecordId::from_minted("e".into()),
            patient_id: RecordId::from_minted("p".into()),
            pathway: Pathway::Aac,
            reference: Some("AAC-1".into()),
            status: AuthorisationStatus::Granted,
            submitted_date: day("2026-01-12"),
            decision_date: Some(day("2026-01-20")),
            valid_from: Some(day("2026-01-20")),
            valid_to: Some(day("2026-12-31")),
            renewals: 0,
            suspended_from: None,
        }
    }

    fn codes(r: Result<impl std::fmt::Debug, DomainError>) -> Vec<(String, String)> {
        match r {
            Err(DomainError::Invalid(v)) => v
                .as_slice()
                .iter()
                .map(|x| (x.field.clone(), x.reason.to_owned()))
                .collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_first_administration_moved_after_every_visit_makes_the_episode_initiated_again() {
        let (c, a) = (cohort(), authorisation());
        let visits = [day("2026-03-01")];
        let ctx = EpisodeContext {
            cohort: &c,
            framework: None,
            authorisation: Some(&a),
            visit_dates: &visits,
            first_adverse_event: None,
            today: day("2026-06-01"),
        };
        let u = EpisodeUpdate {
            first_administration_date: Some(day("2026-03-02")),
            ..Default::default()
        };
        let next = update_episode(&episode(), &u, &ctx).expect("corrected");
        assert_eq!(next.status, EpisodeStatus::Initiated);
        assert_eq!(next.first_administration_date, Some(day("2026-03-02")));
    }

    #[test]
    fn an_episode_correction_keeps_dates_in_order_and_within_the_authorisation() {
        let (c, a) = (cohort(), authorisation());
        let visits = [day("2025-09-01")];
        let ctx = EpisodeContext {
            cohort: &c,
            framework: None,
            authorisation: Some(&a),
            visit_dates: &visits,
            first_adverse_event: Some(day("2026-01-11")),
            today: day("2026-06-01"),
        };
        let u = EpisodeUpdate {
            request_date: Some(day("2026-01-15")),
            first_administration_date: Some(day("2026-01-18")),
            ..Default::default()
        };
        let got = codes(update_episode(&episode(), &u, &ctx));
        for expected in [
            ("request_date", "AFTER_AUTHORISATION_REQUEST"),
            ("request_date", "VISIT_BEFORE_BASELINE_WINDOW"),
            ("request_date", "AFTER_ADVERSE_EVENT"),
            ("first_administration_date", "NOT_COVERED"),
        ] {
            assert!(
                got.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} in {got:?}"
            );
        }
        let u = EpisodeUpdate {
            end_date: Some(day("2026-05-01")),
            indication: Some(OrphaCode::parse("166024").expect("orpha")),
            ..Default::default()
        };
        let got = codes(update_episode(&episode(), &u, &ctx));
        assert_eq!(
            got,
            vec![
                ("end_date".to_owned(), "NOT_RECORDED".to_owned()),
                ("indication_orpha_code".to_owned(), "NOT_IN_COHORT".to_owned())
            ]
        );
    }

    #[test]
    fn an_authorisation_correction_sets_only_recorded_steps_and_keeps_the_first_dose_covered() {
        let e = episode();
        let today = day("2026-06-01");
        let mut submitted = authorisation();
        submitted.status = AuthorisationStatus::Submitted;
        submitted.decision_date = None;
        submitted.valid_from = None;
        submitted.valid_to = None;
        let u = AuthorisationUpdate {
            decision_date: Some(day("2026-01-25")),
            ..Default::default()
        };
        assert_eq!(
            codes(update_authorisation(&submitted, &e, &u, today)),
            vec![("decision_date".to_owned(), "NOT_RECORDED".to_owned())]
        );
        let u = AuthorisationUpdate {
            valid_from: Some(day("2026-02-02")),
            ..Default::default()
        };
        assert_eq!(
            codes(update_authorisation(&authorisation(), &e, &u, today)),
            vec![("valid_from".to_owned(), "FIRST_ADMINISTRATION_UNCOVERED".to_owned())]
        );
        let u = AuthorisationUpdate {
            decision_date: Some(day("2026-01-22")),
            valid_from: Some(day("2026-01-22")),
            reference: Some("AAC-2".into()),
            ..Default::default()
        };
        let before = authorisation();
        let next = update_authorisation(&before, &e, &u, today).expect("corrected");
        assert_eq!(next.reference.as_deref(), Some("AAC-2"));
        let episode = episode_after_authorisation(&e, &before, &next).expect("mirrored");
        assert_eq!(episode.decision_date, Some(day("2026-01-22")));
    }

    #[test]
    fn a_visit_moved_before_the_first_administration_becomes_a_baseline() {
        let e = episode();
        let visit = FollowUp {
            episode_id: RecordId::from_minted("e".into()),
            visit_date: day("2026-03-01"),
            efficacy: EfficacyAssessment::Improved,
            measures: vec![],
            weight_kg: None,
            adherence: Adherence::Good,
        };
        let u = FollowUpUpdate {
            visit_date: Some(day("2026-01-05")),
            weight_kg: Some(Some(61.5)),
            ..Default::default()
        };
        let (next, status) = update_follow_up(&visit, &e, &[], &u, day("2026-06-01")).expect("corrected");
        assert_eq!(next.weight_kg, Some(61.5));
        assert_eq!(status, EpisodeStatus::Initiated);
        // A visit of a treatment since switched stays correctable.
        let switched = Episode {
            status: EpisodeStatus::Switched,
            end_date: Some(day("2026-04-01")),
            ..e.clone()
        };
        let u2 = FollowUpUpdate {
            adherence: Some(Adherence::Partial),
            ..Default::default()
        };
        let (_, status) = update_follow_up(&visit, &switched, &[], &u2, day("2026-06-01")).expect("corrected");
        assert_eq!(status, EpisodeStatus::Switched);
        let u = FollowUpUpdate {
            visit_date: Some(day("2025-09-01")),
            ..Default::default()
        };
        assert_eq!(
            codes(update_follow_up(&visit, &e, &[], &u, day("2026-06-01"))),
            vec![("visit_date".to_owned(), "BEFORE_BASELINE_WINDOW".to_owned())]
        );
    }
}
