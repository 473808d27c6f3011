//! A circuit breaker for calls to a dependency (auth): after `failure_threshold` consecutive
//! failures it opens and callers fail at once (with how long to wait) instead of each waiting for
//! a deadline; after `open_for` it lets exactly one probe through (half-open), whose outcome
//! closes it again or reopens it.
//!
//! Written here rather than taken from a crate because the one candidate (`failsafe`) lets every
//! call through while half-open and cannot tell how long it will stay open, which the
//! `Retry-After` header needs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a probe is already under way, tell callers to come back this soon.
const PROBE_IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long it stays open before a probe is allowed.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The breaker's state as reported to logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probing`: a probe is in flight; everyone else is refused until it reports.
    HalfOpen {
        probing: bool,
    },
}

/// A refused call: the breaker is open (or probing); retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

#[derive(Clone)]
pub struct CircuitBreaker {
    name: &'static str,
    config: BreakerConfig,
    state: Arc<Mutex<State>>,
}

/// Permission for one call. Report its outcome with [`Permit::succeeded`] or [`Permit::failed`];
/// a permit dropped without an outcome (the caller gave up) leaves a probe slot free again.
#[must_use = "report the call's outcome"]
pub struct Permit {
    breaker: CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self {
            name,
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            state: Arc::new(Mutex::new(State::Closed {
                consecutive_failures: 0,
            })),
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock().expect("not poisoned") {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call now.
    pub fn acquire(&self) -> Result<Permit, Rejected> {
        self.acquire_at(Instant::now())
    }

    /// [`Self::acquire`] at a given instant (for tests).
    pub fn acquire_at(&self, now: Instant) -> Result<Permit, Rejected> {
        let mut state = self.state.lock().expect("not poisoned");
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => {
                return Err(Rejected {
                    retry_after: until - now,
                });
            }
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                drop(state);
                self.transitioned(BreakerState::HalfOpen);
                true
            }
            State::HalfOpen { probing: true } => {
                return Err(Rejected {
                    retry_after: PROBE_IN_FLIGHT_RETRY,
                });
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    fn record(&self, probe: bool, success: bool, now: Instant) {
        let mut state = self.state.lock().expect("not poisoned");
        let next = match (*state, probe, success) {
            // The probe decides.
            (State::HalfOpen { probing: true }, true, true) => State::Closed {
                consecutive_failures: 0,
            },
            (State::HalfOpen { probing: true }, true, false) => State::Open {
                until: now + self.config.open_for,
            },
            (State::Closed { .. }, false, true) => State::Closed {
                consecutive_failures: 0,
            },
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.config.failure_threshold {
                    State::Open {
                        until: now + self.config.open_for,
                    }
                } else {
                    State::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A call that started before the breaker changed state says nothing about now.
            (current, _, _) => current,
        };
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&*state);
        *state = next;
        drop(state);
        if changed {
            self.transitioned(match next {
                State::Closed { .. } => BreakerState::Closed,
                State::Open { .. } => BreakerState::Open,
                State::HalfOpen { .. } => BreakerState::HalfOpen,
            });
        }
    }

    fn abandoned_probe(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        if *state == (State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
    }

    fn transitioned(&self, to: BreakerState) {
        metrics::counter!("circuit_breaker_transitions_total", "breaker" => self.name, "to" => to.as_str())
            .increment(1);
        match to {
            BreakerState::Open => tracing::warn!(
                breaker = self.name,
                open_for = ?self.config.open_for,
                "circuit opened: failing fast until a probe succeeds"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(breaker = self.name, "circuit half-open: probing")
            }
            BreakerState::Closed => tracing::info!(breaker = self.name, "circuit closed"),
        }
    }
}

impl Permit {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn succeeded(self) {
        self.succeeded_at(Instant::now());
    }

    pub fn failed(self) {
        self.failed_at(Instant::now());
    }

    pub fn succeeded_at(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(self.probe, true, now);
    }

    pub fn failed_at(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(self.probe, false, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.abandoned_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_for_secs: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                failure_threshold: threshold,
                open_for: Duration::from_secs(open_for_secs),
            },
        )
    }

    fn fail(breaker: &CircuitBreaker, now: Instant) {
        breaker.acquire_at(now).unwrap().failed_at(now);
    }

    #[test]
    fn stays_closed_below_the_threshold_and_successes_reset_the_count() {
        let b = breaker(3, 10);
        let t = Instant::now();
        fail(&b, t);
        fail(&b, t);
        b.acquire_at(t).unwrap().succeeded_at(t);
        fail(&b, t);
        fail(&b, t);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.acquire_at(t).is_ok());
    }

    #[test]
    fn opens_after_consecutive_failures_and_says_how_long_to_wait() {
        let b = breaker(3, 10);
        let t = Instant::now();
        for _ in 0..3 {
            fail(&b, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.acquire_at(t + Duration::from_secs(4)).err().unwrap();
        assert_eq!(rejected.retry_after, Duration::from_secs(6));
    }

    #[test]
    fn after_the_open_period_exactly_one_probe_goes_through() {
        let b = breaker(1, 10);
        let t = Instant::now();
        fail(&b, t);
        let later = t + Duration::from_secs(10);
        let probe = b.acquire_at(later).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let other = b.acquire_at(later).err().unwrap();
        assert_eq!(other.retry_after, PROBE_IN_FLIGHT_RETRY);
        probe.succeeded_at(later);
        assert_eq!(b.state(), BreakerState::Closed);
        let normal = b.acquire_at(later).unwrap();
        assert!(!normal.is_probe());
        normal.succeeded_at(later);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_period() {
        let b = breaker(2, 10);
        let t = Instant::now();
        fail(&b, t);
        fail(&b, t);
        let later = t + Duration::from_secs(11);
        b.acquire_at(later).unwrap().failed_at(later);
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.acquire_at(later + Duration::from_secs(1)).err().unwrap();
        assert_eq!(rejected.retry_after, Duration::from_secs(9));
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot_for_the_next_caller() {
        let b = breaker(1, 1);
        let t = Instant::now();
        fail(&b, t);
        let later = t + Duration::from_secs(2);
        drop(b.acquire_at(later).unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.acquire_at(later).unwrap();
        assert!(probe.is_probe());
        probe.failed_at(later);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn late_outcomes_of_calls_started_before_a_transition_are_ignored() {
        let b = breaker(1, 10);
        let t = Instant::now();
        let slow = b.acquire_at(t).unwrap();
        fail(&b, t);
        assert_eq!(b.state(), BreakerState::Open);
        // A call admitted while closed succeeds late: the breaker stays open.
        slow.succeeded_at(t);
        assert_eq!(b.state(), BreakerState::Open);
        // And a late failure does not extend the open period.
        let b = breaker(2, 10);
        let first = b.acquire_at(t).unwrap();
        let second = b.acquire_at(t).unwrap();
        let third = b.acquire_at(t).unwrap();
        first.failed_at(t);
        second.failed_at(t);
        third.failed_at(t + Duration::from_secs(5));
        let rejected = b.acquire_at(t + Duration::from_secs(6)).err().unwrap();
        assert_eq!(rejected.retry_after, Duration::from_secs(4));
    }

    #[test]
    fn a_zero_threshold_behaves_like_one() {
        let b = breaker(0, 10);
        let t = Instant::now();
        fail(&b, t);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
