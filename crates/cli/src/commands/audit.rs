//! `linkvault audit verify` and `linkvault audit export`: the operator's side of the tamper-evident audit log.
//! Both walk the log through the vault a batch at a time, so memory stays bounded whatever its length.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use linkvault_storage::AuditRecord;
use linkvault_vault::{AuditSince, AuditTamper};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::GlobalOptions;
use crate::bootstrap::open_vault;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the whole chain; exit non-zero naming the first record modified, removed or out of order.
    Verify,
    /// Print the records as JSON lines (one object per record) to stdout, for shipping elsewhere.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Start at this record: a sequence number (`42`: that record and the later ones) or an RFC 3339 time
    /// (`2026-12-01T00:00:00Z`: records written at or after it). Without it, every record.
    #[arg(long, value_parser = parse_since)]
    since: Option<AuditSince>,
}

fn parse_since(raw: &str) -> Result<AuditSince, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().map(AuditSince::Seq).map_err(|e| format!("sequence number {raw:?}: {e}"));
    }
    OffsetDateTime::parse(raw, &Rfc3339).map(AuditSince::Time).map_err(|_| {
        format!("{raw:?} is neither a sequence number nor an RFC 3339 time (e.g. 42 or 2026-12-01T00:00:00Z)")
    })
}

/// One exported record: these field names are stable (docs/architecture.md, "Audit log").
#[derive(Debug, Serialize)]
struct Line<'a> {
    seq: u64,
    time: String,
    actor: &'a str,
    action: &'a str,
    client_id: Option<&'a str>,
    token_id: Option<&'a str>,
    subject_id: Option<&'a str>,
    detail: Option<&'a str>,
    /// The record's chain MAC, hex (lets a receiver check it continues what it already has).
    mac: String,
}

impl<'a> Line<'a> {
    fn of(r: &'a AuditRecord) -> anyhow::Result<Self> {
        Ok(Self {
            seq: r.seq,
            time: r.entry.at.format(&Rfc3339).context("record time")?,
            actor: &r.entry.actor,
            action: &r.entry.action,
            client_id: r.entry.client_id.as_deref(),
            token_id: r.entry.token_id.as_deref(),
            subject_id: r.entry.subject_id.as_deref(),
            detail: r.entry.detail.as_deref(),
            mac: r.mac.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

pub async fn run(global: &GlobalOptions, cmd: AuditCommand) -> anyhow::Result<()> {
    let (vault, _) = open_vault(global).await?;
    match cmd {
        AuditCommand::Verify => {
            let verdict = vault.verify_audit().await?;
            match verdict.problem {
                None => {
                    println!("{} records verified, head seq {}", verdict.verified, verdict.head_seq);
                    Ok(())
                }
                Some((seq, tamper)) => {
                    let what = match tamper {
                        AuditTamper::Modified => format!("record {seq} was modified (it does not match its MAC)"),
                        AuditTamper::Removed => format!(
                            "record {seq} was removed (the chain continues past it, or its head says there were more)"
                        ),
                        AuditTamper::OutOfOrder { found_at } => {
                            format!("record {seq} is out of order (it was found at position {found_at})")
                        }
                    };
                    anyhow::bail!(
                        "audit log verification failed: {what}; {} records before it verified, head seq {}",
                        verdict.verified,
                        verdict.head_seq
                    )
                }
            }
        }
        AuditCommand::Export(args) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            vault
                .export_audit(args.since, |record| -> anyhow::Result<()> {
                    serde_json::to_writer(&mut out, &Line::of(record)?)?;
                    out.write_all(b"\n")?;
                    Ok(())
                })
                .await?;
            out.flush()?;
            Ok(())
        }
    }
}
