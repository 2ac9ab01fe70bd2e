//! An ingress proxy (`--gateway`): it serves the VirtualServices bound to its Gateway, for the
//! hosts the Gateway's servers expose, and nothing a sidecar would serve.

mod common;

use common::*;

const GATEWAY: &str = "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: public, namespace: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"shop.example.com\", \"edge/admin.example.com\"]\n---\n";

fn config(shop: &Backend, inner: &Backend) -> String {
    format!(
        "{GATEWAY}{}{}{}",
        service_entry("shop", &[(shop, "v1")]),
        service_entry("inner", &[(inner, "v1")]),
        r#"apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: shop-ingress, namespace: edge}
spec:
  hosts: ["shop.example.com"]
  gateways: [public]
  http:
  - match: [{uri: {prefix: /api}, gateways: [edge/public]}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /api}, gateways: [mesh]}]
    route: [{destination: {host: inner.default.svc.cluster.local}}]
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: not-exposed, namespace: edge}
spec:
  hosts: ["other.example.com"]
  gateways: [edge/public]
  http:
  - route: [{destination: {host: inner.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: mesh-only, namespace: edge}
spec:
  hosts: ["shop.example.com"]
  http:
  - route: [{destination: {host: inner.default.svc.cluster.local}}]
"#
    )
}

#[tokio::test]
async fn gateway_serves_only_routes_bound_to_it() {
    let shop = Backend::named("shop").await;
    let inner = Backend::named("inner").await;
    let yaml = config(&shop, &inner);
    let gw = start_with(&yaml, |o| o.gateway = Some("edge/public".into())).await;
    let r = gw.get("shop.example.com", "/api/cart").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "shop"),
        "match bound to the gateway"
    );
    let r = gw.get("shop.example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "shop"));
    assert_eq!(
        gw.get("other.example.com", "/").await.status,
        404,
        "the Gateway has no server for this host"
    );
    assert_eq!(
        gw.get("inner", "/").await.status,
        404,
        "a gateway has no default routes to mesh services"
    );

    // The same directory on a sidecar: only the mesh-bound VirtualService and the
    // default routes apply.
    let sidecar = start(&yaml).await;
    assert_eq!(
        sidecar.get("shop.example.com", "/api/x").await.body,
        "inner"
    );
    assert_eq!(sidecar.get("inner", "/").await.body, "inner");
}

#[tokio::test]
async fn unknown_gateway_is_refused_with_its_name() {
    let shop = Backend::named("shop").await;
    let inner = Backend::named("inner").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), config(&shop, &inner)).unwrap();
    let mut o = meshlens_proxy::ProxyOptions::new(
        dir.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    o.gateway = Some("edge/private".into());
    let err = match meshlens_proxy::Proxy::start(o).await {
        Ok(_) => panic!("a proxy for a missing Gateway started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("edge/private"), "{err}");
}

#[tokio::test]
async fn gateway_enforces_authorization_policies() {
    let shop = Backend::named("shop").await;
    let inner = Backend::named("inner").await;
    let deny = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin*\"]}}]\n";
    let yaml = format!("{}{deny}", config(&shop, &inner));
    let gw = start_with(&yaml, |o| o.gateway = Some("edge/public".into())).await;
    let r = gw.get("shop.example.com", "/admin/users").await;
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(gw.get("shop.example.com", "/api/x").await.status, 200);
}
