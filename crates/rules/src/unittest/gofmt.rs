//! Go's printing of the values promtool shows in its failure messages, so that a diff reads
//! the same from both tools: `strconv.Quote`, `labels.Labels.String()` and
//! `strconv.FormatFloat(v, 'E', -1, 64)`.

use std::fmt::Write as _;

/// Go's `strconv.Quote`: printable characters as they are, the rest escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII characters: control, format and
/// space characters other than U+0020 are not printable.
fn is_go_printable(c: char) -> bool {
    if c.is_ascii() {
        return true;
    }
    let u = c as u32;
    let format_char = matches!(u, 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0xe0001 | 0xe0020..=0xe007f);
    let private_or_unassigned = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0x10ffff | 0xfffe | 0xffff);
    !(c.is_control() || c.is_whitespace() || format_char || private_or_unassigned)
}

/// Prometheus's `labels.Labels.String()`: `{a="1", b="2"}` in the order given.
pub fn labels_string<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&go_quote(value));
    }
    out.push('}');
    out
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`: the shortest digits that read back as `v`,
/// in scientific notation with a signed exponent of at least two digits (`2.5E+00`).
pub fn format_float_e(v: f64) -> String {
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
    // Rust's `{:E}` already gives the shortest round-trip mantissa, e.g. `2.5E0`.
    let s = format!("{v:E}");
    let Some((mantissa, exp)) = s.split_once('E') else {
        return s;
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}E{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a"), "\"a\"");
        assert_eq!(go_quote("say \"hi\"\\"), r#""say \"hi\"\\""#);
        assert_eq!(go_quote("a\nb\tc"), r#""a\nb\tc""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
        assert_eq!(go_quote("\u{200b}"), r#""\u200b""#);
    }

    #[test]
    fn labels_print_like_prometheus() {
        assert_eq!(labels_string([]), "{}");
        assert_eq!(
            labels_string([("__name__", "up"), ("job", "a\"b")]),
            r#"{__name__="up", job="a\"b"}"#
        );
    }

    #[test]
    fn floats_print_like_go_format_e() {
        assert_eq!(format_float_e(1.0), "1E+00");
        assert_eq!(format_float_e(2.5), "2.5E+00");
        assert_eq!(format_float_e(0.0), "0E+00");
        assert_eq!(format_float_e(-0.0), "-0E+00");
        assert_eq!(format_float_e(123.456), "1.23456E+02");
        assert_eq!(format_float_e(0.001), "1E-03");
        assert_eq!(format_float_e(1e300), "1E+300");
        assert_eq!(format_float_e(-1.5e-7), "-1.5E-07");
        assert_eq!(format_float_e(0.1 + 0.2), "3.0000000000000004E-01");
        assert_eq!(format_float_e(f64::NAN), "NaN");
        assert_eq!(format_float_e(f64::INFINITY), "+Inf");
        assert_eq!(format_float_e(f64::NEG_INFINITY), "-Inf");
    }
}
