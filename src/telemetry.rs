//! Logging set-up: `tracing` with an `EnvFilter` (default `info` with the MCP SDK's own lines
//! off, `RUST_LOG` overrides), as text or JSON lines on stderr. Secrets never reach a log line:
//! they travel as [`crate::crypto::Secret`], whose `Debug` is redacted, and are never passed
//! as fields.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    // rmcp's own log lines quote server replies and reqwest errors, which name the server URL
    // (query included); `domain::mcp` reports what matters through its errors instead.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in files or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
