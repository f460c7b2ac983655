//! The Link page's session: the `Authorization: Bearer` token issued when the page exchanged its auth_code,
//! looked up (by its digest) in the vault. Client credentials are never accepted here.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use linkvault_vault::link::LinkSessionRecord;

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// A started, unexpired Link session.
#[derive(Debug)]
pub(crate) struct LinkSession(pub LinkSessionRecord);

pub(crate) fn session_expired() -> ApiError {
    ApiError::new(
        ApiStatus::PermissionDenied,
        ErrorType::LinkTokenExpired,
        "the Link session is missing or has expired; open Link again with a new link token",
    )
    .with_display("This session has expired. Close this window and start again.")
}

impl FromRequestParts<AppState> for LinkSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(session_expired)?;
        match state.vault.link_session_by_token(token).await {
            Ok(Some(record)) => {
                state.limits.check_link_session(record.id)?;
                Ok(LinkSession(record))
            }
            Ok(None) => Err(session_expired()),
            Err(e) => Err(ApiError::internal(&e)),
        }
    }
}
