//! Backoff policies shared by the services (built on `backon`).

use backon::ExponentialBuilder;
use std::time::Duration;

/// Backoff for (re)connecting to a dependency: 200 ms doubling to 10 s, with jitter, forever.
pub fn reconnect() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Backoff for a short, bounded operation: `attempts` tries starting at `first`.
pub fn bounded(first: Duration, attempts: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(first * 16)
        .with_jitter()
        .with_max_times(attempts)
}
