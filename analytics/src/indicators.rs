//! Indicators: each a pure function from snapshot tables (lazy frames) to a lazy table, with no
//! IO, so that each is tested on tiny hand-computed frames.
//!
//! Dates are polars `Date` columns; arithmetic happens on their day numbers (`Int32`).

use polars::prelude::*;

use crate::period::Period;

/// Day number of a `Date` column.
pub(crate) fn day(name: &str) -> Expr {
    col(name).cast(DataType::Int32)
}

/// Episodes on treatment at some time during the period: started by its end, not ended before
/// its start.
fn on_treatment(period: &Period) -> Expr {
    let (from, to) = period.epoch_days();
    started_by_and_not_ended_before(to, from)
}

/// Episodes with a first administration on or before day `to` and no end before day `since`.
fn started_by_and_not_ended_before(to: i32, since: i32) -> Expr {
    let first = day("first_administration_date");
    let end = day("end_date");
    first
        .clone()
        .is_not_null()
        .and(first.lt_eq(lit(to)))
        .and(end.clone().is_null().or(end.gt_eq(lit(since))))
}

/// Column expressions of a list of dimensions, to group by.
fn keys(dimensions: &[&str]) -> Vec<Expr> {
    dimensions.iter().map(|c| col(*c)).collect()
}

/// Sorting a table by its dimensions, so that published tables come in a stable order.
trait SortedBy {
    fn sorted_by(self, dimensions: &[&str]) -> LazyFrame;
}

impl SortedBy for LazyFrame {
    fn sorted_by(self, dimensions: &[&str]) -> LazyFrame {
        self.sort(
            dimensions.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
    }
}

fn within(e: Expr, period: &Period) -> Expr {
    let (from, to) = period.epoch_days();
    e.clone()
        .is_not_null()
        .and(e.clone().gt_eq(lit(from)))
        .and(e.lt_eq(lit(to)))
}

/// Dimensions of the activity table.
pub const ACTIVITY_DIMENSIONS: &[&str] = &["pathway", "drug_atc", "orpha_code", "centre_finess", "region_code"];

/// Activity: patients starting treatment in the period (first administration within it) and
/// patients on treatment during the period (started by its end, not ended before its start),
/// by pathway x drug x ORPHA code x centre x region of the centre. Each patient counts once per
/// cell.
pub fn activity(episodes: LazyFrame, centres: LazyFrame, period: &Period) -> LazyFrame {
    episodes
        .filter(on_treatment(period))
        .join(
            centres.select([col("centre_finess"), col("region_code")]),
            [col("centre_finess")],
            [col("centre_finess")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(within(day("first_administration_date"), period).alias("is_new"))
        .group_by(keys(ACTIVITY_DIMENSIONS))
        .agg([
            col("patient_key")
                .filter(col("is_new"))
                .n_unique()
                .cast(DataType::Int64)
                .alias("new_initiations"),
            col("patient_key")
                .n_unique()
                .cast(DataType::Int64)
                .alias("active_patients"),
        ])
        .sorted_by(ACTIVITY_DIMENSIONS)
}

/// Dimensions of the timeliness table.
pub const TIMELINESS_DIMENSIONS: &[&str] = &["measure", "pathway", "drug_atc"];

/// Pathways with a per-patient authorisation, where a decision on each request exists.
const AUTHORISED_PATHWAYS: &[&str] = &["AAC", "ATU_NOMINATIVE"];

/// Pathways framed by an indication-level decision (a framework), with no decision per patient.
const FRAMEWORK_PATHWAYS: &[&str] = &["AAP_PRE", "AAP_POST", "CPC", "ATU_COHORT", "RTU", "DIRECT"];

fn pathway_in(pathways: &[&str]) -> Expr {
    col("pathway").is_in(lit(Series::new("pathways".into(), pathways)).implode(false), false)
}

/// Timeliness, by pathway and drug, as episodes, median and interquartile range (linear
/// interpolation) of days:
/// - `request_to_decision` (decisions in the period) and `decision_to_first_administration`
///   (first administrations in the period), only where a decision on the patient's request
///   exists: per-patient authorisations (AAC, nominative ATU);
/// - `request_to_first_administration`, every pathway (first administrations in the period);
/// - `framework_grant_to_first_patient`, framework pathways: for each framework whose first
///   patient (within the report's scope) had a first administration in the period, days from
///   the framework's entry into force to it, counted over those first patients' episodes.
pub fn timeliness(
    episodes: LazyFrame,
    cohorts: LazyFrame,
    frameworks: LazyFrame,
    period: &Period,
) -> PolarsResult<LazyFrame> {
    let request = day("request_date");
    let decision = day("decision_date");
    let first = day("first_administration_date");
    let authorised = episodes.clone().filter(pathway_in(AUTHORISED_PATHWAYS));
    let to_decision = authorised
        .clone()
        .filter(within(decision.clone(), period).and(request.clone().is_not_null()))
        .select([
            lit("request_to_decision").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (decision.clone() - request.clone()).alias("days"),
        ]);
    let to_first = authorised
        .filter(within(first.clone(), period).and(decision.clone().is_not_null()))
        .select([
            lit("decision_to_first_administration").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (first.clone() - decision).alias("days"),
        ]);
    let request_to_first = episodes
        .clone()
        .filter(within(first.clone(), period).and(request.clone().is_not_null()))
        .select([
            lit("request_to_first_administration").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (first.clone() - request).alias("days"),
        ]);
    // Each framework's first patient: the earliest first administration among its episodes.
    let framed = episodes
        .filter(pathway_in(FRAMEWORK_PATHWAYS).and(first.clone().is_not_null()))
        .join(
            cohorts.select([col("cohort_id"), col("framework_id")]),
            [col("cohort_id")],
            [col("cohort_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("framework_id").is_not_null())
        .group_by([col("framework_id")])
        .agg([
            first.clone().min().alias("first_patient"),
            col("pathway")
                .sort_by([first.clone()], SortMultipleOptions::default())
                .first(),
            col("drug_atc").first(),
        ]);
    let grant_to_first = framed
        .join(
            frameworks.select([col("framework_id"), day("valid_from").alias("in_force")]),
            [col("framework_id")],
            [col("framework_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(within(col("first_patient"), period))
        .select([
            lit("framework_grant_to_first_patient").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (col("first_patient") - col("in_force")).alias("days"),
        ]);
    Ok(concat(
        [to_decision, to_first, request_to_first, grant_to_first],
        UnionArgs::default(),
    )?
    .group_by(keys(TIMELINESS_DIMENSIONS))
    .agg([
        len().cast(DataType::Int64).alias("episodes"),
        col("days").cast(DataType::Float64).median().alias("median_days"),
        col("days")
            .cast(DataType::Float64)
            .quantile(lit(0.25), QuantileMethod::Linear)
            .alias("q1_days"),
        col("days")
            .cast(DataType::Float64)
            .quantile(lit(0.75), QuantileMethod::Linear)
            .alias("q3_days"),
    ])
    .sorted_by(TIMELINESS_DIMENSIONS))
}

/// Dimensions of the discontinuation table.
pub const DISCONTINUATION_DIMENSIONS: &[&str] = &["pathway", "drug_atc", "outcome", "stop_reason"];

/// Discontinuations: episodes that ended in the period (stopped, switched, transferred, lost to
/// follow-up, deceased) by pathway, drug, how they ended and the stop reason.
pub fn discontinuations(episodes: LazyFrame, period: &Period) -> LazyFrame {
    episodes
        .filter(
            within(day("end_date"), period).and(
                col("status").is_in(
                    lit(Series::new(
                        "ended".into(),
                        ["STOPPED", "SWITCHED", "TRANSFERRED", "LOST_TO_FOLLOW_UP", "DECEASED"],
                    ))
                    .implode(false),
                    false,
                ),
            ),
        )
        .select([
            col("pathway"),
            col("drug_atc"),
            col("status").alias("outcome"),
            col("stop_reason").fill_null(lit("NONE")),
            col("episode_key"),
        ])
        .group_by(keys(DISCONTINUATION_DIMENSIONS))
        .agg([len().cast(DataType::Int64).alias("episodes")])
        .sorted_by(DISCONTINUATION_DIMENSIONS)
}

/// Dimensions of the expiring-authorisations table.
pub const EXPIRING_DIMENSIONS: &[&str] = &["pathway", "window"];

/// Pipeline: per-patient authorisations still in force at the end of the period whose validity
/// ends within 30, 60 or 90 days after it (windows are cumulative: `<=60` includes `<=30`).
pub fn expiring_authorisations(authorisations: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let (_, end) = period.epoch_days();
    let valid_to = day("valid_to");
    let in_force = in_force_after(end);
    let windows: Vec<LazyFrame> = [30, 60, 90]
        .into_iter()
        .map(|days| {
            authorisations
                .clone()
                .filter(in_force.clone().and(valid_to.clone().lt_eq(lit(end + days))))
                .select([col("pathway"), lit(format!("<={days}d")).alias("window")])
        })
        .collect();
    Ok(concat(windows, UnionArgs::default())?
        .group_by(keys(EXPIRING_DIMENSIONS))
        .agg([len().cast(DataType::Int64).alias("authorisations")])
        .sorted_by(EXPIRING_DIMENSIONS))
}

/// Authorisations or frameworks in force after day `end`: granted, renewed or with a renewal
/// under review, and valid beyond it.
fn in_force_after(end: i32) -> Expr {
    col("status")
        .is_in(
            lit(Series::new(
                "in_force".into(),
                ["GRANTED", "RENEWAL_SUBMITTED", "RENEWED", "RENEWAL_REFUSED"],
            ))
            .implode(false),
            false,
        )
        .and(day("valid_to").gt(lit(end)))
}

/// Dimensions of the safety table by system organ class.
pub const SAFETY_DIMENSIONS: &[&str] = &["drug_atc", "meddra_soc_code"];

/// Dimensions of the safety table by preferred term (within its system organ class).
pub const SAFETY_PT_DIMENSIONS: &[&str] = &["drug_atc", "meddra_soc_code", "meddra_pt_code"];

/// The MedDRA level safety is reported at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeddraLevel {
    SystemOrganClass,
    PreferredTerm,
}

impl MeddraLevel {
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            MeddraLevel::SystemOrganClass => SAFETY_DIMENSIONS,
            MeddraLevel::PreferredTerm => SAFETY_PT_DIMENSIONS,
        }
    }
}

/// Safety: adverse events with onset in the period, all and serious, by drug and MedDRA system
/// organ class (or preferred term), with the drug's exposure in patient-years during the period
/// (time on treatment inside the period, up to the end of each episode or of the period). Rates
/// and confidence intervals are added by [`with_poisson_rates`]. Events with no code are
/// counted under `UNCODED`.
pub fn safety(episodes: LazyFrame, adverse_events: LazyFrame, period: &Period, level: MeddraLevel) -> LazyFrame {
    let (from, to) = period.epoch_days();
    let first = day("first_administration_date");
    let start = when(first.clone().gt(lit(from)))
        .then(first.clone())
        .otherwise(lit(from));
    let end_raw = day("end_date").fill_null(lit(to));
    let end = when(end_raw.clone().lt(lit(to))).then(end_raw).otherwise(lit(to));
    let exposure = episodes
        .clone()
        .filter(first.is_not_null())
        .with_columns([start.alias("exposure_start"), end.alias("exposure_end")])
        .filter(col("exposure_end").gt_eq(col("exposure_start")))
        .group_by([col("drug_atc")])
        .agg([((col("exposure_end") - col("exposure_start") + lit(1))
            .cast(DataType::Float64)
            .sum()
            / lit(365.25))
        .alias("patient_years")]);
    let events = adverse_events
        .filter(within(day("onset_date"), period))
        .join(
            episodes.select([col("episode_key"), col("drug_atc")]),
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_columns([
            col("meddra_soc_code").fill_null(lit("UNCODED")),
            col("meddra_pt_code").fill_null(lit("UNCODED")),
        ])
        .group_by(keys(level.dimensions()))
        .agg([
            len().cast(DataType::Int64).alias("adverse_events"),
            col("serious")
                .cast(DataType::Int64)
                .sum()
                .alias("serious_adverse_events"),
        ]);
    events
        .join(
            exposure,
            [col("drug_atc")],
            [col("drug_atc")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("patient_years").fill_null(lit(0.0)))
        .sorted_by(level.dimensions())
}

/// Adds, for each count column, its rate per 100 patient-years and exact Poisson 95% confidence
/// interval (`<count>_rate`, `<count>_ci_low`, `<count>_ci_high`).
pub fn with_poisson_rates(mut df: DataFrame, counts: &[&str], exposure: &str) -> PolarsResult<DataFrame> {
    let years: Vec<f64> = {
        let c = df.column(exposure)?.cast(&DataType::Float64)?;
        let ca = c.f64()?;
        (0..ca.len()).map(|i| ca.get(i).unwrap_or(0.0)).collect()
    };
    for count in counts {
        let c = df.column(count)?.cast(&DataType::Int64)?;
        let ca = c.i64()?;
        let (mut rate, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
        for (i, py) in years.iter().enumerate() {
            let k = u64::try_from(ca.get(i).unwrap_or(0)).unwrap_or(0);
            if *py > 0.0 {
                let (lo, hi) = crate::stats::poisson_ci(k, 0.05);
                rate.push(Some(100.0 * k as f64 / py));
                low.push(Some(100.0 * lo / py));
                high.push(Some(100.0 * hi / py));
            } else {
                rate.push(None);
                low.push(None);
                high.push(None);
            }
        }
        df.with_column(Column::from(Series::new(format!("{count}_rate").into(), rate)))?;
        df.with_column(Column::from(Series::new(format!("{count}_ci_low").into(), low)))?;
        df.with_column(Column::from(Series::new(format!("{count}_ci_high").into(), high)))?;
    }
    Ok(df)
}

/// Days in an average month, to turn persistence horizons into days.
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// How many times the links of a course are followed: courses of up to 2^ROUNDS episodes.
const LINK_ROUNDS: usize = 6;

/// Days after the end of an episode transferred to another centre within which an episode of
/// the same drug requested there carries the treatment on.
const TRANSFER_DAYS: i32 = 60;

/// Courses of treatment with one drug, per patient, started by the end of the period: a
/// patient's episodes of the drug chained across changes of pathway (an episode that replaced
/// another of the same drug, `previous_episode_key`: compassionate access, then early access,
/// then common law) and across transfers (an episode of the same drug requested within 60 days
/// of the end of one transferred to another centre). A course runs from its first
/// administration to the end of its last episode: an event when that one was stopped (not for a
/// transition to common law), switched to another drug (a change of drug is an event) or ended
/// by death; censored at its end when transferred with no continuation or lost to follow-up, and
/// at the end of the period while it goes on. One-shot treatments (gene therapies, given once)
/// are not courses of treatment and are left out.
///
/// Columns: `cohort` (the cohort the course started in), `drug_atc`, `days`, `event`.
pub fn treatment_courses(episodes: LazyFrame, cohorts: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let (_, to) = period.epoch_days();
    let members = course_members(episodes)?;
    let courses = members
        .lazy()
        .group_by([col("root")])
        .agg([
            col("first").min().alias("start"),
            col("cohort_id")
                .sort_by([col("request"), col("episode_key")], SortMultipleOptions::default())
                .first()
                .alias("cohort_id"),
            col("drug_atc").first(),
            by_request("status").alias("last_status"),
            by_request("end").alias("last_end"),
            by_request("stop_reason").alias("last_reason"),
        ])
        .filter(col("start").is_not_null().and(col("start").lt_eq(lit(to))));
    let ended = col("last_end").is_not_null().and(col("last_end").lt_eq(lit(to)));
    let event = ended
        .clone()
        .and(col("last_status").is_in(
            lit(Series::new("events".into(), ["STOPPED", "SWITCHED", "DECEASED"])).implode(false),
            false,
        ))
        .and(col("last_reason").fill_null(lit("")).neq(lit("COMMON_LAW")));
    let until = when(ended).then(col("last_end")).otherwise(lit(to));
    Ok(courses
        .join(
            cohorts.select([col("cohort_id"), col("cohort")]),
            [col("cohort_id")],
            [col("cohort_id")],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col("cohort"),
            col("drug_atc"),
            (until - col("start")).alias("days"),
            event.cast(DataType::Int64).alias("event"),
        ]))
}

/// The value of a column at the last episode of a group, by request date.
fn by_request(name: &str) -> Expr {
    col(name)
        .sort_by([col("request"), col("episode_key")], SortMultipleOptions::default())
        .last()
}

/// The episodes of the courses of treatment (see [`treatment_courses`]), one-shot treatments
/// left out: `episode_key`, `patient_key`, `drug_atc`, `cohort_id`, `pathway`, the day numbers
/// `first`, `end` and `request`, `status`, `stop_reason`, and `root`, the first episode of the
/// course each belongs to.
fn course_members(episodes: LazyFrame) -> PolarsResult<DataFrame> {
    let eps = episodes
        .filter(col("single_administration").fill_null(lit(false)).not())
        .select([
            col("episode_key"),
            col("patient_key"),
            col("drug_atc"),
            col("cohort_id"),
            col("pathway"),
            col("previous_episode_key"),
            day("first_administration_date").alias("first"),
            day("end_date").alias("end"),
            day("request_date").alias("request"),
            col("status"),
            col("stop_reason"),
        ]);
    // The episode each one carries on: the one it replaced, of the same drug...
    let previous = eps.clone().select([
        col("episode_key").alias("replaced_key"),
        col("drug_atc").alias("replaced_drug"),
    ]);
    let linked = eps
        .clone()
        .join(
            previous,
            [col("previous_episode_key")],
            [col("replaced_key")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            when(col("replaced_drug").eq(col("drug_atc")))
                .then(col("previous_episode_key"))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("parent"),
        );
    // ...or the one transferred from another centre shortly before.
    let transferred = eps.clone().filter(col("status").eq(lit("TRANSFERRED"))).select([
        col("episode_key").alias("transferred_key"),
        col("patient_key"),
        col("drug_atc"),
        col("end").alias("transferred_end"),
    ]);
    let by_transfer = linked
        .clone()
        .filter(col("parent").is_null())
        .select([col("episode_key"), col("patient_key"), col("drug_atc"), col("request")])
        .join(
            transferred,
            [col("patient_key"), col("drug_atc")],
            [col("patient_key"), col("drug_atc")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col("transferred_end")
                .lt_eq(col("request"))
                .and(col("request").lt_eq(col("transferred_end") + lit(TRANSFER_DAYS)))
                .and(col("transferred_key").neq(col("episode_key"))),
        )
        .group_by([col("episode_key")])
        .agg([col("transferred_key")
            .sort_by([col("transferred_end")], SortMultipleOptions::default())
            .last()]);
    let linked = linked
        .join(
            by_transfer,
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(coalesce(&[col("parent"), col("transferred_key")]).alias("parent"))
        .collect()?;
    // The first episode of each one's course, by following the links (pointer jumping).
    let mut roots = linked
        .clone()
        .lazy()
        .select([
            col("episode_key"),
            coalesce(&[col("parent"), col("episode_key")]).alias("root"),
        ])
        .collect()?;
    for _ in 0..LINK_ROUNDS {
        let lookup = roots
            .clone()
            .lazy()
            .select([col("episode_key").alias("jump_key"), col("root").alias("jump_root")]);
        roots = roots
            .lazy()
            .join(lookup, [col("root")], [col("jump_key")], JoinArgs::new(JoinType::Left))
            .select([
                col("episode_key"),
                coalesce(&[col("jump_root"), col("root")]).alias("root"),
            ])
            .collect()?;
    }
    linked
        .lazy()
        .join(
            roots.lazy(),
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()
}

/// Stays on one pathway within the courses of treatment started by the end of the period: a
/// course's consecutive episodes under the same pathway (an AAC, then its early access, then
/// common law make three stays). A stay runs from its first administration to the end of its
/// last episode; leaving the pathway is the event, whether for the next pathway of the course,
/// a stop, a change of drug or a death. Losses to follow-up, transfers with no continuation and
/// stays going on are censored.
///
/// Columns: `drug_atc`, `pathway`, `days`, `event`.
pub fn pathway_stays(episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let (_, to) = period.epoch_days();
    let members = course_members(episodes)?;
    let changed = col("pathway")
        .neq(col("pathway").shift(lit(1)).over([col("root")])?)
        .fill_null(lit(true));
    let stays = members
        .lazy()
        .sort(["root", "request", "episode_key"], SortMultipleOptions::default())
        .with_column(
            changed
                .cast(DataType::Int32)
                .cum_sum(false)
                .over([col("root")])?
                .alias("stay"),
        )
        .group_by([col("root"), col("stay")])
        .agg([
            col("first").min().alias("start"),
            col("drug_atc").first(),
            col("pathway").first(),
            by_request("status").alias("last_status"),
            by_request("end").alias("last_end"),
        ])
        .with_column(col("stay").max().over([col("root")])?.alias("last_stay"))
        .filter(col("start").is_not_null().and(col("start").lt_eq(lit(to))));
    let ended = col("last_end").is_not_null().and(col("last_end").lt_eq(lit(to)));
    let left = ended
        .clone()
        .and(col("stay").lt(col("last_stay")).or(col("last_status").is_in(
            lit(Series::new("events".into(), ["STOPPED", "SWITCHED", "DECEASED"])).implode(false),
            false,
        )));
    let until = when(ended).then(col("last_end")).otherwise(lit(to));
    Ok(stays.select([
        col("drug_atc"),
        col("pathway"),
        (until - col("start")).alias("days"),
        left.cast(DataType::Int64).alias("event"),
    ]))
}

/// Time from the first derogatory administration of a course of treatment to common law, per
/// course with a derogatory episode started by the end of the period. Common law is reached at
/// the first administration of the course's first common-law episode, or at the end of its last
/// episode when that one stopped for a transition to common law. `event` is 1 when common law
/// was reached, 2 when the course ended first (stopped, changed drug, death: a competing event),
/// 0 when censored (going on, lost to follow-up, transferred with no continuation).
///
/// Columns: `drug_atc`, `days`, `event`.
pub fn time_to_common_law(episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let (_, to) = period.epoch_days();
    let members = course_members(episodes)?;
    let common_law = col("pathway").eq(lit("COMMON_LAW"));
    let courses = members
        .lazy()
        .group_by([col("root")])
        .agg([
            col("drug_atc").first(),
            col("first")
                .filter(common_law.clone().not())
                .min()
                .alias("derogatory_start"),
            col("first").filter(common_law).min().alias("common_law_start"),
            by_request("pathway").alias("last_pathway"),
            by_request("status").alias("last_status"),
            by_request("end").alias("last_end"),
            by_request("stop_reason").alias("last_reason"),
        ])
        .filter(
            col("derogatory_start")
                .is_not_null()
                .and(col("derogatory_start").lt_eq(lit(to))),
        )
        .with_column(
            coalesce(&[
                col("common_law_start"),
                when(
                    col("last_reason")
                        .eq(lit("COMMON_LAW"))
                        .and(col("last_pathway").neq(lit("COMMON_LAW"))),
                )
                .then(col("last_end"))
                .otherwise(lit(NULL).cast(DataType::Int32)),
            ])
            .alias("common_law_at"),
        );
    let reached = col("common_law_at")
        .is_not_null()
        .and(col("common_law_at").lt_eq(lit(to)))
        .and(col("common_law_at").gt_eq(col("derogatory_start")));
    let ended = col("last_end").is_not_null().and(col("last_end").lt_eq(lit(to)));
    let competing = ended.clone().and(col("last_status").is_in(
        lit(Series::new("events".into(), ["STOPPED", "SWITCHED", "DECEASED"])).implode(false),
        false,
    ));
    let until = when(reached.clone())
        .then(col("common_law_at"))
        .when(ended)
        .then(col("last_end"))
        .otherwise(lit(to));
    Ok(courses.select([
        col("drug_atc"),
        (until - col("derogatory_start")).alias("days"),
        when(reached)
            .then(lit(1i64))
            .when(competing)
            .then(lit(2i64))
            .otherwise(lit(0i64))
            .cast(DataType::Int64)
            .alias("event"),
    ]))
}

/// Kaplan-Meier curve per `group` (a column of `treatment_courses`): at each distinct time,
/// the number at risk, the events, the survival estimate and the cumulative Greenwood term
/// sum(d / (n (n - d))).
pub fn kaplan_meier(durations: LazyFrame, group: &str) -> PolarsResult<LazyFrame> {
    let d = col("events").cast(DataType::Float64);
    let n = col("at_risk").cast(DataType::Float64);
    Ok(durations
        .group_by([col(group), col("days")])
        .agg([
            col("event").sum().alias("events"),
            len().cast(DataType::Int64).alias("leaving"),
        ])
        .sort([group, "days"], SortMultipleOptions::default())
        // Everyone whose time is at or after this one is still at risk.
        .with_column(col("leaving").cum_sum(true).over([col(group)])?.alias("at_risk"))
        .with_columns([
            (lit(1.0) - d.clone() / n.clone()).alias("factor"),
            when(n.clone().gt(d.clone()))
                .then(d.clone() / (n.clone() * (n - d)))
                .otherwise(lit(f64::INFINITY))
                .alias("greenwood_term"),
        ])
        .with_columns([
            col("factor").cum_prod(false).over([col(group)])?.alias("survival"),
            col("greenwood_term")
                .cum_sum(false)
                .over([col(group)])?
                .alias("greenwood"),
        ])
        .select([
            col(group),
            col("days"),
            col("at_risk"),
            col("events"),
            col("survival"),
            col("greenwood"),
        ]))
}

/// Dimensions of the persistence tables: by the cohort a course started in, and by drug.
/// The cohort table carries each cohort's drug: its courses add up to the drug's, and the two
/// tables are protected together.
pub const PERSISTENCE_DIMENSIONS: &[&str] = &["cohort", "drug_atc", "months"];
pub const PERSISTENCE_DRUG_DIMENSIONS: &[&str] = &["drug_atc", "months"];

/// Persistence per `group` (`cohort` or `drug_atc`) at each horizon (months): courses, numbers
/// still at risk, survival estimate and Greenwood term, plus the median time on treatment in
/// months (empty while survival has not fallen to one half). Confidence intervals are added by
/// [`with_km_intervals`] and [`with_median_intervals`].
pub fn persistence(durations: LazyFrame, group: &str, horizons_months: &[u32]) -> PolarsResult<LazyFrame> {
    let curve = kaplan_meier(durations.clone(), group)?;
    let totals = durations
        .clone()
        .group_by([col(group)])
        .agg([len().cast(DataType::Int64).alias("courses")]);
    let median = curve
        .clone()
        .filter(col("survival").lt_eq(lit(0.5)))
        .group_by([col(group)])
        .agg([(col("days").min().cast(DataType::Float64) / lit(DAYS_PER_MONTH)).alias("median_months")]);
    let mut at_horizons = Vec::new();
    for &months in horizons_months {
        let horizon = (f64::from(months) * DAYS_PER_MONTH).round() as i32;
        let estimate = curve
            .clone()
            .filter(col("days").lt_eq(lit(horizon)))
            .group_by([col(group)])
            .agg([col("survival").last(), col("greenwood").last()]);
        let at_risk = durations
            .clone()
            .filter(col("days").gt_eq(lit(horizon)))
            .group_by([col(group)])
            .agg([len().cast(DataType::Int64).alias("at_risk")]);
        at_horizons.push(
            totals
                .clone()
                .join(estimate, [col(group)], [col(group)], JoinArgs::new(JoinType::Left))
                .join(at_risk, [col(group)], [col(group)], JoinArgs::new(JoinType::Left))
                .with_columns([
                    lit(i64::from(months)).alias("months"),
                    col("survival").fill_null(lit(1.0)),
                    col("greenwood").fill_null(lit(0.0)),
                    col("at_risk").fill_null(lit(0i64)),
                ]),
        );
    }
    Ok(concat(at_horizons, UnionArgs::default())?
        .join(median, [col(group)], [col(group)], JoinArgs::new(JoinType::Left))
        .select([
            col(group),
            col("months"),
            col("courses"),
            col("at_risk"),
            col("survival"),
            col("greenwood"),
            col("median_months"),
        ])
        .sorted_by(&[group, "months"]))
}

/// Persistence (see [`persistence`]) per drug and pathway of the stays on a pathway
/// ([`pathway_stays`]): columns `drug_atc`, `pathway`, `months`, `stays`, `at_risk`, the
/// estimate of still being on the pathway with its interval, and the median time on it with
/// its interval.
pub fn pathway_persistence(stays: LazyFrame, horizons_months: &[u32]) -> PolarsResult<DataFrame> {
    let stays = stays
        .with_column((col("drug_atc") + lit("/") + col("pathway")).alias("segment"))
        .collect()?;
    let names = stays
        .clone()
        .lazy()
        .select([col("segment"), col("drug_atc"), col("pathway")])
        .unique(None, UniqueKeepStrategy::First);
    let curve = kaplan_meier(stays.clone().lazy(), "segment")?.collect()?;
    let table = persistence(stays.lazy(), "segment", horizons_months)?.collect()?;
    let table = with_km_intervals(with_median_intervals(table, &curve, "segment")?)?;
    table
        .lazy()
        .join(
            names,
            [col("segment")],
            [col("segment")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([
            col("drug_atc"),
            col("pathway"),
            col("months"),
            col("courses").alias("stays"),
            col("at_risk"),
            col("survival"),
            col("ci_low"),
            col("ci_high"),
            col("median_months"),
            col("median_ci_low"),
            col("median_ci_high"),
        ])
        .sorted_by(JOURNEY_PATHWAY_DIMENSIONS)
        .collect()
}

/// Dimensions of the journey tables.
pub const JOURNEY_PATHWAY_DIMENSIONS: &[&str] = &["drug_atc", "pathway", "months"];
pub const JOURNEY_COMMON_LAW_DIMENSIONS: &[&str] = &["drug_atc", "months"];

/// One row of [`cumulative_incidence`]: group, months, courses, at risk, incidence, limits, median.
type IncidenceRow = (String, i64, i64, i64, f64, Option<f64>, Option<f64>, Option<f64>);

/// Cumulative incidence of the event coded 1 in the presence of the competing event coded 2
/// (Aalen-Johansen), per `group`, at each horizon (months): `courses`, `at_risk` (time at or
/// beyond the horizon), `common_law_share` (the cumulative incidence), its 95% interval on the
/// log(-log) scale with the delta-method variance of Collett (Modelling Survival Data in Medical
/// Research, 3rd ed., p. 411), and `median_months`, the first time the incidence reaches one
/// half (empty before). A competing event ends the chance of the event of interest; treating it
/// as censoring (one minus Kaplan-Meier) would overstate the incidence.
pub fn cumulative_incidence(durations: &DataFrame, group: &str, horizons_months: &[u32]) -> PolarsResult<DataFrame> {
    use std::collections::BTreeMap;
    let names = durations.column(group)?.str()?.clone();
    let days = durations.column("days")?.cast(&DataType::Int64)?;
    let events = durations.column("event")?.cast(&DataType::Int64)?;
    let (days, events) = (days.i64()?, events.i64()?);
    // Per group: time -> (leaving, all events, events of interest).
    let mut groups: BTreeMap<String, BTreeMap<i64, (i64, i64, i64)>> = BTreeMap::new();
    for i in 0..durations.height() {
        let (Some(name), Some(day), Some(event)) = (names.get(i), days.get(i), events.get(i)) else {
            continue;
        };
        let cell = groups.entry(name.to_owned()).or_default().entry(day).or_default();
        cell.0 += 1;
        if event != 0 {
            cell.1 += 1;
        }
        if event == 1 {
            cell.2 += 1;
        }
    }
    let z = 1.959_963_984_540_054;
    let mut out: Vec<IncidenceRow> = Vec::new();
    for (name, times) in &groups {
        let total: i64 = times.values().map(|c| c.0).sum();
        // Walk the distinct times once: at each, the incidence and its variance.
        let mut at_risk = total;
        let (mut survival, mut incidence) = (1.0_f64, 0.0_f64);
        // Accumulators of the three variance terms, expanded in the current incidence F:
        // sum c (F - F_i)^2 = F^2 sum c - 2 F sum c F_i + sum c F_i^2, and likewise.
        let (mut a0, mut a1, mut a2) = (0.0_f64, 0.0_f64, 0.0_f64);
        let mut second = 0.0_f64;
        let (mut b0, mut b1) = (0.0_f64, 0.0_f64);
        let mut curve: Vec<(i64, f64, f64)> = Vec::new();
        let mut median: Option<f64> = None;
        for (&day, &(leaving, all, interest)) in times {
            if all > 0 {
                let (n, d, d1) = (at_risk as f64, all as f64, interest as f64);
                let lagged = survival;
                incidence += lagged * d1 / n;
                survival *= 1.0 - d / n;
                let c = if n > d { d / (n * (n - d)) } else { f64::INFINITY };
                a0 += c;
                a1 += c * incidence;
                a2 += c * incidence * incidence;
                second += lagged * lagged * d1 * (n - d1) / (n * n * n);
                let k = lagged * d1 / (n * n);
                b0 += k;
                b1 += k * incidence;
                let f = incidence;
                let variance = (f * f * a0 - 2.0 * f * a1 + a2) + second - 2.0 * (f * b0 - b1);
                curve.push((day, f, variance));
                if median.is_none() && f >= 0.5 {
                    median = Some(day as f64 / DAYS_PER_MONTH);
                }
            }
            at_risk -= leaving;
        }
        for &months in horizons_months {
            let horizon = (f64::from(months) * DAYS_PER_MONTH).round() as i64;
            let at_horizon: i64 = times.range(horizon..).map(|(_, c)| c.0).sum();
            let (f, variance) = curve
                .iter()
                .take_while(|(day, _, _)| *day <= horizon)
                .last()
                .map_or((0.0, 0.0), |(_, f, v)| (*f, *v));
            let (low, high) = crate::stats::cif_log_log_ci(f, variance, z);
            out.push((name.clone(), i64::from(months), total, at_horizon, f, low, high, median));
        }
    }
    let column = |name: &str, values: Vec<Option<f64>>| Column::from(Series::new(name.into(), values));
    DataFrame::new_infer_height(vec![
        Column::from(Series::new(
            group.into(),
            out.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "months".into(),
            out.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "courses".into(),
            out.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        Column::from(Series::new(
            "at_risk".into(),
            out.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
        column("common_law_share", out.iter().map(|r| Some(r.4)).collect()),
        column("ci_low", out.iter().map(|r| r.5).collect()),
        column("ci_high", out.iter().map(|r| r.6).collect()),
        column("median_months", out.iter().map(|r| r.7).collect()),
    ])
}

/// Adds the 95% confidence limits of the median time on treatment (`median_ci_low`,
/// `median_ci_high`, months) to a persistence table, from the Kaplan-Meier `curve` of its
/// groups: the first times the lower and the upper limits of the survival curve (log(-log)
/// scale) fall to one half (Brookmeyer and Crowley's construction, as survival libraries give
/// it); empty while a limit has not fallen that far.
pub fn with_median_intervals(mut table: DataFrame, curve: &DataFrame, group: &str) -> PolarsResult<DataFrame> {
    use std::collections::HashMap;
    let groups = curve.column(group)?.str()?.clone();
    let days = curve.column("days")?.cast(&DataType::Int64)?;
    let days = days.i64()?;
    let s = curve.column("survival")?.cast(&DataType::Float64)?;
    let g = curve.column("greenwood")?.cast(&DataType::Float64)?;
    let (s, g) = (s.f64()?, g.f64()?);
    let mut first_below: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
    for i in 0..curve.height() {
        let (Some(name), Some(day), Some(sv), Some(gv)) = (groups.get(i), days.get(i), s.get(i), g.get(i)) else {
            continue;
        };
        let entry = first_below.entry(name.to_owned()).or_default();
        let (low, high) = if sv <= 0.0 {
            (Some(0.0), Some(0.0))
        } else {
            crate::stats::km_log_log_ci(sv, gv, 1.959_963_984_540_054)
        };
        if entry.0.is_none() && low.is_some_and(|l| l <= 0.5) {
            entry.0 = Some(day);
        }
        if entry.1.is_none() && high.is_some_and(|h| h <= 0.5) {
            entry.1 = Some(day);
        }
    }
    let names = table.column(group)?.str()?.clone();
    // Index 0: the lower limit's crossing, 1: the upper limit's.
    let months = |limit: usize| -> Vec<Option<f64>> {
        names
            .iter()
            .map(|n| {
                n.and_then(|n| first_below.get(n))
                    .and_then(|crossings| if limit == 0 { crossings.0 } else { crossings.1 })
                    .map(|d| d as f64 / DAYS_PER_MONTH)
            })
            .collect()
    };
    let low = months(0);
    let high = months(1);
    table.with_column(Column::from(Series::new("median_ci_low".into(), low)))?;
    table.with_column(Column::from(Series::new("median_ci_high".into(), high)))?;
    Ok(table)
}

/// Adds 95% confidence limits of the survival estimate (`ci_low`, `ci_high`) with Greenwood's
/// variance on the log(-log) scale, the transform most survival libraries use by default.
pub fn with_km_intervals(mut df: DataFrame) -> PolarsResult<DataFrame> {
    let s = df.column("survival")?.cast(&DataType::Float64)?;
    let g = df.column("greenwood")?.cast(&DataType::Float64)?;
    let (s, g) = (s.f64()?, g.f64()?);
    let (mut low, mut high) = (Vec::new(), Vec::new());
    for i in 0..s.len() {
        match (s.get(i), g.get(i)) {
            (Some(s), Some(g)) => {
                let (l, h) = crate::stats::km_log_log_ci(s, g, 1.959_963_984_540_054);
                low.push(l);
                high.push(h);
            }
            _ => {
                low.push(None);
                high.push(None);
            }
        }
    }
    df.with_column(Column::from(Series::new("ci_low".into(), low)))?;
    df.with_column(Column::from(Series::new("ci_high".into(), high)))?;
    df.drop_in_place("greenwood")?;
    Ok(df)
}

/// Patients on treatment during the period (started by its end, not ended before its start),
/// one row per patient and centre.
fn treated(episodes: LazyFrame, period: &Period) -> LazyFrame {
    episodes
        .filter(on_treatment(period))
        .select([col("patient_key"), col("centre_finess")])
        .unique(None, UniqueKeepStrategy::First)
}

/// Region names shipped in `analytics/reference/region_population.csv`: (INSEE code, name).
pub fn region_names() -> Vec<(String, String)> {
    include_str!("../reference/region_population.csv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .filter_map(|l| {
            let mut fields = l.split(',');
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// Regional population shipped in `analytics/reference/region_population.csv`.
pub fn region_population() -> PolarsResult<LazyFrame> {
    let text = include_str!("../reference/region_population.csv");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let code: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let population: Vec<i64> = rows
        .iter()
        .map(|r| r.get(2).and_then(|p| p.parse().ok()).unwrap_or(0))
        .collect();
    Ok(DataFrame::new_infer_height(vec![
        Series::new("region_code".into(), code).into(),
        Series::new("population".into(), population).into(),
    ])?
    .lazy())
}

/// Equity by region of residence: patients on treatment during the period per million
/// inhabitants. Patients with no known region are counted under `UNKNOWN`, with no rate.
pub fn treated_per_million(
    episodes: LazyFrame,
    patients: LazyFrame,
    population: LazyFrame,
    period: &Period,
) -> LazyFrame {
    treated(episodes, period)
        .select([col("patient_key")])
        .unique(None, UniqueKeepStrategy::First)
        .join(
            patients.select([col("patient_key"), col("region_code")]),
            [col("patient_key")],
            [col("patient_key")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("region_code").fill_null(lit("UNKNOWN")))
        .group_by([col("region_code")])
        .agg([len().cast(DataType::Int64).alias("treated_patients")])
        .join(
            population,
            [col("region_code")],
            [col("region_code")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            (col("treated_patients").cast(DataType::Float64) * lit(1_000_000.0)
                / col("population").cast(DataType::Float64))
            .alias("per_million"),
        )
        .sort(["region_code"], SortMultipleOptions::default())
}

/// Equity by type of centre: patients on treatment during the period at CRMR coordinating and
/// constitutive sites, CCMR and other centres, and their share (a patient followed at two types
/// of centre counts in both).
pub fn treated_by_centre_type(episodes: LazyFrame, centres: LazyFrame, period: &Period) -> LazyFrame {
    treated(episodes, period)
        .join(
            centres.select([col("centre_finess"), col("centre_type")]),
            [col("centre_finess")],
            [col("centre_finess")],
            JoinArgs::new(JoinType::Left),
        )
        .select([col("patient_key"), col("centre_type")])
        .unique(None, UniqueKeepStrategy::First)
        .group_by([col("centre_type")])
        .agg([len().cast(DataType::Int64).alias("treated_patients")])
        .with_column(
            (col("treated_patients").cast(DataType::Float64) * lit(100.0)
                / col("treated_patients").sum().cast(DataType::Float64))
            .alias("share_percent"),
        )
        .sort(["centre_type"], SortMultipleOptions::default())
}

/// Age bands (years at the end of the period), lower bounds; labels zero-padded so they sort.
const AGE_BANDS: &[(i32, &str)] = &[
    (0, "00-01"),
    (2, "02-05"),
    (6, "06-11"),
    (12, "12-17"),
    (18, "18-39"),
    (40, "40-64"),
    (65, "65+"),
];

/// Patients on treatment during the period by sex and age band at the end of the period.
pub fn treated_by_age_sex(episodes: LazyFrame, patients: LazyFrame, period: &Period) -> LazyFrame {
    use chrono::Datelike;
    let end_month = period.to.year() * 12 + period.to.month0() as i32;
    let age_years = (lit(end_month) - col("birth_month_index")) / lit(12);
    // Nested from the youngest band outwards: the oldest band that fits wins; a missing or
    // future birth month gives "unknown".
    let mut band = lit("unknown");
    for (lower, label) in AGE_BANDS {
        band = when(age_years.clone().gt_eq(lit(*lower)))
            .then(lit(*label))
            .otherwise(band);
    }
    treated(episodes, period)
        .select([col("patient_key")])
        .unique(None, UniqueKeepStrategy::First)
        .join(
            patients,
            [col("patient_key")],
            [col("patient_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(band.alias("age_band"))
        .group_by([col("sex"), col("age_band")])
        .agg([len().cast(DataType::Int64).alias("treated_patients")])
        .sort(["sex", "age_band"], SortMultipleOptions::default())
}

/// Dimensions of the access-route table.
pub const ACCESS_ROUTE_DIMENSIONS: &[&str] = &["drug_atc", "access"];

/// Patients on treatment during the period by drug and access route: under a derogatory
/// pathway (every pathway but common law) or under common law, with the derogatory share of
/// the drug's treated patients (a patient who moved to common law during the period counts in
/// both rows).
pub fn access_routes(episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    Ok(episodes
        .filter(on_treatment(period))
        .with_column(
            when(col("pathway").eq(lit("COMMON_LAW")))
                .then(lit("common_law"))
                .otherwise(lit("derogatory"))
                .alias("access"),
        )
        .group_by([col("drug_atc"), col("access")])
        .agg([col("patient_key")
            .n_unique()
            .cast(DataType::Int64)
            .alias("treated_patients")])
        .with_column(
            (col("treated_patients").cast(DataType::Float64) * lit(100.0)
                / col("treated_patients")
                    .sum()
                    .over([col("drug_atc")])?
                    .cast(DataType::Float64))
            .alias("share_percent"),
        )
        .sorted_by(ACCESS_ROUTE_DIMENSIONS))
}

/// Days of grace after a scheduled follow-up visit before it counts as overdue.
pub const FOLLOW_UP_GRACE_DAYS: i32 = 30;

/// Dimensions of the overdue follow-up table.
pub const OVERDUE_DIMENSIONS: &[&str] = &["centre_finess"];

/// Pipeline and data quality: per centre, episodes on treatment at the end of the period in a
/// cohort with a follow-up schedule, and those whose last visit (or first administration, with
/// no visit yet) is older than the schedule plus [`FOLLOW_UP_GRACE_DAYS`] at the end of the
/// period.
pub fn overdue_follow_ups(
    episodes: LazyFrame,
    cohorts: LazyFrame,
    follow_ups: LazyFrame,
    period: &Period,
) -> LazyFrame {
    let (_, to) = period.epoch_days();
    let first = day("first_administration_date");
    let last_visits = follow_ups
        .filter(day("visit_date").lt_eq(lit(to)))
        .group_by([col("episode_key")])
        .agg([day("visit_date").max().alias("last_visit")]);
    episodes
        .filter(on_treatment_at_end(period))
        .join(
            cohorts.select([col("cohort_id"), col("follow_up_months")]),
            [col("cohort_id")],
            [col("cohort_id")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("follow_up_months").gt(lit(0)))
        .join(
            last_visits,
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            (col("last_visit").fill_null(first).cast(DataType::Float64)
                + col("follow_up_months").cast(DataType::Float64) * lit(DAYS_PER_MONTH)
                + lit(f64::from(FOLLOW_UP_GRACE_DAYS)))
            .lt(lit(f64::from(to)))
            .alias("overdue"),
        )
        .group_by(keys(OVERDUE_DIMENSIONS))
        .agg([
            len().cast(DataType::Int64).alias("episodes_followed"),
            col("overdue").cast(DataType::Int64).sum().alias("overdue"),
        ])
        .with_column(
            (col("overdue").cast(DataType::Float64) * lit(100.0) / col("episodes_followed").cast(DataType::Float64))
                .alias("overdue_percent"),
        )
        .sorted_by(OVERDUE_DIMENSIONS)
}

/// Dimensions of the per-patient requests table.
pub const REQUEST_DIMENSIONS: &[&str] = &["pathway", "drug_atc", "step"];

/// Activity of per-patient authorisations in the period, from their history: requests
/// submitted (submission date in the period), and grants, renewals and refusals (decision date
/// in the period), by pathway and drug. A step recorded twice (a grant reinstated after a
/// suspension) counts once.
pub fn requests(authorisation_events: LazyFrame, episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let submitted = authorisation_events
        .clone()
        .filter(col("version").eq(lit(1i64)).and(within(day("submitted_date"), period)))
        .select([
            col("episode_key"),
            col("pathway"),
            lit("submitted").alias("step"),
            day("submitted_date").alias("on"),
        ]);
    let decided = authorisation_events
        .filter(
            col("status")
                .is_in(
                    lit(Series::new(
                        "decided".into(),
                        ["GRANTED", "RENEWED", "REFUSED", "RENEWAL_REFUSED"],
                    ))
                    .implode(false),
                    false,
                )
                .and(within(day("decision_date"), period)),
        )
        .select([
            col("episode_key"),
            col("pathway"),
            when(col("status").eq(lit("GRANTED")))
                .then(lit("granted"))
                .when(col("status").eq(lit("RENEWED")))
                .then(lit("renewed"))
                .when(col("status").eq(lit("RENEWAL_REFUSED")))
                .then(lit("renewal_refused"))
                .otherwise(lit("refused"))
                .alias("step"),
            day("decision_date").alias("on"),
        ]);
    Ok(concat([submitted, decided], UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::First)
        .join(
            episodes.select([col("episode_key"), col("drug_atc")]),
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by(keys(REQUEST_DIMENSIONS))
        .agg([len().cast(DataType::Int64).alias("requests")])
        .sorted_by(REQUEST_DIMENSIONS))
}

/// Episodes on treatment at the end of the period: started by then, not ended by then.
fn on_treatment_at_end(period: &Period) -> Expr {
    let (_, to) = period.epoch_days();
    started_by_and_not_ended_before(to, to + 1)
}

/// Dimensions of the framework expiry table.
pub const EXPIRING_FRAMEWORK_DIMENSIONS: &[&str] = &["window", "pathway", "drug_atc", "framework_id", "valid_to"];

/// Frameworks near the end of their validity: frameworks in force at the end of the period
/// (granted, renewed, or with a renewal under review) whose validity ends within 30, 60 or 90
/// days after it (cumulative windows), with the patients on treatment at the end of the period
/// in the cohorts they frame: the patients whose access must be secured before the date.
pub fn expiring_frameworks(
    frameworks: LazyFrame,
    cohorts: LazyFrame,
    episodes: LazyFrame,
    period: &Period,
) -> PolarsResult<LazyFrame> {
    let (_, end) = period.epoch_days();
    let valid_to = day("valid_to");
    let in_force = in_force_after(end);
    let patients = episodes
        .filter(on_treatment_at_end(period))
        .join(
            cohorts.select([col("cohort_id"), col("framework_id")]),
            [col("cohort_id")],
            [col("cohort_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("framework_id").is_not_null())
        .group_by([col("framework_id")])
        .agg([col("patient_key")
            .n_unique()
            .cast(DataType::Int64)
            .alias("patients_on_treatment")]);
    let windows: Vec<LazyFrame> = [30, 60, 90]
        .into_iter()
        .map(|days| {
            frameworks
                .clone()
                .filter(in_force.clone().and(valid_to.clone().lt_eq(lit(end + days))))
                .select([
                    lit(format!("<={days}d")).alias("window"),
                    col("pathway"),
                    col("drug_atc"),
                    col("framework_id"),
                    col("valid_to"),
                ])
        })
        .collect();
    Ok(concat(windows, UnionArgs::default())?
        .join(
            patients,
            [col("framework_id")],
            [col("framework_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("patients_on_treatment").fill_null(lit(0i64)))
        .sorted_by(EXPIRING_FRAMEWORK_DIMENSIONS))
}

/// Dimensions of the switches table.
pub const SWITCH_DIMENSIONS: &[&str] = &["change", "from_pathway", "from_drug_atc", "to_pathway", "to_drug_atc"];

/// Switches and transitions to common law in the period: an episode declared as following an
/// earlier one (dated by its first administration, or its request before that), classified as
/// a change of `drug`, of `pathway`, of `drug_and_pathway`, or a `transition_to_common_law`
/// when the same drug continues under common law (another drug under common law is a change of
/// drug and pathway); and episodes stopped in the period for a transition to
/// common law with no following episode declared (the same drug, now under common law).
/// Patients are counted once per cell.
pub fn switches(episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let previous = episodes.clone().select([
        col("episode_key").alias("previous_episode_key"),
        col("pathway").alias("from_pathway"),
        col("drug_atc").alias("from_drug_atc"),
    ]);
    let followed = episodes
        .clone()
        .filter(col("previous_episode_key").is_not_null())
        .filter(within(
            day("first_administration_date").fill_null(day("request_date")),
            period,
        ))
        .join(
            previous,
            [col("previous_episode_key")],
            [col("previous_episode_key")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([
            col("patient_key"),
            col("from_pathway"),
            col("from_drug_atc"),
            col("pathway").alias("to_pathway"),
            col("drug_atc").alias("to_drug_atc"),
        ]);
    let successors = episodes
        .clone()
        .filter(col("previous_episode_key").is_not_null())
        .select([
            col("previous_episode_key").alias("episode_key"),
            lit(true).alias("has_successor"),
        ]);
    let to_common_law = episodes
        .filter(
            col("stop_reason")
                .eq(lit("COMMON_LAW"))
                .and(within(day("end_date"), period)),
        )
        .join(
            successors,
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("has_successor").is_null())
        .select([
            col("patient_key"),
            col("pathway").alias("from_pathway"),
            col("drug_atc").alias("from_drug_atc"),
            lit("COMMON_LAW").alias("to_pathway"),
            col("drug_atc").alias("to_drug_atc"),
        ]);
    // Onto common law with the same drug: a change of drug is never a transition.
    let change = when(
        col("to_pathway")
            .eq(lit("COMMON_LAW"))
            .and(col("from_pathway").neq(lit("COMMON_LAW")))
            .and(col("to_drug_atc").eq(col("from_drug_atc"))),
    )
    .then(lit("transition_to_common_law"))
    .when(
        col("to_drug_atc")
            .neq(col("from_drug_atc"))
            .and(col("to_pathway").neq(col("from_pathway"))),
    )
    .then(lit("drug_and_pathway"))
    .when(col("to_drug_atc").neq(col("from_drug_atc")))
    .then(lit("drug"))
    .when(col("to_pathway").neq(col("from_pathway")))
    .then(lit("pathway"))
    .otherwise(lit("renewed_episode"));
    Ok(concat([followed, to_common_law], UnionArgs::default())?
        .with_column(change.alias("change"))
        .group_by(keys(SWITCH_DIMENSIONS))
        .agg([col("patient_key").n_unique().cast(DataType::Int64).alias("patients")])
        .sorted_by(SWITCH_DIMENSIONS))
}

/// Dimensions of the data completeness table.
pub const COMPLETENESS_DIMENSIONS: &[&str] = &["centre_finess", "field"];

/// Days of treatment after which a follow-up visit is expected, for completeness.
pub const VISIT_EXPECTED_DAYS: i32 = 90;

/// Data completeness per centre, over the episodes on treatment during the period: how many
/// have each item recorded, among the items the registry lets go missing (a birth month, an
/// ORPHA code or a request date cannot be missing, so they are not counted):
/// - `patient_sex`: the patient's sex known (not UNKNOWN); `patient_region`: a region of
///   residence; `dosage`: the dose, route and frequency;
/// - among episodes treated for 90 days or more by the end of the period: `follow_up_visit`, a
///   follow-up visit recorded by then; `efficacy_assessed`, a visit with efficacy assessed as
///   improved, stable or worsened (a "not assessable" visit is a visit, not an assessment);
/// - among episodes with an adverse event by the end of the period: `adverse_event_outcome`,
///   every event with a known outcome; `adverse_event_soc`, every event coded to its MedDRA
///   system organ class;
/// - among episodes with a serious adverse event: `serious_adverse_event_declared`, every
///   serious event declared to pharmacovigilance.
///
/// Late follow-up per centre is the `overdue_follow_ups` table.
pub fn completeness(
    episodes: LazyFrame,
    patients: LazyFrame,
    follow_ups: LazyFrame,
    adverse_events: LazyFrame,
    period: &Period,
) -> PolarsResult<LazyFrame> {
    let (_, to) = period.epoch_days();
    let visits = follow_ups
        .filter(day("visit_date").lt_eq(lit(to)))
        .group_by([col("episode_key")])
        .agg([
            len().gt(lit(0)).alias("visited"),
            col("efficacy")
                .is_in(
                    lit(Series::new("assessed".into(), ["IMPROVED", "STABLE", "WORSENED"])).implode(false),
                    false,
                )
                .any(true)
                .alias("efficacy_assessed"),
        ]);
    let events = adverse_events
        .filter(day("onset_date").lt_eq(lit(to)))
        .group_by([col("episode_key")])
        .agg([
            col("outcome")
                .is_not_null()
                .and(col("outcome").neq(lit("UNKNOWN")))
                .all(true)
                .alias("outcomes_known"),
            col("meddra_soc_code").is_not_null().all(true).alias("socs_coded"),
            col("serious").fill_null(lit(false)).any(true).alias("any_serious"),
            col("serious")
                .fill_null(lit(false))
                .not()
                .or(col("pv_declared").fill_null(lit(false)))
                .all(true)
                .alias("serious_declared"),
        ]);
    let base = episodes
        .filter(on_treatment(period))
        .join(
            patients.select([col("patient_key"), col("sex"), col("region_code")]),
            [col("patient_key")],
            [col("patient_key")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            visits,
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            events,
            [col("episode_key")],
            [col("episode_key")],
            JoinArgs::new(JoinType::Left),
        );
    let long_enough = day("first_administration_date").lt_eq(lit(to - VISIT_EXPECTED_DAYS));
    let with_events = col("outcomes_known").is_not_null();
    // (field, which episodes it applies to, whether it is complete)
    let items: [(&str, Expr, Expr); 8] = [
        (
            "patient_sex",
            lit(true),
            col("sex").is_not_null().and(col("sex").neq(lit("UNKNOWN"))),
        ),
        ("patient_region", lit(true), col("region_code").is_not_null()),
        ("dosage", lit(true), col("dosage_recorded").fill_null(lit(false))),
        (
            "follow_up_visit",
            long_enough.clone(),
            col("visited").fill_null(lit(false)),
        ),
        (
            "efficacy_assessed",
            long_enough,
            col("efficacy_assessed").fill_null(lit(false)),
        ),
        (
            "adverse_event_outcome",
            with_events.clone(),
            col("outcomes_known").fill_null(lit(false)),
        ),
        (
            "adverse_event_soc",
            with_events,
            col("socs_coded").fill_null(lit(false)),
        ),
        (
            "serious_adverse_event_declared",
            col("any_serious").fill_null(lit(false)),
            col("serious_declared").fill_null(lit(false)),
        ),
    ];
    let parts: Vec<LazyFrame> = items
        .into_iter()
        .map(|(field, applies, complete)| {
            base.clone().filter(applies).select([
                col("centre_finess"),
                lit(field).alias("field"),
                complete.alias("complete"),
            ])
        })
        .collect();
    Ok(concat(parts, UnionArgs::default())?
        .group_by(keys(COMPLETENESS_DIMENSIONS))
        .agg([
            len().cast(DataType::Int64).alias("episodes"),
            col("complete").cast(DataType::Int64).sum().alias("complete"),
        ])
        .with_column(
            (col("complete").cast(DataType::Float64) * lit(100.0) / col("episodes").cast(DataType::Float64))
                .round(1, RoundMode::HalfToEven)
                .alias("complete_percent"),
        )
        .sorted_by(COMPLETENESS_DIMENSIONS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::epoch_days;
    use chrono::NaiveDate;

    fn d(s: &str) -> Option<i32> {
        Some(epoch_days(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()))
    }

    fn dates(name: &str, v: Vec<Option<i32>>) -> Column {
        Series::new(name.into(), v).cast(&DataType::Date).unwrap().into()
    }

    fn episodes() -> LazyFrame {
        // p1 starts in Q3; p2 started before and is still on treatment; p3 stopped before Q3;
        // p4 declared, never started; p1 has a second episode (other drug) starting in Q3.
        DataFrame::new_infer_height(vec![
            Series::new("patient_key".into(), ["p1", "p2", "p3", "p4", "p1"]).into(),
            Series::new("cohort_id".into(), ["aac", "aac", "aac", "aac", "cpc"]).into(),
            Series::new("pathway".into(), ["AAC", "AAC", "AAC", "AAC", "CPC"]).into(),
            Series::new(
                "drug_atc".into(),
                ["B02BX07", "B02BX07", "B02BX07", "B02BX07", "B02BX06"],
            )
            .into(),
            Series::new("orpha_code".into(), ["98878"; 5]).into(),
            Series::new("centre_finess".into(), ["750100125"; 5]).into(),
            dates(
                "request_date",
                vec![
                    d("2026-06-01"),
                    d("2026-01-01"),
                    d("2025-01-01"),
                    d("2026-07-01"),
                    d("2026-06-20"),
                ],
            ),
            dates(
                "decision_date",
                // Framework pathways record the request date as the decision date: no decision
                // on the patient's request exists.
                vec![d("2026-06-11"), d("2026-01-21"), d("2025-01-05"), None, d("2026-06-20")],
            ),
            dates(
                "first_administration_date",
                vec![d("2026-07-01"), d("2026-02-01"), d("2025-01-10"), None, d("2026-07-20")],
            ),
            dates("end_date", vec![None, None, d("2026-06-30"), None, None]),
        ])
        .unwrap()
        .lazy()
    }

    fn centres() -> LazyFrame {
        df!("centre_finess" => ["750100125"], "region_code" => ["11"])
            .unwrap()
            .lazy()
    }

    #[test]
    fn activity_counts_new_and_active_patients_per_cell() {
        let q3 = Period::parse("2026-Q3").unwrap();
        let out = activity(episodes(), centres(), &q3).collect().unwrap();
        // (pathway, drug) -> (new, active)
        let rows: Vec<(String, String, i64, i64)> = (0..out.height())
            .map(|i| {
                let s = |c: &str| out.column(c).unwrap().get(i).unwrap().str_value().to_string();
                let n = |c: &str| out.column(c).unwrap().i64().unwrap().get(i).unwrap();
                (s("pathway"), s("drug_atc"), n("new_initiations"), n("active_patients"))
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("AAC".into(), "B02BX07".into(), 1, 2), // p1 new; p1 and p2 active; p3 ended before Q3
                ("CPC".into(), "B02BX06".into(), 1, 1),
            ]
        );
        assert_eq!(out.column("region_code").unwrap().str().unwrap().get(0), Some("11"));
    }

    #[test]
    fn discontinuations_count_episodes_ended_in_the_period_by_reason() {
        let episodes = episodes().with_columns([
            lit("STOPPED").alias("status"),
            lit("INEFFICACY").alias("stop_reason"),
            col("patient_key").alias("episode_key"),
        ]);
        let q2 = Period::parse("2026-Q2").unwrap();
        let out = discontinuations(episodes, &q2).collect().unwrap();
        // Only p3 ended in Q2 (2026-06-30).
        assert_eq!(out.height(), 1);
        assert_eq!(out.column("episodes").unwrap().i64().unwrap().get(0), Some(1));
        assert_eq!(
            out.column("stop_reason").unwrap().str().unwrap().get(0),
            Some("INEFFICACY")
        );
    }

    #[test]
    fn authorisations_expiring_after_the_period_fall_in_cumulative_windows() {
        let auth = DataFrame::new_infer_height(vec![
            Series::new("pathway".into(), ["AAC", "AAC", "AAC", "AAC", "AAC"]).into(),
            Series::new("status".into(), ["GRANTED", "RENEWED", "GRANTED", "EXPIRED", "GRANTED"]).into(),
            // Period ends 2026-09-30: +10 days, +45 days, +80 days, expired, +200 days.
            dates(
                "valid_to",
                vec![
                    d("2026-10-10"),
                    d("2026-11-14"),
                    d("2026-12-19"),
                    d("2026-10-05"),
                    d("2027-04-18"),
                ],
            ),
        ])
        .unwrap()
        .lazy();
        let out = expiring_authorisations(auth, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        let counts = text_counts(&out, "window", "authorisations");
        assert_eq!(
            counts,
            vec![("<=30d".into(), 1), ("<=60d".into(), 2), ("<=90d".into(), 3)]
        );
    }

    #[test]
    fn safety_rates_use_exposure_inside_the_period() {
        // One patient on B02BX07 for the whole of 2026 Q3 (92 days), one from 2026-09-01.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2"]).into(),
            Series::new("drug_atc".into(), ["B02BX07", "B02BX07"]).into(),
            dates("first_administration_date", vec![d("2026-01-01"), d("2026-09-01")]),
            dates("end_date", vec![None, None]),
        ])
        .unwrap()
        .lazy();
        let events = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e1", "e2"]).into(),
            dates("onset_date", vec![d("2026-07-10"), d("2026-05-01"), d("2026-09-15")]),
            Series::new("meddra_soc_code".into(), ["10018065", "10018065", "10018065"]).into(),
            Series::new("meddra_pt_code".into(), [Some("10019211"), None, Some("10019211")]).into(),
            Series::new("serious".into(), [true, false, false]).into(),
        ])
        .unwrap()
        .lazy();
        let q3 = Period::parse("2026-Q3").unwrap();
        let by_pt = safety(episodes.clone(), events.clone(), &q3, MeddraLevel::PreferredTerm)
            .collect()
            .unwrap();
        // The May event is outside Q3: both Q3 events share one PT.
        assert_eq!(by_pt.height(), 1);
        assert_eq!(
            by_pt.column("meddra_pt_code").unwrap().str().unwrap().get(0),
            Some("10019211")
        );
        let out = safety(episodes, events, &q3, MeddraLevel::SystemOrganClass)
            .collect()
            .unwrap();
        assert_eq!(out.height(), 1);
        assert_eq!(out.column("adverse_events").unwrap().i64().unwrap().get(0), Some(2));
        assert_eq!(
            out.column("serious_adverse_events").unwrap().i64().unwrap().get(0),
            Some(1)
        );
        let py = out.column("patient_years").unwrap().f64().unwrap().get(0).unwrap();
        assert!((py - (92.0 + 30.0) / 365.25).abs() < 1e-9, "{py}");
        let rated = with_poisson_rates(out, &["adverse_events"], "patient_years").unwrap();
        let rate = rated
            .column("adverse_events_rate")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        assert!((rate - 200.0 / py).abs() < 1e-9);
        let low = rated
            .column("adverse_events_ci_low")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        let high = rated
            .column("adverse_events_ci_high")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        assert!(low < rate && rate < high);
    }

    /// Journeys: p1 on concizumab under AAC, then its early access, then common law; p2 on
    /// emicizumab, then switched to concizumab, stopped; p3 on concizumab transferred to another
    /// centre and carried on there; p4 given a gene therapy once; p5 on concizumab under AAC,
    /// stopped for common law with no episode after.
    fn journeys() -> LazyFrame {
        DataFrame::new_infer_height(vec![
            Series::new(
                "episode_key".into(),
                ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"],
            )
            .into(),
            Series::new(
                "patient_key".into(),
                ["p1", "p1", "p1", "p2", "p2", "p3", "p3", "p4", "p5"],
            )
            .into(),
            Series::new(
                "drug_atc".into(),
                [
                    "B02BX07", "B02BX07", "B02BX07", "B02BX06", "B02BX07", "B02BX07", "B02BX07", "B02BD16", "B02BX07",
                ],
            )
            .into(),
            Series::new(
                "cohort_id".into(),
                ["aac", "aap", "cl", "emi", "aac", "aac", "aac", "gene", "aac"],
            )
            .into(),
            Series::new(
                "pathway".into(),
                [
                    "AAC",
                    "AAP_POST",
                    "COMMON_LAW",
                    "CPC",
                    "AAC",
                    "AAC",
                    "AAC",
                    "COMMON_LAW",
                    "AAC",
                ],
            )
            .into(),
            Series::new(
                "previous_episode_key".into(),
                [None, Some("e1"), Some("e2"), None, Some("e4"), None, None, None, None],
            )
            .into(),
            dates(
                "request_date",
                vec![
                    d("2025-01-01"),
                    d("2025-06-01"),
                    d("2026-01-01"),
                    d("2025-02-20"),
                    d("2025-09-01"),
                    d("2025-01-01"),
                    d("2025-05-10"),
                    d("2025-01-01"),
                    d("2025-03-01"),
                ],
            ),
            dates(
                "first_administration_date",
                vec![
                    d("2025-01-10"),
                    d("2025-06-05"),
                    d("2026-01-03"),
                    d("2025-03-01"),
                    d("2025-09-02"),
                    d("2025-01-05"),
                    d("2025-05-12"),
                    d("2025-01-10"),
                    d("2025-03-05"),
                ],
            ),
            dates(
                "end_date",
                vec![
                    d("2025-06-01"),
                    d("2026-01-01"),
                    None,
                    d("2025-09-01"),
                    d("2026-03-01"),
                    d("2025-05-01"),
                    None,
                    None,
                    d("2025-12-01"),
                ],
            ),
            Series::new(
                "status".into(),
                [
                    "SWITCHED",
                    "SWITCHED",
                    "ONGOING",
                    "SWITCHED",
                    "STOPPED",
                    "TRANSFERRED",
                    "ONGOING",
                    "ONGOING",
                    "STOPPED",
                ],
            )
            .into(),
            Series::new(
                "stop_reason".into(),
                [
                    None,
                    None,
                    None,
                    None,
                    Some("INEFFICACY"),
                    None,
                    None,
                    None,
                    Some("COMMON_LAW"),
                ],
            )
            .into(),
            Series::new(
                "single_administration".into(),
                [false, false, false, false, false, false, false, true, false],
            )
            .into(),
        ])
        .unwrap()
        .lazy()
    }

    #[test]
    fn persistence_follows_a_course_across_pathways_and_transfers_and_a_change_of_drug_ends_it() {
        let episodes = journeys();
        let cohorts = df!(
            "cohort_id" => ["aac", "aap", "cl", "emi", "gene"],
            "cohort" => ["Concizumab AAC", "Concizumab AAP", "Concizumab CL", "Emicizumab", "Gene"],
        )
        .unwrap()
        .lazy();
        let period = Period::parse("2026-Q3").unwrap();
        let courses = treatment_courses(episodes, cohorts, &period)
            .unwrap()
            .sort(["drug_atc", "days"], SortMultipleOptions::default())
            .collect()
            .unwrap();
        let rows: Vec<(String, String, i32, i64)> = (0..courses.height())
            .map(|i| {
                (
                    courses
                        .column("cohort")
                        .unwrap()
                        .str()
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_owned(),
                    courses
                        .column("drug_atc")
                        .unwrap()
                        .str()
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_owned(),
                    courses.column("days").unwrap().i32().unwrap().get(i).unwrap(),
                    courses.column("event").unwrap().i64().unwrap().get(i).unwrap(),
                )
            })
            .collect();
        let (_, to) = period.epoch_days();
        let since = |s: &str| to - d(s).unwrap();
        assert_eq!(
            rows,
            vec![
                // Emicizumab until the change of drug: an event.
                ("Emicizumab".to_owned(), "B02BX06".to_owned(), 184, 1),
                // Concizumab after the change of drug, stopped for inefficacy.
                ("Concizumab AAC".to_owned(), "B02BX07".to_owned(), 180, 1),
                // Stopped for common law with no episode after: not an event, censored at the stop.
                ("Concizumab AAC".to_owned(), "B02BX07".to_owned(), 271, 0),
                // AAC, early access, common law: one course, no event.
                (
                    "Concizumab AAC".to_owned(),
                    "B02BX07".to_owned(),
                    since("2025-01-10"),
                    0
                ),
                // Transferred and carried on: one course from the first administration.
                (
                    "Concizumab AAC".to_owned(),
                    "B02BX07".to_owned(),
                    since("2025-01-05"),
                    0
                ),
            ],
            "a change of pathway is no stop, a change of drug is one, a gene therapy is no course"
        );
    }

    /// Rows of a frame as (group columns..., days, event), sorted.
    fn durations_rows(frame: LazyFrame, groups: &[&str]) -> Vec<(Vec<String>, i32, i64)> {
        let df = frame.collect().unwrap();
        let mut rows: Vec<(Vec<String>, i32, i64)> = (0..df.height())
            .map(|i| {
                (
                    groups
                        .iter()
                        .map(|g| df.column(g).unwrap().str().unwrap().get(i).unwrap().to_owned())
                        .collect(),
                    df.column("days").unwrap().i32().unwrap().get(i).unwrap(),
                    df.column("event").unwrap().i64().unwrap().get(i).unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn a_stay_on_a_pathway_ends_when_the_patient_leaves_it_for_any_reason() {
        let period = Period::parse("2026-Q3").unwrap();
        let (_, to) = period.epoch_days();
        let days = |from: &str, until: &str| d(until).unwrap() - d(from).unwrap();
        let since = |from: &str| to - d(from).unwrap();
        let row =
            |drug: &str, pathway: &str, days: i32, event: i64| (vec![drug.to_owned(), pathway.to_owned()], days, event);
        let mut expected = vec![
            // p1: AAC, left for its early access; early access, left for common law; common law,
            // going on.
            row("B02BX07", "AAC", days("2025-01-10", "2025-06-01"), 1),
            row("B02BX07", "AAP_POST", days("2025-06-05", "2026-01-01"), 1),
            row("B02BX07", "COMMON_LAW", since("2026-01-03"), 0),
            // p2: emicizumab under CPC until the change of drug; concizumab under AAC, stopped.
            row("B02BX06", "CPC", days("2025-03-01", "2025-09-01"), 1),
            row("B02BX07", "AAC", days("2025-09-02", "2026-03-01"), 1),
            // p3: one stay across the transfer, going on.
            row("B02BX07", "AAC", since("2025-01-05"), 0),
            // p5: left AAC for common law.
            row("B02BX07", "AAC", days("2025-03-05", "2025-12-01"), 1),
        ];
        expected.sort();
        assert_eq!(
            durations_rows(pathway_stays(journeys(), &period).unwrap(), &["drug_atc", "pathway"]),
            expected
        );
    }

    #[test]
    fn the_time_to_common_law_runs_from_the_first_derogatory_administration_with_stops_competing() {
        let period = Period::parse("2026-Q3").unwrap();
        let (_, to) = period.epoch_days();
        let days = |from: &str, until: &str| d(until).unwrap() - d(from).unwrap();
        let row = |drug: &str, days: i32, event: i64| (vec![drug.to_owned()], days, event);
        let mut expected = vec![
            // p1: common law reached at its first common-law administration.
            row("B02BX07", days("2025-01-10", "2026-01-03"), 1),
            // p2: emicizumab switched to another drug, concizumab stopped: competing events.
            row("B02BX06", days("2025-03-01", "2025-09-01"), 2),
            row("B02BX07", days("2025-09-02", "2026-03-01"), 2),
            // p3: going on under AAC: censored at the end of the period.
            row("B02BX07", to - d("2025-01-05").unwrap(), 0),
            // p5: stopped for common law: reached at the stop.
            row("B02BX07", days("2025-03-05", "2025-12-01"), 1),
        ];
        expected.sort();
        assert_eq!(
            durations_rows(time_to_common_law(journeys(), &period).unwrap(), &["drug_atc"]),
            expected,
            "p4's gene therapy under common law is no course and no derogatory access"
        );
    }

    #[test]
    fn cumulative_incidence_matches_a_hand_computed_aalen_johansen_estimate() {
        // Days 60 (common law), 90 (stopped: competing), 150 (common law), 150 (censored),
        // 240 (common law), 300 (censored).
        let durations = df!(
            "drug_atc" => ["A"; 6],
            "days" => [60i32, 90, 150, 150, 240, 300],
            "event" => [1i64, 2, 1, 0, 1, 0],
        )
        .unwrap();
        let out = cumulative_incidence(&durations, "drug_atc", &[6, 12]).unwrap();
        let f = |c: &str, i: usize| out.column(c).unwrap().f64().unwrap().get(i).unwrap();
        let n = |c: &str, i: usize| out.column(c).unwrap().i64().unwrap().get(i).unwrap();
        // 6 months = 183 days: 1/6 at day 60, then S(90) = 4/6 and 1 of 4 at risk at day 150.
        assert!((f("common_law_share", 0) - 1.0 / 3.0).abs() < 1e-12);
        // 12 months: S(150) = 1/2, 1 of 2 at risk at day 240: 1/3 + 1/4.
        assert!((f("common_law_share", 1) - 7.0 / 12.0).abs() < 1e-12);
        // One minus Kaplan-Meier with the stop censored would say 0.6875: the competing stop counts.
        assert!(f("common_law_share", 1) < 0.6875);
        assert_eq!((n("courses", 0), n("at_risk", 0), n("at_risk", 1)), (6, 2, 0));
        // Delta-method limits on the log(-log) scale, as lifelines 0.30 gives them
        // (variances 0.037037 and 0.050926).
        for (i, low, high) in [(0, 0.046082, 0.675564), (1, 0.110745, 0.876322)] {
            assert!((f("ci_low", i) - low).abs() < 1e-6, "{}", f("ci_low", i));
            assert!((f("ci_high", i) - high).abs() < 1e-6, "{}", f("ci_high", i));
        }
        // Half the courses reached common law at day 240.
        assert!((f("median_months", 0) - 240.0 / DAYS_PER_MONTH).abs() < 1e-12);
    }

    #[test]
    fn kaplan_meier_matches_a_hand_computed_curve() {
        // Cohort A: events at 5, 12, 20 days; censored at 8 and 25.
        let durations = df!(
            "cohort" => ["A"; 5],
            "days" => [5i32, 8, 12, 20, 25],
            "event" => [1i64, 0, 1, 1, 0],
        )
        .unwrap()
        .lazy();
        let curve = kaplan_meier(durations.clone(), "cohort").unwrap().collect().unwrap();
        let surv: Vec<f64> = curve
            .column("survival")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let expected = [0.8, 0.8, 0.8 * 2.0 / 3.0, 0.8 * 2.0 / 3.0 * 0.5, 0.8 * 2.0 / 3.0 * 0.5];
        for (a, b) in surv.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{surv:?}");
        }
        let at_risk: Vec<i64> = curve
            .column("at_risk")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(at_risk, vec![5, 4, 3, 2, 1]);

        // Horizons given in months of 30.4375 days: 10 days is not a whole month, so use a
        // scaled copy where one month = one unit of 30.4375 days.
        let scaled = durations.with_column(
            (col("days") * lit(30.4375))
                .round(0, RoundMode::HalfToEven)
                .cast(DataType::Int32)
                .alias("days"),
        );
        let table = persistence(scaled.clone(), "cohort", &[10, 22])
            .unwrap()
            .collect()
            .unwrap();
        let curve = kaplan_meier(scaled, "cohort").unwrap().collect().unwrap();
        let table = with_median_intervals(table, &curve, "cohort").unwrap();
        let table = with_km_intervals(table).unwrap();
        let get = |c: &str, i: usize| {
            table
                .column(c)
                .unwrap()
                .cast(&DataType::Float64)
                .unwrap()
                .f64()
                .unwrap()
                .get(i)
        };
        assert_eq!(get("courses", 0), Some(5.0));
        assert_eq!(get("at_risk", 0), Some(3.0));
        assert!((get("survival", 0).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(get("at_risk", 1), Some(1.0));
        assert!((get("survival", 1).unwrap() - 0.8 * 2.0 / 3.0 * 0.5).abs() < 1e-12);
        assert!((get("median_months", 0).unwrap() - 20.0).abs() < 0.05);
        // Greenwood log(-log) limits for S = 0.8 with n = 5, d = 1: (0.2038, 0.9692).
        assert!(
            (get("ci_low", 0).unwrap() - 0.2038).abs() < 1e-3,
            "{:?}",
            get("ci_low", 0)
        );
        assert!(
            (get("ci_high", 0).unwrap() - 0.9692).abs() < 1e-3,
            "{:?}",
            get("ci_high", 0)
        );
    }

    fn patients() -> LazyFrame {
        df!(
            "patient_key" => ["p1", "p2", "p3", "p4"],
            "sex" => ["MALE", "FEMALE", "MALE", "MALE"],
            "birth_month_index" => [2010 * 12 + 5, 1980 * 12, 2025 * 12 + 11, 1950 * 12],
            "region_code" => [Some("11"), Some("84"), Some("11"), None],
        )
        .unwrap()
        .lazy()
    }

    #[test]
    fn equity_tables_count_each_treated_patient_once() {
        let q3 = Period::parse("2026-Q3").unwrap();
        let population = df!("region_code" => ["11", "84"], "population" => [1_000_000i64, 2_000_000])
            .unwrap()
            .lazy();
        let out = treated_per_million(episodes(), patients(), population, &q3)
            .collect()
            .unwrap();
        // Treated in Q3: p1 (two episodes, counted once) and p2, both known regions.
        let rows: Vec<(String, i64, f64)> = (0..out.height())
            .map(|i| {
                (
                    out.column("region_code")
                        .unwrap()
                        .str()
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_owned(),
                    out.column("treated_patients").unwrap().i64().unwrap().get(i).unwrap(),
                    out.column("per_million").unwrap().f64().unwrap().get(i).unwrap(),
                )
            })
            .collect();
        assert_eq!(rows, vec![("11".into(), 1, 1.0), ("84".into(), 1, 0.5)]);

        let ages = treated_by_age_sex(episodes(), patients(), &q3).collect().unwrap();
        let bands: Vec<(String, String)> = (0..ages.height())
            .map(|i| {
                (
                    ages.column("sex").unwrap().str().unwrap().get(i).unwrap().to_owned(),
                    ages.column("age_band")
                        .unwrap()
                        .str()
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        // p2 born 1980-01 is 46 at 2026-09-30; p1 born 2010-06 is 16.
        assert_eq!(
            bands,
            vec![("FEMALE".into(), "40-64".into()), ("MALE".into(), "12-17".into())]
        );

        let centres = df!("centre_finess" => ["750100125"], "centre_type" => ["CCMR"])
            .unwrap()
            .lazy();
        let types = treated_by_centre_type(episodes(), centres, &q3).collect().unwrap();
        assert_eq!(types.column("treated_patients").unwrap().i64().unwrap().get(0), Some(2));
        assert_eq!(
            types.column("share_percent").unwrap().f64().unwrap().get(0),
            Some(100.0)
        );
        assert!(region_population().unwrap().collect().unwrap().height() == 18);
    }

    #[test]
    fn access_routes_split_treated_patients_between_derogatory_and_common_law() {
        let episodes = episodes().with_column(
            when(col("patient_key").eq(lit("p2")))
                .then(lit("COMMON_LAW"))
                .otherwise(col("pathway"))
                .alias("pathway"),
        );
        let out = access_routes(episodes, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        let rows: Vec<(String, String, i64, f64)> = (0..out.height())
            .map(|i| {
                (
                    out.column("drug_atc")
                        .unwrap()
                        .str()
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_owned(),
                    out.column("access").unwrap().str().unwrap().get(i).unwrap().to_owned(),
                    out.column("treated_patients").unwrap().i64().unwrap().get(i).unwrap(),
                    out.column("share_percent").unwrap().f64().unwrap().get(i).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("B02BX06".into(), "derogatory".into(), 1, 100.0),
                ("B02BX07".into(), "common_law".into(), 1, 50.0),
                ("B02BX07".into(), "derogatory".into(), 1, 50.0),
            ]
        );
    }

    #[test]
    fn follow_ups_are_overdue_after_the_schedule_and_a_grace_period() {
        // Schedule every 3 months (91.3 days) + 30 days of grace; period ends 2026-09-30.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2", "e3", "e4"]).into(),
            Series::new("cohort_id".into(), ["c", "c", "c", "c"]).into(),
            Series::new("centre_finess".into(), ["750100125"; 4]).into(),
            dates(
                "first_administration_date",
                vec![d("2026-01-01"), d("2026-01-01"), d("2026-08-01"), d("2026-01-01")],
            ),
            dates("end_date", vec![None, None, None, d("2026-06-01")]),
        ])
        .unwrap()
        .lazy();
        let cohorts = df!("cohort_id" => ["c"], "follow_up_months" => [3i32]).unwrap().lazy();
        // e1 seen on 2026-08-15 (up to date); e2 last seen 2026-03-01 (overdue); e3 started in
        // August, no visit yet (not yet due); e4 ended before the end of the period (left out).
        let visits = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2"]).into(),
            dates("visit_date", vec![d("2026-08-15"), d("2026-03-01")]),
        ])
        .unwrap()
        .lazy();
        let out = overdue_follow_ups(episodes, cohorts, visits, &Period::parse("2026-Q3").unwrap())
            .collect()
            .unwrap();
        assert_eq!(out.column("episodes_followed").unwrap().i64().unwrap().get(0), Some(3));
        assert_eq!(out.column("overdue").unwrap().i64().unwrap().get(0), Some(1));
    }

    #[test]
    fn requests_count_each_step_of_the_history_once() {
        // e1: submitted in Q3, granted in Q3, suspended and reinstated (GRANTED twice), renewed
        // after Q3. e2: submitted before Q3, refused in Q3.
        let events = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e1", "e1", "e1", "e1", "e2", "e2"]).into(),
            Series::new("pathway".into(), ["AAC"; 7]).into(),
            Series::new("version".into(), [1i64, 2, 3, 4, 5, 1, 2]).into(),
            Series::new(
                "status".into(),
                [
                    "SUBMITTED",
                    "GRANTED",
                    "SUSPENDED",
                    "GRANTED",
                    "RENEWED",
                    "SUBMITTED",
                    "REFUSED",
                ],
            )
            .into(),
            dates(
                "submitted_date",
                vec![
                    d("2026-07-01"),
                    d("2026-07-01"),
                    d("2026-07-01"),
                    d("2026-07-01"),
                    d("2026-07-01"),
                    d("2026-06-01"),
                    d("2026-06-01"),
                ],
            ),
            dates(
                "decision_date",
                vec![
                    None,
                    d("2026-07-20"),
                    d("2026-07-20"),
                    d("2026-07-20"),
                    d("2027-07-01"),
                    None,
                    d("2026-08-01"),
                ],
            ),
        ])
        .unwrap()
        .lazy();
        let episodes = df!("episode_key" => ["e1", "e2"], "drug_atc" => ["B02BX07", "B02BX07"])
            .unwrap()
            .lazy();
        let out = requests(events, episodes, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        let steps = text_counts(&out, "step", "requests");
        assert_eq!(
            steps,
            vec![("granted".into(), 1), ("refused".into(), 1), ("submitted".into(), 1)]
        );
    }

    fn framing() -> (LazyFrame, LazyFrame) {
        let cohorts = df!("cohort_id" => ["aac", "cpc"], "framework_id" => [None, Some("f-cpc")])
            .unwrap()
            .lazy();
        let frameworks = DataFrame::new_infer_height(vec![
            Series::new("framework_id".into(), ["f-cpc"]).into(),
            dates("valid_from", vec![d("2026-05-01")]),
        ])
        .unwrap()
        .lazy();
        (cohorts, frameworks)
    }

    /// (measure, pathway) -> (episodes, median days) of a timeliness table.
    fn timeliness_rows(out: &DataFrame) -> Vec<(String, String, i64, f64)> {
        (0..out.height())
            .map(|i| {
                let s = |c: &str| out.column(c).unwrap().str().unwrap().get(i).unwrap().to_owned();
                (
                    s("measure"),
                    s("pathway"),
                    out.column("episodes").unwrap().i64().unwrap().get(i).unwrap(),
                    out.column("median_days").unwrap().f64().unwrap().get(i).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn timeliness_gives_medians_and_quartiles() {
        let (cohorts, frameworks) = framing();
        let h1 = Period::parse("2026-06").unwrap();
        let out = timeliness(episodes(), cohorts.clone(), frameworks.clone(), &h1)
            .unwrap()
            .collect()
            .unwrap();
        // Decisions in June 2026: p1 (10 days). First administrations in June: none.
        assert_eq!(
            timeliness_rows(&out),
            vec![("request_to_decision".into(), "AAC".into(), 1, 10.0)]
        );

        let y = Period::parse("2026").unwrap();
        let out = timeliness(episodes(), cohorts, frameworks, &y)
            .unwrap()
            .collect()
            .unwrap();
        let row = (0..out.height())
            .find(|&i| {
                out.column("measure").unwrap().str().unwrap().get(i) == Some("decision_to_first_administration")
                    && out.column("pathway").unwrap().str().unwrap().get(i) == Some("AAC")
            })
            .unwrap();
        // AAC first administrations in 2026: p1 (20 days after decision), p2 (11 days).
        assert_eq!(out.column("episodes").unwrap().i64().unwrap().get(row), Some(2));
        assert_eq!(out.column("median_days").unwrap().f64().unwrap().get(row), Some(15.5));
        assert_eq!(out.column("q1_days").unwrap().f64().unwrap().get(row), Some(13.25));
        assert_eq!(out.column("q3_days").unwrap().f64().unwrap().get(row), Some(17.75));
        assert_eq!(
            timeliness_rows(&out),
            vec![
                ("decision_to_first_administration".into(), "AAC".into(), 2, 15.5),
                // The CPC episode's recorded decision date is its request date: it is no decision
                // and gives no "0 days to decision".
                ("framework_grant_to_first_patient".into(), "CPC".into(), 1, 80.0),
                ("request_to_decision".into(), "AAC".into(), 2, 15.0),
                // p1: 30 days, p2: 31 days.
                ("request_to_first_administration".into(), "AAC".into(), 2, 30.5),
                ("request_to_first_administration".into(), "CPC".into(), 1, 30.0),
            ],
            "request to decision only where a decision exists; framework grant to first patient"
        );
    }

    /// (text, count) of each row, from a text column and a count column.
    fn text_counts(out: &DataFrame, text: &str, count: &str) -> Vec<(String, i64)> {
        let (text, count) = (
            out.column(text).unwrap().str().unwrap(),
            out.column(count).unwrap().i64().unwrap(),
        );
        (0..out.height())
            .map(|i| (text.get(i).unwrap().to_owned(), count.get(i).unwrap()))
            .collect()
    }

    fn rows(out: &DataFrame, columns: &[&str]) -> Vec<Vec<String>> {
        (0..out.height())
            .map(|i| {
                columns
                    .iter()
                    .map(|c| out.column(c).unwrap().get(i).unwrap().str_value().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn frameworks_near_their_end_come_with_the_patients_they_frame() {
        // Q3 ends 2026-09-30: F1 ends in 20 days, F2 in 75 days, F3 in 200 days, F4 has ended,
        // F5 is suspended.
        let frameworks = DataFrame::new_infer_height(vec![
            Series::new("framework_id".into(), ["F1", "F2", "F3", "F4", "F5"]).into(),
            Series::new("pathway".into(), ["AAP_PRE", "CPC", "AAP_POST", "CPC", "AAP_PRE"]).into(),
            Series::new("drug_atc".into(), ["B02BX07"; 5]).into(),
            Series::new("status".into(), ["GRANTED", "RENEWED", "GRANTED", "ENDED", "SUSPENDED"]).into(),
            dates(
                "valid_to",
                vec![
                    d("2026-10-20"),
                    d("2026-12-14"),
                    d("2027-04-18"),
                    d("2026-10-01"),
                    d("2026-10-10"),
                ],
            ),
        ])
        .unwrap()
        .lazy();
        let cohorts = df!("cohort_id" => ["C1", "C2"], "framework_id" => ["F1", "F2"])
            .unwrap()
            .lazy();
        // Two patients on treatment at the end of Q3 under F1 (one with two episodes), one who
        // stopped in August; none under F2.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new("patient_key".into(), ["p1", "p1", "p2", "p3"]).into(),
            Series::new("cohort_id".into(), ["C1", "C1", "C1", "C1"]).into(),
            dates(
                "first_administration_date",
                vec![d("2026-01-01"), d("2026-05-01"), d("2026-09-30"), d("2026-02-01")],
            ),
            dates("end_date", vec![None, None, None, d("2026-08-01")]),
        ])
        .unwrap()
        .lazy();
        let out = expiring_frameworks(frameworks, cohorts, episodes, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            rows(&out, &["window", "framework_id", "patients_on_treatment"]),
            vec![
                vec!["<=30d", "F1", "2"],
                vec!["<=60d", "F1", "2"],
                vec!["<=90d", "F1", "2"],
                vec!["<=90d", "F2", "0"],
            ]
        );
    }

    #[test]
    fn a_change_of_drug_onto_common_law_is_no_transition_to_common_law() {
        // p1: emicizumab under CPC, then concizumab under common law: a change of drug and pathway.
        // p2: concizumab under AAC, then concizumab under common law: a transition.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["a1", "a2", "b1", "b2"]).into(),
            Series::new("patient_key".into(), ["p1", "p1", "p2", "p2"]).into(),
            Series::new("pathway".into(), ["CPC", "COMMON_LAW", "AAC", "COMMON_LAW"]).into(),
            Series::new("drug_atc".into(), ["B02BX06", "B02BX07", "B02BX07", "B02BX07"]).into(),
            Series::new("previous_episode_key".into(), [None, Some("a1"), None, Some("b1")]).into(),
            Series::new("stop_reason".into(), [Some("SWITCH"), None, Some("COMMON_LAW"), None]).into(),
            dates(
                "request_date",
                vec![d("2026-01-01"), d("2026-07-01"), d("2026-01-01"), d("2026-08-01")],
            ),
            dates(
                "first_administration_date",
                vec![d("2026-01-10"), d("2026-07-15"), d("2026-01-10"), d("2026-08-05")],
            ),
            dates("end_date", vec![d("2026-07-14"), None, d("2026-08-04"), None]),
        ])
        .unwrap()
        .lazy();
        let out = switches(episodes, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            rows(
                &out,
                &["change", "from_pathway", "from_drug_atc", "to_pathway", "to_drug_atc"]
            ),
            vec![
                vec!["drug_and_pathway", "CPC", "B02BX06", "COMMON_LAW", "B02BX07"],
                vec!["transition_to_common_law", "AAC", "B02BX07", "COMMON_LAW", "B02BX07"],
            ]
        );
    }

    #[test]
    fn switches_classify_the_change_and_find_transitions_to_common_law() {
        // p1: AAC drug A -> CPC drug B in Q3 (drug and pathway); p2: AAP drug A -> common law
        // drug A in Q3; p3: stopped for common law in Q3 with no episode after; p4: a switch in
        // Q2 (outside); p5: drug change within CPC in Q3.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new(
                "episode_key".into(),
                ["a1", "a2", "b1", "b2", "c1", "d1", "d2", "e1", "e2"],
            )
            .into(),
            Series::new(
                "patient_key".into(),
                ["p1", "p1", "p2", "p2", "p3", "p4", "p4", "p5", "p5"],
            )
            .into(),
            Series::new(
                "pathway".into(),
                [
                    "AAC",
                    "CPC",
                    "AAP_POST",
                    "COMMON_LAW",
                    "AAP_POST",
                    "AAC",
                    "AAC",
                    "CPC",
                    "CPC",
                ],
            )
            .into(),
            Series::new("drug_atc".into(), ["A", "B", "A", "A", "A", "A", "B", "A", "B"]).into(),
            Series::new(
                "previous_episode_key".into(),
                [
                    None,
                    Some("a1"),
                    None,
                    Some("b1"),
                    None,
                    None,
                    Some("d1"),
                    None,
                    Some("e1"),
                ],
            )
            .into(),
            Series::new(
                "stop_reason".into(),
                [
                    Some("SWITCH"),
                    None,
                    Some("COMMON_LAW"),
                    None,
                    Some("COMMON_LAW"),
                    Some("SWITCH"),
                    None,
                    Some("SWITCH"),
                    None,
                ],
            )
            .into(),
            dates(
                "request_date",
                vec![
                    d("2026-01-01"),
                    d("2026-07-01"),
                    d("2026-01-01"),
                    d("2026-08-01"),
                    d("2026-01-01"),
                    d("2026-01-01"),
                    d("2026-05-01"),
                    d("2026-01-01"),
                    d("2026-09-01"),
                ],
            ),
            dates(
                "first_administration_date",
                vec![
                    d("2026-01-10"),
                    d("2026-07-15"),
                    d("2026-01-10"),
                    d("2026-08-05"),
                    d("2026-01-10"),
                    d("2026-01-10"),
                    d("2026-05-10"),
                    d("2026-01-10"),
                    None,
                ],
            ),
            dates(
                "end_date",
                vec![
                    d("2026-07-14"),
                    None,
                    d("2026-08-04"),
                    None,
                    d("2026-09-01"),
                    d("2026-05-09"),
                    None,
                    d("2026-08-31"),
                    None,
                ],
            ),
        ])
        .unwrap()
        .lazy();
        let out = switches(episodes, &Period::parse("2026-Q3").unwrap())
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            rows(
                &out,
                &[
                    "change",
                    "from_pathway",
                    "from_drug_atc",
                    "to_pathway",
                    "to_drug_atc",
                    "patients"
                ]
            ),
            vec![
                vec!["drug", "CPC", "A", "CPC", "B", "1"],
                vec!["drug_and_pathway", "AAC", "A", "CPC", "B", "1"],
                vec!["transition_to_common_law", "AAP_POST", "A", "COMMON_LAW", "A", "2"],
            ]
        );
    }

    #[test]
    fn completeness_counts_only_items_that_can_be_missing_and_efficacy_assessed_apart() {
        // Three AAC episodes at one centre on treatment in Q3. e1 complete. e2: unknown sex, no
        // region, no dosage, one visit whose efficacy was "not assessable", an adverse event of
        // unknown outcome with no SOC, serious and not declared. e3 started in September: too
        // recent for a visit to be expected.
        let episodes = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2", "e3"]).into(),
            Series::new("patient_key".into(), ["p1", "p2", "p3"]).into(),
            Series::new("centre_finess".into(), ["750100125"; 3]).into(),
            Series::new("pathway".into(), ["AAC"; 3]).into(),
            Series::new("orpha_code".into(), ["98878"; 3]).into(),
            Series::new("dosage_recorded".into(), [true, false, true]).into(),
            dates("decision_date", vec![d("2026-01-05"), None, d("2026-09-01")]),
            dates(
                "first_administration_date",
                vec![d("2026-01-10"), d("2026-02-10"), d("2026-09-10")],
            ),
            dates("end_date", vec![None, None, None]),
        ])
        .unwrap()
        .lazy();
        let patients = DataFrame::new_infer_height(vec![
            Series::new("patient_key".into(), ["p1", "p2", "p3"]).into(),
            Series::new("sex".into(), ["FEMALE", "UNKNOWN", "MALE"]).into(),
            Series::new("birth_year_month".into(), ["2010-01", "2012-03", "2015-06"]).into(),
            Series::new("region_code".into(), [Some("11"), None, Some("93")]).into(),
        ])
        .unwrap()
        .lazy();
        let follow_ups = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2"]).into(),
            dates("visit_date", vec![d("2026-08-01"), d("2026-08-01")]),
            Series::new("efficacy".into(), ["STABLE", "NOT_ASSESSABLE"]).into(),
        ])
        .unwrap()
        .lazy();
        let events = DataFrame::new_infer_height(vec![
            Series::new("episode_key".into(), ["e1", "e2"]).into(),
            dates("onset_date", vec![d("2026-08-01"), d("2026-08-02")]),
            Series::new("outcome".into(), ["RECOVERED", "UNKNOWN"]).into(),
            Series::new("meddra_soc_code".into(), [Some("10005329"), None]).into(),
            Series::new("serious".into(), [true, true]).into(),
            Series::new("pv_declared".into(), [true, false]).into(),
        ])
        .unwrap()
        .lazy();
        let out = completeness(
            episodes,
            patients,
            follow_ups,
            events,
            &Period::parse("2026-Q3").unwrap(),
        )
        .unwrap()
        .collect()
        .unwrap();
        assert_eq!(
            rows(&out, &["field", "episodes", "complete", "complete_percent"]),
            vec![
                vec!["adverse_event_outcome", "2", "1", "50.0"],
                vec!["adverse_event_soc", "2", "1", "50.0"],
                vec!["dosage", "3", "2", "66.7"],
                // e2's "not assessable" visit is a visit, not an assessment.
                vec!["efficacy_assessed", "2", "1", "50.0"],
                vec!["follow_up_visit", "2", "2", "100.0"],
                vec!["patient_region", "3", "2", "66.7"],
                vec!["patient_sex", "3", "2", "66.7"],
                vec!["serious_adverse_event_declared", "2", "1", "50.0"],
            ],
            "no birth month, ORPHA code or decision date: the registry never lets them go missing"
        );
    }
}
