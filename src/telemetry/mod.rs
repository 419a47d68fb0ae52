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
//!
//! Trace export over OTLP ([`settings`], [`propagation`]) is off unless an endpoint is
//! configured; then one more layer, behind the same [`CAPS`], hands spans to the exporter.
//! Without it no OpenTelemetry layer is installed at all, and the spans that exist for export
//! only (target [`SPANS`]) are disabled at their call sites, so they cost nothing. Those spans
//! never reach the log either: logging reads the same whether export is on or off.

mod export;
pub mod propagation;
pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, fmt};

use crate::config::LogFormat;

pub use export::ExportError;
pub use settings::{OtelSettings, SettingsError};

/// The target of spans that exist for trace export only (statements, outbound requests,
/// operations): never logged, and disabled where they are created unless export is on.
pub const SPANS: &str = "switchboard::spans";

/// Whether the export layer is installed.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured and the layer installed).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "shut the telemetry down after the server stops, so buffered spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Export what is still buffered and stop the exporter. Blocks until the batch is sent
    /// or the export timeout passes; call it outside the runtime's worker threads.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "the last spans could not be exported");
        }
    }
}

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

/// Install the global subscriber: the log, and trace export when `traces` is given. With
/// traces it must run inside the tokio runtime, which the exporter's batches are sent from.
/// Safe to call more than once (only the first subscriber installed in a process takes
/// effect).
pub fn init(format: LogFormat, traces: Option<&OtelSettings>) -> Result<Telemetry, ExportError> {
    let provider = traces.map(export::tracer_provider).transpose()?;
    let installed = install(format, provider.as_ref());
    if installed && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
        if let Some(settings) = traces {
            // The endpoint without its query, never the headers.
            let mut endpoint = settings.endpoint.clone();
            endpoint.set_query(None);
            tracing::info!(endpoint = %endpoint, service = %settings.service_name, "exporting traces over OTLP");
            if endpoint.scheme() == "http" && !crate::net::is_loopback_host(&endpoint) {
                tracing::warn!(
                    "the trace collector is reached over plain http: spans and the export headers travel unencrypted"
                );
            }
        }
    }
    Ok(Telemetry { provider })
}

/// Install the log layer and, with a provider, the export layer. Whether it was installed.
fn install(format: LogFormat, provider: Option<&SdkTracerProvider>) -> bool {
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
    let export = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchboard"))
            .with_filter(export_filter())
    });
    tracing_subscriber::registry()
        .with(layer)
        .with(export)
        .try_init()
        .is_ok()
}

/// What is exported: spans at `info` and above and events at `warn` and above, then
/// [`CAPS`], whatever `RUST_LOG` says (it governs the log only).
fn export_filter<S: tracing::Subscriber>() -> impl Filter<S> + Send + Sync + 'static {
    filter_fn(|metadata| {
        let most = if metadata.is_span() {
            LevelFilter::INFO
        } else {
            LevelFilter::WARN
        };
        *metadata.level() <= most
    })
    .and(caps())
}

/// The log filter: the `RUST_LOG` directives (or the default), and then [`CAPS`]. Spans for
/// export only ([`SPANS`]) are never logged.
fn filter(rust_log: Option<&str>) -> impl Filter<Registry> + Send + Sync + 'static {
    let directives = rust_log
        .map(str::trim)
        .filter(|directives| !directives.is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    directives.and(caps()).and(
        Targets::new()
            .with_default(LevelFilter::TRACE)
            .with_target(SPANS, LevelFilter::OFF),
    )
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
            let export_only = tracing::info_span!(target: SPANS, "export_only_span");
            export_only
                .in_scope(|| tracing::info!(target: "switchboard::domain", "in-export-only"));
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
    fn the_export_only_target_is_the_one_instrumented_functions_name() {
        // `#[tracing::instrument(target = …)]` takes a literal, not this constant.
        assert_eq!(SPANS, "switchboard::spans");
    }

    #[test]
    fn spans_for_export_only_never_reach_the_log() {
        for rust_log in [None, Some("trace"), Some("switchboard::spans=trace,trace")] {
            let log = logged(rust_log);
            assert!(log.contains("in-export-only"), "{rust_log:?}:\n{log}");
            assert!(!log.contains("export_only_span"), "{rust_log:?}:\n{log}");
        }
    }

    /// Records the names of the spans and events a filter lets through.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_owned());
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }

    #[test]
    fn export_passes_the_same_caps_as_the_log() {
        let seen = Seen::default();
        let subscriber =
            tracing_subscriber::registry().with(seen.clone().with_filter(export_filter()));
        tracing::subscriber::with_default(subscriber, || {
            let _ = tracing::info_span!(target: SPANS, "statement");
            let _ = tracing::info_span!(target: "switchboard::http", "request");
            let _ = tracing::debug_span!(target: "switchboard::domain", "debug-span");
            let _ = tracing::info_span!(target: "rmcp::service", "rmcp-span");
            let _ = tracing::info_span!(target: "async_graphql::graphql", "graphql-extension-span");
            let _ = tracing::warn_span!(target: "tungstenite::protocol", "tungstenite-warn-span");
            tracing::info!(target: "switchboard::domain", "info-event");
            tracing::warn!(target: "switchboard::domain", "warn-event");
            tracing::error!(target: "rmcp::service", "rmcp-error-event");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "statement",
                "request",
                "tungstenite-warn-span",
                "warn-event"
            ],
            "{seen:?}"
        );
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
