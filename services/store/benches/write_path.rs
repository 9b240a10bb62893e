//! Write-path benchmark: concurrent follow-up recordings through the store (validation, episode
//! lookup, record + version + idempotency rows, group commit) against a baseline of bare
//! single-row inserts on the same database, both with full durability (SQLite WAL with
//! `synchronous=FULL`; PostgreSQL with its defaults, `synchronous_commit=on`).
//!
//! cargo bench -p observatory-store --bench write_path
//! (PostgreSQL too when OBSERVATORY_BENCH_POSTGRES_URL names a server where it may create
//! databases; OBSERVATORY_BENCH_OPS and OBSERVATORY_BENCH_CLIENTS change the load.)

use chrono::NaiveDate;
use observatory_domain::{
    codes::{Atc, Filiere, Finess, OrphaCode, RegionCode, Rpps, luhn_check_digit},
    lifecycle::{EpisodeDeclaration, EpisodeTransition},
    model::*,
};
use observatory_store::{Command, NewCohort, Record, Store, StoreOptions, WriteContext, testing};

const RUNS: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ctx(key: Option<String>) -> WriteContext {
    WriteContext {
        actor: "bench".into(),
        request_id: "bench".into(),
        trace_id: String::new(),
        idempotency_key: key,
        scope: None,
    }
}

fn day(s: &str) -> NaiveDate {
    parse_date(s).expect("date")
}

/// Creates what a follow-up needs and returns the episode id.
async fn episode(store: &Store) -> RecordId {
    let finess = Finess::parse("750100125").expect("finess");
    let payload = "1000000001";
    let rpps = Rpps::parse(&format!("{payload}{}", luhn_check_digit(payload))).expect("rpps");
    let run = |c: Command| async move { store.execute(c, ctx(None)).await.expect("setup command") };
    run(Command::CreateCentre(Centre {
        finess: finess.clone(),
        name: "bench centre".into(),
        centre_type: CentreType::Ccmr,
        region: RegionCode::parse("11").expect("region"),
        filieres: vec![Filiere::parse("MHEMO").expect("filiere")],
    }))
    .await;
    run(Command::CreatePrescriber(Prescriber {
        rpps: rpps.clone(),
        specialty: "haematology".into(),
        centre_finess: finess,
    }))
    .await;
    let cohort = run(Command::CreateCohort(NewCohort {
        name: "bench".into(),
        filiere: Filiere::parse("MHEMO").expect("filiere"),
        pathway: Pathway::CommonLaw,
        drug_atc: Atc::parse("B02BX06").expect("atc"),
        orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
        framework_id: None,
        follow_up_months: Some(3),
    }))
    .await;
    let patient = run(Command::RegisterPatient(Patient {
        pseudonym: Pseudonym {
            kind: PseudonymKind::IdMr,
            value: "12345678901234567890".into(),
        },
        sex: Sex::Male,
        birth_year_month: YearMonth::parse("2010-01").expect("ym"),
        region: None,
        vital_status: VitalStatus::Alive,
        objects_to_reuse: false,
        diagnoses: vec![],
        cde: Default::default(),
        rcp_reviews: Vec::new(),
        merged_into: None,
        merged_from: Vec::new(),
    }))
    .await;
    let id = |w: &observatory_store::Written| RecordId::from_minted(w.records[0].meta().id.clone());
    let declared = run(Command::DeclareEpisode(EpisodeDeclaration {
        patient_id: id(&patient),
        cohort_id: id(&cohort),
        pathway: Pathway::CommonLaw,
        indication: OrphaCode::parse("98878").expect("orpha"),
        prescriber: rpps,
        centre_finess: None,
        rcp: None,
        off_label: None,
        dosage: None,
        request_date: day("2025-01-01"),
        authorisation: None,
        previous_episode: None,
        dispense_first: false,
        single_administration: false,
        rcp_review: None,
    }))
    .await;
    let episode = id(&declared);
    run(Command::TransitionEpisode {
        id: episode.clone(),
        expected_version: 1,
        transition: EpisodeTransition::Initiate {
            date: day("2025-01-02"),
            dosage: None,
        },
    })
    .await;
    episode
}

/// `ops` follow-ups from `clients` concurrent callers; returns operations per second.
async fn store_run(store: &Store, episode: &RecordId, run: usize, ops: usize, clients: usize) -> f64 {
    let (store, episode) = (store.clone(), episode.clone());
    testing::per_second(ops, clients, move |i| {
        let (store, episode) = (store.clone(), episode.clone());
        async move {
            let f = FollowUp {
                episode_id: episode,
                visit_date: day("2025-02-01") + chrono::Days::new((i % 500) as u64),
                efficacy: EfficacyAssessment::Stable,
                measures: vec![Measure {
                    code: MeasureCode::parse("ABR").expect("code"),
                    value: 1.0,
                }],
                weight_kg: Some(40.0),
                adherence: Adherence::Good,
            };
            let w = store
                .execute(Command::RecordFollowUp(f), ctx(Some(format!("r{run}-{i}"))))
                .await;
            assert!(
                matches!(w.as_ref().map(|w| &w.records[0]), Ok(Record::FollowUp(_))),
                "{w:?}"
            );
        }
    })
    .await
}

use observatory_domain::codes::MeasureCode;

async fn bench(name: &str, url: String, ops: usize, clients: usize) {
    // As `serve` runs it: the audit events keyed.
    let mut options = StoreOptions::new(&url);
    options.audit_key = Some(observatory_store::audit::AuditKey::new(vec![7; 32]).expect("key"));
    let store = Store::connect(&options).await.expect("connect");
    store.migrate().await.expect("migrate");
    let episode = episode(&store).await;
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Alternate to spread any drift of the machine over both.
        base.push(testing::bare_inserts(&url, run, ops, clients).await);
        ours.push(store_run(&store, &episode, run, ops, clients).await);
    }
    let (b, o) = (testing::median(base.clone()), testing::median(ours.clone()));
    println!(
        "{name:<10} clients={clients:<4} ops/run={ops:<6} baseline bare insert: {b:>9.0} ops/s   store RecordFollowUp: {o:>9.0} ops/s   ratio {:.2}",
        o / b
    );
    println!(
        "{:<10} runs baseline {:?}",
        "",
        base.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    println!(
        "{:<10} runs store    {:?}",
        "",
        ours.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    store.close().await;
}

fn main() {
    let ops = env_usize("OBSERVATORY_BENCH_OPS", 2000);
    let clients = env_usize("OBSERVATORY_BENCH_CLIENTS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, url) in testing::bench_databases(dir.path()).await {
            bench(name, url, ops, clients).await;
        }
    });
}
