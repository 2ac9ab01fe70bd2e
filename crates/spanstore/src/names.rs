//! Name indexes behind the service / span name / autocomplete endpoints: updated per write
//! batch, rebuilt from what is stored after open and retention.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshlens_model::hash::{FxMap, FxSet};
use meshlens_model::SpanRef;

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

/// Name indexes behind the service / span name / autocomplete endpoints.
#[derive(Default)]
pub(crate) struct Names {
    pub(crate) services: BTreeMap<String, SvcNames>,
    pub(crate) tag_keys: BTreeSet<String>,
    pub(crate) tag_values: HashMap<String, BTreeSet<String>>,
    /// What the indexes above already hold, in hash tables: every span carries a dozen
    /// tags, and checking each against the sorted sets cost more than the rest of the
    /// write, while a probe here is cheap. Rebuilt (empty, refilled by writes) with them.
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    services: FxMap<Box<str>, SeenService>,
    /// Tag key -> values held; `None` once the key collects no more values (at its cap,
    /// or not an autocomplete key).
    tags: FxMap<Box<str>, Option<FxSet<Box<str>>>>,
}

#[derive(Default)]
struct SeenService {
    names: FxSet<Box<str>>,
    remotes: FxSet<Box<str>>,
}

impl Seen {
    fn knows_service(&self, svc: &str, name: Option<&str>, remote: Option<&str>) -> bool {
        self.services.get(svc).is_some_and(|e| {
            name.is_none_or(|x| e.names.contains(x)) && remote.is_none_or(|x| e.remotes.contains(x))
        })
    }

    fn knows_tag(&self, k: &str, v: &str) -> bool {
        match self.tags.get(k) {
            None => false,
            Some(None) => true,
            Some(Some(values)) => values.contains(v),
        }
    }
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
        // Checked under the read lock, so concurrent writes check in parallel.
        let mut new_svc: Vec<usize> = Vec::new();
        let mut new_tags: Vec<(usize, usize)> = Vec::new();
        {
            let n = self.names.read();
            for (i, (s, p)) in spans.iter().zip(prepared).enumerate() {
                // Neighbouring spans of a batch mostly repeat each other's names: what the
                // previous span had at the same place is known or queued already, and
                // comparing is cheaper than a probe.
                let prev = i.checked_sub(1).map(|h| (&spans[h], &prepared[h]));
                if let Some(svc) = &p.svc {
                    let repeat = prev.is_some_and(|(_, q)| {
                        q.svc == p.svc && q.name == p.name && q.remote == p.remote
                    });
                    if !repeat
                        && !n
                            .seen
                            .knows_service(svc, p.name.as_deref(), p.remote.as_deref())
                    {
                        new_svc.push(i);
                    }
                }
                for (j, (k, v)) in s.tags.iter().enumerate() {
                    let repeat = prev.is_some_and(|(q, _)| {
                        q.tags.get(j).is_some_and(|(qk, qv)| qk == k && qv == v)
                    });
                    if !repeat && !n.seen.knows_tag(k, v) {
                        new_tags.push((i, j));
                    }
                }
            }
        }
        if new_svc.is_empty() && new_tags.is_empty() {
            return;
        }
        let mut guard = self.names.write();
        let n = &mut *guard;
        for i in new_svc {
            let p = &prepared[i];
            if let Some(s) = &p.svc {
                let (name, remote) = (p.name.as_deref(), p.remote.as_deref());
                self.add_service_names(n, s, name, remote);
                let e = n.seen.services.entry(s.as_ref().into()).or_default();
                if let Some(x) = name {
                    e.names.insert(x.into());
                }
                if let Some(x) = remote {
                    e.remotes.insert(x.into());
                }
            }
        }
        for (i, j) in new_tags {
            let (k, v) = &spans[i].tags[j];
            self.add_tag(n, k, Some(v.as_ref()));
            let collecting = self
                .autocomplete_cap(k)
                .is_some_and(|cap| n.tag_values.get(k.as_ref()).is_none_or(|vs| vs.len() < cap));
            let e = n
                .seen
                .tags
                .entry(k.as_ref().into())
                .or_insert_with(|| Some(FxSet::default()));
            match e {
                Some(values) if collecting => {
                    values.insert(v.as_ref().into());
                }
                _ => *e = None,
            }
        }
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
