//! The audio track we convert, as every demuxer describes it (symphonia's readers and our AVI
//! reader alike), and the names of codecs in messages to users.

use symphonia::core::codecs::audio::AudioCodecId;
use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::units::{TimeBase, Timestamp};

use super::mpa::Gapless;

/// The audio track we convert.
#[derive(Debug, Clone)]
pub(crate) struct SourceTrack {
    pub id: u32,
    pub params: AudioCodecParameters,
    pub time_base: Option<TimeBase>,
    pub duration_seconds: Option<f64>,
    pub gapless: Option<Gapless>,
}

impl SourceTrack {
    pub fn seconds_at(&self, ts: Timestamp) -> Option<f64> {
        let time = self.time_base?.calc_time(ts)?;
        Some(time.as_secs_f64())
    }
}

/// A codec's common name, for messages to the user.
pub(crate) fn codec_name(codec: AudioCodecId) -> String {
    let name = match codec {
        CODEC_ID_AAC => "AAC",
        CODEC_ID_MP3 => "MP3",
        CODEC_ID_MP2 => "MPEG-1 Layer II",
        CODEC_ID_MP1 => "MPEG-1 Layer I",
        CODEC_ID_OPUS => "Opus",
        CODEC_ID_VORBIS => "Vorbis",
        CODEC_ID_FLAC => "FLAC",
        CODEC_ID_ALAC => "ALAC (Apple Lossless)",
        CODEC_ID_AC3 => "AC-3 (Dolby Digital)",
        CODEC_ID_EAC3 => "E-AC-3 (Dolby Digital Plus)",
        CODEC_ID_AC4 => "AC-4 (Dolby)",
        CODEC_ID_DCA => "DTS",
        CODEC_ID_WMA => "WMA (Windows Media Audio)",
        CODEC_ID_SPEEX => "Speex",
        CODEC_ID_WAVPACK => "WavPack",
        CODEC_ID_MONKEYS_AUDIO => "Monkey's Audio",
        CODEC_ID_TTA => "TTA (True Audio)",
        CODEC_ID_MUSEPACK => "Musepack",
        CODEC_ID_COOK | CODEC_ID_RA10 | CODEC_ID_RA20 | CODEC_ID_SIPR => "RealAudio",
        CODEC_ID_ATRAC1 | CODEC_ID_ATRAC3 | CODEC_ID_ATRAC3PLUS | CODEC_ID_ATRAC9 => "ATRAC",
        _ => "used in this file",
    };
    name.to_owned()
}
