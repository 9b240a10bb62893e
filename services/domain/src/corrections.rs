//! Changes to records outside their main lifecycle: corrections of patients and adverse events
//! (each with a reason that lands in history), cohort opening and closing, and the lifecycle of
//! regulatory frameworks.

use chrono::{Months, NaiveDate};
use serde::Serialize;

use crate::codes::{Filiere, Finess, RegionCode};
use crate::error::{DomainError, Violations};
use crate::model::{
    AdverseEvent, AeOutcome, Causality, Centre, CentreType, Cohort, CohortStatus, CommonDataElements, Diagnosis,
    Episode, Framework, FrameworkStatus, Pathway, Patient, Prescriber, Sex, VitalStatus, YearMonth,
};

/// Fields of a patient that may change after registration; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PatientUpdate {
    /// A sex or birth month recorded wrong (the pseudonym stays: it names the same person).
    pub sex: Option<Sex>,
    pub birth_year_month: Option<YearMonth>,
    /// `Some(None)` clears the region.
    pub region: Option<Option<RegionCode>>,
    pub vital_status: Option<VitalStatus>,
    pub objects_to_reuse: Option<bool>,
    /// Replaces the whole list.
    pub diagnoses: Option<Vec<Diagnosis>>,
    /// Replaces every common data element.
    pub cde: Option<CommonDataElements>,
}

pub fn update_patient(current: &Patient, u: &PatientUpdate) -> Result<Patient, DomainError> {
    let mut next = current.clone();
    if let Some(sex) = u.sex {
        next.sex = sex;
    }
    if let Some(month) = u.birth_year_month {
        next.birth_year_month = month;
    }
    if let Some(cde) = &u.cde {
        next.cde = cde.clone();
    }
    if let Some(region) = &u.region {
        next.region = region.clone();
    }
    if let Some(v) = u.vital_status {
        next.vital_status = v;
    }
    if let Some(o) = u.objects_to_reuse {
        next.objects_to_reuse = o;
    }
    if let Some(d) = &u.diagnoses {
        next.diagnoses = d.clone();
    }
    unchanged_is_invalid(current == &next)?;
    Ok(next)
}

/// Fields of an adverse event that may be completed or corrected after it was recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AdverseEventUpdate {
    pub serious: Option<bool>,
    pub outcome: Option<AeOutcome>,
    pub causality: Option<Causality>,
    /// Declaration to pharmacovigilance (date, reference), typically added later.
    pub pv_declaration: Option<(NaiveDate, String)>,
    /// Who it was declared to (a CRPV, the rights holder's pharmacovigilance).
    pub pv_receiver: Option<String>,
    /// Replaces every E2B case field.
    pub details: Option<crate::model::CaseDetails>,
}

pub fn update_adverse_event(
    current: &AdverseEvent,
    episode: &Episode,
    u: &AdverseEventUpdate,
    today: NaiveDate,
) -> Result<AdverseEvent, DomainError> {
    let mut next = current.clone();
    if let Some(s) = u.serious {
        next.serious = s;
    }
    if let Some(o) = u.outcome {
        next.outcome = o;
    }
    if let Some(c) = u.causality {
        next.causality = c;
    }
    if let Some((date, reference)) = &u.pv_declaration {
        next.pv_declaration_date = Some(*date);
        next.pv_reference = Some(reference.clone());
    }
    if let Some(receiver) = &u.pv_receiver {
        next.pv_receiver = Some(receiver.clone());
    }
    if let Some(d) = &u.details {
        next.details = d.clone();
    }
    unchanged_is_invalid(current == &next)?;
    crate::lifecycle::check_adverse_event(episode, &next, today)?;
    Ok(next)
}

/// Fields of a centre that may be corrected; its FINESS never changes (tokens, records and
/// scopes are bound to it). Its filières may: a centre joins another network, or leaves one.
/// Records keep where they belong (an episode belongs to its centre and its cohort's filière,
/// not to the centre's filières), so no scope changes with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CentreUpdate {
    pub name: Option<String>,
    pub centre_type: Option<CentreType>,
    pub region: Option<RegionCode>,
    /// Replaces every filière (already checked by [`crate::model::filiere_set`]).
    pub filieres: Option<Vec<Filiere>>,
}

pub fn update_centre(current: &Centre, u: &CentreUpdate) -> Result<Centre, DomainError> {
    let mut next = current.clone();
    if let Some(name) = &u.name {
        next.name = name.clone();
    }
    if let Some(t) = u.centre_type {
        next.centre_type = t;
    }
    if let Some(r) = &u.region {
        next.region = r.clone();
    }
    if let Some(f) = &u.filieres {
        next.filieres = f.clone();
    }
    unchanged_is_invalid(current == &next)?;
    Ok(next)
}

/// Fields of a prescriber that may change: the specialty, and the centre they practise at
/// (which must be declared).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrescriberUpdate {
    pub specialty: Option<String>,
    pub centre_finess: Option<Finess>,
}

pub fn update_prescriber(current: &Prescriber, u: &PrescriberUpdate) -> Result<Prescriber, DomainError> {
    let mut next = current.clone();
    if let Some(s) = &u.specialty {
        next.specialty = s.clone();
    }
    if let Some(c) = &u.centre_finess {
        next.centre_finess = c.clone();
    }
    unchanged_is_invalid(current == &next)?;
    Ok(next)
}

pub(crate) fn unchanged_is_invalid(unchanged: bool) -> Result<(), DomainError> {
    if unchanged {
        return Err(DomainError::Precondition(
            "the update changes nothing: no new version was written".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CohortTransition {
    Close,
    Reopen,
}

pub fn transition_cohort(current: &Cohort, t: CohortTransition) -> Result<Cohort, DomainError> {
    let (from, to) = match t {
        CohortTransition::Close => (CohortStatus::Open, CohortStatus::Closed),
        CohortTransition::Reopen => (CohortStatus::Closed, CohortStatus::Open),
    };
    if current.status != from {
        return Err(DomainError::IllegalTransition {
            entity: "a cohort",
            action: if t == CohortTransition::Close {
                "close"
            } else {
                "reopen"
            },
            from: current.status.code(),
            to: to.code(),
        });
    }
    Ok(Cohort {
        status: to,
        ..current.clone()
    })
}

/// A lifecycle step of a regulatory framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FrameworkTransition {
    StartReview {
        date: NaiveDate,
    },
    Grant {
        date: NaiveDate,
        valid_from: NaiveDate,
        valid_to: Option<NaiveDate>,
    },
    Refuse {
        date: NaiveDate,
    },
    SubmitRenewal {
        date: NaiveDate,
    },
    Renew {
        date: NaiveDate,
        valid_to: Option<NaiveDate>,
    },
    Suspend {
        date: NaiveDate,
    },
    Reinstate {
        date: NaiveDate,
    },
    Withdraw {
        date: NaiveDate,
    },
    /// Switch to common law, new marketing authorisation, or expiry: no inclusion after `date`.
    End {
        date: NaiveDate,
    },
    /// A new version of the protocol (PUT), which may set another interval between periodic
    /// synthesis reports: the status does not change.
    AmendProtocol {
        date: NaiveDate,
        protocol_version: String,
        synthesis_months: u32,
    },
}

impl FrameworkTransition {
    fn parts(&self) -> (&'static str, &'static str, NaiveDate) {
        match self {
            FrameworkTransition::StartReview { date } => ("start_review", "start the review of", *date),
            FrameworkTransition::Grant { date, .. } => ("grant", "grant", *date),
            FrameworkTransition::Refuse { date } => ("refuse", "refuse", *date),
            FrameworkTransition::SubmitRenewal { date } => ("submit_renewal", "submit a renewal of", *date),
            FrameworkTransition::Renew { date, .. } => ("renew", "renew", *date),
            FrameworkTransition::Suspend { date } => ("suspend", "suspend", *date),
            FrameworkTransition::Reinstate { date } => ("reinstate", "reinstate", *date),
            FrameworkTransition::Withdraw { date } => ("withdraw", "withdraw", *date),
            FrameworkTransition::End { date } => ("end", "end", *date),
            FrameworkTransition::AmendProtocol { date, .. } => ("amend_protocol", "amend the protocol of", *date),
        }
    }

    pub fn action(&self) -> &'static str {
        self.parts().1
    }

    fn target(&self, current: &Framework) -> FrameworkStatus {
        use FrameworkStatus as S;
        match self {
            FrameworkTransition::StartReview { .. } => S::UnderReview,
            FrameworkTransition::Grant { .. } => S::Granted,
            // A refused renewal ends the framework at the end of its current validity.
            FrameworkTransition::Refuse { .. } if current.status == S::RenewalSubmitted => S::Ended,
            FrameworkTransition::Refuse { .. } => S::Refused,
            FrameworkTransition::SubmitRenewal { .. } => S::RenewalSubmitted,
            FrameworkTransition::Renew { .. } => S::Renewed,
            FrameworkTransition::Suspend { .. } => S::Suspended,
            FrameworkTransition::Reinstate { .. } => current.suspended_from.unwrap_or(S::Granted),
            FrameworkTransition::Withdraw { .. } => S::Withdrawn,
            FrameworkTransition::End { .. } => S::Ended,
            FrameworkTransition::AmendProtocol { .. } => current.status,
        }
    }
}

/// Longest interval between two periodic synthesis reports a protocol may set.
pub const MAX_SYNTHESIS_MONTHS: u32 = 36;

/// Longest suspension of an early-access framework before it must be reinstated or withdrawn.
const AAP_MAX_SUSPENSION_MONTHS: u32 = 3;

pub fn transition_framework(
    current: &Framework,
    t: &FrameworkTransition,
    today: NaiveDate,
) -> Result<Framework, DomainError> {
    use FrameworkStatus as S;
    let (field, _, date) = t.parts();
    let target = t.target(current);
    let allowed = match t {
        FrameworkTransition::StartReview { .. } => current.status == S::Submitted,
        FrameworkTransition::Grant { .. } => matches!(current.status, S::Submitted | S::UnderReview),
        FrameworkTransition::Refuse { .. } => {
            matches!(current.status, S::Submitted | S::UnderReview | S::RenewalSubmitted)
        }
        FrameworkTransition::SubmitRenewal { .. } => matches!(current.status, S::Granted | S::Renewed),
        FrameworkTransition::Renew { .. } => current.status == S::RenewalSubmitted,
        FrameworkTransition::Suspend { .. } => current.status.allows_inclusion(),
        FrameworkTransition::Reinstate { .. } | FrameworkTransition::Withdraw { .. } => current.status == S::Suspended,
        FrameworkTransition::End { .. } => current.status.allows_inclusion() || current.status == S::Suspended,
        // A refused or withdrawn framework has no protocol left to amend.
        FrameworkTransition::AmendProtocol { .. } => !matches!(current.status, S::Refused | S::Withdrawn),
    };
    if !allowed {
        return Err(DomainError::IllegalTransition {
            entity: "a framework",
            action: t.action(),
            from: current.status.code(),
            to: target.code(),
        });
    }
    let mut v = Violations::new();
    if date > today {
        v.push(format!("{field}.date"), "IN_FUTURE", "must not be in the future");
    }
    let mut next = current.clone();
    next.status = target;
    match t {
        FrameworkTransition::Grant {
            valid_from, valid_to, ..
        } => {
            if valid_to.is_some_and(|to| to < *valid_from) {
                v.push(
                    format!("{field}.valid_to"),
                    "BEFORE_START",
                    "must not be before valid_from",
                );
            }
            next.valid_from = *valid_from;
            next.valid_to = *valid_to;
        }
        FrameworkTransition::Renew { valid_to, .. } => {
            let previous_end = current.valid_to;
            if let (Some(new), Some(old)) = (valid_to, previous_end)
                && *new <= old
            {
                v.push(
                    format!("{field}.valid_to"),
                    "NOT_EXTENDED",
                    "must be after the current end of validity",
                );
            }
            next.valid_to = *valid_to;
        }
        FrameworkTransition::Suspend { .. } => {
            next.suspended_from = Some(current.status);
            next.suspended_on = Some(date);
        }
        FrameworkTransition::Reinstate { .. } => {
            let aap = matches!(current.pathway, Pathway::AapPre | Pathway::AapPost);
            if let Some(since) = current.suspended_on {
                if date < since {
                    v.push(
                        format!("{field}.date"),
                        "BEFORE_PREVIOUS_STEP",
                        "must not be before the suspension",
                    );
                }
                let limit = since.checked_add_months(Months::new(AAP_MAX_SUSPENSION_MONTHS));
                if aap && limit.is_some_and(|limit| date > limit) {
                    v.push(
                        format!("{field}.date"),
                        "SUSPENSION_TOO_LONG",
                        "an early-access framework is suspended for at most 3 months: withdraw it instead",
                    );
                }
            }
            next.suspended_from = None;
            next.suspended_on = None;
        }
        FrameworkTransition::AmendProtocol {
            protocol_version,
            synthesis_months,
            ..
        } => {
            if protocol_version.trim().is_empty() || protocol_version.chars().count() > 50 {
                v.push(
                    format!("{field}.protocol_version"),
                    "OUT_OF_RANGE",
                    "must be 1 to 50 characters",
                );
            } else if protocol_version.trim() == current.protocol_version {
                v.push(
                    format!("{field}.protocol_version"),
                    "UNCHANGED",
                    "is the protocol version in force: an amendment names its new version",
                );
            }
            if *synthesis_months > MAX_SYNTHESIS_MONTHS {
                v.push(
                    format!("{field}.synthesis_months"),
                    "OUT_OF_RANGE",
                    "must be between 0 (no periodic synthesis) and 36",
                );
            }
            next.protocol_version = protocol_version.trim().to_owned();
            if *synthesis_months != current.synthesis_months {
                // Periods already due keep their bounds; the new interval starts after them.
                next.synthesis_from = current
                    .ended_synthesis_periods(date)
                    .last()
                    .and_then(|p| p.to.succ_opt())
                    .or(current.synthesis_from);
                next.synthesis_months = *synthesis_months;
            }
        }
        FrameworkTransition::End { date } => {
            if *date < current.valid_from {
                v.push(format!("{field}.date"), "BEFORE_START", "must not be before valid_from");
            }
            next.valid_to = Some(current.valid_to.map_or(*date, |to| to.min(*date)));
            next.suspended_from = None;
            next.suspended_on = None;
        }
        FrameworkTransition::Withdraw { .. } => {
            next.suspended_from = None;
            next.suspended_on = None;
        }
        FrameworkTransition::StartReview { .. }
        | FrameworkTransition::Refuse { .. }
        | FrameworkTransition::SubmitRenewal { .. } => {}
    }
    v.into_result()?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Atc, OrphaCode};
    use crate::model::{ProtocolType, parse_date};

    fn day(s: &str) -> NaiveDate {
        parse_date(s).expect("date")
    }

    fn aap(status: FrameworkStatus) -> Framework {
        Framework {
            pathway: Pathway::AapPre,
            drug_atc: Atc::parse("B02BX07").expect("atc"),
            indication: "x".into(),
            orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
            authority: "HAS".into(),
            decision_reference: "r".into(),
            valid_from: day("2024-01-01"),
            valid_to: Some(day("2025-12-31")),
            status,
            protocol_type: ProtocolType::PutRd,
            protocol_version: "1".into(),
            follow_up_months: 6,
            source: "test".into(),
            confirmed: true,
            suspended_from: None,
            suspended_on: None,
            requires_national_rcp: false,
            synthesis_months: 0,
            synthesis_from: None,
        }
    }

    #[test]
    fn synthesis_periods_follow_one_another_from_the_start_of_validity_and_stop_at_its_end() {
        let mut f = aap(FrameworkStatus::Granted);
        // No periodicity set: no period.
        assert!(f.ended_synthesis_periods(day("2026-06-01")).is_empty());
        assert_eq!(f.current_synthesis_period(day("2026-06-01")), None);
        f.synthesis_months = 6;
        f.valid_from = day("2024-01-31");
        let periods = f.ended_synthesis_periods(day("2025-02-01"));
        let bounds: Vec<(String, String)> = periods.iter().map(|p| (p.from.to_string(), p.to.to_string())).collect();
        // Months counted from the first day each time, so that a short month does not drift.
        assert_eq!(
            bounds,
            vec![
                ("2024-01-31".to_owned(), "2024-07-30".to_owned()),
                ("2024-07-31".to_owned(), "2025-01-30".to_owned()),
            ]
        );
        // A period ends once its last day is over.
        assert_eq!(f.ended_synthesis_periods(day("2025-01-30")).len(), 1);
        let current = f.current_synthesis_period(day("2025-02-01")).expect("in progress");
        assert_eq!((current.from, current.to), (day("2025-01-31"), day("2025-07-30")));
        // The last period is cut at the end of validity, and none follows it.
        let ended = f.ended_synthesis_periods(day("2027-01-01"));
        assert_eq!(ended.last().map(|p| p.to), Some(day("2025-12-31")));
        assert_eq!(ended.len(), 4);
        assert_eq!(f.current_synthesis_period(day("2027-01-01")), None);
    }

    #[test]
    fn a_protocol_amendment_names_its_new_version_and_keeps_the_status() {
        let today = day("2026-06-01");
        let f = aap(FrameworkStatus::Renewed);
        let amend = |version: &str, months: u32| FrameworkTransition::AmendProtocol {
            date: day("2026-05-01"),
            protocol_version: version.into(),
            synthesis_months: months,
        };
        let amended = transition_framework(&f, &amend("2", 12), today).expect("amend");
        assert_eq!(amended.status, FrameworkStatus::Renewed);
        assert_eq!((amended.protocol_version.as_str(), amended.synthesis_months), ("2", 12));
        // Six-monthly, then yearly: the periods due under the first interval keep their bounds,
        // and the yearly ones start after the last of them.
        let six = Framework {
            synthesis_months: 6,
            synthesis_from: None,
            valid_to: None,
            ..f.clone()
        };
        let yearly = transition_framework(
            &six,
            &FrameworkTransition::AmendProtocol {
                date: day("2025-02-15"),
                protocol_version: "2".into(),
                synthesis_months: 12,
            },
            today,
        )
        .expect("amend");
        assert_eq!(yearly.synthesis_from, Some(day("2025-01-01")));
        let periods: Vec<(NaiveDate, NaiveDate)> = yearly
            .ended_synthesis_periods(day("2027-01-01"))
            .iter()
            .map(|p| (p.from, p.to))
            .collect();
        assert_eq!(
            periods,
            vec![
                (day("2025-01-01"), day("2025-12-31")),
                (day("2026-01-01"), day("2026-12-31"))
            ]
        );
        let fields = |e: DomainError| match e {
            DomainError::Invalid(v) => v
                .as_slice()
                .iter()
                .map(|f| (f.field.clone(), f.reason.to_string()))
                .collect::<Vec<_>>(),
            other => panic!("expected violations, got {other}"),
        };
        assert_eq!(
            fields(transition_framework(&f, &amend("1", 12), today).unwrap_err()),
            vec![("amend_protocol.protocol_version".to_owned(), "UNCHANGED".to_owned())]
        );
        assert_eq!(
            fields(transition_framework(&f, &amend("2", 37), today).unwrap_err()),
            vec![("amend_protocol.synthesis_months".to_owned(), "OUT_OF_RANGE".to_owned())]
        );
        assert!(matches!(
            transition_framework(&aap(FrameworkStatus::Withdrawn), &amend("2", 12), today),
            Err(DomainError::IllegalTransition { .. })
        ));
    }

    #[test]
    fn an_aap_suspension_lasts_at_most_three_months() {
        let today = day("2026-06-01");
        let suspended = transition_framework(
            &aap(FrameworkStatus::Renewed),
            &FrameworkTransition::Suspend {
                date: day("2025-01-10"),
            },
            today,
        )
        .expect("suspend");
        let back = transition_framework(
            &suspended,
            &FrameworkTransition::Reinstate {
                date: day("2025-03-01"),
            },
            today,
        )
        .expect("reinstate within 3 months");
        assert_eq!(
            back.status,
            FrameworkStatus::Renewed,
            "back to the state it was suspended from"
        );
        let late = transition_framework(
            &suspended,
            &FrameworkTransition::Reinstate {
                date: day("2025-05-01"),
            },
            today,
        );
        assert!(matches!(late, Err(DomainError::Invalid(_))), "{late:?}");
    }

    #[test]
    fn a_refused_renewal_ends_the_framework_at_its_validity() {
        let today = day("2026-06-01");
        let f = transition_framework(
            &aap(FrameworkStatus::RenewalSubmitted),
            &FrameworkTransition::Refuse {
                date: day("2025-11-01"),
            },
            today,
        )
        .expect("refuse");
        assert_eq!(f.status, FrameworkStatus::Ended);
        assert!(
            f.valid_on(day("2025-12-01")),
            "the old decision stays valid until its end"
        );
        assert!(!f.valid_on(day("2026-01-01")));
        let ended = transition_framework(
            &aap(FrameworkStatus::Granted),
            &FrameworkTransition::End {
                date: day("2025-06-30"),
            },
            today,
        )
        .expect("end");
        assert_eq!(ended.valid_to, Some(day("2025-06-30")));
        match transition_framework(
            &ended,
            &FrameworkTransition::SubmitRenewal {
                date: day("2025-07-01"),
            },
            today,
        ) {
            Err(DomainError::IllegalTransition { from, to, .. }) => {
                assert_eq!((from, to), ("ENDED", "RENEWAL_SUBMITTED"))
            }
            other => panic!("{other:?}"),
        }
    }
}
