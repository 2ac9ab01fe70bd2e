//! Kubernetes Service port checks: Istio picks a port's protocol from its `appProtocol` or
//! its name (`<protocol>[-suffix]`), so a name or appProtocol it cannot read silently turns
//! HTTP routing into TCP (KIA0601, KIA0602).

use serde_yaml_ng::Value;

use super::locate::YamlPath;
use super::Ctx;

/// Protocols Istio reads from port names and appProtocol.
const PROTOCOLS: &[&str] = &[
    "grpc", "grpc-web", "http", "http2", "https", "mongo", "mysql", "redis", "tcp", "tls", "udp",
];

/// Whether a port name is `<protocol>` or `<protocol>-<suffix>` for a known protocol.
fn valid_port_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    PROTOCOLS
        .iter()
        .any(|p| n == *p || n.strip_prefix(p).is_some_and(|r| r.starts_with('-')))
}

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let mut any = false;
    for svc in inp.raw_of("Service") {
        any = true;
        let Some(ports) = svc.get(&["spec", "ports"]).and_then(Value::as_sequence) else {
            continue;
        };
        for (i, port) in ports.iter().enumerate() {
            let p = YamlPath::root().k("spec").k("ports").i(i);
            let name = port.get("name").and_then(Value::as_str).unwrap_or("");
            match port.get("appProtocol").and_then(Value::as_str) {
                Some(ap) if !PROTOCOLS.contains(&ap.to_ascii_lowercase().as_str()) => {
                    let detail = format!("appProtocol {ap}");
                    cx.emit("KIA0602", svc, p.k("appProtocol"), detail);
                }
                Some(_) => {}
                None if !valid_port_name(name) => {
                    let at = if name.is_empty() { p } else { p.k("name") };
                    let shown = if name.is_empty() { "(unnamed)" } else { name };
                    cx.emit("KIA0601", svc, at, format!("port name {shown}"));
                }
                None => {}
            }
        }
    }
    if !any {
        cx.not_applicable("KIA0601", "no Kubernetes Service manifests given");
        cx.not_applicable("KIA0602", "no Kubernetes Service manifests given");
    }
}
