//! The simulated OAuth upstream and network: a provider that rotates (or not) refresh tokens with an optional
//! reuse grace and records every presentation, behind a network that loses requests before or after the
//! provider processed them, loses answers, answers slower than the timeout, or refuses connections.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use linkvault_integrations::Integration;
use linkvault_integrations::oauth::{OAuthError, TokenSet};
use linkvault_refresh::GrantSender;
use secrecy::{ExposeSecret, SecretString};

use super::SimClock;
use super::rng::SimRng;

/// One grant at the provider (one connection).
#[derive(Debug, Default)]
pub struct GrantState {
    pub current: String,
    pub generation: u64,
    pub dead: bool,
    pub rotates: bool,
    pub grace: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Provider {
    pub grants: BTreeMap<u64, GrantState>,
    /// Refresh token → (grant, first presentation at, presentations).
    pub presented: BTreeMap<String, (u64, tokio::time::Instant, u64)>,
    /// Refresh tokens issued (or confirmed) by a successful processing.
    pub processed: u64,
    pub violations: Vec<String>,
    /// Grants with an injected fault whose outcome the engine cannot know (the excuse for reauthRequired).
    pub excused: BTreeMap<u64, &'static str>,
}

fn grant_of(token: &str) -> Option<u64> {
    token.strip_prefix("rt-")?.split('-').next()?.parse().ok()
}

impl Provider {
    fn process(&mut self, token: &str) -> Result<(String, String), OAuthError> {
        let now = tokio::time::Instant::now();
        let invalid = || OAuthError::InvalidGrant { description: None };
        let Some(id) = grant_of(token) else { return Err(invalid()) };
        let Some(g) = self.grants.get(&id) else { return Err(invalid()) };
        let rotates = g.rotates;
        let grace = g.grace;
        let entry = self.presented.entry(token.to_owned()).or_insert((id, now, 0));
        entry.2 += 1;
        let first = entry.1;
        let count = entry.2;
        let g = self.grants.get_mut(&id).ok_or_else(invalid)?;
        if g.dead {
            return Err(invalid());
        }
        if rotates && count > 1 && grace.is_none_or(|grace| now - first > grace) {
            self.violations.push(format!(
                "refresh token {token} presented {count} times, {:?} after the first (grace {grace:?})",
                now - first
            ));
            g.dead = true;
            return Err(invalid());
        }
        if token == g.current {
            if rotates {
                g.generation += 1;
                g.current = format!("rt-{id}-{}", g.generation);
            }
        } else if !(rotates && count > 1) {
            // A token this grant never had at this point (an older generation presented for the first time).
            self.violations.push(format!("unknown refresh token {token} presented"));
            g.dead = true;
            return Err(invalid());
        }
        self.processed += 1;
        Ok((g.current.clone(), format!("at-{id}-{}", g.generation)))
    }
}

/// What the network does to one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    /// Connection refused: nothing was written.
    Refused,
    /// HTTP 503 before processing.
    Unavailable,
    /// Written, then lost on the way: the provider never sees it; the client times out.
    LostBefore,
    /// Processed, then the answer is lost; the client times out.
    AnswerLost,
    /// Processed, answered after the timeout.
    Slow,
}

#[derive(Debug)]
pub struct SimUpstream {
    pub provider: Arc<Mutex<Provider>>,
    pub rng: Arc<Mutex<SimRng>>,
    pub clock: Arc<SimClock>,
    pub timeout: Duration,
    /// Per-mille of grants given each fault.
    pub fault_per_mille: u64,
    pub access_ttl_secs: u64,
}

impl SimUpstream {
    fn provider(&self) -> std::sync::MutexGuard<'_, Provider> {
        self.provider.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl GrantSender for SimUpstream {
    fn worst_case(&self) -> Duration {
        self.timeout + Duration::from_millis(250)
    }

    async fn refresh(&self, _integration: &Integration, refresh_token: &SecretString) -> Result<TokenSet, OAuthError> {
        let token = refresh_token.expose_secret().to_owned();
        let (fate, there, back) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let roll = rng.below(1000);
            let f = self.fault_per_mille;
            let fate = if roll < f {
                Fate::Refused
            } else if roll < 2 * f {
                Fate::Unavailable
            } else if roll < 3 * f {
                Fate::LostBefore
            } else if roll < 4 * f {
                Fate::AnswerLost
            } else if roll < 5 * f {
                Fate::Slow
            } else {
                Fate::Ok
            };
            let back = if fate == Fate::Slow {
                self.timeout + Duration::from_millis(rng.below(3000))
            } else {
                Duration::from_millis(rng.below(300))
            };
            (fate, Duration::from_millis(rng.below(300)), back)
        };
        if matches!(fate, Fate::LostBefore | Fate::AnswerLost | Fate::Slow)
            && let Some(id) = grant_of(&token)
        {
            self.provider().excused.entry(id).or_insert("grant without an answer");
        }
        let requested_at = linkvault_domain::Clock::now(&*self.clock);
        let unknown = || OAuthError::OutcomeUnknown { reason: "token endpoint: no complete answer".to_owned() };
        match fate {
            Fate::Refused => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err(OAuthError::Transient { retry_after: None, reason: "connection failed".to_owned() });
            }
            Fate::Unavailable => {
                tokio::time::sleep(there).await;
                return Err(OAuthError::Transient { retry_after: None, reason: "HTTP 503".to_owned() });
            }
            Fate::LostBefore => {
                tokio::time::sleep(self.timeout).await;
                return Err(unknown());
            }
            Fate::Ok | Fate::AnswerLost | Fate::Slow => {}
        }
        // The provider's side runs on its own: neither a client timeout nor a crash stops it processing.
        let provider = Arc::clone(&self.provider);
        let answer = tokio::spawn(async move {
            tokio::time::sleep(there).await;
            let result = provider.lock().unwrap_or_else(PoisonError::into_inner).process(&token);
            tokio::time::sleep(back).await;
            result
        });
        if fate == Fate::AnswerLost {
            tokio::time::sleep(self.timeout).await;
            return Err(unknown());
        }
        let Ok(Ok(result)) = tokio::time::timeout(self.timeout, answer).await else { return Err(unknown()) };
        let (refresh, access) = result?;
        let rotated = refresh != refresh_token.expose_secret();
        Ok(TokenSet {
            access_token: SecretString::from(access),
            refresh_token: Some(SecretString::from(refresh)),
            refresh_token_rotated: rotated,
            expires_at: requested_at + time::Duration::seconds(self.access_ttl_secs as i64),
            expires_in_defaulted: false,
            refresh_token_expires_at: None,
            scope: None,
            token_type: Some("Bearer".to_owned()),
            requested_at,
        })
    }
}
