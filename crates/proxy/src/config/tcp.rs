//! Compiling VirtualService `tcp:` and `tls:` routes into a table by service port, for the
//! proxy's TCP listeners (one per service port: a TCP connection names no host, so the port
//! picks the routes). A route applies to the ports its match blocks name, or else to the TCP
//! (`tcp:`) or TLS (`tls:`) ports (see [`ServicePort::is_tcp`], [`ServicePort::is_tls`]) that
//! ServiceEntries declare for the VirtualService's hosts. A `tls:` block also names the SNI
//! hosts it takes, read from the ClientHello of a connection passed through unopened. A port
//! no route claims is sent to the ServiceEntry declaring it (the first by host name when
//! several do), as Istio's default route would.

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshlens_mesh::host::fqdn;
use meshlens_mesh::{L4MatchAttributes, RouteDestination, ServiceEntry, ServicePort, Source};

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
    /// SNI hosts (lower case; `*.example.com` wildcards) of a `tls:` block; empty for `tcp:`.
    pub sni: Vec<String>,
}

impl L4Match {
    pub fn matches(&self, dest: IpAddr, sni: Option<&str>) -> bool {
        (self.subnets.is_empty() || self.subnets.iter().any(|s| s.contains(dest)))
            && (self.sni.is_empty()
                || sni.is_some_and(|n| self.sni.iter().any(|h| sni_matches(h, n))))
    }
}

/// Whether SNI `name` is `host`, or falls under its `*.` wildcard (one label or more, as
/// Istio's host wildcards), ignoring case.
fn sni_matches(host: &str, name: &str) -> bool {
    match host.strip_prefix('*') {
        Some(suffix) => {
            name.len() > suffix.len()
                && name.as_bytes()[name.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => host.eq_ignore_ascii_case(name),
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
    /// The route for a connection to service port `port` at destination address `dest`, with
    /// the SNI its ClientHello named (when the port's routes asked for it).
    pub fn route(&self, port: u16, dest: IpAddr, sni: Option<&str>) -> Option<&TcpRoute> {
        self.by_port
            .get(&port)?
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(dest, sni)))
    }

    /// Whether some route on `port` matches on SNI, so a connection's ClientHello must be
    /// read before it can be routed.
    pub fn needs_sni(&self, port: u16) -> bool {
        self.by_port.get(&port).is_some_and(|rs| {
            rs.iter()
                .any(|r| r.matches.iter().any(|m| !m.sni.is_empty()))
        })
    }
}

fn l4_ports(se: &ServiceEntry, pick: fn(&ServicePort) -> bool) -> impl Iterator<Item = u16> + '_ {
    se.spec
        .ports
        .iter()
        .filter(move |p| pick(p))
        .filter_map(|p| u16::try_from(p.number).ok())
}

/// One `tcp:` or `tls:` route, as both compile.
struct RouteSpec<'a> {
    what: String,
    /// The route's match blocks (with their SNI hosts), and whether it had any.
    blocks: Vec<(L4MatchAttributes, Vec<String>)>,
    had_matches: bool,
    route: &'a [RouteDestination],
}

pub(super) fn compile(b: &mut Builder<'_>) -> TcpTable {
    let mut table = TcpTable::default();
    let cfg = b.config();
    for vs in &cfg.virtual_services {
        if !b.binds(vs) {
            continue;
        }
        let ns = vs.namespace();
        // The TCP and TLS ports the VirtualService's hosts declare.
        let (mut tcp_ports, mut tls_ports) = (Vec::new(), Vec::new());
        for h in &vs.spec.hosts {
            if let Some(se) = b.service_entry(&fqdn(h, ns)) {
                tcp_ports.extend(l4_ports(se, ServicePort::is_tcp));
                tls_ports.extend(l4_ports(se, ServicePort::is_tls));
            }
        }
        let name = format!("{ns}/{}", vs.name());
        for (i, r) in vs.spec.tcp.iter().enumerate() {
            let spec = RouteSpec {
                what: format!("VirtualService {name} tcp[{i}]"),
                blocks: r.matches.iter().map(|m| (m.clone(), Vec::new())).collect(),
                had_matches: !r.matches.is_empty(),
                route: &r.route,
            };
            add_route(b, &mut table, &name, ns, &vs.source, spec, &tcp_ports);
        }
        for (i, r) in vs.spec.tls.iter().enumerate() {
            let what = format!("VirtualService {name} tls[{i}]");
            for (j, m) in r.matches.iter().enumerate() {
                if m.sni_hosts.is_empty() {
                    b.error(
                        &vs.source,
                        format!("{what}.match[{j}]: sniHosts is required"),
                    );
                }
            }
            let spec = RouteSpec {
                what,
                blocks: r
                    .matches
                    .iter()
                    .map(|m| {
                        let hosts = m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                        (m.l4(), hosts)
                    })
                    .collect(),
                had_matches: !r.matches.is_empty(),
                route: &r.route,
            };
            add_route(b, &mut table, &name, ns, &vs.source, spec, &tls_ports);
        }
    }
    // Default routes for TCP and TLS ports no VirtualService claims.
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
        let ports = l4_ports(se, |p| p.is_tcp() || p.is_tls());
        for port in ports {
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

/// Adds one route to the table, on each port it applies to (see the module doc).
fn add_route(
    b: &mut Builder<'_>,
    table: &mut TcpTable,
    name: &str,
    ns: &str,
    src: &Source,
    r: RouteSpec<'_>,
    host_ports: &[u16],
) {
    let what = &r.what;
    let blocks: Vec<&(L4MatchAttributes, Vec<String>)> = r
        .blocks
        .iter()
        .filter(|(m, _)| b.applies_here(m, ns))
        .collect();
    if r.had_matches && blocks.is_empty() {
        return; // every block is for other sources or gateways
    }
    let mut subnets_of = Vec::new();
    for (j, (m, _)) in blocks.iter().enumerate() {
        let mut subnets = Vec::new();
        for s in &m.destination_subnets {
            match Subnet::parse(s) {
                Ok(n) => subnets.push(n),
                Err(e) => b.error(src, format!("{what}.match[{j}].destinationSubnets: {e}")),
            }
        }
        subnets_of.push(subnets);
    }
    // Port → the blocks that apply to it.
    let mut ports: BTreeMap<u16, Vec<L4Match>> = BTreeMap::new();
    if blocks.is_empty() {
        for p in host_ports {
            ports.entry(*p).or_default();
        }
    }
    for ((m, sni), subnets) in blocks.iter().zip(subnets_of) {
        let for_ports = match m.port.and_then(|p| u16::try_from(p).ok()) {
            Some(p) => vec![p],
            None => host_ports.to_vec(),
        };
        for p in for_ports {
            ports.entry(p).or_default().push(L4Match {
                subnets: subnets.clone(),
                sni: sni.clone(),
            });
        }
    }
    if ports.is_empty() {
        b.error(
            src,
            format!("{what}: no port to serve it on: match a `port`, or declare a port of its protocol for a host in a ServiceEntry"),
        );
        return;
    }
    for (port, matches) in ports {
        let dests = destinations(b, r.route, ns, port, src);
        table.by_port.entry(port).or_default().push(TcpRoute {
            name: name.to_string(),
            matches,
            dests,
        });
    }
}

fn destinations(
    b: &mut Builder<'_>,
    route: &[RouteDestination],
    ns: &str,
    listener_port: u16,
    src: &Source,
) -> Vec<WeightedCluster> {
    let all_unweighted = route.iter().all(|d| d.weight.is_none());
    let mut dests = Vec::new();
    for d in route {
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

    #[test]
    fn sni_hosts_match_exactly_or_under_a_wildcard() {
        assert!(sni_matches("api.example.com", "API.example.com"));
        assert!(!sni_matches("api.example.com", "www.example.com"));
        assert!(sni_matches("*.example.com", "a.b.example.com"));
        assert!(!sni_matches("*.example.com", "example.com"));
        assert!(!sni_matches("*.example.com", "badexample.com"));
        let m = L4Match {
            subnets: Vec::new(),
            sni: vec!["*.example.com".into()],
        };
        let any = "10.0.0.1".parse().unwrap();
        assert!(m.matches(any, Some("x.example.com")));
        assert!(
            !m.matches(any, None),
            "a connection without SNI takes no SNI route"
        );
        assert!(L4Match::default().matches(any, None));
    }
}
