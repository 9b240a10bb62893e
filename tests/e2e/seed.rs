//! The synthetic dataset behind demos and benchmarks.

use observatory_server::seed::{SeedOptions, seed};
use observatory_store::{Store, StoreOptions};

use crate::helpers::{Backend, fresh_database, text_rows};
use crate::on_both_backends;

on_both_backends!(seeding_is_deterministic_and_covers_every_pathway);

/// What a seed wrote, without ids or recorded times (minted at write time).
const EPISODES: &str = "SELECT pathway || '|' || status || '|' || CAST(request_date AS TEXT) || '|' \
    || COALESCE(CAST(first_administration_date AS TEXT), '-') || '|' || COALESCE(CAST(end_date AS TEXT), '-') \
    || '|' || COALESCE(stop_reason, '-') || '|' || indication_orpha_code || '|' || centre_finess \
    FROM episode_versions WHERE superseded_at IS NULL ORDER BY 1";
const AUTHORISATIONS: &str = "SELECT status || '|' || COALESCE(CAST(valid_to AS TEXT), '-') \
    FROM authorisation_versions WHERE superseded_at IS NULL ORDER BY 1";
const EVENTS: &str = "SELECT CAST(onset_date AS TEXT) || '|' || meddra_pt_code FROM adverse_event_versions ORDER BY 1";
const VISITS: &str = "SELECT CAST(visit_date AS TEXT) FROM follow_up_versions ORDER BY 1";

async fn seeded(backend: Backend, options: &SeedOptions) -> (Vec<Vec<String>>, tempfile::TempDir) {
    let (url, dir) = fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    let summary = seed(&crate::helpers::app_of(&store).await, options)
        .await
        .expect("seed");
    assert_eq!(summary.patients, u64::from(options.patients));
    let again = seed(&crate::helpers::app_of(&store).await, options).await;
    assert!(again.is_err(), "seeding a registry that holds patients is refused");
    store.close().await;
    let mut tables = Vec::new();
    for sql in [EPISODES, AUTHORISATIONS, EVENTS, VISITS] {
        tables.push(text_rows(&url, sql).await);
    }
    (tables, dir)
}

async fn seeding_is_deterministic_and_covers_every_pathway(backend: Backend) {
    let options = SeedOptions {
        patients: 400,
        seed: 7,
        until: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
        concurrency: 64,
    };
    let (first, _a) = seeded(backend, &options).await;
    let (second, _b) = seeded(
        backend,
        &SeedOptions {
            concurrency: 5,
            ..options.clone()
        },
    )
    .await;
    assert_eq!(
        first, second,
        "the same seed gives the same content, whatever the concurrency"
    );
    let (other, _c) = seeded(backend, &SeedOptions { seed: 8, ..options }).await;
    assert_ne!(first[0], other[0], "another seed gives another dataset");

    let episodes = &first[0];
    for pathway in [
        "AAC",
        "AAP_PRE",
        "AAP_POST",
        "CPC",
        "OFF_LABEL",
        "DIRECT",
        "ATU_NOMINATIVE",
        "ATU_COHORT",
        "RTU",
        "COMMON_LAW",
    ] {
        assert!(
            episodes.iter().any(|e| e.starts_with(&format!("{pathway}|"))),
            "no {pathway} episode"
        );
    }
    for status in ["|DECLARED|", "|ONGOING|", "|STOPPED|", "|SWITCHED|"] {
        assert!(episodes.iter().any(|e| e.contains(status)), "no episode {status}");
    }
    let authorisations = &first[1];
    for status in ["GRANTED|", "RENEWED|", "REFUSED|"] {
        assert!(
            authorisations.iter().any(|a| a.starts_with(status)),
            "no authorisation {status}"
        );
    }
    assert!(!first[2].is_empty(), "adverse events");
    assert!(first[3].len() > 400, "follow-up visits");
}
