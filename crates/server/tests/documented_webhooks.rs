//! The webhook bodies documented in `docs/api.md` are the ones the code emits: every JSON example in its
//! webhooks section is compared with an event made by the code for the same `type` — the same keys at every
//! level, the same JSON types — and every event type has an example. Docs and code cannot drift apart.

mod common;

use std::collections::BTreeMap;

use common::{TestResult, spawn_app};
use linkvault_domain::{ClientId, ConnectionEvent, IntegrationType, NaturalKey, Scope, UserId};
use linkvault_storage::testing::Backend;
use linkvault_storage::{ExecutionState, SentTransfer, TransferExecutionRecord, TransferFollow, TransferProgress};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, connection_event};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The ```json blocks of the "Webhooks" section of docs/api.md, by their `type`.
fn documented_examples() -> Result<BTreeMap<String, Value>, Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let text = std::fs::read_to_string(path)?;
    let start = text.find("### Webhooks").ok_or("docs/api.md has no Webhooks section")?;
    let rest = &text[start + 1..];
    let section = &rest[..rest.find("\n### ").unwrap_or(rest.len())];
    let mut examples = BTreeMap::new();
    for block in section.split("```json").skip(1) {
        let json = block.split("```").next().ok_or("an unterminated code block")?;
        let example: Value = serde_json::from_str(json)?;
        let kind = example["type"].as_str().ok_or("an example without a type")?.to_owned();
        examples.insert(kind, example);
    }
    Ok(examples)
}

/// The differences in shape between a documented example and an emitted body (empty when they agree).
fn shape_differences(path: &str, documented: &Value, emitted: &Value, out: &mut Vec<String>) {
    match (documented, emitted) {
        (Value::Object(d), Value::Object(e)) => {
            for key in d.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{key} is documented but not emitted"));
            }
            for key in e.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{path}.{key} is emitted but not documented"));
            }
            for (key, d) in d {
                if let Some(e) = e.get(key) {
                    shape_differences(&format!("{path}.{key}"), d, e, out);
                }
            }
        }
        (d, e) if std::mem::discriminant(d) != std::mem::discriminant(e) => {
            out.push(format!("{path} is documented as {d} but emitted as {e}"));
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_documented_webhook_examples_match_what_is_emitted() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let client: ClientId = app.client.id.parse()?;
    let key = NaturalKey {
        client_id: client,
        user_id: UserId::parse("user-42")?,
        integration: IntegrationType::parse("coinbase")?,
        scope: Scope::Write,
    };
    let stored =
        app.vault.store_credentials(&key, &IntegrationCredentials::new("a", None), &ConnectionMeta::default()).await?;
    let mut record = app.fresh.store.get_connection(stored.token_id).await?.ok_or("the connection was stored")?;
    let now = OffsetDateTime::now_utc();
    record.refresh_expires_at = Some(now + time::Duration::days(7));

    let mut emitted: BTreeMap<String, Value> = BTreeMap::new();
    for (kind, reason) in [
        (ConnectionEvent::Created, None),
        (ConnectionEvent::ReauthRequired, Some("refresh_token_expired")),
        (ConnectionEvent::ReauthRequiredSoon, None),
        (ConnectionEvent::Recovered, None),
        (ConnectionEvent::Deleted, None),
    ] {
        let event = connection_event(&record, kind, now, reason);
        emitted.insert(event.event_type.clone(), serde_json::from_str(&event.payload)?);
    }
    let sent = SentTransfer {
        user_id: "user-42".into(),
        integration: "coinbase".into(),
        symbol: "USDC".into(),
        amount: 25.0,
        amount_in_fiat: 25.0,
        network_id: Uuid::from_u128(0xe3c7fdd8_b1fc_4e51_85ae_bb276e075611),
        to_address: "0x9Ab3c5De7f1A2b4C6d8E0f1a3B5c7D9e1F2a4B6c".into(),
    };
    let row = TransferExecutionRecord {
        preview_id: Uuid::new_v4(),
        client_id: client,
        token_id: stored.token_id,
        client_transaction_id: Some("order-1234".into()),
        idempotency_key: None,
        fingerprint: String::new(),
        state: ExecutionState::Succeeded,
        attempt: 1,
        lease_until: now,
        result: None,
        transfer_id: Some("cb-tx-81f2".into()),
        created_at: now,
        updated_at: now,
        sent: Some(sent.clone()),
        follow: TransferFollow::default(),
    };
    let transfer = linkvault_server::transfer_follower::transfer_status_event(
        &row,
        &sent,
        TransferProgress::Succeeded,
        Some("0x5c2a7e9b"),
        now,
        Some("Coinbase".into()),
    );
    emitted.insert(transfer.event_type.clone(), serde_json::from_str(&transfer.payload)?);

    let documented = documented_examples()?;
    let kinds = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(kinds(&documented), kinds(&emitted), "every event type has exactly one documented example");
    let mut differences = Vec::new();
    for (kind, body) in &emitted {
        if let Some(example) = documented.get(kind) {
            shape_differences(kind, example, body, &mut differences);
        }
    }
    assert!(differences.is_empty(), "docs/api.md disagrees with the code:\n{}", differences.join("\n"));
    Ok(())
}
