//! Test harness: the real server on 127.0.0.1 port 0 over a fresh database per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test binaries; tests may panic

use std::sync::Arc;

use linkvault_crypto::MasterKey;
use linkvault_domain::{Clock, SystemClock, TokenMode};
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
    /// The application state the server runs with (to drive its workers, e.g. the transfer follower).
    pub state: AppState,
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
    /// The clock of the vault, the engine and the sandbox (the system clock when unset).
    pub clock: Option<Arc<dyn Clock>>,
    /// Request rate limits (default: none).
    pub rate_limits: Option<linkvault_server::RateLimitConfig>,
    /// Lifetimes of client-managed tokens (default: `ClientTokenPolicy::default()`).
    pub client_token_policy: Option<linkvault_vault::ClientTokenPolicy>,
    /// The listener's limits (`ServerLimits::default()`, as `serve` has them, when unset).
    pub limits: Option<linkvault_server::ServerLimits>,
    /// The bearer token `/metrics` requires (`serve --metrics-token`); open when unset.
    pub metrics_token: Option<linkvault_server::MetricsToken>,
    /// Where webhooks may go (default: as `serve` would, i.e. loopback over http with `sandbox` only).
    pub webhook_policy: Option<linkvault_vault::WebhookPolicy>,
    /// Refuse sensitive actions whose audit record cannot be written (`--audit-fail-closed`).
    pub audit_fail_closed: bool,
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> Result<TestApp, Box<dyn std::error::Error>> {
    let fresh = fresh_store(backend).await?;
    let clock = options.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let mut vault = Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::clone(&clock)).await?;
    if let Some(policy) = options.client_token_policy {
        vault = vault.with_client_token_policy(policy);
    }
    let webhooks = linkvault_vault::WebhookPolicy::default();
    let webhooks = if options.sandbox { webhooks.sandbox() } else { webhooks };
    vault = vault.with_webhook_policy(options.webhook_policy.clone().unwrap_or(webhooks));
    vault = vault.with_audit_fail_closed(options.audit_fail_closed);
    let vault = Arc::new(vault);
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
        let mut config = linkvault_sandbox::SandboxConfig::new(sandbox_base).with_clock(Arc::clone(&clock));
        if let Some(ttl) = options.session_ttl {
            config.session_ttl = ttl;
        }
        extra = Some(axum::Router::new().nest("/sandbox", linkvault_sandbox::router(config)));
    }
    let mut link = options.link.clone().unwrap_or_default();
    link.public_url = base.clone();
    link.sandbox = options.sandbox;
    let mut state = AppState::new(Arc::clone(&vault), Arc::clone(&fresh.store), Arc::new(catalog))?
        .with_link(link)
        .with_metrics_token(options.metrics_token.clone());
    if let Some(limits) = options.rate_limits {
        state = state.with_rate_limits(limits);
    }
    let router = linkvault_server::app(state.clone(), extra);
    let app = router.clone();
    let limits = options.limits.unwrap_or_default();
    let server = tokio::spawn(async move {
        let _ = linkvault_server::serve(listener, app, limits, std::future::pending()).await;
    });
    let client = create_client(&vault, "test app").await?;
    Ok(TestApp { base, http: reqwest::Client::new(), vault, router, state, fresh, client, server })
}

/// A test server with the sandbox, whose vault, engine and sandbox share a clock the test moves by hand.
pub async fn spawn_sandbox_on_manual_clock(
    backend: Backend,
) -> Result<(TestApp, Arc<linkvault_domain::ManualClock>), Box<dyn std::error::Error>> {
    let clock = Arc::new(linkvault_domain::ManualClock::new(time::OffsetDateTime::now_utc()));
    let options = Options { sandbox: true, clock: Some(clock.clone()), ..Options::default() };
    Ok((spawn_app_with(backend, options).await?, clock))
}

pub async fn create_client(vault: &Vault, name: &str) -> Result<ClientCreds, Box<dyn std::error::Error>> {
    create_client_in_mode(vault, name, TokenMode::Managed).await
}

pub async fn create_client_in_mode(
    vault: &Vault,
    name: &str,
    mode: TokenMode,
) -> Result<ClientCreds, Box<dyn std::error::Error>> {
    let created = vault.create_client(name, mode).await?;
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

/// Signs in at a sandbox OAuth exchange (`coinbase` or `uphold`) through its consent form (as a browser would),
/// exchanges the code, and imports the tokens with the given key: a connection of that key's scope.
pub async fn connect_oauth(
    app: &TestApp,
    client: &ClientCreds,
    secret: &str,
    user: &str,
    integration_type: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    use linkvault_integrations::oauth::{self, OAuthClient};
    use secrecy::ExposeSecret as _;
    let mut catalog = Catalog::embedded();
    catalog.point_at_sandbox(&format!("{}/sandbox", app.base))?;
    let integration = catalog.get(integration_type).ok_or("no such integration in the catalog")?;
    let scope = if secret == client.write { linkvault_domain::Scope::Write } else { linkvault_domain::Scope::Read };
    let redirect = "http://127.0.0.1:9/callback";
    let request = oauth::authorization_request(integration, redirect, scope)?;
    let mut form: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
    form.extend(
        [("username", "Mesh"), ("password", "Pass123"), ("decision", "allow")].map(|(k, v)| (k.into(), v.into())),
    );
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut action = request.url.clone();
    action.set_query(None);
    let consent = browser.post(action).form(&form).send().await?;
    let location = consent.headers().get("location").ok_or("consent did not redirect")?.to_str()?.to_owned();
    let code = reqwest::Url::parse(&location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("no code")?;
    let oauth = OAuthClient::new(Arc::new(SystemClock))?;
    let tokens = oauth.exchange_code(integration, &code, redirect, request.pkce.verifier()).await?;
    let imported = app
        .import_as(
            &client.id,
            secret,
            serde_json::json!({
                "userId": user, "type": integration_type,
                "accessToken": tokens.access_token.expose_secret(),
                "refreshToken": tokens.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
                "expiresInSeconds": 3600,
            }),
        )
        .await?;
    assert_eq!(imported.code, 200, "{}", imported.raw);
    Ok(token_id(&imported))
}

/// Signs in through `POST /api/v1/authenticate` (credentials or API-key integrations) and returns the tokenId.
pub async fn authenticate(
    app: &TestApp,
    client: &ClientCreds,
    secret: &str,
    user: &str,
    body: Value,
) -> Result<String, Box<dyn std::error::Error>> {
    let answer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/authenticate?userId={user}"),
            Some((&client.id, secret)),
            Some(body.to_string()),
        )
        .await?;
    let token = answer.content()["accountTokens"][0]["tokenId"].as_str().unwrap_or_default().to_owned();
    assert!(!token.is_empty(), "{}", answer.raw);
    Ok(token)
}

/// The Binance-like username/password + MFA sign-in (`binanceInternationalDirect`).
pub async fn connect_binance_direct(
    app: &TestApp,
    client: &ClientCreds,
    secret: &str,
    user: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let body = serde_json::json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123", "mfaCode": "123456"});
    authenticate(app, client, secret, user, body).await
}

/// An API key pair issued by the Binance sandbox for the `Mesh` user (`read`, or `read` + `withdraw`).
pub async fn binance_api_key(app: &TestApp, withdraw: bool) -> Result<(String, String), Box<dyn std::error::Error>> {
    let permissions = if withdraw { serde_json::json!(["read", "withdraw"]) } else { serde_json::json!(["read"]) };
    let issued: Value = app
        .http
        .post(format!("{}/sandbox/admin/binance/api-keys", app.base))
        .json(&serde_json::json!({"username": "Mesh", "permissions": permissions}))
        .send()
        .await?
        .json()
        .await?;
    let key = issued["apiKey"].as_str().ok_or("no apiKey issued")?.to_owned();
    let secret = issued["secretKey"].as_str().ok_or("no secretKey issued")?.to_owned();
    Ok((key, secret))
}

/// A `binanceInternational` (API key) connection, signed in with a fresh sandbox key pair.
pub async fn connect_binance_key(
    app: &TestApp,
    client: &ClientCreds,
    secret: &str,
    user: &str,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let (api_key, api_secret) = binance_api_key(app, secret == client.write).await?;
    let body = serde_json::json!({"type": "binanceInternational", "username": api_key, "password": api_secret});
    Ok((authenticate(app, client, secret, user, body).await?, api_key))
}

/// A connection of `user` at `integration_type`, made the way that integration signs in.
pub async fn connect(
    app: &TestApp,
    client: &ClientCreds,
    secret: &str,
    user: &str,
    integration_type: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    match integration_type {
        "coinbase" | "uphold" | "sandboxCoinbase" => connect_oauth(app, client, secret, user, integration_type).await,
        "binanceInternational" => Ok(connect_binance_key(app, client, secret, user).await?.0),
        _ => connect_binance_direct(app, client, secret, user).await,
    }
}

impl TestApp {
    pub async fn post(
        &self,
        creds: (&str, &str),
        path: &str,
        body: &Value,
    ) -> Result<Answer, Box<dyn std::error::Error>> {
        self.call(reqwest::Method::POST, path, Some(creds), Some(body.to_string())).await
    }

    /// The sandbox's per-exchange request counters (`GET /sandbox/admin/requests`).
    pub async fn sandbox_counters(&self) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(self.http.get(format!("{}/sandbox/admin/requests", self.base)).send().await?.json().await?)
    }
}

/// A link token made with `secret` of client `id` (asserting it was issued).
pub async fn link_token_as(
    app: &TestApp,
    id: &str,
    secret: &str,
    body: Value,
) -> Result<String, Box<dyn std::error::Error>> {
    let answer =
        app.call(reqwest::Method::POST, "/api/v1/linktoken", Some((id, secret)), Some(body.to_string())).await?;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    Ok(answer.content()["linkToken"].as_str().ok_or("no linkToken")?.to_owned())
}

/// The auth_code inside a link token's URL.
pub fn auth_code(link_token: &str) -> String {
    use base64::Engine as _;
    let url = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(link_token).unwrap()).unwrap();
    url.split("auth_code=").nth(1).unwrap().to_owned()
}

/// A POST to the Link page's API, with the session bearer if any.
pub async fn link_post(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> Answer {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.unwrap();
    let code = res.status().as_u16();
    let raw = res.text().await.unwrap();
    Answer { code, body: serde_json::from_str(&raw).unwrap_or(Value::Null), raw }
}

/// Starts the Link session of a link token: the whole `POST /link/api/session` answer.
pub async fn link_start(app: &TestApp, link_token: &str) -> Answer {
    link_post(app, "/link/api/session", None, serde_json::json!({"authCode": auth_code(link_token)})).await
}

/// Starts the Link session of a link token and returns its session token.
pub async fn link_session(app: &TestApp, link_token: &str) -> String {
    let answer = link_start(app, link_token).await;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    answer.content()["sessionToken"].as_str().unwrap().to_owned()
}

/// An HTTP 200 whose `content.status` is `status` (Mesh's in-content outcome).
pub fn assert_content_status(answer: &Answer, status: &str) {
    assert_eq!((answer.code, answer.content()["status"].as_str()), (200, Some(status)), "{}", answer.raw);
}
