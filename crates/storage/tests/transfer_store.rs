//! Conformance tests of [`TransferStore`] (transfer previews and execution claims), run against SQLite always
//! and PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestResult, client, now, with_store};

use linkvault_domain::{ClientId, TokenId};
use linkvault_storage::{ExecutionClaim, ExecutionState, TransferExecutionRecord, TransferPreviewRecord};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn execution(
    client_id: ClientId,
    preview_id: Uuid,
    txid: Option<&str>,
    key: Option<&str>,
    lease_until: OffsetDateTime,
) -> TransferExecutionRecord {
    TransferExecutionRecord {
        preview_id,
        client_id,
        token_id: TokenId::new_random(),
        client_transaction_id: txid.map(str::to_owned),
        idempotency_key: key.map(str::to_owned),
        fingerprint: format!("fp-{preview_id}"),
        state: ExecutionState::Pending,
        attempt: 1,
        lease_until,
        result: None,
        transfer_id: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn existing(claim: ExecutionClaim) -> TransferExecutionRecord {
    match claim {
        ExecutionClaim::Existing(row) => *row,
        ExecutionClaim::Claimed => panic!("expected an existing row, the claim was granted"),
    }
}

#[tokio::test]
async fn previews_are_per_client_and_purged_after_expiry() -> TestResult {
    with_store("previews_are_per_client_and_purged_after_expiry", |store| async move {
        let (a, b) = (client(&store).await?, client(&store).await?);
        let t0 = now();
        let preview = TransferPreviewRecord {
            preview_id: Uuid::new_v4(),
            client_id: a,
            token_id: TokenId::new_random(),
            integration: "coinbase".into(),
            client_transaction_id: Some("order-1".into()),
            details: r#"{"symbol":"ETH","amount":1.5}"#.into(),
            created_at: t0,
            expires_at: t0 + Duration::minutes(5),
        };
        store.insert_transfer_preview(&preview).await?;
        assert_eq!(store.get_transfer_preview(a, preview.preview_id).await?, Some(preview.clone()));
        assert_eq!(store.get_transfer_preview(b, preview.preview_id).await?, None, "another client's is not found");
        assert_eq!(store.get_transfer_preview(a, Uuid::new_v4()).await?, None);
        assert_eq!(store.purge_transfer_previews(t0).await?, 0, "not expired yet");
        assert_eq!(store.purge_transfer_previews(t0 + Duration::minutes(6)).await?, 1);
        assert_eq!(store.get_transfer_preview(a, preview.preview_id).await?, None);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_claim_is_unique_per_preview_transaction_id_and_key() -> TestResult {
    with_store("a_claim_is_unique_per_preview_transaction_id_and_key", |store| async move {
        let (a, b) = (client(&store).await?, client(&store).await?);
        let t0 = now();
        let lease = t0 + Duration::seconds(20);
        let first = execution(a, Uuid::new_v4(), Some("order-1"), Some("key-1"), lease);
        assert_eq!(store.claim_transfer_execution(&first).await?, ExecutionClaim::Claimed);
        // The same preview again, another preview with the transactionId, another with the key: the first row.
        let again = existing(store.claim_transfer_execution(&first).await?);
        assert_eq!(again, first);
        let by_txid = execution(a, Uuid::new_v4(), Some("order-1"), None, lease);
        assert_eq!(existing(store.claim_transfer_execution(&by_txid).await?).preview_id, first.preview_id);
        let by_key = execution(a, Uuid::new_v4(), None, Some("key-1"), lease);
        assert_eq!(existing(store.claim_transfer_execution(&by_key).await?).preview_id, first.preview_id);
        // Keys are per client.
        let other_client = execution(b, Uuid::new_v4(), Some("order-1"), Some("key-1"), lease);
        assert_eq!(store.claim_transfer_execution(&other_client).await?, ExecutionClaim::Claimed);
        // Without keys, distinct previews are distinct executions.
        let plain = execution(a, Uuid::new_v4(), None, None, lease);
        assert_eq!(store.claim_transfer_execution(&plain).await?, ExecutionClaim::Claimed);
        // Look-ups prefer the preview's own row over one sharing a key.
        let own = store.find_transfer_execution(a, plain.preview_id, Some("order-1"), Some("key-1")).await?;
        assert_eq!(own.map(|r| r.preview_id), Some(plain.preview_id));
        let via_key = store.find_transfer_execution(a, Uuid::new_v4(), None, Some("key-1")).await?;
        assert_eq!(via_key.map(|r| r.preview_id), Some(first.preview_id));
        assert!(store.find_transfer_execution(b, first.preview_id, None, None).await?.is_none(), "per client");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn take_over_complete_and_release_are_fenced_by_attempt() -> TestResult {
    with_store("take_over_complete_and_release_are_fenced_by_attempt", |store| async move {
        let a = client(&store).await?;
        let t0 = now();
        let row = execution(a, Uuid::new_v4(), Some("order-9"), None, t0 + Duration::seconds(20));
        let id = row.preview_id;
        assert_eq!(store.claim_transfer_execution(&row).await?, ExecutionClaim::Claimed);
        assert!(!store.take_over_transfer_execution(id, 1, t0, t0 + Duration::seconds(40)).await?, "lease live");
        let later = t0 + Duration::seconds(21);
        assert!(store.take_over_transfer_execution(id, 1, later, later + Duration::seconds(20)).await?);
        assert!(!store.take_over_transfer_execution(id, 1, later, later).await?, "attempt 1 is over");
        // The overtaken holder can no longer write back; the new one can, once.
        assert!(!store.complete_transfer_execution(id, 1, "{}", "t-1", later).await?);
        assert!(store.complete_transfer_execution(id, 2, r#"{"status":"succeeded"}"#, "t-1", later).await?);
        assert!(!store.complete_transfer_execution(id, 2, "{}", "t-2", later).await?, "completed once");
        let done = store.find_transfer_execution(a, id, None, None).await?.expect("row");
        assert_eq!(
            (done.state, done.attempt, done.transfer_id.as_deref(), done.result.as_deref()),
            (ExecutionState::Succeeded, 2, Some("t-1"), Some(r#"{"status":"succeeded"}"#))
        );
        assert!(!store.release_transfer_execution(id, 2, true, later).await?, "a completed execution stays");
        assert!(!store.take_over_transfer_execution(id, 2, later + Duration::hours(1), later).await?);

        // Release without forgetting ends the lease (a retry takes over at once); forgetting frees the keys.
        let second = execution(a, Uuid::new_v4(), Some("order-10"), None, t0 + Duration::seconds(20));
        store.claim_transfer_execution(&second).await?;
        assert!(store.release_transfer_execution(second.preview_id, 1, false, t0).await?);
        assert!(store.take_over_transfer_execution(second.preview_id, 1, t0, t0 + Duration::seconds(20)).await?);
        assert!(store.release_transfer_execution(second.preview_id, 2, true, t0).await?);
        assert!(store.find_transfer_execution(a, second.preview_id, None, None).await?.is_none());
        let reuse = execution(a, Uuid::new_v4(), Some("order-10"), None, t0 + Duration::seconds(20));
        assert_eq!(store.claim_transfer_execution(&reuse).await?, ExecutionClaim::Claimed);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn concurrent_claims_have_one_winner() -> TestResult {
    with_store("concurrent_claims_have_one_winner", |store| async move {
        let a = client(&store).await?;
        let t0 = now();
        let preview_id = Uuid::new_v4();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let store = store.clone();
            // Half retry the same preview, half arrive through a second preview with the same transactionId.
            let id = if i % 2 == 0 { preview_id } else { Uuid::new_v4() };
            let row = execution(a, id, Some("order-race"), None, t0 + Duration::seconds(20));
            tasks.spawn(async move { store.claim_transfer_execution(&row).await });
        }
        let mut winners = 0;
        let mut seen = std::collections::HashSet::new();
        while let Some(result) = tasks.join_next().await {
            match result?? {
                ExecutionClaim::Claimed => winners += 1,
                ExecutionClaim::Existing(row) => {
                    seen.insert(row.preview_id);
                }
            }
        }
        assert_eq!(winners, 1);
        assert!(seen.len() <= 1, "every loser found the same row: {seen:?}");
        Ok(())
    })
    .await
}
