//! Decoding the source track into planar f32 PCM ready for the encoder (1 or 2 channels).

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::core::errors::Error as SymphoniaError;

use super::downmix::Mixer;
use super::error::TranscodeError;
use super::limits::Budget;
use super::progress::Progress;
use super::source::Source;
use super::track::codec_name;

/// Damaged packets are skipped, but a run this long means the stream is garbage.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 16;
/// Beyond this many damaged packets in total the result would be mostly holes.
const MAX_TOTAL_BAD_PACKETS: u32 = 256;

/// Planar samples of one decoded packet: one plane for mono, two for stereo.
pub(crate) struct PcmBlock {
    pub planes: Vec<Vec<f32>>,
}

impl PcmBlock {
    pub fn frames(&self) -> usize {
        self.planes.first().map_or(0, Vec::len)
    }

    /// Appends `next`, which has the same channel count (the decoder conforms every block).
    pub fn append(&mut self, next: PcmBlock) {
        for (plane, more) in self.planes.iter_mut().zip(next.planes) {
            plane.extend_from_slice(&more);
        }
    }
}

/// The audio shape fixed by the first decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PcmFormat {
    pub sample_rate: u32,
    pub channels: u8,
}

pub(crate) struct PcmDecoder<'p> {
    source: Source,
    decoder: Box<dyn AudioDecoder>,
    progress: Progress<'p>,
    budget: Budget,
    format: Option<PcmFormat>,
    /// Frames decoded so far, held against the duration limit.
    frames_decoded: u64,
    layout: Option<(Channels, Mixer)>,
    good_packets: u64,
    consecutive_bad: u32,
    total_bad: u32,
}

impl<'p> PcmDecoder<'p> {
    pub fn new(
        source: Source,
        progress: Progress<'p>,
        budget: Budget,
    ) -> Result<Self, TranscodeError> {
        let decoder = source.make_decoder()?;
        Ok(Self {
            source,
            decoder,
            progress,
            budget,
            format: None,
            frames_decoded: 0,
            layout: None,
            good_packets: 0,
            consecutive_bad: 0,
            total_bad: 0,
        })
    }

    /// The format of the output; known once the first block has been decoded.
    pub fn format(&self) -> Option<PcmFormat> {
        self.format
    }

    pub fn finish(mut self) {
        self.progress.finished();
    }

    /// The next non-empty block, or `None` at the end of the stream.
    ///
    /// Fails as soon as the audio decoded so far is longer than the budget allows, or the
    /// conversion has run past its deadline.
    pub fn next_block(&mut self) -> Result<Option<PcmBlock>, TranscodeError> {
        loop {
            self.budget.check_deadline()?;
            let Some(packet) = self.source.next_packet()? else {
                if self.good_packets == 0 {
                    return Err(TranscodeError::corrupt("no audio in it could be decoded"));
                }
                return Ok(None);
            };
            self.progress
                .at_seconds(self.source.track.seconds_at(packet.pts));

            let mut planes = Vec::new();
            let spec = match self.decoder.decode(&packet) {
                Ok(buffer) => {
                    buffer.copy_to_vecs_planar::<f32>(&mut planes);
                    buffer.spec().clone()
                }
                Err(error) => {
                    self.note_bad_packet(error)?;
                    continue;
                }
            };
            self.good_packets += 1;
            self.consecutive_bad = 0;
            if planes.first().is_none_or(Vec::is_empty) {
                continue;
            }

            let format = *self.format.get_or_insert_with(|| PcmFormat {
                sample_rate: spec.rate(),
                channels: Mixer::for_layout(spec.channels()).output_channels(),
            });
            if spec.rate() != format.sample_rate {
                return Err(TranscodeError::corrupt(
                    "its audio sample rate changes partway through",
                ));
            }
            self.frames_decoded += planes[0].len() as u64;
            self.budget
                .check_frames(self.frames_decoded, format.sample_rate)?;
            self.mixer_for(spec.channels()).mix(&mut planes);
            conform(&mut planes, format.channels);
            return Ok(Some(PcmBlock { planes }));
        }
    }

    fn mixer_for(&mut self, channels: &Channels) -> &Mixer {
        if self
            .layout
            .as_ref()
            .is_none_or(|(known, _)| known != channels)
        {
            self.layout = Some((channels.clone(), Mixer::for_layout(channels)));
        }
        &self.layout.as_ref().expect("set above").1
    }

    fn note_bad_packet(&mut self, error: SymphoniaError) -> Result<(), TranscodeError> {
        let codec = self.source.track.params.codec;
        match error {
            // A feature of the codec we lack, found before anything decoded: not damage.
            SymphoniaError::Unsupported(_) if self.good_packets == 0 => {
                return Err(TranscodeError::UnsupportedCodec(codec_name(codec)));
            }
            SymphoniaError::DecodeError(_)
            | SymphoniaError::IoError(_)
            | SymphoniaError::Unsupported(_) => {}
            other => {
                tracing::warn!(error = %other, "decoding failed");
                return Err(TranscodeError::corrupt(format!(
                    "its {} audio could not be decoded",
                    codec_name(codec)
                )));
            }
        }
        self.consecutive_bad += 1;
        self.total_bad += 1;
        if self.consecutive_bad >= MAX_CONSECUTIVE_BAD_PACKETS
            || self.total_bad >= MAX_TOTAL_BAD_PACKETS
        {
            return Err(TranscodeError::corrupt(format!(
                "too much of its {} audio is damaged",
                codec_name(codec)
            )));
        }
        tracing::debug!(
            bad_packets = self.total_bad,
            "skipped an undecodable packet"
        );
        Ok(())
    }
}

/// Keeps the channel count fixed if a stream switches between mono and stereo midway.
fn conform(planes: &mut Vec<Vec<f32>>, channels: u8) {
    match (planes.len(), channels) {
        (1, 2) => planes.push(planes[0].clone()),
        (2, 1) => {
            let right = planes.pop().expect("two planes");
            for (left, right) in planes[0].iter_mut().zip(right) {
                *left = (*left + right) * 0.5;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conform_duplicates_or_averages() {
        let mut mono = vec![vec![0.5f32, 1.0]];
        conform(&mut mono, 2);
        assert_eq!(mono, vec![vec![0.5, 1.0], vec![0.5, 1.0]]);

        let mut stereo = vec![vec![1.0f32], vec![0.0]];
        conform(&mut stereo, 1);
        assert_eq!(stereo, vec![vec![0.5]]);
    }
}
