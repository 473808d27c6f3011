#!/bin/bash
# The official mongo image's first-start contract, on SecantusDB: on an empty /data/db with
# MONGO_INITDB_ROOT_USERNAME and _PASSWORD set, start once without authentication on the loopback,
# create that user (role root in admin), stop; then serve on every interface with authentication.
set -euo pipefail
PY=/opt/secantusdb/bin/python

file_env() {
  local var=$1 file_var="${1}_FILE"
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "entrypoint: both $var and $file_var are set" >&2; exit 1
  fi
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(< "${!file_var}")"
  fi
}
file_env MONGO_INITDB_ROOT_USERNAME
file_env MONGO_INITDB_ROOT_PASSWORD

# Standalone (the official image's mongod is no replica set); a short oplog retention and a cache
# that fits the rehearsal's uploads (SecantusDB keeps every write in its oplog for an hour by default).
server=(/opt/secantusdb/bin/secantusd-py --standalone --storage-path /data/db
        --cache-size "${SECANTUS_CACHE_SIZE:-1G}" --oplog-retention-seconds 60)

if [ "${1:-}" = mongod ]; then
  shift
  if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] && [ ! -e /data/db/.root-user-created ]; then
    [ -n "${MONGO_INITDB_ROOT_PASSWORD:-}" ] || { echo "entrypoint: MONGO_INITDB_ROOT_PASSWORD is not set" >&2; exit 1; }
    echo "entrypoint: creating the root user $MONGO_INITDB_ROOT_USERNAME"
    "${server[@]}" --host 127.0.0.1 --port 27017 &
    pid=$!
    "$PY" - <<'PYEOF'
import os, time
import pymongo
deadline = time.monotonic() + 120
while True:
    try:
        client = pymongo.MongoClient("mongodb://127.0.0.1:27017/", serverSelectionTimeoutMS=2000)
        client.admin.command("ping")
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
client.admin.command("createUser", os.environ["MONGO_INITDB_ROOT_USERNAME"],
                     pwd=os.environ["MONGO_INITDB_ROOT_PASSWORD"],
                     roles=[{"role": "root", "db": "admin"}])
PYEOF
    kill "$pid"
    wait "$pid" || true
    touch /data/db/.root-user-created
  fi
  auth=()
  [ ! -e /data/db/.root-user-created ] || auth=(--auth)
  exec "${server[@]}" "${auth[@]}" --host 0.0.0.0 --port 27017 "$@"
fi
exec "$@"
