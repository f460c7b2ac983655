//! One delivery attempt: POST the event body with the three Standard Webhooks headers, within a timeout.

use std::time::Duration;

use crate::signing::{WebhookSecret, sign};

/// How long a receiver may take to answer before the attempt counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One message to deliver. `msg_id` stays the same across retries, so receivers can deduplicate.
#[derive(Debug, Clone)]
pub struct DeliveryRequest<'a> {
    pub url: &'a str,
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// What an attempt achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Anything else: a non-2xx status, a timeout, a refused connection. Retried on the schedule.
    Failed { reason: String },
}

#[derive(Debug, Clone)]
pub struct Deliverer {
    http: reqwest::Client,
}

impl Deliverer {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A webhook URL is the client's; redirects to elsewhere are not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("linkvault-webhooks")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { http })
    }

    pub async fn deliver(&self, secret: &WebhookSecret, request: &DeliveryRequest<'_>) -> Attempt {
        let signature = sign(secret, request.msg_id, request.timestamp, request.body);
        let post = self
            .http
            .post(request.url)
            .header("content-type", "application/json")
            .header("webhook-id", request.msg_id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", signature)
            .body(request.body.to_vec());
        Self::outcome(post.send().await)
    }

    /// Posts a Mesh-format body (already built for this attempt) with its `X-Mesh-Signature-256`.
    pub async fn deliver_mesh(&self, secret: &WebhookSecret, url: &str, body: Vec<u8>) -> Attempt {
        let signature = crate::mesh::sign(secret.expose(), &body);
        let post = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(crate::mesh::SIGNATURE_HEADER, signature)
            .body(body);
        Self::outcome(post.send().await)
    }

    fn outcome(sent: Result<reqwest::Response, reqwest::Error>) -> Attempt {
        match sent {
            Ok(response) if response.status().is_success() => Attempt::Delivered { status: response.status().as_u16() },
            Ok(response) => {
                Attempt::Failed { reason: format!("receiver answered HTTP {}", response.status().as_u16()) }
            }
            Err(e) if e.is_timeout() => Attempt::Failed { reason: "receiver did not answer in time".into() },
            Err(e) if e.is_connect() => Attempt::Failed { reason: "receiver unreachable".into() },
            Err(e) => Attempt::Failed { reason: format!("delivery failed: {e}") },
        }
    }
}
