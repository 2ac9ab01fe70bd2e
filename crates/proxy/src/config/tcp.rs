//! Compiling VirtualService `tcp:` routes into a table by service port, for the proxy's TCP
//! listeners (one per service port: a TCP connection names no host, so the port picks the
//! routes). A route applies to the ports its match blocks name, or else to the TCP ports
//! (see [`ServicePort::is_tcp`]) that ServiceEntries declare for the VirtualService's hosts.
//! A TCP port no route claims is sent to the ServiceEntry declaring it (the first by host
//! name when several do), as Istio's default route would.

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshlens_mesh::host::fqdn;
use meshlens_mesh::{L4MatchAttributes, ServiceEntry, ServicePort, TcpRoute as TcpRouteSpec};

use super::compile::Builder;
use super::table::{HeaderOps, WeightedCluster};

/// Routes by service port, in config order.
#[derive(Default)]
pub struct TcpTable {
    pub by_port: BTreeMap<u16, Vec<TcpRoute>>,
}

pub struct TcpRoute {
    /// `namespace/name` of the VirtualService (or ServiceEntry) it came from.
    pub name: String,
    /// ORed; empty matches every connection.
    pub matches: Vec<L4Match>,
    pub dests: Vec<WeightedCluster>,
}

/// One `match` block, reduced to what is decided per connection (the port picked the route
/// table; source labels, namespace and gateways were decided when compiling).
#[derive(Debug, Clone, Default)]
pub struct L4Match {
    /// Destination subnets; empty accepts any destination address.
    pub subnets: Vec<Subnet>,
}

impl L4Match {
    pub fn matches(&self, dest: IpAddr) -> bool {
        self.subnets.is_empty() || self.subnets.iter().any(|s| s.contains(dest))
    }
}

/// `a.b.c.d/n` (or a bare address, a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0..={max}")),
            },
        };
        Ok(Subnet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(v: u128, prefix: u8, bits: u32) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let shift = bits - u32::from(prefix);
    v >> shift
}

impl TcpTable {
    /// The route for a connection to service port `port` at destination address `dest`.
    pub fn route(&self, port: u16, dest: IpAddr) -> Option<&TcpRoute> {
        self.by_port
            .get(&port)?
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(dest)))
    }
}

fn tcp_ports(se: &ServiceEntry) -> impl Iterator<Item = u16> + '_ {
    se.spec
        .ports
        .iter()
        .filter(|p| p.is_tcp())
        .filter_map(|p| u16::try_from(p.number).ok())
}

pub(super) fn compile(b: &mut Builder<'_>) -> TcpTable {
    let mut table = TcpTable::default();
    let cfg = b.config();
    for vs in &cfg.virtual_services {
        if !b.binds(vs) {
            continue;
        }
        let ns = vs.namespace();
        // The TCP ports the VirtualService's hosts declare.
        let mut host_ports: Vec<u16> = Vec::new();
        for h in &vs.spec.hosts {
            if let Some(se) = b.service_entry(&fqdn(h, ns)) {
                host_ports.extend(tcp_ports(se));
            }
        }
        for (i, r) in vs.spec.tcp.iter().enumerate() {
            let what = format!("VirtualService {ns}/{} tcp[{i}]", vs.name());
            let blocks: Vec<&L4MatchAttributes> =
                r.matches.iter().filter(|m| b.applies_here(m, ns)).collect();
            if !r.matches.is_empty() && blocks.is_empty() {
                continue; // every block is for other sources or gateways
            }
            let mut subnets_of = Vec::new();
            for (j, m) in blocks.iter().enumerate() {
                let mut subnets = Vec::new();
                for s in &m.destination_subnets {
                    match Subnet::parse(s) {
                        Ok(n) => subnets.push(n),
                        Err(e) => b.error(
                            &vs.source,
                            format!("{what}.match[{j}].destinationSubnets: {e}"),
                        ),
                    }
                }
                subnets_of.push(subnets);
            }
            // Port → the blocks that apply to it.
            let mut ports: BTreeMap<u16, Vec<L4Match>> = BTreeMap::new();
            if blocks.is_empty() {
                for p in &host_ports {
                    ports.entry(*p).or_default();
                }
            }
            for (m, subnets) in blocks.iter().zip(subnets_of) {
                let for_ports = match m.port.and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => vec![p],
                    None => host_ports.clone(),
                };
                for p in for_ports {
                    ports.entry(p).or_default().push(L4Match {
                        subnets: subnets.clone(),
                    });
                }
            }
            if ports.is_empty() {
                b.error(
                    &vs.source,
                    format!("{what}: no port to serve it on: match a `port`, or declare a TCP port for a host in a ServiceEntry"),
                );
                continue;
            }
            for (port, matches) in ports {
                let dests = destinations(b, r, ns, port, &vs.source);
                table.by_port.entry(port).or_default().push(TcpRoute {
                    name: format!("{ns}/{}", vs.name()),
                    matches,
                    dests,
                });
            }
        }
    }
    // Default routes for TCP ports no VirtualService claims.
    let mut ses: Vec<(String, &ServiceEntry)> = cfg
        .service_entries
        .iter()
        .flat_map(|se| {
            se.spec
                .hosts
                .iter()
                .map(move |h| (fqdn(h, se.namespace()), se))
        })
        .filter(|(h, _)| !h.starts_with('*'))
        .collect();
    ses.sort_by(|a, b| a.0.cmp(&b.0));
    for (host, se) in ses {
        for port in tcp_ports(se) {
            if table.by_port.contains_key(&port) {
                continue;
            }
            let cluster = b.cluster(&host, se.namespace(), None, Some(port), &se.source);
            table.by_port.insert(
                port,
                vec![TcpRoute {
                    name: format!("{}/{}", se.namespace(), se.name()),
                    matches: Vec::new(),
                    dests: vec![WeightedCluster {
                        weight: 1,
                        cluster,
                        headers: HeaderOps::default(),
                    }],
                }],
            );
        }
    }
    table
}

fn destinations(
    b: &mut Builder<'_>,
    r: &TcpRouteSpec,
    ns: &str,
    listener_port: u16,
    src: &meshlens_mesh::Source,
) -> Vec<WeightedCluster> {
    let all_unweighted = r.route.iter().all(|d| d.weight.is_none());
    let mut dests = Vec::new();
    for d in &r.route {
        let host = &d.destination.host;
        // Without a port: the listener's, when the destination declares it; else the
        // destination's own (first) port.
        let port = match d.destination.port.as_ref() {
            Some(p) => u16::try_from(p.number).ok(),
            None => {
                let declares = b.service_entry(&fqdn(host, ns)).map(|se| {
                    se.spec
                        .ports
                        .iter()
                        .any(|p: &ServicePort| p.number == u32::from(listener_port))
                });
                match declares {
                    Some(false) => None,
                    _ => Some(listener_port),
                }
            }
        };
        let cluster = b.cluster(host, ns, d.destination.subset.as_deref(), port, src);
        dests.push(WeightedCluster {
            weight: if all_unweighted {
                1
            } else {
                d.weight.unwrap_or(0)
            },
            cluster,
            headers: HeaderOps::default(),
        });
    }
    dests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let n = Subnet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Subnet::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Subnet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Subnet::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(Subnet::parse("10.0.0.0/33").is_err());
        assert!(Subnet::parse("nope").is_err());
    }
}
