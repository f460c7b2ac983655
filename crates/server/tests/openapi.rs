//! `docs/openapi.json` is the document the server serves at `/openapi.json`, which utoipa generates from the
//! handlers' annotations and wire types: a handler whose types change without the checked-in copy fails here,
//! naming the first JSON path that differs. `UPDATE_OPENAPI=1` writes the served document to the file instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::PathBuf;

use common::{TestResult, spawn_app};
use linkvault_storage::testing::Backend;
use serde_json::Value;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo nextest run -p linkvault-server --test openapi";

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// A JSON pointer segment (RFC 6901 escaping, so `/api/v1/x` reads `~1api~1v1~1x`).
fn segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The first place where `served` and `checked_in` differ, as a JSON pointer, with both values there; `None`
/// when they are equal. Object keys are visited in the served document's order, then the ones only the file has.
fn first_difference(at: &str, served: &Value, checked_in: &Value) -> Option<(String, String, String)> {
    let show = |v: Option<&Value>| match v {
        None => "(absent)".to_owned(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 200 { format!("{}…", text.chars().take(200).collect::<String>()) } else { text }
        }
    };
    match (served, checked_in) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = format!("{at}/{}", segment(key));
                match b.get(key) {
                    Some(other) => {
                        if let Some(found) = first_difference(&path, value, other) {
                            return Some(found);
                        }
                    }
                    None => return Some((path, show(Some(value)), show(None))),
                }
            }
            let missing = b.keys().find(|k| !a.contains_key(*k))?;
            Some((format!("{at}/{}", segment(missing)), show(None), show(b.get(missing))))
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, pair) in a.iter().zip(b).enumerate() {
                if let Some(found) = first_difference(&format!("{at}/{i}"), pair.0, pair.1) {
                    return Some(found);
                }
            }
            let i = a.len().min(b.len());
            (a.len() != b.len()).then(|| (format!("{at}/{i}"), show(a.get(i)), show(b.get(i))))
        }
        _ => (served != checked_in).then(|| (at.to_owned(), show(Some(served)), show(Some(checked_in)))),
    }
}

#[tokio::test]
async fn the_checked_in_document_is_the_one_the_server_serves() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let res = app.http.get(format!("{}/openapi.json", app.base)).send().await?;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served_bytes = res.bytes().await?;
    let served: Value = serde_json::from_slice(&served_bytes)?;
    assert_eq!(served["openapi"], "3.1.0");

    let path = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &served_bytes)?;
        eprintln!("wrote the served document to {}", path.display());
        return Ok(());
    }
    let file_bytes = std::fs::read(&path)?;
    let checked_in: Value = serde_json::from_slice(&file_bytes)
        .map_err(|e| format!("docs/openapi.json is not JSON ({e}); regenerate it: {REGENERATE}"))?;
    if let Some((pointer, now, before)) = first_difference("", &served, &checked_in) {
        panic!(
            "docs/openapi.json differs from the document the server serves, first at {pointer}\n  \
             served:       {now}\n  docs/openapi.json: {before}\nregenerate it with: {REGENERATE}"
        );
    }
    assert!(
        file_bytes == served_bytes,
        "docs/openapi.json holds the served document but formatted differently; regenerate it with: {REGENERATE}"
    );
    Ok(())
}

#[test]
fn the_difference_is_found_where_it_is() {
    let served = serde_json::json!({"paths": {"/a/b": {"get": {"x": [1, 2, 3]}}}, "info": {}});
    let file = serde_json::json!({"paths": {"/a/b": {"get": {"x": [1, 2]}}}, "info": {}});
    let (pointer, now, before) = first_difference("", &served, &file).unwrap();
    assert_eq!((pointer.as_str(), now.as_str(), before.as_str()), ("/paths/~1a~1b/get/x/2", "3", "(absent)"));
    let file = serde_json::json!({"paths": {"/a/b": {"get": {"x": [1, 2, 3]}}}, "info": {"title": "t"}});
    let (pointer, now, _) = first_difference("", &served, &file).unwrap();
    assert_eq!((pointer.as_str(), now.as_str()), ("/info/title", "(absent)"));
    assert_eq!(first_difference("", &served, &served.clone()), None);
}

#[tokio::test]
async fn every_operation_has_an_id_and_every_api_operation_a_401_and_the_envelope() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let doc: Value = app.http.get(format!("{}/openapi.json", app.base)).send().await?.json().await?;
    let mut ids = std::collections::BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            if path.starts_with("/api/v1/") {
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
                let ok = &op["responses"]["200"]["content"]["application/json"]["schema"];
                assert_eq!(ok["properties"]["status"]["enum"], serde_json::json!(["ok"]), "{method} {path}");
            } else {
                assert_eq!(op["security"], serde_json::json!([]), "{method} {path}");
            }
        }
    }
    assert_eq!(operations, 28);
    Ok(())
}
