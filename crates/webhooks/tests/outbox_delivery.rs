//! The outbox deliverer end to end: events written by connection changes reach the client's endpoint, signed;
//! a receiver that is down for a while gets every event once it is back; nothing is lost or given up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use linkvault_crypto::MasterKey;
use linkvault_domain::{IntegrationType, ManualClock, NaturalKey, Scope, SystemClock, TokenMode, UserId};
use linkvault_storage::testing::{Backend, fresh_store};
use linkvault_vault::webhook_policy::parse_cidr;
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault, WebhookPolicy};
use linkvault_webhooks::{DeliveryWorker, WebhookSecret, WorkerConfig, verify};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Inbox = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn start_receiver(listener: tokio::net::TcpListener, inbox: Inbox) {
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let inbox = Arc::clone(&inbox);
            async move {
                inbox.lock().map(|mut v| v.push((headers, body))).ok();
                "ok"
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let fresh = fresh_store(backend).await?;
        // The receiver runs on loopback: allowed as an operator would (`--webhook-allow-cidrs`, http).
        let policy = WebhookPolicy::default().with_http_allowed(true).with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
        let vault = Arc::new(
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::new(SystemClock))
                .await?
                .with_webhook_policy(policy),
        );
        let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
        let silent = vault.create_client("no endpoint", TokenMode::Managed).await?.client_id;

        // The receiver's port is reserved, then closed: it is down.
        let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = reserved.local_addr()?;
        drop(reserved);
        let secret = WebhookSecret::generate()?;
        vault.set_webhook_endpoint(client, &format!("http://{addr}/hook"), secret.expose()).await?;

        // Connection changes write events: 5 created, 1 deleted, and one for a client without an endpoint.
        let mut ids = Vec::new();
        for i in 0..5 {
            let key = NaturalKey {
                client_id: client,
                user_id: UserId::parse(&format!("user-{i}"))?,
                integration: IntegrationType::parse("coinbase")?,
                scope: Scope::Read,
            };
            ids.push(
                vault
                    .store_credentials(&key, &IntegrationCredentials::new("a", None), &ConnectionMeta::default())
                    .await?
                    .token_id,
            );
        }
        vault.delete(client, ids[0]).await?;
        let other = NaturalKey {
            client_id: silent,
            ..NaturalKey {
                client_id: client,
                user_id: UserId::parse("x")?,
                integration: IntegrationType::parse("coinbase")?,
                scope: Scope::Read,
            }
        };
        vault.store_credentials(&other, &IntegrationCredentials::new("a", None), &ConnectionMeta::default()).await?;

        // Retries run on the real schedule, compressed 10,000×: 5 s → 0.5 ms, 5 min → 30 ms, 30 min → 180 ms.
        let config = WorkerConfig { schedule_scale: 1e-4, ..WorkerConfig::default() };
        let worker = DeliveryWorker::new(Arc::clone(&vault), config)?;
        for _ in 0..4 {
            worker.run_once().await?;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let metrics = worker.metrics();
        assert!(metrics.failed_attempts.load(std::sync::atomic::Ordering::Relaxed) >= 6, "attempts failed while down");
        assert_eq!(fresh.store.count_pending_outbox().await?, 6, "nothing is lost while the receiver is down");

        // The receiver comes back on the same address; every event arrives.
        let inbox: Inbox = Arc::default();
        start_receiver(tokio::net::TcpListener::bind(addr).await?, Arc::clone(&inbox)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while fresh.store.count_pending_outbox().await? > 0 && tokio::time::Instant::now() < deadline {
            worker.run_once().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(fresh.store.count_pending_outbox().await?, 0);

        let got = inbox.lock().map(|v| v.clone()).map_err(|_| "poisoned")?;
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for (headers, body) in &got {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let ts: i64 = h("webhook-timestamp").parse()?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(verify(&secret, &h("webhook-id"), ts, body, &h("webhook-signature"), now, 300), "signature");
            by_id.insert(h("webhook-id"), serde_json::from_slice(body)?);
        }
        assert_eq!(by_id.len(), 6, "six distinct events, each delivered: {:?}", by_id.keys());
        assert_eq!(got.len(), 6, "each delivered exactly once after the receiver came back");
        let kinds: Vec<&str> = by_id.values().filter_map(|v| v["type"].as_str()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "connection.created").count(), 5);
        assert_eq!(kinds.iter().filter(|k| **k == "connection.deleted").count(), 1);
        // The event for the client without an endpoint was set aside, not retried forever.
        assert_eq!(metrics.given_up.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(by_id.values().all(|v| !v.to_string().contains("\"a\"")), "no credential in any payload");
    }
    Ok(())
}

/// Retention on the vault's clock: a pass deletes the events finished (delivered or given up) more than the
/// retention ago, and keeps pending ones however old. No sleeps: the test moves the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_events_are_purged_after_the_retention() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let fresh = fresh_store(backend).await?;
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let policy = WebhookPolicy::default().with_http_allowed(true).with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
        let vault = Arc::new(
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), clock.clone())
                .await?
                .with_webhook_policy(policy),
        );
        // One client has no endpoint (its event is given up at once); one's receiver is down (pending).
        let silent = vault.create_client("no endpoint", TokenMode::Managed).await?.client_id;
        let failing = vault.create_client("down", TokenMode::Managed).await?.client_id;
        let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
        let dead = format!("http://{}/hook", reserved.local_addr()?);
        drop(reserved);
        vault.set_webhook_endpoint(failing, &dead, WebhookSecret::generate()?.expose()).await?;
        for client in [silent, failing] {
            let key = NaturalKey {
                client_id: client,
                user_id: UserId::parse("user-1")?,
                integration: IntegrationType::parse("coinbase")?,
                scope: Scope::Read,
            };
            vault.store_credentials(&key, &IntegrationCredentials::new("a", None), &ConnectionMeta::default()).await?;
        }
        let config = WorkerConfig { schedule_scale: 1e-6, ..WorkerConfig::default() };
        let worker = DeliveryWorker::new(Arc::clone(&vault), config)?;
        let metrics = worker.metrics();
        let purged = || metrics.purged.load(std::sync::atomic::Ordering::Relaxed);
        worker.run_once().await?;
        assert_eq!(metrics.given_up.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(fresh.store.count_pending_outbox().await?, 1);

        clock.advance(time::Duration::days(29));
        worker.run_once().await?;
        assert_eq!(purged(), 0, "within the retention nothing is deleted");
        clock.advance(time::Duration::days(2));
        worker.run_once().await?;
        assert_eq!(purged(), 1, "the given-up event is deleted after 30 days");
        assert_eq!(fresh.store.count_pending_outbox().await?, 1, "a pending event stays, however old");
        assert!(worker.metrics().render().contains("linkvault_webhook_outbox_purged_total 1"));
    }
    Ok(())
}

/// Finding 14.5b: a client in client-managed token mode never receives a tokenId in a webhook. Its connection
/// events name the connection by `meshAccountId` (what Link and `/authenticate` gave it); a managed client's
/// events keep the tokenId.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mode_webhooks_carry_no_token_id() -> TestResult {
    let fresh = fresh_store(Backend::Sqlite).await?;
    let policy = WebhookPolicy::default().with_http_allowed(true).with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
    let vault = Arc::new(
        Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::new(SystemClock))
            .await?
            .with_webhook_policy(policy),
    );
    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    start_receiver(listener, Arc::clone(&inbox)).await;

    let mut token_ids = Vec::new();
    for mode in [TokenMode::Client, TokenMode::Managed] {
        let client = vault.create_client("app", mode).await?.client_id;
        vault.set_webhook_endpoint(client, &url, WebhookSecret::generate()?.expose()).await?;
        let key = NaturalKey {
            client_id: client,
            user_id: UserId::parse("alice")?,
            integration: IntegrationType::parse("coinbase")?,
            scope: Scope::Read,
        };
        let creds = IntegrationCredentials::new("a", None);
        let token_id = vault.store_credentials(&key, &creds, &ConnectionMeta::default()).await?.token_id;
        vault.delete(client, token_id).await?;
        token_ids.push(token_id);
    }
    let worker = DeliveryWorker::new(Arc::clone(&vault), WorkerConfig::default())?;
    for _ in 0..10 {
        if fresh.store.count_pending_outbox().await? == 0 {
            break;
        }
        worker.run_once().await?;
    }
    assert_eq!(fresh.store.count_pending_outbox().await?, 0, "every event was delivered");

    let got = inbox.lock().map(|v| v.clone()).map_err(|_| "poisoned")?;
    let bodies: Vec<String> = got.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    let (client_mode, managed) = (token_ids[0], token_ids[1]);
    let handle = linkvault_vault::events::mesh_account_id(client_mode).to_string();
    let of = |id: &str| bodies.iter().filter(|b| b.contains(id)).cloned().collect::<Vec<_>>();
    assert!(of(&client_mode.to_string()).is_empty(), "no client-mode body names its tokenId: {bodies:?}");
    for body in of(&handle) {
        let event: Value = serde_json::from_str(&body)?;
        assert_eq!(event["data"]["meshAccountId"], handle);
        assert!(event["data"].get("tokenId").is_none(), "{body}");
    }
    assert_eq!(of(&handle).len(), 2, "created and deleted, named by meshAccountId: {bodies:?}");
    assert_eq!(of(&managed.to_string()).len(), 2, "a managed client's events keep the tokenId: {bodies:?}");
    Ok(())
}
