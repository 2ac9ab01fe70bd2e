//! The verification report: the JSON `GET /api/v1/verify` answers, and its text form for
//! `meshlens verify` (both versions, each metric's figures, verdict and why).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::judge::{MetricResult, Summary, Verdict};

/// One version and its request count in the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub version: String,
    pub requests: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub verdict: Verdict,
    pub score: f64,
    pub reason: String,
    pub service: String,
    pub namespace: Option<String>,
    /// "metrics" or "traces".
    pub source: String,
    pub window: String,
    pub step: String,
    /// Milliseconds.
    pub start: i64,
    pub end: i64,
    pub baseline: Side,
    pub canary: Side,
    pub metrics: Vec<MetricResult>,
}

fn fig(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => "-".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) if v.abs() < 0.001 && v != 0.0 => format!("{v:.1e}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn side(s: &Summary) -> String {
    format!(
        "median {} mean {} (n={}{}{})",
        fig(s.median),
        fig(s.mean),
        s.n,
        if s.nan_removed > 0 {
            format!(", {} empty", s.nan_removed)
        } else {
            String::new()
        },
        if s.outliers_removed > 0 {
            format!(", {} outliers", s.outliers_removed)
        } else {
            String::new()
        }
    )
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    }
}

/// The report for a terminal.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let ns = r
        .namespace
        .as_deref()
        .map(|n| format!(" (namespace {n})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Canary verification of {}{ns}: baseline {} vs canary {}",
        r.service, r.baseline.version, r.canary.version
    );
    let _ = writeln!(
        out,
        "from {}, {} window in {} steps, {} to {}",
        r.source,
        r.window,
        r.step,
        meshlens_model::time::rfc3339_ms(r.start),
        meshlens_model::time::rfc3339_ms(r.end)
    );
    let _ = writeln!(
        out,
        "requests: baseline {} {}, canary {} {}\n",
        r.baseline.version, r.baseline.requests, r.canary.version, r.canary.requests
    );
    for m in &r.metrics {
        let tags = match (m.critical, m.classification) {
            (_, crate::judge::Classification::Info) => " [info]",
            (true, _) => " [critical]",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{}{tags}: {} ({:?})",
            m.name,
            verdict_word(m.verdict).to_lowercase(),
            m.classification
        );
        let _ = writeln!(
            out,
            "  baseline {}: {}",
            r.baseline.version,
            side(&m.baseline)
        );
        let _ = writeln!(out, "  canary   {}: {}", r.canary.version, side(&m.canary));
        if m.p_value.is_some() || m.effect.is_some() {
            let _ = writeln!(
                out,
                "  p-value {}  effect {}  tolerance {}",
                fig(m.p_value),
                fig(m.effect),
                fig(Some(m.tolerance))
            );
        }
        let _ = writeln!(out, "  why: {}", m.reason);
    }
    let _ = writeln!(
        out,
        "\nverdict: {} (score {}): {}",
        verdict_word(r.verdict),
        if r.score.is_finite() {
            format!("{:.0}", r.score)
        } else {
            "-".into()
        },
        r.reason
    );
    out
}
