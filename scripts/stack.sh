#!/usr/bin/env bash
# Starts the full multi-process stack on this machine's real services, for benchmarks, the
# reliability suite and manual tries:
#   scripts/stack.sh start   builds release binaries, starts SecantusDB, the SMTP sink and the four
#                            services (MariaDB and RabbitMQ are the machine's own), waits for /readyz
#   scripts/stack.sh stop    stops everything it started
#   scripts/stack.sh env     prints the variables (source it: eval "$(scripts/stack.sh env)")
#   scripts/stack.sh stop-service|start-service|restart-service|kill-service NAME
#                            one process (auth, gateway, converter, notification, secantusdb, smtp);
#                            kill-service is `kill -9`
# State lives in target/stack (pids, logs, mail). Ports: gateway 18080 (its internal health and
# metrics listener 18084), auth gRPC 15051, auth/converter/notification HTTP 18081-18083,
# SecantusDB 37017, SMTP 12525.
# Overrides (the reliability suite runs a second stack on private backing services with these):
#   STACK_DIR, GATEWAY_PORT, GATEWAY_ADMIN_PORT, AUTH_GRPC_PORT, AUTH_HTTP_PORT, CONVERTER_HTTP_PORT,
#   NOTIFICATION_HTTP_PORT, MONGO_PORT, SMTP_PORT; MONGO_STORAGE (SecantusDB data directory,
#   default :memory:); STACK_DATABASE_URL and STACK_AMQP_URL (instead of the machine's MariaDB
#   database $STACK_DB and RabbitMQ; the caller then owns that database); STACK_BUILD=0 (skip
#   the cargo build); STACK_PROFILE (release or debug binaries). Every other variable of the
#   caller's environment (MAX_UPLOAD_BYTES, TOKEN_TTL, ...) reaches the services.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK=${STACK_DIR:-$ROOT/target/stack}
mkdir -p "$STACK/logs" "$STACK/pids"
GATEWAY_PORT=${GATEWAY_PORT:-18080}
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-18084}
MONGO_PORT=${MONGO_PORT:-37017}
SMTP_PORT=${SMTP_PORT:-12525}
STACK_DB=${STACK_DB:-mp3_stack}
AUTH_GRPC_PORT=${AUTH_GRPC_PORT:-15051}
AUTH_HTTP_PORT=${AUTH_HTTP_PORT:-18081}
CONVERTER_HTTP_PORT=${CONVERTER_HTTP_PORT:-18082}
NOTIFICATION_HTTP_PORT=${NOTIFICATION_HTTP_PORT:-18083}
MONGO_STORAGE=${MONGO_STORAGE:-:memory:}
STACK_PROFILE=${STACK_PROFILE:-release}
# Where cargo puts the binaries (CARGO_TARGET_DIR when set, as cargo itself does).
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$STACK_PROFILE
VENV=$ROOT/target/test-env/venv

env_vars() {
  cat <<EOV
export DATABASE_URL=${STACK_DATABASE_URL:-mysql://root@127.0.0.1:3306/$STACK_DB}
export MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT
export AMQP_URL=${STACK_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
export SMTP_SINK_DIR=$STACK/mail
export AUTH_GRPC_URL=http://127.0.0.1:$AUTH_GRPC_PORT
export PUBLIC_BASE_URL=http://127.0.0.1:$GATEWAY_PORT
export GATEWAY=http://127.0.0.1:$GATEWAY_PORT
EOV
}

start_one() { # name command...
  local name=$1; shift
  # Appends: a restarted process keeps the log of its previous runs (the reliability suite scans
  # every line of them).
  "$@" >>"$STACK/logs/$name.log" 2>&1 &
  echo $! >"$STACK/pids/$name"
}

wait_ready() { # name url seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "stack: $1 not ready at $2; see $STACK/logs/$1.log" >&2
  tail -20 "$STACK/logs/$1.log" >&2 || true
  return 1
}

service() { # name -> starts one service with its env
  local name=$1
  eval "$(env_vars)"
  export LOG_FORMAT=${LOG_FORMAT:-json} RUST_LOG=${RUST_LOG:-info}
  case $name in
    auth) HTTP_ADDR=127.0.0.1:$AUTH_HTTP_PORT GRPC_ADDR=127.0.0.1:$AUTH_GRPC_PORT start_one auth "$BIN/auth" ;;
    gateway) HTTP_ADDR=127.0.0.1:$GATEWAY_PORT ADMIN_ADDR=127.0.0.1:$GATEWAY_ADMIN_PORT start_one gateway "$BIN/gateway" ;;
    converter) HTTP_ADDR=127.0.0.1:$CONVERTER_HTTP_PORT CONVERTER_RETRY_DELAYS=${CONVERTER_RETRY_DELAYS:-1s,2s,5s} start_one converter "$BIN/converter" ;;
    notification) HTTP_ADDR=127.0.0.1:$NOTIFICATION_HTTP_PORT NOTIFICATION_RETRY_DELAYS=${NOTIFICATION_RETRY_DELAYS:-1s,2s,5s} start_one notification "$BIN/notification" ;;
    secantusdb)
      start_one secantusdb "$VENV/bin/secantusd-py" --port "$MONGO_PORT" \
        --storage-path "$MONGO_STORAGE" --cache-size 6G --oplog-retention-seconds 30
      for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$MONGO_PORT) 2>/dev/null && break; sleep 0.1; done
      ;;
    smtp)
      mkdir -p "$STACK/mail"
      start_one smtp "$VENV/bin/python" "$ROOT/scripts/smtp_sink.py" --port "$SMTP_PORT" --dir "$STACK/mail"
      for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null && break; sleep 0.1; done
      ;;
    *) echo "stack: no service named $name" >&2; return 2 ;;
  esac
}

stop_one() {
  local pidfile="$STACK/pids/$1"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case ${1:-} in
  start)
    # For the virtualenv only: with these set, test-env.sh starts no server of its own.
    MONGODB_URI=unused SMTP_URL=unused source "$ROOT/scripts/test-env.sh" >/dev/null 2>&1 || true
    "$0" stop >/dev/null 2>&1 || true
    if [ "${STACK_BUILD:-1}" != 0 ]; then
      profile=(); [ "$STACK_PROFILE" = release ] && profile=(--release)
      (cd "$ROOT" && cargo build "${profile[@]}" --locked -p auth -p gateway -p converter -p notification)
    fi
    if [ -z "${STACK_DATABASE_URL:-}" ]; then
      mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$STACK_DB\`; CREATE DATABASE \`$STACK_DB\`"
    fi
    rm -rf "$STACK/mail"; mkdir -p "$STACK/mail"
    rm -f "$STACK"/logs/*.log
    service secantusdb
    service smtp
    for s in auth gateway converter notification; do service $s; done
    wait_ready auth http://127.0.0.1:$AUTH_HTTP_PORT/readyz 60
    wait_ready gateway http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz 60
    wait_ready converter http://127.0.0.1:$CONVERTER_HTTP_PORT/readyz 60
    wait_ready notification http://127.0.0.1:$NOTIFICATION_HTTP_PORT/readyz 60
    echo "stack: up; gateway at http://127.0.0.1:$GATEWAY_PORT, logs in $STACK/logs, mail in $STACK/mail"
    ;;
  restart-service) stop_one "$2"; service "$2" ;;
  stop-service) stop_one "$2" ;;
  start-service) service "$2" ;;
  kill-service) kill -9 "$(cat "$STACK/pids/$2")" 2>/dev/null || true; rm -f "$STACK/pids/$2" ;;
  stop)
    for s in gateway converter notification auth smtp secantusdb; do stop_one $s; done
    ;;
  env) env_vars ;;
  *) echo "usage: $0 start|stop|env|{stop,start,restart,kill}-service NAME" >&2; exit 2 ;;
esac
