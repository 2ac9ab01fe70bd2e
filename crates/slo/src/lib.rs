//! Service level objectives to multi-window, multi-burn-rate alerting rules.
//!
//! A short YAML file names mesh services and their objectives ([`parse_slo_file`]); this
//! crate turns it into a Prometheus rule file ([`rules_yaml`]) over Istio's standard metrics
//! (`istio_requests_total`, `istio_request_duration_milliseconds_bucket`, as `meshlens proxy`
//! and Envoy emit them, `reporter="destination"`), and gives the PromQL the server asks for
//! an SLO's status ([`status_queries`]).
//!
//! The alerts follow the Google SRE workbook's "Alerting on SLOs", 6th iteration: page when
//! the error ratio is over 14.4× the budget over 1h and 5m, or 6× over 6h and 30m; ticket at
//! 3× over 1d and 2h, or 1× over 3d and 6h. The factors are for a 30-day window (2 %, 5 %,
//! 10 % and 10 % of the budget spent in the long window) and scale with the SLO's window so
//! they keep meaning the same share of the budget.
//!
//! Series recorded per indicator, all labelled `service`, `slo` (`availability` or
//! `latency`) and, when the entry names one, `namespace`:
//! - `slo:sli_errors:rate5m`, `slo:sli_requests:rate5m`: bad and all requests per second;
//! - `slo:sli_error:ratio_rate<W>` for W in 5m, 30m, 1h, 2h, 6h, 1d, 3d and the SLO window;
//! - `slo:objective:ratio`, and `slo:error_budget_remaining:ratio` (1 - error ratio over the
//!   window / budget: 1 untouched, 0 spent, negative overspent).
//!
//! Alerts are all named `SLOErrorBudgetBurn`, labelled `severity` (`page`/`ticket`),
//! `long_window` and `short_window`, with `for` of 2m, 15m, 1h and 3h respectively.
//!
//! Key decisions:
//! - Every expression aggregates with `sum(...)` and the rule attaches `service`, `slo` (and
//!   `namespace`) as static labels, so recorded series have exactly those labels, whatever
//!   the proxies' label sets are.
//! - The budget over the whole window is computed from recorded 5-minute rates
//!   (`sum_over_time` of errors over `sum_over_time` of requests, so weighted by traffic),
//!   not from 30 days of raw samples: cheap to evaluate, and it counts from when the rules
//!   were loaded.
//! - A latency threshold between two histogram buckets is interpolated linearly inside the
//!   bucket (the assumption `histogram_quantile` makes); thresholds above the largest finite
//!   bucket are refused.

mod burn;
mod duration;
mod parse;
mod rules;
mod sli;
mod status;
mod yaml;

use std::time::Duration;

pub use duration::{format_duration, parse_duration, DurationError};
pub use parse::parse_slo_file;
pub use rules::rules_yaml;
pub use sli::DURATION_BUCKETS_MS;
pub use status::status_queries;

/// One service's objectives.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Istio's `destination_service_name`.
    pub service: String,
    /// Istio's `destination_service_namespace`; `None` matches every namespace.
    pub namespace: Option<String>,
    /// Availability objective in percent: the share of responses that are not 5xx.
    pub objective: f64,
    pub latency: Option<LatencySlo>,
    /// The window the error budget is spent over (30 days by default).
    pub window: Duration,
    /// Whose telemetry counts: the server's proxy (`destination`, the default) or the
    /// callers' (`source`), which also sees failures that never reach the server, such as
    /// injected faults and connection errors.
    pub reporter: Reporter,
}

/// Istio's `reporter` label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reporter {
    #[default]
    Destination,
    Source,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Destination => "destination",
            Reporter::Source => "source",
        }
    }
}

/// A latency objective: `objective` percent of requests finish within `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySlo {
    pub threshold: Duration,
    pub objective: f64,
}

/// Why an SLO file was refused. Messages name the file, and the entry and field when the
/// problem is in one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    /// Not YAML, or not the file's shape (unknown or missing fields, wrong types).
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// A field of one entry has a value that cannot be used.
    #[error("{file}: slos[{index}].{field}: {message}")]
    Invalid {
        file: String,
        index: usize,
        field: String,
        message: String,
    },
}
