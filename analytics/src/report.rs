//! A report run: snapshot the registry at the cutoff, compute the indicators over the snapshot,
//! suppress small cells, write every published table (CSV and Parquet) and a manifest with the
//! checksums of all outputs.
//!
//! A report is a function of its snapshot and parameters: the same snapshot gives byte-identical
//! tables, and a report about an earlier cutoff reads only what the registry knew then.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use observatory_store::Store;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::{
    indicators,
    period::Period,
    snapshot::{self, Snapshot, SnapshotError},
    suppress::{SuppressionSummary, TableSpec, Within, suppress, suppress_linked},
};

/// How CSV files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CsvStyle {
    /// Comma-separated UTF-8.
    #[default]
    Standard,
    /// Semicolon-separated UTF-8 with a byte-order mark, as French spreadsheet software expects.
    French,
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub period: Period,
    pub as_of: DateTime<Utc>,
    pub out: PathBuf,
    /// Counts below it are masked; 0 publishes everything (for cross-checks, never for
    /// publication: the command line refuses it).
    pub threshold: u32,
    pub csv: CsvStyle,
    /// Restricts the report to the cohorts of one filiere, or to one cohort (its id).
    pub scope: Scope,
    /// The language of the HTML page: its words, numbers and dates (tables keep their codes
    /// and column names).
    pub language: crate::synthesis::Language,
}

/// Which part of the registry a report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub filiere: Option<String>,
    pub cohort: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the output directory.
    pub file: String,
    /// Rows of a table file; for the HTML report and the workbook, the number of tables.
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportManifest {
    pub period: String,
    pub period_from: chrono::NaiveDate,
    pub period_to: chrono::NaiveDate,
    pub as_of: DateTime<Utc>,
    pub snapshot_hash: String,
    pub code_version: String,
    pub suppression_threshold: u32,
    pub csv_style: CsvStyle,
    pub scope: Scope,
    pub suppression: BTreeMap<String, SuppressionSummary>,
    pub outputs: Vec<OutputFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// Where a run is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// The snapshot is being extracted.
    Snapshot,
    /// Table `index` (from 1) of `total` is being computed.
    Table { name: &'a str, index: usize, total: usize },
    /// Every output is written.
    Done,
}

/// Number of stages a run goes through (the snapshot, then each table), for progress bars.
pub fn stage_count() -> usize {
    1 + TABLES.len()
}

/// Snapshots the registry at `options.as_of` into `<out>/snapshot` and reports over it.
pub async fn run(store: &Store, options: &ReportOptions) -> Result<ReportManifest, ReportError> {
    run_observed(store, options, |_| {}).await
}

/// [`run`], telling `observe` each stage as it starts.
pub async fn run_observed(
    store: &Store,
    options: &ReportOptions,
    observe: impl Fn(Stage<'_>) + Send + Sync + 'static,
) -> Result<ReportManifest, ReportError> {
    observe(Stage::Snapshot);
    let dir = options.out.join("snapshot");
    let manifest = snapshot::extract(store, options.as_of, &dir)
        .instrument(tracing::info_span!("report.snapshot", as_of = %options.as_of))
        .await?;
    tracing::info!(rows = ?manifest.rows, hash = %manifest.content_hash, "snapshot written");
    // Indicators are CPU work: keep them off the async workers, in the run's span.
    let options = options.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let snapshot = Snapshot::open(&dir)?;
        let manifest = report_observed(&snapshot, &options, &observe);
        observe(Stage::Done);
        manifest
    })
    .await
    .map_err(|e| ReportError::Io(PathBuf::from("report task"), std::io::Error::other(e)))?
}

/// The published tables of a report, in output order: (name, spec).
pub const TABLES: &[(&str, TableSpec<'static>)] = &[
    (
        "activity",
        TableSpec {
            dimensions: indicators::ACTIVITY_DIMENSIONS,
            counts: &["new_initiations", "active_patients"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "access_routes",
        TableSpec {
            dimensions: indicators::ACCESS_ROUTE_DIMENSIONS,
            counts: &["treated_patients"],
            dependents: &[("share_percent", "treated_patients")],
            within: None,
        },
    ),
    (
        "requests",
        TableSpec {
            dimensions: indicators::REQUEST_DIMENSIONS,
            counts: &["requests"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "timeliness",
        TableSpec {
            dimensions: indicators::TIMELINESS_DIMENSIONS,
            counts: &["episodes"],
            dependents: &[
                ("median_days", "episodes"),
                ("q1_days", "episodes"),
                ("q3_days", "episodes"),
            ],
            within: None,
        },
    ),
    (
        "discontinuations",
        TableSpec {
            dimensions: indicators::DISCONTINUATION_DIMENSIONS,
            counts: &["episodes"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "expiring_authorisations",
        TableSpec {
            dimensions: indicators::EXPIRING_DIMENSIONS,
            counts: &["authorisations"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "expiring_frameworks",
        TableSpec {
            dimensions: indicators::EXPIRING_FRAMEWORK_DIMENSIONS,
            counts: &["patients_on_treatment"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "overdue_follow_ups",
        TableSpec {
            dimensions: indicators::OVERDUE_DIMENSIONS,
            counts: &["episodes_followed", "overdue"],
            dependents: &[("overdue_percent", "overdue")],
            within: None,
        },
    ),
    (
        "persistence",
        TableSpec {
            dimensions: indicators::PERSISTENCE_DIMENSIONS,
            counts: &["courses", "at_risk"],
            dependents: &[
                ("survival", "at_risk"),
                ("ci_low", "at_risk"),
                ("ci_high", "at_risk"),
                ("median_months", "courses"),
                ("median_ci_low", "courses"),
                ("median_ci_high", "courses"),
            ],
            // The drug table holds this one's totals over the cohorts of each drug.
            within: Some(Within {
                table: "persistence_drug",
                dimension: "cohort",
            }),
        },
    ),
    (
        "persistence_drug",
        TableSpec {
            dimensions: indicators::PERSISTENCE_DRUG_DIMENSIONS,
            counts: &["courses", "at_risk"],
            dependents: &[
                ("survival", "at_risk"),
                ("ci_low", "at_risk"),
                ("ci_high", "at_risk"),
                ("median_months", "courses"),
                ("median_ci_low", "courses"),
                ("median_ci_high", "courses"),
            ],
            within: None,
        },
    ),
    (
        "journey_pathways",
        TableSpec {
            dimensions: indicators::JOURNEY_PATHWAY_DIMENSIONS,
            counts: &["stays", "at_risk"],
            dependents: &[
                ("survival", "at_risk"),
                ("ci_low", "at_risk"),
                ("ci_high", "at_risk"),
                ("median_months", "stays"),
                ("median_ci_low", "stays"),
                ("median_ci_high", "stays"),
            ],
            within: None,
        },
    ),
    (
        "journey_common_law",
        TableSpec {
            dimensions: indicators::JOURNEY_COMMON_LAW_DIMENSIONS,
            counts: &["courses", "at_risk"],
            dependents: &[
                ("common_law_share", "at_risk"),
                ("ci_low", "at_risk"),
                ("ci_high", "at_risk"),
                ("median_months", "courses"),
            ],
            within: None,
        },
    ),
    (
        "switches",
        TableSpec {
            dimensions: indicators::SWITCH_DIMENSIONS,
            counts: &["patients"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "equity_regions",
        TableSpec {
            dimensions: &["region_code"],
            counts: &["treated_patients"],
            dependents: &[("population", "treated_patients"), ("per_million", "treated_patients")],
            within: None,
        },
    ),
    (
        "equity_centre_types",
        TableSpec {
            dimensions: &["centre_type"],
            counts: &["treated_patients"],
            dependents: &[("share_percent", "treated_patients")],
            within: None,
        },
    ),
    (
        "equity_age_sex",
        TableSpec {
            dimensions: &["sex", "age_band"],
            counts: &["treated_patients"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "safety",
        TableSpec {
            dimensions: indicators::SAFETY_DIMENSIONS,
            counts: &["adverse_events", "serious_adverse_events"],
            dependents: SAFETY_DEPENDENTS,
            within: None,
        },
    ),
    (
        "safety_pt",
        TableSpec {
            dimensions: indicators::SAFETY_PT_DIMENSIONS,
            counts: &["adverse_events", "serious_adverse_events"],
            dependents: SAFETY_DEPENDENTS,
            within: Some(Within {
                table: "safety",
                dimension: "meddra_pt_code",
            }),
        },
    ),
    (
        "completeness",
        TableSpec {
            dimensions: indicators::COMPLETENESS_DIMENSIONS,
            counts: &["episodes", "complete"],
            dependents: &[("complete_percent", "complete")],
            within: None,
        },
    ),
];

/// Values of the safety tables computed over their counts.
pub(crate) const SAFETY_DEPENDENTS: &[(&str, &str)] = &[
    ("patient_years", "adverse_events"),
    ("adverse_events_rate", "adverse_events"),
    ("adverse_events_ci_low", "adverse_events"),
    ("adverse_events_ci_high", "adverse_events"),
    ("serious_adverse_events_rate", "serious_adverse_events"),
    ("serious_adverse_events_ci_low", "serious_adverse_events"),
    ("serious_adverse_events_ci_high", "serious_adverse_events"),
];

/// Months at which persistence on treatment is reported.
const PERSISTENCE_HORIZONS: [u32; 3] = [6, 12, 24];

/// The snapshot's tables restricted to the report's scope.
struct Scoped {
    /// Cohorts in scope.
    cohorts: LazyFrame,
    episodes: LazyFrame,
    authorisations: LazyFrame,
    adverse_events: LazyFrame,
    /// Episode keys in scope, when the report is restricted.
    keys: Option<Series>,
}

fn scoped(snapshot: &Snapshot, scope: &Scope) -> PolarsResult<Scoped> {
    let episodes = snapshot.scan("episodes")?;
    let authorisations = snapshot.scan("authorisations")?;
    let adverse_events = snapshot.scan("adverse_events")?;
    if scope.filiere.is_none() && scope.cohort.is_none() {
        return Ok(Scoped {
            cohorts: snapshot.scan("cohorts")?,
            episodes,
            authorisations,
            adverse_events,
            keys: None,
        });
    }
    let mut cohorts = snapshot.scan("cohorts")?;
    if let Some(f) = &scope.filiere {
        cohorts = cohorts.filter(col("filiere").eq(lit(f.as_str())));
    }
    if let Some(c) = &scope.cohort {
        cohorts = cohorts.filter(col("cohort_id").eq(lit(c.as_str())));
    }
    let ids = cohorts
        .clone()
        .select([col("cohort_id")])
        .collect()?
        .column("cohort_id")?
        .as_materialized_series()
        .clone();
    let episodes = episodes.filter(col("cohort_id").is_in(lit(ids).implode(false), false));
    let keys = episodes
        .clone()
        .select([col("episode_key")])
        .collect()?
        .column("episode_key")?
        .as_materialized_series()
        .clone();
    Ok(Scoped {
        cohorts,
        authorisations: authorisations.filter(col("episode_key").is_in(lit(keys.clone()).implode(false), false)),
        adverse_events: adverse_events.filter(col("episode_key").is_in(lit(keys.clone()).implode(false), false)),
        episodes,
        keys: Some(keys),
    })
}

/// Computes one table, before suppression.
fn compute(name: &str, snapshot: &Snapshot, period: &Period, scope: &Scope) -> PolarsResult<DataFrame> {
    let Scoped {
        cohorts,
        episodes,
        authorisations,
        adverse_events,
        keys: scope_keys,
    } = scoped(snapshot, scope)?;
    match name {
        "activity" => indicators::activity(episodes, snapshot.scan("centres")?, period).collect(),
        "access_routes" => indicators::access_routes(episodes, period)?.collect(),
        "requests" => {
            let events = snapshot.scan("authorisation_events")?;
            let events = match &scope_keys {
                Some(keys) => events.filter(col("episode_key").is_in(lit(keys.clone()).implode(false), false)),
                None => events,
            };
            indicators::requests(events, episodes, period)?.collect()
        }
        "timeliness" => {
            indicators::timeliness(episodes, cohorts.clone(), snapshot.scan("frameworks")?, period)?.collect()
        }
        "expiring_frameworks" => {
            let frameworks = snapshot.scan("frameworks")?;
            let frameworks = match &scope_keys {
                // Restricted: the frameworks of the cohorts in scope only.
                Some(_) => {
                    let framed = cohorts
                        .clone()
                        .select([col("framework_id")])
                        .filter(col("framework_id").is_not_null())
                        .collect()?
                        .column("framework_id")?
                        .as_materialized_series()
                        .clone();
                    frameworks.filter(col("framework_id").is_in(lit(framed).implode(false), false))
                }
                None => frameworks,
            };
            indicators::expiring_frameworks(frameworks, cohorts, episodes, period)?.collect()
        }
        "switches" => indicators::switches(episodes, period)?.collect(),
        "completeness" => indicators::completeness(
            episodes,
            snapshot.scan("patients")?,
            snapshot.scan("follow_ups")?,
            adverse_events,
            period,
        )?
        .collect(),
        "discontinuations" => indicators::discontinuations(episodes, period).collect(),
        "expiring_authorisations" => indicators::expiring_authorisations(authorisations, period)?.collect(),
        "overdue_follow_ups" => indicators::overdue_follow_ups(
            episodes,
            snapshot.scan("cohorts")?,
            snapshot.scan("follow_ups")?,
            period,
        )
        .collect(),
        "persistence" | "persistence_drug" => {
            let group = if name == "persistence" { "cohort" } else { "drug_atc" };
            let courses = indicators::treatment_courses(episodes, snapshot.scan("cohorts")?, period)?.collect()?;
            let curve = indicators::kaplan_meier(courses.clone().lazy(), group)?.collect()?;
            let table = indicators::persistence(courses.clone().lazy(), group, &PERSISTENCE_HORIZONS)?.collect()?;
            let table = indicators::with_km_intervals(indicators::with_median_intervals(table, &curve, group)?)?;
            if name == "persistence" {
                // Each cohort's drug, beside it: the cohort table adds up to the drug table.
                let drugs = courses
                    .lazy()
                    .select([col("cohort"), col("drug_atc")])
                    .unique(None, UniqueKeepStrategy::First);
                table
                    .lazy()
                    .join(drugs, [col("cohort")], [col("cohort")], JoinArgs::new(JoinType::Left))
                    .collect()
            } else {
                Ok(table)
            }
        }
        "journey_pathways" => {
            indicators::pathway_persistence(indicators::pathway_stays(episodes, period)?, &PERSISTENCE_HORIZONS)
        }
        "journey_common_law" => {
            let courses = indicators::time_to_common_law(episodes, period)?.collect()?;
            indicators::cumulative_incidence(&courses, "drug_atc", &PERSISTENCE_HORIZONS)
        }
        "equity_regions" => indicators::treated_per_million(
            episodes,
            snapshot.scan("patients")?,
            indicators::region_population()?,
            period,
        )
        .collect(),
        "equity_centre_types" => {
            indicators::treated_by_centre_type(episodes, snapshot.scan("centres")?, period).collect()
        }
        "equity_age_sex" => indicators::treated_by_age_sex(episodes, snapshot.scan("patients")?, period).collect(),
        "safety" | "safety_pt" => {
            let level = if name == "safety" {
                indicators::MeddraLevel::SystemOrganClass
            } else {
                indicators::MeddraLevel::PreferredTerm
            };
            let counts = indicators::safety(episodes, adverse_events, period, level).collect()?;
            indicators::with_poisson_rates(counts, &["adverse_events", "serious_adverse_events"], "patient_years")
        }
        other => Err(PolarsError::ComputeError(format!("unknown table {other}").into())),
    }
}

/// Suppresses every computed table (in [`TABLES`] order), each table protected together with
/// the tables holding its totals.
fn protect_all(computed: &[DataFrame], threshold: u32) -> PolarsResult<Vec<(DataFrame, SuppressionSummary)>> {
    protect_tables(TABLES, computed, threshold)
}

/// Suppresses computed tables (in the order of `tables`), each protected together with the
/// tables holding its totals.
pub(crate) fn protect_tables(
    tables: &[(&str, TableSpec<'static>)],
    computed: &[DataFrame],
    threshold: u32,
) -> PolarsResult<Vec<(DataFrame, SuppressionSummary)>> {
    let position = |name: &str| tables.iter().position(|(n, _)| *n == name);
    let mut out: Vec<Option<(DataFrame, SuppressionSummary)>> = vec![None; tables.len()];
    // Tables holding another's totals are published with it.
    let parents: Vec<usize> = tables
        .iter()
        .filter_map(|(_, spec)| spec.within.and_then(|w| position(w.table)))
        .collect();
    for (i, (name, spec)) in tables.iter().enumerate() {
        if parents.contains(&i) {
            continue;
        }
        let span = tracing::info_span!("report.suppress", table = *name);
        let _entered = span.enter();
        match spec.within {
            Some(within) => {
                let p = position(within.table).ok_or_else(|| {
                    PolarsError::ComputeError(format!("{name}: no table {} to hold its totals", within.table).into())
                })?;
                let mut both = suppress_linked((&computed[i], spec), &[(&computed[p], &tables[p].1)], threshold)?;
                out[p] = both.pop();
                out[i] = both.pop();
            }
            None => out[i] = Some(suppress(&computed[i], spec, threshold)?),
        }
    }
    out.into_iter()
        .zip(tables)
        .map(|(t, (name, _))| t.ok_or_else(|| PolarsError::ComputeError(format!("{name}: not published").into())))
        .collect()
}

/// Computes, suppresses and writes every table of the report from an opened snapshot.
pub fn report(snapshot: &Snapshot, options: &ReportOptions) -> Result<ReportManifest, ReportError> {
    report_observed(snapshot, options, &|_| {})
}

fn report_observed(
    snapshot: &Snapshot,
    options: &ReportOptions,
    observe: &dyn Fn(Stage<'_>),
) -> Result<ReportManifest, ReportError> {
    let tables_dir = options.out.join("tables");
    std::fs::create_dir_all(&tables_dir).map_err(|e| ReportError::Io(tables_dir.clone(), e))?;
    let period = &options.period;
    let mut suppression = BTreeMap::new();
    let mut outputs = Vec::new();
    let mut computed = Vec::with_capacity(TABLES.len());
    for (index, (name, _)) in TABLES.iter().enumerate() {
        observe(Stage::Table {
            name,
            index: index + 1,
            total: TABLES.len(),
        });
        let span = tracing::info_span!("report.table", table = *name);
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let table = compute(name, snapshot, period, &options.scope)?;
        tracing::debug!(
            rows = table.height(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "computed"
        );
        computed.push(table);
    }
    let published = protect_all(&computed, options.threshold)?;
    let names = crate::names::Names::load(snapshot)?;
    let mut published_tables = Vec::with_capacity(TABLES.len());
    for ((name, _), (table, summary)) in TABLES.iter().zip(published) {
        // Names beside codes, once suppressed.
        let mut table = names.annotate(table)?;
        suppression.insert((*name).to_owned(), summary);
        outputs.push(write_csv(&mut table, &tables_dir, name, options.csv)?);
        outputs.push(write_parquet(&mut table, &tables_dir, name)?);
        published_tables.push(((*name).to_owned(), table));
    }
    let french = options.language == crate::synthesis::Language::Fr;
    let header = crate::html::Header {
        title: if french {
            format!("Rapport de l'observatoire des accès dérogatoires, {}", period.label())
        } else {
            format!("Treatment access observatory report, {}", period.label())
        },
        period: if french {
            format!(
                "du {} au {}",
                period.from.format("%d/%m/%Y"),
                period.to.format("%d/%m/%Y")
            )
        } else {
            format!("{} to {}", period.from, period.to)
        },
        as_of: if french {
            snapshot.manifest.as_of.format("%d/%m/%Y %H:%M:%S UTC").to_string()
        } else {
            snapshot.manifest.as_of.to_rfc3339()
        },
        language: options.language,
        snapshot_hash: snapshot.manifest.content_hash.clone(),
        threshold: options.threshold,
        exposed_by_totals: suppression.values().map(|s| s.exposed_by_totals).sum(),
        withheld: suppression.values().map(|s| s.withheld).sum(),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let xlsx_path = options.out.join("report.xlsx");
    let definitions = if french {
        crate::html::DEFINITIONS_FR
    } else {
        crate::html::DEFINITIONS
    };
    let readme = crate::xlsx::Readme {
        language: options.language,
        title: &header.title,
        tables: published_tables
            .iter()
            .map(|(name, _)| {
                let definition = definitions.iter().find(|(n, _)| n == name).map_or("", |(_, d)| *d);
                (name.as_str(), name.as_str(), definition)
            })
            .collect(),
    };
    crate::xlsx::write(&xlsx_path, &published_tables, snapshot.manifest.as_of, &readme)
        .map_err(|e| ReportError::Io(xlsx_path.clone(), std::io::Error::other(e)))?;
    outputs.push(OutputFile {
        file: "report.xlsx".to_owned(),
        rows: published_tables.len() as u64,
        sha256: snapshot::sha256_file(&xlsx_path)?,
    });
    let html_path = options.out.join("report.html");
    std::fs::write(&html_path, crate::html::render(&header, &published_tables))
        .map_err(|e| ReportError::Io(html_path.clone(), e))?;
    outputs.push(OutputFile {
        file: "report.html".to_owned(),
        rows: published_tables.len() as u64,
        sha256: snapshot::sha256_file(&html_path)?,
    });
    let manifest = ReportManifest {
        period: period.label(),
        period_from: period.from,
        period_to: period.to,
        as_of: snapshot.manifest.as_of,
        snapshot_hash: snapshot.manifest.content_hash.clone(),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        suppression_threshold: options.threshold,
        csv_style: options.csv,
        scope: options.scope.clone(),
        suppression,
        outputs,
    };
    let path = options.out.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| ReportError::Io(path.clone(), e.into()))?;
    std::fs::write(&path, text).map_err(|e| ReportError::Io(path, e))?;
    Ok(manifest)
}

fn output(dir: &Path, file: String, rows: usize) -> Result<OutputFile, ReportError> {
    let sha256 = snapshot::sha256_file(&dir.join(&file))?;
    Ok(OutputFile {
        file: format!("tables/{file}"),
        rows: rows as u64,
        sha256,
    })
}

fn create(path: &Path) -> Result<File, ReportError> {
    File::create(path).map_err(|e| ReportError::Io(path.to_owned(), e))
}

pub(crate) fn write_csv(
    df: &mut DataFrame,
    dir: &Path,
    name: &str,
    style: CsvStyle,
) -> Result<OutputFile, ReportError> {
    let file = format!("{name}.csv");
    let writer = CsvWriter::new(create(&dir.join(&file))?);
    let mut writer = match style {
        CsvStyle::Standard => writer,
        CsvStyle::French => writer.with_separator(b';').include_bom(true),
    };
    writer.finish(df)?;
    output(dir, file, df.height())
}

pub(crate) fn write_parquet(df: &mut DataFrame, dir: &Path, name: &str) -> Result<OutputFile, ReportError> {
    let file = format!("{name}.parquet");
    ParquetWriter::new(create(&dir.join(&file))?).finish(df)?;
    output(dir, file, df.height())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_table_is_defined_in_the_methods_section_once() {
        for (name, _) in TABLES {
            let n = crate::html::DEFINITIONS.iter().filter(|(t, _)| t == name).count();
            assert_eq!(n, 1, "table {name} has {n} definitions");
        }
        assert_eq!(crate::html::DEFINITIONS.len(), TABLES.len());
    }
}
