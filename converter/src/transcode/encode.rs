//! MP3 encoding with LAME: configuration from the requested quality, streaming PCM blocks to
//! the output, and the final LAME/Xing tag written back over LAME's placeholder frame.

use std::borrow::Cow;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::sync::mpsc::Receiver;

use contracts::Quality;
use mp3lame_encoder::{
    Bitrate, Builder, DualPcm, Encoder, FlushGap, MonoPcm, VbrMode, max_required_buffer_size,
};

use super::decode::{PcmBlock, PcmFormat};
use super::error::TranscodeError;
use super::limits::Budget;
use super::mpa::FrameHeader;

/// The input sample rates we give LAME, which resamples them to a rate MP3 has (8 to 48 kHz).
///
/// LAME itself takes any rate from 1 Hz, but it upsamples a low one to 8 kHz: at 1 kHz a block
/// of PCM grows eightfold, overflows the output buffer sized for it (LAME then fails with "output
/// buffer is insufficient", on every retry), and at 1 Hz would need gigabytes. No real audio is
/// sampled below 4 kHz, where the growth is at most twofold. At the other end, 768 kHz is the
/// highest rate recorders use; LAME sees rates as a C `int`.
pub(crate) const MIN_SAMPLE_RATE: u32 = 4_000;
pub(crate) const MAX_SAMPLE_RATE: u32 = 768_000;
/// The lowest MP3 sample rate, which LAME upsamples lower rates to.
const LOWEST_MP3_RATE: u32 = 8_000;

/// What the encoder produced.
pub(crate) struct EncodeSummary {
    /// MP3 bytes after the ID3 tag.
    pub audio_bytes: u64,
    pub input_frames: u64,
    pub output_sample_rate: u32,
}

pub(crate) struct Mp3Encoder {
    lame: Encoder,
    format: PcmFormat,
    scratch: Vec<u8>,
}

impl Mp3Encoder {
    /// Sets LAME up for `format` at `quality`.
    ///
    /// A sample rate LAME refuses is the input's fault ([`TranscodeError::UnsupportedSampleRate`],
    /// permanent); any other setup failure is ours ([`TranscodeError::Encoder`]).
    pub fn new(format: PcmFormat, quality: Quality) -> Result<Self, TranscodeError> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&format.sample_rate) {
            return Err(TranscodeError::UnsupportedSampleRate(format.sample_rate));
        }
        match build(format, quality) {
            Ok(lame) => Ok(Self {
                lame,
                format,
                scratch: Vec::new(),
            }),
            // The same settings at a common rate work: the input's rate is what LAME refuses.
            Err(_)
                if build(
                    PcmFormat {
                        sample_rate: 44_100,
                        ..format
                    },
                    quality,
                )
                .is_ok() =>
            {
                Err(TranscodeError::UnsupportedSampleRate(format.sample_rate))
            }
            Err(error) => Err(error),
        }
    }

    /// Encodes every block from `blocks` into `output` after `id3_tag`, then finalises the file.
    ///
    /// Stops with [`TranscodeError::Mp3TooLarge`] before writing what would make the file
    /// larger than `budget` allows.
    pub fn run<W: Write + Seek>(
        mut self,
        blocks: Receiver<PcmBlock>,
        id3_tag: &[u8],
        output: &mut W,
        budget: Budget,
    ) -> Result<EncodeSummary, TranscodeError> {
        let start = output.stream_position()?;
        output.write_all(id3_tag)?;
        let lame_start = start + id3_tag.len() as u64;

        let mut writer = BufWriter::with_capacity(64 * 1024, &mut *output);
        let mut audio_bytes = 0u64;
        let mut input_frames = 0u64;
        let mut first_header = None;
        for block in blocks {
            input_frames += block.frames() as u64;
            let encoded = self.encode(&block)?;
            if first_header.is_none() && encoded.len() >= 4 {
                first_header = FrameHeader::parse(encoded[..4].try_into().expect("4 bytes"));
            }
            audio_bytes += encoded.len() as u64;
            budget.check_output(id3_tag.len() as u64 + audio_bytes)?;
            writer.write_all(encoded)?;
        }
        let tail = self.flush()?;
        if first_header.is_none() && tail.len() >= 4 {
            first_header = FrameHeader::parse(tail[..4].try_into().expect("4 bytes"));
        }
        audio_bytes += tail.len() as u64;
        budget.check_output(id3_tag.len() as u64 + audio_bytes)?;
        writer.write_all(tail)?;
        writer.flush()?;
        drop(writer);

        self.write_lame_tag(output, lame_start)?;
        let output_sample_rate = first_header.map_or(self.format.sample_rate, |h| h.sample_rate);
        Ok(EncodeSummary {
            audio_bytes,
            input_frames,
            output_sample_rate,
        })
    }

    fn encode(&mut self, block: &PcmBlock) -> Result<&[u8], TranscodeError> {
        self.scratch.clear();
        // LAME's output follows its resampled length, up to twice the input's (see
        // MIN_SAMPLE_RATE).
        let upsampling = LOWEST_MP3_RATE.div_ceil(self.format.sample_rate).max(1) as usize;
        self.scratch
            .reserve(max_required_buffer_size(block.frames() * upsampling));
        let result = match block.planes.as_slice() {
            [mono] => self
                .lame
                .encode_to_vec(MonoPcm(&in_range(mono)), &mut self.scratch),
            [left, right] => self.lame.encode_to_vec(
                DualPcm {
                    left: &in_range(left),
                    right: &in_range(right),
                },
                &mut self.scratch,
            ),
            planes => {
                return Err(TranscodeError::Encoder(format!(
                    "got {} channels to encode",
                    planes.len()
                )));
            }
        };
        result.map_err(|e| TranscodeError::Encoder(e.to_string()))?;
        Ok(&self.scratch)
    }

    /// Pads the last frame with silence (the tag tells players to trim it); `FlushNoGap` would
    /// drop the tail of the audio instead.
    fn flush(&mut self) -> Result<&[u8], TranscodeError> {
        self.scratch.clear();
        self.scratch.reserve(max_required_buffer_size(0));
        self.lame
            .flush_to_vec::<FlushGap>(&mut self.scratch)
            .map_err(|e| TranscodeError::Encoder(e.to_string()))?;
        Ok(&self.scratch)
    }

    /// Overwrites LAME's placeholder first frame with the real tag (frame count, seek table,
    /// encoder delay and padding), so players get the exact duration and gapless trimming.
    fn write_lame_tag<W: Write + Seek>(
        &self,
        output: &mut W,
        at: u64,
    ) -> Result<(), TranscodeError> {
        let mut tag = Vec::with_capacity(self.lame.lame_tag_size());
        if self.lame.lame_tag_encode_to_vec(&mut tag).is_none() {
            return Ok(());
        }
        let end = output.stream_position()?;
        output.seek(SeekFrom::Start(at))?;
        output.write_all(&tag)?;
        output.seek(SeekFrom::Start(end))?;
        output.flush()?;
        Ok(())
    }
}

/// A LAME encoder for `format` at `quality`.
fn build(format: PcmFormat, quality: Quality) -> Result<Encoder, TranscodeError> {
    let lame_error = |what: &str, error: &dyn std::fmt::Display| {
        TranscodeError::Encoder(format!("could not {what}: {error}"))
    };
    let mut builder =
        Builder::new().ok_or_else(|| TranscodeError::Encoder("out of memory".to_owned()))?;
    builder
        .set_num_channels(format.channels)
        .map_err(|e| lame_error("set the channel count", &e))?;
    // LAME resamples any rate in range to the nearest rate MP3 supports.
    builder
        .set_sample_rate(format.sample_rate)
        .map_err(|e| lame_error("set the sample rate", &e))?;
    match quality {
        Quality::Vbr { level } => {
            builder
                .set_vbr_mode(VbrMode::Mtrh)
                .map_err(|e| lame_error("select VBR", &e))?;
            builder
                .set_vbr_quality(vbr_quality(level))
                .map_err(|e| lame_error("set the VBR quality", &e))?;
            // LAME's new VBR code maps algorithm qualities 0-4 to 0 and 5-9 to 5, the only
            // difference being an exhaustive Huffman table split search. Level 5 decodes to
            // bit-identical audio (checked on the benchmark file), ~3 % larger, 30 % faster.
            builder
                .set_quality(mp3lame_encoder::Quality::Good)
                .map_err(|e| lame_error("set the algorithm quality", &e))?;
        }
        Quality::Cbr { kbps } => {
            builder
                .set_vbr_mode(VbrMode::Off)
                .map_err(|e| lame_error("select CBR", &e))?;
            builder
                .set_brate(cbr_bitrate(kbps))
                .map_err(|e| lame_error("set the bitrate", &e))?;
        }
    }
    builder
        .set_to_write_vbr_tag(true)
        .map_err(|e| lame_error("enable the LAME tag", &e))?;
    builder
        .build()
        .map_err(|e| lame_error(&format!("start for {} Hz audio", format.sample_rate), &e))
}

fn vbr_quality(level: u8) -> mp3lame_encoder::Quality {
    use mp3lame_encoder::Quality as Q;
    match level {
        0 => Q::Best,
        1 => Q::SecondBest,
        2 => Q::NearBest,
        3 => Q::VeryNice,
        4 => Q::Nice,
        5 => Q::Good,
        6 => Q::Decent,
        7 => Q::Ok,
        8 => Q::SecondWorst,
        _ => Q::Worst,
    }
}

/// The MP3 bitrate closest to the request (requests are validated upstream to 64–320).
fn cbr_bitrate(kbps: u16) -> Bitrate {
    const LADDER: [(u16, Bitrate); 10] = [
        (64, Bitrate::Kbps64),
        (80, Bitrate::Kbps80),
        (96, Bitrate::Kbps96),
        (112, Bitrate::Kbps112),
        (128, Bitrate::Kbps128),
        (160, Bitrate::Kbps160),
        (192, Bitrate::Kbps192),
        (224, Bitrate::Kbps224),
        (256, Bitrate::Kbps256),
        (320, Bitrate::Kbps320),
    ];
    LADDER
        .iter()
        .min_by_key(|(rate, _)| rate.abs_diff(kbps))
        .map(|&(_, bitrate)| bitrate)
        .expect("ladder is not empty")
}

/// LAME's float input is nominally -1.0..=1.0, and LAME 3.100 aborts the whole process (an
/// `assert` in `CBR_iteration_loop`) on some samples far outside it, which a corrupt file can
/// decode to (found by converter/fuzz). Non-finite samples become silence, the rest are clipped
/// to the nominal range; a block already in range is passed as it is.
fn in_range(samples: &[f32]) -> Cow<'_, [f32]> {
    if samples.iter().all(|s| (-1.0..=1.0).contains(s)) {
        return Cow::Borrowed(samples);
    }
    Cow::Owned(
        samples
            .iter()
            .map(|&s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbr_requests_snap_to_mp3_bitrates() {
        assert_eq!(cbr_bitrate(128) as u16, 128);
        assert_eq!(cbr_bitrate(320) as u16, 320);
        assert_eq!(cbr_bitrate(130) as u16, 128);
        assert_eq!(cbr_bitrate(8) as u16, 64);
    }

    fn stereo(sample_rate: u32) -> PcmFormat {
        PcmFormat {
            sample_rate,
            channels: 2,
        }
    }

    const QUALITIES: [Quality; 3] = [
        Quality::Vbr { level: 2 },
        Quality::Cbr { kbps: 64 },
        Quality::Cbr { kbps: 320 },
    ];

    #[test]
    fn rates_outside_what_we_give_lame_are_refused_permanently_at_setup() {
        for rate in [0, 1, 100, 1_000, 3_999, 768_001, 2_822_400, u32::MAX] {
            for quality in QUALITIES {
                let error = Mp3Encoder::new(stereo(rate), quality)
                    .err()
                    .expect("refused");
                assert!(
                    matches!(error, TranscodeError::UnsupportedSampleRate(r) if r == rate),
                    "{rate} Hz: {error}"
                );
                assert!(error.is_permanent());
                assert_eq!(
                    error.to_string(),
                    format!("its audio sample rate of {rate} Hz is not supported")
                );
            }
        }
    }

    /// Encodes a few large blocks at `rate`: what failed with "output buffer is insufficient"
    /// when the buffer was sized for the input's length rather than LAME's resampled one.
    fn encode_blocks(rate: u32, quality: Quality) -> Result<EncodeSummary, TranscodeError> {
        let encoder = Mp3Encoder::new(stereo(rate), quality)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(4);
        let encoding = std::thread::spawn(move || {
            let mut output = std::io::Cursor::new(Vec::new());
            let budget = Budget::start(Default::default());
            encoder.run(receiver, &[], &mut output, budget)
        });
        for _ in 0..4 {
            let tone: Vec<f32> = (0..16_384)
                .map(|i| ((i % 64) as f32 / 64.0) - 0.5)
                .collect();
            let block = PcmBlock {
                planes: vec![tone.clone(), tone],
            };
            if sender.send(block).is_err() {
                break;
            }
        }
        drop(sender);
        encoding.join().expect("the encoder thread does not panic")
    }

    #[test]
    fn the_lowest_and_highest_rates_accepted_encode() {
        for rate in [MIN_SAMPLE_RATE, 5_512, 7_999, MAX_SAMPLE_RATE] {
            for quality in QUALITIES {
                let summary = encode_blocks(rate, quality)
                    .unwrap_or_else(|e| panic!("{rate} Hz at {quality:?}: {e}"));
                assert_eq!(summary.input_frames, 4 * 16_384);
                assert!(summary.audio_bytes > 0);
            }
        }
    }

    #[test]
    fn the_mp3_stops_before_passing_its_size_limit() {
        let encoder = Mp3Encoder::new(stereo(44_100), Quality::Cbr { kbps: 320 }).unwrap();
        let (sender, receiver) = std::sync::mpsc::sync_channel(4);
        let encoding = std::thread::spawn(move || {
            let mut output = std::io::Cursor::new(Vec::new());
            let budget = Budget::start(crate::transcode::Limits {
                max_mp3_bytes: 64 * 1024,
                ..Default::default()
            });
            let result = encoder.run(receiver, &[], &mut output, budget);
            (result, output.into_inner().len())
        });
        // 30 s at 320 kbps would be 1.2 MB.
        for _ in 0..160 {
            let block = PcmBlock {
                planes: vec![vec![0.25; 8192], vec![-0.25; 8192]],
            };
            if sender.send(block).is_err() {
                break;
            }
        }
        drop(sender);
        let (result, written) = encoding.join().unwrap();
        let error = result.err().expect("the limit is passed");
        assert!(matches!(error, TranscodeError::Mp3TooLarge(_)), "{error}");
        assert_eq!(
            error.to_string(),
            "the MP3 would be larger than the 64 KiB limit"
        );
        assert!(written <= 64 * 1024, "{written} bytes written");
    }

    #[test]
    fn vbr_levels_map_one_to_one() {
        for level in 0..=9u8 {
            assert_eq!(vbr_quality(level) as u8, level);
        }
        assert_eq!(vbr_quality(42) as u8, 9);
    }
}
