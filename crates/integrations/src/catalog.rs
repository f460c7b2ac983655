//! The integration catalog: an embedded default, which an operator's TOML file can extend or override.

use std::collections::BTreeMap;

use linkvault_domain::IntegrationType;
use uuid::Uuid;

/// How end users sign in to an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// OAuth 2.0 authorization code with PKCE; tokens are refreshed with the refresh grant.
    OAuth2,
    /// Username, password and an MFA step; sessions expire and cannot be refreshed.
    Credentials,
}

/// When and how an integration's tokens are renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingPolicy {
    /// Refresh this long before the access token expires.
    pub refresh_margin_secs: u64,
    /// Access-token lifetime assumed when the integration does not say (`expires_in` absent) — never "forever".
    pub default_access_ttl_secs: u64,
}

impl Default for TimingPolicy {
    fn default() -> Self {
        Self { refresh_margin_secs: 300, default_access_ttl_secs: 3600 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: Uuid,
    pub integration_type: IntegrationType,
    pub name: String,
    pub auth: AuthScheme,
    pub timing: TimingPolicy,
}

/// Stable ids derived from the type name, so the same integration has the same id on every installation.
pub fn derived_id(integration_type: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("https://linkvault.dev/integrations/{integration_type}").as_bytes())
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_type: BTreeMap<String, Integration>,
}

impl Catalog {
    /// The integrations linkvault knows without any configuration.
    pub fn embedded() -> Self {
        let mut catalog = Catalog::default();
        for (ty, name, auth) in [
            ("coinbase", "Coinbase", AuthScheme::OAuth2),
            ("uphold", "Uphold", AuthScheme::OAuth2),
            ("binanceInternationalDirect", "Binance", AuthScheme::Credentials),
            ("sandbox", "Sandbox", AuthScheme::Credentials),
        ] {
            if let Ok(integration_type) = IntegrationType::parse(ty) {
                catalog.insert(Integration {
                    id: derived_id(ty),
                    integration_type,
                    name: name.to_owned(),
                    auth,
                    timing: TimingPolicy::default(),
                });
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_the_supported_integrations() {
        let catalog = Catalog::embedded();
        for ty in ["coinbase", "uphold", "binanceInternationalDirect", "sandbox"] {
            let integration = catalog.get(ty);
            assert!(integration.is_some(), "{ty} missing");
            let id = integration.map(|i| i.id).unwrap_or_default();
            assert_eq!(catalog.by_id(id).map(|i| i.integration_type.as_str()), Some(ty));
        }
        assert!(catalog.get("nope").is_none());
        assert_ne!(derived_id("coinbase"), derived_id("uphold"));
    }
}
