//! Security headers of every Link and demo response: a CSP without inline script, `frame-ancestors` limited
//! to the client's allowed origins (plus loopback origins in sandbox mode), `nosniff`, no referrer.

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use linkvault_domain::ClientId;

use crate::AppState;

/// Origins every sandbox Link page may be embedded by (apps under development).
const SANDBOX_ANCESTORS: &str = "http://localhost:* http://127.0.0.1:*";

/// The CSP of a Link page that may be framed by `frame_ancestors` (a CSP source list, or `'none'`).
pub(crate) fn csp(frame_ancestors: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {frame_ancestors}"
    )
}

/// The `frame-ancestors` source list for a page of `client` (or of no known client).
pub(crate) async fn frame_ancestors(state: &AppState, client: Option<ClientId>) -> String {
    let mut sources: Vec<String> = Vec::new();
    if let Some(client_id) = client {
        match state.vault.link_origins(client_id).await {
            Ok(origins) => sources.extend(origins.iter().map(ToString::to_string)),
            Err(e) => tracing::warn!(error = %e, "cannot read the client's allowed Link origins"),
        }
    }
    if state.link.sandbox {
        sources.push("'self'".to_owned());
        sources.push(SANDBOX_ANCESTORS.to_owned());
    }
    if sources.is_empty() { "'none'".to_owned() } else { sources.join(" ") }
}

/// Adds the security headers to every response that does not set its own CSP (then with
/// `frame-ancestors 'none'`). Responses are never cached unless the handler said otherwise.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    apply(response.headers_mut(), None);
    response
}

pub(crate) fn apply(headers: &mut HeaderMap, frame_ancestors: Option<&str>) {
    if let Some(ancestors) = frame_ancestors {
        if let Ok(v) = HeaderValue::from_str(&csp(ancestors)) {
            headers.insert(CONTENT_SECURITY_POLICY, v);
        }
    } else if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&csp("'none'")) {
            headers.insert(CONTENT_SECURITY_POLICY, v);
        }
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
