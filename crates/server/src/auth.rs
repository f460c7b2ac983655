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
    // Copied out in their own scope: a borrow of the request must not live across the await below.
    let credentials = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (header(CLIENT_ID_HEADER), header(CLIENT_SECRET_HEADER))
    };
    let (Some(id), Some(secret)) = credentials else {
        state.metrics.auth_failure();
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match state.vault.authenticate(&id, &secret).await {
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
