//! Reference operations: centres, prescribers, the shipped drugs and diseases, frameworks.
//! Readable by every role; written by the admin (the role table says so).

use observatory_domain::{
    codes::{Filiere, Finess, Rpps},
    corrections::{CentreUpdate, FrameworkTransition, PrescriberUpdate},
    model::{Centre, Framework, Prescriber, RecordId},
    reference::{self, DiseaseRef, DrugRef},
    registration,
};
use observatory_store::{CentreFilter, Command, FrameworkFilter, Page, PageRequest, Record, Versioned, Written};

use crate::scope::{Target, admit};
use crate::{App, AppResult, Call, written};

async fn write(app: &App, call: &Call, key: Option<String>, command: Command) -> AppResult<Written> {
    let admitted = admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.execute(command, admitted.context(key)).await?)
}

pub async fn create_centre(
    app: &App,
    call: &Call,
    key: Option<String>,
    centre: Centre,
) -> AppResult<Versioned<Centre>> {
    let w = write(app, call, key, Command::CreateCentre(centre)).await?;
    written(w, |r| match r {
        Record::Centre(x) => Some(x),
        _ => None,
    })
}

pub async fn get_centre(app: &App, call: &Call, finess: &Finess) -> AppResult<Versioned<Centre>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.require::<Centre>(finess.as_str()).await?)
}

pub async fn list_centres(
    app: &App,
    call: &Call,
    filter: &CentreFilter,
    page: &PageRequest,
) -> AppResult<Page<Versioned<Centre>>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.list_centres(filter, page).await?)
}

/// Corrects a centre, with `reason` kept in history.
pub async fn update_centre(
    app: &App,
    call: &Call,
    finess: Finess,
    expected_version: i64,
    update: CentreUpdate,
    reason: String,
) -> AppResult<Versioned<Centre>> {
    let command = Command::UpdateCentre {
        finess,
        expected_version,
        update,
        reason,
    };
    let w = write(app, call, None, command).await?;
    written(w, |r| match r {
        Record::Centre(x) => Some(x),
        _ => None,
    })
}

/// Corrects a prescriber or moves them to another declared centre, with `reason` kept in
/// history.
pub async fn update_prescriber(
    app: &App,
    call: &Call,
    rpps: Rpps,
    expected_version: i64,
    update: PrescriberUpdate,
    reason: String,
) -> AppResult<Versioned<Prescriber>> {
    let command = Command::UpdatePrescriber {
        rpps,
        expected_version,
        update,
        reason,
    };
    let w = write(app, call, None, command).await?;
    written(w, |r| match r {
        Record::Prescriber(x) => Some(x),
        _ => None,
    })
}

pub async fn create_prescriber(
    app: &App,
    call: &Call,
    key: Option<String>,
    prescriber: Prescriber,
) -> AppResult<Versioned<Prescriber>> {
    let w = write(app, call, key, Command::CreatePrescriber(prescriber)).await?;
    written(w, |r| match r {
        Record::Prescriber(x) => Some(x),
        _ => None,
    })
}

pub async fn get_prescriber(app: &App, call: &Call, rpps: &Rpps) -> AppResult<Versioned<Prescriber>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.require::<Prescriber>(rpps.as_str()).await?)
}

/// Prescribers, by RPPS: all, or those practising at `centre`.
pub async fn list_prescribers(
    app: &App,
    call: &Call,
    centre: Option<&Finess>,
    page: &PageRequest,
) -> AppResult<Page<Versioned<Prescriber>>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.list_prescribers(centre, page).await?)
}

/// The shipped drugs whose ATC code starts with `atc_prefix` (any case), and the list's source.
pub async fn list_drugs(app: &App, call: &Call, atc_prefix: &str) -> AppResult<(Vec<&'static DrugRef>, &'static str)> {
    admit(&app.store, call, Target::Unbound).await?;
    let prefix = atc_prefix.trim().to_ascii_uppercase();
    let drugs = reference::DRUGS.iter().filter(|d| d.atc.starts_with(&prefix)).collect();
    Ok((drugs, reference::source_of(reference::DRUGS_CSV)))
}

/// The shipped diseases, of one filière or all, and the list's source.
pub async fn list_diseases(
    app: &App,
    call: &Call,
    filiere: Option<&Filiere>,
) -> AppResult<(Vec<&'static DiseaseRef>, &'static str)> {
    admit(&app.store, call, Target::Unbound).await?;
    let diseases = reference::DISEASES
        .iter()
        .filter(|d| filiere.is_none_or(|f| f.as_str() == d.filiere))
        .collect();
    Ok((diseases, reference::source_of(reference::DISEASES_CSV)))
}

pub async fn create_framework(
    app: &App,
    call: &Call,
    key: Option<String>,
    framework: Framework,
) -> AppResult<Versioned<Framework>> {
    registration::check_framework(&framework)?;
    let w = write(app, call, key, Command::CreateFramework(framework)).await?;
    written(w, |r| match r {
        Record::Framework(x) => Some(x),
        _ => None,
    })
}

pub async fn get_framework(app: &App, call: &Call, id: &RecordId) -> AppResult<Versioned<Framework>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.require::<Framework>(id.as_str()).await?)
}

pub async fn transition_framework(
    app: &App,
    call: &Call,
    id: RecordId,
    expected_version: i64,
    transition: FrameworkTransition,
) -> AppResult<Versioned<Framework>> {
    let w = write(
        app,
        call,
        None,
        Command::TransitionFramework {
            id,
            expected_version,
            transition,
        },
    )
    .await?;
    written(w, |r| match r {
        Record::Framework(x) => Some(x),
        _ => None,
    })
}

pub async fn list_frameworks(app: &App, call: &Call, filter: &FrameworkFilter) -> AppResult<Vec<Versioned<Framework>>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.list_frameworks(filter).await?)
}
