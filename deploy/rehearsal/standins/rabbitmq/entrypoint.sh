#!/bin/bash
# The official rabbitmq image's contract on Debian's RabbitMQ: RABBITMQ_DEFAULT_USER/_PASS (read
# by the server itself) create that user on the first start; conf.d holds the configuration.
set -euo pipefail
if [ "${1:-}" = rabbitmq-server ]; then
  shift
  # The Erlang cookie lives in the (volume) home directory, as in the official image.
  if [ ! -e "$HOME/.erlang.cookie" ]; then
    umask 077
    head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$HOME/.erlang.cookie"
  fi
  exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
