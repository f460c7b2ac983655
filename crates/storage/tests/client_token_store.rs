//! Conformance tests of [`ClientTokenStore`] (client-managed token families), run against SQLite always and
//! PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set: issue, refresh with and without rotation, reuse
//! detection, concurrent presentation of one refresh token, isolation, and deletion with the connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestResult, now, with_store_file};

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use linkvault_domain::{ClientId, ConnectionStatus, RevokedReason, Scope, TokenId, TokenMode, TokenRefusal};
use linkvault_storage::{
    ClientRecord, ConnectionRecord, DynStore, FamilyRefresh, InsertOutcome, KeyVersionRecord, NewAccessToken,
    RefreshOutcome, RefreshState, TokenFamilyRecord,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn digest() -> Vec<u8> {
    let mut out = Uuid::new_v4().as_bytes().to_vec();
    out.extend_from_slice(Uuid::new_v4().as_bytes());
    out
}

struct Fixture {
    client: ClientId,
    connection: ConnectionRecord,
}

async fn setup(store: &DynStore) -> Result<Fixture, Box<dyn Error + Send + Sync>> {
    let t = now();
    let version =
        KeyVersionRecord { version: 1, wrapped_key: digest(), is_current: true, wrap_count: 0, created_at: t };
    store.insert_key_version(&version, true).await?;
    let client = ClientId::new_random();
    store
        .insert_client(
            &ClientRecord {
                client_id: client,
                name: "c".into(),
                token_mode: TokenMode::Client,
                created_at: t,
                api_rate_limit: None,
            },
            &[],
        )
        .await?;
    let connection = connection(client, "alice");
    assert_eq!(store.insert_connection(&connection, None).await?, InsertOutcome::Inserted);
    Ok(Fixture { client, connection })
}

fn connection(client_id: ClientId, user: &str) -> ConnectionRecord {
    let t = now();
    ConnectionRecord {
        token_id: TokenId::new_random(),
        client_id,
        user_id: user.to_owned(),
        integration: "coinbase".into(),
        scope: Scope::Read,
        status: ConnectionStatus::Active,
        key_version: 1,
        wrapped_data_key: digest(),
        data_key_generation: 1,
        data_key_uses: 1,
        credentials: digest(),
        account_id: None,
        account_name: None,
        access_expires_at: None,
        refresh_expires_at: None,
        last_refreshed_at: None,
        refresh_count: 0,
        created_at: t,
        updated_at: t,
        version: 1,
        refresh: RefreshState::default(),
    }
}

/// Issues a family for `c` and returns it with its first access token's digest.
async fn issue(
    store: &DynStore,
    c: &ConnectionRecord,
    refresh_expires_at: Option<OffsetDateTime>,
) -> Result<(TokenFamilyRecord, Vec<u8>), Box<dyn Error + Send + Sync>> {
    let t = now();
    let family = TokenFamilyRecord {
        family_id: Uuid::new_v4(),
        token_id: c.token_id,
        client_id: c.client_id,
        integration: c.integration.clone(),
        refresh_digest: digest(),
        refresh_expires_at,
        generation: 0,
        created_at: t,
        updated_at: t,
        revoked_at: None,
        revoked_reason: None,
    };
    let access = NewAccessToken { digest: digest(), expires_at: t + Duration::hours(1) };
    store.issue_token_family(&family, &access).await?;
    Ok((family, access.digest))
}

fn refresh(f: &TokenFamilyRecord, presented: &[u8], rotate: bool, at: OffsetDateTime) -> FamilyRefresh {
    FamilyRefresh {
        client_id: f.client_id,
        integration: f.integration.clone(),
        presented_digest: presented.to_vec(),
        now: at,
        access_digest: digest(),
        access_ttl: Duration::hours(1),
        rotate_to: rotate.then(|| (digest(), Some(at + Duration::days(30)))),
        purge_expired_before: at - Duration::days(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_and_find_access_tokens() -> TestResult {
    with_store_file("issue_and_find_access_tokens", |store, _| async move {
        let fx = setup(&store).await?;
        let (family, access) = issue(&store, &fx.connection, None).await?;
        let found = store.find_access_token(&access).await?.ok_or("access token not found")?;
        assert_eq!(found.family, family);
        assert_eq!(found.expires_at, family.created_at + Duration::hours(1));
        assert!(store.find_access_token(&digest()).await?.is_none());
        assert_eq!(store.token_families(fx.connection.token_id).await?, vec![family.clone()]);

        // A second issue for the same connection supersedes the first family.
        let (second, _) = issue(&store, &fx.connection, None).await?;
        let families = store.token_families(fx.connection.token_id).await?;
        assert_eq!(families.len(), 2);
        let old = families.iter().find(|f| f.family_id == family.family_id).ok_or("old family gone")?;
        assert_eq!(old.revoked_reason, Some(RevokedReason::Superseded));
        assert!(families.iter().any(|f| f.family_id == second.family_id && f.revoked_at.is_none()));
        let refused = store.refresh_token_family(&refresh(&family, &family.refresh_digest, false, now())).await?;
        assert_eq!(refused, RefreshOutcome::Refused(TokenRefusal::Revoked));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_and_with_rotation_then_reuse_revokes() -> TestResult {
    with_store_file("refresh_without_and_with_rotation_then_reuse_revokes", |store, _| async move {
        let fx = setup(&store).await?;
        let (family, first_access) = issue(&store, &fx.connection, Some(now() + Duration::days(30))).await?;
        let r1 = family.refresh_digest.clone();

        // Without rotation: a new access token, the same refresh token, and the old access token still listed.
        let plain = refresh(&family, &r1, false, now());
        let RefreshOutcome::Refreshed { family: after, access_expires_at } = store.refresh_token_family(&plain).await?
        else {
            panic!("plain refresh refused");
        };
        assert_eq!((after.refresh_digest.as_slice(), after.generation), (r1.as_slice(), 0));
        assert_eq!(access_expires_at, plain.now + Duration::hours(1));
        assert!(store.find_access_token(&plain.access_digest).await?.is_some());
        assert!(store.find_access_token(&first_access).await?.is_some());

        // With rotation: the refresh token changes and the presented one is spent.
        let rotate = refresh(&family, &r1, true, now());
        let RefreshOutcome::Refreshed { family: rotated, .. } = store.refresh_token_family(&rotate).await? else {
            panic!("rotation refused");
        };
        let (r2, r2_end) = rotate.rotate_to.clone().ok_or("no new refresh token")?;
        assert_eq!(
            (rotated.refresh_digest.clone(), rotated.refresh_expires_at, rotated.generation),
            (r2.clone(), r2_end, 1)
        );

        // The spent token again: reuse, the family is revoked, and then everything is refused as revoked.
        let reuse = store.refresh_token_family(&refresh(&family, &r1, false, now())).await?;
        assert_eq!(reuse, RefreshOutcome::Refused(TokenRefusal::RefreshTokenReused));
        let revoked = store.find_access_token(&rotate.access_digest).await?.ok_or("access row gone")?;
        assert_eq!(revoked.family.revoked_reason, Some(RevokedReason::RefreshTokenReused));
        for presented in [&r2, &r1] {
            let again = store.refresh_token_family(&refresh(&family, presented, true, now())).await?;
            assert_eq!(again, RefreshOutcome::Refused(TokenRefusal::Revoked));
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_expired_and_foreign_refresh_tokens_change_nothing() -> TestResult {
    with_store_file("unknown_expired_and_foreign_refresh_tokens_change_nothing", |store, _| async move {
        let fx = setup(&store).await?;
        let end = now() + Duration::minutes(5);
        let (family, _) = issue(&store, &fx.connection, Some(end)).await?;
        let r = family.refresh_digest.clone();
        assert_eq!(
            store.refresh_token_family(&refresh(&family, &digest(), true, now())).await?,
            RefreshOutcome::Refused(TokenRefusal::Unknown)
        );
        // Another client, or another integration type, sees nothing (and spends nothing).
        let mut foreign = refresh(&family, &r, true, now());
        foreign.client_id = ClientId::new_random();
        assert_eq!(store.refresh_token_family(&foreign).await?, RefreshOutcome::Refused(TokenRefusal::Unknown));
        let mut wrong_type = refresh(&family, &r, true, now());
        wrong_type.integration = "uphold".into();
        assert_eq!(store.refresh_token_family(&wrong_type).await?, RefreshOutcome::Refused(TokenRefusal::Unknown));
        // Access tokens are capped at the refresh token's end.
        let RefreshOutcome::Refreshed { access_expires_at, .. } =
            store.refresh_token_family(&refresh(&family, &r, false, now())).await?
        else {
            panic!("refused");
        };
        assert_eq!(access_expires_at, end);
        // Past the refresh token's end: expired, the family itself stays active.
        let late = store.refresh_token_family(&refresh(&family, &r, true, end + Duration::seconds(1))).await?;
        assert_eq!(late, RefreshOutcome::Refused(TokenRefusal::Expired));
        let families = store.token_families(fx.connection.token_id).await?;
        assert_eq!((families.len(), families[0].revoked_at, families[0].generation), (1, None, 0));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_refresh_token_exactly_one_wins() -> TestResult {
    with_store_file("concurrent_rotations_of_one_refresh_token_exactly_one_wins", |store, _| async move {
        const RACERS: usize = 12;
        let fx = setup(&store).await?;
        let (family, _) = issue(&store, &fx.connection, None).await?;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..RACERS {
            let (store, barrier, request) =
                (store.clone(), barrier.clone(), refresh(&family, &family.refresh_digest, true, now()));
            tasks.spawn(async move {
                barrier.wait().await;
                store.refresh_token_family(&request).await
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = tasks.join_next().await {
            outcomes.push(done??);
        }
        let wins = outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Refreshed { .. })).count();
        assert_eq!(wins, 1, "exactly one rotation may succeed: {outcomes:?}");
        // The first loser detects reuse and revokes; any later one finds the family revoked.
        let reused =
            outcomes.iter().filter(|o| **o == RefreshOutcome::Refused(TokenRefusal::RefreshTokenReused)).count();
        let revoked = outcomes.iter().filter(|o| **o == RefreshOutcome::Refused(TokenRefusal::Revoked)).count();
        assert!(reused >= 1 && reused + revoked == RACERS - 1, "{outcomes:?}");
        let families = store.token_families(fx.connection.token_id).await?;
        assert_eq!(families[0].revoked_reason, Some(RevokedReason::RefreshTokenReused));
        assert_eq!(families[0].generation, 1);
        Ok(())
    })
    .await
}

fn file_contains(db: &Path, needle: &[u8]) -> Result<bool, Box<dyn Error + Send + Sync>> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if bytes.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_connection_deletes_its_families_and_digests() -> TestResult {
    with_store_file("deleting_the_connection_deletes_its_families_and_digests", |store, file| async move {
        let fx = setup(&store).await?;
        let keep = connection(fx.client, "bob");
        assert_eq!(store.insert_connection(&keep, None).await?, InsertOutcome::Inserted);
        let (kept_family, kept_access) = issue(&store, &keep, None).await?;

        let (family, access) = issue(&store, &fx.connection, None).await?;
        let rotate = refresh(&family, &family.refresh_digest, true, now());
        assert!(matches!(store.refresh_token_family(&rotate).await?, RefreshOutcome::Refreshed { .. }));
        let (current_refresh, _) = rotate.rotate_to.clone().ok_or("no rotation")?;
        let digests =
            [family.refresh_digest.clone(), current_refresh.clone(), access.clone(), rotate.access_digest.clone()];
        if let Some(db) = &file {
            assert!(file_contains(db, &current_refresh)?, "the test must see digests before the deletion");
        }

        assert!(store.delete_connection(fx.client, fx.connection.token_id, None).await?);
        assert!(store.token_families(fx.connection.token_id).await?.is_empty());
        assert!(store.find_access_token(&access).await?.is_none());
        assert!(store.find_access_token(&rotate.access_digest).await?.is_none());
        for presented in [&family.refresh_digest, &current_refresh] {
            let r = refresh(&family, presented, false, now());
            assert_eq!(store.refresh_token_family(&r).await?, RefreshOutcome::Refused(TokenRefusal::Unknown));
        }
        // SQLite: not even the freed pages or the WAL still hold a digest (secure_delete + checkpoint).
        if let Some(db) = &file {
            for d in &digests {
                assert!(!file_contains(db, d)?, "a deleted digest survives in the SQLite files");
            }
        }
        // The other connection's family is untouched.
        assert_eq!(store.token_families(keep.token_id).await?, vec![kept_family]);
        assert!(store.find_access_token(&kept_access).await?.is_some());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_purges_long_expired_access_tokens_only() -> TestResult {
    with_store_file("refresh_purges_long_expired_access_tokens_only", |store, _| async move {
        let fx = setup(&store).await?;
        let (family, first_access) = issue(&store, &fx.connection, None).await?;
        // Two hours on: the first access token (one hour) has expired but is kept, to answer "expired".
        let soon = refresh(&family, &family.refresh_digest, false, now() + Duration::hours(2));
        assert!(matches!(store.refresh_token_family(&soon).await?, RefreshOutcome::Refreshed { .. }));
        assert!(store.find_access_token(&first_access).await?.is_some());
        // Three days on: both earlier access tokens expired over a day ago and are gone.
        let later = refresh(&family, &family.refresh_digest, false, now() + Duration::days(3));
        assert!(matches!(store.refresh_token_family(&later).await?, RefreshOutcome::Refreshed { .. }));
        assert!(store.find_access_token(&first_access).await?.is_none());
        assert!(store.find_access_token(&soon.access_digest).await?.is_none());
        assert!(store.find_access_token(&later.access_digest).await?.is_some());
        Ok(())
    })
    .await
}
