//! The scheduler benchmark's fake upstream: a minimal OAuth 2.0 token endpoint (refresh grant only, rotating
//! refresh tokens) on a loopback port, with no storage beyond one in-memory map. It is deliberately cheap so
//! that the engine, not the upstream, is what gets measured; and because it issued every token it can tell, for
//! each presentation, whether the refresh token was seen before and whether it arrived before the access token
//! issued with it expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One refresh token the upstream knows: the end of the access token issued with it, and how often it came
/// back.
#[derive(Debug)]
struct Issued {
    access_expires_at: OffsetDateTime,
    presentations: u32,
    /// Seeded by the benchmark (the first generation), rather than issued by a refresh here.
    seeded: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    tokens: HashMap<String, Issued>,
    /// Accepted refreshes per wall-clock second since `epoch`.
    per_second: Vec<u64>,
    accepted: u64,
    accepted_seeded: u64,
    /// Accepted refreshes that arrived before the access token issued with the presented refresh token expired.
    before_expiry: u64,
    /// Of those, first-generation ones: a seeded connection refreshed before its seeded access token expired.
    seeded_before_expiry: u64,
    /// Presentations of a refresh token already presented (answered `invalid_grant`, as a rotating upstream
    /// that suspects theft would).
    reused: u64,
    unknown: u64,
    max_presentations: u32,
}

#[derive(Debug)]
struct Shared {
    client_id: String,
    client_secret: String,
    access_ttl_secs: u64,
    epoch: OffsetDateTime,
    ledger: Mutex<Ledger>,
}

/// What the upstream saw, read after (or during) a run.
#[derive(Debug, Clone, Default)]
pub struct UpstreamReport {
    pub accepted: u64,
    pub accepted_seeded: u64,
    pub before_expiry: u64,
    pub seeded_before_expiry: u64,
    pub reused: u64,
    pub unknown: u64,
    pub max_presentations: u32,
    pub per_second: Vec<u64>,
}

/// The running fake. The server task stops when this is dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    shared: Arc<Shared>,
    pub base_url: String,
    server: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeUpstream {
    /// Serves `POST /token` on a fresh loopback port. New access tokens live `access_ttl_secs`.
    pub async fn start(client_id: &str, client_secret: &str, access_ttl_secs: u64) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            access_ttl_secs,
            epoch: OffsetDateTime::now_utc(),
            ledger: Mutex::new(Ledger::default()),
        });
        let app = Router::new().route("/token", post(token)).with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake upstream stopped: {e}");
            }
        });
        Ok(Self { shared, base_url, server })
    }

    /// Registers first-generation refresh tokens the benchmark is about to store, with the expiry of the access
    /// token stored next to each, so their presentations can be judged like those of tokens issued here.
    pub fn seed<'a>(&self, tokens: impl IntoIterator<Item = (&'a str, OffsetDateTime)>) {
        let mut ledger = self.shared.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        for (token, access_expires_at) in tokens {
            ledger.tokens.insert(token.to_owned(), Issued { access_expires_at, presentations: 0, seeded: true });
        }
    }

    /// First-generation refresh tokens accepted so far: seeded connections refreshed at least once.
    pub fn accepted_seeded(&self) -> u64 {
        self.shared.ledger.lock().unwrap_or_else(PoisonError::into_inner).accepted_seeded
    }

    pub fn report(&self) -> UpstreamReport {
        let ledger = self.shared.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        UpstreamReport {
            accepted: ledger.accepted,
            accepted_seeded: ledger.accepted_seeded,
            before_expiry: ledger.before_expiry,
            seeded_before_expiry: ledger.seeded_before_expiry,
            reused: ledger.reused,
            unknown: ledger.unknown,
            max_presentations: ledger.max_presentations,
            per_second: ledger.per_second.clone(),
        }
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

async fn token(State(shared): State<Arc<Shared>>, Form(form): Form<HashMap<String, String>>) -> Response {
    // client_secret_post (the catalog entry says so): checked so the engine's client authentication is exercised.
    if form.get("client_id") != Some(&shared.client_id) || form.get("client_secret") != Some(&shared.client_secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(presented) = form.get("refresh_token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let now = OffsetDateTime::now_utc();
    let access_token = random_token("at-");
    let refresh_token = random_token("rt-");
    let access_expires_at = now + time::Duration::seconds(i64::try_from(shared.access_ttl_secs).unwrap_or(i64::MAX));
    {
        let mut ledger = shared.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(issued) = ledger.tokens.get_mut(presented) else {
            ledger.unknown += 1;
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        issued.presentations += 1;
        let (presentations, seeded, on_time) = (issued.presentations, issued.seeded, now < issued.access_expires_at);
        ledger.max_presentations = ledger.max_presentations.max(presentations);
        if presentations > 1 {
            // A rotated-away token came back: a real rotating upstream treats this as theft and ends the grant.
            ledger.reused += 1;
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        ledger.accepted += 1;
        ledger.accepted_seeded += u64::from(seeded);
        ledger.before_expiry += u64::from(on_time);
        ledger.seeded_before_expiry += u64::from(seeded && on_time);
        let second = usize::try_from((now - shared.epoch).whole_seconds()).unwrap_or(0);
        if ledger.per_second.len() <= second {
            ledger.per_second.resize(second + 1, 0);
        }
        ledger.per_second[second] += 1;
        ledger.tokens.insert(refresh_token.clone(), Issued { access_expires_at, presentations: 0, seeded: false });
    }
    Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": shared.access_ttl_secs,
        "refresh_token": refresh_token,
    }))
    .into_response()
}
