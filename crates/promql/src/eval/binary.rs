//! Binary operators: arithmetic, comparison (with and without `bool`), set operators, and
//! vector matching (`on`, `ignoring`, `group_left`, `group_right`), per Prometheus.

use std::collections::HashMap;
use std::sync::Arc;

use meshlens_model::{FloatHistogram, Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{positions, Evaluator};
use crate::error::PromqlError;
use crate::value::{Series, Val};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
    /// `</` (see [`crate::extended_syntax`]).
    TrimUpper,
    /// `>/`.
    TrimLower,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Whether the result is no longer what the metric name says (Prometheus's
    /// `changesMetricSchema`): arithmetic drops the name, comparisons and trims keep it.
    fn changes_metric(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2
        )
    }

    /// (value, keep) for `l op r`; comparisons return the left value and the outcome.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
            // Defined on a histogram and a float only (`apply_num`).
            Op::TrimUpper | Op::TrimLower => (l, false),
        }
    }
}

/// A step's value on either side: a float or a native histogram.
#[derive(Clone)]
enum Num {
    F(f64),
    H(Arc<FloatHistogram>),
}

fn at(s: &Series, i: usize) -> Option<Num> {
    match s.hist(i) {
        Some(h) => Some(Num::H(h.clone())),
        None => s.points[i].map(Num::F),
    }
}

fn present(s: &Series, i: usize) -> bool {
    s.points[i].is_some() || s.hist(i).is_some()
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Pow => "^",
            Op::Atan2 => "atan2",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::And => "and",
            Op::Or => "or",
            Op::Unless => "unless",
            Op::TrimUpper => "</",
            Op::TrimLower => ">/",
        }
    }

    /// `l op r` where either side may be a histogram: (value, keep) as [`Op::apply`], or
    /// `Err` with the warning when Prometheus defines no result for the pair. An info on a
    /// result (custom buckets reconciled) goes to `note`.
    fn apply_num(self, l: Num, r: Num, note: &dyn Fn(Note)) -> Result<(Num, bool), Note> {
        let incompatible = |l: &str, r: &str| {
            Note::Info(format!(
                "incompatible sample types encountered for binary operator {:?}: {l} {} {r}",
                self.symbol(),
                self.symbol()
            ))
        };
        match (l, r) {
            (Num::F(_), Num::F(_)) if matches!(self, Op::TrimUpper | Op::TrimLower) => {
                Err(incompatible("float", "float"))
            }
            (Num::F(a), Num::F(b)) => {
                let (v, keep) = self.apply(a, b);
                Ok((Num::F(v), keep))
            }
            (Num::H(a), Num::H(b)) => match self {
                Op::Add | Op::Sub => {
                    let mut h = (*a).clone();
                    let r = if self == Op::Add {
                        h.add_with_info(&b)
                    } else {
                        h.sub_with_info(&b)
                    };
                    if r.as_ref().is_ok_and(|i| i.custom_bounds_reconciled) {
                        note(Note::Info(format!(
                            "mismatched custom buckets were reconciled during {}",
                            if self == Op::Add {
                                "addition"
                            } else {
                                "subtraction"
                            }
                        )));
                    }
                    let info = r.map_err(|_| {
                        Note::Warn(format!(
                            "vector contains a mix of histograms with exponential and custom buckets schemas for binary operator {}",
                            self.symbol()
                        ))
                    })?;
                    // As in Prometheus, a counter reset hinted on one side and none on the
                    // other gives no result, only the warning.
                    if info.counter_reset_collision {
                        return Err(Note::Warn(format!(
                            "conflicting counter resets during histogram {}",
                            if self == Op::Add {
                                "addition"
                            } else {
                                "subtraction"
                            }
                        )));
                    }
                    if self == Op::Sub {
                        h.counter_reset_hint = meshlens_model::histogram::CounterResetHint::Gauge;
                    }
                    h.compact(0);
                    Ok((Num::H(Arc::new(h)), true))
                }
                Op::Eq => {
                    let eq = a.equals(&b);
                    Ok((Num::H(a), eq))
                }
                Op::Ne => {
                    let eq = a.equals(&b);
                    Ok((Num::H(a), !eq))
                }
                _ => Err(incompatible("histogram", "histogram")),
            },
            (Num::H(a), Num::F(b)) => match self {
                Op::Mul | Op::Div => {
                    let mut h = (*a).clone();
                    if self == Op::Mul {
                        h.mul(b)
                    } else {
                        h.div(b)
                    }
                    Ok((Num::H(Arc::new(h)), true))
                }
                Op::TrimUpper | Op::TrimLower => Ok((
                    Num::H(Arc::new(super::trim::trim(&a, b, self == Op::TrimUpper))),
                    true,
                )),
                _ => Err(incompatible("histogram", "float")),
            },
            (Num::F(a), Num::H(b)) => match self {
                Op::Mul => {
                    let mut h = (*b).clone();
                    h.mul(a);
                    Ok((Num::H(Arc::new(h)), true))
                }
                _ => Err(incompatible("float", "histogram")),
            },
        }
    }
}

/// An annotation a binary operation reports instead of a value.
enum Note {
    Info(String),
    Warn(String),
}

/// Output columns of a binary operation: floats, and histograms once one appears.
struct Columns {
    points: Vec<Option<f64>>,
    hists: Vec<Option<Arc<FloatHistogram>>>,
}

impl Columns {
    fn new(steps: usize) -> Self {
        Columns {
            points: vec![None; steps],
            hists: Vec::new(),
        }
    }

    fn set(&mut self, i: usize, v: Num) {
        match v {
            Num::F(f) => self.points[i] = Some(f),
            Num::H(h) => {
                if self.hists.is_empty() {
                    self.hists = vec![None; self.points.len()];
                }
                self.hists[i] = Some(h);
            }
        }
    }

    fn is_set(&self, i: usize) -> bool {
        self.points[i].is_some() || self.hists.get(i).is_some_and(Option::is_some)
    }

    fn any(&self) -> bool {
        (0..self.points.len()).any(|i| self.is_set(i))
    }
}

/// How series are matched: the labels of `on(...)` (include) or `ignoring(...)` (exclude).
struct Matching<'m> {
    on: bool,
    labels: &'m [String],
}

impl Matching<'_> {
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            Labels::from_pairs(
                l.iter()
                    .filter(|x| self.labels.contains(&x.name))
                    .map(|x| (x.name.clone(), x.value.clone())),
            )
        } else {
            Labels::from_pairs(
                l.iter()
                    // Only the name is left out: `__type__` and `__unit__` still tell series
                    // apart, as in Prometheus's matching signature.
                    .filter(|x| x.name != METRIC_NAME && !self.labels.contains(&x.name))
                    .map(|x| (x.name.clone(), x.value.clone())),
            )
        }
    }
}

impl<'a> Evaluator<'a> {
    /// A note about binary expression `b`, at its position when it is known (see
    /// [`positions::SourcePositions::binary`]).
    fn note(&self, n: Note, b: &BinaryExpr) {
        let at = |m: String| self.positioned(m, |p| p.binary(positions::node_key(b)));
        match n {
            Note::Info(m) => self.info(at(m)),
            Note::Warn(m) => self.warn(at(m)),
        }
    }

    pub fn eval_binary(&self, b: &BinaryExpr) -> Result<Val, PromqlError> {
        let trim = crate::extended_syntax::trim_of(b);
        let op = match &trim {
            Some((crate::extended_syntax::Trim::Upper, _)) => Op::TrimUpper,
            Some((crate::extended_syntax::Trim::Lower, _)) => Op::TrimLower,
            None => Op::parse(&b.op.to_string())
                .ok_or_else(|| PromqlError::exec(format!("unknown operator {}", b.op)))?,
        };
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Val::Scalar(_), Val::Scalar(_)) if trim.is_some() => Err(PromqlError::exec(format!(
                "operator {:?} not allowed for Scalar operations",
                op.symbol()
            ))),
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = op.apply(*a, *b);
                        if op.is_comparison() {
                            f64::from(u8::from(keep))
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(
                op,
                v,
                &s,
                false,
                return_bool,
                self.delayed_names,
                &|n| self.note(n, b),
            ))),
            (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(
                op,
                v,
                &s,
                true,
                return_bool,
                self.delayed_names,
                &|n| self.note(n, b),
            ))),
            (Val::Vector(l), Val::Vector(r)) => {
                let empty = Vec::new();
                let (on, labels) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(ls)) => (true, &ls.labels),
                    Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
                    None => (false, &empty),
                };
                let matching = Matching { on, labels };
                let card = match &trim {
                    Some((_, card)) => card,
                    None => b
                        .modifier
                        .as_ref()
                        .map(|m| &m.card)
                        .unwrap_or(&VectorMatchCardinality::OneToOne),
                };
                let fill = b
                    .modifier
                    .as_ref()
                    .map(|m| Fill {
                        many: m.fill_values.lhs,
                        one: m.fill_values.rhs,
                    })
                    .unwrap_or_default();
                match op {
                    Op::And | Op::Or | Op::Unless => Ok(Val::Vector(set_op(op, l, r, &matching))),
                    _ => Ok(Val::Vector(vector_vector(
                        op,
                        l,
                        r,
                        &matching,
                        card,
                        fill,
                        return_bool,
                        self.delayed_names,
                        self.steps(),
                        &|n| self.note(n, b),
                    )?)),
                }
            }
            _ => Err(PromqlError::exec(
                "binary operators are not defined on strings",
            )),
        }
    }
}

fn vector_scalar(
    op: Op,
    v: Vec<Series>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
    delayed: bool,
    note: &dyn Fn(Note),
) -> Vec<Series> {
    let drop_name = op.changes_metric() || return_bool;
    v.into_iter()
        .filter_map(|series| {
            let mut out = Columns::new(series.points.len());
            for (i, sv) in s.iter().enumerate() {
                let Some(x) = at(&series, i) else { continue };
                let (l, r) = if scalar_left {
                    (Num::F(*sv), x.clone())
                } else {
                    (x.clone(), Num::F(*sv))
                };
                let (value, keep) = match op.apply_num(l, r, note) {
                    Ok(r) => r,
                    Err(n) => {
                        note(n);
                        continue;
                    }
                };
                if op.is_comparison() {
                    if return_bool {
                        out.set(i, Num::F(f64::from(u8::from(keep))));
                    } else if keep {
                        out.set(i, x);
                    }
                } else {
                    out.set(i, value);
                }
            }
            out.any().then(|| {
                // A comparison that filters keeps the series' name and its mark.
                let (labels, drop_name) = if drop_name {
                    crate::value::name_dropped(series.labels, delayed)
                } else {
                    (series.labels, series.drop_name)
                };
                Series {
                    labels,
                    points: out.points,
                    hists: out.hists,
                    drop_name,
                }
            })
        })
        .collect()
}

fn set_op(op: Op, l: Vec<Series>, r: Vec<Series>, m: &Matching) -> Vec<Series> {
    let steps = l.first().or(r.first()).map_or(0, |s| s.points.len());
    let mut rsig: HashMap<Labels, Vec<bool>> = HashMap::new();
    for s in &r {
        let e = rsig
            .entry(m.signature(&s.labels))
            .or_insert_with(|| vec![false; steps]);
        for (i, e) in e.iter_mut().enumerate() {
            *e |= present(s, i);
        }
    }
    match op {
        Op::And | Op::Unless => l
            .into_iter()
            .filter_map(|mut s| {
                let other = rsig.get(&m.signature(&s.labels));
                for i in 0..s.points.len() {
                    let has = other.is_some_and(|v| v[i]);
                    if (op == Op::And) != has {
                        s.points[i] = None;
                        if let Some(h) = s.hists.get_mut(i) {
                            *h = None;
                        }
                    }
                }
                (0..s.points.len()).any(|i| present(&s, i)).then_some(s)
            })
            .collect(),
        _ => {
            let mut lsig: HashMap<Labels, Vec<bool>> = HashMap::new();
            for s in &l {
                let e = lsig
                    .entry(m.signature(&s.labels))
                    .or_insert_with(|| vec![false; steps]);
                for (i, e) in e.iter_mut().enumerate() {
                    *e |= present(s, i);
                }
            }
            let mut out = l;
            for mut s in r {
                if let Some(left) = lsig.get(&m.signature(&s.labels)) {
                    for (i, _) in left.iter().enumerate().filter(|(_, taken)| **taken) {
                        s.points[i] = None;
                        if let Some(h) = s.hists.get_mut(i) {
                            *h = None;
                        }
                    }
                }
                if (0..s.points.len()).any(|i| present(&s, i)) {
                    out.push(s);
                }
            }
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// The fill modifiers' values (`fill`, `fill_left`, `fill_right`) by the side they stand in
/// for. Prometheus evaluates `group_right` with the operands swapped, so `fill_left` always
/// fills the "many" side (the left one-to-one and with `group_left`) and `fill_right` the
/// "one" side.
#[derive(Clone, Copy, Default)]
struct Fill {
    many: Option<f64>,
    one: Option<f64>,
}

/// A filled "one" side in a result's per-one-series columns.
const FILLED_ONE: usize = usize::MAX;

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    m: &Matching,
    card: &VectorMatchCardinality,
    fill: Fill,
    return_bool: bool,
    delayed: bool,
    steps: usize,
    note: &dyn Fn(Note),
) -> Result<Vec<Series>, PromqlError> {
    // The "one" side is indexed by signature; the "many" side (or the left, one-to-one) drives.
    let (many, one, swapped, include): (&[Series], &[Series], bool, Vec<String>) = match card {
        VectorMatchCardinality::OneToMany(ls) => (&r, &l, true, ls.labels.clone()),
        VectorMatchCardinality::ManyToOne(ls) => (&l, &r, false, ls.labels.clone()),
        _ => (&l, &r, false, Vec::new()),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut one_index: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        one_index.entry(m.signature(&s.labels)).or_default().push(i);
    }
    // Duplicate series on the "one" side at the same step cannot be matched.
    for (sig, idx) in &one_index {
        if idx.len() < 2 {
            continue;
        }
        for step in 0..steps {
            if idx.iter().filter(|&&i| present(&one[i], step)).count() > 1 {
                let side = if swapped { "left" } else { "right" };
                return Err(PromqlError::exec(format!(
                    "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}];many-to-many matching not allowed: matching labels must be unique on one side",
                    idx.iter().map(|&i| braced(&one[i].labels)).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    // Arithmetic drops the name at once even with delayed name removal (as Prometheus's
    // `resultMetric`); a `bool` comparison then marks its results instead, and a filtering
    // comparison's results keep the left side's name unmarked (Prometheus's `DropName:
    // returnBool`).
    let drop_name = op.changes_metric() || (return_bool && !delayed);
    let mark = delayed && return_bool;
    let mut out: Vec<Series> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut matched_sig_steps: HashMap<Labels, Vec<bool>> = HashMap::new();
    let apply = |lv: Num, rv: Num| -> Option<Num> {
        let (value, keep) = match op.apply_num(lv, rv, note) {
            Ok(r) => r,
            Err(n) => {
                note(n);
                return None;
            }
        };
        if op.is_comparison() {
            if return_bool {
                Some(Num::F(f64::from(u8::from(keep))))
            } else {
                keep.then_some(value)
            }
        } else {
            Some(value)
        }
    };
    // Steps at which each signature has a "many" series, for filling that side.
    let mut many_present: HashMap<Labels, Vec<bool>> = HashMap::new();
    let no_candidates = Vec::new();
    for ms in many {
        let sig = m.signature(&ms.labels);
        if fill.many.is_some() {
            let seen = many_present
                .entry(sig.clone())
                .or_insert_with(|| vec![false; steps]);
            for (step, p) in seen.iter_mut().enumerate() {
                *p |= present(ms, step);
            }
        }
        let candidates = match one_index.get(&sig) {
            Some(c) => c,
            None if fill.one.is_some() => &no_candidates,
            None => continue,
        };
        // Per step, the one-side series that has a value there.
        let mut by_one: HashMap<usize, Columns> = HashMap::new();
        for step in 0..steps {
            let Some(mv) = at(ms, step) else { continue };
            let (oi, ov) = match candidates.iter().find(|&&i| present(&one[i], step)) {
                Some(&oi) => match at(&one[oi], step) {
                    Some(ov) => (oi, ov),
                    None => continue,
                },
                None => match fill.one {
                    Some(f) => (FILLED_ONE, Num::F(f)),
                    None => continue,
                },
            };
            if one_to_one {
                let seen = matched_sig_steps
                    .entry(sig.clone())
                    .or_insert_with(|| vec![false; steps]);
                if seen[step] {
                    return Err(PromqlError::exec(format!(
                        "found duplicate series for the match group {sig} on the left hand-side of the operation;many-to-many matching not allowed: matching labels must be unique on one side"
                    )));
                }
                seen[step] = true;
            }
            let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
            if let Some(v) = apply(lv, rv) {
                by_one
                    .entry(oi)
                    .or_insert_with(|| Columns::new(steps))
                    .set(step, v);
            }
        }
        for (oi, cols) in by_one {
            // A filled "one" side has no labels to join.
            let one_labels = match oi {
                FILLED_ONE => Labels::empty(),
                _ => one[oi].labels.clone(),
            };
            let labels = result_labels(&ms.labels, &one_labels, m, one_to_one, &include, drop_name);
            merge_columns(&mut out, &mut out_index, labels, cols, mark)?;
        }
    }
    // "One" series with no "many" series of their signature at a step, against the filled
    // "many" side: the result carries the signature's labels.
    if let Some(f) = fill.many {
        for os in one {
            let sig = m.signature(&os.labels);
            let seen = many_present.get(&sig);
            let mut cols = Columns::new(steps);
            for step in 0..steps {
                if seen.is_some_and(|p| p[step]) {
                    continue;
                }
                let Some(ov) = at(os, step) else { continue };
                let (lv, rv) = if swapped {
                    (ov, Num::F(f))
                } else {
                    (Num::F(f), ov)
                };
                if let Some(v) = apply(lv, rv) {
                    cols.set(step, v);
                }
            }
            if cols.any() {
                merge_columns(&mut out, &mut out_index, sig, cols, mark)?;
            }
        }
    }
    Ok(out)
}

/// Adds a result's columns to the output series of its labels; two values for one series
/// at one step fail.
fn merge_columns(
    out: &mut Vec<Series>,
    out_index: &mut HashMap<Labels, usize>,
    labels: Labels,
    cols: Columns,
    drop_name: bool,
) -> Result<(), PromqlError> {
    let steps = cols.points.len();
    match out_index.get(&labels) {
        Some(&j) => {
            for i in 0..steps {
                if !cols.is_set(i) {
                    continue;
                }
                if present(&out[j], i) {
                    return Err(PromqlError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                out[j].points[i] = cols.points[i];
                if let Some(h) = cols.hists.get(i).cloned().flatten() {
                    if out[j].hists.is_empty() {
                        out[j].hists = vec![None; steps];
                    }
                    out[j].hists[i] = Some(h);
                }
            }
        }
        None => {
            out_index.insert(labels.clone(), out.len());
            out.push(Series {
                labels,
                points: cols.points,
                hists: cols.hists,
                drop_name,
            });
        }
    }
    Ok(())
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    m: &Matching,
    one_to_one: bool,
    include: &[String],
    drop_name: bool,
) -> Labels {
    let mut b = many.builder();
    if drop_name {
        b.retain(|l| !meshlens_model::labels::describes_metric(&l.name));
    }
    if one_to_one {
        if m.on {
            b.retain(|l| m.labels.contains(&l.name));
        } else {
            b.retain(|l| !m.labels.contains(&l.name));
        }
    }
    for name in include {
        match one.get(name) {
            Some(v) => {
                b.set(name.clone(), v);
            }
            None => {
                b.del(name);
            }
        }
    }
    b.build()
}

/// Labels as Prometheus prints them in errors: `{__name__="x", a="b"}`.
fn braced(l: &Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}
