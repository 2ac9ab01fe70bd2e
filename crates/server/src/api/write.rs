//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! Status semantics (what senders act on): 204 only after storage acknowledged the samples
//! as durable; 400 for bodies that cannot be decoded and for refused samples (senders do not
//! retry a 400) — the valid samples of such a request are stored, and the message says how
//! many were refused and why; 413 for bodies over the size limits; 500/503 for storage
//! failures, which senders retry.
//!
//! The body is decompressed into a buffer each worker thread keeps, and series reach the
//! storage as pairs borrowed from it (`MetricWriter::append_raw`): a write to series the
//! TSDB already holds allocates nothing per series or label.

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshlens_access::{Limits, SeriesLimitError};
use meshlens_ingest::remote_write::{self, DecodeError};
use meshlens_model::{RawSeries, RejectReason, StorageError};

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

/// A decompression buffer kept above this size is freed after the request, so one huge
/// write does not pin its memory in a worker thread.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// What decoding a request fills: kept per thread, so a warm server decodes without
/// allocating (and without churning the allocator between long-lived head data).
#[derive(Default)]
struct Buffers {
    decompressed: Vec<u8>,
    parse: remote_write::wire::ParseBuffers,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

fn handle(s: &AppState, body: &[u8]) -> (StatusCode, String) {
    BUFFERS.with(|b| {
        let mut b = b.borrow_mut();
        let Buffers {
            decompressed,
            parse,
        } = &mut *b;
        if let Err(e) =
            remote_write::decompress_into(body, s.max_write_decompressed_bytes, decompressed)
        {
            return decode_failure(e);
        }
        let req = match remote_write::wire::parse_with(decompressed, std::mem::take(parse)) {
            Ok(r) => r,
            Err(e) => return decode_failure(e.into()),
        };
        let answer = store(s, &req);
        *parse = req.into_buffers();
        if decompressed.capacity() + parse.capacity_bytes() > KEEP_BUFFER_BYTES {
            *b = Buffers::default();
        }
        answer
    })
}

fn decode_failure(e: DecodeError) -> (StatusCode, String) {
    match e {
        DecodeError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Checks, limits and stores a decoded request.
fn store(s: &AppState, req: &remote_write::RawRequest<'_>) -> (StatusCode, String) {
    let mut series = match remote_write::valid_series(req) {
        Ok(v) => v,
        Err(e) => return decode_failure(e),
    };
    let limited = match apply_limits(s, &mut series) {
        Ok(l) => l,
        Err(refusal) => return refusal,
    };
    if !req.metadata.is_empty() {
        if let Err(e) = s.writer.append_metadata(&req.metadata) {
            return storage_failure(e);
        }
    }
    let outcome = match s.writer.append_raw(&series) {
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
    if let Some(first) = &limited.first {
        refused.push(format!(
            "{} in {} series over a limit, first: {first}",
            limited.samples, limited.series
        ));
    }
    if let Some(msg) = limited.series_limit {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{msg}; {} samples refused, the other {} were stored",
                limited.over_series_limit, outcome.accepted
            ),
        );
    }
    if refused.is_empty() {
        return (StatusCode::NO_CONTENT, String::new());
    }
    let rejected = outcome.rejected() + limited.samples;
    (
        StatusCode::BAD_REQUEST,
        format!(
            "{} of {} samples refused ({}); the other {} were stored",
            rejected,
            rejected + outcome.accepted,
            refused.join(", "),
            outcome.accepted
        ),
    )
}

/// What the per-series limits took out of a request.
#[derive(Default)]
pub(super) struct Limited {
    pub(super) series: u64,
    pub(super) samples: u64,
    /// The first violation, naming its limit and series.
    pub(super) first: Option<String>,
    /// Samples of new series refused by the series limit, and the message for them.
    pub(super) over_series_limit: u64,
    pub(super) series_limit: Option<String>,
}

/// Applies the tenant's limits: the rate limit refuses the whole request (429, retried by
/// senders); the series limit refuses the new series beyond it (429 after the rest is stored);
/// label limits drop the offending series and keep the rest (400 after the rest is stored).
pub(super) fn apply_limits(
    s: &AppState,
    batch: &mut Vec<RawSeries<'_>>,
) -> Result<Limited, (StatusCode, String)> {
    let l = &s.limits;
    let samples: u64 = batch.iter().map(|t| t.samples.len() as u64).sum();
    if !l.rates.try_take_samples(&s.tenant, samples) {
        l.counters.add(&s.tenant, "rate_limited", samples);
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant {:?}: ingestion rate limit (--limits.ingestion-rate {} samples/s, burst {}) reached; {samples} samples refused",
                s.tenant, l.limits.ingestion_rate, l.limits.ingestion_burst_size
            ),
        ));
    }
    let mut out = Limited::default();
    batch.retain(|t| match check_series(&l.limits, t) {
        Ok(()) => true,
        Err(e) => {
            let n = t.samples.len() as u64;
            l.counters.add(&s.tenant, e.reason(), n);
            out.series += 1;
            out.samples += n;
            out.first.get_or_insert_with(|| e.to_string());
            false
        }
    });
    let max = l.limits.max_series_per_tenant;
    if let (Some(head), true) = (&s.head, max > 0) {
        let existing = head.head_series() as usize;
        let mut room = max.saturating_sub(existing);
        batch.retain(|t| {
            if head.contains_raw(t) {
                return true;
            }
            if room > 0 {
                room -= 1;
                return true;
            }
            let n = t.samples.len() as u64;
            l.counters.add(&s.tenant, "max_series_per_tenant", n);
            out.over_series_limit += n;
            out.series_limit.get_or_insert_with(|| {
                format!(
                    "tenant {:?}: series limit (--limits.max-series-per-tenant {max}) reached with {existing} series; new series refused, first {}",
                    s.tenant, t.to_labels()
                )
            });
            false
        });
    }
    Ok(out)
}

/// `Limits::check_series` on a series as sent: normalised pairs within every limit pass
/// without building `Labels`; anything else gets the full check and its exact message.
fn check_series(limits: &Limits, t: &RawSeries<'_>) -> Result<(), SeriesLimitError> {
    let within = t.labels.len() <= limits.max_label_names_per_series
        && t.labels.iter().all(|(n, v)| {
            n.len() <= limits.max_label_name_length && v.len() <= limits.max_label_value_length
        });
    if within && t.is_normalised() {
        return Ok(());
    }
    limits.check_series(&t.to_labels())
}

pub(super) fn storage_failure(e: StorageError) -> (StatusCode, String) {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("storing samples failed: {e}"))
}
