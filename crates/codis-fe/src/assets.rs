//! The UI: plain HTML, CSS and JavaScript (no framework, no build step) embedded in
//! the binary with `include_str!`, or read from `--assets-dir` while developing it.

use std::path::Path;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
];

/// Serves `path` (`/` is `index.html`).
pub async fn serve(dir: Option<&Path>, path: &str) -> Response {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        n => n,
    };
    if name == "favicon.ico" {
        return StatusCode::NO_CONTENT.into_response();
    }
    let Some(&(name, ctype, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "not found: the console is at /").into_response();
    };
    let body = match dir {
        Some(d) => match tokio::fs::read_to_string(d.join(name)).await {
            Ok(s) => s,
            Err(e) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read {name} from --assets-dir: {e}"))
                    .into_response();
            }
        },
        None => embedded.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
