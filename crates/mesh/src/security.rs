//! Istio `security.istio.io` resources: AuthorizationPolicy.
//!
//! Unlike the networking kinds, unknown fields are refused here: a misspelt `principal:` or
//! `method:` would otherwise leave a rule empty, and an empty rule matches every request, so
//! a typo in an ALLOW policy would open what it meant to close.
//!
//! Which workloads a policy applies to is decided here ([`AuthorizationPolicy::applies_to`]),
//! because the validator and the proxy must agree on it; what a rule matches is the proxy's.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::resources::Resource;

/// The API group of the security kinds.
pub const ISTIO_SECURITY_GROUP: &str = "security.istio.io";
/// Versions of the group whose AuthorizationPolicy schema is the one modelled here.
pub const SECURITY_VERSIONS: &[&str] = &["v1beta1", "v1"];
/// Istio's default root namespace: policies there apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

pub type AuthorizationPolicy = Resource<AuthorizationPolicySpec>;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// `matchLabels`; none means every workload of the namespace (or of the mesh, in the root
    /// namespace).
    pub selector: Option<PolicySelector>,
    /// Gateway / waypoint attachment. Not resolved by meshlens (see
    /// [`AuthorizationPolicy::applies_to`]).
    pub target_ref: Option<serde_yaml_ng::Value>,
    pub target_refs: Vec<serde_yaml_ng::Value>,
    pub action: AuthzAction,
    /// CUSTOM's external authorizer.
    pub provider: Option<serde_yaml_ng::Value>,
    /// Absent or empty: an ALLOW policy allows nothing, a DENY or AUDIT policy matches
    /// nothing.
    pub rules: Vec<Rule>,
}

/// `selector` of a security kind (Kubernetes' `matchLabels` form).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PolicySelector {
    pub match_labels: BTreeMap<String, String>,
}

/// What a policy does with the requests its rules match.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    /// Marks matching requests for auditing; never decides.
    Audit,
    /// Delegates to an external authorizer (not supported by the meshlens proxy).
    Custom,
}

impl AuthzAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom => "CUSTOM",
        }
    }
}

/// One rule: `from`, `to` and `when` are ANDed; the items of each list are ORed; an absent
/// or empty list matches every request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Rule {
    pub from: Vec<RuleFrom>,
    pub to: Vec<RuleTo>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RuleFrom {
    pub source: Option<PeerSource>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

/// Who sends the request. Every field set must match (a `not*` field: must not match any
/// of its values).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PeerSource {
    /// Peer identities as `TRUST_DOMAIN/ns/NS/sa/SA` (the SPIFFE id without `spiffe://`).
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    /// Peer service accounts as `NS/SA` (the same identity as a principal, without the trust
    /// domain).
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    /// JWT identities (`iss/sub`); meshlens authenticates no request tokens.
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    /// The direct peer's address: IPs or CIDRs.
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    /// The original client's address (from `X-Forwarded-For` behind trusted proxies).
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

impl PeerSource {
    pub fn is_empty(&self) -> bool {
        *self == PeerSource::default()
    }
}

/// What the request asks for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    /// Destination ports; strings in Istio's API, numbers accepted too.
    #[serde(deserialize_with = "strings")]
    pub ports: Vec<String>,
    #[serde(deserialize_with = "strings")]
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

impl Operation {
    pub fn is_empty(&self) -> bool {
        *self == Operation::default()
    }
}

/// `when`: an attribute (`request.headers[x-token]`, `source.ip` …) and the values it must
/// (or must not) have.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Condition {
    pub key: String,
    #[serde(deserialize_with = "strings")]
    pub values: Vec<String>,
    #[serde(deserialize_with = "strings")]
    pub not_values: Vec<String>,
}

/// A list of strings where YAML may have written numbers (`ports: [8080]`).
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        S(String),
        I(i64),
    }
    let items: Option<Vec<Item>> = Option::deserialize(d)?;
    Ok(items
        .unwrap_or_default()
        .into_iter()
        .map(|i| match i {
            Item::S(s) => s,
            Item::I(n) => n.to_string(),
        })
        .collect())
}

impl AuthorizationPolicy {
    /// Whether this policy governs a workload of `namespace` with `labels`: a policy in the
    /// root namespace applies mesh-wide, any other to its own namespace; a selector narrows
    /// it to the workloads carrying all its labels.
    ///
    /// `targetRef(s)` (attachment to a Gateway or waypoint) is not resolved: such a policy is
    /// treated as if it had no selector. Applying it to more workloads than Istio would only
    /// ever denies more, never less (fail closed).
    pub fn applies_to(
        &self,
        root_namespace: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns = self.namespace();
        if ns != root_namespace && ns != namespace {
            return false;
        }
        match &self.spec.selector {
            None => true,
            Some(s) => s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }

    /// Whether `targetRef` or `targetRefs` is set.
    pub fn has_target_ref(&self) -> bool {
        self.spec.target_ref.is_some() || !self.spec.target_refs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<AuthorizationPolicySpec, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(spec)
    }

    #[test]
    fn fields_and_defaults() {
        let s = parse(
            "selector: {matchLabels: {app: a}}\nrules:\n- from: [{source: {principals: [x], notIpBlocks: [10.0.0.0/8]}}]\n  to: [{operation: {ports: [8080, \"9090\"], methods: [GET]}}]\n  when: [{key: destination.port, values: [80]}]\n",
        )
        .unwrap();
        assert_eq!(s.action, AuthzAction::Allow);
        let r = &s.rules[0];
        let src = r.from[0].source.as_ref().unwrap();
        assert_eq!(src.principals, ["x"]);
        assert_eq!(src.not_ip_blocks, ["10.0.0.0/8"]);
        let op = r.to[0].operation.as_ref().unwrap();
        assert_eq!(op.ports, ["8080", "9090"]);
        assert_eq!(r.when[0].values, ["80"]);
        assert_eq!(parse("action: DENY").unwrap().action, AuthzAction::Deny);
    }

    #[test]
    fn typos_and_unknown_actions_are_refused() {
        let e = parse("rules:\n- from:\n  - source:\n      principal: [x]\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `principal`"), "{e}");
        assert_eq!(e.location().map(|l| l.line()), Some(4));
        assert!(parse("action: REJECT").is_err());
    }

    #[test]
    fn scope_root_namespace_and_selector() {
        let mut p = AuthorizationPolicy {
            api_version: "security.istio.io/v1".into(),
            kind: "AuthorizationPolicy".into(),
            metadata: Default::default(),
            spec: Default::default(),
            source: Default::default(),
        };
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        p.metadata.namespace = Some("shop".into());
        assert!(p.applies_to("istio-system", "shop", &labels));
        assert!(!p.applies_to("istio-system", "other", &labels));
        p.metadata.namespace = Some("istio-system".into());
        assert!(p.applies_to("istio-system", "other", &labels));
        p.spec.selector = Some(PolicySelector {
            match_labels: [("app".to_string(), "db".to_string())].into(),
        });
        assert!(!p.applies_to("istio-system", "other", &labels));
    }
}
