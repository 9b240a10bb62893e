//! Small-cell suppression of published tables.
//!
//! Primary suppression masks every count below the threshold, shown as `<threshold` (never 0).
//! Complementary suppression then makes sure no masked count can be recovered by subtraction:
//! along every dimension, each line of the table (the cells that differ only in that dimension,
//! whose sum a margin elsewhere would give) holds either no masked cell or at least two; when a
//! line holds exactly one, its smallest published cell is masked too, and the pass repeats until
//! nothing changes. Values derived from a count (a median over the episodes counted) are masked
//! with it.

use std::collections::BTreeMap;

use polars::prelude::*;

/// Default threshold: counts below 10 are masked.
pub const DEFAULT_THRESHOLD: u32 = 10;

/// How a table is published.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec<'a> {
    /// Columns that identify a cell.
    pub dimensions: &'a [&'a str],
    /// Count columns, each suppressed on its own.
    pub counts: &'a [&'a str],
    /// (value column, count column it is computed over): masked when the count is.
    pub dependents: &'a [(&'a str, &'a str)],
}

/// What suppression did to a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuppressionSummary {
    pub primary: u64,
    pub complementary: u64,
}

/// Masks, for one count column, which cells must not be published.
pub fn mask(values: &[i64], lines_by_dimension: &[Vec<Vec<usize>>], threshold: u32) -> (Vec<bool>, SuppressionSummary) {
    let t = i64::from(threshold);
    let mut masked: Vec<bool> = values.iter().map(|v| *v < t).collect();
    let mut summary = SuppressionSummary {
        primary: masked.iter().filter(|m| **m).count() as u64,
        complementary: 0,
    };
    loop {
        let mut changed = false;
        for lines in lines_by_dimension {
            for line in lines {
                if line.len() < 2 {
                    continue;
                }
                let hidden = line.iter().filter(|&&i| masked[i]).count();
                if hidden == 1 {
                    // Mask the smallest published cell of the line (first in table order on ties).
                    if let Some(&i) = line.iter().filter(|&&i| !masked[i]).min_by_key(|&&i| (values[i], i)) {
                        masked[i] = true;
                        summary.complementary += 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return (masked, summary);
        }
    }
}

/// Groups row indices into lines: for each dimension, the rows sharing all other dimensions.
pub fn lines(df: &DataFrame, dimensions: &[&str]) -> PolarsResult<Vec<Vec<Vec<usize>>>> {
    let keys: Vec<Vec<String>> = dimensions
        .iter()
        .map(|d| {
            let c = df.column(d)?.cast(&DataType::String)?;
            let s = c.str()?.clone();
            Ok((0..df.height()).map(|i| s.get(i).unwrap_or("").to_owned()).collect())
        })
        .collect::<PolarsResult<_>>()?;
    Ok((0..dimensions.len())
        .map(|free| {
            let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
            for row in 0..df.height() {
                let key: Vec<&str> = keys
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| *d != free)
                    .map(|(_, values)| values[row].as_str())
                    .collect();
                groups.entry(key).or_default().push(row);
            }
            groups.into_values().collect()
        })
        .collect())
}

/// Publishes a table: dimensions unchanged, counts and their dependent values as text, masked
/// ones shown as `<threshold`.
pub fn suppress(df: &DataFrame, spec: &TableSpec<'_>, threshold: u32) -> PolarsResult<(DataFrame, SuppressionSummary)> {
    let lines = lines(df, spec.dimensions)?;
    let hidden_text = format!("<{threshold}");
    let mut columns: Vec<Column> = Vec::new();
    for d in spec.dimensions {
        columns.push(df.column(d)?.cast(&DataType::String)?);
    }
    let mut total = SuppressionSummary::default();
    let mut masks: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for count in spec.counts {
        let column = df.column(count)?.cast(&DataType::Int64)?;
        let ca = column.i64()?;
        let values: Vec<i64> = (0..ca.len()).map(|i| ca.get(i).unwrap_or(0)).collect();
        let (masked, summary) = mask(&values, &lines, threshold);
        total.primary += summary.primary;
        total.complementary += summary.complementary;
        let text: Vec<String> = values
            .iter()
            .zip(&masked)
            .map(|(v, m)| if *m { hidden_text.clone() } else { v.to_string() })
            .collect();
        columns.push(Series::new((*count).into(), text).into());
        masks.insert(count, masked);
    }
    for (value, count) in spec.dependents {
        let masked = masks.get(count).cloned().unwrap_or_else(|| vec![false; df.height()]);
        let values = df.column(value)?.cast(&DataType::Float64)?;
        let values = values.f64()?;
        let text: Vec<Option<String>> = (0..df.height())
            .map(|i| {
                if masked[i] {
                    Some("suppressed".to_owned())
                } else {
                    values.get(i).map(format_number)
                }
            })
            .collect();
        columns.push(Series::new((*value).into(), text).into());
    }
    Ok((DataFrame::new_infer_height(columns)?, total))
}

/// Numbers as analysts expect them in a CSV: integers without a fraction, otherwise 2 decimals.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(df: &DataFrame, name: &str) -> Vec<String> {
        let ca = df.column(name).unwrap().str().unwrap().clone();
        (0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_owned()).collect()
    }

    /// Tries every subtraction an adversary could make from published line totals: a line with
    /// exactly one masked cell gives that cell away.
    fn recoverable(masked: &[bool], lines: &[Vec<Vec<usize>>]) -> Vec<usize> {
        let mut out = Vec::new();
        for by_dim in lines {
            for line in by_dim {
                let hidden: Vec<usize> = line.iter().copied().filter(|&i| masked[i]).collect();
                if line.len() >= 2 && hidden.len() == 1 {
                    out.push(hidden[0]);
                }
            }
        }
        out
    }

    #[test]
    fn a_lone_small_cell_takes_a_partner_in_every_line() {
        // 2 x 3 table: region x pathway.
        let df = df!(
            "region" => ["11", "11", "11", "84", "84", "84"],
            "pathway" => ["AAC", "CPC", "OFF_LABEL", "AAC", "CPC", "OFF_LABEL"],
            "n" => [3i64, 40, 25, 30, 12, 50],
        )
        .unwrap();
        let spec = TableSpec {
            dimensions: &["region", "pathway"],
            counts: &["n"],
            dependents: &[],
        };
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = texts(&published, "n");
        assert_eq!(summary.primary, 1);
        assert!(summary.complementary >= 2, "{summary:?}");
        assert_eq!(shown[0], "<10");
        assert!(!shown.iter().any(|s| s == "0" || s == "3"));
        // Row 11 and column AAC each need a second masked cell, and each new one may need
        // partners of its own: the pass repeats until every line is safe.
        let l = lines(&df, spec.dimensions).unwrap();
        let masked: Vec<bool> = shown.iter().map(|s| s.starts_with('<')).collect();
        assert!(recoverable(&masked, &l).is_empty());
    }

    #[test]
    fn no_masked_cell_is_recoverable_in_generated_tables() {
        // Deterministic pseudo-random 3-dimensional tables with many small counts.
        let mut state = 42u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64
        };
        for _ in 0..50 {
            let (mut a, mut b, mut c, mut n) = (vec![], vec![], vec![], vec![]);
            for i in 0..4 {
                for j in 0..3 {
                    for k in 0..3 {
                        if next() % 5 == 0 {
                            continue; // sparse: some cells do not exist
                        }
                        a.push(format!("a{i}"));
                        b.push(format!("b{j}"));
                        c.push(format!("c{k}"));
                        n.push(next() % 40);
                    }
                }
            }
            let df = df!("a" => a, "b" => b, "c" => c, "n" => n.clone()).unwrap();
            let spec = TableSpec {
                dimensions: &["a", "b", "c"],
                counts: &["n"],
                dependents: &[],
            };
            let (published, _) = suppress(&df, &spec, 10).unwrap();
            let shown = texts(&published, "n");
            let masked: Vec<bool> = shown.iter().map(|s| s == "<10").collect();
            for (i, s) in shown.iter().enumerate() {
                if n[i] < 10 {
                    assert_eq!(s, "<10", "a small count is published");
                } else if !masked[i] {
                    assert_eq!(s, &n[i].to_string());
                }
            }
            let l = lines(&df, spec.dimensions).unwrap();
            assert!(
                recoverable(&masked, &l).is_empty(),
                "a masked cell can be recovered by subtraction"
            );
        }
    }

    #[test]
    fn values_over_a_masked_count_are_masked_with_it() {
        let df = df!("pathway" => ["AAC", "CPC", "DIRECT"], "episodes" => [4i64, 30, 25], "median_days" => [12.0, 20.5, 7.0])
            .unwrap();
        let spec = TableSpec {
            dimensions: &["pathway"],
            counts: &["episodes"],
            dependents: &[("median_days", "episodes")],
        };
        let (published, _) = suppress(&df, &spec, 10).unwrap();
        let medians = texts(&published, "median_days");
        assert_eq!(medians, vec!["suppressed", "20.50", "suppressed"]);
    }
}
