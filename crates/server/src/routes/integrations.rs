//! `GET /api/v1/integrations` and `GET /api/v1/authenticationSchemes`: the catalog in Mesh's shapes.

use axum::extract::State;
use linkvault_integrations::{AuthScheme, Integration, Style};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::ApiOk;
use crate::auth::Client;
use crate::routes::openapi::AuthenticationSchemes;

#[derive(Serialize)]
pub(crate) struct IntegrationList {
    items: Vec<Value>,
}

fn model(i: &Integration) -> Value {
    let logo_url = i.logo.url.clone();
    json!({
        "id": i.id,
        "name": i.name,
        "type": i.integration_type.as_str(),
        "categories": i.categories,
        "style": style_json(&i.style),
        "logo": {
            "logoLightUrl": logo_url, "logoDarkUrl": logo_url, "logoColorUrl": logo_url,
            "iconLightUrl": logo_url, "iconDarkUrl": logo_url, "iconColorUrl": logo_url,
            "base64Logo": i.logo.base64,
        },
        "cryptoTransfersSupported": i.features.transfers,
        "supportedFeatures": i.features.names(),
        "authenticationSchemeType": scheme_type(i.auth),
        // An extension: whether this installation can actually connect it (client id, endpoints configured).
        "isConfigured": i.missing_configuration().is_none(),
    })
}

/// Mesh's `style` object (every field, `null` where unset), or `null` when the integration has no colours.
pub(crate) fn style_json(style: &Style) -> Value {
    if style.is_empty() {
        return Value::Null;
    }
    Value::Object(style.iter().map(|(field, colour)| (field.to_owned(), json!(colour))).collect())
}

const fn scheme_type(auth: AuthScheme) -> &'static str {
    match auth {
        AuthScheme::OAuth2 => "oAuth",
        AuthScheme::Credentials => "usernamePassword",
        AuthScheme::ApiKey => "apiKey",
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
    responses((status = 200, description = "Schemes", body = AuthenticationSchemes))
)]
pub(crate) async fn schemes(State(state): State<AppState>, _: Client) -> ApiOk<Vec<Value>> {
    let items = state
        .catalog
        .iter()
        .map(|i| match i.auth {
            AuthScheme::Credentials => json!({
                "brokerType": i.integration_type.as_str(),
                "authenticationSchemeType": "usernamePassword",
                "initialAuthenticationModel": {"fields": [
                    {"name": "Username", "description": format!("{} username", i.name)},
                    {"name": "Password", "description": format!("{} password", i.name)},
                ]},
                "mfaSchemes": ["mfaCode"],
            }),
            // Sent to POST /api/v1/authenticate as username (the key) and password (the secret).
            AuthScheme::ApiKey => json!({
                "brokerType": i.integration_type.as_str(),
                "authenticationSchemeType": "apiKey",
                "initialAuthenticationModel": {"fields": [
                    {"name": "API key", "description": format!("{} API key", i.name)},
                    {"name": "API secret", "description": format!("{} API secret", i.name)},
                ]},
                "mfaSchemes": [],
            }),
            AuthScheme::OAuth2 => json!({
                "brokerType": i.integration_type.as_str(),
                "authenticationSchemeType": "oAuth",
                "initialAuthenticationModel": {"fields": []},
                "mfaSchemes": [],
            }),
        })
        .collect();
    ApiOk(Some(items))
}
