//! Pre-aggregates of immutable segments: results an analysis computed over every span of a
//! segment (a statistic's partial sums), so a later query whose window covers the segment
//! merges them instead of decoding it again.
//!
//! The values live in the segment itself ([`SegMemo`]), so they are freed exactly when the
//! last reader lets go of a segment that retention dropped. The store-wide [`MemoLru`] only
//! keeps accounting records (a weak segment reference, key, size, last use) and evicts the
//! least recently used value once the store's byte budget is exceeded.

use std::sync::{Arc, Weak};

use meshlens_model::Memo;
use parking_lot::Mutex;

use crate::segment::Segment;

/// The memos of one segment, by key (a handful at most: one per statistic and filter).
#[derive(Default)]
pub struct SegMemo {
    entries: Mutex<Vec<(Box<str>, Memo)>>,
}

impl SegMemo {
    fn get(&self, key: &str) -> Option<Memo> {
        let e = self.entries.lock();
        e.iter().find(|(k, _)| &**k == key).map(|(_, v)| v.clone())
    }

    fn put(&self, key: &str, v: Memo) {
        let mut e = self.entries.lock();
        match e.iter_mut().find(|(k, _)| &**k == key) {
            Some(slot) => slot.1 = v,
            None => e.push((key.into(), v)),
        }
    }

    fn remove(&self, key: &str) {
        self.entries.lock().retain(|(k, _)| &**k != key);
    }
}

struct Rec {
    seg: Weak<Segment>,
    seq: u64,
    key: Box<str>,
    bytes: u64,
    last_use: u64,
}

#[derive(Default)]
struct LruState {
    tick: u64,
    used: u64,
    recs: Vec<Rec>,
}

/// Store-wide accounting and eviction of segment memos, bounded in bytes.
pub struct MemoLru {
    budget: u64,
    state: Mutex<LruState>,
}

/// Bytes and entries held by a store's pre-aggregates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoUsage {
    pub bytes: u64,
    pub entries: u64,
}

impl MemoLru {
    /// `budget` bytes at most; 0 disables pre-aggregates.
    pub fn new(budget: u64) -> MemoLru {
        MemoLru {
            budget,
            state: Mutex::new(LruState::default()),
        }
    }

    pub fn get(&self, seg: &Segment, key: &str) -> Option<Memo> {
        let v = seg.memo.get(key)?;
        let mut st = self.state.lock();
        st.tick += 1;
        let tick = st.tick;
        if let Some(r) = st
            .recs
            .iter_mut()
            .find(|r| r.seq == seg.seq && &*r.key == key)
        {
            r.last_use = tick;
        }
        Some(v)
    }

    pub fn put(&self, seg: &Arc<Segment>, key: &str, v: Memo, bytes: usize) {
        let bytes = bytes as u64;
        if bytes > self.budget {
            return;
        }
        let mut st = self.state.lock();
        // Records of segments already dropped: their values went with them.
        let mut freed = 0;
        st.recs.retain(|r| {
            let live = r.seg.strong_count() > 0;
            if !live {
                freed += r.bytes;
            }
            live
        });
        st.used -= freed;
        if let Some(i) = st
            .recs
            .iter()
            .position(|r| r.seq == seg.seq && &*r.key == key)
        {
            let old = st.recs.swap_remove(i);
            st.used -= old.bytes;
        }
        while st.used + bytes > self.budget {
            let Some(i) = (0..st.recs.len()).min_by_key(|&i| st.recs[i].last_use) else {
                break;
            };
            let r = st.recs.swap_remove(i);
            st.used -= r.bytes;
            if let Some(s) = r.seg.upgrade() {
                s.memo.remove(&r.key);
            }
        }
        st.tick += 1;
        let tick = st.tick;
        seg.memo.put(key, v);
        st.recs.push(Rec {
            seg: Arc::downgrade(seg),
            seq: seg.seq,
            key: key.into(),
            bytes,
            last_use: tick,
        });
        st.used += bytes;
    }

    /// Usage by segments still alive.
    pub fn usage(&self) -> MemoUsage {
        let st = self.state.lock();
        let live = st.recs.iter().filter(|r| r.seg.strong_count() > 0);
        live.fold(MemoUsage::default(), |u, r| MemoUsage {
            bytes: u.bytes + r.bytes,
            entries: u.entries + 1,
        })
    }
}
