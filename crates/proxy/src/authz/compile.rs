//! Compiling AuthorizationPolicy objects into the [`Policies`] of one workload.
//!
//! Every policy is checked, whichever workload it is for, so that all proxies agree on
//! whether a config is good; only those that apply to this workload are kept. Istio's own
//! validation rules are kept where they guard against a rule silently matching everything
//! (an empty `source` or `operation`, a `when` without values).

use std::collections::BTreeMap;

use http::HeaderName;
use meshlens_mesh::security::{AuthzAction, Condition as MeshCondition, Operation, PeerSource};
use meshlens_mesh::{AuthorizationPolicy, ConfigError};

use super::matcher::{Field, IpBlock, StrPattern};
use super::{Condition, OperationMatch, Policies, Policy, Rule, SourceMatch};

/// The workload whose policies are compiled.
pub struct Workload<'a> {
    /// Istio's root namespace: its policies apply mesh-wide.
    pub root_namespace: &'a str,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The policies that apply to `w`, or every problem found in any policy.
pub fn compile(
    policies: &[AuthorizationPolicy],
    w: &Workload<'_>,
) -> Result<Policies, Vec<ConfigError>> {
    let mut out = Policies::default();
    let mut errors = Vec::new();
    for p in policies {
        let what = format!("AuthorizationPolicy {}/{}", p.namespace(), p.name());
        let mut errs = Vec::new();
        let rules: Vec<Rule> = p
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, &format!("rules[{i}]"), &mut errs))
            .collect();
        let applies = p.applies_to(w.root_namespace, w.namespace, w.labels);
        if applies && p.spec.action == AuthzAction::Custom {
            errs.push(
                "action CUSTOM (external authorization) is not supported by the meshlens proxy"
                    .to_string(),
            );
        }
        if p.spec.provider.is_some() && p.spec.action != AuthzAction::Custom {
            errs.push("provider is only allowed with action CUSTOM".to_string());
        }
        errors.extend(errs.into_iter().map(|reason| ConfigError {
            file: p.source.file.clone(),
            line: p.source.line,
            reason: format!("{what}: {reason}"),
        }));
        if !applies {
            continue;
        }
        if p.has_target_ref() {
            tracing::warn!(policy = %what, source = %p.source, "targetRef is not resolved by meshlens: the policy applies as if it had no selector");
        }
        let policy = Policy {
            name: format!("{}/{}", p.namespace(), p.name()),
            rules,
        };
        match p.spec.action {
            AuthzAction::Allow => out.allow.push(policy),
            AuthzAction::Deny => out.deny.push(policy),
            AuthzAction::Audit => out.audit.push(policy),
            AuthzAction::Custom => {} // refused above
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn rule(r: &meshlens_mesh::security::Rule, at: &str, errs: &mut Vec<String>) -> Rule {
    let mut out = Rule::default();
    for (j, f) in r.from.iter().enumerate() {
        let at = format!("{at}.from[{j}].source");
        match &f.source {
            Some(s) if !s.is_empty() => out.from.push(source(s, &at, errs)),
            _ => errs.push(format!("{at}: must not be empty")),
        }
    }
    for (j, t) in r.to.iter().enumerate() {
        let at = format!("{at}.to[{j}].operation");
        match &t.operation {
            Some(o) if !o.is_empty() => out.to.push(operation(o, &at, errs)),
            _ => errs.push(format!("{at}: must not be empty")),
        }
    }
    for (j, c) in r.when.iter().enumerate() {
        if let Some(c) = condition(c, &format!("{at}.when[{j}]"), errs) {
            out.when.push(c);
        }
    }
    out
}

fn strs(any: &[String], none: &[String]) -> Field<StrPattern> {
    Field {
        any: any.iter().map(|s| StrPattern::parse(s)).collect(),
        none: none.iter().map(|s| StrPattern::parse(s)).collect(),
    }
}

fn ips(any: &[String], none: &[String], at: &str, errs: &mut Vec<String>) -> Field<IpBlock> {
    let mut parse = |v: &[String]| -> Vec<IpBlock> {
        v.iter()
            .filter_map(|s| {
                IpBlock::parse(s)
                    .map_err(|e| errs.push(format!("{at}: {e}")))
                    .ok()
            })
            .collect()
    };
    Field {
        any: parse(any),
        none: parse(none),
    }
}

fn ports(any: &[String], none: &[String], at: &str, errs: &mut Vec<String>) -> Field<u16> {
    let mut parse = |v: &[String]| -> Vec<u16> {
        v.iter()
            .filter_map(|s| match s.trim().parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    errs.push(format!("{at}: {s:?} is not a port number"));
                    None
                }
            })
            .collect()
    };
    Field {
        any: parse(any),
        none: parse(none),
    }
}

fn source(s: &PeerSource, at: &str, errs: &mut Vec<String>) -> SourceMatch {
    SourceMatch {
        principals: strs(&s.principals, &s.not_principals),
        service_accounts: strs(&s.service_accounts, &s.not_service_accounts),
        request_principals: strs(&s.request_principals, &s.not_request_principals),
        namespaces: strs(&s.namespaces, &s.not_namespaces),
        ip_blocks: ips(
            &s.ip_blocks,
            &s.not_ip_blocks,
            &format!("{at}.ipBlocks"),
            errs,
        ),
        remote_ip_blocks: ips(
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            &format!("{at}.remoteIpBlocks"),
            errs,
        ),
    }
}

fn operation(o: &Operation, at: &str, errs: &mut Vec<String>) -> OperationMatch {
    let lower = |v: &[String]| -> Vec<StrPattern> {
        v.iter().map(|s| StrPattern::parse_lowercase(s)).collect()
    };
    OperationMatch {
        hosts: Field {
            any: lower(&o.hosts),
            none: lower(&o.not_hosts),
        },
        ports: ports(&o.ports, &o.not_ports, &format!("{at}.ports"), errs),
        methods: strs(&o.methods, &o.not_methods),
        paths: strs(&o.paths, &o.not_paths),
    }
}

/// A `when` condition; `None` (with an error) for keys meshlens cannot evaluate.
fn condition(c: &MeshCondition, at: &str, errs: &mut Vec<String>) -> Option<Condition> {
    if c.key.is_empty() {
        errs.push(format!("{at}: key must not be empty"));
        return None;
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        errs.push(format!("{at}: needs values or notValues"));
        return None;
    }
    let (v, nv) = (&c.values[..], &c.not_values[..]);
    let key = c.key.as_str();
    let cond = if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        match HeaderName::try_from(name) {
            Ok(h) => Condition::Header(h, strs(v, nv)),
            Err(_) => {
                errs.push(format!("{at}: {name:?} is not a header name"));
                return None;
            }
        }
    } else {
        match key {
            "source.ip" => Condition::SourceIp(ips(v, nv, at, errs)),
            "remote.ip" => Condition::RemoteIp(ips(v, nv, at, errs)),
            "source.principal" => Condition::SourcePrincipal(strs(v, nv)),
            "source.namespace" => Condition::SourceNamespace(strs(v, nv)),
            "destination.port" => Condition::DestinationPort(ports(v, nv, at, errs)),
            k if k.starts_with("request.auth.") => Condition::RequestAuth(strs(v, nv)),
            other => {
                errs.push(format!(
                    "{at}: key {other:?} is not supported (supported: request.headers[NAME], source.ip, remote.ip, source.principal, source.namespace, destination.port, request.auth.*)"
                ));
                return None;
            }
        }
    };
    Some(cond)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_mesh::MeshConfig;

    fn load(yaml: &str) -> Vec<AuthorizationPolicy> {
        MeshConfig::parse_str(yaml, "authz.yaml")
            .unwrap()
            .authorization_policies
    }

    fn run(yaml: &str, ns: &str, app: &str) -> Result<Policies, Vec<ConfigError>> {
        let labels: BTreeMap<String, String> = [("app".to_string(), app.to_string())].into();
        compile(
            &load(yaml),
            &Workload {
                root_namespace: "istio-system",
                namespace: ns,
                labels: &labels,
            },
        )
    }

    const HEAD: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n";

    #[test]
    fn only_applicable_policies_are_kept() {
        let y = format!(
            "{HEAD}metadata: {{name: mesh, namespace: istio-system}}\nspec: {{action: DENY, rules: [{{to: [{{operation: {{paths: [/x]}}}}]}}]}}\n---\n{HEAD}metadata: {{name: own, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: web}}}}}}\n---\n{HEAD}metadata: {{name: other, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: db}}}}}}\n---\n{HEAD}metadata: {{name: elsewhere, namespace: bank}}\nspec: {{action: AUDIT}}\n"
        );
        let p = run(&y, "shop", "web").unwrap();
        assert_eq!(p.deny.len(), 1);
        assert_eq!(p.allow.len(), 1);
        assert_eq!(p.allow[0].name, "shop/own");
        assert!(p.audit.is_empty());
    }

    #[test]
    fn custom_unknown_keys_and_empty_parts_are_refused() {
        let custom = format!("{HEAD}metadata: {{name: ext, namespace: shop}}\nspec: {{action: CUSTOM, provider: {{name: opa}}, rules: [{{}}]}}\n");
        let e = run(&custom, "shop", "web").unwrap_err();
        assert!(e[0].reason.contains("CUSTOM"), "{e:?}");
        assert_eq!(e[0].line, 1);
        // Not this workload's: nothing to enforce, nothing to refuse.
        assert!(run(&custom, "bank", "web").is_ok());

        let bad = format!("{HEAD}metadata: {{name: p, namespace: shop}}\nspec:\n  rules:\n  - from: [{{source: {{}}}}]\n    to: [{{operation: {{ports: [http]}}}}]\n    when:\n    - {{key: connection.sni, values: [x]}}\n    - {{key: \"request.headers[x-a]\"}}\n    - {{key: source.ip, values: [nope]}}\n");
        let e = run(&bad, "shop", "web").unwrap_err();
        let all: Vec<&str> = e.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(e.len(), 5, "{all:#?}");
        assert!(all[0].contains("rules[0].from[0].source: must not be empty"));
        assert!(all[1].contains("rules[0].to[0].operation.ports"));
        assert!(all[2].contains("connection.sni"));
        assert!(all[3].contains("needs values or notValues"));
        assert!(all[4].contains("\"nope\""));
    }
}
