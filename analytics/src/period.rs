//! Reporting periods: a quarter (`2026-Q3`), a month (`2026-09`), a year (`2026`), or explicit
//! bounds. Both bounds are inclusive calendar dates.

use std::fmt;

use chrono::{Datelike, Months, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid period {input:?}: {reason}")]
pub struct PeriodError {
    pub input: String,
    pub reason: &'static str,
}

impl Period {
    /// Parses `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub fn parse(input: &str) -> Result<Period, PeriodError> {
        let err = |reason| PeriodError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let year = |y: &str| -> Result<i32, PeriodError> {
            if y.len() != 4 {
                return Err(err("the year must have 4 digits"));
            }
            y.parse().map_err(|_| err("the year must be a number"))
        };
        let first = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(|| err("no such month"));
        let span = |start: NaiveDate, months: u32| -> Result<Period, PeriodError> {
            let end = start
                .checked_add_months(Months::new(months))
                .and_then(|d| d.pred_opt())
                .ok_or_else(|| err("out of range"))?;
            Ok(Period { from: start, to: end })
        };
        match s.split_once('-') {
            None => span(first(year(s)?, 1)?, 12),
            Some((y, q)) if q.starts_with('Q') || q.starts_with('q') => {
                let n: u32 = q[1..].parse().map_err(|_| err("the quarter must be Q1 to Q4"))?;
                if !(1..=4).contains(&n) {
                    return Err(err("the quarter must be Q1 to Q4"));
                }
                span(first(year(y)?, (n - 1) * 3 + 1)?, 3)
            }
            Some((y, m)) => {
                if m.len() != 2 {
                    return Err(err("the month must have 2 digits"));
                }
                let month: u32 = m.parse().map_err(|_| err("the month must be a number"))?;
                if !(1..=12).contains(&month) {
                    return Err(err("the month must be 01 to 12"));
                }
                span(first(year(y)?, month)?, 1)
            }
        }
    }

    /// Explicit bounds, `from` <= `to`.
    pub fn between(from: NaiveDate, to: NaiveDate) -> Result<Period, PeriodError> {
        if to < from {
            return Err(PeriodError {
                input: format!("{from}..{to}"),
                reason: "--to is before --from",
            });
        }
        Ok(Period { from, to })
    }

    /// Days since 1970-01-01 of both bounds, as polars stores dates.
    pub fn epoch_days(&self) -> (i32, i32) {
        (epoch_days(self.from), epoch_days(self.to))
    }

    /// A label for file names and titles: `2026-Q3`, `2026-09`, `2026`, or `from_to`.
    pub fn label(&self) -> String {
        let (f, t) = (self.from, self.to);
        let whole_months = f.day() == 1 && t.succ_opt().is_some_and(|n| n.day() == 1);
        let months = (t.year() - f.year()) * 12 + t.month() as i32 - f.month() as i32 + 1;
        match (whole_months, months) {
            (true, 12) if f.month() == 1 => format!("{}", f.year()),
            (true, 3) if (f.month() - 1) % 3 == 0 => format!("{}-Q{}", f.year(), (f.month() - 1) / 3 + 1),
            (true, 1) => format!("{}-{:02}", f.year(), f.month()),
            _ => format!("{f}_{t}"),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} to {})", self.label(), self.from, self.to)
    }
}

pub fn epoch_days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((d - epoch).num_days()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn quarters_months_and_years_cover_whole_calendar_spans() {
        assert_eq!(
            Period::parse("2026-Q3").unwrap(),
            Period {
                from: d(2026, 7, 1),
                to: d(2026, 9, 30)
            }
        );
        assert_eq!(
            Period::parse("2026-09").unwrap(),
            Period {
                from: d(2026, 9, 1),
                to: d(2026, 9, 30)
            }
        );
        assert_eq!(Period::parse("2024-02").unwrap().to, d(2024, 2, 29));
        assert_eq!(
            Period::parse("2026").unwrap(),
            Period {
                from: d(2026, 1, 1),
                to: d(2026, 12, 31)
            }
        );
        for p in ["2026-Q3", "2026-09", "2026"] {
            assert_eq!(Period::parse(p).unwrap().label(), p);
        }
        assert_eq!(
            Period::between(d(2026, 1, 5), d(2026, 2, 1)).unwrap().label(),
            "2026-01-05_2026-02-01"
        );
    }

    #[test]
    fn malformed_periods_say_why() {
        for bad in ["2026-Q5", "2026-13", "26", "2026-9", "x", "2026-Qx"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert!(Period::between(d(2026, 2, 1), d(2026, 1, 1)).is_err());
        assert_eq!(epoch_days(d(1970, 1, 2)), 1);
    }
}
