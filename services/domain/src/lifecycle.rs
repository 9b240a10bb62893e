//! Rules that depend on other records and on time: declaring an episode against its cohort,
//! framework and prescriber, and the state machines of episodes and per-patient authorisations.
//!
//! Each function takes the current state and returns the next one, or says why not; the store
//! calls them inside the write transaction, so the state they see is the one they replace.

use chrono::{Months, NaiveDate};

use crate::codes::Finess;
use crate::codes::OrphaCode;
use crate::error::{DomainError, Violations};
use crate::model::{
    AdverseEvent, Authorisation, AuthorisationStatus, Cohort, CohortStatus, Dosage, Episode, EpisodeStatus, FollowUp,
    Framework, OffLabelJustification, Pathway, Prescriber, Rcp, RcpReview, RecordId, StopReason,
};

/// An episode as a prescriber declares it, parsed but not yet checked against the registry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpisodeDeclaration {
    pub patient_id: RecordId,
    pub cohort_id: RecordId,
    pub pathway: Pathway,
    pub indication: OrphaCode,
    pub prescriber: crate::codes::Rpps,
    pub centre_finess: Option<Finess>,
    pub rcp: Option<Rcp>,
    pub off_label: Option<OffLabelJustification>,
    pub dosage: Option<Dosage>,
    pub request_date: NaiveDate,
    pub authorisation: Option<AuthorisationRequest>,
    pub previous_episode: Option<(RecordId, i64)>,
    /// Dispensed before the request (AAC and nominative ATU only).
    pub dispense_first: bool,
    /// The cohort's drug is a one-shot treatment: set by the application layer from the
    /// reference release in force (no caller says it).
    pub single_administration: bool,
    /// The patient's RCP review whose opinion the treatment follows (instead of `rcp`).
    pub rcp_review: Option<RecordId>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuthorisationRequest {
    pub submitted_date: NaiveDate,
    pub reference: Option<String>,
}

/// What the registry knows that a declaration is checked against.
#[derive(Debug)]
pub struct DeclarationContext<'a> {
    pub cohort: &'a Cohort,
    pub framework: Option<&'a Framework>,
    pub prescriber: &'a Prescriber,
    /// The RCP review the declaration names, as the patient record holds it (`None` when it
    /// names none, or one the patient does not have).
    pub rcp_review: Option<&'a RcpReview>,
    pub today: NaiveDate,
}

/// Checks a declaration and builds the new episode (status DECLARED) and, for per-patient
/// pathways, the authorisation request (status SUBMITTED). Ids of the new records are given by
/// the caller, who mints them.
pub fn declare_episode(
    d: &EpisodeDeclaration,
    ctx: &DeclarationContext<'_>,
    authorisation_id: Option<RecordId>,
    episode_id: &RecordId,
) -> Result<(Episode, Option<Authorisation>), DomainError> {
    let mut v = Violations::new();
    if ctx.cohort.status != CohortStatus::Open {
        return Err(DomainError::Precondition(format!(
            "cohort {} is {} and accepts no new episode",
            d.cohort_id, ctx.cohort.status
        )));
    }
    if d.pathway != ctx.cohort.pathway {
        v.push(
            "pathway",
            "PATHWAY_MISMATCH",
            format!("must be the cohort's pathway {}", ctx.cohort.pathway),
        );
    }
    if !ctx.cohort.orpha_codes.contains(&d.indication) {
        v.push(
            "indication_orpha_code",
            "NOT_IN_COHORT",
            "must be one of the cohort's ORPHA codes",
        );
    }
    if d.request_date > ctx.today {
        v.push("request_date", "IN_FUTURE", "must not be in the future");
    }
    if let Some(rcp) = &d.rcp
        && rcp.date > ctx.today
    {
        v.push("rcp.date", "IN_FUTURE", "must not be in the future");
    }
    // A tracked RCP review: the patient's, on the cohort's drug, with its opinion given.
    let reviewed = match (&d.rcp_review, ctx.rcp_review) {
        (None, _) => None,
        (Some(_), _) if d.rcp.is_some() => {
            v.push(
                "rcp",
                "CONFLICT",
                "name the RCP review (rcp_review_id) or state the opinion (rcp), not both",
            );
            None
        }
        (Some(_), None) => {
            v.push("rcp_review_id", "NOT_FOUND", "is not an RCP review of this patient");
            None
        }
        (Some(_), Some(review)) => {
            if review.drug_atc != ctx.cohort.drug_atc {
                v.push(
                    "rcp_review_id",
                    "OTHER_DRUG",
                    format!(
                        "the review is about {}, the cohort's drug is {}",
                        review.drug_atc, ctx.cohort.drug_atc
                    ),
                );
            }
            match review.as_rcp() {
                Some(rcp) if review.opinion != Some(crate::model::RcpOpinion::Deferred) => Some(rcp),
                _ => {
                    return Err(DomainError::Precondition(format!(
                        "RCP review {} awaits its opinion: record it before declaring the treatment",
                        review.id
                    )));
                }
            }
        }
    };
    let centre = d
        .centre_finess
        .clone()
        .unwrap_or_else(|| ctx.prescriber.centre_finess.clone());

    // Pathway-specific requirements.
    if d.pathway.needs_authorisation() {
        match &d.authorisation {
            None => v.push(
                "authorisation",
                "REQUIRED",
                format!(
                    "is required for a {} episode (per-patient authorisation request)",
                    d.pathway
                ),
            ),
            Some(a) => {
                if a.submitted_date < d.request_date {
                    v.push(
                        "authorisation.submitted_date",
                        "BEFORE_REQUEST",
                        "must not be before request_date",
                    );
                }
                if a.submitted_date > ctx.today {
                    v.push("authorisation.submitted_date", "IN_FUTURE", "must not be in the future");
                }
            }
        }
    } else if d.authorisation.is_some() {
        v.push(
            "authorisation",
            "NOT_APPLICABLE",
            format!(
                "only AAC and ATU_NOMINATIVE episodes take a per-patient authorisation, not {}",
                d.pathway
            ),
        );
    }
    if d.pathway.needs_framework() {
        match ctx.framework {
            None => v.push(
                "cohort_id",
                "NO_FRAMEWORK",
                format!("a {} episode needs a cohort bound to a framework", d.pathway),
            ),
            Some(f) => {
                if !f.valid_on(d.request_date) {
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
            }
        }
    }
    if d.pathway == Pathway::OffLabel {
        if d.off_label.is_none() {
            v.push(
                "off_label",
                "REQUIRED",
                "is required for an OFF_LABEL episode (deviating axes and evidence reference)",
            );
        }
    } else if d.off_label.is_some() && d.pathway != Pathway::Cpc && d.pathway != Pathway::Rtu {
        v.push(
            "off_label",
            "NOT_APPLICABLE",
            format!("an off-label justification does not apply to a {} episode", d.pathway),
        );
    }
    if d.dispense_first && !d.pathway.needs_authorisation() {
        v.push(
            "dispense_first",
            "NOT_APPLICABLE",
            format!(
                "dispensing before the request applies to per-patient authorisations (AAC), not to a {} episode",
                d.pathway
            ),
        );
    }
    v.into_result()?;
    if let Some(f) = ctx
        .framework
        .filter(|f| f.requires_national_rcp && d.pathway.needs_framework())
    {
        check_national_rcp(f, reviewed.as_ref().or(d.rcp.as_ref()))?;
    }

    let authorisation = match (&d.authorisation, authorisation_id.clone()) {
        (Some(req), Some(_)) if d.pathway.needs_authorisation() => Some(Authorisation {
            episode_id: episode_id.clone(),
            patient_id: d.patient_id.clone(),
            pathway: d.pathway,
            reference: req.reference.clone(),
            status: AuthorisationStatus::Submitted,
            submitted_date: req.submitted_date,
            decision_date: None,
            valid_from: None,
            valid_to: None,
            renewals: 0,
            suspended_from: None,
        }),
        _ => None,
    };
    let episode = Episode {
        patient_id: d.patient_id.clone(),
        cohort_id: d.cohort_id.clone(),
        pathway: d.pathway,
        drug_atc: ctx.cohort.drug_atc.clone(),
        indication: d.indication.clone(),
        prescriber_rpps: d.prescriber.clone(),
        centre_finess: centre,
        framework_id: ctx.cohort.framework_id.clone(),
        authorisation_id: authorisation.as_ref().and(authorisation_id),
        rcp: reviewed.or_else(|| d.rcp.clone()),
        off_label: d.off_label.clone(),
        dosage: d.dosage.clone(),
        request_date: d.request_date,
        decision_date: ctx
            .framework
            .filter(|_| d.pathway.needs_framework())
            .map(|_| d.request_date),
        first_administration_date: None,
        status: EpisodeStatus::Declared,
        end_date: None,
        stop_reason: None,
        previous_episode_id: d.previous_episode.as_ref().map(|(id, _)| id.clone()),
        transferred_to: None,
        dispense_first: d.dispense_first,
        single_administration: d.single_administration,
        rcp_review_id: d.rcp_review.clone(),
    };
    Ok((episode, authorisation))
}

/// A framework granted on condition of a national RCP's favourable opinion takes a declaration
/// only with one (FAILED_PRECONDITION saying what is missing).
fn check_national_rcp(f: &Framework, rcp: Option<&Rcp>) -> Result<(), DomainError> {
    use crate::model::RcpLevel;
    let missing = match rcp {
        None => "no RCP opinion is recorded".to_owned(),
        Some(r) if r.level == Some(RcpLevel::Local) => "the RCP recorded is a local one".to_owned(),
        Some(r) if r.level.is_none() => "the RCP recorded is of no stated level (rcp.level)".to_owned(),
        Some(r) if !r.opinion.is_favourable() => format!("the national RCP's opinion is {}", r.opinion),
        Some(_) => return Ok(()),
    };
    Err(DomainError::Precondition(format!(
        "the framework {} requires a favourable opinion of a national RCP (rcp.level NATIONAL, opinion FAVOURABLE or \
         FAVOURABLE_WITH_CONDITIONS): {missing}",
        f.decision_reference
    )))
}

/// A lifecycle step of an episode.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum EpisodeTransition {
    Initiate {
        date: NaiveDate,
        dosage: Option<Dosage>,
    },
    Stop {
        date: NaiveDate,
        reason: StopReason,
    },
    Transfer {
        date: NaiveDate,
        to: Finess,
    },
    LostToFollowUp {
        date: NaiveDate,
    },
    Deceased {
        date: NaiveDate,
    },
    /// A new episode of the same patient replaces this one.
    Switch {
        date: NaiveDate,
    },
    /// A follow-up visit was recorded.
    FollowUpRecorded,
}

impl EpisodeTransition {
    pub fn action(&self) -> &'static str {
        match self {
            EpisodeTransition::Initiate { .. } => "initiate",
            EpisodeTransition::Stop { .. } => "stop",
            EpisodeTransition::Transfer { .. } => "transfer",
            EpisodeTransition::LostToFollowUp { .. } => "declare lost to follow-up",
            EpisodeTransition::Deceased { .. } => "declare deceased",
            EpisodeTransition::Switch { .. } => "switch",
            EpisodeTransition::FollowUpRecorded => "record a follow-up on",
        }
    }

    /// The state the transition leads to.
    pub fn target(&self) -> EpisodeStatus {
        match self {
            EpisodeTransition::Initiate { .. } => EpisodeStatus::Initiated,
            EpisodeTransition::Stop { .. } => EpisodeStatus::Stopped,
            EpisodeTransition::Transfer { .. } => EpisodeStatus::Transferred,
            EpisodeTransition::LostToFollowUp { .. } => EpisodeStatus::LostToFollowUp,
            EpisodeTransition::Deceased { .. } => EpisodeStatus::Deceased,
            EpisodeTransition::Switch { .. } => EpisodeStatus::Switched,
            EpisodeTransition::FollowUpRecorded => EpisodeStatus::Ongoing,
        }
    }

    /// Field path of the transition's date in TransitionEpisodeRequest.
    fn date_field(&self) -> &'static str {
        match self {
            EpisodeTransition::Initiate { .. } => "initiate.first_administration_date",
            EpisodeTransition::Stop { .. } => "stop.date",
            EpisodeTransition::Transfer { .. } => "transfer.date",
            EpisodeTransition::LostToFollowUp { .. } => "lost_to_follow_up.date",
            EpisodeTransition::Deceased { .. } => "deceased.date",
            EpisodeTransition::Switch { .. } => "request_date",
            EpisodeTransition::FollowUpRecorded => "visit_date",
        }
    }
}

/// A one-shot treatment once given is not stopped for a reason: its long-term follow-up ends
/// (END_OF_FOLLOW_UP, or OTHER); END_OF_FOLLOW_UP ends nothing else.
fn check_stop_reason(current: &Episode, reason: StopReason) -> Result<(), DomainError> {
    let given_once = current.single_administration && current.first_administration_date.is_some();
    let ends_follow_up = matches!(reason, StopReason::EndOfFollowUp | StopReason::Other);
    if given_once && !ends_follow_up {
        return Err(DomainError::invalid(
            "stop.reason",
            "SINGLE_ADMINISTRATION",
            "a one-shot treatment was given once: it is not stopped for a reason, its follow-up ends \
             (END_OF_FOLLOW_UP); a patient lost to follow-up or deceased is recorded as such",
        ));
    }
    if !given_once && reason == StopReason::EndOfFollowUp {
        return Err(DomainError::invalid(
            "stop.reason",
            "NOT_SINGLE_ADMINISTRATION",
            "END_OF_FOLLOW_UP ends the follow-up of a one-shot treatment already given; a treatment is stopped for a reason",
        ));
    }
    Ok(())
}

/// Applies an episode transition. `authorisation` is the episode's per-patient authorisation,
/// needed to initiate AAC and ATU nominative episodes.
pub fn transition_episode(
    current: &Episode,
    t: &EpisodeTransition,
    authorisation: Option<&Authorisation>,
    today: NaiveDate,
) -> Result<Episode, DomainError> {
    use EpisodeStatus as S;
    let illegal = || DomainError::IllegalTransition {
        entity: "an episode",
        action: t.action(),
        from: current.status.code(),
        to: t.target().code(),
    };
    let mut next = current.clone();
    let end_date_check = |date: NaiveDate| -> Result<(), DomainError> {
        let mut v = Violations::new();
        if date > today {
            v.push(t.date_field(), "IN_FUTURE", "must not be in the future");
        }
        let start = current.first_administration_date.unwrap_or(current.request_date);
        if date < start {
            v.push(
                t.date_field(),
                "BEFORE_START",
                format!("must not be before the episode's start ({start})"),
            );
        }
        v.into_result()
    };
    match t {
        EpisodeTransition::Initiate { date, dosage } => {
            if current.status != S::Declared {
                return Err(illegal());
            }
            let mut v = Violations::new();
            if *date > today {
                v.push(t.date_field(), "IN_FUTURE", "must not be in the future");
            }
            if *date < current.request_date {
                v.push(t.date_field(), "BEFORE_REQUEST", "must not be before the request date");
            }
            v.into_result()?;
            if current.pathway.needs_authorisation() {
                let pending = |a: &Authorisation| {
                    matches!(
                        a.status,
                        AuthorisationStatus::Submitted | AuthorisationStatus::InformationRequested
                    )
                };
                match authorisation {
                    Some(a) if a.covers(*date) => {}
                    // Dispensed first: given before the request is decided (and flagged until it is).
                    Some(a) if current.dispense_first && (pending(a) || a.status.allows_treatment()) => {}
                    Some(a) => {
                        return Err(DomainError::Precondition(format!(
                            "the episode's authorisation is {} and does not cover {date}",
                            a.status
                        )));
                    }
                    None => {
                        return Err(DomainError::Precondition(
                            "the episode has no per-patient authorisation".into(),
                        ));
                    }
                }
                next.decision_date = authorisation.and_then(|a| a.decision_date);
            }
            next.first_administration_date = Some(*date);
            if let Some(d) = dosage {
                next.dosage = Some(d.clone());
            }
            next.status = S::Initiated;
        }
        EpisodeTransition::FollowUpRecorded => match current.status {
            S::Initiated => next.status = S::Ongoing,
            S::Ongoing => {}
            _ => return Err(illegal()),
        },
        EpisodeTransition::Stop { date, reason } => {
            if !matches!(current.status, S::Declared | S::Initiated | S::Ongoing) {
                return Err(illegal());
            }
            check_stop_reason(current, *reason)?;
            end_date_check(*date)?;
            next.status = S::Stopped;
            next.end_date = Some(*date);
            next.stop_reason = Some(*reason);
        }
        EpisodeTransition::Transfer { date, to } => {
            if !matches!(current.status, S::Initiated | S::Ongoing) {
                return Err(illegal());
            }
            if *to == current.centre_finess {
                return Err(DomainError::invalid(
                    "transfer.to_centre_finess",
                    "SAME_CENTRE",
                    "must differ from the episode's centre",
                ));
            }
            end_date_check(*date)?;
            next.status = S::Transferred;
            next.end_date = Some(*date);
            next.transferred_to = Some(to.clone());
        }
        EpisodeTransition::LostToFollowUp { date } => {
            if !matches!(current.status, S::Initiated | S::Ongoing) {
                return Err(illegal());
            }
            end_date_check(*date)?;
            next.status = S::LostToFollowUp;
            next.end_date = Some(*date);
            next.stop_reason = Some(StopReason::LostToFollowUp);
        }
        EpisodeTransition::Deceased { date } => {
            if !matches!(current.status, S::Declared | S::Initiated | S::Ongoing) {
                return Err(illegal());
            }
            end_date_check(*date)?;
            next.status = S::Deceased;
            next.end_date = Some(*date);
            next.stop_reason = Some(StopReason::Death);
        }
        EpisodeTransition::Switch { date } => {
            if !matches!(current.status, S::Initiated | S::Ongoing) {
                return Err(illegal());
            }
            end_date_check(*date)?;
            next.status = S::Switched;
            next.end_date = Some(*date);
            next.stop_reason = Some(StopReason::Switch);
        }
    }
    Ok(next)
}

/// A lifecycle step of a per-patient authorisation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum AuthorisationTransition {
    RequestInformation {
        date: NaiveDate,
    },
    Resubmit {
        date: NaiveDate,
    },
    Grant {
        decision_date: NaiveDate,
        valid_from: NaiveDate,
        valid_to: NaiveDate,
        reference: Option<String>,
    },
    Refuse {
        date: NaiveDate,
    },
    SubmitRenewal {
        date: NaiveDate,
    },
    Renew {
        decision_date: NaiveDate,
        valid_from: NaiveDate,
        valid_to: NaiveDate,
        reference: Option<String>,
    },
    Expire {
        date: NaiveDate,
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
}

impl AuthorisationTransition {
    pub fn action(&self) -> &'static str {
        match self {
            AuthorisationTransition::RequestInformation { .. } => "request information on",
            AuthorisationTransition::Resubmit { .. } => "resubmit",
            AuthorisationTransition::Grant { .. } => "grant",
            AuthorisationTransition::Refuse { .. } => "refuse",
            AuthorisationTransition::SubmitRenewal { .. } => "submit a renewal of",
            AuthorisationTransition::Renew { .. } => "renew",
            AuthorisationTransition::Expire { .. } => "expire",
            AuthorisationTransition::Suspend { .. } => "suspend",
            AuthorisationTransition::Reinstate { .. } => "reinstate",
            AuthorisationTransition::Withdraw { .. } => "withdraw",
        }
    }

    /// The state the transition leads to from `current`.
    pub fn target(&self, current: &Authorisation) -> AuthorisationStatus {
        use AuthorisationStatus as S;
        match self {
            AuthorisationTransition::RequestInformation { .. } => S::InformationRequested,
            AuthorisationTransition::Resubmit { .. } => current.suspended_from.unwrap_or(S::Submitted),
            AuthorisationTransition::Grant { .. } => S::Granted,
            AuthorisationTransition::Refuse { .. } if current.status == S::RenewalSubmitted => S::RenewalRefused,
            AuthorisationTransition::Refuse { .. } => S::Refused,
            AuthorisationTransition::SubmitRenewal { .. } => S::RenewalSubmitted,
            AuthorisationTransition::Renew { .. } => S::Renewed,
            AuthorisationTransition::Expire { .. } => S::Expired,
            AuthorisationTransition::Suspend { .. } => S::Suspended,
            AuthorisationTransition::Reinstate { .. } => current.suspended_from.unwrap_or(S::Granted),
            AuthorisationTransition::Withdraw { .. } => S::Withdrawn,
        }
    }

    /// Name of the oneof member in TransitionAuthorisationRequest, for field paths.
    pub fn field(&self) -> &'static str {
        match self {
            AuthorisationTransition::RequestInformation { .. } => "request_information",
            AuthorisationTransition::Resubmit { .. } => "resubmit",
            AuthorisationTransition::Grant { .. } => "grant",
            AuthorisationTransition::Refuse { .. } => "refuse",
            AuthorisationTransition::SubmitRenewal { .. } => "submit_renewal",
            AuthorisationTransition::Renew { .. } => "renew",
            AuthorisationTransition::Expire { .. } => "expire",
            AuthorisationTransition::Suspend { .. } => "suspend",
            AuthorisationTransition::Reinstate { .. } => "reinstate",
            AuthorisationTransition::Withdraw { .. } => "withdraw",
        }
    }
}

/// Applies an authorisation transition, enforcing the state machine, date order and the
/// pathway's validity cap (AAC: at most one year per grant or renewal).
pub fn transition_authorisation(
    current: &Authorisation,
    t: &AuthorisationTransition,
    today: NaiveDate,
) -> Result<Authorisation, DomainError> {
    use AuthorisationStatus as S;
    use AuthorisationTransition as T;
    let illegal = || DomainError::IllegalTransition {
        entity: "an authorisation",
        action: t.action(),
        from: current.status.code(),
        to: t.target(current).code(),
    };
    let f = t.field();
    let mut v = Violations::new();
    let last_date = current
        .decision_date
        .unwrap_or(current.submitted_date)
        .max(current.submitted_date);
    let check_step_date = |v: &mut Violations, field: String, date: NaiveDate| {
        if date > today {
            v.push(field.clone(), "IN_FUTURE", "must not be in the future");
        }
        if date < last_date {
            v.push(
                field,
                "BEFORE_PREVIOUS_STEP",
                format!("must not be before the previous step ({last_date})"),
            );
        }
    };
    let mut next = current.clone();
    match t {
        T::RequestInformation { date } => {
            if current.status != S::Submitted && current.status != S::RenewalSubmitted {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = S::InformationRequested;
            next.suspended_from = Some(current.status);
        }
        T::Resubmit { date } => {
            if current.status != S::InformationRequested {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = current.suspended_from.unwrap_or(S::Submitted);
            next.suspended_from = None;
        }
        T::Grant {
            decision_date,
            valid_from,
            valid_to,
            reference,
        }
        | T::Renew {
            decision_date,
            valid_from,
            valid_to,
            reference,
        } => {
            let renewing = matches!(t, T::Renew { .. });
            let allowed = if renewing {
                current.status == S::RenewalSubmitted
            } else {
                current.status == S::Submitted
            };
            if !allowed {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.decision_date"), *decision_date);
            if valid_to < valid_from {
                v.push(format!("{f}.valid_to"), "BEFORE_START", "must not be before valid_from");
            }
            if let Some(months) = current.pathway.max_authorisation_months() {
                let cap = valid_from.checked_add_months(Months::new(months));
                if cap.is_some_and(|cap| *valid_to >= cap) {
                    v.push(
                        format!("{f}.valid_to"),
                        "VALIDITY_TOO_LONG",
                        format!("a {} grant or renewal lasts at most {months} months", current.pathway),
                    );
                }
            }
            if renewing && current.valid_from.is_some_and(|previous| *valid_from <= previous) {
                v.push(
                    format!("{f}.valid_from"),
                    "OVERLAPS_PREVIOUS",
                    "must be after the start of the previous validity",
                );
            }
            let reference = reference.clone().or_else(|| current.reference.clone());
            if reference.is_none() {
                v.push(
                    format!("{f}.reference"),
                    "REQUIRED",
                    "is required: the authorisation has no ANSM reference yet",
                );
            }
            next.reference = reference;
            next.status = if renewing { S::Renewed } else { S::Granted };
            next.decision_date = Some(*decision_date);
            next.valid_from = Some(*valid_from);
            next.valid_to = Some(*valid_to);
            if renewing {
                next.renewals += 1;
            }
        }
        T::Refuse { date } => {
            if current.status != S::Submitted && current.status != S::RenewalSubmitted {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            // A refused renewal is not a refused request: the grant stays valid to its end.
            next.status = if current.status == S::RenewalSubmitted {
                S::RenewalRefused
            } else {
                S::Refused
            };
            next.decision_date = Some(*date);
        }
        T::SubmitRenewal { date } => {
            if current.status != S::Granted && current.status != S::Renewed {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = S::RenewalSubmitted;
        }
        T::Expire { date } => {
            if !current.status.allows_treatment() {
                return Err(illegal());
            }
            if date > &today {
                v.push(format!("{f}.date"), "IN_FUTURE", "must not be in the future");
            }
            match current.valid_to {
                Some(to) if *date > to => {}
                _ => v.push(
                    format!("{f}.date"),
                    "STILL_VALID",
                    "must be after the end of validity (valid_to)",
                ),
            }
            next.status = S::Expired;
        }
        T::Suspend { date } => {
            if !current.status.allows_treatment() {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = S::Suspended;
            next.suspended_from = Some(current.status);
        }
        T::Reinstate { date } => {
            if current.status != S::Suspended {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = current.suspended_from.unwrap_or(S::Granted);
            next.suspended_from = None;
        }
        T::Withdraw { date } => {
            if !matches!(
                current.status,
                S::Suspended
                    | S::Granted
                    | S::Renewed
                    | S::RenewalSubmitted
                    | S::RenewalRefused
                    | S::Submitted
                    | S::InformationRequested
            ) {
                return Err(illegal());
            }
            check_step_date(&mut v, format!("{f}.date"), *date);
            next.status = S::Withdrawn;
            next.suspended_from = None;
        }
    }
    v.into_result()?;
    Ok(next)
}

/// Days before the request a baseline visit may be: the work-up that led to the prescription.
pub const BASELINE_WINDOW_DAYS: u64 = 90;

/// Checks a follow-up visit against its episode and applies the episode's follow-up
/// transition (INITIATED becomes ONGOING). A visit before the first administration, on a
/// declared or started treatment, is its baseline (at most [`BASELINE_WINDOW_DAYS`] before
/// the request) and changes nothing in the episode; a visit after a stop is long-term
/// follow-up (a one-shot gene therapy is followed for years after its single administration)
/// and leaves the episode stopped.
pub fn record_follow_up(episode: &Episode, visit: &FollowUp, today: NaiveDate) -> Result<Episode, DomainError> {
    use EpisodeStatus as S;
    let mut v = Violations::new();
    if visit.visit_date > today {
        v.push("visit_date", "IN_FUTURE", "must not be in the future");
    }
    let baseline = episode
        .first_administration_date
        .is_none_or(|first| visit.visit_date < first);
    let earliest = episode
        .request_date
        .checked_sub_days(chrono::Days::new(BASELINE_WINDOW_DAYS))
        .unwrap_or(episode.request_date);
    if baseline && visit.visit_date < earliest {
        v.push(
            "visit_date",
            "BEFORE_BASELINE_WINDOW",
            format!("a baseline visit is at most {BASELINE_WINDOW_DAYS} days before the request ({earliest} at the earliest)"),
        );
    }
    let started = episode.first_administration_date.is_some();
    match episode.status {
        S::Declared | S::Initiated | S::Ongoing if baseline => {}
        S::Stopped if started && !baseline => {}
        S::Stopped => {
            return Err(DomainError::Precondition(
                "the treatment was stopped before its first administration: a visit follows a treatment given".into(),
            ));
        }
        _ => {}
    }
    for (i, m) in visit.measures.iter().enumerate() {
        if let Some(r) = crate::reference::measure(m.code.as_str())
            && (!m.value.is_finite() || m.value < r.min || m.value > r.max)
        {
            v.push(
                format!("measures[{i}].value"),
                "OUT_OF_RANGE",
                format!("must be a number between {} and {} for {}", r.min, r.max, r.code),
            );
        }
    }
    v.into_result()?;
    match episode.status {
        // A baseline, or a visit after the stop: the episode stays as it is.
        S::Declared | S::Initiated | S::Ongoing if baseline => Ok(episode.clone()),
        S::Stopped => Ok(episode.clone()),
        _ => transition_episode(episode, &EpisodeTransition::FollowUpRecorded, None, today),
    }
}

/// Checks an adverse event against its episode: an event is recorded on an episode that has
/// started (or was declared, for events before the first dose are not drug-related but still
/// reported), with its onset not in the future.
pub fn check_adverse_event(episode: &Episode, ae: &AdverseEvent, today: NaiveDate) -> Result<(), DomainError> {
    let mut v = Violations::new();
    if ae.onset_date > today {
        v.push("onset_date", "IN_FUTURE", "must not be in the future");
    }
    if ae.onset_date < episode.request_date {
        v.push(
            "onset_date",
            "BEFORE_START",
            "must not be before the episode's request date",
        );
    }
    if let Some(d) = ae.pv_declaration_date {
        if d < ae.onset_date {
            v.push("pv_declaration_date", "BEFORE_ONSET", "must not be before onset_date");
        }
        if d > today {
            v.push("pv_declaration_date", "IN_FUTURE", "must not be in the future");
        }
    }
    if ae.pv_receiver.is_some() && ae.pv_declaration_date.is_none() {
        v.push(
            "pv_receiver",
            "NOT_DECLARED",
            "names who the event was declared to: record the declaration's date with it",
        );
    }
    check_case_details(ae, today, &mut v);
    v.into_result()
}

/// The E2B(R3) case fields against the event and each other.
fn check_case_details(ae: &AdverseEvent, today: NaiveDate, v: &mut Violations) {
    use crate::model::{AeOutcome, ChallengeResult, DrugAction, SeriousnessCriterion as C};
    let d = &ae.details;
    for (i, c) in d.seriousness.iter().enumerate() {
        if d.seriousness[..i].contains(c) {
            v.push(
                format!("case_details.seriousness[{i}]"),
                "DUPLICATE",
                "each criterion at most once",
            );
        }
    }
    if !ae.serious && !d.seriousness.is_empty() {
        v.push(
            "serious",
            "CONTRADICTS_CRITERIA",
            "an event with seriousness criteria is serious",
        );
    }
    let death = d.seriousness.contains(&C::Death);
    if death && ae.outcome != AeOutcome::Fatal {
        v.push(
            "outcome",
            "CONTRADICTS_CRITERIA",
            "an event that resulted in death has the outcome FATAL",
        );
    }
    if ae.outcome == AeOutcome::Fatal && !ae.serious {
        v.push("serious", "FATAL_IS_SERIOUS", "a fatal event is serious");
    }
    if ae.outcome == AeOutcome::Fatal && !d.seriousness.is_empty() && !death {
        v.push(
            "case_details.seriousness",
            "DEATH_MISSING",
            "a fatal event names the criterion DEATH",
        );
    }
    if let Some(end) = d.end_date {
        if end < ae.onset_date {
            v.push("case_details.end_date", "BEFORE_ONSET", "must not be before onset_date");
        }
        if end > today {
            v.push("case_details.end_date", "IN_FUTURE", "must not be in the future");
        }
        if matches!(ae.outcome, AeOutcome::Recovering | AeOutcome::NotRecovered) {
            v.push(
                "case_details.end_date",
                "NOT_ENDED",
                format!("a reaction whose outcome is {} has not ended", ae.outcome),
            );
        }
    }
    let reduced = matches!(d.action_taken, Some(DrugAction::Withdrawn | DrugAction::DoseReduced));
    if matches!(
        d.dechallenge,
        Some(ChallengeResult::Positive | ChallengeResult::Negative)
    ) && !reduced
    {
        v.push(
            "case_details.dechallenge",
            "NOT_APPLICABLE",
            "a dechallenge follows a drug withdrawn or its dose reduced (action_taken)",
        );
    }
}

/// A serious event recorded now names its seriousness criteria (events recorded before the
/// criteria existed stay as they are when corrected).
pub fn check_new_adverse_event(ae: &AdverseEvent) -> Result<(), DomainError> {
    if ae.serious && ae.details.seriousness.is_empty() {
        return Err(DomainError::invalid(
            "case_details.seriousness",
            "REQUIRED",
            "a serious event names at least one seriousness criterion (death, life-threatening, hospitalisation, \
             disability, congenital anomaly, other medically important)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Atc, Filiere, Rpps, luhn_check_digit};
    use crate::model::{CohortStatus, FrameworkStatus, ProtocolType};

    fn day(s: &str) -> NaiveDate {
        crate::model::parse_date(s).expect("test date")
    }

    fn id(n: u8) -> RecordId {
        RecordId::parse(&format!("0193a000-0000-7000-8000-0000000000{n:02}")).expect("id")
    }

    fn rpps() -> Rpps {
        let payload = "1000000001";
        Rpps::parse(&format!("{payload}{}", luhn_check_digit(payload))).expect("rpps")
    }

    fn finess(s: &str) -> Finess {
        Finess::parse(s).expect("finess")
    }

    fn cohort(pathway: Pathway, framework: Option<RecordId>) -> Cohort {
        Cohort {
            name: "c".into(),
            filiere: Filiere::parse("MHEMO").expect("filiere"),
            pathway,
            drug_atc: Atc::parse("B02BX06").expect("atc"),
            orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
            framework_id: framework,
            follow_up_months: 3,
            status: CohortStatus::Open,
        }
    }

    fn framework(status: FrameworkStatus) -> Framework {
        Framework {
            pathway: Pathway::Cpc,
            drug_atc: Atc::parse("B02BX06").expect("atc"),
            indication: "acquired haemophilia A".into(),
            orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
            authority: "ANSM".into(),
            decision_reference: "x".into(),
            valid_from: day("2025-06-30"),
            valid_to: Some(day("2028-06-29")),
            status,
            protocol_type: ProtocolType::PutSp,
            protocol_version: "1".into(),
            follow_up_months: 3,
            source: "test".into(),
            confirmed: true,
            suspended_from: None,
            suspended_on: None,
            requires_national_rcp: false,
            synthesis_months: 0,
            synthesis_from: None,
        }
    }

    fn prescriber() -> Prescriber {
        Prescriber {
            rpps: rpps(),
            specialty: "haematology".into(),
            centre_finess: finess("750100125"),
        }
    }

    fn declaration(pathway: Pathway, request: &str) -> EpisodeDeclaration {
        EpisodeDeclaration {
            patient_id: id(1),
            cohort_id: id(2),
            pathway,
            indication: OrphaCode::parse("98878").expect("orpha"),
            prescriber: rpps(),
            centre_finess: None,
            rcp: None,
            off_label: None,
            dosage: None,
            request_date: day(request),
            authorisation: None,
            previous_episode: None,
            dispense_first: false,
            single_administration: false,
            rcp_review: None,
        }
    }

    fn fields(e: DomainError) -> Vec<String> {
        match e {
            DomainError::Invalid(v) => v.as_slice().iter().map(|f| f.field.clone()).collect(),
            other => panic!("expected field violations, got {other}"),
        }
    }

    #[test]
    fn a_cpc_episode_needs_a_framework_valid_on_the_request_date() {
        let today = day("2026-06-01");
        let c = cohort(Pathway::Cpc, Some(id(9)));
        let p = prescriber();
        let granted = framework(FrameworkStatus::Granted);
        let ctx = DeclarationContext {
            rcp_review: None,
            cohort: &c,
            framework: Some(&granted),
            prescriber: &p,
            today,
        };
        assert!(declare_episode(&declaration(Pathway::Cpc, "2026-05-01"), &ctx, None, &id(3)).is_ok());
        // Before the framework started.
        let e = declare_episode(&declaration(Pathway::Cpc, "2025-01-01"), &ctx, None, &id(3)).unwrap_err();
        assert_eq!(fields(e), vec!["request_date"]);
        // A suspended framework includes nobody.
        let suspended = framework(FrameworkStatus::Suspended);
        let ctx = DeclarationContext {
            framework: Some(&suspended),
            ..ctx
        };
        let e = declare_episode(&declaration(Pathway::Cpc, "2026-05-01"), &ctx, None, &id(3)).unwrap_err();
        assert_eq!(fields(e), vec!["request_date"]);
        // No framework at all.
        let ctx = DeclarationContext { framework: None, ..ctx };
        let e = declare_episode(&declaration(Pathway::Cpc, "2026-05-01"), &ctx, None, &id(3)).unwrap_err();
        assert_eq!(fields(e), vec!["cohort_id"]);
    }

    #[test]
    fn pathway_requirements_are_enforced() {
        let today = day("2026-06-01");
        let p = prescriber();
        let off = cohort(Pathway::OffLabel, None);
        let ctx = DeclarationContext {
            rcp_review: None,
            cohort: &off,
            framework: None,
            prescriber: &p,
            today,
        };
        let e = declare_episode(&declaration(Pathway::OffLabel, "2026-05-01"), &ctx, None, &id(3)).unwrap_err();
        assert_eq!(fields(e), vec!["off_label"]);
        let aac = cohort(Pathway::Aac, None);
        let ctx = DeclarationContext { cohort: &aac, ..ctx };
        let e = declare_episode(&declaration(Pathway::Aac, "2026-05-01"), &ctx, Some(id(4)), &id(3)).unwrap_err();
        assert_eq!(fields(e), vec!["authorisation"]);
        let mut d = declaration(Pathway::Aac, "2026-05-01");
        d.authorisation = Some(AuthorisationRequest {
            submitted_date: day("2026-05-02"),
            reference: None,
        });
        let (episode, auth) = declare_episode(&d, &ctx, Some(id(4)), &id(3)).expect("valid AAC declaration");
        assert_eq!(episode.authorisation_id, Some(id(4)));
        assert_eq!(
            episode.centre_finess, p.centre_finess,
            "centre defaults to the prescriber's"
        );
        assert_eq!(auth.map(|a| a.status), Some(AuthorisationStatus::Submitted));
    }

    fn submitted() -> Authorisation {
        Authorisation {
            episode_id: id(3),
            patient_id: id(1),
            pathway: Pathway::Aac,
            reference: Some("AAC-1".into()),
            status: AuthorisationStatus::Submitted,
            submitted_date: day("2026-01-10"),
            decision_date: None,
            valid_from: None,
            valid_to: None,
            renewals: 0,
            suspended_from: None,
        }
    }

    fn grant(from: &str, to: &str) -> AuthorisationTransition {
        AuthorisationTransition::Grant {
            decision_date: day(from),
            valid_from: day(from),
            valid_to: day(to),
            reference: None,
        }
    }

    #[test]
    fn a_refused_renewal_is_neither_a_refused_request_nor_an_expiry() {
        use AuthorisationStatus as S;
        let today = day("2026-12-20");
        let granted = transition_authorisation(&submitted(), &grant("2026-01-15", "2027-01-14"), today).expect("grant");
        let asked = transition_authorisation(
            &granted,
            &AuthorisationTransition::SubmitRenewal {
                date: day("2026-11-15"),
            },
            today,
        )
        .expect("renewal filed");
        let refused = transition_authorisation(
            &asked,
            &AuthorisationTransition::Refuse {
                date: day("2026-12-10"),
            },
            today,
        )
        .expect("renewal refused");
        assert_eq!(refused.status, S::RenewalRefused);
        assert!(refused.covers(day("2027-01-14")), "the grant stays valid to its end");
        assert!(!refused.covers(day("2027-01-15")));
        assert!(crate::worklist::in_force(refused.status), "its end is on the worklist");
        let expired = transition_authorisation(
            &refused,
            &AuthorisationTransition::Expire {
                date: day("2027-01-15"),
            },
            day("2027-01-20"),
        )
        .expect("then it expires");
        assert_eq!(expired.status, S::Expired);
        let first = transition_authorisation(
            &submitted(),
            &AuthorisationTransition::Refuse {
                date: day("2026-02-01"),
            },
            today,
        )
        .expect("a first request refused");
        assert_eq!(first.status, S::Refused);
        assert!(!first.status.allows_treatment());
    }

    #[test]
    fn aac_validity_is_capped_at_one_year() {
        let today = day("2026-06-01");
        let ok = transition_authorisation(&submitted(), &grant("2026-01-15", "2027-01-14"), today).expect("a year");
        assert_eq!(ok.status, AuthorisationStatus::Granted);
        let e = transition_authorisation(&submitted(), &grant("2026-01-15", "2027-01-15"), today).unwrap_err();
        assert_eq!(fields(e), vec!["grant.valid_to"]);
        // ATU nominative has no such cap.
        let atu = Authorisation {
            pathway: Pathway::AtuNominative,
            ..submitted()
        };
        assert!(transition_authorisation(&atu, &grant("2026-01-15", "2028-01-15"), today).is_ok());
    }

    #[test]
    fn the_authorisation_state_machine_refuses_illegal_steps_naming_both_states() {
        use AuthorisationStatus as S;
        let today = day("2026-06-01");
        let granted = transition_authorisation(&submitted(), &grant("2026-01-15", "2027-01-14"), today).expect("grant");
        let d = |s: &str| day(s);
        // (from, transition, expected result status or None when illegal)
        let cases: Vec<(Authorisation, AuthorisationTransition, Option<S>)> = vec![
            (
                submitted(),
                AuthorisationTransition::Refuse { date: d("2026-02-01") },
                Some(S::Refused),
            ),
            (
                submitted(),
                AuthorisationTransition::RequestInformation { date: d("2026-02-01") },
                Some(S::InformationRequested),
            ),
            (
                submitted(),
                AuthorisationTransition::Renew {
                    decision_date: d("2026-02-01"),
                    valid_from: d("2026-02-01"),
                    valid_to: d("2026-12-01"),
                    reference: None,
                },
                None,
            ),
            (
                submitted(),
                AuthorisationTransition::Suspend { date: d("2026-02-01") },
                None,
            ),
            (
                granted.clone(),
                AuthorisationTransition::SubmitRenewal { date: d("2026-05-01") },
                Some(S::RenewalSubmitted),
            ),
            (
                granted.clone(),
                AuthorisationTransition::Suspend { date: d("2026-05-01") },
                Some(S::Suspended),
            ),
            (
                granted.clone(),
                AuthorisationTransition::Grant {
                    decision_date: d("2026-05-01"),
                    valid_from: d("2026-05-01"),
                    valid_to: d("2026-12-01"),
                    reference: None,
                },
                None,
            ),
            (
                granted.clone(),
                AuthorisationTransition::Reinstate { date: d("2026-05-01") },
                None,
            ),
            (
                Authorisation {
                    status: S::Refused,
                    ..submitted()
                },
                AuthorisationTransition::SubmitRenewal { date: d("2026-05-01") },
                None,
            ),
            (
                Authorisation {
                    status: S::Withdrawn,
                    ..submitted()
                },
                AuthorisationTransition::Withdraw { date: d("2026-05-01") },
                None,
            ),
        ];
        for (from, t, expected) in cases {
            let result = transition_authorisation(&from, &t, today);
            match expected {
                Some(status) => assert_eq!(result.map(|a| a.status), Ok(status), "{:?} from {}", t, from.status),
                None => match result {
                    Err(DomainError::IllegalTransition { from: f, to, .. }) => {
                        assert_eq!(f, from.status.code());
                        assert_eq!(to, t.target(&from).code());
                    }
                    other => panic!("{t:?} from {} should be illegal, got {other:?}", from.status),
                },
            }
        }
        // Suspension returns to the state it interrupted.
        let suspended = transition_authorisation(
            &granted,
            &AuthorisationTransition::Suspend { date: d("2026-05-01") },
            today,
        )
        .expect("suspend");
        let back = transition_authorisation(
            &suspended,
            &AuthorisationTransition::Reinstate { date: d("2026-05-10") },
            today,
        )
        .expect("reinstate");
        assert_eq!(back.status, S::Granted);
        // Expiry only after the end of validity.
        let e = transition_authorisation(
            &granted,
            &AuthorisationTransition::Expire { date: d("2026-05-10") },
            today,
        )
        .unwrap_err();
        assert_eq!(fields(e), vec!["expire.date"]);
        let late = day("2027-02-01");
        let expired =
            transition_authorisation(&granted, &AuthorisationTransition::Expire { date: late }, late).expect("expire");
        assert_eq!(expired.status, S::Expired);
    }

    #[test]
    fn the_episode_state_machine_orders_dates_and_states() {
        let today = day("2026-06-01");
        let p = prescriber();
        let c = cohort(Pathway::OffLabel, None);
        let ctx = DeclarationContext {
            rcp_review: None,
            cohort: &c,
            framework: None,
            prescriber: &p,
            today,
        };
        let mut d = declaration(Pathway::OffLabel, "2026-03-01");
        d.off_label = Some(OffLabelJustification {
            axes: vec![crate::model::OffLabelAxis::Age],
            evidence_reference: "PMID:1".into(),
        });
        let (declared, _) = declare_episode(&d, &ctx, None, &id(3)).expect("declare");
        let init = |date: &str| EpisodeTransition::Initiate {
            date: day(date),
            dosage: None,
        };
        let e = transition_episode(&declared, &init("2026-02-01"), None, today).unwrap_err();
        assert_eq!(fields(e), vec!["initiate.first_administration_date"]);
        let e = transition_episode(&declared, &init("2026-07-01"), None, today).unwrap_err();
        assert_eq!(fields(e), vec!["initiate.first_administration_date"]);
        let started = transition_episode(&declared, &init("2026-03-05"), None, today).expect("initiate");
        let ongoing =
            transition_episode(&started, &EpisodeTransition::FollowUpRecorded, None, today).expect("follow-up");
        assert_eq!(ongoing.status, EpisodeStatus::Ongoing);
        let stop = |date: &str| EpisodeTransition::Stop {
            date: day(date),
            reason: StopReason::Inefficacy,
        };
        let e = transition_episode(&ongoing, &stop("2026-03-01"), None, today).unwrap_err();
        assert_eq!(fields(e), vec!["stop.date"], "a stop before the first administration");
        let stopped = transition_episode(&ongoing, &stop("2026-05-01"), None, today).expect("stop");
        match transition_episode(&stopped, &init("2026-05-02"), None, today) {
            Err(DomainError::IllegalTransition { from, to, .. }) => assert_eq!((from, to), ("STOPPED", "INITIATED")),
            other => panic!("restarting a stopped episode should be illegal: {other:?}"),
        }
        assert!(
            transition_episode(
                &declared,
                &EpisodeTransition::Switch {
                    date: day("2026-04-01")
                },
                None,
                today
            )
            .is_err()
        );
    }

    // Property: whatever sequence of transitions is tried, on whatever dates, the episode only
    // moves along the state machine, a refused transition changes nothing, a terminal state is
    // final, and the first administration and end dates never move once set.
    mod state_machine {
        use super::*;
        use proptest::prelude::*;

        fn transition() -> impl Strategy<Value = EpisodeTransition> {
            let date = (0i64..240).prop_map(|d| day("2026-01-01") + chrono::Duration::days(d));
            prop_oneof![
                date.clone()
                    .prop_map(|date| EpisodeTransition::Initiate { date, dosage: None }),
                (date.clone(), 0usize..3).prop_map(|(date, r)| EpisodeTransition::Stop {
                    date,
                    reason: [
                        StopReason::Inefficacy,
                        StopReason::PatientChoice,
                        StopReason::AdverseEvent
                    ][r],
                }),
                date.clone().prop_map(|date| EpisodeTransition::Transfer {
                    date,
                    to: finess("690781810"),
                }),
                date.clone().prop_map(|date| EpisodeTransition::LostToFollowUp { date }),
                date.clone().prop_map(|date| EpisodeTransition::Deceased { date }),
                date.prop_map(|date| EpisodeTransition::Switch { date }),
                Just(EpisodeTransition::FollowUpRecorded),
            ]
        }

        fn terminal(s: EpisodeStatus) -> bool {
            !matches!(
                s,
                EpisodeStatus::Declared | EpisodeStatus::Initiated | EpisodeStatus::Ongoing
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
            #[test]
            fn an_episode_never_reaches_an_illegal_state(steps in proptest::collection::vec(transition(), 1..16)) {
                let today = day("2026-06-01");
                let p = prescriber();
                let c = cohort(Pathway::OffLabel, None);
                let ctx = DeclarationContext { cohort: &c, framework: None, prescriber: &p, rcp_review: None, today };
                let mut d = declaration(Pathway::OffLabel, "2026-03-01");
                d.off_label = Some(OffLabelJustification {
                    axes: vec![crate::model::OffLabelAxis::Age],
                    evidence_reference: "PMID:1".into(),
                });
                let (mut current, _) = declare_episode(&d, &ctx, None, &id(3)).expect("declare");
                for t in &steps {
                    match transition_episode(&current, t, None, today) {
                        Ok(next) => {
                            prop_assert!(!terminal(current.status), "{:?} left a terminal state", t);
                            prop_assert_eq!(next.status, t.target());
                            match t {
                                EpisodeTransition::Initiate { .. } => prop_assert_eq!(current.status, EpisodeStatus::Declared),
                                EpisodeTransition::FollowUpRecorded => prop_assert_ne!(current.status, EpisodeStatus::Declared),
                                _ => {}
                            }
                            if let Some(first) = current.first_administration_date {
                                prop_assert_eq!(next.first_administration_date, Some(first));
                            }
                            if let (Some(end), Some(start)) = (next.end_date, next.first_administration_date) {
                                prop_assert!(end >= start, "ended {} before its start {}", end, start);
                            }
                            for date in [next.first_administration_date, next.end_date].into_iter().flatten() {
                                prop_assert!(date <= today && date >= next.request_date);
                            }
                            current = next;
                        }
                        // Refused: the caller keeps the episode as it was.
                        Err(DomainError::IllegalTransition { from, .. }) => prop_assert_eq!(from, current.status.code()),
                        Err(_) => {}
                    }
                }
            }
        }
    }

    // Property: whatever sequence of steps is tried on a per-patient authorisation, it only
    // moves along the edges of its state machine (written out here apart from the code), a
    // refused step changes nothing, refused, expired and withdrawn are final, every accepted
    // grant or renewal has a reference and a validity within the pathway's cap, renewals are
    // counted, validity never starts earlier, and no step is dated after today.
    mod authorisation_machine {
        use super::*;
        use AuthorisationStatus as S;
        use AuthorisationTransition as T;
        use proptest::prelude::*;

        fn transition() -> impl Strategy<Value = AuthorisationTransition> {
            // Mostly on or before today (2026-12-01), validities mostly short: so that sequences
            // go deep (granted, renewed, expired...), with some out of every bound.
            let date =
                prop_oneof![4 => 0i64..330, 1 => 0i64..420].prop_map(|d| day("2026-01-01") + chrono::Duration::days(d));
            let reference = prop_oneof![1 => Just(None), 3 => Just(Some("ANSM-AAC-2026-1".to_owned()))];
            let validity = (
                date.clone(),
                date.clone(),
                prop_oneof![4 => 0i64..90, 1 => 0i64..480],
                reference,
            );
            prop_oneof![
                date.clone().prop_map(|date| T::RequestInformation { date }),
                date.clone().prop_map(|date| T::Resubmit { date }),
                validity
                    .clone()
                    .prop_map(|(decision_date, valid_from, days, reference)| T::Grant {
                        decision_date,
                        valid_from,
                        valid_to: valid_from + chrono::Duration::days(days),
                        reference,
                    }),
                date.clone().prop_map(|date| T::Refuse { date }),
                date.clone().prop_map(|date| T::SubmitRenewal { date }),
                validity.prop_map(|(decision_date, valid_from, days, reference)| T::Renew {
                    decision_date,
                    valid_from,
                    valid_to: valid_from + chrono::Duration::days(days),
                    reference,
                }),
                date.clone().prop_map(|date| T::Expire { date }),
                date.clone().prop_map(|date| T::Suspend { date }),
                date.clone().prop_map(|date| T::Reinstate { date }),
                date.prop_map(|date| T::Withdraw { date }),
            ]
        }

        /// The states each step may leave from.
        fn may_leave(from: S, t: &T) -> bool {
            match t {
                T::RequestInformation { .. } | T::Refuse { .. } => matches!(from, S::Submitted | S::RenewalSubmitted),
                T::Resubmit { .. } => from == S::InformationRequested,
                T::Grant { .. } => from == S::Submitted,
                T::SubmitRenewal { .. } => matches!(from, S::Granted | S::Renewed),
                T::Renew { .. } => from == S::RenewalSubmitted,
                T::Expire { .. } | T::Suspend { .. } => {
                    matches!(from, S::Granted | S::Renewed | S::RenewalSubmitted | S::RenewalRefused)
                }
                T::Reinstate { .. } => from == S::Suspended,
                T::Withdraw { .. } => !matches!(from, S::Refused | S::Expired | S::Withdrawn),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
            #[test]
            fn an_authorisation_never_reaches_an_illegal_state(steps in proptest::collection::vec(transition(), 1..24)) {
                let today = day("2026-12-01");
                let p = prescriber();
                let c = cohort(Pathway::Aac, None);
                let ctx = DeclarationContext { cohort: &c, framework: None, prescriber: &p, rcp_review: None, today };
                let mut d = declaration(Pathway::Aac, "2026-01-05");
                d.authorisation = Some(AuthorisationRequest { submitted_date: day("2026-01-05"), reference: None });
                let (_, authorisation) = declare_episode(&d, &ctx, Some(id(4)), &id(3)).expect("declare");
                let mut current = authorisation.expect("an AAC declaration files a request");
                prop_assert_eq!(current.status, S::Submitted);
                // Where a suspension or a request for information will return to.
                let mut resume: Option<S> = None;
                for t in &steps {
                    match transition_authorisation(&current, t, today) {
                        Ok(next) => {
                            prop_assert!(may_leave(current.status, t), "{:?} left {:?}", t, current.status);
                            prop_assert_eq!(next.status, t.target(&current));
                            match t {
                                T::Suspend { .. } | T::RequestInformation { .. } => resume = Some(current.status),
                                T::Reinstate { .. } | T::Resubmit { .. } => {
                                    prop_assert_eq!(Some(next.status), resume);
                                    resume = None;
                                }
                                _ => {}
                            }
                            if let T::Grant { valid_from, valid_to, .. } | T::Renew { valid_from, valid_to, .. } = t {
                                prop_assert!(next.reference.is_some());
                                prop_assert!(valid_to >= valid_from);
                                prop_assert!(*valid_to < valid_from.checked_add_months(Months::new(12)).expect("date"));
                                if let (T::Renew { .. }, Some(previous)) = (t, current.valid_from) {
                                    prop_assert!(*valid_from > previous);
                                }
                            }
                            let renewed = u32::from(matches!(t, T::Renew { .. }));
                            prop_assert_eq!(next.renewals, current.renewals + renewed);
                            prop_assert!(next.decision_date >= current.decision_date);
                            prop_assert!(next.decision_date.is_none_or(|d| d <= today && d >= next.submitted_date));
                            prop_assert_eq!(next.submitted_date, current.submitted_date);
                            current = next;
                        }
                        // Refused: the caller keeps the authorisation as it was.
                        Err(DomainError::IllegalTransition { from, .. }) => {
                            prop_assert!(!may_leave(current.status, t), "{:?} refused from {:?}", t, current.status);
                            prop_assert_eq!(from, current.status.code());
                        }
                        Err(_) => prop_assert!(may_leave(current.status, t), "{:?} refused from {:?} for its fields", t, current.status),
                    }
                }
            }
        }
    }
}
