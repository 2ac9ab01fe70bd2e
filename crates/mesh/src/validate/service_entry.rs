//! ServiceEntry checks: two entries for the same host and port (KIA1211), with different
//! protocols (KIA1212); WorkloadEntries selected by an entry whose addresses leave them out
//! (KIA1201). Port names are not checked: a ServiceEntry states its protocol in `protocol`,
//! so its port names are free-form (Kiali applies KIA0601 to Kubernetes Services only).

use std::collections::BTreeMap;

use crate::host::fqdn;

use super::locate::YamlPath;
use super::registry::labels_match;
use super::Ctx;

/// A ServiceEntry port serving a (host, port): (entry index, port index, protocol).
type PortUse = (usize, usize, String);

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let ses = &inp.mesh.service_entries;
    let mut index: BTreeMap<(String, u32), Vec<PortUse>> = BTreeMap::new();
    for (e, se) in ses.iter().enumerate() {
        for (i, port) in se.spec.ports.iter().enumerate() {
            let proto = port
                .protocol
                .clone()
                .unwrap_or_default()
                .to_ascii_uppercase();
            for h in &se.spec.hosts {
                let key = (fqdn(h, se.namespace()), port.number);
                index.entry(key).or_default().push((e, i, proto.clone()));
            }
        }
    }
    for ((host, port), list) in index {
        if list.len() < 2 {
            continue;
        }
        let conflict = list.iter().any(|x| x.2 != list[0].2);
        let code = if conflict { "KIA1212" } else { "KIA1211" };
        for (e, i, proto) in &list {
            let others: Vec<String> = list
                .iter()
                .filter(|x| x.0 != *e)
                .map(|x| format!("{}/{} ({})", ses[x.0].namespace(), ses[x.0].name(), x.2))
                .collect();
            if others.is_empty() {
                continue;
            }
            let detail = format!("{host}:{port} {proto} also in {}", others.join(", "));
            let p = YamlPath::root().k("spec").k("ports").i(*i);
            cx.emit(code, &ses[*e], p, detail);
        }
    }
    for se in ses {
        let Some(sel) = &se.spec.workload_selector else {
            continue;
        };
        if se.spec.addresses.is_empty() {
            continue;
        }
        for we in &inp.mesh.workload_entries {
            let selected =
                we.namespace() == se.namespace() && labels_match(&sel.labels, &we.spec.labels);
            if selected && !se.spec.addresses.contains(&we.spec.address) {
                let detail = format!("{} of WorkloadEntry {}", we.spec.address, we.name());
                cx.emit(
                    "KIA1201",
                    se,
                    YamlPath::root().k("spec").k("addresses"),
                    detail,
                );
            }
        }
    }
}
