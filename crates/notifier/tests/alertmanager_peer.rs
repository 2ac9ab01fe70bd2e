//! Against Debian's real Alertmanager 0.25: what the notifier posts is what Alertmanager
//! shows (labels, annotations, times), resolved alerts leave its active list, and https with
//! a private CA, `server_name`, a client certificate and basic auth all work (and fail when
//! they should, counted as errors).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{alert, eventually, http_get, metric, Alertmanager};
use meshlens_model::time::{now_ms, parse_time};
use meshlens_model::Labels;
use meshlens_notifier::{
    Alert, AlertmanagerSet, AmAuth, AmSecret, AmTls, Notifier, NotifierOptions, RelabelFn,
};
use serde_json::Value;

fn plain_ready(port: u16) -> bool {
    http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
}

fn active_alerts(port: u16) -> Vec<Value> {
    let (status, body) = http_get(port, "/api/v2/alerts").expect("GET /api/v2/alerts");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON alerts")
}

fn find<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

fn time_ms(v: &Value) -> i64 {
    v.as_str().and_then(parse_time).expect("an RFC 3339 time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolved_alerts_round_trip_through_alertmanager() {
    let Some(bin) = common::alertmanager_bin() else {
        return;
    };
    let am = Alertmanager::start(&bin, None, plain_ready);
    let relabel: RelabelFn = Arc::new(|l: Labels| (l.get("drop") != Some("yes")).then_some(l));
    let n = Notifier::start(NotifierOptions {
        external_labels: Labels::from_pairs([("cluster", "eu-1"), ("service", "ignored")]),
        relabel: Some(relabel),
        ..Default::default()
    });
    n.set_alertmanagers(vec![AlertmanagerSet {
        addresses: vec![format!("127.0.0.1:{}", am.port)],
        ..Default::default()
    }]);
    let now = now_ms();
    let firing = Alert {
        labels: Labels::from_pairs([
            ("alertname", "HighErrorRate"),
            ("service", "reviews"),
            ("severity", "page"),
        ]),
        annotations: Labels::from_pairs([
            ("summary", "reviews fails 25% of requests"),
            ("description", "Error rate \"0.25\" over 5m.\nSee runbook."),
        ]),
        starts_at_ms: now - 120_123,
        ends_at_ms: Some(now + 3_600_000),
        generator_url: "http://meshlens:9090/graph?g0.expr=rate%28x%5B5m%5D%29".into(),
    };
    let open_ended = alert("NoEnd", &[]);
    let dropped = alert("Dropped", &[("drop", "yes")]);
    n.send(vec![firing.clone(), open_ended.clone(), dropped]);

    let mut shown = Vec::new();
    eventually("both alerts in Alertmanager", || {
        shown = active_alerts(am.port);
        shown.len() >= 2
    })
    .await;
    assert_eq!(shown.len(), 2, "{shown:#?}");
    let got = find(&shown, "HighErrorRate").expect("HighErrorRate shown");
    assert_eq!(
        got["labels"],
        serde_json::json!({"alertname": "HighErrorRate", "service": "reviews",
                           "severity": "page", "cluster": "eu-1"})
    );
    assert_eq!(
        got["annotations"],
        serde_json::json!({"summary": "reviews fails 25% of requests",
                           "description": "Error rate \"0.25\" over 5m.\nSee runbook."})
    );
    assert_eq!(time_ms(&got["startsAt"]), firing.starts_at_ms);
    assert_eq!(Some(time_ms(&got["endsAt"])), firing.ends_at_ms);
    assert_eq!(got["generatorURL"], firing.generator_url.as_str());
    assert_eq!(got["status"]["state"], "active");
    let no_end = find(&shown, "NoEnd").expect("NoEnd shown");
    assert_eq!(
        no_end["labels"]["service"], "ignored",
        "external label added"
    );
    // Without endsAt, Alertmanager ends it itself after its resolve_timeout (5m).
    assert!(time_ms(&no_end["endsAt"]) > now);

    // Resolving: the same labels with an end in the past.
    n.send(vec![Alert {
        ends_at_ms: Some(now_ms() - 1_000),
        ..firing
    }]);
    eventually("HighErrorRate to leave the active list", || {
        let shown = active_alerts(am.port);
        find(&shown, "HighErrorRate").is_none() && find(&shown, "NoEnd").is_some()
    })
    .await;
    let (_, am_metrics) = http_get(am.port, "/metrics").expect("GET /metrics");
    for line in [
        "alertmanager_alerts_received_total{status=\"firing\",version=\"v2\"} 2",
        "alertmanager_alerts_received_total{status=\"resolved\",version=\"v2\"} 1",
        "alertmanager_alerts_invalid_total{version=\"v2\"} 0",
    ] {
        assert!(
            am_metrics.lines().any(|l| l == line),
            "{line} in\n{am_metrics}"
        );
    }
    let url = format!("http://127.0.0.1:{}/api/v2/alerts", am.port);
    assert_eq!(
        metric(
            &n,
            &format!("prometheus_notifications_sent_total{{alertmanager=\"{url}\"}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &n,
            &format!("prometheus_notifications_errors_total{{alertmanager=\"{url}\"}}")
        ),
        Some(0.0)
    );
    n.stop().await;
}

struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

/// A CA, a server certificate for `alertmanager.test` only (so verifying it needs
/// `server_name`) and a client certificate, written under `dir`.
fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "notifier test CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf = |name: &str, usage| {
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        (
            p.signed_by(&key, &ca, &ca_key).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server, server_key) = leaf(
        "alertmanager.test",
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf("meshlens", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    write("server.pem", &server);
    write("server.key", &server_key);
    Pki {
        ca: write("ca.pem", &ca.pem()),
        client_cert: write("client.pem", &client),
        client_key: write("client.key", &client_key),
    }
}

/// curl's status and body for an authenticated, verified GET.
fn curl(pki: &Pki, port: u16, path: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args([
            "--cacert",
            &pki.ca,
            "--cert",
            &pki.client_cert,
            "--key",
            &pki.client_key,
        ])
        .args(["-u", "alice:s3cret", "--resolve"])
        .arg(format!("alertmanager.test:{port}:127.0.0.1"))
        .arg(format!("https://alertmanager.test:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_private_ca_client_certificate_and_basic_auth() {
    let Some(bin) = common::alertmanager_bin() else {
        return;
    };
    if !common::curl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n\
         basic_auth_users:\n  alice: '{hash}'\n",
        d = dir.path().display(),
        ca = pki.ca,
    );
    let am = Alertmanager::start(&bin, Some(&web), |port| {
        curl(&pki, port, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    let good = AlertmanagerSet {
        scheme: "https".into(),
        addresses: vec![format!("127.0.0.1:{}", am.port)],
        auth: AmAuth::Basic {
            username: "alice".into(),
            password: AmSecret::Inline("s3cret".into()),
        },
        tls: AmTls {
            ca_file: Some(pki.ca.clone().into()),
            cert_file: Some(pki.client_cert.clone().into()),
            key_file: Some(pki.client_key.clone().into()),
            server_name: Some("alertmanager.test".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let url = format!("https://127.0.0.1:{}/api/v2/alerts", am.port);
    let errors = format!("prometheus_notifications_errors_total{{alertmanager=\"{url}\"}}");

    let n = Notifier::start(NotifierOptions::default());
    n.set_alertmanagers(vec![good.clone()]);
    n.send(vec![alert("OverTls", &[("service", "ratings")])]);
    eventually("the alert readable over https", || {
        curl(&pki, am.port, "/api/v2/alerts").is_some_and(|(s, body)| {
            s == 200 && body.contains("\"alertname\":\"OverTls\"") && body.contains("ratings")
        })
    })
    .await;
    assert_eq!(metric(&n, &errors), Some(0.0));
    n.stop().await;

    // Each wrong or missing piece makes the request fail, counted, and the batch dropped.
    let wrong_password = AlertmanagerSet {
        auth: AmAuth::Basic {
            username: "alice".into(),
            password: AmSecret::Inline("guess".into()),
        },
        ..good.clone()
    };
    let no_client_cert = AlertmanagerSet {
        tls: AmTls {
            cert_file: None,
            key_file: None,
            ..good.tls.clone()
        },
        ..good.clone()
    };
    let wrong_name = AlertmanagerSet {
        tls: AmTls {
            server_name: None,
            ..good.tls.clone()
        },
        ..good.clone()
    };
    let system_roots = AlertmanagerSet {
        tls: AmTls {
            ca_file: None,
            ..good.tls.clone()
        },
        ..good.clone()
    };
    for (what, set) in [
        ("wrong password", wrong_password),
        ("no client certificate", no_client_cert),
        ("name not in the certificate", wrong_name),
        ("CA not trusted", system_roots),
    ] {
        let n = Notifier::start(NotifierOptions::default());
        n.set_alertmanagers(vec![set]);
        n.send(vec![alert(&format!("Refused {what}"), &[])]);
        eventually(what, || {
            metric(&n, &errors) == Some(1.0)
                && metric(&n, "prometheus_notifications_dropped_total") == Some(1.0)
        })
        .await;
        n.stop().await;
    }
    let (_, body) = curl(&pki, am.port, "/api/v2/alerts").expect("GET alerts");
    assert!(!body.contains("Refused"), "{body}");
}
