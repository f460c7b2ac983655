//! `linkvault healthcheck`: for container health probes and scripts.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Base URL of the server.
    #[arg(long, env = "LINKVAULT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = format!("{}/healthz", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let response = client.get(&url).send().await.map_err(|e| anyhow::anyhow!("{url}: no answer ({e})"))?;
    let status = response.status();
    if status.is_success() {
        println!("healthy");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}")
    }
}
