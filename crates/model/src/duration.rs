//! Prometheus's duration notation (`model.Duration`, common v0.39 as in Prometheus 2.42):
//! `1y2w3d4h5m6s7ms`, units in that order, each at most once, integers only; `0` alone is
//! zero. One implementation so rule files, configs, probes and SLOs agree on what is valid.

use std::time::Duration;

/// Why a duration string was refused; the messages are Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// Longer than Go's `time.Duration` holds (about 292 years).
    #[error("duration out of range")]
    OutOfRange,
}

/// Units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The largest total, in milliseconds, that fits Go's nanosecond `time.Duration`.
const MAX_MS: u64 = i64::MAX as u64 / 1_000_000;

/// Parses as Prometheus's `model.ParseDuration`: a syntax error wins over an overflow, as
/// there the whole string is matched before any number is converted.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    match s {
        "" => return Err(DurationError::Empty),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    let invalid = || DurationError::Invalid(s.to_string());
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: Option<u64> = Some(0);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        // Too many digits is an overflow, not a syntax error (Go's Atoi saturates).
        let n = rest[..digits].parse::<u64>().ok();
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(invalid)?;
        let (_, mult) = UNITS[next_unit + pos];
        next_unit += pos + 1;
        total = total
            .zip(n)
            .and_then(|(t, n)| n.checked_mul(mult)?.checked_add(t))
            .filter(|t| *t <= MAX_MS);
    }
    total
        .map(Duration::from_millis)
        .ok_or(DurationError::OutOfRange)
}

/// Prints as Prometheus does (`1h30m`, `0s`); years and weeks only when exact, so 90 days
/// reads `90d`, not `12w6d`. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    format_from(d, 0)
}

/// Prints with days as the largest unit (`30d`, `28d` for four weeks), for names that
/// should read like the SRE workbook's windows.
pub fn format_duration_days(d: Duration) -> String {
    format_from(d, 2)
}

/// Formats using `UNITS[first..]`; the units before `d` only when they divide exactly.
fn format_from(d: Duration, first: usize) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (i, (unit, mult)) in UNITS.iter().enumerate().skip(first) {
        if i < 2 && !ms.is_multiple_of(*mult) {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&v.to_string());
            out.push_str(unit);
            ms -= v * mult;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1m500ms"), Ok(ms(60_500)));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("2w"), Ok(ms(14 * 86_400_000)));
        assert_eq!(parse_duration("1y"), Ok(ms(365 * 86_400_000)));
        assert_eq!(
            parse_duration("1y2w3d4h5m6s7ms"),
            Ok(ms(((((382 * 24 + 4) * 60 + 5) * 60) + 6) * 1000 + 7))
        );
        assert_eq!(parse_duration("292y"), Ok(ms(292 * 365 * 86_400_000)));
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in [
            "1", "60", "1.5m", "m", "ms", "30s1m", "1m1h", "1h1h", "1ms1s", "-1m", "1 m", " 1m",
            "5x", "5mm", "1hm", "1m ",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Invalid(bad.into())),
                "{bad:?}"
            );
        }
        for huge in [
            "293y",
            "99999999999999999999y",
            "106752d1ms",
            "999999999999y",
        ] {
            assert_eq!(
                parse_duration(huge),
                Err(DurationError::OutOfRange),
                "{huge}"
            );
        }
        // The syntax is checked before the size.
        assert_eq!(
            parse_duration("99999999999999999999y1x"),
            Err(DurationError::Invalid("99999999999999999999y1x".into()))
        );
        assert_eq!(
            DurationError::Invalid("5x".into()).to_string(),
            "not a valid duration string: \"5x\""
        );
    }

    #[test]
    fn formats_like_prometheus() {
        let f = |ms| format_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(5_400_000), "1h30m");
        assert_eq!(f(14 * 86_400_000), "2w");
        assert_eq!(f(8 * 86_400_000), "8d");
        assert_eq!(f(90 * 86_400_000), "90d");
        assert_eq!(f(365 * 86_400_000), "1y");
        assert_eq!(f(1500), "1s500ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }

    #[test]
    fn formats_with_days_as_largest_unit() {
        let f = |ms| format_duration_days(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(28 * 86_400_000), "28d");
        assert_eq!(f(365 * 86_400_000), "365d");
        assert_eq!(f(180_000_000), "2d2h");
        assert_eq!(f(300), "300ms");
    }

    #[test]
    fn round_trips() {
        for ms in [
            1,
            999,
            1000,
            61_000,
            3_600_001,
            8 * 86_400_000,
            400 * 86_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            assert_eq!(parse_duration(&format_duration_days(d)), Ok(d));
        }
    }
}
