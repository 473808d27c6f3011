//! Fuzzes `converter::transcode`, the demux/decode/encode entry point the worker calls on every
//! uploaded file: the fuzz input becomes a temp file (the worker spills uploads to a temp file
//! too) and is converted into an in-memory MP3. Any outcome but a panic, an abort, a hang or an
//! unbounded allocation is fine: a bad file must end in a `TranscodeError`.
//!
//! Inputs of odd length ask for a CBR re-encode, even ones for the default (V2, or MP3 frames
//! copied as they are), so both the passthrough and the LAME paths are exercised from the same
//! seed files.
#![no_main]

use converter::{TranscodeOptions, transcode};
use libfuzzer_sys::fuzz_target;
use contracts::events::Quality;
use std::io::{Cursor, Seek, SeekFrom, Write};

fuzz_target!(|data: &[u8]| {
    let mut input = tempfile::tempfile().expect("a temp file");
    input.write_all(data).expect("temp file written");
    input.seek(SeekFrom::Start(0)).expect("temp file rewound");
    let options = TranscodeOptions {
        quality: (data.len() % 2 == 1).then_some(Quality::Cbr { kbps: 128 }),
        title: Some("fuzz".into()),
        ..TranscodeOptions::default()
    };
    let mut output = Cursor::new(Vec::new());
    let mut seen = [false; 101];
    let result = transcode(input, &mut output, &options, &mut |percent| {
        // The documented contract: percentages 0..=100, each at most once.
        assert!(percent <= 100, "progress {percent} > 100");
        assert!(
            !seen[usize::from(percent)],
            "progress {percent} reported twice"
        );
        seen[usize::from(percent)] = true;
    });
    if let Ok(report) = result {
        assert_eq!(
            report.bytes_written,
            output.get_ref().len() as u64,
            "the report must count what was written"
        );
    }
});
