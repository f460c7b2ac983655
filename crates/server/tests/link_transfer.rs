//! The Link page's transfer flow API (`/link/api/transfer/*`) against the sandbox exchanges, on both backends:
//! configure → preview → execute (Coinbase's second factor) → status with exactly one send per preview, the
//! refusals the page shows (insufficient balance, below minimum, unsupported network, expired preview), and the
//! server-side rules: read-scoped sessions have no transfer flow, tokenIds are this session's user's, client's
//! and scope's only, a fixed `integrationId` and `restrictMultipleAccounts` hold, `transferOptions` are
//! validated at `POST /api/v1/linktoken`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{
    Answer, Options, TestApp, TestResult, connect, create_client, link_post, link_session, link_start, link_token_as,
    spawn_app_with,
};
use linkvault_domain::ManualClock;
use linkvault_storage::testing::Backend;
use serde_json::{Value, json};

const BASE: &str = "aa883b03-120d-477c-a588-37c2afd3ca71";
const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

/// (integration type, the sandbox exchange serving it)
const EXCHANGES: &[(&str, &str)] =
    &[("coinbase", "coinbase"), ("uphold", "uphold"), ("binanceInternational", "binance")];

fn usdc_on_base() -> Value {
    json!({"toAddresses": [{"networkId": BASE, "symbol": "USDC", "address": ADDRESS}], "transactionId": "order-1"})
}

async fn sandbox_app(backend: Backend) -> Result<TestApp, Box<dyn std::error::Error>> {
    spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await
}

/// A write-scoped Link session for `user` with `options`.
async fn write_session(app: &TestApp, user: &str, options: Value) -> Result<String, Box<dyn std::error::Error>> {
    let c = &app.client;
    let token = link_token_as(app, &c.id, &c.write, json!({"userId": user, "transferOptions": options})).await?;
    Ok(link_session(app, &token).await)
}

async fn transfer(app: &TestApp, bearer: &str, step: &str, body: Value) -> Answer {
    link_post(app, &format!("/link/api/transfer/{step}"), Some(bearer), body).await
}

fn reason(answer: &Answer) -> &str {
    answer.body["errorData"]["reason"].as_str().unwrap_or("<none>")
}

fn has_display(answer: &Answer) -> bool {
    answer.body["displayMessage"].as_str().is_some_and(|m| !m.is_empty())
}

/// A refusal as the page gets it: the HTTP code, the errorType and a message for the user.
fn assert_refused(answer: &Answer, code: u16, error_type: &str, context: &str) {
    assert_eq!((answer.code, answer.error_type()), (code, error_type), "{context}: {}", answer.raw);
    assert!(has_display(answer), "{context}: no displayMessage: {}", answer.raw);
}

fn preview_body(token: &str, symbol: &str, network: &str, amount: f64) -> Value {
    json!({"tokenId": token, "symbol": symbol, "networkId": network, "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exchange_runs_the_link_transfer_flow_with_one_send() -> TestResult {
    for backend in Backend::all() {
        for (ty, exchange) in EXCHANGES {
            eprintln!("on {backend:?}: {ty}");
            let app = sandbox_app(backend).await?;
            let c = &app.client;
            let token = connect(&app, c, &c.write, "alice", ty).await?;
            let link =
                link_token_as(&app, &c.id, &c.write, json!({"userId": "alice", "transferOptions": usdc_on_base()}))
                    .await?;
            let started = link_start(&app, &link).await;
            assert_eq!(started.code, 200, "{}", started.raw);
            let s = started.content();
            assert_eq!((s["scope"].as_str(), s["userId"].as_str()), (Some("write"), Some("alice")));
            assert_eq!(s["client"]["name"], "test app");
            assert_eq!(s["integrationId"], Value::Null);
            let destination = &s["transferOptions"]["toAddresses"][0];
            assert_eq!(
                (destination["networkName"].as_str(), destination["address"].as_str()),
                (Some("Base"), Some(ADDRESS)),
                "{}",
                started.raw
            );
            assert_eq!(s["transferOptions"]["transactionId"], "order-1");
            let bearer = s["sessionToken"].as_str().unwrap().to_owned();

            let configured = transfer(&app, &bearer, "configure", json!({"tokenId": token})).await;
            common::assert_content_status(&configured, "succeeded");
            let holdings = configured.content()["holdings"].as_array().cloned().unwrap_or_default();
            let usdc = holdings.iter().find(|h| h["symbol"] == "USDC").ok_or("no USDC holding")?;
            assert_eq!(usdc["eligibleForTransfer"], true, "{usdc}");
            assert_eq!(usdc["availableBalance"], 250_000.0);
            assert_eq!(usdc["networks"][0]["id"], BASE);
            assert_eq!(usdc["networks"][0]["toAddress"], ADDRESS);
            let btc = holdings.iter().find(|h| h["symbol"] == "BTC").ok_or("no BTC holding")?;
            assert_eq!(
                (btc["eligibleForTransfer"].as_bool(), btc["ineligibilityReason"].as_str()),
                (Some(false), Some("notSupportedForTransferByTarget")),
                "{btc}"
            );
            assert_eq!(holdings[0]["symbol"], "USDC", "eligible holdings come first");

            let preview = transfer(&app, &bearer, "preview", preview_body(&token, "USDC", BASE, 5.0)).await;
            common::assert_content_status(&preview, "succeeded");
            let result = &preview.content()["previewResult"];
            assert_eq!((result["toAddress"].as_str(), result["amount"].as_f64()), (Some(ADDRESS), Some(5.0)));
            assert_eq!(result["clientTransactionId"], "order-1");
            assert!(result["previewExpiresIn"].as_i64().is_some_and(|s| s > 0), "{}", preview.raw);
            let preview_id = result["previewId"].as_str().unwrap().to_owned();

            let execute = json!({"tokenId": token, "previewId": preview_id});
            let mut done = transfer(&app, &bearer, "execute", execute.clone()).await;
            if *ty == "coinbase" {
                assert_eq!(done.content()["status"], "mfaRequired", "{}", done.raw);
                assert_eq!(app.sandbox_counters().await?[exchange]["transfersCreated"], 0);
                let mut with_code = execute.clone();
                with_code["mfaCode"] = json!("123456");
                done = transfer(&app, &bearer, "execute", with_code).await;
            }
            common::assert_content_status(&done, "succeeded");
            let sent = &done.content()["executeTransferResult"];
            let transfer_id = sent["transferId"].as_str().unwrap_or_default().to_owned();
            assert!(!transfer_id.is_empty(), "{}", done.raw);
            assert_eq!((sent["toAddress"].as_str(), sent["networkId"].as_str()), (Some(ADDRESS), Some(BASE)));
            let again = transfer(&app, &bearer, "execute", execute).await;
            assert_eq!(again.content()["executeTransferResult"]["transferId"], transfer_id.as_str(), "{}", again.raw);
            assert_eq!(app.sandbox_counters().await?[exchange]["transfersCreated"], 1, "one send at {exchange}");

            let status = transfer(&app, &bearer, "status", json!({"tokenId": token, "transferId": transfer_id})).await;
            assert_eq!(status.code, 200, "{}", status.raw);
            assert_eq!(status.content()["transferId"], transfer_id.as_str());
            assert!(matches!(status.content()["status"].as_str(), Some("pending" | "succeeded")), "{}", status.raw);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_reason_and_a_message_for_the_user() -> TestResult {
    for backend in Backend::all() {
        let app = sandbox_app(backend).await?;
        let c = &app.client;
        let token = connect(&app, c, &c.write, "alice", "uphold").await?;
        let bearer = write_session(&app, "alice", usdc_on_base()).await?;
        let preview = |amount: f64| preview_body(&token, "USDC", BASE, amount);

        for (amount, why) in [(1_000_000.0, "insufficientBalance"), (0.5, "belowMinimum")] {
            let refused = transfer(&app, &bearer, "preview", preview(amount)).await;
            assert_refused(&refused, 400, "invalidField", why);
            assert_eq!(reason(&refused), why, "{}", refused.raw);
        }
        let elsewhere = transfer(&app, &bearer, "preview", preview_body(&token, "USDC", ETHEREUM, 5.0)).await;
        assert_eq!((elsewhere.code, reason(&elsewhere)), (400, "unsupportedNetwork"), "{}", elsewhere.raw);
        assert_eq!(elsewhere.body["errorData"]["field"], "networkId");
        let other_asset = transfer(&app, &bearer, "preview", preview_body(&token, "ETH", BASE, 1.0)).await;
        assert_eq!((other_asset.code, reason(&other_asset)), (400, "unsupportedAsset"), "{}", other_asset.raw);
        assert_eq!(app.sandbox_counters().await?["uphold"]["transfersCreated"], 0, "nothing was sent");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_preview_is_refused_and_sends_nothing() -> TestResult {
    for backend in Backend::all() {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let options = Options { sandbox: true, clock: Some(clock.clone()), ..Options::default() };
        let app = spawn_app_with(backend, options).await?;
        let c = &app.client;
        let token = connect(&app, c, &c.write, "alice", "binanceInternational").await?;
        let bearer = write_session(&app, "alice", usdc_on_base()).await?;
        let preview = transfer(&app, &bearer, "preview", preview_body(&token, "USDC", BASE, 5.0)).await;
        assert_eq!(preview.code, 200, "{}", preview.raw);
        let preview_id = preview.content()["previewResult"]["previewId"].clone();
        clock.advance(time::Duration::seconds(301));
        let late = transfer(&app, &bearer, "execute", json!({"tokenId": token, "previewId": preview_id})).await;
        assert_refused(&late, 400, "previewExpired", "an expired preview");
        assert_eq!(app.sandbox_counters().await?["binance"]["transfersCreated"], 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_scoped_session_has_no_transfer_flow() -> TestResult {
    for backend in Backend::all() {
        let app = sandbox_app(backend).await?;
        let c = &app.client;
        let token = connect(&app, c, &c.read, "alice", "uphold").await?;
        let link =
            link_token_as(&app, &c.id, &c.read, json!({"userId": "alice", "transferOptions": usdc_on_base()})).await?;
        let started = link_start(&app, &link).await;
        assert_eq!(started.content()["scope"], "read");
        assert_eq!(started.content()["transferOptions"], Value::Null, "{}", started.raw);
        let bearer = started.content()["sessionToken"].as_str().unwrap().to_owned();
        for (step, body) in [
            ("configure", json!({"tokenId": token})),
            ("preview", preview_body(&token, "USDC", BASE, 5.0)),
            ("execute", json!({"tokenId": token, "previewId": "00000000-0000-4000-8000-000000000000"})),
            ("status", json!({"tokenId": token, "transferId": "x"})),
        ] {
            assert_refused(&transfer(&app, &bearer, step, body).await, 403, "keyScopeInsufficient", step);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_clients_or_scopes_token_is_not_found() -> TestResult {
    for backend in Backend::all() {
        let app = sandbox_app(backend).await?;
        let c = &app.client;
        let bobs = connect(&app, c, &c.write, "bob", "uphold").await?;
        let alices_read = connect(&app, c, &c.read, "alice", "uphold").await?;
        let other = create_client(&app.vault, "other app").await?;
        let foreign = connect(&app, &other, &other.write, "alice", "uphold").await?;
        let bearer = write_session(&app, "alice", usdc_on_base()).await?;
        let mut answers = Vec::new();
        for token in [&bobs, &alices_read, &foreign, &"00000000-0000-4000-8000-000000000000".to_owned()] {
            let configure = transfer(&app, &bearer, "configure", json!({"tokenId": token})).await;
            let preview = transfer(&app, &bearer, "preview", preview_body(&token, "USDC", BASE, 5.0)).await;
            for answer in [configure, preview] {
                assert_eq!((answer.code, answer.error_type()), (404, "tokenNotFound"), "{}", answer.raw);
                answers.push(answer.body["message"].clone());
            }
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "indistinguishable: {answers:?}");
    }
    Ok(())
}

async fn integration_id(app: &TestApp, ty: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let c = &app.client;
    let list = app.call(reqwest::Method::GET, "/api/v1/integrations", Some((&c.id, &c.read)), None).await?;
    let items = list.content()["items"].as_array().cloned().unwrap_or_default();
    Ok(items.iter().find(|i| i["type"] == ty).ok_or("no such integration")?["id"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_integration_id_holds_on_the_server() -> TestResult {
    for backend in Backend::all() {
        let app = sandbox_app(backend).await?;
        let c = &app.client;
        let coinbase = connect(&app, c, &c.write, "alice", "coinbase").await?;
        let uphold = connect(&app, c, &c.write, "alice", "uphold").await?;
        let uphold_id = integration_id(&app, "uphold").await?;
        let link = link_token_as(
            &app,
            &c.id,
            &c.write,
            json!({"userId": "alice", "integrationId": uphold_id, "transferOptions": usdc_on_base()}),
        )
        .await?;
        let started = link_start(&app, &link).await;
        assert_eq!(started.content()["integrationId"], uphold_id);
        let bearer = started.content()["sessionToken"].as_str().unwrap().to_owned();

        let refused = transfer(&app, &bearer, "configure", json!({"tokenId": coinbase})).await;
        assert_refused(&refused, 403, "integrationNotAllowed", "another integration's tokenId");
        assert_eq!(transfer(&app, &bearer, "configure", json!({"tokenId": uphold})).await.code, 200);
        let oauth = link_post(&app, "/link/api/oauth/start", Some(&bearer), json!({"type": "coinbase"})).await;
        assert_refused(&oauth, 403, "integrationNotAllowed", "OAuth sign-in elsewhere");
        let credentials = link_post(
            &app,
            "/link/api/credentials",
            Some(&bearer),
            json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"}),
        )
        .await;
        assert_refused(&credentials, 403, "integrationNotAllowed", "credentials sign-in elsewhere");
        assert_eq!(
            link_post(&app, "/link/api/oauth/start", Some(&bearer), json!({"type": "uphold"})).await.code,
            200,
            "the fixed integration signs in"
        );
        let returned = link_post(
            &app,
            "/link/api/return-tokens",
            Some(&bearer),
            json!({"tokens": [{"accessToken": coinbase}, {"accessToken": uphold}]}),
        )
        .await;
        let connections = returned.content()["connections"].as_array().cloned().unwrap_or_default();
        assert_eq!(connections.len(), 1, "{}", returned.raw);
        assert_eq!(connections[0]["brokerType"], "uphold");
    }
    Ok(())
}

async fn sign_in_binance_direct(app: &TestApp, bearer: &str) -> Answer {
    let body = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"});
    let first = link_post(app, "/link/api/credentials", Some(bearer), body.clone()).await;
    assert_eq!(first.content()["status"], "mfaRequired", "{}", first.raw);
    let mut with_mfa = body;
    with_mfa["challengeId"] = first.content()["challengeId"].clone();
    with_mfa["mfaCode"] = json!("123456");
    link_post(app, "/link/api/credentials", Some(bearer), with_mfa).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restrict_multiple_accounts_allows_one_connection_per_session() -> TestResult {
    for backend in Backend::all() {
        let app = sandbox_app(backend).await?;
        let c = &app.client;
        for (restrict, second_allowed) in [(None, false), (Some(true), false), (Some(false), true)] {
            let mut body = json!({"userId": "alice"});
            if let Some(r) = restrict {
                body["restrictMultipleAccounts"] = json!(r);
            }
            let bearer = link_session(&app, &link_token_as(&app, &c.id, &c.write, body).await?).await;
            let done = sign_in_binance_direct(&app, &bearer).await;
            assert_eq!(done.content()["status"], "succeeded", "{}", done.raw);
            let again = sign_in_binance_direct(&app, &bearer).await;
            assert_eq!(again.content()["status"], "succeeded", "the same integration again: {}", again.raw);
            let other = link_post(&app, "/link/api/oauth/start", Some(&bearer), json!({"type": "coinbase"})).await;
            if second_allowed {
                assert_eq!(other.code, 200, "{}", other.raw);
            } else {
                assert_refused(&other, 403, "integrationNotAllowed", "a second integration");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transfer_options_are_refused_at_the_link_token_naming_the_field() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let c = &app.client;
        let cases = [
            (
                json!({"toAddresses": [{"networkId": BASE, "symbol": "USDC", "address": "0x123"}]}),
                "transferOptions.toAddresses[0].address",
            ),
            (
                json!({"toAddresses": [{"networkId": "00000000-0000-4000-8000-000000000000", "symbol": "USDC", "address": ADDRESS}]}),
                "transferOptions.toAddresses[0].networkId",
            ),
            (
                json!({"toAddresses": [{"networkId": BASE, "symbol": "DOGE", "address": ADDRESS}]}),
                "transferOptions.toAddresses[0].symbol",
            ),
            (
                json!({"toAddresses": [{"networkId": BASE, "symbol": "USDC", "address": ADDRESS, "amount": 0}]}),
                "transferOptions.toAddresses[0].amount",
            ),
            (json!({"amountInFiat": -5}), "transferOptions.amountInFiat"),
            (json!({"transactionId": "t".repeat(200)}), "transferOptions.transactionId"),
            (json!([1, 2]), "transferOptions"),
        ];
        for (options, field) in cases {
            let answer = app
                .call(
                    reqwest::Method::POST,
                    "/api/v1/linktoken",
                    Some((&c.id, &c.write)),
                    Some(json!({"userId": "alice", "transferOptions": options}).to_string()),
                )
                .await?;
            assert_eq!(answer.code, 400, "{}", answer.raw);
            assert_eq!(answer.body["errorData"]["field"], field, "{}", answer.raw);
            assert!(answer.body["message"].as_str().is_some_and(|m| m.starts_with(field)), "{}", answer.raw);
        }
    }
    Ok(())
}
