//! What the Link page shows and posts: the catalog entries, a connection's accounts, and Mesh's
//! `AccessTokenPayload` (managed tokens: `accessToken` is the tokenId; client-managed: linkvault's tokens).

use linkvault_domain::ConnectionStatus;
use linkvault_integrations::api::Credential;
use linkvault_integrations::{AuthScheme, Integration};
use linkvault_storage::ConnectionRecord;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::AppState;
use crate::handout::Handout;

/// One catalog entry as the page needs it.
pub(crate) fn catalog_entry(i: &Integration) -> Value {
    json!({
        "id": i.id,
        "type": i.integration_type.as_str(),
        "name": i.name,
        "auth": match i.auth {
            AuthScheme::OAuth2 => "oauth",
            AuthScheme::Credentials => "credentials",
            AuthScheme::ApiKey => "apiKey",
        },
        "logoUrl": i.logo.url,
        "logoBase64": i.logo.base64,
        "style": crate::routes::integrations::style_json(&i.style),
    })
}

/// The integrations this installation can connect, sorted by name.
pub(crate) fn catalog(state: &AppState) -> Vec<Value> {
    let mut items: Vec<&Integration> = state.catalog.iter().filter(|i| i.missing_configuration().is_none()).collect();
    items.sort_by_key(|i| i.name.to_lowercase());
    items.into_iter().map(catalog_entry).collect()
}

/// An account as the connected screen lists it, with what it holds (Mesh's `fund`, `cash`, in USD).
#[derive(Debug, Clone)]
pub(crate) struct AccountInfo {
    pub id: String,
    pub name: String,
    pub fund: f64,
    pub cash: f64,
}

impl AccountInfo {
    /// An account known by name only (from the stored connection), its balances not read.
    pub(crate) fn named(id: String, name: String) -> Self {
        Self { id, name, fund: 0.0, cash: 0.0 }
    }
}

/// Mesh's `AccessTokenPayload`: one `accountTokens` entry per account, each with the hand-out's tokens
/// (managed: `accessToken == tokenId`; client-managed: the family's access and refresh tokens).
pub(crate) fn access_token_payload(
    integration: &Integration,
    handout: &Handout,
    accounts: &[AccountInfo],
    now: OffsetDateTime,
    reconnected: bool,
) -> Value {
    let mesh_account_id = handout.mesh_account_id();
    let fallback = [AccountInfo::named(String::new(), integration.name.clone())];
    let listed = if accounts.is_empty() { &fallback[..] } else { accounts };
    let account_tokens: Vec<Value> = listed
        .iter()
        .map(|a| {
            handout.account_token(json!({
                "accountId": a.id,
                "accountName": a.name,
                "meshAccountId": mesh_account_id,
                "frontAccountId": mesh_account_id,
                "fund": a.fund,
                "cash": a.cash,
                "isReconnected": reconnected,
            }))
        })
        .collect();
    let mut payload = json!({
        "accountTokens": account_tokens,
        "brokerType": integration.integration_type.as_str(),
        "brokerName": integration.name,
        "brokerBrandInfo": {
            "brokerLogo": integration.logo.base64.clone().unwrap_or_default(),
            "brokerLogoUrl": integration.logo.url,
        },
    });
    if let Some(seconds) = handout.expires_in(now) {
        payload["expiresInSeconds"] = json!(seconds);
    }
    if let Some(seconds) = handout.refresh_expires_in(now) {
        payload["refreshTokenExpiresInSeconds"] = json!(seconds);
    }
    payload
}

/// What Link knows about a stored connection when it is about to be reused.
#[derive(Debug)]
pub(crate) struct Probe {
    pub status: ConnectionStatus,
    pub accounts: Vec<AccountInfo>,
}

fn stored_accounts(record: &ConnectionRecord, integration: &Integration) -> Vec<AccountInfo> {
    match (&record.account_id, &record.account_name) {
        (None, None) => Vec::new(),
        (id, name) => vec![AccountInfo::named(
            id.clone().unwrap_or_default(),
            name.clone().unwrap_or_else(|| integration.name.clone()),
        )],
    }
}

/// The connection's account as Link shows it: what the provider's account API lists, as one account (a
/// Coinbase or Uphold connection has one wallet or card per currency; Mesh shows the connection as one
/// account) with `fund` the USD value of all of it and `cash` its fiat. `Err(true)`: the integration refused
/// the credential.
pub(crate) async fn fetch_accounts(
    state: &AppState,
    integration: &Integration,
    credential: Credential<'_>,
) -> Result<Vec<AccountInfo>, bool> {
    use linkvault_integrations::api::ApiError as Upstream;
    let listed = match state.exchange.adapter(integration, credential) {
        Ok((api, call)) => api.accounts(call).await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(accounts) => {
            let Some(first) = accounts.first() else { return Ok(Vec::new()) };
            let name = if accounts.len() == 1 { first.name.clone() } else { integration.name.clone() };
            let fund = accounts.iter().filter_map(|a| a.value_usd).sum();
            let cash = accounts.iter().filter_map(|a| a.cash_usd).sum();
            Ok(vec![AccountInfo { id: first.id.clone(), name, fund, cash }])
        }
        Err(Upstream::Unauthorized | Upstream::Revoked(_)) => Err(true),
        Err(e) => {
            tracing::debug!(error = %e, integration = %integration.integration_type, "cannot list accounts");
            Err(false)
        }
    }
}

/// Decides whether a stored connection can be reused as is, or needs the end user to sign in again.
/// Credentials sessions cannot be refreshed: an expired or refused session needs a new sign-in. OAuth
/// connections are kept fresh by the refresh engine and are reused unless marked `reauthRequired`.
pub(crate) async fn probe(state: &AppState, record: &ConnectionRecord, integration: &Integration) -> Probe {
    let stored = stored_accounts(record, integration);
    if record.status == ConnectionStatus::ReauthRequired {
        return Probe { status: ConnectionStatus::ReauthRequired, accounts: stored };
    }
    let now = state.vault.clock().now();
    let expired = record.access_expires_at.is_some_and(|at| at <= now);
    if integration.auth == AuthScheme::Credentials && expired {
        return Probe { status: ConnectionStatus::ReauthRequired, accounts: stored };
    }
    let credentials = match state.vault.open_credentials(record).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a connection's credentials for Link");
            return Probe { status: record.status, accounts: stored };
        }
    };
    let credential = Credential::of_stored(integration, &credentials.access_token, credentials.refresh_token.as_ref());
    match fetch_accounts(state, integration, credential).await {
        Ok(accounts) if !accounts.is_empty() => Probe { status: ConnectionStatus::Active, accounts },
        Ok(_) => Probe { status: ConnectionStatus::Active, accounts: stored },
        Err(true) if integration.auth == AuthScheme::Credentials => {
            Probe { status: ConnectionStatus::ReauthRequired, accounts: stored }
        }
        Err(_) => Probe { status: record.status, accounts: stored },
    }
}
