//! What a worklist shows: which authorisations expire soon, which follow-up visits are late,
//! which declared treatments never started, which frameworks break their validity cap or must
//! be renewed. Pure: "today" is an argument.

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::model::{AuthorisationStatus, EpisodeStatus, Framework, FrameworkStatus, Pathway};

/// Why a framework is on the worklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameworkWarning {
    /// Its validity is longer than its kind allows: a CPC lasts at most 3 years, an accès direct
    /// covers at most 1 year (an open end counts as longer).
    ValidityOverCap,
    /// An AAP must be renewed by a request filed at least 3 months before its end: that
    /// deadline falls within the horizon.
    RenewalDue,
    /// The deadline has passed and no renewal was filed: the AAP ends on its date unless HAS
    /// decides otherwise.
    RenewalLate,
}

impl FrameworkWarning {
    pub const ALL: [FrameworkWarning; 3] = [
        FrameworkWarning::ValidityOverCap,
        FrameworkWarning::RenewalDue,
        FrameworkWarning::RenewalLate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            FrameworkWarning::ValidityOverCap => "VALIDITY_OVER_CAP",
            FrameworkWarning::RenewalDue => "RENEWAL_DUE",
            FrameworkWarning::RenewalLate => "RENEWAL_LATE",
        }
    }
}

/// The longest validity of a framework of `pathway`, in months, where the rules cap it: a CPC
/// 3 years (renewable), an accès direct 1 year of coverage; an AAP's is set by each decision.
pub fn validity_cap_months(pathway: Pathway) -> Option<u32> {
    match pathway {
        Pathway::Cpc => Some(36),
        Pathway::Direct => Some(12),
        _ => None,
    }
}

/// Months before its end by which an AAP's renewal must be filed (CSP R5121-69-4).
pub const AAP_RENEWAL_NOTICE_MONTHS: u32 = 3;

/// The warnings of a framework in force on `today`, looking `horizon` days ahead: each with
/// the date it is about (the end of validity allowed by the cap, or the renewal deadline).
pub fn framework_warnings(f: &Framework, today: NaiveDate, horizon: u32) -> Vec<(FrameworkWarning, NaiveDate)> {
    let mut out = Vec::new();
    let in_force = f.status.allows_inclusion() && f.valid_from <= today && f.valid_to.is_none_or(|end| today <= end);
    if !in_force {
        return out;
    }
    let limit = validity_cap_months(f.pathway).and_then(|cap| f.valid_from.checked_add_months(Months::new(cap)));
    if let Some(limit) = limit
        && f.valid_to.is_none_or(|end| end > limit)
    {
        out.push((FrameworkWarning::ValidityOverCap, limit));
    }
    let renewable = matches!(f.pathway, Pathway::AapPre | Pathway::AapPost)
        && matches!(f.status, FrameworkStatus::Granted | FrameworkStatus::Renewed);
    let deadline = f
        .valid_to
        .filter(|_| renewable)
        .and_then(|end| end.checked_sub_months(Months::new(AAP_RENEWAL_NOTICE_MONTHS)));
    match deadline {
        Some(deadline) if today > deadline => out.push((FrameworkWarning::RenewalLate, deadline)),
        Some(deadline) if (deadline - today).num_days() <= i64::from(horizon) => {
            out.push((FrameworkWarning::RenewalDue, deadline))
        }
        _ => {}
    }
    out
}

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

/// Whether an authorisation is in force (its expiry is something to act on): granted, renewed,
/// or whose renewal was refused (valid to its end, then no further).
pub fn in_force(status: AuthorisationStatus) -> bool {
    matches!(
        status,
        AuthorisationStatus::Granted | AuthorisationStatus::Renewed | AuthorisationStatus::RenewalRefused
    )
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

    fn framework(pathway: Pathway, status: FrameworkStatus, from: &str, to: Option<&str>) -> Framework {
        Framework {
            pathway,
            drug_atc: crate::codes::Atc::parse("B02BX06").unwrap(),
            indication: "test".into(),
            orpha_codes: Vec::new(),
            authority: "HAS".into(),
            decision_reference: "D-1".into(),
            valid_from: d(from),
            valid_to: to.map(d),
            status,
            protocol_type: crate::model::ProtocolType::PutRd,
            protocol_version: "1".into(),
            follow_up_months: 6,
            source: "test".into(),
            confirmed: true,
            suspended_from: None,
            suspended_on: None,
            requires_national_rcp: false,
            synthesis_months: 0,
            synthesis_from: None,
        }
    }

    #[test]
    fn frameworks_warn_of_their_cap_and_of_the_aap_renewal_deadline() {
        use FrameworkWarning::*;
        let today = d("2026-12-02");
        let w = |f: &Framework| framework_warnings(f, today, 30);
        // A CPC granted for four years, or with no end, is over its three-year cap.
        let cpc = framework(Pathway::Cpc, FrameworkStatus::Granted, "2025-01-01", Some("2028-12-31"));
        assert_eq!(w(&cpc), [(ValidityOverCap, d("2028-01-01"))]);
        let open = framework(Pathway::Cpc, FrameworkStatus::Granted, "2025-01-01", None);
        assert_eq!(w(&open), [(ValidityOverCap, d("2028-01-01"))]);
        let fine = framework(Pathway::Cpc, FrameworkStatus::Granted, "2025-01-01", Some("2027-12-31"));
        assert!(w(&fine).is_empty());
        let direct = framework(
            Pathway::Direct,
            FrameworkStatus::Granted,
            "2026-06-01",
            Some("2027-12-31"),
        );
        assert_eq!(w(&direct), [(ValidityOverCap, d("2027-06-01"))]);
        // An AAP ending 2027-03-20: renewal to file by 2026-12-20, within 30 days.
        let aap = framework(
            Pathway::AapPost,
            FrameworkStatus::Granted,
            "2025-03-21",
            Some("2027-03-20"),
        );
        assert_eq!(w(&aap), [(RenewalDue, d("2026-12-20"))]);
        assert!(framework_warnings(&aap, d("2026-11-01"), 30).is_empty(), "not yet");
        let late = framework(
            Pathway::AapPre,
            FrameworkStatus::Renewed,
            "2025-02-01",
            Some("2027-02-01"),
        );
        assert_eq!(w(&late), [(RenewalLate, d("2026-11-01"))]);
        let filed = framework(
            Pathway::AapPre,
            FrameworkStatus::RenewalSubmitted,
            "2025-02-01",
            Some("2027-02-01"),
        );
        assert!(w(&filed).is_empty(), "a renewal filed stops the warning");
        let suspended = framework(Pathway::Cpc, FrameworkStatus::Suspended, "2025-01-01", None);
        assert!(w(&suspended).is_empty(), "only frameworks in force");
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
