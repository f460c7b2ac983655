//! Standard Webhooks signing: `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")), where the
//! secret is `whsec_` + base64 of at least 24 random bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;
/// Standard Webhooks asks for at least 24 bytes of key material.
const MIN_SECRET_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_ followed by base64")]
    Malformed,
    #[error("a webhook secret must hold at least {MIN_SECRET_BYTES} bytes")]
    TooShort,
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A signing secret. Its text is shown to the operator once; `Debug` never prints it.
#[derive(Clone)]
pub struct WebhookSecret {
    text: SecretString,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        SystemRandom::new().fill(&mut bytes).map_err(|_| SecretError::Rng)?;
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes.as_slice()));
        Ok(Self { text: SecretString::from(text), key: bytes })
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or(SecretError::Malformed)?;
        let key = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| SecretError::Malformed)?);
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        Ok(Self { text: SecretString::from(text.trim().to_owned()), key })
    }

    /// The `whsec_…` text, for showing once and for sealed storage.
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.key)
    }
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` header value for one message.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&secret.hmac_key(), &signed_content(msg_id, timestamp, body));
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// Checks a `webhook-signature` header (space-separated `v1,<sig>` entries; any match passes) and that the
/// timestamp is within `tolerance_secs` of `now`. For receivers written in Rust and for our own tests.
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    let expected = sign(secret, msg_id, timestamp, body);
    header.split_whitespace().any(|candidate| {
        use subtle::ConstantTimeEq as _;
        candidate.len() == expected.len() && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_round_trips_and_hides_itself() -> Result<(), SecretError> {
        let secret = WebhookSecret::generate()?;
        assert!(secret.expose().starts_with("whsec_"));
        let again = WebhookSecret::parse(secret.expose())?;
        assert_eq!(sign(&secret, "msg_1", 1_700_000_000, b"{}"), sign(&again, "msg_1", 1_700_000_000, b"{}"));
        assert!(!format!("{secret:?}").contains(secret.expose()));
        Ok(())
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(WebhookSecret::parse("nope").err(), Some(SecretError::Malformed));
        assert_eq!(WebhookSecret::parse("whsec_!!!").err(), Some(SecretError::Malformed));
        assert_eq!(WebhookSecret::parse("whsec_AAAA").err(), Some(SecretError::TooShort));
    }

    /// The example from the Standard Webhooks specification's reference implementations.
    #[test]
    fn matches_the_specification_example() -> Result<(), SecretError> {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        Ok(())
    }

    #[test]
    fn verify_checks_signature_and_time() -> Result<(), SecretError> {
        let secret = WebhookSecret::generate()?;
        let header = format!("v1,bogus {}", sign(&secret, "m", 1000, b"body"));
        assert!(verify(&secret, "m", 1000, b"body", &header, 1010, 300));
        assert!(!verify(&secret, "m", 1000, b"bodY", &header, 1010, 300));
        assert!(!verify(&secret, "m", 1000, b"body", &header, 2000, 300));
        assert!(!verify(&WebhookSecret::generate()?, "m", 1000, b"body", &header, 1010, 300));
        Ok(())
    }
}
