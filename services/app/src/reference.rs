//! Reference operations: centres, prescribers, the catalogue of drugs and diseases and its
//! releases, frameworks. Readable by every role; written by the admin (the role table says so).

use observatory_domain::{
    DomainError, Violations,
    catalogue::{Catalogue, Disease, Drug, EntryKind, Release, ReleaseContent},
    codes::{Filiere, Finess, Rpps},
    corrections::{CentreUpdate, FrameworkTransition, PrescriberUpdate},
    model::{Centre, Framework, Prescriber, RecordId},
    registration,
};
use observatory_store::{CentreFilter, Command, FrameworkFilter, Page, PageRequest, Record, Versioned, Written};

use crate::scope::{Target, admit};
use crate::{App, AppResult, Call, written};

async fn write(app: &App, call: &Call, key: Option<String>, command: Command) -> AppResult<Written> {
    let admitted = admit(&app.store, call, Target::Unbound).await?;
    check_codes(&app.catalogue(), &command)?;
    Ok(app.store.execute(command, admitted.context(key)).await?)
}

/// The codes of new input that the catalogue in force must list (and not as retired), with
/// the field paths of the request that carried them. Stored records are never checked: a code
/// retired since they were written stays readable.
pub(crate) fn check_codes(catalogue: &Catalogue, command: &Command) -> Result<(), DomainError> {
    let mut v = Violations::new();
    match command {
        Command::CreateFramework(f) => {
            catalogue.check_drug(&mut v, "drug_atc", &f.drug_atc);
            for (i, code) in f.orpha_codes.iter().enumerate() {
                catalogue.check_disease(&mut v, &format!("orpha_codes[{i}]"), code);
            }
        }
        Command::CreateCohort(c) => {
            catalogue.check_drug(&mut v, "drug_atc", &c.drug_atc);
            for (i, code) in c.orpha_codes.iter().enumerate() {
                catalogue.check_disease(&mut v, &format!("orpha_codes[{i}]"), code);
            }
        }
        Command::RegisterPatient(p) => {
            for (i, d) in p.diagnoses.iter().enumerate() {
                catalogue.check_disease(&mut v, &format!("diagnoses[{i}].orpha_code"), &d.orpha_code);
            }
        }
        Command::UpdatePatient { update, .. } => {
            for (i, d) in update.diagnoses.iter().flatten().enumerate() {
                catalogue.check_disease(&mut v, &format!("diagnoses[{i}].orpha_code"), &d.orpha_code);
            }
        }
        Command::DeclareEpisode(d) => catalogue.check_disease(&mut v, "indication_orpha_code", &d.indication),
        Command::UpdateEpisode { update, .. } => {
            if let Some(code) = &update.indication {
                catalogue.check_disease(&mut v, "indication_orpha_code", code);
            }
        }
        Command::RecordAdverseEvent(ae) => {
            catalogue.check_meddra(&mut v, "meddra_pt_code", EntryKind::MeddraPt, ae.meddra_pt.as_str());
            if let Some(soc) = &ae.meddra_soc {
                catalogue.check_meddra(&mut v, "meddra_soc_code", EntryKind::MeddraSoc, soc.as_str());
            }
            if let Some(llt) = &ae.details.meddra_llt {
                check_llt(catalogue, &mut v, llt.as_str(), Some(ae.meddra_pt.as_str()));
            }
        }
        Command::UpdateAdverseEvent { update, .. } => {
            if let Some(llt) = update.details.as_ref().and_then(|d| d.meddra_llt.as_ref()) {
                check_llt(catalogue, &mut v, llt.as_str(), None);
            }
        }
        Command::RequestRcpReview { request, .. } => {
            catalogue.check_drug(&mut v, "drug_atc", &request.drug_atc);
            if let Some(code) = &request.indication {
                catalogue.check_disease(&mut v, "indication_orpha_code", code);
            }
        }
        _ => {}
    }
    v.into_result()
}

/// An LLT of the MedDRA release in force (when one is), under the event's PT when it is known.
fn check_llt(catalogue: &Catalogue, v: &mut Violations, llt: &str, pt: Option<&str>) {
    const FIELD: &str = "case_details.meddra_llt_code";
    catalogue.check_meddra(v, FIELD, EntryKind::MeddraLlt, llt);
    let parent = catalogue
        .meddra(EntryKind::MeddraLlt, llt)
        .and_then(|t| t.parent.as_deref());
    if let (Some(parent), Some(pt)) = (parent, pt)
        && parent != pt
    {
        v.push(
            FIELD,
            "OTHER_PT",
            "is a lowest level term of another preferred term than meddra_pt_code",
        );
    }
}

/// What an import recorded.
#[derive(Debug, Clone)]
pub struct Imported {
    pub release: Release,
    /// False when the same files were imported before: nothing was written.
    pub new: bool,
}

/// Records a reference release parsed from official files: its entries completed by the
/// catalogue in force (curated fields carried over, dropped codes carried as retired), then
/// recorded with its audit event, and the catalogue rebuilt.
pub async fn import_release(app: &App, call: &Call, content: ReleaseContent) -> AppResult<Imported> {
    admit(&app.store, call, Target::Unbound).await?;
    let content = app.catalogue().successor(content);
    let actor = match &call.actor {
        crate::Actor::Token(p) => p.token_id.clone(),
        crate::Actor::Local(name) => (*name).to_owned(),
    };
    let (release, new) = app.store.record_release(&content, &actor, &call.request_id).await?;
    app.refresh_catalogue().await?;
    Ok(Imported { release, new })
}

/// Every reference release, oldest first.
pub async fn list_releases(app: &App, call: &Call) -> AppResult<Vec<Release>> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.reference_releases().await?)
}

/// A page of the catalogue, and where its entries come from.
#[derive(Debug, Clone)]
pub struct CataloguePage<T> {
    pub items: Vec<(String, T)>,
    pub next_page_token: Option<String>,
    pub source: String,
}

/// One page of `entries` (in code order) after the token (the last code of the previous page).
fn catalogue_page<'a, T: Clone + 'a>(
    entries: impl Iterator<Item = (&'a str, &'a T)>,
    page: &PageRequest,
    source: String,
) -> CataloguePage<T> {
    let size = page.size.max(1) as usize;
    let mut items: Vec<(String, T)> = entries
        .filter(|(code, _)| page.token.as_deref().is_none_or(|after| *code > after))
        .take(size + 1)
        .map(|(c, e)| (c.to_owned(), e.clone()))
        .collect();
    let next_page_token = (items.len() > size).then(|| {
        items.truncate(size);
        items.last().map(|(c, _)| c.clone()).unwrap_or_default()
    });
    CataloguePage {
        items,
        next_page_token,
        source,
    }
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

/// The drugs in force whose ATC code starts with `atc_prefix` (any case), retired ones too when
/// asked, a page at a time.
pub async fn list_drugs(
    app: &App,
    call: &Call,
    atc_prefix: &str,
    include_retired: bool,
    page: &PageRequest,
) -> AppResult<CataloguePage<Drug>> {
    admit(&app.store, call, Target::Unbound).await?;
    let prefix = atc_prefix.trim().to_ascii_uppercase();
    let catalogue = app.catalogue();
    let drugs = catalogue
        .drugs()
        .filter(|(code, d)| code.starts_with(&prefix) && (include_retired || !d.retired));
    let source = catalogue.source_label(EntryKind::Drug);
    Ok(catalogue_page(drugs, page, source))
}

/// The diseases in force, of one filière or all, retired ones too when asked, a page at a
/// time.
pub async fn list_diseases(
    app: &App,
    call: &Call,
    filiere: Option<&Filiere>,
    include_retired: bool,
    page: &PageRequest,
) -> AppResult<CataloguePage<Disease>> {
    admit(&app.store, call, Target::Unbound).await?;
    let catalogue = app.catalogue();
    let diseases = catalogue.diseases().filter(|(_, d)| {
        (include_retired || !d.retired) && filiere.is_none_or(|f| d.filiere.as_deref() == Some(f.as_str()))
    });
    let source = catalogue.source_label(EntryKind::Disease);
    Ok(catalogue_page(diseases, page, source))
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
