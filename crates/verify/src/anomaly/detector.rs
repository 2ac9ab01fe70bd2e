//! One series' model, scorer and episode state (see the module doc for the algorithm).

use std::collections::VecDeque;

use super::robust::{median, median_mad};
use super::seasonal::{Seasonal, DAY_MS};
use super::{Direction, Options, OptionsError, THRESHOLD};

#[derive(Clone, Copy, Debug)]
struct Point {
    ts: i64,
    v: f64,
    flagged: bool,
}

/// An anomaly episode of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// The first point of the run that started it, ms.
    pub start: i64,
    /// The point at which it was declared (start + enter_points - 1 points), ms.
    pub declared: i64,
    /// The first point of the run that ended it; None while open.
    pub end: Option<i64>,
    pub peak_score: f64,
}

/// A change of a series' episode state.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Start(Episode),
    End(Episode),
}

/// What one point did.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// None during warm-up (or for a point that was skipped: not finite, not newer).
    pub score: Option<f64>,
    pub transition: Option<Transition>,
}

#[derive(Clone, Debug)]
enum State {
    Normal {
        above: usize,
        first: i64,
    },
    Anomalous {
        ep: Episode,
        below: usize,
        first_below: i64,
        points: usize,
    },
}

/// A rolling model of one series with its kNN scorer and hysteresis.
#[derive(Clone, Debug)]
pub struct Detector {
    opts: Options,
    points: VecDeque<Point>,
    distances: VecDeque<f64>,
    seasonal: Seasonal,
    state: State,
    last_score: Option<f64>,
}

impl Detector {
    pub fn new(opts: Options) -> Result<Detector, OptionsError> {
        opts.validate()?;
        Ok(Detector {
            seasonal: Seasonal::new(opts.days),
            points: VecDeque::with_capacity(opts.capacity.min(4096)),
            distances: VecDeque::new(),
            state: State::Normal { above: 0, first: 0 },
            last_score: None,
            opts,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The open episode, if any.
    pub fn episode(&self) -> Option<&Episode> {
        match &self.state {
            State::Anomalous { ep, .. } => Some(ep),
            State::Normal { .. } => None,
        }
    }

    /// The newest point's (time, value) and score.
    pub fn last(&self) -> Option<(i64, f64, Option<f64>)> {
        self.points.back().map(|p| (p.ts, p.v, self.last_score))
    }

    /// Points and minute means held (the memory bound: capacity + days * 1440).
    pub fn held(&self) -> (usize, usize) {
        (self.points.len(), self.seasonal.len())
    }

    /// Ends an open episode from outside (the series went away); returns it.
    pub fn close(&mut self, end: i64) -> Option<Episode> {
        let State::Anomalous { ep, .. } = &self.state else {
            return None;
        };
        let mut ep = ep.clone();
        ep.end = Some(end);
        self.state = State::Normal { above: 0, first: 0 };
        for p in self.points.iter_mut() {
            p.flagged = false;
        }
        Some(ep)
    }

    /// Feeds the point at `ts_ms`; a value that is not finite, or not newer than the last
    /// point, is skipped.
    pub fn push(&mut self, ts_ms: i64, v: f64) -> Update {
        let skipped = Update {
            score: None,
            transition: None,
        };
        if !v.is_finite() || self.points.back().is_some_and(|p| p.ts >= ts_ms) {
            return skipped;
        }
        self.points.push_back(Point {
            ts: ts_ms,
            v,
            flagged: false,
        });
        while self.points.len() > self.opts.capacity {
            self.points.pop_front();
        }
        let dk = self.kth_distance(ts_ms);
        self.seasonal.add(ts_ms, v);
        let raw = dk.and_then(|d| self.normalise(d));
        let score = raw.map(|s| self.directed(s));
        self.last_score = score;
        if let (Some(d), Some(r)) = (dk, raw) {
            if r < self.opts.clear && matches!(self.state, State::Normal { .. }) {
                self.remember(d);
            }
        } else if let (Some(d), None) = (dk, raw) {
            // Warm-up: every distance is taken as normal.
            self.remember(d);
        }
        let transition = self.step(ts_ms, score);
        let anomalous = matches!(self.state, State::Anomalous { .. });
        if anomalous || score.is_some_and(|s| s >= self.opts.clear) {
            if let Some(p) = self.points.back_mut() {
                p.flagged = true;
            }
        }
        Update { score, transition }
    }

    fn remember(&mut self, d: f64) {
        self.distances.push_back(d);
        while self.distances.len() > self.opts.score_history {
            self.distances.pop_front();
        }
    }

    /// The hysteresis state machine.
    fn step(&mut self, ts: i64, score: Option<f64>) -> Option<Transition> {
        let opts = &self.opts;
        match &mut self.state {
            State::Normal { above, first } => {
                let s = score?;
                if s < THRESHOLD {
                    *above = 0;
                    return None;
                }
                if *above == 0 {
                    *first = ts;
                }
                *above += 1;
                if *above < opts.enter_points {
                    return None;
                }
                let ep = Episode {
                    start: *first,
                    declared: ts,
                    end: None,
                    peak_score: s,
                };
                self.state = State::Anomalous {
                    ep: ep.clone(),
                    below: 0,
                    first_below: 0,
                    points: *above,
                };
                Some(Transition::Start(ep))
            }
            State::Anomalous {
                ep,
                below,
                first_below,
                points,
            } => {
                *points += 1;
                if *points == opts.adapt_after {
                    // Long enough: the new level is accepted as normal.
                    for p in self.points.iter_mut() {
                        p.flagged = false;
                    }
                }
                let s = score?;
                ep.peak_score = ep.peak_score.max(s);
                if s >= opts.clear {
                    *below = 0;
                    return None;
                }
                if *below == 0 {
                    *first_below = ts;
                }
                *below += 1;
                if *below < opts.exit_points {
                    return None;
                }
                let mut done = ep.clone();
                done.end = Some(*first_below);
                self.state = State::Normal { above: 0, first: 0 };
                Some(Transition::End(done))
            }
        }
    }

    /// `d_k / T` (module doc); None while warming up.
    fn normalise(&self, dk: f64) -> Option<f64> {
        if self.distances.len() < self.opts.min_history {
            return None;
        }
        let (m, mad) = median_mad(self.distances.iter().copied());
        let mut sorted: Vec<f64> = self.distances.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let q98 = sorted[((sorted.len() - 1) as f64 * 0.98).round() as usize];
        // Discrete series (counts, bucketed quantiles) often have MAD 0: the mean absolute
        // deviation (scaled to sigma for a normal) stands in.
        let mean_ad = sorted.iter().map(|x| (x - m).abs()).sum::<f64>() / sorted.len() as f64;
        let sigma = (1.4826 * mad).max(1.2533 * mean_ad);
        let mut level: Vec<f64> = self
            .points
            .iter()
            .filter(|p| !p.flagged)
            .map(|p| p.v.abs())
            .collect();
        let level = if level.is_empty() {
            0.0
        } else {
            median(&mut level)
        };
        let floor = self.opts.abs_floor.max(self.opts.rel_floor * level);
        let t = (m + self.opts.sensitivity * sigma)
            .max(self.opts.tail_margin * q98)
            .max(floor)
            .max(f64::MIN_POSITIVE);
        Some(dk / t)
    }

    /// 0 when the newest window moved the harmless way.
    fn directed(&self, score: f64) -> f64 {
        if self.opts.direction == Direction::Either {
            return score;
        }
        let w = self.opts.window.min(self.points.len());
        let mean = self.points.iter().rev().take(w).map(|p| p.v).sum::<f64>() / w as f64;
        let mut normal: Vec<f64> = self
            .points
            .iter()
            .rev()
            .skip(w)
            .filter(|p| !p.flagged)
            .map(|p| p.v)
            .collect();
        if normal.is_empty() {
            return score;
        }
        let level = median(&mut normal);
        let harmless = match self.opts.direction {
            Direction::Increase => mean <= level,
            Direction::Decrease => mean >= level,
            Direction::Either => false,
        };
        if harmless {
            0.0
        } else {
            score
        }
    }

    /// Distance of the newest window to its k-th nearest candidate (module doc).
    fn kth_distance(&mut self, now: i64) -> Option<f64> {
        let w = self.opts.window;
        let k = self.opts.k;
        let pts = self.points.make_contiguous();
        let n = pts.len();
        if n < w {
            return None;
        }
        let query: Vec<f64> = pts[n - w..].iter().map(|p| p.v).collect();
        // The largest point difference is left out: one spike is not a change of level.
        let trim = usize::from(w > 2);
        let rms = |vals: &mut dyn Iterator<Item = f64>| {
            let (mut ss, mut top) = (0.0, 0.0f64);
            for (a, b) in vals.zip(&query) {
                let d = (a - b) * (a - b);
                ss += d;
                top = top.max(d);
            }
            if trim == 1 {
                ss -= top;
            }
            let ss = ss.max(0.0);
            (ss / (w - trim) as f64).sqrt()
        };
        let mut dists = Vec::with_capacity(n);
        // Recent windows ending at e, not overlapping the query, holding no flagged point.
        let mut flagged_in = 0usize;
        for e in 0..n.saturating_sub(w) {
            if pts[e].flagged {
                flagged_in += 1;
            }
            if e >= w && pts[e - w].flagged {
                flagged_in -= 1;
            }
            if e + 1 < w || flagged_in > 0 {
                continue;
            }
            dists.push(rms(&mut pts[e + 1 - w..=e].iter().map(|p| p.v)));
        }
        // The same time of day on past days, from minute means.
        if self.seasonal.days() > 0 && !self.seasonal.is_empty() && n >= 2 {
            let step = ((pts[n - 1].ts - pts[0].ts) / (n as i64 - 1)).max(1);
            let cap = k.div_ceil(2);
            let band = self.opts.day_band_ms;
            let mut day = Vec::new();
            for d in 1..=self.seasonal.days() as i64 {
                day.clear();
                let mut off = -band;
                while off <= band {
                    let end = now - d * DAY_MS + off;
                    let vals: Option<Vec<f64>> = (0..w)
                        .map(|j| self.seasonal.at(end - (w - 1 - j) as i64 * step))
                        .collect();
                    if let Some(vals) = vals {
                        day.push(rms(&mut vals.into_iter()));
                    }
                    off += 60_000;
                }
                if day.len() > cap {
                    day.select_nth_unstable_by(cap - 1, f64::total_cmp);
                    day.truncate(cap);
                }
                dists.extend_from_slice(&day);
            }
        }
        if dists.len() < k {
            return None;
        }
        let (_, kth, _) = dists.select_nth_unstable_by(k - 1, f64::total_cmp);
        Some(*kth)
    }
}
