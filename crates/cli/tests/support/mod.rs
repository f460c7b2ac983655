//! Starting `linkvault serve` from the CLI tests: waits for its "listening" line and keeps draining stdout.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Spawns `cmd` (a `linkvault … serve` command), returns the child and its base URL once it listens (30 s at
/// most). Stdout is piped and drained so the server never blocks on a full pipe; stderr is the caller's choice.
pub async fn start_server(mut cmd: Command) -> Result<(Child, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("linkvault listening on ") {
                return Ok::<_, std::io::Error>(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        Ok(String::new())
    })
    .await??;
    if url.is_empty() {
        return Err("the server stopped before listening".into());
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// Writes `<dir>/catalog.toml`, whose `coinbase` entry points at the sandbox at `base` (its token endpoint at
/// `token_url` instead, if given: a fault proxy in front of it), with `extra` lines added to the entry.
pub fn coinbase_catalog(dir: &Path, base: &str, token_url: Option<&str>, extra: &str) -> std::io::Result<PathBuf> {
    let catalog = dir.join("catalog.toml");
    let token_url = token_url.map_or_else(|| format!("{base}/coinbase/oauth/token"), str::to_owned);
    std::fs::write(
        &catalog,
        format!(
            r#"
[[integration]]
type = "coinbase"
authorize_url = "{base}/coinbase/oauth/authorize"
token_url = "{token_url}"
revoke_url = "{base}/coinbase/oauth/revoke"
api_base_url = "{base}/coinbase"
client_id = "{id}"
client_secret = "{secret}"
rotates_refresh_tokens = true
{extra}
"#,
            id = linkvault_integrations::SANDBOX_CLIENT_ID,
            secret = linkvault_integrations::SANDBOX_CLIENT_SECRET,
        ),
    )?;
    Ok(catalog)
}

/// The HTTP API of a running server, as one client.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub client: String,
    pub secret: String,
}

impl Api {
    pub fn new(base: String, client: &str, secret: &str) -> Self {
        Self { base, http: reqwest::Client::new(), client: client.to_owned(), secret: secret.to_owned() }
    }

    /// The same server, as another client.
    pub fn for_client(mut self, (client, secret): &(String, String)) -> Self {
        (self.client, self.secret) = (client.clone(), secret.clone());
        self
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error + Send + Sync>> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Client-Id", &self.client)
            .header("X-Client-Secret", &self.secret);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
    }

    /// `GET /api/v1/tokens/{id}`.
    pub async fn status(
        &self,
        token_id: &str,
    ) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error + Send + Sync>> {
        self.call(reqwest::Method::GET, &format!("/api/v1/tokens/{token_id}"), None).await
    }
}

pub mod proxy;
