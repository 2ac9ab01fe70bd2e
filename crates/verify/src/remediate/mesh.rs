//! The built-in actions on the mesh directory: each finds the objects of a service, computes
//! their new YAML, and plans (dry run) or writes the edits through [`MeshDir`], so every
//! write is validated, atomic and revertible.

use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::meshedit::{Change, EditError, MeshDir, MeshObject, Plan};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("{0}")]
    NoTarget(String),
}

/// What an action did or would do.
#[derive(Debug, Default)]
pub struct MeshOutcome {
    /// One per edited object, in order.
    pub plans: Vec<Plan>,
    /// The written edits (empty on a dry run).
    pub changes: Vec<Change>,
    /// Objects left alone, and why.
    pub notes: Vec<String>,
}

/// `host` names `service`: equal, or its qualified form (`svc.ns…`), optionally in `ns`.
pub fn host_matches(host: &str, service: &str, ns: Option<&str>) -> bool {
    match ns {
        Some(ns) => host == service || host.starts_with(&format!("{service}.{ns}")),
        None => host == service || host.starts_with(&format!("{service}.")),
    }
}

fn in_ns(obj: &MeshObject, host: &str, service: &str, ns: Option<&str>) -> bool {
    match ns {
        Some(n) => obj.namespace == n || host.starts_with(&format!("{service}.{n}")),
        None => true,
    }
}

fn virtual_services(objs: &[MeshObject], service: &str, ns: Option<&str>) -> Vec<MeshObject> {
    objs.iter()
        .filter(|o| o.kind == "VirtualService")
        .filter(|o| {
            o.spec()["hosts"].as_sequence().is_some_and(|hs| {
                hs.iter().filter_map(Value::as_str).any(|h| {
                    host_matches(h, service, ns.filter(|_| h.contains('.')))
                        && in_ns(o, h, service, ns)
                })
            })
        })
        .cloned()
        .collect()
}

fn destination_rules(objs: &[MeshObject], host: &str, ns: Option<&str>) -> Vec<MeshObject> {
    objs.iter()
        .filter(|o| o.kind == "DestinationRule")
        .filter(|o| {
            o.spec()["host"]
                .as_str()
                .is_some_and(|h| host_matches(h, host, None) && in_ns(o, h, host, ns))
        })
        .cloned()
        .collect()
}

/// Plans and (when `write`) applies `edit` to each object in turn, re-reading the object
/// before each so two objects of one file are both edited. A failed write reverts the
/// earlier ones.
fn edit_each(
    mesh: &MeshDir,
    targets: &[MeshObject],
    write: bool,
    edit: &dyn Fn(&mut Value) -> bool,
) -> Result<MeshOutcome, ActionError> {
    let mut out = MeshOutcome::default();
    for t in targets {
        let obj = if write {
            mesh.find(&t.kind, &t.namespace, &t.name)?
        } else {
            t.clone()
        };
        let mut v = obj.value.clone();
        if !edit(&mut v) {
            out.notes.push(format!(
                "{} {}/{}: already in place",
                obj.kind, obj.namespace, obj.name
            ));
            continue;
        }
        let yaml = serde_yaml_ng::to_string(&v).map_err(|e| EditError::Parse {
            file: obj.file.clone(),
            message: e.to_string(),
        })?;
        let plan = mesh.plan_replace(&obj, &yaml)?;
        if write {
            match mesh.apply(&plan) {
                Ok(c) => out.changes.push(c),
                Err(e) => {
                    for c in out.changes.iter().rev() {
                        if let Err(re) = mesh.revert(c) {
                            tracing::warn!(error = %re, "reverting a partial remediation failed");
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        out.plans.push(plan);
    }
    Ok(out)
}

fn create(
    mesh: &MeshDir,
    yaml: &str,
    file: PathBuf,
    write: bool,
) -> Result<MeshOutcome, ActionError> {
    let plan = mesh.plan_upsert(yaml, &file)?;
    let mut out = MeshOutcome::default();
    if write {
        out.changes.push(mesh.apply(&plan)?);
    } else if !plan.is_valid() {
        return Err(EditError::Invalid(plan.added_errors).into());
    }
    out.plans.push(plan);
    Ok(out)
}

/// A file name part from a host or service name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Sets the weight of every route destination of `away_from` (a subset name, or a subset
/// whose `version` label is it) to 0 and gives its share to the other destinations in
/// proportion to their weights.
pub fn shift_traffic(
    mesh: &MeshDir,
    service: &str,
    ns: Option<&str>,
    away_from: &str,
    write: bool,
) -> Result<MeshOutcome, ActionError> {
    let objs = mesh.objects()?;
    let vss = virtual_services(&objs, service, ns);
    if vss.is_empty() {
        return Err(ActionError::NoTarget(format!(
            "no VirtualService for {service} in {}: nothing to shift",
            mesh.root().display()
        )));
    }
    let mut away_subsets = vec![away_from.to_string()];
    for dr in destination_rules(&objs, service, ns) {
        for s in dr.spec()["subsets"].as_sequence().into_iter().flatten() {
            if s["labels"]["version"].as_str() == Some(away_from) {
                if let Some(n) = s["name"].as_str() {
                    away_subsets.push(n.to_string());
                }
            }
        }
    }
    let edit = |v: &mut Value| {
        let mut changed = false;
        let Some(http) = v["spec"]["http"].as_sequence_mut() else {
            return false;
        };
        for r in http {
            let Some(dests) = r["route"].as_sequence_mut() else {
                continue;
            };
            changed |= shift_route(dests, &away_subsets);
        }
        changed
    };
    let out = edit_each(mesh, &vss, write, &edit)?;
    if out.plans.is_empty() && !vss.iter().any(|vs| routes_to(vs, &away_subsets)) {
        return Err(ActionError::NoTarget(format!(
            "no route of {service}'s VirtualService sends traffic to version {away_from} \
             together with another destination"
        )));
    }
    Ok(out)
}

fn routes_to(vs: &MeshObject, subsets: &[String]) -> bool {
    vs.spec()["http"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|r| r["route"].as_sequence().into_iter().flatten())
        .any(|d| {
            d["destination"]["subset"]
                .as_str()
                .is_some_and(|s| subsets.iter().any(|a| a == s))
        })
}

/// One route's destinations; true when a weight changed.
fn shift_route(dests: &mut [Value], away: &[String]) -> bool {
    let is_away = |d: &Value| {
        d["destination"]["subset"]
            .as_str()
            .is_some_and(|s| away.iter().any(|a| a == s))
    };
    let n_away = dests.iter().filter(|d| is_away(d)).count();
    if n_away == 0 || n_away == dests.len() {
        return false;
    }
    let explicit = dests.iter().any(|d| d["weight"].as_i64().is_some());
    let weights: Vec<i64> = dests
        .iter()
        .map(|d| match d["weight"].as_i64() {
            Some(w) => w.max(0),
            None if explicit => 0,
            None => 100 / dests.len() as i64,
        })
        .collect();
    let total: i64 = weights.iter().sum::<i64>().max(1);
    let others: Vec<usize> = (0..dests.len()).filter(|&i| !is_away(&dests[i])).collect();
    let others_sum: i64 = others.iter().map(|&i| weights[i]).sum();
    let mut new = vec![0i64; dests.len()];
    for &i in &others {
        new[i] = if others_sum > 0 {
            weights[i] * total / others_sum
        } else {
            total / others.len() as i64
        };
    }
    // Integer division leaves a remainder: give it to the heaviest other destination.
    let rest = total - new.iter().sum::<i64>();
    if let Some(&top) = others
        .iter()
        .max_by_key(|&&i| (new[i], std::cmp::Reverse(i)))
    {
        new[top] += rest;
    }
    if new == weights && explicit {
        return false;
    }
    for (d, w) in dests.iter_mut().zip(new) {
        d["weight"] = Value::from(w);
    }
    true
}

/// Turns on a fault abort (100 % HTTP 503) on every http route of the service's
/// VirtualServices; creates a VirtualService when there is none.
pub fn kill_switch(
    mesh: &MeshDir,
    service: &str,
    ns: Option<&str>,
    write: bool,
) -> Result<MeshOutcome, ActionError> {
    let fault: Value =
        serde_yaml_ng::from_str("abort: {httpStatus: 503, percentage: {value: 100}}")
            .unwrap_or(Value::Null);
    let objs = mesh.objects()?;
    let vss = virtual_services(&objs, service, ns);
    if vss.is_empty() {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {service}-kill-switch\n  namespace: {}\nspec:\n  hosts: [{service}]\n  http:\n  - fault:\n      abort:\n        httpStatus: 503\n        percentage: {{value: 100}}\n    route:\n    - destination: {{host: {service}}}\n",
            ns.unwrap_or("default")
        );
        let file = PathBuf::from(format!("remediation-kill-switch-{}.yaml", slug(service)));
        return create(mesh, &yaml, file, write);
    }
    edit_each(mesh, &vss, write, &|v| {
        let mut changed = false;
        for r in v["spec"]["http"].as_sequence_mut().into_iter().flatten() {
            if r.get("fault") != Some(&fault) {
                r["fault"] = fault.clone();
                changed = true;
            }
        }
        changed
    })
}

/// Sets a strict outlier detection on the host's DestinationRules (eject after one 5xx, for
/// a minute, up to every endpoint); creates a DestinationRule when there is none.
pub fn tighten_outlier(
    mesh: &MeshDir,
    host: &str,
    ns: Option<&str>,
    write: bool,
) -> Result<MeshOutcome, ActionError> {
    let od: Value = serde_yaml_ng::from_str(
        "{consecutive5xxErrors: 1, interval: 5s, baseEjectionTime: 60s, maxEjectionPercent: 100}",
    )
    .unwrap_or(Value::Null);
    let objs = mesh.objects()?;
    let drs = destination_rules(&objs, host, ns);
    if drs.is_empty() {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {}-outlier\n  namespace: {}\nspec:\n  host: {host}\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: 1\n      interval: 5s\n      baseEjectionTime: 60s\n      maxEjectionPercent: 100\n",
            slug(host.split('.').next().unwrap_or(host)),
            ns.unwrap_or("default")
        );
        let file = PathBuf::from(format!("remediation-outlier-{}.yaml", slug(host)));
        return create(mesh, &yaml, file, write);
    }
    edit_each(mesh, &drs, write, &|v| {
        let spec = &mut v["spec"];
        if spec.get("trafficPolicy").is_none_or(|t| !t.is_mapping()) {
            spec["trafficPolicy"] = Value::Mapping(Default::default());
        }
        if spec["trafficPolicy"].get("outlierDetection") == Some(&od) {
            return false;
        }
        spec["trafficPolicy"]["outlierDetection"] = od.clone();
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(ws: &[(&str, Option<i64>)]) -> Vec<Value> {
        ws.iter()
            .map(|(s, w)| {
                let mut d: Value =
                    serde_yaml_ng::from_str(&format!("{{destination: {{host: lb, subset: {s}}}}}"))
                        .unwrap();
                if let Some(w) = w {
                    d["weight"] = Value::from(*w);
                }
                d
            })
            .collect()
    }

    fn weights(d: &[Value]) -> Vec<i64> {
        d.iter().map(|d| d["weight"].as_i64().unwrap()).collect()
    }

    #[test]
    fn shifting_gives_the_share_to_the_others_in_proportion() {
        let away = vec!["v2".to_string()];
        let mut d = route(&[("v1", Some(90)), ("v2", Some(10))]);
        assert!(shift_route(&mut d, &away));
        assert_eq!(weights(&d), [100, 0]);
        let mut d = route(&[("v1", Some(30)), ("v2", Some(40)), ("v3", Some(30))]);
        assert!(shift_route(&mut d, &away));
        assert_eq!(weights(&d), [50, 0, 50]);
        let mut d = route(&[("v1", Some(10)), ("v2", Some(60)), ("v3", Some(20))]);
        assert!(shift_route(&mut d, &away));
        assert_eq!(weights(&d).iter().sum::<i64>(), 90);
        assert_eq!(weights(&d)[1], 0);
        let mut d = route(&[("v1", None), ("v2", None)]);
        assert!(shift_route(&mut d, &away));
        assert_eq!(weights(&d), [100, 0]);
        // Only the drained version, or not it at all: nothing to do.
        assert!(!shift_route(&mut route(&[("v2", None)]), &away));
        assert!(!shift_route(&mut route(&[("v1", Some(100))]), &away));
        let mut d = route(&[("v1", Some(100)), ("v2", Some(0))]);
        assert!(!shift_route(&mut d, &away));
    }

    #[test]
    fn hosts_match_short_and_qualified_names() {
        assert!(host_matches("lb", "lb", None));
        assert!(host_matches("lb.default.svc.cluster.local", "lb", None));
        assert!(host_matches(
            "lb.default.svc.cluster.local",
            "lb",
            Some("default")
        ));
        assert!(!host_matches(
            "lb.other.svc.cluster.local",
            "lb",
            Some("default")
        ));
        assert!(!host_matches("lbx", "lb", None));
    }
}
