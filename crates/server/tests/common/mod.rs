//! Test harness: the real server on 127.0.0.1 port 0 over a fresh database per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test binaries; tests may panic

use std::sync::Arc;

use linkvault_crypto::MasterKey;
use linkvault_domain::{SystemClock, TokenMode};
use linkvault_integrations::Catalog;
use linkvault_server::AppState;
use linkvault_storage::testing::{Backend, FreshStore, fresh_store};
use linkvault_vault::Vault;
use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug)]
pub struct ClientCreds {
    pub id: String,
    pub read: String,
    pub write: String,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub vault: Arc<Vault>,
    pub router: axum::Router,
    pub fresh: FreshStore,
    pub client: ClientCreds,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(backend: Backend) -> Result<TestApp, Box<dyn std::error::Error>> {
    spawn_app_with(backend, Options::default()).await
}

/// What else the test server serves.
#[derive(Default)]
pub struct Options {
    /// Mount the sandbox exchanges at /sandbox and point the catalog at them (like `serve --sandbox`).
    pub sandbox: bool,
    /// Extra catalog entries, in the catalog file's TOML format.
    pub catalog_toml: Option<String>,
    /// Sandbox session lifetime (the Binance-like server's `LINKVAULT_SANDBOX_SESSION_TTL_SECS`).
    pub session_ttl: Option<std::time::Duration>,
    /// Link settings (public URL is set to the test server's; `sandbox` follows `Options::sandbox`).
    pub link: Option<linkvault_server::LinkConfig>,
    /// The server's clock (default: the system clock), e.g. a `ManualClock` to pass expiries.
    pub clock: Option<Arc<dyn linkvault_domain::Clock>>,
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> Result<TestApp, Box<dyn std::error::Error>> {
    let fresh = fresh_store(backend).await?;
    let clock = options.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let vault = Arc::new(Vault::open(Arc::clone(&fresh.store), MasterKey::generate()?, clock).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut catalog = Catalog::embedded();
    if let Some(toml) = &options.catalog_toml {
        catalog = catalog.with_overrides(toml)?;
    }
    let mut extra = None;
    if options.sandbox {
        let sandbox_base = format!("{base}/sandbox");
        catalog.point_at_sandbox(&sandbox_base)?;
        let mut config = linkvault_sandbox::SandboxConfig::new(sandbox_base);
        if let Some(ttl) = options.session_ttl {
            config.session_ttl = ttl;
        }
        extra = Some(axum::Router::new().nest("/sandbox", linkvault_sandbox::router(config)));
    }
    let mut link = options.link.clone().unwrap_or_default();
    link.public_url = base.clone();
    link.sandbox = options.sandbox;
    let state = AppState::new(Arc::clone(&vault), Arc::new(catalog))?.with_link(link);
    let router = linkvault_server::app(state, extra);
    let app = router.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let client = create_client(&vault, "test app").await?;
    Ok(TestApp { base, http: reqwest::Client::new(), vault, router, fresh, client, server })
}

pub async fn create_client(vault: &Vault, name: &str) -> Result<ClientCreds, Box<dyn std::error::Error>> {
    let created = vault.create_client(name, TokenMode::Managed).await?;
    Ok(ClientCreds {
        id: created.client_id.to_string(),
        read: created.keys[0].1.expose().to_owned(),
        write: created.keys[1].1.expose().to_owned(),
    })
}

/// A response: HTTP status and the parsed body (`Value::Null` when empty).
pub struct Answer {
    pub code: u16,
    pub body: Value,
    pub raw: String,
}

impl Answer {
    pub fn error_type(&self) -> &str {
        self.body["errorType"].as_str().unwrap_or("<none>")
    }
    pub fn content(&self) -> &Value {
        &self.body["content"]
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        creds: Option<(&str, &str)>,
        body: Option<String>,
    ) -> Result<Answer, Box<dyn std::error::Error>> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some((id, secret)) = creds {
            req = req.header("X-Client-Id", id).header("X-Client-Secret", secret);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let res = req.send().await?;
        let code = res.status().as_u16();
        let raw = res.text().await?;
        let body = if raw.is_empty() { Value::Null } else { serde_json::from_str(&raw).unwrap_or(Value::Null) };
        Ok(Answer { code, body, raw })
    }

    pub async fn import(&self, secret: &str, body: Value) -> Result<Answer, Box<dyn std::error::Error>> {
        self.import_as(&self.client.id, secret, body).await
    }

    pub async fn import_as(&self, id: &str, secret: &str, body: Value) -> Result<Answer, Box<dyn std::error::Error>> {
        self.call(reqwest::Method::POST, "/api/v1/tokens/import", Some((id, secret)), Some(body.to_string())).await
    }

    pub async fn status(&self, id: &str, secret: &str, token_id: &str) -> Result<Answer, Box<dyn std::error::Error>> {
        self.call(reqwest::Method::GET, &format!("/api/v1/tokens/{token_id}"), Some((id, secret)), None).await
    }

    pub async fn remove(
        &self,
        id: &str,
        secret: &str,
        token_id: &str,
        ty: &str,
    ) -> Result<Answer, Box<dyn std::error::Error>> {
        let body = serde_json::json!({"authToken": token_id, "type": ty}).to_string();
        self.call(reqwest::Method::DELETE, "/api/v1/account", Some((id, secret)), Some(body)).await
    }
}

pub fn token_id(answer: &Answer) -> String {
    answer.content()["tokenId"].as_str().unwrap_or_default().to_owned()
}
