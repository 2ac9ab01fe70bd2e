//! Name resolution as blackbox_exporter's `chooseProtocol` with its defaults
//! (`preferred_ip_protocol: ip6`, `ip_protocol_fallback: true`): the first IPv6 address, else
//! the fallback IPv4 one, with `probe_ip_protocol`, `probe_ip_addr_hash` and
//! `probe_dns_lookup_time_seconds` registered before the lookup starts.

use std::net::IpAddr;
use std::time::Instant;

use crate::measured::Measured;

/// Resolves `host` (an IP literal resolves to itself); returns the address, and the lookup
/// time in seconds whether or not it succeeded.
pub(crate) async fn choose_ip(host: &str, m: &mut Measured) -> (Result<IpAddr, String>, f64) {
    m.set("probe_ip_protocol", 0.0);
    m.set("probe_ip_addr_hash", 0.0);
    m.set("probe_dns_lookup_time_seconds", 0.0);
    let start = Instant::now();
    let found = lookup(host).await;
    let took = start.elapsed().as_secs_f64();
    m.set("probe_dns_lookup_time_seconds", took);
    (pick(found, host, m), took)
}

fn pick(
    found: Result<Vec<IpAddr>, String>,
    host: &str,
    m: &mut Measured,
) -> Result<IpAddr, String> {
    let addrs = found?;
    // Go keeps the last address of the other family as the fallback.
    let ip = addrs
        .iter()
        .find(|ip| ip.is_ipv6())
        .or_else(|| addrs.iter().rev().find(|ip| ip.is_ipv4()))
        .copied()
        .ok_or_else(|| format!("no address found for {host:?}"))?;
    m.set("probe_ip_protocol", if ip.is_ipv6() { 6.0 } else { 4.0 });
    m.set("probe_ip_addr_hash", f64::from(ip_hash(ip)));
    Ok(ip)
}

/// Every address of `host`, in the resolver's order.
pub(crate) async fn lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("resolving {host:?}: {e}"))?;
    let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
    if ips.is_empty() {
        return Err(format!("no address found for {host:?}"));
    }
    Ok(ips)
}

/// FNV-1a (32 bit) over the address bytes, 4 for IPv4 and 16 for IPv6, as blackbox hashes.
pub(crate) fn ip_hash(ip: IpAddr) -> u32 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_of_loopback() {
        // FNV-1a of [127, 0, 0, 1], computed by hand from the algorithm's definition.
        let mut h: u32 = 0x811c_9dc5;
        for b in [127u8, 0, 0, 1] {
            h ^= u32::from(b);
            h = h.wrapping_mul(16_777_619);
        }
        assert_eq!(ip_hash("127.0.0.1".parse().unwrap()), h);
        assert_ne!(ip_hash("::1".parse().unwrap()), h);
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let mut m = Measured::default();
        let ip = choose_ip("127.0.0.1", &mut m).await.0.unwrap();
        assert_eq!(ip.to_string(), "127.0.0.1");
        assert_eq!(m.get("probe_ip_protocol"), Some(4.0));
        let ip = choose_ip("::1", &mut m).await.0.unwrap();
        assert!(ip.is_ipv6());
        assert_eq!(m.get("probe_ip_protocol"), Some(6.0));
    }
}
