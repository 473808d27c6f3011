#!/usr/bin/env bash
# Fuzzes the converter's demux/decode entry point (`converter::transcode`, target
# converter/fuzz/fuzz_targets/transcode.rs) with cargo-fuzz / libFuzzer + AddressSanitizer for a
# bounded time, seeded with the converter's test fixtures.
#   reliability/fuzz.sh [SECONDS]   default 120; exit 0 when no crash was found
# cargo-fuzz's sanitizer flags (-Zsanitizer=address) are nightly-only; the machine has only the
# stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them (its ASan runtime ships
# with the standard library). Built like production (`-O`: release, no overflow checks; an
# arithmetic overflow that wraps silently in the shipped binary is not a crash there), with
# FUZZ_DEBUG_ASSERTIONS=1 for overflow checks too. Inputs that once crashed live in
# converter/fuzz/regressions/ and are replayed first. A new crash leaves its input under
# converter/fuzz/artifacts/transcode/; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -O transcode <file>` from converter/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_TO_RUN=${1:-120}
FUZZ=$ROOT/converter/fuzz
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=$FUZZ/corpus/transcode
mkdir -p "$corpus" "$FUZZ/artifacts/transcode"
# Seeds: every media fixture (a seed that stopped being interesting is simply not kept).
for f in "$ROOT"/converter/tests/fixtures/*; do
  case $f in *.sh) continue ;; esac
  [ -s "$f" ] && cp -n "$f" "$corpus/seed-$(basename "$f")"
done
cd "$ROOT/converter"
mode=(-O)
[ "${FUZZ_DEBUG_ASSERTIONS:-0}" = 1 ] && mode=(-O -a)
echo "fuzz: building (first build compiles the converter with sanitizer flags; minutes)" >&2
cargo fuzz build "${mode[@]}" transcode >"$FUZZ/build.log" 2>&1 || { tail -30 "$FUZZ/build.log" >&2; exit 2; }
# The worker spills uploads to a temp file; in RAM here for speed.
export TMPDIR=${FUZZ_TMPDIR:-/dev/shm}
echo "fuzz: replaying converter/fuzz/regressions/" >&2
if ! cargo fuzz run "${mode[@]}" transcode "$FUZZ"/regressions/* -- -rss_limit_mb=2048 -timeout=30 \
    >"$FUZZ/regressions.log" 2>&1; then
  echo "fuzz: a regression input crashes again; see $FUZZ/regressions.log" >&2
  exit 1
fi
echo "fuzz: running for ${SECONDS_TO_RUN}s" >&2
set +e
cargo fuzz run "${mode[@]}" transcode "$corpus" -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=262144 -timeout=30 -rss_limit_mb=2048 \
  -print_final_stats=1 >"$FUZZ/run.log" 2>&1
status=$?
set -e
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$FUZZ/run.log" >&2 || true
if [ $status -ne 0 ]; then
  echo "fuzz: FOUND A CRASH (exit $status); see $FUZZ/run.log and $FUZZ/artifacts/transcode/" >&2
  grep -E 'panicked|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|Test unit written' "$FUZZ/run.log" | head -20 >&2
  exit 1
fi
echo "fuzz: no crash in ${SECONDS_TO_RUN}s" >&2
