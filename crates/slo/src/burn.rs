//! The burn-rate alert windows of the SRE workbook's 6th iteration, and their factors scaled
//! to an SLO's window.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// The window the workbook's factors are for.
const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * DAY);

/// One alert: both windows over `factor × budget`, held for `hold`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burn {
    pub long: Duration,
    pub short: Duration,
    /// For a 30-day window: the share of the budget spent in `long`, times 30d / `long`.
    pub factor_30d: f64,
    pub severity: &'static str,
    /// The rule's `for`: damps one-evaluation blips; short next to the long window, so the
    /// detection times of the workbook barely move.
    pub hold: Duration,
}

pub(crate) const BURNS: [Burn; 4] = [
    Burn {
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MINUTE),
        factor_30d: 14.4,
        severity: "page",
        hold: Duration::from_secs(2 * MINUTE),
    },
    Burn {
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MINUTE),
        factor_30d: 6.0,
        severity: "page",
        hold: Duration::from_secs(15 * MINUTE),
    },
    Burn {
        long: Duration::from_secs(DAY),
        short: Duration::from_secs(2 * HOUR),
        factor_30d: 3.0,
        severity: "ticket",
        hold: Duration::from_secs(HOUR),
    },
    Burn {
        long: Duration::from_secs(3 * DAY),
        short: Duration::from_secs(6 * HOUR),
        factor_30d: 1.0,
        severity: "ticket",
        hold: Duration::from_secs(3 * HOUR),
    },
];

impl Burn {
    /// The factor for an SLO window: the same share of the budget spent in `long`.
    pub(crate) fn factor(&self, window: Duration) -> f64 {
        self.factor_30d * window.as_secs_f64() / WORKBOOK_WINDOW.as_secs_f64()
    }

    /// How long the whole budget lasts at this burn rate (the same for every window).
    pub(crate) fn budget_lasts(&self) -> Duration {
        let secs = WORKBOOK_WINDOW.as_secs_f64() / self.factor_30d;
        Duration::from_secs(((secs / 60.0).round() as u64) * 60)
    }
}

/// Every window an alert reads, shortest first, without repeats: 5m, 30m, 1h, 2h, 6h, 1d, 3d.
pub(crate) fn alert_windows() -> Vec<Duration> {
    let mut w: Vec<Duration> = BURNS.iter().flat_map(|b| [b.long, b.short]).collect();
    w.sort();
    w.dedup();
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_duration;

    #[test]
    fn windows_and_factors_follow_the_workbook() {
        let names: Vec<String> = alert_windows().into_iter().map(format_duration).collect();
        assert_eq!(names, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
        let thirty = Duration::from_secs(30 * DAY);
        let f: Vec<f64> = BURNS.iter().map(|b| b.factor(thirty)).collect();
        assert_eq!(f, [14.4, 6.0, 3.0, 1.0]);
        // A 7-day window: 2 % of its budget in 1h is a burn rate of 14.4 × 7 / 30.
        let week = BURNS[0].factor(Duration::from_secs(7 * DAY));
        assert!((week - 3.36).abs() < 1e-9, "{week}");
        assert_eq!(format_duration(BURNS[0].budget_lasts()), "2d2h");
        assert_eq!(format_duration(BURNS[3].budget_lasts()), "30d");
    }
}
