//! Rank statistics for the canary judge: the two-sided Mann-Whitney U test as SciPy's
//! `mannwhitneyu(x, y, alternative='two-sided')` computes it with its default `method='auto'`
//! (exact null distribution when either sample has at most 8 values and no value is tied,
//! otherwise the normal approximation with tie and continuity corrections), the
//! Hodges-Lehmann shift estimate, and the quantiles used for outlier removal.
//!
//! Written from the published definitions so the judge needs no numeric dependency; the
//! test `tests/judge_scipy.rs` checks the figures against SciPy itself.

use thiserror::Error;

/// Either sample at most this long (and no ties) selects the exact distribution, as SciPy.
pub const EXACT_MAX_N: usize = 8;

/// Above this smaller-tail U the exact distribution would need too much memory; the normal
/// approximation (then excellent) is used instead. SciPy has no such limit; the judge's
/// samples never come near it.
pub const EXACT_MAX_U: u64 = 2_000_000;

#[derive(Debug, Error, PartialEq)]
pub enum StatsError {
    #[error("the {0} sample is empty")]
    Empty(&'static str),
    #[error("the {which} sample holds a non-finite value at index {index}")]
    NonFinite { which: &'static str, index: usize },
}

/// How the p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Exact,
    Asymptotic,
}

/// The result of [`mann_whitney_u`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample (SciPy's U1): pairs (x, y) with x > y, ties counting one half.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub method: Method,
    /// Standardised statistic (asymptotic method only).
    pub z: Option<f64>,
}

/// The two-sided Mann-Whitney U test of `x` against `y`, SciPy's `method='auto'`.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Result<MannWhitney, StatsError> {
    check(x, "first")?;
    check(y, "second")?;
    let (n1, n2) = (x.len(), y.len());
    let mut all: Vec<f64> = Vec::with_capacity(n1 + n2);
    all.extend_from_slice(x);
    all.extend_from_slice(y);
    let (ranks, ties) = rank_average(&all);
    let r1: f64 = ranks[..n1].iter().sum();
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = r1 - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;
    let has_ties = ties.iter().any(|&t| t > 1);
    let exact = (n1 <= EXACT_MAX_N || n2 <= EXACT_MAX_N) && !has_ties;
    if exact {
        // Without ties U is an integer.
        let umin = u1.min(u2).round().max(0.0) as u64;
        if umin <= EXACT_MAX_U {
            let p = (2.0 * exact_cdf(n1, n2, umin)).clamp(0.0, 1.0);
            return Ok(MannWhitney {
                u: u1,
                p_value: p,
                method: Method::Exact,
                z: None,
            });
        }
    }
    let n = f1 + f2;
    let tie_term: f64 = ties
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let s = (f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let numerator = u1.max(u2) - f1 * f2 / 2.0 - 0.5;
    // All values equal: s = 0, numerator = -0.5, SciPy's z = -inf and p clips to 1.
    let z = if s > 0.0 {
        numerator / s
    } else if numerator < 0.0 {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };
    // Two-sided: 2 * Phi(-z) = erfc(z / sqrt 2).
    let p = erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0);
    Ok(MannWhitney {
        u: u1,
        p_value: p,
        method: Method::Asymptotic,
        z: Some(z),
    })
}

fn check(v: &[f64], which: &'static str) -> Result<(), StatsError> {
    if v.is_empty() {
        return Err(StatsError::Empty(which));
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(StatsError::NonFinite { which, index }),
        None => Ok(()),
    }
}

/// Average ranks (1-based, ties share the mean of their ranks) and the size of every group
/// of equal values.
pub fn rank_average(v: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        ties.push(j - i);
        i = j;
    }
    (ranks, ties)
}

/// P(U <= u) under the null hypothesis for samples of sizes n1 and n2 without ties.
///
/// The number of arrangements with U = k is the coefficient of q^k in the Gaussian binomial
/// coefficient [n1+n2 choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i) (m the smaller
/// size, n the larger); the series only needs terms up to u. Exact integers while they fit
/// in i128, floating point beyond.
pub fn exact_cdf(n1: usize, n2: usize, u: u64) -> f64 {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let len = u as usize + 1;
    if let Some(p) = exact_cdf_int(m, n, len) {
        return p;
    }
    exact_cdf_float(m, n, len)
}

fn exact_cdf_int(m: usize, n: usize, len: usize) -> Option<f64> {
    let mut c = vec![0i128; len];
    c[0] = 1;
    let mut total: i128 = 1;
    for i in 1..=m {
        let a = n + i;
        for k in (a..len).rev() {
            c[k] = c[k].checked_sub(c[k - a])?;
        }
        for k in i..len {
            c[k] = c[k].checked_add(c[k - i])?;
        }
        // C(n+i, i) = C(n+i-1, i-1) * (n+i) / i, exact at every step.
        total = total.checked_mul(a as i128)? / i as i128;
    }
    let mut sum: i128 = 0;
    for v in &c {
        sum = sum.checked_add(*v)?;
    }
    Some(sum as f64 / total as f64)
}

fn exact_cdf_float(m: usize, n: usize, len: usize) -> f64 {
    let mut c = vec![0f64; len];
    c[0] = 1.0;
    let mut log_total = 0.0;
    for i in 1..=m {
        let a = n + i;
        for k in (a..len).rev() {
            c[k] -= c[k - a];
        }
        for k in i..len {
            c[k] += c[k - i];
        }
        log_total += ((a as f64) / (i as f64)).ln();
    }
    let sum: f64 = c.iter().sum();
    if sum <= 0.0 {
        return 0.0;
    }
    (sum.ln() - log_total).exp().min(1.0)
}

/// The complementary error function to near machine precision: the everywhere-positive
/// series of erf below 2.5, the Laplace continued fraction of erfc above.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))
        let x2 = 2.0 * x * x;
        let (mut term, mut sum) = (x, x);
        for n in 1..400 {
            term *= x2 / (2 * n + 1) as f64;
            sum += term;
            if term < sum * 1e-17 {
                break;
            }
        }
        let erf = 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp() * sum;
        return 1.0 - erf;
    }
    if x > 27.3 {
        return 0.0;
    }
    // erfc(x) = e^(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), modified Lentz.
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..10_000 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        d = 1.0 / d;
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// Standard normal cumulative distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Hodges-Lehmann estimate of the shift of `y` relative to `x`: the median of all pairwise
/// differences y_j - x_i. None when a sample is empty or there would be more than 4 million
/// pairs.
pub fn hodges_lehmann(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.is_empty() || y.is_empty() || x.len().saturating_mul(y.len()) > 4_000_000 {
        return None;
    }
    let mut d: Vec<f64> = Vec::with_capacity(x.len() * y.len());
    for b in y {
        for a in x {
            d.push(b - a);
        }
    }
    d.sort_by(f64::total_cmp);
    Some(median_sorted(&d))
}

/// Median of sorted values (mean of the middle two for even lengths); NaN when empty.
pub fn median_sorted(v: &[f64]) -> f64 {
    quantile_sorted(v, 0.5)
}

/// Quantile of sorted values by linear interpolation between order statistics (NumPy's
/// default, R's type 7); NaN when empty.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn erfc_matches_reference_values() {
        // Python's math.erfc.
        let cases = [
            (0.0, 1.0),
            (0.1, 0.8875370839817152),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (2.4, 0.0006885138966450789),
            (2.5, 0.0004069520174449589),
            (2.6, 0.00023603441652934908),
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.5374597944280351e-12),
            (8.0, 1.1224297172982928e-29),
            (15.0, 7.212994172451206e-100),
            (26.0, 5.663192408856143e-296),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(close(got, want, 1e-12), "erfc({x}) = {got}, want {want}");
        }
        assert!(close(erfc(-1.0), 2.0 - 0.15729920705028513, 1e-14));
    }

    #[test]
    fn exact_distribution_small_cases() {
        // n1 = n2 = 2: U takes 0,1,2,2,3,4 over the 6 arrangements.
        assert!(close(exact_cdf(2, 2, 0), 1.0 / 6.0, 1e-15));
        assert!(close(exact_cdf(2, 2, 1), 2.0 / 6.0, 1e-15));
        assert!(close(exact_cdf(2, 2, 2), 4.0 / 6.0, 1e-15));
        assert!(close(exact_cdf(2, 2, 4), 1.0, 1e-15));
        // The float path agrees with the integer one.
        let a = exact_cdf_int(8, 40, 100).unwrap();
        let b = exact_cdf_float(8, 40, 100);
        assert!(close(a, b, 1e-10), "{a} vs {b}");
    }

    #[test]
    fn ranks_average_ties() {
        let (r, t) = rank_average(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(t, vec![1, 1, 2]);
    }

    #[test]
    fn separated_small_samples_are_exact() {
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(r.method, Method::Exact);
        assert_eq!(r.u, 0.0);
        assert!(close(r.p_value, 0.1, 1e-12), "{}", r.p_value);
    }

    #[test]
    fn all_equal_values_give_p_one() {
        let r = mann_whitney_u(&[1.0; 10], &[1.0; 12]).unwrap();
        assert_eq!(r.method, Method::Asymptotic);
        assert_eq!(r.u, 60.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(mann_whitney_u(&[], &[1.0]), Err(StatsError::Empty("first")));
        assert_eq!(
            mann_whitney_u(&[1.0], &[2.0, f64::NAN]),
            Err(StatsError::NonFinite {
                which: "second",
                index: 1
            })
        );
    }

    #[test]
    fn hodges_lehmann_shift() {
        assert_eq!(
            hodges_lehmann(&[1.0, 2.0, 3.0], &[11.0, 12.0, 13.0]),
            Some(10.0)
        );
        assert_eq!(hodges_lehmann(&[], &[1.0]), None);
    }
}
