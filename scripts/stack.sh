#!/usr/bin/env bash
# Starts the full multi-process stack on this machine's real services, for benchmarks, the
# reliability suite and manual tries:
#   scripts/stack.sh start   builds release binaries, starts SecantusDB, the SMTP sink and the four
#                            services (MariaDB and RabbitMQ are the machine's own), waits for /readyz
#   scripts/stack.sh stop    stops everything it started
#   scripts/stack.sh env     prints the variables (source it: eval "$(scripts/stack.sh env)")
# State lives in target/stack (pids, logs, mail). Ports: gateway 18080, auth gRPC 15051,
# auth/converter/notification HTTP 18081-18083, SecantusDB 37017, SMTP 12525.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK=${STACK_DIR:-$ROOT/target/stack}
mkdir -p "$STACK/logs" "$STACK/pids"
GATEWAY_PORT=${GATEWAY_PORT:-18080}
MONGO_PORT=${MONGO_PORT:-37017}
SMTP_PORT=${SMTP_PORT:-12525}
STACK_DB=${STACK_DB:-mp3_stack}

env_vars() {
  cat <<EOV
export DATABASE_URL=mysql://root@127.0.0.1:3306/$STACK_DB
export MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
export SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
export SMTP_SINK_DIR=$STACK/mail
export AUTH_GRPC_URL=http://127.0.0.1:15051
export PUBLIC_BASE_URL=http://127.0.0.1:$GATEWAY_PORT
export GATEWAY=http://127.0.0.1:$GATEWAY_PORT
EOV
}

start_one() { # name command...
  local name=$1; shift
  "$@" >"$STACK/logs/$name.log" 2>&1 &
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
    auth) HTTP_ADDR=127.0.0.1:18081 GRPC_ADDR=127.0.0.1:15051 start_one auth "$ROOT/target/release/auth" ;;
    gateway) HTTP_ADDR=127.0.0.1:$GATEWAY_PORT start_one gateway "$ROOT/target/release/gateway" ;;
    converter) HTTP_ADDR=127.0.0.1:18082 CONVERTER_RETRY_DELAYS=${CONVERTER_RETRY_DELAYS:-1s,2s,5s} start_one converter "$ROOT/target/release/converter" ;;
    notification) HTTP_ADDR=127.0.0.1:18083 NOTIFICATION_RETRY_DELAYS=${NOTIFICATION_RETRY_DELAYS:-1s,2s,5s} start_one notification "$ROOT/target/release/notification" ;;
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
    source "$ROOT/scripts/test-env.sh" >/dev/null 2>&1 || true  # for the virtualenv only
    "$0" stop >/dev/null 2>&1 || true
    (cd "$ROOT" && cargo build --release --locked -p auth -p gateway -p converter -p notification)
    mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$STACK_DB\`; CREATE DATABASE \`$STACK_DB\`"
    rm -rf "$STACK/mail"; mkdir -p "$STACK/mail"
    start_one secantusdb "$ROOT/target/test-env/venv/bin/secantusd-py" --port "$MONGO_PORT" \
      --storage-path :memory: --cache-size 6G --oplog-retention-seconds 30
    start_one smtp "$ROOT/target/test-env/venv/bin/python" "$ROOT/scripts/smtp_sink.py" --port "$SMTP_PORT" --dir "$STACK/mail"
    for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$MONGO_PORT) 2>/dev/null && break; sleep 0.1; done
    for s in auth gateway converter notification; do service $s; done
    wait_ready auth http://127.0.0.1:18081/readyz 60
    wait_ready gateway http://127.0.0.1:$GATEWAY_PORT/readyz 60
    wait_ready converter http://127.0.0.1:18082/readyz 60
    wait_ready notification http://127.0.0.1:18083/readyz 60
    echo "stack: up; gateway at http://127.0.0.1:$GATEWAY_PORT, logs in $STACK/logs, mail in $STACK/mail"
    ;;
  restart-service) stop_one "$2"; service "$2" ;;
  kill-service) kill -9 "$(cat "$STACK/pids/$2")" 2>/dev/null || true; rm -f "$STACK/pids/$2" ;;
  stop)
    for s in gateway converter notification auth smtp secantusdb; do stop_one $s; done
    ;;
  env) env_vars ;;
  *) echo "usage: $0 start|stop|env|restart-service NAME|kill-service NAME" >&2; exit 2 ;;
esac
