//! Go's `strconv.FormatFloat` for the `e`, `f` and `g` formats. `{{ $value }}` prints
//! with `%v` (shortest `g`: exponent form when the decimal exponent is < -4 or >= 6) and
//! `humanize` with `%.4g`, so these must agree with Go digit for digit. Rust's formatter
//! gives the same digits (shortest round-trip, or exactly rounded to a precision); only
//! the layout here is Go's.

/// Decimal digits (no trailing zeros) and the decimal point position: value = 0.d1d2… × 10^dp.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

/// Parses Rust's `{:e}` output of a finite non-negative number.
fn from_sci(s: &str) -> Digits {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits { d, dp: exp + 1 }
}

fn shortest(abs: f64) -> Digits {
    from_sci(&format!("{abs:e}"))
}

/// `n` significant digits, correctly rounded.
fn significant(abs: f64, n: usize) -> Digits {
    from_sci(&format!("{:.*e}", n.saturating_sub(1), abs))
}

fn fmt_e(out: &mut String, digs: &Digits, prec: usize, upper: bool) {
    out.push(digs.d.first().map_or('0', |&b| b as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(digs.d.get(i).map_or('0', |&b| b as char));
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exp = if digs.d.is_empty() { 0 } else { digs.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    out.push_str(&e.to_string());
}

fn fmt_f(out: &mut String, digs: &Digits, prec: usize) {
    if digs.dp > 0 {
        for i in 0..digs.dp as usize {
            out.push(digs.d.get(i).map_or('0', |&b| b as char));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i64 {
            let j = i64::from(digs.dp) + i - 1;
            let c = usize::try_from(j)
                .ok()
                .and_then(|j| digs.d.get(j))
                .map_or('0', |&b| b as char);
            out.push(c);
        }
    }
}

/// `strconv.FormatFloat(v, verb, prec, 64)` for verb in `e E f F g G` (any other verb is
/// taken as `g`); `prec` `None` is -1 (shortest). Exported as `format_float` for the other
/// crates that print values as Prometheus does.
pub fn format(v: f64, verb: char, prec: Option<usize>) -> String {
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
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let abs = v.abs();
    match verb {
        'e' | 'E' => {
            let upper = verb == 'E';
            match prec {
                Some(p) => fmt_e(&mut out, &significant(abs, p + 1), p, upper),
                None => {
                    let d = shortest(abs);
                    let p = d.d.len().saturating_sub(1);
                    fmt_e(&mut out, &d, p, upper);
                }
            }
        }
        'f' | 'F' => match prec {
            Some(p) => out.push_str(&format!("{abs:.p$}")),
            None => {
                let d = shortest(abs);
                let p = (d.d.len() as i64 - i64::from(d.dp)).max(0) as usize;
                fmt_f(&mut out, &d, p);
            }
        },
        _ => {
            let upper = verb == 'G';
            let (digs, mut p, short) = match prec {
                Some(p) => {
                    let p = p.max(1);
                    (significant(abs, p), p, false)
                }
                None => {
                    let d = shortest(abs);
                    let n = d.d.len();
                    (d, n, true)
                }
            };
            let nd = digs.d.len();
            let mut eprec = p;
            if eprec > nd && nd as i64 >= i64::from(digs.dp) {
                eprec = nd;
            }
            if short {
                eprec = 6;
            }
            let exp = i64::from(digs.dp) - 1;
            if exp < -4 || exp >= eprec as i64 {
                if p > nd {
                    p = nd;
                }
                fmt_e(&mut out, &digs, p.saturating_sub(1), upper);
            } else {
                if p as i64 > i64::from(digs.dp) {
                    p = nd;
                }
                let decimals = (p as i64 - i64::from(digs.dp)).max(0) as usize;
                fmt_f(&mut out, &digs, decimals);
            }
        }
    }
    out
}

/// Go's `%x`/`%X` of a float64 (`strconv` format `x`): `-0x1.8p+00`, with `prec`
/// hexadecimal digits after the point (shortest when `None`).
pub(crate) fn format_hex(v: f64, prec: Option<usize>, upper: bool) -> String {
    if v.is_nan() || v.is_infinite() {
        return format(v, 'g', None);
    }
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let bits = v.abs().to_bits();
    let (mut mant, mut exp) = (bits & ((1 << 52) - 1), ((bits >> 52) & 0x7ff) as i64);
    if exp == 0 && mant == 0 {
        exp = 0;
    } else if exp == 0 {
        // Subnormal: normalize so the leading 1 is implicit again.
        exp = -1022;
        while mant & (1 << 52) == 0 {
            mant <<= 1;
            exp -= 1;
        }
        mant &= (1 << 52) - 1;
    } else {
        exp -= 1023;
    }
    let lead = u64::from(v != 0.0);
    // 52 fraction bits are 13 hex digits.
    let mut digits = format!("{mant:013x}");
    match prec {
        None => {
            while digits.ends_with('0') {
                digits.pop();
            }
        }
        Some(p) if p < 13 => {
            // Round half to even at the cut.
            let full = (lead << 52) | mant;
            let shift = 4 * (13 - p) as u32;
            let rem = full & ((1u64 << shift) - 1);
            let half = 1u64 << (shift - 1);
            let mut kept = full >> shift;
            if rem > half || (rem == half && kept & 1 == 1) {
                kept += 1;
            }
            let mut lead2 = kept >> (4 * p as u32);
            if lead2 >= 2 {
                kept >>= 1;
                exp += 1;
                lead2 = 1;
            }
            let frac = kept & ((1u64 << (4 * p as u32)) - 1);
            digits = if p == 0 {
                String::new()
            } else {
                format!("{frac:0w$x}", w = p)
            };
            let mut s = format!("0x{lead2}");
            if !digits.is_empty() {
                s.push('.');
                s.push_str(&digits);
            }
            out.push_str(&s);
            out.push_str(&format!(
                "p{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.unsigned_abs()
            ));
            return if upper { out.to_uppercase() } else { out };
        }
        Some(p) => digits.extend(std::iter::repeat_n('0', p - 13)),
    }
    out.push_str(&format!("0x{lead}"));
    if !digits.is_empty() {
        out.push('.');
        out.push_str(&digits);
    }
    out.push_str(&format!(
        "p{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    ));
    if upper {
        out.to_uppercase()
    } else {
        out
    }
}

/// Go's `%v` of a float64.
pub(crate) fn format_v(v: f64) -> String {
    format(v, 'g', None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_like_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (100.0, "100"),
            (123456.0, "123456"),
            (1_000_000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (-2.5, "-2.5"),
            (-0.0, "-0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (9.223372036854776e18, "9.223372036854776e+18"),
        ];
        for (v, want) in cases {
            assert_eq!(format_v(v), want, "{v}");
        }
    }

    #[test]
    fn hex_like_go() {
        assert_eq!(format_hex(1.5, None, false), "0x1.8p+00");
        assert_eq!(format_hex(-0.1, None, false), "-0x1.999999999999ap-04");
        assert_eq!(format_hex(0.0, None, false), "0x0p+00");
        assert_eq!(format_hex(1024.0, None, true), "0X1P+10");
        assert_eq!(format_hex(1.75, Some(0), false), "0x1p+01");
        assert_eq!(format_hex(1.5, Some(3), false), "0x1.800p+00");
    }

    #[test]
    fn precision_like_go() {
        assert_eq!(format(1234567.0, 'g', Some(4)), "1.235e+06");
        assert_eq!(format(1.0, 'g', Some(4)), "1");
        assert_eq!(format(120.0, 'g', Some(4)), "120");
        assert_eq!(format(12.345, 'g', Some(4)), "12.35");
        assert_eq!(format(100000.0, 'g', Some(4)), "1e+05");
        assert_eq!(format(0.0, 'g', Some(4)), "0");
        assert_eq!(format(1.005, 'f', Some(2)), "1.00");
        assert_eq!(format(2.5, 'f', Some(0)), "2");
        assert_eq!(format(0.25, 'f', Some(1)), "0.2");
        assert_eq!(format(1e21, 'f', Some(1)), "1000000000000000000000.0");
        assert_eq!(format(1234.5678, 'e', Some(2)), "1.23e+03");
        assert_eq!(format(0.0, 'e', Some(3)), "0.000e+00");
        assert_eq!(format(1e-300, 'E', Some(1)), "1.0E-300");
    }
}
