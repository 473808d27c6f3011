//! Backoff policies shared by the services (built on `backon`), and the one loop that waits for
//! a dependency at start-up.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Runs `attempt` until it succeeds, waiting [`reconnect`]'s growing delays between failures and
/// logging each (`what` says what is being tried, e.g. "creating MongoDB indexes"); `None` when
/// `stop` fires first. For the start-up work that needs a dependency that may not be up yet.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    stop: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = reconnect().build();
    loop {
        let error = tokio::select! {
            result = attempt() => match result {
                Ok(value) => return Some(value),
                Err(error) => error,
            },
            _ = stop.cancelled() => return None,
        };
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        tracing::warn!(error = %error, retry_in = ?delay, "{what}: not possible yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn until_ready_retries_until_the_attempt_succeeds() {
        let tries = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let value = until_ready("counting", &stop, || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err("not yet"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(value, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn until_ready_gives_up_when_stopped() {
        let stop = CancellationToken::new();
        stop.cancel();
        let value: Option<()> =
            until_ready("never", &stop, || async { Err::<(), _>("down") }).await;
        assert_eq!(value, None);
    }
}
