//! User-named PromQL metrics (`name=EXPR`): `$version` becomes each version (escaped for a
//! string literal, where it belongs), and the expression must give one series per version.

use super::istio::run;
use super::{escape, on_grid, RangeQuery, VerifyError, VerifyRequest};
use crate::judge::{MetricSamples, MetricSpec};

pub(crate) fn substitute(expr: &str, version: &str) -> String {
    expr.replace("$version", &escape(version))
}

/// Every custom expression parses (checked before any query runs, so a typo is a 400).
pub(crate) fn check(req: &VerifyRequest, q: &dyn RangeQuery) -> Result<(), VerifyError> {
    for c in &req.custom {
        q.check(&substitute(&c.expr, &req.baseline))
            .map_err(|e| VerifyError::usage("metric", format!("metric {:?}: {e}", c.name)))?;
    }
    Ok(())
}

pub(crate) fn collect(
    req: &VerifyRequest,
    q: &dyn RangeQuery,
) -> Result<Vec<MetricSamples>, VerifyError> {
    let ends = req.interval_ends();
    let mut out = Vec::new();
    for c in &req.custom {
        let side = |version: &str| -> Result<Vec<f64>, VerifyError> {
            let text = substitute(&c.expr, version);
            let res = run(q, &text, ends[0], req.end_ms, req.step_ms)?;
            if res.len() > 1 {
                return Err(VerifyError::usage(
                    "metric",
                    format!(
                        "metric {:?} gives {} series for version {version:?}; aggregate it to \
                         one (e.g. sum(...))",
                        c.name,
                        res.len()
                    ),
                ));
            }
            Ok(on_grid(&ends, res.first()))
        };
        out.push(MetricSamples {
            spec: MetricSpec {
                name: c.name.clone(),
                direction: c.direction,
                weight: 1.0,
                critical: false,
                tolerance: 0.1,
                informational: false,
            },
            baseline: side(&req.baseline)?,
            canary: side(&req.canary)?,
        });
    }
    Ok(out)
}
