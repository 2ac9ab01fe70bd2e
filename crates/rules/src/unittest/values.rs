//! The expanding value notation of `input_series` (`1+2x3`, `_x2`, `stale`, `Inf`, …),
//! read token by token as Prometheus's series-description lexer and grammar read it.

use meshlens_model::STALE_NAN;

use super::series::{is_alnum, is_alpha, is_space, Cursor, ParseError, MAX_VALUES_PER_SERIES};

/// One token of a value sequence.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Space,
    Add,
    Sub,
    Times,
    Blank,
    Number(f64, String),
    Ident(String),
    Eof,
}

fn next_token(c: &mut Cursor) -> Result<(usize, Tok), ParseError> {
    let start = c.pos;
    let Some(ch) = c.peek() else {
        return Ok((start, Tok::Eof));
    };
    let tok = match ch {
        ch if is_space(ch) => {
            c.skip_spaces();
            Tok::Space
        }
        '+' => {
            c.bump();
            Tok::Add
        }
        '-' => {
            c.bump();
            Tok::Sub
        }
        'x' => {
            c.bump();
            Tok::Times
        }
        '_' => {
            c.bump();
            Tok::Blank
        }
        ch if ch.is_ascii_digit()
            || (ch == '.' && matches!(c.peek_at(1), Some(d) if d.is_ascii_digit())) =>
        {
            let text = scan_number(c)?;
            let v = number_value(&text).ok_or_else(|| ParseError {
                pos: start,
                message: format!("error parsing number: invalid syntax {text:?}"),
            })?;
            Tok::Number(v, text)
        }
        ch if is_alpha(ch) => {
            let word = c.take_while(|x| is_alnum(x) || x == ':').to_string();
            match word.to_ascii_lowercase().as_str() {
                "inf" => Tok::Number(f64::INFINITY, word),
                "nan" => Tok::Number(f64::NAN, word),
                _ => Tok::Ident(word),
            }
        }
        ch => {
            return c.err(
                start,
                format!("unexpected character in series sequence: {ch:?}"),
            )
        }
    };
    Ok((start, tok))
}

/// Prometheus's number scan in a series description: digits, a fraction, an exponent; the
/// next character may be `x` (repetition) but no other letter or digit.
fn scan_number(c: &mut Cursor) -> Result<String, ParseError> {
    let start = c.pos;
    c.take_while(|x| x.is_ascii_digit());
    if c.peek() == Some('.') {
        c.bump();
        c.take_while(|x| x.is_ascii_digit());
    }
    if matches!(c.peek(), Some('e' | 'E')) {
        c.bump();
        if matches!(c.peek(), Some('+' | '-')) {
            c.bump();
        }
        c.take_while(|x| x.is_ascii_digit());
    }
    let text = c.text[start..c.pos].to_string();
    match c.peek() {
        Some(x) if x != 'x' && is_alnum(x) => c.err(start, format!("bad number syntax: {text:?}")),
        _ => Ok(text),
    }
}

/// Go's `ParseInt(s, 0, 64)` then `ParseFloat`: `010` is octal 8, `09` is 9.
fn number_value(text: &str) -> Option<f64> {
    let all_digits = text.bytes().all(|b| b.is_ascii_digit());
    if all_digits && text.len() > 1 && text.starts_with('0') {
        if let Ok(v) = i64::from_str_radix(&text[1..], 8) {
            return Some(v as f64);
        }
    } else if all_digits {
        if let Ok(v) = text.parse::<i64>() {
            return Some(v as f64);
        }
    }
    let v: f64 = text.parse().ok()?;
    Some(v)
}

pub(super) fn values(c: &mut Cursor) -> Result<Vec<Option<f64>>, ParseError> {
    let mut toks = Vec::new();
    loop {
        let t = next_token(c)?;
        let end = t.1 == Tok::Eof;
        toks.push(t);
        if end {
            break;
        }
    }
    let mut out: Vec<Option<f64>> = Vec::new();
    let mut i = 0;
    loop {
        // Items are separated by spaces; the first one too is preceded by one.
        match &toks[i].1 {
            Tok::Eof => return Ok(out),
            Tok::Space => i += 1,
            _ => return Err(unexpected(&toks[i], "")),
        }
        let item_pos = toks[i].0;
        match &toks[i].1 {
            Tok::Eof => return Ok(out),
            Tok::Blank if toks[i + 1].1 == Tok::Times => {
                let n = repetition(&toks, i + 2)?;
                i += 3;
                push_n(&mut out, None, n, item_pos)?;
            }
            Tok::Blank => {
                i += 1;
                push_n(&mut out, None, 1, item_pos)?;
            }
            _ => {
                let (first, used) = series_value(&toks, i)?;
                i += used;
                match &toks[i].1 {
                    Tok::Times => {
                        let n = repetition(&toks, i + 1)?;
                        i += 2;
                        push_n(&mut out, Some(first), n.saturating_add(1), item_pos)?;
                    }
                    Tok::Add | Tok::Sub => {
                        let (step, used) = series_value(&toks, i)?;
                        i += used;
                        if toks[i].1 != Tok::Times {
                            return Err(unexpected(&toks[i], ""));
                        }
                        let n = repetition(&toks, i + 1)?;
                        i += 2;
                        check_room(&out, n.saturating_add(1), item_pos)?;
                        let mut v = first;
                        for _ in 0..=n {
                            out.push(Some(v));
                            v += step;
                        }
                    }
                    _ => push_n(&mut out, Some(first), 1, item_pos)?,
                }
            }
        }
    }
}

fn unexpected((pos, tok): &(usize, Tok), want: &str) -> ParseError {
    // Worded as Prometheus's parser describes its tokens.
    let what = match tok {
        Tok::Space => "\" \"".to_string(),
        Tok::Add => "<op:+>".to_string(),
        Tok::Sub => "<op:->".to_string(),
        Tok::Times => "\"x\"".to_string(),
        Tok::Blank => "\"_\"".to_string(),
        Tok::Number(_, s) => format!("number {s:?}"),
        Tok::Ident(s) => format!("identifier {s:?}"),
        Tok::Eof => "end of input".to_string(),
    };
    let want = if want.is_empty() {
        String::new()
    } else {
        format!(", expected {want}")
    };
    ParseError {
        pos: *pos,
        message: format!("unexpected {what} in series values{want}"),
    }
}

/// A value: `stale`, a number, or a signed number; returns it and the tokens used.
fn series_value(toks: &[(usize, Tok)], i: usize) -> Result<(f64, usize), ParseError> {
    match &toks[i].1 {
        Tok::Number(v, _) => Ok((*v, 1)),
        Tok::Ident(w) if w == "stale" => Ok((STALE_NAN, 1)),
        Tok::Ident(_) => Err(unexpected(&toks[i], "number or \"stale\"")),
        Tok::Add | Tok::Sub => match &toks[i + 1].1 {
            Tok::Number(v, _) => Ok((if toks[i].1 == Tok::Sub { -*v } else { *v }, 2)),
            _ => Err(unexpected(&toks[i + 1], "")),
        },
        _ => Err(unexpected(&toks[i], "")),
    }
}

fn repetition(toks: &[(usize, Tok)], i: usize) -> Result<u64, ParseError> {
    match toks.get(i) {
        Some((pos, Tok::Number(_, text))) => text.parse::<u64>().map_err(|e| ParseError {
            pos: *pos,
            message: format!("invalid repetition in series values: {e}"),
        }),
        Some(t) => Err(unexpected(t, "")),
        None => Err(ParseError {
            pos: toks.last().map_or(0, |t| t.0),
            message: "unexpected end of input in series values".into(),
        }),
    }
}

fn check_room(out: &[Option<f64>], n: u64, pos: usize) -> Result<(), ParseError> {
    if (out.len() as u64).saturating_add(n) > MAX_VALUES_PER_SERIES {
        return Err(ParseError {
            pos,
            message: format!(
                "series expands to more than {MAX_VALUES_PER_SERIES} values (meshlens's limit)"
            ),
        });
    }
    Ok(())
}

fn push_n(
    out: &mut Vec<Option<f64>>,
    v: Option<f64>,
    n: u64,
    pos: usize,
) -> Result<(), ParseError> {
    check_room(out, n, pos)?;
    out.extend(std::iter::repeat_n(v, n as usize));
    Ok(())
}
