//! Anomaly detection on one series at a time (a service's request rate, 5xx share or p99),
//! by k-nearest-neighbour distance of windows, as in nearest-neighbour discord detection.
//!
//! ## Algorithm
//! A [`Detector`] is fed one point per evaluation interval. It keeps:
//! - the newest `capacity` points (at 15 s, 720 points = 3 h) with a per-point "flagged" bit;
//! - per-minute means of the past `days` days ([`seasonal`]), at most `days * 1440` values;
//! - the k-th-neighbour distances of the last `score_history` normal points.
//!
//! For each new point, the query is the newest window of `window` points. Its candidates are
//! every earlier window of the recent points that does not overlap the query and holds no
//! flagged point, plus, for each past day, windows built from that day's minute means within
//! `day_band` of the same time of day (each past day lends at most `ceil(k/2)` neighbours, so
//! a daily pattern must show on two days, or one day and the recent past, to be normal).
//! Distance is the root-mean-square difference of the windows' points (signal units),
//! leaving out the largest one when `window > 2`: a single spike is not a change of level,
//! two shifted points are. `d_k` is the distance to the k-th nearest candidate.
//!
//! `d_k` is normalised by its own recent distribution. With `m` the median, `sigma` the
//! robust deviation (1.4826 MAD, or 1.2533 times the mean absolute deviation when larger, as
//! for discrete series) and `q98` the 98th percentile of the last normal `d_k`s, the anomaly
//! distance is `T = max(m + sensitivity * sigma, tail_margin * q98, floor)` with `floor =
//! max(abs_floor, rel_floor * median |value|)` (a flat series would otherwise flag any
//! wobble), and `score = d_k / T`. So **score >= 1.0 ([`THRESHOLD`]) is anomalous**: the
//! newest window is further from its neighbours than normal windows have been, by a margin.
//! The tail term keeps heavy-tailed noise quiet: on generated noise (normal, Laplace,
//! Poisson counts; tests/anomaly_detector.rs) it raises well under 0.1 episodes per hour.
//! With a [`Direction`] other than `Either`, a window whose mean moved the harmless way
//! (below the recent median for `Increase`) scores 0.
//!
//! Warm-up: no score until `min_history` distances are known (about `window + k +
//! min_history` points). Hysteresis: an episode starts after `enter_points` consecutive
//! scores >= 1.0 (its start is the first of them) and ends after `exit_points` consecutive
//! scores < `clear`. Points scored >= `clear` and all points of an episode are flagged, so a
//! persistent fault does not become its own neighbour and stays flagged; after
//! `adapt_after` points of one episode the flags are dropped and the new level becomes normal.

mod detector;
mod robust;
pub mod seasonal;

pub use crate::judge::Direction;
pub use detector::{Detector, Episode, Transition, Update};

/// The score at and above which a point is anomalous.
pub const THRESHOLD: f64 = 1.0;

/// How a [`Detector`] models its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Points per window (w).
    pub window: usize,
    /// Which neighbour's distance is the raw score (k).
    pub k: usize,
    /// Recent points kept.
    pub capacity: usize,
    /// Normal k-th-neighbour distances kept for the normalisation.
    pub score_history: usize,
    /// Distances needed before the first score (warm-up).
    pub min_history: usize,
    /// Robust deviations above the median distance at which the score is 1.
    pub sensitivity: f64,
    /// The score is 1 at no less than this multiple of the 98th percentile distance.
    pub tail_margin: f64,
    /// Smallest anomaly distance, in signal units.
    pub abs_floor: f64,
    /// Smallest anomaly distance as a share of the series' median magnitude.
    pub rel_floor: f64,
    /// Past days whose minute means are kept (0: no seasonality).
    pub days: usize,
    /// How far around the same time of day past-day windows are taken, ms.
    pub day_band_ms: i64,
    /// Consecutive scores >= 1 that start an episode.
    pub enter_points: usize,
    /// Consecutive scores < `clear` that end it.
    pub exit_points: usize,
    /// The score under which a point counts as normal again.
    pub clear: f64,
    /// Points of one episode after which its level is accepted as normal.
    pub adapt_after: usize,
    /// Which way of moving is anomalous.
    pub direction: Direction,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            window: 4,
            k: 5,
            capacity: 720,
            score_history: 240,
            min_history: 20,
            sensitivity: 4.0,
            tail_margin: 2.0,
            abs_floor: 0.0,
            rel_floor: 0.05,
            days: 7,
            day_band_ms: 3_600_000,
            enter_points: 2,
            exit_points: 3,
            clear: 0.7,
            adapt_after: 240,
            direction: Direction::Either,
        }
    }
}

/// Options that cannot model anything.
#[derive(Debug, thiserror::Error)]
#[error("anomaly options: {0}")]
pub struct OptionsError(pub String);

impl Options {
    pub fn validate(&self) -> Result<(), OptionsError> {
        let bad = |m: &str| Err(OptionsError(m.to_string()));
        if self.window == 0 || self.k == 0 {
            return bad("window and k must be at least 1");
        }
        if self.capacity < 2 * self.window + self.k {
            return bad("capacity must hold at least 2 * window + k points");
        }
        if self.min_history == 0 || self.score_history < self.min_history {
            return bad("score_history must be >= min_history >= 1");
        }
        if !(self.sensitivity > 0.0 && self.tail_margin >= 0.0)
            || self.abs_floor < 0.0
            || self.rel_floor < 0.0
        {
            return bad("sensitivity must be > 0, tail_margin and the floors >= 0");
        }
        if !(self.clear > 0.0 && self.clear <= THRESHOLD) {
            return bad("clear must be in (0, 1]");
        }
        if self.enter_points == 0 || self.exit_points == 0 {
            return bad("enter_points and exit_points must be at least 1");
        }
        if self.day_band_ms < 0 {
            return bad("day_band_ms must be >= 0");
        }
        Ok(())
    }
}
