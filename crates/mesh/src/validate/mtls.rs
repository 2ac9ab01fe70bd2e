//! mTLS agreement between DestinationRules (what clients send) and PeerAuthentications
//! (what servers accept): KIA0205-KIA0208 on the rule, KIA0401/0501/0505/0506 on the policy.
//!
//! Mesh-wide means a rule for `*.local` or a selector-less policy in the root namespace;
//! namespace-wide a rule for `*.<ns>.svc.cluster.local` or a selector-less policy in `<ns>`.
//! KIA0401 and KIA0501 only matter without auto mTLS (Istio's default is on), as in Kiali.

use serde_yaml_ng::Value;

use crate::resources::DestinationRule;

use super::input::RawObject;
use super::locate::YamlPath;
use super::{Ctx, Options};

/// A selector-less PeerAuthentication's mode.
struct Policy<'a> {
    obj: &'a RawObject,
    mode: String,
}

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let root = cx.opts.root_namespace.as_str();
    let policies: Vec<Policy<'_>> = inp
        .raw_of("PeerAuthentication")
        .filter(|o| o.labels(&["spec", "selector", "matchLabels"]).is_empty())
        .map(|o| Policy {
            obj: o,
            mode: o
                .get(&["spec", "mtls", "mode"])
                .and_then(Value::as_str)
                .unwrap_or("UNSET")
                .to_ascii_uppercase(),
        })
        .collect();
    let mesh_pa = policies.iter().find(|p| p.obj.namespace == root);
    let ns_pa = |ns: &str| {
        policies
            .iter()
            .find(|p| p.obj.namespace == ns && ns != root)
    };
    let enables = |m: &str| m == "STRICT" || m == "PERMISSIVE";
    let mode_path = YamlPath::root()
        .k("spec")
        .k("trafficPolicy")
        .k("tls")
        .k("mode");

    let drs = &inp.mesh.destination_rules;
    let mesh_dr = drs.iter().find(|d| d.spec.host == "*.local");
    let ns_dr = |ns: &str| {
        let host = format!("*.{ns}.svc.cluster.local");
        drs.iter().find(move |d| d.spec.host == host)
    };

    for dr in drs {
        let mode = tls_mode(dr);
        let scope = if dr.spec.host == "*.local" {
            None
        } else if let Some(ns) = ns_of_wildcard(&dr.spec.host) {
            Some(ns)
        } else {
            continue;
        };
        match (mode.as_deref(), scope) {
            (Some("ISTIO_MUTUAL"), None) if !mesh_pa.is_some_and(|p| enables(&p.mode)) => {
                cx.emit("KIA0205", dr, mode_path.clone(), "");
            }
            (Some("ISTIO_MUTUAL"), Some(ns)) => {
                let ok = ns_pa(ns).or(mesh_pa).is_some_and(|p| enables(&p.mode));
                if !ok {
                    cx.emit("KIA0206", dr, mode_path.clone(), format!("namespace {ns}"));
                }
            }
            (Some("DISABLE"), Some(ns)) => match ns_pa(ns) {
                Some(p) if p.mode == "STRICT" => {
                    let detail = format!("{}/{}", p.obj.namespace, p.obj.name);
                    cx.emit("KIA0207", dr, mode_path.clone(), detail);
                }
                None if mesh_pa.is_some_and(|p| p.mode == "STRICT") => {
                    cx.emit(
                        "KIA0208",
                        dr,
                        mode_path.clone(),
                        "mesh-wide policy is STRICT",
                    );
                }
                _ => {}
            },
            (Some("DISABLE"), None) if mesh_pa.is_some_and(|p| p.mode == "STRICT") => {
                cx.emit(
                    "KIA0208",
                    dr,
                    mode_path.clone(),
                    "mesh-wide policy is STRICT",
                );
            }
            _ => {}
        }
    }

    let auto = auto_mtls(cx);
    let pa_path = YamlPath::root().k("spec").k("mtls").k("mode");
    let dr_mode = |d: Option<&DestinationRule>| d.and_then(tls_mode);
    for p in &policies {
        let ns = p.obj.namespace.as_str();
        let mesh = ns == root;
        let effective = if mesh {
            dr_mode(mesh_dr)
        } else {
            dr_mode(ns_dr(ns)).or(dr_mode(mesh_dr))
        };
        match p.mode.as_str() {
            "STRICT" if !auto && effective.as_deref() != Some("ISTIO_MUTUAL") => {
                let code = if mesh { "KIA0401" } else { "KIA0501" };
                cx.emit(code, p.obj, pa_path.clone(), "");
            }
            "DISABLE" => {
                // With auto mTLS only an explicit ISTIO_MUTUAL rule breaks; without it a rule
                // disabling mTLS is required.
                let broken = if auto {
                    effective.as_deref() == Some("ISTIO_MUTUAL")
                } else {
                    effective.as_deref() != Some("DISABLE")
                };
                if broken {
                    let code = if mesh { "KIA0506" } else { "KIA0505" };
                    cx.emit(code, p.obj, pa_path.clone(), "");
                }
            }
            _ => {}
        }
    }
    if auto {
        let why = "auto mTLS is on (Istio's default; set enableAutoMtls: false in the istio ConfigMap to check)";
        cx.not_applicable("KIA0401", why);
        cx.not_applicable("KIA0501", why);
    }
}

/// `spec.trafficPolicy.tls.mode`, upper-cased.
pub(crate) fn tls_mode(dr: &DestinationRule) -> Option<String> {
    let tls = dr.spec.traffic_policy.as_ref()?.tls.as_ref()?;
    Some(tls.get("mode")?.as_str()?.to_ascii_uppercase())
}

/// `ns` of `*.ns.svc.cluster.local`.
fn ns_of_wildcard(host: &str) -> Option<&str> {
    let ns = host
        .strip_prefix("*.")?
        .strip_suffix(".svc.cluster.local")?;
    (!ns.is_empty() && !ns.contains('.')).then_some(ns)
}

/// Auto mTLS from the options, else the `istio` ConfigMap's `mesh` in the root namespace.
pub(crate) fn auto_mtls(cx: &Ctx<'_>) -> bool {
    let Options {
        root_namespace,
        auto_mtls,
    } = cx.opts;
    if let Some(a) = auto_mtls {
        return *a;
    }
    cx.inp
        .raw_of("ConfigMap")
        .filter(|c| &c.namespace == root_namespace && c.name.starts_with("istio"))
        .filter_map(|c| c.get(&["data", "mesh"])?.as_str())
        .filter_map(|mesh| serde_yaml_ng::from_str::<Value>(mesh).ok())
        .find_map(|m| m.get("enableAutoMtls")?.as_bool())
        .unwrap_or(true)
}
