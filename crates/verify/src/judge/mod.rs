//! The canary judge, as Kayenta's Mann-Whitney classifier: per-interval values of baseline
//! and canary per metric, NaN and outlier removal, a two-sided Mann-Whitney U test at the
//! configured confidence, an effect-size tolerance in the metric's bad direction, then a
//! weighted score 0–100 where any failed critical metric fails the whole run.
//!
//! The types are the contract between the judge, the collectors, the API and the UI.

use serde::{Deserialize, Serialize};

mod classify;
pub mod stats;
mod text;

pub use classify::MIN_VALUES;
pub use text::{fmt_num, fmt_p, to_text};

/// Which way a metric must not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is bad (latency, error share).
    Increase,
    /// Lower is bad (success rate).
    Decrease,
    /// Any significant change is bad.
    Either,
}

/// How one metric is judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    pub direction: Direction,
    /// Its share of the score (weights are normalised over the judged metrics).
    pub weight: f64,
    /// A failure of this metric fails the run whatever the score.
    pub critical: bool,
    /// Allowed relative change in the bad direction before a significant difference fails
    /// (0.1: the canary may be 10 % worse).
    pub tolerance: f64,
    /// Reported but never judged (request volume).
    pub informational: bool,
}

/// One metric's per-interval values (NaN where an interval had no data).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSamples {
    pub spec: MetricSpec,
    pub baseline: Vec<f64>,
    pub canary: Vec<f64>,
}

/// The judge's settings, Kayenta's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeOptions {
    /// Confidence of the Mann-Whitney test (0.98: p < 0.02 is a significant difference).
    pub confidence: f64,
    /// A score at or above this passes.
    pub pass_score: f64,
    /// Values farther than this many interquartile ranges outside the quartiles are
    /// outliers and dropped; None keeps them.
    pub outlier_iqr: Option<f64>,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            confidence: 0.98,
            pass_score: 95.0,
            outlier_iqr: Some(3.0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// Kayenta's classification of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// No significant difference beyond tolerance in the bad direction.
    Pass,
    /// The canary is significantly higher (bad when the direction is increase/either).
    High,
    /// The canary is significantly lower (bad when the direction is decrease/either).
    Low,
    /// Too few values on one side to test.
    NoData,
    /// Informational: not judged.
    Info,
}

/// What one side's values look like after cleaning.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Values judged (after NaN and outlier removal).
    pub n: usize,
    pub nan_removed: usize,
    pub outliers_removed: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One metric's figures, verdict and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub name: String,
    pub direction: Direction,
    pub weight: f64,
    pub critical: bool,
    pub tolerance: f64,
    pub classification: Classification,
    pub verdict: Verdict,
    pub baseline: Summary,
    pub canary: Summary,
    /// Mann-Whitney U of the canary sample (SciPy's convention: U1 of the first argument).
    pub u: Option<f64>,
    /// Two-sided p-value.
    pub p_value: Option<f64>,
    /// Canary mean ÷ baseline mean (Kayenta's effect size); None when undefined.
    pub effect: Option<f64>,
    /// One sentence: the figures and the reason for the verdict.
    pub reason: String,
}

/// The whole run's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// 0–100: the weighted share of judged metrics that passed.
    pub score: f64,
    pub metrics: Vec<MetricResult>,
    pub reason: String,
}

/// Judges every metric and combines them: score = 100 × (weight of judged metrics that
/// passed) ÷ (weight of all judged metrics), where judged means neither informational nor
/// NoData. A failed critical metric fails the run whatever the score; a critical metric
/// without enough data, or no judged metric at all, makes it inconclusive (never a pass);
/// otherwise the run passes at `pass_score` or above.
pub fn judge(opts: &JudgeOptions, metrics: &[MetricSamples]) -> Judgement {
    let results: Vec<MetricResult> = metrics
        .iter()
        .map(|m| classify::classify(opts, m))
        .collect();
    let judged: Vec<&MetricResult> = results
        .iter()
        .filter(|r| {
            matches!(
                r.classification,
                Classification::Pass | Classification::High | Classification::Low
            )
        })
        .collect();
    // Non-positive or non-finite weights count as 0; all-zero weights count equally.
    let weight = |r: &MetricResult| {
        if r.weight.is_finite() && r.weight > 0.0 {
            r.weight
        } else {
            0.0
        }
    };
    let total: f64 = judged.iter().map(|r| weight(r)).sum();
    let score = if judged.is_empty() {
        0.0
    } else if total > 0.0 {
        let passed: f64 = judged
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .map(|r| weight(r))
            .sum();
        100.0 * passed / total
    } else {
        let passed = judged.iter().filter(|r| r.verdict == Verdict::Pass).count();
        100.0 * passed as f64 / judged.len() as f64
    };
    let names = |f: &dyn Fn(&MetricResult) -> bool| -> Vec<String> {
        results
            .iter()
            .filter(|r| f(r))
            .map(|r| r.name.clone())
            .collect()
    };
    let failed_critical = names(&|r| r.critical && r.verdict == Verdict::Fail);
    let failed = names(&|r| r.verdict == Verdict::Fail);
    let nodata = names(&|r| r.classification == Classification::NoData);
    let nodata_critical = names(&|r| r.critical && r.classification == Classification::NoData);
    let score_text = fmt_num((score * 10.0).round() / 10.0);
    let pass_text = fmt_num(opts.pass_score);
    let not_judged = if nodata.is_empty() {
        String::new()
    } else {
        format!("; too few values to judge {}", nodata.join(", "))
    };
    let (verdict, reason) = if let Some(first) = failed_critical.first() {
        let why = results
            .iter()
            .find(|r| &r.name == first)
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        (
            Verdict::Fail,
            format!(
                "fail: critical metric {} failed ({why}); score {score_text}",
                failed_critical.join(", ")
            ),
        )
    } else if judged.is_empty() {
        (
            Verdict::Inconclusive,
            if results.is_empty() {
                "inconclusive: no metrics to judge".to_string()
            } else {
                format!(
                    "inconclusive: no metric could be judged (need {MIN_VALUES} values per side after removing missing and outlying intervals){not_judged}"
                )
            },
        )
    } else if !nodata_critical.is_empty() {
        (
            Verdict::Inconclusive,
            format!(
                "inconclusive: critical metric {} had too few values to judge; score {score_text} from the rest",
                nodata_critical.join(", ")
            ),
        )
    } else if score >= opts.pass_score {
        let passed = judged.iter().filter(|r| r.verdict == Verdict::Pass).count();
        (
            Verdict::Pass,
            format!(
                "pass: score {score_text} ≥ {pass_text}, {passed} of {} judged metrics passed{not_judged}",
                judged.len()
            ),
        )
    } else {
        (
            Verdict::Fail,
            format!(
                "fail: score {score_text} < {pass_text}, failed: {}{not_judged}",
                failed.join(", ")
            ),
        )
    };
    Judgement {
        verdict,
        score,
        metrics: results,
        reason,
    }
}
