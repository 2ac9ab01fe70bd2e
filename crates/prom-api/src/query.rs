//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars`, `/api/v1/format_query`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use meshlens_ingest::exposition::format_value;
use meshlens_model::Labels;
use meshlens_promql::{Engine, QueryResult, Value};
use serde_json::{json, Map, Value as Json};

use crate::params::{now_ms, Params};
use crate::{success, ApiError, PromApiState};

pub(crate) fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|x| (x.name.clone(), Json::String(x.value.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn point(t: i64, v: f64) -> Json {
    json!([t as f64 / 1000.0, format_value(v)])
}

pub(crate) fn encode(r: &QueryResult) -> Json {
    let (kind, result) = match &r.value {
        Value::Scalar { t, v } => ("scalar", point(*t, *v)),
        Value::String { t, v } => ("string", json!([*t as f64 / 1000.0, v])),
        Value::Vector(v) => ("vector", Json::Array(v.iter().map(|s| json!({"metric": labels_json(&s.labels), "value": point(s.t, s.v)})).collect())),
        Value::Matrix(m) => (
            "matrix",
            Json::Array(
                m.iter()
                    .map(|s| json!({"metric": labels_json(&s.labels), "values": s.samples.iter().map(|p| point(p.t, p.v)).collect::<Vec<_>>()}))
                    .collect(),
            ),
        ),
    };
    json!({"resultType": kind, "result": result})
}

/// The engine to use: the shared one, or a copy with the request's shorter `timeout` that
/// shares its concurrency limit.
fn engine_for(state: &PromApiState, p: &Params) -> Result<Option<Engine>, ApiError> {
    match p.duration("timeout")? {
        Some(ms) if ms > 0 && (ms as u128) < state.engine.options().timeout.as_millis() => Ok(
            Some(state.engine.with_timeout(Duration::from_millis(ms as u64))),
        ),
        _ => Ok(None),
    }
}

/// Evaluates on the blocking pool with the request's engine and answers in the API shape.
async fn evaluate(
    s: Arc<PromApiState>,
    p: &Params,
    run: impl FnOnce(
            &Engine,
            &dyn meshlens_model::MetricReader,
        ) -> Result<QueryResult, meshlens_promql::PromqlError>
        + Send
        + 'static,
) -> Result<Response, ApiError> {
    let local = engine_for(&s, p)?;
    let r = crate::blocking(move || {
        let engine = local.as_ref().unwrap_or(&s.engine);
        Ok(run(engine, s.storage.as_ref())?)
    })
    .await?;
    // Annotations go beside `data`, as Prometheus returns them.
    let mut body = json!({"status": "success", "data": encode(&r)});
    if !r.warnings.is_empty() {
        body["warnings"] = json!(r.warnings);
    }
    if !r.infos.is_empty() {
        body["infos"] = json!(r.infos);
    }
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        body,
    )))
}

pub async fn instant(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let t = p.time("time", now_ms())?;
    evaluate(s, &p, move |e, st| e.instant_query(st, &q, t)).await
}

pub async fn range(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let start = p.required_time("start")?;
    let end = p.required_time("end")?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = p
        .duration("step")?
        .ok_or_else(|| ApiError::param("step", "missing"))?;
    if step <= 0 {
        return Err(ApiError::param("step", "zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    // Saturating: any float is a valid time, so the two may be at the ends of i64.
    if end.saturating_sub(start) / step > 11_000 {
        return Err(ApiError::bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    evaluate(s, &p, move |e, st| e.range_query(st, &q, start, end, step)).await
}

/// Exemplars are not stored yet: a valid query gets an empty list, as from a Prometheus
/// without exemplar storage.
pub async fn exemplars(p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?;
    meshlens_promql::parse(q)?;
    p.time("start", 0)?;
    p.time("end", 0)?;
    Ok(success(json!([])))
}

pub async fn format(p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?;
    Ok(success(Json::String(meshlens_promql::format_query(q)?)))
}
