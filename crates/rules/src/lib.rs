//! Recording and alerting rules with Prometheus's file format and semantics, their
//! evaluation loop, and promtool's rule unit tests.
//!
//! - [`file`]: the rule file format (`groups:` of `record:` / `alert:` rules), validated
//!   up front with promtool-shaped errors (`FILE: LINE:COL: group "G", rule N, "NAME": ...`).
//! - [`Group`]: one group's runtime state, evaluated synchronously at a caller-given
//!   timestamp, so the server's timers and the unit-test runner's simulated clock drive the
//!   same code.
//! - [`RuleManager`]: the server's side: one tokio timer per group, all-or-nothing reloads
//!   that keep the alert state of unchanged rules, the `/api/v1/rules` and `/api/v1/alerts`
//!   JSON and the `prometheus_rule_*` self-metrics.
//!
//! Design decision: evaluation never touches a clock or a task; time comes in as an
//! argument and output goes to the [`meshlens_model::MetricWriter`] handed in, which makes
//! the state machine deterministic and testable without sleeping.

mod alerting;
pub mod check;
mod duration;
mod eval;
pub mod file;
mod group;
mod json;
mod manager;
mod metrics;
mod recording;
mod restore;
mod send;
pub mod unittest;
mod views;

pub use alerting::AlertState;
pub use duration::{format_duration, parse_duration};
pub use file::{parse_rule_file, GroupSpec, RuleFile, RuleFileError, RuleSpec};
pub use group::{EvalContext, Group, GroupEvalOutcome};
pub use manager::{AlertSink, ManagerOptions, RuleKind, RuleManager, RulesFilter};
pub use views::{AlertView, AlertingRuleView, RecordingRuleView, RuleHealth, RuleView};
