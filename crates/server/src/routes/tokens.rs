//! `POST /api/v1/tokens/import` and `GET /api/v1/tokens/{tokenId}`: bring existing integration tokens under
//! management, and read a connection's status without its secrets.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use linkvault_domain::{NaturalKey, TokenId, TokenMode, UserId};
use linkvault_vault::events::mesh_account_id;
use linkvault_vault::{ConnectionMeta, ConnectionView, IntegrationCredentials};
use serde::{Deserialize, Serialize};
use time::Duration;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AllOfBuilder, Object, ObjectBuilder, Ref, Schema, Type};
use utoipa::{PartialSchema as _, ToSchema};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::handout::seconds_until;
use crate::routes::openapi::ApiResult;
use crate::timefmt::Rfc3339Time;

mod status_json;
use status_json::StatusAnswer;

/// Longest integration token accepted (real ones are well under 4 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_ACCOUNT_FIELD_CHARS: usize = 300;
/// Ten years: anything longer is a unit mistake, not a lifetime.
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportRequest {
    #[schema(min_length = 1, max_length = 300)]
    user_id: String,
    /// Integration type from GET /api/v1/integrations, e.g. coinbase
    #[serde(rename = "type")]
    integration_type: String,
    #[schema(min_length = 1, max_length = 16384)]
    access_token: String,
    #[schema(min_length = 1, max_length = 16384)]
    refresh_token: Option<String>,
    /// Absent: the integration's default access lifetime (never 'no expiry')
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_seconds: Option<u64>,
    #[schema(minimum = 1, maximum = 315_360_000)]
    refresh_token_expires_in_seconds: Option<u64>,
    #[schema(max_length = 300)]
    account_id: Option<String>,
    #[schema(max_length = 300)]
    account_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportResponse {
    /// False when the connection already existed and its credentials were replaced.
    created: bool,
    #[serde(flatten)]
    status: StatusResponse,
    /// Client-managed mode: the new token family naming the connection (there is no tokenId to see).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    family: Option<FamilyResponse>,
}

/// The import answer's schema, from the two flattened types': the status, `created`, and the family's fields,
/// optional as the family is (utoipa's `flatten` of an `Option` would make them required for every client).
impl utoipa::PartialSchema for ImportResponse {
    fn schema() -> RefOr<Schema> {
        let mut family = match FamilyResponse::schema() {
            RefOr::T(Schema::Object(object)) => object,
            _ => Object::new(),
        };
        family.required.clear();
        let created = ObjectBuilder::new()
            .property(
                "created",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some("false when an existing connection's credentials were replaced")),
            )
            .required("created");
        AllOfBuilder::new()
            .item(Ref::from_schema_name(StatusResponse::name()))
            .item(created)
            .item(family)
            .description(Some(
                "The stored connection's status. A managed-mode client gets its tokenId; a client-mode client gets \
                 no tokenId but a new token family naming the connection (meshAccountId, accessToken lva_…, \
                 refreshToken lvr_…, their lifetimes), as from /api/v1/authenticate.",
            ))
            .into()
    }
}

impl ToSchema for ImportResponse {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((StatusResponse::name().into_owned(), StatusResponse::schema()));
        <StatusResponse as ToSchema>::schemas(schemas);
    }
}

/// What a client-mode client receives instead of the tokenId, as `/api/v1/authenticate` hands it out.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FamilyResponse {
    /// client-managed mode: a stable id derived from the connection (not usable as authToken)
    mesh_account_id: String,
    /// client-managed mode: linkvault access token (lva_…)
    access_token: String,
    /// client-managed mode: linkvault refresh token (lvr_…)
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// client-managed mode: the access token's remaining life
    #[schema(required = true)]
    expires_in_seconds: Option<i64>,
    /// client-managed mode: the refresh token's remaining life
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in_seconds: Option<i64>,
}

/// A connection's status, without secrets.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenStatus)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusResponse {
    /// Absent only in a client-mode client's import answer.
    #[serde(serialize_with = "display_some", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = Uuid, required = false)]
    token_id: Option<TokenId>,
    user_id: String,
    broker_type: String,
    scope: ScopeName,
    status: ConnectionState,
    #[schema(required = true)]
    account_id: Option<String>,
    #[schema(required = true)]
    account_name: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    access_token_expires_at: Option<Rfc3339Time>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    refresh_token_expires_at: Option<Rfc3339Time>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_refreshed_at: Option<Rfc3339Time>,
    refresh_count: u64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Rfc3339Time,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Rfc3339Time,
}

/// The scope of the API key a connection was made with
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ScopeName {
    Read,
    Write,
}

impl ScopeName {
    /// The name serde writes (the hand-written status answer copies it).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

impl From<linkvault_domain::Scope> for ScopeName {
    fn from(scope: linkvault_domain::Scope) -> Self {
        match scope {
            linkvault_domain::Scope::Read => Self::Read,
            linkvault_domain::Scope::Write => Self::Write,
        }
    }
}

/// Whether the connection is usable, or needs the end user to sign in again.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ConnectionState {
    Active,
    ReauthRequired,
}

impl ConnectionState {
    /// The name serde writes (the hand-written status answer copies it).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::ReauthRequired => "reauthRequired",
        }
    }
}

impl From<linkvault_domain::ConnectionStatus> for ConnectionState {
    fn from(status: linkvault_domain::ConnectionStatus) -> Self {
        match status {
            linkvault_domain::ConnectionStatus::Active => Self::Active,
            linkvault_domain::ConnectionStatus::ReauthRequired => Self::ReauthRequired,
        }
    }
}

/// Written straight into the response through its `Display` (no intermediate `String`).
fn display_some<S: serde::Serializer>(
    value: &Option<impl std::fmt::Display>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.collect_str(v),
        None => serializer.serialize_none(),
    }
}

impl From<ConnectionView> for StatusResponse {
    fn from(v: ConnectionView) -> Self {
        Self {
            token_id: Some(v.token_id),
            user_id: v.user_id,
            broker_type: v.integration,
            scope: v.scope.into(),
            status: v.status.into(),
            account_id: v.account_id,
            account_name: v.account_name,
            access_token_expires_at: v.access_expires_at.map(Rfc3339Time),
            refresh_token_expires_at: v.refresh_expires_at.map(Rfc3339Time),
            last_refreshed_at: v.last_refreshed_at.map(Rfc3339Time),
            refresh_count: v.refresh_count,
            created_at: Rfc3339Time(v.created_at),
            updated_at: Rfc3339Time(v.updated_at),
        }
    }
}

fn check_token(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::invalid_field(field, format!("is longer than {MAX_TOKEN_BYTES} bytes")));
    }
    Ok(())
}

fn check_lifetime(field: &str, secs: Option<u64>) -> Result<Option<Duration>, ApiError> {
    match secs {
        None => Ok(None),
        Some(0) => {
            Err(ApiError::invalid_field(field, "must be at least 1 second; omit it if the token has no known lifetime"))
        }
        Some(s) if s > MAX_LIFETIME_SECS => {
            Err(ApiError::invalid_field(field, format!("must be at most {MAX_LIFETIME_SECS} seconds (ten years)")))
        }
        Some(s) => Ok(Some(Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX)))),
    }
}

fn check_account_field(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > MAX_ACCOUNT_FIELD_CHARS => {
            Err(ApiError::invalid_field(field, format!("is longer than {MAX_ACCOUNT_FIELD_CHARS} characters")))
        }
        Some(v) if v.chars().any(char::is_control) => {
            Err(ApiError::invalid_field(field, "must not contain control characters"))
        }
        other => Ok(other),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/import",
    operation_id = "importTokens",
    summary = "Store existing integration tokens under management",
    description = "Same identity rules as a Link connection: (client, userId, type, scope of the calling key) maps \
        to one tokenId. Importing again for the same key replaces the credentials and keeps the tokenId.",
    request_body = ImportRequest,
    responses(
        (status = 200, description = "Stored", body = ImportResponse),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound", body = ApiResult),
        (status = 500, description = "internal", body = ApiResult),
    )
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<ApiOk<ImportResponse>, ApiError> {
    let user_id = UserId::parse(&req.user_id).map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let integration = state.known_integration(&req.integration_type)?;
    check_token("accessToken", &req.access_token)?;
    if let Some(refresh) = &req.refresh_token {
        check_token("refreshToken", refresh)?;
    }
    let access_ttl = check_lifetime("expiresInSeconds", req.expires_in_seconds)?;
    let refresh_ttl = check_lifetime("refreshTokenExpiresInSeconds", req.refresh_token_expires_in_seconds)?;
    let account_id = check_account_field("accountId", req.account_id)?;
    let account_name = check_account_field("accountName", req.account_name)?;

    // No stated lifetime means the catalog's default, never "no expiry".
    let default_ttl = state
        .catalog
        .get(integration.as_str())
        .map(|i| Duration::seconds(i64::try_from(i.timing.default_access_ttl_secs).unwrap_or(i64::MAX)))
        .unwrap_or(Duration::hours(1));
    let now = state.vault.clock().now();
    let meta = ConnectionMeta {
        account_id,
        account_name,
        access_expires_at: Some(now + access_ttl.unwrap_or(default_ttl)),
        refresh_expires_at: refresh_ttl.map(|d| now + d),
    };
    let key = NaturalKey { client_id: caller.client_id, user_id, integration, scope: caller.scope };
    let credentials = IntegrationCredentials::new(req.access_token, req.refresh_token);
    let stored = state.vault.store_credentials(&key, &credentials, &meta).await?;
    state.metrics.connection_stored();
    let view = state.vault.status(caller.client_id, stored.token_id).await?;
    let mut status = StatusResponse::from(view);
    let family = match caller.token_mode {
        TokenMode::Managed => None,
        TokenMode::Client => {
            // A client-mode client never sees a tokenId (finding 14.5b): it gets a token family, as from a sign-in.
            let record = state.vault.connection_for(caller.client_id, stored.token_id).await?;
            let tokens = state.vault.issue_client_tokens(&record).await?;
            status.token_id = None;
            Some(FamilyResponse {
                mesh_account_id: mesh_account_id(tokens.token_id).to_string(),
                access_token: tokens.access_token.expose().to_owned(),
                refresh_token: tokens.refresh_token.as_ref().map(|t| t.expose().to_owned()),
                expires_in_seconds: Some(seconds_until(tokens.access_expires_at, now)),
                refresh_token_expires_in_seconds: tokens.refresh_expires_at.map(|at| seconds_until(at, now)),
            })
        }
    };
    Ok(ApiOk(Some(ImportResponse { created: stored.created, status, family })))
}

/// `?userId=` (extension): the end user the tokenId should belong to.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusQuery {
    user_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens/{tokenId}",
    operation_id = "tokenStatus",
    summary = "Status of a managed connection, without secrets",
    params(
        ("tokenId" = String, Path, format = Uuid),
        ("userId" = Option<String>, Query,
            description = "Extension: answer tokenNotFound unless the tokenId belongs to this end user"),
    ),
    responses(
        (status = 200, description = "Status", body = StatusResponse),
        (status = 400, description = "invalidField: userId is empty, too long or holds control characters", body = ApiResult),
        (status = 404, description = "tokenNotFound: unknown, deleted, or another client's tokenId (indistinguishable)",
            body = ApiResult),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Client(caller): Client,
    raw_id: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<StatusAnswer, ApiError> {
    // A malformed id (even one that is not UTF-8) is as unknown as a well-formed one that does not exist.
    let token_id =
        raw_id.ok().and_then(|Path(raw)| raw.parse::<TokenId>().ok()).ok_or_else(ApiError::token_not_found)?;
    let Query(query) = query.map_err(|e| ApiError::invalid_field("userId", e.body_text()))?;
    let view = state.vault.status_for(&caller, token_id, query.user_id.as_deref()).await?;
    Ok(StatusAnswer(view.into()))
}
