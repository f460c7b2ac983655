//! Property tests for `lva_` / `lvr_` client tokens as presented by an app (outside input): the shape filter
//! (`ClientToken::well_formed`, `ClientTokenKind::of`) and the vault's lookups behind it. Any string is either
//! the exact token issued (surrounding whitespace aside) or refused as `Unknown`: never a storage error, a
//! panic, or another connection; a token of one kind is never accepted as the other.

use std::sync::Arc;

use linkvault_crypto::{ClientToken, ClientTokenKind, MasterKey};
use linkvault_domain::{IntegrationType, NaturalKey, Scope, SystemClock, TokenMode, TokenRefusal, UserId};
use linkvault_storage::testing::{Backend, fresh_store};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use proptest::prelude::*;

const BODY: &str = "[A-Za-z0-9_-]{43}";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Strings near the token shape: right and wrong prefixes, lengths and alphabets, padding, whitespace.
fn token_like() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![Just("lva_"), Just("lvr_"), Just("LVA_"), Just("lvk_"), Just("lva"), Just("")];
    let body = prop_oneof![
        4 => BODY.prop_map(String::from),
        1 => "[A-Za-z0-9_-]{0,60}",
        1 => "[A-Za-z0-9+/=]{43,44}",
        1 => ".{0,50}",
    ];
    let pad = prop_oneof![Just(""), Just(" "), Just("\t"), Just("\n"), Just("=")];
    (pad.clone(), prefix, body, pad).prop_map(|(a, p, b, z)| format!("{a}{p}{b}{z}"))
}

proptest! {
    #![proptest_config(config(2000))]

    /// The shape filter: exactly prefix + 43 base64url characters, and the kind is the prefix's.
    #[test]
    fn shape_filter_matches_the_documented_format(candidate in token_like()) {
        for kind in [ClientTokenKind::Access, ClientTokenKind::Refresh] {
            let expected = candidate.strip_prefix(kind.prefix()).is_some_and(|body| {
                body.len() == 43 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
            prop_assert_eq!(ClientToken::well_formed(&candidate, kind), expected, "{:?} as {:?}", candidate, kind);
            if expected {
                prop_assert_eq!(ClientTokenKind::of(&candidate), Some(kind));
            }
        }
    }

    /// Generated tokens always pass the filter for their kind only; changing any one character to one
    /// outside the alphabet, or cutting or extending the body, fails it.
    #[test]
    fn generated_tokens_and_their_mutations(
        refresh in any::<bool>(),
        at in 0usize..47,
        bad in prop_oneof![Just('='), Just('+'), Just('/'), Just(' '), Just('.'), Just('é')],
        extra in "[A-Za-z0-9_-]{1,3}",
    ) {
        let kind = if refresh { ClientTokenKind::Refresh } else { ClientTokenKind::Access };
        let other = if refresh { ClientTokenKind::Access } else { ClientTokenKind::Refresh };
        let token = ClientToken::generate(kind).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = token.expose();
        prop_assert!(ClientToken::well_formed(text, kind));
        prop_assert!(!ClientToken::well_formed(text, other));
        let mutated: String = text.chars().enumerate().map(|(i, c)| if i == at { bad } else { c }).collect();
        prop_assert!(!ClientToken::well_formed(&mutated, kind), "{:?}", mutated);
        prop_assert!(!ClientToken::well_formed(&text[..46], kind));
        let longer = format!("{text}{extra}");
        prop_assert!(!ClientToken::well_formed(&longer, kind));
    }
}

/// Against a real vault holding one client-managed connection: arbitrary presented strings resolve to the
/// connection only when they are its access token; everything else, including its refresh token presented as
/// an access token and near misses of the real tokens, is `Unknown` without a storage error.
#[test]
fn presented_tokens_resolve_only_to_their_own_connection() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let fresh = runtime.block_on(fresh_store(Backend::Sqlite))?;
    let vault = runtime.block_on(Vault::open(
        Arc::clone(&fresh.store),
        Arc::new(MasterKey::generate()?),
        Arc::new(SystemClock),
    ))?;
    let client = runtime.block_on(vault.create_client("props", TokenMode::Client))?.client_id;
    let other = runtime.block_on(vault.create_client("other", TokenMode::Client))?.client_id;
    let key = NaturalKey {
        client_id: client,
        user_id: UserId::parse("alice")?,
        integration: IntegrationType::parse("coinbase")?,
        scope: Scope::Read,
    };
    let credentials = IntegrationCredentials::new("at", Some("rt".to_owned()));
    let stored = runtime.block_on(vault.store_credentials(&key, &credentials, &ConnectionMeta::default()))?;
    let record = runtime.block_on(vault.connection_for(client, stored.token_id))?;
    let issued = runtime.block_on(vault.issue_client_tokens(&record))?;
    let access = issued.access_token.expose().to_owned();
    let refresh = issued.refresh_token.as_ref().map(|t| t.expose().to_owned()).ok_or("no refresh token issued")?;

    // The real tokens work, with whitespace around them too; for another client they do not exist.
    assert_eq!(runtime.block_on(vault.resolve_access_token(client, &format!(" {access}\n")))?, Ok(stored.token_id));
    assert_eq!(runtime.block_on(vault.resolve_access_token(other, &access))?, Err(TokenRefusal::Unknown));

    let near_miss = (0usize..47, "[A-Za-z0-9_-]").prop_map({
        let (access, refresh) = (access.clone(), refresh.clone());
        move |(at, c)| {
            let base = if at % 2 == 0 { &access } else { &refresh };
            base.chars()
                .enumerate()
                .map(|(i, old)| if i == at { c.chars().next().unwrap_or(old) } else { old })
                .collect()
        }
    });
    let candidates = prop_oneof![2 => token_like(), 1 => near_miss, 1 => Just(refresh.clone())];
    let mut runner = proptest::test_runner::TestRunner::new(config(300));
    runner.run(&candidates, |candidate| {
        let answer = runtime
            .block_on(vault.resolve_access_token(client, &candidate))
            .map_err(|e| TestCaseError::fail(format!("storage error for {candidate:?}: {e}")))?;
        if candidate.trim() == access {
            prop_assert_eq!(answer, Ok(stored.token_id));
        } else {
            prop_assert_eq!(answer, Err(TokenRefusal::Unknown), "{:?}", candidate);
        }
        // A refresh with anything but the current refresh token changes nothing and is refused as unknown.
        if candidate.trim() != refresh {
            let refreshed = runtime
                .block_on(vault.refresh_client_tokens(client, "coinbase", &candidate, true))
                .map_err(|e| TestCaseError::fail(format!("storage error for {candidate:?}: {e}")))?;
            prop_assert!(
                matches!(refreshed, Err(TokenRefusal::Unknown)),
                "{:?}: {:?}",
                candidate,
                refreshed.map(|_| ())
            );
        }
        Ok(())
    })?;
    // The issued refresh token is still current after all those refusals: it refreshes once.
    let refreshed = runtime.block_on(vault.refresh_client_tokens(client, "coinbase", &refresh, true))?;
    assert!(refreshed.is_ok(), "the refresh token stopped working: {:?}", refreshed.map(|_| ()));
    Ok(())
}
