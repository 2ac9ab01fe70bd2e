//! The standard metrics from Istio's series (`reporter="destination"`), one PromQL range
//! query per metric and version, each point covering one `(t - step, t]` interval.
//!
//! The service is found by `destination_service_name`, else by `destination_app` (the first
//! that has series in the window), so the same name works for a Kubernetes service and for
//! an app label; the version is `destination_version`.

use super::{escape, on_grid, RangeQuery, Series, VerifyError, VerifyRequest};

const REQUESTS: &str = "istio_requests_total";
const BUCKETS: &str = "istio_request_duration_milliseconds_bucket";

/// Each version's series, or None when the service has no Istio request series at all.
pub(crate) fn collect(
    req: &VerifyRequest,
    q: &dyn RangeQuery,
) -> Result<Option<(Series, Series)>, VerifyError> {
    let Some(service_sel) = find_service(req, q)? else {
        return Ok(None);
    };
    let one = |v: &str| versions_series(req, q, &service_sel, v);
    Ok(Some((one(&req.baseline)?, one(&req.canary)?)))
}

/// The matchers naming the service, by the first label that has series in the window.
fn find_service(req: &VerifyRequest, q: &dyn RangeQuery) -> Result<Option<String>, VerifyError> {
    for label in ["destination_service_name", "destination_app"] {
        let mut sel = format!(
            "reporter=\"destination\",{label}=\"{}\"",
            escape(&req.service)
        );
        if let Some(ns) = &req.namespace {
            sel.push_str(&format!(
                ",destination_service_namespace=\"{}\"",
                escape(ns)
            ));
        }
        let text = format!(
            "count(last_over_time({REQUESTS}{{{sel}}}[{}ms]))",
            req.window_ms
        );
        let found = run(q, &text, req.end_ms, req.end_ms, req.step_ms)?;
        if found
            .iter()
            .any(|s| s.samples.iter().any(|p| p.v.is_finite() && p.v > 0.0))
        {
            return Ok(Some(sel));
        }
    }
    Ok(None)
}

fn versions_series(
    req: &VerifyRequest,
    q: &dyn RangeQuery,
    service_sel: &str,
    version: &str,
) -> Result<Series, VerifyError> {
    let sel = format!("{service_sel},destination_version=\"{}\"", escape(version));
    let r = format!("[{}ms]", req.step_ms);
    let requests = format!("sum(increase({REQUESTS}{{{sel}}}{r}))");
    let errors = format!("sum(increase({REQUESTS}{{{sel},response_code=~\"5..\"}}{r}))");
    let success = format!("1 - ({errors} or vector(0)) / {requests}");
    let quantile =
        |q: f64| format!("histogram_quantile({q}, sum by (le) (rate({BUCKETS}{{{sel}}}{r})))");
    let ends = req.interval_ends();
    let series = |text: &str| -> Result<Vec<f64>, VerifyError> {
        let res = run(q, text, ends[0], req.end_ms, req.step_ms)?;
        Ok(on_grid(&ends, res.first()))
    };
    let requests = series(&requests)?;
    // An interval without requests has no success rate (0/0), not 100 %.
    let success_rate = series(&success)?
        .into_iter()
        .zip(&requests)
        .map(|(s, n)| {
            if n.is_finite() && *n > 0.0 {
                s
            } else {
                f64::NAN
            }
        })
        .collect();
    Ok(Series {
        success_rate,
        p50: series(&quantile(0.5))?,
        p99: series(&quantile(0.99))?,
        requests,
    })
}

pub(crate) fn run(
    q: &dyn RangeQuery,
    text: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<meshlens_model::SeriesSamples>, VerifyError> {
    q.range(text, start, end, step)
        .map_err(|source| VerifyError::Query {
            query: text.to_string(),
            source,
        })
}
