//! A number written where PromQL expects a duration (`x offset 1e30`, `x[inf]`,
//! `x[5m:nan]`) is made a `Duration` by promql-parser with `Duration::from_secs_f64`, which
//! panics when the number is NaN, infinite or beyond `u64` seconds. Such numbers are found
//! here, before the parser sees the text, and refused with a parse error.

use crate::duration_expr::{after_comment, after_quoted};

/// Largest number of seconds accepted in a duration's place (about 31.7 billion years);
/// comfortably below where `from_secs_f64` gives up, and beyond any meaningful range.
const MAX_SECONDS: f64 = 1e18;

/// Finds a number after `offset` (and its sign), after `[` or after `:` inside brackets
/// that is out of range; returns its byte offset and text.
pub(crate) fn out_of_range(query: &str) -> Option<(usize, &str)> {
    let b = query.as_bytes();
    let mut brackets = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // Inside brackets only durations and numbers appear, so `:` separates range and step.
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || (c == b':' && brackets == 0);
        let duration_follows = match c {
            b'"' | b'\'' | b'`' => {
                i = after_quoted(b, i);
                continue;
            }
            b'#' => {
                i = after_comment(b, i);
                continue;
            }
            b'[' => {
                brackets += 1;
                i += 1;
                true
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                i += 1;
                false
            }
            b':' if brackets > 0 => {
                i += 1;
                true
            }
            _ if ident(c) => {
                let end = b[i..]
                    .iter()
                    .position(|&c| !ident(c))
                    .map_or(b.len(), |n| i + n);
                let word = &query[i..end];
                i = end;
                word.eq_ignore_ascii_case("offset")
            }
            _ => {
                i += 1;
                false
            }
        };
        if !duration_follows {
            continue;
        }
        // Spaces and signs, then the number (or duration) itself, exponent sign included.
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        let mut end = j;
        while end < b.len() {
            let c = b[end];
            let exponent_sign = (c == b'+' || c == b'-')
                && end > j
                && matches!(b[end - 1], b'e' | b'E')
                && !query[j..end].to_ascii_lowercase().starts_with("0x");
            if !(c.is_ascii_alphanumeric() || c == b'.' || exponent_sign) {
                break;
            }
            end += 1;
        }
        let text = &query[j..end];
        if number(text).is_some_and(|secs| secs.is_nan() || secs >= MAX_SECONDS) {
            return Some((j, text));
        }
    }
    None
}

/// The value of a PromQL number literal (decimal, exponent, hex, octal, `Inf`, `NaN`); None
/// for anything else, such as a duration with units.
fn number(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    lower.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_offset_number_panicked_in_the_parser() {
        // Found by the `promql` fuzz target: `from_secs_f64` panicked inside promql-parser.
        let q = "metric1 offset 188888888888888888888888888888";
        assert_eq!(
            out_of_range(q).map(|(_, t)| t),
            Some("188888888888888888888888888888")
        );
        assert!(crate::parse(q).is_err());
        for q in [
            "x offset -1e30",
            "x OFFSET Inf",
            "x[nan]",
            "rate(x[ 1e300 ])",
            "x[5m:1e19]",
            "x offset 0xffffffffffffffff",
            "x offset 1e+30",
        ] {
            assert!(out_of_range(q).is_some(), "{q}");
            assert!(crate::parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn ordinary_durations_and_numbers_pass() {
        for q in [
            "x offset 5m",
            "x offset 300",
            "rate(x[5m]) * 1e300",
            "x[1h:30s]",
            "job:rate5m:1e300",
            "x{a=\"offset 1e300\"}",
            "x # offset 1e300\n",
            "x[0x10]",
        ] {
            assert_eq!(out_of_range(q), None, "{q}");
        }
    }
}
