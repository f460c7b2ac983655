//! The `userId` extension on token-backed requests: when a request names the end user it acts for, a tokenId
//! of another user of the same client is refused as not found, before anything reaches the integration. Mesh's
//! shapes carry no `userId` there, so clients that do not send one keep Mesh's semantics (the client, not the
//! end user, is the caller; its users are kept apart by their distinct tokenIds).

use linkvault_domain::UserId;
use linkvault_vault::Caller;

use crate::AppState;
use crate::api_result::ApiError;

/// The request's `userId`, if any, validated.
pub(crate) fn requested_user(raw: Option<&str>) -> Result<Option<UserId>, ApiError> {
    raw.map(UserId::parse).transpose().map_err(|e| ApiError::invalid_field(e.field, e.reason))
}

/// Another user's connection is `tokenNotFound`, the same answer as for an id that never existed.
pub(crate) fn check_owner(connection_user: &str, user: Option<&UserId>) -> Result<(), ApiError> {
    match user {
        Some(user) if user.as_str() != connection_user => Err(ApiError::token_not_found()),
        _ => Ok(()),
    }
}

/// Checks that `auth_token` belongs to `user_id`, if one is given, for endpoints that do not otherwise load the
/// connection (token-backed calls check inside `token_use::resolve`, on the row they load anyway).
pub(crate) async fn check_user(
    state: &AppState,
    caller: &Caller,
    auth_token: &str,
    user_id: Option<&str>,
) -> Result<(), ApiError> {
    let Some(user) = requested_user(user_id)? else { return Ok(()) };
    let token_id = crate::routes::token_use::token_id_of(state, caller, auth_token).await?;
    let record = state.vault.connection_for(caller.client_id, token_id).await?;
    check_owner(&record.user_id, Some(&user))
}
