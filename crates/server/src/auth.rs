//! Client authentication for `/api/v1`: `X-Client-Id` and `X-Client-Secret`, or 401 with an empty body.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::api_result::ApiError;

pub(crate) const CLIENT_ID_HEADER: &str = "x-client-id";
pub(crate) const CLIENT_SECRET_HEADER: &str = "x-client-secret";

pub(crate) async fn require_client(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The headers are moved out for the lookup and put back after: borrowing them in place would hold a borrow
    // of the request (whose body is not `Sync`) across the await, and copying them costs two allocations.
    let headers = std::mem::take(req.headers_mut());
    let outcome = {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match (header(CLIENT_ID_HEADER), header(CLIENT_SECRET_HEADER)) {
            (Some(id), Some(secret)) => Some(state.vault.authenticate(id, secret).await),
            _ => None,
        }
    };
    *req.headers_mut() = headers;
    let Some(outcome) = outcome else {
        state.metrics.auth_failure();
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match outcome {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(None) => {
            state.metrics.auth_failure();
            StatusCode::UNAUTHORIZED.into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
