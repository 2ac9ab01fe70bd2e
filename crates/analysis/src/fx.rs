//! A string interner over the shared Fx tables: the stats and graph scans hash millions of
//! short keys, where SipHash would dominate the profile. Inputs are stored data, not
//! attacker-chosen keys flooding a long-lived table, and every table lives for one request
//! only.

pub use meshlens_model::hash::{FxMap, FxSet};

/// Maps strings to dense ids, so that later tables key on integers.
#[derive(Default)]
pub struct Interner {
    ids: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), i);
        i
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}
