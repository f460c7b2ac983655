//! The OpenAPI document `GET /openapi.json` serves: generated with utoipa from the handlers' `#[utoipa::path]`
//! annotations and their wire types' `ToSchema`, built once and then served as the same bytes (it is the HTTP
//! benchmark's static baseline). `docs/openapi.json` is a copy of it, kept equal by
//! `crates/server/tests/openapi.rs`; regenerate it with
//! `UPDATE_OPENAPI=1 cargo nextest run -p linkvault-server --test openapi`.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::api_result::{ApiStatus, ErrorType};

/// A schema written as JSON, for what no type states the shape of (input read by hand, the free-form envelope).
/// `json_schema!(Name, r##"{…}"##)` declares the documentation type `Name`; `json_schema!(impl Type as Name, r##"{…}"##)`
/// documents an existing type.
macro_rules! json_schema {
    ($name:ident, $schema:literal) => {
        #[doc = concat!("The `", stringify!($name), "` schema of the OpenAPI document (a documentation type).")]
        #[derive(Debug)]
        pub(crate) struct $name;
        json_schema!(impl $name as $name, $schema);
    };
    (impl $ty:ty as $name:ident, $schema:literal) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::routes::openapi::from_json($schema)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
        #[cfg(test)]
        impl $ty {
            /// The literal as written, to check that utoipa's model reads all of it.
            pub(crate) fn literal() -> serde_json::Value {
                serde_json::from_str($schema).unwrap_or_default()
            }
        }
    };
}
mod shapes;
pub(crate) use shapes::*;

/// Reads a schema literal. The literals are constants checked by the tests below (each reads back to itself),
/// so the fallback, an empty schema, is never served.
pub(crate) fn from_json(text: &str) -> RefOr<Schema> {
    serde_json::from_str(text).unwrap_or_else(|_| RefOr::T(Schema::Object(Object::new())))
}

/// The document, serialised once.
pub(crate) fn document_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
        text.push('\n');
        text.into_bytes()
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "linkvault",
        description = "Self-hostable managed tokens for exchange connections, wire-compatible with Mesh Connect's \
            integration API. Every /api/v1 call needs X-Client-Id and X-Client-Secret; missing or wrong credentials \
            get HTTP 401 with an empty body. Every other /api/v1 response is an ApiResult envelope."
    ),
    servers((url = "http://127.0.0.1:8080")),
    security(("ClientId" = [], "ClientSecret" = [])),
    paths(
        super::tokens::import,
        super::tokens::status,
        super::account::remove,
        super::ops::healthz,
        super::ops::metrics,
        super::ops::openapi,
        super::integrations::list,
        super::integrations::schemes,
        super::authenticate::authenticate,
        crate::link::linktoken::create,
        super::webhooks::set,
        super::webhooks::get,
        super::token_refresh::refresh,
        super::transfer_configure::configure,
        super::transfers::preview,
        super::transfers::execute,
        super::portfolio::holdings,
        super::portfolio::balance,
        super::ops::livez,
        super::portfolio::value,
        super::portfolio::holdings_portfolio,
        super::portfolio::balance_portfolio,
        super::transfer_info::list,
        super::transfer_info::deposit_address,
        super::transfer_info::networks,
        super::transfer_info::tokens,
        super::transfer_list::mesh,
        super::transfer_list::integrations,
    ),
    components(schemas(ApiStatus, ErrorType, ApiResult)),
    modifiers(&Conventions)
)]
struct ApiDoc;

// Written by hand: the envelope is serialised by `api_result` from parts that differ per answer (the error
// envelope's free-form `errorData`, the success envelope's borrowed fixed parts), and each operation's 200 gets
// its own exact envelope from `wrap_success` below; this is the common shape they and every error share.
json_schema!(
    ApiResult,
    r##"{
    "type": "object",
    "description": "The envelope of every /api/v1 answer but the empty 401: an error's status and errorType, and for a success the content (in each operation's 200 schema).",
    "required": ["status", "message", "errorType"],
    "properties": {
        "status": {"$ref": "#/components/schemas/ApiStatus"},
        "message": {"type": "string"},
        "displayMessage": {"type": ["string", "null"]},
        "errorType": {"$ref": "#/components/schemas/ErrorType"},
        "errorData": {"type": ["object", "null"], "description": "For field errors: {\"field\": \"<name>\"}; for 429: {\"retryAfterSeconds\": n}"}
    }
}"##
);

/// What every operation shares, applied once instead of repeated on each annotation: the two API-key headers,
/// the 401 of each `/api/v1` operation (authentication is decided before any handler runs), the ApiResult
/// envelope around each `/api/v1` 200 content (every such handler answers `ApiOk<T>`), and no authentication
/// for the operational endpoints.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, header) in [("ClientId", "X-Client-Id"), ("ClientSecret", "X-Client-Secret")] {
            components
                .security_schemes
                .insert(name.to_owned(), SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(header))));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1/");
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                operation.tags = None;
                if api {
                    wrap_success(operation);
                    if operation.request_body.is_some() {
                        body_refusals(operation);
                    }
                    operation.responses.responses.insert(
                        "401".to_owned(),
                        RefOr::T(Response::new("Missing or wrong client credentials (empty body)")),
                    );
                } else {
                    operation.security = Some(Vec::new());
                }
            }
        }
    }
}

/// Every JSON body goes through `extract::ApiJson`, whose refusals every such operation can answer.
fn body_refusals(operation: &mut Operation) {
    let refusals = format!(
        "invalidJson (the body is empty or not a JSON object), bodyTooLarge (over {} KiB)",
        crate::MAX_BODY_BYTES / 1024
    );
    let responses = &mut operation.responses.responses;
    match responses.get_mut("400") {
        Some(RefOr::T(response)) => response.description = format!("{}; {refusals}", response.description),
        _ => {
            let mut response = Response::new(refusals);
            let schema = RefOr::Ref(utoipa::openapi::schema::Ref::from_schema_name("ApiResult"));
            response.content.insert("application/json".to_owned(), Content::new(Some(schema)));
            responses.insert("400".to_owned(), RefOr::T(response));
        }
    }
}

/// The 200 answer of `ApiOk<T>` (`api_result::OkEnvelope`): `status` ok, empty `message` and `errorType`, null
/// `displayMessage` and `errorData`, and the annotated schema as `content` (absent when none is annotated).
fn wrap_success(operation: &mut Operation) {
    let Some(RefOr::T(response)) = operation.responses.responses.get_mut("200") else { return };
    let json = response.content.shift_remove("application/json");
    let mut envelope = Object::builder()
        .schema_type(SchemaType::Type(Type::Object))
        .required("status")
        .required("message")
        .required("errorType")
        .property("status", from_json(r##"{"type": "string", "enum": ["ok"]}"##))
        .property("message", from_json(r##"{"type": "string", "enum": [""]}"##))
        .property("displayMessage", from_json(r##"{"type": "null"}"##))
        .property("errorType", from_json(r##"{"type": "string", "enum": [""]}"##))
        .property("errorData", from_json(r##"{"type": "null"}"##));
    if let Some(content) = json.and_then(|c| c.schema) {
        envelope = envelope.required("content").property("content", content);
    }
    response.content.insert("application/json".to_owned(), Content::new(Some(envelope.build())));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

    use super::*;
    use utoipa::PartialSchema as _;

    #[test]
    fn every_schema_literal_reads_back_to_itself() {
        let doc = ApiDoc::openapi();
        let written = serde_json::to_value(&doc).unwrap();
        let schemas = written["components"]["schemas"].as_object().unwrap();
        assert!(schemas.len() >= 30, "{} schemas", schemas.len());
        // An empty object is what from_json falls back to: no schema may be one.
        for (name, schema) in schemas {
            assert_ne!(schema, &serde_json::json!({}), "{name} did not read");
        }
        let mut literals = shapes::literals();
        literals.push((ApiResult::literal(), ApiResult::schema()));
        for (literal, read) in literals {
            assert_eq!(serde_json::to_value(read).unwrap(), literal);
        }
    }

    /// Whether `value` fits `schema` (resolved in `doc`), as far as the answers use JSON Schema: `$ref`, `oneOf`
    /// / `anyOf` / `allOf`, `type` (one or a list), `enum`, `properties` (every key of the value documented),
    /// `required`, `items` and `maxItems`. The first misfit, with its path.
    fn fits(
        doc: &serde_json::Value,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        at: &str,
    ) -> Result<(), String> {
        use serde_json::Value;
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let name = reference.strip_prefix("#/components/schemas/").ok_or(format!("{at}: ref {reference}"))?;
            let target = &doc["components"]["schemas"][name];
            if target.is_null() {
                return Err(format!("{at}: no component {name}"));
            }
            return fits(doc, target, value, at);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = schema.get(key) {
                let misfits: Vec<String> = branches.iter().filter_map(|b| fits(doc, b, value, at).err()).collect();
                if misfits.len() == branches.len() {
                    return Err(format!("{at}: no branch of {key} fits: {misfits:?}"));
                }
            }
        }
        if let Some(Value::Array(parts)) = schema.get("allOf") {
            for part in parts {
                fits(doc, part, value, at)?;
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{at}: type {types}")),
            };
            let fitting = |t: &str| match t {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                _ => false,
            };
            if !types.iter().any(|t| fitting(t)) {
                return Err(format!("{at}: {value} is not {types:?}"));
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.contains(value) {
                return Err(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Value::Object(fields) = value {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                for (key, field) in fields {
                    let property = properties.get(key).ok_or(format!("{at}: {key} is not documented"))?;
                    fits(doc, property, field, &format!("{at}.{key}"))?;
                }
            }
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    return Err(format!("{at}: required {name} is missing"));
                }
            }
        }
        if let Value::Array(items) = value {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                assert!(items.len() as u64 <= max, "{at}: more than {max} items");
            }
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for (i, element) in items.iter().enumerate() {
                    fits(doc, item, element, &format!("{at}[{i}]"))?;
                }
            }
        }
        Ok(())
    }

    /// Every answer's wire type against its schema in the served document: a sample of each (every shape an
    /// answer has: managed and client tokens, notAuthorized holdings, each execute outcome …) must fit, so a
    /// type and its documented schema cannot drift apart. Each sample's bytes must also be those of the same
    /// JSON with its keys sorted: the answers were sorted maps before they had types, and so they stay.
    #[test]
    fn every_wire_type_fits_its_schema_in_the_served_document() {
        let doc: serde_json::Value = serde_json::from_slice(document_bytes()).unwrap();
        let samples = [
            crate::routes::authenticate::samples(),
            crate::routes::integrations::samples(),
            crate::routes::ops::samples(),
            crate::routes::portfolio::samples(),
            crate::routes::token_refresh::samples(),
            crate::routes::transfer_configure::samples(),
            crate::routes::transfer_info::samples(),
            crate::routes::transfer_list::samples(),
            crate::routes::transfers::samples(),
            crate::routes::webhooks::samples(),
        ]
        .concat();
        assert!(samples.len() >= 30, "{} samples", samples.len());
        let mut seen = std::collections::BTreeSet::new();
        for (name, text) in &samples {
            let value: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let schema = &doc["components"]["schemas"][*name];
            assert!(schema.is_object(), "{name} is not a component of the served document");
            if let Err(misfit) = fits(&doc, schema, &value, name) {
                panic!("{name} does not fit its schema: {misfit}\n{text}");
            }
            assert_eq!(text, &value.to_string(), "{name}: keys not in JSON-name order");
            seen.insert(*name);
        }
        // The answers' components, each checked at least once (a new answer type belongs in its module's samples).
        for name in [
            "AccountToken",
            "AuthenticationScheme",
            "B2BBrokerRefreshTokenResponse",
            "BalanceModel",
            "ConfigureTransferResponse",
            "DepositAddressModel",
            "ExecuteTransferResponse",
            "FiatPortfolioModel",
            "Health",
            "HoldingsModel",
            "HoldingsValueModel",
            "IntegrationList",
            "ManagedIntegrationsModel",
            "ManagedTransferPage",
            "NetworksModel",
            "PortfolioModel",
            "PreviewTransferResponse",
            "TokensModel",
            "TransfersListModel",
            "WebhookEndpoint",
            "WebhookSet",
        ] {
            assert!(seen.contains(name), "no sample of {name}");
        }
    }

    #[test]
    fn the_document_is_built_once_and_is_json() {
        let first = document_bytes();
        assert!(std::ptr::eq(first, document_bytes()));
        let doc: serde_json::Value = serde_json::from_slice(first).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
