//! The canary judge's input side: per-interval values of baseline and canary, from Istio's
//! standard series (through PromQL) or from spans, then the judge and the report.
//!
//! The metric side goes through [`RangeQuery`] rather than the PromQL engine itself, so this
//! crate stays below the engine and the collectors can be tested with canned answers; the
//! server implements it over its engine and the tenant's storage.
//!
//! A run never passes on missing data: no series and no spans for the service, a version
//! without requests, or fewer than `min_requests` on either side is inconclusive, with a
//! reason naming the version and its count.

mod custom;
mod istio;
mod params;
mod report;
mod traces;

pub use params::parse_request;
pub use report::{render_text, Report, Side};

use meshlens_model::{SeriesSamples, SpanReader, StorageError};

use crate::judge::{self, Direction, JudgeOptions, MetricSamples, MetricSpec, Verdict};

/// Where the figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Istio metrics when the service has any in the window, else traces.
    Auto,
    Metrics,
    Traces,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Auto => "auto",
            Source::Metrics => "metrics",
            Source::Traces => "traces",
        }
    }
}

/// A user-named PromQL metric (`name=EXPR`, `$version` replaced by each version).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomMetric {
    pub name: String,
    pub expr: String,
    pub direction: Direction,
}

/// One verification, as `GET /api/v1/verify` and `meshlens verify` describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyRequest {
    pub service: String,
    pub namespace: Option<String>,
    pub baseline: String,
    pub canary: String,
    pub window_ms: i64,
    pub step_ms: i64,
    pub end_ms: i64,
    pub min_requests: u64,
    pub custom: Vec<CustomMetric>,
    pub source: Source,
}

impl VerifyRequest {
    /// The interval ends: `window / step` points, the last at `end`; each interval is
    /// `(t - step, t]`, as a PromQL range query's `[step]` windows are.
    pub fn interval_ends(&self) -> Vec<i64> {
        let step = self.step_ms.max(1);
        let n = (self.window_ms / step).clamp(1, 11_000);
        (0..n).map(|i| self.end_ms - (n - 1 - i) * step).collect()
    }

    /// Where the first interval starts (the window, trimmed to whole steps).
    pub fn start_ms(&self) -> i64 {
        let step = self.step_ms.max(1);
        self.end_ms - (self.window_ms / step).clamp(1, 11_000) * step
    }
}

/// A query the metric collectors could not run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
    /// The HTTP status the engine gives it (400 for a query that does not parse).
    pub status: u16,
}

/// PromQL range queries over one tenant's metrics.
pub trait RangeQuery: Sync {
    /// Checks that `query` parses, without running it.
    fn check(&self, query: &str) -> Result<(), QueryError>;
    /// Evaluates `query` at `start, start + step, … end` (milliseconds).
    fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError>;
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A parameter is missing or wrong; names the parameter.
    #[error("invalid parameter {param:?}: {message}")]
    Usage { param: String, message: String },
    #[error("query {query:?}: {source}")]
    Query {
        query: String,
        #[source]
        source: QueryError,
    },
    #[error("reading spans: {0}")]
    Spans(#[from] StorageError),
}

impl VerifyError {
    pub(crate) fn usage(param: &str, message: impl Into<String>) -> Self {
        VerifyError::Usage {
            param: param.to_string(),
            message: message.into(),
        }
    }

    /// The HTTP status of the answer: 400 for usage errors, else the engine's or storage's.
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::Usage { .. } => 400,
            VerifyError::Query { source, .. } => source.status,
            VerifyError::Spans(e) => e.http_status(),
        }
    }
}

/// One version's per-interval values of the four standard metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub success_rate: Vec<f64>,
    pub p50: Vec<f64>,
    pub p99: Vec<f64>,
    pub requests: Vec<f64>,
}

impl Series {
    pub(crate) fn nan(n: usize) -> Series {
        Series {
            success_rate: vec![f64::NAN; n],
            p50: vec![f64::NAN; n],
            p99: vec![f64::NAN; n],
            requests: vec![f64::NAN; n],
        }
    }

    /// Requests in the whole window (intervals without data count as none).
    pub fn total_requests(&self) -> u64 {
        let sum: f64 = self.requests.iter().filter(|v| v.is_finite()).sum();
        sum.max(0.0).round() as u64
    }
}

/// The standard metrics' specs: a success rate that must not drop (critical, 1 % tolerance),
/// p50 and p99 that must not rise (20 % and 25 %), and request volume for information.
pub fn standard_specs() -> [MetricSpec; 4] {
    let spec = |name: &str, direction, weight, critical, tolerance, informational| MetricSpec {
        name: name.to_string(),
        direction,
        weight,
        critical,
        tolerance,
        informational,
    };
    [
        spec("success-rate", Direction::Decrease, 2.0, true, 0.01, false),
        spec("latency-p50", Direction::Increase, 1.0, false, 0.2, false),
        spec("latency-p99", Direction::Increase, 1.0, false, 0.25, false),
        spec("requests", Direction::Either, 0.0, false, 0.0, true),
    ]
}

/// Runs one verification: collects, judges, and applies the traffic gates.
pub fn verify(
    req: &VerifyRequest,
    metrics: &dyn RangeQuery,
    spans: &dyn SpanReader,
    opts: &JudgeOptions,
) -> Result<Report, VerifyError> {
    custom::check(req, metrics)?;
    let n = req.interval_ends().len();
    // Which source, and each version's series from it; None: the service has no data at all.
    let collected = match req.source {
        Source::Metrics => istio::collect(req, metrics)?.map(|c| ("metrics", c)),
        Source::Traces => traces::collect(req, spans)?.map(|c| ("traces", c)),
        Source::Auto => match istio::collect(req, metrics)? {
            Some(c) => Some(("metrics", c)),
            None => traces::collect(req, spans)?.map(|c| ("traces", c)),
        },
    };
    let no_data = collected.is_none();
    let (source, (base, canary)) = match collected {
        Some((s, c)) => (s, c),
        None => {
            let source = match req.source {
                Source::Traces => "traces",
                _ => "metrics",
            };
            (source, (Series::nan(n), Series::nan(n)))
        }
    };
    let specs = standard_specs();
    let mut samples: Vec<MetricSamples> = specs
        .iter()
        .cloned()
        .zip([
            (&base.success_rate, &canary.success_rate),
            (&base.p50, &canary.p50),
            (&base.p99, &canary.p99),
            (&base.requests, &canary.requests),
        ])
        .map(|(spec, (b, c))| MetricSamples {
            spec,
            baseline: b.clone(),
            canary: c.clone(),
        })
        .collect();
    samples.extend(custom::collect(req, metrics)?);
    let judged = judge::judge(opts, &samples);
    let (b_req, c_req) = (base.total_requests(), canary.total_requests());
    let gate = if no_data {
        Some(no_data_reason(req))
    } else {
        gate_reason(req, b_req, c_req)
    };
    let (verdict, reason) = match gate {
        Some(why) => (Verdict::Inconclusive, why),
        None => (judged.verdict, judged.reason.clone()),
    };
    Ok(Report {
        verdict,
        score: judged.score,
        reason,
        service: req.service.clone(),
        namespace: req.namespace.clone(),
        source: source.to_string(),
        window: fmt_ms(req.window_ms),
        step: fmt_ms(req.step_ms),
        start: req.start_ms(),
        end: req.end_ms,
        baseline: Side {
            version: req.baseline.clone(),
            requests: b_req,
        },
        canary: Side {
            version: req.canary.clone(),
            requests: c_req,
        },
        metrics: judged.metrics,
    })
}

fn no_data_reason(req: &VerifyRequest) -> String {
    let what = match req.source {
        Source::Metrics => "no Istio request metrics (reporter=\"destination\")",
        Source::Traces => "no spans",
        Source::Auto => "no Istio request metrics and no spans",
    };
    let ns = req
        .namespace
        .as_deref()
        .map(|n| format!(" in namespace {n:?}"))
        .unwrap_or_default();
    format!(
        "{what} for service {:?}{ns} in the {} window ending at {}: nothing to judge",
        req.service,
        fmt_ms(req.window_ms),
        meshlens_model::time::rfc3339_ms(req.end_ms)
    )
}

/// The traffic gate: each version needs `min_requests` in the window.
fn gate_reason(req: &VerifyRequest, base: u64, canary: u64) -> Option<String> {
    let short: Vec<String> = [
        ("baseline", &req.baseline, base),
        ("canary", &req.canary, canary),
    ]
    .into_iter()
    .filter(|(_, _, n)| *n < req.min_requests)
    .map(|(role, v, n)| {
        let none = if n == 0 { " (no data for it)" } else { "" };
        format!("{role} {v:?} has {n} requests{none}")
    })
    .collect();
    (!short.is_empty()).then(|| {
        format!(
            "too little traffic: {}, fewer than min_requests {} in the {} window",
            short.join(" and "),
            req.min_requests,
            fmt_ms(req.window_ms)
        )
    })
}

pub(crate) fn fmt_ms(ms: i64) -> String {
    meshlens_model::format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// A PromQL string literal's body: `\` and `"` escaped.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Places `values` (timestamped series points) on the interval grid `ends`; NaN where none.
pub(crate) fn on_grid(ends: &[i64], series: Option<&SeriesSamples>) -> Vec<f64> {
    let mut out = vec![f64::NAN; ends.len()];
    if let Some(s) = series {
        for smp in &s.samples {
            if let Ok(i) = ends.binary_search(&smp.t) {
                out[i] = smp.v;
            }
        }
    }
    out
}
