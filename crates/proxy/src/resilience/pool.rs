//! Connection-pool limits (`trafficPolicy.connectionPool`), Envoy's circuit breakers:
//! `http2MaxRequests` caps requests in flight, `tcp.maxConnections` caps requests being served
//! at once and `http1MaxPendingRequests` caps those waiting for one of them. Past either cap
//! the request fails at once with 503 and flag UO.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits as configured; `u32::MAX` is Envoy's "unlimited" default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: u64,
    pub max_connections: Option<u32>,
    pub max_pending: u64,
}

pub struct Limiter {
    pub limits: Limits,
    in_flight: AtomicU64,
    pending: AtomicU64,
    connections: Option<Arc<Semaphore>>,
}

/// Held while a request is in flight; releases its slot when dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    _conn: Option<OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The request was over a limit.
#[derive(Debug)]
pub struct Overflow;

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            in_flight: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            connections: limits
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
        }
    }

    /// Takes a slot, waiting (as a pending request) for a connection slot when needed.
    pub async fn acquire(self: &Arc<Self>) -> Result<Permit, Overflow> {
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Build the permit first so the in_flight increment is undone on every path.
        let mut permit = Permit {
            limiter: self.clone(),
            _conn: None,
        };
        if prev >= self.limits.max_requests {
            return Err(Overflow);
        }
        if let Some(sem) = &self.connections {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permit._conn = Some(p),
                Err(_) => {
                    let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
                    let _undo = PendingGuard(&self.pending);
                    if waiting >= self.limits.max_pending {
                        return Err(Overflow);
                    }
                    permit._conn = Some(sem.clone().acquire_owned().await.map_err(|_| Overflow)?);
                }
            }
        }
        Ok(permit)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting for a connection slot.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}

struct PendingGuard<'a>(&'a AtomicU64);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_past_max_requests() {
        let l = Arc::new(Limiter::new(Limits {
            max_requests: 1,
            max_connections: None,
            max_pending: u64::MAX,
        }));
        let a = l.acquire().await.unwrap();
        assert!(l.acquire().await.is_err());
        drop(a);
        assert!(l.acquire().await.is_ok());
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn connections_then_pending_then_overflow() {
        let l = Arc::new(Limiter::new(Limits {
            max_requests: u64::MAX,
            max_connections: Some(1),
            max_pending: 1,
        }));
        let a = l.acquire().await.unwrap();
        let l2 = l.clone();
        let b = tokio::spawn(async move { l2.acquire().await.is_ok() });
        while l.pending() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            l.acquire().await.is_err(),
            "one in use, one pending: overflow"
        );
        drop(a);
        assert!(b.await.unwrap(), "the pending request gets the connection");
        assert_eq!((l.in_flight(), l.pending()), (0, 0));
    }
}
