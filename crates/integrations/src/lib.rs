//! Integrations: the catalog of exchanges linkvault can connect to (data, not code) and, per auth scheme,
//! the adapters that talk to them: OAuth 2.0 ([`oauth`]), username/password sessions ([`credentials`]) and the
//! exchanges' account API ([`api`]) with the networks transfers use ([`networks`]), all over bounded HTTP
//! ([`http`]).

pub mod api;
pub mod catalog;
pub mod credentials;
pub mod http;
pub mod networks;
pub mod oauth;

pub use catalog::{
    AuthScheme, Catalog, CatalogError, ClientAuthMethod, ClientSecret, Endpoints, Features, Integration, Logo,
    OAuthClientConfig, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, STYLE_FIELDS, Style, TimingPolicy, derived_id,
};
pub use credentials::{CredentialsClient, CredentialsError, MfaChallenge, Session, SignIn, SignInOutcome};
pub use http::HttpLimits;
pub use oauth::{AuthorizationRequest, OAuthClient, OAuthError, Pkce, Revocation, TokenSet, TokenTypeHint};
