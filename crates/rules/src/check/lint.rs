//! Lints promtool lacks, run by `meshlens check rules` and printed as warnings:
//!
//! - an alert without `for` fires on the first evaluation that matches, so one bad scrape
//!   pages someone;
//! - `rate()`, `irate()` or `increase()` over a window shorter than 4× the scrape interval
//!   sees too few samples (one missed scrape leaves fewer than two, and the result vanishes);
//! - a template that reads `$labels.X` where the expression's result cannot carry `X`
//!   (`sum by (a)` keeps only `a`; `without (X)` drops it): the annotation renders empty.
//!
//! The label analysis is conservative: it warns only when the label is certainly absent.

use std::collections::BTreeSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};

/// The labels an expression's result series may carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelSet {
    /// Exactly these names at most (an aggregation `by`, `vector()`, a scalar).
    Known(BTreeSet<String>),
    /// Any label except these (a selector, minus what `without` or `ignoring` removed).
    AnyExcept(BTreeSet<String>),
}

impl LabelSet {
    fn none() -> LabelSet {
        LabelSet::Known(BTreeSet::new())
    }

    fn any() -> LabelSet {
        LabelSet::AnyExcept(BTreeSet::new())
    }

    /// Whether the result can never carry `name`.
    pub fn certainly_lacks(&self, name: &str) -> bool {
        match self {
            LabelSet::Known(k) => !k.contains(name),
            LabelSet::AnyExcept(r) => r.contains(name),
        }
    }

    fn with(mut self, name: &str) -> LabelSet {
        match &mut self {
            LabelSet::Known(k) => {
                k.insert(name.to_string());
            }
            LabelSet::AnyExcept(r) => {
                r.remove(name);
            }
        }
        self
    }

    fn without(self, names: &[String]) -> LabelSet {
        match self {
            LabelSet::Known(mut k) => {
                for n in names {
                    k.remove(n);
                }
                LabelSet::Known(k)
            }
            LabelSet::AnyExcept(mut r) => {
                r.extend(names.iter().cloned());
                LabelSet::AnyExcept(r)
            }
        }
    }

    fn only(self, names: &[String]) -> LabelSet {
        let keep = names
            .iter()
            .filter(|n| !self.certainly_lacks(n))
            .cloned()
            .collect();
        LabelSet::Known(keep)
    }

    fn union(self, other: LabelSet) -> LabelSet {
        match (self, other) {
            (LabelSet::Known(a), LabelSet::Known(b)) => LabelSet::Known(&a | &b),
            (LabelSet::Known(k), LabelSet::AnyExcept(r))
            | (LabelSet::AnyExcept(r), LabelSet::Known(k)) => LabelSet::AnyExcept(&r - &k),
            (LabelSet::AnyExcept(a), LabelSet::AnyExcept(b)) => LabelSet::AnyExcept(&a & &b),
        }
    }
}

/// The labels `expr`'s result may carry.
pub fn output_labels(expr: &Expr) -> LabelSet {
    match expr {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => LabelSet::any(),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => LabelSet::none(),
        Expr::Paren(p) => output_labels(&p.expr),
        Expr::Unary(u) => output_labels(&u.expr),
        Expr::Subquery(s) => output_labels(&s.expr),
        Expr::Extension(_) => LabelSet::any(),
        Expr::Aggregate(a) => {
            let inner = output_labels(&a.expr);
            let op = a.op.to_string().to_ascii_lowercase();
            // These select series, they do not merge them: labels pass through.
            if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                return inner;
            }
            let grouped = match &a.modifier {
                Some(LabelModifier::Include(l)) => inner.only(&l.labels),
                Some(LabelModifier::Exclude(l)) => inner.without(&l.labels),
                None => LabelSet::none(),
            };
            match (op.as_str(), a.param.as_deref()) {
                ("count_values", Some(Expr::StringLiteral(s))) => grouped.with(&s.val),
                _ => grouped,
            }
        }
        Expr::Binary(b) => binary_labels(b),
        Expr::Call(c) => {
            if c.func.return_type == ValueType::Scalar || c.func.return_type == ValueType::String {
                return LabelSet::none();
            }
            let args = &c.args.args;
            let string_arg = |i: usize| match args.get(i).map(|a| a.as_ref()) {
                Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
                _ => None,
            };
            let first_series = args
                .iter()
                .find(|a| matches!(a.value_type(), ValueType::Vector | ValueType::Matrix))
                .map(|a| output_labels(a))
                .unwrap_or_else(LabelSet::none);
            match c.func.name {
                "vector" => LabelSet::none(),
                "label_replace" | "label_join" => match string_arg(1) {
                    Some(dst) => first_series.with(&dst),
                    None => first_series,
                },
                "absent" | "absent_over_time" => absent_labels(args.first().map(|a| a.as_ref())),
                "histogram_quantile" => first_series.without(&["le".to_string()]),
                _ => first_series,
            }
        }
    }
}

/// `absent()` returns the labels of the selector's equality matchers.
fn absent_labels(arg: Option<&Expr>) -> LabelSet {
    let vs = match arg {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return LabelSet::none(),
    };
    let names = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| matches!(m.op, MatchOp::Equal) && m.name != "__name__")
        .map(|m| m.name.clone())
        .collect();
    LabelSet::Known(names)
}

fn binary_labels(b: &promql_parser::parser::BinaryExpr) -> LabelSet {
    let l_vec = b.lhs.value_type() != ValueType::Scalar;
    let r_vec = b.rhs.value_type() != ValueType::Scalar;
    let lhs = output_labels(&b.lhs);
    match (l_vec, r_vec) {
        (false, false) => return LabelSet::none(),
        (true, false) => return lhs,
        (false, true) => return output_labels(&b.rhs),
        (true, true) => {}
    }
    let rhs = output_labels(&b.rhs);
    let op = b.op.to_string().to_ascii_lowercase();
    match op.as_str() {
        "and" | "unless" => return lhs,
        "or" => return lhs.union(rhs),
        _ => {}
    }
    let Some(m) = &b.modifier else {
        return lhs;
    };
    match &m.card {
        VectorMatchCardinality::ManyToOne(extra) => extra.labels.iter().fold(lhs, |s, n| s.with(n)),
        VectorMatchCardinality::OneToMany(extra) => extra.labels.iter().fold(rhs, |s, n| s.with(n)),
        _ => match &m.matching {
            Some(LabelModifier::Include(on)) => lhs.only(&on.labels),
            Some(LabelModifier::Exclude(ign)) => lhs.without(&ign.labels),
            None => lhs,
        },
    }
}

/// Each `rate`/`irate`/`increase` whose range is shorter than `min_ms`: (function, range).
pub fn short_rate_windows(expr: &Expr, min_ms: i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    walk(expr, &mut |e| {
        if let Expr::Call(c) = e {
            if matches!(c.func.name, "rate" | "irate" | "increase") {
                if let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| a.as_ref()) {
                    let range = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
                    if range < min_ms {
                        out.push((c.func.name.to_string(), range));
                    }
                }
            }
        }
    });
    out
}

fn walk(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(expr);
    match expr {
        Expr::Aggregate(a) => {
            walk(&a.expr, f);
            if let Some(p) = &a.param {
                walk(p, f);
            }
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, f)),
        _ => {}
    }
}

/// The label names a template reads from the alert's series: `$labels.X` and
/// `index $labels "X"` inside `{{ … }}` actions. (`.Labels` is left out: inside `range` or
/// `with` the dot is something else, such as a `query` result.)
pub fn template_label_refs(text: &str) -> BTreeSet<String> {
    const VAR: &str = "$labels";
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}").unwrap_or(after.len());
        let action = &after[..close];
        // `$labels.X`
        for (i, _) in action.match_indices(VAR) {
            if let Some(field) = action[i + VAR.len()..].strip_prefix('.') {
                let name = ident(field);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        // `index $labels "X"`
        for (i, _) in action.match_indices("index") {
            let args = action[i + "index".len()..].trim_start();
            if let Some(q) = args.strip_prefix(VAR).map(str::trim_start) {
                if let Some(name) = q.strip_prefix('"').and_then(|q| q.split('"').next()) {
                    out.insert(name.to_string());
                }
            }
        }
        rest = &after[close..];
    }
    out
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
