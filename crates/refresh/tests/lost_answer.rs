//! Issue 12 (b): the provider gets the refresh and its answer never arrives (the upstream answers after the
//! client's timeout). That refresh token is never presented again outside the integration's reuse grace: a
//! rotating integration without a grace becomes `reauthRequired` (`refreshOutcomeUnknown`, its webhook, a
//! counted metric); with a grace the same token is presented again inside it and the connection recovers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::*;
use linkvault_domain::{Clock, ConnectionStatus, ManualClock};
use linkvault_integrations::{HttpLimits, OAuthClient};
use linkvault_refresh::{EngineConfig, REASON_OUTCOME_UNKNOWN, RefreshEngine, RefreshOutcome};
use linkvault_storage::testing::Backend;
use serde_json::json;
use time::OffsetDateTime;

fn manual_clock() -> Arc<ManualClock> {
    let now = OffsetDateTime::now_utc();
    Arc::new(ManualClock::new(now.replace_nanosecond(0).unwrap_or(now)))
}

/// An engine whose grants give up after one second, beside the harness's own.
fn short_timeout_engine(h: &Harness) -> RefreshEngine {
    let limits = HttpLimits {
        connect_timeout: StdDuration::from_secs(1),
        total_timeout: StdDuration::from_secs(1),
        max_body_bytes: 1 << 16,
    };
    let oauth = OAuthClient::with_limits(Arc::clone(&h.clock), limits).unwrap();
    RefreshEngine::new(
        Arc::clone(&h.vault),
        Arc::clone(&h.fresh.store),
        Arc::clone(&h.catalog),
        oauth,
        Arc::clone(&h.clock),
        EngineConfig::new(),
    )
}

async fn lost_answer(
    backend: Backend,
    integration: &'static str,
    grace: Option<u64>,
) -> Res<(Harness, RefreshEngine, linkvault_domain::TokenId)> {
    let clock = manual_clock();
    let h = harness(
        backend,
        clock.clone() as Arc<dyn Clock>,
        |c| c,
        |catalog| {
            with_timing(catalog, integration, |t| {
                t.rotates_refresh_tokens = true;
                t.reuse_grace_secs = grace;
            })
        },
        EngineConfig::new(),
    )
    .await?;
    let engine = short_timeout_engine(&h);
    let id = h.connect(integration, "alice").await?;
    engine.run_once().await?;
    clock.set(h.row(id).await?.refresh.next_refresh_at.ok_or("scheduled")?);
    h.admin_post(
        "faults",
        json!({"integration": integration, "kind": "latency", "target": "token", "latencyMs": 2500, "count": 1}),
    )
    .await?;
    Ok((h, engine, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_without_grace_is_reauth_required_and_the_token_is_never_presented_again() -> TestResult {
    for backend in Backend::all() {
        let (h, engine, id) = lost_answer(backend, "coinbase", None).await?;
        let outcomes: Vec<_> = engine.run_once().await?.into_iter().map(|(_, o)| o).collect();
        assert_eq!(outcomes, [RefreshOutcome::ReauthRequired]);
        let row = h.row(id).await?;
        assert_eq!(row.status, ConnectionStatus::ReauthRequired);
        assert_eq!(row.refresh.last_error.as_deref(), Some(REASON_OUTCOME_UNKNOWN));
        assert!(h.outbox_types().await?.contains(&"connection.reauthRequired".to_owned()));
        let m = engine.metrics();
        assert_eq!((m.outcome_unknown("reauth_required"), m.reauth_required(REASON_OUTCOME_UNKNOWN)), (1, 1));
        assert!(m.render().contains("linkvault_refresh_outcome_unknown_total{action=\"reauth_required\"} 1"));
        // Nothing presents it again: not the scheduler, not recovery, not an on-demand request.
        assert!(engine.run_once().await?.is_empty());
        assert!(engine.ensure_fresh(h.client, id).await.is_err());
        let (_, max, _) = h.presentations("coinbase").await?;
        assert!(max <= 1, "a refresh token was presented {max} times");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_within_grace_presents_the_token_again_and_recovers() -> TestResult {
    for backend in Backend::all() {
        let (h, engine, id) = lost_answer(backend, "uphold", Some(120)).await?;
        let outcomes: Vec<_> = engine.run_once().await?.into_iter().map(|(_, o)| o).collect();
        assert_eq!(outcomes, [RefreshOutcome::Refreshed]);
        let row = h.row(id).await?;
        assert_eq!((row.status, row.refresh_count), (ConnectionStatus::Active, 1));
        assert_eq!(engine.metrics().outcome_unknown("retried_within_grace"), 1);
    }
    Ok(())
}
