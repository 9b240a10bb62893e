//! What a worklist shows: which authorisations expire soon, which follow-up visits are late,
//! which declared treatments never started. Pure: "today" is an argument.

use chrono::{Months, NaiveDate};

use crate::model::{AuthorisationStatus, EpisodeStatus};

/// The horizons a worklist may look ahead, in days.
pub const HORIZONS: [u32; 3] = [30, 60, 90];

/// The horizon asked (0: the first), or `None` when it is not one of [`HORIZONS`].
pub fn horizon(asked: u32) -> Option<u32> {
    match asked {
        0 => Some(HORIZONS[0]),
        d if HORIZONS.contains(&d) => Some(d),
        _ => None,
    }
}

/// Whether an authorisation is in force (its expiry is something to act on).
pub fn in_force(status: AuthorisationStatus) -> bool {
    matches!(status, AuthorisationStatus::Granted | AuthorisationStatus::Renewed)
}

/// Days from `today` to the last day of validity, when it falls within `horizon` days (0: it
/// ends today); `None` when it is further, already past, or open-ended.
pub fn days_left(valid_to: Option<NaiveDate>, today: NaiveDate, horizon: u32) -> Option<i64> {
    let left = (valid_to? - today).num_days();
    (0..=i64::from(horizon)).contains(&left).then_some(left)
}

/// Whether a treatment is under follow-up (visits are expected).
pub fn followed(status: EpisodeStatus) -> bool {
    matches!(status, EpisodeStatus::Initiated | EpisodeStatus::Ongoing)
}

/// When the next visit of a treatment is due: its last visit, or its first administration
/// when it has had none, plus the cohort's follow-up interval.
pub fn next_visit_due(
    first_administration: Option<NaiveDate>,
    last_visit: Option<NaiveDate>,
    follow_up_months: u32,
) -> Option<NaiveDate> {
    let from = last_visit.max(first_administration)?;
    from.checked_add_months(Months::new(follow_up_months.max(1)))
}

/// Days a visit is late on `today` (`None` when it is not late).
pub fn days_late(due: NaiveDate, today: NaiveDate) -> Option<i64> {
    let late = (today - due).num_days();
    (late > 0).then_some(late)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn horizons_are_30_60_or_90_days() {
        assert_eq!(horizon(0), Some(30));
        assert_eq!(horizon(60), Some(60));
        assert_eq!(horizon(45), None);
    }

    #[test]
    fn an_expiry_is_listed_within_its_horizon_only() {
        let today = d("2026-12-02");
        assert_eq!(days_left(Some(d("2026-12-02")), today, 30), Some(0));
        assert_eq!(days_left(Some(d("2027-01-01")), today, 30), Some(30));
        assert_eq!(days_left(Some(d("2027-01-02")), today, 30), None);
        assert_eq!(days_left(Some(d("2027-01-02")), today, 60), Some(31));
        assert_eq!(days_left(Some(d("2026-12-01")), today, 30), None, "already past");
        assert_eq!(days_left(None, today, 90), None, "open-ended");
    }

    #[test]
    fn the_next_visit_follows_the_last_one_or_the_first_administration() {
        assert_eq!(next_visit_due(Some(d("2026-01-15")), None, 6), Some(d("2026-07-15")));
        assert_eq!(
            next_visit_due(Some(d("2026-01-15")), Some(d("2026-07-20")), 6),
            Some(d("2027-01-20"))
        );
        assert_eq!(next_visit_due(None, None, 6), None, "not initiated");
        assert_eq!(days_late(d("2026-07-15"), d("2026-07-15")), None);
        assert_eq!(days_late(d("2026-07-15"), d("2026-07-20")), Some(5));
    }
}
