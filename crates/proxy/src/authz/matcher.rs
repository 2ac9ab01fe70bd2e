//! The value matchers of AuthorizationPolicy fields: Istio's string patterns (exact,
//! `prefix*`, `*suffix`, `*` for any non-empty value), IP blocks, and the `field` /
//! `notField` pairs every source, operation and condition is made of.

use std::net::IpAddr;

/// One string value of a policy, as Istio reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: present and not empty.
    Present,
}

impl StrPattern {
    /// `*` alone is presence; a leading `*` a suffix, a trailing one a prefix (only one of
    /// the two counts, as in Istio); anything else is exact.
    pub fn parse(s: &str) -> StrPattern {
        if s == "*" {
            StrPattern::Present
        } else if let Some(rest) = s.strip_prefix('*') {
            StrPattern::Suffix(rest.to_string())
        } else if let Some(rest) = s.strip_suffix('*') {
            StrPattern::Prefix(rest.to_string())
        } else {
            StrPattern::Exact(s.to_string())
        }
    }

    /// [`StrPattern::parse`] of the lowercased value, for case-insensitive fields (hosts);
    /// the input is then lowercased by the caller.
    pub fn parse_lowercase(s: &str) -> StrPattern {
        StrPattern::parse(&s.to_ascii_lowercase())
    }

    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrPattern::Exact(s) => v == s,
            StrPattern::Prefix(p) => v.starts_with(p.as_str()),
            StrPattern::Suffix(p) => v.ends_with(p.as_str()),
            StrPattern::Present => !v.is_empty(),
        }
    }
}

/// An address or CIDR block (`10.0.0.0/8`, `127.0.0.1`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn parse(s: &str) -> Result<IpBlock, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?} has an invalid prefix length")),
            },
        };
        Ok(IpBlock {
            addr: addr.to_canonical(),
            prefix: if addr.to_canonical().is_ipv4() && max == 128 {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix` of `bits` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix.min(bits);
    (a >> shift) == (b >> shift)
}

/// Something a field's values are compared with.
pub trait Matcher<V: ?Sized> {
    fn hit(&self, v: &V) -> bool;
}

impl Matcher<str> for StrPattern {
    fn hit(&self, v: &str) -> bool {
        self.matches(v)
    }
}

impl Matcher<IpAddr> for IpBlock {
    fn hit(&self, v: &IpAddr) -> bool {
        self.contains(*v)
    }
}

impl Matcher<u16> for u16 {
    fn hit(&self, v: &u16) -> bool {
        self == v
    }
}

/// A field and its `not` twin: the value must match one of `any` (when given) and none of
/// `none`.
#[derive(Debug, Clone)]
pub struct Field<M> {
    pub any: Vec<M>,
    pub none: Vec<M>,
}

impl<M> Default for Field<M> {
    fn default() -> Self {
        Field {
            any: Vec::new(),
            none: Vec::new(),
        }
    }
}

impl<M> Field<M> {
    pub fn is_empty(&self) -> bool {
        self.any.is_empty() && self.none.is_empty()
    }

    /// An absent attribute (no peer identity on plaintext, a missing header) matches no
    /// value: it fails `any` and passes `none`, as in Envoy's RBAC.
    pub fn matches<V: ?Sized>(&self, v: Option<&V>) -> bool
    where
        M: Matcher<V>,
    {
        match v {
            None => self.any.is_empty(),
            Some(v) => {
                (self.any.is_empty() || self.any.iter().any(|m| m.hit(v)))
                    && !self.none.iter().any(|m| m.hit(v))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_patterns() {
        let p = |s: &str, v: &str| StrPattern::parse(s).matches(v);
        assert!(p("/api", "/api"));
        assert!(!p("/api", "/api/v1"));
        assert!(p("/api/*", "/api/v1"));
        assert!(!p("/api/*", "/apix"));
        assert!(p("*.json", "/a/b.json"));
        assert!(!p("*.json", "/a/b.jsonx"));
        assert!(p("*", "x"));
        assert!(!p("*", ""));
    }

    #[test]
    fn ip_blocks() {
        let b = |s: &str| IpBlock::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(b("127.0.0.0/8").contains(ip("127.0.0.1")));
        assert!(!b("10.0.0.0/8").contains(ip("127.0.0.1")));
        assert!(b("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!b("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(b("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(b("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(b("::1").contains(ip("::1")));
        assert!(b("fd00::/8").contains(ip("fd12::1")));
        assert!(!b("fd00::/8").contains(ip("127.0.0.1")));
        assert!(IpBlock::parse("10.0.0.0/33").is_err());
        assert!(IpBlock::parse("ten").is_err());
    }

    #[test]
    fn fields_with_absent_values() {
        let f = Field {
            any: vec![StrPattern::parse("a*")],
            none: vec![StrPattern::parse("ab")],
        };
        assert!(f.matches(Some("ax")));
        assert!(!f.matches(Some("ab")));
        assert!(!f.matches(Some("b")));
        assert!(!f.matches::<str>(None));
        let not_only: Field<StrPattern> = Field {
            any: vec![],
            none: vec![StrPattern::parse("x")],
        };
        assert!(not_only.matches::<str>(None));
    }
}
