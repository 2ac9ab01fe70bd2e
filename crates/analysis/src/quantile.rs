//! Quantiles: Prometheus's `histogram_quantile` over classic buckets, and exact
//! nearest-rank quantiles over raw durations.

/// Prometheus's `histogram_quantile` over (upper bound, cumulative count) buckets, +Inf
/// last: PromQL's own implementation, so graph figures match what
/// `histogram_quantile(q, sum by (le, ...) (rate(...)))` returns; `None` where PromQL
/// answers NaN.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    let v = meshlens_promql::bucket_quantile(q, buckets);
    (!v.is_nan()).then_some(v)
}

/// Nearest-rank quantile of a sample (reordered in place); `None` when empty.
pub fn exact_quantile(q: f64, values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable_by(rank, |a, b| a.total_cmp(b));
    Some(*v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_like_prometheus() {
        let mut b = vec![
            (10.0, 50.0),
            (25.0, 90.0),
            (50.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(bucket_quantile(0.5, &mut b), Some(10.0));
        // rank 95 lies in (25, 50]: 25 + 25 * 5/10.
        assert_eq!(bucket_quantile(0.95, &mut b), Some(37.5));
        let mut inf = vec![(10.0, 1.0), (f64::INFINITY, 4.0)];
        assert_eq!(bucket_quantile(0.9, &mut inf), Some(10.0));
        assert_eq!(
            bucket_quantile(0.5, &mut [(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(exact_quantile(0.5, &mut v), Some(50.0));
        assert_eq!(exact_quantile(0.99, &mut v), Some(99.0));
        assert_eq!(exact_quantile(1.0, &mut v), Some(100.0));
    }
}
