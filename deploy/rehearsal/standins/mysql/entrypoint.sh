#!/bin/bash
# The official mysql image's first-start contract, on MariaDB: on an empty /var/lib/mysql, create
# the system tables, set the root password, create MYSQL_DATABASE and MYSQL_USER with
# MYSQL_PASSWORD (granted that database); then run the server in the foreground.
set -euo pipefail

# NAME or NAME_FILE (the file's content), as the official image reads them.
file_env() {
  local var=$1 file_var="${1}_FILE"
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "entrypoint: both $var and $file_var are set" >&2; exit 1
  fi
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(< "${!file_var}")"
  fi
}
for var in MYSQL_ROOT_PASSWORD MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do file_env "$var"; done

if [ "${1:-}" = mariadbd ] || [ "${1:-}" = mysqld ]; then
  shift
  DATADIR=/var/lib/mysql
  if [ ! -d "$DATADIR/mysql" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
      echo "entrypoint: database is uninitialized and MYSQL_ROOT_PASSWORD is not set" >&2; exit 1
    fi
    echo "entrypoint: initialising $DATADIR"
    mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
      --skip-test-db --skip-name-resolve > /dev/null
    sock=/tmp/mysqld-init.sock
    mariadbd --skip-networking --socket="$sock" --datadir="$DATADIR" &
    pid=$!
    for _ in $(seq 60); do
      mariadb-admin --socket="$sock" --user=root ping --silent 2>/dev/null && break
      sleep 1
    done
    sql_escape() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }
    root_pw=$(sql_escape "$MYSQL_ROOT_PASSWORD")
    {
      echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
      echo "FLUSH PRIVILEGES;"
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_pw';"
      echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root_pw';"
      echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
      if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
      fi
      if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
        echo "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$(sql_escape "$MYSQL_PASSWORD")';"
        [ -z "${MYSQL_DATABASE:-}" ] || echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';"
      fi
      echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$sock" --user=root
    kill "$pid"
    wait "$pid" || true
    echo "entrypoint: initialised"
  fi
  exec mariadbd "$@"
fi
exec "$@"
