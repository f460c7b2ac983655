//! The sandbox OAuth 2.0 authorization servers: Coinbase-like (single-use rotating refresh tokens; presenting a
//! spent one revokes the whole grant) and Uphold-like (the refresh token stays valid and is not re-sent).
//! Authorization code with mandatory PKCE S256, a consent page with a sign-in form, the token endpoint
//! (code and refresh grants, client_secret_basic or client_secret_post), RFC 7009 revocation, RFC 8414
//! metadata, and the account API for the token's user. Tokens are stored only as SHA-256 hashes.

use std::collections::{HashMap, HashSet};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use url::Url;

use crate::admin::{FaultTarget, apply_fault};
use crate::util::{
    after, basic_credentials, bearer, constant_time_eq, escape_html, oauth_error, random_token, s256, secs_until,
    server_failure, token_hash,
};
use crate::{MFA_CODE, PASSWORD, Shared, ledger};

/// How one sandbox OAuth exchange behaves.
#[derive(Debug, Clone, Copy)]
pub struct Flavor {
    pub key: &'static str,
    pub title: &'static str,
    pub rotating: bool,
    pub read_scopes: &'static [&'static str],
    pub write_scopes: &'static [&'static str],
    pub token_prefix: &'static str,
}

pub const COINBASE: Flavor = Flavor {
    key: "coinbase",
    title: "Coinbase (sandbox)",
    rotating: true,
    read_scopes: &["wallet:accounts:read", "wallet:transactions:read", "wallet:addresses:read", "wallet:user:read"],
    write_scopes: &["wallet:transactions:send", "wallet:addresses:create"],
    token_prefix: "cb",
};

pub const UPHOLD: Flavor = Flavor {
    key: "uphold",
    title: "Uphold (sandbox)",
    rotating: false,
    read_scopes: &["user:read", "cards:read", "transactions:read"],
    write_scopes: &["transactions:withdraw", "transactions:transfer:others", "cards:write"],
    token_prefix: "up",
};

#[derive(Debug)]
struct CodeEntry {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    username: String,
    scopes: Vec<String>,
    expires_at: OffsetDateTime,
    used_by_grant: Option<u64>,
}

#[derive(Debug)]
struct Grant {
    client_id: String,
    username: String,
    scopes: Vec<String>,
    revoked: bool,
    /// When the newest access token of this grant expires: a refresh after it was late.
    access_expires_at: OffsetDateTime,
}

#[derive(Debug)]
struct AccessEntry {
    grant: u64,
    scopes: Vec<String>,
    expires_at: OffsetDateTime,
}

#[derive(Debug)]
struct RefreshEntry {
    grant: u64,
    expires_at: OffsetDateTime,
    spent: bool,
}

/// One exchange's in-memory state. Keys of the token maps are SHA-256 hex of the tokens.
#[derive(Debug, Default)]
pub struct ExchangeState {
    codes: HashMap<String, CodeEntry>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    access: HashMap<String, AccessEntry>,
    refresh: HashMap<String, RefreshEntry>,
    /// How many times each refresh token was presented at the token endpoint (by hash).
    pub presentations: HashMap<String, u32>,
    /// Successful refreshes of grants whose newest access token had already expired (the client let the
    /// connection lapse before refreshing it).
    pub refreshed_after_expiry: u64,
}

impl ExchangeState {
    fn revoke_grant(&mut self, grant: u64) {
        if let Some(g) = self.grants.get_mut(&grant) {
            g.revoked = true;
        }
        self.access.retain(|_, a| a.grant != grant);
        self.refresh.retain(|_, r| r.grant != grant);
    }

    pub fn expire_access_tokens(&mut self, now: OffsetDateTime) -> usize {
        let mut count = 0;
        for entry in self.access.values_mut() {
            if entry.expires_at > now {
                entry.expires_at = now;
                count += 1;
            }
        }
        count
    }

    fn purge(&mut self, now: OffsetDateTime) {
        self.codes.retain(|_, c| {
            c.expires_at > now || c.used_by_grant.is_some_and(|_| c.expires_at + time::Duration::minutes(10) > now)
        });
        self.access.retain(|_, a| a.expires_at + time::Duration::hours(1) > now);
        self.refresh.retain(|_, r| r.expires_at > now);
    }
}

pub fn router(flavor: Flavor) -> Router<Shared> {
    Router::new()
        .route(
            "/oauth/authorize",
            get(move |s: State<Shared>, q: Query<HashMap<String, String>>| authorize_page(flavor, s, q))
                .post(move |s: State<Shared>, f: Form<HashMap<String, String>>| authorize_submit(flavor, s, f)),
        )
        .route(
            "/oauth/token",
            post(move |s: State<Shared>, h: HeaderMap, f: Form<Vec<(String, String)>>| token(flavor, s, h, f)),
        )
        .route(
            "/oauth/revoke",
            post(move |s: State<Shared>, h: HeaderMap, f: Form<Vec<(String, String)>>| revoke(flavor, s, h, f)),
        )
        .route("/.well-known/oauth-authorization-server", get(move |s: State<Shared>| metadata(flavor, s)))
}

async fn metadata(flavor: Flavor, State(sandbox): State<Shared>) -> Json<Value> {
    let base = format!("{}/{}", sandbox.config.public_base_url, flavor.key);
    let scopes: Vec<&str> = flavor.read_scopes.iter().chain(flavor.write_scopes).copied().collect();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
    }))
}

/// A validated authorization request.
struct AuthzRequest {
    client_id: String,
    redirect_uri: Url,
    state: Option<String>,
    challenge: String,
    scopes: Vec<String>,
}

/// Errors shown on the page (no trustworthy redirect URI) vs. sent back to the client by redirect.
enum AuthzError {
    Page(String),
    Redirect(Url, &'static str, &'static str),
}

fn redirect_with(mut uri: Url, pairs: &[(&str, &str)]) -> Response {
    {
        let mut q = uri.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Redirect::to(uri.as_str()).into_response()
}

fn validate_authz(
    flavor: Flavor,
    sandbox: &Shared,
    params: &HashMap<String, String>,
) -> Result<AuthzRequest, AuthzError> {
    let client_id = params.get("client_id").cloned().unwrap_or_default();
    if client_id != sandbox.config.client_id {
        return Err(AuthzError::Page("unknown client_id".to_owned()));
    }
    let redirect_uri = params
        .get("redirect_uri")
        .and_then(|r| Url::parse(r).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.fragment().is_none())
        .ok_or_else(|| {
            AuthzError::Page("redirect_uri must be an absolute http(s) URL without a fragment".to_owned())
        })?;
    let state = params.get("state").cloned();
    let back = |error: &'static str, description: &'static str| {
        let mut uri = redirect_uri.clone();
        if let Some(state) = &state {
            uri.query_pairs_mut().append_pair("state", state);
        }
        AuthzError::Redirect(uri, error, description)
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return Err(back("unsupported_response_type", "only response_type=code is supported"));
    }
    let challenge = params.get("code_challenge").cloned().unwrap_or_default();
    if challenge.len() != 43 {
        return Err(back("invalid_request", "PKCE is required: code_challenge (S256, 43 characters)"));
    }
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(back("invalid_request", "code_challenge_method must be S256"));
    }
    let requested: Vec<String> = params
        .get("scope")
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let known: HashSet<&str> = flavor.read_scopes.iter().chain(flavor.write_scopes).copied().collect();
    if requested.iter().any(|s| !known.contains(s.as_str())) {
        return Err(back("invalid_scope", "unknown scope requested"));
    }
    let scopes =
        if requested.is_empty() { flavor.read_scopes.iter().map(|s| (*s).to_owned()).collect() } else { requested };
    Ok(AuthzRequest { client_id, redirect_uri, state, challenge, scopes })
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Sandbox error</title></head><body><h1>Cannot continue</h1><p>{}</p></body></html>",
        escape_html(message)
    );
    (status, Html(body)).into_response()
}

fn consent_page(
    flavor: Flavor,
    sandbox: &Shared,
    params: &HashMap<String, String>,
    req: &AuthzRequest,
    error: Option<&str>,
) -> Response {
    let action = format!("{}/{}/oauth/authorize", sandbox.config.public_base_url, flavor.key);
    let hidden: String =
        ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"]
            .iter()
            .filter_map(|k| params.get(*k).map(|v| (k, v)))
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">\n", escape_html(v)))
            .collect();
    let scopes: String = req.scopes.iter().map(|s| format!("<li>{}</li>", escape_html(s))).collect();
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(e))).unwrap_or_default();
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}: sign in</title></head><body>\n\
         <h1>{title}</h1>\n<p>An application wants access to your account with these permissions:</p><ul>{scopes}</ul>\n{error}\
         <form method=\"post\" action=\"{action}\">\n{hidden}\
         <label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label>\n\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\n\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Sign in and allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\n\
         </form>\n<p>Sandbox logins: username <code>Mesh</code>, password <code>{PASSWORD}</code>.</p>\n</body></html>\n",
        title = escape_html(flavor.title),
        action = escape_html(&action),
    );
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

async fn authorize_page(
    flavor: Flavor,
    State(sandbox): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match validate_authz(flavor, &sandbox, &params) {
        Ok(req) => consent_page(flavor, &sandbox, &params, &req, None),
        Err(AuthzError::Page(message)) => error_page(StatusCode::BAD_REQUEST, &message),
        Err(AuthzError::Redirect(uri, error, description)) => {
            redirect_with(uri, &[("error", error), ("error_description", description)])
        }
    }
}

async fn authorize_submit(
    flavor: Flavor,
    State(sandbox): State<Shared>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let req = match validate_authz(flavor, &sandbox, &params) {
        Ok(req) => req,
        Err(AuthzError::Page(message)) => return error_page(StatusCode::BAD_REQUEST, &message),
        Err(AuthzError::Redirect(uri, error, description)) => {
            return redirect_with(uri, &[("error", error), ("error_description", description)]);
        }
    };
    let mut back = req.redirect_uri.clone();
    if let Some(state) = &req.state {
        back.query_pairs_mut().append_pair("state", state);
    }
    if params.get("decision").map(String::as_str) == Some("deny") {
        return redirect_with(back, &[("error", "access_denied"), ("error_description", "the user denied access")]);
    }
    let username = params.get("username").map(String::as_str).unwrap_or_default();
    let password = params.get("password").map(String::as_str).unwrap_or_default();
    let mfa_ok = params.get("mfa_code").is_none_or(|c| c.is_empty() || constant_time_eq(c, MFA_CODE));
    if !(ledger::is_known_user(username) && constant_time_eq(password, PASSWORD) && mfa_ok) {
        return consent_page(flavor, &sandbox, &params, &req, Some("Wrong username or password."));
    }
    let Some(code) = random_token(&format!("{}_code_", flavor.token_prefix)) else { return server_failure() };
    let now = sandbox.config.clock.now();
    {
        let mut inner = sandbox.lock();
        let state = inner.oauth.entry(flavor.key).or_default();
        state.purge(now);
        state.codes.insert(
            token_hash(&code),
            CodeEntry {
                client_id: req.client_id.clone(),
                redirect_uri: req.redirect_uri.to_string(),
                challenge: req.challenge.clone(),
                username: username.to_owned(),
                scopes: req.scopes.clone(),
                expires_at: after(now, sandbox.config.code_ttl),
                used_by_grant: None,
            },
        );
    }
    redirect_with(back, &[("code", &code)])
}

/// A token- or revocation-endpoint refusal, turned into an RFC 6749 §5.2 answer at the edge.
#[derive(Debug, Clone, Copy)]
struct Refusal(StatusCode, &'static str, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        oauth_error(self.0, self.1, self.2)
    }
}

/// Client authentication at the token and revocation endpoints: Basic, or client_id + client_secret in the
/// body, never both.
fn authenticate_client(
    sandbox: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, Refusal> {
    let invalid = Refusal(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    let (id, secret) = match (basic_credentials(headers), form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(Refusal(StatusCode::BAD_REQUEST, "invalid_request", "use one client authentication method"));
        }
        (Some(Ok(pair)), None) => pair,
        (Some(Err(())), None) => return Err(invalid),
        (None, Some(secret)) => (form.get("client_id").cloned().unwrap_or_default(), secret.clone()),
        (None, None) => return Err(invalid),
    };
    if form.get("client_id").is_some_and(|body_id| *body_id != id) {
        return Err(invalid);
    }
    if id == sandbox.config.client_id && constant_time_eq(&secret, &sandbox.config.client_secret) {
        Ok(id)
    } else {
        Err(invalid)
    }
}

/// Form parameters; a repeated parameter is an `invalid_request` (RFC 6749 §3.2).
fn single_valued(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, Refusal> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(Refusal(StatusCode::BAD_REQUEST, "invalid_request", "a parameter is repeated"));
        }
    }
    Ok(map)
}

fn token_answer(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn token(
    flavor: Flavor,
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = match single_valued(pairs) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let now = sandbox.config.clock.now();
    // Count every presentation of a refresh token, whatever happens next (faults included).
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        if let Some(presented) = form.get("refresh_token") {
            let mut inner = sandbox.lock();
            *inner.oauth.entry(flavor.key).or_default().presentations.entry(token_hash(presented)).or_insert(0) += 1;
        }
    }
    if let Some(response) = apply_fault(&sandbox, flavor.key, FaultTarget::Token).await {
        return response;
    }
    let client_id = match authenticate_client(&sandbox, &headers, &form) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(flavor, &sandbox, &client_id, &form, now),
        Some("refresh_token") => refresh_grant(flavor, &sandbox, &client_id, &form, now),
        Some(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "authorization_code or refresh_token")
        }
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
}

/// Issues an access token and (for a new grant or rotation) a refresh token.
fn issue(
    flavor: Flavor,
    sandbox: &Shared,
    state: &mut ExchangeState,
    grant: u64,
    scopes: &[String],
    with_refresh: bool,
    now: OffsetDateTime,
) -> Option<Value> {
    let access = random_token(&format!("{}at_", flavor.token_prefix))?;
    let access_expires = after(now, sandbox.config.access_ttl);
    if let Some(g) = state.grants.get_mut(&grant) {
        g.access_expires_at = access_expires;
    }
    state
        .access
        .insert(token_hash(&access), AccessEntry { grant, scopes: scopes.to_vec(), expires_at: access_expires });
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": secs_until(now, access_expires),
        "scope": scopes.join(" "),
    });
    if with_refresh {
        let refresh = random_token(&format!("{}rt_", flavor.token_prefix))?;
        let refresh_expires = after(now, sandbox.config.refresh_ttl);
        state.refresh.insert(token_hash(&refresh), RefreshEntry { grant, expires_at: refresh_expires, spent: false });
        if let Some(map) = body.as_object_mut() {
            map.insert("refresh_token".to_owned(), json!(refresh));
            map.insert("refresh_token_expires_in".to_owned(), json!(secs_until(now, refresh_expires)));
        }
    }
    Some(body)
}

fn code_grant(
    flavor: Flavor,
    sandbox: &Shared,
    client_id: &str,
    form: &HashMap<String, String>,
    now: OffsetDateTime,
) -> Response {
    let invalid_grant = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (form.get("code"), form.get("redirect_uri"), form.get("code_verifier"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code, redirect_uri and code_verifier are required",
        );
    };
    let mut inner = sandbox.lock();
    let state = inner.oauth.entry(flavor.key).or_default();
    let Some(entry) = state.codes.get_mut(&token_hash(code)) else {
        return invalid_grant("unknown or expired authorization code");
    };
    if let Some(grant) = entry.used_by_grant {
        // RFC 6749 §4.1.2: a code used twice revokes what it issued.
        state.revoke_grant(grant);
        return invalid_grant("authorization code already used; its tokens are revoked");
    }
    if entry.expires_at <= now || entry.client_id != client_id {
        return invalid_grant("unknown or expired authorization code");
    }
    if Url::parse(redirect_uri).map(|u| u.to_string()).ok().as_deref() != Some(entry.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    if !constant_time_eq(&s256(verifier), &entry.challenge) {
        return invalid_grant("PKCE verification failed");
    }
    state.next_grant += 1;
    let grant = state.next_grant;
    entry.used_by_grant = Some(grant);
    let scopes = entry.scopes.clone();
    let username = entry.username.clone();
    state.grants.insert(
        grant,
        Grant {
            client_id: client_id.to_owned(),
            username,
            scopes: scopes.clone(),
            revoked: false,
            access_expires_at: now,
        },
    );
    match issue(flavor, sandbox, state, grant, &scopes, true, now) {
        Some(body) => token_answer(body),
        None => server_failure(),
    }
}

fn refresh_grant(
    flavor: Flavor,
    sandbox: &Shared,
    client_id: &str,
    form: &HashMap<String, String>,
    now: OffsetDateTime,
) -> Response {
    let invalid_grant = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let Some(presented) = form.get("refresh_token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
    };
    let hash = token_hash(presented);
    let mut inner = sandbox.lock();
    let state = inner.oauth.entry(flavor.key).or_default();
    let Some(entry) = state.refresh.get(&hash) else {
        return invalid_grant("unknown, expired or revoked refresh token");
    };
    let grant_id = entry.grant;
    let (spent, expired) = (entry.spent, entry.expires_at <= now);
    let Some(grant) = state.grants.get(&grant_id) else {
        return invalid_grant("unknown, expired or revoked refresh token");
    };
    if grant.revoked || grant.client_id != client_id || expired {
        return invalid_grant("unknown, expired or revoked refresh token");
    }
    if spent {
        tracing::info!(exchange = flavor.key, "sandbox: spent refresh token presented again; revoking the grant");
        state.revoke_grant(grant_id);
        return invalid_grant("refresh token already used; the grant is revoked");
    }
    let granted = grant.scopes.clone();
    let scopes: Vec<String> = match form.get("scope") {
        None => granted,
        Some(requested) => {
            let requested: Vec<String> = requested.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if requested.iter().any(|s| !granted.contains(s)) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope exceeds the grant");
            }
            requested
        }
    };
    if grant.access_expires_at <= now {
        state.refreshed_after_expiry += 1;
    }
    if flavor.rotating {
        if let Some(entry) = state.refresh.get_mut(&hash) {
            entry.spent = true;
        }
    }
    match issue(flavor, sandbox, state, grant_id, &scopes, flavor.rotating, now) {
        Some(body) => token_answer(body),
        None => server_failure(),
    }
}

async fn revoke(
    flavor: Flavor,
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = match single_valued(pairs) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(response) = apply_fault(&sandbox, flavor.key, FaultTarget::Token).await {
        return response;
    }
    let client_id = match authenticate_client(&sandbox, &headers, &form) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    let hash = token_hash(token);
    let mut inner = sandbox.lock();
    let state = inner.oauth.entry(flavor.key).or_default();
    let owned_by_client =
        |state: &ExchangeState, grant: u64| state.grants.get(&grant).is_some_and(|g| g.client_id == client_id);
    if let Some(grant) = state.refresh.get(&hash).map(|r| r.grant) {
        if owned_by_client(state, grant) {
            // Revoking a refresh token ends the grant (RFC 7009 §2.1 allows and recommends it).
            state.revoke_grant(grant);
        }
    } else if let Some(grant) = state.access.get(&hash).map(|a| a.grant) {
        if owned_by_client(state, grant) {
            state.access.remove(&hash);
        }
    }
    // RFC 7009 §2.2: 200 also for unknown or already-invalid tokens.
    StatusCode::OK.into_response()
}

/// Why a Bearer access token does not open the account API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerRefusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Unknown (never issued, or removed by a refresh or revocation).
    Invalid,
    /// Issued, but past its lifetime.
    Expired,
    /// Its grant was revoked (a spent refresh token came back, or the user revoked access).
    Revoked,
}

/// Who a Bearer access token belongs to at an OAuth exchange: the sandbox username and the token's scopes.
/// Each exchange's account API module renders the refusal in its provider's own error format.
pub fn bearer_user(
    sandbox: &Shared,
    flavor: Flavor,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<(String, Vec<String>), BearerRefusal> {
    let token = bearer(headers).ok_or(BearerRefusal::Missing)?;
    let mut inner = sandbox.lock();
    let state = inner.oauth.entry(flavor.key).or_default();
    let entry = state.access.get(&token_hash(token)).ok_or(BearerRefusal::Invalid)?;
    let grant = state.grants.get(&entry.grant).ok_or(BearerRefusal::Invalid)?;
    if grant.revoked {
        return Err(BearerRefusal::Revoked);
    }
    if entry.expires_at <= now {
        return Err(BearerRefusal::Expired);
    }
    Ok((grant.username.clone(), entry.scopes.clone()))
}
