//! The deterministic simulator of the refresh engine (see tests/simulator.rs): the real `RefreshEngine` of
//! several instances on one tokio current-thread runtime with a paused clock, over a simulated store and
//! upstream, every random choice drawn from one seed.

pub mod delegate;
pub mod rng;
pub mod store;
pub mod upstream;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use linkvault_crypto::MasterKey;
use linkvault_domain::{Clock, ConnectionStatus, IntegrationType, NaturalKey, Scope, TokenId, TokenMode, UserId};
use linkvault_integrations::Catalog;
use linkvault_refresh::{EngineConfig, EngineMetrics, RefreshEngine};
use linkvault_storage::{DynStore, SqliteStore};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use rng::SimRng;
use store::SimStore;
use upstream::{GrantState, Provider, SimUpstream};

/// An instance's clock: the runtime's (paused, virtual) time plus this instance's skew.
#[derive(Debug)]
pub struct SimClock {
    pub epoch: OffsetDateTime,
    pub start: tokio::time::Instant,
    pub skew_ms: i64,
}

impl Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.epoch + time::Duration::milliseconds(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX) + self.skew_ms)
    }
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub connections: u64,
    pub instances: usize,
    pub virtual_secs: u64,
    /// Per mille of grants per network fault kind.
    pub fault_per_mille: u64,
    pub crash_every_secs: u64,
    pub caller_every_ms: u64,
    pub max_skew_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            connections: 60,
            instances: 3,
            virtual_secs: 3600,
            fault_per_mille: 8,
            crash_every_secs: 300,
            caller_every_ms: 700,
            max_skew_ms: 500,
        }
    }
}

#[derive(Debug, Default)]
pub struct SimReport {
    pub refreshes: u64,
    pub violations: Vec<String>,
    pub reauth: u64,
    pub crashes: u64,
    pub hangups: u64,
    /// A digest of the run (presentations and final rows), to check that a seed replays exactly.
    pub digest: u64,
}

const INTEGRATIONS: [(&str, bool, Option<u64>); 3] =
    [("coinbase", true, None), ("uphold", true, Some(60)), ("kraken", false, None)];

fn catalog() -> Catalog {
    let mut catalog = Catalog::embedded();
    let template = catalog.get("coinbase").cloned();
    for (name, rotates, grace) in INTEGRATIONS {
        let Some(mut integration) = catalog.get(name).cloned().or_else(|| template.clone()) else { continue };
        if let Ok(t) = IntegrationType::parse(name) {
            integration.integration_type = t;
        }
        integration.auth = linkvault_integrations::AuthScheme::OAuth2;
        integration.timing.rotates_refresh_tokens = rotates;
        integration.timing.reuse_grace_secs = grace;
        integration.timing.refresh_margin_secs = 60;
        integration.timing.min_refresh_interval_secs = 10;
        integration.timing.refresh_token_ttl_secs = None;
        catalog.insert(integration);
    }
    catalog
}

struct Instance {
    engine: RefreshEngine,
    run: tokio::task::JoinHandle<()>,
    callers: Vec<tokio::task::JoinHandle<()>>,
    _stop: tokio::sync::watch::Sender<bool>,
    owner: String,
}

fn engine_config(owner: String) -> EngineConfig {
    let mut config = EngineConfig::new();
    config.owner = owner;
    config.batch_size = 20;
    config.max_in_flight = 16;
    config.per_integration_concurrency = 8;
    config.per_integration_rate_per_sec = 50.0;
    config.per_integration_burst = 50;
    config.lease = Duration::from_secs(1);
    config.idle_poll = Duration::from_millis(500);
    config.recovery_interval = Duration::from_secs(2);
    config.gauge_interval = Duration::from_secs(3600);
    config.on_demand_poll = Duration::from_millis(100);
    config.on_demand_timeout = Duration::from_secs(1);
    config.write_back_allowance = Duration::from_secs(2);
    config.grace_margin = Duration::from_secs(2);
    config
}

/// Runs one seed to the end (or the first violation) and reports.
pub fn run_seed(seed: u64, cfg: &SimConfig) -> SimReport {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => return SimReport { violations: vec![format!("runtime: {e}")], ..SimReport::default() },
    };
    runtime
        .block_on(simulate(seed, cfg))
        .unwrap_or_else(|e| SimReport { violations: vec![format!("set-up failed: {e}")], ..SimReport::default() })
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn simulate(seed: u64, cfg: &SimConfig) -> Res<SimReport> {
    let rng = Arc::new(Mutex::new(SimRng::new(seed)));
    let draw = |n: u64| rng.lock().unwrap_or_else(PoisonError::into_inner).below(n);
    let dir = tempdir()?;
    let inner = SqliteStore::open(&dir.join("sim.db"))?;
    let sim = Arc::new(SimStore {
        inner,
        state: Mutex::default(),
        rng: Arc::clone(&rng),
        keys: Mutex::new(None),
        slow_per_mille: 2,
        slow_write: Duration::from_secs(4),
    });
    let store: DynStore = sim.clone();
    store.migrate().await?;
    let epoch = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_800);
    let setup_clock: Arc<dyn Clock> = Arc::new(SimClock { epoch, start: tokio::time::Instant::now(), skew_ms: 0 });
    let vault =
        Arc::new(Vault::open(Arc::clone(&store), Arc::new(MasterKey::generate()?), Arc::clone(&setup_clock)).await?);
    let client = vault.create_client("sim", TokenMode::Managed).await?.client_id;
    sim.freeze_keys().await?;
    let catalog = Arc::new(catalog());
    let provider = Arc::new(Mutex::new(Provider::default()));
    // The run starts here: every clock counts from now.
    let start = tokio::time::Instant::now();
    let ttl = 300u64;
    let mut tokens: Vec<TokenId> = Vec::new();
    for i in 0..cfg.connections {
        let (name, rotates, grace) = INTEGRATIONS[(i % 3) as usize];
        provider.lock().unwrap_or_else(PoisonError::into_inner).grants.insert(
            i,
            GrantState {
                current: format!("rt-{i}-0"),
                generation: 0,
                dead: false,
                rotates,
                grace: grace.map(Duration::from_secs),
            },
        );
        let key = NaturalKey {
            client_id: client,
            user_id: UserId::parse(&format!("user{i}"))?,
            integration: IntegrationType::parse(name)?,
            scope: Scope::Read,
        };
        let credentials = IntegrationCredentials {
            access_token: SecretString::from(format!("at-{i}-0")),
            refresh_token: Some(SecretString::from(format!("rt-{i}-0"))),
        };
        let meta = ConnectionMeta {
            account_id: None,
            account_name: None,
            access_expires_at: Some(epoch + time::Duration::seconds(i64::try_from(draw(ttl) + 30)?)),
            refresh_expires_at: None,
        };
        let id = TokenId::from_uuid(uuid::Uuid::from_u64_pair(seed, i));
        let stored = vault.store_credentials_issuing(&key, &credentials, &meta, || id).await?;
        tokens.push(stored.token_id);
    }
    let mut report = SimReport::default();
    let mut metrics: Vec<Arc<EngineMetrics>> = Vec::new();
    let mut generation = 0u64;
    let start_instance =
        |n: usize, generation: u64, metrics: &mut Vec<Arc<EngineMetrics>>, draw: &dyn Fn(u64) -> u64| {
            let skew =
                i64::try_from(draw(u64::try_from(cfg.max_skew_ms * 2 + 1).unwrap_or(1))).unwrap_or(0) - cfg.max_skew_ms;
            let clock = Arc::new(SimClock { epoch, start, skew_ms: skew });
            let upstream = Arc::new(SimUpstream {
                provider: Arc::clone(&provider),
                rng: Arc::clone(&rng),
                clock: Arc::clone(&clock),
                timeout: Duration::from_secs(3),
                fault_per_mille: cfg.fault_per_mille,
                access_ttl_secs: ttl,
            });
            let owner = format!("sim-{n}-{generation}");
            let engine = RefreshEngine::with_grant_sender(
                Arc::clone(&vault),
                Arc::clone(&store),
                Arc::clone(&catalog),
                upstream,
                clock,
                engine_config(owner.clone()),
            );
            metrics.push(engine.metrics());
            let (stop, rx) = tokio::sync::watch::channel(false);
            let runner = engine.clone();
            let run = tokio::spawn(async move { runner.run(rx).await });
            Instance { engine, run, callers: Vec::new(), _stop: stop, owner }
        };
    let mut instances: Vec<Instance> = Vec::new();
    for n in 0..cfg.instances {
        generation += 1;
        instances.push(start_instance(n, generation, &mut metrics, &draw));
    }
    let step = Duration::from_millis(cfg.caller_every_ms);
    let steps = cfg.virtual_secs * 1000 / cfg.caller_every_ms.max(1);
    let crash_odds = (cfg.crash_every_secs * 1000 / cfg.caller_every_ms.max(1)).max(1);
    for _ in 0..steps {
        tokio::time::sleep(step).await;
        // A concurrent on-demand caller, who may hang up (its task dropped) at any point.
        let n = draw(instances.len() as u64) as usize;
        let token_id = tokens[draw(tokens.len() as u64) as usize];
        let engine = instances[n].engine.clone();
        let refused = draw(2) == 0;
        let vault_c = Arc::clone(&vault);
        let caller = tokio::spawn(async move {
            if refused {
                if let Ok(record) = vault_c.connection_for(client, token_id).await
                    && let Ok(creds) = vault_c.open_credentials(&record).await
                {
                    let _ = engine.credential_refused(client, token_id, &creds.access_token, false).await;
                }
            } else {
                let _ = engine.ensure_fresh(client, token_id).await;
            }
        });
        if draw(2) == 0 {
            let after = Duration::from_millis(draw(2500));
            report.hangups += 1;
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                caller.abort();
            });
        } else {
            instances[n].callers.push(caller);
            instances[n].callers.retain(|c| !c.is_finished());
        }
        // A crash of one instance at whatever await point its tasks are, and a restart from the store.
        if draw(crash_odds) == 0 {
            let n = draw(instances.len() as u64) as usize;
            let old = &instances[n];
            old.run.abort();
            old.engine.abort_owned_tasks();
            for c in &old.callers {
                c.abort();
            }
            {
                let st = sim.state();
                let mut p = provider.lock().unwrap_or_else(PoisonError::into_inner);
                for (i, t) in tokens.iter().enumerate() {
                    if st.rows.get(t).is_some_and(|r| r.refresh.lease_owner.as_deref() == Some(old.owner.as_str())) {
                        p.excused.entry(i as u64).or_insert("crash while leased");
                    }
                }
            }
            report.crashes += 1;
            generation += 1;
            instances[n] = start_instance(n, generation, &mut metrics, &draw);
        }
        check(&sim, &vault, &provider, &tokens, &metrics, &mut report).await;
        if !report.violations.is_empty() {
            break;
        }
    }
    for i in &instances {
        i.run.abort();
        i.engine.abort_owned_tasks();
    }
    let p = provider.lock().unwrap_or_else(PoisonError::into_inner);
    report.refreshes = p.processed;
    let mut digest = seed;
    for (token, (_, _, count)) in &p.presented {
        for b in token.bytes() {
            digest = digest.rotate_left(5) ^ u64::from(b);
        }
        digest = digest.wrapping_mul(31).wrapping_add(*count);
    }
    report.digest = digest ^ report.crashes ^ (report.reauth << 32);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// The invariants, after every step.
async fn check(
    sim: &SimStore,
    vault: &Vault,
    provider: &Mutex<Provider>,
    tokens: &[TokenId],
    metrics: &[Arc<EngineMetrics>],
    report: &mut SimReport,
) {
    let rows: Vec<_> = {
        let st = sim.state();
        tokens.iter().filter_map(|t| st.rows.get(t).cloned()).collect()
    };
    let slow: Vec<TokenId> = sim.state().slow_writes.clone();
    let mut reauth = 0;
    for (i, row) in rows.iter().enumerate() {
        let i = i as u64;
        match row.status {
            ConnectionStatus::Active => {
                // While leased a grant may be in flight; once released, the stored token must be usable.
                if row.refresh.lease_owner.is_some() {
                    continue;
                }
                let Ok(creds) = vault.open_credentials(row).await else {
                    report.violations.push(format!("connection {i}: credentials do not open"));
                    continue;
                };
                let stored = creds.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()).unwrap_or_default();
                let p = provider.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(g) = p.grants.get(&i) {
                    let within_grace = p.presented.get(&stored).is_some_and(|(_, first, _)| {
                        g.grace.is_some_and(|grace| tokio::time::Instant::now() - *first <= grace)
                    });
                    if g.dead || (stored != g.current && !within_grace) {
                        report.violations.push(format!(
                            "connection {i} is active with an unusable refresh token (stored {stored}, provider {}, dead {})",
                            g.current, g.dead
                        ));
                    }
                }
            }
            ConnectionStatus::ReauthRequired => {
                reauth += 1;
                let id = row.token_id.to_string();
                let has_event = sim
                    .state()
                    .outbox
                    .iter()
                    .any(|e| e.event_type == "connection.reauthRequired" && e.payload.contains(&id));
                if !has_event {
                    report.violations.push(format!("connection {i} is reauthRequired without its event"));
                }
                let excused = provider.lock().unwrap_or_else(PoisonError::into_inner).excused.contains_key(&i)
                    || slow.contains(&row.token_id);
                if !excused {
                    report.violations.push(format!(
                        "connection {i} became reauthRequired ({:?}) without an injected fault that could cause it",
                        row.refresh.last_error
                    ));
                }
            }
        }
    }
    // Every mark is counted by the process that made it once it hears back from the store: not yet while the
    // answer is on its way, never when the process crashed first (its counters die with it, as in production;
    // the row's reason and its event are durable).
    let counted: u64 = metrics.iter().map(|m| m.reauth_required_total()).sum();
    let unheard = sim.state().unheard_marks;
    if counted > reauth || reauth > counted + unheard {
        report.violations.push(format!(
            "{reauth} connections reauthRequired but {counted} counted with a reason ({unheard} committed and not heard back by the process)"
        ));
    }
    report.reauth = reauth;
    let p = provider.lock().unwrap_or_else(PoisonError::into_inner);
    report.violations.extend(p.violations.iter().cloned());
}

fn tempdir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("linkvault-sim-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
