//! Aggregation operators over groups of series, per step.

use std::collections::HashMap;

use meshlens_model::{Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::fold::{FoldOp, GroupFold};
use super::stream::{pins_name, Source};
use super::{unwrap_parens, Evaluator};
use crate::error::PromqlError;
use crate::functions::native::{self, WindowValue};
use crate::functions::rollup::RangeFn;
use crate::functions::{format_float, quantile};
use crate::value::{series_slot, Series, Val};

/// Kahan-compensated running sum (Prometheus sums this way).
#[derive(Clone, Copy, Default)]
pub(crate) struct Kahan {
    pub sum: f64,
    c: f64,
}

impl Kahan {
    pub fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.c += (self.sum - t) + v;
        } else {
            self.c += (v - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// Mean that stays finite when the sum of finite inputs would overflow.
pub(crate) fn mean(values: &[f64]) -> f64 {
    let mut k = Kahan::default();
    for v in values {
        k.add(*v);
    }
    let s = k.value();
    if s.is_finite() || values.iter().any(|v| !v.is_finite()) {
        return s / values.len() as f64;
    }
    let mut m = 0.0;
    for (i, v) in values.iter().enumerate() {
        m += v / (i + 1) as f64 - m / (i + 1) as f64;
    }
    m
}

pub(crate) fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

/// The series of `input` with the steps `selected` marks (floats and histograms), those with
/// none left out.
fn keep_selected(input: &[Series], selected: &[Vec<bool>]) -> Vec<Series> {
    input
        .iter()
        .zip(selected)
        .filter(|(_, keep)| keep.iter().any(|k| *k))
        .map(|(s, keep)| Series {
            labels: s.labels.clone(),
            drop_name: s.drop_name,
            points: s
                .points
                .iter()
                .zip(keep)
                .map(|(p, k)| p.filter(|_| *k))
                .collect(),
            hists: match s.has_hists() {
                true => (0..keep.len())
                    .map(|i| s.hist(i).filter(|_| keep[i]).cloned())
                    .collect(),
                false => Vec::new(),
            },
        })
        .collect()
}

/// Where a series falls in [0, 1) for `limit_ratio`: Prometheus's label-set hash (xxHash64
/// of each name and value followed by 0xff) over the largest u64, so that both pick the
/// same series.
fn sample_offset(labels: &Labels) -> f64 {
    let mut bytes = Vec::with_capacity(256);
    for l in labels {
        bytes.extend_from_slice(l.name.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(l.value.as_bytes());
        bytes.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&bytes, 0) as f64 / u64::MAX as f64
}

/// A positive ratio keeps the series below it, a negative one those at or above 1 + it,
/// so that `limit_ratio(r, v)` and `limit_ratio(-(1 - r), v)` split `v` between them.
fn within_ratio(ratio: f64, offset: f64) -> bool {
    if ratio >= 0.0 {
        offset < ratio
    } else {
        offset >= 1.0 + ratio
    }
}

fn invalid_ratio(got: f64, to: f64) -> String {
    format!(
        "ratio value should be between -1 and 1, got {}, capping to {}",
        format_float(got),
        format_float(to)
    )
}

pub(crate) fn group_key(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(ls)) => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| ls.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
        Some(LabelModifier::Exclude(ls)) => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| l.name != METRIC_NAME && !ls.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
        None => Labels::empty(),
    }
}

impl<'a> Evaluator<'a> {
    pub fn eval_aggregate(&self, a: &AggregateExpr) -> Result<Val, PromqlError> {
        let op = a.op.to_string().to_ascii_lowercase();
        let mut collected = None;
        if let (Some(fold), None) = (FoldOp::parse(&op), &a.param) {
            if let Some(source) = self.foldable_source(&a.expr)? {
                // Folding keeps floats only; histograms take the general path below.
                if !source.has_histograms() {
                    return self.fold_aggregate(fold, &a.modifier, source);
                }
                collected = Some(super::merge_same_labels(self.collect(source)?)?);
            }
        }
        let param = match &a.param {
            Some(p) => Some(self.eval(p)?),
            None => None,
        };
        let input = match collected {
            Some(input) => input,
            None => match self.eval(&a.expr)? {
                Val::Vector(input) => input,
                _ => return Err(PromqlError::exec(format!("{op} expects an instant vector"))),
            },
        };
        let steps = self.steps();
        let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for (i, s) in input.iter().enumerate() {
            let key = group_key(&s.labels, &a.modifier);
            match index.get(&key) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![i]));
                }
            }
        }
        let scalar_param = |name: &str| -> Result<Vec<f64>, PromqlError> {
            match &param {
                Some(Val::Scalar(v)) => Ok(v.clone()),
                _ => Err(PromqlError::exec(format!(
                    "{name} expects a scalar parameter"
                ))),
            }
        };
        let mut out = Vec::new();
        match op.as_str() {
            "topk" | "bottomk" | "limitk" => {
                let k = scalar_param(&op)?;
                for step_k in &k {
                    if step_k.is_nan() {
                        return Err(PromqlError::exec("Parameter value is NaN"));
                    }
                }
                if op != "limitk" && input.iter().any(Series::has_hists) {
                    self.info(format!("ignored histogram in {op} aggregation"));
                }
                let mut selected = vec![vec![false; steps]; input.len()];
                for (_, members) in &groups {
                    for step in 0..steps {
                        let kk = k[step];
                        if kk < 1.0 {
                            continue;
                        }
                        let kk = if kk > members.len() as f64 {
                            members.len()
                        } else {
                            kk as usize
                        };
                        // limitk keeps histograms too; topk and bottomk rank floats only.
                        let mut present: Vec<(usize, f64)> = members
                            .iter()
                            .filter_map(|&i| match input[i].points[step] {
                                Some(v) => Some((i, v)),
                                None if op == "limitk" => input[i].hist(step).map(|_| (i, 0.0)),
                                None => None,
                            })
                            .collect();
                        match op.as_str() {
                            "topk" => present.sort_by(|a, b| cmp_desc_nan_last(a.1, b.1)),
                            "bottomk" => present.sort_by(|a, b| cmp_asc_nan_last(a.1, b.1)),
                            _ => {}
                        }
                        for (i, _) in present.into_iter().take(kk) {
                            selected[i][step] = true;
                        }
                    }
                }
                let mut chosen = keep_selected(&input, &selected);
                if steps == 1 && op != "limitk" {
                    let desc = op == "topk";
                    // Within each group, the instant result is ordered by value.
                    let gkey: Vec<Labels> = chosen
                        .iter()
                        .map(|s| group_key(&s.labels, &a.modifier))
                        .collect();
                    let mut order: Vec<usize> = (0..chosen.len()).collect();
                    order.sort_by(|&x, &y| {
                        let gx = index.get(&gkey[x]).copied().unwrap_or(0);
                        let gy = index.get(&gkey[y]).copied().unwrap_or(0);
                        gx.cmp(&gy).then_with(|| {
                            let (vx, vy) = (
                                chosen[x].points[0].unwrap_or(f64::NAN),
                                chosen[y].points[0].unwrap_or(f64::NAN),
                            );
                            if desc {
                                cmp_desc_nan_last(vx, vy)
                            } else {
                                cmp_asc_nan_last(vx, vy)
                            }
                        })
                    });
                    let mut reordered = Vec::with_capacity(chosen.len());
                    let mut taken: Vec<Option<Series>> = chosen.drain(..).map(Some).collect();
                    for i in order {
                        if let Some(s) = taken[i].take() {
                            reordered.push(s);
                        }
                    }
                    chosen = reordered;
                }
                return Ok(Val::Vector(chosen));
            }
            "limit_ratio" => {
                let ratios = scalar_param(&op)?;
                if ratios.iter().all(|r| *r == 0.0) {
                    return Ok(Val::Vector(Vec::new()));
                }
                if ratios.iter().any(|r| r.is_nan()) {
                    return Err(PromqlError::exec("Ratio value is NaN"));
                }
                let (min, max) = ratios
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                        (lo.min(*r), hi.max(*r))
                    });
                if max > 1.0 {
                    self.warn_at(invalid_ratio(max, 1.0), 0);
                }
                if min < -1.0 {
                    self.warn_at(invalid_ratio(min, -1.0), 0);
                }
                let mut selected = vec![vec![false; steps]; input.len()];
                for (i, s) in input.iter().enumerate() {
                    let offset = sample_offset(&s.labels);
                    for (step, r) in ratios.iter().enumerate() {
                        let present = s.points[step].is_some() || s.hist(step).is_some();
                        selected[i][step] = present && within_ratio(r.clamp(-1.0, 1.0), offset);
                    }
                }
                return Ok(Val::Vector(keep_selected(&input, &selected)));
            }
            "count_values" => {
                let label = match &param {
                    Some(Val::Str(s)) => s.clone(),
                    _ => return Err(PromqlError::exec("count_values expects a string parameter")),
                };
                if !meshlens_model::labels::is_valid_label_name(&label) {
                    // Named as Prometheus prints the literal (Go's quoting of its bytes: a
                    // `\x` escape is a byte there, which the parser made a character).
                    let written = self
                        .positions
                        .get()
                        .and_then(|p| p.arg_text(super::positions::node_key(a), 0))
                        .and_then(string_literal_bytes);
                    let name = match written {
                        Some(bytes) => go_quote(&bytes),
                        None => format!("{label:?}"),
                    };
                    return Err(PromqlError::exec(format!("invalid label name {name}")));
                }
                let mut index: HashMap<Labels, usize> = HashMap::new();
                for (key, members) in &groups {
                    for step in 0..steps {
                        let mut counts: Vec<(String, f64)> = Vec::new();
                        for &i in members {
                            // A native histogram counts under its string form, as
                            // Prometheus's.
                            let value = match (input[i].points[step], input[i].hist(step)) {
                                (Some(v), _) => Some(format_float(v)),
                                (None, Some(h)) => Some(h.to_go_string()),
                                (None, None) => None,
                            };
                            if let Some(s) = value {
                                match counts.iter_mut().find(|c| c.0 == s) {
                                    Some(c) => c.1 += 1.0,
                                    None => counts.push((s, 1.0)),
                                }
                            }
                        }
                        for (value, n) in counts {
                            let mut b = key.builder();
                            b.set(label.clone(), value);
                            let labels = b.build();
                            // Groups whose value label overwrote a grouping label meet here:
                            // their counts add up, as Prometheus counts the relabelled samples.
                            let j = series_slot(&mut out, &mut index, labels, steps);
                            let p = &mut out[j].points[step];
                            *p = Some(p.unwrap_or(0.0) + n);
                        }
                    }
                }
                return Ok(Val::Vector(out));
            }
            _ => {}
        }
        let q = if op == "quantile" {
            Some(scalar_param("quantile")?)
        } else {
            None
        };
        if let Some(bad) = q
            .as_ref()
            .and_then(|q| q.iter().find(|q| !(0.0..=1.0).contains(*q)).copied())
        {
            self.warn_at(
                format!("quantile value should be between 0 and 1, got {bad}"),
                0,
            );
        }
        let any_hists = input.iter().any(Series::has_hists);
        for (key, members) in groups {
            self.check_deadline()?;
            // The name (when grouped by) goes at the end if it goes for any member.
            let drop_name = members.iter().any(|&i| input[i].drop_name);
            let mut points = vec![None; steps];
            let mut hists: Vec<Option<std::sync::Arc<meshlens_model::FloatHistogram>>> = Vec::new();
            let mut vals: Vec<f64> = Vec::with_capacity(members.len());
            for (step, point) in points.iter_mut().enumerate() {
                vals.clear();
                vals.extend(members.iter().filter_map(|&i| input[i].points[step]));
                if any_hists {
                    let hs: Vec<&meshlens_model::FloatHistogram> = members
                        .iter()
                        .filter_map(|&i| input[i].hist(step).map(|h| h.as_ref()))
                        .collect();
                    if !hs.is_empty() {
                        let mut notes = crate::functions::native::Notes::default();
                        let value = match op.as_str() {
                            "count" => WindowValue::Float((hs.len() + vals.len()) as f64),
                            "group" => WindowValue::Float(1.0),
                            "sum" | "avg" if !vals.is_empty() => {
                                self.warn(
                                    "encountered a mix of histograms and floats for aggregation"
                                        .to_string(),
                                );
                                WindowValue::None
                            }
                            "sum" | "avg" => native::aggregate(&op, &hs, &mut notes),
                            _ => {
                                self.info(format!("ignored histogram in {op} aggregation"));
                                WindowValue::None
                            }
                        };
                        // Positioned at the aggregated expression (sum and avg take no
                        // parameter).
                        notes.warnings.into_iter().for_each(|w| self.warn_at(w, 0));
                        notes.infos.into_iter().for_each(|i| self.info_at(i, 0));
                        match value {
                            WindowValue::Float(v) => {
                                *point = Some(v);
                                continue;
                            }
                            WindowValue::Hist(h) => {
                                if hists.is_empty() {
                                    hists = vec![None; steps];
                                }
                                hists[step] = Some(std::sync::Arc::new(h));
                                continue;
                            }
                            WindowValue::None if matches!(op.as_str(), "sum" | "avg") => continue,
                            WindowValue::None | WindowValue::Keep => {}
                        }
                    }
                }
                if vals.is_empty() {
                    continue;
                }
                *point = Some(match op.as_str() {
                    "sum" => {
                        let mut k = Kahan::default();
                        vals.iter().for_each(|v| k.add(*v));
                        k.value()
                    }
                    "avg" => mean(&vals),
                    "count" => vals.len() as f64,
                    "group" => 1.0,
                    "min" => {
                        vals.iter()
                            .copied()
                            .fold(f64::NAN, |m, v| if m > v || m.is_nan() { v } else { m })
                    }
                    "max" => {
                        vals.iter()
                            .copied()
                            .fold(f64::NAN, |m, v| if m < v || m.is_nan() { v } else { m })
                    }
                    "stdvar" => variance(&vals),
                    "stddev" => variance(&vals).sqrt(),
                    "quantile" => quantile(q.as_ref().map_or(f64::NAN, |q| q[step]), &mut vals),
                    other => {
                        return Err(PromqlError::exec(format!(
                            "aggregation {other} is not supported"
                        )))
                    }
                });
            }
            out.push(Series {
                labels: key,
                points,
                hists,
                drop_name,
            });
        }
        Ok(Val::Vector(out))
    }

    /// The aggregated expression as a source that can be folded series by series: a
    /// selector, or a range function (other than `absent_over_time`) of a matrix selector.
    /// A function that drops the metric name qualifies only over a selector that fixes
    /// the name, since two series left with equal labels must fail the query, which folding
    /// would not notice. `None`: evaluate the expression whole.
    fn foldable_source(&self, expr: &Expr) -> Result<Option<Source<'a>>, PromqlError> {
        match unwrap_parens(expr) {
            Expr::VectorSelector(vs) => Ok(Some(self.latest_source(vs, false)?)),
            Expr::Call(c) => {
                let Some(f) = RangeFn::parse(c.func.name) else {
                    return Ok(None);
                };
                let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
                let ms = match args.get(f.matrix_arg()).map(|e| unwrap_parens(e)) {
                    Some(Expr::MatrixSelector(ms)) => ms,
                    _ => return Ok(None),
                };
                if f == RangeFn::AbsentOverTime || !(f.keeps_name() || pins_name(&ms.vs)) {
                    return Ok(None);
                }
                let call = super::positions::node_key(c);
                let params =
                    self.in_call(call, || crate::functions::range_params(self, f, &args))?;
                let mut source = self.rollup_source(ms, f, params)?;
                source.call = Some((call, f.matrix_arg()));
                Ok(Some(source))
            }
            _ => Ok(None),
        }
    }

    /// Folds `source` series by series into the groups of `modifier`.
    fn fold_aggregate(
        &self,
        op: FoldOp,
        modifier: &Option<LabelModifier>,
        source: Source<'_>,
    ) -> Result<Val, PromqlError> {
        let steps = self.steps();
        // With delayed name removal the groups see the name (`by (__name__)`), and it goes
        // at the end.
        let delayed = self.delayed_names && source.drops_name();
        let drop_name = source.drops_name() && !self.delayed_names;
        let mut total: Option<GroupFold> = None;
        self.stream(
            &source,
            || GroupFold::new(op, modifier, drop_name, steps),
            |block| match &mut total {
                Some(t) => t.merge(block),
                None => total = Some(block),
            },
        )?;
        let mut out = total.map(GroupFold::finish).unwrap_or_default();
        out.iter_mut().for_each(|s| s.drop_name = delayed);
        self.hold(out.len() * steps)?;
        Ok(Val::Vector(out))
    }
}

fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// The bytes of the string literal `text` starts with (after any opening parentheses), its
/// escapes decoded as Go decodes them: `\x` and octal escapes give single bytes.
fn string_literal_bytes(text: &str) -> Option<Vec<u8>> {
    let b = text.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let b = b.as_bytes();
    let quote = *b.first()?;
    if !matches!(quote, b'"' | b'\'' | b'`') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        let c = b[i];
        if c == quote {
            return Some(out);
        }
        if c != b'\\' || quote == b'`' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1)?;
        i += 2;
        let hex = |n: usize, i: usize| {
            let digits = std::str::from_utf8(b.get(i..i + n)?).ok()?;
            u32::from_str_radix(digits, 16).ok()
        };
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                out.push(u8::try_from(hex(2, i)?).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let c = char::from_u32(hex(n, i)?)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += n;
            }
            b'0'..=b'7' => {
                let digits = std::str::from_utf8(b.get(i - 1..i + 2)?).ok()?;
                out.push(u8::from_str_radix(digits, 8).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    None
}

/// `bytes` in double quotes as Go's `strconv.Quote` writes them: a byte that is not part of
/// valid UTF-8 as `\xNN`, unprintable characters escaped, the rest as they are.
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                ' ' => out.push(' '),
                c if c.is_control() || c.is_whitespace() => {
                    let n = u32::from(c);
                    if n < 0x80 {
                        out.push_str(&format!("\\x{n:02x}"));
                    } else if n < 0x10000 {
                        out.push_str(&format!("\\u{n:04x}"));
                    } else {
                        out.push_str(&format!("\\U{n:08x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{go_quote, string_literal_bytes};

    #[test]
    fn count_values_names_print_as_prometheus_quotes_the_literal() {
        let quoted = |text: &str| go_quote(&string_literal_bytes(text).unwrap());
        assert_eq!(quoted(r#""a\xc5z", version)"#), r#""a\xc5z""#);
        assert_eq!(quoted(r#"(("a\u00c5z"))"#), "\"a\u{c5}z\"");
        assert_eq!(quoted(r#"'a\101\n"'"#), r#""aA\n\"""#);
        assert_eq!(quoted(r"`a\x`"), r#""a\\x""#);
        assert_eq!(string_literal_bytes("version"), None);
    }
}
