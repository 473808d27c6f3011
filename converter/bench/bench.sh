#!/usr/bin/env bash
# Benchmark: `converter convert` against `ffmpeg -vn -c:a libmp3lame -q:a 2` on a 10-minute video
# (small test pattern + AAC-LC 128 kbps stereo). Prints wall time and peak RSS of both.
#
# Needs: ffmpeg, GNU time (/usr/bin/time), cargo. Usage: [RUNS=5] converter/bench/bench.sh [MINUTES]
# Targets: wall-time ratio converter/ffmpeg <= 0.8, converter peak RSS <= 40 MB.
set -euo pipefail

minutes="${1:-10}"
seconds=$((minutes * 60))
repo="$(cd "$(dirname "$0")/../.." && pwd)"
for tool in ffmpeg cargo /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (apt-get install -y ffmpeg time)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
input="$work/input.mp4"

echo "generating a ${minutes}-minute test video..." >&2
# Two detuned tones plus quiet pink noise so the encoder has real work to do.
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc=size=160x120:rate=25:duration=$seconds" \
    -f lavfi -i "aevalsrc=0.3*sin(2*PI*440*t)+0.1*sin(2*PI*3520*t)|0.3*sin(2*PI*660*t)+0.1*sin(2*PI*2640*t):c=stereo:s=44100:d=$seconds" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.05:sample_rate=44100:duration=$seconds:seed=7" \
    -filter_complex "[1:a][2:a]amix=inputs=2:normalize=0[a]" -map 0:v -map "[a]" \
    -c:v libx264 -preset ultrafast -crf 35 -c:a aac -b:a 128k -ac 2 "$input"

echo "building the converter (release)..." >&2
(cd "$repo" && cargo build --release -p converter >&2)
converter="${CARGO_TARGET_DIR:-$repo/target}/release/converter"

# measure COMMAND...: runs COMMAND under GNU time, prints "wall_seconds cpu_seconds peak_rss_kb".
measure() {
    local log="$work/time.log"
    /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
        /User time/ { cpu += $2 } /System time/ { cpu += $2 }
        /Maximum resident set size/ { rss = $2 }
        END { print w, cpu, rss }' "$log"
}

# The machine may be shared: alternate the two tools and keep each one's fastest run.
runs="${RUNS:-5}"
echo "running each tool $runs times, alternating (load average: $(cut -d' ' -f1-3 /proc/loadavg))..." >&2
ours_wall=""; ff_wall=""
for _ in $(seq "$runs"); do
    read -r wall cpu rss < <(measure "$converter" convert "$input" "$work/ours.mp3")
    if [[ -z "$ours_wall" ]] || awk "BEGIN{exit !($wall < $ours_wall)}"; then
        ours_wall="$wall"; ours_cpu="$cpu"; ours_rss="$rss"
    fi
    read -r wall cpu rss < <(measure ffmpeg -hide_banner -loglevel error -y -i "$input" -vn -c:a libmp3lame -q:a 2 "$work/ffmpeg.mp3")
    if [[ -z "$ff_wall" ]] || awk "BEGIN{exit !($wall < $ff_wall)}"; then
        ff_wall="$wall"; ff_cpu="$cpu"; ff_rss="$rss"
    fi
done

ratio=$(awk "BEGIN{printf \"%.2f\", $ours_wall / $ff_wall}")
row() { # row NAME WALL CPU RSS_KB MP3
    printf '%-10s %9.2f %9.2f %14.1f %10d\n' "$1" "$2" "$3" "$(awk "BEGIN{print $4/1024}")" $(($(stat -c %s "$5") / 1024))
}
printf '\n%-10s %9s %9s %14s %10s\n' tool "wall (s)" "CPU (s)" "peak RSS (MB)" "MP3 (KB)"
row converter "$ours_wall" "$ours_cpu" "$ours_rss" "$work/ours.mp3"
row ffmpeg "$ff_wall" "$ff_cpu" "$ff_rss" "$work/ffmpeg.mp3"
printf '\nwall-time ratio converter/ffmpeg: %s (target <= 0.80); best of %s runs each\n' "$ratio" "$runs"
