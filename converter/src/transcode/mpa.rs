//! MPEG audio frame headers: enough to split an MP3 byte stream into frames (AVI gives arbitrary
//! chunks) and to write the Xing/Info tag frame in front of passed-through frames.

/// The 4-byte header that starts every MPEG audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub version: MpegVersion,
    pub layer: u8,
    pub bitrate_kbps: u32,
    pub sample_rate: u32,
    pub padding: bool,
    pub has_crc: bool,
    pub mono: bool,
    raw: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MpegVersion {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

const BITRATES_V1: [[u32; 15]; 3] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
];
const BITRATES_V2: [[u32; 15]; 3] = [
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

impl FrameHeader {
    /// Parses a header; `None` for anything that is not a valid, non-free-format header.
    pub fn parse(bytes: [u8; 4]) -> Option<Self> {
        let raw = u32::from_be_bytes(bytes);
        if raw >> 21 != 0x7FF {
            return None;
        }
        let version = match (raw >> 19) & 0b11 {
            0b00 => MpegVersion::Mpeg25,
            0b10 => MpegVersion::Mpeg2,
            0b11 => MpegVersion::Mpeg1,
            _ => return None,
        };
        let layer = match (raw >> 17) & 0b11 {
            0b11 => 1,
            0b10 => 2,
            0b01 => 3,
            _ => return None,
        };
        let bitrate_index = ((raw >> 12) & 0xF) as usize;
        // Index 0 is "free format" (length unknowable from the header), 15 is invalid.
        if bitrate_index == 0 || bitrate_index == 15 {
            return None;
        }
        let table = match version {
            MpegVersion::Mpeg1 => &BITRATES_V1,
            _ => &BITRATES_V2,
        };
        let bitrate_kbps = table[usize::from(layer - 1)][bitrate_index];
        let base_rate = match (raw >> 10) & 0b11 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match version {
            MpegVersion::Mpeg1 => base_rate,
            MpegVersion::Mpeg2 => base_rate / 2,
            MpegVersion::Mpeg25 => base_rate / 4,
        };
        Some(Self {
            version,
            layer,
            bitrate_kbps,
            sample_rate,
            padding: (raw >> 9) & 1 == 1,
            has_crc: (raw >> 16) & 1 == 0,
            mono: (raw >> 6) & 0b11 == 0b11,
            raw,
        })
    }

    /// Whole frame length in bytes, header included.
    pub fn frame_len(&self) -> usize {
        let bits_per_second = self.bitrate_kbps as usize * 1000;
        let rate = self.sample_rate as usize;
        let pad = usize::from(self.padding);
        match (self.layer, self.version) {
            (1, _) => (12 * bits_per_second / rate + pad) * 4,
            (3, MpegVersion::Mpeg2 | MpegVersion::Mpeg25) => 72 * bits_per_second / rate + pad,
            _ => 144 * bits_per_second / rate + pad,
        }
    }

    pub fn samples_per_frame(&self) -> u32 {
        match (self.layer, self.version) {
            (1, _) => 384,
            (3, MpegVersion::Mpeg2 | MpegVersion::Mpeg25) => 576,
            _ => 1152,
        }
    }

    pub fn channels(&self) -> u8 {
        if self.mono { 1 } else { 2 }
    }

    /// Layer III side information length, which is where a Xing tag starts after the header.
    pub fn side_info_len(&self) -> usize {
        match (self.version, self.mono) {
            (MpegVersion::Mpeg1, true) => 17,
            (MpegVersion::Mpeg1, false) => 32,
            (_, true) => 9,
            (_, false) => 17,
        }
    }

    /// The same stream parameters with another bitrate index, no padding and no CRC.
    fn with_bitrate_index(&self, index: u32) -> Option<Self> {
        let raw = (self.raw & !(0xF << 12) & !(1 << 9)) | (index << 12) | (1 << 16);
        Self::parse(raw.to_be_bytes())
    }
}

/// Splits an arbitrary chunking of an MPEG audio stream into whole frames.
///
/// Holds what was pushed and not yet returned as frames: the last push plus at most one partial
/// frame (under 3 KB), so callers bound its memory by the size of what they push. Frames are
/// taken from a moving start offset and the consumed bytes dropped at the next push, so
/// splitting a large push costs time linear in its size.
#[derive(Default)]
pub(crate) struct FrameSplitter {
    pending: Vec<u8>,
    /// Bytes of `pending` already returned or skipped.
    start: usize,
}

impl FrameSplitter {
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.drain(..self.start);
        self.start = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole frame, skipping garbage between frames; `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<(FrameHeader, Vec<u8>)> {
        let mut at = self.start;
        while at + 4 <= self.pending.len() {
            let header_bytes = self.pending[at..at + 4].try_into().expect("4 bytes");
            match FrameHeader::parse(header_bytes) {
                Some(header) if at + header.frame_len() <= self.pending.len() => {
                    let end = at + header.frame_len();
                    let frame = self.pending[at..end].to_vec();
                    self.start = end;
                    return Some((header, frame));
                }
                Some(_) => break,
                None => at += 1,
            }
        }
        self.start = at;
        None
    }
}

/// Encoder delay/padding in decoded samples, carried over into the LAME extension.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gapless {
    pub delay: u32,
    pub padding: u32,
}

/// LAME's tag stores delay net of the 529-sample MP3 decoder latency that readers add back.
const DECODER_DELAY: u32 = 529;
/// Bytes of the Xing body with all four fields plus the 36-byte LAME extension.
const XING_BODY_LEN: usize = 4 + 4 + 4 + 4 + 100 + 4 + 36;

/// Builds a Xing/Info frame summarising the `index.frames()` audio frames that follow it.
///
/// `audio_bytes` is the size of those frames. The result has the same length whatever the
/// counts, so a placeholder can be written first and overwritten in place at the end.
pub(crate) fn info_frame(
    template: &FrameHeader,
    index: &FrameIndex,
    audio_bytes: u64,
    variable_bitrate: bool,
    gapless: Option<Gapless>,
) -> Vec<u8> {
    let Some(header) = (1..15)
        .filter_map(|index| template.with_bitrate_index(index))
        .find(|h| h.frame_len() >= 4 + h.side_info_len() + XING_BODY_LEN)
    else {
        return Vec::new();
    };
    let frame_len = header.frame_len();
    let total_bytes = audio_bytes + frame_len as u64;

    let mut frame = Vec::with_capacity(frame_len);
    frame.extend_from_slice(&header.raw.to_be_bytes());
    frame.resize(4 + header.side_info_len(), 0);
    frame.extend_from_slice(if variable_bitrate { b"Xing" } else { b"Info" });
    frame.extend_from_slice(&0x0Fu32.to_be_bytes());
    frame.extend_from_slice(&saturate_u32(index.frames()).to_be_bytes());
    frame.extend_from_slice(&saturate_u32(total_bytes).to_be_bytes());
    frame.extend_from_slice(&index.seek_table(frame_len as u64, total_bytes));
    frame.extend_from_slice(&0u32.to_be_bytes());

    // LAME extension; readers only trust the delay fields under a known encoder name.
    frame.extend_from_slice(b"Lavf\0\0\0\0\0");
    frame.extend_from_slice(&[0; 12]);
    let trim = gapless.map_or(0, |g| {
        let delay = g.delay.saturating_sub(DECODER_DELAY).min(0xFFF);
        let padding = (g.padding + DECODER_DELAY).min(0xFFF);
        (delay << 12) | padding
    });
    frame.extend_from_slice(&trim.to_be_bytes()[1..]);
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&saturate_u32(total_bytes).to_be_bytes());
    frame.extend_from_slice(&[0; 2]);
    let crc = crc16_arc(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    frame.resize(frame_len, 0);
    frame
}

/// Offsets of the audio frames, thinned out as they grow so memory stays small for very long
/// files: only a seek table with 100 entries is built from them.
pub(crate) struct FrameIndex {
    frames: u64,
    /// Every `stride`-th frame's offset is kept.
    stride: u64,
    offsets: Vec<u64>,
}

/// Kept offsets before thinning; plenty for 100 evenly spaced seek points.
const MAX_KEPT_OFFSETS: usize = 4096;

impl Default for FrameIndex {
    fn default() -> Self {
        Self {
            frames: 0,
            stride: 1,
            offsets: Vec::new(),
        }
    }
}

impl FrameIndex {
    /// Records the next frame, starting `offset` bytes after the first one.
    pub fn push(&mut self, offset: u64) {
        if self.frames.is_multiple_of(self.stride) {
            self.offsets.push(offset);
        }
        self.frames += 1;
        if self.offsets.len() >= MAX_KEPT_OFFSETS {
            let mut position = 0;
            self.offsets.retain(|_| {
                position += 1;
                position % 2 == 1
            });
            self.stride *= 2;
        }
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The Xing table of contents: byte position (in 1/256ths of the file) at each percent.
    fn seek_table(&self, info_len: u64, total_bytes: u64) -> [u8; 100] {
        let mut toc = [0u8; 100];
        if self.offsets.is_empty() || total_bytes == 0 {
            return toc;
        }
        for (percent, entry) in toc.iter_mut().enumerate() {
            let frame = percent as u64 * self.frames / 100;
            let kept = ((frame / self.stride) as usize).min(self.offsets.len() - 1);
            let position = info_len + self.offsets[kept];
            *entry = (position * 256 / total_bytes).min(255) as u8;
        }
        toc
    }
}

fn saturate_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// CRC-16/ARC, the checksum LAME puts over its tag.
fn crc16_arc(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MPEG-1 Layer III, 128 kbps, 44.1 kHz, joint stereo, no CRC.
    const MP3_128K: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];

    #[test]
    fn parses_a_common_mp3_header() {
        let header = FrameHeader::parse(MP3_128K).unwrap();
        assert_eq!(header.version, MpegVersion::Mpeg1);
        assert_eq!(
            (header.layer, header.bitrate_kbps, header.sample_rate),
            (3, 128, 44_100)
        );
        assert_eq!(header.frame_len(), 417);
        assert_eq!(header.samples_per_frame(), 1152);
        assert_eq!(header.channels(), 2);
        assert!(!header.has_crc);
    }

    #[test]
    fn rejects_non_headers() {
        assert!(FrameHeader::parse(*b"ID3\x03").is_none());
        assert!(
            FrameHeader::parse([0xFF, 0xFB, 0x00, 0x64]).is_none(),
            "free format"
        );
        assert!(
            FrameHeader::parse([0xFF, 0xFB, 0xF0, 0x64]).is_none(),
            "bad bitrate"
        );
    }

    #[test]
    fn splitter_reassembles_frames_from_odd_chunks() {
        let header = FrameHeader::parse(MP3_128K).unwrap();
        let mut frame = MP3_128K.to_vec();
        frame.resize(header.frame_len(), 0x11);
        let stream: Vec<u8> = [&b"junk"[..], &frame, &frame].concat();

        let mut splitter = FrameSplitter::default();
        let mut frames = Vec::new();
        for chunk in stream.chunks(100) {
            splitter.push(chunk);
            while let Some((_, bytes)) = splitter.next_frame() {
                frames.push(bytes);
            }
        }
        assert_eq!(frames, vec![frame.clone(), frame]);
    }

    #[test]
    fn splitter_takes_many_frames_from_one_push_and_keeps_only_the_partial_one() {
        let header = FrameHeader::parse(MP3_128K).unwrap();
        let mut frame = MP3_128K.to_vec();
        frame.resize(header.frame_len(), 0x22);
        let mut splitter = FrameSplitter::default();
        splitter.push(&[&frame.repeat(1000)[..], &frame[..100]].concat());
        let mut count = 0;
        while let Some((_, bytes)) = splitter.next_frame() {
            assert_eq!(bytes, frame);
            count += 1;
        }
        assert_eq!(count, 1000);
        splitter.push(&frame[100..]);
        assert_eq!(
            splitter.pending.len(),
            frame.len(),
            "consumed bytes are dropped"
        );
        assert_eq!(splitter.next_frame().map(|(_, bytes)| bytes), Some(frame));
    }

    #[test]
    fn info_frame_is_a_valid_frame_with_fixed_length() {
        let header = FrameHeader::parse(MP3_128K).unwrap();
        let empty = info_frame(&header, &FrameIndex::default(), 0, false, None);
        let mut index = FrameIndex::default();
        for offset in [0, 417, 834] {
            index.push(offset);
        }
        let full = info_frame(&header, &index, 1251, true, Some(Gapless::default()));
        assert_eq!(empty.len(), full.len());
        let parsed = FrameHeader::parse(full[..4].try_into().unwrap()).unwrap();
        assert_eq!(parsed.frame_len(), full.len());
        assert_eq!(parsed.sample_rate, 44_100);
        assert_eq!(&full[36..40], b"Xing");
        assert_eq!(&full[44..48], &3u32.to_be_bytes());
    }

    #[test]
    fn info_frame_carries_gapless_trim_where_readers_look() {
        let header = FrameHeader::parse(MP3_128K).unwrap();
        let gapless = Gapless {
            delay: 1105,
            padding: 551,
        };
        let frame = info_frame(&header, &FrameIndex::default(), 0, false, Some(gapless));
        // Header, side info, Xing fields (120 bytes), then 21 bytes into the LAME extension.
        let at = 4 + 32 + 120 + 21;
        let trim = u32::from_be_bytes([0, frame[at], frame[at + 1], frame[at + 2]]);
        assert_eq!(trim >> 12, 1105 - 529);
        assert_eq!(trim & 0xFFF, 551 + 529);
    }

    #[test]
    fn frame_index_thins_out_but_keeps_the_seek_table_monotonic() {
        let mut index = FrameIndex::default();
        for frame in 0..100_000u64 {
            index.push(frame * 400);
        }
        assert_eq!(index.frames(), 100_000);
        assert!(index.offsets.len() < MAX_KEPT_OFFSETS);
        let toc = index.seek_table(400, 100_000 * 400 + 400);
        assert!(toc.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!((125..=130).contains(&toc[50]), "{}", toc[50]);
    }

    #[test]
    fn crc_matches_the_reference_check_value() {
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
    }
}
