//! The PromQL functions that read a native histogram: `histogram_quantile`,
//! `histogram_fraction`, `histogram_stdvar` and `histogram_stddev`, with Prometheus's
//! interpolation rules (linear in custom buckets and the zero bucket, logarithmic in
//! exponential buckets).

use super::gomath::{exp2, log2};
use super::ops::kahan_inc;
use super::{Bucket, FloatHistogram};

/// The `q` quantile of the observations in `h` (native-histogram `histogram_quantile`).
/// `q` below 0 gives -Inf, above 1 +Inf; an empty histogram or a NaN `q` gives NaN.
pub fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let all = h.buckets();
    // NaN observations are counted in `count` but in no bucket, so with a NaN sum the
    // walk goes upwards; otherwise from the nearer end.
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut bucket = Bucket {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
    };
    let mut count = 0.0;
    let mut walk: Box<dyn Iterator<Item = &Bucket>> = if forward {
        Box::new(all.iter())
    } else {
        Box::new(all.iter().rev())
    };
    for b in &mut walk {
        bucket = b.clone();
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            break;
        }
    }
    if !h.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
        // In the zero bucket: with buckets on one side only, 0 is the other bound.
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        // The rank lies beyond all buckets: NaN observations, or imprecision.
        if h.sum.is_nan() {
            return f64::NAN;
        }
        return bucket.upper;
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / bucket.count;
    if h.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let log_lower = log2(bucket.lower.abs());
    let log_upper = log2(bucket.upper.abs());
    if bucket.lower > 0.0 {
        return exp2(log_lower + (log_upper - log_lower) * fraction);
    }
    -exp2(log_upper + (log_lower - log_upper) * (1.0 - fraction))
}

/// The share of observations in `h` between `lower` and `upper` (`histogram_fraction`),
/// interpolating inside the buckets that contain the limits.
pub fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let all = h.buckets();
    let custom = h.uses_custom_buckets();
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for b in &all {
        let mut b = b.clone();
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let linear = custom || zero_bucket;
        let rank_at = |v: f64| {
            if linear && b.lower == f64::NEG_INFINITY {
                // No interpolation inside a bucket reaching down to -Inf.
                return b.count;
            }
            rank + b.count * b.fraction_below(v, linear)
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = rank_at(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = rank_at(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // With NaN observations possible, only what the buckets hold counts as the total.
    let count = if h.sum.is_nan() {
        all.iter().map(|b| b.count).fold(0.0, |acc, c| acc + c)
    } else {
        h.count
    };
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / h.count
}

/// The estimated variance of the observations in `h` (`histogram_stdvar`): every
/// observation is taken to sit at its bucket's midpoint, the arithmetic mean of the bounds
/// for custom buckets, 0 in the zero bucket and the geometric mean in exponential buckets.
pub fn stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut variance, mut comp) = (0.0, 0.0);
    for b in h.buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let g = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -g
            } else {
                g
            }
        };
        let delta = val - mean;
        (variance, comp) = kahan_inc(b.count * delta * delta, variance, comp);
    }
    variance += comp;
    variance / h.count
}

/// The square root of [`stdvar`] (`histogram_stddev`).
pub fn stddev(h: &FloatHistogram) -> f64 {
    stdvar(h).sqrt()
}
