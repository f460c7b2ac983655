//! The `userId` extension on token-backed requests: when a request names the end user it acts for, a tokenId
//! of another user of the same client is refused as not found, before anything reaches the integration. Mesh's
//! shapes carry no `userId` there, so clients that do not send one keep Mesh's semantics (the client, not the
//! end user, is the caller; its users are kept apart by their distinct tokenIds).

use linkvault_domain::UserId;
use linkvault_vault::Caller;

use crate::AppState;
use crate::api_result::ApiError;

/// Checks that `auth_token` belongs to `user_id`, if one is given; another client's tokenId or another user's
/// is `tokenNotFound`, the same answer as for an id that never existed.
pub(crate) async fn check_user(
    state: &AppState,
    caller: &Caller,
    auth_token: &str,
    user_id: Option<&str>,
) -> Result<(), ApiError> {
    let Some(raw) = user_id else { return Ok(()) };
    let user = UserId::parse(raw).map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let token_id = crate::routes::token_use::token_id_of(state, caller, auth_token).await?;
    let record = state.vault.connection_for(caller.client_id, token_id).await?;
    if record.user_id != user.as_str() {
        return Err(ApiError::token_not_found());
    }
    Ok(())
}
