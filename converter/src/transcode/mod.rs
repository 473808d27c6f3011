//! Converting one media file's audio to MP3.
//!
//! [`transcode`] is synchronous and CPU-bound (run it on a blocking thread). It decodes on the
//! calling thread and encodes on a second one; a small bounded channel of PCM blocks between
//! them lets both cores work while keeping memory flat regardless of the input length.

mod avi;
mod decode;
mod downmix;
mod encode;
mod error;
mod id3;
mod limits;
mod mpa;
mod opus;
mod passthrough;
mod progress;
mod source;
mod track;

use std::fs::File;
use std::io::{Seek, Write};
use std::sync::mpsc;
use std::thread;

use contracts::Quality;
use symphonia::core::codecs::audio::well_known::CODEC_ID_MP3;

pub use error::TranscodeError;
pub use limits::Limits;

use decode::PcmDecoder;
use encode::Mp3Encoder;
use limits::Budget;
use progress::Progress;
use source::Source;

/// Batches of PCM in flight between decoder and encoder.
const PCM_QUEUE_DEPTH: usize = 4;
/// Decoded packets go to the encoder in batches of at least this many frames (0.19 s at
/// 44.1 kHz): handing over each packet (1024 frames of AAC) cost a thread wake-up per packet,
/// 8% of the CPU time of a conversion.
const BATCH_FRAMES: usize = 8 * 1024;

/// What the caller asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranscodeOptions {
    /// `None` means no preference: V2, or the MP3 frames copied as they are when the source
    /// audio already is MP3.
    pub quality: Option<Quality>,
    /// Written as the ID3v2 title (TIT2) when present and not blank.
    pub title: Option<String>,
    /// Caps on the audio's length, the MP3's size and the time taken.
    pub limits: Limits,
}

/// What was produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeReport {
    /// Playable length of the MP3.
    pub duration_seconds: f64,
    /// Average bitrate of the MP3 audio (tags excluded).
    pub bitrate_kbps: u32,
    /// True when the source MP3 frames were copied without re-encoding.
    pub passthrough: bool,
    /// Sample rate of the MP3 (LAME may resample rates MP3 does not support).
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u8,
    /// Total size of the output, tags included.
    pub bytes_written: u64,
}

/// Converts the default audio track of `input` into an MP3 written to `output`.
///
/// `input` must be seekable (MP4 files with their index at the end need it). `output` must be
/// seekable because the LAME/Xing tag at its start is only known at the end; it is written from
/// its current position on. `progress` receives percentages 0..=100, each at most once.
///
/// Fails as soon as one of `options.limits` is passed: at once when the container states a
/// longer duration than allowed, otherwise when the decoded audio, the MP3 written or the time
/// taken passes its limit.
pub fn transcode<W: Write + Seek + Send>(
    input: File,
    output: &mut W,
    options: &TranscodeOptions,
    progress: &mut dyn FnMut(u8),
) -> Result<TranscodeReport, TranscodeError> {
    let budget = Budget::start(options.limits);
    let source = Source::open(input)?;
    if let Some(stated) = source.track.duration_seconds {
        budget.check_duration(stated)?;
    }
    let mut progress = Progress::new(progress, source.track.duration_seconds);
    progress.started();
    let id3_tag = options
        .title
        .as_deref()
        .map(id3::title_tag)
        .unwrap_or_default();

    if options.quality.is_none() && source.track.params.codec == CODEC_ID_MP3 {
        let summary = passthrough::copy_frames(source, &id3_tag, output, &mut progress, budget)?;
        progress.finished();
        return Ok(TranscodeReport {
            duration_seconds: summary.duration_seconds,
            bitrate_kbps: average_kbps(summary.audio_bytes, summary.duration_seconds),
            passthrough: true,
            sample_rate: summary.sample_rate,
            channels: summary.channels,
            bytes_written: id3_tag.len() as u64 + summary.audio_bytes,
        });
    }

    let quality = options.quality.unwrap_or_default();
    let mut decoder = PcmDecoder::new(source, progress, budget)?;
    // The first block fixes the real rate and channel count, which containers may misstate.
    let first_block = decoder
        .next_block()?
        .ok_or_else(|| TranscodeError::corrupt("it contains no audio samples"))?;
    let format = decoder.format().expect("known after the first block");
    let encoder = Mp3Encoder::new(format, quality)?;

    let (sender, receiver) = mpsc::sync_channel(PCM_QUEUE_DEPTH);
    let (decoded, encoded) = thread::scope(|scope| {
        let encoding = scope.spawn(|| encoder.run(receiver, &id3_tag, output, budget));
        let decoded = feed(&mut decoder, first_block, &sender);
        drop(sender);
        let encoded = encoding.join().unwrap_or_else(|_| {
            Err(TranscodeError::Encoder(
                "the encoder thread panicked".into(),
            ))
        });
        (decoded, encoded)
    });
    decoded?;
    let summary = encoded?;
    decoder.finish();

    let duration_seconds = summary.input_frames as f64 / f64::from(format.sample_rate);
    Ok(TranscodeReport {
        duration_seconds,
        bitrate_kbps: average_kbps(summary.audio_bytes, duration_seconds),
        passthrough: false,
        sample_rate: summary.output_sample_rate,
        channels: format.channels,
        bytes_written: id3_tag.len() as u64 + summary.audio_bytes,
    })
}

/// Sends decoded blocks to the encoder, batched, until the input ends or either side fails.
fn feed(
    decoder: &mut PcmDecoder<'_>,
    first_block: decode::PcmBlock,
    sender: &mpsc::SyncSender<decode::PcmBlock>,
) -> Result<(), TranscodeError> {
    let mut batch = first_block;
    while let Some(block) = decoder.next_block()? {
        if batch.frames() < BATCH_FRAMES {
            batch.append(block);
        } else if sender.send(std::mem::replace(&mut batch, block)).is_err() {
            // The encoder stopped early; its own error explains why.
            return Ok(());
        }
    }
    let _ = sender.send(batch);
    Ok(())
}

fn average_kbps(bytes: u64, seconds: f64) -> u32 {
    if seconds <= 0.0 {
        return 0;
    }
    (bytes as f64 * 8.0 / seconds / 1000.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_bitrate_is_rounded_kbps() {
        assert_eq!(average_kbps(16_000, 1.0), 128);
        assert_eq!(average_kbps(1000, 0.0), 0);
    }
}
