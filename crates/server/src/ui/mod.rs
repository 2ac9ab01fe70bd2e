//! The web UI: plain HTML, CSS and JavaScript modules embedded in the binary.
//!
//! No build step and no third-party code: the files under `assets/` are served as written.
//! `/` is the single page (views are chosen by the URL's hash, so no SPA fallback is needed)
//! and `/ui/<path>` serves the other assets with their content type. Assets are tagged with
//! a short, revalidated cache lifetime and an ETag of the binary's build, so a new binary's
//! UI is picked up on the next load.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file: path under `/ui/`, content type, body.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_str!(concat!("assets/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/health.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/graph-data.js", JS),
    asset!("js/graph-layout.js", JS),
    asset!("js/alert-match.js", JS),
    asset!("js/alert-ui.js", JS),
    asset!("js/clusters.js", JS),
    asset!("js/storage.js", JS),
    asset!("js/state/url.js", JS),
    asset!("js/state/tenant.js", JS),
    asset!("js/views/overview.js", JS),
    asset!("js/views/topology.js", JS),
    asset!("js/views/panel.js", JS),
    asset!("js/views/traces.js", JS),
    asset!("js/views/metrics.js", JS),
    asset!("js/views/stats.js", JS),
    asset!("js/views/config.js", JS),
    asset!("js/views/alerts.js", JS),
    asset!("js/views/alert-rules.js", JS),
    asset!("js/views/alert-slos.js", JS),
    asset!("js/yaml.js", JS),
    asset!("js/anomalies.js", JS),
    asset!("js/wizards.js", JS),
    asset!("js/views/events.js", JS),
    asset!("js/views/verify.js", JS),
    asset!("js/views/config-objects.js", JS),
];

/// Changes with every build of the assets: their total length and a cheap hash.
fn etag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        // FNV-1a over every asset: stable, dependency-free, good enough for a cache tag.
        let mut h = meshlens_model::hash::Fnv1a::new();
        for a in ASSETS {
            h.update(a.path.as_bytes());
            h.update(a.body.as_bytes());
        }
        format!("\"{:016x}\"", h.finish())
    })
}

pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
        .route("/favicon.ico", get(favicon))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("favicon.svg", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI asset {path:?}\n"),
        )
            .into_response();
    };
    let tag = etag();
    let cache = [
        (header::ETAG, HeaderValue::from_static(tag)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60, must-revalidate"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        )],
        a.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_import_is_embedded() {
        // A relative import of a file that is not in ASSETS would 404 in the browser.
        let re = regex::Regex::new(r#"(?m)^\s*import\b[^'"]*['"](\.{1,2}/[^'"]+)['"]"#).unwrap();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for cap in re.captures_iter(a.body) {
                let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in cap[1].split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|b| b.path == target),
                    "{} imports {} which is not embedded",
                    a.path,
                    &cap[1]
                );
            }
        }
    }

    #[test]
    fn only_the_api_module_fetches() {
        // js/api.js adds the tenant header and maps errors; a fetch elsewhere would skip both.
        let call =
            regex::Regex::new(r"\b(fetch|XMLHttpRequest|EventSource|sendBeacon)\s*\(").unwrap();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let n = call.find_iter(a.body).count();
            let want = usize::from(a.path == "js/api.js");
            assert_eq!(n, want, "{} makes {n} direct requests", a.path);
        }
    }

    #[test]
    fn content_types_and_missing_assets() {
        let h = HeaderMap::new();
        let r = serve("js/app.js", &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        assert!(r.headers().contains_key(header::CACHE_CONTROL));
        assert_eq!(serve("nope.js", &h).status(), StatusCode::NOT_FOUND);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(etag()));
        assert_eq!(serve("style.css", &h).status(), StatusCode::NOT_MODIFIED);
    }
}
