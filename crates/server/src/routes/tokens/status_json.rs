//! The answer of `GET /api/v1/tokens/{tokenId}` (the resolve path), written as JSON by hand: the same bytes
//! as [`ApiOk`](crate::api_result::ApiOk) of a [`StatusResponse`] (checked by the tests below), with the fixed
//! parts copied in whole.
//!
//! Why (`bench/instructions.sh`, callgrind, 2,000 resolves on one keep-alive connection): through serde the
//! answer cost ≈ 9,600 instructions a request of ≈ 72,000. Most of it was serde_json escaping every key
//! byte by byte (`format_escaped_str_contents`, ≈ 4,250 a request) and its per-field state machine, for keys
//! and timestamps that never hold a byte to escape. Here the keys, the envelope, the tokenId, the enum names and
//! the timestamps are copied as they are and only the values that come from outside (user id, integration,
//! account id and name) go through serde_json's string escaper. Measured before/after in docs/benchmarks.md.

use axum::response::{IntoResponse, Response};

use super::StatusResponse;
use crate::api_result::{ApiError, ok_json};
use crate::timefmt::Rfc3339Time;

/// The whole envelope up to the content object, as `OkEnvelope` serializes it.
const ENVELOPE_HEAD: &[u8] =
    br#"{"status":"ok","message":"","displayMessage":null,"errorType":"","errorData":null,"content":"#;

/// A status answer for the resolve route.
pub(crate) struct StatusAnswer(pub(crate) StatusResponse);

impl IntoResponse for StatusAnswer {
    fn into_response(self) -> Response {
        match self.0.envelope_json() {
            Ok(bytes) => ok_json(bytes),
            Err(e) => ApiError::internal(&e).into_response(),
        }
    }
}

/// A string from outside, quoted and escaped exactly as serde_json does it.
fn text(out: &mut Vec<u8>, value: &str) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)
}

/// `null`, or `value` written by `write`.
fn or_null<T>(
    out: &mut Vec<u8>,
    value: Option<T>,
    write: impl FnOnce(&mut Vec<u8>, T) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    match value {
        Some(v) => write(out, v),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// An RFC 3339 instant: digits, `-`, `:`, `T`, `.`, `+` and `Z` only, so nothing to escape.
fn instant(out: &mut Vec<u8>, value: Rfc3339Time) -> serde_json::Result<()> {
    out.push(b'"');
    value.write_into(out).map_err(<serde_json::Error as serde::ser::Error>::custom)?;
    out.push(b'"');
    Ok(())
}

impl StatusResponse {
    /// The success envelope with this status as its content.
    fn envelope_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(ENVELOPE_HEAD);
        out.push(b'{');
        if let Some(token_id) = self.token_id {
            out.extend_from_slice(br#""tokenId":""#);
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            out.extend_from_slice(token_id.as_uuid().hyphenated().encode_lower(&mut buf).as_bytes());
            out.extend_from_slice(br#"","#);
        }
        out.extend_from_slice(br#""userId":"#);
        text(&mut out, &self.user_id)?;
        out.extend_from_slice(br#","brokerType":"#);
        text(&mut out, &self.broker_type)?;
        // Scope and state names are fixed identifiers (`read`, `reauthRequired`, …).
        out.extend_from_slice(br#","scope":""#);
        out.extend_from_slice(self.scope.as_str().as_bytes());
        out.extend_from_slice(br#"","status":""#);
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.extend_from_slice(br#"","accountId":"#);
        or_null(&mut out, self.account_id.as_deref(), text)?;
        out.extend_from_slice(br#","accountName":"#);
        or_null(&mut out, self.account_name.as_deref(), text)?;
        out.extend_from_slice(br#","accessTokenExpiresAt":"#);
        or_null(&mut out, self.access_token_expires_at, instant)?;
        out.extend_from_slice(br#","refreshTokenExpiresAt":"#);
        or_null(&mut out, self.refresh_token_expires_at, instant)?;
        out.extend_from_slice(br#","lastRefreshedAt":"#);
        or_null(&mut out, self.last_refreshed_at, instant)?;
        out.extend_from_slice(br#","refreshCount":"#);
        serde_json::to_writer(&mut out, &self.refresh_count)?;
        out.extend_from_slice(br#","createdAt":"#);
        instant(&mut out, self.created_at)?;
        out.extend_from_slice(br#","updatedAt":"#);
        instant(&mut out, self.updated_at)?;
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use linkvault_domain::TokenId;
    use time::OffsetDateTime;

    use super::*;
    use crate::api_result::ok_body;
    use crate::routes::tokens::{ConnectionState, ScopeName};

    #[test]
    fn copied_names_are_the_ones_serde_writes() -> Result<(), serde_json::Error> {
        for scope in [ScopeName::Read, ScopeName::Write] {
            assert_eq!(serde_json::to_string(&scope)?, format!("\"{}\"", scope.as_str()));
        }
        for state in [ConnectionState::Active, ConnectionState::ReauthRequired] {
            assert_eq!(serde_json::to_string(&state)?, format!("\"{}\"", state.as_str()));
        }
        Ok(())
    }

    fn at(secs: i64, nanos: i64) -> Rfc3339Time {
        let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Rfc3339Time(t + time::Duration::nanoseconds(nanos))
    }

    fn response(user: &str, account: Option<&str>, times: bool, token: bool) -> StatusResponse {
        StatusResponse {
            token_id: token.then(TokenId::new_random),
            user_id: user.to_owned(),
            broker_type: "binanceInternationalDirect".to_owned(),
            scope: ScopeName::Write,
            status: ConnectionState::ReauthRequired,
            account_id: account.map(str::to_owned),
            account_name: account.map(|a| format!("{a} \u{e9}\u{1F600}")),
            access_token_expires_at: times.then(|| at(1_800_000_000, 500_000_000)),
            refresh_token_expires_at: times.then(|| at(1_900_000_000, 0)),
            last_refreshed_at: times.then(|| Rfc3339Time(at(1_700_000_000, 1).0.to_offset(time::macros::offset!(+2)))),
            refresh_count: if times { u64::MAX } else { 0 },
            created_at: at(0, 0),
            updated_at: at(253_402_300_799, 999_999_999),
        }
    }

    #[test]
    fn the_same_bytes_as_the_serde_envelope() {
        let users = ["bench", "quote\" back\\slash /slash", "tab\t nl\n nul\u{0} del\u{7f} \u{2028}", ""];
        for user in users {
            for account in [None, Some("acc-1"), Some("\"\u{1}\"")] {
                for times in [false, true] {
                    for token in [false, true] {
                        let r = response(user, account, times, token);
                        let ours = r.envelope_json().map_err(|e| e.to_string());
                        let serde = ok_body(Some(&r)).map_err(|e| e.to_string());
                        assert_eq!(
                            ours.as_deref().map(String::from_utf8_lossy),
                            serde.as_deref().map(String::from_utf8_lossy),
                            "user {user:?}, account {account:?}, times {times}, token {token}"
                        );
                    }
                }
            }
        }
    }
}
