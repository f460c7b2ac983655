//! The acceptance run: 1,000 real Coinbase-sandbox grants with rotating refresh tokens whose access tokens
//! live 4 seconds, the scheduler running, and 50 concurrent on-demand callers using random tokenIds, for at
//! least three refresh generations. Afterwards the sandbox's own counters must show that no refresh token was
//! presented twice, with zero reauthRequired and zero compare-and-set conflicts. Runs on SQLite, and on
//! PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set.

// Tests may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use linkvault_domain::{Clock, ConnectionStatus, SystemClock};
use linkvault_refresh::EngineConfig;
use linkvault_storage::testing::Backend;

const CONNECTIONS: usize = 1_000;
const CALLERS: usize = 50;
const GENERATIONS: u64 = 3;
const ACCESS_TTL: Duration = Duration::from_secs(4);
/// The whole run (after setup) is bounded by this.
const RUN_LIMIT: Duration = Duration::from_secs(90);

async fn run(backend: Backend) -> TestResult {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = EngineConfig::new();
    config.batch_size = 200;
    config.max_in_flight = 128;
    config.per_integration_concurrency = 64;
    config.per_integration_rate_per_sec = 2_000.0;
    config.per_integration_burst = 500;
    config.idle_poll = Duration::from_millis(50);
    config.recovery_interval = Duration::from_secs(1);
    config.gauge_interval = Duration::from_secs(1);
    let h = harness(
        backend,
        Arc::clone(&clock),
        |mut c| {
            c.access_ttl = ACCESS_TTL;
            c
        },
        // 1 s margin on a 4 s token: refreshed about 3 s after issue (jitter ≤ 0.4 s earlier).
        |catalog| with_timing(catalog, "coinbase", |t| t.refresh_margin_secs = 1),
        config,
    )
    .await?;

    let setup = Instant::now();
    let mut ids = Vec::with_capacity(CONNECTIONS);
    let mut connects = tokio::task::JoinSet::new();
    let h = Arc::new(h);
    for chunk in 0..10 {
        let h = Arc::clone(&h);
        connects.spawn(async move {
            let mut mine = Vec::new();
            for i in 0..CONNECTIONS / 10 {
                mine.push(h.connect("coinbase", &format!("user-{chunk}-{i}")).await?);
            }
            Res::Ok(mine)
        });
    }
    while let Some(done) = connects.join_next().await {
        ids.extend(done??);
    }
    assert_eq!(ids.len(), CONNECTIONS);
    println!("[{backend:?}] {CONNECTIONS} grants obtained and stored in {:.1?}", setup.elapsed());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = {
        let engine = h.engine.clone();
        tokio::spawn(async move { engine.run(stop_rx).await })
    };
    let stop_callers = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = tokio::task::JoinSet::new();
    let ids = Arc::new(ids);
    for caller in 0..CALLERS {
        let (h, ids, stop, calls) = (Arc::clone(&h), Arc::clone(&ids), Arc::clone(&stop_callers), Arc::clone(&calls));
        callers.spawn(async move {
            let mut n = caller.wrapping_mul(7919);
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
                let id = ids[n % ids.len()];
                match h.engine.ensure_fresh(h.client, id).await {
                    Ok((record, _)) => {
                        let now = h.clock.now();
                        if record.access_expires_at.is_some_and(|e| e <= now) {
                            failures.push("ensure_fresh returned an expired access token".to_owned());
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        });
    }

    let started = Instant::now();
    let mut min_generation = 0;
    while started.elapsed() < RUN_LIMIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut lowest = u64::MAX;
        for id in ids.iter() {
            lowest = lowest.min(h.row(*id).await?.refresh_count);
        }
        min_generation = lowest;
        if min_generation >= GENERATIONS {
            break;
        }
    }
    stop_callers.store(true, Ordering::Relaxed);
    let mut caller_failures = Vec::new();
    while let Some(done) = callers.join_next().await {
        caller_failures.extend(done?);
    }
    let _ = stop_tx.send(true);
    scheduler.await?;
    let elapsed = started.elapsed();

    let m = h.engine.metrics();
    let (presented, max_presentations, total_presentations) = h.presentations("coinbase").await?;
    let report = h.admin_get("refresh-tokens?integration=coinbase").await?;
    let mut reauth = 0;
    let mut total_refreshes = 0;
    for id in ids.iter() {
        let row = h.row(*id).await?;
        total_refreshes += row.refresh_count;
        if row.status == ConnectionStatus::ReauthRequired {
            reauth += 1;
        }
    }
    let p = |q| m.lateness_quantile(q).map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)).unwrap_or_default();
    println!(
        "[{backend:?}] {elapsed:.1?}: min generation {min_generation}, refreshes {total_refreshes} \
         (scheduled+on-demand success {}, on-demand {}, coalesced {}), ensure_fresh calls {}, \
         tokens presented {presented}, presentations {total_presentations}, max per token {max_presentations}, \
         reauthRequired {reauth}, CAS conflicts {}, superseded {}, skipped (short lease) {}, \
         lateness p50 {} p99 {}, caller errors {}",
        m.refreshes_total("success"),
        m.on_demand_refreshes(),
        m.on_demand_coalesced(),
        calls.load(Ordering::Relaxed),
        m.cas_conflicts(),
        m.superseded(),
        m.grants_skipped_short_lease(),
        p(0.5),
        p(0.99),
        caller_failures.len(),
    );
    assert!(min_generation >= GENERATIONS, "every connection refreshed {GENERATIONS} times within {RUN_LIMIT:?}");
    assert_eq!(max_presentations, 1, "a refresh token was presented more than once: {report}");
    assert_eq!(report["coinbase"]["presentedMoreThanOnce"], 0);
    assert_eq!(total_presentations, total_refreshes, "every presentation was a refresh that landed");
    assert_eq!(reauth, 0);
    assert_eq!(m.cas_conflicts(), 0);
    assert_eq!(m.refreshes_total("reauth_required"), 0);
    assert!(caller_failures.is_empty(), "first failures: {:?}", &caller_failures[..caller_failures.len().min(5)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_rotating_connections_three_generations_no_token_presented_twice() -> TestResult {
    for backend in Backend::all() {
        tokio::time::timeout(Duration::from_secs(180), run(backend)).await??;
    }
    Ok(())
}
