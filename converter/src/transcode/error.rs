//! Why a transcode failed, phrased so the text can be mailed to the user as is.

use std::io;

/// A failed transcode.
///
/// Permanent errors are problems with the uploaded file itself: retrying cannot help, the user
/// has to be told. The others (I/O, encoder) are on our side and a retry may succeed.
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
            | Self::Corrupt(_) => true,
            Self::Io(_) | Self::Encoder(_) => false,
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        Self::Corrupt(detail.into())
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
