//! Conformance tests of [`TransferStore`] (transfer previews and execution claims), run against SQLite always
//! and PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestResult, client, now, with_store};

use linkvault_domain::{ClientId, TokenId};
use linkvault_storage::{
    CompletedTransfer, ExecutionClaim, ExecutionState, OutboxEvent, SentTransfer, TransferCheck,
    TransferExecutionRecord, TransferFilter, TransferOrder, TransferPreviewRecord, TransferProgress,
    WebhookEndpointRecord, WebhookFormat,
};
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
        sent: None,
        follow: linkvault_storage::TransferFollow::default(),
    }
}

/// A pending send with no hash yet.
fn sent<'a>(result: &'a str, transfer_id: &'a str) -> CompletedTransfer<'a> {
    CompletedTransfer { result, transfer_id, status: TransferProgress::Pending, hash: None }
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
        assert!(!store.complete_transfer_execution(id, 1, &sent("{}", "t-1"), later).await?);
        assert!(store.complete_transfer_execution(id, 2, &sent(r#"{"status":"succeeded"}"#, "t-1"), later).await?);
        assert!(!store.complete_transfer_execution(id, 2, &sent("{}", "t-2"), later).await?, "completed once");
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

/// A claimed execution of `user`'s `amount_in_fiat` worth at `integration`, created at `at`.
fn made(
    client_id: ClientId,
    user: &str,
    integration: &str,
    amount_in_fiat: f64,
    at: OffsetDateTime,
) -> TransferExecutionRecord {
    let mut row = execution(client_id, Uuid::new_v4(), None, None, at + Duration::seconds(20));
    row.created_at = at;
    row.updated_at = at;
    row.sent = Some(SentTransfer {
        user_id: user.into(),
        integration: integration.into(),
        symbol: "USDC".into(),
        amount: amount_in_fiat,
        amount_in_fiat,
        network_id: Uuid::from_u128(0xe3c7fdd8_b1fc_4e51_85ae_bb276e075611),
        to_address: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
    });
    row
}

fn ids(page: &linkvault_storage::TransferPage) -> Vec<Uuid> {
    page.items.iter().map(|r| r.preview_id).collect()
}

#[tokio::test]
async fn sent_transfers_are_listed_per_client_filtered_and_paginated() -> TestResult {
    with_store("sent_transfers_are_listed_per_client_filtered_and_paginated", |store| async move {
        let (a, b) = (client(&store).await?, client(&store).await?);
        let t0 = now();
        let mut rows = Vec::new();
        for (i, (user, integration, status)) in [
            ("alice", "coinbase", TransferProgress::Pending),
            ("alice", "uphold", TransferProgress::Succeeded),
            ("bob", "coinbase", TransferProgress::Failed),
            ("alice", "coinbase", TransferProgress::Succeeded),
        ]
        .into_iter()
        .enumerate()
        {
            let at = t0 + Duration::seconds(i as i64 * 10);
            let mut row = made(a, user, integration, 10.0 * (i as f64 + 1.0), at);
            row.client_transaction_id = Some(format!("order-{i}"));
            store.claim_transfer_execution(&row).await?;
            let hash = format!("0xhash{i}");
            let hash = (status == TransferProgress::Succeeded).then_some(hash.as_str());
            let done = CompletedTransfer { result: "{}", transfer_id: &format!("t-{i}"), status, hash };
            assert!(store.complete_transfer_execution(row.preview_id, 1, &done, at).await?);
            rows.push(row.preview_id);
        }
        // Claimed but never sent: not a transfer yet. Another client's: never listed for this one.
        store.claim_transfer_execution(&made(a, "alice", "coinbase", 1.0, t0)).await?;
        let theirs = made(b, "alice", "coinbase", 1.0, t0);
        store.claim_transfer_execution(&theirs).await?;
        store.complete_transfer_execution(theirs.preview_id, 1, &sent("{}", "t-b"), t0).await?;

        let list = |f: TransferFilter| {
            let store = store.clone();
            async move { store.list_transfer_executions(a, &TransferFilter { count: 10, ..f }).await }
        };
        let all = list(TransferFilter::default()).await?;
        assert_eq!((all.total, ids(&all)), (4, rows.clone()), "oldest first by default");
        let first = &all.items[0];
        assert_eq!(first.sent.as_ref().map(|s| (s.user_id.as_str(), s.amount_in_fiat)), Some(("alice", 10.0)));
        assert_eq!(first.follow.status, Some(TransferProgress::Pending));
        let desc = list(TransferFilter { descending: true, ..TransferFilter::default() }).await?;
        assert_eq!(ids(&desc), rows.iter().rev().copied().collect::<Vec<_>>());
        let by_amount =
            list(TransferFilter { order: TransferOrder::AmountInFiat, descending: true, ..TransferFilter::default() })
                .await?;
        assert_eq!(ids(&by_amount)[0], rows[3]);

        let f = |f: TransferFilter| f;
        let cases: Vec<(TransferFilter, Vec<Uuid>)> = vec![
            (f(TransferFilter { user_id: Some("bob".into()), ..Default::default() }), vec![rows[2]]),
            (f(TransferFilter { integrations: vec!["uphold".into()], ..Default::default() }), vec![rows[1]]),
            (
                f(TransferFilter {
                    statuses: vec![TransferProgress::Succeeded, TransferProgress::Failed],
                    ..Default::default()
                }),
                vec![rows[1], rows[2], rows[3]],
            ),
            (f(TransferFilter { id: Some(rows[2]), ..Default::default() }), vec![rows[2]]),
            (f(TransferFilter { client_transaction_id: Some("order-3".into()), ..Default::default() }), vec![rows[3]]),
            (f(TransferFilter { hash: Some("0xhash1".into()), ..Default::default() }), vec![rows[1]]),
            (
                f(TransferFilter {
                    from: Some(t0 + Duration::seconds(10)),
                    to: Some(t0 + Duration::seconds(20)),
                    ..Default::default()
                }),
                vec![rows[1], rows[2]],
            ),
            (
                f(TransferFilter {
                    min_amount_in_fiat: Some(20.0),
                    max_amount_in_fiat: Some(30.0),
                    ..Default::default()
                }),
                vec![rows[1], rows[2]],
            ),
            (f(TransferFilter { id: Some(theirs.preview_id), ..Default::default() }), vec![]),
        ];
        for (filter, expected) in cases {
            let page = list(filter.clone()).await?;
            assert_eq!((ids(&page), page.total), (expected.clone(), expected.len() as u64), "{filter:?}");
        }
        let page =
            store.list_transfer_executions(a, &TransferFilter { count: 2, offset: 1, ..Default::default() }).await?;
        assert_eq!((ids(&page), page.total), (vec![rows[1], rows[2]], 4), "a page, with the total");
        let beyond =
            store.list_transfer_executions(a, &TransferFilter { count: 2, offset: 10, ..Default::default() }).await?;
        assert_eq!((beyond.items.len(), beyond.total), (0, 4));
        let other = store.list_transfer_executions(b, &TransferFilter { count: 10, ..Default::default() }).await?;
        assert_eq!(ids(&other), vec![theirs.preview_id], "each client sees its own");
        Ok(())
    })
    .await
}

fn announcement(client_id: ClientId, at: OffsetDateTime) -> OutboxEvent {
    OutboxEvent {
        id: Uuid::new_v4(),
        client_id,
        event_type: "transfer.statusChanged".into(),
        payload: r#"{"type":"transfer.statusChanged"}"#.into(),
        created_at: at,
    }
}

#[tokio::test]
async fn follower_checks_are_leased_fenced_and_announced_once() -> TestResult {
    with_store("follower_checks_are_leased_fenced_and_announced_once", |store| async move {
        let a = client(&store).await?;
        let t0 = now();
        let row = made(a, "alice", "coinbase", 5.0, t0);
        let id = row.preview_id;
        store.claim_transfer_execution(&row).await?;
        assert!(store.claim_transfer_checks(t0, t0 + Duration::seconds(60), 10).await?.is_empty(), "not sent yet");
        store.complete_transfer_execution(id, 1, &sent("{}", "t-1"), t0).await?;

        // Due at once; leased to the first claimer, so a second instance gets nothing meanwhile.
        let lease = t0 + Duration::seconds(60);
        let claimed = store.claim_transfer_checks(t0, lease, 10).await?;
        assert_eq!(claimed.iter().map(|r| r.preview_id).collect::<Vec<_>>(), vec![id]);
        assert_eq!((claimed[0].follow.checks, claimed[0].follow.announced_status), (0, None));
        assert!(store.claim_transfer_checks(t0 + Duration::seconds(1), lease, 10).await?.is_empty(), "leased");
        // A stalled claimer's lease runs out: another instance takes the check over.
        let late = t0 + Duration::seconds(61);
        let retaken = store.claim_transfer_checks(late, late + Duration::seconds(60), 10).await?;
        assert_eq!(retaken.len(), 1);

        let before = store.count_pending_outbox().await?;
        let pending = TransferCheck {
            preview_id: id,
            checks: 0,
            status: TransferProgress::Pending,
            hash: None,
            next_check_at: Some(late + Duration::seconds(5)),
            gave_up_at: None,
            event: Some(announcement(a, late)),
            at: late,
        };
        assert!(store.record_transfer_check(&pending).await?);
        // The stalled one writes back at the same count: refused, and its event is not written.
        assert!(
            !store
                .record_transfer_check(&TransferCheck { event: Some(announcement(a, late)), ..pending.clone() })
                .await?
        );
        assert_eq!(store.count_pending_outbox().await?, before + 1, "announced once");
        let now_row = store.find_transfer_execution(a, id, None, None).await?.expect("row");
        assert_eq!(
            (now_row.follow.checks, now_row.follow.announced_status, now_row.follow.next_check_at),
            (1, Some(TransferProgress::Pending), Some(late + Duration::seconds(5)))
        );
        assert!(
            store
                .claim_transfer_checks(late + Duration::seconds(4), late + Duration::seconds(90), 10)
                .await?
                .is_empty()
        );

        // Final with its hash: no further checks.
        let t2 = late + Duration::seconds(5);
        let claimed = store.claim_transfer_checks(t2, t2 + Duration::seconds(60), 10).await?;
        assert_eq!(claimed.len(), 1);
        let done = TransferCheck {
            preview_id: id,
            checks: 1,
            status: TransferProgress::Succeeded,
            hash: Some("0xabc".into()),
            next_check_at: None,
            gave_up_at: None,
            event: Some(announcement(a, t2)),
            at: t2,
        };
        assert!(store.record_transfer_check(&done).await?);
        let final_row = store.find_transfer_execution(a, id, None, None).await?.expect("row");
        assert_eq!(
            (final_row.follow.status, final_row.follow.hash.as_deref(), final_row.follow.announced_status),
            (Some(TransferProgress::Succeeded), Some("0xabc"), Some(TransferProgress::Succeeded))
        );
        assert!(store.claim_transfer_checks(t2 + Duration::days(1), t2 + Duration::days(2), 10).await?.is_empty());

        // Giving up keeps the status and stops the checks.
        let other = made(a, "alice", "coinbase", 5.0, t0);
        store.claim_transfer_execution(&other).await?;
        store.complete_transfer_execution(other.preview_id, 1, &sent("{}", "t-2"), t0).await?;
        store.claim_transfer_checks(t2, t2 + Duration::seconds(60), 10).await?;
        let gave_up = TransferCheck {
            preview_id: other.preview_id,
            checks: 0,
            status: TransferProgress::Pending,
            hash: None,
            next_check_at: None,
            gave_up_at: Some(t2),
            event: None,
            at: t2,
        };
        assert!(store.record_transfer_check(&gave_up).await?);
        let row = store.find_transfer_execution(a, other.preview_id, None, None).await?.expect("row");
        assert_eq!((row.follow.gave_up_at, row.follow.announced_status), (Some(t2), None));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn webhook_endpoints_keep_their_format() -> TestResult {
    with_store("webhook_endpoints_keep_their_format", |store| async move {
        let a = client(&store).await?;
        let mut record = WebhookEndpointRecord {
            client_id: a,
            url: "https://app.example.com/hooks".into(),
            secret_sealed: vec![1, 2, 3],
            format: WebhookFormat::Mesh,
            created_at: now(),
            updated_at: now(),
        };
        store.set_webhook_endpoint(&record).await?;
        assert_eq!(store.get_webhook_endpoint(a).await?.map(|r| r.format), Some(WebhookFormat::Mesh));
        record.format = WebhookFormat::Standard;
        store.set_webhook_endpoint(&record).await?;
        assert_eq!(store.get_webhook_endpoint(a).await?.map(|r| r.format), Some(WebhookFormat::Standard));
        Ok(())
    })
    .await
}
