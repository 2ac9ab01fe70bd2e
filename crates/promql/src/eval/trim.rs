//! The trim operators on a native histogram (`h </ x`, `h >/ x`), as Prometheus's
//! `FloatHistogram.TrimBuckets`: buckets wholly on the dropped side of the cut are emptied,
//! a bucket the cut falls into keeps the share of its observations on the kept side
//! (interpolated on a logarithmic scale for exponential buckets, linearly for custom ones and
//! for the zero bucket), and the count and sum are worked out again from what is kept, each
//! bucket's observations taken at its (kept part's) midpoint. A histogram nothing was
//! dropped from comes back as it was, sum and count included.

use meshlens_model::histogram::{exponential_bound, Bucket, BucketSpan, FloatHistogram};

/// `h` trimmed at `cut`: observations above it dropped (`upper`, `</`) or below it (`>/`).
pub(crate) fn trim(h: &FloatHistogram, cut: f64, upper: bool) -> FloatHistogram {
    let mut h = h.clone();
    let custom = h.uses_custom_buckets();
    let mut count = 0.0;
    let mut sum = 0.0;
    let mut trimmed = false;
    let mut has = [false, false];
    for (side, positive) in [true, false].into_iter().enumerate() {
        let spans = if positive {
            h.positive_spans.clone()
        } else {
            h.negative_spans.clone()
        };
        let counts = if positive {
            &mut h.positive_buckets
        } else {
            &mut h.negative_buckets
        };
        for (i, idx) in indexes(&spans).enumerate() {
            let Some(&c) = counts.get(i) else { break };
            if c == 0.0 {
                continue;
            }
            has[side] = true;
            let b = bucket(idx, c, h.schema, positive, &h.custom_values);
            let whole = if upper {
                b.upper <= cut
            } else {
                b.lower >= cut
            };
            let partly = if upper { b.lower < cut } else { b.upper > cut };
            if whole {
                count += c;
                sum += midpoint(b.lower, b.upper, positive, custom) * c;
            } else if partly {
                let (keep, mid) = bucket_trim(&b, cut, upper, positive, custom);
                count += keep;
                sum += mid * keep;
                if c != keep {
                    counts[i] = keep;
                    trimmed = true;
                }
            } else {
                counts[i] = 0.0;
                trimmed = true;
            }
        }
    }
    if h.zero_count > 0.0 {
        let [has_positive, has_negative] = has;
        let (keep, mid) = zero_trim(&h, cut, has_negative, has_positive, upper);
        if h.zero_count != keep {
            h.zero_count = keep;
            trimmed = true;
        }
        sum += mid * keep;
        count += keep;
    }
    if trimmed {
        h.count = count;
        h.sum = sum;
        h.compact(0);
    }
    h
}

/// The bucket indexes the spans lay out, in order.
fn indexes(spans: &[BucketSpan]) -> impl Iterator<Item = i32> + '_ {
    let mut idx = 0i32;
    spans.iter().flat_map(move |s| {
        idx += s.offset;
        let first = idx;
        idx += s.length as i32;
        first..first + s.length as i32
    })
}

/// Bucket `idx` of one side with its bounds (custom buckets: the first reaches down to
/// -Inf, the last up to +Inf).
fn bucket(idx: i32, count: f64, schema: i32, positive: bool, custom_values: &[f64]) -> Bucket {
    let bound = |i: i32| -> f64 {
        if schema == meshlens_model::histogram::CUSTOM_BUCKETS_SCHEMA {
            match usize::try_from(i) {
                Err(_) => f64::NEG_INFINITY,
                Ok(i) => custom_values.get(i).copied().unwrap_or(f64::INFINITY),
            }
        } else {
            exponential_bound(i, schema)
        }
    };
    let (lower, upper) = if positive {
        (bound(idx - 1), bound(idx))
    } else {
        (-bound(idx), -bound(idx - 1))
    };
    Bucket {
        lower,
        upper,
        lower_inclusive: false,
        upper_inclusive: true,
        count,
    }
}

/// Observations kept of a bucket the cut falls into, and where they are taken to be.
fn bucket_trim(b: &Bucket, cut: f64, upper: bool, positive: bool, linear: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_trim(b, cut, upper);
    }
    let below = if cut <= b.lower {
        0.0
    } else if cut >= b.upper {
        b.count
    } else {
        b.count * b.fraction_below(cut, linear)
    };
    if upper {
        (below, midpoint(b.lower, cut, positive, linear))
    } else {
        (b.count - below, midpoint(cut, b.upper, positive, linear))
    }
}

/// The same for a bucket with an infinite bound: how its observations spread is unknown, so
/// it is kept or dropped whole, except that a first custom bucket with a positive upper
/// bound is taken to start at zero.
fn infinite_bucket_trim(b: &Bucket, cut: f64, upper: bool) -> (f64, f64) {
    let finite_or_zero = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper {
            if cut >= b.upper {
                return (b.count, 0.0);
            }
            if cut > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                return (b.count * cut / b.upper, cut / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, cut);
            }
            return (0.0, finite_or_zero(b.upper));
        }
        if cut <= b.lower {
            return (b.count, 0.0);
        }
        if cut >= 0.0 && b.upper > cut && b.upper.is_finite() {
            return (b.count * (1.0 - cut / b.upper), (cut + b.upper) / 2.0);
        }
        return (0.0, finite_or_zero(b.upper));
    }
    // Upper bound +Inf.
    if !upper && cut >= b.lower {
        return (b.count, cut);
    }
    (0.0, finite_or_zero(b.lower))
}

/// The zero bucket's kept observations and their midpoint; the bucket is taken to lie on
/// the side of zero where the other buckets are, when they are all on one side.
fn zero_trim(
    h: &FloatHistogram,
    cut: f64,
    has_negative: bool,
    has_positive: bool,
    upper: bool,
) -> (f64, f64) {
    let mut lower = -h.zero_threshold;
    let mut top = h.zero_threshold;
    if has_negative && !has_positive {
        top = 0.0;
    }
    if has_positive && !has_negative {
        lower = 0.0;
    }
    let (fraction, mid) = if upper {
        if cut <= lower {
            return (0.0, 0.0);
        }
        if cut >= top {
            return (h.zero_count, (lower + top) / 2.0);
        }
        ((cut - lower) / (top - lower), (lower + cut) / 2.0)
    } else {
        if cut <= lower {
            return (h.zero_count, (lower + top) / 2.0);
        }
        if cut >= top {
            return (0.0, 0.0);
        }
        ((top - cut) / (top - lower), (cut + top) / 2.0)
    };
    (h.zero_count * fraction, mid)
}

/// Where the observations between two bounds are taken to be: the arithmetic mean for
/// linear buckets, the geometric one for exponential buckets; an infinite bound gives way
/// to the finite one.
fn midpoint(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    if lower.is_infinite() {
        if upper.is_infinite() {
            return 0.0;
        }
        return if upper > 0.0 { upper / 2.0 } else { upper };
    }
    if upper.is_infinite() {
        return lower;
    }
    if linear {
        return (lower + upper) / 2.0;
    }
    let geometric = (lower * upper).abs().sqrt();
    if positive {
        geometric
    } else {
        -geometric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> FloatHistogram {
        FloatHistogram::parse_notation(s).unwrap()
    }

    #[test]
    fn custom_buckets_interpolate_linearly() {
        let t = trim(
            &h("{{schema:-53 sum:172.5 count:15 custom_values:[5 10 15 20] buckets:[1 6 4 3 1]}}"),
            13.0,
            true,
        );
        assert!((t.count - 9.4).abs() < 1e-9, "{}", t.count);
        assert!((t.sum - 75.1).abs() < 1e-9, "{}", t.sum);
    }

    #[test]
    fn nothing_dropped_leaves_the_histogram_as_it_was() {
        let orig = h("{{schema:0 sum:123.75 count:34 z_bucket:1 z_bucket_w:0.001 buckets:[2 4 8 16] n_buckets:[1 2]}}");
        assert!(trim(&orig, f64::INFINITY, true).equals(&orig));
        assert!(trim(&orig, f64::NEG_INFINITY, false).equals(&orig));
        let empty = trim(&orig, f64::INFINITY, false);
        assert_eq!((empty.count, empty.sum), (0.0, 0.0));
    }
}
