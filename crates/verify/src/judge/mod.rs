//! The canary judge, as Kayenta's Mann-Whitney classifier: per-interval values of baseline
//! and canary per metric, NaN and outlier removal, a two-sided Mann-Whitney U test at the
//! configured confidence, an effect-size tolerance in the metric's bad direction, then a
//! weighted score 0–100 where any failed critical metric fails the whole run.
//!
//! (Types are the contract between the judge, the collectors, the API and the UI; the
//! statistics are being written in `stats`.)

use serde::{Deserialize, Serialize};

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
