//! Name indexes behind the service / span name / autocomplete endpoints: updated per write
//! batch, rebuilt from what is stored after open and retention.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use meshlens_model::Span;

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
    pub(crate) fn note_names(&self, spans: &[Span], prepared: &[head::Prepared]) {
        let mut svc: HashSet<(&str, Option<&str>, Option<&str>), head::IdBuild> =
            HashSet::default();
        for p in prepared {
            if let Some(s) = &p.svc {
                svc.insert((s, p.name.as_deref(), p.remote.as_deref()));
            }
        }
        let mut tags: HashSet<(&str, &str), head::IdBuild> = HashSet::default();
        for s in spans {
            for (k, v) in &s.tags {
                tags.insert((k, v));
            }
        }
        let is_new = {
            let n = self.names.read();
            svc.iter()
                .any(|(s, name, remote)| match n.services.get(*s) {
                    None => true,
                    Some(e) => {
                        name.is_some_and(|x| !e.span_names.contains(x))
                            || remote.is_some_and(|x| !e.remotes.contains(x))
                    }
                })
                || tags.iter().any(|(k, v)| {
                    !n.tag_keys.contains(*k)
                        || self.autocomplete_cap(k).is_some_and(|cap| {
                            n.tag_values
                                .get(*k)
                                .is_none_or(|vs| vs.len() < cap && !vs.contains(*v))
                        })
                })
        };
        if !is_new {
            return;
        }
        let mut n = self.names.write();
        for (s, name, remote) in svc {
            self.add_service_names(&mut n, s, name, remote);
        }
        for (k, v) in tags {
            self.add_tag(&mut n, k, Some(v));
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
