//! Sidecar checks (the loader does not model Sidecar, so these read raw YAML): egress hosts
//! in the registry (KIA1004), no selector on the root namespace's default (KIA1006), one
//! selector-less Sidecar per namespace (KIA0002), and selectors that select (KIA0004), the
//! last also for PeerAuthentication and RequestAuthentication (AuthorizationPolicy, which the
//! loader models, is checked in `authorization`).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::input::RawObject;
use super::locate::YamlPath;
use super::Ctx;

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let mut selectorless: BTreeMap<&str, Vec<&RawObject>> = BTreeMap::new();
    for sc in inp.raw_of("Sidecar") {
        let sel = sc.labels(&["spec", "workloadSelector", "labels"]);
        if sel.is_empty() {
            selectorless.entry(&sc.namespace).or_default().push(sc);
        } else if sc.namespace == cx.opts.root_namespace {
            let p = YamlPath::root().k("spec").k("workloadSelector");
            cx.emit("KIA1006", sc, p, "");
        }
        egress(cx, sc);
    }
    for list in selectorless.values().filter(|l| l.len() > 1) {
        for sc in list {
            let others: Vec<&str> = list
                .iter()
                .filter(|o| o.name != sc.name)
                .map(|o| o.name.as_str())
                .collect();
            cx.emit(
                "KIA0002",
                *sc,
                YamlPath::root().k("spec"),
                format!("also {}", others.join(", ")),
            );
        }
    }
    if cx.reg.known {
        selectors(cx);
    }
}

/// KIA1004 on `spec.egress[i].hosts[j]` (`namespace/host`) naming no known host.
fn egress(cx: &mut Ctx<'_>, sc: &RawObject) {
    if !cx.reg.known {
        return;
    }
    let Some(eg) = sc.get(&["spec", "egress"]).and_then(Value::as_sequence) else {
        return;
    };
    for (i, e) in eg.iter().enumerate() {
        let hosts = e
            .get("hosts")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (j, h) in hosts.iter().enumerate() {
            let Some(h) = h.as_str() else { continue };
            let (ns, host) = h.split_once('/').unwrap_or(("*", h));
            if host == "*" || host.starts_with("*.") {
                continue;
            }
            let ns = match ns {
                "." => sc.namespace.as_str(),
                "*" | "~" => "default",
                other => other,
            };
            if !cx.reg.has_host(host, ns) {
                let p = YamlPath::root().k("spec").k("egress").i(i).k("hosts").i(j);
                cx.emit("KIA1004", sc, p, format!("host {h}"));
            }
        }
    }
}

/// KIA0004 for workload selectors of Sidecar and the security kinds.
fn selectors(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let kinds = [
        ("Sidecar", ["workloadSelector", "labels"]),
        ("PeerAuthentication", ["selector", "matchLabels"]),
        ("RequestAuthentication", ["selector", "matchLabels"]),
    ];
    for (kind, keys) in kinds {
        for o in inp.raw_of(kind) {
            let sel: BTreeMap<String, String> =
                o.labels(&["spec", keys[0], keys[1]]).into_iter().collect();
            if sel.is_empty() || cx.reg.selected(&sel, Some(&o.namespace)).next().is_some() {
                continue;
            }
            let p = YamlPath::root().k("spec").k(keys[0]);
            cx.emit("KIA0004", o, p, "selector matches no workload");
        }
    }
}
