//! `POST /api/v1/transfers/managed/configure` against the sandbox exchanges on both backends (eligible holdings
//! and networks with the exchange's fees and minimums, each ineligibility reason, validation, scope), and the
//! integration list's Mesh ids and brand `style`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Answer, Options, TestApp, TestResult, connect, spawn_app_with};
use linkvault_storage::testing::Backend;
use serde_json::{Value, json};

const BASE: &str = "aa883b03-120d-477c-a588-37c2afd3ca71";
const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
const SOLANA: &str = "0291810a-5947-424d-9a59-e88bb33e999d";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

fn holding<'a>(answer: &'a Answer, symbol: &str) -> &'a Value {
    answer.content()["holdings"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["symbol"] == symbol))
        .unwrap_or_else(|| panic!("no {symbol}: {}", answer.raw))
}

async fn configure(app: &TestApp, secret: &str, body: Value) -> Answer {
    app.post((&app.client.id, secret), "/api/v1/transfers/managed/configure", &body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_lists_eligible_holdings_networks_fees_and_reasons() -> TestResult {
    for backend in Backend::all() {
        for ty in ["coinbase", "uphold", "binanceInternational"] {
            eprintln!("on {backend:?}: {ty}");
            let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
            let c = &app.client;
            let token = connect(&app, c, &c.write, "alice", ty).await?;
            let to = json!([{"networkId": BASE, "symbol": "USDC", "address": ADDRESS},
                            {"networkId": ETHEREUM, "symbol": "ETH", "address": ADDRESS}]);
            let answer =
                configure(&app, &c.write, json!({"fromAuthToken": token, "fromType": ty, "toAddresses": to})).await;
            common::assert_content_status(&answer, "succeeded");
            assert_eq!(answer.content()["fiatCurrency"], "USD");
            assert_eq!(answer.content()["supportedFiatCurrencies"], json!(["USD"]));
            let usdc = holding(&answer, "USDC");
            assert_eq!(usdc["eligibleForTransfer"], true, "{usdc}");
            assert_eq!(usdc["availableBalance"], 250_000.0);
            assert_eq!(usdc["availableBalanceInFiat"], 250_000.0);
            let network = &usdc["networks"][0];
            assert_eq!((network["id"].as_str(), network["name"].as_str()), (Some(BASE), Some("Base")));
            assert_eq!(network["toAddress"], ADDRESS);
            if ty == "binanceInternational" {
                // Binance publishes fees and minimums per coin and network (the sandbox: 0.05 and 1 USDC on Base).
                assert_eq!((network["fee"].as_f64(), network["minimumAmount"].as_f64()), (Some(0.05), Some(1.0)));
                assert_eq!(network["feeCurrency"], "USDC");
            }
            assert_eq!(holding(&answer, "ETH")["eligibleForTransfer"], true);
            let btc = holding(&answer, "BTC");
            assert_eq!(
                (btc["eligibleForTransfer"].as_bool(), btc["ineligibilityReason"].as_str()),
                (Some(false), Some("notSupportedForTransferByTarget"))
            );
            let max = answer.content()["maximumTransferAmountInFiat"].as_f64().unwrap_or_default();
            assert!((max - 240.0 * 3_500.0).abs() < 1e-6, "the largest eligible holding (ETH): {}", answer.raw);

            // Too much for the balance; another symbol asked for; no addresses: every network linkvault moves.
            let too_much = configure(
                &app,
                &c.write,
                json!({"fromAuthToken": token, "fromType": ty, "toAddresses": to, "amount": 1_000_000.0, "symbol": "USDC"}),
            )
            .await;
            assert_eq!(holding(&too_much, "USDC")["ineligibilityReason"], "amountNotSufficient", "{}", too_much.raw);
            assert_eq!(holding(&too_much, "ETH")["ineligibilityReason"], "symbolDoesNotMatch");
            let anywhere = configure(&app, &c.write, json!({"fromAuthToken": token, "fromType": ty})).await;
            let sol = holding(&anywhere, "SOL");
            assert_eq!(sol["eligibleForTransfer"], true, "{}", anywhere.raw);
            assert_eq!(
                (sol["networks"][0]["id"].as_str(), sol["networks"][0]["toAddress"].as_str()),
                (Some(SOLANA), None)
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_validates_and_needs_write_scope() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let token = connect(&app, c, &c.write, "alice", "uphold").await?;
        let base = json!({"fromAuthToken": token, "fromType": "uphold"});
        let read = configure(&app, &c.read, base.clone()).await;
        assert_eq!((read.code, read.error_type()), (403, "keyScopeInsufficient"), "{}", read.raw);
        let cases = [
            (
                json!({"toAddresses": [{"networkId": BASE, "symbol": "USDC", "address": "nope"}]}),
                "toAddresses[0].address",
            ),
            (json!({"toAddresses": [{"networkId": "x", "symbol": "USDC"}]}), "toAddresses[0].networkId"),
            (json!({"networkId": ETHEREUM, "symbol": "SOL"}), "symbol"),
            (json!({"amount": -1}), "amount"),
            (json!({"amount": 1, "amountInFiat": 1}), "amountInFiat"),
            (json!({"fiatCurrency": "EUR"}), "fiatCurrency"),
            (json!({"toAuthToken": "x"}), "toAuthToken"),
        ];
        for (extra, field) in cases {
            let mut body = base.clone();
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let refused = configure(&app, &c.write, body).await;
            assert_eq!(refused.code, 400, "{}", refused.raw);
            assert_eq!(refused.body["errorData"]["field"], field, "{}", refused.raw);
        }
        let unknown = configure(
            &app,
            &c.write,
            json!({"fromAuthToken": "00000000-0000-4000-8000-000000000000", "fromType": "uphold"}),
        )
        .await;
        assert_eq!((unknown.code, unknown.error_type()), (404, "tokenNotFound"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_carry_meshs_ids_and_brand_style() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let c = &app.client;
    let list = app.call(reqwest::Method::GET, "/api/v1/integrations", Some((&c.id, &c.read)), None).await?;
    let items = list.content()["items"].as_array().cloned().unwrap_or_default();
    let coinbase = items.iter().find(|i| i["type"] == "coinbase").ok_or("no coinbase")?;
    assert_eq!(coinbase["id"], "47624467-e52e-4938-a41a-7926b6c27acf");
    assert_eq!(coinbase["style"]["buttonPrimaryLight"], "0052FF");
    assert_eq!(coinbase["style"]["fieldActiveDark"], "578BFA");
    let binance = items.iter().find(|i| i["type"] == "binanceInternationalDirect").ok_or("no binance")?;
    assert_eq!(binance["id"], "9226e5c2-ebc3-4fdd-94f6-ed52cdce1420");
    assert_eq!(binance["style"]["buttonPrimaryLight"], "F0B90B");
    let sandbox = items.iter().find(|i| i["type"] == "sandbox").ok_or("no sandbox")?;
    assert_eq!(sandbox["style"], Value::Null, "no brand colours: Link's own");

    // Mesh's id opens Link on Coinbase, and the page's catalog entry carries the same style.
    let link = common::link_token_as(
        &app,
        &c.id,
        &c.read,
        json!({"userId": "alice", "integrationId": "47624467-e52e-4938-a41a-7926b6c27acf"}),
    )
    .await?;
    let started = common::link_start(&app, &link).await;
    assert_eq!(started.content()["integrationType"], "coinbase", "{}", started.raw);
    let entries = started.content()["integrations"].as_array().cloned().unwrap_or_default();
    let entry = entries.iter().find(|i| i["type"] == "coinbase").ok_or("no coinbase entry")?;
    assert_eq!(entry["id"], "47624467-e52e-4938-a41a-7926b6c27acf");
    assert_eq!(entry["style"], coinbase["style"]);
    Ok(())
}
