//! Human wording of the judge's figures: units guessed from the metric's name (the specs
//! carry none), compact numbers, and the report table of [`to_text`].

use super::{Classification, Judgement, Summary, Verdict};

/// How a metric's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A share in [0, 1] shown as a percentage (success rate, error share).
    Percent,
    Millis,
    Plain,
}

impl Unit {
    pub(crate) fn of(name: &str, a: &Summary, b: &Summary) -> Unit {
        let n = name.to_ascii_lowercase();
        let in_unit =
            |s: &Summary| s.min.is_none_or(|v| v >= 0.0) && s.max.is_none_or(|v| v <= 1.0);
        if (n.contains("success") || n.contains("error")) && in_unit(a) && in_unit(b) {
            Unit::Percent
        } else if n.contains("latency")
            || n.contains("duration")
            || n.ends_with("ms")
            || n.ends_with("millis")
        {
            Unit::Millis
        } else {
            Unit::Plain
        }
    }
}

pub(crate) fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Percent => format!("{:.2} %", v * 100.0),
        Unit::Millis => format!("{} ms", fmt_num(v)),
        Unit::Plain => fmt_num(v),
    }
}

/// About three significant digits, no trailing zeros, no exponent for everyday magnitudes.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-6..15).contains(&mag) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - mag).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// p-values: three significant digits, scientific below 0.001.
pub fn fmt_p(p: f64) -> String {
    if p > 0.0 && p < 1e-3 {
        format!("{p:.1e}")
    } else {
        fmt_num(p)
    }
}

pub(crate) fn fmt_effect(e: f64) -> String {
    format!("{}×", fmt_num(e))
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    }
}

/// The report as a table for a terminal: the verdict and why, one row per metric with both
/// versions' medians, the effect, the p-value and the classification, then each metric's
/// reason.
pub fn to_text(j: &Judgement, baseline: &str, canary: &str) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "METRIC".into(),
        format!("BASELINE {baseline}"),
        format!("CANARY {canary}"),
        "EFFECT".into(),
        "P".into(),
        "RESULT".into(),
    ]];
    for m in &j.metrics {
        let unit = Unit::of(&m.name, &m.baseline, &m.canary);
        let med = |s: &Summary| s.median.map_or("-".to_string(), |v| fmt_value(unit, v));
        let class = match m.classification {
            Classification::Pass => "pass",
            Classification::High => "high",
            Classification::Low => "low",
            Classification::NoData => "no data",
            Classification::Info => "info",
        };
        let mut result = match m.verdict {
            Verdict::Fail => format!("FAIL ({class})"),
            _ => class.to_string(),
        };
        if m.critical {
            result.push_str(", critical");
        }
        rows.push([
            m.name.clone(),
            med(&m.baseline),
            med(&m.canary),
            m.effect.map_or("-".to_string(), fmt_effect),
            m.p_value.map_or("-".to_string(), fmt_p),
            result,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "{}  score {}/100  baseline {baseline}, canary {canary}\n{}\n\n",
        verdict_word(j.verdict),
        fmt_num((j.score * 10.0).round() / 10.0),
        j.reason
    );
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + 2 - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    for m in &j.metrics {
        out.push_str(&format!("{}: {}\n", m.name, m.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(412.3), "412");
        assert_eq!(fmt_num(3.1), "3.1");
        assert_eq!(fmt_num(0.925), "0.925");
        assert_eq!(fmt_num(0.02), "0.02");
        assert_eq!(fmt_num(95.0), "95");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_p(0.00042), "4.2e-4");
        assert_eq!(fmt_p(0.62), "0.62");
    }
}
