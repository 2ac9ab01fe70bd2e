//! Retry policy (`http[].retries`). Istio's defaults when a route sets none: 2 attempts on
//! connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes (503).

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Default)]
pub struct RetryOn {
    pub any_5xx: bool,
    pub gateway_error: bool,
    pub connect_failure: bool,
    pub reset: bool,
    pub refused_stream: bool,
    pub retriable_4xx: bool,
    pub status_codes: Vec<u16>,
    /// gRPC status codes from `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable`.
    pub grpc: Vec<u16>,
}

impl RetryOn {
    /// Parses Istio's `retryOn` (Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` names,
    /// plus bare status codes). Unknown words are errors so typos surface at load time.
    pub fn parse(s: &str) -> Result<RetryOn, String> {
        let mut r = RetryOn::default();
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match w {
                "5xx" => r.any_5xx = true,
                "gateway-error" => r.gateway_error = true,
                "connect-failure" => r.connect_failure = true,
                "reset" | "reset-before-request" => r.reset = true,
                "refused-stream" => r.refused_stream = true,
                "retriable-4xx" => r.retriable_4xx = true,
                "retriable-status-codes" => {
                    if r.status_codes.is_empty() {
                        r.status_codes.push(503)
                    }
                }
                "cancelled" => r.grpc.push(1),
                "deadline-exceeded" => r.grpc.push(4),
                "internal" => r.grpc.push(13),
                "resource-exhausted" => r.grpc.push(8),
                "unavailable" => r.grpc.push(14),
                "envoy-ratelimited" | "retriable-headers" | "http3-post-connect-failure" => {}
                w => match w.parse::<u16>() {
                    Ok(c) if (100..600).contains(&c) => {
                        r.status_codes.retain(|x| *x != 503 || c == 503);
                        r.status_codes.push(c)
                    }
                    _ => return Err(format!("unknown retryOn condition {w:?}")),
                },
            }
        }
        Ok(r)
    }
}

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Response { status: u16, grpc: Option<u16> },
    ConnectFailure,
    Reset,
    PerTryTimeout,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
}

impl RetryPolicy {
    /// The policy Istio programs for routes without `retries`.
    pub fn istio_default() -> Self {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn::parse(
                "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            )
            .expect("static"),
        }
    }

    pub fn none() -> Self {
        RetryPolicy {
            attempts: 0,
            per_try_timeout: None,
            on: RetryOn::default(),
        }
    }

    /// Whether this outcome is one the policy retries (attempts left or not).
    pub fn retriable(&self, o: Outcome) -> bool {
        let on = &self.on;
        match o {
            Outcome::ConnectFailure => {
                on.connect_failure || on.any_5xx || on.gateway_error || on.refused_stream
            }
            Outcome::Reset => on.reset || on.any_5xx || on.gateway_error,
            Outcome::PerTryTimeout => on.any_5xx || on.gateway_error,
            Outcome::Response { status, grpc } => {
                (on.any_5xx && status >= 500)
                    || (on.gateway_error && matches!(status, 502..=504))
                    || (on.retriable_4xx && status == 409)
                    || on.status_codes.contains(&status)
                    || grpc.is_some_and(|g| on.grpc.contains(&g))
            }
        }
    }

    /// Envoy's backoff: a random wait below 25ms × 2^retry, capped at 250ms.
    pub fn backoff(retry: u32) -> Duration {
        let max = (25u64 << retry.min(4)).min(250);
        Duration::from_millis(rand::thread_rng().gen_range(0..=max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions_and_codes() {
        let p = RetryPolicy {
            attempts: 3,
            per_try_timeout: None,
            on: RetryOn::parse("gateway-error,409,retriable-4xx").unwrap(),
        };
        let r = |status| Outcome::Response { status, grpc: None };
        assert!(p.retriable(r(502)));
        assert!(!p.retriable(r(500)));
        assert!(p.retriable(r(409)));
        assert!(p.retriable(Outcome::ConnectFailure));
        assert!(RetryOn::parse("5xx,bogus").is_err());
        let d = RetryPolicy::istio_default();
        assert!(d.retriable(r(503)) && !d.retriable(r(500)));
        assert!(d.retriable(Outcome::Response {
            status: 200,
            grpc: Some(14)
        }));
    }
}
