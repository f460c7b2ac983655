//! Signatures made by linkvault verify with the independent `standardwebhooks` npm package, over real HTTP
//! deliveries to a local receiver; tampered bodies and wrong secrets do not.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use linkvault_vault::WebhookPolicy;
use linkvault_vault::webhook_policy::parse_cidr;
use linkvault_webhooks::{Attempt, Deliverer, DeliveryRequest, WebhookSecret};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// These receivers run on loopback: the tests allow it as an operator would (`--webhook-allow-cidrs`, http).
fn loopback_receivers() -> Result<Arc<WebhookPolicy>, String> {
    let policy = WebhookPolicy::default().with_http_allowed(true).with_allowed_cidrs([parse_cidr("127.0.0.0/8")?]);
    Ok(Arc::new(policy))
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/webhooks")
}

async fn receiver() -> Result<(String, Received), Box<dyn std::error::Error>> {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().map(|mut v| v.push((headers, body))).ok();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, received))
}

/// Runs the Node verifier over the given cases; one result per case.
async fn verify_with_node(cases: &[Value]) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let dir = harness_dir();
    if !dir.join("node_modules/standardwebhooks").exists() {
        return Err(format!("run npm ci in {}", dir.display()).into());
    }
    let mut child = tokio::process::Command::new("node")
        .arg("verify.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    for case in cases {
        stdin.write_all(format!("{case}\n").as_bytes()).await?;
    }
    drop(stdin);
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut results = Vec::new();
    let collect = async {
        while let Some(line) = lines.next_line().await? {
            results.push(serde_json::from_str::<Value>(&line)?);
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), collect).await??;
    child.wait().await?;
    Ok(results)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn deliveries_verify_with_the_standardwebhooks_package() -> TestResult {
    let (url, received) = receiver().await?;
    let secret = WebhookSecret::generate()?;
    let deliverer = Deliverer::new(loopback_receivers()?)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (i, kind) in ["connection.created", "connection.reauthRequired", "connection.recovered"].iter().enumerate() {
        let body = json!({"type": kind, "timestamp": "2026-11-21T00:00:00Z", "data": {"tokenId": format!("t{i}")}})
            .to_string();
        let attempt = deliverer
            .deliver(
                &secret,
                &DeliveryRequest { url: &url, msg_id: &format!("msg_{i}"), timestamp: now, body: body.as_bytes() },
            )
            .await;
        assert_eq!(attempt, Attempt::Delivered { status: 200 });
    }
    let got = received.lock().map(|v| v.clone()).map_err(|_| "poisoned")?;
    assert_eq!(got.len(), 3);

    let other = WebhookSecret::generate()?;
    let mut cases = Vec::new();
    for (headers, body) in &got {
        let hdrs = json!({
            "webhook-id": header(headers, "webhook-id"),
            "webhook-timestamp": header(headers, "webhook-timestamp"),
            "webhook-signature": header(headers, "webhook-signature"),
        });
        let text = String::from_utf8(body.to_vec())?;
        cases.push(json!({"secret": secret.expose(), "headers": hdrs, "body": text}));
        // Negative controls: a tampered body, and another secret.
        cases.push(json!({"secret": secret.expose(), "headers": hdrs, "body": text.replace("t", "T")}));
        cases.push(json!({"secret": other.expose(), "headers": hdrs, "body": text}));
    }
    let results = verify_with_node(&cases).await?;
    assert_eq!(results.len(), cases.len());
    for (i, chunk) in results.chunks(3).enumerate() {
        assert_eq!(chunk[0]["ok"], json!(true), "delivery {i} should verify: {:?}", chunk[0]);
        assert_eq!(chunk[1]["ok"], json!(false), "a tampered body must not verify");
        assert_eq!(chunk[2]["ok"], json!(false), "another secret must not verify");
    }
    assert_eq!(results[3]["type"], json!("connection.reauthRequired"));
    Ok(())
}

#[tokio::test]
async fn unreachable_or_failing_receivers_are_failed_attempts() -> TestResult {
    let secret = WebhookSecret::generate()?;
    let deliverer = Deliverer::new(loopback_receivers()?)?;
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead = format!("http://{}/hook", listener.local_addr()?);
    drop(listener);
    let attempt =
        deliverer.deliver(&secret, &DeliveryRequest { url: &dead, msg_id: "m", timestamp: 1, body: b"{}" }).await;
    assert!(matches!(attempt, Attempt::Failed { .. }), "{attempt:?}");

    let app =
        axum::Router::new().route("/hook", post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let attempt =
        deliverer.deliver(&secret, &DeliveryRequest { url: &url, msg_id: "m", timestamp: 1, body: b"{}" }).await;
    assert_eq!(attempt, Attempt::Failed { reason: "receiver answered HTTP 503".into() });
    Ok(())
}
