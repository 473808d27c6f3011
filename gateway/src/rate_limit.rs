//! Per-user and per-address limits, answered with 429 and `Retry-After`:
//! uploads started per minute and uploads in progress per user, login attempts per minute per
//! client address. Rates use `governor` (GCRA: a burst of N, then one every minute/N). Limits are
//! per gateway replica; a limit of 0 disables it.
//!
//! [`StreamLimits`] caps the open SSE streams: per user (429) and in all (503).

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Suggested wait when every upload slot of a user is taken: uploads end at any moment.
const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `UPLOADS_PER_MINUTE`, per user.
    pub uploads_per_minute: u32,
    /// `MAX_CONCURRENT_UPLOADS`, per user.
    pub max_concurrent_uploads: u32,
    /// `LOGINS_PER_MINUTE`, per client address.
    pub logins_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            uploads_per_minute: 30,
            max_concurrent_uploads: 4,
            logins_per_minute: 30,
        }
    }
}

pub struct RateLimits {
    config: RateLimitConfig,
    uploads: Option<DefaultKeyedRateLimiter<String>>,
    logins: Option<DefaultKeyedRateLimiter<String>>,
    in_progress: Arc<Mutex<HashMap<String, u32>>>,
    clock: DefaultClock,
}

/// An upload slot of one user, freed when dropped.
pub struct UploadSlot {
    user_id: Option<String>,
    in_progress: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let Some(user_id) = self.user_id.take() else {
            return;
        };
        let mut in_progress = self.in_progress.lock().expect("not poisoned");
        if let Some(count) = in_progress.get_mut(&user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_progress.remove(&user_id);
            }
        }
    }
}

fn per_minute(n: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            uploads: per_minute(config.uploads_per_minute),
            logins: per_minute(config.logins_per_minute),
            in_progress: Arc::default(),
            clock: DefaultClock::default(),
        }
    }

    fn check(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<String>>,
        key: &str,
    ) -> Result<(), Duration> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Admits an upload of `user_id` or answers 429: a slot first (so a refused upload does not
    /// spend the per-minute budget), then the rate.
    pub fn admit_upload(&self, user_id: &str) -> Result<UploadSlot, ApiError> {
        let slot = if self.config.max_concurrent_uploads == 0 {
            UploadSlot {
                user_id: None,
                in_progress: self.in_progress.clone(),
            }
        } else {
            let mut in_progress = self.in_progress.lock().expect("not poisoned");
            let count = in_progress.entry(user_id.to_owned()).or_insert(0);
            if *count >= self.config.max_concurrent_uploads {
                return Err(ApiError::RateLimited {
                    retry_after: CONCURRENCY_RETRY_AFTER,
                    message: format!(
                        "too many uploads in progress: at most {} at a time",
                        self.config.max_concurrent_uploads
                    ),
                });
            }
            *count += 1;
            UploadSlot {
                user_id: Some(user_id.to_owned()),
                in_progress: self.in_progress.clone(),
            }
        };
        self.check(&self.uploads, user_id)
            .map_err(|retry_after| ApiError::RateLimited {
                retry_after,
                message: format!(
                    "too many uploads: at most {} per minute",
                    self.config.uploads_per_minute
                ),
            })?;
        Ok(slot)
    }

    /// Admits a login attempt from `client_address` or answers 429.
    pub fn admit_login(&self, client_address: &str) -> Result<(), ApiError> {
        self.check(&self.logins, client_address)
            .map_err(|retry_after| ApiError::RateLimited {
                retry_after,
                message: format!(
                    "too many login attempts from this address: at most {} per minute",
                    self.config.logins_per_minute
                ),
            })
    }

    /// Forgets keys whose budget is full again, so memory follows the active users only.
    pub fn forget_idle(&self) {
        for limiter in [&self.uploads, &self.logins].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Runs [`Self::forget_idle`] every `interval` until `shutdown`.
    pub async fn housekeeping(
        self: Arc<Self>,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.forget_idle(),
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Suggested wait when a stream cap is reached: streams end when their jobs finish.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Open SSE streams, counted per user and in all.
#[derive(Default)]
struct OpenStreams {
    total: u32,
    by_user: HashMap<String, u32>,
}

/// `SSE_STREAMS_PER_USER` and `SSE_STREAMS_MAX` (0 disables either): each open stream holds a
/// [`StreamSlot`], freed when the stream ends.
pub struct StreamLimits {
    per_user: u32,
    max: u32,
    open: Arc<Mutex<OpenStreams>>,
}

/// One open SSE stream's place, freed when dropped.
pub struct StreamSlot {
    user_id: String,
    open: Arc<Mutex<OpenStreams>>,
}

impl StreamLimits {
    pub fn new(per_user: u32, max: u32) -> Self {
        Self {
            per_user,
            max,
            open: Arc::default(),
        }
    }

    /// A slot for a new stream of `user_id`, or 429 (the user's cap) / 503 (the replica's cap).
    pub fn admit(&self, user_id: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let of_user = open.by_user.get(user_id).copied().unwrap_or(0);
        if self.per_user > 0 && of_user >= self.per_user {
            return Err(ApiError::RateLimited {
                retry_after: STREAM_RETRY_AFTER,
                message: format!(
                    "too many open event streams: at most {} per user",
                    self.per_user
                ),
            });
        }
        if self.max > 0 && open.total >= self.max {
            return Err(ApiError::unavailable_for(
                "event stream service",
                format!("{} streams open, the limit (SSE_STREAMS_MAX)", open.total),
                STREAM_RETRY_AFTER,
            ));
        }
        open.total += 1;
        *open.by_user.entry(user_id.to_owned()).or_insert(0) += 1;
        metrics::gauge!("sse_streams_open").set(f64::from(open.total));
        Ok(StreamSlot {
            user_id: user_id.to_owned(),
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_user.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_user.remove(&self.user_id);
            }
        }
        metrics::gauge!("sse_streams_open").set(f64::from(open.total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_capped_per_user_and_in_all_and_freed_on_drop() {
        let limits = StreamLimits::new(2, 3);
        let a1 = limits.admit("alice").unwrap();
        let _a2 = limits.admit("alice").unwrap();
        let refused = limits.admit("alice").err().unwrap();
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        let _b1 = limits.admit("bob").unwrap();
        let full = limits.admit("carol").err().unwrap();
        assert_eq!(full.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        let _c1 = limits.admit("carol").unwrap();
        assert!(limits.admit("alice").is_err());
        let unlimited = StreamLimits::new(0, 0);
        let _many: Vec<_> = (0..50).map(|_| unlimited.admit("x").unwrap()).collect();
    }

    fn limits(uploads: u32, concurrent: u32, logins: u32) -> RateLimits {
        RateLimits::new(RateLimitConfig {
            uploads_per_minute: uploads,
            max_concurrent_uploads: concurrent,
            logins_per_minute: logins,
        })
    }

    fn retry_after(error: ApiError) -> Duration {
        match error {
            ApiError::RateLimited { retry_after, .. } => retry_after,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn uploads_per_minute_are_counted_per_user() {
        let limits = limits(2, 0, 0);
        let _a = limits.admit_upload("alice").unwrap();
        let _b = limits.admit_upload("alice").unwrap();
        let wait = retry_after(limits.admit_upload("alice").err().unwrap());
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        limits.admit_upload("bob").unwrap();
    }

    #[test]
    fn concurrent_slots_free_up_when_uploads_end() {
        let limits = limits(0, 2, 0);
        let first = limits.admit_upload("alice").unwrap();
        let _second = limits.admit_upload("alice").unwrap();
        let refused = limits.admit_upload("alice").err().unwrap();
        assert_eq!(retry_after(refused), CONCURRENCY_RETRY_AFTER);
        let _other_user = limits.admit_upload("bob").unwrap();
        drop(first);
        let _third = limits.admit_upload("alice").unwrap();
    }

    #[test]
    fn a_refused_slot_does_not_spend_the_rate_budget() {
        let limits = limits(2, 1, 0);
        let held = limits.admit_upload("alice").unwrap();
        assert!(limits.admit_upload("alice").is_err());
        assert!(limits.admit_upload("alice").is_err());
        drop(held);
        // One of two per-minute uploads was spent; the refused ones were not counted.
        let _ = limits.admit_upload("alice").unwrap();
    }

    #[test]
    fn logins_are_counted_per_address_and_zero_disables() {
        let limits = limits(0, 0, 1);
        limits.admit_login("10.0.0.1").unwrap();
        assert!(limits.admit_login("10.0.0.1").is_err());
        limits.admit_login("10.0.0.2").unwrap();
        let unlimited = self::limits(0, 0, 0);
        for _ in 0..100 {
            unlimited.admit_login("10.0.0.1").unwrap();
            let _ = unlimited.admit_upload("alice").unwrap();
        }
        unlimited.forget_idle();
        assert!(unlimited.in_progress.lock().unwrap().is_empty());
    }
}
