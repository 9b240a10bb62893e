//! Small statistical helpers with no dependency: exact Poisson confidence intervals.

/// P(X <= k) for X ~ Poisson(mean), summed in log space so large counts do not overflow.
fn poisson_cdf(k: u64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 1.0;
    }
    let mut log_term = -mean; // log P(X = 0)
    let mut total = log_term.exp();
    for i in 1..=k {
        log_term += mean.ln() - (i as f64).ln();
        total += log_term.exp();
    }
    total.min(1.0)
}

/// Solves `f(mean) = target` for a decreasing `f` by bisection.
fn solve_decreasing(f: impl Fn(f64) -> f64, target: f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Exact (Garwood) two-sided confidence interval of a Poisson mean from `k` observed events:
/// the means for which observing `k` or more (lower bound) or `k` or fewer (upper bound) has
/// probability `alpha / 2`.
pub fn poisson_ci(k: u64, alpha: f64) -> (f64, f64) {
    let tail = alpha / 2.0;
    let upper_search = (k as f64 + 10.0) * 10.0 + 100.0;
    let high = solve_decreasing(|m| poisson_cdf(k, m), tail, 0.0, upper_search);
    let low = if k == 0 {
        0.0
    } else {
        solve_decreasing(|m| poisson_cdf(k - 1, m), 1.0 - tail, 0.0, upper_search)
    };
    (low, high)
}

/// Confidence limits of a Kaplan-Meier estimate `s` with cumulative Greenwood term `greenwood`
/// (sum of d / (n (n - d))) on the log(-log) scale, for the normal quantile `z`. `None` where
/// the limits are undefined (an infinite Greenwood term, once everyone left has had the event).
pub fn km_log_log_ci(s: f64, greenwood: f64, z: f64) -> (Option<f64>, Option<f64>) {
    if !greenwood.is_finite() || s <= 0.0 {
        return (None, None);
    }
    if s >= 1.0 {
        return (Some(1.0), Some(1.0));
    }
    let v = s.ln();
    let spread = z * greenwood.sqrt() / v;
    let low = (-((-v).ln() - spread).exp()).exp();
    let high = (-((-v).ln() + spread).exp()).exp();
    (Some(low), Some(high))
}

/// 95% limits of a cumulative incidence `f` with delta-method `variance`, on the log(-log)
/// scale (so that they stay within 0 and 1): none while the incidence is 0 or 1, or its
/// variance unknown.
pub fn cif_log_log_ci(f: f64, variance: f64, z: f64) -> (Option<f64>, Option<f64>) {
    let usable = f > 0.0 && f < 1.0 && variance.is_finite() && variance >= 0.0;
    if !usable {
        return (None, None);
    }
    let transformed = (-f.ln()).ln();
    let se = variance.sqrt() / (f * f.ln().abs());
    let low = (-(transformed + z * se).exp()).exp();
    let high = (-(transformed - z * se).exp()).exp();
    (Some(low), Some(high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_poisson_intervals_match_published_tables() {
        // Garwood 95% limits as tabulated (e.g. Ulm 1990; chi-square formulation).
        let cases = [
            (0, 0.0, 3.689),
            (1, 0.0253, 5.572),
            (5, 1.6235, 11.668),
            (10, 4.7954, 18.390),
            (50, 37.111, 65.919),
        ];
        for (k, low, high) in cases {
            let (l, h) = poisson_ci(k, 0.05);
            assert!((l - low).abs() < 1e-3, "k={k}: low {l} vs {low}");
            assert!((h - high).abs() < 1e-3, "k={k}: high {h} vs {high}");
        }
    }
}
