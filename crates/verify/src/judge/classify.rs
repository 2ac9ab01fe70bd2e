//! One metric's classification: clean both sides, test, weigh the effect, explain.

use super::stats::{self, quantile_sorted};
use super::text::{fmt_effect, fmt_num, fmt_p, fmt_value, Unit};
use super::{
    Classification, Direction, JudgeOptions, MetricResult, MetricSamples, Summary, Verdict,
};

/// Fewer values than this on either side (after cleaning) cannot be judged: NoData.
pub const MIN_VALUES: usize = 3;

/// A side's values after NaN and outlier removal, with their summary.
pub(crate) struct Cleaned {
    pub values: Vec<f64>,
    pub summary: Summary,
}

/// Drops non-finite values, then (with `outlier_iqr = Some(k)`, at least 4 values and a
/// non-zero interquartile range) values beyond k IQRs outside the quartiles. A zero IQR
/// keeps everything: with mostly-identical intervals (a success rate of 100 % in most of
/// them) every deviation would otherwise count as an outlier and real errors would vanish.
pub(crate) fn clean(raw: &[f64], outlier_iqr: Option<f64>) -> Cleaned {
    let mut values: Vec<f64> = raw.iter().copied().filter(|v| v.is_finite()).collect();
    let nan_removed = raw.len() - values.len();
    values.sort_by(f64::total_cmp);
    let mut outliers_removed = 0;
    if let Some(k) = outlier_iqr.filter(|k| k.is_finite() && *k >= 0.0) {
        if values.len() >= 4 {
            let q1 = quantile_sorted(&values, 0.25);
            let q3 = quantile_sorted(&values, 0.75);
            let iqr = q3 - q1;
            if iqr > 0.0 {
                let (lo, hi) = (q1 - k * iqr, q3 + k * iqr);
                let before = values.len();
                values.retain(|v| *v >= lo && *v <= hi);
                outliers_removed = before - values.len();
            }
        }
    }
    let n = values.len();
    let summary = Summary {
        n,
        nan_removed,
        outliers_removed,
        mean: (n > 0).then(|| values.iter().sum::<f64>() / n as f64),
        median: (n > 0).then(|| stats::median_sorted(&values)),
        min: values.first().copied(),
        max: values.last().copied(),
    };
    Cleaned { values, summary }
}

/// Classifies one metric as Kayenta's Mann-Whitney classifier does, with an explicit
/// effect-size tolerance: High/Low only when the difference is significant (p < 1 −
/// confidence), the canary's ranks move in the bad direction and its mean moves beyond the
/// tolerance in that direction.
pub(crate) fn classify(opts: &JudgeOptions, m: &MetricSamples) -> MetricResult {
    let spec = &m.spec;
    let base = clean(&m.baseline, opts.outlier_iqr);
    let can = clean(&m.canary, opts.outlier_iqr);
    let tolerance = if spec.tolerance.is_finite() && spec.tolerance > 0.0 {
        spec.tolerance
    } else {
        0.0
    };
    let unit = Unit::of(&spec.name, &base.summary, &can.summary);
    let (bm, cm) = (base.summary.mean, can.summary.mean);
    let effect = match (bm, cm) {
        (Some(b), Some(c)) if b != 0.0 => Some(c / b),
        (Some(_), Some(0.0)) => Some(1.0),
        _ => None,
    };
    let mut r = MetricResult {
        name: spec.name.clone(),
        direction: spec.direction,
        weight: spec.weight,
        critical: spec.critical,
        tolerance,
        classification: Classification::NoData,
        verdict: Verdict::Inconclusive,
        baseline: base.summary.clone(),
        canary: can.summary.clone(),
        u: None,
        p_value: None,
        effect,
        reason: String::new(),
    };
    let figures = figures(unit, &base.summary, &can.summary, effect);
    if spec.informational {
        r.classification = Classification::Info;
        r.verdict = Verdict::Pass;
        r.reason = format!("{figures}: informational, not judged");
        return r;
    }
    if base.values.len() < MIN_VALUES || can.values.len() < MIN_VALUES {
        r.reason = format!(
            "too few values to judge: canary {} and baseline {} after removing {} missing and {} outlying intervals (need {MIN_VALUES} per side)",
            can.values.len(),
            base.values.len(),
            base.summary.nan_removed + can.summary.nan_removed,
            base.summary.outliers_removed + can.summary.outliers_removed,
        );
        return r;
    }
    let mw = match stats::mann_whitney_u(&can.values, &base.values) {
        Ok(mw) => mw,
        // Unreachable after cleaning (both sides non-empty and finite); stay total anyway.
        Err(e) => {
            r.reason = format!("cannot test: {e}");
            return r;
        }
    };
    r.u = Some(mw.u);
    r.p_value = Some(mw.p_value);
    let alpha = if opts.confidence > 0.0 && opts.confidence < 1.0 {
        1.0 - opts.confidence
    } else {
        1.0 - JudgeOptions::default().confidence
    };
    let half = (can.values.len() * base.values.len()) as f64 / 2.0;
    let higher = mw.u > half;
    let (b, c) = (bm.unwrap_or(0.0), cm.unwrap_or(0.0));
    // Relative change of the mean; absolute when the baseline mean is 0.
    let change = if b != 0.0 { (c - b) / b.abs() } else { c - b };
    let significant = mw.p_value < alpha;
    let bad_way = match spec.direction {
        Direction::Increase => higher,
        Direction::Decrease => !higher,
        Direction::Either => true,
    };
    let beyond = if higher {
        change > tolerance
    } else {
        change < -tolerance
    };
    let p_text = format!(
        "p={} {} {}",
        fmt_p(mw.p_value),
        if significant { "<" } else { "≥" },
        fmt_num(alpha)
    );
    let way = if higher { "higher" } else { "lower" };
    let conclusion = if !significant {
        "no significant difference".to_string()
    } else if !bad_way {
        format!("{way} is better")
    } else if !beyond {
        format!(
            "{way}, but within the {} tolerance",
            tolerance_text(tolerance, b)
        )
    } else if spec.direction == Direction::Either {
        format!("{way}, and any change beyond tolerance is bad")
    } else {
        format!("{way} is worse")
    };
    if significant && bad_way && beyond {
        r.classification = if higher {
            Classification::High
        } else {
            Classification::Low
        };
        r.verdict = Verdict::Fail;
    } else {
        r.classification = Classification::Pass;
        r.verdict = Verdict::Pass;
    }
    r.reason = format!("{figures}, {p_text}: {conclusion}");
    r
}

fn tolerance_text(tolerance: f64, baseline_mean: f64) -> String {
    if baseline_mean != 0.0 {
        format!("{} %", fmt_num(tolerance * 100.0))
    } else {
        format!("{} (absolute, the baseline mean is 0)", fmt_num(tolerance))
    }
}

/// "canary median 412 ms vs baseline 131 ms (3.1×)".
fn figures(unit: Unit, base: &Summary, can: &Summary, effect: Option<f64>) -> String {
    let show = |s: &Summary| match s.median {
        Some(v) => fmt_value(unit, v),
        None => "no data".to_string(),
    };
    let eff = match (effect, base.mean, can.mean) {
        (Some(e), _, _) => format!(" (means {})", fmt_effect(e)),
        (None, Some(b), Some(c)) => {
            let sign = if c >= b { "+" } else { "" };
            format!(" (means differ by {sign}{})", fmt_value(unit, c - b))
        }
        _ => String::new(),
    };
    format!(
        "canary median {} vs baseline {}{eff}",
        show(can),
        show(base)
    )
}
