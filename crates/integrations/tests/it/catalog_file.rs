//! A catalog file that adds an OAuth integration makes it usable without a rebuild; a bad file names the
//! entry and field.

use linkvault_domain::Scope;
use linkvault_integrations::api::{Credential, ExchangeApi};
use linkvault_integrations::oauth::{self, OAuthClient};
use linkvault_integrations::{AuthScheme, Catalog, HttpLimits, derived_id};

use crate::common::*;

#[tokio::test]
async fn an_integration_added_by_a_catalog_file_is_usable() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let base = &sandbox.base_url;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        std::fs::write(
            &path,
            format!(
                r#"
# An exchange linkvault's code has never heard of (served here by the sandbox's Uphold-like server).
[[integration]]
type = "exampleOAuth"
name = "Example Exchange"
auth = "oauth2"
authorize_url = "{base}/uphold/oauth/authorize"
token_url = "{base}/uphold/oauth/token"
revoke_url = "{base}/uphold/oauth/revoke"
api_base_url = "{base}/uphold"
account_api = "upholdV0"
client_id = "linkvault-sandbox"
client_secret = "linkvault-sandbox-secret"
token_auth_method = "client_secret_post"
scopes_read = ["user:read", "cards:read", "transactions:read"]
scopes_write = ["transactions:withdraw"]
refresh_margin_secs = 120
default_access_ttl_secs = 1800
features = ["holdings", "balance"]
categories = ["exchange"]
"#
            ),
        )
        .unwrap();
        let catalog = Catalog::load_file(&path).unwrap();
        let example = catalog.get("exampleOAuth").unwrap();
        assert_eq!(example.auth, AuthScheme::OAuth2);
        assert_eq!(example.id, derived_id("exampleOAuth"));
        assert!(!example.features.transfers);

        let client = OAuthClient::new(system_clock()).unwrap();
        let request = oauth::authorization_request(example, REDIRECT_URI, Scope::Read).unwrap();
        let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "allow").await else {
            panic!("no redirect")
        };
        let code = query_value(&pairs, "code").unwrap();
        let tokens = client.exchange_code(example, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap();
        let refreshed = client.refresh(example, tokens.refresh_token.as_ref().unwrap()).await.unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (adapter, call) = api.adapter(example, Credential::Bearer(&refreshed.access_token)).unwrap();
        assert!(!adapter.holdings(call).await.unwrap().is_empty(), "the adapter named by account_api answers");

        // A bad file: start-up would stop with this message.
        std::fs::write(&path, "[[integration]]\ntype = \"coinbase\"\n\n[[integration]]\ntype = \"exampleOAuth\"\nname = \"E\"\nauth = \"oauth2\"\nauthorize_url = \"https://a.example/x\"\ntoken_url = \"/relative\"\n").unwrap();
        let err = Catalog::load_file(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "catalog file {}: integration #2 (\"exampleOAuth\"): field token_url: must be an absolute http(s) URL",
                path.display()
            )
        );
    })
    .await
    .unwrap();
}
