//! linkvault benchmarks. Run with `cargo run --release -p linkvault-bench` (PostgreSQL figures too when
//! `LINKVAULT_TEST_DATABASE_URL` is set). Prints a Markdown table; `docs/benchmarks.md` records a run.
//!
//! Measured in one run, on one machine:
//! 1. envelope open (unwrap the data key, open the 200-byte payload, associated data on both) vs a raw
//!    single AES-256-GCM open of the same size;
//! 2. vault-level import (store credentials) and status-read (load + decrypt) throughput per backend;
//! 3. the same through the real HTTP server on loopback, driven by an in-process client with 32 connections
//!    (client and server share the machine's cores, so these are lower bounds).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use linkvault_crypto::{Keyring, MasterKey, RowBinding};
use linkvault_domain::{IntegrationType, NaturalKey, Scope, SystemClock, TokenId, TokenMode, UserId};
use linkvault_integrations::Catalog;
use linkvault_server::AppState;
use linkvault_storage::testing::{Backend, fresh_store};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn seconds_from_env() -> Duration {
    let secs = std::env::var("LINKVAULT_BENCH_SECS").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(5);
    Duration::from_secs(secs.clamp(1, 120))
}

fn crypto() -> Result<(f64, f64)> {
    const N: u32 = 300_000;
    let (kv, _) = Keyring::generate()?.new_key_version(1)?;
    let (c, t) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let row = RowBinding { client_id: &c, token_id: &t };
    let (dk, wrapped) = kv.new_data_key(row, 1)?;
    let sealed = dk.seal(row, "credentials", &[7u8; 200])?;
    let envelope =
        || -> bool { kv.unwrap_data_key(row, 1, &wrapped).and_then(|dk| dk.open(row, "credentials", &sealed)).is_ok() };
    let raw = linkvault_crypto::envelope::bench_raw_aes_gcm()?;
    let time = |f: &dyn Fn() -> bool| {
        for _ in 0..10_000 {
            black_box(f());
        }
        let start = Instant::now();
        for _ in 0..N {
            black_box(f());
        }
        start.elapsed().as_nanos() as f64 / f64::from(N)
    };
    Ok((time(&envelope), time(&raw)))
}

fn key(client: linkvault_domain::ClientId, user: &str) -> Result<NaturalKey> {
    Ok(NaturalKey {
        client_id: client,
        user_id: UserId::parse(user)?,
        integration: IntegrationType::parse("coinbase")?,
        scope: Scope::Write,
    })
}

/// Runs `op(i)` from `workers` tasks for `duration`; returns operations per second.
async fn drive<F, Fut>(workers: usize, duration: Duration, op: F) -> Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (op, counter) = (Arc::clone(&op), Arc::clone(&counter));
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                op(i).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done?.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
    }
    Ok(counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

struct BackendFigures {
    backend: Backend,
    vault_import: f64,
    vault_status: f64,
    http_import: f64,
    http_status: f64,
    http_hello: f64,
}

async fn backend(backend: Backend, duration: Duration) -> Result<BackendFigures> {
    let fresh = fresh_store(backend).await?;
    let vault =
        Arc::new(Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::new(SystemClock)).await?);
    let created = vault.create_client("bench", TokenMode::Managed).await?;
    let client = created.client_id;
    let secret = created.keys[1].1.expose().to_owned();

    // Vault level: store (creates) with 8 writers, then status reads over what was stored.
    let v = Arc::clone(&vault);
    let vault_import = drive(8, duration, move |i| {
        let v = Arc::clone(&v);
        async move {
            let creds = IntegrationCredentials::new(format!("access-{i}"), Some(format!("refresh-{i}")));
            v.store_credentials(&key(client, &format!("vault-{i}"))?, &creds, &ConnectionMeta::default()).await?;
            Ok(())
        }
    })
    .await?;
    let mut ids = Vec::new();
    for i in 0..1000u64 {
        let stored = vault
            .store_credentials(
                &key(client, &format!("read-{i}"))?,
                &IntegrationCredentials::new("a", None),
                &ConnectionMeta::default(),
            )
            .await?;
        ids.push(stored.token_id);
    }
    let ids = Arc::new(ids);
    let (v, read_ids) = (Arc::clone(&vault), Arc::clone(&ids));
    let vault_status = drive(8, duration, move |i| {
        let (v, ids) = (Arc::clone(&v), Arc::clone(&read_ids));
        async move {
            let id: TokenId = ids[(i as usize) % ids.len()];
            let record = v.connection_for(client, id).await?;
            black_box(v.open_credentials(&record).await?);
            Ok(())
        }
    })
    .await?;

    // HTTP level, through the real router on loopback.
    let state = AppState::new(Arc::clone(&vault), Arc::clone(&fresh.store), Arc::new(Catalog::embedded()))?;
    let app = linkvault_server::app(state, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let auth = Arc::new((client.to_string(), secret));

    let (h, b) = (http.clone(), base.clone());
    let http_hello = drive(32, duration, move |_| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            let res = h.get(format!("{b}/openapi.json")).send().await?;
            black_box(res.bytes().await?);
            Ok(())
        }
    })
    .await?;

    let (h, b, a) = (http.clone(), base.clone(), Arc::clone(&auth));
    let http_import = drive(32, duration, move |i| {
        let (h, b, a) = (h.clone(), b.clone(), Arc::clone(&a));
        async move {
            let body = serde_json::json!({"userId": format!("http-{i}"), "type": "coinbase", "accessToken": format!("at-{i}"), "refreshToken": "rt"});
            let res = h.post(format!("{b}/api/v1/tokens/import")).header("X-Client-Id", &a.0).header("X-Client-Secret", &a.1).json(&body).send().await?;
            if !res.status().is_success() {
                return Err(format!("import answered {}", res.status()).into());
            }
            Ok(())
        }
    })
    .await?;

    let (h, b, a) = (http.clone(), base.clone(), Arc::clone(&auth));
    let http_status = drive(32, duration, move |i| {
        let (h, b, a, ids) = (h.clone(), b.clone(), Arc::clone(&a), Arc::clone(&ids));
        async move {
            let id = ids[(i as usize) % ids.len()];
            let res = h
                .get(format!("{b}/api/v1/tokens/{id}"))
                .header("X-Client-Id", &a.0)
                .header("X-Client-Secret", &a.1)
                .send()
                .await?;
            if !res.status().is_success() {
                return Err(format!("status answered {}", res.status()).into());
            }
            black_box(res.bytes().await?);
            Ok(())
        }
    })
    .await?;
    server.abort();
    Ok(BackendFigures { backend, vault_import, vault_status, http_import, http_status, http_hello })
}

#[tokio::main]
async fn main() -> Result<()> {
    let duration = seconds_from_env();
    let (envelope_ns, raw_ns) = crypto()?;
    println!("## Envelope crypto (200-byte payload)\n");
    println!("| operation | ns/op |\n|---|---|");
    println!("| raw AES-256-GCM open | {raw_ns:.0} |");
    println!("| envelope open (unwrap data key + open payload) | {envelope_ns:.0} |");
    println!("| ratio envelope / raw | {:.2}× |\n", envelope_ns / raw_ns);

    println!(
        "## Throughput ({}s per measurement, {} cores)\n",
        duration.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "| backend | vault import/s | vault status-read/s | HTTP hello (openapi.json)/s | HTTP import/s | HTTP status-read/s | status / hello |"
    );
    println!("|---|---|---|---|---|---|---|");
    for b in Backend::all() {
        let f = backend(b, duration).await?;
        println!(
            "| {:?} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× |",
            f.backend,
            f.vault_import,
            f.vault_status,
            f.http_hello,
            f.http_import,
            f.http_status,
            f.http_status / f.http_hello
        );
    }
    Ok(())
}
