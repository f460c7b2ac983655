//! A short-lived, in-process cache of authenticated API keys, keyed by the secret's HMAC digest.
//!
//! Every API request authenticates its key; without the cache that is a database read per request, the
//! largest single cost of the token resolve path. Entries live [`KEY_CACHE_TTL`]: a key revoked (or a client
//! whose token mode changed) through this process is dropped at once, and through another instance or the
//! CLI stops working within that time on every instance. Only successful lookups are cached, so an unknown or
//! revoked secret always reaches the database.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Caller;

/// How long a successful authentication is reused without asking the store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; the cache is emptied when it would grow past this (bounded memory under key spraying
/// is not a concern, since only keys that exist are cached, but many clients could still fill it).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl KeyCache {
    pub(crate) fn get(&self, digest: &[u8; 32], now: Instant) -> Option<Caller> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(digest) {
            Some((caller, stored)) if now.saturating_duration_since(*stored) < KEY_CACHE_TTL => Some(*caller),
            _ => None,
        }
    }

    pub(crate) fn put(&self, digest: [u8; 32], caller: Caller, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(digest, (caller, now));
    }

    /// Forgets everything (after a revocation or a client change made through this process).
    pub(crate) fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use linkvault_domain::{ClientId, Scope, TokenMode};
    use uuid::Uuid;

    use super::*;

    fn caller() -> Caller {
        Caller {
            client_id: ClientId::from_uuid(Uuid::new_v4()),
            scope: Scope::Read,
            token_mode: TokenMode::Managed,
            key_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn entries_expire_after_the_ttl_and_clear_forgets_them() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        let c = caller();
        cache.put([1; 32], c, t0);
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_millis(999)), Some(c));
        assert_eq!(cache.get(&[1; 32], t0 + KEY_CACHE_TTL), None);
        assert_eq!(cache.get(&[2; 32], t0), None);
        cache.clear();
        assert_eq!(cache.get(&[1; 32], t0), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        for i in 0..=MAX_ENTRIES {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(digest, caller(), t0);
        }
        assert!(cache.entries.lock().unwrap_or_else(PoisonError::into_inner).len() <= MAX_ENTRIES);
    }
}
