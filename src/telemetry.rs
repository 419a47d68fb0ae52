//! Logging set-up: `tracing` with an `EnvFilter` (default `info`, `RUST_LOG` overrides), as
//! text or JSON lines on stderr. Secrets never reach a log line: they travel as
//! [`crate::crypto::Secret`], whose `Debug` is redacted, and are never passed as fields.
//!
//! Some dependencies print what passes through them at debug and trace level, whatever it
//! carries: tungstenite the text of every WebSocket message (the `connection_init` payload holds
//! an API token, and a `createApiToken` result sent over a socket holds a new one), rmcp every
//! JSON-RPC message (tool arguments and results) and server replies that name the server URL,
//! tokio-postgres the parameters of every statement, reqwest (when verbose) the raw bytes of a
//! connection, async-graphql's tracing extension the query with its variables. [`CAPS`] limits
//! those targets whatever `RUST_LOG` says: it is a second filter that every span and event must
//! pass as well, so no `RUST_LOG` directive, however specific (`rmcp::service=trace`,
//! `[span]=trace`), can lift it.

use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, fmt};

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset, empty or invalid.
const DEFAULT_FILTER: &str = "info";

/// The most each listed target (and every target under it) may log, applied after `RUST_LOG`.
pub const CAPS: &[(&str, LevelFilter)] = &[
    // Every JSON-RPC message, tool arguments and results included, and server replies.
    ("rmcp", LevelFilter::OFF),
    // Every WebSocket message and frame, `connection_init` payloads included.
    ("tungstenite", LevelFilter::INFO),
    ("tokio_tungstenite", LevelFilter::INFO),
    // HTTP/1 and HTTP/2 internals: nothing useful to an operator above info, and frame-level
    // detail is one upgrade away from carrying header values.
    // Targets match by prefix, so `hyper` covers `hyper_util` and `hyper_rustls` too; the
    // client pool's connection lines (host and port only) stay visible at debug.
    ("hyper", LevelFilter::INFO),
    ("hyper_util", LevelFilter::DEBUG),
    ("h2", LevelFilter::INFO),
    // Connection set-up stays visible at debug; `reqwest::connect::verbose` dumps raw bytes at
    // trace.
    ("reqwest", LevelFilter::DEBUG),
    // The tracing extension records each query with its variables (tokens, secrets, tool
    // arguments) on an info span.
    ("async_graphql", LevelFilter::WARN),
    // Statement parameters at debug.
    ("tokio_postgres", LevelFilter::INFO),
    // Rejected requests at trace, with the deserializer's message, which can quote the input.
    ("axum::rejection", LevelFilter::DEBUG),
];

/// Install the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colour codes only for a terminal, never in files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The log filter: the `RUST_LOG` directives (or the default), and then [`CAPS`].
fn filter(rust_log: Option<&str>) -> impl Filter<Registry> + Send + Sync + 'static {
    let directives = rust_log
        .map(str::trim)
        .filter(|directives| !directives.is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    directives.and(caps())
}

fn caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPS.iter().copied())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Emit one event per interesting target and level under `rust_log`; return the log.
    fn logged(rust_log: Option<&str>) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_filter(filter(rust_log)),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "rmcp::service", "rmcp-trace");
            tracing::info!(target: "rmcp::service", "rmcp-info");
            tracing::trace!(target: "tungstenite::protocol", "tungstenite-trace");
            tracing::info!(target: "tungstenite::protocol", "tungstenite-info");
            tracing::debug!(target: "tokio_tungstenite", "tokio-tungstenite-debug");
            tracing::trace!(target: "hyper::proto::h1::role", "hyper-trace");
            tracing::debug!(target: "h2::codec", "h2-debug");
            tracing::trace!(target: "hyper_util::client::legacy::pool", "hyper-util-trace");
            tracing::debug!(target: "hyper_util::client::legacy::pool", "hyper-util-debug");
            tracing::trace!(target: "reqwest::connect::verbose", "reqwest-trace");
            tracing::debug!(target: "reqwest::connect", "reqwest-debug");
            tracing::info!(target: "async_graphql::graphql", "graphql-info");
            tracing::debug!(target: "tokio_postgres::query", "postgres-debug");
            tracing::trace!(target: "axum::rejection", "rejection-trace");
            tracing::trace!(target: "switchboard::domain", "own-trace");
            tracing::debug!(target: "switchboard::domain", "own-debug");
            tracing::info!(target: "switchboard::domain", "own-info");
            let span = tracing::info_span!("transport_worker");
            span.in_scope(|| tracing::trace!(target: "rmcp::transport", "rmcp-in-span"));
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    const CAPPED: [&str; 11] = [
        "rmcp-trace",
        "rmcp-info",
        "rmcp-in-span",
        "tungstenite-trace",
        "tokio-tungstenite-debug",
        "hyper-trace",
        "hyper-util-trace",
        "h2-debug",
        "reqwest-trace",
        "graphql-info",
        "postgres-debug",
    ];

    #[test]
    fn caps_hold_whatever_rust_log_says() {
        for rust_log in [
            "trace",
            "trace,rmcp=trace,rmcp::service=trace,tungstenite::protocol=trace,tokio_tungstenite=trace",
            "info,hyper::proto=trace,h2=trace,reqwest::connect::verbose=trace,async_graphql=trace,\
             tokio_postgres::query=trace,axum::rejection=trace,rmcp::transport=trace",
            "[transport_worker]=trace,trace",
        ] {
            let log = logged(Some(rust_log));
            for capped in CAPPED.iter().chain(&["rejection-trace"]) {
                assert!(
                    !log.contains(capped),
                    "{rust_log}: {capped} got through:\n{log}"
                );
            }
            // Below its cap a target still logs.
            assert!(log.contains("tungstenite-info"), "{rust_log}:\n{log}");
            if rust_log.starts_with("trace") {
                assert!(log.contains("reqwest-debug"), "{rust_log}:\n{log}");
                assert!(log.contains("hyper-util-debug"), "{rust_log}:\n{log}");
                assert!(log.contains("own-trace"), "{rust_log}:\n{log}");
            }
        }
    }

    #[test]
    fn default_is_info_when_rust_log_is_unset_empty_or_invalid() {
        for rust_log in [None, Some(""), Some("  "), Some("rmcp=loud")] {
            let log = logged(rust_log);
            assert!(log.contains("own-info"), "{rust_log:?}:\n{log}");
            assert!(!log.contains("own-debug"), "{rust_log:?}:\n{log}");
            assert!(log.contains("tungstenite-info"), "{rust_log:?}:\n{log}");
            for capped in CAPPED {
                assert!(!log.contains(capped), "{rust_log:?}: {capped}:\n{log}");
            }
        }
    }
}
