//! Answers the proxy makes itself: no route, no healthy upstream, overflow, timeouts, faults,
//! redirects and direct responses. Bodies are Envoy's, so clients see the same text.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use super::Shared;
use crate::body::{InFlight, ProxyBody};
use crate::config::table::Redirect;
use crate::resilience::fault::Abort;
use crate::telemetry::flags::Flags;
use crate::telemetry::RequestRecord;

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A reply outside the telemetry path (malformed requests).
pub fn plain(code: u16, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::plain(body));
    *r.status_mut() = status(code);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A local reply, recorded in telemetry like any response.
pub fn reply(
    px: &Shared,
    mut rec: RequestRecord,
    code: u16,
    flags: Flags,
    body: &'static str,
) -> Response<ProxyBody> {
    rec.code = code;
    rec.flags |= flags;
    let mut r = Response::new(ProxyBody::plain(body).with_telemetry(
        px.telemetry.clone(),
        rec,
        InFlight::default(),
        None,
    ));
    *r.status_mut() = status(code);
    if !body.is_empty() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

pub fn abort(px: &Shared, mut rec: RequestRecord, a: Abort) -> Response<ProxyBody> {
    rec.flags |= Flags::FI;
    match a {
        Abort::Http(code) => reply(px, rec, code, Flags::NONE, "fault filter abort"),
        Abort::Grpc(g) => {
            rec.code = 200;
            let mut r = Response::new(ProxyBody::empty().with_telemetry(
                px.telemetry.clone(),
                rec,
                InFlight::default(),
                Some(g),
            ));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(g));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            r
        }
    }
}

pub fn direct(px: &Shared, mut rec: RequestRecord, code: u16, body: Bytes) -> Response<ProxyBody> {
    rec.code = code;
    let mut r = Response::new(ProxyBody::plain(body).with_telemetry(
        px.telemetry.clone(),
        rec,
        InFlight::default(),
        None,
    ));
    *r.status_mut() = status(code);
    r
}

/// Istio's `redirect`: each part given replaces the request's; the query is kept unless the
/// new uri has one.
pub fn redirect(
    px: &Shared,
    mut rec: RequestRecord,
    rd: &Redirect,
    authority: &str,
    path: &str,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let scheme = rd.scheme.as_deref().unwrap_or("http");
    let mut host = rd
        .authority
        .clone()
        .unwrap_or_else(|| authority.to_string());
    if let Some(p) = rd.port {
        let (h, _) = crate::route::split_authority(&host, 80);
        host = format!("{h}:{p}");
    }
    let mut target = rd.uri.clone().unwrap_or_else(|| path.to_string());
    if !target.contains('?') {
        if let Some(q) = query {
            target = format!("{target}?{q}");
        }
    }
    let location = format!("{scheme}://{host}{target}");
    rec.code = rd.code;
    let mut r = Response::new(ProxyBody::empty().with_telemetry(
        px.telemetry.clone(),
        rec,
        InFlight::default(),
        None,
    ));
    *r.status_mut() = status(rd.code);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}
