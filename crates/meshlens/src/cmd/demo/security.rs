//! The demo mesh's security: a mesh CA, one SPIFFE certificate per workload (its service
//! account is its service's name, the ingress's `istio-ingressgateway`), mutual TLS required
//! mesh-wide, and an AuthorizationPolicy that lets only proxy-access-control call http-lb.
//! The load generator also sends a few requests for http-lb straight through the ingress:
//! they are denied (403 `RBAC: access denied`), so a refused caller shows in the graph, the
//! stats and the traces.

use std::path::{Path, PathBuf};

use anyhow::Context;
use meshlens_identity::{Ca, DEFAULT_TTL};

/// The trust domain of the demo's SPIFFE ids.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Mesh-wide STRICT mTLS and the http-lb callers policy, written beside every proxy's own
/// config (inbound proxies enforce them; outbound proxies and the server's validator read them).
pub const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-lb-callers, namespace: default}
spec:
  selector: {matchLabels: {app: http-lb}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/proxy-access-control"]}}]
"#;

/// The mesh's CA and where it puts workload certificates.
pub struct MeshCa {
    ca: Ca,
    certs: PathBuf,
}

impl MeshCa {
    /// The CA under `dir/ca` (created on the first run, reused after), certificates under
    /// `dir/certs`.
    pub fn open(dir: &Path) -> anyhow::Result<MeshCa> {
        let ca_dir = dir.join("ca");
        let ca = if ca_dir.join(meshlens_identity::ca::CA_KEY).exists() {
            Ca::load(&ca_dir)
        } else {
            Ca::init(&ca_dir, TRUST_DOMAIN)
        }
        .with_context(|| format!("the demo's mesh CA in {}", ca_dir.display()))?;
        Ok(MeshCa {
            ca,
            certs: dir.join("certs"),
        })
    }

    /// Issues a fresh certificate for `workload`, running as service account `sa` in
    /// namespace `default`; returns the directory a proxy loads it from.
    pub fn issue(&self, workload: &str, sa: &str) -> anyhow::Result<PathBuf> {
        let out = self.certs.join(workload);
        self.ca
            .issue("default", sa, DEFAULT_TTL)
            .and_then(|c| c.write(&out))
            .with_context(|| format!("issuing the certificate of {workload}"))?;
        Ok(out)
    }
}
