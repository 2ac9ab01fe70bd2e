//! The service registry as the given files describe it: Kubernetes Services and workloads
//! (Deployments, StatefulSets, DaemonSets, ReplicaSets, Pods), ServiceEntry hosts and
//! WorkloadEntries. Checks that ask "does this host / workload exist" only run when the files
//! include Kubernetes manifests ([`Registry::known`]); otherwise every in-cluster host would
//! look missing.

use std::collections::{BTreeMap, BTreeSet};

use crate::host::{fqdn, host_matches, CLUSTER_DOMAIN};

use super::input::Inputs;

/// A workload: something with labels that a selector or a subset can pick.
#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// A Kubernetes Service: its host and the workloads it selects.
#[derive(Debug, Clone)]
pub struct K8sService {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
}

/// Hosts and workloads known from the files.
#[derive(Debug, Default)]
pub struct Registry {
    /// Whether Kubernetes Service or workload manifests were given.
    pub known: bool,
    pub services: Vec<K8sService>,
    pub workloads: Vec<Workload>,
    /// FQDNs of Services, and ServiceEntry hosts (which may be wildcards).
    pub hosts: BTreeSet<String>,
    /// Namespaces seen on any object, and Namespace objects.
    pub namespaces: BTreeSet<String>,
    /// (namespace, name) of ServiceAccount objects and of those workloads run as.
    pub service_accounts: BTreeSet<(String, String)>,
}

impl Registry {
    pub fn build(inp: &Inputs) -> Registry {
        let mut r = Registry::default();
        for o in &inp.raw {
            r.namespaces.insert(o.namespace.clone());
            match o.kind.as_str() {
                "Service" => {
                    r.known = true;
                    r.hosts.insert(format!(
                        "{}.{}.svc.{CLUSTER_DOMAIN}",
                        o.name.to_ascii_lowercase(),
                        o.namespace
                    ));
                    r.services.push(K8sService {
                        name: o.name.clone(),
                        namespace: o.namespace.clone(),
                        selector: o.labels(&["spec", "selector"]).into_iter().collect(),
                    });
                }
                "Namespace" => {
                    r.namespaces.insert(o.name.clone());
                }
                "ServiceAccount" => {
                    r.service_accounts
                        .insert((o.namespace.clone(), o.name.clone()));
                }
                "Pod" => {
                    r.known = true;
                    r.add_service_account(&o.namespace, o.get(&["spec"]));
                    r.workloads.push(Workload {
                        namespace: o.namespace.clone(),
                        labels: o.labels(&["metadata", "labels"]).into_iter().collect(),
                    });
                }
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
                    r.known = true;
                    let labels = o.labels(&["spec", "template", "metadata", "labels"]);
                    r.add_service_account(&o.namespace, o.get(&["spec", "template", "spec"]));
                    r.workloads.push(Workload {
                        namespace: o.namespace.clone(),
                        labels: labels.into_iter().collect(),
                    });
                }
                _ => {}
            }
        }
        for se in &inp.mesh.service_entries {
            r.namespaces.insert(se.namespace().to_string());
            for h in &se.spec.hosts {
                r.hosts.insert(fqdn(h, se.namespace()));
            }
            for ep in &se.spec.endpoints {
                r.workloads.push(Workload {
                    namespace: se.namespace().to_string(),
                    labels: ep.labels.clone(),
                });
            }
        }
        for we in &inp.mesh.workload_entries {
            r.workloads.push(Workload {
                namespace: we.namespace().to_string(),
                labels: we.spec.labels.clone(),
            });
        }
        r
    }

    /// Records the service account a pod spec runs as (`default` when unset).
    fn add_service_account(&mut self, namespace: &str, pod_spec: Option<&serde_yaml_ng::Value>) {
        let sa = pod_spec
            .and_then(|s| {
                s.get("serviceAccountName")
                    .or_else(|| s.get("serviceAccount"))
            })
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("default");
        self.service_accounts
            .insert((namespace.to_string(), sa.to_string()));
    }

    /// Whether a service account is known: declared, run as by a workload, or a namespace's
    /// `default` (Kubernetes creates one in every namespace).
    pub fn has_service_account(&self, namespace: &str, name: &str) -> bool {
        (name == "default" && self.namespaces.contains(namespace))
            || self
                .service_accounts
                .contains(&(namespace.to_string(), name.to_string()))
    }

    /// Whether a host as written in an object of `namespace` is in the registry. Wildcard
    /// hosts match when some registry host falls under them (or vice versa).
    pub fn has_host(&self, host: &str, namespace: &str) -> bool {
        candidates(host, namespace).iter().any(|h| {
            self.hosts.contains(h)
                || self
                    .hosts
                    .iter()
                    .any(|known| host_matches(known, h) || host_matches(h, known))
        })
    }

    /// Labels of the workloads behind a host: the Service's selected workloads, or the
    /// ServiceEntry's endpoints and selected WorkloadEntries. `None` when the host has no
    /// known workloads to compare with (e.g. an external DNS ServiceEntry).
    pub fn workloads_of_host<'a>(
        &'a self,
        inp: &'a Inputs,
        host: &str,
        namespace: &str,
    ) -> Option<Vec<&'a BTreeMap<String, String>>> {
        let cands = candidates(host, namespace);
        let mut out = Vec::new();
        let mut found = false;
        for s in &self.services {
            let h = format!("{}.{}.svc.{CLUSTER_DOMAIN}", s.name, s.namespace);
            if cands.contains(&h) && !s.selector.is_empty() {
                found = true;
                out.extend(self.selected(&s.selector, Some(&s.namespace)));
            }
        }
        for se in &inp.mesh.service_entries {
            let hit = se
                .spec
                .hosts
                .iter()
                .any(|h| cands.contains(&fqdn(h, se.namespace())));
            if !hit {
                continue;
            }
            if !se.spec.endpoints.is_empty() {
                found = true;
                out.extend(se.spec.endpoints.iter().map(|e| &e.labels));
            }
            if let Some(sel) = &se.spec.workload_selector {
                found = true;
                out.extend(self.selected(&sel.labels, Some(se.namespace())));
            }
        }
        found.then_some(out)
    }

    /// Labels of the workloads a selector picks (in `namespace` when given).
    pub fn selected<'a>(
        &'a self,
        selector: &'a BTreeMap<String, String>,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a BTreeMap<String, String>> + 'a {
        self.workloads
            .iter()
            .filter(move |w| namespace.is_none_or(|ns| w.namespace == ns))
            .filter(move |w| labels_match(selector, &w.labels))
            .map(|w| &w.labels)
    }
}

/// Whether every selector label is on the workload.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// FQDNs a written host may stand for: `reviews`, `reviews.prod`, `reviews.prod.svc` are
/// completed as Kubernetes would, other names stay as written.
pub fn candidates(host: &str, namespace: &str) -> Vec<String> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let mut out = vec![fqdn(&h, namespace)];
    let dots = h.matches('.').count();
    if h.ends_with(".svc") {
        out.push(format!("{h}.{CLUSTER_DOMAIN}"));
    } else if dots == 1 && !h.contains('*') {
        out.push(format!("{h}.svc.{CLUSTER_DOMAIN}"));
    }
    out
}
