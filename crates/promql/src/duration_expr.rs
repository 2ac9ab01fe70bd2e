//! Duration expressions (Prometheus 3): arithmetic where a duration goes, in a range or
//! subquery (`x[5m + step()]`, `x[1h:30s * 2]`) and after `offset` (`x offset (1h / 2)`,
//! `x offset min_of(step(), 1m)`). They can only use numbers, durations, `step()`,
//! `range()`, `min_of` and `max_of`, all known once the query's step and range are, so
//! they are worked out before parsing and written back as plain durations in
//! milliseconds, which the parser reads. Anything that does not work out is left as
//! written, for the parser to report.
//!
//! After `offset` the expression is one operand: a number or duration, a parenthesised
//! expression or a call, with an optional sign; operators after it, `^` included, apply to
//! the whole selector (`x offset 100 + 2` adds 2 to the result), as in Prometheus.

use std::borrow::Cow;

/// `query` with its duration expressions worked out for a query of `step_ms` (0 for an
/// instant query) over `range_ms`.
pub(crate) fn resolve(query: &str, step_ms: i64, range_ms: i64) -> Cow<'_, str> {
    let b = query.as_bytes();
    let ctx = Ctx {
        step: step_ms as f64 / 1000.0,
        range: range_ms as f64 / 1000.0,
    };
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'#' => i = after_comment(b, i),
            // Label matchers: names there are not keywords, values may hold anything.
            b'{' => {
                i += 1;
                while i < b.len() && b[i] != b'}' {
                    i = match b[i] {
                        b'"' | b'\'' | b'`' => after_quoted(b, i),
                        _ => i + 1,
                    };
                }
                i += 1;
            }
            b'[' => {
                let Some(close) = b[i..].iter().position(|&c| c == b']').map(|n| i + n) else {
                    break;
                };
                let inner = &query[i + 1..close];
                let parts: Vec<&str> = split_top_level_colon(inner);
                if parts.iter().any(|p| needs_work(p)) {
                    let resolved: Option<Vec<String>> = parts
                        .iter()
                        .map(|p| match needs_work(p) {
                            true => ctx.eval(p).map(millis),
                            false => Some(p.to_string()),
                        })
                        .collect();
                    if let Some(r) = resolved {
                        out.push_str(&query[copied..=i]);
                        out.push_str(&r.join(":"));
                        copied = close;
                    }
                }
                i = close + 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = word_end(b, i);
                if query[i..end].eq_ignore_ascii_case("offset") {
                    if let Some((start, stop, secs)) = ctx.offset_operand(query, end) {
                        if millis(secs) == "0ms" {
                            // No offset: the parser refuses a zero duration.
                            out.push_str(&query[copied..i]);
                        } else {
                            out.push_str(&query[copied..start]);
                            if start == end {
                                out.push(' ');
                            }
                            out.push_str(&millis(secs));
                        }
                        copied = stop;
                        i = stop;
                        continue;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(query);
    }
    out.push_str(&query[copied..]);
    Cow::Owned(out)
}

fn millis(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round() as i64)
}

fn word_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .map_or(b.len(), |n| i + n)
}

/// The end of the line of the comment starting at `i`.
pub(crate) fn after_comment(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n)
}

/// Past the string quoted at `i` (escapes honoured, except in backtick strings).
pub(crate) fn after_quoted(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        j += if b[j] == b'\\' && q != b'`' { 2 } else { 1 };
    }
    (j + 1).min(b.len())
}

/// A range's parts (`range` or `range:step`), split at the colon outside parentheses.
fn split_top_level_colon(s: &str) -> Vec<&str> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => return vec![&s[..i], &s[i + 1..]],
            _ => {}
        }
    }
    vec![s]
}

/// Whether a duration's text is more than one literal the parser reads itself.
fn needs_work(part: &str) -> bool {
    let t = part.trim();
    !t.is_empty() && !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.')
}

struct Ctx {
    step: f64,
    range: f64,
}

/// A parser over a duration expression's text, values in seconds.
struct Expr<'a> {
    s: &'a [u8],
    i: usize,
    ctx: &'a Ctx,
}

impl Ctx {
    /// The whole of `text` as a duration expression, in seconds.
    fn eval(&self, text: &str) -> Option<f64> {
        let mut p = Expr {
            s: text.as_bytes(),
            i: 0,
            ctx: self,
        };
        let v = p.add()?;
        p.space();
        (p.i == p.s.len() && v.is_finite()).then_some(v)
    }

    /// The operand after `offset` (starting at `from`) when it needs working out: where it
    /// starts and ends, and its value in seconds.
    fn offset_operand(&self, query: &str, from: usize) -> Option<(usize, usize, f64)> {
        let mut p = Expr {
            s: query.as_bytes(),
            i: from,
            ctx: self,
        };
        p.space();
        let start = p.i;
        let mut sign = 1.0;
        while let Some(c @ (b'+' | b'-')) = p.peek() {
            if c == b'-' {
                sign = -sign;
            }
            p.i += 1;
            p.space();
        }
        let literal = !matches!(p.peek(), Some(b'(')) && !p.is_call();
        if literal {
            return None;
        }
        let v = p.primary()?;
        v.is_finite().then_some((start, p.i, sign * v))
    }
}

impl Expr<'_> {
    fn space(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.s.get(self.i).copied()
    }

    fn peek_op(&mut self, op: u8) -> bool {
        self.peek() == Some(op)
    }

    /// Whether a function call starts here.
    fn is_call(&mut self) -> bool {
        self.space();
        let end = word_end(self.s, self.i);
        end > self.i
            && self.s[self.i].is_ascii_alphabetic()
            && self.s[end..]
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(|&c| c == b'(')
    }

    fn add(&mut self) -> Option<f64> {
        let mut v = self.mul()?;
        loop {
            match self.peek() {
                Some(b'+') => {
                    self.i += 1;
                    v += self.mul()?;
                }
                Some(b'-') => {
                    self.i += 1;
                    v -= self.mul()?;
                }
                _ => return Some(v),
            }
        }
    }

    fn mul(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            match self.peek() {
                Some(b'*') => {
                    self.i += 1;
                    v *= self.unary()?;
                }
                Some(b'/') => {
                    self.i += 1;
                    v /= self.unary()?;
                }
                Some(b'%') => {
                    self.i += 1;
                    v %= self.unary()?;
                }
                _ => return Some(v),
            }
        }
    }

    /// A sign binds more loosely than `^`: `-2 ^ 2` is -4.
    fn unary(&mut self) -> Option<f64> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Some(-self.unary()?)
            }
            Some(b'+') => {
                self.i += 1;
                self.unary()
            }
            _ => {
                let base = self.primary()?;
                if self.peek_op(b'^') {
                    self.i += 1;
                    return Some(base.powf(self.unary()?));
                }
                Some(base)
            }
        }
    }

    fn primary(&mut self) -> Option<f64> {
        match self.peek()? {
            b'(' => {
                self.i += 1;
                let v = self.add()?;
                (self.peek()? == b')').then(|| self.i += 1)?;
                Some(v)
            }
            c if c.is_ascii_digit() || c == b'.' => self.literal(),
            c if c.is_ascii_alphabetic() => {
                let end = word_end(self.s, self.i);
                let name = std::str::from_utf8(&self.s[self.i..end])
                    .ok()?
                    .to_ascii_lowercase();
                self.i = end;
                (self.peek()? == b'(').then(|| self.i += 1)?;
                let mut args = Vec::new();
                if self.peek()? != b')' {
                    loop {
                        args.push(self.add()?);
                        match self.peek()? {
                            b',' => self.i += 1,
                            b')' => break,
                            _ => return None,
                        }
                    }
                }
                self.i += 1;
                let nan = |a: f64, b: f64| a.is_nan() || b.is_nan();
                match (name.as_str(), args.as_slice()) {
                    ("step", []) => Some(self.ctx.step),
                    ("range", []) => Some(self.ctx.range),
                    ("min_of", [a, b]) => Some(if nan(*a, *b) { f64::NAN } else { a.min(*b) }),
                    ("max_of", [a, b]) => Some(if nan(*a, *b) { f64::NAN } else { a.max(*b) }),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A number (seconds) or a duration such as `1h30m` or `500ms`.
    fn literal(&mut self) -> Option<f64> {
        let start = self.i;
        let end = self.s[start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'.'))
            .map_or(self.s.len(), |n| start + n);
        let text = std::str::from_utf8(&self.s[start..end]).ok()?;
        self.i = end;
        if let Ok(v) = text.parse::<f64>() {
            return Some(v);
        }
        duration_seconds(text)
    }
}

/// A duration literal (`1h30m`, `500ms`, `0s`: numbers each followed by y, w, d, h, m, s
/// or ms) in seconds.
fn duration_seconds(text: &str) -> Option<f64> {
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (0.001, 2),
            [b'y', ..] => (365.0 * 86_400.0, 1),
            [b'w', ..] => (7.0 * 86_400.0, 1),
            [b'd', ..] => (86_400.0, 1),
            [b'h', ..] => (3_600.0, 1),
            [b'm', ..] => (60.0, 1),
            [b's', ..] => (1.0, 1),
            _ => return None,
        };
        total += n * unit;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(q: &str) -> String {
        resolve(q, 5_000, 600_000).into_owned()
    }

    #[test]
    fn ranges_subqueries_and_offsets_become_plain_durations() {
        assert_eq!(r("changes(x[26m+4m])"), "changes(x[1800000ms])");
        assert_eq!(r("x[2m*(10+5)]"), "x[1800000ms]");
        assert_eq!(r("x[1h30m % 1h]"), "x[1800000ms]");
        assert_eq!(
            r("sum_over_time(x[29s+1s:5s+5s])"),
            "sum_over_time(x[30000ms:10000ms])"
        );
        assert_eq!(r("x[step()+1ms]"), "x[5001ms]");
        assert_eq!(r("x[range()]"), "x[600000ms]");
        assert_eq!(r("x[30m+0s]"), "x[1800000ms]");
        assert_eq!(resolve("x offset range()", 0, 0), "x ");
        assert_eq!(r("x[1+(STep()-5)*2]"), "x[1000ms]");
        assert_eq!(r("x offset (100 + 2)"), "x offset 102000ms");
        assert_eq!(
            r("x offset -(min_of(step(), 1s))+8000"),
            "x offset -1000ms+8000"
        );
        assert_eq!(r("x offset (-2 ^ 2)"), "x offset -4000ms");
        // An operator after the operand applies to the selector, as `x offset 1s ^ 0` does.
        assert_eq!(r("x offset min_of(step(), 1s)^0"), "x offset 1000ms^0");
        assert_eq!(r("x offset(1h)"), "x offset 3600000ms");
    }

    #[test]
    fn plain_text_is_left_as_it_is() {
        for q in [
            "rate(x[5m])",
            "x[5m:1m] offset 1h",
            "x offset -4",
            r#"x{offset="(1+2)"}"#,
            r#"x{a="}[1+1]"}"#,
            "x[5m:]",
            r#"label_replace(x, "a", "[1+1]", "b", "c")"#,
        ] {
            assert!(matches!(resolve(q, 5_000, 0), Cow::Borrowed(_)), "{q}");
        }
        // What does not work out is left for the parser to report.
        assert_eq!(r("x[5m + nope()]"), "x[5m + nope()]");
    }
}
