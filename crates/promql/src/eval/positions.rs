//! Where a function call or an aggregation and its arguments start in the query text, so
//! that annotations can name a position (`... (1:25)`) as Prometheus's do. The parser gives
//! the tree without positions; they are found again in the text: the k-th node named `f` in
//! the tree (visited in source order) is the k-th call of `f` in the text.

use std::collections::HashMap;

use promql_parser::parser::Expr;

use crate::duration_expr::{after_comment, after_quoted};

/// Call sites of one query: node address -> (offset of the name, offset of its `(`).
pub(crate) struct SourcePositions {
    text: String,
    sites: HashMap<usize, (usize, usize)>,
    /// Selector node address -> offset of its first character.
    selectors: HashMap<usize, usize>,
    /// The query's outermost binary expression, which starts where the text does.
    root_binary: Option<usize>,
    /// Binary expressions written as a function's argument (not in parentheses): binary
    /// node address -> (call node address, argument index).
    arg_binaries: HashMap<usize, (usize, usize)>,
}

/// A query's text and tree, their positions worked out on first use: most queries give no
/// annotation, and then the text is never scanned.
pub(crate) struct LazyPositions<'q> {
    text: Option<&'q str>,
    expr: &'q Expr,
    built: std::cell::OnceCell<Option<SourcePositions>>,
    stats_only: std::cell::OnceCell<std::collections::HashSet<usize>>,
}

impl<'q> LazyPositions<'q> {
    /// `text`: the query `expr` was parsed from (none for a tree without its text).
    pub fn new(text: Option<&'q str>, expr: &'q Expr) -> Self {
        LazyPositions {
            text,
            expr,
            built: std::cell::OnceCell::new(),
            stats_only: std::cell::OnceCell::new(),
        }
    }

    /// Whether the selector is read only for its histograms' count and sum (see
    /// [`super::selector::stats_only_selectors`]).
    pub fn stats_only(&self, vs: &promql_parser::parser::VectorSelector) -> bool {
        self.stats_only
            .get_or_init(|| super::selector::stats_only_selectors(self.expr))
            .contains(&node_key(vs))
    }

    pub fn get(&self) -> Option<&SourcePositions> {
        self.built
            .get_or_init(|| self.text.map(|t| SourcePositions::new(t, self.expr)))
            .as_ref()
    }
}

/// The address a call or aggregation node is known by.
pub(crate) fn node_key<T>(node: &T) -> usize {
    node as *const T as usize
}

impl SourcePositions {
    pub fn new(text: &str, expr: &Expr) -> Self {
        let mut nodes: Vec<(String, usize)> = Vec::new();
        let mut selector_nodes: Vec<(String, usize)> = Vec::new();
        in_source_order(expr, &mut nodes, &mut selector_nodes);
        let mut seen: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (name, at, open) in call_sites(text) {
            seen.entry(name).or_default().push((at, open));
        }
        let mut used: HashMap<String, usize> = HashMap::new();
        let mut sites = HashMap::new();
        for (name, key) in nodes {
            let site = used.get(&name).copied().unwrap_or(0);
            if let Some(site) = seen.get(&name).and_then(|v| v.get(site)) {
                sites.insert(key, *site);
            }
            *used.entry(name).or_insert(0) += 1;
        }
        let mut named: HashMap<String, Vec<usize>> = HashMap::new();
        for (name, at) in selector_sites(text) {
            named.entry(name).or_default().push(at);
        }
        let mut used: HashMap<String, usize> = HashMap::new();
        let mut selectors = HashMap::new();
        for (name, key) in selector_nodes {
            let k = used.entry(name.clone()).or_insert(0);
            if let Some(&at) = named.get(&name).and_then(|v| v.get(*k)) {
                selectors.insert(key, at);
            }
            *k += 1;
        }
        SourcePositions {
            text: text.to_string(),
            sites,
            selectors,
            root_binary: match expr {
                Expr::Binary(b) => Some(node_key(b)),
                _ => None,
            },
            arg_binaries: arg_binaries(expr),
        }
    }

    /// `line:column` (both from 1) of the call's name.
    pub fn call(&self, node: usize) -> Option<String> {
        self.sites.get(&node).map(|&(at, _)| self.line_col(at))
    }

    /// `line:column` of the call's argument `i` (0-based; an aggregation's parameter is its
    /// first).
    pub fn arg(&self, node: usize, i: usize) -> Option<String> {
        let &(_, open) = self.sites.get(&node)?;
        arg_start(&self.text, open, i).map(|at| self.line_col(at))
    }

    /// The query text from the start of argument `i` of a call or aggregation on.
    pub fn arg_text(&self, node: usize, i: usize) -> Option<&str> {
        let &(_, open) = self.sites.get(&node)?;
        arg_start(&self.text, open, i).map(|at| &self.text[at..])
    }

    /// `line:column` of a series selector (an instant selector, or a range selector's).
    pub fn selector(&self, node: usize) -> Option<String> {
        self.selectors.get(&node).map(|&at| self.line_col(at))
    }

    /// `line:column` of a binary expression: known for the query's outermost one and for
    /// one that is a function's argument.
    pub fn binary(&self, node: usize) -> Option<String> {
        if let Some(&(call, i)) = self.arg_binaries.get(&node) {
            return self.arg(call, i);
        }
        if self.root_binary != Some(node) {
            return None;
        }
        let start = self.text.len() - self.text.trim_start().len();
        Some(self.line_col(start))
    }

    fn line_col(&self, at: usize) -> String {
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let col = match before.rfind('\n') {
            Some(nl) => before[nl + 1..].chars().count() + 1,
            None => before.chars().count() + 1,
        };
        format!("{line}:{col}")
    }
}

/// The binary expressions that are a function call's argument as written (no parentheses
/// around them), each with its call and argument index.
fn arg_binaries(e: &Expr) -> HashMap<usize, (usize, usize)> {
    fn walk(e: &Expr, out: &mut HashMap<usize, (usize, usize)>) {
        match e {
            Expr::Call(c) => {
                for (i, a) in c.args.args.iter().enumerate() {
                    if let Expr::Binary(b) = a.as_ref() {
                        out.insert(node_key(b), (node_key(c), i));
                    }
                    walk(a, out);
                }
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out);
                }
                walk(&a.expr, out);
            }
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(e, &mut out);
    out
}

/// Calls and aggregations, each with its node's address, parents before children and
/// siblings left to right (the order their names appear in the text); the series
/// selectors likewise in `selectors`, by metric name (empty for none).
fn in_source_order(e: &Expr, out: &mut Vec<(String, usize)>, selectors: &mut Vec<(String, usize)>) {
    let mut walk = |e: &Expr| in_source_order(e, out, selectors);
    match e {
        Expr::Call(c) => {
            out.push((c.func.name.to_string(), node_key(c)));
            for a in &c.args.args {
                in_source_order(a, out, selectors);
            }
        }
        Expr::Aggregate(a) => {
            out.push((a.op.to_string().to_ascii_lowercase(), node_key(a)));
            if let Some(p) = &a.param {
                in_source_order(p, out, selectors);
            }
            in_source_order(&a.expr, out, selectors);
        }
        Expr::Binary(b) => {
            walk(&b.lhs);
            in_source_order(&b.rhs, out, selectors);
        }
        Expr::Paren(p) => walk(&p.expr),
        Expr::Unary(u) => walk(&u.expr),
        Expr::Subquery(s) => walk(&s.expr),
        Expr::VectorSelector(vs) => selectors.push((selector_name(vs), node_key(vs))),
        Expr::MatrixSelector(ms) => selectors.push((selector_name(&ms.vs), node_key(&ms.vs))),
        _ => {}
    }
}

/// The metric name a selector was written with: its name, or the keyword names `anchored`
/// and `smoothed` that `extended_syntax` moves into the braces; empty for none.
fn selector_name(vs: &promql_parser::parser::VectorSelector) -> String {
    if let Some(name) = &vs.name {
        return name.clone();
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| {
            m.name == "__name__"
                && matches!(m.op, promql_parser::label::MatchOp::Equal)
                && (m.value.eq_ignore_ascii_case("anchored")
                    || m.value.eq_ignore_ascii_case("smoothed"))
        })
        .map(|m| m.value.clone())
        .unwrap_or_default()
}

/// Keywords followed by a list of label names.
pub(crate) const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Binary operators and modifiers written as words.
pub(crate) const BINARY_WORDS: [&str; 5] = ["bool", "and", "or", "unless", "atan2"];

/// Words beside [`BINARY_WORDS`] that name no series where a selector's name could stand.
const NOT_SELECTORS: [&str; 3] = ["offset", "inf", "nan"];

/// Every series selector in the text, outside strings and comments: (metric name, or empty
/// for a selector with braces only, offset of its first character). Words that call a
/// function, keywords, grouping and matching label lists, range brackets and a selector's
/// own modifiers (`offset`, `@`, `anchored`, `smoothed`) are no selectors.
fn selector_sites(text: &str) -> Vec<(String, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'#' => i = after_comment(b, i),
            b'{' => {
                out.push((String::new(), i));
                i = selector_tail(text, skip_group(b, i));
            }
            // A subquery's range, and the modifiers after it.
            b'[' => i = selector_tail(text, i),
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                i = token_end(b, i);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                i = ident_end(b, i);
                let word = text[start..i].to_ascii_lowercase();
                let next = skip_space(b, i);
                if GROUPING.contains(&word.as_str()) {
                    // Its label list holds no selectors.
                    if b.get(next) == Some(&b'(') {
                        i = skip_group(b, next);
                    }
                    continue;
                }
                let next_word = &text[next..ident_end(b, next)];
                let grouped_aggregation = GROUPING[..2]
                    .iter()
                    .any(|g| next_word.eq_ignore_ascii_case(g));
                if BINARY_WORDS.contains(&word.as_str())
                    || NOT_SELECTORS.contains(&word.as_str())
                    || b.get(next) == Some(&b'(')
                    || grouped_aggregation
                {
                    continue;
                }
                out.push((text[start..i].to_string(), start));
                if b.get(next) == Some(&b'{') {
                    i = skip_group(b, next);
                }
                i = selector_tail(text, i);
            }
            _ => i += 1,
        }
    }
    out
}

/// Past what may follow a selector's name and braces (or a subquery's expression): its
/// range brackets, `offset` (signed) durations, `@` times and the `anchored` / `smoothed`
/// modifiers, in any order.
fn selector_tail(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    loop {
        let j = skip_space(b, i);
        if b.get(j) == Some(&b'[') {
            i = skip_group(b, j);
            continue;
        }
        let (word_end, at) = if b.get(j) == Some(&b'@') {
            (j + 1, true)
        } else {
            (ident_end(b, j), false)
        };
        let word = &text[j..word_end];
        if at || word.eq_ignore_ascii_case("offset") {
            // The operand: a signed number or duration, `start()` / `end()` or a
            // parenthesised duration expression.
            let mut k = skip_space(b, word_end);
            if matches!(b.get(k), Some(b'-' | b'+')) {
                k = skip_space(b, k + 1);
            }
            k = match b.get(k) {
                Some(b'(') => skip_group(b, k),
                Some(_) => {
                    let end = token_end(b, k);
                    let open = skip_space(b, end);
                    if end > k && b.get(open) == Some(&b'(') {
                        skip_group(b, open)
                    } else {
                        end
                    }
                }
                None => k,
            };
            i = k;
            continue;
        }
        if word.eq_ignore_ascii_case("anchored") || word.eq_ignore_ascii_case("smoothed") {
            i = word_end;
            continue;
        }
        return i;
    }
}

/// Past a number, duration or name starting at `i`.
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'_' | b':')) {
        i += 1;
    }
    i
}

/// Offsets of argument `arg` of every call of `name` in `text`.
pub(crate) fn call_args(text: &str, name: &str, arg: usize) -> Vec<usize> {
    call_sites(text)
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .filter_map(|(_, _, open)| arg_start(text, open, arg))
        .collect()
}

/// Offset just past the bracketed group that opens at `at`.
pub(crate) fn group_end(text: &str, at: usize) -> usize {
    skip_group(text.as_bytes(), at)
}

/// Offset of the bracket that closes the group opening at `at`; `None` when the text ends
/// first (an unclosed group, which the parser refuses anyway).
pub(crate) fn group_close(text: &str, at: usize) -> Option<usize> {
    closing_bracket(text.as_bytes(), at)
}

/// Every `name(` in the text (and `name by (...) (` / `name without (...) (`), outside
/// strings, label matchers and comments: (name, offset of the name, offset of the `(`).
fn call_sites(text: &str) -> Vec<(String, usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'#' => i = after_comment(b, i),
            b'{' => i = skip_group(b, i),
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                i = ident_end(b, i);
                let name = &text[start..i];
                let mut j = skip_space(b, i);
                let word_end = ident_end(b, j);
                if matches!(&text[j..word_end], "by" | "without") {
                    j = skip_space(b, word_end);
                    if b.get(j) == Some(&b'(') {
                        j = skip_space(b, skip_group(b, j));
                    }
                }
                if b.get(j) == Some(&b'(') {
                    out.push((name.to_string(), start, j));
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Offset of the first byte of argument `n` of the call whose `(` is at `open`.
fn arg_start(text: &str, open: usize, n: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut arg = 0;
    let mut i = skip_space(b, open + 1);
    if n == 0 {
        return (i < b.len() && b[i] != b')').then_some(i);
    }
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = after_quoted(b, i),
            b'(' | b'[' | b'{' => i = skip_group(b, i),
            b')' => return None,
            b',' => {
                arg += 1;
                i = skip_space(b, i + 1);
                if arg == n {
                    return (i < b.len()).then_some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    i
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Past the bracketed group opening at `i`, nested groups and strings included.
fn skip_group(b: &[u8], i: usize) -> usize {
    closing_bracket(b, i).map_or(b.len(), |j| j + 1)
}

/// The closing bracket of the group opening at `i`, nested groups and strings included.
fn closing_bracket(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' | b'\'' | b'`' => {
                j = after_quoted(b, j);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of argument `arg` of the query's outermost call.
    fn arg(q: &str, arg: usize) -> Option<String> {
        let e = promql_parser::parser::parse(q).unwrap();
        SourcePositions::new(q, &e).arg(first_call(&e), arg)
    }

    fn first_call(e: &Expr) -> usize {
        match e {
            Expr::Call(c) => node_key(c),
            Expr::Aggregate(a) => node_key(a),
            Expr::Paren(p) => first_call(&p.expr),
            _ => panic!("no call"),
        }
    }

    #[test]
    fn arguments_are_found_in_the_text() {
        let q = "histogram_quantile(0.8, series)";
        assert_eq!(arg(q, 1).as_deref(), Some("1:25"));
        assert_eq!(arg(q, 0).as_deref(), Some("1:20"));
        let e = promql_parser::parser::parse(q).unwrap();
        let p = SourcePositions::new(q, &e);
        assert_eq!(p.call(first_call(&e)).as_deref(), Some("1:1"));
        assert_eq!(
            arg("quantile without(point)(NaN, data)", 0).as_deref(),
            Some("1:25")
        );
        assert_eq!(
            arg("sum by (job) (\n  rate(x{a=\"rate(\"}[5m]))", 0).as_deref(),
            Some("2:3")
        );
        assert_eq!(arg("topk(3, x)", 1).as_deref(), Some("1:9"));
        assert_eq!(arg("sum(x) by (job)", 0).as_deref(), Some("1:5"));
    }

    #[test]
    fn the_kth_node_is_the_kth_call() {
        let q = "rate(a[1m]) + rate( b[1m])";
        let e = promql_parser::parser::parse(q).unwrap();
        let p = SourcePositions::new(q, &e);
        let Expr::Binary(b) = &e else { panic!() };
        assert_eq!(p.arg(first_call(&b.lhs), 0).as_deref(), Some("1:6"));
        assert_eq!(p.arg(first_call(&b.rhs), 0).as_deref(), Some("1:21"));
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    /// Positions of the query's selectors, in source order, found from the text as written
    /// (the tree parsed from its rewrite, as the engine does).
    fn selectors(q: &str) -> Vec<Option<String>> {
        let e = crate::parse(q).unwrap();
        let p = SourcePositions::new(q, &e);
        let (mut calls, mut nodes) = (Vec::new(), Vec::new());
        in_source_order(&e, &mut calls, &mut nodes);
        nodes.iter().map(|&(_, key)| p.selector(key)).collect()
    }

    fn at(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn selectors_are_found_in_the_text() {
        assert_eq!(selectors("sort(mixed smoothed)"), at(&["1:6"]));
        assert_eq!(selectors("x smoothed + x"), at(&["1:1", "1:14"]));
        assert_eq!(selectors("x and anchored"), at(&["1:1", "1:7"]));
        assert_eq!(selectors("smoothed smoothed"), at(&["1:1"]));
        assert_eq!(
            selectors("rate(x[5m] offset -1m anchored) / smoothed offset 1m smoothed"),
            at(&["1:6", "1:35"])
        );
        assert_eq!(
            selectors("x @ start() smoothed + on(x) group_left(y) y"),
            at(&["1:1", "1:44"])
        );
        assert_eq!(
            selectors("sum by (job) (job) + sum(job) without (job) - count_values(\"job\", job)"),
            at(&["1:15", "1:26", "1:67"])
        );
        assert_eq!(
            selectors("{__name__=\"é\"} smoothed * on() b # Ω\n + 2 * max_over_time(c{a=\"}ü\"}[1m:] offset 1m)"),
            at(&["1:1", "1:32", "2:22"])
        );
        assert_eq!(
            selectors("max_over_time((x offset 1m)[5m:1m] offset 2m) > bool inf"),
            at(&["1:16"])
        );
    }
}
