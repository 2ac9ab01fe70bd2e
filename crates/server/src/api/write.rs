//! `POST /api/v1/write`: Prometheus remote write 1.0 and 2.0, told apart by `Content-Type`
//! (`proto=io.prometheus.write.v2.Request` is 2.0; none, or `proto=prometheus.WriteRequest`,
//! 1.0; another message, media type or encoding gets 415).
//!
//! Status semantics (what senders act on): 204 only after storage acknowledged the samples
//! as durable; 400 for bodies that cannot be decoded and for refused samples (senders do not
//! retry a 400) — the valid samples of such a request are stored, and the message says how
//! many were refused and why; 413 for bodies over the size limits; 500/503 for storage
//! failures, which senders retry. Every answer after the negotiation carries the
//! `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` counts 2.0 asks for
//! (on 1.0 too, where senders ignore them). A 2.0 series with a bad symbol reference or
//! invalid labels is refused on its own (400 naming it, the rest stored); so is a native
//! histogram whose parts disagree, or an exemplar with bad labels (in 1.0 too). 1.0 keeps
//! its answer to invalid labels on a series with samples: the whole request is refused.
//! Created timestamps are read and not stored (Prometheus's default); with
//! `created-timestamp-zero-ingestion` a 2.0 series' created timestamp becomes a zero sample
//! before its first sample or histogram, skipped silently when the series already holds a
//! sample at or after it ([`store_created_zeros`]).
//!
//! The body is decompressed into a buffer each worker thread keeps, and series reach the
//! storage as pairs borrowed from it (`MetricWriter::append_raw`): a write to series the
//! TSDB already holds allocates nothing per series or label.

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meshlens_access::{Limits, SeriesLimitError};
use meshlens_ingest::remote_write::negotiate::{
    EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER,
};
use meshlens_ingest::remote_write::{self, v2, DecodeError, ProtobufMessage, Unsupported};
use meshlens_model::{
    AppendOutcome, MetricMetadata, RawSeries, RejectReason, Sample, SeriesHistograms, StorageError,
};

use super::AppState;

pub async fn remote_write(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = match negotiate(&headers) {
        Ok(m) => m,
        Err(e) => {
            s.metrics
                .remote_write_requests
                .add(&[("code", StatusCode::UNSUPPORTED_MEDIA_TYPE.as_str())], 1);
            return unsupported(e);
        }
    };
    let state = s.clone();
    let result = tokio::task::spawn_blocking(move || handle(&state, &body, message)).await;
    let answer = result.unwrap_or_else(|e| {
        Answer::failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write handler failed: {e}"),
        )
    });
    s.metrics
        .remote_write_requests
        .add(&[("code", answer.status.as_str())], 1);
    answer.into_response()
}

/// The message a request's headers name.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<ProtobufMessage, Unsupported> {
    let header = |name: axum::http::header::HeaderName| {
        headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    remote_write::negotiate(header(CONTENT_TYPE), header(CONTENT_ENCODING))
}

/// The answer to a request whose headers name no message this receiver reads.
pub(crate) fn unsupported(e: Unsupported) -> Response {
    tracing::debug!(error = %e, "remote write refused");
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()).into_response()
}

/// A request's outcome: status, message, and what was written.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub message: String,
    pub written: Written,
}

/// Counts for the `X-Prometheus-Remote-Write-*-Written` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

impl Answer {
    pub(crate) fn failed(status: StatusCode, message: String) -> Answer {
        Answer {
            status,
            message,
            written: Written::default(),
        }
    }

    /// The response, with the written counts as headers.
    pub(crate) fn into_response(self) -> Response {
        let w = self.written;
        let headers = [
            (SAMPLES_WRITTEN_HEADER, w.samples.to_string()),
            (HISTOGRAMS_WRITTEN_HEADER, w.histograms.to_string()),
            (EXEMPLARS_WRITTEN_HEADER, w.exemplars.to_string()),
        ];
        if self.status == StatusCode::NO_CONTENT {
            (self.status, headers).into_response()
        } else {
            tracing::debug!(status = %self.status, error = %self.message, "remote write refused");
            (self.status, headers, self.message).into_response()
        }
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

fn handle(s: &AppState, body: &[u8], message: ProtobufMessage) -> Answer {
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
        let answer = match message {
            ProtobufMessage::V1 => {
                let req = match remote_write::wire::parse_with(decompressed, std::mem::take(parse))
                {
                    Ok(r) => r,
                    Err(e) => return decode_failure(e.into()),
                };
                let answer = match remote_write::valid_series(&req) {
                    Ok(series) => {
                        let exemplars = remote_write::request_exemplars(&req);
                        let histograms = remote_write::request_histograms(&req);
                        store(
                            s,
                            series.into_iter().map(|r| (r, None)).collect(),
                            &[],
                            &req.metadata,
                            &Unwritten::default(),
                            exemplars,
                            histograms,
                        )
                    }
                    Err(e) => decode_failure(e),
                };
                *parse = req.into_buffers();
                answer
            }
            ProtobufMessage::V2 => {
                let req = match v2::parse_with(decompressed, std::mem::take(parse)) {
                    Ok(r) => r,
                    Err(e) => return decode_failure(e),
                };
                let (series, histogram_zeros) = if s.created_zeros {
                    (req.series_with_zeros(), req.histogram_zeros())
                } else {
                    let series = req.series().into_iter().map(|r| (r, None)).collect();
                    (series, Vec::new())
                };
                let answer = store(
                    s,
                    series,
                    &histogram_zeros,
                    &req.raw.metadata,
                    &Unwritten::of(&req),
                    req.series_exemplars(),
                    remote_write::request_histograms(&req.raw),
                );
                *parse = req.into_buffers();
                answer
            }
        };
        if decompressed.capacity() + parse.capacity_bytes() > KEEP_BUFFER_BYTES {
            *b = Buffers::default();
        }
        answer
    })
}

fn decode_failure(e: DecodeError) -> Answer {
    match e {
        DecodeError::TooLarge { .. } => {
            Answer::failed(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        e => Answer::failed(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// What a 2.0 request held that is refused or not stored before storage sees it.
#[derive(Default)]
pub(crate) struct Unwritten {
    /// Series refused for bad references or labels, their samples, and the first one.
    pub series: u64,
    pub samples: u64,
    pub first: Option<String>,
    /// Exemplars refused for a bad label reference, and the first one.
    pub exemplars: u64,
    pub first_exemplar: Option<String>,
}

impl Unwritten {
    pub(crate) fn of(req: &v2::V2Request<'_>) -> Unwritten {
        Self::from_parts(
            &req.invalid,
            req.invalid_exemplars,
            &req.first_invalid_exemplar,
        )
    }

    pub(crate) fn from_parts(
        invalid: &[v2::InvalidSeries],
        exemplars: u64,
        first_exemplar: &Option<String>,
    ) -> Unwritten {
        Unwritten {
            series: invalid.len() as u64,
            samples: invalid.iter().map(|s| s.samples).sum(),
            first: invalid
                .first()
                .map(|s| format!("timeseries[{}]: {}", s.index, s.reason)),
            exemplars,
            first_exemplar: first_exemplar.clone(),
        }
    }

    /// The message's clauses for what was refused (samples) and not stored (the rest).
    pub(crate) fn clauses(&self) -> (Option<String>, Option<String>) {
        let refused = self.first.as_ref().map(|first| {
            format!(
                "{} in {} invalid series, first {first}",
                self.samples, self.series
            )
        });
        let not_stored = (self.exemplars > 0).then(|| {
            format!(
                "{} exemplars refused (bad label reference, first in {})",
                self.exemplars,
                self.first_exemplar.as_deref().unwrap_or("?")
            )
        });
        (refused, not_stored)
    }
}

/// Checks, limits and stores decoded series, each with its created-timestamp zero when
/// there is one (stored first, see [`store_created_zeros`]), and the zeros of the native
/// histogram series.
#[allow(clippy::too_many_arguments)]
fn store(
    s: &AppState,
    mut batch: Vec<(RawSeries<'_>, Option<Sample>)>,
    histogram_zeros: &[SeriesHistograms],
    metadata: &[MetricMetadata],
    unwritten: &Unwritten,
    exemplars: (Vec<meshlens_model::SeriesExemplars>, Vec<String>),
    histograms: (Vec<meshlens_model::SeriesHistograms>, Vec<String>),
) -> Answer {
    let limited = match apply_limits(s, &mut batch, |(r, _)| *r) {
        Ok(l) => l,
        Err((status, msg)) => return Answer::failed(status, msg),
    };
    if !metadata.is_empty() {
        if let Err(e) = s.writer.append_metadata(metadata) {
            return storage_failure(e);
        }
    }
    if let Err(e) = store_created_zeros(s, "remote_write", &batch, histogram_zeros) {
        return storage_failure(e);
    }
    let series: Vec<RawSeries<'_>> = batch.iter().map(|(r, _)| *r).collect();
    let outcome = match s.writer.append_raw(&series) {
        Ok(o) => o,
        Err(e) => return storage_failure(e),
    };
    let mut written = Written {
        samples: outcome.accepted,
        ..Default::default()
    };
    let (exemplars, mut exemplars_refused) = exemplars;
    let exemplars = limit_exemplars(&s.limits.limits, exemplars, &mut exemplars_refused);
    if !exemplars.is_empty() {
        match s.writer.append_exemplars(&exemplars) {
            Ok(o) => {
                written.exemplars = o.accepted;
                crate::self_metrics::count_exemplar_refusals(&s.metrics, "remote_write", &o);
                // Bad input is reported; out-of-order and duplicate exemplars are what
                // Prometheus also skips silently (senders resend them after a retry).
                if o.invalid_labels > 0 {
                    exemplars_refused.push(format!(
                        "{} exemplars with invalid labels, first: {}",
                        o.invalid_labels,
                        o.first_invalid.as_deref().unwrap_or("")
                    ));
                }
            }
            Err(e) => return storage_failure(e),
        }
    }
    let (histograms, mut histograms_refused) = histograms;
    let mut histograms_not_stored = None;
    if !histograms.is_empty() {
        let n: usize = histograms.iter().map(|h| h.samples.len()).sum();
        match s.writer.append_histograms(&histograms) {
            Ok(o) => {
                written.histograms = o.accepted;
                // Counted with the float samples in the self-metrics, as Prometheus counts them.
                count_outcome(s, "remote_write", &o);
                if o.rejected() > 0 {
                    histograms_refused.push(format!(
                        "{} native histogram samples refused ({} out of order, {} duplicate, {} out of bounds)",
                        o.rejected(),
                        o.out_of_order,
                        o.duplicate,
                        o.out_of_bounds
                    ));
                }
            }
            // A storage that keeps floats only: the rest of the request is still stored.
            Err(StorageError::InvalidRequest { reason }) => {
                histograms_not_stored = Some(format!(
                    "{n} native histogram samples not written: {reason}"
                ));
            }
            Err(e) => return storage_failure(e),
        }
    }
    let mut refused = count_outcome(s, "remote_write", &outcome);
    let (invalid, not_stored) = unwritten.clauses();
    let not_stored = match (not_stored, histograms_not_stored) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    if !histograms_refused.is_empty() {
        refused.push(histograms_refused.join(", "));
    }
    if unwritten.samples > 0 {
        s.metrics.samples_rejected.add(
            &[("source", "remote_write"), ("reason", "invalid_series")],
            unwritten.samples,
        );
    }
    refused.extend(invalid);
    if let Some(first) = &limited.first {
        refused.push(format!(
            "{} in {} series over a limit, first: {first}",
            limited.samples, limited.series
        ));
    }
    if let Some(msg) = limited.series_limit {
        return Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{msg}; {} samples refused, the other {} were stored",
                limited.over_series_limit, outcome.accepted
            ),
            written,
        };
    }
    if refused.is_empty() && not_stored.is_none() && exemplars_refused.is_empty() {
        return Answer {
            status: StatusCode::NO_CONTENT,
            message: String::new(),
            written,
        };
    }
    let rejected = outcome.rejected() + limited.samples + unwritten.samples;
    let mut message = if refused.is_empty() {
        format!("all {} samples were stored", outcome.accepted)
    } else {
        format!(
            "{} of {} samples refused ({}); the other {} were stored",
            rejected,
            rejected + outcome.accepted,
            refused.join(", "),
            outcome.accepted
        )
    };
    if let Some(n) = not_stored {
        message = format!("{n}; {message}");
    }
    if !exemplars_refused.is_empty() {
        message = format!(
            "exemplars refused ({}), the other exemplars were stored; {message}",
            exemplars_refused.join("; ")
        );
    }
    Answer {
        status: StatusCode::BAD_REQUEST,
        message,
        written,
    }
}

/// Counts an append's accepted and refused samples in the self-metrics under `source`, and
/// names each refusal reason with its count, for the answer's message.
pub(super) fn count_outcome(s: &AppState, source: &str, outcome: &AppendOutcome) -> Vec<String> {
    s.metrics
        .samples_ingested
        .add(&[("source", source)], outcome.accepted);
    let mut refused = Vec::new();
    for r in RejectReason::ALL {
        let n = outcome.count(r);
        if n > 0 {
            s.metrics
                .samples_rejected
                .add(&[("source", source), ("reason", r.as_str())], n);
            refused.push(format!("{n} {}", r.as_str().replace('_', " ")));
        }
    }
    refused
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

/// Created-timestamp zeros, stored before the samples they precede: the float zero of
/// each series of `batch` that has one (the series the limits kept, so a refused series
/// gets no zero either) and the histogram zeros. Which zeros the storage skips (the series
/// already has a sample at or after the zero) is not reported: Prometheus skips them
/// silently too, and they never count against the request. A storage that does not take
/// zeros (`InvalidRequest`) stores none; another failure is the request's, as an append's.
pub(super) fn store_created_zeros(
    s: &AppState,
    source: &str,
    batch: &[(RawSeries<'_>, Option<Sample>)],
    histograms: &[SeriesHistograms],
) -> Result<(), StorageError> {
    let floats: Vec<RawSeries<'_>> = batch
        .iter()
        .filter_map(|(r, zero)| {
            zero.as_ref().map(|z| RawSeries {
                labels: r.labels,
                samples: std::slice::from_ref(z),
            })
        })
        .collect();
    if floats.is_empty() && histograms.is_empty() {
        return Ok(());
    }
    match s.writer.append_created_zeros(&floats, histograms) {
        Ok(o) => {
            tracing::trace!(
                source,
                stored = o.accepted,
                skipped = o.rejected(),
                "created-timestamp zeros"
            );
            Ok(())
        }
        Err(StorageError::InvalidRequest { reason }) => {
            tracing::debug!(source, reason, "created-timestamp zeros not stored");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Applies the tenant's limits: the rate limit refuses the whole request (429, retried by
/// senders); the series limit refuses the new series beyond it (429 after the rest is stored);
/// label limits drop the offending series and keep the rest (400 after the rest is stored).
/// `raw` gives the series of a batch item (items may carry more, such as the series' zero).
pub(super) fn apply_limits<'a, T>(
    s: &AppState,
    batch: &mut Vec<T>,
    raw: impl Fn(&T) -> RawSeries<'a>,
) -> Result<Limited, (StatusCode, String)> {
    let l = &s.limits;
    let samples: u64 = batch.iter().map(|t| raw(t).samples.len() as u64).sum();
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
    batch.retain(|t| match check_series(&l.limits, &raw(t)) {
        Ok(()) => true,
        Err(e) => {
            let n = raw(t).samples.len() as u64;
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
            let t = raw(t);
            if head.contains_raw(&t) {
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

/// Exemplars of series the tenant's label limits refuse are refused with them.
fn limit_exemplars(
    limits: &Limits,
    exemplars: Vec<meshlens_model::SeriesExemplars>,
    refused: &mut Vec<String>,
) -> Vec<meshlens_model::SeriesExemplars> {
    exemplars
        .into_iter()
        .filter(|g| match limits.check_series(&g.series) {
            Ok(()) => true,
            Err(e) => {
                refused.push(format!("exemplars of a series over a limit: {e}"));
                false
            }
        })
        .collect()
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

fn storage_failure(e: StorageError) -> Answer {
    let (status, message) = storage_refusal(e);
    Answer::failed(status, message)
}

/// The status and message for a storage error, shared with the OTLP metrics route.
pub(super) fn storage_refusal(e: StorageError) -> (StatusCode, String) {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("storing samples failed: {e}"))
}
