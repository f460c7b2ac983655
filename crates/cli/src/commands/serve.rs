//! `linkvault serve`: bind, build the application, serve until SIGINT/SIGTERM, then drain gracefully.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use linkvault_domain::TokenMode;
use linkvault_integrations::{Catalog, HttpLimits};
use linkvault_refresh::EngineConfig;
use linkvault_sandbox::SandboxConfig;
use linkvault_server::{AppState, LinkConfig, LinkPurger, MetricsToken, RateLimitConfig, ServerLimits};
use linkvault_vault::Vault;
use serde_json::json;

use crate::GlobalOptions;
use crate::bootstrap::open_vault_and_store;
use crate::commands::webhook_egress::WebhookEgress;

mod plan;

const SANDBOX_CLIENT_FILE: &str = "sandbox-client.json";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "LINKVAULT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The origin link tokens point at; defaults to http://<listen address>.
    #[arg(long, env = "LINKVAULT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Also serve the built-in sandbox exchanges and create a demo client on first start.
    #[arg(long, env = "LINKVAULT_SANDBOX")]
    sandbox: bool,
    /// A TOML file that adds or overrides integrations.
    #[arg(long, env = "LINKVAULT_CATALOG")]
    catalog: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on /metrics (16+ visible ASCII characters). Unset: /metrics is
    /// open to whoever reaches the listener.
    #[arg(long, env = "LINKVAULT_METRICS_TOKEN", hide_env_values = true, value_parser = MetricsToken::parse)]
    metrics_token: Option<MetricsToken>,
    #[command(flatten)]
    tuning: Tuning,
    #[command(flatten)]
    limits: Limits,
    #[command(flatten)]
    listener: ListenerLimits,
    #[command(flatten)]
    webhooks: WebhookEgress,
    /// Days delivered and given-up webhook events are kept in the outbox (they name users and tokenIds);
    /// pending events are kept until delivered or given up.
    #[arg(long, env = "LINKVAULT_WEBHOOK_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    webhook_retention_days: u64,
    /// Seconds a key version stays current: then a new one replaces it, every data key is re-wrapped under it
    /// and the old one is deleted once no row uses it (so a deleted connection's key is gone from the live
    /// database within this period). 0 turns the schedule off (`keys rotate` by hand). Default: one day.
    #[arg(long, env = "LINKVAULT_KEY_ROTATION_INTERVAL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    key_rotation_interval_secs: u64,
}

/// Limits of the HTTP listener (see `linkvault_server::ServerLimits`); the defaults suit a host with the
/// common 1,024 open-file soft limit.
#[derive(Debug, Args)]
struct ListenerLimits {
    /// Seconds a client has to send a complete request head; also how long an idle keep-alive connection
    /// stays open.
    #[arg(long, env = "LINKVAULT_HEADER_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    header_read_timeout_secs: u64,
    /// Seconds a request may take before it is answered 503 (requestTimeout).
    #[arg(long, env = "LINKVAULT_REQUEST_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Open connections at most; beyond it the oldest connection without a request in progress is closed.
    /// Keep it well below the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "LINKVAULT_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Requests handled at once at most; more are answered 503 (serverBusy) with Retry-After.
    #[arg(long, env = "LINKVAULT_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_in_flight: u32,
}

impl ListenerLimits {
    fn limits(&self) -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections as usize,
            max_in_flight: self.max_in_flight as usize,
        }
    }
}

/// Request rate limits, each "N per minute" (bursts up to N); 0 turns one off. Counted per instance.
#[derive(Debug, Args)]
struct Limits {
    /// `/api/v1` requests per minute per API client.
    #[arg(long, env = "LINKVAULT_API_RATE_LIMIT", default_value_t = 6000)]
    api_rate_limit: u32,
    /// `/link/*` requests per minute per client address.
    #[arg(long, env = "LINKVAULT_LINK_ADDRESS_RATE_LIMIT", default_value_t = 1200)]
    link_address_rate_limit: u32,
    /// Link sessions started (`POST /link/api/session`) per minute per client address.
    #[arg(long, env = "LINKVAULT_LINK_SESSION_START_RATE_LIMIT", default_value_t = 120)]
    link_session_start_rate_limit: u32,
    /// `/link/api/*` calls per minute per Link session.
    #[arg(long, env = "LINKVAULT_LINK_SESSION_RATE_LIMIT", default_value_t = 300)]
    link_session_rate_limit: u32,
    /// Sign-in attempts (credentials, OAuth starts) per minute per Link session.
    #[arg(long, env = "LINKVAULT_LINK_SIGN_IN_RATE_LIMIT", default_value_t = 10)]
    link_sign_in_rate_limit: u32,
    /// Count Link requests against the last `X-Forwarded-For` address instead of the TCP peer. Only behind a
    /// reverse proxy you run that appends the address it saw (otherwise clients choose their own address).
    #[arg(long, env = "LINKVAULT_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
}

impl Limits {
    fn config(&self) -> RateLimitConfig {
        RateLimitConfig {
            api_per_client: NonZeroU32::new(self.api_rate_limit),
            link_per_address: NonZeroU32::new(self.link_address_rate_limit),
            link_sessions_per_address: NonZeroU32::new(self.link_session_start_rate_limit),
            link_per_session: NonZeroU32::new(self.link_session_rate_limit),
            sign_ins_per_session: NonZeroU32::new(self.link_sign_in_rate_limit),
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
}

/// How often expired link sessions and OAuth sign-ins are purged.
const LINK_PURGE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Limits on upstream calls and on this instance's share of the refresh work. Rate and concurrency are per
/// integration and per instance: with several instances, divide the integration's own limit among them.
#[derive(Debug, Args)]
struct Tuning {
    /// Refresh grants started per second, per integration (a token bucket with twice this burst).
    #[arg(long, env = "LINKVAULT_REFRESH_RATE", default_value_t = 20.0, value_parser = positive_rate)]
    refresh_rate: f64,
    /// Refresh grants in progress at once, per integration.
    #[arg(long, env = "LINKVAULT_REFRESH_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    refresh_concurrency: u32,
    /// How long a claimed connection stays leased to this instance, in seconds. Raised to twice the upstream
    /// worst case if lower; a crashed instance's connections are taken over when it runs out.
    #[arg(long, env = "LINKVAULT_REFRESH_LEASE_SECS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=3600))]
    refresh_lease_secs: u64,
    /// Upper bound on one call to an integration (refresh grant, sign-in, API call), in seconds.
    #[arg(long, env = "LINKVAULT_UPSTREAM_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    upstream_timeout_secs: u64,
}

fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 100_000.0 => Ok(rate),
        _ => Err(format!("{raw:?} is not a rate between 0 and 100000 grants per second (e.g. 20 or 0.5)")),
    }
}

impl Tuning {
    fn limits(&self) -> HttpLimits {
        let total = Duration::from_secs(self.upstream_timeout_secs);
        HttpLimits {
            connect_timeout: total.min(HttpLimits::default().connect_timeout),
            total_timeout: total,
            ..HttpLimits::default()
        }
    }

    fn engine(&self) -> EngineConfig {
        let mut config = EngineConfig::new();
        config.per_integration_rate_per_sec = self.refresh_rate;
        // Burst of two seconds' worth, at least one grant.
        config.per_integration_burst = (self.refresh_rate * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        config.per_integration_concurrency = self.refresh_concurrency as usize;
        config.max_in_flight = config.max_in_flight.max(config.per_integration_concurrency);
        config.lease = Duration::from_secs(self.refresh_lease_secs);
        config
    }
}

impl ServeArgs {
    /// The catalog: the embedded one, with the `--catalog` file applied. A bad file is an error naming the
    /// entry and the field.
    pub(crate) fn load_catalog(&self) -> anyhow::Result<Catalog> {
        Ok(match &self.catalog {
            Some(path) => Catalog::load_file(path)?,
            None => Catalog::embedded(),
        })
    }

    /// The webhook egress policy; sandbox mode also delivers to loopback receivers over http (a developer's
    /// receiver beside it).
    pub(crate) fn webhook_policy(&self) -> linkvault_vault::WebhookPolicy {
        self.webhooks.policy(self.sandbox)
    }

    /// How long a key version stays current, if the schedule is on.
    pub(crate) fn key_schedule(&self) -> Option<Duration> {
        (self.key_rotation_interval_secs > 0).then(|| Duration::from_secs(self.key_rotation_interval_secs))
    }
}

pub async fn run(global: &GlobalOptions, args: ServeArgs) -> anyhow::Result<()> {
    // A bad catalog stops start-up before anything else happens.
    let mut catalog = args.load_catalog()?;
    let (vault, store, description) = open_vault_and_store(global, args.webhook_policy()).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}; choose another address with --listen", args.listen))?;
    let bound = listener.local_addr()?;
    let public_url =
        args.public_url.clone().unwrap_or_else(|| format!("http://{bound}")).trim_end_matches('/').to_owned();

    let sandbox = if args.sandbox {
        let base = format!("{public_url}/sandbox");
        catalog.point_at_sandbox(&base)?;
        let config = SandboxConfig::from_env(base.clone())?;
        announce_sandbox_client(&vault, &global.data_dir).await?;
        println!("sandbox exchanges at {base} (logins: Mesh / Pass123, MFA 123456)");
        Some(axum::Router::new().nest("/sandbox", linkvault_sandbox::router(config)))
    } else {
        None
    };

    let state = AppState::with_tuning(
        Arc::clone(&vault),
        store,
        Arc::new(catalog),
        args.tuning.limits(),
        args.tuning.engine(),
    )?
    .with_link(LinkConfig::new(public_url.clone(), args.sandbox))
    .with_rate_limits(args.limits.config())
    .with_metrics_token(args.metrics_token.clone())
    .with_webhooks(linkvault_webhooks::WorkerConfig {
        retention: Duration::from_secs(args.webhook_retention_days * 24 * 3600),
        ..linkvault_webhooks::WorkerConfig::default()
    })?;
    // The refresh scheduler runs beside the HTTP server and stops with it; leases it holds at exit simply
    // expire and are recovered by whichever instance looks next.
    let (stop_engine, engine_stopped) = tokio::sync::watch::channel(false);
    let engine = state.engine.clone();
    let webhooks = state.webhooks.clone();
    let deliveries_stopped = engine_stopped.clone();
    let follower_stopped = engine_stopped.clone();
    let purger_stopped = engine_stopped.clone();
    // Deletes expired Link rows on a timer (not on the request path); stops with the server.
    let purger = LinkPurger::new(state.clone(), LINK_PURGE_INTERVAL);
    // Follows sent transfers at their providers and announces status changes; stops with the server.
    let follower = linkvault_server::TransferFollower::new(state.clone(), linkvault_server::FollowerConfig::default());
    let scheduler = tokio::spawn(async move { engine.run(engine_stopped).await });
    let deliverer = tokio::spawn(async move { webhooks.run(deliveries_stopped).await });
    let following = tokio::spawn(async move { follower.run(follower_stopped).await });
    let purging = tokio::spawn(async move { purger.run(purger_stopped).await });
    // Replaces the current key version once it is older than the period (on whichever instance looks first).
    let key_schedule = args.key_schedule().map(|every| {
        let stopped = stop_engine.subscribe();
        let schedule = linkvault_vault::KeySchedule::new(Arc::clone(&vault), every);
        tokio::spawn(async move { schedule.run(stopped).await })
    });
    let app = linkvault_server::app(state, sandbox);
    println!(
        "linkvault listening on {public_url} ({description}){}",
        if args.sandbox { ", sandbox enabled" } else { "" }
    );
    if args.sandbox {
        println!("demo app: open {public_url}/demo to connect a sandbox account through Link");
    }
    tracing::info!(%bound, "serving");
    // The listener hands each request its peer address (ConnectInfo) for the per-address Link limits.
    linkvault_server::serve(listener, app, args.listener.limits(), shutdown_signal())
        .await
        .context("the server stopped with an error")?;
    let _ = stop_engine.send(true);
    if tokio::time::timeout(std::time::Duration::from_secs(20), scheduler).await.is_err() {
        tracing::warn!("the refresh scheduler did not stop within 20 s; its leases will expire and be recovered");
    }
    // Deliveries in flight finish within the receiver timeout; unfinished ones are retried by the next start.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), deliverer).await;
    // A check cut short leaves its lease to expire; the next pass (on any instance) checks that transfer again.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), following).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), purging).await;
    // A rotation cut short is resumed by the next look, on this or another instance.
    if let Some(rotating) = key_schedule {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rotating).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Creates the sandbox demo client on first start; on every start says where its credentials are.
async fn announce_sandbox_client(vault: &Vault, data_dir: &Path) -> anyhow::Result<()> {
    let file = data_dir.join(SANDBOX_CLIENT_FILE);
    if let Some(id) = vault.sandbox_demo_client().await? {
        println!("sandbox demo client {id}; its credentials are in {}", file.display());
        return Ok(());
    }
    let created = vault.create_client("Sandbox demo", TokenMode::Managed).await?;
    let keys: Vec<_> = created
        .keys
        .iter()
        .map(|(scope, secret)| json!({"scope": scope.as_str(), "secret": secret.expose()}))
        .collect();
    let document = json!({"clientId": created.client_id.to_string(), "keys": keys});
    write_private(&file, &format!("{document:#}\n"))?;
    vault.set_sandbox_demo_client(created.client_id).await?;
    println!("created the sandbox demo client (saved to {}):", file.display());
    println!("  X-Client-Id:     {}", created.client_id);
    for (scope, secret) in &created.keys {
        println!("  X-Client-Secret: {}  ({scope} key)", secret.expose());
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
