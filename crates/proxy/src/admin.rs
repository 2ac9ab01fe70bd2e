//! The admin listener: `/metrics` and `/stats/prometheus` (Prometheus text), `/config`
//! (the config status as JSON: generation, objects, and the errors of a rejected reload),
//! `/ready`.

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::config::reload::ConfigState;
use crate::telemetry::metrics::Metrics;

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub config: Arc<ConfigState>,
}

impl Admin {
    pub fn handle(&self, req: &Request<Incoming>) -> Response<ProxyBody> {
        let (body, ct, code) = match req.uri().path() {
            "/metrics" | "/stats/prometheus" => (
                self.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
                StatusCode::OK,
            ),
            "/config" | "/config_status" => {
                let s = self.config.status.read().clone();
                (
                    serde_json::to_string_pretty(&s).unwrap_or_default(),
                    "application/json",
                    StatusCode::OK,
                )
            }
            "/ready" | "/healthz/ready" => ("LIVE\n".into(), "text/plain", StatusCode::OK),
            _ => (
                "not found; try /metrics, /stats/prometheus, /config, /ready\n".into(),
                "text/plain",
                StatusCode::NOT_FOUND,
            ),
        };
        let mut r = Response::new(ProxyBody::plain(body));
        *r.status_mut() = code;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        r
    }
}
