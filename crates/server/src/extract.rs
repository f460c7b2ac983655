//! Request-body parsing that answers bad input with our own ApiResult, naming the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
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
}
