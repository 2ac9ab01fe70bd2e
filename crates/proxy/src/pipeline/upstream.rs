//! One upstream call under the route's resilience policy: the overall timeout around a loop
//! of attempts; each attempt picks an endpoint (balance), takes a connection-pool slot
//! (overflow → 503 UO), sends with the per-try timeout (forward), feeds outlier detection,
//! and is retried while the retry policy says so (retries exhausted → flag URX).

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::Response;

use super::request::Template;
use super::Shared;
use crate::balance::{self, HashInput};
use crate::body::InFlight;
use crate::config::table::{Cluster, Endpoint, Route};
use crate::forward::SendError;
use crate::resilience::outlier::Observation;
use crate::resilience::retry::{Outcome as Try, RetryPolicy};
use crate::telemetry::flags::Flags;
use crate::upload::MirrorBody;

// Moved once per request, right away: boxing the response would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Response {
        resp: Response<crate::forward::UpBody>,
        in_flight: InFlight,
        flags: Flags,
        endpoint: Arc<Endpoint>,
        address: Arc<str>,
    },
    Local {
        code: u16,
        flags: Flags,
        body: &'static str,
        endpoint: Option<Arc<Endpoint>>,
    },
}

const UF_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
const UC_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
const UO_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

fn local(code: u16, flags: Flags, body: &'static str, endpoint: Option<Arc<Endpoint>>) -> Outcome {
    Outcome::Local {
        code,
        flags,
        body,
        endpoint,
    }
}

pub async fn call(
    px: &Shared,
    route: &Route,
    cluster: &Arc<Cluster>,
    tmpl: &Template,
    hash: &HashInput<'_>,
) -> Outcome {
    if cluster.missing_subset {
        return local(503, Flags::NC, "", None);
    }
    let attempts = attempts(px, &route.retry, cluster, tmpl, hash);
    let Some(t) = route.timeout else {
        return attempts.await;
    };
    // As Envoy's route timeout: counted from the end of the request, so a slow upload (a
    // client-streaming call) is not cut off while it is still sending.
    let expired = async {
        tmpl.body.received().await;
        tokio::time::sleep(t).await;
    };
    tokio::select! {
        outcome = attempts => outcome,
        () = expired => local(504, Flags::UT, "upstream request timeout", None),
    }
}

async fn attempts(
    px: &Shared,
    policy: &RetryPolicy,
    cluster: &Arc<Cluster>,
    tmpl: &Template,
    hash: &HashInput<'_>,
) -> Outcome {
    let mut previous: Option<Arc<Endpoint>> = None;
    let mut attempt = 0u32;
    loop {
        let Some(ep) = balance::pick(cluster, hash, previous.as_ref()) else {
            return local(503, Flags::UH, "no healthy upstream", None);
        };
        let permit = match &cluster.limiter {
            Some(l) => match l.acquire().await {
                Ok(p) => Some(p),
                Err(_) => return local(503, Flags::UO, UO_BODY, Some(ep)),
            },
            None => None,
        };
        let in_flight = InFlight::on(ep.clone(), permit);
        let address = ep.address(cluster.port.unwrap_or(tmpl.port));
        let h2 = cluster.http2 || tmpl.grpc;
        let tls = match px.tls.origination(&cluster.tls, cluster.mesh_external) {
            crate::tls::Origination::Plain => None,
            crate::tls::Origination::Tls(t) => Some(t),
            crate::tls::Origination::NoIdentity => {
                tracing::warn!(cluster = %cluster.name, "ISTIO_MUTUAL without a workload certificate (--cert-dir)");
                return local(503, Flags::UF, UF_BODY, Some(ep));
            }
        };
        let send = px.upstreams.send_via(&address, h2, tls.as_ref(), tmpl);
        let result = match policy.per_try_timeout {
            Some(t) => tokio::time::timeout(t, send).await.ok(),
            None => Some(send.await),
        };
        let (outcome, observation) = match &result {
            Some(Ok(resp)) => {
                let status = resp.status().as_u16();
                let grpc = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                (Try::Response { status, grpc }, Observation::Status(status))
            }
            Some(Err(SendError::Connect(_))) => (Try::ConnectFailure, Observation::ConnectFailure),
            Some(Err(SendError::Reset(_))) => (Try::Reset, Observation::Reset),
            None => (Try::PerTryTimeout, Observation::Timeout),
        };
        if let Some(od) = &cluster.outlier {
            od.observe(
                &ep.health,
                cluster.endpoints.iter().map(|e| &*e.health),
                observation,
            );
        }
        let retriable = policy.retriable(outcome);
        // A body past the replay limit cannot be sent again: this attempt's outcome stands.
        if retriable && attempt < policy.attempts && tmpl.body.replayable() {
            drop(result);
            drop(in_flight);
            tokio::time::sleep(RetryPolicy::backoff(attempt)).await;
            attempt += 1;
            previous = Some(ep);
            continue;
        }
        let urx = if retriable && policy.attempts > 0 && attempt >= policy.attempts {
            Flags::URX
        } else {
            Flags::NONE
        };
        return match result {
            Some(Ok(resp)) => Outcome::Response {
                resp,
                in_flight,
                flags: urx,
                endpoint: ep,
                address,
            },
            Some(Err(SendError::Connect(e))) => {
                tracing::debug!(error = %e, "upstream connect failure");
                local(503, Flags::UF | urx, UF_BODY, Some(ep))
            }
            Some(Err(SendError::Reset(e))) => {
                tracing::debug!(error = %e, "upstream reset");
                local(503, Flags::UC | urx, UC_BODY, Some(ep))
            }
            None => local(504, Flags::UT, "upstream request timeout", Some(ep)),
        };
    }
}

/// Fire-and-forget copy of a request to a mirror cluster; its answer is read and dropped.
/// It is sent once its body is complete, and skipped when the body cannot be copied (over
/// the replay limit, failed or abandoned; see [`crate::upload`]).
pub fn mirror(px: Arc<Shared>, cluster: Arc<Cluster>, mut tmpl: Template, body: MirrorBody) {
    tokio::spawn(async move {
        let Some(body) = body.resolve().await else {
            tracing::debug!(cluster = %cluster.name, "mirror skipped: request body over the replay limit or incomplete");
            return;
        };
        tmpl.body = body;
        let headers = http::HeaderMap::new();
        let hash = HashInput {
            headers: &headers,
            query: None,
            source_ip: None,
        };
        if cluster.missing_subset {
            return;
        }
        let Some(ep) = balance::pick(&cluster, &hash, None) else {
            return;
        };
        let address = ep.address(cluster.port.unwrap_or(tmpl.port));
        let h2 = cluster.http2 || tmpl.grpc;
        let tls = match px.tls.origination(&cluster.tls, cluster.mesh_external) {
            crate::tls::Origination::Plain => None,
            crate::tls::Origination::Tls(t) => Some(t),
            crate::tls::Origination::NoIdentity => return,
        };
        if let Ok(resp) = px
            .upstreams
            .send_via(&address, h2, tls.as_ref(), &tmpl)
            .await
        {
            let _ = resp.into_body().collect().await;
        }
    });
}
