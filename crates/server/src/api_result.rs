//! The ApiResult envelope every `/api/v1` response uses, its status→HTTP mapping, and the errorType
//! vocabulary. Internal errors are logged in full and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// HTTP 200/500/403/400/404/409/429/423/451 respectively
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApiStatus {
    Ok,
    ServerFailure,
    PermissionDenied,
    BadRequest,
    NotFound,
    Conflict,
    TooManyRequest,
    Locked,
    UnavailableForLegalReasons,
}

impl ApiStatus {
    pub const fn http(self) -> StatusCode {
        match self {
            ApiStatus::Ok => StatusCode::OK,
            ApiStatus::ServerFailure => StatusCode::INTERNAL_SERVER_ERROR,
            ApiStatus::PermissionDenied => StatusCode::FORBIDDEN,
            ApiStatus::BadRequest => StatusCode::BAD_REQUEST,
            ApiStatus::NotFound => StatusCode::NOT_FOUND,
            ApiStatus::Conflict => StatusCode::CONFLICT,
            ApiStatus::TooManyRequest => StatusCode::TOO_MANY_REQUESTS,
            ApiStatus::Locked => StatusCode::LOCKED,
            ApiStatus::UnavailableForLegalReasons => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        }
    }
}

/// The errorType values linkvault emits (documented in docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorType {
    MissingField,
    InvalidField,
    /// The body is not JSON at all (extension).
    InvalidJson,
    /// The body exceeds the size limit (extension).
    BodyTooLarge,
    TokenNotFound,
    TokenScopeMismatch,
    /// A read key called a write endpoint (extension).
    KeyScopeInsufficient,
    ReauthenticationRequired,
    /// A client-managed access or refresh token past its end.
    TokenExpired,
    /// A client-managed token whose family was revoked (refresh-token reuse, or a newer sign-in) (extension).
    TokenRevoked,
    /// A spent refresh token was presented again; its whole family is now revoked.
    RefreshTokenReused,
    /// Mesh's own errorType for a refresh token it does not recognise (`POST /api/v1/token/refresh`).
    BadRequest,
    LinkTokenExpired,
    LinkTokenUsed,
    IntegrationNotFound,
    IntegrationUnavailable,
    TooManyRequests,
    /// No such endpoint (extension).
    EndpointNotFound,
    /// The previewId is unknown, another client's, or for another tokenId (extension; Mesh's PreviewNotFound).
    PreviewNotFound,
    /// The preview can no longer be executed (extension; Mesh's PreviewExpired).
    PreviewExpired,
    /// A transactionId or Idempotency-Key already names a different transfer (extension).
    IdempotencyKeyReused,
    /// The integration holds tokens only (its catalog entry names no `account_api`), or cannot do this call
    /// (extension).
    FeatureNotSupported,
    /// The integration has no such thing (an unknown transfer id, no deposit address for that asset) (extension).
    NotFoundAtIntegration,
    /// The integration refused the transfer for a reason the end user can act on (extension).
    TransferRefused,
    /// The Link session was opened for another integration (`integrationId`), or already connected another
    /// account while `restrictMultipleAccounts` holds (extension).
    IntegrationNotAllowed,
    /// The instance is handling as many requests as it may (`serve --max-in-flight`); HTTP 503 with
    /// `Retry-After` (extension).
    ServerBusy,
    /// The request was not answered within `serve --request-timeout-secs`; HTTP 503 with `Retry-After`
    /// (extension).
    RequestTimeout,
    /// A deletion could not be recorded in the deletion ledger, so nothing was deleted; HTTP 503, retry once
    /// the operator has fixed the ledger (extension).
    DeletionLedgerUnavailable,
    /// Audit fail-closed (`--audit-fail-closed`) is on and the action's audit record could not be written, so the
    /// action was refused; HTTP 503 (extension).
    AuditUnavailable,
    /// Something failed on our side (extension).
    Internal,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T: Serialize> {
    status: ApiStatus,
    message: String,
    display_message: Option<String>,
    error_type: String,
    error_data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<T>,
}

/// A successful ApiResult (`content` omitted when `None`, as for DELETE /account).
#[derive(Debug)]
pub struct ApiOk<T: Serialize>(pub Option<T>);

/// The success envelope, borrowing its fixed parts (same JSON as [`Envelope`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OkEnvelope<T: Serialize> {
    status: ApiStatus,
    message: &'static str,
    display_message: Option<&'static str>,
    error_type: &'static str,
    error_data: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<T>,
}

/// The success envelope's bytes around `content` (what [`ApiOk`] answers).
pub(crate) fn ok_body<T: Serialize>(content: Option<T>) -> serde_json::Result<Vec<u8>> {
    let body = OkEnvelope {
        status: ApiStatus::Ok,
        message: "",
        display_message: None,
        error_type: "",
        error_data: None,
        content,
    };
    // Sized for a typical answer up front: growing the buffer from axum's small default copied the body
    // several times on every response.
    let mut bytes = Vec::with_capacity(1024);
    serde_json::to_writer(&mut bytes, &body)?;
    Ok(bytes)
}

/// A 200 answer whose body is already the envelope's JSON.
pub(crate) fn ok_json(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"))],
        bytes,
    )
        .into_response()
}

impl<T: Serialize> IntoResponse for ApiOk<T> {
    fn into_response(self) -> Response {
        match ok_body(self.0) {
            Ok(bytes) => ok_json(bytes),
            Err(e) => ApiError::internal(&e).into_response(),
        }
    }
}

/// An error answered as an ApiResult.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: ApiStatus,
    pub error_type: ErrorType,
    pub message: String,
    pub display_message: Option<String>,
    pub error_data: Option<Value>,
    /// Seconds the caller should wait before retrying, sent as `Retry-After` (set on 429 answers).
    pub retry_after: Option<u64>,
    /// The HTTP status when it is not the one `status` maps to (503 for a `serverFailure` we can recover from).
    pub http: Option<StatusCode>,
}

impl ApiError {
    pub fn new(status: ApiStatus, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
            display_message: None,
            error_data: None,
            retry_after: None,
            http: None,
        }
    }

    /// A rate limit was exceeded: 429 `tooManyRequest` with `Retry-After` (whole seconds, at least 1).
    pub fn too_many_requests(what: &str, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        let mut e = Self::new(
            ApiStatus::TooManyRequest,
            ErrorType::TooManyRequests,
            format!("too many requests: {what}; retry after {seconds} s"),
        )
        .with_data(serde_json::json!({ "retryAfterSeconds": seconds }))
        .with_display("Too many attempts. Wait a moment and try again.");
        e.retry_after = Some(seconds);
        e
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.error_data = Some(data);
        self
    }

    pub fn with_display(mut self, display: impl Into<String>) -> Self {
        self.display_message = Some(display.into());
        self
    }

    pub fn missing_field(field: &str) -> Self {
        Self::new(ApiStatus::BadRequest, ErrorType::MissingField, format!("{field} is required"))
            .with_data(serde_json::json!({ "field": field }))
    }

    pub fn invalid_field(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(ApiStatus::BadRequest, ErrorType::InvalidField, format!("{field}: {reason}"))
            .with_data(serde_json::json!({ "field": field }))
    }

    pub fn token_not_found() -> Self {
        Self::new(
            ApiStatus::NotFound,
            ErrorType::TokenNotFound,
            "no connection with this tokenId exists for this client",
        )
    }

    pub fn integration_not_found(integration_type: &str) -> Self {
        Self::new(
            ApiStatus::BadRequest,
            ErrorType::IntegrationNotFound,
            format!(
                "type: unknown integration {integration_type:?}; GET /api/v1/integrations lists the available types"
            ),
        )
        .with_data(serde_json::json!({ "field": "type" }))
    }

    /// The action was refused because its audit record could not be written (audit fail-closed): 503.
    pub fn audit_unavailable() -> Self {
        let mut e = Self::new(
            ApiStatus::ServerFailure,
            ErrorType::AuditUnavailable,
            "the audit log cannot be written, so this action was refused (the server runs with audit \
             fail-closed); nothing was changed, retry later",
        )
        .with_display("The service cannot complete this right now. Please try again later.");
        e.http = Some(StatusCode::SERVICE_UNAVAILABLE);
        e
    }

    /// A vault error where any failure but a refused audit is ours (the cause logged, a generic answer).
    pub fn from_vault_internal(e: linkvault_vault::VaultError) -> Self {
        match e {
            linkvault_vault::VaultError::AuditUnavailable => Self::audit_unavailable(),
            other => Self::internal(&other),
        }
    }

    /// Our fault: the cause goes to the log, the caller gets a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(ApiStatus::ServerFailure, ErrorType::Internal, "internal error; the server log has the details")
    }
}

impl From<linkvault_vault::VaultError> for ApiError {
    fn from(e: linkvault_vault::VaultError) -> Self {
        use linkvault_vault::VaultError;
        match e {
            VaultError::NotFound => ApiError::token_not_found(),
            VaultError::Invalid(v) => ApiError::invalid_field(v.field, v.reason),
            VaultError::Contended => ApiError::new(
                ApiStatus::Conflict,
                ErrorType::Internal,
                "the connection was being changed concurrently; retry the request",
            ),
            VaultError::Ledger(e) => {
                tracing::error!(error = %e, "deletion refused: the deletion ledger cannot be written");
                let mut refused = ApiError::new(
                    ApiStatus::ServerFailure,
                    ErrorType::DeletionLedgerUnavailable,
                    "the deletion could not be recorded in the deletion ledger, so nothing was deleted; retry \
                     later (the server log has the details)",
                );
                refused.http = Some(StatusCode::SERVICE_UNAVAILABLE);
                refused
            }
            VaultError::AuditUnavailable => ApiError::audit_unavailable(),
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope::<()> {
            status: self.status,
            message: self.message,
            display_message: self.display_message,
            error_type: serde_json::to_value(self.error_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            error_data: self.error_data,
            content: None,
        };
        let mut response = (self.http.unwrap_or(self.status.http()), Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// A handler panicked (a bug): answer like any internal error instead of dropping the connection.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(&"handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_http_codes() {
        let pairs = [
            (ApiStatus::Ok, 200),
            (ApiStatus::ServerFailure, 500),
            (ApiStatus::PermissionDenied, 403),
            (ApiStatus::BadRequest, 400),
            (ApiStatus::NotFound, 404),
            (ApiStatus::Conflict, 409),
            (ApiStatus::TooManyRequest, 429),
            (ApiStatus::Locked, 423),
            (ApiStatus::UnavailableForLegalReasons, 451),
        ];
        for (status, code) in pairs {
            assert_eq!(status.http().as_u16(), code);
        }
        assert_eq!(serde_json::to_value(ApiStatus::TooManyRequest).ok(), Some(serde_json::json!("tooManyRequest")));
        assert_eq!(
            serde_json::to_value(ErrorType::TokenScopeMismatch).ok(),
            Some(serde_json::json!("tokenScopeMismatch"))
        );
    }
}
