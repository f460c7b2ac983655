//! `linkvault client …`: create clients, add and revoke their API keys.

use clap::{Args, Subcommand};
use linkvault_domain::{ClientId, LinkOrigin, Scope, TokenMode};
use linkvault_vault::WebhookPolicy;
use serde_json::json;

use crate::GlobalOptions;
use crate::bootstrap::open_vault_with;
use crate::commands::webhook_egress::WebhookEgress;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client with one read and one write API key.
    Create(CreateArgs),
    /// Manage a client's API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Change how a client receives connections.
    Mode(ModeArgs),
    /// Give a client its own `/api/v1` rate limit, or the server's default again (`--default`).
    Limits(LimitsArgs),
    /// Manage the client's webhook endpoint.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Manage the web origins allowed to embed the client's Link page (its CSP `frame-ancestors`).
    #[command(subcommand)]
    Origins(OriginsCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Set the endpoint events are posted to, and print its new signing secret (`whsec_…`, shown once).
    Set(WebhookSetArgs),
}

#[derive(Debug, Args)]
pub struct WebhookSetArgs {
    #[arg(long = "client")]
    client_id: String,
    #[arg(long)]
    url: String,
    /// `standard`: Standard Webhooks (webhook-id/-timestamp/-signature headers), every event. `mesh`: Mesh's
    /// transfer webhooks (PascalCase body, X-Mesh-Signature-256 = base64 HMAC-SHA256 of the raw body keyed
    /// with the secret's text); Mesh's webhooks are transfer-only, so connection events are not sent.
    #[arg(long, default_value = "standard", value_parser = ["standard", "mesh"])]
    format: String,
    #[arg(long)]
    json: bool,
    /// Check the URL as `serve --sandbox` delivers: loopback receivers over http allowed.
    #[arg(long, env = "LINKVAULT_SANDBOX")]
    sandbox: bool,
    /// The same egress options as `serve`'s: a URL the deliverer would refuse is refused here.
    #[command(flatten)]
    egress: WebhookEgress,
}

#[derive(Debug, Subcommand)]
pub enum OriginsCommand {
    /// Allow an origin (`https://app.example.com`, no path) to embed Link.
    Add(OriginArgs),
    /// Stop allowing an origin.
    Remove(OriginArgs),
    /// List the allowed origins.
    List(OriginListArgs),
}

#[derive(Debug, Args)]
pub struct OriginArgs {
    #[arg(long = "client")]
    client_id: String,
    #[arg(long)]
    origin: String,
}

#[derive(Debug, Args)]
pub struct OriginListArgs {
    #[arg(long = "client")]
    client_id: String,
    #[arg(long)]
    json: bool,
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

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["requests_per_minute", "default"])))]
pub struct LimitsArgs {
    #[arg(long = "client")]
    client_id: String,
    /// The client's own limit: `/api/v1` requests per minute (bursts up to N), instead of `serve
    /// --api-rate-limit`. Takes effect within 1 s on every instance.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    requests_per_minute: Option<u32>,
    /// Back to the server's `--api-rate-limit`.
    #[arg(long)]
    default: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add an API key to a client.
    Add(KeyAddArgs),
    /// Disable a key: refused at once by new lookups, and within 1 s by every running instance (each caches an
    /// authenticated key for up to a second).
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
    let webhooks = match &cmd {
        ClientCommand::Webhook(WebhookCommand::Set(args)) => args.egress.policy(args.sandbox),
        _ => WebhookPolicy::default(),
    };
    let (vault, _) = open_vault_with(global, webhooks).await?;
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
        ClientCommand::Limits(args) => {
            let client = parse_client(&args.client_id)?;
            let own = args.requests_per_minute.and_then(std::num::NonZeroU32::new);
            vault.set_api_rate_limit(client, own).await?;
            match own {
                Some(n) => println!("client {client} may make {n} API requests per minute (bursts up to {n})"),
                None => println!("client {client} has the server's API rate limit (serve --api-rate-limit)"),
            }
        }
        ClientCommand::Origins(cmd) => origins(&vault, cmd).await?,
        ClientCommand::Webhook(WebhookCommand::Set(args)) => {
            let client = parse_client(&args.client_id)?;
            let format = linkvault_storage::WebhookFormat::parse(&args.format)
                .ok_or_else(|| anyhow::anyhow!("--format must be standard or mesh"))?;
            let secret = linkvault_webhooks::WebhookSecret::generate()?;
            vault.set_webhook_endpoint_with_format(client, &args.url, secret.expose(), format).await?;
            if args.json {
                println!(
                    "{}",
                    json!({"clientId": client.to_string(), "url": args.url.trim(), "format": format.as_str(),
                           "secret": secret.expose()})
                );
            } else {
                println!("webhooks of client {client} go to {} ({} format)", args.url.trim(), format.as_str());
                if format == linkvault_storage::WebhookFormat::Mesh {
                    println!("Mesh format: transfer events only, signed in X-Mesh-Signature-256");
                }
                println!("signing secret (shown once): {}", secret.expose());
            }
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
                n => println!(
                    "revoked {n} key(s) of client {client}; running instances refuse them within {} s (they cache an \
                     authenticated key that long)",
                    linkvault_vault::KEY_CACHE_TTL.as_secs()
                ),
            }
        }
    }
    Ok(())
}

async fn origins(vault: &linkvault_vault::Vault, cmd: OriginsCommand) -> anyhow::Result<()> {
    match cmd {
        OriginsCommand::Add(args) => {
            let client = parse_client(&args.client_id)?;
            let origin = LinkOrigin::parse(&args.origin).map_err(|e| anyhow::anyhow!("--origin {}", e.reason))?;
            let added = vault.add_link_origin(client, &origin).await?;
            println!(
                "{origin} {} to embed Link for client {client}",
                if added { "is now allowed" } else { "was already allowed" }
            );
        }
        OriginsCommand::Remove(args) => {
            let client = parse_client(&args.client_id)?;
            let origin = args.origin.trim().trim_end_matches('/');
            if !vault.remove_link_origin(client, origin).await? {
                anyhow::bail!("{origin} is not an allowed origin of client {client}");
            }
            println!("{origin} may no longer embed Link for client {client}");
        }
        OriginsCommand::List(args) => {
            let client = parse_client(&args.client_id)?;
            let origins: Vec<String> = vault.link_origins(client).await?.iter().map(ToString::to_string).collect();
            if args.json {
                println!("{}", json!({"clientId": client.to_string(), "origins": origins}));
            } else if origins.is_empty() {
                println!("client {client} allows no origin to embed Link (sandbox mode always allows localhost)");
            } else {
                origins.iter().for_each(|o| println!("{o}"));
            }
        }
    }
    Ok(())
}
