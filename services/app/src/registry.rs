//! Registry operations: cohorts, patients, episodes, authorisations, follow-ups, adverse
//! events and history. Each admits its call (role and scope), applies the rules of its input,
//! writes or reads through the store, and records patient-level reads in the audit trail.

use observatory_domain::{
    corrections::{AdverseEventUpdate, CohortTransition, PatientUpdate},
    lifecycle::{AuthorisationTransition, EpisodeDeclaration, EpisodeTransition},
    model::{AdverseEvent, Authorisation, Cohort, Episode, FollowUp, Patient, RecordId, RecordKind},
    registration::{self, Registration},
    treatment_corrections::{AuthorisationUpdate, EpisodeUpdate, FollowUpUpdate},
};
use observatory_store::{
    CohortFilter, Command, EpisodeFilter, NewCohort, Page, PageRequest, PatientFilter, Record, Stored, Versioned,
    Written, audit::AuditTarget,
};

use crate::scope::{Target, admit};
use crate::{App, AppError, AppResult, Call, written};

macro_rules! record_of {
    ($variant:ident) => {
        |r| match r {
            Record::$variant(x) => Some(x),
            _ => None,
        }
    };
}

/// Executes `command` for an admitted call, with `key`.
async fn write(
    app: &App,
    call: &Call,
    target: Target<'_>,
    key: Option<String>,
    command: Command,
) -> AppResult<Written> {
    let admitted = admit(&app.store, call, target).await?;
    crate::reference::check_codes(&app.catalogue(), &command)?;
    Ok(app.store.execute(command, admitted.context(key)).await?)
}

pub async fn create_cohort(
    app: &App,
    call: &Call,
    key: Option<String>,
    cohort: NewCohort,
) -> AppResult<Versioned<Cohort>> {
    registration::check_follow_up_months(cohort.follow_up_months)?;
    let filiere = cohort.filiere.clone();
    let w = write(
        app,
        call,
        Target::NewCohort(&filiere),
        key,
        Command::CreateCohort(cohort),
    )
    .await?;
    written(w, record_of!(Cohort))
}

/// One record by id: a cohort's catalogue entry, or a patient-level record, whose read is
/// recorded in the audit trail as the call's operation.
pub async fn get<T: Stored>(app: &App, call: &Call, id: &RecordId) -> AppResult<Versioned<T>> {
    let target = match T::KIND {
        RecordKind::Cohort => Target::CohortEntry(id),
        kind => Target::Record(kind, id),
    };
    let admitted = admit(&app.store, call, target).await?;
    let x = app.store.require::<T>(id.as_str()).await?;
    if T::KIND.is_patient_level() {
        admitted
            .audit_read(&app.store, call.operation, vec![AuditTarget::read(T::KIND, &x)])
            .await?;
    }
    Ok(x)
}

pub async fn list_cohorts(
    app: &App,
    call: &Call,
    filter: &CohortFilter,
    page: &PageRequest,
) -> AppResult<Page<Versioned<Cohort>>> {
    let admitted = admit(&app.store, call, Target::List).await?;
    Ok(app.store.list_cohorts(filter, admitted.within(), page).await?)
}

pub async fn transition_cohort(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    transition: CohortTransition,
) -> AppResult<Versioned<Cohort>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Cohort, &target_id),
        None,
        Command::TransitionCohort {
            id,
            expected_version,
            transition,
        },
    )
    .await?;
    written(w, record_of!(Cohort))
}

/// Registers a patient in the caller's scope (see ARCHITECTURE.md, "Registration": a patient
/// known only elsewhere gets a record of this scope, answered as a fresh registration).
pub async fn register_patient(
    app: &App,
    call: &Call,
    key: Option<String>,
    registration: Registration,
) -> AppResult<Versioned<Patient>> {
    let patient = registration::patient(registration, &app.pseudonym_key)?;
    let w = write(app, call, Target::Unbound, key, Command::RegisterPatient(patient)).await?;
    written(w, record_of!(Patient))
}

/// Patients within the caller's scope; every one listed is audited as a patient-level read.
pub async fn list_patients(
    app: &App,
    call: &Call,
    filter: &PatientFilter,
    page: &PageRequest,
) -> AppResult<Page<Versioned<Patient>>> {
    let admitted = admit(&app.store, call, Target::List).await?;
    let p = app.store.list_patients(filter, admitted.within(), page).await?;
    let mut targets: Vec<AuditTarget> = filter
        .cohort_id
        .iter()
        .map(|id| AuditTarget::object(RecordKind::Cohort.code(), id.as_str()))
        .collect();
    targets.extend(p.items.iter().map(|x| AuditTarget::read(RecordKind::Patient, x)));
    admitted.audit_read(&app.store, call.operation, targets).await?;
    Ok(p)
}

pub async fn update_patient(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    update: PatientUpdate,
    reason: String,
) -> AppResult<Versioned<Patient>> {
    let target_id = id.clone();
    let command = Command::UpdatePatient {
        id,
        expected_version,
        update,
        reason,
    };
    write_patient(app, call, &target_id, command).await
}

/// Merges two records of one person: `merged` into `kept` (both within the caller's scope),
/// with a reason. Answers the kept record's new version.
pub async fn merge_patients(
    app: &App,
    call: &Call,
    kept: (RecordId, i64),
    merged: (RecordId, i64),
    reason: String,
) -> AppResult<Versioned<Patient>> {
    admit(&app.store, call, Target::Record(RecordKind::Patient, &merged.0)).await?;
    let (kept_id, kept_version) = kept;
    let id = kept_id.clone();
    let command = Command::MergePatients {
        kept: kept_id,
        kept_version,
        merged: merged.0,
        merged_version: merged.1,
        reason,
    };
    write_patient(app, call, &id, command).await
}

/// A command that changes the patient record `id` (within the caller's scope), answered with
/// its new version.
async fn write_patient(app: &App, call: &Call, id: &RecordId, command: Command) -> AppResult<Versioned<Patient>> {
    let w = write(app, call, Target::Record(RecordKind::Patient, id), None, command).await?;
    written(w, record_of!(Patient))
}

/// Puts a patient's case to an RCP: a new version of the patient with the review asked for
/// (the last of its `rcp_reviews`).
pub async fn request_rcp_review(
    app: &App,
    call: &Call,
    patient_id: RecordId,
    expected_version: i64,
    request: observatory_domain::rcp::RcpRequest,
) -> AppResult<Versioned<Patient>> {
    let id = patient_id.clone();
    let command = Command::RequestRcpReview {
        patient_id,
        expected_version,
        request,
    };
    write_patient(app, call, &id, command).await
}

/// Records an RCP's opinion on one of the patient's reviews (a new version of the patient).
pub async fn record_rcp_opinion(
    app: &App,
    call: &Call,
    patient_id: RecordId,
    expected_version: i64,
    opinion: observatory_domain::rcp::RcpOpinionRecord,
) -> AppResult<Versioned<Patient>> {
    let id = patient_id.clone();
    let command = Command::RecordRcpOpinion {
        patient_id,
        expected_version,
        opinion,
    };
    write_patient(app, call, &id, command).await
}

/// What a declaration wrote: the episode, its authorisation request (per-patient pathways) and
/// the episode it replaces, closed (a switch or a change of pathway).
#[derive(Debug, Clone)]
pub struct Declared {
    pub episode: Versioned<Episode>,
    pub authorisation: Option<Versioned<Authorisation>>,
    pub previous: Option<Versioned<Episode>>,
}

pub async fn declare_episode(
    app: &App,
    call: &Call,
    key: Option<String>,
    declaration: EpisodeDeclaration,
) -> AppResult<Declared> {
    let target = Target::NewEpisode {
        patient: &declaration.patient_id,
        centre: declaration.centre_finess.as_ref(),
        prescriber: &declaration.prescriber,
        cohort: &declaration.cohort_id,
        previous: declaration.previous_episode.as_ref().map(|(id, _)| id),
    };
    let admitted = admit(&app.store, call, target).await?;
    let previous_id = declaration.previous_episode.as_ref().map(|(id, _)| id.to_string());
    // Whether the cohort's drug is given once (a gene therapy) is the reference release's word,
    // kept on the episode as it was when declared.
    let mut declaration = declaration;
    if let Some(cohort) = app.store.get::<Cohort>(declaration.cohort_id.as_str()).await? {
        declaration.single_administration = app
            .catalogue()
            .drug(cohort.record.drug_atc.as_str())
            .is_some_and(|d| d.single_administration);
    }
    let command = Command::DeclareEpisode(declaration);
    crate::reference::check_codes(&app.catalogue(), &command)?;
    let w = app.store.execute(command, admitted.context(key)).await?;
    let (mut episode, mut authorisation, mut previous) = (None, None, None);
    for record in w.records {
        match record {
            Record::Episode(x) if Some(&x.meta.id) == previous_id.as_ref() => previous = Some(x),
            Record::Episode(x) => episode = Some(x),
            Record::Authorisation(x) => authorisation = Some(x),
            _ => {}
        }
    }
    Ok(Declared {
        episode: episode.ok_or(AppError::Internal("a declaration wrote no episode"))?,
        authorisation,
        previous,
    })
}

/// Episodes within the caller's scope; the read is audited, naming the patient filtered on.
pub async fn list_episodes(
    app: &App,
    call: &Call,
    filter: &EpisodeFilter,
    page: &PageRequest,
) -> AppResult<Page<Versioned<Episode>>> {
    let admitted = admit(&app.store, call, Target::List).await?;
    let p = app.store.list_episodes(filter, admitted.within(), page).await?;
    let mut targets: Vec<AuditTarget> = filter
        .patient_id
        .iter()
        .map(|id| AuditTarget::object(RecordKind::Patient.code(), id.as_str()))
        .collect();
    targets.extend(p.items.iter().map(|x| AuditTarget::read(RecordKind::Episode, x)));
    admitted.audit_read(&app.store, call.operation, targets).await?;
    Ok(p)
}

pub async fn transition_episode(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    transition: EpisodeTransition,
) -> AppResult<Versioned<Episode>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Episode, &target_id),
        None,
        Command::TransitionEpisode {
            id,
            expected_version,
            transition,
        },
    )
    .await?;
    written(w, record_of!(Episode))
}

pub async fn transition_authorisation(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    transition: AuthorisationTransition,
) -> AppResult<Versioned<Authorisation>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Authorisation, &target_id),
        None,
        Command::TransitionAuthorisation {
            id,
            expected_version,
            transition,
        },
    )
    .await?;
    written(w, record_of!(Authorisation))
}

/// What recording a visit wrote: the visit, and the episode's new version when the first visit
/// moved it on (INITIATED becomes ONGOING).
#[derive(Debug, Clone)]
pub struct Visited {
    pub follow_up: Versioned<FollowUp>,
    pub episode: Option<Versioned<Episode>>,
}

pub async fn record_follow_up(app: &App, call: &Call, key: Option<String>, visit: FollowUp) -> AppResult<Visited> {
    registration::check_weight(visit.weight_kg)?;
    let episode = visit.episode_id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Episode, &episode),
        key,
        Command::RecordFollowUp(visit),
    )
    .await?;
    let episode = w.records.iter().find_map(|r| match r {
        Record::Episode(e) => Some(e.clone()),
        _ => None,
    });
    Ok(Visited {
        follow_up: written(w, record_of!(FollowUp))?,
        episode,
    })
}

pub async fn record_adverse_event(
    app: &App,
    call: &Call,
    key: Option<String>,
    event: AdverseEvent,
) -> AppResult<Versioned<AdverseEvent>> {
    registration::check_pv_declaration(event.pv_declaration_date.is_some(), event.pv_reference.is_some(), true)?;
    observatory_domain::lifecycle::check_new_adverse_event(&event)?;
    let episode = event.episode_id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Episode, &episode),
        key,
        Command::RecordAdverseEvent(event),
    )
    .await?;
    written(w, record_of!(AdverseEvent))
}

pub async fn update_adverse_event(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    update: AdverseEventUpdate,
    reason: String,
) -> AppResult<Versioned<AdverseEvent>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::AdverseEvent, &target_id),
        None,
        Command::UpdateAdverseEvent {
            id,
            expected_version,
            update,
            reason,
        },
    )
    .await?;
    written(w, record_of!(AdverseEvent))
}

/// Corrects an episode (see [`observatory_domain::treatment_corrections`]); the answer is the
/// corrected episode (the one it replaced, whose end moved with it, is in history).
pub async fn update_episode(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    update: EpisodeUpdate,
    reason: String,
) -> AppResult<Versioned<Episode>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Episode, &target_id),
        None,
        Command::UpdateEpisode {
            id,
            expected_version,
            update,
            reason,
        },
    )
    .await?;
    let corrected = target_id.as_str();
    written(w, |r| match r {
        Record::Episode(x) if x.meta.id == corrected => Some(x),
        _ => None,
    })
}

/// Corrects an authorisation's reference and dates; the episode's copy of the decision date
/// follows in the same commit.
pub async fn update_authorisation(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    update: AuthorisationUpdate,
    reason: String,
) -> AppResult<Versioned<Authorisation>> {
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::Authorisation, &target_id),
        None,
        Command::UpdateAuthorisation {
            id,
            expected_version,
            update,
            reason,
        },
    )
    .await?;
    written(w, record_of!(Authorisation))
}

/// Corrects a visit; the answer carries the episode's new version when its state follows
/// (a visit moved across the first administration).
pub async fn update_follow_up(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    update: FollowUpUpdate,
    reason: String,
) -> AppResult<Visited> {
    if let Some(w) = update.weight_kg {
        registration::check_weight(w)?;
    }
    let target_id = id.clone();
    let w = write(
        app,
        call,
        Target::Record(RecordKind::FollowUp, &target_id),
        None,
        Command::UpdateFollowUp {
            id,
            expected_version,
            update,
            reason,
        },
    )
    .await?;
    let episode = w.records.iter().find_map(|r| match r {
        Record::Episode(e) => Some(e.clone()),
        _ => None,
    });
    Ok(Visited {
        follow_up: written(w, record_of!(FollowUp))?,
        episode,
    })
}

/// The follow-ups or adverse events of an episode, the read audited.
pub async fn list_by_episode<T: Stored>(
    app: &App,
    call: &Call,
    episode: &RecordId,
    page: &PageRequest,
) -> AppResult<Page<Versioned<T>>> {
    let store = &app.store;
    let admitted = admit(store, call, Target::Record(RecordKind::Episode, episode)).await?;
    store.require::<Episode>(episode.as_str()).await?;
    let p = store.list_by_episode::<T>(episode, page).await?;
    let mut targets = vec![AuditTarget::object(RecordKind::Episode.code(), episode.as_str())];
    targets.extend(p.items.iter().map(|x| AuditTarget::read(T::KIND, x)));
    admitted.audit_read(store, call.operation, targets).await?;
    Ok(p)
}

/// Every version of a record, oldest first: reference records (by FINESS, RPPS or id) for
/// every role that reads them, cohorts within the caller's filières, patient-level records
/// within its scope, the read audited.
pub async fn history(app: &App, call: &Call, kind: RecordKind, id: &str) -> AppResult<Vec<Record>> {
    let store = &app.store;
    if kind.is_patient_level() && call.operation == "GetReferenceHistory" {
        return Err(AppError::Denied(format!(
            "{} records have their history read as GetHistory, within the caller's scope",
            kind.code()
        )));
    }
    let admitted = match kind {
        RecordKind::Centre | RecordKind::Prescriber | RecordKind::Framework => {
            admit(store, call, Target::Unbound).await?
        }
        RecordKind::Cohort => admit(store, call, Target::CohortEntry(&RecordId::from_minted(id.to_owned()))).await?,
        _ => admit(store, call, Target::Record(kind, &RecordId::from_minted(id.to_owned()))).await?,
    };
    let versions = store.history(kind, id).await?;
    if kind.is_patient_level() {
        let targets = versions.iter().map(Record::audit_target).collect();
        admitted.audit_read(store, call.operation, targets).await?;
    }
    Ok(versions)
}

/// Most items of each list of a worklist.
pub const WORKLIST_LIMIT: u32 = 500;

/// An authorisation in force that ends within the worklist's horizon.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub authorisation: Versioned<Authorisation>,
    pub episode: Versioned<Episode>,
    pub days_left: i64,
}

/// A framework in force that breaks its validity cap or must be renewed soon.
#[derive(Debug, Clone)]
pub struct FrameworkAlert {
    pub framework: Versioned<observatory_domain::model::Framework>,
    pub warning: observatory_domain::worklist::FrameworkWarning,
    /// The end its cap allows, or the renewal deadline.
    pub date: chrono::NaiveDate,
    /// Days from the worklist's day to `date` (negative: past).
    pub days_left: i64,
}

/// A treatment dispensed before its request whose authorisation is not granted yet (pending,
/// or refused: the treatment must stop).
#[derive(Debug, Clone)]
pub struct DispensedFirst {
    pub episode: Versioned<Episode>,
    pub authorisation: Versioned<Authorisation>,
}

/// A treatment whose next follow-up visit is late.
#[derive(Debug, Clone)]
pub struct Overdue {
    pub episode: Versioned<Episode>,
    pub due: chrono::NaiveDate,
    pub last_visit: Option<chrono::NaiveDate>,
    pub days_late: i64,
}

/// What needs doing in a caller's scope on a day.
#[derive(Debug, Clone)]
pub struct Worklist {
    pub as_of: chrono::NaiveDate,
    pub horizon: u32,
    /// Soonest expiry first.
    pub expiring: Vec<Expiring>,
    /// Latest first.
    pub overdue: Vec<Overdue>,
    /// Oldest request first.
    pub never_initiated: Vec<Versioned<Episode>>,
    /// Treatments dispensed before their request whose authorisation is not granted, oldest
    /// first administration first.
    pub dispensed_first: Vec<DispensedFirst>,
    /// Frameworks in force breaking their validity cap or due for renewal, soonest date first:
    /// reference data, the same for every caller.
    pub frameworks: Vec<FrameworkAlert>,
    /// Serious adverse events not declared to pharmacovigilance, oldest onset first.
    pub undeclared: Vec<Undeclared>,
    /// A list was cut at [`WORKLIST_LIMIT`].
    pub truncated: bool,
}

/// A serious adverse event with no declaration to pharmacovigilance yet, and its treatment.
#[derive(Debug, Clone)]
pub struct Undeclared {
    pub event: Versioned<AdverseEvent>,
    pub episode: Versioned<Episode>,
    /// Days since the onset.
    pub days: i64,
}

/// The worklist of the caller's scope on `today`, looking `horizon` days ahead (30, 60 or 90;
/// 0 for 30): every record listed is audited as a patient-level read.
pub async fn worklist(app: &App, call: &Call, horizon: u32, today: chrono::NaiveDate) -> AppResult<Worklist> {
    use observatory_domain::{model::EpisodeStatus, worklist as w};
    let horizon = w::horizon(horizon)
        .ok_or_else(|| AppError::invalid("within_days", "OUT_OF_RANGE", "must be 30, 60 or 90 (0 for 30)"))?;
    let store = &app.store;
    let admitted = admit(store, call, Target::List).await?;
    let within = admitted.within();
    let page = PageRequest {
        size: WORKLIST_LIMIT,
        token: None,
    };
    let mut truncated = false;
    let until = today + chrono::Days::new(u64::from(horizon));
    let authorisations = store
        .expiring_authorisations(within, today, until, WORKLIST_LIMIT)
        .await?;
    truncated |= authorisations.next_page_token.is_some();
    let mut expiring = Vec::new();
    for a in authorisations.items {
        if !w::in_force(a.record.status) {
            continue;
        }
        let Some(days_left) = w::days_left(a.record.valid_to, today, horizon) else {
            continue;
        };
        let episode = store.require::<Episode>(a.record.episode_id.as_str()).await?;
        expiring.push(Expiring {
            authorisation: a,
            episode,
            days_left,
        });
    }
    expiring.sort_by(|a, b| {
        a.days_left
            .cmp(&b.days_left)
            .then(a.authorisation.meta.id.cmp(&b.authorisation.meta.id))
    });

    let of_status = |status| EpisodeFilter {
        status: Some(status),
        ..EpisodeFilter::default()
    };
    let declared = store
        .list_episodes(&of_status(EpisodeStatus::Declared), within, &page)
        .await?;
    truncated |= declared.next_page_token.is_some();
    let mut never_initiated = declared.items;
    never_initiated.sort_by_key(|a| a.record.request_date);

    let mut followed = Vec::new();
    for status in [EpisodeStatus::Initiated, EpisodeStatus::Ongoing] {
        let p = store.list_episodes(&of_status(status), within, &page).await?;
        truncated |= p.next_page_token.is_some();
        followed.extend(p.items);
    }
    let ids: Vec<String> = followed.iter().map(|e| e.meta.id.clone()).collect();
    let last_visits = store.last_visit_dates(&ids).await?;
    let mut schedules = std::collections::HashMap::new();
    let mut overdue = Vec::new();
    let mut dispensed_first = Vec::new();
    for episode in &followed {
        if let (true, Some(a)) = (episode.record.dispense_first, &episode.record.authorisation_id) {
            let authorisation = store.require::<Authorisation>(a.as_str()).await?;
            if !matches!(
                authorisation.record.status,
                observatory_domain::model::AuthorisationStatus::Granted
                    | observatory_domain::model::AuthorisationStatus::Renewed
                    | observatory_domain::model::AuthorisationStatus::RenewalSubmitted
                    | observatory_domain::model::AuthorisationStatus::RenewalRefused
            ) {
                dispensed_first.push(DispensedFirst {
                    episode: episode.clone(),
                    authorisation,
                });
            }
        }
    }
    dispensed_first.sort_by_key(|x| x.episode.record.first_administration_date);

    // Serious events are few; the declared ones are skipped page by page, so that the list
    // holds every undeclared one up to the limit.
    let mut undeclared = Vec::new();
    let mut token = None;
    loop {
        let p = store
            .serious_adverse_events(
                within,
                &PageRequest {
                    size: WORKLIST_LIMIT,
                    token: token.take(),
                },
            )
            .await?;
        for event in p.items {
            if event.record.pv_declaration_date.is_some() {
                continue;
            }
            if undeclared.len() == WORKLIST_LIMIT as usize {
                truncated = true;
                break;
            }
            let episode = store.require::<Episode>(event.record.episode_id.as_str()).await?;
            let days = (today - event.record.onset_date).num_days();
            undeclared.push(Undeclared { event, episode, days });
        }
        match p.next_page_token {
            Some(next) if !truncated => token = Some(next),
            _ => break,
        }
    }
    undeclared.sort_by(|a, b| {
        a.event
            .record
            .onset_date
            .cmp(&b.event.record.onset_date)
            .then(a.event.meta.id.cmp(&b.event.meta.id))
    });
    for episode in followed {
        let cohort = episode.record.cohort_id.clone();
        let months = match schedules.get(&cohort) {
            Some(m) => *m,
            None => {
                let c = store.require::<Cohort>(cohort.as_str()).await?;
                schedules.insert(cohort, c.record.follow_up_months);
                c.record.follow_up_months
            }
        };
        let last_visit = last_visits.get(&episode.meta.id).copied();
        let Some(due) = w::next_visit_due(episode.record.first_administration_date, last_visit, months) else {
            continue;
        };
        if let Some(days_late) = w::days_late(due, today) {
            overdue.push(Overdue {
                episode,
                due,
                last_visit,
                days_late,
            });
        }
    }
    overdue.sort_by(|a, b| {
        b.days_late
            .cmp(&a.days_late)
            .then(a.episode.meta.id.cmp(&b.episode.meta.id))
    });

    let mut targets = Vec::new();
    for x in &expiring {
        targets.push(AuditTarget::read(RecordKind::Authorisation, &x.authorisation));
        targets.push(AuditTarget::read(RecordKind::Episode, &x.episode));
    }
    targets.extend(
        overdue
            .iter()
            .map(|x| AuditTarget::read(RecordKind::Episode, &x.episode)),
    );
    targets.extend(
        never_initiated
            .iter()
            .map(|x| AuditTarget::read(RecordKind::Episode, x)),
    );
    for x in &dispensed_first {
        targets.push(AuditTarget::read(RecordKind::Episode, &x.episode));
        targets.push(AuditTarget::read(RecordKind::Authorisation, &x.authorisation));
    }
    for x in &undeclared {
        targets.push(AuditTarget::read(RecordKind::AdverseEvent, &x.event));
        targets.push(AuditTarget::read(RecordKind::Episode, &x.episode));
    }
    admitted.audit_read(store, call.operation, targets).await?;
    let mut frameworks = Vec::new();
    for f in store
        .list_frameworks(&observatory_store::FrameworkFilter::default())
        .await?
    {
        for (warning, date) in w::framework_warnings(&f.record, today, horizon) {
            frameworks.push(FrameworkAlert {
                framework: f.clone(),
                warning,
                date,
                days_left: (date - today).num_days(),
            });
        }
    }
    frameworks.sort_by(|a, b| a.date.cmp(&b.date).then(a.framework.meta.id.cmp(&b.framework.meta.id)));
    Ok(Worklist {
        as_of: today,
        horizon,
        expiring,
        overdue,
        never_initiated,
        dispensed_first,
        frameworks,
        undeclared,
        truncated,
    })
}
