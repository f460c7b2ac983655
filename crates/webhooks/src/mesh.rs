//! Mesh's transfer webhooks, for clients that chose `--format mesh`: the PascalCase body Mesh documents
//! (docs.meshconnect.com, "Webhooks"; `Id` per attempt, `EventId` stable across retries, `SentTimestamp` in
//! seconds, `Timestamp` in milliseconds) built from our transfer event, and its `X-Mesh-Signature-256` header:
//! base64(HMAC-SHA256(key = the UTF-8 bytes of the secret text the operator was shown, message = the raw body)).
//!
//! Mesh's webhooks are about transfers only, so a Mesh-format endpoint receives transfer events and nothing
//! else; the worker records other events as not delivered, with that reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde_json::{Value, json};
use uuid::Uuid;

/// The header Mesh signs its webhooks with.
pub const SIGNATURE_HEADER: &str = "X-Mesh-Signature-256";
/// Outbox event types that exist in Mesh's format.
pub const TRANSFER_EVENT_PREFIX: &str = "transfer.";

/// Whether an event of this type is delivered to a Mesh-format endpoint.
pub fn carries(event_type: &str) -> bool {
    event_type.starts_with(TRANSFER_EVENT_PREFIX)
}

/// `TransferStatus` as Mesh's example writes it (`Pending`, `Succeeded`, `Failed`).
fn pascal_status(status: &str) -> String {
    let mut chars = status.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The Mesh body of one attempt at delivering `payload` (our `transfer.*` event JSON). `attempt_id` is new for
/// each attempt; `event_id` (the outbox event's id) is the same on every retry. `None` if the payload is not a
/// transfer event.
pub fn body(payload: &str, event_id: Uuid, attempt_id: Uuid, sent_at_secs: i64) -> Option<Vec<u8>> {
    let event: Value = serde_json::from_str(payload).ok()?;
    let data = event.get("data")?;
    let field = |name: &str| data.get(name).cloned().unwrap_or(Value::Null);
    let status = data.get("status")?.as_str()?;
    let mesh = json!({
        "Id": attempt_id,
        "EventId": event_id,
        "SentTimestamp": sent_at_secs,
        "UserId": field("userId"),
        "TransactionId": field("transactionId"),
        "TransferId": field("id"),
        "TransferStatus": pascal_status(status),
        "TxHash": field("hash"),
        "Chain": field("networkName"),
        "Token": field("symbol"),
        "DestinationAddress": field("toAddress"),
        "SourceAccountProvider": field("integrationName"),
        "SourceAmount": field("sourceAmount"),
        "DestinationAmount": field("amount"),
        "Timestamp": field("timestampMs"),
    });
    serde_json::to_vec(&mesh).ok()
}

/// The `X-Mesh-Signature-256` value for `body`.
pub fn sign(secret_text: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_text.as_bytes());
    STANDARD.encode(hmac::sign(&key, body).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transfer_events_exist_in_mesh_format() {
        assert!(carries("transfer.statusChanged"));
        assert!(!carries("connection.created"));
        assert_eq!(body(r#"{"type":"connection.created","data":{"tokenId":"t"}}"#, Uuid::nil(), Uuid::nil(), 1), None);
    }

    #[test]
    fn the_body_uses_mesh_names_and_the_signature_covers_the_raw_bytes() {
        let payload = json!({"type": "transfer.statusChanged", "data": {"id": "7f0c", "userId": "alice",
            "status": "pending", "symbol": "USDC", "amount": 5.0, "sourceAmount": 5.5, "timestampMs": 1_715_175_519_038_i64}});
        let (event, attempt) = (Uuid::new_v4(), Uuid::new_v4());
        let bytes = body(&payload.to_string(), event, attempt, 1_720_532_648).unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(parsed["TransferStatus"], "Pending");
        assert_eq!(parsed["EventId"], event.to_string());
        assert_eq!(parsed["Id"], attempt.to_string());
        assert_eq!(parsed["SentTimestamp"], 1_720_532_648);
        assert_eq!(parsed["Timestamp"], 1_715_175_519_038_i64);
        assert_eq!((parsed["SourceAmount"].as_f64(), parsed["DestinationAmount"].as_f64()), (Some(5.5), Some(5.0)));
        let signature = sign("whsec_abc", &bytes);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"whsec_abc");
        let tag = STANDARD.decode(signature).unwrap_or_default();
        assert!(hmac::verify(&key, &bytes, &tag).is_ok());
    }
}
