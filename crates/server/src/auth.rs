//! Client authentication for `/api/v1`: `X-Client-Id` and `X-Client-Secret`, or 401 with an empty body.
//!
//! An extractor rather than a middleware: every `/api/v1` handler takes [`Client`] as its first argument, so
//! none can run unauthenticated, the check happens before the body or the path is looked at, and a request
//! does not pay for a middleware layer (a boxed future, a clone of the inner service, an extension map).
//! `tests/api.rs` calls every documented `/api/v1` operation without credentials and expects 401.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use linkvault_vault::Caller;

use crate::AppState;
use crate::api_result::ApiError;

// Header names, not `&str`: a lookup by `&str` parses and validates the name on every request first.
pub(crate) static CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("x-client-id");
pub(crate) static CLIENT_SECRET_HEADER: HeaderName = HeaderName::from_static("x-client-secret");

/// The authenticated API client (and its key's scope) of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub(crate) Caller);

impl FromRequestParts<AppState> for Client {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let outcome = match (header(&CLIENT_ID_HEADER), header(&CLIENT_SECRET_HEADER)) {
            (Some(id), Some(secret)) => state.vault.authenticate(id, secret).await,
            _ => Ok(None),
        };
        match outcome {
            Ok(Some(caller)) => match state.limits.check_client(caller.client_id, caller.api_rate_limit) {
                Ok(()) => Ok(Self(caller)),
                Err(limited) => Err(limited.into_response()),
            },
            Ok(None) => {
                state.metrics.auth_failure();
                Err(StatusCode::UNAUTHORIZED.into_response())
            }
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}
