//! The Link page and its static assets, embedded in the binary (plain HTML/CSS/JS, no build step).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};
use crate::link::headers::{apply, frame_ancestors};

const LINK_HTML: &str = include_str!("../../assets/link/index.html");
const LINK_JS: &str = include_str!("../../assets/link/link.js");
const LINK_CSS: &str = include_str!("../../assets/link/link.css");
const CALLBACK_JS: &str = include_str!("../../assets/link/callback.js");
const CLIENT_JS: &str = include_str!("../../assets/link/linkvault-link.js");
pub(crate) const DEMO_HTML: &str = include_str!("../../assets/link/demo.html");
const DEMO_JS: &str = include_str!("../../assets/link/demo.js");

const JS: &str = "text/javascript; charset=utf-8";

fn typed(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// `GET /link/broker-connect?auth_code=…&lng=…&th=…&rt=…` — the page. Its `frame-ancestors` are the allowed
/// origins of the client that created the link token (looked up without using the token).
pub(crate) async fn link_page(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let client = match query.get("auth_code").filter(|c| !c.is_empty() && c.len() <= 128) {
        Some(code) => match state.vault.link_client_of_code(code).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot look up a link token");
                None
            }
        },
        None => None,
    };
    let ancestors = frame_ancestors(&state, client).await;
    let mut response = typed("text/html; charset=utf-8", LINK_HTML, "no-store");
    apply(response.headers_mut(), Some(&ancestors));
    response
}

/// `GET /link/assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let cache = "no-cache";
    match file.as_str() {
        "link.js" => typed(JS, LINK_JS, cache),
        "link.css" => typed("text/css; charset=utf-8", LINK_CSS, cache),
        "callback.js" => typed(JS, CALLBACK_JS, cache),
        "demo.js" => typed(JS, DEMO_JS, cache),
        _ => ApiError::new(ApiStatus::NotFound, ErrorType::EndpointNotFound, "no such Link asset").into_response(),
    }
}

/// `GET /link/sdk/linkvault-link.js` — linkvault's own browser client (`createLink`/`openLink`).
pub(crate) async fn client_sdk() -> Response {
    let mut response = typed(JS, CLIENT_JS, "no-cache");
    // Apps load it cross-origin with <script src>; that needs no CORS, but say so for module loaders.
    response.headers_mut().insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    response
}
