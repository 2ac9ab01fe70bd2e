//! Config changes apply without a restart; a bad change is rejected and the old config serves.

mod common;

use common::*;

fn mesh(a: &Backend, b: &Backend, subset: &str, extra: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc}}\nspec:\n  host: svc\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc}}\nspec:\n  hosts: [svc]\n  http:\n{extra}  - route: [{{destination: {{host: svc, subset: {subset}}}}}]\n",
        service_entry("svc", &[(a, "v1"), (b, "v2")])
    )
}

#[tokio::test]
async fn changed_config_applies_and_bad_config_is_rejected() {
    let (a, b) = (Backend::named("v1").await, Backend::named("v2").await);
    let h = start(&mesh(&a, &b, "v1", "")).await;
    assert_eq!(h.get("svc", "/").await.body, "v1");

    h.write_config(&mesh(&a, &b, "v2", ""));
    assert!(eventually(|| async { h.get("svc", "/").await.body == "v2" }).await);

    // An invalid regex: rejected with file and line, v2 keeps serving.
    let bad = mesh(&a, &b, "v1", "  - match: [{uri: {regex: \"([\"}}]\n    route: [{destination: {host: svc, subset: v1}}]\n");
    h.write_config(&bad);
    assert!(
        eventually(|| async {
            h.metrics()
                .await
                .contains("meshlens_proxy_config_last_reload_successful 0")
        })
        .await
    );
    assert_eq!(h.get("svc", "/").await.body, "v2");
    let status: serde_json::Value = serde_json::from_str(&h.admin_get("/config").await).unwrap();
    assert_eq!(status["ok"], false);
    let err = &status["errors"][0];
    assert!(err["file"].as_str().unwrap().ends_with("mesh.yaml"));
    assert_eq!(err["line"], 29, "the VirtualService's line: {status}");
    assert!(
        err["reason"].as_str().unwrap().contains("uri.regex"),
        "{status}"
    );
    assert!(h
        .metrics()
        .await
        .contains("meshlens_proxy_config_reloads_total{result=\"failure\"} 1"));

    // A YAML syntax error points at its own line.
    h.write_config(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: [x\n",
    );
    assert!(
        eventually(|| async {
            let s: serde_json::Value = serde_json::from_str(&h.admin_get("/config").await).unwrap();
            s["errors"][0]["line"].as_u64().is_some_and(|l| l >= 3)
        })
        .await
    );
    assert_eq!(h.get("svc", "/").await.body, "v2");

    // Fixed: served again.
    h.write_config(&mesh(&a, &b, "v1", ""));
    assert!(eventually(|| async { h.get("svc", "/").await.body == "v1" }).await);
    assert!(h
        .metrics()
        .await
        .contains("meshlens_proxy_config_last_reload_successful 1"));
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn invalid_config_at_start_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [x]\n  http:\n  - timeout: fast\n    route: [{destination: {host: x}}]\n",
    )
    .unwrap();
    let opts = meshlens_proxy::ProxyOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    let err = meshlens_proxy::Proxy::start(opts)
        .await
        .err()
        .expect("rejected");
    let text = err.to_string();
    assert!(text.contains("vs.yaml:7:"), "{text}");
}
