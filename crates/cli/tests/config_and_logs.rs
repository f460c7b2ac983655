//! `linkvault config check` (it checks without changing anything) and the log output on a pipe (no colour
//! codes in text, one JSON object per line in json, and no secret in either).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use linkvault_crypto::MasterKey;
use linkvault_storage::testing::{Backend, TestSchema, postgres_test_url};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");

/// A `linkvault` command on `data_dir`, with no configuration inherited from the environment.
fn linkvault(data_dir: &Path, database_url: Option<&str>, master_key: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data_dir);
    for var in ["LINKVAULT_MASTER_KEY", "LINKVAULT_MASTER_KEY_FILE", "LINKVAULT_DATABASE_URL", "LINKVAULT_CATALOG"] {
        cmd.env_remove(var);
    }
    cmd.env_remove("LINKVAULT_LOG_FORMAT").env("LINKVAULT_LOG", "warn");
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    if let Some(key) = master_key {
        cmd.env("LINKVAULT_MASTER_KEY", key);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir` with its size and modification time: equal before and after means nothing was
/// created, removed or written.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                files.extend(snapshot(&entry.path()));
            } else {
                files.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    files
}

/// A database (SQLite in `dir`, or a PostgreSQL schema of its own) migrated and holding one client, under
/// `key`.
struct Setup {
    dir: tempfile::TempDir,
    schema: Option<TestSchema>,
    key: String,
}

impl Setup {
    fn new(backend: Backend) -> Result<Self, Box<dyn std::error::Error>> {
        let schema = match (backend, postgres_test_url()) {
            (Backend::Postgres, Some(url)) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Some(runtime.block_on(TestSchema::create(&url))?)
            }
            _ => None,
        };
        let setup = Self { dir: tempfile::tempdir()?, schema, key: MasterKey::generate()?.to_base64().to_string() };
        let out = setup.command().args(["client", "create", "--name", "Acme", "--json"]).output()?;
        assert!(out.status.success(), "{}", text(&out.stderr));
        Ok(setup)
    }

    fn url(&self) -> Option<String> {
        self.schema.as_ref().map(TestSchema::url)
    }

    fn command(&self) -> Command {
        linkvault(self.dir.path(), self.url().as_deref(), Some(&self.key))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            schema.drop_blocking();
        }
    }
}

fn check(mut cmd: Command, extra: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    Ok(cmd.args(["config", "check"]).args(extra).output()?)
}

#[test]
fn a_good_configuration_passes_names_backend_and_listen_address_and_changes_nothing() -> TestResult {
    for backend in Backend::all() {
        let setup = Setup::new(backend)?;
        let before = snapshot(setup.dir.path());
        let out = check(setup.command(), &["--listen", "127.0.0.1:18089", "--refresh-rate", "7"])?;
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{backend:?}: {stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains("127.0.0.1:18089"), "{stdout}");
        let backend_name = if backend == Backend::Postgres { "PostgreSQL at" } else { "SQLite at" };
        assert!(stdout.contains(backend_name) && stdout.contains("schema up to date"), "{stdout}");
        assert!(stdout.contains("matches the database; opens key versions 1, current 1"), "{stdout}");
        assert!(stdout.contains("7 grants/s") && stdout.contains("coinbase (oauth2)"), "{stdout}");
        assert!(stdout.contains("ok: `linkvault serve` would start"), "{stdout}");
        assert_eq!(snapshot(setup.dir.path()), before, "config check changed the data dir");
    }
    Ok(())
}

#[test]
fn a_first_start_configuration_passes_without_creating_anything() -> TestResult {
    let parent = tempfile::tempdir()?;
    let data_dir = parent.path().join("linkvault-data");
    let out = check(linkvault(&data_dir, None, None), &["--sandbox"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("does not exist yet; serve creates it"), "{stdout}");
    assert!(stdout.contains("serve generates one into"), "{stdout}");
    assert!(stdout.contains("on: sandbox exchanges at http://127.0.0.1:8080/sandbox"), "{stdout}");
    assert!(!data_dir.exists(), "config check created the data dir");
    Ok(())
}

#[test]
fn a_wrong_master_key_fails_naming_both_fingerprints() -> TestResult {
    for backend in Backend::all() {
        let mut setup = Setup::new(backend)?;
        let right = MasterKey::from_base64(&setup.key)?.fingerprint();
        let wrong = MasterKey::generate()?;
        setup.key = wrong.to_base64().to_string();
        let out = check(setup.command(), &[])?;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{backend:?}: {}", text(&out.stdout));
        assert!(stderr.contains("does not match") && stderr.contains(&right), "{stderr}");
        assert!(stderr.contains(&wrong.fingerprint()) && stderr.contains("Fix:"), "{stderr}");
        assert!(!stderr.contains(&setup.key), "the master key itself was printed: {stderr}");

        // Too short a key is named as such.
        setup.key = "c2hvcnQ=".to_owned();
        let out = check(setup.command(), &[])?;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("exactly 32 bytes"), "{}", text(&out.stderr));
    }
    Ok(())
}

#[test]
fn an_unreachable_database_fails_within_the_bound() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
    let url = "postgres://linkvault:hunter2@127.0.0.1:9/linkvault";
    let key = MasterKey::generate()?.to_base64().to_string();
    let out = check(linkvault(dir.path(), Some(url), Some(&key)), &[])?;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(stderr.contains("cannot read PostgreSQL at 127.0.0.1:9/linkvault"), "{stderr}");
    assert!(stderr.contains("LINKVAULT_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !text(&out.stdout).contains("hunter2"), "the password was printed");
    Ok(())
}

#[test]
fn a_bad_catalog_fails_naming_the_file_and_entry() -> TestResult {
    let setup = Setup::new(Backend::Sqlite)?;
    let catalog = setup.dir.path().join("catalog.toml");
    std::fs::write(&catalog, "[[integration]]\ntype = \"exampleOAuth\"\nauth = \"oauth2\"\nauthorize_url = 12\n")?;
    let out = check(setup.command(), &["--catalog", catalog.to_str().ok_or("path")?])?;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(stderr.contains("catalog:") && stderr.contains("authorize_url"), "{stderr}");
    // The other checks still ran and passed.
    assert!(text(&out.stdout).contains("schema up to date"), "{}", text(&out.stdout));

    std::fs::write(&catalog, "this is [not toml")?;
    let out = check(setup.command(), &["--catalog", catalog.to_str().ok_or("path")?])?;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("catalog.toml"), "{}", text(&out.stderr));
    Ok(())
}

/// An SQLite database as an older linkvault left it: the first `applied` migrations only.
fn old_sqlite_database(path: &Path, applied: usize) -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../storage/migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL")?;
    for file in &files[..applied] {
        conn.execute_batch(&std::fs::read_to_string(file)?)?;
    }
    conn.pragma_update(None, "user_version", i64::try_from(applied)?)?;
    Ok(())
}

fn user_version(path: &Path) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(rusqlite::Connection::open(path)?.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

#[test]
fn pending_migrations_are_reported_and_not_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("linkvault.db");
    old_sqlite_database(&db, 7)?;
    let before = snapshot(dir.path());
    let key = MasterKey::generate()?.to_base64().to_string();
    let out = check(linkvault(dir.path(), None, Some(&key)), &[])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("7 of ") && stdout.contains("pending, which serve applies at start"), "{stdout}");
    assert_eq!(snapshot(dir.path()), before, "config check changed the data dir");
    assert_eq!(user_version(&db)?, 7, "config check ran migrations");

    // A database newer than this binary is a failure.
    rusqlite::Connection::open(&db)?.pragma_update(None, "user_version", 99)?;
    let out = check(linkvault(dir.path(), None, Some(&key)), &[])?;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("schema version 99, newer than this linkvault"), "{}", text(&out.stderr));
    Ok(())
}

/// Runs `serve` with stderr on a pipe, makes a few requests carrying secrets, stops it and returns stderr.
async fn serve_logs(format: &str) -> Result<(String, Vec<String>), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let key = MasterKey::generate().map_err(|e| e.to_string())?.to_base64().to_string();
    let metrics_token = "metrics-token-0123456789abcdef";
    let created =
        linkvault(dir.path(), None, Some(&key)).args(["client", "create", "--name", "Logs", "--json"]).output()?;
    let client: serde_json::Value = serde_json::from_slice(&created.stdout)?;
    let api_key = client["keys"][0]["secret"].as_str().ok_or("no key")?.to_owned();
    let client_id = client["clientId"].as_str().ok_or("no client id")?.to_owned();

    let mut cmd = tokio::process::Command::from(linkvault(dir.path(), None, Some(&key)));
    cmd.env("LINKVAULT_LOG", "debug").env_remove("NO_COLOR").args(["--log-format", format]);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--metrics-token", metrics_token]);
    cmd.stderr(Stdio::piped()).kill_on_drop(true);
    let (mut child, url) = support::start_server(cmd).await?;
    let http = reqwest::Client::new();
    http.get(format!("{url}/metrics")).bearer_auth(metrics_token).send().await?.error_for_status()?;
    http.get(format!("{url}/api/v1/integrations"))
        .header("X-Client-Id", &client_id)
        .header("X-Client-Secret", &api_key)
        .send()
        .await?
        .error_for_status()?;
    let status = http.get(format!("{url}/api/v1/integrations")).header("X-Client-Id", &client_id).send().await?;
    assert_eq!(status.status(), 401);
    // SIGTERM: a graceful stop, which logs too.
    let pid = child.id().ok_or("no pid")?;
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status()?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut bytes))
        .await??;
    let _ = child.wait().await;
    Ok((String::from_utf8(bytes)?, vec![key, metrics_token.to_owned(), api_key]))
}

#[tokio::test]
async fn text_logs_on_a_pipe_have_no_colour_codes() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (stderr, secrets) = serve_logs("text").await?;
    assert!(stderr.contains("serving") && stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "an ANSI escape reached a pipe: {stderr:?}");
    for secret in &secrets {
        assert!(!stderr.contains(secret.as_str()), "a secret reached the log: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (stderr, secrets) = serve_logs("json").await?;
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let record: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
        assert!(record["timestamp"].is_string() && record["level"].is_string(), "{line}");
        messages.push(record["fields"]["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(messages.iter().any(|m| m == "serving") && messages.iter().any(|m| m.starts_with("shutting down")));
    assert!(!stderr.contains('\u{1b}'));
    for secret in &secrets {
        assert!(!stderr.contains(secret.as_str()), "a secret reached the log: {stderr}");
    }

    // Notices and the final error, printed outside tracing, are JSON records too.
    let dir = tempfile::tempdir()?;
    let out =
        linkvault(dir.path(), None, None).args(["--log-format", "json", "client", "create", "--name", "A"]).output()?;
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let notices: Vec<serde_json::Value> = stderr.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(
        notices
            .iter()
            .any(|n| n["fields"]["message"].as_str().is_some_and(|m| m.contains("generated a new master key"))),
        "{stderr}"
    );
    let out = linkvault(dir.path(), None, Some("c2hvcnQ="))
        .args(["--log-format", "json", "client", "create", "--name", "B"])
        .output()?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or_default())?;
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(last["fields"]["message"].as_str().unwrap_or_default().contains("32 bytes"), "{stderr}");
    Ok(())
}
