//! The PromQL behind an SLO's status (`GET /api/v1/slos`): each query reads the recorded
//! series of [`crate::rules_yaml`] and returns one series per indicator, told apart by the
//! `slo` label (`availability`, `latency`).

use crate::burn::alert_windows;
use crate::duration::format_duration;
use crate::rules::{ratio_name, BUDGET_REMAINING, OBJECTIVE};
use crate::sli::service_matchers;
use crate::Slo;

/// `(key, promql)` pairs for one SLO, in a stable order:
/// - `burn_rate_<w>` for every alert window (5m … 3d) and for the SLO window (e.g. `30d`):
///   the error ratio over `w` divided by the error budget (1 = spending exactly on budget);
/// - `error_budget_remaining`: the share of the window's budget left (negative once spent);
/// - `objective`: the objective as a ratio.
pub fn status_queries(slo: &Slo) -> Vec<(String, String)> {
    let sel = format!("{{{}}}", service_matchers(slo));
    let mut windows = alert_windows();
    if !windows.contains(&slo.window) {
        windows.push(slo.window);
    }
    let mut out: Vec<(String, String)> = windows
        .into_iter()
        .map(|w| {
            (
                format!("burn_rate_{}", format_duration(w)),
                format!("{}{sel} / (1 - {OBJECTIVE}{sel})", ratio_name(w)),
            )
        })
        .collect();
    out.push((
        "error_budget_remaining".into(),
        format!("{BUDGET_REMAINING}{sel}"),
    ));
    out.push(("objective".into(), format!("{OBJECTIVE}{sel}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queries_cover_every_window_and_the_budget() {
        let slo = Slo {
            service: "reviews".into(),
            namespace: Some("default".into()),
            objective: 99.9,
            latency: None,
            window: Duration::from_secs(30 * 86_400),
            reporter: Default::default(),
        };
        let q = status_queries(&slo);
        let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "burn_rate_5m",
                "burn_rate_30m",
                "burn_rate_1h",
                "burn_rate_2h",
                "burn_rate_6h",
                "burn_rate_1d",
                "burn_rate_3d",
                "burn_rate_30d",
                "error_budget_remaining",
                "objective"
            ]
        );
        assert_eq!(
            q[2].1,
            "slo:sli_error:ratio_rate1h{service=\"reviews\",namespace=\"default\"} / \
             (1 - slo:objective:ratio{service=\"reviews\",namespace=\"default\"})"
        );
        assert_eq!(
            q[8].1,
            "slo:error_budget_remaining:ratio{service=\"reviews\",namespace=\"default\"}"
        );
        let three = Slo {
            window: Duration::from_secs(3 * 86_400),
            ..slo
        };
        assert_eq!(status_queries(&three).len(), 9);
    }
}
