//! Logging and tracing set-up: `tracing` with a filter and plain or JSON
//! lines; with `--otlp-endpoint`, also a span per call exported over OTLP
//! (`telemetry/otlp.rs`). The line logged for a failed call names its method
//! and `request_id` (and, while traces are exported, its `trace_id`); at
//! debug level handlers also log inside an `rpc` span that carries them.
//! Session payloads and credentials are never logged nor put on spans.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat, OtlpSettings};

pub mod otlp;

/// Set once, by [`init`], when spans are exported. Read per call (one
/// relaxed load) by the layers that would otherwise make spans nobody reads.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether calls are traced (`--otlp-endpoint` is set).
pub fn exporting() -> bool {
    EXPORTING.load(Relaxed)
}

/// What `init` installed that must be flushed before the process ends.
#[must_use = "call shutdown() after the server drained, or spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter. Call it from
    /// outside the runtime's worker threads, with the runtime still alive
    /// (the exporter's connection runs on it).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "spans may have been lost at shutdown");
        }
    }
}

/// Installs the global subscriber (and, with `--otlp-endpoint`, the
/// exporter: call it inside the tokio runtime); `Err` names a bad flag.
pub fn init(config: &Config) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(with_defaults(&config.log_level)).map_err(|e| {
        format!(
            "--log-level `{}` is not a valid filter: {e}",
            config.log_level
        )
    })?;
    let Some(otlp) = OtlpSettings::new(config)? else {
        // Tracing off: the subscriber logging always had, one global filter,
        // and nothing per call beyond it.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colours())
            .with_writer(std::io::stderr);
        let result = match config.log_format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init(),
            LogFormat::Plain => builder.try_init(),
        };
        result.map_err(|e| format!("cannot install the logger: {e}"))?;
        return Ok(Telemetry { provider: None });
    };
    // Tracing on: each layer filters for itself, so `--log-level warn` does
    // not silence the spans, nor do the spans' events fill the log.
    let provider = otlp::provider(&otlp)?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colours())
        .with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Plain => fmt.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otlp::layer(&provider))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    EXPORTING.store(true, Relaxed);
    tracing::info!(endpoint = %otlp.endpoint, ratio = otlp.sample_ratio, "exporting traces");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Colours only for a terminal: a log collector (or a test) reading a pipe
/// gets the plain text it searches.
fn colours() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// `level` with redis-rs held to errors unless it names redis-rs itself:
/// its cluster connection logs a warning for every failed attempt to reach
/// a node, thousands a second while a master fails over, and sessiond logs
/// the faults it meets itself (at most one line a second).
fn with_defaults(level: &str) -> String {
    if level
        .split(',')
        .any(|d| d.trim_start().starts_with("redis"))
    {
        level.to_owned()
    } else {
        format!("{level},redis=error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_rs_is_held_to_errors_unless_named() {
        assert_eq!(with_defaults("info"), "info,redis=error");
        assert_eq!(
            with_defaults("warn,sessiond::store::redis=debug"),
            "warn,sessiond::store::redis=debug,redis=error"
        );
        assert_eq!(with_defaults("info,redis=warn"), "info,redis=warn");
        assert!(EnvFilter::try_new(with_defaults("sessiond=debug,warn")).is_ok());
    }
}
