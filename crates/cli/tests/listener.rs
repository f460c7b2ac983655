//! `linkvault serve` with its default listener limits under a flood of idle, half-open connections.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_linkvault");

/// Idle connections the acceptance criterion names.
const IDLE: usize = 1_000;

/// The server's open-file limit in this test: above the default connection cap (512) plus what the database and
/// the runtime need, below `IDLE`, so a server without a connection cap runs out of descriptors.
const SERVER_FD_LIMIT: u32 = 800;

/// This process's soft open-file limit, from /proc (no libc call needed).
fn own_fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_half_open_connections_do_not_stop_healthz() -> TestResult {
    // The test holds the client ends; size the flood to what this process may open (the limit here is
    // normally well above it), and say so if it had to be smaller.
    let idle = own_fd_limit().map_or(IDLE, |limit| IDLE.min(limit.saturating_sub(200)));
    if idle < IDLE {
        eprintln!("open-file limit too low for {IDLE} connections; using {idle}");
    }
    let dir = tempfile::tempdir()?;
    // The server gets a lower descriptor limit than the flood, as on a host with a small `ulimit -n`.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("ulimit -n {SERVER_FD_LIMIT} && exec \"$0\" \"$@\"")).arg(BIN);
    cmd.arg("--data-dir").arg(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]);
    cmd.env_remove("LINKVAULT_MASTER_KEY").env_remove("LINKVAULT_MASTER_KEY_FILE").env_remove("LINKVAULT_DATABASE_URL");
    cmd.env("LINKVAULT_LOG", "error").stderr(Stdio::null()).kill_on_drop(true);
    let (mut child, url) = support::start_server(cmd).await.map_err(|e| e.to_string())?;
    let addr = url.trim_start_matches("http://").to_owned();

    let mut held = Vec::with_capacity(idle);
    let flood = tokio::time::timeout(Duration::from_secs(120), async {
        for i in 0..idle {
            let mut stream = TcpStream::connect(&addr).await?;
            // Half a request: a request line and part of a header, then nothing.
            let _ = stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Idle-{i}: ").as_bytes()).await;
            held.push(stream);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    assert!(matches!(flood, Ok(Ok(()))), "could not open the idle connections: {flood:?}");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let health = http.get(format!("{url}/healthz")).send().await?;
    assert_eq!(health.status(), 200, "healthz answers while {idle} idle connections were opened");
    drop(held);
    child.kill().await?;
    Ok(())
}
