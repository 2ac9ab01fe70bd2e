//! Endpoint selection within a cluster (`trafficPolicy.loadBalancer`).
//!
//! Ejected endpoints are skipped; with none left the caller answers 503 UH (Istio disables
//! Envoy's panic mode by default). LEAST_REQUEST is Envoy's power-of-two-choices; consistent
//! hashing uses rendezvous hashing, which keeps a key on its endpoint while the set of healthy
//! endpoints is unchanged and moves only the keys of an endpoint that leaves.

use std::borrow::Borrow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName};
use rand::Rng;

use crate::config::table::{Cluster, Endpoint};

#[derive(Debug, Clone)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    HashHeader(HeaderName),
    HashQuery(String),
    HashSourceIp,
}

/// What a hash policy may read from the request.
pub struct HashInput<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub source_ip: Option<std::net::IpAddr>,
}

/// Picks an endpoint, avoiding `avoid` (the previous attempt's, as Istio's retry host
/// predicate does) when another healthy one exists.
pub fn pick(
    cluster: &Cluster,
    input: &HashInput<'_>,
    avoid: Option<&Arc<Endpoint>>,
) -> Option<Arc<Endpoint>> {
    let eps = &cluster.endpoints;
    // Common case (no outlier detection, no endpoint to avoid): no filtering, no allocation.
    if cluster.outlier.is_none() && (avoid.is_none() || eps.len() < 2) {
        return match eps.len() {
            0 => None,
            1 => Some(eps[0].clone()),
            _ => Some(choose(cluster, eps, input).clone()),
        };
    }
    let now = Instant::now();
    let healthy: Vec<&Arc<Endpoint>> = if cluster.outlier.is_some() {
        eps.iter().filter(|e| !e.health.is_ejected(now)).collect()
    } else {
        eps.iter().collect()
    };
    let candidates: Vec<&Arc<Endpoint>> = match avoid {
        Some(a) if healthy.len() > 1 => healthy
            .iter()
            .copied()
            .filter(|e| !Arc::ptr_eq(e, a))
            .collect(),
        _ => healthy,
    };
    if candidates.is_empty() {
        return None;
    }
    if candidates.len() == 1 {
        return Some(candidates[0].clone());
    }
    Some(choose(cluster, &candidates, input).clone())
}

/// The policy's choice among two or more candidates.
fn choose<'a, E: Borrow<Arc<Endpoint>>>(
    cluster: &Cluster,
    candidates: &'a [E],
    input: &HashInput<'_>,
) -> &'a Arc<Endpoint> {
    let mut rng = rand::thread_rng();
    let at = |i: usize| -> &'a Arc<Endpoint> { candidates[i].borrow() };
    let n = candidates.len();
    match &cluster.lb {
        LbPolicy::RoundRobin => at((cluster.state.next_rr() % n as u64) as usize),
        LbPolicy::Random => at(rng.gen_range(0..n)),
        LbPolicy::LeastRequest => {
            let a = rng.gen_range(0..n);
            let mut b = rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let load = |i: usize| {
                at(i)
                    .health
                    .active
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            if load(b) < load(a) {
                at(b)
            } else {
                at(a)
            }
        }
        hash => match hash_key(hash, input) {
            Some(key) => rendezvous(candidates.iter().map(Borrow::borrow), key),
            None => at(rng.gen_range(0..n)),
        },
    }
}

fn hash_key(policy: &LbPolicy, input: &HashInput<'_>) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match policy {
        LbPolicy::HashHeader(name) => input.headers.get(name)?.as_bytes().hash(&mut h),
        LbPolicy::HashQuery(name) => {
            let q = input.query?;
            let v = q
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .find(|(k, _)| k == name)?
                .1;
            v.hash(&mut h)
        }
        LbPolicy::HashSourceIp => input.source_ip?.hash(&mut h),
        _ => return None,
    }
    Some(h.finish())
}

/// Highest-random-weight choice: each endpoint scores hash(key, address).
fn rendezvous<'a>(
    candidates: impl Iterator<Item = &'a Arc<Endpoint>>,
    key: u64,
) -> &'a Arc<Endpoint> {
    candidates
        .max_by_key(|e| {
            let mut h = DefaultHasher::new();
            key.hash(&mut h);
            e.host.hash(&mut h);
            e.port.hash(&mut h);
            h.finish()
        })
        .expect("candidates is not empty")
}
