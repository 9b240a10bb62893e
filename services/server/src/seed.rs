//! `observatory seed`: a realistic synthetic registry for demonstrations and benchmarks.
//!
//! Centres in several regions of both filières (MHEMO, FILNEMUS; one site of both), cohorts on
//! every pathway, frameworks granted, refused and suspended, and per patient a journey: the case
//! put to an RCP (national for FILNEMUS, local for some MHEMO cases; an unfavourable opinion
//! leaves the patient untreated), then one treatment after another: declaration, per-patient
//! authorisation with information requests, refusals and yearly renewals, a baseline visit,
//! first administration, visits on the cohort's schedule (some missed) whose disease measures
//! follow the patient's trajectory under treatment, the drug's adverse events at its rates and
//! seriousness, and an end: the same drug under its next pathway (compassionate access, early
//! access, common law), another drug, a transfer to another centre, or a stop for the usual
//! reasons. One-shot gene therapies are given once and followed for years. Every write goes
//! through the same operations and rules as the gRPC API.
//!
//! Content is deterministic for a given `--seed`, `--patients` and `--until`: each patient draws
//! from its own generator seeded from (seed, index), so the concurrency of the load does not
//! change what is generated. Record ids and recorded times are minted at write time, as always.
//! All identifiers are synthetic; decision references of the frameworks created here say so.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use chrono::{Days, Months, NaiveDate};
use observatory_app::{App, Call};
use observatory_domain::corrections::FrameworkTransition;
use observatory_domain::registration::{Registration, Subject};
use observatory_domain::{
    codes::{
        Atc, Filiere, Finess, Icd10, IdMr, MeasureCode, MeddraCode, OrphaCode, RegionCode, Rpps, luhn_check_digit,
    },
    lifecycle::{AuthorisationRequest, AuthorisationTransition as AT, EpisodeDeclaration, EpisodeTransition as ET},
    model::*,
    reference,
};
use observatory_store::{Command, NewCohort, Record, Written};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub patients: u32,
    pub seed: u64,
    /// Last date of the generated history (no date after it).
    pub until: NaiveDate,
    /// Patient journeys written concurrently (their commands share group commits).
    pub concurrency: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    pub centres: u64,
    pub prescribers: u64,
    pub frameworks: u64,
    pub cohorts: u64,
    pub patients: u64,
    pub episodes: u64,
    pub commands: u64,
}

struct CentreSpec {
    finess_prefix: &'static str,
    name: &'static str,
    centre_type: CentreType,
    region: &'static str,
    /// The filière whose patients the seed treats there.
    filiere: &'static str,
    /// Further filières the centre belongs to.
    also: &'static [&'static str],
}

const CENTRES: &[CentreSpec] = &[
    CentreSpec {
        finess_prefix: "75001",
        name: "CRMR hemophilie, site coordonnateur (Paris)",
        centre_type: CentreType::CrmrCoordinating,
        region: "11",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "69001",
        name: "CRMR hemophilie, site constitutif (Lyon)",
        centre_type: CentreType::CrmrConstitutive,
        region: "84",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "59001",
        name: "CCMR hemophilie (Lille)",
        centre_type: CentreType::Ccmr,
        region: "32",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "33001",
        name: "CCMR hemophilie (Bordeaux)",
        centre_type: CentreType::Ccmr,
        region: "75",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "13001",
        name: "CCMR hemophilie (Marseille)",
        centre_type: CentreType::Ccmr,
        region: "93",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "35001",
        name: "CRC hemophilie (Rennes)",
        centre_type: CentreType::Crc,
        region: "53",
        filiere: "MHEMO",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "75002",
        name: "CRMR neuromusculaire, site coordonnateur (Paris)",
        centre_type: CentreType::CrmrCoordinating,
        region: "11",
        filiere: "FILNEMUS",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "13002",
        name: "CRMR neuromusculaire, site constitutif (Marseille)",
        centre_type: CentreType::CrmrConstitutive,
        region: "93",
        filiere: "FILNEMUS",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "31002",
        name: "CHU de Toulouse : CRMR neuromusculaire (site constitutif), CCMR hemophilie",
        centre_type: CentreType::CrmrConstitutive,
        region: "76",
        filiere: "FILNEMUS",
        also: &["MHEMO"],
    },
    CentreSpec {
        finess_prefix: "44002",
        name: "CCMR neuromusculaire (Nantes)",
        centre_type: CentreType::Ccmr,
        region: "52",
        filiere: "FILNEMUS",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "67002",
        name: "CCMR neuromusculaire (Strasbourg)",
        centre_type: CentreType::Ccmr,
        region: "44",
        filiere: "FILNEMUS",
        also: &[],
    },
    CentreSpec {
        finess_prefix: "97402",
        name: "CCMR neuromusculaire (La Reunion)",
        centre_type: CentreType::Ccmr,
        region: "04",
        filiere: "FILNEMUS",
        also: &[],
    },
];

/// A cohort to create: pathway, drug, indications, and which framework binds it.
struct CohortSpec {
    name: &'static str,
    filiere: &'static str,
    pathway: Pathway,
    atc: &'static str,
    orpha: &'static [&'static str],
    framework: FrameworkRef,
    /// Relative share of patients.
    weight: u32,
    dose: (f64, &'static str, &'static str, Route),
}

enum FrameworkRef {
    None,
    /// A framework shipped in `reference/frameworks.csv`.
    Shipped(&'static str),
    /// A synthetic framework created by the seed (index into SYNTHETIC_FRAMEWORKS).
    Synthetic(usize),
}

const COHORTS: &[CohortSpec] = &[
    CohortSpec {
        name: "Emicizumab CPC, acquired haemophilia A",
        filiere: "MHEMO",
        pathway: Pathway::Cpc,
        atc: "B02BX06",
        orpha: &["98878"],
        framework: FrameworkRef::Shipped("0193a000-0000-7000-8000-000000000001"),
        weight: 6,
        dose: (3.0, "mg/kg", "once weekly", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Concizumab early access, haemophilia with inhibitors",
        filiere: "MHEMO",
        pathway: Pathway::AapPre,
        atc: "B02BX07",
        orpha: &["98878", "98879"],
        framework: FrameworkRef::Shipped("0193a000-0000-7000-8000-000000000002"),
        weight: 10,
        dose: (0.2, "mg/kg", "once daily", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Etranacogene dezaparvovec, acces direct",
        filiere: "MHEMO",
        pathway: Pathway::Direct,
        atc: "B02BD16",
        orpha: &["98879"],
        framework: FrameworkRef::Shipped("0193a000-0000-7000-8000-000000000006"),
        weight: 2,
        dose: (2e13, "gc/kg", "single dose", Route::Intravenous),
    },
    CohortSpec {
        name: "Concizumab AAC",
        filiere: "MHEMO",
        pathway: Pathway::Aac,
        atc: "B02BX07",
        orpha: &["98878", "98879"],
        framework: FrameworkRef::None,
        weight: 8,
        dose: (0.2, "mg/kg", "once daily", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Emicizumab off-label, von Willebrand disease",
        filiere: "MHEMO",
        pathway: Pathway::OffLabel,
        atc: "B02BX06",
        orpha: &["903"],
        framework: FrameworkRef::None,
        weight: 4,
        dose: (1.5, "mg/kg", "once weekly", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Emicizumab common law, haemophilia A",
        filiere: "MHEMO",
        pathway: Pathway::CommonLaw,
        atc: "B02BX06",
        orpha: &["98878"],
        framework: FrameworkRef::None,
        weight: 6,
        dose: (1.5, "mg/kg", "once weekly", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Risdiplam ATU de cohorte",
        filiere: "FILNEMUS",
        pathway: Pathway::AtuCohort,
        atc: "M09AX10",
        orpha: &["70"],
        framework: FrameworkRef::Shipped("0193a000-0000-7000-8000-000000000003"),
        weight: 5,
        dose: (5.0, "mg", "once daily", Route::Oral),
    },
    CohortSpec {
        name: "Onasemnogene abeparvovec ATU de cohorte",
        filiere: "FILNEMUS",
        pathway: Pathway::AtuCohort,
        atc: "M09AX09",
        orpha: &["70"],
        framework: FrameworkRef::Shipped("0193a000-0000-7000-8000-000000000005"),
        weight: 2,
        dose: (1.1e14, "vg/kg", "single dose", Route::Intravenous),
    },
    CohortSpec {
        name: "Ataluren ATU nominative, nonsense-mutation DMD",
        filiere: "FILNEMUS",
        pathway: Pathway::AtuNominative,
        atc: "M09AX03",
        orpha: &["98896"],
        framework: FrameworkRef::None,
        weight: 3,
        dose: (40.0, "mg/kg", "daily in three doses", Route::Oral),
    },
    CohortSpec {
        name: "Efgartigimod early access post-AMM (synthetic)",
        filiere: "FILNEMUS",
        pathway: Pathway::AapPost,
        atc: "L04AG12",
        orpha: &["589"],
        framework: FrameworkRef::Synthetic(0),
        weight: 6,
        dose: (10.0, "mg/kg", "weekly cycles", Route::Intravenous),
    },
    CohortSpec {
        name: "Immunoglobulins RTU, CIDP (synthetic)",
        filiere: "FILNEMUS",
        pathway: Pathway::Rtu,
        atc: "J06BA02",
        orpha: &["2932"],
        framework: FrameworkRef::Synthetic(1),
        weight: 6,
        dose: (1.0, "g/kg", "every 3 weeks", Route::Intravenous),
    },
    CohortSpec {
        name: "Rituximab off-label, MuSK myasthenia and CIDP",
        filiere: "FILNEMUS",
        pathway: Pathway::OffLabel,
        atc: "L01FA01",
        orpha: &["589", "2932"],
        framework: FrameworkRef::None,
        weight: 6,
        dose: (375.0, "mg/m2", "weekly x4", Route::Intravenous),
    },
    CohortSpec {
        name: "Efgartigimod AAC",
        filiere: "FILNEMUS",
        pathway: Pathway::Aac,
        atc: "L04AG12",
        orpha: &["589"],
        framework: FrameworkRef::None,
        weight: 5,
        dose: (10.0, "mg/kg", "weekly cycles", Route::Intravenous),
    },
    CohortSpec {
        name: "Concizumab common law",
        filiere: "MHEMO",
        pathway: Pathway::CommonLaw,
        atc: "B02BX07",
        orpha: &["98878", "98879"],
        framework: FrameworkRef::None,
        weight: 2,
        dose: (0.2, "mg/kg", "once daily", Route::Subcutaneous),
    },
    CohortSpec {
        name: "Efgartigimod common law, generalised myasthenia",
        filiere: "FILNEMUS",
        pathway: Pathway::CommonLaw,
        atc: "L04AG12",
        orpha: &["589"],
        framework: FrameworkRef::None,
        weight: 2,
        dose: (10.0, "mg/kg", "weekly cycles", Route::Intravenous),
    },
    CohortSpec {
        name: "Risdiplam common law, SMA",
        filiere: "FILNEMUS",
        pathway: Pathway::CommonLaw,
        atc: "M09AX10",
        orpha: &["70"],
        framework: FrameworkRef::None,
        weight: 5,
        dose: (5.0, "mg", "once daily", Route::Oral),
    },
];

/// (pathway, atc, indication, orpha, valid_from, valid_to)
type SyntheticFramework = (
    Pathway,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const SYNTHETIC_FRAMEWORKS: &[SyntheticFramework] = &[
    (
        Pathway::AapPost,
        "L04AG12",
        "Generalised myasthenia gravis, add-on (synthetic)",
        "589",
        "2023-01-01",
        None,
    ),
    (
        Pathway::Rtu,
        "J06BA02",
        "CIDP maintenance (synthetic)",
        "2932",
        "2021-01-01",
        Some("2026-12-31"),
    ),
];

/// A kind of adverse event a drug's patients meet: MedDRA preferred term and its system organ
/// class, how often (events per patient-year) and how often serious.
struct EventProfile {
    pt: &'static str,
    soc: &'static str,
    per_year: f64,
    serious: f64,
}

const fn ev(pt: &'static str, soc: &'static str, per_year: f64, serious: f64) -> EventProfile {
    EventProfile {
        pt,
        soc,
        per_year,
        serious,
    }
}

// MedDRA codes of the terms below (synthetic demonstration data: the rates are illustrative).
const HEADACHE: (&str, &str) = ("10019211", "10029205");
const PYREXIA: (&str, &str) = ("10037660", "10018065");
const FATIGUE: (&str, &str) = ("10016256", "10018065");
const NAUSEA: (&str, &str) = ("10028813", "10017947");
const DIARRHOEA: (&str, &str) = ("10012735", "10017947");
const VOMITING: (&str, &str) = ("10047700", "10017947");
const ARTHRALGIA: (&str, &str) = ("10003239", "10028395");
const INJECTION_SITE: (&str, &str) = ("10022086", "10018065");
const ALT_INCREASED: (&str, &str) = ("10001551", "10022891");
const HEPATOTOXICITY: (&str, &str) = ("10019851", "10019805");
const THROMBOCYTOPENIA: (&str, &str) = ("10043554", "10005329");
const TMA: (&str, &str) = ("10043645", "10005329");
const PULMONARY_EMBOLISM: (&str, &str) = ("10037377", "10038738");
const DVT: (&str, &str) = ("10051055", "10047065");
const RASH: (&str, &str) = ("10037844", "10040785");
const PNEUMONIA: (&str, &str) = ("10035664", "10021881");
const URTI: (&str, &str) = ("10046306", "10021881");
const UTI: (&str, &str) = ("10046571", "10021881");
const INFUSION_REACTION: (&str, &str) = ("10051792", "10022117");
const ACUTE_KIDNEY_INJURY: (&str, &str) = ("10069339", "10038359");

/// The adverse events of each drug (by ATC), with their rates and seriousness.
fn event_profile(atc: &str) -> Vec<EventProfile> {
    let e = |(pt, soc): (&'static str, &'static str), per_year, serious| ev(pt, soc, per_year, serious);
    match atc {
        // Emicizumab, concizumab: injection site reactions; rare thromboses and TMA.
        "B02BX06" => vec![
            e(INJECTION_SITE, 0.20, 0.0),
            e(HEADACHE, 0.10, 0.0),
            e(ARTHRALGIA, 0.08, 0.0),
            e(TMA, 0.005, 1.0),
        ],
        "B02BX07" => vec![
            e(INJECTION_SITE, 0.25, 0.0),
            e(HEADACHE, 0.08, 0.0),
            e(PULMONARY_EMBOLISM, 0.01, 1.0),
            e(DVT, 0.01, 0.9),
        ],
        // Gene therapies: transaminases up in the first months, some hepatotoxicity.
        "B02BD16" | "M09AX09" => vec![
            e(ALT_INCREASED, 0.35, 0.05),
            e(HEPATOTOXICITY, 0.06, 0.6),
            e(PYREXIA, 0.15, 0.05),
            e(THROMBOCYTOPENIA, 0.05, 0.3),
            e(VOMITING, 0.10, 0.0),
        ],
        "M09AX10" => vec![
            e(PYREXIA, 0.15, 0.02),
            e(DIARRHOEA, 0.12, 0.0),
            e(RASH, 0.08, 0.0),
            e(URTI, 0.20, 0.05),
        ],
        "M09AX03" => vec![e(VOMITING, 0.20, 0.0), e(DIARRHOEA, 0.12, 0.0), e(HEADACHE, 0.10, 0.0)],
        "L04AG12" => vec![e(URTI, 0.25, 0.02), e(UTI, 0.12, 0.05), e(HEADACHE, 0.12, 0.0)],
        "L01FA01" => vec![
            e(INFUSION_REACTION, 0.30, 0.05),
            e(PNEUMONIA, 0.04, 0.7),
            e(FATIGUE, 0.10, 0.0),
        ],
        "J06BA02" => vec![
            e(HEADACHE, 0.40, 0.0),
            e(NAUSEA, 0.10, 0.0),
            e(DVT, 0.01, 0.8),
            e(ACUTE_KIDNEY_INJURY, 0.005, 0.9),
        ],
        _ => vec![e(HEADACHE, 0.10, 0.0), e(FATIGUE, 0.10, 0.0), e(NAUSEA, 0.05, 0.0)],
    }
}

struct Setup {
    cohorts: Vec<CohortPlan>,
    total_weight: u32,
    centres: Vec<(Finess, &'static str, Vec<Rpps>)>,
}

struct CohortPlan {
    id: RecordId,
    spec: &'static CohortSpec,
    /// Request dates are drawn in [from, to].
    from: NaiveDate,
    to: NaiveDate,
    follow_up_months: u32,
    /// Its framework takes a declaration only on a favourable national RCP.
    requires_national_rcp: bool,
}

/// Makes `command` the operation it is, through the application layer, as the local process
/// `seed` (which holds the whole registry): the same rules as every other way in.
async fn apply(app: &App, request: u64, command: Command) -> anyhow::Result<Written> {
    use observatory_app::{reference as r, registry as g};
    let name = command.name();
    let call = Call::local("seed", name, format!("seed-{request}"));
    let records = async {
        Ok::<_, observatory_app::AppError>(match command {
            Command::CreateCentre(c) => vec![Record::Centre(r::create_centre(app, &call, None, c).await?)],
            Command::CreatePrescriber(p) => vec![Record::Prescriber(r::create_prescriber(app, &call, None, p).await?)],
            Command::CreateFramework(f) => vec![Record::Framework(r::create_framework(app, &call, None, f).await?)],
            Command::CreateCohort(c) => vec![Record::Cohort(g::create_cohort(app, &call, None, c).await?)],
            Command::DeclareEpisode(d) => {
                let declared = g::declare_episode(app, &call, None, d).await?;
                let mut records = vec![Record::Episode(declared.episode)];
                records.extend(declared.authorisation.map(Record::Authorisation));
                records.extend(declared.previous.map(Record::Episode));
                records
            }
            Command::TransitionEpisode {
                id,
                expected_version,
                transition,
            } => vec![Record::Episode(
                g::transition_episode(app, &call, id, expected_version, transition).await?,
            )],
            Command::TransitionAuthorisation {
                id,
                expected_version,
                transition,
            } => vec![Record::Authorisation(
                g::transition_authorisation(app, &call, id, expected_version, transition).await?,
            )],
            Command::RecordFollowUp(f) => {
                let visited = g::record_follow_up(app, &call, None, f).await?;
                let mut records = vec![Record::FollowUp(visited.follow_up)];
                records.extend(visited.episode.map(Record::Episode));
                records
            }
            Command::RecordAdverseEvent(ae) => vec![Record::AdverseEvent(
                g::record_adverse_event(app, &call, None, ae).await?,
            )],
            Command::RequestRcpReview {
                patient_id,
                expected_version,
                request,
            } => vec![Record::Patient(
                g::request_rcp_review(app, &call, patient_id, expected_version, request).await?,
            )],
            Command::RecordRcpOpinion {
                patient_id,
                expected_version,
                opinion,
            } => vec![Record::Patient(
                g::record_rcp_opinion(app, &call, patient_id, expected_version, opinion).await?,
            )],
            Command::TransitionFramework {
                id,
                expected_version,
                transition,
            } => vec![Record::Framework(
                r::transition_framework(app, &call, id, expected_version, transition).await?,
            )],
            other => return Err(observatory_app::AppError::Internal(other.name())),
        })
    }
    .await
    .with_context(|| format!("seed command {name} was refused"))?;
    Ok(Written {
        records,
        replayed: false,
    })
}

async fn write(app: &App, command: Command) -> anyhow::Result<Written> {
    apply(app, 0, command).await
}

fn first_id(w: &Written) -> anyhow::Result<RecordId> {
    let meta = w
        .records
        .first()
        .map(Record::meta)
        .context("a write returned no record")?;
    Ok(RecordId::from_minted(meta.id.clone()))
}

fn code<T>(r: Result<T, observatory_domain::CodeError>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("seed data: {what} {e}"))
}

/// Fills an empty registry; refuses a registry that already has patients.
pub async fn seed(app: &App, options: &SeedOptions) -> anyhow::Result<SeedSummary> {
    let store = &app.store;
    if store.scalar_i64("SELECT COUNT(*) FROM patient_versions").await? > 0 {
        bail!(
            "the registry already holds patients: seed an empty database (set OBSERVATORY_DATABASE_URL to a new file)"
        );
    }
    let started = Instant::now();
    let mut summary = SeedSummary::default();
    let setup = Arc::new(set_up(app, options, &mut summary).await?);
    let mut tasks = JoinSet::new();
    let mut next = 0u32;
    let mut done = 0u32;
    let step = (options.patients / 10).max(1);
    while done < options.patients {
        while next < options.patients && tasks.len() < options.concurrency.max(1) {
            let (app, setup, options) = (app.clone(), setup.clone(), options.clone());
            let index = next;
            tasks.spawn(async move { journey(&app, &setup, &options, index).await });
            next += 1;
        }
        match tasks.join_next().await {
            Some(result) => {
                let (episodes, commands) = result.context("a seed task panicked")??;
                summary.patients += 1;
                summary.episodes += episodes;
                summary.commands += commands;
                done += 1;
                if done.is_multiple_of(step) {
                    tracing::info!(
                        patients = done,
                        of = options.patients,
                        elapsed_s = started.elapsed().as_secs_f64(),
                        "seeding"
                    );
                }
            }
            None => break,
        }
    }
    Ok(summary)
}

async fn set_up(app: &App, options: &SeedOptions, summary: &mut SeedSummary) -> anyhow::Result<Setup> {
    let store = &app.store;
    let mut centres = Vec::new();
    for (i, spec) in CENTRES.iter().enumerate() {
        let payload = format!("{}{:03}", spec.finess_prefix, i);
        let finess = code(
            Finess::parse(&format!("{payload}{}", luhn_check_digit(&payload))),
            "FINESS",
        )?;
        let centre = Centre {
            finess: finess.clone(),
            name: spec.name.to_owned(),
            centre_type: spec.centre_type,
            region: code(RegionCode::parse(spec.region), "region")?,
            filieres: {
                let mut filieres = vec![code(Filiere::parse(spec.filiere), "filiere")?];
                for other in spec.also {
                    filieres.push(code(Filiere::parse(other), "filiere")?);
                }
                code(observatory_domain::model::filiere_set(filieres), "filieres")?
            },
        };
        write(app, Command::CreateCentre(centre)).await?;
        summary.centres += 1;
        let mut prescribers = Vec::new();
        for j in 0..3u64 {
            let payload = format!("{:010}", 1_000_000_000 + (i as u64) * 10 + j);
            let rpps = code(Rpps::parse(&format!("{payload}{}", luhn_check_digit(&payload))), "RPPS")?;
            let specialty = if spec.filiere == "MHEMO" {
                "haematology"
            } else {
                "neurology"
            };
            write(
                app,
                Command::CreatePrescriber(Prescriber {
                    rpps: rpps.clone(),
                    specialty: specialty.to_owned(),
                    centre_finess: finess.clone(),
                }),
            )
            .await?;
            summary.prescribers += 1;
            prescribers.push(rpps);
        }
        centres.push((finess, spec.filiere, prescribers));
    }

    let mut synthetic = Vec::new();
    for (pathway, atc, indication, orpha, from, to) in SYNTHETIC_FRAMEWORKS {
        let framework = Framework {
            pathway: *pathway,
            drug_atc: code(Atc::parse(atc), "ATC")?,
            indication: (*indication).to_owned(),
            orpha_codes: vec![code(OrphaCode::parse(orpha), "ORPHA")?],
            authority: "HAS".into(),
            decision_reference: format!("SYNTHETIC-{}-{}", pathway, atc),
            valid_from: code(parse_date(from), "date")?,
            valid_to: to.map(parse_date).transpose().map_err(|e| anyhow::anyhow!("{e}"))?,
            status: FrameworkStatus::Granted,
            protocol_type: ProtocolType::PutRd,
            protocol_version: "1".into(),
            follow_up_months: 6,
            source: "synthetic demonstration data, not a real decision".into(),
            confirmed: false,
            suspended_from: None,
            suspended_on: None,
            requires_national_rcp: false,
            synthesis_months: 6,
            synthesis_from: None,
        };
        let w = write(app, Command::CreateFramework(framework.clone())).await?;
        summary.frameworks += 1;
        synthetic.push((first_id(&w)?, framework));
    }

    // The lifecycles the registry follows besides grants: an early access refused after review,
    // and one suspended for a few days before it was reinstated (the days before the end of the
    // seeded period, when no treatment is requested).
    let refused = Framework {
        pathway: Pathway::AapPre,
        drug_atc: code(Atc::parse("L04AG12"), "ATC")?,
        indication: "CIDP refractory to immunoglobulins (synthetic, refused)".into(),
        orpha_codes: vec![code(OrphaCode::parse("2932"), "ORPHA")?],
        authority: "HAS".into(),
        decision_reference: "SYNTHETIC-AAP_PRE-L04AG12-REFUSED".into(),
        valid_from: options
            .until
            .checked_sub_months(Months::new(10))
            .context("--until is too early")?,
        valid_to: None,
        status: FrameworkStatus::Submitted,
        protocol_type: ProtocolType::PutRd,
        protocol_version: "1".into(),
        follow_up_months: 6,
        source: "synthetic demonstration data, not a real decision".into(),
        confirmed: false,
        suspended_from: None,
        suspended_on: None,
        requires_national_rcp: false,
        synthesis_months: 0,
        synthesis_from: None,
    };
    let w = write(app, Command::CreateFramework(refused.clone())).await?;
    summary.frameworks += 1;
    let refused_id = first_id(&w)?;
    let review = add_days(refused.valid_from, 20);
    for (version, transition) in [
        (1, FrameworkTransition::StartReview { date: review }),
        (
            2,
            FrameworkTransition::Refuse {
                date: add_days(review, 90),
            },
        ),
    ] {
        write(
            app,
            Command::TransitionFramework {
                id: refused_id.clone(),
                expected_version: version,
                transition,
            },
        )
        .await?;
    }
    if let Some((id, f)) = synthetic.first() {
        let suspended = options.until.checked_sub_days(Days::new(20)).unwrap_or(options.until);
        if suspended > f.valid_from {
            for (version, transition) in [
                (1, FrameworkTransition::Suspend { date: suspended }),
                (
                    2,
                    FrameworkTransition::Reinstate {
                        date: add_days(suspended, 10),
                    },
                ),
            ] {
                write(
                    app,
                    Command::TransitionFramework {
                        id: id.clone(),
                        expected_version: version,
                        transition,
                    },
                )
                .await?;
            }
        }
    }

    let earliest = options
        .until
        .checked_sub_months(Months::new(48))
        .context("--until is too early")?;
    let latest = options
        .until
        .checked_sub_days(Days::new(30))
        .context("--until is too early")?;
    let mut cohorts = Vec::new();
    for spec in COHORTS {
        let framework: Option<(RecordId, Framework)> = match spec.framework {
            FrameworkRef::None => None,
            FrameworkRef::Shipped(id) => {
                let v = store.require::<Framework>(id).await?;
                Some((RecordId::from_minted(v.meta.id), v.record))
            }
            FrameworkRef::Synthetic(i) => synthetic.get(i).cloned(),
        };
        let (mut from, mut to) = (earliest, latest);
        if let Some((_, f)) = &framework {
            from = from.max(f.valid_from);
            if let Some(end) = f.valid_to {
                to = to.min(end);
            }
            if from > to {
                // The framework's window lies before the generated period: use the window itself.
                from = f.valid_from;
                to = f.valid_to.unwrap_or(latest).min(latest);
            }
        }
        if from > to {
            continue;
        }
        let orpha_codes = spec
            .orpha
            .iter()
            .map(|c| code(OrphaCode::parse(c), "ORPHA"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let follow_up_months = framework.as_ref().map_or(6, |(_, f)| f.follow_up_months.max(1));
        let w = write(
            app,
            Command::CreateCohort(NewCohort {
                name: spec.name.to_owned(),
                filiere: code(Filiere::parse(spec.filiere), "filiere")?,
                pathway: spec.pathway,
                drug_atc: code(Atc::parse(spec.atc), "ATC")?,
                orpha_codes,
                framework_id: framework.as_ref().map(|(id, _)| id.clone()),
                follow_up_months: Some(follow_up_months),
            }),
        )
        .await?;
        summary.cohorts += 1;
        cohorts.push(CohortPlan {
            id: first_id(&w)?,
            spec,
            from,
            to,
            follow_up_months,
            requires_national_rcp: framework.as_ref().is_some_and(|(_, f)| f.requires_national_rcp),
        });
    }
    let total_weight = cohorts.iter().map(|c| c.spec.weight).sum();
    Ok(Setup {
        cohorts,
        total_weight,
        centres,
    })
}

fn add_days(d: NaiveDate, n: u64) -> NaiveDate {
    d.checked_add_days(Days::new(n)).unwrap_or(d)
}

/// Completed months from `from` to `to`.
fn months_between(from: NaiveDate, to: NaiveDate) -> u16 {
    use chrono::Datelike;
    let m = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32 - i32::from(to.day() < from.day());
    u16::try_from(m.clamp(0, 1440)).unwrap_or(0)
}

/// Plausible common data elements for a patient of `orpha`: an onset before the request (early
/// in haemophilia, SMA and Duchenne), the age at diagnosis, a genotype for some, answers to
/// the contact and reuse questions; for haemophilia, the severity class and inhibitors.
fn common_data_elements(
    rng: &mut StdRng,
    orpha: &str,
    birth: NaiveDate,
    diagnosed: NaiveDate,
    requested: NaiveDate,
) -> (CommonDataElements, Severity) {
    let lived = months_between(birth, requested);
    let onset_range = match orpha {
        "98878" | "98879" => (6, 24),
        "70" => (2, 18),
        "98896" => (24, 60),
        "98895" => (60, 240),
        _ => (12, 600),
    };
    let onset = rng.random_range(onset_range.0..=onset_range.1).min(lived);
    let mut severity = Severity::default();
    if observatory_domain::model::HAEMOPHILIA.contains(&orpha) {
        let class = match rng.random_range(0..100) {
            0..45 => FactorLevelClass::Severe,
            45..60 => FactorLevelClass::Moderate,
            _ => FactorLevelClass::Mild,
        };
        let inhibitor = match (class, rng.random_range(0..100)) {
            (FactorLevelClass::Severe, 0..8) => InhibitorStatus::Current,
            (FactorLevelClass::Severe, 8..18) | (_, 0..4) => InhibitorStatus::Past,
            _ => InhibitorStatus::Never,
        };
        severity = Severity {
            factor_level_class: Some(class),
            inhibitor_status: Some(inhibitor),
        };
    }
    let variant = match orpha {
        "98878" => Some(("F8", "NM_000132.4:c.6046C>T")),
        "98879" => Some(("F9", "NM_000133.4:c.1025C>T")),
        "70" => Some(("SMN1", "NM_000344.4:c.(?_-1)_(*1_?)del")),
        "98896" | "98895" => Some(("DMD", "NM_004006.3:c.6439-?_6614+?del")),
        _ => None,
    };
    let genotype = variant
        .filter(|_| rng.random_bool(0.6))
        .map(|(gene, v)| Genotype {
            gene: gene.to_owned(),
            variants: vec![v.to_owned()],
        })
        .into_iter()
        .collect();
    let answer = |rng: &mut StdRng, given: u32, refused: u32| match rng.random_range(0..100) {
        x if x < given => ConsentStatus::Given,
        x if x < given + refused => ConsentStatus::Refused,
        _ => ConsentStatus::NotAsked,
    };
    let cde = CommonDataElements {
        age_at_onset: Some(AgeAt {
            kind: AgeKind::Months,
            months: Some(onset),
        }),
        age_at_diagnosis: Some(AgeAt {
            kind: AgeKind::Months,
            months: Some(months_between(birth, diagnosed)),
        }),
        undiagnosed: false,
        genotype,
        contact_for_research: Some(answer(rng, 70, 10)),
        reuse_consent: Some(answer(rng, 60, 5)),
    };
    (cde, severity)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn date_between(rng: &mut StdRng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = (to - from).num_days().max(0) as u64;
    add_days(from, rng.random_range(0..=span))
}

/// Tracks the current version of the episode and authorisation of a journey.
struct Journey<'a> {
    app: &'a App,
    commands: u64,
    request: u64,
}

impl Journey<'_> {
    async fn run(&mut self, command: Command) -> anyhow::Result<Written> {
        self.commands += 1;
        self.request += 1;
        apply(self.app, self.request, command).await
    }

    async fn episode(&mut self, id: &RecordId, version: &mut i64, t: ET) -> anyhow::Result<()> {
        let w = self
            .run(Command::TransitionEpisode {
                id: id.clone(),
                expected_version: *version,
                transition: t,
            })
            .await?;
        *version = w.records.first().map_or(*version, |r| r.meta().version);
        Ok(())
    }

    async fn authorisation(&mut self, id: &RecordId, version: &mut i64, t: AT) -> anyhow::Result<Authorisation> {
        let w = self
            .run(Command::TransitionAuthorisation {
                id: id.clone(),
                expected_version: *version,
                transition: t,
            })
            .await?;
        match w.records.into_iter().next() {
            Some(Record::Authorisation(a)) => {
                *version = a.meta.version;
                Ok(a.record)
            }
            _ => bail!("an authorisation transition returned no authorisation"),
        }
    }
}

/// One patient's journey; returns (episodes, commands).
/// The regional pharmacovigilance centre a centre of `region` declares to.
fn crpv(region: &str) -> &'static str {
    match region {
        "11" => "CRPV de Paris",
        "84" => "CRPV de Lyon",
        "32" => "CRPV de Lille",
        "75" => "CRPV de Bordeaux",
        "93" => "CRPV de Marseille",
        "53" => "CRPV de Rennes",
        "76" => "CRPV de Toulouse",
        "52" => "CRPV de Nantes",
        "44" => "CRPV de Strasbourg",
        "04" => "CRPV de La Réunion",
        _ => "CRPV de la région",
    }
}

async fn journey(app: &App, setup: &Setup, options: &SeedOptions, index: u32) -> anyhow::Result<(u64, u64)> {
    let mut rng = StdRng::seed_from_u64(options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(index));
    let mut j = Journey {
        app,
        commands: 0,
        request: u64::from(index) << 20,
    };

    let mut ticket = rng.random_range(0..setup.total_weight.max(1));
    let first = setup
        .cohorts
        .iter()
        .position(|c| {
            if ticket < c.spec.weight {
                true
            } else {
                ticket -= c.spec.weight;
                false
            }
        })
        .context("no cohort to seed")?;
    let spec = setup.cohorts[first].spec;
    let orpha_code: &str = spec.orpha[rng.random_range(0..spec.orpha.len())];
    let orpha = code(OrphaCode::parse(orpha_code), "ORPHA")?;
    let centres: Vec<usize> = (0..setup.centres.len())
        .filter(|i| setup.centres[*i].1 == spec.filiere)
        .collect();
    let centre = *pick(&mut rng, &centres);

    // Registration.
    let request_date = date_between(&mut rng, setup.cohorts[first].from, setup.cohorts[first].to);
    let haemophilia = spec.filiere == "MHEMO" && orpha.as_str() != "903";
    let sex = if haemophilia && rng.random_bool(0.97) {
        Sex::Male
    } else if rng.random_bool(0.5) {
        Sex::Female
    } else {
        Sex::Male
    };
    let max_age = if orpha.as_str() == "70" || orpha.as_str() == "98896" {
        18
    } else {
        80
    };
    let age_years = rng.random_range(1..=max_age);
    let birth = request_date
        .checked_sub_months(Months::new(age_years * 12 + rng.random_range(0..12)))
        .context("birth date")?;
    let region = if rng.random_bool(0.8) {
        CENTRES[centre].region.to_owned()
    } else {
        pick(&mut rng, &reference::regions().map(|(c, _)| c).collect::<Vec<_>>()).to_string()
    };
    let disease = reference::disease(orpha.as_str()).context("seeded ORPHA code is shipped")?;
    let idmr = code(
        IdMr::parse(&format!("{:06}{:014}", options.seed % 1_000_000, index)),
        "IdMR",
    )?;
    let diagnosis_date = date_between(&mut rng, add_days(birth, 30).min(request_date), request_date);
    let (cde, severity) = common_data_elements(&mut rng, orpha.as_str(), birth, diagnosis_date, request_date);
    let registration = Registration {
        subject: Subject::IdMr(idmr),
        sex: Some(sex),
        birth_year_month: Some(YearMonth::of(birth)),
        region: Some(code(RegionCode::parse(&region), "region")?),
        objects_to_reuse: rng.random_bool(0.03),
        diagnoses: vec![Diagnosis {
            orpha_code: orpha.clone(),
            icd10: Icd10::parse(disease.icd10).ok(),
            status: if rng.random_bool(0.9) {
                DiagnosisStatus::Confirmed
            } else {
                DiagnosisStatus::Probable
            },
            diagnosis_date: Some(diagnosis_date),
            severity,
        }],
        cde,
    };
    j.commands += 1;
    j.request += 1;
    let call = Call::local("seed", "RegisterPatient", format!("seed-{}", j.request));
    let registered = observatory_app::registry::register_patient(app, &call, None, registration)
        .await
        .context("seed command RegisterPatient was refused")?;
    let patient_id = RecordId::from_minted(registered.meta.id);
    let patient = Person {
        id: patient_id,
        version: 1,
        orpha,
        birth,
        trajectory: Trajectory::draw(&mut rng, orpha_code),
    };

    // The case put to an RCP first: FILNEMUS's national one (risdiplam's framework requires
    // it), a centre's local one for some MHEMO cases; an unfavourable opinion ends the journey
    // there, untreated.
    let rcp_review = match rcp_step(&mut j, &mut rng, &patient, setup, first, centre, request_date).await? {
        RcpStep::Untreated => return Ok((0, j.commands)),
        RcpStep::Review(review) => review,
    };

    // One treatment after another: the same drug under the next pathway (AAC, early access,
    // common law), another drug, or the same one at another centre.
    let mut stage = Stage {
        cohort: first,
        centre,
        request_date,
        previous: None,
        rcp_review,
    };
    let mut patient = patient;
    let mut episodes = 0;
    for _ in 0..4 {
        episodes += 1;
        match treatment(&mut j, &mut rng, setup, options, index, &mut patient, &stage).await? {
            Next::Done => break,
            Next::Replace {
                episode,
                version,
                date,
                cohort,
            } => {
                stage = Stage {
                    cohort,
                    centre: stage.centre,
                    request_date: date,
                    previous: Some((episode, version)),
                    rcp_review: None,
                };
            }
            Next::Transfer { date, centre } => {
                stage = Stage {
                    cohort: stage.cohort,
                    centre,
                    request_date: date,
                    previous: None,
                    rcp_review: None,
                };
            }
        }
    }
    Ok((episodes, j.commands))
}

/// The patient a journey follows.
struct Person {
    id: RecordId,
    /// The version of the patient record (RCP reviews write new ones).
    version: i64,
    orpha: OrphaCode,
    birth: NaiveDate,
    trajectory: Trajectory,
}

/// One treatment of a journey: its cohort and centre (indices into the setup), its request,
/// the episode it replaces and the RCP review it follows.
struct Stage {
    cohort: usize,
    centre: usize,
    request_date: NaiveDate,
    previous: Option<(RecordId, i64)>,
    rcp_review: Option<RecordId>,
}

/// What follows a treatment.
enum Next {
    /// Nothing more: the treatment goes on, stopped for good, or the patient died or was lost.
    Done,
    /// A new treatment in `cohort` replaces the episode on `date` (a switch of pathway or drug).
    Replace {
        episode: RecordId,
        version: i64,
        date: NaiveDate,
        cohort: usize,
    },
    /// The follow-up went to another centre on `date`: the treatment goes on there.
    Transfer { date: NaiveDate, centre: usize },
}

enum RcpStep {
    Untreated,
    Review(Option<RecordId>),
}

/// Puts the case to an RCP before the first treatment, for FILNEMUS's cases and some MHEMO ones.
async fn rcp_step(
    j: &mut Journey<'_>,
    rng: &mut StdRng,
    patient: &Person,
    setup: &Setup,
    cohort: usize,
    centre: usize,
    request_date: NaiveDate,
) -> anyhow::Result<RcpStep> {
    let spec = setup.cohorts[cohort].spec;
    let national = spec.filiere == "FILNEMUS";
    if !national && !rng.random_bool(0.4) {
        return Ok(RcpStep::Review(None));
    }
    let requested = request_date
        .checked_sub_days(Days::new(rng.random_range(20..=45)))
        .unwrap_or(request_date);
    let w = j
        .run(Command::RequestRcpReview {
            patient_id: patient.id.clone(),
            expected_version: patient.version,
            request: observatory_domain::rcp::RcpRequest {
                level: if national { RcpLevel::National } else { RcpLevel::Local },
                filiere: national
                    .then(|| Filiere::parse(spec.filiere))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                centre_finess: setup.centres[centre].0.clone(),
                drug_atc: code(Atc::parse(spec.atc), "ATC")?,
                indication: Some(patient.orpha.clone()),
                requested_on: requested,
            },
        })
        .await?;
    let (mut version, review) = match w.records.into_iter().next() {
        Some(Record::Patient(p)) => (
            p.meta.version,
            p.record
                .rcp_reviews
                .last()
                .map(|r| r.id.clone())
                .context("the review asked for")?,
        ),
        _ => bail!("an RCP request returned no patient"),
    };
    let roll = rng.random_range(0..100);
    let mut meeting = add_days(requested, rng.random_range(3..=8));
    if roll >= 95 {
        // Deferred to the next meeting, which decides.
        version = rcp_opinion(j, &patient.id, version, &review, meeting, RcpOpinion::Deferred, None).await?;
        meeting = add_days(meeting, 7);
    }
    let (opinion, conditions) = match roll {
        0..7 => (RcpOpinion::Unfavourable, None),
        7..15 => (
            RcpOpinion::FavourableWithConditions,
            Some("reassess at 6 months before continuing".to_owned()),
        ),
        _ => (RcpOpinion::Favourable, None),
    };
    rcp_opinion(
        j,
        &patient.id,
        version,
        &review,
        meeting.min(request_date),
        opinion,
        conditions,
    )
    .await?;
    Ok(if opinion == RcpOpinion::Unfavourable {
        RcpStep::Untreated
    } else {
        RcpStep::Review(Some(review))
    })
}

async fn rcp_opinion(
    j: &mut Journey<'_>,
    patient: &RecordId,
    version: i64,
    review: &RecordId,
    meeting: NaiveDate,
    opinion: RcpOpinion,
    conditions: Option<String>,
) -> anyhow::Result<i64> {
    let w = j
        .run(Command::RecordRcpOpinion {
            patient_id: patient.clone(),
            expected_version: version,
            opinion: observatory_domain::rcp::RcpOpinionRecord {
                review_id: review.clone(),
                meeting_date: meeting,
                opinion,
                conditions,
            },
        })
        .await?;
    Ok(w.records.first().map_or(version + 1, |r| r.meta().version))
}

/// The rank of a pathway on a drug's way to common law: per-patient access first, then a
/// framework, then common law.
fn ladder_rank(p: Pathway) -> u8 {
    match p {
        Pathway::Aac | Pathway::AtuNominative => 0,
        Pathway::CommonLaw => 2,
        _ => 1,
    }
}

/// The cohort that takes over a treatment in `cohort` on `date`: the same drug under the next
/// pathway (`same_drug`), or another drug for the same disease; one whose window holds the date.
fn next_cohort(
    setup: &Setup,
    cohort: usize,
    orpha: &str,
    date: NaiveDate,
    same_drug: bool,
    rng: &mut StdRng,
) -> Option<usize> {
    let current = setup.cohorts[cohort].spec;
    let fits = |c: &CohortPlan| {
        c.spec.filiere == current.filiere && c.spec.orpha.contains(&orpha) && c.from <= date && date <= c.to
    };
    if same_drug {
        setup
            .cohorts
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                fits(c) && c.spec.atc == current.atc && ladder_rank(c.spec.pathway) > ladder_rank(current.pathway)
            })
            .min_by_key(|(_, c)| ladder_rank(c.spec.pathway))
            .map(|(i, _)| i)
    } else {
        let others: Vec<usize> = (0..setup.cohorts.len())
            .filter(|i| fits(&setup.cohorts[*i]) && setup.cohorts[*i].spec.atc != current.atc)
            .collect();
        (!others.is_empty()).then(|| *pick(rng, &others))
    }
}

/// One treatment: declaration, authorisation, first administration (after a baseline visit for
/// most), renewals, visits with the disease's measures, adverse events, and how it ends.
async fn treatment(
    j: &mut Journey<'_>,
    rng: &mut StdRng,
    setup: &Setup,
    options: &SeedOptions,
    index: u32,
    patient: &mut Person,
    stage: &Stage,
) -> anyhow::Result<Next> {
    let until = options.until;
    let plan = &setup.cohorts[stage.cohort];
    let spec = plan.spec;
    let (finess, _, prescribers) = &setup.centres[stage.centre];
    let prescriber = pick(rng, prescribers).clone();
    let request_date = stage.request_date;
    let per_patient = spec.pathway.needs_authorisation();
    let submitted = add_days(request_date, rng.random_range(0..=3)).min(until);
    let (dose, unit, frequency, route) = spec.dose;
    let declaration = EpisodeDeclaration {
        patient_id: patient.id.clone(),
        cohort_id: plan.id.clone(),
        pathway: spec.pathway,
        indication: patient.orpha.clone(),
        prescriber,
        centre_finess: Some(finess.clone()),
        // A treatment reached by a switch under a framework that requires the national RCP's
        // favourable opinion states it.
        rcp: (stage.rcp_review.is_none() && plan.requires_national_rcp).then_some(Rcp {
            date: request_date,
            opinion: RcpOpinion::Favourable,
            level: Some(RcpLevel::National),
        }),
        off_label: (spec.pathway == Pathway::OffLabel).then(|| OffLabelJustification {
            axes: vec![OffLabelAxis::Indication],
            evidence_reference: "synthetic literature reference".into(),
        }),
        dosage: Some(Dosage {
            dose,
            unit: unit.into(),
            frequency: frequency.into(),
            route,
        }),
        request_date,
        authorisation: per_patient.then_some(AuthorisationRequest {
            submitted_date: submitted,
            reference: None,
        }),
        previous_episode: stage.previous.clone(),
        dispense_first: false,
        single_administration: false,
        rcp_review: stage.rcp_review.clone(),
    };
    let w = j.run(Command::DeclareEpisode(declaration)).await?;
    let episode_id = first_id(&w)?;
    let mut episode_version = 1i64;
    let authorisation_id = w.records.iter().find_map(|r| match r {
        Record::Authorisation(a) => Some(RecordId::from_minted(a.meta.id.clone())),
        _ => None,
    });

    // Per-patient authorisation: information requests, refusals, grant.
    let mut auth_version = 1i64;
    let mut access_date = request_date;
    let mut valid_to = None;
    if let Some(auth_id) = &authorisation_id {
        let mut last = submitted;
        if rng.random_bool(0.1) {
            let asked = add_days(last, rng.random_range(2..=10));
            let answered = add_days(asked, rng.random_range(3..=10));
            if answered > until {
                return Ok(Next::Done);
            }
            j.authorisation(auth_id, &mut auth_version, AT::RequestInformation { date: asked })
                .await?;
            j.authorisation(auth_id, &mut auth_version, AT::Resubmit { date: answered })
                .await?;
            last = answered;
        }
        let decision = add_days(last, rng.random_range(3..=30));
        if decision > until {
            return Ok(Next::Done);
        }
        if rng.random_bool(0.08) {
            j.authorisation(auth_id, &mut auth_version, AT::Refuse { date: decision })
                .await?;
            let t = ET::Stop {
                date: decision,
                reason: StopReason::EndOfAuthorisation,
            };
            j.episode(&episode_id, &mut episode_version, t).await?;
            return Ok(Next::Done);
        }
        let end = grant_end(spec.pathway, decision);
        let reference = format!("SYNTH-{}-{index:07}-{}", spec.pathway, episode_version);
        let t = AT::Grant {
            decision_date: decision,
            valid_from: decision,
            valid_to: end,
            reference: Some(reference),
        };
        j.authorisation(auth_id, &mut auth_version, t).await?;
        access_date = decision;
        valid_to = Some(end);
    }

    // First administration, after a baseline visit for most patients of a first treatment.
    let start = add_days(access_date, rng.random_range(2..=21));
    if start > until || rng.random_bool(0.03) {
        return Ok(Next::Done);
    }
    let mut visits = Vec::new();
    if stage.previous.is_none() && rng.random_bool(0.7) {
        let baseline = date_between(rng, request_date, start.pred_opt().unwrap_or(start)).min(start);
        if baseline < start {
            visits.push(baseline);
        }
    }
    for date in visits.drain(..) {
        episode_version = visit(j, rng, patient, &episode_id, episode_version, date, None).await?;
    }
    let t = ET::Initiate {
        date: start,
        dosage: None,
    };
    j.episode(&episode_id, &mut episode_version, t).await?;

    // Time on treatment: a one-shot treatment is followed for years; others last months to
    // years.
    let one_shot = j
        .app
        .catalogue()
        .drug(spec.atc)
        .is_some_and(|d| d.single_administration);
    let mean_months = if one_shot { 60.0 } else { 30.0 };
    let months_on = (-(1.0 - rng.random::<f64>()).ln() * mean_months).ceil() as u64;
    let planned_end = add_days(start, months_on * 30);
    let ends = planned_end <= until;
    let last_day = if ends { planned_end } else { until };

    // Renewals of the per-patient authorisation while treatment goes on.
    if let (Some(auth_id), Some(mut to)) = (&authorisation_id, valid_to) {
        while to < last_day {
            let asked = to.checked_sub_days(Days::new(60)).unwrap_or(to).max(start);
            let decided = to.checked_sub_days(Days::new(20)).unwrap_or(to).max(asked);
            if decided > until {
                break;
            }
            j.authorisation(auth_id, &mut auth_version, AT::SubmitRenewal { date: asked })
                .await?;
            if rng.random_bool(0.05) {
                j.authorisation(auth_id, &mut auth_version, AT::Refuse { date: decided })
                    .await?;
                let t = ET::Stop {
                    date: add_days(to, 1).min(until),
                    reason: StopReason::EndOfAuthorisation,
                };
                j.episode(&episode_id, &mut episode_version, t).await?;
                return Ok(Next::Done);
            }
            let from = add_days(to, 1);
            let next_to = grant_end(spec.pathway, from);
            let t = AT::Renew {
                decision_date: decided,
                valid_from: from,
                valid_to: next_to,
                reference: None,
            };
            j.authorisation(auth_id, &mut auth_version, t).await?;
            to = next_to;
        }
    }

    // Follow-up visits on the cohort's schedule, some missed; the measures follow the
    // patient's trajectory under the treatment.
    let mut day = start;
    loop {
        let jitter = rng.random_range(0..=30);
        day = add_days(
            day.checked_add_months(Months::new(plan.follow_up_months))
                .unwrap_or(until),
            jitter,
        )
        .max(add_days(day, 15));
        if day > last_day {
            break;
        }
        if rng.random_bool(0.1) {
            continue;
        }
        episode_version = visit(
            j,
            rng,
            patient,
            &episode_id,
            episode_version,
            day,
            Some((start, spec.atc)),
        )
        .await?;
    }

    // Adverse events of the drug, at its rates; the case fields from a stream of their own.
    let years = (last_day - start).num_days() as f64 / 365.25;
    let mut case_rng =
        StdRng::seed_from_u64(options.seed.wrapping_mul(0xE2B3_CA5E) ^ u64::from(index) ^ episode_id_hash(&episode_id));
    for profile in event_profile(spec.atc) {
        // Gene therapies' liver events come in the first months.
        let window_end = if one_shot && profile.soc != PYREXIA.1 {
            add_days(start, 180).min(last_day)
        } else {
            last_day
        };
        for _ in 0..poisson(rng, profile.per_year * years.max(0.1)) {
            let onset = date_between(rng, start, window_end);
            let serious = rng.random_bool(profile.serious);
            let declared = serious || rng.random_bool(0.3);
            let declaration_date = add_days(onset, rng.random_range(0..=15)).min(until);
            let outcome = match rng.random_range(0..100) {
                0..75 => AeOutcome::Recovered,
                75..92 => AeOutcome::Recovering,
                92..98 => AeOutcome::RecoveredWithSequelae,
                _ => AeOutcome::NotRecovered,
            };
            let ae = AdverseEvent {
                episode_id: episode_id.clone(),
                onset_date: onset,
                meddra_pt: code(MeddraCode::parse(profile.pt), "MedDRA")?,
                meddra_soc: Some(code(MeddraCode::parse(profile.soc), "MedDRA")?),
                serious,
                outcome,
                causality: *pick(
                    rng,
                    &[
                        Causality::Related,
                        Causality::PossiblyRelated,
                        Causality::PossiblyRelated,
                        Causality::Unlikely,
                        Causality::NotRelated,
                    ],
                ),
                pv_declaration_date: declared.then_some(declaration_date),
                pv_reference: declared.then(|| format!("SYNTH-PV-{index:07}-{}", onset.format("%Y%m%d"))),
                pv_receiver: declared.then(|| crpv(CENTRES[stage.centre].region).to_owned()),
                details: Default::default(),
            };
            let details = case_details(&mut case_rng, &ae, until);
            let ae = AdverseEvent { details, ..ae };
            j.run(Command::RecordAdverseEvent(ae)).await?;
        }
    }

    if !ends {
        return Ok(Next::Done);
    }
    let roll = rng.random::<f64>();
    if one_shot {
        // A one-shot treatment given is not stopped: its long-term follow-up ends, or the
        // patient is lost to follow-up or dies.
        let t = match roll {
            r if r < 0.85 => ET::Stop {
                date: planned_end,
                reason: StopReason::EndOfFollowUp,
            },
            r if r < 0.95 => ET::LostToFollowUp { date: planned_end },
            _ => ET::Deceased { date: planned_end },
        };
        j.episode(&episode_id, &mut episode_version, t).await?;
        return Ok(Next::Done);
    }
    let orpha = patient.orpha.as_str().to_owned();
    if roll < 0.30
        && let Some(next) = next_cohort(setup, stage.cohort, &orpha, planned_end, true, rng)
    {
        // The same drug under its next pathway (compassionate access, early access, common law).
        return Ok(Next::Replace {
            episode: episode_id,
            version: episode_version,
            date: planned_end,
            cohort: next,
        });
    }
    if roll < 0.42
        && let Some(next) = next_cohort(setup, stage.cohort, &orpha, planned_end, false, rng)
    {
        // Another drug for the same disease.
        return Ok(Next::Replace {
            episode: episode_id,
            version: episode_version,
            date: planned_end,
            cohort: next,
        });
    }
    if roll < 0.48 {
        // The follow-up moves to another centre of the filière; the treatment goes on there.
        let others: Vec<usize> = (0..setup.centres.len())
            .filter(|i| *i != stage.centre && setup.centres[*i].1 == spec.filiere)
            .collect();
        if !others.is_empty() && add_days(planned_end, 1) <= until && planned_end <= plan.to {
            let to = *pick(rng, &others);
            let t = ET::Transfer {
                date: planned_end,
                to: setup.centres[to].0.clone(),
            };
            j.episode(&episode_id, &mut episode_version, t).await?;
            return Ok(Next::Transfer {
                date: add_days(planned_end, 1),
                centre: to,
            });
        }
    }
    let t = match roll {
        r if r < 0.60 => ET::Stop {
            date: planned_end,
            reason: StopReason::Inefficacy,
        },
        r if r < 0.72 => ET::Stop {
            date: planned_end,
            reason: StopReason::AdverseEvent,
        },
        r if r < 0.84 => ET::Stop {
            date: planned_end,
            reason: StopReason::PatientChoice,
        },
        r if r < 0.90 => ET::LostToFollowUp { date: planned_end },
        r if r < 0.92 => ET::Deceased { date: planned_end },
        r if r < 0.95 => ET::Stop {
            date: planned_end,
            reason: StopReason::Pregnancy,
        },
        _ => ET::Stop {
            date: planned_end,
            reason: StopReason::Other,
        },
    };
    j.episode(&episode_id, &mut episode_version, t).await?;
    Ok(Next::Done)
}

/// A number from an episode id, to give each treatment's case fields a stream of their own.
fn episode_id_hash(id: &RecordId) -> u64 {
    id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Records a visit on `date` with the patient's measures (before the first administration,
/// `under` is none: the baseline); returns the episode's version after it.
async fn visit(
    j: &mut Journey<'_>,
    rng: &mut StdRng,
    patient: &mut Person,
    episode: &RecordId,
    version: i64,
    date: NaiveDate,
    under: Option<(NaiveDate, &str)>,
) -> anyhow::Result<i64> {
    let measures = patient.trajectory.at(rng, date, under)?;
    let efficacy = match under {
        None => EfficacyAssessment::NotAssessable,
        Some(_) => *pick(
            rng,
            &[
                EfficacyAssessment::Improved,
                EfficacyAssessment::Stable,
                EfficacyAssessment::Stable,
                EfficacyAssessment::Worsened,
            ],
        ),
    };
    let age_years = (date - patient.birth).num_days() as f64 / 365.25;
    let weight = (3.5 + age_years.min(18.0) * 3.5 + rng.random_range(-2.0..2.0)).clamp(3.0, 120.0);
    let follow_up = FollowUp {
        episode_id: episode.clone(),
        visit_date: date,
        efficacy,
        measures,
        weight_kg: Some((weight * 10.0).round() / 10.0),
        adherence: if rng.random_bool(0.85) {
            Adherence::Good
        } else {
            Adherence::Partial
        },
    };
    let w = j.run(Command::RecordFollowUp(follow_up)).await?;
    Ok(w.records
        .iter()
        .find_map(|r| match r {
            Record::Episode(e) => Some(e.meta.version),
            _ => None,
        })
        .unwrap_or(version))
}

/// How a patient's disease measures move: each from its value before treatment, towards what
/// the treatment brings, with the noise of a real assessment.
struct Trajectory {
    /// (measure, value before treatment, change once treated, months to get there, lowest,
    /// highest, noise)
    measures: Vec<(&'static str, f64, f64, f64, f64, f64, f64)>,
}

impl Trajectory {
    fn draw(rng: &mut StdRng, orpha: &str) -> Trajectory {
        let measures = match orpha {
            // Annualised bleed rate: prophylaxis brings it down within months.
            "98878" | "98879" | "903" | "849" => {
                let before = f64::from(rng.random_range(6..=24u32));
                vec![(
                    "ABR",
                    before,
                    -before * rng.random_range(0.7..0.95),
                    4.0,
                    0.0,
                    60.0,
                    1.0,
                )]
            }
            // SMA: motor scores rise slowly under treatment, or hold.
            "70" => vec![
                (
                    "HFMSE",
                    f64::from(rng.random_range(8..=45u32)),
                    rng.random_range(0.0..6.0),
                    24.0,
                    0.0,
                    66.0,
                    2.0,
                ),
                (
                    "RULM",
                    f64::from(rng.random_range(8..=30u32)),
                    rng.random_range(0.0..4.0),
                    24.0,
                    0.0,
                    37.0,
                    1.5,
                ),
            ],
            // Duchenne and Becker: the walk declines, more slowly under treatment.
            "98896" | "98895" => vec![(
                "SIX_MINUTE_WALK_M",
                f64::from(rng.random_range(300..=480u32)),
                -rng.random_range(20.0..90.0),
                36.0,
                0.0,
                800.0,
                20.0,
            )],
            // Myasthenia: MG-ADL falls within weeks of an effective treatment.
            "589" => {
                let before = f64::from(rng.random_range(6..=14u32));
                vec![(
                    "MG_ADL",
                    before,
                    -rng.random_range(2.0..(before - 1.0)),
                    3.0,
                    0.0,
                    24.0,
                    1.0,
                )]
            }
            // CIDP: disability improves a point or two.
            "2932" => vec![(
                "INCAT",
                f64::from(rng.random_range(2..=7u32)),
                -rng.random_range(0.0..2.5),
                6.0,
                0.0,
                10.0,
                0.5,
            )],
            _ => Vec::new(),
        };
        Trajectory { measures }
    }

    /// The measures on `date`: untreated (`under` none) the values before treatment, treated
    /// since `under`'s date the change reached so far.
    fn at(&self, rng: &mut StdRng, date: NaiveDate, under: Option<(NaiveDate, &str)>) -> anyhow::Result<Vec<Measure>> {
        let mut out = Vec::with_capacity(self.measures.len());
        for &(code, before, change, months, low, high, noise) in &self.measures {
            let treated_months = under.map_or(0.0, |(since, _)| ((date - since).num_days().max(0) as f64) / 30.4);
            let reached = (treated_months / months).min(1.0);
            let value = (before + change * reached + rng.random_range(-noise..=noise)).clamp(low, high);
            let value = if code == "ABR" || code == "SIX_MINUTE_WALK_M" {
                value.round()
            } else {
                (value * 2.0).round() / 2.0
            };
            out.push(Measure {
                code: MeasureCode::parse(code).map_err(|e| anyhow::anyhow!("{e}"))?,
                value,
            });
        }
        Ok(out)
    }
}

/// End of a grant or renewal starting on `from`: one year less a day for AAC, two years for ATU.
fn grant_end(pathway: Pathway, from: NaiveDate) -> NaiveDate {
    let months = pathway.max_authorisation_months().unwrap_or(24);
    from.checked_add_months(Months::new(months))
        .and_then(|d| d.checked_sub_days(Days::new(1)))
        .unwrap_or(from)
}

/// Knuth's method; the means here are small.
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit || k > 100 {
            return k;
        }
        k += 1;
    }
}

/// The E2B case fields of a seeded event: the seriousness criteria of a serious one (mostly a
/// hospitalisation), the end of a reaction that recovered, the action taken, the reporter.
fn case_details(rng: &mut StdRng, ae: &AdverseEvent, until: NaiveDate) -> observatory_domain::model::CaseDetails {
    use observatory_domain::model::{CaseDetails, DrugAction, ReporterQualification, SeriousnessCriterion as C};
    let seriousness = if ae.serious {
        let first = match rng.random_range(0..100) {
            0..70 => C::Hospitalisation,
            70..90 => C::OtherMedicallyImportant,
            90..97 => C::LifeThreatening,
            _ => C::Disability,
        };
        let mut criteria = vec![first];
        if first == C::LifeThreatening {
            criteria.push(C::Hospitalisation);
        }
        criteria
    } else {
        Vec::new()
    };
    let end_date = (ae.outcome == AeOutcome::Recovered)
        .then(|| add_days(ae.onset_date, rng.random_range(1..=30)).min(until))
        .filter(|end| *end >= ae.onset_date);
    let action_taken = *pick(
        rng,
        &[
            DrugAction::DoseNotChanged,
            DrugAction::DoseNotChanged,
            DrugAction::DoseNotChanged,
            DrugAction::DoseReduced,
            DrugAction::Withdrawn,
        ],
    );
    CaseDetails {
        seriousness,
        end_date,
        action_taken: Some(action_taken),
        reporter: Some(if rng.random_bool(0.8) {
            ReporterQualification::Physician
        } else {
            ReporterQualification::Pharmacist
        }),
        ..CaseDetails::default()
    }
}
