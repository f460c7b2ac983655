//! Request-body and query-string parsing that answers bad input with our own ApiResult, naming the offending
//! field (axum's own extractors answer a plain-text 400 outside the envelope).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::MAX_BODY_BYTES;
use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// Like `axum::Json`, but every rejection is an ApiResult that says what is wrong and where.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await.map_err(|_| {
            ApiError::new(
                ApiStatus::BadRequest,
                ErrorType::BodyTooLarge,
                format!("the request body is larger than {} KiB or was cut off", MAX_BODY_BYTES / 1024),
            )
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, mapping serde's errors onto missingField / invalidField / invalidJson.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::InvalidJson,
            "the request body is empty; send a JSON object",
        ));
    }
    // Serde would also accept a struct written as an array; our API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let parsed = serde_json::from_slice::<serde_json::Value>(bytes);
        let detail = match parsed {
            Ok(_) => "found another JSON value".to_owned(),
            Err(e) => format!("it is not valid JSON: {e}"),
        };
        return Err(ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::InvalidJson,
            format!("the request body must be a JSON object; {detail}"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        classify(&path, e.into_inner())
    })?;
    de.end().map_err(|e| classify(".", e))?;
    Ok(value)
}

/// Like `axum::extract::Query`, but every rejection is an ApiResult naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a URL query string into `T`: a missing parameter is missingField, a repeated or ill-typed one
/// invalidField with its name.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let text = e.into_inner().to_string();
        if let Some(name) = text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            ApiError::missing_field(name)
        } else if let Some(name) = text.strip_prefix("duplicate field `").and_then(|rest| rest.split('`').next()) {
            ApiError::invalid_field(name, "is given more than once")
        } else if path == "." {
            ApiError::invalid_field("query", text)
        } else {
            ApiError::invalid_field(&path, text)
        }
    })
}

fn classify(path: &str, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::InvalidJson,
            format!("the request body is not valid JSON: {error}"),
        ),
        Category::Data => {
            let text = error.to_string();
            if let Some(name) = text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
                let field = if path == "." { name.to_owned() } else { format!("{path}.{name}") };
                ApiError::missing_field(&field)
            } else if path == "." {
                ApiError::new(
                    ApiStatus::BadRequest,
                    ErrorType::InvalidJson,
                    format!("the request body must be a JSON object: {text}"),
                )
            } else {
                ApiError::invalid_field(path, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        user_id: String,
        expires_in_seconds: Option<u64>,
    }

    fn err(body: &str) -> ApiError {
        match parse_body::<Body>(body.as_bytes()) {
            Ok(_) => ApiError::new(ApiStatus::Ok, ErrorType::Internal, "parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn names_the_field() {
        let e = err(r#"{"expiresInSeconds": 5}"#);
        assert_eq!((e.error_type, e.message.as_str()), (ErrorType::MissingField, "userId is required"));
        let e = err(r#"{"userId": "u", "expiresInSeconds": "soon"}"#);
        assert_eq!(e.error_type, ErrorType::InvalidField);
        assert!(e.message.starts_with("expiresInSeconds: invalid type"), "{}", e.message);
        let e = err(r#"{"userId": 5}"#);
        assert!(e.message.starts_with("userId:"), "{}", e.message);
    }

    #[test]
    fn malformed_and_non_objects() {
        assert_eq!(err("{").error_type, ErrorType::InvalidJson);
        assert_eq!(err("").error_type, ErrorType::InvalidJson);
        assert_eq!(err("[1]").error_type, ErrorType::InvalidJson);
        assert_eq!(err(r#"{"userId":"u"} trailing"#).error_type, ErrorType::InvalidJson);
        assert!(parse_body::<Body>(br#"{"userId":"u","unknown":1}"#).is_ok());
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Query {
        #[serde(rename = "UserId")]
        user_id: Option<String>,
        #[serde(rename = "TimezoneOffset", default)]
        timezone_offset: Option<i64>,
    }

    #[test]
    fn query_errors_are_api_results_naming_the_parameter() {
        let e = parse_query::<Query>("UserId=a&TimezoneOffset=null").err().map(|e| (e.error_type, e.message));
        assert_eq!(e.as_ref().map(|e| e.0), Some(ErrorType::InvalidField));
        assert!(e.is_some_and(|e| e.1.starts_with("TimezoneOffset:")));
        let e = parse_query::<Query>("UserId=a&UserId=b").err().map(|e| (e.error_type, e.message));
        assert_eq!(e, Some((ErrorType::InvalidField, "UserId: is given more than once".to_owned())));
        let q = parse_query::<Query>("UserId=a%20b&TimezoneOffset=-3600&other=1").ok();
        assert_eq!(q.map(|q| (q.user_id, q.timezone_offset)), Some((Some("a b".to_owned()), Some(-3600))));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Bytes that are JSON some of the time: objects with and without the fields, other values, garbage.
        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            let field = prop_oneof![
                Just(String::new()),
                ".{0,20}".prop_map(|s| format!(r#""userId":{},"#, serde_json::Value::String(s))),
                any::<u64>().prop_map(|n| format!(r#""expiresInSeconds":{n},"#)),
                any::<i64>().prop_map(|n| format!(r#""userId":{n},"#)),
                "[ -~]{0,12}".prop_map(|s| format!("{s},")),
            ];
            prop_oneof![
                3 => (field.clone(), field).prop_map(|(a, b)| format!("{{{a}{b}\"z\":0}}").into_bytes()),
                1 => "[ \t\r\n{}\\[\\]\",:0-9a-z]{0,40}".prop_map(String::into_bytes),
                1 => prop::collection::vec(any::<u8>(), 0..128),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any bytes: the typed body, exactly as a JSON parser reads the object, or a 400 whose errorType
            /// says which kind of mistake it is (never another status, never a panic).
            #[test]
            fn any_bytes_parse_or_are_refused_as_bad_request(raw in bytes()) {
                match parse_body::<Body>(&raw) {
                    Ok(body) => {
                        let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(value.is_object());
                        prop_assert_eq!(value["userId"].as_str(), Some(body.user_id.as_str()));
                        prop_assert_eq!(value.get("expiresInSeconds").and_then(serde_json::Value::as_u64), body.expires_in_seconds);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.status, ApiStatus::BadRequest);
                        prop_assert!(
                            matches!(e.error_type, ErrorType::InvalidJson | ErrorType::MissingField | ErrorType::InvalidField),
                            "{:?}: {}", e.error_type, e.message
                        );
                        prop_assert!(!e.message.is_empty());
                    }
                }
            }

            /// What a JSON writer produces for the type parses back to the same values.
            #[test]
            fn written_bodies_round_trip(user in ".{0,40}", expires in proptest::option::of(any::<u64>())) {
                let text = serde_json::json!({"userId": user, "expiresInSeconds": expires}).to_string();
                let body = parse_body::<Body>(text.as_bytes()).map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!(body.user_id, user);
                prop_assert_eq!(body.expires_in_seconds, expires);
            }
        }
    }
}
