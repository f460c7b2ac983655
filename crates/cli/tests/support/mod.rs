//! Starting `linkvault serve` from the CLI tests: waits for its "listening" line and keeps draining stdout.

#![allow(dead_code)] // each test binary uses part of it

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Spawns `cmd` (a `linkvault … serve` command), returns the child and its base URL once it listens (30 s at
/// most). Stdout is piped and drained so the server never blocks on a full pipe; stderr is the caller's choice.
pub async fn start_server(mut cmd: Command) -> Result<(Child, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("linkvault listening on ") {
                return Ok::<_, std::io::Error>(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        Ok(String::new())
    })
    .await??;
    if url.is_empty() {
        return Err("the server stopped before listening".into());
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

pub mod proxy;
