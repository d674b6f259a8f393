//! Logging: `tracing` to stderr, as text or JSON lines (Databricks driver logs), with the
//! level from `RUST_LOG` or `EXECUTOR_LOG_LEVEL` (default info).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("EXECUTOR_LOG_LEVEL").ok())
        .and_then(|s| EnvFilter::try_new(s.to_ascii_lowercase()).ok())
        // Dependencies are noisy at info; our own crate speaks at info.
        .unwrap_or_else(|| EnvFilter::new("warn,nuvyn_executor=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling into the library twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
