//! Prometheus duration strings (`30d`, `1h30m`, `300ms`): parsed for the SLO file, and
//! printed back for rule names, range selectors and `for` clauses.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected numbers with units ms, s, m, h, d, w, y, largest first (e.g. 30d, 1h30m, 300ms)")]
    Syntax(String),
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Units in the order Prometheus requires them, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses Prometheus's duration syntax: each unit at most once, largest first; `0` alone is
/// zero. No fractions, as in Prometheus.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let syntax = || DurationError::Syntax(s.to_string());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0; // index into UNITS the next unit may use at the earliest
    let mut total_ms: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(syntax());
        }
        let n: u64 = s[start..i]
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_string()))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(syntax)?;
        let (_, ms) = UNITS[next_unit + pos];
        next_unit += pos + 1;
        total_ms = n
            .checked_mul(ms)
            .and_then(|v| v.checked_add(total_ms))
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Prints a duration with days as the largest unit (`30d`, not Prometheus's `4w2d`), so
/// rule names read like the SRE workbook's windows. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in UNITS.iter().skip(2) {
        let n = ms / len;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms -= n * len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_syntax() {
        let ms = |v| Duration::from_millis(v);
        assert_eq!(parse_duration("30d").unwrap(), ms(30 * 86_400_000));
        assert_eq!(parse_duration("4w").unwrap(), ms(28 * 86_400_000));
        assert_eq!(parse_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("300ms").unwrap(), ms(300));
        assert_eq!(parse_duration("1s500ms").unwrap(), ms(1500));
        assert_eq!(parse_duration("1y").unwrap(), ms(365 * 86_400_000));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "", "d", "30", "30x", "1m1h", "1h1h", "1.5h", "-1h", "1 h", "ms", "5mm",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("999999999999y"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_with_days_as_largest_unit() {
        let f = |s| format_duration(parse_duration(s).unwrap());
        assert_eq!(f("30d"), "30d");
        assert_eq!(f("4w"), "28d");
        assert_eq!(f("90m"), "1h30m");
        assert_eq!(f("5m"), "5m");
        assert_eq!(f("300ms"), "300ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(180_000)), "2d2h");
    }
}
