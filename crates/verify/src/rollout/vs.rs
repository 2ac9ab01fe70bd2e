//! The VirtualService a rollout edits: found by the service among its hosts, checked to route
//! to the stable subset, and rewritten with new weights on every http route that does.

use meshlens_mesh::host::fqdn;
use serde::Serialize;
use serde_yaml_ng::Value;

use super::{RolloutError, RolloutSpec};
use crate::meshedit::{Change, EditError, MeshDir, MeshObject};

/// The split between the two subsets, percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub stable: u32,
    pub canary: u32,
}

impl Weights {
    pub fn canary(w: u32) -> Weights {
        let w = w.min(100);
        Weights {
            stable: 100 - w,
            canary: w,
        }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stable, self.canary)
    }
}

/// The VirtualService found for a rollout.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    /// Weights of its first route to the stable subset now.
    pub weights: Weights,
}

impl Target {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Whether `host`, written in an object of namespace `ns`, names the spec's service.
fn names_service(spec: &RolloutSpec, host: &str, ns: &str) -> bool {
    let want_ns = spec.namespace.as_deref().unwrap_or(ns);
    fqdn(host, ns) == fqdn(&spec.service, want_ns)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn is_subset(spec: &RolloutSpec, d: &Value, ns: &str, subset: &str) -> bool {
    let dest = d.get("destination").unwrap_or(&Value::Null);
    str_at(dest, "subset") == Some(subset)
        && str_at(dest, "host").is_some_and(|h| names_service(spec, h, ns))
}

/// Indexes of the http routes that send traffic to the stable subset.
fn stable_routes(spec: &RolloutSpec, vs: &MeshObject) -> Vec<usize> {
    let Some(http) = vs.spec().get("http").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    http.iter()
        .enumerate()
        .filter(|(_, r)| {
            r.get("route")
                .and_then(Value::as_sequence)
                .is_some_and(|ds| {
                    ds.iter()
                        .any(|d| is_subset(spec, d, &vs.namespace, &spec.stable))
                })
        })
        .map(|(i, _)| i)
        .collect()
}

fn weights_of(spec: &RolloutSpec, vs: &MeshObject, route: usize) -> Weights {
    let ds = vs.spec()["http"][route]["route"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let w = |subset: &str| {
        ds.iter()
            .find(|d| is_subset(spec, d, &vs.namespace, subset))
            .map(|d| match d.get("weight").and_then(Value::as_u64) {
                Some(w) => w.min(100) as u32,
                // A lone destination takes everything; unweighted pairs are not a split.
                None if ds.len() == 1 => 100,
                None => 0,
            })
            .unwrap_or(0)
    };
    Weights {
        stable: w(&spec.stable),
        canary: w(&spec.canary),
    }
}

fn virtual_services(mesh: &MeshDir, spec: &RolloutSpec) -> Result<Vec<MeshObject>, RolloutError> {
    let objects = mesh.objects().map_err(|e| {
        RolloutError::Mesh(format!(
            "cannot read the mesh directory {}: {e}",
            mesh.root().display()
        ))
    })?;
    Ok(objects
        .into_iter()
        .filter(|o| o.kind == "VirtualService")
        .filter(|o| {
            o.spec()
                .get("hosts")
                .and_then(Value::as_sequence)
                .is_some_and(|hs| {
                    hs.iter()
                        .filter_map(Value::as_str)
                        .any(|h| names_service(spec, h, &o.namespace))
                })
        })
        .collect())
}

/// Finds the VirtualService to edit and checks the rollout can work with it: it routes to the
/// stable subset, its routes hold no third destination, and a DestinationRule defines both
/// subsets.
pub fn locate(mesh: &MeshDir, spec: &RolloutSpec) -> Result<Target, RolloutError> {
    let dir = mesh.root().display();
    let mesh_err = |m: String| Err(RolloutError::Mesh(m));
    let candidates: Vec<MeshObject> = virtual_services(mesh, spec)?
        .into_iter()
        .filter(|vs| !stable_routes(spec, vs).is_empty())
        .collect();
    let vs = match candidates.as_slice() {
        [one] => one,
        [] => {
            let any = virtual_services(mesh, spec)?;
            return match any.first() {
                None => mesh_err(format!(
                    "no VirtualService in {dir} has {} among its hosts",
                    spec.service
                )),
                Some(vs) => mesh_err(format!(
                    "VirtualService {}/{} ({}:{}) has no http route to subset {:?} of {}",
                    vs.namespace,
                    vs.name,
                    vs.file.display(),
                    vs.line,
                    spec.stable,
                    spec.service
                )),
            };
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|v| format!("{}/{}", v.namespace, v.name))
                .collect();
            return mesh_err(format!(
                "{} VirtualServices route {} to subset {:?}: {}; pass --namespace",
                many.len(),
                spec.service,
                spec.stable,
                names.join(", ")
            ));
        }
    };
    for i in stable_routes(spec, vs) {
        let ds = vs.spec()["http"][i]["route"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let foreign = ds.iter().find(|d| {
            !is_subset(spec, d, &vs.namespace, &spec.stable)
                && !is_subset(spec, d, &vs.namespace, &spec.canary)
        });
        if let Some(d) = foreign {
            let to = serde_json::to_string(&d["destination"]).unwrap_or_default();
            return mesh_err(format!(
                "VirtualService {}/{} http[{i}] also routes to {to}; a rollout only splits \
                 {} between {:?} and {:?}",
                vs.namespace, vs.name, spec.service, spec.stable, spec.canary
            ));
        }
    }
    check_subsets(mesh, spec, vs)?;
    let first = stable_routes(spec, vs)[0];
    Ok(Target {
        namespace: vs.namespace.clone(),
        name: vs.name.clone(),
        weights: weights_of(spec, vs, first),
    })
}

fn check_subsets(mesh: &MeshDir, spec: &RolloutSpec, vs: &MeshObject) -> Result<(), RolloutError> {
    let objects = mesh
        .objects()
        .map_err(|e| RolloutError::Mesh(e.to_string()))?;
    let mut defined: Vec<String> = Vec::new();
    for dr in objects.iter().filter(|o| o.kind == "DestinationRule") {
        let host = str_at(dr.spec(), "host").unwrap_or("");
        let ns = spec.namespace.as_deref().unwrap_or(&vs.namespace);
        if fqdn(host, &dr.namespace) != fqdn(&spec.service, ns) {
            continue;
        }
        for s in dr.spec()["subsets"].as_sequence().into_iter().flatten() {
            if let Some(n) = str_at(s, "name") {
                defined.push(n.to_string());
            }
        }
    }
    for want in [&spec.stable, &spec.canary] {
        if !defined.contains(want) {
            return Err(RolloutError::Mesh(format!(
                "no DestinationRule in {} defines subset {want:?} for {} (subsets found: {})",
                mesh.root().display(),
                spec.service,
                if defined.is_empty() {
                    "none".to_string()
                } else {
                    defined.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// The weights the VirtualService holds now (None: it no longer routes to the stable subset).
pub fn current(mesh: &MeshDir, spec: &RolloutSpec, target: &Target) -> Result<Weights, EditError> {
    let vs = mesh.find("VirtualService", &target.namespace, &target.name)?;
    let routes = stable_routes(spec, &vs);
    Ok(routes
        .first()
        .map(|&i| weights_of(spec, &vs, i))
        .unwrap_or(Weights {
            stable: 0,
            canary: 0,
        }))
}

/// Writes `w` on every http route to the stable subset; None when the file already holds it.
pub fn write(
    mesh: &MeshDir,
    spec: &RolloutSpec,
    target: &Target,
    w: Weights,
) -> Result<Option<Change>, EditError> {
    let vs = mesh.find("VirtualService", &target.namespace, &target.name)?;
    let routes = stable_routes(spec, &vs);
    if routes.is_empty() {
        return Err(EditError::Parse {
            file: vs.file.clone(),
            message: format!(
                "VirtualService {} no longer routes to subset {:?}",
                target.id(),
                spec.stable
            ),
        });
    }
    if routes.iter().all(|&i| weights_of(spec, &vs, i) == w)
        && routes.iter().all(|&i| {
            vs.spec()["http"][i]["route"]
                .as_sequence()
                .is_some_and(|d| d.len() == 2)
        })
    {
        return Ok(None);
    }
    let mut value = vs.value.clone();
    for i in routes {
        let ds = value["spec"]["http"][i]["route"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let Some(mut stable) = ds
            .iter()
            .find(|d| is_subset(spec, d, &vs.namespace, &spec.stable))
            .cloned()
        else {
            continue;
        };
        let mut canary = ds
            .iter()
            .find(|d| is_subset(spec, d, &vs.namespace, &spec.canary))
            .cloned()
            .unwrap_or_else(|| {
                let mut c = stable.clone();
                c["destination"]["subset"] = Value::from(spec.canary.as_str());
                c
            });
        stable["weight"] = Value::from(w.stable);
        canary["weight"] = Value::from(w.canary);
        value["spec"]["http"][i]["route"] = Value::Sequence(vec![stable, canary]);
    }
    let yaml = serde_yaml_ng::to_string(&value).map_err(|e| EditError::Parse {
        file: vs.file.clone(),
        message: e.to_string(),
    })?;
    let plan = mesh.plan_replace(&vs, &yaml)?;
    if plan.is_noop() {
        return Ok(None);
    }
    mesh.apply(&plan).map(Some)
}
