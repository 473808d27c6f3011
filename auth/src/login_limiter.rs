//! Brute-force protection: a sliding window of failed logins per email and per client address.
//!
//! Only failures count, so a user who logs in often is never throttled. To stop a burst of
//! concurrent guesses from all passing the check before any of them fails, each attempt reserves
//! its slot up front; a successful (or internally failed) attempt gives the slot back, anything
//! else, including a request cancelled half-way, leaves it counted as a failure.
//!
//! The windows live in this process. Several replicas each enforce their own limit, which bounds
//! guesses to `replicas × limit` per window; a shared store would be needed for an exact limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub max_failures_per_email: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures_per_email: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// Refusal: too many recent failures; the earliest moment a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up and at least 1, as for an HTTP `Retry-After` header.
    pub fn seconds(&self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

#[derive(Clone)]
pub struct LoginLimiter {
    by_email: Arc<FailureWindow>,
    by_address: Arc<FailureWindow>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            by_email: Arc::new(FailureWindow::new(
                limits.max_failures_per_email,
                limits.window,
            )),
            by_address: Arc::new(FailureWindow::new(
                limits.max_failures_per_address,
                limits.window,
            )),
        }
    }

    /// Reserves a failure slot for `address` and, when known, `email`; refused when either is full.
    pub fn begin(&self, email: Option<&str>, address: &str) -> Result<LoginAttempt, RetryAfter> {
        let now = Instant::now();
        let address_slot = self.by_address.reserve(address, now)?;
        let mut attempt = LoginAttempt {
            slots: vec![(self.by_address.clone(), address.to_owned(), address_slot)],
        };
        if let Some(email) = email {
            // On refusal `attempt` drops here and keeps its address slot: a locked-out email
            // hammered from one address also counts against that address.
            let email_slot = self.by_email.reserve(email, now)?;
            attempt
                .slots
                .push((self.by_email.clone(), email.to_owned(), email_slot));
        }
        Ok(attempt)
    }
}

/// An attempt in progress. Dropping it records a failure; [`LoginAttempt::forgive`] does not.
#[must_use]
pub struct LoginAttempt {
    slots: Vec<(Arc<FailureWindow>, String, u64)>,
}

impl LoginAttempt {
    /// The attempt succeeded, or failed for a reason that is not the caller's (e.g. the database
    /// was down): give the reserved slots back.
    pub fn forgive(mut self) {
        for (window, key, slot) in self.slots.drain(..) {
            window.release(&key, slot);
        }
    }
}

struct FailureWindow {
    max: usize,
    window: Duration,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    /// Per key, the (time, slot id) of each recent failure, oldest first.
    failures: HashMap<String, VecDeque<(Instant, u64)>>,
    next_slot: u64,
    /// Map size at which stale keys are swept next, so memory follows the active keys only.
    sweep_at: usize,
}

const MIN_SWEEP_AT: usize = 1024;

impl FailureWindow {
    fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1) as usize,
            window,
            state: Mutex::new(WindowState {
                sweep_at: MIN_SWEEP_AT,
                ..WindowState::default()
            }),
        }
    }

    fn reserve(&self, key: &str, now: Instant) -> Result<u64, RetryAfter> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.failures.len() >= state.sweep_at {
            let window = self.window;
            state.failures.retain(|_, failures| {
                failures.retain(|(at, _)| now.duration_since(*at) < window);
                !failures.is_empty()
            });
            state.sweep_at = (state.failures.len() * 2).max(MIN_SWEEP_AT);
        }
        let slot = state.next_slot;
        state.next_slot += 1;
        let failures = state.failures.entry(key.to_owned()).or_default();
        while failures
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= self.window)
        {
            failures.pop_front();
        }
        if failures.len() >= self.max {
            let oldest = failures.front().map_or(now, |(at, _)| *at);
            return Err(RetryAfter(
                (oldest + self.window).saturating_duration_since(now),
            ));
        }
        failures.push_back((now, slot));
        Ok(slot)
    }

    fn release(&self, key: &str, slot: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failures) = state.failures.get_mut(key) {
            failures.retain(|(_, id)| *id != slot);
            if failures.is_empty() {
                state.failures.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_email: u32, per_address: u32, window: Duration) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            max_failures_per_email: per_email,
            max_failures_per_address: per_address,
            window,
        })
    }

    #[test]
    fn failures_beyond_the_limit_are_refused_with_a_retry_time() {
        let limiter = limiter(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            drop(limiter.begin(Some("a@example.com"), "10.0.0.1").unwrap());
        }
        let refused = limiter
            .begin(Some("a@example.com"), "10.0.0.2")
            .err()
            .unwrap();
        assert!(refused.0 <= Duration::from_secs(60) && refused.0 > Duration::from_secs(55));
        assert_eq!(refused.seconds(), 60);
        // Other emails are unaffected.
        assert!(limiter.begin(Some("b@example.com"), "10.0.0.1").is_ok());
    }

    #[test]
    fn successes_do_not_count() {
        let limiter = limiter(2, 2, Duration::from_secs(60));
        for _ in 0..10 {
            limiter
                .begin(Some("a@example.com"), "10.0.0.1")
                .unwrap()
                .forgive();
        }
    }

    #[test]
    fn concurrent_attempts_hold_their_slots() {
        let limiter = limiter(2, 100, Duration::from_secs(60));
        let first = limiter.begin(Some("a@example.com"), "x").unwrap();
        let second = limiter.begin(Some("a@example.com"), "x").unwrap();
        assert!(limiter.begin(Some("a@example.com"), "x").is_err());
        first.forgive();
        assert!(limiter.begin(Some("a@example.com"), "x").is_ok());
        drop(second);
    }

    #[test]
    fn addresses_are_limited_across_emails() {
        let limiter = limiter(100, 3, Duration::from_secs(60));
        for n in 0..3 {
            drop(
                limiter
                    .begin(Some(&format!("u{n}@example.com")), "10.0.0.9")
                    .unwrap(),
            );
        }
        assert!(limiter.begin(Some("new@example.com"), "10.0.0.9").is_err());
        assert!(limiter.begin(Some("new@example.com"), "10.0.0.8").is_ok());
    }

    #[test]
    fn failures_expire_after_the_window() {
        let limiter = limiter(1, 100, Duration::from_millis(50));
        drop(limiter.begin(Some("a@example.com"), "x").unwrap());
        assert!(limiter.begin(Some("a@example.com"), "x").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.begin(Some("a@example.com"), "x").is_ok());
    }

    #[test]
    fn stale_keys_are_swept() {
        let window = FailureWindow::new(1, Duration::from_millis(1));
        let start = Instant::now();
        for n in 0..MIN_SWEEP_AT {
            window.reserve(&n.to_string(), start).unwrap();
        }
        let later = start + Duration::from_secs(1);
        window.reserve("fresh", later).unwrap();
        let state = window.state.lock().unwrap();
        assert_eq!(state.failures.len(), 1);
    }

    #[test]
    fn retry_seconds_round_up() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1500)).seconds(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    }
}
