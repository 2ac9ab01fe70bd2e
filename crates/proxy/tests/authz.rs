//! AuthorizationPolicy on a real inbound proxy (`Reporter::Destination`) in front of a
//! loopback backend: each field, Istio's evaluation order, Envoy's 403, the denial in
//! metrics and traces, and a bad reload that keeps the last good policies enforcing.
//! Peer identities (principals, namespaces) need mTLS, so those cases call the evaluation
//! directly with a `ConnInfo` carrying a principal.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use meshlens_proxy::authz::compile::{compile, Workload};
use meshlens_proxy::authz::{Attributes, Policies};
use meshlens_proxy::conn::{ConnInfo, Security};
use meshlens_proxy::{Reporter, TraceExport};

const DENIED: &str = "RBAC: access denied";

/// An AuthorizationPolicy in namespace `default` (the proxy's) with this `spec` body
/// (indented by two spaces).
fn policy(name: &str, spec: &str) -> String {
    format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}")
}

async fn inbound(b: &Backend, policies: &str) -> Harness {
    let yaml = format!("{}{policies}", service_entry("svc", &[(b, "v1")]));
    start_with(&yaml, |o| o.reporter = Reporter::Destination).await
}

/// Replaces the policies and reloads now.
fn set_policies(h: &Harness, b: &Backend, policies: &str) {
    h.write_config(&format!("{}{policies}", service_entry("svc", &[(b, "v1")])));
    assert!(h.proxy.reload_now(), "{:?}", h.proxy.config_status());
}

async fn status(h: &Harness, method: &str, host: &str, path: &str, hdrs: &[(&str, &str)]) -> u16 {
    h.send(method, host, path, hdrs, "").await.status
}

#[tokio::test]
async fn denied_requests_get_envoys_403_and_never_reach_the_backend() {
    let b = Backend::named("ok").await;
    let h = inbound(
        &b,
        &policy(
            "get-only",
            "  rules:\n  - to: [{operation: {methods: [GET]}}]\n",
        ),
    )
    .await;
    assert_eq!(h.get("svc", "/").await.status, 200);
    let before = b.count();
    let a = h.send("POST", "svc", "/", &[], "a body").await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body, DENIED);
    assert_eq!(a.headers["content-type"], "text/plain");
    assert_eq!(b.count(), before, "a denied request is not forwarded");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn methods_and_paths_exact_prefix_suffix() {
    let b = Backend::named("ok").await;
    let h = inbound(
        &b,
        &policy(
            "paths",
            "  rules:\n  - to:\n    - operation:\n        methods: [GET, HEAD]\n        paths: [/exact, /api/*, \"*.json\"]\n",
        ),
    )
    .await;
    for (m, p, want) in [
        ("GET", "/exact", 200),
        ("GET", "/exact?q=1", 200),
        ("GET", "/exact/", 403),
        ("GET", "/api/v1/x", 200),
        ("GET", "/apix", 403),
        ("GET", "/data/a.json", 200),
        ("GET", "/data/a.jsonx", 403),
        ("HEAD", "/exact", 200),
        ("POST", "/api/v1/x", 403),
        ("GET", "/other", 403),
        // Percent-decoded and dot segments refused, as Envoy's normalisation would judge.
        ("GET", "/ex%61ct", 200),
        ("GET", "/api/../secret", 403),
    ] {
        assert_eq!(status(&h, m, "svc", p, &[]).await, want, "{m} {p}");
    }

    set_policies(
        &h,
        &b,
        &policy(
            "not-paths",
            "  rules:\n  - to: [{operation: {notMethods: [DELETE], notPaths: [/admin*, \"*.secret\"]}}]\n",
        ),
    );
    for (m, p, want) in [
        ("GET", "/", 200),
        ("DELETE", "/", 403),
        ("GET", "/admin/users", 403),
        ("GET", "/keys.secret", 403),
        ("PUT", "/data", 200),
    ] {
        assert_eq!(status(&h, m, "svc", p, &[]).await, want, "{m} {p}");
    }
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn hosts_and_ports() {
    let b = Backend::named("ok").await;
    let h = inbound(
        &b,
        &policy(
            "hosts",
            "  rules:\n  - to: [{operation: {hosts: [svc, \"*.example.com\"], notHosts: [deny.example.com]}}]\n",
        ),
    )
    .await;
    assert_eq!(status(&h, "GET", "svc", "/", &[]).await, 200);
    assert_eq!(status(&h, "GET", "SVC:9080", "/", &[]).await, 200);
    // Allowed, then not routed: 404 shows the policy let it through.
    assert_eq!(status(&h, "GET", "api.example.com", "/", &[]).await, 404);
    assert_eq!(status(&h, "GET", "deny.example.com", "/", &[]).await, 403);
    assert_eq!(status(&h, "GET", "other", "/", &[]).await, 403);

    set_policies(
        &h,
        &b,
        &policy(
            "ports",
            "  rules:\n  - to: [{operation: {ports: [\"9080\", 9090]}}]\n",
        ),
    );
    assert_eq!(status(&h, "GET", "svc:9080", "/", &[]).await, 200);
    assert_eq!(status(&h, "GET", "svc:9090", "/", &[]).await, 200);
    assert_eq!(status(&h, "GET", "svc", "/", &[]).await, 403);

    set_policies(
        &h,
        &b,
        &policy(
            "not-ports",
            "  rules:\n  - to: [{operation: {notPorts: [\"8080\"]}}]\n",
        ),
    );
    assert_eq!(status(&h, "GET", "svc:8080", "/", &[]).await, 403);
    assert_eq!(status(&h, "GET", "svc", "/", &[]).await, 200);

    set_policies(
        &h,
        &b,
        &policy(
            "when-port",
            "  rules:\n  - when: [{key: destination.port, values: [\"9080\"]}]\n",
        ),
    );
    assert_eq!(status(&h, "GET", "svc:9080", "/", &[]).await, 200);
    assert_eq!(status(&h, "GET", "svc:9081", "/", &[]).await, 403);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn when_conditions_on_request_headers() {
    let b = Backend::named("ok").await;
    let h = inbound(
        &b,
        &policy(
            "token",
            "  rules:\n  - when:\n    - {key: \"request.headers[X-Token]\", values: [\"secret-*\"]}\n    - {key: \"request.headers[x-env]\", notValues: [prod]}\n",
        ),
    )
    .await;
    let get = |hdrs: &'static [(&'static str, &'static str)]| status(&h, "GET", "svc", "/", hdrs);
    assert_eq!(get(&[("x-token", "secret-1")]).await, 200);
    assert_eq!(get(&[("x-token", "secret-1"), ("x-env", "dev")]).await, 200);
    assert_eq!(
        get(&[("x-token", "secret-1"), ("x-env", "prod")]).await,
        403
    );
    assert_eq!(get(&[("x-token", "nope")]).await, 403);
    assert_eq!(get(&[]).await, 403);

    // A presence check: `*` is any non-empty value.
    set_policies(
        &h,
        &b,
        &policy(
            "present",
            "  action: DENY\n  rules:\n  - when: [{key: \"request.headers[x-debug]\", values: [\"*\"]}]\n",
        ),
    );
    assert_eq!(get(&[("x-debug", "1")]).await, 403);
    assert_eq!(get(&[]).await, 200);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn ip_blocks_of_the_peer() {
    let b = Backend::named("ok").await;
    let h = inbound(
        &b,
        &policy(
            "loopback",
            "  rules:\n  - from: [{source: {ipBlocks: [127.0.0.0/8]}}]\n",
        ),
    )
    .await;
    assert_eq!(h.get("svc", "/").await.status, 200);

    let cases = [
        ("ipBlocks: [10.0.0.0/8]", 403),
        ("notIpBlocks: [127.0.0.1]", 403),
        ("notIpBlocks: [10.0.0.0/8]", 200),
        ("remoteIpBlocks: [127.0.0.1/32]", 200),
        ("remoteIpBlocks: [10.0.0.0/8]", 403),
        ("notRemoteIpBlocks: [127.0.0.0/8]", 403),
    ];
    for (source, want) in cases {
        set_policies(
            &h,
            &b,
            &policy(
                "ip",
                &format!("  rules:\n  - from: [{{source: {{{source}}}}}]\n"),
            ),
        );
        assert_eq!(h.get("svc", "/").await.status, want, "{source}");
    }
    set_policies(
        &h,
        &b,
        &policy(
            "ip",
            "  rules:\n  - when: [{key: source.ip, values: [10.1.2.3, 127.0.0.0/8]}]\n",
        ),
    );
    assert_eq!(h.get("svc", "/").await.status, 200);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn evaluation_order() {
    let b = Backend::named("ok").await;
    // No policy: allowed.
    let h = inbound(&b, "").await;
    assert_eq!(h.get("svc", "/").await.status, 200);

    let allow_all = policy("allow-all", "  rules:\n  - {}\n");
    let deny_admin = policy(
        "deny-admin",
        "  action: DENY\n  rules:\n  - to: [{operation: {paths: [/admin*]}}]\n",
    );
    // DENY beats ALLOW.
    set_policies(&h, &b, &format!("{allow_all}{deny_admin}"));
    assert_eq!(h.get("svc", "/").await.status, 200);
    assert_eq!(h.get("svc", "/admin").await.status, 403);
    // Only DENY policies: what they do not match is allowed.
    set_policies(&h, &b, &deny_admin);
    assert_eq!(h.get("svc", "/").await.status, 200);
    assert_eq!(h.get("svc", "/admin/x").await.status, 403);
    // An ALLOW policy without rules allows nothing.
    set_policies(&h, &b, &policy("allow-nothing", "  {}\n"));
    assert_eq!(h.get("svc", "/").await.status, 403);
    // ALLOW policies that do not match deny; one that matches is enough.
    let allow_api = policy(
        "allow-api",
        "  rules:\n  - to: [{operation: {paths: [/api*]}}]\n",
    );
    let allow_ui = policy(
        "allow-ui",
        "  rules:\n  - to: [{operation: {paths: [/ui*]}}]\n",
    );
    set_policies(&h, &b, &format!("{allow_api}{allow_ui}"));
    assert_eq!(h.get("svc", "/api/a").await.status, 200);
    assert_eq!(h.get("svc", "/ui/a").await.status, 200);
    assert_eq!(h.get("svc", "/other").await.status, 403);
    // AUDIT never denies, alone or with an ALLOW.
    let audit = policy("audit-all", "  action: AUDIT\n  rules:\n  - {}\n");
    set_policies(&h, &b, &audit);
    assert_eq!(h.get("svc", "/").await.status, 200);
    set_policies(&h, &b, &format!("{audit}{allow_api}"));
    assert_eq!(h.get("svc", "/api").await.status, 200);
    assert_eq!(h.get("svc", "/x").await.status, 403);
    // A selector for other workloads, or a policy of another namespace: not ours.
    let other_workload = policy(
        "for-reviews",
        "  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules:\n  - {}\n",
    );
    let other_ns = "---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: bank}\nspec: {action: DENY, rules: [{}]}\n";
    set_policies(&h, &b, &format!("{other_workload}{other_ns}"));
    assert_eq!(h.get("svc", "/").await.status, 200);
    // Our own selector, and the root namespace's mesh-wide policy, are.
    let own = policy(
        "for-productpage",
        "  selector: {matchLabels: {app: productpage, version: v1}}\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [/a]}}]\n",
    );
    let mesh_wide = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: mesh, namespace: istio-system}\nspec: {action: DENY, rules: [{to: [{operation: {paths: [/b]}}]}]}\n";
    set_policies(&h, &b, &format!("{own}{mesh_wide}"));
    assert_eq!(h.get("svc", "/a").await.status, 403);
    assert_eq!(h.get("svc", "/b").await.status, 403);
    assert_eq!(h.get("svc", "/c").await.status, 200);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn denials_are_counted_and_traced() {
    let collector = Backend::start(|_| Reply::status(202)).await;
    let b = Backend::named("ok").await;
    let url = format!("http://{}", collector.addr);
    let yaml = format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        policy(
            "deny-admin",
            "  action: DENY\n  rules:\n  - to: [{operation: {paths: [/admin]}}]\n"
        )
    );
    let h = start_with(&yaml, |o| {
        o.reporter = Reporter::Destination;
        o.trace_export = Some(TraceExport::Zipkin(url));
        o.sampling_percent = 100.0;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("svc", "/admin").await.status, 403);
    }
    assert_eq!(h.get("svc", "/").await.status, 200);
    let labels = ["reporter=\"destination\"", "response_code=\"403\""];
    assert!(
        eventually(|| async {
            metric_value(&h.metrics().await, "istio_requests_total", &labels) == 3.0
        })
        .await,
        "{}",
        h.metrics().await
    );
    let denied_spans = || {
        collector
            .seen
            .lock()
            .iter()
            .flat_map(|s| serde_json::from_slice::<Vec<serde_json::Value>>(&s.body).unwrap())
            .filter(|s| s["tags"]["http.status_code"] == "403")
            .count()
    };
    assert!(eventually(|| async { denied_spans() == 3 }).await);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_bad_policy_reload_keeps_the_last_good_policies() {
    let b = Backend::named("ok").await;
    let good = policy(
        "deny-admin",
        "  action: DENY\n  rules:\n  - to: [{operation: {paths: [/admin]}}]\n",
    );
    let h = inbound(&b, &good).await;
    assert_eq!(h.get("svc", "/admin").await.status, 403);

    // A misspelt field: refused with file, line and reason, not read as an empty rule.
    let typo = policy(
        "deny-admin",
        "  action: DENY\n  rules:\n  - to: [{operation: {path: [/other]}}]\n",
    );
    h.write_config(&format!("{}{typo}", service_entry("svc", &[(&b, "v1")])));
    assert!(!h.proxy.reload_now());
    let st = h.proxy.config_status();
    assert!(!st.ok);
    let e = &st.errors[0];
    assert!(e.file.ends_with("mesh.yaml"), "{e:?}");
    assert!(e.reason.contains("unknown field `path`"), "{e:?}");
    let line = h.dir.path().join("mesh.yaml");
    let text = std::fs::read_to_string(line).unwrap();
    assert_eq!(
        text.lines().nth(e.line - 1).map(str::trim_start),
        Some("- to: [{operation: {path: [/other]}}]"),
        "{e:?}"
    );
    assert_eq!(h.get("svc", "/admin").await.status, 403);
    assert_eq!(h.get("svc", "/").await.status, 200);

    // CUSTOM cannot be enforced here: refused, the old policies keep enforcing.
    let custom = policy(
        "ext",
        "  action: CUSTOM\n  provider: {name: opa}\n  rules:\n  - {}\n",
    );
    h.write_config(&format!("{}{custom}", service_entry("svc", &[(&b, "v1")])));
    assert!(!h.proxy.reload_now());
    assert!(h.proxy.config_status().errors[0].reason.contains("CUSTOM"));
    assert_eq!(h.get("svc", "/admin").await.status, 403);
    assert!(h
        .metrics()
        .await
        .contains("meshlens_proxy_config_last_reload_successful 0"));
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn outbound_proxies_do_not_enforce() {
    let b = Backend::named("ok").await;
    let yaml = format!(
        "{}{}",
        service_entry("svc", &[(&b, "v1")]),
        policy("deny-all", "  action: DENY\n  rules:\n  - {}\n")
    );
    let h = start(&yaml).await;
    assert_eq!(h.get("svc", "/").await.status, 200);
    h.proxy.shutdown().await;
}

// ---------------------------------------------------------------- peer identities

fn policies(specs: &str) -> Policies {
    let cfg = meshlens_mesh::MeshConfig::parse_str(specs, "authz.yaml").unwrap();
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    compile(
        &cfg.authorization_policies,
        &Workload {
            root_namespace: "istio-system",
            namespace: "default",
            labels: &labels,
        },
    )
    .unwrap()
}

/// Whether `policies` let a GET / from `principal` (plaintext when `None`) through.
fn allows(p: &Policies, principal: Option<&str>) -> bool {
    let conn = ConnInfo {
        peer: "127.0.0.1:40000".parse().unwrap(),
        security: if principal.is_some() {
            Security::MutualTls
        } else {
            Security::None
        },
        principal: principal.map(Arc::from),
    };
    let headers = http::HeaderMap::new();
    let method = http::Method::GET;
    let a = Attributes::new(&conn, &method, "svc", "svc", 80, "/", &headers);
    p.check(&a).allowed
}

const WEB: Option<&str> = Some("spiffe://cluster.local/ns/shop/sa/web");
const BATCH: Option<&str> = Some("spiffe://cluster.local/ns/jobs/sa/batch");

#[test]
fn principals() {
    let only_web = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]\n",
    ));
    assert!(allows(&only_web, WEB));
    assert!(!allows(&only_web, BATCH));
    assert!(!allows(&only_web, None), "plaintext has no principal");

    let prefix = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/shop/*\"]}}]\n",
    ));
    assert!(allows(&prefix, WEB));
    assert!(!allows(&prefix, BATCH));

    // `*`: any authenticated peer.
    let any = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {principals: [\"*\"]}}]\n",
    ));
    assert!(allows(&any, BATCH));
    assert!(!allows(&any, None));

    let not = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {notPrincipals: [\"*/sa/batch\"]}}]\n",
    ));
    assert!(allows(&not, WEB));
    assert!(!allows(&not, BATCH));
    assert!(allows(&not, None));

    let when = policies(&policy(
        "p",
        "  rules:\n  - when: [{key: source.principal, values: [cluster.local/ns/jobs/sa/batch]}]\n",
    ));
    assert!(allows(&when, BATCH));
    assert!(!allows(&when, WEB));

    // `serviceAccounts`: the principal's NS/SA, whatever the trust domain.
    let sa = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {serviceAccounts: [shop/web]}}]\n",
    ));
    assert!(allows(&sa, WEB));
    assert!(!allows(&sa, BATCH));
    assert!(!allows(&sa, None));
    let not_sa = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {notServiceAccounts: [shop/web]}}]\n",
    ));
    assert!(!allows(&not_sa, WEB));
    assert!(allows(&not_sa, BATCH));
}

#[test]
fn namespaces() {
    let shop = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {namespaces: [shop]}}]\n",
    ));
    assert!(allows(&shop, WEB));
    assert!(!allows(&shop, BATCH));
    assert!(!allows(&shop, None));

    let deny_jobs = policies(&policy(
        "p",
        "  action: DENY\n  rules:\n  - from: [{source: {notNamespaces: [shop]}}]\n",
    ));
    assert!(allows(&deny_jobs, WEB));
    assert!(!allows(&deny_jobs, BATCH));
    assert!(!allows(&deny_jobs, None), "plaintext is in no namespace");

    let when = policies(&policy(
        "p",
        "  rules:\n  - when: [{key: source.namespace, notValues: [\"jo*\"]}]\n",
    ));
    assert!(allows(&when, WEB));
    assert!(!allows(&when, BATCH));
}

#[test]
fn request_principals_are_absent_so_jwt_requirements_fail_closed() {
    // Requiring a JWT identity allows nothing: meshlens authenticates no tokens.
    let require = policies(&policy(
        "p",
        "  rules:\n  - from: [{source: {requestPrincipals: [\"*\"]}}]\n",
    ));
    assert!(!allows(&require, WEB));
    // Istio's "deny requests without a JWT" denies every request.
    let deny_without = policies(&policy(
        "p",
        "  action: DENY\n  rules:\n  - from: [{source: {notRequestPrincipals: [\"*\"]}}]\n",
    ));
    assert!(!allows(&deny_without, WEB));
    let claims = policies(&policy(
        "p",
        "  rules:\n  - when: [{key: \"request.auth.claims[groups]\", values: [admin]}]\n",
    ));
    assert!(!allows(&claims, WEB));
}
