//! Go's printing of the values promtool shows in its failure messages, so that a diff reads
//! the same from both tools: `strconv.Quote`, `labels.Labels.String()` and
//! `strconv.FormatFloat(v, 'E', -1, 64)`.

/// Go's `strconv.Quote`, as the alert templates print it.
pub use meshlens_template::go_quote;

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
    meshlens_template::format_float(v, 'E', None)
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
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
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
