//! Logging set-up: `tracing` with a filter and plain or JSON lines. The line
//! logged for a failed call names its method and `request_id`; at debug level
//! handlers also log inside an `rpc` span that carries them. Session payloads
//! and credentials are never logged.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber; `Err` names a bad `--log-level`.
pub fn init(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(with_defaults(&config.log_level)).map_err(|e| {
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
