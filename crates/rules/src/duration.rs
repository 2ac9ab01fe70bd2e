//! Prometheus's duration notation (`model.Duration`): `1y2w3d4h5m6s7ms`, units in that
//! order, each at most once, integers only; `0` alone means zero.

use std::time::Duration;

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a rule-file duration; the error is Prometheus's message.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("not a valid duration string: {s:?}");
    match s {
        "" => return Err("empty duration string".into()),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        // "ms" must win over "m" followed by something else.
        let found = UNITS[next_unit..]
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len());
        let Some((i, (unit, mult))) = found else {
            return Err(invalid());
        };
        rest = &rest[unit.len()..];
        next_unit += i + 1;
        total = n
            .checked_mul(*mult)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i64::MAX as u64 / 1_000_000)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(Duration::from_millis(total))
}

/// Prints a duration as Prometheus does (`1h30m`, `0s`; years and weeks only when exact).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (i, (unit, mult)) in UNITS.iter().enumerate() {
        let exact_only = i < 2;
        if exact_only && !ms.is_multiple_of(*mult) {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
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
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86400)));
        for bad in [
            "", "1", "60", "1.5m", "m", "30s1m", "1h1h", "-1m", "1 m", "5x",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999y").is_err());
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(14 * 86400)), "2w");
        assert_eq!(format_duration(Duration::from_secs(8 * 86400)), "8d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }
}
