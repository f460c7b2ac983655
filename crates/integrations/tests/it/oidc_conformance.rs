//! Conformance against an independent OAuth 2.0 server: oidc-provider (Node, tests/oidc-provider) on
//! loopback with PKCE required, refresh-token rotation, offline_access and revocation. Registered through a
//! catalog file; its login and consent pages are driven over HTTP. Nothing in the chain is mocked.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use linkvault_domain::Scope;
use linkvault_integrations::oauth::{self, OAuthClient, OAuthError, Revocation, TokenSet, TokenTypeHint};
use linkvault_integrations::{Catalog, Integration};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

use crate::common::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider")
}

/// Starts `node server.mjs` and reads its JSON line. The child dies with the test (kill_on_drop, stdin EOF).
async fn start_provider(log: &std::path::Path) -> (Child, Started) {
    let dir = harness_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run npm ci in tests/oidc-provider (looked in {})",
        dir.display()
    );
    let log_file = std::fs::File::create(log).unwrap();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node (is Node.js installed?): {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("oidc-provider did not start within 20 s; see {}", log.display()))
        .unwrap()
        .unwrap_or_else(|| panic!("oidc-provider exited; see {}", log.display()));
    let started: Started = serde_json::from_str(&line).unwrap();
    (child, started)
}

/// Drives the authorization request through oidc-provider's interaction pages (login form accepting any
/// login, then consent) like a browser: cookies kept, redirects followed by hand, forms parsed and posted.
async fn authorize(http: &reqwest::Client, url: &Url, redirect_uri: &str) -> Vec<(String, String)> {
    let mut next = url.clone();
    let mut response = http.get(next.clone()).send().await.unwrap();
    for _ in 0..12 {
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            let target = resolve(&next, &location);
            if target.as_str().starts_with(redirect_uri) {
                return target.query_pairs().into_owned().collect();
            }
            next = target;
            response = http.get(next.clone()).send().await.unwrap();
            continue;
        }
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "interaction page {next}: {body}");
        let form = parse_form(&body).unwrap_or_else(|| panic!("no form on {next}: {body}"));
        let fields: Vec<(String, String)> = form
            .fields
            .into_iter()
            .map(|(name, value)| match name.as_str() {
                "login" => (name, "mesh-user".to_owned()),
                "password" => (name, "Pass123".to_owned()),
                _ => (name, value),
            })
            .collect();
        let action = resolve(&next, &form.action);
        response = http.post(action.clone()).form(&fields).send().await.unwrap();
        next = action;
    }
    panic!("the authorization did not come back to the client within 12 steps");
}

async fn connect(
    http: &reqwest::Client,
    client: &OAuthClient,
    integration: &Integration,
    redirect_uri: &str,
) -> TokenSet {
    let request = oauth::authorization_request(integration, redirect_uri, Scope::Read).unwrap();
    let pairs = authorize(http, &request.url, redirect_uri).await;
    assert_eq!(query_value(&pairs, "error"), None, "{pairs:?}");
    assert_eq!(query_value(&pairs, "state").as_deref(), Some(request.state.as_str()));
    let code = query_value(&pairs, "code").expect("an authorization code");
    client.exchange_code(integration, &code, redirect_uri, request.pkce.verifier()).await.unwrap()
}

#[tokio::test]
async fn oidc_provider_code_pkce_refresh_rotation_reuse_and_revocation() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("oidc-provider.log");
        let (mut child, started) = start_provider(&log).await;
        let http = browser();

        // Register it through a catalog file, from its discovery document.
        let discovery: serde_json::Value = http
            .get(format!("{}/.well-known/openid-configuration", started.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let endpoint = |key: &str| discovery[key].as_str().unwrap_or_else(|| panic!("{key} in discovery")).to_owned();
        let catalog_path = dir.path().join("catalog.toml");
        std::fs::write(
            &catalog_path,
            format!(
                r#"[[integration]]
type = "oidcConformance"
name = "oidc-provider"
auth = "oauth2"
authorize_url = "{}"
token_url = "{}"
revoke_url = "{}"
client_id = "{}"
client_secret = "{}"
token_auth_method = "client_secret_basic"
scopes_read = ["openid", "offline_access"]
authorize_params = {{ prompt = "consent" }}
rotates_refresh_tokens = true
default_access_ttl_secs = 600
"#,
                endpoint("authorization_endpoint"),
                endpoint("token_endpoint"),
                endpoint("revocation_endpoint"),
                started.client_id,
                started.client_secret
            ),
        )
        .unwrap();
        let catalog = Catalog::load_file(&catalog_path).unwrap();
        let integration = catalog.get("oidcConformance").unwrap();
        let client = OAuthClient::new(system_clock()).unwrap();

        // authorize → login + consent pages → code exchange with PKCE.
        let t1 = connect(&http, &client, integration, &started.redirect_uri).await;
        assert!(!t1.expires_in_defaulted, "oidc-provider sends expires_in");
        let rt1 = t1.refresh_token.clone().expect("offline_access gives a refresh token");

        // refresh → rotation observed, twice.
        let t2 = client.refresh(integration, &rt1).await.unwrap();
        assert!(t2.refresh_token_rotated, "rotation");
        let rt2 = t2.refresh_token.clone().unwrap();
        let t3 = client.refresh(integration, &rt2).await.unwrap();
        assert!(t3.refresh_token_rotated);
        let rt3 = t3.refresh_token.clone().unwrap();
        assert_ne!(rt3.expose_secret(), rt2.expose_secret());

        // The spent refresh token is rejected as invalid_grant — and oidc-provider revokes the grant with it.
        let err = client.refresh(integration, &rt2).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");
        let err = client.refresh(integration, &rt3).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "reuse revoked the grant: {err:?}");

        // A second grant: refresh once, revoke (RFC 7009), then refresh fails.
        let g2 = connect(&http, &client, integration, &started.redirect_uri).await;
        let g2_rt =
            client.refresh(integration, g2.refresh_token.as_ref().unwrap()).await.unwrap().refresh_token.unwrap();
        assert_eq!(client.revoke(integration, &g2_rt, TokenTypeHint::RefreshToken).await.unwrap(), Revocation::Revoked);
        let err = client.refresh(integration, &g2_rt).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");

        // Wrong client secret: invalid_client.
        let mut wrong = integration.clone();
        wrong.client.client_secret = Some(linkvault_integrations::ClientSecret::new("wrong-secret"));
        let err = client.refresh(&wrong, &g2_rt).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");

        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let _ = child.kill().await;
    })
    .await
    .unwrap();
}
