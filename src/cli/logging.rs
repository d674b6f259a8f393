//! Logging: `tracing` to stderr, as text or JSON lines (Databricks driver logs), with the
//! level from `RUST_LOG` or `EXECUTOR_LOG_LEVEL` (default info). Every line passes through
//! [`crate::redact::text`] on its way out, so a library that logs a signed URL or header at
//! debug level cannot leak a secret.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("EXECUTOR_LOG_LEVEL").ok())
        .and_then(|s| EnvFilter::try_new(s.to_ascii_lowercase()).ok())
        // Dependencies are noisy at info; our own crate speaks at info, and so do the
        // store's retries (throttling and flaky networks should be visible).
        .unwrap_or_else(|| EnvFilter::new("warn,nuvyn_executor=info,object_store=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling into the library twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Writes each formatted log event with its secrets redacted (the formatter hands over one
/// whole event per `write`).
struct Redacting<W>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::redact::text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
