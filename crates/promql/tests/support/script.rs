//! Runs Prometheus's PromQL test scripts (the `load` / `eval` format of promqltest).

use meshlens_model::{FloatHistogram, Labels, STALE_NAN};
use meshlens_promql::{Engine, EngineOptions, Value};

use super::MemStore;

#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    /// Of all cases, those that involve native histograms (a histogram loaded under a
    /// name the query mentions, a histogram function, or a histogram in the expected
    /// result), and how many of those passed.
    pub native: usize,
    pub native_passed: usize,
}

/// One value of the series notation: a float or a native histogram.
#[derive(Clone, Debug)]
enum Point {
    F(f64),
    H(FloatHistogram),
}

impl Point {
    fn float(&self) -> Option<f64> {
        match self {
            Point::F(v) => Some(*v),
            Point::H(_) => None,
        }
    }
}

/// One classic histogram at one time, as `load_with_nhcb` collects it: (le, cumulative
/// count) pairs, the count and the sum.
#[derive(Default)]
struct ClassicAt {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
}

/// Classic histogram series of a `load_with_nhcb` block, by base series and time, to be
/// turned into native histograms with custom buckets as promqltest does.
#[derive(Default)]
struct Classic {
    at: std::collections::BTreeMap<(Labels, i64), ClassicAt>,
}

impl Classic {
    fn note(&mut self, labels: &Labels, t: i64, v: f64) {
        let name = labels.metric_name().unwrap_or("");
        let (base, part) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            return;
        };
        let le = labels.get("le").map(|s| s.parse::<f64>().ok());
        let mut b = labels.builder();
        b.del("le");
        b.set("__name__", base);
        let entry = self.at.entry((b.build(), t)).or_default();
        match part {
            0 => match le.flatten() {
                Some(le) if !le.is_nan() => entry.buckets.push((le, v)),
                _ => {}
            },
            1 => entry.count = Some(v),
            _ => entry.sum = v,
        }
    }

    fn convert(self) -> Vec<(Labels, i64, FloatHistogram)> {
        let mut out = Vec::new();
        for ((labels, t), mut c) in self.at {
            c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let count = c
                .count
                .or_else(|| c.buckets.last().map(|b| b.1))
                .unwrap_or(0.0);
            if c.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                c.buckets.push((f64::INFINITY, count));
            }
            let mut prev = 0.0;
            let counts: Vec<f64> = c
                .buckets
                .iter()
                .map(|b| {
                    let d = b.1 - prev;
                    prev = b.1;
                    d
                })
                .collect();
            let mut h = FloatHistogram {
                schema: -53,
                count,
                sum: c.sum,
                positive_spans: vec![meshlens_model::histogram::BucketSpan {
                    offset: 0,
                    length: counts.len() as u32,
                }],
                positive_buckets: counts,
                custom_values: c.buckets[..c.buckets.len() - 1]
                    .iter()
                    .map(|b| b.0)
                    .collect(),
                ..FloatHistogram::default()
            };
            h.compact(2);
            out.push((labels, t, h));
        }
        out
    }
}

/// The notation's tokens: split at whitespace outside `{{...}}`.
fn tokens(spec: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, None::<usize>);
    for (i, c) in spec.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && depth == 0 => {
                if let Some(s0) = start.take() {
                    out.push(&spec[s0..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s0) = start {
        out.push(&spec[s0..]);
    }
    out
}

/// `{{...}}` at the start of `s`: the histogram and the rest of `s`.
fn histogram_literal(s: &str) -> Option<(FloatHistogram, &str)> {
    if !s.starts_with("{{") {
        return None;
    }
    let end = s.find("}}")? + 2;
    let h = FloatHistogram::parse_notation(&s[..end]).ok()?;
    Some((h, &s[end..]))
}

/// A histogram token: `{{A}}`, `{{A}}xN` (N+1 copies), `{{A}}+{{B}}xN` or `{{A}}-{{B}}xN`
/// (A, then B added or subtracted N times).
fn expand_histogram(item: &str) -> Option<Vec<Option<Point>>> {
    let (first, rest) = histogram_literal(item)?;
    if rest.is_empty() {
        return Some(vec![Some(Point::H(first))]);
    }
    let (inc, sign, times) = if let Some(n) = rest.strip_prefix('x') {
        (None, 1.0, n)
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1.0,
            b'-' => -1.0,
            _ => return None,
        };
        let (inc, after) = histogram_literal(&rest[1..])?;
        (Some(inc), sign, after.strip_prefix('x')?)
    };
    let n: usize = times.parse().ok()?;
    let mut out = vec![Some(Point::H(first.clone()))];
    let mut cur = first;
    for _ in 0..n {
        if let Some(inc) = &inc {
            if sign > 0.0 {
                cur.add(inc).ok()?;
            } else {
                cur.sub(inc).ok()?;
            }
        }
        out.push(Some(Point::H(cur.clone())));
    }
    Some(out)
}

pub struct Outcome {
    pub counts: Counts,
    pub failures: Vec<String>,
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_time(rest).map(|v| -v);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n * 1000);
    }
    let mut total = 0i64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        "stale" => Some(STALE_NAN),
        _ => {
            if let Some(h) = s.strip_prefix("0x") {
                return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()
        }
    }
}

/// Expands promtool's series notation into one optional value per step.
fn expand_points(spec: &str) -> Option<Vec<Option<Point>>> {
    let mut out = Vec::new();
    for item in tokens(spec) {
        if item.starts_with("{{") {
            out.extend(expand_histogram(item)?);
            continue;
        }
        if let Some(n) = blanks(item) {
            out.extend(std::iter::repeat_n(None, n?));
            continue;
        }
        if let Some((lhs, times)) = item.rsplit_once('x') {
            if let Ok(n) = times.parse::<usize>() {
                // `a+bxn`, `a-bxn` or `axn`: n+1 values.
                let split = lhs
                    .char_indices()
                    .skip(1)
                    .find(|(i, c)| (*c == '+' || *c == '-') && !lhs[..*i].ends_with(['e', 'E']))
                    .map(|(i, _)| i);
                let (start, step) = match split {
                    Some(i) => (parse_value(&lhs[..i])?, parse_value(&lhs[i..])?),
                    None => (parse_value(lhs)?, 0.0),
                };
                for k in 0..=n {
                    out.push(Some(Point::F(start + step * k as f64)));
                }
                continue;
            }
        }
        out.push(Some(Point::F(parse_value(item)?)));
    }
    Some(out)
}

/// How many steps a blank token of a `load` line leaves empty: `_` one, `_xN` N (`Some(None)`:
/// an `_x` with no count); `None`: not a blank.
fn blanks(item: &str) -> Option<Option<usize>> {
    match item.strip_prefix('_')? {
        "" => Some(Some(1)),
        rest => Some(rest.strip_prefix('x').and_then(|n| n.parse().ok())),
    }
}

/// A start-timestamp line of a `load` block, `metric{a="b"}@st <offsets>`: the series and,
/// per step, the start time's offset (ms) from the sample's time, if given.
fn start_time_line(line: &str) -> Option<(Labels, Vec<Option<i64>>)> {
    let at = line.find("@st")?;
    let rest = &line[at + 3..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (labels, _) = split_series(&format!("{} _", &line[..at]))?;
    let mut out = Vec::new();
    for item in rest.split_whitespace() {
        if let Some(n) = blanks(item) {
            out.extend(std::iter::repeat_n(None, n?));
            continue;
        }
        let (base, tail) = offset_prefix(item)?;
        let (step, count) = match tail.as_bytes().first() {
            None => (0, 0),
            Some(b'x') => (0, tail[1..].parse::<i64>().ok()?),
            Some(b'+' | b'-') => {
                let (step, tail) = offset_prefix(tail)?;
                (step, tail.strip_prefix('x')?.parse::<i64>().ok()?)
            }
            Some(_) => return None,
        };
        for k in 0..=count {
            out.push(Some(base + step * k));
        }
    }
    Some((labels, out))
}

/// A signed duration (`-1m30s`, `+1ms`, `0`) at the start of `s`, in ms, and what follows.
fn offset_prefix(s: &str) -> Option<(i64, &str)> {
    let (sign, mut rest) = match s.as_bytes().first()? {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let mut total = 0i64;
    loop {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            break;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b's', ..] => (1000, 1),
            [b'm', ..] => (60_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'd', ..] => (86_400_000, 1),
            [b'w', ..] => (604_800_000, 1),
            [b'y', ..] => (31_536_000_000, 1),
            // A bare number is a count of seconds (only `0` is written so).
            _ => (1000, 0),
        };
        total += n * unit;
        rest = &rest[len..];
        if len == 0 {
            break;
        }
    }
    Some((sign * total, rest))
}

/// Splits `metric{a="b"} points` into labels and the rest.
fn split_series(line: &str) -> Option<(Labels, &str)> {
    let line = line.trim();
    let ws = line.find(char::is_whitespace).unwrap_or(line.len());
    let end = if let Some(open) = line.find('{').filter(|o| *o < ws) {
        let mut in_quote = false;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in line[open..].char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => in_quote = !in_quote,
                '}' if !in_quote => {
                    close = Some(open + i + 1);
                    break;
                }
                _ => {}
            }
        }
        close?
    } else {
        ws
    };
    let desc = &line[..end];
    let rest = &line[end..];
    let labels = if desc == "{}" {
        Labels::empty()
    } else {
        match promql_parser::parser::parse(desc).ok()? {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let mut pairs: Vec<(String, String)> = vs
                    .matchers
                    .matchers
                    .iter()
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect();
                if let Some(n) = vs.name {
                    pairs.push(("__name__".into(), n));
                }
                Labels::from_pairs(pairs)
            }
            _ => return None,
        }
    };
    Some((labels, rest))
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < 1e-6 * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

struct Case {
    line_no: usize,
    header: String,
    expects: Vec<String>,
    results: Vec<String>,
}

const NATIVE_FUNCS: [&str; 6] = [
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
];

pub fn run_script(text: &str) -> Outcome {
    let mut store = MemStore::default();
    // As promqltest's engine: delayed name removal and start timestamps on.
    let engine = Engine::new(EngineOptions::default())
        .with_delayed_name_removal(true)
        .with_start_timestamps(true);
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    let mut native_names: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let indented = |l: &str| l.starts_with(' ') || l.starts_with('\t');
    while i < lines.len() {
        let line = lines[i].trim_end();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let word = trimmed.split_whitespace().next().unwrap_or("");
        match word {
            "clear" => {
                store = MemStore::default();
                native_names.clear();
                i += 1;
            }
            "load" | "load_with_nhcb" => {
                let nhcb = word == "load_with_nhcb";
                let interval = trimmed
                    .split_whitespace()
                    .nth(1)
                    .and_then(parse_time)
                    .unwrap_or(60_000);
                i += 1;
                let mut classic = Classic::default();
                let mut pending_st: Option<(Labels, Vec<Option<i64>>)> = None;
                while i < lines.len() && indented(lines[i]) && !lines[i].trim().is_empty() {
                    let l = lines[i].trim();
                    i += 1;
                    if l.starts_with('#') {
                        continue;
                    }
                    if let Some((labels, offsets)) = start_time_line(l) {
                        pending_st = Some((labels, offsets));
                        continue;
                    }
                    if let Some((labels, rest)) = split_series(l) {
                        // The `@st` line just before names this series' start times.
                        let offsets = pending_st
                            .take()
                            .filter(|(l, _)| *l == labels)
                            .map(|(_, o)| o)
                            .unwrap_or_default();
                        let name = labels.metric_name().unwrap_or("").to_string();
                        if l.contains("{{") {
                            native_names.push(name.clone());
                        }
                        if nhcb {
                            if let Some(base) = name.strip_suffix("_bucket") {
                                native_names.push(base.to_string());
                            }
                        }
                        if let Some(points) = expand_points(rest) {
                            for (k, p) in points.into_iter().enumerate() {
                                let t = k as i64 * interval;
                                if let (Some(_), Some(Some(off))) = (&p, offsets.get(k)) {
                                    store.set_start_time(labels.clone(), t, t + off);
                                }
                                match p {
                                    Some(Point::F(v)) => {
                                        if nhcb {
                                            classic.note(&labels, t, v);
                                        }
                                        store.add(labels.clone(), t, v)
                                    }
                                    Some(Point::H(h)) => store.add_histogram(labels.clone(), t, h),
                                    None => {}
                                }
                            }
                        }
                    }
                }
                for (labels, t, h) in classic.convert() {
                    store.add_histogram(labels, t, h);
                }
            }
            w if w.starts_with("eval") => {
                let mut case = Case {
                    line_no: i + 1,
                    header: trimmed.to_string(),
                    expects: Vec::new(),
                    results: Vec::new(),
                };
                i += 1;
                while i < lines.len()
                    && !lines[i].trim().is_empty()
                    && (indented(lines[i]) || lines[i].trim_start().starts_with("expect"))
                {
                    let l = lines[i].trim();
                    if l.starts_with("expect ") {
                        case.expects.push(l.to_string());
                    } else if !l.starts_with('#') {
                        case.results.push(l.to_string());
                    }
                    i += 1;
                }
                let query_part = case.header.as_str();
                let is_native = native_names
                    .iter()
                    .any(|n| !n.is_empty() && mentions(query_part, n))
                    || case.results.iter().any(|r| r.contains("{{"))
                    || NATIVE_FUNCS.iter().any(|f| case.header.contains(f));
                let passed = match run_case(&engine, &store, &case) {
                    Ok(()) => {
                        counts.passed += 1;
                        true
                    }
                    Err(e) => {
                        counts.failed += 1;
                        failures.push(format!("line {}: {}\n    {e}", case.line_no, case.header));
                        false
                    }
                };
                if is_native {
                    counts.native += 1;
                    counts.native_passed += usize::from(passed);
                }
            }
            _ => i += 1,
        }
    }
    Outcome { counts, failures }
}

/// Whether `text` names metric `name` (not as part of a longer name).
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        let ident =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        !ident(before) && !ident(after)
    })
}

fn run_case(engine: &Engine, store: &MemStore, case: &Case) -> Result<(), String> {
    let h = &case.header;
    let (cmd, rest) = h.split_once(' ').ok_or("bad eval line")?;
    let mut expect_fail = cmd == "eval_fail";
    let mut fail_msg: Option<String> = None;
    let mut fail_regex: Option<String> = None;
    let mut ordered = cmd == "eval_ordered";
    let mut expect_string: Option<String> = None;
    let mut range_vector: Option<(i64, i64, i64)> = None;
    // (kind, match) for `expect warn|info|no_warn|no_info`.
    let mut notes: Vec<(String, String)> = Vec::new();
    if cmd == "eval_warn" {
        notes.push(("warn".into(), String::new()));
    }
    if cmd == "eval_info" {
        notes.push(("info".into(), String::new()));
    }
    for e in &case.expects {
        let body = e.trim_start_matches("expect ").trim();
        let (kind, arg) = body.split_once(' ').unwrap_or((body, ""));
        match kind {
            "fail" => {
                expect_fail = true;
                let arg = arg.trim();
                // Taken as written (spaces trimmed), as promqltest takes them: a message
                // may end in a quote.
                if let Some(m) = arg.strip_prefix("msg:") {
                    fail_msg = Some(m.trim().to_string());
                } else if let Some(r) = arg.strip_prefix("regex:") {
                    fail_regex = Some(r.trim().to_string());
                }
            }
            "warn" | "info" | "no_warn" | "no_info" => {
                notes.push((kind.to_string(), arg.trim().to_string()))
            }
            "ordered" => ordered = true,
            "string" => expect_string = Some(arg.trim().trim_matches(['"', '`']).to_string()),
            "range" => {
                let parts: Vec<&str> = arg.split_whitespace().collect();
                // "vector from A to B step C"
                if parts.len() >= 7 {
                    range_vector = Some((
                        parse_time(parts[2]).ok_or("bad time")?,
                        parse_time(parts[4]).ok_or("bad time")?,
                        parse_time(parts[6]).ok_or("bad step")?,
                    ));
                }
            }
            _ => {}
        }
    }
    let result = if let Some(r) = rest.strip_prefix("instant at ") {
        let (at, q) = r.trim().split_once(' ').ok_or("bad instant eval")?;
        let t = parse_time(at).ok_or("bad time")?;
        engine.instant_query(store, q.trim(), t).map(|r| (r, None))
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let parts: Vec<&str> = r.trim().splitn(6, ' ').collect();
        if parts.len() < 6 {
            return Err("bad range eval".into());
        }
        let (start, end, step) = (
            parse_time(parts[0]).ok_or("bad start")?,
            parse_time(parts[2]).ok_or("bad end")?,
            parse_time(parts[4]).ok_or("bad step")?,
        );
        engine
            .range_query(store, parts[5].trim(), start, end, step)
            .map(|r| (r, Some((start, end, step))))
    } else {
        return Err("unknown eval form".into());
    };
    let (res, range) = match result {
        Err(e) if expect_fail => {
            let msg = e.to_string();
            if let Some(m) = fail_msg {
                if msg != m {
                    return Err(format!("failed with {msg:?}, expected {m:?}"));
                }
            }
            if let Some(r) = fail_regex {
                let re = regex::Regex::new(&r).map_err(|e| e.to_string())?;
                if !re.is_match(&msg) {
                    return Err(format!("failed with {msg:?}, expected /{r}/"));
                }
            }
            return Ok(());
        }
        Err(e) => return Err(format!("unexpected error: {e}")),
        Ok(_) if expect_fail => return Err("expected an error, got a result".into()),
        Ok(r) => r,
    };
    for (kind, arg) in &notes {
        let (list, want) = match kind.as_str() {
            "warn" => (&res.warnings, true),
            "info" => (&res.infos, true),
            "no_warn" => (&res.warnings, false),
            _ => (&res.infos, false),
        };
        if !want {
            if !list.is_empty() {
                return Err(format!("expected no {}, got {list:?}", &kind[3..]));
            }
            continue;
        }
        let ok = if let Some(m) = arg.strip_prefix("msg:") {
            list.iter().any(|x| x == m.trim())
        } else if let Some(r) = arg.strip_prefix("regex:") {
            let re = regex::Regex::new(r.trim()).map_err(|e| e.to_string())?;
            list.iter().any(|x| re.is_match(x))
        } else {
            !list.is_empty()
        };
        if !ok {
            return Err(format!(
                "expected a {kind} annotation {arg:?}, got {list:?}"
            ));
        }
    }
    if let Some(s) = expect_string {
        return match res.value {
            Value::String { v, .. } if v == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    // Expected series: labels and per-step values.
    let mut expected: Vec<(Option<Labels>, Vec<Option<Point>>)> = Vec::new();
    // Counter-reset hints are compared only where the expected histograms name them.
    let hints = case
        .results
        .iter()
        .any(|r| r.contains("counter_reset_hint"));
    let matches = |want: &Point, v: f64, h: Option<&FloatHistogram>| match (want, h) {
        (Point::F(e), None) => almost_equal(v, *e),
        (Point::H(e), Some(g)) => {
            e.equals(g) && (!hints || e.counter_reset_hint == g.counter_reset_hint)
        }
        _ => false,
    };
    let show = |v: f64, h: Option<&FloatHistogram>| match h {
        Some(h) => h.to_notation(),
        None => v.to_string(),
    };
    for r in &case.results {
        if let Some(v) = parse_value(r.trim()) {
            expected.push((None, vec![Some(Point::F(v))]));
            continue;
        }
        let (labels, rest) =
            split_series(r).ok_or_else(|| format!("cannot parse expected line {r:?}"))?;
        let points =
            expand_points(rest).ok_or_else(|| format!("cannot parse expected values {rest:?}"))?;
        expected.push((Some(labels), points));
    }
    match (res.value, range, range_vector) {
        (Value::Scalar { v, .. }, None, _) => match expected.as_slice() {
            [(None, p)]
                if p.len() == 1
                    && p[0]
                        .as_ref()
                        .and_then(Point::float)
                        .is_some_and(|e| almost_equal(e, v)) =>
            {
                Ok(())
            }
            _ => Err(format!("got scalar {v}, expected {:?}", case.results)),
        },
        (Value::Vector(got), None, _) => {
            if got.len() != expected.len() {
                return Err(format!(
                    "got {} series, expected {}: got {:?}",
                    got.len(),
                    expected.len(),
                    got.iter()
                        .map(|s| format!("{} {}", s.labels, show(s.v, s.h.as_deref())))
                        .collect::<Vec<_>>()
                ));
            }
            for (k, (el, ep)) in expected.iter().enumerate() {
                let el = el.as_ref().ok_or("expected a vector line")?;
                let ev = ep.first().cloned().flatten().ok_or("expected a value")?;
                let found = if ordered {
                    got.get(k).filter(|g| g.labels == *el)
                } else {
                    got.iter().find(|g| g.labels == *el)
                };
                match found {
                    Some(g) if matches(&ev, g.v, g.h.as_deref()) => {}
                    Some(g) => {
                        return Err(format!(
                            "{el}: got {}, expected {ev:?}",
                            show(g.v, g.h.as_deref())
                        ))
                    }
                    None => {
                        return Err(format!(
                            "missing {el} (ordered: {ordered}); got {:?}",
                            got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
                        ))
                    }
                }
            }
            Ok(())
        }
        (Value::Matrix(got), range, rv) => {
            let (start, end, step) = range
                .or(rv)
                .ok_or("got a matrix, expected an instant result")?;
            if got.len() != expected.len() {
                return Err(format!(
                    "got {} series, expected {}: {:?}",
                    got.len(),
                    expected.len(),
                    got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
                ));
            }
            for (el, ep) in &expected {
                let el = el.as_ref().ok_or("expected series lines")?;
                let g = got
                    .iter()
                    .find(|g| g.labels == *el)
                    .ok_or_else(|| format!("missing series {el}"))?;
                let want: Vec<(i64, &Point)> = ep
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (start + k as i64 * step, v)))
                    .filter(|(t, _)| *t <= end)
                    .collect();
                // Floats and histograms of the series, in time order.
                let mut have: Vec<(i64, f64, Option<&FloatHistogram>)> = g
                    .samples
                    .iter()
                    .map(|s| (s.t, s.v, None))
                    .chain(g.histograms.iter().map(|h| (h.t, 0.0, Some(&*h.h))))
                    .collect();
                have.sort_by_key(|x| x.0);
                if want.len() != have.len()
                    || !want
                        .iter()
                        .zip(&have)
                        .all(|(w, s)| w.0 == s.0 && matches(w.1, s.1, s.2))
                {
                    return Err(format!(
                        "{el}: got {:?}, expected {:?}",
                        have.iter()
                            .map(|s| (s.0, show(s.1, s.2)))
                            .collect::<Vec<_>>(),
                        want
                    ));
                }
            }
            Ok(())
        }
        (v, _, _) => Err(format!("unexpected result {v:?}")),
    }
}
