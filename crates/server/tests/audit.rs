//! The audit log over HTTP: with fail-closed, an action whose audit record cannot be written is refused with
//! 503 `auditUnavailable` and changes nothing; by default it goes ahead and the failure is counted in
//! `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use common::{Options, TestApp, TestResult, spawn_app_with, token_id};
use linkvault_storage::testing::Backend;
use serde_json::json;

/// Deletes the audit head row straight in the database (as a broken or hostile database would), so no audit
/// record can be appended.
async fn break_audit_log(backend: Backend, app: &TestApp) -> TestResult {
    let sql = "DELETE FROM audit_head";
    match backend {
        Backend::Sqlite => {
            rusqlite::Connection::open(&app.fresh.url)?.execute_batch(sql)?;
        }
        Backend::Postgres => {
            let (client, conn) = tokio_postgres::connect(&app.fresh.url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(conn);
            let done = client.batch_execute(sql).await;
            drop(client);
            let _ = driver.await;
            done?;
        }
    }
    Ok(())
}

fn import_body(user: &str) -> serde_json::Value {
    json!({"userId": user, "type": "coinbase", "accessToken": format!("access-{user}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_and_changes_nothing() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options { audit_fail_closed: true, ..Options::default() }).await?;
        let c = &app.client;
        let first = app.import(&c.read, import_body("alice")).await?;
        assert_eq!(first.code, 200, "{}", first.raw);
        let tid = token_id(&first);
        break_audit_log(backend, &app).await?;

        let removed = app.remove(&c.id, &c.read, &tid, "coinbase").await?;
        assert_eq!(removed.code, 503, "{backend:?}: {}", removed.raw);
        assert_eq!(removed.error_type(), "auditUnavailable");
        assert_eq!(removed.body["status"], "serverFailure");
        assert!(removed.body["message"].as_str().unwrap_or_default().contains("audit log cannot be written"));
        assert_eq!(app.status(&c.id, &c.read, &tid).await?.code, 200, "the connection is still there");

        let refused = app.import(&c.read, import_body("bob")).await?;
        assert_eq!((refused.code, refused.error_type()), (503, "auditUnavailable"), "{}", refused.raw);
        assert_eq!(app.vault.count_connections().await?, 1, "no connection was stored");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_action_goes_ahead_and_the_failure_is_counted() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let c = &app.client;
        let tid = token_id(&app.import(&c.read, import_body("alice")).await?);
        break_audit_log(backend, &app).await?;
        let removed = app.remove(&c.id, &c.read, &tid, "coinbase").await?;
        assert_eq!(removed.code, 200, "{backend:?}: {}", removed.raw);
        assert_eq!(app.status(&c.id, &c.read, &tid).await?.error_type(), "tokenNotFound");
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await?.text().await?;
        assert!(metrics.lines().any(|l| l == "linkvault_audit_append_failures_total 1"), "{metrics}");
    }
    Ok(())
}
