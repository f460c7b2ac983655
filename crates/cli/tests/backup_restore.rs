//! `linkvault backup` / `restore` and the deletion ledger, with the real binary: a backup taken before a
//! deletion, restored, never brings the deleted connection back (SQLite through `linkvault backup`, PostgreSQL
//! through real `pg_dump` / `pg_restore` of the test's own schema); a deletion the ledger cannot record is
//! refused; a damaged ledger line is named by its number and a torn last line is tolerated; a SQLite snapshot
//! taken while the server writes is a sound database; after `keys rotate-master --shred-deleted`, a dump taken
//! before a deletion opens the deleted token with no key that still exists; `serve`'s key schedule deletes the
//! key version a deleted connection used.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod support;

use support::Api;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use linkvault_crypto::MasterKey;
use linkvault_domain::{ClientId, SystemClock, TokenId};
use linkvault_storage::DynStore;
use linkvault_storage::testing::{Backend, FreshStore, fresh_store};
use linkvault_vault::Vault;
use linkvault_vault::master_keyring::{FINGERPRINT_META, KEYRING_META};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");

/// One test's installation: its data dir, its database (the data dir's SQLite file, or a PostgreSQL schema of
/// its own) and its master key.
struct Install {
    dir: tempfile::TempDir,
    /// `None`: SQLite in the data dir (no in-process store holds it open, so it can be restored over).
    postgres: Option<FreshStore>,
    master_key: String,
}

impl Install {
    async fn new(backend: Backend) -> Res<Self> {
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_store(Backend::Postgres).await?),
        };
        Ok(Self { dir: tempfile::tempdir()?, postgres, master_key: MasterKey::generate()?.to_base64().as_str().into() })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ledger(&self) -> PathBuf {
        self.data_dir().join("deletions.ledger")
    }

    /// The live database's URL, for opening it in-process while no server runs.
    fn database_url(&self) -> String {
        match &self.postgres {
            Some(fresh) => fresh.url.clone(),
            None => self.data_dir().join("linkvault.db").display().to_string(),
        }
    }

    /// The test's own PostgreSQL schema.
    fn schema(&self) -> Res<String> {
        let fresh = self.postgres.as_ref().ok_or("not PostgreSQL")?;
        Ok(fresh.url.rsplit("search_path%3D").next().ok_or("schema")?.to_owned())
    }

    /// A copy of the whole database as it is now: `linkvault backup` on SQLite, a real `pg_dump` of the test's
    /// schema on PostgreSQL.
    async fn dump(&self, out: &Path) -> TestResult {
        if self.postgres.is_none() {
            self.ok(&["backup", "--out", out.to_str().ok_or("path")?]).await?;
            return Ok(());
        }
        let base = linkvault_storage::testing::postgres_test_url().ok_or("no url")?;
        let file = format!("--file={}", out.display());
        tool("pg_dump", &["--format=custom", &format!("--schema={}", self.schema()?), &file, &base]).await
    }

    fn linkvault(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(self.data_dir());
        for var in ["LINKVAULT_MASTER_KEY_FILE", "LINKVAULT_DATABASE_URL", "LINKVAULT_DELETION_LEDGER"] {
            cmd.env_remove(var);
        }
        cmd.env("LINKVAULT_MASTER_KEY", &self.master_key).env("LINKVAULT_LOG", "warn").kill_on_drop(true);
        if let Some(fresh) = &self.postgres {
            cmd.arg("--database-url").arg(&fresh.url);
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Res<Output> {
        Ok(self.linkvault().args(args).output().await?)
    }

    /// Runs a command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> Res<String> {
        let out = self.run(args).await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "linkvault {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        Ok(stdout)
    }

    async fn serve(&self, extra: &[&str]) -> Res<(Child, Api)> {
        let mut cmd = self.linkvault();
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra).stderr(Stdio::null());
        let (child, base) = support::start_server(cmd).await.map_err(|e| e.to_string())?;
        Ok((child, Api::new(base, "", "")))
    }

    /// A client with a write key, for the API calls.
    async fn client(&self) -> Res<(String, String)> {
        let created: Value = serde_json::from_str(&self.ok(&["client", "create", "--name", "app", "--json"]).await?)?;
        let write = created["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["scope"] == "write"))
            .and_then(|k| k["secret"].as_str())
            .ok_or("no write key")?;
        Ok((created["clientId"].as_str().ok_or("no clientId")?.to_owned(), write.to_owned()))
    }
}

impl Api {
    async fn import(&self, user: &str) -> Res<String> {
        let body = json!({"userId": user, "type": "coinbase", "accessToken": format!("access-{user}"),
                          "refreshToken": format!("refresh-{user}"), "expiresInSeconds": 3600});
        let (status, answer) = self.call(reqwest::Method::POST, "/api/v1/tokens/import", Some(body)).await?;
        assert_eq!(status, 200, "{answer}");
        Ok(answer["content"]["tokenId"].as_str().ok_or("no tokenId")?.to_owned())
    }

    async fn delete(&self, token_id: &str) -> Res<(u16, Value)> {
        self.call(reqwest::Method::DELETE, "/api/v1/account", Some(json!({"authToken": token_id, "type": "coinbase"})))
            .await
    }
}

async fn stop(mut child: Child) -> TestResult {
    child.start_kill()?;
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    Ok(())
}

/// Runs an outside tool (pg_dump, pg_restore, psql) that must succeed.
async fn tool(program: &str, args: &[&str]) -> TestResult {
    let out = Command::new(program).args(args).output().await?;
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The acceptance line: "Restore of a backup taken before a deletion: the deleted tokenId stays
/// `tokenNotFound`, on both backends."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_a_backup_taken_before_a_deletion_keeps_the_deleted_token_not_found() -> TestResult {
    for backend in Backend::all() {
        eprintln!("backup and restore on {backend:?}");
        let install = Install::new(backend).await?;
        let client = install.client().await?;
        let (server, api) = install.serve(&[]).await?;
        let api = api.for_client(&client);
        let ids = [api.import("u0").await?, api.import("u1").await?, api.import("u2").await?];

        // The backup, taken while the server runs and before the deletion.
        let dump = install.dir.path().join("backup");
        match &install.postgres {
            None => {
                let out = install.ok(&["backup", "--out", dump.to_str().ok_or("path")?]).await?;
                assert!(out.contains("bytes in") && out.contains(" s)"), "{out}");
                let again = install.run(&["backup", "--out", dump.to_str().ok_or("path")?]).await?;
                assert!(!again.status.success(), "an existing backup is not overwritten without --force");
                assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
            }
            Some(_) => {
                // `linkvault backup` names the documented pg_dump path instead of dumping.
                let out = install.run(&["backup", "--out", "x"]).await?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success() && stderr.contains("pg_dump --format=custom"), "{stderr}");
                install.dump(&dump).await?;
            }
        }

        let (status, answer) = api.delete(&ids[0]).await?;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(api.status(&ids[0]).await?.1["errorType"], "tokenNotFound");
        let ledger = std::fs::read_to_string(install.ledger())?;
        assert_eq!(ledger.lines().count(), 1, "{ledger}");
        assert!(ledger.contains(&ids[0]) && ledger.contains(&client.0), "{ledger}");
        assert!(!ledger.contains("access-u0") && !ledger.contains("refresh-u0"), "no secret in the ledger");
        if install.postgres.is_none() {
            let busy = install.run(&["restore", "--from", dump.to_str().ok_or("path")?, "--force"]).await?;
            let stderr = String::from_utf8_lossy(&busy.stderr);
            assert!(!busy.status.success() && stderr.contains("is in use"), "restore under a running server: {stderr}");
        }
        stop(server).await?;

        // Restore the pre-deletion backup.
        let restored = match &install.postgres {
            None => install.ok(&["restore", "--from", dump.to_str().ok_or("path")?, "--force"]).await?,
            Some(_) => {
                let schema = install.schema()?;
                let base = linkvault_storage::testing::postgres_test_url().ok_or("no url")?;
                tool("psql", &[&base, "-v", "ON_ERROR_STOP=1", "-c", &format!("DROP SCHEMA {schema} CASCADE")]).await?;
                let db = format!("--dbname={base}");
                tool("pg_restore", &["--no-owner", "--exit-on-error", &db, dump.to_str().ok_or("path")?]).await?;
                install.ok(&["restore"]).await?
            }
        };
        assert!(restored.contains("re-applied 1 deletion(s); 0 were already absent"), "{restored}");
        // Idempotent.
        let again = install.ok(&["restore"]).await?;
        assert!(again.contains("re-applied 0 deletion(s); 1 were already absent"), "{again}");

        let (server, api) = install.serve(&[]).await?;
        let api = api.for_client(&client);
        let (status, answer) = api.status(&ids[0]).await?;
        assert_eq!((status, answer["errorType"].as_str()), (404, Some("tokenNotFound")), "{answer}");
        for id in &ids[1..] {
            let (status, answer) = api.status(id).await?;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["content"]["tokenId"].as_str(), Some(id.as_str()));
        }
        // The user can connect again, under a new tokenId: the deleted one is never reissued.
        let fresh_id = api.import("u0").await?;
        assert_ne!(fresh_id, ids[0]);
        stop(server).await?;
    }
    Ok(())
}

/// An older copy of the database opened on its own, as whoever got hold of it would: the SQLite backup file as
/// it is, the PostgreSQL dump restored into a database of its own (dropped at the end).
struct Copy {
    store: DynStore,
    database: Option<String>,
}

impl Copy {
    async fn open(install: &Install, dump: &Path) -> Res<Self> {
        let Some(fresh) = &install.postgres else {
            return Ok(Self { store: linkvault_storage::open(dump.to_str().ok_or("path")?).await?, database: None });
        };
        let base = linkvault_storage::testing::postgres_test_url().ok_or("no url")?;
        let database = format!("lv_copy_{}", uuid::Uuid::new_v4().simple());
        tool("psql", &[&base, "-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {database}")]).await?;
        let mut url = url::Url::parse(&fresh.url)?;
        url.set_path(&format!("/{database}"));
        let url = url.to_string();
        let db = format!("--dbname={url}");
        tool("pg_restore", &["--no-owner", "--exit-on-error", &db, dump.to_str().ok_or("path")?]).await?;
        Ok(Self { store: linkvault_storage::open(&url).await?, database: Some(database) })
    }

    async fn drop_database(self) -> TestResult {
        let Self { store, database } = self;
        drop(store);
        if let Some(database) = database {
            let base = linkvault_storage::testing::postgres_test_url().ok_or("no url")?;
            let sql = format!("DROP DATABASE {database} WITH (FORCE)");
            tool("psql", &[&base, "-v", "ON_ERROR_STOP=1", "-c", &sql]).await?;
        }
        Ok(())
    }
}

/// The acceptance line: "On PostgreSQL: after a deletion and the deadline, a `pg_dump` taken before the
/// deletion, together with the current master key, cannot open the deleted token (test it by trying)" — and
/// the same for a SQLite backup. The deadline is met by `keys rotate-master --shred-deleted` and destroying the
/// old master key; the old key is used here only for the control that the copy does hold the deleted token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shred_deleted_a_dump_taken_before_a_deletion_opens_nothing() -> TestResult {
    for backend in Backend::all() {
        eprintln!("deletion deadline on {backend:?}");
        let mut install = Install::new(backend).await?;
        let client = install.client().await?;
        let (server, api) = install.serve(&[]).await?;
        let api = api.for_client(&client);
        let ids = [api.import("u0").await?, api.import("u1").await?, api.import("u2").await?];
        let dump = install.dir.path().join("copy");
        install.dump(&dump).await?;
        assert_eq!(api.delete(&ids[0]).await?.0, 200);
        stop(server).await?;

        let new_key = MasterKey::generate()?.to_base64().as_str().to_owned();
        let new_key_file = install.dir.path().join("new.key");
        std::fs::write(&new_key_file, &new_key)?;
        let key_arg = new_key_file.to_str().ok_or("path")?;
        let out = install
            .ok(&["keys", "rotate-master", "--new-key-file", key_arg, "--shred-deleted", "--settle-secs", "0"])
            .await?;
        assert!(out.contains("version 2 is current, retired versions: 1"), "{out}");
        assert!(out.contains("given new random wrapping and sealing keys"), "{out}");
        assert!(out.contains("no backup, dump, WAL segment or replica"), "{out}");

        let copy = Copy::open(&install, &dump).await?;
        let (client_id, token_id): (ClientId, TokenId) = (client.0.parse()?, ids[0].parse()?);
        // Control: with the old master key the copy still opens the deleted token.
        {
            let old = MasterKey::from_base64(&install.master_key)?;
            let vault = Vault::open(
                std::sync::Arc::clone(&copy.store),
                std::sync::Arc::new(old),
                std::sync::Arc::new(SystemClock),
            )
            .await?;
            let record = vault.connection_for(client_id, token_id).await?;
            assert_eq!(vault.open_credentials(&record).await?.access_token.expose_secret(), "access-u0");
        }
        // With the current master key: the copy's keyring does not open.
        let current = || MasterKey::from_base64(&new_key).map(std::sync::Arc::new);
        let refused =
            Vault::open(std::sync::Arc::clone(&copy.store), current()?, std::sync::Arc::new(SystemClock)).await;
        assert!(refused.is_err(), "the current master key opened the copy");
        // Nor with every key that exists now: the live keyring grafted onto the copy. Every key version the copy
        // used is gone from the live database, and the live keyring's wrapping key unwraps none of them.
        let live = linkvault_storage::open(&install.database_url()).await?;
        let live_versions: Vec<u32> = live.key_versions().await?.iter().map(|v| v.version).collect();
        let copy_versions: Vec<u32> = copy.store.key_versions().await?.iter().map(|v| v.version).collect();
        assert!(copy_versions.iter().all(|v| !live_versions.contains(v)), "{copy_versions:?} {live_versions:?}");
        for meta in [KEYRING_META, FINGERPRINT_META] {
            copy.store.set_meta(meta, &live.get_meta(meta).await?.ok_or("no meta")?).await?;
        }
        drop(live);
        match Vault::open(std::sync::Arc::clone(&copy.store), current()?, std::sync::Arc::new(SystemClock)).await {
            // Opening checks the current key version unwraps: it does not, as no key of the copy's is left.
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("key version") || e.contains("failed authentication"), "{e}");
            }
            Ok(vault) => {
                let record = vault.connection_for(client_id, token_id).await?;
                assert!(vault.open_credentials(&record).await.is_err(), "the live keys opened the deleted token");
            }
        }
        copy.drop_database().await?;

        // The live installation, under the new key: the others answer, the deleted one stays tokenNotFound.
        install.master_key = new_key;
        let (server, api) = install.serve(&[]).await?;
        let api = api.for_client(&client);
        let (status, answer) = api.status(&ids[0]).await?;
        assert_eq!((status, answer["errorType"].as_str()), (404, Some("tokenNotFound")), "{answer}");
        for id in &ids[1..] {
            assert_eq!(api.status(id).await?.0, 200);
        }
        stop(server).await?;
    }
    Ok(())
}

/// `serve`'s key schedule (here every 3 s instead of the default day): without any command, the key version a
/// deleted connection was wrapped under is replaced, the live rows are re-wrapped, and the old version is
/// deleted from the live database, while every other connection keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_schedule_in_serve_deletes_the_version_a_deleted_connection_used() -> TestResult {
    for backend in Backend::all() {
        eprintln!("key schedule on {backend:?}");
        let install = Install::new(backend).await?;
        let client = install.client().await?;
        let (server, api) = install.serve(&["--key-rotation-interval-secs", "3"]).await?;
        let api = api.for_client(&client);
        let ids = [api.import("u0").await?, api.import("u1").await?, api.import("u2").await?];
        assert_eq!(api.delete(&ids[0]).await?.0, 200);

        // The schedule's own audit record says when version 1 is gone (a rotation takes its 10 s settle).
        let started = Instant::now();
        let retired_one = |line: &str| {
            let record: Value = serde_json::from_str(line).unwrap_or_default();
            record["actor"] == "key-schedule"
                && record["action"] == "keys.rotated"
                && record["detail"]
                    .as_str()
                    .and_then(|d| d.split("retired=").nth(1))
                    .is_some_and(|list| list.split(',').any(|v| v == "1"))
        };
        loop {
            let exported = install.ok(&["audit", "export"]).await?;
            if exported.lines().any(retired_one) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "version 1 not retired in 90 s:\n{exported}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for id in &ids[1..] {
            assert_eq!(api.status(id).await?.0, 200);
        }
        let (status, answer) = api.status(&ids[0]).await?;
        assert_eq!((status, answer["errorType"].as_str()), (404, Some("tokenNotFound")), "{answer}");
        stop(server).await?;

        let live = linkvault_storage::open(&install.database_url()).await?;
        let versions: Vec<u32> = live.key_versions().await?.iter().map(|v| v.version).collect();
        assert!(!versions.contains(&1) && !versions.is_empty(), "{versions:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_the_ledger_cannot_record_is_refused_with_503() -> TestResult {
    let install = Install::new(Backend::Sqlite).await?;
    let client = install.client().await?;
    let ledger_dir = install.dir.path().join("ledger");
    std::fs::create_dir_all(&ledger_dir)?;
    let ledger = ledger_dir.join("deletions.ledger");
    let (server, api) = install.serve(&["--deletion-ledger", ledger.to_str().ok_or("path")?]).await?;
    let api = api.for_client(&client);
    let id = api.import("u0").await?;

    // A directory where the ledger file was: unwritable for every user (these tests may run as root, for whom
    // a read-only directory is no obstacle).
    std::fs::remove_file(&ledger)?;
    std::fs::create_dir(&ledger)?;
    let (status, answer) = api.delete(&id).await?;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["status"], "serverFailure");
    assert_eq!(answer["errorType"], "deletionLedgerUnavailable");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("nothing was deleted")), "{answer}");
    assert_eq!(api.status(&id).await?.0, 200, "the connection is still there");

    std::fs::remove_dir(&ledger)?;
    assert_eq!(api.delete(&id).await?.0, 200);
    assert!(std::fs::read_to_string(&ledger)?.contains(&id));
    stop(server).await?;

    // A ledger path that cannot be created stops start-up instead of the first deletion.
    let blocked = install.dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"")?;
    let out =
        install.run(&["--deletion-ledger", &format!("{}/deletions.ledger", blocked.display()), "migrate"]).await?;
    assert!(out.status.success(), "migrate opens no vault");
    let mut cmd = install.linkvault();
    cmd.arg("--deletion-ledger").arg(blocked.join("deletions.ledger")).args(["serve", "--listen", "127.0.0.1:0"]);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("deletion ledger"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_names_a_corrupt_ledger_line_and_tolerates_a_torn_last_one() -> TestResult {
    let install = Install::new(Backend::Sqlite).await?;
    install.ok(&["migrate"]).await?;
    let line = |token: &str| {
        format!(
            "{{\"v\":1,\"tokenId\":\"{token}\",\"clientId\":\"{}\",\"deletedAt\":\"2026-12-01T10:00:00Z\"}}\n",
            uuid::Uuid::new_v4()
        )
    };
    let (a, b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let ledger = install.dir.path().join("hostile.ledger");
    let ledger_arg = ledger.to_str().ok_or("path")?;

    std::fs::write(&ledger, format!("{}{}{{\"v\":1,\"tokenId\":12}}\n{}", line(&a), line(&b), line(&a)))?;
    let out = install.run(&["restore", "--ledger", ledger_arg]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("hostile.ledger") && stderr.contains("at line 3"), "{stderr}");

    let torn = &line(&b)[..40];
    std::fs::write(&ledger, format!("{}{torn}", line(&a)))?;
    let out = install.ok(&["restore", "--ledger", ledger_arg]).await?;
    assert!(out.contains("ignored a torn last line"), "{out}");
    assert!(out.contains("re-applied 0 deletion(s); 1 were already absent"), "{out}");

    // Several instances' ledgers at once; a missing one is an error, not "no deletions".
    let second = install.dir.path().join("second.ledger");
    std::fs::write(&second, line(&b))?;
    let out = install.ok(&["restore", "--ledger", ledger_arg, "--ledger", second.to_str().ok_or("path")?]).await?;
    assert!(out.contains("re-applied 0 deletion(s); 2 were already absent"), "{out}");
    assert!(out.contains("2 distinct tokenIds") && out.contains("in 2 ledger(s)"), "{out}");
    let out = install.run(&["restore", "--ledger", "/nonexistent/deletions.ledger"]).await?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no deletion ledger at"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_while_the_server_writes_is_consistent() -> TestResult {
    let install = Install::new(Backend::Sqlite).await?;
    let client = install.client().await?;
    let (server, api) = install.serve(&[]).await?;
    let api = std::sync::Arc::new(api.for_client(&client));
    let writer = {
        let api = std::sync::Arc::clone(&api);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0;
            while n < 400 && started.elapsed() < Duration::from_secs(30) {
                let id = api.import(&format!("w{n}")).await.map_err(|e| e.to_string())?;
                if n % 3 == 0 {
                    api.delete(&id).await.map_err(|e| e.to_string())?;
                }
                n += 1;
            }
            Ok::<u32, String>(n)
        })
    };
    let mut backups = Vec::new();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out: PathBuf = install.dir.path().join(format!("during-{i}.db"));
        let printed = install.ok(&["backup", "--out", out.to_str().ok_or("path")?]).await?;
        eprintln!("{}", printed.lines().next().unwrap_or_default());
        backups.push(out);
    }
    let written = writer.await??;
    stop(server).await?;
    assert!(written > 0);
    let mut counts = Vec::new();
    for path in &backups {
        counts.push(check_snapshot(path)?);
    }
    eprintln!("{written} imports; connections in the three snapshots: {counts:?}");
    // Each later snapshot sees the writes before it (an import may be undone by its deletion in between).
    assert!(counts.windows(2).all(|w| w[1] + 1 >= w[0]), "{counts:?}");
    assert!(counts.last().is_some_and(|n| *n > 0), "{counts:?}");
    Ok(())
}

/// Opens a snapshot on its own: integrity_check passes, and connections and their retired ids agree.
fn check_snapshot(path: &Path) -> Res<i64> {
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok", "{}", path.display());
    let both: i64 =
        db.query_row("SELECT COUNT(*) FROM connections c JOIN retired_tokens r ON r.token_id = c.token_id", [], |r| {
            r.get(0)
        })?;
    assert_eq!(both, 0, "a connection and its tombstone in one snapshot");
    let freelist: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    assert_eq!(freelist, 0, "VACUUM INTO writes no free pages");
    Ok(db.query_row("SELECT COUNT(*) FROM connections", [], |r| r.get(0))?)
}
