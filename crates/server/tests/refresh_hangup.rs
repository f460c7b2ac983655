//! A refresh belongs to the engine, not to the request that needed it: a client that hangs up while its
//! `holdings/get` waits on a slow refresh cancels nothing. The grant completes, the connection stays `active`,
//! the refresh token is presented once, and the next request is served at once rather than after the lease.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Options, TestResult, spawn_app_with};
use linkvault_domain::ManualClock;
use linkvault_storage::testing::Backend;
use serde_json::json;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_during_a_slow_refresh_leaves_the_connection_active() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let options = Options { sandbox: true, clock: Some(clock.clone()), ..Options::default() };
        let app = spawn_app_with(backend, options).await?;
        let c = &app.client;
        let token = common::connect_oauth(&app, c, &c.read, "alice", "coinbase").await?;
        // The access token (3600 s) comes within the refresh margin: the next use refreshes it first.
        clock.advance(time::Duration::seconds(3590));
        // Coinbase's token endpoint now takes 2.5 s to answer the refresh.
        let fault = json!({"integration": "coinbase", "kind": "latency", "target": "token", "latencyMs": 2500});
        app.http.post(format!("{}/sandbox/admin/faults", app.base)).json(&fault).send().await?.error_for_status()?;

        let body = json!({"authToken": token, "type": "coinbase"}).to_string();
        let request = |client: &reqwest::Client| {
            client
                .post(format!("{}/api/v1/holdings/get", app.base))
                .header("X-Client-Id", &c.id)
                .header("X-Client-Secret", &c.read)
                .header("content-type", "application/json")
                .body(body.clone())
        };
        // The client gives up after half a second and closes its connection.
        let hasty = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
        let gave_up = request(&hasty).send().await;
        assert!(gave_up.as_ref().is_err_and(reqwest::Error::is_timeout), "the client hung up: {gave_up:?}");

        // The next request is served from the refresh that went on without the first one: well before the
        // 45 s lease a cancelled grant used to leave behind (bounded here at 15 s).
        let patient = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
        let next: serde_json::Value = request(&patient).send().await?.json().await?;
        assert_eq!(next["content"]["status"], "succeeded", "{next}");

        let status = app.status(&c.id, &c.read, &token).await?;
        assert_eq!(status.content()["status"], "active", "{}", status.raw);
        assert_eq!(status.content()["refreshCount"], 1, "one refresh, completed by the engine: {}", status.raw);
        let report: serde_json::Value = app
            .http
            .get(format!("{}/sandbox/admin/refresh-tokens?integration=coinbase", app.base))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(report["coinbase"]["maxPresentations"], 1, "no refresh token presented twice: {report}");
        assert_eq!(report["coinbase"]["presentedMoreThanOnce"], 0, "{report}");
    }
    Ok(())
}
