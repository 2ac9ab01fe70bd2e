//! What one probe measured, as blackbox_exporter's gauges: a series exists once the prober
//! registers it (often at 0 before it knows more), so a failed probe still reports what it
//! got to, exactly as blackbox's per-probe registry does.

use std::collections::BTreeMap;

use meshlens_model::{Labels, Sample, TimeSeries, METRIC_NAME};

use crate::config::ProbeConfig;

/// A gauge's identity: its name and its own labels (e.g. `phase`).
type GaugeKey = (&'static str, Vec<(&'static str, String)>);

#[derive(Debug, Default)]
pub(crate) struct Measured {
    gauges: BTreeMap<GaugeKey, f64>,
}

impl Measured {
    pub fn set(&mut self, name: &'static str, v: f64) {
        self.gauges.insert((name, Vec::new()), v);
    }

    pub fn set_with(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, v: f64) {
        self.gauges.insert((name, labels), v);
    }

    /// Adds to a gauge, registering it at 0 first (blackbox's phase durations are sums over
    /// redirects).
    pub fn add_with(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, v: f64) {
        *self.gauges.entry((name, labels)).or_insert(0.0) += v;
    }

    #[cfg(test)]
    pub fn get(&self, name: &'static str) -> Option<f64> {
        self.gauges.get(&(name, Vec::new())).copied()
    }

    /// The series, labelled as a Prometheus scrape of blackbox_exporter would be: `job`,
    /// `instance` and the config's labels, a metric label that collides with one of those
    /// renamed `exported_<name>` (Prometheus's `honor_labels: false`).
    pub fn into_series(self, cfg: &ProbeConfig, target: &str, ts_ms: i64) -> Vec<TimeSeries> {
        let mut out: Vec<TimeSeries> = self
            .gauges
            .into_iter()
            .map(|((name, labels), v)| {
                let mut pairs: Vec<(String, String)> = Vec::with_capacity(labels.len() + 4);
                for (k, val) in labels {
                    let taken = k == "job" || k == "instance" || cfg.labels.contains_key(k);
                    let k = if taken {
                        format!("exported_{k}")
                    } else {
                        k.to_string()
                    };
                    pairs.push((k, val));
                }
                pairs.extend(cfg.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                pairs.push(("job".into(), cfg.name.clone()));
                pairs.push(("instance".into(), target.to_string()));
                pairs.push((METRIC_NAME.into(), name.to_string()));
                TimeSeries {
                    labels: Labels::from_pairs(pairs),
                    samples: vec![Sample::new(ts_ms, v)],
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}
