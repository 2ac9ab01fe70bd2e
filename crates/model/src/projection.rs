//! Projection scans: an analysis that needs a few columns of each span (service, kind, a
//! handful of tags, duration) reads them borrowed from the store's own buffers instead of
//! building whole `Span`s, part by part, so that the parts can be scanned in parallel and an
//! immutable part can keep a result computed over all of its spans.
//!
//! Contract: a part visits exactly the spans `SpanReader::scan` would visit for the same
//! window (spans with a timestamp in `[start_us, end_us]`), each once per time it is stored,
//! with the same field values; only the order differs.

use std::any::Any;
use std::sync::Arc;

use crate::trace::{Span, SpanKind, SpanReader, TraceId};
use crate::StorageError;

/// Most key prefixes one projection may ask about (`SpanRow::prefixes` is a bit set).
pub const MAX_PREFIXES: usize = 64;

/// A string without a part-local id (see `SpanRow::name_id`).
pub const NO_ID: u32 = u32::MAX;

/// What a projection scan reads.
#[derive(Clone, Copy, Debug)]
pub struct Projection<'a> {
    /// Window in microseconds, both ends included; spans without a timestamp are not visited.
    pub start_us: u64,
    pub end_us: u64,
    /// Tag values to fetch: `SpanRow::tags[i]` is the value of key `tags[i]` (the last one
    /// when a span repeats a key, as building a `Span` would keep).
    pub tags: &'a [&'a str],
    /// Tag key prefixes: bit `i` of `SpanRow::prefixes` is set when the span has a tag key
    /// starting with `tag_prefixes[i]`. At most [`MAX_PREFIXES`].
    pub tag_prefixes: &'a [&'a str],
    /// A hint, never a filter the caller can rely on: only spans whose local service is
    /// exactly this are wanted, so a part may skip the others (e.g. through its postings).
    pub service: Option<&'a str>,
}

impl Projection<'_> {
    /// Bad projections are a caller's error, reported rather than silently truncated.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.tag_prefixes.len() > MAX_PREFIXES {
            return Err(StorageError::InvalidRequest {
                reason: format!(
                    "projection asks for {} tag prefixes, at most {MAX_PREFIXES}",
                    self.tag_prefixes.len()
                ),
            });
        }
        Ok(())
    }
}

/// The projected columns of one span, borrowed from the part being scanned.
#[derive(Clone, Copy, Debug)]
pub struct SpanRow<'a> {
    pub trace_id: TraceId,
    pub kind: Option<SpanKind>,
    pub timestamp: u64,
    pub duration: Option<u64>,
    pub name: Option<&'a str>,
    pub local_service: Option<&'a str>,
    pub remote_service: Option<&'a str>,
    /// One entry per `Projection::tags` key.
    pub tags: &'a [Option<&'a str>],
    /// Bit `i`: a tag key starts with `Projection::tag_prefixes[i]`.
    pub prefixes: u64,
    /// Ids of the strings above in the part's string table (a segment's dictionary), or
    /// [`NO_ID`]: within one part, equal ids are equal strings, so a scan can remember what
    /// it derived from a string by id instead of hashing the string again.
    pub name_id: u32,
    pub local_service_id: u32,
    pub remote_service_id: u32,
    /// One per `tags` entry, or empty when the part has no ids.
    pub tag_ids: &'a [u32],
}

impl<'a> SpanRow<'a> {
    /// The part-local id of `tags[i]`, [`NO_ID`] when it has none.
    #[inline]
    pub fn tag_id(&self, i: usize) -> u32 {
        self.tag_ids.get(i).copied().unwrap_or(NO_ID)
    }

    /// The row of a built span; `tags` receives the projected tag values.
    pub fn of_span(s: &'a Span, p: &Projection<'_>, tags: &'a mut Vec<Option<&'a str>>) -> Self {
        tags.clear();
        tags.extend(p.tags.iter().map(|k| s.tags.get(*k).map(String::as_str)));
        let mut prefixes = 0u64;
        for (i, pre) in p.tag_prefixes.iter().enumerate().take(MAX_PREFIXES) {
            if s.tags.keys().any(|k| k.starts_with(pre)) {
                prefixes |= 1 << i;
            }
        }
        SpanRow {
            trace_id: s.trace_id,
            kind: s.kind,
            timestamp: s.timestamp.unwrap_or(0),
            duration: s.duration,
            name: s.name.as_deref(),
            local_service: s.local_service(),
            remote_service: s.remote_service(),
            tags,
            prefixes,
            name_id: NO_ID,
            local_service_id: NO_ID,
            remote_service_id: NO_ID,
            tag_ids: &[],
        }
    }
}

/// A memoised result, type-erased so the store needs not know the analyses' types.
pub type Memo = Arc<dyn Any + Send + Sync>;

/// One independently scannable piece of a span store: a segment, a head, or (by default)
/// the whole store.
pub trait SpanPart: Send + Sync {
    /// Smallest and largest timestamp of the part's spans; `None` when unknown or empty.
    /// A part whose range lies inside a window is visited whole by a scan of that window.
    fn time_range(&self) -> Option<(u64, u64)>;

    /// Visits the part's spans in the projection's window.
    fn scan(
        &self,
        p: &Projection<'_>,
        visit: &mut dyn FnMut(&SpanRow<'_>),
    ) -> Result<(), StorageError>;

    /// A result stored by `memo_put` under `key`: something computed over every span of
    /// this part, valid as long as the part exists. Only immutable parts keep memos.
    fn memo_get(&self, _key: &str) -> Option<Memo> {
        None
    }

    /// Keeps `value` (about `bytes` large) for later `memo_get`s; the store may evict it at
    /// any time and drops it with the part. Mutable parts ignore it.
    fn memo_put(&self, _key: &str, _value: Memo, _bytes: usize) {}
}

/// The default parts of a reader: its window cut into one time slice per core (at most 8),
/// each read through `SpanReader::scan`, building every `Span`.
pub fn time_slices<R: SpanReader + ?Sized>(
    reader: &R,
    start_us: u64,
    end_us: u64,
) -> Vec<Box<dyn SpanPart + '_>> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64;
    let step = (end_us.saturating_sub(start_us) / n).max(1);
    (0..n)
        .filter_map(|i| {
            let lo = start_us.checked_add(i.checked_mul(step)?)?;
            let hi = if i == n - 1 { end_us } else { lo + step - 1 };
            (lo <= hi && lo <= end_us).then(|| {
                Box::new(ScanPart {
                    reader,
                    lo,
                    hi: hi.min(end_us),
                }) as Box<dyn SpanPart + '_>
            })
        })
        .collect()
}

/// A time slice of a reader, scanned through `SpanReader::scan`.
pub struct ScanPart<'r, R: ?Sized> {
    pub reader: &'r R,
    pub lo: u64,
    pub hi: u64,
}

impl<R: SpanReader + ?Sized> SpanPart for ScanPart<'_, R> {
    fn time_range(&self) -> Option<(u64, u64)> {
        None
    }

    fn scan(
        &self,
        p: &Projection<'_>,
        visit: &mut dyn FnMut(&SpanRow<'_>),
    ) -> Result<(), StorageError> {
        p.validate()?;
        let (lo, hi) = (p.start_us.max(self.lo), p.end_us.min(self.hi));
        if lo > hi {
            return Ok(());
        }
        self.reader.scan(lo, hi, &mut |s| {
            let mut tags = Vec::with_capacity(p.tags.len());
            visit(&SpanRow::of_span(s, p, &mut tags));
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::trace::Endpoint;

    #[test]
    fn row_of_span_projects_tags_and_prefixes() {
        let mut tags = BTreeMap::new();
        tags.insert("http.url".to_string(), "/a".to_string());
        tags.insert("user_agent".to_string(), "curl".to_string());
        let s = Span {
            trace_id: TraceId {
                high: 1,
                low: 2,
                is_128: true,
            },
            id: 3,
            parent_id: None,
            name: Some("get".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(10),
            duration: None,
            local_endpoint: Some(Endpoint {
                service_name: Some("svc".into()),
                ..Default::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags,
            debug: false,
            shared: false,
        };
        let p = Projection {
            start_us: 0,
            end_us: 100,
            tags: &["user_agent", "missing"],
            tag_prefixes: &["grpc.", "http."],
            service: None,
        };
        let mut buf = Vec::new();
        let r = SpanRow::of_span(&s, &p, &mut buf);
        assert_eq!(r.tags, [Some("curl"), None]);
        assert_eq!(r.prefixes, 0b10);
        assert_eq!((r.local_service, r.remote_service), (Some("svc"), None));
        assert_eq!((r.timestamp, r.duration), (10, None));
        assert_eq!((r.name_id, r.tag_id(0)), (NO_ID, NO_ID));
    }

    #[test]
    fn too_many_prefixes_is_an_invalid_request() {
        let many = vec!["x"; MAX_PREFIXES + 1];
        let p = Projection {
            start_us: 0,
            end_us: 1,
            tags: &[],
            tag_prefixes: &many,
            service: None,
        };
        assert!(matches!(
            p.validate(),
            Err(StorageError::InvalidRequest { .. })
        ));
    }
}
