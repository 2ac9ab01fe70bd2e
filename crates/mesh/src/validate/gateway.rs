//! Gateway checks: two Gateways on the same workloads serving the same host on the same port
//! (KIA0301), and a selector that picks no workload (KIA0302).

use crate::host::host_matches;
use crate::resources::Gateway;

use super::locate::YamlPath;
use super::Ctx;

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let gws = &inp.mesh.gateways;
    for gw in gws {
        let sel = &gw.spec.selector;
        if cx.reg.known && !sel.is_empty() && cx.reg.selected(sel, None).next().is_none() {
            let p = YamlPath::root().k("spec").k("selector");
            cx.emit("KIA0302", gw, p, "selector matches no workload");
        }
    }
    for (a, ga) in gws.iter().enumerate() {
        for (b, gb) in gws.iter().enumerate() {
            if a != b && ga.spec.selector == gb.spec.selector {
                conflicts(cx, ga, gb);
            }
        }
    }
}

/// Emits KIA0301 on `a` for each of its server hosts that `b` also serves on that port.
fn conflicts(cx: &mut Ctx<'_>, a: &Gateway, b: &Gateway) {
    for (i, sa) in a.spec.servers.iter().enumerate() {
        let Some(pa) = &sa.port else { continue };
        for (j, ha) in sa.hosts.iter().enumerate() {
            let clash = b.spec.servers.iter().any(|sb| {
                sb.port.as_ref().is_some_and(|pb| pb.number == pa.number)
                    && sb.hosts.iter().any(|hb| overlap(bare(ha), bare(hb)))
            });
            if clash {
                let p = YamlPath::root().k("spec").k("servers").i(i).k("hosts").i(j);
                let detail = format!(
                    "{ha} on port {} also in {}/{}",
                    pa.number,
                    b.namespace(),
                    b.name()
                );
                cx.emit("KIA0301", a, p, detail);
            }
        }
    }
}

/// A server host without its `namespace/` prefix.
fn bare(h: &str) -> &str {
    h.rsplit_once('/').map_or(h, |(_, h)| h)
}

fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || host_matches(&a, &b) || host_matches(&b, &a)
}
