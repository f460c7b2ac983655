//! The audit log's chain: `mac_n = HMAC-SHA256(chain key, mac_{n-1} ‖ seq ‖ record)`, and a tag on the chain's
//! head so that cutting records off the end is seen too. The chain key is one of the keyring's keys (carried
//! over by every master-key rotation, like the digest keys), so whoever holds the database alone can neither
//! extend nor rebuild the chain.

use std::fmt;

use ring::hmac;
use subtle::ConstantTimeEq;

/// The previous MAC of the first record.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// Computes and checks the audit chain. Records arrive already canonically encoded (the vault owns that
/// encoding); this type only keys and links them.
pub struct AuditChain {
    link: hmac::Key,
    head: hmac::Key,
}

impl fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditChain")
    }
}

impl AuditChain {
    /// Two keys from the keyring's one audit key: record links and head tags can never stand in for each other.
    pub(crate) fn from_key(derived: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, derived);
        let sub = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Self { link: sub(b"record"), head: sub(b"head") }
    }

    /// The MAC of record `seq` whose predecessor's MAC is `prev` ([`AUDIT_GENESIS`] for the first).
    pub fn link(&self, prev: &[u8], seq: u64, record: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.link);
        ctx.update(&u64::try_from(prev.len()).unwrap_or(u64::MAX).to_be_bytes());
        ctx.update(prev);
        ctx.update(&seq.to_be_bytes());
        ctx.update(record);
        to_array(ctx.sign())
    }

    /// The tag of a head at `seq` whose last MAC is `mac`.
    pub fn head_tag(&self, seq: u64, mac: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.head);
        ctx.update(&seq.to_be_bytes());
        ctx.update(mac);
        to_array(ctx.sign())
    }

    /// Constant-time comparison of a stored MAC or tag with a recomputed one.
    pub fn matches(stored: &[u8], computed: &[u8; 32]) -> bool {
        stored.ct_eq(computed.as_slice()).into()
    }
}

fn to_array(tag: hmac::Tag) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_depend_on_key_predecessor_position_and_record() {
        let a = AuditChain::from_key(&[1; 32]);
        let b = AuditChain::from_key(&[2; 32]);
        let first = a.link(&AUDIT_GENESIS, 1, b"record");
        assert!(AuditChain::matches(&first, &a.link(&AUDIT_GENESIS, 1, b"record")));
        assert_ne!(first, b.link(&AUDIT_GENESIS, 1, b"record"), "another key, another chain");
        assert_ne!(first, a.link(&AUDIT_GENESIS, 2, b"record"), "the position is bound");
        assert_ne!(first, a.link(&[1; 32], 1, b"record"), "the predecessor is bound");
        assert_ne!(first, a.link(&AUDIT_GENESIS, 1, b"recorD"), "the record is bound");
        assert_ne!(a.head_tag(1, &first), a.link(&first, 1, b""), "head tags are not links");
        assert!(!AuditChain::matches(&first[..31], &first));
    }
}
