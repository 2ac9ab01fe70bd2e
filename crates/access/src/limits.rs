//! Per-tenant limits with Mimir's defaults: label limits checked per series, token-bucket
//! ingestion rates for samples and spans, and counters of what was discarded and why.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use meshlens_model::Labels;
use parking_lot::{Mutex, RwLock};

use meshlens_model::escape_label_value as escape;

/// The `reason` label for data refused by a rate limiter.
pub const REASON_RATE_LIMITED: &str = "rate_limited";

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// `--limits.max-label-names-per-series`, counting `__name__` (Mimir: 30).
    pub max_label_names_per_series: usize,
    /// `--limits.max-label-name-length` in bytes (Mimir: 1024).
    pub max_label_name_length: usize,
    /// `--limits.max-label-value-length` in bytes (Mimir: 2048).
    pub max_label_value_length: usize,
    /// `--limits.max-series-per-tenant`; 0 = unlimited.
    pub max_series_per_tenant: usize,
    /// `--limits.ingestion-rate` in samples/s; 0 = unlimited (Mimir: 10000).
    pub ingestion_rate: f64,
    /// `--limits.ingestion-burst-size` in samples (Mimir: 200000).
    pub ingestion_burst_size: u64,
    /// `--limits.span-ingestion-rate` in spans/s; 0 = unlimited.
    pub span_ingestion_rate: f64,
    /// `--limits.span-ingestion-burst-size` in spans.
    pub span_ingestion_burst_size: u64,
}

/// Mimir's label limits; the rate and series limits are off (0), because one meshlens is
/// often one team's whole hub, where Mimir's 10,000 samples/s would refuse a normal load.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_series_per_tenant: 0,
            ingestion_rate: 0.0,
            ingestion_burst_size: 200_000,
            span_ingestion_rate: 0.0,
            span_ingestion_burst_size: 200_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesLimitError {
    #[error("series has {actual} labels, over the limit of {limit} (--limits.max-label-names-per-series): {series}")]
    TooManyLabels {
        limit: usize,
        actual: usize,
        series: String,
    },
    #[error("label name {name:?} is {actual} bytes, over the limit of {limit} (--limits.max-label-name-length): {series}")]
    LabelNameTooLong {
        limit: usize,
        actual: usize,
        name: String,
        series: String,
    },
    #[error("value of label {name:?} is {actual} bytes, over the limit of {limit} (--limits.max-label-value-length): {series}")]
    LabelValueTooLong {
        limit: usize,
        actual: usize,
        name: String,
        series: String,
    },
    #[error("tenant {tenant:?} has {limit} series, the limit (--limits.max-series-per-tenant); new series are refused")]
    TooManySeries { limit: usize, tenant: String },
}

impl SeriesLimitError {
    /// The `reason` label for the discarded-samples counter.
    pub fn reason(&self) -> &'static str {
        match self {
            SeriesLimitError::TooManyLabels { .. } => "max_label_names_per_series",
            SeriesLimitError::LabelNameTooLong { .. } => "label_name_too_long",
            SeriesLimitError::LabelValueTooLong { .. } => "label_value_too_long",
            SeriesLimitError::TooManySeries { .. } => "max_series_per_tenant",
        }
    }
}

const SHOWN_BYTES: usize = 100;
const SHOWN_SERIES_BYTES: usize = 1000;

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `{a="b", c="d"}` with long names and values cut short.
fn show_series(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{}={:?}",
            truncate(&l.name, SHOWN_BYTES),
            truncate(&l.value, SHOWN_BYTES)
        );
        if out.len() > SHOWN_SERIES_BYTES {
            out.push_str(", ...");
            break;
        }
    }
    out.push('}');
    out
}

impl Limits {
    /// Checks one series against the label limits.
    pub fn check_series(&self, labels: &Labels) -> Result<(), SeriesLimitError> {
        if labels.len() > self.max_label_names_per_series {
            return Err(SeriesLimitError::TooManyLabels {
                limit: self.max_label_names_per_series,
                actual: labels.len(),
                series: show_series(labels),
            });
        }
        for l in labels.iter() {
            if l.name.len() > self.max_label_name_length {
                return Err(SeriesLimitError::LabelNameTooLong {
                    limit: self.max_label_name_length,
                    actual: l.name.len(),
                    name: truncate(&l.name, SHOWN_BYTES),
                    series: show_series(labels),
                });
            }
            if l.value.len() > self.max_label_value_length {
                return Err(SeriesLimitError::LabelValueTooLong {
                    limit: self.max_label_value_length,
                    actual: l.value.len(),
                    name: truncate(&l.name, SHOWN_BYTES),
                    series: show_series(labels),
                });
            }
        }
        Ok(())
    }

    /// Whether a tenant holding `current` series may create one more.
    pub fn check_new_series(&self, tenant: &str, current: usize) -> Result<(), SeriesLimitError> {
        if self.max_series_per_tenant > 0 && current >= self.max_series_per_tenant {
            return Err(SeriesLimitError::TooManySeries {
                limit: self.max_series_per_tenant,
                tenant: tenant.to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Takes `n` tokens if available; 0 (or a non-positive) rate means unlimited.
fn take(
    buckets: &Mutex<HashMap<String, Bucket>>,
    tenant: &str,
    rate: f64,
    burst: u64,
    n: u64,
    now: Instant,
) -> bool {
    if rate.is_nan() || rate <= 0.0 {
        return true;
    }
    if n > burst {
        return false;
    }
    let burst = burst as f64;
    let mut map = buckets.lock();
    let b = map.entry(tenant.to_string()).or_insert(Bucket {
        tokens: burst,
        last: now,
    });
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    b.tokens = (b.tokens + elapsed * rate).min(burst);
    if now > b.last {
        b.last = now;
    }
    if b.tokens >= n as f64 {
        b.tokens -= n as f64;
        true
    } else {
        false
    }
}

/// Per-tenant token buckets for samples and spans; a bucket starts full.
#[derive(Debug)]
pub struct RateLimiters {
    defaults: Limits,
    overrides: RwLock<HashMap<String, Limits>>,
    samples: Mutex<HashMap<String, Bucket>>,
    spans: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiters {
    pub fn new(defaults: Limits) -> Self {
        RateLimiters {
            defaults,
            overrides: RwLock::new(HashMap::new()),
            samples: Mutex::new(HashMap::new()),
            spans: Mutex::new(HashMap::new()),
        }
    }

    /// Gives one tenant its own limits instead of the defaults.
    pub fn set_tenant_limits(&self, tenant: &str, limits: Limits) {
        self.overrides.write().insert(tenant.to_string(), limits);
    }

    pub fn limits_for(&self, tenant: &str) -> Limits {
        self.overrides
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Whether `n` samples may be ingested now; `false` when `n` exceeds the burst size.
    pub fn try_take_samples(&self, tenant: &str, n: u64) -> bool {
        self.try_take_samples_at(tenant, n, Instant::now())
    }

    pub fn try_take_spans(&self, tenant: &str, n: u64) -> bool {
        self.try_take_spans_at(tenant, n, Instant::now())
    }

    /// As [`Self::try_take_samples`] at a given instant (for tests and batch replays).
    pub fn try_take_samples_at(&self, tenant: &str, n: u64, now: Instant) -> bool {
        let l = self.limits_for(tenant);
        take(
            &self.samples,
            tenant,
            l.ingestion_rate,
            l.ingestion_burst_size,
            n,
            now,
        )
    }

    pub fn try_take_spans_at(&self, tenant: &str, n: u64, now: Instant) -> bool {
        let l = self.limits_for(tenant);
        take(
            &self.spans,
            tenant,
            l.span_ingestion_rate,
            l.span_ingestion_burst_size,
            n,
            now,
        )
    }
}

/// Discarded samples and spans by (tenant, reason).
#[derive(Debug, Default)]
pub struct LimitCounters {
    samples: Mutex<BTreeMap<(String, String), u64>>,
    spans: Mutex<BTreeMap<(String, String), u64>>,
}

impl LimitCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `n` discarded samples.
    pub fn add(&self, tenant: &str, reason: &str, n: u64) {
        *self
            .samples
            .lock()
            .entry((tenant.to_string(), reason.to_string()))
            .or_default() += n;
    }

    /// Counts `n` discarded spans.
    pub fn add_spans(&self, tenant: &str, reason: &str, n: u64) {
        *self
            .spans
            .lock()
            .entry((tenant.to_string(), reason.to_string()))
            .or_default() += n;
    }

    pub fn samples(&self, tenant: &str, reason: &str) -> u64 {
        let key = (tenant.to_string(), reason.to_string());
        self.samples.lock().get(&key).copied().unwrap_or(0)
    }

    pub fn spans(&self, tenant: &str, reason: &str) -> u64 {
        let key = (tenant.to_string(), reason.to_string());
        self.spans.lock().get(&key).copied().unwrap_or(0)
    }

    /// Appends `meshlens_discarded_samples_total` and `meshlens_discarded_spans_total`.
    pub fn render(&self, out: &mut String) {
        let families = [
            (
                "meshlens_discarded_samples_total",
                "Samples refused by a per-tenant limit.",
                &self.samples,
            ),
            (
                "meshlens_discarded_spans_total",
                "Spans refused by a per-tenant limit.",
                &self.spans,
            ),
        ];
        for (name, help, map) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((tenant, reason), n) in map.lock().iter() {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\",reason=\"{}\"}} {n}",
                    escape(tenant),
                    escape(reason)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_are_mimirs() {
        let l = Limits::default();
        assert_eq!(l.max_label_names_per_series, 30);
        assert_eq!(l.max_label_name_length, 1024);
        assert_eq!(l.max_label_value_length, 2048);
        assert_eq!(l.max_series_per_tenant, 0);
    }

    #[test]
    fn too_many_labels() {
        let l = Limits {
            max_label_names_per_series: 3,
            ..Limits::default()
        };
        let ok = Labels::from_pairs([("__name__", "up"), ("a", "1"), ("b", "2")]);
        assert_eq!(l.check_series(&ok), Ok(()));
        let bad = Labels::from_pairs([("__name__", "up"), ("a", "1"), ("b", "2"), ("c", "3")]);
        let e = l.check_series(&bad).unwrap_err();
        assert_eq!(e.reason(), "max_label_names_per_series");
        let s = e.to_string();
        assert!(s.contains("--limits.max-label-names-per-series"), "{s}");
        assert!(s.contains("4 labels") && s.contains("limit of 3"), "{s}");
        assert!(s.contains(r#"{__name__="up", a="1", b="2", c="3"}"#), "{s}");
    }

    #[test]
    fn long_name_and_long_value() {
        let l = Limits {
            max_label_name_length: 5,
            max_label_value_length: 8,
            ..Limits::default()
        };
        let e = l
            .check_series(&Labels::from_pairs([("abcdef", "x")]))
            .unwrap_err();
        assert_eq!(e.reason(), "label_name_too_long");
        assert!(e.to_string().contains("--limits.max-label-name-length"));
        let long = "v".repeat(5000);
        let e = l
            .check_series(&Labels::from_pairs([("a", long.as_str())]))
            .unwrap_err();
        assert_eq!(e.reason(), "label_value_too_long");
        let s = e.to_string();
        assert!(
            s.contains("--limits.max-label-value-length") && s.contains("5000 bytes"),
            "{s}"
        );
        assert!(s.len() < 400, "long values are truncated: {}", s.len());
        assert_eq!(
            l.check_series(&Labels::from_pairs([("a", "12345678")])),
            Ok(())
        );
    }

    #[test]
    fn series_per_tenant() {
        let l = Limits::default();
        assert_eq!(l.check_new_series("t", 1_000_000), Ok(()));
        let l = Limits {
            max_series_per_tenant: 10,
            ..Limits::default()
        };
        assert_eq!(l.check_new_series("t", 9), Ok(()));
        let e = l.check_new_series("t", 10).unwrap_err();
        assert_eq!(e.reason(), "max_series_per_tenant");
    }

    #[test]
    fn token_buckets_refill_and_respect_burst() {
        let r = RateLimiters::new(Limits {
            ingestion_rate: 100.0,
            ingestion_burst_size: 50,
            span_ingestion_rate: 0.0,
            ..Limits::default()
        });
        let t0 = Instant::now();
        assert!(
            !r.try_take_samples_at("a", 51, t0),
            "over burst never passes"
        );
        assert!(r.try_take_samples_at("a", 50, t0));
        assert!(!r.try_take_samples_at("a", 1, t0));
        assert!(r.try_take_samples_at("b", 50, t0), "tenants are separate");
        // 0.2 s at 100/s refills 20 tokens
        let t1 = t0 + Duration::from_millis(200);
        assert!(r.try_take_samples_at("a", 20, t1));
        assert!(!r.try_take_samples_at("a", 1, t1));
        // refill caps at the burst size
        let t2 = t1 + Duration::from_secs(100);
        assert!(!r.try_take_samples_at("a", 51, t2));
        assert!(r.try_take_samples_at("a", 50, t2));
        // spans unlimited at rate 0
        assert!(r.try_take_spans_at("a", 1_000_000, t0));
    }

    #[test]
    fn per_tenant_overrides() {
        let r = RateLimiters::new(Limits::default());
        r.set_tenant_limits(
            "small",
            Limits {
                span_ingestion_rate: 1.0,
                span_ingestion_burst_size: 2,
                ..Limits::default()
            },
        );
        let t0 = Instant::now();
        assert!(r.try_take_spans_at("small", 2, t0));
        assert!(!r.try_take_spans_at("small", 1, t0));
        assert!(r.try_take_spans_at("other", 1000, t0));
    }

    #[test]
    fn counters_render() {
        let c = LimitCounters::new();
        c.add("a", REASON_RATE_LIMITED, 5);
        c.add("a", REASON_RATE_LIMITED, 2);
        c.add_spans("b", "rate_limited", 1);
        assert_eq!(c.samples("a", "rate_limited"), 7);
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains(
                "meshlens_discarded_samples_total{tenant=\"a\",reason=\"rate_limited\"} 7\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "meshlens_discarded_spans_total{tenant=\"b\",reason=\"rate_limited\"} 1\n"
            ),
            "{out}"
        );
    }
}
