#!/usr/bin/env bash
# End-to-end benchmarks (not a test): starts the multi-process stack on this machine's real services
# (scripts/stack.sh), generates the media with ffmpeg, runs bench/e2e.py and prints the table.
#   bench/run.sh                 all cases
#   bench/run.sh long token      some cases (long, clips, big, token, concurrent)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MEDIA=target/bench/media
mkdir -p "$MEDIA"
command -v ffmpeg >/dev/null || { echo "bench: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
gen() { # name duration
  [ -s "$MEDIA/$1" ] && return 0
  ffmpeg -loglevel error -y -f lavfi -i "testsrc=size=320x240:rate=10:duration=$2" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=$2" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.2:sample_rate=44100:duration=$2" \
    -filter_complex "[1][2]amix=inputs=2,aformat=channel_layouts=stereo[a]" -map 0:v -map "[a]" \
    -c:v libx264 -preset ultrafast -c:a aac -b:a 128k -movflags +faststart "$MEDIA/$1"
}
gen ten_minutes.mp4 600
gen one_minute.mp4 60
gen short.mp4 5
[ -s "$MEDIA/one_gib.bin" ] || head -c 1073741824 /dev/urandom > "$MEDIA/one_gib.bin"

# The benchmark measures capacity, not policy: lift the gateway's per-user and per-address limits
# (one benchmark user makes more uploads and logins than a person would).
export LOGINS_PER_MINUTE=100000 UPLOADS_PER_MINUTE=100000 MAX_CONCURRENT_UPLOADS=64
scripts/stack.sh start
trap 'scripts/stack.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(scripts/stack.sh env)"
echo "bench: $(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB" >&2
target/test-env/venv/bin/python bench/e2e.py "$@"
