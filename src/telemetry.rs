//! Logging set-up: `tracing` with a filter and plain or JSON lines. The line
//! logged for a failed call names its method and `request_id`; at debug level
//! handlers also log inside an `rpc` span that carries them. Session payloads
//! and credentials are never logged.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber; `Err` names a bad `--log-level`.
pub fn init(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log_level).map_err(|e| {
        format!(
            "--log-level `{}` is not a valid filter: {e}",
            config.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
