//! The periodic synthesis of a framework over a seeded registry: figures against plain SQL on
//! the same database, suppression, the documents (Word and HTML, French and English),
//! determinism, an unknown framework.

use std::io::Read;

use chrono::{NaiveDate, Utc};
use observatory_analytics::{
    CsvStyle, Period,
    snapshot::Snapshot,
    synthesis::{Language, SynthesisError, SynthesisOptions, Target, run, synthesise},
};
use observatory_server::seed::{SeedOptions, seed};
use observatory_store::{Store, StoreOptions};

use crate::helpers::{Backend, fresh_database, text_rows_of};
use crate::on_both_backends;
use crate::report::{column, csv};

on_both_backends!(a_synthesis_of_a_framework_matches_sql_and_is_published_safely);

/// The early access of concizumab (reference frameworks), which the seed fills.
const FRAMEWORK: &str = "0193a000-0000-7000-8000-000000000002";

/// A cell of a table by its row's first column and its column name.
fn cell(table: &[Vec<String>], row: &str, column: &str) -> String {
    let c = table[0].iter().position(|h| h == column).expect("column");
    table[1..]
        .iter()
        .find(|r| r[0] == row)
        .map(|r| r[c].clone())
        .unwrap_or_else(|| panic!("no row {row}"))
}

/// Distinct patients of the framework's cohorts (objectors left out) matching `condition` on
/// their episodes `e`.
fn patients_where(condition: &str) -> String {
    format!(
        "SELECT CAST(COUNT(DISTINCT e.patient_id) AS TEXT) FROM episode_versions e \
         JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
         JOIN patient_versions p ON p.id = e.patient_id AND p.superseded_at IS NULL \
         WHERE e.superseded_at IS NULL AND NOT p.objects_to_reuse AND c.framework_id = '{FRAMEWORK}' AND {condition}"
    )
}

async fn sql(url: &str, query: String) -> String {
    text_rows_of(url, query).await.remove(0)
}

fn document_xml(path: &std::path::Path) -> String {
    let file = std::fs::File::open(path).expect("docx");
    let mut archive = zip::ZipArchive::new(file).expect("a zip package");
    for part in [
        "[Content_Types].xml",
        "_rels/.rels",
        "word/styles.xml",
        "docProps/core.xml",
    ] {
        archive
            .by_name(part)
            .unwrap_or_else(|_| panic!("the package has {part}"));
    }
    let mut text = String::new();
    archive
        .by_name("word/document.xml")
        .expect("word/document.xml")
        .read_to_string(&mut text)
        .expect("UTF-8");
    // Well-formed XML.
    let mut reader = quick_xml::Reader::from_str(&text);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("document.xml is not well-formed: {e}"),
        }
    }
    text
}

async fn a_synthesis_of_a_framework_matches_sql_and_is_published_safely(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    seed(
        &crate::helpers::app_of(&store).await,
        &SeedOptions {
            patients: 300,
            seed: 3,
            until: NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
            concurrency: 32,
        },
    )
    .await
    .expect("seed");
    let period = Period::between(
        NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
        NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
    )
    .expect("period");
    let as_of = Utc::now();
    let options = |out: &str, threshold: u32, language: Language| SynthesisOptions {
        target: Target::Framework(FRAMEWORK.to_owned()),
        period,
        as_of,
        out: dir.path().join(out),
        threshold,
        csv: CsvStyle::Standard,
        language,
    };

    // Unsuppressed figures against plain SQL on the database.
    let raw = run(&store, &options("raw", 0, Language::Fr)).await.expect("synthesis");
    assert_eq!(raw.pathway, "AAP_PRE");
    assert_eq!(raw.drug_atc, "B02BX07");
    let patients = csv(&dir.path().join("raw/tables/patients.csv"));
    let in_period = |column: &str| format!("e.{column} >= '2026-01-01' AND e.{column} <= '2026-06-30'");
    assert_eq!(
        cell(&patients, "period", "requested"),
        sql(&url, patients_where(&in_period("request_date"))).await
    );
    assert_eq!(
        cell(&patients, "period", "initiated"),
        sql(&url, patients_where(&in_period("first_administration_date"))).await
    );
    assert_eq!(
        cell(&patients, "period", "on_treatment"),
        sql(
            &url,
            patients_where(
                "e.first_administration_date <= '2026-06-30' AND (e.end_date IS NULL OR e.end_date >= '2026-01-01')"
            )
        )
        .await
    );
    assert_eq!(
        cell(&patients, "cumulative", "initiated"),
        sql(&url, patients_where("e.first_administration_date <= '2026-06-30'")).await
    );
    let initiated: i64 = cell(&patients, "period", "initiated").parse().expect("number");
    assert!(
        initiated > 0,
        "the seed starts patients under the framework in the period"
    );
    // Each initiated patient counts once under each characteristic.
    let characteristics = csv(&dir.path().join("raw/tables/characteristics.csv"));
    let cumulative: i64 = cell(&patients, "cumulative", "initiated").parse().expect("number");
    let (kind, count) = (
        column(&characteristics, "characteristic"),
        column(&characteristics, "patients"),
    );
    for characteristic in ["sex", "age_band", "orpha_code", "region", "centre_type"] {
        let sum: i64 = characteristics[1..]
            .iter()
            .filter(|r| r[kind] == characteristic)
            .map(|r| r[count].parse::<i64>().expect("number"))
            .sum();
        assert_eq!(sum, cumulative, "{characteristic}");
    }
    // Adverse events with onset in the period.
    let safety = csv(&dir.path().join("raw/tables/safety_summary.csv"));
    let events = sql(
        &url,
        format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM adverse_event_versions a \
             JOIN episode_versions e ON e.id = a.episode_id AND e.superseded_at IS NULL \
             JOIN cohort_versions c ON c.id = e.cohort_id AND c.superseded_at IS NULL \
             JOIN patient_versions p ON p.id = e.patient_id AND p.superseded_at IS NULL \
             WHERE a.superseded_at IS NULL AND NOT p.objects_to_reuse AND c.framework_id = '{FRAMEWORK}' \
             AND a.onset_date >= '2026-01-01' AND a.onset_date <= '2026-06-30'"
        ),
    )
    .await;
    assert_eq!(cell(&safety, "period", "adverse_events"), events);
    // The protocol's measure: bleed rates fall on prophylaxis.
    let efficacy = csv(&dir.path().join("raw/tables/efficacy.csv"));
    let (measure, timepoint, change_mean) = (
        column(&efficacy, "measure_code"),
        column(&efficacy, "timepoint"),
        column(&efficacy, "change_mean"),
    );
    let change = efficacy[1..]
        .iter()
        .find(|r| r[measure] == "ABR" && r[timepoint] == "M6")
        .map(|r| r[change_mean].parse::<f64>().expect("number"))
        .expect("ABR at 6 months");
    assert!(change < 0.0, "mean change of the bleed rate at 6 months: {change}");

    // Published at 10: no count below 10.
    let published = run(&store, &options("published", 10, Language::Fr))
        .await
        .expect("synthesis");
    for output in published.outputs.iter().filter(|o| o.file.ends_with(".csv")) {
        let rows = csv(&dir.path().join("published").join(&output.file));
        for (name, spec) in observatory_analytics::synthesis::TABLES {
            if output.file != format!("tables/{name}.csv") {
                continue;
            }
            for count in spec.counts {
                let c = rows[0].iter().position(|h| h == count).expect("count column");
                for row in &rows[1..] {
                    let value = &row[c];
                    assert!(
                        value == "<10" || value == "suppressed" || value.parse::<i64>().is_ok_and(|n| n >= 10),
                        "{name}.{count} publishes {value}"
                    );
                }
            }
        }
    }

    // The documents: Word in French, a self-contained page, the benefit/risk part to write.
    let fr = document_xml(&dir.path().join("published/synthesis.docx"));
    assert!(fr.contains("Synthèse périodique"));
    assert!(fr.contains("Lecture du rapport bénéfice/risque"));
    assert!(fr.contains("Accès précoce pré-AMM"), "codes read as labels");
    let html = std::fs::read_to_string(dir.path().join("published/synthesis.html")).expect("html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("lang=\"fr\""));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
    assert!(html.contains("Conditions réelles d'utilisation"));
    let english = run(&store, &options("english", 10, Language::En))
        .await
        .expect("synthesis");
    let en = document_xml(&dir.path().join("english/synthesis.docx"));
    assert!(en.contains("Periodic synthesis") && en.contains("Benefit/risk reading"));
    assert_eq!(english.snapshot_hash.len(), 64);

    // The same snapshot gives the same files, documents included.
    let snapshot = Snapshot::open(&dir.path().join("published/snapshot")).expect("snapshot");
    let again = synthesise(&snapshot, &options("again", 10, Language::Fr)).expect("synthesis");
    assert_eq!(published.outputs, again.outputs);

    // An unknown framework is named, not an empty document.
    let unknown = SynthesisOptions {
        target: Target::Framework("0193a000-0000-7000-8000-0000000000ff".to_owned()),
        ..options("unknown", 10, Language::Fr)
    };
    match synthesise(&snapshot, &unknown) {
        Err(SynthesisError::UnknownFramework(id)) => assert_eq!(id, "0193a000-0000-7000-8000-0000000000ff"),
        other => panic!("expected an unknown framework, got {other:?}"),
    }
}
