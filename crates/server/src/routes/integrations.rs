//! `GET /api/v1/integrations` and `GET /api/v1/authenticationSchemes`: the catalog in Mesh's shapes. The wire
//! types below are what the handlers answer, so the OpenAPI schemas are derived from them. Their fields are in
//! JSON-name order: the answers were once built as sorted JSON maps, and keeping that order keeps the bytes.

use axum::extract::State;
use linkvault_integrations::{AuthScheme, Integration, Style};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::ApiOk;
use crate::auth::Client;

#[derive(Serialize, ToSchema)]
pub(crate) struct IntegrationList {
    items: Vec<IntegrationModel>,
}

/// Mesh's `IntegrationModel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IntegrationModel {
    authentication_scheme_type: SchemeType,
    categories: Vec<String>,
    crypto_transfers_supported: bool,
    /// Mesh's id where Mesh publishes one (coinbase 47624467-e52e-4938-a41a-7926b6c27acf), else derived from the
    /// type; the catalog file can set it
    id: Uuid,
    /// An extension: whether this installation can actually connect it (client id, endpoints configured).
    is_configured: bool,
    logo: LogoModel,
    name: String,
    /// Mesh's brand colours, six hex digits without #; null when the integration has none
    style: Option<IntegrationStyle>,
    supported_features: Vec<&'static str>,
    #[serde(rename = "type")]
    integration_type: String,
}

/// Mesh's logo URLs: linkvault has one logo, named for every variant.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogoModel {
    base64_logo: Option<String>,
    icon_color_url: Option<String>,
    icon_dark_url: Option<String>,
    icon_light_url: Option<String>,
    logo_color_url: Option<String>,
    logo_dark_url: Option<String>,
    logo_light_url: Option<String>,
}

/// Mesh's `style` object: every colour, `null` where unset.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IntegrationStyle {
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_hover_dark: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_hover_light: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_primary_dark: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_primary_light: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_text_dark: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_text_hover_dark: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_text_hover_light: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    button_text_light: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    field_active_dark: Option<String>,
    #[schema(pattern = "^[0-9A-F]{6}$")]
    field_active_light: Option<String>,
}

impl IntegrationStyle {
    /// None when the integration has no colours (Link then uses its own).
    fn of(style: &Style) -> Option<Self> {
        if style.is_empty() {
            return None;
        }
        let colour = |field: &str| style.get(field).map(str::to_owned);
        Some(Self {
            button_hover_dark: colour("buttonHoverDark"),
            button_hover_light: colour("buttonHoverLight"),
            button_primary_dark: colour("buttonPrimaryDark"),
            button_primary_light: colour("buttonPrimaryLight"),
            button_text_dark: colour("buttonTextDark"),
            button_text_hover_dark: colour("buttonTextHoverDark"),
            button_text_hover_light: colour("buttonTextHoverLight"),
            button_text_light: colour("buttonTextLight"),
            field_active_dark: colour("fieldActiveDark"),
            field_active_light: colour("fieldActiveLight"),
        })
    }
}

/// How an integration signs users in, in Mesh's words.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum SchemeType {
    OAuth,
    UsernamePassword,
    ApiKey,
}

impl From<AuthScheme> for SchemeType {
    fn from(auth: AuthScheme) -> Self {
        match auth {
            AuthScheme::OAuth2 => Self::OAuth,
            AuthScheme::Credentials => Self::UsernamePassword,
            AuthScheme::ApiKey => Self::ApiKey,
        }
    }
}

fn model(i: &Integration) -> IntegrationModel {
    let logo_url = || i.logo.url.clone();
    IntegrationModel {
        authentication_scheme_type: i.auth.into(),
        categories: i.categories.clone(),
        crypto_transfers_supported: i.features.transfers,
        id: i.id,
        is_configured: i.missing_configuration().is_none(),
        logo: LogoModel {
            base64_logo: i.logo.base64.clone(),
            icon_color_url: logo_url(),
            icon_dark_url: logo_url(),
            icon_light_url: logo_url(),
            logo_color_url: logo_url(),
            logo_dark_url: logo_url(),
            logo_light_url: logo_url(),
        },
        name: i.name.clone(),
        style: IntegrationStyle::of(&i.style),
        supported_features: i.features.names(),
        integration_type: i.integration_type.as_str().to_owned(),
    }
}

/// Mesh's `style` object (every field, `null` where unset), or `null` when the integration has no colours: for
/// the Link page's catalog, which is built as JSON.
pub(crate) fn style_json(style: &Style) -> Value {
    serde_json::to_value(IntegrationStyle::of(style)).unwrap_or(Value::Null)
}

/// One entry of `GET /api/v1/authenticationSchemes`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthenticationScheme {
    authentication_scheme_type: SchemeType,
    broker_type: String,
    initial_authentication_model: InitialAuthenticationModel,
    mfa_schemes: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InitialAuthenticationModel {
    fields: Vec<AuthenticationField>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuthenticationField {
    description: String,
    name: &'static str,
}

impl AuthenticationScheme {
    fn of(i: &Integration) -> Self {
        let field =
            |name: &'static str, what: &str| AuthenticationField { description: format!("{} {what}", i.name), name };
        let (fields, mfa_schemes) = match i.auth {
            AuthScheme::Credentials => {
                (vec![field("Username", "username"), field("Password", "password")], vec!["mfaCode"])
            }
            // Sent to POST /api/v1/authenticate as username (the key) and password (the secret).
            AuthScheme::ApiKey => (vec![field("API key", "API key"), field("API secret", "API secret")], Vec::new()),
            AuthScheme::OAuth2 => (Vec::new(), Vec::new()),
        };
        Self {
            authentication_scheme_type: i.auth.into(),
            broker_type: i.integration_type.as_str().to_owned(),
            initial_authentication_model: InitialAuthenticationModel { fields },
            mfa_schemes,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/integrations",
    operation_id = "listIntegrations",
    summary = "Integrations in the catalog (Mesh IntegrationModel)",
    responses((status = 200, description = "Catalog", body = IntegrationList))
)]
pub(crate) async fn list(State(state): State<AppState>, _: Client) -> ApiOk<IntegrationList> {
    ApiOk(Some(IntegrationList { items: state.catalog.iter().map(model).collect() }))
}

#[utoipa::path(
    get,
    path = "/api/v1/authenticationSchemes",
    operation_id = "authenticationSchemes",
    summary = "How each integration signs users in",
    responses((status = 200, description = "Schemes", body = Vec<AuthenticationScheme>))
)]
pub(crate) async fn schemes(State(state): State<AppState>, _: Client) -> ApiOk<Vec<AuthenticationScheme>> {
    ApiOk(Some(state.catalog.iter().map(AuthenticationScheme::of).collect()))
}

/// Representative answers (the embedded catalog: every sign-in scheme, with and without colours), for the
/// schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let catalog = linkvault_integrations::Catalog::embedded();
    let mut samples = vec![sample("IntegrationList", &IntegrationList { items: catalog.iter().map(model).collect() })];
    samples.extend(catalog.iter().map(|i| sample("AuthenticationScheme", &AuthenticationScheme::of(i))));
    samples
}
