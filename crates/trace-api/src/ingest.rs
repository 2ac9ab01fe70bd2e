//! Span ingest over HTTP: Zipkin v2 `POST /api/v2/spans` and OTLP/HTTP `POST /v1/traces`.
//!
//! A success status is sent only after the store acknowledged the spans as durable.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meshlens_ingest::{otlp, zipkin};
use meshlens_model::{Span, StorageError};
use prost::Message;

use crate::body::{self, BodyError};
use crate::counters::Transport;
use crate::TraceApiState;

/// Stores a batch off the async runtime (the write waits for fsync), then tells observers.
pub(crate) async fn store(
    state: &Arc<TraceApiState>,
    spans: Vec<Span>,
    transport: Transport,
) -> Result<(), StorageError> {
    if spans.is_empty() {
        return Ok(());
    }
    let s = state.clone();
    let n = spans.len();
    tokio::task::spawn_blocking(move || {
        s.writer.write(&spans)?;
        for o in &s.observers {
            o(&spans);
        }
        Ok(())
    })
    .await
    .map_err(|e| StorageError::io("span write task", std::io::Error::other(e.to_string())))??;
    state.counters.accepted(transport, n);
    Ok(())
}

pub(crate) fn decode_body(
    state: &TraceApiState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, (StatusCode, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    body::decode(encoding, body, state.max_decompressed_bytes).map_err(|e| match e {
        BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        BodyError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
        BodyError::Malformed { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
    })
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
    let decoded = match transport {
        Transport::ZipkinProto => zipkin::decode_proto(&raw),
        _ => zipkin::decode_json(&raw),
    };
    let spans = match decoded {
        Ok(spans) => spans,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match store(&s, spans, transport).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => fail(storage_status(&e), format!("storing spans failed: {e}")),
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
    let decoded = if json {
        otlp::decode_json(&raw).map_err(|e| e.to_string())
    } else {
        otlp::decode_proto(&raw).map_err(|e| e.to_string())
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(msg) => return fail(StatusCode::BAD_REQUEST, msg),
    };
    s.counters.rejected(transport, decoded.rejected);
    if let Err(e) = store(&s, decoded.spans, transport).await {
        return fail(storage_status(&e), format!("storing spans failed: {e}"));
    }
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

fn otlp_status_response(json: bool, status: StatusCode, msg: &str) -> Response {
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
