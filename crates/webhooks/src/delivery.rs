//! One delivery attempt: POST the event body with the three Standard Webhooks headers, within a timeout —
//! and only to an address the operator's [`WebhookPolicy`] allows. Names are resolved by linkvault itself
//! ([`GuardedResolver`]): every address is checked and only checked addresses are handed to the connector,
//! so a name that re-resolves between check and connect (DNS rebinding) cannot reach a refused address.

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use linkvault_vault::WebhookPolicy;
use linkvault_vault::webhook_policy::Refusal;

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

/// Resolves a host name to its addresses (the system resolver in production; tests inject their own).
pub trait Lookup: Send + Sync + std::fmt::Debug {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver (getaddrinfo, via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// The HTTP client's resolver: looks the name up, drops every address the policy refuses, and fails the
/// connection (with the refusal as its reason) when none is left. The connector connects only to what this
/// returns, so the checked address is the connected one.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<WebhookPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let lookup = Arc::clone(&self.lookup);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = lookup.lookup(&host).await?;
            let mut refused = None;
            let mut allowed = Vec::new();
            for ip in found {
                match policy.check_address(&host, ip) {
                    Ok(()) => allowed.push(SocketAddr::new(ip, 0)),
                    Err(refusal) => refused = refused.or(Some(refusal)),
                }
            }
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                (true, Some(refusal)) => Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    policy: Arc<WebhookPolicy>,
}

impl Deliverer {
    /// A deliverer that sends only where `policy` allows, resolving names with the system resolver.
    pub fn new(policy: Arc<WebhookPolicy>) -> Result<Self, String> {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    /// As [`Deliverer::new`], resolving names with `lookup`.
    pub fn with_lookup(policy: Arc<WebhookPolicy>, lookup: Arc<dyn Lookup>) -> Result<Self, String> {
        let resolver = GuardedResolver { policy: Arc::clone(&policy), lookup };
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A webhook URL is the client's; redirects to elsewhere are not followed.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, out of the policy's reach.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .user_agent("linkvault-webhooks")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { http, policy })
    }

    /// The URL's scheme and literal host under the policy (names are checked when resolved, in the connector).
    /// Checked on every attempt: the URL may have been registered under a laxer policy.
    fn refused(&self, url: &str) -> Option<Attempt> {
        self.policy.check_url(url).err().map(|refusal| Attempt::Failed { reason: format!("not sent: {refusal}") })
    }

    pub async fn deliver(&self, secret: &WebhookSecret, request: &DeliveryRequest<'_>) -> Attempt {
        if let Some(refused) = self.refused(request.url) {
            return refused;
        }
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
        if let Some(refused) = self.refused(url) {
            return refused;
        }
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
            Err(e) => match refusal_in(&e) {
                // The name resolved only to refused addresses: nothing was sent to them.
                Some(refusal) => Attempt::Failed { reason: format!("not sent: {refusal}") },
                None if e.is_timeout() => Attempt::Failed { reason: "receiver did not answer in time".into() },
                None if e.is_connect() => Attempt::Failed { reason: "receiver unreachable".into() },
                None => Attempt::Failed { reason: format!("delivery failed: {e}") },
            },
        }
    }
}

/// The policy's refusal behind a failed connection, if that is why it failed.
fn refusal_in(error: &reqwest::Error) -> Option<&Refusal> {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        source = e.source();
    }
    None
}
