//! The periodic synthesis of one framework (an early access, a CPC, a cohort ATU, an RTU, an
//! accès direct) or one cohort: what the rights holder sends HAS and ANSM at the interval its
//! protocol sets (CSP R5121-70 and R5121-70-1 for early access, R5121-74-6 for compassionate
//! access, R5121-76-6 for CPC), drawn up with the reference and competence centres.
//!
//! Computed from the same as-of snapshot as the periodic report, over the episodes of the
//! framework's cohorts (or of the cohort), and published the same way: every count below the
//! threshold masked, complementary suppression, a manifest. Windows: `period` (the synthesis
//! period) and `cumulative` (from the framework's entry into force, or the cohort's first
//! request, to the end of the period).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
};

use chrono::{DateTime, NaiveDate, Utc};
use observatory_store::Store;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::{
    indicators::{self, day},
    period::{Period, epoch_days},
    report::{self, CsvStyle, OutputFile, ReportError, Stage},
    snapshot::{self, Snapshot},
    stats,
    suppress::{SuppressionSummary, TableSpec, Within},
};

/// What a synthesis covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Target {
    /// Every cohort bound to the framework.
    Framework(String),
    /// One cohort.
    Cohort(String),
}

/// The language of the document and of its labels (tables keep their codes and column names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Fr,
    En,
}

impl Language {
    pub fn parse(s: &str) -> Option<Language> {
        match s.to_ascii_lowercase().as_str() {
            "fr" | "fr-fr" | "french" | "francais" | "français" => Some(Language::Fr),
            "en" | "en-gb" | "en-us" | "english" => Some(Language::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Fr => "fr",
            Language::En => "en",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SynthesisOptions {
    pub target: Target,
    pub period: Period,
    pub as_of: DateTime<Utc>,
    pub out: PathBuf,
    pub threshold: u32,
    pub csv: CsvStyle,
    pub language: Language,
}

/// What was synthesised, and the files written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisManifest {
    pub target: Target,
    /// The framework or cohort as named in the registry.
    pub title: String,
    pub pathway: String,
    pub drug_atc: String,
    /// The framework's protocol (`PUT_RD`, `PUT_SP`...) and version, when there is one.
    pub protocol_type: Option<String>,
    pub protocol_version: Option<String>,
    pub decision_reference: Option<String>,
    pub cohorts: Vec<String>,
    pub period: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    /// Start of the cumulative window.
    pub cumulative_from: NaiveDate,
    pub as_of: DateTime<Utc>,
    pub snapshot_hash: String,
    pub code_version: String,
    pub suppression_threshold: u32,
    pub language: Language,
    pub suppression: BTreeMap<String, SuppressionSummary>,
    pub outputs: Vec<OutputFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthesisError {
    #[error("no framework {0} in the registry as of the cutoff")]
    UnknownFramework(String),
    #[error("no cohort {0} in the registry as of the cutoff")]
    UnknownCohort(String),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl From<PolarsError> for SynthesisError {
    fn from(e: PolarsError) -> Self {
        SynthesisError::Report(ReportError::Polars(e))
    }
}

impl From<snapshot::SnapshotError> for SynthesisError {
    fn from(e: snapshot::SnapshotError) -> Self {
        SynthesisError::Report(ReportError::Snapshot(e))
    }
}

/// Age bands at initiation, in completed years: (label, lowest age).
pub const AGE_BANDS: &[(&str, i32)] = &[
    ("0-1", 0),
    ("2-5", 2),
    ("6-11", 6),
    ("12-17", 12),
    ("18-39", 18),
    ("40-64", 40),
    ("65+", 65),
];

/// Months after the first administration at which disease measures are reported, with the
/// window (days either side) a visit must fall in.
pub const EFFICACY_TIMEPOINTS: &[(u32, i32)] = &[(6, 60), (12, 90), (24, 120)];

/// Days before the first administration within which a measure is a baseline.
pub const BASELINE_DAYS: i32 = 90;

/// The published tables of a synthesis, in output order.
pub const TABLES: &[(&str, TableSpec<'static>)] = &[
    (
        "patients",
        TableSpec {
            dimensions: &["window"],
            counts: &[
                "requested",
                "granted",
                "refused",
                "initiated",
                "on_treatment",
                "stopped",
            ],
            dependents: &[("patient_years", "on_treatment")],
            within: None,
        },
    ),
    (
        "characteristics",
        TableSpec {
            dimensions: &["characteristic", "category"],
            counts: &["patients"],
            dependents: &[("percent", "patients")],
            within: None,
        },
    ),
    (
        "conditions_of_use",
        TableSpec {
            dimensions: &["item", "category"],
            counts: &["episodes"],
            dependents: &[("percent", "episodes")],
            within: None,
        },
    ),
    (
        "dosing",
        TableSpec {
            dimensions: &["route", "dose_unit"],
            counts: &["episodes"],
            dependents: &[
                ("median_dose", "episodes"),
                ("q1_dose", "episodes"),
                ("q3_dose", "episodes"),
            ],
            within: None,
        },
    ),
    (
        "time_to_treatment",
        TableSpec {
            dimensions: &["window"],
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
        "efficacy",
        TableSpec {
            dimensions: &["measure_code", "timepoint"],
            counts: &["patients"],
            dependents: &[
                ("baseline_mean", "patients"),
                ("value_mean", "patients"),
                ("change_mean", "patients"),
                ("change_ci_low", "patients"),
                ("change_ci_high", "patients"),
            ],
            within: None,
        },
    ),
    (
        "efficacy_assessments",
        TableSpec {
            dimensions: &["assessment"],
            counts: &["patients"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "safety",
        TableSpec {
            dimensions: indicators::SAFETY_DIMENSIONS,
            counts: &["adverse_events", "serious_adverse_events"],
            dependents: report::SAFETY_DEPENDENTS,
            within: None,
        },
    ),
    (
        "safety_pt",
        TableSpec {
            dimensions: indicators::SAFETY_PT_DIMENSIONS,
            counts: &["adverse_events", "serious_adverse_events"],
            dependents: report::SAFETY_DEPENDENTS,
            within: Some(Within {
                table: "safety",
                dimension: "meddra_pt_code",
            }),
        },
    ),
    (
        "safety_summary",
        TableSpec {
            dimensions: &["window"],
            counts: &["adverse_events", "serious", "fatal", "declared_to_pharmacovigilance"],
            dependents: &[],
            within: None,
        },
    ),
    (
        "seriousness",
        TableSpec {
            dimensions: &["criterion"],
            counts: &["adverse_events"],
            dependents: &[],
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
        "completeness",
        TableSpec {
            dimensions: indicators::COMPLETENESS_DIMENSIONS,
            counts: &["episodes", "complete"],
            dependents: &[("complete_percent", "complete")],
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
];

/// Number of stages a synthesis run goes through (the snapshot, then each table).
pub fn stage_count() -> usize {
    1 + TABLES.len()
}

/// Snapshots the registry at `options.as_of` into `<out>/snapshot` and writes the synthesis.
pub async fn run(store: &Store, options: &SynthesisOptions) -> Result<SynthesisManifest, SynthesisError> {
    run_observed(store, options, |_| {}).await
}

/// [`run`], telling `observe` each stage as it starts.
pub async fn run_observed(
    store: &Store,
    options: &SynthesisOptions,
    observe: impl Fn(Stage<'_>) + Send + Sync + 'static,
) -> Result<SynthesisManifest, SynthesisError> {
    observe(Stage::Snapshot);
    let dir = options.out.join("snapshot");
    let manifest = snapshot::extract(store, options.as_of, &dir)
        .instrument(tracing::info_span!("synthesis.snapshot", as_of = %options.as_of))
        .await
        .map_err(ReportError::from)?;
    tracing::info!(rows = ?manifest.rows, hash = %manifest.content_hash, "snapshot written");
    let options = options.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let snapshot = Snapshot::open(&dir)?;
        let manifest = synthesise_observed(&snapshot, &options, &observe);
        observe(Stage::Done);
        manifest
    })
    .await
    .map_err(|e| ReportError::Io(PathBuf::from("synthesis task"), std::io::Error::other(e)))?
}

/// What the synthesis is about, read from the snapshot.
pub struct Subject {
    pub title: String,
    pub pathway: String,
    pub drug_atc: String,
    pub protocol_type: Option<String>,
    pub protocol_version: Option<String>,
    pub decision_reference: Option<String>,
    /// The diseases the framework covers (empty for a cohort with no framework).
    pub orpha_codes: Vec<String>,
    pub cohort_ids: Vec<String>,
    pub cohort_names: Vec<String>,
    /// The framework's entry into force, when there is one.
    pub in_force: Option<i32>,
}

fn strings(df: &DataFrame, column: &str) -> PolarsResult<Vec<Option<String>>> {
    let c = df.column(column)?.cast(&DataType::String)?;
    let s = c.str()?;
    Ok((0..s.len()).map(|i| s.get(i).map(str::to_owned)).collect())
}

fn day_values(df: &DataFrame, column: &str) -> PolarsResult<Vec<Option<i32>>> {
    let c = df.column(column)?.cast(&DataType::Int32)?;
    let s = c.i32()?;
    Ok((0..s.len()).map(|i| s.get(i)).collect())
}

/// Finds the framework or cohort and its cohorts.
pub fn subject(snapshot: &Snapshot, target: &Target) -> Result<Subject, SynthesisError> {
    let cohorts = snapshot.scan("cohorts")?.collect()?;
    let frameworks = snapshot.scan("frameworks")?.collect()?;
    let ids = strings(&cohorts, "cohort_id")?;
    let names = strings(&cohorts, "cohort")?;
    let pathways = strings(&cohorts, "pathway")?;
    let drugs = strings(&cohorts, "drug_atc")?;
    let framed = strings(&cohorts, "framework_id")?;
    let framework_row = |id: &str| -> PolarsResult<Option<usize>> {
        Ok(strings(&frameworks, "framework_id")?
            .iter()
            .position(|f| f.as_deref() == Some(id)))
    };
    let (framework_id, selected): (Option<String>, Vec<usize>) = match target {
        Target::Framework(id) => {
            if framework_row(id)?.is_none() {
                return Err(SynthesisError::UnknownFramework(id.clone()));
            }
            let rows = (0..ids.len()).filter(|&i| framed[i].as_deref() == Some(id)).collect();
            (Some(id.clone()), rows)
        }
        Target::Cohort(id) => {
            let Some(row) = ids.iter().position(|c| c.as_deref() == Some(id)) else {
                return Err(SynthesisError::UnknownCohort(id.clone()));
            };
            (framed[row].clone(), vec![row])
        }
    };
    let mut out = Subject {
        title: String::new(),
        pathway: String::new(),
        drug_atc: String::new(),
        protocol_type: None,
        protocol_version: None,
        decision_reference: None,
        orpha_codes: Vec::new(),
        cohort_ids: selected.iter().filter_map(|&i| ids[i].clone()).collect(),
        cohort_names: selected.iter().filter_map(|&i| names[i].clone()).collect(),
        in_force: None,
    };
    if let Some(&first) = selected.first() {
        out.pathway = pathways[first].clone().unwrap_or_default();
        out.drug_atc = drugs[first].clone().unwrap_or_default();
    }
    if let Some(fid) = &framework_id
        && let Some(row) = framework_row(fid)?
    {
        let at = |c: &str| -> PolarsResult<Option<String>> { Ok(strings(&frameworks, c)?[row].clone()) };
        out.protocol_type = at("protocol_type")?;
        out.protocol_version = at("protocol_version")?;
        out.decision_reference = at("decision_reference")?;
        out.orpha_codes = at("orpha_codes")?
            .map(|s| s.split('|').filter(|c| !c.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        out.in_force = day_values(&frameworks, "valid_from")?[row];
        if let Target::Framework(_) = target {
            out.pathway = at("pathway")?.unwrap_or_default();
            out.drug_atc = at("drug_atc")?.unwrap_or_default();
            out.title = at("indication")?.unwrap_or_default();
        }
    }
    if out.title.is_empty() {
        out.title = out.cohort_names.join(", ");
    }
    Ok(out)
}

/// The snapshot's tables restricted to the subject's episodes, collected.
struct Scoped {
    episodes: DataFrame,
    patients: DataFrame,
    centres: DataFrame,
    cohorts: DataFrame,
    authorisation_events: DataFrame,
    follow_ups: DataFrame,
    measures: DataFrame,
    adverse_events: DataFrame,
}

fn scoped(snapshot: &Snapshot, subject: &Subject) -> PolarsResult<Scoped> {
    let ids = Series::new("ids".into(), subject.cohort_ids.clone());
    let episodes = snapshot
        .scan("episodes")?
        .filter(col("cohort_id").is_in(lit(ids.clone()).implode(false), false))
        .collect()?;
    let keys = episodes.column("episode_key")?.as_materialized_series().clone();
    let patients_of = episodes.column("patient_key")?.as_materialized_series().unique()?;
    let by_episode = |table: &str| -> PolarsResult<DataFrame> {
        snapshot
            .scan(table)?
            .filter(col("episode_key").is_in(lit(keys.clone()).implode(false), false))
            .collect()
    };
    Ok(Scoped {
        patients: snapshot
            .scan("patients")?
            .filter(col("patient_key").is_in(lit(patients_of).implode(false), false))
            .collect()?,
        centres: snapshot.scan("centres")?.collect()?,
        cohorts: snapshot
            .scan("cohorts")?
            .filter(col("cohort_id").is_in(lit(ids).implode(false), false))
            .collect()?,
        authorisation_events: by_episode("authorisation_events")?,
        follow_ups: by_episode("follow_ups")?,
        measures: by_episode("measures")?,
        adverse_events: by_episode("adverse_events")?,
        episodes,
    })
}

/// The two windows of the synthesis: (name, first day, last day).
fn windows(period: &Period, cumulative_from: i32) -> [(&'static str, i32, i32); 2] {
    let (from, to) = period.epoch_days();
    [("period", from, to), ("cumulative", cumulative_from.min(from), to)]
}

fn in_window(e: Expr, from: i32, to: i32) -> Expr {
    e.clone()
        .is_not_null()
        .and(e.clone().gt_eq(lit(from)))
        .and(e.lt_eq(lit(to)))
}

fn n_patients(df: LazyFrame) -> PolarsResult<i64> {
    let out = df
        .select([col("patient_key").n_unique().cast(DataType::Int64).alias("n")])
        .collect()?;
    Ok(out.column("n")?.i64()?.get(0).unwrap_or(0))
}

/// Patients requested, granted, refused, initiated, on treatment and stopped per window, and
/// exposure in patient-years. Granted: a per-patient authorisation granted in the window, or,
/// under a framework pathway (no decision per patient), an inclusion requested in it.
fn patients_table(s: &Scoped, period: &Period, cumulative_from: i32) -> PolarsResult<DataFrame> {
    let episodes = s.episodes.clone().lazy();
    let events = s.authorisation_events.clone().lazy().join(
        episodes.clone().select([col("episode_key"), col("patient_key")]),
        [col("episode_key")],
        [col("episode_key")],
        JoinArgs::new(JoinType::Inner),
    );
    let framework_pathway = col("pathway").is_in(
        lit(Series::new(
            "framed".into(),
            ["AAP_PRE", "AAP_POST", "CPC", "ATU_COHORT", "RTU", "DIRECT"],
        ))
        .implode(false),
        false,
    );
    let mut rows: Vec<(String, [i64; 6], f64)> = Vec::new();
    for (name, from, to) in windows(period, cumulative_from) {
        let requested = n_patients(episodes.clone().filter(in_window(day("request_date"), from, to)))?;
        let granted_authorised = events
            .clone()
            .filter(
                col("status")
                    .eq(lit("GRANTED"))
                    .and(in_window(day("decision_date"), from, to)),
            )
            .select([col("patient_key")]);
        let included = episodes
            .clone()
            .filter(framework_pathway.clone().and(in_window(day("request_date"), from, to)))
            .select([col("patient_key")]);
        let granted = n_patients(concat([granted_authorised, included], UnionArgs::default())?)?;
        let refused = n_patients(events.clone().filter(col("status").eq(lit("REFUSED")).and(in_window(
            day("decision_date"),
            from,
            to,
        ))))?;
        let first = day("first_administration_date");
        let end = day("end_date");
        let initiated = n_patients(episodes.clone().filter(in_window(first.clone(), from, to)))?;
        let treated = first
            .clone()
            .is_not_null()
            .and(first.clone().lt_eq(lit(to)))
            .and(end.clone().is_null().or(end.clone().gt_eq(lit(from))));
        let on_treatment = n_patients(episodes.clone().filter(treated.clone()))?;
        let stopped = n_patients(
            episodes
                .clone()
                .filter(in_window(end.clone(), from, to).and(col("status").is_in(
                    lit(Series::new("stops".into(), ["STOPPED", "SWITCHED"])).implode(false),
                    false,
                ))),
        )?;
        // Days on treatment within the window: a single administration counts its day.
        let exposure = episodes
            .clone()
            .filter(treated)
            .select([(when(end.clone().is_null().or(end.clone().gt(lit(to))))
                .then(lit(to))
                .otherwise(end)
                - when(first.clone().lt(lit(from))).then(lit(from)).otherwise(first)
                + lit(1))
            .cast(DataType::Float64)
            .sum()
            .alias("days")])
            .collect()?;
        let days = exposure.column("days")?.f64()?.get(0).unwrap_or(0.0);
        rows.push((
            name.to_owned(),
            [requested, granted, refused, initiated, on_treatment, stopped],
            days / 365.25,
        ));
    }
    let count = |i: usize| -> Column {
        Column::from(Series::new(
            TABLES[0].1.counts[i].into(),
            rows.iter().map(|r| r.1[i]).collect::<Vec<_>>(),
        ))
    };
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            "window".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        )),
        count(0),
        count(1),
        count(2),
        count(3),
        count(4),
        count(5),
        Column::from(Series::new(
            "patient_years".into(),
            rows.iter().map(|r| (r.2 * 100.0).round() / 100.0).collect::<Vec<_>>(),
        )),
    ])
}

/// Each patient's first episode of the subject started by the end of the period (its first
/// administration), with the patient's and centre's characteristics.
fn initiations(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let (_, to) = period.epoch_days();
    let first = day("first_administration_date");
    s.episodes
        .clone()
        .lazy()
        .filter(first.clone().is_not_null().and(first.clone().lt_eq(lit(to))))
        .sort(
            ["patient_key", "first_administration_date", "episode_key"],
            SortMultipleOptions::default(),
        )
        .group_by_stable([col("patient_key")])
        .agg([
            col("episode_key").first(),
            col("orpha_code").first(),
            col("centre_finess").first(),
            first.first().alias("first"),
        ])
        .join(
            s.patients.clone().lazy().select([
                col("patient_key"),
                col("sex"),
                col("birth_month_index"),
                col("region_code"),
            ]),
            [col("patient_key")],
            [col("patient_key")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            s.centres
                .clone()
                .lazy()
                .select([col("centre_finess"), col("centre_type")]),
            [col("centre_finess")],
            [col("centre_finess")],
            JoinArgs::new(JoinType::Left),
        )
        .collect()
}

fn age_band(age: i32) -> &'static str {
    AGE_BANDS
        .iter()
        .rev()
        .find(|(_, lowest)| age >= *lowest)
        .map_or("0-1", |(label, _)| label)
}

/// Completed years between a birth month (index: year * 12 + month0) and a day number, taking
/// the first of the birth month (the day of birth is not kept).
fn age_at(birth_month_index: i32, day: i32) -> Option<i32> {
    let date = NaiveDate::from_num_days_from_ce_opt(day + 719_163)?;
    use chrono::Datelike;
    let months = date.year() * 12 + date.month0() as i32 - birth_month_index;
    Some(months.div_euclid(12))
}

/// A (dimension, category) -> count table with the percentage of the dimension's total.
fn category_table(dimension: &str, count: &str, rows: BTreeMap<(String, String), i64>) -> PolarsResult<DataFrame> {
    let mut totals: HashMap<String, i64> = HashMap::new();
    for ((d, _), n) in &rows {
        *totals.entry(d.clone()).or_default() += n;
    }
    let percent: Vec<f64> = rows
        .iter()
        .map(|((d, _), n)| (*n as f64 * 1000.0 / totals[d] as f64).round() / 10.0)
        .collect();
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            dimension.into(),
            rows.keys().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "category".into(),
            rows.keys().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(count.into(), rows.values().copied().collect::<Vec<_>>())),
        Column::from(Series::new("percent".into(), percent)),
    ])
}

/// Characteristics at initiation of the patients initiated by the end of the period (each
/// counted once, at their first episode): sex, age band, disease (ORPHA), region of residence,
/// type of the initiating centre.
fn characteristics_table(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let df = initiations(s, period)?;
    let sex = strings(&df, "sex")?;
    let orpha = strings(&df, "orpha_code")?;
    let region = strings(&df, "region_code")?;
    let centre_type = strings(&df, "centre_type")?;
    let birth = day_values(&df, "birth_month_index")?;
    let first = day_values(&df, "first")?;
    let mut rows: BTreeMap<(String, String), i64> = BTreeMap::new();
    let unknown = || "UNKNOWN".to_owned();
    for i in 0..df.height() {
        let age = match (birth[i], first[i]) {
            (Some(b), Some(f)) => age_at(b, f).map(age_band).map(str::to_owned),
            _ => None,
        };
        for (characteristic, value) in [
            ("sex", sex[i].clone()),
            // Bands in order of age: the label carries its rank, taken off below.
            (
                "age_band",
                age.map(|a| {
                    let rank = AGE_BANDS.iter().position(|(l, _)| *l == a).unwrap_or(0);
                    format!("{rank}\u{1f}{a}")
                }),
            ),
            ("orpha_code", orpha[i].clone()),
            ("region", region[i].clone()),
            ("centre_type", centre_type[i].clone()),
        ] {
            *rows
                .entry((characteristic.to_owned(), value.unwrap_or_else(unknown)))
                .or_default() += 1;
        }
    }
    let mut table = category_table("characteristic", "patients", rows)?;
    // Drop the ranks that ordered the age bands.
    let labels: Vec<String> = strings(&table, "category")?
        .into_iter()
        .map(|c| {
            let c = c.unwrap_or_default();
            c.split_once('\u{1f}').map_or(c.clone(), |(_, label)| label.to_owned())
        })
        .collect();
    table.with_column(Column::from(Series::new("category".into(), labels)))?;
    Ok(table)
}

/// Conditions of actual use over the episodes started by the end of the period: pathway,
/// route, frequency, indication within the framework's diseases or not, off-label axes (an
/// episode counts under each of its axes; `NONE` when prescribed within the label), RCP
/// opinion (`NONE` when none was recorded).
fn conditions_table(s: &Scoped, subject: &Subject, period: &Period) -> PolarsResult<DataFrame> {
    let (_, to) = period.epoch_days();
    let first = day("first_administration_date");
    let df = s
        .episodes
        .clone()
        .lazy()
        .filter(first.clone().is_not_null().and(first.lt_eq(lit(to))))
        .collect()?;
    let pathway = strings(&df, "pathway")?;
    let route = strings(&df, "route")?;
    let frequency = strings(&df, "dose_frequency")?;
    let orpha = strings(&df, "orpha_code")?;
    let axes = strings(&df, "off_label_axes")?;
    let rcp = strings(&df, "rcp_opinion")?;
    let covered: HashSet<&str> = subject.orpha_codes.iter().map(String::as_str).collect();
    let mut rows: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut add = |item: &str, value: String| *rows.entry((item.to_owned(), value)).or_default() += 1;
    let unknown = || "NOT_RECORDED".to_owned();
    for i in 0..df.height() {
        add("pathway", pathway[i].clone().unwrap_or_else(unknown));
        add("route", route[i].clone().unwrap_or_else(unknown));
        add("frequency", frequency[i].clone().unwrap_or_else(unknown));
        if !covered.is_empty() {
            let within = orpha[i].as_deref().is_some_and(|o| covered.contains(o));
            add(
                "indication",
                if within {
                    "WITHIN_FRAMEWORK"
                } else {
                    "OUTSIDE_FRAMEWORK"
                }
                .to_owned(),
            );
        }
        match axes[i].as_deref().filter(|a| !a.is_empty()) {
            Some(list) => {
                for axis in list.split('|') {
                    add("off_label_axis", axis.to_owned());
                }
            }
            None => add("off_label_axis", "NONE".to_owned()),
        }
        add("rcp_opinion", rcp[i].clone().unwrap_or_else(|| "NONE".to_owned()));
    }
    category_table("item", "episodes", rows)
}

/// Linear-interpolation quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Doses of the episodes started by the end of the period, per route and unit: episodes,
/// median and quartiles.
fn dosing_table(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let (_, to) = period.epoch_days();
    let first = day_values(&s.episodes, "first_administration_date")?;
    let route = strings(&s.episodes, "route")?;
    let unit = strings(&s.episodes, "dose_unit")?;
    let dose = s.episodes.column("dose")?.f64()?.clone();
    let mut groups: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for i in 0..s.episodes.height() {
        if first[i].is_none_or(|f| f > to) {
            continue;
        }
        if let (Some(r), Some(u), Some(d)) = (&route[i], &unit[i], dose.get(i)) {
            groups.entry((r.clone(), u.clone())).or_default().push(d);
        }
    }
    let mut stats: Vec<(String, String, i64, f64, f64, f64)> = Vec::new();
    for ((r, u), mut values) in groups {
        values.sort_by(f64::total_cmp);
        stats.push((
            r,
            u,
            values.len() as i64,
            quantile(&values, 0.5),
            quantile(&values, 0.25),
            quantile(&values, 0.75),
        ));
    }
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            "route".into(),
            stats.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "dose_unit".into(),
            stats.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "episodes".into(),
            stats.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "median_dose".into(),
            stats.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "q1_dose".into(),
            stats.iter().map(|r| r.4).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "q3_dose".into(),
            stats.iter().map(|r| r.5).collect::<Vec<_>>(),
        )),
    ])
}

/// Days from request to first administration of the episodes started in each window.
fn time_to_treatment_table(s: &Scoped, period: &Period, cumulative_from: i32) -> PolarsResult<DataFrame> {
    let request = day_values(&s.episodes, "request_date")?;
    let first = day_values(&s.episodes, "first_administration_date")?;
    let mut rows: Vec<(String, i64, f64, f64, f64)> = Vec::new();
    for (name, from, to) in windows(period, cumulative_from) {
        let mut days: Vec<f64> = (0..s.episodes.height())
            .filter_map(|i| match (request[i], first[i]) {
                (Some(r), Some(f)) if f >= from && f <= to => Some(f64::from(f - r)),
                _ => None,
            })
            .collect();
        days.sort_by(f64::total_cmp);
        rows.push((
            name.to_owned(),
            days.len() as i64,
            quantile(&days, 0.5),
            quantile(&days, 0.25),
            quantile(&days, 0.75),
        ));
    }
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            "window".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "episodes".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "median_days".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "q1_days".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "q3_days".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )),
    ])
}

/// Disease measures at baseline and 6, 12 and 24 months after each patient's first
/// administration (first episode of the subject): the baseline is the last measure within 90
/// days before it (or on its day); the value at a timepoint is the measure nearest to it within
/// its window (60, 90 and 120 days either side), visits up to the end of the period only. Per
/// measure and timepoint: patients with both (the baseline row: patients with a baseline), mean
/// baseline, mean value, mean change with its 95% interval (Student's t).
fn efficacy_table(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let (_, to) = period.epoch_days();
    let starts = initiations(s, period)?;
    let start_of: HashMap<String, i32> = strings(&starts, "episode_key")?
        .into_iter()
        .zip(day_values(&starts, "first")?)
        .filter_map(|(k, f)| Some((k?, f?)))
        .collect();
    let episode = strings(&s.measures, "episode_key")?;
    let visit = day_values(&s.measures, "visit_date")?;
    let code = strings(&s.measures, "measure_code")?;
    let value = s.measures.column("value")?.f64()?.clone();
    // (measure, episode) -> [(offset from the first administration, value)]
    let mut series: BTreeMap<(String, String), Vec<(i32, f64)>> = BTreeMap::new();
    for i in 0..s.measures.height() {
        let (Some(e), Some(v), Some(c), Some(x)) = (&episode[i], visit[i], &code[i], value.get(i)) else {
            continue;
        };
        let Some(&start) = start_of.get(e) else { continue };
        if v > to {
            continue;
        }
        series.entry((c.clone(), e.clone())).or_default().push((v - start, x));
    }
    // measure -> timepoint -> [(baseline, value)]
    let mut paired: BTreeMap<String, BTreeMap<u32, Vec<(f64, f64)>>> = BTreeMap::new();
    let mut baselines: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((measure, _), points) in &series {
        let baseline = points
            .iter()
            .filter(|(offset, _)| *offset <= 0 && *offset >= -BASELINE_DAYS)
            .max_by_key(|(offset, _)| *offset)
            .map(|(_, x)| *x);
        let Some(baseline) = baseline else { continue };
        baselines.entry(measure.clone()).or_default().push(baseline);
        for &(months, window) in EFFICACY_TIMEPOINTS {
            let target = (f64::from(months) * indicators::DAYS_PER_MONTH).round() as i32;
            let nearest = points
                .iter()
                .filter(|(offset, _)| *offset > 0 && (offset - target).abs() <= window)
                .min_by_key(|(offset, _)| ((offset - target).abs(), *offset))
                .map(|(_, x)| *x);
            if let Some(x) = nearest {
                paired
                    .entry(measure.clone())
                    .or_default()
                    .entry(months)
                    .or_default()
                    .push((baseline, x));
            }
        }
    }
    type Row = (
        String,
        String,
        i64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let mut rows: Vec<Row> = Vec::new();
    for (measure, values) in &baselines {
        let (mean, _) = stats::mean_with_t_interval(values);
        rows.push((
            measure.clone(),
            "baseline".into(),
            values.len() as i64,
            mean,
            None,
            None,
            None,
            None,
        ));
        for &(months, _) in EFFICACY_TIMEPOINTS {
            let Some(pairs) = paired.get(measure).and_then(|p| p.get(&months)) else {
                continue;
            };
            let base: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let later: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let change: Vec<f64> = pairs.iter().map(|p| p.1 - p.0).collect();
            let (change_mean, interval) = stats::mean_with_t_interval(&change);
            rows.push((
                measure.clone(),
                format!("M{months}"),
                pairs.len() as i64,
                stats::mean_with_t_interval(&base).0,
                Some(stats::mean_with_t_interval(&later).0),
                Some(change_mean),
                interval.map(|i| i.0),
                interval.map(|i| i.1),
            ));
        }
    }
    let f = |name: &str, v: Vec<Option<f64>>| Column::from(Series::new(name.into(), v));
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            "measure_code".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "timepoint".into(),
            rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "patients".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        f("baseline_mean", rows.iter().map(|r| Some(r.3)).collect()),
        f("value_mean", rows.iter().map(|r| r.4).collect()),
        f("change_mean", rows.iter().map(|r| r.5).collect()),
        f("change_ci_low", rows.iter().map(|r| r.6).collect()),
        f("change_ci_high", rows.iter().map(|r| r.7).collect()),
    ])
}

/// The last efficacy assessment in the period of each patient seen in it (latest visit of any
/// of the patient's episodes of the subject).
fn assessments_table(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let (from, to) = period.epoch_days();
    let df = s
        .follow_ups
        .clone()
        .lazy()
        .filter(in_window(day("visit_date"), from, to))
        .join(
            s.episodes
                .clone()
                .lazy()
                .select([col("episode_key"), col("patient_key")]),
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .sort(
            ["patient_key", "visit_date", "episode_key"],
            SortMultipleOptions::default(),
        )
        .group_by_stable([col("patient_key")])
        .agg([col("efficacy").last()])
        .group_by([col("efficacy").alias("assessment")])
        .agg([len().cast(DataType::Int64).alias("patients")])
        .sort(["assessment"], SortMultipleOptions::default())
        .collect()?;
    Ok(df)
}

/// Adverse events with onset in each window: all, serious, fatal, declared to
/// pharmacovigilance.
fn safety_summary_table(s: &Scoped, period: &Period, cumulative_from: i32) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(String, [i64; 4])> = Vec::new();
    for (name, from, to) in windows(period, cumulative_from) {
        let df = s
            .adverse_events
            .clone()
            .lazy()
            .filter(in_window(day("onset_date"), from, to))
            .select([
                len().cast(DataType::Int64).alias("all"),
                col("serious").cast(DataType::Int64).sum().alias("serious"),
                col("outcome")
                    .eq(lit("FATAL"))
                    .cast(DataType::Int64)
                    .sum()
                    .alias("fatal"),
                col("pv_declared").cast(DataType::Int64).sum().alias("declared"),
            ])
            .collect()?;
        let v = |c: &str| -> PolarsResult<i64> { Ok(df.column(c)?.i64()?.get(0).unwrap_or(0)) };
        rows.push((name.to_owned(), [v("all")?, v("serious")?, v("fatal")?, v("declared")?]));
    }
    let spec = TABLES
        .iter()
        .find(|(n, _)| *n == "safety_summary")
        .map(|(_, s)| s.counts)
        .unwrap_or(&[]);
    let mut columns = vec![Column::from(Series::new(
        "window".into(),
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
    ))];
    for (i, name) in spec.iter().enumerate() {
        columns.push(Column::from(Series::new(
            (*name).into(),
            rows.iter().map(|r| r.1[i]).collect::<Vec<_>>(),
        )));
    }
    DataFrame::new_infer_height(columns)
}

/// Serious adverse events with onset in the period, per ICH E2B seriousness criterion (an event
/// counts under each of its criteria; `NOT_RECORDED` when none was given).
fn seriousness_table(s: &Scoped, period: &Period) -> PolarsResult<DataFrame> {
    let (from, to) = period.epoch_days();
    let onset = day_values(&s.adverse_events, "onset_date")?;
    let serious = s.adverse_events.column("serious")?.bool()?.clone();
    let criteria = strings(&s.adverse_events, "seriousness")?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..s.adverse_events.height() {
        if !serious.get(i).unwrap_or(false) || onset[i].is_none_or(|d| d < from || d > to) {
            continue;
        }
        match criteria[i].as_deref().filter(|c| !c.is_empty()) {
            Some(list) => {
                for c in list.split('|') {
                    *counts.entry(c.to_owned()).or_default() += 1;
                }
            }
            None => *counts.entry("NOT_RECORDED".to_owned()).or_default() += 1,
        }
    }
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            "criterion".into(),
            counts.keys().cloned().collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "adverse_events".into(),
            counts.values().copied().collect::<Vec<_>>(),
        )),
    ])
}

fn compute(
    name: &str,
    s: &Scoped,
    subject: &Subject,
    period: &Period,
    cumulative_from: i32,
) -> PolarsResult<DataFrame> {
    let episodes = || s.episodes.clone().lazy();
    match name {
        "patients" => patients_table(s, period, cumulative_from),
        "characteristics" => characteristics_table(s, period),
        "conditions_of_use" => conditions_table(s, subject, period),
        "dosing" => dosing_table(s, period),
        "time_to_treatment" => time_to_treatment_table(s, period, cumulative_from),
        "efficacy" => efficacy_table(s, period),
        "efficacy_assessments" => assessments_table(s, period),
        "safety" | "safety_pt" => {
            let level = if name == "safety" {
                indicators::MeddraLevel::SystemOrganClass
            } else {
                indicators::MeddraLevel::PreferredTerm
            };
            let counts = indicators::safety(episodes(), s.adverse_events.clone().lazy(), period, level).collect()?;
            indicators::with_poisson_rates(counts, &["adverse_events", "serious_adverse_events"], "patient_years")
        }
        "safety_summary" => safety_summary_table(s, period, cumulative_from),
        "seriousness" => seriousness_table(s, period),
        "discontinuations" => indicators::discontinuations(episodes(), period).collect(),
        "completeness" => indicators::completeness(
            episodes(),
            s.patients.clone().lazy(),
            s.follow_ups.clone().lazy(),
            s.adverse_events.clone().lazy(),
            period,
        )?
        .collect(),
        "overdue_follow_ups" => indicators::overdue_follow_ups(
            episodes(),
            s.cohorts.clone().lazy(),
            s.follow_ups.clone().lazy(),
            period,
        )
        .collect(),
        other => Err(PolarsError::ComputeError(
            format!("unknown synthesis table {other}").into(),
        )),
    }
}

/// The raw (unsuppressed) tables of a synthesis, in [`TABLES`] order, with its subject and the
/// start of its cumulative window.
pub fn compute_tables(
    snapshot: &Snapshot,
    target: &Target,
    period: &Period,
) -> Result<(Subject, i32, Vec<DataFrame>), SynthesisError> {
    compute_tables_observed(snapshot, target, period, &|_| {})
}

fn compute_tables_observed(
    snapshot: &Snapshot,
    target: &Target,
    period: &Period,
    observe: &dyn Fn(Stage<'_>),
) -> Result<(Subject, i32, Vec<DataFrame>), SynthesisError> {
    let subject = subject(snapshot, target)?;
    let s = scoped(snapshot, &subject)?;
    let first_request = day_values(&s.episodes, "request_date")?.into_iter().flatten().min();
    let (from, _) = period.epoch_days();
    let cumulative_from = subject.in_force.or(first_request).unwrap_or(from).min(from);
    let mut tables = Vec::with_capacity(TABLES.len());
    for (index, (name, _)) in TABLES.iter().enumerate() {
        observe(Stage::Table {
            name,
            index: index + 1,
            total: TABLES.len(),
        });
        let span = tracing::info_span!("synthesis.table", table = *name);
        let _entered = span.enter();
        tables.push(compute(name, &s, &subject, period, cumulative_from)?);
    }
    Ok((subject, cumulative_from, tables))
}

/// Computes, suppresses and writes the synthesis from an opened snapshot.
pub fn synthesise(snapshot: &Snapshot, options: &SynthesisOptions) -> Result<SynthesisManifest, SynthesisError> {
    synthesise_observed(snapshot, options, &|_| {})
}

fn synthesise_observed(
    snapshot: &Snapshot,
    options: &SynthesisOptions,
    observe: &dyn Fn(Stage<'_>),
) -> Result<SynthesisManifest, SynthesisError> {
    let tables_dir = options.out.join("tables");
    std::fs::create_dir_all(&tables_dir).map_err(|e| ReportError::Io(tables_dir.clone(), e))?;
    let period = &options.period;
    let (subject, cumulative_from, computed) = compute_tables_observed(snapshot, &options.target, period, observe)?;
    let published = report::protect_tables(TABLES, &computed, options.threshold)?;
    let mut suppression = BTreeMap::new();
    let mut outputs = Vec::new();
    let mut published_tables = Vec::with_capacity(TABLES.len());
    let names = crate::names::Names::load(snapshot)?;
    for ((name, _), (table, summary)) in TABLES.iter().zip(published) {
        // Names beside codes, once suppressed.
        let mut table = names.annotate(table)?;
        suppression.insert((*name).to_owned(), summary);
        outputs.push(report::write_csv(&mut table, &tables_dir, name, options.csv)?);
        outputs.push(report::write_parquet(&mut table, &tables_dir, name)?);
        published_tables.push(((*name).to_owned(), table));
    }
    let cumulative_from = day_to_date(cumulative_from);
    let mut manifest = SynthesisManifest {
        target: options.target.clone(),
        title: subject.title.clone(),
        pathway: subject.pathway.clone(),
        drug_atc: subject.drug_atc.clone(),
        protocol_type: subject.protocol_type.clone(),
        protocol_version: subject.protocol_version.clone(),
        decision_reference: subject.decision_reference.clone(),
        cohorts: subject.cohort_names.clone(),
        period: period.label(),
        period_from: period.from,
        period_to: period.to,
        cumulative_from,
        as_of: snapshot.manifest.as_of,
        snapshot_hash: snapshot.manifest.content_hash.clone(),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        suppression_threshold: options.threshold,
        language: options.language,
        suppression,
        outputs,
    };
    let xlsx_path = options.out.join("synthesis.xlsx");
    let readme = crate::xlsx::Readme {
        language: options.language,
        title: match options.language {
            Language::Fr => "Synthèse périodique : tableaux",
            Language::En => "Periodic synthesis: tables",
        },
        tables: published_tables
            .iter()
            .map(|(name, _)| {
                let (title, definition) = crate::synthesis_doc::table_text(options.language, name);
                (name.as_str(), title, definition)
            })
            .collect(),
    };
    crate::xlsx::write(&xlsx_path, &published_tables, snapshot.manifest.as_of, &readme)
        .map_err(|e| ReportError::Io(xlsx_path.clone(), std::io::Error::other(e)))?;
    manifest
        .outputs
        .push(whole_file(&options.out, "synthesis.xlsx", published_tables.len())?);
    let html_path = options.out.join("synthesis.html");
    let docx_path = options.out.join("synthesis.docx");
    {
        let document = crate::synthesis_doc::Document::new(&manifest, &published_tables);
        std::fs::write(&html_path, document.html()).map_err(|e| ReportError::Io(html_path.clone(), e))?;
        document
            .write_docx(&docx_path)
            .map_err(|e| ReportError::Io(docx_path.clone(), e))?;
    }
    manifest
        .outputs
        .push(whole_file(&options.out, "synthesis.html", published_tables.len())?);
    manifest
        .outputs
        .push(whole_file(&options.out, "synthesis.docx", published_tables.len())?);
    let path = options.out.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| ReportError::Io(path.clone(), e.into()))?;
    std::fs::write(&path, text).map_err(|e| ReportError::Io(path, e))?;
    Ok(manifest)
}

fn whole_file(dir: &Path, file: &str, tables: usize) -> Result<OutputFile, ReportError> {
    Ok(OutputFile {
        file: file.to_owned(),
        rows: tables as u64,
        sha256: snapshot::sha256_file(&dir.join(file))?,
    })
}

fn day_to_date(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day + 719_163).unwrap_or_default()
}

/// The day number of a date (days since 1970-01-01), as the snapshot stores them.
pub fn day_of(date: NaiveDate) -> i32 {
    epoch_days(date)
}
