//! OTLP metrics in: `POST /v1/metrics` (protobuf or JSON, gzip or not) and gRPC
//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`, translated into series
//! as Prometheus 3 does (`meshlens_ingest::otlp::metrics`) and handed to a [`MetricsSink`]:
//! the server stores them through the tenant's writer like remote write, under the same
//! limits; an agent buffers them for its hubs (`crate::agent`).
//!
//! Status semantics (what exporters act on): a body that cannot be decoded is a 400 (gRPC
//! INVALID_ARGUMENT) naming the byte or JSON path; the rate limit is a 429
//! (RESOURCE_EXHAUSTED), which exporters retry; storage failures are 503/500. Everything
//! else is a 200 with OTLP's partial success: `rejected_data_points` counts the data points
//! refused (delta temporality, inconsistent histograms, scales below -4) plus the samples
//! the limits or the storage refused, and `error_message` names the first. Exponential
//! histograms are stored as native histograms (`MetricWriter::append_histograms`); a
//! storage that keeps floats only (`InvalidRequest`) makes them refused points of a partial
//! success, the float series still stored. With `created-timestamp-zero-ingestion`, a
//! data point's start time becomes a zero sample before it (`Translated::series_zeros`,
//! stored as remote write 2.0's are: `super::write::store_created_zeros`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meshlens_ingest::otlp::metrics::{self as otlp, ExportMetrics};
use meshlens_model::{RawSeries, Sample, StorageError};

use super::AppState;
use crate::self_metrics::SelfMetrics;

/// Where translated metrics go: the server's storage under its limits, or an agent's
/// buffer. The transport (encodings, status codes, partial success) is the same for both.
pub trait MetricsSink: Send + Sync + 'static {
    /// Largest body as sent and once decompressed.
    fn body_limits(&self) -> (usize, usize);
    /// How OTLP metrics become series.
    fn settings(&self) -> &otlp::Settings;
    /// The counters `meshlens_otlp_metrics_requests_total` goes to.
    fn self_metrics(&self) -> &SelfMetrics;
    /// Stores a translated request: the refused data points and why, or a failure status.
    fn store(&self, out: otlp::Translated) -> Outcome;
}

/// The gRPC method this module answers.
pub const GRPC_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// What one request came to: refused count and message, or a failure status.
pub type Outcome = Result<(u64, String), (StatusCode, String)>;

/// `POST /v1/metrics`: the answer in the request's encoding.
pub async fn http<S: MetricsSink>(
    State(s): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match ct.as_str() {
        "application/json" => true,
        "application/x-protobuf" | "application/protobuf" => false,
        _ => {
            return failure(
                &*s,
                false,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct:?} is not application/x-protobuf or application/json"),
            )
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let state = s.clone();
    let result = tokio::task::spawn_blocking(move || {
        use meshlens_trace_api::body::{decode, BodyError};
        let raw =
            decode(encoding.as_deref(), &body, state.body_limits().1).map_err(|e| match e {
                BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
                BodyError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
                BodyError::Malformed { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
            })?;
        let decoded = if json {
            otlp::decode_json(&raw)
        } else {
            otlp::decode_proto(&raw)
        };
        store(&*state, decoded)
    })
    .await
    .unwrap_or_else(|e| {
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("OTLP metrics handler failed: {e}"),
        ))
    });
    match result {
        Ok((rejected, message)) => {
            count(&*s, "200");
            if json {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    otlp::encode_response_json(rejected, &message),
                )
                    .into_response()
            } else {
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    otlp::encode_response(rejected, &message),
                )
                    .into_response()
            }
        }
        Err((status, msg)) => failure(&*s, json, status, msg),
    }
}

/// The gRPC export call, for the OTLP/gRPC listener's dispatch.
pub async fn grpc<S: MetricsSink>(
    s: Arc<S>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<meshlens_trace_api::GrpcBody> {
    let (body_limit, decompressed_limit) = s.body_limits();
    let message =
        match meshlens_trace_api::read_grpc_unary(req, body_limit, decompressed_limit).await {
            Ok(m) => m,
            Err((code, msg)) => {
                count(&*s, "grpc_error");
                return meshlens_trace_api::grpc_status(code, &msg);
            }
        };
    let state = s.clone();
    let result = tokio::task::spawn_blocking(move || store(&*state, otlp::decode_proto(&message)))
        .await
        .unwrap_or_else(|e| {
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("OTLP metrics handler failed: {e}"),
            ))
        });
    match result {
        Ok((rejected, message)) => {
            count(&*s, "200");
            meshlens_trace_api::grpc_unary_reply(&otlp::encode_response(rejected, &message))
        }
        Err((status, msg)) => {
            count(&*s, status.as_str());
            tracing::debug!(%status, error = %msg, "otlp metrics refused");
            let code = match status {
                StatusCode::BAD_REQUEST => 3,          // INVALID_ARGUMENT
                StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
                StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
                StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
                _ => 13,                               // INTERNAL
            };
            meshlens_trace_api::grpc_status(code, &msg)
        }
    }
}

fn count<S: MetricsSink>(s: &S, code: &str) {
    s.self_metrics()
        .otlp_metrics_requests
        .add(&[("code", code)], 1);
}

/// An error answer: `google.rpc.Status` in the request's encoding, as OTLP/HTTP asks.
fn failure<S: MetricsSink>(s: &S, json: bool, status: StatusCode, msg: String) -> Response {
    count(s, status.as_str());
    meshlens_trace_api::otlp_status_response(json, status, &msg)
}

/// Translates a decoded request and hands it to the sink.
fn store<S: MetricsSink>(
    s: &S,
    decoded: Result<ExportMetrics, meshlens_ingest::otlp::OtlpError>,
) -> Outcome {
    let req = decoded.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    s.store(otlp::translate(&req, s.settings()))
}

impl MetricsSink for AppState {
    fn body_limits(&self) -> (usize, usize) {
        (self.max_write_body_bytes, self.max_write_decompressed_bytes)
    }

    fn settings(&self) -> &otlp::Settings {
        &self.otlp_metrics
    }

    fn self_metrics(&self) -> &SelfMetrics {
        &self.metrics
    }

    /// Limits and stores, as remote write is.
    fn store(&self, out: otlp::Translated) -> Outcome {
        store_in(self, out)
    }
}

fn store_in(s: &AppState, out: otlp::Translated) -> Outcome {
    let mut rejected = out.rejected;
    let mut messages = Vec::new();
    if out.first_rejection.is_some() {
        messages.push(out.message());
    }
    if out.rejected > 0 {
        s.metrics.samples_rejected.add(
            &[("source", "otlp"), ("reason", "unsupported_data_point")],
            out.rejected,
        );
    }
    let pairs: Vec<Vec<(&str, &str)>> = out
        .series
        .iter()
        .map(|t| {
            t.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect()
        })
        .collect();
    let mut batch: Vec<(RawSeries<'_>, Option<Sample>)> = out
        .series
        .iter()
        .zip(&pairs)
        .enumerate()
        .map(|(i, (t, p))| {
            let raw = RawSeries {
                labels: p,
                samples: &t.samples,
            };
            (raw, out.series_zeros.get(i).copied().flatten())
        })
        .collect();
    let limited = super::write::apply_limits(s, &mut batch, |(r, _)| *r)?;
    if let Some(first) = &limited.first {
        rejected += limited.samples;
        messages.push(format!(
            "{} samples in {} series over a limit, first: {first}",
            limited.samples, limited.series
        ));
    }
    if let Some(msg) = &limited.series_limit {
        rejected += limited.over_series_limit;
        messages.push(format!(
            "{msg}; {} samples refused",
            limited.over_series_limit
        ));
    }
    if !out.metadata.is_empty() {
        s.writer
            .append_metadata(&out.metadata)
            .map_err(super::write::storage_refusal)?;
    }
    super::write::store_created_zeros(s, "otlp", &batch, &out.histogram_zeros)
        .map_err(super::write::storage_refusal)?;
    let batch: Vec<RawSeries<'_>> = batch.iter().map(|(r, _)| *r).collect();
    let outcome = s
        .writer
        .append_raw(&batch)
        .map_err(super::write::storage_refusal)?;
    let refused = super::write::count_outcome(s, "otlp", &outcome);
    if !refused.is_empty() {
        rejected += outcome.rejected();
        messages.push(format!(
            "samples refused by storage: {}",
            refused.join(", ")
        ));
    }
    if !out.histograms.is_empty() {
        let n: u64 = out.histograms.iter().map(|h| h.samples.len() as u64).sum();
        match s.writer.append_histograms(&out.histograms) {
            Ok(o) => {
                super::write::count_outcome(s, "otlp", &o);
                if o.rejected() > 0 {
                    rejected += o.rejected();
                    messages.push(format!(
                        "{} native histogram samples refused by storage ({} out of order, {} duplicate, {} out of bounds, {} invalid labels)",
                        o.rejected(),
                        o.out_of_order,
                        o.duplicate,
                        o.out_of_bounds,
                        o.invalid_labels
                    ));
                }
            }
            // A storage that keeps floats only: the histograms are not stored, the rest is.
            Err(StorageError::InvalidRequest { reason }) => {
                rejected += n;
                s.metrics.samples_rejected.add(
                    &[("source", "otlp"), ("reason", "histograms_not_stored")],
                    n,
                );
                messages.push(format!(
                    "{n} exponential histogram data points (native histograms) not stored: {reason}"
                ));
            }
            Err(e) => return Err(super::write::storage_refusal(e)),
        }
    }
    Ok((rejected, messages.join("; ")))
}
