//! The listener's limits (`linkvault_server::serve`): header-read timeout, request timeout, load shedding and
//! the connection cap, on a router with handlers that wait as long as the test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use linkvault_server::ServerLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Generous bound on anything the server should do promptly (a bound on the test, not an assertion on time).
const PATIENCE: Duration = Duration::from_secs(30);

/// Serves a router with `/healthz`, `/fast` and `/slow` (which tells `entered` and then never answers).
async fn start(limits: ServerLimits, entered: Arc<Notify>) -> Result<String, Box<dyn std::error::Error>> {
    let app = Router::new().route("/healthz", get(|| async { "ok" })).route("/fast", get(|| async { "fast" })).route(
        "/slow",
        get(move || {
            let entered = Arc::clone(&entered);
            async move {
                entered.notify_one();
                std::future::pending::<()>().await;
                "never"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(linkvault_server::serve(listener, app, limits, std::future::pending()));
    Ok(addr)
}

/// Reads until the server closes the connection; `true` if it did within [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends a request to `/slow` and returns once its handler runs (the request stays in progress until aborted).
async fn hold_a_slow_request(
    http: &reqwest::Client,
    addr: &str,
    entered: &Notify,
) -> Result<tokio::task::JoinHandle<()>, Box<dyn std::error::Error>> {
    let request = http.get(format!("http://{addr}/slow")).send();
    let held = tokio::spawn(async move {
        let _ = request.await;
    });
    tokio::time::timeout(PATIENCE, entered.notified()).await?;
    Ok(held)
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_by_the_header_read_timeout() -> TestResult {
    let limits = ServerLimits { header_read_timeout: Duration::from_secs(1), ..ServerLimits::default() };
    let addr = start(limits, Arc::default()).await?;
    let mut slow = TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await?;
    assert!(closed_by_server(&mut slow).await, "a connection with an incomplete head stayed open");
    // A connection that never sends a byte is closed the same way.
    let mut silent = TcpStream::connect(&addr).await?;
    assert!(closed_by_server(&mut silent).await, "a silent connection stayed open");
    // Complete requests are still served.
    let answer = reqwest::get(format!("http://{addr}/healthz")).await?;
    assert_eq!(answer.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_request_not_answered_in_time_gets_503_in_the_envelope() -> TestResult {
    let limits = ServerLimits { request_timeout: Duration::from_secs(1), ..ServerLimits::default() };
    let addr = start(limits, Arc::default()).await?;
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    let answer = http.get(format!("http://{addr}/slow")).send().await?;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = answer.json().await?;
    assert_eq!(body["status"], "serverFailure");
    assert_eq!(body["errorType"], "requestTimeout");
    Ok(())
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_shed_with_retry_after_but_probes_are_not() -> TestResult {
    let entered = Arc::new(Notify::new());
    let limits = ServerLimits { max_in_flight: 1, ..ServerLimits::default() };
    let addr = start(limits, Arc::clone(&entered)).await?;
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    let hold = hold_a_slow_request(&http, &addr, &entered).await?;
    let shed = http.get(format!("http://{addr}/fast")).send().await?;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = shed.json().await?;
    assert_eq!(body["errorType"], "serverBusy");
    assert!(body["message"].as_str().unwrap_or_default().contains("Retry-After"), "{body}");
    assert_eq!(http.get(format!("http://{addr}/healthz")).send().await?.status(), 200, "probes are never shed");
    hold.abort();
    Ok(())
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() -> TestResult {
    let entered = Arc::new(Notify::new());
    let limits = ServerLimits { max_connections: 4, ..ServerLimits::default() };
    let addr = start(limits, Arc::clone(&entered)).await?;
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    // A connection with a request in progress is never the one closed.
    let busy = hold_a_slow_request(&http, &addr, &entered).await?;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&addr).await?;
        stream.write_all(b"GET /fast HTTP/1.1\r\n").await?;
        idle.push(stream);
    }
    // The cap is reached; a new client still gets an answer, and the oldest idle connection was closed for it.
    let answer = reqwest::get(format!("http://{addr}/fast")).await?;
    assert_eq!(answer.status(), 200);
    assert!(closed_by_server(&mut idle[0]).await, "the oldest idle connection stayed open");
    assert!(!busy.is_finished(), "the connection with a request in progress was closed");
    busy.abort();
    Ok(())
}
