//! The record status of a treatment, as clinical data-capture tools show it: one column per
//! expected form of its cohort's schedule (declaration, authorisation, first administration,
//! each follow-up visit), each done, due, late or not yet due. The visits follow the same rule
//! as the worklist ([`crate::worklist::next_visit_due`]): each is due one interval after the
//! previous one (or after the first administration).

use chrono::NaiveDate;

use crate::model::{AuthorisationStatus, Episode, EpisodeStatus};
use crate::worklist;

/// How early a form counts as due (before that it is not yet due).
pub const DUE_WINDOW_DAYS: i64 = 30;

/// A form a treatment's schedule expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedForm {
    Declaration,
    /// Per-patient pathways only.
    Authorisation,
    FirstAdministration,
    /// The n-th follow-up visit (from 1).
    Visit(u32),
}

/// Where a form stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormStatus {
    Done(NaiveDate),
    /// Expected by this date, within [`DUE_WINDOW_DAYS`].
    Due(NaiveDate),
    /// Expected by this date, which has passed.
    Late(NaiveDate),
    /// Expected later, by this date (or at a date not known yet).
    NotYet(Option<NaiveDate>),
    /// Not expected any more (the treatment ended before it).
    NotExpected,
}

impl FormStatus {
    pub fn code(self) -> &'static str {
        match self {
            FormStatus::Done(_) => "DONE",
            FormStatus::Due(_) => "DUE",
            FormStatus::Late(_) => "LATE",
            FormStatus::NotYet(_) => "NOT_YET",
            FormStatus::NotExpected => "NOT_EXPECTED",
        }
    }

    pub fn date(self) -> Option<NaiveDate> {
        match self {
            FormStatus::Done(d) | FormStatus::Due(d) | FormStatus::Late(d) => Some(d),
            FormStatus::NotYet(d) => d,
            FormStatus::NotExpected => None,
        }
    }
}

fn expected_by(due: NaiveDate, today: NaiveDate) -> FormStatus {
    let left = (due - today).num_days();
    if left < 0 {
        FormStatus::Late(due)
    } else if left <= DUE_WINDOW_DAYS {
        FormStatus::Due(due)
    } else {
        FormStatus::NotYet(Some(due))
    }
}

/// The forms of a treatment and their status on `today`: `authorisation` is the status of its
/// per-patient authorisation (with its decision date) when it has one, `visits` the dates of
/// its follow-up visits, `follow_up_months` its cohort's interval.
pub fn record_status(
    episode: &Episode,
    authorisation: Option<(AuthorisationStatus, Option<NaiveDate>)>,
    visits: &[NaiveDate],
    follow_up_months: u32,
    today: NaiveDate,
) -> Vec<(ExpectedForm, FormStatus)> {
    let mut out = vec![(ExpectedForm::Declaration, FormStatus::Done(episode.request_date))];
    let ended = !matches!(
        episode.status,
        EpisodeStatus::Declared | EpisodeStatus::Initiated | EpisodeStatus::Ongoing
    );
    if let Some((status, decided)) = authorisation {
        let decision = match status {
            AuthorisationStatus::Submitted | AuthorisationStatus::InformationRequested if !ended => {
                FormStatus::Due(today)
            }
            AuthorisationStatus::Submitted | AuthorisationStatus::InformationRequested => FormStatus::NotExpected,
            _ => FormStatus::Done(decided.unwrap_or(episode.request_date)),
        };
        out.push((ExpectedForm::Authorisation, decision));
    }
    let first = match episode.first_administration_date {
        Some(d) => FormStatus::Done(d),
        None if ended => FormStatus::NotExpected,
        None => FormStatus::NotYet(None),
    };
    out.push((ExpectedForm::FirstAdministration, first));
    let Some(started) = episode.first_administration_date else {
        return out;
    };
    let mut visits: Vec<NaiveDate> = visits.to_vec();
    visits.sort();
    let mut previous = started;
    for (i, v) in visits.iter().enumerate() {
        out.push((ExpectedForm::Visit(i as u32 + 1), FormStatus::Done(*v)));
        previous = previous.max(*v);
    }
    // The next visit, while the treatment goes on.
    let next = visits.len() as u32 + 1;
    match worklist::next_visit_due(Some(started), Some(previous), follow_up_months) {
        Some(due) if !ended => out.push((ExpectedForm::Visit(next), expected_by(due, today))),
        Some(due) if episode.end_date.is_some_and(|end| end >= due) => {
            // Due before the treatment ended, and never recorded.
            out.push((ExpectedForm::Visit(next), FormStatus::Late(due)));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Atc, Finess, OrphaCode, Rpps};
    use crate::model::{Pathway, RecordId};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn episode(status: EpisodeStatus, first: Option<&str>, end: Option<&str>) -> Episode {
        Episode {
            patient_id: RecordId::from_minted("p".into()),
            cohort_id: RecordId::from_minted("c".into()),
            pathway: Pathway::Aac,
            drug_atc: Atc::parse("B02BX07").unwrap(),
            indication: OrphaCode::parse("98878").unwrap(),
            prescriber_rpps: Rpps::parse(&format!("1000000000{}", crate::codes::luhn_check_digit("1000000000")))
                .unwrap(),
            centre_finess: Finess::parse("750100125").unwrap(),
            framework_id: None,
            authorisation_id: None,
            rcp: None,
            off_label: None,
            dosage: None,
            request_date: d("2026-01-10"),
            decision_date: None,
            first_administration_date: first.map(d),
            status,
            end_date: end.map(d),
            stop_reason: None,
            previous_episode_id: None,
            transferred_to: None,
            dispense_first: false,
            single_administration: false,
            rcp_review_id: None,
        }
    }

    #[test]
    fn a_followed_treatment_shows_its_visits_and_the_next_one() {
        let e = episode(EpisodeStatus::Ongoing, Some("2026-01-20"), None);
        let s = record_status(
            &e,
            Some((AuthorisationStatus::Granted, Some(d("2026-01-15")))),
            &[d("2026-04-22")],
            3,
            d("2026-07-10"),
        );
        assert_eq!(
            s,
            vec![
                (ExpectedForm::Declaration, FormStatus::Done(d("2026-01-10"))),
                (ExpectedForm::Authorisation, FormStatus::Done(d("2026-01-15"))),
                (ExpectedForm::FirstAdministration, FormStatus::Done(d("2026-01-20"))),
                (ExpectedForm::Visit(1), FormStatus::Done(d("2026-04-22"))),
                (ExpectedForm::Visit(2), FormStatus::Due(d("2026-07-22"))),
            ]
        );
        let later = record_status(&e, None, &[d("2026-04-22")], 3, d("2026-08-01"));
        assert_eq!(
            later.last(),
            Some(&(ExpectedForm::Visit(2), FormStatus::Late(d("2026-07-22"))))
        );
        let early = record_status(&e, None, &[d("2026-04-22")], 3, d("2026-05-01"));
        assert_eq!(
            early.last(),
            Some(&(ExpectedForm::Visit(2), FormStatus::NotYet(Some(d("2026-07-22")))))
        );
    }

    #[test]
    fn a_declared_treatment_awaits_its_decision_and_first_dose() {
        let e = episode(EpisodeStatus::Declared, None, None);
        let s = record_status(
            &e,
            Some((AuthorisationStatus::Submitted, None)),
            &[],
            6,
            d("2026-02-01"),
        );
        assert_eq!(s[1], (ExpectedForm::Authorisation, FormStatus::Due(d("2026-02-01"))));
        assert_eq!(s[2], (ExpectedForm::FirstAdministration, FormStatus::NotYet(None)));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_stopped_treatment_expects_only_the_visits_due_before_its_end() {
        let stopped = episode(EpisodeStatus::Stopped, Some("2026-01-20"), Some("2026-09-01"));
        let s = record_status(&stopped, None, &[d("2026-04-20")], 3, d("2026-12-01"));
        assert_eq!(
            s.last(),
            Some(&(ExpectedForm::Visit(2), FormStatus::Late(d("2026-07-20"))))
        );
        let early_stop = episode(EpisodeStatus::Stopped, Some("2026-01-20"), Some("2026-03-01"));
        let s = record_status(&early_stop, None, &[], 3, d("2026-12-01"));
        assert_eq!(
            s.last(),
            Some(&(ExpectedForm::FirstAdministration, FormStatus::Done(d("2026-01-20"))))
        );
    }
}
