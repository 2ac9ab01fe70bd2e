//! Go's `fmt.Sprintf`, `Sprint` and `Sprintln` over template values: the `print`,
//! `printf` and `println` builtins. Wrong verbs print Go's `%!d(float64=1.5)` forms.

use crate::quote;

mod number;
use crate::value::{GoKind, Value};
use number::{fmt_float, fmt_int};

#[derive(Clone, Copy, Default)]
struct Flags {
    plus: bool,
    /// `%+v`: field names in structs, and no forced sign.
    plus_v: bool,
    /// `%#v`: Go syntax (quoted strings).
    sharp_v: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

/// Go refuses widths and precisions above this (`%!(BADWIDTH)`).
const MAX_NUM: usize = 1_000_000;

impl Flags {
    fn pad(&self, out: &mut String, s: &str) {
        let Some(w) = self.wid else {
            out.push_str(s);
            return;
        };
        let n = s.chars().count();
        if n >= w {
            out.push_str(s);
            return;
        }
        let fill = if self.zero { '0' } else { ' ' };
        if self.minus {
            out.push_str(s);
            out.extend(std::iter::repeat_n(' ', w - n));
        } else {
            out.extend(std::iter::repeat_n(fill, w - n));
            out.push_str(s);
        }
    }
}

/// `fmt.Sprint`: operands separated by a space when neither side is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = a.kind() == GoKind::String;
        if i > 0 && !is_str && args[i - 1].kind() != GoKind::String {
            out.push(' ');
        }
        a.write_v(&mut out, true);
    }
    out
}

/// `fmt.Sprintln`: always space-separated, newline-terminated.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        a.write_v(&mut out, true);
    }
    out.push('\n');
    out
}

fn parse_num(b: &[u8], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut n: usize = 0;
    while *i < b.len() && b[*i].is_ascii_digit() {
        n = n
            .saturating_mul(10)
            .saturating_add(usize::from(b[*i] - b'0'));
        *i += 1;
    }
    (*i > start).then_some(n)
}

/// Takes a `*` width or precision from the arguments, like Go's `intFromArg`.
fn star_arg(args: &[Value], argi: &mut usize) -> Option<i64> {
    let v = args.get(*argi)?;
    *argi += 1;
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// `fmt.Sprintf`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let b = format.as_bytes();
    let mut i = 0;
    let mut argi = 0;
    while i < b.len() && out.len() <= crate::exec::MAX_OUTPUT {
        let lit_end = format[i..].find('%').map_or(b.len(), |x| i + x);
        out.push_str(&format[i..lit_end]);
        i = lit_end;
        if i >= b.len() {
            break;
        }
        i += 1; // '%'
        let mut f = Flags::default();
        while i < b.len() {
            match b[i] {
                b'#' => f.sharp = true,
                b'0' => f.zero = !f.minus,
                b'+' => f.plus = true,
                b'-' => {
                    f.minus = true;
                    f.zero = false;
                }
                b' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        if b.get(i) == Some(&b'*') {
            i += 1;
            match star_arg(args, &mut argi) {
                Some(n) if n.unsigned_abs() as usize <= MAX_NUM => {
                    if n < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.wid = Some(n.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
        } else if let Some(w) = parse_num(b, &mut i) {
            if w > MAX_NUM {
                out.push_str("%!(NOVERB)");
                return out;
            }
            f.wid = Some(w);
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if b.get(i) == Some(&b'*') {
                i += 1;
                match star_arg(args, &mut argi) {
                    Some(n) if (0..=MAX_NUM as i64).contains(&n) => f.prec = Some(n as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
            } else {
                let p = parse_num(b, &mut i).unwrap_or(0);
                if p > MAX_NUM {
                    out.push_str("%!(NOVERB)");
                    return out;
                }
                f.prec = Some(p);
            }
        }
        let Some(verb) = format[i..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        if verb == 'v' {
            f.plus_v = std::mem::take(&mut f.plus);
            f.sharp_v = std::mem::take(&mut f.sharp);
        }
        if verb == 'T' {
            f.pad(&mut out, arg.type_name());
            continue;
        }
        print_arg(&mut out, arg, verb, &f, true);
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argi..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(a.type_name());
            out.push('=');
            print_arg(&mut out, a, 'v', &Flags::default(), true);
        }
        out.push(')');
    }
    out
}

fn bad_verb(out: &mut String, arg: &Value, verb: char, f: &Flags) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if matches!(arg, Value::Nil) {
        out.push_str("<nil>");
    } else {
        out.push_str(arg.type_name());
        out.push('=');
        print_arg(out, arg, 'v', f, true);
    }
    out.push(')');
}

fn print_arg(out: &mut String, arg: &Value, verb: char, f: &Flags, top: bool) {
    if out.len() > crate::exec::MAX_OUTPUT {
        return;
    }
    match arg {
        Value::Nil => match verb {
            'v' => f.pad(out, "<nil>"),
            _ => bad_verb(out, arg, verb, f),
        },
        Value::Bool(v) => match verb {
            't' | 'v' => f.pad(out, if *v { "true" } else { "false" }),
            _ => bad_verb(out, arg, verb, f),
        },
        Value::Int(n) => fmt_int(out, *n, verb, f, arg),
        Value::Float(x) => fmt_float(out, *x, verb, f, arg),
        Value::Str(s) | Value::Html(s) => fmt_str(out, s, verb, f, arg),
        Value::Time(t) if matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') => {
            fmt_str(out, &t.to_string(), verb, f, arg)
        }
        Value::StrMap(m) => {
            out.push_str("map[");
            for (k, (key, val)) in m.map().iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                fmt_str(out, key, verb, f, &Value::str(key));
                out.push(':');
                fmt_str(out, val, verb, f, &Value::str(val));
            }
            out.push(']');
        }
        Value::Args(m) => {
            out.push_str("map[");
            for (k, (key, val)) in m.map.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                fmt_str(out, key, verb, f, &Value::str(key));
                out.push(':');
                print_arg(out, val, verb, f, false);
            }
            out.push(']');
        }
        Value::Sample(s) => {
            if top {
                out.push('&');
            }
            out.push('{');
            print_arg(
                out,
                &Value::StrMap(crate::value::StrMap::OfSample(s.clone())),
                verb,
                f,
                false,
            );
            out.push(' ');
            fmt_float(out, s.value, verb, f, &Value::Float(s.value));
            out.push('}');
        }
        Value::Samples(v) => {
            // Inside a slice Go prints pointers as addresses for %v and the integer
            // verbs (meaningless here, so the contents are shown); other verbs are bad.
            out.push('[');
            for (k, s) in v.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                let elem = Value::Sample(s.clone());
                if matches!(verb, 'v' | 'b' | 'd' | 'o' | 'x' | 'X') {
                    print_arg(out, &elem, 'v', f, true);
                } else {
                    bad_verb(out, &elem, verb, f);
                }
            }
            out.push(']');
        }
        Value::Data(d) if verb == 'v' && f.plus_v => {
            out.push_str("{Labels:");
            print_arg(
                out,
                &Value::StrMap(crate::value::StrMap::Borrowed(d.labels)),
                verb,
                f,
                false,
            );
            out.push_str(" ExternalLabels:");
            print_arg(
                out,
                &Value::StrMap(crate::value::StrMap::Borrowed(d.external_labels)),
                verb,
                f,
                false,
            );
            out.push_str(" ExternalURL:");
            fmt_str(out, d.external_url, verb, f, arg);
            out.push_str(" Value:");
            fmt_float(out, d.value, verb, f, arg);
            out.push('}');
        }
        Value::Time(_) | Value::Data(_) => {
            if verb == 'v' || verb == 's' {
                f.pad(out, &arg.to_v());
            } else {
                bad_verb(out, arg, verb, f);
            }
        }
    }
}

fn fmt_str(out: &mut String, s: &str, verb: char, f: &Flags, arg: &Value) {
    let truncated: String;
    let s = match f.prec {
        Some(p) if matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') => {
            truncated = s.chars().take(p).collect();
            truncated.as_str()
        }
        _ => s,
    };
    match verb {
        'v' if f.sharp_v => f.pad(out, &quote::go_quote(s)),
        'v' | 's' => f.pad(out, s),
        'q' => {
            let q = if f.sharp && quote::can_backquote(s) {
                format!("`{s}`")
            } else if f.plus {
                quote::go_quote_ascii(s)
            } else {
                quote::go_quote(s)
            };
            f.pad(out, &q);
        }
        'x' | 'X' => {
            let mut h = String::new();
            for (k, byte) in s.bytes().enumerate() {
                if f.space && k > 0 {
                    h.push(' ');
                }
                if f.sharp && (f.space || k == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{byte:02x}"));
                } else {
                    h.push_str(&format!("{byte:02X}"));
                }
            }
            f.pad(out, &h);
        }
        _ => bad_verb(out, arg, verb, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_matches_go() {
        // Expected strings come from Prometheus 2.42 (`printf` in an annotation).
        let args = [
            Value::Float(1.005),
            Value::Float(2.25),
            Value::str("ab"),
            Value::str("a\"b"),
            Value::str("hi"),
            Value::Float(1e21),
            Value::Bool(true),
        ];
        assert_eq!(
            sprintf("%.2f %5.1f|%-6s|%q %x %v %s", &args),
            "1.00   2.2|ab    |\"a\\\"b\" 6869 1e+21 %!s(bool=true)"
        );
        assert_eq!(
            sprintf("%d", &[Value::Float(1234567.0)]),
            "%!d(float64=1.234567e+06)"
        );
        assert_eq!(sprintf("%d %s", &[Value::Int(1)]), "1 %!s(MISSING)");
        assert_eq!(
            sprintf("%d", &[Value::Int(1), Value::str("x")]),
            "1%!(EXTRA string=x)"
        );
        assert_eq!(
            sprintf(
                "%05d|%-5d|%+d|%x|%#x|%o",
                &[
                    Value::Int(-42),
                    Value::Int(7),
                    Value::Int(3),
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                ]
            ),
            "-0042|7    |+3|ff|0xff|10"
        );
        assert_eq!(
            sprintf(
                "%08.3f|%+.1e|%g|%G",
                &[
                    Value::Float(-2.5123),
                    Value::Float(12345.0),
                    Value::Float(1e-7),
                    Value::Float(1e100),
                ]
            ),
            "-002.512|+1.2e+04|1e-07|1E+100"
        );
        assert_eq!(
            sprintf(
                "%5.1f|%v",
                &[Value::Float(f64::INFINITY), Value::Float(f64::NAN)]
            ),
            " +Inf|NaN"
        );
        assert_eq!(
            sprintf("%T %T", &[Value::Float(1.0), Value::str("")]),
            "float64 string"
        );
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%!", &[]), "%!!(MISSING)");
        assert_eq!(sprintf("%", &[]), "%!(NOVERB)");
    }

    #[test]
    fn print_spacing() {
        let args = [
            Value::Int(1),
            Value::Int(2),
            Value::str("a"),
            Value::Int(3),
            Value::Nil,
        ];
        assert_eq!(sprint(&args), "1 2a3 <nil>");
        assert_eq!(sprintln(&[Value::Int(1), Value::str("a")]), "1 a\n");
    }
}
