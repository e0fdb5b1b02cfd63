//! Logging to standard error, as text or JSON, filtered by `log.level` (or `RUST_LOG`).

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use wharf_registry::config::{LogConfig, LogFormat};

/// Installs the global logger.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid RUST_LOG {directives:?}"))?,
        _ => EnvFilter::try_new(&config.level)
            .with_context(|| format!("invalid configuration: log.level {:?}", config.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
