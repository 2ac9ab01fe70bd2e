//! PromQL evaluation over the metrics storage trait (`meshlens_model::MetricReader`), with
//! Prometheus 3 semantics: left-open ranges, 5-minute lookback, staleness markers
//! (Prometheus 2's closed ranges on request: [`EngineOptions::closed_ranges`]).
//! Parsing is the `promql-parser` crate's.
//!
//! Design decision: values are columnar. An instant-vector expression evaluates, for all
//! steps of a query at once, to series that each hold one optional value per step. Label
//! work (vector matching, grouping, label functions) is then done once per series instead of
//! once per step, and each selector reads storage once for the whole query range.
//!
//! Limits live here so every user of an [`Engine`] (HTTP API, CLI, rules, analyses) gets
//! them: query text length and nesting depth (checked before parsing), queries evaluating
//! at once (shared by all copies made with [`Engine::with_timeout`]), and samples held,
//! counted as series are decoded so that a query stops as soon as it passes its limit.
//!
//! Selectors are read series by series and spread over the cores (`eval::stream`);
//! aggregations of a selector or of a range function over one fold each series into
//! their groups as it is decoded; range queries' past steps are cached (`cache`).

mod cache;
mod duration_expr;
mod duration_numbers;
mod error;
mod eval;
mod extended_syntax;
mod format;
mod functions;
mod gate;
mod guard;
mod value;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use cache::CacheStats;
pub use error::PromqlError;
pub use functions::histogram::bucket_quantile;
pub use guard::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH};
pub use value::{QueryResult, Value, VectorSample};

use meshlens_model::MetricReader;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold at once, counted as Prometheus counts them.
    pub max_samples: usize,
    pub timeout: Duration,
    /// Step of subqueries that give none (`x[5m:]`).
    pub default_subquery_step_ms: i64,
    /// Most queries evaluating at once (`--query.max-concurrency`); more wait for a slot
    /// until their timeout. Zero: no limit.
    pub max_concurrency: usize,
    /// Prometheus 2's windows: a sample exactly at the window's start counts. Range
    /// selectors and subqueries cover `[t - range, t]` and the lookback `[t - delta, t]`
    /// instead of Prometheus 3's left-open `(t - range, t]`; rate extrapolation also takes
    /// Prometheus 2's order (the counter's zero point before the extrapolation threshold).
    /// For `meshlens test rules`, which must agree with promtool 2.x.
    pub closed_ranges: bool,
    /// Evaluate every step of every range query, instead of reusing the steps a repeated
    /// query already computed (`--query.disable-cache`, as VictoriaMetrics's
    /// `-search.disableCache`; for benchmarks). See [`Engine::range_query`].
    pub disable_cache: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            max_concurrency: 20,
            closed_ranges: false,
            disable_cache: false,
        }
    }
}

pub struct Engine {
    opts: EngineOptions,
    gate: Arc<gate::Gate>,
    cache: Arc<cache::ResultCache>,
    /// See [`Engine::with_delayed_name_removal`].
    delayed_names: bool,
    /// See [`Engine::with_start_timestamps`].
    start_times: bool,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        let gate = Arc::new(gate::Gate::new(opts.max_concurrency));
        Engine {
            opts,
            gate,
            cache: Default::default(),
            delayed_names: false,
            start_times: false,
        }
    }

    /// This engine with Prometheus's `promql-delayed-name-removal` feature on or off (off in
    /// a new engine, as in Prometheus): operations that drop the metric name (functions,
    /// arithmetic with a scalar, `bool` comparisons, unary minus) mark the series instead,
    /// so that `label_replace` / `label_join` onto `__name__`, `by (__name__)` and matching
    /// still see the name; the marked names go when the result is complete. Arithmetic
    /// between two vectors still drops the name at once, as in Prometheus.
    pub fn with_delayed_name_removal(mut self, on: bool) -> Engine {
        self.delayed_names = on;
        self
    }

    /// This engine with Prometheus's `use-start-timestamps` feature on or off (off in a new
    /// engine, as in Prometheus): `rate`, `increase`, `irate` and `resets` over a selector
    /// read the start timestamps storage gives samples (Prometheus 3's "ST"), so a start
    /// time after the previous sample is a counter reset and one inside the window replaces
    /// extrapolation to its start; `start_timestamp(selector)` returns them. Values made
    /// by expressions (subqueries, arithmetic) carry none.
    pub fn with_start_timestamps(mut self, on: bool) -> Engine {
        self.start_times = on;
        self
    }

    /// Whether [`Engine::with_delayed_name_removal`] is on.
    pub fn delayed_name_removal(&self) -> bool {
        self.delayed_names
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// This engine with another timeout (a request's own), sharing its concurrency limit
    /// and its result cache.
    pub fn with_timeout(&self, timeout: Duration) -> Engine {
        Engine {
            opts: EngineOptions {
                timeout,
                ..self.opts.clone()
            },
            gate: self.gate.clone(),
            cache: self.cache.clone(),
            delayed_names: self.delayed_names,
            start_times: self.start_times,
        }
    }

    /// The range-query result cache's counters (shared with copies of this engine).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Forgets every cached range-query result: for after data was deleted, or written
    /// further in the past than the cache's safety offset (imports, backfills).
    pub fn reset_cache(&self) {
        self.cache.clear()
    }

    /// Queries evaluating now, over this engine and its copies.
    pub fn active_queries(&self) -> usize {
        self.gate.active()
    }

    /// Evaluates once a concurrency slot is free; the wait counts against the timeout.
    fn run(
        &self,
        storage: &dyn MetricReader,
        expr: &promql_parser::parser::Expr,
        source: Option<&str>,
        span: eval::QuerySpan,
    ) -> Result<QueryResult, PromqlError> {
        let after = self.opts.timeout;
        let _slot = self
            .gate
            .enter(span.deadline)
            .ok_or(PromqlError::QueueTimeout { after })?;
        let features = eval::Features {
            delayed_names: self.delayed_names,
            start_times: self.start_times,
        };
        eval::run(storage, &self.opts, features, expr, source, span)
    }

    pub fn instant_query(
        &self,
        storage: &dyn MetricReader,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        let deadline = Instant::now() + self.opts.timeout;
        let query = duration_expr::resolve(query, 0, 0);
        let expr = parse(&query)?;
        let span = eval::QuerySpan {
            start: time_ms,
            end: time_ms,
            step: 0,
            instant: true,
            deadline,
        };
        self.run(storage, &expr, Some(&query), span)
    }

    /// The same over an already parsed expression: rules parse once at load, not on every
    /// evaluation.
    pub fn instant_query_expr(
        &self,
        storage: &dyn MetricReader,
        expr: &promql_parser::parser::Expr,
        time_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        let deadline = Instant::now() + self.opts.timeout;
        let span = eval::QuerySpan {
            start: time_ms,
            end: time_ms,
            step: 0,
            instant: true,
            deadline,
        };
        self.run(storage, expr, None, span)
    }

    pub fn range_query(
        &self,
        storage: &dyn MetricReader,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        if step_ms <= 0 {
            return Err(PromqlError::BadData { message: "zero or negative query resolution step widths are not accepted. Try a positive integer".into() });
        }
        if end_ms < start_ms {
            return Err(PromqlError::BadData {
                message: "end timestamp must not be before start time".into(),
            });
        }
        if end_ms.saturating_sub(start_ms) / step_ms > 11_000 {
            return Err(PromqlError::BadData { message: "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into() });
        }
        let deadline = Instant::now() + self.opts.timeout;
        // Duration expressions worked out for this step and range: the text (and so the
        // cache key) holds the durations they came to.
        let query = duration_expr::resolve(query, step_ms, end_ms.saturating_sub(start_ms));
        let expr = parse(&query)?;
        let span = |start| eval::QuerySpan {
            start,
            end: end_ms,
            step: step_ms,
            instant: false,
            deadline,
        };
        let lookahead = match cache::lookahead(&expr, self.opts.lookback_delta_ms) {
            Some(ms) if !self.opts.disable_cache => ms,
            _ => return self.run(storage, &expr, Some(&query), span(start_ms)),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, eval::millis);
        let key = cache::Key {
            query: query.to_string(),
            step: step_ms,
            phase: start_ms.rem_euclid(step_ms),
            storage: cache::storage_id(storage),
        };
        let hit = if start_ms >= now.saturating_sub(cache::MAX_AGE_MS) {
            self.cache.lookup(&key, start_ms, end_ms)
        } else {
            None
        };
        let result = match hit {
            None => self.run(storage, &expr, Some(&query), span(start_ms))?,
            Some(h) if h.next > end_ms => QueryResult {
                value: Value::Matrix(h.series),
                warnings: h.warnings,
                infos: h.infos,
            },
            Some(h) => {
                let r = self.run(storage, &expr, Some(&query), span(h.next))?;
                match r.value {
                    Value::Matrix(m) => QueryResult {
                        value: Value::Matrix(cache::join(h.series, m)),
                        warnings: cache::union(h.warnings, r.warnings),
                        infos: cache::union(h.infos, r.infos),
                    },
                    value => QueryResult { value, ..r },
                }
            }
        };
        // Keep the steps old enough that no sample can still arrive for them, nor for the
        // time after them that they read (smoothed selectors).
        let horizon = now
            .saturating_sub(cache::SAFETY_OFFSET_MS)
            .saturating_sub(lookahead);
        if let Value::Matrix(m) = &result.value {
            if start_ms >= now.saturating_sub(cache::MAX_AGE_MS) && horizon >= start_ms {
                let last = start_ms + (horizon - start_ms) / step_ms * step_ms;
                let last = last.min(end_ms);
                self.cache
                    .store(key, start_ms, last, m, &result.warnings, &result.infos);
            }
        }
        Ok(result)
    }
}

/// Parses a query; errors say `line:column: parse error: reason`, as Prometheus's do.
/// Text longer than [`MAX_QUERY_BYTES`] or nested deeper than [`MAX_QUERY_DEPTH`] is refused
/// before the parser sees it.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, PromqlError> {
    parse_as(query, false)
}

/// [`parse`]; `printing`: with the rewrite of the query for printing it back
/// (`extended_syntax::rewrite_for_printing`).
fn parse_as(query: &str, printing: bool) -> Result<promql_parser::parser::Expr, PromqlError> {
    guard::check(query)?;
    // A selector modifier where Prometheus's parser refuses one: the error names where the
    // expression it was put on starts, as Prometheus's does.
    if let Err(e) = extended_syntax::rewrite(query) {
        let (line, col) = line_col(query, e.at);
        return Err(PromqlError::Parse {
            message: format!("{line}:{col}: parse error: {}", e.message),
        });
    }
    let first = parse_text(query, printing);
    // Prometheus 2.x's name for double_exponential_smoothing is still accepted.
    let first = match first {
        Err(e) if e.contains("'holt_winters'") => {
            parse_text(&rename_holt_winters(query), printing).map_err(|_| e)
        }
        Err(e) if e.contains("non-empty matcher") => match functions::info::parsable(query) {
            Some(q) => parse_text(&q, printing).map_err(|_| e),
            None => Err(e),
        },
        other => other,
    };
    first.map_err(|reason| {
        let at = error_position(query);
        let (line, col) = line_col(query, at);
        let reason = match query[at..].split_whitespace().next() {
            Some(tok) if reason == "invalid promql query" => format!("unexpected {tok:?}"),
            _ => reason,
        };
        PromqlError::Parse {
            message: format!("{line}:{col}: parse error: {reason}"),
        }
    })
}

/// Line and column (both from 1, the column in bytes) of offset `at`.
fn line_col(query: &str, at: usize) -> (usize, usize) {
    let line = query[..at].matches('\n').count() + 1;
    let col = at - query[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// promql-parser's parse, minus the inputs that make it panic, of the query with the syntax
/// it does not read rewritten (`extended_syntax`).
fn parse_text(query: &str, printing: bool) -> Result<promql_parser::parser::Expr, String> {
    if let Some((_, text)) = duration_numbers::out_of_range(query) {
        return Err(format!("duration {text:?} is out of range"));
    }
    let rewritten = if printing {
        extended_syntax::rewrite_for_printing(query)
    } else {
        extended_syntax::rewrite(query)
    };
    match rewritten.map_err(|e| e.message)? {
        std::borrow::Cow::Borrowed(q) => promql_parser::parser::parse(q),
        std::borrow::Cow::Owned(q) => {
            let e = promql_parser::parser::parse(&q)?;
            extended_syntax::check(&e)?;
            Ok(e)
        }
    }
}

fn rename_holt_winters(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 32);
    let mut rest = query;
    while let Some(i) = rest.find("holt_winters") {
        let before = rest[..i].chars().next_back();
        let after = rest[i + 12..].chars().next();
        let ident =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        out.push_str(&rest[..i]);
        out.push_str(if ident(before) || ident(after) {
            "holt_winters"
        } else {
            "double_exponential_smoothing"
        });
        rest = &rest[i + 12..];
    }
    out.push_str(rest);
    out
}

/// Where a query stops making sense: just after the longest prefix that parses or fails
/// only for ending too early (the parser itself reports no positions). The nearest
/// `MAX_TRIES` prefixes are tried one by one, then a bisection looks further back, so a
/// malformed query costs a bounded number of parses.
fn error_position(query: &str) -> usize {
    const MAX_TRIES: usize = 64;
    const INCOMPLETE: [&str; 6] = [
        "end of input",
        "unclosed left",
        "<EOF>",
        "no expression found",
        "EOF",
        "unterminated",
    ];
    if query.len() > 4096 {
        return query.len();
    }
    let sensible = |k: usize| match parse_text(&query[..k], false) {
        Ok(_) => true,
        Err(e) => INCOMPLETE.iter().any(|m| e.contains(m)),
    };
    let mut ends: Vec<usize> = query.char_indices().map(|(i, _)| i).skip(1).collect();
    ends.push(query.len());
    for (tried, &k) in ends.iter().rev().enumerate() {
        if tried == MAX_TRIES {
            // Assume prefixes stay sensible up to some point: find it by halving.
            let (mut lo, mut hi) = (0usize, ends.len() - tried);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if sensible(ends[mid]) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            return if lo == 0 { 0 } else { ends[lo - 1] };
        }
        if sensible(k) {
            return k;
        }
    }
    0
}

/// The query, prettified, for `/api/v1/format_query`, in Prometheus 3's syntax (trim
/// operators, `anchored` / `smoothed` where Prometheus prints them, none of the rewrite's
/// markers). A query that does not parse gets [`parse`]'s error.
pub fn format_query(query: &str) -> Result<String, PromqlError> {
    let expr = match parse_as(query, true) {
        Ok(e) => e,
        Err(_) => parse(query)?,
    };
    Ok(format::prettify(&expr))
}

/// A PromQL duration (`5m`, `1h30m`) or float seconds, as the HTTP API accepts; milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, PromqlError> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f < 0.0 || f * 1000.0 > i64::MAX as f64 {
            return Err(PromqlError::BadData {
                message: format!("cannot parse {s:?} to a valid duration"),
            });
        }
        return Ok((f * 1000.0).round() as i64);
    }
    promql_parser::util::duration::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| PromqlError::BadData {
            message: format!("cannot parse {s:?} to a valid duration"),
        })
}

/// The matchers of every series selector in a query, in the order they appear (Prometheus's
/// `ExtractSelectors`, what `/api/v1/query_exemplars` selects by).
pub fn query_selectors(query: &str) -> Result<Vec<Vec<meshlens_model::LabelMatcher>>, PromqlError> {
    use promql_parser::parser::Expr;
    fn walk(e: &Expr, out: &mut Vec<Vec<meshlens_model::LabelMatcher>>) -> Result<(), PromqlError> {
        match e {
            Expr::VectorSelector(vs) => out.push(eval::selector_matchers(vs)?),
            Expr::MatrixSelector(ms) => out.push(eval::selector_matchers(&ms.vs)?),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
                walk(&a.expr, out)?;
            }
            Expr::Unary(u) => walk(&u.expr, out)?,
            Expr::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)?;
            }
            Expr::Paren(p) => walk(&p.expr, out)?,
            Expr::Subquery(s) => walk(&s.expr, out)?,
            Expr::Call(c) => {
                for a in &c.args.args {
                    walk(a, out)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&parse(query)?, &mut out)?;
    Ok(out)
}

/// The matchers of a series selector such as a `match[]` parameter (`up{job="a"}`).
pub fn series_selector(s: &str) -> Result<Vec<meshlens_model::LabelMatcher>, PromqlError> {
    match parse(s)? {
        promql_parser::parser::Expr::VectorSelector(vs) => eval::selector_matchers(&vs),
        _ => Err(PromqlError::BadData {
            message: format!("{s:?} is not a series selector"),
        }),
    }
}
