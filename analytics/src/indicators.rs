//! Indicators: each a pure function from snapshot tables (lazy frames) to a lazy table, with no
//! IO, so that each is tested on tiny hand-computed frames.
//!
//! Dates are polars `Date` columns; arithmetic happens on their day numbers (`Int32`).

use polars::prelude::*;

use crate::period::Period;

/// Day number of a `Date` column.
fn day(name: &str) -> Expr {
    col(name).cast(DataType::Int32)
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
    let (from, to) = period.epoch_days();
    let first = day("first_administration_date");
    let end = day("end_date");
    let started_by_end = first.clone().is_not_null().and(first.clone().lt_eq(lit(to)));
    let not_ended_before = end.clone().is_null().or(end.gt_eq(lit(from)));
    episodes
        .join(
            centres.select([col("centre_finess"), col("region_code")]),
            [col("centre_finess")],
            [col("centre_finess")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            within(first, period).alias("is_new"),
            started_by_end.and(not_ended_before).alias("is_active"),
        ])
        .filter(col("is_active"))
        .group_by(ACTIVITY_DIMENSIONS.iter().map(|c| col(*c)).collect::<Vec<_>>())
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
        .sort(
            ACTIVITY_DIMENSIONS.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
}

/// Dimensions of the timeliness table.
pub const TIMELINESS_DIMENSIONS: &[&str] = &["measure", "pathway", "drug_atc"];

/// Timeliness: days from request to decision (decisions in the period) and from decision to
/// first administration (first administrations in the period), by pathway and drug: number of
/// episodes, median and interquartile range (linear interpolation).
pub fn timeliness(episodes: LazyFrame, period: &Period) -> PolarsResult<LazyFrame> {
    let request = day("request_date");
    let decision = day("decision_date");
    let first = day("first_administration_date");
    let to_decision = episodes
        .clone()
        .filter(within(decision.clone(), period).and(request.clone().is_not_null()))
        .select([
            lit("request_to_decision").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (decision.clone() - request).alias("days"),
        ]);
    let to_first = episodes
        .filter(within(first.clone(), period).and(decision.clone().is_not_null()))
        .select([
            lit("decision_to_first_administration").alias("measure"),
            col("pathway"),
            col("drug_atc"),
            (first - decision).alias("days"),
        ]);
    Ok(concat([to_decision, to_first], UnionArgs::default())?
        .group_by(TIMELINESS_DIMENSIONS.iter().map(|c| col(*c)).collect::<Vec<_>>())
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
        .sort(
            TIMELINESS_DIMENSIONS
                .iter()
                .map(|c| (*c).to_owned())
                .collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        ))
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
                vec![d("2026-06-11"), d("2026-01-21"), d("2025-01-05"), None, d("2026-07-10")],
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
    fn timeliness_gives_medians_and_quartiles() {
        let h1 = Period::parse("2026-06").unwrap();
        let out = timeliness(episodes(), &h1).unwrap().collect().unwrap();
        // Decisions in June 2026: p1 (10 days). First administrations in June: none.
        assert_eq!(out.height(), 1);
        assert_eq!(
            out.column("measure").unwrap().str().unwrap().get(0),
            Some("request_to_decision")
        );
        assert_eq!(out.column("episodes").unwrap().i64().unwrap().get(0), Some(1));
        assert_eq!(out.column("median_days").unwrap().f64().unwrap().get(0), Some(10.0));

        let y = Period::parse("2026").unwrap();
        let out = timeliness(episodes(), &y).unwrap().collect().unwrap();
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
    }
}
