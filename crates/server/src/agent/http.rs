//! The agent's HTTP routes: remote write, OTLP metrics (the server's transport over the
//! buffer), the two span ingest paths (served by trace-api's handlers over the buffer
//! writers), its own metrics, health and readiness.
//!
//! Status semantics are the server's, so senders behave the same: 2xx only once the data is
//! durable in the buffer; 400 for bodies that cannot be decoded (nothing of them is
//! buffered); 413 for bodies over the limits; 503 while the buffer is full (senders retry).
//! Remote write 1.0 and 2.0 are told apart and answered as the server does (415 for another
//! message, the written-count headers, 2.0's bad series refused alone); either is buffered
//! as 1.0 records, which the forwarder sends on as each hub is set to. 2.0's created
//! timestamps and OTLP start times are buffered with their series, for hubs sent 2.0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, post_service};
use axum::Router;
use meshlens_forward::{AppendError, Forwarder};
use meshlens_ingest::otlp::metrics as otlp;
use meshlens_ingest::remote_write::{self, v2, DecodeError, ProtobufMessage};
use meshlens_trace_api::{TraceApiState, TraceCounters};
use parking_lot::Mutex;

use super::writer::BufferMetricWriter;
use crate::api::otlp_metrics::{self, MetricsSink, Outcome};
use crate::api::write::{self, Answer, Unwritten, Written};
use crate::self_metrics::{CounterVec, SelfMetrics};

/// Paths whose requests are counted by status code.
const INGEST_PATHS: [&str; 4] = [
    "/api/v1/write",
    "/v1/metrics",
    "/api/v2/spans",
    "/v1/traces",
];

pub struct AgentState {
    pub cluster: String,
    pub agent_id: String,
    pub metrics_writer: Arc<BufferMetricWriter>,
    pub max_write_body_bytes: usize,
    pub max_write_decompressed_bytes: usize,
    /// Scrape and remote-write counters (the server's names).
    pub self_metrics: Arc<SelfMetrics>,
    pub trace_counters: Arc<TraceCounters>,
    pub access: Arc<meshlens_access::AccessMetrics>,
    /// Ingest requests by path and status code.
    pub requests: CounterVec,
    /// Taken at shutdown to drain; None afterwards.
    pub forwarder: Mutex<Option<Forwarder>>,
    pub ready: AtomicBool,
    /// How OTLP metrics become series (`--otlp.promote-resource-attributes`).
    pub otlp_metrics: otlp::Settings,
}

/// The main listener's app. `zipkin` and `otlp` differ only in the tag their writer stamps.
pub fn router(
    state: Arc<AgentState>,
    zipkin: Arc<TraceApiState>,
    otlp: Arc<TraceApiState>,
) -> Router {
    let write_limit = state.max_write_body_bytes;
    Router::new()
        .route(
            "/api/v1/write",
            post(remote_write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route(
            "/v1/metrics",
            post(otlp_metrics::http::<AgentState>).layer(DefaultBodyLimit::max(write_limit)),
        )
        .route("/metrics", get(metrics))
        .route(
            "/-/healthy",
            get(|| async { "meshlens agent is Healthy.\n" }),
        )
        .route("/-/ready", get(ready))
        .route(
            "/api/v2/spans",
            post_service(meshlens_trace_api::router(zipkin)),
        )
        .route(
            "/v1/traces",
            post_service(meshlens_trace_api::otlp_http_app(otlp)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(s): State<Arc<AgentState>>, req: Request, next: Next) -> Response {
    let path = INGEST_PATHS
        .iter()
        .find(|p| **p == req.uri().path())
        .copied();
    let resp = next.run(req).await;
    if let Some(path) = path {
        s.requests
            .add(&[("path", path), ("code", resp.status().as_str())], 1);
    }
    resp
}

async fn remote_write(
    State(s): State<Arc<AgentState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = match write::negotiate(&headers) {
        Ok(m) => m,
        Err(e) => {
            s.self_metrics
                .remote_write_requests
                .add(&[("code", StatusCode::UNSUPPORTED_MEDIA_TYPE.as_str())], 1);
            return write::unsupported(e);
        }
    };
    let state = s.clone();
    let result = tokio::task::spawn_blocking(move || handle_write(&state, &body, message)).await;
    let answer = result.unwrap_or_else(|e| {
        Answer::failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write handler failed: {e}"),
        )
    });
    s.self_metrics
        .remote_write_requests
        .add(&[("code", answer.status.as_str())], 1);
    answer.into_response()
}

/// Buffers a 1.0 or 2.0 request (2.0's series with bad references refused on their own,
/// as the hub does); native histograms are buffered too, those a hub would refuse left out
/// and named in the answer.
fn handle_write(s: &AgentState, body: &[u8], message: ProtobufMessage) -> Answer {
    // Created timestamps (2.0 only) per float series and per histogram series.
    let decoded = match message {
        ProtobufMessage::V1 => {
            remote_write::decode_with_limit(body, s.max_write_decompressed_bytes)
                .map(|request| (request, Unwritten::default(), Vec::new(), Vec::new()))
        }
        ProtobufMessage::V2 => {
            v2::decode_with_limit(body, s.max_write_decompressed_bytes).map(|d| {
                let unwritten = Unwritten::from_parts(
                    &d.invalid,
                    d.invalid_exemplars,
                    &d.first_invalid_exemplar,
                );
                (d.request, unwritten, d.created, d.histograms_created)
            })
        }
    };
    let (req, unwritten, created, histograms_created) = match decoded {
        Ok(r) => r,
        Err(e @ DecodeError::TooLarge { .. }) => {
            return Answer::failed(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => return Answer::failed(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let written = match s
        .metrics_writer
        .write_with_created(&req.timeseries, &created, req.metadata)
    {
        Ok(w) => w,
        Err(e @ AppendError::Full { .. }) => {
            s.self_metrics.samples_rejected.add(
                &[("source", "remote_write"), ("reason", "buffer_full")],
                req.timeseries.iter().map(|t| t.samples.len() as u64).sum(),
            );
            return Answer::failed(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e @ AppendError::Closed) => {
            return Answer::failed(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) if super::writer::too_large(&e) => {
            return Answer::failed(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => return Answer::failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    s.self_metrics
        .samples_ingested
        .add(&[("source", "remote_write")], written.samples);
    let mut exemplars_refused = None;
    let mut exemplars_written = 0;
    if !req.exemplars.is_empty() {
        match s.metrics_writer.write_exemplars(&req.exemplars) {
            Ok(o) => {
                exemplars_written = o.accepted;
                crate::self_metrics::count_exemplar_refusals(&s.self_metrics, "remote_write", &o);
                if o.invalid_labels > 0 {
                    exemplars_refused = Some(format!(
                        "exemplars refused ({} with invalid labels, first: {}), the other exemplars were buffered",
                        o.invalid_labels,
                        o.first_invalid.unwrap_or_default()
                    ));
                }
            }
            Err(e) => return Answer::failed(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
    let mut histograms_written = 0;
    let mut histograms_refused = None;
    if !req.histograms.is_empty() || req.histograms_dropped > 0 {
        let w = match s
            .metrics_writer
            .write_histograms_with_created(&req.histograms, &histograms_created)
        {
            Ok(w) => w,
            Err(e) => return histograms_failed(e),
        };
        histograms_written = w.samples;
        let mut reasons = req.histogram_refusals.clone();
        if let Some(i) = w.first_invalid {
            reasons.push(format!(
                "native histogram of timeseries[{i}] refused: invalid labels or parts"
            ));
        }
        let n = req.histograms_dropped + w.invalid;
        if n > 0 {
            histograms_refused = Some(format!(
                "{n} native histogram samples refused ({})",
                reasons.join(", ")
            ));
        }
    }
    let counts = Written {
        samples: written.samples,
        histograms: histograms_written,
        exemplars: exemplars_written,
    };
    let (invalid_series, not_stored) = unwritten.clauses();
    if unwritten.samples > 0 {
        s.self_metrics.samples_rejected.add(
            &[("source", "remote_write"), ("reason", "invalid_series")],
            unwritten.samples,
        );
    }
    if written.invalid == 0
        && invalid_series.is_none()
        && not_stored.is_none()
        && exemplars_refused.is_none()
        && histograms_refused.is_none()
    {
        return Answer {
            status: StatusCode::NO_CONTENT,
            message: String::new(),
            written: counts,
        };
    }
    let mut refused = Vec::new();
    if written.invalid > 0 {
        // The decoder refuses invalid labels already; this is the writer's own check speaking.
        s.self_metrics.samples_rejected.add(
            &[("source", "remote_write"), ("reason", "invalid_labels")],
            written.invalid,
        );
        refused.push(format!(
            "invalid labels, first in timeseries[{}]",
            written.first_invalid.unwrap_or(0)
        ));
    }
    refused.extend(invalid_series);
    refused.extend(histograms_refused);
    let rejected = written.invalid + unwritten.samples;
    let mut message = if refused.is_empty() {
        format!("all {} samples were buffered", written.samples)
    } else {
        format!(
            "{} of {} samples refused ({}); the other {} were buffered",
            rejected,
            rejected + written.samples,
            refused.join(", "),
            written.samples
        )
    };
    if let Some(n) = not_stored {
        message = format!("{n}; {message}");
    }
    if let Some(e) = exemplars_refused {
        message = format!("{e}; {message}");
    }
    Answer {
        status: StatusCode::BAD_REQUEST,
        message,
        written: counts,
    }
}

/// The answer when buffering a request's histograms failed (its float samples are
/// buffered already; the sender retries the whole request on a 5xx, as after any failure).
fn histograms_failed(e: AppendError) -> Answer {
    Answer::failed(append_status(&e), e.to_string())
}

/// How a buffer refusal is answered: 503 while it is full or closing (senders retry), 413
/// for a record over what it takes.
fn append_status(e: &AppendError) -> StatusCode {
    match e {
        AppendError::Full { .. } | AppendError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        e if super::writer::too_large(e) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// OTLP metrics are buffered for the hubs as remote write is: acknowledged once durable,
/// series with labels a hub would refuse left out and counted as refused data points.
impl MetricsSink for AgentState {
    fn body_limits(&self) -> (usize, usize) {
        (self.max_write_body_bytes, self.max_write_decompressed_bytes)
    }

    fn settings(&self) -> &otlp::Settings {
        &self.otlp_metrics
    }

    fn self_metrics(&self) -> &SelfMetrics {
        &self.self_metrics
    }

    fn store(&self, out: otlp::Translated) -> Outcome {
        let m = &self.self_metrics;
        let mut rejected = out.rejected;
        let mut messages = Vec::new();
        if out.first_rejection.is_some() {
            messages.push(out.message());
            m.samples_rejected.add(
                &[("source", "otlp"), ("reason", "unsupported_data_point")],
                out.rejected,
            );
        }
        let refused = |e: AppendError| (append_status(&e), e.to_string());
        let floats = self
            .metrics_writer
            .write_with_created(&out.series, &out.series_created, out.metadata)
            .map_err(refused)?;
        let histograms = self
            .metrics_writer
            .write_histograms_with_created(&out.histograms, &out.histograms_created)
            .map_err(refused)?;
        if let Some(i) = floats.first_invalid {
            messages.push(format!(
                "{} samples of series with labels a hub refuses, first: {}",
                floats.invalid, out.series[i].labels
            ));
        }
        if let Some(i) = histograms.first_invalid {
            messages.push(format!(
                "{} native histogram samples refused for their labels or parts, first: {}",
                histograms.invalid, out.histograms[i].labels
            ));
        }
        let invalid = floats.invalid + histograms.invalid;
        if invalid > 0 {
            rejected += invalid;
            m.samples_rejected
                .add(&[("source", "otlp"), ("reason", "invalid_labels")], invalid);
        }
        m.samples_ingested
            .add(&[("source", "otlp")], floats.samples + histograms.samples);
        Ok((rejected, messages.join("; ")))
    }
}

async fn ready(State(s): State<Arc<AgentState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "meshlens agent is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<AgentState>>) -> Response {
    let body = render_metrics(&s);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Everything `/metrics` shows: the forwarder's (buffered bytes, lag, sent, retried,
/// dropped per hub), ingest by path and code, scrapes, spans and the listeners'.
pub fn render_metrics(s: &AgentState) -> String {
    let mut out = String::new();
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    out.push_str(
        "# HELP meshlens_agent_info The agent's cluster and id.\n# TYPE meshlens_agent_info gauge\n",
    );
    out.push_str(&format!(
        "meshlens_agent_info{{cluster=\"{}\",agent=\"{}\"}} 1\n",
        escape(&s.cluster),
        escape(&s.agent_id)
    ));
    if let Some(f) = s.forwarder.lock().as_ref() {
        f.render_metrics(&mut out);
    }
    let counter = |out: &mut String, name: &str, help: &str, c: &CounterVec| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        c.render(name, out);
    };
    let m = &s.self_metrics;
    counter(
        &mut out,
        "meshlens_agent_requests_total",
        "Ingest requests, by path and HTTP status code (2xx: buffered durably).",
        &s.requests,
    );
    counter(
        &mut out,
        "meshlens_samples_ingested_total",
        "Samples buffered for forwarding, by source.",
        &m.samples_ingested,
    );
    counter(
        &mut out,
        "meshlens_samples_rejected_total",
        "Samples refused, by source and reason.",
        &m.samples_rejected,
    );
    counter(
        &mut out,
        "meshlens_remote_write_requests_total",
        "Remote write requests, by HTTP status code.",
        &m.remote_write_requests,
    );
    counter(
        &mut out,
        "meshlens_otlp_metrics_requests_total",
        "OTLP metrics export requests (HTTP and gRPC), by HTTP status code.",
        &m.otlp_metrics_requests,
    );
    counter(
        &mut out,
        "meshlens_scrapes_total",
        "Scrapes, by job and result.",
        &m.scrapes,
    );
    counter(
        &mut out,
        "prometheus_sd_dns_lookups_total",
        "The number of DNS-SD lookups.",
        &m.sd_dns_lookups,
    );
    counter(
        &mut out,
        "prometheus_sd_dns_lookup_failures_total",
        "The number of DNS-SD lookup failures.",
        &m.sd_dns_lookup_failures,
    );
    s.trace_counters.render(&mut out);
    s.access.render(&mut out);
    out
}
