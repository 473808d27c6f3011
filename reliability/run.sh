#!/usr/bin/env bash
# Reliability, security and load suite (see reliability/run.py for what it checks):
#   reliability/run.sh                  full run: badinput security load faults fuzz memory (~25-35 min)
#   reliability/run.sh --quick          badinput, security and a small load (~3 min + build)
#   reliability/run.sh faults load      some sections; --help for the options
#   reliability/run.sh memory           the converter's peak RSS on a 300 MiB one-chunk AVI and a
#                                       2 GiB WAV (reliability/memory.py alone needs no stack/ffmpeg)
# Starts private RabbitMQ / MariaDB / SecantusDB / SMTP instances and the four services
# (scripts/stack.sh) under target/reliability, never touching the machine's shared MariaDB or
# RabbitMQ. Prints the table and writes target/reliability/results.md; exits non-zero when
# anything did not hold.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for tool in ffmpeg openssl mariadbd mariadb-install-db mysql; do
  command -v "$tool" >/dev/null || { echo "reliability: $tool is needed" >&2; exit 2; }
done
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null \
  || { echo "reliability: rabbitmq-server is needed" >&2; exit 2; }
# SecantusDB and the SMTP sink live in the test virtualenv; with these two set, test-env.sh only
# makes sure it exists and starts nothing.
MONGODB_URI=unused SMTP_URL=unused source scripts/test-env.sh >/dev/null
VENV=$ROOT/target/reliability/venv
if [ ! -f "$VENV/.ok" ]; then
  echo "reliability: creating $VENV (pymongo, PyYAML)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pymongo pyyaml
  touch "$VENV/.ok"
fi
exec "$VENV/bin/python" reliability/run.py "$@"
