//! The Zipkin v2 query API (`/api/v2/...`), as the Zipkin server answers it: names sorted
//! and lower-case, `limit` 10 and `lookback` one day by default, 404 for an unknown trace.
//!
//! Searches are bounded (see `SearchBounds`): a `limit` above the maximum (10,000 by
//! default) is lowered to it and a `lookback` wider than the maximum window (a week, or the
//! span retention) searches the newest part of the range, so old clients keep working;
//! values that are not integers are a 400 naming the parameter.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use meshlens_ingest::zipkin::{write_json_span, write_json_string};
use meshlens_model::{time::now_ms, Span, SpanReader, StorageError, TraceId, TraceQuery};

use crate::params::{Query, SearchBounds};
use crate::TraceApiState;

pub(crate) const DEFAULT_LOOKBACK_MS: i64 = 86_400_000;

/// Runs a read off the async runtime (store reads may touch disk).
pub(crate) async fn read<T: Send + 'static>(
    state: &Arc<TraceApiState>,
    f: impl FnOnce(&dyn SpanReader) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Response> {
    let s = state.clone();
    match tokio::task::spawn_blocking(move || f(s.reader.as_ref())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((
            crate::ingest::storage_status(&e),
            format!("reading spans failed: {e}"),
        )
            .into_response()),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read task failed: {e}"),
        )
            .into_response()),
    }
}

pub(crate) fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

pub(crate) fn string_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(&mut out, s);
    }
    out.push(']');
    out
}

/// A trace's spans in a stable order: by timestamp, then id.
pub(crate) fn sort_trace(spans: &mut [Span]) {
    spans.sort_by_key(|s| (s.timestamp.unwrap_or(0), s.parent_id.is_some(), s.id));
}

fn trace_json(out: &mut String, spans: &[Span]) {
    out.push('[');
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_span(out, s);
    }
    out.push(']');
}

fn traces_json(traces: &mut [Vec<Span>]) -> String {
    let mut out = String::from("[");
    for (i, t) in traces.iter_mut().enumerate() {
        if i > 0 {
            out.push(',');
        }
        sort_trace(t);
        trace_json(&mut out, t);
    }
    out.push(']');
    out
}

pub async fn services(State(s): State<Arc<TraceApiState>>) -> Response {
    match read(&s, |r| r.service_names()).await {
        Ok(names) => json(string_list(&names)),
        Err(r) => r,
    }
}

pub async fn span_names(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let service = match q.present("serviceName") {
        Ok(v) => v.to_lowercase(),
        Err(e) => return bad_request(e),
    };
    match read(&s, move |r| r.span_names(&service)).await {
        Ok(names) => json(string_list(&names)),
        Err(r) => r,
    }
}

pub async fn remote_services(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let service = match q.present("serviceName") {
        Ok(v) => v.to_lowercase(),
        Err(e) => return bad_request(e),
    };
    match read(&s, move |r| r.remote_service_names(&service)).await {
        Ok(names) => json(string_list(&names)),
        Err(r) => r,
    }
}

/// Reads the `/api/v2/traces` parameters. Values the spec allows but that select nothing
/// (a window ending before the epoch, a limit of zero, a maximum below the minimum) give
/// `None`: an empty answer rather than an error.
pub(crate) fn trace_query(q: &Query, bounds: SearchBounds) -> Result<Option<TraceQuery>, String> {
    let end_ts = q.int("endTs")?.unwrap_or_else(now_ms);
    let lookback = q.int("lookback")?.unwrap_or(DEFAULT_LOOKBACK_MS);
    let limit = q.int("limit")?.unwrap_or(10);
    let min_duration = q.int("minDuration")?.filter(|v| *v > 0).map(|v| v as u64);
    let max_duration = q.int("maxDuration")?.map(|v| v.max(0) as u64);
    if end_ts <= 0 || lookback <= 0 || limit <= 0 {
        return Ok(None);
    }
    if let (Some(min), Some(max)) = (min_duration, max_duration) {
        if max < min {
            return Ok(None);
        }
    }
    let annotation_query = q
        .get("annotationQuery")
        .map(parse_annotation_query)
        .unwrap_or_default();
    let lower = |name: &str| q.get(name).map(str::to_lowercase).filter(|v| v != "all");
    Ok(Some(TraceQuery {
        service_name: lower("serviceName"),
        remote_service_name: lower("remoteServiceName"),
        span_name: lower("spanName"),
        annotation_query,
        min_duration,
        max_duration,
        end_ts,
        lookback: bounds.lookback(lookback.min(end_ts)),
        limit: bounds.limit(limit),
    }))
}

/// `error and http.method=GET` -> [("error", None), ("http.method", Some("GET"))].
fn parse_annotation_query(s: &str) -> Vec<(String, Option<String>)> {
    s.split(" and ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (t.to_string(), None),
        })
        .collect()
}

pub async fn traces(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let query = match trace_query(&Query::from_uri(&uri), s.search_bounds()) {
        Ok(Some(q)) => q,
        Ok(None) => return json("[]".into()),
        Err(e) => return bad_request(e),
    };
    match read(&s, move |r| r.find_traces(&query)).await {
        Ok(mut traces) => json(traces_json(&mut traces)),
        Err(r) => r,
    }
}

/// 1 to 32 hex digits (shorter ids are left-padded, as Zipkin does).
pub(crate) fn parse_trace_id(id: &str) -> Result<TraceId, String> {
    TraceId::parse_hex(id).ok_or_else(|| format!("trace id {id:?} is not 16 or 32 hex digits"))
}

pub async fn trace(State(s): State<Arc<TraceApiState>>, Path(id): Path<String>) -> Response {
    let id = match parse_trace_id(&id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match read(&s, move |r| r.trace(&id)).await {
        Ok(spans) if spans.is_empty() => {
            (StatusCode::NOT_FOUND, format!("trace {id} not found")).into_response()
        }
        Ok(mut spans) => {
            sort_trace(&mut spans);
            let mut out = String::new();
            trace_json(&mut out, &spans);
            json(out)
        }
        Err(r) => r,
    }
}

pub async fn trace_many(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let raw = match q.required("traceIds") {
        Ok(v) => v.to_string(),
        Err(e) => return bad_request(e),
    };
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.len() < 16 {
            return bad_request(format!(
                "traceIds: trace id {part:?} is shorter than 16 hex digits"
            ));
        }
        match parse_trace_id(part) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(e) => return bad_request(format!("traceIds: {e}")),
        }
    }
    if ids.is_empty() {
        return bad_request("traceIds: at least one trace id is required".into());
    }
    let found = read(&s, move |r| {
        let mut out = Vec::new();
        for id in &ids {
            let spans = r.trace(id)?;
            if !spans.is_empty() {
                out.push(spans);
            }
        }
        Ok(out)
    })
    .await;
    match found {
        Ok(mut traces) => json(traces_json(&mut traces)),
        Err(r) => r,
    }
}

pub async fn dependencies(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let end_ts = match q.required("endTs").and_then(|_| q.int("endTs")) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return bad_request(e),
    };
    let lookback = match q.int("lookback") {
        Ok(v) => v.unwrap_or(DEFAULT_LOOKBACK_MS),
        Err(e) => return bad_request(e),
    };
    if end_ts <= 0 || lookback <= 0 {
        return json("[]".into());
    }
    let lookback = s.search_bounds().lookback(lookback.min(end_ts));
    match read(&s, move |r| r.dependencies(end_ts, lookback)).await {
        Ok(links) => {
            let items: Vec<_> = links
                .iter()
                .map(|l| {
                    let mut o = serde_json::json!({
                        "parent": l.parent, "child": l.child, "callCount": l.call_count,
                    });
                    if l.error_count > 0 {
                        o["errorCount"] = l.error_count.into();
                    }
                    o
                })
                .collect();
            json(serde_json::Value::from(items).to_string())
        }
        Err(r) => r,
    }
}

pub async fn autocomplete_keys(State(s): State<Arc<TraceApiState>>) -> Response {
    match read(&s, |r| r.autocomplete_keys()).await {
        Ok(keys) => json(string_list(&keys)),
        Err(r) => r,
    }
}

pub async fn autocomplete_values(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let key = match q.present("key") {
        Ok(v) => v.to_string(),
        Err(e) => return bad_request(e),
    };
    match read(&s, move |r| r.autocomplete_values(&key)).await {
        Ok(values) => json(string_list(&values)),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(qs: &str) -> Query {
        Query::from_uri(&format!("/api/v2/traces?{qs}").parse().expect("uri"))
    }

    const BOUNDS: SearchBounds = SearchBounds {
        max_window_ms: 7 * 86_400_000,
        max_limit: 10_000,
    };

    #[test]
    fn limit_above_the_maximum_is_clamped() {
        let q = trace_query(&query("limit=1000000000"), BOUNDS)
            .expect("valid")
            .expect("selects");
        assert_eq!(q.limit, 10_000);
        let q = trace_query(&query("limit=25"), BOUNDS).unwrap().unwrap();
        assert_eq!(q.limit, 25);
    }

    #[test]
    fn lookback_wider_than_the_window_keeps_its_newest_part() {
        let end = 1_700_000_000_000i64;
        let q = trace_query(
            &query(&format!("endTs={end}&lookback={}", 365 * 86_400_000i64)),
            BOUNDS,
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.end_ts, end);
        assert_eq!(q.lookback, 7 * 86_400_000);
    }

    #[test]
    fn values_that_are_not_integers_name_the_parameter() {
        for (qs, name) in [
            ("limit=ten", "limit"),
            ("endTs=yesterday", "endTs"),
            ("lookback=99999999999999999999999", "lookback"),
        ] {
            let e = trace_query(&query(qs), BOUNDS).expect_err(qs);
            assert!(e.contains(name), "{qs}: {e}");
        }
    }
}
