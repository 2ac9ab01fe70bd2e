//! Median and median absolute deviation: location and scale that a few outliers do not move.

/// The median of `v` (reordered); NaN when empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let cmp = |a: &f64, b: &f64| a.total_cmp(b);
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// (median, MAD) of `v`.
pub(crate) fn median_mad(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut buf: Vec<f64> = v.collect();
    let m = median(&mut buf);
    for x in buf.iter_mut() {
        *x = (*x - m).abs();
    }
    (m, median(&mut buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
        assert_eq!(
            median_mad([1.0, 2.0, 3.0, 4.0, 100.0].into_iter()),
            (3.0, 1.0)
        );
    }
}
