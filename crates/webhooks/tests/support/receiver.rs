//! A webhook receiver for tests in any crate (included with `#[path]`): records `(event type, tokenId)` of
//! each delivery whose Standard Webhooks signature verifies, and counts the ones that do not.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use linkvault_webhooks::WebhookSecret;

#[derive(Debug, Default)]
struct Inbox {
    events: Vec<(String, String)>,
    bad_signatures: u64,
}

/// A running receiver; cheap to clone.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    /// Listens on a loopback port at `/hooks`, verifying with `secret`.
    pub async fn start(secret: WebhookSecret) -> std::io::Result<Receiver> {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let sink = Arc::clone(&inbox);
        let secret = Arc::new(secret);
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (sink, secret) = (Arc::clone(&sink), Arc::clone(&secret));
                async move {
                    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    let timestamp = h("webhook-timestamp").parse::<i64>().unwrap_or_default();
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let valid = linkvault_webhooks::verify(
                        &secret,
                        &h("webhook-id"),
                        timestamp,
                        &body,
                        &h("webhook-signature"),
                        now,
                        // Tests may run on an injected clock far from the wall clock.
                        i64::MAX / 2,
                    );
                    let mut inbox = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    if !valid {
                        inbox.bad_signatures += 1;
                        return StatusCode::UNAUTHORIZED;
                    }
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let kind = event["type"].as_str().unwrap_or_default().to_owned();
                    let token = event["data"]["tokenId"].as_str().unwrap_or_default().to_owned();
                    inbox.events.push((kind, token));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { url, inbox })
    }

    /// Every verified delivery so far, in arrival order.
    pub fn events(&self) -> Vec<(String, String)> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner).events.clone()
    }

    /// Event types delivered for one tokenId, in arrival order.
    pub fn types_for(&self, token_id: &str) -> Vec<String> {
        self.events().into_iter().filter(|(_, t)| t == token_id).map(|(k, _)| k).collect()
    }

    /// TokenIds announced with `kind`.
    pub fn tokens_with(&self, kind: &str) -> HashSet<String> {
        self.events().into_iter().filter(|(k, _)| k == kind).map(|(_, t)| t).collect()
    }

    pub fn bad_signatures(&self) -> u64 {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner).bad_signatures
    }
}
