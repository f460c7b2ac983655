//! Every token-backed endpoint under every combination of key scope (read/write), tokenId scope (read/write)
//! and owner (own client, another client, another user of the same client), with the sandbox exchanges' request
//! counters proving that no refused call reached the integration; then managed transfers end to end on the
//! Coinbase-like (OAuth) and Binance-like (credentials) sandboxes, and execute idempotency on every provider
//! (Coinbase `idem`, Uphold's single commit, Binance `withdrawOrderId`): sequential retries,
//! the Idempotency-Key header, the client's transactionId, concurrent executes, expiry, and a crash between the
//! integration's answer and the write-back.

mod common;

use common::{Answer, ClientCreds, Options, TestApp, TestResult, spawn_app_with};
use linkvault_integrations::api::{Credential, ExchangeApi, SendOutcome, SendRequest};
use linkvault_integrations::{Catalog, HttpLimits};
use linkvault_storage::testing::Backend;
use linkvault_storage::{ExecutionState, TransferExecutionRecord};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

const BINANCE: &str = "binanceInternationalDirect";
const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
const SOLANA: &str = "0291810a-5947-424d-9a59-e88bb33e999d";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

async fn connect_binance(app: &TestApp, client: &ClientCreds, secret: &str, user: &str) -> Result<String, Error> {
    common::connect_binance_direct(app, client, secret, user).await
}

async fn connect_coinbase(app: &TestApp, client: &ClientCreds, secret: &str, user: &str) -> Result<String, Error> {
    common::connect_oauth(app, client, secret, user, "coinbase").await
}

/// An integration of each sandbox provider, and the sandbox exchange serving it.
const PROVIDERS: [(&str, &str); 3] = [("coinbase", "coinbase"), ("uphold", "uphold"), (BINANCE, "binance")];

/// The sandbox's counter of the documented send endpoint of each exchange (Coinbase's send, Uphold's commit
/// of a quote, Binance's withdrawal).
fn send_endpoint(exchange: &str) -> &'static str {
    match exchange {
        "coinbase" => "POST /v2/accounts/:account_id/transactions",
        "uphold" => "POST /v0/me/cards/:card/transactions/:id/commit",
        _ => "POST /sapi/v1/capital/withdraw/apply",
    }
}

/// An execute of `preview`, with the second factor Coinbase asks of every send.
fn execute_body(token: &str, ty: &str, preview: &str) -> Value {
    let mut body = json!({"fromAuthToken": token, "fromType": ty, "previewId": preview});
    if ty == "coinbase" {
        body["mfaCode"] = json!("123456");
    }
    body
}

async fn post(app: &TestApp, creds: (&str, &str), path: &str, body: &Value) -> Result<Answer, Error> {
    app.call(Method::POST, path, Some(creds), Some(body.to_string())).await
}

async fn execute_with_key(
    app: &TestApp,
    creds: (&str, &str),
    body: &Value,
    key: Option<&str>,
) -> Result<Answer, Error> {
    let mut req = app
        .http
        .post(format!("{}/api/v1/transfers/managed/execute", app.base))
        .header("X-Client-Id", creds.0)
        .header("X-Client-Secret", creds.1)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await?;
    let code = res.status().as_u16();
    let raw = res.text().await?;
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Ok(Answer { code, body, raw })
}

/// The sandbox's per-exchange request counters.
async fn counters(app: &TestApp) -> Result<Value, Error> {
    Ok(app.http.get(format!("{}/sandbox/admin/requests", app.base)).send().await?.json().await?)
}

fn total_requests(counters: &Value) -> u64 {
    ["coinbase", "uphold", "binance"].iter().map(|e| counters[e]["totalRequests"].as_u64().unwrap_or(0)).sum()
}

fn preview_body(token: &str, ty: &str, amount: f64) -> Value {
    json!({"fromAuthToken": token, "fromType": ty, "networkId": ETHEREUM, "symbol": "ETH",
           "toAddress": ADDRESS, "amount": amount})
}

async fn preview_id(app: &TestApp, creds: (&str, &str), body: &Value) -> Result<String, Error> {
    let answer = post(app, creds, "/api/v1/transfers/managed/preview", body).await?;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    assert_eq!(answer.content()["status"], "succeeded", "{}", answer.raw);
    Ok(answer.content()["previewResult"]["previewId"].as_str().unwrap_or_default().to_owned())
}

/// What a refused call must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Served,
    KeyScope,
    TokenScope,
    NotFound,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_under_every_key_token_and_owner_combination() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let other = common::create_client(&app.vault, "other app").await?;
        // Tokens by (scope, owner): alice and bob are users of this client; "other" is another client's alice.
        let mut tokens = Vec::new();
        for (scope, secret) in [("read", &c.read), ("write", &c.write)] {
            tokens.push((scope, "own", connect_binance(&app, c, secret, "alice").await?));
            tokens.push((scope, "otherUser", connect_binance(&app, c, secret, "bob").await?));
        }
        for (scope, secret) in [("read", &other.read), ("write", &other.write)] {
            tokens.push((scope, "otherClient", connect_binance(&app, &other, secret, "alice").await?));
        }
        // A write preview of alice's own write token, for the execute rows.
        let own_write = tokens.iter().find(|t| t.0 == "write" && t.1 == "own").map(|t| t.2.clone()).unwrap_or_default();
        let alice_preview = preview_id(&app, (&c.id, &c.write), &preview_body(&own_write, BINANCE, 0.01)).await?;

        let endpoints = ["holdings", "balance", "preview", "execute", "status", "delete"];
        for (key_scope, secret) in [("read", &c.read), ("write", &c.write)] {
            for (token_scope, owner, token) in &tokens {
                for endpoint in endpoints {
                    let write_endpoint = matches!(endpoint, "preview" | "execute");
                    // The call names alice as its end user, so bob's tokenId is another user's.
                    let expect = if write_endpoint && key_scope == "read" {
                        Expect::KeyScope
                    } else if *owner != "own" {
                        Expect::NotFound
                    } else if write_endpoint && *token_scope == "read" {
                        Expect::TokenScope
                    } else if endpoint == "delete" && key_scope == "read" && *token_scope == "write" {
                        // A read key may remove only read-scoped connections.
                        Expect::KeyScope
                    } else {
                        Expect::Served
                    };
                    if endpoint == "delete" && expect == Expect::Served {
                        continue; // deleting is exercised last, so the other rows keep their tokens
                    }
                    let before = counters(&app).await?;
                    let creds = (c.id.as_str(), secret.as_str());
                    let answer = match endpoint {
                        "holdings" | "balance" => {
                            let body = json!({"authToken": token, "type": BINANCE, "userId": "alice"});
                            post(&app, creds, &format!("/api/v1/{endpoint}/get"), &body).await?
                        }
                        "preview" => {
                            let mut body = preview_body(token, BINANCE, 0.01);
                            body["userId"] = json!("alice");
                            post(&app, creds, "/api/v1/transfers/managed/preview", &body).await?
                        }
                        "execute" => {
                            // Executing alice's preview through this token: for anything but alice's own write
                            // token the preview is not this token's (or the call is refused before that).
                            let body = json!({"fromAuthToken": token, "fromType": BINANCE,
                                              "previewId": alice_preview, "userId": "alice"});
                            post(&app, creds, "/api/v1/transfers/managed/execute", &body).await?
                        }
                        "status" => {
                            app.call(Method::GET, &format!("/api/v1/tokens/{token}?userId=alice"), Some(creds), None)
                                .await?
                        }
                        _ => {
                            let body = json!({"authToken": token, "type": BINANCE, "userId": "alice"});
                            app.call(Method::DELETE, "/api/v1/account", Some(creds), Some(body.to_string())).await?
                        }
                    };
                    let after = counters(&app).await?;
                    let case = format!("{key_scope} key, {token_scope} token of {owner}, {endpoint}");
                    match expect {
                        Expect::KeyScope => {
                            assert_eq!(
                                (answer.code, answer.error_type()),
                                (403, "keyScopeInsufficient"),
                                "{case}: {}",
                                answer.raw
                            );
                        }
                        Expect::TokenScope => {
                            assert_eq!(
                                (answer.code, answer.error_type()),
                                (403, "tokenScopeMismatch"),
                                "{case}: {}",
                                answer.raw
                            );
                            assert_eq!(answer.body["status"], "permissionDenied");
                        }
                        Expect::NotFound => {
                            assert_eq!(
                                (answer.code, answer.error_type()),
                                (404, "tokenNotFound"),
                                "{case}: {}",
                                answer.raw
                            );
                        }
                        Expect::Served => {
                            assert_eq!(answer.code, 200, "{case}: {}", answer.raw);
                            assert_eq!(answer.body["status"], "ok", "{case}");
                        }
                    }
                    if expect != Expect::Served {
                        assert_eq!(total_requests(&after), total_requests(&before), "{case}: reached the integration");
                    }
                    if endpoint == "execute" && expect == Expect::Served {
                        assert_eq!(answer.content()["status"], "succeeded", "{case}: {}", answer.raw);
                    }
                }
            }
        }
        // Without userId the client may use any of its users' tokens (Mesh's semantics: the client is the caller).
        let bob_write =
            tokens.iter().find(|t| t.0 == "write" && t.1 == "otherUser").map(|t| t.2.clone()).unwrap_or_default();
        let bob =
            post(&app, (&c.id, &c.read), "/api/v1/holdings/get", &json!({"authToken": bob_write, "type": BINANCE}))
                .await?;
        assert_eq!(bob.content()["status"], "succeeded", "{}", bob.raw);
        // A preview is bound to its tokenId: bob's token cannot execute alice's preview.
        let alice2 = preview_id(&app, (&c.id, &c.write), &preview_body(&own_write, BINANCE, 0.01)).await?;
        let before = counters(&app).await?;
        let cross = post(
            &app,
            (&c.id, &c.write),
            "/api/v1/transfers/managed/execute",
            &json!({"fromAuthToken": bob_write, "fromType": BINANCE, "previewId": alice2}),
        )
        .await?;
        assert_eq!((cross.code, cross.error_type()), (404, "previewNotFound"), "{}", cross.raw);
        // Another client cannot execute it with its own token either.
        let other_write =
            tokens.iter().find(|t| t.0 == "write" && t.1 == "otherClient").map(|t| t.2.clone()).unwrap_or_default();
        let foreign = post(
            &app,
            (&other.id, &other.write),
            "/api/v1/transfers/managed/execute",
            &json!({"fromAuthToken": other_write, "fromType": BINANCE, "previewId": alice2}),
        )
        .await?;
        assert_eq!((foreign.code, foreign.error_type()), (404, "previewNotFound"), "{}", foreign.raw);
        let after = counters(&app).await?;
        let sends = send_endpoint("binance");
        assert_eq!(after["binance"]["requests"][sends], before["binance"]["requests"][sends]);

        // Deleting works for the owner, with either key, and only then.
        for (i, secret) in [&c.read, &c.write].into_iter().enumerate() {
            let (_, _, token) = &tokens[i * 2];
            let removed = app.remove(&c.id, secret, token, BINANCE).await?;
            assert_eq!(removed.code, 200, "{}", removed.raw);
            let gone =
                post(&app, (&c.id, &c.write), "/api/v1/balance/get", &json!({"authToken": token, "type": BINANCE}))
                    .await?;
            assert_eq!(gone.error_type(), "tokenNotFound");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_validates_each_field_before_calling_the_integration() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let c = &app.client;
    let token = connect_binance(&app, c, &c.write, "alice").await?;
    let before = counters(&app).await?;
    let base = preview_body(&token, BINANCE, 0.01);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"networkId": null}), "missingField", "networkId"),
        (json!({"networkId": "not-a-uuid"}), "invalidField", "networkId"),
        (json!({"networkId": "00000000-0000-0000-0000-000000000001"}), "invalidField", "networkId"),
        (json!({"symbol": null}), "missingField", "symbol"),
        (json!({"symbol": "E T H"}), "invalidField", "symbol"),
        (json!({"toAddress": null}), "missingField", "toAddress"),
        (json!({"toAddress": "0x1234"}), "invalidField", "toAddress"),
        (json!({"networkId": SOLANA, "symbol": "SOL"}), "invalidField", "toAddress"),
        (json!({"amount": null}), "missingField", "amount"),
        (json!({"amount": -1.0}), "invalidField", "amount"),
        (json!({"amount": 0.0}), "invalidField", "amount"),
        (json!({"amountInFiat": 10.0}), "invalidField", "amountInFiat"),
        (json!({"amount": null, "amountInFiat": 10.0, "fiatCurrency": "EUR"}), "invalidField", "fiatCurrency"),
        (json!({"transactionId": "x".repeat(129)}), "invalidField", "transactionId"),
        (json!({"toAuthToken": "t", "toType": "coinbase"}), "invalidField", "toAuthToken"),
        (json!({"isBridging": true}), "invalidField", "isBridging"),
        (json!({"fromAuthToken": null}), "missingField", "fromAuthToken"),
    ];
    for (patch, error_type, field) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().into_iter().flatten() {
            if v.is_null() {
                body.as_object_mut().map(|o| o.remove(k));
            } else {
                body[k] = v.clone();
            }
        }
        let answer = post(&app, (&c.id, &c.write), "/api/v1/transfers/managed/preview", &body).await?;
        assert_eq!((answer.code, answer.error_type()), (400, error_type), "{patch}: {}", answer.raw);
        assert_eq!(answer.body["errorData"]["field"], field, "{patch}: {}", answer.raw);
        assert!(answer.body["message"].as_str().unwrap_or_default().starts_with(field), "{}", answer.raw);
    }
    assert_eq!(total_requests(&counters(&app).await?), total_requests(&before), "validation happens before upstream");

    // The integration's checks name the field too: balance (amount + fee), and the asset on that network.
    let too_much =
        post(&app, (&c.id, &c.write), "/api/v1/transfers/managed/preview", &preview_body(&token, BINANCE, 240.0))
            .await?;
    assert_eq!((too_much.code, too_much.error_type()), (400, "invalidField"), "{}", too_much.raw);
    assert_eq!(too_much.body["errorData"]["field"], "amount");
    let mut btc = preview_body(&token, BINANCE, 0.01);
    btc["symbol"] = json!("BTC");
    let unsupported = post(&app, (&c.id, &c.write), "/api/v1/transfers/managed/preview", &btc).await?;
    assert_eq!(unsupported.body["errorData"]["field"], "symbol", "{}", unsupported.raw);
    Ok(())
}

/// Preview then execute on both sandbox kinds: shapes, fee, balance deducted once, retries answered from the
/// stored result (by previewId, Idempotency-Key and transactionId), key reuse for another transfer refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_execute_once_on_oauth_and_credentials_exchanges() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let w = (c.id.as_str(), c.write.as_str());
        for (ty, exchange, token) in [
            ("coinbase", "coinbase", connect_coinbase(&app, c, &c.write, "alice").await?),
            (BINANCE, "binance", connect_binance(&app, c, &c.write, "alice").await?),
        ] {
            let holdings_before = eth_held(&app, w, &token, ty).await?;
            let mut body = preview_body(&token, ty, 1.5);
            body["transactionId"] = json!(format!("order-{exchange}-1"));
            let preview = post(&app, w, "/api/v1/transfers/managed/preview", &body).await?;
            assert_eq!(preview.code, 200, "{}", preview.raw);
            let result = &preview.content()["previewResult"];
            assert_eq!(result["previewExpiresIn"], 300);
            assert_eq!((result["symbol"].as_str(), result["amount"].as_f64()), (Some("ETH"), Some(1.5)));
            assert_eq!(result["networkName"], "Ethereum");
            assert_eq!(result["networkId"], ETHEREUM);
            assert_eq!(result["clientTransactionId"], format!("order-{exchange}-1"));
            let fee = result["institutionTransferFee"]["fee"].as_f64().unwrap_or_default();
            // Coinbase's v2 API states the network fee only in the send's answer; Binance's config has it.
            assert!(fee > 0.0 || exchange == "coinbase", "{}", preview.raw);
            assert_eq!(result["totalEstimatedAmount"].as_f64(), Some(1.5 + fee));
            assert!(result["amountInFiat"].as_f64().unwrap_or_default() > 0.0);
            let preview_id = result["previewId"].as_str().unwrap_or_default().to_owned();

            let mut exec = json!({"fromAuthToken": token, "fromType": ty, "previewId": preview_id});
            if exchange == "coinbase" {
                // Coinbase asks every send for the user's second factor.
                exec["mfaCode"] = json!("123456");
            }
            let key = format!("key-{exchange}");
            let first = execute_with_key(&app, w, &exec, Some(&key)).await?;
            assert_eq!(first.code, 200, "{}", first.raw);
            assert_eq!(first.content()["status"], "succeeded", "{}", first.raw);
            let transfer = &first.content()["executeTransferResult"];
            let transfer_id = transfer["transferId"].as_str().unwrap_or_default().to_owned();
            assert!(!transfer_id.is_empty());
            assert_eq!((transfer["toAddress"].as_str(), transfer["amount"].as_f64()), (Some(ADDRESS), Some(1.5)));
            assert_eq!(transfer["networkId"], ETHEREUM);
            let fee = transfer["institutionTransferFee"]["fee"].as_f64().unwrap_or_default();
            assert!(fee > 0.0, "the fee taken: {}", first.raw);
            // Retries: the same previewId, with or without the key, and the key alone → the same transfer.
            for key in [Some(key.as_str()), None] {
                let again = execute_with_key(&app, w, &exec, key).await?;
                assert_eq!(
                    again.content()["executeTransferResult"]["transferId"],
                    transfer_id.as_str(),
                    "{}",
                    again.raw
                );
            }
            // A second preview of the same transfer under the same transactionId executes as a retry.
            let repeat = preview_id_of(&app, w, &body).await?;
            let again =
                execute_with_key(&app, w, &json!({"fromAuthToken": token, "fromType": ty, "previewId": repeat}), None)
                    .await?;
            assert_eq!(again.content()["executeTransferResult"]["transferId"], transfer_id.as_str(), "{}", again.raw);
            // The key (or transactionId) reused for a different transfer is refused, not repeated or sent.
            let mut different = preview_body(&token, ty, 0.5);
            different["transactionId"] = json!(format!("order-{exchange}-1"));
            let other_preview = preview_id_of(&app, w, &different).await?;
            let reused = execute_with_key(
                &app,
                w,
                &json!({"fromAuthToken": token, "fromType": ty, "previewId": other_preview}),
                None,
            )
            .await?;
            assert_eq!((reused.code, reused.error_type()), (409, "idempotencyKeyReused"), "{}", reused.raw);
            assert_eq!(reused.body["errorData"]["field"], "transactionId");
            let third = preview_id_of(&app, w, &preview_body(&token, ty, 0.25)).await?;
            let reused = execute_with_key(
                &app,
                w,
                &json!({"fromAuthToken": token, "fromType": ty, "previewId": third}),
                Some(&key),
            )
            .await?;
            assert_eq!((reused.code, reused.error_type()), (409, "idempotencyKeyReused"), "{}", reused.raw);
            assert_eq!(reused.body["errorData"]["field"], "Idempotency-Key");

            // No answer carries the integration's token.
            let record = app.vault.connection_for(c.id.parse()?, token.parse()?).await?;
            let raw_token = app.vault.open_credentials(&record).await?.access_token.expose_secret().to_owned();
            assert!(!preview.raw.contains(&raw_token) && !first.raw.contains(&raw_token));

            let counts = counters(&app).await?;
            assert_eq!(counts[exchange]["transfersCreated"], 1, "{counts}");
            assert_eq!(
                counts[exchange]["requests"][send_endpoint(exchange)],
                1,
                "retries never reach the exchange: {counts}"
            );
            let held = eth_held(&app, w, &token, ty).await?;
            assert!((holdings_before - held - (1.5 + fee)).abs() < 1e-9, "deducted once: {holdings_before} → {held}");
        }
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await?.text().await?;
        assert!(metrics.contains("linkvault_transfers_executed_total 2"), "{metrics}");
    }
    Ok(())
}

async fn preview_id_of(app: &TestApp, creds: (&str, &str), body: &Value) -> Result<String, Error> {
    preview_id(app, creds, body).await
}

async fn eth_held(app: &TestApp, creds: (&str, &str), token: &str, ty: &str) -> Result<f64, Error> {
    let holdings = post(app, creds, "/api/v1/holdings/get", &json!({"authToken": token, "type": ty})).await?;
    let positions = holdings.content()["cryptocurrencyPositions"].as_array().cloned().unwrap_or_default();
    Ok(positions.iter().find(|p| p["symbol"] == "ETH").and_then(|p| p["amount"].as_f64()).unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_executes_transfer_once() -> TestResult {
    for backend in Backend::all() {
        for (ty, exchange) in PROVIDERS {
            eprintln!("on {backend:?}: {ty}");
            let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
            let c = &app.client;
            let w = (c.id.clone(), c.write.clone());
            let token = common::connect(&app, c, &c.write, "alice", ty).await?;
            let preview = preview_id(&app, (&w.0, &w.1), &preview_body(&token, ty, 0.1)).await?;
            let body = execute_body(&token, ty, &preview);
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..10 {
                let (http, base, body, w) = (app.http.clone(), app.base.clone(), body.clone(), w.clone());
                tasks.spawn(async move {
                    let mut req = http
                        .post(format!("{base}/api/v1/transfers/managed/execute"))
                        .header("X-Client-Id", &w.0)
                        .header("X-Client-Secret", &w.1)
                        .header("content-type", "application/json");
                    if i % 2 == 0 {
                        req = req.header("Idempotency-Key", "double-click");
                    }
                    let res = req.body(body.to_string()).send().await?;
                    res.json::<Value>().await
                });
            }
            let mut ids = std::collections::BTreeSet::new();
            let (mut succeeded, mut in_progress) = (0, 0);
            while let Some(joined) = tasks.join_next().await {
                let answer = joined??;
                match answer["content"]["status"].as_str() {
                    Some("succeeded") => {
                        succeeded += 1;
                        ids.insert(
                            answer["content"]["executeTransferResult"]["transferId"].as_str().unwrap_or("").to_owned(),
                        );
                    }
                    Some("inProgress") => in_progress += 1,
                    _ => panic!("unexpected answer {answer}"),
                }
            }
            assert!(
                succeeded >= 1 && succeeded + in_progress == 10,
                "{succeeded} succeeded, {in_progress} in progress"
            );
            assert_eq!(ids.len(), 1, "every success names the same transfer: {ids:?}");
            let counts = counters(&app).await?;
            assert_eq!(counts[exchange]["transfersCreated"], 1, "{counts}");
            assert_eq!(counts[exchange]["requests"][send_endpoint(exchange)], 1, "{counts}");
            // Once settled, a retry reports the one transfer.
            let settled = execute_with_key(&app, (&w.0, &w.1), &body, None).await?;
            assert_eq!(
                settled.content()["executeTransferResult"]["transferId"].as_str(),
                ids.first().map(String::as_str)
            );
        }
    }
    Ok(())
}

/// A process that claimed an execution and sent the transfer, then died before recording it: the retry takes
/// the abandoned claim over, sends again under the same idempotency key, and gets the first transfer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_write_back_does_not_transfer_twice() -> TestResult {
    for backend in Backend::all() {
        for (ty, exchange) in PROVIDERS {
            eprintln!("on {backend:?}: {ty}");
            let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
            let c = &app.client;
            let w = (c.id.as_str(), c.write.as_str());
            let token = common::connect(&app, c, &c.write, "alice", ty).await?;
            let preview = preview_id(&app, w, &preview_body(&token, ty, 0.2)).await?;
            let preview_uuid: uuid::Uuid = preview.parse()?;
            let client_id: linkvault_domain::ClientId = c.id.parse()?;
            let token_id: linkvault_domain::TokenId = token.parse()?;

            // The dead process's claim, its lease already over (as after a crash)...
            let store = &app.fresh.store;
            let now = app.vault.clock().now();
            let stored = store.get_transfer_preview(client_id, preview_uuid).await?.ok_or("preview stored")?;
            let dead = TransferExecutionRecord {
                preview_id: preview_uuid,
                client_id,
                token_id,
                client_transaction_id: None,
                idempotency_key: None,
                fingerprint: "written by the dead process".into(),
                state: ExecutionState::Pending,
                attempt: 1,
                lease_until: now - time::Duration::seconds(1),
                result: None,
                transfer_id: None,
                created_at: now,
                updated_at: now,
                sent: None,
                follow: linkvault_storage::TransferFollow::default(),
            };
            assert_eq!(store.claim_transfer_execution(&dead).await?, linkvault_storage::ExecutionClaim::Claimed);
            // ...and the send it made, under the key derived from the previewId.
            let record = app.vault.connection_for(client_id, token_id).await?;
            let credentials = app.vault.open_credentials(&record).await?;
            let mut catalog = Catalog::embedded();
            catalog.point_at_sandbox(&format!("{}/sandbox", app.base))?;
            let integration = catalog.get(ty).ok_or("no such integration")?;
            let details: Value = serde_json::from_str(&stored.details)?;
            let api = ExchangeApi::new(HttpLimits::default())?;
            let credential =
                Credential::of_stored(integration, &credentials.access_token, credentials.refresh_token.as_ref());
            let (adapter, call) = api.adapter(integration, credential)?;
            let request = SendRequest {
                symbol: "ETH".into(),
                network: "ethereum".into(),
                address: ADDRESS.into(),
                tag: None,
                amount: details["amount"].as_f64().unwrap_or_default(),
                idem: linkvault_server::upstream_idempotency_key(preview_uuid),
                // Uphold commits the quote the preview made.
                quote_id: details["quoteId"].as_str().map(str::to_owned),
                mfa_code: (exchange == "coinbase").then(|| secrecy::SecretString::from("123456")),
            };
            let SendOutcome::Sent(sent) = adapter.send(call, &request).await? else {
                return Err("the exchange asked for a second factor".into());
            };

            let retry = post(&app, w, "/api/v1/transfers/managed/execute", &execute_body(&token, ty, &preview)).await?;
            assert_eq!(retry.content()["status"], "succeeded", "{}", retry.raw);
            assert_eq!(retry.content()["executeTransferResult"]["transferId"].as_str(), Some(sent.id.as_str()));
            let counts = counters(&app).await?;
            assert_eq!(counts[exchange]["transfersCreated"], 1, "the retry got the first transfer back: {counts}");
            let row = store.find_transfer_execution(client_id, preview_uuid, None, None).await?.ok_or("row")?;
            assert_eq!(
                (row.state, row.attempt, row.transfer_id.as_deref()),
                (ExecutionState::Succeeded, 2, Some(sent.id.as_str()))
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_and_reauth() -> TestResult {
    let clock = std::sync::Arc::new(linkvault_domain::ManualClock::new(time::OffsetDateTime::now_utc()));
    let app =
        spawn_app_with(Backend::Sqlite, Options { sandbox: true, clock: Some(clock.clone()), ..Options::default() })
            .await?;
    let c = &app.client;
    let w = (c.id.as_str(), c.write.as_str());
    let token = connect_binance(&app, c, &c.write, "alice").await?;
    let unknown = post(
        &app,
        w,
        "/api/v1/transfers/managed/execute",
        &json!({"fromAuthToken": token, "fromType": BINANCE, "previewId": uuid::Uuid::new_v4()}),
    )
    .await?;
    assert_eq!((unknown.code, unknown.error_type()), (404, "previewNotFound"), "{}", unknown.raw);
    let malformed = post(
        &app,
        w,
        "/api/v1/transfers/managed/execute",
        &json!({"fromAuthToken": token, "fromType": BINANCE, "previewId": "nope"}),
    )
    .await?;
    assert_eq!((malformed.code, malformed.error_type()), (400, "invalidField"), "{}", malformed.raw);

    let done = preview_id(&app, w, &preview_body(&token, BINANCE, 0.01)).await?;
    let late = preview_id(&app, w, &preview_body(&token, BINANCE, 0.01)).await?;
    let exec = |p: &str| json!({"fromAuthToken": token, "fromType": BINANCE, "previewId": p});
    let first = post(&app, w, "/api/v1/transfers/managed/execute", &exec(&done)).await?;
    assert_eq!(first.content()["status"], "succeeded", "{}", first.raw);
    clock.advance(time::Duration::seconds(301));
    let expired = post(&app, w, "/api/v1/transfers/managed/execute", &exec(&late)).await?;
    assert_eq!((expired.code, expired.error_type()), (400, "previewExpired"), "{}", expired.raw);
    // An execute that started in time is still answered after the preview's expiry.
    let again = post(&app, w, "/api/v1/transfers/managed/execute", &exec(&done)).await?;
    assert_eq!(again.content()["executeTransferResult"], first.content()["executeTransferResult"]);

    // The session ends at the exchange: the user must sign in again, and nothing was claimed.
    let fresh = preview_id(&app, w, &preview_body(&token, BINANCE, 0.01)).await?;
    app.http.post(format!("{}/sandbox/admin/binance/expire-sessions", app.base)).send().await?;
    let reauth = post(&app, w, "/api/v1/transfers/managed/execute", &exec(&fresh)).await?;
    assert_eq!((reauth.code, reauth.error_type()), (400, "reauthenticationRequired"), "{}", reauth.raw);
    let preview = post(&app, w, "/api/v1/transfers/managed/preview", &preview_body(&token, BINANCE, 0.01)).await?;
    assert_eq!(preview.error_type(), "reauthenticationRequired", "{}", preview.raw);
    Ok(())
}
