//! `/api/v1/query` for the foundation: plain and range selectors and
//! `count_over_time(selector[range])`, with PromQL's lookback, staleness and left-open ranges,
//! in Prometheus's JSON shape. The PromQL engine replaces this evaluation when it lands.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Form;
use meshlens_ingest::exposition::format_value;
use meshlens_model::{is_stale_nan, LabelMatcher, Labels, MatchOp, SeriesSamples};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::{json, Value};

use super::{success, ApiError, AppState};
use crate::timefmt;

const LOOKBACK_MS: i64 = 5 * 60 * 1000;

pub async fn instant_get(
    State(s): State<Arc<AppState>>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    instant(s, p).await
}

pub async fn instant_post(
    State(s): State<Arc<AppState>>,
    Form(p): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    instant(s, p).await
}

async fn instant(s: Arc<AppState>, p: HashMap<String, String>) -> Result<Response, ApiError> {
    let q = p
        .get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))?
        .clone();
    let t = match p.get("time") {
        Some(t) => timefmt::parse_time(t)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"time\": {e}")))?,
        None => timefmt::now_ms(),
    };
    let reader = s.reader.clone();
    let data = tokio::task::spawn_blocking(move || evaluate(reader.as_ref(), &q, t))
        .await
        .map_err(|e| ApiError::bad_data(format!("query failed: {e}")))??;
    Ok(success(data))
}

fn evaluate(r: &dyn meshlens_model::MetricReader, q: &str, t: i64) -> Result<Value, ApiError> {
    let expr = parser::parse(q)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let unsupported = || {
        ApiError::bad_data(
            "this build evaluates selectors and count_over_time(selector[range]) only",
        )
    };
    match strip_parens(&expr) {
        Expr::NumberLiteral(n) => {
            Ok(json!({"resultType": "scalar", "result": [t as f64 / 1000.0, format_value(n.val)]}))
        }
        Expr::VectorSelector(vs) => {
            let (series, at) = fetch(r, vs, t, LOOKBACK_MS)?;
            let result: Vec<Value> = series
                .iter()
                .filter_map(|s| {
                    let last = s.samples.iter().rev().find(|x| x.t <= at)?;
                    (!is_stale_nan(last.v)).then(|| json!({"metric": labels_json(&s.labels), "value": [t as f64 / 1000.0, format_value(last.v)]}))
                })
                .collect();
            Ok(json!({"resultType": "vector", "result": result}))
        }
        Expr::MatrixSelector(ms) => {
            let (series, _) = fetch(r, &ms.vs, t, ms.range.as_millis() as i64)?;
            let result: Vec<Value> = series
                .iter()
                .map(|s| {
                    let values: Vec<Value> = s
                        .samples
                        .iter()
                        .filter(|x| !is_stale_nan(x.v))
                        .map(|x| json!([x.t as f64 / 1000.0, format_value(x.v)]))
                        .collect();
                    json!({"metric": labels_json(&s.labels), "values": values})
                })
                .filter(|v| v["values"].as_array().is_some_and(|a| !a.is_empty()))
                .collect();
            Ok(json!({"resultType": "matrix", "result": result}))
        }
        Expr::Call(c) if c.func.name == "count_over_time" && c.args.args.len() == 1 => {
            let Expr::MatrixSelector(ms) = strip_parens(&c.args.args[0]) else {
                return Err(unsupported());
            };
            let (series, _) = fetch(r, &ms.vs, t, ms.range.as_millis() as i64)?;
            let result: Vec<Value> = series
                .iter()
                .filter_map(|s| {
                    let n = s.samples.iter().filter(|x| !is_stale_nan(x.v)).count();
                    (n > 0).then(|| json!({"metric": labels_json(&s.labels.without_metric_name()), "value": [t as f64 / 1000.0, format_value(n as f64)]}))
                })
                .collect();
            Ok(json!({"resultType": "vector", "result": result}))
        }
        _ => Err(unsupported()),
    }
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

/// Samples in `(at - range, at]`, with `at` the evaluation time moved by offset and `@`.
fn fetch(
    r: &dyn meshlens_model::MetricReader,
    vs: &VectorSelector,
    t: i64,
    range: i64,
) -> Result<(Vec<SeriesSamples>, i64), ApiError> {
    let mut matchers = Vec::new();
    if let Some(n) = &vs.name {
        matchers.push(LabelMatcher::equal("__name__", n.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        matchers.push(
            LabelMatcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| ApiError::bad_data(e.to_string()))?,
        );
    }
    let mut at = t;
    if let Some(promql_parser::parser::AtModifier::At(ts)) = &vs.at {
        at = ts
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(at);
    }
    if let Some(promql_parser::parser::Offset::Pos(d)) = &vs.offset {
        at -= d.as_millis() as i64;
    }
    if let Some(promql_parser::parser::Offset::Neg(d)) = &vs.offset {
        at += d.as_millis() as i64;
    }
    let series = r.select(&matchers, at - range + 1, at)?;
    Ok((series, at))
}

pub fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.clone(), Value::String(x.value.clone())))
            .collect(),
    )
}
