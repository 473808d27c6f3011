//! A small AVI demuxer for the audio stream, since symphonia reads no AVI.
//!
//! Walks the RIFF tree (including OpenDML `AVIX` extensions) front to back: the header lists
//! first, then the `movi` lists whose chunks carry the interleaved stream data. Supports the
//! audio that real AVI files carry and our decoders handle: PCM and MPEG audio (MP3/MP2).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use symphonia::core::audio::{Channels, Position};
use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::packet::Packet;
use symphonia::core::units::{Duration, TimeBase, Timestamp};

use super::error::TranscodeError;
use super::mpa::FrameSplitter;
use super::track::{SourceTrack, codec_name};

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_MPEG: u16 = 0x0050;
const WAVE_FORMAT_MPEGLAYER3: u16 = 0x0055;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// PCM chunks are cut into packets of at most this many frames to keep buffers small...
const MAX_PCM_FRAMES_PER_PACKET: u64 = 4096;
/// ...and of at most this many bytes, whatever the block size the file states.
const MAX_PCM_PACKET_BYTES: u64 = 64 * 1024;
/// MPEG audio chunks are fed to the frame splitter in pieces of at most this many bytes.
const MPEG_PIECE_BYTES: u64 = 16 * 1024;
/// Header chunks (`strh`, `strf`) are read up to this many bytes; the fields we use are in the
/// first 40, and anything beyond (codec extra data) is skipped rather than read into memory.
const MAX_HEADER_CHUNK_BYTES: u32 = 4096;
/// The audio track's id in the packets we hand out.
const TRACK_ID: u32 = 0;

/// True when the file starts like an AVI.
pub(crate) fn is_avi(magic: &[u8]) -> bool {
    magic.len() >= 12 && &magic[..4] == b"RIFF" && &magic[8..12] == b"AVI "
}

/// Reads the audio stream's chunks as a stream of bounded packets: a chunk is never read whole,
/// since its size is the file's word (a valid AVI may hold all its audio in one chunk of
/// hundreds of megabytes). Memory stays below a few hundred kilobytes whatever the input.
pub(crate) struct AviReader {
    walker: RiffWalker,
    stream_tag: [u8; 2],
    payload: Payload,
    /// The audio chunk being read, when one is open.
    chunk: Option<OpenChunk>,
    next_ts: u64,
}

enum Payload {
    Pcm {
        block_align: u64,
        frames_per_packet: u64,
    },
    MpegAudio {
        splitter: FrameSplitter,
        /// Reused buffer for the pieces fed to the splitter.
        piece: Vec<u8>,
    },
}

/// The part of the current audio chunk not read yet.
struct OpenChunk {
    /// Bytes left to read (those present in the file).
    left: u64,
    /// Whether a pad byte follows the chunk (RIFF chunks are aligned to even offsets).
    padded: bool,
    /// The chunk's stated size runs past the end of the file: once `left` is read, the stream
    /// ends with an unexpected end of file.
    truncated: bool,
}

impl AviReader {
    /// Reads the headers up to the first `movi` list and picks the first audio stream.
    ///
    /// I/O errors are judged by [`TranscodeError::reading_input`]: a header running past the
    /// end of the file is the file's fault, a failing disk is not.
    pub fn open(file: File) -> Result<(Self, SourceTrack), TranscodeError> {
        let mut walker = RiffWalker::new(file).map_err(TranscodeError::reading_input)?;
        let mut stream_count = 0u32;
        let mut current_is_audio = false;
        let mut audio: Option<(u32, StreamHeader, WaveFormat)> = None;
        let mut pending_header: Option<StreamHeader> = None;

        loop {
            match walker.next_event().map_err(TranscodeError::reading_input)? {
                None => return Err(TranscodeError::corrupt("the AVI file has no media data")),
                Some(Event::EnterList(list)) if &list == b"strl" => {
                    stream_count += 1;
                    current_is_audio = false;
                }
                Some(Event::EnterList(list)) if &list == b"movi" => break,
                Some(Event::EnterList(_)) => {}
                Some(Event::Chunk { id, size }) if &id == b"strh" => {
                    let header = StreamHeader::parse(
                        &walker
                            .read_header_chunk(size)
                            .map_err(TranscodeError::reading_input)?,
                    )?;
                    current_is_audio = &header.kind == b"auds";
                    pending_header = Some(header);
                }
                Some(Event::Chunk { id, size }) if &id == b"strf" && current_is_audio => {
                    let format = WaveFormat::parse(
                        &walker
                            .read_header_chunk(size)
                            .map_err(TranscodeError::reading_input)?,
                    )?;
                    if audio.is_none()
                        && let Some(header) = pending_header.take()
                    {
                        audio = Some((stream_count - 1, header, format));
                    }
                }
                Some(Event::Chunk { size, .. }) => walker
                    .skip_chunk(size)
                    .map_err(TranscodeError::reading_input)?,
            }
        }

        let (index, header, format) = audio.ok_or(TranscodeError::NoAudioTrack)?;
        let (params, payload) = format.codec_parameters()?;
        let duration_seconds = header.duration_seconds();
        let track = SourceTrack {
            id: TRACK_ID,
            params,
            time_base: TimeBase::try_from_recip(format.sample_rate),
            duration_seconds,
            gapless: None,
        };
        let stream_tag = format!("{:02}", index % 100).into_bytes();
        let reader = Self {
            walker,
            stream_tag: [stream_tag[0], stream_tag[1]],
            payload,
            chunk: None,
            next_ts: 0,
        };
        Ok((reader, track))
    }

    pub fn next_packet(&mut self) -> io::Result<Option<Packet>> {
        loop {
            if let Payload::MpegAudio { splitter, .. } = &mut self.payload
                && let Some((header, frame)) = splitter.next_frame()
            {
                return Ok(Some(
                    self.packet(frame, u64::from(header.samples_per_frame())),
                ));
            }
            if let Some(chunk) = &self.chunk {
                if chunk.left == 0 {
                    self.close_chunk()?;
                    continue;
                }
                if let Some(packet) = self.read_from_chunk()? {
                    return Ok(Some(packet));
                }
                continue;
            }
            let Some(event) = self.walker.next_event()? else {
                return Ok(None);
            };
            let Event::Chunk { id, size } = event else {
                continue;
            };
            if id[..2] != self.stream_tag || size == 0 {
                self.walker.skip_chunk(size)?;
                continue;
            }
            let present = self.walker.remaining().min(u64::from(size));
            self.chunk = Some(OpenChunk {
                left: present,
                padded: size & 1 == 1,
                truncated: present < u64::from(size),
            });
        }
    }

    /// Reads the next bounded piece of the open chunk: a PCM packet, or bytes for the MPEG
    /// frame splitter (then `None`: the caller looks for whole frames again).
    fn read_from_chunk(&mut self) -> io::Result<Option<Packet>> {
        let chunk = self.chunk.as_mut().expect("a chunk is open");
        match &mut self.payload {
            Payload::Pcm {
                block_align,
                frames_per_packet,
            } => {
                let frames = (chunk.left / *block_align).min(*frames_per_packet);
                if frames == 0 {
                    // A partial frame at the end of the chunk carries no whole sample.
                    self.walker.skip_bytes(chunk.left)?;
                    chunk.left = 0;
                    return Ok(None);
                }
                let len = frames * *block_align;
                let mut data = vec![0u8; usize::try_from(len).expect("at most 64 KiB")];
                self.walker.read_exact(&mut data)?;
                chunk.left -= len;
                Ok(Some(self.packet(data, frames)))
            }
            Payload::MpegAudio { splitter, piece } => {
                let len = chunk.left.min(MPEG_PIECE_BYTES);
                piece.resize(usize::try_from(len).expect("at most 16 KiB"), 0);
                self.walker.read_exact(piece)?;
                chunk.left -= len;
                splitter.push(piece);
                Ok(None)
            }
        }
    }

    /// Steps over the pad byte after a fully read chunk, or reports the file's early end.
    fn close_chunk(&mut self) -> io::Result<()> {
        let chunk = self.chunk.take().expect("a chunk is open");
        if chunk.truncated {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a chunk runs past the end of the file",
            ));
        }
        if chunk.padded {
            self.walker.skip_bytes(1)?;
        }
        Ok(())
    }

    fn packet(&mut self, data: Vec<u8>, frames: u64) -> Packet {
        let pts = Timestamp::new(i64::try_from(self.next_ts).unwrap_or(i64::MAX));
        self.next_ts += frames;
        Packet::new(TRACK_ID, pts, Duration::new(frames), data)
    }
}

/// The `strh` fields we use.
struct StreamHeader {
    kind: [u8; 4],
    scale: u32,
    rate: u32,
    length: u32,
}

impl StreamHeader {
    fn parse(bytes: &[u8]) -> Result<Self, TranscodeError> {
        if bytes.len() < 36 {
            return Err(TranscodeError::corrupt("an AVI stream header is too short"));
        }
        Ok(Self {
            kind: bytes[0..4].try_into().expect("4 bytes"),
            scale: le_u32(bytes, 20),
            rate: le_u32(bytes, 24),
            length: le_u32(bytes, 32),
        })
    }

    fn duration_seconds(&self) -> Option<f64> {
        (self.rate > 0 && self.length > 0)
            .then(|| f64::from(self.length) * f64::from(self.scale) / f64::from(self.rate))
    }
}

/// The `WAVEFORMATEX` (or `WAVEFORMATEXTENSIBLE`) in an audio stream's `strf`.
struct WaveFormat {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits_per_sample: u16,
    channel_mask: Option<u32>,
}

impl WaveFormat {
    fn parse(bytes: &[u8]) -> Result<Self, TranscodeError> {
        if bytes.len() < 14 {
            return Err(TranscodeError::corrupt(
                "an AVI audio format header is too short",
            ));
        }
        let mut format = Self {
            tag: le_u16(bytes, 0),
            channels: le_u16(bytes, 2),
            sample_rate: le_u32(bytes, 4),
            block_align: le_u16(bytes, 12),
            bits_per_sample: if bytes.len() >= 16 {
                le_u16(bytes, 14)
            } else {
                0
            },
            channel_mask: None,
        };
        // The extensible form carries the real format tag in the first bytes of its GUID.
        if format.tag == WAVE_FORMAT_EXTENSIBLE && bytes.len() >= 40 {
            format.channel_mask = Some(le_u32(bytes, 20));
            format.tag = le_u16(bytes, 24);
        }
        Ok(format)
    }

    fn codec_parameters(&self) -> Result<(AudioCodecParameters, Payload), TranscodeError> {
        if self.sample_rate == 0 || self.channels == 0 {
            return Err(TranscodeError::corrupt(
                "the AVI audio format is incomplete",
            ));
        }
        let channels = self
            .channel_mask
            .and_then(Position::from_wave_channel_mask)
            .filter(|p| p.bits().count_ones() == u32::from(self.channels))
            .or_else(|| Position::from_wave_channel_count(u32::from(self.channels)))
            .map(Channels::Positioned)
            .unwrap_or(Channels::Discrete(self.channels));

        let (codec, payload) = match (self.tag, self.bits_per_sample) {
            (WAVE_FORMAT_PCM, 8) => (CODEC_ID_PCM_U8, self.pcm_payload()),
            (WAVE_FORMAT_PCM, 16) => (CODEC_ID_PCM_S16LE, self.pcm_payload()),
            (WAVE_FORMAT_PCM, 24) => (CODEC_ID_PCM_S24LE, self.pcm_payload()),
            (WAVE_FORMAT_PCM, 32) => (CODEC_ID_PCM_S32LE, self.pcm_payload()),
            (WAVE_FORMAT_IEEE_FLOAT, 32) => (CODEC_ID_PCM_F32LE, self.pcm_payload()),
            (WAVE_FORMAT_IEEE_FLOAT, 64) => (CODEC_ID_PCM_F64LE, self.pcm_payload()),
            (WAVE_FORMAT_MPEGLAYER3, _) => (CODEC_ID_MP3, mpeg_payload()),
            (WAVE_FORMAT_MPEG, _) => (CODEC_ID_MP2, mpeg_payload()),
            (tag, _) => {
                return Err(TranscodeError::UnsupportedCodec(wave_format_name(tag)));
            }
        };
        if let Payload::Pcm { block_align: 0, .. } = payload {
            return Err(TranscodeError::corrupt(
                "the AVI audio format is incomplete",
            ));
        }

        let mut params = AudioCodecParameters::new();
        params
            .for_codec(codec)
            .with_sample_rate(self.sample_rate)
            .with_channels(channels);
        if let Payload::Pcm {
            frames_per_packet, ..
        } = payload
        {
            params
                .with_bits_per_sample(u32::from(self.bits_per_sample))
                .with_bits_per_coded_sample(u32::from(self.bits_per_sample))
                .with_max_frames_per_packet(frames_per_packet);
        }
        Ok((params, payload))
    }

    fn pcm_payload(&self) -> Payload {
        let block_align = u64::from(self.block_align);
        Payload::Pcm {
            block_align,
            // At least one frame: a block is at most 65535 bytes, within the byte cap.
            frames_per_packet: (MAX_PCM_PACKET_BYTES / block_align.max(1))
                .clamp(1, MAX_PCM_FRAMES_PER_PACKET),
        }
    }
}

fn mpeg_payload() -> Payload {
    Payload::MpegAudio {
        splitter: FrameSplitter::default(),
        piece: Vec::new(),
    }
}

fn wave_format_name(tag: u16) -> String {
    match tag {
        0x2000 => codec_name(CODEC_ID_AC3),
        0x2001 => codec_name(CODEC_ID_DCA),
        0x00FF | 0x1610 | 0x706D => "AAC (inside AVI)".to_owned(),
        0x0160..=0x0163 => codec_name(CODEC_ID_WMA),
        0x0002 | 0x0011 => "ADPCM (inside AVI)".to_owned(),
        other => format!("with the AVI format tag {other:#06x}"),
    }
}

/// What the RIFF walk meets next.
enum Event {
    EnterList([u8; 4]),
    Chunk { id: [u8; 4], size: u32 },
}

/// Walks RIFF chunks depth-first, descending into the lists that matter for AVI.
struct RiffWalker {
    reader: BufReader<File>,
    position: u64,
    file_len: u64,
    /// End offsets of the lists we are inside, innermost last.
    open_lists: Vec<u64>,
}

impl RiffWalker {
    fn new(file: File) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(0))?;
        Ok(Self {
            reader,
            position: 0,
            file_len,
            open_lists: Vec::new(),
        })
    }

    fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            while self
                .open_lists
                .last()
                .is_some_and(|&end| self.position >= end)
            {
                self.open_lists.pop();
            }
            if self.position + 8 > self.file_len {
                return Ok(None);
            }
            let mut head = [0u8; 8];
            self.reader.read_exact(&mut head)?;
            self.position += 8;
            let id: [u8; 4] = head[..4].try_into().expect("4 bytes");
            let size = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));

            if &id == b"RIFF" || &id == b"LIST" {
                let mut list_type = [0u8; 4];
                self.reader.read_exact(&mut list_type)?;
                self.position += 4;
                // A list too short to hold its own type ends where it is (no going backwards).
                let end = (self.position - 4 + u64::from(size)).max(self.position);
                // Only RIFF forms and the lists holding headers or stream data are entered.
                let descend =
                    &id == b"RIFF" || matches!(&list_type, b"hdrl" | b"strl" | b"movi" | b"rec ");
                if descend {
                    self.open_lists.push(end);
                    return Ok(Some(Event::EnterList(list_type)));
                }
                self.skip_to(end + (end & 1))?;
                continue;
            }
            return Ok(Some(Event::Chunk { id, size }));
        }
    }

    /// Bytes between the current position and the end of the file.
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.position)
    }

    /// Reads the first bytes of a header chunk (at most [`MAX_HEADER_CHUNK_BYTES`]) and steps
    /// over the rest, so a stated size never sizes an allocation.
    fn read_header_chunk(&mut self, size: u32) -> io::Result<Vec<u8>> {
        if u64::from(size) > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a chunk runs past the end of the file",
            ));
        }
        let mut data = vec![0u8; size.min(MAX_HEADER_CHUNK_BYTES) as usize];
        self.read_exact(&mut data)?;
        let rest = u64::from(size) - data.len() as u64 + u64::from(size & 1);
        self.skip_bytes(rest)?;
        Ok(data)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)?;
        self.position += buf.len() as u64;
        Ok(())
    }

    fn skip_bytes(&mut self, count: u64) -> io::Result<()> {
        self.skip_to(self.position + count)
    }

    fn skip_chunk(&mut self, size: u32) -> io::Result<()> {
        let padded = u64::from(size) + u64::from(size & 1);
        self.skip_to(self.position + padded)
    }

    fn skip_to(&mut self, target: u64) -> io::Result<()> {
        let delta = i64::try_from(target - self.position).unwrap_or(i64::MAX);
        self.reader.seek_relative(delta)?;
        self.position = target;
        Ok(())
    }
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(
        bytes[at..at + 2]
            .try_into()
            .expect("bounds checked by caller"),
    )
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(
        bytes[at..at + 4]
            .try_into()
            .expect("bounds checked by caller"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_avi_form() {
        assert!(is_avi(b"RIFF\x10\x00\x00\x00AVI LIST"));
        assert!(!is_avi(b"RIFF\x10\x00\x00\x00WAVEfmt "));
        assert!(!is_avi(b"RIFF"));
    }

    #[test]
    fn extensible_format_uses_the_guid_tag() {
        let mut strf = vec![0u8; 40];
        strf[0..2].copy_from_slice(&WAVE_FORMAT_EXTENSIBLE.to_le_bytes());
        strf[2..4].copy_from_slice(&6u16.to_le_bytes());
        strf[4..8].copy_from_slice(&48_000u32.to_le_bytes());
        strf[12..14].copy_from_slice(&12u16.to_le_bytes());
        strf[14..16].copy_from_slice(&16u16.to_le_bytes());
        strf[20..24].copy_from_slice(&0x3Fu32.to_le_bytes());
        strf[24..26].copy_from_slice(&WAVE_FORMAT_PCM.to_le_bytes());
        let format = WaveFormat::parse(&strf).unwrap();
        let (params, _) = format.codec_parameters().unwrap();
        assert_eq!(params.codec, CODEC_ID_PCM_S16LE);
        assert_eq!(params.channels.unwrap().count(), 6);
    }

    #[test]
    fn ac3_in_avi_is_reported_as_unsupported() {
        let mut strf = vec![0u8; 18];
        strf[0..2].copy_from_slice(&0x2000u16.to_le_bytes());
        strf[2..4].copy_from_slice(&2u16.to_le_bytes());
        strf[4..8].copy_from_slice(&48_000u32.to_le_bytes());
        let error = WaveFormat::parse(&strf)
            .unwrap()
            .codec_parameters()
            .err()
            .unwrap();
        assert!(error.to_string().contains("AC-3"), "{error}");
    }
}
