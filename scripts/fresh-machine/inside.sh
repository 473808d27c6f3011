#!/usr/bin/env bash
# Runs inside the fresh-machine container (see scripts/fresh-machine.sh): clones the repository,
# runs the README's two commands as a new user would, and reports each step's outcome and time.
set -uo pipefail
export CARGO_TERM_COLOR=never
results=/out/results.txt
: > "$results"
step() { # name seconds status
  printf '%-40s %6s s  %s\n' "$1" "$2" "$3" | tee -a "$results"
}
fail() { step "$1" "$2" "FAIL"; exit 1; }

git clone --quiet /src /root/project || { echo "clone failed"; exit 1; }
cd /root/project
echo "fresh-machine: commit $(git rev-parse --short HEAD)"

# ---- 1. cargo run --release, then the quick start with curl ------------------------------------
start=$SECONDS
cargo build --release >/out/build-release.log 2>&1 || { tail -30 /out/build-release.log; fail "cargo build --release (first build)" $((SECONDS - start)); }
step "cargo build --release (first build)" $((SECONDS - start)) PASS

export HTTP_ADDR=127.0.0.1:${FRESH_PORT:-18080}
# Health is on the internal listener, not the API's.
export ADMIN_ADDR=127.0.0.1:${FRESH_ADMIN_PORT:-18084}
BASE=http://$HTTP_ADDR
cargo run --release >/out/allinone.log 2>&1 &
app=$!
start=$SECONDS
for _ in $(seq 1 600); do curl -fsS "http://$ADMIN_ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$ADMIN_ADDR/healthz" >/dev/null || { tail -30 /out/allinone.log; fail "cargo run --release: healthy" $((SECONDS - start)); }
step "cargo run --release: healthy" $((SECONDS - start)) PASS
grep -q "Quick start" /out/allinone.log || fail "banner prints the quick start" 0
step "banner prints the quick start" 0 PASS

start=$SECONDS
curl -fsS -X POST "$BASE/signup" -H 'Content-Type: application/json' \
  -d '{"email":"me@example.com","password":"correct-horse-battery"}' >/dev/null || fail "quick start: signup" 0
TOKEN=$(curl -fsS -X POST -u 'me@example.com:correct-horse-battery' "$BASE/login") || fail "quick start: login" 0
JOB=$(curl -fsS -H "Authorization: Bearer $TOKEN" -F file=@converter/tests/fixtures/mp4_aac_moov_start.mp4 "$BASE/upload") \
  || fail "quick start: upload" 0
JOB_ID=$(printf '%s' "$JOB" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
status=""
for _ in $(seq 1 300); do
  status=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB_ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in succeeded|failed|deleted|expired) break ;; esac
  sleep 0.2
done
[ "$status" = succeeded ] || fail "quick start: job done (was $status)" $((SECONDS - start))
curl -fsS -H "Authorization: Bearer $TOKEN" -o /out/quickstart.mp3 "$BASE/jobs/$JOB_ID/mp3" || fail "quick start: download" 0
python3 - /out/quickstart.mp3 <<'PY' || fail "quick start: the download is an MP3" 0
import sys
data = open(sys.argv[1], "rb").read()
size = lambda b: (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]  # ID3v2 sizes are syncsafe
start = 10 + size(data[6:10]) if data[:3] == b"ID3" else 0
assert len(data) > 1000 and data[start] == 0xFF and data[start + 1] & 0xE0 == 0xE0, "no MPEG frame sync"
PY
mails=0
for _ in $(seq 1 100); do
  mails=$(ls data/mail/*.eml 2>/dev/null | wc -l)
  [ "$mails" -ge 1 ] && break
  sleep 0.2
done
[ "$mails" -eq 1 ] || fail "quick start: one .eml mail (found $mails)" $((SECONDS - start))
grep -q "$JOB_ID" data/mail/*.eml || fail "quick start: the mail names the job" 0
step "quick start: signup, login, upload, MP3, one mail" $((SECONDS - start)) PASS
kill "$app"; wait "$app" 2>/dev/null

# ---- 2. scripts/test.sh ------------------------------------------------------------------------
start=$SECONDS
scripts/test.sh >/out/test.log 2>&1
rc=$?
summary=$(grep -E "tests? run:|Summary" /out/test.log | tail -2 | tr '\n' ' ')
if [ $rc -eq 0 ]; then step "scripts/test.sh ($summary)" $((SECONDS - start)) PASS
else tail -40 /out/test.log; fail "scripts/test.sh ($summary)" $((SECONDS - start)); fi
