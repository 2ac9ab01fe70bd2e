//! DNS discovery against an in-process UDP nameserver whose answers the test changes.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_resolver::proto::rr::{Name, Record};

use super::*;

/// What the fake nameserver answers for a name (lower-case, with the final dot).
#[derive(Clone)]
enum Answer {
    Records(Vec<RData>),
    Code(ResponseCode),
}

type Zone = Arc<Mutex<HashMap<String, Answer>>>;

async fn nameserver(zone: Zone) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.metadata.recursion_available = true;
            let Some(q) = req.queries.first().cloned() else {
                continue;
            };
            let key = q.name().to_ascii().to_ascii_lowercase();
            resp.add_query(q.clone());
            match zone.lock().get(&key).cloned() {
                None => resp.metadata.response_code = ResponseCode::NXDomain,
                Some(Answer::Code(c)) => resp.metadata.response_code = c,
                Some(Answer::Records(rs)) => {
                    for r in rs {
                        resp.add_answer(Record::from_rdata(q.name().clone(), 0, r));
                    }
                }
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 0, port, Name::from_ascii(target).unwrap()))
}

fn config(names: &[&str], record_type: DnsRecordType, port: u16) -> DnsSdConfig {
    DnsSdConfig {
        names: names.iter().map(|s| s.to_string()).collect(),
        record_type,
        port,
        refresh_interval: Duration::from_millis(50),
    }
}

/// Polls until `want` holds for the discovered groups (at most 20s).
async fn until(sd: &DnsSd, last: &mut Vec<TargetGroup>, want: impl Fn(&[TargetGroup]) -> bool) {
    let start = Instant::now();
    while !want(last) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not reached; last groups: {last:#?}"
        );
        if let Some(g) = sd.poll() {
            *last = g;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn targets(groups: &[TargetGroup]) -> Vec<String> {
    let mut t: Vec<String> = groups.iter().flat_map(|g| g.targets.clone()).collect();
    t.sort();
    t
}

#[tokio::test]
async fn srv_a_aaaa_targets_failures_keep_the_last_and_nxdomain_clears() {
    let zone: Zone = Arc::default();
    zone.lock().insert(
        "_metrics._tcp.example.test.".into(),
        Answer::Records(vec![
            srv(9100, "web-1.example.test."),
            srv(9200, "web-2.example.test."),
            RData::CNAME(CNAME(Name::from_ascii("alias.example.test.").unwrap())),
        ]),
    );
    zone.lock().insert(
        "hosts.example.test.".into(),
        Answer::Records(vec![
            RData::A(A(Ipv4Addr::new(10, 0, 0, 2))),
            RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
        ]),
    );
    zone.lock().insert(
        "v6.example.test.".into(),
        Answer::Records(vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))]),
    );
    let addr = nameserver(zone.clone()).await;
    let metrics = SelfMetrics::new();
    let sd = DnsSd::start(
        "job",
        &[
            config(&["_metrics._tcp.example.test"], DnsRecordType::Srv, 0),
            config(&["hosts.example.test"], DnsRecordType::A, 8080),
            config(&["v6.example.test"], DnsRecordType::Aaaa, 9090),
        ],
        Nameserver::Fixed(addr),
        metrics.clone(),
    );
    let mut last = Vec::new();
    until(&sd, &mut last, |g| g.len() == 5).await;
    assert_eq!(
        targets(&last),
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "[::1]:9090",
            "web-1.example.test:9100",
            "web-2.example.test:9200"
        ]
    );
    let web1 = last
        .iter()
        .find(|g| g.targets == ["web-1.example.test:9100"])
        .unwrap();
    assert_eq!(
        web1.labels,
        BTreeMap::from([
            (
                "__meta_dns_name".to_string(),
                "_metrics._tcp.example.test".to_string()
            ),
            (
                "__meta_dns_srv_record_target".to_string(),
                "web-1.example.test.".to_string()
            ),
            ("__meta_dns_srv_record_port".to_string(), "9100".to_string()),
        ])
    );
    let a = last
        .iter()
        .find(|g| g.targets == ["10.0.0.1:8080"])
        .unwrap();
    assert_eq!(a.labels.len(), 1, "{:?}", a.labels);
    assert_eq!(a.labels["__meta_dns_name"], "hosts.example.test");

    // A failing server keeps the name's last good targets, and the failures are counted.
    zone.lock().insert(
        "_metrics._tcp.example.test.".into(),
        Answer::Code(ResponseCode::ServFail),
    );
    let failures = || {
        metrics
            .sd_dns_lookup_failures
            .with(&[])
            .load(Ordering::Relaxed)
    };
    let start = Instant::now();
    while failures() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "no failure seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(g) = sd.poll() {
        last = g;
    }
    assert_eq!(last.len(), 5, "{last:#?}");
    assert!(metrics.sd_dns_lookups.with(&[]).load(Ordering::Relaxed) >= failures());

    // A name that no longer exists has no targets; the others stay.
    zone.lock().remove("_metrics._tcp.example.test.");
    until(&sd, &mut last, |g| g.len() == 3).await;
    assert_eq!(
        targets(&last),
        ["10.0.0.1:8080", "10.0.0.2:8080", "[::1]:9090"]
    );
}

#[tokio::test]
async fn an_unusable_nameserver_variable_fails_every_lookup() {
    let metrics = SelfMetrics::new();
    let sd = DnsSd::start(
        "job",
        &[config(&["a.test", "b.test"], DnsRecordType::Srv, 0)],
        Nameserver::parse("not-an-address"),
        metrics.clone(),
    );
    let start = Instant::now();
    while metrics
        .sd_dns_lookup_failures
        .with(&[])
        .load(Ordering::Relaxed)
        < 2
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no failure seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sd.poll().is_none());
}

#[test]
fn nameserver_variable_forms() {
    assert_eq!(
        Nameserver::parse("127.0.0.1:5353"),
        Nameserver::Fixed("127.0.0.1:5353".parse().unwrap())
    );
    assert_eq!(
        Nameserver::parse("[::1]:53"),
        Nameserver::Fixed("[::1]:53".parse().unwrap())
    );
    assert_eq!(
        Nameserver::parse("10.0.0.1"),
        Nameserver::Fixed("10.0.0.1:53".parse().unwrap())
    );
    match Nameserver::parse("dns.example:53") {
        Nameserver::Invalid(e) => assert!(e.contains(DNS_SERVER_ENV), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_of_other_types_give_no_target() {
    let cname = RData::CNAME(CNAME(Name::from_ascii("x.test.").unwrap()));
    assert!(record_group("n", &cname, 80).is_none());
    let g = record_group("n", &srv(1, "host.test."), 0).unwrap();
    assert_eq!(g.targets, ["host.test:1"]);
}
