//! Integer and float verbs of Go's `fmt` (`%d %x %o %b %c %q %U`, `%e %f %g %x`), with
//! flags, width and precision.

use super::{bad_verb, Flags};
use crate::quote;
use crate::value::Value;

pub(super) fn fmt_int(out: &mut String, n: i64, verb: char, f: &Flags, arg: &Value) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            f.pad(out, c.encode_utf8(&mut [0; 4]));
            return;
        }
        'q' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            f.pad(out, &quote::go_quote_rune(c));
            return;
        }
        'U' => {
            let s = format!("U+{:04X}", n);
            f.pad(out, &s);
            return;
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            bad_verb(out, arg, verb, f);
            return;
        }
        _ => {
            bad_verb(out, arg, verb, f);
            return;
        }
    };
    let neg = n < 0;
    let u = n.unsigned_abs();
    let mut digits = match base {
        2 => format!("{u:b}"),
        8 => format!("{u:o}"),
        16 if upper => format!("{u:X}"),
        16 => format!("{u:x}"),
        _ => u.to_string(),
    };
    let mut min_digits = 0;
    if let Some(p) = f.prec {
        if p == 0 && u == 0 {
            let mut g = *f;
            g.zero = false;
            g.pad(out, "");
            return;
        }
        min_digits = p;
    } else if f.zero && !f.minus {
        if let Some(w) = f.wid {
            min_digits = w.saturating_sub(usize::from(neg || f.plus || f.space));
        }
    }
    if digits.len() < min_digits {
        digits = "0".repeat(min_digits - digits.len()) + &digits;
    }
    let mut prefix = String::new();
    if neg {
        prefix.push('-');
    } else if f.plus {
        prefix.push('+');
    } else if f.space {
        prefix.push(' ');
    }
    if f.sharp {
        match base {
            2 => prefix.push_str("0b"),
            8 if !digits.starts_with('0') => prefix.push('0'),
            16 => prefix.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    let mut g = *f;
    g.zero = false;
    g.pad(out, &(prefix + &digits));
}

pub(super) fn fmt_float(out: &mut String, x: f64, verb: char, f: &Flags, arg: &Value) {
    if verb == 'x' || verb == 'X' {
        let s = crate::float::format_hex(x, f.prec, verb == 'X');
        let (sign, body) = match s.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None if f.plus => ("+", s.as_str()),
            None if f.space => (" ", s.as_str()),
            None => ("", s.as_str()),
        };
        f.pad(out, &format!("{sign}{body}"));
        return;
    }
    let (verb, prec) = match verb {
        'v' => ('g', f.prec),
        'g' | 'G' => (verb, f.prec),
        'e' | 'E' | 'f' => (verb, Some(f.prec.unwrap_or(6))),
        'F' => ('f', Some(f.prec.unwrap_or(6))),
        _ => {
            bad_verb(out, arg, verb, f);
            return;
        }
    };
    let s = crate::float::format(x, verb, prec);
    let (sign, body) = match s.strip_prefix(['-', '+']) {
        Some(rest) => (&s[..1], rest),
        None => ("+", s.as_str()),
    };
    let mut sign = sign.to_string();
    if f.space && sign == "+" && !f.plus {
        sign = " ".into();
    }
    if body.starts_with('I') || body.starts_with('N') {
        let mut g = *f;
        g.zero = false;
        let text = if body.starts_with('N') && !f.space && !f.plus {
            body.to_string()
        } else {
            sign + body
        };
        g.pad(out, &text);
        return;
    }
    if f.plus || sign != "+" {
        if let Some(w) = f.wid {
            let len = body.len() + 1;
            if f.zero && w > len {
                out.push_str(&sign);
                out.extend(std::iter::repeat_n('0', w - len));
                out.push_str(body);
                return;
            }
        }
        f.pad(out, &(sign + body));
        return;
    }
    f.pad(out, body);
}
