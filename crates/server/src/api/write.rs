//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! Status semantics (what senders act on): 204 only after storage acknowledged the samples
//! as durable; 400 for bodies that cannot be decoded and for refused samples (senders do not
//! retry a 400) — the valid samples of such a request are stored, and the message says how
//! many were refused and why; 413 for bodies over the size limits; 500/503 for storage
//! failures, which senders retry.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshlens_ingest::remote_write::{self, DecodeError};
use meshlens_model::{RejectReason, StorageError};

use super::AppState;

pub async fn remote_write(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let state = s.clone();
    let result = tokio::task::spawn_blocking(move || handle(&state, &body)).await;
    let (status, msg) = match result {
        Ok(r) => r,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write handler failed: {e}"),
        ),
    };
    s.metrics
        .remote_write_requests
        .add(&[("code", status.as_str())], 1);
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        tracing::debug!(status = %status, error = %msg, "remote write refused");
        (status, msg).into_response()
    }
}

fn handle(s: &AppState, body: &[u8]) -> (StatusCode, String) {
    let req = match remote_write::decode_with_limit(body, s.max_write_decompressed_bytes) {
        Ok(r) => r,
        Err(e @ DecodeError::TooLarge { .. }) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !req.metadata.is_empty() {
        if let Err(e) = s.writer.append_metadata(&req.metadata) {
            return storage_failure(e);
        }
    }
    let outcome = match s.writer.append(&req.timeseries) {
        Ok(o) => o,
        Err(e) => return storage_failure(e),
    };
    s.metrics
        .samples_ingested
        .add(&[("source", "remote_write")], outcome.accepted);
    let mut refused = Vec::new();
    for r in RejectReason::ALL {
        let n = outcome.count(r);
        if n > 0 {
            s.metrics
                .samples_rejected
                .add(&[("source", "remote_write"), ("reason", r.as_str())], n);
            refused.push(format!("{n} {}", r.as_str().replace('_', " ")));
        }
    }
    if refused.is_empty() {
        return (StatusCode::NO_CONTENT, String::new());
    }
    (
        StatusCode::BAD_REQUEST,
        format!(
            "{} of {} samples refused ({}); the other {} were stored",
            outcome.rejected(),
            outcome.rejected() + outcome.accepted,
            refused.join(", "),
            outcome.accepted
        ),
    )
}

fn storage_failure(e: StorageError) -> (StatusCode, String) {
    let status = match e {
        StorageError::Closed | StorageError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("storing samples failed: {e}"))
}
