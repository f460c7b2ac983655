//! `/metrics` read as Prometheus reads it: the whole exposition goes through a Prometheus text parser
//! (`prometheus-parse`), and the series, the per-route latency histograms (labelled by route template, never
//! by raw path) and the refresh grant histogram must be there with values that match what was done.

mod common;

use std::sync::Arc;

use common::{Options, TestResult, spawn_app_with};
use linkvault_domain::ManualClock;
use linkvault_storage::testing::Backend;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use time::OffsetDateTime;

fn parse(text: &str) -> Result<Scrape, std::io::Error> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
}

/// The samples of `metric` whose labels include all of `labels`.
fn find<'s>(scrape: &'s Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'s Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// A histogram's buckets (upper bound, cumulative count), checked to be cumulative and to end at `+Inf`.
fn buckets(sample: &Sample) -> Result<Vec<(f64, f64)>, String> {
    let Value::Histogram(counts) = &sample.value else {
        return Err(format!("{} is not a histogram: {:?}", sample.metric, sample.value));
    };
    let pairs: Vec<(f64, f64)> = counts.iter().map(|c| (c.less_than, c.count)).collect();
    if pairs.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1) {
        return Err(format!("buckets of {} are not ascending and cumulative: {pairs:?}", sample.metric));
    }
    if pairs.last().is_none_or(|(le, _)| !le.is_infinite()) {
        return Err(format!("{} has no +Inf bucket: {pairs:?}", sample.metric));
    }
    Ok(pairs)
}

/// A counter's value. OpenMetrics names a counter family without `_total` and its sample with it, so the
/// parser (written for the Prometheus 0.0.4 text, where both carry it) reads the sample as untyped.
fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    find(scrape, metric, labels).iter().find_map(|s| match s.value {
        Value::Counter(v) | Value::Untyped(v) => Some(v),
        _ => None,
    })
}

/// Every sample line of the exposition became a sample or a histogram bucket: the parser skipped nothing it
/// could not read.
fn parsed_every_line(text: &str, scrape: &Scrape) -> bool {
    let lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    lines == parsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_with_route_and_grant_histograms() -> TestResult {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let options = Options { sandbox: true, clock: Some(clock.clone()), ..Options::default() };
    let app = spawn_app_with(Backend::Sqlite, options).await?;
    let c = &app.client;
    let token = common::connect_oauth(&app, c, &c.read, "alice", "coinbase").await?;
    // Within the refresh margin of the 3600 s access token: the next use sends a refresh grant first.
    clock.advance(time::Duration::seconds(3590));
    let body = json!({"authToken": token, "type": "coinbase"}).to_string();
    for _ in 0..3 {
        let holdings =
            app.call(reqwest::Method::POST, "/api/v1/holdings/get", Some((&c.id, &c.read)), Some(body.clone())).await?;
        assert_eq!(holdings.code, 200, "{}", holdings.raw);
    }
    let status = app.status(&c.id, &c.read, &token).await?;
    assert_eq!(status.code, 200, "{}", status.raw);
    // A path no route matches, carrying something that must never become a label.
    let unmatched = app.call(reqwest::Method::GET, "/no/such/path-4f1c", None, None).await?;
    assert_eq!(unmatched.code, 404);
    let refused = app.status(&c.id, "not-the-secret", &token).await?;
    assert_eq!(refused.code, 401, "{}", refused.raw);

    let answer = app.http.get(format!("{}/metrics", app.base)).send().await?;
    assert_eq!(answer.status(), 200);
    let content_type =
        answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = answer.text().await?;
    assert_eq!(text.lines().last(), Some("# EOF"), "an OpenMetrics exposition ends with # EOF");
    assert!(!text.contains("path-4f1c"), "a raw path became a label:\n{text}");
    let scrape = parse(&text)?;
    assert!(parsed_every_line(&text, &scrape), "the parser skipped lines of\n{text}");

    // The existing series keep their names.
    assert!(
        counter(&scrape, "linkvault_http_responses_total", &[("class", "2xx")]).is_some_and(|n| n >= 5.0),
        "{text}"
    );
    assert!(
        counter(&scrape, "linkvault_http_responses_total", &[("class", "4xx")]).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(counter(&scrape, "linkvault_http_responses_total", &[("class", "5xx")]), Some(0.0), "{text}");
    assert_eq!(counter(&scrape, "linkvault_auth_failures_total", &[]), Some(1.0), "{text}");
    let gauge = find(&scrape, "linkvault_connections", &[]);
    assert!(matches!(gauge.first().map(|s| &s.value), Some(Value::Gauge(n)) if *n == 1.0), "{gauge:?}");
    assert_eq!(
        counter(&scrape, "linkvault_refresh_total", &[("integration", "coinbase"), ("outcome", "success")]),
        Some(1.0)
    );
    assert!(counter(&scrape, "linkvault_webhook_deliveries_total", &[("outcome", "delivered")]).is_some(), "{text}");

    // Latency per route template: three holdings calls, counted under the template, with sane buckets.
    let holdings = find(
        &scrape,
        "linkvault_http_request_duration_seconds",
        &[("route", "/api/v1/holdings/get"), ("method", "POST")],
    );
    assert_eq!(holdings.len(), 1, "one series for the route: {holdings:?}");
    let pairs = buckets(holdings[0])?;
    assert_eq!(pairs.last().map(|(_, n)| *n), Some(3.0), "{pairs:?}");
    assert!(pairs.len() > 5, "{pairs:?}");
    let templated = find(&scrape, "linkvault_http_request_duration_seconds", &[("route", "/api/v1/tokens/:token_id")]);
    assert_eq!(templated.len(), 1, "the status route is labelled by its template: {text}");
    assert!(!text.contains(&token), "a tokenId became a label");
    let unmatched =
        find(&scrape, "linkvault_http_request_duration_seconds", &[("route", "unmatched"), ("method", "GET")]);
    assert_eq!(unmatched.len(), 1, "{text}");

    // The refresh grant's provider call: one, successful, at coinbase.
    let grants =
        find(&scrape, "linkvault_refresh_grant_seconds", &[("integration", "coinbase"), ("outcome", "success")]);
    assert_eq!(grants.len(), 1, "{text}");
    let pairs = buckets(grants[0])?;
    assert_eq!(pairs.last().map(|(_, n)| *n), Some(1.0), "one grant: {pairs:?}");
    let lateness = find(&scrape, "linkvault_refresh_lateness_seconds", &[]);
    assert_eq!(lateness.len(), 1, "{text}");
    buckets(lateness[0])?;
    Ok(())
}
