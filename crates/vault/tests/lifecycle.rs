//! The managed-tokens lifecycle table and the key hierarchy, on every configured backend.

use std::sync::Arc;
use std::time::Duration;

use linkvault_crypto::MasterKey;
use linkvault_domain::{
    ClientId, ConnectionEvent, ConnectionStatus, IntegrationType, NaturalKey, Scope, SystemClock, TokenId, TokenMode,
    UserId,
};
use linkvault_storage::on_every_backend;
use linkvault_storage::testing::FreshStore;
use linkvault_storage::{CredentialsUpdate, DynStore, ReauthMark};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Refreshed, Vault, VaultError};
use secrecy::ExposeSecret;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn vault_on(fresh: &FreshStore) -> Result<(Vault, MasterKey), Box<dyn std::error::Error>> {
    let master = MasterKey::generate()?;
    let copy = MasterKey::from_base64(master.to_base64().as_str())?;
    Ok((Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::new(SystemClock)).await?, copy))
}

fn key(
    client: ClientId,
    user: &str,
    integration: &str,
    scope: Scope,
) -> Result<NaturalKey, Box<dyn std::error::Error>> {
    Ok(NaturalKey {
        client_id: client,
        user_id: UserId::parse(user)?,
        integration: IntegrationType::parse(integration)?,
        scope,
    })
}

fn creds(access: &str) -> IntegrationCredentials {
    IntegrationCredentials::new(access, Some(format!("refresh-of-{access}")))
}

on_every_backend!(same_user_same_integration_keeps_token_id, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "coinbase", Scope::Read)?;
    let first = vault.store_credentials(&k, &creds("one"), &ConnectionMeta::default()).await?;
    let second = vault.store_credentials(&k, &creds("two"), &ConnectionMeta::default()).await?;
    assert!(first.created && !second.created);
    assert_eq!(first.token_id, second.token_id);
    // The credentials were replaced, not duplicated.
    let record = vault.connection_for(client, first.token_id).await?;
    assert_eq!(vault.open_credentials(&record).await?.access_token.expose_secret(), "two");
    assert_eq!(fresh.store.count_connections().await?, 1);
    TestResult::Ok(())
});

on_every_backend!(different_user_gets_new_token_id, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let a = vault
        .store_credentials(&key(client, "alice", "coinbase", Scope::Read)?, &creds("a"), &ConnectionMeta::default())
        .await?;
    let b = vault
        .store_credentials(&key(client, "bob", "coinbase", Scope::Read)?, &creds("b"), &ConnectionMeta::default())
        .await?;
    assert_ne!(a.token_id, b.token_id);
    // And another integration for the same user is another connection too.
    let c = vault
        .store_credentials(&key(client, "alice", "uphold", Scope::Read)?, &creds("c"), &ConnectionMeta::default())
        .await?;
    assert_ne!(a.token_id, c.token_id);
    TestResult::Ok(())
});

on_every_backend!(read_and_write_scope_get_distinct_token_ids, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let r = vault
        .store_credentials(&key(client, "alice", "coinbase", Scope::Read)?, &creds("r"), &ConnectionMeta::default())
        .await?;
    let w = vault
        .store_credentials(&key(client, "alice", "coinbase", Scope::Write)?, &creds("w"), &ConnectionMeta::default())
        .await?;
    assert_ne!(r.token_id, w.token_id);
    assert_eq!(vault.status(client, r.token_id).await?.scope, Scope::Read);
    assert_eq!(vault.status(client, w.token_id).await?.scope, Scope::Write);
    TestResult::Ok(())
});

on_every_backend!(another_client_sees_token_not_found, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let owner = vault.create_client("owner", TokenMode::Managed).await?.client_id;
    let other = vault.create_client("other", TokenMode::Managed).await?.client_id;
    let stored = vault
        .store_credentials(&key(owner, "alice", "coinbase", Scope::Read)?, &creds("x"), &ConnectionMeta::default())
        .await?;
    let never = TokenId::new_random();
    assert!(matches!(vault.status(other, stored.token_id).await, Err(VaultError::NotFound)));
    assert!(matches!(vault.status(other, never).await, Err(VaultError::NotFound)));
    assert!(matches!(vault.delete(other, stored.token_id).await, Err(VaultError::NotFound)));
    // The same end user at the other client gets a connection of its own.
    let theirs = vault
        .store_credentials(&key(other, "alice", "coinbase", Scope::Read)?, &creds("y"), &ConnectionMeta::default())
        .await?;
    assert_ne!(theirs.token_id, stored.token_id);
    assert!(vault.status(owner, stored.token_id).await.is_ok());
    TestResult::Ok(())
});

on_every_backend!(deleted_is_not_found_and_never_reissued, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "coinbase", Scope::Read)?;
    let first = vault.store_credentials(&k, &creds("x"), &ConnectionMeta::default()).await?;
    vault.delete(client, first.token_id).await?;
    assert!(matches!(vault.status(client, first.token_id).await, Err(VaultError::NotFound)));
    assert!(matches!(vault.delete(client, first.token_id).await, Err(VaultError::NotFound)));
    assert!(fresh.store.is_token_retired(first.token_id).await?);
    // Connecting again yields a new tokenId, never the deleted one.
    let again = vault.store_credentials(&k, &creds("y"), &ConnectionMeta::default()).await?;
    assert!(again.created);
    assert_ne!(again.token_id, first.token_id);
    // Even a record that tries to reuse the retired id directly is refused by the store.
    let mut forged = vault.connection_for(client, again.token_id).await?;
    forged.token_id = first.token_id;
    forged.user_id = "mallory".into();
    assert_eq!(fresh.store.insert_connection(&forged, None).await?, linkvault_storage::InsertOutcome::TokenIdRetired);
    TestResult::Ok(())
});

on_every_backend!(concurrent_stores_for_one_key_yield_one_token_id, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let vault = Arc::new(vault);
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "coinbase", Scope::Write)?;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (vault, k) = (Arc::clone(&vault), k.clone());
        tasks.push(tokio::spawn(async move {
            vault.store_credentials(&k, &creds(&format!("t{i}")), &ConnectionMeta::default()).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        ids.insert(t.await??.token_id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh.store.count_connections().await?, 1);
    TestResult::Ok(())
});

on_every_backend!(moved_ciphertext_or_wrapped_key_fails_to_open, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let a = vault
        .store_credentials(
            &key(client, "alice", "coinbase", Scope::Read)?,
            &creds("alice-secret"),
            &ConnectionMeta::default(),
        )
        .await?;
    let b = vault
        .store_credentials(
            &key(client, "bob", "coinbase", Scope::Read)?,
            &creds("bob-secret"),
            &ConnectionMeta::default(),
        )
        .await?;
    let ra = vault.connection_for(client, a.token_id).await?;
    let rb = vault.connection_for(client, b.token_id).await?;
    let store: &DynStore = &fresh.store;

    // Alice's ciphertext written into Bob's row.
    let moved_ct = CredentialsUpdate {
        token_id: rb.token_id,
        expected_version: rb.version,
        status: rb.status,
        credentials: ra.credentials.clone(),
        data_key_uses: rb.data_key_uses,
        rekey: None,
        account_id: None,
        account_name: None,
        access_expires_at: None,
        refresh_expires_at: None,
        last_refreshed_at: None,
        refresh_count: 0,
        updated_at: rb.updated_at,
        next_refresh_at: None,
        reauth_warned_at: None,
        event: None,
    };
    assert!(store.update_credentials(&moved_ct).await?);
    let tampered = vault.connection_for(client, b.token_id).await?;
    assert!(matches!(vault.open_credentials(&tampered).await, Err(VaultError::Crypto(_))));

    // Separately: Alice's wrapped data key written into a fresh copy of Bob's row.
    let c = vault
        .store_credentials(
            &key(client, "carol", "coinbase", Scope::Read)?,
            &creds("carol-secret"),
            &ConnectionMeta::default(),
        )
        .await?;
    let rc = vault.connection_for(client, c.token_id).await?;
    let moved_key = CredentialsUpdate {
        token_id: rc.token_id,
        expected_version: rc.version,
        credentials: rc.credentials.clone(),
        rekey: Some(linkvault_storage::Rekey {
            key_version: ra.key_version,
            wrapped_data_key: ra.wrapped_data_key.clone(),
            data_key_generation: ra.data_key_generation,
        }),
        ..moved_ct.clone()
    };
    assert!(store.update_credentials(&moved_key).await?);
    let tampered = vault.connection_for(client, c.token_id).await?;
    assert!(matches!(vault.open_credentials(&tampered).await, Err(VaultError::Crypto(_))));

    // Alice's own row still opens.
    assert_eq!(vault.open_credentials(&ra).await?.access_token.expose_secret(), "alice-secret");
    TestResult::Ok(())
});

on_every_backend!(another_master_key_is_refused, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    drop(vault);
    let other = MasterKey::generate()?;
    let err = Vault::open(Arc::clone(&fresh.store), Arc::new(other), Arc::new(SystemClock)).await.err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("master key does not match"), "{message}");
    TestResult::Ok(())
});

on_every_backend!(rotation_rewraps_everything_and_retires_old_version, |fresh: FreshStore| async move {
    let (vault, master) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let mut ids = Vec::new();
    for i in 0..300 {
        let stored = vault
            .store_credentials(
                &key(client, &format!("u{i}"), "coinbase", Scope::Read)?,
                &creds(&format!("secret-{i}")),
                &ConnectionMeta::default(),
            )
            .await?;
        ids.push(stored.token_id);
    }
    let mut last = None;
    let report = vault.rotate_keys(64, Duration::ZERO, |p| last = Some(p)).await?;
    assert_eq!(report.target_version, 2);
    assert!(!report.resumed);
    assert_eq!(report.rewrapped, 300);
    assert_eq!(report.retired_versions, vec![1]);
    assert_eq!(last.map(|p| p.remaining), Some(0));
    let versions = fresh.store.key_versions().await?;
    assert_eq!(versions.len(), 1);
    assert!(versions[0].is_current && versions[0].version == 2);
    assert_eq!(versions[0].wrap_count, 300);
    // A vault opened afresh (another process) opens every token under the new version.
    let reopened = Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::new(SystemClock)).await?;
    for (i, id) in ids.iter().enumerate() {
        let record = reopened.connection_for(client, *id).await?;
        assert_eq!(record.key_version, 2);
        assert_eq!(reopened.open_credentials(&record).await?.access_token.expose_secret(), format!("secret-{i}"));
    }
    TestResult::Ok(())
});

on_every_backend!(reauth_lands_on_same_token_id_and_reactivates, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "binanceInternationalDirect", Scope::Read)?;
    let first = vault.store_credentials(&k, &creds("s1"), &ConnectionMeta::default()).await?;
    // Mark it as needing re-auth directly in the store, as the refresh engine would.
    let r = vault.connection_for(client, first.token_id).await?;
    let update = CredentialsUpdate {
        token_id: r.token_id,
        expected_version: r.version,
        status: ConnectionStatus::ReauthRequired,
        credentials: r.credentials.clone(),
        data_key_uses: r.data_key_uses,
        rekey: None,
        account_id: r.account_id.clone(),
        account_name: r.account_name.clone(),
        access_expires_at: r.access_expires_at,
        refresh_expires_at: r.refresh_expires_at,
        last_refreshed_at: r.last_refreshed_at,
        refresh_count: r.refresh_count,
        updated_at: r.updated_at,
        next_refresh_at: None,
        reauth_warned_at: None,
        event: None,
    };
    assert!(fresh.store.update_credentials(&update).await?);
    assert_eq!(vault.status(client, first.token_id).await?.status, ConnectionStatus::ReauthRequired);
    let again = vault.store_credentials(&k, &creds("s2"), &ConnectionMeta::default()).await?;
    assert_eq!(again.token_id, first.token_id);
    assert_eq!(vault.status(client, first.token_id).await?.status, ConnectionStatus::Active);
    TestResult::Ok(())
});

on_every_backend!(api_keys_authenticate_and_revoke, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let created = vault.create_client("app", TokenMode::Managed).await?;
    let client = created.client_id;
    let (scope, secret) = &created.keys[1];
    assert_eq!(*scope, Scope::Write);
    let caller = vault.authenticate(&client.to_string(), secret.expose()).await?;
    assert_eq!(caller.map(|c| c.scope), Some(Scope::Write));
    // Wrong client id with a valid secret, garbage secret, valid-looking unknown secret: all None.
    let other = vault.create_client("other", TokenMode::Client).await?;
    assert!(vault.authenticate(&other.client_id.to_string(), secret.expose()).await?.is_none());
    assert!(vault.authenticate(&client.to_string(), "nope").await?.is_none());
    assert!(vault.authenticate("not-a-uuid", secret.expose()).await?.is_none());
    assert_eq!(
        vault.authenticate(&other.client_id.to_string(), other.keys[0].1.expose()).await?.map(|c| c.token_mode),
        Some(TokenMode::Client)
    );
    // Revoke by prefix: gone at once; the read key still works.
    assert_eq!(vault.revoke_api_key(client, secret.prefix()).await?, 1);
    assert!(vault.authenticate(&client.to_string(), secret.expose()).await?.is_none());
    assert!(vault.authenticate(&client.to_string(), created.keys[0].1.expose()).await?.is_some());
    // An added key works.
    let added = vault.add_api_key(client, Scope::Write).await?;
    assert!(vault.authenticate(&client.to_string(), added.expose()).await?.is_some());
    // A too-short selector is refused rather than revoking by accident.
    assert!(vault.revoke_api_key(client, "lvk_").await.is_err());
    TestResult::Ok(())
});

/// The event types in the outbox, oldest first.
async fn outbox_types(store: &DynStore) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    Ok(store.pending_outbox_events(100).await?.into_iter().map(|e| e.event_type).collect())
}

on_every_backend!(lifecycle_events_are_written_to_the_outbox, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "coinbase", Scope::Read)?;
    let first = vault.store_credentials(&k, &creds("one"), &ConnectionMeta::default()).await?;
    assert_eq!(outbox_types(&fresh.store).await?, ["connection.created"]);
    // New credentials are scheduled for the engine at once.
    let row = vault.connection_for(client, first.token_id).await?;
    assert_eq!(row.refresh.next_refresh_at, Some(row.updated_at));

    // Replacing an active connection's credentials is not news.
    vault.store_credentials(&k, &creds("two"), &ConnectionMeta::default()).await?;
    assert_eq!(outbox_types(&fresh.store).await?, ["connection.created"]);

    // reauthRequired (as the engine marks it), then re-authentication onto the same tokenId: recovered.
    let r = vault.connection_for(client, first.token_id).await?;
    let gone =
        linkvault_vault::connection_event(&r, ConnectionEvent::ReauthRequired, r.updated_at, Some("invalid_grant"));
    assert!(
        fresh
            .store
            .mark_reauth_required(&ReauthMark {
                token_id: r.token_id,
                expected_version: r.version,
                owner: None,
                last_error: Some("invalid_grant".into()),
                updated_at: r.updated_at,
                event: gone,
            })
            .await?
    );
    let again = vault.store_credentials(&k, &creds("three"), &ConnectionMeta::default()).await?;
    assert_eq!(again.token_id, first.token_id);
    assert_eq!(vault.status(client, first.token_id).await?.status, ConnectionStatus::Active);
    vault.delete(client, first.token_id).await?;
    assert!(matches!(vault.delete(client, first.token_id).await, Err(VaultError::NotFound)));
    let events = fresh.store.pending_outbox_events(100).await?;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["connection.created", "connection.reauthRequired", "connection.recovered", "connection.deleted"]
    );
    for e in &events {
        assert_eq!(e.client_id, client);
        let payload: serde_json::Value = serde_json::from_str(&e.payload)?;
        assert_eq!(payload["type"], e.event_type.as_str());
        assert_eq!(payload["id"], e.id.to_string());
        assert_eq!(payload["data"]["tokenId"], first.token_id.to_string());
        assert_eq!(payload["data"]["userId"], "alice");
        for secret in ["one", "two", "three", "refresh-of"] {
            assert!(!e.payload.contains(secret), "no token in {}", e.payload);
        }
    }
    assert!(events[1].payload.contains("invalid_grant"));
    TestResult::Ok(())
});

on_every_backend!(refreshed_update_reseals_under_the_rows_data_key, |fresh: FreshStore| async move {
    let (vault, _) = vault_on(&fresh).await?;
    let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
    let k = key(client, "alice", "coinbase", Scope::Read)?;
    let stored = vault.store_credentials(&k, &creds("old"), &ConnectionMeta::default()).await?;
    let lease = Duration::from_secs(60);
    let now = vault.clock().now();
    let claimed = fresh.store.claim_connection(stored.token_id, now, "engine-1", lease).await?.ok_or("claimed")?;
    let new = IntegrationCredentials::new("new-access", Some("new-refresh".into()));
    let expires = now + time::Duration::hours(1);
    let next = now + time::Duration::minutes(55);
    let update = vault
        .refreshed_update(
            &claimed,
            &Refreshed {
                credentials: &new,
                access_expires_at: Some(expires),
                refresh_expires_at: None,
                next_refresh_at: next,
                reauth_warned_at: None,
            },
        )
        .await?;
    assert_eq!(update.expected_version, claimed.version);
    assert!(update.rekey.is_none(), "a refresh keeps the row's data key");
    assert!(!fresh.store.complete_refresh(&update, "engine-2").await?, "only the lease owner writes back");
    assert!(fresh.store.complete_refresh(&update, "engine-1").await?);
    let row = vault.connection_for(client, stored.token_id).await?;
    assert_eq!(row.refresh_count, 1);
    assert_eq!(row.access_expires_at.map(|t| t.unix_timestamp()), Some(expires.unix_timestamp()));
    assert_eq!(row.refresh.next_refresh_at.map(|t| t.unix_timestamp()), Some(next.unix_timestamp()));
    assert_eq!(row.refresh.lease_owner, None);
    assert_eq!(row.wrapped_data_key, claimed.wrapped_data_key);
    let opened = vault.open_credentials(&row).await?;
    assert_eq!(opened.access_token.expose_secret(), "new-access");
    assert_eq!(opened.refresh_token.as_ref().map(|r| r.expose_secret().to_owned()), Some("new-refresh".into()));
    // A reauthRequired connection cannot be "refreshed" (the lifecycle rule refuses).
    let mut dead = row.clone();
    dead.status = ConnectionStatus::ReauthRequired;
    let refused = vault
        .refreshed_update(
            &dead,
            &Refreshed {
                credentials: &new,
                access_expires_at: None,
                refresh_expires_at: None,
                next_refresh_at: next,
                reauth_warned_at: None,
            },
        )
        .await;
    assert!(refused.is_err());
    TestResult::Ok(())
});

on_every_backend!(
    rotate_master_on_a_random_keyring_reseals_it_and_shuts_the_old_key_out,
    |fresh: FreshStore| async move {
        let (vault, old) = vault_on(&fresh).await?;
        assert_eq!(vault.keyring_origin(), linkvault_crypto::KeyringOrigin::Random);
        let created = vault.create_client("app", TokenMode::Managed).await?;
        let client = created.client_id;
        vault.set_webhook_endpoint(client, "https://hooks.example.com/in", "whsec_kept").await?;
        let stored = vault
            .store_credentials(&key(client, "u", "coinbase", Scope::Read)?, &creds("a"), &ConnectionMeta::default())
            .await?;
        let versions_before = fresh.store.key_versions().await?;
        let new = MasterKey::generate()?;
        let new_copy = MasterKey::from_base64(new.to_base64().as_str())?;
        let mut progress = 0;
        let report = vault.rotate_master(&new, 10, |_| progress += 1).await?;
        assert_eq!((report.resumed, report.rekeyed, report.rewrapped_key_versions), (false, false, 0));
        assert_eq!(progress, 0, "a random keyring is only re-sealed");
        assert_eq!(report.fingerprint, new.fingerprint());
        // Key versions are untouched; the old key no longer opens the vault.
        assert_eq!(fresh.store.key_versions().await?, versions_before);
        let refused = Vault::open(Arc::clone(&fresh.store), Arc::new(old), Arc::new(SystemClock)).await;
        assert!(matches!(refused, Err(VaultError::WrongMasterKey { .. })));
        let reopened = Vault::open(Arc::clone(&fresh.store), Arc::new(new), Arc::new(SystemClock)).await?;
        let record = reopened.connection_for(client, stored.token_id).await?;
        assert_eq!(reopened.open_credentials(&record).await?.access_token.expose_secret(), "a");
        let (_, secret) = reopened.webhook_endpoint(client).await?.ok_or("webhook endpoint lost")?;
        assert_eq!(secret.expose_secret(), "whsec_kept");
        let (_, api_key) = &created.keys[0];
        assert!(reopened.authenticate(&client.to_string(), api_key.expose()).await?.is_some());
        // Rotating to the key already in use is refused.
        let again = reopened.rotate_master(&new_copy, 10, |_| {}).await;
        assert!(matches!(again, Err(VaultError::MasterRotation(m)) if m.contains("is the current one")));
        TestResult::Ok(())
    }
);

on_every_backend!(start_up_names_the_key_it_expects, |fresh: FreshStore| async move {
    // A database from before the keyring, opened without adopting it, says how to give it one.
    let legacy = MasterKey::generate()?;
    fresh.store.insert_meta_if_absent("master_key_fingerprint", &legacy.fingerprint()).await?;
    let copy = MasterKey::from_base64(legacy.to_base64().as_str())?;
    let missing = Vault::open(Arc::clone(&fresh.store), Arc::new(copy), Arc::new(SystemClock)).await;
    assert!(matches!(missing, Err(VaultError::KeyringMissing { .. })), "{missing:?}");
    // Adopting refuses another key, then records the derived keyring once.
    let other = MasterKey::generate()?;
    let refused = linkvault_vault::master_keyring::adopt_legacy(&fresh.store, &other).await;
    assert!(matches!(refused, Err(VaultError::WrongMasterKey { .. })));
    assert!(linkvault_vault::master_keyring::adopt_legacy(&fresh.store, &legacy).await?);
    assert!(!linkvault_vault::master_keyring::adopt_legacy(&fresh.store, &legacy).await?);
    let vault = Vault::open(Arc::clone(&fresh.store), Arc::new(legacy), Arc::new(SystemClock)).await?;
    assert_eq!(vault.keyring_origin(), linkvault_crypto::KeyringOrigin::Derived);
    // A rotation recorded as pending: its new key is told to finish it, naming both fingerprints.
    let target = MasterKey::generate()?;
    fresh.store.set_meta("master_rotation_target", &target.fingerprint()).await?;
    let target_fp = target.fingerprint();
    let early = Vault::open(Arc::clone(&fresh.store), Arc::new(target), Arc::new(SystemClock)).await;
    let message = early.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("unfinished") && message.contains(&target_fp), "{message}");
    assert!(message.contains(&vault.master_key_fingerprint()?), "{message}");
    TestResult::Ok(())
});

on_every_backend!(
    the_key_schedule_replaces_a_version_once_it_has_outlived_the_period,
    |fresh: FreshStore| async move {
        use linkvault_domain::ManualClock;
        use linkvault_vault::{KeySchedule, KeyScheduleStep};

        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let master = MasterKey::generate()?;
        let vault = Arc::new(Vault::open(Arc::clone(&fresh.store), Arc::new(master), clock.clone()).await?);
        let client = vault.create_client("app", TokenMode::Managed).await?.client_id;
        let mut ids = Vec::new();
        for i in 0..40 {
            let k = key(client, &format!("u{i}"), "coinbase", Scope::Read)?;
            ids.push(vault.store_credentials(&k, &creds(&format!("secret-{i}")), &ConnectionMeta::default()).await?);
        }
        let schedule = KeySchedule::new(Arc::clone(&vault), Duration::from_secs(24 * 3600));
        assert_eq!(schedule.check_interval(), Duration::from_secs(60));

        // Younger than the period: nothing happens, however often it looks.
        clock.advance(time::Duration::hours(23));
        assert_eq!(schedule.step().await?, KeyScheduleStep::Waited { retired: vec![] });
        // While a master-key rotation is unfinished it stays out of the way, even when due.
        clock.advance(time::Duration::hours(2));
        fresh.store.set_meta(linkvault_vault::master_keyring::ROTATION_TARGET_META, "0123").await?;
        assert!(matches!(schedule.step().await?, KeyScheduleStep::Skipped(why) if why.contains("0123")));
        fresh.store.delete_meta(linkvault_vault::master_keyring::ROTATION_TARGET_META).await?;

        let KeyScheduleStep::Rotated(report) = schedule.step().await? else { return Err("no rotation".into()) };
        assert_eq!((report.target_version, report.rewrapped, report.retired_versions.clone()), (2, 40, vec![1]));
        assert!(report.kept_versions.is_empty());
        let versions = fresh.store.key_versions().await?;
        assert_eq!(versions.iter().map(|v| (v.version, v.is_current)).collect::<Vec<_>>(), vec![(2, true)]);
        // Version 2 is young again.
        assert_eq!(schedule.step().await?, KeyScheduleStep::Waited { retired: vec![] });
        for (i, stored) in ids.iter().enumerate() {
            let record = vault.connection_for(client, stored.token_id).await?;
            assert_eq!(record.key_version, 2);
            assert_eq!(vault.open_credentials(&record).await?.access_token.expose_secret(), format!("secret-{i}"));
        }
        // The rotation is in the audit log under the schedule's name.
        let mut actors = Vec::new();
        vault
            .export_audit::<VaultError>(None, |r| {
                if r.entry.action == "keys.rotated" {
                    actors.push(r.entry.actor.clone());
                }
                Ok(())
            })
            .await?;
        assert_eq!(actors, vec!["key-schedule".to_owned()]);
        TestResult::Ok(())
    }
);
