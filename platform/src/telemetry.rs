//! Logging set-up: `RUST_LOG` filters, `LOG_FORMAT=json` gives one JSON object per line,
//! `pretty` (the default in a terminal) or `compact` (the default otherwise) give text.

use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber for `service`. Safe to call more than once (later calls are no-ops).
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,lapin=warn,mongodb=warn,sqlx=warn,h2=warn,tower=warn")
    });
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| {
        if std::io::stderr().is_terminal() {
            "pretty".into()
        } else {
            "compact".into()
        }
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format.as_str() {
        "json" => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        "pretty" => registry
            .with(fmt::layer().pretty().with_writer(std::io::stderr))
            .try_init(),
        _ => registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, %format, "telemetry initialised");
    }
}
