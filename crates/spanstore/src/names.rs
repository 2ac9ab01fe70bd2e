//! Name indexes behind the service / span name / autocomplete endpoints: updated per write
//! batch, rebuilt from what is stored after open and retention.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use meshlens_model::SpanRef;
use parking_lot::Mutex;

use crate::codec::SpanView;
use crate::head::{self, NONE};
use crate::segment;
use crate::Inner;

/// Values kept per tag key for autocomplete when every key is kept.
const MAX_VALUES_ALL_KEYS: usize = 1000;
/// Values kept per configured autocomplete key.
const MAX_VALUES_CONFIGURED: usize = 10_000;

#[derive(Default)]
pub(crate) struct SvcNames {
    pub(crate) span_names: BTreeSet<String>,
    pub(crate) remotes: BTreeSet<String>,
}

/// Most entries `Names::seen` holds before it starts over.
const MAX_SEEN: usize = 1 << 18;

/// Name indexes behind the service / span name / autocomplete endpoints.
#[derive(Default)]
pub(crate) struct Names {
    pub(crate) services: BTreeMap<String, SvcNames>,
    pub(crate) tag_keys: BTreeSet<String>,
    pub(crate) tag_values: HashMap<String, BTreeSet<String>>,
    /// Hashes of what the indexes already account for: (service, span name, remote)
    /// triples, (key, value) pairs, and keys whose values are no longer collected (at their
    /// cap, or not an autocomplete key). Why: every span carries a dozen tags, and checking
    /// each against the sorted sets costs more than the rest of the write; a hash probe per
    /// pair does not. A 64-bit collision would only leave a value out of autocomplete.
    /// Cleared when full, and rebuilt with the indexes.
    seen: Mutex<HashSet<u64, head::IdBuild>>,
}

fn hash_of(h: impl Hash) -> u64 {
    let mut s = head::IdHasher::default();
    h.hash(&mut s);
    s.finish()
}

/// Seen-set entry of a key whose values are not collected.
fn key_hash(k: &str) -> u64 {
    hash_of((k, 0xffu8))
}

impl Inner {
    fn autocomplete_cap(&self, key: &str) -> Option<usize> {
        if self.opts.autocomplete_keys.is_empty() {
            Some(MAX_VALUES_ALL_KEYS)
        } else if self.opts.autocomplete_keys.iter().any(|k| k == key) {
            Some(MAX_VALUES_CONFIGURED)
        } else {
            None
        }
    }

    /// Adds this batch's names to the indexes, taking the write lock only if one is new.
    pub(crate) fn note_names(&self, spans: &[SpanRef<'_>], prepared: &[head::Prepared<'_>]) {
        // Hash outside every lock; then one probe per name under the seen set's lock.
        let mut svc: Vec<(u64, usize)> = Vec::new();
        let mut tags: Vec<(u64, u64, usize, usize)> = Vec::new();
        for (i, (s, p)) in spans.iter().zip(prepared).enumerate() {
            if let Some(svc_name) = &p.svc {
                let h = hash_of((svc_name, &p.name, &p.remote));
                svc.push((h, i));
            }
            for (j, (k, v)) in s.tags.iter().enumerate() {
                tags.push((key_hash(k), hash_of((k.as_ref(), v.as_ref())), i, j));
            }
        }
        let (new_svc, new_tags) = {
            let n = self.names.read();
            let seen = n.seen.lock();
            let new_svc: Vec<(u64, usize)> =
                svc.into_iter().filter(|(h, _)| !seen.contains(h)).collect();
            let new_tags: Vec<(u64, u64, usize, usize)> = tags
                .into_iter()
                .filter(|(kh, kvh, _, _)| !seen.contains(kh) && !seen.contains(kvh))
                .collect();
            (new_svc, new_tags)
        };
        if new_svc.is_empty() && new_tags.is_empty() {
            return;
        }
        let mut guard = self.names.write();
        let n = &mut *guard;
        let mut marks = Vec::with_capacity(new_svc.len() + new_tags.len());
        for (h, i) in new_svc {
            let p = &prepared[i];
            if let Some(s) = &p.svc {
                self.add_service_names(n, s, p.name.as_deref(), p.remote.as_deref());
                marks.push(h);
            }
        }
        for (kh, kvh, i, j) in new_tags {
            let (k, v) = &spans[i].tags[j];
            self.add_tag(n, k, Some(v.as_ref()));
            let collecting = self.autocomplete_cap(k).is_some_and(|cap| {
                n.tag_values.get(k.as_ref()).is_none_or(|vs| vs.len() < cap)
            });
            marks.push(if collecting { kvh } else { kh });
        }
        let seen = n.seen.get_mut();
        if seen.len() + marks.len() > MAX_SEEN {
            seen.clear();
        }
        seen.extend(marks);
    }

    fn add_service_names(&self, n: &mut Names, s: &str, name: Option<&str>, remote: Option<&str>) {
        if !n.services.contains_key(s) {
            n.services.insert(s.to_string(), SvcNames::default());
        }
        let e = n.services.get_mut(s).expect("inserted above");
        if let Some(x) = name {
            if !e.span_names.contains(x) {
                e.span_names.insert(x.to_string());
            }
        }
        if let Some(x) = remote {
            if !e.remotes.contains(x) {
                e.remotes.insert(x.to_string());
            }
        }
    }

    fn add_tag(&self, n: &mut Names, k: &str, v: Option<&str>) {
        if !n.tag_keys.contains(k) {
            n.tag_keys.insert(k.to_string());
        }
        let (Some(cap), Some(v)) = (self.autocomplete_cap(k), v) else {
            return;
        };
        let vs = n.tag_values.entry(k.to_string()).or_default();
        if vs.len() < cap && !vs.contains(v) {
            vs.insert(v.to_string());
        }
    }

    /// Recomputes the name indexes from what is stored (after open and retention).
    pub(crate) fn rebuild_names(&self) {
        let p = self.parts.read().clone();
        let mut n = Names::default();
        for s in &p.segments {
            let d = &s.dict;
            for k in s.keys_of(segment::P_SVC) {
                if let Some(svc) = d.get(k.a) {
                    self.add_service_names(&mut n, svc, None, None);
                }
            }
            for k in s.keys_of(segment::P_SVC_NAME) {
                if let (Some(svc), Some(x)) = (d.get(k.a), d.get(k.b)) {
                    self.add_service_names(&mut n, svc, Some(x), None);
                }
            }
            for k in s.keys_of(segment::P_SVC_REMOTE) {
                if let (Some(svc), Some(x)) = (d.get(k.a), d.get(k.b)) {
                    self.add_service_names(&mut n, svc, None, Some(x));
                }
            }
            for k in s.keys_of(segment::P_TAG_KEY) {
                if let Some(key) = d.get(k.a) {
                    self.add_tag(&mut n, key, None);
                }
            }
            for k in s.keys_of(segment::P_TAG_KV) {
                if let (Some(key), Some(v)) = (d.get(k.a), d.get(k.b)) {
                    self.add_tag(&mut n, key, Some(v));
                }
            }
        }
        for h in p.heads() {
            let h = h.read();
            let s = |i: u32| (i != NONE).then(|| &*h.names.strings[i as usize]);
            let mut v = SpanView::default();
            for i in 0..h.spans.len() as u32 {
                let hs = h.spans[i as usize];
                if let Some(svc) = s(hs.svc) {
                    self.add_service_names(&mut n, svc, s(hs.name), s(hs.remote));
                }
                h.view(i, &mut v);
                for (k, val) in &v.tags {
                    self.add_tag(&mut n, k, Some(val));
                }
            }
        }
        *self.names.write() = n;
    }
}
