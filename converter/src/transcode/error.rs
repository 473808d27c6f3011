//! Why a transcode failed, phrased so the text can be mailed to the user as is.

use std::io;
use std::time::Duration;

/// A failed transcode.
///
/// Permanent errors are problems with the uploaded file itself, or a limit it passes: retrying
/// cannot help, the user has to be told. The others (the machine's I/O, the encoder) are on our
/// side and a retry may succeed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("the file is empty")]
    EmptyFile,
    #[error("the file is not a recognised audio or video format")]
    NotMedia,
    #[error("the file has no audio track")]
    NoAudioTrack,
    #[error("the audio codec {0} is not supported")]
    UnsupportedCodec(String),
    #[error("the file is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("its audio sample rate of {0} Hz is not supported")]
    UnsupportedSampleRate(u32),
    #[error("the audio is longer than the {} limit", human_duration(*.0))]
    AudioTooLong(Duration),
    #[error("the MP3 would be larger than the {} limit", human_bytes(*.0))]
    Mp3TooLarge(u64),
    #[error("converting it took longer than the {} limit", human_duration(*.0))]
    DeadlineExceeded(Duration),
    #[error("reading or writing a file failed: {0}")]
    Io(#[from] io::Error),
    #[error("the MP3 encoder failed: {0}")]
    Encoder(String),
}

impl TranscodeError {
    /// True when the input file itself is at fault, so a retry would fail the same way.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::EmptyFile
            | Self::NotMedia
            | Self::NoAudioTrack
            | Self::UnsupportedCodec(_)
            | Self::Corrupt(_)
            | Self::UnsupportedSampleRate(_)
            | Self::AudioTooLong(_)
            | Self::Mp3TooLarge(_)
            | Self::DeadlineExceeded(_) => true,
            Self::Io(_) | Self::Encoder(_) => false,
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        Self::Corrupt(detail.into())
    }

    /// An I/O error met while reading the input (probing, demuxing).
    ///
    /// An error of the operating system (EIO, say) is the machine's, and a retry may succeed.
    /// Any other was made by a demuxer's own checks on the file's contents (a length out of
    /// bounds, a seek before the start, an end in the middle of a structure, a size too large
    /// to allocate) and comes back on every retry: the file is at fault.
    pub(crate) fn reading_input(error: io::Error) -> Self {
        if error.raw_os_error().is_some() {
            return Self::Io(error);
        }
        tracing::warn!(%error, "the input could not be read");
        match error.kind() {
            io::ErrorKind::UnexpectedEof => Self::corrupt("it ends in the middle of its data"),
            io::ErrorKind::OutOfMemory => {
                Self::corrupt("it declares a block of data too large to read")
            }
            _ => Self::corrupt("its audio data could not be read"),
        }
    }
}

/// `6 h`, `90 min`, `1 h 30 min`, `45 s`: how a limit reads in a message to a user.
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, rest) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (hours, minutes, rest) {
        (0, 0, _) if duration.subsec_millis() > 0 && seconds < 10 => {
            format!("{:.1} s", duration.as_secs_f64())
        }
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        _ => format!("{seconds} s"),
    }
}

/// `1 GiB`, `500 MiB`, `1.5 GiB`, `1000 bytes`: binary multiples, at most one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "";
    for name in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = name;
    }
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0} {unit}")
    } else {
        format!("{rounded:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_problems_are_permanent_and_ours_are_not() {
        assert!(TranscodeError::NoAudioTrack.is_permanent());
        assert!(TranscodeError::UnsupportedCodec("AC-3".into()).is_permanent());
        assert!(TranscodeError::corrupt("x").is_permanent());
        assert!(!TranscodeError::Io(io::Error::other("disk full")).is_permanent());
        assert!(!TranscodeError::Encoder("x".into()).is_permanent());
        assert!(TranscodeError::UnsupportedSampleRate(1).is_permanent());
        assert!(TranscodeError::AudioTooLong(Duration::from_secs(60)).is_permanent());
        assert!(TranscodeError::Mp3TooLarge(1 << 20).is_permanent());
        assert!(TranscodeError::DeadlineExceeded(Duration::from_secs(60)).is_permanent());
    }

    #[test]
    fn input_errors_of_the_machine_are_transient() {
        let disk = io::Error::from_raw_os_error(5); // EIO
        assert!(!TranscodeError::reading_input(disk).is_permanent());
    }

    #[test]
    fn input_errors_made_by_a_demuxer_are_permanent() {
        for error in [
            io::Error::other("out of bounds"),
            io::Error::new(io::ErrorKind::InvalidData, "bad atom"),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid seek to a negative position",
            ),
            io::Error::from(io::ErrorKind::OutOfMemory),
            io::Error::new(io::ErrorKind::UnexpectedEof, "buffer underrun"),
        ] {
            let kind = error.kind();
            let classified = TranscodeError::reading_input(error);
            assert!(classified.is_permanent(), "{kind:?}: {classified}");
            assert!(
                classified.to_string().starts_with("the file is corrupt"),
                "{classified}"
            );
        }
    }

    #[test]
    fn limits_and_rates_are_named_in_the_message() {
        assert_eq!(
            TranscodeError::UnsupportedSampleRate(3).to_string(),
            "its audio sample rate of 3 Hz is not supported"
        );
        assert_eq!(
            TranscodeError::AudioTooLong(Duration::from_secs(6 * 3600)).to_string(),
            "the audio is longer than the 6 h limit"
        );
        assert_eq!(
            TranscodeError::Mp3TooLarge(1 << 30).to_string(),
            "the MP3 would be larger than the 1 GiB limit"
        );
        assert_eq!(
            TranscodeError::DeadlineExceeded(Duration::from_secs(2 * 3600)).to_string(),
            "converting it took longer than the 2 h limit"
        );
    }

    #[test]
    fn messages_read_as_plain_english() {
        assert_eq!(
            TranscodeError::UnsupportedCodec("AC-3".into()).to_string(),
            "the audio codec AC-3 is not supported"
        );
        assert_eq!(
            TranscodeError::corrupt("it ends after 1.0 s of 2.0 s").to_string(),
            "the file is corrupt or truncated: it ends after 1.0 s of 2.0 s"
        );
    }

    #[test]
    fn limits_read_plainly() {
        assert_eq!(human_duration(Duration::from_secs(6 * 3600)), "6 h");
        assert_eq!(human_duration(Duration::from_secs(90 * 60)), "1 h 30 min");
        assert_eq!(human_duration(Duration::from_secs(45 * 60)), "45 min");
        assert_eq!(human_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_secs(3601)), "3601 s");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(500 << 20), "500 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
