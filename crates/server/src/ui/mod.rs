//! The web UI: plain HTML, CSS and JavaScript modules embedded in the binary (being built).

use axum::Router;

pub fn router() -> Router {
    Router::new()
}
