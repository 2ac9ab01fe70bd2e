//! Go literal syntax inside actions: numbers (`strconv.ParseInt(s, 0, 64)` and friends, as
//! `text/template/parse.newNumber` uses them) and quoted strings (`strconv.Unquote`).

use crate::ast::Num;

/// Turns a number token into the value Go would give it as an untyped constant, or
/// the parse error message Go reports.
pub(crate) fn number(text: &str, is_char: bool, is_complex: bool) -> Result<Num, String> {
    if is_char {
        return char_constant(text);
    }
    if is_complex || (text.ends_with('i') && parse_float(&text[..text.len() - 1]).is_some()) {
        return Ok(Num::Complex);
    }
    if let Some(i) = parse_int(text) {
        return Ok(Num::Int(i));
    }
    if parse_uint(text).is_some() {
        return Ok(Num::Overflow);
    }
    if let Some(f) = parse_float(text) {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!(
                "integer overflow: {}",
                crate::quote::go_quote(text)
            ));
        }
        return Ok(Num::Float(f));
    }
    Err(format!(
        "illegal number syntax: {}",
        crate::quote::go_quote(text)
    ))
}

fn char_constant(text: &str) -> Result<Num, String> {
    let inner = text.strip_prefix('\'').unwrap_or(text);
    let (c, tail) = unquote_char(inner, b'\'').ok_or_else(|| "invalid syntax".to_string())?;
    if tail != "'" {
        return Err(format!("malformed character constant: {text}"));
    }
    Ok(Num::Int(i64::from(c.code())))
}

/// Go's `underscoreOK`: underscores only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `strconv.ParseUint(s, 0, 64)`.
fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with(['+', '-']) {
        return None;
    }
    let (base, digits) = match s.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &s[2..]),
        [b'0', b'o' | b'O', ..] => (8, &s[2..]),
        [b'0', b'b' | b'B', ..] => (2, &s[2..]),
        [b'0', _, ..] => (8, &s[1..]),
        _ => (10, s),
    };
    if digits.is_empty() || (s.contains('_') && !underscore_ok(s)) {
        return None;
    }
    let mut n: u64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(base)?;
        n = n.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// `strconv.ParseInt(s, 0, 64)`.
fn parse_int(s: &str) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint(rest)?;
    if neg {
        if u <= i64::MAX as u64 + 1 {
            Some((u as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// `strconv.ParseFloat(s, 64)` for the forms the lexer lets through (decimal and hex
/// floats, underscores); out-of-range values fail like Go's `ErrRange`.
fn parse_float(s: &str) -> Option<f64> {
    float_literal(s).filter(|v| v.is_finite())
}

/// The syntax part of `strconv.ParseFloat` for numeric (not `inf`/`nan`) text: `None`
/// for bad syntax, an infinity when out of range.
pub(crate) fn float_literal(s: &str) -> Option<f64> {
    if s.contains('_') && !underscore_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let v = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        parse_hex_float(&body[2..])?
    } else {
        if body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = s.split_once(['p', 'P'])?;
    let exp: i32 = exp.parse().ok()?;
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// One character of a quoted literal (`strconv.UnquoteChar`): the value and the rest.
/// Values from `\x` and octal escapes above 0x7f stand for single bytes in Go; here they
/// become the character with that code.
fn unquote_char(s: &str, quote: u8) -> Option<(Ch, &str)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    if c as u32 == u32::from(quote) && (quote == b'\'' || quote == b'"') {
        return None;
    }
    if c != '\\' {
        return Some((Ch::Char(c), chars.as_str()));
    }
    let esc = chars.next()?;
    let rest = chars.as_str();
    let simple = match esc {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' => Some('\\'),
        '\'' | '"' if esc as u32 == u32::from(quote) => Some(esc),
        _ => None,
    };
    if let Some(c) = simple {
        return Some((Ch::Char(c), rest));
    }
    let hex = |n: usize| -> Option<(u32, &str)> {
        let digits = rest.get(..n)?;
        let v = u32::from_str_radix(digits, 16).ok()?;
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then_some((v, &rest[n..]))
    };
    match esc {
        'x' => hex(2).map(|(v, r)| (Ch::Byte(v as u8), r)),
        'u' => hex(4).and_then(|(v, r)| char::from_u32(v).map(|c| (Ch::Char(c), r))),
        'U' => hex(8).and_then(|(v, r)| char::from_u32(v).map(|c| (Ch::Char(c), r))),
        '0'..='7' => {
            let digits = s.get(1..4)?;
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            let v = u32::from_str_radix(digits, 8).ok()?;
            u8::try_from(v).ok().map(|b| (Ch::Byte(b), &s[4..]))
        }
        _ => None,
    }
}

/// A decoded literal character: a Unicode character, or a byte from `\x`/octal.
#[derive(Clone, Copy)]
enum Ch {
    Char(char),
    Byte(u8),
}

impl Ch {
    fn code(self) -> u32 {
        match self {
            Ch::Char(c) => c as u32,
            Ch::Byte(b) => u32::from(b),
        }
    }
}

/// `strconv.Unquote` for `"..."` and raw `` `...` `` strings; `None` is Go's "invalid syntax".
pub(crate) fn unquote(quoted: &str) -> Option<String> {
    if quoted.len() < 2 {
        return None;
    }
    let (first, last) = (quoted.as_bytes()[0], quoted.as_bytes()[quoted.len() - 1]);
    let inner = &quoted[1..quoted.len() - 1];
    match (first, last) {
        (b'`', b'`') => {
            if inner.contains('`') {
                return None;
            }
            Some(inner.replace('\r', ""))
        }
        (b'"', b'"') => {
            if inner.contains('\n') {
                return None;
            }
            let mut bytes = Vec::with_capacity(inner.len());
            let mut rest = inner;
            while !rest.is_empty() {
                let (c, r) = unquote_char(rest, b'"')?;
                match c {
                    Ch::Char(c) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    Ch::Byte(b) => bytes.push(b),
                }
                rest = r;
            }
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_go() {
        let n = |s: &str| number(s, false, false);
        assert_eq!(n("1"), Ok(Num::Int(1)));
        assert_eq!(n("010"), Ok(Num::Int(8)));
        assert_eq!(n("0x10"), Ok(Num::Int(16)));
        assert_eq!(n("0b101"), Ok(Num::Int(5)));
        assert_eq!(n("1_000"), Ok(Num::Int(1000)));
        assert_eq!(n("-0"), Ok(Num::Int(0)));
        assert_eq!(n("1.0"), Ok(Num::Float(1.0)));
        assert_eq!(n("1e3"), Ok(Num::Float(1000.0)));
        assert_eq!(n(".5"), Ok(Num::Float(0.5)));
        assert_eq!(n("0x1p-2"), Ok(Num::Float(0.25)));
        assert_eq!(n("18446744073709551615"), Ok(Num::Overflow));
        assert_eq!(
            n("99999999999999999999"),
            Err("integer overflow: \"99999999999999999999\"".into())
        );
        assert_eq!(n("1e999"), Err("illegal number syntax: \"1e999\"".into()));
        assert_eq!(n("1__0"), Err("illegal number syntax: \"1__0\"".into()));
        assert_eq!(number("'a'", true, false), Ok(Num::Int(97)));
        assert_eq!(number("'\\n'", true, false), Ok(Num::Int(10)));
    }

    #[test]
    fn unquotes_like_go() {
        assert_eq!(
            unquote(r#""a\tb\"c\x41\101\u00e9""#).as_deref(),
            Some("a\tb\"cAAé")
        );
        assert_eq!(unquote("`a\\n\r`").as_deref(), Some("a\\n"));
        assert_eq!(unquote(r#""\'""#), None);
        assert_eq!(unquote(r#""\q""#), None);
        assert_eq!(unquote(r#""\u12""#), None);
    }
}
