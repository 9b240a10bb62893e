//! Observatory reports over a seeded registry: figures against plain SQL, determinism, cutoffs,
//! suppression, objections to reuse.

use std::path::Path;

use chrono::{NaiveDate, Utc};
use observatory_analytics::{
    CsvStyle, Period, ReportOptions,
    report::{Scope, TABLES, report, run},
    snapshot::Snapshot,
};
use observatory_server::seed::{SeedOptions, seed};
use observatory_store::{Store, StoreOptions};

use crate::helpers::{Backend, fresh_database, text_rows};
use crate::on_both_backends;

on_both_backends!(a_report_matches_sql_is_reproducible_and_never_publishes_small_counts);

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The position of a named column in a published table's header.
pub(crate) fn column(table: &[Vec<String>], name: &str) -> usize {
    table[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", table[0]))
}

/// Rows of a published CSV, header first (fields may be quoted; no field spans lines).
pub(crate) fn csv(path: &Path) -> Vec<Vec<String>> {
    let split = |line: &str| {
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        fields
    };
    String::from_utf8(read(path))
        .expect("UTF-8")
        .lines()
        .map(split)
        .collect()
}

async fn a_report_matches_sql_is_reproducible_and_never_publishes_small_counts(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    let until = NaiveDate::from_ymd_opt(2026, 10, 31).expect("date");
    seed(
        &crate::helpers::app_of(&store).await,
        &SeedOptions {
            patients: 300,
            seed: 3,
            until,
            concurrency: 32,
        },
    )
    .await
    .expect("seed");
    let q3 = Period::parse("2026-Q3").expect("period");
    let as_of = Utc::now();
    let options = |out: &str, threshold: u32| ReportOptions {
        period: q3,
        as_of,
        out: dir.path().join(out),
        threshold,
        csv: CsvStyle::Standard,
        scope: Scope::default(),
        language: observatory_analytics::synthesis::Language::Fr,
    };

    // Unsuppressed figures (threshold 0, which the command line refuses) against plain SQL.
    let raw = run(&store, &options("raw", 0)).await.expect("report");
    let activity = csv(&dir.path().join("raw/tables/activity.csv"));
    let header = &activity[0];
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let total = |name: &str| {
        activity[1..]
            .iter()
            .map(|r| r[col(name)].parse::<i64>().expect("number"))
            .sum::<i64>()
    };
    let sql_new = text_rows(
        &url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT DISTINCT e.patient_id, e.pathway, e.drug_atc, \
         e.indication_orpha_code, e.centre_finess FROM episode_versions e JOIN patient_versions p \
         ON p.id = e.patient_id AND p.superseded_at IS NULL WHERE e.superseded_at IS NULL \
         AND NOT p.objects_to_reuse AND e.first_administration_date >= '2026-07-01' \
         AND e.first_administration_date <= '2026-09-30') cells",
    )
    .await;
    assert_eq!(total("new_initiations").to_string(), sql_new[0]);
    // Names beside codes: each code column is followed by its name, known for every drug,
    // disease and centre of the seeded registry.
    for (code, name) in [
        ("drug_atc", "drug_name"),
        ("orpha_code", "disease_name"),
        ("centre_finess", "centre_name"),
        ("region_code", "region_name"),
    ] {
        assert_eq!(col(name), col(code) + 1, "{name} right after {code}");
        assert!(
            activity[1..].iter().all(|r| !r[col(name)].is_empty()),
            "every {code} of the activity table has a name"
        );
    }
    let sql_active = text_rows(
        &url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT DISTINCT e.patient_id, e.pathway, e.drug_atc, \
         e.indication_orpha_code, e.centre_finess FROM episode_versions e JOIN patient_versions p \
         ON p.id = e.patient_id AND p.superseded_at IS NULL WHERE e.superseded_at IS NULL \
         AND NOT p.objects_to_reuse AND e.first_administration_date <= '2026-09-30' \
         AND (e.end_date IS NULL OR e.end_date >= '2026-07-01')) cells",
    )
    .await;
    assert_eq!(total("active_patients").to_string(), sql_active[0]);
    assert!(
        total("active_patients") > 0,
        "the seeded registry has activity in the period"
    );

    // Requests submitted in the period, from the authorisations' history.
    let requests = csv(&dir.path().join("raw/tables/requests.csv"));
    let (step, count) = (column(&requests, "step"), column(&requests, "requests"));
    let submitted: i64 = requests[1..]
        .iter()
        .filter(|r| r[step] == "submitted")
        .map(|r| r[count].parse::<i64>().expect("number"))
        .sum();
    let sql_submitted = text_rows(
        &url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM authorisation_versions a JOIN patient_versions p \
         ON p.id = a.patient_id AND p.superseded_at IS NULL WHERE a.version = 1 AND NOT p.objects_to_reuse \
         AND a.submitted_date >= '2026-07-01' AND a.submitted_date <= '2026-09-30'",
    )
    .await;
    assert_eq!(submitted.to_string(), sql_submitted[0]);

    // Switches and transitions to common law: the same (patient, from, to) cells as in SQL.
    let switches = csv(&dir.path().join("raw/tables/switches.csv"));
    let switch_col = |name: &str| switches[0].iter().position(|h| h == name).expect("column");
    let switched: i64 = switches[1..]
        .iter()
        .map(|r| r[switch_col("patients")].parse::<i64>().expect("number"))
        .sum();
    let to_common_law: i64 = switches[1..]
        .iter()
        .filter(|r| r[switch_col("change")] == "transition_to_common_law")
        .map(|r| r[switch_col("patients")].parse::<i64>().expect("number"))
        .sum();
    let sql_switched = text_rows(
        &url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM ( \
           SELECT n.patient_id, o.pathway AS fp, o.drug_atc AS fd, n.pathway AS tp, n.drug_atc AS td \
           FROM episode_versions n JOIN episode_versions o ON o.id = n.previous_episode_id AND o.superseded_at IS NULL \
           JOIN patient_versions p ON p.id = n.patient_id AND p.superseded_at IS NULL \
           WHERE n.superseded_at IS NULL AND NOT p.objects_to_reuse \
           AND COALESCE(n.first_administration_date, n.request_date) BETWEEN '2026-07-01' AND '2026-09-30' \
           UNION \
           SELECT e.patient_id, e.pathway, e.drug_atc, 'COMMON_LAW', e.drug_atc \
           FROM episode_versions e JOIN patient_versions p ON p.id = e.patient_id AND p.superseded_at IS NULL \
           WHERE e.superseded_at IS NULL AND NOT p.objects_to_reuse AND e.stop_reason = 'COMMON_LAW' \
           AND e.end_date BETWEEN '2026-07-01' AND '2026-09-30' \
           AND NOT EXISTS (SELECT 1 FROM episode_versions s WHERE s.superseded_at IS NULL AND s.previous_episode_id = e.id) \
         ) cells",
    )
    .await;
    assert_eq!(switched.to_string(), sql_switched[0]);
    assert!(
        to_common_law > 0,
        "the seeded registry has transitions to common law in the period"
    );

    // Patients who objected to reuse are not in the snapshot.
    let kept = text_rows(
        &url,
        "SELECT CAST(COUNT(*) AS TEXT) FROM patient_versions WHERE superseded_at IS NULL AND NOT objects_to_reuse",
    )
    .await;
    let snapshot = Snapshot::open(&dir.path().join("raw/snapshot")).expect("snapshot");
    assert_eq!(snapshot.manifest.rows["patients"].to_string(), kept[0]);
    assert!(
        snapshot.manifest.excluded_patients > 0,
        "the seed has objections to reuse"
    );

    // The same snapshot gives byte-identical tables; every output matches the manifest.
    let again = report(&snapshot, &options("again", 0)).expect("report again");
    assert_eq!(raw.outputs, again.outputs);
    for output in &raw.outputs {
        assert_eq!(
            read(&dir.path().join("raw").join(&output.file)),
            read(&dir.path().join("again").join(&output.file)),
            "{} differs between two runs on one snapshot",
            output.file
        );
    }

    // Published with the default threshold: no count below 10 appears; masked ones read "<10",
    // or "suppressed" for counts of 10 or more masked to protect them; rows withheld are left out.
    let published = run(&store, &options("published", 10)).await.expect("report");
    let withheld = |name: &str| published.suppression.get(name).map_or(0, |s| s.withheld) as usize;
    for output in published.outputs.iter().filter(|o| o.file.ends_with(".csv")) {
        let rows = csv(&dir.path().join("published").join(&output.file));
        let counts: Vec<usize> = [
            "new_initiations",
            "active_patients",
            "episodes",
            "courses",
            "stays",
            "authorisations",
            "adverse_events",
            "serious_adverse_events",
            "treated_patients",
            "episodes_followed",
            "overdue",
            "requests",
        ]
        .iter()
        .filter_map(|c| rows[0].iter().position(|h| h == c))
        .collect();
        for row in &rows[1..] {
            for &c in &counts {
                let cell = &row[c];
                assert!(
                    cell == "<10" || cell == "suppressed" || cell.parse::<i64>().is_ok_and(|n| n >= 10),
                    "{} publishes {cell}",
                    output.file
                );
            }
        }
    }

    // A reader who knows every line total (all dimensions but one fixed) of two cells or more
    // that is not small tries to recover a masked count by subtraction: no such line holds
    // exactly one masked count. Lines of `safety_pt` over preferred terms add up to the
    // `safety` cells, masked or not.
    for (name, spec) in TABLES {
        let truth = csv(&dir.path().join(format!("raw/tables/{name}.csv")));
        let published = csv(&dir.path().join(format!("published/tables/{name}.csv")));
        let column = |header: &[String], c: &str| header.iter().position(|h| h == c).expect("column");
        // Rows withheld are left out: aligned on the raw table's rows, they read "withheld".
        let dims: Vec<usize> = spec.dimensions.iter().map(|d| column(&published[0], d)).collect();
        let by_key: std::collections::HashMap<Vec<&str>, &Vec<String>> = published[1..]
            .iter()
            .map(|r| (dims.iter().map(|&i| r[i].as_str()).collect(), r))
            .collect();
        let mut shown = vec![published[0].clone()];
        for row in &truth[1..] {
            let key: Vec<&str> = dims.iter().map(|&i| row[i].as_str()).collect();
            shown.push(match by_key.get(&key) {
                Some(r) => (*r).clone(),
                None => row.iter().map(|_| "withheld".to_owned()).collect(),
            });
        }
        for (i, row) in shown.iter_mut().enumerate().skip(1) {
            for &d in &dims {
                row[d] = truth[i][d].clone();
            }
        }
        assert_eq!(
            published.len() - 1 + withheld(name),
            truth.len() - 1,
            "{name}: every row or withheld"
        );
        for count in spec.counts {
            let c = column(&shown[0], count);
            for free in spec.dimensions {
                let fixed: Vec<usize> = spec
                    .dimensions
                    .iter()
                    .filter(|d| *d != free)
                    .map(|d| column(&shown[0], d))
                    .collect();
                let mut lines: std::collections::BTreeMap<Vec<&str>, Vec<usize>> = Default::default();
                for (row, cells) in shown.iter().enumerate().skip(1) {
                    lines
                        .entry(fixed.iter().map(|&f| cells[f].as_str()).collect())
                        .or_default()
                        .push(row);
                }
                // Over the linked dimension, the totals are the linked table's published cells:
                // (its dimension values, masked or not).
                let linked: Option<std::collections::BTreeMap<Vec<String>, bool>> =
                    spec.within.filter(|w| w.dimension == *free).map(|w| {
                        let parent = csv(&dir.path().join(format!("published/tables/{}.csv", w.table)));
                        let pc = column(&parent[0], count);
                        let cols: Vec<usize> = spec
                            .dimensions
                            .iter()
                            .filter(|d| *d != free)
                            .map(|d| column(&parent[0], d))
                            .collect();
                        parent[1..]
                            .iter()
                            .map(|p| {
                                (
                                    cols.iter().map(|&i| p[i].clone()).collect(),
                                    p[pc].parse::<i64>().is_err(),
                                )
                            })
                            .collect()
                    });
                for (key, rows) in lines {
                    let masked = rows.iter().filter(|&&r| shown[r][c].parse::<i64>().is_err()).count();
                    let total: i64 = rows.iter().map(|&r| truth[r][c].parse::<i64>().expect("number")).sum();
                    let total_masked = match &linked {
                        Some(totals) => {
                            let key: Vec<String> = key.iter().map(|k| (*k).to_owned()).collect();
                            // A total withheld from the linked table is left out: unknown.
                            totals.get(&key).copied().unwrap_or(true)
                        }
                        None => rows.len() < 2 || total < 10,
                    };
                    assert!(
                        masked != 1 || total_masked,
                        "{name}.{count}: the line {key:?} over {free} gives its one masked count away"
                    );
                }
            }
        }
    }

    // A report restricted to one filiere covers only its cohorts.
    let mhemo = ReportOptions {
        scope: Scope {
            filiere: Some("MHEMO".into()),
            cohort: None,
        },
        ..options("mhemo", 0)
    };
    let scoped = run(&store, &mhemo).await.expect("scoped report");
    assert_eq!(scoped.scope.filiere.as_deref(), Some("MHEMO"));
    let rows = csv(&dir.path().join("mhemo/tables/activity.csv"));
    assert!(rows.len() > 1);
    let drug = column(&rows, "drug_atc");
    assert!(
        rows[1..].iter().all(|r| r[drug].starts_with("B02")),
        "only MHEMO drugs: {rows:?}"
    );

    // Writing to the registry after the cutoff does not change a report about that cutoff.
    let episodes = text_rows(
        &url,
        "SELECT id FROM episode_versions WHERE superseded_at IS NULL AND status = 'ONGOING' \
         AND first_administration_date < '2026-07-01' ORDER BY id LIMIT 5",
    )
    .await;
    assert!(!episodes.is_empty());
    for id in &episodes {
        let current = store
            .require::<observatory_domain::model::Episode>(id)
            .await
            .expect("episode");
        store
            .execute(
                observatory_store::Command::TransitionEpisode {
                    id: observatory_domain::model::RecordId::parse(id).expect("id"),
                    expected_version: current.meta.version,
                    transition: observatory_domain::lifecycle::EpisodeTransition::Stop {
                        date: NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
                        // A gene therapy given once is not stopped: its follow-up ends.
                        reason: if current.record.single_administration {
                            observatory_domain::model::StopReason::EndOfFollowUp
                        } else {
                            observatory_domain::model::StopReason::PatientChoice
                        },
                    },
                },
                observatory_store::WriteContext {
                    actor: "t".into(),
                    request_id: "t".into(),
                    trace_id: String::new(),
                    idempotency_key: None,
                    scope: None,
                },
            )
            .await
            .expect("stop before the period");
    }
    let earlier = run(&store, &options("earlier", 0))
        .await
        .expect("report at the earlier cutoff");
    assert_eq!(
        read(&dir.path().join("raw/tables/activity.csv")),
        read(&dir.path().join("earlier/tables/activity.csv")),
        "a later change altered a report about an earlier cutoff"
    );
    assert_eq!(earlier.as_of, raw.as_of);
    let now = run(
        &store,
        &ReportOptions {
            as_of: Utc::now(),
            ..options("now", 0)
        },
    )
    .await
    .expect("report now");
    assert_ne!(
        read(&dir.path().join("raw/tables/activity.csv")),
        read(&dir.path().join("now/tables/activity.csv")),
        "the stops are visible at a later cutoff"
    );
    assert_ne!(now.snapshot_hash, raw.snapshot_hash);
    store.close().await;
}
