//! Opening the input: recognising the container, choosing the audio track, and reading its
//! packets, with symphonia's errors translated into [`TranscodeError`]s a user can act on.
//!
//! Memory. Our AVI reader never sizes a buffer by a length the file states (see [`super::avi`]).
//! Symphonia's demuxers bound some of theirs: WAV and AIFF audio comes in packets of at most 1152
//! frames, an Ogg packet is at most 16 MiB, FLAC frames and ALAC frames (at most 65536 samples)
//! are bounded by their formats, and every whole-structure read (`read_boxed_slice_exact`) grows
//! in steps from 4 MB as bytes actually arrive, so a forged length in a small file costs at most
//! about twice the bytes really there. What they read whole is bounded only by the file's size:
//! an MP4 sample, a Matroska block or frame, a CAF magic cookie, a WAV `LIST`/`INFO` chunk. A
//! packet over [`MAX_PACKET_BYTES`] is refused as soon as it arrives, before it is decoded (the
//! decoded samples would take two to eight times its size) or copied.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::LazyLock;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;

use super::avi::{self, AviReader};
use super::error::TranscodeError;
use super::mpa::Gapless;
use super::track::{SourceTrack, codec_name};

/// Symphonia's codecs plus Opus, which symphonia lacks (see [`super::opus`]).
static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
    let mut registry = CodecRegistry::new();
    symphonia::default::register_enabled_codecs(&mut registry);
    registry.register_audio_decoder::<super::opus::OpusDecoder>();
    registry
});

/// The largest packet decoded or copied. Codec packets are kilobytes (a second of 8-channel
/// 32-bit PCM at 192 kHz is 6 MiB); symphonia's Ogg reader uses the same cap.
pub(crate) const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// A container ending early is only "end of stream" this close to its stated duration.
const END_OF_STREAM_TOLERANCE: f64 = 0.98;

enum Demuxer {
    Symphonia(Box<dyn FormatReader>),
    Avi(AviReader),
}

/// The opened input: its audio track and a stream of that track's packets.
pub(crate) struct Source {
    demuxer: Demuxer,
    pub track: SourceTrack,
    /// Time reached by the last packet, to judge whether an early end is a truncation.
    last_seconds: f64,
    packets_read: u64,
}

impl Source {
    pub fn open(mut file: File) -> Result<Self, TranscodeError> {
        if file.metadata()?.len() == 0 {
            return Err(TranscodeError::EmptyFile);
        }
        let mut magic = [0u8; 16];
        let magic_len = read_up_to(&mut file, &mut magic)?;
        let magic = &magic[..magic_len];
        file.seek(SeekFrom::Start(0))?;

        let (demuxer, track) = if avi::is_avi(magic) {
            let (reader, track) = AviReader::open(file)?;
            (Demuxer::Avi(reader), track)
        } else {
            let reader = probe(file, magic)?;
            let track = audio_track(reader.as_ref())?;
            (Demuxer::Symphonia(reader), track)
        };
        Ok(Self {
            demuxer,
            track,
            last_seconds: 0.0,
            packets_read: 0,
        })
    }

    /// The next packet of the chosen track, or `None` at the end of the stream.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, TranscodeError> {
        let result = match &mut self.demuxer {
            Demuxer::Avi(reader) => reader.next_packet().map_err(SymphoniaError::IoError),
            Demuxer::Symphonia(reader) => loop {
                match reader.next_packet() {
                    Ok(Some(packet)) if packet.track_id != self.track.id => continue,
                    other => break other,
                }
            },
        };
        match result {
            Ok(Some(packet)) if packet.data.len() > MAX_PACKET_BYTES => {
                Err(TranscodeError::corrupt(format!(
                    "it holds a block of audio data of {} MiB, more than the {} MiB a block may have",
                    packet.data.len() >> 20,
                    MAX_PACKET_BYTES >> 20
                )))
            }
            Ok(Some(packet)) => {
                self.packets_read += 1;
                if let Some(seconds) = self.track.seconds_at(packet.pts) {
                    self.last_seconds = seconds;
                }
                Ok(Some(packet))
            }
            Ok(None) => Ok(None),
            // A new chained Ogg stream: we convert the first one only.
            Err(SymphoniaError::ResetRequired) => Ok(None),
            Err(SymphoniaError::IoError(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                self.end_early()
            }
            Err(SymphoniaError::IoError(error)) => Err(TranscodeError::reading_input(error)),
            Err(error) => {
                tracing::warn!(%error, "demuxing failed");
                Err(TranscodeError::corrupt("its audio data could not be read"))
            }
        }
    }

    /// MKV/WebM report an unexpected end after their last packet; anywhere else it means the
    /// file was cut short.
    fn end_early(&self) -> Result<Option<Packet>, TranscodeError> {
        match self.track.duration_seconds {
            Some(total) if self.last_seconds < total * END_OF_STREAM_TOLERANCE => {
                Err(TranscodeError::corrupt(format!(
                    "it ends after {:.1} s of its {:.1} s",
                    self.last_seconds, total
                )))
            }
            None if self.packets_read == 0 => {
                Err(TranscodeError::corrupt("it ends before any audio"))
            }
            _ => Ok(None),
        }
    }

    pub fn make_decoder(&self) -> Result<Box<dyn AudioDecoder>, TranscodeError> {
        let params = &self.track.params;
        if CODECS.get_audio_decoder(params.codec).is_none() {
            return Err(TranscodeError::UnsupportedCodec(codec_name(params.codec)));
        }
        CODECS
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|error| match error {
                SymphoniaError::Unsupported(detail) => {
                    tracing::warn!(detail, "the decoder refused the track");
                    TranscodeError::UnsupportedCodec(variant_name(params))
                }
                other => {
                    tracing::warn!(error = %other, "creating the decoder failed");
                    TranscodeError::corrupt(format!(
                        "its {} audio settings are invalid",
                        codec_name(params.codec)
                    ))
                }
            })
    }
}

fn probe(file: File, magic: &[u8]) -> Result<Box<dyn FormatReader>, TranscodeError> {
    let stream = MediaSourceStream::new(
        Box::new(file),
        MediaSourceStreamOptions {
            buffer_len: 64 * 1024,
        },
    );
    symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|error| match (error, container_name(magic)) {
            (SymphoniaError::IoError(error), _) if error.raw_os_error().is_some() => {
                TranscodeError::Io(error)
            }
            // A recognisable container that cannot be opened is damaged, not foreign.
            (error, Some(container)) => {
                tracing::warn!(%error, container, "probing a recognised container failed");
                TranscodeError::corrupt(format!("its {container} structure could not be read"))
            }
            (_, None) => TranscodeError::NotMedia,
        })
}

fn audio_track(reader: &dyn FormatReader) -> Result<SourceTrack, TranscodeError> {
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or(TranscodeError::NoAudioTrack)?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(TranscodeError::NoAudioTrack);
    };
    let duration_seconds = match (track.time_base, track.duration) {
        (Some(time_base), Some(duration)) => time_base
            .calc_duration(duration)
            .map(|time| time.as_secs_f64()),
        _ => match (track.num_frames, params.sample_rate) {
            (Some(frames), Some(rate)) if rate > 0 => Some(frames as f64 / f64::from(rate)),
            _ => None,
        },
    };
    let gapless = (track.delay.is_some() || track.padding.is_some()).then(|| Gapless {
        delay: track.delay.unwrap_or(0),
        padding: track.padding.unwrap_or(0),
    });
    Ok(SourceTrack {
        id: track.id,
        params: params.clone(),
        time_base: track.time_base,
        duration_seconds: duration_seconds.filter(|s| s.is_finite() && *s > 0.0),
        gapless,
    })
}

/// Names containers by their first bytes, to tell damaged media from files that are not media.
fn container_name(magic: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, expected: &[u8]| {
        magic.get(offset..offset + expected.len()) == Some(expected)
    };
    if at(4, b"ftyp") || at(4, b"moov") || at(4, b"mdat") || at(4, b"free") || at(4, b"wide") {
        Some("MP4/QuickTime")
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("Matroska/WebM")
    } else if at(0, b"RIFF") {
        Some("RIFF (WAV/AVI)")
    } else if at(0, b"OggS") {
        Some("Ogg")
    } else if at(0, b"fLaC") {
        Some("FLAC")
    } else if at(0, b"ID3") {
        Some("MP3")
    } else if at(0, b"FORM") {
        Some("AIFF")
    } else if at(0, b"caff") {
        Some("CAF")
    } else {
        None
    }
}

/// Names the variant a decoder refused although it handles the codec in general, e.g. AAC in
/// 5.1 (symphonia's AAC decoder is stereo AAC-LC only; our Opus decoder is mono/stereo).
fn variant_name(params: &AudioCodecParameters) -> String {
    let name = codec_name(params.codec);
    match params.channels.as_ref().map(|c| c.count()) {
        Some(count) if count > 2 => format!("{name} with {count} channels"),
        _ if params.codec == CODEC_ID_AAC => "HE-AAC (or another AAC profile than AAC-LC)".into(),
        _ => name,
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_named_by_magic() {
        assert_eq!(container_name(b"\0\0\0\x20ftypisom"), Some("MP4/QuickTime"));
        assert_eq!(
            container_name(&[0x1A, 0x45, 0xDF, 0xA3, 1]),
            Some("Matroska/WebM")
        );
        assert_eq!(container_name(b"OggS\0"), Some("Ogg"));
        assert_eq!(container_name(b"hello world"), None);
        assert_eq!(container_name(b""), None);
    }

    #[test]
    fn codec_names_are_human() {
        assert_eq!(codec_name(CODEC_ID_AC3), "AC-3 (Dolby Digital)");
        assert_eq!(
            codec_name(symphonia::core::codecs::audio::CODEC_ID_NULL_AUDIO),
            "used in this file"
        );
    }

    #[test]
    fn refused_variants_are_named() {
        let mut params = AudioCodecParameters::new();
        params.for_codec(CODEC_ID_AAC);
        assert_eq!(
            variant_name(&params),
            "HE-AAC (or another AAC profile than AAC-LC)"
        );
        params.with_channels(symphonia::core::audio::Channels::Discrete(6));
        assert_eq!(variant_name(&params), "AAC with 6 channels");
    }

    #[test]
    fn opus_is_registered() {
        assert!(CODECS.get_audio_decoder(CODEC_ID_OPUS).is_some());
        assert!(CODECS.get_audio_decoder(CODEC_ID_AAC).is_some());
    }
}
