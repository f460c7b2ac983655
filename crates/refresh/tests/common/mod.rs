//! Test harness: the sandbox exchanges on a loopback port, a catalog pointed at them, a vault on a fresh
//! store, an engine, and real grants obtained by driving the sandbox's authorize form over HTTP.

#![allow(dead_code)] // each test binary uses part of the harness

use std::sync::Arc;
use std::time::Duration;

use linkvault_crypto::MasterKey;
use linkvault_domain::{ClientId, Clock, IntegrationType, NaturalKey, Scope, TokenId, TokenMode, UserId};
use linkvault_integrations::{Catalog, HttpLimits, OAuthClient, oauth};
use linkvault_refresh::{EngineConfig, RefreshEngine};
use linkvault_sandbox::SandboxConfig;
use linkvault_storage::testing::{Backend, FreshStore, fresh_store};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const REDIRECT_URI: &str = "http://127.0.0.1:9/linkvault/callback";

/// Upstream calls in tests: short, so that leases (at least twice the worst case) stay short too.
pub fn test_limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_body_bytes: 1 << 16,
    }
}

pub struct Harness {
    pub fresh: FreshStore,
    pub vault: Arc<Vault>,
    pub engine: RefreshEngine,
    pub catalog: Arc<Catalog>,
    pub oauth: OAuthClient,
    pub sandbox_base: String,
    pub client: ClientId,
    pub clock: Arc<dyn Clock>,
    /// The vault's master key (base64), for `linkvault` processes started on the same store.
    pub master_key: String,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn harness(
    backend: Backend,
    clock: Arc<dyn Clock>,
    sandbox: impl FnOnce(SandboxConfig) -> SandboxConfig,
    tune: impl FnOnce(&mut Catalog),
    config: EngineConfig,
) -> Res<Harness> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/sandbox", listener.local_addr()?);
    let sandbox_config = sandbox(SandboxConfig::new(base.clone()).with_clock(Arc::clone(&clock)));
    let app = axum::Router::new().nest("/sandbox", linkvault_sandbox::router(sandbox_config));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut catalog = Catalog::embedded();
    catalog.point_at_sandbox(&base)?;
    tune(&mut catalog);
    let catalog = Arc::new(catalog);
    let fresh = fresh_store(backend).await?;
    let master = MasterKey::generate()?;
    let master_key = master.to_base64().as_str().to_owned();
    // Tests that add a webhook receiver run it on loopback: allowed as an operator would allow it.
    let webhooks = linkvault_vault::WebhookPolicy::default()
        .with_http_allowed(true)
        .with_allowed_cidrs([linkvault_vault::webhook_policy::parse_cidr("127.0.0.0/8")?]);
    let vault = Arc::new(
        Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::clone(&clock))
            .await?
            .with_webhook_policy(webhooks),
    );
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let oauth = OAuthClient::with_limits(Arc::clone(&clock), test_limits())?;
    let engine = RefreshEngine::new(
        Arc::clone(&vault),
        Arc::clone(&fresh.store),
        Arc::clone(&catalog),
        oauth.clone(),
        Arc::clone(&clock),
        config,
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;
    Ok(Harness { fresh, vault, engine, catalog, oauth, sandbox_base: base, client, clock, master_key, http, server })
}

/// Sets the timing of one catalog entry.
pub fn with_timing(catalog: &mut Catalog, ty: &str, f: impl FnOnce(&mut linkvault_integrations::TimingPolicy)) {
    if let Some(mut integration) = catalog.get(ty).cloned() {
        f(&mut integration.timing);
        catalog.insert(integration);
    }
}

impl Harness {
    pub fn key(&self, integration: &str, user: &str) -> Res<NaturalKey> {
        Ok(NaturalKey {
            client_id: self.client,
            user_id: UserId::parse(user)?,
            integration: IntegrationType::parse(integration)?,
            scope: Scope::Read,
        })
    }

    /// A real grant from the sandbox (authorize form submitted with the sandbox login, code exchanged),
    /// stored through the vault as `user`'s connection.
    pub async fn connect(&self, integration_type: &str, user: &str) -> Res<TokenId> {
        let tokens = self.grant(integration_type).await?;
        let credentials =
            IntegrationCredentials { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
        let meta = ConnectionMeta {
            account_id: None,
            account_name: None,
            access_expires_at: Some(tokens.expires_at),
            refresh_expires_at: tokens.refresh_token_expires_at,
        };
        Ok(self.vault.store_credentials(&self.key(integration_type, user)?, &credentials, &meta).await?.token_id)
    }

    /// A real grant from the sandbox (authorize form submitted with the sandbox login, code exchanged), not
    /// stored: for tests that hand it to another process.
    pub async fn grant(&self, integration_type: &str) -> Res<linkvault_integrations::oauth::TokenSet> {
        let integration = self.catalog.get(integration_type).ok_or("integration")?;
        let request = oauth::authorization_request(integration, REDIRECT_URI, Scope::Read)?;
        let mut form: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        form.push(("username".into(), "Mesh".into()));
        form.push(("password".into(), linkvault_sandbox::PASSWORD.into()));
        form.push(("decision".into(), "allow".into()));
        let mut action = request.url.clone();
        action.set_query(None);
        let response = self.http.post(action).form(&form).send().await?;
        let location = response.headers().get("location").ok_or("no redirect")?.to_str()?.to_owned();
        let code = url::Url::parse(&location)?
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .ok_or("no code")?;
        Ok(self.oauth.exchange_code(integration, &code, REDIRECT_URI, request.pkce.verifier()).await?)
    }

    pub async fn admin_get(&self, path: &str) -> Res<serde_json::Value> {
        Ok(self.http.get(format!("{}/admin/{path}", self.sandbox_base)).send().await?.json().await?)
    }

    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> Res<()> {
        let response = self.http.post(format!("{}/admin/{path}", self.sandbox_base)).json(&body).send().await?;
        if !response.status().is_success() {
            return Err(format!("admin {path}: {}", response.status()).into());
        }
        Ok(())
    }

    /// `(tokens presented, max presentations of one token, total presentations)` at the sandbox.
    pub async fn presentations(&self, exchange: &str) -> Res<(u64, u64, u64)> {
        let report = self.admin_get(&format!("refresh-tokens?integration={exchange}")).await?;
        let r = &report[exchange];
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        Ok((n("tokensPresented"), n("maxPresentations"), n("totalPresentations")))
    }

    pub async fn row(&self, token_id: TokenId) -> Res<linkvault_storage::ConnectionRecord> {
        Ok(self.fresh.store.get_connection(token_id).await?.ok_or("row is gone")?)
    }

    pub async fn outbox_types(&self) -> Res<Vec<String>> {
        Ok(self.fresh.store.pending_outbox_events(1000).await?.into_iter().map(|e| e.event_type).collect())
    }
}
