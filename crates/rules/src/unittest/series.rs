//! The series notation of `input_series` and `exp_samples`, as Prometheus's test language
//! reads it: a metric (`name{label="value", …}`) and, for input series, an expanding list of
//! values (`1+2x3`, `_x2`, `stale`, `Inf`, …).
//!
//! Expansion follows promtool exactly: `a+bxn` gives n+1 values by repeated addition (so the
//! floating-point rounding is the same), `axn` gives n+1 copies of `a`, `_xn` gives n gaps,
//! and integers with a leading zero are octal.

use meshlens_model::Labels;
use std::fmt;

/// Most values one series may expand to; promtool has no limit, but a typo such as `1x9e9`
/// must not exhaust memory.
pub const MAX_VALUES_PER_SERIES: u64 = 5_000_000;

/// A parse error at a byte offset of the parsed text, printed as Prometheus prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1:{}: parse error: {}", self.pos + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One parsed input series: its labels and one entry per step (`None`: no sample).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDesc {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// Keywords that cannot name a metric in a series description.
const NOT_METRIC_NAMES: &[&str] = &[
    "atan2",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "inf",
    "nan",
];

pub(super) struct Cursor<'a> {
    pub text: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    pub(super) fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(super) fn err<T>(&self, pos: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            pos,
            message: message.into(),
        })
    }

    pub(super) fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(c) if is_space(c)) {
            self.pos += 1;
        }
    }

    pub(super) fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if f(c)) {
            self.bump();
        }
        &self.text[start..self.pos]
    }
}

pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

pub(super) fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

pub(super) fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// Parses a metric as `exp_samples` writes it: `name{l="v"}`, `{l="v"}`, `name` or nothing.
pub fn parse_metric(text: &str) -> Result<Labels, ParseError> {
    let mut c = Cursor { text, pos: 0 };
    c.skip_spaces();
    let labels = metric(&mut c, true)?;
    c.skip_spaces();
    if let Some(ch) = c.peek() {
        let rest = &c.text[c.pos..];
        let msg = if is_alpha(ch) {
            let word: String = rest
                .chars()
                .take_while(|x| is_alnum(*x) || *x == ':')
                .collect();
            format!("unexpected identifier {word:?}")
        } else {
            format!("unexpected character: {ch:?}")
        };
        return c.err(c.pos, msg);
    }
    Ok(labels)
}

/// Parses one `input_series` line: the series, a space, and its values.
pub fn parse_series_desc(text: &str) -> Result<SeriesDesc, ParseError> {
    let mut c = Cursor { text, pos: 0 };
    c.skip_spaces();
    let labels = metric(&mut c, false)?;
    let values = super::values::values(&mut c)?;
    Ok(SeriesDesc { labels, values })
}

/// Fails at the token under the cursor inside braces, worded as Prometheus's parser words
/// it: `unexpected identifier "x" in label set, expected string`, or its lexer's error for
/// a character that starts no token there.
fn unexpected_in_braces<T>(c: &Cursor, expected: &str) -> Result<T, ParseError> {
    let rest = &c.text[c.pos..];
    let desc = match rest.chars().next() {
        None => return c.err(c.pos, "unexpected end of input inside braces"),
        Some(ch) if is_alpha(ch) => {
            let word: String = rest.chars().take_while(|x| is_alnum(*x)).collect();
            format!("identifier {word:?}")
        }
        Some(q @ ('"' | '\'' | '`')) => {
            let body = rest[1..].find(q).map_or(rest, |end| &rest[..end + 2]);
            format!("string {}", super::gofmt::go_quote(body))
        }
        Some(_) if rest.starts_with("=~") || rest.starts_with("!=") || rest.starts_with("!~") => {
            format!("<op:{}>", &rest[..2])
        }
        Some(ch @ (',' | '}' | '=')) => format!("\"{ch}\""),
        Some(ch) => return c.err(c.pos, format!("unexpected character inside braces: {ch:?}")),
    };
    c.err(
        c.pos,
        format!("unexpected {desc} in label set, expected {expected}"),
    )
}

/// `space_before_brace`: whether `name {…}` is allowed; in a series description a space
/// after the name starts the values, as in Prometheus's lexer.
fn metric(c: &mut Cursor, space_before_brace: bool) -> Result<Labels, ParseError> {
    let start = c.pos;
    let name = c.take_while(|ch| is_alnum(ch) || ch == ':');
    if !name.is_empty() {
        if name.starts_with(|ch: char| ch.is_ascii_digit())
            || NOT_METRIC_NAMES.contains(&name.to_ascii_lowercase().as_str())
        {
            return c.err(start, format!("unexpected <{name}>"));
        }
        if space_before_brace {
            c.skip_spaces();
        }
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if c.peek() == Some('{') {
        c.bump();
        label_set(c, &mut pairs)?;
    }
    if !name.is_empty() {
        pairs.push(("__name__".to_string(), name.to_string()));
    }
    Ok(Labels::from_pairs(pairs))
}

fn label_set(c: &mut Cursor, out: &mut Vec<(String, String)>) -> Result<(), ParseError> {
    loop {
        c.skip_spaces();
        match c.peek() {
            Some('}') => {
                c.bump();
                return Ok(());
            }
            Some(ch) if is_alpha(ch) => {}
            _ => return unexpected_in_braces(c, "identifier or \"}\""),
        }
        let name = c.take_while(is_alnum).to_string();
        c.skip_spaces();
        if c.peek() != Some('=') || matches!(c.peek_at(1), Some('~')) {
            return unexpected_in_braces(c, "\"=\"");
        }
        c.bump();
        c.skip_spaces();
        let value = string_literal(c)?;
        out.push((name, value));
        c.skip_spaces();
        match c.peek() {
            Some(',') => {
                c.bump();
            }
            Some('}') => {
                c.bump();
                return Ok(());
            }
            _ => return unexpected_in_braces(c, "\",\" or \"}\""),
        }
    }
}

/// A quoted string (`"…"`, `'…'` or a raw `` `…` ``) with Go's escapes.
fn string_literal(c: &mut Cursor) -> Result<String, ParseError> {
    let start = c.pos;
    let quote = match c.peek() {
        Some(q @ ('"' | '\'' | '`')) => q,
        _ => return unexpected_in_braces(c, "string"),
    };
    c.bump();
    let mut out = String::new();
    loop {
        let Some(ch) = c.bump() else {
            return c.err(start, "unterminated quoted string");
        };
        if ch == quote {
            return Ok(out);
        }
        if quote != '`' && ch == '\n' {
            return c.err(start, "unterminated quoted string");
        }
        if quote == '`' || ch != '\\' {
            out.push(ch);
            continue;
        }
        let esc_at = c.pos - 1;
        let bad = |c: &Cursor| c.err::<String>(esc_at, "invalid escape sequence in string");
        match c.bump() {
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some(q) if q == quote => out.push(q),
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match c.bump().and_then(|x| x.to_digit(8)) {
                        Some(x) => v = v * 8 + x,
                        None => return bad(c),
                    }
                }
                match char::from_u32(v).filter(|_| v < 256) {
                    Some(ch) => out.push(ch),
                    None => return bad(c),
                }
            }
            Some(k @ ('x' | 'u' | 'U')) => {
                let n = match k {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                for _ in 0..n {
                    match c.bump().and_then(|x| x.to_digit(16)) {
                        Some(x) => v = v.saturating_mul(16).saturating_add(x),
                        None => return bad(c),
                    }
                }
                match char::from_u32(v) {
                    Some(ch) => out.push(ch),
                    None => return bad(c),
                }
            }
            _ => return bad(c),
        }
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
