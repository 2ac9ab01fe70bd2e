//! The notifier's own metrics under Prometheus 2.42's names, so dashboards and alerts written
//! for Prometheus's notifier (e.g. "notifications failing") work unchanged.

use meshlens_model::escape_label_value as escape;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshlens_model::format_value;
use parking_lot::Mutex;

#[derive(Default, Clone, Copy)]
struct PerAlertmanager {
    sent: u64,
    errors: u64,
    latency_sum: f64,
    latency_count: u64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    /// Keyed by push URL. Entries stay after an Alertmanager goes away, as counters do in
    /// Prometheus.
    per_am: Mutex<BTreeMap<String, PerAlertmanager>>,
    dropped: AtomicU64,
}

/// Values read at render time rather than counted.
pub(crate) struct Gauges {
    pub queue_length: usize,
    pub queue_capacity: usize,
    pub alertmanagers: usize,
}

impl Metrics {
    /// Makes the Alertmanager's series exist (at zero) before its first batch.
    pub fn register(&self, url: &str) {
        self.per_am.lock().entry(url.to_string()).or_default();
    }

    /// One batch attempt to one Alertmanager. Like Prometheus 2.42, `sent` counts the alerts
    /// of every attempt, failed or not; `errors` counts the failed attempts.
    pub fn attempt(&self, url: &str, alerts: usize, ok: bool, took: Duration) {
        let mut m = self.per_am.lock();
        let e = m.entry(url.to_string()).or_default();
        e.sent += alerts as u64;
        if !ok {
            e.errors += 1;
        }
        e.latency_sum += took.as_secs_f64();
        e.latency_count += 1;
    }

    pub fn dropped(&self, n: usize) {
        if n > 0 {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn render(&self, g: &Gauges, out: &mut String) {
        let per_am: Vec<(String, PerAlertmanager)> = self
            .per_am
            .lock()
            .iter()
            .map(|(k, v)| (escape(k), *v))
            .collect();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            out,
            "prometheus_notifications_latency_seconds",
            "summary",
            "Latency quantiles for sending alert notifications.",
        );
        for (url, v) in &per_am {
            let _ = writeln!(
                out,
                "prometheus_notifications_latency_seconds_sum{{alertmanager=\"{url}\"}} {}",
                format_value(v.latency_sum)
            );
            let _ = writeln!(
                out,
                "prometheus_notifications_latency_seconds_count{{alertmanager=\"{url}\"}} {}",
                v.latency_count
            );
        }
        family(
            out,
            "prometheus_notifications_errors_total",
            "counter",
            "Total number of errors sending alert notifications.",
        );
        for (url, v) in &per_am {
            let _ = writeln!(
                out,
                "prometheus_notifications_errors_total{{alertmanager=\"{url}\"}} {}",
                v.errors
            );
        }
        family(
            out,
            "prometheus_notifications_sent_total",
            "counter",
            "Total number of alerts sent.",
        );
        for (url, v) in &per_am {
            let _ = writeln!(
                out,
                "prometheus_notifications_sent_total{{alertmanager=\"{url}\"}} {}",
                v.sent
            );
        }
        for (name, kind, help, value) in [
            (
                "prometheus_notifications_dropped_total",
                "counter",
                "Total number of alerts dropped due to errors when sending to Alertmanager.",
                self.dropped_total(),
            ),
            (
                "prometheus_notifications_queue_length",
                "gauge",
                "The number of alert notifications in the queue.",
                g.queue_length as u64,
            ),
            (
                "prometheus_notifications_queue_capacity",
                "gauge",
                "The capacity of the alert notifications queue.",
                g.queue_capacity as u64,
            ),
            (
                "prometheus_notifications_alertmanagers_discovered",
                "gauge",
                "The number of alertmanagers discovered and active.",
                g.alertmanagers as u64,
            ),
        ] {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_names() {
        let m = Metrics::default();
        m.register("http://a:1/api/v2/alerts");
        m.attempt(
            "http://b:1/api/v2/alerts",
            3,
            false,
            Duration::from_millis(500),
        );
        m.dropped(3);
        let mut out = String::new();
        m.render(
            &Gauges {
                queue_length: 2,
                queue_capacity: 10,
                alertmanagers: 1,
            },
            &mut out,
        );
        for line in [
            "prometheus_notifications_sent_total{alertmanager=\"http://a:1/api/v2/alerts\"} 0",
            "prometheus_notifications_sent_total{alertmanager=\"http://b:1/api/v2/alerts\"} 3",
            "prometheus_notifications_errors_total{alertmanager=\"http://b:1/api/v2/alerts\"} 1",
            "prometheus_notifications_latency_seconds_sum{alertmanager=\"http://b:1/api/v2/alerts\"} 0.5",
            "prometheus_notifications_dropped_total 3",
            "prometheus_notifications_queue_length 2",
            "prometheus_notifications_queue_capacity 10",
            "prometheus_notifications_alertmanagers_discovered 1",
            "# TYPE prometheus_notifications_latency_seconds summary",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
