//! The integration catalog: an embedded default, which an operator's TOML file can extend or override
//! (entries are data, never code), plus re-pointing the embedded exchanges at the built-in sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use linkvault_domain::{IntegrationType, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use uuid::Uuid;

use crate::api::AccountApiKind;

/// The client id the built-in sandbox exchanges accept (`serve --sandbox`). Not a secret anywhere else.
pub const SANDBOX_CLIENT_ID: &str = "linkvault-sandbox";
/// The client secret the built-in sandbox exchanges accept. It only opens the in-memory sandbox.
pub const SANDBOX_CLIENT_SECRET: &str = "linkvault-sandbox-secret";

/// How end users sign in to an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// OAuth 2.0 authorization code with PKCE; tokens are refreshed with the refresh grant.
    OAuth2,
    /// Username, password and an MFA step; sessions expire and cannot be refreshed.
    Credentials,
    /// An API key and its secret (Binance Spot): checked at sign-in, stored as the access token (key) and
    /// refresh token (secret), never refreshed and never expiring (the end user revokes it at the exchange).
    ApiKey,
}

impl AuthScheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthScheme::OAuth2 => "oauth2",
            AuthScheme::Credentials => "credentials",
            AuthScheme::ApiKey => "apiKey",
        }
    }
}

/// When and how an integration's tokens are renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingPolicy {
    /// Refresh this long before the access token expires.
    pub refresh_margin_secs: u64,
    /// Access-token lifetime assumed when the integration does not say (`expires_in` absent) — never "forever".
    /// For credentials integrations: the session lifetime assumed when the sign-in answer carries none.
    pub default_access_ttl_secs: u64,
    /// The upstream refuses refreshes closer together than this (0: no minimum).
    pub min_refresh_interval_secs: u64,
    /// Every refresh returns a new refresh token and spends the old one (reuse looks like theft upstream).
    pub rotates_refresh_tokens: bool,
    /// How long a refresh token lives upstream, when the integration documents it (None: unknown).
    pub refresh_token_ttl_secs: Option<u64>,
    /// How long a spent refresh token is still accepted after rotation (None: no grace at all).
    pub reuse_grace_secs: Option<u64>,
}

impl Default for TimingPolicy {
    fn default() -> Self {
        Self {
            refresh_margin_secs: 300,
            default_access_ttl_secs: 3600,
            min_refresh_interval_secs: 0,
            rotates_refresh_tokens: false,
            refresh_token_ttl_secs: None,
            reuse_grace_secs: None,
        }
    }
}

/// What a connection to the integration can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub holdings: bool,
    pub balance: bool,
    pub transfers: bool,
}

impl Features {
    pub const ALL: Features = Features { holdings: true, balance: true, transfers: true };

    /// Mesh `BrokerFeature` names of the enabled features.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.holdings {
            names.push("holdings");
        }
        if self.balance {
            names.push("balance");
        }
        if self.transfers {
            names.push("transfers");
        }
        names
    }
}

/// An integration's logo: a URL, inline base64 data, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Logo {
    pub url: Option<String>,
    pub base64: Option<String>,
}

/// Mesh's `IntegrationModel.style` field names, in Mesh's order: the brand colours Link uses on the
/// integration's screens, light then dark theme.
pub const STYLE_FIELDS: [&str; 10] = [
    "fieldActiveLight",
    "buttonPrimaryLight",
    "buttonHoverLight",
    "buttonTextLight",
    "buttonTextHoverLight",
    "fieldActiveDark",
    "buttonPrimaryDark",
    "buttonHoverDark",
    "buttonTextDark",
    "buttonTextHoverDark",
];

/// An integration's brand colours (Mesh's `style`), each `RRGGBB` upper-case hex without `#`, or unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Style([Option<String>; 10]);

impl Style {
    /// All ten colours, in [`STYLE_FIELDS`] order (built-in entries; the values are known to be hex).
    fn of(colours: [&str; 10]) -> Self {
        Self(colours.map(parse_hex_colour))
    }

    /// No colour set: Link uses its own.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// (Mesh field name, colour) for every field.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> {
        STYLE_FIELDS.iter().copied().zip(self.0.iter().map(Option::as_deref))
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.iter().find(|(f, _)| *f == field).and_then(|(_, c)| c)
    }

    /// Sets one field from a catalog file's value: `RRGGBB` hex, `#` optional.
    pub fn set(&mut self, field: &str, raw: &str) -> Result<(), String> {
        let Some(index) = STYLE_FIELDS.iter().position(|f| *f == field) else {
            return Err(format!("{field:?} is not a style field; known fields are: {}", STYLE_FIELDS.join(", ")));
        };
        let colour = parse_hex_colour(raw)
            .ok_or_else(|| format!("{field} = {raw:?} is not a colour; write six hex digits such as \"0052FF\""))?;
        self.0[index] = Some(colour);
        Ok(())
    }
}

/// `RRGGBB` (with or without a leading `#`), upper-cased; anything else is `None`.
fn parse_hex_colour(raw: &str) -> Option<String> {
    let hex = raw.trim().strip_prefix('#').unwrap_or(raw.trim());
    (hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_uppercase())
}

/// Where the integration is reached. Which ones are needed depends on the auth scheme.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    /// OAuth 2.0 authorization endpoint (the end user's browser goes there).
    pub authorize_url: Option<Url>,
    /// OAuth 2.0 token endpoint (code exchange and refresh grant).
    pub token_url: Option<Url>,
    /// RFC 7009 revocation endpoint (OAuth), or the sign-out endpoint (credentials).
    pub revoke_url: Option<Url>,
    /// The origin of the exchange's account API (`https://api.coinbase.com`); the adapter adds the provider's
    /// documented paths (`/v2/accounts`). A path here is kept as a prefix (the sandbox's `/sandbox/coinbase`).
    pub api_base_url: Option<Url>,
    /// Credentials sign-in endpoint (username/password, then the MFA step).
    pub sign_in_url: Option<Url>,
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, which servers must support).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client: `client_id` in the body, no secret.
    None,
}

impl ClientAuthMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::None => "none",
        }
    }
}

/// An OAuth client secret. Debug never shows it; it leaves this type only to go on the wire.
#[derive(Clone)]
pub struct ClientSecret(SecretString);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(SecretString::from(secret.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

impl PartialEq for ClientSecret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.expose().as_bytes().ct_eq(other.expose().as_bytes()))
    }
}

impl Eq for ClientSecret {}

/// The OAuth client linkvault is registered as at the integration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OAuthClientConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<ClientSecret>,
    pub auth_method: ClientAuthMethod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: Uuid,
    pub integration_type: IntegrationType,
    pub name: String,
    pub auth: AuthScheme,
    pub timing: TimingPolicy,
    pub logo: Logo,
    /// Brand colours for Link's screens (Mesh's `style`); empty: Link's own.
    pub style: Style,
    pub endpoints: Endpoints,
    pub client: OAuthClientConfig,
    /// Scopes requested for a read connection.
    pub scopes_read: Vec<String>,
    /// Scopes added to `scopes_read` for a write connection.
    pub scopes_write: Vec<String>,
    /// Extra query parameters for the authorization request (e.g. `prompt = "consent"`).
    pub authorize_params: BTreeMap<String, String>,
    pub features: Features,
    /// Mesh `IntegrationModel.categories` values (`exchange`, `wallet`, …).
    pub categories: Vec<String>,
    /// Which provider API the account calls speak; None: the integration holds tokens only.
    pub account_api: Option<AccountApiKind>,
}

impl Integration {
    /// A minimal entry with defaults everywhere else; the caller fills endpoints and client.
    pub fn new(integration_type: IntegrationType, name: impl Into<String>, auth: AuthScheme) -> Self {
        Self {
            id: derived_id(integration_type.as_str()),
            integration_type,
            name: name.into(),
            auth,
            timing: TimingPolicy::default(),
            logo: Logo::default(),
            style: Style::default(),
            endpoints: Endpoints::default(),
            client: OAuthClientConfig::default(),
            scopes_read: Vec::new(),
            scopes_write: Vec::new(),
            authorize_params: BTreeMap::new(),
            features: Features::ALL,
            categories: vec!["exchange".to_owned()],
            account_api: None,
        }
    }

    /// The scopes to request for a connection of this scope: read scopes, plus write scopes for `write`.
    pub fn scopes_for(&self, scope: Scope) -> Vec<&str> {
        let mut scopes: Vec<&str> = self.scopes_read.iter().map(String::as_str).collect();
        if scope == Scope::Write {
            for s in &self.scopes_write {
                if !scopes.contains(&s.as_str()) {
                    scopes.push(s);
                }
            }
        }
        scopes
    }

    /// Why this entry cannot be used yet (e.g. no client id configured), or None when it can.
    pub fn missing_configuration(&self) -> Option<String> {
        let ty = self.integration_type.as_str();
        match self.auth {
            AuthScheme::OAuth2 => {
                if self.endpoints.authorize_url.is_none() {
                    return Some(format!("integration {ty} has no authorize_url"));
                }
                if self.endpoints.token_url.is_none() {
                    return Some(format!("integration {ty} has no token_url"));
                }
                if self.client.client_id.is_none() {
                    return Some(format!("integration {ty} has no client_id; set it in the catalog file"));
                }
                if self.client.auth_method != ClientAuthMethod::None && self.client.client_secret.is_none() {
                    return Some(format!(
                        "integration {ty} has no client secret; set client_secret or client_secret_env in the catalog file"
                    ));
                }
                None
            }
            AuthScheme::Credentials => {
                if self.endpoints.sign_in_url.is_none() {
                    return Some(format!("integration {ty} has no sign_in_url"));
                }
                None
            }
            AuthScheme::ApiKey => {
                if self.endpoints.api_base_url.is_none() {
                    return Some(format!("integration {ty} has no api_base_url"));
                }
                if self.account_api.is_none() {
                    return Some(format!("integration {ty} has no account_api to check and use API keys with"));
                }
                None
            }
        }
    }
}

/// Mesh's published id of a built-in integration, so apps that hard-code Mesh's ids (`integrationId` in link
/// tokens) work unchanged. Only ids found in a source are listed; the others keep their derived id.
fn mesh_id(integration_type: &str) -> Option<Uuid> {
    match integration_type {
        // Mesh's API reference, the example answer of GET /api/v1/integrations
        // (docs.meshconnect.com/api-reference/managed-account-authentication/retrieve-the-list-of-all-available-integrations).
        "coinbase" => Some(Uuid::from_u128(0x47624467_e52e_4938_a41a_7926b6c27acf)),
        // Mesh's Link initialization guide (docs.meshconnect.com/guides/link-initialization, "Direct to Exchange
        // or Brokerage Integration (eg. Binance or Coinbase)"), and a public test fixture of Mesh's
        // /api/v1/integrations answer naming it {"name": "Binance", "type": "binanceInternationalDirect"}.
        "binanceInternationalDirect" => Some(Uuid::from_u128(0x9226e5c2_ebc3_4fdd_94f6_ed52cdce1420)),
        // uphold, binanceInternational (API keys), sandbox, sandboxCoinbase: no Mesh id found in a source.
        _ => None,
    }
}

/// The brand colours of a built-in integration (Mesh's `style` order: light field, button, hover, text, text
/// hover; then the dark ones).
fn brand_style(integration_type: &str) -> Style {
    match integration_type {
        // Mesh's own style for Coinbase, from the same GET /api/v1/integrations example (Coinbase blue 0052FF).
        "coinbase" | "sandboxCoinbase" => Style::of([
            "0052FF", "0052FF", "014CEC", "FFFFFF", "FFFFFF", "578BFA", "578BFA", "507FE5", "0A0B0D", "0A0B0D",
        ]),
        // Binance yellow F0B90B (Binance's brand colour) with near-black text for contrast; the hover shades are
        // derived from it (darker on light, lighter on dark), not published.
        "binanceInternational" | "binanceInternationalDirect" => Style::of([
            "F0B90B", "F0B90B", "D9A60A", "0B0E11", "0B0E11", "F0B90B", "F0B90B", "F3C53C", "0B0E11", "0B0E11",
        ]),
        // Uphold green 49CC68 (its logo and site accent) with near-black text for contrast; hover shades derived.
        "uphold" => Style::of([
            "49CC68", "49CC68", "3DB35A", "0A0B0D", "0A0B0D", "49CC68", "49CC68", "6BD685", "0A0B0D", "0A0B0D",
        ]),
        _ => Style::default(),
    }
}

/// Stable ids derived from the type name, so the same integration has the same id on every installation.
pub fn derived_id(integration_type: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("https://linkvault.dev/integrations/{integration_type}").as_bytes())
}

/// A catalog file (or inline TOML) that cannot be used, with the entry and field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    /// `catalog file /etc/linkvault/catalog.toml`, `catalog overrides`, `sandbox base URL`, …
    pub source_name: String,
    /// 1-based position of the `[[integration]]` entry, with its `type` when it has a readable one.
    pub entry: Option<(usize, Option<String>)>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source_name)?;
        if let Some((index, ty)) = &self.entry {
            write!(f, ": integration #{index}")?;
            if let Some(ty) = ty {
                write!(f, " ({ty:?})")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_type: BTreeMap<String, Integration>,
}

// Coinbase App API v2 permissions: listing accounts, transactions and deposit addresses; sending, and creating a
// deposit address where the account has none yet.
const COINBASE_READ_SCOPES: [&str; 4] =
    ["wallet:accounts:read", "wallet:transactions:read", "wallet:addresses:read", "wallet:user:read"];
const COINBASE_WRITE_SCOPES: [&str; 2] = ["wallet:transactions:send", "wallet:addresses:create"];
// Uphold: cards (balances, addresses) and transactions; sending to a crypto address is a withdrawal, to another
// Uphold user a transfer, and a card address is created with cards:write.
const UPHOLD_READ_SCOPES: [&str; 3] = ["user:read", "cards:read", "transactions:read"];
const UPHOLD_WRITE_SCOPES: [&str; 3] = ["transactions:withdraw", "transactions:transfer:others", "cards:write"];

fn url(raw: &str) -> Option<Url> {
    Url::parse(raw).ok()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Catalog {
    /// The integrations linkvault knows without any configuration. OAuth entries carry the exchanges' public
    /// endpoints but no client id/secret: an operator supplies those in the catalog file (or `--sandbox`
    /// points them at the built-in sandbox). Credentials entries have no public sign-in endpoint outside the
    /// sandbox.
    pub fn embedded() -> Self {
        let mut catalog = Catalog::default();
        let entries: [(&str, &str, AuthScheme); 6] = [
            ("coinbase", "Coinbase", AuthScheme::OAuth2),
            ("uphold", "Uphold", AuthScheme::OAuth2),
            ("binanceInternational", "Binance", AuthScheme::ApiKey),
            ("binanceInternationalDirect", "Binance", AuthScheme::Credentials),
            ("sandbox", "Sandbox", AuthScheme::Credentials),
            ("sandboxCoinbase", "Sandbox Coinbase", AuthScheme::OAuth2),
        ];
        for (ty, name, auth) in entries {
            let Ok(integration_type) = IntegrationType::parse(ty) else { continue };
            let mut integration = Integration::new(integration_type, name, auth);
            if let Some(id) = mesh_id(ty) {
                integration.id = id;
            }
            integration.style = brand_style(ty);
            match ty {
                "coinbase" | "sandboxCoinbase" => {
                    if ty == "coinbase" {
                        integration.endpoints = Endpoints {
                            authorize_url: url("https://login.coinbase.com/oauth2/auth"),
                            token_url: url("https://login.coinbase.com/oauth2/token"),
                            revoke_url: url("https://login.coinbase.com/oauth2/revoke"),
                            api_base_url: url("https://api.coinbase.com"),
                            sign_in_url: None,
                        };
                        integration.logo.url = Some("https://www.coinbase.com/favicon.ico".to_owned());
                    }
                    integration.client.auth_method = ClientAuthMethod::ClientSecretPost;
                    integration.scopes_read = strings(&COINBASE_READ_SCOPES);
                    integration.scopes_write = strings(&COINBASE_WRITE_SCOPES);
                    integration.timing.rotates_refresh_tokens = true;
                    integration.timing.default_access_ttl_secs = 3600;
                    integration.account_api = Some(AccountApiKind::CoinbaseV2);
                }
                "uphold" => {
                    integration.endpoints = Endpoints {
                        authorize_url: url("https://wallet.uphold.com/authorize"),
                        token_url: url("https://api.uphold.com/oauth2/token"),
                        revoke_url: url("https://api.uphold.com/oauth2/revoke"),
                        api_base_url: url("https://api.uphold.com"),
                        sign_in_url: None,
                    };
                    integration.logo.url = Some("https://uphold.com/favicon.ico".to_owned());
                    integration.scopes_read = strings(&UPHOLD_READ_SCOPES);
                    integration.scopes_write = strings(&UPHOLD_WRITE_SCOPES);
                    integration.account_api = Some(AccountApiKind::UpholdV0);
                }
                "binanceInternational" => {
                    // API keys do not expire and are never refreshed: the connection has no expiry at all
                    // (`access_expires_at = None`); the timing policy is not used for it.
                    integration.endpoints.api_base_url = url("https://api.binance.com");
                    integration.logo.url = Some("https://www.binance.com/favicon.ico".to_owned());
                    integration.account_api = Some(AccountApiKind::BinanceSpot);
                }
                _ => {
                    // Credentials sessions are not refreshed: the default lifetime is the session's.
                    integration.timing.default_access_ttl_secs = 24 * 3600;
                    integration.timing.refresh_margin_secs = 0;
                    integration.account_api = Some(AccountApiKind::BinanceSpot);
                }
            }
            catalog.insert(integration);
        }
        catalog
    }

    /// Adds an integration, replacing any with the same type.
    pub fn insert(&mut self, integration: Integration) {
        self.by_type.insert(integration.integration_type.as_str().to_owned(), integration);
    }

    pub fn get(&self, integration_type: &str) -> Option<&Integration> {
        self.by_type.get(integration_type)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&Integration> {
        self.by_type.values().find(|i| i.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Integration> {
        self.by_type.values()
    }

    /// The embedded catalog plus the operator's TOML file (`serve --catalog FILE`). Environment variables
    /// named by `client_secret_env` are read from the process environment.
    pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref();
        let source_name = format!("catalog file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError {
            source_name: source_name.clone(),
            entry: None,
            field: None,
            message: format!("cannot read it: {e}"),
        })?;
        let mut catalog = Catalog::embedded();
        catalog.apply_toml(&source_name, &text, &|name| std::env::var(name).ok())?;
        Ok(catalog)
    }

    /// This catalog with the entries of an inline TOML document applied (same format as the file).
    pub fn with_overrides(mut self, toml_text: &str) -> Result<Catalog, CatalogError> {
        self.apply_toml("catalog overrides", toml_text, &|name| std::env::var(name).ok())?;
        Ok(self)
    }

    /// Applies a TOML catalog document: each `[[integration]]` entry adds a new integration or overrides the
    /// fields it names on an existing one. All-or-nothing: on error the catalog is unchanged.
    /// `env` resolves `client_secret_env` names (injectable so tests need not touch the process environment).
    pub fn apply_toml(
        &mut self,
        source_name: &str,
        toml_text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), CatalogError> {
        let top_err =
            |message: String| CatalogError { source_name: source_name.to_owned(), entry: None, field: None, message };
        let doc: toml::Table = toml::from_str(toml_text).map_err(|e| top_err(format!("not valid TOML: {e}")))?;
        for key in doc.keys() {
            if key != "integration" {
                return Err(top_err(format!("unknown top-level key {key:?}; the file holds [[integration]] entries")));
            }
        }
        let entries = match doc.get("integration") {
            None => return Ok(()),
            Some(toml::Value::Array(entries)) => entries,
            Some(_) => {
                return Err(top_err("`integration` must be an array of tables: write [[integration]]".to_owned()));
            }
        };

        let mut next = self.by_type.clone();
        let mut seen_in_file = BTreeSet::new();
        for (position, value) in entries.iter().enumerate() {
            let index = position + 1;
            let readable_type = value.get("type").and_then(toml::Value::as_str).map(str::to_owned);
            let err = |field: Option<&str>, message: String| CatalogError {
                source_name: source_name.to_owned(),
                entry: Some((index, readable_type.clone())),
                field: field.map(str::to_owned),
                message,
            };
            let integration = parse_entry(value, &next, env).map_err(|(field, message)| err(field, message))?;
            let ty = integration.integration_type.as_str().to_owned();
            if !seen_in_file.insert(ty.clone()) {
                return Err(err(Some("type"), format!("{ty:?} appears twice in this file")));
            }
            if let Some(other) = next.values().find(|i| i.id == integration.id && i.integration_type.as_str() != ty) {
                return Err(err(
                    Some("id"),
                    format!(
                        "{} is already the id of integration {:?}",
                        integration.id,
                        other.integration_type.as_str()
                    ),
                ));
            }
            next.insert(ty, integration);
        }
        self.by_type = next;
        Ok(())
    }

    /// Points the built-in exchanges at the sandbox served under `base_url` (e.g.
    /// `http://127.0.0.1:8080/sandbox`): `coinbase` and `sandboxCoinbase` at the Coinbase-like server,
    /// `uphold` at the Uphold-like one, `binanceInternational` (API keys) at the Binance Spot API under
    /// `<base>/binance`, `binanceInternationalDirect` and `sandbox` at the Binance-like
    /// credentials server, with the sandbox's client id and secret.
    pub fn point_at_sandbox(&mut self, base_url: &str) -> Result<(), CatalogError> {
        let err = |message: String| CatalogError {
            source_name: "sandbox base URL".to_owned(),
            entry: None,
            field: None,
            message,
        };
        let base = base_url.trim_end_matches('/');
        let join = |path: &str| -> Result<Url, CatalogError> {
            let joined = format!("{base}/{path}");
            let parsed = Url::parse(&joined).map_err(|e| err(format!("{base_url:?} is not a usable URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(err(format!("{base_url:?} must be an absolute http(s) URL")));
            }
            Ok(parsed)
        };
        let defaults = Catalog::embedded();
        for (ty, exchange) in [
            ("coinbase", "coinbase"),
            ("sandboxCoinbase", "coinbase"),
            ("uphold", "uphold"),
            ("binanceInternational", "binanceSpot"),
            ("binanceInternationalDirect", "binance"),
            ("sandbox", "binance"),
        ] {
            let Some(mut integration) = self.get(ty).cloned().or_else(|| defaults.get(ty).cloned()) else { continue };
            match exchange {
                "binanceSpot" => {
                    integration.auth = AuthScheme::ApiKey;
                    integration.endpoints = Endpoints { api_base_url: Some(join("binance")?), ..Endpoints::default() };
                }
                "binance" => {
                    integration.auth = AuthScheme::Credentials;
                    integration.endpoints = Endpoints {
                        authorize_url: None,
                        token_url: None,
                        revoke_url: Some(join("binance/auth/sign-out")?),
                        api_base_url: Some(join("binance")?),
                        sign_in_url: Some(join("binance/auth/sign-in")?),
                    };
                }
                _ => {
                    integration.auth = AuthScheme::OAuth2;
                    integration.endpoints = Endpoints {
                        authorize_url: Some(join(&format!("{exchange}/oauth/authorize"))?),
                        token_url: Some(join(&format!("{exchange}/oauth/token"))?),
                        revoke_url: Some(join(&format!("{exchange}/oauth/revoke"))?),
                        api_base_url: Some(join(exchange)?),
                        sign_in_url: None,
                    };
                    integration.client.client_id = Some(SANDBOX_CLIENT_ID.to_owned());
                    integration.client.client_secret = Some(ClientSecret::new(SANDBOX_CLIENT_SECRET));
                    integration.timing.rotates_refresh_tokens = exchange == "coinbase";
                }
            }
            self.insert(integration);
        }
        Ok(())
    }
}

/// Every key an `[[integration]]` entry may carry (public so tests can check that refusals name one).
pub const KNOWN_KEYS: &[&str] = &[
    "type",
    "name",
    "id",
    "auth",
    "logo_url",
    "logo_base64",
    "authorize_url",
    "token_url",
    "revoke_url",
    "api_base_url",
    "sign_in_url",
    "client_id",
    "client_secret",
    "client_secret_env",
    "token_auth_method",
    "scopes_read",
    "scopes_write",
    "authorize_params",
    "refresh_margin_secs",
    "default_access_ttl_secs",
    "min_refresh_interval_secs",
    "rotates_refresh_tokens",
    "refresh_token_ttl_secs",
    "reuse_grace_secs",
    "features",
    "categories",
    "account_api",
    "style",
];

/// Mesh `IntegrationModel.categories`.
const CATEGORIES: &[&str] = &["brokerage", "bank", "exchange", "wallet", "address", "nftMarketplace", "deFiWallet"];

/// Query parameters the authorization request sets itself; `authorize_params` may not replace them.
const RESERVED_AUTHORIZE_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

/// Ten years: anything longer is a typo, and "no expiry" is never a valid policy.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(rename = "type")]
    integration_type: String,
    name: Option<String>,
    id: Option<String>,
    auth: Option<String>,
    logo_url: Option<String>,
    logo_base64: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    api_base_url: Option<String>,
    sign_in_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    token_auth_method: Option<String>,
    scopes_read: Option<Vec<String>>,
    scopes_write: Option<Vec<String>>,
    authorize_params: Option<BTreeMap<String, String>>,
    refresh_margin_secs: Option<u64>,
    default_access_ttl_secs: Option<u64>,
    min_refresh_interval_secs: Option<u64>,
    rotates_refresh_tokens: Option<bool>,
    refresh_token_ttl_secs: Option<u64>,
    reuse_grace_secs: Option<u64>,
    features: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    account_api: Option<String>,
    /// Mesh's style field names (`buttonPrimaryLight`, …) to `RRGGBB` colours.
    style: Option<BTreeMap<String, String>>,
}

type FieldError = (Option<&'static str>, String);

fn field_err(field: &'static str, message: impl Into<String>) -> FieldError {
    (Some(field), message.into())
}

fn parse_url(field: &'static str, raw: &str) -> Result<Url, FieldError> {
    let bad = || field_err(field, "must be an absolute http(s) URL");
    let parsed = Url::parse(raw).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if parsed.fragment().is_some() {
        return Err(field_err(field, "must not have a #fragment"));
    }
    Ok(parsed)
}

fn parse_scopes(field: &'static str, raw: Vec<String>) -> Result<Vec<String>, FieldError> {
    for scope in &raw {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
            return Err(field_err(field, format!("{scope:?} is not a scope token (no spaces, quotes or backslashes)")));
        }
    }
    Ok(raw)
}

fn parse_ttl(field: &'static str, value: u64, allow_zero: bool) -> Result<u64, FieldError> {
    if value == 0 && !allow_zero {
        return Err(field_err(field, "must be greater than 0 (there is no \"never expires\")"));
    }
    if value > MAX_TTL_SECS {
        return Err(field_err(field, format!("{value} seconds is more than ten years")));
    }
    Ok(value)
}

/// Maps serde's field path back to one of our static key names.
fn static_key(path: &str) -> Option<&'static str> {
    let first = path.split(['.', '[']).next().unwrap_or(path);
    KNOWN_KEYS.iter().copied().find(|k| *k == first)
}

fn parse_entry(
    value: &toml::Value,
    existing: &BTreeMap<String, Integration>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Integration, FieldError> {
    let Some(table) = value.as_table() else {
        return Err((None, "must be a table ([[integration]])".to_owned()));
    };
    for key in table.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err((None, format!("unknown field {key:?}; known fields are: {}", KNOWN_KEYS.join(", "))));
        }
    }
    if !table.contains_key("type") {
        return Err(field_err("type", "is required (the BrokerType-style name clients send as `type`)"));
    }
    let raw: RawEntry = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        match static_key(&path) {
            Some(key) => (Some(key), inner),
            None => (None, inner),
        }
    })?;

    let integration_type = IntegrationType::parse(&raw.integration_type).map_err(|e| field_err("type", e.reason))?;
    let base = existing.get(integration_type.as_str()).cloned();
    let is_new = base.is_none();

    let auth = match raw.auth.as_deref() {
        Some("oauth2") => AuthScheme::OAuth2,
        Some("credentials") => AuthScheme::Credentials,
        Some("apiKey") => AuthScheme::ApiKey,
        Some(other) => {
            return Err(field_err("auth", format!("{other:?} is not one of \"oauth2\", \"credentials\", \"apiKey\"")));
        }
        None => match &base {
            Some(b) => b.auth,
            None => {
                return Err(field_err(
                    "auth",
                    "is required for a new integration (\"oauth2\", \"credentials\" or \"apiKey\")",
                ));
            }
        },
    };
    let name = match (&raw.name, &base) {
        (Some(n), _) => n.trim().to_owned(),
        (None, Some(b)) => b.name.clone(),
        (None, None) => return Err(field_err("name", "is required for a new integration")),
    };
    if name.is_empty() || name.chars().count() > 100 {
        return Err(field_err("name", "must be 1 to 100 characters"));
    }

    let mut integration = base.unwrap_or_else(|| Integration::new(integration_type.clone(), name.clone(), auth));
    integration.name = name;
    integration.auth = auth;

    if let Some(id) = &raw.id {
        integration.id = Uuid::parse_str(id).map_err(|_| field_err("id", format!("{id:?} is not a UUID")))?;
    }

    if let Some(logo_url) = &raw.logo_url {
        integration.logo.url = Some(parse_url("logo_url", logo_url)?.to_string());
    }
    if let Some(logo) = &raw.logo_base64 {
        use base64::Engine as _;
        let compact: String = logo.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|_| field_err("logo_base64", "is not standard base64"))?;
        integration.logo.base64 = Some(compact);
    }

    for (field, raw_url, slot) in [
        ("authorize_url", &raw.authorize_url, &mut integration.endpoints.authorize_url),
        ("token_url", &raw.token_url, &mut integration.endpoints.token_url),
        ("revoke_url", &raw.revoke_url, &mut integration.endpoints.revoke_url),
        ("api_base_url", &raw.api_base_url, &mut integration.endpoints.api_base_url),
        ("sign_in_url", &raw.sign_in_url, &mut integration.endpoints.sign_in_url),
    ] {
        if let Some(raw_url) = raw_url {
            *slot = Some(parse_url(field, raw_url)?);
        }
    }

    if let Some(name) = &raw.account_api {
        let names: Vec<&str> = AccountApiKind::ALL.iter().map(|k| k.as_str()).collect();
        integration.account_api = Some(
            AccountApiKind::parse(name)
                .ok_or_else(|| field_err("account_api", format!("{name:?} is not one of {}", names.join(", "))))?,
        );
    }

    if let Some(client_id) = &raw.client_id {
        if client_id.is_empty() || client_id.chars().any(char::is_control) {
            return Err(field_err("client_id", "must be a non-empty string without control characters"));
        }
        integration.client.client_id = Some(client_id.clone());
    }
    match (&raw.client_secret, &raw.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err(field_err("client_secret_env", "set either client_secret or client_secret_env, not both"));
        }
        (Some(secret), None) => {
            if secret.is_empty() {
                return Err(field_err("client_secret", "must not be empty"));
            }
            integration.client.client_secret = Some(ClientSecret::new(secret.clone()));
        }
        (None, Some(var)) => {
            let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                field_err("client_secret_env", format!("environment variable {var} is not set (or is empty)"))
            })?;
            integration.client.client_secret = Some(ClientSecret::new(value));
        }
        (None, None) => {}
    }
    if let Some(method) = &raw.token_auth_method {
        integration.client.auth_method = match method.as_str() {
            "client_secret_basic" => ClientAuthMethod::ClientSecretBasic,
            "client_secret_post" => ClientAuthMethod::ClientSecretPost,
            "none" => ClientAuthMethod::None,
            other => {
                return Err(field_err(
                    "token_auth_method",
                    format!("{other:?} is not one of \"client_secret_basic\", \"client_secret_post\", \"none\""),
                ));
            }
        };
    }

    if let Some(scopes) = raw.scopes_read {
        integration.scopes_read = parse_scopes("scopes_read", scopes)?;
    }
    if let Some(scopes) = raw.scopes_write {
        integration.scopes_write = parse_scopes("scopes_write", scopes)?;
    }
    if let Some(params) = raw.authorize_params {
        for (key, value) in &params {
            if RESERVED_AUTHORIZE_PARAMS.contains(&key.as_str()) {
                return Err(field_err("authorize_params", format!("{key:?} is set by linkvault itself")));
            }
            if key.is_empty() || key.chars().chain(value.chars()).any(char::is_control) {
                return Err(field_err(
                    "authorize_params",
                    format!("{key:?}: keys must be non-empty, no control characters"),
                ));
            }
        }
        integration.authorize_params = params;
    }

    let timing = &mut integration.timing;
    if let Some(v) = raw.refresh_margin_secs {
        timing.refresh_margin_secs = parse_ttl("refresh_margin_secs", v, true)?;
    }
    if let Some(v) = raw.default_access_ttl_secs {
        timing.default_access_ttl_secs = parse_ttl("default_access_ttl_secs", v, false)?;
    }
    if let Some(v) = raw.min_refresh_interval_secs {
        timing.min_refresh_interval_secs = parse_ttl("min_refresh_interval_secs", v, true)?;
    }
    if let Some(v) = raw.rotates_refresh_tokens {
        timing.rotates_refresh_tokens = v;
    }
    if let Some(v) = raw.refresh_token_ttl_secs {
        timing.refresh_token_ttl_secs = Some(parse_ttl("refresh_token_ttl_secs", v, false)?);
    }
    if let Some(v) = raw.reuse_grace_secs {
        timing.reuse_grace_secs = Some(parse_ttl("reuse_grace_secs", v, true)?);
    }
    if timing.refresh_margin_secs >= timing.default_access_ttl_secs {
        let field = if raw.refresh_margin_secs.is_some() { "refresh_margin_secs" } else { "default_access_ttl_secs" };
        return Err(field_err(
            field,
            format!(
                "refresh_margin_secs ({}) must be smaller than default_access_ttl_secs ({})",
                timing.refresh_margin_secs, timing.default_access_ttl_secs
            ),
        ));
    }

    if let Some(features) = raw.features {
        let mut parsed = Features::default();
        for feature in &features {
            match feature.as_str() {
                "holdings" => parsed.holdings = true,
                "balance" => parsed.balance = true,
                "transfers" => parsed.transfers = true,
                other => {
                    return Err(field_err(
                        "features",
                        format!("{other:?} is not one of \"holdings\", \"balance\", \"transfers\""),
                    ));
                }
            }
        }
        integration.features = parsed;
    }
    if let Some(categories) = raw.categories {
        for category in &categories {
            if !CATEGORIES.contains(&category.as_str()) {
                return Err(field_err("categories", format!("{category:?} is not one of {}", CATEGORIES.join(", "))));
            }
        }
        integration.categories = categories;
    }

    if let Some(style) = &raw.style {
        for (field, colour) in style {
            integration.style.set(field, colour).map_err(|message| field_err("style", message))?;
        }
    }

    // Completeness, after merging onto the embedded entry (if any).
    match integration.auth {
        AuthScheme::OAuth2 => {
            if integration.endpoints.authorize_url.is_none() {
                return Err(field_err("authorize_url", "is required for auth = \"oauth2\""));
            }
            if integration.endpoints.token_url.is_none() {
                return Err(field_err("token_url", "is required for auth = \"oauth2\""));
            }
            if is_new && integration.client.client_id.is_none() {
                return Err(field_err("client_id", "is required for a new auth = \"oauth2\" integration"));
            }
            let secret_needed = integration.client.auth_method != ClientAuthMethod::None;
            if is_new && secret_needed && integration.client.client_secret.is_none() {
                return Err(field_err(
                    "client_secret",
                    "is required (or client_secret_env, or token_auth_method = \"none\" for a public client)",
                ));
            }
        }
        AuthScheme::Credentials => {
            if is_new && integration.endpoints.sign_in_url.is_none() {
                return Err(field_err("sign_in_url", "is required for a new auth = \"credentials\" integration"));
            }
        }
        AuthScheme::ApiKey => {
            if integration.endpoints.api_base_url.is_none() {
                return Err(field_err(
                    "api_base_url",
                    "is required for auth = \"apiKey\" (the API keys are checked there)",
                ));
            }
            if integration.account_api.is_none() {
                return Err(field_err(
                    "account_api",
                    "is required for auth = \"apiKey\" (it says how keys sign requests)",
                ));
            }
        }
    }
    Ok(integration)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn apply(toml_text: &str) -> Result<Catalog, String> {
        let mut catalog = Catalog::embedded();
        catalog.apply_toml("catalog file test.toml", toml_text, &no_env).map_err(|e| e.to_string())?;
        Ok(catalog)
    }

    const EXAMPLE: &str = r#"
[[integration]]
type = "exampleOAuth"
name = "Example"
auth = "oauth2"
authorize_url = "https://auth.example.com/authorize"
token_url = "https://auth.example.com/token"
revoke_url = "https://auth.example.com/revoke"
api_base_url = "https://api.example.com/v1"
client_id = "abc"
client_secret = "s3cr3t-value"
scopes_read = ["read"]
scopes_write = ["write"]
refresh_margin_secs = 120
default_access_ttl_secs = 1800
"#;

    #[test]
    fn embedded_catalog_has_the_supported_integrations() {
        let catalog = Catalog::embedded();
        for ty in
            ["coinbase", "uphold", "binanceInternational", "binanceInternationalDirect", "sandbox", "sandboxCoinbase"]
        {
            let integration = catalog.get(ty);
            assert!(integration.is_some(), "{ty} missing");
            let id = integration.map(|i| i.id).unwrap_or_default();
            assert_eq!(catalog.by_id(id).map(|i| i.integration_type.as_str()), Some(ty));
        }
        assert!(catalog.get("nope").is_none());
        assert_ne!(derived_id("coinbase"), derived_id("uphold"));
    }

    #[test]
    fn built_ins_carry_meshs_ids_and_brand_colours() {
        let catalog = Catalog::embedded();
        let id = |ty: &str| catalog.get(ty).map(|i| i.id.to_string()).unwrap_or_default();
        assert_eq!(id("coinbase"), "47624467-e52e-4938-a41a-7926b6c27acf");
        assert_eq!(id("binanceInternationalDirect"), "9226e5c2-ebc3-4fdd-94f6-ed52cdce1420");
        assert_eq!(id("uphold"), derived_id("uphold").to_string(), "no Mesh id found: derived");
        let style = |ty: &str| catalog.get(ty).map(|i| i.style.clone()).unwrap_or_default();
        assert_eq!(style("coinbase").get("buttonPrimaryLight"), Some("0052FF"));
        assert_eq!(style("coinbase").get("buttonTextDark"), Some("0A0B0D"));
        for ty in ["coinbase", "uphold", "binanceInternational", "binanceInternationalDirect"] {
            assert!(style(ty).iter().all(|(_, c)| c.is_some_and(|c| c.len() == 6)), "{ty}: every field set");
        }
        assert!(style("sandbox").is_empty());
    }

    #[test]
    fn the_file_overrides_ids_and_style_fields() {
        let catalog = apply(
            "[[integration]]\ntype = \"uphold\"\nid = \"0e4c5b7e-7d0a-4f43-9d55-3c1a9b2e1f00\"\n\
             style = { buttonPrimaryLight = \"#00aa55\" }\n",
        );
        let uphold = catalog.as_ref().ok().and_then(|c| c.get("uphold").cloned());
        assert_eq!(uphold.as_ref().map(|u| u.id.to_string()).as_deref(), Some("0e4c5b7e-7d0a-4f43-9d55-3c1a9b2e1f00"));
        assert_eq!(uphold.as_ref().and_then(|u| u.style.get("buttonPrimaryLight")), Some("00AA55"));
        assert_eq!(uphold.as_ref().and_then(|u| u.style.get("buttonHoverLight")), Some("3DB35A"), "others kept");
        for (bad, needle) in [
            ("style = { buttonPrimaryLight = \"blue\" }", "is not a colour"),
            ("style = { buttonPrimaryLight = \"12345\" }", "is not a colour"),
            ("style = { buttonColor = \"123456\" }", "is not a style field"),
        ] {
            let refused = apply(&format!("[[integration]]\ntype = \"uphold\"\n{bad}\n")).err().unwrap_or_default();
            assert!(refused.contains("field style") && refused.contains(needle), "{bad}: {refused}");
        }
    }

    #[test]
    fn file_adds_an_integration_with_all_fields() {
        let catalog = apply(EXAMPLE).unwrap();
        let i = catalog.get("exampleOAuth").unwrap();
        assert_eq!(i.id, derived_id("exampleOAuth"));
        assert_eq!(i.auth, AuthScheme::OAuth2);
        assert_eq!(i.timing.refresh_margin_secs, 120);
        assert_eq!(i.timing.default_access_ttl_secs, 1800);
        assert_eq!(i.scopes_for(Scope::Write), vec!["read", "write"]);
        assert_eq!(i.scopes_for(Scope::Read), vec!["read"]);
        assert_eq!(i.client.client_secret.as_ref().map(ClientSecret::expose), Some("s3cr3t-value"));
        assert!(i.missing_configuration().is_none());
        // The secret never shows in Debug.
        let debug = format!("{catalog:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        // Embedded entries are still there.
        assert!(catalog.get("coinbase").is_some());
    }

    #[test]
    fn file_overrides_only_the_fields_it_names() {
        let catalog = apply(
            r#"
[[integration]]
type = "coinbase"
client_id = "my-coinbase-app"
client_secret_env = "CB_SECRET"
refresh_margin_secs = 60
"#,
        );
        // The env var is missing: a clear error naming the field.
        let err = catalog.unwrap_err();
        assert_eq!(
            err,
            "catalog file test.toml: integration #1 (\"coinbase\"): field client_secret_env: environment variable CB_SECRET is not set (or is empty)"
        );
        let mut catalog = Catalog::embedded();
        let env = |name: &str| (name == "CB_SECRET").then(|| "from-env".to_owned());
        catalog
            .apply_toml(
                "x",
                "[[integration]]\ntype = \"coinbase\"\nclient_id = \"my-app\"\nclient_secret_env = \"CB_SECRET\"\n",
                &env,
            )
            .unwrap();
        let cb = catalog.get("coinbase").unwrap();
        assert_eq!(cb.client.client_id.as_deref(), Some("my-app"));
        assert_eq!(cb.client.client_secret.as_ref().map(ClientSecret::expose), Some("from-env"));
        assert_eq!(cb.name, "Coinbase");
        assert!(cb.timing.rotates_refresh_tokens);
        assert_eq!(cb.endpoints.token_url.as_ref().map(Url::as_str), Some("https://login.coinbase.com/oauth2/token"));
    }

    #[test]
    fn bad_files_name_the_entry_and_field() {
        let second_bad = format!(
            "{EXAMPLE}\n[[integration]]\ntype = \"exampleTwo\"\nname = \"Two\"\nauth = \"oauth2\"\nauthorize_url = \"https://a.example/auth\"\ntoken_url = \"ftp://nope\"\nclient_id = \"x\"\nclient_secret = \"y\"\n"
        );
        assert_eq!(
            apply(&second_bad).unwrap_err(),
            "catalog file test.toml: integration #2 (\"exampleTwo\"): field token_url: must be an absolute http(s) URL"
        );
        let cases: &[(&str, &str)] = &[
            ("[[integration]]\ntype = \"x1\"\nnmae = \"typo\"\n", "integration #1 (\"x1\"): unknown field \"nmae\""),
            ("[[integration]]\nname = \"no type\"\n", "integration #1: field type: is required"),
            ("[[integration]]\ntype = \"bad type\"\n", "field type: \"bad type\" is not an integration type"),
            ("[[integration]]\ntype = \"newOne\"\nname = \"N\"\n", "field auth: is required for a new integration"),
            ("[[integration]]\ntype = \"coinbase\"\nauth = \"saml\"\n", "field auth: \"saml\" is not one of"),
            (
                "[[integration]]\ntype = \"coinbase\"\nrefresh_margin_secs = \"soon\"\n",
                "field refresh_margin_secs: invalid type: string \"soon\", expected u64",
            ),
            (
                "[[integration]]\ntype = \"coinbase\"\ndefault_access_ttl_secs = 0\n",
                "field default_access_ttl_secs: must be greater than 0",
            ),
            ("[[integration]]\ntype = \"coinbase\"\nid = \"not-a-uuid\"\n", "field id: \"not-a-uuid\" is not a UUID"),
            ("[[integration]]\ntype = \"coinbase\"\nscopes_read = [\"a b\"]\n", "field scopes_read:"),
            (
                "[[integration]]\ntype = \"coinbase\"\nfeatures = [\"trading\"]\n",
                "field features: \"trading\" is not one of",
            ),
            ("[[integration]]\ntype = \"coinbase\"\ncategories = [\"casino\"]\n", "field categories:"),
            ("[[integration]]\ntype = \"coinbase\"\nauthorize_params = { state = \"x\" }\n", "field authorize_params:"),
            (
                "[[integration]]\ntype = \"coinbase\"\nclient_secret = \"a\"\nclient_secret_env = \"B\"\n",
                "field client_secret_env: set either",
            ),
            (
                "[[integration]]\ntype = \"newOAuth\"\nname = \"N\"\nauth = \"oauth2\"\nauthorize_url = \"https://a.example/x\"\ntoken_url = \"https://a.example/t\"\n",
                "field client_id: is required",
            ),
            (
                "[[integration]]\ntype = \"newCreds\"\nname = \"N\"\nauth = \"credentials\"\n",
                "field sign_in_url: is required",
            ),
            (
                "[[integration]]\ntype = \"coinbase\"\n[[integration]]\ntype = \"coinbase\"\n",
                "integration #2 (\"coinbase\"): field type: \"coinbase\" appears twice",
            ),
            (&format!("[[integration]]\ntype = \"coinbase\"\nid = \"{}\"\n", derived_id("uphold")), "field id: "),
            ("integration = 3\n", "catalog file test.toml: `integration` must be an array of tables"),
            ("[server]\nport = 1\n", "unknown top-level key \"server\""),
            ("[[integration]\ntype=", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let err = apply(text).unwrap_err();
            assert!(err.contains(expected), "for {text:?}\n  got: {err}\n  expected to contain: {expected}");
            assert!(err.starts_with("catalog file test.toml"), "{err}");
        }
    }

    #[test]
    fn api_key_integrations() {
        let embedded = Catalog::embedded();
        let spot = embedded.get("binanceInternational").unwrap();
        assert_eq!(spot.auth.as_str(), "apiKey");
        assert_eq!(spot.account_api, Some(AccountApiKind::BinanceSpot));
        assert_eq!(spot.endpoints.api_base_url.as_ref().map(Url::as_str), Some("https://api.binance.com/"));
        assert!(spot.missing_configuration().is_none(), "usable without any configuration");
        let catalog = apply(
            "[[integration]]\ntype = \"myKeys\"\nname = \"Keys\"\nauth = \"apiKey\"\napi_base_url = \"https://api.example.com\"\naccount_api = \"binanceSpot\"\n",
        )
        .unwrap();
        assert_eq!(catalog.get("myKeys").unwrap().auth, AuthScheme::ApiKey);
        let err = apply(
            "[[integration]]\ntype = \"myKeys\"\nname = \"Keys\"\nauth = \"apiKey\"\naccount_api = \"binanceSpot\"\n",
        )
        .unwrap_err();
        assert!(err.contains("field api_base_url: is required"), "{err}");
        let err = apply("[[integration]]\ntype = \"myKeys\"\nname = \"Keys\"\nauth = \"apiKey\"\napi_base_url = \"https://a.example\"\n")
            .unwrap_err();
        assert!(err.contains("field account_api: is required"), "{err}");
    }

    #[test]
    fn a_failed_file_leaves_the_catalog_unchanged() {
        let mut catalog = Catalog::embedded();
        let text = format!("{EXAMPLE}\n[[integration]]\ntype = \"coinbase\"\nauth = \"nope\"\n");
        assert!(catalog.apply_toml("f", &text, &no_env).is_err());
        assert!(catalog.get("exampleOAuth").is_none());
    }

    #[test]
    fn load_file_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        assert!(Catalog::load_file(&path).unwrap().get("exampleOAuth").is_some());
        let missing = dir.path().join("missing.toml");
        let err = Catalog::load_file(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("catalog file {}: cannot read it", missing.display())), "{err}");
    }

    #[test]
    fn point_at_sandbox_rewrites_the_embedded_exchanges() {
        let mut catalog = Catalog::embedded();
        catalog.point_at_sandbox("http://127.0.0.1:8080/sandbox/").unwrap();
        let cb = catalog.get("coinbase").unwrap();
        assert_eq!(
            cb.endpoints.token_url.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:8080/sandbox/coinbase/oauth/token")
        );
        assert!(cb.missing_configuration().is_none());
        let up = catalog.get("uphold").unwrap();
        assert!(!up.timing.rotates_refresh_tokens);
        let bn = catalog.get("sandbox").unwrap();
        assert_eq!(
            bn.endpoints.sign_in_url.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:8080/sandbox/binance/auth/sign-in")
        );
        assert!(bn.missing_configuration().is_none());
        let spot = catalog.get("binanceInternational").unwrap();
        assert_eq!(spot.auth, AuthScheme::ApiKey);
        assert_eq!(
            spot.endpoints.api_base_url.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:8080/sandbox/binance")
        );
        assert!(spot.missing_configuration().is_none());
        assert!(catalog.point_at_sandbox("not a url").is_err());
        assert!(Catalog::embedded().get("coinbase").unwrap().missing_configuration().is_some());
    }
}
