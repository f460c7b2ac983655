//! The webhook events the vault writes to the outbox (`connection.*`), and the one rule for what a client in
//! client-managed token mode may see of any event: never a tokenId (finding 14.5b). Kept apart from the
//! refresh write-back and the connection services, which both emit events, so neither imports the other.
//!
//! Events are stored with the tokenId (the outbox orders deliveries per connection by it); the client-mode
//! rewrite happens when an event is delivered, so a client that changes its mode gets the right body from then on.

use linkvault_domain::{ConnectionEvent, ConnectionStatus, TokenId, TokenMode};
use linkvault_storage::{ConnectionRecord, OutboxEvent};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Names `meshAccountId` for client-mode hand-outs: stable per connection, but not the tokenId itself.
const MESH_ACCOUNT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_47a0_8a3b_4f0e_9d6c_2b7e_1f40_a9d3);

/// The handle a client-mode client knows a connection by (Link's `meshAccountId`): derived from the tokenId,
/// stable, and useless as an `authToken`.
pub fn mesh_account_id(token_id: TokenId) -> Uuid {
    Uuid::new_v5(&MESH_ACCOUNT_NAMESPACE, token_id.as_uuid().as_bytes())
}

/// A webhook event about `record`, for the outbox. The payload names the connection and its new state;
/// it never carries a token. `reason` is a short machine-readable cause (`invalid_grant`, `session_expired`…).
pub fn connection_event(
    record: &ConnectionRecord,
    kind: ConnectionEvent,
    at: OffsetDateTime,
    reason: Option<&str>,
) -> OutboxEvent {
    let id = Uuid::new_v4();
    let status = match kind {
        ConnectionEvent::Created | ConnectionEvent::Recovered | ConnectionEvent::ReauthRequiredSoon => {
            ConnectionStatus::Active.as_str()
        }
        ConnectionEvent::ReauthRequired => ConnectionStatus::ReauthRequired.as_str(),
        ConnectionEvent::Deleted => "deleted",
    };
    let mut payload = serde_json::json!({
        "id": id,
        "type": kind.as_str(),
        "occurredAt": at.format(&Rfc3339).unwrap_or_default(),
        "data": {
            "tokenId": record.token_id.to_string(),
            "userId": record.user_id,
            "integration": record.integration,
            "scope": record.scope.as_str(),
            "status": status,
        },
    });
    if let (Some(reason), Some(data)) = (reason, payload.get_mut("data").and_then(|d| d.as_object_mut())) {
        data.insert("reason".to_owned(), Value::String(reason.to_owned()));
    }
    if kind == ConnectionEvent::ReauthRequiredSoon
        && let (Some(end), Some(data)) =
            (record.refresh_expires_at, payload.get_mut("data").and_then(|d| d.as_object_mut()))
    {
        data.insert("reauthRequiredAt".to_owned(), Value::String(end.format(&Rfc3339).unwrap_or_default()));
    }
    OutboxEvent {
        id,
        client_id: record.client_id,
        event_type: kind.as_str().to_owned(),
        payload: payload.to_string(),
        created_at: at,
    }
}

/// The body a client in `mode` receives for a stored event `payload`. Managed clients get it as stored;
/// client-mode clients get `data.meshAccountId` (the handle Link gave them) in place of `data.tokenId`, so no
/// event hands them an id that names the connection. `None` when the payload is not an event object (it is
/// then delivered as stored: it has no `data.tokenId` to hide).
pub fn payload_for(mode: TokenMode, payload: &str) -> Option<String> {
    if mode == TokenMode::Managed {
        return None;
    }
    let mut event: Value = serde_json::from_str(payload).ok()?;
    let data = event.get_mut("data")?.as_object_mut()?;
    let token_id = data.remove("tokenId")?;
    let handle = token_id.as_str().and_then(|t| t.parse::<TokenId>().ok()).map(mesh_account_id);
    data.insert("meshAccountId".to_owned(), handle.map_or(Value::Null, |h| Value::String(h.to_string())));
    Some(event.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_mode_bodies_carry_the_mesh_account_id_and_no_token_id() {
        let token_id = TokenId::new_random();
        let stored = serde_json::json!({"id": "e", "type": "connection.reauthRequired",
            "data": {"tokenId": token_id.to_string(), "userId": "alice", "status": "reauthRequired"}})
        .to_string();
        assert_eq!(payload_for(TokenMode::Managed, &stored), None, "managed clients get the event as stored");
        let body = payload_for(TokenMode::Client, &stored).unwrap();
        assert!(!body.contains(&token_id.to_string()), "{body}");
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["data"]["meshAccountId"], mesh_account_id(token_id).to_string());
        assert_eq!(parsed["data"]["userId"], "alice");
        assert_eq!(payload_for(TokenMode::Client, r#"{"data":{"id":"x"}}"#), None, "nothing to hide");
    }
}
