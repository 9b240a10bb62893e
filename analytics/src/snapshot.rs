//! The snapshot: the registry as it was known at a cutoff, pseudonymised, without the patients
//! who objected to the reuse of their data, written as Parquet with a manifest.
//!
//! Records are read through the store in batches of [`BATCH`] (`Store::scan_as_of`) and each
//! batch is turned into columns and appended to its Parquet file as a row group, so memory stays
//! bounded whatever the size of the registry. Patient identifiers are replaced by keys derived
//! with a salt drawn for this snapshot and kept nowhere, so a snapshot cannot be joined back to
//! the registry; within the snapshot the keys are consistent.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::model::{AdverseEvent, Authorisation, Centre, Cohort, Episode, FollowUp, Framework, Patient};
use observatory_store::{Store, Versioned};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::period::epoch_days;

/// Records read and written per batch.
pub const BATCH: u32 = 10_000;

/// Tables of a snapshot, each `<name>.parquet`.
pub const TABLES: &[&str] = &[
    "patients",
    "centres",
    "cohorts",
    "frameworks",
    "episodes",
    "authorisations",
    "authorisation_events",
    "follow_ups",
    "measures",
    "adverse_events",
    "labels",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Registry records as they were known at this instant.
    pub as_of: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// SHA-256 of each Parquet file.
    pub files: BTreeMap<String, String>,
    /// SHA-256 over the file hashes in table order: names the snapshot's content.
    pub content_hash: String,
    /// Patients left out because they objected to the reuse of their data.
    pub excluded_patients: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] observatory_store::StoreError),
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("snapshot manifest {0}: {1}")]
    Manifest(PathBuf, #[source] serde_json::Error),
}

type SinkResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn date_col(name: &str, v: Vec<Option<i32>>) -> PolarsResult<Column> {
    Series::new(name.into(), v).cast(&DataType::Date).map(Column::from)
}

fn str_col(name: &str, v: Vec<Option<String>>) -> Column {
    Column::from(Series::new(name.into(), v))
}

fn days(d: Option<NaiveDate>) -> Option<i32> {
    d.map(epoch_days)
}

/// Months since year 0 of a year-month (year * 12 + month - 1), for ages in months.
fn month_index(ym: &observatory_domain::model::YearMonth) -> Option<i32> {
    use chrono::Datelike;
    ym.first_day().map(|d| d.year() * 12 + d.month0() as i32)
}

/// Appends batches to one Parquet file.
struct TableWriter {
    path: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    rows: u64,
    schema: Schema,
}

impl TableWriter {
    fn new(dir: &Path, name: &str, schema: Schema) -> Self {
        Self {
            path: dir.join(format!("{name}.parquet")),
            writer: None,
            rows: 0,
            schema,
        }
    }

    fn write(&mut self, df: DataFrame) -> PolarsResult<()> {
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(|e| PolarsError::IO {
                error: e.into(),
                msg: None,
            })?;
            self.writer = Some(ParquetWriter::new(file).batched(&self.schema)?);
        }
        self.rows += df.height() as u64;
        if let Some(w) = self.writer.as_mut() {
            w.write_batch(&df)?;
        }
        Ok(())
    }

    /// Closes the file; a table with no row still gets a file with its schema.
    fn finish(mut self) -> PolarsResult<u64> {
        match self.writer.take() {
            Some(w) => {
                w.finish()?;
            }
            None => {
                let file = File::create(&self.path).map_err(|e| PolarsError::IO {
                    error: e.into(),
                    msg: None,
                })?;
                let mut empty = DataFrame::empty_with_schema(&self.schema);
                ParquetWriter::new(file).finish(&mut empty)?;
            }
        }
        Ok(self.rows)
    }
}

fn schema(fields: &[(&str, DataType)]) -> Schema {
    Schema::from_iter(fields.iter().map(|(n, t)| Field::new((*n).into(), t.clone())))
}

/// Derives a snapshot key from a registry id.
struct Keyer([u8; 32]);

impl Keyer {
    fn key(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(id.as_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

/// Extracts the snapshot at `as_of` into `dir` (created if needed) and writes its manifest.
pub async fn extract(store: &Store, as_of: DateTime<Utc>, dir: &Path) -> Result<SnapshotManifest, SnapshotError> {
    std::fs::create_dir_all(dir).map_err(|e| SnapshotError::Io(dir.to_owned(), e))?;
    let keyer = Keyer(rand::random());
    let mut rows = BTreeMap::new();

    // One person enrolled by several scopes has several patient records: all are keyed as the
    // first, the person's row is written once (the first record's), and the person is left out
    // if any record objects.
    let mut first_of: HashMap<String, String> = HashMap::new();
    let mut objecting: HashSet<String> = HashSet::new();
    for (id, first, objects) in store.people_enrolled_twice(as_of).await? {
        if objects {
            objecting.insert(first.clone());
        }
        first_of.insert(id, first);
    }
    // Borrowed, not allocated: it runs once per patient and per episode.
    fn person<'a>(first_of: &'a HashMap<String, String>, id: &'a str) -> &'a str {
        first_of.get(id).map_or(id, String::as_str)
    }

    // Patients first: who objected decides what else is left out.
    let mut excluded: HashSet<String> = HashSet::new();
    let mut patients = TableWriter::new(
        dir,
        "patients",
        schema(&[
            ("patient_key", DataType::String),
            ("sex", DataType::String),
            ("birth_year_month", DataType::String),
            ("birth_month_index", DataType::Int32),
            ("region_code", DataType::String),
            ("vital_status", DataType::String),
        ]),
    );
    store
        .scan_as_of::<Patient>(as_of, BATCH, |batch: Vec<Versioned<Patient>>| -> SinkResult {
            let objects =
                |p: &Versioned<Patient>| p.record.objects_to_reuse || objecting.contains(person(&first_of, &p.meta.id));
            // A record merged into another (as known at the cutoff) is that other's person:
            // its treatments moved there; it is not a patient of its own.
            let kept: Vec<&Versioned<Patient>> = batch
                .iter()
                .filter(|p| !objects(p) && p.record.merged_into.is_none() && person(&first_of, &p.meta.id) == p.meta.id)
                .collect();
            for p in batch.iter().filter(|p| objects(p)) {
                excluded.insert(p.meta.id.clone());
            }
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "patient_key",
                    kept.iter()
                        .map(|p| Some(keyer.key(person(&first_of, &p.meta.id))))
                        .collect(),
                ),
                str_col(
                    "sex",
                    kept.iter().map(|p| Some(p.record.sex.code().to_owned())).collect(),
                ),
                str_col(
                    "birth_year_month",
                    kept.iter()
                        .map(|p| Some(p.record.birth_year_month.to_string()))
                        .collect(),
                ),
                Column::from(Series::new(
                    "birth_month_index".into(),
                    kept.iter()
                        .map(|p| month_index(&p.record.birth_year_month))
                        .collect::<Vec<_>>(),
                )),
                str_col(
                    "region_code",
                    kept.iter()
                        .map(|p| p.record.region.as_ref().map(|r| r.to_string()))
                        .collect(),
                ),
                str_col(
                    "vital_status",
                    kept.iter()
                        .map(|p| Some(p.record.vital_status.code().to_owned()))
                        .collect(),
                ),
            ])?;
            patients.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("patients".to_owned(), patients.finish()?);

    let mut centres = TableWriter::new(
        dir,
        "centres",
        schema(&[
            ("centre_finess", DataType::String),
            ("centre_type", DataType::String),
            ("region_code", DataType::String),
            // Its filières' codes, `;`-separated, in code order.
            ("filieres", DataType::String),
        ]),
    );
    let mut centre_names: Vec<(String, String)> = Vec::new();
    store
        .scan_as_of::<Centre>(as_of, BATCH, |batch: Vec<Versioned<Centre>>| -> SinkResult {
            centre_names.extend(
                batch
                    .iter()
                    .map(|c| (c.record.finess.to_string(), c.record.name.clone())),
            );
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "centre_finess",
                    batch.iter().map(|c| Some(c.record.finess.to_string())).collect(),
                ),
                str_col(
                    "centre_type",
                    batch
                        .iter()
                        .map(|c| Some(c.record.centre_type.code().to_owned()))
                        .collect(),
                ),
                str_col(
                    "region_code",
                    batch.iter().map(|c| Some(c.record.region.to_string())).collect(),
                ),
                str_col(
                    "filieres",
                    batch
                        .iter()
                        .map(|c| {
                            let codes: Vec<&str> = c.record.filieres.iter().map(|f| f.as_str()).collect();
                            Some(codes.join(";"))
                        })
                        .collect(),
                ),
            ])?;
            centres.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("centres".to_owned(), centres.finish()?);

    let mut cohorts = TableWriter::new(
        dir,
        "cohorts",
        schema(&[
            ("cohort_id", DataType::String),
            ("cohort", DataType::String),
            ("filiere", DataType::String),
            ("pathway", DataType::String),
            ("drug_atc", DataType::String),
            ("framework_id", DataType::String),
            ("follow_up_months", DataType::Int32),
            ("status", DataType::String),
        ]),
    );
    store
        .scan_as_of::<Cohort>(as_of, BATCH, |batch: Vec<Versioned<Cohort>>| -> SinkResult {
            let df = DataFrame::new_infer_height(vec![
                str_col("cohort_id", batch.iter().map(|c| Some(c.meta.id.clone())).collect()),
                str_col("cohort", batch.iter().map(|c| Some(c.record.name.clone())).collect()),
                str_col(
                    "filiere",
                    batch.iter().map(|c| Some(c.record.filiere.to_string())).collect(),
                ),
                str_col(
                    "pathway",
                    batch.iter().map(|c| Some(c.record.pathway.code().to_owned())).collect(),
                ),
                str_col(
                    "drug_atc",
                    batch.iter().map(|c| Some(c.record.drug_atc.to_string())).collect(),
                ),
                str_col(
                    "framework_id",
                    batch
                        .iter()
                        .map(|c| c.record.framework_id.as_ref().map(|f| f.to_string()))
                        .collect(),
                ),
                Column::from(Series::new(
                    "follow_up_months".into(),
                    batch
                        .iter()
                        .map(|c| i32::try_from(c.record.follow_up_months).unwrap_or(i32::MAX))
                        .collect::<Vec<_>>(),
                )),
                str_col(
                    "status",
                    batch.iter().map(|c| Some(c.record.status.code().to_owned())).collect(),
                ),
            ])?;
            cohorts.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("cohorts".to_owned(), cohorts.finish()?);

    let mut frameworks = TableWriter::new(
        dir,
        "frameworks",
        schema(&[
            ("framework_id", DataType::String),
            ("pathway", DataType::String),
            ("drug_atc", DataType::String),
            ("status", DataType::String),
            ("valid_from", DataType::Date),
            ("valid_to", DataType::Date),
            ("decision_reference", DataType::String),
            // The diseases (ORPHA codes, `|`-separated) it covers, and its protocol.
            ("orpha_codes", DataType::String),
            ("indication", DataType::String),
            ("protocol_type", DataType::String),
            ("protocol_version", DataType::String),
        ]),
    );
    store
        .scan_as_of::<Framework>(as_of, BATCH, |batch: Vec<Versioned<Framework>>| -> SinkResult {
            let df = DataFrame::new_infer_height(vec![
                str_col("framework_id", batch.iter().map(|f| Some(f.meta.id.clone())).collect()),
                str_col(
                    "pathway",
                    batch.iter().map(|f| Some(f.record.pathway.code().to_owned())).collect(),
                ),
                str_col(
                    "drug_atc",
                    batch.iter().map(|f| Some(f.record.drug_atc.to_string())).collect(),
                ),
                str_col(
                    "status",
                    batch.iter().map(|f| Some(f.record.status.code().to_owned())).collect(),
                ),
                date_col(
                    "valid_from",
                    batch.iter().map(|f| days(Some(f.record.valid_from))).collect(),
                )?,
                date_col("valid_to", batch.iter().map(|f| days(f.record.valid_to)).collect())?,
                str_col(
                    "decision_reference",
                    batch
                        .iter()
                        .map(|f| Some(f.record.decision_reference.clone()))
                        .collect(),
                ),
                str_col(
                    "orpha_codes",
                    batch
                        .iter()
                        .map(|f| {
                            Some(
                                f.record
                                    .orpha_codes
                                    .iter()
                                    .map(|o| o.to_string())
                                    .collect::<Vec<_>>()
                                    .join("|"),
                            )
                        })
                        .collect(),
                ),
                str_col(
                    "indication",
                    batch.iter().map(|f| Some(f.record.indication.clone())).collect(),
                ),
                str_col(
                    "protocol_type",
                    batch
                        .iter()
                        .map(|f| Some(f.record.protocol_type.code().to_owned()))
                        .collect(),
                ),
                str_col(
                    "protocol_version",
                    batch.iter().map(|f| Some(f.record.protocol_version.clone())).collect(),
                ),
            ])?;
            frameworks.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("frameworks".to_owned(), frameworks.finish()?);

    let mut excluded_episodes: HashSet<String> = HashSet::new();
    let mut episodes = TableWriter::new(
        dir,
        "episodes",
        schema(&[
            ("episode_key", DataType::String),
            ("patient_key", DataType::String),
            ("cohort_id", DataType::String),
            ("pathway", DataType::String),
            ("drug_atc", DataType::String),
            ("orpha_code", DataType::String),
            ("centre_finess", DataType::String),
            ("status", DataType::String),
            ("request_date", DataType::Date),
            ("decision_date", DataType::Date),
            ("first_administration_date", DataType::Date),
            ("end_date", DataType::Date),
            ("stop_reason", DataType::String),
            ("previous_episode_key", DataType::String),
            // A one-shot treatment (a gene therapy): given once, then followed.
            ("single_administration", DataType::Boolean),
            // Whether the dose, route and frequency were recorded.
            ("dosage_recorded", DataType::Boolean),
            ("dose", DataType::Float64),
            ("dose_unit", DataType::String),
            ("dose_frequency", DataType::String),
            ("route", DataType::String),
            // Off-label axes, `|`-separated; the RCP opinion recorded on the episode.
            ("off_label_axes", DataType::String),
            ("rcp_opinion", DataType::String),
        ]),
    );
    store
        .scan_as_of::<Episode>(as_of, BATCH, |batch: Vec<Versioned<Episode>>| -> SinkResult {
            for e in batch.iter().filter(|e| excluded.contains(e.record.patient_id.as_str())) {
                excluded_episodes.insert(e.meta.id.clone());
            }
            let kept: Vec<&Versioned<Episode>> = batch
                .iter()
                .filter(|e| !excluded.contains(e.record.patient_id.as_str()))
                .collect();
            let e = |f: &dyn Fn(&Episode) -> Option<String>| kept.iter().map(|v| f(&v.record)).collect::<Vec<_>>();
            let d =
                |f: &dyn Fn(&Episode) -> Option<NaiveDate>| kept.iter().map(|v| days(f(&v.record))).collect::<Vec<_>>();
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    kept.iter().map(|v| Some(keyer.key(&v.meta.id))).collect(),
                ),
                str_col(
                    "patient_key",
                    e(&|r| Some(keyer.key(person(&first_of, r.patient_id.as_str())))),
                ),
                str_col("cohort_id", e(&|r| Some(r.cohort_id.to_string()))),
                str_col("pathway", e(&|r| Some(r.pathway.code().to_owned()))),
                str_col("drug_atc", e(&|r| Some(r.drug_atc.to_string()))),
                str_col("orpha_code", e(&|r| Some(r.indication.to_string()))),
                str_col("centre_finess", e(&|r| Some(r.centre_finess.to_string()))),
                str_col("status", e(&|r| Some(r.status.code().to_owned()))),
                date_col("request_date", d(&|r| Some(r.request_date)))?,
                date_col("decision_date", d(&|r| r.decision_date))?,
                date_col("first_administration_date", d(&|r| r.first_administration_date))?,
                date_col("end_date", d(&|r| r.end_date))?,
                str_col("stop_reason", e(&|r| r.stop_reason.map(|s| s.code().to_owned()))),
                str_col(
                    "previous_episode_key",
                    e(&|r| r.previous_episode_id.as_ref().map(|p| keyer.key(p.as_str()))),
                ),
                Column::new(
                    "single_administration".into(),
                    kept.iter()
                        .map(|v| v.record.single_administration)
                        .collect::<Vec<bool>>(),
                ),
                Column::new(
                    "dosage_recorded".into(),
                    kept.iter().map(|v| v.record.dosage.is_some()).collect::<Vec<bool>>(),
                ),
                Column::new(
                    "dose".into(),
                    kept.iter()
                        .map(|v| v.record.dosage.as_ref().map(|d| d.dose))
                        .collect::<Vec<Option<f64>>>(),
                ),
                str_col("dose_unit", e(&|r| r.dosage.as_ref().map(|d| d.unit.clone()))),
                str_col("dose_frequency", e(&|r| r.dosage.as_ref().map(|d| d.frequency.clone()))),
                str_col("route", e(&|r| r.dosage.as_ref().map(|d| d.route.code().to_owned()))),
                str_col(
                    "off_label_axes",
                    e(&|r| {
                        r.off_label
                            .as_ref()
                            .map(|o| o.axes.iter().map(|a| a.code()).collect::<Vec<_>>().join("|"))
                    }),
                ),
                str_col(
                    "rcp_opinion",
                    e(&|r| r.rcp.as_ref().map(|x| x.opinion.code().to_owned())),
                ),
            ])?;
            episodes.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("episodes".to_owned(), episodes.finish()?);

    let mut authorisations = TableWriter::new(
        dir,
        "authorisations",
        schema(&[
            ("episode_key", DataType::String),
            ("pathway", DataType::String),
            ("status", DataType::String),
            ("submitted_date", DataType::Date),
            ("decision_date", DataType::Date),
            ("valid_from", DataType::Date),
            ("valid_to", DataType::Date),
            ("renewals", DataType::Int32),
        ]),
    );
    store
        .scan_as_of::<Authorisation>(as_of, BATCH, |batch: Vec<Versioned<Authorisation>>| -> SinkResult {
            let kept: Vec<&Authorisation> = batch
                .iter()
                .map(|v| &v.record)
                .filter(|a| !excluded.contains(a.patient_id.as_str()))
                .collect();
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    kept.iter().map(|a| Some(keyer.key(a.episode_id.as_str()))).collect(),
                ),
                str_col(
                    "pathway",
                    kept.iter().map(|a| Some(a.pathway.code().to_owned())).collect(),
                ),
                str_col(
                    "status",
                    kept.iter().map(|a| Some(a.status.code().to_owned())).collect(),
                ),
                date_col(
                    "submitted_date",
                    kept.iter().map(|a| days(Some(a.submitted_date))).collect(),
                )?,
                date_col("decision_date", kept.iter().map(|a| days(a.decision_date)).collect())?,
                date_col("valid_from", kept.iter().map(|a| days(a.valid_from)).collect())?,
                date_col("valid_to", kept.iter().map(|a| days(a.valid_to)).collect())?,
                Column::from(Series::new(
                    "renewals".into(),
                    kept.iter()
                        .map(|a| i32::try_from(a.renewals).unwrap_or(i32::MAX))
                        .collect::<Vec<_>>(),
                )),
            ])?;
            authorisations.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("authorisations".to_owned(), authorisations.finish()?);

    // Every step of every authorisation as known at the cutoff: requests, grants, renewals and
    // refusals are counted from these, since the current version keeps only the last decision.
    let mut events = TableWriter::new(
        dir,
        "authorisation_events",
        schema(&[
            ("episode_key", DataType::String),
            ("pathway", DataType::String),
            ("version", DataType::Int64),
            ("status", DataType::String),
            ("submitted_date", DataType::Date),
            ("decision_date", DataType::Date),
        ]),
    );
    store
        .scan_history_as_of::<Authorisation>(as_of, BATCH, |batch: Vec<Versioned<Authorisation>>| -> SinkResult {
            let kept: Vec<&Versioned<Authorisation>> = batch
                .iter()
                .filter(|v| !excluded.contains(v.record.patient_id.as_str()))
                .collect();
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    kept.iter()
                        .map(|v| Some(keyer.key(v.record.episode_id.as_str())))
                        .collect(),
                ),
                str_col(
                    "pathway",
                    kept.iter().map(|v| Some(v.record.pathway.code().to_owned())).collect(),
                ),
                Column::from(Series::new(
                    "version".into(),
                    kept.iter().map(|v| v.meta.version).collect::<Vec<_>>(),
                )),
                str_col(
                    "status",
                    kept.iter().map(|v| Some(v.record.status.code().to_owned())).collect(),
                ),
                date_col(
                    "submitted_date",
                    kept.iter().map(|v| days(Some(v.record.submitted_date))).collect(),
                )?,
                date_col(
                    "decision_date",
                    kept.iter().map(|v| days(v.record.decision_date)).collect(),
                )?,
            ])?;
            events.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("authorisation_events".to_owned(), events.finish()?);

    let mut measures = TableWriter::new(
        dir,
        "measures",
        schema(&[
            ("episode_key", DataType::String),
            ("visit_date", DataType::Date),
            ("measure_code", DataType::String),
            ("value", DataType::Float64),
        ]),
    );
    let mut follow_ups = TableWriter::new(
        dir,
        "follow_ups",
        schema(&[
            ("episode_key", DataType::String),
            ("visit_date", DataType::Date),
            ("efficacy", DataType::String),
            ("adherence", DataType::String),
        ]),
    );
    store
        .scan_as_of::<FollowUp>(as_of, BATCH, |batch: Vec<Versioned<FollowUp>>| -> SinkResult {
            let kept: Vec<&FollowUp> = batch
                .iter()
                .map(|v| &v.record)
                .filter(|f| !excluded_episodes.contains(f.episode_id.as_str()))
                .collect();
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    kept.iter().map(|f| Some(keyer.key(f.episode_id.as_str()))).collect(),
                ),
                date_col("visit_date", kept.iter().map(|f| days(Some(f.visit_date))).collect())?,
                str_col(
                    "efficacy",
                    kept.iter().map(|f| Some(f.efficacy.code().to_owned())).collect(),
                ),
                str_col(
                    "adherence",
                    kept.iter().map(|f| Some(f.adherence.code().to_owned())).collect(),
                ),
            ])?;
            follow_ups.write(df)?;
            let taken: Vec<(&FollowUp, &observatory_domain::model::Measure)> = kept
                .iter()
                .flat_map(|f| f.measures.iter().map(move |m| (*f, m)))
                .collect();
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    taken
                        .iter()
                        .map(|(f, _)| Some(keyer.key(f.episode_id.as_str())))
                        .collect(),
                ),
                date_col(
                    "visit_date",
                    taken.iter().map(|(f, _)| days(Some(f.visit_date))).collect(),
                )?,
                str_col(
                    "measure_code",
                    taken.iter().map(|(_, m)| Some(m.code.to_string())).collect(),
                ),
                Column::new("value".into(), taken.iter().map(|(_, m)| m.value).collect::<Vec<f64>>()),
            ])?;
            measures.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("follow_ups".to_owned(), follow_ups.finish()?);
    rows.insert("measures".to_owned(), measures.finish()?);

    let mut adverse_events = TableWriter::new(
        dir,
        "adverse_events",
        schema(&[
            ("episode_key", DataType::String),
            ("onset_date", DataType::Date),
            ("meddra_pt_code", DataType::String),
            ("meddra_soc_code", DataType::String),
            ("serious", DataType::Boolean),
            ("outcome", DataType::String),
            ("causality", DataType::String),
            ("pv_declared", DataType::Boolean),
            // ICH E2B seriousness criteria, `|`-separated.
            ("seriousness", DataType::String),
        ]),
    );
    store
        .scan_as_of::<AdverseEvent>(as_of, BATCH, |batch: Vec<Versioned<AdverseEvent>>| -> SinkResult {
            let kept: Vec<&AdverseEvent> = batch
                .iter()
                .map(|v| &v.record)
                .filter(|a| !excluded_episodes.contains(a.episode_id.as_str()))
                .collect();
            let flag = |name: &str, f: &dyn Fn(&AdverseEvent) -> bool| {
                Column::from(Series::new(name.into(), kept.iter().map(|a| f(a)).collect::<Vec<_>>()))
            };
            let df = DataFrame::new_infer_height(vec![
                str_col(
                    "episode_key",
                    kept.iter().map(|a| Some(keyer.key(a.episode_id.as_str()))).collect(),
                ),
                date_col("onset_date", kept.iter().map(|a| days(Some(a.onset_date))).collect())?,
                str_col(
                    "meddra_pt_code",
                    kept.iter().map(|a| Some(a.meddra_pt.to_string())).collect(),
                ),
                str_col(
                    "meddra_soc_code",
                    kept.iter()
                        .map(|a| a.meddra_soc.as_ref().map(|s| s.to_string()))
                        .collect(),
                ),
                flag("serious", &|a| a.serious),
                str_col(
                    "outcome",
                    kept.iter().map(|a| Some(a.outcome.code().to_owned())).collect(),
                ),
                str_col(
                    "causality",
                    kept.iter().map(|a| Some(a.causality.code().to_owned())).collect(),
                ),
                flag("pv_declared", &|a| a.pv_declaration_date.is_some()),
                str_col(
                    "seriousness",
                    kept.iter()
                        .map(|a| {
                            Some(
                                a.details
                                    .seriousness
                                    .iter()
                                    .map(|c| c.code())
                                    .collect::<Vec<_>>()
                                    .join("|"),
                            )
                        })
                        .collect(),
                ),
            ])?;
            adverse_events.write(df)?;
            Ok(())
        })
        .await?;
    rows.insert("adverse_events".to_owned(), adverse_events.finish()?);

    // The names of the codes the tables use, so that published tables show them beside their
    // codes: drugs, diseases and MedDRA terms from the reference catalogue as it stands, centres
    // as they were known at the cutoff.
    let catalogue = store.catalogue().await?;
    let used = |table: &str, columns: &[&str]| -> Result<std::collections::BTreeSet<String>, SnapshotError> {
        let path = dir.join(format!("{table}.parquet"));
        let mut codes = std::collections::BTreeSet::new();
        for column in columns {
            let df = LazyFrame::scan_parquet(
                PlRefPath::new(path.to_string_lossy().as_ref()),
                ScanArgsParquet::default(),
            )?
            .select([col(*column).cast(DataType::String)])
            .unique(None, UniqueKeepStrategy::First)
            .collect()?;
            let values = df.column(column)?.str()?.clone();
            codes.extend(
                values
                    .iter()
                    .flatten()
                    .flat_map(|v| v.split('|').map(str::to_owned).collect::<Vec<_>>()),
            );
        }
        codes.retain(|c| !c.is_empty());
        Ok(codes)
    };
    use observatory_domain::catalogue::{Entry, EntryKind};
    let name_of = |kind: EntryKind, code: &str| -> Option<String> {
        match catalogue.entry(kind, code)? {
            Entry::Disease(d) => Some(d.name.clone()),
            Entry::Drug(d) => Some(d.name.clone()),
            Entry::Meddra(t) => Some(t.name.clone()),
            Entry::Speciality(_) => None,
        }
    };
    let mut label_rows: Vec<(&str, String, String)> = Vec::new();
    for code in used("episodes", &["drug_atc"])?
        .into_iter()
        .chain(used("cohorts", &["drug_atc"])?)
    {
        if let Some(name) = name_of(EntryKind::Drug, &code) {
            label_rows.push(("drug", code, name));
        }
    }
    for code in used("episodes", &["orpha_code"])?
        .into_iter()
        .chain(used("frameworks", &["orpha_codes"])?)
    {
        if let Some(name) = name_of(EntryKind::Disease, &code) {
            label_rows.push(("disease", code, name));
        }
    }
    for code in used("adverse_events", &["meddra_soc_code"])? {
        if let Some(name) = name_of(EntryKind::MeddraSoc, &code) {
            label_rows.push(("meddra_soc", code, name));
        }
    }
    for code in used("adverse_events", &["meddra_pt_code"])? {
        if let Some(name) = name_of(EntryKind::MeddraPt, &code) {
            label_rows.push(("meddra_pt", code, name));
        }
    }
    label_rows.extend(centre_names.into_iter().map(|(code, name)| ("centre", code, name)));
    label_rows.sort();
    label_rows.dedup();
    let mut labels = TableWriter::new(
        dir,
        "labels",
        schema(&[
            ("kind", DataType::String),
            ("code", DataType::String),
            ("name", DataType::String),
        ]),
    );
    labels.write(DataFrame::new_infer_height(vec![
        str_col("kind", label_rows.iter().map(|r| Some(r.0.to_owned())).collect()),
        str_col("code", label_rows.iter().map(|r| Some(r.1.clone())).collect()),
        str_col("name", label_rows.iter().map(|r| Some(r.2.clone())).collect()),
    ])?)?;
    rows.insert("labels".to_owned(), labels.finish()?);

    let mut files = BTreeMap::new();
    let mut all = Sha256::new();
    for table in TABLES {
        let path = dir.join(format!("{table}.parquet"));
        let hash = sha256_file(&path)?;
        all.update(hash.as_bytes());
        files.insert(format!("{table}.parquet"), hash);
    }
    let manifest = SnapshotManifest {
        as_of,
        created_at: Utc::now(),
        rows,
        files,
        content_hash: hex::encode(all.finalize()),
        excluded_patients: excluded
            .iter()
            .map(|id| person(&first_of, id))
            .collect::<HashSet<_>>()
            .len() as u64,
    };
    let path = dir.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| SnapshotError::Manifest(path.clone(), e))?;
    std::fs::write(&path, text).map_err(|e| SnapshotError::Io(path, e))?;
    Ok(manifest)
}

pub fn sha256_file(path: &Path) -> Result<String, SnapshotError> {
    let mut file = File::open(path).map_err(|e| SnapshotError::Io(path.to_owned(), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| SnapshotError::Io(path.to_owned(), e))?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// A snapshot on disk, opened for lazy scans.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub manifest: SnapshotManifest,
}

impl Snapshot {
    /// Opens a snapshot directory and checks every file against its manifest.
    pub fn open(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read(&path).map_err(|e| SnapshotError::Io(path.clone(), e))?;
        let manifest: SnapshotManifest =
            serde_json::from_slice(&text).map_err(|e| SnapshotError::Manifest(path.clone(), e))?;
        for (file, expected) in &manifest.files {
            let actual = sha256_file(&dir.join(file))?;
            if &actual != expected {
                return Err(SnapshotError::Io(
                    dir.join(file),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "content differs from the manifest"),
                ));
            }
        }
        Ok(Snapshot {
            dir: dir.to_owned(),
            manifest,
        })
    }

    /// Lazy scan of one table.
    pub fn scan(&self, table: &str) -> PolarsResult<LazyFrame> {
        let path = self.dir.join(format!("{table}.parquet"));
        LazyFrame::scan_parquet(
            PlRefPath::new(path.to_string_lossy().as_ref()),
            ScanArgsParquet::default(),
        )
    }
}
