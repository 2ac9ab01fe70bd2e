//! The `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}` notation of Prometheus's test scripts
//! (one histogram literal), read as Prometheus's PromQL parser reads it and written as
//! its `TestExpression` writes it.

use super::{BucketSpan, CounterResetHint, FloatHistogram, HistogramError};

fn err(msg: impl Into<String>) -> HistogramError {
    HistogramError::Notation(msg.into())
}

/// A value after `key:`.
enum Value {
    Number(f64),
    Int(i64),
    List(Vec<f64>),
    Hint(CounterResetHint),
}

impl FloatHistogram {
    /// Reads one histogram literal `{{...}}`. Keys (case-insensitive, each at most once):
    /// `schema`, `sum`, `count`, `z_bucket`, `z_bucket_w`, `buckets:[..]`, `offset`,
    /// `n_buckets:[..]`, `n_offset`, `counter_reset_hint:(unknown|reset|not_reset|gauge)`,
    /// `custom_values:[..]`. As in Prometheus, a missing count stays 0 (it is not computed
    /// from the buckets), and each side's buckets form one span starting at its offset.
    pub fn parse_notation(s: &str) -> Result<FloatHistogram, HistogramError> {
        Self::parse_notation_with_hint_flag(s).map(|(h, _)| h)
    }

    /// [`FloatHistogram::parse_notation`], also telling whether `counter_reset_hint` was
    /// given (the test scripts compare hints only then).
    pub fn parse_notation_with_hint_flag(
        s: &str,
    ) -> Result<(FloatHistogram, bool), HistogramError> {
        let t = s.trim();
        let inner = t
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .ok_or_else(|| err(format!("{s:?} is not enclosed in {{{{ }}}}")))?;
        let mut items: Vec<(String, Value)> = Vec::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let key_len = rest
                .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
                .unwrap_or(rest.len());
            let key = rest[..key_len].to_ascii_lowercase();
            rest = &rest[key_len..];
            if key.is_empty() {
                return Err(err(format!("expected a key at {rest:?}")));
            }
            rest = rest
                .strip_prefix(':')
                .ok_or_else(|| err(format!("missing `:` after {key:?}")))?;
            let value;
            match key.as_str() {
                "buckets" | "n_buckets" | "custom_values" => {
                    let body = rest
                        .strip_prefix('[')
                        .ok_or_else(|| err(format!("{key} needs a list [..]")))?;
                    let end = body
                        .find(']')
                        .ok_or_else(|| err(format!("unclosed list of {key}")))?;
                    let list = body[..end]
                        .split_ascii_whitespace()
                        .map(parse_signed_number)
                        .collect::<Result<Vec<f64>, _>>()?;
                    if list.is_empty() && key != "custom_values" {
                        return Err(err(format!("empty list of {key}")));
                    }
                    value = Value::List(list);
                    rest = &body[end + 1..];
                }
                _ => {
                    let end = rest
                        .find(|c: char| c.is_ascii_whitespace())
                        .unwrap_or(rest.len());
                    let token = &rest[..end];
                    rest = &rest[end..];
                    value = match key.as_str() {
                        "schema" | "offset" | "n_offset" => Value::Int(parse_int(token)?),
                        "sum" | "count" | "z_bucket" => Value::Number(parse_signed_number(token)?),
                        "z_bucket_w" => Value::Number(parse_number(token)?),
                        "counter_reset_hint" => {
                            Value::Hint(match token.to_ascii_lowercase().as_str() {
                                "unknown" => CounterResetHint::Unknown,
                                "reset" => CounterResetHint::CounterReset,
                                "not_reset" => CounterResetHint::NotCounterReset,
                                "gauge" => CounterResetHint::Gauge,
                                other => {
                                    return Err(err(format!(
                                        "unknown counter_reset_hint {other:?}"
                                    )))
                                }
                            })
                        }
                        other => return Err(err(format!("bad histogram descriptor {other:?}"))),
                    };
                }
            }
            if items.iter().any(|(k, _)| *k == key) {
                return Err(err(format!("duplicate key {key:?} in histogram")));
            }
            items.push((key, value));
            let trimmed = rest.trim_start();
            if trimmed.len() == rest.len() && !rest.is_empty() {
                return Err(err(format!("expected a space before {rest:?}")));
            }
            rest = trimmed;
        }

        let mut h = FloatHistogram::default();
        let mut hint_set = false;
        let (mut pos, mut neg, mut offset, mut n_offset) = (Vec::new(), Vec::new(), 0i64, 0i64);
        for (key, value) in items {
            match (key.as_str(), value) {
                ("schema", Value::Int(v)) => h.schema = to_i32(v)?,
                ("sum", Value::Number(v)) => h.sum = v,
                ("count", Value::Number(v)) => h.count = v,
                ("z_bucket", Value::Number(v)) => h.zero_count = v,
                ("z_bucket_w", Value::Number(v)) => h.zero_threshold = v,
                ("custom_values", Value::List(v)) => h.custom_values = v,
                ("buckets", Value::List(v)) => pos = v,
                ("n_buckets", Value::List(v)) => neg = v,
                ("offset", Value::Int(v)) => offset = v,
                ("n_offset", Value::Int(v)) => n_offset = v,
                ("counter_reset_hint", Value::Hint(v)) => {
                    h.counter_reset_hint = v;
                    hint_set = true;
                }
                (k, _) => return Err(err(format!("bad value for {k}"))),
            }
        }
        if !pos.is_empty() {
            h.positive_spans = vec![BucketSpan {
                offset: to_i32(offset)?,
                length: pos.len() as u32,
            }];
        }
        if !neg.is_empty() {
            h.negative_spans = vec![BucketSpan {
                offset: to_i32(n_offset)?,
                length: neg.len() as u32,
            }];
        }
        h.positive_buckets = pos;
        h.negative_buckets = neg;
        Ok((h, hint_set))
    }

    /// The histogram as Prometheus's `String()` writes it, which `count_values` puts in its
    /// label: count and sum, then each bucket holding observations from the lowest,
    /// `[lower,upper):n` below zero, `[-z,z]:n` for the zero bucket, `(lower,upper]:n` above.
    pub fn to_go_string(&self) -> String {
        let bucket = |b: &super::Bucket| {
            format!(
                "{}{},{}{}:{}",
                if b.lower_inclusive { '[' } else { '(' },
                go_g(b.lower),
                go_g(b.upper),
                if b.upper_inclusive { ']' } else { ')' },
                go_g(b.count)
            )
        };
        let mut out = format!("{{count:{}, sum:{}", go_g(self.count), go_g(self.sum));
        for b in self.side_buckets(false, self.schema).iter().rev() {
            if b.count != 0.0 {
                out.push_str(", ");
                out.push_str(&bucket(b));
            }
        }
        if self.zero_count != 0.0 {
            let z = self.zero_threshold;
            out.push_str(&format!(
                ", [{},{}]:{}",
                go_g(-z),
                go_g(z),
                go_g(self.zero_count)
            ));
        }
        for b in self.side_buckets(true, self.schema) {
            if b.count != 0.0 {
                out.push_str(", ");
                out.push_str(&bucket(&b));
            }
        }
        out.push('}');
        out
    }

    /// The histogram in test notation, as Prometheus's `TestExpression` writes it: fields
    /// that are zero left out, each side compacted into one span, numbers as Go's `%g`.
    pub fn to_notation(&self) -> String {
        let mut m = self.clone();
        m.compact(usize::MAX);
        let mut parts: Vec<String> = Vec::new();
        if m.schema != 0 {
            parts.push(format!("schema:{}", m.schema));
        }
        if m.count != 0.0 {
            parts.push(format!("count:{}", go_g(m.count)));
        }
        if m.sum != 0.0 {
            parts.push(format!("sum:{}", go_g(m.sum)));
        }
        if m.zero_count != 0.0 {
            parts.push(format!("z_bucket:{}", go_g(m.zero_count)));
        }
        if m.zero_threshold != 0.0 {
            parts.push(format!("z_bucket_w:{}", go_g(m.zero_threshold)));
        }
        if m.uses_custom_buckets() {
            parts.push(format!("custom_values:[{}]", join_g(&m.custom_values)));
        }
        match m.counter_reset_hint {
            CounterResetHint::Unknown => {}
            CounterResetHint::CounterReset => parts.push("counter_reset_hint:reset".into()),
            CounterResetHint::NotCounterReset => parts.push("counter_reset_hint:not_reset".into()),
            CounterResetHint::Gauge => parts.push("counter_reset_hint:gauge".into()),
        }
        for (offset_key, buckets_key, spans, buckets) in [
            ("offset", "buckets", &m.positive_spans, &m.positive_buckets),
            (
                "n_offset",
                "n_buckets",
                &m.negative_spans,
                &m.negative_buckets,
            ),
        ] {
            if let Some(span) = spans.first() {
                if span.offset != 0 {
                    parts.push(format!("{offset_key}:{}", span.offset));
                }
            }
            if !buckets.is_empty() {
                parts.push(format!("{buckets_key}:[{}]", join_g(buckets)));
            }
        }
        format!("{{{{{}}}}}", parts.join(" "))
    }
}

fn join_g(values: &[f64]) -> String {
    values
        .iter()
        .map(|&v| go_g(v))
        .collect::<Vec<_>>()
        .join(" ")
}

fn to_i32(v: i64) -> Result<i32, HistogramError> {
    i32::try_from(v).map_err(|_| err(format!("{v} is out of range")))
}

/// An integer as the PromQL grammar's `int`: optional `-`, then decimal digits.
fn parse_int(token: &str) -> Result<i64, HistogramError> {
    let (neg, digits) = match token.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, token),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("{token:?} is not an integer")));
    }
    let v: u64 = digits
        .parse()
        .map_err(|_| err(format!("{token:?} is out of range")))?;
    let v = i64::try_from(v).map_err(|_| err(format!("{token:?} is out of range")))?;
    Ok(if neg { -v } else { v })
}

/// A number with an optional leading `-`.
fn parse_signed_number(token: &str) -> Result<f64, HistogramError> {
    match token.strip_prefix('-') {
        Some(rest) => parse_number(rest).map(|v| -v),
        None => parse_number(token),
    }
}

/// An unsigned PromQL number: Go integer literals (with 0x, 0o, 0b or a leading 0 for
/// octal, `_` separators), floats with exponents, `Inf`, `NaN`, or a duration in seconds.
fn parse_number(token: &str) -> Result<f64, HistogramError> {
    let bad = || err(format!("{token:?} is not a number"));
    if token.is_empty() || token.starts_with(['+', '-']) {
        return Err(bad());
    }
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "inf" => return Ok(f64::INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    if let Some(v) = parse_go_int(&lower) {
        return Ok(v as f64);
    }
    if lower
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'-' || b == b'+')
        && lower.as_bytes()[0] != b'e'
    {
        if let Ok(v) = lower.parse::<f64>() {
            return Ok(v);
        }
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        if let Some(v) = parse_hex_float(hex) {
            return Ok(v);
        }
    }
    if lower.ends_with(|c: char| c.is_ascii_alphabetic()) {
        if let Ok(d) = crate::parse_duration(token) {
            return Ok(d.as_secs_f64());
        }
    }
    Err(bad())
}

/// Go's `strconv.ParseInt(s, 0, 64)` for an unsigned literal.
fn parse_go_int(s: &str) -> Option<i64> {
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = s.strip_prefix("0b") {
        (2, d)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    // Underscores only between digits.
    if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    i64::from_str_radix(&clean, radix).ok()
}

/// A hexadecimal float mantissa with a binary exponent, `1.8p3` (after `0x`).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut v = 0.0f64;
    for c in int_part.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// `v` as Go's `%g` writes it: shortest round-trip digits, exponent form (`1e+06`) for
/// exponents below -4 or from 6 on.
pub(super) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (_, exp) = shortest_digits(v);
    if !(-4..6).contains(&exp) {
        go_e(v)
    } else {
        format!("{v}")
    }
}

/// `v` (finite, non-zero) as Go's `%e` with shortest digits: `1.5e-07`, `1e+21`.
pub(super) fn go_e(v: f64) -> String {
    let (digits, exp) = shortest_digits(v);
    let mut out = String::new();
    if v < 0.0 {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    out.push_str(&e.to_string());
    out
}

/// The shortest round-trip decimal digits of `|v|` and the decimal exponent of the first.
fn shortest_digits(v: f64) -> (String, i32) {
    let s = format!("{:e}", v.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    (digits, exp.parse().unwrap_or(0))
}
