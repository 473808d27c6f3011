//! End-to-end checks of `transcode` on the committed fixtures (see `fixtures/generate.sh`).
//!
//! Every output is decoded back with symphonia: it must be MP3, with the expected sample rate
//! and channels, audible on every channel, and as long as the source audio.
//!
//! Duration tolerance: 1 % of the source. Some containers do not tell the decoder to trim the
//! encoder's priming and padding (AAC in MP4/MOV, MP3 in AVI or MP4), so the decoded source is
//! itself up to two codec frames longer than the tone that was encoded; for those the allowance
//! is 1 % plus two codec frames (2 × 1024 samples for AAC, 2 × 1152 for MP3).

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::Quality;
use converter::{Limits, TranscodeError, TranscodeOptions, TranscodeReport, transcode};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::audio::well_known::CODEC_ID_MP3;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, StandardTag};

const TITLE: &str = "Test tone";

fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(
        path.exists(),
        "missing fixture {name}: run tests/fixtures/generate.sh"
    );
    path
}

fn convert(
    name: &str,
    options: &TranscodeOptions,
) -> Result<(TranscodeReport, Vec<u8>), TranscodeError> {
    convert_file(&fixture(name), options)
}

fn convert_file(
    path: &Path,
    options: &TranscodeOptions,
) -> Result<(TranscodeReport, Vec<u8>), TranscodeError> {
    let input = File::open(path).expect("open input");
    let mut output = tempfile::tempfile().expect("temp file");
    let report = transcode(input, &mut output, options, &mut |_| {})?;
    let bytes = std::fs::read(format!("/proc/self/fd/{}", raw_fd(&output))).expect("read output");
    Ok((report, bytes))
}

fn raw_fd(file: &File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

fn options(quality: Option<Quality>) -> TranscodeOptions {
    TranscodeOptions {
        quality,
        title: Some(TITLE.to_owned()),
        ..TranscodeOptions::default()
    }
}

fn open_mp3(bytes: &[u8]) -> Box<dyn FormatReader> {
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .expect("output is readable media")
}

/// What decoding an output MP3 from start to end gives.
struct DecodedMp3 {
    sample_rate: u32,
    channels: usize,
    seconds: f64,
    rms_per_channel: Vec<f64>,
    title: Option<String>,
    frame_bytes: Vec<u8>,
}

fn decode_mp3(bytes: &[u8]) -> DecodedMp3 {
    let mut reader = open_mp3(bytes);
    assert_eq!(
        reader.format_info().short_name,
        "mp3",
        "output is not an MP3 stream"
    );
    let title = reader.metadata().skip_to_latest().and_then(|revision| {
        revision.media.tags.iter().find_map(|tag| match &tag.std {
            Some(StandardTag::TrackTitle(title)) => Some(title.to_string()),
            _ => None,
        })
    });
    let track = reader
        .default_track(TrackType::Audio)
        .expect("audio track")
        .clone();
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        panic!("no audio parameters");
    };
    assert_eq!(params.codec, CODEC_ID_MP3);
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .expect("MP3 decoder");

    let mut frames = 0usize;
    let mut sample_rate = 0;
    let mut sums: Vec<f64> = Vec::new();
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut frame_bytes = Vec::new();
    while let Some(packet) = reader.next_packet().expect("read MP3 packet") {
        frame_bytes.extend_from_slice(&packet.data);
        let buffer = decoder.decode(&packet).expect("every MP3 frame decodes");
        sample_rate = buffer.spec().rate();
        buffer.copy_to_vecs_planar::<f32>(&mut planes);
        sums.resize(planes.len(), 0.0);
        for (sum, plane) in sums.iter_mut().zip(&planes) {
            *sum += plane.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        }
        frames += buffer.frames();
    }
    assert!(frames > 0, "the MP3 holds no audio");
    DecodedMp3 {
        sample_rate,
        channels: sums.len(),
        seconds: frames as f64 / f64::from(sample_rate),
        rms_per_channel: sums
            .iter()
            .map(|sum| (sum / frames as f64).sqrt())
            .collect(),
        title,
        frame_bytes,
    }
}

/// A fixture and what its MP3 must look like.
struct Case {
    file: &'static str,
    seconds: f64,
    mp3_rate: u32,
    channels: usize,
    passthrough: bool,
    /// Samples of untrimmed priming/padding allowed (see the module docs).
    untrimmed: u32,
}

const AAC_UNTRIMMED: u32 = 2 * 1024;
const MP3_UNTRIMMED: u32 = 2 * 1152;

fn check(case: &Case, quality: Option<Quality>) {
    let (report, bytes) = convert(case.file, &options(quality))
        .unwrap_or_else(|error| panic!("{}: {error}", case.file));
    let decoded = decode_mp3(&bytes);
    let name = case.file;

    assert_eq!(report.passthrough, case.passthrough, "{name}: passthrough");
    assert_eq!(
        decoded.sample_rate, case.mp3_rate,
        "{name}: MP3 sample rate"
    );
    assert_eq!(
        report.sample_rate, case.mp3_rate,
        "{name}: reported sample rate"
    );
    assert_eq!(decoded.channels, case.channels, "{name}: channels");
    assert_eq!(
        usize::from(report.channels),
        case.channels,
        "{name}: reported channels"
    );
    assert_eq!(
        report.bytes_written,
        bytes.len() as u64,
        "{name}: bytes written"
    );
    assert_eq!(decoded.title.as_deref(), Some(TITLE), "{name}: ID3 title");

    let within = |actual: f64, expected: f64, extra: f64| {
        actual >= expected * 0.99 && actual <= expected * 1.01 + extra
    };
    // The MP3 plays exactly what was fed to the encoder (the LAME tag trims its padding).
    assert!(
        within(decoded.seconds, report.duration_seconds, 0.0),
        "{name}: MP3 plays {:.4} s, report says {:.4} s",
        decoded.seconds,
        report.duration_seconds
    );
    // And that is the source's length, give or take untrimmed codec priming.
    let source_rate = report.sample_rate.max(1);
    let allowance = f64::from(case.untrimmed) / f64::from(source_rate.min(case.mp3_rate));
    assert!(
        within(decoded.seconds, case.seconds, allowance),
        "{name}: MP3 plays {:.4} s, source is {:.4} s (+{allowance:.3} s allowed)",
        decoded.seconds,
        case.seconds
    );
    for (channel, rms) in decoded.rms_per_channel.iter().enumerate() {
        assert!(
            *rms > 0.05,
            "{name}: channel {channel} is near silent (RMS {rms:.4})"
        );
    }
    assert!(report.bitrate_kbps > 0, "{name}: bitrate");
}

macro_rules! format_tests {
    ($($test:ident: $file:literal, $seconds:expr, $rate:expr, $channels:expr, $passthrough:expr, $untrimmed:expr;)*) => {$(
        #[test]
        fn $test() {
            check(
                &Case {
                    file: $file,
                    seconds: $seconds,
                    mp3_rate: $rate,
                    channels: $channels,
                    passthrough: $passthrough,
                    untrimmed: $untrimmed,
                },
                None,
            );
        }
    )*};
}

format_tests! {
    mp4_aac_with_index_at_start: "mp4_aac_moov_start.mp4", 2.0, 44_100, 2, false, AAC_UNTRIMMED;
    mp4_aac_with_index_at_end: "mp4_aac_moov_end.mp4", 2.0, 44_100, 2, false, AAC_UNTRIMMED;
    fragmented_mp4_aac: "mp4_aac_fragmented.mp4", 2.0, 48_000, 2, false, AAC_UNTRIMMED;
    mov_aac_mono_32k: "mov_aac_mono.mov", 2.0, 32_000, 1, false, AAC_UNTRIMMED;
    m4a_alac: "m4a_alac.m4a", 1.0, 22_050, 2, false, 0;
    mkv_flac_5_1_is_folded_to_stereo: "mkv_flac_5_1.mkv", 1.0, 16_000, 2, false, 0;
    mkv_opus: "mkv_opus.mkv", 2.0, 48_000, 2, false, 0;
    webm_opus: "webm_opus.webm", 2.0, 48_000, 2, false, 0;
    webm_vorbis: "webm_vorbis.webm", 2.0, 44_100, 2, false, 0;
    avi_pcm_mono: "avi_pcm_mono.avi", 1.0, 22_050, 1, false, 0;
    wav_pcm: "wav_pcm_s16.wav", 1.0, 22_050, 2, false, 0;
    wav_5_1_at_8k_is_folded_to_stereo: "wav_5_1_8k.wav", 1.0, 8_000, 2, false, 0;
    wav_8k_mono: "wav_8k_mono.wav", 2.0, 8_000, 1, false, 0;
    flac_11k: "flac_11k.flac", 2.0, 11_025, 2, false, 0;
    flac_96k_is_resampled_to_48k: "flac_96k_mono.flac", 1.0, 48_000, 1, false, 0;
    ogg_vorbis: "ogg_vorbis.ogg", 2.0, 44_100, 2, false, 0;
    ogg_opus: "ogg_opus.opus", 2.0, 48_000, 2, false, 0;
    mp3_is_passed_through: "mp3_vbr.mp3", 2.0, 44_100, 2, true, 0;
    mp3_in_mp4_is_passed_through: "mp4_mp3.mp4", 2.0, 44_100, 2, true, MP3_UNTRIMMED;
    mp3_in_avi_is_passed_through: "avi_mp3.avi", 2.0, 44_100, 2, true, MP3_UNTRIMMED;
}

#[test]
fn mp3_sources_are_reencoded_when_a_quality_is_requested() {
    for (file, untrimmed) in [
        ("mp3_vbr.mp3", 0),
        ("mp4_mp3.mp4", MP3_UNTRIMMED),
        ("avi_mp3.avi", MP3_UNTRIMMED),
    ] {
        let case = Case {
            file,
            seconds: 2.0,
            mp3_rate: 44_100,
            channels: 2,
            passthrough: false,
            untrimmed,
        };
        check(&case, Some(Quality::Vbr { level: 5 }));
    }
}

#[test]
fn passthrough_copies_the_source_frames_byte_for_byte() {
    for file in ["mp3_vbr.mp3", "mp4_mp3.mp4"] {
        let source = std::fs::read(fixture(file)).unwrap();
        let mut reader = match file.ends_with(".mp3") {
            true => open_mp3(&source),
            false => {
                let stream =
                    MediaSourceStream::new(Box::new(Cursor::new(source)), Default::default());
                symphonia::default::get_probe()
                    .probe(
                        &Hint::new(),
                        stream,
                        FormatOptions::default(),
                        MetadataOptions::default(),
                    )
                    .unwrap()
            }
        };
        let track_id = reader.default_track(TrackType::Audio).unwrap().id;
        let mut source_frames = Vec::new();
        while let Some(packet) = reader.next_packet().unwrap() {
            if packet.track_id == track_id {
                source_frames.extend_from_slice(&packet.data);
            }
        }

        let (report, bytes) = convert(file, &options(None)).unwrap();
        assert!(report.passthrough, "{file}");
        let decoded = decode_mp3(&bytes);
        assert_eq!(
            decoded.frame_bytes.len(),
            source_frames.len(),
            "{file}: frame bytes"
        );
        assert!(
            decoded.frame_bytes == source_frames,
            "{file}: frames differ from the source"
        );
    }
}

#[test]
fn passthrough_keeps_the_sources_gapless_length() {
    let (report, bytes) = convert("mp3_vbr.mp3", &options(None)).unwrap();
    let decoded = decode_mp3(&bytes);
    assert!(
        (decoded.seconds - 2.0).abs() < 0.005,
        "plays {:.4} s",
        decoded.seconds
    );
    assert!(
        (report.duration_seconds - 2.0).abs() < 0.005,
        "report {:.4} s",
        report.duration_seconds
    );
}

#[test]
fn vbr_quality_levels_change_the_bitrate() {
    let bitrate = |level| {
        let (report, bytes) =
            convert("webm_vorbis.webm", &options(Some(Quality::Vbr { level }))).unwrap();
        decode_mp3(&bytes);
        report.bitrate_kbps
    };
    let (v0, v5, v9) = (bitrate(0), bitrate(5), bitrate(9));
    assert!(
        v0 > v5 && v5 > v9,
        "V0 {v0} kbps, V5 {v5} kbps, V9 {v9} kbps"
    );
}

#[test]
fn cbr_gives_the_requested_bitrate() {
    for kbps in [64u16, 128, 320] {
        let (report, bytes) =
            convert("ogg_vorbis.ogg", &options(Some(Quality::Cbr { kbps }))).unwrap();
        let decoded = decode_mp3(&bytes);
        let audio_bits = decoded.frame_bytes.len() as f64 * 8.0;
        let measured = audio_bits / decoded.seconds / 1000.0;
        // The encoder's padding frame at the end makes the average slightly above nominal.
        let low = f64::from(kbps) * 0.98;
        let high = f64::from(kbps) * 1.06;
        assert!(
            (low..=high).contains(&measured),
            "CBR {kbps}: measured {measured:.1} kbps"
        );
        assert!(
            (low..=high).contains(&f64::from(report.bitrate_kbps)),
            "CBR {kbps}: reported {} kbps",
            report.bitrate_kbps
        );
    }
}

#[test]
fn default_quality_is_v2() {
    let (default_report, _) = convert("ogg_vorbis.ogg", &options(None)).unwrap();
    let (v2_report, _) =
        convert("ogg_vorbis.ogg", &options(Some(Quality::Vbr { level: 2 }))).unwrap();
    assert_eq!(default_report, v2_report);
}

#[test]
fn no_title_means_no_tag_and_non_latin_titles_survive() {
    let untitled = TranscodeOptions {
        quality: None,
        title: None,
        ..TranscodeOptions::default()
    };
    let (_, bytes) = convert("wav_pcm_s16.wav", &untitled).unwrap();
    assert_ne!(&bytes[..3], b"ID3");
    assert_eq!(decode_mp3(&bytes).title, None);

    let titled = TranscodeOptions {
        quality: None,
        title: Some("Праздник 日本".to_owned()),
        ..TranscodeOptions::default()
    };
    let (_, bytes) = convert("wav_pcm_s16.wav", &titled).unwrap();
    assert_eq!(decode_mp3(&bytes).title.as_deref(), Some("Праздник 日本"));
}

#[test]
fn progress_rises_to_100() {
    let input = File::open(fixture("mp4_aac_moov_start.mp4")).unwrap();
    let mut output = Cursor::new(Vec::new());
    let mut seen = Vec::new();
    transcode(input, &mut output, &options(None), &mut |percent| {
        seen.push(percent)
    })
    .unwrap();
    assert_eq!(seen.first(), Some(&0));
    assert_eq!(seen.last(), Some(&100));
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    assert!(seen.len() > 10, "too few progress steps: {seen:?}");
}

fn expect_error(file: &str) -> TranscodeError {
    let error = convert(file, &options(None))
        .err()
        .unwrap_or_else(|| panic!("{file} converted"));
    assert!(error.is_permanent(), "{file}: {error} should be permanent");
    error
}

#[test]
fn video_without_audio_is_reported() {
    let error = expect_error("bad_no_audio.mp4");
    assert!(matches!(error, TranscodeError::NoAudioTrack), "{error:?}");
    assert_eq!(error.to_string(), "the file has no audio track");
}

#[test]
fn empty_file_is_reported() {
    let error = expect_error("bad_empty.bin");
    assert!(matches!(error, TranscodeError::EmptyFile), "{error:?}");
    assert_eq!(error.to_string(), "the file is empty");
}

#[test]
fn random_bytes_are_not_media() {
    let error = expect_error("bad_random.bin");
    assert!(matches!(error, TranscodeError::NotMedia), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the file is not a recognised audio or video format"
    );
}

#[test]
fn truncated_mp4_without_its_index_is_corrupt() {
    let error = expect_error("bad_truncated_no_index.mp4");
    assert!(matches!(error, TranscodeError::Corrupt(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("the file is corrupt or truncated: "),
        "{error}"
    );
}

#[test]
fn truncated_mp4_data_is_corrupt() {
    let error = expect_error("bad_truncated_data.mp4");
    assert!(matches!(error, TranscodeError::Corrupt(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("the file is corrupt or truncated: "),
        "{error}"
    );
}

#[test]
fn ac3_is_an_unsupported_codec() {
    let error = expect_error("bad_ac3.mkv");
    assert!(
        matches!(error, TranscodeError::UnsupportedCodec(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the audio codec AC-3 (Dolby Digital) is not supported"
    );
}

#[test]
fn surround_aac_is_an_unsupported_codec_variant() {
    let error = expect_error("bad_aac_5_1.mp4");
    assert!(
        matches!(error, TranscodeError::UnsupportedCodec(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the audio codec AAC with 6 channels is not supported"
    );
}

fn with_limits(quality: Option<Quality>, limits: Limits) -> TranscodeOptions {
    TranscodeOptions {
        limits,
        ..options(quality)
    }
}

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Offset of the audio stream's `strh` chunk in an AVI file.
fn audio_strh(avi: &[u8]) -> usize {
    (0..avi.len() - 12)
        .find(|&i| &avi[i..i + 4] == b"strh" && &avi[i + 8..i + 12] == b"auds")
        .expect("an audio stream header")
}

#[test]
fn audio_stated_longer_than_the_limit_fails_at_once_naming_it() {
    let limits = Limits {
        max_audio_duration: seconds(1),
        ..Limits::default()
    };
    // PCM decoded and encoded, and MP3 frames copied.
    for (file, quality) in [
        ("wav_8k_mono.wav", None),
        ("mp4_aac_moov_end.mp4", Some(Quality::Cbr { kbps: 128 })),
        ("mp3_vbr.mp3", None),
    ] {
        let mut percents = Vec::new();
        let input = File::open(fixture(file)).unwrap();
        let mut output = tempfile::tempfile().unwrap();
        let error = transcode(
            input,
            &mut output,
            &with_limits(quality, limits),
            &mut |p| percents.push(p),
        )
        .expect_err(file);
        assert!(
            matches!(error, TranscodeError::AudioTooLong(_)),
            "{file}: {error:?}"
        );
        assert!(error.is_permanent());
        assert_eq!(error.to_string(), "the audio is longer than the 1 s limit");
        assert!(
            percents.is_empty(),
            "{file}: refused before any work: {percents:?}"
        );
    }
}

#[test]
fn audio_decoded_longer_than_the_limit_stops_the_conversion_naming_it() {
    // The same AVI without its stated length: the limit is met while decoding.
    let mut avi = std::fs::read(fixture("avi_pcm_mono.avi")).unwrap();
    let length_at = audio_strh(&avi) + 8 + 32;
    avi[length_at..length_at + 4].fill(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-length.avi");
    std::fs::write(&path, &avi).unwrap();
    convert_file(&path, &options(None)).expect("converts without a limit");

    let limits = Limits {
        max_audio_duration: Duration::from_millis(500),
        ..Limits::default()
    };
    let error = convert_file(&path, &with_limits(None, limits)).expect_err("limit passed");
    assert!(
        matches!(error, TranscodeError::AudioTooLong(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the audio is longer than the 0.5 s limit"
    );

    // MP3 frames copied: counted from the frames themselves.
    let mut avi = std::fs::read(fixture("avi_mp3.avi")).unwrap();
    let length_at = audio_strh(&avi) + 8 + 32;
    avi[length_at..length_at + 4].fill(0);
    let path = dir.path().join("mp3-no-length.avi");
    std::fs::write(&path, &avi).unwrap();
    let limits = Limits {
        max_audio_duration: seconds(1),
        ..Limits::default()
    };
    let error = convert_file(&path, &with_limits(None, limits)).expect_err("limit passed");
    assert!(
        matches!(error, TranscodeError::AudioTooLong(_)),
        "{error:?}"
    );
}

#[test]
fn an_mp3_larger_than_the_limit_stops_the_conversion_naming_it() {
    let limits = Limits {
        max_mp3_bytes: 8 * 1024,
        ..Limits::default()
    };
    for (file, quality) in [
        ("wav_pcm_s16.wav", Some(Quality::Cbr { kbps: 320 })),
        ("mp3_vbr.mp3", None),
    ] {
        let error = convert(file, &with_limits(quality, limits)).expect_err(file);
        assert!(
            matches!(error, TranscodeError::Mp3TooLarge(_)),
            "{file}: {error:?}"
        );
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            "the MP3 would be larger than the 8 KiB limit"
        );
    }
    let generous = Limits {
        max_mp3_bytes: 1024 * 1024,
        ..Limits::default()
    };
    convert(
        "wav_pcm_s16.wav",
        &with_limits(Some(Quality::Cbr { kbps: 320 }), generous),
    )
    .expect("within the limit");
}

#[test]
fn a_conversion_past_its_deadline_stops_naming_it() {
    let limits = Limits {
        deadline: Duration::from_nanos(1),
        ..Limits::default()
    };
    for file in ["mp4_aac_moov_end.mp4", "mp3_vbr.mp3"] {
        let error = convert(file, &with_limits(None, limits)).expect_err(file);
        assert!(
            matches!(error, TranscodeError::DeadlineExceeded(_)),
            "{file}: {error:?}"
        );
        assert!(error.is_permanent());
        assert!(
            error
                .to_string()
                .starts_with("converting it took longer than the")
        );
    }
}

/// A mono 16-bit WAV of `frames` frames of a tone at `rate`.
fn wav(rate: u32, frames: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..frames)
        .flat_map(|i| (((i % 16) as i16 - 8) * 2000).to_le_bytes())
        .collect();
    let mut bytes = b"RIFF".to_vec();
    bytes.extend((36 + data.len() as u32).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend(16u32.to_le_bytes());
    bytes.extend(1u16.to_le_bytes()); // PCM
    bytes.extend(1u16.to_le_bytes()); // mono
    bytes.extend(rate.to_le_bytes());
    bytes.extend((rate * 2).to_le_bytes());
    bytes.extend(2u16.to_le_bytes());
    bytes.extend(16u16.to_le_bytes());
    bytes.extend(b"data");
    bytes.extend((data.len() as u32).to_le_bytes());
    bytes.extend(data);
    bytes
}

#[test]
fn a_sample_rate_lame_is_not_given_fails_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [1_000, 1_000_000] {
        let path = dir.path().join(format!("{rate}.wav"));
        std::fs::write(&path, wav(rate, 2_000)).unwrap();
        let error = convert_file(&path, &options(None)).expect_err("odd rate");
        assert!(
            matches!(error, TranscodeError::UnsupportedSampleRate(r) if r == rate),
            "{rate}: {error:?}"
        );
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            format!("its audio sample rate of {rate} Hz is not supported")
        );
    }
    let path = dir.path().join("4k.wav");
    std::fs::write(&path, wav(4_000, 8_000)).unwrap();
    let (report, _) = convert_file(&path, &options(None)).expect("4 kHz converts");
    assert_eq!(
        report.sample_rate, 8_000,
        "LAME upsamples to MP3's lowest rate"
    );
}

#[test]
fn an_avi_cut_inside_its_headers_is_corrupt_not_a_transient_io_error() {
    let avi = std::fs::read(fixture("avi_pcm_mono.avi")).unwrap();
    let cut = audio_strh(&avi) + 8 + 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.avi");
    std::fs::write(&path, &avi[..cut]).unwrap();
    let error = convert_file(&path, &options(None)).expect_err("cut short");
    assert!(matches!(error, TranscodeError::Corrupt(_)), "{error:?}");
    assert!(error.is_permanent());
}

/// An EBML element: `id` (with its length marker), an 8-byte size, then `body`.
fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut element = id.to_vec();
    element.push(0x01);
    element.extend(&(body.len() as u64).to_be_bytes()[1..]);
    element.extend(body);
    element
}

/// A Matroska file of 16-bit stereo PCM at 48 kHz in one SimpleBlock of `mib` MiB of silence.
fn mkv_with_one_block(path: &Path, mib: u64) {
    let header = ebml(
        &[0x1A, 0x45, 0xDF, 0xA3],
        &[
            ebml(&[0x42, 0x86], &[1]),
            ebml(&[0x42, 0xF7], &[1]),
            ebml(&[0x42, 0xF2], &[4]),
            ebml(&[0x42, 0xF3], &[8]),
            ebml(&[0x42, 0x82], b"matroska"),
            ebml(&[0x42, 0x87], &[4]),
            ebml(&[0x42, 0x85], &[2]),
        ]
        .concat(),
    );
    let audio = ebml(
        &[0xE1],
        &[
            ebml(&[0xB5], &48_000f64.to_be_bytes()),
            ebml(&[0x9F], &[2]),
            ebml(&[0x62, 0x64], &[16]),
        ]
        .concat(),
    );
    let track = ebml(
        &[0xAE],
        &[
            ebml(&[0xD7], &[1]),
            ebml(&[0x73, 0xC5], &[1]),
            ebml(&[0x83], &[2]),
            ebml(&[0x86], b"A_PCM/INT/LIT"),
            audio,
        ]
        .concat(),
    );
    let info = ebml(
        &[0x15, 0x49, 0xA9, 0x66],
        &[
            ebml(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
            ebml(&[0x4D, 0x80], b"test"),
            ebml(&[0x57, 0x41], b"test"),
        ]
        .concat(),
    );
    let tracks = ebml(&[0x16, 0x54, 0xAE, 0x6B], &track);
    let block_len: u64 = mib * 1024 * 1024;
    let block_head = [0x81, 0, 0, 0x80]; // track 1, timecode 0, keyframe
    let mut simple_block = vec![0xA3, 0x01];
    simple_block.extend(&(block_len + 4).to_be_bytes()[1..]);
    simple_block.extend(block_head);
    let timestamp = ebml(&[0xE7], &[0]);
    let cluster_body_len = (timestamp.len() + simple_block.len()) as u64 + block_len;
    let mut cluster = vec![0x1F, 0x43, 0xB6, 0x75, 0x01];
    cluster.extend(&cluster_body_len.to_be_bytes()[1..]);
    cluster.extend(timestamp);
    cluster.extend(simple_block);
    let segment_body_len = (info.len() + tracks.len() + cluster.len()) as u64 + block_len;
    let mut segment = vec![0x18, 0x53, 0x80, 0x67, 0x01];
    segment.extend(&segment_body_len.to_be_bytes()[1..]);

    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    use std::io::Write;
    for part in [&header, &segment, &info, &tracks, &cluster] {
        out.write_all(part).unwrap();
    }
    let silence = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        out.write_all(&silence).unwrap();
    }
    out.flush().unwrap();
    drop(out);
}

#[test]
fn a_packet_larger_than_any_codec_makes_is_refused_before_it_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block.mkv");
    mkv_with_one_block(&path, 1);
    let (report, _) = convert_file(&path, &options(None)).expect("a 1 MiB block converts");
    assert!((report.duration_seconds - 5.46).abs() < 0.01, "{report:?}");

    // Symphonia reads a block whole; decoded, 17 MiB of PCM would take 34 MiB of samples more.
    mkv_with_one_block(&path, 17);
    let error = convert_file(&path, &options(None)).expect_err("refused");
    assert!(matches!(error, TranscodeError::Corrupt(_)), "{error:?}");
    assert!(error.is_permanent());
    assert!(
        error
            .to_string()
            .contains("a block of audio data of 17 MiB"),
        "{error}"
    );
}
