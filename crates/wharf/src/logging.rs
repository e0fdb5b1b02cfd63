//! Logging to standard error, as text or JSON, filtered by `log.level` (or `RUST_LOG`), with a
//! filter that can be changed while running (when the configuration file changes).

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};
use wharf_config::{LogConfig, LogFormat};
use wharf_server::server::LogLevelSetter;

/// Installs the global logger; returns what changes its level later.
pub fn init(config: &LogConfig) -> anyhow::Result<LogLevelSetter> {
    let from_environment = std::env::var("RUST_LOG").ok().filter(|d| !d.is_empty());
    let filter = match &from_environment {
        Some(directives) => EnvFilter::try_new(directives)
            .with_context(|| format!("invalid RUST_LOG {directives:?}"))?,
        None => level_filter(&config.level)
            .with_context(|| format!("invalid configuration: log.level {:?}", config.level))?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logger = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Text => logger.with(output).init(),
        LogFormat::Json => logger.with(output.json()).init(),
    }
    Ok(Box::new(move |level: &str| {
        if from_environment.is_some() {
            return Err("RUST_LOG is set; it overrides log.level".to_owned());
        }
        let filter =
            level_filter(level).map_err(|e| format!("invalid log.level {level:?}: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        tracing::info!(level, "log level changed");
        Ok(())
    }))
}

/// Libraries whose `info` lines are routine, so they start at `warn` unless `log.level` names
/// them: object_store logs every retry it makes (a refused connection, an S3 `SlowDown`), and
/// what outlasts the retries Wharf logs as an error itself; PostgreSQL's notices include "relation
/// _sqlx_migrations already exists, skipping" at every start.
const QUIETED: &[&str] = &["object_store", "sqlx::postgres::notice"];

/// The filter of `log.level`, with [`QUIETED`] applied.
fn level_filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut filter = EnvFilter::try_new(level)?;
    for target in QUIETED {
        if !level.contains(target) {
            filter = filter.add_directive(format!("{target}=warn").parse()?);
        }
    }
    Ok(filter)
}
