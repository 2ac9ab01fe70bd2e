//! Span export: a bounded buffer filled by the request path with `try_send` (never waits),
//! drained by one background task that POSTs batches as Zipkin v2 JSON or OTLP/HTTP JSON.
//! When the collector is slow the buffer fills and further spans are dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;

/// One finished span, in the proxy's terms.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: String,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: String,
    /// `CLIENT` for an outbound (source) proxy, `SERVER` for an inbound one.
    pub kind: &'static str,
    pub start_us: u64,
    pub duration_us: u64,
    pub service_name: Arc<str>,
    pub tags: Vec<(&'static str, String)>,
    pub error: bool,
}

/// Wire format of the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// POST a JSON array to `…/api/v2/spans`.
    ZipkinV2,
    /// POST `ExportTraceServiceRequest` JSON to `…/v1/traces`.
    OtlpJson,
}

/// Where and how spans go.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub url: hyper::Uri,
    pub format: ExportFormat,
    pub buffer: usize,
    pub batch: usize,
    pub timeout: Duration,
}

impl ExportConfig {
    /// Completes a collector base URL with the format's path when the URL has none.
    pub fn new(url: &str, format: ExportFormat) -> Result<Self, String> {
        let mut s = url.trim().to_string();
        if !s.contains("://") {
            s = format!("http://{s}");
        }
        let uri: hyper::Uri = s.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url:?}: only http:// collectors are supported"));
        }
        let path = uri.path();
        let uri = if path.is_empty() || path == "/" {
            let p = match format {
                ExportFormat::ZipkinV2 => "/api/v2/spans",
                ExportFormat::OtlpJson => "/v1/traces",
            };
            format!("{}{p}", s.trim_end_matches('/'))
                .parse()
                .map_err(|e| format!("invalid URL {url:?}: {e}"))?
        } else {
            uri
        };
        Ok(ExportConfig {
            url: uri,
            format,
            buffer: 4096,
            batch: 256,
            timeout: Duration::from_secs(5),
        })
    }
}

/// The request path's end of the buffer.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanRecord>,
    metrics: Arc<Metrics>,
}

impl SpanSink {
    /// Hands a span to the exporter, or drops and counts it when the buffer is full.
    pub fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.metrics
                .counters
                .spans_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the exporter task; it flushes what is buffered when `shutdown` turns true.
pub fn start(
    cfg: ExportConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> (SpanSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<SpanRecord>(cfg.buffer.max(1));
    let sink = SpanSink {
        tx,
        metrics: metrics.clone(),
    };
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let task = tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                s = rx.recv() => s,
                _ = shutdown.changed() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < cfg.batch {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            post(&client, &cfg, &metrics, &batch).await;
        }
        // Final flush of what is still buffered.
        let mut batch = Vec::new();
        while let Ok(s) = rx.try_recv() {
            batch.push(s);
        }
        if !batch.is_empty() {
            post(&client, &cfg, &metrics, &batch).await;
        }
    });
    (sink, task)
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    cfg: &ExportConfig,
    metrics: &Metrics,
    batch: &[SpanRecord],
) {
    let body = match cfg.format {
        ExportFormat::ZipkinV2 => zipkin_json(batch),
        ExportFormat::OtlpJson => otlp_json(batch),
    };
    let req = hyper::Request::post(cfg.url.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static request parts");
    let res = tokio::time::timeout(cfg.timeout, async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {status}"))
        }
    })
    .await;
    let c = &metrics.counters;
    match res {
        Ok(Ok(())) => {
            c.spans_sent
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            c.span_export_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(url = %cfg.url, error = %e, "span export failed");
        }
        Err(_) => {
            c.span_export_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(url = %cfg.url, "span export timed out");
        }
    }
}

/// Zipkin v2 JSON (`[{traceId, id, parentId, kind, name, timestamp, duration, …}]`).
pub fn zipkin_json(spans: &[SpanRecord]) -> Vec<u8> {
    let arr: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut tags = serde_json::Map::new();
            for (k, v) in &s.tags {
                tags.insert((*k).to_string(), Value::String(v.clone()));
            }
            if s.error {
                tags.insert("error".into(), Value::String("true".into()));
            }
            let mut o = json!({
                "traceId": s.trace_id,
                "id": format!("{:016x}", s.id),
                "kind": s.kind,
                "name": s.name,
                "timestamp": s.start_us,
                "duration": s.duration_us.max(1),
                "localEndpoint": {"serviceName": &*s.service_name},
                "tags": tags,
            });
            if let Some(p) = s.parent_id {
                o["parentId"] = Value::String(format!("{p:016x}"));
            }
            o
        })
        .collect();
    serde_json::to_vec(&arr).unwrap_or_default()
}

/// OTLP/HTTP JSON, one resource per service name.
pub fn otlp_json(spans: &[SpanRecord]) -> Vec<u8> {
    let mut by_service: Vec<(Arc<str>, Vec<Value>)> = Vec::new();
    for s in spans {
        let trace_id = format!("{:0>32}", s.trace_id);
        let mut attrs: Vec<Value> = s
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect();
        if s.error {
            attrs.push(json!({"key": "error", "value": {"stringValue": "true"}}));
        }
        let mut span = json!({
            "traceId": trace_id,
            "spanId": format!("{:016x}", s.id),
            "name": s.name,
            "kind": if s.kind == "CLIENT" { 3 } else { 2 },
            "startTimeUnixNano": (s.start_us * 1000).to_string(),
            "endTimeUnixNano": ((s.start_us + s.duration_us) * 1000).to_string(),
            "attributes": attrs,
            "status": {"code": if s.error { 2 } else { 0 }},
        });
        if let Some(p) = s.parent_id {
            span["parentSpanId"] = Value::String(format!("{p:016x}"));
        }
        match by_service.iter_mut().find(|(n, _)| *n == s.service_name) {
            Some((_, v)) => v.push(span),
            None => by_service.push((s.service_name.clone(), vec![span])),
        }
    }
    let resource_spans: Vec<Value> = by_service
        .into_iter()
        .map(|(svc, spans)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": &*svc}}]},
                "scopeSpans": [{"scope": {"name": "meshlens-proxy"}, "spans": spans}],
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceSpans": resource_spans })).unwrap_or_default()
}
