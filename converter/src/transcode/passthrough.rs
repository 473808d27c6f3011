//! Copying MP3 frames unchanged when the source already is MP3 and no quality was requested:
//! no generation loss, and far faster than decoding and re-encoding.

use std::io::{BufWriter, Seek, SeekFrom, Write};

use super::error::TranscodeError;
use super::limits::Budget;
use super::mpa::{FrameHeader, FrameIndex, FrameSplitter, info_frame};
use super::progress::Progress;
use super::source::Source;

pub(crate) struct PassthroughSummary {
    /// Bytes after the ID3 tag: the Xing/Info frame plus the copied frames.
    pub audio_bytes: u64,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Writes `id3_tag`, a Xing/Info frame, then every MP3 frame of the source track.
///
/// The Xing/Info frame is written as a placeholder first and rewritten at the end with the
/// frame count, seek table and the source's encoder delay/padding, which keeps players'
/// durations exact for VBR sources.
///
/// Stops as soon as the copied audio is longer, or the file would be larger, than `budget`
/// allows, or the deadline has passed.
pub(crate) fn copy_frames<W: Write + Seek>(
    mut source: Source,
    id3_tag: &[u8],
    output: &mut W,
    progress: &mut Progress<'_>,
    budget: Budget,
) -> Result<PassthroughSummary, TranscodeError> {
    let start = output.stream_position()?;
    output.write_all(id3_tag)?;
    let info_at = start + id3_tag.len() as u64;

    let mut splitter = FrameSplitter::default();
    let mut first: Option<FrameHeader> = None;
    let mut info_len = 0u64;
    let mut index = FrameIndex::default();
    let mut frames_bytes = 0u64;
    let mut samples = 0u64;
    let mut variable_bitrate = false;

    let mut writer = BufWriter::with_capacity(64 * 1024, &mut *output);
    while let Some(packet) = source.next_packet()? {
        budget.check_deadline()?;
        progress.at_seconds(source.track.seconds_at(packet.pts));
        splitter.push(&packet.data);
        while let Some((header, frame)) = splitter.next_frame() {
            // Layer I/II frames or a change of stream parameters cannot go into one MP3 file.
            let template = *first.get_or_insert(header);
            if header.layer != 3
                || header.sample_rate != template.sample_rate
                || header.channels() != template.channels()
            {
                continue;
            }
            if index.frames() == 0 {
                let placeholder = info_frame(&template, &index, 0, false, None);
                info_len = placeholder.len() as u64;
                writer.write_all(&placeholder)?;
            }
            variable_bitrate |= header.bitrate_kbps != template.bitrate_kbps;
            index.push(frames_bytes);
            frames_bytes += frame.len() as u64;
            samples += u64::from(header.samples_per_frame());
            budget.check_frames(samples, template.sample_rate)?;
            budget.check_output(id3_tag.len() as u64 + info_len + frames_bytes)?;
            writer.write_all(&frame)?;
        }
    }
    writer.flush()?;
    drop(writer);

    let Some(template) = first.filter(|_| index.frames() > 0) else {
        return Err(TranscodeError::corrupt(
            "it contains no readable MP3 frames",
        ));
    };
    let gapless = source.track.gapless;
    let info = info_frame(&template, &index, frames_bytes, variable_bitrate, gapless);
    let end = output.stream_position()?;
    output.seek(SeekFrom::Start(info_at))?;
    output.write_all(&info)?;
    output.seek(SeekFrom::Start(end))?;
    output.flush()?;

    let trimmed = gapless.map_or(0, |g| u64::from(g.delay) + u64::from(g.padding));
    let playable = samples.saturating_sub(trimmed);
    Ok(PassthroughSummary {
        audio_bytes: info_len + frames_bytes,
        duration_seconds: playable as f64 / f64::from(template.sample_rate),
        sample_rate: template.sample_rate,
        channels: template.channels(),
    })
}
