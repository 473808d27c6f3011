//! Opus decoding for symphonia, which has no Opus decoder of its own.
//!
//! The packets come from symphonia's demuxers (Ogg, Matroska/WebM, MP4); the decoding is done by
//! `opus-decoder`, a pure-Rust port of libopus with no unsafe code, so the default build needs no
//! C library (`libopus-dev`) and a crafted packet cannot corrupt memory. Mono and stereo streams
//! (channel mapping family 0) are decoded; surround streams are refused as unsupported.

use opus_decoder::OpusDecoder as PacketDecoder;
use symphonia::core::audio::{
    AsGenericAudioBufferRef, AudioBuffer, AudioMut, AudioSpec, Channels, GenericAudioBufferRef,
    layouts,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::codecs::registry::{RegisterableAudioDecoder, SupportedAudioCodec};
use symphonia::core::errors::{Error, Result, decode_error, unsupported_error};
use symphonia::core::packet::PacketRef;

/// Opus always decodes at 48 kHz unless asked for one of its lower internal rates.
const OPUS_RATE: u32 = 48_000;
/// The longest packet Opus allows: 120 ms at 48 kHz.
const MAX_FRAMES_PER_PACKET: usize = 5_760;
/// `OpusHead`: magic (8), version (1), channels (1), pre-skip (2, little-endian), ...
const OPUS_HEAD_MAGIC: &[u8] = b"OpusHead";

/// A symphonia [`AudioDecoder`] for mono and stereo Opus.
pub(crate) struct OpusDecoder {
    params: AudioCodecParameters,
    decoder: PacketDecoder,
    channels: Channels,
    /// Interleaved output of the last packet; sized once for the longest packet.
    pcm: Vec<f32>,
    buffer: AudioBuffer<f32>,
    /// Frames still to drop from the start of the stream (the encoder's priming, `pre_skip`).
    pre_skip: usize,
}

impl OpusDecoder {
    fn try_new(params: &AudioCodecParameters) -> Result<Self> {
        let head = params.extra_data.as_deref().and_then(OpusHead::parse);
        let count = match (&params.channels, head) {
            (Some(channels), _) => channels.count(),
            (None, Some(head)) => usize::from(head.channels),
            (None, None) => return unsupported_error("opus: the channel count is missing"),
        };
        let channels = match count {
            1 => layouts::CHANNEL_LAYOUT_MONO,
            2 => layouts::CHANNEL_LAYOUT_STEREO,
            _ => return unsupported_error("opus: only mono and stereo streams are decoded"),
        };
        // Containers often state the rate of the original input (44.1 kHz, say), which Opus
        // cannot decode at; its own rates are kept, anything else decodes at 48 kHz.
        let rate = match params.sample_rate {
            Some(rate @ (8_000 | 12_000 | 16_000 | 24_000 | 48_000)) => rate,
            _ => OPUS_RATE,
        };
        let decoder = PacketDecoder::new(rate, count)
            .map_err(|_| Error::Unsupported("opus: the decoder refused the stream's settings"))?;
        let pre_skip = head.map_or(0, |head| {
            usize::from(head.pre_skip) * rate as usize / OPUS_RATE as usize
        });
        let frames = MAX_FRAMES_PER_PACKET * rate as usize / OPUS_RATE as usize;
        Ok(Self {
            params: params.clone(),
            decoder,
            buffer: AudioBuffer::new(AudioSpec::new(rate, channels.clone()), frames),
            channels,
            pcm: vec![0.0; frames * count],
            pre_skip,
        })
    }
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        self.decoder.reset();
    }

    fn codec_info(&self) -> &CodecInfo {
        &SUPPORTED[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        if packet.data.is_empty() {
            return decode_error("opus: empty packet");
        }
        let frames = match self.decoder.decode_float(packet.data, &mut self.pcm, false) {
            Ok(frames) => frames,
            Err(_) => return decode_error("opus: invalid packet"),
        };
        let samples = frames * self.channels.count();
        if frames > self.buffer.capacity() || samples > self.pcm.len() {
            return decode_error("opus: packet longer than 120 ms");
        }
        self.buffer.clear();
        self.buffer.render_uninit(Some(frames));
        let interleaved: &[f32] = &self.pcm[..samples];
        self.buffer.copy_from_slice_interleaved(&interleaved);
        let skip = self.pre_skip.min(frames);
        self.pre_skip -= skip;
        self.buffer.trim(
            packet.trim_start.get() as usize + skip,
            packet.trim_end.get() as usize,
        );
        Ok(self.buffer.as_generic_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buffer.as_generic_audio_buffer_ref()
    }
}

static SUPPORTED: [SupportedAudioCodec; 1] = [SupportedAudioCodec {
    id: CODEC_ID_OPUS,
    info: CodecInfo {
        short_name: "opus",
        long_name: "Opus (opus-decoder, pure Rust)",
        profiles: &[],
    },
}];

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(
        params: &AudioCodecParameters,
        _opts: &AudioDecoderOptions,
    ) -> Result<Box<dyn AudioDecoder>> {
        Ok(Box::new(Self::try_new(params)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        &SUPPORTED
    }
}

/// The fields of the `OpusHead` identification header (RFC 7845 §5.1) we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpusHead {
    channels: u8,
    pre_skip: u16,
}

impl OpusHead {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(OPUS_HEAD_MAGIC)?;
        match rest {
            [_version, channels, skip_low, skip_high, ..] => Some(Self {
                channels: *channels,
                pre_skip: u16::from_le_bytes([*skip_low, *skip_high]),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphonia::core::audio::Audio;
    use symphonia::core::units::{Duration, Timestamp};

    fn head(channels: u8, pre_skip: u16) -> Vec<u8> {
        let mut bytes = OPUS_HEAD_MAGIC.to_vec();
        bytes.extend([1, channels]);
        bytes.extend(pre_skip.to_le_bytes());
        bytes.extend(48_000u32.to_le_bytes());
        bytes.extend([0, 0, 0]);
        bytes
    }

    fn params(
        channels: Option<Channels>,
        rate: Option<u32>,
        extra: Vec<u8>,
    ) -> AudioCodecParameters {
        let mut params = AudioCodecParameters::new();
        params.for_codec(CODEC_ID_OPUS);
        if let Some(channels) = channels {
            params.with_channels(channels);
        }
        if let Some(rate) = rate {
            params.with_sample_rate(rate);
        }
        params.with_extra_data(extra.into_boxed_slice());
        params
    }

    #[test]
    fn the_identification_header_gives_channels_and_pre_skip() {
        assert_eq!(
            OpusHead::parse(&head(2, 312)),
            Some(OpusHead {
                channels: 2,
                pre_skip: 312
            })
        );
        assert_eq!(OpusHead::parse(b"OpusHea"), None);
        assert_eq!(OpusHead::parse(b"OpusHead\x01"), None);
        assert_eq!(OpusHead::parse(b"VorbisHead12345678"), None);
    }

    #[test]
    fn a_rate_opus_cannot_decode_at_becomes_48_khz() {
        let decoder =
            OpusDecoder::try_new(&params(None, Some(44_100), head(2, 312))).expect("decoder");
        assert_eq!(decoder.buffer.spec().rate(), 48_000);
        assert_eq!(decoder.channels.count(), 2);
        assert_eq!(decoder.pre_skip, 312);
    }

    #[test]
    fn surround_is_refused_as_unsupported() {
        let result = OpusDecoder::try_new(&params(Some(Channels::Discrete(6)), None, head(6, 0)));
        assert!(matches!(result, Err(Error::Unsupported(_))));
    }

    fn packet(data: &[u8]) -> PacketRef<'_> {
        PacketRef::new(0, Timestamp::ZERO, Duration::new(960), data)
    }

    #[test]
    fn an_empty_packet_is_a_decode_error() {
        let mut decoder =
            OpusDecoder::try_new(&params(None, Some(48_000), head(1, 0))).expect("decoder");
        assert!(matches!(
            decoder.decode_ref(&packet(&[])),
            Err(Error::DecodeError(_))
        ));
    }

    #[test]
    fn garbage_packets_never_yield_more_than_one_packet_of_audio() {
        let mut decoder =
            OpusDecoder::try_new(&params(None, Some(48_000), head(2, 0))).expect("decoder");
        // A code-3 packet claiming 63 frames of 120 ms, random bytes, a lone TOC byte.
        let garbage: [&[u8]; 3] = [&[0x03, 0xFF, 0xFF, 0xFF], &[0x7F; 1500], &[0xFC]];
        for data in garbage {
            let frames = decoder
                .decode_ref(&packet(data))
                .map(|buffer| buffer.frames());
            assert!(frames.is_err() || frames.is_ok_and(|n| n <= MAX_FRAMES_PER_PACKET));
        }
    }
}
