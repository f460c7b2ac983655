//! Engine decisions against the sandbox exchanges with a manual clock shared by the sandbox, the vault and
//! the engine, on every configured backend: the schedule (margin, jitter, daily touch, refresh-token end),
//! backoff, invalid_grant, sessions, the crash window with and without a reuse grace, and on-demand
//! single flight within a process and across instances.

// Tests may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::*;
use linkvault_domain::{Clock, ConnectionStatus, ManualClock};
use linkvault_refresh::{EngineConfig, RefreshError, RefreshOutcome};
use linkvault_storage::on_every_backend;
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Refreshed};
use secrecy::ExposeSecret;
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A manual clock at a whole second of real time (so PostgreSQL's clock and ours roughly agree).
fn manual_clock() -> Arc<ManualClock> {
    let now = OffsetDateTime::now_utc();
    Arc::new(ManualClock::new(now.replace_nanosecond(0).unwrap_or(now)))
}

fn outcomes(v: &[(linkvault_domain::TokenId, RefreshOutcome)]) -> Vec<RefreshOutcome> {
    v.iter().map(|(_, o)| *o).collect()
}

on_every_backend!(scheduled_refresh_at_margin_minus_jitter_rotates_once, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    let stored = h.row(id).await?;
    let expires = stored.access_expires_at.ok_or("expiry")?;
    // First sight: nothing due yet, the real schedule is computed.
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::NotDue]);
    let next = h.row(id).await?.refresh.next_refresh_at.ok_or("scheduled")?;
    // 1 h token, 300 s margin, jitter ≤ min(10 % of 3600 s, 300 s).
    assert!(next <= expires - Duration::seconds(300), "{next} vs {expires}");
    assert!(next >= expires - Duration::seconds(600), "{next} vs {expires}");
    clock.set(next - Duration::seconds(1));
    assert!(h.engine.run_once().await?.is_empty(), "not due a second early");
    clock.set(next);
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::Refreshed]);
    let row = h.row(id).await?;
    assert_eq!((row.refresh_count, row.status), (1, ConnectionStatus::Active));
    assert!(row.refresh.lease_owner.is_none() && !row.refresh.grant_in_flight);
    assert_eq!(row.access_expires_at, Some(next + Duration::seconds(3600)));
    assert_eq!(h.presentations("coinbase").await?, (1, 1, 1));
    let m = h.engine.metrics();
    assert_eq!(m.refreshes("coinbase", "success"), 1);
    assert_eq!(m.lateness_quantile(0.5), Some(StdDuration::ZERO), "on time on the manual clock");
    let text = m.render();
    assert!(text.contains("linkvault_refresh_total{integration=\"coinbase\",outcome=\"success\"} 1"), "{text}");
    assert!(text.contains("linkvault_refresh_cas_conflicts_total 0"), "{text}");
    assert!(text.contains("linkvault_webhook_backlog 1"), "connection.created is pending: {text}");
    TestResult::Ok(())
});

on_every_backend!(transient_failure_backs_off_with_jitter_then_succeeds, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    h.engine.run_once().await?;
    let due = h.row(id).await?.refresh.next_refresh_at.ok_or("scheduled")?;
    clock.set(due);
    h.admin_post("faults", json!({"integration": "coinbase", "kind": "serverError", "count": 1})).await?;
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::BackedOff]);
    let row = h.row(id).await?;
    assert_eq!(row.refresh.refresh_failures, 1);
    assert!(row.refresh.last_error.as_deref().unwrap_or_default().contains("503"), "{:?}", row.refresh.last_error);
    let retry = row.refresh.next_refresh_at.ok_or("retry")?;
    // First failure: between 0.5 s and 1 s later.
    assert!(retry >= due + Duration::milliseconds(500) && retry <= due + Duration::seconds(1), "{retry} vs {due}");
    assert!(!row.refresh.grant_in_flight && row.refresh.lease_owner.is_none());
    clock.set(retry);
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::Refreshed]);
    let row = h.row(id).await?;
    assert_eq!((row.refresh.refresh_failures, row.refresh.last_error.clone()), (0, None));
    // The 503 answer still counted a presentation; the retry presented the same (unspent) token.
    assert_eq!(h.presentations("coinbase").await?.1, 2);
    assert_eq!(h.engine.metrics().refreshes("coinbase", "transient"), 1);
    TestResult::Ok(())
});

on_every_backend!(
    invalid_grant_marks_reauth_required_and_reauth_recovers_same_token_id,
    timeout = 60,
    |backend| async move {
        let clock = manual_clock();
        let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
        let id = h.connect("coinbase", "alice").await?;
        h.engine.run_once().await?;
        clock.set(h.row(id).await?.refresh.next_refresh_at.ok_or("scheduled")?);
        h.admin_post("faults", json!({"integration": "coinbase", "kind": "invalidGrant", "count": 1})).await?;
        assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::ReauthRequired]);
        let row = h.row(id).await?;
        assert_eq!(row.status, ConnectionStatus::ReauthRequired);
        assert_eq!(row.refresh.next_refresh_at, None);
        assert!(matches!(h.engine.ensure_fresh(h.client, id).await, Err(RefreshError::ReauthRequired)));
        assert!(h.engine.run_once().await?.is_empty(), "reauthRequired connections are not scheduled");
        // The end user signs in again: same tokenId, active, and the app is told. (The outbox orders events of
        // one instant by id, so let time pass.)
        clock.advance(Duration::seconds(1));
        assert_eq!(h.connect("coinbase", "alice").await?, id);
        assert_eq!(h.row(id).await?.status, ConnectionStatus::Active);
        assert_eq!(
            h.outbox_types().await?,
            ["connection.created", "connection.reauthRequired", "connection.recovered"]
        );
        let events = h.fresh.store.pending_outbox_events(10).await?;
        assert!(events[1].payload.contains("invalid_grant"), "{}", events[1].payload);
        let (_, fresh) = h.engine.ensure_fresh(h.client, id).await?;
        assert!(!fresh.access_token.expose_secret().is_empty());
        TestResult::Ok(())
    }
);

on_every_backend!(daily_touch_then_reauth_soon_then_reauth_at_refresh_token_end, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let t0 = clock.now();
    let h = harness(
        backend,
        clock.clone(),
        |mut c| {
            c.access_ttl = StdDuration::from_secs(3 * 86_400);
            c.refresh_ttl = StdDuration::from_secs(4 * 86_400);
            c
        },
        |catalog| with_timing(catalog, "uphold", |t| t.refresh_token_ttl_secs = Some(4 * 86_400)),
        EngineConfig::new(),
    )
    .await?;
    let id = h.connect("uphold", "alice").await?;
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::NotDue]);
    // A 3-day access token is still touched after 24 h.
    assert_eq!(h.row(id).await?.refresh.next_refresh_at, Some(t0 + Duration::days(1)));
    for day in 1..=2 {
        clock.set(t0 + Duration::days(day));
        assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::Refreshed], "day {day}");
    }
    // The refresh token (non-rotating, 4 days) ends in one day: the app is warned, then the touch continues.
    clock.set(t0 + Duration::days(3));
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::Warned]);
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::Refreshed]);
    assert_eq!(h.row(id).await?.refresh.next_refresh_at, Some(t0 + Duration::days(4)));
    clock.set(t0 + Duration::days(4));
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::ReauthRequired]);
    assert_eq!(
        h.outbox_types().await?,
        ["connection.created", "connection.reauthRequiredSoon", "connection.reauthRequired"]
    );
    assert_eq!(h.row(id).await?.refresh.last_error.as_deref(), Some("refresh_token_expired"));
    TestResult::Ok(())
});

on_every_backend!(credentials_session_becomes_reauth_required_at_expiry, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let expires = clock.now() + Duration::hours(24);
    let meta = ConnectionMeta { access_expires_at: Some(expires), ..ConnectionMeta::default() };
    let session = IntegrationCredentials::new("session-token", None);
    let id = h.vault.store_credentials(&h.key("binanceInternationalDirect", "alice")?, &session, &meta).await?.token_id;
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::NotDue]);
    assert_eq!(h.row(id).await?.refresh.next_refresh_at, Some(expires));
    clock.set(expires - Duration::seconds(1));
    let (_, still) = h.engine.ensure_fresh(h.client, id).await?;
    assert_eq!(still.access_token.expose_secret(), "session-token", "valid until its expiry");
    clock.set(expires);
    assert_eq!(outcomes(&h.engine.run_once().await?), [RefreshOutcome::ReauthRequired]);
    let row = h.row(id).await?;
    assert_eq!((row.token_id, row.status), (id, ConnectionStatus::ReauthRequired));
    assert_eq!(row.refresh.last_error.as_deref(), Some("session_expired"));
    assert_eq!(h.outbox_types().await?, ["connection.created", "connection.reauthRequired"]);
    TestResult::Ok(())
});

/// A worker that claimed the row, sent the grant (so the upstream rotated) and died before writing back.
async fn die_mid_grant(h: &Harness, integration: &str, id: linkvault_domain::TokenId) -> TestResult {
    let now = h.clock.now();
    let lease = StdDuration::from_millis(300);
    let claimed = h.fresh.store.claim_connection(id, now, "dead-worker", lease).await?.ok_or("claim")?;
    assert!(h.fresh.store.mark_grant_in_flight(id, claimed.version, "dead-worker", now, StdDuration::ZERO).await?);
    let credentials = h.vault.open_credentials(&claimed).await?;
    let refresh_token = credentials.refresh_token.ok_or("refresh token")?;
    h.oauth.refresh(h.catalog.get(integration).ok_or("integration")?, &refresh_token).await?;
    // PostgreSQL leases run on the database clock, SQLite's on ours: let both pass.
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    Ok(())
}

on_every_backend!(crash_window_without_grace_becomes_reauth_required, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    h.engine.run_once().await?;
    die_mid_grant(&h, "coinbase", id).await?;
    clock.advance(Duration::seconds(1));
    // The scheduler never reclaims a row whose grant was in flight; recovery does.
    assert_eq!(h.engine.recover_expired_leases().await?, 1);
    let row = h.row(id).await?;
    assert_eq!(row.status, ConnectionStatus::ReauthRequired);
    assert_eq!(row.refresh.last_error.as_deref(), Some("refresh_interrupted"));
    assert_eq!(h.engine.metrics().leases_recovered(), (0, 0, 1));
    assert_eq!(h.outbox_types().await?, ["connection.created", "connection.reauthRequired"]);
    // The spent token was never presented again.
    assert_eq!(h.presentations("coinbase").await?, (1, 1, 1));
    assert!(h.engine.metrics().render().contains("linkvault_refresh_leases_recovered_total{kind=\"grant_lost\"} 1"));
    TestResult::Ok(())
});

on_every_backend!(crash_window_with_reuse_grace_retries_the_old_token, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(
        backend,
        clock.clone(),
        |c| c,
        |catalog| with_timing(catalog, "uphold", |t| t.reuse_grace_secs = Some(120)),
        EngineConfig::new(),
    )
    .await?;
    let id = h.connect("uphold", "alice").await?;
    h.engine.run_once().await?;
    die_mid_grant(&h, "uphold", id).await?;
    clock.advance(Duration::seconds(1));
    assert_eq!(h.engine.recover_expired_leases().await?, 1);
    let row = h.row(id).await?;
    assert_eq!((row.status, row.refresh_count), (ConnectionStatus::Active, 1));
    assert!(!row.refresh.grant_in_flight && row.refresh.lease_owner.is_none());
    assert_eq!(h.engine.metrics().leases_recovered(), (0, 1, 0));
    // The old token was presented twice: once by the dead worker, once by the retry inside the grace.
    assert_eq!(h.presentations("uphold").await?.1, 2);
    TestResult::Ok(())
});

on_every_backend!(idle_expired_lease_is_recovered_and_counted, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    h.engine.run_once().await?;
    let claimed = h.fresh.store.claim_connection(id, clock.now(), "stalled", StdDuration::from_millis(200)).await?;
    assert!(claimed.is_some());
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    clock.advance(Duration::seconds(1));
    assert_eq!(h.engine.recover_expired_leases().await?, 1);
    let row = h.row(id).await?;
    assert!(row.refresh.lease_owner.is_none());
    assert_eq!(row.status, ConnectionStatus::Active);
    assert_eq!(h.engine.metrics().leases_recovered(), (1, 0, 0));
    assert_eq!(h.presentations("coinbase").await?.2, 0, "no grant was involved");
    TestResult::Ok(())
});

on_every_backend!(on_demand_refresh_is_single_flight_in_process, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    let (_, before) = h.engine.ensure_fresh(h.client, id).await?;
    let expires = h.row(id).await?.access_expires_at.ok_or("expiry")?;
    // Inside the margin (300 s): every request must refresh first, and they must share one grant.
    clock.set(expires - Duration::seconds(100));
    h.admin_post("faults", json!({"integration": "coinbase", "kind": "latency", "latencyMs": 300})).await?;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let engine = h.engine.clone();
        let client = h.client;
        callers.spawn(async move { engine.ensure_fresh(client, id).await });
    }
    let mut tokens = std::collections::BTreeSet::new();
    while let Some(done) = callers.join_next().await {
        let (record, credentials) = done??;
        assert_eq!(record.refresh_count, 1);
        tokens.insert(credentials.access_token.expose_secret().to_owned());
    }
    assert_eq!(tokens.len(), 1, "every caller got the one refreshed token");
    assert!(!tokens.contains(before.access_token.expose_secret()));
    assert_eq!(h.presentations("coinbase").await?, (1, 1, 1));
    let m = h.engine.metrics();
    assert_eq!(m.on_demand_refreshes(), 1);
    assert!(m.on_demand_coalesced() >= 1, "{}", m.on_demand_coalesced());
    TestResult::Ok(())
});

on_every_backend!(on_demand_waits_for_a_lease_held_by_another_instance, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    let expires = h.row(id).await?.access_expires_at.ok_or("expiry")?;
    clock.set(expires - Duration::seconds(10));
    // "Another instance" holds the lease and is refreshing.
    let other = h.fresh.store.claim_connection(id, clock.now(), "other-instance", StdDuration::from_secs(60)).await?;
    let other = other.ok_or("claim")?;
    let waiter = {
        let engine = h.engine.clone();
        let client = h.client;
        tokio::spawn(async move { engine.ensure_fresh(client, id).await })
    };
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "waits while the lease is held");
    let credentials = h.vault.open_credentials(&other).await?;
    let integration = h.catalog.get("coinbase").ok_or("integration")?;
    let tokens = h.oauth.refresh(integration, credentials.refresh_token.as_ref().ok_or("rt")?).await?;
    let new = IntegrationCredentials { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
    let update = h
        .vault
        .refreshed_update(
            &other,
            &Refreshed {
                credentials: &new,
                access_expires_at: Some(tokens.expires_at),
                refresh_expires_at: tokens.refresh_token_expires_at,
                next_refresh_at: tokens.expires_at - Duration::seconds(300),
                reauth_warned_at: None,
            },
        )
        .await?;
    assert!(h.fresh.store.complete_refresh(&update, "other-instance").await?);
    let (record, got) = waiter.await??;
    assert_eq!(record.refresh_count, 1);
    assert_eq!(got.access_token.expose_secret(), new.access_token.expose_secret());
    assert_eq!(h.engine.metrics().on_demand_refreshes(), 0, "this instance sent no grant");
    assert_eq!(h.presentations("coinbase").await?, (1, 1, 1));
    TestResult::Ok(())
});

on_every_backend!(unknown_tokens_and_other_clients_are_not_found, timeout = 60, |backend| async move {
    let clock = manual_clock();
    let h = harness(backend, clock.clone(), |c| c, |_| {}, EngineConfig::new()).await?;
    let id = h.connect("coinbase", "alice").await?;
    let other = h.vault.create_client("other", linkvault_domain::TokenMode::Managed).await?.client_id;
    assert!(matches!(h.engine.ensure_fresh(other, id).await, Err(RefreshError::NotFound)));
    let unknown = linkvault_domain::TokenId::new_random();
    assert!(matches!(h.engine.ensure_fresh(h.client, unknown).await, Err(RefreshError::NotFound)));
    TestResult::Ok(())
});
