//! The token-backed APIs against every sandbox exchange in its provider's own wire format (Coinbase App API v2,
//! Uphold v0, Binance Spot with an API key, and the Binance username/password integration), over HTTP on both
//! backends: holdings, balances, value, portfolio, deposit address, preview, execute and transfer history in
//! Mesh's shapes with the sandbox's numbers; the sandbox's request log holds only the providers' documented
//! paths; Coinbase two-factor sends; a revoked Binance key makes the connection `reauthRequired` with its webhook.

mod common;
#[path = "../../webhooks/tests/support/receiver.rs"]
mod receiver;

use std::sync::Arc;

use common::{Answer, ClientCreds, Options, TestApp, TestResult, connect, spawn_app_with};
use linkvault_domain::ClientId;
use linkvault_storage::testing::Backend;
use linkvault_webhooks::{DeliveryWorker, WebhookSecret, WorkerConfig};
use receiver::Receiver;
use serde_json::{Value, json};

const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
const BASE: &str = "aa883b03-120d-477c-a588-37c2afd3ca71";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

/// (integration type, the sandbox exchange serving it, the documented path prefixes its API uses)
const EXCHANGES: &[(&str, &str, &[&str])] = &[
    ("coinbase", "coinbase", &["/v2/"]),
    ("uphold", "uphold", &["/v0/"]),
    ("binanceInternational", "binance", &["/api/v3/", "/sapi/v1/"]),
    ("binanceInternationalDirect", "binance", &["/api/v3/", "/sapi/v1/"]),
];

/// The sandbox user `Mesh`: (symbol, amount, USD price).
const MESH_HOLDINGS: &[(&str, f64, f64)] =
    &[("BTC", 12.5, 65_000.0), ("ETH", 240.0, 3_500.0), ("SOL", 5_000.0, 150.0), ("USDC", 250_000.0, 1.0)];
const MESH_CASH: f64 = 10_000_000.0;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

fn position<'a>(answer: &'a Answer, symbol: &str) -> Option<&'a Value> {
    answer.content()["cryptocurrencyPositions"].as_array()?.iter().find(|p| p["symbol"] == symbol)
}

/// Every request the sandbox counted for `exchange` is one of the provider's documented paths: none of the
/// invented `holdings`, `balances` or `transfers/quote` paths linkvault used to call.
async fn assert_only_documented_paths(app: &TestApp, exchange: &str, prefixes: &[&str]) -> TestResult {
    let counters = app.sandbox_counters().await?;
    let requests = counters[exchange]["requests"].as_object().cloned().unwrap_or_default();
    assert!(!requests.is_empty(), "{exchange}: the sandbox counted no request: {counters}");
    for endpoint in requests.keys() {
        let (method, path) = endpoint.split_once(' ').unwrap_or(("", endpoint));
        assert!(matches!(method, "GET" | "POST" | "DELETE" | "PUT" | "PATCH"), "{exchange}: {endpoint}");
        assert!(prefixes.iter().any(|p| path.starts_with(p)), "{exchange}: {endpoint} is not a documented path");
        for invented in ["holdings", "balances", "transfers/quote"] {
            assert!(!path.contains(invented), "{exchange}: {endpoint} is an invented path");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_answers_in_mesh_shapes_with_the_sandbox_numbers() -> TestResult {
    for backend in Backend::all() {
        for (ty, exchange, prefixes) in EXCHANGES {
            eprintln!("on {backend:?}: {ty}");
            let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
            let c = &app.client;
            let r = (c.id.as_str(), c.read.as_str());
            let token = connect(&app, c, &c.read, "alice", ty).await?;
            let body = json!({"authToken": token, "type": ty});

            let holdings = app.post(r, "/api/v1/holdings/get", &body).await?;
            assert_eq!(
                (holdings.code, holdings.content()["status"].as_str()),
                (200, Some("succeeded")),
                "{}",
                holdings.raw
            );
            assert_eq!(holdings.content()["type"], *ty);
            for (symbol, amount, price) in MESH_HOLDINGS {
                let p = position(&holdings, symbol).ok_or_else(|| format!("{ty}: no {symbol}: {}", holdings.raw))?;
                assert!(close(p["amount"].as_f64().unwrap_or_default(), *amount), "{ty} {symbol}: {p}");
                assert!(close(p["lastPrice"].as_f64().unwrap_or_default(), *price), "{ty} {symbol}: {p}");
                assert!(close(p["marketValue"].as_f64().unwrap_or_default(), amount * price), "{ty} {symbol}: {p}");
            }

            let balance = app.post(r, "/api/v1/balance/get", &body).await?;
            assert_eq!(balance.code, 200, "{}", balance.raw);
            assert!(
                close(balance.content()["totalCashUsdValue"].as_f64().unwrap_or_default(), MESH_CASH),
                "{}",
                balance.raw
            );

            let value = app.post(r, "/api/v1/holdings/value", &body).await?;
            assert_eq!(value.code, 200, "{}", value.raw);
            let crypto: f64 = MESH_HOLDINGS.iter().map(|(_, a, p)| a * p).sum();
            assert!(
                close(value.content()["cryptocurrenciesValue"].as_f64().unwrap_or_default(), crypto),
                "{}",
                value.raw
            );
            assert!(close(value.content()["fiatValue"].as_f64().unwrap_or_default(), MESH_CASH), "{}", value.raw);
            assert!(close(value.content()["totalValue"].as_f64().unwrap_or_default(), crypto + MESH_CASH));

            let address = app
                .post(
                    r,
                    "/api/v1/transfers/managed/address/get",
                    &json!({"authToken": token, "type": ty, "symbol": "ETH", "networkId": ETHEREUM}),
                )
                .await?;
            assert_eq!(address.code, 200, "{}", address.raw);
            let text = address.content()["address"].as_str().unwrap_or_default();
            assert!(text.starts_with("0x") && text.len() == 42, "{}", address.raw);
            assert_eq!(
                (address.content()["symbol"].as_str(), address.content()["networkId"].as_str()),
                (Some("ETH"), Some(ETHEREUM))
            );

            let history = app.post(r, "/api/v1/transfers/list", &body).await?;
            assert_eq!(history.code, 200, "{}", history.raw);
            assert_eq!(history.content()["total"], 0, "{}", history.raw);

            assert_only_documented_paths(&app, exchange, prefixes).await?;
        }
    }
    Ok(())
}

/// Preview → execute (with the Coinbase second factor) → history, and a retried execute, on every exchange:
/// exactly one send at the sandbox, funds debited once, the transfer listed by `transfers/list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_through_each_providers_send_exactly_once() -> TestResult {
    for backend in Backend::all() {
        for (ty, exchange, prefixes) in EXCHANGES {
            eprintln!("on {backend:?}: {ty}");
            let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
            let c = &app.client;
            let w = (c.id.as_str(), c.write.as_str());
            let token = connect(&app, c, &c.write, "alice", ty).await?;
            let preview_body = json!({"fromAuthToken": token, "fromType": ty, "networkId": BASE, "symbol": "USDC",
                                      "toAddress": ADDRESS, "amount": 5.0});
            let preview = app.post(w, "/api/v1/transfers/managed/preview", &preview_body).await?;
            assert_eq!(
                (preview.code, preview.content()["status"].as_str()),
                (200, Some("succeeded")),
                "{}",
                preview.raw
            );
            let result = &preview.content()["previewResult"];
            assert_eq!(
                (result["symbol"].as_str(), result["amount"].as_f64()),
                (Some("USDC"), Some(5.0)),
                "{}",
                preview.raw
            );
            assert_eq!(result["networkId"], BASE);
            let quoted_fee = result["institutionTransferFee"]["fee"].as_f64().unwrap_or_default();
            // Coinbase's v2 API states the network fee only in the send's answer; the others quote it.
            assert!(quoted_fee > 0.0 || *ty == "coinbase", "{}", preview.raw);
            let preview_id = result["previewId"].as_str().unwrap_or_default().to_owned();

            let execute = json!({"fromAuthToken": token, "fromType": ty, "previewId": preview_id});
            let mut first = app.post(w, "/api/v1/transfers/managed/execute", &execute).await?;
            if *ty == "coinbase" {
                // Coinbase asks for its second factor on sends; nothing is sent until it is given.
                assert_eq!(first.content()["status"], "mfaRequired", "{}", first.raw);
                assert_eq!(app.sandbox_counters().await?[exchange]["transfersCreated"], 0);
                let mut with_code = execute.clone();
                with_code["mfaCode"] = json!("123456");
                first = app.post(w, "/api/v1/transfers/managed/execute", &with_code).await?;
            }
            assert_eq!((first.code, first.content()["status"].as_str()), (200, Some("succeeded")), "{}", first.raw);
            let transfer = &first.content()["executeTransferResult"];
            let transfer_id = transfer["transferId"].as_str().unwrap_or_default().to_owned();
            assert!(!transfer_id.is_empty(), "{}", first.raw);
            assert_eq!((transfer["toAddress"].as_str(), transfer["symbol"].as_str()), (Some(ADDRESS), Some("USDC")));
            let fee = transfer["institutionTransferFee"]["fee"].as_f64().unwrap_or_default();
            assert!(fee > 0.0, "the fee taken: {}", first.raw);
            let again = app.post(w, "/api/v1/transfers/managed/execute", &execute).await?;
            assert_eq!(again.content()["executeTransferResult"]["transferId"], transfer_id.as_str(), "{}", again.raw);
            assert_eq!(app.sandbox_counters().await?[exchange]["transfersCreated"], 1, "one send at {exchange}");

            let holdings = app.post(w, "/api/v1/holdings/get", &json!({"authToken": token, "type": ty})).await?;
            let usdc = position(&holdings, "USDC").and_then(|p| p["amount"].as_f64()).unwrap_or_default();
            assert!(close(usdc, 250_000.0 - 5.0 - fee), "debited once: {usdc}");

            let history = app.post(w, "/api/v1/transfers/list", &json!({"authToken": token, "type": ty})).await?;
            assert_eq!(history.content()["total"], 1, "{}", history.raw);
            let listed = &history.content()["transfers"][0];
            assert_eq!(
                (listed["type"].as_str(), listed["symbol"].as_str()),
                (Some("withdrawal"), Some("USDC")),
                "{}",
                history.raw
            );
            assert_eq!(listed["targetAddress"], ADDRESS);
            assert!(close(listed["amount"].as_f64().unwrap_or_default(), 5.0), "{}", history.raw);
            assert_only_documented_paths(&app, exchange, prefixes).await?;
        }
    }
    Ok(())
}

/// The portfolio endpoints sum every connection of the end user, and only that user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portfolio_sums_every_connection_of_the_user() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let r = (c.id.as_str(), c.read.as_str());
        for ty in ["coinbase", "uphold", "binanceInternational"] {
            connect(&app, c, &c.read, "alice", ty).await?;
        }
        connect(&app, c, &c.read, "bob", "coinbase").await?;

        let portfolio =
            app.call(reqwest::Method::GET, "/api/v1/holdings/portfolio?UserId=alice", Some(r), None).await?;
        assert_eq!(portfolio.code, 200, "{}", portfolio.raw);
        let positions = portfolio.content()["cryptocurrencyPositions"].as_array().cloned().unwrap_or_default();
        for (symbol, amount, price) in MESH_HOLDINGS {
            let p = positions.iter().find(|p| p["symbol"] == *symbol).ok_or_else(|| format!("no {symbol}"))?;
            assert!(close(p["amount"].as_f64().unwrap_or_default(), 3.0 * amount), "{symbol}: {p}");
            assert!(close(p["marketValue"].as_f64().unwrap_or_default(), 3.0 * amount * price), "{symbol}: {p}");
        }
        let crypto: f64 = MESH_HOLDINGS.iter().map(|(_, a, p)| 3.0 * a * p).sum();
        assert!(close(portfolio.content()["cryptocurrenciesValue"].as_f64().unwrap_or_default(), crypto));
        let shares: f64 = positions.iter().filter_map(|p| p["portfolioPercentage"].as_f64()).sum();
        assert!(close(shares, 100.0), "{shares}");

        let fiat = app.call(reqwest::Method::GET, "/api/v1/balance/portfolio?UserId=alice", Some(r), None).await?;
        assert_eq!(fiat.code, 200, "{}", fiat.raw);
        let usd =
            fiat.content()["fiatBalances"].as_array().and_then(|b| b.iter().find(|b| b["symbol"] == "USD")).cloned();
        assert!(close(usd.and_then(|b| b["cash"].as_f64()).unwrap_or_default(), 3.0 * MESH_CASH), "{}", fiat.raw);

        let nobody = app.call(reqwest::Method::GET, "/api/v1/holdings/portfolio?UserId=carol", Some(r), None).await?;
        assert_eq!(nobody.content()["cryptocurrencyPositions"], json!([]), "{}", nobody.raw);
        let missing = app.call(reqwest::Method::GET, "/api/v1/holdings/portfolio", Some(r), None).await?;
        assert_eq!((missing.code, missing.error_type()), (400, "missingField"), "{}", missing.raw);
    }
    Ok(())
}

/// A Binance API key deleted at the exchange: the next call says the user must reconnect, the connection is
/// `reauthRequired`, the app's webhook endpoint is told, and later calls do not reach Binance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_binance_key_makes_the_connection_reauth_required() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c: &ClientCreds = &app.client;
        let r = (c.id.as_str(), c.read.as_str());
        let secret = WebhookSecret::generate()?;
        let secret_text = secret.expose().to_owned();
        let hooks = Receiver::start(secret).await?;
        let client_id: ClientId = c.id.parse()?;
        app.vault.set_webhook_endpoint(client_id, &hooks.url, &secret_text).await?;
        let deliverer = DeliveryWorker::new(Arc::clone(&app.vault), WorkerConfig::default())?;

        let (token, api_key) = common::connect_binance_key(&app, c, &c.read, "alice").await?;
        let body = json!({"authToken": token, "type": "binanceInternational"});
        let ok = app.post(r, "/api/v1/holdings/get", &body).await?;
        assert_eq!(ok.content()["status"], "succeeded", "{}", ok.raw);

        let deleted = app.http.delete(format!("{}/sandbox/admin/binance/api-keys/{api_key}", app.base)).send().await?;
        assert!(deleted.status().is_success());
        let refused = app.post(r, "/api/v1/holdings/get", &body).await?;
        assert_eq!(refused.content()["status"], "notAuthorized", "{}", refused.raw);
        let status = app.status(&c.id, &c.read, &token).await?;
        assert_eq!(status.content()["status"], "reauthRequired", "{}", status.raw);
        let before = app.sandbox_counters().await?["binance"]["totalRequests"].as_u64().unwrap_or_default();
        let balance = app.post(r, "/api/v1/balance/get", &body).await?;
        assert_eq!((balance.code, balance.error_type()), (400, "reauthenticationRequired"), "{}", balance.raw);
        let after = app.sandbox_counters().await?["binance"]["totalRequests"].as_u64().unwrap_or_default();
        assert_eq!(before, after, "a reauthRequired connection does not reach Binance");
        deliverer.run_once().await?;
        assert_eq!(hooks.types_for(&token), ["connection.created", "connection.reauthRequired"]);
    }
    Ok(())
}

/// A wrong API secret is refused at sign-in, before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_binance_secret_is_refused_at_sign_in() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let c = &app.client;
    let (api_key, _) = common::binance_api_key(&app, false).await?;
    let body = json!({"type": "binanceInternational", "username": api_key, "password": "not-the-secret"});
    let answer = app
        .call(
            reqwest::Method::POST,
            "/api/v1/authenticate?userId=alice",
            Some((&c.id, &c.read)),
            Some(body.to_string()),
        )
        .await?;
    assert!((400..500).contains(&answer.code), "{}", answer.raw);
    assert!(answer.body["message"].as_str().is_some_and(|m| m.to_lowercase().contains("secret")), "{}", answer.raw);
    assert!(!answer.raw.contains("not-the-secret"), "the secret is never echoed: {}", answer.raw);
    let portfolio =
        app.call(reqwest::Method::GET, "/api/v1/holdings/portfolio?UserId=alice", Some((&c.id, &c.read)), None).await?;
    assert_eq!(portfolio.content()["cryptocurrencyPositions"], json!([]), "nothing was stored: {}", portfolio.raw);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_tokens_list_what_linkvault_can_move() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let c = &app.client;
    let r = (c.id.as_str(), c.read.as_str());
    let networks = app.call(reqwest::Method::GET, "/api/v1/transfers/managed/networks", Some(r), None).await?;
    assert_eq!(networks.code, 200, "{}", networks.raw);
    let list = networks.content()["networks"].as_array().cloned().unwrap_or_default();
    let ethereum = list.iter().find(|n| n["id"] == ETHEREUM).ok_or("no Ethereum")?;
    assert_eq!((ethereum["name"].as_str(), ethereum["chainId"].as_str()), (Some("Ethereum"), Some("1")));
    assert!(ethereum["supportedTokens"].as_array().is_some_and(|t| t.contains(&json!("USDC"))));
    assert!(ethereum["supportedBrokerTypes"].as_array().is_some_and(|t| t.contains(&json!("coinbase"))));
    let tokens = app.call(reqwest::Method::GET, "/api/v1/transfers/managed/tokens", Some(r), None).await?;
    let usdc = tokens.content()["tokens"].as_array().and_then(|t| t.iter().find(|t| t["token"] == "USDC")).cloned();
    let usdc = usdc.ok_or("no USDC")?;
    assert!(usdc["networks"].as_array().is_some_and(|n| n.len() >= 3), "{usdc}");
    Ok(())
}
