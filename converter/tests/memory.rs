//! Memory stays bounded whatever lengths the input declares: `converter convert` is run as a
//! child process on large inputs built here (streamed to a temp dir, never held in memory), and
//! its peak resident set, as the kernel reports it to the parent (`wait4`), must stay far below
//! the size of the single chunk holding the audio.
//!
//! The sizes are chosen to keep a debug build within seconds while the chunk is many times the
//! threshold: a reader that loads the chunk whole (as the AVI reader once did, peaking at
//! 1.56 GB on a 300 MiB file) fails at once. `reliability/memory.py` (also a section of
//! `reliability/run.sh`) measures the full-size figures, a 300 MiB AVI and a 2 GiB WAV, with
//! the release build.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

/// Peak RSS allowed to the converter, whatever the input's size.
const MAX_PEAK_RSS_BYTES: u64 = 48 * 1024 * 1024;
/// The one audio chunk of the PCM inputs: three times the threshold, so reading it whole (or
/// copying it once) cannot pass.
const PCM_CHUNK_BYTES: u64 = 144 * 1024 * 1024;
/// The one chunk of MP3 frames: copied without re-encoding, so it can be larger for free.
const MP3_CHUNK_BYTES: u64 = 256 * 1024 * 1024;

/// 32-bit float stereo at 192 kHz: the most bytes per second of audio a common format gives,
/// so the encoder (the slow part in a debug build) has the least audio to encode.
const RATE: u32 = 192_000;
const CHANNELS: u16 = 2;
const BITS: u16 = 32;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;

/// Runs `converter convert input output`, returning its peak RSS in bytes and its stdout.
// The child is reaped by `wait4` below (for its resource usage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn convert_measuring_peak_rss(input: &Path, output: &Path) -> (u64, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_converter"))
        .arg("convert")
        .arg(input)
        .arg(output)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("converter starts");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped stdout");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).expect("stdout read");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not waited for yet; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "converter convert failed (status {status}): {printed}"
    );
    // Linux reports ru_maxrss in kilobytes.
    (usage.ru_maxrss as u64 * 1024, printed)
}

/// A 16-byte little-endian `WAVEFORMATEX` without the extra-size field.
fn wave_format() -> Vec<u8> {
    let block_align = CHANNELS * BITS / 8;
    let mut format = Vec::new();
    format.extend(WAVE_FORMAT_IEEE_FLOAT.to_le_bytes());
    format.extend(CHANNELS.to_le_bytes());
    format.extend(RATE.to_le_bytes());
    format.extend((RATE * u32::from(block_align)).to_le_bytes());
    format.extend(block_align.to_le_bytes());
    format.extend(BITS.to_le_bytes());
    format
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut bytes = id.to_vec();
    bytes.extend((body.len() as u32).to_le_bytes());
    bytes.extend(body);
    bytes
}

fn list(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    chunk(b"LIST", &[&kind[..], body].concat())
}

/// Writes `len` bytes of a 440 Hz tone as stereo f32 samples, 1 MiB at a time.
fn write_tone(out: &mut impl Write, len: u64) {
    let frames_per_piece = 1024 * 1024 / 8;
    let mut phase = 0u64;
    let mut piece = Vec::with_capacity(1024 * 1024);
    let mut left = len;
    while left > 0 {
        piece.clear();
        for _ in 0..frames_per_piece {
            let t = phase as f64 / f64::from(RATE);
            let sample = (0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as f32;
            piece.extend(sample.to_le_bytes());
            piece.extend(sample.to_le_bytes());
            phase = (phase + 1) % u64::from(RATE);
        }
        let take = left.min(piece.len() as u64) as usize;
        out.write_all(&piece[..take]).expect("write tone");
        left -= take as u64;
    }
}

/// An AVI whose audio stream (stream 0) is one chunk of `len` bytes, written by `write_audio`,
/// with `format` as its `strf` and `strh` scale/rate/length giving `frames` at `rate`.
fn write_avi(
    path: &Path,
    format: &[u8],
    rate: u32,
    frames: u32,
    len: u64,
    write_audio: impl FnOnce(&mut BufWriter<File>),
) {
    let mut avih = vec![0u8; 56];
    avih[24..28].copy_from_slice(&1u32.to_le_bytes()); // one stream
    let mut strh = vec![0u8; 56];
    strh[0..4].copy_from_slice(b"auds");
    strh[20..24].copy_from_slice(&1u32.to_le_bytes()); // scale
    strh[24..28].copy_from_slice(&rate.to_le_bytes()); // rate
    strh[32..36].copy_from_slice(&frames.to_le_bytes()); // length
    let strl = list(
        b"strl",
        &[chunk(b"strh", &strh), chunk(b"strf", format)].concat(),
    );
    let hdrl = list(b"hdrl", &[chunk(b"avih", &avih), strl].concat());

    let padded = len + (len & 1);
    let movi_len = 4 + 8 + padded;
    let riff_len = 4 + hdrl.len() as u64 + 8 + movi_len;
    let mut out = BufWriter::new(File::create(path).expect("create AVI"));
    out.write_all(b"RIFF").unwrap();
    out.write_all(&(riff_len as u32).to_le_bytes()).unwrap();
    out.write_all(b"AVI ").unwrap();
    out.write_all(&hdrl).unwrap();
    out.write_all(b"LIST").unwrap();
    out.write_all(&(movi_len as u32).to_le_bytes()).unwrap();
    out.write_all(b"movi00wb").unwrap();
    out.write_all(&(len as u32).to_le_bytes()).unwrap();
    write_audio(&mut out);
    if len & 1 == 1 {
        out.write_all(&[0]).unwrap();
    }
    out.flush().unwrap();
}

fn assert_bounded(peak: u64, input_chunk: u64, printed: &str) {
    eprintln!(
        "peak RSS {:.1} MiB for a {} MiB chunk: {printed}",
        peak as f64 / 1048576.0,
        input_chunk >> 20
    );
    assert!(
        peak < MAX_PEAK_RSS_BYTES,
        "peak RSS {peak} bytes is above {MAX_PEAK_RSS_BYTES} for a {input_chunk}-byte chunk"
    );
}

#[test]
fn an_avi_with_all_its_pcm_in_one_chunk_converts_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("one-chunk.avi");
    let frames = PCM_CHUNK_BYTES / u64::from(CHANNELS * BITS / 8);
    write_avi(
        &input,
        &wave_format(),
        RATE,
        frames as u32,
        PCM_CHUNK_BYTES,
        |out| write_tone(out, PCM_CHUNK_BYTES),
    );
    let output = dir.path().join("out.mp3");
    let (peak, printed) = convert_measuring_peak_rss(&input, &output);
    let expected_seconds = frames as f64 / f64::from(RATE);
    assert!(
        printed.contains(&format!("duration {expected_seconds:.2} s")),
        "{printed}"
    );
    assert_bounded(peak, PCM_CHUNK_BYTES, &printed);
}

#[test]
fn an_avi_with_all_its_mp3_frames_in_one_chunk_is_copied_in_bounded_memory() {
    // MPEG-1 Layer III, 128 kbps, 44.1 kHz, joint stereo: 417 bytes with its padding bit clear.
    // All-zero side information decodes to silence; the frames are copied, not decoded.
    const HEADER: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];
    const FRAME_LEN: u64 = 417;
    let frame_count = MP3_CHUNK_BYTES / FRAME_LEN;
    let len = frame_count * FRAME_LEN;
    let mut format = vec![0u8; 30];
    format[0..2].copy_from_slice(&0x0055u16.to_le_bytes()); // WAVE_FORMAT_MPEGLAYER3
    format[2..4].copy_from_slice(&2u16.to_le_bytes());
    format[4..8].copy_from_slice(&44_100u32.to_le_bytes());
    format[12..14].copy_from_slice(&1u16.to_le_bytes());

    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("one-mp3-chunk.avi");
    write_avi(
        &input,
        &format,
        44_100,
        (frame_count * 1152) as u32,
        len,
        |out| {
            let mut frame = vec![0u8; FRAME_LEN as usize];
            frame[..4].copy_from_slice(&HEADER);
            let piece = frame.repeat(2048);
            let mut left = frame_count;
            while left > 0 {
                let take = left.min(2048);
                out.write_all(&piece[..(take * FRAME_LEN) as usize])
                    .unwrap();
                left -= take;
            }
        },
    );
    let output = dir.path().join("out.mp3");
    let (peak, printed) = convert_measuring_peak_rss(&input, &output);
    assert!(printed.contains("MP3 frames copied"), "{printed}");
    assert!(
        std::fs::metadata(&output).unwrap().len() > len,
        "every frame is copied"
    );
    assert_bounded(peak, len, &printed);
}

#[test]
fn a_large_wav_converts_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("large.wav");
    let len = PCM_CHUNK_BYTES;
    let format = wave_format();
    let mut out = BufWriter::new(File::create(&input).expect("create WAV"));
    out.write_all(b"RIFF").unwrap();
    out.write_all(&((4 + 8 + format.len() as u64 + 8 + len) as u32).to_le_bytes())
        .unwrap();
    out.write_all(b"WAVE").unwrap();
    out.write_all(&chunk(b"fmt ", &format)).unwrap();
    out.write_all(b"data").unwrap();
    out.write_all(&(len as u32).to_le_bytes()).unwrap();
    write_tone(&mut out, len);
    out.flush().unwrap();
    drop(out);

    let output = dir.path().join("out.mp3");
    let (peak, printed) = convert_measuring_peak_rss(&input, &output);
    assert_bounded(peak, len, &printed);
}
