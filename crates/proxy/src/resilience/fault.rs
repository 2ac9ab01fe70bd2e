//! Fault injection (`http[].fault`). A fault without a percentage injects nothing, as in
//! Istio.

use std::time::Duration;

use rand::Rng;

pub struct Fault {
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(Abort, f64)>,
}

#[derive(Debug, Clone, Copy)]
pub enum Abort {
    Http(u16),
    /// gRPC status code, answered as a trailers-only gRPC response.
    Grpc(u16),
}

/// What the fault decided for one request.
#[derive(Debug, Default)]
pub struct Decision {
    pub delay: Option<Duration>,
    pub abort: Option<Abort>,
}

impl Fault {
    pub fn decide(&self) -> Decision {
        let mut rng = rand::thread_rng();
        let mut hit = |p: f64| p >= 100.0 || (p > 0.0 && rng.gen::<f64>() * 100.0 < p);
        Decision {
            delay: self.delay.and_then(|(d, p)| hit(p).then_some(d)),
            abort: self.abort.and_then(|(a, p)| hit(p).then_some(a)),
        }
    }
}

/// gRPC status codes by the names Istio accepts in `grpcStatus`.
pub fn grpc_code(name: &str) -> Option<u16> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let n = name.trim();
    n.parse()
        .ok()
        .filter(|c| *c < 17)
        .or_else(|| NAMES.iter().position(|x| *x == n).map(|i| i as u16))
}
