//! Which TLS the config asks for: PeerAuthentication for what the inbound listener accepts,
//! DestinationRule `tls` for what an outbound connection originates. Compiled with the rest of
//! the table, so a policy that does not parse rejects the whole load and the last good table
//! keeps enforcing (a STRICT listener never falls open on a bad edit).

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlens_identity::SpiffeId;
use meshlens_mesh::{PeerAuthentication, PeerMtls, Source};
use serde_yaml_ng::Value;

use super::upstream::TlsTarget;

/// Istio's root namespace: a selector-less PeerAuthentication there is mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// PeerAuthentication `mtls.mode`, resolved (UNSET inherits, so it never remains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// mTLS only; plaintext and certificate-less clients are refused.
    Strict,
    /// mTLS or plaintext, told apart by the first byte.
    Permissive,
    /// Plaintext only.
    Disable,
}

/// What the inbound listener accepts, by port (the listener's port stands for the workload
/// port `portLevelMtls` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMtls {
    pub mode: MtlsMode,
    pub ports: BTreeMap<u16, MtlsMode>,
}

impl Default for InboundMtls {
    /// Istio's default with no policy at all.
    fn default() -> Self {
        InboundMtls {
            mode: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

impl InboundMtls {
    pub fn for_port(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

/// `None` for UNSET (inherit).
fn parse_mode(m: Option<&PeerMtls>) -> Result<Option<MtlsMode>, String> {
    let Some(mode) = m.and_then(|m| m.mode.as_deref()) else {
        return Ok(None);
    };
    match mode.to_ascii_uppercase().as_str() {
        "UNSET" | "" => Ok(None),
        "STRICT" => Ok(Some(MtlsMode::Strict)),
        "PERMISSIVE" => Ok(Some(MtlsMode::Permissive)),
        "DISABLE" => Ok(Some(MtlsMode::Disable)),
        other => Err(format!(
            "mtls.mode {other:?} is not one of UNSET, DISABLE, PERMISSIVE, STRICT"
        )),
    }
}

fn selector_of(pa: &PeerAuthentication) -> Option<&BTreeMap<String, String>> {
    pa.spec
        .selector
        .as_ref()
        .map(|s| &s.match_labels)
        .filter(|l| !l.is_empty())
}

/// Resolves the policies for the workload in `namespace` with `labels`: the workload
/// selector's policy over the namespace's over the mesh's (root namespace), each UNSET level
/// inheriting the one above; port-level settings of the selecting policy last. Among several
/// policies at one level the first by name wins (Istio takes the oldest; files carry no
/// creation time). Errors carry the policy's source.
pub fn inbound_mtls(
    pas: &[PeerAuthentication],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<InboundMtls, Vec<(Source, String)>> {
    let mut errors = Vec::new();
    let mut modes: Vec<(&PeerAuthentication, Option<MtlsMode>)> = Vec::new();
    for pa in pas {
        match parse_mode(pa.spec.mtls.as_ref()) {
            Ok(m) => modes.push((pa, m)),
            Err(e) => errors.push((pa.source.clone(), policy_error(pa, &e))),
        }
        for (port, m) in &pa.spec.port_level_mtls {
            if u16::try_from(*port).is_err() || *port == 0 {
                errors.push((
                    pa.source.clone(),
                    policy_error(pa, &format!("portLevelMtls port {port} is out of range")),
                ));
            }
            if let Err(e) = parse_mode(Some(m)) {
                errors.push((
                    pa.source.clone(),
                    policy_error(pa, &format!("portLevelMtls[{port}].{e}")),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    modes.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    let pick = |f: &dyn Fn(&PeerAuthentication) -> bool| modes.iter().find(|(pa, _)| f(pa));
    let mesh = pick(&|pa| pa.namespace() == ROOT_NAMESPACE && selector_of(pa).is_none());
    let ns = pick(&|pa| {
        pa.namespace() == namespace && namespace != ROOT_NAMESPACE && selector_of(pa).is_none()
    });
    let workload = pick(&|pa| {
        pa.namespace() == namespace
            && selector_of(pa).is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    });
    let mut mode = MtlsMode::Permissive;
    for level in [mesh, ns, workload].into_iter().flatten() {
        if let Some(m) = level.1 {
            mode = m;
        }
    }
    let mut ports = BTreeMap::new();
    if let Some((pa, _)) = workload {
        for (port, m) in &pa.spec.port_level_mtls {
            let m = parse_mode(Some(m)).expect("checked above").unwrap_or(mode);
            ports.insert(u16::try_from(*port).expect("checked above"), m);
        }
    }
    Ok(InboundMtls { mode, ports })
}

fn policy_error(pa: &PeerAuthentication, e: &str) -> String {
    format!("PeerAuthentication {}/{} {e}", pa.namespace(), pa.name())
}

/// DestinationRule `tls.mode` for one cluster.
#[derive(Clone, Default)]
pub enum UpstreamTls {
    /// No TLS setting: mutual TLS with the mesh identity when this proxy has one (auto
    /// mTLS, see [`crate::tls`]), else plaintext.
    #[default]
    Auto,
    /// `DISABLE`: plaintext.
    Disable,
    /// `ISTIO_MUTUAL`: mutual TLS with the mesh identity; without one the request fails (UF).
    /// The server must prove one of the `subjectAltNames` when there are any.
    IstioMutual(Arc<[SpiffeId]>),
    /// `SIMPLE` / `MUTUAL` with files: TLS as configured.
    Custom(Arc<TlsTarget>),
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamTls::Auto => "Auto",
            UpstreamTls::Disable => "Disable",
            UpstreamTls::IstioMutual(_) => "IstioMutual",
            UpstreamTls::Custom(_) => "Custom",
        })
    }
}

/// The cluster's TLS from its resolved DestinationRule `tls` settings
/// ([`crate::config::policy::EffectivePolicy`]); none means auto mTLS.
pub fn upstream_tls(tls: Option<&Value>) -> Result<UpstreamTls, String> {
    let Some(tls) = tls.filter(|v| !v.is_null()) else {
        return Ok(UpstreamTls::Auto);
    };
    let mode = match tls.get("mode") {
        None => "DISABLE".to_string(),
        Some(m) => m
            .as_str()
            .ok_or("tls.mode must be a string")?
            .to_ascii_uppercase(),
    };
    let file = |k: &str| tls.get(k).and_then(Value::as_str).map(str::to_string);
    match mode.as_str() {
        "DISABLE" => Ok(UpstreamTls::Disable),
        "ISTIO_MUTUAL" => {
            let sans = tls
                .get("subjectAltNames")
                .and_then(Value::as_sequence)
                .map(|s| s.as_slice())
                .unwrap_or_default();
            let ids = sans
                .iter()
                .map(|v| {
                    let text = v.as_str().unwrap_or_default();
                    text.parse::<SpiffeId>().map_err(|e| {
                        format!("tls.subjectAltNames: {e} (ISTIO_MUTUAL checks SPIFFE ids only)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(UpstreamTls::IstioMutual(ids.into()))
        }
        "SIMPLE" | "MUTUAL" => {
            let client = if mode == "MUTUAL" {
                match (file("clientCertificate"), file("privateKey")) {
                    (Some(c), Some(k)) => Some((c, k)),
                    _ => {
                        return Err(
                            "tls.mode MUTUAL needs clientCertificate and privateKey files".into(),
                        )
                    }
                }
            } else {
                None
            };
            let target = TlsTarget::from_files(
                file("caCertificates").as_deref(),
                client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                file("sni"),
                tls.get("insecureSkipVerify").and_then(Value::as_bool) == Some(true),
            )
            .map_err(|e| format!("tls: {e}"))?;
            Ok(UpstreamTls::Custom(Arc::new(target)))
        }
        other => Err(format!(
            "tls.mode {other:?} is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_mesh::MeshConfig;

    fn pas(yaml: &str) -> Vec<PeerAuthentication> {
        MeshConfig::parse_str(yaml, "pa.yaml")
            .unwrap()
            .peer_authentications
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        [("app".to_string(), app.to_string())].into()
    }

    const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n";

    #[test]
    fn default_is_permissive() {
        let m = inbound_mtls(&[], "shop", &labels("cart")).unwrap();
        assert_eq!(m, InboundMtls::default());
    }

    #[test]
    fn workload_over_namespace_over_mesh_and_unset_inherits() {
        let yaml = format!(
            "{PA}metadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n---\n\
             {PA}metadata: {{name: ns, namespace: shop}}\nspec: {{mtls: {{mode: UNSET}}}}\n---\n\
             {PA}metadata: {{name: cart, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  mtls: {{mode: DISABLE}}\n  portLevelMtls:\n    9000: {{mode: STRICT}}\n    9001: {{mode: UNSET}}\n"
        );
        let p = pas(&yaml);
        // The mesh's STRICT reaches a workload no selector picks, through UNSET.
        let m = inbound_mtls(&p, "shop", &labels("other")).unwrap();
        assert_eq!(m.mode, MtlsMode::Strict);
        assert!(m.ports.is_empty());
        let m = inbound_mtls(&p, "shop", &labels("cart")).unwrap();
        assert_eq!(m.for_port(8080), MtlsMode::Disable);
        assert_eq!(m.for_port(9000), MtlsMode::Strict);
        assert_eq!(m.for_port(9001), MtlsMode::Disable);
        // Another namespace: the selector does not reach it.
        let m = inbound_mtls(&p, "web", &labels("cart")).unwrap();
        assert_eq!(m.mode, MtlsMode::Strict);
    }

    #[test]
    fn namespace_policy_overrides_the_mesh() {
        let yaml = format!(
            "{PA}metadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n---\n\
             {PA}metadata: {{name: ns, namespace: legacy}}\nspec: {{mtls: {{mode: PERMISSIVE}}}}\n"
        );
        let p = pas(&yaml);
        assert_eq!(
            inbound_mtls(&p, "legacy", &labels("x")).unwrap().mode,
            MtlsMode::Permissive
        );
        assert_eq!(
            inbound_mtls(&p, "shop", &labels("x")).unwrap().mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn unknown_mode_is_an_error_with_its_source() {
        let p = pas(&format!(
            "{PA}metadata: {{name: bad, namespace: shop}}\nspec: {{mtls: {{mode: STRCT}}}}\n"
        ));
        let e = inbound_mtls(&p, "shop", &labels("x")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].1.contains("STRCT"), "{}", e[0].1);
        assert_eq!(e[0].0.line, 1);
    }

    use meshlens_mesh::TrafficPolicy;

    fn tp(yaml: &str) -> TrafficPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn tls(
        top: Option<&TrafficPolicy>,
        subset: Option<&TrafficPolicy>,
        port: Option<u16>,
    ) -> Result<UpstreamTls, String> {
        upstream_tls(crate::config::policy::EffectivePolicy::resolve(top, subset, port).tls)
    }

    #[test]
    fn destination_rule_tls_precedence() {
        let top = tp("tls: {mode: ISTIO_MUTUAL}\nportLevelSettings:\n- port: {number: 8080}\n  tls: {mode: DISABLE}\n");
        let subset = tp("tls: {mode: DISABLE}\n");
        assert!(matches!(
            tls(Some(&top), None, Some(80)),
            Ok(UpstreamTls::IstioMutual(_))
        ));
        assert!(matches!(
            tls(Some(&top), None, Some(8080)),
            Ok(UpstreamTls::Disable)
        ));
        assert!(matches!(
            tls(Some(&top), Some(&subset), Some(80)),
            Ok(UpstreamTls::Disable)
        ));
        assert!(matches!(tls(None, None, None), Ok(UpstreamTls::Auto)));
        assert!(tls(Some(&tp("tls: {mode: BOGUS}\n")), None, None).is_err());
        let sans = tp("tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://td/ns/a/sa/b]}\n");
        match tls(Some(&sans), None, None) {
            Ok(UpstreamTls::IstioMutual(ids)) => {
                assert_eq!(ids[0].to_string(), "spiffe://td/ns/a/sa/b")
            }
            other => panic!("{other:?}"),
        }
        let dns = tp("tls: {mode: ISTIO_MUTUAL, subjectAltNames: [reviews.example.com]}\n");
        assert!(tls(Some(&dns), None, None).is_err());
        assert!(tls(Some(&tp("tls: {mode: MUTUAL}\n")), None, None).is_err());
    }
}
