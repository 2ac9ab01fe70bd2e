//! Per-minute means of a series over its past days, so a window can be compared with the same
//! time of day on earlier days. One value per minute: at most `days * 1440` entries whatever
//! the evaluation interval.

use std::collections::VecDeque;

const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, Default)]
pub struct Seasonal {
    days: usize,
    /// Finished minutes, oldest first: (minute since the epoch, mean).
    minutes: VecDeque<(i64, f64)>,
    /// The minute being filled: (minute, sum, count).
    open: Option<(i64, f64, u32)>,
}

impl Seasonal {
    pub fn new(days: usize) -> Seasonal {
        Seasonal {
            days,
            ..Default::default()
        }
    }

    /// Adds a point; points must come in time order.
    pub fn add(&mut self, ts_ms: i64, v: f64) {
        if self.days == 0 {
            return;
        }
        let minute = ts_ms.div_euclid(MINUTE_MS);
        match &mut self.open {
            Some((m, sum, n)) if *m == minute => {
                *sum += v;
                *n += 1;
                return;
            }
            Some((m, sum, n)) if *m < minute => {
                self.minutes.push_back((*m, *sum / f64::from(*n)));
            }
            Some(_) => return,
            None => {}
        }
        self.open = Some((minute, v, 1));
        // Keep a band's worth beyond the oldest day so its late windows stay complete.
        let keep = (self.days as i64 + 1) * 1440;
        while self.minutes.front().is_some_and(|(m, _)| minute - m > keep) {
            self.minutes.pop_front();
        }
    }

    /// The mean of the minute holding `ts_ms`, if that minute is finished and kept.
    pub fn at(&self, ts_ms: i64) -> Option<f64> {
        let minute = ts_ms.div_euclid(MINUTE_MS);
        self.minutes
            .binary_search_by(|(m, _)| m.cmp(&minute))
            .ok()
            .map(|i| self.minutes[i].1)
    }

    pub fn days(&self) -> usize {
        self.days
    }

    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_means_and_bound() {
        let mut s = Seasonal::new(1);
        for i in 0..4 {
            s.add(i * 15_000, i as f64);
        }
        assert_eq!(s.at(0), None, "minute still open");
        s.add(60_000, 10.0);
        assert_eq!(s.at(30_000), Some(1.5));
        for i in 0..(3 * 1440) {
            s.add(120_000 + i * MINUTE_MS, 1.0);
        }
        assert!(s.len() <= 2 * 1440 + 1, "bounded: {}", s.len());
        assert_eq!(s.at(30_000), None);
    }
}
