//! Outlier detection (`trafficPolicy.outlierDetection`): passive health checking.
//!
//! Each endpoint counts consecutive 5xx and gateway errors (502, 503, 504 and connection
//! failures). Reaching a threshold ejects it for `baseEjectionTime × ejections`, unless
//! `maxEjectionPercent` of the cluster is already out (Envoy still ejects one host when none
//! is). Ejection ends lazily when its time has passed; the ejection multiplier decays by one
//! per `interval` spent healthy, as Envoy's interval sweep does.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Envoy caps an ejection at 300s unless configured.
const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct OutlierPolicy {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway: Option<u32>,
    pub interval: Duration,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
}

impl Default for OutlierPolicy {
    /// Istio's defaults when `outlierDetection` is present.
    fn default() -> Self {
        OutlierPolicy {
            consecutive_5xx: Some(5),
            consecutive_gateway: None,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// Health of one endpoint, shared across config reloads.
#[derive(Default)]
pub struct EndpointHealth {
    /// Requests in flight (for LEAST_REQUEST).
    pub active: AtomicU64,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    ejection: Mutex<Ejection>,
}

#[derive(Default)]
struct Ejection {
    until: Option<Instant>,
    count: u32,
    last_end: Option<Instant>,
}

impl EndpointHealth {
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejection.lock().until.is_some_and(|u| now < u)
    }

    pub fn ejections(&self) -> u32 {
        self.ejection.lock().count
    }
}

/// What an attempt told us about an endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Observation {
    Status(u16),
    ConnectFailure,
    Reset,
    Timeout,
}

impl OutlierPolicy {
    /// Records an observation; may eject `ep`. `cluster` yields every endpoint of its
    /// cluster (read only when an ejection is considered).
    pub fn observe<'a>(
        &self,
        ep: &EndpointHealth,
        cluster: impl Iterator<Item = &'a EndpointHealth>,
        o: Observation,
    ) {
        let (is_5xx, is_gw) = match o {
            Observation::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Observation::ConnectFailure | Observation::Reset | Observation::Timeout => (true, true),
        };
        if !is_5xx {
            ep.consecutive_5xx.store(0, Ordering::Relaxed);
            ep.consecutive_gateway.store(0, Ordering::Relaxed);
            return;
        }
        let n5 = ep.consecutive_5xx.fetch_add(1, Ordering::AcqRel) + 1;
        let ngw = if is_gw {
            ep.consecutive_gateway.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            ep.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let trip = self.consecutive_5xx.is_some_and(|t| t > 0 && n5 >= t)
            || self.consecutive_gateway.is_some_and(|t| t > 0 && ngw >= t);
        if trip {
            self.try_eject(ep, cluster);
        }
    }

    fn try_eject<'a>(
        &self,
        ep: &EndpointHealth,
        cluster: impl Iterator<Item = &'a EndpointHealth>,
    ) {
        let now = Instant::now();
        if ep.is_ejected(now) {
            return;
        }
        let (mut total, mut ejected) = (0usize, 0usize);
        for h in cluster {
            total += 1;
            ejected += usize::from(h.is_ejected(now));
        }
        let total = total.max(1);
        if ejected > 0 && ejected * 100 >= total * self.max_ejection_percent as usize {
            return;
        }
        let mut e = ep.ejection.lock();
        if let Some(end) = e.last_end {
            let healthy = now.saturating_duration_since(end);
            let decay = (healthy.as_millis() / self.interval.as_millis().max(1)) as u32;
            e.count = e.count.saturating_sub(decay);
        }
        e.count += 1;
        // Config durations can be huge: saturate instead of overflowing.
        let dur = self
            .base_ejection
            .checked_mul(e.count)
            .unwrap_or(Duration::MAX)
            .min(MAX_EJECTION.max(self.base_ejection))
            .min(Duration::from_secs(365 * 86400));
        e.until = Some(now.checked_add(dur).unwrap_or(now));
        e.last_end = e.until;
        ep.consecutive_5xx.store(0, Ordering::Relaxed);
        ep.consecutive_gateway.store(0, Ordering::Relaxed);
        tracing::info!(
            ejection_secs = dur.as_secs_f64(),
            "outlier detection ejected an endpoint"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ejects_after_threshold_and_respects_max_percent() {
        let p = OutlierPolicy {
            consecutive_5xx: Some(2),
            ..Default::default()
        };
        let eps: Vec<Arc<EndpointHealth>> = (0..3).map(|_| Arc::default()).collect();
        p.observe(&eps[0], eps.iter().map(|a| &**a), Observation::Status(500));
        assert!(!eps[0].is_ejected(Instant::now()));
        p.observe(&eps[0], eps.iter().map(|a| &**a), Observation::Status(503));
        assert!(
            eps[0].is_ejected(Instant::now()),
            "one host is always ejectable"
        );
        p.observe(
            &eps[1],
            eps.iter().map(|a| &**a),
            Observation::ConnectFailure,
        );
        p.observe(
            &eps[1],
            eps.iter().map(|a| &**a),
            Observation::ConnectFailure,
        );
        assert!(
            !eps[1].is_ejected(Instant::now()),
            "10% of 3 is already used"
        );
        p.observe(&eps[2], eps.iter().map(|a| &**a), Observation::Status(500));
        p.observe(&eps[2], eps.iter().map(|a| &**a), Observation::Status(200));
        p.observe(&eps[2], eps.iter().map(|a| &**a), Observation::Status(500));
        assert!(
            !eps[2].is_ejected(Instant::now()),
            "a success resets the count"
        );
    }
}
