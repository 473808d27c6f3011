#!/usr/bin/env python3
"""Peak memory of `converter convert` on inputs whose sizes would break a reader that trusts them.

Builds, streaming to disk (never in memory), in a temporary directory:
  * a 300 MiB AVI whose PCM audio sits in one `01wb` chunk (stream 0 is a video stream with no
    data), the file that once made `converter convert` peak at 1.56 GB;
  * a 2 GiB WAV (16-bit stereo, 44.1 kHz: 3.4 hours).
then runs `converter convert IN OUT` on each under `/usr/bin/time -v` and compares its
"Maximum resident set size" with the bound (64 MiB: the converter's memory must not follow the
input's size). The inputs are deleted afterwards.

  reliability/memory.py [--converter PATH] [--avi-mib 300] [--wav-mib 2048] [--limit-mib 64]

Prints `| scenario | expectation | result | held |` rows and exits non-zero when a bound did not
hold. `reliability/run.sh memory` runs it as a section of the suite (release build).
Needs python3 and GNU time (`/usr/bin/time`, Debian package `time`); no ffmpeg.
"""
import argparse
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
RATE = 44_100
CHANNELS = 2
BITS = 16
BLOCK_ALIGN = CHANNELS * BITS // 8


def default_converter():
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return target / "release" / "converter"


def tone_piece():
    """About 1 MiB of a 441 Hz stereo tone, a whole number of periods (100 frames each)."""
    period = b"".join(
        struct.pack("<hh", v, v)
        for v in (int(12000 * math.sin(2 * math.pi * i / 100)) for i in range(100)))
    return period * 2600


def write_tone(out, length):
    piece = tone_piece()
    left = length
    while left > 0:
        take = min(left, len(piece))
        out.write(piece[:take])
        left -= take


def chunk(fourcc, body):
    return fourcc + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def riff_list(kind, body):
    return chunk(b"LIST", kind + body)


def wave_format():
    return struct.pack("<HHIIHH", 1, CHANNELS, RATE, RATE * BLOCK_ALIGN, BLOCK_ALIGN, BITS)


def write_one_chunk_avi(path, audio_bytes):
    """Stream 0: video (no data); stream 1: PCM audio, all of it in one `01wb` chunk."""
    audio_bytes -= audio_bytes % BLOCK_ALIGN
    frames = audio_bytes // BLOCK_ALIGN
    avih = struct.pack("<14I", 40_000, 0, 0, 0, 0, 0, 2, 0, 320, 240, 0, 0, 0, 0)
    video_strh = (b"vids" + b"MJPG" + struct.pack("<IHHIIIIIIII", 0, 0, 0, 0, 1, 25, 0, 0, 0, 0, 0)
                  + struct.pack("<hhhh", 0, 0, 320, 240))
    video_strf = struct.pack("<IiiHHIIiiII", 40, 320, 240, 1, 24, 0, 0, 0, 0, 0, 0)
    audio_strh = (b"auds" + b"\0\0\0\0"
                  + struct.pack("<IHHIIIIIIII", 0, 0, 0, 0, 1, RATE, 0, frames, 0, 0xFFFFFFFF,
                                BLOCK_ALIGN)
                  + struct.pack("<hhhh", 0, 0, 0, 0))
    hdrl = riff_list(b"hdrl", chunk(b"avih", avih)
                     + riff_list(b"strl", chunk(b"strh", video_strh) + chunk(b"strf", video_strf))
                     + riff_list(b"strl", chunk(b"strh", audio_strh) + chunk(b"strf", wave_format())))
    movi_len = 4 + 8 + audio_bytes + audio_bytes % 2
    riff_len = 4 + len(hdrl) + 8 + movi_len
    with open(path, "wb", buffering=MIB) as out:
        out.write(b"RIFF" + struct.pack("<I", riff_len) + b"AVI " + hdrl)
        out.write(b"LIST" + struct.pack("<I", movi_len) + b"movi")
        out.write(b"01wb" + struct.pack("<I", audio_bytes))
        write_tone(out, audio_bytes)
    return frames / RATE


def write_wav(path, audio_bytes):
    audio_bytes -= audio_bytes % BLOCK_ALIGN
    fmt = chunk(b"fmt ", wave_format())
    with open(path, "wb", buffering=MIB) as out:
        out.write(b"RIFF" + struct.pack("<I", 4 + len(fmt) + 8 + audio_bytes) + b"WAVE" + fmt)
        out.write(b"data" + struct.pack("<I", audio_bytes))
        write_tone(out, audio_bytes)
    return audio_bytes // BLOCK_ALIGN / RATE


def peak_rss(converter, source, target):
    """Runs `converter convert` under GNU time: (exit code, peak RSS in KiB, wall s, stdout)."""
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-v", str(converter), "convert", str(source),
                             str(target)], capture_output=True, text=True)
    wall = time.monotonic() - started
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    kib = int(match.group(1)) if match else -1
    printed = result.stdout.strip() or result.stderr.strip().splitlines()[-1:]
    return result.returncode, kib, wall, printed


def measure(converter, avi_mib, wav_mib, limit_mib, work=None):
    """Generates the inputs, measures, deletes them; returns table rows
    (scenario, expectation, result, held)."""
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="converter-memory-", dir=work))
    try:
        cases = [
            (f"memory: {avi_mib} MiB AVI, all its PCM in one 01wb chunk", "input.avi",
             lambda p: write_one_chunk_avi(p, avi_mib * MIB)),
            (f"memory: {wav_mib} MiB WAV", "input.wav", lambda p: write_wav(p, wav_mib * MIB)),
        ]
        for scenario, name, generate in cases:
            source = workdir / name
            seconds = generate(source)
            print(f"{scenario}: {source.stat().st_size} bytes, {seconds:.0f} s of audio",
                  file=sys.stderr, flush=True)
            code, kib, wall, printed = peak_rss(converter, source, workdir / "out.mp3")
            held = code == 0 and 0 < kib <= limit_mib * 1024
            result = (f"peak RSS {kib / 1024:.1f} MiB, exit {code}, {wall:.1f} s wall; {printed}")
            rows.append((scenario, f"converter convert succeeds, peak RSS <= {limit_mib} MiB",
                         result, held))
            source.unlink()
            (workdir / "out.mp3").unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--converter", type=Path, default=default_converter(),
                        help="the converter binary (default: the release build)")
    parser.add_argument("--avi-mib", type=int, default=300)
    parser.add_argument("--wav-mib", type=int, default=2048)
    parser.add_argument("--limit-mib", type=int, default=64)
    parser.add_argument("--work", help="where the inputs are written (default: the temp dir)")
    args = parser.parse_args()
    if not args.converter.exists():
        parser.error(f"{args.converter} not found: cargo build --release -p converter")
    rows = measure(args.converter, args.avi_mib, args.wav_mib, args.limit_mib, args.work)
    print("| scenario | expectation | result | held |\n|---|---|---|---|")
    for scenario, expectation, result, held in rows:
        print(f"| {scenario} | {expectation} | {result} | {'yes' if held else '**NO**'} |")
    sys.exit(0 if all(row[3] for row in rows) else 1)


if __name__ == "__main__":
    main()
