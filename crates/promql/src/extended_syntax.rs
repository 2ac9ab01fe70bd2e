//! Prometheus 3 syntax that the `promql-parser` crate does not read, rewritten before parsing
//! into a form it reads and that the evaluator recognises again:
//!
//! - the trim operators `h </ x` and `h >/ x` (drop a native histogram's observations above,
//!   or below, `x`) become the comparison of the same precedence, `<` or `>`, with a marker
//!   label in a `group_left` list ([`trim_of`] gives the operator and the real matching
//!   back). `ignoring()` before it changes nothing: it is the default matching.
//!
//! - the selector modifiers `anchored` and `smoothed` (`rate(x[5m] anchored)`,
//!   `x offset 1m smoothed`) become a marker matcher `__meshlens_anchored__=""` (or
//!   `__meshlens_smoothed__=""`) in the selector's braces ([`extension_of`] finds it, and the
//!   selector's matchers leave it out).
//!
//!   A modifier applies to the expression just before it, as Prometheus's `expr ANCHORED`
//!   rule does: on a subquery or any other expression than a selector the rewrite fails
//!   with Prometheus's parse error, as it does for both modifiers on one selector.
//!
//! - promql-parser lexes `anchored` and `smoothed` as keywords everywhere, while Prometheus
//!   also takes them as metric and label names: as a metric name the word goes into the
//!   braces (`{__name__="anchored"}`), in a `by` / `on` / `group_left` list it is quoted.
//!
//! The rewrite skips strings, comments and label matchers, so `"</"` or a label value
//! `anchored` stay as written.

use std::borrow::Cow;

use promql_parser::parser::{BinaryExpr, Expr, VectorMatchCardinality, VectorSelector};

use crate::duration_expr::{after_comment, after_quoted};
use crate::eval::positions::{group_close, group_end, BINARY_WORDS, GROUPING};

/// Start of the marker labels of trim operators; the rest names the operator and whether
/// the query had its own `group_left` / `group_right`.
const TRIM_MARKER: &str = "__meshlens_trim_";

/// A trim operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trim {
    /// `</`: keeps the observations below the cut.
    Upper,
    /// `>/`: keeps the observations above the cut.
    Lower,
}

impl Trim {
    fn marker(self, grouped: bool) -> String {
        let kind = match self {
            Trim::Upper => "upper",
            Trim::Lower => "lower",
        };
        let grouped = if grouped { "_grouped" } else { "" };
        format!("{TRIM_MARKER}{kind}{grouped}__")
    }
}

/// A selector modifier of Prometheus 3's extended range selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extension {
    /// `anchored`: the window also takes the last sample before its start.
    Anchored,
    /// `smoothed`: values at the window's ends are interpolated.
    Smoothed,
}

const ANCHORED_MARKER: &str = "__meshlens_anchored__";
const SMOOTHED_MARKER: &str = "__meshlens_smoothed__";

/// The modifier a selector had in the query text, if any.
pub(crate) fn extension_of(vs: &VectorSelector) -> Option<Extension> {
    vs.matchers
        .matchers
        .iter()
        .find_map(|m| match m.name.as_str() {
            ANCHORED_MARKER => Some(Extension::Anchored),
            SMOOTHED_MARKER => Some(Extension::Smoothed),
            _ => None,
        })
}

/// Whether a matcher name is one of the modifier markers, which select nothing.
pub(crate) fn is_marker(name: &str) -> bool {
    name == ANCHORED_MARKER || name == SMOOTHED_MARKER
}

/// Where a selector's marker matcher goes.
#[derive(Clone, Copy)]
enum SelectorEnd {
    /// Before the `}` at this offset (`empty`: nothing between the braces).
    InBraces { close: usize, empty: bool },
    /// After a bare metric name ending here.
    AfterName(usize),
    /// In the braces a keyword metric name was rewritten into, before the `}` that edit
    /// number `n` inserts.
    Rewritten(usize),
}

/// The expression that ends where the scan stands, which a modifier word after it applies
/// to (Prometheus's `expr ANCHORED`, binding to the nearest expression before it).
#[derive(Clone, Copy)]
enum Last {
    /// None ends here (an operator, an opening bracket, a keyword): `anchored` or
    /// `smoothed` here is a metric name.
    Nothing,
    /// A series selector starting at `start` (a range after it included), with the
    /// modifier it was given.
    Selector {
        start: usize,
        end: SelectorEnd,
        modifier: Option<&'static str>,
    },
    /// A subquery whose expression starts at `start`.
    Subquery { start: usize },
    /// Anything else (a literal, a call, an aggregation, a parenthesis) starting at `start`.
    Other { start: usize },
    /// A range on what is no selector (`1[5m]`): the parser's own error is the one to give,
    /// so a modifier after it is only dropped.
    Broken { start: usize },
}

impl Last {
    fn start(self) -> Option<usize> {
        match self {
            Last::Nothing => None,
            Last::Selector { start, .. }
            | Last::Subquery { start }
            | Last::Other { start }
            | Last::Broken { start } => Some(start),
        }
    }
}

/// What Prometheus's parser refuses in a modifier's place, and where (the offset of the
/// expression the modifier was put on).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RewriteError {
    pub at: usize,
    pub message: String,
}

/// `query` in the syntax the parser reads; borrowed when there was nothing to rewrite. A
/// modifier on what is no series selector fails as in Prometheus: on a subquery, on any
/// other expression, or `anchored` and `smoothed` on the same selector.
pub(crate) fn rewrite(query: &str) -> Result<Cow<'_, str>, RewriteError> {
    rewrite_as(query, false)
}

/// [`rewrite`] for printing the query back (`format_query`): a metric named `anchored` or
/// `smoothed` becomes a placeholder name ([`NAME_MARKER`]) instead of a `__name__` matcher,
/// so that [`restore`] tells it from a `{__name__="anchored"}` the query wrote.
pub(crate) fn rewrite_for_printing(query: &str) -> Result<Cow<'_, str>, RewriteError> {
    rewrite_as(query, true)
}

/// Start of the placeholder metric names of [`rewrite_for_printing`]; the word follows,
/// then `__`.
const NAME_MARKER: &str = "__meshlens_name_";

fn rewrite_as(query: &str, printing: bool) -> Result<Cow<'_, str>, RewriteError> {
    let b = query.as_bytes();
    // (offset, text to insert, bytes of the original to drop there)
    let mut edits: Vec<(usize, String, usize)> = Vec::new();
    let mut last = Last::Nothing;
    // Open parentheses: where the expression they start begins (a call's name).
    let mut opens: Vec<usize> = Vec::new();
    // A name just read that calls a function: the expression starts there.
    let mut call_start: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                last = Last::Other { start: i };
                i = after_quoted(b, i);
            }
            b'#' => i = after_comment(b, i),
            c if c.is_ascii_whitespace() => i += 1,
            b'{' => {
                // Unclosed braces: no selector to mark, the parser refuses the text.
                let Some(close) = group_close(query, i) else {
                    break;
                };
                let empty = query[i + 1..close].trim().is_empty();
                // A name right before the braces is part of the selector.
                let start = match last {
                    Last::Selector {
                        start,
                        end: SelectorEnd::AfterName(at),
                        ..
                    } if query[at..i].trim().is_empty() => start,
                    _ => i,
                };
                last = Last::Selector {
                    start,
                    end: SelectorEnd::InBraces { close, empty },
                    modifier: None,
                };
                i = close + 1;
            }
            b'[' => {
                let Some(close) = group_close(query, i) else {
                    break;
                };
                // A subquery's range has a colon; a range selector stays a selector.
                last = match last {
                    Last::Nothing => Last::Nothing,
                    _ if query[i + 1..close].contains(':') => Last::Subquery {
                        start: last.start().unwrap_or(i),
                    },
                    Last::Selector { .. } => last,
                    _ => Last::Broken {
                        start: last.start().unwrap_or(i),
                    },
                };
                i = close + 1;
            }
            b'(' => {
                opens.push(call_start.take().unwrap_or(i));
                last = Last::Nothing;
                i += 1;
            }
            b')' => {
                last = Last::Other {
                    start: opens.pop().unwrap_or(i),
                };
                i += 1;
            }
            b'@' => {
                i = after_operand(query, i + 1);
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // A number or duration: its letters are no names.
                last = Last::Other { start: i };
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &query[start..i];
                let next = skip_space(b, i);
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) && b.get(next) == Some(&b'(') {
                    // Its label list: the modifier words there are label names, which the
                    // parser reads quoted only.
                    let Some(close) = group_close(query, next) else {
                        break;
                    };
                    quote_keyword_labels(query, next + 1, close, &mut edits);
                    last = Last::Nothing;
                    i = close + 1;
                    continue;
                }
                if b.get(next) == Some(&b'(') {
                    call_start = Some(start);
                    continue;
                }
                let ends_expr = last.start().is_some();
                if ends_expr && lower == "offset" {
                    i = after_operand(query, i);
                    continue;
                }
                let modifier = match lower.as_str() {
                    "anchored" => Some(("anchored", ANCHORED_MARKER)),
                    "smoothed" => Some(("smoothed", SMOOTHED_MARKER)),
                    _ => None,
                };
                if let (Some((name, marker)), true) = (modifier, ends_expr) {
                    last = apply_modifier(&mut edits, last, name, marker, start, word.len())?;
                    continue;
                }
                // Words that end no expression and name no series where they stand.
                if GROUPING.contains(&lower.as_str()) || BINARY_WORDS.contains(&lower.as_str()) {
                    last = Last::Nothing;
                    continue;
                }
                if modifier.is_some() && printing {
                    // A placeholder the parser reads as a name, put back when printed.
                    edits.push((start, format!("{NAME_MARKER}{word}__"), word.len()));
                    last = Last::Selector {
                        start,
                        end: SelectorEnd::AfterName(i),
                        modifier: None,
                    };
                    continue;
                }
                if modifier.is_some() {
                    // `anchored` or `smoothed` as a metric name: the parser reads them as
                    // keywords only, so the name goes into the braces.
                    let name = format!("__name__=\"{word}\"");
                    if b.get(next) == Some(&b'{') {
                        edits.push((start, String::new(), word.len()));
                        let Some(close) = group_close(query, next) else {
                            break;
                        };
                        let empty = query[next + 1..close].trim().is_empty();
                        let sep = if empty { "" } else { ", " };
                        edits.push((next + 1, format!("{name}{sep}"), 0));
                        last = Last::Selector {
                            start,
                            end: SelectorEnd::InBraces {
                                close,
                                empty: false,
                            },
                            modifier: None,
                        };
                        i = close + 1;
                    } else {
                        edits.push((start, format!("{{{name}"), word.len()));
                        edits.push((i, "}".into(), 0));
                        last = Last::Selector {
                            start,
                            end: SelectorEnd::Rewritten(edits.len() - 1),
                            modifier: None,
                        };
                    }
                    continue;
                }
                last = if matches!(lower.as_str(), "inf" | "nan") {
                    Last::Other { start }
                } else {
                    Last::Selector {
                        start,
                        end: SelectorEnd::AfterName(i),
                        modifier: None,
                    }
                };
            }
            c @ (b'<' | b'>') if b.get(i + 1) == Some(&b'/') => {
                let trim = if c == b'<' { Trim::Upper } else { Trim::Lower };
                // Drop the `/`, then mark the comparison left.
                edits.push((i + 1, String::new(), 1));
                let (at, text) = trim_marking(query, i + 2, trim);
                edits.push((at, text, 0));
                last = Last::Nothing;
                i += 2;
            }
            _ => {
                last = Last::Nothing;
                i += 1;
            }
        }
    }
    if edits.is_empty() {
        return Ok(Cow::Borrowed(query));
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(query.len() + 64 * edits.len());
    let mut copied = 0;
    for (at, text, drop) in edits {
        // Edits never overlap; were one to start inside text another dropped, it goes
        // after it rather than split the text.
        let at = at.max(copied);
        out.push_str(&query[copied..at]);
        out.push_str(&text);
        copied = at + drop;
    }
    out.push_str(&query[copied..]);
    Ok(Cow::Owned(out))
}

/// The modifier word `name` (at `at`, `len` bytes) put on the expression `last`: a marker
/// for a selector's braces, or the error Prometheus's parser gives for anything else.
fn apply_modifier(
    edits: &mut Vec<(usize, String, usize)>,
    last: Last,
    name: &'static str,
    marker: &str,
    at: usize,
    len: usize,
) -> Result<Last, RewriteError> {
    let fail = |start: usize, message: String| RewriteError { at: start, message };
    match last {
        Last::Selector {
            start,
            end,
            modifier,
        } => {
            edits.push((at, String::new(), len));
            match modifier {
                Some(m) if m == name => {}
                Some(_) => {
                    return Err(fail(
                        start,
                        "anchored and smoothed modifiers cannot be used together".into(),
                    ))
                }
                None => match end {
                    SelectorEnd::InBraces { close, empty } => {
                        let sep = if empty { "" } else { ", " };
                        edits.push((close, format!("{sep}{marker}=\"\""), 0));
                    }
                    SelectorEnd::AfterName(at) => {
                        edits.push((at, format!("{{{marker}=\"\"}}"), 0));
                    }
                    SelectorEnd::Rewritten(n) => edits[n].1 = format!(", {marker}=\"\"}}"),
                },
            }
            Ok(Last::Selector {
                start,
                end,
                modifier: Some(name),
            })
        }
        Last::Subquery { start } => Err(fail(
            start,
            format!("{name} modifier is not supported for subqueries"),
        )),
        Last::Other { start } => Err(fail(start, format!("{name} modifier not implemented"))),
        Last::Broken { .. } => {
            edits.push((at, String::new(), len));
            Ok(last)
        }
        Last::Nothing => Ok(last),
    }
}

/// Edits quoting the label names `anchored` and `smoothed` in the list `query[from..to]`.
fn quote_keyword_labels(
    query: &str,
    from: usize,
    to: usize,
    edits: &mut Vec<(usize, String, usize)>,
) {
    let b = query.as_bytes();
    let mut i = from;
    while i < to {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < to && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &query[start..i];
                if word.eq_ignore_ascii_case("anchored") || word.eq_ignore_ascii_case("smoothed") {
                    edits.push((start, format!("\"{word}\""), word.len()));
                }
            }
            _ => i += 1,
        }
    }
}

/// Past the operand of `offset` or `@` whose text starts at `i`: a signed number or
/// duration, a parenthesised expression, or a call (`start()`, `step()`).
fn after_operand(query: &str, i: usize) -> usize {
    let b = query.as_bytes();
    let mut k = skip_space(b, i);
    if matches!(b.get(k), Some(b'-' | b'+')) {
        k = skip_space(b, k + 1);
    }
    if b.get(k) == Some(&b'(') {
        return group_end(query, k);
    }
    let end = b[k..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_')))
        .map_or(b.len(), |n| k + n);
    let open = skip_space(b, end);
    if end > k && b.get(open) == Some(&b'(') {
        group_end(query, open)
    } else {
        end
    }
}

/// Where, after a trim operator whose modifiers start at `from`, its marker goes and the
/// text to insert there: into the query's own `group_left(...)` / `group_right(...)` list,
/// or as a new `group_left(marker)` after its `on(...)` / `ignoring(...)` (or after
/// `ignoring()`, added after the operator and its `bool`).
fn trim_marking(query: &str, from: usize, trim: Trim) -> (usize, String) {
    let b = query.as_bytes();
    let mut at = from;
    let mut word = next_word(query, at);
    if word.is_some_and(|(w, _)| w.eq_ignore_ascii_case("bool")) {
        at = word.map_or(at, |(_, end)| end);
        word = next_word(query, at);
    }
    let mut matching = false;
    if let Some((w, end)) = word {
        if w.eq_ignore_ascii_case("on") || w.eq_ignore_ascii_case("ignoring") {
            let open = skip_space(b, end);
            if b.get(open) == Some(&b'(') {
                matching = true;
                at = group_end(query, open);
                word = next_word(query, at);
            }
        }
    }
    match word {
        Some((w, end))
            if w.eq_ignore_ascii_case("group_left") || w.eq_ignore_ascii_case("group_right") =>
        {
            let marker = trim.marker(true);
            let open = skip_space(b, end);
            if b.get(open) != Some(&b'(') {
                return (end, format!("({marker})"));
            }
            let close = group_close(query, open).unwrap_or(b.len());
            if query[open + 1..close].trim().is_empty() {
                (open + 1, marker)
            } else {
                (open + 1, format!("{marker}, "))
            }
        }
        _ if matching => (at, format!(" group_left({})", trim.marker(false))),
        _ => (
            at,
            format!(" ignoring() group_left({})", trim.marker(false)),
        ),
    }
}

/// The word (letters, digits, `_`) after the spaces at `i`, and where it ends.
fn next_word(query: &str, i: usize) -> Option<(&str, usize)> {
    let b = query.as_bytes();
    let start = skip_space(b, i);
    let end = b[start..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .map_or(b.len(), |n| start + n);
    (end > start).then(|| (&query[start..end], end))
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The trim operator a binary expression stands for, with the cardinality the query gave
/// (the marker taken out); `None` for any other binary expression.
pub(crate) fn trim_of(b: &BinaryExpr) -> Option<(Trim, VectorMatchCardinality)> {
    let card = &b.modifier.as_ref()?.card;
    let (VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls)) = card
    else {
        return None;
    };
    let marker = ls.labels.iter().find(|l| l.starts_with(TRIM_MARKER))?;
    let trim = if marker.starts_with(&format!("{TRIM_MARKER}upper")) {
        Trim::Upper
    } else {
        Trim::Lower
    };
    if !marker.ends_with("_grouped__") {
        return Some((trim, VectorMatchCardinality::OneToOne));
    }
    let mut rest = ls.clone();
    rest.labels.retain(|l| l != marker);
    Some((
        trim,
        match card {
            VectorMatchCardinality::ManyToOne(_) => VectorMatchCardinality::ManyToOne(rest),
            _ => VectorMatchCardinality::OneToMany(rest),
        },
    ))
}

/// What Prometheus's parser refuses in the rewritten syntax: `bool` on a trim operator.
pub(crate) fn check(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Binary(b) => {
            if trim_of(b).is_some() && b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                return Err("bool modifier can only be used on comparison operators".into());
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check(p)?;
            }
            check(&a.expr)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(s) => check(&s.expr),
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| check(a)),
        _ => Ok(()),
    }
}

/// A printed expression (`format_query`) as Prometheus prints the query: trim operators as
/// the query wrote them (each marker taken out and the `/` put back after the comparison
/// before it), `anchored` / `smoothed` after the selector's range (a range selector) or its
/// `@` (an instant selector), before `offset`, as Prometheus's printer puts them, the
/// `ignoring ()` promql-parser leaves out before a group modifier, and the placeholder names
/// of [`rewrite_for_printing`] back to the words they stand for.
pub(crate) fn restore(printed: &str) -> String {
    let out = restore_trims(printed.to_string());
    let out = restore_ignoring(out);
    let out = restore_modifiers(out);
    restore_names(out)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The first `needle` from `from` outside quoted strings that starts a word, and the last
/// `{` before it outside quoted strings.
fn find_unquoted(text: &str, from: usize, needle: &str) -> Option<(usize, Option<usize>)> {
    let b = text.as_bytes();
    let mut open = None;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'{' => {
                open = Some(i);
                i += 1;
            }
            _ if b[i..].starts_with(needle.as_bytes()) && (i == 0 || !is_ident(b[i - 1])) => {
                return Some((i, open))
            }
            _ => i += 1,
        }
    }
    None
}

/// The last `<` or `>` in `text[from..to]` outside quoted strings.
fn last_comparison(text: &str, from: usize, to: usize) -> Option<usize> {
    let b = &text.as_bytes()[..to];
    let mut found = None;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'<' | b'>' => {
                found = Some(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
}

fn restore_trims(mut out: String) -> String {
    let mut from = 0;
    while let Some((at, _)) = find_unquoted(&out, from, TRIM_MARKER) {
        let end = out[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(out.len(), |n| at + n);
        // A marker the rewrite added with its own `group_left(...)` takes it along; in the
        // query's own list (`_grouped`) only the marker goes.
        let grouped = out[at..end].ends_with("_grouped__");
        let (from_, to) =
            if !grouped && out[..at].ends_with(" group_left (") && out[end..].starts_with(')') {
                (at - " group_left (".len(), end + 1)
            } else if out[end..].starts_with(", ") {
                (at, end + 2)
            } else if out[..at].ends_with(", ") {
                (at - 2, end)
            } else {
                (at, end)
            };
        out.replace_range(from_..to, "");
        // The operator is after the marker before (each marker follows its own operator).
        match last_comparison(&out, from, from_) {
            Some(op) => out.insert(op + 1, '/'),
            None => break,
        }
        from = from_ + 1;
    }
    out
}

/// ` ignoring ()` put back before a `group_left` / `group_right` printed without an `on` or
/// `ignoring` list: promql-parser leaves an empty `ignoring()` out, which Prometheus's
/// grammar needs there (and prints).
fn restore_ignoring(mut out: String) -> String {
    let mut matching_end = 0;
    let mut i = 0;
    while i < out.len() {
        let b = out.as_bytes();
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'{' => i = group_close(&out, i).map_or(out.len(), |c| c + 1),
            c if is_ident(c) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let word = &out[start..i];
                if !out[i..].starts_with(" (") {
                    continue;
                }
                match word {
                    "on" | "ignoring" => {
                        matching_end = group_close(&out, i + 1).map_or(out.len(), |c| c + 1);
                        i = matching_end;
                    }
                    "group_left" | "group_right" if !out[matching_end..start].trim().is_empty() => {
                        out.insert_str(start, "ignoring () ");
                        i += "ignoring () ".len();
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Moves each modifier marker matcher out of its selector's braces to where Prometheus
/// prints the modifier.
fn restore_modifiers(mut out: String) -> String {
    let mut from = 0;
    while let Some((at, open)) = find_unquoted(&out, from, "__meshlens_") {
        let found = [(ANCHORED_MARKER, "anchored"), (SMOOTHED_MARKER, "smoothed")]
            .into_iter()
            .find(|(marker, _)| out[at..].starts_with(&format!("{marker}=\"\"")));
        let (Some((marker, word)), Some(open)) = (found, open) else {
            from = at + 1;
            continue;
        };
        let len = marker.len() + 3;
        // The matcher out, with the comma that joined it to another.
        let end = at + len;
        let rest = &out[end..];
        let (cut_from, cut_to) = if rest.trim_start().starts_with(',') {
            let comma = end + rest.find(',').unwrap_or(0);
            let next = out[comma + 1..]
                .find(|c: char| !c.is_whitespace())
                .map_or(out.len(), |n| comma + 1 + n);
            (at, next)
        } else if out[open + 1..at].trim_end().ends_with(',') {
            let comma = out[..at].rfind(',').unwrap_or(at);
            (comma, end)
        } else {
            (at, end)
        };
        out.replace_range(cut_from..cut_to, "");
        let Some(close) = group_close(&out, open) else {
            break;
        };
        // Braces left empty after a metric name go.
        let mut sel_end = close + 1;
        if out[open + 1..close].trim().is_empty() && open > 0 && is_ident(out.as_bytes()[open - 1])
        {
            out.replace_range(open..=close, "");
            sel_end = open;
        }
        let b = out.as_bytes();
        let at = if b.get(sel_end) == Some(&b'[') {
            group_close(&out, sel_end).map_or(out.len(), |c| c + 1)
        } else if out[sel_end..].starts_with(" @ ") {
            let k = sel_end + 3;
            if out[k..].starts_with("start()") {
                k + "start()".len()
            } else if out[k..].starts_with("end()") {
                k + "end()".len()
            } else {
                b[k..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+')))
                    .map_or(out.len(), |n| k + n)
            }
        } else {
            sel_end
        };
        out.insert_str(at, &format!(" {word}"));
        from = at;
    }
    out
}

/// The placeholder names of [`rewrite_for_printing`] back to the words they stand for.
fn restore_names(mut out: String) -> String {
    let mut from = 0;
    while let Some((at, _)) = find_unquoted(&out, from, NAME_MARKER) {
        let end = out.as_bytes()[at..]
            .iter()
            .position(|&c| !is_ident(c))
            .map_or(out.len(), |n| at + n);
        let word = out[at + NAME_MARKER.len()..end]
            .strip_suffix("__")
            .unwrap_or_default()
            .to_string();
        out.replace_range(at..end, &word);
        from = at + word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(q: &str) -> String {
        rewrite(q).unwrap().into_owned()
    }

    #[test]
    fn trim_operators_become_marked_comparisons() {
        assert_eq!(
            r("h </ 2"),
            "h < ignoring() group_left(__meshlens_trim_upper__) 2"
        );
        assert_eq!(
            r("h>/-Inf"),
            "h> ignoring() group_left(__meshlens_trim_lower__)-Inf"
        );
        assert_eq!(
            r("h >/ on (label) f"),
            "h > on (label) group_left(__meshlens_trim_lower__) f"
        );
        assert_eq!(
            r("h </ ignoring(a) group_left f"),
            "h < ignoring(a) group_left(__meshlens_trim_upper_grouped__) f"
        );
        assert_eq!(
            r("h </ on(a) GROUP_RIGHT(b) f"),
            "h < on(a) GROUP_RIGHT(__meshlens_trim_upper_grouped__, b) f"
        );
        assert_eq!(
            r("h </ on(a) group_left() f"),
            "h < on(a) group_left(__meshlens_trim_upper_grouped__) f"
        );
        assert_eq!(
            r("h </ bool 2"),
            "h < bool ignoring() group_left(__meshlens_trim_upper__) 2"
        );
        assert_eq!(
            r("histogram_count(a </ (b >/ 1))"),
            "histogram_count(a < ignoring() group_left(__meshlens_trim_upper__) (b > ignoring() group_left(__meshlens_trim_lower__) 1))"
        );
    }

    #[test]
    fn selector_modifiers_become_marker_matchers() {
        assert_eq!(
            r("increase(metric[1m] anchored)"),
            r#"increase(metric{__meshlens_anchored__=""}[1m] )"#
        );
        assert_eq!(
            r(r#"rate({__name__="x"}[1m] SMOOTHED)"#),
            r#"rate({__name__="x", __meshlens_smoothed__=""}[1m] )"#
        );
        assert_eq!(
            r(r#"rate(x{a="b"}[1m] offset 5m anchored)"#),
            r#"rate(x{a="b", __meshlens_anchored__=""}[1m] offset 5m )"#
        );
        assert_eq!(
            r("metric @ 100 smoothed + 0"),
            r#"metric{__meshlens_smoothed__=""} @ 100  + 0"#
        );
        assert_eq!(
            r("sum(rate(a[5m] anchored)) / rate(b[5m] smoothed)"),
            r#"sum(rate(a{__meshlens_anchored__=""}[5m] )) / rate(b{__meshlens_smoothed__=""}[5m] )"#
        );
        // As a label name in braces, a label value or in a comment the words are left alone.
        for q in [r#"x{anchored="anchored"}"#, "x # anchored"] {
            assert!(matches!(rewrite(q), Ok(Cow::Borrowed(_))), "{q}");
        }
        // The parser reads them as keywords only: as a metric name they go into the
        // braces, in a label list they are quoted.
        for (q, want) in [
            ("anchored", r#"{__name__="anchored"}"#),
            ("rate(Anchored[5m])", r#"rate({__name__="Anchored"}[5m])"#),
            ("x + smoothed", r#"x + {__name__="smoothed"}"#),
            (
                r#"x and smoothed{a="b"} anchored"#,
                r#"x and {__name__="smoothed", a="b", __meshlens_anchored__=""} "#,
            ),
            (
                "smoothed smoothed",
                r#"{__name__="smoothed", __meshlens_smoothed__=""} "#,
            ),
            (
                "sum by (anchored, a) (x) * on(smoothed) group_left(anchored) y",
                r#"sum by ("anchored", a) (x) * on("smoothed") group_left("anchored") y"#,
            ),
        ] {
            assert_eq!(r(q), want, "{q}");
        }
    }

    #[test]
    fn strings_comments_and_matchers_are_left_alone() {
        for q in [
            r#"x{a="</"} < 2"#,
            r#"label_replace(x, "a", ">/", "b", "c")"#,
            "x # a </ b\n",
            "x <= 2 >= 1",
            "x < /* no */ 2",
            "x{a=~'>/'}",
        ] {
            assert!(matches!(rewrite(q), Ok(Cow::Borrowed(_))), "{q}");
        }
    }

    #[test]
    fn unclosed_groups_before_multibyte_text_are_left_to_the_parser() {
        for q in ["x{Ω", "{é", "x{a=\"é\" smoothed", "h >/ on(a) group_left(é"] {
            let _ = rewrite(q);
            assert!(crate::parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn the_evaluator_finds_the_trim_again() {
        let parsed = |q: &str| promql_parser::parser::parse(&rewrite(q).unwrap()).unwrap();
        let Expr::Binary(b) = parsed("h </ 2") else {
            panic!()
        };
        assert_eq!(
            trim_of(&b),
            Some((Trim::Upper, VectorMatchCardinality::OneToOne))
        );
        let Expr::Binary(b) = parsed("h >/ on(a) group_left(c) f") else {
            panic!()
        };
        let (trim, card) = trim_of(&b).unwrap();
        assert_eq!(trim, Trim::Lower);
        let VectorMatchCardinality::ManyToOne(ls) = card else {
            panic!()
        };
        assert_eq!(ls.labels, vec!["c".to_string()]);
        let Expr::Binary(b) = parsed("h < 2") else {
            panic!()
        };
        assert_eq!(trim_of(&b), None);
        assert!(check(&parsed("h </ bool 2")).is_err());
        assert!(check(&parsed("h </ 2")).is_ok());
    }

    #[test]
    fn printed_queries_show_the_trim_operator() {
        for (q, printed) in [
            ("h </ 2", "h </ 2"),
            ("h >/ on(a) f", "h >/ on (a) f"),
            ("h >/ on(a) group_left(b) f", "h >/ on (a) group_left (b) f"),
        ] {
            let e = promql_parser::parser::parse(&rewrite(q).unwrap()).unwrap();
            assert_eq!(restore(&e.to_string()), printed);
        }
    }
}
