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
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Bumped by every [`KeyCache::clear`]: a lookup that started before a revocation must not put its
    /// (possibly revoked) answer back afterwards.
    generation: u64,
    map: HashMap<[u8; 32], (Caller, Instant)>,
}

impl KeyCache {
    /// The cached caller, or the generation to hand to [`KeyCache::put`] after looking the key up.
    pub(crate) fn get(&self, digest: &[u8; 32], now: Instant) -> Result<Caller, u64> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.map.get(digest) {
            Some((caller, stored)) if now.saturating_duration_since(*stored) < KEY_CACHE_TTL => Ok(*caller),
            _ => Err(entries.generation),
        }
    }

    /// Caches a lookup's answer unless the cache was cleared since `generation` was read.
    pub(crate) fn put(&self, digest: [u8; 32], caller: Caller, now: Instant, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.generation != generation {
            return;
        }
        if entries.map.len() >= MAX_ENTRIES {
            entries.map.clear();
        }
        entries.map.insert(digest, (caller, now));
    }

    /// Forgets everything (after a revocation or a client change made through this process).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.generation = entries.generation.wrapping_add(1);
        entries.map.clear();
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
            api_rate_limit: None,
        }
    }

    #[test]
    fn entries_expire_after_the_ttl_and_clear_forgets_them() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        let c = caller();
        cache.put([1; 32], c, t0, 0);
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_millis(999)), Ok(c));
        assert_eq!(cache.get(&[1; 32], t0 + KEY_CACHE_TTL), Err(0));
        assert_eq!(cache.get(&[2; 32], t0), Err(0));
        cache.clear();
        assert_eq!(cache.get(&[1; 32], t0), Err(1));
    }

    #[test]
    fn a_lookup_that_raced_a_clear_is_not_cached() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        let Err(generation) = cache.get(&[1; 32], t0) else { panic!("empty cache") };
        cache.clear(); // a revocation lands while the store lookup is in flight
        cache.put([1; 32], caller(), t0, generation);
        assert_eq!(cache.get(&[1; 32], t0), Err(1));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        for i in 0..=MAX_ENTRIES {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(digest, caller(), t0, 0);
        }
        assert!(cache.entries.lock().unwrap_or_else(PoisonError::into_inner).map.len() <= MAX_ENTRIES);
    }
}
