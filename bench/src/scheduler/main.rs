//! `linkvault-bench-scheduler`: the refresh scheduler's throughput and on-time rate with many connections
//! (default 100,000) against a fast in-process fake OAuth upstream, on SQLite and (when
//! `LINKVAULT_TEST_DATABASE_URL` is set) PostgreSQL. Prints a Markdown table; `docs/benchmarks.md` records a run.
//!
//! Per backend: real encrypted connections are stored through the vault (concurrent writers), their access
//! tokens expiring uniformly over a window that starts once seeding is done; the engine runs throughout (new
//! rows are scheduled on first sight, as in production) until every connection has been refreshed once.
//! Seeding is timed and reported but is over before the first refresh falls due. Lateness is measured on every
//! row refreshed once, against the schedule the engine wrote for it on first sight (the engine's own metric keeps
//! only recent samples); whether each connection's first refresh came before its seeded expiry is judged by the
//! fake upstream's ledger, per refresh token, because a row refreshed twice keeps only its latest refresh time.
//! The run ends when every seeded connection has been refreshed once. A progress line each minute shows the
//! backlog and the process's CPU share.

mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use linkvault_crypto::MasterKey;
use linkvault_domain::{
    ClientId, Clock, ConnectionStatus, IntegrationType, NaturalKey, Scope, SystemClock, TokenId, TokenMode, UserId,
};
use linkvault_integrations::{Catalog, HttpLimits, OAuthClient};
use linkvault_refresh::{EngineConfig, RefreshEngine};
use linkvault_storage::DynStore;
use linkvault_storage::testing::{Backend, fresh_store, postgres_test_url};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use time::OffsetDateTime;
use upstream::FakeUpstream;

const INTEGRATION: &str = "benchOAuth";
const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";
/// Access tokens issued by the fake live an hour, so each connection is refreshed exactly once per run.
const NEW_ACCESS_TTL_SECS: u64 = 3600;

#[derive(Debug, Parser)]
#[command(name = "linkvault-bench-scheduler", about = "Refresh scheduler throughput and on-time rate")]
struct Args {
    /// Connections seeded per backend.
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// The seeded access tokens expire uniformly over this many seconds.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// The integration's refresh margin (seconds before expiry a refresh falls due, before jitter).
    #[arg(long, default_value_t = 10)]
    margin_secs: u64,
    /// Concurrent writers while seeding.
    #[arg(long, default_value_t = 16)]
    seed_writers: usize,
    /// Seconds from the end of the pilot to the first expiry minus the margin. Default: estimated from the
    /// pilot's seeding rate, so that seeding and first-sight scheduling are over before anything is due.
    #[arg(long)]
    lead_secs: Option<u64>,
    /// Give up on a backend this long after the window opens.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// `sqlite`, `postgres` or `all` (PostgreSQL only when LINKVAULT_TEST_DATABASE_URL is set).
    #[arg(long, default_value = "all")]
    backend: String,
}

/// Engine tuning for throughput: limits high enough that the store and the CPU, not a limiter, bound it.
fn engine_config() -> EngineConfig {
    let mut config = EngineConfig::new();
    config.batch_size = 500;
    config.max_in_flight = 256;
    config.per_integration_concurrency = 256;
    config.per_integration_rate_per_sec = 100_000.0;
    config.per_integration_burst = 10_000;
    config.idle_poll = Duration::from_millis(20);
    config.recovery_interval = Duration::from_secs(5);
    config.gauge_interval = Duration::from_secs(5);
    config
}

/// Upstream calls to a loopback fake: short timeouts (the lease is at least twice the worst case).
fn http_limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_body_bytes: 1 << 16,
    }
}

fn catalog(token_base: &str, margin_secs: u64) -> anyhow::Result<Catalog> {
    // authorize_url is required for an OAuth entry; the engine never uses it, so it points at the fake too.
    let toml = format!(
        r#"
[[integration]]
type = "{INTEGRATION}"
name = "Bench OAuth"
auth = "oauth2"
authorize_url = "{token_base}/authorize"
token_url = "{token_base}/token"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
token_auth_method = "client_secret_post"
scopes_read = ["read"]
scopes_write = ["write"]
refresh_margin_secs = {margin_secs}
default_access_ttl_secs = {NEW_ACCESS_TTL_SECS}
rotates_refresh_tokens = true
"#
    );
    Ok(Catalog::embedded().with_overrides(&toml)?)
}

fn secs(d: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(d).unwrap_or(i64::MAX))
}

fn seconds_between(a: OffsetDateTime, b: OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// One seeded connection: its row, its first-generation refresh token and the expiry stored with it.
struct Seeded {
    token_id: TokenId,
    expires_at: OffsetDateTime,
}

/// Stores rows `range` of the plan from `writers` tasks. `expiry(i)` is row i's access-token expiry.
async fn seed(
    vault: &Arc<Vault>,
    client: ClientId,
    refresh_tokens: &Arc<Vec<String>>,
    range: std::ops::Range<usize>,
    writers: usize,
    expiry: Arc<dyn Fn(usize) -> OffsetDateTime + Send + Sync>,
) -> anyhow::Result<Vec<(usize, TokenId)>> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers.max(1) {
        let (vault, tokens, next, expiry) =
            (Arc::clone(vault), Arc::clone(refresh_tokens), Arc::clone(&next), Arc::clone(&expiry));
        let end = range.end;
        tasks.spawn(async move {
            let integration = IntegrationType::parse(INTEGRATION)?;
            let mut stored = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let key = NaturalKey {
                    client_id: client,
                    user_id: UserId::parse(&format!("bench-user-{i}"))?,
                    integration: integration.clone(),
                    scope: Scope::Read,
                };
                let credentials = IntegrationCredentials::new(format!("seed-at-{i}"), Some(tokens[i].clone()));
                let meta = ConnectionMeta {
                    account_id: None,
                    account_name: None,
                    access_expires_at: Some(expiry(i)),
                    refresh_expires_at: None,
                };
                stored.push((i, vault.store_credentials(&key, &credentials, &meta).await?.token_id));
            }
            anyhow::Ok(stored)
        });
    }
    let mut all = Vec::with_capacity(range.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// Reads every seeded row (`readers` at a time) once the run is over.
async fn read_rows(
    store: &DynStore,
    ids: Arc<Vec<TokenId>>,
    readers: usize,
) -> anyhow::Result<Vec<linkvault_storage::ConnectionRecord>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..readers.max(1) {
        let (store, ids, next) = (Arc::clone(store), Arc::clone(&ids), Arc::clone(&next));
        tasks.spawn(async move {
            let mut rows = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                rows.push((i, store.get_connection(*id).await?.context("a seeded row is gone")?));
            }
            anyhow::Ok(rows)
        });
    }
    let mut all = Vec::with_capacity(ids.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

struct Figures {
    backend: Backend,
    connections: usize,
    seed_secs: f64,
    seed_rate: f64,
    due_span_secs: f64,
    demanded_rate: f64,
    demanded_peak: u64,
    achieved_rate: f64,
    achieved_peak: u64,
    refreshed: usize,
    before_expiry: usize,
    presented_before_expiry: u64,
    /// Every grant the upstream accepted (first generation and later ones).
    accepted: u64,
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    lateness_max_ms: f64,
    after_expiry_p99_secs: f64,
    max_presentations: u32,
    cas_conflicts: u64,
    reauth_required: usize,
    other_outcomes: String,
    memory: Memory,
}

/// Resident memory of this process (engine, store, fake upstream and the bench's own bookkeeping together),
/// in MiB, from `/proc/self/status` (Linux): before seeding, after seeding, at the end, and the peak.
#[derive(Default)]
struct Memory {
    before_seed: f64,
    after_seed: f64,
    end: f64,
    peak: f64,
}

/// How often the measurement prints its progress (due, done, backlog, CPU, load).
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat` (Linux; clock ticks
/// at the usual 100 Hz).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn run(backend: Backend, args: &Args) -> anyhow::Result<Figures> {
    let n = args.connections;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let upstream = FakeUpstream::start(CLIENT_ID, CLIENT_SECRET, NEW_ACCESS_TTL_SECS).await?;
    let catalog = Arc::new(catalog(&upstream.base_url, args.margin_secs)?);
    let fresh = fresh_store(backend).await?;
    let vault =
        Arc::new(Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::clone(&clock)).await?);
    let client = vault.create_client("bench", TokenMode::Managed).await?.client_id;
    let oauth = OAuthClient::with_limits(Arc::clone(&clock), http_limits())?;
    let engine = RefreshEngine::new(
        Arc::clone(&vault),
        Arc::clone(&fresh.store),
        catalog,
        oauth,
        Arc::clone(&clock),
        engine_config(),
    );
    let metrics = engine.metrics();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(stop_rx).await })
    };

    let refresh_tokens: Arc<Vec<String>> =
        Arc::new((0..n).map(|i| format!("seed-rt-{i}-{}", uuid::Uuid::new_v4().simple())).collect());

    // Pilot: the first rows, stored with a provisional far-off expiry, to measure the seeding rate (with the
    // engine scheduling them on first sight, as during the real seeding). They are stored again below with
    // their real expiry, so the table holds exactly `n` connections.
    let pilot = (n / 50).clamp(1, 2_000).min(n);
    let mut memory = Memory { before_seed: proc_status_mib("VmRSS"), ..Memory::default() };
    let seed_started = Instant::now();
    let provisional = clock.now() + time::Duration::days(1);
    seed(&vault, client, &refresh_tokens, 0..pilot, args.seed_writers, Arc::new(move |_| provisional)).await?;
    let pilot_rate = pilot as f64 / seed_started.elapsed().as_secs_f64();

    // The window: far enough out that the rest of seeding and the first-sight pass are over before the first
    // refresh falls due. Due = expiry − margin − jitter, and jitter is at most 10 % of the token's lifetime.
    let lead = match args.lead_secs {
        Some(l) => l as f64,
        None => {
            // The pilot runs on a small table and overestimates the rate (on PostgreSQL by ~40 %): margin for that.
            let estimate = n as f64 / pilot_rate * 1.6 + 15.0;
            (estimate + 0.1 * (args.margin_secs + args.window_secs) as f64) / 0.9
        }
    };
    let window_start = clock.now() + time::Duration::seconds_f64(lead) + secs(args.margin_secs);
    let window = args.window_secs as f64;
    let expiry: Arc<dyn Fn(usize) -> OffsetDateTime + Send + Sync> =
        Arc::new(move |i: usize| window_start + time::Duration::seconds_f64(window * i as f64 / n as f64));
    upstream.seed(refresh_tokens.iter().enumerate().map(|(i, t)| (t.as_str(), expiry(i))));
    let mut stored = seed(&vault, client, &refresh_tokens, 0..n, args.seed_writers, expiry.clone()).await?;
    let seed_secs = seed_started.elapsed().as_secs_f64();
    memory.after_seed = proc_status_mib("VmRSS");
    stored.sort_unstable_by_key(|(i, _)| *i);
    let seeded: Vec<Seeded> =
        stored.iter().map(|(i, token_id)| Seeded { token_id: *token_id, expires_at: expiry(*i) }).collect();
    if seeded.len() != n {
        bail!("seeded {} rows, expected {n}", seeded.len());
    }
    eprintln!(
        "[{backend:?}] seeded {n} connections in {seed_secs:.1}s ({:.0}/s; pilot {pilot_rate:.0}/s), lead {lead:.0}s",
        (n + pilot) as f64 / seed_secs
    );

    // First sight: every new row is due "now" until the engine computes its schedule. Wait for that pass.
    let store = Arc::clone(&fresh.store);
    while store.count_due_connections(clock.now()).await? > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = clock.now();
    // The schedule the engine wrote on first sight, per row: the yardstick for lateness over every row (the
    // engine's own lateness metric keeps only its most recent samples).
    let ids = Arc::new(seeded.iter().map(|s| s.token_id).collect::<Vec<_>>());
    let scheduled: Vec<Option<OffsetDateTime>> =
        read_rows(&store, Arc::clone(&ids), 16).await?.iter().map(|r| r.refresh.next_refresh_at).collect();
    let after_expiry_scheduled =
        scheduled.iter().zip(&seeded).filter(|(due, s)| due.is_none_or(|d| d >= s.expires_at)).count();

    // The demand, from the schedule the engine wrote: cumulative due counts at one-second steps.
    let last_expiry = expiry(n - 1);
    let mut t = settled;
    let mut cumulative = Vec::new();
    while t <= last_expiry + time::Duration::seconds(1) {
        cumulative.push(store.count_due_connections(t).await?);
        t += time::Duration::seconds(1);
    }
    // Nothing may have been granted yet: otherwise seeding overlapped the measurement.
    if upstream.report().accepted > 0 || cumulative.first().copied().unwrap_or(0) > 0 {
        bail!("seeding or first-sight scheduling ran into the window; raise --lead-secs");
    }
    let first_due_step = cumulative.iter().position(|c| *c > 0).unwrap_or(0);
    let all_due_step = cumulative.iter().position(|c| *c as usize >= n).unwrap_or(cumulative.len());
    let due_span_secs = (all_due_step.saturating_sub(first_due_step)).max(1) as f64;
    let demanded_peak = cumulative.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let first_due = settled + time::Duration::seconds(i64::try_from(first_due_step).unwrap_or(0) - 1);
    eprintln!(
        "[{backend:?}] schedule settled {:.1}s before the first due refresh; due over ~{due_span_secs:.0}s",
        seconds_between(settled, first_due)
    );

    // The measurement: until every seeded connection has been refreshed once, bounded in time.
    let deadline = Instant::now()
        + Duration::from_secs_f64(seconds_between(clock.now(), window_start).max(0.0))
        + Duration::from_secs(args.window_secs + args.timeout_secs);
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let cpu_start = process_cpu_secs();
    let mut last_cpu = (Instant::now(), cpu_start);
    // Counted at the upstream by first-generation token, not by successful grants: a connection refreshed early
    // in a long run falls due again (its new token lives an hour) before the last seeded ones are reached.
    while (upstream.accepted_seeded() as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            // Due so far, from the schedule read above; the backlog is what the engine owes right now.
            let now = clock.now();
            let due = scheduled.iter().filter(|d| d.is_some_and(|d| d <= now)).count();
            let done = metrics.refreshes_total("success") as usize;
            let (cpu_now, at) = (process_cpu_secs(), Instant::now());
            let cpu_share = (cpu_now - last_cpu.1) / at.duration_since(last_cpu.0).as_secs_f64().max(1e-3);
            last_cpu = (at, cpu_now);
            eprintln!(
                "[{backend:?}] t+{:.0}s due {due} done {done} backlog {} process CPU {:.0} % load {}",
                seconds_between(first_due, now),
                due.saturating_sub(done),
                100.0 * cpu_share,
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .split(' ')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    let _ = stop_tx.send(true);
    scheduler.await?;
    memory.end = proc_status_mib("VmRSS");
    memory.peak = proc_status_mib("VmHWM");
    let report = upstream.report();

    let rows = read_rows(&store, ids, 16).await?;
    let mut refreshed = 0;
    let mut refreshed_again = 0;
    let mut before_expiry = 0;
    let mut reauth_required = 0;
    let mut after_expiry = Vec::new();
    let mut lateness = Vec::with_capacity(n);
    // Late rows by the minute their refresh was scheduled for (minutes from the first due time).
    let mut late_by_minute = std::collections::BTreeMap::<i64, usize>::new();
    let (mut first_done, mut last_done) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
    for ((row, s), due) in rows.iter().zip(&seeded).zip(&scheduled) {
        if row.status == ConnectionStatus::ReauthRequired {
            reauth_required += 1;
        }
        if row.refresh_count == 0 {
            continue;
        }
        refreshed += 1;
        if row.refresh_count > 1 {
            // The row keeps only its latest refresh, not the first one that this run measures; the upstream's
            // ledger judges that one (`seeded_before_expiry`).
            refreshed_again += 1;
            continue;
        }
        // `last_refreshed_at` is taken as the write-back is built, just before its commit.
        let Some(done) = row.last_refreshed_at else { continue };
        first_done = Some(first_done.map_or(done, |f| f.min(done)));
        last_done = Some(last_done.map_or(done, |l| l.max(done)));
        if let Some(due) = due {
            lateness.push(seconds_between(*due, done).max(0.0) * 1000.0);
        }
        if done < s.expires_at {
            before_expiry += 1;
        } else {
            after_expiry.push(seconds_between(s.expires_at, done));
            let minute = due.map_or(-1, |d| (d - first_due).whole_minutes());
            *late_by_minute.entry(minute).or_default() += 1;
        }
    }
    after_expiry.sort_unstable_by(f64::total_cmp);
    lateness.sort_unstable_by(f64::total_cmp);
    let cpu_share = (process_cpu_secs() - cpu_start) / seconds_between(first_due, clock.now()).max(1.0);
    eprintln!(
        "[{backend:?}] scheduled at or after expiry on first sight: {after_expiry_scheduled}; late rows by minute \
         of their scheduled time: {late_by_minute:?}; process CPU {:.0} % of one core over the measurement; \
         per row (refreshed once): {before_expiry} before expiry; refreshed again within the run: {refreshed_again}",
        100.0 * cpu_share
    );
    let achieved_rate = match last_done {
        Some(last) => refreshed as f64 / seconds_between(first_due, last).max(1.0),
        None => 0.0,
    };
    let ms = |q: f64| quantile(&lateness, q);
    let other_outcomes = ["transient", "error", "skipped", "superseded", "conflict"]
        .iter()
        .map(|o| format!("{o} {}", metrics.refreshes_total(o)))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "[{backend:?}] upstream: accepted {} (seeded {}), reused {}, unknown {}; first write-back {:?}, last {:?}; \
         leases recovered {:?}, short-lease skips {}",
        report.accepted,
        report.accepted_seeded,
        report.reused,
        report.unknown,
        first_done.map(|f| seconds_between(first_due, f)),
        last_done.map(|l| seconds_between(first_due, l)),
        metrics.leases_recovered(),
        metrics.grants_skipped_short_lease(),
    );
    Ok(Figures {
        backend,
        connections: n,
        seed_secs,
        seed_rate: (n + pilot) as f64 / seed_secs,
        due_span_secs,
        demanded_rate: n as f64 / due_span_secs,
        demanded_peak,
        achieved_rate,
        achieved_peak: report.per_second.iter().copied().max().unwrap_or(0),
        refreshed,
        before_expiry: usize::try_from(report.seeded_before_expiry).unwrap_or(usize::MAX),
        presented_before_expiry: report.before_expiry,
        accepted: report.accepted,
        lateness_p50_ms: ms(0.5),
        lateness_p99_ms: ms(0.99),
        lateness_max_ms: ms(1.0),
        after_expiry_p99_secs: quantile(&after_expiry, 0.99),
        max_presentations: report.max_presentations,
        cas_conflicts: metrics.cas_conflicts(),
        reauth_required,
        other_outcomes,
        memory,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backends: Vec<Backend> = match args.backend.as_str() {
        "all" => Backend::all(),
        "sqlite" => vec![Backend::Sqlite],
        "postgres" if postgres_test_url().is_some() => vec![Backend::Postgres],
        "postgres" => bail!("--backend postgres needs LINKVAULT_TEST_DATABASE_URL"),
        other => bail!("unknown backend {other:?} (sqlite, postgres, all)"),
    };
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let c = engine_config();
    println!(
        "## Refresh scheduler ({} connections, expiries over {} s, margin {} s, {} cores)\n",
        args.connections,
        args.window_secs,
        args.margin_secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "Engine: batch_size {}, max_in_flight {}, per_integration_concurrency {}, rate {}/s (burst {}), \
         idle_poll {:?}; {} seeding writers.\n",
        c.batch_size,
        c.max_in_flight,
        c.per_integration_concurrency,
        c.per_integration_rate_per_sec,
        c.per_integration_burst,
        c.idle_poll,
        args.seed_writers
    );
    let mut rows = Vec::new();
    for backend in backends {
        let f = run(backend, &args).await.with_context(|| format!("{backend:?}"))?;
        rows.push(f);
    }
    println!(
        "| backend | connections | seeding | due over | demanded/s (peak 1 s) | achieved/s (peak 1 s) | refreshed | \
         done before expiry | presented before expiry | lateness p50 / p99 / max | late p99 past expiry | \
         max presentations | CAS conflicts | reauthRequired |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in &rows {
        println!(
            "| {:?} | {} | {:.0} s ({:.0}/s) | {:.0} s | {:.0} ({}) | {:.0} ({}) | {} | {:.2} % | {:.2} % | \
             {:.0} / {:.0} / {:.0} ms | {:.1} s | {} | {} | {} |",
            f.backend,
            f.connections,
            f.seed_secs,
            f.seed_rate,
            f.due_span_secs,
            f.demanded_rate,
            f.demanded_peak,
            f.achieved_rate,
            f.achieved_peak,
            f.refreshed,
            100.0 * f.before_expiry as f64 / f.connections as f64,
            100.0 * f.presented_before_expiry as f64 / f.accepted.max(1) as f64,
            f.lateness_p50_ms,
            f.lateness_p99_ms,
            f.lateness_max_ms,
            f.after_expiry_p99_secs,
            f.max_presentations,
            f.cas_conflicts,
            f.reauth_required,
        );
    }
    println!();
    for f in &rows {
        println!("{:?} other outcomes: {}", f.backend, f.other_outcomes);
        let m = &f.memory;
        println!(
            "{:?} resident memory (whole process: engine, store, fake upstream, bench): before seeding {:.0} MiB, \
             after seeding {:.0} MiB, at the end {:.0} MiB, peak {:.0} MiB",
            f.backend, m.before_seed, m.after_seed, m.end, m.peak
        );
    }
    Ok(())
}
