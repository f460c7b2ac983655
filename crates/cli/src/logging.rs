//! Process logging: where log lines go and in which shape. Logs and operator notices go to stderr; stdout
//! is each command's own output (credentials printed on request, `config check`'s report), never logs.
//!
//! Colour codes are written only to a terminal: a file, a pipe or a log collector gets plain text, so a
//! line can be grepped and parsed. `--log-format json` gives log shippers one JSON object per line —
//! tracing's events, and the notices and the final error, which are printed outside tracing, in the same
//! shape — so nothing on stderr needs a second parser.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use clap::ValueEnum;

/// The shape of stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the event's other fields).
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Whether colour codes may be written to stderr: only to a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
fn ansi_allowed() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the subscriber: the filter from `LINKVAULT_LOG`, else `RUST_LOG`, else `info`.
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_env("LINKVAULT_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi_allowed()).with_target(false).init(),
        LogFormat::Json => builder.json().with_ansi(false).with_current_span(false).with_span_list(false).init(),
    }
}

/// The level a message printed outside tracing is recorded with in JSON.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Notice,
    Warning,
    Error,
}

/// Prints a message for the operator on stderr, whatever the log filter: `notice: …` / `warning: …` /
/// `error: …` in text, a JSON record shaped like tracing's in JSON.
pub fn operator(level: Level, message: &str) {
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => {
            let prefix = match level {
                Level::Notice => "notice",
                Level::Warning => "warning",
                Level::Error => "error",
            };
            eprintln!("{prefix}: {message}");
        }
        LogFormat::Json => {
            let level = match level {
                Level::Notice => "INFO",
                Level::Warning => "WARN",
                Level::Error => "ERROR",
            };
            let timestamp = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let record = serde_json::json!({
                "timestamp": timestamp,
                "level": level,
                "fields": {"message": message},
                "target": "linkvault",
            });
            eprintln!("{record}");
        }
    }
}
