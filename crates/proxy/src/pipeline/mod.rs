//! The request path, in order: accept (in `accept`) → read the request → route → fault →
//! upstream call with retries, timeouts, pool limits, balancing and outlier detection
//! (`upstream`) → response with telemetry recorded when its body ends.

pub mod local;
pub mod request;
pub mod upstream;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Request, Response, Version};
use rand::Rng;

use crate::body::ProxyBody;
use crate::config::reload::ConfigState;
use crate::config::table::{Action, Route, WeightedCluster};
use crate::conn::ConnInfo;
use crate::forward::Upstreams;
use crate::route::{self, split_authority, Match, RequestView};
use crate::telemetry::flags::Flags;
use crate::telemetry::metrics::{DestLabels, Protocol};
use crate::telemetry::{trace, RequestRecord, Telemetry};
use crate::upload::Upload;

/// Everything the request path shares.
pub struct Shared {
    pub config: Arc<ConfigState>,
    pub upstreams: Arc<Upstreams>,
    pub telemetry: Arc<Telemetry>,
    pub max_request_body: usize,
    pub unknown_dest: Arc<DestLabels>,
    /// Inbound proxies and gateways enforce AuthorizationPolicy; outbound ones do not.
    pub enforce_authz: bool,
    /// Identity and mTLS state (see [`crate::tls`]).
    pub tls: Arc<crate::tls::Context>,
}

const X_REQUEST_ID: &str = "x-request-id";

/// Handles one downstream request. Never fails: every problem is an HTTP answer.
pub async fn handle(
    px: Arc<Shared>,
    req: Request<crate::h1server::InBody>,
    conn: Arc<ConnInfo>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let start_wall = SystemTime::now();
    let (mut parts, body) = req.into_parts();
    // Cheap (reference-counted) copies of the URI and the `Host` value, so that authority,
    // path and query borrow from them while `parts` moves on; the record owns the one
    // `String` copy of the authority.
    let uri = parts.uri.clone();
    let host_header = match uri.authority() {
        Some(_) => None,
        None => parts.headers.get(HOST).cloned(),
    };
    let authority = match uri.authority() {
        Some(a) => a.as_str(),
        None => host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    };
    if authority.is_empty() {
        return local::plain(400, "missing host header");
    }
    let (host, port) = split_authority(authority, 80);
    let request_id = match parts.headers.get(X_REQUEST_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = new_request_id();
            parts.headers.insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    let trace = trace::extract(&parts.headers, px.telemetry.sampling_percent);
    // What only a span reports is gathered only for a span that will be sent.
    let spanned = trace.sampled && px.telemetry.spans.is_some();
    let protocol = match parts.headers.get(http::header::CONTENT_TYPE) {
        Some(ct) if ct.as_bytes().starts_with(b"application/grpc") => Protocol::Grpc,
        _ => Protocol::Http,
    };
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    };
    let rec = RequestRecord {
        start,
        start_wall,
        method: parts.method.clone(),
        url: if spanned {
            format!("http://{authority}{pq}")
        } else {
            String::new()
        },
        authority: authority.to_string(),
        http_version: match parts.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        protocol,
        user_agent: if spanned {
            parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        } else {
            String::new()
        },
        request_id,
        trace,
        dest: px.unknown_dest.clone(),
        source: px.telemetry.inbound.as_ref().map(|i| {
            let s = i.source(parts.headers.get(crate::telemetry::peer::PEER_HEADER));
            px.tls.source_labels(s, &conn)
        }),
        cluster: None,
        upstream: None,
        code: 0,
        flags: Flags::NONE,
        request_bytes: 0,
        security: match px.telemetry.inbound {
            Some(_) => conn.security,
            None => crate::conn::Security::None,
        },
    };
    let table = px.config.table();
    if px.enforce_authz && !table.authz.is_empty() {
        let attrs = crate::authz::Attributes::new(
            &conn,
            &parts.method,
            authority,
            &host,
            port,
            path,
            &parts.headers,
        );
        if !table.authz.permits(&attrs) {
            return local::reply(&px, rec, 403, Flags::NONE, crate::authz::DENIED_BODY);
        }
    }
    let found = route::find(
        &table,
        &RequestView {
            method: &parts.method,
            path,
            query,
            headers: &parts.headers,
            authority,
            host: &host,
            port,
            scheme: parts.uri.scheme_str().unwrap_or("http"),
        },
    );
    let Some((route, matched)) = found else {
        return local::reply(&px, rec, 404, Flags::NR, "");
    };
    match &route.action {
        Action::Redirect(r) => local::redirect(&px, rec, r, authority, path, query),
        Action::Direct { status, body } => local::direct(&px, rec, *status, body.clone()),
        Action::Forward(dests) => {
            let Some(wc) = choose(dests) else {
                return local::reply(&px, rec, 503, Flags::UH, "no healthy upstream");
            };
            let target = Target {
                route,
                matched,
                wc,
                authority,
                host_header: host_header.as_ref(),
                port,
                path,
                query,
            };
            // Boxed: hyper keeps a connection's request future allocated for the
            // connection's life, so the large forwarding state is held only while a
            // request is in flight, not by every idle keep-alive connection.
            Box::pin(forward(&px, rec, target, parts, body, &conn)).await
        }
    }
}

/// The route decisions a forwarded request carries.
pub struct Target<'t> {
    pub route: &'t Route,
    pub matched: Option<&'t Match>,
    pub wc: &'t WeightedCluster,
    pub authority: &'t str,
    /// The `Host` header the authority came from (none when the URI carried it).
    pub host_header: Option<&'t HeaderValue>,
    pub port: u16,
    pub path: &'t str,
    pub query: Option<&'t str>,
}

async fn forward(
    px: &Arc<Shared>,
    mut rec: RequestRecord,
    t: Target<'_>,
    mut parts: http::request::Parts,
    body: crate::h1server::InBody,
    conn: &ConnInfo,
) -> Response<ProxyBody> {
    let cluster = &t.wc.cluster;
    rec.dest = cluster.labels.clone();
    // Only a span reports the cluster name.
    if rec.trace.sampled && px.telemetry.spans.is_some() {
        rec.cluster = Some(cluster.name.clone());
    }
    if let Some(fault) = &t.route.fault {
        let d = fault.decide();
        if let Some(delay) = d.delay {
            tokio::time::sleep(delay).await;
            rec.flags |= Flags::DI;
        }
        if let Some(a) = d.abort {
            return local::abort(px, rec, a);
        }
    }
    // Streamed, not collected; `max_request_body` bounds only what is kept for retries and
    // mirrors (see `upload`). Bodiless requests (GET, HEAD) allocate nothing here.
    let body = Upload::new(body, px.max_request_body);
    // The request's headers move into the template (one copy per attempt, none here);
    // only header hashing still needs them afterwards.
    let hash_headers = match cluster.lb {
        crate::balance::LbPolicy::HashHeader(_) => parts.headers.clone(),
        _ => http::HeaderMap::new(),
    };
    let tmpl = Arc::new(request::Template::build(
        &t,
        parts.method.clone(),
        std::mem::take(&mut parts.headers),
        &rec,
        body,
        px.telemetry.peer_header.as_ref(),
    ));
    for m in &t.route.mirrors {
        if m.percent >= 100.0 || rand::thread_rng().gen::<f64>() * 100.0 < m.percent {
            upstream::mirror(
                px.clone(),
                m.cluster.clone(),
                tmpl.shadow(),
                tmpl.body.for_mirror(),
            );
        }
    }
    let hash = crate::balance::HashInput {
        headers: &hash_headers,
        query: t.query,
        source_ip: Some(conn.peer.ip()),
    };
    match upstream::call(px, t.route, cluster, &tmpl, &hash).await {
        upstream::Outcome::Local {
            code,
            flags,
            body,
            endpoint,
        } => {
            tmpl.body.abandon();
            rec.request_bytes = tmpl.body.read_bytes().unwrap_or(0);
            if let Some(ep) = endpoint {
                rec.dest = ep.dest_labels.clone();
            }
            local::reply(px, rec, code, flags, body)
        }
        upstream::Outcome::Response {
            resp,
            in_flight,
            flags,
            endpoint,
            address,
        } => {
            // No retry follows: the replay buffer can go.
            tmpl.body.commit();
            let (mut rp, rb) = resp.into_parts();
            request::strip_hop_by_hop(&mut rp.headers);
            t.route.headers.response.apply(&mut rp.headers);
            t.wc.headers.response.apply(&mut rp.headers);
            rp.version = Version::HTTP_11;
            rec.code = rp.status.as_u16();
            rec.flags |= flags;
            let peer = rp.extensions.get::<crate::tls::UpstreamPeer>();
            rec.dest = px.tls.dest_labels(&endpoint.dest_labels, peer);
            if px.telemetry.inbound.is_none() {
                rec.security = peer.map_or(rec.security, |p| p.security);
            }
            rec.upstream = Some(address);
            let grpc = rp
                .headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = ProxyBody::upstream(rb)
                .counting_request(tmpl.body.meter())
                .with_telemetry(px.telemetry.clone(), rec, in_flight, grpc);
            Response::from_parts(rp, body)
        }
    }
}

/// Weighted choice: weights are relative (weight / sum).
pub(crate) fn choose(dests: &[WeightedCluster]) -> Option<&WeightedCluster> {
    let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return dests.first();
    }
    let mut r = rand::thread_rng().gen_range(0..total);
    for d in dests {
        let w = u64::from(d.weight);
        if r < w {
            return Some(d);
        }
        r -= w;
    }
    dests.last()
}

thread_local! {
    /// Request ids need to be unique, not unpredictable: a small generator seeded once per
    /// thread from the OS-seeded one costs a few instructions where ChaCha costs hundreds.
    static REQUEST_IDS: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_rng(rand::thread_rng())
            .unwrap_or_else(|_| rand::SeedableRng::seed_from_u64(std::process::id().into())));
}

/// A random UUID (v4), Envoy's format for generated request ids.
fn new_request_id() -> HeaderValue {
    /// Where each byte's two hex digits go: groups of 4-2-2-2-6 bytes between dashes.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = REQUEST_IDS.with(|r| r.borrow_mut().gen());
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut out = [b'-'; 36];
    for (byte, at) in v.to_be_bytes().into_iter().zip(AT) {
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_uuid_v4() {
        let id = super::new_request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert!(s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        let ids: std::collections::HashSet<_> =
            (0..1000).map(|_| super::new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
