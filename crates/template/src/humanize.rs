//! Prometheus's number helpers: `humanize*`, `parseDuration`, and Go's
//! `strconv.ParseFloat` for string arguments.

use crate::float::format;

fn g4(v: f64) -> String {
    format(v, 'g', Some(4))
}

/// `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

/// `humanize1024`: binary prefixes.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`, or with sub-second prefixes.
pub(crate) fn duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        // Go's int64(v) of an out-of-range float gives MinInt64 (amd64); Rust saturates.
        let d = if v >= 9_223_372_036_854_775_808.0 {
            i64::MIN
        } else {
            v as i64
        };
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// `humanizePercentage`.
pub(crate) fn percentage(v: f64) -> String {
    format!("{}%", g4(v * 100.0))
}

/// Go's `strconv.ParseFloat(s, 64)`, with its error texts.
pub(crate) fn parse_float(s: &str) -> Result<f64, String> {
    let err = |what: &str| {
        format!(
            "strconv.ParseFloat: parsing {}: {what}",
            crate::quote::go_quote(s)
        )
    };
    let lower = s.to_ascii_lowercase();
    let (neg, body) = match lower.as_bytes().first() {
        Some(b'-') => (true, &lower[1..]),
        Some(b'+') => (false, &lower[1..]),
        _ => (false, lower.as_str()),
    };
    match body {
        "inf" | "infinity" => {
            return Ok(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "nan" if !s.starts_with(['+', '-']) => return Ok(f64::NAN),
        _ => {}
    }
    let ok_chars = body
        .bytes()
        .all(|b| b.is_ascii_digit() || b".e+-_xp".contains(&b))
        || body.starts_with("0x");
    if body.is_empty() || !ok_chars {
        return Err(err("invalid syntax"));
    }
    match crate::literal::float_literal(s) {
        Some(v) if v.is_infinite() => Err(err("value out of range")),
        Some(v) => Ok(v),
        None => Err(err("invalid syntax")),
    }
}

/// Prometheus's `model.ParseDuration` (common v0.39), in seconds.
pub(crate) fn parse_duration(d: &str) -> Result<f64, String> {
    match d {
        "0" => return Ok(0.0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {}", crate::quote::go_quote(d));
    // Units in order; each may appear once, as digits followed by the unit.
    const UNITS: [(&str, u128); 7] = [
        ("y", 1000 * 60 * 60 * 24 * 365),
        ("w", 1000 * 60 * 60 * 24 * 7),
        ("d", 1000 * 60 * 60 * 24),
        ("h", 1000 * 60 * 60),
        ("m", 1000 * 60),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = d;
    let mut next_unit = 0;
    let mut total_ms: u128 = 0;
    let mut overflow = false;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u128 = rest[..digits].parse().unwrap_or(u128::MAX);
        let after = &rest[digits..];
        let found = UNITS[next_unit..]
            .iter()
            .enumerate()
            .find(|(_, (u, _))| after.starts_with(u) && !(*u == "m" && after.starts_with("ms")));
        let Some((off, (unit, mult))) = found else {
            return Err(invalid());
        };
        let max = (i64::MAX as u128) / mult / 1_000_000;
        if n > max {
            overflow = true;
        }
        total_ms = total_ms.saturating_add(n.saturating_mul(*mult));
        if total_ms.saturating_mul(1_000_000) > i64::MAX as u128 {
            overflow = true;
        }
        next_unit += off + 1;
        rest = &after[unit.len()..];
    }
    if overflow {
        return Err("duration out of range".into());
    }
    Ok(total_ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are Prometheus's own template test cases.
    #[test]
    fn humanize_cases() {
        let got: Vec<String> = [
            0.0,
            1.0,
            1234567.0,
            0.12,
            -1.0,
            9.223372036854776e18,
            0.0012,
        ]
        .into_iter()
        .map(humanize)
        .collect();
        assert_eq!(got, ["0", "1", "1.235M", "120m", "-1", "9.223E", "1.2m"]);
        let got: Vec<String> = [0.0, 1.0, 1048576.0, 0.12, 1234567.0, 9.223372036854776e18]
            .into_iter()
            .map(humanize1024)
            .collect();
        assert_eq!(got, ["0", "1", "1Mi", "0.12", "1.177Mi", "8Ei"]);
    }

    #[test]
    fn duration_cases() {
        assert_eq!(duration(1e21), "-106751991167300d -15h -30m -8s");
        let secs = [
            0.0,
            1.0,
            60.0,
            3600.0,
            86400.0,
            90000.0,
            -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
            899.99,
        ];
        let got: Vec<String> = secs.into_iter().map(duration).collect();
        assert_eq!(
            got,
            [
                "0s",
                "1s",
                "1m 0s",
                "1h 0m 0s",
                "1d 0h 0m 0s",
                "1d 1h 0m 0s",
                "-2d 3h 4m 5s",
                "14m 59s"
            ]
        );
        let frac = [
            0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345, 3661.0, 0.5, 1234567.0,
        ];
        let got: Vec<String> = frac.into_iter().map(duration).collect();
        assert_eq!(
            got,
            [
                "100ms",
                "100us",
                "123.5ms",
                "1m 0s",
                "1m 0s",
                "1.234s",
                "12.35s",
                "1h 1m 1s",
                "500ms",
                "14d 6h 56m 7s"
            ]
        );
        assert_eq!(duration(f64::INFINITY), "+Inf");
    }

    #[test]
    fn percentage_cases() {
        let got: Vec<String> = [-0.22222, 0.0, 0.1234567, 1.23456, 0.1234, 1234567.0]
            .into_iter()
            .map(percentage)
            .collect();
        assert_eq!(
            got,
            ["-22.22%", "0%", "12.35%", "123.5%", "12.34%", "1.235e+08%"]
        );
    }

    #[test]
    fn parse_float_cases() {
        assert_eq!(parse_float("1234567.0"), Ok(1234567.0));
        assert_eq!(parse_float(".12"), Ok(0.12));
        assert_eq!(parse_float("+Inf"), Ok(f64::INFINITY));
        assert!(parse_float("NaN").is_ok_and(f64::is_nan));
        assert_eq!(
            parse_float("one"),
            Err("strconv.ParseFloat: parsing \"one\": invalid syntax".into())
        );
        assert_eq!(
            parse_float("1e999"),
            Err("strconv.ParseFloat: parsing \"1e999\": value out of range".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h2m10ms"), Ok(3720.01));
        assert_eq!(parse_duration("0"), Ok(0.0));
        assert_eq!(parse_duration("1y1w1d"), Ok((365.0 + 8.0) * 86400.0));
        assert_eq!(parse_duration("90m"), Ok(5400.0));
        assert_eq!(parse_duration(""), Err("empty duration string".into()));
        assert_eq!(
            parse_duration("1m1h"),
            Err("not a valid duration string: \"1m1h\"".into())
        );
        assert_eq!(
            parse_duration("1.5h"),
            Err("not a valid duration string: \"1.5h\"".into())
        );
        assert_eq!(
            parse_duration("99999999999y"),
            Err("duration out of range".into())
        );
    }
}
