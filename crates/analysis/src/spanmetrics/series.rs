//! Cumulative counters and histograms, and their rendering as Prometheus series.

use meshlens_model::{format_value, Labels, Sample, TimeSeries};

/// Tempo's default buckets for span latencies and service-graph durations, in seconds:
/// `prometheus.ExponentialBuckets(0.002, 2, 14)`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

/// A cumulative histogram over [`LATENCY_BUCKETS`] (plus +Inf).
#[derive(Clone, Debug, Default)]
pub struct Hist {
    /// Per-bucket (not cumulative) counts; the last slot is +Inf.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Hist {
    pub fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS.partition_point(|&b| b < seconds);
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `<name>_bucket` (one per `le`), `<name>_sum`, `<name>_count`.
    pub fn render(&self, name: &str, labels: &[(&str, &str)], s: &mut Sink) {
        let mut cum = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
            let mut l = labels.to_vec();
            l.push(("le", &le));
            s.push(&format!("{name}_bucket"), &l, cum as f64);
        }
        s.push(&format!("{name}_sum"), labels, self.sum);
        s.push(&format!("{name}_count"), labels, self.count as f64);
    }
}

/// Collects the series of one flush. A series never flushed before also gets a 0 sample at
/// the previous flush time, as Tempo injects one: without it `rate()` and `increase()`
/// would miss everything counted before the series' first sample.
pub struct Sink<'a> {
    pub now_ms: i64,
    pub zero_ms: i64,
    pub is_new: bool,
    pub out: &'a mut Vec<TimeSeries>,
}

impl Sink<'_> {
    pub fn push(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let labels =
            Labels::from_pairs(std::iter::once(("__name__", name)).chain(labels.iter().copied()));
        let mut samples = Vec::with_capacity(2);
        if self.is_new && self.zero_ms < self.now_ms {
            samples.push(Sample::new(self.zero_ms, 0.0));
        }
        samples.push(Sample::new(self.now_ms, v));
        self.out.push(TimeSeries { labels, samples });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_inclusive() {
        let mut h = Hist::default();
        h.observe(0.002);
        h.observe(0.0021);
        h.observe(100.0);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[14], 1);
        assert_eq!(h.count(), 3);
    }
}
