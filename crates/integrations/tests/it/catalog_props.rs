//! Property tests for the catalog TOML loader (`Catalog::apply_toml`), the operator's file read at start-up:
//! arbitrary text never panics and is all-or-nothing (refused → the catalog is exactly as before, with an error
//! naming a known field when it names one); a well-formed entry written by a TOML writer loads with exactly the
//! values written (the round trip); values out of bounds are refused naming their field.

use linkvault_domain::Scope;
use linkvault_integrations::catalog::{AuthScheme, Catalog, KNOWN_KEYS as KNOWN};
use proptest::prelude::*;
use toml::{Table, Value};

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Ten years, the catalog's bound on every lifetime.
const MAX_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

fn toml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        ".{0,30}".prop_map(Value::String),
        "https://[a-z]{1,8}\\.example/[a-z]{0,8}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
        (0i64..2 * MAX_TTL_SECS).prop_map(Value::Integer),
        any::<bool>().prop_map(Value::Boolean),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A table of known keys (and now and then an unknown one) with values of any type: mostly refused.
fn entry_like() -> impl Strategy<Value = Table> {
    let key = prop_oneof![8 => prop::sample::select(KNOWN).prop_map(str::to_owned), 1 => "[a-z_]{1,12}"];
    let ty = prop_oneof![Just("coinbase".to_owned()), Just("uphold".to_owned()), "[a-z][a-zA-Z0-9_-]{0,20}", ".{0,10}"];
    (ty, prop::collection::btree_map(key, toml_value(), 0..8)).prop_map(|(ty, fields)| {
        let mut table: Table = fields.into_iter().collect();
        table.insert("type".to_owned(), Value::String(ty));
        table
    })
}

fn document(entries: Vec<Table>) -> String {
    let mut doc = Table::new();
    doc.insert("integration".to_owned(), Value::Array(entries.into_iter().map(Value::Table).collect()));
    toml::to_string(&doc).unwrap_or_default()
}

fn text_input() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(entry_like(), 0..3).prop_map(document),
        1 => ".{0,200}",
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => "(\\[\\[integration\\]\\]\n([a-z_]{1,12} = (\"[ -~]{0,12}\"|[0-9]{1,6}|true|\\[\\])\n){0,4}){1,3}",
    ]
}

/// A complete new OAuth entry, as values.
#[derive(Debug, Clone)]
struct OAuthEntry {
    ty: String,
    name: String,
    host: String,
    client_id: String,
    secret: String,
    scopes_read: Vec<String>,
    scopes_write: Vec<String>,
    margin: u64,
    ttl: u64,
    rotates: bool,
}

fn oauth_entry() -> impl Strategy<Value = OAuthEntry> {
    (
        "x[a-zA-Z0-9_-]{0,40}",
        "[A-Za-z0-9][A-Za-z0-9 .-]{0,40}[A-Za-z0-9]",
        "[a-z]{1,10}\\.example\\.(com|org)",
        "[!-~]{1,40}",
        "[!-~]{1,40}",
        prop::collection::vec("[a-z:._/-]{1,16}", 0..4),
        prop::collection::vec("[a-z:._/-]{1,16}", 0..4),
        (60u64..86_400, 0u64..3_600),
        any::<bool>(),
    )
        .prop_map(|(ty, name, host, client_id, secret, scopes_read, scopes_write, (ttl, margin), rotates)| {
            OAuthEntry {
                ty,
                name,
                host,
                client_id,
                secret,
                scopes_read,
                scopes_write,
                margin: margin.min(ttl - 1),
                ttl,
                rotates,
            }
        })
}

fn table_of(e: &OAuthEntry) -> Table {
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let mut t = Table::new();
    t.insert("type".into(), Value::String(e.ty.clone()));
    t.insert("name".into(), Value::String(e.name.clone()));
    t.insert("auth".into(), Value::String("oauth2".into()));
    t.insert("authorize_url".into(), Value::String(format!("https://{}/oauth/authorize", e.host)));
    t.insert("token_url".into(), Value::String(format!("https://{}/oauth/token", e.host)));
    t.insert("api_base_url".into(), Value::String(format!("https://api.{}", e.host)));
    t.insert("client_id".into(), Value::String(e.client_id.clone()));
    t.insert("client_secret".into(), Value::String(e.secret.clone()));
    t.insert("scopes_read".into(), strings(&e.scopes_read));
    t.insert("scopes_write".into(), strings(&e.scopes_write));
    t.insert("refresh_margin_secs".into(), Value::Integer(i64::try_from(e.margin).unwrap_or(i64::MAX)));
    t.insert("default_access_ttl_secs".into(), Value::Integer(i64::try_from(e.ttl).unwrap_or(i64::MAX)));
    t.insert("rotates_refresh_tokens".into(), Value::Boolean(e.rotates));
    t
}

proptest! {
    #![proptest_config(config(400))]

    /// Arbitrary text: accepted, or refused with the catalog unchanged and an error that names a known field
    /// (when it names one) and its entry by position.
    #[test]
    fn any_text_loads_or_is_refused_leaving_the_catalog_unchanged(text in text_input()) {
        let before = Catalog::embedded();
        let mut catalog = before.clone();
        match catalog.apply_toml("catalog file props.toml", &text, &no_env) {
            Ok(()) => {
                // Every entry of an accepted file is in the catalog under its type.
                let doc: Table = toml::from_str(&text).map_err(|e| TestCaseError::fail(format!("accepted non-TOML: {e}")))?;
                for entry in doc.get("integration").and_then(Value::as_array).into_iter().flatten() {
                    let ty = entry.get("type").and_then(Value::as_str).unwrap_or_default();
                    prop_assert!(catalog.get(ty).is_some(), "{:?} accepted but not in the catalog", ty);
                }
            }
            Err(e) => {
                prop_assert_eq!(catalog.iter().collect::<Vec<_>>(), before.iter().collect::<Vec<_>>());
                if let Some(field) = &e.field {
                    prop_assert!(KNOWN.contains(&field.as_str()), "unknown field {:?} in {}", field, e);
                }
                prop_assert!(!e.message.is_empty());
                let shown = e.to_string();
                prop_assert!(shown.starts_with("catalog file props.toml"), "{}", shown);
            }
        }
    }

    /// A complete OAuth entry written with a TOML writer loads with exactly the values written.
    #[test]
    fn written_entries_load_with_their_values(e in oauth_entry()) {
        let mut catalog = Catalog::embedded();
        let text = document(vec![table_of(&e)]);
        catalog.apply_toml("catalog file props.toml", &text, &no_env).map_err(|err| TestCaseError::fail(format!("{err}\n{text}")))?;
        let loaded = catalog.get(&e.ty).ok_or_else(|| TestCaseError::fail("entry missing"))?;
        prop_assert_eq!(loaded.integration_type.as_str(), e.ty.as_str());
        prop_assert_eq!(&loaded.name, &e.name);
        prop_assert_eq!(loaded.auth, AuthScheme::OAuth2);
        prop_assert_eq!(loaded.id, linkvault_integrations::catalog::derived_id(&e.ty));
        let authorize = loaded.endpoints.authorize_url.as_ref().map(|u| u.as_str().to_owned());
        let expected = format!("https://{}/oauth/authorize", e.host);
        prop_assert_eq!(authorize, Some(expected));
        prop_assert_eq!(loaded.client.client_id.as_deref(), Some(e.client_id.as_str()));
        prop_assert_eq!(loaded.client.client_secret.as_ref().map(|s| s.expose()), Some(e.secret.as_str()));
        prop_assert_eq!(&loaded.scopes_read, &e.scopes_read);
        prop_assert_eq!(&loaded.scopes_write, &e.scopes_write);
        prop_assert_eq!(loaded.scopes_for(Scope::Read).len(), e.scopes_read.len());
        prop_assert_eq!(loaded.timing.refresh_margin_secs, e.margin);
        prop_assert_eq!(loaded.timing.default_access_ttl_secs, e.ttl);
        prop_assert_eq!(loaded.timing.rotates_refresh_tokens, e.rotates);
    }

    /// Out-of-bounds values in an otherwise good entry are refused, naming that field, catalog unchanged.
    #[test]
    fn out_of_bounds_values_are_refused_by_field(
        e in oauth_entry(),
        which in 0usize..6,
        over in 1i64..1_000_000,
    ) {
        let mut table = table_of(&e);
        let field = match which {
            0 => { table.insert("default_access_ttl_secs".into(), Value::Integer(MAX_TTL_SECS + over)); "default_access_ttl_secs" }
            1 => { table.insert("default_access_ttl_secs".into(), Value::Integer(0)); "default_access_ttl_secs" }
            2 => { table.insert("refresh_margin_secs".into(), Value::Integer(i64::try_from(e.ttl).unwrap_or(0) + over)); "refresh_margin_secs" }
            3 => { table.insert("reuse_grace_secs".into(), Value::Integer(-over)); "reuse_grace_secs" }
            4 => { table.insert("authorize_url".into(), Value::String(format!("ftp://{}/x", e.host))); "authorize_url" }
            _ => { table.insert("scopes_read".into(), Value::Array(vec![Value::String(format!("a b{over}"))])); "scopes_read" }
        };
        let mut catalog = Catalog::embedded();
        let err = catalog.apply_toml("catalog file props.toml", &document(vec![table]), &no_env);
        let err = err.err().ok_or_else(|| TestCaseError::fail(format!("{field} out of bounds was accepted")))?;
        prop_assert_eq!(err.field.as_deref(), Some(field), "{}", err);
        prop_assert_eq!(err.entry.as_ref().map(|(i, _)| *i), Some(1));
        prop_assert!(catalog.get(&e.ty).is_none());
    }
}
