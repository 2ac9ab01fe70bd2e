//! The `probes:` config: defaults, and every bad input refused with its path.

use std::time::Duration;

use meshlens_probe::{parse_probes, parse_probes_file, ProbeConfigError, ProbeModule};

fn err(yaml: &str) -> String {
    match parse_probes_file(yaml, "probes.yml") {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn full_example_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let file = dir.path().join("probes.yml");
    let yaml = r#"
probes:
  - name: shop-home
    module: http
    targets: ["https://127.0.0.1:8443/health", "example.org"]
    interval: 15s
    timeout: 2s
    labels: {team: web}
    http:
      method: HEAD
      headers: {X-Probe: "1", Host: shop.example}
      valid_status_codes: [200, 204]
      fail_if_body_matches_regexp: ["error"]
      fail_if_body_not_matches_regexp: []
      fail_if_ssl: false
      fail_if_not_ssl: true
      no_follow_redirects: true
      tls_config: {insecure_skip_verify: false, ca_file: ca.pem, server_name: shop.example}
  - name: db
    module: tcp
    targets: ["db:5432"]
  - name: certs
    module: tls
    targets: ["[::1]:443"]
    tls: {insecure_skip_verify: true}
"#;
    let probes = parse_probes_file(yaml, &file.display().to_string()).unwrap();
    assert_eq!(probes.len(), 3);
    let p = &probes[0];
    assert_eq!(p.interval, Duration::from_secs(15));
    assert_eq!(p.timeout, Duration::from_secs(2));
    assert_eq!(p.labels.get("team").map(String::as_str), Some("web"));
    let ProbeModule::Http(h) = &p.module else {
        panic!("not http: {:?}", p.module)
    };
    assert_eq!(h.method, http::Method::HEAD);
    assert_eq!(h.valid_status_codes, vec![200, 204]);
    assert!(h.fail_if_not_ssl && h.no_follow_redirects && !h.fail_if_ssl);
    // Relative CA files are read from the config file's directory.
    assert_eq!(
        h.tls_config.ca_file.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    assert_eq!(h.tls_config.server_name.as_deref(), Some("shop.example"));

    let db = &probes[1];
    assert_eq!(db.interval, Duration::from_secs(30));
    assert_eq!(db.timeout, Duration::from_secs(5));
    assert!(matches!(&db.module, ProbeModule::Tcp(t) if !t.tls));
    assert!(matches!(&probes[2].module, ProbeModule::Tls(t) if t.insecure_skip_verify));
}

#[test]
fn empty_and_null_mean_no_probes() {
    assert!(parse_probes_file("", "f").unwrap().is_empty());
    assert!(parse_probes_file("probes:\n", "f").unwrap().is_empty());
    assert!(parse_probes(&serde_yaml_ng::Value::Null, "f")
        .unwrap()
        .is_empty());
}

#[test]
fn unknown_fields_name_their_path() {
    let cases = [
        ("probez: []", "probes.yml: probez: unknown field"),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], bogus: 1}]",
            "probes.yml: probes[0].bogus: unknown field",
        ),
        (
            "probes: [{name: a, module: http, targets: [h], http: {tls_config: {ca: x}}}]",
            "probes.yml: probes[0].http.tls_config.ca: unknown field",
        ),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], tcp: {tls: true, x: 1}}]",
            "probes.yml: probes[0].tcp.x: unknown field",
        ),
    ];
    for (yaml, want) in cases {
        let e = match parse_probes_file(yaml, "probes.yml") {
            Err(e @ ProbeConfigError::UnknownField { .. }) => e.to_string(),
            other => panic!("{yaml}: {other:?}"),
        };
        assert_eq!(e, want);
    }
}

#[test]
fn bad_values_name_their_path() {
    let cases = [
        ("probes: [{module: tcp, targets: ['h:1']}]", "probes[0].name: is required"),
        ("probes: [{name: a, targets: ['h:1']}]", "probes[0].module: is required"),
        ("probes: [{name: a, module: icmp, targets: [h]}]", "probes[0].module: unknown module"),
        ("probes: [{name: a, module: tcp}]", "probes[0].targets: needs at least one"),
        ("probes: [{name: a, module: tcp, targets: [h]}]", "probes[0].targets[0]: target \"h\""),
        ("probes: [{name: a, module: http, targets: ['http:// x']}]", "probes[0].targets[0]"),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], interval: 5s, timeout: 6s}]",
            "probes[0].timeout: must be positive and at most the interval",
        ),
        ("probes: [{name: a, module: tcp, targets: ['h:1'], interval: 5}]", "probes[0].interval: must be a string"),
        ("probes: [{name: a, module: tcp, targets: ['h:1'], interval: 5x}]", "probes[0].interval: not a valid duration"),
        (
            "probes: [{name: a, module: http, targets: [h], http: {fail_if_body_matches_regexp: ['(']}}]",
            "probes[0].http.fail_if_body_matches_regexp[0]:",
        ),
        (
            "probes: [{name: a, module: http, targets: [h], http: {valid_status_codes: [99]}}]",
            "probes[0].http.valid_status_codes[0]: not a status code",
        ),
        (
            "probes: [{name: a, module: http, targets: [h], http: {method: 'G T'}}]",
            "probes[0].http.method: not an HTTP method",
        ),
        (
            "probes: [{name: a, module: http, targets: [h], http: {headers: {'a b': x}}}]",
            "probes[0].http.headers.a b: not a valid header",
        ),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], http: {}}]",
            "probes[0].http: not used by module tcp",
        ),
        (
            "probes: [{name: a, module: tls, targets: ['h:1'], tls: {ca_file: /nonexistent/ca.pem}}]",
            "probes[0].tls.ca_file: reading CA file /nonexistent/ca.pem",
        ),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], labels: {job: x}}]",
            "probes[0].labels.job: not a usable label name",
        ),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1'], labels: {'1x': y}}]",
            "probes[0].labels.1x: not a usable label name",
        ),
        (
            "probes: [{name: a, module: tcp, targets: ['h:1']}, {name: a, module: tcp, targets: ['h:2']}]",
            "probes[1].name: duplicate probe name",
        ),
        ("probes: {name: a}", "probes: must be a list"),
        ("probes: [{name: a, module: tcp, targets: ['h:1'], tcp: {tls: yes please}}]", "probes[0].tcp.tls: must be true or false"),
    ];
    for (yaml, want) in cases {
        let e = err(yaml);
        assert!(e.contains(want), "{yaml}\n  got:  {e}\n  want: {want}");
    }
    assert!(err("probes: [").starts_with("probes.yml: "));
}
