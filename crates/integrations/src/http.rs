//! Bounded HTTP to upstream integrations: connect/total timeouts, a response-size cap enforced while the body
//! is read, no redirects, and `Retry-After` parsing. Error texts never carry URLs, headers or bodies.

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};

/// Limits applied to every upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange, from sending until the last body byte.
    pub total_timeout: Duration,
    /// Largest response body read; a larger one is an error, and reading stops at the cap.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_body_bytes: 1 << 20,
        }
    }
}

impl HttpLimits {
    /// The longest one upstream call can take, body included. A refresh lease must outlive this before the
    /// grant is sent (engineering notes, "Refresh correctness").
    pub fn worst_case(&self) -> Duration {
        self.total_timeout + OUTER_MARGIN
    }
}

/// Slack of the outer bound over reqwest's own total timeout.
const OUTER_MARGIN: Duration = Duration::from_millis(250);

/// Longest `Retry-After` honoured; anything longer is clamped (a typo upstream must not park us for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub(crate) fn build_client(limits: &HttpLimits) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("linkvault/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}

/// A fully read, size-checked response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn content_type(&self) -> String {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
    }

    /// Parses the body as a JSON object, or says what came instead (never quoting the body).
    pub fn json_object(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("HTTP {} with a JSON body that is not an object", self.status.as_u16())),
            Err(_) => Err(format!(
                "HTTP {} with a body that is not JSON (content-type {}, {} bytes)",
                self.status.as_u16(),
                self.content_type(),
                self.body.len()
            )),
        }
    }
}

/// Why an upstream call produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// No complete answer within the total timeout (includes a hung connection or a slow body).
    TimedOut,
    /// The connection could not be made or broke.
    Connection(String),
    /// The body exceeded the cap; reading stopped there.
    TooLarge { limit: usize },
}

impl FetchError {
    pub fn describe(&self) -> String {
        match self {
            FetchError::TimedOut => "no complete answer within the timeout".to_owned(),
            FetchError::Connection(reason) => reason.clone(),
            FetchError::TooLarge { limit } => format!("response body larger than the {limit}-byte limit"),
        }
    }
}

/// Whether a failed exchange may have reached the upstream. Only a failure to connect (refused, DNS, TLS, or
/// a connect timeout: reqwest's `is_connect`) proves the request was never written; a timeout or a broken
/// connection after that may follow a request the upstream processed ("sent, no answer").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    NeverSent,
    MaybeProcessed,
}

fn delivery_of(e: &reqwest::Error) -> Delivery {
    if e.is_connect() || e.is_builder() { Delivery::NeverSent } else { Delivery::MaybeProcessed }
}

fn classify_reqwest(e: reqwest::Error) -> FetchError {
    // A connect timeout is also a timeout; it is classed by what it proves (nothing was sent).
    if e.is_connect() {
        FetchError::Connection("connection failed".to_owned())
    } else if e.is_timeout() {
        FetchError::TimedOut
    } else if e.is_body() || e.is_decode() {
        FetchError::Connection("connection broke while reading the answer".to_owned())
    } else {
        FetchError::Connection(format!("request failed: {}", e.without_url()))
    }
}

/// Sends the request and reads the body incrementally, stopping at the cap, all within the total timeout.
pub(crate) async fn send(limits: &HttpLimits, request: RequestBuilder) -> Result<RawResponse, FetchError> {
    send_tracked(limits, request).await.map_err(|(e, _)| e)
}

/// [`send`], also saying whether a failed exchange may have reached the upstream (see [`Delivery`]).
pub(crate) async fn send_tracked(
    limits: &HttpLimits,
    request: RequestBuilder,
) -> Result<RawResponse, (FetchError, Delivery)> {
    let limit = limits.max_body_bytes;
    let tracked = |e: reqwest::Error| {
        let delivery = delivery_of(&e);
        (classify_reqwest(e), delivery)
    };
    let exchange = async move {
        let mut response = request.send().await.map_err(tracked)?;
        let declared =
            response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err((FetchError::TooLarge { limit }, Delivery::MaybeProcessed));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        // Once an answer has started, the upstream has processed the request, whatever breaks next.
        while let Some(chunk) = response.chunk().await.map_err(|e| (classify_reqwest(e), Delivery::MaybeProcessed))? {
            if body.len() + chunk.len() > limit {
                return Err((FetchError::TooLarge { limit }, Delivery::MaybeProcessed));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse { status, headers, body })
    };
    // reqwest's own timeout covers the same span; this outer bound also covers anything it might not.
    // It cannot tell whether the request was written, so it counts as maybe processed.
    tokio::time::timeout(limits.worst_case(), exchange)
        .await
        .unwrap_or(Err((FetchError::TimedOut, Delivery::MaybeProcessed)))
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), clamped to [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Server-provided text shortened and stripped of control characters before it goes into an error.
pub(crate) fn sanitize(text: &str) -> String {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    cleaned
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&future).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn sanitize_strips_control_characters_and_length() {
        assert_eq!(sanitize("a\nb\u{7}c"), "abc");
        assert_eq!(sanitize(&"x".repeat(500)).len(), 200);
    }
}
