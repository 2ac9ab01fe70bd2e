//! PromQL evaluation over the metrics storage trait (`meshlens_model::MetricReader`), with
//! Prometheus 3 semantics: left-open ranges, 5-minute lookback, staleness markers.
//! Parsing is the `promql-parser` crate's.
//!
//! Design decision: values are columnar. An instant-vector expression evaluates, for all
//! steps of a query at once, to series that each hold one optional value per step. Label
//! work (vector matching, grouping, label functions) is then done once per series instead of
//! once per step, and each selector reads storage once for the whole query range.

mod error;
mod eval;
mod functions;
mod value;

use std::time::Duration;

pub use error::PromqlError;
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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
        }
    }
}

pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn instant_query(
        &self,
        storage: &dyn MetricReader,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        let expr = parse(query)?;
        eval::run(storage, &self.opts, &expr, time_ms, time_ms, 0, true)
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
        if (end_ms - start_ms) / step_ms > 11_000 {
            return Err(PromqlError::BadData { message: "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into() });
        }
        let expr = parse(query)?;
        eval::run(storage, &self.opts, &expr, start_ms, end_ms, step_ms, false)
    }
}

/// Parses a query; errors say `line:column: parse error: reason`, as Prometheus's do.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, PromqlError> {
    let first = promql_parser::parser::parse(query);
    // Prometheus 2.x's name for double_exponential_smoothing is still accepted.
    let first = match first {
        Err(e) if e.contains("'holt_winters'") => {
            promql_parser::parser::parse(&rename_holt_winters(query)).map_err(|_| e)
        }
        other => other,
    };
    first.map_err(|reason| {
        let at = error_position(query);
        let line = query[..at].matches('\n').count() + 1;
        let col = at - query[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
        let reason = match query[at..].split_whitespace().next() {
            Some(tok) if reason == "invalid promql query" => format!("unexpected {tok:?}"),
            _ => reason,
        };
        PromqlError::Parse {
            message: format!("{line}:{col}: parse error: {reason}"),
        }
    })
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
/// only for ending too early (the parser itself reports no positions).
fn error_position(query: &str) -> usize {
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
    let mut ends: Vec<usize> = query.char_indices().map(|(i, _)| i).skip(1).collect();
    ends.push(query.len());
    for &k in ends.iter().rev() {
        match promql_parser::parser::parse(&query[..k]) {
            Ok(_) => return k.min(query.len()),
            Err(e) if INCOMPLETE.iter().any(|m| e.contains(m)) => return k,
            Err(_) => {}
        }
    }
    0
}

/// The query, prettified, for `/api/v1/format_query`.
pub fn format_query(query: &str) -> Result<String, PromqlError> {
    Ok(parse(query)?.prettify())
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

/// The matchers of a series selector such as a `match[]` parameter (`up{job="a"}`).
pub fn series_selector(s: &str) -> Result<Vec<meshlens_model::LabelMatcher>, PromqlError> {
    match parse(s)? {
        promql_parser::parser::Expr::VectorSelector(vs) => eval::selector_matchers(&vs),
        _ => Err(PromqlError::BadData {
            message: format!("{s:?} is not a series selector"),
        }),
    }
}
