//! Webhooks never reach what the operator's policy refuses (SSRF): literal non-public hosts, names that
//! resolve to them (the resolved address is what is connected to, so a resolver answering a refused address
//! is never connected to), plain http outside an explicit allowance; and the allow-list opens exactly what
//! it names.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::post;
use linkvault_vault::WebhookPolicy;
use linkvault_vault::webhook_policy::{parse_cidr, parse_host};
use linkvault_webhooks::{Attempt, Deliverer, DeliveryRequest, Lookup, WebhookSecret};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A loopback receiver that counts the requests that reach it. Returns its port and the count.
async fn counting_receiver() -> Result<(u16, Arc<AtomicUsize>), Box<dyn std::error::Error>> {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, hits))
}

/// A resolver that answers every name with one address and counts the lookups.
#[derive(Debug)]
struct FixedLookup {
    answer: IpAddr,
    lookups: AtomicUsize,
}

impl Lookup for FixedLookup {
    fn lookup(&self, _host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer;
        Box::pin(async move { Ok(vec![answer]) })
    }
}

async fn post_to(deliverer: &Deliverer, url: &str) -> Result<Attempt, Box<dyn std::error::Error>> {
    let secret = WebhookSecret::generate()?;
    Ok(deliverer.deliver(&secret, &DeliveryRequest { url, msg_id: "msg_1", timestamp: 1, body: b"{}" }).await)
}

fn reason(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Failed { reason } => reason.clone(),
        Attempt::Delivered { .. } => String::new(),
    }
}

fn http_only() -> WebhookPolicy {
    WebhookPolicy::default().with_http_allowed(true)
}

#[tokio::test]
async fn literal_non_public_hosts_are_never_posted_to() -> TestResult {
    let (port, hits) = counting_receiver().await?;
    let deliverer = Deliverer::new(Arc::new(http_only()))?;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://224.0.0.1/".to_owned(),
    ] {
        let attempt = post_to(&deliverer, &url).await?;
        assert!(reason(&attempt).starts_with("not sent: "), "{url}: {attempt:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no request may reach a refused address");
    Ok(())
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_with_the_reason() -> TestResult {
    let (port, hits) = counting_receiver().await?;
    // The system resolver: `localhost` is loopback (refused by name too, RFC 6761)...
    let deliverer = Deliverer::new(Arc::new(http_only()))?;
    let attempt = post_to(&deliverer, &format!("http://localhost:{port}/hook")).await?;
    assert!(reason(&attempt).contains("loopback"), "{attempt:?}");
    // ... and any other name whose address is loopback is refused after resolution, naming the address.
    let lookup = Arc::new(FixedLookup { answer: "127.0.0.1".parse()?, lookups: AtomicUsize::new(0) });
    let deliverer = Deliverer::with_lookup(Arc::new(http_only()), lookup.clone())?;
    let attempt = post_to(&deliverer, &format!("http://hooks.example.com:{port}/hook")).await?;
    let why = reason(&attempt);
    assert!(why.contains("hooks.example.com resolves to 127.0.0.1, a loopback address"), "{why}");
    assert_eq!(lookup.lookups.load(Ordering::SeqCst), 1, "the name was resolved by the policy's resolver");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the refused address was never connected to");
    Ok(())
}

#[tokio::test]
async fn the_checked_address_is_the_connected_one() -> TestResult {
    // With loopback allowed, a made-up name delivers to the address the resolver gave: the connector takes
    // its addresses from the checking resolver, not from a second lookup that could answer differently.
    let (port, hits) = counting_receiver().await?;
    let lookup = Arc::new(FixedLookup { answer: "127.0.0.1".parse()?, lookups: AtomicUsize::new(0) });
    let policy = http_only().with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
    let deliverer = Deliverer::with_lookup(Arc::new(policy), lookup.clone())?;
    let attempt = post_to(&deliverer, &format!("http://receiver.invalid:{port}/hook")).await?;
    assert_eq!(attempt, Attempt::Delivered { status: 200 });
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(lookup.lookups.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn the_allow_list_opens_named_hosts_and_networks_only() -> TestResult {
    let (port, hits) = counting_receiver().await?;
    let lookup = Arc::new(FixedLookup { answer: "127.0.0.1".parse()?, lookups: AtomicUsize::new(0) });
    let by_host = http_only().with_allowed_hosts([parse_host("hooks.internal.example")?]);
    let deliverer = Deliverer::with_lookup(Arc::new(by_host), lookup.clone())?;
    let allowed = post_to(&deliverer, &format!("http://hooks.internal.example:{port}/hook")).await?;
    assert_eq!(allowed, Attempt::Delivered { status: 200 });
    let other = post_to(&deliverer, &format!("http://other.internal.example:{port}/hook")).await?;
    assert!(reason(&other).starts_with("not sent: "), "{other:?}");

    let by_network = http_only().with_allowed_cidrs([parse_cidr("127.0.0.1/32")?]);
    let deliverer = Deliverer::new(Arc::new(by_network))?;
    assert_eq!(
        post_to(&deliverer, &format!("http://127.0.0.1:{port}/hook")).await?,
        Attempt::Delivered { status: 200 }
    );
    let outside = post_to(&deliverer, &format!("http://127.0.0.2:{port}/hook")).await?;
    assert!(reason(&outside).contains("loopback"), "{outside:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn plain_http_needs_the_operators_allowance_and_sandbox_gives_loopback() -> TestResult {
    let (port, hits) = counting_receiver().await?;
    let url = format!("http://127.0.0.1:{port}/hook");
    let https_only = WebhookPolicy::default().with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
    let attempt = post_to(&Deliverer::new(Arc::new(https_only))?, &url).await?;
    assert!(reason(&attempt).contains("must use https"), "{attempt:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let sandbox = Deliverer::new(Arc::new(WebhookPolicy::default().sandbox()))?;
    assert_eq!(post_to(&sandbox, &url).await?, Attempt::Delivered { status: 200 });
    let metadata = post_to(&sandbox, "http://169.254.169.254/latest/meta-data/").await?;
    assert!(reason(&metadata).contains("link-local"), "{metadata:?}");
    Ok(())
}
