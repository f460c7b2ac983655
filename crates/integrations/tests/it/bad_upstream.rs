//! Bad upstream answers at the token endpoint, from a tiny local server: HTML instead of JSON, no
//! access_token, a 10 MB body (declared and chunked), a hung connection, error codes of every class. Each is
//! a clear error within the timeout, never a panic; and a missing `expires_in` takes the catalog default.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use linkvault_domain::{Clock, ManualClock};
use linkvault_integrations::oauth::{OAuthClient, OAuthError, TokenTypeHint};
use linkvault_integrations::{Catalog, HttpLimits, Integration};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

const TEN_MB: usize = 10 * 1024 * 1024;

fn upstream() -> Router {
    Router::new()
        .route("/html/token", post(|| async { Html("<!doctype html><html><body>Login</body></html>") }))
        .route("/no-access-token/token", post(|| async { Json(json!({"token_type": "Bearer", "expires_in": 60})) }))
        .route("/huge/token", post(|| async { vec![b'a'; TEN_MB] }))
        .route(
            "/defaults/token",
            post(|| async { Json(json!({"access_token": "at-1", "token_type": "bearer", "scope": "a"})) }),
        )
        .route(
            "/string-expiry/token",
            post(|| async { Json(json!({"access_token": "at-2", "expires_in": "120", "refresh_token": "rt-new"})) }),
        )
        .route("/html-500/token", post(|| async { (StatusCode::BAD_GATEWAY, Html("<h1>Bad gateway</h1>")) }))
        .route("/html-401/token", post(|| async { (StatusCode::UNAUTHORIZED, Html("<h1>Who are you</h1>")) }))
        .route(
            "/invalid-client/token",
            post(|| async { (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))) }),
        )
        .route(
            "/invalid-scope/token",
            post(|| async {
                (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_scope", "error_description": "no\nway"})))
            }),
        )
        .route("/ok-but-error/token", post(|| async { Json(json!({"error": "invalid_grant"})) }))
        .route("/mac/token", post(|| async { Json(json!({"access_token": "x", "token_type": "mac"})) }))
        .route(
            "/slow-429/token",
            post(|| async {
                let mut headers = HeaderMap::new();
                headers.insert(header::RETRY_AFTER, "30".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response()
            }),
        )
        .route(
            "/revoke-503/revoke",
            post(|| async { Response::builder().status(503).body(axum::body::Body::empty()).unwrap() }),
        )
}

/// Accepts connections and never answers (holds them until the test ends).
async fn hung_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (origin, handle)
}

/// Answers 200 with a chunked body of 10 MB (no Content-Length), so only incremental reading can stop it.
async fn chunked_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..(TEN_MB / chunk.len()) {
                    let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if socket.write_all(&frame).await.is_err() {
                        return; // the client stopped reading: expected
                    }
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (origin, handle)
}

/// A catalog entry per upstream path, written as a catalog file would be.
fn catalog_for(origin: &str, names: &[&str]) -> Catalog {
    let mut text = String::new();
    for name in names {
        let ty = format!(
            "bad{}",
            name.replace('-', "")
                .replace("429", "RateLimit")
                .replace("500", "FiveHundred")
                .replace("401", "FourOhOne")
                .replace("503", "Unavailable")
        );
        text.push_str(&format!(
            "[[integration]]\ntype = \"{ty}\"\nname = \"{name}\"\nauth = \"oauth2\"\n\
             authorize_url = \"{origin}/{name}/authorize\"\ntoken_url = \"{origin}/{name}/token\"\n\
             revoke_url = \"{origin}/{name}/revoke\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             default_access_ttl_secs = 900\nrefresh_token_ttl_secs = 86400\n\n"
        ));
    }
    Catalog::embedded().with_overrides(&text).unwrap()
}

fn entry<'a>(catalog: &'a Catalog, name: &str) -> &'a Integration {
    catalog.iter().find(|i| i.name == name).unwrap()
}

fn limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(2),
        max_body_bytes: 64 * 1024,
    }
}

#[tokio::test]
async fn bad_answers_are_clear_errors_within_the_timeout() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = serve(upstream()).await;
        let (hung, _hung_task) = hung_server().await;
        let (chunked, _chunked_task) = chunked_server().await;
        let names = [
            "html",
            "no-access-token",
            "huge",
            "defaults",
            "string-expiry",
            "html-500",
            "html-401",
            "invalid-client",
            "invalid-scope",
            "ok-but-error",
            "mac",
            "slow-429",
            "revoke-503",
        ];
        let catalog = catalog_for(&server.origin, &names);
        let hung_catalog = catalog_for(&hung, &["hang"]);
        let chunked_catalog = catalog_for(&chunked, &["chunked"]);
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let client = OAuthClient::with_limits(clock.clone(), limits()).unwrap();
        let old_rt = SecretString::from("rt-old".to_owned());

        let refresh = |name: &'static str| {
            let integration = entry(&catalog, name).clone();
            let client = client.clone();
            let old_rt = old_rt.clone();
            async move { client.refresh(&integration, &old_rt).await }
        };

        let err = refresh("html").await.unwrap_err();
        assert!(matches!(&err, OAuthError::Protocol(m) if m.contains("not JSON") && m.contains("text/html")), "{err}");
        let err = refresh("no-access-token").await.unwrap_err();
        assert_eq!(err, OAuthError::Protocol("token response has no access_token".into()));
        let err = refresh("huge").await.unwrap_err();
        assert!(matches!(&err, OAuthError::Protocol(m) if m.contains("larger than")), "{err}");
        let err = refresh("html-500").await.unwrap_err();
        assert!(matches!(&err, OAuthError::Transient { reason, .. } if reason.contains("502")), "{err}");
        assert!(matches!(refresh("html-401").await.unwrap_err(), OAuthError::InvalidClient { .. }));
        assert!(matches!(refresh("invalid-client").await.unwrap_err(), OAuthError::InvalidClient { .. }));
        let err = refresh("invalid-scope").await.unwrap_err();
        assert_eq!(
            err,
            OAuthError::Rejected { error: "invalid_scope".into(), status: 400, description: Some("noway".into()) }
        );
        assert!(matches!(refresh("ok-but-error").await.unwrap_err(), OAuthError::InvalidGrant { .. }));
        assert!(matches!(refresh("mac").await.unwrap_err(), OAuthError::Protocol(_)));
        let err = refresh("slow-429").await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        let err = client.revoke(entry(&catalog, "revoke-503"), &old_rt, TokenTypeHint::RefreshToken).await.unwrap_err();
        assert!(err.is_transient(), "{err}");

        // No expires_in: the catalog default from the request's send time; no refresh token: the old one kept.
        let sent = clock.now();
        let tokens = refresh("defaults").await.unwrap();
        assert!(tokens.expires_in_defaulted);
        assert_eq!(tokens.expires_at, sent + time::Duration::seconds(900));
        assert_eq!(tokens.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("rt-old"));
        assert!(!tokens.refresh_token_rotated);
        assert_eq!(tokens.refresh_token_expires_at, None, "a kept refresh token keeps its known expiry");
        // expires_in as a string is accepted; a new refresh token gets the catalog's refresh lifetime.
        let tokens = refresh("string-expiry").await.unwrap();
        assert_eq!(tokens.expires_at, sent + time::Duration::seconds(120));
        assert!(tokens.refresh_token_rotated);
        assert_eq!(tokens.refresh_token_expires_at, Some(sent + time::Duration::seconds(86400)));

        // A hung connection and an endless chunked body: errors within the total timeout.
        for (catalog, name) in [(&hung_catalog, "hang"), (&chunked_catalog, "chunked")] {
            let started = Instant::now();
            let err = client.refresh(entry(catalog, name), &old_rt).await.unwrap_err();
            let elapsed = started.elapsed();
            assert!(elapsed < Duration::from_secs(4), "{name}: took {elapsed:?}");
            match name {
                "hang" => {
                    // Sent, no answer: the upstream may have rotated the token, so it is not "transient".
                    assert!(
                        matches!(&err, OAuthError::OutcomeUnknown { reason } if reason.contains("timeout")),
                        "{err}"
                    );
                    assert!(err.outcome_unknown());
                }
                _ => assert!(matches!(&err, OAuthError::Protocol(m) if m.contains("larger than")), "{err}"),
            }
        }

        // Nothing listening: the request was never written, so the grant may simply be retried later.
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            let mut entry = entry(&catalog, "defaults").clone();
            entry.endpoints.token_url = Some(url::Url::parse(&format!("http://127.0.0.1:{port}/token")).unwrap());
            entry
        };
        let err = client.refresh(&refused, &old_rt).await.unwrap_err();
        assert!(matches!(&err, OAuthError::Transient { .. }) && !err.outcome_unknown(), "{err}");

        // No error text carries a token.
        for name in names {
            if let Err(e) = refresh(name).await {
                assert!(!e.to_string().contains("rt-old"), "{e}");
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_upstream_is_transient() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // Bind then drop: the port is (very likely) closed.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let catalog = catalog_for(&format!("http://127.0.0.1:{port}"), &["closed"]);
        let client = OAuthClient::with_limits(system_clock(), limits()).unwrap();
        let err = client.refresh(entry(&catalog, "closed"), &SecretString::from("x".to_owned())).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    })
    .await
    .unwrap();
}
