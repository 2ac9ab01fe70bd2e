//! Generated series for the streaming and cache tests: counters that reset, gauges with
//! NaN and infinities, gaps longer than the lookback, and staleness markers.
#![allow(dead_code)]

use meshlens_model::{Labels, STALE_NAN};

use super::MemStore;

/// A small deterministic generator, so every run sees the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` series each of `req_total` (counter) and `temp` (gauge), labelled `grp` (7
/// groups) and `i`, sampled every `interval` ms in `[start, end]`.
pub fn add_series(store: &mut MemStore, n: usize, start: i64, end: i64, interval: i64) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..n {
        let grp = (i % 7).to_string();
        let id = i.to_string();
        let counter = Labels::from_pairs([
            ("__name__", "req_total"),
            ("grp", grp.as_str()),
            ("i", id.as_str()),
        ]);
        let gauge = Labels::from_pairs([
            ("__name__", "temp"),
            ("grp", grp.as_str()),
            ("i", id.as_str()),
        ]);
        let (mut c, mut g) = ((rng.next() % 1000) as f64, 20.0);
        let mut t = start + (rng.next() % interval as u64) as i64;
        while t <= end {
            let r = rng.next();
            match r % 97 {
                // A gap longer than the lookback and most windows.
                0 => t += 11 * 60_000,
                1 => store.add(counter.clone(), t, STALE_NAN),
                2 => c = (r % 10) as f64,
                _ => {
                    c += (r % 50) as f64;
                    store.add(counter.clone(), t, c);
                }
            }
            g = match r % 211 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => 1e308,
                _ if g.is_finite() && g.abs() < 1e300 => g + ((r >> 8) % 200) as f64 / 8.0 - 12.5,
                _ => 20.0,
            };
            store.add(gauge.clone(), t, g);
            t += interval;
        }
    }
}
