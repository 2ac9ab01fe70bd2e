//! `--web.config.file` against a real server process: TLS with and without client
//! certificates, basic auth on every listener (main, OTLP/HTTP, OTLP/gRPC), response headers,
//! a changed file applied without a restart, secrets redacted, and Debian's Prometheus
//! remote-writing through basic auth and mutual TLS. `curl` is the client throughout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{curl, poll, require_binary, spawn_server, KillOnDrop, BIN};

/// A CA, a server certificate for 127.0.0.1, a client certificate from the CA and one from a
/// stranger's CA, written as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn make_leaf(
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> (String, String) {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let (ca, ca_key) = make_ca("meshlens");
    let (stranger_ca, stranger_ca_key) = make_ca("stranger");
    let (sc, sk) = make_leaf(
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
        &ca_key,
    );
    let (cc, ck) = make_leaf(
        &["client"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &ca,
        &ca_key,
    );
    let (xc, xk) = make_leaf(
        &["stranger"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &stranger_ca,
        &stranger_ca_key,
    );
    let w = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", &ca.pem()),
        server_cert: w("server.pem", &sc),
        server_key: w("server-key.pem", &sk),
        client_cert: w("client.pem", &cc),
        client_key: w("client-key.pem", &ck),
        stranger_cert: w("stranger.pem", &xc),
        stranger_key: w("stranger-key.pem", &xk),
    }
}

/// A running `meshlens server` and the addresses it printed.
struct Hub {
    _child: KillOnDrop,
    main: String,
    otlp_http: Option<String>,
    otlp_grpc: Option<String>,
}

/// Starts a server in `dir/data` that reads its web config from `web`.
fn start_hub(dir: &Path, web: &Path, extra: &[&str]) -> Hub {
    let mut args = vec!["--web.config.file", web.to_str().unwrap()];
    args.extend(extra);
    let (child, printed) = spawn_server(&dir.join("data"), &args);
    Hub {
        _child: KillOnDrop(child),
        main: printed.main,
        otlp_http: printed.otlp_http,
        otlp_grpc: printed.otlp_grpc,
    }
}

/// A temp dir with a fresh [`Pki`] and `web.yml` holding what `web` makes of it.
fn setup(web: impl FnOnce(&Pki) -> String) -> (tempfile::TempDir, Pki, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let file = dir.path().join("web.yml");
    std::fs::write(&file, web(&p)).unwrap();
    (dir, p, file)
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn web_config(p: &Pki, client_auth: &str, users: &[(&str, &str)]) -> String {
    let mut s = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: {client_auth}\n  client_ca_file: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n",
        p.server_cert.display(),
        p.server_key.display(),
        p.ca.display()
    );
    for (u, pw) in users {
        s.push_str(&format!("  {u}: {}\n", bcrypt_hash(pw)));
    }
    s
}

#[test]
fn mutual_tls_and_basic_auth_guard_every_listener_and_reload_without_restart() {
    if !require_binary("curl") {
        return;
    }
    let (dir, p, web) =
        setup(|p| web_config(p, "RequireAndVerifyClientCert", &[("alice", "wonderland")]));
    let hub = start_hub(
        dir.path(),
        &web,
        &[
            "--otlp-http-listen",
            "127.0.0.1:0",
            "--otlp-grpc-listen",
            "127.0.0.1:0",
        ],
    );
    let ca = p.ca.to_str().unwrap();
    let (cert, key) = (
        p.client_cert.to_str().unwrap(),
        p.client_key.to_str().unwrap(),
    );
    let main = |path: &str| format!("https://{}{path}", hub.main);

    // Readiness through TLS, client certificate and credentials.
    poll(Duration::from_secs(60), || {
        let s = curl(&[
            "--cacert",
            ca,
            "--cert",
            cert,
            "--key",
            key,
            "-u",
            "alice:wonderland",
            &main("/-/ready"),
        ]);
        (s.status == 200).then_some(())
    });

    // Plain HTTP to a TLS listener gets no answer.
    let plain = curl(&[&format!("http://{}/-/ready", hub.main)]);
    assert_ne!(plain.status, 200, "plain HTTP answered: {}", plain.head);

    // No client certificate, and one from another CA: the handshake fails.
    let no_cert = curl(&["--cacert", ca, "-u", "alice:wonderland", &main("/-/ready")]);
    assert_eq!(no_cert.status, 0, "answered without a client certificate");
    assert_ne!(no_cert.exit, 0);
    let stranger = curl(&[
        "--cacert",
        ca,
        "--cert",
        p.stranger_cert.to_str().unwrap(),
        "--key",
        p.stranger_key.to_str().unwrap(),
        "-u",
        "alice:wonderland",
        &main("/-/ready"),
    ]);
    assert_eq!(stranger.status, 0, "answered a certificate from another CA");

    // Basic auth: missing and wrong credentials are 401 with a challenge; right ones pass.
    let tls = ["--cacert", ca, "--cert", cert, "--key", key];
    let q = main("/api/v1/query?query=1%2B1");
    let none = curl(&[&tls[..], &[q.as_str()]].concat());
    assert_eq!(none.status, 401, "{}", none.head);
    assert!(
        none.head
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{}",
        none.head
    );
    let wrong = curl(&[&tls[..], &["-u", "alice:queen", q.as_str()]].concat());
    assert_eq!(wrong.status, 401);
    let right = curl(&[&tls[..], &["-u", "alice:wonderland", q.as_str()]].concat());
    assert_eq!(right.status, 200, "{}", right.body);
    assert!(right.body.contains("\"2\""), "{}", right.body);
    assert!(
        right
            .head
            .to_ascii_lowercase()
            .contains("x-frame-options: deny"),
        "configured header missing: {}",
        right.head
    );
    // HTTP/2 over TLS as well.
    let h2 = curl(&[&tls[..], &["--http2", "-u", "alice:wonderland", q.as_str()]].concat());
    assert_eq!(h2.status, 200);
    assert!(h2.head.starts_with("HTTP/2"), "{}", h2.head);

    // OTLP/HTTP listener.
    let otlp = format!("https://{}/v1/traces", hub.otlp_http.as_ref().unwrap());
    let body = r#"{"resourceSpans":[]}"#;
    let post = |creds: Option<&str>| {
        let mut a: Vec<&str> = tls.to_vec();
        if let Some(c) = creds {
            a.extend(["-u", c]);
        }
        a.extend([
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            &otlp,
        ]);
        curl(&a)
    };
    assert_eq!(post(None).status, 401);
    assert_eq!(post(Some("alice:wonderland")).status, 200);

    // OTLP/gRPC listener: an empty Export call, with credentials in the metadata.
    let grpc = format!(
        "https://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        hub.otlp_grpc.as_ref().unwrap()
    );
    let frame = dir.path().join("frame.bin");
    std::fs::write(&frame, [0u8, 0, 0, 0, 0]).unwrap();
    let data = format!("@{}", frame.display());
    let call = |creds: Option<&str>| {
        let mut a: Vec<&str> = tls.to_vec();
        a.extend([
            "--http2",
            "-H",
            "Content-Type: application/grpc",
            "-H",
            "TE: trailers",
        ]);
        if let Some(c) = creds {
            a.extend(["-u", c]);
        }
        a.extend(["--data-binary", &data, &grpc]);
        curl(&a)
    };
    let denied = call(None);
    assert_eq!(denied.status, 401, "{}", denied.head);
    let ok = call(Some("alice:wonderland"));
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert!(
        ok.head.contains("grpc-status: 0") || ok.body.contains("grpc-status: 0"),
        "{}{}",
        ok.head,
        ok.body
    );

    // A changed file applies to new connections without a restart: a second user.
    std::fs::write(
        &web,
        web_config(
            &p,
            "RequireAndVerifyClientCert",
            &[("alice", "wonderland"), ("bob", "builder")],
        ),
    )
    .unwrap();
    poll(Duration::from_secs(30), || {
        let s = curl(&[&tls[..], &["-u", "bob:builder", q.as_str()]].concat());
        (s.status == 200).then_some(())
    });
    // A broken file keeps the last good configuration.
    std::fs::write(&web, "tls_server_config: [not a map\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let still = curl(&[&tls[..], &["-u", "bob:builder", q.as_str()]].concat());
    assert_eq!(
        still.status, 200,
        "a broken web config replaced the good one"
    );

    // The server's own counters saw the refusals.
    let m = curl(&[&tls[..], &["-u", "alice:wonderland", &main("/metrics")]].concat());
    assert!(m.body.contains("meshlens_http_"), "{}", m.body);
}

#[test]
fn tls_without_client_certificates_and_redacted_secrets() {
    if !require_binary("curl") {
        return;
    }
    let (dir, p, web) = setup(|p| {
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            p.server_cert.display(),
            p.server_key.display()
        )
    });
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        concat!(
            "scrape_configs:\n",
            "  - job_name: basic\n",
            "    basic_auth: {username: u, password: hunter2-basic}\n",
            "    static_configs: [{targets: ['127.0.0.1:1']}]\n",
            "  - job_name: bearer\n",
            "    bearer_token: hunter2-bearer\n",
            "    static_configs: [{targets: ['127.0.0.1:1']}]\n",
            "  - job_name: authz\n",
            "    authorization: {type: Bearer, credentials: hunter2-credentials}\n",
            "    static_configs: [{targets: ['127.0.0.1:1']}]\n",
        ),
    )
    .unwrap();
    let hub = start_hub(
        dir.path(),
        &web,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--otlp-grpc-listen",
            "off",
        ],
    );
    let ca = p.ca.to_str().unwrap();
    let url = format!("https://{}/api/v1/status/config", hub.main);
    let seen = poll(Duration::from_secs(60), || {
        let s = curl(&["--cacert", ca, &url]);
        (s.status == 200).then_some(s)
    });
    for secret in ["hunter2-basic", "hunter2-bearer", "hunter2-credentials"] {
        assert!(
            !seen.body.contains(secret),
            "{secret} leaked: {}",
            seen.body
        );
    }
    assert!(seen.body.matches("<secret>").count() >= 3, "{}", seen.body);
    // Without the CA the client refuses the server: the certificate is the one configured.
    assert_eq!(curl(&[&url]).status, 0);
}

#[test]
fn prometheus_remote_writes_through_basic_auth_and_mutual_tls() {
    if !require_binary("curl") || !require_binary("prometheus") {
        return;
    }
    let (dir, p, web) =
        setup(|p| web_config(p, "RequireAndVerifyClientCert", &[("prom", "s3cret")]));
    let hub = start_hub(dir.path(), &web, &["--otlp-grpc-listen", "off"]);
    let port = common::free_port();
    let prom_cfg = format!(
        concat!(
            "global:\n  scrape_interval: 1s\n",
            "scrape_configs:\n",
            "  - job_name: prometheus\n",
            "    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            "remote_write:\n",
            "  - url: https://{main}/api/v1/write\n",
            "    basic_auth: {{username: prom, password: s3cret}}\n",
            "    tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}\n",
            "    queue_config: {{batch_send_deadline: 1s}}\n",
        ),
        port = port,
        main = hub.main,
        ca = p.ca.display(),
        cert = p.client_cert.display(),
        key = p.client_key.display()
    );
    let _prom = common::start_prometheus_on(port, &prom_cfg, &dir.path().join("prom"));
    let tls = [
        "--cacert",
        p.ca.to_str().unwrap(),
        "--cert",
        p.client_cert.to_str().unwrap(),
        "--key",
        p.client_key.to_str().unwrap(),
        "-u",
        "prom:s3cret",
    ];
    let url = format!(
        "https://{}/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D",
        hub.main
    );
    poll(Duration::from_secs(120), || {
        let s = curl(&[&tls[..], &[url.as_str()]].concat());
        (s.status == 200 && s.body.contains("\"job\":\"prometheus\"")).then_some(())
    });
}

#[test]
fn proxy_admin_listener_takes_the_same_web_config() {
    if !require_binary("curl") {
        return;
    }
    let (dir, p, web) = setup(|p| {
        web_config(p, "NoClientCert", &[("ops", "pager")])
            .replace(&format!("  client_ca_file: {}\n", p.ca.display()), "")
    });
    let mesh = dir.path().join("mesh");
    std::fs::create_dir_all(&mesh).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--mesh",
        ])
        .arg(&mesh)
        .arg("--web.config.file")
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshlens proxy");
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line = lines
            .next()
            .expect("proxy exited before printing its address")
            .unwrap();
        if let Some(a) = line.split(", admin on ").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _proxy = KillOnDrop(child);
    let url = format!("https://{admin}/stats/prometheus");
    let ca = p.ca.to_str().unwrap();
    let denied = poll(Duration::from_secs(30), || {
        let s = curl(&["--cacert", ca, &url]);
        (s.status != 0).then_some(s)
    });
    assert_eq!(denied.status, 401, "{}", denied.head);
    let ok = curl(&["--cacert", ca, "-u", "ops:pager", &url]);
    assert_eq!(ok.status, 200, "{}", ok.head);
}
