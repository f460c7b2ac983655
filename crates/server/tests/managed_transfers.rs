//! What linkvault records about the managed transfers it makes, over HTTP on both backends:
//! `GET /api/v1/transfers/managed/mesh` (Mesh's `TransferModel` page: filters, pagination, client isolation,
//! a 400 naming each bad parameter), `GET /api/v1/transfers/managed/integrations`, and the status follower:
//! a sandbox transfer goes pending → succeeded on the injected clock, the list shows its hash, and a
//! Mesh-format webhook endpoint receives exactly one webhook per status, each signed as Mesh signs
//! (`X-Mesh-Signature-256`, checked here with `ring` from the raw body), with a stable `EventId` across a retry.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::{
    Answer, ClientCreds, Options, TestApp, TestResult, connect, create_client, spawn_app_with,
    spawn_sandbox_on_manual_clock,
};
use linkvault_domain::{ClientId, ManualClock};
use linkvault_server::{FollowerConfig, TransferFollower};
use linkvault_storage::WebhookFormat;
use linkvault_storage::testing::Backend;
use linkvault_webhooks::{DeliveryWorker, WebhookSecret, WorkerConfig};
use serde_json::{Value, json};

const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
const BASE: &str = "aa883b03-120d-477c-a588-37c2afd3ca71";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

async fn get(app: &TestApp, creds: (&str, &str), path_and_query: &str) -> Result<Answer, Box<dyn std::error::Error>> {
    app.call(reqwest::Method::GET, path_and_query, Some(creds), None).await
}

/// Previews and executes a 5-USDC-ish send from `token` (no second factor: Uphold and Binance), returning
/// the execute's `executeTransferResult`.
async fn send(
    app: &TestApp,
    client: &ClientCreds,
    token: &str,
    ty: &str,
    amount: f64,
    transaction_id: Option<&str>,
) -> Result<Value, Box<dyn std::error::Error>> {
    let w = (client.id.as_str(), client.write.as_str());
    let mut body = json!({"fromAuthToken": token, "fromType": ty, "networkId": BASE, "symbol": "USDC", "toAddress": ADDRESS,
               "amount": amount});
    if let Some(id) = transaction_id {
        body["transactionId"] = json!(id);
    }
    let preview = app.post(w, "/api/v1/transfers/managed/preview", &body).await?;
    let preview_id = preview.content()["previewResult"]["previewId"].as_str().ok_or(preview.raw.clone())?.to_owned();
    let execute = json!({"fromAuthToken": token, "fromType": ty, "previewId": preview_id});
    let done = app.post(w, "/api/v1/transfers/managed/execute", &execute).await?;
    assert_eq!(done.content()["status"], "succeeded", "{}", done.raw);
    Ok(done.content()["executeTransferResult"].clone())
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.content()["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["institutionTransactionId"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_list_filters_pages_and_keeps_clients_apart() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let (app, clock) = spawn_sandbox_on_manual_clock(backend).await?;
        let c = &app.client;
        let alice = connect(&app, c, &c.write, "alice", "uphold").await?;
        let bob = connect(&app, c, &c.write, "bob", "binanceInternational").await?;
        let t0 = clock.now_secs();
        let first = send(&app, c, &alice, "uphold", 5.0, None).await?;
        clock.advance(time::Duration::seconds(10));
        let second = send(&app, c, &alice, "uphold", 7.0, Some("order-2")).await?;
        clock.advance(time::Duration::seconds(10));
        let third = send(&app, c, &bob, "binanceInternational", 9.0, None).await?;
        let sent: Vec<String> =
            [&first, &second, &third].iter().map(|t| t["transferId"].as_str().unwrap_or_default().to_owned()).collect();

        // Another client's transfer never shows up in this one's list, and the reverse.
        let other = create_client(&app.vault, "other app").await?;
        let carol = connect(&app, &other, &other.write, "carol", "uphold").await?;
        let theirs = send(&app, &other, &carol, "uphold", 3.0, None).await?;

        let r = (c.id.as_str(), c.read.as_str());
        let all = get(&app, r, "/api/v1/transfers/managed/mesh").await?;
        assert_eq!((all.code, all.content()["total"].as_u64()), (200, Some(3)), "{}", all.raw);
        assert_eq!(ids(&all), sent, "oldest first");
        assert_eq!(all.content()["hasMorePages"], false);
        let item = &all.content()["items"][1];
        assert_eq!(
            (item["status"].as_str(), item["symbol"].as_str(), item["userId"].as_str()),
            (Some("pending"), Some("USDC"), Some("alice")),
            "{item}"
        );
        assert_eq!((item["clientTransactionId"].as_str(), item["amount"].as_f64()), (Some("order-2"), Some(7.0)));
        assert_eq!(
            (item["networkId"].as_str(), item["networkName"].as_str(), item["destinationAddress"].as_str()),
            (Some(BASE), Some("Base"), Some(ADDRESS))
        );
        assert_eq!(item["from"]["type"], "uphold", "{item}");
        assert_eq!(item["hash"], Value::Null, "no hash while pending");
        assert_eq!(item["amountInFiatCurrencyCode"], "USD");
        let mesh_id = item["id"].as_str().unwrap_or_default().to_owned();
        let theirs_list = get(&app, (&other.id, &other.read), "/api/v1/transfers/managed/mesh").await?;
        assert_eq!(ids(&theirs_list), vec![theirs["transferId"].as_str().unwrap_or_default().to_owned()]);

        let uphold_id = {
            let list = get(&app, r, "/api/v1/integrations").await?;
            let items = list.content()["items"].as_array().cloned().unwrap_or_default();
            items.iter().find(|i| i["type"] == "uphold").map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        }
        .ok_or("uphold in the catalog")?;
        let cases: Vec<(String, Vec<String>, u64)> = vec![
            // Names are case-insensitive, as Mesh's API binds them.
            ("count=2".into(), sent[..2].to_vec(), 3),
            ("Count=2&Offset=2".into(), sent[2..].to_vec(), 3),
            ("UserId=bob".into(), vec![sent[2].clone()], 1),
            (format!("IntegrationIds={uphold_id}"), sent[..2].to_vec(), 2),
            ("integrationids=00000000-0000-4000-8000-000000000000".into(), vec![], 0),
            ("ClientTransactionId=order-2".into(), vec![sent[1].clone()], 1),
            (format!("Id={mesh_id}"), vec![sent[1].clone()], 1),
            (format!("FromTimestamp={}", t0 + 5), sent[1..].to_vec(), 2),
            (format!("FromTimestamp={}&ToTimestamp={}", t0 + 5, t0 + 15), vec![sent[1].clone()], 1),
            ("DescendingOrder=true".into(), sent.iter().rev().cloned().collect(), 3),
            ("OrderBy=amountInFiat&DescendingOrder=TRUE".into(), sent.iter().rev().cloned().collect(), 3),
            ("Statuses=pending&Statuses=failed".into(), sent.clone(), 3),
            ("statuses=Succeeded".into(), vec![], 0),
            ("MinAmountInFiat=6&MaxAmountInFiat=8".into(), vec![sent[1].clone()], 1),
            ("Hash=0xnothing".into(), vec![], 0),
        ];
        for (query, expected, total) in cases {
            let page = get(&app, r, &format!("/api/v1/transfers/managed/mesh?{query}")).await?;
            assert_eq!((page.code, ids(&page)), (200, expected), "{query}: {}", page.raw);
            assert_eq!(page.content()["total"].as_u64(), Some(total), "{query}: {}", page.raw);
        }
        let more = get(&app, r, "/api/v1/transfers/managed/mesh?Count=2").await?;
        assert_eq!(more.content()["hasMorePages"], true);

        for (query, named) in [
            ("Count=500", "Count"),
            ("Count=0", "Count"),
            ("Offset=-1", "Offset"),
            ("Id=not-a-uuid", "Id"),
            ("Statuses=done", "Statuses"),
            ("FromTimestamp=yesterday", "FromTimestamp"),
            ("FromTimestamp=20&ToTimestamp=10", "ToTimestamp"),
            ("IntegrationIds=coinbase", "IntegrationIds"),
            ("OrderBy=colour", "OrderBy"),
            ("DescendingOrder=maybe", "DescendingOrder"),
            ("UserId=a&UserId=b", "UserId"),
            ("Bogus=1", "Bogus"),
        ] {
            let bad = get(&app, r, &format!("/api/v1/transfers/managed/mesh?{query}")).await?;
            assert_eq!((bad.code, bad.error_type()), (400, "invalidField"), "{query}: {}", bad.raw);
            let message = bad.body["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(named), "{query}: {message}");
        }
        let anonymous = app.call(reqwest::Method::GET, "/api/v1/transfers/managed/mesh", None, None).await?;
        assert_eq!(anonymous.code, 401);
    }
    Ok(())
}

/// `POST /api/v1/webhooks` takes the format; `GET` shows it; anything else is a 400 naming `format`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_endpoint_takes_a_format() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let c = &app.client;
        let w = (c.id.as_str(), c.write.as_str());
        let set =
            app.post(w, "/api/v1/webhooks", &json!({"url": "https://app.example.com/h", "format": "mesh"})).await?;
        assert_eq!((set.code, set.content()["format"].as_str()), (200, Some("mesh")), "{}", set.raw);
        let shown = get(&app, (&c.id, &c.read), "/api/v1/webhooks").await?;
        assert_eq!(shown.content()["format"], "mesh", "{}", shown.raw);
        let plain = app.post(w, "/api/v1/webhooks", &json!({"url": "https://app.example.com/h"})).await?;
        assert_eq!(plain.content()["format"], "standard", "the default");
        let bad =
            app.post(w, "/api/v1/webhooks", &json!({"url": "https://app.example.com/h", "format": "xml"})).await?;
        assert_eq!((bad.code, bad.error_type()), (400, "invalidField"), "{}", bad.raw);
        assert!(bad.body["message"].as_str().is_some_and(|m| m.starts_with("format")), "{}", bad.raw);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_integrations_say_what_can_send_and_over_which_networks() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let c = &app.client;
        let answer = get(&app, (&c.id, &c.read), "/api/v1/transfers/managed/integrations").await?;
        assert_eq!(answer.code, 200, "{}", answer.raw);
        let list = answer.content()["integrations"].as_array().cloned().unwrap_or_default();
        let coinbase = list.iter().find(|i| i["type"] == "coinbase").ok_or("coinbase listed")?;
        assert_eq!(
            (coinbase["supportsOutgoingTransfers"].as_bool(), coinbase["supportsIncomingTransfers"].as_bool()),
            (Some(true), Some(true)),
            "{coinbase}"
        );
        assert!(coinbase["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "{coinbase}");
        assert_eq!(coinbase["name"], "Coinbase");
        let networks = coinbase["networks"].as_array().cloned().unwrap_or_default();
        let ethereum = networks.iter().find(|n| n["id"] == ETHEREUM).ok_or("Ethereum listed")?;
        assert_eq!((ethereum["name"].as_str(), ethereum["chainId"].as_str()), (Some("Ethereum"), Some("1")));
        assert!(ethereum["supportedTokens"].as_array().is_some_and(|t| t.contains(&json!("USDC"))), "{ethereum}");
        // Integrations without an account API cannot move funds and list no networks.
        let catalog = get(&app, (&c.id, &c.read), "/api/v1/integrations").await?;
        assert_eq!(catalog.content()["items"].as_array().map(Vec::len), Some(list.len()), "every integration");
        for i in &list {
            if i["supportsOutgoingTransfers"] == false {
                assert_eq!(i["networks"], json!([]), "{i}");
            }
        }
    }
    Ok(())
}

/// What the test's Mesh-format receiver saw: the raw body and the signature header of each POST.
#[derive(Default)]
struct Inbox {
    deliveries: Vec<(Bytes, String)>,
    /// Answer 500 to this many requests first (to make the worker retry).
    fail_first: usize,
}

async fn mesh_receiver(fail_first: usize) -> std::io::Result<(String, Arc<Mutex<Inbox>>)> {
    let inbox = Arc::new(Mutex::new(Inbox { fail_first, ..Inbox::default() }));
    let sink = Arc::clone(&inbox);
    let app = axum::Router::new().route(
        "/mesh-hooks",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let signature =
                    headers.get("x-mesh-signature-256").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let mut inbox = sink.lock().unwrap_or_else(PoisonError::into_inner);
                inbox.deliveries.push((body, signature));
                if inbox.fail_first > 0 {
                    inbox.fail_first -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mesh-hooks", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, inbox))
}

/// Mesh's signature, computed here independently: base64(HMAC-SHA256(key = UTF-8 secret, raw body)).
fn mesh_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
}

trait Secs {
    fn now_secs(&self) -> i64;
}

impl Secs for ManualClock {
    fn now_secs(&self) -> i64 {
        linkvault_domain::Clock::now(self).unix_timestamp()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_followed_to_succeeded_and_each_change_is_one_mesh_webhook() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let (app, clock) = spawn_sandbox_on_manual_clock(backend).await?;
        let c = &app.client;
        let secret = WebhookSecret::generate()?;
        let secret_text = secret.expose().to_owned();
        // The first attempt is refused, so the pending announcement is retried.
        let (url, inbox) = mesh_receiver(1).await?;
        let client_id: ClientId = c.id.parse()?;
        app.vault.set_webhook_endpoint_with_format(client_id, &url, &secret_text, WebhookFormat::Mesh).await?;
        let deliverer = DeliveryWorker::new(Arc::clone(&app.vault), WorkerConfig::default())?;
        let follower = TransferFollower::new(app.state.clone(), FollowerConfig::default());

        let token = connect(&app, c, &c.write, "alice", "uphold").await?;
        let transfer = send(&app, c, &token, "uphold", 5.0, Some("order-77")).await?;
        let transfer_id = transfer["transferId"].as_str().unwrap_or_default().to_owned();
        let r = (c.id.as_str(), c.read.as_str());

        // First check, at once: still pending at the sandbox → announced as Pending. Two instances' followers
        // passing at the same moment: one of them checks it, the other finds it leased.
        let twin = TransferFollower::new(app.state.clone(), FollowerConfig::default());
        let (one, two) = tokio::join!(follower.run_once(), twin.run_once());
        assert_eq!(one? + two?, 1, "checked once");
        assert_eq!(follower.run_once().await?, 0, "the next check waits for its backoff");
        deliverer.run_once().await?;
        clock.advance(time::Duration::seconds(10));
        deliverer.run_once().await?; // the retry
        // Settled at the sandbox (2 s after the send), and the check is due (5 s after the first).
        assert_eq!(follower.run_once().await?, 1);
        deliverer.run_once().await?;
        clock.advance(time::Duration::hours(1));
        assert_eq!(follower.run_once().await?, 0, "final: not followed any more");
        deliverer.run_once().await?;

        let listed = get(&app, r, "/api/v1/transfers/managed/mesh?Statuses=succeeded").await?;
        assert_eq!(ids(&listed), vec![transfer_id.clone()], "{}", listed.raw);
        let item = &listed.content()["items"][0];
        let hash = item["hash"].as_str().unwrap_or_default().to_owned();
        assert!(hash.starts_with("0x"), "the list shows the hash: {item}");

        let deliveries = inbox.lock().unwrap_or_else(PoisonError::into_inner).deliveries.clone();
        // Two changes (pending, succeeded) and one retry; the connection's own events are not Mesh webhooks.
        assert_eq!(deliveries.len(), 3, "{:?}", deliveries.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>());
        let mut bodies = Vec::new();
        for (body, signature) in &deliveries {
            assert_eq!(signature, &mesh_signature(&secret_text, body), "signed over the raw body");
            bodies.push(serde_json::from_slice::<Value>(body)?);
        }
        let (refused, retried, settled) = (&bodies[0], &bodies[1], &bodies[2]);
        assert_eq!(refused["EventId"], retried["EventId"], "a retry keeps the EventId");
        assert_ne!(refused["Id"], retried["Id"], "and has a new Id");
        assert_ne!(retried["EventId"], settled["EventId"], "each change is its own event");
        assert_eq!(
            (retried["TransferStatus"].as_str(), settled["TransferStatus"].as_str()),
            (Some("Pending"), Some("Succeeded"))
        );
        assert_eq!((retried["TxHash"].clone(), settled["TxHash"].as_str()), (Value::Null, Some(hash.as_str())));
        assert_eq!(settled["TransferId"], item["id"], "Mesh's TransferId is the list's id");
        assert_eq!(
            (settled["UserId"].as_str(), settled["TransactionId"].as_str(), settled["Token"].as_str()),
            (Some("alice"), Some("order-77"), Some("USDC"))
        );
        assert_eq!((settled["Chain"].as_str(), settled["DestinationAddress"].as_str()), (Some("Base"), Some(ADDRESS)));
        assert_eq!(settled["SourceAccountProvider"], "Uphold");
        assert_eq!(settled["DestinationAmount"].as_f64(), Some(5.0));
        assert!(settled["SourceAmount"].as_f64().is_some_and(|a| a >= 5.0), "{settled}");
        let sent_at = settled["SentTimestamp"].as_i64().unwrap_or_default();
        assert!((sent_at - clock.now_secs()).abs() <= 3600, "SentTimestamp in seconds: {sent_at}");
        assert!(settled["Timestamp"].as_i64().unwrap_or_default() > sent_at * 100, "Timestamp in milliseconds");
    }
    Ok(())
}
