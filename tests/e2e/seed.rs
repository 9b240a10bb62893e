//! The synthetic dataset behind demos and benchmarks.

use observatory_domain::model::{Episode, FollowUp, Patient, RcpOpinion};
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

async fn seeded(backend: Backend, options: &SeedOptions) -> (Vec<Vec<String>>, tempfile::TempDir, String) {
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
    (tables, dir, url)
}

async fn seeding_is_deterministic_and_covers_every_pathway(backend: Backend) {
    let options = SeedOptions {
        patients: 400,
        seed: 7,
        until: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
        concurrency: 64,
    };
    let (first, _a, url) = seeded(backend, &options).await;
    let (second, _b, _) = seeded(
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
    let (other, _c, _) = seeded(backend, &SeedOptions { seed: 8, ..options }).await;
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
    journeys_follow_the_rules(&url).await;
}

/// The journeys of a seeded registry follow the rules of real ones: the same drug under its
/// next pathway, plain drug switches, transfers between centres, gene therapies given once and
/// followed, measures that move with treatment, each drug's adverse events with their
/// seriousness, RCPs (unfavourable ones leave the patient untreated), frameworks refused and
/// suspended.
async fn journeys_follow_the_rules(url: &str) {
    let count = |sql: &'static str| async move {
        text_rows(url, sql)
            .await
            .first()
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let same_drug = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM episode_versions e JOIN episode_versions p ON p.id = e.previous_episode_id \
         AND p.superseded_at IS NULL WHERE e.superseded_at IS NULL AND e.drug_atc = p.drug_atc AND e.pathway <> p.pathway",
    )
    .await;
    assert!(
        same_drug > 0,
        "a drug followed to its next pathway (AAC, early access, common law)"
    );
    let aac_to_common_law = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM episode_versions e JOIN episode_versions p ON p.id = e.previous_episode_id \
         AND p.superseded_at IS NULL WHERE e.superseded_at IS NULL AND e.drug_atc = p.drug_atc \
         AND p.pathway IN ('AAC', 'AAP_PRE', 'AAP_POST', 'ATU_COHORT') AND e.pathway IN ('AAP_PRE', 'AAP_POST', 'COMMON_LAW')",
    )
    .await;
    assert!(
        aac_to_common_law > 0,
        "compassionate or early access, then the next step of the same drug"
    );
    let other_drug = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM episode_versions e JOIN episode_versions p ON p.id = e.previous_episode_id \
         AND p.superseded_at IS NULL WHERE e.superseded_at IS NULL AND e.drug_atc <> p.drug_atc",
    )
    .await;
    assert!(other_drug > 0, "plain switches of drug");
    let transferred = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM episode_versions t JOIN episode_versions n ON n.patient_id = t.patient_id \
         AND n.superseded_at IS NULL AND n.id <> t.id AND n.request_date > t.request_date AND n.cohort_id = t.cohort_id \
         WHERE t.superseded_at IS NULL AND t.status = 'TRANSFERRED'",
    )
    .await;
    assert!(
        transferred > 0,
        "a treatment transferred and carried on at the other centre"
    );
    let one_shot_stops = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM episode_versions WHERE superseded_at IS NULL \
         AND drug_atc IN ('M09AX09', 'B02BD16') AND status = 'STOPPED' AND stop_reason <> 'END_OF_FOLLOW_UP' \
         AND first_administration_date IS NOT NULL",
    )
    .await;
    assert_eq!(one_shot_stops, 0, "a gene therapy given is never stopped for a reason");
    let serious =
        count("SELECT CAST(COUNT(*) AS TEXT) FROM adverse_event_versions WHERE superseded_at IS NULL AND serious")
            .await;
    let events = count("SELECT CAST(COUNT(*) AS TEXT) FROM adverse_event_versions WHERE superseded_at IS NULL").await;
    let terms = count("SELECT CAST(COUNT(DISTINCT meddra_pt_code) AS TEXT) FROM adverse_event_versions").await;
    assert!(
        serious > 0 && serious * 4 < events,
        "some events serious, most not: {serious} of {events}"
    );
    assert!(terms >= 8, "the drugs' own adverse events: {terms} terms");
    let refused = count(
        "SELECT CAST(COUNT(*) AS TEXT) FROM framework_versions WHERE superseded_at IS NULL AND status = 'REFUSED'",
    )
    .await;
    let suspended = count("SELECT CAST(COUNT(*) AS TEXT) FROM framework_versions WHERE status = 'SUSPENDED'").await;
    assert!(
        refused > 0 && suspended > 0,
        "frameworks refused ({refused}) and suspended ({suspended})"
    );

    // Measures and RCPs, from the records themselves.
    let store = Store::connect(&StoreOptions::new(url)).await.expect("connect");
    let now = chrono::Utc::now();
    let mut episodes = std::collections::HashMap::new();
    store
        .scan_as_of::<Episode>(now, 500, |batch| {
            for e in batch {
                episodes.insert(e.meta.id.clone(), e.record);
            }
            Ok(())
        })
        .await
        .expect("episodes");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    store
        .scan_as_of::<FollowUp>(now, 500, |batch| {
            for v in batch {
                let Some(e) = episodes.get(v.record.episode_id.as_str()) else {
                    continue;
                };
                let Some(start) = e.first_administration_date else {
                    continue;
                };
                for m in v.record.measures.iter().filter(|m| m.code.as_str() == "ABR") {
                    if v.record.visit_date < start {
                        before.push(m.value);
                    } else if (v.record.visit_date - start).num_days() > 180 {
                        after.push(m.value);
                    }
                }
            }
            Ok(())
        })
        .await
        .expect("visits");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(
        !before.is_empty() && !after.is_empty(),
        "baseline and later bleed rates"
    );
    assert!(
        mean(&after) < mean(&before) * 0.6,
        "prophylaxis brings the bleed rate down: {} before, {} after",
        mean(&before),
        mean(&after)
    );
    let (mut unfavourable_untreated, mut followed) = (0, 0);
    let patient_of: std::collections::HashSet<String> = episodes.values().map(|e| e.patient_id.to_string()).collect();
    store
        .scan_as_of::<Patient>(now, 500, |batch| {
            for p in batch {
                for r in &p.record.rcp_reviews {
                    if r.opinion == Some(RcpOpinion::Unfavourable) && !patient_of.contains(&p.meta.id) {
                        unfavourable_untreated += 1;
                    }
                }
            }
            Ok(())
        })
        .await
        .expect("patients");
    followed += episodes.values().filter(|e| e.rcp_review_id.is_some()).count();
    assert!(
        unfavourable_untreated > 0,
        "an unfavourable RCP leaves the patient untreated"
    );
    assert!(followed > 0, "treatments declared on an RCP's opinion");
    store.close().await;
}
