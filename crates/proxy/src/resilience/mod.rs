//! Resilience: the parts of a route and a DestinationRule that decide how hard to try —
//! faults, timeouts and retries (per route), connection-pool limits and outlier ejection
//! (per cluster).

pub mod fault;
pub mod outlier;
pub mod pool;
pub mod retry;
