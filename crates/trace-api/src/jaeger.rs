//! The Jaeger query API that Grafana's Jaeger data source calls: the classic `/api/...`
//! JSON (data/total/limit/offset/errors envelope) and the newer `/api/v3/...` with
//! OTLP-shaped traces.
//!
//! Searches are bounded as the Zipkin API's are: a `limit` (`query.search_depth`) above the
//! maximum is lowered to it and a time range wider than the maximum window keeps its newest
//! part; a start after the end, a negative time or a value that does not parse is a 400
//! naming the parameter.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use meshlens_ingest::zipkin::write_json_string;
use meshlens_model::{time::now_ms, Span, TraceId, TraceQuery};

use crate::params::{go_duration_us, Query, SearchBounds};
use crate::zipkin_api::{json, parse_trace_id, read, sort_trace, string_list, DEFAULT_LOOKBACK_MS};
use crate::TraceApiState;

fn envelope(data: &str, total: usize) -> Response {
    json(format!(
        "{{\"data\":{data},\"total\":{total},\"limit\":0,\"offset\":0,\"errors\":null}}"
    ))
}

fn error(status: StatusCode, msg: &str) -> Response {
    let mut body = format!(
        "{{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{{\"code\":{},\"msg\":",
        status.as_u16()
    );
    write_json_string(&mut body, msg);
    body.push_str("}]}");
    (status, json(body)).into_response()
}

pub async fn services(State(s): State<Arc<TraceApiState>>) -> Response {
    match read(&s, |r| r.service_names()).await {
        Ok(names) => envelope(&string_list(&names), names.len()),
        Err(r) => r,
    }
}

pub async fn service_operations(
    State(s): State<Arc<TraceApiState>>,
    Path(service): Path<String>,
) -> Response {
    let service = service.to_lowercase();
    match read(&s, move |r| r.span_names(&service)).await {
        Ok(names) => envelope(&string_list(&names), names.len()),
        Err(r) => r,
    }
}

/// The operations of the `service` parameter, as Jaeger lists them (the span kind is not
/// kept per name, so it is left empty, as Jaeger does for unknown kinds).
async fn operation_items(
    s: &Arc<TraceApiState>,
    uri: &Uri,
) -> Result<Result<Vec<serde_json::Value>, Response>, &'static str> {
    let q = Query::from_uri(uri);
    let service = q
        .get("service")
        .map(str::to_lowercase)
        .ok_or("parameter service is required")?;
    Ok(read(s, move |r| r.span_names(&service)).await.map(|names| {
        names
            .iter()
            .map(|n| serde_json::json!({ "name": n, "spanKind": "" }))
            .collect()
    }))
}

pub async fn operations(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    match operation_items(&s, &uri).await {
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        Ok(Err(r)) => r,
        Ok(Ok(items)) => {
            let n = items.len();
            envelope(&serde_json::Value::from(items).to_string(), n)
        }
    }
}

/// Tags from `tags={"k":"v"}` (JSON) and repeated `tag=k:v`, as annotation-query terms.
fn tag_terms(
    q: &Query,
    json_param: &str,
    pair_param: &str,
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut terms = Vec::new();
    if let Some(raw) = q.get(json_param) {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
            .map_err(|e| format!("parameter {json_param}: not a JSON object of strings: {e}"))?;
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            terms.push(tag_term(k, v));
        }
    }
    for pair in q.all(pair_param) {
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| format!("parameter {pair_param}: {pair:?} is not key:value"))?;
        terms.push(tag_term(k.to_string(), v.to_string()));
    }
    Ok(terms)
}

/// `error=true` asks for spans that carry an error tag, whatever its text.
fn tag_term(k: String, v: String) -> (String, Option<String>) {
    if k == "error" && v == "true" {
        (k, None)
    } else {
        (k, Some(v))
    }
}

fn search_query(q: &Query, bounds: SearchBounds) -> Result<TraceQuery, String> {
    let service = q
        .get("service")
        .map(str::to_lowercase)
        .ok_or("parameter service is required")?;
    let end_us = q
        .non_negative("end")?
        .unwrap_or_else(|| now_ms().saturating_mul(1000));
    let lookback_ms = match (q.non_negative("start")?, q.get("lookback")) {
        (Some(start), _) if start > end_us => {
            return Err(format!(
                "parameter start: {start} is after the end of the range ({end_us})"
            ))
        }
        (Some(start), _) => ((end_us - start) / 1000).max(1),
        (None, Some(l)) if l != "custom" => go_duration_us(l)
            .map(|us| (us / 1000) as i64)
            .ok_or_else(|| format!("parameter lookback: {l:?} is not a duration"))?,
        _ => DEFAULT_LOOKBACK_MS,
    };
    let duration = |name: &str| -> Result<Option<u64>, String> {
        q.get(name)
            .map(|d| {
                go_duration_us(d)
                    .ok_or_else(|| format!("parameter {name}: {d:?} is not a duration"))
            })
            .transpose()
    };
    let limit = bounds.limit(q.positive("limit")?.unwrap_or(20));
    Ok(TraceQuery {
        service_name: Some(service),
        remote_service_name: None,
        span_name: q
            .get("operation")
            .map(str::to_lowercase)
            .filter(|o| o != "all"),
        annotation_query: tag_terms(q, "tags", "tag")?,
        min_duration: duration("minDuration")?,
        max_duration: duration("maxDuration")?,
        end_ts: end_us / 1000,
        lookback: bounds.lookback(lookback_ms),
        limit,
    })
}

pub async fn traces(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let ids: Vec<&str> = q.all("traceID").filter(|v| !v.is_empty()).collect();
    let found = if !ids.is_empty() {
        let mut parsed = Vec::new();
        for id in ids {
            match parse_trace_id(id) {
                Ok(id) => parsed.push(id),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            }
        }
        read(&s, move |r| {
            let mut out = Vec::new();
            for id in &parsed {
                let t = r.trace(id)?;
                if !t.is_empty() {
                    out.push(t);
                }
            }
            Ok(out)
        })
        .await
    } else {
        let query = match search_query(&q, s.search_bounds()) {
            Ok(q) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        read(&s, move |r| r.find_traces(&query)).await
    };
    match found {
        Ok(mut traces) => {
            let mut out = String::from("[");
            for (i, t) in traces.iter_mut().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                trace_json(&mut out, t);
            }
            out.push(']');
            envelope(&out, traces.len())
        }
        Err(r) => r,
    }
}

pub async fn trace(State(s): State<Arc<TraceApiState>>, Path(id): Path<String>) -> Response {
    let id = match parse_trace_id(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match read(&s, move |r| r.trace(&id)).await {
        Ok(t) if t.is_empty() => error(StatusCode::NOT_FOUND, "trace not found"),
        Ok(mut t) => {
            let mut out = String::from("[");
            trace_json(&mut out, &mut t);
            out.push(']');
            envelope(&out, 1)
        }
        Err(r) => r,
    }
}

pub async fn dependencies(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let q = Query::from_uri(&uri);
    let (end_ts, lookback) = match (q.positive("endTs"), q.positive("lookback")) {
        (Ok(e), Ok(l)) => (e.unwrap_or_else(now_ms), l.unwrap_or(DEFAULT_LOOKBACK_MS)),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let lookback = s.search_bounds().lookback(lookback);
    match read(&s, move |r| r.dependencies(end_ts, lookback)).await {
        Ok(links) => {
            let items: Vec<_> = links
                .iter()
                .map(|l| serde_json::json!({"parent": l.parent, "child": l.child, "callCount": l.call_count}))
                .collect();
            envelope(&serde_json::Value::from(items).to_string(), links.len())
        }
        Err(r) => r,
    }
}

fn jaeger_trace_id(id: &TraceId) -> String {
    id.to_string()
}

/// One trace in Jaeger's JSON model: spans with references, tags and logs, and one
/// process per service.
fn trace_json(out: &mut String, spans: &mut [Span]) {
    sort_trace(spans);
    let mut services: Vec<&str> = Vec::new();
    for s in spans.iter() {
        let svc = s.local_service().unwrap_or("");
        if !services.contains(&svc) {
            services.push(svc);
        }
    }
    let trace_id = spans
        .first()
        .map(|s| jaeger_trace_id(&s.trace_id))
        .unwrap_or_default();
    let _ = write!(out, "{{\"traceID\":\"{trace_id}\",\"spans\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let process = services
            .iter()
            .position(|x| *x == s.local_service().unwrap_or(""))
            .unwrap_or(0)
            + 1;
        let _ = write!(
            out,
            "{{\"traceID\":\"{trace_id}\",\"spanID\":\"{:016x}\",\"flags\":1,\"operationName\":",
            s.id
        );
        write_json_string(out, s.name.as_deref().unwrap_or(""));
        out.push_str(",\"references\":[");
        if let Some(p) = s.parent_id {
            let _ = write!(
                out,
                "{{\"refType\":\"CHILD_OF\",\"traceID\":\"{trace_id}\",\"spanID\":\"{p:016x}\"}}"
            );
        }
        let _ = write!(
            out,
            "],\"startTime\":{},\"duration\":{},\"tags\":[",
            s.timestamp.unwrap_or(0),
            s.duration.unwrap_or(0)
        );
        let mut tags: Vec<(&str, String)> = s
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Some(k) = s.kind {
            tags.push(("span.kind", k.as_str().to_ascii_lowercase()));
        }
        if let Some(r) = &s.remote_endpoint {
            if let Some(n) = &r.service_name {
                tags.push(("peer.service", n.clone()));
            }
            if let Some(ip) = r.ipv4.as_ref().or(r.ipv6.as_ref()) {
                tags.push(("peer.ipv4", ip.clone()));
            }
            if let Some(p) = r.port {
                tags.push(("peer.port", p.to_string()));
            }
        }
        for (j, (k, v)) in tags.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"key\":");
            write_json_string(out, k);
            if *k == "error" {
                // Jaeger marks errors with a boolean tag; keep Zipkin's message beside it.
                out.push_str(",\"type\":\"bool\",\"value\":true}");
                if !v.is_empty() {
                    out.push_str(",{\"key\":\"error.message\",\"type\":\"string\",\"value\":");
                    write_json_string(out, v);
                    out.push('}');
                }
                continue;
            }
            out.push_str(",\"type\":\"string\",\"value\":");
            write_json_string(out, v);
            out.push('}');
        }
        out.push_str("],\"logs\":[");
        for (j, a) in s.annotations.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"timestamp\":{},\"fields\":[{{\"key\":\"event\",\"type\":\"string\",\"value\":",
                a.timestamp
            );
            write_json_string(out, &a.value);
            out.push_str("}]}");
        }
        let _ = write!(out, "],\"processID\":\"p{process}\",\"warnings\":null}}");
    }
    out.push_str("],\"processes\":{");
    for (i, svc) in services.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"p{}\":{{\"serviceName\":", i + 1);
        write_json_string(out, svc);
        out.push_str(",\"tags\":[]}");
    }
    out.push_str("},\"warnings\":null}");
}

// -------------------------------------------------------------------------------------
// api_v3
// -------------------------------------------------------------------------------------

fn v3_error(status: StatusCode, msg: &str) -> Response {
    let mut body = format!(
        "{{\"error\":{{\"httpCode\":{},\"message\":",
        status.as_u16()
    );
    write_json_string(&mut body, msg);
    body.push_str("}}");
    (status, json(body)).into_response()
}

pub async fn v3_services(State(s): State<Arc<TraceApiState>>) -> Response {
    match read(&s, |r| r.service_names()).await {
        Ok(names) => json(format!("{{\"services\":{}}}", string_list(&names))),
        Err(r) => r,
    }
}

pub async fn v3_operations(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    match operation_items(&s, &uri).await {
        Err(msg) => v3_error(StatusCode::BAD_REQUEST, msg),
        Ok(Err(r)) => r,
        Ok(Ok(items)) => json(serde_json::json!({ "operations": items }).to_string()),
    }
}

fn v3_query(q: &Query, bounds: SearchBounds) -> Result<TraceQuery, String> {
    let service = q
        .get("query.service_name")
        .map(str::to_lowercase)
        .ok_or("parameter query.service_name is required")?;
    let time = |name: &str| -> Result<Option<i64>, String> {
        q.get(name)
            .map(|v| {
                meshlens_model::time::parse_time(v)
                    .ok_or_else(|| format!("parameter {name}: {v:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let end = time("query.start_time_max")?.unwrap_or_else(now_ms);
    let start = time("query.start_time_min")?.unwrap_or(end - DEFAULT_LOOKBACK_MS);
    if start > end {
        return Err("parameter query.start_time_min is after query.start_time_max".into());
    }
    let duration = |name: &str| -> Result<Option<u64>, String> {
        q.get(name)
            .map(|d| {
                go_duration_us(d)
                    .ok_or_else(|| format!("parameter {name}: {d:?} is not a duration"))
            })
            .transpose()
    };
    Ok(TraceQuery {
        service_name: Some(service),
        remote_service_name: None,
        span_name: q.get("query.operation_name").map(str::to_lowercase),
        annotation_query: tag_terms(q, "query.attributes", "query.attribute")?,
        min_duration: duration("query.duration_min")?,
        max_duration: duration("query.duration_max")?,
        end_ts: end,
        lookback: bounds.lookback(end.saturating_sub(start)),
        limit: bounds.limit(q.positive("query.search_depth")?.unwrap_or(20)),
    })
}

pub async fn v3_traces(State(s): State<Arc<TraceApiState>>, uri: Uri) -> Response {
    let query = match v3_query(&Query::from_uri(&uri), s.search_bounds()) {
        Ok(q) => q,
        Err(e) => return v3_error(StatusCode::BAD_REQUEST, &e),
    };
    match read(&s, move |r| r.find_traces(&query)).await {
        Ok(traces) => {
            let all: Vec<Span> = traces.into_iter().flatten().collect();
            json(format!(
                "{{\"result\":{}}}",
                crate::otlp_json::resource_spans(&all)
            ))
        }
        Err(r) => r,
    }
}

pub async fn v3_trace(State(s): State<Arc<TraceApiState>>, Path(id): Path<String>) -> Response {
    let id = match parse_trace_id(&id) {
        Ok(id) => id,
        Err(e) => return v3_error(StatusCode::BAD_REQUEST, &e),
    };
    match read(&s, move |r| r.trace(&id)).await {
        Ok(t) if t.is_empty() => v3_error(StatusCode::NOT_FOUND, "trace not found"),
        Ok(mut t) => {
            sort_trace(&mut t);
            json(format!(
                "{{\"result\":{}}}",
                crate::otlp_json::resource_spans(&t)
            ))
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(qs: &str) -> Query {
        Query::from_uri(&format!("/api/traces?{qs}").parse().expect("uri"))
    }

    const BOUNDS: SearchBounds = SearchBounds {
        max_window_ms: 7 * 86_400_000,
        max_limit: 10_000,
    };
    const DAY_US: i64 = 86_400_000_000;

    #[test]
    fn search_range_and_limit_are_capped() {
        let end = 1_700_000_000_000_000i64;
        let q = search_query(
            &query(&format!(
                "service=a&start={}&end={end}&limit=50000",
                end - 90 * DAY_US
            )),
            BOUNDS,
        )
        .expect("valid");
        assert_eq!(q.end_ts, end / 1000);
        assert_eq!(q.lookback, 7 * 86_400_000);
        assert_eq!(q.limit, 10_000);
        let q = search_query(&query("service=a&lookback=720h"), BOUNDS).expect("valid");
        assert_eq!(q.lookback, 7 * 86_400_000);
    }

    #[test]
    fn bad_range_values_name_the_parameter() {
        for (qs, name) in [
            ("service=a&start=10&end=5", "start"),
            ("service=a&start=-9223372036854775808", "start"),
            ("service=a&end=-1", "end"),
            ("service=a&end=soon", "end"),
            ("service=a&limit=0", "limit"),
            ("service=a&lookback=forever", "lookback"),
        ] {
            let e = search_query(&query(qs), BOUNDS).expect_err(qs);
            assert!(e.contains(name), "{qs}: {e}");
        }
    }

    #[test]
    fn v3_search_depth_and_range_are_capped() {
        let q = v3_query(
            &query(
                "query.service_name=a&query.start_time_min=2020-01-01T00:00:00Z\
                 &query.start_time_max=2024-01-01T00:00:00Z&query.search_depth=99999999",
            ),
            BOUNDS,
        )
        .expect("valid");
        assert_eq!(q.lookback, 7 * 86_400_000);
        assert_eq!(q.limit, 10_000);
        let e = v3_query(
            &query(
                "query.service_name=a&query.start_time_min=2024-01-02T00:00:00Z\
                 &query.start_time_max=2024-01-01T00:00:00Z",
            ),
            BOUNDS,
        )
        .expect_err("start after end");
        assert!(e.contains("query.start_time_min"), "{e}");
    }
}
