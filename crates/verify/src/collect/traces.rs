//! The standard metrics from spans, for services without Istio metrics: the service's spans
//! (its server spans when it has any, so a call it makes is not counted as a request it
//! served), the version from the `service.version` tag (OTLP resource attributes land in
//! span tags), an error when the span has an `error` tag or an HTTP status >= 500.

use meshlens_model::{Span, SpanKind, SpanReader};

use super::{Series, VerifyError, VerifyRequest};

pub const VERSION_TAG: &str = "service.version";

/// One span as the judge needs it.
struct Obs {
    interval: usize,
    canary: bool,
    server: bool,
    error: bool,
    duration_ms: Option<f64>,
}

/// Each version's series, or None when the service has no spans in the window.
pub(crate) fn collect(
    req: &VerifyRequest,
    spans: &dyn SpanReader,
) -> Result<Option<(Series, Series)>, VerifyError> {
    let ends = req.interval_ends();
    let n = ends.len();
    let step_us = req.step_ms.max(1) as u64 * 1000;
    let first_start_us = (req.start_ms().max(0) as u64) * 1000;
    let end_us = req.end_ms.max(0) as u64 * 1000;
    let service = req.service.to_lowercase();
    let mut seen = false;
    let mut obs = Vec::new();
    spans.scan(first_start_us + 1, end_us, &mut |s: &Span| {
        let Some(svc) = s.local_service() else { return };
        if !svc.eq_ignore_ascii_case(&service) {
            return;
        }
        let Some(ts) = s.timestamp.filter(|t| *t > first_start_us && *t <= end_us) else {
            return;
        };
        seen = true;
        let canary = match s.tags.get(VERSION_TAG).map(String::as_str) {
            Some(v) if v == req.canary => true,
            Some(v) if v == req.baseline => false,
            _ => return,
        };
        let interval = (((ts - first_start_us - 1) / step_us) as usize).min(n - 1);
        obs.push(Obs {
            interval,
            canary,
            server: s.kind == Some(SpanKind::Server),
            error: is_error(s),
            duration_ms: s.duration.map(|d| d as f64 / 1000.0),
        });
    })?;
    if !seen {
        return Ok(None);
    }
    let servers_only = obs.iter().any(|o| o.server);
    let side = |canary: bool| {
        let mut per: Vec<(usize, usize, Vec<f64>)> = vec![(0, 0, Vec::new()); n];
        for o in obs
            .iter()
            .filter(|o| o.canary == canary && (o.server || !servers_only))
        {
            let p = &mut per[o.interval];
            p.0 += 1;
            p.1 += usize::from(o.error);
            p.2.extend(o.duration_ms);
        }
        let mut s = Series::nan(n);
        for (i, (count, errors, mut d)) in per.into_iter().enumerate() {
            s.requests[i] = count as f64;
            if count > 0 {
                s.success_rate[i] = 1.0 - errors as f64 / count as f64;
            }
            d.sort_by(f64::total_cmp);
            s.p50[i] = quantile(&d, 0.5);
            s.p99[i] = quantile(&d, 0.99);
        }
        s
    };
    Ok(Some((side(false), side(true))))
}

/// An `error` tag (other than "false") or an HTTP status of 500 or more.
pub fn is_error(s: &Span) -> bool {
    if s.tags.get("error").is_some_and(|v| v != "false") {
        return true;
    }
    ["http.status_code", "http.response.status_code"]
        .iter()
        .filter_map(|k| s.tags.get(*k))
        .filter_map(|v| v.trim().parse::<u16>().ok())
        .any(|c| c >= 500)
}

/// Linear interpolation between closest ranks (numpy's default); NaN when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
