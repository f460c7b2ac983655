//! The `linkvault` binary as an operator uses it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use linkvault_crypto::MasterKey;
use linkvault_domain::{IntegrationType, NaturalKey, Scope, SystemClock, TokenMode, UserId};
use linkvault_storage::testing::{Backend, fresh_store};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");

fn linkvault(data_dir: &Path, database_url: Option<&str>, master_key: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data_dir).env_remove("LINKVAULT_MASTER_KEY").env_remove("LINKVAULT_MASTER_KEY_FILE");
    cmd.env_remove("LINKVAULT_DATABASE_URL").env("LINKVAULT_LOG", "warn").kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    if let Some(key) = master_key {
        cmd.env("LINKVAULT_MASTER_KEY", key);
    }
    cmd
}

/// Starts `linkvault serve` on a free port (its stderr discarded) and returns the child and its base URL.
async fn start_server(mut cmd: Command) -> Result<(tokio::process::Child, String), Box<dyn std::error::Error>> {
    cmd.stderr(Stdio::null());
    Ok(support::start_server(cmd).await.map_err(|e| e.to_string())?)
}

#[tokio::test]
async fn catalog_file_adds_an_integration_without_a_rebuild() -> TestResult {
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        r#"
[[integration]]
type = "exampleOAuth"
name = "Example"
auth = "oauth2"
authorize_url = "https://auth.example.test/authorize"
token_url = "https://auth.example.test/token"
api_base_url = "https://api.example.test"
client_id = "lv"
client_secret_env = "EXAMPLE_OAUTH_SECRET"
"#,
    )?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut cmd = linkvault(dir.path(), None, None);
    cmd.env("EXAMPLE_OAUTH_SECRET", "from-env").args(["serve", "--listen", "127.0.0.1:0", "--catalog"]).arg(&catalog);
    let (mut child, url) = start_server(cmd).await?;
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/integrations"))
        .header("X-Client-Id", created["clientId"].as_str().unwrap_or_default())
        .header("X-Client-Secret", created["keys"][0]["secret"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    let item = list["content"]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["type"] == "exampleOAuth"))
        .cloned();
    assert_eq!(item.map(|i| i["isConfigured"].clone()), Some(serde_json::json!(true)), "{list}");
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

#[tokio::test]
async fn bad_catalog_file_stops_start_up_naming_entry_and_field() -> TestResult {
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[integration]]\ntype = \"okOne\"\nname = \"Ok\"\nauth = \"credentials\"\nsign_in_url = \"https://x.test/in\"\n\n[[integration]]\ntype = \"brokenOAuth\"\nname = \"Broken\"\nauth = \"oauth2\"\nauthorize_url = \"https://x.test/a\"\ntoken_url = \"not a url\"\n",
    )?;
    let out = linkvault(dir.path(), None, None)
        .args(["serve", "--listen", "127.0.0.1:0", "--catalog"])
        .arg(&catalog)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("integration #2") && stderr.contains("brokenOAuth") && stderr.contains("token_url"),
        "{stderr}"
    );
    let missing = linkvault(dir.path(), None, None)
        .args(["serve", "--listen", "127.0.0.1:0", "--catalog", "/nonexistent.toml"])
        .output()
        .await?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.toml"));
    Ok(())
}

#[tokio::test]
async fn client_webhook_set_prints_a_signing_secret() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = created["clientId"].as_str().unwrap_or_default().to_owned();
    let out = linkvault(dir.path(), None, None)
        .args(["client", "webhook", "set", "--client", &id, "--url", "https://app.example.com/hooks", "--json"])
        .output()
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(set["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{set}");
    assert_eq!(set["url"], "https://app.example.com/hooks");
    let bad = linkvault(dir.path(), None, None)
        .args(["client", "webhook", "set", "--client", &id, "--url", "ftp://nope"])
        .output()
        .await?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http(s) URL"));
    Ok(())
}

/// `client webhook set` refuses what the deliverer would refuse (non-public literal hosts, plain http) with a
/// clear error, and takes the same egress options as `serve` (flags or env vars; `--sandbox` allows loopback).
#[tokio::test]
async fn client_webhook_set_refuses_non_public_and_plain_http_urls() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = created["clientId"].as_str().unwrap_or_default().to_owned();
    let set = |url: &str, extra: &[&str]| {
        let mut cmd = linkvault(dir.path(), None, None);
        cmd.args(["client", "webhook", "set", "--client", &id, "--url", url]).args(extra);
        cmd.env_remove("LINKVAULT_SANDBOX").env_remove("LINKVAULT_WEBHOOK_ALLOW_HTTP");
        cmd.env_remove("LINKVAULT_WEBHOOK_ALLOW_CIDRS").env_remove("LINKVAULT_WEBHOOK_ALLOW_HOSTS");
        cmd
    };
    for (url, why) in [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]:5432/", "loopback"),
        ("https://10.1.2.3/hooks", "private"),
        ("http://app.example.com/hooks", "must use https"),
    ] {
        let out = set(url, &[]).output().await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{url}: {stderr}");
    }
    let allowed: [(&str, &[&str]); 3] = [
        ("http://app.example.com/hooks", &["--webhook-allow-http"]),
        ("https://10.1.2.3/hooks", &["--webhook-allow-cidrs", "10.0.0.0/8"]),
        ("http://127.0.0.1:9000/hooks", &["--sandbox"]),
    ];
    for (url, extra) in allowed {
        let out = set(url, extra).output().await?;
        assert!(out.status.success(), "{url} {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let by_env =
        set("https://10.9.9.9/hooks", &[]).env("LINKVAULT_WEBHOOK_ALLOW_CIDRS", "10.9.0.0/16").output().await?;
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    Ok(())
}

/// `--format mesh` is stored (the server reports it) and anything but standard|mesh is refused by name.
#[tokio::test]
async fn client_webhook_set_takes_a_format() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = created["clientId"].as_str().unwrap_or_default().to_owned();
    let set = |format: &'static str| {
        let mut cmd = linkvault(dir.path(), None, None);
        cmd.args(["client", "webhook", "set", "--client", &id, "--url", "https://app.example.com/hooks"])
            .args(["--format", format, "--json"]);
        cmd
    };
    let out = set("mesh").output().await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(answer["format"], "mesh", "{answer}");
    let bad = set("soap").output().await?;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--format") && stderr.contains("mesh"), "{stderr}");

    let mut cmd = linkvault(dir.path(), None, None);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let (mut child, url) = start_server(cmd).await?;
    let shown: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/webhooks"))
        .header("X-Client-Id", &id)
        .header("X-Client-Secret", created["keys"][0]["secret"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (shown["content"]["url"].as_str(), shown["content"]["format"].as_str()),
        (Some("https://app.example.com/hooks"), Some("mesh")),
        "{shown}"
    );
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

/// Creates a client in `data_dir` with `client create --json` and returns its id.
async fn new_client_id(data_dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let out = linkvault(data_dir, None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(created["clientId"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn link_origins_are_managed_per_client() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = new_client_id(dir.path()).await?;
    let run = |args: Vec<&str>| {
        let mut cmd = linkvault(dir.path(), None, None);
        cmd.args(["client", "origins"]).args(args);
        cmd
    };
    let added = run(vec!["add", "--client", &id, "--origin", "https://app.example.com/"]).output().await?;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let bad = run(vec!["add", "--client", &id, "--origin", "https://app.example.com/path"]).output().await?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("scheme://host[:port]"));
    let list = run(vec!["list", "--client", &id, "--json"]).output().await?;
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout)?;
    assert_eq!(listed["origins"], serde_json::json!(["https://app.example.com"]));
    let removed = run(vec!["remove", "--client", &id, "--origin", "https://app.example.com"]).output().await?;
    assert!(removed.status.success());
    let again = run(vec!["remove", "--client", &id, "--origin", "https://app.example.com"]).output().await?;
    assert!(!again.status.success());
    Ok(())
}

/// `client limits`: a client's own API rate limit is stored (the server then counts the client against it, see
/// `crates/server/tests/rate_limits.rs`), `--default` clears it, and nonsense is refused by the parser.
#[tokio::test]
async fn client_limits_sets_and_clears_a_clients_own_api_rate_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = new_client_id(dir.path()).await?;
    let run = |args: Vec<&str>| {
        let mut cmd = linkvault(dir.path(), None, None);
        cmd.args(["client", "limits", "--client", &id]).args(args);
        cmd
    };
    let set = run(vec!["--requests-per-minute", "120"]).output().await?;
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    assert!(String::from_utf8_lossy(&set.stdout).contains("120 API requests per minute"));
    for bad in [vec!["--requests-per-minute", "0"], vec![], vec!["--requests-per-minute", "5", "--default"]] {
        let refused = run(bad.clone()).output().await?;
        assert!(!refused.status.success(), "{bad:?} must be refused");
    }
    let cleared = run(vec!["--default"]).output().await?;
    assert!(cleared.status.success(), "{}", String::from_utf8_lossy(&cleared.stderr));
    assert!(String::from_utf8_lossy(&cleared.stdout).contains("the server's API rate limit"));
    let mut unknown = linkvault(dir.path(), None, None);
    unknown.args(["client", "limits", "--client", &linkvault_domain::ClientId::new_random().to_string(), "--default"]);
    assert!(!unknown.output().await?.status.success(), "an unknown client is an error");
    Ok(())
}

#[tokio::test]
async fn client_create_json_prints_exactly_one_object() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "Acme", "--json"]).output().await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout)?;
    let value: serde_json::Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(stdout.trim().lines().count(), 1);
    assert!(uuid::Uuid::parse_str(value["clientId"].as_str().unwrap_or_default()).is_ok());
    let keys = value["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["scope"], "read");
    assert_eq!(keys[1]["scope"], "write");
    assert!(keys.iter().all(|k| k["secret"].as_str().is_some_and(|s| s.starts_with("lvk_"))));
    // The generated key file is private, and the notice went to stderr, not into the JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("generated a new master key"));

    // key add and key revoke work on that client.
    let id = value["clientId"].as_str().unwrap_or_default();
    let out = linkvault(dir.path(), None, None)
        .args(["client", "key", "add", "--client", id, "--scope", "write", "--json"])
        .output()
        .await?;
    let added: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(added["scope"], "write");
    let prefix = &added["secret"].as_str().unwrap_or_default()[..12];
    let out = linkvault(dir.path(), None, None)
        .args(["client", "key", "revoke", "--client", id, "--secret-prefix", prefix])
        .output()
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = linkvault(dir.path(), None, None)
        .args(["client", "key", "revoke", "--client", id, "--secret-prefix", prefix])
        .output()
        .await?;
    assert!(!again.status.success(), "revoking twice should say nothing matched");
    Ok(())
}

#[tokio::test]
async fn another_master_key_fails_start_with_a_clear_message() -> TestResult {
    for backend in Backend::all() {
        let fresh = fresh_store(backend).await?;
        let dir = tempfile::tempdir()?;
        let key_a = MasterKey::generate()?;
        let key_b = MasterKey::generate()?;
        let url = fresh.url.clone();
        let out = linkvault(dir.path(), Some(&url), Some(key_a.to_base64().as_str()))
            .args(["client", "create", "--name", "a", "--json"])
            .output()
            .await?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = linkvault(dir.path(), Some(&url), Some(key_b.to_base64().as_str()))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{backend:?}: {stderr}");
        assert!(!out.status.success());
        assert!(stderr.contains("master key does not match"), "{stderr}");
        assert!(stderr.contains(&key_a.fingerprint()) && stderr.contains(&key_b.fingerprint()), "{stderr}");
        assert!(!stderr.contains(key_b.to_base64().as_str()), "the key itself must never be printed");
    }
    Ok(())
}

#[tokio::test]
async fn serve_sandbox_starts_from_nothing_and_stops_gracefully() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut cmd = linkvault(dir.path(), None, None);
    cmd.args(["serve", "--sandbox", "--listen", "127.0.0.1:0"]);
    let (mut child, url) = start_server(cmd).await?;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let health = reqwest::get(format!("{url}/healthz")).await?;
    assert_eq!(health.status(), 200);
    let sandbox = reqwest::get(format!("{url}/sandbox")).await?;
    assert_eq!(sandbox.status(), 200, "the sandbox exchanges are served");
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sandbox-client.json"))?)?;
    assert_eq!(creds["keys"].as_array().map(Vec::len), Some(2));
    let status = Command::new("kill").arg("-TERM").arg(child.id().unwrap_or_default().to_string()).status().await?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    assert!(exit.success(), "graceful shutdown should exit 0, got {exit:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_over_10k_connections_survives_a_kill() -> TestResult {
    const N: usize = 10_000;
    for backend in Backend::all() {
        eprintln!("keys rotate on {backend:?}");
        let fresh = fresh_store(backend).await?;
        let dir = tempfile::tempdir()?;
        let master = MasterKey::generate()?;
        let key_text = master.to_base64().as_str().to_owned();
        let vault = Arc::new(Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::new(SystemClock)).await?);
        let client = vault.create_client("rotation", TokenMode::Managed).await?.client_id;
        seed_range(&vault, client, 0..N).await?;
        assert_eq!(fresh.store.count_connections().await?, N as u64);

        // First run: killed (SIGKILL) as soon as it has made progress.
        let mut child = linkvault(dir.path(), Some(&fresh.url), Some(&key_text))
            .args(["keys", "rotate", "--batch-size", "100", "--settle-secs", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let progressed = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(" re-wrapped,") && !line.contains(": 0 re-wrapped") {
                    return Ok::<_, std::io::Error>(line);
                }
            }
            Ok(String::new())
        })
        .await??;
        child.start_kill()?;
        child.wait().await?;
        assert!(!progressed.is_empty(), "rotation printed no progress");
        let counts = fresh.store.count_connections_by_key_version().await?;
        let on_new: u64 = counts.iter().filter(|(v, _)| *v == 2).map(|(_, n)| n).sum();
        let on_old: u64 = counts.iter().filter(|(v, _)| *v == 1).map(|(_, n)| n).sum();
        eprintln!("killed after {progressed:?}: {on_new} on version 2, {on_old} still on version 1");
        assert!(on_new > 0 && on_old > 0, "the kill should land midway: {counts:?}");

        // Second run finishes the same rotation instead of starting another.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(&key_text))
            .args(["keys", "rotate", "--settle-secs", "0"])
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("resumed and finished: version 2 is current"), "{stdout}");
        assert!(stdout.contains("retired versions: 1"), "{stdout}");

        // Every token opens, from a vault opened afresh, under version 2 only.
        let versions = fresh.store.key_versions().await?;
        assert_eq!(versions.iter().map(|v| (v.version, v.is_current)).collect::<Vec<_>>(), vec![(2, true)]);
        let reopened =
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::from_base64(&key_text)?), Arc::new(SystemClock))
                .await?;
        for i in 0..N {
            let key = NaturalKey {
                client_id: client,
                user_id: UserId::parse(&format!("user-{i}"))?,
                integration: IntegrationType::parse("coinbase")?,
                scope: Scope::Read,
            };
            let record = fresh.store.find_connection_by_natural_key(&key).await?.ok_or("connection lost")?;
            assert_eq!(record.key_version, 2);
            assert_eq!(reopened.open_credentials(&record).await?.access_token.expose_secret(), format!("access-{i}"));
        }
    }
    Ok(())
}

/// Seeds connections `range` (user `user-{i}`) through `vault`, a few writers at a time.
async fn seed_range(
    vault: &Arc<Vault>,
    client: linkvault_domain::ClientId,
    range: std::ops::Range<usize>,
) -> TestResult {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (vault, range) = (Arc::clone(vault), range.clone());
        tasks.spawn(async move {
            for i in range.skip(worker).step_by(8) {
                let key = NaturalKey {
                    client_id: client,
                    user_id: UserId::parse(&format!("user-{i}")).expect("valid"),
                    integration: IntegrationType::parse("coinbase").expect("valid"),
                    scope: Scope::Read,
                };
                let creds = IntegrationCredentials::new(format!("access-{i}"), Some(format!("refresh-{i}")));
                vault.store_credentials(&key, &creds, &ConnectionMeta::default()).await?;
            }
            Ok::<(), linkvault_vault::VaultError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The stored keyring's sealed bytes.
async fn stored_keyring(store: &linkvault_storage::DynStore) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use base64::Engine as _;
    let text = store.get_meta(linkvault_vault::master_keyring::KEYRING_META).await?.ok_or("no keyring stored")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_master_over_10k_connections_survives_a_kill_and_shuts_the_old_key_out() -> TestResult {
    use linkvault_crypto::{Keyring, KeyringOrigin, MasterKeyHolder};
    use linkvault_storage::KeyVersionRecord;
    const N: usize = 10_000;
    const FINGERPRINT: &str = linkvault_vault::master_keyring::FINGERPRINT_META;
    for backend in Backend::all() {
        eprintln!("keys rotate-master on {backend:?}");
        let fresh = fresh_store(backend).await?;
        let dir = tempfile::tempdir()?;
        let old = MasterKey::generate()?;
        let old_text = old.to_base64().as_str().to_owned();
        let new = MasterKey::generate()?;
        let new_text = new.to_base64().as_str().to_owned();
        let new_file = dir.path().join("new.key");
        std::fs::write(&new_file, new.to_base64().as_bytes())?;

        // A database as versions before the keyring left it: the fingerprint recorded, then (at the first
        // start of this version) the keyring derived from the key, which writes what those versions wrote.
        fresh.store.insert_meta_if_absent(FINGERPRINT, &old.fingerprint()).await?;
        assert!(linkvault_vault::master_keyring::adopt_legacy(&fresh.store, &old).await?);
        let vault = Arc::new(
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::from_base64(&old_text)?), Arc::new(SystemClock))
                .await?,
        );
        assert_eq!(vault.keyring_origin(), KeyringOrigin::Derived);
        let managed = vault.create_client("rotation", TokenMode::Managed).await?;
        let client = managed.client_id;
        let app = vault.create_client("app", TokenMode::Client).await?;
        let webhook_secret = "whsec_rotation-test-secret";
        vault.set_webhook_endpoint(client, "https://hooks.example.com/linkvault", webhook_secret).await?;
        vault.set_webhook_endpoint(app.client_id, "https://hooks.example.com/app", "whsec_app-secret").await?;
        seed_range(&vault, client, 0..N / 2).await?;
        // A second key version (as `keys rotate` makes it), wrapped by the derived keyring like the first, and
        // the other half of the connections under it.
        let (_, wrapped) = Keyring::derived_from(&old).new_key_version(2)?;
        let record = KeyVersionRecord {
            version: 2,
            wrapped_key: wrapped,
            is_current: true,
            wrap_count: 0,
            created_at: time::OffsetDateTime::now_utc(),
        };
        assert!(fresh.store.insert_key_version(&record, true).await?);
        let vault = Arc::new(
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::from_base64(&old_text)?), Arc::new(SystemClock))
                .await?,
        );
        seed_range(&vault, client, N / 2..N).await?;
        let counts = fresh.store.count_connections_by_key_version().await?;
        assert_eq!(counts, vec![(1, (N / 2) as u64), (2, (N / 2) as u64)]);
        // Client tokens of a client-mode client's connection.
        let app_key = NaturalKey {
            client_id: app.client_id,
            user_id: UserId::parse("app-user")?,
            integration: IntegrationType::parse("coinbase")?,
            scope: Scope::Read,
        };
        let creds = IntegrationCredentials::new("app-access".to_owned(), Some("app-refresh".to_owned()));
        vault.store_credentials(&app_key, &creds, &ConnectionMeta::default()).await?;
        let app_record = fresh.store.find_connection_by_natural_key(&app_key).await?.ok_or("app connection lost")?;
        let tokens = vault.issue_client_tokens(&app_record).await?;
        drop(vault);

        // First run: killed (SIGKILL) as soon as it has moved something.
        let mut child = linkvault(dir.path(), Some(&fresh.url), Some(&old_text))
            .args(["keys", "rotate-master", "--batch-size", "1", "--batch-pause-ms", "3000", "--new-key-file"])
            .arg(&new_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let progressed = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(" moved,") && !line.contains(": 0 moved") {
                    return Ok::<_, std::io::Error>(line);
                }
            }
            Ok(String::new())
        })
        .await??;
        child.start_kill()?;
        child.wait().await?;
        assert!(!progressed.is_empty(), "rotation printed no progress");
        let kinds: Vec<u8> = fresh.store.key_versions().await?.iter().map(|v| v.wrapped_key[1]).collect();
        eprintln!("killed after {progressed:?}: key version header kinds {kinds:?}");
        assert!(kinds.contains(&5) && kinds.contains(&1), "the kill should land midway: {kinds:?}");
        assert_eq!(fresh.store.get_meta(FINGERPRINT).await?, Some(old.fingerprint()), "not switched yet");

        // Starting with the new key now says the rotation is unfinished and how to finish it.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(new.to_base64().as_str()))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("unfinished `linkvault keys rotate-master`"), "{stderr}");
        assert!(stderr.contains(&old.fingerprint()) && stderr.contains(&new.fingerprint()), "{stderr}");
        // `config check` with the old key reports the pending rotation.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(&old_text)).args(["config", "check"]).output().await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("rotation to the key with fingerprint {} is unfinished", new.fingerprint())),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Second run finishes it.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(&old_text))
            .args(["keys", "rotate-master", "--batch-size", "1", "--new-key-file"])
            .arg(&new_file)
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("master key rotation resumed and finished"), "{stdout}");
        assert!(stdout.contains(&new.fingerprint()), "{stdout}");
        // A third run has nothing left to do.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(&old_text))
            .args(["keys", "rotate-master", "--new-key-file"])
            .arg(&new_file)
            .output()
            .await?;
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("already finished"));
        assert_eq!(fresh.store.get_meta(FINGERPRINT).await?, Some(new.fingerprint()));

        // The old key opens nothing: not the vault, not the keyring, and its derivations open no key version
        // and no sealed secret.
        let refused =
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::from_base64(&old_text)?), Arc::new(SystemClock))
                .await;
        assert!(refused.err().is_some_and(|e| e.to_string().contains("master key does not match")));
        let sealed_keyring = stored_keyring(&fresh.store).await?;
        assert!(Keyring::open(&old, &sealed_keyring).is_err());
        assert!((&old as &dyn MasterKeyHolder).open(linkvault_crypto::KEYRING_CONTEXT, &sealed_keyring).is_err());
        let old_derivations = Keyring::derived_from(&old);
        let versions = fresh.store.key_versions().await?;
        assert_eq!(versions.len(), 2);
        for v in &versions {
            assert!(old_derivations.open_key_version(v.version, &v.wrapped_key).is_err(), "version {}", v.version);
        }
        for c in [client, app.client_id] {
            let endpoint = fresh.store.get_webhook_endpoint(c).await?.ok_or("endpoint lost")?;
            assert!(old_derivations.open_webhook_secret(c.as_uuid().as_bytes(), &endpoint.secret_sealed).is_err());
        }

        // Everything works under the new key, from a vault opened afresh.
        let reopened =
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::from_base64(&new_text)?), Arc::new(SystemClock))
                .await?;
        assert_eq!(reopened.keyring_origin(), KeyringOrigin::Random);
        assert!(reopened.pending_master_rotation().is_none());
        for i in 0..N {
            let key = NaturalKey {
                client_id: client,
                user_id: UserId::parse(&format!("user-{i}"))?,
                integration: IntegrationType::parse("coinbase")?,
                scope: Scope::Read,
            };
            let record = fresh.store.find_connection_by_natural_key(&key).await?.ok_or("connection lost")?;
            assert_eq!(reopened.open_credentials(&record).await?.access_token.expose_secret(), format!("access-{i}"));
        }
        for (_, secret) in managed.keys.iter().chain(app.keys.iter()) {
            let owner =
                if managed.keys.iter().any(|(_, s)| s.expose() == secret.expose()) { client } else { app.client_id };
            let caller = reopened.authenticate(&owner.to_string(), secret.expose()).await?;
            assert!(caller.is_some_and(|c| c.client_id == owner), "an API key stopped authenticating");
        }
        let resolved = reopened.resolve_access_token(app.client_id, tokens.access_token.expose()).await?;
        assert_eq!(resolved.ok(), Some(app_record.token_id), "the client access token stopped verifying");
        let refresh = tokens.refresh_token.as_ref().ok_or("no refresh token")?;
        let refreshed = reopened.refresh_client_tokens(app.client_id, "coinbase", refresh.expose(), false).await?;
        assert!(refreshed.is_ok(), "the client refresh token stopped verifying");
        let (_, opened) = reopened.webhook_endpoint(client).await?.ok_or("webhook endpoint lost")?;
        assert_eq!(opened.expose_secret(), webhook_secret);
        let (_, opened) = reopened.webhook_endpoint(app.client_id).await?.ok_or("webhook endpoint lost")?;
        assert_eq!(opened.expose_secret(), "whsec_app-secret");
        // `config check` with the new key reports the random keyring.
        let out = linkvault(dir.path(), Some(&fresh.url), Some(&new_text)).args(["config", "check"]).output().await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("random keys, sealed under the master key") && stdout.contains("opens key versions 1, 2"),
            "{stdout}"
        );
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(unix)]
#[tokio::test]
async fn data_dir_and_every_file_in_it_are_private_from_creation() -> TestResult {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("data");
    let mut cmd = linkvault(&dir, None, None);
    cmd.args(["serve", "--sandbox", "--listen", "127.0.0.1:0"]);
    let (mut child, url) = start_server(cmd).await?;
    assert_eq!(reqwest::get(format!("{url}/healthz")).await?.status(), 200);
    // While the server runs, SQLite's -wal and -shm files exist beside the database.
    assert_eq!(mode_of(&dir), 0o700, "the data dir");
    for name in ["linkvault.db", "linkvault.db-wal", "linkvault.db-shm", "master.key", "sandbox-client.json"] {
        assert_eq!(mode_of(&dir.join(name)), 0o600, "{name}");
    }
    child.kill().await?;
    Ok(())
}

#[cfg(unix)]
#[tokio::test]
async fn a_too_open_data_dir_and_database_are_restricted_with_a_warning() -> TestResult {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let out = linkvault(dir.path(), None, None).args(["client", "create", "--name", "a", "--json"]).output().await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // As an older version (or a hand-made dir) would have left them.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(dir.path().join("linkvault.db"), std::fs::Permissions::from_mode(0o644))?;
    let out = linkvault(dir.path(), None, None).args(["migrate"]).output().await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning:") && stderr.contains("restricted it to mode 700"), "{stderr}");
    assert!(stderr.contains("linkvault.db was readable by other users (mode 644)"), "{stderr}");
    assert_eq!(mode_of(dir.path()), 0o700);
    assert_eq!(mode_of(&dir.path().join("linkvault.db")), 0o600);
    Ok(())
}
