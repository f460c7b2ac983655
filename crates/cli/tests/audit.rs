//! The audit log end to end, on both backends: `linkvault audit verify` on a clean log (also after many
//! concurrent sensitive actions from two store instances), and its verdict after the database was tampered
//! with directly (a record modified, removed, cut off the end, two records swapped); `audit export`'s lines;
//! and fail-closed refusing an action whose record cannot be written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::path::Path;
use std::sync::Arc;

use linkvault_crypto::MasterKey;
use linkvault_domain::{ClientId, IntegrationType, NaturalKey, Scope, SystemClock, TokenMode, UserId};
use linkvault_storage::testing::{Backend, FreshStore, fresh_store};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
use tokio::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");

fn linkvault(data_dir: &Path, fresh: &FreshStore, master_key: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data_dir).arg("--database-url").arg(&fresh.url);
    cmd.env_remove("LINKVAULT_MASTER_KEY_FILE").env_remove("LINKVAULT_AUDIT_FAIL_CLOSED");
    cmd.env("LINKVAULT_MASTER_KEY", master_key).env("LINKVAULT_LOG", "warn").kill_on_drop(true);
    cmd
}

/// Runs `linkvault audit verify`: whether it exited 0, and its stdout and stderr.
async fn verify(
    dir: &Path,
    fresh: &FreshStore,
    key: &str,
) -> Result<(bool, String, String), Box<dyn std::error::Error>> {
    let out = linkvault(dir, fresh, key).args(["audit", "verify"]).output().await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs SQL on the test's database directly, as someone with access to it (not through linkvault).
async fn raw_sql(backend: Backend, fresh: &FreshStore, sql: &str) -> Result<(), Box<dyn std::error::Error>> {
    match backend {
        Backend::Sqlite => rusqlite::Connection::open(&fresh.url)?.execute_batch(sql)?,
        Backend::Postgres => {
            let (client, conn) = tokio_postgres::connect(&fresh.url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(conn);
            let done = client.batch_execute(sql).await;
            drop(client);
            let _ = driver.await;
            done?;
        }
    }
    Ok(())
}

/// What an attacker with database access does first: the append-only triggers are in their way.
fn drop_guards(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
        Backend::Postgres => "DROP TRIGGER audit_log_append_only ON audit_log;",
    }
}

fn natural_key(client_id: ClientId, user: &str) -> NaturalKey {
    NaturalKey {
        client_id,
        user_id: UserId::parse(user).expect("valid user"),
        integration: IntegrationType::parse("coinbase").expect("valid integration"),
        scope: Scope::Read,
    }
}

/// A fresh database with a short log of real actions: a client (3 records), 3 connections created, one
/// re-authenticated, one deleted, one key added and revoked: 10 records.
async fn seeded(backend: Backend) -> Result<(FreshStore, tempfile::TempDir, String, u64), Box<dyn std::error::Error>> {
    let fresh = fresh_store(backend).await?;
    let master = MasterKey::generate()?;
    let key = master.to_base64().as_str().to_owned();
    let vault = Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::new(SystemClock)).await?;
    let client = vault.create_client("audited", TokenMode::Managed).await?.client_id;
    let creds = IntegrationCredentials::new("access".to_owned(), Some("refresh".to_owned()));
    let mut tokens = Vec::new();
    for user in ["u1", "u2", "u3", "u1"] {
        tokens.push(vault.store_credentials(&natural_key(client, user), &creds, &ConnectionMeta::default()).await?);
    }
    assert!(!tokens[3].created, "the fourth store re-authenticates u1");
    vault.delete(client, tokens[1].token_id).await?;
    vault.add_api_key(client, Scope::Read).await?;
    let keys = vault.list_api_keys(client).await?;
    vault.revoke_api_key(client, &keys.last().ok_or("no key")?.key_id.to_string()).await?;
    Ok((fresh, tempfile::tempdir()?, key, 10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_a_clean_log_and_export_prints_it() -> TestResult {
    for backend in Backend::all() {
        let (fresh, dir, key, n) = seeded(backend).await?;
        let (ok, stdout, stderr) = verify(dir.path(), &fresh, &key).await?;
        assert!(ok, "{backend:?}: {stdout}{stderr}");
        assert_eq!(stdout.trim(), format!("{n} records verified, head seq {n}"), "{backend:?}");

        let out = linkvault(dir.path(), &fresh, &key).args(["audit", "export"]).output().await?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
        assert_eq!(lines.len() as u64, n);
        let actions: Vec<&str> = lines.iter().filter_map(|l| l["action"].as_str()).collect();
        assert_eq!(
            actions,
            [
                "client.created",
                "api_key.added",
                "api_key.added",
                "connection.created",
                "connection.created",
                "connection.created",
                "connection.reauthenticated",
                "connection.deleted",
                "api_key.added",
                "api_key.revoked",
            ]
        );
        let first = &lines[3];
        for field in ["seq", "time", "actor", "action", "client_id", "token_id", "subject_id", "detail", "mac"] {
            assert!(first.get(field).is_some(), "field {field} in {first}");
        }
        assert_eq!(first["seq"], 4);
        assert_eq!(first["actor"], first["client_id"], "an API action is the client's");
        assert_eq!(lines[0]["actor"], "cli");
        assert!(!lines.iter().any(|l| l.to_string().contains("lvk_")), "no API key secret in the log");
        assert!(!lines.iter().any(|l| l.to_string().contains("refresh\"")), "no token in the log");

        let since_seq = linkvault(dir.path(), &fresh, &key).args(["audit", "export", "--since", "8"]).output().await?;
        let seqs: Vec<u64> = String::from_utf8(since_seq.stdout)?
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).map(|v| v["seq"].as_u64().unwrap_or(0)))
            .collect::<Result<_, _>>()?;
        assert_eq!(seqs, vec![8, 9, 10]);
        let time = lines[0]["time"].as_str().ok_or("no time")?.to_owned();
        let since_time =
            linkvault(dir.path(), &fresh, &key).args(["audit", "export", "--since", &time]).output().await?;
        assert_eq!(
            String::from_utf8(since_time.stdout)?.lines().count() as u64,
            n,
            "every record at or after the first"
        );
        let bad =
            linkvault(dir.path(), &fresh, &key).args(["audit", "export", "--since", "yesterday"]).output().await?;
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"), "{}", String::from_utf8_lossy(&bad.stderr));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_a_modified_a_removed_and_a_reordered_record() -> TestResult {
    for backend in Backend::all() {
        // linkvault itself cannot edit the log: the append-only guard refuses.
        let (fresh, _dir, _key, _) = seeded(backend).await?;
        let refused = raw_sql(backend, &fresh, "UPDATE audit_log SET detail = 'x' WHERE seq = 4").await;
        assert!(refused.is_err_and(|e| format!("{e:?}").contains("append-only")), "{backend:?}: the guard holds");

        let swap = "UPDATE audit_log SET seq = 1000 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 7; \
                    UPDATE audit_log SET seq = 7 WHERE seq = 1000;";
        let cases: [(&str, String, &str); 5] = [
            ("modified", "UPDATE audit_log SET detail = 'scope=write' WHERE seq = 4".into(), "record 4 was modified"),
            ("removed", "DELETE FROM audit_log WHERE seq = 5".into(), "record 5 was removed"),
            ("reordered", swap.into(), "record 6 is out of order (it was found at position 7)"),
            ("cut off the end", "DELETE FROM audit_log WHERE seq = 10".into(), "record 10 was removed"),
            (
                "cut off the end, head rewritten",
                "DELETE FROM audit_log WHERE seq = 10; \
                 UPDATE audit_head SET seq = 9, mac = (SELECT mac FROM audit_log WHERE seq = 9)"
                    .into(),
                "record 10 was removed",
            ),
        ];
        for (what, sql, verdict) in cases {
            let (fresh, dir, key, _) = seeded(backend).await?;
            raw_sql(backend, &fresh, &format!("{} {sql}", drop_guards(backend))).await?;
            let (ok, stdout, stderr) = verify(dir.path(), &fresh, &key).await?;
            assert!(!ok, "{backend:?} {what}: verify passed: {stdout}");
            assert!(stderr.contains(verdict), "{backend:?} {what}: {stderr}");
        }
    }
    Ok(())
}

/// Sensitive actions from 16 tasks over two store instances on one database (two pools on PostgreSQL, two
/// writer connections on SQLite), then `audit verify` passes and counts every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_a_clean_log_under_load() -> TestResult {
    const TASKS: usize = 16;
    const CONNECTIONS: usize = 5;
    for backend in Backend::all() {
        let fresh = fresh_store(backend).await?;
        let dir = tempfile::tempdir()?;
        let master = MasterKey::generate()?;
        let key = master.to_base64().as_str().to_owned();
        let a = Arc::new(Vault::open(Arc::clone(&fresh.store), Arc::new(master), Arc::new(SystemClock)).await?);
        let second = linkvault_storage::open(&fresh.url).await?;
        let b = Arc::new(Vault::open(second, Arc::new(MasterKey::from_base64(&key)?), Arc::new(SystemClock)).await?);
        let client = a.create_client("load", TokenMode::Managed).await?.client_id;
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let vault = if task % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tasks.spawn(async move {
                let creds = IntegrationCredentials::new("access".to_owned(), Some("refresh".to_owned()));
                let mut stored = Vec::new();
                for i in 0..CONNECTIONS {
                    let key = natural_key(client, &format!("user-{task}-{i}"));
                    stored.push(vault.store_credentials(&key, &creds, &ConnectionMeta::default()).await?);
                }
                for s in &stored[..2] {
                    vault.delete(client, s.token_id).await?;
                }
                let secret = vault.add_api_key(client, Scope::Read).await?;
                assert_eq!(vault.revoke_api_key(client, secret.expose()).await?, 1);
                Ok::<(), linkvault_vault::VaultError>(())
            });
        }
        while let Some(done) = tokio::time::timeout(std::time::Duration::from_secs(120), tasks.join_next()).await? {
            done??;
        }
        // Per task: 5 created, 2 deleted, 1 key added, 1 revoked; and the client's 3.
        let expected = (TASKS * (CONNECTIONS + 2 + 2) + 3) as u64;
        eprintln!("{backend:?}: {expected} audited actions from {TASKS} tasks in {:?}", started.elapsed());
        let (ok, stdout, stderr) = verify(dir.path(), &fresh, &key).await?;
        assert!(ok, "{backend:?}: {stdout}{stderr}");
        assert_eq!(stdout.trim(), format!("{expected} records verified, head seq {expected}"));
        assert_eq!(a.audit_append_failures() + b.audit_append_failures(), 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_an_action_whose_record_cannot_be_written() -> TestResult {
    for backend in Backend::all() {
        let (fresh, dir, key, n) = seeded(backend).await?;
        let client = {
            let out = linkvault(dir.path(), &fresh, &key).args(["audit", "export"]).output().await?;
            let first: serde_json::Value =
                serde_json::from_str(String::from_utf8(out.stdout)?.lines().next().ok_or("empty log")?)?;
            first["client_id"].as_str().ok_or("no client id")?.to_owned()
        };
        let add = |fail_closed: bool| {
            let mut cmd = linkvault(dir.path(), &fresh, &key);
            if fail_closed {
                cmd.arg("--audit-fail-closed");
            }
            cmd.args(["client", "key", "add", "--client", &client, "--scope", "read"]);
            cmd
        };
        // Counted through a store opened afresh, as another process would: the test's own SQLite store may
        // answer from a read snapshot up to 10 ms old (crates/storage/src/sqlite/readers.rs), and a CLI
        // command can start and finish within that.
        let key_count = || async {
            let store = linkvault_storage::open(&fresh.url).await?;
            Ok::<_, Box<dyn std::error::Error>>(store.list_api_keys(client.parse()?).await?.len())
        };
        let keys_before = key_count().await?;
        // The audit log's head row is gone: no record can be written.
        let hide = "CREATE TABLE audit_head_saved AS SELECT * FROM audit_head; DELETE FROM audit_head;";
        raw_sql(backend, &fresh, hide).await?;

        let refused = add(true).output().await?;
        assert!(!refused.status.success(), "{backend:?}: fail-closed must refuse");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("the audit log cannot be written, so the action was refused"), "{stderr}");
        assert_eq!(key_count().await?, keys_before, "no key was added");

        let allowed = add(false).output().await?;
        assert!(allowed.status.success(), "{backend:?}: the default goes ahead");
        let stderr = String::from_utf8_lossy(&allowed.stderr);
        assert!(stderr.contains("audit record not written"), "the failure is logged: {stderr}");
        assert!(!stderr.contains("lvk_"), "without the secret: {stderr}");
        assert_eq!(key_count().await?, keys_before + 1);

        raw_sql(backend, &fresh, "INSERT INTO audit_head SELECT * FROM audit_head_saved").await?;
        let (ok, stdout, stderr) = verify(dir.path(), &fresh, &key).await?;
        assert!(ok, "{stdout}{stderr}");
        assert_eq!(stdout.trim(), format!("{n} records verified, head seq {n}"), "nothing was half-written");

        let check =
            linkvault(dir.path(), &fresh, &key).args(["--audit-fail-closed", "config", "check"]).output().await?;
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(stdout.lines().any(|l| l.starts_with("audit") && l.contains("fail-closed")), "{stdout}");
    }
    Ok(())
}
