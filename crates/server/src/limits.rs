//! Request rate limits: per API client on `/api/v1`, per client address on `/link/*` (and, tighter, on
//! `POST /link/api/session`), per Link session on its API, and per Link session on sign-in attempts.
//!
//! A client may have its own API limit (`linkvault client limits`, stored with the client and read with its
//! API key): clients sharing a figure share one keyed limiter for it, created on first use, so the number
//! of limiters is bounded by the number of distinct figures, not by requests.
//!
//! Each limit is a `governor` GCRA keyed limiter ("N per minute", bursts up to N) on the vault's clock, so
//! tests move time by hand and several limits cost one atomic update each. Over a limit the answer is 429
//! `tooManyRequest` with `Retry-After`. State is per instance: with several instances behind a balancer,
//! each allows the configured rate. Keyed state of idle keys is dropped by [`RateLimits::forget_idle`]
//! (the Link purge timer calls it), so address keys from the internet cannot grow memory without bound.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use linkvault_domain::{ClientId, Clock};
use uuid::Uuid;

use crate::AppState;
use crate::api_result::ApiError;

/// The limits an operator sets (`serve` flags); every figure is requests per minute, `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `/api/v1` requests per client (after authentication).
    pub api_per_client: Option<NonZeroU32>,
    /// `/link/*` requests per client address.
    pub link_per_address: Option<NonZeroU32>,
    /// `POST /link/api/session` (unauthenticated: it trades an auth_code) per client address.
    pub link_sessions_per_address: Option<NonZeroU32>,
    /// `/link/api/*` calls per Link session.
    pub link_per_session: Option<NonZeroU32>,
    /// Sign-in attempts (`/link/api/credentials`, `/link/api/oauth/start`) per Link session.
    pub sign_ins_per_session: Option<NonZeroU32>,
    /// Take the client address from the last `X-Forwarded-For` entry (set only behind a proxy you run,
    /// which must append the peer it saw); otherwise the TCP peer address is used.
    pub trust_forwarded_for: bool,
}

impl RateLimitConfig {
    /// No limits at all (the library default for embedders and tests; `serve` uses [`Self::defaults`]).
    pub const fn unlimited() -> Self {
        Self {
            api_per_client: None,
            link_per_address: None,
            link_sessions_per_address: None,
            link_per_session: None,
            sign_ins_per_session: None,
            trust_forwarded_for: false,
        }
    }

    /// What `serve` applies unless told otherwise: generous for real apps, tight where guessing pays.
    pub const fn defaults() -> Self {
        Self {
            api_per_client: NonZeroU32::new(6000),
            link_per_address: NonZeroU32::new(1200),
            link_sessions_per_address: NonZeroU32::new(120),
            link_per_session: NonZeroU32::new(300),
            sign_ins_per_session: NonZeroU32::new(10),
            trust_forwarded_for: false,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::unlimited()
    }
}

/// The vault's clock as a `governor` clock: time since the Unix epoch.
#[derive(Clone)]
struct VaultClock(Arc<dyn Clock>);

impl GovernorClock for VaultClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let since = self.0.now() - time::OffsetDateTime::UNIX_EPOCH;
        Duration::try_from(since).unwrap_or_default()
    }
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, VaultClock, NoOpMiddleware<Duration>>;

/// One "N per minute" limit over keys of type `K`, or none.
struct Limit<K: Hash + Eq + Clone> {
    what: &'static str,
    limiter: Option<Keyed<K>>,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    fn new(what: &'static str, per_minute: Option<NonZeroU32>, clock: &VaultClock) -> Self {
        let limiter =
            per_minute.map(|n| RateLimiter::new(Quota::per_minute(n), DashMapStateStore::default(), clock.clone()));
        Self { what, limiter }
    }

    fn check(&self, key: &K) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(key).map_err(|not_until| {
            let now = limiter.clock().now();
            ApiError::too_many_requests(self.what, not_until.wait_time_from(now))
        })
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The live limiters of one server instance.
pub struct RateLimits {
    config: RateLimitConfig,
    clock: VaultClock,
    api: Limit<ClientId>,
    /// Clients with their own figure: one limiter per distinct figure.
    api_own: RwLock<HashMap<NonZeroU32, Arc<Limit<ClientId>>>>,
    link_address: Limit<IpAddr>,
    link_sessions: Limit<IpAddr>,
    link_session: Limit<Uuid>,
    sign_ins: Limit<Uuid>,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        let clock = VaultClock(clock);
        Self {
            api: Limit::new("this client's API rate limit", config.api_per_client, &clock),
            link_address: Limit::new("Link requests from this address", config.link_per_address, &clock),
            link_sessions: Limit::new(
                "Link sessions started from this address",
                config.link_sessions_per_address,
                &clock,
            ),
            link_session: Limit::new("calls in this Link session", config.link_per_session, &clock),
            sign_ins: Limit::new("sign-in attempts in this Link session", config.sign_ins_per_session, &clock),
            api_own: RwLock::new(HashMap::new()),
            clock,
            config,
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Counts one API request of `client` against its own figure when it has one, else the server's.
    pub(crate) fn check_client(&self, client: ClientId, own: Option<NonZeroU32>) -> Result<(), ApiError> {
        let Some(per_minute) = own else { return self.api.check(&client) };
        let shared = self.api_own.read().ok().and_then(|m| m.get(&per_minute).cloned());
        let limit = match shared {
            Some(limit) => limit,
            None => {
                // A poisoned lock only means another request panicked mid-insert; the map is still valid.
                let mut map = self.api_own.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                Arc::clone(map.entry(per_minute).or_insert_with(|| {
                    Arc::new(Limit::new("this client's API rate limit", Some(per_minute), &self.clock))
                }))
            }
        };
        limit.check(&client)
    }

    pub(crate) fn check_link_session(&self, session: Uuid) -> Result<(), ApiError> {
        self.link_session.check(&session)
    }

    pub(crate) fn check_sign_in(&self, session: Uuid) -> Result<(), ApiError> {
        self.sign_ins.check(&session)
    }

    /// Drops the state of keys whose limit has fully recovered (they behave as new keys anyway).
    pub fn forget_idle(&self) {
        self.api.forget_idle();
        if let Ok(own) = self.api_own.read() {
            own.values().for_each(|limit| limit.forget_idle());
        }
        self.link_address.forget_idle();
        self.link_sessions.forget_idle();
        self.link_session.forget_idle();
        self.sign_ins.forget_idle();
    }
}

/// The address a request counts against: the TCP peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` entry. IPv6 addresses count per /64 (one host usually holds a whole /64).
fn client_address(request: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    let forwarded = trust_forwarded_for
        .then(|| request.headers().get_all("x-forwarded-for").iter().next_back())
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let peer = || request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    forwarded.or_else(peer).map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    })
}

/// Middleware on `/link/*`: the per-address limits. A server started without connection info (an embedder
/// calling `axum::serve` without `into_make_service_with_connect_info`) has no address to count.
pub(crate) async fn link_by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    if let Some(address) = client_address(&request, limits.config.trust_forwarded_for) {
        let starting = request.uri().path() == "/link/api/session";
        let checked = limits
            .link_address
            .check(&address)
            .and_then(|()| if starting { limits.link_sessions.check(&address) } else { Ok(()) });
        if let Err(e) = checked {
            return e.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> Request {
        let mut builder = axum::http::Request::builder().uri("/link/api/session");
        if let Some(f) = forwarded {
            builder = builder.header("x-forwarded-for", f);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap_or_default();
        if let Ok(addr) = peer.parse::<SocketAddr>() {
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        request
    }

    #[test]
    fn the_address_is_the_peer_unless_a_proxy_is_trusted() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let r = request("10.0.0.1:5000", Some("203.0.113.9, 198.51.100.7"));
        assert_eq!(client_address(&r, false), ip("10.0.0.1"), "X-Forwarded-For is ignored by default");
        assert_eq!(client_address(&r, true), ip("198.51.100.7"), "the entry the trusted proxy appended");
        let junk = request("10.0.0.1:5000", Some("not-an-address"));
        assert_eq!(client_address(&junk, true), ip("10.0.0.1"), "an unparsable header falls back to the peer");
        let v6 = request("[2001:db8:1:2:3:4:5:6]:443", None);
        assert_eq!(client_address(&v6, false), ip("2001:db8:1:2::"), "IPv6 counts per /64");
        assert_eq!(client_address(&request("nope", None), false), None);
    }

    #[test]
    fn a_limit_answers_429_with_retry_after_and_recovers_on_the_clock() {
        let clock = Arc::new(linkvault_domain::ManualClock::new(time::OffsetDateTime::now_utc()));
        let limit = Limit::<u8>::new("test", NonZeroU32::new(2), &VaultClock(clock.clone()));
        assert!(limit.check(&1).is_ok() && limit.check(&1).is_ok());
        let refused = limit.check(&1).err();
        assert_eq!(refused.as_ref().map(|e| e.status.http().as_u16()), Some(429));
        assert_eq!(refused.and_then(|e| e.retry_after), Some(30), "one of two per minute comes back in 30 s");
        assert!(limit.check(&2).is_ok(), "per key");
        clock.advance(time::Duration::seconds(30));
        assert!(limit.check(&1).is_ok(), "recovered");
    }
}
