//! The two duration notations a test file and promtool's messages use: Prometheus's
//! (`1h30m`, `1d`, `0`, as in `eval_time`) and Go's `time.Duration` printing (`1m0s`), which
//! promtool uses for the time of a failed rule evaluation.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A non-negative duration in milliseconds, written in Prometheus's notation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelDuration(pub i64);

impl ModelDuration {
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses `1h30m`, `90s`, `1w`, `0` (units in decreasing order, each at most once), as
    /// Prometheus's `model.ParseDuration` does.
    pub fn parse(text: &str) -> Result<ModelDuration, String> {
        let d = crate::parse_duration(text)?;
        i64::try_from(d.as_millis())
            .map(ModelDuration)
            .map_err(|_| "duration out of range".to_string())
    }
}

impl fmt::Display for ModelDuration {
    /// As Prometheus prints it: years and weeks only when exact (`90d`, not `12w6d`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration::from_millis(self.0.max(0).unsigned_abs());
        f.write_str(&crate::format_duration(d))
    }
}

impl<'de> serde::Deserialize<'de> for ModelDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ModelDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 1m or 1h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelDuration, E> {
                ModelDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ModelDuration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ModelDuration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ModelDuration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<ModelDuration, E> {
                Ok(ModelDuration(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// Go's `time.Duration.String()` for a whole number of milliseconds: `0s`, `500ms`,
/// `1m0s`, `1h0m30.5s`.
pub fn go_duration_string(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    if abs < 1000 {
        return format!("{sign}{abs}ms");
    }
    let hours = abs / 3_600_000;
    let minutes = (abs / 60_000) % 60;
    let millis = abs % 60_000;
    let mut secs = format!("{}", millis / 1000);
    let frac = millis % 1000;
    if frac != 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let p = |s| ModelDuration::parse(s).map(|d| d.0);
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("90s"), Ok(90_000));
        assert_eq!(p("1h30m"), Ok(5_400_000));
        assert_eq!(p("1d"), Ok(86_400_000));
        assert_eq!(p("1w"), Ok(604_800_000));
        assert_eq!(p("1y"), Ok(31_536_000_000));
        assert_eq!(p("1s500ms"), Ok(1500));
        assert!(p("").is_err());
        assert!(p("1m1h").is_err(), "units must decrease");
        assert!(p("1.5m").is_err());
        assert!(p("5").is_err());
        assert!(p("1x").is_err());
        assert!(p("-1m").is_err());
        assert!(p("99999999999999999999y").is_err());
    }

    #[test]
    fn prints_like_prometheus() {
        let s = |ms| ModelDuration(ms).to_string();
        assert_eq!(s(0), "0s");
        assert_eq!(s(90_000), "1m30s");
        assert_eq!(s(3_600_000), "1h");
        assert_eq!(s(90 * 86_400_000), "90d");
        assert_eq!(s(14 * 86_400_000), "2w");
        assert_eq!(s(1500), "1s500ms");
    }

    #[test]
    fn prints_like_go_time_duration() {
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(500), "500ms");
        assert_eq!(go_duration_string(60_000), "1m0s");
        assert_eq!(go_duration_string(3_600_000), "1h0m0s");
        assert_eq!(go_duration_string(90_500), "1m30.5s");
        assert_eq!(go_duration_string(1_250), "1.25s");
    }
}
