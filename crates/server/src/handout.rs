//! What an app receives for a connection, by its client's token mode: the tokenId (managed mode, Mesh's
//! Managed Tokens: `accessToken == tokenId`), or a new client-managed token family (`lva_…` access token,
//! `lvr_…` refresh token, their lifetimes, and no tokenId). Shared by `/api/v1/authenticate` and Link, so
//! both hand out the same thing in the same shape (Mesh's `BrokerAccountTokens`).

use linkvault_domain::{ClientId, TokenId, TokenMode};
use linkvault_storage::ConnectionRecord;
use linkvault_vault::ClientTokens;
use linkvault_vault::events::mesh_account_id;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::AppState;
use crate::api_result::ApiError;

/// The tokens handed to the app for one connection.
#[derive(Debug)]
pub(crate) enum Handout {
    Managed {
        token_id: TokenId,
        expires_at: Option<OffsetDateTime>,
    },
    Client(ClientTokens),
    /// A return user in client mode (Link `frontAccessTokens`): the app's own access token, echoed.
    Returning {
        token_id: TokenId,
        access_token: String,
    },
}

/// What an app holds for one connection: `accessToken`, and `tokenId` (managed mode) or `refreshToken`
/// (client-managed mode, as issued: a refresh without rotation issues none).
#[derive(Debug)]
pub(crate) struct HandedTokens {
    pub access_token: String,
    pub token_id: Option<String>,
    pub refresh_token: Option<String>,
}

/// The caller's token mode, read from the client record (Link sessions carry only the client id).
pub(crate) async fn token_mode_of(state: &AppState, client_id: ClientId) -> Result<TokenMode, ApiError> {
    Ok(state.vault.get_client(client_id).await?.map_or(TokenMode::Managed, |c| c.token_mode))
}

/// Hands `record` out to a client in `mode`; in client mode this issues a new token family, retiring any
/// earlier one of the same connection.
pub(crate) async fn hand_out(
    state: &AppState,
    mode: TokenMode,
    record: &ConnectionRecord,
) -> Result<Handout, ApiError> {
    Ok(match mode {
        TokenMode::Managed => Handout::Managed { token_id: record.token_id, expires_at: record.access_expires_at },
        TokenMode::Client => Handout::Client(state.vault.issue_client_tokens(record).await?),
    })
}

/// Whole seconds from `now` to `at`, rounded to the nearest: stored instants keep milliseconds, and the
/// moments spent answering should not turn a 3600-second lifetime into 3599.
pub(crate) fn seconds_until(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let ms = i64::try_from((at - now).whole_milliseconds()).unwrap_or(i64::MAX);
    (ms.saturating_add(500) / 1000).max(0)
}

impl Handout {
    pub(crate) fn token_id(&self) -> TokenId {
        match self {
            Handout::Managed { token_id, .. } | Handout::Returning { token_id, .. } => *token_id,
            Handout::Client(t) => t.token_id,
        }
    }

    /// `meshAccountId`: the tokenId in managed mode (as before), a stable derived id otherwise.
    pub(crate) fn mesh_account_id(&self) -> String {
        match self {
            Handout::Managed { token_id, .. } => token_id.to_string(),
            _ => mesh_account_id(self.token_id()).to_string(),
        }
    }

    /// How the app (and the Link page on its behalf) names the connection: the tokenId in managed mode, the
    /// handed-out access token in client mode (which must never see a tokenId, finding 14.5b).
    pub(crate) fn handle(&self) -> String {
        match self {
            Handout::Managed { token_id, .. } => token_id.to_string(),
            Handout::Client(t) => t.access_token.expose().to_owned(),
            Handout::Returning { access_token, .. } => access_token.clone(),
        }
    }

    /// The fields a Link answer names its connection with: `handle` always, `tokenId` in managed mode only.
    pub(crate) fn naming(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("handle".to_owned(), Value::String(self.handle()));
        if let Handout::Managed { token_id, .. } = self {
            fields.insert("tokenId".to_owned(), Value::String(token_id.to_string()));
        }
        fields
    }

    /// The tokens of one `accountTokens` entry: what each answer puts beside its account.
    pub(crate) fn tokens(&self) -> HandedTokens {
        match self {
            Handout::Managed { token_id, .. } => {
                let id = token_id.to_string();
                HandedTokens { access_token: id.clone(), token_id: Some(id), refresh_token: None }
            }
            Handout::Client(t) => HandedTokens {
                access_token: t.access_token.expose().to_owned(),
                token_id: None,
                refresh_token: t.refresh_token.as_ref().map(|r| r.expose().to_owned()),
            },
            Handout::Returning { access_token, .. } => {
                HandedTokens { access_token: access_token.clone(), token_id: None, refresh_token: None }
            }
        }
    }

    /// One Link `accountTokens` entry for `account` (the Link page's payload is built as JSON).
    pub(crate) fn account_token(&self, account: Value) -> Value {
        let tokens = self.tokens();
        let mut entry = Map::new();
        entry.insert("account".to_owned(), account);
        entry.insert("accessToken".to_owned(), Value::String(tokens.access_token));
        if let Some(id) = tokens.token_id {
            entry.insert("tokenId".to_owned(), Value::String(id));
        }
        if let Some(refresh) = tokens.refresh_token {
            entry.insert("refreshToken".to_owned(), Value::String(refresh));
        }
        Value::Object(entry)
    }

    /// `expiresInSeconds`: the integration session's remaining life (managed), or the access token's.
    pub(crate) fn expires_in(&self, now: OffsetDateTime) -> Option<i64> {
        match self {
            Handout::Managed { expires_at, .. } => expires_at.map(|at| seconds_until(at, now)),
            Handout::Client(t) => Some(seconds_until(t.access_expires_at, now)),
            Handout::Returning { .. } => None,
        }
    }

    /// `refreshTokenExpiresInSeconds`, for client-managed refresh tokens that expire.
    pub(crate) fn refresh_expires_in(&self, now: OffsetDateTime) -> Option<i64> {
        match self {
            Handout::Client(t) => t.refresh_expires_at.map(|at| seconds_until(at, now)),
            _ => None,
        }
    }
}
