//! Small statistical helpers with no dependency: exact Poisson confidence intervals, Student's
//! t quantiles, Kaplan-Meier and cumulative-incidence limits.

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

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the regularised incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(T <= t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The quantile `p` (0 < p < 1) of Student's t with `df` degrees of freedom, by bisection.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (-1.0e3, 1.0e3);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Mean of `values` with its two-sided 95% interval from Student's t (none for fewer than two
/// values).
pub fn mean_with_t_interval(values: &[f64]) -> (f64, Option<(f64, f64)>) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, None);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = student_t_quantile(0.975, (n - 1) as f64) * (variance / n as f64).sqrt();
    (mean, Some((mean - half, mean + half)))
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
    fn student_t_quantiles_match_published_tables() {
        // Two-sided 95% critical values (t_{0.975}) as tabulated.
        for (df, t) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (5.0, 2.571),
            (10.0, 2.228),
            (30.0, 2.042),
            (120.0, 1.980),
        ] {
            let q = student_t_quantile(0.975, df);
            assert!((q - t).abs() < 5e-4, "df {df}: {q} vs {t}");
        }
        // Symmetry, and the median.
        assert!((student_t_quantile(0.025, 7.0) + student_t_quantile(0.975, 7.0)).abs() < 1e-9);
        assert!(student_t_quantile(0.5, 7.0).abs() < 1e-6);
        // A mean and its interval: 1..=5, mean 3, sd sqrt(2.5), t(4) = 2.776.
        let (mean, interval) = mean_with_t_interval(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let (low, high) = interval.unwrap();
        let half = 2.776_445_105 * (2.5_f64 / 5.0).sqrt();
        assert_eq!(mean, 3.0);
        assert!((low - (3.0 - half)).abs() < 1e-6 && (high - (3.0 + half)).abs() < 1e-6);
    }

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
