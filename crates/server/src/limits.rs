//! Per-tenant ingest limits as the write paths apply them: label limits per series, the
//! series limit, and the samples and spans rate limits (token buckets).

use std::sync::Arc;

use meshlens_access::limits::{LimitCounters, Limits, RateLimiters};
use meshlens_model::{Span, SpanRef, SpanWriter, StorageError};

pub struct IngestLimits {
    pub limits: Limits,
    pub rates: RateLimiters,
    pub counters: LimitCounters,
}

impl IngestLimits {
    pub fn new(limits: Limits) -> Arc<IngestLimits> {
        Arc::new(IngestLimits {
            rates: RateLimiters::new(limits.clone()),
            limits,
            counters: LimitCounters::default(),
        })
    }

    pub fn render(&self, out: &mut String) {
        self.counters.render(out);
    }
}

/// The span store behind the spans rate limit of one tenant.
pub struct LimitedSpans {
    pub tenant: String,
    pub inner: Arc<dyn SpanWriter>,
    pub limits: Arc<IngestLimits>,
}

impl LimitedSpans {
    /// Takes `n` spans from the tenant's rate limit, or says why not.
    fn take(&self, n: usize) -> Result<(), StorageError> {
        let n = n as u64;
        if !self.limits.rates.try_take_spans(&self.tenant, n) {
            self.limits
                .counters
                .add_spans(&self.tenant, "rate_limited", n);
            let l = &self.limits.limits;
            return Err(StorageError::LimitReached {
                reason: format!(
                    "tenant {:?}: span ingestion rate limit (--limits.spans-ingestion-rate {} spans/s, burst {}) reached; {n} spans refused",
                    self.tenant, l.span_ingestion_rate, l.span_ingestion_burst_size
                ),
            });
        }
        Ok(())
    }
}

impl SpanWriter for LimitedSpans {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        self.take(spans.len())?;
        self.inner.write(spans)
    }

    fn write_refs(&self, spans: &[SpanRef<'_>]) -> Result<(), StorageError> {
        self.take(spans.len())?;
        self.inner.write_refs(spans)
    }
}
