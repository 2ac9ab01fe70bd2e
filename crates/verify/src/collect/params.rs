//! `GET /api/v1/verify`'s parameters: every usage error names its parameter.

use super::{CustomMetric, Source, VerifyError, VerifyRequest};
use crate::judge::Direction;

const DEFAULT_WINDOW_MS: i64 = 600_000;
const DEFAULT_STEP_MS: i64 = 30_000;
const DEFAULT_MIN_REQUESTS: u64 = 50;
/// As the PromQL engine's range limit.
const MAX_INTERVALS: i64 = 11_000;
const BUILT_IN: [&str; 4] = ["success-rate", "latency-p50", "latency-p99", "requests"];

/// Parses the query parameters; `now_ms` is the default `end`. Unknown parameters are
/// refused (a misspelt `min_requests` must not silently use the default), except names
/// starting with `_` that browsers add to defeat caches.
pub fn parse_request(
    params: &[(String, String)],
    now_ms: i64,
) -> Result<VerifyRequest, VerifyError> {
    let mut service = None;
    let mut namespace = None;
    let mut baseline = None;
    let mut canary = None;
    let mut window_ms = DEFAULT_WINDOW_MS;
    let mut step_ms = DEFAULT_STEP_MS;
    let mut end_ms = now_ms;
    let mut min_requests = DEFAULT_MIN_REQUESTS;
    let mut source = Source::Auto;
    let mut custom: Vec<CustomMetric> = Vec::new();
    let mut directions: Vec<(String, Direction)> = Vec::new();
    for (k, v) in params {
        let u = |m: &str| VerifyError::usage(k, m);
        match k.as_str() {
            "service" => service = Some(name(k, v)?),
            "namespace" => namespace = Some(v.trim().to_string()).filter(|s| !s.is_empty()),
            "baseline" => baseline = Some(name(k, v)?),
            "canary" => canary = Some(name(k, v)?),
            "window" => window_ms = duration(k, v)?,
            "step" => step_ms = duration(k, v)?,
            "end" => {
                end_ms = meshlens_model::time::parse_time(v)
                    .ok_or_else(|| u("not a time (Unix seconds or RFC 3339)"))?
            }
            "min_requests" => {
                min_requests = v
                    .trim()
                    .parse()
                    .map_err(|_| u("not a non-negative integer"))?
            }
            "source" => {
                source = match v.as_str() {
                    "auto" | "" => Source::Auto,
                    "metrics" => Source::Metrics,
                    "traces" => Source::Traces,
                    _ => return Err(u("one of auto, metrics, traces")),
                }
            }
            "metric" => {
                let (n, expr) = v.split_once('=').ok_or_else(|| {
                    u("expected NAME=EXPR, e.g. errors=sum(rate(x{version=\"$version\"}[1m]))")
                })?;
                let n = n.trim();
                check_metric_name(k, n)?;
                if expr.trim().is_empty() {
                    return Err(u(&format!("metric {n:?} has an empty expression")));
                }
                if custom.iter().any(|c| c.name == n) {
                    return Err(u(&format!("metric {n:?} is named twice")));
                }
                custom.push(CustomMetric {
                    name: n.to_string(),
                    expr: expr.trim().to_string(),
                    direction: Direction::Either,
                });
            }
            "metric_direction" => {
                let (n, d) = v
                    .split_once(':')
                    .ok_or_else(|| u("expected NAME:increase|decrease|either"))?;
                let d = match d.trim() {
                    "increase" => Direction::Increase,
                    "decrease" => Direction::Decrease,
                    "either" => Direction::Either,
                    other => {
                        return Err(u(&format!(
                            "direction {other:?} is not one of increase, decrease, either"
                        )))
                    }
                };
                directions.push((n.trim().to_string(), d));
            }
            _ if k.starts_with('_') => {}
            _ => {
                return Err(VerifyError::usage(
                    k,
                    "unknown parameter (known: service, baseline, canary, namespace, window, \
                     step, end, min_requests, source, metric, metric_direction)",
                ))
            }
        }
    }
    for (n, d) in directions {
        let c = custom.iter_mut().find(|c| c.name == n).ok_or_else(|| {
            VerifyError::usage(
                "metric_direction",
                format!("no metric named {n:?} (name it with metric={n}=EXPR)"),
            )
        })?;
        c.direction = d;
    }
    let missing = |p: &str| VerifyError::usage(p, "missing; it is required");
    let service = service.ok_or_else(|| missing("service"))?;
    let baseline = baseline.ok_or_else(|| missing("baseline"))?;
    let canary = canary.ok_or_else(|| missing("canary"))?;
    if baseline == canary {
        return Err(VerifyError::usage(
            "canary",
            format!("the same version as baseline ({baseline:?}): nothing to compare"),
        ));
    }
    if step_ms > window_ms {
        return Err(VerifyError::usage(
            "step",
            format!(
                "longer than the window ({} > {})",
                super::fmt_ms(step_ms),
                super::fmt_ms(window_ms)
            ),
        ));
    }
    if window_ms / step_ms > MAX_INTERVALS {
        return Err(VerifyError::usage(
            "step",
            format!("more than {MAX_INTERVALS} intervals in the window; use a longer step"),
        ));
    }
    Ok(VerifyRequest {
        service,
        namespace,
        baseline,
        canary,
        window_ms,
        step_ms,
        end_ms,
        min_requests,
        custom,
        source,
    })
}

fn name(k: &str, v: &str) -> Result<String, VerifyError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(VerifyError::usage(k, "empty"));
    }
    Ok(v.to_string())
}

fn duration(k: &str, v: &str) -> Result<i64, VerifyError> {
    let d = meshlens_model::parse_duration(v.trim())
        .map_err(|e| VerifyError::usage(k, format!("{e} (e.g. 10m, 30s)")))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 {
        return Err(VerifyError::usage(k, "must be longer than zero"));
    }
    Ok(ms)
}

fn check_metric_name(k: &str, n: &str) -> Result<(), VerifyError> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !ok {
        return Err(VerifyError::usage(
            k,
            format!("metric name {n:?}: use 1-64 letters, digits, '-', '_', '.', ':'"),
        ));
    }
    if BUILT_IN.contains(&n) {
        return Err(VerifyError::usage(
            k,
            format!("metric name {n:?} is a built-in metric's; choose another"),
        ));
    }
    Ok(())
}
