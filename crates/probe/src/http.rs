//! blackbox_exporter's `http` prober: resolve, request (following redirects unless told not
//! to), judge the status code, the body regexes and TLS, and report the same gauges with the
//! same meanings, including on failure.

use std::time::Instant;

use http_body_util::BodyExt;

use crate::config::HttpProbe;
use crate::http_conn::{round_trip, Exchange, Hop, Trace};
use crate::httpdate::parse_http_date;
use crate::measured::Measured;
use crate::resolve::choose_ip;
use crate::target::parse_http_target;
use crate::tls;

/// Bodies kept in memory for the regexes stop here; a larger body fails the probe (blackbox
/// has no limit, but an unbounded buffer fed by the network is not acceptable here).
const MAX_REGEX_BODY: usize = 64 << 20;

const PHASE: &str = "probe_http_duration_seconds";

/// One HTTP probe's state. It lives outside the probe's future so that what was measured
/// survives the timeout cancelling that future.
#[derive(Default)]
pub(crate) struct HttpRun {
    pub m: Measured,
    traces: Vec<Trace>,
}

fn phase(name: &str) -> Vec<(&'static str, String)> {
    vec![("phase", name.to_string())]
}

fn secs(a: Option<Instant>, b: Option<Instant>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    }
}

impl HttpRun {
    /// Runs the probe; `true` when it succeeded.
    pub async fn run(&mut self, cfg: &HttpProbe, target: &str) -> bool {
        for name in [
            "probe_http_content_length",
            "probe_http_uncompressed_body_length",
            "probe_http_redirects",
            "probe_http_ssl",
            "probe_http_status_code",
            "probe_http_version",
            "probe_failed_due_to_regex",
        ] {
            self.m.set(name, 0.0);
        }
        let first = match parse_http_target(target) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(target, error = %e, "probe target is not a URL");
                return false;
            }
        };
        let (resolved, took) = choose_ip(&first.host, &mut self.m).await;
        // The first round trip's resolve phase is this lookup (as blackbox's chooseProtocol).
        self.m.add_with(PHASE, phase("resolve"), took);
        let ip = match resolved {
            Ok(ip) => ip,
            Err(e) => {
                tracing::debug!(target, error = %e, "probe target did not resolve");
                return false;
            }
        };
        let client = match tls::client(&cfg.tls_config, &[b"h2", b"http/1.1"]) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target, error = %e, "probe TLS settings unusable");
                return false;
            }
        };
        for p in ["connect", "tls", "processing", "transfer"] {
            self.m.add_with(PHASE, phase(p), 0.0);
        }
        let configured_host = cfg
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone());
        let first_tls_name = cfg
            .tls_config
            .server_name
            .clone()
            .or_else(|| configured_host.clone())
            .unwrap_or_else(|| first.host.clone());
        let mut hop_target = first.clone();
        let mut host_header = configured_host.unwrap_or_else(|| first.authority.clone());
        let mut method = cfg.method.clone();
        let mut redirects = 0u32;
        loop {
            let same_host = hop_target.host == first.host && hop_target.port == first.port;
            let hop = Hop {
                target: &hop_target,
                ip: same_host.then_some(ip),
                method: &method,
                host_header: &host_header,
                headers: &cfg.headers,
                tls_name: if same_host {
                    &first_tls_name
                } else {
                    &hop_target.host
                },
                tls_client: Some(&client),
            };
            self.traces.push(Trace::default());
            let Some(trace) = self.traces.last_mut() else {
                return false;
            };
            let exchange = match round_trip(&hop, trace).await {
                Ok(ex) => ex,
                Err(e) => {
                    tracing::debug!(target, url = %hop_target.absolute(), error = %e, "probe request failed");
                    return false;
                }
            };
            let status = exchange.response.status().as_u16();
            let location = exchange
                .response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let Some(location) = location.filter(|_| matches!(status, 301..=303 | 307 | 308))
            else {
                return self.finish(cfg, exchange, false).await;
            };
            // Go's CheckRedirect sees every earlier request: the count includes this one.
            redirects += 1;
            self.m.set("probe_http_redirects", f64::from(redirects));
            if redirects > 10 || cfg.no_follow_redirects {
                return self.finish(cfg, exchange, true).await;
            }
            let next = match hop_target.join(&location) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(target, error = %e, "probe redirect has a bad Location");
                    return false;
                }
            };
            let trimmed = location.trim_start();
            let absolute = trimmed.starts_with("//") || trimmed.contains("://");
            if absolute {
                host_header = next.authority.clone();
            }
            if matches!(status, 301..=303) && method != http::Method::HEAD {
                method = http::Method::GET;
            }
            hop_target = next;
        }
    }

    /// Judges the final response; `errored` when the client gave up on it (a redirect it
    /// would not follow), in which case Go never reads its body.
    async fn finish(&mut self, cfg: &HttpProbe, ex: Exchange, errored: bool) -> bool {
        let Exchange {
            response,
            tls: tls_state,
            ..
        } = ex;
        let (parts, mut body) = response.into_parts();
        let status = parts.status.as_u16();
        self.m.set("probe_http_status_code", f64::from(status));
        self.m.set(
            "probe_http_content_length",
            content_length(&parts, &cfg.method, &body),
        );
        let version = match parts.version {
            http::Version::HTTP_09 => 0.9,
            http::Version::HTTP_10 => 1.0,
            http::Version::HTTP_11 => 1.1,
            http::Version::HTTP_2 => 2.0,
            http::Version::HTTP_3 => 3.0,
            _ => 0.0,
        };
        let mut success = if cfg.valid_status_codes.is_empty() {
            (200..300).contains(&status)
        } else {
            cfg.valid_status_codes.contains(&status)
        };
        let regexes = !cfg.fail_if_body_matches_regexp.is_empty()
            || !cfg.fail_if_body_not_matches_regexp.is_empty();
        let mut read: u64 = 0;
        let mut body_done = false;
        if success && regexes {
            let matched = if errored {
                false // the body is already closed: Go's read fails, so the match does
            } else {
                let whole = read_all(&mut body, &mut read).await;
                body_done = true;
                match whole {
                    Some(bytes) => body_matches(cfg, &bytes),
                    None => false,
                }
            };
            success = matched;
            self.m
                .set("probe_failed_due_to_regex", if matched { 0.0 } else { 1.0 });
        }
        if !errored && !body_done {
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            read += d.len() as u64;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "probe failed reading the body");
                        success = false;
                        break;
                    }
                }
            }
        }
        if let Some(t) = self.traces.last_mut() {
            t.end = Some(Instant::now());
        }
        if let Some(lm) = parts
            .headers
            .get(http::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            self.m
                .set("probe_http_last_modified_timestamp_seconds", lm as f64);
        }
        self.m.set("probe_http_version", version);
        match &tls_state {
            Some(state) => {
                self.m.set("probe_http_ssl", 1.0);
                tls::record(&mut self.m, state);
                if cfg.fail_if_ssl {
                    success = false;
                }
            }
            None if cfg.fail_if_not_ssl => success = false,
            None => {}
        }
        self.m
            .set("probe_http_uncompressed_body_length", read as f64);
        success
    }

    /// The measurements, with the phase durations summed over every round trip as blackbox
    /// does (called after the probe finished or was cut off by its timeout).
    pub fn into_measured(mut self) -> Measured {
        for (i, t) in self.traces.iter().enumerate() {
            if i != 0 {
                self.m
                    .add_with(PHASE, phase("resolve"), secs(t.start, t.dns_done));
            }
            if t.got_conn.is_none() {
                continue;
            }
            if t.tls {
                self.m
                    .add_with(PHASE, phase("connect"), secs(t.dns_done, t.connect_done));
                self.m
                    .add_with(PHASE, phase("tls"), secs(t.tls_start, t.tls_done));
            } else {
                self.m
                    .add_with(PHASE, phase("connect"), secs(t.dns_done, t.got_conn));
            }
            if t.response_start.is_none() {
                continue;
            }
            self.m.add_with(
                PHASE,
                phase("processing"),
                secs(t.got_conn, t.response_start),
            );
            if t.end.is_none() {
                continue;
            }
            self.m
                .add_with(PHASE, phase("transfer"), secs(t.response_start, t.end));
        }
        self.m
    }
}

/// Go's `Response.ContentLength`: the header's value, 0 where no body may follow, -1 when
/// unknown (chunked, or read until close).
fn content_length(
    parts: &http::response::Parts,
    method: &http::Method,
    body: &hyper::body::Incoming,
) -> f64 {
    use hyper::body::Body;
    let header = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let status = parts.status.as_u16();
    if *method == http::Method::HEAD {
        return header.unwrap_or(-1) as f64;
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return 0.0;
    }
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return -1.0;
    }
    match header {
        Some(n) => n as f64,
        None if parts.version == http::Version::HTTP_2 && body.is_end_stream() => 0.0,
        None => -1.0,
    }
}

/// The whole body, counting bytes into `read`; `None` on a read error or past the cap.
async fn read_all(body: &mut hyper::body::Incoming, read: &mut u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(d) = frame.data_ref() {
            *read += d.len() as u64;
            if buf.len() + d.len() > MAX_REGEX_BODY {
                return None;
            }
            buf.extend_from_slice(d);
        }
    }
    Some(buf)
}

fn body_matches(cfg: &HttpProbe, body: &[u8]) -> bool {
    if cfg
        .fail_if_body_matches_regexp
        .iter()
        .any(|r| r.0.is_match(body))
    {
        return false;
    }
    cfg.fail_if_body_not_matches_regexp
        .iter()
        .all(|r| r.0.is_match(body))
}
