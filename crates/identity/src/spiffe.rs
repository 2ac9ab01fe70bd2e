//! SPIFFE ids in Istio's shape, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`: the
//! name a workload certificate proves, and what authorization and telemetry call a principal.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";

/// Why a text is not a SPIFFE id of Istio's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    #[error("{0:?} does not start with spiffe://")]
    Scheme(String),
    #[error("{0:?} is not of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT")]
    Shape(String),
    #[error("trust domain {0:?} may hold only lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    #[error("{what} {value:?} must be non-empty and hold only letters, digits, '.', '-' and '_'")]
    Segment { what: &'static str, value: String },
}

/// A workload identity. Ordered and hashable so it can key maps and sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

impl SpiffeId {
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, SpiffeError> {
        let id = SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        check_trust_domain(&id.trust_domain)?;
        check_segment("namespace", &id.namespace)?;
        check_segment("service account", &id.service_account)?;
        Ok(id)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

/// Checks a trust domain as the SPIFFE spec restricts it (so the id is a valid URI host).
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeError> {
    let ok = !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(SpiffeError::TrustDomain(td.to_string()))
    }
}

fn check_segment(what: &'static str, value: &str) -> Result<(), SpiffeError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SpiffeError::Segment {
            what,
            value: value.to_string(),
        })
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeError::Scheme(s.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => SpiffeId::new(*td, *ns, *sa),
            _ => Err(SpiffeError::Shape(s.to_string())),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let text = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
        let id: SpiffeId = text.parse().unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(id.to_string(), text);
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "http://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/sa/b/ns/a",
            "spiffe:///ns/a/sa/b",
            "spiffe://Cluster.Local/ns/a/sa/b",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/a b/sa/b",
            "spiffe://cluster.local/ns/../sa/b",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn new_checks_each_part() {
        assert!(SpiffeId::new("td", "ns", "sa").is_ok());
        assert!(matches!(
            SpiffeId::new("td", "", "sa"),
            Err(SpiffeError::Segment {
                what: "namespace",
                ..
            })
        ));
        assert!(matches!(
            SpiffeId::new("td/x", "a", "b"),
            Err(SpiffeError::TrustDomain(_))
        ));
    }
}
