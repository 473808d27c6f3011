#!/usr/bin/env bash
# Sourced by scripts/test.sh (and usable by hand: `source scripts/test-env.sh`): makes every backing
# service the tests need available and exports where it is.
#   MySQL/MariaDB  DATABASE_URL  (default: this machine's MariaDB, root without password)
#   RabbitMQ       AMQP_URL      (default: guest/guest on 127.0.0.1:5672)
#   MongoDB-wire   MONGODB_URI   (default: a SecantusDB started here, in memory)
#   SMTP           SMTP_URL      (default: scripts/smtp_sink.py started here; mail lands in SMTP_SINK_DIR)
# Tools it installs into a virtualenv under target/test-env: secantusdb, aiosmtpd.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEST_ENV_DIR=${TEST_ENV_DIR:-$ROOT/target/test-env}
mkdir -p "$TEST_ENV_DIR"
export TEST_VENV="$TEST_ENV_DIR/venv"

if [ ! -x "$TEST_VENV/bin/secantusd-py" ] || [ ! -f "$TEST_VENV/lib/.aiosmtpd-ok" ]; then
  echo "test-env: creating virtualenv with secantusdb and aiosmtpd in $TEST_VENV" >&2
  python3 -m venv "$TEST_VENV"
  "$TEST_VENV/bin/pip" install --quiet --disable-pip-version-check secantusdb aiosmtpd
  touch "$TEST_VENV/lib/.aiosmtpd-ok"
fi
export PATH="$TEST_VENV/bin:$PATH"
# Used by tests that start private instances (outage tests).
export SECANTUSD="$TEST_VENV/bin/secantusd-py"
export SMTP_SINK="$TEST_VENV/bin/python $ROOT/scripts/smtp_sink.py"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # host port name seconds
  for _ in $(seq 1 $(( $4 * 10 ))); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "test-env: $3 did not come up on $1:$2" >&2
  return 1
}

TEST_ENV_PIDS=()
test_env_cleanup() {
  for pid in "${TEST_ENV_PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
}

export DATABASE_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

if [ -z "${MONGODB_URI:-}" ]; then
  port=$(free_port)
  "$TEST_VENV/bin/secantusd-py" --port "$port" --storage-path :memory: \
    --cache-size 4G --oplog-retention-seconds 30 >"$TEST_ENV_DIR/secantusdb.log" 2>&1 &
  TEST_ENV_PIDS+=($!)
  wait_port 127.0.0.1 "$port" "SecantusDB (MongoDB wire)" 60
  export MONGODB_URI="mongodb://127.0.0.1:$port"
fi

if [ -z "${SMTP_URL:-}" ]; then
  port=$(free_port)
  export SMTP_SINK_DIR=${SMTP_SINK_DIR:-$TEST_ENV_DIR/mail}
  rm -rf "$SMTP_SINK_DIR"; mkdir -p "$SMTP_SINK_DIR"
  "$TEST_VENV/bin/python" "$ROOT/scripts/smtp_sink.py" --port "$port" --dir "$SMTP_SINK_DIR" \
    >"$TEST_ENV_DIR/smtp.log" 2>&1 &
  TEST_ENV_PIDS+=($!)
  wait_port 127.0.0.1 "$port" "SMTP sink" 30
  export SMTP_URL="smtp://127.0.0.1:$port"
fi

echo "test-env: DATABASE_URL=$DATABASE_URL AMQP_URL=${AMQP_URL%%@*}@... MONGODB_URI=$MONGODB_URI SMTP_URL=$SMTP_URL" >&2
