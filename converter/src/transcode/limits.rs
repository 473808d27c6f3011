//! Caps on what one conversion may cost: the length of the decoded audio, the size of the MP3
//! and the wall-clock time. A small upload can decode to days of audio (100 hours of silence
//! compress to 72 MB of FLAC); without these caps it would occupy a worker for hours and fill
//! the blob store.
//!
//! Each cap is checked while the work goes on, so a conversion stops as soon as it passes one,
//! and fails with a [`TranscodeError`] whose message names the limit.

use std::time::{Duration, Instant};

use super::error::TranscodeError;

/// The caps of one conversion (the worker's `MAX_AUDIO_DURATION`, `MAX_MP3_BYTES` and
/// `CONVERSION_DEADLINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest audio converted; a container stating a longer duration is refused at once.
    pub max_audio_duration: Duration,
    /// Largest MP3 written, tags included.
    pub max_mp3_bytes: u64,
    /// Longest time one conversion may take.
    pub deadline: Duration,
}

impl Limits {
    /// Six hours: a long film or an audiobook part; 864 MB at 320 kbps.
    pub const DEFAULT_MAX_AUDIO_DURATION: Duration = Duration::from_secs(6 * 3600);
    /// 1 GiB: six hours at 320 kbps fit.
    pub const DEFAULT_MAX_MP3_BYTES: u64 = 1024 * 1024 * 1024;
    /// Two hours: converting six hours of audio takes minutes on one core.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2 * 3600);
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_audio_duration: Self::DEFAULT_MAX_AUDIO_DURATION,
            max_mp3_bytes: Self::DEFAULT_MAX_MP3_BYTES,
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

/// The limits of one running conversion, with its deadline fixed at the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    limits: Limits,
    started: Instant,
}

impl Budget {
    pub fn start(limits: Limits) -> Self {
        Self {
            limits,
            started: Instant::now(),
        }
    }

    /// Fails once `seconds` of audio are more than the limit allows.
    pub fn check_duration(&self, seconds: f64) -> Result<(), TranscodeError> {
        if seconds > self.limits.max_audio_duration.as_secs_f64() {
            return Err(TranscodeError::AudioTooLong(self.limits.max_audio_duration));
        }
        Ok(())
    }

    /// Fails once `frames` at `sample_rate` are more audio than the limit allows.
    pub fn check_frames(&self, frames: u64, sample_rate: u32) -> Result<(), TranscodeError> {
        if sample_rate == 0 {
            return Ok(());
        }
        self.check_duration(frames as f64 / f64::from(sample_rate))
    }

    /// Fails when writing the MP3 up to `bytes` would pass the size limit.
    pub fn check_output(&self, bytes: u64) -> Result<(), TranscodeError> {
        if bytes > self.limits.max_mp3_bytes {
            return Err(TranscodeError::Mp3TooLarge(self.limits.max_mp3_bytes));
        }
        Ok(())
    }

    /// Fails once the conversion has run longer than its deadline.
    pub fn check_deadline(&self) -> Result<(), TranscodeError> {
        if self.started.elapsed() > self.limits.deadline {
            return Err(TranscodeError::DeadlineExceeded(self.limits.deadline));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(audio: u64, bytes: u64, deadline: Duration) -> Limits {
        Limits {
            max_audio_duration: Duration::from_secs(audio),
            max_mp3_bytes: bytes,
            deadline,
        }
    }

    #[test]
    fn defaults_let_six_hours_at_320_kbps_fit() {
        let limits = Limits::default();
        let six_hours_at_320 = 320_000 / 8 * limits.max_audio_duration.as_secs();
        assert!(six_hours_at_320 < limits.max_mp3_bytes);
    }

    #[test]
    fn audio_beyond_the_limit_fails_naming_it() {
        let budget = Budget::start(limits(6 * 3600, 1 << 30, Duration::from_secs(60)));
        assert!(budget.check_duration(6.0 * 3600.0).is_ok());
        assert!(budget.check_frames(44_100 * 6 * 3600, 44_100).is_ok());
        let error = budget
            .check_frames(44_100 * 6 * 3600 + 1, 44_100)
            .unwrap_err();
        assert!(error.is_permanent());
        assert_eq!(error.to_string(), "the audio is longer than the 6 h limit");
    }

    #[test]
    fn output_beyond_the_limit_fails_naming_it() {
        let budget = Budget::start(limits(60, 1 << 30, Duration::from_secs(60)));
        assert!(budget.check_output(1 << 30).is_ok());
        let error = budget.check_output((1 << 30) + 1).unwrap_err();
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            "the MP3 would be larger than the 1 GiB limit"
        );
    }

    #[test]
    fn a_passed_deadline_fails_naming_it() {
        let budget = Budget::start(limits(60, 1 << 30, Duration::ZERO));
        std::thread::sleep(Duration::from_millis(2));
        let error = budget.check_deadline().unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("limit"), "{error}");
        let relaxed = Budget::start(limits(60, 1 << 30, Duration::from_secs(3600)));
        assert!(relaxed.check_deadline().is_ok());
    }
}
