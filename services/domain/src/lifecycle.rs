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
    Framework, OffLabelJustification, Pathway, Prescriber, Rcp, RecordId, StopReason,
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
    v.into_result()?;

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
        rcp: d.rcp.clone(),
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
    };
    Ok((episode, authorisation))
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
                match authorisation {
                    Some(a) if a.covers(*date) => {}
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
            next.status = S::Refused;
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
                S::Suspended | S::Granted | S::Renewed | S::RenewalSubmitted | S::Submitted | S::InformationRequested
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

/// Checks a follow-up visit against its episode and applies the episode's follow-up
/// transition (INITIATED becomes ONGOING).
pub fn record_follow_up(episode: &Episode, visit: &FollowUp, today: NaiveDate) -> Result<Episode, DomainError> {
    let mut v = Violations::new();
    if visit.visit_date > today {
        v.push("visit_date", "IN_FUTURE", "must not be in the future");
    }
    match episode.first_administration_date {
        Some(first) if visit.visit_date < first => {
            v.push(
                "visit_date",
                "BEFORE_START",
                format!("must not be before the first administration ({first})"),
            );
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
    transition_episode(episode, &EpisodeTransition::FollowUpRecorded, None, today)
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
    v.into_result()
}
