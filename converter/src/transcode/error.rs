//! Why a transcode failed, phrased so the text can be mailed to the user as is.

use std::io;

/// A failed transcode.
///
/// Permanent errors are problems with the uploaded file itself: retrying cannot help, the user
/// has to be told. The others (the machine's I/O, the encoder) are on our
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
            | Self::UnsupportedSampleRate(_) => true,
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
    fn an_unsupported_rate_is_named_in_the_message() {
        assert_eq!(
            TranscodeError::UnsupportedSampleRate(3).to_string(),
            "its audio sample rate of 3 Hz is not supported"
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
}
