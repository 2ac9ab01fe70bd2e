//! The demo mesh, modelled on the OPNFV Clover sample: an ingress, proxy-access-control,
//! http-lb in two versions, three clover-server backends and snort-ids receiving a mirror.
//! Each service sits behind its own inbound proxy; services that call others do so through
//! an outbound sidecar, as in Istio.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// One workload of the demo.
pub struct Workload {
    pub service: &'static str,
    pub version: &'static str,
    pub behaviour: Behaviour,
}

impl Workload {
    /// The workload name as Kubernetes would show it.
    pub fn name(&self) -> String {
        match self.service {
            "http-lb" => format!("http-lb-{}", self.version),
            _ => self.service.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Refuses bad user agents, forwards the rest to http-lb.
    AccessControl,
    /// Forwards to the clover-server pool; v2 fails a little more often (a canary).
    LoadBalancer { error_per_mille: u32 },
    /// Answers; fails `error_per_mille` of requests with 503.
    Server { error_per_mille: u32 },
    /// Takes mirrored traffic and answers nothing interesting.
    Ids,
}

/// The demo's service level objectives, measured by the callers' proxies (`source`) so the
/// faults that the mesh injects on `/api/flaky` count against clover-server's budget.
pub const SLOS: &str = r#"slos:
  - service: clover-server
    objective: 99.9
    latency: {threshold: 300ms, objective: 99}
    reporter: source
  - service: http-lb
    objective: 99
    reporter: source
  - service: proxy-access-control
    objective: 99
    reporter: source
"#;

pub fn workloads() -> Vec<Workload> {
    use Behaviour::*;
    vec![
        Workload {
            service: "proxy-access-control",
            version: "v1",
            behaviour: AccessControl,
        },
        Workload {
            service: "http-lb",
            version: "v1",
            behaviour: LoadBalancer { error_per_mille: 0 },
        },
        Workload {
            service: "http-lb",
            version: "v2",
            behaviour: LoadBalancer {
                error_per_mille: 20,
            },
        },
        Workload {
            service: "clover-server1",
            version: "v1",
            behaviour: Server { error_per_mille: 0 },
        },
        Workload {
            service: "clover-server2",
            version: "v1",
            behaviour: Server { error_per_mille: 0 },
        },
        Workload {
            service: "clover-server3",
            version: "v1",
            behaviour: Server {
                error_per_mille: 100,
            },
        },
        Workload {
            service: "snort-ids",
            version: "v1",
            behaviour: Ids,
        },
    ]
}

/// Where the outbound sidecars send each service: the inbound proxies' addresses.
pub struct Endpoint<'a> {
    pub workload: &'a Workload,
    pub inbound: SocketAddr,
    /// The workload's cluster, so that callers report `destination_cluster` as the callee's
    /// own proxy does (Istio reads it from the `topology.istio.io/cluster` label).
    pub cluster: &'a str,
}

const NS: &str = "default";

/// The Istio config every outbound proxy (and the ingress) routes by: ServiceEntries for
/// the inbound proxies, subsets, and the demo's rules (header match, a 95/5 split,
/// mirroring, a fault on one path, outlier detection on the backends).
pub fn outbound_config(endpoints: &[Endpoint<'_>]) -> String {
    let mut out = String::new();
    let mut services: Vec<&str> = endpoints.iter().map(|e| e.workload.service).collect();
    services.dedup();
    let mut hosts: Vec<&str> = services.iter().map(|s| host_of(s)).collect();
    hosts.dedup();
    for host in hosts {
        let _ = write!(
            out,
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}, namespace: {NS}}}\n\
             spec:\n  hosts: [{host}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n\
             \x20 ports: [{{number: 80, name: http, protocol: HTTP}}]\n\
             \x20 workloadSelector: {{labels: {{app: {host}}}}}\n---\n"
        );
        for e in endpoints
            .iter()
            .filter(|e| host_of(e.workload.service) == host)
        {
            let _ = write!(
                out,
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {}, namespace: {NS}}}\n\
                 spec: {{address: {}, ports: {{http: {}}}, labels: {{app: {host}, version: {}, \"topology.istio.io/cluster\": {}}}}}\n---\n",
                e.workload.name(),
                e.inbound.ip(),
                e.inbound.port(),
                e.workload.version,
                e.cluster
            );
        }
    }
    out.push_str(RULES);
    out
}

const RULES: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: proxy-access-control, namespace: default}
spec:
  hosts: [proxy-access-control]
  http:
  - route: [{destination: {host: proxy-access-control}}]
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "connect-failure,reset"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: http-lb, namespace: default}
spec:
  host: http-lb
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: http-lb, namespace: default}
spec:
  hosts: [http-lb]
  http:
  - name: canary-testers
    match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: http-lb, subset: v2}}]
    mirror: {host: snort-ids}
  - name: split
    route:
    - {destination: {host: http-lb, subset: v1}, weight: 95}
    - {destination: {host: http-lb, subset: v2}, weight: 5}
    mirror: {host: snort-ids}
    mirrorPercentage: {value: 100}
    timeout: 5s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: clover-server, namespace: default}
spec:
  host: clover-server
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 34}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: clover-server, namespace: default}
spec:
  hosts: [clover-server]
  http:
  - name: flaky-path
    match: [{uri: {prefix: /api/flaky}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 30}}, delay: {fixedDelay: 50ms, percentage: {value: 20}}}
    route: [{destination: {host: clover-server}}]
  - route: [{destination: {host: clover-server}}]
    retries: {attempts: 1, perTryTimeout: 2s, retryOn: "connect-failure"}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: snort-ids, namespace: default}
spec:
  hosts: [snort-ids]
  http:
  - route: [{destination: {host: snort-ids}}]
"#;

/// The config of one inbound proxy: whatever Host a request carries (mirrored copies come
/// as `<original host>-shadow`), it goes to the local app, as an Istio inbound listener does,
/// and is reported as a request to the workload's own service. The VirtualService names the
/// service's host as well as `*`, so that its route (and a fault the canary adds to it) is
/// the one requests for the service take, not the ServiceEntry's default route.
pub fn inbound_config(host: &str, app: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}-inbound, namespace: {NS}}}\n\
         spec:\n  hosts: [{host}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n\
         \x20 ports: [{{number: 80, name: http, protocol: HTTP}}]\n\
         \x20 endpoints: [{{address: {}, ports: {{http: {}}}}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {host}-inbound, namespace: {NS}}}\n\
         spec:\n  hosts: [{host}, \"*\"]\n  http:\n  - route: [{{destination: {{host: {host}}}}}]\n",
        app.ip(),
        app.port()
    )
}

/// clover-server1..3 are three workloads of one service.
pub fn host_of(service: &str) -> &str {
    if service.starts_with("clover-server") {
        "clover-server"
    } else {
        service
    }
}
