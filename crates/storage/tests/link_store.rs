//! Conformance tests of [`LinkStore`] (Link sessions, pending OAuth sign-ins, allowed origins), run against
//! SQLite always and PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestResult, client, now, with_store};

use linkvault_domain::{ClientId, Scope, TokenId};
use linkvault_storage::{LinkOAuthRecord, LinkSessionRecord, LinkStart};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn session(client_id: ClientId, code: &[u8], expires_at: OffsetDateTime) -> LinkSessionRecord {
    LinkSessionRecord {
        id: Uuid::new_v4(),
        code_digest: code.to_vec(),
        client_id,
        user_id: "alice".into(),
        scope: Scope::Write,
        integration_id: Some(Uuid::new_v4()),
        restrict_multiple_accounts: false,
        transfer_options: Some(r#"{"transferType":"deposit"}"#.into()),
        created_at: now(),
        expires_at,
        used_at: None,
        session_expires_at: None,
        connected_integration: None,
    }
}

#[tokio::test]
async fn a_session_connects_one_integration() -> TestResult {
    with_store("a_session_connects_one_integration", |store| async move {
        let c = client(&store).await?;
        let s = session(c, b"code-c", now() + Duration::minutes(10));
        store.insert_link_session(&s).await?;
        assert_eq!(store.get_link_session(s.id).await?.expect("session").connected_integration, None);
        assert!(store.claim_link_connection(s.id, "coinbase").await?, "the first sign-in claims the session");
        assert!(store.claim_link_connection(s.id, "coinbase").await?, "signing in again to the same one is fine");
        assert!(!store.claim_link_connection(s.id, "uphold").await?, "another integration is refused");
        let stored = store.get_link_session(s.id).await?.expect("session");
        assert_eq!(stored.connected_integration.as_deref(), Some("coinbase"));
        assert!(!store.claim_link_connection(Uuid::new_v4(), "coinbase").await?, "no such session");

        // Concurrent claims of two integrations: exactly one wins.
        let t = session(c, b"code-r", now() + Duration::minutes(10));
        store.insert_link_session(&t).await?;
        let (a, b) =
            tokio::join!(store.claim_link_connection(t.id, "coinbase"), store.claim_link_connection(t.id, "uphold"));
        assert_ne!(a?, b?, "one of two concurrent sign-ins wins");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn link_token_is_single_use_and_expires() -> TestResult {
    with_store("link_token_is_single_use_and_expires", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        let record = session(c, b"code-1", t0 + Duration::minutes(10));
        store.insert_link_session(&record).await?;
        assert_eq!(store.find_link_by_code(b"code-1").await?.map(|r| r.client_id), Some(c));

        let started = store.start_link_session(b"code-1", b"sess-1", t0, t0 + Duration::minutes(30)).await?;
        let LinkStart::Started(got) = started else { panic!("expected Started, got {started:?}") };
        assert_eq!(
            (got.user_id.as_str(), got.scope, got.integration_id),
            ("alice", Scope::Write, record.integration_id)
        );
        assert_eq!(got.transfer_options, record.transfer_options);
        assert!(!got.restrict_multiple_accounts);
        assert_eq!(got.used_at, Some(t0));
        assert_eq!(
            store.start_link_session(b"code-1", b"sess-2", t0, t0 + Duration::minutes(30)).await?,
            LinkStart::Used
        );
        assert_eq!(store.start_link_session(b"nope", b"sess-3", t0, t0).await?, LinkStart::Unknown);

        store.insert_link_session(&session(c, b"code-2", t0 + Duration::seconds(1))).await?;
        let late = t0 + Duration::seconds(1);
        assert_eq!(store.start_link_session(b"code-2", b"sess-4", late, late).await?, LinkStart::Expired);

        // The session is found by its digest until it expires; the rejected attempts bound nothing.
        assert_eq!(store.find_link_session(b"sess-1", t0).await?.map(|r| r.id), Some(record.id));
        assert!(store.find_link_session(b"sess-1", t0 + Duration::minutes(31)).await?.is_none());
        assert!(store.find_link_session(b"sess-2", t0).await?.is_none());
        assert!(store.find_link_session(b"sess-4", t0).await?.is_none());
        assert_eq!(store.get_link_session(record.id).await?.map(|r| r.code_digest), Some(b"code-1".to_vec()));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn concurrent_starts_have_one_winner() -> TestResult {
    with_store("concurrent_starts_have_one_winner", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        store.insert_link_session(&session(c, b"race", t0 + Duration::minutes(10))).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12u8 {
            let store = store.clone();
            tasks
                .spawn(async move { store.start_link_session(b"race", &[i; 8], t0, t0 + Duration::minutes(30)).await });
        }
        let mut winners = 0;
        while let Some(result) = tasks.join_next().await {
            match result?? {
                LinkStart::Started(_) => winners += 1,
                LinkStart::Used => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners, 1);
        Ok(())
    })
    .await
}

/// Pending OAuth sign-in number `n` of session `session_id`, started at `t0`, not yet bound.
fn pending_oauth(session_id: Uuid, t0: OffsetDateTime, n: u8) -> LinkOAuthRecord {
    LinkOAuthRecord {
        state_digest: format!("state-{n}").into_bytes(),
        session_id,
        integration: "coinbase".into(),
        pkce_verifier: "v".repeat(43),
        created_at: t0,
        expires_at: t0 + Duration::minutes(10),
        begin_digest: Some(format!("begin-{n}").into_bytes()),
        authorize_url: Some(format!("https://idp.example/authorize?state=s{n}")),
        binding_digest: None,
    }
}

#[tokio::test]
async fn oauth_sign_ins_are_claimed_once_and_collected_once() -> TestResult {
    with_store("oauth_sign_ins_are_claimed_once_and_collected_once", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        let s = session(c, b"code-o", t0 + Duration::minutes(10));
        store.insert_link_session(&s).await?;
        let pending = pending_oauth(s.id, t0, 1);
        store.insert_link_oauth(&pending, 5).await?;
        assert!(store.take_link_oauth_outcome(s.id).await?.is_none(), "nothing completed yet");
        assert!(!store.complete_link_oauth(b"state-1", None, Some("x"), t0).await?, "not claimed yet");
        let claimed = store.claim_link_oauth(b"state-1", t0).await?.expect("claimed");
        assert_eq!(claimed, pending, "never bound: the claim shows it (the callback then refuses it)");
        assert!(store.claim_link_oauth(b"state-1", t0).await?.is_none(), "a state is claimed once");
        let token = TokenId::new_random();
        assert!(store.complete_link_oauth(b"state-1", Some(token), None, t0).await?);
        assert!(!store.complete_link_oauth(b"state-1", None, Some("again"), t0).await?);
        let outcome = store.take_link_oauth_outcome(s.id).await?.expect("outcome");
        assert_eq!((outcome.integration.as_str(), outcome.token_id, outcome.error), ("coinbase", Some(token), None));
        assert!(store.take_link_oauth_outcome(s.id).await?.is_none(), "collected once");

        let expired = LinkOAuthRecord { state_digest: b"state-2".to_vec(), expires_at: t0, ..pending.clone() };
        store.insert_link_oauth(&expired, 5).await?;
        assert!(store.claim_link_oauth(b"state-2", t0).await?.is_none(), "expired");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_oauth_sign_in_is_bound_once_within_its_window() -> TestResult {
    with_store("an_oauth_sign_in_is_bound_once_within_its_window", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        let s = session(c, b"code-b", t0 + Duration::minutes(10));
        store.insert_link_session(&s).await?;
        let url = "https://idp.example/authorize?state=s3";
        let pending = pending_oauth(s.id, t0, 3);
        store.insert_link_oauth(&pending, 5).await?;
        let late = t0 + Duration::minutes(3);
        assert_eq!(store.bind_link_oauth(b"begin-3", b"cookie", t0, late).await?, None, "started too long ago");
        assert_eq!(store.bind_link_oauth(b"begin-x", b"cookie", t0 - Duration::minutes(2), t0).await?, None);
        let window = t0 - Duration::minutes(2);
        assert_eq!(store.bind_link_oauth(b"begin-3", b"cookie", window, t0).await?.as_deref(), Some(url));
        assert_eq!(store.bind_link_oauth(b"begin-3", b"other", window, t0).await?, None, "single use");
        let claimed = store.claim_link_oauth(b"state-3", t0).await?.expect("claimed");
        assert_eq!(claimed.binding_digest.as_deref(), Some(&b"cookie"[..]));
        assert_eq!((claimed.begin_digest, claimed.authorize_url), (None, None), "cleared when bound");

        // A claimed (or expired) sign-in cannot be bound any more.
        let other = pending_oauth(s.id, t0, 4);
        store.insert_link_oauth(&other, 5).await?;
        assert!(store.claim_link_oauth(b"state-4", t0).await?.is_some());
        assert_eq!(store.bind_link_oauth(b"begin-4", b"cookie", window, t0).await?, None, "already claimed");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn allowed_origins_and_purge() -> TestResult {
    with_store("allowed_origins_and_purge", |store| async move {
        let (a, b) = (client(&store).await?, client(&store).await?);
        let t0 = now();
        assert!(store.add_link_origin(a, "https://b.example", t0).await?);
        assert!(store.add_link_origin(a, "https://a.example", t0).await?);
        assert!(!store.add_link_origin(a, "https://a.example", t0).await?, "already there");
        assert_eq!(store.link_origins(a).await?, vec!["https://a.example", "https://b.example"]);
        assert!(store.link_origins(b).await?.is_empty(), "per client");
        assert!(store.remove_link_origin(a, "https://b.example").await?);
        assert!(!store.remove_link_origin(a, "https://b.example").await?);
        assert_eq!(store.link_origins(a).await?, vec!["https://a.example"]);

        store.insert_link_session(&session(a, b"old", t0 - Duration::days(2))).await?;
        store.insert_link_session(&session(a, b"new", t0 + Duration::minutes(10))).await?;
        assert_eq!(store.purge_link_sessions(t0 - Duration::days(1)).await?, 1);
        assert!(store.find_link_by_code(b"old").await?.is_none());
        assert!(store.find_link_by_code(b"new").await?.is_some());
        Ok(())
    })
    .await
}

/// A pending Coinbase OAuth sign-in of `session_id`.
fn sign_in(session_id: Uuid, state: &[u8], created_at: OffsetDateTime, expires_at: OffsetDateTime) -> LinkOAuthRecord {
    LinkOAuthRecord {
        state_digest: state.to_vec(),
        session_id,
        integration: "coinbase".into(),
        pkce_verifier: "v".repeat(43),
        created_at,
        expires_at,
        begin_digest: None,
        authorize_url: None,
        binding_digest: None,
    }
}

#[tokio::test]
async fn concurrent_oauth_starts_keep_at_most_the_cap_pending() -> TestResult {
    with_store("concurrent_oauth_starts_keep_at_most_the_cap_pending", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        let s = session(c, b"code-cap", t0 + Duration::minutes(10));
        store.insert_link_session(&s).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24u8 {
            let store = store.clone();
            // Distinct creation times so "the oldest" is well defined.
            let record =
                sign_in(s.id, &[b'c', i], t0 + Duration::milliseconds(i64::from(i)), t0 + Duration::minutes(10));
            tasks.spawn(async move { store.insert_link_oauth(&record, 5).await });
        }
        let mut dropped = 0;
        while let Some(result) = tasks.join_next().await {
            dropped += result??;
        }
        assert_eq!(store.count_pending_link_oauth(s.id, t0).await?, 5, "the cap holds under concurrent starts");
        assert_eq!(dropped, 24 - 5, "every start beyond the cap dropped one older sign-in");

        // A claimed sign-in is no longer pending and is never dropped by later starts.
        let newest = vec![b'c', 23];
        assert!(store.claim_link_oauth(&newest, t0).await?.is_some());
        assert_eq!(store.count_pending_link_oauth(s.id, t0).await?, 4);
        for i in 0..6u8 {
            let record =
                sign_in(s.id, &[b'd', i], t0 + Duration::seconds(1 + i64::from(i)), t0 + Duration::minutes(10));
            store.insert_link_oauth(&record, 5).await?;
        }
        assert_eq!(store.count_pending_link_oauth(s.id, t0).await?, 5);
        assert!(store.complete_link_oauth(&newest, None, Some("x"), t0).await?, "the claimed row survived");
        // Past their expiry they are not pending either.
        assert_eq!(store.count_pending_link_oauth(s.id, t0 + Duration::minutes(11)).await?, 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn purge_removes_expired_oauth_rows_of_live_sessions() -> TestResult {
    with_store("purge_removes_expired_oauth_rows_of_live_sessions", |store| async move {
        let c = client(&store).await?;
        let t0 = now();
        let s = session(c, b"code-live", t0 + Duration::days(3));
        store.insert_link_session(&s).await?;
        let old = sign_in(s.id, b"old-state", t0 - Duration::days(2), t0 - Duration::days(2));
        store.insert_link_oauth(&old, 5).await?;
        let fresh = sign_in(s.id, b"new-state", t0, t0 + Duration::minutes(10));
        store.insert_link_oauth(&fresh, 5).await?;
        assert_eq!(store.purge_link_sessions(t0 - Duration::days(1)).await?, 0, "the session lives on");
        assert!(store.claim_link_oauth(b"old-state", t0 - Duration::days(3)).await?.is_none(), "purged");
        assert_eq!(store.count_pending_link_oauth(s.id, t0).await?, 1, "the unexpired one stays");
        Ok(())
    })
    .await
}
