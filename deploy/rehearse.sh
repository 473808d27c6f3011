#!/usr/bin/env bash
# Deployment rehearsal: builds the real images from the Dockerfile and runs the real
# docker-compose.yml in containers on this machine (podman, no registry), then the README's curl
# flow, a converter crash mid-job and the k8s pods. On demand (not part of scripts/test.sh or CI);
# run as root on a Debian bookworm machine. See docs/deployment.md ("Deployment rehearsal").
#
#   deploy/rehearse.sh              # everything; leaves the stack running at the end
#   deploy/rehearse.sh --down       # ... and removes the stack (containers, volumes) at the end
#   STEPS="build compose flow crash k8s" deploy/rehearse.sh   # a subset (default: all five)
#
# What it does, in order (each step's outcome goes into the table printed at the end):
#   base     deploy/base-images.sh: podman, runc, debootstrap; localhost/debian:bookworm-slim and
#            the Rust image under the Dockerfile's FROM names
#   build    the four service images from the Dockerfile unchanged: `--target builder` with the
#            machine's CA bundle mounted (the crate registry over HTTPS), then each service target without
#            it (their apt steps install ca-certificates), from the layer cache
#   standins images built from packages, tagged with the names compose uses: mysql:8.4 (MariaDB),
#            mongo:7.0 (SecantusDB), rabbitmq:3.13-management (Debian's RabbitMQ),
#            mailhog/mailhog:v1.0.1 (a catcher with MailHog's SMTP port and HTTP API)
#   compose  docker-compose.yml as written, with podman-compose (PyPI, a virtualenv under
#            target/rehearsal) and one override: the gateway published on 127.0.0.1 only; starts
#            in depends_on order and waits for every healthcheck
#   flow     the README's curl flow on 127.0.0.1:8080: signup, login, upload, status, SSE,
#            download a valid MP3, and the mail with the download command in the catcher's API
#   crash    SIGKILL of the converter mid-job (a long video): the job still completes, one MP3,
#            one mail
#   k8s      deploy/rehearsal/k8s_pods.py: each Deployment/StatefulSet of k8s/ as a podman pod
#            with its manifest's env, security context, volumes and probes; readiness must pass
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DOWN=0
for arg in "$@"; do
  case "$arg" in
    --down) DOWN=1 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--down]" >&2; exit 2 ;;
  esac
done
STEPS=${STEPS:-"build compose flow crash k8s"}
want() { [[ " $STEPS " == *" $1 "* ]]; }

WORK="$ROOT/target/rehearsal"
mkdir -p "$WORK"
PROJECT=mp3converter-rehearsal
HOST_PORT=${REHEARSAL_HTTP_PORT:-8080}
BASE=http://127.0.0.1:$HOST_PORT
SERVICES=(auth gateway converter notification)
# name in docker-compose.yml / k8s -> stand-in directory under deploy/rehearsal/standins
declare -A STANDIN=([mysql:8.4]=mysql [mongo:7.0]=mongo [rabbitmq:3.13-management]=rabbitmq
                    [mailhog/mailhog:v1.0.1]=mailhog)
declare -A WHAT=([mysql]="MariaDB 10.11 (Debian)" [mongo]="SecantusDB (PyPI) + a pymongo mongosh shim"
                 [rabbitmq]="RabbitMQ 3.10 (Debian) + management, prometheus" [mailhog]="aiosmtpd catcher, MailHog API v2 (Python)")

declare -A OUTCOME=() DETAIL=()
ORDER=()
record() { # step outcome detail
  [[ -n "${OUTCOME[$1]+x}" ]] || ORDER+=("$1")
  OUTCOME[$1]=$2; DETAIL[$1]=$3
  printf '==> %-28s %s  %s\n' "$1" "$2" "$3"
}
say() { echo "rehearse: $*"; }
ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.0f", b - a }'; }

# ---- base images --------------------------------------------------------------------------------
t0=$(ts)
if "$ROOT/deploy/base-images.sh"; then
  record "base images" PASS "$(since "$t0") s (debootstrap + local Rust image, or kept)"
else
  record "base images" FAIL "deploy/base-images.sh failed"; exit 1
fi
# shellcheck source=deploy/podman-env.sh
. "$ROOT/deploy/podman-env.sh"

# ---- the four images ----------------------------------------------------------------------------
# The committed HEAD is built (a `git archive` of it), so that the table belongs to a commit and
# work in progress in the working tree cannot break or change it; REHEARSAL_SOURCE=worktree builds
# the working tree as it is, like `docker compose build` would.
# REHEARSAL_SOURCE=<commit> builds that commit.
SOURCE=${REHEARSAL_SOURCE:-HEAD}
if [ "$SOURCE" = worktree ]; then
  CONTEXT="$ROOT"
  SOURCE_NAME="the working tree"
else
  [ "$SOURCE" != head ] || SOURCE=HEAD
  CONTEXT="$WORK/context"
  rm -rf "$CONTEXT"
  mkdir -p "$CONTEXT"
  git -C "$ROOT" archive "$SOURCE" | tar -x -C "$CONTEXT"
  SOURCE_NAME="commit $(git -C "$ROOT" rev-parse --short "$SOURCE")"
fi
BUILD_SECS=""
if want build; then
  cache=cold
  pm image exists localhost/mp3converter-rehearsal/builder && cache="warm (cached layers)"
  say "building $SOURCE_NAME: --target builder (CA bundle mounted), cache: $cache; log: target/rehearsal/build-builder.log"
  t0=$(ts)
  if pm build "${CA_MOUNT[@]}" --target builder -t localhost/mp3converter-rehearsal/builder "$CONTEXT" \
      > "$WORK/build-builder.log" 2>&1; then
    ok=1
    for service in "${SERVICES[@]}"; do
      say "building --target $service"
      # Same image format as the builder (podman's default, OCI), or the layer cache misses. OCI
      # images do not keep the Dockerfile's HEALTHCHECK (compose and k8s declare their own checks);
      # BUILDAH_FORMAT=docker for every build keeps it, at the price of a cold build.
      if ! pm build --target "$service" -t "mp3converter/$service:latest" "$CONTEXT" \
          > "$WORK/build-$service.log" 2>&1; then
        ok=0; tail -n 20 "$WORK/build-$service.log" >&2
      fi
    done
    BUILD_SECS=$(since "$t0")
    if [ "$ok" = 1 ]; then
      record "build 4 images" PASS "$BUILD_SECS s, cache $cache, $SOURCE_NAME"
    else
      record "build 4 images" FAIL "a service target failed (target/rehearsal/build-*.log)"; exit 1
    fi
  else
    tail -n 30 "$WORK/build-builder.log" >&2
    record "build 4 images" FAIL "builder stage failed (target/rehearsal/build-builder.log)"; exit 1
  fi

  # ---- stand-ins ------------------------------------------------------------------------------
  t0=$(ts)
  ok=1
  for image in "${!STANDIN[@]}"; do
    dir=${STANDIN[$image]}
    log="$WORK/build-standin-$dir.log"
    if [ "$dir" = mongo ]; then
      # Debian's ca-certificates first (without the bundle mounted), then pip with it.
      pm build --target os -t localhost/mp3converter-rehearsal/mongo-os "deploy/rehearsal/standins/$dir" > "$log" 2>&1 \
        && pm build "${CA_MOUNT[@]}" -t "$image" "deploy/rehearsal/standins/$dir" >> "$log" 2>&1 || ok=0
    else
      pm build -t "$image" "deploy/rehearsal/standins/$dir" > "$log" 2>&1 || ok=0
    fi
    printf 'rehearse: stand-in %-26s <- %s (deploy/rehearsal/standins/%s)\n' "$image" "${WHAT[$dir]}" "$dir"
  done
  if [ "$ok" = 1 ]; then
    record "build stand-ins" PASS "$(since "$t0") s"
  else
    record "build stand-ins" FAIL "see target/rehearsal/build-standin-*.log"; exit 1
  fi
fi

# ---- compose up -----------------------------------------------------------------------------------
VENV="$WORK/venv"
if [ ! -x "$VENV/bin/podman-compose" ]; then
  say "installing podman-compose into target/rehearsal/venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "podman-compose==1.6.0" "PyYAML>=6"
fi
OVERRIDE="$WORK/compose.rehearsal.yml"
# The one change to what users get: the gateway on 127.0.0.1 only (compose publishes it on every
# interface), on $REHEARSAL_HTTP_PORT if 8080 is taken. MailHog (8025) and the RabbitMQ UI
# (15672) are published on 127.0.0.1 already.
cat > "$OVERRIDE" <<EOF
# Written by deploy/rehearse.sh: the rehearsal publishes the gateway on the loopback only.
services:
  gateway:
    ports: !override
      - "127.0.0.1:$HOST_PORT:8080"
EOF
cname() { # compose service -> its container's name
  pm ps -a --filter "label=io.podman.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" \
    --format '{{.Names}}' | head -n1
}
remove_stack() { # the project's containers with their anonymous volumes, then its named volumes and network
  local ids volumes=""
  ids=$(pm ps -aq --filter "label=io.podman.compose.project=$PROJECT")
  [ -z "$ids" ] || volumes=$(pm inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' $ids 2>/dev/null || true)
  compose down -v > "$WORK/compose-down.log" 2>&1 || true
  # podman-compose's `down -v` leaves the anonymous volumes (e.g. mongo's /data/configdb).
  for volume in $volumes; do pm volume rm -f "$volume" > /dev/null 2>&1 || true; done
}
compose() { "$VENV/bin/podman-compose" --podman-path podman -p "$PROJECT" -f docker-compose.yml -f "$OVERRIDE" "$@"; }

UP_SECS=""
if want compose; then
  say "removing an earlier rehearsal stack (containers and volumes of project $PROJECT)"
  remove_stack
  # After removing an earlier rehearsal stack: the ports must be free on this machine.
  for port in "$HOST_PORT" 8025 15672; do
    if ss -Hltn "sport = :$port" | grep -q .; then
      say "port $port is in use on this machine; set REHEARSAL_HTTP_PORT (gateway) or free it"; exit 1
    fi
  done
  t0=$(ts)
  if compose up -d --no-start > "$WORK/compose-up.log" 2>&1 \
     && "$VENV/bin/python" deploy/rehearsal/compose_up.py docker-compose.yml "$PROJECT" 600 | tee "$WORK/health.log"; then
    UP_SECS=$(tail -n1 "$WORK/health.log" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["healthy_after"])')
    record "compose up, all healthy" PASS "${UP_SECS} s from up to 8/8 ready (7 healthy + mailhog running)"
  else
    tail -n 20 "$WORK/compose-up.log" >&2
    record "compose up, all healthy" FAIL "see target/rehearsal/compose-up.log, health.log"
    for s in mysql mongodb rabbitmq mailhog "${SERVICES[@]}"; do
      echo "--- $s"; pm logs --tail 15 "$(cname "$s")" 2>&1 || true
    done
  fi
fi

# ---- the curl flow ----------------------------------------------------------------------------------
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
mails_for() { # job id -> number of caught mails mentioning it
  curl -fsS "http://127.0.0.1:8025/api/v2/messages" \
    | python3 -c "import json,sys; print(sum(sys.argv[1] in m['Content']['Body'] or sys.argv[1] in m['Raw']['Data'] for m in json.load(sys.stdin)['items']))" "$1"
}
mongo_mp3s_for() { # job id -> number of MP3 files stored for it
  pm exec "$(cname mongodb)" /opt/secantusdb/bin/python -c "
import os, sys, pymongo
c = pymongo.MongoClient('mongodb://127.0.0.1:27017/', username=os.environ['MONGO_INITDB_ROOT_USERNAME'],
                        password=os.environ['MONGO_INITDB_ROOT_PASSWORD'], authSource='admin')
print(c.mp3s['fs.files'].count_documents({'metadata.job_id': sys.argv[1]}))" "$1"
}
wait_job() { # token job-id seconds -> final status
  local deadline=$((SECONDS + $3)) status=""
  while [ $SECONDS -lt $deadline ]; do
    status=$(curl -fsS -H "Authorization: Bearer $1" "$BASE/jobs/$2" | json 'd["status"]') || true
    case "$status" in succeeded | failed) break ;; esac
    sleep 1
  done
  echo "$status"
}
make_video() { # seconds path
  [ -s "$2" ] && return 0
  command -v ffmpeg > /dev/null || { apt-get update -q > /dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg > /dev/null; }
  ffmpeg -v error -y -f lavfi -i "color=c=blue:s=160x120:r=5:d=$1" -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=$1" \
    -c:v libx264 -preset ultrafast -c:a aac -b:a 96k -shortest "$2"
}

EMAIL="rehearsal-$(date +%s)@example.com"
PASSWORD="correct horse battery"
TOKEN=""
if want flow; then
  mkdir -p "$WORK/flow"
  make_video 20 "$WORK/flow/video.mp4"
  code=$(curl -s -o "$WORK/flow/signup.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" "$BASE/signup")
  [ "$code" = 201 ] && record "flow: signup" PASS "201" || record "flow: signup" FAIL "HTTP $code $(cat "$WORK/flow/signup.json")"
  TOKEN=$(curl -s -X POST -u "$EMAIL:$PASSWORD" "$BASE/login")
  [ "${#TOKEN}" -gt 40 ] && record "flow: login" PASS "JWT of ${#TOKEN} bytes" || record "flow: login" FAIL "$TOKEN"
  code=$(curl -s -o "$WORK/flow/upload.json" -w '%{http_code}' -X POST -F "file=@$WORK/flow/video.mp4" \
    -H "Authorization: Bearer $TOKEN" "$BASE/upload")
  JOB_ID=$(json 'd["job_id"]' < "$WORK/flow/upload.json" 2>/dev/null || true)
  [ "$code" = 202 ] && [ -n "$JOB_ID" ] && record "flow: upload" PASS "202, job $JOB_ID" \
    || record "flow: upload" FAIL "HTTP $code $(cat "$WORK/flow/upload.json")"
  # SSE until the terminal state (the stream ends there).
  timeout 120 curl -sN -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB_ID/events" > "$WORK/flow/events.txt" || true
  events=$(grep -c '^data:' "$WORK/flow/events.txt" || true)
  grep -q 'succeeded' "$WORK/flow/events.txt" && record "flow: SSE" PASS "$events events, ends with succeeded" \
    || record "flow: SSE" FAIL "$events events: $(tail -c 300 "$WORK/flow/events.txt")"
  curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB_ID" > "$WORK/flow/status.json" || true
  status=$(json 'd["status"]' < "$WORK/flow/status.json" 2>/dev/null || echo "?")
  MP3_ID=$(json 'd.get("mp3_file_id")' < "$WORK/flow/status.json" 2>/dev/null || echo "")
  [ "$status" = succeeded ] && record "flow: status" PASS "succeeded, mp3 $MP3_ID" \
    || record "flow: status" FAIL "$(cat "$WORK/flow/status.json")"
  code=$(curl -s -o "$WORK/flow/video.mp3" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$BASE/download?fid=$MP3_ID")
  probe=$(ffprobe -v error -show_entries stream=codec_name:format=duration -of csv=p=0 "$WORK/flow/video.mp3" 2>&1 | tr '\n' ' ' || true)
  [ "$code" = 200 ] && [[ "$probe" == mp3* ]] \
    && record "flow: download MP3" PASS "200, $(stat -c %s "$WORK/flow/video.mp3") bytes, ffprobe: $probe" \
    || record "flow: download MP3" FAIL "HTTP $code, ffprobe: $probe"
  mail=""
  for _ in $(seq 30); do
    mail=$(curl -fsS http://127.0.0.1:8025/api/v2/messages | python3 -c "
import email, email.policy, json, sys
for m in json.load(sys.stdin)['items']:
    body = m['Content']['Body']
    if sys.argv[1] in [t['Mailbox'] + '@' + t['Domain'] for t in m['To']] and 'curl' in m['Raw']['Data']:
        message = email.message_from_string(m['Raw']['Data'], policy=email.policy.default)
        part = message.get_body(preferencelist=('plain', 'html'))
        text = part.get_content() if part else body
        print(next(line.strip() for line in text.splitlines() if 'curl' in line)); break" "$EMAIL" || true)
    [ -n "$mail" ] && break
    sleep 1
  done
  [ -n "$mail" ] && record "flow: mail in catcher API" PASS "$mail" || record "flow: mail in catcher API" FAIL "no mail to $EMAIL"
fi

# ---- converter crash mid-job ------------------------------------------------------------------------
if want crash; then
  [ -n "$TOKEN" ] || {
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" "$BASE/signup"
    TOKEN=$(curl -s -X POST -u "$EMAIL:$PASSWORD" "$BASE/login")
  }
  mkdir -p "$WORK/flow"
  make_video 3600 "$WORK/flow/long.mp4"
  converter=$(cname converter)
  JOB=$(curl -s -X POST -F "file=@$WORK/flow/long.mp4" -H "Authorization: Bearer $TOKEN" "$BASE/upload" | json 'd["job_id"]')
  seen=""
  for _ in $(seq 240); do
    seen=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB" | json 'd["status"] + " " + str(d.get("progress"))') || true
    [[ "$seen" == converting* ]] && [[ "$seen" != "converting 0"* ]] && [[ "$seen" != "converting None" ]] && break
    sleep 0.5
  done
  pid=$(pm inspect -f '{{.State.Pid}}' "$converter")
  restarts_before=$(pm inspect -f '{{.RestartCount}}' "$converter" 2>/dev/null || echo 0)
  say "job $JOB at '$seen': SIGKILL to the converter (pid $pid on the host)"
  kill -9 "$pid"
  restarted=""
  for _ in $(seq 60); do
    sleep 1
    if [ "$(pm inspect -f '{{.State.Running}}' "$converter")" = true ] \
       && [ "$(pm inspect -f '{{.State.Pid}}' "$converter")" != "$pid" ]; then
      restarted="by its restart policy (unless-stopped)"; break
    fi
  done
  if [ -z "$restarted" ]; then
    pm start "$converter" > /dev/null && restarted="by hand (podman start): the restart policy did not act"
  fi
  status=$(wait_job "$TOKEN" "$JOB" 600)
  mp3s=$(mongo_mp3s_for "$JOB" 2>/dev/null || echo "?")
  sleep 5
  mails=$(mails_for "$JOB")
  detail="killed at '$seen', restarted $restarted; job $status, $mp3s MP3, $mails mail"
  [ "$status" = succeeded ] && [ "$mp3s" = 1 ] && [ "$mails" = 1 ] && record "crash: converter killed" PASS "$detail" \
    || record "crash: converter killed" FAIL "$detail"
fi

# ---- k8s pods ---------------------------------------------------------------------------------------
if want k8s; then
  if "$VENV/bin/python" deploy/rehearsal/k8s_pods.py > "$WORK/k8s.log" 2>&1; then
    record "k8s pods ready" PASS "$(tail -n1 "$WORK/k8s.log")"
  else
    record "k8s pods ready" FAIL "$(tail -n1 "$WORK/k8s.log") (target/rehearsal/k8s.log)"
  fi
  cat "$WORK/k8s.log"
fi

# ---- the table ----------------------------------------------------------------------------------------
size_mb() { pm image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.0f", $1/1e6}'; }
echo
echo "## Deployment rehearsal, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo
[ -z "$BUILD_SECS" ] || echo "Build of the four images: $BUILD_SECS s (cache: $cache). Up to all healthy: ${UP_SECS:-n/a} s."
echo
echo "| image | size | over its base |"
echo "|---|---|---|"
debian=$(size_mb localhost/debian:bookworm-slim)
echo "| localhost/debian:bookworm-slim (debootstrap minbase) | ${debian} MB | — |"
for service in "${SERVICES[@]}"; do
  image="mp3converter/$service:latest"
  pm image exists "$image" || continue
  binary=$(pm run --rm --entrypoint /bin/sh "$image" -c "stat -c %s /usr/local/bin/$service" 2>/dev/null | awk '{printf "%.0f", $1/1e6}')
  history=$(pm image history --no-trunc --format '{{.Size}}|{{.CreatedBy}}' "$image")
  apt_size=$(grep 'apt-get install' <<< "$history" | head -n1 | cut -d'|' -f1)
  packages=$(grep -o 'no-install-recommends [a-z0-9 .+-]*' <<< "$history" | head -n1 | sed 's/no-install-recommends //; s/ *$//')
  health=$(pm image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$image" 2>/dev/null | sed 's/^CMD //')
  echo "| $image | $(size_mb "$image") MB | ${binary} MB binary; ${apt_size} of apt packages (${packages}); HEALTHCHECK: ${health:-none} |"
done
for image in "${!STANDIN[@]}"; do
  pm image exists "$image" || continue
  echo "| $image (stand-in: ${WHAT[${STANDIN[$image]}]}) | $(size_mb "$image") MB | $(( $(size_mb "$image") - debian )) MB |"
done
echo
echo "| step | outcome | detail |"
echo "|---|---|---|"
failed=0
for step in "${ORDER[@]}"; do
  echo "| $step | ${OUTCOME[$step]} | ${DETAIL[$step]//|/\\|} |"
  [ "${OUTCOME[$step]}" = PASS ] || failed=1
done

if [ "$DOWN" = 1 ]; then
  remove_stack
  say "stack removed"
else
  say "the stack is still running (project $PROJECT): $BASE, mail at http://127.0.0.1:8025/api/v2/messages;"
  say "remove it with: deploy/rehearse.sh's --down, or podman-compose -p $PROJECT down -v"
fi
exit "$failed"
