//! Quantiles: Prometheus's `histogram_quantile` over classic buckets, and exact
//! nearest-rank quantiles over raw durations.

/// Prometheus's bucketQuantile: `buckets` are (upper bound, cumulative count) sorted by
/// bound, with +Inf last. Same interpolation, same monotonicity repair, so the figures match
/// what `histogram_quantile(q, sum by (le, ...) (rate(...)))` returns.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    if buckets.len() < 2 || q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last()?.0 != f64::INFINITY {
        return None;
    }
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let total = buckets.last()?.1;
    if total == 0.0 || total.is_nan() {
        return None;
    }
    let rank = q * total;
    let b = buckets
        .partition_point(|x| x.1 < rank)
        .min(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (mut start, mut count, mut rank) = (0.0, buckets[b].1, rank);
    let end = buckets[b].0;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    Some(start + (end - start) * (rank / count))
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
