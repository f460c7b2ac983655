//! Several instances on one PostgreSQL database: three `linkvault serve` processes share 2,000 real
//! Coinbase-sandbox grants (rotating, single-use refresh tokens; access tokens living 40 s), one is killed with
//! SIGKILL mid-run and restarted. Afterwards the sandbox's own counters must show that no refresh token was
//! presented twice and that no grant was refreshed after its access token had expired; every connection not
//! lost with a grant in flight in the killed process has been refreshed generation after generation; and each
//! lost one is `reauthRequired` with its `connection.reauthRequired` webhook delivered.
//!
//! PostgreSQL only: runs when `LINKVAULT_TEST_DATABASE_URL` is set (`.ci/run` sets it).

// Tests may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../refresh/tests/common/mod.rs"]
mod common;
#[path = "../../webhooks/tests/support/receiver.rs"]
mod receiver;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Res, TestResult, harness, with_timing};
use linkvault_domain::{Clock, ConnectionStatus, SystemClock, TokenId};
use linkvault_refresh::EngineConfig;
use linkvault_storage::testing::{Backend, postgres_test_url};
use linkvault_webhooks::WebhookSecret;
use receiver::Receiver;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");
const INSTANCES: usize = 3;
const CONNECTIONS: usize = 2_000;
/// Refresh generations every surviving connection must go through.
const GENERATIONS: u64 = 3;
const ACCESS_TTL: Duration = Duration::from_secs(40);
/// Refreshed this long before expiry. It must exceed the lease (9 s) plus the recovery interval (5 s): a row
/// the killed instance had claimed but not yet sent is taken over when its lease runs out, still in time.
const MARGIN_SECS: u64 = 20;
const LEASE_SECS: u64 = 9;
const UPSTREAM_TIMEOUT_SECS: u64 = 2;
/// The whole run after setup is bounded by this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Starts one `linkvault serve` on the shared database and returns it with its base URL.
async fn start_instance(dir: &Path, database_url: &str, master_key: &str, catalog: &Path) -> Res<(Child, String)> {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--database-url")
        .arg(database_url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The test's webhook receiver runs on loopback: allowed the way an operator allows a receiver.
        .args(["--webhook-allow-http", "--webhook-allow-cidrs", "127.0.0.0/8", "--catalog"])
        .arg(catalog)
        .args(["--refresh-rate", "150", "--refresh-concurrency", "32"])
        .args(["--refresh-lease-secs", &LEASE_SECS.to_string()])
        .args(["--upstream-timeout-secs", &UPSTREAM_TIMEOUT_SECS.to_string()])
        .env_remove("LINKVAULT_MASTER_KEY_FILE")
        .env_remove("LINKVAULT_DATABASE_URL")
        .env("LINKVAULT_MASTER_KEY", master_key)
        .env("LINKVAULT_LOG", "warn")
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    support::start_server(cmd).await
}

/// A Prometheus sample's value from an instance's `/metrics`, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_refresh_work_and_survive_a_sigkill() -> TestResult {
    let Some(_) = postgres_test_url() else {
        eprintln!("skipped: set LINKVAULT_TEST_DATABASE_URL to run the multi-instance test");
        return Ok(());
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let h = harness(
        Backend::Postgres,
        Arc::clone(&clock),
        |mut c| {
            c.access_ttl = ACCESS_TTL;
            c
        },
        |catalog| with_timing(catalog, "coinbase", |t| t.refresh_margin_secs = MARGIN_SECS),
        EngineConfig::new(),
    )
    .await?;
    let h = Arc::new(h);
    let secret = WebhookSecret::generate()?;
    let secret_text = secret.expose().to_owned();
    let hooks = Receiver::start(secret).await?;
    h.vault.set_webhook_endpoint(h.client, &hooks.url, &secret_text).await?;

    // The instances' catalog: Coinbase at this test's sandbox, refreshed MARGIN_SECS ahead.
    let dir = tempfile::tempdir()?;
    let catalog =
        support::coinbase_catalog(dir.path(), &h.sandbox_base, None, &format!("refresh_margin_secs = {MARGIN_SECS}"))?;
    let url = h.fresh.url.clone();
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        let data = dir.path().join(format!("instance-{i}"));
        std::fs::create_dir_all(&data)?;
        instances.push(start_instance(&data, &url, &h.master_key, &catalog).await?);
    }

    // 2,000 real grants, stored while the instances already run.
    let setup = Instant::now();
    let mut connects = tokio::task::JoinSet::new();
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
    let mut ids: Vec<TokenId> = Vec::with_capacity(CONNECTIONS);
    while let Some(done) = connects.join_next().await {
        ids.extend(done??);
    }
    println!("{CONNECTIONS} grants obtained and stored in {:.1?}", setup.elapsed());

    let started = Instant::now();
    let mut killed = false;
    let mut lowest = 0;
    let mut rows = Vec::new();
    while started.elapsed() < RUN_LIMIT {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rows.clear();
        for id in &ids {
            rows.push(h.row(*id).await?);
        }
        lowest =
            rows.iter().filter(|r| r.status == ConnectionStatus::Active).map(|r| r.refresh_count).min().unwrap_or(0);
        let refreshing = rows.iter().filter(|r| r.refresh_count > 0).count();
        // Kill mid-generation: once a quarter of the connections have been refreshed at least once.
        if !killed && refreshing >= CONNECTIONS / 4 {
            // Slow the exchange down first so that grants are in flight when the process dies.
            let slow = serde_json::json!({"integration": "coinbase", "kind": "latency", "target": "token",
                "count": 300, "latencyMs": 1500});
            h.admin_post("faults", slow).await?;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let (mut victim, _) = instances.remove(0);
            victim.start_kill()?;
            victim.wait().await?;
            killed = true;
            println!("instance 0 SIGKILLed after {:.1?} ({refreshing} connections refreshed)", started.elapsed());
            tokio::time::sleep(Duration::from_secs(2)).await;
            let data = dir.path().join("instance-0");
            instances.insert(0, start_instance(&data, &url, &h.master_key, &catalog).await?);
            println!("instance 0 restarted");
        }
        if killed && lowest >= GENERATIONS {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(killed, "the run never reached the kill point");

    let lost: HashSet<String> =
        rows.iter().filter(|r| r.status == ConnectionStatus::ReauthRequired).map(|r| r.token_id.to_string()).collect();
    // Every lost connection's webhook arrives (the deliverers run in every instance).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if lost.is_subset(&hooks.tokens_with("connection.reauthRequired")) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut metrics = Vec::new();
    let http = reqwest::Client::new();
    for (_, base) in &instances {
        metrics.push(http.get(format!("{base}/metrics")).send().await?.text().await?);
    }
    let total = |series: &str| metrics.iter().map(|m| sample(m, series)).sum::<f64>();
    let grants_lost = total("linkvault_refresh_leases_recovered_total{kind=\"grant_lost\"}");
    let leases_recovered = total("linkvault_refresh_leases_recovered_total{kind=\"idle\"}");
    let cas_conflicts = total("linkvault_refresh_cas_conflicts_total");
    let report = h.admin_get("refresh-tokens?integration=coinbase").await?;
    let presented_max = report["coinbase"]["maxPresentations"].as_u64().unwrap_or(u64::MAX);
    let presented = report["coinbase"]["totalPresentations"].as_u64().unwrap_or(0);
    let late = report["coinbase"]["refreshedAfterAccessExpiry"].as_u64().unwrap_or(u64::MAX);
    let refreshes: u64 = rows.iter().map(|r| r.refresh_count).sum();
    let mut received_events: HashMap<String, u64> = HashMap::new();
    for (kind, _) in hooks.events() {
        *received_events.entry(kind).or_default() += 1;
    }
    let announced = hooks.tokens_with("connection.reauthRequired");
    let bad_signatures = hooks.bad_signatures();
    println!(
        "{INSTANCES} instances, {CONNECTIONS} connections, {elapsed:.1?}: {refreshes} refreshes, {presented} refresh \
         tokens presented (max {presented_max} each), lowest generation {lowest}, refreshed after expiry {late}, \
         grants lost in the killed instance {grants_lost}, idle leases taken over {leases_recovered}, \
         reauthRequired {}, CAS conflicts {cas_conflicts}, webhooks received {received_events:?}",
        lost.len()
    );

    assert_eq!(presented_max, 1, "a refresh token was presented twice: {report}");
    assert_eq!(late, 0, "a connection was refreshed only after its access token had expired");
    assert!(lowest >= GENERATIONS, "surviving connections reached only generation {lowest} within {RUN_LIMIT:?}");
    assert_eq!(cas_conflicts, 0.0, "compare-and-set conflicts");
    // The only connections lost are those whose grant was in flight in the killed process, each announced.
    assert_eq!(lost.len() as f64, grants_lost, "reauthRequired rows vs grants lost with the killed instance");
    assert!(lost.is_subset(&announced), "a lost connection was not announced by webhook");
    assert_eq!(bad_signatures, 0, "webhook signatures must verify");
    // The instances still run: every surviving connection holds an unexpired access token right now.
    let now = clock.now();
    for id in &ids {
        let row = h.row(*id).await?;
        if row.status != ConnectionStatus::Active {
            continue;
        }
        assert!(row.access_expires_at.is_some_and(|e| e > now), "{} has an expired access token", row.token_id);
    }
    for (mut child, _) in instances {
        child.start_kill()?;
        child.wait().await?;
    }
    Ok(())
}
