//! Issue 12's two reproductions against real `linkvault serve` processes, with a fault-injecting TCP proxy
//! (`support::proxy`) between linkvault and the sandbox's Coinbase token endpoint. Only refresh grants pass
//! through it: the code exchange, the account API and the sandbox's admin counters are reached directly.
//!
//! What they prove, on the sandbox's own per-token presentation counts rather than on linkvault's word:
//! - a lost answer (the provider processed the refresh, the connection broke before its answer arrived) is never
//!   followed by the same rotating refresh token outside grace (embedded Coinbase has none): exactly the
//!   affected connections become `reauthRequired` (`refreshOutcomeUnknown`, webhook delivered, metric counted)
//!   while the others, once the proxy passes answers again, go on refreshing generation after generation;
//! - a client hanging up on `holdings/get` while its refresh is held at the provider cancels nothing across
//!   the process boundary: the connection stays `active`, its refresh token is presented once, and the next
//!   request is answered from that refresh instead of waiting out a lease;
//! - a request cut before it reaches the provider looks to linkvault like a lost answer (only a refused connect
//!   proves "never sent"), so it is treated as one: `reauthRequired`, never repeated, and the sandbox shows
//!   that nothing was spent;
//! - with three instances on PostgreSQL and one SIGKILLed while answers are held, no refresh token is
//!   presented twice, the grants lost with the process are `reauthRequired` with their webhooks, and the
//!   other connections keep refreshing.
//!
//! Single-process cases run on SQLite and, when `LINKVAULT_TEST_DATABASE_URL` is set, on PostgreSQL; the
//! three-instance case runs on PostgreSQL only. Every wait polls a condition under an explicit bound.

// Tests may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../refresh/tests/common/mod.rs"]
mod common;
#[path = "../../webhooks/tests/support/receiver.rs"]
mod receiver;
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, Res, TestResult, harness};
use linkvault_domain::{Clock, ConnectionStatus, Scope, SystemClock, TokenId};
use linkvault_refresh::{EngineConfig, REASON_OUTCOME_UNKNOWN};
use linkvault_storage::testing::{Backend, postgres_test_url};
use linkvault_webhooks::WebhookSecret;
use receiver::Receiver;
use support::proxy::{Mode, Proxy};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");
const POLL: Duration = Duration::from_millis(200);

/// A harness (sandbox in this process, a fresh store) whose sandbox issues access tokens living `access_ttl`.
async fn setup(backend: Backend, access_ttl: Duration) -> Res<Harness> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    harness(
        backend,
        clock,
        |mut c| {
            c.access_ttl = access_ttl;
            c
        },
        |_| {},
        EngineConfig::new(),
    )
    .await
}

/// The sandbox's listening address, which the proxy forwards to.
fn sandbox_addr(h: &Harness) -> Res<SocketAddr> {
    let url = url::Url::parse(&h.sandbox_base)?;
    Ok(url.socket_addrs(|| None)?.into_iter().next().ok_or("sandbox address")?)
}

/// A catalog file pointing `coinbase` at the sandbox with only its token endpoint behind the proxy; `extra`
/// lines are added to the entry (timing overrides).
fn write_catalog(dir: &Path, h: &Harness, proxy: &Proxy, extra: &str) -> Res<std::path::PathBuf> {
    let base = &h.sandbox_base;
    let path_of_sandbox = url::Url::parse(base)?.path().trim_end_matches('/').to_owned();
    let token_url = format!("{}{path_of_sandbox}/coinbase/oauth/token", proxy.origin());
    Ok(support::coinbase_catalog(dir, base, Some(&token_url), extra)?)
}

/// Starts one `linkvault serve` on the harness's store and returns it with its base URL.
async fn serve(data_dir: &Path, h: &Harness, catalog: &Path, lease_secs: u64) -> Res<(Child, String)> {
    std::fs::create_dir_all(data_dir)?;
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(&h.fresh.url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The test's webhook receiver runs on loopback: allowed the way an operator allows a receiver.
        .args(["--webhook-allow-http", "--webhook-allow-cidrs", "127.0.0.0/8", "--catalog"])
        .arg(catalog)
        .args(["--refresh-lease-secs", &lease_secs.to_string(), "--upstream-timeout-secs", "5"])
        .env_remove("LINKVAULT_MASTER_KEY_FILE")
        .env_remove("LINKVAULT_DATABASE_URL")
        .env("LINKVAULT_MASTER_KEY", &h.master_key)
        .env("LINKVAULT_LOG", "error")
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    support::start_server(cmd).await
}

/// Polls `done` every [`POLL`] until it holds or `limit` passes; returns whether it held.
async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> Res<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if done().await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The sandbox's presentation report for Coinbase: `(maxPresentations, presentedMoreThanOnce)`.
async fn presentations(h: &Harness) -> Res<(u64, u64, serde_json::Value)> {
    let report = h.admin_get("refresh-tokens?integration=coinbase").await?;
    let n = |k: &str| report["coinbase"][k].as_u64().unwrap_or(u64::MAX);
    Ok((n("maxPresentations"), n("presentedMoreThanOnce"), report))
}

/// A Prometheus sample's value, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .unwrap_or(0.0)
}

async fn webhooks_to(h: &Harness) -> Res<Receiver> {
    let secret = WebhookSecret::generate()?;
    let secret_text = secret.expose().to_owned();
    let hooks = Receiver::start(secret).await?;
    h.vault.set_webhook_endpoint(h.client, &hooks.url, &secret_text).await?;
    Ok(hooks)
}

async fn stop(mut child: Child) -> Res<()> {
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

/// (b) The provider processes the refresh and the answer is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_are_never_presented_again_and_only_their_connections_need_reauth() -> TestResult {
    const CONNECTIONS: usize = 8;
    const LOST: u64 = 3;
    const GENERATIONS: u64 = 2;
    for backend in Backend::all() {
        let started = Instant::now();
        // 6 s tokens: refreshed 3 s before expiry (half the lifetime), so a generation takes about 3 s.
        let h = setup(backend, Duration::from_secs(6)).await?;
        let hooks = webhooks_to(&h).await?;
        let proxy = Proxy::start(sandbox_addr(&h)?).await?;
        // The first LOST refresh answers are dropped after the sandbox has processed them; then answers pass.
        proxy.set_for(Mode::Drop, LOST);
        let dir = tempfile::tempdir()?;
        let catalog = write_catalog(dir.path(), &h, &proxy, "")?;
        let (child, base) = serve(&dir.path().join("data"), &h, &catalog, 15).await?;

        let mut ids: Vec<TokenId> = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            ids.push(h.connect("coinbase", &format!("user-{i}")).await?);
        }
        // Exactly LOST connections lose their grant; every other one is refreshed GENERATIONS times.
        let settled = wait_until(Duration::from_secs(60), || async {
            let mut lost = 0;
            let mut refreshed = 0;
            for id in &ids {
                let row = h.row(*id).await?;
                match row.status {
                    ConnectionStatus::ReauthRequired => lost += 1,
                    ConnectionStatus::Active if row.refresh_count >= GENERATIONS => refreshed += 1,
                    _ => {}
                }
            }
            Ok(lost == LOST && refreshed == CONNECTIONS as u64 - LOST)
        })
        .await?;
        let mut rows = Vec::new();
        for id in &ids {
            rows.push(h.row(*id).await?);
        }
        let summary: Vec<_> = rows.iter().map(|r| (r.status, r.refresh_count, r.refresh.last_error.clone())).collect();
        assert!(
            settled,
            "{backend:?}: connections did not settle within 60 s: {summary:?}, proxy {:?}",
            proxy.counts()
        );

        let lost: HashSet<String> = rows
            .iter()
            .filter(|r| r.status == ConnectionStatus::ReauthRequired)
            .map(|r| r.token_id.to_string())
            .collect();
        for row in rows.iter().filter(|r| r.status == ConnectionStatus::ReauthRequired) {
            assert_eq!(row.refresh.last_error.as_deref(), Some(REASON_OUTCOME_UNKNOWN), "{backend:?}: {summary:?}");
            assert_eq!(row.refresh_count, 0, "a lost connection was refreshed: {summary:?}");
        }
        let announced = wait_until(Duration::from_secs(30), || async {
            Ok(lost.is_subset(&hooks.tokens_with("connection.reauthRequired")))
        })
        .await?;
        assert!(announced, "{backend:?}: not every lost connection was announced: {:?}", hooks.events());
        assert_eq!(hooks.bad_signatures(), 0);

        let metrics = reqwest::get(format!("{base}/metrics")).await?.text().await?;
        let counted = sample(&metrics, "linkvault_refresh_outcome_unknown_total{action=\"reauth_required\"}");
        assert_eq!(counted, LOST as f64, "{backend:?}: outcome-unknown metric");
        // Counted before the report: every answer started (passed or dropped) was a presentation the sandbox
        // processed, so the dropped grants did reach the provider.
        let counts = proxy.counts();
        // The survivors' later generations are the window in which a lost token would have been presented again.
        let (max, twice, report) = presentations(&h).await?;
        assert_eq!((max, twice), (1, 0), "{backend:?}: a refresh token was presented twice: {report}");
        let total = report["coinbase"]["totalPresentations"].as_u64().unwrap_or(0);
        assert!(total >= counts.passed + counts.dropped, "{backend:?}: {counts:?} vs {report}");
        assert_eq!((counts.dropped, counts.cut), (LOST, 0), "{backend:?}: {counts:?}");
        assert_eq!(proxy.mode(), Mode::Pass);
        println!(
            "{backend:?}: {LOST} answers dropped, {} lost, survivors at generation >= {GENERATIONS}; proxy {counts:?}; \
             {:.1?}",
            lost.len(),
            started.elapsed()
        );
        stop(child).await?;
    }
    Ok(())
}

/// A connection cut after linkvault wrote its request but before the provider saw it. linkvault cannot tell
/// that from a lost answer (only a refused connect proves "never sent"), so it treats it the same way; the
/// sandbox shows that the token was never presented, so no grant was spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_before_the_provider_is_treated_as_sent_and_never_repeated() -> TestResult {
    for backend in Backend::all() {
        let started = Instant::now();
        let h = setup(backend, Duration::from_secs(6)).await?;
        let hooks = webhooks_to(&h).await?;
        let proxy = Proxy::start(sandbox_addr(&h)?).await?;
        proxy.set_for(Mode::Cut, 1);
        let dir = tempfile::tempdir()?;
        let catalog = write_catalog(dir.path(), &h, &proxy, "")?;
        let (child, _) = serve(&dir.path().join("data"), &h, &catalog, 15).await?;
        let ids = [h.connect("coinbase", "alice").await?, h.connect("coinbase", "bob").await?];
        let settled = wait_until(Duration::from_secs(40), || async {
            let (a, b) = (h.row(ids[0]).await?, h.row(ids[1]).await?);
            let states = [(a.status, a.refresh_count.min(1)), (b.status, b.refresh_count.min(1))];
            Ok(states.contains(&(ConnectionStatus::ReauthRequired, 0))
                && states.contains(&(ConnectionStatus::Active, 1)))
        })
        .await?;
        assert!(
            settled,
            "{backend:?}: {:?} {:?}; proxy {:?}",
            h.row(ids[0]).await?,
            h.row(ids[1]).await?,
            proxy.counts()
        );
        let mut cut_row = h.row(ids[0]).await?;
        if cut_row.status != ConnectionStatus::ReauthRequired {
            cut_row = h.row(ids[1]).await?;
        }
        assert_eq!(cut_row.refresh.last_error.as_deref(), Some(REASON_OUTCOME_UNKNOWN));
        let cut_id = cut_row.token_id.to_string();
        let announced = wait_until(Duration::from_secs(30), || async {
            Ok(hooks.tokens_with("connection.reauthRequired").contains(&cut_id))
        })
        .await?;
        assert!(announced, "{backend:?}: {:?}", hooks.events());
        // The report before the counts: every presentation in it went through the proxy's request counter
        // first, so the bound below holds however many refreshes run meanwhile.
        let (max, twice, report) = presentations(&h).await?;
        let counts = proxy.counts();
        assert_eq!((max, twice), (1, 0), "{backend:?}: {report}");
        // Every presentation the sandbox saw was forwarded: the cut request never reached it.
        let total = report["coinbase"]["totalPresentations"].as_u64().unwrap_or(u64::MAX);
        assert_eq!(counts.cut, 1, "{backend:?}: {counts:?}");
        assert!(total <= counts.requests - counts.cut, "{backend:?}: {counts:?} vs {report}");
        println!("{backend:?}: cut 1 request; proxy {counts:?}; {:.1?}", started.elapsed());
        stop(child).await?;
    }
    Ok(())
}

/// (a) A client hangs up on `holdings/get` while its refresh is held at a slow provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_during_a_held_refresh_leaves_the_connection_active() -> TestResult {
    for backend in Backend::all() {
        let started = Instant::now();
        // 4 s tokens, and a minimum interval that keeps the scheduler off: the refresh is the request's.
        // (An expired token is refreshed on demand regardless of the minimum interval.)
        let h = setup(backend, Duration::from_secs(4)).await?;
        let proxy = Proxy::start(sandbox_addr(&h)?).await?;
        proxy.set(Mode::Hold(Duration::from_millis(2500)));
        let dir = tempfile::tempdir()?;
        let catalog = write_catalog(dir.path(), &h, &proxy, "min_refresh_interval_secs = 3600")?;
        // The default lease (45 s): what a cancelled grant used to make the next request wait for.
        let (child, base) = serve(&dir.path().join("data"), &h, &catalog, 45).await?;
        let client_id = h.client.to_string();
        let secret = h.vault.add_api_key(h.client, Scope::Read).await?;
        let secret = secret.expose().to_owned();

        let id = h.connect("coinbase", "alice").await?;
        let expires = h.row(id).await?.access_expires_at.ok_or("no expiry")?;
        let expired = wait_until(Duration::from_secs(10), || async { Ok(h.clock.now() > expires) }).await?;
        assert!(expired, "the access token should have expired");
        assert_eq!(
            proxy.counts().requests,
            0,
            "{backend:?}: the scheduler refreshed it; the test needs the request to"
        );

        let body = serde_json::json!({"authToken": id.to_string(), "type": "coinbase"}).to_string();
        let request = |client: &reqwest::Client| {
            client
                .post(format!("{base}/api/v1/holdings/get"))
                .header("X-Client-Id", &client_id)
                .header("X-Client-Secret", &secret)
                .header("content-type", "application/json")
                .body(body.clone())
        };
        let hasty = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
        let gave_up = request(&hasty).send().await;
        assert!(gave_up.as_ref().is_err_and(reqwest::Error::is_timeout), "the client hung up: {gave_up:?}");

        // Bounded far below the 45 s lease; no timing is asserted beyond that bound.
        let patient = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
        let asked = Instant::now();
        let next: serde_json::Value = request(&patient).send().await?.json().await?;
        let waited = asked.elapsed();
        assert_eq!(next["content"]["status"], "succeeded", "{backend:?}: {next}");

        let status: serde_json::Value = patient
            .get(format!("{base}/api/v1/tokens/{id}"))
            .header("X-Client-Id", &client_id)
            .header("X-Client-Secret", &secret)
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(status["content"]["status"], "active", "{backend:?}: {status}");
        assert_eq!(status["content"]["refreshCount"], 1, "{backend:?}: one refresh, the engine's: {status}");
        let row = h.row(id).await?;
        assert!(!row.refresh.grant_in_flight, "{backend:?}: the lease was left behind");
        let (max, twice, report) = presentations(&h).await?;
        assert_eq!((max, twice), (1, 0), "{backend:?}: {report}");
        let counts = proxy.counts();
        assert_eq!((counts.requests, counts.held), (1, 1), "{backend:?}: one grant, held: {counts:?}");
        println!("{backend:?}: next request answered after {waited:.1?}; proxy {counts:?}; {:.1?}", started.elapsed());
        stop(child).await?;
    }
    Ok(())
}

/// Three instances on PostgreSQL, answers held at the provider, one instance SIGKILLed while it holds grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_while_answers_are_held_present_no_token_twice() -> TestResult {
    const INSTANCES: usize = 3;
    const CONNECTIONS: usize = 60;
    const GENERATIONS: u64 = 2;
    let Some(_) = postgres_test_url() else {
        eprintln!("skipped: set LINKVAULT_TEST_DATABASE_URL to run the multi-instance proxy test");
        return Ok(());
    };
    let started = Instant::now();
    // 10 s tokens, refreshed 5 s before expiry.
    let h = setup(Backend::Postgres, Duration::from_secs(10)).await?;
    let hooks = webhooks_to(&h).await?;
    let proxy = Proxy::start(sandbox_addr(&h)?).await?;
    let dir = tempfile::tempdir()?;
    let catalog = write_catalog(dir.path(), &h, &proxy, "")?;
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        instances.push(serve(&dir.path().join(format!("instance-{i}")), &h, &catalog, 12).await?);
    }
    let mut ids: Vec<TokenId> = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        ids.push(h.connect("coinbase", &format!("user-{i}")).await?);
    }

    // Hold every answer once the first refreshes are under way, so that grants are in flight everywhere.
    let under_way = wait_until(Duration::from_secs(30), || async { Ok(proxy.counts().requests >= 5) }).await?;
    assert!(under_way, "no refresh reached the proxy: {:?}", proxy.counts());
    proxy.set(Mode::Hold(Duration::from_millis(2500)));
    let held = wait_until(Duration::from_secs(15), || async { Ok(proxy.counts().held >= 3) }).await?;
    assert!(held, "no answer was held: {:?}", proxy.counts());
    let (victim, _) = instances.remove(0);
    stop(victim).await?;
    let at_kill = proxy.counts();
    proxy.set(Mode::Pass);
    instances.insert(0, serve(&dir.path().join("instance-0"), &h, &catalog, 12).await?);

    // Every connection ends active at GENERATIONS or more, or reauthRequired; the lost ones are bounded by
    // the grants that were in flight when the process died.
    let settled = wait_until(Duration::from_secs(90), || async {
        let mut done = 0;
        for id in &ids {
            let row = h.row(*id).await?;
            let finished = match row.status {
                ConnectionStatus::ReauthRequired => !row.refresh.grant_in_flight,
                ConnectionStatus::Active => row.refresh_count >= GENERATIONS,
            };
            done += usize::from(finished);
        }
        Ok(done == CONNECTIONS)
    })
    .await?;
    let mut rows = Vec::new();
    for id in &ids {
        rows.push(h.row(*id).await?);
    }
    let summary: Vec<_> = rows.iter().map(|r| (r.status, r.refresh_count, r.refresh.last_error.clone())).collect();
    assert!(settled, "connections did not settle within 90 s: {summary:?}");
    let lost: HashSet<String> =
        rows.iter().filter(|r| r.status == ConnectionStatus::ReauthRequired).map(|r| r.token_id.to_string()).collect();
    let announced = wait_until(Duration::from_secs(30), || async {
        Ok(lost.is_subset(&hooks.tokens_with("connection.reauthRequired")))
    })
    .await?;
    assert!(announced, "not every lost connection was announced: {:?}", hooks.events());
    let (max, twice, report) = presentations(&h).await?;
    assert_eq!((max, twice), (1, 0), "a refresh token was presented twice: {report}");
    // The only connections lost are those whose grant was in flight in the killed process, as counted by
    // the instances that recovered them.
    let http = reqwest::Client::new();
    let mut grants_lost = 0.0;
    for (_, base) in &instances {
        let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
        grants_lost += sample(&metrics, "linkvault_refresh_leases_recovered_total{kind=\"grant_lost\"}");
    }
    assert_eq!(lost.len() as f64, grants_lost, "reauthRequired rows vs grants lost with the killed instance");
    println!(
        "{INSTANCES} instances, {CONNECTIONS} connections: {} lost with the killed instance (held at kill: {}), \
         proxy {:?}; {:.1?}",
        lost.len(),
        at_kill.held,
        proxy.counts(),
        started.elapsed()
    );
    for (child, _) in instances {
        stop(child).await?;
    }
    Ok(())
}
