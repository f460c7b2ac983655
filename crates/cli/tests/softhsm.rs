//! The master key in a SoftHSM2 token (Debian's `softhsm2`), end to end with the real binary: `serve` starts
//! with the `LINKVAULT_MASTER_KEY_PKCS11_*` variables and no key anywhere on disk, a real sandbox grant is
//! imported and refreshed by the running engine, `keys rotate` and `keys rotate-master --new-pkcs11-key` run
//! against the token, and afterwards the connection and the API key still work under the new key while the
//! old one is refused. Each `linkvault` process gets the test's own token through `SOFTHSM2_CONF`.
//!
//! Skipped, with the reason printed, only where the module or OpenSC's `pkcs11-tool` is missing and `CI` is
//! unset; `.ci/run` installs both.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

#[path = "../../refresh/tests/common/mod.rs"]
mod common;
mod support;

use support::Api;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Res, TestResult, harness};
use linkvault_domain::{Clock, SystemClock};
use linkvault_refresh::EngineConfig;
use linkvault_storage::testing::Backend;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "linkvault-e2e";
const SO_PIN: &str = "so-pin-2468";
const USER_PIN: &str = "user-pin-9753";

/// A SoftHSM2 token of the test's own, with two master keys made as docs/architecture.md tells operators to.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Token {
    /// `None` (and the reason printed) where SoftHSM2 or `pkcs11-tool` is missing outside CI.
    fn create(keys: &[&str]) -> Res<Option<Self>> {
        let tool_missing = std::process::Command::new("pkcs11-tool").arg("--help").output().is_err();
        if !Path::new(MODULE).exists() || tool_missing {
            if std::env::var_os("CI").is_some() {
                return Err(format!("{MODULE} or pkcs11-tool is missing on CI, where .ci/run installs them").into());
            }
            eprintln!("skipped: {MODULE} or pkcs11-tool is missing (apt-get install softhsm2 opensc)");
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )?;
        let token = Self { dir, conf };
        token.run(
            "softhsm2-util",
            &["--init-token", "--free", "--label", TOKEN, "--so-pin", SO_PIN, "--pin", USER_PIN],
        )?;
        for key in keys {
            token.run(
                "pkcs11-tool",
                &[
                    "--module",
                    MODULE,
                    "--token-label",
                    TOKEN,
                    "--login",
                    "--pin",
                    USER_PIN,
                    "--keygen",
                    "--key-type",
                    "AES:32",
                    "--label",
                    key,
                    "--sensitive",
                    "--private",
                    "--usage-decrypt",
                    "--usage-sign",
                ],
            )?;
        }
        Ok(Some(token))
    }

    fn run(&self, program: &str, args: &[&str]) -> Res<()> {
        let out = std::process::Command::new(program).env("SOFTHSM2_CONF", &self.conf).args(args).output()?;
        if !out.status.success() {
            return Err(format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }

    /// `linkvault` with the master key `key` in this token, and no other master key configured.
    fn linkvault(&self, data_dir: &Path, key: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(data_dir);
        for var in ["LINKVAULT_MASTER_KEY", "LINKVAULT_MASTER_KEY_FILE", "LINKVAULT_DATABASE_URL"] {
            cmd.env_remove(var);
        }
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .env("LINKVAULT_MASTER_KEY_PKCS11_MODULE", MODULE)
            .env("LINKVAULT_MASTER_KEY_PKCS11_TOKEN", TOKEN)
            .env("LINKVAULT_MASTER_KEY_PKCS11_KEY", key)
            .env("LINKVAULT_MASTER_KEY_PKCS11_PIN", USER_PIN)
            .env("LINKVAULT_LOG", "warn")
            .kill_on_drop(true);
        cmd
    }

    async fn output(&self, data_dir: &Path, key: &str, args: &[&str]) -> Res<Output> {
        Ok(tokio::time::timeout(Duration::from_secs(120), self.linkvault(data_dir, key).args(args).output()).await??)
    }

    /// Runs a command that must succeed; its stdout.
    async fn ok(&self, data_dir: &Path, key: &str, args: &[&str]) -> Res<String> {
        let out = self.output(data_dir, key, args).await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(
                format!("linkvault {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)).into()
            );
        }
        Ok(stdout)
    }

    async fn serve(&self, data_dir: &Path, key: &str, catalog: &Path) -> Res<(Child, String)> {
        let mut cmd = self.linkvault(data_dir, key);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--catalog"]).arg(catalog).stderr(Stdio::null());
        support::start_server(cmd).await
    }
}

async fn stop(mut child: Child) -> TestResult {
    child.start_kill()?;
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    Ok(())
}

/// The acceptance line: "SoftHSM2 test: start, import, refresh and rotate with the master key in the token;
/// nothing key-like on disk."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_import_refresh_and_rotate_with_the_master_key_in_softhsm2() -> TestResult {
    let Some(token) = Token::create(&["master-a", "master-b"])? else { return Ok(()) };
    // The sandbox (in this process) issues access tokens living 6 s, so the engine refreshes within seconds.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let h = harness(
        Backend::Sqlite,
        clock,
        |mut c| {
            c.access_ttl = Duration::from_secs(6);
            c
        },
        |_| {},
        EngineConfig::new(),
    )
    .await?;
    let data = token.dir.path().join("data");
    let catalog = support::coinbase_catalog(token.dir.path(), &h.sandbox_base, None, "")?;

    let created: Value =
        serde_json::from_str(&token.ok(&data, "master-a", &["client", "create", "--name", "hsm", "--json"]).await?)?;
    let secret = created["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["scope"] == "write"))
        .and_then(|k| k["secret"].as_str())
        .ok_or("no write key")?
        .to_owned();
    let client = created["clientId"].as_str().ok_or("no clientId")?.to_owned();

    let (server, base) = token.serve(&data, "master-a", &catalog).await?;
    let api = Api::new(base, &client, &secret);
    let grant = h.grant("coinbase").await?;
    let body = json!({
        "userId": "hsm-user", "type": "coinbase",
        "accessToken": grant.access_token.expose_secret(),
        "refreshToken": grant.refresh_token.as_ref().ok_or("no refresh token")?.expose_secret(),
        "expiresInSeconds": 6,
    });
    let (status, answer) = api.call(reqwest::Method::POST, "/api/v1/tokens/import", Some(body)).await?;
    assert_eq!(status, 200, "{answer}");
    let token_id = answer["content"]["tokenId"].as_str().ok_or("no tokenId")?.to_owned();

    // The running engine refreshes it against the sandbox: credentials opened and sealed again under data
    // keys whose key version the token-held master key's keyring wraps.
    let started = Instant::now();
    let mut refreshed = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let (status, answer) = api.status(&token_id).await?;
        assert_eq!(status, 200, "{answer}");
        refreshed = answer["content"]["refreshCount"].as_u64().unwrap_or(0);
        if refreshed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(refreshed >= 2, "the connection was refreshed {refreshed} times in 60 s");
    let (_, max, _) = h.presentations("coinbase").await?;
    assert_eq!(max, 1, "a refresh token was presented twice");
    stop(server).await?;

    // Nothing key-like on disk: no key file was generated, and no file in the data dir holds a base64 key.
    let files: Vec<String> = std::fs::read_dir(&data)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(!files.iter().any(|f| f.ends_with(".key")), "{files:?}");

    let check = token.ok(&data, "master-a", &["config", "check"]).await?;
    assert!(check.contains("in the PKCS#11 token") && check.contains("matches the database"), "{check}");

    let rotated = token.ok(&data, "master-a", &["keys", "rotate", "--settle-secs", "0"]).await?;
    assert!(rotated.contains("version 2 is current"), "{rotated}");
    let moved = token.ok(&data, "master-a", &["keys", "rotate-master", "--new-pkcs11-key", "master-b"]).await?;
    assert!(moved.contains("master key rotation finished"), "{moved}");

    // The old key in the token opens nothing now; the new one opens everything.
    let refused = token.output(&data, "master-a", &["client", "create", "--name", "x"]).await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("fingerprint"), "{stderr}");
    let (server, base) = token.serve(&data, "master-b", &catalog).await?;
    let api = Api::new(base, &client, &secret);
    let (status, answer) = api.status(&token_id).await?;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["content"]["refreshCount"].as_u64().unwrap_or(0) >= refreshed, "{answer}");
    let (status, answer) = api
        .call(reqwest::Method::POST, "/api/v1/holdings/get", Some(json!({"authToken": token_id, "type": "coinbase"})))
        .await?;
    assert_eq!(status, 200, "a token-backed call under the new key: {answer}");
    stop(server).await?;
    Ok(())
}
