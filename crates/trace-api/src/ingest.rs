//! Span ingest over HTTP: Zipkin v2 `POST /api/v2/spans` and OTLP/HTTP `POST /v1/traces`.
//!
//! A success status is sent only after the store acknowledged the spans as durable. Spans
//! are decoded as `SpanRef`s borrowing the request body, written and observed from there:
//! no owned `Span` is built on the way from the wire to the store.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meshlens_ingest::{otlp, zipkin};
use meshlens_model::{SpanRef, StorageError};
use prost::Message;

use crate::body::{self, BodyError};
use crate::counters::Transport;
use crate::TraceApiState;

/// The body encodings span ingest reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    ZipkinJson,
    ZipkinProto,
    OtlpProto,
    OtlpJson,
}

/// Why a request's spans were not stored.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// The body is not a valid request: the message for a 400.
    Decode(String),
    Store(StorageError),
}

/// What a stored request answers with.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

/// Decodes, stores and observes one body off the async runtime: decoding is CPU work and
/// the write waits for the WAL's fsync.
pub(crate) async fn ingest(
    state: &Arc<TraceApiState>,
    body: Bytes,
    format: Format,
    transport: Transport,
) -> Result<Stored, IngestError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || decode_and_store(&s, &body, format, transport))
        .await
        .map_err(|e| {
            IngestError::Store(StorageError::io(
                "span write task",
                std::io::Error::other(e.to_string()),
            ))
        })?
}

fn decode_and_store(
    state: &TraceApiState,
    body: &[u8],
    format: Format,
    transport: Transport,
) -> Result<Stored, IngestError> {
    let decode = |e: &dyn std::fmt::Display| IngestError::Decode(e.to_string());
    match format {
        Format::ZipkinJson => {
            let spans = zipkin::decode_json_refs(body).map_err(|e| decode(&e))?;
            persist(state, &spans, transport)?;
            Ok(Stored::default())
        }
        Format::ZipkinProto => {
            let owned = zipkin::decode_proto(body).map_err(|e| decode(&e))?;
            let spans: Vec<SpanRef<'_>> = owned.iter().map(SpanRef::from_span).collect();
            persist(state, &spans, transport)?;
            Ok(Stored::default())
        }
        Format::OtlpProto => {
            let d = otlp::decode_proto_refs(body).map_err(|e| decode(&e))?;
            state.counters.rejected(transport, d.rejected);
            persist(state, &d.spans, transport)?;
            Ok(Stored {
                rejected: d.rejected,
                first_rejection: d.first_rejection,
            })
        }
        Format::OtlpJson => {
            let d = otlp::decode_json(body).map_err(|e| decode(&e))?;
            state.counters.rejected(transport, d.rejected);
            let spans: Vec<SpanRef<'_>> = d.spans.iter().map(SpanRef::from_span).collect();
            persist(state, &spans, transport)?;
            Ok(Stored {
                rejected: d.rejected,
                first_rejection: d.first_rejection,
            })
        }
    }
}

/// Writes a batch (durable on return), then tells the observers.
fn persist(
    state: &TraceApiState,
    spans: &[SpanRef<'_>],
    transport: Transport,
) -> Result<(), IngestError> {
    if spans.is_empty() {
        return Ok(());
    }
    state.writer.write_refs(spans).map_err(IngestError::Store)?;
    for o in &state.observers {
        o(spans);
    }
    state.counters.accepted(transport, spans.len());
    Ok(())
}

/// The body as sent, or decompressed per its Content-Encoding; an identity body is shared,
/// not copied.
pub(crate) fn decode_body(
    state: &TraceApiState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    match body::decode(encoding, body, state.max_decompressed_bytes) {
        Ok(Cow::Borrowed(_)) => Ok(body.clone()),
        Ok(Cow::Owned(v)) => Ok(Bytes::from(v)),
        Err(e) => Err(match e {
            BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            BodyError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
            BodyError::Malformed { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
        }),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(crate) fn storage_status(e: &StorageError) -> StatusCode {
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `POST /api/v2/spans`: 202 once stored.
pub async fn zipkin_spans(
    State(s): State<Arc<TraceApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = content_type(&headers);
    let transport = if ct == "application/x-protobuf" || ct == "application/protobuf" {
        Transport::ZipkinProto
    } else {
        Transport::ZipkinJson
    };
    let fail = |status: StatusCode, msg: String| {
        s.counters.failed(transport);
        tracing::debug!(%status, error = %msg, "zipkin spans refused");
        (status, msg).into_response()
    };
    if !(ct.is_empty() || ct == "application/json" || transport == Transport::ZipkinProto) {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {ct:?} is not application/json or application/x-protobuf"),
        );
    }
    let raw = match decode_body(&s, &headers, &body) {
        Ok(b) => b,
        Err((status, msg)) => return fail(status, msg),
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return fail(
            StatusCode::BAD_REQUEST,
            "empty body: send a list of spans".into(),
        );
    }
    let format = match transport {
        Transport::ZipkinProto => Format::ZipkinProto,
        _ => Format::ZipkinJson,
    };
    match ingest(&s, raw, format, transport).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(IngestError::Decode(msg)) => fail(StatusCode::BAD_REQUEST, msg),
        Err(IngestError::Store(e)) => {
            fail(storage_status(&e), format!("storing spans failed: {e}"))
        }
    }
}

/// `POST /v1/traces` (OTLP/HTTP): protobuf or JSON in, the same encoding out.
pub async fn otlp_http(
    State(s): State<Arc<TraceApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = content_type(&headers);
    let json = match ct.as_str() {
        "application/json" => true,
        "application/x-protobuf" | "application/protobuf" => false,
        _ => {
            s.counters.failed(Transport::OtlpHttpProto);
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct:?} is not application/x-protobuf or application/json"),
            )
                .into_response();
        }
    };
    let transport = if json {
        Transport::OtlpHttpJson
    } else {
        Transport::OtlpHttpProto
    };
    let fail = |status: StatusCode, msg: String| {
        s.counters.failed(transport);
        otlp_status_response(json, status, &msg)
    };
    let raw = match decode_body(&s, &headers, &body) {
        Ok(b) => b,
        Err((status, msg)) => return fail(status, msg),
    };
    let format = if json {
        Format::OtlpJson
    } else {
        Format::OtlpProto
    };
    let decoded = match ingest(&s, raw, format, transport).await {
        Ok(d) => d,
        Err(IngestError::Decode(msg)) => return fail(StatusCode::BAD_REQUEST, msg),
        Err(IngestError::Store(e)) => {
            return fail(storage_status(&e), format!("storing spans failed: {e}"))
        }
    };
    let message = decoded.first_rejection.unwrap_or_default();
    if json {
        (
            [(header::CONTENT_TYPE, "application/json")],
            otlp::encode_response_json(decoded.rejected, &message),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            otlp::encode_response(decoded.rejected, &message),
        )
            .into_response()
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP sends with an error status.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An OTLP/HTTP error: `google.rpc.Status` as protobuf or JSON, with `status`.
pub fn otlp_status_response(json: bool, status: StatusCode, msg: &str) -> Response {
    tracing::debug!(%status, error = %msg, "otlp request refused");
    let code = match status {
        StatusCode::BAD_REQUEST => 3,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 13,
    };
    if json {
        let body = serde_json::json!({ "code": code, "message": msg }).to_string();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        let body = RpcStatus {
            code,
            message: msg.to_string(),
        }
        .encode_to_vec();
        (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            body,
        )
            .into_response()
    }
}
