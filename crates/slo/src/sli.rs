//! The service level indicators as PromQL over Istio's metrics: errors and requests per
//! second over a window, for availability (5xx responses) and latency (requests slower than
//! the threshold, read from the duration histogram).

use crate::{LatencySlo, Slo};

/// Istio's (Envoy's default) buckets of `istio_request_duration_milliseconds`, the same as
/// `meshlens proxy` uses (`meshlens_proxy::telemetry::metrics::DURATION_BUCKETS_MS`; a test
/// reads the proxy's source to keep the two equal).
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

const REQUESTS: &str = "istio_requests_total";
const DURATION_BUCKET: &str = "istio_request_duration_milliseconds_bucket";

/// Which indicator; its name is the `slo` label of every generated series and alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Availability,
    Latency,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Availability => "availability",
            Kind::Latency => "latency",
        }
    }
}

/// How "fast enough" is read from the histogram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fast {
    /// The threshold is a bucket boundary.
    Bucket(f64),
    /// Between two boundaries (`lo` is `None` below the first one, meaning 0): the requests
    /// under `lo` plus `frac` of those between `lo` and `hi`.
    Between { lo: Option<f64>, hi: f64, frac: f64 },
}

/// Where a threshold (milliseconds) falls in the buckets; an error names the largest finite
/// bucket when the threshold is beyond it or not a positive number.
pub(crate) fn locate(threshold_ms: f64) -> Result<Fast, String> {
    let last = DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.len() - 1];
    if !(threshold_ms.is_finite() && threshold_ms > 0.0) {
        return Err("must be more than 0".to_string());
    }
    if threshold_ms > last {
        return Err(format!(
            "{threshold_ms}ms is above the largest finite bucket of istio_request_duration_milliseconds (le=\"{last}\")"
        ));
    }
    let i = DURATION_BUCKETS_MS.partition_point(|b| *b < threshold_ms);
    let hi = DURATION_BUCKETS_MS[i];
    if hi == threshold_ms {
        return Ok(Fast::Bucket(hi));
    }
    let lo = i.checked_sub(1).map(|j| DURATION_BUCKETS_MS[j]);
    let base = lo.unwrap_or(0.0);
    Ok(Fast::Between {
        lo,
        hi,
        frac: (threshold_ms - base) / (hi - base),
    })
}

/// One indicator of one SLO, ready to print PromQL.
#[derive(Debug, Clone)]
pub(crate) struct Sli<'a> {
    pub slo: &'a Slo,
    pub kind: Kind,
    /// The objective as a ratio (0.999).
    pub objective: f64,
    fast: Option<Fast>,
}

impl<'a> Sli<'a> {
    pub(crate) fn availability(slo: &'a Slo) -> Self {
        Sli {
            slo,
            kind: Kind::Availability,
            objective: slo.objective / 100.0,
            fast: None,
        }
    }

    /// `Err` when the threshold is outside the histogram (see [`locate`]).
    pub(crate) fn latency(slo: &'a Slo, lat: &LatencySlo) -> Result<Self, String> {
        let fast = locate(lat.threshold.as_secs_f64() * 1000.0)?;
        Ok(Sli {
            slo,
            kind: Kind::Latency,
            objective: lat.objective / 100.0,
            fast: Some(fast),
        })
    }

    /// The share of requests that may fail: 1 - objective, rounded so 99.9 % prints 0.001.
    pub(crate) fn budget(&self) -> f64 {
        round_sig(1.0 - self.objective)
    }

    /// Static labels of every recorded series and alert of this indicator.
    pub(crate) fn labels(&self) -> Vec<(String, String)> {
        let mut l = vec![("service".to_string(), self.slo.service.clone())];
        if let Some(ns) = &self.slo.namespace {
            l.push(("namespace".to_string(), ns.clone()));
        }
        l.push(("slo".to_string(), self.kind.label().to_string()));
        l
    }

    /// Matchers selecting this indicator's recorded series (and not another entry's for the
    /// same service in a namespace).
    pub(crate) fn recorded_selector(&self) -> String {
        format!(
            "{{{},slo=\"{}\"}}",
            service_matchers(self.slo),
            self.kind.label()
        )
    }

    /// Bad events per second over `w`, present whenever requests are.
    pub(crate) fn errors_expr(&self, w: &str) -> String {
        let total = self.total_expr(w);
        match &self.fast {
            None => format!(
                "sum(rate({REQUESTS}{{{},response_code=~\"5..\"}}[{w}])) or 0 * {total}",
                raw_matchers(self.slo)
            ),
            Some(fast) => format!("{total} - {}", self.fast_expr(fast, w)),
        }
    }

    /// All requests per second over `w`.
    pub(crate) fn total_expr(&self, w: &str) -> String {
        match self.fast {
            None => format!("sum(rate({REQUESTS}{{{}}}[{w}]))", raw_matchers(self.slo)),
            Some(_) => format!(
                "sum(rate({DURATION_BUCKET}{{{},le=\"+Inf\"}}[{w}]))",
                raw_matchers(self.slo)
            ),
        }
    }

    /// The error ratio over `w` straight from the raw metrics.
    pub(crate) fn ratio_expr(&self, w: &str) -> String {
        format!("({})\n/\n{}", self.errors_expr(w), self.total_expr(w))
    }

    fn bucket_expr(&self, le: f64, w: &str) -> String {
        format!(
            "sum(rate({DURATION_BUCKET}{{{},{}}}[{w}]))",
            raw_matchers(self.slo),
            le_matcher(le)
        )
    }

    fn fast_expr(&self, fast: &Fast, w: &str) -> String {
        match fast {
            Fast::Bucket(b) => self.bucket_expr(*b, w),
            Fast::Between { lo: None, hi, frac } => {
                format!("{} * {}", self.bucket_expr(*hi, w), num(*frac))
            }
            Fast::Between {
                lo: Some(lo),
                hi,
                frac,
            } => {
                let lo = self.bucket_expr(*lo, w);
                format!(
                    "({lo} + ({} - {lo}) * {})",
                    self.bucket_expr(*hi, w),
                    num(*frac)
                )
            }
        }
    }
}

/// `service="…"` and `namespace="…"` (empty when the SLO has none, so entries for one
/// service in several namespaces do not mix).
pub(crate) fn service_matchers(slo: &Slo) -> String {
    format!(
        "service={},namespace={}",
        promql_str(&slo.service),
        promql_str(slo.namespace.as_deref().unwrap_or(""))
    )
}

/// Matchers on Istio's labels for the SLO's service.
fn raw_matchers(slo: &Slo) -> String {
    let mut m = format!(
        "reporter=\"{}\",destination_service_name={}",
        slo.reporter.as_str(),
        promql_str(&slo.service)
    );
    if let Some(ns) = &slo.namespace {
        m.push_str(",destination_service_namespace=");
        m.push_str(&promql_str(ns));
    }
    m
}

/// Matches a bucket however the boundary was printed: `250` (Envoy, meshlens, Prometheus 2),
/// `250.0` (Prometheus 3 normalises `le`), `1.8e+06` (Go's and Envoy's large numbers).
fn le_matcher(b: f64) -> String {
    let plain = format!("{b}");
    let mut spellings = vec![plain.clone()];
    if !plain.contains('.') {
        spellings.push(format!("{plain}.0"));
    }
    if b >= 1e6 {
        spellings.push(go_exp(b));
    }
    if spellings.len() == 1 {
        return format!("le=\"{plain}\"");
    }
    let alts: Vec<String> = spellings
        .iter()
        .map(|s| s.replace('.', "\\\\.").replace('+', "\\\\+"))
        .collect();
    format!("le=~\"{}\"", alts.join("|"))
}

/// Go's `%g`-style exponent form: `1.8e+06`.
fn go_exp(b: f64) -> String {
    let s = format!("{b:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// A number for PromQL and YAML, rounded to 12 significant digits so float noise
/// (1 - 0.999 = 0.0010000000000000009) does not show.
pub(crate) fn num(v: f64) -> String {
    format!("{}", round_sig(v))
}

fn round_sig(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    format!("{v:.11e}").parse().unwrap_or(v)
}

/// A PromQL double-quoted string literal.
pub(crate) fn promql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn locates_thresholds() {
        assert_eq!(locate(250.0), Ok(Fast::Bucket(250.0)));
        assert_eq!(
            locate(300.0),
            Ok(Fast::Between {
                lo: Some(250.0),
                hi: 500.0,
                frac: 0.2
            })
        );
        assert_eq!(
            locate(0.25),
            Ok(Fast::Between {
                lo: None,
                hi: 0.5,
                frac: 0.5
            })
        );
        assert_eq!(locate(3_600_000.0), Ok(Fast::Bucket(3_600_000.0)));
        let err = locate(3_600_001.0).unwrap_err();
        assert!(err.contains("le=\"3600000\""), "{err}");
        assert!(locate(0.0).is_err());
        assert!(locate(f64::NAN).is_err());
    }

    #[test]
    fn le_matcher_accepts_every_spelling() {
        assert_eq!(le_matcher(0.5), "le=\"0.5\"");
        assert_eq!(le_matcher(250.0), "le=~\"250|250\\\\.0\"");
        assert_eq!(
            le_matcher(1_800_000.0),
            "le=~\"1800000|1800000\\\\.0|1\\\\.8e\\\\+06\""
        );
        assert_eq!(go_exp(3_600_000.0), "3.6e+06");
    }

    #[test]
    fn numbers_lose_float_noise() {
        assert_eq!(num(1.0 - 0.999), "0.001");
        assert_eq!(num(14.4 * 0.001), "0.0144");
        assert_eq!(num(0.2), "0.2");
        assert_eq!(num(14.4 * 7.0 / 30.0), "3.36");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(promql_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn latency_interpolates_inside_the_bucket() {
        let slo = Slo {
            service: "reviews".into(),
            namespace: Some("default".into()),
            objective: 99.9,
            latency: None,
            window: Duration::from_secs(30 * 86400),
            reporter: Default::default(),
        };
        let lat = LatencySlo {
            threshold: Duration::from_millis(300),
            objective: 99.0,
        };
        let sli = Sli::latency(&slo, &lat).unwrap();
        let e = sli.errors_expr("5m");
        assert!(e.contains("le=~\"250|250\\\\.0\""), "{e}");
        assert!(e.contains("le=~\"500|500\\\\.0\""), "{e}");
        assert!(e.contains(") * 0.2)"), "{e}");
        assert!(
            e.contains("destination_service_namespace=\"default\""),
            "{e}"
        );
        assert_eq!(sli.budget(), 0.01);
    }
}
