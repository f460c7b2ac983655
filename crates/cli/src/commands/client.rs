//! `linkvault client …`: create clients, add and revoke their API keys.

use clap::{Args, Subcommand};
use linkvault_domain::{ClientId, Scope, TokenMode};
use serde_json::json;

use crate::GlobalOptions;
use crate::bootstrap::open_vault;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client with one read and one write API key.
    Create(CreateArgs),
    /// Manage a client's API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Change how a client receives connections.
    Mode(ModeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// `managed`: the client receives tokenIds; `client`: opaque tokens it refreshes itself.
    #[arg(long, value_parser = ["managed", "client"], default_value = "managed")]
    token_mode: String,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ModeArgs {
    #[arg(long = "client")]
    client_id: String,
    #[arg(long, value_parser = ["managed", "client"])]
    token_mode: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add an API key to a client.
    Add(KeyAddArgs),
    /// Disable a key at once.
    Revoke(KeyRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    #[arg(long = "client")]
    client_id: String,
    #[arg(long, value_parser = ["read", "write"])]
    scope: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    #[arg(long = "client")]
    client_id: String,
    /// The first 12 characters of the secret (`lvk_` and 8 more), the whole secret, or the key id.
    #[arg(long, alias = "key-id")]
    secret_prefix: String,
}

fn parse_client(raw: &str) -> anyhow::Result<ClientId> {
    raw.trim()
        .parse::<ClientId>()
        .map_err(|_| anyhow::anyhow!("--client {raw:?} is not a client id (a UUID printed by `client create`)"))
}

pub async fn run(global: &GlobalOptions, cmd: ClientCommand) -> anyhow::Result<()> {
    let (vault, _) = open_vault(global).await?;
    match cmd {
        ClientCommand::Create(args) => {
            let mode: TokenMode = args.token_mode.parse()?;
            let created = vault.create_client(&args.name, mode).await?;
            let keys: Vec<_> = created
                .keys
                .iter()
                .map(|(scope, secret)| json!({"scope": scope.as_str(), "secret": secret.expose()}))
                .collect();
            if args.json {
                println!("{}", json!({"clientId": created.client_id.to_string(), "keys": keys}));
            } else {
                println!("client {} created ({} tokens)", created.client_id, mode.as_str());
                for (scope, secret) in &created.keys {
                    println!("  {scope:<5} key: {}", secret.expose());
                }
                println!("The secrets are shown only now; linkvault stores only their digests.");
            }
        }
        ClientCommand::Mode(args) => {
            let client = parse_client(&args.client_id)?;
            vault.set_token_mode(client, args.token_mode.parse()?).await?;
            println!("client {client} now uses {} tokens", args.token_mode);
        }
        ClientCommand::Key(KeyCommand::Add(args)) => {
            let client = parse_client(&args.client_id)?;
            let scope: Scope = args.scope.parse()?;
            let secret = vault.add_api_key(client, scope).await?;
            if args.json {
                println!("{}", json!({"scope": scope.as_str(), "secret": secret.expose()}));
            } else {
                println!("{scope} key added to client {client}: {}", secret.expose());
            }
        }
        ClientCommand::Key(KeyCommand::Revoke(args)) => {
            let client = parse_client(&args.client_id)?;
            match vault.revoke_api_key(client, &args.secret_prefix).await? {
                0 => anyhow::bail!("client {client} has no live key matching {:?}", args.secret_prefix),
                n => println!("revoked {n} key(s) of client {client}; they stop working immediately"),
            }
        }
    }
    Ok(())
}
